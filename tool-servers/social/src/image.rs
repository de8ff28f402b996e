//! Checking an image file before anything is uploaded: the type comes from the file's first
//! bytes (a renamed PDF is not an image), and the size is limited.

use std::path::Path;

use valor_tools::ToolError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Png,
    Jpeg,
    Webp,
    Gif,
}

impl ImageKind {
    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Png => "image/png",
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Webp => "image/webp",
            ImageKind::Gif => "image/gif",
        }
    }

    /// The kind of an image from its first bytes.
    pub fn sniff(head: &[u8]) -> Option<ImageKind> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageKind::Png)
        } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(ImageKind::Jpeg)
        } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
            Some(ImageKind::Webp)
        } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
            Some(ImageKind::Gif)
        } else {
            None
        }
    }
}

/// Checks an image's bytes (read within the size limit through the no-follow helper) and
/// returns its kind with them; `path` names it in messages.
pub fn check_image(path: &Path, bytes: Vec<u8>) -> Result<(ImageKind, Vec<u8>), ToolError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if bytes.is_empty() {
        return Err(ToolError::File(format!("{name} is empty")));
    }
    let kind = ImageKind::sniff(&bytes).ok_or_else(|| {
        ToolError::File(format!(
            "{name} is not a PNG, JPEG, WebP or GIF image (judged by its contents, not its name)"
        ))
    })?;
    Ok((kind, bytes))
}
