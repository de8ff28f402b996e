//! What the fake checks of a request's form as Telegram does: parse_mode HTML (the tags it
//! knows, closed in order, entities), inline keyboards' button data, and multipart bodies.

use serde_json::Value;

pub(super) fn check_markup(markup: &Value) -> Result<(), (u16, String, Option<u64>)> {
    for row in markup["inline_keyboard"].as_array().into_iter().flatten() {
        for button in row.as_array().into_iter().flatten() {
            if let Some(data) = button["callback_data"].as_str()
                && (data.is_empty() || data.len() > 64)
            {
                return Err((400, "Bad Request: BUTTON_DATA_INVALID".to_owned(), None));
            }
        }
    }
    Ok(())
}

const TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

/// Parses Telegram HTML; returns the visible text or Telegram's error description.
pub fn parse_html(text: &str) -> Result<String, String> {
    let mut visible = String::with_capacity(text.len());
    let mut open: Vec<String> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'<' => {
                let end = text[i..]
                    .find('>')
                    .map(|e| i + e)
                    .ok_or_else(|| format!("Unclosed start tag at byte offset {i}"))?;
                let inner = &text[i + 1..end];
                if let Some(name) = inner.strip_prefix('/') {
                    let name = name.trim().to_ascii_lowercase();
                    match open.pop() {
                        Some(expected) if expected == name => {}
                        Some(expected) => {
                            return Err(format!(
                                "Unmatched end tag at byte offset {i}, expected \"</{expected}>\", found \"</{name}>\""
                            ));
                        }
                        None => return Err(format!("Unexpected end tag at byte offset {i}")),
                    }
                } else {
                    let name: String = inner
                        .split(|c: char| c.is_whitespace())
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if !TAGS.contains(&name.as_str()) {
                        return Err(format!(
                            "Unsupported start tag \"{name}\" at byte offset {i}"
                        ));
                    }
                    open.push(name);
                }
                i = end + 1;
            }
            b'&' => {
                let end = text[i..].find(';').map(|e| i + e);
                let entity = end.map(|e| &text[i + 1..e]);
                let decoded = match entity {
                    Some("amp") => '&',
                    Some("lt") => '<',
                    Some("gt") => '>',
                    Some("quot") => '"',
                    Some(e) if e.starts_with('#') => e[1..]
                        .parse::<u32>()
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| format!("Invalid numeric entity at byte offset {i}"))?,
                    _ => return Err(format!("Character '&' must be escaped at byte offset {i}")),
                };
                visible.push(decoded);
                i = end.unwrap_or(i) + 1;
            }
            _ => {
                let c = text[i..].chars().next().unwrap_or(' ');
                visible.push(c);
                i += c.len_utf8();
            }
        }
    }
    if let Some(tag) = open.pop() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{tag}\""
        ));
    }
    Ok(visible)
}

/// The bytes of the file part `name` of a multipart/form-data body.
pub(super) fn multipart_file(body: &[u8], boundary: &str, name: &str) -> Option<Vec<u8>> {
    let delimiter = format!("--{boundary}");
    let header = format!("name=\"{name}\"");
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        let end = find(rest, delimiter.as_bytes()).unwrap_or(rest.len());
        let part = &rest[..end];
        let head_end = find(part, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..head_end]);
        if head.contains(&header) {
            let value = &part[head_end + 4..];
            let value = value.strip_suffix(b"\r\n").unwrap_or(value);
            // teloxide may send `photo=attach://<part>` and the file in that part.
            if let Some(other) = value.strip_prefix(b"attach://") {
                return multipart_file(body, boundary, &String::from_utf8_lossy(other));
            }
            return Some(value.to_vec());
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The fields of a multipart/form-data body; numbers and JSON values are parsed, the rest kept
/// as text.
pub(super) fn multipart_fields(body: &[u8], boundary: &str) -> Value {
    let text = String::from_utf8_lossy(body);
    let mut fields = serde_json::Map::new();
    for part in text.split(&format!("--{boundary}")) {
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = head
            .split("name=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let parsed = serde_json::from_str::<Value>(value)
            .ok()
            .filter(|v| !v.is_string())
            .unwrap_or_else(|| Value::String(value.to_owned()));
        fields.insert(name.to_owned(), parsed);
    }
    Value::Object(fields)
}
