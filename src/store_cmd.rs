//! `valor store migrate --to postgres|sled`, `valor backup FILE` and `valor restore FILE`:
//! every record of one store into another, or into one self-contained file and back. Loads keep
//! ids and overwrite what is there, so a migration that stopped runs again with `--resume`;
//! afterwards the counts of each kind and a sample of documents are compared.

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use tokio::sync::mpsc;
use valor_memory::port::DocumentStore;
use valor_protocol::dump::{DUMP_FORMAT, DumpHeader, DumpRecord};
use valor_store::Store;
use valor_store_pg::{PgOptions, PgStore};

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copy everything (conversations, memories with their vectors, learnings, questions,
    /// sessions, runs) into the other kind of store, then compare the two.
    Migrate {
        /// The store to copy into: `postgres` (VALOR_DATABASE_URL) or `sled` ([store] path).
        #[arg(long)]
        to: Kind,
        /// With `--to sled`: the folder of the new store (default: [store] path).
        #[arg(long, value_name = "PATH")]
        into: Option<PathBuf>,
        /// Go on into a store that is not empty (a migration that stopped).
        #[arg(long)]
        resume: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Postgres,
    Sled,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write (refused when it exists).
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file `valor backup` wrote.
    file: PathBuf,
    /// Restore into a store that is not empty (a restore that stopped).
    #[arg(long)]
    resume: bool,
}

/// A store on either side of a copy.
#[derive(Clone)]
enum Side {
    Sled(Box<Store>),
    Pg(PgStore),
}

/// Records a load sends to sled at once (one blocking call each).
const LOAD_BATCH: usize = 256;

impl Side {
    fn name(&self) -> &'static str {
        match self {
            Side::Sled(_) => "sled",
            Side::Pg(_) => "postgres",
        }
    }

    /// Every record into `tx`.
    async fn dump(&self, tx: mpsc::Sender<DumpRecord>) -> anyhow::Result<()> {
        match self {
            Side::Sled(store) => {
                let store = Store::clone(store);
                tokio::task::spawn_blocking(move || store.dump(|r| tx.blocking_send(r).is_ok()))
                    .await??;
            }
            Side::Pg(pg) => pg.dump(tx).await?,
        }
        Ok(())
    }

    async fn load(&self, records: Vec<DumpRecord>) -> anyhow::Result<()> {
        match self {
            Side::Sled(store) => {
                let store = Store::clone(store);
                tokio::task::spawn_blocking(move || {
                    for record in records {
                        store.load(record)?;
                    }
                    store.flush()
                })
                .await??;
            }
            Side::Pg(pg) => {
                for record in records {
                    pg.load(record).await?;
                }
            }
        }
        Ok(())
    }

    /// How many records of each kind (by walking a dump).
    async fn counts(&self) -> anyhow::Result<BTreeMap<&'static str, u64>> {
        let (tx, mut rx) = mpsc::channel(1024);
        let side = self.clone();
        let walk = tokio::spawn(async move { side.dump(tx).await });
        let mut counts = BTreeMap::new();
        while let Some(record) = rx.recv().await {
            *counts.entry(record.kind()).or_default() += 1;
        }
        walk.await??;
        Ok(counts)
    }

    fn documents(&self) -> &dyn DocumentStore {
        match self {
            Side::Sled(store) => store.as_ref(),
            Side::Pg(pg) => pg,
        }
    }
}

pub async fn store(config_path: Option<PathBuf>, args: StoreArgs) -> ExitCode {
    let StoreCommand::Migrate { to, into, resume } = args.command;
    finish(migrate(config_path, to, into, resume).await)
}

pub async fn backup(config_path: Option<PathBuf>, args: BackupArgs) -> ExitCode {
    finish(write_backup(config_path, &args.file).await)
}

pub async fn restore(config_path: Option<PathBuf>, args: RestoreArgs) -> ExitCode {
    finish(read_backup(config_path, &args.file, args.resume).await)
}

fn finish(result: anyhow::Result<String>) -> ExitCode {
    match result {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(config_path: Option<PathBuf>) -> anyhow::Result<valor_config::Loaded> {
    valor_config::ConfigSource::from_process(config_path)
        .load()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn open_sled(path: &Path) -> anyhow::Result<Side> {
    let store = Store::open(path).map_err(|e| match e {
        e @ valor_store::StoreError::Locked { .. } => {
            anyhow::anyhow!("{e}: stop `valor run` first")
        }
        e => anyhow::anyhow!("cannot open the store at {}: {e}", path.display()),
    })?;
    Ok(Side::Sled(Box::new(store)))
}

async fn open_pg(loaded: &valor_config::Loaded) -> anyhow::Result<Side> {
    let url = (loaded.secrets.database_url.as_ref())
        .context("VALOR_DATABASE_URL is not set (postgres://USER:PASSWORD@HOST:5432/DATABASE)")?;
    let options = PgOptions {
        node_id: loaded.config.cluster.resolved_node_id(),
        pool_size: 4,
        wait: std::time::Duration::from_secs(10),
        shared_sessions: loaded.config.cluster.shared_dir.is_some(),
    };
    let pg = PgStore::connect(url.expose(), options).await?;
    Ok(Side::Pg(pg))
}

/// The store this node is configured for.
async fn configured(loaded: &valor_config::Loaded) -> anyhow::Result<Side> {
    if loaded.config.cluster.enabled {
        open_pg(loaded).await
    } else {
        open_sled(&loaded.config.store.path)
    }
}

async fn refuse_unless_empty(side: &Side, resume: bool) -> anyhow::Result<()> {
    if resume {
        return Ok(());
    }
    let counts = side.counts().await?;
    if counts.values().any(|n| *n > 0) {
        anyhow::bail!(
            "the {} store is not empty ({}); pass --resume to go on into it",
            side.name(),
            describe(&counts)
        );
    }
    Ok(())
}

/// Copies every record of `from` into `to`; how many.
async fn copy(from: &Side, to: &Side) -> anyhow::Result<(u64, Vec<u64>)> {
    let (tx, mut rx) = mpsc::channel(1024);
    let source = from.clone();
    let walk = tokio::spawn(async move { source.dump(tx).await });
    let (mut copied, mut sample, mut batch) = (0u64, Vec::new(), Vec::new());
    while let Some(record) = rx.recv().await {
        if let DumpRecord::Message(m) = &record
            && copied % 97 == 0
            && sample.len() < 50
        {
            sample.push(m.seq);
        }
        batch.push(record);
        copied += 1;
        if batch.len() == LOAD_BATCH {
            to.load(std::mem::take(&mut batch)).await?;
        }
    }
    to.load(batch).await?;
    walk.await??;
    Ok((copied, sample))
}

async fn migrate(
    config_path: Option<PathBuf>,
    to: Kind,
    into: Option<PathBuf>,
    resume: bool,
) -> anyhow::Result<String> {
    let loaded = load_config(config_path)?;
    let (from, target) = match to {
        Kind::Postgres => (
            open_sled(&loaded.config.store.path)?,
            open_pg(&loaded).await?,
        ),
        Kind::Sled => {
            let path = into.unwrap_or_else(|| loaded.config.store.path.clone());
            (open_pg(&loaded).await?, open_sled(&path)?)
        }
    };
    refuse_unless_empty(&target, resume).await?;
    let (copied, sample) = copy(&from, &target).await?;
    check(&from, &target, &sample).await?;
    Ok(format!(
        "copied {copied} records from {} to {}; counts and {} sampled documents match",
        from.name(),
        target.name(),
        sample.len()
    ))
}

/// The same counts of each kind, and the sampled documents the same on both sides.
async fn check(from: &Side, to: &Side, sample: &[u64]) -> anyhow::Result<()> {
    let (before, after) = (from.counts().await?, to.counts().await?);
    if before != after {
        anyhow::bail!(
            "the copy differs: {} has {}, {} has {}",
            from.name(),
            describe(&before),
            to.name(),
            describe(&after)
        );
    }
    let (ours, theirs) = (
        from.documents().documents(sample).await?,
        to.documents().documents(sample).await?,
    );
    if ours != theirs {
        anyhow::bail!(
            "sampled documents differ between {} and {}",
            from.name(),
            to.name()
        );
    }
    Ok(())
}

fn describe(counts: &BTreeMap<&'static str, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(", ")
    }
}

async fn write_backup(config_path: Option<PathBuf>, file: &Path) -> anyhow::Result<String> {
    let loaded = load_config(config_path)?;
    let side = configured(&loaded).await?;
    if file.exists() {
        anyhow::bail!("{} exists; name a new file", file.display());
    }
    let partial = file.with_extension("partial");
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?,
    );
    let header = DumpHeader {
        valor_backup: DUMP_FORMAT,
        created_ms: valor_protocol::time::now_ms(),
        from: side.name().to_owned(),
    };
    writeln!(out, "{}", serde_json::to_string(&header)?)?;
    let (tx, mut rx) = mpsc::channel(1024);
    let source = side.clone();
    let walk = tokio::spawn(async move { source.dump(tx).await });
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    while let Some(record) = rx.recv().await {
        *counts.entry(record.kind()).or_default() += 1;
        writeln!(out, "{}", serde_json::to_string(&record)?)?;
    }
    walk.await??;
    out.into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", partial.display()))?
        .sync_all()?;
    std::fs::rename(&partial, file)?;
    Ok(format!(
        "backed up the {} store into {}: {}",
        side.name(),
        file.display(),
        describe(&counts)
    ))
}

async fn read_backup(
    config_path: Option<PathBuf>,
    file: &Path,
    resume: bool,
) -> anyhow::Result<String> {
    let loaded = load_config(config_path)?;
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut lines = reader.lines();
    let first = lines.next().context("the file is empty, not a backup")??;
    let header: DumpHeader = serde_json::from_str(&first)
        .map_err(|_| anyhow::anyhow!("{} is not a Valor backup", file.display()))?;
    if header.valor_backup != DUMP_FORMAT {
        anyhow::bail!(
            "the backup's format is {}, this Valor reads {DUMP_FORMAT}",
            header.valor_backup
        );
    }
    let target = configured(&loaded).await?;
    refuse_unless_empty(&target, resume).await?;
    let (mut batch, mut counts) = (Vec::new(), BTreeMap::<&'static str, u64>::new());
    for (index, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record: DumpRecord = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!(
                "line {} of {} is not a record: {e}",
                index + 2,
                file.display()
            )
        })?;
        *counts.entry(record.kind()).or_default() += 1;
        batch.push(record);
        if batch.len() == LOAD_BATCH {
            target.load(std::mem::take(&mut batch)).await?;
        }
    }
    target.load(batch).await?;
    Ok(format!(
        "restored {} into the {} store: {}",
        file.display(),
        target.name(),
        describe(&counts)
    ))
}
