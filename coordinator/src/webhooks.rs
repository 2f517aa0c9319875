//! Job notifications: when a job ends (finished or cancelled) the
//! coordinator POSTs a JSON summary to every configured `[[webhooks]]` URL.
//!
//! Rules:
//! - Every POST is signed: `X-Stemforge-Signature: sha256=HEX`, the
//!   HMAC-SHA256 under the hook's secret of `TIMESTAMP.BODY`, where
//!   TIMESTAMP is the `X-Stemforge-Timestamp` header (Unix seconds). A
//!   receiver recomputes it, compares in constant time and refuses old
//!   timestamps (replays). A hook without a secret refuses to start.
//! - Deliveries go through a durable outbox (`DATA_DIR/webhooks.sqlite`): a
//!   delivery is written before its first attempt and keeps its id and body
//!   across retries and restarts; a receiver de-duplicates on
//!   `X-Stemforge-Delivery`.
//! - Retried with exponential backoff on network errors, timeouts, 408, 429
//!   and 5xx, up to `max_attempts`; any other 4xx is final (the receiver
//!   refused it). Each attempt's outcome is a note in the job's events.
//! - Never blocks the scheduler: delivery runs on its own task, every
//!   request has a timeout, and the scheduler only sends a job id on a
//!   bounded channel; a listener that falls behind recovers from the store.
//! - A job that ended while the coordinator was down (or between the job's
//!   end and the outbox write) is found at start: an ended job submitted
//!   after the hook was first configured, with no delivery for that hook,
//!   is delivered then. Jobs older than the hook are never notified.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};

use crate::server::{Coordinator, now_ms};
use crate::settings::Secret;
use crate::store::JobState;

/// The outbox's file in the data directory.
pub const DB_FILE: &str = "webhooks.sqlite";

/// Deliveries attempted at once.
const PARALLEL: usize = 4;

/// One `[[webhooks]]` entry of the coordinator's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` (system root certificates).
    pub url: String,
    /// The signing secret, by value (environment) or, preferably, by file.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<String>,
    /// Seconds one attempt may take.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Attempts before a delivery is given up.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry, seconds (doubles per attempt, at most
    /// 10 minutes).
    #[serde(default = "default_backoff_s")]
    pub backoff_s: f64,
}

fn default_timeout_s() -> f64 {
    10.0
}
fn default_max_attempts() -> u32 {
    8
}
fn default_backoff_s() -> f64 {
    2.0
}

/// A hook ready to deliver to.
#[derive(Clone)]
pub struct Hook {
    pub url: String,
    secret: Vec<u8>,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("url", &display_url(&self.url))
            .finish_non_exhaustive()
    }
}

/// Checks every configured hook; the first problem names its entry
/// (`webhooks[i].field`) and the fix. A relative `secret_file` is read
/// against `base` (the config file's folder).
pub fn resolve(configs: &[WebhookConfig], base: &Path) -> anyhow::Result<Vec<Hook>> {
    let mut hooks = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let at = |field: &str| format!("webhooks[{i}].{field}");
        let uri: hyper::Uri = c
            .url
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: '{}' is not a URL: {e}", at("url"), c.url))?;
        match uri.scheme_str() {
            Some("http") | Some("https") if uri.host().is_some() => {}
            _ => anyhow::bail!(
                "{}: '{}' must be an absolute http:// or https:// URL",
                at("url"),
                display_url(&c.url)
            ),
        }
        if hooks.iter().any(|h: &Hook| h.url == c.url) {
            anyhow::bail!(
                "{}: '{}' is configured twice: keep one entry",
                at("url"),
                display_url(&c.url)
            );
        }
        let secret = match (&c.secret, &c.secret_file) {
            (Some(_), Some(_)) => anyhow::bail!(
                "{} and {} are both set: keep one (a file is safer than a value in the environment)",
                at("secret"),
                at("secret_file")
            ),
            (Some(s), None) => s.expose().trim().as_bytes().to_vec(),
            (None, Some(f)) => std::fs::read_to_string(base.join(f))
                .with_context(|| {
                    format!(
                        "{}: cannot read '{}'",
                        at("secret_file"),
                        base.join(f).display()
                    )
                })?
                .trim()
                .as_bytes()
                .to_vec(),
            (None, None) => anyhow::bail!(
                "{}: every webhook is signed; set secret_file (or secret) to a shared secret of 16 characters or more",
                at("secret_file")
            ),
        };
        if secret.len() < 16 {
            anyhow::bail!(
                "{}: the secret has {} characters; use 16 or more (e.g. `openssl rand -hex 32`)",
                at("secret_file"),
                secret.len()
            );
        }
        if !(c.timeout_s.is_finite() && c.timeout_s > 0.0 && c.timeout_s <= 300.0) {
            anyhow::bail!(
                "{}: {} is not between 0 and 300 s",
                at("timeout_s"),
                c.timeout_s
            );
        }
        if !(1..=100).contains(&c.max_attempts) {
            anyhow::bail!(
                "{}: {} is not between 1 and 100",
                at("max_attempts"),
                c.max_attempts
            );
        }
        if !(c.backoff_s.is_finite() && c.backoff_s >= 0.0 && c.backoff_s <= 600.0) {
            anyhow::bail!(
                "{}: {} is not between 0 and 600 s",
                at("backoff_s"),
                c.backoff_s
            );
        }
        hooks.push(Hook {
            url: c.url.clone(),
            secret,
            timeout: Duration::from_secs_f64(c.timeout_s),
            max_attempts: c.max_attempts,
            backoff: Duration::from_secs_f64(c.backoff_s),
        });
    }
    Ok(hooks)
}

/// A URL as logged and recorded: without user info and query (which may
/// carry credentials).
pub fn display_url(url: &str) -> String {
    match url.parse::<hyper::Uri>() {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme_str().unwrap_or("?"),
            u.authority()
                .map(|a| a.as_str().rsplit('@').next().unwrap_or("").to_string())
                .unwrap_or_default(),
            u.path()
        ),
        Err(_) => "<invalid url>".into(),
    }
}

/// The signature header's value for `body` sent at `timestamp` (Unix s).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON a hook receives when a job ends.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct JobEnded {
    /// Always `job.ended`.
    pub event: String,
    pub job_id: String,
    pub label: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub submitted_unix_ms: i64,
    /// When the notification was queued: the job's end, or for a job that
    /// ended while the coordinator was down, when it was found at start.
    pub ended_unix_ms: i64,
    /// From the manifest when it was written, else 0.
    pub titles: u64,
    pub titles_failed: u64,
    pub outputs: u64,
    pub outputs_passed: u64,
    pub outputs_failed: u64,
    /// Every title rendered and every output met the delivery.
    pub all_pass: bool,
    /// Tasks by end state.
    pub tasks_succeeded: u64,
    pub tasks_failed: u64,
    pub tasks_skipped: u64,
    pub tasks_cancelled: u64,
    /// Empty when the job ended before its manifest was written.
    pub manifest_path: String,
    pub bundle_path: String,
    pub output_dir: String,
    pub spec_sha256: String,
}

/// The summary of an ended job, from the store (bounded: the job record,
/// its tally and the manifest result's summary).
fn summary(coord: &Coordinator, job_id: &str, ended_ms: i64) -> anyhow::Result<JobEnded> {
    use crate::store::TaskState as T;
    let (job, tally, manifest) = coord
        .job_summary(job_id)
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    let manifest = manifest
        .and_then(|m| serde_json::from_str::<deliverables_spec::contract::ManifestResult>(&m).ok());
    let mut e = JobEnded {
        event: "job.ended".into(),
        job_id: job.job_id.clone(),
        label: job.label.clone(),
        state: job.state.as_str().into(),
        submitted_unix_ms: job.submitted_ms,
        ended_unix_ms: ended_ms,
        titles: 0,
        titles_failed: 0,
        outputs: 0,
        outputs_passed: 0,
        outputs_failed: 0,
        all_pass: false,
        tasks_succeeded: tally.count(T::Succeeded),
        tasks_failed: tally.count(T::Failed),
        tasks_skipped: tally.count(T::Skipped),
        tasks_cancelled: tally.count(T::Cancelled),
        manifest_path: String::new(),
        bundle_path: String::new(),
        output_dir: job.output_dir.clone(),
        spec_sha256: job.spec_sha256.clone(),
    };
    if let Some(m) = manifest {
        e.titles = m.summary.titles as u64;
        e.titles_failed = m.summary.titles_failed as u64;
        e.outputs = m.summary.outputs as u64;
        e.outputs_passed = m.summary.passed as u64;
        e.outputs_failed = m.summary.failed as u64;
        e.all_pass = m.summary.all_pass && job.state == JobState::Succeeded;
        e.manifest_path = m.manifest_path;
        if let Some(b) = m.bundle {
            e.bundle_path = b.path;
        }
    }
    Ok(e)
}

/// The durable outbox.
struct Outbox {
    conn: Connection,
    path: PathBuf,
}

/// A delivery due for an attempt.
struct Due {
    id: String,
    job_id: String,
    url: String,
    body: String,
    attempts: u32,
}

impl Outbox {
    fn open(path: &Path) -> anyhow::Result<Outbox> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the webhook outbox {}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS hooks (
               url TEXT PRIMARY KEY,
               first_seen_ms INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS deliveries (
               id TEXT PRIMARY KEY,
               job_id TEXT NOT NULL,
               url TEXT NOT NULL,
               body TEXT NOT NULL,
               state TEXT NOT NULL,
               attempts INTEGER NOT NULL,
               next_at_ms INTEGER NOT NULL,
               last_error TEXT NOT NULL DEFAULT '',
               created_ms INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_at_ms);
             CREATE INDEX IF NOT EXISTS deliveries_job ON deliveries(job_id, url);",
        )
        .with_context(|| format!("cannot prepare the webhook outbox {}", path.display()))?;
        Ok(Outbox {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, e: rusqlite::Error) -> anyhow::Error {
        anyhow::anyhow!("webhook outbox {}: {e}", self.path.display())
    }

    /// When each hook was first configured (now, for a new one).
    fn first_seen(&self, url: &str, now: i64) -> anyhow::Result<i64> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO hooks (url, first_seen_ms) VALUES (?1, ?2)",
                params![url, now],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .query_row(
                "SELECT first_seen_ms FROM hooks WHERE url = ?1",
                params![url],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    fn has_delivery(&self, job_id: &str, url: &str) -> anyhow::Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM deliveries WHERE job_id = ?1 AND url = ?2 LIMIT 1",
                params![job_id, url],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .is_some())
    }

    fn enqueue(
        &self,
        id: &str,
        job_id: &str,
        url: &str,
        body: &str,
        now: i64,
    ) -> anyhow::Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO deliveries (id, job_id, url, body, state, attempts, next_at_ms, created_ms)
                 VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)",
                params![id, job_id, url, body, now],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Pending deliveries due by `now`, oldest first, at most `limit`.
    fn due(&self, now: i64, limit: usize) -> anyhow::Result<Vec<Due>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, job_id, url, body, attempts FROM deliveries
                 WHERE state = 'pending' AND next_at_ms <= ?1
                 ORDER BY next_at_ms, created_ms LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![now, limit as i64], |r| {
                Ok(Due {
                    id: r.get(0)?,
                    job_id: r.get(1)?,
                    url: r.get(2)?,
                    body: r.get(3)?,
                    attempts: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The earliest time a pending delivery is due.
    fn next_due(&self) -> anyhow::Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT MIN(next_at_ms) FROM deliveries WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Makes a delivery not due before `until` (an attempt in flight).
    fn hold(&self, id: &str, until: i64) -> anyhow::Result<()> {
        self.conn
            .execute(
                "UPDATE deliveries SET next_at_ms = ?2 WHERE id = ?1",
                params![id, until],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn record(
        &self,
        id: &str,
        state: &str,
        attempts: u32,
        next_at: i64,
        error: &str,
    ) -> anyhow::Result<()> {
        self.conn
            .execute(
                "UPDATE deliveries SET state = ?2, attempts = ?3, next_at_ms = ?4, last_error = ?5 WHERE id = ?1",
                params![id, state, attempts, next_at, error],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }
}

type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

fn http_client() -> anyhow::Result<HttpClient> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("cannot load the system's root certificates for https webhooks")?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// What one attempt came to.
enum Attempt {
    Delivered(u16),
    /// Worth another attempt (network, timeout, 408, 429, 5xx).
    Retry(String),
    /// The receiver refused it for good (another 4xx).
    Refused(String),
}

async fn post(client: &HttpClient, hook: &Hook, d: &Due) -> Attempt {
    let ts = now_ms() / 1000;
    let req = hyper::Request::post(&hook.url)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("stemforge/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-stemforge-event", "job.ended")
        .header("x-stemforge-delivery", &d.id)
        .header("x-stemforge-timestamp", ts.to_string())
        .header(
            "x-stemforge-signature",
            signature(&hook.secret, ts, d.body.as_bytes()),
        )
        .body(Full::new(Bytes::from(d.body.clone())));
    let req = match req {
        Ok(r) => r,
        Err(e) => return Attempt::Refused(format!("cannot build the request: {e}")),
    };
    let sent = tokio::time::timeout(hook.timeout, async {
        let resp = client.request(req).await?;
        let status = resp.status();
        // Read (and drop) the body so the connection can be reused.
        let _ = resp.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await;
    match sent {
        Err(_) => Attempt::Retry(format!("no answer within {:?}", hook.timeout)),
        Ok(Err(e)) => Attempt::Retry(error_chain(&e)),
        Ok(Ok(s)) if s.is_success() => Attempt::Delivered(s.as_u16()),
        Ok(Ok(s)) if s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429 => {
            Attempt::Retry(format!("HTTP {s}"))
        }
        Ok(Ok(s)) => Attempt::Refused(format!("HTTP {s}")),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The delay before attempt `attempt + 1` (attempt ≥ 1 made).
fn backoff(hook: &Hook, attempt: u32) -> Duration {
    let f = 2f64.powi(attempt.saturating_sub(1).min(20) as i32);
    Duration::from_secs_f64((hook.backoff.as_secs_f64() * f).min(600.0))
}

fn delivery_id(job_id: &str, url: &str, now: i64, n: u64) -> String {
    let mut h = Sha256::new();
    for part in [job_id, url, &now.to_string(), &n.to_string()] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The notifier: the outbox, the hooks and the HTTP client.
pub struct Notifier {
    coord: Arc<Coordinator>,
    hooks: Vec<Hook>,
    outbox: Mutex<Outbox>,
    client: HttpClient,
    seq: std::sync::atomic::AtomicU64,
}

impl Notifier {
    /// Opens the outbox in `data_dir`, starts listening for job ends and
    /// queues the ended jobs not yet notified. Call before the coordinator
    /// serves or sweeps (nothing can end a job yet), so every job end is
    /// either found here or received by [`Notifier::run`], never both.
    pub fn open(
        coord: Arc<Coordinator>,
        hooks: Vec<Hook>,
        data_dir: &Path,
    ) -> anyhow::Result<(Arc<Notifier>, broadcast::Receiver<String>)> {
        let outbox = Outbox::open(&data_dir.join(DB_FILE))?;
        let ends = coord.job_ends.subscribe();
        let n = Arc::new(Notifier {
            coord,
            hooks,
            outbox: Mutex::new(outbox),
            client: http_client()?,
            seq: Default::default(),
        });
        match n.recover()? {
            0 => {}
            jobs => info!(jobs, "webhooks: ended jobs not yet notified queued"),
        }
        Ok((n, ends))
    }

    fn outbox(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Outbox>> {
        self.outbox
            .lock()
            .map_err(|_| anyhow::anyhow!("webhook outbox lock poisoned"))
    }

    /// Writes one delivery per hook for an ended job.
    fn enqueue_job(&self, job_id: &str, only_missing: bool) -> anyhow::Result<()> {
        let now = now_ms();
        let body = serde_json::to_string(&summary(&self.coord, job_id, now)?)?;
        let outbox = self.outbox()?;
        for h in &self.hooks {
            if only_missing && outbox.has_delivery(job_id, &h.url)? {
                continue;
            }
            let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            outbox.enqueue(
                &delivery_id(job_id, &h.url, now, n),
                job_id,
                &h.url,
                &body,
                now,
            )?;
        }
        Ok(())
    }

    /// Ended jobs with no delivery to a hook that was configured before
    /// they were submitted (missed while down, or the channel lagged).
    fn recover(&self) -> anyhow::Result<usize> {
        let now = now_ms();
        let firsts: Vec<i64> = {
            let outbox = self.outbox()?;
            self.hooks
                .iter()
                .map(|h| outbox.first_seen(&h.url, now))
                .collect::<anyhow::Result<_>>()?
        };
        let Some(oldest) = firsts.iter().min().copied() else {
            return Ok(0);
        };
        let jobs = self
            .coord
            .job_records()
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
        let mut n = 0;
        for j in jobs {
            if j.state == JobState::Running || j.submitted_ms < oldest {
                continue;
            }
            let missing = {
                let outbox = self.outbox()?;
                let mut missing = false;
                for (h, first) in self.hooks.iter().zip(&firsts) {
                    if j.submitted_ms >= *first && !outbox.has_delivery(&j.job_id, &h.url)? {
                        missing = true;
                    }
                }
                missing
            };
            if missing {
                self.enqueue_job(&j.job_id, true)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Attempts one due delivery and records the outcome (outbox and the
    /// job's events).
    async fn attempt(self: Arc<Self>, d: Due) {
        let Some(hook) = self.hooks.iter().find(|h| h.url == d.url).cloned() else {
            // A hook removed from the configuration: its deliveries stop.
            if let Ok(o) = self.outbox() {
                let _ = o.record(&d.id, "dropped", d.attempts, 0, "hook no longer configured");
            }
            return;
        };
        let attempt = d.attempts + 1;
        let outcome = post(&self.client, &hook, &d).await;
        let shown = display_url(&hook.url);
        let (state, next_at, error, note) = match outcome {
            Attempt::Delivered(code) => (
                "delivered",
                0,
                String::new(),
                format!("webhook {shown}: delivered (HTTP {code}, attempt {attempt})"),
            ),
            Attempt::Retry(why) if attempt < hook.max_attempts => {
                let wait = backoff(&hook, attempt);
                (
                    "pending",
                    now_ms() + wait.as_millis() as i64,
                    why.clone(),
                    format!(
                        "webhook {shown}: attempt {attempt} failed ({why}); retrying in {:.0} s",
                        wait.as_secs_f64()
                    ),
                )
            }
            Attempt::Retry(why) => (
                "failed",
                0,
                why.clone(),
                format!("webhook {shown}: gave up after {attempt} attempts ({why})"),
            ),
            Attempt::Refused(why) => (
                "failed",
                0,
                why.clone(),
                format!("webhook {shown}: refused by the receiver ({why}); not retried"),
            ),
        };
        match state {
            "delivered" => info!(job = %d.job_id, url = %shown, attempt, "webhook delivered"),
            "pending" => {
                warn!(job = %d.job_id, url = %shown, attempt, error = %error, "webhook attempt failed; will retry")
            }
            _ => {
                warn!(job = %d.job_id, url = %shown, attempt, error = %error, "webhook delivery failed")
            }
        }
        match self.outbox() {
            Ok(o) => {
                if let Err(e) = o.record(&d.id, state, attempt, next_at, &error) {
                    warn!("{e:#}");
                }
            }
            Err(e) => warn!("{e:#}"),
        }
        if let Err(e) = self.coord.note(&d.job_id, &note) {
            debug!(job = %d.job_id, "webhook note not recorded: {}", e.message());
        }
    }

    /// Runs until `stop` turns true: enqueues every ended job, delivers due
    /// deliveries (at most [`PARALLEL`] at once), retries on schedule.
    pub async fn run(
        self: Arc<Self>,
        mut ends: broadcast::Receiver<String>,
        mut stop: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let mut in_flight = std::collections::BTreeSet::new();
        let mut done = tokio::task::JoinSet::new();
        loop {
            // Deliveries due now, not already in flight.
            let due = self
                .outbox()
                .and_then(|o| o.due(now_ms(), PARALLEL * 4))
                .unwrap_or_else(|e| {
                    warn!("{e:#}");
                    Vec::new()
                });
            for d in due {
                if in_flight.contains(&d.id) {
                    continue;
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    break;
                };
                // While it is in flight the delivery is not due: the loop
                // sleeps until it ends (or, if the process dies, the next
                // start retries it after the attempt's timeout).
                let hold = self
                    .hooks
                    .iter()
                    .find(|h| h.url == d.url)
                    .map_or(60_000, |h| h.timeout.as_millis() as i64 + 1_000);
                if let Err(e) = self.outbox().and_then(|o| o.hold(&d.id, now_ms() + hold)) {
                    warn!("{e:#}");
                }
                in_flight.insert(d.id.clone());
                let me = self.clone();
                done.spawn(async move {
                    let id = d.id.clone();
                    me.attempt(d).await;
                    drop(permit);
                    id
                });
            }
            let wait = match self.outbox().and_then(|o| o.next_due()) {
                Ok(Some(t)) => Duration::from_millis((t - now_ms()).clamp(50, 60_000) as u64),
                _ => Duration::from_secs(60),
            };
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Some(r) = done.join_next(), if !done.is_empty() => {
                    if let Ok(id) = r {
                        in_flight.remove(&id);
                    }
                }
                r = ends.recv() => match r {
                    Ok(job) => {
                        if let Err(e) = self.enqueue_job(&job, false) {
                            warn!(job = %job, "webhooks: cannot queue the notification: {e:#}");
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "webhooks fell behind; recovering from the store");
                        // Ids still buffered ended before the recovery
                        // scan, which finds them: skip them, or they would
                        // be queued twice.
                        ends = ends.resubscribe();
                        if let Err(e) = self.recover() {
                            warn!("webhooks: recovery scan failed: {e:#}");
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = tokio::time::sleep(wait), if in_flight.len() < PARALLEL => {}
            }
        }
        // Deliveries in flight are cut short; the outbox keeps them pending
        // for the next start.
        done.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_style_vector() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog")
        // = f7bc83f4...; here the message is "TS.BODY", so split it so.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").expect("key");
        mac.update(b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        // Our header is the same HMAC over "TIMESTAMP.BODY".
        let s = signature(b"key", 1_700_000_000, b"{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").expect("key");
        mac.update(b"1700000000.{}");
        assert_eq!(
            s,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        assert_eq!(
            display_url("https://user:pw@hooks.example.com:8443/x/y?token=abc"),
            "https://hooks.example.com:8443/x/y"
        );
    }

    fn resolve_here(c: &[WebhookConfig]) -> anyhow::Result<Vec<Hook>> {
        resolve(c, Path::new("."))
    }

    fn cfg(url: &str, secret: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            secret: secret.map(|s| serde_json::from_value(serde_json::json!(s)).expect("secret")),
            secret_file: None,
            timeout_s: 10.0,
            max_attempts: 8,
            backoff_s: 2.0,
        }
    }

    #[test]
    fn bad_hooks_are_refused_naming_the_field() {
        let e = resolve_here(&[cfg("http://127.0.0.1:9/x", None)]).expect_err("no secret");
        assert!(e.to_string().contains("webhooks[0].secret_file"), "{e}");
        let e =
            resolve_here(&[cfg("ftp://example.com/x", Some("0123456789abcdef"))]).expect_err("ftp");
        assert!(e.to_string().contains("webhooks[0].url"), "{e}");
        let e = resolve_here(&[cfg("http://a/x", Some("short"))]).expect_err("short");
        assert!(e.to_string().contains("16 or more"), "{e}");
        let ok = cfg("http://a/x", Some("0123456789abcdef"));
        let e = resolve_here(&[ok.clone(), ok]).expect_err("twice");
        assert!(e.to_string().contains("webhooks[1].url"), "{e}");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let h = resolve_here(&[cfg("http://a/x", Some("0123456789abcdef"))])
            .expect("hook")
            .remove(0);
        assert_eq!(backoff(&h, 1), Duration::from_secs(2));
        assert_eq!(backoff(&h, 2), Duration::from_secs(4));
        assert_eq!(backoff(&h, 3), Duration::from_secs(8));
        assert_eq!(backoff(&h, 30), Duration::from_secs(600));
    }
}
