//! `valor`: the command line. Wiring only; the work lives in the library crates.

mod agent;
mod app;
mod chat;
mod cluster;
mod cluster_doctor;
mod config_cmd;
mod dashboard;
mod daydream;
mod doctor;
mod health_cmd;
mod jobs;
mod jobs_cmd;
mod learning;
mod logging;
mod memory_cmd;
mod pair;
mod run;
mod shared;
mod stats;
mod store_cmd;
mod tool_servers;
mod tools_cmd;
mod trends;
mod view_records;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Valor: a chat-bot agent runtime that answers through headless Claude Code sessions.
#[derive(Debug, Parser)]
#[command(name = "valor", version, about, long_about = None)]
struct Cli {
    /// Config file (default: ./valor.toml, then $XDG_CONFIG_HOME/valor/valor.toml, then defaults).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: resource monitor, health server, Claude driver; until SIGINT or SIGTERM.
    Run,
    /// Talk to Valor from the terminal: one message with --once, the answer on stdout.
    Chat(chat::ChatArgs),
    /// Turns, failures, cost and tokens per day and per model.
    Stats(stats::StatsArgs),
    /// A one-time login link to the dashboard of the running Valor (served under /ui/).
    Dashboard(dashboard::DashboardArgs),
    /// Search, inspect, reindex, export and import long-term memory.
    Memory(memory_cmd::MemoryArgs),
    /// Print a one-time code that lets a Telegram user join the allow-list (/pair CODE); list
    /// who may talk to Valor (--list) or take a paired user off the list (--revoke ID).
    Pair(pair::PairArgs),
    /// Print a running instance's health. Exit 0 ok, 1 degraded, 2 unhealthy or unreachable.
    Health(health_cmd::HealthArgs),
    /// Work with the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check what Valor needs on this machine and say how to fix what is missing.
    Doctor,
    /// List the MCP tool servers' tools, or serve one over stdio.
    Tools(tools_cmd::ToolsArgs),
    /// The scheduled jobs: schedules, missed-run policies, last and next runs.
    Jobs(jobs_cmd::JobsArgs),
    /// Run the daydream now (`--now`): study the workspaces and write the insights report.
    Daydream(daydream::DaydreamArgs),
    /// What Valor learned in conversations: list them, or export LEARNED_INSIGHTS.md per chat.
    Learnings(learning::LearningsArgs),
    /// Move the store: `valor store migrate --to postgres` (several machines) or `--to sled`.
    Store(store_cmd::StoreArgs),
    /// Write the whole store (sled, or the cluster's database) into one file.
    Backup(store_cmd::BackupArgs),
    /// Restore a file `valor backup` wrote into an empty store.
    Restore(store_cmd::RestoreArgs),
}

/// Everything Valor writes is its user's alone (store, workspaces, received files, exports,
/// reports), and no other process of the same user (a Claude run, a tool) may read its memory
/// or `/proc/<pid>/environ` with the secrets in it.
fn private_process() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("warning: cannot make Valor's process undumpable: {e}");
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the config and print it resolved, secrets redacted.
    Check,
}

/// glibc's allocator, tuned for a process that runs for weeks; an operator's `MALLOC_*`
/// variables still win.
/// - Arenas: glibc gives threads that allocate at once arenas of their own (up to eight per
///   core): the runtime's workers, its blocking threads, sled's and the embedder's then each
///   keep freed memory (the soak: +14.6% over 1,750 turns with the default, +12.2% with two,
///   and 26 MB less to start with). Two are enough for Valor.
/// - The mmap threshold: glibc raises it to the size of every large block freed (up to 32 MB),
///   so the embedder's activations (megabytes, a different size each batch) came to be carved
///   from the arenas and left gaps there. Fixed at 128 KiB, blocks that large are mapped and
///   handed back when freed (the soak: +6.8% after turn 250 with the moving threshold, +4.8%
///   fixed).
#[allow(unsafe_code)]
fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets an allocator parameter; it runs first thing in main,
            // before any other thread exists.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

/// Blocks at least this large are mapped on their own and returned to the system when freed.
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Threads for blocking work at most (tokio's default is 512).
const BLOCKING_THREADS: usize = 16;

fn main() -> ExitCode {
    tune_malloc();
    private_process();
    let cli = Cli::parse();
    // Blocking work (store reads, a turn's preparation, flushes) queues for a few threads
    // rather than starting one per task: 300 chats at once started hundreds, and their stacks
    // and caches took Valor's peak RSS from 26 to 248 MB.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run => run::run(cli.config).await,
            Command::Chat(args) => chat::chat(cli.config, args).await,
            Command::Stats(args) => stats::stats(cli.config, args).await,
            Command::Dashboard(args) => dashboard::dashboard(cli.config, args).await,
            Command::Pair(args) => pair::pair(cli.config, args).await,
            Command::Memory(args) => memory_cmd::memory(cli.config, args).await,
            Command::Health(args) => health_cmd::health(cli.config, args).await,
            Command::Config(ConfigCommand::Check) => config_cmd::check(cli.config),
            Command::Doctor => doctor::doctor(cli.config).await,
            Command::Tools(args) => tools_cmd::tools(cli.config, args).await,
            Command::Jobs(args) => jobs_cmd::jobs(cli.config, args).await,
            Command::Daydream(args) => daydream::command(cli.config, args).await,
            Command::Learnings(args) => learning::command(cli.config, args).await,
            Command::Store(args) => store_cmd::store(cli.config, args).await,
            Command::Backup(args) => store_cmd::backup(cli.config, args).await,
            Command::Restore(args) => store_cmd::restore(cli.config, args).await,
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_process_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        super::private_process();
        assert!(!nix::sys::prctl::get_dumpable().unwrap(), "still dumpable");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("written");
        std::fs::write(&file, "x").unwrap();
        std::fs::create_dir(dir.path().join("made")).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("made")), 0o700);
    }
}
