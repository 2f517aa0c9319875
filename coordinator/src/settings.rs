//! Layered configuration: built-in defaults, then a config file
//! (`stemforge.toml` in the working folder, or `--config FILE`), then
//! `STEMFORGE_*` environment variables; command-line flags go on top.

use std::path::{Path, PathBuf};

use stemforge_proto::client::{ClientTls, Endpoint, Token};

use serde::Deserialize;

use crate::scheduler::SchedulerConfig;
use crate::security::{Auth, Role, ServerTlsFiles};

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
    /// Where `stemforge coordinator` serves Prometheus `/metrics` over plain
    /// HTTP (empty: off). The older name of `http_listen`: the same
    /// listener.
    #[serde(default)]
    pub metrics_listen: String,
    /// The coordinator's HTTP address: `/metrics` and the operator
    /// dashboard (empty: `metrics_listen`; both empty: off). Over TLS too
    /// when `tls_cert`/`tls_key` are set (plain HTTP still serves `/metrics`).
    #[serde(default)]
    pub http_listen: String,
    /// Serve the operator dashboard on the HTTP listener. Unset: on where
    /// the exposure rule allows it (loopback, TLS, or `allow_insecure`),
    /// off with a warning elsewhere; `true`: refuse to start where it does
    /// not; `false`: off.
    #[serde(default)]
    pub dashboard: Option<bool>,
    /// Let anyone who reaches the dashboard view it without logging in
    /// (actions still need the client token). Default false.
    #[serde(default)]
    pub dashboard_public_read: bool,
    /// `text` or `json` (one JSON object per line, for log shippers).
    #[serde(default)]
    pub log_format: String,
    /// Coordinator: its certificate chain and key (PEM); TLS is on when set.
    #[serde(default)]
    pub tls_cert: Option<String>,
    #[serde(default)]
    pub tls_key: Option<String>,
    /// Coordinator: CA of worker client certificates; when set, workers
    /// must present one (mutual TLS).
    #[serde(default)]
    pub tls_client_ca: Option<String>,
    /// Clients and workers: the CA that signed the coordinator's certificate.
    #[serde(default)]
    pub tls_ca: Option<String>,
    /// Workers (mutual TLS): their certificate and key.
    #[serde(default)]
    pub tls_client_cert: Option<String>,
    #[serde(default)]
    pub tls_client_key: Option<String>,
    /// The name the coordinator's certificate is checked for, when it
    /// differs from the URL's host.
    #[serde(default)]
    pub tls_domain: Option<String>,
    /// Bearer tokens, by value (environment) or, preferably, by file.
    #[serde(default)]
    pub client_token: Option<Secret>,
    #[serde(default)]
    pub client_token_file: Option<String>,
    #[serde(default)]
    pub worker_token: Option<Secret>,
    #[serde(default)]
    pub worker_token_file: Option<String>,
    /// Serve beyond loopback without TLS and both tokens (logged loudly).
    #[serde(default)]
    pub allow_insecure: bool,
    /// Serve `/metrics` (plain HTTP, no tokens) on a non-loopback
    /// `metrics_listen` (logged), without relaxing the gRPC API's guard.
    #[serde(default)]
    pub metrics_public: bool,
    /// Worker: after SIGTERM, how long the task in hand may run on before
    /// it is stopped and its lease handed back, seconds.
    pub drain_timeout_s: f64,
    /// Reuse outputs and analysis results of earlier jobs made from the same
    /// inputs, graph, delivery and build (the render cache).
    pub cache: bool,
    /// The render cache's folder. Empty: the coordinator's
    /// `DATA_DIR/cache`; for a local `render`, the per-user cache folder
    /// (`$XDG_CACHE_HOME/stemforge`, else `~/.cache/stemforge`).
    #[serde(default)]
    pub cache_dir: Option<String>,
    /// Size the render cache is kept under, GB (least recently used
    /// entries are evicted first).
    pub cache_max_gb: f64,
    /// Coordinator: URLs told of every job's end (`[[webhooks]]`).
    #[serde(default)]
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,
    /// Coordinator: `[[schedules]]`, specs submitted on a cron schedule
    /// (`crate::schedules`; checked when the coordinator starts).
    #[serde(default)]
    pub schedules: Vec<crate::schedules::ScheduleConfig>,
    /// The config file these settings were read from (`--config`), if any:
    /// a schedule's relative `spec` is resolved against its folder.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Coordinator: hot folders (`[[watch]]` tables), each a folder whose
    /// sub-folders are titles, rendered with a spec template once they
    /// stop changing (see `watch::WatchConfig` for the keys).
    #[serde(default)]
    pub watch: Vec<crate::watch::WatchConfig>,
}

/// A configured secret: `Debug` never shows it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret's value, for the code that uses it (never for logs).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

pub const DEFAULT_CONFIG_FILE: &str = "stemforge.toml";

impl Settings {
    pub fn load(file: Option<&Path>) -> Result<Settings, config::ConfigError> {
        let sched = crate::scheduler::SchedulerConfig::default();
        let mut b = config::Config::builder()
            .set_default("workers", 0)?
            .set_default("lease_ms", sched.lease_ms)?
            .set_default("heartbeat_ms", sched.heartbeat_ms)?
            .set_default("max_attempts", sched.max_attempts)?
            .set_default("backoff_base_ms", sched.backoff_base_ms)?
            .set_default("poll_wait_ms", 2_000)?
            .set_default("backoff_max_ms", sched.backoff_max_ms)?
            .set_default("max_worker_failures", sched.max_worker_failures)?
            .set_default("listen", "127.0.0.1:7447")?
            .set_default("data_dir", "stemforge-data")?
            .set_default("coordinator", "http://127.0.0.1:7447")?
            .set_default("drain_timeout_s", 25.0)?
            .set_default("cache", true)?
            .set_default("cache_max_gb", 20.0)?;
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
        .map(|mut s: Settings| {
            s.config_file = file.map(Path::to_path_buf);
            s
        })
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

    /// Folders specs may read from and write to (empty: unconfined).
    pub fn media_roots(&self) -> Vec<std::path::PathBuf> {
        self.media_roots
            .iter()
            .filter(|r| !r.is_empty())
            .map(std::path::PathBuf::from)
            .collect()
    }

    /// The render cache of a coordinator keeping its data in `data_dir`
    /// (`None`: the cache is off).
    pub fn coordinator_cache(
        &self,
        data_dir: &Path,
    ) -> Option<stemforge_worker::cache::CacheConfig> {
        self.cache_config(Some(data_dir.join("cache")))
    }

    /// The render cache of a local `render` (`None`: off, or no per-user
    /// cache folder and none configured).
    pub fn local_cache(&self) -> Option<stemforge_worker::cache::CacheConfig> {
        self.cache_config(stemforge_worker::cache::user_cache_dir())
    }

    /// Where a local render's cache is and its bound, whether the cache is
    /// on or off (`stemforge cache` inspects it either way).
    pub fn local_cache_location(&self) -> Option<stemforge_worker::cache::CacheConfig> {
        self.cache_location(stemforge_worker::cache::user_cache_dir())
    }

    fn cache_config(
        &self,
        default_dir: Option<PathBuf>,
    ) -> Option<stemforge_worker::cache::CacheConfig> {
        self.cache_location(default_dir).filter(|_| self.cache)
    }

    fn cache_location(
        &self,
        default_dir: Option<PathBuf>,
    ) -> Option<stemforge_worker::cache::CacheConfig> {
        let dir = self
            .cache_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or(default_dir)?;
        Some(stemforge_worker::cache::CacheConfig {
            dir,
            max_bytes: self.cache_max_bytes(),
        })
    }

    /// `cache_max_gb` in bytes.
    pub fn cache_max_bytes(&self) -> u64 {
        (self.cache_max_gb.clamp(0.0, 1e6) * 1e9) as u64
    }

    /// Worker count with 0 meaning one per core.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            self.workers
        }
    }

    fn token(
        &self,
        value: &Option<Secret>,
        file: &Option<String>,
        key: &str,
    ) -> anyhow::Result<Option<Token>> {
        let file = file.as_deref().filter(|f| !f.is_empty());
        let value = value.as_ref().filter(|v| !v.0.is_empty());
        match (value, file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "both {key} and {key}_file are set: keep one (a file is safer than a value in the environment)"
            ),
            (Some(v), None) => Ok(Some(
                Token::new(&v.0).map_err(|e| anyhow::anyhow!("{key}: {e}"))?,
            )),
            (None, Some(f)) => Ok(Some(Token::from_file(Path::new(f))?)),
            (None, None) => Ok(None),
        }
    }

    pub fn client_token(&self) -> anyhow::Result<Option<Token>> {
        self.token(&self.client_token, &self.client_token_file, "client_token")
    }

    pub fn worker_token(&self) -> anyhow::Result<Option<Token>> {
        self.token(&self.worker_token, &self.worker_token_file, "worker_token")
    }

    /// The coordinator's TLS files, if TLS is configured.
    pub fn server_tls(&self) -> anyhow::Result<Option<ServerTlsFiles>> {
        let some = |o: &Option<String>| o.as_deref().filter(|v| !v.is_empty()).map(PathBuf::from);
        match (some(&self.tls_cert), some(&self.tls_key)) {
            (Some(cert), Some(key)) => Ok(Some(ServerTlsFiles {
                cert,
                key,
                client_ca: some(&self.tls_client_ca),
            })),
            (None, None) if some(&self.tls_client_ca).is_some() => {
                anyhow::bail!("tls_client_ca needs TLS: set tls_cert and tls_key too")
            }
            (None, None) => Ok(None),
            _ => anyhow::bail!("tls_cert and tls_key go together: set both or neither"),
        }
    }

    /// What the coordinator accepts: the tokens, and client certificates
    /// required of workers when a client CA is set.
    pub fn auth(&self) -> anyhow::Result<Auth> {
        Ok(Auth::new(
            self.client_token()?.as_ref(),
            self.worker_token()?.as_ref(),
            self.server_tls()?.is_some_and(|t| t.client_ca.is_some()),
        ))
    }

    /// How a caller of `role` reaches the coordinator at `url`.
    pub fn endpoint(&self, url: &str, role: Role) -> anyhow::Result<Endpoint> {
        let some = |o: &Option<String>| o.as_deref().filter(|v| !v.is_empty()).map(PathBuf::from);
        let token = match role {
            Role::Client => self.client_token()?,
            Role::Worker => self.worker_token()?,
        };
        // A client certificate is what workers present under mutual TLS; a
        // client may present one too (the coordinator does not require it).
        let (cert, key) = (some(&self.tls_client_cert), some(&self.tls_client_key));
        Ok(Endpoint {
            url: url.to_string(),
            tls: ClientTls {
                ca: some(&self.tls_ca),
                cert,
                key,
                domain: self.tls_domain.clone().filter(|d| !d.is_empty()),
            },
            token,
        })
    }

    /// The coordinator's HTTP address: `http_listen`, else its older name
    /// `metrics_listen` (empty: no HTTP listener).
    pub fn http_address(&self) -> anyhow::Result<String> {
        match (self.http_listen.trim(), self.metrics_listen.trim()) {
            ("", m) => Ok(m.to_string()),
            (h, "") => Ok(h.to_string()),
            (h, m) if h == m => Ok(h.to_string()),
            (h, m) => anyhow::bail!(
                "http_listen ({h}) and metrics_listen ({m}) name the same listener: keep one (http_listen)"
            ),
        }
    }

    /// How long a worker finishes its task after SIGTERM.
    pub fn drain_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.drain_timeout_s.clamp(0.0, 86_400.0))
    }

    pub fn json_logs(&self) -> bool {
        self.log_format.eq_ignore_ascii_case("json")
    }
}
