//! The conversation service's side of spend caps: `/cost` and [Allow more].

use super::Conversations;

impl Conversations {
    /// The budget the engine's backend was wrapped with, for `/cost` and [Allow more] (once).
    pub fn set_budget(&self, budget: crate::budget::Budget) {
        let _ = self.inner.budget.set(budget);
    }

    pub fn budget(&self) -> Option<&crate::budget::Budget> {
        self.inner.budget.get()
    }

    /// `/cost`: the chat's and its user's spend against the caps.
    pub(super) async fn cost(&self, chat_id: i64, by: Option<i64>) -> String {
        let Some(budget) = self.budget() else {
            return "Spend is not counted here.".to_owned();
        };
        budget.report(chat_id, by).await.unwrap_or_else(|e| {
            tracing::warn!(chat_id, error = %e, "cannot read the spend counters");
            "I can't read the spend counters right now; try again in a moment.".to_owned()
        })
    }

    /// [Allow more] pressed in `chat_id` (the channel checked that `by` is an approver or an
    /// admin): an approver raises the cap of the chat it is pressed in, an admin (`anywhere`)
    /// any chat's, a user's or the overall one.
    pub(super) async fn allow_more(
        &self,
        chat_id: i64,
        key: valor_protocol::budget::CapKey,
        by: Option<i64>,
        anywhere: bool,
    ) -> String {
        use valor_protocol::budget::Scope;
        let Some(budget) = self.budget() else {
            return "Spend is not capped here.".to_owned();
        };
        // An approver raises this chat's cap only; a user's or Valor's overall cap is an
        // admin's to raise (deny by default: a forged press names any cap).
        let theirs = anywhere || key.scope == Scope::Chat(chat_id);
        if !theirs || matches!(key.scope, Scope::Job(_)) {
            tracing::warn!(chat_id, by, cap = %key.code(), "a cap of another chat was pressed; refused");
            return "This cap is not this chat's to raise (an admin's).".to_owned();
        }
        match budget.allow_more(key, by).await {
            Ok(said) => said,
            Err(e) => {
                tracing::warn!(chat_id, error = %e, "cannot raise the cap");
                "I can't raise the cap right now; try again in a moment.".to_owned()
            }
        }
    }
}
