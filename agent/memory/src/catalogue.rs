//! What the search indexes know about each document besides its text and vector: kind, chat and
//! time, for filters. Documents are numbered by slot in the order they were added.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use valor_protocol::records::{Document, MemoryKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub kind: MemoryKind,
    pub chat_id: Option<i64>,
    pub at_ms: u64,
    /// Removed from search (a retired learning); the indexes cannot delete, so they skip it.
    pub gone: bool,
}

impl From<&Document> for Entry {
    fn from(d: &Document) -> Entry {
        Entry {
            id: d.id,
            kind: d.kind,
            chat_id: d.chat_id,
            at_ms: d.at_ms,
            gone: false,
        }
    }
}

#[derive(Debug, Default)]
pub struct Catalogue {
    entries: Vec<Entry>,
    slots: HashMap<u64, u32>,
    /// Documents not gone, by kind (in the order of [`MemoryKind::ALL`]).
    live: [u64; MemoryKind::ALL.len()],
}

fn kind_slot(kind: MemoryKind) -> usize {
    MemoryKind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Catalogue {
    /// Adds a document; `None` when it is already in.
    pub fn add(&mut self, entry: Entry) -> Option<u32> {
        if self.slots.contains_key(&entry.id) {
            return None;
        }
        let slot = self.entries.len() as u32;
        if !entry.gone {
            self.live[kind_slot(entry.kind)] += 1;
        }
        self.entries.push(entry);
        self.slots.insert(entry.id, slot);
        Some(slot)
    }

    /// Takes a document out of every later search.
    pub fn remove(&mut self, id: u64) {
        if let Some(slot) = self.slot(id)
            && let Some(entry) = self.entries.get_mut(slot as usize)
            && !entry.gone
        {
            entry.gone = true;
            self.live[kind_slot(entry.kind)] -= 1;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn slot(&self, id: u64) -> Option<u32> {
        self.slots.get(&id).copied()
    }

    pub fn entry(&self, slot: u32) -> Option<&Entry> {
        self.entries.get(slot as usize)
    }

    pub fn by_id(&self, id: u64) -> Option<&Entry> {
        self.slot(id).and_then(|s| self.entry(s))
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Documents of `kind` in search (not gone): counted as they come and go, so that health
    /// checks never walk the store.
    pub fn live(&self, kind: MemoryKind) -> u64 {
        self.live[kind_slot(kind)]
    }
}

/// Which documents a search may return.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Only this chat's documents.
    pub chat_id: Option<i64>,
    /// With `chat_id`: also documents of no chat (daydream insights, general learnings).
    #[serde(default)]
    pub include_shared: bool,
    /// Only these kinds (all when empty).
    #[serde(default)]
    pub kinds: Vec<MemoryKind>,
    /// Unix milliseconds, inclusive.
    pub since_ms: Option<u64>,
    /// Unix milliseconds, exclusive.
    pub until_ms: Option<u64>,
    /// Never these ids (e.g. the messages already in the prompt).
    #[serde(default)]
    pub exclude: Vec<u64>,
}

impl Filter {
    pub fn accepts(&self, entry: &Entry) -> bool {
        let chat_ok = match (self.chat_id, entry.chat_id) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => self.include_shared,
        };
        chat_ok
            && !entry.gone
            && (self.kinds.is_empty() || self.kinds.contains(&entry.kind))
            && self.since_ms.is_none_or(|s| entry.at_ms >= s)
            && self.until_ms.is_none_or(|u| entry.at_ms < u)
            && !self.exclude.contains(&entry.id)
    }

    /// True when no document is filtered out by chat, kind or time.
    pub fn is_open(&self) -> bool {
        self.chat_id.is_none()
            && self.kinds.is_empty()
            && self.since_ms.is_none()
            && self.until_ms.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, kind: MemoryKind, chat_id: Option<i64>, at_ms: u64) -> Entry {
        Entry {
            id,
            kind,
            chat_id,
            at_ms,
            gone: false,
        }
    }

    #[test]
    fn filters_by_chat_kind_time_and_exclusion() {
        let message = entry(1, MemoryKind::Message, Some(5), 100);
        let insight = entry(2, MemoryKind::Insight, None, 200);
        let other = entry(3, MemoryKind::Link, Some(6), 300);
        let all = Filter::default();
        assert!(all.accepts(&message) && all.accepts(&insight) && all.accepts(&other));

        let chat = Filter {
            chat_id: Some(5),
            ..Filter::default()
        };
        assert!(chat.accepts(&message) && !chat.accepts(&insight) && !chat.accepts(&other));
        let shared = Filter {
            include_shared: true,
            ..chat.clone()
        };
        assert!(shared.accepts(&insight) && !shared.accepts(&other));

        let kinds = Filter {
            kinds: vec![MemoryKind::Link, MemoryKind::Insight],
            ..Filter::default()
        };
        assert!(!kinds.accepts(&message) && kinds.accepts(&other));
        let time = Filter {
            since_ms: Some(200),
            until_ms: Some(300),
            ..Filter::default()
        };
        assert!(!time.accepts(&message) && time.accepts(&insight) && !time.accepts(&other));
        let exclude = Filter {
            exclude: vec![2],
            ..Filter::default()
        };
        assert!(!exclude.accepts(&insight));
    }

    #[test]
    fn an_id_is_catalogued_once() {
        let mut catalogue = Catalogue::default();
        assert_eq!(
            catalogue.add(entry(9, MemoryKind::Message, None, 1)),
            Some(0)
        );
        assert_eq!(catalogue.add(entry(9, MemoryKind::Message, None, 1)), None);
        assert_eq!(catalogue.by_id(9).map(|e| e.at_ms), Some(1));
        assert_eq!(catalogue.len(), 1);
        catalogue.add(entry(10, MemoryKind::Learning, None, 2));
        assert_eq!(catalogue.live(MemoryKind::Learning), 1);
        catalogue.remove(10);
        catalogue.remove(10);
        assert_eq!(catalogue.live(MemoryKind::Learning), 0);
        assert_eq!(catalogue.live(MemoryKind::Message), 1);
    }
}
