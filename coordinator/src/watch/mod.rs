//! Hot folders (`[[watch]]`): a folder the coordinator watches, where
//! each sub-folder dropped in is one title, rendered with the folder's spec
//! template once it has stopped changing.
//!
//! The rules:
//! - A title folder is *settled* when a scan finds its fingerprint (every
//!   file's relative path, size and modification time; [`scan`]) unchanged
//!   since a scan at least `settle_s` earlier, or when it holds a `.ready`
//!   marker (settled on the scan that sees it). A file named as a copy in
//!   progress (`*.part`, `*.tmp`, hidden names, …) keeps it unsettled
//!   either way, and so does a folder with no files at all. Until it is
//!   settled nothing in it is opened: scans read metadata only.
//! - A settled title is checked (its spec: the template plus a `[catalog]`
//!   of that one folder, roles and the reference mix from file names, as
//!   `render DIR` does; expansion, validation, planning) and submitted
//!   in-process through [`Coordinator::submit`] into
//!   `output_dir/<title folder>`, outside the watched tree.
//! - One submission per fingerprint, across restarts (`DATA_DIR/watch.sqlite`,
//!   [`state`]): a title whose fingerprint matches the one last acted on is
//!   left alone, whatever came of it; a changed title is settled and
//!   submitted again (after its previous job, if one still runs). A title
//!   rejected before submission is checked again when the template changes.
//! - A title whose check or job fails gets `<title>.stemforge-findings.txt`
//!   beside its folder (at the watch folder's top level, so writing it does
//!   not change the title), written atomically; a later success removes it.
//! - File-system events (`notify`) only bring the next scan forward; a scan
//!   every `poll_interval_s` is the ground truth, so a missed event (network
//!   file systems) costs latency, never a title. `poll = true`, or a
//!   watcher that cannot be made (inotify limits), means scans only.
//!   Scans and checks run on blocking threads; a vanished folder or a
//!   permission error is logged and the loop carries on.

mod config;
mod findings;
pub mod scan;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stemforge_proto::v1::jobs_server::Jobs as _;
use stemforge_proto::v1::{GetJobRequest, ListJobsRequest, SubmitJobRequest};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::ops::WatchView;
use crate::server::{Coordinator, Service, now_ms};
pub use config::{Watch, WatchConfig, check_template, validate};
pub use findings::findings_path;
use findings::{FOLDER_FIX, Item, Report, job_findings, remove_findings, write_findings};
pub use scan::{FINDINGS_SUFFIX, READY_MARKER, Seen};
pub use state::{Record, STATE_FILE, State, StateDb};

/// How long a folder with a `.ready` marker must stay unchanged (one
/// confirming scan) before it is submitted.
const READY_CONFIRM: Duration = Duration::from_secs(1);

/// Starts one task per hot folder (none configured: nothing, and no state
/// file). They stop when `stop` turns true; await the handles after that.
pub fn start(
    coord: Arc<Coordinator>,
    watches: Vec<Watch>,
    data_dir: &Path,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    if watches.is_empty() {
        return Ok(Vec::new());
    }
    let db = Arc::new(StateDb::open(&data_dir.join(STATE_FILE))?);
    let mut handles = Vec::with_capacity(watches.len());
    for w in watches {
        let folder = Folder::new(coord.clone(), db.clone(), w);
        handles.push(tokio::spawn(folder.run(stop.clone())));
    }
    Ok(handles)
}

/// A title folder as the loop knows it.
#[derive(Debug)]
struct Title {
    path: PathBuf,
    /// The fingerprint the last scan saw, and since when it has been seen.
    seen: Option<(String, Instant)>,
    /// The last scan's problem reading it, if any (logged once).
    unreadable: Option<String>,
    /// What was done with it (durable).
    rec: Option<Record>,
}

/// How long after an event the scan it brings forward runs (copies come in
/// bursts of events).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often every running job of this folder is asked for its state: the
/// fallback, since jobs are followed by the ends the coordinator tells.
const FOLLOW_EVERY: Duration = Duration::from_secs(30);

/// One hot folder's loop and what it knows.
struct Folder {
    coord: Arc<Coordinator>,
    db: Arc<StateDb>,
    w: Arc<Watch>,
    /// The folder as a string: the state's key and the view's name.
    key: String,
    titles: BTreeMap<String, Title>,
    view: WatchView,
}

impl Folder {
    fn new(coord: Arc<Coordinator>, db: Arc<StateDb>, w: Watch) -> Folder {
        let key = w.folder.display().to_string();
        let view = WatchView {
            folder: key.clone(),
            template: w.template.display().to_string(),
            settle_s: w.settle.as_secs_f64(),
            mode: if w.poll { "poll" } else { "notify" }.into(),
            ..Default::default()
        };
        Folder {
            coord,
            db,
            w: Arc::new(w),
            key,
            titles: BTreeMap::new(),
            view,
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        // Kept alive for the loop's life; dropping it stops the events.
        let _events = if self.w.poll {
            None
        } else {
            match event_source(&self.w.folder, wake.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(folder = %self.key, error = %e, "hot folder: no file-system events (inotify limits?); scanning every poll_interval_s instead");
                    self.view.mode = "poll".into();
                    None
                }
            }
        };
        // Listed from the start, before its first scan.
        self.coord.automations.put_watch(self.view.clone());
        if let Err(e) = self.load().await {
            warn!(folder = %self.key, error = %format!("{e:#}"), "hot folder: cannot read its state; it stays idle");
            self.view.last_error = Some(format!("{e:#}"));
            self.coord.automations.put_watch(self.view.clone());
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
        info!(folder = %self.key, template = %self.w.template.display(), mode = %self.view.mode, settle_s = self.w.settle.as_secs_f64(), output_dir = %self.w.output_dir.display(), "hot folder watched");
        // Jobs of this folder are followed by their ends (the coordinator
        // tells every job's end), with a slow look at all of them as the
        // fallback: no polling per running title.
        let mut ends = self.coord.job_ends.subscribe();
        let mut ended_jobs: Vec<String> = Vec::new();
        let mut last_follow: Option<Instant> = None;
        let mut next_scan = Instant::now();
        let mut last_scan = Instant::now();
        let min_gap = (self.w.settle / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
        loop {
            if *stop.borrow() {
                break;
            }
            let now = Instant::now();
            if now >= next_scan {
                last_scan = now;
                let due = self.scan().await;
                next_scan = due.map_or(now + self.w.poll_interval, |d| {
                    d.min(now + self.w.poll_interval)
                });
            }
            if !self.following() {
                ended_jobs.clear();
            } else {
                let all = last_follow.is_none_or(|t| t.elapsed() >= FOLLOW_EVERY);
                let only = (!all).then(|| std::mem::take(&mut ended_jobs));
                if all {
                    ended_jobs.clear();
                    last_follow = Some(Instant::now());
                }
                if (all || only.as_ref().is_some_and(|o| !o.is_empty()))
                    && self.follow(only.as_deref()).await
                {
                    // A title that waited for its previous job is looked at now.
                    next_scan = Instant::now();
                }
            }
            self.publish();
            let mut until = next_scan;
            if let (true, Some(t)) = (self.following(), last_follow) {
                until = until.min(t + FOLLOW_EVERY);
            }
            tokio::select! {
                r = stop.changed() => {
                    if r.is_err() {
                        break;
                    }
                }
                _ = wake.notified() => {
                    let soon = (Instant::now() + DEBOUNCE).max(last_scan + min_gap);
                    next_scan = next_scan.min(soon);
                }
                r = ends.recv() => match r {
                    Ok(job) => ended_jobs.push(job),
                    // Missed ends: look at every running job now.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => last_follow = None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                _ = tokio::time::sleep_until(until) => {}
            }
        }
        info!(folder = %self.key, "hot folder: stopped");
    }

    /// Reads the folder's rows; a job recorded as being submitted when the
    /// coordinator stopped is looked up by its label and spec hash.
    async fn load(&mut self) -> anyhow::Result<()> {
        let db = self.db.clone();
        let key = self.key.clone();
        let mut rows = tokio::task::spawn_blocking(move || db.load(&key)).await??;
        let pending: Vec<String> = rows
            .iter()
            .filter(|(_, r)| r.state == State::Submitting)
            .map(|(t, _)| t.clone())
            .collect();
        if !pending.is_empty() {
            let jobs = Service(self.coord.clone())
                .list_jobs(tonic::Request::new(ListJobsRequest {}))
                .await
                .map_err(|s| anyhow::anyhow!("listing jobs: {}", s.message()))?
                .into_inner()
                .jobs;
            for t in pending {
                let Some(r) = rows.get_mut(&t) else { continue };
                let found = jobs
                    .iter()
                    .filter(|j| {
                        j.label == r.label
                            && j.spec_sha256 == r.spec_sha256
                            && j.submitted_unix_ms >= r.updated_ms
                    })
                    .max_by_key(|j| j.submitted_unix_ms);
                match found {
                    Some(j) => {
                        info!(folder = %self.key, title = %t, job = %j.job_id, "hot folder: the job submitted before the restart found");
                        r.state = State::Submitted;
                        r.job_id = Some(j.job_id.clone());
                        r.submitted_ms = Some(j.submitted_unix_ms);
                        self.put(&t, r.clone()).await;
                    }
                    None => {
                        // Never submitted: the title is new again.
                        rows.remove(&t);
                    }
                }
            }
        }
        for (t, rec) in rows {
            self.titles.insert(
                t.clone(),
                Title {
                    path: self.w.folder.join(&t),
                    seen: None,
                    unreadable: None,
                    rec: Some(rec),
                },
            );
        }
        Ok(())
    }

    /// Writes a title's row; a failure is logged (the title may then be
    /// submitted again after a restart, never lost).
    async fn put(&self, title: &str, rec: Record) {
        let db = self.db.clone();
        let (key, t) = (self.key.clone(), title.to_string());
        let r = tokio::task::spawn_blocking(move || db.put(&key, &t, &rec)).await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                warn!(folder = %self.key, title, error = %format!("{e:#}"), "hot folder: cannot record the title's state")
            }
            Err(e) => {
                warn!(folder = %self.key, title, error = %e, "hot folder: recording task failed")
            }
        }
    }

    fn following(&self) -> bool {
        self.titles
            .values()
            .any(|t| t.rec.as_ref().is_some_and(|r| r.state == State::Submitted))
    }

    /// Scans the folder, submits what has settled; returns when the next
    /// title waiting to settle is due for a look.
    async fn scan(&mut self) -> Option<Instant> {
        let root = self.w.folder.clone();
        let listed = tokio::task::spawn_blocking(move || {
            scan::title_folders(&root).map(|titles| {
                titles
                    .into_iter()
                    .map(|(name, path)| {
                        let seen = scan::scan_title(&path);
                        (name, path, seen)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .await;
        let now = Instant::now();
        self.view.last_scan_ms = Some(now_ms());
        let listed = match listed {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => {
                let msg = format!("cannot list {}: {e}", self.key);
                if self.view.last_error.as_deref() != Some(msg.as_str()) {
                    warn!(folder = %self.key, error = %e, "hot folder: cannot list it; trying again at the next scan");
                }
                self.view.last_error = Some(msg);
                return None;
            }
            Err(e) => {
                warn!(folder = %self.key, error = %e, "hot folder: scan task failed");
                return None;
            }
        };
        if self
            .view
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("cannot list"))
        {
            self.view.last_error = None;
        }
        let present: std::collections::BTreeSet<&str> =
            listed.iter().map(|(n, _, _)| n.as_str()).collect();
        // Folders gone from the listing are forgotten unless a row keeps them
        // (a job to follow, or the fingerprint acted on).
        self.titles.retain(|n, t| {
            let here = present.contains(n.as_str());
            if !here {
                t.seen = None;
            }
            here || t.rec.is_some()
        });
        let mut waiting = 0u32;
        let mut due: Option<Instant> = None;
        let mut settled = Vec::new();
        for (name, path, seen) in listed {
            let t = self.titles.entry(name.clone()).or_insert_with(|| Title {
                path: path.clone(),
                seen: None,
                unreadable: None,
                rec: None,
            });
            t.path = path;
            let (fingerprint, files, in_transit, ready) = match seen {
                Seen::Unreadable(why) => {
                    if t.unreadable.as_deref() != Some(why.as_str()) {
                        warn!(folder = %self.key, title = %name, error = %why, "hot folder: cannot read a title folder; it waits");
                    }
                    t.unreadable = Some(why);
                    t.seen = None;
                    waiting += 1;
                    continue;
                }
                Seen::Files {
                    fingerprint,
                    files,
                    in_transit,
                    ready,
                } => (fingerprint, files, in_transit, ready),
            };
            t.unreadable = None;
            let since = match &t.seen {
                Some((f, since)) if *f == fingerprint => *since,
                _ => {
                    t.seen = Some((fingerprint.clone(), now));
                    now
                }
            };
            let template_sha = &self.w.template_sha256;
            let handled = t.rec.as_ref().is_some_and(|r| {
                r.fingerprint == fingerprint
                    && !(r.state == State::Rejected && r.template_sha256 != *template_sha)
            });
            if handled {
                continue;
            }
            waiting += 1;
            // An empty folder (just made, its files not begun), a copy in
            // progress, and a title whose previous job still runs all wait.
            let busy = t
                .rec
                .as_ref()
                .is_some_and(|r| matches!(r.state, State::Submitted | State::Submitting));
            if files == 0 || in_transit.is_some() || busy {
                continue;
            }
            // A `.ready` marker still needs one confirming scan that sees
            // the same files a moment later.
            let confirmed = now.duration_since(since) >= READY_CONFIRM.min(self.w.settle);
            if (ready && confirmed) || now.duration_since(since) >= self.w.settle {
                waiting -= 1;
                settled.push((name, fingerprint));
            } else {
                // Just after the settle time (or the marker's confirmation):
                // the scan that confirms it.
                let wait = if ready {
                    READY_CONFIRM.min(self.w.settle)
                } else {
                    self.w.settle
                };
                let at = since + wait + Duration::from_millis(20);
                due = Some(due.map_or(at, |d| d.min(at)));
            }
        }
        self.view.waiting = waiting;
        for (name, fingerprint) in settled {
            self.submit(&name, fingerprint).await;
        }
        due
    }

    /// Checks a settled title and submits it, or writes its findings.
    async fn submit(&mut self, name: &str, fingerprint: String) {
        let Some(t) = self.titles.get(name) else {
            return;
        };
        let path = t.path.clone();
        let (coord, db, w, key) = (
            self.coord.clone(),
            self.db.clone(),
            self.w.clone(),
            self.key.clone(),
        );
        let title = name.to_string();
        let res = tokio::task::spawn_blocking(move || {
            check_and_submit(&coord, &db, &w, &key, &title, &path, fingerprint)
        })
        .await;
        let rec = match res {
            Ok(r) => r,
            Err(e) => {
                warn!(folder = %self.key, title = name, error = %e, "hot folder: submission task failed; the title is tried at the next scan");
                return;
            }
        };
        match rec.state {
            State::Submitted => {
                self.view.submitted += 1;
                self.view.last_submit_ms = rec.submitted_ms;
                self.view.last_job = rec.job_id.clone();
            }
            _ => {
                self.view.last_error = rec.error.as_ref().map(|e| format!("{name}: {e}"));
            }
        }
        if let Some(t) = self.titles.get_mut(name) {
            t.rec = Some(rec);
        }
    }

    /// Asks the coordinator about each running job of this folder; records
    /// those that ended (findings written or removed). True if any ended.
    /// `only`: just these jobs (the ones that ended), else every one.
    async fn follow(&mut self, only: Option<&[String]>) -> bool {
        let running: Vec<(String, String)> = self
            .titles
            .iter()
            .filter_map(|(n, t)| {
                let r = t.rec.as_ref()?;
                let job = r.job_id.clone().unwrap_or_default();
                (r.state == State::Submitted && only.is_none_or(|o| o.contains(&job)))
                    .then(|| (n.clone(), job))
            })
            .collect();
        let svc = Service(self.coord.clone());
        let mut ended = false;
        for (name, job) in running {
            let head = svc
                .get_job(tonic::Request::new(GetJobRequest {
                    job_id: job.clone(),
                    page_size: 1,
                    after_seq: None,
                }))
                .await;
            let outcome = match head {
                Ok(r) => {
                    let st = r.into_inner();
                    match stemforge_proto::states::job_state(st.state) {
                        Some(deliverables_spec::contract::JobState::Running) | None => continue,
                        Some(deliverables_spec::contract::JobState::Succeeded) => {
                            Outcome::Succeeded
                        }
                        Some(s) => {
                            // The whole job (one title: a few tasks) for its errors.
                            let full = svc
                                .get_job(tonic::Request::new(GetJobRequest {
                                    job_id: job.clone(),
                                    page_size: 0,
                                    after_seq: None,
                                }))
                                .await
                                .map(|r| r.into_inner())
                                .unwrap_or(st);
                            Outcome::Ended(s, Box::new(full))
                        }
                    }
                }
                Err(s) if s.code() == tonic::Code::NotFound => Outcome::Lost,
                Err(s) => {
                    warn!(folder = %self.key, title = %name, job = %job, error = %s.message(), "hot folder: cannot ask for the job's state");
                    continue;
                }
            };
            ended = true;
            self.ended(&name, &job, outcome).await;
        }
        ended
    }

    async fn ended(&mut self, name: &str, job: &str, outcome: Outcome) {
        let Some(mut rec) = self.titles.get(name).and_then(|t| t.rec.clone()) else {
            return;
        };
        let root = self.w.folder.clone();
        let (title, job_id) = (name.to_string(), job.to_string());
        let (state, error) = match outcome {
            Outcome::Succeeded => {
                let r = tokio::task::spawn_blocking(move || remove_findings(&root, &title)).await;
                if let Ok(Err(e)) = r {
                    warn!(folder = %self.key, title = name, error = %e, "hot folder: cannot remove a stale findings file");
                }
                info!(folder = %self.key, title = name, job, "hot folder: title delivered");
                (State::Succeeded, None)
            }
            Outcome::Lost => {
                warn!(folder = %self.key, title = name, job, "hot folder: the coordinator no longer knows the title's job; it is not submitted again until the folder changes");
                (
                    State::Failed,
                    Some(format!("job {job} is not known to the coordinator")),
                )
            }
            Outcome::Ended(state, st) => {
                let w = self.w.clone();
                let fp = rec.fingerprint.clone();
                let r = tokio::task::spawn_blocking(move || {
                    let report = job_findings(&w, &title, &job_id, state, &st, &fp);
                    let first = report.first_line();
                    write_findings(&w.folder, &title, &report.render()).map(|()| first)
                })
                .await;
                let error = match r {
                    Ok(Ok(first)) => first,
                    Ok(Err(e)) => {
                        warn!(folder = %self.key, title = name, error = %e, "hot folder: cannot write the findings file");
                        format!("job {job} {state}")
                    }
                    Err(e) => format!("job {job} {state} ({e})"),
                };
                warn!(folder = %self.key, title = name, job, state = %state, "hot folder: title not delivered; findings written beside its folder");
                let s = if state == deliverables_spec::contract::JobState::Cancelled {
                    State::Cancelled
                } else {
                    State::Failed
                };
                (s, Some(error))
            }
        };
        rec.state = state;
        rec.error = error.clone();
        rec.updated_ms = now_ms();
        if let Some(e) = error {
            self.view.last_error = Some(format!("{name}: {e}"));
        }
        self.put(name, rec.clone()).await;
        if let Some(t) = self.titles.get_mut(name) {
            t.rec = Some(rec);
        }
    }

    /// Puts this folder's view where the operator surfaces read it.
    fn publish(&mut self) {
        self.view.rejected = self
            .titles
            .values()
            .filter(|t| {
                t.rec.as_ref().is_some_and(|r| {
                    matches!(r.state, State::Rejected | State::Failed)
                        && t.seen.as_ref().is_some_and(|(f, _)| *f == r.fingerprint)
                })
            })
            .count() as u32;
        self.coord.automations.put_watch(self.view.clone());
    }
}

/// How a followed job ended.
enum Outcome {
    Succeeded,
    /// Failed or cancelled, with the job's status (its tasks).
    Ended(
        deliverables_spec::contract::JobState,
        Box<stemforge_proto::v1::JobStatus>,
    ),
    /// The coordinator does not know the job.
    Lost,
}

/// File-system events on the folder and everything under it wake the loop.
fn event_source(folder: &Path, wake: Arc<Notify>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // An error (a queue overflow) may mean missed events: scan anyway.
        let _ = res;
        wake.notify_one();
    })?;
    w.watch(folder, notify::RecursiveMode::Recursive)?;
    Ok(w)
}

/// Builds a settled title's spec from the template, checks and submits it;
/// records the outcome durably and writes findings when it is refused.
fn check_and_submit(
    coord: &Coordinator,
    db: &StateDb,
    w: &Watch,
    key: &str,
    title: &str,
    path: &Path,
    fingerprint: String,
) -> Record {
    let label = format!("{}/{title}", w.label);
    let mut rec = Record {
        fingerprint,
        state: State::Rejected,
        job_id: None,
        spec_sha256: String::new(),
        template_sha256: w.template_sha256.clone(),
        label,
        error: None,
        submitted_ms: None,
        updated_ms: now_ms(),
    };
    let reject = |mut rec: Record, report: Report| -> Record {
        rec.error = Some(report.first_line());
        if let Err(e) = write_findings(&w.folder, title, &report.render()) {
            warn!(folder = key, title, error = %e, "hot folder: cannot write the findings file");
        }
        warn!(
            folder = key,
            title,
            error = rec.error.as_deref().unwrap_or_default(),
            "hot folder: title refused before submission; findings written beside its folder"
        );
        rec.updated_ms = now_ms();
        if let Err(e) = db.put(key, title, &rec) {
            warn!(folder = key, title, error = %format!("{e:#}"), "hot folder: cannot record the title's state");
        }
        rec
    };
    let mut report = Report::new(w, title, &rec.fingerprint);
    let loaded = match title_spec(w, path) {
        Ok(l) => l,
        Err(items) => {
            report.headline = "its spec could not be made from the folder and the template".into();
            report.items = items;
            return reject(rec, report);
        }
    };
    rec.spec_sha256 = loaded.sha256.clone();
    // Recorded before the submission, so a coordinator stopped in between
    // finds the job instead of submitting it again.
    rec.state = State::Submitting;
    rec.updated_ms = now_ms();
    if let Err(e) = db.put(key, title, &rec) {
        warn!(folder = key, title, error = %format!("{e:#}"), "hot folder: cannot record the title's state; not submitting it now");
        rec.state = State::Rejected;
        rec.error = Some(format!("cannot record the title's state: {e:#}"));
        // Not written as a row: the title is tried again at the next scan
        // that sees it changed, or after a restart.
        return rec;
    }
    let req = SubmitJobRequest {
        spec_toml: loaded.text.clone(),
        spec_sha256: loaded.sha256.clone(),
        base_dir: w.template_base.display().to_string(),
        priority: w.priority,
        label: rec.label.clone(),
        output_dir: w.output_dir.join(title).display().to_string(),
        bundle_path: String::new(),
    };
    match coord.submit(req) {
        Ok(resp) => {
            rec.state = State::Submitted;
            rec.job_id = Some(resp.job_id.clone());
            rec.submitted_ms = Some(now_ms());
            rec.updated_ms = now_ms();
            info!(folder = key, title, job = %resp.job_id, tasks = resp.task_count, "hot folder: title settled and submitted");
            if let Err(e) = db.put(key, title, &rec) {
                warn!(folder = key, title, error = %format!("{e:#}"), "hot folder: cannot record the submitted job");
            }
            rec
        }
        Err(s) => {
            report.headline = "the coordinator refused its job".into();
            report.items = s
                .message()
                .lines()
                .map(|l| l.trim().trim_start_matches("- ").to_string())
                .filter(|l| !l.is_empty())
                .map(|m| Item::error("submit", m, ""))
                .collect();
            reject(rec, report)
        }
    }
}

/// A title folder's spec: the template with a `[catalog]` of the folder,
/// expanded and validated; its findings otherwise.
fn title_spec(w: &Watch, path: &Path) -> Result<deliverables_spec::LoadedSpec, Vec<Item>> {
    let text = crate::catalog_dir::template_spec(&w.template_text, path)
        .map_err(|e| vec![Item::error("folder", format!("{e:#}"), "")])?;
    let spec_items = |e: deliverables_spec::SpecErrors| -> Vec<Item> {
        e.errors
            .iter()
            .map(|x| {
                // The title's own findings (its files) are told without the
                // catalog's field path; their fix is a change in the folder,
                // since a hot folder's title takes no overrides.
                if x.field.starts_with("catalog") {
                    let fix = match x.hint.as_deref() {
                        Some(h) if h.contains("[catalog.titles") => FOLDER_FIX,
                        Some(h) => h,
                        None => "",
                    };
                    Item::error("folder", x.message.clone(), fix)
                } else if x.field.is_empty() {
                    Item::error(
                        "spec",
                        x.message.clone(),
                        x.hint.as_deref().unwrap_or_default(),
                    )
                } else {
                    Item::error(
                        "spec",
                        format!("{}: {}", x.field, x.message),
                        x.hint.as_deref().unwrap_or_default(),
                    )
                }
            })
            .collect()
    };
    let expanded = deliverables_spec::catalog::expand(&text, &w.template_base, None)
        .map_err(spec_items)?
        .ok_or_else(|| {
            vec![Item::error(
                "spec",
                "the title's [catalog] was not read",
                "",
            )]
        })?;
    deliverables_spec::load_text(expanded.text, &w.template_base, None).map_err(spec_items)
}
