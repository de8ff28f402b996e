//! Learning from conversations as every channel uses it ([`ChatLearning`], core's `Learning`
//! seam): the watcher's question, its answer, `/learnings`, `/forget N` and `/remember <text>`,
//! each answered with the line the chat shows.

use std::sync::Arc;

use valor_core::learning::{Answered, Expired, Learning, Question};
use valor_protocol::learnings::{LearningRecord, rank};
use valor_protocol::proposals::{PROPOSALS_KEPT_MS, Proposal, ProposalState};
use valor_protocol::records::{MemoryKind, MemoryRecord, headline};

use crate::Learner;
use crate::port::LearnStore;
use valor_protocol::time::now_ms;

/// Room for a list in one Telegram message (4096 characters at most).
const LIST_CHARS: usize = 3900;

const SWITCHED_OFF: &str = "Learning is switched off here ([learning] enabled).";

/// Learning from conversations for every channel: the watcher's questions recorded as pending
/// proposals, their answers (a learning through the learner, another memory stored as it is),
/// and the learning commands. Without a learner (`[learning] enabled = false`) it still
/// settles the questions others asked (the daydream's).
#[derive(Clone)]
pub struct ChatLearning {
    store: Arc<dyn LearnStore>,
    learner: Option<Learner>,
    workspaces: Option<valor_chatfs::ChatFs>,
}

impl ChatLearning {
    pub fn new(store: Arc<dyn LearnStore>, learner: Option<Learner>) -> ChatLearning {
        ChatLearning {
            store,
            learner,
            workspaces: None,
        }
    }

    /// Keeps each chat's `LEARNED_INSIGHTS.md` current in its workspace: rewritten on every
    /// change of its learnings.
    pub fn with_workspaces(mut self, chats: valor_chatfs::ChatFs) -> ChatLearning {
        self.workspaces = Some(chats);
        self
    }

    /// Rewrites the chat's `LEARNED_INSIGHTS.md`, when workspaces are kept.
    async fn learnings_changed(&self, chat_id: i64) {
        let Some(folder) = self
            .workspaces
            .as_ref()
            .and_then(|chats| chats.workspace(chat_id).ok())
        else {
            return;
        };
        let written =
            crate::export::write_into_workspace(self.store.as_ref(), chat_id, folder).await;
        if let Err(e) = written {
            tracing::warn!(chat_id, error = %e, "cannot update the workspace's LEARNED_INSIGHTS.md");
        }
    }

    /// A yes: the proposal becomes a learning or a memory; the line that replaces the question.
    async fn keep(&self, proposal: &Proposal) -> Result<String, String> {
        match &self.learner {
            Some(learner) if proposal.kind == MemoryKind::Learning => learner
                .accept(proposal, now_ms())
                .await
                .map(|accepted| accepted.describe())
                .map_err(|e| e.to_string()),
            _ => {
                let record = MemoryRecord {
                    id: 0,
                    kind: proposal.kind,
                    chat_id: Some(proposal.chat_id),
                    at_ms: now_ms(),
                    title: headline(&proposal.text, 80),
                    text: proposal.text.clone(),
                    url: None,
                };
                (self.store.save_memories(vec![record]).await)
                    .map(|_| format!("Remembered: {}", proposal.text))
                    .map_err(|e| e.to_string())
            }
        }
    }
}

#[async_trait::async_trait]
impl Learning for ChatLearning {
    async fn expire(&self, now_ms: u64) -> Vec<Expired> {
        let expired = match self.store.expire_proposals(now_ms).await {
            Ok(expired) => expired,
            Err(e) => {
                tracing::warn!(error = %e, "cannot expire old questions");
                Vec::new()
            }
        };
        let before = now_ms.saturating_sub(PROPOSALS_KEPT_MS);
        if let Err(e) = self.store.purge_proposals(before).await {
            tracing::warn!(error = %e, "cannot purge old questions");
        }
        expired
            .into_iter()
            .map(|proposal| Expired {
                line: proposal.expired_line(),
                question: proposal.question(),
            })
            .collect()
    }

    async fn watch(
        &self,
        chat_id: i64,
        author: Option<i64>,
        text: &str,
        source: &str,
    ) -> Option<Question> {
        // The watcher embeds the message: CPU work, on the blocking pool.
        let learner = self.learner.clone()?;
        let (text, source) = (text.to_owned(), source.to_owned());
        let proposal =
            tokio::task::spawn_blocking(move || learner.watch(chat_id, &text, &source, now_ms()))
                .await
                .ok()??;
        let proposal = Proposal {
            asked_of: author,
            // The question is shown and, on a yes, kept: no secret in either.
            text: valor_redact::redact_owned(proposal.text),
            ..proposal
        };
        match self.store.add_proposal(proposal).await {
            Ok(proposal) => Some(proposal.question()),
            Err(e) => {
                tracing::warn!(chat_id, error = %e, "cannot record a question");
                None
            }
        }
    }

    async fn decide(&self, chat_id: i64, id: u64, yes: bool) -> Answered {
        if yes && let Err(e) = self.store.reopen_proposal(id, chat_id, now_ms()).await {
            tracing::warn!(chat_id, proposal = id, error = %e, "cannot reopen a question");
        }
        self.answer(chat_id, id, yes).await
    }

    async fn answer(&self, chat_id: i64, id: u64, yes: bool) -> Answered {
        let owner = (self.store.proposal(id).await.ok().flatten()).map(|p| p.chat_id);
        if owner.is_some_and(|owner| owner != chat_id) {
            tracing::warn!(
                chat_id,
                proposal = id,
                "an answer to another chat's question; ignored"
            );
            return Answered::only("This question is not yours.");
        }
        match self.store.settle_proposal(id, chat_id, yes, now_ms()).await {
            Ok(Some((ProposalState::Pending, proposal))) => match proposal.state {
                ProposalState::Accepted => match self.keep(&proposal).await {
                    Ok(line) => {
                        self.learnings_changed(chat_id).await;
                        Answered::settled("Remembered.", line)
                    }
                    Err(e) => {
                        tracing::error!(chat_id, error = %e, "cannot keep an accepted proposal");
                        Answered::only("Sorry, I could not store it.")
                    }
                },
                ProposalState::Expired => {
                    Answered::settled("This question has expired.", proposal.expired_line())
                }
                _ => Answered::settled("Not stored.", format!("Not stored: {}", proposal.text)),
            },
            Ok(Some(_)) => Answered::only("Already answered."),
            Ok(None) => Answered::only("This question is no longer open."),
            Err(e) => {
                tracing::error!(chat_id, error = %e, "cannot settle a proposal");
                Answered::only("Sorry, something went wrong.")
            }
        }
    }

    async fn list(&self, chat_id: i64) -> String {
        let Some(learner) = &self.learner else {
            return SWITCHED_OFF.to_owned();
        };
        match learner.list(chat_id).await {
            Ok(learnings) => list_text(learnings),
            Err(e) => format!("Sorry, I cannot read the learnings: {e}"),
        }
    }

    async fn review(&self, chat_id: i64) -> String {
        let Some(learner) = &self.learner else {
            return SWITCHED_OFF.to_owned();
        };
        match learner.to_review(chat_id).await {
            Ok(marked) if marked.is_empty() => {
                "Nothing to review: no learning here has been contradicted.".to_owned()
            }
            Ok(marked) => {
                let head = format!("Contradicted since I learned them ({}):\n", marked.len());
                let lines = marked.iter().map(|l| {
                    let why = l.review.as_deref().unwrap_or_default();
                    format!(
                        "#{} {} (confidence {:.2}) - {why}\n",
                        l.number, l.content, l.confidence
                    )
                });
                let mut out = bounded_list(head, lines, "…and more\n");
                out.push_str("/forget N retires one; /remember <text> confirms it.");
                out
            }
            Err(e) => format!("Sorry, I cannot read the learnings: {e}"),
        }
    }

    async fn forget(&self, chat_id: i64, number: u64) -> String {
        let Some(learner) = &self.learner else {
            return SWITCHED_OFF.to_owned();
        };
        match learner.forget(chat_id, number, now_ms()).await {
            Ok(learning) => {
                self.learnings_changed(chat_id).await;
                format!(
                    "Forgotten #{}: {}\nIt stays in the history (valor learnings export), out of my answers.",
                    learning.number, learning.content
                )
            }
            Err(e) => e.to_string(),
        }
    }

    async fn remember(&self, chat_id: i64, text: &str, source: &str) -> String {
        let Some(learner) = &self.learner else {
            return SWITCHED_OFF.to_owned();
        };
        match learner.remember(chat_id, text, source, now_ms()).await {
            Ok(accepted) => {
                self.learnings_changed(chat_id).await;
                accepted.describe()
            }
            Err(e) => format!("Not stored: {e}"),
        }
    }
}

/// `head` and as many `lines` as fit one Telegram message, then `more` when some did not.
fn bounded_list(head: String, lines: impl Iterator<Item = String>, more: &str) -> String {
    let mut out = head;
    for line in lines {
        if out.chars().count() + line.chars().count() > LIST_CHARS {
            out.push_str(more);
            break;
        }
        out.push_str(&line);
    }
    out
}

/// `/learnings`: highest confidence first, each with the number `/forget` takes.
pub fn list_text(mut learnings: Vec<LearningRecord>) -> String {
    if learnings.is_empty() {
        return "I have learned nothing here yet. When you state a decision or a fact worth \
                keeping, I ask \"Remember this?\"; /remember <text> teaches me directly."
            .to_owned();
    }
    rank(&mut learnings);
    let head = format!("What I learned here ({}):\n", learnings.len());
    let lines = learnings.iter().map(|l| {
        format!(
            "#{} [{}] {} (confidence {:.2}, seen {}×{})\n",
            l.number,
            l.category,
            l.content,
            l.confidence,
            l.times_seen,
            match (l.manual, l.review.is_some()) {
                (_, true) => ", contradicted: /learnings review",
                (true, false) => ", added by you",
                (false, false) => "",
            }
        )
    });
    let mut out = bounded_list(
        head,
        lines,
        "…and more (valor learnings list shows them all)\n",
    );
    out.push_str("/forget N retires one.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use valor_protocol::learnings::Category;

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
