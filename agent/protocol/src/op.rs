//! What a channel asks of the conversation service.

use std::future::Future;
use std::pin::Pin;

/// Who wrote a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub user_id: i64,
    pub username: Option<String>,
}

/// Work done when a turn reaches the head of its chat's queue (a file's download): the text
/// to answer, or a refusal to show the user.
pub type Prepare = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// A user's message to answer.
pub struct UserTurn {
    pub chat_id: i64,
    pub author: Option<Author>,
    pub text: String,
    /// Where it came from (`tg:<update_id>`), so a replay stores it once.
    pub source: Option<String>,
    pub prepare: Option<Prepare>,
    /// Whether the learning watcher may ask "Remember this?" about it (not where nobody could
    /// answer: `valor chat --once`).
    pub ask: bool,
    /// The chat's name where it came from (a Telegram group's title), kept with the chat.
    pub chat_title: Option<String>,
}

impl UserTurn {
    pub fn new(chat_id: i64, text: impl Into<String>) -> UserTurn {
        UserTurn {
            chat_id,
            author: None,
            text: text.into(),
            source: None,
            prepare: None,
            ask: true,
            chat_title: None,
        }
    }
}

/// A chat command the service answers with a [`crate::Event::Reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/status`: what the chat's turn is doing, the queue, the session.
    Status,
    /// `/learnings` (`review`: the contradicted ones).
    Learnings { review: bool },
    /// `/forget N` (`None`: no number was given).
    Forget(Option<u64>),
    /// `/remember <text>`.
    Remember(String),
    /// `/cost`: what this chat and its user spent today and this month, against the caps.
    Cost,
}

impl Command {
    /// The command a line starts with (`/forget 3`), if it is one of these; `args` is what
    /// follows the command word.
    pub fn parse(name: &str, args: &str) -> Option<Command> {
        let args = args.trim();
        Some(match name {
            "/status" => Command::Status,
            "/learnings" => Command::Learnings {
                review: args.eq_ignore_ascii_case("review"),
            },
            "/forget" => Command::Forget(args.trim_start_matches('#').parse().ok()),
            "/remember" => Command::Remember(args.to_owned()),
            "/cost" => Command::Cost,
            _ => return None,
        })
    }
}

/// What a channel asks of the service.
pub enum Op {
    UserTurn(UserTurn),
    /// Stop the chat's running turn (`/stop`, the Stop button, Ctrl-C).
    Interrupt {
        chat_id: i64,
    },
    /// The chat's next turn starts a new conversation (`/new`).
    NewConversation {
        chat_id: i64,
    },
    /// A yes or no to a "Remember this?" question (a button press, or the operator on the
    /// dashboard: then a yes also takes a declined or expired question, and the chat's channel
    /// is told to settle the question's message).
    Answer {
        chat_id: i64,
        question: u64,
        yes: bool,
        operator: bool,
    },
    /// A person's answer to an approval (a button press in the chat it was asked in, a typed
    /// answer in `valor chat`); `by` is who pressed it (`None`: the terminal's user). The
    /// channel has checked that `by` may decide in this chat.
    Decide {
        chat_id: i64,
        approval: u64,
        decision: crate::approval::Decision,
        by: Option<i64>,
    },
    /// [Allow more] on a budget notice: raises the cap `key` for its current period by one
    /// step. The channel has checked that `by` is an approver or an admin; `anywhere`: an
    /// admin, who may raise any cap from any chat (else only this chat's, a user's, the
    /// global one).
    AllowMore {
        chat_id: i64,
        key: crate::budget::CapKey,
        by: Option<i64>,
        anywhere: bool,
    },
    /// A chat command; `source` names where it came from (`tg:<update_id>`), `by` who sent
    /// it (`None`: the console, the dashboard).
    Command {
        chat_id: i64,
        command: Command,
        source: String,
        by: Option<i64>,
    },
}
