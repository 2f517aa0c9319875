//! Sample-rate conversion between the delivery rates (44.1, 48, 96 kHz, and
//! any other pair whose ratio reduces to small terms), streaming, planar, f64.
//!
//! # Method
//!
//! A rational polyphase windowed-sinc FIR. With `to / from = L / M` in lowest
//! terms, output frame `m` sits at input time `τ = m·M/L` (in input frames);
//! writing `τ = q + r/L` it is
//!
//! ```text
//! y[m] = Σ_{i=-H}^{H-1} x[q − i] · g(i + r/L)
//! ```
//!
//! where `g` is one continuous Kaiser-windowed sinc of half-width `H` input
//! frames, evaluated exactly at the `L` phases `r/L` (the ratio is rational,
//! so there is no interpolation between stored phases and no drifting
//! floating-point clock: `q` and `r` are integers).
//!
//! - **Band edges.** Pass band to [`PASS_EDGE_HZ`] (20 kHz), stop band from
//!   the lower of the two Nyquist frequencies (22.05 kHz for 44.1 kHz ↔ 48 kHz,
//!   24 kHz for 48 ↔ 96 kHz); below 44.1 kHz both edges scale with the rate.
//!   Downsampling therefore aliases nothing above −[`STOPBAND_DB`], and
//!   upsampling leaves no image above the input's Nyquist frequency.
//! - **Kaiser design** for [`STOPBAND_DB`] = 125 dB (β = 0.1102·(A − 8.7),
//!   length `(A − 7.95) / (2.285·Δω)`), cut off in the middle of the
//!   transition band. Pass-band ripple of such a design is ≈ ±5·10⁻⁶ dB.
//!   48 → 44.1 kHz: 147 phases × 192 taps; 44.1 → 48 kHz: 160 × 176;
//!   48 → 96 kHz: 2 × 100; 96 → 48 kHz: 1 × 196. Each phase is normalised to
//!   unity DC gain.
//! - **No delay, exact length.** The kernel is centred (zero phase): the
//!   stream is preceded by silence and, in [`Resampler::finish`], followed by
//!   silence, so output frame 0 is input time 0 and the output has exactly
//!   [`Resampler::output_frames`] = `round(n · to / from)` frames.
//! - **Any block size.** Input is staged in a fixed-size buffer allocated by
//!   [`Resampler::new`]; each output frame is one dot product over that
//!   frame's own window of input, so how the input was split into calls does
//!   not change a single bit of the output. Only the caller's output vectors
//!   grow.
//! - When the rates are equal the converter is a bit-exact pass-through.
//!
//! # Why not `rubato`
//!
//! The project first chose `rubato`. Version 5.0.1 cannot meet the
//! rule that audio is bit-identical on every worker, for two independent
//! reasons:
//!
//! 1. Its sinc resamplers choose an AVX, SSE or NEON dot product at run time
//!    (`make_interpolator`, `is_x86_feature_detected!`); the scalar
//!    interpolator can only be forced through the undocumented benchmarking
//!    feature `bench_asyncro`, which makes crate-private items public.
//! 2. Even with the scalar interpolator forced, its filter tables are built
//!    with `std`'s `f64::sin`/`cos` (`make_sincs`, and the `windowfunctions`
//!    crate), i.e. with the platform libm. glibc selects FMA or non-FMA
//!    variants of `sin`/`cos` by CPU at load time, and they differ in the
//!    last bit: on the development machine (glibc 2.36, AVX2+FMA),
//!    `GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA` (what a CPU without FMA
//!    gets) changes 44 of 65 536 table arguments and therefore the resampled
//!    output of the scalar-pinned `Async` resampler (different hashes of the
//!    same deterministic input). Its FFT resampler additionally enables
//!    `rustfft`'s run-time SIMD dispatch through `realfft`'s default features.
//!
//! # Determinism
//!
//! - Coefficients come from [`DetMath`] (the pure-Rust `libm`), a Bessel
//!   series evaluated in a fixed order and `sqrt` (correctly rounded by
//!   IEEE 754), so the tables are the same bits on every machine.
//! - The filter runs in plain f64 scalar code: four interleaved partial sums
//!   added as `(a0 + a1) + (a2 + a3)`, no fused multiply-add (Rust never
//!   contracts `a * b + c`), no run-time CPU feature detection, no
//!   dependency that does any. Whatever vector width the compiler picks, each
//!   lane performs the same IEEE operations in the same order.
//! - Positions are integer (`q`, `r`), never accumulated floating-point time.
//!
//! The integration tests (`worker/tests/resample.rs`) measure pass band,
//! stop band, alignment and length, check block-size invariance, and pin the
//! output to a golden hash so a change of any bit on any machine fails.

use std::f64::consts::PI;

use super::math::DetMath;

/// Upper edge of the pass band, Hz (scaled down for rates below 44.1 kHz).
pub const PASS_EDGE_HZ: f64 = 20_000.0;
/// Design stop-band attenuation, dB.
pub const STOPBAND_DB: f64 = 125.0;
/// The largest number of phases (`L`, the reduced output rate term) accepted.
pub const MAX_PHASES: u32 = 1024;
/// The largest conversion factor accepted either way (e.g. 192 → 12 kHz).
pub const MAX_FACTOR: u32 = 16;
/// Input frames staged per pass (the pipeline's block size).
const STAGE: usize = 4096;

/// Why a converter could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    #[error("sample rates must be positive (asked {from_hz} Hz → {to_hz} Hz)")]
    ZeroRate { from_hz: u32, to_hz: u32 },
    #[error("a resampler needs at least one channel")]
    NoChannels,
    #[error(
        "unsupported conversion {from_hz} Hz → {to_hz} Hz: the ratio must reduce to \
         L/M with L ≤ {MAX_PHASES} and a factor of at most {MAX_FACTOR} either way"
    )]
    UnsupportedRatio { from_hz: u32, to_hz: u32 },
}

/// A streaming sample-rate converter for a fixed pair of rates and channel count.
///
/// Construction designs the filter and allocates everything; [`process`]
/// and [`finish`] only append to the caller's output vectors. After
/// [`finish`] the converter is back in its initial state and can take a new
/// stream.
///
/// [`process`]: Resampler::process
/// [`finish`]: Resampler::finish
#[derive(Debug, Clone)]
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    channels: usize,
    /// Interpolation factor `L` (number of phases).
    up: usize,
    /// Decimation factor `M`.
    down: usize,
    /// Half the kernel length in input frames; `taps = 2·half`.
    half: usize,
    taps: usize,
    /// `up` rows of `taps` coefficients; row `r` is phase `r / up`.
    coeffs: Vec<f64>,
    /// Staged input per channel (fixed capacity `cap`).
    buf: Vec<Vec<f64>>,
    cap: usize,
    /// Frames staged in `buf`.
    fill: usize,
    /// Buffer index of the first input frame of the next output's window.
    pos: usize,
    /// Phase of the next output frame.
    phase: usize,
    frames_in: u64,
    frames_out: u64,
    identity: bool,
}

impl Resampler {
    /// Builds a converter from `from_hz` to `to_hz` for `channels` planar channels.
    pub fn new(from_hz: u32, to_hz: u32, channels: usize) -> Result<Resampler, ResampleError> {
        if from_hz == 0 || to_hz == 0 {
            return Err(ResampleError::ZeroRate { from_hz, to_hz });
        }
        if channels == 0 {
            return Err(ResampleError::NoChannels);
        }
        let g = gcd(from_hz, to_hz);
        let (up, down) = (to_hz / g, from_hz / g);
        if from_hz == to_hz {
            return Ok(Resampler {
                from_hz,
                to_hz,
                channels,
                up: 1,
                down: 1,
                half: 0,
                taps: 0,
                coeffs: Vec::new(),
                buf: Vec::new(),
                cap: 0,
                fill: 0,
                pos: 0,
                phase: 0,
                frames_in: 0,
                frames_out: 0,
                identity: true,
            });
        }
        let (u, d, f) = (u64::from(up), u64::from(down), u64::from(MAX_FACTOR));
        if up > MAX_PHASES || u > f * d || d > f * u {
            return Err(ResampleError::UnsupportedRatio { from_hz, to_hz });
        }
        let (half, coeffs) = design(from_hz, to_hz, up as usize);
        let taps = 2 * half;
        let cap = taps + STAGE;
        let mut r = Resampler {
            from_hz,
            to_hz,
            channels,
            up: up as usize,
            down: down as usize,
            half,
            taps,
            coeffs,
            buf: vec![vec![0.0; cap]; channels],
            cap,
            fill: 0,
            pos: 0,
            phase: 0,
            frames_in: 0,
            frames_out: 0,
            identity: false,
        };
        r.reset();
        Ok(r)
    }

    /// Output frames for `input_frames` at `from` Hz converted to `to` Hz:
    /// `round(input_frames · to / from)`, halves rounded up, in exact integer arithmetic.
    pub fn output_frames(input_frames: u64, from: u32, to: u32) -> u64 {
        if from == 0 {
            return 0;
        }
        let num = 2 * u128::from(input_frames) * u128::from(to) + u128::from(from);
        let v = num / (2 * u128::from(from));
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    /// Feeds planar input frames (one slice per channel, all the same length,
    /// any length including 0) and appends the output frames that are now
    /// complete to `out` (one vector per channel).
    ///
    /// # Panics
    /// If `input` or `out` does not have one entry per channel, or the input
    /// channels differ in length.
    pub fn process(&mut self, input: &[&[f64]], out: &mut [Vec<f64>]) {
        let n = input.first().map_or(0, |c| c.len());
        assert!(
            input.iter().all(|c| c.len() == n),
            "input channels differ in length"
        );
        self.process_frames(input, n, out);
    }

    /// As [`process`](Resampler::process), reading the first `frames`
    /// samples of each channel (e.g. a block's buffers, which are longer
    /// than the frames they hold), so a caller needs no slice list.
    ///
    /// # Panics
    /// If `input` or `out` does not have one entry per channel, or an input
    /// channel is shorter than `frames`.
    pub fn process_frames<C: AsRef<[f64]>>(
        &mut self,
        input: &[C],
        frames: usize,
        out: &mut [Vec<f64>],
    ) {
        assert_eq!(input.len(), self.channels, "input channel count");
        assert_eq!(out.len(), self.channels, "output channel count");
        let n = frames;
        assert!(
            input.iter().all(|c| c.as_ref().len() >= n),
            "an input channel is shorter than `frames`"
        );
        self.frames_in += n as u64;
        if self.identity {
            for (o, i) in out.iter_mut().zip(input) {
                o.extend_from_slice(&i.as_ref()[..n]);
            }
            self.frames_out += n as u64;
            return;
        }
        let expect = (n * self.up).div_ceil(self.down) + 1;
        for o in out.iter_mut() {
            o.reserve(expect);
        }
        let mut done = 0;
        while done < n {
            let k = self.make_room(n - done);
            for (b, i) in self.buf.iter_mut().zip(input) {
                b[self.fill..self.fill + k].copy_from_slice(&i.as_ref()[done..done + k]);
            }
            self.fill += k;
            done += k;
            self.drain(out, u64::MAX);
        }
    }

    /// Flushes the tail: appends the remaining output frames, so that the
    /// stream's total is exactly [`output_frames`](Resampler::output_frames)
    /// of the frames fed, then resets the converter for a new stream.
    pub fn finish(&mut self, out: &mut [Vec<f64>]) {
        assert_eq!(out.len(), self.channels, "output channel count");
        if self.identity {
            self.frames_in = 0;
            self.frames_out = 0;
            return;
        }
        let total = Self::output_frames(self.frames_in, self.from_hz, self.to_hz);
        let left = usize::try_from(total.saturating_sub(self.frames_out)).unwrap_or(usize::MAX);
        for o in out.iter_mut() {
            o.reserve(left);
        }
        while self.frames_out < total {
            // Silence after the end of the input, as much as the next window needs.
            let need = (self.pos + self.taps).saturating_sub(self.fill).max(1);
            let k = self.make_room(need);
            for b in &mut self.buf {
                b[self.fill..self.fill + k].fill(0.0);
            }
            self.fill += k;
            self.drain(out, total);
        }
        self.reset();
    }

    /// Input rate, Hz.
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate, Hz.
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// `(L, M)`: the reduced ratio `to / from`.
    pub fn ratio(&self) -> (usize, usize) {
        (self.up, self.down)
    }

    /// Taps per output frame and channel (0 for the identity).
    pub fn taps(&self) -> usize {
        self.taps
    }

    /// Input frames fed since construction or the last [`finish`](Resampler::finish).
    pub fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Output frames produced since construction or the last [`finish`](Resampler::finish).
    pub fn frames_out(&self) -> u64 {
        self.frames_out
    }

    /// Back to the start of a stream: silence before input time 0.
    fn reset(&mut self) {
        // Output 0 (q = 0, phase 0) reads x[−H+1 ..= H]; the first H−1 frames are the
        // silence before the stream.
        let pre = self.half.saturating_sub(1);
        for b in &mut self.buf {
            b[..pre].fill(0.0);
        }
        self.fill = pre;
        self.pos = 0;
        self.phase = 0;
        self.frames_in = 0;
        self.frames_out = 0;
    }

    /// Makes room for up to `want` frames; returns how many fit (≥ 1).
    fn make_room(&mut self, want: usize) -> usize {
        if self.cap - self.fill < want.min(STAGE) && self.pos > 0 {
            for b in &mut self.buf {
                b.copy_within(self.pos..self.fill, 0);
            }
            self.fill -= self.pos;
            self.pos = 0;
        }
        let k = want.min(self.cap - self.fill);
        debug_assert!(k > 0, "staging buffer full");
        k
    }

    /// Appends every output frame whose window is complete, up to `limit` in total.
    fn drain(&mut self, out: &mut [Vec<f64>], limit: u64) {
        let step_q = self.down / self.up;
        let step_r = self.down % self.up;
        while self.pos + self.taps <= self.fill && self.frames_out < limit {
            let row = &self.coeffs[self.phase * self.taps..(self.phase + 1) * self.taps];
            for (b, o) in self.buf.iter().zip(out.iter_mut()) {
                o.push(dot(&b[self.pos..self.pos + self.taps], row));
            }
            self.frames_out += 1;
            self.pos += step_q;
            self.phase += step_r;
            if self.phase >= self.up {
                self.phase -= self.up;
                self.pos += 1;
            }
        }
        // Neither call ever leaves the next window starting beyond the staged input
        // (the step, at most MAX_FACTOR frames, is far shorter than the kernel).
        debug_assert!(self.pos <= self.fill);
    }
}

/// Converts a whole planar signal in one go (`channels = input.len()`).
pub fn convert(input: &[&[f64]], from_hz: u32, to_hz: u32) -> Result<Vec<Vec<f64>>, ResampleError> {
    let mut r = Resampler::new(from_hz, to_hz, input.len())?;
    let frames = input.first().map_or(0, |c| c.len()) as u64;
    let total = usize::try_from(Resampler::output_frames(frames, from_hz, to_hz)).unwrap_or(0);
    let mut out: Vec<Vec<f64>> = input.iter().map(|_| Vec::with_capacity(total)).collect();
    r.process(input, &mut out);
    r.finish(&mut out);
    Ok(out)
}

/// Dot product in a fixed order: four interleaved partial sums, `(a0 + a1) + (a2 + a3)`.
/// `x.len() == h.len()`, a multiple of 4.
#[inline]
fn dot(x: &[f64], h: &[f64]) -> f64 {
    let mut a = [0.0f64; 4];
    for (xs, hs) in x.chunks_exact(4).zip(h.chunks_exact(4)) {
        a[0] += xs[0] * hs[0];
        a[1] += xs[1] * hs[1];
        a[2] += xs[2] * hs[2];
        a[3] += xs[3] * hs[3];
    }
    (a[0] + a[1]) + (a[2] + a[3])
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Modified Bessel function of the first kind, order 0, by its power series
/// (terms added in a fixed order).
fn bessel_i0(x: f64) -> f64 {
    let q = 0.25 * x * x;
    let mut term = 1.0f64;
    let mut sum = 1.0f64;
    let mut k = 1.0f64;
    while term > sum * 1e-18 {
        term *= q / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// Designs the kernel for `from_hz → to_hz` with `up` phases: returns the
/// half-length `H` (input frames) and `up` rows of `2H` coefficients, row `r`
/// holding `g(H − 1 − k + r/up)` for `k = 0 .. 2H`, normalised to sum 1.
fn design(from_hz: u32, to_hz: u32, up: usize) -> (usize, Vec<f64>) {
    let fs_in = f64::from(from_hz);
    let nyquist = 0.5 * f64::from(from_hz.min(to_hz));
    let pass = PASS_EDGE_HZ * (nyquist / 22_050.0).min(1.0);
    let stop = nyquist;
    // Cut-off (cycles per input frame) in the middle of the transition band.
    let fc = 0.5 * (pass + stop) / fs_in;
    let dw = 2.0 * PI * (stop - pass) / fs_in;
    let beta = 0.1102 * (STOPBAND_DB - 8.7);
    let len = (STOPBAND_DB - 7.95) / (2.285 * dw);
    // Even half-length, so the taps are a multiple of 4.
    let half = ((len / 2.0).ceil() as usize).next_multiple_of(2);
    let taps = 2 * half;
    let hf = half as f64;
    let i0_beta = bessel_i0(beta);
    let kernel = |t: f64| -> f64 {
        let u = t / hf;
        if u.abs() >= 1.0 {
            return 0.0;
        }
        let w = bessel_i0(beta * (1.0 - u * u).sqrt()) / i0_beta;
        let a = 2.0 * fc * t;
        let s = if a == 0.0 {
            1.0
        } else {
            (PI * a).dsin() / (PI * a)
        };
        2.0 * fc * s * w
    };
    let mut coeffs = Vec::with_capacity(up * taps);
    for r in 0..up {
        let phase = r as f64 / up as f64;
        let start = coeffs.len();
        for k in 0..taps {
            coeffs.push(kernel((half as f64 - 1.0 - k as f64) + phase));
        }
        let row = &mut coeffs[start..];
        let sum: f64 = row.iter().sum();
        for c in row.iter_mut() {
            *c /= sum;
        }
    }
    (half, coeffs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_sizes() {
        for (from, to, phases, taps) in [
            (48_000, 44_100, 147, 192),
            (44_100, 48_000, 160, 176),
            (48_000, 96_000, 2, 100),
            (96_000, 48_000, 1, 196),
        ] {
            let r = Resampler::new(from, to, 2).expect("supported");
            assert_eq!(r.ratio().0, phases, "{from} → {to}");
            assert_eq!(r.taps(), taps, "{from} → {to}");
        }
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(matches!(
            Resampler::new(0, 48_000, 1),
            Err(ResampleError::ZeroRate { .. })
        ));
        assert!(matches!(
            Resampler::new(48_000, 44_100, 0),
            Err(ResampleError::NoChannels)
        ));
        assert!(matches!(
            Resampler::new(48_000, 44_101, 1),
            Err(ResampleError::UnsupportedRatio { .. })
        ));
        assert!(matches!(
            Resampler::new(192_000, 8_000, 1),
            Err(ResampleError::UnsupportedRatio { .. })
        ));
        assert!(matches!(
            Resampler::new(4_000_000_000, 1, 1),
            Err(ResampleError::UnsupportedRatio { .. })
        ));
        assert!(Resampler::new(192_000, 12_000, 1).is_ok());
    }

    #[test]
    fn output_frames_rounds_half_up() {
        assert_eq!(Resampler::output_frames(0, 48_000, 44_100), 0);
        assert_eq!(Resampler::output_frames(1, 48_000, 44_100), 1);
        assert_eq!(Resampler::output_frames(160, 48_000, 44_100), 147);
        assert_eq!(Resampler::output_frames(1, 96_000, 48_000), 1); // 0.5 → 1
        assert_eq!(Resampler::output_frames(3, 96_000, 48_000), 2); // 1.5 → 2
        assert_eq!(Resampler::output_frames(7, 48_000, 96_000), 14);
        // 10 h at 44.1 kHz: 1 587 600 000 · 48 000 / 44 100 = 1 728 000 000 exactly.
        assert_eq!(
            Resampler::output_frames(1_587_600_000, 44_100, 48_000),
            1_728_000_000
        );
        assert_eq!(Resampler::output_frames(u64::MAX, 1, 2), u64::MAX);
    }
}
