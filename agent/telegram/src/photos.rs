//! Photos the tools make (a created image, a bug report's screenshot) sent to their chat.
//!
//! A photo goes through the chat's pacer like any message, so it never trips the flood limit
//! beside a streaming answer; a 429 is waited out (within the pacer's cap) and retried. Telegram
//! refuses captions over 1024 characters, so longer ones are cut at a character boundary.

use std::time::Duration;

use teloxide::RequestError;
use teloxide::payloads::SendPhotoSetters as _;
use teloxide::prelude::Requester as _;
use teloxide::types::{ChatId, InputFile};

use crate::pacer::ChatPacer;

/// Telegram's caption limit, in characters.
pub const MAX_CAPTION_CHARS: usize = 1024;
/// Telegram's limit for a photo uploaded by a bot.
pub const MAX_PHOTO_BYTES: u64 = 10 * 1024 * 1024;
/// Sends tried per photo (the first and the retries after a 429 or a network error).
const ATTEMPTS: usize = 4;

/// A picture for a chat, as bytes (read by whoever made it: a path would be opened again here,
/// when a chat could have swapped it for a link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingPhoto {
    pub chat_id: i64,
    pub image: Vec<u8>,
    pub caption: String,
}

/// Why a photo did not reach its chat.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("the photo is {bytes} bytes; Telegram takes at most {MAX_PHOTO_BYTES}")]
    TooLarge { bytes: u64 },
    #[error("Telegram refused the photo: {0}")]
    Refused(String),
    #[error("Telegram kept asking to wait; the photo was not sent")]
    FloodedOut,
}

/// `caption` cut to Telegram's limit.
pub fn fit_caption(caption: &str) -> String {
    let caption = valor_redact::redact(caption);
    if caption.chars().count() <= MAX_CAPTION_CHARS {
        return caption.into_owned();
    }
    let mut cut: String = caption.chars().take(MAX_CAPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Sends one photo through the chat's pacer, waiting out 429s.
pub async fn send_photo(
    bot: &teloxide::Bot,
    pacer: &ChatPacer,
    photo: &OutgoingPhoto,
) -> Result<(), PhotoError> {
    let bytes = photo.image.len() as u64;
    if bytes > MAX_PHOTO_BYTES {
        return Err(PhotoError::TooLarge { bytes });
    }
    let caption = fit_caption(&photo.caption);
    for _ in 0..ATTEMPTS {
        // A photo is never skipped: it waits for a running flood wait like a final answer.
        pacer.acquire(true).await;
        let file = InputFile::memory(photo.image.clone()).file_name("photo.png");
        let mut request = bot.send_photo(ChatId(photo.chat_id), file);
        if !caption.is_empty() {
            request = request.caption(caption.clone());
        }
        match request.await {
            Ok(_) => return Ok(()),
            Err(RequestError::RetryAfter(wait)) => {
                if wait.duration() > pacer.max_hold() {
                    return Err(PhotoError::FloodedOut);
                }
                pacer.flood_wait(wait.duration());
            }
            Err(RequestError::Network(e)) => {
                tracing::warn!(chat_id = photo.chat_id, error = %e, "sending a photo failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(PhotoError::Refused(e.to_string())),
        }
    }
    Err(PhotoError::FloodedOut)
}

/// Sends a text and, if given, a photo to a chat straight away (for one-shot commands such as
/// `valor daydream --now`, which have no running channel).
pub async fn send_report(
    bot: &teloxide::Bot,
    pacer: &ChatPacer,
    chat_id: i64,
    text: &str,
    photo: Option<OutgoingPhoto>,
) -> Result<(), PhotoError> {
    pacer.acquire(true).await;
    let text: String = text.chars().take(4096).collect();
    bot.send_message(ChatId(chat_id), text)
        .await
        .map_err(|e| PhotoError::Refused(e.to_string()))?;
    if let Some(photo) = photo {
        send_photo(bot, pacer, &photo).await?;
    }
    Ok(())
}
