//! A chat's history as tools read it: its messages matching a query (hybrid search), or its
//! messages since a time (from the store), each with who said it.

use valor_protocol::records::{Document, MemoryKind};

use crate::catalogue::Filter;
use crate::search::Query;
use crate::service::{Memory, MemoryError};

/// One message of a chat's history.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatLine {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// "user", "assistant" or a username.
    pub who: String,
    pub text: String,
    /// Relevance for search results (higher is better); `None` for a time listing.
    pub score: Option<f32>,
}

/// Messages read from the store for a time listing before filtering by time.
const HISTORY_SCAN: usize = 5000;

/// A message's title is "who: headline".
fn who(title: &str) -> String {
    title
        .split_once(": ")
        .map_or("someone", |(who, _)| who)
        .to_owned()
}

impl Memory {
    /// The chat's messages matching `query`, best first.
    pub async fn chat_search(
        &self,
        chat_id: i64,
        query: &str,
        limit: usize,
    ) -> Result<Vec<ChatLine>, MemoryError> {
        let query = Query {
            text: query.to_owned(),
            filter: Filter {
                chat_id: Some(chat_id),
                kinds: vec![MemoryKind::Message],
                ..Filter::default()
            },
            limit,
        };
        let result = self.search(&query).await?;
        Ok((result.hits.into_iter())
            .map(|hit| ChatLine {
                at_ms: hit.at_ms,
                who: who(&hit.title),
                text: hit.snippet,
                score: Some(hit.score),
            })
            .collect())
    }

    /// The chat's last `limit` messages since `since_ms`, oldest first.
    pub async fn chat_since(
        &self,
        chat_id: i64,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<ChatLine>, MemoryError> {
        let messages = self.store().recent_messages(chat_id, HISTORY_SCAN).await?;
        let mut lines: Vec<ChatLine> = (messages.into_iter())
            .filter(|m| m.at_ms >= since_ms)
            .map(|m| {
                let document = Document::from(m);
                ChatLine {
                    at_ms: document.at_ms,
                    who: who(&document.title),
                    text: document.text,
                    score: None,
                }
            })
            .collect();
        let skip = lines.len().saturating_sub(limit);
        Ok(lines.split_off(skip))
    }
}
