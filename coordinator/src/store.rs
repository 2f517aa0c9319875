//! Job state storage. The scheduler reads and writes only through [`Store`];
//! the in-memory store serves `render` and tests, an embedded SQLite store
//! implements the same trait for durable coordinators.

use std::collections::{BTreeMap, BTreeSet};

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
    /// The spec's sections but its titles: with one title's text (see
    /// [`Store::title_text`]) it is the spec a worker receives for that
    /// title's tasks.
    #[serde(default)]
    pub spec_header: String,
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
    /// The position of the task's title in the spec (`None`: a job-wide task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<u32>,
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
    /// Set when the task succeeded. Not part of the record's JSON: a
    /// durable store keeps it beside the record, written once.
    #[serde(default, skip_serializing)]
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

/// What a job's tasks add up to: how many are in each state and what their
/// attempts' histories count. A store keeps it as records are written, so
/// neither a scrape nor a transition reads every task of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Tasks per state, in [`TaskState::ALL`] order.
    pub states: [u64; 7],
    pub lease_expiries: u64,
    pub handed_back: u64,
    /// Attempts beyond each task's first, hand-backs excluded.
    pub retries: u64,
}

impl Tally {
    fn index(s: TaskState) -> usize {
        TaskState::ALL.iter().position(|x| *x == s).unwrap_or(0)
    }

    /// Tasks in state `s`.
    pub fn count(&self, s: TaskState) -> u64 {
        self.states[Self::index(s)]
    }

    pub fn total(&self) -> u64 {
        self.states.iter().sum()
    }

    /// Tasks not yet succeeded, failed, skipped or cancelled.
    pub fn unfinished(&self) -> u64 {
        TaskState::ALL
            .iter()
            .filter(|s| !s.is_terminal())
            .map(|s| self.count(*s))
            .sum()
    }

    /// Counts `t` in (`sign` 1) or out (`sign` -1).
    pub fn add(&mut self, t: &TaskRecord, sign: i64) {
        let mv = |x: &mut u64, by: u64| {
            *x = if sign >= 0 {
                x.saturating_add(by)
            } else {
                x.saturating_sub(by)
            }
        };
        mv(&mut self.states[Self::index(t.state)], 1);
        let count = |f: fn(&Outcome) -> bool| t.history.iter().filter(|h| f(&h.outcome)).count();
        let expired = count(|o| matches!(o, Outcome::LeaseExpired { .. })) as u64;
        let handed = count(|o| *o == Outcome::HandedBack) as u64;
        mv(&mut self.lease_expiries, expired);
        mv(&mut self.handed_back, handed);
        mv(
            &mut self.retries,
            u64::from(t.attempt.saturating_sub(1)).saturating_sub(handed),
        );
    }

    pub fn merge(&mut self, o: &Tally) {
        for (a, b) in self.states.iter_mut().zip(o.states) {
            *a += b;
        }
        self.lease_expiries += o.lease_expiries;
        self.handed_back += o.handed_back;
        self.retries += o.retries;
    }
}

/// What the scheduler needs from storage. Each method is atomic: a durable
/// store runs it as one transaction.
///
/// A record written without a result (`result_json: None`) keeps the result
/// stored before: results are written once, when a task succeeds, and read
/// by [`Store::result`], so the records the scheduler moves around stay small.
pub trait Store: Send {
    /// Stores a new job, its tasks and its first events.
    fn insert_job(
        &mut self,
        job: &JobRecord,
        tasks: &[TaskRecord],
        events: &[JobEvent],
    ) -> StoreResult<()>;
    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>>;
    /// Stores the spec text of each title of a job (before the job itself:
    /// texts without a job are never read).
    fn put_titles(&mut self, job_id: &str, titles: &[String]) -> StoreResult<()>;
    /// The spec text of a job's title `index` (its `[[titles]]` table).
    fn title_text(&self, job_id: &str, index: u32) -> StoreResult<Option<String>>;
    fn jobs(&self) -> StoreResult<Vec<JobRecord>>;
    fn put_job(&mut self, job: &JobRecord) -> StoreResult<()>;
    /// Every task of a job, in plan order (operator actions and tests; the
    /// scheduler's transitions use the indexed reads below).
    fn tasks(&self, job_id: &str) -> StoreResult<Vec<TaskRecord>>;
    /// One task.
    fn task(&self, job_id: &str, task_id: &str) -> StoreResult<Option<TaskRecord>>;
    /// Up to `limit` tasks of a job in plan order, starting after plan
    /// position `after` (`None`: from the start).
    fn task_page(
        &self,
        job_id: &str,
        after: Option<u32>,
        limit: usize,
    ) -> StoreResult<Vec<TaskRecord>>;
    /// Ids of the tasks of `job_id` that list `task_id` among their deps.
    fn dependants(&self, job_id: &str, task_id: &str) -> StoreResult<Vec<String>>;
    /// Ids of the tasks that run once every other task of the job finished
    /// ([`RunWhen::JobFinished`]).
    fn finishers(&self, job_id: &str) -> StoreResult<Vec<String>>;
    /// The job's tasks counted (see [`Tally`]).
    fn tally(&self, job_id: &str) -> StoreResult<Tally>;
    /// The result a task completed with, if any.
    fn result(&self, job_id: &str, task_id: &str) -> StoreResult<Option<String>>;
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
    /// The best queued task of a running job (order of [`Store::queued`])
    /// that `accept` takes.
    fn first_queued(
        &self,
        accept: &mut dyn FnMut(&TaskRecord) -> bool,
    ) -> StoreResult<Option<TaskRecord>> {
        Ok(self.queued()?.into_iter().find(|t| accept(t)))
    }
    fn leased(&self) -> StoreResult<Vec<TaskRecord>>;
    fn next_job_seq(&self) -> StoreResult<u64>;
    /// Starts a new life of the coordinator owning this store: returns an
    /// epoch greater than every one returned before (durably, for a
    /// durable store), which the coordinator stamps on its leases.
    fn next_epoch(&mut self) -> StoreResult<u64>;
    /// Makes everything written durable and compact before the process
    /// exits (a SQLite checkpoint). Further writes may still follow.
    fn close(&mut self) -> StoreResult<()> {
        Ok(())
    }
}

/// The position of a queued task: priority (highest first), job
/// submission order, plan order.
type QueueKey = (std::cmp::Reverse<i32>, u64, u32, String, String);

/// Everything in memory, indexed: for `stemforge render`, tests, and as the
/// mirror of a durable store ([`CachedStore`], which keeps no results in it).
#[derive(Default)]
pub struct MemoryStore {
    jobs: BTreeMap<String, JobRecord>,
    tasks: BTreeMap<(String, String), TaskRecord>,
    events: Vec<JobEvent>,
    /// Queued tasks in lease order.
    queue: BTreeSet<QueueKey>,
    leased: BTreeSet<(String, String)>,
    /// (job, plan position, task id): plan order.
    by_seq: BTreeSet<(String, u32, String)>,
    /// (job, dependency) → the tasks waiting on it.
    dependants: BTreeMap<(String, String), Vec<String>>,
    finishers: BTreeMap<String, Vec<String>>,
    tallies: BTreeMap<String, Tally>,
    titles: BTreeMap<(String, u32), String>,
    epoch: u64,
    /// False for a mirror: results stay in the durable store only.
    drop_results: bool,
}

impl MemoryStore {
    fn append(&mut self, events: &[JobEvent]) {
        for e in events {
            let seq = self.events.len() as u64 + 1;
            self.events.push(JobEvent { seq, ..e.clone() });
        }
    }

    fn queue_key(&self, t: &TaskRecord) -> QueueKey {
        let (priority, seq) = self
            .jobs
            .get(&t.job_id)
            .map_or((0, 0), |j| (j.priority, j.seq));
        (
            std::cmp::Reverse(priority),
            seq,
            t.seq,
            t.job_id.clone(),
            t.task_id.clone(),
        )
    }

    /// Writes one task record, keeping every index and tally in step.
    fn put_task(&mut self, t: &TaskRecord) {
        let key = (t.job_id.clone(), t.task_id.clone());
        let mut t = t.clone();
        let old = self.tasks.remove(&key);
        if let Some(o) = &old {
            if t.result_json.is_none() && !self.drop_results {
                t.result_json = o.result_json.clone();
            }
            self.tallies.entry(o.job_id.clone()).or_default().add(o, -1);
            if o.state == TaskState::Queued {
                let k = self.queue_key(o);
                self.queue.remove(&k);
            }
            if o.state == TaskState::Leased {
                self.leased.remove(&key);
            }
        } else {
            self.by_seq
                .insert((t.job_id.clone(), t.seq, t.task_id.clone()));
            for d in &t.deps {
                self.dependants
                    .entry((t.job_id.clone(), d.clone()))
                    .or_default()
                    .push(t.task_id.clone());
            }
            if t.run_when == RunWhen::JobFinished {
                self.finishers
                    .entry(t.job_id.clone())
                    .or_default()
                    .push(t.task_id.clone());
            }
        }
        if self.drop_results {
            t.result_json = None;
        }
        self.tallies.entry(t.job_id.clone()).or_default().add(&t, 1);
        if t.state == TaskState::Queued {
            let k = self.queue_key(&t);
            self.queue.insert(k);
        }
        if t.state == TaskState::Leased {
            self.leased.insert(key.clone());
        }
        self.tasks.insert(key, t);
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A mirror of a durable store: the same indexes, no results.
    fn mirror() -> Self {
        MemoryStore {
            drop_results: true,
            ..Self::default()
        }
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
        self.put_job(job)?;
        for t in tasks {
            self.put_task(t);
        }
        self.append(events);
        Ok(())
    }
    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>> {
        Ok(self.jobs.get(job_id).cloned())
    }
    fn put_titles(&mut self, job_id: &str, titles: &[String]) -> StoreResult<()> {
        for (i, t) in titles.iter().enumerate() {
            self.titles
                .insert((job_id.to_string(), i as u32), t.clone());
        }
        Ok(())
    }
    fn title_text(&self, job_id: &str, index: u32) -> StoreResult<Option<String>> {
        Ok(self.titles.get(&(job_id.to_string(), index)).cloned())
    }
    fn jobs(&self) -> StoreResult<Vec<JobRecord>> {
        let mut v: Vec<_> = self.jobs.values().cloned().collect();
        v.sort_by_key(|j| j.seq);
        Ok(v)
    }
    fn put_job(&mut self, job: &JobRecord) -> StoreResult<()> {
        let mut job = job.clone();
        if self.drop_results && !job.spec_header.is_empty() {
            // The mirror keeps what leases need (the header; the titles'
            // texts stay in the durable store), not the whole spec. A job
            // stored before titles were kept apart keeps its spec.
            job.spec_toml = String::new();
        }
        let job = &job;
        let old = self.jobs.insert(job.job_id.clone(), job.clone());
        // A new priority or position moves the job's queued tasks.
        if old.is_some_and(|o| (o.priority, o.seq) != (job.priority, job.seq)) {
            let queued: Vec<TaskRecord> = self
                .task_page(&job.job_id, None, usize::MAX)?
                .into_iter()
                .filter(|t| t.state == TaskState::Queued)
                .collect();
            self.queue
                .retain(|(_, _, _, j, _)| j.as_str() != job.job_id.as_str());
            for t in &queued {
                let k = self.queue_key(t);
                self.queue.insert(k);
            }
        }
        Ok(())
    }
    fn tasks(&self, job_id: &str) -> StoreResult<Vec<TaskRecord>> {
        self.task_page(job_id, None, usize::MAX)
    }
    fn task(&self, job_id: &str, task_id: &str) -> StoreResult<Option<TaskRecord>> {
        Ok(self
            .tasks
            .get(&(job_id.to_string(), task_id.to_string()))
            .cloned())
    }
    fn task_page(
        &self,
        job_id: &str,
        after: Option<u32>,
        limit: usize,
    ) -> StoreResult<Vec<TaskRecord>> {
        use std::ops::Bound;
        let lo = match after {
            Some(a) if a == u32::MAX => return Ok(Vec::new()),
            Some(a) => Bound::Included((job_id.to_string(), a + 1, String::new())),
            None => Bound::Included((job_id.to_string(), 0, String::new())),
        };
        let hi = Bound::Excluded((format!("{job_id}\0"), 0, String::new()));
        Ok(self
            .by_seq
            .range((lo, hi))
            .filter(|(j, _, _)| j == job_id)
            .filter_map(|(j, _, id)| self.tasks.get(&(j.clone(), id.clone())))
            .take(limit)
            .cloned()
            .collect())
    }
    fn dependants(&self, job_id: &str, task_id: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .dependants
            .get(&(job_id.to_string(), task_id.to_string()))
            .cloned()
            .unwrap_or_default())
    }
    fn finishers(&self, job_id: &str) -> StoreResult<Vec<String>> {
        Ok(self.finishers.get(job_id).cloned().unwrap_or_default())
    }
    fn tally(&self, job_id: &str) -> StoreResult<Tally> {
        Ok(self.tallies.get(job_id).copied().unwrap_or_default())
    }
    fn result(&self, job_id: &str, task_id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .tasks
            .get(&(job_id.to_string(), task_id.to_string()))
            .and_then(|t| t.result_json.clone()))
    }
    fn put_tasks(
        &mut self,
        tasks: &[TaskRecord],
        job: Option<&JobRecord>,
        events: &[JobEvent],
    ) -> StoreResult<()> {
        if let Some(j) = job {
            self.put_job(j)?;
        }
        for t in tasks {
            self.put_task(t);
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
        let mut out = Vec::new();
        self.first_queued(&mut |t| {
            out.push(t.clone());
            false
        })?;
        Ok(out)
    }
    fn first_queued(
        &self,
        accept: &mut dyn FnMut(&TaskRecord) -> bool,
    ) -> StoreResult<Option<TaskRecord>> {
        for (_, _, _, job, task) in &self.queue {
            let running = self
                .jobs
                .get(job)
                .is_some_and(|j| j.state == JobState::Running);
            if !running {
                continue;
            }
            if let Some(t) = self.tasks.get(&(job.clone(), task.clone()))
                && accept(t)
            {
                return Ok(Some(t.clone()));
            }
        }
        Ok(None)
    }
    fn leased(&self) -> StoreResult<Vec<TaskRecord>> {
        Ok(self
            .leased
            .iter()
            .filter_map(|k| self.tasks.get(k))
            .cloned()
            .collect())
    }
    fn next_job_seq(&self) -> StoreResult<u64> {
        Ok(self.jobs.values().map(|j| j.seq + 1).max().unwrap_or(1))
    }
    fn next_epoch(&mut self) -> StoreResult<u64> {
        self.epoch += 1;
        Ok(self.epoch)
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
    fn put_titles(&mut self, job_id: &str, titles: &[String]) -> StoreResult<()> {
        (**self).put_titles(job_id, titles)
    }
    fn title_text(&self, job_id: &str, index: u32) -> StoreResult<Option<String>> {
        (**self).title_text(job_id, index)
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
    fn task(&self, job_id: &str, task_id: &str) -> StoreResult<Option<TaskRecord>> {
        (**self).task(job_id, task_id)
    }
    fn task_page(
        &self,
        job_id: &str,
        after: Option<u32>,
        limit: usize,
    ) -> StoreResult<Vec<TaskRecord>> {
        (**self).task_page(job_id, after, limit)
    }
    fn dependants(&self, job_id: &str, task_id: &str) -> StoreResult<Vec<String>> {
        (**self).dependants(job_id, task_id)
    }
    fn finishers(&self, job_id: &str) -> StoreResult<Vec<String>> {
        (**self).finishers(job_id)
    }
    fn tally(&self, job_id: &str) -> StoreResult<Tally> {
        (**self).tally(job_id)
    }
    fn result(&self, job_id: &str, task_id: &str) -> StoreResult<Option<String>> {
        (**self).result(job_id, task_id)
    }
    fn first_queued(
        &self,
        accept: &mut dyn FnMut(&TaskRecord) -> bool,
    ) -> StoreResult<Option<TaskRecord>> {
        (**self).first_queued(accept)
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
    fn next_epoch(&mut self) -> StoreResult<u64> {
        (**self).next_epoch()
    }
    fn close(&mut self) -> StoreResult<()> {
        (**self).close()
    }
}

/// A durable store with its job and task records mirrored in memory: reads
/// come from memory (no JSON decoding of whole jobs on every transition),
/// writes go to the durable store first and reach memory only once it has
/// accepted them. Events and results are read from the durable store, so
/// the mirror's size does not grow with what tasks return. Correct while this
/// process is the store's only writer (one coordinator per data directory).
pub struct CachedStore {
    durable: Box<dyn Store>,
    mem: MemoryStore,
}

impl CachedStore {
    /// Loads every job and task of `durable` into memory.
    pub fn load(durable: Box<dyn Store>) -> StoreResult<CachedStore> {
        let mut mem = MemoryStore::mirror();
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
    fn put_titles(&mut self, job_id: &str, titles: &[String]) -> StoreResult<()> {
        self.durable.put_titles(job_id, titles)
    }
    fn title_text(&self, job_id: &str, index: u32) -> StoreResult<Option<String>> {
        self.durable.title_text(job_id, index)
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
    fn task(&self, job_id: &str, task_id: &str) -> StoreResult<Option<TaskRecord>> {
        self.mem.task(job_id, task_id)
    }
    fn task_page(
        &self,
        job_id: &str,
        after: Option<u32>,
        limit: usize,
    ) -> StoreResult<Vec<TaskRecord>> {
        self.mem.task_page(job_id, after, limit)
    }
    fn dependants(&self, job_id: &str, task_id: &str) -> StoreResult<Vec<String>> {
        self.mem.dependants(job_id, task_id)
    }
    fn finishers(&self, job_id: &str) -> StoreResult<Vec<String>> {
        self.mem.finishers(job_id)
    }
    fn tally(&self, job_id: &str) -> StoreResult<Tally> {
        self.mem.tally(job_id)
    }
    fn result(&self, job_id: &str, task_id: &str) -> StoreResult<Option<String>> {
        self.durable.result(job_id, task_id)
    }
    fn first_queued(
        &self,
        accept: &mut dyn FnMut(&TaskRecord) -> bool,
    ) -> StoreResult<Option<TaskRecord>> {
        self.mem.first_queued(accept)
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
    fn next_epoch(&mut self) -> StoreResult<u64> {
        self.durable.next_epoch()
    }
    fn close(&mut self) -> StoreResult<()> {
        self.durable.close()
    }
}
