//! What the pages show, read from the scheduler a bounded piece at a time:
//! a page of jobs, a page of a job's titles (its render results read per
//! title), the workers, the automations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use deliverables_spec::TaskKind;
use deliverables_spec::compliance::{Outcome, Rule, judge_against};
use deliverables_spec::contract::PackResult;
use tonic::Status;

use crate::server::{Coordinator, now_ms};
use crate::store::{JobRecord, JobState, Tally, TaskState};

/// Jobs per page of the jobs list.
pub const JOBS_PER_PAGE: usize = 50;
/// Titles per page of a job's grid.
pub const TITLES_PER_PAGE: usize = 25;
/// Tasks read per step when a job's weights are summed.
const WEIGHT_SCAN_PAGE: usize = 2_000;

/// A job's finished and total task weight, kept while its tally stays the
/// same: summing weights reads every task of the job, so it is done again
/// only when a task changed state (and a page at a time).
#[derive(Default)]
pub struct WeightCache {
    map: Mutex<HashMap<String, (Tally, f64, f64)>>,
}

/// Jobs whose weights are remembered at most.
const WEIGHT_CACHE_MAX: usize = 4_096;

impl WeightCache {
    fn weights(
        &self,
        coord: &Coordinator,
        job_id: &str,
        tally: &Tally,
    ) -> Result<(f64, f64), Status> {
        if let Ok(m) = self.map.lock()
            && let Some((t, done, total)) = m.get(job_id)
            && t == tally
        {
            return Ok((*done, *total));
        }
        let (mut done, mut total) = (0.0, 0.0);
        let mut after = None;
        loop {
            let page = coord.read(|s| {
                let (_, _, tasks) = s.job_page(job_id, after, WEIGHT_SCAN_PAGE)?;
                Ok(tasks)
            })?;
            for t in &page {
                total += t.weight;
                if matches!(
                    t.state,
                    TaskState::Succeeded | TaskState::Failed | TaskState::Skipped
                ) {
                    done += t.weight;
                }
            }
            match page.last() {
                Some(t) if page.len() == WEIGHT_SCAN_PAGE => after = Some(t.seq),
                _ => break,
            }
        }
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= WEIGHT_CACHE_MAX {
                m.clear();
            }
            m.insert(job_id.to_string(), (*tally, done, total));
        }
        Ok((done, total))
    }
}

/// One row of the jobs list.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: String,
    pub label: String,
    pub state: String,
    pub running: bool,
    /// Something to run again (failed, skipped or cancelled tasks).
    pub retryable: bool,
    /// Weighted progress, 0–100, one decimal.
    pub progress: String,
    pub priority: i32,
    pub submitted: String,
    pub eta: String,
    pub tasks_total: u64,
    pub tasks_done: u64,
    pub tasks_failed: u64,
    pub tasks_leased: u64,
}

pub fn fmt_time(ms: i64) -> String {
    deliverables_spec::timestamp::rfc3339_utc(ms).replace('T', " ")
}

pub fn fmt_opt_time(ms: Option<i64>) -> String {
    ms.map_or_else(|| "–".to_string(), fmt_time)
}

pub fn fmt_duration(ms: i64) -> String {
    let s = (ms.max(0) + 500) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The time left at the rate the job has progressed since it was
/// submitted: unknown ("–") until 1% is done, and for finished jobs.
pub fn eta(progress: f64, submitted_ms: i64, now: i64, running: bool) -> String {
    if !running || !(0.01..1.0).contains(&progress) {
        return "–".into();
    }
    let elapsed = (now - submitted_ms).max(0) as f64;
    fmt_duration((elapsed * (1.0 - progress) / progress) as i64)
}

fn state_name(s: JobState) -> String {
    s.as_str().to_string()
}

/// The row of `job`, with its weighted progress: finished tasks' weight
/// plus each leased task's weight times its reported progress, over the
/// job's whole weight.
pub fn job_row(
    coord: &Coordinator,
    cache: &WeightCache,
    job: &JobRecord,
    leased: &[crate::store::TaskRecord],
) -> Result<JobRow, Status> {
    let tally = coord.read(|s| s.tally(&job.job_id))?;
    let (done_w, total_w) = cache.weights(coord, &job.job_id, &tally)?;
    let running_w: f64 = leased
        .iter()
        .filter(|t| t.job_id == job.job_id)
        .map(|t| t.weight * t.progress.clamp(0.0, 1.0))
        .sum();
    let p = if total_w > 0.0 {
        ((done_w + running_w) / total_w).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let running = job.state == JobState::Running;
    let done = tally.count(TaskState::Succeeded)
        + tally.count(TaskState::Failed)
        + tally.count(TaskState::Skipped);
    Ok(JobRow {
        id: job.job_id.clone(),
        label: job.label.clone(),
        state: state_name(job.state),
        running,
        retryable: tally.count(TaskState::Failed)
            + tally.count(TaskState::Skipped)
            + tally.count(TaskState::Cancelled)
            > 0,
        progress: format!("{:.1}", p * 100.0),
        priority: job.priority,
        submitted: fmt_time(job.submitted_ms),
        eta: eta(p, job.submitted_ms, now_ms(), running),
        tasks_total: tally.total(),
        tasks_done: done,
        tasks_failed: tally.count(TaskState::Failed),
        tasks_leased: tally.count(TaskState::Leased),
    })
}

/// A page of jobs, newest first, and the number of pages.
pub fn jobs_page(
    coord: &Coordinator,
    cache: &WeightCache,
    page: usize,
) -> Result<(Vec<JobRow>, usize, usize), Status> {
    let (jobs, leased) = coord.read(|s| {
        let mut jobs = s.jobs()?;
        jobs.reverse();
        Ok((jobs, s.leased()?))
    })?;
    let total = jobs.len();
    let pages = total.div_ceil(JOBS_PER_PAGE).max(1);
    let page = page.clamp(1, pages);
    let rows = jobs
        .iter()
        .skip((page - 1) * JOBS_PER_PAGE)
        .take(JOBS_PER_PAGE)
        .map(|j| job_row(coord, cache, j, &leased))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, page, pages))
}

/// One output of a title in the grid.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub present: bool,
    /// `pass`, `fail`, or `?` (the spec could not be read to judge).
    pub verdict: String,
    pub lufs: String,
    pub true_peak: String,
    /// The file, relative to the output folder.
    pub file: String,
}

#[derive(Debug, Clone)]
pub struct TitleRow {
    pub name: String,
    /// The state of the title's tasks, worst first (`failed`, `leased`…).
    pub state: String,
    pub cells: Vec<Cell>,
    pub errors: Vec<String>,
}

pub struct JobGrid {
    pub columns: Vec<String>,
    pub rows: Vec<TitleRow>,
    /// The cursor of the next page (plan position), if more titles follow.
    pub next_after: Option<u32>,
}

fn fmt_db(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.1}"))
}

fn title_of(kind: &TaskKind) -> Option<&str> {
    match kind {
        TaskKind::Preflight { title }
        | TaskKind::Analyze { title, .. }
        | TaskKind::Render { title, .. } => Some(title),
        TaskKind::Manifest { .. } => None,
    }
}

/// The titles of a job after plan position `after`, `TITLES_PER_PAGE` of
/// them: their outputs from the render tasks' stored results (read one
/// title at a time), each judged as the manifest judges it.
pub fn job_grid(
    coord: &Coordinator,
    job: &JobRecord,
    after: Option<u32>,
) -> Result<JobGrid, Status> {
    struct Title {
        name: String,
        index: Option<u32>,
        states: BTreeSet<u8>,
        renders: Vec<String>,
        errors: Vec<String>,
        last_seq: u32,
    }
    let mut titles: Vec<Title> = Vec::new();
    let mut cursor = after;
    let mut more = false;
    'read: loop {
        let tasks = coord.read(|s| {
            let (_, _, t) = s.job_page(&job.job_id, cursor, 200)?;
            Ok(t)
        })?;
        let full = tasks.len() == 200;
        for t in tasks {
            cursor = Some(t.seq);
            let Some(name) = title_of(&t.kind) else {
                continue;
            };
            if titles.last().is_none_or(|l| l.name != name) {
                if titles.len() == TITLES_PER_PAGE {
                    more = true;
                    break 'read;
                }
                titles.push(Title {
                    name: name.to_string(),
                    index: t.title,
                    states: BTreeSet::new(),
                    renders: Vec::new(),
                    errors: Vec::new(),
                    last_seq: t.seq,
                });
            }
            let Some(cur) = titles.last_mut() else {
                continue;
            };
            cur.last_seq = t.seq;
            let rank = match t.state {
                TaskState::Failed => 0,
                TaskState::Cancelled => 1,
                TaskState::Skipped => 2,
                TaskState::Leased => 3,
                TaskState::Queued => 4,
                TaskState::Blocked => 5,
                TaskState::Succeeded => 6,
            };
            cur.states.insert(rank);
            if let Some(e) = t.error.as_deref().filter(|e| !e.is_empty())
                && t.state == TaskState::Failed
            {
                cur.errors.push(format!("{}: {e}", t.kind.label()));
            }
            if matches!(t.kind, TaskKind::Render { .. }) && t.state == TaskState::Succeeded {
                cur.renders.push(t.task_id.clone());
            }
        }
        if !full {
            break;
        }
    }
    // The delivery the outputs are judged against, from the first title's
    // scoped spec (the header carries the delivery; every title shares it).
    let delivery = titles
        .iter()
        .find_map(|t| t.index)
        .and_then(|i| {
            coord.read(|s| s.spec_text(job, i)).ok().and_then(|text| {
                deliverables_spec::load_scoped(text, Path::new(&job.base_dir), &job.spec_sha256)
                    .ok()
            })
        })
        .map(|l| l.delivery().clone());
    let mut columns: BTreeMap<String, ()> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut cells_by_title: Vec<BTreeMap<String, Cell>> = Vec::new();
    for t in &titles {
        let mut cells = BTreeMap::new();
        for id in &t.renders {
            let result = coord.read(|s| s.task_result(&job.job_id, id))?;
            let Some(pack) = result.and_then(|r| serde_json::from_str::<PackResult>(&r).ok())
            else {
                continue;
            };
            for r in pack.renders {
                for o in r.outputs {
                    // A live pack has a file per stem (two of one role
                    // are `keys` and `keys_2`): its cells are its files.
                    let col = match (&o.live, o.stem_label()) {
                        (Some(_), _) => format!("{}/{}", o.variant, o.file.path),
                        (None, Some(label)) => format!("{}/{label}", o.variant),
                        (None, None) => o.variant.clone(),
                    };
                    let verdict = match &delivery {
                        Some(d) => {
                            let target =
                                d.loudness_target(o.measurement.dialogue.as_ref().map(|x| x.share));
                            // Judged as the manifest judges it.
                            let v = match &o.live {
                                Some(l) => deliverables_spec::compliance::judge_live(
                                    l.headroom_dbtp,
                                    l.untouched,
                                    !l.channels.is_empty(),
                                    &o.measurement,
                                ),
                                None => judge_against(
                                    Rule::of(o.level_policy, o.remix),
                                    d,
                                    &target,
                                    &o.measurement,
                                ),
                            };
                            if v.verdict == Outcome::Pass {
                                "pass"
                            } else {
                                "fail"
                            }
                            .to_string()
                        }
                        None => "?".into(),
                    };
                    columns.insert(col.clone(), ());
                    cells.insert(
                        col,
                        Cell {
                            present: true,
                            verdict,
                            lufs: fmt_db(o.measurement.integrated_lufs),
                            true_peak: fmt_db(o.measurement.true_peak_dbtp),
                            file: o.file.path.clone(),
                        },
                    );
                }
            }
        }
        cells_by_title.push(cells);
    }
    let columns: Vec<String> = columns.into_keys().collect();
    for (t, mut cells) in titles.iter().zip(cells_by_title) {
        let state = match t.states.iter().next() {
            Some(0) => "failed",
            Some(1) => "cancelled",
            Some(2) => "skipped",
            Some(3) => "running",
            Some(4) | Some(5) => "waiting",
            _ => "done",
        };
        rows.push(TitleRow {
            name: t.name.clone(),
            state: state.into(),
            cells: columns
                .iter()
                .map(|c| cells.remove(c).unwrap_or_default())
                .collect(),
            errors: t.errors.clone(),
        });
    }
    let next_after = if more {
        titles.last().map(|t| t.last_seq)
    } else {
        None
    };
    Ok(JobGrid {
        columns,
        rows,
        next_after,
    })
}

#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub id: String,
    pub last_seen: String,
    pub heartbeat_age: String,
    pub draining: bool,
    pub task: String,
    pub progress: String,
}

/// Every worker seen in the last hour and those holding leases, with the
/// task each holds.
pub fn workers(coord: &Coordinator) -> Result<Vec<WorkerRow>, Status> {
    let leased = coord.read(|s| s.leased())?;
    let now = now_ms();
    let mut rows: BTreeMap<String, WorkerRow> = BTreeMap::new();
    for w in coord.workers() {
        rows.insert(
            w.worker_id.clone(),
            WorkerRow {
                id: w.worker_id.clone(),
                last_seen: fmt_time(w.last_seen_ms),
                heartbeat_age: fmt_duration(now - w.last_seen_ms),
                draining: w.draining,
                task: "idle".into(),
                progress: String::new(),
            },
        );
    }
    for t in leased {
        let Some(w) = t.worker_id.clone() else {
            continue;
        };
        let row = rows.entry(w.clone()).or_insert_with(|| WorkerRow {
            id: w,
            last_seen: "–".into(),
            heartbeat_age: "–".into(),
            draining: false,
            task: String::new(),
            progress: String::new(),
        });
        row.task = format!("{} ({})", t.kind.label(), t.job_id);
        row.progress = format!("{:.0}%", t.progress.clamp(0.0, 1.0) * 100.0);
    }
    Ok(rows.into_values().collect())
}

/// Whether `name` exists as a file in the job's output folder.
pub fn output_file_exists(job: &JobRecord, name: &str) -> bool {
    Path::new(&job.output_dir).join(name).is_file()
}
