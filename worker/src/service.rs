//! The worker loop: lease a task from the coordinator (long-poll), run it on a
//! blocking thread, heartbeat with progress while it runs, report the result.
//! The only module of the worker that knows about gRPC.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use deliverables_spec::{LoadedSpec, TaskKind};
use stemforge_proto::v1::tasks_client::TasksClient;
use stemforge_proto::v1::{
    CompleteTaskRequest, FailTaskRequest, HeartbeatRequest, LeaseRef, LeaseTaskRequest, TaskLease,
};
use tokio::sync::watch;
use tonic::transport::Channel;
use tracing::{info, warn};

use crate::tasks::{DepOutcome, TaskContext, TaskError, execute};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub worker_id: String,
    /// How long one lease request waits for work, ms.
    pub poll_wait_ms: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot reach the coordinator at {url}: {reason}")]
    Connect { url: String, reason: String },
}

/// Runs until `shutdown` turns true. Connection losses are retried with backoff.
pub async fn run_worker(
    url: String,
    opts: WorkerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    let endpoint = Channel::from_shared(url.clone()).map_err(|e| WorkerError::Connect {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let channel = endpoint.connect_lazy();
    let mut client = TasksClient::new(channel);
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
                warn!(worker = %opts.worker_id, error = %status.message(), "lease request failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {},
                    _ = shutdown.changed() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        run_one(&mut client, &opts, lease, &mut cached).await;
    }
    info!(worker = %opts.worker_id, "worker stopped");
    Ok(())
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

/// Parses what a lease carries: the spec (cached by hash) and the task.
fn prepare(lease: &TaskLease, cached: &mut Option<Arc<LoadedSpec>>) -> Result<Prepared, TaskError> {
    let spec = match cached {
        Some(s) if s.sha256 == lease.spec_sha256 => s.clone(),
        _ => {
            let s = deliverables_spec::load_text(
                lease.spec_toml.clone(),
                std::path::Path::new(&lease.base_dir),
                None,
            )
            .map_err(|e| TaskError::Input(e.to_string()))?;
            if s.sha256 != lease.spec_sha256 {
                return Err(TaskError::Internal(
                    "spec text does not match its hash".into(),
                ));
            }
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
    Ok((spec, kind, deps))
}

async fn run_one(
    client: &mut TasksClient<Channel>,
    opts: &WorkerOptions,
    lease: TaskLease,
    cached: &mut Option<Arc<LoadedSpec>>,
) {
    let lref = lease_ref(&lease);
    let started = std::time::Instant::now();
    let prepared = prepare(&lease, cached);
    let cancel = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0f64.to_bits()));

    let outcome: Result<serde_json::Value, TaskError> = match prepared {
        Err(e) => Err(e),
        Ok((spec, kind, deps)) => {
            info!(worker = %opts.worker_id, job = %lease.job_id, task = %kind.label(), attempt = lease.attempt, "task started");
            let output_dir = if lease.output_dir.is_empty() {
                spec.path(&spec.delivery().output_dir)
            } else {
                std::path::PathBuf::from(&lease.output_dir)
            };
            let (c2, p2) = (cancel.clone(), progress.clone());
            let job_id = lease.job_id.clone();
            let submitted = lease.job_submitted_unix_ms;
            let origination = lease.origination_unix_s;
            let work = tokio::task::spawn_blocking(move || {
                let report = move |f: f64| p2.store(f.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
                let ctx = TaskContext {
                    spec: &spec,
                    job_id: &job_id,
                    output_dir,
                    deps: &deps,
                    submitted_unix_ms: submitted,
                    origination_unix_s: origination,
                    cancel: &c2,
                    progress: &report,
                };
                execute(&kind, &ctx)
            });
            tokio::pin!(work);
            let interval = Duration::from_millis(u64::from(lease.heartbeat_interval_ms.max(50)));
            loop {
                tokio::select! {
                    r = &mut work => break r.unwrap_or_else(|e| Err(TaskError::Internal(format!("task thread failed: {e}")))),
                    _ = tokio::time::sleep(interval) => {
                        let hb = HeartbeatRequest {
                            lease: Some(lref.clone()),
                            progress: f64::from_bits(progress.load(Ordering::Relaxed)),
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
        Err(TaskError::Cancelled) => {
            info!(worker = %opts.worker_id, task = %lease.task_id, "task cancelled");
        }
        Err(e) => {
            warn!(worker = %opts.worker_id, task = %lease.task_id, error = %e, "task failed");
            let req = FailTaskRequest {
                lease: Some(lref),
                error: e.to_string(),
                retryable: e.is_retryable(),
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
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ) && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            r => return r,
        }
    }
}
