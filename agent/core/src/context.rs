//! The context window (seed 002's ContextWindowManager, made stricter): which earlier messages a
//! turn carries. Every message gets a priority; CRITICAL (system and standing instructions) and
//! HIGH (the user's questions) are always kept verbatim, as are the most recent messages; older
//! MEDIUM and LOW runs are folded into deterministic extractive summaries; then the token budget
//! is enforced by dropping the oldest summaries. Each call reports its figures.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
pub use valor_protocol::{ContextMessage, Role};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Critical,
}

/// What goes into the turn: a message kept as it was, or a summary of a run of messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContextItem {
    Message {
        message: ContextMessage,
        priority: Priority,
    },
    Summary {
        /// Ids of the first and last message it covers.
        first_id: u64,
        last_id: u64,
        count: usize,
        text: String,
    },
}

impl ContextItem {
    pub fn tokens(&self) -> usize {
        match self {
            ContextItem::Message { message, .. } => estimate_tokens(&message.text),
            ContextItem::Summary { text, .. } => estimate_tokens(text),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextLimits {
    /// Tokens the history may take.
    pub token_budget: usize,
    /// The most recent messages are always kept verbatim.
    pub keep_recent: usize,
    /// Messages folded into one summary at most.
    pub summary_batch: usize,
    /// Characters of one summary at most.
    pub summary_chars: usize,
}

impl Default for ContextLimits {
    fn default() -> Self {
        ContextLimits {
            token_budget: 6000,
            keep_recent: 8,
            summary_batch: 100,
            summary_chars: 240,
        }
    }
}

/// Figures of one optimisation (shown in /status and /metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextFigures {
    pub messages_before: usize,
    pub messages_after: usize,
    pub tokens_before: usize,
    pub tokens_after: usize,
    /// Messages folded into summaries.
    pub summarized: usize,
    /// Summaries dropped to meet the budget.
    pub dropped_summaries: usize,
    /// Tokens of each long-term memory layer in the prompt.
    #[serde(default)]
    pub memory: crate::recall::LayerTokens,
}

impl ContextFigures {
    /// Fraction of tokens removed, 0-1.
    pub fn reduction(&self) -> f64 {
        if self.tokens_before == 0 {
            return 0.0;
        }
        1.0 - self.tokens_after as f64 / self.tokens_before as f64
    }
}

/// Tokens of a text, estimated: about four characters a token for English prose, never zero for
/// a non-empty text. Deterministic and cheap; the budget has slack for the estimate's error.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

const INSTRUCTION_MARKERS: &[&str] = &[
    "always ",
    "never ",
    "from now on",
    "remember that",
    "remember:",
    "rule:",
    "don't ever",
    "do not ever",
    "make sure to always",
    "important:",
];
const QUESTION_STARTS: &[&str] = &[
    "what ",
    "why ",
    "how ",
    "when ",
    "where ",
    "which ",
    "who ",
    "can you",
    "could you",
    "would you",
    "should ",
    "is ",
    "are ",
    "do ",
    "does ",
    "did ",
    "will ",
    "please ",
];
const NOISE: &[&str] = &[
    "ok",
    "okay",
    "k",
    "thanks",
    "thank you",
    "thx",
    "ty",
    "cool",
    "nice",
    "great",
    "lol",
    "haha",
    "yes",
    "no",
    "yep",
    "nope",
    "sure",
    "got it",
    "👍",
    "🙏",
    "😂",
    "hm",
    "hmm",
];

/// The priority of a message, given how many messages come after it.
pub fn classify(message: &ContextMessage, from_end: usize, limits: &ContextLimits) -> Priority {
    if message.role == Role::System {
        return Priority::Critical;
    }
    let text = message.text.trim();
    if message.role == Role::User {
        // Lower-casing copies the text: only user messages need the full scan. The markers are
        // ASCII, so ASCII lower-casing (much cheaper than Unicode's) is enough.
        let lower = text.to_ascii_lowercase();
        if INSTRUCTION_MARKERS.iter().any(|m| lower.contains(m)) {
            return Priority::Critical;
        }
        if lower.ends_with('?') || QUESTION_STARTS.iter().any(|q| lower.starts_with(q)) {
            return Priority::High;
        }
    }
    if from_end >= limits.keep_recent * 4 || is_noise(text) {
        return Priority::Low;
    }
    Priority::Medium
}

/// Acknowledgements and reactions ("ok", "thanks!", "👍").
fn is_noise(text: &str) -> bool {
    if text.len() > 16 {
        return false;
    }
    let trimmed = text
        .trim_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_ascii_lowercase();
    trimmed.is_empty() || NOISE.contains(&trimmed.as_str())
}

/// Summaries kept between turns. A full batch of old messages never changes, so its summary is
/// made once; a turn only summarises the batch that grew, whose new summary replaces the old
/// (a batch is known by its first message), so the cache holds one summary a batch.
#[derive(Debug, Default, Clone)]
pub struct SummaryCache {
    /// first id -> (last id, count, summary text).
    kept: HashMap<u64, (u64, usize, String)>,
}

impl SummaryCache {
    /// Summaries kept at most; past that the cache starts over (a chat this long re-summarises
    /// once).
    const CAPACITY: usize = 4096;

    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Forgets every summary but those of the batches starting at `first_ids`.
    fn keep_only(&mut self, first_ids: impl Iterator<Item = u64>) {
        let used: Vec<u64> = first_ids.collect();
        self.kept.retain(|first, _| used.contains(first));
    }

    fn summary(&mut self, run: &[&ContextMessage], max_chars: usize) -> String {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return String::new();
        };
        if let Some((kept_last, count, text)) = self.kept.get(&first.id)
            && *kept_last == last.id
            && *count == run.len()
        {
            return text.clone();
        }
        if self.kept.len() >= Self::CAPACITY {
            self.kept.clear();
        }
        let text = summarize(run, max_chars);
        self.kept
            .insert(first.id, (last.id, run.len(), text.clone()));
        text
    }
}

/// Chooses what of `messages` (oldest first) a turn carries.
pub fn optimize(
    messages: &[ContextMessage],
    limits: &ContextLimits,
) -> (Vec<ContextItem>, ContextFigures) {
    optimize_with(messages, limits, &mut SummaryCache::default())
}

/// [`optimize`], keeping summaries in `cache` for the next turn.
pub fn optimize_with(
    messages: &[ContextMessage],
    limits: &ContextLimits,
    cache: &mut SummaryCache,
) -> (Vec<ContextItem>, ContextFigures) {
    let n = messages.len();
    let mut figures = ContextFigures {
        messages_before: n,
        tokens_before: messages.iter().map(|m| estimate_tokens(&m.text)).sum(),
        ..ContextFigures::default()
    };
    let mut items: Vec<ContextItem> = Vec::new();
    let mut run: Vec<&ContextMessage> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let from_end = n - 1 - i;
        let priority = classify(message, from_end, limits);
        let keep = priority >= Priority::High || from_end < limits.keep_recent;
        if keep {
            flush_run(&mut run, &mut items, limits, &mut figures, cache);
            items.push(ContextItem::Message {
                message: message.clone(),
                priority,
            });
        } else {
            run.push(message);
            if run.len() >= limits.summary_batch {
                flush_run(&mut run, &mut items, limits, &mut figures, cache);
            }
        }
    }
    flush_run(&mut run, &mut items, limits, &mut figures, cache);
    // Only this window's batches are worth keeping: a window that slides makes new ones, and
    // the old would pile up with every turn.
    cache.keep_only(items.iter().filter_map(|item| match item {
        ContextItem::Summary { first_id, .. } => Some(*first_id),
        ContextItem::Message { .. } => None,
    }));

    // Over budget: drop summaries, oldest first. Kept messages stay, whatever the budget.
    let mut total: usize = items.iter().map(ContextItem::tokens).sum();
    let mut index = 0;
    while total > limits.token_budget && index < items.len() {
        if matches!(items[index], ContextItem::Summary { .. }) {
            total -= items[index].tokens();
            items.remove(index);
            figures.dropped_summaries += 1;
        } else {
            index += 1;
        }
    }
    figures.messages_after = items.len();
    figures.tokens_after = total;
    (items, figures)
}

fn flush_run(
    run: &mut Vec<&ContextMessage>,
    items: &mut Vec<ContextItem>,
    limits: &ContextLimits,
    figures: &mut ContextFigures,
    cache: &mut SummaryCache,
) {
    let (Some(first), Some(last)) = (run.first(), run.last()) else {
        return;
    };
    figures.summarized += run.len();
    items.push(ContextItem::Summary {
        first_id: first.id,
        last_id: last.id,
        count: run.len(),
        text: cache.summary(run, limits.summary_chars),
    });
    run.clear();
}

/// An extractive summary: the sentences that carry the run's most frequent content words, in
/// their original order, within `max_chars`. Same input, same summary.
pub fn summarize(run: &[&ContextMessage], max_chars: usize) -> String {
    struct Sentence<'a> {
        text: &'a str,
        role: Role,
        /// This sentence's words in `words`.
        words: std::ops::Range<usize>,
    }
    let mut frequency: WordCounts<'_> = HashMap::default();
    let mut words: Vec<&str> = Vec::new();
    let mut sentences: Vec<Sentence<'_>> = Vec::new();
    for message in run {
        for_each_sentence(&message.text, |text| {
            let text = text.trim();
            if text.len() <= 3 {
                return;
            }
            let first = words.len();
            push_words(text, &mut words);
            for word in &words[first..] {
                *frequency.entry(word).or_default() += 1;
            }
            sentences.push(Sentence {
                text,
                role: message.role,
                words: first..words.len(),
            });
        });
    }
    let mut scored: Vec<(usize, usize)> = sentences
        .iter()
        .enumerate()
        .map(|(position, sentence)| {
            let own = &words[sentence.words.clone()];
            let total: usize = own
                .iter()
                .map(|w| frequency.get(w).copied().unwrap_or(0))
                .sum();
            (total * 100 / (own.len() + 1), position)
        })
        .collect();
    // Highest score first; ties go to the earlier sentence, so the order is total.
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let header = format!("[summary of {} earlier messages] ", run.len());
    let mut budget = max_chars.saturating_sub(header.len());
    let mut chosen: Vec<usize> = Vec::new();
    for (_, position) in scored {
        // "U: " before the sentence and one space between sentences.
        let cost = sentences[position].text.len() + 4;
        if cost <= budget {
            budget -= cost;
            chosen.push(position);
        }
        if budget < 8 {
            break;
        }
    }
    chosen.sort_unstable();
    let mut out = header;
    for (i, position) in chosen.into_iter().enumerate() {
        let sentence = &sentences[position];
        if i > 0 {
            out.push(' ');
        }
        out.push_str(match sentence.role {
            Role::User => "U: ",
            Role::Assistant => "A: ",
            Role::System => "S: ",
        });
        out.push_str(sentence.text);
    }
    out
}

/// Word counts with FNV-1a hashing: SipHash's DoS resistance buys nothing for a chat's own
/// words and costs most of the summariser's time.
type WordCounts<'a> = HashMap<&'a str, usize, std::hash::BuildHasherDefault<Fnv>>;

#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// Calls `f` with each sentence of `text` (ending at `.`, `!`, `?` or a newline, inclusive).
/// Scans bytes: the ends are ASCII, so every slice is at a char boundary.
fn for_each_sentence<'a>(text: &'a str, mut f: impl FnMut(&'a str)) {
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        if matches!(byte, b'.' | b'!' | b'?' | b'\n') {
            f(&text[start..=i]);
            start = i + 1;
        }
    }
    if start < text.len() {
        f(&text[start..]);
    }
}

/// Pushes the words of `sentence` longer than three bytes. Splits on ASCII non-alphanumerics
/// only: bytes of multi-byte characters count as word bytes, so no UTF-8 sequence is cut.
fn push_words<'a>(sentence: &'a str, out: &mut Vec<&'a str>) {
    let mut start: Option<usize> = None;
    for (i, byte) in sentence.bytes().enumerate() {
        let in_word = byte >= 0x80 || byte.is_ascii_alphanumeric();
        match (in_word, start) {
            (true, None) => start = Some(i),
            (false, Some(first)) => {
                if i - first > 3 {
                    out.push(&sentence[first..i]);
                }
                start = None;
            }
            _ => {}
        }
    }
    if let Some(first) = start
        && sentence.len() - first > 3
    {
        out.push(&sentence[first..]);
    }
}

/// A long chat for tests and benchmarks: a system prompt, one standing instruction, a question
/// every 100 messages, and ordinary talk in between.
pub fn example_chat(n: usize) -> Vec<ContextMessage> {
    let msg = |id: u64, role: Role, text: &str| ContextMessage {
        id,
        role,
        text: text.to_owned(),
    };
    (0..n as u64)
        .map(|i| match i {
            0 => msg(i, Role::System, "You are Valor, a development assistant."),
            5 => msg(i, Role::User, "From now on, always run the tests before you commit."),
            i if i % 100 == 50 => msg(i, Role::User, &format!("How should we handle case {i}?")),
            i if i % 2 == 0 => msg(
                i,
                Role::User,
                &format!(
                    "I looked at module {} again and the parser change seems fine. The logs show \
                     nothing unusual after the deploy, only the usual warnings from the cache layer.",
                    i % 7
                ),
            ),
            _ => msg(
                i,
                Role::Assistant,
                &format!(
                    "Noted. The parser for module {} handles that input, and the cache warnings are \
                     harmless: they come from the warm-up after each deploy. I will keep an eye on it.",
                    i % 7
                ),
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: u64, role: Role, text: &str) -> ContextMessage {
        ContextMessage {
            id,
            role,
            text: text.to_owned(),
        }
    }

    #[test]
    fn priorities() {
        let limits = ContextLimits::default();
        let table = [
            (Role::System, "You are Valor", 100, Priority::Critical),
            (
                Role::User,
                "From now on, always answer in French.",
                100,
                Priority::Critical,
            ),
            (Role::User, "How do I deploy this?", 100, Priority::High),
            (Role::User, "the build is green", 100, Priority::Low),
            (Role::User, "the build is green", 3, Priority::Medium),
            (Role::User, "thanks!", 1, Priority::Low),
            (Role::Assistant, "Deployed to staging.", 2, Priority::Medium),
        ];
        for (role, text, from_end, expected) in table {
            assert_eq!(
                classify(&msg(1, role, text), from_end, &limits),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn a_long_chat_shrinks_by_97_percent_keeping_every_critical_and_high_message() {
        let chat = example_chat(1000);
        let limits = ContextLimits::default();
        let (items, figures) = optimize(&chat, &limits);
        assert!(figures.reduction() >= 0.97, "{figures:?}");
        assert!(figures.tokens_after <= limits.token_budget, "{figures:?}");
        for (i, message) in chat.iter().enumerate() {
            let priority = classify(message, chat.len() - 1 - i, &limits);
            if priority >= Priority::High {
                assert!(
                    items.iter().any(|it| matches!(it, ContextItem::Message { message: m, .. } if m.id == message.id)),
                    "message {} ({priority:?}) was not kept",
                    message.id
                );
            }
        }
        // The most recent messages are kept verbatim, in order, at the end.
        let tail: Vec<u64> = items
            .iter()
            .rev()
            .take(limits.keep_recent)
            .filter_map(|it| match it {
                ContextItem::Message { message, .. } => Some(message.id),
                _ => None,
            })
            .collect();
        assert_eq!(tail, (992..1000).rev().collect::<Vec<u64>>());
        assert_eq!(figures.messages_before, 1000);
        assert_eq!(figures.messages_after, items.len());
    }

    #[test]
    fn summaries_are_deterministic_and_bounded() {
        let chat = example_chat(120);
        let run: Vec<&ContextMessage> = chat[10..60].iter().collect();
        let a = summarize(&run, 300);
        assert_eq!(a, summarize(&run, 300));
        assert!(a.len() <= 300, "{}", a.len());
        assert!(a.starts_with("[summary of 50 earlier messages] "), "{a}");
    }

    #[test]
    fn kept_summaries_give_the_same_result_and_only_the_grown_batch_is_new() {
        let chat = example_chat(1000);
        let limits = ContextLimits::default();
        let mut cache = SummaryCache::default();
        let before = optimize_with(&chat[..999], &limits, &mut cache);
        let kept = cache.len();
        let with_cache = optimize_with(&chat, &limits, &mut cache);
        assert_eq!(
            with_cache,
            optimize(&chat, &limits),
            "a kept summary is the summary"
        );
        assert!(
            cache.len() <= kept + 1,
            "one new summary at most: {kept} -> {}",
            cache.len()
        );
        assert_ne!(before.0, with_cache.0);
    }

    #[test]
    fn a_batch_that_grows_turn_after_turn_keeps_one_summary() {
        let chat = example_chat(1200);
        let limits = ContextLimits::default();
        let mut cache = SummaryCache::default();
        optimize_with(&chat[..1000], &limits, &mut cache);
        let batches = cache.len();
        for end in 1001..=1100 {
            let with_cache = optimize_with(&chat[..end], &limits, &mut cache);
            assert_eq!(with_cache, optimize(&chat[..end], &limits));
        }
        assert!(
            cache.len() <= batches + 100 / 10,
            "{batches} summaries grew to {} over 100 turns",
            cache.len()
        );
    }

    #[test]
    fn a_sliding_window_keeps_only_its_own_summaries() {
        let chat = example_chat(1400);
        let limits = ContextLimits::default();
        let mut cache = SummaryCache::default();
        let mut most = 0;
        // The engine's window: the last 200 messages, two more every turn.
        for end in (200..=1400).step_by(2) {
            let window = &chat[end - 200..end];
            let with_cache = optimize_with(window, &limits, &mut cache);
            assert_eq!(with_cache, optimize(window, &limits));
            let summaries = (with_cache.0.iter())
                .filter(|i| matches!(i, ContextItem::Summary { .. }))
                .count();
            assert!(cache.len() <= summaries.max(1) + 1, "{} kept", cache.len());
            most = most.max(cache.len());
        }
        assert!(most > 0, "the window was summarised");
    }

    #[test]
    fn a_short_chat_is_untouched() {
        let chat = example_chat(6);
        let (items, figures) = optimize(&chat, &ContextLimits::default());
        assert_eq!(items.len(), 6);
        assert_eq!(figures.tokens_before, figures.tokens_after);
        assert_eq!(figures.summarized, 0);
    }

    #[test]
    fn the_budget_drops_summaries_oldest_first_never_kept_messages() {
        let chat = example_chat(1000);
        let limits = ContextLimits {
            token_budget: 10,
            ..ContextLimits::default()
        };
        let (items, figures) = optimize(&chat, &limits);
        assert!(
            items
                .iter()
                .all(|it| matches!(it, ContextItem::Message { .. }))
        );
        assert!(figures.dropped_summaries > 0);
    }
}
