//! Files a user sends (photos, documents): checked against Telegram's 20 MB download limit and
//! saved in the chat's workspace, so the turn can hand their path to Claude.

use teloxide::Bot;
use teloxide::prelude::Requester as _;
use teloxide::types::ChatId;

use valor_protocol::records::InboxFile;

use crate::channel::MAX_FILE_BYTES;

/// What to tell the user when a file is over Telegram's 20 MB download limit for bots.
pub(crate) fn too_big(file: &InboxFile) -> Option<String> {
    (u64::from(file.size) > MAX_FILE_BYTES).then(|| {
        format!(
            "That file is {:.1} MB; I can take files up to 20 MB (Telegram's limit for bots). \
             A smaller file or a link works.",
            f64::from(file.size) / (1024.0 * 1024.0)
        )
    })
}

/// The message's text with a note of where the file is saved.
pub(crate) fn with_note(text: &str, file: &InboxFile, path: &std::path::Path) -> String {
    let note = format!(
        "[The user sent {}; it is saved at {}]",
        file.what,
        path.display()
    );
    if text.is_empty() {
        note
    } else {
        format!("{text}\n\n{note}")
    }
}

/// Saves a received file in the chat's workspace, through the no-follow helper (a link the chat
/// planted at `received/` or at the name is refused, never written through); the error is what
/// to tell the user.
pub(crate) async fn receive_file(
    bot: &Bot,
    chats: &valor_chatfs::ChatFs,
    chat: ChatId,
    update_id: i64,
    file: &InboxFile,
) -> Result<std::path::PathBuf, String> {
    use teloxide::net::Download as _;
    if let Some(refusal) = too_big(file) {
        return Err(refusal);
    }
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        tracing::warn!(chat_id = chat.0, error = %e, "cannot receive a file: {what}");
        "I couldn't download that file. Please send it again.".to_owned()
    };
    let remote = bot
        .get_file(teloxide::types::FileId(file.id.clone()))
        .await
        .map_err(|e| failed("getFile", &e))?;
    let dir = chats
        .workspace(chat.0)
        .and_then(|workspace| workspace.create_dir_all(valor_chatfs::RECEIVED))
        .map_err(|e| failed("workspace", &e))?;
    let name: String = file
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file_name = format!("{update_id}-{name}");
    let path = dir.join(&file_name);
    let created = match dir.create_new(&file_name) {
        Ok(file) => file,
        // Sent again after a restart: the earlier download goes, the new one takes its place.
        Err(valor_chatfs::ChatFsError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            dir.remove(&file_name).map_err(|e| failed("create", &e))?;
            dir.create_new(&file_name)
                .map_err(|e| failed("create", &e))?
        }
        Err(e) => return Err(failed("create", &e)),
    };
    let mut out = tokio::fs::File::from_std(created);
    bot.download_file(&remote.path, &mut out)
        .await
        .map_err(|e| failed("download", &e))?;
    Ok(path)
}

/// The photo or document in a message.
pub(crate) fn attachment(message: &teloxide::types::Message) -> Option<InboxFile> {
    if let Some(document) = message.document() {
        let name = document
            .file_name
            .clone()
            .unwrap_or_else(|| "file".to_owned());
        return Some(InboxFile {
            id: document.file.id.0.clone(),
            size: document.file.size,
            what: format!("the file {name}"),
            name,
        });
    }
    // Telegram lists a photo in several sizes, the largest last.
    let photo = message.photo()?.last()?;
    Some(InboxFile {
        id: photo.file.id.0.clone(),
        size: photo.file.size,
        name: "photo.jpg".to_owned(),
        what: "a photo".to_owned(),
    })
}
