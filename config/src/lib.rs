//! Valor's typed configuration.
//!
//! One [`Config`] is read from a TOML file (see [`ConfigSource`] for the search order), then
//! `VALOR__SECTION__KEY` environment variables override single keys, then every value is
//! validated. Errors name the key, where it came from (file and line, or the variable) and what
//! is expected. Secrets never come from the file: [`Secrets`] reads them from the environment
//! only, and their `Debug`/`Display` never show the value.

// stdout belongs to protocols and the CLI's output, stderr to tracing: libraries print nothing.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod budget;
mod cluster;
mod error;
mod load;
mod locate;
pub mod modes;
mod sandbox;
mod schema;
mod secrets;
pub mod tokens;
mod trust;
mod validate;

pub use budget::{BudgetConfig, CapsConfig};
pub use cluster::{ClusterConfig, ClusterRole};
pub use error::{ConfigError, Origin, Problem};
pub use load::{ConfigSource, Env, Loaded, SourceKind};
pub use modes::{DaydreamBackend, Missed, SandboxMode};
pub use sandbox::{EgressConfig, SandboxLimitsConfig};
pub use schema::{
    ClaudeConfig, Config, ContextConfig, DaydreamConfig, HealthConfig, LearningConfig, LogConfig,
    MemoryConfig, MonitorConfig, MonitorThresholds, MonitorWeights, NotionGrant, RouteConfig,
    RoutingConfig, SchedulerConfig, StatusThresholds, ToolsConfig,
};
pub use secrets::{SECRET_VARS, Secret, Secrets};
pub use trust::{AccessConfig, ApprovalsConfig};
pub use validate::EFFORT_LEVELS;
