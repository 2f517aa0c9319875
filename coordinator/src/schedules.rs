//! `[[schedules]]`: specs (or catalog folders) the coordinator submits on a
//! cron schedule, in an explicit IANA time zone.
//!
//! The rules:
//! - **Checked at start.** Every entry is validated before the coordinator
//!   binds anything (`validate`); a bad cron expression, time zone, missed
//!   policy, a missing field or a duplicate name or label refuses to start,
//!   naming `schedules[i].field` and the fix.
//! - **Exactly once per slot.** A slot (a scheduled time) is claimed in
//!   `DATA_DIR/schedules.sqlite` (one fsynced transaction) before its job is
//!   submitted, and the job's label names the schedule's label and the slot
//!   (`nightly @ 2026-12-07T02:00+00:00`). A coordinator that died between
//!   the claim and recording the job looks for a job with that label when
//!   it starts and submits only if there is none. A slot is never claimed
//!   twice: the claimed slot is the cursor, and only later slots run.
//! - **Missed while down.** Slots that passed while no coordinator ran are
//!   folded into one: `missed = "once"` runs the latest of them at start,
//!   `"skip"` records it as skipped and waits for the next. A new schedule
//!   never runs for slots before it was first seen.
//! - **Never fatal.** A spec that cannot be read or is refused is recorded
//!   as the schedule's `last_error` and logged; the schedule waits for its
//!   next slot and the coordinator carries on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Deserialize;
use stemforge_proto::v1::SubmitJobRequest;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::ops::ScheduleView;
use crate::server::{Coordinator, now_ms};

/// The schedules' own database in the data directory.
pub const DB_FILE: &str = "schedules.sqlite";

/// The longest the loop sleeps before looking at the clock again, so a
/// clock that jumps is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// One `[[schedules]]` entry as written (every field optional here, so a
/// missing one is reported as `schedules[i].field`, not as a serde error).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScheduleConfig {
    /// Unique name (required).
    #[serde(default)]
    pub name: Option<String>,
    /// Cron expression: 5 fields (minute hour day-of-month month
    /// day-of-week), or 6 with seconds first.
    #[serde(default)]
    pub cron: Option<String>,
    /// IANA time zone the expression is read in (required), e.g. `Europe/London`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// A spec file, or a folder of stems (one title, or a catalog of title
    /// folders) rendered as `stemforge render DIR` would.
    #[serde(default)]
    pub spec: Option<String>,
    /// Job priority (default 0).
    #[serde(default)]
    pub priority: Option<i64>,
    /// Job label (default: the name); each job's label is `LABEL @ SLOT`.
    #[serde(default)]
    pub label: Option<String>,
    /// `once` (default): a slot missed while the coordinator was down runs
    /// once when it is back; `skip`: it is skipped.
    #[serde(default)]
    pub missed: Option<String>,
    /// Output folder overriding the spec's (a folder's default:
    /// `DIR/deliverables`).
    #[serde(default)]
    pub output_dir: Option<String>,
    /// Anything else written in the entry: refused, with a suggestion.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

const FIELDS: [&str; 8] = [
    "name",
    "cron",
    "time_zone",
    "spec",
    "priority",
    "label",
    "missed",
    "output_dir",
];

/// What a slot missed while the coordinator was down does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    Once,
    Skip,
}

impl Missed {
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Once => "once",
            Missed::Skip => "skip",
        }
    }
}

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    /// The expression as written.
    pub cron_text: String,
    pub cron: Cron,
    pub tz: Tz,
    /// Absolute (resolved against the config file's folder).
    pub spec: PathBuf,
    pub priority: i32,
    pub label: String,
    pub missed: Missed,
    pub output_dir: Option<PathBuf>,
}

/// Parses a cron expression: 5 fields, or 6 with seconds first (no year
/// field, so the count of fields alone says which).
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    let fields = text.split_whitespace().count();
    if text.trim_start().starts_with('@') {
        // Nicknames (`@daily`) are read by croner itself.
    } else if !(fields == 5 || fields == 6) {
        return Err(format!(
            "has {fields} fields; write 5 (minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\") or 6 with seconds first"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("is not a cron expression: {e}"))
}

/// A string setting, trimmed; empty is unset.
fn some(o: &Option<String>) -> Option<&str> {
    o.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Validates every entry; the error lists each problem as
/// `schedules[i].field: what; the fix`. Relative `spec` and `output_dir`
/// paths are resolved against `base` (the config file's folder).
pub fn validate(configs: &[ScheduleConfig], base: &Path) -> anyhow::Result<Vec<Schedule>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for (i, c) in configs.iter().enumerate() {
        let at = |f: &str| format!("schedules[{i}].{f}");
        let mut bad = |f: &str, why: String| problems.push(format!("{}: {why}", at(f)));
        for k in c.unknown.keys() {
            let near = FIELDS
                .iter()
                .min_by_key(|f| strsim::levenshtein(k, f))
                .filter(|f| strsim::levenshtein(k, f) <= 3);
            bad(
                k,
                match near {
                    Some(f) => format!("is not a schedule setting; did you mean `{f}`?"),
                    None => format!("is not a schedule setting ({})", FIELDS.join(", ")),
                },
            );
        }
        let name = match some(&c.name) {
            Some(n) if !names.insert(n.to_string()) => {
                bad(
                    "name",
                    format!(
                        "`{n}` is used by an earlier schedule; give each schedule its own name"
                    ),
                );
                None
            }
            Some(n) => Some(n.to_string()),
            None => {
                bad(
                    "name",
                    "is required: a unique name, e.g. name = \"nightly-catalog\"".into(),
                );
                None
            }
        };
        let cron = match some(&c.cron) {
            Some(t) => match parse_cron(t) {
                Ok(cron) => Some((t.to_string(), cron)),
                Err(why) => {
                    bad("cron", format!("\"{t}\" {why}"));
                    None
                }
            },
            None => {
                bad(
                    "cron",
                    "is required, e.g. cron = \"0 2 * * *\" (02:00 every day)".into(),
                );
                None
            }
        };
        let tz = match some(&c.time_zone) {
            Some(z) => match Tz::from_str(z) {
                Ok(tz) => Some(tz),
                Err(_) => {
                    bad(
                        "time_zone",
                        format!(
                            "\"{z}\" is not an IANA time zone; write one like \"Europe/London\", \"America/New_York\" or \"UTC\""
                        ),
                    );
                    None
                }
            },
            None => {
                bad(
                    "time_zone",
                    "is required (no implicit local time): an IANA name, e.g. time_zone = \"Europe/London\" or \"UTC\"".into(),
                );
                None
            }
        };
        let spec = match some(&c.spec) {
            Some(s) => Some(base.join(s)),
            None => {
                bad(
                    "spec",
                    "is required: a spec file or a folder of stems, e.g. spec = \"/srv/catalog/catalog.toml\"".into(),
                );
                None
            }
        };
        let priority = match c.priority {
            None => Some(0),
            Some(p) => match i32::try_from(p) {
                Ok(p) => Some(p),
                Err(_) => {
                    bad(
                        "priority",
                        format!("{p} is out of range; use a small integer such as 0 or 10"),
                    );
                    None
                }
            },
        };
        let missed = match some(&c.missed) {
            None | Some("once") => Some(Missed::Once),
            Some("skip") => Some(Missed::Skip),
            Some(m) => {
                bad(
                    "missed",
                    format!(
                        "\"{m}\" is not a policy; write \"once\" (run one missed slot when the coordinator is back) or \"skip\""
                    ),
                );
                None
            }
        };
        let label = some(&c.label).map(str::to_string).or_else(|| name.clone());
        if let Some(l) = &label
            && !labels.insert(l.clone())
        {
            bad(
                "label",
                format!(
                    "`{l}` is the label of an earlier schedule; labels tell their jobs apart, give each its own"
                ),
            );
        }
        if let Some(t) = &cron
            && let Some(tz) = tz
            && next_slot(&t.1, tz, now_ms()).is_none()
        {
            bad(
                "cron",
                format!(
                    "\"{}\" never fires (no date matches); check the day and month fields",
                    t.0
                ),
            );
        }
        if let (
            Some(name),
            Some((cron_text, cron)),
            Some(tz),
            Some(spec),
            Some(priority),
            Some(missed),
            Some(label),
        ) = (name, cron, tz, spec, priority, missed, label)
        {
            out.push(Schedule {
                name,
                cron_text,
                cron,
                tz,
                spec,
                priority,
                label,
                missed,
                output_dir: some(&c.output_dir).map(|o| base.join(o)),
            });
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "the configuration's [[schedules]] are not valid:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(out)
}

fn at_ms(tz: Tz, ms: i64) -> Option<DateTime<Tz>> {
    DateTime::<Utc>::from_timestamp_millis(ms).map(|t| t.with_timezone(&tz))
}

/// The first slot strictly after `after_ms` (Unix ms), read in `tz`.
pub fn next_slot(cron: &Cron, tz: Tz, after_ms: i64) -> Option<i64> {
    let t = at_ms(tz, after_ms)?;
    cron.find_next_occurrence(&t, false)
        .ok()
        .map(|n| n.timestamp_millis())
}

/// The latest slot at or before `at_ms`, read in `tz`.
pub fn latest_slot(cron: &Cron, tz: Tz, at: i64) -> Option<i64> {
    let t = at_ms(tz, at)?;
    cron.find_previous_occurrence(&t, true)
        .ok()
        .map(|n| n.timestamp_millis())
}

/// What to do about the slots after `cursor` (the slot last claimed, or
/// when the schedule was first seen) by `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Run this slot now (the latest one due; earlier ones are folded in).
    Run(i64),
    /// The latest slot due passed while the coordinator was down and the
    /// policy is `skip`: record it, do not run it.
    Skip(i64),
    /// Nothing due; the next slot (if the expression has one).
    Wait(Option<i64>),
}

/// The one rule for what is due: slots after `cursor` up to `now`, at most
/// one run for all of them. `missed` is the policy for slots that passed
/// while the coordinator was down (`Some` at start); a running
/// coordinator passes `None` and runs what is due.
pub fn decide(cron: &Cron, tz: Tz, cursor: i64, now: i64, missed: Option<Missed>) -> Action {
    match latest_slot(cron, tz, now).filter(|s| *s > cursor) {
        Some(slot) if missed == Some(Missed::Skip) => Action::Skip(slot),
        Some(slot) => Action::Run(slot),
        None => Action::Wait(next_slot(cron, tz, cursor.max(now))),
    }
}

/// A slot as the wall-clock time of its zone, with the offset
/// (`2026-12-07T02:00+00:00`; seconds only when the slot has them).
pub fn slot_time(tz: Tz, slot_ms: i64) -> String {
    match at_ms(tz, slot_ms) {
        Some(t) if t.timestamp_subsec_millis() == 0 && t.format("%S").to_string() == "00" => {
            t.format("%Y-%m-%dT%H:%M%:z").to_string()
        }
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        None => format!("{slot_ms} ms"),
    }
}

/// The label of a slot's job: the schedule's label and the slot. It is the
/// marker a restarted coordinator finds the slot's job by.
pub fn slot_label(label: &str, tz: Tz, slot_ms: i64) -> String {
    format!("{label} @ {}", slot_time(tz, slot_ms))
}

/// One schedule's durable record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub first_seen_ms: i64,
    /// The slot last claimed (run, or skipped): the cursor.
    pub last_slot_ms: Option<i64>,
    /// The slot last run (its job submitted, or its error recorded).
    pub last_run_ms: Option<i64>,
    pub last_job_id: Option<String>,
    pub last_error: Option<String>,
    /// Claimed, but its job not yet recorded (a crash in between).
    pub pending: bool,
}

/// `DATA_DIR/schedules.sqlite`: one row per schedule name. Every write is
/// one transaction, fsynced (WAL, `synchronous = FULL`) before it returns.
pub struct StateDb {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// A schedule's row, by name.
const SELECT_ROW: &str =
    "SELECT first_seen_ms, last_slot_ms, last_run_ms, last_job_id, last_error, pending
     FROM schedules WHERE name = ?1";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        first_seen_ms: r.get(0)?,
        last_slot_ms: r.get(1)?,
        last_run_ms: r.get(2)?,
        last_job_id: r.get(3)?,
        last_error: r.get(4)?,
        pending: r.get::<_, i64>(5)? != 0,
    })
}

impl StateDb {
    pub fn open(path: &Path) -> anyhow::Result<StateDb> {
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the schedules database {}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS schedules (
                 name TEXT PRIMARY KEY,
                 first_seen_ms INTEGER NOT NULL,
                 last_slot_ms INTEGER,
                 last_run_ms INTEGER,
                 last_job_id TEXT,
                 last_error TEXT,
                 pending INTEGER NOT NULL DEFAULT 0
             );",
        )
        .with_context(|| format!("cannot set up the schedules database {}", path.display()))?;
        Ok(StateDb {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    fn with<R>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R>,
    ) -> anyhow::Result<R> {
        let mut c = self
            .conn
            .lock()
            .map_err(|_| anyhow::anyhow!("schedules database lock poisoned"))?;
        f(&mut c).with_context(|| format!("{what} in {}", self.path.display()))
    }

    /// The schedule's row, made (first seen now) if it has none.
    pub fn row_or_insert(&self, name: &str, now: i64) -> anyhow::Result<Row> {
        self.with("reading the schedule", |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT OR IGNORE INTO schedules (name, first_seen_ms) VALUES (?1, ?2)",
                params![name, now],
            )?;
            let row = tx.query_row(SELECT_ROW, params![name], read_row)?;
            tx.commit()?;
            Ok(row)
        })
    }

    /// The row, if the schedule has one.
    pub fn row(&self, name: &str) -> anyhow::Result<Option<Row>> {
        self.with("reading the schedule", |c| {
            c.query_row(SELECT_ROW, params![name], read_row).optional()
        })
    }

    /// Claims `slot` for a run: durable before the job is submitted. Refused
    /// (Ok(false)) when the slot is not after the cursor.
    pub fn claim(&self, name: &str, slot: i64) -> anyhow::Result<bool> {
        self.with("claiming a slot", |c| {
            let n = c.execute(
                "UPDATE schedules SET last_slot_ms = ?2, last_run_ms = ?2, last_job_id = NULL,
                     last_error = NULL, pending = 1
                 WHERE name = ?1 AND (last_slot_ms IS NULL OR last_slot_ms < ?2)",
                params![name, slot],
            )?;
            Ok(n == 1)
        })
    }

    /// The claimed slot's job.
    pub fn record_job(&self, name: &str, job_id: &str) -> anyhow::Result<()> {
        self.with("recording a job", |c| {
            c.execute(
                "UPDATE schedules SET last_job_id = ?2, last_error = NULL, pending = 0 WHERE name = ?1",
                params![name, job_id],
            )
            .map(|_| ())
        })
    }

    /// The claimed slot's run failed before a job existed.
    pub fn record_error(&self, name: &str, error: &str) -> anyhow::Result<()> {
        self.with("recording an error", |c| {
            c.execute(
                "UPDATE schedules SET last_error = ?2, last_job_id = NULL, pending = 0 WHERE name = ?1",
                params![name, error],
            )
            .map(|_| ())
        })
    }

    /// A slot passed over (`missed = "skip"`): the cursor moves, no run.
    pub fn record_skip(&self, name: &str, slot: i64, note: &str) -> anyhow::Result<()> {
        self.with("recording a skipped slot", |c| {
            c.execute(
                "UPDATE schedules SET last_slot_ms = ?2, last_error = ?3, pending = 0
                 WHERE name = ?1 AND (last_slot_ms IS NULL OR last_slot_ms < ?2)",
                params![name, slot, note],
            )
            .map(|_| ())
        })
    }
}

/// The folder relative `spec` and `output_dir` paths are read against:
/// the config file's folder (`--config FILE`, else `./stemforge.toml`, so
/// the working folder), made absolute.
pub fn config_base(config_file: Option<&Path>) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    let dir = config_file
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| cwd.clone(), |p| cwd.join(p));
    std::fs::canonicalize(&dir).unwrap_or(dir)
}

/// Starts one task per schedule; each stops when `stop` turns true.
pub fn start(
    coord: Arc<Coordinator>,
    schedules: Vec<Schedule>,
    db: StateDb,
    stop: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let db = Arc::new(db);
    schedules
        .into_iter()
        .map(|s| {
            info!(schedule = %s.name, cron = %s.cron_text, time_zone = %s.tz, spec = %s.spec.display(), "schedule");
            if !s.spec.exists() {
                warn!(schedule = %s.name, spec = %s.spec.display(), "the schedule's spec does not exist (yet); its runs fail until it does");
            }
            tokio::spawn(run_schedule(coord.clone(), s, db.clone(), stop.clone()))
        })
        .collect()
}

/// The view the operator surfaces show.
fn view(s: &Schedule, row: &Row, next: Option<i64>) -> ScheduleView {
    ScheduleView {
        name: s.name.clone(),
        cron: s.cron_text.clone(),
        time_zone: s.tz.name().to_string(),
        spec: s.spec.display().to_string(),
        priority: s.priority,
        label: s.label.clone(),
        missed: s.missed.as_str().to_string(),
        last_run_ms: row.last_run_ms,
        last_job: row.last_job_id.clone(),
        next_run_ms: next,
        last_error: row.last_error.clone(),
    }
}

/// Reads the row back for the view (falls back to what is known).
fn show(coord: &Coordinator, s: &Schedule, db: &StateDb, fallback: &Row) {
    let row = db
        .row(&s.name)
        .ok()
        .flatten()
        .unwrap_or_else(|| fallback.clone());
    let cursor = row.last_slot_ms.unwrap_or(row.first_seen_ms);
    let next = next_slot(&s.cron, s.tz, cursor.max(now_ms()));
    coord.automations.put_schedule(view(s, &row, next));
}

async fn run_schedule(
    coord: Arc<Coordinator>,
    s: Schedule,
    db: Arc<StateDb>,
    mut stop: watch::Receiver<bool>,
) {
    let name = s.name.clone();
    // The row; a database that cannot be read leaves the schedule idle
    // (and says why) rather than risk a second run of a slot.
    let row = loop {
        match db.row_or_insert(&name, now_ms()) {
            Ok(r) => break r,
            Err(e) => {
                error!(schedule = %name, "{e:#}; retrying in a minute");
                let mut v = view(&s, &Row::default(), None);
                v.last_error = Some(format!("{e:#}"));
                coord.automations.put_schedule(v);
                if sleep_or_stop(&mut stop, MAX_SLEEP).await {
                    return;
                }
            }
        }
    };
    show(&coord, &s, &db, &row);
    // A slot claimed by an earlier life whose job was not recorded: its
    // job is found by label, or submitted now.
    if row.pending
        && let Some(slot) = row.last_slot_ms
    {
        let label = slot_label(&s.label, s.tz, slot);
        match coord.jobs_labelled(&label) {
            Ok(ids) if !ids.is_empty() => {
                info!(schedule = %name, job = %ids[0], slot = %slot_time(s.tz, slot), "found the job of the slot claimed before the restart");
                if let Err(e) = db.record_job(&name, &ids[0]) {
                    error!(schedule = %name, "{e:#}");
                }
            }
            Ok(_) => {
                info!(schedule = %name, slot = %slot_time(s.tz, slot), "the slot claimed before the restart has no job: submitting it");
                submit_slot(&coord, &s, &db, slot).await;
            }
            Err(e) => error!(schedule = %name, "cannot list jobs: {}", e.message()),
        }
        show(&coord, &s, &db, &row);
    }
    // Slots missed while no coordinator ran: the policy decides, once.
    let mut policy = Some(s.missed);
    // The last slot decided in this life: a skip the database failed to
    // record is still not run.
    let mut decided = i64::MIN;
    loop {
        if *stop.borrow() {
            return;
        }
        let row = match db.row(&name) {
            Ok(Some(r)) => r,
            Ok(None) => row.clone(),
            Err(e) => {
                error!(schedule = %name, "{e:#}");
                if sleep_or_stop(&mut stop, MAX_SLEEP).await {
                    return;
                }
                continue;
            }
        };
        let cursor = row.last_slot_ms.unwrap_or(row.first_seen_ms).max(decided);
        let now = now_ms();
        let at_start = policy.is_some();
        let action = decide(&s.cron, s.tz, cursor, now, policy.take());
        match action {
            Action::Run(slot) => {
                if at_start {
                    info!(schedule = %name, slot = %slot_time(s.tz, slot), "running a slot missed while the coordinator was down (missed = \"once\")");
                }
                match db.claim(&name, slot) {
                    Ok(true) => {
                        decided = slot;
                        submit_slot(&coord, &s, &db, slot).await;
                    }
                    Ok(false) => decided = decided.max(slot),
                    Err(e) => {
                        // Not claimed, so not run: tried again shortly.
                        error!(schedule = %name, "{e:#}; the slot is tried again in 10 s");
                        let mut v = view(&s, &row, Some(slot));
                        v.last_error = Some(format!("{e:#}"));
                        coord.automations.put_schedule(v);
                        if sleep_or_stop(&mut stop, Duration::from_secs(10)).await {
                            return;
                        }
                        continue;
                    }
                }
                show(&coord, &s, &db, &row);
            }
            Action::Skip(slot) => {
                let note = format!(
                    "the slot {} passed while the coordinator was down; skipped (missed = \"skip\")",
                    slot_time(s.tz, slot)
                );
                warn!(schedule = %name, "{note}");
                decided = slot;
                if let Err(e) = db.record_skip(&name, slot, &note) {
                    error!(schedule = %name, "{e:#}");
                }
                show(&coord, &s, &db, &row);
            }
            Action::Wait(next) => {
                let wait = next.map_or(MAX_SLEEP, |n| {
                    Duration::from_millis(u64::try_from(n - now).unwrap_or(0)).min(MAX_SLEEP)
                });
                if sleep_or_stop(&mut stop, wait.max(Duration::from_millis(1))).await {
                    return;
                }
            }
        }
    }
}

/// Sleeps; true when the coordinator is stopping.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let gone = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        r = stop.changed() => r.is_err(),
    };
    gone || *stop.borrow()
}

/// Submits the claimed `slot`'s job and records its id or the error.
async fn submit_slot(coord: &Arc<Coordinator>, s: &Schedule, db: &StateDb, slot: i64) {
    let label = slot_label(&s.label, s.tz, slot);
    let (c, sched, l) = (coord.clone(), s.clone(), label.clone());
    // Reading a catalog (globs over thousands of folders) and planning it
    // are blocking work.
    let r = tokio::task::spawn_blocking(move || {
        let req = request(&sched, l)?;
        c.submit(req)
            .map_err(|e| anyhow::anyhow!("{}", e.message()))
    })
    .await
    .unwrap_or_else(|e| Err(anyhow::anyhow!("the run stopped: {e}")));
    match r {
        Ok(resp) => {
            info!(schedule = %s.name, job = %resp.job_id, label = %label, tasks = resp.task_count, "scheduled job submitted");
            if let Err(e) = db.record_job(&s.name, &resp.job_id) {
                // The job exists; a restart finds it by its label.
                error!(schedule = %s.name, "{e:#}");
            }
        }
        Err(e) if coord.is_stopping() => {
            // Left claimed: the next start submits it unless a job with its
            // label exists.
            warn!(schedule = %s.name, label = %label, "coordinator stopping; the slot is submitted at the next start: {e:#}");
        }
        Err(e) => {
            let msg = format!("{e:#}");
            error!(schedule = %s.name, label = %label, "scheduled run not submitted: {msg}");
            if let Err(e) = db.record_error(&s.name, &msg) {
                error!(schedule = %s.name, "{e:#}");
            }
        }
    }
}

/// The job of one run: the spec read now (a catalog's globs find the titles
/// there today), or a folder's spec written into its output folder.
fn request(s: &Schedule, label: String) -> anyhow::Result<SubmitJobRequest> {
    let (spec, out) = if s.spec.is_dir() {
        let d = crate::catalog_dir::write_spec(&s.spec, s.output_dir.clone())?;
        (d.spec, Some(d.out))
    } else {
        (s.spec.clone(), s.output_dir.clone())
    };
    let loaded = deliverables_spec::load_file(&spec)?;
    for sk in &loaded.skipped {
        warn!(schedule = %s.name, "left out of the catalog: {sk}");
    }
    let base_dir = std::fs::canonicalize(&loaded.base_dir).with_context(|| {
        format!(
            "cannot resolve the spec's folder {}",
            loaded.base_dir.display()
        )
    })?;
    let output_dir = match out {
        Some(o) => {
            std::fs::create_dir_all(&o)
                .with_context(|| format!("cannot create the output folder {}", o.display()))?;
            std::fs::canonicalize(&o)?.display().to_string()
        }
        None => String::new(),
    };
    Ok(SubmitJobRequest {
        spec_toml: loaded.text,
        spec_sha256: loaded.sha256,
        base_dir: base_dir.display().to_string(),
        priority: s.priority,
        label,
        output_dir,
        bundle_path: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn ms(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        tz.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .earliest()
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        ms(chrono_tz::UTC, y, mo, d, h, mi)
    }

    #[test]
    fn daily_slots_cross_both_dst_changes_in_london_once_a_day() {
        let london = chrono_tz::Europe::London;
        let cron = parse_cron("30 1 * * *").expect("cron");
        // Spring forward: 2026-03-29 01:00 GMT becomes 02:00 BST; 01:30
        // does not exist that day.
        let mut t = utc(2026, 3, 27, 12, 0);
        let mut slots = Vec::new();
        for _ in 0..4 {
            t = next_slot(&cron, london, t).expect("next");
            slots.push(slot_time(london, t));
        }
        assert_eq!(slots[0], "2026-03-28T01:30+00:00");
        // 01:30 does not exist that day: the slot is the first time after
        // the gap, 02:00 BST (01:00 UTC), once.
        assert_eq!(slots[1], "2026-03-29T02:00+01:00");
        assert_eq!(slots[2], "2026-03-30T01:30+01:00");
        assert_eq!(slots[3], "2026-03-31T01:30+01:00");
        // Fall back: 2026-10-25 01:00-02:00 happens twice; a fixed-time
        // job fires once, at the first 01:30 (BST, 00:30 UTC).
        let mut t = utc(2026, 10, 24, 12, 0);
        let mut slots = Vec::new();
        for _ in 0..3 {
            t = next_slot(&cron, london, t).expect("next");
            slots.push(t);
        }
        assert_eq!(slots[0], utc(2026, 10, 25, 0, 30));
        assert_eq!(slots[1], utc(2026, 10, 26, 1, 30));
        assert_eq!(slot_time(london, slots[1]), "2026-10-26T01:30+00:00");
        // The previous slot is consistent with the next one.
        assert_eq!(
            latest_slot(&cron, london, utc(2026, 10, 25, 23, 0)),
            Some(utc(2026, 10, 25, 0, 30))
        );
    }

    #[test]
    fn nightly_in_new_york_is_read_in_its_zone() {
        let ny = chrono_tz::America::New_York;
        let cron = parse_cron("0 2 * * *").expect("cron");
        // 02:00 EST = 07:00 UTC.
        let t = next_slot(&cron, ny, utc(2026, 12, 6, 12, 0)).expect("next");
        assert_eq!(t, utc(2026, 12, 7, 7, 0));
        assert_eq!(
            slot_label("nightly", ny, t),
            "nightly @ 2026-12-07T02:00-05:00"
        );
    }

    #[test]
    fn missed_slots_fold_into_one_decision() {
        let tz = chrono_tz::UTC;
        let cron = parse_cron("0 2 * * *").expect("cron");
        let first_seen = utc(2026, 12, 1, 12, 0);
        // Nothing due: wait for the next slot.
        assert_eq!(
            decide(
                &cron,
                tz,
                first_seen,
                utc(2026, 12, 1, 13, 0),
                Some(Missed::Once)
            ),
            Action::Wait(Some(utc(2026, 12, 2, 2, 0)))
        );
        // Down for three nights: one run, for the latest slot.
        let now = utc(2026, 12, 4, 9, 0);
        assert_eq!(
            decide(&cron, tz, first_seen, now, Some(Missed::Once)),
            Action::Run(utc(2026, 12, 4, 2, 0))
        );
        assert_eq!(
            decide(&cron, tz, first_seen, now, Some(Missed::Skip)),
            Action::Skip(utc(2026, 12, 4, 2, 0))
        );
        // Once that slot is the cursor, nothing more is due: never twice.
        assert_eq!(
            decide(&cron, tz, utc(2026, 12, 4, 2, 0), now, Some(Missed::Once)),
            Action::Wait(Some(utc(2026, 12, 5, 2, 0)))
        );
        // A running coordinator runs what is due whatever the policy.
        assert_eq!(
            decide(
                &cron,
                tz,
                utc(2026, 12, 3, 2, 0),
                utc(2026, 12, 4, 2, 0),
                None
            ),
            Action::Run(utc(2026, 12, 4, 2, 0))
        );
        // A new schedule never runs for slots before it was first seen.
        let seen = utc(2026, 12, 4, 2, 30);
        assert_eq!(
            decide(&cron, tz, seen, seen, Some(Missed::Once)),
            Action::Wait(Some(utc(2026, 12, 5, 2, 0)))
        );
    }

    #[test]
    fn seconds_patterns_and_bad_expressions() {
        let cron = parse_cron("*/5 * * * * *").expect("6 fields: seconds first");
        let t = next_slot(&cron, chrono_tz::UTC, utc(2026, 1, 1, 0, 0) + 1).expect("next");
        assert_eq!(t, utc(2026, 1, 1, 0, 0) + 5_000);
        assert_eq!(slot_time(chrono_tz::UTC, t), "2026-01-01T00:00:05+00:00");
        assert!(
            parse_cron("0 2 * *")
                .expect_err("refused")
                .contains("4 fields")
        );
        assert!(parse_cron("0 2 * * * * 2026").is_err());
        assert!(parse_cron("61 2 * * *").is_err());
    }

    fn cfg(name: &str, cron: &str, tz: Option<&str>) -> ScheduleConfig {
        ScheduleConfig {
            name: Some(name.into()),
            cron: Some(cron.into()),
            time_zone: tz.map(str::to_string),
            spec: Some("catalog.toml".into()),
            ..Default::default()
        }
    }

    #[test]
    fn validation_names_the_field_and_the_fix() {
        let base = Path::new("/srv/conf");
        let ok =
            validate(&[cfg("nightly", "0 2 * * *", Some("Europe/London"))], base).expect("valid");
        assert_eq!(ok[0].spec, Path::new("/srv/conf/catalog.toml"));
        assert_eq!(ok[0].label, "nightly");
        assert_eq!(ok[0].missed, Missed::Once);
        let e = validate(&[cfg("a", "0 2 * * *", None)], base)
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("schedules[0].time_zone: is required") && e.contains("Europe/London"),
            "{e}"
        );
        let e = validate(&[cfg("a", "0 2 * *", Some("Mars/Olympus"))], base)
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("schedules[0].cron:")
                && e.contains("schedules[0].time_zone: \"Mars/Olympus\""),
            "{e}"
        );
        let e = validate(
            &[
                cfg("a", "0 2 * * *", Some("UTC")),
                cfg("a", "0 3 * * *", Some("UTC")),
            ],
            base,
        )
        .expect_err("refused")
        .to_string();
        assert!(e.contains("schedules[1].name: `a` is used"), "{e}");
        let mut c = cfg("b", "0 0 31 2 *", Some("UTC"));
        c.missed = Some("twice".into());
        c.unknown.insert("timezone".into(), serde_json::Value::Null);
        let e = validate(&[c], base).expect_err("refused").to_string();
        assert!(
            e.contains("schedules[0].cron: \"0 0 31 2 *\" never fires"),
            "{e}"
        );
        assert!(e.contains("schedules[0].missed: \"twice\""), "{e}");
        assert!(
            e.contains(
                "schedules[0].timezone: is not a schedule setting; did you mean `time_zone`?"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_claimed_slot_is_never_claimed_again() {
        let dir = std::env::temp_dir().join(format!("stemforge-schedules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let db = StateDb::open(&dir.join(DB_FILE)).expect("open");
        let r = db.row_or_insert("n", 1_000).expect("row");
        assert_eq!(r.first_seen_ms, 1_000);
        assert!(db.claim("n", 5_000).expect("claim"));
        assert!(!db.claim("n", 5_000).expect("claim again"));
        assert!(!db.claim("n", 4_000).expect("an earlier slot"));
        drop(db);
        // Durable: a new connection sees the claim, pending until recorded.
        let db = StateDb::open(&dir.join(DB_FILE)).expect("reopen");
        let r = db.row_or_insert("n", 9_000).expect("row");
        assert_eq!(
            (r.first_seen_ms, r.last_slot_ms, r.pending),
            (1_000, Some(5_000), true)
        );
        db.record_job("n", "job-1").expect("record");
        let r = db.row("n").expect("row").expect("some");
        assert_eq!(
            (r.last_job_id.as_deref(), r.pending),
            (Some("job-1"), false)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
