//! The test kit every integration test shares: run the real `stemforge`
//! binary, read WAV files with hound (independent of our decoder), measure
//! with ffmpeg at full precision, temporary folders, a cluster of processes. A crate of its own
//! (`stemforge-testkit`), a dev-dependency of the crates whose tests use it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod cluster;
mod ffmpeg;
pub mod signal;
pub use ffmpeg::{FfR128, TempDir, ffmpeg_r128, lra_ebu_rule};

/// The `stemforge` binary the tests drive: `STEMFORGE_BIN`, else the one
/// Cargo built beside the running test (`target/<profile>/stemforge`; the
/// binary's own package builds it for its integration tests).
pub fn bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(b) = std::env::var_os("STEMFORGE_BIN") {
            return PathBuf::from(b);
        }
        let exe = std::env::current_exe().expect("the test's own path");
        // target/<profile>/deps/<test> → target/<profile>/stemforge
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("a test binary under target/<profile>/deps");
        let b = profile_dir.join(format!("stemforge{}", std::env::consts::EXE_SUFFIX));
        assert!(
            b.exists(),
            "{} is not built: run the tests of stemforge-cli (cargo test -p stemforge-cli), or set STEMFORGE_BIN",
            b.display()
        );
        b
    })
    .clone()
}

/// A fresh folder under the system's temp folder, named after this test
/// process. Folders of test processes that are no longer running are
/// removed the first time a process asks for one, so failed runs keep
/// their evidence until the next run and nothing piles up.
pub fn scratch(name: &str) -> PathBuf {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(sweep_dead_scratch);
    let d = std::env::temp_dir().join(format!("stemforge-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// The binary as a command, with the render cache off: a test renders what
/// it asks for unless it turns the cache on (`STEMFORGE_CACHE=true` and a
/// `STEMFORGE_CACHE_DIR` of its own), so tests never share a cache or read
/// the user's.
pub fn command() -> Command {
    let mut c = Command::new(bin());
    c.env("STEMFORGE_CACHE", "false");
    c
}

/// Removes `stemforge-e2e-<pid>-*` folders whose process is gone.
fn sweep_dead_scratch() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("stemforge-e2e-"))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub fn stemforge(args: &[&str]) -> Output {
    command()
        .args(args)
        .env("STEMFORGE_LOG", "warn")
        .output()
        .expect("run stemforge")
}

/// As [`stemforge`], with extra environment variables.
pub fn stemforge_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    command()
        .args(args)
        .env("STEMFORGE_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run stemforge")
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One demo session per test binary (20 s of music), rendered once.
pub struct Demo {
    pub dir: PathBuf,
    pub spec: PathBuf,
    pub manifest: serde_json::Value,
}

pub fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let dir = scratch("demo");
        let d = dir.to_str().expect("utf-8 path");
        let o = stemforge(&["demo", d, "--seconds", "20", "--workers", "2"]);
        assert!(o.status.success(), "demo failed:\n{}", text(&o));
        let manifest = read_json(&dir.join("deliverables/manifest.json"));
        Demo {
            spec: dir.join("deliverables.toml"),
            dir,
            manifest,
        }
    })
}

pub fn read_json(p: &Path) -> serde_json::Value {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&bytes).expect("valid JSON")
}

/// Each output's file name and audio checksum (`audio_sha256`).
pub fn audio_hashes(m: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    outputs(m)
        .iter()
        .map(|o| {
            (
                o["file"]["path"].as_str().unwrap_or_default().to_string(),
                o["file"]["audio_sha256"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Every output entry of every title.
pub fn outputs(manifest: &serde_json::Value) -> Vec<serde_json::Value> {
    manifest["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .flat_map(|t| t["outputs"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Planar samples of a WAV file as f64 (ints scaled by 2^(bits-1)), read by hound.
pub fn read_wav(p: &Path) -> (hound::WavSpec, Vec<Vec<f64>>) {
    let mut r = hound::WavReader::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let spec = r.spec();
    let ch = spec.channels as usize;
    let mut out = vec![Vec::new(); ch];
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for (i, s) in r.samples::<f32>().enumerate() {
                out[i % ch].push(f64::from(s.expect("sample")));
            }
        }
        hound::SampleFormat::Int => {
            let scale = f64::from(1u32 << (spec.bits_per_sample - 1));
            for (i, s) in r.samples::<i32>().enumerate() {
                out[i % ch].push(f64::from(s.expect("sample")) / scale);
            }
        }
    }
    (spec, out)
}

/// Writes `spec_text` as `NAME.toml` beside the demo session (so its relative
/// stem paths resolve) and renders it into a fresh scratch folder `NAME`.
pub fn render_demo_variant(name: &str, spec_text: &str) -> (PathBuf, Output) {
    let path = demo().dir.join(format!("{name}.toml"));
    std::fs::write(&path, spec_text).expect("write spec");
    let out = scratch(name);
    let o = stemforge(&[
        "render",
        path.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    (out, o)
}

/// `stemforge render SPEC --out OUT`, which must succeed; its manifest.
pub fn render_ok(spec: &Path, out: &Path) -> serde_json::Value {
    let o = stemforge(&[
        "render",
        spec.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    read_json(&out.join("manifest.json"))
}

/// Sample-by-sample sum of stereo WAV files of equal length, read by hound.
pub fn sum_wavs(paths: &[PathBuf]) -> Vec<Vec<f64>> {
    let mut sum: Vec<Vec<f64>> = Vec::new();
    for p in paths {
        let (_, s) = read_wav(p);
        if sum.is_empty() {
            sum = vec![vec![0.0; s[0].len()]; s.len()];
        }
        for (acc, c) in sum.iter_mut().zip(&s) {
            for (a, x) in acc.iter_mut().zip(c) {
                *a += x;
            }
        }
    }
    sum
}

/// A session from `tests/support/real_session.py` (real instruments: a
/// General MIDI file through fluidsynth, a voice by espeak-ng) written into
/// a fresh scratch folder `name`, with the script's `args`. The Python is
/// `STEMFORGE_TEST_PYTHON` (it needs mido), else `python3`.
pub fn real_session(name: &str, args: &[&str]) -> PathBuf {
    let dir = scratch(name);
    let python = std::env::var("STEMFORGE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("real_session.py");
    let o = Command::new(&python)
        .arg(&script)
        .arg(&dir)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        o.status.success(),
        "real_session.py failed (it needs fluidsynth, fluid-soundfont-gm, espeak-ng, sox, ffmpeg, \
         planetblupi-music-midi and Python's mido; .ci/run installs them and sets STEMFORGE_TEST_PYTHON):\n{}",
        text(&o)
    );
    dir
}

/// Writes planar samples (scaled as [`read_wav`] gives them) as a 24-bit
/// WAV, rounded to the nearest code.
pub fn write_wav24(p: &Path, rate: u32, ch: &[Vec<f64>]) {
    let spec = hound::WavSpec {
        channels: ch.len() as u16,
        sample_rate: rate,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w =
        hound::WavWriter::create(p, spec).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    let max = f64::from((1 << 23) - 1);
    for i in 0..ch[0].len() {
        for c in ch {
            let code = (c[i] * 8_388_608.0).round().clamp(-max - 1.0, max);
            w.write_sample(code as i32).expect("sample");
        }
    }
    w.finalize().expect("finalize");
}
