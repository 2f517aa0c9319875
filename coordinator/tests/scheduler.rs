//! The scheduler as a pure state machine: explicit time, in-memory store.

use deliverables_spec::{Plan, PlannedTask, RunWhen, TaskKind};
use stemforge_coordinator::scheduler::{Grant, LeaseKey, SchedError, Scheduler, SchedulerConfig};
use stemforge_coordinator::store::{JobRecord, JobState, MemoryStore, TaskState};

fn plan(titles: &[&str]) -> Plan {
    let mut tasks = Vec::new();
    for t in titles {
        let a = format!("analyze-{t}");
        tasks.push(PlannedTask {
            id: a.clone(),
            kind: TaskKind::Analyze {
                title: t.to_string(),
                rate: None,
            },
            deps: vec![],
            run_when: RunWhen::DepsSucceeded,
            weight: 1.0,
        });
        for v in ["full", "tv"] {
            tasks.push(PlannedTask {
                id: format!("render-{t}-{v}"),
                kind: TaskKind::Render {
                    title: t.to_string(),
                    variants: vec![v.to_string()],
                    rate: None,
                },
                deps: vec![a.clone()],
                run_when: RunWhen::DepsSucceeded,
                weight: 1.0,
            });
        }
    }
    tasks.push(PlannedTask {
        id: "manifest".into(),
        kind: TaskKind::Manifest { bundle: None },
        deps: vec![],
        run_when: RunWhen::JobFinished,
        weight: 0.1,
    });
    Plan {
        spec_sha256: "x".into(),
        tasks,
        skipped: vec![],
    }
}

fn job(id: &str, priority: i32) -> JobRecord {
    JobRecord {
        job_id: id.into(),
        seq: 0,
        priority,
        label: String::new(),
        spec_toml: String::new(),
        spec_header: String::new(),
        spec_sha256: "x".into(),
        base_dir: "/".into(),
        output_dir: "/out".into(),
        submitted_ms: 0,
        origination_unix_s: 0,
        worker_failures: Default::default(),
        state: JobState::Running,
    }
}

fn sched() -> Scheduler<MemoryStore> {
    Scheduler::new(
        MemoryStore::new(),
        SchedulerConfig {
            lease_ms: 1_000,
            heartbeat_ms: 100,
            max_attempts: 3,
            backoff_base_ms: 500,
            backoff_max_ms: 10_000,
            max_worker_failures: 2,
        },
    )
}

fn key(g: &Grant) -> LeaseKey<'_> {
    LeaseKey {
        job: &g.job.job_id,
        task: &g.task.task_id,
        lease_id: g.task.lease_id.as_deref().unwrap_or(""),
        attempt: g.task.attempt,
    }
}

fn state(s: &Scheduler<MemoryStore>, job: &str, task: &str) -> TaskState {
    s.job(job)
        .expect("job")
        .1
        .into_iter()
        .find(|t| t.task_id == task)
        .expect("task")
        .state
}

#[test]
fn dag_runs_in_order_and_job_succeeds() {
    let mut s = sched();
    s.submit(job("j", 0), &plan(&["a"])).expect("submit");
    let g = s
        .lease("w1", 0)
        .expect("lease")
        .expect("analysis is runnable");
    assert_eq!(g.task.task_id, "analyze-a");
    assert_eq!(g.task.attempt, 1);
    // Renders wait for the analysis.
    assert!(s.lease("w2", 0).expect("lease").is_none());
    s.complete(key(&g), r#"{"gain":-8.2}"#.into(), 10)
        .expect("complete");
    let r1 = s.lease("w1", 10).expect("lease").expect("render");
    let r2 = s.lease("w2", 10).expect("lease").expect("render");
    // The render receives its dependency's result.
    let deps: serde_json::Value = serde_json::from_str(&r1.deps_json).expect("json");
    assert_eq!(deps["analyze-a"]["result"]["gain"], -8.2);
    assert_eq!(deps["analyze-a"]["state"], "succeeded");
    assert!(
        s.lease("w3", 10).expect("lease").is_none(),
        "manifest waits for renders"
    );
    s.complete(key(&r1), "{}".into(), 20).expect("complete");
    s.complete(key(&r2), "{}".into(), 20).expect("complete");
    let m = s.lease("w1", 20).expect("lease").expect("manifest");
    assert_eq!(m.task.kind, TaskKind::Manifest { bundle: None });
    s.complete(key(&m), "{}".into(), 30).expect("complete");
    assert_eq!(s.job("j").expect("job").0.state, JobState::Succeeded);
}

#[test]
fn stale_reports_are_refused_after_a_lease_lapses() {
    let mut s = sched();
    s.submit(job("j", 0), &plan(&["a"])).expect("submit");
    let first = s.lease("w1", 0).expect("lease").expect("task");
    // Heartbeats keep it alive...
    let (exp, cancel) = s.heartbeat(key(&first), 0.5, 800).expect("heartbeat");
    assert_eq!((exp, cancel), (1_800, false));
    // ...until they stop: the lease lapses and the task is requeued with backoff.
    assert_eq!(s.expire_leases(1_900).expect("expire"), 1);
    assert_eq!(state(&s, "j", "analyze-a"), TaskState::Queued);
    assert!(
        s.lease("w2", 2_000).expect("lease").is_none(),
        "backoff 500 ms not over"
    );
    let second = s.lease("w2", 2_400).expect("lease").expect("retry");
    assert_eq!(second.task.attempt, 2);
    // The first worker comes back: every report under its old lease is refused.
    let e = s
        .complete(key(&first), "{}".into(), 2_500)
        .expect_err("stale");
    assert!(matches!(e, SchedError::StaleLease { .. }), "{e}");
    assert!(e.to_string().contains("current lease is attempt 2"), "{e}");
    assert!(matches!(
        s.heartbeat(key(&first), 0.9, 2_500),
        Err(SchedError::StaleLease { .. })
    ));
    assert!(matches!(
        s.fail(key(&first), "x".into(), true, 2_500),
        Err(SchedError::StaleLease { .. })
    ));
    s.complete(key(&second), "{}".into(), 2_600)
        .expect("current lease completes");
    let t = s
        .job("j")
        .expect("job")
        .1
        .into_iter()
        .find(|t| t.task_id == "analyze-a")
        .expect("task");
    assert_eq!(t.history.len(), 2, "{:?}", t.history);
    assert!(matches!(
        t.history[0].outcome,
        stemforge_coordinator::store::Outcome::LeaseExpired {
            retry_in_ms: Some(_)
        }
    ));
    assert!(t.history[0].to_string().contains("lease expired"));
}

#[test]
fn retries_back_off_then_fail_and_skip_dependants_but_manifest_runs() {
    let mut s = sched();
    s.submit(job("j", 0), &plan(&["a", "b"])).expect("submit");
    let mut now = 0;
    // Title a's analysis fails three times (retryable): backoff 500, then 1000 ms.
    let mut waits = Vec::new();
    for attempt in 1..=3 {
        // A different worker each time: two failures keep a worker off the job.
        let worker = format!("w{attempt}");
        let g = loop {
            let g = s
                .lease(&worker, now)
                .expect("lease")
                .expect("something runnable");
            if g.task.task_id == "analyze-a" {
                break g;
            }
            s.complete(key(&g), "{}".into(), now).expect("complete");
        };
        assert_eq!(g.task.attempt, attempt);
        s.fail(key(&g), "disk hiccup".into(), true, now)
            .expect("fail");
        let t = s
            .job("j")
            .expect("job")
            .1
            .into_iter()
            .find(|t| t.task_id == "analyze-a")
            .expect("task");
        if attempt < 3 {
            waits.push(t.not_before_ms - now);
            now = t.not_before_ms;
        } else {
            assert_eq!(t.state, TaskState::Failed);
        }
    }
    assert_eq!(waits, vec![500, 1_000]);
    assert_eq!(state(&s, "j", "render-a-full"), TaskState::Skipped);
    assert_eq!(state(&s, "j", "render-a-tv"), TaskState::Skipped);
    // Title b carries on; the manifest still runs (it reports the failure).
    while let Some(g) = s.lease("w", now).expect("lease") {
        s.complete(key(&g), "{}".into(), now).expect("complete");
    }
    assert_eq!(state(&s, "j", "render-b-tv"), TaskState::Succeeded);
    assert_eq!(state(&s, "j", "manifest"), TaskState::Succeeded);
    assert_eq!(s.job("j").expect("job").0.state, JobState::Failed);
}

#[test]
fn bad_input_fails_at_once() {
    let mut s = sched();
    s.submit(job("j", 0), &plan(&["a"])).expect("submit");
    let g = s.lease("w", 0).expect("lease").expect("task");
    s.fail(key(&g), "corrupt stem".into(), false, 0)
        .expect("fail");
    assert_eq!(state(&s, "j", "analyze-a"), TaskState::Failed);
    assert_eq!(state(&s, "j", "manifest"), TaskState::Queued);
}

#[test]
fn higher_priority_jobs_lease_first() {
    let mut s = sched();
    s.submit(job("low", 0), &plan(&["a"])).expect("submit");
    s.submit(job("high", 5), &plan(&["b"])).expect("submit");
    let g = s.lease("w", 0).expect("lease").expect("task");
    assert_eq!(g.job.job_id, "high");
    let g2 = s.lease("w", 0).expect("lease").expect("task");
    assert_eq!(g2.job.job_id, "low");
}

#[test]
fn cancel_reaches_workers_at_heartbeat() {
    let mut s = sched();
    s.submit(job("j", 0), &plan(&["a"])).expect("submit");
    let g = s.lease("w", 0).expect("lease").expect("task");
    s.cancel("j", 5).expect("cancel");
    assert!(s.heartbeat(key(&g), 0.1, 10).expect("heartbeat").1);
    assert!(s.lease("w", 10).expect("lease").is_none());
    assert_eq!(s.job("j").expect("job").0.state, JobState::Cancelled);
    assert!(
        s.job("j")
            .expect("job")
            .1
            .iter()
            .all(|t| t.state == TaskState::Cancelled)
    );
}

#[test]
fn a_worker_that_keeps_failing_is_kept_off_the_job() {
    let mut s = sched(); // max_worker_failures = 2
    s.submit(job("j", 0), &plan(&["a", "b"])).expect("submit");
    for _ in 0..2 {
        let g = s.lease("flaky", 0).expect("lease").expect("task");
        s.fail(key(&g), "disk hiccup".into(), true, 0)
            .expect("fail");
    }
    // With no other worker around, flaky still gets the work (a job must
    // not stall); once a good worker polls, flaky is kept off.
    let g = s.lease("good", 59_000).expect("lease").expect("task");
    s.complete(key(&g), "{}".into(), 59_000).expect("complete");
    assert!(s.lease("flaky", 60_000).expect("lease").is_none());
    let g = s.lease("good", 60_000).expect("lease").expect("task");
    assert_eq!(g.job.job_id, "j");
    // Another job is fine for the flaky worker.
    s.submit(job("k", 0), &plan(&["c"])).expect("submit");
    let g = s.lease("flaky", 60_000).expect("lease").expect("task");
    assert_eq!(g.job.job_id, "k");
}

#[test]
fn retry_reruns_failed_tasks_and_the_manifest_with_events() {
    let mut s = sched();
    s.submit(job("j", 0), &plan(&["a"])).expect("submit");
    let g = s.lease("w", 0).expect("lease").expect("task");
    s.fail(key(&g), "stem corrupt".into(), false, 0)
        .expect("fail");
    // Bad input is not the worker's fault.
    assert!(s.job("j").expect("job").0.worker_failures.is_empty());
    while let Some(g) = s.lease("w", 0).expect("lease") {
        s.complete(key(&g), "{}".into(), 0).expect("complete");
    }
    assert_eq!(s.job("j").expect("job").0.state, JobState::Failed);
    assert!(matches!(
        s.retry("j", Some("nope"), 1),
        Err(stemforge_coordinator::scheduler::SchedError::NoTask { .. })
    ));
    let n = s.retry("j", None, 10).expect("retry");
    assert_eq!(n, 4, "analysis, its two skipped renders and the manifest");
    assert_eq!(s.job("j").expect("job").0.state, JobState::Running);
    assert_eq!(state(&s, "j", "analyze-a"), TaskState::Queued);
    assert_eq!(state(&s, "j", "manifest"), TaskState::Blocked);
    while let Some(g) = s.lease("w", 20).expect("lease") {
        s.complete(key(&g), "{}".into(), 20).expect("complete");
    }
    let (j, tasks) = s.job("j").expect("job");
    assert_eq!(j.state, JobState::Succeeded);
    let a = tasks
        .iter()
        .find(|t| t.task_id == "analyze-a")
        .expect("task");
    assert_eq!(a.attempt, 2, "{:?}", a.history);
    // Nothing left to retry.
    assert!(s.retry("j", None, 30).is_err());
    // The event log tells the story in order, and resumes after a seq.
    let ev = s.events("j", 0, 1000).expect("events");
    let states: Vec<String> = ev
        .iter()
        .filter(|e| e.task_id == "analyze-a")
        .map(|e| e.state.clone())
        .collect();
    assert_eq!(
        states,
        [
            "queued",
            "leased",
            "failed",
            "queued",
            "leased",
            "succeeded"
        ]
    );
    assert!(ev.windows(2).all(|w| w[0].seq < w[1].seq));
    let mid = ev[ev.len() / 2].seq;
    assert!(
        s.events("j", mid, 1000)
            .expect("events")
            .iter()
            .all(|e| e.seq > mid)
    );
    assert_eq!(ev.last().map(|e| e.kind.as_str()), Some("job"));
}

#[test]
fn a_handed_back_lease_requeues_at_once_without_using_up_attempts() {
    let mut s = sched();
    s.submit(job("j", 0), &plan(&["a"])).expect("submit");
    // Three hand-backs in a row: with max_attempts 3, failures would have
    // exhausted the task; releases do not.
    for i in 0..3i64 {
        let g = s.lease("w1", 100 * i).expect("lease").expect("task");
        assert_eq!(g.task.attempt as i64, i + 1);
        s.release(key(&g), "worker shutting down", 100 * i + 10)
            .expect("release");
        assert_eq!(state(&s, "j", "analyze-a"), TaskState::Queued);
        // The old lease is dead: a late completion under it is refused.
        assert!(matches!(
            s.complete(key(&g), "{}".into(), 100 * i + 20),
            Err(SchedError::StaleLease { .. })
        ));
    }
    // No backoff and no blame: the same worker may take it straight away.
    let g = s
        .lease("w1", 301)
        .expect("lease")
        .expect("requeued at once");
    s.fail(key(&g), "disk full".into(), true, 310)
        .expect("fail");
    assert_eq!(
        state(&s, "j", "analyze-a"),
        TaskState::Queued,
        "a real failure still has attempts left"
    );
    let (job, tasks) = s.job("j").expect("job");
    assert_eq!(
        job.worker_failures.get("w1"),
        Some(&1),
        "only the failure counts"
    );
    let t = tasks
        .iter()
        .find(|t| t.task_id == "analyze-a")
        .expect("task");
    let handed = t
        .history
        .iter()
        .filter(|h| h.outcome == stemforge_coordinator::store::Outcome::HandedBack)
        .count();
    assert_eq!(handed, 3, "{:?}", t.history);
}

#[test]
fn a_job_whose_only_failure_is_its_manifest_can_be_retried() {
    let mut s = sched();
    s.submit(job("j", 0), &plan(&["a"])).expect("submit");
    let mut t = 0;
    // Run everything but the manifest to success.
    while let Some(g) = s.lease("w1", t).expect("lease") {
        t += 10;
        if matches!(g.task.kind, TaskKind::Manifest { .. }) {
            // The manifest fails for good (not retryable).
            s.fail(key(&g), "disk quota".into(), false, t)
                .expect("fail");
            break;
        }
        s.complete(key(&g), "{}".into(), t).expect("complete");
    }
    assert_eq!(s.job("j").expect("job").0.state, JobState::Failed);
    assert_eq!(state(&s, "j", "manifest"), TaskState::Failed);
    assert_eq!(s.retry("j", None, t).expect("retry"), 1);
    assert_eq!(s.job("j").expect("job").0.state, JobState::Running);
    let g = s
        .lease("w1", t)
        .expect("lease")
        .expect("the manifest again");
    assert_eq!(g.task.kind, TaskKind::Manifest { bundle: None });
    assert_eq!(g.task.attempt, 2);
    s.complete(key(&g), r#"{"ok":true}"#.into(), t + 10)
        .expect("complete");
    assert_eq!(s.job("j").expect("job").0.state, JobState::Succeeded);
    // One task by id works too once it has failed.
    assert!(matches!(
        s.retry("j", Some("manifest"), t + 20),
        Err(SchedError::NothingToRetry(_))
    ));
}

#[test]
fn a_catalog_runs_through_indexed_transitions_with_the_manifest_last() {
    // 2,000 titles: each transition reads only the tasks it touches, so
    // this stays quick; the manifest starts only once every task finished.
    let titles: Vec<String> = (0..2_000).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = titles.iter().map(String::as_str).collect();
    let mut s = sched();
    s.submit(job("big", 0), &plan(&names)).expect("submit");
    let mut t = 0;
    let mut done = 0;
    while let Some(g) = s.lease("w1", t).expect("lease") {
        t += 1;
        if matches!(g.task.kind, TaskKind::Manifest { .. }) {
            let tally = s.tally("big").expect("tally");
            assert_eq!(
                tally.count(TaskState::Succeeded) + tally.count(TaskState::Failed),
                6_000
            );
            assert_eq!(tally.unfinished(), 1);
        }
        // Every tenth render fails for good: its title carries on.
        let fail = matches!(&g.task.kind, TaskKind::Render { variants, .. } if variants == &["tv"])
            && done % 10 == 0;
        if fail {
            s.fail(key(&g), "bad".into(), false, t).expect("fail");
        } else {
            s.complete(key(&g), "{}".into(), t).expect("complete");
        }
        done += 1;
    }
    assert_eq!(done, 6_001);
    let (j, _, first) = s.job_page("big", None, 5).expect("page");
    assert_eq!(first.len(), 5);
    assert_eq!(j.state, JobState::Failed);
    let tally = s.tally("big").expect("tally");
    assert_eq!(tally.total(), 6_001);
    assert_eq!(tally.unfinished(), 0);
}

#[test]
fn leases_carry_the_epoch_of_the_coordinator_life_that_granted_them() {
    use stemforge_coordinator::scheduler::lease_epoch;
    let mut s = sched();
    assert_eq!(s.start_epoch().expect("epoch"), 1);
    s.submit(job("j", 0), &plan(&["a"])).expect("submit");
    let g = s.lease("w1", 0).expect("lease").expect("task");
    let id = g.task.lease_id.clone().expect("lease id");
    assert_eq!(lease_epoch(&id), Some(1));
    // A later life: a new epoch; the earlier lease is still the task's and
    // is told apart by its stamp.
    assert_eq!(s.start_epoch().expect("epoch"), 2);
    assert_eq!(lease_epoch(&id), Some(1));
    s.complete(key(&g), "{}".into(), 10).expect("complete");
    let g2 = s.lease("w1", 10).expect("lease").expect("render");
    assert_eq!(
        lease_epoch(g2.task.lease_id.as_deref().unwrap_or("")),
        Some(2)
    );
}

#[test]
fn a_shared_cause_is_retried_without_counting_against_the_worker() {
    let mut s = sched(); // max_worker_failures = 2, backoff 500 ms
    s.submit(job("j", 0), &plan(&["a", "b"])).expect("submit");
    let mut t = 0;
    for _ in 0..2 {
        let g = s.lease("w1", t).expect("lease").expect("task");
        s.fail_shared(key(&g), "No space left on device".into(), t)
            .expect("fail");
        t += 1_000;
    }
    assert!(s.job("j").expect("job").0.worker_failures.is_empty());
    // A good worker around does not keep w1 off: the disk was at fault.
    let g = s.lease("w2", t).expect("lease").expect("task");
    s.complete(key(&g), "{}".into(), t).expect("complete");
    assert!(s.lease("w1", t).expect("lease").is_some());
    // The attempts were retried with backoff, not failed for good.
    let (_, tasks) = s.job("j").expect("job");
    assert!(tasks.iter().all(|x| x.state != TaskState::Failed));
}

/// Raising a queued job's priority moves its tasks ahead of every job
/// below it at once, and lowering it moves them back, whichever store
/// keeps the queue: the memory store's queue index, SQLite's ordered
/// query, and SQLite behind its memory mirror (the coordinator's store).
#[test]
fn a_priority_change_reorders_leasing_in_every_store() {
    use stemforge_coordinator::sqlite_store::SqliteStore;
    use stemforge_coordinator::store::{CachedStore, Store};

    fn check<S: Store>(mut s: Scheduler<S>, store: &str) {
        s.submit(job("first", 0), &plan(&["a"])).expect("submit");
        s.submit(job("second", 0), &plan(&["b"])).expect("submit");
        // Equal priorities: submission order.
        assert_eq!(
            s.lease("w", 0).expect("lease").expect("task").job.job_id,
            "first",
            "{store}"
        );
        s.submit(job("third", 0), &plan(&["c"])).expect("submit");
        assert!(
            s.set_priority("third", 7, 1).expect("set priority"),
            "{store}"
        );
        assert_eq!(s.job_record("third").expect("job").priority, 7, "{store}");
        let g = s.lease("w", 2).expect("lease").expect("task");
        assert_eq!(g.job.job_id, "third", "{store}: raised job leases first");
        assert_eq!(g.job.priority, 7, "{store}");
        // Lowered below the others: it goes last.
        s.submit(job("fourth", 0), &plan(&["d"])).expect("submit");
        assert!(
            s.set_priority("fourth", -3, 3).expect("set priority"),
            "{store}"
        );
        assert!(
            !s.set_priority("fourth", -3, 3).expect("same priority"),
            "{store}"
        );
        let mut order = Vec::new();
        while let Some(g) = s.lease("w", 4).expect("lease") {
            order.push(g.job.job_id);
        }
        let firsts: Vec<&str> = order.iter().map(String::as_str).collect();
        assert_eq!(
            firsts,
            ["second", "fourth"],
            "{store}: the rest in priority order (renders wait for analyses)"
        );
        let ev = s.events("fourth", 0, 100).expect("events");
        assert!(
            ev.iter().any(|e| e.message == "priority 0 → -3"),
            "{store}: the change is an event: {ev:?}"
        );
        assert!(matches!(
            s.set_priority("nope", 1, 5),
            Err(SchedError::NoJob(_))
        ));
    }
    let cfg = SchedulerConfig {
        lease_ms: 1_000,
        heartbeat_ms: 100,
        max_attempts: 3,
        backoff_base_ms: 500,
        backoff_max_ms: 10_000,
        max_worker_failures: 2,
    };
    check(sched(), "memory");
    check(
        Scheduler::new(SqliteStore::open_in_memory().expect("sqlite"), cfg.clone()),
        "sqlite",
    );
    let cached = CachedStore::load(Box::new(SqliteStore::open_in_memory().expect("sqlite")))
        .expect("cached store");
    check(Scheduler::new(cached, cfg), "sqlite behind its mirror");
}
