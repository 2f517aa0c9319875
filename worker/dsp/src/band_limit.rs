//! A linear-phase FIR low-pass just below Nyquist, placed before every
//! true-peak limiter.
//!
//! Full-band material (hard-clipped noise, say) carries energy right up to
//! Nyquist, where every true-peak meter's reconstruction filter differs; its
//! inter-sample peaks then read differently on every meter (ours vs ffmpeg's
//! 192 kHz resampler differed by 0.4 dB). Removing the top few percent of the
//! band — inaudible at 44.1 kHz and above — makes the peaks well defined, so
//! a limited file meets its ceiling on any meter. Linear and time-invariant:
//! linked stems run it on each stem and still sum to the mix.

use super::block::Block;
use super::math::DetMath;
use super::node::Node;

/// Passband edge and stopband start as fractions of the sample rate.
const PASS_EDGE: f64 = 0.42;
const STOP_EDGE: f64 = 0.475;
/// Taps (odd: symmetric, integer group delay).
const TAPS: usize = 121;
const KAISER_BETA: f64 = 8.0;

/// Outputs [`fir_lanes`] computes at once.
const LANES: usize = 4;
/// Frames filtered per pass over a channel's linear history.
const CHUNK: usize = 256;

pub struct BandLimit {
    taps: Vec<f64>,
    /// Per channel, a linear history of `TAPS − 1 + CHUNK` samples: the last
    /// `TAPS − 1` inputs (oldest first), then room for one chunk of new
    /// input, so the window of every output in the chunk is one slice.
    hist: Vec<Vec<f64>>,
}

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let y = x * x / 4.0;
    for k in 1..200 {
        term *= y / (f64::from(k) * f64::from(k));
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// Windowed-sinc low-pass at the middle of the transition band, unity DC gain.
pub fn design() -> Vec<f64> {
    let fc = 0.5 * (PASS_EDGE + STOP_EDGE);
    let m = (TAPS - 1) as f64 / 2.0;
    let i0b = bessel_i0(KAISER_BETA);
    let mut h: Vec<f64> = (0..TAPS)
        .map(|n| {
            let t = n as f64 - m;
            let sinc = if t == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * t).dsin() / (std::f64::consts::PI * t)
            };
            let r = t / m;
            sinc * bessel_i0(KAISER_BETA * (1.0 - r * r).max(0.0).sqrt()) / i0b
        })
        .collect();
    let sum: f64 = h.iter().sum();
    for x in &mut h {
        *x /= sum;
    }
    h
}

impl BandLimit {
    pub fn new() -> Self {
        BandLimit {
            taps: design(),
            hist: Vec::new(),
        }
    }
}

impl Default for BandLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// The symmetric FIR over one window (oldest to newest): taps are folded
/// (h[k] = h[N-1-k]) and summed in four interleaved partial sums, combined in
/// a fixed order — deterministic, and quick without any reordering by the
/// compiler.
#[inline]
fn fir(h: &[f64], w: &[f64]) -> f64 {
    const HALF: usize = (TAPS - 1) / 2;
    let (h, w) = (&h[..TAPS], &w[..TAPS]);
    let mut acc = [0.0f64; 4];
    let mut k = 0;
    while k + 4 <= HALF {
        for j in 0..4 {
            acc[j] += h[k + j] * (w[k + j] + w[TAPS - 1 - k - j]);
        }
        k += 4;
    }
    while k < HALF {
        acc[0] += h[k] * (w[k] + w[TAPS - 1 - k]);
        k += 1;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + h[HALF] * w[HALF]
}

/// [`fir`] for `LANES` consecutive outputs at once: lane `l` runs the window
/// `w[l .. l + TAPS]` through exactly [`fir`]'s sequence of operations (the
/// same folded pairs, the same four partial sums, the same final order), so
/// each lane's result has [`fir`]'s bits. The lanes are independent, which
/// turns [`fir`]'s chains of dependent additions into parallel work the
/// compiler can put in SIMD registers.
#[inline]
fn fir_lanes(h: &[f64], w: &[f64]) -> [f64; LANES] {
    const HALF: usize = (TAPS - 1) / 2;
    let (h, w) = (&h[..TAPS], &w[..TAPS + LANES - 1]);
    let mut acc = [[0.0f64; LANES]; 4];
    let mut k = 0;
    while k + 4 <= HALF {
        for (j, a) in acc.iter_mut().enumerate() {
            let c = h[k + j];
            let (lo, hi) = (k + j, TAPS - 1 - k - j);
            for (l, a) in a.iter_mut().enumerate() {
                *a += c * (w[lo + l] + w[hi + l]);
            }
        }
        k += 4;
    }
    while k < HALF {
        let c = h[k];
        let (lo, hi) = (k, TAPS - 1 - k);
        for (l, a) in acc[0].iter_mut().enumerate() {
            *a += c * (w[lo + l] + w[hi + l]);
        }
        k += 1;
    }
    let mut out = [0.0f64; LANES];
    for (l, o) in out.iter_mut().enumerate() {
        *o = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]) + h[HALF] * w[HALF + l];
    }
    out
}

impl Node for BandLimit {
    fn name(&self) -> &'static str {
        "band_limit"
    }
    fn prepare(&mut self, _: u32, channels: usize, _: usize) {
        self.hist = vec![vec![0.0; TAPS - 1 + CHUNK]; channels];
    }
    fn reset(&mut self) {
        for h in &mut self.hist {
            h.fill(0.0);
        }
    }
    fn latency(&self) -> usize {
        (TAPS - 1) / 2
    }
    fn process(&mut self, block: &mut Block) {
        let taps = &self.taps[..TAPS];
        for (ch, hist) in self.hist.iter_mut().enumerate().take(block.channels()) {
            for x in block.channel_mut(ch).chunks_mut(CHUNK) {
                let n = x.len();
                // hist[TAPS − 1 + i] is input i of the chunk; the window of
                // output i, oldest to newest, is hist[i .. i + TAPS].
                hist[TAPS - 1..TAPS - 1 + n].copy_from_slice(x);
                let mut outs = x.chunks_exact_mut(LANES);
                let mut i = 0;
                for o in &mut outs {
                    o.copy_from_slice(&fir_lanes(taps, &hist[i..i + TAPS + LANES - 1]));
                    i += LANES;
                }
                for o in outs.into_remainder() {
                    *o = fir(taps, &hist[i..i + TAPS]);
                    i += 1;
                }
                // Keep the last TAPS − 1 inputs for the next chunk.
                hist.copy_within(n..n + TAPS - 1, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_db(h: &[f64], f: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, c) in h.iter().enumerate() {
            let w = 2.0 * std::f64::consts::PI * f * n as f64;
            re += c * w.cos();
            im -= c * w.sin();
        }
        10.0 * (re * re + im * im).log10()
    }

    #[test]
    fn flat_passband_deep_stopband() {
        let h = design();
        let mut ripple = 0.0_f64;
        for i in 0..=420 {
            ripple = ripple.max(response_db(&h, i as f64 / 1000.0).abs());
        }
        assert!(ripple < 0.01, "passband ripple {ripple} dB");
        for i in 475..=500 {
            let a = response_db(&h, i as f64 / 1000.0);
            assert!(a < -70.0, "stopband at {} fs: {a} dB", i as f64 / 1000.0);
        }
    }

    #[test]
    fn impulse_is_the_kernel_delayed_and_blocks_do_not_matter() {
        let mut n = BandLimit::new();
        n.prepare(48_000, 2, 4096);
        let mut b = Block::new(2, 4096);
        b.silence(300);
        b.channel_mut(0)[0] = 1.0;
        n.process(&mut b);
        let h = design();
        for (k, c) in h.iter().enumerate() {
            assert_eq!(b.channel(0)[k].to_bits(), c.to_bits(), "tap {k}");
        }
        assert_eq!(n.latency(), 60);
        // Block-size independence.
        let sig: Vec<f64> = (0..5000)
            .map(|i| ((i * 7919) % 1000) as f64 / 500.0 - 1.0)
            .collect();
        let run = |bs: usize| {
            let mut n = BandLimit::new();
            n.prepare(48_000, 1, 4096);
            let mut out = Vec::new();
            for chunk in sig.chunks(bs) {
                let mut b = Block::new(1, 4096);
                b.set_frames(chunk.len());
                b.channel_mut(0).copy_from_slice(chunk);
                n.process(&mut b);
                out.extend_from_slice(b.channel(0));
            }
            out
        };
        let a = run(4096);
        let c = run(333);
        assert!(a.iter().zip(&c).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    /// Every output sample, bit for bit, against the previous implementation
    /// (one output at a time from a ring buffer), for every test signal,
    /// block size and channel count, and with more channels in the block
    /// than prepared (those pass through).
    #[test]
    fn matches_the_previous_implementation() {
        use crate::previous::{self, BLOCK_SIZES, CHANNELS, SIGNALS};
        for channels in CHANNELS {
            for (kind, name) in SIGNALS.iter().enumerate() {
                let input = previous::signal(kind, channels, 9_000);
                for block in BLOCK_SIZES {
                    let mut new = BandLimit::new();
                    let mut old = previous::band_limit::BandLimit::new();
                    new.prepare(48_000, channels, block);
                    old.prepare(48_000, channels, block);
                    let what = format!("{name}, {channels} ch, blocks of {block}");
                    previous::assert_same(&mut new, &mut old, &input, block, &what);
                    // After a reset, the same again.
                    new.reset();
                    old.reset();
                    previous::assert_same(&mut new, &mut old, &input, block, &what);
                }
            }
        }
        let input = previous::signal(0, 3, 5_000);
        let mut new = BandLimit::new();
        let mut old = previous::band_limit::BandLimit::new();
        new.prepare(48_000, 2, 333);
        old.prepare(48_000, 2, 333);
        previous::assert_same(&mut new, &mut old, &input, 333, "3 channels, 2 prepared");
    }
}
