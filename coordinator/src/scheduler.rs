//! The scheduler: a pure state machine over tasks, leases and attempts.
//!
//! Time comes in as an argument (`now_ms`), storage through [`Store`]: no
//! clocks, threads or sockets here, so every transition is unit-testable.

use std::collections::BTreeMap;

use deliverables_spec::{Plan, RunWhen};

use deliverables_spec::contract::DepOutcome;

use crate::store::{
    HistoryEntry, JobEvent, JobRecord, JobState, Outcome, Store, StoreError, Tally, TaskRecord,
    TaskState,
};

/// The error a task whose lease lapsed carries.
pub const LEASE_EXPIRED: &str = "lease expired (worker lost or stalled)";

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub lease_ms: i64,
    pub heartbeat_ms: i64,
    /// Attempts per task before it fails for good.
    pub max_attempts: u32,
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
    /// Failed or lapsed attempts after which a worker is kept off a job.
    pub max_worker_failures: u32,
}

/// The one place the scheduling defaults are written: the settings' defaults
/// are these.
impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            lease_ms: 30_000,
            heartbeat_ms: 1_000,
            max_attempts: 3,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            max_worker_failures: 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("no job {0}")]
    NoJob(String),
    #[error("no task {task} in job {job}")]
    NoTask { job: String, task: String },
    /// A report under a lease that is no longer current (expired, re-leased).
    #[error("stale lease for task {task}: {why}")]
    StaleLease { task: String, why: String },
    /// A retry of something that has not finished, or a retry of nothing.
    #[error("nothing to retry: {0}")]
    NothingToRetry(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Names the lease a worker reports under.
#[derive(Debug, Clone, Copy)]
pub struct LeaseKey<'a> {
    pub job: &'a str,
    pub task: &'a str,
    pub lease_id: &'a str,
    pub attempt: u32,
}

/// What a worker receives.
#[derive(Debug, Clone)]
pub struct Grant {
    pub job: JobRecord,
    pub task: TaskRecord,
    /// JSON object: dependency task id → {kind, state, result, error}.
    pub deps_json: String,
    /// The spec the worker needs: the job's header and the task's title
    /// alone (its size does not grow with the number of titles).
    pub spec_text: String,
}

pub struct Scheduler<S: Store> {
    store: S,
    cfg: SchedulerConfig,
    /// This coordinator life's epoch, stamped on every lease it grants
    /// (0 until [`Scheduler::start_epoch`]).
    epoch: u64,
    lease_seq: u64,
    /// When each worker last asked for work (not stored: a restarted
    /// coordinator relearns it within one poll).
    last_poll: BTreeMap<String, i64>,
    /// Jobs that reached an end state (finished or cancelled) since the last
    /// [`Scheduler::take_ended`], in the order they ended; recorded only
    /// after the store took the change.
    ended: Vec<String>,
}

impl<S: Store> Scheduler<S> {
    pub fn new(store: S, cfg: SchedulerConfig) -> Self {
        Scheduler {
            store,
            cfg,
            epoch: 0,
            lease_seq: 0,
            last_poll: BTreeMap::new(),
            ended: Vec::new(),
        }
    }

    /// The jobs that ended since the last call (the coordinator tells its
    /// listeners, e.g. webhooks, after each scheduler call).
    pub fn take_ended(&mut self) -> Vec<String> {
        std::mem::take(&mut self.ended)
    }

    /// Appends a job-level event that changes no state (a notification's
    /// delivery, say), so it shows in the job's event stream.
    pub fn note(&mut self, job_id: &str, message: &str, now_ms: i64) -> Result<(), SchedError> {
        let job = self
            .store
            .job(job_id)?
            .ok_or_else(|| SchedError::NoJob(job_id.into()))?;
        let mut ev = job_event(&job, now_ms, message);
        ev.kind = "note".into();
        self.store.put_tasks(&[], None, &[ev])?;
        Ok(())
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Begins this coordinator's life on its store: a new epoch, greater
    /// than any earlier life's. Leases carry it, so a lease granted before
    /// a restart is told apart from this life's (see [`lease_epoch`]).
    pub fn start_epoch(&mut self) -> Result<u64, SchedError> {
        self.epoch = self.store.next_epoch()?;
        Ok(self.epoch)
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Stores a planned job; tasks without dependencies are queued at once.
    /// Its tasks are leased with the whole spec (`job.spec_toml`).
    pub fn submit(&mut self, job: JobRecord, plan: &Plan) -> Result<String, SchedError> {
        let now = job.submitted_ms;
        self.submit_at(job, plan, now)
    }

    /// Stores a planned job with its spec cut by title (`job.spec_header`
    /// and one text per title, in the spec's order): each task is leased
    /// with the header and its own title only.
    pub fn submit_scoped(
        &mut self,
        job: JobRecord,
        plan: &Plan,
        titles: &[String],
    ) -> Result<String, SchedError> {
        self.store.put_titles(&job.job_id, titles)?;
        let now = job.submitted_ms;
        self.submit_at(job, plan, now)
    }

    fn submit_at(
        &mut self,
        mut job: JobRecord,
        plan: &Plan,
        now_ms: i64,
    ) -> Result<String, SchedError> {
        job.seq = self.store.next_job_seq()?;
        job.state = JobState::Running;
        let others = plan
            .tasks
            .iter()
            .filter(|p| p.run_when != RunWhen::JobFinished)
            .count();
        // Titles are numbered in the order the plan first names them, which
        // is the spec's order.
        let mut title_index: BTreeMap<&str, u32> = BTreeMap::new();
        for p in &plan.tasks {
            if let Some(t) = p.kind.title() {
                let n = title_index.len() as u32;
                title_index.entry(t).or_insert(n);
            }
        }
        let tasks: Vec<TaskRecord> = plan
            .tasks
            .iter()
            .enumerate()
            .map(|(i, p)| TaskRecord {
                job_id: job.job_id.clone(),
                task_id: p.id.clone(),
                seq: i as u32,
                kind: p.kind.clone(),
                title: p.kind.title().and_then(|t| title_index.get(t).copied()),
                deps: p.deps.clone(),
                run_when: p.run_when,
                weight: p.weight,
                // A finisher waits for the rest of the job (if there is any).
                state: if p.deps.is_empty() && (p.run_when != RunWhen::JobFinished || others == 0) {
                    TaskState::Queued
                } else {
                    TaskState::Blocked
                },
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
            })
            .collect();
        let mut events = vec![job_event(&job, now_ms, "submitted")];
        events.extend(
            tasks
                .iter()
                .map(|t| task_event(t, now_ms, "planned".into())),
        );
        self.store.insert_job(&job, &tasks, &events)?;
        Ok(job.job_id)
    }

    /// Leases the best runnable task to `worker`, if any.
    pub fn lease(&mut self, worker: &str, now_ms: i64) -> Result<Option<Grant>, SchedError> {
        self.last_poll.insert(worker.to_string(), now_ms);
        // Workers seen within a lease period are "around".
        let around: Vec<String> = self
            .last_poll
            .iter()
            .filter(|(w, at)| w.as_str() != worker && now_ms - **at <= self.cfg.lease_ms)
            .map(|(w, _)| w.clone())
            .collect();
        let limit = self.cfg.max_worker_failures;
        let mut excluded: BTreeMap<String, bool> = BTreeMap::new();
        let store = &self.store;
        let found = store.first_queued(&mut |t: &TaskRecord| {
            if t.not_before_ms > now_ms {
                return false;
            }
            let keep_off = *excluded.entry(t.job_id.clone()).or_insert_with(|| {
                // Kept off only while another worker in good standing
                // with this job is around to take its tasks.
                store.job(&t.job_id).ok().flatten().is_some_and(|j| {
                    let fails = |w: &str| j.worker_failures.get(w).copied().unwrap_or(0);
                    fails(worker) >= limit && around.iter().any(|w| fails(w) < limit)
                })
            });
            !keep_off
        })?;
        let Some(mut task) = found else {
            return Ok(None);
        };
        let job = self
            .store
            .job(&task.job_id)?
            .ok_or_else(|| SchedError::NoJob(task.job_id.clone()))?;
        self.lease_seq += 1;
        task.attempt += 1;
        task.state = TaskState::Leased;
        task.lease_id = Some(format!(
            "e{}-{}-{}-{}",
            self.epoch,
            &task.task_id[..8.min(task.task_id.len())],
            task.attempt,
            self.lease_seq
        ));
        task.lease_expires_ms = now_ms + self.cfg.lease_ms;
        task.worker_id = Some(worker.to_string());
        task.progress = 0.0;
        let ev = task_event(&task, now_ms, format!("leased to {worker}"));
        self.store
            .put_tasks(std::slice::from_ref(&task), None, &[ev])?;
        let deps_json = self.deps_json(&task)?;
        let spec_text = self.spec_text(&job, task.title.unwrap_or(0))?;
        Ok(Some(Grant {
            job,
            task,
            deps_json,
            spec_text,
        }))
    }

    /// The spec a task of `job` on title `index` is leased with: the header
    /// and that title, or the whole spec for a job submitted unscoped. A
    /// job-wide task (the manifest) gets the first title; it reads the
    /// others with the outcomes.
    pub fn spec_text(&self, job: &JobRecord, index: u32) -> Result<String, SchedError> {
        Ok(match self.store.title_text(&job.job_id, index)? {
            Some(t) => format!("{}\n{}", job.spec_header, t),
            None => job.spec_toml.clone(),
        })
    }

    fn deps_json(&self, task: &TaskRecord) -> Result<String, SchedError> {
        let mut out: BTreeMap<&str, DepOutcome> = BTreeMap::new();
        for d in &task.deps {
            if let Some(t) = self.store.task(&task.job_id, d)? {
                out.insert(d, self.outcome(&t)?);
            }
        }
        serde_json::to_string(&out).map_err(|e| {
            SchedError::Store(StoreError::new(
                crate::store::StoreErrorKind::Other,
                format!("encoding the dependencies of {}: {e}", task.task_id),
            ))
        })
    }

    /// What a finished task amounts to for a task that reads it.
    pub fn outcome(&self, t: &TaskRecord) -> Result<DepOutcome, SchedError> {
        let result = if t.state == TaskState::Succeeded {
            self.store
                .result(&t.job_id, &t.task_id)?
                .and_then(|r| serde_json::from_str(&r).ok())
                .unwrap_or_default()
        } else {
            Default::default()
        };
        Ok(DepOutcome {
            kind: t.kind.clone(),
            state: t.state,
            result,
            error: t.error.clone().unwrap_or_default(),
        })
    }

    /// The current leased record, or why the caller's lease is not current.
    fn current(&self, k: LeaseKey<'_>) -> Result<TaskRecord, SchedError> {
        let LeaseKey {
            job,
            task,
            lease_id,
            attempt,
        } = k;
        let t = self
            .store
            .task(job, task)?
            .ok_or_else(|| SchedError::NoTask {
                job: job.into(),
                task: task.into(),
            })?;
        let stale = |why: String| SchedError::StaleLease {
            task: task.to_string(),
            why,
        };
        if t.state != TaskState::Leased {
            return Err(stale(format!("task is {}", t.state.as_str())));
        }
        if t.lease_id.as_deref() != Some(lease_id) || t.attempt != attempt {
            return Err(stale(format!(
                "current lease is attempt {} ({}), report was for attempt {attempt}",
                t.attempt,
                t.lease_id.as_deref().unwrap_or("-")
            )));
        }
        Ok(t)
    }

    /// Fails unless `k` names the current lease of its task.
    pub fn check_lease(&self, k: LeaseKey<'_>) -> Result<(), SchedError> {
        self.current(k).map(|_| ())
    }

    /// Renews a lease; returns the new expiry and whether the job was cancelled.
    pub fn heartbeat(
        &mut self,
        k: LeaseKey<'_>,
        progress: f64,
        now_ms: i64,
    ) -> Result<(i64, bool), SchedError> {
        let job = k.job;
        let j = self
            .store
            .job(job)?
            .ok_or_else(|| SchedError::NoJob(job.into()))?;
        if j.state == JobState::Cancelled {
            return Ok((0, true));
        }
        let mut t = self.current(k)?;
        t.lease_expires_ms = now_ms + self.cfg.lease_ms;
        t.progress = progress.clamp(0.0, 1.0);
        self.store.put_tasks(std::slice::from_ref(&t), None, &[])?;
        Ok((t.lease_expires_ms, false))
    }

    pub fn complete(
        &mut self,
        k: LeaseKey<'_>,
        result_json: String,
        now_ms: i64,
    ) -> Result<(), SchedError> {
        let (job, attempt) = (k.job, k.attempt);
        let mut t = self.current(k)?;
        t.state = TaskState::Succeeded;
        t.progress = 1.0;
        t.result_json = Some(result_json);
        t.error = None;
        t.lease_id = None;
        t.history.push(HistoryEntry {
            attempt,
            worker_id: t.worker_id.clone().unwrap_or_else(|| "?".into()),
            at_ms: now_ms,
            outcome: Outcome::Succeeded,
            message: String::new(),
        });
        self.settle(job, vec![t], now_ms, &[])
    }

    pub fn fail(
        &mut self,
        k: LeaseKey<'_>,
        error: String,
        retryable: bool,
        now_ms: i64,
    ) -> Result<(), SchedError> {
        self.fail_blaming(k, error, retryable, retryable, now_ms)
    }

    /// A retryable failure whose cause every worker shares (the output
    /// folder full, a storage hiccup): retried with backoff like any
    /// transient failure, but not counted against the worker, so a full
    /// disk does not keep healthy workers off the job.
    pub fn fail_shared(
        &mut self,
        k: LeaseKey<'_>,
        error: String,
        now_ms: i64,
    ) -> Result<(), SchedError> {
        self.fail_blaming(k, error, true, false, now_ms)
    }

    fn fail_blaming(
        &mut self,
        k: LeaseKey<'_>,
        error: String,
        retryable: bool,
        blame_worker: bool,
        now_ms: i64,
    ) -> Result<(), SchedError> {
        let job = k.job;
        let t = self.current(k)?;
        // Bad input is the task's fault, a shared cause nobody's: only
        // the rest counts against the worker.
        let blame: Vec<String> = if blame_worker {
            t.worker_id.clone().into_iter().collect()
        } else {
            vec![]
        };
        let t = self.end_attempt(t, error, retryable, false, now_ms);
        self.settle(job, vec![t], now_ms, &blame)
    }

    /// Takes back a lease its worker gives up unfinished (it is shutting
    /// down): the task is queued again at once; the attempt is recorded in
    /// the history but counts neither against the task's attempt limit nor
    /// against the worker.
    pub fn release(
        &mut self,
        k: LeaseKey<'_>,
        reason: &str,
        now_ms: i64,
    ) -> Result<(), SchedError> {
        let job = k.job;
        let mut t = self.current(k)?;
        let worker = t.worker_id.clone().unwrap_or_default();
        let limit = if t.attempt_limit == 0 {
            self.cfg.max_attempts
        } else {
            t.attempt_limit
        };
        t.attempt_limit = limit.saturating_add(1);
        t.state = TaskState::Queued;
        t.lease_id = None;
        t.progress = 0.0;
        t.not_before_ms = now_ms;
        let reason = if reason.trim().is_empty() {
            "no reason given"
        } else {
            reason.trim()
        };
        t.history.push(HistoryEntry {
            attempt: t.attempt,
            worker_id: worker,
            at_ms: now_ms,
            outcome: Outcome::HandedBack,
            message: reason.to_string(),
        });
        self.settle(job, vec![t], now_ms, &[])
    }

    /// Ends the current attempt of `t` with an error (`expired`: its lease
    /// lapsed): a retry after backoff while attempts remain and the error is
    /// retryable, else failed for good.
    fn end_attempt(
        &self,
        mut t: TaskRecord,
        error: String,
        retryable: bool,
        expired: bool,
        now_ms: i64,
    ) -> TaskRecord {
        let worker = t.worker_id.clone().unwrap_or_default();
        t.lease_id = None;
        t.progress = 0.0;
        let limit = if t.attempt_limit == 0 {
            self.cfg.max_attempts
        } else {
            t.attempt_limit
        };
        let mut retry_in_ms = None;
        if retryable && t.attempt < limit {
            let backoff = (self.cfg.backoff_base_ms << (t.attempt.saturating_sub(1)).min(20))
                .min(self.cfg.backoff_max_ms);
            t.state = TaskState::Queued;
            t.not_before_ms = now_ms + backoff;
            retry_in_ms = Some(backoff);
        } else {
            t.state = TaskState::Failed;
        }
        t.history.push(HistoryEntry {
            attempt: t.attempt,
            worker_id: worker,
            at_ms: now_ms,
            outcome: if expired {
                Outcome::LeaseExpired { retry_in_ms }
            } else {
                Outcome::Error { retry_in_ms }
            },
            message: if expired {
                String::new()
            } else {
                error.clone()
            },
        });
        t.error = Some(error);
        t
    }

    /// Requeues (or fails) tasks whose lease lapsed. Returns how many.
    pub fn expire_leases(&mut self, now_ms: i64) -> Result<usize, SchedError> {
        let lapsed: Vec<TaskRecord> = self
            .store
            .leased()?
            .into_iter()
            .filter(|t| t.lease_expires_ms < now_ms)
            .collect();
        let n = lapsed.len();
        let mut by_job: BTreeMap<String, (Vec<TaskRecord>, Vec<String>)> = BTreeMap::new();
        for t in lapsed {
            let worker = t.worker_id.clone();
            let t = self.end_attempt(t, LEASE_EXPIRED.to_string(), true, true, now_ms);
            let e = by_job.entry(t.job_id.clone()).or_default();
            e.0.push(t);
            e.1.extend(worker);
        }
        for (job, (ts, blame)) in by_job {
            self.settle(&job, ts, now_ms, &blame)?;
        }
        Ok(n)
    }

    /// Cancels a running job: queued and blocked tasks are cancelled; leased
    /// ones learn it at their next heartbeat.
    pub fn cancel(&mut self, job_id: &str, now_ms: i64) -> Result<(), SchedError> {
        let mut job = self
            .store
            .job(job_id)?
            .ok_or_else(|| SchedError::NoJob(job_id.into()))?;
        if job.state != JobState::Running {
            return Ok(());
        }
        job.state = JobState::Cancelled;
        let tasks: Vec<TaskRecord> = self
            .store
            .tasks(job_id)?
            .into_iter()
            .filter(|t| !t.state.is_terminal())
            .map(|mut t| {
                t.state = TaskState::Cancelled;
                t.lease_id = None;
                t
            })
            .collect();
        let mut events: Vec<JobEvent> = tasks
            .iter()
            .map(|t| task_event(t, now_ms, "cancelled with the job".into()))
            .collect();
        events.push(job_event(&job, now_ms, "cancelled"));
        self.store.put_tasks(&tasks, Some(&job), &events)?;
        self.ended.push(job.job_id);
        Ok(())
    }

    /// Runs again what did not succeed: the failed, skipped and cancelled
    /// tasks of a job (or one task, with its skipped dependants), each with
    /// a fresh allowance of attempts; the manifest task is redone so it
    /// reflects the new results. The job is running again.
    pub fn retry(
        &mut self,
        job_id: &str,
        task_id: Option<&str>,
        now_ms: i64,
    ) -> Result<usize, SchedError> {
        let mut job = self
            .store
            .job(job_id)?
            .ok_or_else(|| SchedError::NoJob(job_id.into()))?;
        let tasks = self.store.tasks(job_id)?;
        if let Some(id) = task_id
            && !tasks.iter().any(|t| t.task_id == id)
        {
            return Err(SchedError::NoTask {
                job: job_id.into(),
                task: id.into(),
            });
        }
        let again = |t: &TaskRecord| {
            matches!(
                t.state,
                TaskState::Failed | TaskState::Skipped | TaskState::Cancelled
            ) && task_id.is_none_or(|id| id == t.task_id || t.state == TaskState::Skipped)
        };
        let mut changed: Vec<TaskRecord> = Vec::new();
        let mut any = false;
        for t in &tasks {
            let redo_manifest = t.run_when != RunWhen::DepsSucceeded && t.state.is_terminal();
            any |= again(t);
            if !(again(t) || redo_manifest) {
                continue;
            }
            let mut t = t.clone();
            t.state = TaskState::Blocked;
            t.attempt_limit = t.attempt + self.cfg.max_attempts;
            t.not_before_ms = 0;
            t.error = None;
            t.lease_id = None;
            t.history.push(HistoryEntry {
                attempt: t.attempt,
                worker_id: String::new(),
                at_ms: now_ms,
                outcome: Outcome::RetryRequested,
                message: String::new(),
            });
            changed.push(t);
        }
        if !any {
            return Err(SchedError::NothingToRetry(format!(
                "job {job_id} has no failed, skipped or cancelled task{}",
                task_id.map(|t| format!(" {t}")).unwrap_or_default()
            )));
        }
        let n = changed.len();
        job.state = JobState::Running;
        job.worker_failures.clear();
        self.store
            .put_tasks(&[], Some(&job), &[job_event(&job, now_ms, "retry")])?;
        // Blocked tasks whose dependencies are done become queued here.
        self.settle(job_id, changed, now_ms, &[])?;
        Ok(n)
    }

    /// Writes changed tasks, unblocks or skips dependants, and finishes the
    /// job when every task is terminal — all in one store write. Reads only
    /// the changed tasks, their dependants and the job's tally, never the
    /// whole job. `blame`: workers whose attempt ended in a retryable failure
    /// or a lapsed lease (one entry per attempt).
    fn settle(
        &mut self,
        job_id: &str,
        changed: Vec<TaskRecord>,
        now_ms: i64,
        blame: &[String],
    ) -> Result<(), SchedError> {
        let mut job = self
            .store
            .job(job_id)?
            .ok_or_else(|| SchedError::NoJob(job_id.into()))?;
        let mut tally = self.store.tally(job_id)?;
        // Failed or lapsed attempts count against the worker on this job.
        for w in blame {
            *job.worker_failures.entry(w.clone()).or_insert(0) += 1;
        }
        let failures_changed = !blame.is_empty();
        // The new version of every task this transition touches, and the
        // (state, attempt) each had before.
        let mut work: BTreeMap<String, TaskRecord> = BTreeMap::new();
        let mut before: BTreeMap<String, (TaskState, u32)> = BTreeMap::new();
        let mut check: std::collections::VecDeque<String> = Default::default();
        for t in changed {
            let old = self.store.task(job_id, &t.task_id)?;
            if let Some(o) = &old {
                tally.add(o, -1);
                before.insert(o.task_id.clone(), (o.state, o.attempt));
            }
            tally.add(&t, 1);
            if t.state == TaskState::Blocked {
                check.push_back(t.task_id.clone());
            }
            if t.state.is_terminal() {
                check.extend(self.store.dependants(job_id, &t.task_id)?);
            }
            work.insert(t.task_id.clone(), t);
        }
        while let Some(id) = check.pop_front() {
            let t = match work.get(&id) {
                Some(t) => t.clone(),
                None => match self.store.task(job_id, &id)? {
                    Some(t) => t,
                    None => continue,
                },
            };
            if t.state != TaskState::Blocked || t.run_when == RunWhen::JobFinished {
                continue;
            }
            let mut states = Vec::with_capacity(t.deps.len());
            for d in &t.deps {
                match work.get(d) {
                    Some(x) => states.push(x.state),
                    None => states.extend(self.store.task(job_id, d)?.map(|x| x.state)),
                }
            }
            let all_done = states.iter().all(|s| s.is_terminal());
            let all_ok = states.iter().all(|s| *s == TaskState::Succeeded);
            let any_bad = states
                .iter()
                .any(|s| s.is_terminal() && *s != TaskState::Succeeded);
            let next = match t.run_when {
                RunWhen::DepsSucceeded if all_ok => Some(TaskState::Queued),
                RunWhen::DepsSucceeded if any_bad => Some(TaskState::Skipped),
                RunWhen::DepsFinished if all_done => Some(TaskState::Queued),
                _ => None,
            };
            if let Some(s) = next {
                let mut n = t;
                before.entry(id.clone()).or_insert((n.state, n.attempt));
                tally.add(&n, -1);
                n.state = s;
                if s == TaskState::Skipped {
                    n.error = Some("not run: a task it depends on failed".into());
                    check.extend(self.store.dependants(job_id, &id)?);
                }
                tally.add(&n, 1);
                work.insert(id, n);
            }
        }
        // The job's finishers start once nothing else is left to run.
        let mut waiting = Vec::new();
        for id in self.store.finishers(job_id)? {
            let t = match work.get(&id) {
                Some(t) => Some(t.clone()),
                None => self.store.task(job_id, &id)?,
            };
            if let Some(t) = t.filter(|t| t.state == TaskState::Blocked) {
                waiting.push(t);
            }
        }
        if !waiting.is_empty() && tally.unfinished() == waiting.len() as u64 {
            for mut t in waiting {
                before
                    .entry(t.task_id.clone())
                    .or_insert((t.state, t.attempt));
                tally.add(&t, -1);
                t.state = TaskState::Queued;
                tally.add(&t, 1);
                work.insert(t.task_id.clone(), t);
            }
        }
        let job_finished = job.state == JobState::Running && tally.unfinished() == 0;
        if job_finished {
            job.state = if tally.count(TaskState::Succeeded) == tally.total() {
                JobState::Succeeded
            } else {
                JobState::Failed
            };
        }
        let out: Vec<TaskRecord> = work.into_values().collect();
        let mut events: Vec<JobEvent> = out
            .iter()
            .filter(|t| before.get(&t.task_id) != Some(&(t.state, t.attempt)))
            .map(|t| {
                let msg = match t.state {
                    TaskState::Queued | TaskState::Failed => {
                        t.history.last().map(|h| h.to_string()).unwrap_or_default()
                    }
                    _ => t.error.clone().unwrap_or_default(),
                };
                task_event(t, now_ms, msg)
            })
            .collect();
        if job_finished {
            events.push(job_event(&job, now_ms, "finished"));
        }
        let job_write = (job_finished || failures_changed).then_some(&job);
        self.store.put_tasks(&out, job_write, &events)?;
        if job_finished {
            self.ended.push(job.job_id);
        }
        Ok(())
    }

    /// Sets a job's priority. The store re-orders the job's queued tasks
    /// with the job record in the same write (the memory store's queue
    /// index; SQLite orders by the jobs table's priority column), so the
    /// next lease sees the new order. A finished job keeps its priority
    /// (nothing of it is queued). Returns whether it changed.
    pub fn set_priority(
        &mut self,
        job_id: &str,
        priority: i32,
        now_ms: i64,
    ) -> Result<bool, SchedError> {
        let mut job = self.job_record(job_id)?;
        if job.state != JobState::Running || job.priority == priority {
            return Ok(false);
        }
        let was = job.priority;
        job.priority = priority;
        let event = job_event(&job, now_ms, &format!("priority {was} → {priority}"));
        self.store.put_tasks(&[], Some(&job), &[event])?;
        Ok(true)
    }

    /// Events of a job after `after` (for watchers), at most `limit`.
    pub fn events(
        &self,
        job_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JobEvent>, SchedError> {
        Ok(self.store.events(job_id, after, limit)?)
    }

    /// Every job, oldest first.
    /// Closes the store cleanly (see [`Store::close`]).
    pub fn close_store(&mut self) -> Result<(), StoreError> {
        self.store.close()
    }

    pub fn jobs(&self) -> Result<Vec<JobRecord>, SchedError> {
        Ok(self.store.jobs()?)
    }

    /// A job and every task of it (tests and small jobs; the API pages
    /// with [`Scheduler::job_page`]).
    pub fn job(&self, job_id: &str) -> Result<(JobRecord, Vec<TaskRecord>), SchedError> {
        let job = self.job_record(job_id)?;
        let tasks = self.store.tasks(job_id)?;
        Ok((job, tasks))
    }

    pub fn job_record(&self, job_id: &str) -> Result<JobRecord, SchedError> {
        self.store
            .job(job_id)?
            .ok_or_else(|| SchedError::NoJob(job_id.into()))
    }

    /// Up to `limit` tasks of a job in plan order after plan position
    /// `after`, and the job's tally.
    pub fn job_page(
        &self,
        job_id: &str,
        after: Option<u32>,
        limit: usize,
    ) -> Result<(JobRecord, Tally, Vec<TaskRecord>), SchedError> {
        let job = self.job_record(job_id)?;
        let tally = self.store.tally(job_id)?;
        let tasks = self.store.task_page(job_id, after, limit)?;
        Ok((job, tally, tasks))
    }

    pub fn task(&self, job_id: &str, task_id: &str) -> Result<Option<TaskRecord>, SchedError> {
        Ok(self.store.task(job_id, task_id)?)
    }

    /// The result a task completed with, if any (the dashboard reads a
    /// title's render results one task at a time).
    pub fn task_result(&self, job_id: &str, task_id: &str) -> Result<Option<String>, SchedError> {
        Ok(self.store.result(job_id, task_id)?)
    }

    /// The job's manifest task and its result, once it has one.
    pub fn manifest_result(&self, job_id: &str) -> Result<Option<String>, SchedError> {
        for id in self.store.finishers(job_id)? {
            if let Some(r) = self.store.result(job_id, &id)? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Tasks of every job leased now.
    pub fn leased(&self) -> Result<Vec<TaskRecord>, SchedError> {
        Ok(self.store.leased()?)
    }

    pub fn tally(&self, job_id: &str) -> Result<Tally, SchedError> {
        Ok(self.store.tally(job_id)?)
    }
}

/// The coordinator epoch a lease id was granted in (`None`: a lease id
/// from before epochs were stamped).
pub fn lease_epoch(lease_id: &str) -> Option<u64> {
    lease_id.strip_prefix('e')?.split('-').next()?.parse().ok()
}

fn task_event(t: &TaskRecord, now_ms: i64, message: String) -> JobEvent {
    JobEvent {
        seq: 0,
        job_id: t.job_id.clone(),
        at_ms: now_ms,
        task_id: t.task_id.clone(),
        kind: "task".into(),
        state: t.state.as_str().into(),
        attempt: t.attempt,
        worker_id: t.worker_id.clone().unwrap_or_default(),
        message,
    }
}

fn job_event(j: &JobRecord, now_ms: i64, message: &str) -> JobEvent {
    JobEvent {
        seq: 0,
        job_id: j.job_id.clone(),
        at_ms: now_ms,
        task_id: String::new(),
        kind: "job".into(),
        state: j.state.as_str().into(),
        attempt: 0,
        worker_id: String::new(),
        message: message.into(),
    }
}
