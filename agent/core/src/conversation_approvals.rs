//! The conversation service's side of approvals: an effect's question goes into the chat's
//! running turn (so the channel showing the turn shows it), the answer comes back as an op.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use valor_protocol::approval::{Approval, ApprovalAsk, AskPerson, Decision};
use valor_protocol::{Event, StoreFailure};

use super::Conversations;
use crate::approvals::{
    ApprovalLog, Approvals, Waited, decided_word, is_personal, record_of, settled_line,
};

impl Conversations {
    /// Keeps every approval in `log` (once).
    pub fn set_approval_log(&self, log: Arc<dyn ApprovalLog>) {
        self.inner.approvals.set_log(log);
    }

    /// Whether the chat's running turn waits for a person's approval (its silence meanwhile
    /// is not a stalled turn).
    pub fn waiting_for_person(&self, chat_id: i64) -> bool {
        self.inner.approvals.waiting_in(chat_id)
    }

    /// The audit log's newest approvals (of one chat or all), for the dashboard.
    pub async fn approvals(
        &self,
        chat_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<valor_protocol::approval::ApprovalRecord>, StoreFailure> {
        match self.inner.approvals.log() {
            Some(log) => log.latest(chat_id, limit).await,
            None => Ok(Vec::new()),
        }
    }

    /// Asks the person reading the chat whether `ask` may happen, and waits for the answer
    /// (no answer in time denies; so does a chat nobody is reading: no turn of it is running).
    pub async fn ask_approval(&self, ask: ApprovalAsk) -> Decision {
        let approvals = &self.inner.approvals;
        let chat_id = ask.chat_id;
        if approvals.granted(&ask) {
            self.keep(record_of(
                Approvals::new_id(),
                &ask,
                approvals.settings.node.as_deref(),
                Some(Decision::SessionGrant),
            ))
            .await;
            tracing::info!(chat_id, tool = %ask.tool, "approval: allowed by a session grant");
            return Decision::SessionGrant;
        }
        let running = {
            let chats = self.chats();
            chats
                .get(&chat_id)
                .and_then(|q| Some((q.events.clone()?, q.running.clone()?)))
        };
        let Some((events, stopped)) = running else {
            self.keep(record_of(
                Approvals::new_id(),
                &ask,
                approvals.settings.node.as_deref(),
                Some(Decision::Unattended),
            ))
            .await;
            tracing::warn!(chat_id, tool = %ask.tool, "approval: nobody to ask; denied");
            return Decision::Unattended;
        };
        let id = Approvals::new_id();
        let timeout = approvals.settings.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let deadline_ms = valor_protocol::time::now_ms() + timeout.as_millis() as u64;
        let here = approvals.open(id, chat_id);
        self.keep(record_of(
            id,
            &ask,
            approvals.settings.node.as_deref(),
            None,
        ))
        .await;
        tracing::info!(chat_id, approval = id, tool = %ask.tool, kind = ask.kind.as_str(), "approval asked");
        let remind_ms = (approvals.settings.remind_after)
            .filter(|after| *after < timeout)
            .map(|after| valor_protocol::time::now_ms() + after.as_millis() as u64);
        let approval = Approval {
            id,
            ask: ask.clone(),
            deadline_ms,
            remind_ms,
        };
        if events.send(Event::ApprovalNeeded(approval)).await.is_err() {
            approvals.close(id);
            self.settle(id, Decision::Unattended, None).await;
            return Decision::Unattended;
        }
        let (decision, by) = match approvals.wait(id, here, deadline, stopped).await {
            Waited::Answered(answer) => answer,
            Waited::TimedOut => (Decision::TimedOut, None),
            Waited::Stopped => (Decision::Deny, None),
        };
        approvals.close(id);
        // The log decides a race (a press on another node as the time ran out).
        let (decision, by) = self
            .settle(id, decision, by)
            .await
            .unwrap_or((decision, by));
        if decision == Decision::AllowSession {
            approvals.grant(&ask);
        }
        tracing::info!(chat_id, approval = id, decision = decision.as_str(), by = ?by, "approval decided");
        let line = settled_line(decision, by, &ask);
        let _ = events
            .send(Event::ApprovalSettled { id, decision, line })
            .await;
        decision
    }

    /// A person's answer from a channel (the channel checked they may give it).
    pub(super) async fn decide(
        &self,
        chat_id: i64,
        id: u64,
        decision: Decision,
        by: Option<i64>,
    ) -> String {
        if !is_personal(decision) {
            return "That is not an answer.".to_owned();
        }
        match self.inner.approvals.answer_here(id, chat_id, decision, by) {
            Some(true) => return decided_word(decision),
            Some(false) => return "This approval is not from this chat.".to_owned(),
            None => {}
        }
        // Asked on another node (or gone): the shared log decides, first answer wins.
        let Some(log) = self.inner.approvals.log().filter(|_| self.shared()) else {
            return "This approval is no longer open.".to_owned();
        };
        match log.get(id).await {
            Ok(Some(record)) if record.chat_id != chat_id => {
                "This approval is not from this chat.".to_owned()
            }
            Ok(Some(record)) if record.decision.is_some() => "Already decided.".to_owned(),
            Ok(Some(_)) => match self.settle(id, decision, by).await {
                Some((stored, _)) if stored == decision => decided_word(decision),
                Some(_) => "Already decided.".to_owned(),
                None => "This approval could not be decided; try again.".to_owned(),
            },
            Ok(None) => "This approval is no longer open.".to_owned(),
            Err(e) => {
                tracing::warn!(chat_id, approval = id, error = %e, "cannot read an approval");
                "This approval could not be decided; try again.".to_owned()
            }
        }
    }

    fn shared(&self) -> bool {
        self.inner.approvals.settings.shared
    }

    /// Decides `id` in the log (first wins): the decision that stands, `None` without a log
    /// or when it cannot be written.
    async fn settle(
        &self,
        id: u64,
        decision: Decision,
        by: Option<i64>,
    ) -> Option<(Decision, Option<i64>)> {
        let log = self.inner.approvals.log()?;
        let now = valor_protocol::time::now_ms();
        match log.settle(id, decision, by, now).await {
            Ok(Some(record)) => record.decision.map(|d| (d, record.by)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(approval = id, error = %e, "cannot keep an approval's decision");
                None
            }
        }
    }

    async fn keep(&self, record: valor_protocol::approval::ApprovalRecord) {
        if let Some(log) = self.inner.approvals.log()
            && let Err(e) = log.record(&record).await
        {
            tracing::warn!(chat_id = record.chat_id, approval = record.id, error = %e, "cannot keep an approval in the audit log");
        }
    }
}

impl AskPerson for Conversations {
    fn ask(&self, ask: ApprovalAsk) -> Pin<Box<dyn Future<Output = Decision> + Send + '_>> {
        Box::pin(self.ask_approval(ask))
    }
}
