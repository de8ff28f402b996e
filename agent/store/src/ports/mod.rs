//! The store behind every part's own interface: each part of Valor declares the store it needs
//! as an async trait of its own (beside its users), and these are the sled implementations.
//! Reads and writes run on the blocking pool; writes that must survive a crash wait for the
//! group commit ([`crate::Store::commit`]).

mod approvals;
mod conversation;
mod health;
mod inbox;
mod jobs;
mod learning;
mod ledger;
mod memory;
mod spend;

#[cfg(test)]
mod contract_tests;
