//! Property tests for the preflight path on damaged input: a title of three
//! small stems and a reference mix (written here with hound), one stem
//! damaged per case — header bytes overwritten, bytes inserted or deleted,
//! the file cut short, or replaced by garbage — then the whole of
//! `preflight::run` (open, three streaming passes, window capture, FFT
//! placement, null test, findings). It must never panic, must report every
//! stem, and every finding must name a file and say what to do.
//!
//! Case count: `PROPTEST_CASES` when set, else 600 (a few seconds). The
//! extended run is `PROPTEST_CASES=100000 cargo test --release -p
//! stemforge-worker --test preflight_props`.

use std::path::PathBuf;

use deliverables_spec::model::PreflightSpec;
use proptest::prelude::*;
use stemforge_worker::preflight::{InputFile, PreflightInput, Severity, run};

const FRAMES: usize = 2400;
const RATE: u32 = 48_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(600);
    ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

/// Stem `seed`: a sine with whole cycles in the file (no DC) at its own level
/// (stems at one common peak level read as printed through one limiter).
fn signal(seed: u32, t: usize) -> f64 {
    let f = 200.0 * f64::from(seed + 1);
    let a = 0.2 + 0.05 * f64::from(seed);
    a * stemforge_testkit::signal::sine_at(f, RATE, t)
}

/// A 24-bit stereo WAV of stem `seed` (or, for `None`, the sum of stems 0..3).
fn wav_bytes(seed: Option<u32>) -> Vec<u8> {
    wav_bytes_with(seed, 2)
}

/// As [`wav_bytes`], with `channels` identical channels.
fn wav_bytes_with(seed: Option<u32>, channels: u16) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: RATE,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).expect("wav writer");
        for t in 0..FRAMES {
            let v = match seed {
                Some(s) => signal(s, t),
                None => (0..3).map(|s| signal(s, t)).sum(),
            };
            let code = (v * 8_388_607.0).round() as i32;
            for _ in 0..channels {
                w.write_sample(code).expect("sample");
            }
        }
        w.finalize().expect("finalize");
    }
    cur.into_inner()
}

#[derive(Debug, Clone)]
enum Damage {
    Overwrite(Vec<(usize, u8)>),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Cut(usize),
    Garbage(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        prop::collection::vec((0usize..96, any::<u8>()), 1..8).prop_map(Damage::Overwrite),
        (0usize..96, prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, b)| Damage::Insert(at, b)),
        (0usize..96, 1usize..32).prop_map(|(at, n)| Damage::Delete(at, n)),
        (0usize..FRAMES * 6 + 44).prop_map(Damage::Cut),
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Damage::Garbage),
    ]
}

fn apply(mut b: Vec<u8>, d: &Damage) -> Vec<u8> {
    match d {
        Damage::Overwrite(list) => {
            for &(at, v) in list {
                if let Some(x) = b.get_mut(at) {
                    *x = v;
                }
            }
            b
        }
        Damage::Insert(at, bytes) => {
            let at = (*at).min(b.len());
            b.splice(at..at, bytes.iter().copied());
            b
        }
        Damage::Delete(at, n) => {
            let at = (*at).min(b.len());
            let end = (at + n).min(b.len());
            b.drain(at..end);
            b
        }
        Damage::Cut(n) => {
            b.truncate(*n);
            b
        }
        Damage::Garbage(g) => g.clone(),
    }
}

struct Session {
    dir: PathBuf,
    stems: [Vec<u8>; 3],
}

impl Session {
    fn new() -> Session {
        let dir = std::env::temp_dir().join(format!(
            "stemforge-preflight-props-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("mix.wav"), wav_bytes(None)).expect("write mix");
        Session {
            dir,
            stems: [0, 1, 2].map(|s| wav_bytes(Some(s))),
        }
    }

    fn input(&self, damaged: usize, bytes: &[u8]) -> PreflightInput {
        let file = |name: String| InputFile {
            path: self.dir.join(&name),
            name,
        };
        for (i, s) in self.stems.iter().enumerate() {
            let b = if i == damaged { bytes } else { s };
            std::fs::write(self.dir.join(format!("stem{i}.wav")), b).expect("write stem");
        }
        PreflightInput {
            title: "props".into(),
            stems: (0..3).map(|i| file(format!("stem{i}.wav"))).collect(),
            reference: Some(file("mix.wav".into())),
            delivery_rate: None,
            layout: Default::default(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn settings() -> PreflightSpec {
    // A short search keeps the FFTs small on these 50 ms files.
    PreflightSpec {
        max_offset_s: 0.005,
        ..PreflightSpec::default()
    }
}

fn check_report(s: &Session, damaged: usize, bytes: &[u8]) -> Result<(), TestCaseError> {
    let input = s.input(damaged, bytes);
    let report = run(&input, &settings(), &|_| {});
    prop_assert_eq!(report.stems.len(), 3);
    prop_assert!(report.reference.is_some());
    let name = format!("stem{damaged}.wav");
    for f in &report.findings {
        prop_assert!(!f.files.is_empty(), "finding without a file: {:?}", f);
        prop_assert!(!f.message.is_empty() && !f.fix.is_empty(), "{:?}", f);
    }
    // An unreadable stem is an error naming it.
    if report.stems[damaged].format.is_none() {
        prop_assert!(
            report.findings.iter().any(|f| f.severity == Severity::Error
                && f.check == "unreadable"
                && f.files.contains(&name)),
            "{:#?}",
            report.findings
        );
    }
    // The undamaged stems are still read whole.
    for (i, st) in report.stems.iter().enumerate() {
        if i != damaged {
            prop_assert_eq!(st.frames, FRAMES as u64);
        }
    }
    Ok(())
}

#[test]
fn an_intact_session_nulls_exactly() {
    let s = Session::new();
    let input = s.input(0, &s.stems[0]);
    let report = run(&input, &settings(), &|_| {});
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    let n = report.null_test.expect("null test");
    assert!(n.pass);
    assert!(
        n.as_delivered.residual_db.is_some_and(|r| r < -120.0),
        "{n:?}"
    );
}

/// Mono stems with a mono reference: the null test runs in one channel.
#[test]
fn a_mono_session_nulls_in_one_channel() {
    let dir = std::env::temp_dir().join(format!("stemforge-preflight-mono-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = |name: String| InputFile {
        path: dir.join(&name),
        name,
    };
    std::fs::write(dir.join("mix.wav"), wav_bytes_with(None, 1)).expect("write");
    for s in 0..3u32 {
        std::fs::write(dir.join(format!("stem{s}.wav")), wav_bytes_with(Some(s), 1))
            .expect("write");
    }
    let input = PreflightInput {
        title: "mono".into(),
        stems: (0..3).map(|i| file(format!("stem{i}.wav"))).collect(),
        reference: Some(file("mix.wav".into())),
        delivery_rate: None,
        layout: Default::default(),
    };
    let report = run(&input, &settings(), &|_| {});
    let _ = std::fs::remove_dir_all(&dir);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    let n = report.null_test.expect("null test");
    assert!(
        n.pass && n.as_delivered.residual_db.is_some_and(|r| r < -120.0),
        "{n:?}"
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn damaged_stems_never_panic_and_are_reported(
        damaged in 0usize..3,
        d in damage(),
    ) {
        thread_local! {
            static SESSION: Session = Session::new();
        }
        SESSION.with(|s| {
            let bytes = apply(s.stems[damaged].clone(), &d);
            check_report(s, damaged, &bytes)
        })?;
    }
}
