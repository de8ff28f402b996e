//! Builds the agent's parts from the config: the store, the Claude driver, the router.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use std::sync::Arc;
use valor_claude::reaper::Reaper;
use valor_claude::{ClaudeDriver, DriverSetup};
use valor_config::Config;

use valor_core::ModelRouter;
use valor_core::engine::{ConversationStore, Engine, EngineConfig};
use valor_core::persona::DEFAULT_PERSONA;
use valor_memory::Store;
use valor_monitor::{ChildRegistry, MetricsRegistry};

pub struct Agent {
    pub store: Store,
    pub driver: ClaudeDriver,
    /// The conversation engine every channel runs its turns through.
    pub engine: Engine,
    pub children: ChildRegistry,
    pub runtime_dir: PathBuf,
    grace: Duration,
}

impl Agent {
    /// `keep_warm` false closes each Claude process after its turn (one-shot commands).
    pub fn build(
        config: &Config,
        metrics: &MetricsRegistry,
        children: ChildRegistry,
        keep_warm: bool,
    ) -> anyhow::Result<Agent> {
        let store = Store::open(&config.memory.path)?;
        let runtime_dir = std::env::temp_dir().join(format!("valor-{}", std::process::id()));
        let mut claude = config.claude.clone();
        if !keep_warm {
            claude.keep_warm_secs = 0;
        }
        let grace = Duration::from_secs(claude.kill_grace_secs);
        let driver = ClaudeDriver::new(DriverSetup {
            binary: valor_claude::binary::locate(&claude.binary),
            config: claude,
            persona: Some(DEFAULT_PERSONA.to_owned()),
            parent_env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            runtime_dir: runtime_dir.clone(),
            store: store.clone(),
            children: children.clone(),
            metrics: metrics.clone(),
        })
        .context("cannot register the driver's metrics")?;
        let engine = Engine::new(
            Arc::new(driver.clone()),
            Arc::new(store.clone()) as Arc<dyn ConversationStore>,
            ModelRouter::new(config.routing.clone()),
            EngineConfig::default(),
        );
        Ok(Agent {
            store,
            driver,
            engine,
            children,
            runtime_dir,
            grace,
        })
    }

    pub fn reaper(&self) -> Reaper {
        Reaper::new(
            self.store.clone(),
            self.children.clone(),
            Some(self.driver.metrics().clone()),
            self.grace,
        )
    }

    /// Ends every Claude process, flushes the store, removes the runtime files.
    pub async fn shutdown(&self) {
        self.driver.shutdown().await;
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "cannot flush the store");
        }
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}
