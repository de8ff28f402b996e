//! The whole store as [`DumpRecord`]s (`valor backup`, `valor store migrate`), and taking a
//! dump's records in with their ids. The order a dump is written in is one a fresh store can
//! take: documents before their vectors, learnings with their memories.

use valor_protocol::dump::DumpRecord;
use valor_protocol::records::MemoryKind;

use super::{Store, decode};
use crate::StoreError;

impl Store {
    /// Every record, in dump order, to `visit` (false stops the walk).
    pub fn dump(&self, mut visit: impl FnMut(DumpRecord) -> bool) -> Result<(), StoreError> {
        for message in self.all_messages() {
            if !visit(DumpRecord::Message(message?)) {
                return Ok(());
            }
        }
        for kind in MemoryKind::SAVED {
            // A learning's memory comes with its learning.
            if kind == MemoryKind::Learning {
                continue;
            }
            for record in self.memory_records(kind)? {
                if !visit(DumpRecord::Memory(record)) {
                    return Ok(());
                }
            }
        }
        for learning in self.all_learnings()? {
            if !visit(DumpRecord::Learning(learning)) {
                return Ok(());
            }
        }
        let mut going = true;
        self.walk_vectors(|id, v| {
            going = visit(DumpRecord::Vector {
                id,
                model_id: v.model_id,
                vector: v.vector,
            });
            going
        })?;
        if !going {
            return Ok(());
        }
        let mut proposals = self.latest_proposals(usize::MAX)?;
        proposals.reverse();
        for proposal in proposals {
            if !visit(DumpRecord::Proposal(proposal)) {
                return Ok(());
            }
        }
        for entry in self.sessions.iter() {
            let (key, bytes) = entry?;
            let Ok(raw) = <[u8; 8]>::try_from(key.as_ref()) else {
                continue;
            };
            let chat_id = (u64::from_be_bytes(raw) ^ (1 << 63)) as i64;
            let record = decode("session", &bytes)?;
            if !visit(DumpRecord::Session { chat_id, record }) {
                return Ok(());
            }
        }
        for run in self.runs_since(0)? {
            let text = self.turn_text(run.started_at_ms, run.chat_id)?;
            if !visit(DumpRecord::Run { run, text }) {
                return Ok(());
            }
        }
        for chat in self.chats()? {
            let conversation_start = self.conversation_start(chat.chat_id)?;
            let record = DumpRecord::Chat {
                chat_id: chat.chat_id,
                title: chat.title,
                conversation_start,
            };
            if !visit(record) {
                return Ok(());
            }
        }
        let roles: std::collections::HashMap<i64, valor_protocol::access::Role> =
            self.paired_roles()?.into_iter().collect();
        for user_id in self.paired_users()? {
            let role = roles.get(&user_id).copied();
            if !visit(DumpRecord::PairedUser { user_id, role }) {
                return Ok(());
            }
        }
        for run in self.all_job_runs() {
            if !visit(DumpRecord::JobRun(run?)) {
                return Ok(());
            }
        }
        for job in self.paused_jobs()? {
            if !visit(DumpRecord::PausedJob { job }) {
                return Ok(());
            }
        }
        for approval in self.all_approvals() {
            if !visit(DumpRecord::Approval(approval?)) {
                return Ok(());
            }
        }
        for (counter, spent) in self.all_spend()? {
            if !visit(DumpRecord::Spend { counter, spent }) {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Takes one dumped record in, keeping its ids (a record already here is overwritten, so a
    /// load that stopped half-way can run again). A question gets a new id: sled's ids come
    /// from a counter an import cannot move.
    pub fn load(&self, record: DumpRecord) -> Result<(), StoreError> {
        match record {
            DumpRecord::Message(message) => self.import_message(&message),
            DumpRecord::Memory(memory) => self.write_memory(memory).map(drop),
            DumpRecord::Learning(learning) => self.import_learning(&learning),
            DumpRecord::Vector {
                id,
                model_id,
                vector,
            } => self.put_vectors(&[(
                id,
                valor_protocol::records::StoredVector { model_id, vector },
            )]),
            DumpRecord::Proposal(proposal) => {
                let (state, message_id) = (proposal.state, proposal.message_id);
                let mut added = self.add_proposal(proposal)?;
                added.state = state;
                added.message_id = message_id;
                self.proposals
                    .insert(added.id.to_be_bytes(), super::encode(&added))?;
                Ok(())
            }
            DumpRecord::Session { chat_id, record } => self.set_session(chat_id, &record),
            DumpRecord::Run { run, text } => {
                self.record_run(&run)?;
                match text {
                    Some(text) => self.keep_turn_text(&text),
                    None => Ok(()),
                }
            }
            DumpRecord::Chat {
                chat_id,
                title,
                conversation_start,
            } => {
                if let Some(title) = title {
                    self.name_chat(chat_id, &title)?;
                }
                self.set_conversation_start(chat_id, conversation_start)
            }
            DumpRecord::PairedUser { user_id, role } => match role {
                Some(role) => self.set_paired_role(user_id, role),
                None => self.add_paired_user(user_id),
            },
            DumpRecord::JobRun(run) => self.record_job_run(&run),
            DumpRecord::PausedJob { job } => self.set_job_paused(&job, true),
            DumpRecord::Approval(approval) => self.load_approval(&approval),
            DumpRecord::Spend { counter, spent } => self.load_spend(&counter, &spent),
        }
    }
}
