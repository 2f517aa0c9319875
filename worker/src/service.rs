//! The worker loop: lease a task from the coordinator (long-poll), run it on a
//! blocking thread, heartbeat with progress while it runs, report the result.
//! On shutdown, the task in hand may finish within the drain time; after that
//! it is stopped and its lease handed back so another worker takes it at
//! once. The only module of the worker that knows about gRPC.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deliverables_spec::files::MediaRoots;
use deliverables_spec::{LoadedSpec, TaskKind};
use stemforge_proto::client::{AuthChannel, Endpoint};
use stemforge_proto::v1::tasks_client::TasksClient;
use stemforge_proto::v1::{
    CompleteTaskRequest, FailTaskRequest, HeartbeatRequest, LeaseRef, LeaseTaskRequest,
    ReleaseTaskRequest, TaskLease,
};
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::tasks::{DepOutcome, TaskContext, TaskError, execute};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub worker_id: String,
    /// How long one lease request waits for work, ms.
    pub poll_wait_ms: u32,
    /// After shutdown is asked for, how long the task in hand may run on
    /// before it is stopped and handed back.
    pub drain: Duration,
    /// Folders this worker may read stems from and write outputs to (empty:
    /// anywhere). Checked again here, whatever the coordinator accepted.
    pub media_roots: Vec<std::path::PathBuf>,
}

impl WorkerOptions {
    pub fn new(worker_id: &str, poll_wait_ms: u32) -> WorkerOptions {
        WorkerOptions {
            worker_id: worker_id.to_string(),
            poll_wait_ms,
            drain: Duration::from_secs(25),
            media_roots: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Client(#[from] stemforge_proto::client::ClientError),
}

type Client = TasksClient<AuthChannel>;

/// Runs until `shutdown` turns true. Connection losses are retried with
/// backoff; a refused token or certificate is logged and retried too (the
/// operator may be rotating secrets), more slowly.
pub async fn run_worker(
    endpoint: Endpoint,
    opts: WorkerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let mut client = TasksClient::new(endpoint.lazy()?);
    let url = endpoint.url.clone();
    let roots = MediaRoots::new(&opts.media_roots);
    let mut cached: Option<Arc<LoadedSpec>> = None;
    let mut backoff = Duration::from_millis(100);
    info!(worker = %opts.worker_id, %url, "worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let req = LeaseTaskRequest {
            worker_id: opts.worker_id.clone(),
            wait_ms: opts.poll_wait_ms,
            draining: *shutdown.borrow(),
        };
        let resp = tokio::select! {
            r = client.lease_task(req) => r,
            _ = shutdown.changed() => break,
        };
        let lease = match resp {
            Ok(r) => {
                backoff = Duration::from_millis(100);
                match r.into_inner().lease {
                    Some(l) => l,
                    None => continue,
                }
            }
            Err(status) => {
                let denied = matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                );
                if denied {
                    warn!(worker = %opts.worker_id, code = ?status.code(), error = %status.message(), "the coordinator refused this worker; check worker_token_file and the TLS client certificate; retrying in {backoff:?}");
                } else {
                    warn!(worker = %opts.worker_id, error = %stemforge_proto::client::error_chain(&status), "lease request failed; retrying in {backoff:?}");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = shutdown.changed() => break,
                }
                let cap = if denied { 30 } else { 5 };
                backoff = (backoff * 2).min(Duration::from_secs(cap));
                continue;
            }
        };
        let span = info_span!("task", job = %lease.job_id, task = %lease.task_id, attempt = lease.attempt, worker = %opts.worker_id);
        run_one(
            &mut client,
            &opts,
            &roots,
            lease,
            &mut cached,
            &mut shutdown,
        )
        .instrument(span)
        .await;
    }
    info!(worker = %opts.worker_id, "worker stopped");
    Ok(())
}

/// Reads a job's outcomes from the coordinator for the manifest task,
/// a bounded page per call, under the task's lease.
struct GrpcOutcomes {
    client: Client,
    lease: LeaseRef,
    runtime: tokio::runtime::Handle,
}

/// Outcomes per ReadOutcomes call.
const OUTCOME_PAGE: u32 = 200;

impl crate::tasks::manifest::OutcomePages for GrpcOutcomes {
    fn page(&self, after: Option<u32>) -> Result<crate::tasks::manifest::OutcomePage, TaskError> {
        let mut last = None;
        // A busy or restarting coordinator: a few tries before giving up
        // (the task then fails retryably).
        for attempt in 0..5u64 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 * attempt));
            }
            let mut c = self.client.clone();
            let req = stemforge_proto::v1::ReadOutcomesRequest {
                lease: Some(self.lease.clone()),
                after_seq: after,
                limit: OUTCOME_PAGE,
            };
            match self.runtime.block_on(c.read_outcomes(req)) {
                Ok(r) => {
                    let r = r.into_inner();
                    let mut out = Vec::with_capacity(r.outcomes.len());
                    for o in r.outcomes {
                        let d: DepOutcome = serde_json::from_str(&o.outcome_json).map_err(|e| {
                            TaskError::Internal(format!("unreadable outcome of {}: {e}", o.task_id))
                        })?;
                        out.push(crate::tasks::manifest::PageItem {
                            seq: o.seq,
                            outcome: d,
                            title_spec: (!o.title_spec.is_empty()).then_some(o.title_spec),
                        });
                    }
                    return Ok((out, r.next_after_seq));
                }
                Err(s)
                    if crate::tasks::classify_rpc(s.code())
                        == crate::tasks::FailureClass::Transient =>
                {
                    last = Some(s);
                }
                Err(s) => {
                    return Err(TaskError::Internal(format!(
                        "reading the job's outcomes: {}",
                        s.message()
                    )));
                }
            }
        }
        Err(TaskError::Internal(format!(
            "reading the job's outcomes: {}",
            last.map(|s| s.message().to_string()).unwrap_or_default()
        )))
    }
}

fn lease_ref(l: &TaskLease) -> LeaseRef {
    LeaseRef {
        job_id: l.job_id.clone(),
        task_id: l.task_id.clone(),
        lease_id: l.lease_id.clone(),
        attempt: l.attempt,
    }
}

/// A leased task ready to run: its spec, what to do, its dependencies' results.
type Prepared = (Arc<LoadedSpec>, TaskKind, BTreeMap<String, DepOutcome>);

/// Parses what a lease carries: the spec (cached by hash) and the task, and
/// checks the task's files and output folder against this worker's media
/// roots.
fn prepare(
    lease: &TaskLease,
    cached: &mut Option<Arc<LoadedSpec>>,
    roots: &MediaRoots,
) -> Result<Prepared, TaskError> {
    // The lease carries one title's spec (the job's header and the title);
    // it keeps the job's hash, which seeds dither and names files.
    let spec = match cached {
        Some(s) if s.sha256 == lease.spec_sha256 && s.text == lease.spec_toml => s.clone(),
        _ => {
            let s = deliverables_spec::load_scoped(
                lease.spec_toml.clone(),
                std::path::Path::new(&lease.base_dir),
                &lease.spec_sha256,
            )
            .map_err(|e| TaskError::Input(e.to_string()))?;
            let s = Arc::new(s);
            *cached = Some(s.clone());
            s
        }
    };
    let kind: TaskKind = serde_json::from_str(&lease.task_json)
        .map_err(|e| TaskError::Internal(format!("unreadable task: {e}")))?;
    let deps: BTreeMap<String, DepOutcome> = if lease.deps_json.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_str(&lease.deps_json)
            .map_err(|e| TaskError::Internal(format!("unreadable dependencies: {e}")))?
    };
    confine(&spec, &kind, &output_dir_of(lease, &spec), roots)?;
    Ok((spec, kind, deps))
}

fn output_dir_of(lease: &TaskLease, spec: &LoadedSpec) -> std::path::PathBuf {
    if lease.output_dir.is_empty() {
        spec.path(&spec.delivery().output_dir)
    } else {
        std::path::PathBuf::from(&lease.output_dir)
    }
}

/// Refuses a task whose input files (its title's stems and reference) or
/// output folder resolve outside the media roots. Not retryable: another
/// worker with the same roots would refuse it too.
fn confine(
    spec: &LoadedSpec,
    kind: &TaskKind,
    output_dir: &std::path::Path,
    roots: &MediaRoots,
) -> Result<(), TaskError> {
    if !roots.is_confined() {
        return Ok(());
    }
    let title = kind.title();
    for t in spec
        .spec
        .titles
        .iter()
        .filter(|t| Some(t.name.as_str()) == title)
    {
        for f in t.stems.iter().map(|s| &s.file).chain(t.reference.iter()) {
            roots.confine(&spec.path(f)).map_err(|why| {
                TaskError::Input(format!(
                    "title `{}`: `{f}` is outside this worker's media roots: {why}",
                    t.name
                ))
            })?;
        }
    }
    if matches!(kind, TaskKind::Render { .. } | TaskKind::Manifest { .. }) {
        roots.confine_output(output_dir).map_err(|why| {
            TaskError::Input(format!(
                "output folder {} is outside this worker's media roots: {why}",
                output_dir.display()
            ))
        })?;
    }
    if let TaskKind::Manifest {
        bundle: Some(bundle),
    } = kind
    {
        let dir = std::path::Path::new(bundle)
            .parent()
            .unwrap_or(std::path::Path::new(bundle));
        roots.confine_output(dir).map_err(|why| {
            TaskError::Input(format!(
                "pack zip {bundle} is outside this worker's media roots: {why}"
            ))
        })?;
    }
    Ok(())
}

async fn run_one(
    client: &mut Client,
    opts: &WorkerOptions,
    roots: &MediaRoots,
    lease: TaskLease,
    cached: &mut Option<Arc<LoadedSpec>>,
    shutdown: &mut watch::Receiver<bool>,
) {
    let lref = lease_ref(&lease);
    let started = std::time::Instant::now();
    let prepared = prepare(&lease, cached, roots);
    let cancel = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0f64.to_bits()));
    // Set when shutdown stopped the task: its lease goes back, unreported.
    let mut handing_back = false;

    let outcome: Result<serde_json::Value, TaskError> = match prepared {
        Err(e) => Err(e),
        Ok((spec, kind, deps)) => {
            info!(label = %kind.label(), "task started");
            let output_dir = output_dir_of(&lease, &spec);
            let (c2, p2) = (cancel.clone(), progress.clone());
            let job_id = lease.job_id.clone();
            let submitted = lease.job_submitted_unix_ms;
            let origination = lease.origination_unix_s;
            let cache_cfg = (!lease.cache_dir.is_empty()).then(|| crate::cache::CacheConfig {
                dir: std::path::PathBuf::from(&lease.cache_dir),
                max_bytes: lease.cache_max_bytes,
            });
            let span = tracing::Span::current();
            let reader = GrpcOutcomes {
                client: client.clone(),
                lease: lref.clone(),
                runtime: tokio::runtime::Handle::current(),
            };
            let work = tokio::task::spawn_blocking(move || {
                let _in_span = span.enter();
                let report = move |f: f64| p2.store(f.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
                let cache = cache_cfg
                    .as_ref()
                    .and_then(crate::cache::RenderCache::open_or_warn);
                let ctx = TaskContext {
                    cache: cache.as_ref(),
                    spec: &spec,
                    job_id: &job_id,
                    output_dir,
                    deps: &deps,
                    outcomes: Some(&reader),
                    submitted_unix_ms: submitted,
                    origination_unix_s: origination,
                    cancel: &c2,
                    progress: &report,
                };
                execute(&kind, &ctx)
            });
            tokio::pin!(work);
            let interval = Duration::from_millis(u64::from(lease.heartbeat_interval_ms.max(50)));
            // The next heartbeat: at once after a shutdown request, so the
            // coordinator shows this worker draining without waiting.
            let mut next_beat = interval;
            // When shutdown was asked for: the task must be done by then.
            let mut drain_until: Option<tokio::time::Instant> = None;
            if *shutdown.borrow() {
                drain_until = Some(tokio::time::Instant::now() + opts.drain);
            }
            loop {
                let drain_over = async {
                    match drain_until {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    r = &mut work => break r.unwrap_or_else(|e| Err(TaskError::Internal(format!("task thread failed: {e}")))),
                    r = shutdown.changed(), if !handing_back => {
                        if r.is_ok() && drain_until.is_none() {
                            info!(drain = ?opts.drain, "shutting down: finishing the task in hand first");
                            drain_until = Some(tokio::time::Instant::now() + opts.drain);
                            next_beat = Duration::ZERO;
                        } else {
                            // Asked again (or the owner is gone): stop now.
                            warn!("stopping the task in hand now and handing its lease back");
                            handing_back = true;
                            cancel.store(true, Ordering::Relaxed);
                        }
                    }
                    _ = drain_over, if !handing_back => {
                        warn!(drain = ?opts.drain, "the task did not finish within the drain time; stopping it and handing its lease back");
                        handing_back = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                    _ = tokio::time::sleep(next_beat) => {
                        next_beat = interval;
                        let hb = HeartbeatRequest {
                            lease: Some(lref.clone()),
                            progress: f64::from_bits(progress.load(Ordering::Relaxed)),
                            // Shutting down: finishing this task, leasing no more.
                            draining: drain_until.is_some() || handing_back,
                        };
                        match client.heartbeat(hb).await {
                            Ok(r) if r.get_ref().cancel => cancel.store(true, Ordering::Relaxed),
                            Ok(_) => {}
                            Err(s) if s.code() == tonic::Code::FailedPrecondition || s.code() == tonic::Code::NotFound => {
                                warn!(worker = %opts.worker_id, task = %lease.task_id, "lease lost ({}); stopping the task", s.message());
                                cancel.store(true, Ordering::Relaxed);
                            }
                            Err(s) => warn!(worker = %opts.worker_id, "heartbeat failed: {}", s.message()),
                        }
                    }
                }
            }
        }
    };

    let secs = started.elapsed().as_secs_f64();
    match outcome {
        Ok(result) => {
            let req = CompleteTaskRequest {
                lease: Some(lref),
                result_json: result.to_string(),
            };
            let r = report(|| {
                let mut c = client.clone();
                let req = req.clone();
                async move { c.complete_task(req).await.map(|_| ()) }
            })
            .await;
            if let Err(s) = r {
                warn!(worker = %opts.worker_id, task = %lease.task_id, "completion refused: {}", s.message());
            } else {
                info!(worker = %opts.worker_id, task = %lease.task_id, secs, "task done");
            }
        }
        Err(TaskError::Cancelled) if handing_back => {
            let req = ReleaseTaskRequest {
                lease: Some(lref),
                reason: format!("worker {} shutting down", opts.worker_id),
            };
            let r = report(|| {
                let mut c = client.clone();
                let req = req.clone();
                async move { c.release_task(req).await.map(|_| ()) }
            })
            .await;
            match r {
                Ok(()) => info!("lease handed back"),
                Err(s) => {
                    warn!(error = %s.message(), "handing the lease back failed; it lapses on its own")
                }
            }
        }
        Err(TaskError::Cancelled) => {
            info!(worker = %opts.worker_id, task = %lease.task_id, "task cancelled");
        }
        Err(e) => {
            warn!(worker = %opts.worker_id, task = %lease.task_id, error = %e, "task failed");
            let req = FailTaskRequest {
                lease: Some(lref),
                error: e.to_string(),
                retryable: e.is_retryable(),
                shared_cause: e.is_shared_cause(),
            };
            let r = report(|| {
                let mut c = client.clone();
                let req = req.clone();
                async move { c.fail_task(req).await.map(|_| ()) }
            })
            .await;
            if let Err(s) = r {
                warn!(worker = %opts.worker_id, "failure report refused: {}", s.message());
            }
        }
    }
}

/// Sends a completion or failure report, retrying while the coordinator is
/// unreachable (restarting, network blip) for up to a minute: the work is
/// done and its lease may still be valid when the coordinator is back. A
/// refusal (stale lease, unknown task) is final.
async fn report<F, Fut>(mut send: F) -> Result<(), tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut wait = Duration::from_millis(100);
    loop {
        match send().await {
            // The failure table decides: a coordinator away or slow is
            // tried again, one that refused the report is not.
            Err(s)
                if crate::tasks::classify_rpc(s.code())
                    == crate::tasks::FailureClass::Transient
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            r => return r,
        }
    }
}
