//! Valor's scheduler: the jobs `valor run` runs by the clock.
//!
//! - [`schedule`]: a job's schedule (six-field cron, as tokio-cron-scheduler reads it, or
//!   `every 30s`), and its next and latest due times as pure functions of the time given.
//! - [`missed`]: what happens to a run that fell due while Valor was down: caught up once
//!   within a window, skipped, or reported — and recorded, never silent.
//! - [`runner`]: the [`Scheduler`]: fires jobs through tokio-cron-scheduler, one run at a time
//!   per job, every run written to the store when it starts and when it ends; the catch-up
//!   after a restart; the job listing (`valor jobs`, `GET /jobs`).

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod missed;
pub mod runner;
pub mod schedule;

pub use missed::{MissedDecision, MissedPolicy};
pub use runner::{
    Clock, JobFuture, JobLog, JobProgress, JobSpec, JobStatus, RunContext, Scheduler,
    SchedulerError, SlotGate, router, status_of,
};
pub use schedule::{Schedule, ScheduleError};
