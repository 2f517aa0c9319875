//! What the hot folders remember across coordinator restarts:
//! `DATA_DIR/watch.sqlite`, one row per (watch folder, title folder) with
//! the fingerprint last acted on, what came of it and the job. The rule it
//! serves: a title folder is submitted once per fingerprint. A row is
//! written `submitting` before the job is submitted and `submitted` with
//! the job's id after, so a coordinator stopped in between finds the job
//! by its label and spec hash instead of submitting it again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};

/// The state database's file in the data directory.
pub const STATE_FILE: &str = "watch.sqlite";

/// What came of a title folder's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// About to be submitted (the job id is not known yet).
    Submitting,
    /// Submitted; its job runs (or ran while no one followed it).
    Submitted,
    /// Its check failed before submission; findings beside the folder.
    Rejected,
    /// Its job succeeded.
    Succeeded,
    /// Its job failed (preflight or otherwise); findings beside the folder.
    Failed,
    /// Its job was cancelled (by an operator): not resubmitted either.
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Submitting => "submitting",
            State::Submitted => "submitted",
            State::Rejected => "rejected",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<State> {
        [
            State::Submitting,
            State::Submitted,
            State::Rejected,
            State::Succeeded,
            State::Failed,
            State::Cancelled,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// One title folder's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub fingerprint: String,
    pub state: State,
    pub job_id: Option<String>,
    /// The SHA-256 of the spec submitted (or checked).
    pub spec_sha256: String,
    /// The SHA-256 of the template it was checked with: a folder rejected
    /// under another template is checked again.
    pub template_sha256: String,
    pub label: String,
    pub error: Option<String>,
    pub submitted_ms: Option<i64>,
    pub updated_ms: i64,
}

/// The open state database (one connection; used from blocking threads).
pub struct StateDb {
    conn: Mutex<Connection>,
}

impl StateDb {
    pub fn open(path: &Path) -> anyhow::Result<StateDb> {
        let shown = path.display();
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the hot folders' state {shown}"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let _: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .with_context(|| format!("{shown}: setting journal_mode=WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS titles (
                folder TEXT NOT NULL,
                title TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                state TEXT NOT NULL,
                job_id TEXT,
                spec_sha256 TEXT NOT NULL,
                template_sha256 TEXT NOT NULL,
                label TEXT NOT NULL,
                error TEXT,
                submitted_ms INTEGER,
                updated_ms INTEGER NOT NULL,
                PRIMARY KEY (folder, title)
            );",
        )
        .with_context(|| format!("{shown}: creating the titles table"))?;
        Ok(StateDb {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| anyhow::anyhow!("hot folders' state lock poisoned"))
    }

    /// Every row of a watch folder, by title (bounded by its title folders).
    pub fn load(&self, folder: &str) -> anyhow::Result<BTreeMap<String, Record>> {
        let conn = self.conn()?;
        let mut st = conn.prepare(
            "SELECT title, fingerprint, state, job_id, spec_sha256, template_sha256, label,
                    error, submitted_ms, updated_ms
             FROM titles WHERE folder = ?1",
        )?;
        let rows = st.query_map(params![folder], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(2)?,
                Record {
                    fingerprint: r.get(1)?,
                    state: State::Failed,
                    job_id: r.get(3)?,
                    spec_sha256: r.get(4)?,
                    template_sha256: r.get(5)?,
                    label: r.get(6)?,
                    error: r.get(7)?,
                    submitted_ms: r.get(8)?,
                    updated_ms: r.get(9)?,
                },
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (title, state, mut rec) = row?;
            match State::parse(&state) {
                Some(s) => rec.state = s,
                None => {
                    tracing::warn!(
                        folder,
                        title,
                        state,
                        "hot folders' state: unknown state; the title is checked again"
                    );
                    continue;
                }
            }
            out.insert(title, rec);
        }
        Ok(out)
    }

    /// Writes a title's row (durably, before the caller acts on it).
    pub fn put(&self, folder: &str, title: &str, r: &Record) -> anyhow::Result<()> {
        self.conn()?.execute(
            "INSERT INTO titles (folder, title, fingerprint, state, job_id, spec_sha256,
                                 template_sha256, label, error, submitted_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (folder, title) DO UPDATE SET
                fingerprint = excluded.fingerprint, state = excluded.state,
                job_id = excluded.job_id, spec_sha256 = excluded.spec_sha256,
                template_sha256 = excluded.template_sha256, label = excluded.label,
                error = excluded.error, submitted_ms = excluded.submitted_ms,
                updated_ms = excluded.updated_ms",
            params![
                folder,
                title,
                r.fingerprint,
                r.state.as_str(),
                r.job_id,
                r.spec_sha256,
                r.template_sha256,
                r.label,
                r.error,
                r.submitted_ms,
                r.updated_ms
            ],
        )?;
        Ok(())
    }

    /// One row, if any (tests and tools).
    pub fn get(&self, folder: &str, title: &str) -> anyhow::Result<Option<Record>> {
        let conn = self.conn()?;
        let found: Option<String> = conn
            .query_row(
                "SELECT title FROM titles WHERE folder = ?1 AND title = ?2",
                params![folder, title],
                |r| r.get(0),
            )
            .optional()?;
        drop(conn);
        Ok(match found {
            Some(t) => self.load(folder)?.remove(&t),
            None => None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_a_reopen() {
        let d = std::env::temp_dir().join(format!("stemforge-watch-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join(STATE_FILE);
        let rec = Record {
            fingerprint: "ab".into(),
            state: State::Submitted,
            job_id: Some("job-1".into()),
            spec_sha256: "cd".into(),
            template_sha256: "ef".into(),
            label: "in/Song".into(),
            error: None,
            submitted_ms: Some(5),
            updated_ms: 6,
        };
        {
            let db = StateDb::open(&path).unwrap();
            db.put("/in", "Song", &rec).unwrap();
            db.put(
                "/other",
                "Song",
                &Record {
                    state: State::Rejected,
                    ..rec.clone()
                },
            )
            .unwrap();
        }
        let db = StateDb::open(&path).unwrap();
        assert_eq!(db.load("/in").unwrap().get("Song"), Some(&rec));
        assert_eq!(
            db.get("/other", "Song").unwrap().map(|r| r.state),
            Some(State::Rejected)
        );
        assert_eq!(db.get("/in", "Nope").unwrap(), None);
        let _ = std::fs::remove_dir_all(&d);
    }
}
