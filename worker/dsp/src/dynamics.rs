//! Dynamics: a feed-forward, channel-linked compressor.
//!
//! Signal path per frame `i`:
//!
//! 1. **Detector** (channel-linked): the level is the largest over channels of
//!    `|x|` (peak) or of the mean square from a one-pole smoother with a 10 ms
//!    time constant (RMS), in dB with a floor at −200 dB.
//! 2. **Gain computer**: `gc = static_curve_db(level) − level` (≤ 0), the
//!    soft-knee curve of Giannoulis, Massberg & Reiss (2012).
//! 3. **Smoothing** in the dB domain on the gain reduction `−gc`, with the
//!    "smooth branching" one-pole: the attack coefficient while the reduction
//!    grows, the release coefficient while it recovers; `a = exp(−1 / (t·fs))`.
//! 4. **Makeup** is added and `g[i] = 10^(gs/20)` multiplies every channel of
//!    frame `i`. The envelope of the last block is kept for
//!    [`Node::gain_envelope`] (latency 0, so `output[i] = input[i] · g[i]`).
//!
//! All transcendental maths goes through [`DetMath`] (bit-identical on every
//! x86-64 worker), and the node never yields NaN from a non-NaN sample,
//! whatever its parameters.

use super::block::Block;
use super::math::DetMath;
use super::node::Node;

/// Level detection of the compressor's side chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detection {
    /// Sample peak: `|x|`.
    Peak,
    /// RMS over a 10 ms one-pole window.
    Rms,
}

/// Compressor settings, as in the spec (`[[…chain]] type = "compressor"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressorParams {
    /// Threshold, dBFS.
    pub threshold_db: f64,
    /// Ratio `R` (≥ 1; 1 is no compression).
    pub ratio: f64,
    /// Knee width `W`, dB (0 is a hard knee).
    pub knee_db: f64,
    /// Attack time constant, ms.
    pub attack_ms: f64,
    /// Release time constant, ms.
    pub release_ms: f64,
    /// Gain added after compression, dB.
    pub makeup_db: f64,
    pub detection: Detection,
}

/// Detector floor: levels are never below this (no log of 0).
const FLOOR_DB: f64 = -200.0;
/// Linear amplitude at the floor (−200 dB).
const FLOOR_AMP: f64 = 1e-10;
/// Linear amplitude the detector clamps to (+200 dB), so an infinite sample
/// cannot turn the gain into NaN.
const MAX_AMP: f64 = 1e10;
/// Time constant of the RMS detector's mean-square smoother.
const RMS_WINDOW_S: f64 = 0.010;
/// Gain reductions below this (dB) are flushed to 0: keeps the release tail
/// out of subnormal numbers. Deterministic, and far below audibility.
const FLUSH_DB: f64 = 1e-9;
/// Mean squares below this are flushed to 0 (far below the −200 dB floor).
const FLUSH_MS: f64 = 1e-30;

/// The static curve's parameters, made safe: finite threshold and knee,
/// ratio ≥ 1 (NaN → 1, ∞ allowed: a limiter's curve).
#[derive(Debug, Clone, Copy)]
struct Curve {
    threshold_db: f64,
    /// `R`, in [1, ∞].
    ratio: f64,
    /// `1/R − 1`, in [−1, 0].
    slope: f64,
    knee_db: f64,
}

/// `v` if finite and within [lo, hi], the nearest bound if beyond it, `nan`
/// if NaN.
fn clamp_or(v: f64, lo: f64, hi: f64, nan: f64) -> f64 {
    if v.is_nan() { nan } else { v.clamp(lo, hi) }
}

impl Curve {
    fn new(p: &CompressorParams) -> Curve {
        let ratio = if p.ratio >= 1.0 { p.ratio } else { 1.0 };
        Curve {
            threshold_db: clamp_or(p.threshold_db, -300.0, 300.0, 0.0),
            ratio,
            slope: 1.0 / ratio - 1.0,
            knee_db: clamp_or(p.knee_db, 0.0, 200.0, 0.0),
        }
    }

    /// No compression at all (ratio 1).
    fn is_identity(&self) -> bool {
        self.slope == 0.0
    }

    fn output_db(&self, x: f64) -> f64 {
        if self.is_identity() {
            return x;
        }
        let (t, w) = (self.threshold_db, self.knee_db);
        let over = 2.0 * (x - t);
        if over < -w {
            x
        } else if over > w {
            t + (x - t) / self.ratio
        } else if w > 0.0 {
            let d = x - t + w / 2.0;
            x + self.slope * d * d / (2.0 * w)
        } else {
            // Hard knee, exactly at the threshold.
            x
        }
    }

    /// Start of the knee (below it the curve is the identity), dB.
    fn knee_start_db(&self) -> f64 {
        self.threshold_db - self.knee_db / 2.0
    }
}

/// Static gain computer (Giannoulis, Massberg & Reiss 2012, soft knee): the
/// output level in dB for an input level in dB, without makeup.
///
/// With `T` the threshold, `R` the ratio and `W` the knee width: below
/// `T − W/2` the output is `x`; within the knee it is
/// `x + (1/R − 1)(x − T + W/2)² / (2W)`; above `T + W/2` it is
/// `T + (x − T)/R`. `W = 0` is a hard knee; `R = 1` is the identity.
/// Out-of-range parameters are made safe as in [`Compressor::new`].
pub fn static_curve_db(p: &CompressorParams, input_db: f64) -> f64 {
    Curve::new(p).output_db(input_db)
}

/// The side chain's level-to-reduction map, copied into the processing loop.
#[derive(Debug, Clone, Copy)]
struct Computer {
    curve: Curve,
    detection: Detection,
    /// Detector values (linear amplitude for peak, mean square for RMS)
    /// certainly below the knee: no logarithm needed, the reduction is 0.
    quiet_below: f64,
}

impl Computer {
    /// Target gain reduction (dB, ≥ 0) for a detector value: a linear
    /// amplitude (peak) or a mean square (RMS).
    #[inline]
    fn target_reduction_db(&self, detector: f64) -> f64 {
        if detector < self.quiet_below || self.curve.is_identity() {
            return 0.0;
        }
        let level_db = match self.detection {
            Detection::Peak => 20.0 * detector.max(FLOOR_AMP).dlog10(),
            Detection::Rms => 10.0 * detector.max(FLOOR_AMP * FLOOR_AMP).dlog10(),
        }
        .max(FLOOR_DB);
        // gc = curve(x) − x ≤ 0; the reduction is its negation.
        (level_db - self.curve.output_db(level_db)).max(0.0)
    }
}

/// Feed-forward, channel-linked compressor (see the module docs).
pub struct Compressor {
    params: CompressorParams,
    computer: Computer,
    makeup_db: f64,
    /// Linear makeup gain: the gain while no reduction is applied.
    makeup_gain: f64,
    attack_coef: f64,
    release_coef: f64,
    rms_coef: f64,
    /// Per-channel mean square (RMS detection).
    ms: Vec<f64>,
    /// Smoothed gain reduction, dB (≥ 0).
    reduction_db: f64,
    /// Per-frame linear gain of the last block; capacity `max_block`.
    envelope: Vec<f64>,
    envelope_len: usize,
}

/// One-pole coefficient `exp(−1 / (time_s · fs))`; 0 (instant) for a zero,
/// negative or NaN time, 1 (frozen) for an infinite one.
fn one_pole(time_s: f64, sample_rate: u32) -> f64 {
    let samples = time_s * f64::from(sample_rate);
    if samples > 0.0 {
        (-1.0 / samples).dexp()
    } else {
        0.0
    }
}

fn gain_from_db(db: f64) -> f64 {
    // exp is several times cheaper than pow; ln(10)/20 converts dB to nepers.
    (db * (std::f64::consts::LN_10 / 20.0)).dexp()
}

/// The RMS detector's mean squares of `L` channels at once (lane `l` reads
/// `xs(l)` and holds its state in `ms[l]`), each lane running exactly the
/// per-channel smoother and flush; every frame's `env[i]` then takes the
/// max with each lane's value in channel order, as channel after channel
/// over the block did.
#[inline]
#[allow(clippy::needless_range_loop)] // frame i across L parallel channels
fn mean_squares<'a, const L: usize>(
    xs: impl Fn(usize) -> &'a [f64],
    ms: &mut [f64],
    env: &mut [f64],
    a: f64,
    b: f64,
) {
    let xs: [&[f64]; L] = std::array::from_fn(|l| &xs(l)[..env.len()]);
    let mut m: [f64; L] = std::array::from_fn(|l| ms[l]);
    for (i, e) in env.iter_mut().enumerate() {
        for l in 0..L {
            let amp = detector_amp(xs[l][i]);
            let mut v = a * m[l] + b * (amp * amp);
            if v < FLUSH_MS {
                v = 0.0;
            }
            m[l] = v;
            *e = e.max(v);
        }
    }
    ms[..L].copy_from_slice(&m);
}

/// A sample made safe for the detector: NaN counts as silence, infinities
/// and huge values as +200 dB.
#[inline]
fn detector_amp(x: f64) -> f64 {
    let a = x.abs();
    if a.is_nan() { 0.0 } else { a.min(MAX_AMP) }
}

impl Compressor {
    /// A compressor with `p`. Parameters are validated by the spec crate;
    /// odd values are still made safe (NaN threshold → 0 dB, ratio < 1 or
    /// NaN → 1, negative or NaN knee → 0, non-positive or NaN times →
    /// instant, NaN makeup → 0), so the node never produces NaN from a
    /// finite input. Call [`Node::prepare`] before processing.
    pub fn new(p: CompressorParams) -> Compressor {
        let makeup_db = clamp_or(p.makeup_db, -200.0, 200.0, 0.0);
        Compressor {
            params: p,
            computer: Computer {
                curve: Curve::new(&p),
                detection: p.detection,
                quiet_below: 0.0,
            },
            makeup_db,
            makeup_gain: gain_from_db(makeup_db),
            attack_coef: 0.0,
            release_coef: 0.0,
            rms_coef: 0.0,
            ms: Vec::new(),
            reduction_db: 0.0,
            envelope: Vec::new(),
            envelope_len: 0,
        }
    }

    /// The parameters as given.
    pub fn params(&self) -> &CompressorParams {
        &self.params
    }
}

impl Node for Compressor {
    fn name(&self) -> &'static str {
        "compressor"
    }

    fn prepare(&mut self, sample_rate: u32, channels: usize, max_block: usize) {
        self.attack_coef = one_pole(self.params.attack_ms / 1000.0, sample_rate);
        self.release_coef = one_pole(self.params.release_ms / 1000.0, sample_rate);
        self.rms_coef = one_pole(RMS_WINDOW_S, sample_rate);
        let knee_start = self.computer.curve.knee_start_db();
        // The relative margin of 1e-9 keeps the shortcut strictly inside the
        // region where the full computation gives exactly 0 as well.
        self.computer.quiet_below = if knee_start > FLOOR_DB {
            let per_db = match self.params.detection {
                Detection::Peak => 20.0,
                Detection::Rms => 10.0,
            };
            10f64.dpowf(knee_start / per_db) * (1.0 - 1e-9)
        } else {
            0.0
        };
        self.ms = vec![0.0; channels];
        self.envelope = vec![0.0; max_block];
        self.reset();
    }

    fn reset(&mut self) {
        self.ms.fill(0.0);
        self.reduction_db = 0.0;
        self.envelope_len = 0;
    }

    fn process(&mut self, block: &mut Block) {
        let frames = block.frames();
        let cap = self.envelope.len();
        debug_assert!(
            frames <= cap,
            "compressor: block of {frames} frames, prepared for {cap}"
        );
        debug_assert!(
            self.params.detection == Detection::Peak || block.channels() <= self.ms.len(),
            "compressor: more channels than prepared"
        );
        self.envelope_len = 0;
        if cap == 0 {
            // Never prepared: nothing to hold state in; pass through.
            return;
        }
        // A block beyond the prepared size (a contract breach) is still
        // processed whole, in chunks; the envelope then holds the last chunk.
        let mut start = 0;
        while start < frames {
            let end = (start + cap).min(frames);
            self.process_range(block, start, end);
            start = end;
        }
    }

    fn gain_envelope(&self) -> Option<&[f64]> {
        Some(&self.envelope[..self.envelope_len])
    }
}

impl Compressor {
    /// Frames `start..end` of `block`, with `end − start` ≤ the envelope's
    /// capacity.
    fn process_range(&mut self, block: &mut Block, start: usize, end: usize) {
        let n = end - start;
        let computer = self.computer;
        let env = &mut self.envelope[..n];

        // 1. Detector, channel by channel (the max is order-independent):
        //    env[i] = max over channels of |x| (peak) or of the mean square.
        env.fill(0.0);
        match computer.detection {
            Detection::Peak => {
                for ch in 0..block.channels() {
                    let x = &block.channel(ch)[start..end];
                    for (e, &s) in env.iter_mut().zip(x) {
                        *e = e.max(detector_amp(s));
                    }
                }
            }
            Detection::Rms => {
                let (a, b) = (self.rms_coef, 1.0 - self.rms_coef);
                let channels = block.channels().min(self.ms.len());
                let mut first = 0;
                while first < channels {
                    // Channels in groups of 4 lanes, then 2, then 1.
                    let lanes = match channels - first {
                        1 => 1,
                        2 | 3 => 2,
                        _ => 4,
                    };
                    let ms = &mut self.ms[first..first + lanes];
                    let xs = |l: usize| &block.channel(first + l)[start..end];
                    match lanes {
                        1 => mean_squares::<1>(xs, ms, env, a, b),
                        2 => mean_squares::<2>(xs, ms, env, a, b),
                        _ => mean_squares::<4>(xs, ms, env, a, b),
                    }
                    first += lanes;
                }
            }
        }

        // 2. Gain computer: env[i] becomes frame i's target reduction (dB).
        //    No frame depends on another here, so the logarithms need not
        //    wait on the smoother.
        for e in env.iter_mut() {
            *e = computer.target_reduction_db(*e);
        }
        // 3. Branching smoother (dB): env[i] becomes frame i's smoothed
        //    reduction. Alone in its loop, with no call, `y` stays in a
        //    register from frame to frame.
        let (attack, release) = (self.attack_coef, self.release_coef);
        let mut y = self.reduction_db;
        for e in env.iter_mut() {
            let target = *e;
            let c = if target > y { attack } else { release };
            y = target + c * (y - target);
            if y < FLUSH_DB {
                y = 0.0;
            }
            *e = y;
        }
        self.reduction_db = y;
        // 4. Makeup and linear gain, frame by frame (no frame depends on
        //    another here, so the exponentials need not wait on the smoother).
        for e in env.iter_mut() {
            let y = *e;
            *e = if y == 0.0 {
                self.makeup_gain
            } else {
                gain_from_db(self.makeup_db - y)
            };
        }
        self.envelope_len = n;

        // Apply to every channel.
        let env = &self.envelope[..n];
        for c in block.channels_mut() {
            for (x, g) in c[start..end].iter_mut().zip(env) {
                *x *= g;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    const FS: u32 = 48_000;

    fn params(threshold_db: f64, ratio: f64, knee_db: f64) -> CompressorParams {
        CompressorParams {
            threshold_db,
            ratio,
            knee_db,
            attack_ms: 1.0,
            release_ms: 50.0,
            makeup_db: 0.0,
            detection: Detection::Peak,
        }
    }

    fn db(x: f64) -> f64 {
        20.0 * x.dlog10()
    }

    fn sine(amp: f64, freq: f64, frames: usize) -> Vec<f64> {
        (0..frames)
            .map(|i| amp * (2.0 * PI * freq * i as f64 / f64::from(FS)).dsin())
            .collect()
    }

    /// Runs planar `input` through a fresh compressor in blocks of `block`
    /// frames; returns the output and the concatenated gain envelopes.
    fn run(p: CompressorParams, input: &[Vec<f64>], block: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let mut c = Compressor::new(p);
        c.prepare(FS, input.len(), block);
        run_with(&mut c, input, block)
    }

    fn run_with(c: &mut Compressor, input: &[Vec<f64>], block: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
        let channels = input.len();
        let frames = input[0].len();
        let mut b = Block::new(channels, block);
        let mut out = vec![Vec::with_capacity(frames); channels];
        let mut env = Vec::with_capacity(frames);
        let mut start = 0;
        while start < frames {
            let n = block.min(frames - start);
            b.set_frames(n);
            for (ch, src) in input.iter().enumerate() {
                b.channel_mut(ch).copy_from_slice(&src[start..start + n]);
            }
            c.process(&mut b);
            for (ch, dst) in out.iter_mut().enumerate() {
                dst.extend_from_slice(b.channel(ch));
            }
            let e = c.gain_envelope().expect("a dynamics node has an envelope");
            assert_eq!(e.len(), n);
            env.extend_from_slice(e);
            start += n;
        }
        (out, env)
    }

    #[test]
    fn static_curve_matches_hand_computed_values() {
        let hard = params(-20.0, 4.0, 0.0);
        for (x, y) in [(-30.0, -30.0), (-20.0, -20.0), (0.0, -15.0), (-60.0, -60.0)] {
            assert!((static_curve_db(&hard, x) - y).abs() < 1e-12, "hard {x}");
        }
        let soft = params(-20.0, 4.0, 10.0);
        for (x, y) in [
            (-26.0, -26.0),
            (-25.0, -25.0),                              // knee start
            (-20.0, -20.0 + (0.25 - 1.0) * 25.0 / 20.0), // -20.9375
            (-15.0, -18.75),                             // knee end: T + 5/4
            (-14.0, -18.5),
            (0.0, -15.0),
        ] {
            assert!((static_curve_db(&soft, x) - y).abs() < 1e-12, "soft {x}");
        }
        assert_eq!(static_curve_db(&soft, -20.0), -20.9375);
        // The knee joins both lines continuously.
        for edge in [-25.0, -15.0] {
            let below = static_curve_db(&soft, edge - 1e-9);
            let above = static_curve_db(&soft, edge + 1e-9);
            assert!((below - above).abs() < 1e-8, "knee edge {edge}");
        }
        for knee in [0.0, 6.0, 12.0] {
            let unity = params(-20.0, 1.0, knee);
            for i in -100..=20 {
                let x = f64::from(i) * 0.7;
                assert_eq!(static_curve_db(&unity, x), x);
            }
        }
        // Infinite ratio: a brick wall at the threshold.
        assert_eq!(
            static_curve_db(&params(-10.0, f64::INFINITY, 0.0), 0.0),
            -10.0
        );
    }

    /// Settled output peak and settled envelope extremes, in dB, for a 1 kHz
    /// sine of peak level `level_db` (measured over 0.5 s after 0.5 s).
    fn settle_sine(p: CompressorParams, level_db: f64) -> (f64, f64, f64) {
        let x = sine(10f64.dpowf(level_db / 20.0), 1000.0, FS as usize);
        let (out, env) = run(p, &[x], 4096);
        let skip = FS as usize / 2;
        let peak = out[0][skip..].iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        let gmin = env[skip..].iter().copied().fold(f64::INFINITY, f64::min);
        let gmax = env[skip..].iter().copied().fold(0.0, f64::max);
        (db(peak), db(gmin), db(gmax))
    }

    fn levels() -> impl Iterator<Item = f64> {
        (0..=20).map(|k| -40.0 + 2.0 * f64::from(k))
    }

    #[test]
    fn settled_gain_on_a_constant_level_is_the_static_curve() {
        // A constant |x| (DC) leaves the peak detector no ripple: the
        // smoother converges geometrically onto the gain computer.
        for makeup in [0.0, 6.0] {
            for knee in [0.0, 6.0] {
                let p = CompressorParams {
                    makeup_db: makeup,
                    ..params(-20.0, 4.0, knee)
                };
                let mut worst = 0.0_f64;
                for level in levels() {
                    let x = vec![10f64.dpowf(level / 20.0); FS as usize / 2];
                    let (out, env) = run(p, &[x], 4096);
                    let want = static_curve_db(&p, level) - level + makeup;
                    let got = db(*env.last().expect("frames"));
                    worst = worst.max((got - want).abs());
                    let out_db = db(*out[0].last().expect("frames"));
                    assert!((out_db - (static_curve_db(&p, level) + makeup)).abs() < 1e-9);
                }
                assert!(worst < 1e-9, "makeup {makeup} knee {knee}: {worst} dB");
            }
        }
    }

    #[test]
    fn steady_state_on_a_sine_follows_the_static_curve_peak_detection() {
        // 1 kHz sine, peak detection, attack 1 ms. |x| of a sine touches its
        // peak only briefly, so the branching smoother settles slightly
        // short of the curve (the release drifts between crests, the attack
        // catches up only near them); the gap shrinks as the release grows.
        // At release 1 s it is < 0.1 dB on every point.
        for makeup in [0.0, 6.0] {
            let p = CompressorParams {
                makeup_db: makeup,
                release_ms: 1000.0,
                ..params(-20.0, 4.0, 6.0)
            };
            let mut worst = 0.0_f64;
            for level in levels() {
                let (out_db, gmin_db, gmax_db) = settle_sine(p, level);
                let want = static_curve_db(&p, level) + makeup;
                worst = worst.max((out_db - want).abs());
                assert!(
                    (out_db - want).abs() < 0.1,
                    "{level} dB: {out_db} vs {want}"
                );
                // The gain at the crest is the envelope's minimum.
                assert!((gmin_db - (want - level)).abs() < 0.1, "{level} dB gain");
                assert!(gmax_db - gmin_db < 0.01, "{level} dB: ripple");
            }
            assert!(worst > 0.0 && worst < 0.075, "worst {worst}");
        }
        // With the 50 ms release the settled reduction falls ~3 % short
        // (0.46 dB at 15 dB of reduction): less compression, never more.
        let p = params(-20.0, 4.0, 6.0);
        for level in levels() {
            let (out_db, _, _) = settle_sine(p, level);
            let want = static_curve_db(&p, level);
            assert!(out_db >= want - 1e-9, "{level} dB over-compressed");
            assert!(out_db - want < 0.5, "{level} dB: {out_db} vs {want}");
        }
    }

    #[test]
    fn steady_state_on_a_sine_follows_the_static_curve_rms_detection() {
        // RMS of a sine of peak level P is P − 3.01 dB; the 10 ms mean-square
        // window leaves only a small ripple at 2 kHz.
        let rms_offset = 10.0 * 0.5f64.dlog10(); // −3.0103 dB
        for makeup in [0.0, 6.0] {
            let p = CompressorParams {
                makeup_db: makeup,
                detection: Detection::Rms,
                ..params(-20.0, 4.0, 6.0)
            };
            let mut worst = 0.0_f64;
            for level in levels() {
                let (_, gmin_db, gmax_db) = settle_sine(p, level);
                let rms = level + rms_offset;
                let want = static_curve_db(&p, rms) - rms + makeup;
                let err = (gmin_db - want).abs().max((gmax_db - want).abs());
                worst = worst.max(err);
                assert!(err < 0.1, "{level} dB: gain {gmin_db}..{gmax_db} vs {want}");
            }
            assert!(worst < 0.05, "worst {worst}");
        }
    }

    /// Milliseconds from `from` until the gain reduction (dB, from the
    /// envelope) first crosses `frac` of the way from `r0` to `r1`.
    fn time_to(env: &[f64], from: usize, r0: f64, r1: f64, frac: f64) -> f64 {
        let goal = r0 + frac * (r1 - r0);
        let n = env[from..]
            .iter()
            .position(|&g| {
                let r = -db(g);
                if r1 > r0 { r >= goal } else { r <= goal }
            })
            .expect("crosses");
        // The first frame of the step already moves one sample's worth.
        (n + 1) as f64 * 1000.0 / f64::from(FS)
    }

    #[test]
    fn attack_and_release_times() {
        for (attack_ms, release_ms) in [(1.0, 50.0), (10.0, 100.0), (30.0, 500.0)] {
            let p = CompressorParams {
                attack_ms,
                release_ms,
                ..params(-20.0, 4.0, 0.0)
            };
            let fs = FS as usize;
            let quiet = 10f64.dpowf(-40.0 / 20.0);
            let mut x = vec![quiet; fs / 2];
            x.extend(vec![1.0; 3 * fs]);
            // Long enough for the reduction to decay below the 1e-9 dB flush.
            x.extend(vec![quiet; (release_ms * 25.0) as usize * fs / 1000]);
            let (_, env) = run(p, &[x], 4096);
            let full = 15.0; // 0 dBFS through T = −20, R = 4
            assert_eq!(env[fs / 2 - 1], 1.0);
            assert!((-db(env[fs / 2 + 3 * fs - 1]) - full).abs() < 1e-9);
            let attack = time_to(&env, fs / 2, 0.0, full, 1.0 - (-1.0f64).dexp());
            let release = time_to(&env, fs / 2 + 3 * fs, full, 0.0, 1.0 - (-1.0f64).dexp());
            assert!((attack / attack_ms - 1.0).abs() < 0.2, "attack {attack} ms");
            assert!(
                (release / release_ms - 1.0).abs() < 0.2,
                "release {release} ms"
            );
            eprintln!(
                "DC step: attack {attack_ms} -> {attack} ms, release {release_ms} -> {release} ms"
            );
            // In fact exact to the sample for a DC step (one sample of
            // rounding: the crossing sits exactly on a sample).
            let sample_ms = 1000.0 / f64::from(FS);
            assert!((attack - attack_ms).abs() <= 1.5 * sample_ms);
            assert!((release - release_ms).abs() <= 1.5 * sample_ms);
            assert_eq!(*env.last().expect("frames"), 1.0, "fully recovered");
        }
        // A sine step: the release is the same; the attack is slower, as |x|
        // of a sine exceeds the smoothed level only around its crests
        // (measured: 14.1 ms for a 10 ms attack at 1 kHz).
        let p = CompressorParams {
            attack_ms: 10.0,
            release_ms: 100.0,
            ..params(-20.0, 4.0, 0.0)
        };
        let fs = FS as usize;
        let mut x = sine(0.01, 1000.0, fs / 2);
        x.extend(sine(1.0, 1000.0, 2 * fs));
        x.extend(sine(0.01, 1000.0, 2 * fs));
        let (_, env) = run(p, &[x], 4096);
        let settled = -db(env[fs / 2 + 2 * fs - 1]);
        let attack = time_to(&env, fs / 2, 0.0, settled, 1.0 - (-1.0f64).dexp());
        let release = time_to(&env, fs / 2 + 2 * fs, settled, 0.0, 1.0 - (-1.0f64).dexp());
        eprintln!("sine step: attack 10 -> {attack} ms, release 100 -> {release} ms");
        assert!((10.0..15.0).contains(&attack), "sine attack {attack} ms");
        assert!(
            (release / 100.0 - 1.0).abs() < 0.2,
            "sine release {release} ms"
        );
    }

    #[test]
    fn channels_are_linked() {
        let n = FS as usize / 2;
        let loud = sine(1.0, 1000.0, n);
        let tone = sine(0.01, 300.0, n);
        let p = params(-20.0, 4.0, 6.0);
        let (out, env) = run(p, &[loud.clone(), tone.clone()], 4096);
        // The detector saw the left channel: the same gain as left alone.
        let (_, mono_env) = run(p, std::slice::from_ref(&loud), 4096);
        assert_eq!(env, mono_env);
        // Swapping the channels changes nothing.
        let (_, swapped_env) = run(p, &[tone.clone(), loud.clone()], 4096);
        assert_eq!(env, swapped_env);
        // The quiet right channel is attenuated exactly like the left.
        for i in 0..n {
            assert_eq!(out[0][i], loud[i] * env[i]);
            assert_eq!(out[1][i], tone[i] * env[i]);
        }
        let settled = db(env[n - 1]);
        assert!(settled < -14.0, "right channel reduced by {settled} dB");
        // The tone alone (−40 dBFS, below the knee) would pass untouched.
        let (alone, _) = run(p, std::slice::from_ref(&tone), 4096);
        assert_eq!(alone[0], tone);
        // RMS detection is linked too.
        let rms = CompressorParams {
            detection: Detection::Rms,
            ..p
        };
        let (out, env) = run(rms, &[tone.clone(), loud.clone()], 4096);
        let (_, mono_env) = run(rms, std::slice::from_ref(&loud), 4096);
        assert_eq!(env, mono_env);
        assert_eq!(out[0][n - 1], tone[n - 1] * env[n - 1]);
    }

    /// A deterministic, dynamic test signal: bursts of sine and noise.
    fn programme(channels: usize, frames: usize) -> Vec<Vec<f64>> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..channels)
            .map(|ch| {
                (0..frames)
                    .map(|i| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                        let t = i as f64 / f64::from(FS);
                        let swell = 0.5 + 0.5 * (2.0 * PI * 0.7 * t).dsin();
                        let burst = if (i / 7000) % 3 == ch % 3 { 0.9 } else { 0.05 };
                        burst * swell * (0.6 * (2.0 * PI * 220.0 * t).dsin() + noise)
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn envelope_is_output_over_input() {
        for detection in [Detection::Peak, Detection::Rms] {
            let p = CompressorParams {
                detection,
                makeup_db: 3.0,
                ..params(-24.0, 3.0, 6.0)
            };
            let input = programme(2, 3 * 4096 + 17);
            let mut c = Compressor::new(p);
            c.prepare(FS, 2, 4096);
            let mut b = Block::new(2, 4096);
            let mut checked = 0;
            for start in (0..input[0].len()).step_by(4096) {
                let n = 4096.min(input[0].len() - start);
                b.set_frames(n);
                for (ch, src) in input.iter().enumerate() {
                    b.channel_mut(ch).copy_from_slice(&src[start..start + n]);
                }
                c.process(&mut b);
                let env = c.gain_envelope().expect("envelope");
                assert_eq!(env.len(), n);
                for (ch, src) in input.iter().enumerate() {
                    let frames = src[start..start + n].iter().zip(b.channel(ch));
                    for (i, ((&x, &y), &g)) in frames.zip(env).enumerate() {
                        if x.abs() > 1e-6 {
                            assert!((y / x - g).abs() <= 1e-12 * g, "{ch}/{i}");
                            checked += 1;
                        }
                    }
                }
            }
            assert!(checked > 20_000);
        }
    }

    #[test]
    fn block_size_does_not_change_the_output() {
        for detection in [Detection::Peak, Detection::Rms] {
            let p = CompressorParams {
                detection,
                attack_ms: 5.0,
                release_ms: 80.0,
                ..params(-24.0, 4.0, 6.0)
            };
            let input = programme(2, 20_000);
            let (big, big_env) = run(p, &input, 4096);
            let (small, small_env) = run(p, &input, 100);
            let (odd, _) = run(p, &input, 1);
            for ch in 0..2 {
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&big[ch]), bits(&small[ch]));
                assert_eq!(bits(&big[ch]), bits(&odd[ch]));
            }
            assert_eq!(big_env, small_env);
            assert!(
                big_env.iter().any(|&g| g < 0.5),
                "the programme is compressed"
            );
        }
    }

    #[test]
    fn reset_restores_the_initial_state() {
        let p = CompressorParams {
            detection: Detection::Rms,
            ..params(-30.0, 8.0, 0.0)
        };
        let input = programme(2, 10_000);
        let mut c = Compressor::new(p);
        c.prepare(FS, 2, 4096);
        let first = run_with(&mut c, &input, 4096);
        c.reset();
        assert_eq!(c.gain_envelope(), Some(&[][..]));
        let second = run_with(&mut c, &input, 4096);
        assert_eq!(first, second);
    }

    #[test]
    fn node_contract() {
        let mut c = Compressor::new(params(-20.0, 4.0, 0.0));
        assert_eq!(c.name(), "compressor");
        assert_eq!(c.latency(), 0);
        c.prepare(FS, 2, 64);
        assert_eq!(c.gain_envelope(), Some(&[][..]));
        // Silence (and anything below the knee) passes bit-exactly.
        let (out, env) = run(
            params(-20.0, 4.0, 0.0),
            &[vec![0.0; 300], vec![0.05; 300]],
            64,
        );
        assert!(env.iter().all(|&g| g == 1.0));
        assert_eq!(out[1], vec![0.05; 300]);
        // Makeup alone on silence-level input.
        let p = CompressorParams {
            makeup_db: 6.0,
            ..params(-20.0, 4.0, 0.0)
        };
        let (_, env) = run(p, &[vec![0.0; 10]], 64);
        assert!(env.iter().all(|&g| (db(g) - 6.0).abs() < 1e-12));
    }

    #[test]
    fn odd_parameters_and_samples_never_produce_nan() {
        let input = {
            let mut v = programme(2, 5000);
            v[0][100] = f64::NAN;
            v[1][200] = f64::INFINITY;
            v[0][300] = -1e300;
            v
        };
        let odd = [
            (f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN),
            (-1e9, 0.0, -5.0, 0.0, 0.0, 1e9),
            (
                f64::INFINITY,
                f64::INFINITY,
                f64::INFINITY,
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
            ),
            (f64::NEG_INFINITY, 0.5, 1e300, -1.0, -1.0, f64::INFINITY),
            (0.0, 1e12, 1e-300, 1e-300, 1e-300, 0.0),
        ];
        for (t, r, k, a, rel, m) in odd {
            for detection in [Detection::Peak, Detection::Rms] {
                let p = CompressorParams {
                    threshold_db: t,
                    ratio: r,
                    knee_db: k,
                    attack_ms: a,
                    release_ms: rel,
                    makeup_db: m,
                    detection,
                };
                for x in [-1e6, -200.0, -20.0, 0.0, 20.0] {
                    assert!(!static_curve_db(&p, x).is_nan(), "{p:?} at {x}");
                }
                let (out, env) = run(p, &input, 512);
                assert!(env.iter().all(|g| g.is_finite() && *g >= 0.0), "{p:?}");
                for (ch, (o, i)) in out.iter().zip(&input).enumerate() {
                    for (k, (y, x)) in o.iter().zip(i).enumerate() {
                        // ±∞ in gives ±∞ out, and ±1e300 may overflow
                        // under a huge makeup; only NaN in gives NaN.
                        if !x.is_nan() {
                            assert!(!y.is_nan(), "{p:?}: ch {ch} frame {k}");
                        }
                        if x.abs() <= 1.0 {
                            assert!(y.is_finite(), "{p:?}: ch {ch} frame {k}");
                        }
                    }
                }
            }
        }
    }

    /// Output and gain envelope, bit for bit, against the previous
    /// implementation (gain computer, smoother and exponential in one loop), for peak
    /// and RMS detection, soft and hard knees, instant and slow times, ratio
    /// 1 and ∞, every test signal, block size and channel count, and blocks
    /// larger than prepared.
    #[test]
    fn matches_the_previous_implementation() {
        use crate::previous::{self, BLOCK_SIZES, CHANNELS, SIGNALS};
        let base = CompressorParams {
            threshold_db: -18.0,
            ratio: 3.0,
            knee_db: 6.0,
            attack_ms: 5.0,
            release_ms: 120.0,
            makeup_db: 2.0,
            detection: Detection::Peak,
        };
        let sets = [
            base,
            CompressorParams {
                detection: Detection::Rms,
                ..base
            },
            CompressorParams {
                knee_db: 0.0,
                ratio: f64::INFINITY,
                attack_ms: 0.0,
                release_ms: 5.0,
                makeup_db: 0.0,
                ..base
            },
            CompressorParams {
                threshold_db: -30.0,
                ratio: 1.5,
                knee_db: 12.0,
                attack_ms: 30.0,
                release_ms: 2.0,
                makeup_db: -3.0,
                detection: Detection::Rms,
            },
            CompressorParams {
                threshold_db: -60.0,
                ratio: 20.0,
                release_ms: 0.0,
                ..base
            },
            CompressorParams { ratio: 1.0, ..base },
        ];
        let cases: Vec<_> = sets
            .iter()
            .flat_map(|&p| CHANNELS.map(|ch| (p, ch)))
            .collect();
        std::thread::scope(|s| {
            for chunk in cases.chunks(cases.len().div_ceil(4)) {
                s.spawn(move || {
                    for &(p, channels) in chunk {
                        for (sig, name) in SIGNALS.iter().enumerate() {
                            let input = previous::signal(sig, channels, 20_000);
                            for block in BLOCK_SIZES {
                                let mut new = Compressor::new(p);
                                let mut old = previous::dynamics::Compressor::new(p);
                                new.prepare(FS, channels, block);
                                old.prepare(FS, channels, block);
                                let what =
                                    format!("{p:?}: {name}, {channels} ch, blocks of {block}");
                                previous::assert_same(&mut new, &mut old, &input, block, &what);
                                new.reset();
                                old.reset();
                                previous::assert_same(&mut new, &mut old, &input, block, &what);
                            }
                            // Blocks of 4096 frames, prepared for 333: a
                            // contract violation debug builds assert on;
                            // release builds must still match.
                            if cfg!(debug_assertions) {
                                continue;
                            }
                            let mut new = Compressor::new(p);
                            let mut old = previous::dynamics::Compressor::new(p);
                            new.prepare(FS, channels, 333);
                            old.prepare(FS, channels, 333);
                            let what = format!("{p:?}: {name}, {channels} ch, oversized blocks");
                            previous::assert_same(&mut new, &mut old, &input, 4096, &what);
                        }
                    }
                });
            }
        });
    }
}
