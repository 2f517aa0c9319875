//! True-peak lookahead limiter: the output's true peak stays under the
//! ceiling.
//!
//! Per input frame (all channels linked, one gain per frame):
//!
//! 1. **Detect.** [`TruePeakDetector`] reports the true peak `tp[a]` of the
//!    interval `[a, a + 1)` between input samples `a` and `a + 1`, `D =
//!    detector.delay()` frames late. The required gain is
//!    `r[a] = min(1, T / tp[a])`, `T` the ceiling lowered by
//!    [`INTERNAL_MARGIN_DB`]. `r[a]` is exactly 1 whenever `tp[a] ≤ T`, so the
//!    detector only computes the frames that may read above `T` (a proven
//!    bound decides; on music at mastering levels ~99 % of the frames are
//!    skipped, see `true_peak`), and while the hold window and both averages
//!    hold nothing but 1.0 an `r = 1` leaves them so without running them:
//!    the gains are bit-identical to computing everything (tests
//!    `skipping_detection_is_bit_identical` and
//!    `matches_the_previous_implementation`).
//! 2. **Hold.** `h[i] = min r[i − A ..= i + Λ]`: a running minimum (monotonic
//!    deque, O(1) amortised per frame) over the whole lookahead `Λ` (frames)
//!    ahead and `A = Λ` frames behind.
//! 3. **Smooth.** Two cascaded moving averages of lengths `B1 + B2 − 1 = B =
//!    Λ + 1 − P`, `P = max(1, Λ / 4)`: `s[i]` is a weighted mean (positive
//!    weights summing to 1, a trapezoid ≈ 1.5 ms long at 2 ms lookahead) of
//!    `h[i − B + 1 ..= i]`. The sums are kept in integers (values floored to
//!    multiples of 2⁻⁴⁰): exact, drift-free, and back to exactly 1.0.
//! 4. **Release.** `g[i] = min(s[i], 1 − (1 − g[i − 1]) · α)`, `α =
//!    exp(−1 / (release · fs))`: the gain follows the attack path down and
//!    rises no faster than a one-pole recovery (snapped to exactly 1.0 within
//!    2⁻³⁰ of it, so material below the ceiling passes bit-exactly again).
//! 5. **Apply.** `out[i] = x[i] · g[i]`, emitted `Λ + D` frames after `x[i]`
//!    came in: the delay line matches the lookahead plus the detector's delay,
//!    so the gain lines up with the interpolated peaks it was computed from.
//!
//! **Why the gain is down in time.** Take an interval `a` and an output frame
//! `j ∈ [a − P, a + A]`. `s[j]` is a weighted mean of `h[m]`,
//! `m ∈ [j − B + 1, j]`, and each such `h[m]` is a minimum over
//! `r[m − A ..= m + Λ]`, a window that contains `a`: `m − A ≤ j − A ≤ a`, and
//! `m + Λ ≥ j − B + 1 + Λ = j + P ≥ a`. So every term is ≤ `r[a]`, hence their
//! mean (flooring only lowers it), hence `g[j] ≤ s[j] ≤ r[a]`: the samples from
//! `P` frames before the peak's interval to `A` frames after it — both ends of
//! the interval and the interpolation kernel's main lobes — are all scaled by
//! at most `r[a]`, and around an isolated peak the gain is flat there. (A
//! smoothed gain *merely shifted* by the lookahead would still be on its way
//! down at the peak: ≈ 1 dB over, see domain facts.)
//!
//! **What the margin covers.** The output's interpolated value at `t` is
//! `Σ g[j] x[j] k(t − j)`. Where `g` varies within the kernel's reach it is not
//! exactly `g(t) · x(t)`: on full-band material (hard-clipped noise) whose
//! peaks keep the gain moving, the output reads up to ≈ 0.03 dB above the
//! limiter's target; tones, sweeps and square waves stay within 0.001 dB of
//! it. [`INTERNAL_MARGIN_DB`] = 0.05 dB covers that with room to spare; the
//! torture tests below measure what is left, with the detector and with the
//! brute-force reference. The detector's own error against that reference is
//! ≈ 0.001 dB (it uses the same interpolation kernel; see `true_peak`).
//!
//! Everything is f64; `exp` and `pow` come from [`DetMath`]; every operation's
//! order is fixed, so gains are bit-identical on every worker. `process`
//! allocates nothing.

use super::block::Block;
use super::math::DetMath;
use super::node::{Node, db_to_gain};
use super::true_peak::TruePeakDetector;

/// The limiter aims this far below the ceiling (dB): it covers the
/// interpolation of the gain's own movement (≤ ≈ 0.03 dB measured on
/// hard-clipped noise) and the detector's residual error (≈ 0.001 dB).
pub const INTERNAL_MARGIN_DB: f64 = 0.05;

/// Fixed-point scale of the smoothing sums.
const SCALE: f64 = (1u64 << 40) as f64;
/// The release path snaps to 1.0 once within 2⁻³⁰ (≈ 1e-8 dB) of it, ≈ 21
/// release time constants after 1 dB of reduction (a pure one-pole in f64
/// would stall one ulp short of 1.0 forever).
const SNAP: f64 = 1.0 / (1u64 << 30) as f64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimiterParams {
    /// The true-peak ceiling, dBTP (the limiter aims [`INTERNAL_MARGIN_DB`]
    /// below it).
    pub ceiling_db: f64,
    /// Lookahead, ms (at least one frame is used).
    pub lookahead_ms: f64,
    /// Release time constant, ms (0: the gain follows the attack path back up).
    pub release_ms: f64,
}

/// True-peak lookahead limiter (see the module docs).
pub struct Limiter {
    params: LimiterParams,
    state: Option<State>,
}

struct State {
    channels: usize,
    detector: TruePeakDetector,
    /// Linear ceiling minus the margin.
    target: f64,
    hold: MinWindow,
    box1: BoxMean,
    box2: BoxMean,
    alpha: f64,
    gain: f64,
    /// Per channel, a ring of `latency` frames.
    delay: Vec<Vec<f64>>,
    delay_pos: usize,
    latency: usize,
    envelope: Vec<f64>,
    envelope_len: usize,
    /// Per frame of the block: the detector's reading where it is above
    /// `target` (else a value ≤ `target`, see `gain_for`).
    tp: Vec<f64>,
    /// Tests only: read every frame exactly instead of skipping the ones that
    /// provably stay below `target`.
    exhaustive: bool,
}

impl Limiter {
    pub fn new(p: LimiterParams) -> Limiter {
        Limiter {
            params: p,
            state: None,
        }
    }

    pub fn params(&self) -> LimiterParams {
        self.params
    }

    /// One frame's gain, given its detector reading `tp`.
    ///
    /// `tp` is exact wherever it exceeds `target`; elsewhere the detector may
    /// have skipped the frame and report 0 (any value ≤ `target`). Both give
    /// `r = 1.0` exactly, as the exact reading would (`r = min(1, T / tp)` is 1
    /// whenever `tp ≤ T`), and `r` is all that the rest of the gain computer
    /// sees, so the gains, hence the output, are bit-identical to reading
    /// every frame exactly (`tests::skipping_detection_is_bit_identical`).
    #[inline]
    fn gain_for(st: &mut State, tp: f64) -> f64 {
        let s = if tp <= st.target && st.hold.all_ones() && st.box1.full() && st.box2.full() {
            // r = 1 into a hold window and averages holding nothing but 1.0:
            // they stay so and give exactly 1.0, as the pushes below would.
            st.hold.push_one();
            1.0
        } else {
            let r = if tp > st.target { st.target / tp } else { 1.0 };
            let h = st.hold.push(r);
            st.box2.push(st.box1.push(h))
        };
        let mut released = 1.0 - (1.0 - st.gain) * st.alpha;
        if released > 1.0 - SNAP {
            released = 1.0;
        }
        let g = if s < released { s } else { released };
        st.gain = g;
        g
    }
}

impl Node for Limiter {
    fn name(&self) -> &'static str {
        "limiter"
    }

    fn prepare(&mut self, sample_rate: u32, channels: usize, max_block: usize) {
        let sr = f64::from(sample_rate.max(1));
        let p = self.params;
        let ms = if p.lookahead_ms.is_finite() {
            p.lookahead_ms.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let lookahead = ((ms * sr / 1000.0).round() as usize).max(1);
        // Flat zone: `before` frames ahead of each peak, `lookahead` after.
        let before = (lookahead / 4).max(1);
        let after = lookahead;
        let b = lookahead + 1 - before;
        let b1 = b.div_ceil(2);
        let b2 = b + 1 - b1;
        let release_frames = if p.release_ms.is_finite() {
            p.release_ms.max(0.0) * sr / 1000.0
        } else {
            0.0
        };
        let alpha = if release_frames > 0.0 {
            (-1.0 / release_frames).dexp()
        } else {
            0.0
        };
        // The spec validates the ceiling; a non-finite one here means 0 dBTP.
        let ceiling_db = if p.ceiling_db.is_finite() {
            p.ceiling_db
        } else {
            0.0
        };
        let detector = TruePeakDetector::new(channels, sample_rate);
        let latency = lookahead + detector.delay();
        self.state = Some(State {
            channels,
            detector,
            target: db_to_gain(ceiling_db - INTERNAL_MARGIN_DB),
            hold: MinWindow::new(after + lookahead + 1),
            box1: BoxMean::new(b1),
            box2: BoxMean::new(b2),
            alpha,
            gain: 1.0,
            delay: vec![vec![0.0; latency]; channels],
            delay_pos: 0,
            latency,
            envelope: vec![1.0; max_block],
            envelope_len: 0,
            tp: vec![0.0; max_block],
            exhaustive: false,
        });
    }

    fn reset(&mut self) {
        if let Some(st) = &mut self.state {
            st.detector.reset();
            st.hold.reset();
            st.box1.reset();
            st.box2.reset();
            st.gain = 1.0;
            for d in &mut st.delay {
                d.fill(0.0);
            }
            st.delay_pos = 0;
            st.envelope_len = 0;
        }
    }

    /// The lookahead in frames plus the detector's delay: how late the audio
    /// comes out.
    fn latency(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.latency)
    }

    fn process(&mut self, block: &mut Block) {
        let Some(st) = &mut self.state else {
            return;
        };
        let frames = block.frames();
        debug_assert_eq!(block.channels(), st.channels, "limiter: channel count");
        if frames > st.envelope.len() {
            // More than `max_block`: a caller bug; grow once rather than fail.
            st.envelope.resize(frames, 1.0);
            st.tp.resize(frames, 0.0);
        }
        let channels = st.channels.min(block.channels());
        let threshold = if st.exhaustive {
            f64::NEG_INFINITY
        } else {
            st.target
        };
        // Channels the block lacks read as silence.
        st.detector
            .push_block_above(block, threshold, &mut st.tp[..frames]);
        for i in 0..frames {
            let tp = st.tp[i];
            st.envelope[i] = Self::gain_for(st, tp);
        }
        st.envelope_len = frames;
        let lat = st.latency;
        for ch in 0..channels {
            let ring = &mut st.delay[ch];
            let mut pos = st.delay_pos;
            let mut x = block.channel_mut(ch);
            let mut env = &st.envelope[..frames];
            // In runs that do not wrap around the ring.
            while !x.is_empty() {
                let n = x.len().min(lat - pos);
                let (run, rest) = std::mem::take(&mut x).split_at_mut(n);
                for ((x, d), &g) in run.iter_mut().zip(&mut ring[pos..pos + n]).zip(env) {
                    let delayed = *d;
                    *d = *x;
                    *x = delayed * g;
                }
                pos = if pos + n == lat { 0 } else { pos + n };
                x = rest;
                env = &env[n..];
            }
        }
        st.delay_pos = (st.delay_pos + frames) % lat;
    }

    fn gain_envelope(&self) -> Option<&[f64]> {
        Some(
            self.state
                .as_ref()
                .map_or(&[][..], |s| &s.envelope[..s.envelope_len]),
        )
    }
}

#[cfg(test)]
impl Limiter {
    /// Tests: read every frame exactly (the detector skips nothing).
    fn read_every_frame(&mut self) {
        if let Some(st) = &mut self.state {
            st.exhaustive = true;
        }
    }
}

/// Running minimum over the last `len` values pushed (fewer at the start):
/// a monotonic deque in a ring, O(1) amortised per push, no allocation.
struct MinWindow {
    len: u64,
    idx: Vec<u64>,
    val: Vec<f64>,
    head: usize,
    count: usize,
    t: u64,
}

impl MinWindow {
    fn new(len: usize) -> Self {
        MinWindow {
            len: len as u64,
            idx: vec![0; len],
            val: vec![0.0; len],
            head: 0,
            count: 0,
            t: 0,
        }
    }

    fn reset(&mut self) {
        self.head = 0;
        self.count = 0;
        self.t = 0;
    }

    /// Whether every value in the window is 1.0 (the largest a gain can be):
    /// the minimum, at the head, is.
    #[inline]
    fn all_ones(&self) -> bool {
        self.count > 0 && self.val[self.head] == 1.0
    }

    /// `push(1.0)` when `all_ones()`: the new value replaces them all. (The
    /// head stays where it is rather than moving past expired entries: the
    /// same window, rotated in the ring.)
    #[inline]
    fn push_one(&mut self) {
        self.idx[self.head] = self.t;
        self.count = 1;
        self.t += 1;
    }

    #[inline]
    fn push(&mut self, v: f64) -> f64 {
        let cap = self.val.len();
        let wrap = |i: usize| if i >= cap { i - cap } else { i };
        // Drop what fell out of the window, then every value ≥ v from the back.
        while self.count > 0 && self.idx[self.head] + self.len <= self.t {
            self.head = wrap(self.head + 1);
            self.count -= 1;
        }
        while self.count > 0 && self.val[wrap(self.head + self.count - 1)] >= v {
            self.count -= 1;
        }
        let pos = wrap(self.head + self.count);
        self.idx[pos] = self.t;
        self.val[pos] = v;
        self.count += 1;
        self.t += 1;
        self.val[self.head]
    }
}

/// Moving average of the last `len` values (initially all 1.0), in fixed
/// point: each value (in [0, 1]) is floored to a multiple of 2⁻⁴⁰ and the sum
/// kept as an integer, so it is exact, never drifts, and a window of 1.0s
/// gives exactly 1.0.
struct BoxMean {
    ring: Vec<u64>,
    pos: usize,
    sum: u64,
    norm: f64,
    /// The sum of a ring of 1.0s.
    full: u64,
}

impl BoxMean {
    fn new(len: usize) -> Self {
        let len = len.max(1);
        BoxMean {
            ring: vec![SCALE as u64; len],
            pos: 0,
            sum: SCALE as u64 * len as u64,
            norm: SCALE * len as f64,
            full: SCALE as u64 * len as u64,
        }
    }

    fn reset(&mut self) {
        self.ring.fill(SCALE as u64);
        self.pos = 0;
        self.sum = SCALE as u64 * self.ring.len() as u64;
    }

    /// Whether every value in the ring is 1.0: pushing 1.0 then changes
    /// nothing but the position, and the ring is the same whichever it is.
    #[inline]
    fn full(&self) -> bool {
        self.sum == self.full
    }

    #[inline]
    fn push(&mut self, v: f64) -> f64 {
        // `as` saturates: NaN → 0, and v ≤ 1 by construction. Through i64,
        // the same values (v · SCALE < 2⁴¹, the sum < 2⁶³) in one instruction
        // each way instead of the unsigned conversions' sequences.
        let x = v * SCALE;
        let q = (if x > 0.0 { x } else { 0.0 }) as i64 as u64;
        self.sum = self.sum - self.ring[self.pos] + q;
        self.ring[self.pos] = q;
        self.pos = if self.pos + 1 == self.ring.len() {
            0
        } else {
            self.pos + 1
        };
        self.sum as i64 as f64 / self.norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::true_peak::tests::{
        Reference, apply_fades, clipped_noise, crest_db, db, music, noise,
    };
    use crate::true_peak::true_peak;

    use std::f64::consts::PI;

    const SR: u32 = 48_000;

    fn params() -> LimiterParams {
        LimiterParams {
            ceiling_db: -1.0,
            lookahead_ms: 2.0,
            release_ms: 80.0,
        }
    }

    /// Runs `input` through a prepared limiter in blocks of `block_size`,
    /// then `latency()` frames of silence; drops the first `latency()` output
    /// frames. Returns (output, envelope), both as long as the input.
    fn run(
        lim: &mut impl Node,
        input: &[Vec<f64>],
        block_size: usize,
    ) -> (Vec<Vec<f64>>, Vec<f64>) {
        let ch = input.len();
        let n = input[0].len();
        let lat = lim.latency();
        let total = n + lat;
        let mut out = vec![Vec::with_capacity(total); ch];
        let mut env = Vec::with_capacity(total);
        let mut block = Block::new(ch, block_size);
        let mut start = 0;
        while start < total {
            let len = block_size.min(total - start);
            block.set_frames(len);
            for (c, x) in input.iter().enumerate() {
                for (i, s) in block.channel_mut(c).iter_mut().enumerate() {
                    *s = x.get(start + i).copied().unwrap_or(0.0);
                }
            }
            lim.process(&mut block);
            for (c, o) in out.iter_mut().enumerate() {
                o.extend_from_slice(block.channel(c));
            }
            let e = lim.gain_envelope().expect("limiter has an envelope");
            assert_eq!(e.len(), len);
            env.extend_from_slice(e);
            start += len;
        }
        for o in &mut out {
            o.drain(..lat);
        }
        env.drain(..lat);
        (out, env)
    }

    /// The torture-test checks: length, `output = delayed input × envelope`
    /// exactly, and the output's true peak ≤ the ceiling by our detector and
    /// by the brute-force reference (screened to the loud intervals).
    /// Returns the deepest gain, dB.
    fn torture(name: &str, input: &[Vec<f64>]) -> f64 {
        let mut lim = Limiter::new(params());
        lim.prepare(SR, input.len(), 1024);
        assert_eq!(lim.latency(), 96 + TruePeakDetector::new(2, SR).delay());
        let (out, env) = run(&mut lim, input, 1000);
        assert_eq!(out[0].len(), input[0].len());
        for (o, x) in out.iter().zip(input) {
            for i in 0..x.len() {
                assert_eq!(
                    o[i].to_bits(),
                    (x[i] * env[i]).to_bits(),
                    "{name}: frame {i}"
                );
            }
        }
        let ceiling = db_to_gain(-1.0);
        let ours_db = db(true_peak(&out, SR));
        let (reference, intervals) = Reference::new().peak_screened(&out, SR, ceiling, 0.5);
        let reference_db = db(reference);
        let min_gain_db = db(env.iter().fold(1.0_f64, |m, &g| m.min(g)));
        println!(
            "{name}: input {:+.3} dBTP → output {ours_db:+.4} dBTP (ours), {reference_db:+.4} \
             (reference, {intervals} intervals); deepest gain {min_gain_db:+.2} dB",
            db(true_peak(input, SR))
        );
        assert!(ours_db <= -1.0 + 1e-6, "{name}: {ours_db} dBTP by ours");
        assert!(
            reference_db <= -1.0 + 1e-6,
            "{name}: {reference_db} dBTP by the reference"
        );
        min_gain_db
    }

    fn tone(
        freq: f64,
        amp: f64,
        phase: f64,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = f64> {
        range.map(move |i| amp * (2.0 * PI * freq * i as f64 / f64::from(SR) + phase).sin())
    }

    #[test]
    fn step_of_twenty_db() {
        // 997 Hz at −21 dBFS, then +19 dBFS (true peak +19 dBTP) for 1 s, then
        // back to −21 dBFS: the step lands mid-cycle, with no fade.
        let quiet = db_to_gain(-21.0);
        let loud = db_to_gain(19.0);
        let make = |phase: f64| {
            let mut v: Vec<f64> = tone(997.0, quiet, phase, 0..24_000)
                .chain(tone(997.0, loud, phase, 24_000..72_000))
                .chain(tone(997.0, quiet, phase, 72_000..96_000))
                .collect();
            apply_fades(&mut v, 240);
            v
        };
        assert!(torture("+20 dB step", &[make(0.0), make(1.0)]) < -19.0);
    }

    fn log_sweep(amp: f64, phase: f64) -> Vec<f64> {
        let (f0, f1, secs) = (20.0_f64, 20_000.0_f64, 5.0);
        let n = (secs * f64::from(SR)) as usize;
        let k = (f1 / f0).ln();
        let mut v: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(SR);
                let ph = 2.0 * PI * f0 * secs / k * ((t / secs * k).exp() - 1.0);
                amp * (ph + phase).sin()
            })
            .collect();
        apply_fades(&mut v, 480);
        v
    }

    #[test]
    fn full_scale_log_sweep() {
        torture("0 dBFS sweep", &[log_sweep(1.0, 0.0), log_sweep(1.0, 0.5)]);
    }

    #[test]
    fn plus_six_db_log_sweep() {
        torture("+6 dBFS sweep", &[log_sweep(2.0, 0.0), log_sweep(2.0, 0.5)]);
    }

    #[test]
    fn square_wave_near_quarter_rate() {
        let sq = |phase: f64| {
            let mut v: Vec<f64> = tone(11_900.0, 1.0, phase, 0..48_000)
                .map(|x| if x >= 0.0 { 2.0 } else { -2.0 })
                .collect();
            apply_fades(&mut v, 240);
            v
        };
        torture("+6 dBFS square 11.9 kHz", &[sq(0.3), sq(1.3)]);
    }

    #[test]
    fn hard_clipped_white_noise() {
        torture(
            "noise ×4 clipped ±1.5",
            &[
                clipped_noise(48_000, 11, 4.0, 1.5),
                clipped_noise(48_000, 12, 4.0, 1.5),
            ],
        );
    }

    #[test]
    fn below_the_ceiling_passes_bit_exactly() {
        // −3 dBFS sine plus quiet noise: true peak ≈ −2.6 dBTP < −1.
        let n = noise(20_000, 5);
        let x: Vec<f64> = tone(440.0, db_to_gain(-3.5), 0.0, 0..20_000)
            .zip(&n)
            .map(|(s, e)| s + 0.01 * e)
            .collect();
        let input = vec![x.clone(), x];
        assert!(db(true_peak(&input, SR)) < -1.5);
        let mut lim = Limiter::new(params());
        lim.prepare(SR, 2, 512);
        let (out, env) = run(&mut lim, &input, 512);
        assert!(env.iter().all(|&g| g == 1.0));
        assert_eq!(out, input);
    }

    #[test]
    fn gain_recovers_after_a_single_peak() {
        // −12 dBFS tone with a 10 ms burst at +5 dBFS at 0.5 s; 3 s in all.
        let x: Vec<f64> = (0..144_000)
            .map(|i| {
                let a = if (24_000..24_480).contains(&i) {
                    5.0
                } else {
                    -12.0
                };
                db_to_gain(a) * (2.0 * PI * 440.0 * i as f64 / f64::from(SR)).sin()
            })
            .collect();
        let mut lim = Limiter::new(params());
        lim.prepare(SR, 1, 4096);
        let (_, env) = run(&mut lim, &[x], 4096);
        let deepest = env.iter().fold(1.0_f64, |m, &g| m.min(g));
        assert!(db(deepest) < -5.5, "{}", db(deepest));
        // Untouched until the lookahead sees the burst coming.
        assert!(env[..24_000 - 96].iter().all(|&g| g == 1.0));
        // Within 0.1 dB of unity 5 × release (400 ms) after the burst …
        let after = 24_480 + 5 * 80 * 48;
        assert!(
            env[after..].iter().all(|&g| db(g) > -0.1),
            "{}",
            db(env[after])
        );
        // … and back to exactly 1.0 (bit-exact pass-through) well before the end.
        let unity = env.iter().rposition(|&g| g != 1.0).expect("some reduction") + 1;
        assert!(unity < 24_480 + 25 * 80 * 48, "unity from frame {unity}");
        println!(
            "deepest {:.2} dB; −0.1 dB after {:.0} ms; exactly 1.0 after {:.0} ms",
            db(deepest),
            (env.iter().rposition(|&g| db(g) <= -0.1).expect("reduction") - 24_480) as f64 / 48.0,
            (unity - 24_480) as f64 / 48.0
        );
    }

    #[test]
    fn block_size_does_not_matter() {
        let input = vec![
            clipped_noise(9_000, 3, 3.0, 1.2),
            clipped_noise(9_000, 4, 3.0, 1.2),
        ];
        let mut lim = Limiter::new(params());
        lim.prepare(SR, 2, 4096);
        let (reference, env) = run(&mut lim, &input, 4096);
        for size in [1, 17, 256, 1000] {
            lim.reset();
            let (out, e) = run(&mut lim, &input, size);
            assert_eq!(out, reference, "block size {size}");
            assert_eq!(e, env, "block size {size}");
        }
    }

    #[test]
    fn latency_is_lookahead_plus_detector_delay() {
        let mut lim = Limiter::new(params());
        assert_eq!(lim.latency(), 0);
        lim.prepare(96_000, 2, 64);
        assert_eq!(
            lim.latency(),
            192 + TruePeakDetector::new(2, 96_000).delay()
        );
        assert_eq!(lim.name(), "limiter");
        assert_eq!(lim.gain_envelope(), Some(&[][..]));
    }

    /// Throughput in release mode: `cargo test --release -p stemforge-worker
    /// limiter_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn limiter_speed() {
        let secs = 20;
        let input = vec![
            clipped_noise(48_000 * secs, 1, 2.0, 1.0),
            clipped_noise(48_000 * secs, 2, 2.0, 1.0),
        ];
        let mut lim = Limiter::new(params());
        lim.prepare(SR, 2, 4096);
        let t = std::time::Instant::now();
        let (out, _) = run(&mut lim, &input, 4096);
        let elapsed = t.elapsed().as_secs_f64();
        println!(
            "limiter: {:.0}x realtime (stereo, 48 kHz); output {:.3} dBTP",
            secs as f64 / elapsed,
            db(true_peak(&out, SR))
        );
    }

    /// Skipping the frames whose true peak provably stays under the target
    /// changes nothing: output and envelope are bit-identical to reading
    /// every frame, on music-like material from well below the ceiling to
    /// 6 dB into it, and on full-band material, in blocks of any size.
    #[test]
    fn skipping_detection_is_bit_identical() {
        let n = 48_000;
        let target = db_to_gain(-1.0 - INTERNAL_MARGIN_DB);
        let mut signals = Vec::new();
        for (seed, bright) in [(21, false), (22, true)] {
            let m = music(n, seed, bright);
            let tp = true_peak(&m, SR);
            for over_db in [-6.0, -0.5, 0.5, 1.0, 2.0, 3.0, 6.0] {
                let g = target * db_to_gain(over_db) / tp;
                let x: Vec<Vec<f64>> = m
                    .iter()
                    .map(|c| c.iter().map(|v| v * g).collect())
                    .collect();
                signals.push((
                    format!("music (bright: {bright}) {over_db:+} dB"),
                    x,
                    over_db,
                ));
            }
        }
        signals.push((
            "clipped noise".to_string(),
            vec![
                clipped_noise(n, 23, 3.0, 1.2),
                clipped_noise(n, 24, 3.0, 1.2),
            ],
            1.0,
        ));
        for (name, input, over_db) in &signals {
            for size in [4096, 1000, 17] {
                let mut fast = Limiter::new(params());
                fast.prepare(SR, 2, size);
                let (out, env) = run(&mut fast, input, size);
                let mut full = Limiter::new(params());
                full.prepare(SR, 2, size);
                full.read_every_frame();
                let (out_full, env_full) = run(&mut full, input, size);
                for (a, b) in env.iter().zip(&env_full) {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{name}, blocks of {size}: envelope"
                    );
                }
                for (a, b) in out.iter().flatten().zip(out_full.iter().flatten()) {
                    assert_eq!(a.to_bits(), b.to_bits(), "{name}, blocks of {size}: output");
                }
                let limited = env.iter().filter(|&&g| g < 1.0).count();
                assert_eq!(
                    limited > 0,
                    *over_db > 0.0,
                    "{name}: {limited} frames limited"
                );
            }
        }
    }

    /// Throughput on music-like material at mastering level (crest factor
    /// ≈ 15 dB, true peak 1 or 3 dB over the limiter's target, so it works on
    /// the peaks only); `limiter_speed` runs it too.
    #[test]
    #[ignore]
    fn limiter_speed_music() {
        let secs = 20;
        let target = db_to_gain(-1.0 - INTERNAL_MARGIN_DB);
        for (bright, over_db) in [(false, 1.0), (false, 3.0), (true, 3.0)] {
            let m = music(48_000 * secs, 2, bright);
            let g = target * db_to_gain(over_db) / true_peak(&m, SR);
            let input: Vec<Vec<f64>> = m
                .iter()
                .map(|c| c.iter().map(|v| v * g).collect())
                .collect();
            let mut best = f64::MAX;
            let mut env = Vec::new();
            for _ in 0..3 {
                let mut lim = Limiter::new(params());
                lim.prepare(SR, 2, 4096);
                let t = std::time::Instant::now();
                env = run(&mut lim, &input, 4096).1;
                best = best.min(t.elapsed().as_secs_f64());
            }
            let mut prev = crate::previous::limiter::Limiter::new(params());
            prev.prepare(SR, 2, 4096);
            let t = std::time::Instant::now();
            let env_prev = run(&mut prev, &input, 4096).1;
            let before = t.elapsed().as_secs_f64();
            assert_eq!(env, env_prev);
            let limited = env.iter().filter(|&&g| db(g) < -0.1).count();
            println!(
                "limiter, music (crest {:.1} dB, bright: {bright}) {over_db:+} dB over the target: \
                 {:.0}x realtime (stereo, 48 kHz; previous implementation {:.0}x); deepest gain \
                 {:+.2} dB, {:.1} % of frames below −0.1 dB",
                crest_db(&input),
                secs as f64 / best,
                secs as f64 / before,
                db(env.iter().fold(1.0_f64, |m, &g| m.min(g))),
                100.0 * limited as f64 / env.len() as f64
            );
        }
    }

    /// Output and envelope, bit for bit, against the previous implementation
    /// (every frame read exactly, every gain stage run on every frame), on
    /// music-like material from below the ceiling to 12 dB into it and on
    /// full-band material, with two parameter sets and two block sizes.
    #[test]
    fn matches_the_previous_implementation() {
        let n = 48_000;
        let target = db_to_gain(-1.0 - INTERNAL_MARGIN_DB);
        let mut signals = Vec::new();
        for (seed, bright) in [(31, false), (32, true)] {
            let m = music(n, seed, bright);
            let tp = true_peak(&m, SR);
            for over_db in [-6.0, 0.5, 3.0, 6.0, 12.0] {
                let g = target * db_to_gain(over_db) / tp;
                let x = m
                    .iter()
                    .map(|c| c.iter().map(|v| v * g).collect())
                    .collect();
                signals.push((format!("music (bright: {bright}) {over_db:+} dB"), x));
            }
        }
        signals.push((
            "clipped noise".to_string(),
            vec![
                clipped_noise(n, 33, 3.0, 1.2),
                clipped_noise(n, 34, 3.0, 1.2),
            ],
        ));
        let fast = LimiterParams {
            ceiling_db: -0.3,
            lookahead_ms: 5.0,
            release_ms: 20.0,
        };
        for (name, input) in &signals {
            for p in [params(), fast] {
                for size in [4096, 17] {
                    let mut ours = Limiter::new(p);
                    ours.prepare(SR, 2, size);
                    let (out, env) = run(&mut ours, input, size);
                    let mut prev = crate::previous::limiter::Limiter::new(p);
                    prev.prepare(SR, 2, size);
                    let (out_prev, env_prev) = run(&mut prev, input, size);
                    for (a, b) in env.iter().zip(&env_prev) {
                        assert_eq!(a.to_bits(), b.to_bits(), "{name}, {p:?}, blocks of {size}");
                    }
                    for (a, b) in out.iter().flatten().zip(out_prev.iter().flatten()) {
                        assert_eq!(a.to_bits(), b.to_bits(), "{name}, {p:?}, blocks of {size}");
                    }
                }
            }
        }
    }
}
