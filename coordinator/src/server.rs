//! The coordinator's gRPC services over the scheduler: clients submit and
//! follow jobs, workers lease and report tasks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stemforge_proto::v1::jobs_server::{Jobs, JobsServer};
use stemforge_proto::v1::tasks_server::{Tasks, TasksServer};
use stemforge_proto::v1::{
    CancelJobRequest, CancelJobResponse, CompleteTaskRequest, CompleteTaskResponse,
    FailTaskRequest, FailTaskResponse, GetJobRequest, HeartbeatRequest, HeartbeatResponse,
    JobEvent, JobStatus, LeaseRef, LeaseTaskRequest, LeaseTaskResponse, ListJobsRequest,
    ListJobsResponse, ListSchedulesRequest, ListSchedulesResponse, ReadOutcomesRequest,
    ReadOutcomesResponse, ReleaseTaskRequest, ReleaseTaskResponse, RetryJobRequest,
    RetryJobResponse, ScheduleStatus, SetJobPriorityRequest, SetJobPriorityResponse,
    SubmitJobRequest, SubmitJobResponse, TaskLease, TaskOutcome, TaskStatus, WatchJobRequest,
};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::metrics::{Ended, Metrics};
use crate::scheduler::{LeaseKey, SchedError, Scheduler, SchedulerConfig};
use crate::security::{Auth, Role};
use crate::store::{JobRecord, JobState, Store, TaskState};
use deliverables_spec::TaskKind;
use deliverables_spec::contract::ManifestResult;

/// Distinguishes jobs submitted in the same millisecond.
static JOB_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The one mapping from scheduler errors to gRPC status codes.
pub fn to_status(e: SchedError) -> Status {
    match e {
        SchedError::NoJob(_) | SchedError::NoTask { .. } => Status::not_found(e.to_string()),
        SchedError::StaleLease { .. } | SchedError::NothingToRetry(_) => {
            Status::failed_precondition(e.to_string())
        }
        SchedError::Store(_) => Status::internal(e.to_string()),
    }
}

/// Shared coordinator state behind both services.
pub struct Coordinator {
    sched: Mutex<Scheduler<Box<dyn Store>>>,
    /// Woken whenever a task may have become runnable.
    work: Notify,
    /// Woken whenever job state changed (for watchers and the dashboard).
    pub(crate) changed: Notify,
    tool_version: String,
    /// Where submitted specs may read stems from and write outputs to
    /// (none configured: anywhere).
    media_roots: Vec<std::path::PathBuf>,
    /// The render cache every lease names (`None`: off).
    cache: Option<stemforge_worker::cache::CacheConfig>,
    pub metrics: Metrics,
    /// Schedules' and hot folders' views for the operator surfaces.
    pub automations: crate::ops::Automations,
    /// Told the id of every job that ends (finished or cancelled), after
    /// the store has it. Bounded: a listener that falls behind sees
    /// `Lagged` and must recover from the store.
    pub job_ends: tokio::sync::broadcast::Sender<String>,
    /// True once the coordinator is shutting down: long polls return empty
    /// and job event streams end, so the server can drain.
    stopping: watch::Sender<bool>,
    /// Workers seen through LeaseTask and Heartbeat, for the dashboard.
    workers: Mutex<BTreeMap<String, WorkerSeen>>,
}

/// A worker as the coordinator last saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerSeen {
    pub worker_id: String,
    /// Last LeaseTask or Heartbeat call, Unix ms.
    pub last_seen_ms: i64,
    /// It said it is shutting down (finishing its task, leasing no more).
    pub draining: bool,
}

/// Workers silent this long are forgotten (the registry stays bounded by
/// the workers of the last hour, not by every id ever seen).
const WORKER_FORGET_MS: i64 = 3_600_000;

impl Coordinator {
    pub fn new(
        store: Box<dyn Store>,
        cfg: SchedulerConfig,
        media_roots: Vec<std::path::PathBuf>,
        cache: Option<stemforge_worker::cache::CacheConfig>,
    ) -> Arc<Self> {
        Arc::new(Coordinator {
            media_roots,
            cache,
            sched: Mutex::new(Scheduler::new(store, cfg)),
            work: Notify::new(),
            changed: Notify::new(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            metrics: Metrics::new(),
            automations: Default::default(),
            job_ends: tokio::sync::broadcast::channel(1024).0,
            stopping: watch::channel(false).0,
            workers: Mutex::new(BTreeMap::new()),
        })
    }

    /// Notes a call from `worker_id` (empty ids are not recorded).
    pub fn worker_seen(&self, worker_id: &str, draining: bool) {
        if worker_id.is_empty() {
            return;
        }
        let now = now_ms();
        if let Ok(mut w) = self.workers.lock() {
            w.retain(|_, v| now - v.last_seen_ms < WORKER_FORGET_MS);
            w.insert(
                worker_id.to_string(),
                WorkerSeen {
                    worker_id: worker_id.to_string(),
                    last_seen_ms: now,
                    draining,
                },
            );
        }
    }

    /// Workers seen in the last hour, by id.
    pub fn workers(&self) -> Vec<WorkerSeen> {
        self.workers
            .lock()
            .map(|w| w.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Cancels a running job (CancelJob): queued tasks at once, leased ones
    /// at their next heartbeat.
    pub fn cancel(&self, job_id: &str) -> Result<(), Status> {
        self.with(|s| s.cancel(job_id, now_ms()))?;
        info!(job = %job_id, "job cancelled");
        self.changed.notify_waiters();
        Ok(())
    }

    /// Runs a job's failed, skipped and cancelled tasks (or one task) again
    /// (RetryJob); returns how many were requeued.
    pub fn retry(&self, job_id: &str, task: Option<&str>) -> Result<usize, Status> {
        let n = self.with(|s| s.retry(job_id, task, now_ms()))?;
        info!(job = %job_id, tasks = n, "retry requested");
        self.work.notify_waiters();
        self.changed.notify_waiters();
        Ok(n)
    }

    /// Sets a running job's priority (SetJobPriority): its queued tasks
    /// move in the lease order at once.
    pub fn set_priority(&self, job_id: &str, priority: i32) -> Result<(), Status> {
        if self.with(|s| s.set_priority(job_id, priority, now_ms()))? {
            info!(job = %job_id, priority, "job priority changed");
            self.work.notify_waiters();
            self.changed.notify_waiters();
        }
        Ok(())
    }

    /// A receiver that turns true when the coordinator begins shutting down.
    pub fn stopping_rx(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Runs `f` on the scheduler under its lock (the dashboard's reads).
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Scheduler<Box<dyn Store>>) -> Result<R, SchedError>,
    ) -> Result<R, Status> {
        self.with(|s| f(s))
    }

    /// Validates, plans and stores a job: what `SubmitJob` does, for
    /// in-process callers too (schedules, hot folders), so every job enters
    /// through the same checks (hash, absolute paths, media roots).
    pub fn submit(&self, r: SubmitJobRequest) -> Result<SubmitJobResponse, Status> {
        // Once shutting down (and after the data directory's lock is let
        // go) nothing new enters the store, whoever asks.
        if self.is_stopping() {
            return Err(Status::unavailable(
                "the coordinator is shutting down: submit again once it is back",
            ));
        }
        let hash = deliverables_spec::plan::spec_hash(&r.spec_toml);
        if hash != r.spec_sha256 {
            return Err(Status::invalid_argument(format!(
                "spec_sha256 {} does not match the spec text (sha256 {hash})",
                r.spec_sha256
            )));
        }
        if !Path::new(&r.base_dir).is_absolute() {
            return Err(Status::invalid_argument(
                "base_dir must be an absolute path",
            ));
        }
        if !r.output_dir.is_empty() && !Path::new(&r.output_dir).is_absolute() {
            return Err(Status::invalid_argument(
                "output_dir must be an absolute path",
            ));
        }
        // Cutdowns become titles of their own before anything else (a
        // client that loaded its spec file sent them expanded already); an
        // EDL is read only under the media roots. The expanded text is the
        // job's spec: hashed, stored and cut per title.
        let roots = deliverables_spec::files::MediaRoots::new(&self.media_roots);
        let text =
            deliverables_spec::edit::expand(&r.spec_toml, Path::new(&r.base_dir), None, &roots)
                .map_err(|e| Status::invalid_argument(e.to_string()))?
                .unwrap_or_else(|| r.spec_toml.clone());
        let loaded = deliverables_spec::load_text(text, Path::new(&r.base_dir), None)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let hash = loaded.sha256.clone();
        let plan = deliverables_spec::plan_job(&loaded, &self.tool_version, &self.media_roots)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let submitted_ms = now_ms();
        let job_id = format!(
            "{}-{}-{}",
            &hash[..12],
            submitted_ms,
            JOB_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let output_dir = if r.output_dir.is_empty() {
            loaded
                .path(&loaded.delivery().output_dir)
                .display()
                .to_string()
        } else {
            r.output_dir
        };
        deliverables_spec::files::MediaRoots::new(&self.media_roots)
            .confine_output(Path::new(&output_dir))
            .map_err(|why| {
                Status::invalid_argument(format!(
                    "output folder {output_dir} is not allowed: {why}; write under a media root or add one to media_roots"
                ))
            })?;
        let plan = with_bundle(plan, &r.bundle_path, &self.media_roots)?;
        // Each task is sent its title's part of the spec, never the whole
        // catalog.
        let scoped = deliverables_spec::scope::split_titles(&loaded.text)
            .map_err(Status::invalid_argument)?;
        let job = JobRecord {
            job_id,
            seq: 0,
            priority: r.priority,
            label: r.label,
            spec_header: scoped.header,
            spec_toml: loaded.text.clone(),
            spec_sha256: hash,
            base_dir: r.base_dir,
            output_dir,
            submitted_ms,
            origination_unix_s: origination_unix_s(&loaded, submitted_ms),
            state: JobState::Running,
            worker_failures: Default::default(),
        };
        let n = plan.tasks.len() as u32;
        let job_id = self.with(|s| s.submit_scoped(job, &plan, &scoped.titles))?;
        info!(job = %job_id, tasks = n, "job submitted");
        self.work.notify_waiters();
        self.changed.notify_waiters();
        Ok(SubmitJobResponse {
            job_id,
            task_count: n,
        })
    }

    /// The ids of the jobs labelled `label` (a schedule finds the job of a
    /// slot it claimed before a restart this way).
    pub fn jobs_labelled(&self, label: &str) -> Result<Vec<String>, Status> {
        self.with(|s| {
            Ok(s.jobs()?
                .into_iter()
                .filter(|j| j.label == label)
                .map(|j| j.job_id)
                .collect())
        })
    }

    /// Begins this coordinator's life on its store (a new epoch, stamped
    /// on the leases it grants); returns the epoch.
    pub fn start_epoch(&self) -> Result<u64, Status> {
        self.with(|s| s.start_epoch())
    }

    /// Logs a report made under a lease an earlier life of the coordinator
    /// granted: still honoured while the store says the task is leased to
    /// it, and told apart from this life's leases.
    fn note_earlier_life(&self, lease_id: &str) {
        let now = self.with(|s| Ok(s.epoch())).unwrap_or(0);
        let then = crate::scheduler::lease_epoch(lease_id);
        if then != Some(now) {
            info!(lease = %lease_id, granted_in = ?then, epoch = now, "report under a lease granted by an earlier coordinator life");
        }
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Stops handing out work and ends event streams (in-flight reports are
    /// still accepted).
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
        self.work.notify_waiters();
        self.changed.notify_waiters();
    }

    /// Closes the job store (checkpointing a durable one). Call after the
    /// server has drained.
    pub fn close(&self) -> Result<(), Status> {
        self.with(|s| s.close_store().map_err(SchedError::Store))
    }

    /// The Prometheus exposition, brought up to date from the store.
    pub fn metrics_text(&self) -> Result<String, Status> {
        let (jobs, leased, lease_ms) = self.with(|s| {
            let mut all = Vec::new();
            for j in s.jobs()? {
                let tally = s.tally(&j.job_id)?;
                all.push((j.state, tally));
            }
            Ok((all, s.leased()?, s.config().lease_ms))
        })?;
        Ok(self.metrics.render(&jobs, &leased, lease_ms))
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut Scheduler<Box<dyn Store>>) -> Result<R, SchedError>,
    ) -> Result<R, Status> {
        let mut s = self
            .sched
            .lock()
            .map_err(|_| Status::internal("scheduler lock poisoned"))?;
        let r = f(&mut s).map_err(to_status);
        let ended = s.take_ended();
        drop(s);
        for job in ended {
            // No receiver (no webhooks configured) is not an error.
            let _ = self.job_ends.send(job);
        }
        r
    }

    /// Records a job-level note in the job's events (see [`Scheduler::note`]).
    pub fn note(&self, job_id: &str, message: &str) -> Result<(), Status> {
        self.with(|s| s.note(job_id, message, now_ms()))?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Every job record (without tasks), oldest first.
    pub fn job_records(&self) -> Result<Vec<JobRecord>, Status> {
        self.with(|s| s.jobs())
    }

    /// A job's record, its task tally and its manifest result (if written).
    pub fn job_summary(
        &self,
        job_id: &str,
    ) -> Result<(JobRecord, crate::store::Tally, Option<String>), Status> {
        self.with(|s| {
            let (job, tally, _) = s.job_page(job_id, None, 0)?;
            Ok((job, tally, s.manifest_result(job_id)?))
        })
    }

    /// Requeues lapsed leases now; returns how many.
    pub fn sweep(&self) -> usize {
        let n = self.with(|s| s.expire_leases(now_ms())).unwrap_or(0);
        if n > 0 {
            warn!(count = n, "leases expired; tasks requeued");
            self.work.notify_waiters();
            self.changed.notify_waiters();
        }
        n
    }
}

#[derive(Clone)]
pub struct Service(pub Arc<Coordinator>);

fn lease_parts(l: Option<LeaseRef>) -> Result<LeaseRef, Status> {
    l.ok_or_else(|| Status::invalid_argument("lease is required"))
}

fn key(l: &LeaseRef) -> LeaseKey<'_> {
    LeaseKey {
        job: &l.job_id,
        task: &l.task_id,
        lease_id: &l.lease_id,
        attempt: l.attempt,
    }
}

#[tonic::async_trait]
impl Jobs for Service {
    async fn submit_job(
        &self,
        req: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        self.0.submit(req.into_inner()).map(Response::new)
    }

    async fn get_job(&self, req: Request<GetJobRequest>) -> Result<Response<JobStatus>, Status> {
        let r = req.into_inner();
        let limit = match r.page_size {
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let (job, tally, tasks, manifest) = self.0.with(|s| {
            let (job, tally, tasks) = s.job_page(&r.job_id, r.after_seq, limit + 1)?;
            Ok((job, tally, tasks, s.manifest_result(&r.job_id)?))
        })?;
        let mut status = job_status(&job);
        status.counts = Some(task_counts(&tally));
        if let Some(m) = manifest.and_then(|m| serde_json::from_str::<ManifestResult>(&m).ok()) {
            status.manifest_path = m.manifest_path;
            status.all_outputs_pass = m.summary.all_pass;
            if let Some(b) = m.bundle {
                status.bundle_path = b.path;
                status.bundle_sha256 = b.sha256;
            }
        }
        if tasks.len() > limit {
            status.next_after_seq = tasks.get(limit - 1).map(|t| t.seq);
        }
        for t in tasks.iter().take(limit) {
            status.tasks.push(TaskStatus {
                task_id: t.task_id.clone(),
                label: t.kind.label(),
                state: task_state_code(t.state),
                attempt: t.attempt,
                progress: t.progress,
                weight: t.weight,
                error: t.error.clone().unwrap_or_default(),
                worker_id: t.worker_id.clone().unwrap_or_default(),
                history: t.history.iter().map(ToString::to_string).collect(),
                not_before_unix_ms: t.not_before_ms,
            });
        }
        Ok(Response::new(status))
    }

    async fn list_jobs(
        &self,
        _req: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let jobs = self.0.with(|s| s.jobs())?;
        Ok(Response::new(ListJobsResponse {
            jobs: jobs.iter().map(job_status).collect(),
        }))
    }

    async fn list_schedules(
        &self,
        _req: Request<ListSchedulesRequest>,
    ) -> Result<Response<ListSchedulesResponse>, Status> {
        let schedules = self
            .0
            .automations
            .schedules()
            .into_iter()
            .map(|v| ScheduleStatus {
                name: v.name,
                cron: v.cron,
                time_zone: v.time_zone,
                spec: v.spec,
                priority: v.priority,
                label: v.label,
                missed: v.missed,
                last_run_unix_ms: v.last_run_ms.unwrap_or(0),
                last_job_id: v.last_job.unwrap_or_default(),
                next_run_unix_ms: v.next_run_ms.unwrap_or(0),
                last_error: v.last_error.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(ListSchedulesResponse { schedules }))
    }

    async fn cancel_job(
        &self,
        req: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        self.0.cancel(&req.into_inner().job_id)?;
        Ok(Response::new(CancelJobResponse {}))
    }

    async fn retry_job(
        &self,
        req: Request<RetryJobRequest>,
    ) -> Result<Response<RetryJobResponse>, Status> {
        let r = req.into_inner();
        let task = (!r.task_id.is_empty()).then_some(r.task_id.as_str());
        let n = self.0.retry(&r.job_id, task)?;
        Ok(Response::new(RetryJobResponse {
            tasks_requeued: n as u32,
        }))
    }

    async fn set_job_priority(
        &self,
        req: Request<SetJobPriorityRequest>,
    ) -> Result<Response<SetJobPriorityResponse>, Status> {
        let r = req.into_inner();
        self.0.set_priority(&r.job_id, r.priority)?;
        Ok(Response::new(SetJobPriorityResponse {}))
    }

    async fn list_watch_folders(
        &self,
        _req: Request<stemforge_proto::v1::ListWatchFoldersRequest>,
    ) -> Result<Response<stemforge_proto::v1::ListWatchFoldersResponse>, Status> {
        let folders = self
            .0
            .automations
            .watches()
            .into_iter()
            .map(|w| stemforge_proto::v1::WatchFolderStatus {
                folder: w.folder,
                template: w.template,
                settle_s: w.settle_s,
                mode: w.mode,
                submitted: w.submitted,
                waiting: w.waiting,
                rejected: w.rejected,
                last_scan_unix_ms: w.last_scan_ms.unwrap_or(0),
                last_submit_unix_ms: w.last_submit_ms.unwrap_or(0),
                last_job_id: w.last_job.unwrap_or_default(),
                last_error: w.last_error.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(
            stemforge_proto::v1::ListWatchFoldersResponse { folders },
        ))
    }

    type WatchJobStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<JobEvent, Status>> + Send + 'static>,
    >;

    async fn watch_job(
        &self,
        req: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let r = req.into_inner();
        // Fail early for an unknown job.
        self.0.with(|s| s.job_record(&r.job_id))?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let coord = self.0.clone();
        tokio::spawn(async move {
            if let Err(e) = stream_events(&coord, &r.job_id, r.after_seq, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Sends stored events after `after`, then new ones as they are stored, and
/// progress of leased tasks as it changes, until the job has finished and
/// every event is out (or the watcher goes away).
async fn stream_events(
    coord: &Coordinator,
    job_id: &str,
    mut after: u64,
    tx: &tokio::sync::mpsc::Sender<Result<JobEvent, Status>>,
) -> Result<(), Status> {
    let mut progress: std::collections::BTreeMap<String, f64> = Default::default();
    loop {
        let changed = coord.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        // A page of events, the labels of their tasks and the job's leased
        // tasks: bounded whatever the size of the job.
        let (events, job, labels, tasks) = coord.with(|s| {
            let ev = s.events(job_id, after, EVENT_PAGE)?;
            let job = s.job_record(job_id)?;
            let mut labels = std::collections::BTreeMap::new();
            for e in ev.iter().filter(|e| !e.task_id.is_empty()) {
                if !labels.contains_key(&e.task_id)
                    && let Some(t) = s.task(job_id, &e.task_id)?
                {
                    labels.insert(e.task_id.clone(), t.kind.label());
                }
            }
            let leased: Vec<_> = s
                .leased()?
                .into_iter()
                .filter(|t| t.job_id == job_id)
                .collect();
            Ok((ev, job, labels, leased))
        })?;
        let drained = events.len() < EVENT_PAGE;
        for e in events {
            after = e.seq;
            let msg = JobEvent {
                seq: e.seq,
                at_unix_ms: e.at_ms,
                label: labels.get(e.task_id.as_str()).cloned().unwrap_or_default(),
                task_id: e.task_id,
                kind: e.kind,
                state: e.state,
                attempt: e.attempt,
                worker_id: e.worker_id,
                message: e.message,
                progress: 0.0,
            };
            if tx.send(Ok(msg)).await.is_err() {
                return Ok(());
            }
        }
        for t in tasks.iter().filter(|t| t.state == TaskState::Leased) {
            let last = progress.get(&t.task_id).copied().unwrap_or(-1.0);
            if (t.progress - last).abs() >= 0.005 {
                progress.insert(t.task_id.clone(), t.progress);
                let msg = JobEvent {
                    seq: 0,
                    at_unix_ms: now_ms(),
                    task_id: t.task_id.clone(),
                    label: t.kind.label(),
                    kind: "progress".into(),
                    state: "leased".into(),
                    attempt: t.attempt,
                    worker_id: t.worker_id.clone().unwrap_or_default(),
                    message: String::new(),
                    progress: t.progress,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return Ok(());
                }
            }
        }
        if drained && job.state != JobState::Running {
            return Ok(());
        }
        if !drained {
            continue;
        }
        if coord.is_stopping() {
            return Err(Status::unavailable(
                "the coordinator is shutting down; watch again when it is back (events resume where they stopped)",
            ));
        }
        tokio::select! {
            _ = changed => {},
            _ = tokio::time::sleep(Duration::from_millis(500)) => {},
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// Tasks in a status response unless the caller asks for another page size.
const DEFAULT_PAGE: usize = 500;
/// The most tasks one status response carries (about 1 MB at most).
const MAX_PAGE: usize = 5_000;
/// Events read per step of a watch stream.
const EVENT_PAGE: usize = 1_000;
/// Outcomes per ReadOutcomes response unless the caller asks for fewer.
const DEFAULT_OUTCOMES: usize = 200;
/// The most outcomes one ReadOutcomes response carries.
const MAX_OUTCOMES: usize = 1_000;
/// The size a ReadOutcomes response stops growing at (gRPC's default
/// message limit is 4 MiB).
const OUTCOME_BYTES: usize = 1 << 20;

fn task_counts(t: &crate::store::Tally) -> stemforge_proto::v1::TaskCounts {
    stemforge_proto::v1::TaskCounts {
        total: t.total(),
        blocked: t.count(TaskState::Blocked),
        queued: t.count(TaskState::Queued),
        leased: t.count(TaskState::Leased),
        succeeded: t.count(TaskState::Succeeded),
        failed: t.count(TaskState::Failed),
        skipped: t.count(TaskState::Skipped),
        cancelled: t.count(TaskState::Cancelled),
    }
}

fn job_status(job: &JobRecord) -> JobStatus {
    JobStatus {
        job_id: job.job_id.clone(),
        state: stemforge_proto::v1::JobState::from(job.state) as i32,
        spec_sha256: job.spec_sha256.clone(),
        priority: job.priority,
        label: job.label.clone(),
        submitted_unix_ms: job.submitted_ms,
        output_dir: job.output_dir.clone(),
        ..Default::default()
    }
}

pub fn task_state_code(s: TaskState) -> i32 {
    stemforge_proto::v1::TaskState::from(s) as i32
}

#[tonic::async_trait]
impl Tasks for Service {
    async fn lease_task(
        &self,
        req: Request<LeaseTaskRequest>,
    ) -> Result<Response<LeaseTaskResponse>, Status> {
        let r = req.into_inner();
        self.0.metrics.worker_polled(&r.worker_id);
        self.0.worker_seen(&r.worker_id, r.draining);
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(u64::from(r.wait_ms.min(60_000)));
        loop {
            if self.0.is_stopping() {
                return Ok(Response::new(LeaseTaskResponse { lease: None }));
            }
            // Register interest before looking, so a wake-up between the look
            // and the wait is not lost.
            let notified = self.0.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let grant = self.0.with(|s| s.lease(&r.worker_id, now_ms()))?;
            if let Some(g) = grant {
                self.0.changed.notify_waiters();
                let hb = self.0.with(|s| Ok(s.config().heartbeat_ms))?;
                info!(job = %g.job.job_id, task = %g.task.kind.label(), worker = %r.worker_id, attempt = g.task.attempt, "task leased");
                self.0
                    .metrics
                    .leased(g.task.lease_id.as_deref().unwrap_or_default(), &g.task.kind);
                return Ok(Response::new(LeaseTaskResponse {
                    lease: Some(TaskLease {
                        job_id: g.job.job_id,
                        task_id: g.task.task_id,
                        lease_id: g.task.lease_id.unwrap_or_default(),
                        attempt: g.task.attempt,
                        expires_unix_ms: g.task.lease_expires_ms,
                        heartbeat_interval_ms: hb as u32,
                        task_json: serde_json::to_string(&g.task.kind)
                            .map_err(|e| Status::internal(e.to_string()))?,
                        spec_toml: g.spec_text,
                        spec_sha256: g.job.spec_sha256,
                        base_dir: g.job.base_dir,
                        deps_json: g.deps_json,
                        job_submitted_unix_ms: g.job.submitted_ms,
                        origination_unix_s: g.job.origination_unix_s,
                        output_dir: g.job.output_dir,
                        cache_dir: self
                            .0
                            .cache
                            .as_ref()
                            .map(|c| c.dir.display().to_string())
                            .unwrap_or_default(),
                        cache_max_bytes: self.0.cache.as_ref().map_or(0, |c| c.max_bytes),
                    }),
                }));
            }
            // Retries in backoff become runnable with no event: poll them too.
            let tick = tokio::time::Instant::now() + Duration::from_millis(250);
            tokio::select! {
                _ = notified => {},
                _ = tokio::time::sleep_until(deadline.min(tick)) => {},
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Response::new(LeaseTaskResponse { lease: None }));
            }
        }
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let r = req.into_inner();
        let l = lease_parts(r.lease)?;
        let (expires, cancel, worker) = self.0.with(|s| {
            let (expires, cancel) = s.heartbeat(key(&l), r.progress, now_ms())?;
            let worker = s.task(&l.job_id, &l.task_id)?.and_then(|t| t.worker_id);
            Ok((expires, cancel, worker))
        })?;
        if let Some(w) = worker {
            self.0.worker_seen(&w, r.draining);
        }
        Ok(Response::new(HeartbeatResponse {
            expires_unix_ms: expires,
            cancel,
        }))
    }

    async fn complete_task(
        &self,
        req: Request<CompleteTaskRequest>,
    ) -> Result<Response<CompleteTaskResponse>, Status> {
        let r = req.into_inner();
        let l = lease_parts(r.lease)?;
        self.0.note_earlier_life(&l.lease_id);
        self.0
            .with(|s| s.complete(key(&l), r.result_json.clone(), now_ms()))?;
        self.0
            .metrics
            .ended(&l.lease_id, Ended::Succeeded, Some(&r.result_json));
        self.0.work.notify_waiters();
        self.0.changed.notify_waiters();
        Ok(Response::new(CompleteTaskResponse {}))
    }

    async fn fail_task(
        &self,
        req: Request<FailTaskRequest>,
    ) -> Result<Response<FailTaskResponse>, Status> {
        let r = req.into_inner();
        let l = lease_parts(r.lease)?;
        self.0.note_earlier_life(&l.lease_id);
        self.0.with(|s| {
            if r.retryable && r.shared_cause {
                s.fail_shared(key(&l), r.error, now_ms())
            } else {
                s.fail(key(&l), r.error, r.retryable, now_ms())
            }
        })?;
        self.0.metrics.ended(&l.lease_id, Ended::Failed, None);
        self.0.work.notify_waiters();
        self.0.changed.notify_waiters();
        Ok(Response::new(FailTaskResponse {}))
    }

    async fn release_task(
        &self,
        req: Request<ReleaseTaskRequest>,
    ) -> Result<Response<ReleaseTaskResponse>, Status> {
        let r = req.into_inner();
        let l = lease_parts(r.lease)?;
        self.0.with(|s| s.release(key(&l), &r.reason, now_ms()))?;
        self.0.metrics.ended(&l.lease_id, Ended::HandedBack, None);
        info!(job = %l.job_id, task = %l.task_id, attempt = l.attempt, reason = %r.reason, "lease handed back; task requeued");
        self.0.work.notify_waiters();
        self.0.changed.notify_waiters();
        Ok(Response::new(ReleaseTaskResponse {}))
    }

    async fn read_outcomes(
        &self,
        req: Request<ReadOutcomesRequest>,
    ) -> Result<Response<ReadOutcomesResponse>, Status> {
        let r = req.into_inner();
        let l = lease_parts(r.lease)?;
        let limit = match r.limit {
            0 => DEFAULT_OUTCOMES,
            n => (n as usize).min(MAX_OUTCOMES),
        };
        // At most `limit` outcomes and about OUTCOME_BYTES of them (always
        // at least one): results differ in size (a stem set's curves), the
        // message must not.
        let (outcomes, next_after_seq) = self.0.with(|s| {
            s.check_lease(key(&l))?;
            let (job, _, tasks) = s.job_page(&l.job_id, r.after_seq, limit + 1)?;
            let mut out: Vec<TaskOutcome> = Vec::with_capacity(tasks.len().min(limit));
            let mut bytes = 0usize;
            let mut next = None;
            for (i, t) in tasks.iter().enumerate() {
                if i == limit || (bytes >= OUTCOME_BYTES && !out.is_empty()) {
                    next = out.last().map(|o| o.seq);
                    break;
                }
                let o = s.outcome(t)?;
                // A title's first task (its preflight) brings the title's spec.
                let title_spec = match (&t.kind, t.title) {
                    (deliverables_spec::TaskKind::Preflight { .. }, Some(i)) => {
                        s.spec_text(&job, i)?
                    }
                    _ => String::new(),
                };
                let outcome_json = serde_json::to_string(&o).map_err(|e| {
                    SchedError::Store(crate::store::StoreError::new(
                        crate::store::StoreErrorKind::Other,
                        format!("encoding the outcome of {}: {e}", t.task_id),
                    ))
                })?;
                bytes += outcome_json.len() + title_spec.len();
                out.push(TaskOutcome {
                    seq: t.seq,
                    task_id: t.task_id.clone(),
                    title_spec,
                    outcome_json,
                });
            }
            Ok((out, next))
        })?;
        Ok(Response::new(ReadOutcomesResponse {
            outcomes,
            next_after_seq,
        }))
    }
}

/// How the API is exposed: TLS (none: plain text) and who may call it.
#[derive(Default, Clone)]
pub struct ServeOptions {
    pub tls: Option<tonic::transport::ServerTlsConfig>,
    pub auth: Auth,
    /// How long in-flight calls may take to finish after shutdown begins.
    pub drain: Option<Duration>,
}

/// The gRPC services a health check names.
pub const JOBS_SERVICE: &str = "stemforge.v1.Jobs";
pub const TASKS_SERVICE: &str = "stemforge.v1.Tasks";

/// Serves the API on `listener` until `shutdown` turns true: `Jobs` (client
/// token), `Tasks` (worker token), the standard health service and server
/// reflection (v1 and v1alpha; both open, for probes and tools), sweeping
/// lapsed leases in the background. On shutdown: health turns NOT_SERVING,
/// long polls return empty, event streams end, in-flight calls finish (for
/// up to `drain`), then the store is closed.
pub async fn serve(
    coord: Arc<Coordinator>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    opts: ServeOptions,
) -> Result<(), tonic::transport::Error> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    let sweeper = {
        let c = coord.clone();
        let lease_ms = c.with(|s| Ok(s.config().lease_ms)).unwrap_or(30_000);
        let period = Duration::from_millis((lease_ms / 4).clamp(50, 5_000) as u64);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                c.sweep();
            }
        })
    };
    let (health, health_svc) = tonic_health::server::health_reporter();
    for name in ["", JOBS_SERVICE, TASKS_SERVICE] {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(stemforge_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Both reflection versions are listed whichever one is asked.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let (reflection_v1, reflection_v1alpha) =
        match (reflection().build_v1(), reflection().build_v1alpha()) {
            (Ok(a), Ok(b)) => (Some(a), Some(b)),
            (a, b) => {
                let e = a
                    .err()
                    .or(b.err())
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                warn!(error = %e, "server reflection unavailable");
                (None, None)
            }
        };
    info!(?addr, tls = opts.tls.is_some(), auth = ?opts.auth, "coordinator listening");
    let auth = Arc::new(opts.auth);
    let svc = Service(coord.clone());
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = opts.tls {
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        .add_service(health_svc)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
        .add_service(JobsServer::with_interceptor(
            svc.clone(),
            auth.interceptor(Role::Client),
        ))
        .add_service(TasksServer::with_interceptor(
            svc,
            auth.interceptor(Role::Worker),
        ));
    let stopping = {
        let coord = coord.clone();
        async move {
            let _ = shutdown.wait_for(|s| *s).await;
            info!("shutting down: no new work, draining in-flight calls");
            for name in ["", JOBS_SERVICE, TASKS_SERVICE] {
                health
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
            }
            coord.begin_shutdown();
        }
    };
    let server = router.serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        stopping,
    );
    let result = match opts.drain {
        None => server.await,
        Some(limit) => {
            // The drain clock starts when shutdown begins, not now.
            let mut server = std::pin::pin!(server);
            let mut watch = coord.stopping.subscribe();
            tokio::select! {
                r = &mut server => r,
                _ = async {
                    let _ = watch.wait_for(|s| *s).await;
                    tokio::time::sleep(limit).await;
                } => {
                    warn!(?limit, "in-flight calls still open after the drain limit; closing anyway");
                    Ok(())
                }
            }
        }
    };
    sweeper.abort();
    match coord.close() {
        Ok(()) => info!("job store closed"),
        Err(e) => warn!(error = %e.message(), "closing the job store failed"),
    }
    result
}

/// The plan with the job's pack zip given to its manifest task. The rule:
/// the zip's path is absolute, names a file (not a folder), and its folder
/// exists under the media roots, as an output folder must; checked here
/// so a job that cannot write its zip is refused before anything renders.
fn with_bundle(
    mut plan: deliverables_spec::plan::Plan,
    bundle_path: &str,
    media_roots: &[PathBuf],
) -> Result<deliverables_spec::plan::Plan, Status> {
    if bundle_path.is_empty() {
        return Ok(plan);
    }
    let path = Path::new(bundle_path);
    let refuse =
        |why: String| Status::invalid_argument(format!("bundle_path {bundle_path}: {why}"));
    if !path.is_absolute() {
        return Err(refuse("must be an absolute path".into()));
    }
    let (Some(dir), Some(_)) = (path.parent(), path.file_name()) else {
        return Err(refuse("names no file; give the zip's file name".into()));
    };
    if !dir.is_dir() {
        return Err(refuse(format!(
            "its folder {} does not exist; create it first",
            dir.display()
        )));
    }
    deliverables_spec::files::MediaRoots::new(media_roots)
        .confine_output(dir)
        .map_err(|why| {
            refuse(format!(
                "not allowed: {why}; write under a media root or add one to media_roots"
            ))
        })?;
    for t in &mut plan.tasks {
        if let TaskKind::Manifest { bundle } = &mut t.kind {
            *bundle = Some(bundle_path.to_string());
        }
    }
    Ok(plan)
}

/// The time BWF files of a job carry (audio and files reproduce, so no
/// wall-clock time of writing goes into them): the spec's
/// origination, else `SOURCE_DATE_EPOCH`, else the submission time. Decided
/// here, once, so every worker writes the same bytes.
fn origination_unix_s(spec: &deliverables_spec::LoadedSpec, submitted_ms: i64) -> i64 {
    spec.delivery()
        .origination
        .as_deref()
        .and_then(deliverables_spec::timestamp::parse_rfc3339_utc)
        .or_else(|| {
            std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
        })
        .unwrap_or(submitted_ms.div_euclid(1000))
}
