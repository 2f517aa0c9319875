//! Quality, alignment, length and determinism of `dsp::resample`.
//!
//! Every measurement is printed (`cargo test --test resample -- --nocapture`):
//!
//! - **Pass band**: full-scale sines at 30 log-spaced frequencies from 20 Hz to
//!   20 kHz; the output amplitude is a least-squares fit of a sine (plus DC) of
//!   the known frequency over the steady middle of the output. Gain must be
//!   within ±0.1 dB; the residual after removing the fit (images, aliases,
//!   any error) must be ≤ −100 dBFS.
//! - **Stop band / aliasing**: full-scale sines above the output's Nyquist
//!   frequency (downsampling); everything that comes out (total RMS of the
//!   steady middle, as the level of a sine of that RMS) must be ≤ −100 dBFS.
//! - **Alignment**: band-limited Gaussian pulses and 15 kHz tone bursts at
//!   non-grid times near the start, middle and end are compared with the
//!   analytic signal at the output instants; the least-squares delay must be
//!   below 0.001 output frames.
//! - **Length**, **identity**, **block-size invariance**, **re-use after
//!   `finish`**, and a **golden hash** of the output bits, which fails if any
//!   bit changes on any machine.

use std::f64::consts::PI;

use stemforge_testkit::signal::{db, noise_planar as noise, sine};
use stemforge_worker::dsp::resample::{Resampler, convert};

/// The conversions the deliverables need.
const PAIRS: [(u32, u32); 4] = [
    (48_000, 44_100),
    (44_100, 48_000),
    (48_000, 96_000),
    (96_000, 48_000),
];

/// Streams `input` (planar) through a new converter in blocks whose sizes
/// cycle through `blocks`, then finishes.
fn stream(from: u32, to: u32, input: &[Vec<f64>], blocks: &[usize]) -> Vec<Vec<f64>> {
    let mut r = Resampler::new(from, to, input.len()).expect("supported conversion");
    let mut out = vec![Vec::new(); input.len()];
    feed(&mut r, input, blocks, &mut out);
    out
}

fn feed(r: &mut Resampler, input: &[Vec<f64>], blocks: &[usize], out: &mut [Vec<f64>]) {
    let n = input[0].len();
    let mut at = 0;
    let mut i = 0;
    while at < n {
        let k = blocks[i % blocks.len()].min(n - at);
        let chans: Vec<&[f64]> = input.iter().map(|c| &c[at..at + k]).collect();
        r.process(&chans, out);
        at += k;
        i += 1;
    }
    r.finish(out);
}

/// Least-squares fit of `a·cos(wn) + b·sin(wn) + c` to `y[n]` for `n` in
/// `range`; returns the amplitude `√(a² + b²)` and the RMS of what is left.
fn fit_sine(y: &[f64], w: f64, range: std::ops::Range<usize>) -> (f64, f64) {
    let mut m = [[0.0f64; 3]; 3];
    let mut v = [0.0f64; 3];
    for n in range.clone() {
        let b = [(w * n as f64).cos(), (w * n as f64).sin(), 1.0];
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += b[i] * b[j];
            }
            v[i] += b[i] * y[n];
        }
    }
    let p = solve3(m, v);
    let mut ss = 0.0;
    for n in range.clone() {
        let e = y[n] - (p[0] * (w * n as f64).cos() + p[1] * (w * n as f64).sin() + p[2]);
        ss += e * e;
    }
    (p[0].hypot(p[1]), (ss / range.len() as f64).sqrt())
}

/// Gaussian elimination with partial pivoting on a 3×3 system.
#[allow(clippy::needless_range_loop)]
fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> [f64; 3] {
    for c in 0..3 {
        let p = (c..3)
            .max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))
            .unwrap_or(c);
        m.swap(c, p);
        v.swap(c, p);
        for r in c + 1..3 {
            let f = m[r][c] / m[c][c];
            for k in c..3 {
                m[r][k] -= f * m[c][k];
            }
            v[r] -= f * v[c];
        }
    }
    let mut x = [0.0; 3];
    for c in (0..3).rev() {
        let s: f64 = (c + 1..3).map(|k| m[c][k] * x[k]).sum();
        x[c] = (v[c] - s) / m[c][c];
    }
    x
}

/// The steady middle of an output of `len` frames at `rate`: all but 0.1 s at each end.
fn middle(len: usize, rate: u32) -> std::ops::Range<usize> {
    let edge = rate as usize / 10;
    edge..len - edge
}

/// 30 log-spaced frequencies from 20 Hz to 20 kHz.
fn passband_freqs() -> Vec<f64> {
    (0..30)
        .map(|i| 20.0 * 1000f64.powf(f64::from(i) / 29.0))
        .collect()
}

#[test]
fn passband_is_flat_and_clean() {
    let mut worst_ripple = 0.0f64;
    let mut worst_residual = f64::NEG_INFINITY;
    for (from, to) in PAIRS {
        let (mut lo, mut hi, mut res) = (f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY);
        let mut res_at = 0.0;
        for f in passband_freqs() {
            let x = sine(f, from, from as usize, 1.0);
            let y = convert(&[&x], from, to).expect("supported").remove(0);
            let (amp, rest) = fit_sine(&y, 2.0 * PI * f / f64::from(to), middle(y.len(), to));
            let gain = db(amp);
            let residual = db(rest * 2f64.sqrt());
            assert!(
                gain.abs() <= 0.1,
                "{from} → {to}: {f:.1} Hz gain {gain:+.6} dB"
            );
            assert!(
                residual <= -100.0,
                "{from} → {to}: {f:.1} Hz residual {residual:.1} dBFS"
            );
            lo = lo.min(gain);
            hi = hi.max(gain);
            if residual > res {
                res = residual;
                res_at = f;
            }
        }
        eprintln!(
            "pass band {from:>5} → {to:>5} Hz, 20 Hz–20 kHz (30 sines): gain {lo:+.2e} .. {hi:+.2e} dB; \
             worst residual (images/aliases/error) {res:.1} dBFS at {res_at:.0} Hz"
        );
        worst_ripple = worst_ripple.max(lo.abs()).max(hi.abs());
        worst_residual = worst_residual.max(res);
    }
    eprintln!(
        "pass band overall: max |gain| {worst_ripple:.2e} dB, worst residual {worst_residual:.1} dBFS"
    );
}

#[test]
fn downsampling_aliases_nothing() {
    // Full-scale sines above the output's Nyquist frequency.
    let cases: [(u32, u32, f64, f64); 2] = [
        (48_000, 44_100, 22_100.0, 23_990.0),
        (96_000, 48_000, 24_100.0, 47_900.0),
    ];
    for (from, to, f_lo, f_hi) in cases {
        let mut worst = f64::NEG_INFINITY;
        let mut worst_at = 0.0;
        let steps = 40;
        for i in 0..=steps {
            let f = f_lo + (f_hi - f_lo) * f64::from(i) / f64::from(steps);
            let x = sine(f, from, from as usize / 2, 1.0);
            let y = convert(&[&x], from, to).expect("supported").remove(0);
            let mid = middle(y.len(), to);
            let ms = y[mid.clone()].iter().map(|v| v * v).sum::<f64>() / mid.len() as f64;
            let level = db((2.0 * ms).sqrt());
            assert!(
                level <= -100.0,
                "{from} → {to}: {f:.0} Hz comes out at {level:.1} dBFS"
            );
            if level > worst {
                worst = level;
                worst_at = f;
            }
        }
        eprintln!(
            "stop band {from:>5} → {to:>5} Hz, {f_lo:.0}–{f_hi:.0} Hz (41 sines): \
             worst output {worst:.1} dBFS at {worst_at:.0} Hz"
        );
    }
}

#[test]
fn upsampling_leaves_no_images() {
    // A full-scale 20 kHz sine (the worst case: its image at 28 kHz is closest to
    // the stop-band edge) and a 1 kHz one; the spectrum above 24 kHz, measured by
    // a Goertzel filter at the image frequency and by the residual after the fit.
    for f in [1_000.0, 10_000.0, 20_000.0] {
        let x = sine(f, 48_000, 48_000, 1.0);
        let y = convert(&[&x], 48_000, 96_000).expect("supported").remove(0);
        let mid = middle(y.len(), 96_000);
        let image = 48_000.0 - f;
        let g = goertzel(&y[mid.clone()], image / 96_000.0);
        let (_, rest) = fit_sine(&y, 2.0 * PI * f / 96_000.0, mid);
        let residual = db(rest * 2f64.sqrt());
        eprintln!(
            "images 48 → 96 kHz, {f:.0} Hz: image at {image:.0} Hz {:.1} dBFS, \
             all residual {residual:.1} dBFS",
            db(g)
        );
        assert!(db(g) <= -100.0 && residual <= -100.0);
    }
}

/// Amplitude of the component at `f` (cycles per frame), Hann-windowed.
fn goertzel(y: &[f64], f: f64) -> f64 {
    let n = y.len();
    let (mut re, mut im, mut wsum) = (0.0, 0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * PI * i as f64 / n as f64).cos();
        let ph = 2.0 * PI * f * i as f64;
        re += w * v * ph.cos();
        im += w * v * ph.sin();
        wsum += w;
    }
    2.0 * re.hypot(im) / wsum
}

/// Analytic test signal: Gaussian pulses (σ = 0.5 ms) and 15 kHz Gaussian
/// tone bursts at times that fall between samples of either rate, near the
/// start, in the middle and near the end. Both are band-limited far below
/// 20 kHz to well under 1e-20.
fn pulses(t: f64, len_s: f64) -> f64 {
    let sigma = 0.0005;
    // (centre in s, tone burst?)
    let events = [
        (0.005_012_3, false),
        (0.105_37, true),
        (0.250_37, false),
        (0.371_1, true),
        (len_s - 0.006_1, true),
    ];
    events
        .iter()
        .map(|&(t0, burst)| {
            let u = (t - t0) / sigma;
            let env = 0.9 * (-0.5 * u * u).exp();
            if burst {
                env * (2.0 * PI * 15_000.0 * (t - t0)).cos()
            } else {
                env
            }
        })
        .sum()
}

#[test]
fn no_delay_and_exact_alignment() {
    let len_s = 0.5;
    for (from, to) in PAIRS {
        let n_in = (len_s * f64::from(from)) as usize;
        let x: Vec<f64> = (0..n_in)
            .map(|n| pulses(n as f64 / f64::from(from), len_s))
            .collect();
        let y = convert(&[&x], from, to).expect("supported").remove(0);
        let fs = f64::from(to);
        let want: Vec<f64> = (0..y.len()).map(|m| pulses(m as f64 / fs, len_s)).collect();
        // Derivative of the analytic signal, per output frame.
        let h = 1e-3;
        let slope: Vec<f64> = (0..y.len())
            .map(|m| {
                let t = m as f64 / fs;
                (pulses(t + h / fs, len_s) - pulses(t - h / fs, len_s)) / (2.0 * h)
            })
            .collect();
        let max_err = y
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        // Least-squares delay d (output frames): y(m) ≈ s(m − d) ≈ s(m) − d·s'(m).
        let num: f64 = y
            .iter()
            .zip(&want)
            .zip(&slope)
            .map(|((a, b), s)| (b - a) * s)
            .sum();
        let den: f64 = slope.iter().map(|s| s * s).sum();
        let delay = num / den;
        eprintln!(
            "alignment {from:>5} → {to:>5} Hz: delay {delay:+.2e} output frames, \
             max |error| vs analytic {max_err:.2e} ({:.1} dB re peak)",
            db(max_err / 0.9)
        );
        assert!(delay.abs() < 1e-3, "{from} → {to}: delay {delay}");
        assert!(max_err < 1e-4, "{from} → {to}: max error {max_err}");
    }
}

#[test]
fn impulse_lands_on_time() {
    // A unit impulse at input frame 1000 is the kernel itself, centred on input
    // time 1000; its centroid at the output must be the same instant.
    for (from, to) in PAIRS {
        let mut x = vec![0.0; 4000];
        x[1000] = 1.0;
        let y = convert(&[&x], from, to).expect("supported").remove(0);
        let expect = 1000.0 * f64::from(to) / f64::from(from);
        let s: f64 = y.iter().sum();
        let centroid = y.iter().enumerate().map(|(m, v)| m as f64 * v).sum::<f64>() / s;
        let peak = y
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(m, _)| m);
        eprintln!(
            "impulse {from:>5} → {to:>5} Hz: expected at {expect:.4}, centroid {centroid:.6} \
             (off by {:+.2e} output frames), peak at frame {peak}, sum {s:.9} (to/from {:.9})",
            centroid - expect,
            f64::from(to) / f64::from(from),
        );
        assert!((centroid - expect).abs() < 1e-5);
        assert!((peak as f64 - expect).abs() <= 0.5);
    }
}

#[test]
fn exact_output_length() {
    let pairs = [
        (48_000, 44_100),
        (44_100, 48_000),
        (48_000, 96_000),
        (96_000, 48_000),
        (44_100, 96_000),
        (96_000, 44_100),
        (48_000, 48_000),
    ];
    for (from, to) in pairs {
        for n in [
            0usize, 1, 2, 3, 7, 146, 147, 159, 160, 161, 1000, 4095, 4096, 4097, 48_001,
        ] {
            let x: Vec<f64> = (0..n).map(|i| (i % 17) as f64 / 17.0).collect();
            let expect = (n as f64 * f64::from(to) / f64::from(from) + 0.5).floor() as u64;
            assert_eq!(Resampler::output_frames(n as u64, from, to), expect);
            for blocks in [&[4096usize][..], &[1], &[7, 1000]] {
                let y = stream(from, to, &[x.clone(), x.clone()], blocks);
                assert_eq!(y[0].len() as u64, expect, "{from} → {to}, {n} frames");
                assert_eq!(y[1].len() as u64, expect);
            }
        }
    }
    eprintln!("lengths: round(n · to / from) for 15 lengths × 7 pairs × 3 block patterns");
}

#[test]
fn dc_passes_at_unity() {
    for (from, to) in PAIRS {
        let x = vec![0.25; from as usize / 5];
        let y = convert(&[&x], from, to).expect("supported").remove(0);
        let mid = middle(y.len(), to / 2);
        let worst = y[mid].iter().map(|v| (v - 0.25).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-14, "{from} → {to}: DC error {worst}");
    }
}

#[test]
fn identity_is_bit_exact() {
    let x = noise(2, 10_007, 7);
    for blocks in [&[4096usize][..], &[1], &[7, 1000, 3]] {
        let y = stream(48_000, 48_000, &x, blocks);
        assert_eq!(bits(&y), bits(&x));
    }
    let r = Resampler::new(44_100, 44_100, 2).expect("identity");
    assert_eq!(r.taps(), 0);
}

fn bits(y: &[Vec<f64>]) -> Vec<Vec<u64>> {
    y.iter()
        .map(|c| c.iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// FNV-1a over the output's bits, channel by channel.
fn fnv(y: &[Vec<f64>]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for c in y {
        for v in c {
            for b in v.to_bits().to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    h
}

#[test]
fn bit_identical_across_block_sizes_runs_and_reuse() {
    let x = noise(2, 3 * 48_000 + 123, 1);
    for (from, to) in PAIRS {
        let reference = bits(&stream(from, to, &x, &[4096]));
        for blocks in [
            &[4096usize][..],
            &[1],
            &[7],
            &[1000],
            &[1, 7, 1000, 4096, 13, 2],
        ] {
            let y = stream(from, to, &x, blocks);
            assert!(
                bits(&y) == reference,
                "{from} → {to}: blocks {blocks:?} differ"
            );
        }
        // The same converter, re-used after finish().
        let mut r = Resampler::new(from, to, 2).expect("supported");
        for _ in 0..2 {
            let mut out = vec![Vec::new(); 2];
            feed(&mut r, &x, &[333], &mut out);
            assert!(bits(&out) == reference, "{from} → {to}: re-use differs");
        }
    }
    eprintln!("determinism: 4 pairs × 5 block patterns + re-use: bit-identical");
}

/// The output bits themselves, pinned: a different filter, summation order,
/// maths library or CPU path anywhere changes these hashes. Update them only
/// with a deliberate change of the converter.
#[test]
fn golden_output_hashes() {
    let x = noise(2, 48_000 + 17, 42);
    let golden: [(u32, u32, u64); 4] = [
        (48_000, 44_100, 0xc2a2_a672_ddd6_9bd0),
        (44_100, 48_000, 0x5325_eb96_be22_ef51),
        (48_000, 96_000, 0x3783_e1b6_8745_796d),
        (96_000, 48_000, 0xab39_86c7_e9eb_ec9a),
    ];
    let mut bad = Vec::new();
    for (from, to, want) in golden {
        let h = fnv(&stream(from, to, &x, &[4096]));
        eprintln!("golden {from:>5} → {to:>5} Hz: {h:#018x}");
        if h != want {
            bad.push(format!("{from} → {to}: {h:#018x} != {want:#018x}"));
        }
    }
    assert!(bad.is_empty(), "output bits changed: {bad:?}");
}

#[test]
fn speed_48k_to_44k1_stereo() {
    // Informative only (no assertion on time): realtime factor of the
    // pipeline's case, in the optimised test build.
    let secs = 20;
    let x = noise(2, secs * 48_000, 3);
    let mut r = Resampler::new(48_000, 44_100, 2).expect("supported");
    let mut out: Vec<Vec<f64>> = (0..2)
        .map(|_| Vec::with_capacity(secs * 44_100 + 1))
        .collect();
    let t = std::time::Instant::now();
    feed(&mut r, &x, &[4096], &mut out);
    let el = t.elapsed().as_secs_f64();
    eprintln!(
        "speed 48 → 44.1 kHz stereo: {secs} s of audio in {:.1} ms, {:.0}× realtime",
        el * 1e3,
        secs as f64 / el
    );
    assert_eq!(out[0].len(), secs * 44_100);
}
