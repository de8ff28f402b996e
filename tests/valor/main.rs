//! End-to-end tests of the `valor` binary, one test program (linking everything once instead
//! of once per file): the command line, `valor run` as a service, chatting, memory, jobs, the
//! daydream, the tool servers, Telegram end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals_run;
mod browser;
mod budget_run;
mod chat_once;
mod cli;
mod cluster_crash;
mod cluster_run;
mod dashboard_phone;
mod dashboard_ui;
mod daydream_cli;
mod injection_run;
mod jobs_cli;
mod learning_cli;
mod memory_cli;
mod redaction_run;
mod run_service;
mod silence_run;
mod store_move;
mod support;
mod telegram_run;
mod tools_cli;
