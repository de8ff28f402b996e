//! Valor's resource monitor and health server.
//!
//! - [`sample`]: one reading of Valor's memory and CPU, the machine's memory and load, and the
//!   child processes Valor started ([`children`]).
//! - [`alerts`]: thresholds crossed and recovered, with severity and a recommended action.
//! - [`history`]: health kept over time in the store (a point a minute for a day, every 15
//!   minutes for 30 days).
//! - [`notify`]: alerts and their recovery told to the admin chat, within a cooldown.
//! - [`components`]: the parts that report their own health over time (since when, their
//!   last error) and their alerts.
//! - [`score`]: the weighted 0-100 health score and the `ok` / `degraded` / `unhealthy` status.
//! - [`monitor`]: samples on an interval and keeps a bounded history.
//! - [`metrics`]: a registry rendered in the Prometheus text format; other parts add to it.
//! - [`server`]: `/health`, `/metrics` and `/ready` over axum; `/` a page for people ([`home`]).
//! - [`auth`]: bearer tokens compared in constant time, checked before a body is read.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod alerts;
pub mod assess;
pub mod auth;
pub mod children;
pub mod components;
mod error;
pub mod history;
mod home;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod sample;
pub mod score;
pub mod server;
pub mod trends;

pub use alerts::{Alert, AlertKind, Severity};
pub use children::{ChildGuard, ChildRecord, ChildRegistry};
pub use components::ComponentState;
pub use error::MonitorError;
pub use metrics::{Counter, FloatCounter, Gauge, Histogram, MetricsRegistry};
pub use monitor::ResourceMonitor;
pub use notify::{AlertNotifier, AlertSender};
pub use sample::Sample;
pub use score::{HealthReport, Status};
pub use server::{HealthComponent, HealthState, router};
