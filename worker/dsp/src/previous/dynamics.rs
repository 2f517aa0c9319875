//! The compressor before its gain computer, smoother and exponentials ran
//! as passes of their own and its RMS detector ran channels in lanes,
//! verbatim but for names: the reference the current one must match bit for
//! bit.

use crate::block::Block;
use crate::dynamics::{CompressorParams, Detection};
use crate::math::DetMath;
use crate::node::Node;

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
                for (ch, state) in self.ms.iter_mut().enumerate().take(block.channels()) {
                    let x = &block.channel(ch)[start..end];
                    let mut m = *state;
                    for (e, &s) in env.iter_mut().zip(x) {
                        let amp = detector_amp(s);
                        m = a * m + b * (amp * amp);
                        if m < FLUSH_MS {
                            m = 0.0;
                        }
                        *e = e.max(m);
                    }
                    *state = m;
                }
            }
        }

        // 2–4. Gain computer, branching smoother (dB), makeup, linear gain.
        let mut y = self.reduction_db;
        for e in env.iter_mut() {
            let target = computer.target_reduction_db(*e);
            let c = if target > y {
                self.attack_coef
            } else {
                self.release_coef
            };
            y = target + c * (y - target);
            if y < FLUSH_DB {
                y = 0.0;
            }
            *e = if y == 0.0 {
                self.makeup_gain
            } else {
                gain_from_db(self.makeup_db - y)
            };
        }
        self.reduction_db = y;
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
