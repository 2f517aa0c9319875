//! EBU loudness conformance (EBU Tech 3341 v4, Tech 3342 v4) through our own
//! writer and reader: each signal is synthesised here in f64, quantised, written
//! by `bwf::BwfWriter`, decoded by `StemReader` and measured by `measure_file`,
//! exactly as `stemforge measure` does. Expected values and tolerances are the
//! EBU ones (±0.1 LU for M/S/I, ±1 LU for LRA, −0.4/+0.2 dB for true peak).
//!
//! Every case prints its measured value and error (`--nocapture` to see them).
//! The mono case is also checked against ffmpeg's ebur128 filter, so ffmpeg
//! must be on the PATH (the test fails, not skips, without it).

use std::f64::consts::{PI, TAU};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use deliverables_spec::compliance::Measurement;
use stemforge_worker::bwf::{Bext, BwfWriter, WavFormat};
use stemforge_worker::measure_file::{FileMeasurement, measure_file};

use stemforge_testkit::signal::{amp, sine_periodic};
use stemforge_testkit::{TempDir, ffmpeg_r128};

const RATE: u32 = 48_000;
const FS: f64 = RATE as f64;

// ---------------------------------------------------------------- files

/// How samples are quantised in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fmt {
    /// 24-bit integer PCM: `round(x · 2^23)`, clamped to the code range.
    I24,
    /// 32-bit IEEE float (values above full scale survive).
    F32,
}

/// Writes `frames` frames of `channels` channels with `BwfWriter`; `frame(n, out)` fills
/// frame `n` (f64, full scale 1.0).
fn write_wav(
    path: &Path,
    channels: u16,
    fmt: Fmt,
    frames: usize,
    mut frame: impl FnMut(usize, &mut [f64]),
) {
    let format = WavFormat {
        sample_rate: RATE,
        channels,
        bits_per_sample: match fmt {
            Fmt::I24 => 24,
            Fmt::F32 => 32,
        },
        float: fmt == Fmt::F32,
        channel_mask: None,
    };
    let file = BufWriter::new(File::create(path).expect("create wav"));
    let mut w = BwfWriter::new(file, &format, &Bext::default()).expect("bwf writer");
    let mut x = vec![0.0; usize::from(channels)];
    let mut bytes = Vec::with_capacity(4096 * 4 * usize::from(channels));
    for n in 0..frames {
        frame(n, &mut x);
        for &v in &x {
            match fmt {
                Fmt::I24 => {
                    let code = (v * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
                    bytes.extend_from_slice(&code.to_le_bytes()[..3]);
                }
                Fmt::F32 => bytes.extend_from_slice(&(v as f32).to_le_bytes()),
            }
        }
        if bytes.len() >= 4096 * 4 * usize::from(channels) {
            w.write_samples(&bytes).expect("write samples");
            bytes.clear();
        }
    }
    w.write_samples(&bytes).expect("write samples");
    let (_, layout) = w.finish().expect("finish wav");
    assert_eq!(layout.frames, frames as u64, "{}", path.display());
}

/// Decodes and measures with our reader and meter, as `stemforge measure` does.
fn measure(path: &Path) -> FileMeasurement {
    let f = measure_file(path, None, Default::default())
        .unwrap_or_else(|e| panic!("measure_file({}): {e}", path.display()));
    assert_eq!(f.sample_rate, RATE);
    f
}

// ---------------------------------------------------------------- signals

/// `sin(2π · 1000 · n / 48000)`, exactly periodic (48 samples), phase continuous in `n`.
fn sine_1k(n: usize) -> f64 {
    sine_periodic(1000, RATE, n)
}

/// A piecewise-constant level: `(dBFS, seconds)` segments back to back, boundaries on the
/// nearest sample of the running total.
struct Segments {
    ends: Vec<usize>,
    amps: Vec<f64>,
}

impl Segments {
    fn new(segs: &[(f64, f64)]) -> Self {
        let mut t = 0.0;
        let mut ends = Vec::new();
        let mut amps = Vec::new();
        for &(db, secs) in segs {
            t += secs;
            ends.push((t * FS).round() as usize);
            amps.push(amp(db));
        }
        Segments { ends, amps }
    }

    fn frames(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    fn amp(&self, n: usize) -> f64 {
        let i = self.ends.partition_point(|&e| e <= n);
        self.amps[i.min(self.amps.len() - 1)]
    }

    /// The same 1 kHz sine, at this level, on every channel.
    fn write_sine(&self, path: &Path, channels: u16) {
        write_wav(path, channels, Fmt::I24, self.frames(), |n, out| {
            let x = self.amp(n) * sine_1k(n);
            out.fill(x);
        });
    }
}

/// A Hann taper of `FADE` at both ends of `frames` frames: gain at frame `n`.
fn taper(n: usize, frames: usize) -> f64 {
    const FADE: usize = RATE as usize / 100; // 10 ms
    let d = n.min(frames - 1 - n);
    if d >= FADE {
        1.0
    } else {
        0.5 - 0.5 * (PI * d as f64 / FADE as f64).cos()
    }
}

// ---------------------------------------------------------------- checks

/// One expected figure of one case.
struct Row {
    case: String,
    quantity: &'static str,
    expected: f64,
    measured: Option<f64>,
    /// Allowed error below / above the expected value.
    minus: f64,
    plus: f64,
}

impl Row {
    fn new(
        case: impl Into<String>,
        quantity: &'static str,
        expected: f64,
        measured: Option<f64>,
        (minus, plus): (f64, f64),
    ) -> Self {
        Row {
            case: case.into(),
            quantity,
            expected,
            measured,
            minus,
            plus,
        }
    }

    fn error(&self) -> Option<f64> {
        self.measured.map(|m| m - self.expected)
    }

    fn ok(&self) -> bool {
        // 1e-9: the expected values are decimal, the measurements rounded to 3 decimals.
        self.error()
            .is_some_and(|e| e >= -self.minus - 1e-9 && e <= self.plus + 1e-9)
    }
}

/// ±0.1 LU (EBU Tech 3341 for M, S and I).
const LU: (f64, f64) = (0.1, 0.1);
/// ±1 LU (EBU Tech 3342 for LRA).
const LRA: (f64, f64) = (1.0, 1.0);
/// −0.4 / +0.2 dB (EBU Tech 3341 for true peak).
const TP: (f64, f64) = (0.4, 0.2);
/// ±0.01 dB: a sample peak is exact up to 24-bit quantisation.
const SAMPLE: (f64, f64) = (0.01, 0.01);

/// Prints every row as a table, then fails listing the rows out of tolerance.
fn report(title: &str, rows: &[Row]) {
    let mut s = format!(
        "\n== {title}\n{:<44} {:<16} {:>9} {:>9} {:>8}  {:<13} ok\n",
        "case", "quantity", "expected", "measured", "error", "tolerance"
    );
    for r in rows {
        let fmt3 = |v: Option<f64>| v.map_or_else(|| "None".to_string(), |v| format!("{v:.3}"));
        s.push_str(&format!(
            "{:<44} {:<16} {:>9.3} {:>9} {:>8}  {:<13} {}\n",
            r.case,
            r.quantity,
            r.expected,
            fmt3(r.measured),
            r.error()
                .map_or_else(|| "—".to_string(), |e| format!("{e:+.3}")),
            format!("-{}/+{}", r.minus, r.plus),
            if r.ok() { "yes" } else { "NO" }
        ));
    }
    eprintln!("{s}");
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| !r.ok())
        .map(|r| {
            format!(
                "{} {}: expected {} -{}/+{}, measured {:?}",
                r.case, r.quantity, r.expected, r.minus, r.plus, r.measured
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{title}: out of tolerance:\n{}",
        bad.join("\n")
    );
}

/// Runs `f` on every item on its own thread (the cases are independent).
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|it| s.spawn(|| f(it))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("case thread panicked"))
            .collect()
    })
}

// ---------------------------------------------------------------- EBU Tech 3341

/// Cases 1–6: integrated loudness of stepped 1 kHz sines (5.0 for case 6).
#[test]
fn tech3341_cases_1_to_6_integrated() {
    let dir = TempDir::new("3341-1-6");
    type Case = (&'static str, u16, Vec<(f64, f64)>);
    let stereo: Vec<Case> = vec![
        ("3341 #1 stereo -23 dBFS 20 s", 2, vec![(-23.0, 20.0)]),
        ("3341 #2 stereo -33 dBFS 20 s", 2, vec![(-33.0, 20.0)]),
        (
            "3341 #3 -36/-23/-36 dBFS 10/60/10 s",
            2,
            vec![(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)],
        ),
        (
            "3341 #4 -72/-36/-23/-36/-72 dBFS",
            2,
            vec![
                (-72.0, 10.0),
                (-36.0, 10.0),
                (-23.0, 60.0),
                (-36.0, 10.0),
                (-72.0, 10.0),
            ],
        ),
        (
            "3341 #5 -26/-20/-26 dBFS 20/20.1/20 s",
            2,
            vec![(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)],
        ),
    ];
    let mut cases: Vec<(String, Measurement)> = par_map(&stereo, |(name, ch, segs)| {
        let path = dir.path(&format!("{}.wav", name.split(' ').nth(1).expect("#n")));
        Segments::new(segs).write_sine(&path, *ch);
        let f = measure(&path);
        assert_eq!(f.channels, usize::from(*ch));
        (name.to_string(), f.measurement)
    });

    // Case 6: 5.0 (L R C Ls Rs), 20 s: L, R at -28, C at -24, Ls, Rs at -30 dBFS.
    let p6 = dir.path("6.wav");
    let levels = [-28.0, -28.0, -24.0, -30.0, -30.0].map(amp);
    write_wav(&p6, 5, Fmt::I24, 20 * RATE as usize, |n, out| {
        let s = sine_1k(n);
        for (o, a) in out.iter_mut().zip(levels) {
            *o = a * s;
        }
    });
    let f6 = measure(&p6);
    assert_eq!(f6.channels, 5);
    assert!(f6.layout.starts_with("5.0"), "layout {}", f6.layout);
    cases.push((
        "3341 #6 5.0 L,R -28 C -24 Ls,Rs -30 dBFS".into(),
        f6.measurement,
    ));

    let mut rows = Vec::new();
    for (name, m) in &cases {
        rows.push(Row::new(
            name.clone(),
            "integrated LUFS",
            if name.contains("#2") { -33.0 } else { -23.0 },
            m.integrated_lufs,
            LU,
        ));
    }
    // Case 1 also: the maximum momentary and short-term loudness of a steady -23 LUFS tone.
    let m1 = &cases[0].1;
    rows.push(Row::new(
        cases[0].0.clone(),
        "max momentary",
        -23.0,
        m1.max_momentary_lufs,
        LU,
    ));
    rows.push(Row::new(
        cases[0].0.clone(),
        "max short-term",
        -23.0,
        m1.max_short_term_lufs,
        LU,
    ));
    report("EBU Tech 3341 cases 1-6 (integrated loudness)", &rows);
}

/// Case 9: (-20 dBFS 1.34 s, -30 dBFS 1.66 s) × 5: every 3 s window reads -23.0.
#[test]
fn tech3341_case_9_short_term() {
    let dir = TempDir::new("3341-9");
    let p = dir.path("9.wav");
    let segs: Vec<(f64, f64)> = (0..5)
        .flat_map(|_| [(-20.0, 1.34), (-30.0, 1.66)])
        .collect();
    let seg = Segments::new(&segs);
    assert_eq!(seg.frames(), 15 * RATE as usize);
    seg.write_sine(&p, 2);
    let m = measure(&p).measurement;
    let st = &m.short_term_lufs;
    assert_eq!(st.len(), 15, "one short-term entry per second: {st:?}");
    assert!(
        st[..2].iter().all(Option::is_none),
        "no short-term value before 3 s: {st:?}"
    );
    let mut rows: Vec<Row> = st
        .iter()
        .enumerate()
        .skip(2)
        .map(|(i, v)| {
            Row::new(
                format!("3341 #9 window ending at {:>2} s", i + 1),
                "short-term LUFS",
                -23.0,
                *v,
                LU,
            )
        })
        .collect();
    rows.push(Row::new(
        "3341 #9 (every 100 ms, max)",
        "max short-term",
        -23.0,
        m.max_short_term_lufs,
        LU,
    ));
    report("EBU Tech 3341 case 9 (short-term loudness)", &rows);
}

/// Cases 15-19: true peak of a 12 kHz (fs/4) sine at 48 kHz, where the sample grid
/// misses the peak by the phase.
#[test]
fn tech3341_cases_15_to_19_true_peak() {
    let dir = TempDir::new("3341-tp");
    // (case, amplitude, phase in degrees, format, expected dBTP)
    let cases = [
        (15, 0.50, 0.0, Fmt::I24, -6.0),
        (16, 0.50, 45.0, Fmt::I24, -6.0),
        (17, 0.50, 60.0, Fmt::I24, -6.0),
        (18, 0.50, 67.5, Fmt::I24, -6.0),
        (19, 1.41, 45.0, Fmt::F32, 3.0),
    ];
    // 1 s of tone plus 10 ms Hann fades; the tapers keep the onset from ringing.
    let frames = RATE as usize + 2 * (RATE as usize / 100);
    let results = par_map(&cases, |&(case, a, deg, fmt, _)| {
        let p = dir.path(&format!("{case}.wav"));
        let phi = deg * PI / 180.0;
        write_wav(&p, 2, fmt, frames, |n, out| {
            // fs/4: sin(2π n/4 + φ), with n mod 4 so the grid is exact.
            let x = a * taper(n, frames) * (PI / 2.0 * (n % 4) as f64 + phi).sin();
            out.fill(x);
        });
        measure(&p).measurement
    });
    let mut rows = Vec::new();
    for (&(case, a, deg, fmt, tp), m) in cases.iter().zip(&results) {
        let name = format!("3341 #{case} 12 kHz A={a} phase {deg}° {fmt:?}");
        rows.push(Row::new(
            name.clone(),
            "true peak dBTP",
            tp,
            m.true_peak_dbtp,
            TP,
        ));
        // The sample peak the grid sees: A · max_n |sin(nπ/2 + φ)|.
        let phi = deg * PI / 180.0;
        let grid = (0..4)
            .map(|n| (PI / 2.0 * f64::from(n) + phi).sin().abs())
            .fold(0.0, f64::max);
        rows.push(Row::new(
            name,
            "sample peak dBFS",
            20.0 * (a * grid).log10(),
            m.sample_peak_dbfs,
            SAMPLE,
        ));
    }
    report("EBU Tech 3341 cases 15-19 (true peak)", &rows);
    // The inter-sample cases are real: the sample grid reads under the true peak by what
    // the phase predicts (3.01 dB at 45°, 1.25 at 60°, 0.69 at 67.5°).
    for (&(case, _, deg, _, _), m) in cases.iter().zip(&results) {
        let phi = deg * PI / 180.0;
        let gap = -20.0 * phi.sin().abs().max(phi.cos().abs()).log10();
        let (tp, sp) = (
            m.true_peak_dbtp.expect("tp"),
            m.sample_peak_dbfs.expect("sp"),
        );
        assert!(
            (tp - sp - gap).abs() < 0.05,
            "case {case}: true peak {tp} dBTP, sample peak {sp} dBFS: gap {:.3} dB, expected {gap:.3}",
            tp - sp
        );
    }
}

// ---------------------------------------------------------------- EBU Tech 3342

/// Cases 1-4: loudness range of stepped stereo 1 kHz sines.
#[test]
fn tech3342_cases_1_to_4_loudness_range() {
    let dir = TempDir::new("3342");
    /// (name, (dBFS, seconds) segments, expected LRA)
    type Case = (&'static str, Vec<(f64, f64)>, f64);
    let cases: Vec<Case> = vec![
        (
            "3342 #1 -20/-30 dBFS 20 s each",
            vec![(-20.0, 20.0), (-30.0, 20.0)],
            10.0,
        ),
        (
            "3342 #2 -20/-15 dBFS 20 s each",
            vec![(-20.0, 20.0), (-15.0, 20.0)],
            5.0,
        ),
        (
            "3342 #3 -40/-20 dBFS 20 s each",
            vec![(-40.0, 20.0), (-20.0, 20.0)],
            20.0,
        ),
        (
            "3342 #4 -50/-35/-20/-35/-50 dBFS 20 s each",
            vec![
                (-50.0, 20.0),
                (-35.0, 20.0),
                (-20.0, 20.0),
                (-35.0, 20.0),
                (-50.0, 20.0),
            ],
            15.0,
        ),
    ];
    let results = par_map(&cases, |(name, segs, _)| {
        let path = dir.path(&format!("{}.wav", name.split(' ').nth(1).expect("#n")));
        Segments::new(segs).write_sine(&path, 2);
        measure(&path).measurement
    });
    let rows: Vec<Row> = cases
        .iter()
        .zip(&results)
        .map(|((name, _, lra), m)| Row::new(*name, "LRA LU", *lra, m.loudness_range_lu, LRA))
        .collect();
    report("EBU Tech 3342 cases 1-4 (loudness range)", &rows);
}

// ---------------------------------------------------------------- layouts

/// Mono: one channel of weight 1.0, so a -23 dBFS sine reads 3 dB under the
/// same sine on both channels of a stereo file: -26.0 LUFS (ffmpeg agrees).
#[test]
fn mono_sine_reads_3_db_under_stereo_and_matches_ffmpeg() {
    let dir = TempDir::new("mono");
    let p = dir.path("mono.wav");
    Segments::new(&[(-23.0, 20.0)]).write_sine(&p, 1);
    let f = measure(&p);
    assert_eq!((f.channels, f.layout.as_str()), (1, "mono"));
    let ff = ffmpeg_r128(&p).i;
    let expected = -23.0 - 10.0 * 2f64.log10(); // -26.010
    let rows = [
        Row::new(
            "mono -23 dBFS 1 kHz 20 s",
            "integrated LUFS",
            expected,
            f.measurement.integrated_lufs,
            LU,
        ),
        Row::new(
            "mono -23 dBFS 1 kHz 20 s vs ffmpeg",
            "integrated LUFS",
            ff,
            f.measurement.integrated_lufs,
            LU,
        ),
    ];
    report("mono (BS.1770 weight 1.0)", &rows);
}

/// 5.1 with only the LFE carrying signal: silent to BS.1770 (the LFE has no
/// weight), yet the peaks report the LFE's level.
#[test]
fn lfe_only_5_1_has_no_loudness_but_a_true_peak() {
    let dir = TempDir::new("lfe");
    let p = dir.path("lfe.wav");
    let frames = 10 * RATE as usize;
    let a = 0.5; // -6.02 dBFS
    write_wav(&p, 6, Fmt::I24, frames, |n, out| {
        out.fill(0.0);
        // 60 Hz: 800 samples per period, the grid hits the crest.
        out[3] = a * taper(n, frames) * (TAU * (n % 800) as f64 / 800.0).sin();
    });
    let f = measure(&p);
    assert_eq!(f.channels, 6);
    assert!(f.layout.contains("LFE excluded"), "layout {}", f.layout);
    let m = &f.measurement;
    eprintln!(
        "\n== 5.1, LFE only (60 Hz, -6.02 dBFS)\nintegrated {:?}  LRA {:?}  max M {:?}  max S {:?}  \
         true peak {:?}  sample peak {:?}\nnotes {:?}",
        m.integrated_lufs,
        m.loudness_range_lu,
        m.max_momentary_lufs,
        m.max_short_term_lufs,
        m.true_peak_dbtp,
        m.sample_peak_dbfs,
        m.notes
    );
    assert_eq!(m.integrated_lufs, None, "the LFE is excluded from loudness");
    assert_eq!(m.max_momentary_lufs, None);
    assert_eq!(m.max_short_term_lufs, None);
    assert!(
        m.notes.iter().any(|n| n.contains("silent")),
        "a note says why there is no loudness: {:?}",
        m.notes
    );
    let peak = 20.0 * a.log10();
    report(
        "5.1, LFE only",
        &[
            Row::new(
                "5.1 LFE-only 60 Hz",
                "true peak dBTP",
                peak,
                m.true_peak_dbtp,
                TP,
            ),
            Row::new(
                "5.1 LFE-only 60 Hz",
                "sample peak dBFS",
                peak,
                m.sample_peak_dbfs,
                SAMPLE,
            ),
        ],
    );
}
