//! Layered configuration: built-in defaults, then a config file
//! (`stemforge.toml` in the working folder, or `--config FILE`), then
//! `STEMFORGE_*` environment variables; command-line flags go on top.

use std::path::Path;

use serde::Deserialize;

use crate::scheduler::SchedulerConfig;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// In-process workers for `render`/`demo`; 0 = one per core.
    pub workers: usize,
    /// Lease length, ms: a task whose worker is silent this long is requeued.
    pub lease_ms: i64,
    /// How often workers renew their lease, ms.
    pub heartbeat_ms: i64,
    /// Attempts per task before it fails for good.
    pub max_attempts: u32,
    /// First retry delay, ms (doubles per attempt).
    pub backoff_base_ms: i64,
    /// How long a worker's lease request waits for work, ms.
    pub poll_wait_ms: u32,
    /// Longest retry delay, ms.
    pub backoff_max_ms: i64,
    /// Failed or lapsed attempts after which a worker is kept off a job.
    pub max_worker_failures: u32,
    /// Where `stemforge coordinator` listens.
    pub listen: String,
    /// Where `stemforge coordinator` keeps its job database.
    pub data_dir: String,
    /// The coordinator workers and client commands talk to.
    pub coordinator: String,
    /// Folders specs may read stems and references from; a path that
    /// resolves (through `..` or symbolic links) outside them is refused.
    /// Empty: no confinement (set them on a shared coordinator).
    #[serde(default)]
    pub media_roots: Vec<String>,
}

pub const DEFAULT_CONFIG_FILE: &str = "stemforge.toml";

impl Settings {
    pub fn load(file: Option<&Path>) -> Result<Settings, config::ConfigError> {
        let mut b = config::Config::builder()
            .set_default("workers", 0)?
            .set_default("lease_ms", 30_000)?
            .set_default("heartbeat_ms", 1_000)?
            .set_default("max_attempts", 3)?
            .set_default("backoff_base_ms", 1_000)?
            .set_default("poll_wait_ms", 2_000)?
            .set_default("backoff_max_ms", 60_000)?
            .set_default("max_worker_failures", 3)?
            .set_default("listen", "127.0.0.1:7447")?
            .set_default("data_dir", "stemforge-data")?
            .set_default("coordinator", "http://127.0.0.1:7447")?;
        b = match file {
            Some(f) => b.add_source(config::File::from(f).required(true)),
            None => b.add_source(config::File::with_name(DEFAULT_CONFIG_FILE).required(false)),
        };
        b.add_source(
            config::Environment::with_prefix("STEMFORGE")
                .try_parsing(true)
                .list_separator(":")
                .with_list_parse_key("media_roots"),
        )
        .build()?
        .try_deserialize()
    }

    pub fn scheduler(&self) -> SchedulerConfig {
        SchedulerConfig {
            lease_ms: self.lease_ms,
            heartbeat_ms: self.heartbeat_ms,
            max_attempts: self.max_attempts,
            backoff_base_ms: self.backoff_base_ms,
            backoff_max_ms: self.backoff_max_ms,
            max_worker_failures: self.max_worker_failures,
        }
    }

    /// Worker count with 0 meaning one per core.
    pub fn media_roots(&self) -> Vec<std::path::PathBuf> {
        self.media_roots
            .iter()
            .filter(|r| !r.is_empty())
            .map(std::path::PathBuf::from)
            .collect()
    }

    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.workers
        }
    }
}
