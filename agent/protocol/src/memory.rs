//! Rules every store keeps for long-term memory, and what memory holds: the limits of a saved
//! memory and of document ids, and the counts `/health` and `valor memory stats` report.

use crate::records::{MemoryKind, MemoryRecord};

/// Document ids stay below this (2^48: centuries of messages): an import cannot push the id
/// sequence to where it would overflow.
pub const MAX_DOCUMENT_ID: u64 = 1 << 48;

/// Longest text a saved memory may have (a message is indexed whatever its length).
pub const MAX_MEMORY_TEXT: usize = 256 * 1024;

/// Why a memory cannot be saved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidMemory {
    #[error("a {kind} needs a text; this one is empty")]
    EmptyText { kind: MemoryKind },
    #[error("the text is {len} bytes; a saved memory holds {MAX_MEMORY_TEXT} at most")]
    TooLong { len: usize },
    #[error("messages are stored through the conversation, not saved as memories")]
    MessageKind,
    #[error(
        "the id is above the largest a document may have ({})",
        MAX_DOCUMENT_ID
    )]
    IdTooLarge,
}

/// Checks what the store requires of a saved memory.
pub fn validate(record: &MemoryRecord) -> Result<(), InvalidMemory> {
    if record.kind == MemoryKind::Message {
        return Err(InvalidMemory::MessageKind);
    }
    if record.text.trim().is_empty() {
        return Err(InvalidMemory::EmptyText { kind: record.kind });
    }
    if record.text.len() > MAX_MEMORY_TEXT {
        return Err(InvalidMemory::TooLong {
            len: record.text.len(),
        });
    }
    Ok(())
}

/// How much memory there is, per kind and in the embedding pipeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryCounts {
    pub messages: u64,
    pub links: u64,
    pub learnings: u64,
    pub insights: u64,
    #[serde(default)]
    pub observations: u64,
    #[serde(default)]
    pub summaries: u64,
    pub vectors: u64,
    pub queued: u64,
}

impl MemoryCounts {
    pub fn documents(&self) -> u64 {
        self.messages
            + self.links
            + self.learnings
            + self.insights
            + self.observations
            + self.summaries
    }
}
