//! A catalog job end to end: 1,000 titles through a coordinator process and
//! two worker processes. Nothing grows with the job in one message: a lease
//! carries its title's spec only, `status` pages the job's tasks, `watch`
//! follows it, and the manifest task reads every outcome a page at a time
//! and writes a complete manifest (JSON, CSV) and a report split into an
//! index and bounded pages.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message;
use stemforge_proto::v1::tasks_client::TasksClient;
use stemforge_proto::v1::{LeaseRef, LeaseTaskRequest, ReleaseTaskRequest};
use stemforge_testkit::cluster::{Cluster, tasks};
use stemforge_testkit::read_json;
use stemforge_testkit::signal::sine;

const RATE: u32 = 48_000;
const TITLES: usize = 1_000;
/// The titles a report page holds (the worker's `REPORT_PAGE_TITLES`).
const PAGE_TITLES: usize = 50;

/// Two 1 s stems every title shares, and a spec of `TITLES` titles
/// delivering each one's full mix.
fn catalog(dir: &Path) -> PathBuf {
    catalog_of(dir, TITLES)
}

fn catalog_of(dir: &Path, titles: usize) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir session");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for (name, freq, gain) in [("a.wav", 220.0, 0.3), ("b.wav", 331.0, 0.2)] {
        let x = sine(freq, RATE, RATE as usize, gain);
        let mut w = hound::WavWriter::create(dir.join(name), spec).expect("create stem");
        for v in x {
            let code = (v * 32_768.0).round() as i16;
            w.write_sample(code).expect("write sample");
            w.write_sample(code).expect("write sample");
        }
        w.finalize().expect("finalize stem");
    }
    let mut text = String::from(
        "schema_version = 1\n\n[delivery]\nprofile = \"ebu-r128\"\nbit_depth = 16\n\
         output_dir = \"deliverables\"\n\n[variants.full]\n",
    );
    for i in 0..titles {
        text.push_str(&format!(
            "\n[[titles]]\nname = \"Cue {i:04}\"\nstems = [\n  {{ file = \"a.wav\", role = \"music\" }},\n  {{ file = \"b.wav\", role = \"vocals\" }},\n]\n"
        ));
    }
    let path = dir.join("catalog.toml");
    std::fs::write(&path, text).expect("write spec");
    path
}

#[test]
fn a_thousand_title_catalog_gets_a_complete_manifest_through_two_worker_processes() {
    let mut c = Cluster::builder("catalog")
        .envs([
            ("STEMFORGE_LEASE_MS", "10000".to_string()),
            ("STEMFORGE_HEARTBEAT_MS", "500".to_string()),
        ])
        .start()
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    let spec = catalog(&c.dir().join("session"));
    let spec_bytes = std::fs::metadata(&spec).expect("spec").len();
    let out = c.dir().join("out");
    let job = c.submit(&spec, &out, &[]);

    // A lease is the size of one title's spec, not the catalog's: taken by
    // hand before any worker runs, measured, and handed back.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut tc = rt
        .block_on(TasksClient::connect(c.url().to_string()))
        .expect("connect");
    let lease = rt
        .block_on(tc.lease_task(LeaseTaskRequest {
            worker_id: "probe".into(),
            wait_ms: 5_000,
            draining: false,
        }))
        .expect("lease")
        .into_inner()
        .lease
        .expect("a task is queued");
    let lease_bytes = lease.encoded_len();
    assert!(
        lease_bytes < 8 * 1024,
        "a lease carries {lease_bytes} bytes for a {spec_bytes}-byte catalog spec"
    );
    assert_eq!(lease.spec_toml.matches("[[titles]]").count(), 1);
    rt.block_on(tc.release_task(ReleaseTaskRequest {
        lease: Some(LeaseRef {
            job_id: lease.job_id.clone(),
            task_id: lease.task_id.clone(),
            lease_id: lease.lease_id.clone(),
            attempt: lease.attempt,
        }),
        reason: "measured by the test".into(),
    }))
    .expect("release");

    let started = Instant::now();
    c.start_worker("w1");
    c.start_worker("w2");
    // `watch` follows the job to its end (one bar for a catalog).
    let w = c.spawn_watch(&job);
    let watched = c.wait_other(w, Duration::from_secs(900));
    let elapsed = started.elapsed();
    assert!(
        watched.is_some_and(|s| s.success()),
        "watch: {watched:?}\n{}",
        std::fs::read_to_string(c.dir().join("watch.log")).unwrap_or_default()
    );

    // `status` pages through every task.
    let st = c.status(&job);
    assert_eq!(st["state"], "succeeded", "{}", c.logs());
    let all = tasks(&st);
    assert_eq!(all.len(), 3 * TITLES + 1);
    assert!(all.iter().all(|t| t["state"] == "succeeded"));

    // The manifest is complete and in the spec's order.
    let m = read_json(&out.join("manifest.json"));
    let s = &m["summary"];
    assert_eq!(s["titles"], TITLES, "{s}");
    assert_eq!(s["outputs"], TITLES, "{s}");
    assert_eq!(s["passed"], TITLES, "{s}");
    assert_eq!(s["all_pass"], true, "{s}");
    let titles = m["titles"].as_array().expect("titles");
    assert_eq!(titles.len(), TITLES);
    for (i, t) in titles.iter().enumerate() {
        assert_eq!(t["name"], format!("Cue {i:04}"));
        let lufs = t["outputs"][0]["measurement"]["integrated_lufs"]
            .as_f64()
            .expect("a loudness");
        assert!((lufs + 23.0).abs() <= 0.5, "{}: {lufs}", t["name"]);
    }
    let csv = std::fs::read_to_string(out.join("manifest.csv")).expect("csv");
    assert_eq!(csv.lines().count(), TITLES + 1);

    // The report: an index and one bounded page per 50 titles.
    let index = std::fs::read_to_string(out.join("report.html")).expect("report");
    let pages = TITLES.div_ceil(PAGE_TITLES);
    for p in 1..=pages {
        let href = format!("report/page-{p:05}.html");
        assert!(index.contains(&href), "the index links {href}");
        let page = std::fs::read_to_string(out.join(&href)).expect("page");
        let n = page.matches("<section class=\"title\"").count();
        assert_eq!(n, PAGE_TITLES, "{href}");
        assert!(page.contains("../report.html"), "{href} links the index");
    }
    assert!(
        !out.join(format!("report/page-{:05}.html", pages + 1))
            .exists()
    );
    let largest_page = (1..=pages)
        .map(|p| {
            std::fs::metadata(out.join(format!("report/page-{p:05}.html")))
                .expect("page")
                .len()
        })
        .max()
        .unwrap_or(0);
    // No temporary file is left anywhere in the output folder.
    let leftovers: Vec<String> = walk(&out)
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    println!(
        "{TITLES} titles ({} tasks) in {:.1} s on two worker processes; spec {spec_bytes} bytes, \
         one lease {lease_bytes} bytes; report index {} bytes, largest page {largest_page} bytes",
        all.len(),
        elapsed.as_secs_f64(),
        index.len()
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                v.extend(walk(&p));
            } else {
                v.push(p.display().to_string());
            }
        }
    }
    v
}

fn history_of(st: &serde_json::Value, label: &str) -> Vec<String> {
    tasks(st)
        .iter()
        .find(|t| t["label"] == label)
        .and_then(|t| t["history"].as_array())
        .map(|h| {
            h.iter()
                .map(|l| l.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_failed_manifest_leaves_no_temporary_file_shows_its_error_and_is_retried() {
    const N: usize = 60;
    let mut c = Cluster::builder("manifest-retry")
        .start()
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    let spec = catalog_of(&c.dir().join("session"), N);
    let out = c.dir().join("out");
    // A folder (not empty) where manifest.json goes: its rename fails.
    let blocker = out.join("manifest.json");
    std::fs::create_dir_all(&blocker).expect("mkdir");
    std::fs::write(blocker.join("keep"), b"x").expect("write");
    let job = c.submit(&spec, &out, &[]);
    c.start_worker("w1");
    let st = c.wait_job(&job, Duration::from_secs(300));
    assert_eq!(st["state"], "failed", "{st:#}");
    let failed: Vec<&serde_json::Value> = tasks(&st)
        .iter()
        .filter(|t| t["state"] != "succeeded")
        .collect();
    assert_eq!(failed.len(), 1, "only the manifest failed: {failed:#?}");
    assert_eq!(failed[0]["label"], "manifest");
    // The worker's own error, for the attempt, not a lapsed lease.
    let h = history_of(&st, "manifest");
    assert_eq!(h.len(), 1, "a permanent failure is not retried: {h:?}");
    assert!(h[0].contains("Is a directory"), "{h:?}");
    // Nothing temporary is left, and no report page of the failed attempt.
    let left: Vec<String> = walk(&out)
        .into_iter()
        .filter(|n| n.ends_with(".partial") || n.contains("/report/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Once the folder is gone, `retry` runs the manifest again.
    std::fs::remove_dir_all(&blocker).expect("rm");
    let r = c.cli(&["retry", &job]);
    assert!(r.status.success(), "retry: {}", stemforge_testkit::text(&r));
    let st = c.wait_job(&job, Duration::from_secs(120));
    assert_eq!(st["state"], "succeeded", "{st:#}");
    let h = history_of(&st, "manifest");
    assert_eq!(h.len(), 3, "failed, retry requested, succeeded: {h:?}");
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(m["summary"]["titles"], N);
    assert_eq!(m["titles"].as_array().map(Vec::len), Some(N));
    for p in 1..=N.div_ceil(PAGE_TITLES) {
        assert!(out.join(format!("report/page-{p:05}.html")).is_file());
    }
    assert!(walk(&out).iter().all(|n| !n.ends_with(".partial")));
}

#[test]
fn a_local_render_of_a_catalog_keeps_its_job_on_disk_and_delivers_every_title() {
    // Above 200 titles `render` keeps its job in a SQLite file in a scratch
    // folder (removed afterwards) instead of memory.
    const N: usize = 240;
    let dir = stemforge_testkit::scratch("local-catalog");
    let spec = catalog_of(&dir.join("session"), N);
    let out = dir.join("out");
    let before = scratch_folders();
    let o = stemforge_testkit::command()
        .args(["render"])
        .arg(&spec)
        .args(["--workers", "2", "--out"])
        .arg(&out)
        .env("STEMFORGE_LOG", "warn")
        .output()
        .expect("run render");
    assert!(o.status.success(), "{}", stemforge_testkit::text(&o));
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(m["summary"]["titles"], N);
    assert_eq!(m["summary"]["all_pass"], true);
    assert_eq!(m["titles"][N - 1]["name"], format!("Cue {:04}", N - 1));
    assert_eq!(scratch_folders(), before, "the scratch folder is removed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `stemforge-render-*` folders in the temporary directory.
fn scratch_folders() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("stemforge-render-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
