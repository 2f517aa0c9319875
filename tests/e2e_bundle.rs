//! End to end: `stemforge pack` on a short demo session, locally and through
//! a cluster of processes. Every zip is read by an independent reader
//! (Python's `zipfile`): its entries, how each is compressed and each
//! entry's SHA-256 against the manifest's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use stemforge_testkit::cluster::Cluster;
use stemforge_testkit::*;

/// A 4-second demo session written once for this test binary.
fn session() -> &'static PathBuf {
    static SPEC: OnceLock<PathBuf> = OnceLock::new();
    SPEC.get_or_init(|| {
        let dir = scratch("bundle-session");
        let d = dir.to_str().expect("utf-8 path");
        let o = stemforge(&["demo", d, "--seconds", "4", "--workers", "2"]);
        assert!(o.status.success(), "demo failed:\n{}", text(&o));
        dir.join("deliverables.toml")
    })
}

/// One entry as Python's `zipfile` reads it.
#[derive(Debug, Clone)]
struct Entry {
    /// 0 stored, 8 deflated.
    method: u64,
    size: u64,
    sha256: String,
    /// (year, month, day, hour, minute, second)
    time: Vec<u64>,
}

/// Every entry of a zip, in order, read by Python's `zipfile` (which also
/// checks each entry's CRC-32 as it reads it).
fn read_zip(zip: &Path) -> (Vec<String>, BTreeMap<String, Entry>) {
    let script = r#"
import hashlib, json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
out = []
for i in z.infolist():
    out.append({"name": i.filename, "method": i.compress_type, "size": i.file_size,
                "sha256": hashlib.sha256(z.read(i.filename)).hexdigest(),
                "time": list(i.date_time)})
print(json.dumps(out))
"#;
    let o = Command::new("python3")
        .args(["-c", script, zip.to_str().expect("utf-8")])
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "zipfile refused {}: {}",
        zip.display(),
        text(&o)
    );
    let list: Vec<Value> = serde_json::from_slice(&o.stdout).expect("json");
    let mut order = Vec::new();
    let mut entries = BTreeMap::new();
    for e in list {
        let name = e["name"].as_str().expect("name").to_string();
        order.push(name.clone());
        entries.insert(
            name,
            Entry {
                method: e["method"].as_u64().expect("method"),
                size: e["size"].as_u64().expect("size"),
                sha256: e["sha256"].as_str().expect("sha").to_string(),
                time: e["time"]
                    .as_array()
                    .expect("time")
                    .iter()
                    .map(|v| v.as_u64().expect("n"))
                    .collect(),
            },
        );
    }
    (order, entries)
}

/// One entry's bytes, read by Python's `zipfile`.
fn read_entry(zip: &Path, name: &str) -> Vec<u8> {
    let o = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))",
            zip.to_str().expect("utf-8"),
            name,
        ])
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "{}", text(&o));
    o.stdout
}

/// The job id in `pack`'s "job ID submitted" line.
fn submitted_job(stderr: &str) -> String {
    stderr
        .split_whitespace()
        .skip_while(|w| *w != "job")
        .nth(1)
        .unwrap_or_else(|| panic!("no job id:\n{stderr}"))
        .to_string()
}

fn sha256_file(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// The `sha256 HEX` `pack` printed.
fn printed_sha256(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .skip_while(|w| *w != "sha256")
        .nth(1)
        .unwrap_or_else(|| panic!("no sha256 printed:\n{stdout}"))
        .to_string()
}

/// `pack SESSION [args] -o ZIP --workers 2`.
fn pack_to(zip: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut a = args.to_vec();
    a.extend_from_slice(&["-o", zip.to_str().expect("utf-8")]);
    pack(&a, env)
}

fn pack(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut a = vec!["pack", session().to_str().expect("utf-8")];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--workers", "2"]);
    stemforge_env(&a, env)
}

/// Asserts the zip holds exactly the manifest's outputs (stored, with the
/// manifest's checksums) and the paperwork (deflated); returns the
/// manifest.
fn check_zip(zip: &Path, out: &Path) -> Value {
    let manifest = read_json(&out.join("manifest.json"));
    let (order, entries) = read_zip(zip);
    // Outputs with a file: a failed title's have none, and nothing to pack.
    let outs: Vec<Value> = outputs(&manifest)
        .into_iter()
        .filter(|o| o["file"].is_object())
        .collect();
    assert!(!outs.is_empty());
    for o in &outs {
        let path = o["file"]["path"].as_str().expect("path");
        let e = entries
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in {}: {order:?}", zip.display()));
        assert_eq!(e.method, 0, "{path} must be stored, not compressed");
        assert_eq!(
            e.sha256,
            o["file"]["sha256"].as_str().expect("sha256"),
            "{path}: the entry's SHA-256 is not the manifest's"
        );
        assert_eq!(Some(e.size), o["file"]["bytes"].as_u64(), "{path}");
    }
    let paperwork = ["README.txt", "manifest.json", "manifest.csv", "report.html"];
    assert_eq!(order[..4], paperwork, "fixed entry order");
    for p in paperwork {
        assert_eq!(entries[p].method, 8, "{p} must be deflated");
    }
    for p in &paperwork[1..] {
        assert_eq!(entries[*p].sha256, sha256_file(&out.join(p)), "{p}");
    }
    assert_eq!(entries.len(), outs.len() + paperwork.len(), "{order:?}");
    // Every entry carries the same time: the job's origination, not the clock.
    let first = &entries["README.txt"].time;
    assert!(entries.values().all(|e| &e.time == first), "{entries:?}");

    let readme = String::from_utf8(read_entry(zip, "README.txt")).expect("utf-8");
    for o in &outs {
        let path = o["file"]["path"].as_str().expect("path");
        let lufs = o["measurement"]["integrated_lufs"]
            .as_f64()
            .map_or("-".to_string(), |v| format!("{v:.2}"));
        let tp = format!(
            "{:.2}",
            o["measurement"]["true_peak_dbtp"].as_f64().expect("tp")
        );
        let line = readme
            .lines()
            .find(|l| l.split_whitespace().next() == Some(path))
            .unwrap_or_else(|| panic!("README.txt does not list {path}:\n{readme}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(
            cols.contains(&lufs.as_str()) && cols.contains(&tp.as_str()) && cols.contains(&"pass"),
            "{path}: README line `{line}` lacks {lufs} LUFS / {tp} dBTP / pass"
        );
        assert!(
            line.contains(o["variant"].as_str().expect("variant")),
            "{line}"
        );
    }
    let d = &manifest["delivery"];
    assert!(
        readme.contains(&format!(
            "Delivery profile: {}",
            d["profile"].as_str().expect("profile")
        )) && readme.contains(&format!(
            "{:.1} LUFS",
            d["target_lufs"].as_f64().expect("target")
        )),
        "{readme}"
    );
    assert!(readme.contains("manifest.json") && readme.contains("report.html"));
    manifest
}

#[test]
fn a_pack_holds_every_output_with_the_manifests_checksums() {
    let dir = scratch("bundle-local");
    let zip = dir.join("night-drive.zip");
    let epoch = [("SOURCE_DATE_EPOCH", "1795512600")];
    let o = pack_to(&zip, &[], &epoch);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let out = dir.join("night-drive");
    let manifest = check_zip(&zip, &out);
    assert_eq!(outputs(&manifest).len(), 12);
    // The SHA-256 and size printed are the file's.
    assert_eq!(printed_sha256(&stdout), sha256_file(&zip), "{stdout}");
    let bytes = std::fs::metadata(&zip).expect("zip").len();
    assert!(stdout.contains(&format!("{bytes} bytes")), "{stdout}");
    assert!(stdout.contains("Night-Drive_full_48k24.wav"), "{stdout}");
    // Entries are dated at the origination time (2026-11-24T09:30:00Z).
    let (_, entries) = read_zip(&zip);
    assert_eq!(entries["README.txt"].time, [2026, 11, 24, 9, 30, 0]);
    // No temporary file is left beside the zip.
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The same session packed again at the same origination: every audio
    // entry and every entry's time and order are identical (the job id and
    // submission time in the manifest differ between two jobs).
    let zip2 = dir.join("again.zip");
    let o = pack_to(&zip2, &[], &epoch);
    assert!(o.status.success(), "{}", text(&o));
    let (order1, e1) = read_zip(&zip);
    let (order2, e2) = read_zip(&zip2);
    assert_eq!(order1, order2);
    for name in order1.iter().filter(|n| n.ends_with(".wav")) {
        assert_eq!(e1[name].sha256, e2[name].sha256, "{name}");
        assert_eq!(e1[name].time, e2[name].time, "{name}");
    }
}

#[test]
fn selection_flags_select_what_they_say() {
    let dir = scratch("bundle-select");
    let zip = dir.join("two.zip");
    let o = pack_to(&zip, &["--variants", "full,instrumental"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let m = check_zip(&zip, &dir.join("two"));
    let mut variants: Vec<String> = outputs(&m)
        .iter()
        .map(|o| o["variant"].as_str().expect("variant").to_string())
        .collect();
    variants.sort();
    assert_eq!(variants, ["full", "instrumental"]);

    // Another profile: the target and the full mix's loudness follow it.
    let zip = dir.join("spotify.zip");
    let o = pack_to(&zip, &["--variants", "full", "--profile", "spotify"], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let m = check_zip(&zip, &dir.join("spotify"));
    assert_eq!(m["delivery"]["profile"], "spotify");
    assert_eq!(m["delivery"]["target_lufs"].as_f64(), Some(-14.0));
    let outs = outputs(&m);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0]["target_lufs"].as_f64(), Some(-14.0));
    let i = outs[0]["measurement"]["integrated_lufs"]
        .as_f64()
        .expect("integrated");
    assert!((i - -14.0).abs() <= 1.0, "full mix at {i} LUFS for spotify");

    // Titles: a spec with two titles, one asked for.
    let text_two = std::fs::read_to_string(session()).expect("spec");
    let start = text_two.find("[[titles]]").expect("titles");
    let second =
        text_two[start..].replace("name = \"Night Drive\"", "name = \"Night Drive Reprise\"");
    let two = session().with_file_name("two-titles.toml");
    std::fs::write(&two, format!("{text_two}\n{second}")).expect("write spec");
    let zip = dir.join("reprise.zip");
    let o = stemforge(&[
        "pack",
        two.to_str().expect("utf-8"),
        "--title",
        "Night Drive Reprise",
        "--variants",
        "full",
        "-o",
        zip.to_str().expect("utf-8"),
        "--workers",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let m = check_zip(&zip, &dir.join("reprise"));
    let titles: Vec<&str> = m["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(titles, ["Night Drive Reprise"]);
    assert_eq!(outputs(&m).len(), 1);
}

#[test]
fn bad_input_is_refused_before_anything_renders() {
    let dir = scratch("bundle-bad");
    let no_partials = |d: &Path| {
        let left: Vec<String> = std::fs::read_dir(d)
            .map(|r| {
                r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".partial") || n.contains("probe"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{} holds {left:?}", d.display());
    };
    // A folder that does not exist.
    let missing = dir.join("missing/pack.zip");
    let o = pack_to(&missing, &[], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("-o ") && err.contains("create it or choose another"),
        "{err}"
    );
    assert!(!dir.join("missing").exists());
    // A file where the folder should be.
    std::fs::write(dir.join("file.txt"), b"x").expect("write");
    let o = pack(
        &["-o", dir.join("file.txt/pack.zip").to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A folder nobody can write to (root included).
    let o = pack(&["-o", "/proc/stemforge-pack.zip"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot write in /proc") && err.contains("choose a folder you can write to"),
        "{err}"
    );
    no_partials(&dir);
    // An unknown variant, named with the likely fix.
    let zip = dir.join("pack.zip");
    let o = pack_to(&zip, &["--variants", "full,instrumentl"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--variants `instrumentl`") && err.contains("did you mean `instrumental`?"),
        "{err}"
    );
    // An unknown profile.
    let o = pack_to(&zip, &["--profile", "spotifi"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--profile `spotifi`"),
        "{}",
        text(&o)
    );
    assert!(!zip.exists() && !dir.join("pack").exists());
    no_partials(&dir);
}

#[test]
fn a_pack_through_a_coordinator_runs_first_and_reports_its_zip_in_the_job_status() {
    let mut c = Cluster::builder("bundle")
        .start()
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    // An ordinary job waits in the queue before the pack is asked for.
    let ordinary = c.submit(session(), &c.dir().join("ordinary"), &[]);
    let zip = c.dir().join("remote.zip");
    let mut child = Command::new(bin())
        .args([
            "pack",
            session().to_str().expect("utf-8"),
            "--variants",
            "full,instrumental",
            "-o",
            zip.to_str().expect("utf-8"),
            "--coordinator",
            c.url(),
        ])
        .env("STEMFORGE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pack");
    c.wait_for("the pack's job", Duration::from_secs(30), || {
        let o = c.cli(&["status", "--json"]);
        let jobs: Value = serde_json::from_slice(&o.stdout).ok()?;
        (jobs.as_array()?.len() == 2).then_some(())
    });
    c.start_worker("w1");
    let finished = stemforge_testkit::cluster::wait_child(&mut child, Duration::from_secs(120));
    let o = child.wait_with_output().expect("pack output");
    assert!(
        finished.is_some_and(|s| s.success()),
        "{}\n{}",
        text(&o),
        c.logs()
    );
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let job = submitted_job(&stderr);
    // Priority 100: the pack's four tasks were leased before any of the
    // ordinary job's.
    let leased: Vec<String> = c
        .coordinator_log()
        .lines()
        .filter(|l| l.contains("task leased"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("job="))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        leased.iter().take(4).collect::<Vec<_>>(),
        [&job, &job, &job, &job],
        "lease order {leased:?}"
    );
    assert!(leased.contains(&ordinary), "{leased:?}");

    let sha = sha256_file(&zip);
    assert_eq!(printed_sha256(&stdout), sha);
    let m = check_zip(&zip, &c.dir().join("remote"));
    assert_eq!(outputs(&m).len(), 2);
    let st = c.status(&job);
    assert_eq!(st["priority"].as_i64(), Some(100), "{st:#}");
    assert_eq!(st["state"], "succeeded", "{st:#}");
    let canonical = std::fs::canonicalize(&zip).expect("zip");
    assert_eq!(st["bundle_path"].as_str(), canonical.to_str(), "{st:#}");
    assert_eq!(st["bundle_sha256"].as_str(), Some(sha.as_str()), "{st:#}");
    // `stemforge status JOB` shows it to a person too.
    let o = c.cli(&["status", &job]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("sha256 {sha}")),
        "{}",
        text(&o)
    );
    // The ordinary job carries no zip.
    let st = c.wait_job(&ordinary, Duration::from_secs(120));
    assert_eq!(st["bundle_path"], "", "{st:#}");
}

#[test]
fn the_same_job_packed_again_is_the_same_bytes() {
    let c = Cluster::builder("bundle-again")
        .start()
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    let mut c = c;
    c.start_worker("w1");
    // A second title whose only stem is not audio: its analysis fails for
    // good, so `retry` runs it (and the job's manifest, and its zip) again
    // while everything the zip holds stays as it was.
    let spec = std::fs::read_to_string(session()).expect("spec");
    let broken = session().with_file_name("stems/broken.wav");
    std::fs::write(&broken, b"this is not a WAV file").expect("write");
    let two = session().with_file_name("with-broken.toml");
    std::fs::write(
        &two,
        format!(
            "{spec}\n[[titles]]\nname = \"Broken\"\nstems = [{{ file = \"stems/broken.wav\", role = \"drums\" }}]\n"
        ),
    )
    .expect("write spec");
    let zip = c.dir().join("again.zip");
    let o = c.cli(&[
        "pack",
        two.to_str().expect("utf-8"),
        "--variants",
        "full",
        "-o",
        zip.to_str().expect("utf-8"),
    ]);
    // A title failed: exit 1, and the zip still holds what was delivered.
    assert_eq!(o.status.code(), Some(1), "{}\n{}", text(&o), c.logs());
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let job = submitted_job(&stderr);
    let first = std::fs::read(&zip).expect("zip");
    let first_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&zip).expect("zip"));
    let m = check_zip(&zip, &c.dir().join("again"));
    assert_eq!(
        outputs(&m).iter().filter(|o| o["file"].is_object()).count(),
        1
    );
    assert_eq!(m["titles"][1]["status"], "failed", "{:#}", m["titles"][1]);

    let o = c.cli(&["retry", &job]);
    assert!(o.status.success(), "{}", text(&o));
    let st = c.wait_job(&job, Duration::from_secs(120));
    assert_eq!(st["state"], "failed", "{st:#}");
    // The manifest task ran again and wrote a new file...
    let again_inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&zip).expect("zip"));
    assert_ne!(first_inode, again_inode, "the zip was not written again");
    // ...of the same bytes.
    let again = std::fs::read(&zip).expect("zip");
    assert_eq!(first.len(), again.len());
    assert!(first == again, "a job's zip written twice differs");
    assert_eq!(
        st["bundle_sha256"].as_str(),
        Some(hex::encode(Sha256::digest(&again)).as_str())
    );
}

#[test]
fn a_coordinator_refuses_a_zip_outside_its_media_roots() {
    let session_dir = session().parent().expect("session folder").to_path_buf();
    let builder = Cluster::builder("bundle-roots");
    let roots = format!("{}:{}", session_dir.display(), builder.dir().display());
    let mut c = builder
        .env("STEMFORGE_MEDIA_ROOTS", roots)
        .start()
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    c.start_worker("w1");
    let outside = scratch("bundle-outside");
    let zip = outside.join("pack.zip");
    let out = c.dir().join("inside");
    let o = c.cli(&[
        "pack",
        session().to_str().expect("utf-8"),
        "--variants",
        "full",
        "--out",
        out.to_str().expect("utf-8"),
        "-o",
        zip.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("bundle_path {}", zip.display()))
            && err.contains("outside the media roots")
            && err.contains("add one to media_roots"),
        "{err}"
    );
    assert!(!zip.exists());
    let jobs = c.cli(&["status", "--json"]);
    let jobs: Value = serde_json::from_slice(&jobs.stdout).expect("json");
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs:#}");
}

/// `pack DIR`: a folder of stems as it arrives (roles and the reference
/// from file names), with no spec, packed with the default variants.
#[test]
fn a_folder_of_stems_packs_with_no_spec() {
    let stems = session().parent().expect("session").join("stems");
    let dir = scratch("bundle-dir");
    let zip = dir.join("night-drive.zip");
    let o = stemforge_env(
        &[
            "pack",
            stems.to_str().expect("utf-8"),
            "-o",
            zip.to_str().expect("utf-8"),
            "--workers",
            "2",
        ],
        &[("SOURCE_DATE_EPOCH", "1795512600")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.join("night-drive");
    let manifest = check_zip(&zip, &out);
    // One title named after the folder, every stem placed by its name and
    // the mix found as the reference.
    let titles = manifest["titles"].as_array().expect("titles");
    assert_eq!(titles.len(), 1);
    assert_eq!(titles[0]["name"], "stems");
    let roles: Vec<&str> = titles[0]["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .filter_map(|i| i["role"].as_str())
        .collect();
    for r in ["drums", "bass", "keys", "vocals", "backing_vocals", "fx"] {
        assert!(roles.contains(&r), "{r} not in {roles:?}");
    }
    assert!(
        titles[0]["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .any(|i| i["kind"] == "reference"),
        "{:#}",
        titles[0]["inputs"]
    );
    assert!(outputs(&manifest).len() >= 10);
    assert_eq!(manifest["summary"]["all_pass"], true);
}
