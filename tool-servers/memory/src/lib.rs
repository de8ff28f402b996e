//! Valor's `memory` MCP server: the chat's long-term memory in three layers, so the model reads
//! little to find what it needs (seed 003, claude-mem's search → timeline → get):
//!
//! - `search(query, kinds?, since?, until?, limit?)`: a compact index, one line a hit (`#id`,
//!   date, kind, title, about how many tokens the record costs to read);
//! - `timeline(anchor_id | query, before?, after?)`: what happened around an entry, in order;
//! - `get(ids, max_tokens?)`: the full records, within a token cap the answer states.
//!
//! Kinds: messages, links, learnings, insights, observations (what a turn did) and session
//! summaries. The server reads through [`MemoryBook`], which the agent implements over its
//! memory store, always within the calling chat's view.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod dates;
mod server;

pub use server::{
    GetParams, KINDS, MemoryBook, MemoryLine, MemoryServer, MemoryText, SearchParams,
    SearchRequest, TimelineParams,
};
