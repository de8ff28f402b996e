//! `LEARNED_INSIGHTS.md`: a chat's learnings as a document a person (or another agent) reads,
//! active ones by category, highest confidence first, then the retired ones with why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use valor_protocol::StoreFailure;
use valor_protocol::learnings::{Category, LearningRecord, rank};
use valor_protocol::time::civil_date;

use crate::port::LearningStore;

pub const FILE_NAME: &str = "LEARNED_INSIGHTS.md";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreFailure),
    #[error("the writer stopped: {0}")]
    Task(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One file written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub chat_id: Option<i64>,
    pub path: PathBuf,
    pub active: usize,
    pub retired: usize,
}

/// Writes `<dir>/chat-<id>/LEARNED_INSIGHTS.md` for every chat with learnings (or only
/// `only`), each written aside and renamed, so a reader never sees half a file.
pub async fn export(
    store: &dyn LearningStore,
    dir: &Path,
    only: Option<i64>,
) -> Result<Vec<Exported>, ExportError> {
    let records = store.all_learnings().await?;
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || export_records(records, &dir, only))
        .await
        .map_err(|e| ExportError::Task(e.to_string()))?
}

/// [`export`] from records already read (the CLI gets them from a running Valor).
pub fn export_records(
    records: Vec<LearningRecord>,
    dir: &Path,
    only: Option<i64>,
) -> Result<Vec<Exported>, ExportError> {
    let mut by_chat: BTreeMap<Option<i64>, Vec<LearningRecord>> = BTreeMap::new();
    for learning in records {
        if only.is_none_or(|chat| learning.chat_id == Some(chat)) {
            by_chat.entry(learning.chat_id).or_default().push(learning);
        }
    }
    let mut written = Vec::new();
    for (chat_id, learnings) in by_chat {
        let folder = dir.join(match chat_id {
            Some(id) => format!("chat-{id}"),
            None => "shared".to_owned(),
        });
        let path = folder.join(FILE_NAME);
        let write_error = |source| ExportError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&folder).map_err(write_error)?;
        let (text, active, retired) = render(chat_id, learnings);
        let partial = folder.join(format!(".{FILE_NAME}.partial"));
        std::fs::write(&partial, text).map_err(write_error)?;
        std::fs::rename(&partial, &path).map_err(write_error)?;
        written.push(Exported {
            chat_id,
            path,
            active,
            retired,
        });
    }
    Ok(written)
}

/// Writes a chat's `LEARNED_INSIGHTS.md` into its workspace, so the Claude Code sessions
/// working there read what was learned: through the no-follow helper (whatever the chat
/// planted at the name or beside it is replaced, never written through), private, written aside
/// and renamed. A chat that never learned anything gets no file.
pub async fn write_into_workspace(
    store: &dyn LearningStore,
    chat_id: i64,
    workspace: valor_chatfs::ChatDir,
) -> Result<Option<PathBuf>, ExportError> {
    let learnings = store.learnings_of(Some(chat_id), true).await?;
    tokio::task::spawn_blocking(move || write_file(chat_id, &workspace, learnings))
        .await
        .map_err(|e| ExportError::Task(e.to_string()))?
}

fn write_file(
    chat_id: i64,
    workspace: &valor_chatfs::ChatDir,
    learnings: Vec<LearningRecord>,
) -> Result<Option<PathBuf>, ExportError> {
    let path = workspace.join(FILE_NAME);
    let write_error = |source: valor_chatfs::ChatFsError| ExportError::Write {
        path: path.clone(),
        source: std::io::Error::other(source),
    };
    let exists = workspace.entry(FILE_NAME).map_err(write_error)?.is_some();
    if learnings.is_empty() && !exists {
        return Ok(None);
    }
    let (text, _, _) = render(Some(chat_id), learnings);
    workspace
        .write_atomic(FILE_NAME, text.as_bytes())
        .map_err(write_error)?;
    Ok(Some(path))
}

/// The document, with the counts of active and retired learnings in it.
pub fn render(chat_id: Option<i64>, learnings: Vec<LearningRecord>) -> (String, usize, usize) {
    let (mut active, mut retired): (Vec<_>, Vec<_>) =
        learnings.into_iter().partition(LearningRecord::is_active);
    rank(&mut active);
    retired.sort_by_key(|l| l.number);
    let mut out = match chat_id {
        Some(id) => format!("# Learned insights: chat {id}\n\n"),
        None => "# Learned insights: shared\n\n".to_owned(),
    };
    out.push_str(
        "What Valor learned in this chat, each confirmed by the user. Highest confidence \
         first; the number is the one `/forget N` takes.\n",
    );
    if active.is_empty() {
        out.push_str("\nNo active learnings.\n");
    }
    for category in Category::ALL {
        let items: Vec<&LearningRecord> =
            active.iter().filter(|l| l.category == category).collect();
        if items.is_empty() {
            continue;
        }
        let mut title = category.as_str().to_owned();
        title[..1].make_ascii_uppercase();
        out.push_str(&format!("\n## {title}\n\n"));
        for l in items {
            out.push_str(&format!(
                "- **#{}** {} _(confidence {:.2}, seen {}×, since {}{})_\n",
                l.number,
                one_line(&l.content),
                l.confidence,
                l.times_seen,
                civil_date(l.created_ms),
                if l.manual { ", added by hand" } else { "" }
            ));
        }
    }
    if !retired.is_empty() {
        out.push_str("\n## Retired\n\n");
        for l in &retired {
            let why = l.retired.as_ref().map_or(String::new(), |r| {
                format!(" ({}, {})", one_line(&r.reason), civil_date(r.at_ms))
            });
            out.push_str(&format!(
                "- ~~#{} {}~~{why}\n",
                l.number,
                one_line(&l.content)
            ));
        }
    }
    (out, active.len(), retired.len())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
