//! Prometheus metrics of a coordinator, served as text on `/metrics`.
//!
//! Job and task counts, queue depth, retries and lease expiries are taken
//! from the job store at scrape time (so they are right after a restart);
//! task durations, audio seconds and connected workers are observed as
//! reports arrive.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::{JobState, Tally, TaskRecord, TaskState};
use deliverables_spec::contract::PackResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabel {
    kind: String,
    outcome: String,
}

/// How a leased attempt ended, for the duration histogram.
#[derive(Debug, Clone, Copy)]
pub enum Ended {
    Succeeded,
    Failed,
    HandedBack,
}

impl Ended {
    fn name(self) -> &'static str {
        match self {
            Ended::Succeeded => "succeeded",
            Ended::Failed => "failed",
            Ended::HandedBack => "handed_back",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    tasks: Family<StateLabel, Gauge>,
    jobs: Family<StateLabel, Gauge>,
    queue_depth: Gauge,
    workers: Gauge,
    lease_expiries: Counter,
    retries: Counter,
    handed_back: Counter,
    durations: Family<EndLabel, Histogram>,
    audio_seconds: Counter<f64, AtomicU64>,
    /// What the store-derived counters stood at when last exported.
    exported: Mutex<(u64, u64, u64)>,
    /// Lease id → (granted at, task kind), to time attempts.
    leases: Mutex<HashMap<String, (Instant, &'static str)>>,
    /// Worker id → last lease request.
    seen: Mutex<HashMap<String, Instant>>,
}

fn kind_name(k: &deliverables_spec::TaskKind) -> &'static str {
    match k {
        deliverables_spec::TaskKind::Preflight { .. } => "preflight",
        deliverables_spec::TaskKind::Analyze { .. } => "analyze",
        deliverables_spec::TaskKind::Render { .. } => "render",
        deliverables_spec::TaskKind::Manifest { .. } => "manifest",
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("stemforge");
        let tasks = Family::<StateLabel, Gauge>::default();
        registry.register(
            "tasks",
            "Tasks of every job in the store, by state",
            tasks.clone(),
        );
        let jobs = Family::<StateLabel, Gauge>::default();
        registry.register("jobs", "Jobs in the store, by state", jobs.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Tasks queued to run (ready now or waiting out a retry backoff): what worker autoscaling follows",
            queue_depth.clone(),
        );
        let workers = Gauge::default();
        registry.register(
            "workers_connected",
            "Workers that asked for work within one lease period or hold a lease",
            workers.clone(),
        );
        let lease_expiries = Counter::default();
        registry.register(
            "lease_expiries",
            "Attempts whose lease lapsed (worker lost or stalled)",
            lease_expiries.clone(),
        );
        let retries = Counter::default();
        registry.register(
            "task_retries",
            "Attempts beyond each task's first, hand-backs excluded",
            retries.clone(),
        );
        let handed_back = Counter::default();
        registry.register(
            "leases_handed_back",
            "Attempts a worker gave back unfinished while shutting down",
            handed_back.clone(),
        );
        let durations = Family::<EndLabel, Histogram>::new_with_constructor(|| {
            // 50 ms to ~27 min.
            Histogram::new(exponential_buckets(0.05, 2.0, 16))
        });
        registry.register(
            "task_duration_seconds",
            "Wall time of an attempt from lease to report, by task kind and outcome",
            durations.clone(),
        );
        let audio_seconds = Counter::<f64, AtomicU64>::default();
        registry.register(
            "audio_seconds_rendered",
            "Seconds of audio written to deliverable files",
            audio_seconds.clone(),
        );
        Metrics {
            registry,
            tasks,
            jobs,
            queue_depth,
            workers,
            lease_expiries,
            retries,
            handed_back,
            durations,
            audio_seconds,
            exported: Mutex::new((0, 0, 0)),
            leases: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub fn worker_polled(&self, worker: &str) {
        if let Ok(mut m) = self.seen.lock() {
            let now = Instant::now();
            m.insert(worker.to_string(), now);
            if m.len() > 10_000 {
                m.retain(|_, at| now.duration_since(*at) < Duration::from_secs(3600));
            }
        }
    }

    pub fn leased(&self, lease_id: &str, kind: &deliverables_spec::TaskKind) {
        if let Ok(mut m) = self.leases.lock() {
            let now = Instant::now();
            // Leases that lapsed are never reported: forget them after a day.
            if m.len() > 10_000 {
                m.retain(|_, (at, _)| now.duration_since(*at) < Duration::from_secs(86_400));
            }
            m.insert(lease_id.to_string(), (now, kind_name(kind)));
        }
    }

    /// An attempt ended with a report. For a succeeded render, `result_json`
    /// gives the seconds of audio it wrote.
    pub fn ended(&self, lease_id: &str, how: Ended, result_json: Option<&str>) {
        let started = self.leases.lock().ok().and_then(|mut m| m.remove(lease_id));
        if let Some((at, kind)) = started {
            self.durations
                .get_or_create(&EndLabel {
                    kind: kind.to_string(),
                    outcome: how.name().to_string(),
                })
                .observe(at.elapsed().as_secs_f64());
        }
        if let Some(r) = result_json {
            let secs = rendered_seconds(r);
            if secs > 0.0 {
                self.audio_seconds.inc_by(secs);
            }
        }
    }

    /// Brings the store-derived metrics up to date and encodes everything.
    /// `jobs`: every job's state and its tasks' tally; `leased`: the tasks
    /// leased now (their holders count as connected).
    pub fn render(
        &self,
        jobs: &[(JobState, Tally)],
        leased: &[TaskRecord],
        lease_ms: i64,
    ) -> String {
        let mut all = Tally::default();
        for (_, t) in jobs {
            all.merge(t);
        }
        let by_state = all.states.map(|n| n as i64);
        let (expiries, retries, handed) = (all.lease_expiries, all.retries, all.handed_back);
        let holders: BTreeSet<&str> = leased
            .iter()
            .filter_map(|t| t.worker_id.as_deref())
            .collect();
        for (s, n) in TaskState::ALL.iter().zip(by_state) {
            self.tasks
                .get_or_create(&StateLabel {
                    state: s.as_str().to_string(),
                })
                .set(n);
        }
        self.queue_depth.set(by_state[1]);
        for s in JobState::ALL {
            let n = jobs.iter().filter(|(j, _)| *j == s).count() as i64;
            self.jobs
                .get_or_create(&StateLabel {
                    state: s.as_str().to_string(),
                })
                .set(n);
        }
        let window = Duration::from_millis(lease_ms.max(0) as u64);
        let connected = self.seen.lock().map_or(0, |m| {
            let now = Instant::now();
            let mut ids: BTreeSet<&str> = m
                .iter()
                .filter(|(_, at)| now.duration_since(**at) <= window)
                .map(|(w, _)| w.as_str())
                .collect();
            ids.extend(holders.iter().copied());
            ids.len()
        });
        self.workers.set(connected as i64);
        if let Ok(mut last) = self.exported.lock() {
            // Counters only grow: export the store's totals as increments.
            self.lease_expiries.inc_by(expiries.saturating_sub(last.0));
            self.retries.inc_by(retries.saturating_sub(last.1));
            self.handed_back.inc_by(handed.saturating_sub(last.2));
            *last = (
                expiries.max(last.0),
                retries.max(last.1),
                handed.max(last.2),
            );
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out = "# encoding failed\n".to_string();
        }
        out
    }
}

/// Seconds of audio in a render result.
fn rendered_seconds(result_json: &str) -> f64 {
    serde_json::from_str::<PackResult>(result_json)
        .map_or(0.0, |r| r.audio_seconds())
        .max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_seconds_sums_every_output() {
        let output = |seconds: f64| {
            serde_json::json!({
                "variant": "stems", "role": null, "gain_db": 0.0, "ceiling_trim_db": 0.0,
                "level_policy": "matched", "mode": "linked_stem",
                "measurement": { "integrated_lufs": null, "loudness_range_lu": null,
                    "true_peak_dbtp": null, "sample_peak_dbfs": null, "max_momentary_lufs": null,
                    "max_short_term_lufs": null, "true_peak_method": "" },
                "file": { "path": "a.wav", "sha256": "", "audio_sha256": "", "bytes": 0,
                    "format": "wav", "codec": "pcm_s24le", "sample_rate": 48000, "bit_depth": 24,
                    "sample_format": "int", "channels": 2, "frames": 0, "duration_s": seconds },
            })
        };
        let r = serde_json::json!({
            "title": "t",
            "renders": [
                { "title": "t", "variant": "stems", "description": "",
                  "outputs": [output(12.5), output(12.5)] },
                { "title": "t", "variant": "full", "description": "",
                  "outputs": [output(12.5)] },
            ],
        });
        assert_eq!(rendered_seconds(&r.to_string()), 37.5);
        assert_eq!(rendered_seconds("not json"), 0.0);
    }

    #[test]
    fn exposition_names_what_dashboards_query() {
        let m = Metrics::new();
        m.worker_polled("w1");
        m.leased(
            "lease-1",
            &deliverables_spec::TaskKind::Manifest { bundle: None },
        );
        m.ended("lease-1", Ended::Succeeded, None);
        let text = m.render(&[], &[], 30_000);
        for name in [
            "stemforge_tasks{state=\"queued\"} 0",
            "stemforge_queue_depth 0",
            "stemforge_workers_connected 1",
            "stemforge_lease_expiries_total 0",
            "stemforge_task_retries_total 0",
            "stemforge_audio_seconds_rendered_total 0.0",
            "# TYPE stemforge_task_duration_seconds histogram",
            "stemforge_task_duration_seconds_count{kind=\"manifest\",outcome=\"succeeded\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
