//! A full output disk is a transient failure: the render attempt that hits
//! ENOSPC is reported with the disk-full message and queued for a retry
//! with backoff (not failed for good), and once space is freed the job
//! delivers every output, with no temporary file left behind.
//!
//! The output folder is a small tmpfs mounted by the test (as root, or
//! through `sudo -n`); without either the test says it is skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use stemforge_testkit::cluster::{Cluster, tasks};
use stemforge_testkit::signal::sine;
use stemforge_testkit::{read_json, text};

const RATE: u32 = 48_000;
const SECONDS: usize = 3;
const BACKOFF_BASE_MS: u64 = 400;
/// Enough attempts that the test frees the space long before they run out.
const MAX_ATTEMPTS: u32 = 30;

/// A tmpfs mounted for the test, unmounted (and its mount point removed)
/// when dropped, on every path out of the test.
struct Tmpfs {
    path: PathBuf,
    sudo: bool,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (a `mount -o size=` value) at `path`: as
    /// root, else through `sudo -n`. The error says why neither worked.
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        // World-writable: the test writes its filler as itself under sudo.
        let opts = format!("size={size},mode=0777");
        let mut why = Vec::new();
        for sudo in [false, true] {
            let mut cmd = if sudo {
                let mut c = Command::new("sudo");
                c.args(["-n", "mount"]);
                c
            } else {
                Command::new("mount")
            };
            cmd.args(["-t", "tmpfs", "-o", &opts, "tmpfs"]).arg(path);
            match cmd.output() {
                Ok(o) if o.status.success() => {
                    return Ok(Tmpfs {
                        path: path.to_path_buf(),
                        sudo,
                    });
                }
                Ok(o) => why.push(String::from_utf8_lossy(&o.stderr).trim().to_string()),
                Err(e) => why.push(e.to_string()),
            }
        }
        let _ = std::fs::remove_dir(path);
        Err(why.join("; "))
    }

    /// Free bytes, as `statfs` reports them (through `df`).
    fn free_bytes(&self) -> u64 {
        let o = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.path)
            .output()
            .expect("run df");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("df: {}", text(&o)))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut cmd = if self.sudo {
                let mut c = Command::new("sudo");
                c.args(["-n", "umount"]);
                c
            } else {
                Command::new("umount")
            };
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.path)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        // A worker still holding a file there: detach it lazily.
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount the tmpfs at {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Fills the file system under `path` with one file until it reports it
/// is full; returns how many bytes it took.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0x5au8; 1 << 16];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Flushed to the page cache is all a tmpfs has; nothing more fits.
    assert_eq!(
        f.write(&[0u8]).map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::StorageFull),
        "the filler did not fill {}",
        path.display()
    );
    written
}

/// One title of two 3 s stereo stems and a spec delivering its full mix.
fn session(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir session");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let frames = SECONDS * RATE as usize;
    for (name, freq, gain) in [("tone_a.wav", 220.0, 0.3), ("tone_b.wav", 331.0, 0.2)] {
        let x = sine(freq, RATE, frames, gain);
        let mut w = hound::WavWriter::create(dir.join(name), spec).expect("create stem");
        for v in x {
            let code = (v * 8_388_608.0).round() as i32;
            w.write_sample(code).expect("write sample");
            w.write_sample(code).expect("write sample");
        }
        w.finalize().expect("finalize stem");
    }
    let path = dir.join("disk.toml");
    std::fs::write(
        &path,
        r#"schema_version = 1

[delivery]
profile = "ebu-r128"
bit_depth = 24
output_dir = "deliverables"

[variants.full]

[[titles]]
name = "Tones"
stems = [
  { file = "tone_a.wav", role = "music" },
  { file = "tone_b.wav", role = "music" },
]
"#,
    )
    .expect("write spec");
    path
}

fn history(t: &Value) -> Vec<String> {
    t["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .map(|l| l.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn render_task(st: &Value) -> Option<&Value> {
    tasks(st).iter().find(|t| {
        t["label"]
            .as_str()
            .is_some_and(|l| l.starts_with("render "))
    })
}

/// Temporary files (`.NAME.<pid>-<n>.partial`) in a folder.
fn partials(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read the output folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_full_output_disk_is_retried_and_the_job_succeeds_once_space_is_freed() {
    let mut c = Cluster::builder("disk-full")
        .envs([
            ("STEMFORGE_LEASE_MS", "3000".to_string()),
            ("STEMFORGE_HEARTBEAT_MS", "250".to_string()),
            ("STEMFORGE_BACKOFF_BASE_MS", BACKOFF_BASE_MS.to_string()),
            ("STEMFORGE_BACKOFF_MAX_MS", "1000".to_string()),
            ("STEMFORGE_POLL_WAIT_MS", "300".to_string()),
            ("STEMFORGE_MAX_ATTEMPTS", MAX_ATTEMPTS.to_string()),
        ])
        .start()
        .unwrap_or_else(|e| panic!("cluster: {e}"));
    let spec = session(&c.dir().join("session"));
    // Declared after the cluster: unmounted before the cluster's folder goes.
    let out = c.dir().join("out");
    let disk = match Tmpfs::mount(&out, "4m") {
        Ok(d) => d,
        Err(why) => {
            println!("skipped: needs root to mount a tmpfs ({why})");
            return;
        }
    };
    let filler = out.join("filler.bin");
    let filled = fill(&filler);
    assert_eq!(disk.free_bytes(), 0, "the tmpfs is full");

    let job = c.submit(&spec, &out, &[]);
    c.start_worker("w1");
    // The first render attempt fails on the full disk and is queued again.
    let first = c.wait_for(
        "a render attempt failing on the full disk",
        Duration::from_secs(60),
        || {
            let st = c.try_status(&job)?;
            let t = render_task(&st)?;
            let h = history(t);
            (!h.is_empty()).then(|| (st.clone(), h))
        },
    );
    let (st, h) = first;
    let t = render_task(&st).expect("a render task");
    assert!(
        h[0].starts_with("attempt 1 on w1: ")
            && h[0].contains("No space left on device")
            && h[0].ends_with(&format!("; retry in {BACKOFF_BASE_MS} ms")),
        "the first attempt failed on the full disk and was queued for retry: {t:#}"
    );
    assert_ne!(t["state"], "failed", "not failed for good: {t:#}");
    assert_eq!(st["state"], "running", "{st:#}");

    // Free the space: the next attempt writes the output.
    std::fs::remove_file(&filler).expect("remove the filler");
    let freed = Instant::now();
    let st = c.wait_job(&job, Duration::from_secs(120));
    let after_free = freed.elapsed();
    assert_eq!(st["state"], "succeeded", "{st:#}");
    let t = render_task(&st).expect("a render task");
    let h = history(t);
    let attempts = t["attempt"].as_u64().unwrap_or_default();
    assert!(attempts >= 2, "{t:#}");
    assert_eq!(h.len() as u64, attempts, "{t:#}");
    for line in &h[..h.len() - 1] {
        assert!(
            line.contains("No space left on device") && line.contains("; retry in "),
            "every failed attempt was the full disk, retried: {t:#}"
        );
    }
    assert!(
        h[h.len() - 1].starts_with(&format!("attempt {attempts}: succeeded on w1")),
        "{t:#}"
    );
    for t in tasks(&st) {
        assert_eq!(t["state"], "succeeded", "{t:#}");
    }

    // Every output is there, nothing temporary is.
    let manifest = read_json(&out.join("manifest.json"));
    assert_eq!(manifest["summary"]["titles_failed"], 0, "{manifest:#}");
    let outputs = stemforge_testkit::outputs(&manifest);
    assert!(!outputs.is_empty(), "{manifest:#}");
    for o in &outputs {
        let name = o["file"]["path"].as_str().expect("an output file");
        let bytes = std::fs::metadata(out.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .len();
        assert_eq!(o["file"]["bytes"].as_u64(), Some(bytes), "{name}");
    }
    assert_eq!(partials(&out), Vec::<String>::new());
    println!(
        "filler {filled} bytes; render attempts {attempts} ({} on the full disk); \
         job done {:.2} s after the space was freed",
        attempts - 1,
        after_free.as_secs_f64()
    );
    drop(disk);
}
