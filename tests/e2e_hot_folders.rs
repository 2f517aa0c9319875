//! Hot folders end to end, with a real `stemforge coordinator` process
//! (its `[[watch]]` entries in a config file) and a worker process:
//! - a title folder copied slowly (files growing in chunks for longer than
//!   the settle time) is submitted exactly once, only after it has settled,
//!   and renders into the output folder beside the watched one;
//! - a restarted coordinator does not submit it again;
//! - a title that fails preflight gets its findings beside its folder, is
//!   not submitted again while it stays as it is, and is submitted once more
//!   after a file in it changes (its findings then removed);
//! - a `.ready` marker submits without waiting for the settle time, and a
//!   `poll = true` folder (no file-system events) settles and submits too;
//! - `stemforge hot-folders` reports each folder.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stemforge_testkit::cluster::Cluster;
use stemforge_testkit::signal::noise_planar;
use stemforge_testkit::{read_json, scratch, text, write_wav24};

const RATE: u32 = 48_000;
const SECONDS: f64 = 3.0;
/// The settle time of the folders whose settling is tested.
const SETTLE_S: f64 = 2.0;

const TEMPLATE: &str = r#"# Everything but titles: each folder dropped in is one.
schema_version = 1

[delivery]
profile = "ebu-r128"
bit_depth = 24

[graph.master]
chain = [
  { node = "loudness" },
  { node = "limiter", ceiling_dbtp = -1.1 },
]

[variants.full]
[variants.instrumental]
"#;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A title's files as WAV bytes: three noise stems (named so their roles
/// come from the names) and the mix they sum to; `mix_without_vocals`
/// prints a mix that leaves the vocals out (preflight's null test fails).
fn title_files(seed: u64, mix_without_vocals: bool) -> Vec<(&'static str, Vec<u8>)> {
    let frames = (SECONDS * f64::from(RATE)) as usize;
    let stem = |k: u64| -> Vec<Vec<f64>> {
        noise_planar(2, frames, seed * 10 + k)
            .into_iter()
            .map(|c| c.into_iter().map(|x| 0.3 * x).collect())
            .collect()
    };
    let stems = [
        ("Drums.wav", stem(1)),
        ("Bass.wav", stem(2)),
        ("Vocals.wav", stem(3)),
    ];
    let mut mix = vec![vec![0.0; frames]; 2];
    for (name, s) in &stems {
        if mix_without_vocals && *name == "Vocals.wav" {
            continue;
        }
        for (m, c) in mix.iter_mut().zip(s) {
            for (a, x) in m.iter_mut().zip(c) {
                *a += x;
            }
        }
    }
    let staging = scratch(&format!("hot-staging-{seed}-{mix_without_vocals}"));
    let mut out = Vec::new();
    for (name, ch) in stems
        .iter()
        .map(|(n, c)| (*n, c))
        .chain([("Mix.wav", &mix)])
    {
        let p = staging.join(name);
        write_wav24(&p, RATE, ch);
        out.push((name, std::fs::read(&p).expect("read staged file")));
    }
    out
}

/// Copies files into `dir` in `chunks` pieces each, `pause` between
/// writes (a slow network copy: plain names, growing). Returns the time
/// (Unix ms) just before the last write began.
fn slow_copy(dir: &Path, files: &[(&str, Vec<u8>)], chunks: usize, pause: Duration) -> i64 {
    std::fs::create_dir_all(dir).expect("create title folder");
    let mut handles: Vec<std::fs::File> = files
        .iter()
        .map(|(n, _)| std::fs::File::create(dir.join(n)).expect("create file"))
        .collect();
    let mut last = now_ms();
    for k in 0..chunks {
        for ((_, bytes), f) in files.iter().zip(&mut handles) {
            let step = bytes.len().div_ceil(chunks);
            let part = &bytes[(k * step).min(bytes.len())..((k + 1) * step).min(bytes.len())];
            last = now_ms();
            f.write_all(part).expect("write chunk");
            f.flush().expect("flush");
        }
        if k + 1 < chunks {
            std::thread::sleep(pause);
        }
    }
    last
}

/// Copies files at once.
fn copy(dir: &Path, files: &[(&str, Vec<u8>)]) {
    std::fs::create_dir_all(dir).expect("create title folder");
    for (n, b) in files {
        std::fs::write(dir.join(n), b).expect("write file");
    }
}

/// Every job the coordinator lists with `label`.
fn jobs(c: &Cluster, label: &str) -> Vec<Value> {
    let o = c.cli(&["status", "--json"]);
    assert!(o.status.success(), "status: {}", text(&o));
    let all: Vec<Value> = serde_json::from_slice(&o.stdout).expect("status --json is JSON");
    all.into_iter().filter(|j| j["label"] == label).collect()
}

/// `stemforge hot-folders --json`, by folder.
fn hot_folders(c: &Cluster) -> Vec<Value> {
    let o = c.cli(&["hot-folders", "--json"]);
    assert!(o.status.success(), "hot-folders: {}", text(&o));
    serde_json::from_slice(&o.stdout).expect("hot-folders --json is JSON")
}

fn folder_view(c: &Cluster, folder: &Path) -> Value {
    try_folder_view(c, folder)
        .unwrap_or_else(|| panic!("{} not listed by hot-folders", folder.display()))
}

fn try_folder_view(c: &Cluster, folder: &Path) -> Option<Value> {
    let want = std::fs::canonicalize(folder).expect("canonical folder");
    hot_folders(c)
        .into_iter()
        .find(|f| f["folder"] == want.display().to_string())
}

/// Waits until the folder has been scanned twice after now (so anything a
/// scan would do has been done).
fn two_scans(c: &Cluster, folder: &Path) {
    let t0 = now_ms();
    let mut seen = Vec::new();
    c.wait_for("two scans", Duration::from_secs(60), || {
        // A coordinator just started may not list the folder yet.
        let s = try_folder_view(c, folder)?["last_scan_unix_ms"]
            .as_i64()
            .unwrap_or(0);
        if s > t0 && !seen.contains(&s) {
            seen.push(s);
        }
        (seen.len() >= 2).then_some(())
    });
}

/// The one job with `label`, once it exists.
fn wait_submitted(c: &Cluster, label: &str, n: usize, timeout: Duration) -> Vec<Value> {
    c.wait_for(&format!("{n} job(s) labelled {label}"), timeout, || {
        let j = jobs(c, label);
        (j.len() >= n).then_some(j)
    })
}

/// Asserts a succeeded job's pack: the manifest and the outputs of both
/// variants, by their expected names, in `out`.
fn assert_rendered(c: &Cluster, job: &str, out: &Path, slug: &str) {
    let st = c.wait_job(job, Duration::from_secs(240));
    assert_eq!(st["state"], "succeeded", "{st:#}\n{}", c.logs());
    let m = read_json(&out.join("manifest.json"));
    let mut files: Vec<String> = m["titles"][0]["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .map(|o| o["file"]["path"].as_str().unwrap_or_default().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            format!("{slug}_full_48k24.wav"),
            format!("{slug}_instrumental_48k24.wav")
        ],
        "{m:#}"
    );
    for f in &files {
        assert!(out.join(f).is_file(), "{} missing", out.join(f).display());
    }
}

fn config(dir: &Path, entries: &[String]) -> PathBuf {
    let template = dir.join("template.toml");
    std::fs::write(&template, TEMPLATE).expect("write template");
    let p = dir.join("coordinator.toml");
    std::fs::write(&p, entries.join("\n")).expect("write config");
    p
}

fn watch_entry(folder: &Path, template: &Path, settle: f64, poll: bool) -> String {
    format!(
        "[[watch]]\nfolder = \"{}\"\ntemplate = \"{}\"\nsettle_s = {settle}\npoll = {poll}\npoll_interval_s = 0.5\n",
        folder.display(),
        template.display()
    )
}

fn start(name: &str, entries: impl Fn(&Path) -> Vec<String>) -> Cluster {
    let b = Cluster::builder(name)
        .env("STEMFORGE_POLL_WAIT_MS", "300")
        .env("STEMFORGE_HEARTBEAT_MS", "250")
        .env("STEMFORGE_LEASE_MS", "3000");
    let cfg = config(b.dir(), &entries(b.dir()));
    let mut c = b
        .args(&["--config", cfg.to_str().expect("utf-8 path")])
        .start()
        .unwrap_or_else(|e| panic!("coordinator: {e}"));
    c.start_worker("w1");
    c
}

#[test]
fn slow_copy_settles_once_restarts_and_failed_preflight_waits_for_a_change() {
    let mut c = start("hot-slow", |d| {
        let inbox = d.join("inbox");
        std::fs::create_dir_all(&inbox).expect("create inbox");
        vec![watch_entry(
            &inbox,
            &d.join("template.toml"),
            SETTLE_S,
            false,
        )]
    });
    let inbox = c.dir().join("inbox");
    let outputs = c.dir().join("inbox-deliverables");
    assert!(
        outputs.is_dir(),
        "the output folder is made beside the watched one"
    );

    // (a) Chunks every 0.5 s for 4 s: longer than the settle time, so only
    // a folder that waits for the last write submits once.
    let files = title_files(1, false);
    let last_write = slow_copy(
        &inbox.join("Slow Song"),
        &files,
        9,
        Duration::from_millis(500),
    );
    let job = wait_submitted(&c, "inbox/Slow Song", 1, Duration::from_secs(60));
    let submitted = job[0]["submitted_unix_ms"]
        .as_i64()
        .expect("submitted time");
    assert!(
        submitted >= last_write + (SETTLE_S * 1000.0) as i64,
        "submitted at {submitted}, {} ms after the last write began: before the folder settled",
        submitted - last_write
    );
    let job_id = job[0]["job_id"].as_str().expect("job id").to_string();
    assert_rendered(&c, &job_id, &outputs.join("Slow Song"), "Slow-Song");
    assert_eq!(
        jobs(&c, "inbox/Slow Song").len(),
        1,
        "submitted exactly once"
    );
    let view = folder_view(&c, &inbox);
    assert_eq!(view["submitted"], 1, "{view:#}");
    assert_eq!(view["last_job_id"], job_id.as_str(), "{view:#}");
    assert!(
        std::fs::read_dir(&inbox)
            .expect("list inbox")
            .all(|e| e.expect("entry").path().is_dir()),
        "a delivered title leaves nothing beside its folder"
    );

    // (c, first half) With no worker, a title whose mix leaves the vocals
    // out is submitted and waits in the queue ...
    c.kill_worker("w1");
    let bad = title_files(2, true);
    copy(&inbox.join("Bad Mix"), &bad);
    let first = wait_submitted(&c, "inbox/Bad Mix", 1, Duration::from_secs(60));
    let first_id = first[0]["job_id"].as_str().expect("job id").to_string();

    // (b) ... while the coordinator restarts: it remembers both folders'
    // fingerprints (neither is submitted again) and follows the queued job.
    c.term_coordinator(Duration::from_secs(30));
    c.restart_coordinator();
    two_scans(&c, &inbox);
    assert_eq!(
        jobs(&c, "inbox/Slow Song").len(),
        1,
        "not submitted again after a restart\n{}",
        c.logs()
    );
    assert_eq!(jobs(&c, "inbox/Bad Mix").len(), 1);
    assert_eq!(
        folder_view(&c, &inbox)["submitted"],
        0,
        "nothing submitted since the restart"
    );
    c.start_worker("w2");

    // (c) The job fails preflight: the restarted coordinator writes the
    // findings beside the folder, and does not submit it again while the
    // folder stays as it is.
    let st = c.wait_job(&first_id, Duration::from_secs(240));
    assert_eq!(st["state"], "failed", "{st:#}");
    let findings = inbox.join("Bad Mix.stemforge-findings.txt");
    let body = c.wait_for("the findings file", Duration::from_secs(30), || {
        std::fs::read_to_string(&findings).ok()
    });
    assert!(body.contains("failed preflight"), "{body}");
    assert!(
        body.contains("null_test") && body.contains("Mix.wav"),
        "{body}"
    );
    assert!(body.contains(&first_id), "{body}");
    two_scans(&c, &inbox);
    two_scans(&c, &inbox);
    assert_eq!(
        jobs(&c, "inbox/Bad Mix").len(),
        1,
        "a rejected folder waits for a change"
    );
    assert_eq!(folder_view(&c, &inbox)["rejected"], 1);

    // The engineer prints the right mix: one more submission, which renders
    // and removes the findings.
    let good_mix = title_files(2, false)
        .into_iter()
        .find(|(n, _)| *n == "Mix.wav")
        .expect("mix");
    std::fs::write(inbox.join("Bad Mix").join("Mix.wav"), &good_mix.1).expect("replace mix");
    let both = wait_submitted(&c, "inbox/Bad Mix", 2, Duration::from_secs(60));
    let second_id = both
        .iter()
        .map(|j| j["job_id"].as_str().expect("job id"))
        .find(|id| *id != first_id)
        .expect("a second job")
        .to_string();
    assert_rendered(&c, &second_id, &outputs.join("Bad Mix"), "Bad-Mix");
    c.wait_for("the findings removed", Duration::from_secs(30), || {
        (!findings.exists()).then_some(())
    });
    two_scans(&c, &inbox);
    assert_eq!(
        jobs(&c, "inbox/Bad Mix").len(),
        2,
        "resubmitted exactly once"
    );
    assert_eq!(jobs(&c, "inbox/Slow Song").len(), 1);
    let view = folder_view(&c, &inbox);
    assert_eq!(view["rejected"], 0, "{view:#}");
    assert_eq!(view["waiting"], 0, "{view:#}");
    assert_eq!(view["mode"], "notify", "{view:#}");
}

#[test]
fn ready_marker_and_polling_folders() {
    let c = start("hot-ready", |d| {
        let ready = d.join("ready-inbox");
        let polled = d.join("polled-inbox");
        std::fs::create_dir_all(&ready).expect("create inbox");
        std::fs::create_dir_all(&polled).expect("create inbox");
        let t = d.join("template.toml");
        vec![
            // A settle time no test waits for: only the marker submits.
            watch_entry(&ready, &t, 3_600.0, true),
            watch_entry(&polled, &t, SETTLE_S, true),
        ]
    });
    let ready = c.dir().join("ready-inbox");
    let polled = c.dir().join("polled-inbox");

    // (d) Without the marker the folder waits (an hour's settle time) ...
    copy(&ready.join("Marked"), &title_files(3, false));
    two_scans(&c, &ready);
    assert!(
        jobs(&c, "ready-inbox/Marked").is_empty(),
        "unsettled without the marker"
    );
    assert_eq!(folder_view(&c, &ready)["waiting"], 1);
    // ... and with it, it is submitted at once.
    std::fs::write(ready.join("Marked").join(".ready"), b"").expect("write marker");
    let j = wait_submitted(&c, "ready-inbox/Marked", 1, Duration::from_secs(30));
    let id = j[0]["job_id"].as_str().expect("job id").to_string();
    assert_rendered(
        &c,
        &id,
        &c.dir().join("ready-inbox-deliverables").join("Marked"),
        "Marked",
    );

    // (e) Scans only: a slow copy settles and submits once, in `poll` mode.
    let last_write = slow_copy(
        &polled.join("Polled"),
        &title_files(4, false),
        5,
        Duration::from_millis(600),
    );
    let j = wait_submitted(&c, "polled-inbox/Polled", 1, Duration::from_secs(60));
    let submitted = j[0]["submitted_unix_ms"].as_i64().expect("submitted time");
    assert!(submitted >= last_write + (SETTLE_S * 1000.0) as i64);
    let id = j[0]["job_id"].as_str().expect("job id").to_string();
    assert_rendered(
        &c,
        &id,
        &c.dir().join("polled-inbox-deliverables").join("Polled"),
        "Polled",
    );

    // A file the names cannot place stops the title before submission:
    // findings beside it, no job; renamed after its content, it is
    // submitted and rendered.
    let mut files = title_files(5, false);
    for (n, _) in &mut files {
        if *n == "Mix.wav" {
            *n = "Track 7.wav";
        }
    }
    copy(&polled.join("Unnamed"), &files);
    let findings = polled.join("Unnamed.stemforge-findings.txt");
    let body = c.wait_for("the findings file", Duration::from_secs(30), || {
        std::fs::read_to_string(&findings).ok()
    });
    assert!(
        body.contains("Track 7.wav") && body.contains("rename the file"),
        "{body}"
    );
    assert!(
        jobs(&c, "polled-inbox/Unnamed").is_empty(),
        "refused before submission"
    );
    two_scans(&c, &polled);
    assert!(
        jobs(&c, "polled-inbox/Unnamed").is_empty(),
        "not checked again unchanged"
    );
    assert_eq!(folder_view(&c, &polled)["rejected"], 1);
    std::fs::rename(
        polled.join("Unnamed").join("Track 7.wav"),
        polled.join("Unnamed").join("Mix.wav"),
    )
    .expect("rename");
    let j = wait_submitted(&c, "polled-inbox/Unnamed", 1, Duration::from_secs(60));
    let id = j[0]["job_id"].as_str().expect("job id").to_string();
    assert_rendered(
        &c,
        &id,
        &c.dir().join("polled-inbox-deliverables").join("Unnamed"),
        "Unnamed",
    );
    c.wait_for("the findings removed", Duration::from_secs(30), || {
        (!findings.exists()).then_some(())
    });

    two_scans(&c, &polled);
    assert_eq!(jobs(&c, "polled-inbox/Polled").len(), 1);
    assert_eq!(jobs(&c, "polled-inbox/Unnamed").len(), 1);
    assert_eq!(jobs(&c, "ready-inbox/Marked").len(), 1);
    for (f, n) in [(&ready, 1), (&polled, 2)] {
        let v = folder_view(&c, f);
        assert_eq!(v["mode"], "poll", "{v:#}");
        assert_eq!(v["submitted"], n, "{v:#}");
        assert_eq!(v["rejected"], 0, "{v:#}");
    }
    let table = c.cli(&["hot-folders"]);
    assert!(table.status.success(), "{}", text(&table));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("ready-inbox") && table.contains("poll"),
        "{table}"
    );
}

#[test]
fn a_bad_watch_entry_stops_the_coordinator_naming_its_field() {
    let dir = scratch("hot-bad-config");
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).expect("create inbox");
    let cfg = config(
        &dir,
        &[
            watch_entry(&inbox, &dir.join("template.toml"), SETTLE_S, false),
            format!(
                "[[watch]]\nfolder = \"{}\"\ntemplate = \"{}\"\n",
                dir.join("missing").display(),
                dir.join("template.toml").display()
            ),
        ],
    );
    let o = stemforge_testkit::command()
        .args(["coordinator", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .env("STEMFORGE_LOG", "warn")
        .output()
        .expect("run stemforge");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("watch[1].folder"), "{err}");
    assert!(
        !dir.join("inbox-deliverables").exists(),
        "a refused configuration makes no folder"
    );
}

#[test]
fn listing_hot_folders_needs_the_client_token() {
    const TOKEN: &str = "client-hot-folders-5b3d4c6e8f0a1b2c3d4e5f60a7";
    let b = Cluster::builder("hot-token");
    let token = b.dir().join("client.token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("write token");
    let inbox = b.dir().join("inbox");
    std::fs::create_dir_all(&inbox).expect("create inbox");
    let cfg = config(
        b.dir(),
        &[watch_entry(
            &inbox,
            &b.dir().join("template.toml"),
            SETTLE_S,
            false,
        )],
    );
    let c = b
        .env("STEMFORGE_CLIENT_TOKEN_FILE", token.display().to_string())
        .args(&["--config", cfg.to_str().expect("utf-8 path")])
        .start()
        .unwrap_or_else(|e| panic!("coordinator: {e}"));
    let o = c.cli(&["hot-folders"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("UNAUTHENTICATED"),
        "{}",
        text(&o)
    );
    let o = c.cli_env(
        &["hot-folders", "--json"],
        &[("STEMFORGE_CLIENT_TOKEN_FILE", token.display().to_string())],
    );
    assert!(o.status.success(), "{}", text(&o));
    let v: Vec<Value> = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v.len(), 1, "{v:?}");
}
