//! The learner as a chat channel uses it ([`Learning`]): the watcher's question, a "yes",
//! `/learnings`, `/forget N` and `/remember <text>`, each answered with the line the chat shows.

use valor_memory::learnings::rank;
use valor_memory::proposals::Learning;
use valor_memory::{LearningRecord, Proposal};

use crate::Learner;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Room for a list in one Telegram message (4096 characters at most).
const LIST_CHARS: usize = 3900;

impl Learning for Learner {
    fn watch(&self, chat_id: i64, text: &str, source: &str) -> Option<Proposal> {
        Learner::watch(self, chat_id, text, source, now_ms())
    }

    fn accept(&self, proposal: &Proposal) -> Result<String, String> {
        (Learner::accept(self, proposal, now_ms()))
            .map(|accepted| accepted.describe())
            .map_err(|e| e.to_string())
    }

    fn list(&self, chat_id: i64) -> String {
        match Learner::list(self, chat_id) {
            Ok(learnings) => list_text(learnings),
            Err(e) => format!("Sorry, I cannot read the learnings: {e}"),
        }
    }

    fn forget(&self, chat_id: i64, number: u64) -> String {
        match Learner::forget(self, chat_id, number, now_ms()) {
            Ok(learning) => format!(
                "Forgotten #{}: {}\nIt stays in the history (valor learnings export), out of my answers.",
                learning.number, learning.content
            ),
            Err(e) => e.to_string(),
        }
    }

    fn remember(&self, chat_id: i64, text: &str, source: &str) -> String {
        match Learner::remember(self, chat_id, text, source, now_ms()) {
            Ok(accepted) => accepted.describe(),
            Err(e) => format!("Not stored: {e}"),
        }
    }
}

/// `/learnings`: highest confidence first, each with the number `/forget` takes.
pub fn list_text(mut learnings: Vec<LearningRecord>) -> String {
    if learnings.is_empty() {
        return "I have learned nothing here yet. When you state a decision or a fact worth \
                keeping, I ask \"Remember this?\"; /remember <text> teaches me directly."
            .to_owned();
    }
    rank(&mut learnings);
    let mut out = format!("What I learned here ({}):\n", learnings.len());
    for l in &learnings {
        let line = format!(
            "#{} [{}] {} (confidence {:.2}, seen {}×{})\n",
            l.number,
            l.category,
            l.content,
            l.confidence,
            l.times_seen,
            if l.manual { ", added by you" } else { "" }
        );
        if out.chars().count() + line.chars().count() > LIST_CHARS {
            out.push_str("…and more (valor learnings list shows them all)\n");
            break;
        }
        out.push_str(&line);
    }
    out.push_str("/forget N retires one.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use valor_memory::Category;

    #[test]
    fn a_long_list_fits_one_message() {
        let learnings: Vec<LearningRecord> = (1..=300)
            .map(|n| LearningRecord {
                id: n,
                number: n,
                ..LearningRecord::new(
                    Some(1),
                    Category::Gotcha,
                    &format!("Learning number {n} about something worth knowing"),
                    "",
                    false,
                    n,
                )
            })
            .collect();
        let text = list_text(learnings);
        assert!(text.chars().count() <= 4096);
        assert!(text.starts_with("What I learned here (300):\n#300 [gotcha]"));
        assert!(text.ends_with("/forget N retires one."));
        assert!(list_text(Vec::new()).starts_with("I have learned nothing"));
    }
}
