//! Job state storage. The scheduler reads and writes only through [`Store`];
//! the in-memory store serves `render` and tests, an embedded SQLite store
//! implements the same trait for durable coordinators.

use std::collections::BTreeMap;

use deliverables_spec::{RunWhen, TaskKind};
use serde::{Deserialize, Serialize};

pub use deliverables_spec::contract::{HistoryEntry, JobState, Outcome, TaskState};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    /// Submission order, for FIFO among equal priorities.
    pub seq: u64,
    pub priority: i32,
    pub label: String,
    pub spec_toml: String,
    pub spec_sha256: String,
    pub base_dir: String,
    pub output_dir: String,
    pub submitted_ms: i64,
    /// BWF origination time of every output, Unix seconds (see the proto).
    #[serde(default)]
    pub origination_unix_s: i64,
    pub state: JobState,
    /// Failed or lapsed attempts per worker: a worker at the limit is kept
    /// off this job.
    #[serde(default)]
    pub worker_failures: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub job_id: String,
    pub task_id: String,
    /// Position in the plan, for a stable order.
    pub seq: u32,
    pub kind: TaskKind,
    pub deps: Vec<String>,
    pub run_when: RunWhen,
    pub weight: f64,
    pub state: TaskState,
    /// Attempts started so far (the current one while leased).
    pub attempt: u32,
    pub lease_id: Option<String>,
    pub lease_expires_ms: i64,
    pub worker_id: Option<String>,
    pub progress: f64,
    /// Earliest time a retry may be leased (backoff).
    pub not_before_ms: i64,
    pub result_json: Option<String>,
    pub error: Option<String>,
    /// One entry per attempt's end (and per retry request): what happened.
    pub history: Vec<HistoryEntry>,
    /// Attempts allowed in total (a manual retry raises it); 0 means the
    /// scheduler's `max_attempts`.
    #[serde(default)]
    pub attempt_limit: u32,
}

/// Something that happened to a job, in order. Stored with the transition
/// that caused it (same transaction), so a watcher can resume after `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Assigned by the store on append: increasing, never reused.
    pub seq: u64,
    pub job_id: String,
    pub at_ms: i64,
    /// Empty for job-level events.
    pub task_id: String,
    /// `task` (a task changed state) or `job` (the job did).
    pub kind: String,
    /// The new state (`queued`, `leased`, `succeeded`, …).
    pub state: String,
    pub attempt: u32,
    pub worker_id: String,
    pub message: String,
}

/// A store operation that failed: what kind of failure (SQLite's own
/// classification where there is one) and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("job store: {message}")]
pub struct StoreError {
    pub kind: StoreErrorKind,
    pub message: String,
}

/// What went wrong underneath, for the caller to decide: retry a busy or
/// full store, stop on a corrupt or newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Another connection holds a lock.
    Busy,
    /// The disk (or quota) is full.
    Full,
    /// An I/O error or a file that cannot be opened or written.
    Io,
    /// The database file or a record in it is damaged.
    Corrupt,
    /// Written by a newer build (schema version).
    Version,
    /// A job with that id exists already.
    Exists,
    Other,
}

impl StoreError {
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
        }
    }

    /// Whether the same operation may succeed later (a lock released,
    /// space freed, a flaky disk).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::Busy | StoreErrorKind::Full | StoreErrorKind::Io
        )
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the scheduler needs from storage. Each method is atomic: a durable
/// store runs it as one transaction.
pub trait Store: Send {
    /// Stores a new job, its tasks and its first events.
    fn insert_job(
        &mut self,
        job: &JobRecord,
        tasks: &[TaskRecord],
        events: &[JobEvent],
    ) -> StoreResult<()>;
    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>>;
    fn jobs(&self) -> StoreResult<Vec<JobRecord>>;
    fn put_job(&mut self, job: &JobRecord) -> StoreResult<()>;
    fn tasks(&self, job_id: &str) -> StoreResult<Vec<TaskRecord>>;
    /// Writes these task records, the job (if given) and appends the events,
    /// all together (one transaction).
    fn put_tasks(
        &mut self,
        tasks: &[TaskRecord],
        job: Option<&JobRecord>,
        events: &[JobEvent],
    ) -> StoreResult<()>;
    /// Events of a job with `seq > after`, in order, at most `limit`.
    fn events(&self, job_id: &str, after: u64, limit: usize) -> StoreResult<Vec<JobEvent>>;
    /// Queued tasks of running jobs, best first: priority, then job, then plan order.
    fn queued(&self) -> StoreResult<Vec<TaskRecord>>;
    fn leased(&self) -> StoreResult<Vec<TaskRecord>>;
    fn next_job_seq(&self) -> StoreResult<u64>;
    /// Makes everything written durable and compact before the process
    /// exits (a SQLite checkpoint). Further writes may still follow.
    fn close(&mut self) -> StoreResult<()> {
        Ok(())
    }
}

/// Everything in memory: for `stemforge render` and tests.
#[derive(Default)]
pub struct MemoryStore {
    jobs: BTreeMap<String, JobRecord>,
    tasks: BTreeMap<(String, String), TaskRecord>,
    events: Vec<JobEvent>,
}

impl MemoryStore {
    fn append(&mut self, events: &[JobEvent]) {
        for e in events {
            let seq = self.events.len() as u64 + 1;
            self.events.push(JobEvent { seq, ..e.clone() });
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn insert_job(
        &mut self,
        job: &JobRecord,
        tasks: &[TaskRecord],
        events: &[JobEvent],
    ) -> StoreResult<()> {
        if self.jobs.contains_key(&job.job_id) {
            return Err(StoreError::new(
                StoreErrorKind::Exists,
                format!("job {} exists", job.job_id),
            ));
        }
        self.jobs.insert(job.job_id.clone(), job.clone());
        for t in tasks {
            self.tasks
                .insert((t.job_id.clone(), t.task_id.clone()), t.clone());
        }
        self.append(events);
        Ok(())
    }
    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>> {
        Ok(self.jobs.get(job_id).cloned())
    }
    fn jobs(&self) -> StoreResult<Vec<JobRecord>> {
        let mut v: Vec<_> = self.jobs.values().cloned().collect();
        v.sort_by_key(|j| j.seq);
        Ok(v)
    }
    fn put_job(&mut self, job: &JobRecord) -> StoreResult<()> {
        self.jobs.insert(job.job_id.clone(), job.clone());
        Ok(())
    }
    fn tasks(&self, job_id: &str) -> StoreResult<Vec<TaskRecord>> {
        let mut v: Vec<_> = self
            .tasks
            .range((job_id.to_string(), String::new())..)
            .take_while(|((j, _), _)| j == job_id)
            .map(|(_, t)| t.clone())
            .collect();
        v.sort_by_key(|t| t.seq);
        Ok(v)
    }
    fn put_tasks(
        &mut self,
        tasks: &[TaskRecord],
        job: Option<&JobRecord>,
        events: &[JobEvent],
    ) -> StoreResult<()> {
        for t in tasks {
            self.tasks
                .insert((t.job_id.clone(), t.task_id.clone()), t.clone());
        }
        if let Some(j) = job {
            self.put_job(j)?;
        }
        self.append(events);
        Ok(())
    }
    fn events(&self, job_id: &str, after: u64, limit: usize) -> StoreResult<Vec<JobEvent>> {
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(self.events.len());
        Ok(self.events[start..]
            .iter()
            .filter(|e| e.job_id == job_id)
            .take(limit)
            .cloned()
            .collect())
    }
    fn queued(&self) -> StoreResult<Vec<TaskRecord>> {
        let mut v: Vec<(i32, u64, TaskRecord)> = self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Queued)
            .filter_map(|t| {
                let j = self.jobs.get(&t.job_id)?;
                (j.state == JobState::Running).then(|| (j.priority, j.seq, t.clone()))
            })
            .collect();
        v.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.seq.cmp(&b.2.seq))
        });
        Ok(v.into_iter().map(|x| x.2).collect())
    }
    fn leased(&self) -> StoreResult<Vec<TaskRecord>> {
        Ok(self
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Leased)
            .cloned()
            .collect())
    }
    fn next_job_seq(&self) -> StoreResult<u64> {
        Ok(self.jobs.values().map(|j| j.seq + 1).max().unwrap_or(1))
    }
}

/// A boxed store is a store: lets the coordinator choose one at run time.
impl Store for Box<dyn Store> {
    fn insert_job(
        &mut self,
        job: &JobRecord,
        tasks: &[TaskRecord],
        events: &[JobEvent],
    ) -> StoreResult<()> {
        (**self).insert_job(job, tasks, events)
    }
    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>> {
        (**self).job(job_id)
    }
    fn jobs(&self) -> StoreResult<Vec<JobRecord>> {
        (**self).jobs()
    }
    fn put_job(&mut self, job: &JobRecord) -> StoreResult<()> {
        (**self).put_job(job)
    }
    fn tasks(&self, job_id: &str) -> StoreResult<Vec<TaskRecord>> {
        (**self).tasks(job_id)
    }
    fn put_tasks(
        &mut self,
        tasks: &[TaskRecord],
        job: Option<&JobRecord>,
        events: &[JobEvent],
    ) -> StoreResult<()> {
        (**self).put_tasks(tasks, job, events)
    }
    fn events(&self, job_id: &str, after: u64, limit: usize) -> StoreResult<Vec<JobEvent>> {
        (**self).events(job_id, after, limit)
    }
    fn queued(&self) -> StoreResult<Vec<TaskRecord>> {
        (**self).queued()
    }
    fn leased(&self) -> StoreResult<Vec<TaskRecord>> {
        (**self).leased()
    }
    fn next_job_seq(&self) -> StoreResult<u64> {
        (**self).next_job_seq()
    }
    fn close(&mut self) -> StoreResult<()> {
        (**self).close()
    }
}

/// A durable store with its job and task records mirrored in memory: reads
/// come from memory (no JSON decoding of whole jobs on every transition),
/// writes go to the durable store first and reach memory only once it has
/// accepted them. Events are read from the durable store. Correct while this
/// process is the store's only writer (one coordinator per data directory).
pub struct CachedStore {
    durable: Box<dyn Store>,
    mem: MemoryStore,
}

impl CachedStore {
    /// Loads every job and task of `durable` into memory.
    pub fn load(durable: Box<dyn Store>) -> StoreResult<CachedStore> {
        let mut mem = MemoryStore::new();
        for job in durable.jobs()? {
            let tasks = durable.tasks(&job.job_id)?;
            mem.insert_job(&job, &tasks, &[])?;
        }
        Ok(CachedStore { durable, mem })
    }
}

impl Store for CachedStore {
    fn insert_job(
        &mut self,
        job: &JobRecord,
        tasks: &[TaskRecord],
        events: &[JobEvent],
    ) -> StoreResult<()> {
        self.durable.insert_job(job, tasks, events)?;
        self.mem.insert_job(job, tasks, &[])
    }
    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>> {
        self.mem.job(job_id)
    }
    fn jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.mem.jobs()
    }
    fn put_job(&mut self, job: &JobRecord) -> StoreResult<()> {
        self.durable.put_job(job)?;
        self.mem.put_job(job)
    }
    fn tasks(&self, job_id: &str) -> StoreResult<Vec<TaskRecord>> {
        self.mem.tasks(job_id)
    }
    fn put_tasks(
        &mut self,
        tasks: &[TaskRecord],
        job: Option<&JobRecord>,
        events: &[JobEvent],
    ) -> StoreResult<()> {
        self.durable.put_tasks(tasks, job, events)?;
        self.mem.put_tasks(tasks, job, &[])
    }
    fn events(&self, job_id: &str, after: u64, limit: usize) -> StoreResult<Vec<JobEvent>> {
        self.durable.events(job_id, after, limit)
    }
    fn queued(&self) -> StoreResult<Vec<TaskRecord>> {
        self.mem.queued()
    }
    fn leased(&self) -> StoreResult<Vec<TaskRecord>> {
        self.mem.leased()
    }
    fn next_job_seq(&self) -> StoreResult<u64> {
        self.mem.next_job_seq()
    }
    fn close(&mut self) -> StoreResult<()> {
        self.durable.close()
    }
}
