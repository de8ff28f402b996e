//! The three layers of the `memory` tools (claude-mem's workflow, done locally): a compact
//! index of what matches, the timeline around one entry, and the full records by id. Reading
//! the index first and fetching only what matters costs the model a fraction of the tokens of
//! pasting whole records.
//!
//! Everything here is one chat's view: its own documents and those of no chat (general
//! learnings). Another chat's documents are never listed, and asked for by id they read as
//! absent, so a chat cannot even learn that an id exists elsewhere.

use valor_protocol::records::{Document, MemoryKind};
use valor_tool_memory::{MemoryBook, MemoryLine, MemoryText, SearchRequest};

use crate::catalogue::{Entry, Filter};
use crate::search::Query;
use crate::service::{Memory, MemoryError};

/// Entries one timeline shows on each side of its anchor at most.
pub const MAX_TIMELINE_SIDE: usize = 20;
/// Records one `records` call reads at most.
pub const MAX_RECORDS: usize = 20;

/// One line of the index: enough to decide whether to read the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub id: u64,
    pub kind: MemoryKind,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub title: String,
    /// About how many tokens the full record costs to read (4 characters a token).
    pub tokens: usize,
}

impl IndexEntry {
    fn of(document: &Document) -> IndexEntry {
        IndexEntry {
            id: document.id,
            kind: document.kind,
            at_ms: document.at_ms,
            title: document.title.clone(),
            tokens: tokens_of(&document.text),
        }
    }
}

/// About how many tokens `text` is (4 characters a token, as the prompt budgets count).
pub fn tokens_of(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// What an index search looks for.
#[derive(Debug, Clone, Default)]
pub struct IndexQuery {
    pub text: String,
    /// Only these kinds (all when empty).
    pub kinds: Vec<MemoryKind>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<u64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<u64>,
    pub limit: usize,
}

/// What `chat_id` may see.
fn view_of(chat_id: i64) -> Filter {
    Filter {
        chat_id: Some(chat_id),
        include_shared: true,
        ..Filter::default()
    }
}

fn visible(chat_id: i64, document: &Document) -> bool {
    document.chat_id.is_none_or(|owner| owner == chat_id)
}

impl Memory {
    /// The chat's documents matching `query`, best first, as index lines.
    pub async fn index_search(
        &self,
        chat_id: i64,
        query: &IndexQuery,
    ) -> Result<Vec<IndexEntry>, MemoryError> {
        let search = Query {
            text: query.text.clone(),
            filter: Filter {
                kinds: query.kinds.clone(),
                since_ms: query.since_ms,
                until_ms: query.until_ms,
                ..view_of(chat_id)
            },
            limit: query.limit,
        };
        Ok((self.search(&search).await?.hits.into_iter())
            .map(|hit| IndexEntry {
                id: hit.id,
                kind: hit.kind,
                at_ms: hit.at_ms,
                title: hit.title,
                tokens: hit.chars.div_ceil(4),
            })
            .collect())
    }

    /// What the chat had around `anchor`, in time order: up to `before` entries before it, the
    /// anchor, up to `after` after it. `None` when the chat cannot see `anchor`.
    pub async fn timeline(
        &self,
        chat_id: i64,
        anchor: u64,
        before: usize,
        after: usize,
    ) -> Result<Option<Vec<IndexEntry>>, MemoryError> {
        let (before, after) = (before.min(MAX_TIMELINE_SIDE), after.min(MAX_TIMELINE_SIDE));
        let view = view_of(chat_id);
        // Several machines: what other nodes stored since this one started is not in its
        // catalogue; the shared store has every document.
        if let Some(shared) = self.shared_search() {
            let timeline = shared.timeline_shared(&view, anchor, before, after);
            let Some(ids) = timeline.await? else {
                return Ok(None);
            };
            let lines = (self.store().documents(&ids).await?.into_iter().flatten())
                .filter(|document| visible(chat_id, document))
                .map(|document| IndexEntry::of(&document))
                .collect();
            return Ok(Some(lines));
        }
        let window: Vec<Entry> = {
            let indexes = self.indexes();
            let mut seen: Vec<Entry> = (indexes.catalogue.entries().iter())
                .filter(|e| view.accepts(e))
                .copied()
                .collect();
            seen.sort_unstable_by_key(|e| (e.at_ms, e.id));
            let Some(at) = seen.iter().position(|e| e.id == anchor) else {
                return Ok(None);
            };
            let start = at.saturating_sub(before);
            let end = (at + after + 1).min(seen.len());
            seen[start..end].to_vec()
        };
        let ids: Vec<u64> = window.iter().map(|e| e.id).collect();
        let lines = (self.store().documents(&ids).await?.into_iter().flatten())
            .filter(|document| visible(chat_id, document))
            .map(|document| IndexEntry::of(&document))
            .collect();
        Ok(Some(lines))
    }

    /// The full records of `ids` the chat may see, in the order asked (others are left out).
    pub async fn records(&self, chat_id: i64, ids: &[u64]) -> Result<Vec<Document>, MemoryError> {
        let asked = &ids[..ids.len().min(MAX_RECORDS)];
        let mut out: Vec<Document> = Vec::new();
        for document in self.store().documents(asked).await?.into_iter().flatten() {
            if visible(chat_id, &document) && !out.iter().any(|d| d.id == document.id) {
                out.push(document);
            }
        }
        Ok(out)
    }
}

fn memory_line(entry: IndexEntry) -> MemoryLine {
    MemoryLine {
        id: entry.id,
        kind: entry.kind.as_str().to_owned(),
        at_ms: entry.at_ms,
        title: entry.title,
        tokens: entry.tokens,
    }
}

/// The memory MCP server reads the agent's memory through this, always within the calling
/// chat's view.
#[async_trait::async_trait]
impl MemoryBook for Memory {
    async fn search(
        &self,
        chat_id: i64,
        request: &SearchRequest,
    ) -> Result<Vec<MemoryLine>, String> {
        let query = IndexQuery {
            text: request.query.clone(),
            kinds: (request.kinds.iter())
                .filter_map(|k| MemoryKind::parse(k))
                .collect(),
            since_ms: request.since_ms,
            until_ms: request.until_ms,
            limit: request.limit,
        };
        let found = self
            .index_search(chat_id, &query)
            .await
            .map_err(|e| e.to_string())?;
        Ok(found.into_iter().map(memory_line).collect())
    }

    async fn timeline(
        &self,
        chat_id: i64,
        anchor: u64,
        before: usize,
        after: usize,
    ) -> Result<Option<Vec<MemoryLine>>, String> {
        let lines = (Memory::timeline(self, chat_id, anchor, before, after).await)
            .map_err(|e| e.to_string())?;
        Ok(lines.map(|lines| lines.into_iter().map(memory_line).collect()))
    }

    async fn get(&self, chat_id: i64, ids: &[u64]) -> Result<Vec<MemoryText>, String> {
        let records = (self.records(chat_id, ids).await).map_err(|e| e.to_string())?;
        Ok(records
            .into_iter()
            .map(|r| MemoryText {
                id: r.id,
                kind: r.kind.as_str().to_owned(),
                at_ms: r.at_ms,
                title: r.title,
                text: r.text,
                url: r.url,
            })
            .collect())
    }
}
