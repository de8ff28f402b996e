//! The PostgreSQL store against a real PostgreSQL 15 with pgvector (scripts/test starts a
//! throwaway one and sets VALOR_TEST_DATABASE_URL; each test makes a database of its own).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;
mod faults;
mod leader;
mod queue;
mod search;
mod support;
mod view;
