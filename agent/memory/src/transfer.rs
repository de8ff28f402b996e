//! Export and import as JSON lines: one message or saved memory per line, ids and times kept,
//! so exporting an imported file gives the same bytes. An import is checked whole before
//! anything is written: a bad line (not UTF-8, not JSON, an empty memory) names its line number
//! and nothing is imported.

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use valor_protocol::StoreFailure;
use valor_protocol::learnings::LearningRecord;
use valor_protocol::memory::{MAX_DOCUMENT_ID, validate};
use valor_protocol::records::{MemoryKind, MemoryRecord, StoredMessage};

use crate::port::MemoryStore;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Message(StoredMessage),
    Memory(MemoryRecord),
    Learning(LearningRecord),
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] StoreFailure),
    #[error("cannot read or write the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("nothing was imported; {count} bad line(s), the first: line {line}: {reason}")]
    BadInput {
        line: usize,
        reason: String,
        count: usize,
    },
}

/// What an import or export moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub messages: u64,
    pub memories: u64,
    /// Learning records (retired ones too).
    #[serde(default)]
    pub learnings: u64,
}

/// Writes every message (chat by chat, oldest first), every saved memory (by kind, then id)
/// and every learning record (by id, retired ones too).
pub async fn export(
    store: &dyn MemoryStore,
    out: &mut (dyn Write + Send),
) -> Result<Moved, TransferError> {
    let mut moved = Moved::default();
    let mut write = |line: &Line| -> Result<(), TransferError> {
        serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    let mut messages = store.message_feed();
    while let Some(message) = messages.recv().await {
        write(&Line::Message(message?))?;
        moved.messages += 1;
    }
    for kind in MemoryKind::SAVED {
        for record in store.memory_records(kind).await? {
            write(&Line::Memory(record))?;
            moved.memories += 1;
        }
    }
    for learning in store.all_learnings().await? {
        write(&Line::Learning(learning))?;
        moved.learnings += 1;
    }
    out.flush()?;
    Ok(moved)
}

/// Reads JSON lines and stores them (ids kept; a line already stored is stored again, the
/// same). Everything is checked before the first write.
pub async fn import(
    store: &dyn MemoryStore,
    input: &mut (dyn BufRead + Send),
) -> Result<Moved, TransferError> {
    let mut lines = Vec::new();
    let mut first_error: Option<(usize, String)> = None;
    let mut errors = 0;
    let mut buffer = Vec::new();
    let mut number = 0;
    loop {
        buffer.clear();
        if input.read_until(b'\n', &mut buffer)? == 0 {
            break;
        }
        number += 1;
        let checked = check_line(&buffer);
        match checked {
            Ok(Some(line)) => lines.push((number, line)),
            Ok(None) => {}
            Err(reason) => {
                errors += 1;
                first_error.get_or_insert((number, reason));
            }
        }
    }
    if first_error.is_none() {
        check_ids(store, &lines, &mut first_error, &mut errors).await?;
    }
    if let Some((line, reason)) = first_error {
        return Err(TransferError::BadInput {
            line,
            reason,
            count: errors,
        });
    }
    let mut moved = Moved::default();
    for (_, line) in lines {
        match line {
            Line::Message(message) => {
                store.import_message(message).await?;
                moved.messages += 1;
            }
            Line::Memory(record) => {
                store.import_memory(record).await?;
                moved.memories += 1;
            }
            Line::Learning(record) => {
                store.import_learning(record).await?;
                moved.learnings += 1;
            }
        }
    }
    store.flush().await?;
    Ok(moved)
}

/// Every id must be sane and belong to the same kind and chat in the file and in the store: an
/// import never overwrites another chat's (or another kind's) document. `lines` carry their
/// line numbers in the file.
async fn check_ids(
    store: &dyn MemoryStore,
    lines: &[(usize, Line)],
    first_error: &mut Option<(usize, String)>,
    errors: &mut usize,
) -> Result<(), TransferError> {
    let mut seen: std::collections::HashMap<u64, (MemoryKind, Option<i64>)> =
        std::collections::HashMap::new();
    for (number, line) in lines {
        let (id, kind, chat_id) = match line {
            Line::Message(m) => (m.seq, MemoryKind::Message, Some(m.chat_id)),
            Line::Memory(r) => (r.id, r.kind, r.chat_id),
            Line::Learning(l) => (l.id, MemoryKind::Learning, l.chat_id),
        };
        if id == 0 && !matches!(line, Line::Message(_)) {
            continue; // a new memory: it gets a fresh id
        }
        let problem = if id > MAX_DOCUMENT_ID {
            Some(format!("id {id} is beyond the largest a document may have"))
        } else if seen
            .insert(id, (kind, chat_id))
            .is_some_and(|s| s != (kind, chat_id))
        {
            Some(format!(
                "id {id} stands twice in the file, for different chats or kinds"
            ))
        } else if !store.id_fits(id, kind, chat_id).await? {
            Some(format!(
                "id {id} is already another chat's or another kind's document; nothing was imported"
            ))
        } else {
            None
        };
        if let Some(reason) = problem {
            *errors += 1;
            first_error.get_or_insert((*number, reason));
        }
    }
    Ok(())
}

/// One line: `None` for a blank one.
fn check_line(bytes: &[u8]) -> Result<Option<Line>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 ({e})"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let line: Line = serde_json::from_str(text).map_err(|e| format!("not a memory line: {e}"))?;
    match &line {
        Line::Memory(record) => validate(record).map_err(|e| e.to_string())?,
        Line::Learning(record) if record.content.trim().is_empty() => {
            return Err("a learning needs a text; this one is empty".to_owned());
        }
        _ => {}
    }
    Ok(Some(line))
}
