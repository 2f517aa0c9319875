//! Client commands against a running coordinator: submit, status, watch,
//! cancel, retry. `render` uses the same submit path with its in-process
//! cluster.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use deliverables_spec::contract::{JobState, TaskState};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use stemforge_proto::client::{AuthChannel, ClientError, Endpoint};
use stemforge_proto::v1::jobs_client::JobsClient;
use stemforge_proto::v1::{
    CancelJobRequest, GetJobRequest, JobStatus, ListJobsRequest, ListSchedulesRequest,
    RetryJobRequest, SubmitJobRequest, SubmitJobResponse, WatchJobRequest,
};
use tracing::info;

pub type Client = JobsClient<AuthChannel>;

/// Connects, retrying briefly (a coordinator that is just starting).
pub async fn connect(ep: &Endpoint) -> Result<Client> {
    let mut last = None;
    for _ in 0..50 {
        match ep.connect().await {
            Ok(c) => return Ok(JobsClient::new(c)),
            Err(e @ ClientError::Config(_)) => return Err(e.into()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(anyhow!(
        "{}; start one with `stemforge coordinator` or pass --coordinator URL",
        last.map_or_else(
            || format!("cannot reach the coordinator at {}", ep.url),
            |e| e.to_string()
        )
    ))
}

/// A refusal as an error message that keeps its gRPC code where it matters
/// (a refused token must not read like any other failure).
pub fn status_err(s: tonic::Status) -> anyhow::Error {
    match s.code() {
        tonic::Code::Unauthenticated => anyhow!("UNAUTHENTICATED: {}", s.message()),
        tonic::Code::PermissionDenied => anyhow!("PERMISSION_DENIED: {}", s.message()),
        tonic::Code::Unavailable => anyhow!("{}", stemforge_proto::client::error_chain(&s)),
        _ => anyhow!("{}", s.message()),
    }
}

/// What a submission needs besides the spec.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    pub priority: i32,
    pub label: String,
    /// Absolute output folder overriding the spec's (empty: the spec's).
    pub output_dir: String,
    /// Absolute path of a pack zip the job writes after its manifest
    /// (empty: none).
    pub bundle_path: String,
}

/// Reads, validates and submits a spec file.
pub async fn submit_file(
    client: &mut Client,
    spec_path: &Path,
    opts: &SubmitOptions,
) -> Result<SubmitJobResponse> {
    let loaded = deliverables_spec::load_file(spec_path)?;
    submit_loaded(client, &loaded, opts).await
}

/// Submits a spec already read and validated (a benchmark times the call
/// alone, without the client's own parsing).
pub async fn submit_loaded(
    client: &mut Client,
    loaded: &deliverables_spec::LoadedSpec,
    opts: &SubmitOptions,
) -> Result<SubmitJobResponse> {
    let base_dir = std::fs::canonicalize(&loaded.base_dir).with_context(|| {
        format!(
            "cannot resolve the spec's folder {}",
            loaded.base_dir.display()
        )
    })?;
    let resp = client
        .submit_job(SubmitJobRequest {
            spec_toml: loaded.text.clone(),
            spec_sha256: loaded.sha256.clone(),
            base_dir: base_dir.display().to_string(),
            priority: opts.priority,
            label: opts.label.clone(),
            output_dir: opts.output_dir.clone(),
            bundle_path: opts.bundle_path.clone(),
        })
        .await
        .map_err(status_err)?
        .into_inner();
    info!(job = %resp.job_id, tasks = resp.task_count, "job submitted");
    Ok(resp)
}

pub fn job_state_name(code: i32) -> &'static str {
    stemforge_proto::states::job_state(code).map_or("unknown", JobState::as_str)
}

pub fn task_state_name(code: i32) -> &'static str {
    stemforge_proto::states::task_state(code).map_or("unknown", TaskState::as_str)
}

/// A job's status as `stemforge status --json` prints it.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub job_id: String,
    pub state: &'static str,
    pub priority: i32,
    pub label: String,
    pub submitted_unix_ms: i64,
    pub output_dir: String,
    pub manifest_path: String,
    pub all_outputs_pass: bool,
    /// The pack zip and its SHA-256, once written (empty otherwise).
    pub bundle_path: String,
    pub bundle_sha256: String,
    pub tasks: Vec<TaskView>,
}

#[derive(Debug, Serialize)]
pub struct TaskView {
    pub task_id: String,
    pub label: String,
    pub state: &'static str,
    /// Executions started so far.
    pub attempt: u32,
    pub worker_id: String,
    pub error: String,
    pub history: Vec<String>,
}

impl From<&JobStatus> for JobView {
    fn from(s: &JobStatus) -> Self {
        JobView {
            job_id: s.job_id.clone(),
            state: job_state_name(s.state),
            priority: s.priority,
            label: s.label.clone(),
            submitted_unix_ms: s.submitted_unix_ms,
            output_dir: s.output_dir.clone(),
            manifest_path: s.manifest_path.clone(),
            all_outputs_pass: s.all_outputs_pass,
            bundle_path: s.bundle_path.clone(),
            bundle_sha256: s.bundle_sha256.clone(),
            tasks: s
                .tasks
                .iter()
                .map(|t| TaskView {
                    task_id: t.task_id.clone(),
                    label: t.label.clone(),
                    state: task_state_name(t.state),
                    attempt: t.attempt,
                    worker_id: t.worker_id.clone(),
                    error: t.error.clone(),
                    history: t.history.clone(),
                })
                .collect(),
        }
    }
}

/// A job with every task, read a page at a time (each response is bounded;
/// the result holds the whole job).
pub async fn get_job(client: &mut Client, job_id: &str) -> Result<JobStatus> {
    let mut first = get_job_page(client, job_id, None, 0).await?;
    let mut next = first.next_after_seq.take();
    while let Some(after) = next {
        let page = get_job_page(client, job_id, Some(after), 0).await?;
        next = page.next_after_seq;
        first.tasks.extend(page.tasks);
    }
    Ok(first)
}

/// One page of a job's tasks (`page_size` 0: the coordinator's default),
/// with the job's state and task counts.
pub async fn get_job_page(
    client: &mut Client,
    job_id: &str,
    after_seq: Option<u32>,
    page_size: u32,
) -> Result<JobStatus> {
    Ok(client
        .get_job(GetJobRequest {
            job_id: job_id.to_string(),
            page_size,
            after_seq,
        })
        .await
        .map_err(status_err)?
        .into_inner())
}

/// A job's state and task counts, without its tasks.
pub async fn get_job_head(client: &mut Client, job_id: &str) -> Result<JobStatus> {
    get_job_page(client, job_id, None, 1).await
}

/// `stemforge status`: one job's tasks, or every job.
pub async fn status(url: &Endpoint, job: Option<&str>, json: bool) -> Result<String> {
    let mut client = connect(url).await?;
    match job {
        Some(id) => {
            let st = get_job(&mut client, id).await?;
            let view = JobView::from(&st);
            if json {
                return Ok(serde_json::to_string_pretty(&view)? + "\n");
            }
            Ok(job_table(&view))
        }
        None => {
            let jobs = client
                .list_jobs(ListJobsRequest {})
                .await
                .map_err(status_err)?
                .into_inner()
                .jobs;
            let views: Vec<JobView> = jobs.iter().map(JobView::from).collect();
            if json {
                return Ok(serde_json::to_string_pretty(&views)? + "\n");
            }
            let mut s = format!(
                "{:<40} {:<10} {:>8}  {}\n",
                "job", "state", "priority", "label"
            );
            for v in &views {
                let _ = writeln!(
                    s,
                    "{:<40} {:<10} {:>8}  {}",
                    v.job_id, v.state, v.priority, v.label
                );
            }
            Ok(s)
        }
    }
}

/// Titles × tasks and their states.
fn job_table(v: &JobView) -> String {
    let mut s = format!(
        "job {} {} (priority {}){}\n",
        v.job_id,
        v.state,
        v.priority,
        if v.manifest_path.is_empty() {
            String::new()
        } else {
            format!("; manifest {}", v.manifest_path)
        }
    );
    if !v.bundle_path.is_empty() {
        let _ = writeln!(s, "  pack {} sha256 {}", v.bundle_path, v.bundle_sha256);
    }
    let _ = writeln!(
        s,
        "  {:<44} {:<10} {:>7}  {:<12} error",
        "task", "state", "attempt", "worker"
    );
    for t in &v.tasks {
        let _ = writeln!(
            s,
            "  {:<44} {:<10} {:>7}  {:<12} {}",
            t.label, t.state, t.attempt, t.worker_id, t.error
        );
        // Every ended attempt of a task that has had trouble, with the
        // worker's own error, not only the last state.
        if t.history.len() > 1 || t.state == "failed" {
            for h in &t.history {
                let _ = writeln!(s, "      {h}");
            }
        }
    }
    s
}

pub async fn cancel(url: &Endpoint, job: &str) -> Result<()> {
    let mut client = connect(url).await?;
    client
        .cancel_job(CancelJobRequest {
            job_id: job.to_string(),
        })
        .await
        .map_err(status_err)?;
    Ok(())
}

pub async fn retry(url: &Endpoint, job: &str, task: Option<&str>) -> Result<u32> {
    let mut client = connect(url).await?;
    Ok(client
        .retry_job(RetryJobRequest {
            job_id: job.to_string(),
            task_id: task.unwrap_or_default().to_string(),
        })
        .await
        .map_err(status_err)?
        .into_inner()
        .tasks_requeued)
}

/// `stemforge priority JOB N`: the job's queued tasks move in the lease order.
pub async fn set_priority(url: &Endpoint, job: &str, priority: i32) -> Result<()> {
    let mut client = connect(url).await?;
    client
        .set_job_priority(stemforge_proto::v1::SetJobPriorityRequest {
            job_id: job.to_string(),
            priority,
        })
        .await
        .map_err(status_err)?;
    Ok(())
}

/// The title a task label names (`analyze T`, `render T/v`, `manifest`).
fn title_of(label: &str) -> String {
    let rest = label.split_once(' ').map_or(label, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// `stemforge watch`: follows a job's event stream to its end, one progress
/// bar per title on a terminal (log lines otherwise). Reconnects and resumes
/// after the last event seen if the coordinator goes away.
pub async fn watch(url: &Endpoint, job: &str) -> Result<JobStatus> {
    let mut client = connect(url).await?;
    // Per-title bars for a job whose tasks fit one page; a catalog gets one
    // bar for the whole job, moved by the task events.
    let first = get_job_page(&mut client, job, None, 0).await?;
    let total = first.counts.as_ref().map_or(0, |c| c.total);
    let per_title = first.next_after_seq.is_none();
    let tty = std::io::stderr().is_terminal();
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:<28} {bar:30} {pos:>3}/{len:3} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    // Per title: tasks and how many finished.
    let mut titles: BTreeMap<String, (ProgressBar, BTreeMap<String, bool>)> = BTreeMap::new();
    let job_bar = if tty && !per_title {
        let b = multi.add(ProgressBar::new(total));
        b.set_style(style.clone());
        b.set_prefix(format!("{total} tasks"));
        let c = first.counts.unwrap_or_default();
        b.set_position(c.succeeded + c.failed + c.skipped + c.cancelled);
        b
    } else {
        ProgressBar::hidden()
    };
    for t in first.tasks.iter().filter(|_| per_title) {
        let title = title_of(&t.label);
        let entry = titles.entry(title.clone()).or_insert_with(|| {
            let b = if tty {
                multi.add(ProgressBar::new(0))
            } else {
                ProgressBar::hidden()
            };
            b.set_style(style.clone());
            b.set_prefix(title.clone());
            (b, BTreeMap::new())
        });
        entry
            .1
            .insert(t.task_id.clone(), (4..=7).contains(&t.state));
    }
    for (b, tasks) in titles.values() {
        b.set_length(tasks.len() as u64);
        b.set_position(tasks.values().filter(|d| **d).count() as u64);
    }
    let mut after = 0u64;
    let mut failures = 0;
    loop {
        let stream = client
            .watch_job(WatchJobRequest {
                job_id: job.to_string(),
                after_seq: after,
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(e)
                if failures < 30
                    && !matches!(
                        e.code(),
                        tonic::Code::Unauthenticated
                            | tonic::Code::PermissionDenied
                            | tonic::Code::NotFound
                    ) =>
            {
                failures += 1;
                tracing::warn!("watch: {}; reconnecting", e.message());
                tokio::time::sleep(Duration::from_millis(500)).await;
                client = connect(url).await.unwrap_or(client);
                continue;
            }
            Err(e) => return Err(status_err(e)),
        };
        let ended = loop {
            match stream.message().await {
                Ok(Some(e)) => {
                    if e.seq > 0 {
                        after = e.seq;
                    }
                    if !per_title && e.kind == "task" {
                        job_bar.set_message(format!("{} {}", e.label, e.state));
                        if TaskState::from_name(&e.state).is_some_and(TaskState::is_terminal) {
                            job_bar.inc(1);
                        }
                    }
                    let title = title_of(&e.label);
                    if let Some((bar, tasks)) = titles.get_mut(&title) {
                        match e.kind.as_str() {
                            "progress" => {
                                bar.set_message(format!("{} {:.0}%", e.label, e.progress * 100.0))
                            }
                            "task" => {
                                let done = TaskState::from_name(&e.state)
                                    .is_some_and(TaskState::is_terminal);
                                tasks.insert(e.task_id.clone(), done);
                                bar.set_position(tasks.values().filter(|d| **d).count() as u64);
                                bar.set_message(format!("{} {}", e.label, e.state));
                            }
                            _ => {}
                        }
                    }
                    if !tty && e.kind != "progress" {
                        eprintln!(
                            "{} {} {}{}{}",
                            e.kind,
                            if e.label.is_empty() { job } else { &e.label },
                            e.state,
                            if e.attempt > 0 {
                                format!(" (attempt {})", e.attempt)
                            } else {
                                String::new()
                            },
                            if e.message.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", e.message)
                            }
                        );
                    }
                }
                Ok(None) => break true,
                Err(e) => {
                    tracing::warn!("watch stream broke: {}; resuming", e.message());
                    break false;
                }
            }
        };
        if ended {
            break;
        }
        failures += 1;
        if failures > 30 {
            return Err(anyhow!("lost the coordinator at {}", url.url));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        client = connect(url).await.unwrap_or(client);
    }
    for (b, _) in titles.values() {
        b.finish();
    }
    job_bar.finish();
    get_job_head(&mut client, job).await
}

/// `stemforge health`: the serving status the coordinator's standard gRPC
/// health service reports for `service` ("" = the whole server).
pub async fn health(ep: &Endpoint, service: &str) -> Result<String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let ch = ep.connect().await?;
    let mut c = HealthClient::new(ch);
    let r = c
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .map_err(status_err)?
        .into_inner();
    Ok(r.status().as_str_name().to_string())
}

/// A schedule as `stemforge schedules --json` prints it: times as Unix ms
/// and as the wall-clock time of the schedule's zone.
#[derive(Debug, Serialize)]
pub struct ScheduleRow {
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub spec: String,
    pub priority: i32,
    pub label: String,
    pub missed: String,
    pub last_run_unix_ms: Option<i64>,
    pub last_run: String,
    pub last_job_id: String,
    pub next_run_unix_ms: Option<i64>,
    pub next_run: String,
    pub last_error: String,
}

/// `stemforge schedules`: the coordinator's schedules, last and next runs.
pub async fn schedules(url: &Endpoint, json: bool) -> Result<String> {
    let mut client = connect(url).await?;
    let list = client
        .list_schedules(ListSchedulesRequest {})
        .await
        .map_err(status_err)?
        .into_inner()
        .schedules;
    let rows: Vec<ScheduleRow> = list
        .into_iter()
        .map(|s| {
            let tz = s.time_zone.parse::<chrono_tz::Tz>().ok();
            let at = |ms: i64| match (ms, tz) {
                (0, _) => String::new(),
                (ms, Some(tz)) => crate::schedules::slot_time(tz, ms),
                (ms, None) => format!("{ms} ms"),
            };
            ScheduleRow {
                last_run: at(s.last_run_unix_ms),
                next_run: at(s.next_run_unix_ms),
                last_run_unix_ms: (s.last_run_unix_ms != 0).then_some(s.last_run_unix_ms),
                next_run_unix_ms: (s.next_run_unix_ms != 0).then_some(s.next_run_unix_ms),
                name: s.name,
                cron: s.cron,
                time_zone: s.time_zone,
                spec: s.spec,
                priority: s.priority,
                label: s.label,
                missed: s.missed,
                last_job_id: s.last_job_id,
                last_error: s.last_error,
            }
        })
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&rows)? + "\n");
    }
    if rows.is_empty() {
        return Ok("no schedules configured ([[schedules]] in the coordinator's config)\n".into());
    }
    let mut s = format!(
        "{:<20} {:<34} {:<44} {:<26} {}\n",
        "schedule", "cron (zone)", "last run (job)", "next run", "last error"
    );
    for r in &rows {
        let last = if r.last_run.is_empty() {
            "-".to_string()
        } else if r.last_job_id.is_empty() {
            r.last_run.clone()
        } else {
            format!("{} ({})", r.last_run, r.last_job_id)
        };
        let _ = writeln!(
            s,
            "{:<20} {:<34} {:<44} {:<26} {}",
            r.name,
            format!("{} ({})", r.cron, r.time_zone),
            last,
            if r.next_run.is_empty() {
                "-"
            } else {
                &r.next_run
            },
            // One line per schedule, whatever the error's shape.
            r.last_error
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(s)
}

/// One hot folder as `stemforge hot-folders --json` prints it.
#[derive(Debug, Serialize)]
pub struct WatchFolderView {
    pub folder: String,
    pub template: String,
    pub settle_s: f64,
    pub mode: String,
    pub submitted: u32,
    pub waiting: u32,
    pub rejected: u32,
    /// Unix ms; absent: never.
    pub last_scan_unix_ms: Option<i64>,
    pub last_submit_unix_ms: Option<i64>,
    pub last_job_id: String,
    pub last_error: String,
}

/// `stemforge hot-folders`: the coordinator's `[[watch]]` folders.
pub async fn hot_folders(url: &Endpoint, json: bool) -> Result<String> {
    let mut client = connect(url).await?;
    let folders = client
        .list_watch_folders(stemforge_proto::v1::ListWatchFoldersRequest {})
        .await
        .map_err(status_err)?
        .into_inner()
        .folders;
    let some = |ms: i64| (ms > 0).then_some(ms);
    let views: Vec<WatchFolderView> = folders
        .into_iter()
        .map(|f| WatchFolderView {
            last_scan_unix_ms: some(f.last_scan_unix_ms),
            last_submit_unix_ms: some(f.last_submit_unix_ms),
            folder: f.folder,
            template: f.template,
            settle_s: f.settle_s,
            mode: f.mode,
            submitted: f.submitted,
            waiting: f.waiting,
            rejected: f.rejected,
            last_job_id: f.last_job_id,
            last_error: f.last_error,
        })
        .collect();
    if json {
        return Ok(serde_json::to_string_pretty(&views)? + "\n");
    }
    if views.is_empty() {
        return Ok(
            "no hot folders configured (add [[watch]] to the coordinator's config)\n".into(),
        );
    }
    let mut s = format!(
        "{:<40} {:<6} {:>7} {:>9} {:>7} {:>8}  last job\n",
        "folder", "mode", "settle", "submitted", "waiting", "rejected"
    );
    for v in &views {
        let _ = writeln!(
            s,
            "{:<40} {:<6} {:>6}s {:>9} {:>7} {:>8}  {}",
            v.folder, v.mode, v.settle_s, v.submitted, v.waiting, v.rejected, v.last_job_id
        );
        if !v.last_error.is_empty() {
            let _ = writeln!(s, "  last error: {}", v.last_error);
        }
    }
    Ok(s)
}
