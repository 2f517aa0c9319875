//! A durable [`Store`] in an embedded SQLite database.
//!
//! Every record is kept as the JSON of its struct (the source of truth when
//! reading); the columns beside it repeat the few fields that queries filter
//! or order on. Every writing method is one transaction, committed with
//! `synchronous=FULL` in WAL mode: once a method returns `Ok`, the change
//! survives a killed process or a power cut.
//!
//! The schema is versioned by `PRAGMA user_version`: [`MIGRATIONS`] are
//! applied in order on open, each in its own transaction with the version
//! bump, and a database written by a newer build is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::store::{
    JobEvent, JobRecord, JobState, Store, StoreError, StoreErrorKind, StoreResult, TaskRecord,
    TaskState,
};

/// The schema, one script per version: script `i` takes a database from
/// version `i` to `i + 1`. Append only; never edit a released script.
pub const MIGRATIONS: &[&str] = &[
    // 1: jobs, tasks and the event log.
    "CREATE TABLE jobs (
        job_id   TEXT NOT NULL PRIMARY KEY,
        seq      INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        state    TEXT NOT NULL,
        record   TEXT NOT NULL
    );
    CREATE INDEX jobs_seq ON jobs (seq);
    CREATE TABLE tasks (
        job_id  TEXT NOT NULL REFERENCES jobs (job_id),
        task_id TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        state   TEXT NOT NULL,
        record  TEXT NOT NULL,
        PRIMARY KEY (job_id, task_id)
    );
    CREATE INDEX tasks_state ON tasks (state, job_id);
    CREATE TABLE events (
        seq    INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        record TEXT NOT NULL
    );
    CREATE INDEX events_job ON events (job_id, seq);",
    // 2: results beside the records (written once, never rewritten with
    // each state change), dependency and plan-order indexes.
    "ALTER TABLE tasks ADD COLUMN result TEXT;
    UPDATE tasks SET result = json_extract(record, '$.result_json')
        WHERE json_extract(record, '$.result_json') IS NOT NULL;
    CREATE INDEX tasks_seq ON tasks (job_id, seq);",
    // 3: each title's spec text, what a worker is sent for that title.
    "CREATE TABLE titles (
        job_id TEXT NOT NULL,
        idx    INTEGER NOT NULL,
        text   TEXT NOT NULL,
        PRIMARY KEY (job_id, idx)
    );",
    // 4: the coordinator's epoch, one more at each start.
    "CREATE TABLE meta (
        key   TEXT NOT NULL PRIMARY KEY,
        value INTEGER NOT NULL
    );",
];

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The job store of a durable coordinator: one SQLite file.
pub struct SqliteStore {
    conn: Connection,
    /// For error messages: the database file, or `:memory:`.
    path: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn fail(op: &str, path: &str, e: impl Cause) -> StoreError {
    StoreError::new(e.kind(), format!("{op} ({path}): {e}"))
}

/// What an underlying error says about the store.
trait Cause: std::fmt::Display {
    fn kind(&self) -> StoreErrorKind;
}

impl Cause for rusqlite::Error {
    fn kind(&self) -> StoreErrorKind {
        use rusqlite::ErrorCode as C;
        match self.sqlite_error_code() {
            Some(C::DatabaseBusy | C::DatabaseLocked) => StoreErrorKind::Busy,
            Some(C::DiskFull) => StoreErrorKind::Full,
            Some(C::SystemIoFailure | C::CannotOpen | C::ReadOnly | C::PermissionDenied) => {
                StoreErrorKind::Io
            }
            Some(C::DatabaseCorrupt | C::NotADatabase) => StoreErrorKind::Corrupt,
            _ => StoreErrorKind::Other,
        }
    }
}

impl Cause for std::io::Error {
    fn kind(&self) -> StoreErrorKind {
        if self.kind() == std::io::ErrorKind::StorageFull {
            StoreErrorKind::Full
        } else {
            StoreErrorKind::Io
        }
    }
}

/// A record that does not decode is damage, whatever the parser says.
impl Cause for serde_json::Error {
    fn kind(&self) -> StoreErrorKind {
        StoreErrorKind::Corrupt
    }
}

impl Cause for String {
    fn kind(&self) -> StoreErrorKind {
        StoreErrorKind::Other
    }
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the database at
    /// `path` and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        let shown = path.display().to_string();
        let dir: Option<PathBuf> = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf);
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)
                .map_err(|e| fail("creating the data directory", &shown, e))?;
        }
        let existed = path.exists();
        let conn = Connection::open(path).map_err(|e| fail("opening", &shown, e))?;
        let store = Self::setup(conn, shown, true)?;
        if !existed {
            // Make the new file's directory entry durable too.
            let d = dir.unwrap_or_else(|| PathBuf::from("."));
            std::fs::File::open(&d)
                .and_then(|f| f.sync_all())
                .map_err(|e| fail("syncing the data directory", &store.path, e))?;
        }
        Ok(store)
    }

    /// A store that lives as long as the value: for tests.
    pub fn open_in_memory() -> StoreResult<SqliteStore> {
        let shown = ":memory:".to_string();
        let conn = Connection::open_in_memory().map_err(|e| fail("opening", &shown, e))?;
        Self::setup(conn, shown, false)
    }

    /// The database file (or `:memory:`), as shown in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> StoreResult<u32> {
        user_version(&self.conn, &self.path)
    }

    fn setup(mut conn: Connection, path: String, file: bool) -> StoreResult<SqliteStore> {
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail("setting busy_timeout", &path, e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| fail("setting journal_mode=WAL", &path, e))?;
        if file && !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(
                "setting journal_mode=WAL",
                &path,
                format!("the database stays in {mode} mode"),
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| fail("setting synchronous=FULL", &path, e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| fail("setting foreign_keys=ON", &path, e))?;
        migrate(&mut conn, &path, MIGRATIONS)?;
        Ok(SqliteStore { conn, path })
    }
}

fn user_version(conn: &Connection, path: &str) -> StoreResult<u32> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| fail("reading the schema version", path, e))?;
    u32::try_from(v).map_err(|_| {
        fail(
            "reading the schema version",
            path,
            format!("bad version {v}"),
        )
    })
}

/// Applies the scripts the database lacks, each in its own transaction
/// together with its version bump. Refuses a database newer than `scripts`.
fn migrate(conn: &mut Connection, path: &str, scripts: &[&str]) -> StoreResult<()> {
    let known = scripts.len();
    loop {
        // IMMEDIATE: two processes opening one file at once don't both migrate.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail("starting a schema migration", path, e))?;
        let have = user_version(&tx, path)? as usize;
        if have > known {
            return Err(StoreError::new(
                StoreErrorKind::Version,
                format!(
                    "the data directory was written by a newer stemforge (schema {have}; this \
                 build knows up to {known}); upgrade stemforge ({path})"
                ),
            ));
        }
        let Some(script) = scripts.get(have) else {
            return Ok(());
        };
        let next = have + 1;
        tx.execute_batch(script)
            .map_err(|e| fail(&format!("migrating the schema to version {next}"), path, e))?;
        tx.pragma_update(None, "user_version", next as i64)
            .map_err(|e| fail(&format!("migrating the schema to version {next}"), path, e))?;
        tx.commit()
            .map_err(|e| fail(&format!("migrating the schema to version {next}"), path, e))?;
    }
}

fn to_i64(op: &str, path: &str, v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| fail(op, path, format!("{v} is out of range")))
}

fn to_json<T: serde::Serialize>(op: &str, path: &str, v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| fail(op, path, e))
}

fn from_json<T: serde::de::DeserializeOwned>(op: &str, path: &str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Corrupt,
            format!("{op} ({path}): corrupt record: {e}"),
        )
    })
}

fn write_job(conn: &Connection, path: &str, op: &str, job: &JobRecord) -> StoreResult<()> {
    let seq = to_i64(op, path, job.seq)?;
    let record = to_json(op, path, job)?;
    let mut st = conn
        .prepare_cached(
            "INSERT INTO jobs (job_id, seq, priority, state, record) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (job_id) DO UPDATE SET seq = excluded.seq,
                priority = excluded.priority, state = excluded.state, record = excluded.record",
        )
        .map_err(|e| fail(op, path, e))?;
    st.execute(params![
        job.job_id,
        seq,
        job.priority,
        JobState::as_str(job.state),
        record
    ])
    .map_err(|e| fail(&format!("{op}: writing job {}", job.job_id), path, e))?;
    Ok(())
}

fn write_tasks(conn: &Connection, path: &str, op: &str, tasks: &[TaskRecord]) -> StoreResult<()> {
    let mut st = conn
        .prepare_cached(
            "INSERT INTO tasks (job_id, task_id, seq, state, record, result)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (job_id, task_id) DO UPDATE SET seq = excluded.seq,
                state = excluded.state, record = excluded.record,
                result = COALESCE(excluded.result, tasks.result)",
        )
        .map_err(|e| fail(op, path, e))?;
    for t in tasks {
        let record = to_json(op, path, t)?;
        st.execute(params![
            t.job_id,
            t.task_id,
            t.seq,
            t.state.as_str(),
            record,
            t.result_json
        ])
        .map_err(|e| {
            fail(
                &format!("{op}: writing task {}/{}", t.job_id, t.task_id),
                path,
                e,
            )
        })?;
    }
    Ok(())
}

fn append_events(conn: &Connection, path: &str, op: &str, events: &[JobEvent]) -> StoreResult<()> {
    let mut st = conn
        .prepare_cached("INSERT INTO events (job_id, record) VALUES (?1, ?2)")
        .map_err(|e| fail(op, path, e))?;
    for e in events {
        // The stored seq is the row's; the caller's value is meaningless.
        let record = to_json(
            op,
            path,
            &JobEvent {
                seq: 0,
                ..e.clone()
            },
        )?;
        st.execute(params![e.job_id, record])
            .map_err(|err| fail(&format!("{op}: appending an event"), path, err))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Runs `sql` and decodes the `record` column of each row.
    fn records<T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> StoreResult<Vec<T>> {
        let path = &self.path;
        let mut st = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| fail(op, path, e))?;
        let rows = st
            .query_map(args, |r| r.get::<_, String>(0))
            .map_err(|e| fail(op, path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let json = row.map_err(|e| fail(op, path, e))?;
            out.push(from_json(op, path, &json)?);
        }
        Ok(out)
    }
}

impl SqliteStore {
    /// Runs `sql` (selecting `record, result`) and decodes task records.
    fn task_records(
        &self,
        op: &str,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> StoreResult<Vec<TaskRecord>> {
        let path = &self.path;
        let mut st = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| fail(op, path, e))?;
        let rows = st
            .query_map(args, |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(|e| fail(op, path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (json, result) = row.map_err(|e| fail(op, path, e))?;
            let mut t: TaskRecord = from_json(op, path, &json)?;
            t.result_json = result;
            out.push(t);
        }
        Ok(out)
    }
}

impl Store for SqliteStore {
    fn insert_job(
        &mut self,
        job: &JobRecord,
        tasks: &[TaskRecord],
        events: &[JobEvent],
    ) -> StoreResult<()> {
        let op = "inserting a job";
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(op, path, e))?;
        let exists = tx
            .query_row(
                "SELECT 1 FROM jobs WHERE job_id = ?1",
                [&job.job_id],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| fail(op, path, e))?
            .is_some();
        if exists {
            return Err(StoreError::new(
                StoreErrorKind::Exists,
                format!("job {} exists", job.job_id),
            ));
        }
        write_job(&tx, path, op, job)?;
        write_tasks(&tx, path, op, tasks)?;
        append_events(&tx, path, op, events)?;
        tx.commit().map_err(|e| fail(op, path, e))
    }

    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>> {
        let op = "reading a job";
        let mut v = self.records(op, "SELECT record FROM jobs WHERE job_id = ?1", [job_id])?;
        Ok(v.pop())
    }

    fn put_titles(&mut self, job_id: &str, titles: &[String]) -> StoreResult<()> {
        let op = "storing the titles of a job";
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(op, path, e))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO titles (job_id, idx, text) VALUES (?1, ?2, ?3)",
                )
                .map_err(|e| fail(op, path, e))?;
            for (i, t) in titles.iter().enumerate() {
                st.execute(params![job_id, i as i64, t])
                    .map_err(|e| fail(op, path, e))?;
            }
        }
        tx.commit().map_err(|e| fail(op, path, e))
    }

    fn title_text(&self, job_id: &str, index: u32) -> StoreResult<Option<String>> {
        self.conn
            .query_row(
                "SELECT text FROM titles WHERE job_id = ?1 AND idx = ?2",
                params![job_id, i64::from(index)],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(|e| fail("reading a title's spec", &self.path, e))
    }

    fn jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.records(
            "listing jobs",
            "SELECT record FROM jobs ORDER BY seq, job_id",
            [],
        )
    }

    fn put_job(&mut self, job: &JobRecord) -> StoreResult<()> {
        let op = "writing a job";
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(op, path, e))?;
        write_job(&tx, path, op, job)?;
        tx.commit().map_err(|e| fail(op, path, e))
    }

    fn tasks(&self, job_id: &str) -> StoreResult<Vec<TaskRecord>> {
        self.task_records(
            "listing tasks",
            "SELECT record, result FROM tasks WHERE job_id = ?1 ORDER BY seq, task_id",
            params![job_id],
        )
    }

    fn task(&self, job_id: &str, task_id: &str) -> StoreResult<Option<TaskRecord>> {
        let mut v = self.task_records(
            "reading a task",
            "SELECT record, result FROM tasks WHERE job_id = ?1 AND task_id = ?2",
            params![job_id, task_id],
        )?;
        Ok(v.pop())
    }

    fn task_page(
        &self,
        job_id: &str,
        after: Option<u32>,
        limit: usize,
    ) -> StoreResult<Vec<TaskRecord>> {
        let after = after.map_or(-1, i64::from);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.task_records(
            "listing tasks",
            "SELECT record, result FROM tasks WHERE job_id = ?1 AND seq > ?2
             ORDER BY seq, task_id LIMIT ?3",
            params![job_id, after, limit],
        )
    }

    fn dependants(&self, job_id: &str, task_id: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .tasks(job_id)?
            .into_iter()
            .filter(|t| t.deps.iter().any(|d| d == task_id))
            .map(|t| t.task_id)
            .collect())
    }

    fn finishers(&self, job_id: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .tasks(job_id)?
            .into_iter()
            .filter(|t| t.run_when == deliverables_spec::RunWhen::JobFinished)
            .map(|t| t.task_id)
            .collect())
    }

    fn tally(&self, job_id: &str) -> StoreResult<crate::store::Tally> {
        let mut tally = crate::store::Tally::default();
        for t in self.tasks(job_id)? {
            tally.add(&t, 1);
        }
        Ok(tally)
    }

    fn result(&self, job_id: &str, task_id: &str) -> StoreResult<Option<String>> {
        let op = "reading a task's result";
        self.conn
            .query_row(
                "SELECT result FROM tasks WHERE job_id = ?1 AND task_id = ?2",
                params![job_id, task_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| fail(op, &self.path, e))
    }

    fn put_tasks(
        &mut self,
        tasks: &[TaskRecord],
        job: Option<&JobRecord>,
        events: &[JobEvent],
    ) -> StoreResult<()> {
        let op = "writing tasks";
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(op, path, e))?;
        // The job first, so that its tasks' foreign key holds.
        if let Some(j) = job {
            write_job(&tx, path, op, j)?;
        }
        write_tasks(&tx, path, op, tasks)?;
        append_events(&tx, path, op, events)?;
        tx.commit().map_err(|e| fail(op, path, e))
    }

    fn events(&self, job_id: &str, after: u64, limit: usize) -> StoreResult<Vec<JobEvent>> {
        let op = "reading events";
        let path = &self.path;
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, record FROM events WHERE job_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| fail(op, path, e))?;
        let rows = st
            .query_map(params![job_id, after, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| fail(op, path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, json) = row.map_err(|e| fail(op, path, e))?;
            let mut ev: JobEvent = from_json(op, path, &json)?;
            ev.seq = u64::try_from(seq).map_err(|_| fail(op, path, format!("bad seq {seq}")))?;
            out.push(ev);
        }
        Ok(out)
    }

    fn queued(&self) -> StoreResult<Vec<TaskRecord>> {
        self.task_records(
            "listing queued tasks",
            "SELECT t.record, t.result FROM tasks t JOIN jobs j ON j.job_id = t.job_id
             WHERE t.state = ?1 AND j.state = ?2
             ORDER BY j.priority DESC, j.seq, t.seq, t.job_id, t.task_id",
            [
                TaskState::Queued.as_str(),
                JobState::as_str(JobState::Running),
            ],
        )
    }

    fn leased(&self) -> StoreResult<Vec<TaskRecord>> {
        self.task_records(
            "listing leased tasks",
            "SELECT record, result FROM tasks WHERE state = ?1 ORDER BY job_id, task_id",
            [TaskState::Leased.as_str()],
        )
    }

    fn next_job_seq(&self) -> StoreResult<u64> {
        let op = "reading the next job seq";
        let max: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM jobs", [], |r| r.get(0))
            .map_err(|e| fail(op, &self.path, e))?;
        match max {
            None => Ok(1),
            Some(m) => u64::try_from(m)
                .map(|m| m + 1)
                .map_err(|_| fail(op, &self.path, format!("bad seq {m}"))),
        }
    }

    fn next_epoch(&mut self) -> StoreResult<u64> {
        let op = "starting a coordinator epoch";
        let path = &self.path;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| fail(op, path, e))?;
        let epoch: i64 = tx
            .query_row(
                "INSERT INTO meta (key, value) VALUES ('epoch', 1)
                 ON CONFLICT (key) DO UPDATE SET value = value + 1
                 RETURNING value",
                [],
                |r| r.get(0),
            )
            .map_err(|e| fail(op, path, e))?;
        tx.commit().map_err(|e| fail(op, path, e))?;
        u64::try_from(epoch).map_err(|_| fail(op, path, format!("bad epoch {epoch}")))
    }

    /// Checkpoints the write-ahead log into the database file and truncates
    /// it, so a stopped coordinator leaves one self-contained file.
    fn close(&mut self) -> StoreResult<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| fail("checkpointing the write-ahead log", &self.path, e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use deliverables_spec::{RunWhen, TaskKind};

    use super::*;
    use crate::store::{HistoryEntry, MemoryStore};

    fn job(id: &str, seq: u64, priority: i32, state: JobState) -> JobRecord {
        JobRecord {
            job_id: id.into(),
            seq,
            priority,
            label: format!("label of {id}"),
            spec_toml: "[delivery]\nname = \"x\"\n".into(),
            spec_header: "[delivery]\n".into(),
            spec_sha256: "ab".repeat(32),
            base_dir: "/in".into(),
            output_dir: format!("/out/{id}"),
            submitted_ms: 1_700_000_000_000 + seq as i64,
            origination_unix_s: 1_700_000_000,
            state,
            worker_failures: BTreeMap::new(),
        }
    }

    fn task(job: &str, id: &str, seq: u32, state: TaskState) -> TaskRecord {
        TaskRecord {
            job_id: job.into(),
            task_id: id.into(),
            seq,
            kind: TaskKind::Render {
                title: "t".into(),
                variants: vec![id.into()],
                rate: None,
            },
            title: Some(0),
            deps: vec!["analyze-t".into()],
            run_when: RunWhen::DepsSucceeded,
            weight: 1.0 / 3.0,
            state,
            attempt: 0,
            lease_id: None,
            lease_expires_ms: 0,
            worker_id: None,
            progress: 0.0,
            not_before_ms: 0,
            result_json: None,
            error: None,
            history: vec![],
            attempt_limit: 0,
        }
    }

    fn event(job: &str, task: &str, state: &str) -> JobEvent {
        JobEvent {
            // Ignored by the stores.
            seq: 999,
            job_id: job.into(),
            at_ms: 42,
            task_id: task.into(),
            kind: if task.is_empty() { "job" } else { "task" }.into(),
            state: state.into(),
            attempt: 1,
            worker_id: "w1".into(),
            message: "ünïcode ✓".into(),
        }
    }

    type Snapshot = (
        Vec<JobRecord>,
        Vec<Option<JobRecord>>,
        Vec<Vec<TaskRecord>>,
        Vec<Vec<JobEvent>>,
        Vec<TaskRecord>,
        Vec<TaskRecord>,
        u64,
    );

    /// Everything every read method says.
    fn snapshot(s: &dyn Store) -> Snapshot {
        let ids = ["a", "b", "c", "d", "missing"];
        let mut events = Vec::new();
        for id in ids {
            for after in [0, 1, 3, 7, u64::MAX] {
                for limit in [0, 1, 2, usize::MAX] {
                    events.push(s.events(id, after, limit).unwrap());
                }
            }
        }
        (
            s.jobs().unwrap(),
            ids.iter().map(|id| s.job(id).unwrap()).collect(),
            ids.iter().map(|id| s.tasks(id).unwrap()).collect(),
            events,
            s.queued().unwrap(),
            s.leased().unwrap(),
            s.next_job_seq().unwrap(),
        )
    }

    /// A script of writes; the snapshot is compared after each.
    type Step = Box<dyn Fn(&mut dyn Store) -> StoreResult<()>>;

    fn script() -> Vec<Step> {
        vec![
            Box::new(|s| {
                // Inserted out of seq order; equal priorities with b.
                s.insert_job(
                    &job("c", 5, 0, JobState::Running),
                    &[
                        task("c", "z", 2, TaskState::Queued),
                        task("c", "y", 1, TaskState::Queued),
                        task("c", "x", 1, TaskState::Blocked),
                    ],
                    &[event("c", "", "running"), event("c", "z", "queued")],
                )
            }),
            Box::new(|s| {
                s.insert_job(
                    &job("a", 2, 0, JobState::Running),
                    &[
                        task("a", "t1", 0, TaskState::Queued),
                        task("a", "t2", 1, TaskState::Leased),
                        task("a", "t3", 2, TaskState::Queued),
                    ],
                    &[event("a", "", "running")],
                )
            }),
            Box::new(|s| {
                // Higher priority, later.
                s.insert_job(
                    &job("b", 9, 10, JobState::Running),
                    &[
                        task("b", "m", 3, TaskState::Queued),
                        task("b", "k", 0, TaskState::Succeeded),
                    ],
                    &[event("b", "", "running"), event("b", "m", "queued")],
                )
            }),
            Box::new(|s| {
                // A finished job's queued tasks are not offered.
                s.insert_job(
                    &job("d", 3, 50, JobState::Cancelled),
                    &[task("d", "q", 0, TaskState::Queued)],
                    &[event("d", "", "cancelled")],
                )
            }),
            // A duplicate is refused by both.
            Box::new(
                |s| match s.insert_job(&job("a", 77, 0, JobState::Running), &[], &[]) {
                    Err(e) if e.to_string().contains("exists") => Ok(()),
                    other => panic!("duplicate insert: {other:?}"),
                },
            ),
            Box::new(|s| {
                let mut t = task("a", "t1", 0, TaskState::Leased);
                t.attempt = 1;
                t.lease_id = Some("L1".into());
                t.lease_expires_ms = 5_000;
                t.worker_id = Some("w1".into());
                t.progress = 0.1 + 0.2;
                let mut j = job("a", 2, 0, JobState::Running);
                j.worker_failures.insert("w9".into(), 2);
                s.put_tasks(&[t], Some(&j), &[event("a", "t1", "leased")])
            }),
            Box::new(|s| {
                let mut t = task("c", "y", 1, TaskState::Failed);
                t.error = Some("boom".into());
                t.history = vec![HistoryEntry {
                    attempt: 1,
                    worker_id: "w".into(),
                    at_ms: 5,
                    outcome: crate::store::Outcome::Error { retry_in_ms: None },
                    message: "boom".into(),
                }];
                t.result_json = Some(r#"{"gain":-8.2}"#.into());
                s.put_tasks(&[t], None, &[event("c", "y", "failed")])
            }),
            Box::new(|s| {
                // Priority raised: c now leads b.
                s.put_job(&job("c", 5, 20, JobState::Running))
            }),
            Box::new(|s| s.put_tasks(&[], None, &[])),
            Box::new(|s| {
                s.put_tasks(
                    &[],
                    Some(&job("b", 9, 10, JobState::Succeeded)),
                    &[event("b", "", "succeeded"), event("a", "t3", "queued")],
                )
            }),
            Box::new(|s| {
                // A new task for an existing job.
                s.put_tasks(&[task("a", "t0", 0, TaskState::Queued)], None, &[])
            }),
        ]
    }

    #[test]
    fn behaves_like_the_memory_store() {
        let mut mem = MemoryStore::new();
        let mut sql = SqliteStore::open_in_memory().unwrap();
        assert_eq!(snapshot(&mem), snapshot(&sql));
        for (i, step) in script().iter().enumerate() {
            step(&mut mem).unwrap();
            step(&mut sql).unwrap();
            assert_eq!(snapshot(&mem), snapshot(&sql), "after step {i}");
        }
        // Spot checks that the comparison saw something.
        let q: Vec<_> = sql
            .queued()
            .unwrap()
            .into_iter()
            .map(|t| format!("{}/{}", t.job_id, t.task_id))
            .collect();
        assert_eq!(q, ["c/z", "a/t0", "a/t3"]);
        assert_eq!(sql.next_job_seq().unwrap(), 10);
        let seqs: Vec<u64> = sql
            .events("a", 0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [3, 7, 10]);
    }

    /// A fresh directory under the system's temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let base = std::env::var_os("STEMFORGE_TEST_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let d = base.join(format!(
                "stemforge-sqlite-{name}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The in-memory mirror answers like the durable store, survives a
    /// reload, and a write the durable store refuses does not reach memory.
    #[test]
    fn cached_store_mirrors_the_durable_one() {
        use crate::store::CachedStore;
        let dir = std::env::temp_dir().join(format!("stemforge-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = dir.join("jobs.sqlite");
        let open =
            || CachedStore::load(Box::new(SqliteStore::open(&db).expect("open"))).expect("load");
        let mut c = open();
        c.insert_job(
            &job("a", 1, 0, JobState::Running),
            &[
                task("a", "t1", 0, TaskState::Queued),
                task("a", "t2", 1, TaskState::Blocked),
            ],
            &[event("a", "", "running")],
        )
        .expect("insert");
        c.insert_job(
            &job("b", 2, 5, JobState::Running),
            &[task("b", "u1", 0, TaskState::Queued)],
            &[event("b", "", "running")],
        )
        .expect("insert");
        let mut t1 = task("a", "t1", 0, TaskState::Leased);
        t1.attempt = 1;
        c.put_tasks(&[t1], None, &[event("a", "t1", "leased")])
            .expect("put");
        // Refused by SQLite (no such job): memory stays as it was.
        assert!(
            c.put_tasks(&[task("ghost", "x", 0, TaskState::Queued)], None, &[])
                .is_err()
        );
        assert!(c.tasks("ghost").expect("tasks").is_empty());
        let before = snapshot(&c);
        assert_eq!(
            c.queued().expect("queued")[0].task_id,
            "u1",
            "higher priority first"
        );
        assert_eq!(c.leased().expect("leased").len(), 1);
        assert_eq!(c.events("a", 0, 10).expect("events").len(), 2);
        drop(c);
        assert_eq!(snapshot(&open()), before);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn survives_reopening() {
        let dir = TempDir::new("reopen");
        // The parent directory is created too.
        let path = dir.0.join("data").join("jobs.db");
        let before = {
            let mut s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.next_epoch().unwrap(), 1);
            for step in script() {
                step(&mut s).unwrap();
            }
            s.put_titles("a", &["[[titles]]\nname = \"t\"\n".into()])
                .unwrap();
            snapshot(&s)
        };
        let mut s = SqliteStore::open(&path).unwrap();
        assert_eq!(snapshot(&s), before);
        // Each life of a coordinator gets a greater epoch than the last.
        assert_eq!(s.next_epoch().unwrap(), 2);
        assert_eq!(
            s.title_text("a", 0).unwrap().as_deref(),
            Some("[[titles]]\nname = \"t\"\n")
        );
        assert_eq!(s.title_text("a", 1).unwrap(), None);
        // Event seqs continue after the highest ever appended.
        let last = s.events("a", 0, 100).unwrap().last().unwrap().seq;
        s.put_tasks(&[], None, &[event("a", "", "x")]).unwrap();
        let next = s.events("a", last, 100).unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].seq, 11);
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
    }

    #[test]
    fn event_seqs_are_never_reused() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.insert_job(
            &job("a", 1, 0, JobState::Running),
            &[],
            &[event("a", "", "1")],
        )
        .unwrap();
        s.put_tasks(&[], None, &[event("a", "", "2")]).unwrap();
        // Even if the newest row disappeared, AUTOINCREMENT doesn't hand it out again.
        s.conn
            .execute("DELETE FROM events WHERE seq = 2", [])
            .unwrap();
        s.put_tasks(&[], None, &[event("a", "", "3")]).unwrap();
        let seqs: Vec<u64> = s
            .events("a", 0, 10)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 3]);
    }

    #[test]
    fn a_failed_put_tasks_writes_nothing() {
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.insert_job(
            &job("a", 1, 0, JobState::Running),
            &[task("a", "t1", 0, TaskState::Queued)],
            &[event("a", "", "running")],
        )
        .unwrap();
        let before = snapshot(&s);
        let mut leased = task("a", "t1", 0, TaskState::Leased);
        leased.attempt = 1;
        let mut j = job("a", 1, 0, JobState::Running);
        j.worker_failures.insert("w1".into(), 1);
        // The second task's job doesn't exist: the foreign key fails after
        // the job and the first task were written.
        let err = s
            .put_tasks(
                &[leased, task("ghost", "t", 0, TaskState::Queued)],
                Some(&j),
                &[event("a", "t1", "leased")],
            )
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ghost/t"), "{msg}");
        assert!(msg.contains(":memory:"), "{msg}");
        assert_eq!(snapshot(&s), before);
        // Nor did the failed transaction burn an event seq the next one sees as a gap
        // (it does not matter, but it shows the rollback was complete).
        s.put_tasks(&[], None, &[event("a", "", "x")]).unwrap();
        assert_eq!(s.events("a", 0, 10).unwrap().last().unwrap().seq, 2);
        // The store stays usable and a job whose insert fails leaves nothing.
        let err = s.insert_job(
            &job("b", 2, 0, JobState::Running),
            &[
                task("b", "t", 0, TaskState::Queued),
                task("nope", "t", 1, TaskState::Queued),
            ],
            &[event("b", "", "running")],
        );
        assert!(err.is_err());
        assert_eq!(s.job("b").unwrap(), None);
        assert!(s.tasks("b").unwrap().is_empty());
        assert!(s.events("b", 0, 10).unwrap().is_empty());
    }

    #[test]
    fn migrates_an_empty_database_once() {
        let dir = TempDir::new("migrate");
        let path = dir.0.join("jobs.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        }
        let tables = |c: &Connection| -> Vec<String> {
            let mut st = c
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'index') ORDER BY name",
                )
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let c = Connection::open(&path).unwrap();
        let schema = tables(&c);
        for t in [
            "events",
            "events_job",
            "jobs",
            "jobs_seq",
            "tasks",
            "tasks_state",
        ] {
            assert!(schema.contains(&t.to_string()), "{t} in {schema:?}");
        }
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(c);
        // Reopening changes nothing.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        assert_eq!(tables(&s.conn), schema);
    }

    #[test]
    fn migrations_apply_in_order_and_a_failed_one_rolls_back() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, "t", &MIGRATIONS[..1]).unwrap();
        assert_eq!(user_version(&c, "t").unwrap(), 1);
        c.execute("INSERT INTO jobs VALUES ('a', 1, 0, 'running', '{}')", [])
            .unwrap();
        // A later build adds a script: only it runs.
        let v2 = "ALTER TABLE jobs ADD COLUMN note TEXT NOT NULL DEFAULT 'n';";
        let mut scripts = MIGRATIONS[..1].to_vec();
        scripts.push(v2);
        migrate(&mut c, "t", &scripts).unwrap();
        assert_eq!(user_version(&c, "t").unwrap(), 2);
        let note: String = c
            .query_row("SELECT note FROM jobs WHERE job_id = 'a'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(note, "n");
        // A script that fails halfway leaves neither its changes nor a bump.
        scripts.push("CREATE TABLE extra (x); SELECT nonsense FROM nowhere;");
        let err = migrate(&mut c, "t", &scripts).unwrap_err().to_string();
        assert!(err.contains("version 3"), "{err}");
        assert_eq!(user_version(&c, "t").unwrap(), 2);
        let extra: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'extra'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(extra, 0);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = TempDir::new("newer");
        let path = dir.0.join("jobs.db");
        drop(SqliteStore::open(&path).unwrap());
        let newer = MIGRATIONS.len() + 1;
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", newer as i64).unwrap();
        }
        let e = SqliteStore::open(&path).unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Version);
        assert!(!e.is_transient());
        let err = e.to_string();
        assert!(
            err.contains(&format!("newer stemforge (schema {newer}")),
            "{err}"
        );
        assert!(err.contains("upgrade stemforge"), "{err}");
        assert!(err.contains("jobs.db"), "{err}");
    }

    #[test]
    fn sqlite_failures_keep_their_kind() {
        // A file that is not a database.
        let dir = TempDir::new("garbage");
        let path = dir.0.join("jobs.db");
        std::fs::write(&path, vec![0x5a_u8; 8192]).unwrap();
        let e = SqliteStore::open(&path).unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Corrupt, "{e}");
        // A job inserted twice.
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.insert_job(&job("a", 1, 0, JobState::Running), &[], &[])
            .unwrap();
        let e = s
            .insert_job(&job("a", 1, 0, JobState::Running), &[], &[])
            .unwrap_err();
        assert_eq!(e.kind, StoreErrorKind::Exists, "{e}");
    }

    #[test]
    fn floats_survive_the_json_round_trip() {
        // serde_json parses floats "best effort" unless its float_roundtrip
        // feature is on; values the scheduler computes must come back equal.
        let mut s = SqliteStore::open_in_memory().unwrap();
        s.insert_job(&job("a", 1, 0, JobState::Running), &[], &[])
            .unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut tasks = Vec::new();
        for i in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut t = task("a", &format!("t{i}"), i, TaskState::Queued);
            t.progress = (x >> 11) as f64 / (1u64 << 53) as f64;
            let w = f64::from_bits(x);
            t.weight = if w.is_finite() { w } else { 1.0 };
            tasks.push(t);
        }
        s.put_tasks(&tasks, None, &[]).unwrap();
        let back = s.tasks("a").unwrap();
        let bad: Vec<_> = tasks
            .iter()
            .zip(&back)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (a.progress, b.progress, a.weight, b.weight))
            .collect();
        assert_eq!(back.len(), tasks.len());
        assert!(
            bad.is_empty(),
            "{} of {} records changed, e.g. {:?}: is serde_json's float_roundtrip feature on?",
            bad.len(),
            tasks.len(),
            &bad[..bad.len().min(3)]
        );
    }

    /// How many single-task `put_tasks` the disk allows per second with
    /// `synchronous=FULL`: the dispatch ceiling. Set STEMFORGE_TEST_DIR to
    /// measure a particular disk.
    #[test]
    #[ignore]
    fn timing_put_tasks() {
        let dir = TempDir::new("timing");
        let mut s = SqliteStore::open(&dir.0.join("jobs.db")).unwrap();
        let j = job("a", 1, 0, JobState::Running);
        s.insert_job(&j, &[task("a", "t", 0, TaskState::Queued)], &[])
            .unwrap();
        let n = 1000;
        let start = std::time::Instant::now();
        for i in 0..n {
            let mut t = task("a", "t", 0, TaskState::Leased);
            t.attempt = i;
            s.put_tasks(&[t], None, &[event("a", "t", "leased")])
                .unwrap();
        }
        let el = start.elapsed();
        let start = std::time::Instant::now();
        for i in 0..n {
            let mut t = task("a", "t", 0, TaskState::Leased);
            t.attempt = i;
            s.put_tasks(&[t], Some(&j), &[event("a", "t", "leased")])
                .unwrap();
        }
        let el_job = start.elapsed();
        // For comparison only: NORMAL skips the fsync per commit (safe against
        // a killed process, not against a power cut).
        s.conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        let start = std::time::Instant::now();
        for i in 0..n {
            let mut t = task("a", "t", 0, TaskState::Leased);
            t.attempt = i;
            s.put_tasks(&[t], Some(&j), &[event("a", "t", "leased")])
                .unwrap();
        }
        let el_normal = start.elapsed();
        let start = std::time::Instant::now();
        for _ in 0..n {
            let _ = s.queued().unwrap();
            let _ = s.tasks("a").unwrap();
        }
        let el_read = start.elapsed();
        println!(
            "{n} put_tasks (1 task + 1 event): {el:?} = {:.1} µs each, {:.0}/s",
            el.as_secs_f64() * 1e6 / n as f64,
            n as f64 / el.as_secs_f64()
        );
        println!(
            "{n} put_tasks (1 task + job + 1 event): {el_job:?} = {:.1} µs each",
            el_job.as_secs_f64() * 1e6 / n as f64
        );
        println!(
            "{n} put_tasks (1 task + job + 1 event) with synchronous=NORMAL: {el_normal:?} = {:.1} µs each",
            el_normal.as_secs_f64() * 1e6 / n as f64
        );
        println!(
            "{n} × (queued + tasks) reads: {el_read:?} = {:.1} µs each",
            el_read.as_secs_f64() * 1e6 / n as f64
        );
    }
}
