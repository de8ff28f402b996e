//! What each chat may do in Notion. One operator key serves every chat, so the key alone says
//! nothing about whose data a call may touch: a chat reads only the databases its grant names,
//! and comments only on tasks of those databases, only when its grant says it may. A chat
//! without a grant does not get the tool at all (and is refused if it calls it anyway).

use std::collections::BTreeMap;

use valor_tools::ToolError;

use crate::client::{Database, NotionClient};

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The operator's own process (`valor tools serve notion` with no `--chat`): every
    /// configured database, and Notion's search.
    Operator,
    Chat(i64),
}

/// One chat's grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub databases: Vec<Database>,
    pub comment: bool,
}

/// Every chat's grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotionGrants {
    by_chat: BTreeMap<i64, Grant>,
}

impl NotionGrants {
    pub fn new(by_chat: BTreeMap<i64, Grant>) -> NotionGrants {
        NotionGrants { by_chat }
    }

    /// Whether `chat` gets the tool.
    pub fn has(&self, chat: i64) -> bool {
        self.by_chat.contains_key(&chat)
    }

    fn grant(&self, chat: i64) -> Result<&Grant, ToolError> {
        self.by_chat.get(&chat).ok_or_else(|| {
            ToolError::Refused(
                "Notion is not granted to this chat ([tools.notion.chats])".to_owned(),
            )
        })
    }

    /// The database `workspace` names, if `caller` may read it; `None` for the operator (the
    /// client looks it up as before).
    pub fn readable(&self, caller: Caller, workspace: &str) -> Result<Option<Database>, ToolError> {
        let Caller::Chat(chat) = caller else {
            return Ok(None);
        };
        let grant = self.grant(chat)?;
        let wanted = workspace.trim().to_lowercase();
        match grant
            .databases
            .iter()
            .find(|d| d.title.to_lowercase() == wanted)
        {
            Some(database) => Ok(Some(database.clone())),
            None => Err(ToolError::Refused(format!(
                "this chat may read only these Notion workspaces: {}",
                grant
                    .databases
                    .iter()
                    .map(|d| d.title.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Whether `caller` may comment on page `page_id`: the right in its grant, and the page a
    /// task of one of its databases (asked of Notion).
    pub async fn may_comment(
        &self,
        caller: Caller,
        client: &NotionClient,
        page_id: &str,
    ) -> Result<(), ToolError> {
        let Caller::Chat(chat) = caller else {
            return Ok(());
        };
        let grant = self.grant(chat)?;
        if !grant.comment {
            return Err(ToolError::Refused(
                "this chat may not comment in Notion ([tools.notion.chats] comment)".to_owned(),
            ));
        }
        let parent = client.page_database(page_id).await?;
        let same = |a: &str, b: &str| a.replace('-', "") == b.replace('-', "");
        match parent {
            Some(parent) if grant.databases.iter().any(|d| same(&d.id, &parent)) => Ok(()),
            _ => Err(ToolError::Refused(format!(
                "task {page_id} is not in a Notion database this chat may use"
            ))),
        }
    }
}
