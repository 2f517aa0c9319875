//! The cluster end to end, with real processes: a `stemforge coordinator`
//! over its SQLite job store, `stemforge worker` processes, and the client
//! commands (`submit`, `status --json`, `watch`, `cancel`) — and what a
//! cluster meets: workers and coordinators killed with SIGKILL, a second
//! coordinator on the same data directory, reports under lapsed leases, bad
//! and vanishing inputs, priorities and cancellation.
//!
//! The audio a cluster delivers is compared with a local `stemforge render`
//! of the same spec: the data-chunk checksums must be identical.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};
use stemforge_proto::v1::tasks_client::TasksClient;
use stemforge_proto::v1::{
    CompleteTaskRequest, FailTaskRequest, HeartbeatRequest, LeaseRef, LeaseTaskRequest, TaskLease,
};
use stemforge_testkit::cluster::{Cluster, metric_values, run, tasks};
use stemforge_testkit::signal::white;
use stemforge_testkit::{outputs, read_json, scratch, text};

// ---------------------------------------------------------------------------
// Material: a small synthetic catalog, written once per test binary.

const RATE: u32 = 48_000;
/// Lease and heartbeat of the test clusters (both coordinator and workers get them).
const LEASE_MS: u64 = 1_500;
const HEARTBEAT_MS: u64 = 250;
const BACKOFF_BASE_MS: u64 = 300;
const MAX_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy)]
struct TitleDef {
    name: &'static str,
    seed: u32,
    seconds: f64,
}

impl TitleDef {
    /// Even seeds: drums, bass and vocals; odd: drums and vocals.
    fn roles(&self) -> &'static [&'static str] {
        if self.seed.is_multiple_of(2) {
            &["drums", "bass", "vocals"]
        } else {
            &["drums", "vocals"]
        }
    }

    fn file(&self, role: &str) -> String {
        format!("{}_{role}.wav", self.name.to_lowercase())
    }
}

const FAST: [TitleDef; 6] = [
    TitleDef {
        name: "Alpha",
        seed: 0,
        seconds: 3.0,
    },
    TitleDef {
        name: "Bravo",
        seed: 1,
        seconds: 3.0,
    },
    TitleDef {
        name: "Charlie",
        seed: 2,
        seconds: 3.0,
    },
    TitleDef {
        name: "Delta",
        seed: 3,
        seconds: 3.0,
    },
    TitleDef {
        name: "Echo",
        seed: 4,
        seconds: 3.0,
    },
    TitleDef {
        name: "Foxtrot",
        seed: 5,
        seconds: 3.0,
    },
];

/// Long enough that a worker is surely mid-task while its files are written.
const SLOW: TitleDef = TitleDef {
    name: "Slow",
    seed: 8,
    seconds: 30.0,
};

const SOLO: TitleDef = TitleDef {
    name: "Solo",
    seed: 7,
    seconds: 3.0,
};

/// Bytes of one 24-bit stereo output of the slow title (data chunk only).
const SLOW_OUTPUT_BYTES: u64 = 30 * 48_000 * 2 * 3;

/// Sample `i` of a stem: a different tempo, key and pan per title.
fn sample(role: &str, seed: u32, i: usize) -> (f64, f64) {
    use std::f64::consts::TAU;
    let t = i as f64 / f64::from(RATE);
    let k = f64::from(seed);
    match role {
        "drums" => {
            let beat = 0.5 - 0.02 * k;
            let tb = t % beat;
            let kick = 0.5 * (-tb * 12.0).exp() * (TAU * (50.0 + 4.0 * k) * tb).sin();
            let th = t % (beat / 2.0);
            let hat = 0.06 * (-th * 60.0).exp() * white(i as u64, u64::from(seed) << 40);
            (kick + hat, kick + 0.8 * hat)
        }
        "bass" => {
            let notes = [1.0, 1.5, 1.25, 1.335];
            let f = 41.2 * (1.0 + k / 8.0) * notes[(t as usize + seed as usize) % 4];
            let x = 0.25 * (TAU * f * t).sin();
            (x, x)
        }
        _ => {
            let f = 220.0 + 25.0 * k;
            let x = 0.15
                * (TAU * f * t + 3.0 * (TAU * 5.0 * t).sin()).sin()
                * (0.6 + 0.4 * (TAU * 0.3 * t).sin());
            let pan = 0.1 * (k - 4.0);
            (x * (1.0 - pan), x * (1.0 + pan))
        }
    }
}

fn write_title(dir: &Path, t: &TitleDef) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let code = |x: f64| (x * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
    let n = (t.seconds * f64::from(RATE)).round() as usize;
    for role in t.roles() {
        let mut w = hound::WavWriter::create(dir.join(t.file(role)), spec).expect("create stem");
        for i in 0..n {
            let (l, r) = sample(role, t.seed, i);
            w.write_sample(code(l)).expect("write sample");
            w.write_sample(code(r)).expect("write sample");
        }
        w.finalize().expect("finalize stem");
    }
}

/// A spec rendering `full`, `instrumental` and `stems` of each title, through
/// the loudness stage and a true-peak limiter.
fn spec_text(titles: &[TitleDef]) -> String {
    let mut s = String::from(
        r#"schema_version = 1

[delivery]
profile = "ebu-r128"
bit_depth = 24
output_dir = "deliverables"

[graph.master]
chain = [{ node = "loudness" }, { node = "limiter" }]

[variants.full]
[variants.instrumental]
[variants.stems]
"#,
    );
    for t in titles {
        let _ = write!(s, "\n[[titles]]\nname = \"{}\"\nstems = [\n", t.name);
        for r in t.roles() {
            let _ = writeln!(s, "  {{ file = \"{}\", role = \"{r}\" }},", t.file(r));
        }
        s.push_str("]\n");
    }
    s
}

struct Catalog {
    dir: PathBuf,
    /// The six 3 s titles: 25 tasks.
    fast: PathBuf,
    /// The 30 s title first, then five of the fast ones: 25 tasks.
    slow: PathBuf,
    /// One 3 s title: 5 tasks.
    solo: PathBuf,
}

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let dir = scratch("cluster-catalog");
        for t in FAST.iter().chain([&SLOW, &SOLO]) {
            write_title(&dir, t);
        }
        let write = |name: &str, titles: &[TitleDef]| {
            let p = dir.join(name);
            std::fs::write(&p, spec_text(titles)).expect("write spec");
            p
        };
        let mut slow = vec![SLOW];
        slow.extend_from_slice(&FAST[..5]);
        Catalog {
            fast: write("fast.toml", &FAST),
            slow: write("slow.toml", &slow),
            solo: write("solo.toml", &[SOLO]),
            dir,
        }
    })
}

/// A private copy of the fast catalog (same spec text, so the same audio), to damage.
fn copy_fast_catalog(to: &Path) -> PathBuf {
    let c = catalog();
    std::fs::create_dir_all(to).expect("create catalog copy");
    for t in &FAST {
        for r in t.roles() {
            std::fs::copy(c.dir.join(t.file(r)), to.join(t.file(r))).expect("copy stem");
        }
    }
    let spec = to.join("fast.toml");
    std::fs::copy(&c.fast, &spec).expect("copy spec");
    spec
}

/// Output file → audio checksum of a local `stemforge render` of `spec`.
fn render_reference(spec: &Path, name: &str) -> BTreeMap<String, String> {
    let out = catalog().dir.join(format!("reference-{name}"));
    let started = Instant::now();
    let mut cmd = stemforge_testkit::command();
    cmd.arg("render")
        .arg(spec)
        .arg("--out")
        .arg(&out)
        .args(["--workers", "2"])
        .env("STEMFORGE_LOG", "warn")
        .current_dir(&catalog().dir);
    let o = run(cmd, Duration::from_secs(300));
    assert!(o.status.success(), "local render failed:\n{}", text(&o));
    eprintln!(
        "reference render of {name}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let map = audio_map(&read_json(&out.join("manifest.json")));
    // Only the checksums are needed: don't leave the audio behind.
    let _ = std::fs::remove_dir_all(&out);
    map
}

fn reference_fast() -> &'static BTreeMap<String, String> {
    static R: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    R.get_or_init(|| render_reference(&catalog().fast, "fast"))
}

fn reference_slow() -> &'static BTreeMap<String, String> {
    static R: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    R.get_or_init(|| render_reference(&catalog().slow, "slow"))
}

// ---------------------------------------------------------------------------
// Processes.

/// Runs a command to its end (stdout and stderr captured), killing it after `timeout`.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A cluster of processes with this file's timings (lease, heartbeat,
/// backoff, attempts), `env` on top.
fn start_cluster(name: &str, env: &[(&str, &str)]) -> Cluster {
    Cluster::builder(name)
        .envs([
            ("STEMFORGE_LEASE_MS", LEASE_MS.to_string()),
            ("STEMFORGE_HEARTBEAT_MS", HEARTBEAT_MS.to_string()),
            ("STEMFORGE_BACKOFF_BASE_MS", BACKOFF_BASE_MS.to_string()),
            ("STEMFORGE_BACKOFF_MAX_MS", "5000".to_string()),
            ("STEMFORGE_POLL_WAIT_MS", "300".to_string()),
            ("STEMFORGE_MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
        ])
        .envs(env.iter().copied())
        .start()
        .unwrap_or_else(|e| panic!("cluster {name}: {e}"))
}

// ---------------------------------------------------------------------------
// Reading results.

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn task_by_label<'a>(st: &'a Value, label: &str) -> &'a Value {
    tasks(st)
        .iter()
        .find(|t| t["label"] == label)
        .unwrap_or_else(|| panic!("no task `{label}` in {st:#}"))
}

fn task_by_id<'a>(st: &'a Value, id: &str) -> &'a Value {
    tasks(st)
        .iter()
        .find(|t| t["task_id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {st:#}"))
}

fn history(t: &Value) -> Vec<String> {
    t["history"]
        .as_array()
        .map(|h| h.iter().map(|l| str_of(l).to_string()).collect())
        .unwrap_or_default()
}

/// When a task succeeded, from its history line `attempt N: succeeded on W at MS`.
fn succeeded_at(t: &Value) -> Option<i64> {
    history(t)
        .iter()
        .rev()
        .find(|l| l.contains(": succeeded on "))
        .and_then(|l| l.rsplit(" at ").next())
        .and_then(|ms| ms.trim().parse().ok())
}

/// Output file → audio checksum, for every output the manifest lists with a file.
fn audio_map(manifest: &Value) -> BTreeMap<String, String> {
    outputs(manifest)
        .iter()
        .filter(|o| !o["file"].is_null())
        .map(|o| {
            (
                str_of(&o["file"]["path"]).to_string(),
                str_of(&o["file"]["audio_sha256"]).to_string(),
            )
        })
        .collect()
}

/// SHA-256 of a RIFF/WAVE file's `data` chunk, parsed here (not by our reader).
fn data_sha256(bytes: &[u8], name: &str) -> String {
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{name} is not a RIFF/WAVE file"
    );
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        if &bytes[at..at + 4] == b"data" {
            let body = bytes
                .get(at + 8..at + 8 + size)
                .unwrap_or_else(|| panic!("{name}: data chunk runs past the end of the file"));
            return hex::encode(Sha256::digest(body));
        }
        at += 8 + size + (size & 1);
    }
    panic!("{name} has no data chunk")
}

/// Temporary files (`.NAME.<pid>-<n>.partial`) in a folder whose names start
/// with `prefix` after the dot, with their sizes.
fn partials(dir: &Path, prefix: &str) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (name.starts_with(&format!(".{prefix}")) && name.ends_with(".partial"))
                        .then_some((name, size))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Checks the delivered folder against its manifest: every listed output
/// exists under its final name with the listed size, file checksum and
/// audio checksum, and no other `.wav` sits there under a final name.
/// Returns the temporary files left in the folder.
fn check_files(out: &Path, manifest: &Value) -> Vec<(String, u64)> {
    let mut listed = BTreeSet::new();
    for o in outputs(manifest) {
        let f = &o["file"];
        if f.is_null() {
            continue;
        }
        let name = str_of(&f["path"]);
        let bytes = std::fs::read(out.join(name))
            .unwrap_or_else(|e| panic!("{name} is in the manifest but cannot be read: {e}"));
        assert_eq!(
            f["bytes"].as_u64(),
            Some(bytes.len() as u64),
            "{name}: size"
        );
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            str_of(&f["sha256"]),
            "{name}: file checksum"
        );
        assert_eq!(
            data_sha256(&bytes, name),
            str_of(&f["audio_sha256"]),
            "{name}: audio checksum"
        );
        listed.insert(name.to_string());
    }
    for e in std::fs::read_dir(out).expect("read the output folder") {
        let name = e.expect("entry").file_name().to_string_lossy().to_string();
        if !name.starts_with('.') && name.ends_with(".wav") {
            assert!(
                listed.contains(&name),
                "{name} is in the output folder under a final name but not in the manifest"
            );
        }
    }
    partials(out, "")
}

/// The manifest a finished job wrote, after checking status points at it.
fn manifest_of(st: &Value, out: &Path) -> Value {
    let path = std::fs::canonicalize(out)
        .expect("output folder")
        .join("manifest.json");
    assert_eq!(Path::new(str_of(&st["manifest_path"])), path.as_path());
    read_json(&path)
}

fn assert_same_audio(got: &BTreeMap<String, String>, want: &BTreeMap<String, String>) {
    assert_eq!(
        got.len(),
        want.len(),
        "outputs: {got:#?}\nreference: {want:#?}"
    );
    for (file, sha) in want {
        assert_eq!(
            got.get(file),
            Some(sha),
            "{file}: audio differs from the local render"
        );
    }
}

/// Waits until a render of the slow title is leased to `worker` and its
/// temporary files exist but hold less than 40 % of their audio: the worker
/// is surely in the middle of the task. Returns the task and the files.
fn slow_render_in_flight(
    c: &Cluster,
    job: &str,
    worker: &str,
    out: &Path,
) -> (Value, Vec<(String, u64)>) {
    let leased_to = |st: &Value| {
        tasks(st)
            .iter()
            .find(|t| {
                str_of(&t["label"]).starts_with("render Slow/")
                    && t["state"] == "leased"
                    && t["worker_id"] == worker
            })
            .cloned()
    };
    c.wait_for(
        &format!("a render of Slow in flight on {worker}"),
        Duration::from_secs(90),
        || {
            let t = leased_to(&c.try_status(job)?)?;
            let files = partials(out, "Slow_");
            if files.is_empty() || files.iter().any(|(_, n)| *n > SLOW_OUTPUT_BYTES * 2 / 5) {
                return None;
            }
            // Still the same task and attempt after looking at the files.
            let again = leased_to(&c.try_status(job)?)?;
            (again["task_id"] == t["task_id"] && again["attempt"] == t["attempt"])
                .then_some((t, files))
        },
    )
}

/// Waits until the job has a few tasks done and a render of Slow leased;
/// returns that status (the moment to interrupt the coordinator).
fn some_done_and_slow_in_flight(c: &Cluster, job: &str) -> Value {
    c.wait_for(
        "a few tasks done and a render of Slow in flight",
        Duration::from_secs(90),
        || {
            let st = c.try_status(job)?;
            let done = tasks(&st)
                .iter()
                .filter(|t| t["state"] == "succeeded")
                .count();
            let slow = tasks(&st)
                .iter()
                .any(|t| str_of(&t["label"]).starts_with("render Slow/") && t["state"] == "leased");
            (st["state"] == "running" && done >= 3 && slow).then_some(st)
        },
    )
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn a_catalog_on_three_worker_processes_matches_a_local_render() {
    let cat = catalog();
    let reference = reference_fast();
    let started = Instant::now();
    let mut c = start_cluster("three-workers", &[]);
    for w in ["w1", "w2", "w3"] {
        c.start_worker(w);
    }
    let out = c.dir().join("out");
    let job = c.submit(&cat.fast, &out, &["--label", "catalog"]);
    // Scrape while the job runs: work is seen queued or leased, and the
    // three workers connected.
    let mid_run = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let scraper = {
        let (probe, seen) = (c.metrics_scraper(), mid_run.clone());
        std::thread::spawn(move || {
            for _ in 0..200 {
                let v = metric_values(&probe());
                let busy =
                    v["stemforge_tasks{state=\"queued\"}"] + v["stemforge_tasks{state=\"leased\"}"];
                if busy > 0.0 && v["stemforge_workers_connected"] == 3.0 {
                    *seen.lock().expect("lock") += 1;
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let o = c.cli(&["watch", &job]);
    let _ = scraper.join();
    assert!(o.status.success(), "watch:\n{}\n{}", text(&o), c.logs());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("job {job} succeeded")),
        "{}",
        text(&o)
    );
    let st = c.status(&job);
    assert_eq!(st["state"], "succeeded");
    assert_eq!(st["all_outputs_pass"], true);
    assert_eq!(st["label"], "catalog");
    // Per title: preflight, analysis, its pack; then the manifest.
    assert_eq!(tasks(&st).len(), FAST.len() * 3 + 1, "{st:#}");
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks(&st) {
        assert_eq!(t["state"], "succeeded", "{t:#}");
        assert_eq!(t["attempt"], 1, "every task ran once: {t:#}");
        let h = history(t);
        assert_eq!(h.len(), 1, "{t:#}");
        let w = str_of(&t["worker_id"]).to_string();
        assert!(
            h[0].starts_with(&format!("attempt 1: succeeded on {w} at ")),
            "{t:#}"
        );
        *per_worker.entry(w).or_default() += 1;
    }
    assert!(
        per_worker.len() > 1
            && per_worker
                .keys()
                .all(|w| ["w1", "w2", "w3"].contains(&w.as_str())),
        "tasks should spread over the workers: {per_worker:?}"
    );
    let m = manifest_of(&st, &out);
    assert_eq!(m["job_id"], job.as_str());
    let temps = check_files(&out, &m);
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
    assert_same_audio(&audio_map(&m), reference);
    // The coordinator's metrics agree with the job's final state.
    let v = metric_values(&c.scrape());
    let n = tasks(&st).len() as f64;
    assert_eq!(v["stemforge_tasks{state=\"succeeded\"}"], n, "{v:?}");
    for other in [
        "blocked",
        "queued",
        "leased",
        "failed",
        "skipped",
        "cancelled",
    ] {
        assert_eq!(
            v[&format!("stemforge_tasks{{state=\"{other}\"}}")],
            0.0,
            "{other}: {v:?}"
        );
    }
    assert_eq!(v["stemforge_jobs{state=\"succeeded\"}"], 1.0);
    assert_eq!(v["stemforge_queue_depth"], 0.0);
    assert_eq!(v["stemforge_task_retries_total"], 0.0);
    assert_eq!(v["stemforge_lease_expiries_total"], 0.0);
    let timed: f64 = v
        .iter()
        .filter(|(k, _)| k.starts_with("stemforge_task_duration_seconds_count{"))
        .map(|(_, x)| x)
        .sum();
    assert_eq!(timed, n, "every attempt timed once: {v:?}");
    let written: f64 = outputs(&m)
        .iter()
        .filter_map(|o| o["file"]["duration_s"].as_f64())
        .sum();
    let rendered = v["stemforge_audio_seconds_rendered_total"];
    assert!(
        written > 0.0 && (rendered - written).abs() < 1e-6 * written,
        "audio seconds: metrics {rendered}, manifest {written}"
    );
    assert!(
        *mid_run.lock().expect("lock") > 0,
        "a scrape during the render saw work queued or leased"
    );
    eprintln!(
        "three workers: {} outputs identical to the local render, tasks per worker {per_worker:?}, {:.1} s",
        reference.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_worker_killed_mid_render_loses_its_lease_and_another_finishes_the_job() {
    let cat = catalog();
    let reference = reference_slow();
    let started = Instant::now();
    let mut c = start_cluster("kill-worker", &[]);
    let pid_a = c.start_worker("A");
    let out = c.dir().join("out");
    let job = c.submit(&cat.slow, &out, &[]);
    let (victim, files) = slow_render_in_flight(&c, &job, "A", &out);
    c.kill_worker("A");
    let killed_at = Instant::now();
    eprintln!(
        "killed worker A (pid {pid_a}) during `{}` attempt {}, its files: {files:?}",
        str_of(&victim["label"]),
        victim["attempt"]
    );
    c.start_worker("B");
    let st = c.wait_job(&job, Duration::from_secs(120));
    assert_eq!(st["state"], "succeeded", "{st:#}");
    assert_eq!(st["all_outputs_pass"], true);

    let id = str_of(&victim["task_id"]);
    for t in tasks(&st) {
        assert_eq!(t["state"], "succeeded", "{t:#}");
        if t["task_id"] == id {
            continue;
        }
        assert_eq!(t["attempt"], 1, "only the killed task runs twice: {t:#}");
    }
    let t = task_by_id(&st, id);
    assert_eq!(t["attempt"], 2, "{t:#}");
    assert_eq!(t["worker_id"], "B", "{t:#}");
    let h = history(t);
    assert_eq!(h.len(), 2, "{t:#}");
    assert!(
        h[0].starts_with("attempt 1 on A: lease expired") && h[0].contains("retry in"),
        "{t:#}"
    );
    assert!(h[1].starts_with("attempt 2: succeeded on B at "), "{t:#}");

    // Nothing half-written under a final name: every file in the manifest
    // is whole and matches its checksums, nothing else is there.
    let m = manifest_of(&st, &out);
    let temps = check_files(&out, &m);
    assert_same_audio(&audio_map(&m), reference);
    // The killed worker could not remove its temporary files; the attempt
    // that took over the task removed them before writing its own.
    assert!(
        !files.is_empty(),
        "the killed worker had temporary files before the kill"
    );
    assert!(
        temps.is_empty(),
        "temporary files left in the output folder: {temps:?} (killed worker pid {pid_a})"
    );
    eprintln!(
        "kill -9 of a worker: job done {:.1} s after the kill, {:.1} s in all",
        killed_at.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_coordinator_killed_mid_job_resumes_from_its_database_without_rerunning_finished_tasks() {
    let cat = catalog();
    let reference = reference_slow();
    let started = Instant::now();
    let mut c = start_cluster("kill-coordinator", &[]);
    c.start_worker("w1");
    c.start_worker("w2");
    let out = c.dir().join("out");
    let job = c.submit(&cat.slow, &out, &[]);
    let watch = c.spawn_watch(&job);
    let before = some_done_and_slow_in_flight(&c, &job);
    c.kill_coordinator();
    std::thread::sleep(Duration::from_millis(300));
    c.restart_coordinator();
    let st = c.wait_job(&job, Duration::from_secs(120));
    assert_eq!(st["state"], "succeeded", "{st:#}");
    assert_eq!(st["all_outputs_pass"], true);
    let mut in_flight = Vec::new();
    for b in tasks(&before) {
        let a = task_by_id(&st, str_of(&b["task_id"]));
        assert_eq!(a["state"], "succeeded", "{a:#}");
        match str_of(&b["state"]) {
            "succeeded" => {
                assert_eq!(
                    a["attempt"], b["attempt"],
                    "ran again after the restart: {a:#}"
                );
                assert_eq!(a["history"], b["history"], "{a:#}");
            }
            "leased" => in_flight.push(format!(
                "{} (attempt {} → {})",
                str_of(&a["label"]),
                b["attempt"],
                a["attempt"]
            )),
            _ => {}
        }
    }
    let done_before = tasks(&before)
        .iter()
        .filter(|t| t["state"] == "succeeded")
        .count();
    assert!(c.dir().join("data/jobs.sqlite").is_file());
    assert!(
        c.worker_alive("w1") && c.worker_alive("w2"),
        "workers keep running"
    );
    assert!(
        c.log("coordinator-2.log").contains("coordinator started"),
        "{}",
        c.logs()
    );
    // The watcher followed the job across the restart and saw it succeed.
    let status = c.wait_other(watch, Duration::from_secs(30));
    let watch_out = c.log("watch.out");
    assert!(
        status.is_some_and(|s| s.success()) && watch_out.contains("succeeded"),
        "watch: {status:?}\n{watch_out}\n{}",
        c.log("watch.log")
    );
    let m = manifest_of(&st, &out);
    let temps = check_files(&out, &m);
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
    assert_same_audio(&audio_map(&m), reference);
    eprintln!(
        "kill -9 of the coordinator with {done_before} tasks done, in flight {in_flight:?}: job resumed, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_second_coordinator_on_the_same_data_dir_exits_at_once_and_a_killed_ones_lock_does_not_block() {
    let mut c = start_cluster("one-per-data-dir", &[]);
    let first = c.coordinator_pid();
    let data = c.data_dir();
    let mut second = stemforge_testkit::command();
    second
        .args(["coordinator", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("STEMFORGE_LOG", "warn")
        .env("NO_COLOR", "1");
    let t = Instant::now();
    let o = run(second, Duration::from_secs(10));
    let took = t.elapsed();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(took < Duration::from_secs(5), "took {took:?}\n{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {first}"))
            && err.contains(&data.display().to_string())
            && err.contains("--data-dir"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("listening"),
        "{}",
        text(&o)
    );
    // The refused process changed nothing: the first still serves.
    let h = c.cli(&["health"]);
    assert!(h.status.success(), "{}\n{}", text(&h), c.logs());
    // kill -9 leaves the lock file behind; the kernel released the lock.
    c.kill_coordinator();
    assert!(data.join("coordinator.lock").is_file());
    c.restart_coordinator();
    let lock = std::fs::read_to_string(data.join("coordinator.lock")).expect("read lock file");
    assert!(
        lock.contains(&format!("pid {}", c.coordinator_pid())),
        "{lock}"
    );
    eprintln!(
        "second coordinator on the same data dir refused in {:.0} ms",
        took.as_secs_f64() * 1e3
    );
}

#[test]
fn a_report_under_a_lapsed_lease_is_refused() {
    let cat = catalog();
    let c = start_cluster("stale-lease", &[("STEMFORGE_LEASE_MS", "1000")]);
    let out = c.dir().join("out");
    let job = c.submit(&cat.solo, &out, &[]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut client = rt
        .block_on(TasksClient::connect(c.url().to_string()))
        .expect("connect to the Tasks service");
    let mut lease = |worker: &str| -> TaskLease {
        rt.block_on(client.lease_task(LeaseTaskRequest {
            worker_id: worker.into(),
            wait_ms: 5_000,
            draining: false,
        }))
        .expect("lease_task")
        .into_inner()
        .lease
        .unwrap_or_else(|| panic!("no task leased to {worker}"))
    };
    let l1 = lease("a");
    assert_eq!(l1.job_id, job);
    assert_eq!(l1.attempt, 1);
    let t = task_by_id(&c.status(&job), &l1.task_id).clone();
    assert_eq!(t["label"], "preflight Solo");
    assert_eq!(t["state"], "leased");
    assert_eq!(t["worker_id"], "a");

    // Worker "a" goes silent: the sweeper requeues the task once the lease lapses.
    let t = c.wait_for(
        "the lapsed lease to be requeued",
        Duration::from_secs(15),
        || {
            let st = c.try_status(&job)?;
            let t = task_by_id(&st, &l1.task_id).clone();
            (t["state"] == "queued").then_some(t)
        },
    );
    assert!(now_ms() >= l1.expires_unix_ms);
    assert_eq!(
        history(&t),
        [format!(
            "attempt 1 on a: lease expired (worker lost or stalled); retry in {BACKOFF_BASE_MS} ms"
        )]
    );
    let l2 = lease("b");
    assert_eq!((l2.task_id.as_str(), l2.attempt), (l1.task_id.as_str(), 2));
    assert_ne!(l2.lease_id, l1.lease_id);

    let lref = |l: &TaskLease| LeaseRef {
        job_id: l.job_id.clone(),
        task_id: l.task_id.clone(),
        lease_id: l.lease_id.clone(),
        attempt: l.attempt,
    };
    // Everything under the first lease is refused.
    let mut tc = rt
        .block_on(TasksClient::connect(c.url().to_string()))
        .expect("connect");
    let refused = |r: Result<(), tonic::Status>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{what}: {e:?}");
        assert!(e.message().contains("stale lease"), "{what}: {e:?}");
    };
    refused(
        rt.block_on(tc.complete_task(CompleteTaskRequest {
            lease: Some(lref(&l1)),
            result_json: "{}".into(),
        }))
        .map(|_| ()),
        "complete under the lapsed lease",
    );
    refused(
        rt.block_on(tc.heartbeat(HeartbeatRequest {
            lease: Some(lref(&l1)),
            progress: 0.5,
            draining: false,
        }))
        .map(|_| ()),
        "heartbeat under the lapsed lease",
    );
    refused(
        rt.block_on(tc.fail_task(FailTaskRequest {
            lease: Some(lref(&l1)),
            error: "late failure".into(),
            retryable: false,
            shared_cause: false,
        }))
        .map(|_| ()),
        "fail under the lapsed lease",
    );
    // ...and changed nothing.
    let st = c.status(&job);
    let t = task_by_id(&st, &l1.task_id);
    assert_eq!(
        (&t["state"], &t["attempt"], &t["worker_id"]),
        (&Value::from("leased"), &Value::from(2), &Value::from("b")),
        "{t:#}"
    );
    assert_eq!(history(t).len(), 1, "{t:#}");
    // The current lease works.
    let hb = rt
        .block_on(tc.heartbeat(HeartbeatRequest {
            lease: Some(lref(&l2)),
            progress: 0.25,
            draining: false,
        }))
        .expect("heartbeat under the current lease")
        .into_inner();
    assert!(!hb.cancel);
    assert!(hb.expires_unix_ms > now_ms(), "{hb:?}");
    // Cancelled: the holder learns it at its heartbeat and cannot complete.
    let o = c.cli(&["cancel", &job]);
    assert!(o.status.success(), "{}", text(&o));
    let hb = rt
        .block_on(tc.heartbeat(HeartbeatRequest {
            lease: Some(lref(&l2)),
            progress: 0.5,
            draining: false,
        }))
        .expect("heartbeat after cancel")
        .into_inner();
    assert!(hb.cancel, "{hb:?}");
    refused(
        rt.block_on(tc.complete_task(CompleteTaskRequest {
            lease: Some(lref(&l2)),
            result_json: "{}".into(),
        }))
        .map(|_| ()),
        "complete after cancel",
    );
    let st = c.status(&job);
    assert_eq!(st["state"], "cancelled");
    for t in tasks(&st) {
        assert_eq!(t["state"], "cancelled", "{t:#}");
    }
}

#[test]
fn a_corrupt_stem_fails_its_title_at_once_and_the_rest_is_delivered() {
    let reference = reference_fast();
    let mut c = start_cluster("corrupt-stem", &[]);
    let spec = copy_fast_catalog(&c.dir().join("catalog"));
    // Garbage under a stem's name (the file exists and is not empty, so the
    // spec is accepted; the worker finds out).
    let bad = spec.with_file_name(FAST[1].file("vocals"));
    let garbage: Vec<u8> = (0..100_000u64)
        .map(|i| (white(i, 99 << 40) * 127.0) as i8 as u8)
        .collect();
    std::fs::write(&bad, garbage).expect("overwrite stem");
    c.start_worker("w1");
    c.start_worker("w2");
    let out = c.dir().join("out");
    let job = c.submit(&spec, &out, &[]);
    let o = c.cli(&["watch", &job]);
    assert_eq!(o.status.code(), Some(1), "watch:\n{}", text(&o));
    let st = c.status(&job);
    assert_eq!(st["state"], "failed", "{st:#}");
    assert_eq!(st["all_outputs_pass"], false);

    let a = task_by_label(&st, "analyze Bravo");
    assert_eq!(a["state"], "failed", "{a:#}");
    assert_eq!(a["attempt"], 1, "bad input is not retried: {a:#}");
    let err = str_of(&a["error"]);
    assert!(
        err.contains("is not a readable audio file") && err.contains("bravo_vocals.wav"),
        "{err}"
    );
    let h = history(a);
    assert_eq!(h.len(), 1, "{a:#}");
    assert!(
        h[0].starts_with("attempt 1 on w") && h[0].ends_with("; failed for good"),
        "{a:#}"
    );
    for t in tasks(&st) {
        let label = str_of(&t["label"]);
        if label.starts_with("render Bravo/") {
            assert_eq!(t["state"], "skipped", "{t:#}");
            assert_eq!(t["attempt"], 0, "{t:#}");
        } else if label != "analyze Bravo" {
            assert_eq!(t["state"], "succeeded", "{t:#}");
            assert_eq!(t["attempt"], 1, "{t:#}");
        }
    }
    let m = manifest_of(&st, &out);
    assert_eq!(m["summary"]["titles_failed"], 1);
    assert_eq!(m["summary"]["all_pass"], false);
    let bravo = m["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .find(|t| t["name"] == "Bravo")
        .expect("Bravo is in the manifest");
    assert_eq!(bravo["status"], "failed");
    assert!(
        str_of(&bravo["error"]).contains("is not a readable audio file"),
        "{bravo:#}"
    );
    for o in bravo["outputs"].as_array().expect("outputs") {
        assert!(o["file"].is_null(), "{o:#}");
        assert_eq!(o["verdict"]["verdict"], "fail", "{o:#}");
    }
    let temps = check_files(&out, &m);
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
    // Same spec text, so the other titles' audio is the reference's.
    let want: BTreeMap<String, String> = reference
        .iter()
        .filter(|(f, _)| !f.starts_with("Bravo_"))
        .map(|(f, s)| (f.clone(), s.clone()))
        .collect();
    assert_same_audio(&audio_map(&m), &want);
}

#[test]
fn a_stem_missing_at_run_time_is_retried_with_growing_backoff_then_fails_its_title() {
    let mut c = start_cluster("missing-stem", &[]);
    let spec = copy_fast_catalog(&c.dir().join("catalog"));
    let out = c.dir().join("out");
    // Submitted while the file exists; gone when a worker gets to it: an
    // I/O failure that a retry could fix (a share that is remounting).
    let job = c.submit(&spec, &out, &[]);
    std::fs::remove_file(spec.with_file_name(FAST[3].file("vocals"))).expect("remove stem");
    c.start_worker("w1");
    c.start_worker("w2");
    let st = c.wait_job(&job, Duration::from_secs(60));
    assert_eq!(st["state"], "failed", "{st:#}");
    // Preflight is the first task to open the stems.
    let a = task_by_label(&st, "preflight Delta");
    let err = str_of(&a["error"]);
    assert!(
        err.contains("cannot open stem") && err.contains("delta_vocals.wav"),
        "{a:#}"
    );
    assert_eq!(a["state"], "failed", "{a:#}");
    let h = history(a);
    assert_eq!(
        (a["attempt"].as_u64(), h.len()),
        (Some(MAX_ATTEMPTS as u64), MAX_ATTEMPTS),
        "a missing file is retried STEMFORGE_MAX_ATTEMPTS times: {a:#}"
    );
    let mut backoffs = Vec::new();
    for (i, line) in h.iter().enumerate() {
        assert!(
            line.starts_with(&format!("attempt {} on w", i + 1)),
            "{line}"
        );
        if i + 1 < MAX_ATTEMPTS {
            let ms: u64 = line
                .rsplit("; retry in ")
                .next()
                .and_then(|r| r.strip_suffix(" ms"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no backoff in `{line}`"));
            backoffs.push(ms);
        } else {
            assert!(line.ends_with("; failed for good"), "{line}");
        }
    }
    assert_eq!(backoffs, [BACKOFF_BASE_MS, 2 * BACKOFF_BASE_MS]);
    for t in tasks(&st) {
        let label = str_of(&t["label"]);
        if !label.contains("Delta") {
            assert_eq!(t["state"], "succeeded", "{t:#}");
        }
    }
    let m = manifest_of(&st, &out);
    let delta = m["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .find(|t| t["name"] == "Delta")
        .expect("Delta is in the manifest");
    assert_eq!(delta["status"], "failed");
    assert!(
        str_of(&delta["error"]).contains("cannot open stem"),
        "{delta:#}"
    );
    assert!(check_files(&out, &m).is_empty());
    // Same spec text, so the other titles' audio is the reference's.
    let want: BTreeMap<String, String> = reference_fast()
        .iter()
        .filter(|(f, _)| !f.starts_with("Delta_"))
        .map(|(f, s)| (f.clone(), s.clone()))
        .collect();
    assert_same_audio(&audio_map(&m), &want);
}

#[test]
fn input_errors_in_several_titles_do_not_keep_the_only_worker_off_the_job() {
    // Failures that are the input's fault must not stop the one worker from
    // rendering the rest of the job and writing its manifest, even when they
    // add up to STEMFORGE_MAX_WORKER_FAILURES: two titles with corrupt stems
    // (bad input, one attempt each) and one whose stem vanishes after
    // submission (retried up to STEMFORGE_MAX_ATTEMPTS times).
    let mut c = start_cluster("bad-inputs", &[("STEMFORGE_MAX_WORKER_FAILURES", "3")]);
    let spec = copy_fast_catalog(&c.dir().join("catalog"));
    let bad = &FAST[1..4];
    for t in &bad[..2] {
        std::fs::write(spec.with_file_name(t.file("vocals")), vec![0x55u8; 50_000])
            .expect("overwrite stem");
    }
    let out = c.dir().join("out");
    let job = c.submit(&spec, &out, &[]);
    std::fs::remove_file(spec.with_file_name(bad[2].file("vocals"))).expect("remove stem");
    c.start_worker("w1");
    let st = c.wait_job(&job, Duration::from_secs(60));
    assert_eq!(st["state"], "failed", "{st:#}");
    for t in tasks(&st) {
        let label = str_of(&t["label"]);
        // Corrupt stems: preflight reports them, the analysis stops the
        // title. The vanished stem: preflight itself fails (I/O, retried).
        let corrupt = bad[..2].iter().any(|d| label.contains(d.name));
        let vanished = label.contains(bad[2].name);
        let want = match (corrupt, vanished, label.split(' ').next()) {
            (true, _, Some("preflight")) => "succeeded",
            (true, _, Some("analyze")) => "failed",
            (_, true, Some("preflight")) => "failed",
            (true, _, _) | (_, true, _) => "skipped",
            _ => "succeeded",
        };
        assert_eq!(t["state"], want, "{t:#}");
    }
    let m = manifest_of(&st, &out);
    assert_eq!(m["summary"]["titles_failed"], 3);
    assert!(check_files(&out, &m).is_empty());
}

#[test]
fn a_higher_priority_job_overtakes_the_queued_tasks_of_a_running_one() {
    let cat = catalog();
    let mut c = start_cluster("priority", &[]);
    c.start_worker("w1");
    let low = c.submit(&cat.fast, &c.dir().join("out-low"), &["--label", "low"]);
    c.wait_for(
        "the low-priority job to start",
        Duration::from_secs(30),
        || {
            let st = c.try_status(&low)?;
            tasks(&st)
                .iter()
                .any(|t| t["state"] == "leased" || t["state"] == "succeeded")
                .then_some(())
        },
    );
    let high = c.submit(
        &cat.solo,
        &c.dir().join("out-high"),
        &["--priority", "10", "--label", "high"],
    );
    let hs = c.wait_job(&high, Duration::from_secs(60));
    let ls = c.wait_job(&low, Duration::from_secs(120));
    assert_eq!(hs["state"], "succeeded", "{hs:#}");
    assert_eq!(ls["state"], "succeeded", "{ls:#}");
    assert_eq!(
        (&hs["priority"], &hs["label"]),
        (&Value::from(10), &Value::from("high"))
    );
    assert_eq!(
        (&ls["priority"], &ls["label"]),
        (&Value::from(0), &Value::from("low"))
    );
    let submitted = hs["submitted_unix_ms"].as_i64().expect("submitted");
    let high_times: Vec<i64> = tasks(&hs)
        .iter()
        .map(|t| succeeded_at(t).expect("succeeded at"))
        .collect();
    let high_done = *high_times.iter().max().expect("tasks");
    let mut low_after: Vec<i64> = tasks(&ls)
        .iter()
        .map(|t| succeeded_at(t).expect("succeeded at"))
        .filter(|&t| t > submitted)
        .collect();
    low_after.sort_unstable();
    assert!(
        low_after.len() >= 10,
        "the low job should have had most of its tasks left: {low_after:?}"
    );
    // With one worker, only the task it held when the high job arrived may
    // finish before the high job does.
    let overtaken = low_after.iter().filter(|&&t| t < high_done).count();
    assert!(
        overtaken <= 1,
        "{overtaken} low-priority tasks finished between the high job's submission ({submitted}) and its end ({high_done}): {low_after:?}"
    );
    eprintln!(
        "priority: high job done {} ms after submission; {} low tasks waited",
        high_done - submitted,
        low_after.len() - overtaken
    );
}

#[test]
fn cancel_stops_the_running_task_at_its_next_heartbeat_and_leaves_the_worker_idle() {
    let cat = catalog();
    let mut c = start_cluster("cancel", &[]);
    c.start_worker("w1");
    let out = c.dir().join("out");
    let job = c.submit(&cat.slow, &out, &[]);
    let (victim, files) = slow_render_in_flight(&c, &job, "w1", &out);
    let o = c.cli(&["cancel", &job]);
    let cancelled_at = Instant::now();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("job {job} cancelled")),
        "{}",
        text(&o)
    );
    let deadline = Duration::from_millis(2 * HEARTBEAT_MS + 1_000);
    let st = c.status(&job);
    assert_eq!(st["state"], "cancelled", "{st:#}");
    for t in tasks(&st) {
        assert!(
            t["state"] == "succeeded" || t["state"] == "cancelled",
            "nothing runs or waits in a cancelled job: {t:#}"
        );
    }
    assert_eq!(
        task_by_id(&st, str_of(&victim["task_id"]))["state"],
        "cancelled"
    );
    // The worker hears it at its next heartbeat, stops and removes its files.
    let stopped = c.wait_for("the worker to remove its temporary files", deadline, || {
        partials(&out, "")
            .is_empty()
            .then(|| cancelled_at.elapsed())
    });
    // Nothing appears later either: no final file of the cancelled render.
    std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
    assert!(partials(&out, "").is_empty());
    let variant = str_of(&victim["label"])
        .strip_prefix("render Slow/")
        .expect("a render of Slow");
    // A pack's render writes every file of the title.
    let prefix = if variant.starts_with("pack") {
        "Slow_".to_string()
    } else if variant == "stems" {
        "Slow_stem-".to_string()
    } else {
        format!("Slow_{variant}_")
    };
    let finals: Vec<String> = std::fs::read_dir(&out)
        .expect("output folder")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().to_string()))
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(
        finals.is_empty(),
        "the cancelled render delivered {finals:?}"
    );
    assert!(
        c.log("worker-w1.log").contains("task cancelled"),
        "{}",
        c.logs()
    );
    // The worker is alive and takes the next job.
    assert!(c.worker_alive("w1"));
    let next = c.submit(&cat.solo, &c.dir().join("out-next"), &[]);
    let st = c.wait_job(&next, Duration::from_secs(60));
    assert_eq!(st["state"], "succeeded", "{st:#}");
    for t in tasks(&st) {
        assert_eq!(
            (&t["worker_id"], &t["attempt"]),
            (&Value::from("w1"), &Value::from(1))
        );
    }
    eprintln!(
        "cancel: `{}` stopped and its {} temporary file(s) removed {} ms after the cancel",
        str_of(&victim["label"]),
        files.len(),
        stopped.as_millis()
    );
}

#[test]
fn sigterm_past_the_drain_time_hands_the_lease_back_and_another_worker_finishes_the_task() {
    let cat = catalog();
    let reference = reference_slow();
    let mut c = start_cluster("term-worker", &[]);
    // No drain time: the task in hand is stopped at once and handed back.
    c.start_worker_env("A", &[("STEMFORGE_DRAIN_TIMEOUT_S", "0")]);
    let out = c.dir().join("out");
    let job = c.submit(&cat.slow, &out, &[]);
    let (victim, files) = slow_render_in_flight(&c, &job, "A", &out);
    let id = str_of(&victim["task_id"]).to_string();
    let t0 = Instant::now();
    let exit = c.term_worker("A", Duration::from_secs(20));
    let exit_s = t0.elapsed().as_secs_f64();
    assert!(
        exit.success(),
        "SIGTERM is a clean exit: {exit:?}\n{}",
        c.logs()
    );
    // Right after the exit, well inside the lease time: no lease dangles,
    // the task is queued again and its temporary files are gone.
    let st = c.status(&job);
    let t = task_by_id(&st, &id);
    assert_eq!(t["state"], "queued", "{t:#}");
    assert_eq!(t["worker_id"], "A", "{t:#}");
    let h = history(t);
    assert!(
        h.len() == 1 && h[0].contains("lease handed back (worker A shutting down)"),
        "{t:#}"
    );
    assert!(
        tasks(&st).iter().all(|t| t["state"] != "leased"),
        "no task leased with no worker running: {st:#}"
    );
    assert!(
        partials(&out, "Slow_").is_empty(),
        "temporary files removed before exit (had {files:?})"
    );
    c.start_worker("B");
    let st = c.wait_job(&job, Duration::from_secs(120));
    assert_eq!(st["state"], "succeeded", "{st:#}");
    let t = task_by_id(&st, &id);
    assert_eq!(
        (t["attempt"].as_u64(), str_of(&t["worker_id"])),
        (Some(2), "B"),
        "{t:#}"
    );
    for other in tasks(&st).iter().filter(|t| t["task_id"] != id.as_str()) {
        assert_eq!(other["attempt"], 1, "{other:#}");
    }
    let m = manifest_of(&st, &out);
    assert!(check_files(&out, &m).is_empty());
    assert_same_audio(&audio_map(&m), reference);
    let v = metric_values(&c.scrape());
    assert_eq!(v["stemforge_leases_handed_back_total"], 1.0, "{v:?}");
    assert_eq!(v["stemforge_lease_expiries_total"], 0.0, "{v:?}");
    assert_eq!(
        v["stemforge_task_retries_total"], 0.0,
        "a hand-back is no retry: {v:?}"
    );
    eprintln!(
        "SIGTERM, no drain time: worker exited {exit_s:.2} s after the signal, lease handed back, finished by B"
    );
}

#[test]
fn sigterm_lets_the_task_in_hand_finish_within_the_drain_time_and_takes_no_more() {
    let cat = catalog();
    let reference = reference_slow();
    let mut c = start_cluster("drain-worker", &[]);
    c.start_worker_env("A", &[("STEMFORGE_DRAIN_TIMEOUT_S", "60")]);
    let out = c.dir().join("out");
    let job = c.submit(&cat.slow, &out, &[]);
    let (victim, _) = slow_render_in_flight(&c, &job, "A", &out);
    let id = str_of(&victim["task_id"]).to_string();
    let exit = c.term_worker("A", Duration::from_secs(90));
    assert!(exit.success(), "{exit:?}\n{}", c.logs());
    let st = c.status(&job);
    let t = task_by_id(&st, &id);
    assert_eq!(t["state"], "succeeded", "the task in hand finished: {t:#}");
    assert_eq!(
        (t["attempt"].as_u64(), str_of(&t["worker_id"])),
        (Some(1), "A")
    );
    assert!(
        tasks(&st).iter().all(|t| t["state"] != "leased"),
        "A took no new task while draining: {st:#}"
    );
    assert!(
        c.log("worker-A.log").contains("finishing the task in hand"),
        "{}",
        c.logs()
    );
    c.start_worker("B");
    let st = c.wait_job(&job, Duration::from_secs(120));
    assert_eq!(st["state"], "succeeded", "{st:#}");
    assert!(tasks(&st).iter().all(|t| t["attempt"] == 1), "{st:#}");
    assert_same_audio(&audio_map(&manifest_of(&st, &out)), reference);
}

#[test]
fn sigterm_to_the_coordinator_drains_closes_its_store_and_a_restart_resumes_the_job() {
    let cat = catalog();
    let reference = reference_slow();
    let mut c = start_cluster("term-coordinator", &[]);
    c.start_worker("w1");
    c.start_worker("w2");
    let out = c.dir().join("out");
    let job = c.submit(&cat.slow, &out, &[]);
    let before = some_done_and_slow_in_flight(&c, &job);
    let t0 = Instant::now();
    let exit = c.term_coordinator(Duration::from_secs(30));
    let exit_s = t0.elapsed().as_secs_f64();
    assert!(exit.success(), "{exit:?}\n{}", c.logs());
    let log = c.log("coordinator-1.log");
    assert!(log.contains("job store closed"), "{log}");
    let wal = c.dir().join("data/jobs.sqlite-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "the write-ahead log was checkpointed into the database"
    );
    c.restart_coordinator();
    let st = c.wait_job(&job, Duration::from_secs(120));
    assert_eq!(st["state"], "succeeded", "{st:#}");
    for b in tasks(&before).iter().filter(|t| t["state"] == "succeeded") {
        let a = task_by_id(&st, str_of(&b["task_id"]));
        assert_eq!(
            a["history"], b["history"],
            "ran again after the restart: {a:#}"
        );
    }
    assert!(
        c.worker_alive("w1") && c.worker_alive("w2"),
        "workers ride through"
    );
    let m = manifest_of(&st, &out);
    assert!(check_files(&out, &m).is_empty());
    assert_same_audio(&audio_map(&m), reference);
    let v = metric_values(&c.scrape());
    assert_eq!(
        v["stemforge_tasks{state=\"succeeded\"}"],
        tasks(&st).len() as f64,
        "a restarted coordinator counts the job from its store: {v:?}"
    );
    eprintln!("SIGTERM to the coordinator: exited in {exit_s:.2} s; restart resumed the job");
}
