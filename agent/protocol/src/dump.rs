//! One record of a whole store, as `valor backup` writes it (a line of JSON each) and
//! `valor store migrate` moves it from one store to another. Every store reads and writes the
//! same records, so a backup of sled restores into PostgreSQL and back.

use serde::{Deserialize, Serialize};

use crate::learnings::LearningRecord;
use crate::proposals::Proposal;
use crate::records::{MemoryRecord, RunRecord, SessionRecord, StoredMessage, TurnText};

/// The first line of a backup file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpHeader {
    /// The format's version ([`DUMP_FORMAT`]).
    pub valor_backup: u32,
    pub created_ms: u64,
    /// `sled` or `postgres`.
    pub from: String,
}

pub const DUMP_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DumpRecord {
    Message(StoredMessage),
    /// A saved memory (learnings' memories come with their learning).
    Memory(MemoryRecord),
    Learning(LearningRecord),
    Vector {
        id: u64,
        model_id: String,
        vector: Vec<f32>,
    },
    Proposal(Proposal),
    Session {
        chat_id: i64,
        record: SessionRecord,
    },
    Run {
        run: RunRecord,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<TurnText>,
    },
    Chat {
        chat_id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        conversation_start: u64,
    },
    PairedUser {
        user_id: i64,
        /// Above chatter: the role their pairing code gave.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<crate::access::Role>,
    },
    /// A scheduled job's run (its next due time and catch-up rest on the latest).
    JobRun(crate::jobs::JobRunRecord),
    /// A job the operator paused.
    PausedJob {
        job: String,
    },
    /// One approval of the audit log.
    Approval(crate::approval::ApprovalRecord),
    /// One spend counter (`day:2026-12-08:chat:42`).
    Spend {
        counter: String,
        spent: crate::budget::Spent,
    },
}

impl DumpRecord {
    /// The record's kind, for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            DumpRecord::Message(_) => "messages",
            DumpRecord::Memory(_) => "memories",
            DumpRecord::Learning(_) => "learnings",
            DumpRecord::Vector { .. } => "vectors",
            DumpRecord::Proposal(_) => "questions",
            DumpRecord::Session { .. } => "sessions",
            DumpRecord::Run { .. } => "runs",
            DumpRecord::Chat { .. } => "chats",
            DumpRecord::PairedUser { .. } => "paired users",
            DumpRecord::JobRun(_) => "job runs",
            DumpRecord::PausedJob { .. } => "paused jobs",
            DumpRecord::Approval(_) => "approvals",
            DumpRecord::Spend { .. } => "spend counters",
        }
    }
}
