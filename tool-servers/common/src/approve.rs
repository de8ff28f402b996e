//! Tools with an effect beyond the chat (a paid call, a comment in Notion) ask the chat's
//! person first when the agent hosts them; the operator's own stdio server does not ask.

use std::sync::Arc;

use valor_protocol::approval::{ApprovalAsk, ApprovalKind, AskPerson, denial_message};

use crate::ToolError;

/// Who is asked (the conversation service, in `valor run`); `None`: nobody is asked.
pub type People = Option<Arc<dyn AskPerson>>;

/// Asks `people` whether `tool` may do `what` in `chat_id`; a refusal says why.
pub async fn approve(
    people: &People,
    chat_id: i64,
    tool: &str,
    what: String,
    sentence: String,
) -> Result<(), ToolError> {
    let Some(people) = people else {
        return Ok(());
    };
    let ask = ApprovalAsk {
        chat_id,
        kind: ApprovalKind::Effect,
        tool: tool.to_owned(),
        exact: what.clone(),
        what,
        sentence,
        claimed: None,
    };
    let decision = people.ask(ask).await;
    if decision.allows() {
        Ok(())
    } else {
        Err(ToolError::Refused(denial_message(decision).to_owned()))
    }
}
