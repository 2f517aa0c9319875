//! Biquad EQ after the Audio EQ Cookbook (R. Bristow-Johnson), in f64.
//!
//! [`design`] turns an [`EqKind`] into a cascade of normalised biquads
//! ([`BiquadCoefs`], `a0 = 1`); [`response_db`] evaluates the cascade's
//! magnitude analytically; [`Eq`] is the node that runs the cascade of
//! Transposed Direct Form II sections on every channel (several channels in
//! lanes and several sections frame by frame, each channel's arithmetic that
//! of one section after another).
//!
//! High- and low-pass filters are Butterworth: 12 dB/oct is the cookbook
//! HPF/LPF with Q = 1/√2; 24 and 48 dB/oct cascade 2 and 4 cookbook sections,
//! all at the cutoff frequency, with the Qs of the Butterworth pole pairs, so
//! the whole cascade is −3.01 dB at the cutoff.
//!
//! Every transcendental function comes from [`DetMath`], so coefficients (and
//! therefore audio) are bit-identical on every x86-64 worker. (`f64::sqrt` is
//! correctly rounded by IEEE 754 and needs no such care.)

use super::block::Block;
use super::math::DetMath;
use super::node::Node;

use std::f64::consts::PI;

/// Which filter. Frequencies in Hz, gains in dB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EqKind {
    /// Butterworth high-pass; slope 12 (one biquad, Q = 1/√2), 24 (two
    /// biquads, Q = 0.54119610, 1.3065630) or 48 dB/oct (four biquads,
    /// Q = 0.50979558, 0.60134489, 0.89997622, 2.5629154).
    HighPass { freq_hz: f64, slope_db_oct: u32 },
    /// Butterworth low-pass; slopes as for [`EqKind::HighPass`].
    LowPass { freq_hz: f64, slope_db_oct: u32 },
    /// Cookbook low shelf, "Q" parameterisation.
    LowShelf { freq_hz: f64, gain_db: f64, q: f64 },
    /// Cookbook high shelf, "Q" parameterisation.
    HighShelf { freq_hz: f64, gain_db: f64, q: f64 },
    /// Peaking / bell.
    Peak { freq_hz: f64, gain_db: f64, q: f64 },
    /// Cookbook notch (band-reject).
    Notch { freq_hz: f64, q: f64 },
}

impl EqKind {
    /// The spec's node name for this kind.
    pub fn name(&self) -> &'static str {
        match self {
            EqKind::HighPass { .. } => "high_pass",
            EqKind::LowPass { .. } => "low_pass",
            EqKind::LowShelf { .. } => "low_shelf",
            EqKind::HighShelf { .. } => "high_shelf",
            EqKind::Peak { .. } => "peak",
            EqKind::Notch { .. } => "notch",
        }
    }

    /// The (centre / corner / cutoff) frequency in Hz.
    pub fn freq_hz(&self) -> f64 {
        match *self {
            EqKind::HighPass { freq_hz, .. }
            | EqKind::LowPass { freq_hz, .. }
            | EqKind::LowShelf { freq_hz, .. }
            | EqKind::HighShelf { freq_hz, .. }
            | EqKind::Peak { freq_hz, .. }
            | EqKind::Notch { freq_hz, .. } => freq_hz,
        }
    }
}

/// One normalised biquad section (`a0 = 1`):
/// `H(z) = (b0 + b1 z⁻¹ + b2 z⁻²) / (1 + a1 z⁻¹ + a2 z⁻²)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BiquadCoefs {
    pub b0: f64,
    pub b1: f64,
    pub b2: f64,
    pub a1: f64,
    pub a2: f64,
}

/// Why a filter cannot be designed. Each message names the value and the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EqError {
    #[error("{filter}: {field} is {value}, which is not a finite number; use a finite value")]
    NonFinite {
        filter: &'static str,
        field: &'static str,
        value: f64,
    },
    #[error(
        "{filter}: sample rate {sample_rate} Hz is not usable; the audio must have a sample rate above 0 Hz"
    )]
    BadSampleRate {
        filter: &'static str,
        sample_rate: u32,
    },
    #[error("{filter}: frequency {freq_hz} Hz is not above 0 Hz; use a positive frequency")]
    FreqNotPositive { filter: &'static str, freq_hz: f64 },
    #[error(
        "{filter}: frequency {freq_hz} Hz is at or above the Nyquist frequency ({nyquist_hz} Hz) of {sample_rate} Hz audio; use a lower frequency"
    )]
    AboveNyquist {
        filter: &'static str,
        freq_hz: f64,
        nyquist_hz: f64,
        sample_rate: u32,
    },
    #[error("{filter}: slope {slope_db_oct} dB/oct is not offered; use 12, 24 or 48")]
    BadSlope {
        filter: &'static str,
        slope_db_oct: u32,
    },
    #[error("{filter}: Q {q} is not above 0; use a positive Q (0.707 is a gentle default)")]
    BadQ { filter: &'static str, q: f64 },
    #[error(
        "{filter} at {freq_hz} Hz gives non-finite or unstable coefficients at {sample_rate} Hz; use a less extreme frequency, gain or Q"
    )]
    Unstable {
        filter: &'static str,
        freq_hz: f64,
        sample_rate: u32,
    },
}

/// The Qs of the second-order sections of an order-`2 * sections`
/// Butterworth filter, ascending: `Q_k = 1 / (2 sin θ_k)` with the pole
/// angles `θ_k = (2k − 1) π / (2N)` measured from the imaginary axis.
fn butterworth_qs(sections: usize) -> impl Iterator<Item = f64> {
    let order = (2 * sections) as f64;
    // Descending k gives ascending Q: the sharpest section runs last, so the
    // earlier sections never see its resonance peak.
    (1..=sections).rev().map(move |k| {
        let theta = (2 * k - 1) as f64 * PI / (2.0 * order);
        1.0 / (2.0 * theta.dsin())
    })
}

/// Divides raw cookbook coefficients by `a0`.
fn normalise(b0: f64, b1: f64, b2: f64, a0: f64, a1: f64, a2: f64) -> BiquadCoefs {
    BiquadCoefs {
        b0: b0 / a0,
        b1: b1 / a0,
        b2: b2 / a0,
        a1: a1 / a0,
        a2: a2 / a0,
    }
}

/// Cookbook LPF (`high == false`) or HPF at `w0` with quality `q`.
///
/// `(1 ∓ cos w0) / 2` is computed as `sin²(w0/2)` / `cos²(w0/2)` (identical
/// mathematically, free of cancellation near DC and Nyquist), and `b1 = ∓2 b0`,
/// `b2 = b0` are set exactly so the double zero sits exactly at z = ±1.
fn pass_section(w0: f64, q: f64, high: bool) -> BiquadCoefs {
    let cos_w0 = w0.dcos();
    let alpha = w0.dsin() / (2.0 * q);
    let a0 = 1.0 + alpha;
    let half = if high {
        let c = (0.5 * w0).dcos();
        c * c
    } else {
        let s = (0.5 * w0).dsin();
        s * s
    };
    let b0 = half / a0;
    BiquadCoefs {
        b0,
        b1: if high { -2.0 * b0 } else { 2.0 * b0 },
        b2: b0,
        a1: -2.0 * cos_w0 / a0,
        a2: (1.0 - alpha) / a0,
    }
}

fn check_finite(filter: &'static str, field: &'static str, value: f64) -> Result<(), EqError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(EqError::NonFinite {
            filter,
            field,
            value,
        })
    }
}

fn check_q(filter: &'static str, q: f64) -> Result<(), EqError> {
    check_finite(filter, "q", q)?;
    if q > 0.0 {
        Ok(())
    } else {
        Err(EqError::BadQ { filter, q })
    }
}

fn sections_for_slope(filter: &'static str, slope_db_oct: u32) -> Result<usize, EqError> {
    match slope_db_oct {
        12 => Ok(1),
        24 => Ok(2),
        48 => Ok(4),
        _ => Err(EqError::BadSlope {
            filter,
            slope_db_oct,
        }),
    }
}

/// Strictly inside the unit circle: `|a2| < 1` and `|a1| < 1 + a2` (the
/// stability triangle of `z² + a1 z + a2`), with every coefficient finite.
fn section_ok(c: &BiquadCoefs) -> bool {
    [c.b0, c.b1, c.b2, c.a1, c.a2].iter().all(|v| v.is_finite())
        && c.a2.abs() < 1.0
        && c.a1.abs() < 1.0 + c.a2
}

/// The biquad cascade for a filter at a sample rate.
pub fn design(kind: EqKind, sample_rate: u32) -> Result<Vec<BiquadCoefs>, EqError> {
    let filter = kind.name();
    let freq_hz = kind.freq_hz();
    check_finite(filter, "freq_hz", freq_hz)?;
    if sample_rate == 0 {
        return Err(EqError::BadSampleRate {
            filter,
            sample_rate,
        });
    }
    if freq_hz <= 0.0 {
        return Err(EqError::FreqNotPositive { filter, freq_hz });
    }
    let fs = f64::from(sample_rate);
    let nyquist_hz = fs / 2.0;
    if freq_hz >= nyquist_hz {
        return Err(EqError::AboveNyquist {
            filter,
            freq_hz,
            nyquist_hz,
            sample_rate,
        });
    }
    let w0 = 2.0 * PI * freq_hz / fs;

    let coefs: Vec<BiquadCoefs> = match kind {
        EqKind::HighPass { slope_db_oct, .. } | EqKind::LowPass { slope_db_oct, .. } => {
            let sections = sections_for_slope(filter, slope_db_oct)?;
            let high = matches!(kind, EqKind::HighPass { .. });
            butterworth_qs(sections)
                .map(|q| pass_section(w0, q, high))
                .collect()
        }
        EqKind::LowShelf { gain_db, q, .. } | EqKind::HighShelf { gain_db, q, .. } => {
            check_finite(filter, "gain_db", gain_db)?;
            check_q(filter, q)?;
            let a = 10f64.dpowf(gain_db / 40.0);
            let cos_w0 = w0.dcos();
            let alpha = w0.dsin() / (2.0 * q);
            let two_sqrt_a_alpha = 2.0 * a.sqrt() * alpha;
            let (ap1, am1) = (a + 1.0, a - 1.0);
            let c = if matches!(kind, EqKind::LowShelf { .. }) {
                normalise(
                    a * (ap1 - am1 * cos_w0 + two_sqrt_a_alpha),
                    2.0 * a * (am1 - ap1 * cos_w0),
                    a * (ap1 - am1 * cos_w0 - two_sqrt_a_alpha),
                    ap1 + am1 * cos_w0 + two_sqrt_a_alpha,
                    -2.0 * (am1 + ap1 * cos_w0),
                    ap1 + am1 * cos_w0 - two_sqrt_a_alpha,
                )
            } else {
                normalise(
                    a * (ap1 + am1 * cos_w0 + two_sqrt_a_alpha),
                    -2.0 * a * (am1 + ap1 * cos_w0),
                    a * (ap1 + am1 * cos_w0 - two_sqrt_a_alpha),
                    ap1 - am1 * cos_w0 + two_sqrt_a_alpha,
                    2.0 * (am1 - ap1 * cos_w0),
                    ap1 - am1 * cos_w0 - two_sqrt_a_alpha,
                )
            };
            vec![c]
        }
        EqKind::Peak { gain_db, q, .. } => {
            check_finite(filter, "gain_db", gain_db)?;
            check_q(filter, q)?;
            let a = 10f64.dpowf(gain_db / 40.0);
            let cos_w0 = w0.dcos();
            let alpha = w0.dsin() / (2.0 * q);
            let a0 = 1.0 + alpha / a;
            let a1 = -2.0 * cos_w0 / a0;
            vec![BiquadCoefs {
                b0: (1.0 + alpha * a) / a0,
                // Identical to a1 by construction; sharing it keeps the bell
                // exactly symmetric in the coefficients.
                b1: a1,
                b2: (1.0 - alpha * a) / a0,
                a1,
                a2: (1.0 - alpha / a) / a0,
            }]
        }
        EqKind::Notch { q, .. } => {
            check_q(filter, q)?;
            let cos_w0 = w0.dcos();
            let alpha = w0.dsin() / (2.0 * q);
            let a0 = 1.0 + alpha;
            let b0 = 1.0 / a0;
            let a1 = -2.0 * cos_w0 / a0;
            // b0 == b2 exactly puts the zeros exactly on the unit circle.
            vec![BiquadCoefs {
                b0,
                b1: a1,
                b2: b0,
                a1,
                a2: (1.0 - alpha) / a0,
            }]
        }
    };

    if coefs.iter().all(section_ok) {
        Ok(coefs)
    } else {
        Err(EqError::Unstable {
            filter,
            freq_hz,
            sample_rate,
        })
    }
}

/// `|P(e^{jω})|²` of `p0 + p1 z⁻¹ + p2 z⁻²`, as `Re² + Im²` of
/// `e^{jω}·P(e^{jω}) = (p0+p1+p2) − 2φ(p0+p2) + j(p0−p2)·sin ω` with
/// `φ = sin²(ω/2)`. Unlike the direct complex sum this stays accurate near DC
/// and deep in a stopband: `p0+p1+p2` is summed with the rounding error of
/// `p0+p2` carried (an error-free two-sum), and `p0−p2` is exact when the two
/// are close.
fn poly_mag_sq(p0: f64, p1: f64, p2: f64, phi: f64, sin_w: f64) -> f64 {
    let outer = p0 + p2;
    let z = outer - p0;
    let outer_err = (p0 - (outer - z)) + (p2 - z);
    let sum = (outer + p1) + outer_err;
    let re = sum - 2.0 * phi * outer;
    let im = (p0 - p2) * sin_w;
    re * re + im * im
}

/// Analytic magnitude of the cascade at `freq_hz`, in dB:
/// `20·log10|H(e^{jω})|` from the coefficients (−∞ at an exact zero, 0 dB for
/// an empty cascade).
pub fn response_db(coefs: &[BiquadCoefs], freq_hz: f64, sample_rate: u32) -> f64 {
    let w = 2.0 * PI * freq_hz / f64::from(sample_rate);
    let s = (0.5 * w).dsin();
    let phi = s * s;
    let sin_w = w.dsin();
    coefs
        .iter()
        .map(|c| {
            let num = poly_mag_sq(c.b0, c.b1, c.b2, phi, sin_w);
            let den = poly_mag_sq(1.0, c.a1, c.a2, phi, sin_w);
            10.0 * num.dlog10() - 10.0 * den.dlog10()
        })
        .sum()
}

/// The EQ node: one filter, a cascade of biquads per channel.
pub struct Eq {
    kind: EqKind,
    sample_rate: u32,
    coefs: Vec<BiquadCoefs>,
    /// `[s1, s2]` per channel per section, channel-major.
    state: Vec<[f64; 2]>,
    channels: usize,
    error: Option<EqError>,
}

impl Eq {
    /// Designs the filter for `sample_rate`, so bad settings surface when the
    /// graph is built. `prepare` then only allocates per-channel state.
    pub fn new(kind: EqKind, sample_rate: u32) -> Result<Eq, EqError> {
        Ok(Eq {
            kind,
            sample_rate,
            coefs: design(kind, sample_rate)?,
            state: Vec::new(),
            channels: 0,
            error: None,
        })
    }

    pub fn kind(&self) -> EqKind {
        self.kind
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The cascade in use.
    pub fn coefs(&self) -> &[BiquadCoefs] {
        &self.coefs
    }

    /// Set when `prepare` was called with a sample rate the filter cannot be
    /// designed for (e.g. its frequency is above that rate's Nyquist); the
    /// node then passes audio through unchanged.
    pub fn design_error(&self) -> Option<&EqError> {
        self.error.as_ref()
    }
}

impl Node for Eq {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn prepare(&mut self, sample_rate: u32, channels: usize, _max_block: usize) {
        if sample_rate != self.sample_rate {
            self.sample_rate = sample_rate;
            match design(self.kind, sample_rate) {
                Ok(c) => {
                    self.coefs = c;
                    self.error = None;
                }
                Err(e) => {
                    self.coefs.clear();
                    self.error = Some(e);
                }
            }
        }
        self.channels = channels;
        self.state = vec![[0.0; 2]; channels * self.coefs.len()];
    }

    fn reset(&mut self) {
        self.state.fill([0.0; 2]);
    }

    fn process(&mut self, block: &mut Block) {
        let sections = self.coefs.len();
        if sections == 0 {
            return;
        }
        let frames = block.frames();
        // Channels beyond those prepared (a contract violation) pass through.
        let channels = block.channels().min(self.state.len() / sections);
        let mut rest = &mut block.raw_mut()[..channels];
        let mut first = 0;
        while !rest.is_empty() {
            // Channels in groups of 4 lanes, then 2, then 1.
            let lanes = match rest.len() {
                1 => 1,
                2 | 3 => 2,
                _ => 4,
            };
            let (group, tail) = rest.split_at_mut(lanes);
            let state = &mut self.state[first * sections..(first + lanes) * sections];
            match lanes {
                1 => run_group::<1>(&self.coefs, state, group, frames),
                2 => run_group::<2>(&self.coefs, state, group, frames),
                _ => run_group::<4>(&self.coefs, state, group, frames),
            }
            rest = tail;
            first += lanes;
        }
    }
}

/// Runs the cascade `coefs` over `L` channels (`chans`, their first `frames`
/// samples; `state` holds their `[s1, s2]` per section, channel-major), the
/// sections in groups of up to four, one group after another over the whole
/// block. Only which channels and sections share a pass changes, never the
/// operations on any one channel.
fn run_group<const L: usize>(
    coefs: &[BiquadCoefs],
    state: &mut [[f64; 2]],
    chans: &mut [Vec<f64>],
    frames: usize,
) {
    let Ok(chans) = <&mut [Vec<f64>; L]>::try_from(chans) else {
        return;
    };
    let mut xs = chans.each_mut().map(|c| &mut c[..frames]);
    let sections = coefs.len();
    let mut first = 0;
    while first < sections {
        let n = match sections - first {
            1 => 1,
            2 | 3 => 2,
            _ => 4,
        };
        match n {
            1 => run_sections::<L, 1>(coefs, state, sections, first, &mut xs),
            2 => run_sections::<L, 2>(coefs, state, sections, first, &mut xs),
            _ => run_sections::<L, 4>(coefs, state, sections, first, &mut xs),
        }
        first += n;
    }
}

/// Sections `first .. first + N` of the cascade over `L` channels at once.
/// Lane `l` is channel `xs[l]`, and each lane runs exactly the per-channel
/// Transposed Direct Form II recurrence (`y = b0·x + s1`,
/// `s1 = b1·x − a1·y + s2`, `s2 = b2·x − a2·y`, in that order), section `k`
/// feeding section `k + 1` the very value it would have written back to the
/// block; frame by frame, so the lanes' and sections' independent chains of
/// dependent operations overlap instead of running one after another.
#[inline]
#[allow(clippy::needless_range_loop)] // frame i across L parallel channels
fn run_sections<const L: usize, const N: usize>(
    coefs: &[BiquadCoefs],
    state: &mut [[f64; 2]],
    sections: usize,
    first: usize,
    xs: &mut [&mut [f64]; L],
) {
    let c: [BiquadCoefs; N] = std::array::from_fn(|k| coefs[first + k]);
    let mut s1 = [[0.0f64; L]; N];
    let mut s2 = [[0.0f64; L]; N];
    for l in 0..L {
        for k in 0..N {
            [s1[k][l], s2[k][l]] = state[l * sections + first + k];
        }
    }
    let frames = xs[0].len();
    for i in 0..frames {
        let mut v: [f64; L] = std::array::from_fn(|l| xs[l][i]);
        for k in 0..N {
            let c = &c[k];
            for l in 0..L {
                let input = v[l];
                let y = c.b0 * input + s1[k][l];
                s1[k][l] = c.b1 * input - c.a1 * y + s2[k][l];
                s2[k][l] = c.b2 * input - c.a2 * y;
                v[l] = y;
            }
        }
        for l in 0..L {
            xs[l][i] = v[l];
        }
    }
    for l in 0..L {
        for k in 0..N {
            state[l * sections + first + k] = [s1[k][l], s2[k][l]];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATES: [u32; 2] = [48_000, 96_000];

    /// xorshift64*: full-scale uniform noise in [-1, 1).
    struct Noise(u64);

    impl Noise {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
            (r >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    fn eq(kind: EqKind, rate: u32) -> Eq {
        Eq::new(kind, rate).expect("valid filter")
    }

    /// The filter kinds of acceptance test 1 at `freq_hz`.
    fn kinds_at(freq_hz: f64) -> Vec<EqKind> {
        let mut v = Vec::new();
        for slope_db_oct in [12, 24, 48] {
            v.push(EqKind::HighPass {
                freq_hz,
                slope_db_oct,
            });
            v.push(EqKind::LowPass {
                freq_hz,
                slope_db_oct,
            });
        }
        for gain_db in [-12.0, 12.0] {
            let q = std::f64::consts::FRAC_1_SQRT_2;
            v.push(EqKind::LowShelf {
                freq_hz,
                gain_db,
                q,
            });
            v.push(EqKind::HighShelf {
                freq_hz,
                gain_db,
                q,
            });
            for q in [0.7, 4.0] {
                v.push(EqKind::Peak {
                    freq_hz,
                    gain_db,
                    q,
                });
            }
        }
        v.push(EqKind::Notch { freq_hz, q: 10.0 });
        v
    }

    /// Unit impulse through the node in blocks of 4096, until a whole block
    /// stays below 1e-14 (at least 65536 samples).
    fn impulse_response(kind: EqKind, rate: u32) -> Vec<f64> {
        const BLOCK: usize = 4096;
        let mut node = eq(kind, rate);
        node.prepare(rate, 1, BLOCK);
        let mut block = Block::new(1, BLOCK);
        let mut h = Vec::new();
        loop {
            block.silence(BLOCK);
            if h.is_empty() {
                block.channel_mut(0)[0] = 1.0;
            }
            node.process(&mut block);
            h.extend_from_slice(block.channel(0));
            let tail = block.peak();
            if h.len() >= 65_536 && tail < 1e-14 {
                break;
            }
            assert!(
                h.len() < 1 << 23,
                "{kind:?} at {rate} Hz: impulse response has not decayed ({tail})"
            );
        }
        h
    }

    /// `20·log10|Σ h[n] e^{-jωn}|` at each frequency, by Horner's rule
    /// (eight frequencies at a time).
    fn dft_db(h: &[f64], freqs: &[f64], rate: u32) -> Vec<f64> {
        let mut out = Vec::with_capacity(freqs.len());
        for chunk in freqs.chunks(8) {
            let mut wr = [0.0; 8];
            let mut wi = [0.0; 8];
            for (k, f) in chunk.iter().enumerate() {
                let w = 2.0 * PI * f / f64::from(rate);
                wr[k] = w.dcos();
                wi[k] = -w.dsin();
            }
            let mut ar = [0.0; 8];
            let mut ai = [0.0; 8];
            for &x in h.iter().rev() {
                for k in 0..8 {
                    let r = ar[k] * wr[k] - ai[k] * wi[k] + x;
                    ai[k] = ar[k] * wi[k] + ai[k] * wr[k];
                    ar[k] = r;
                }
            }
            for k in 0..chunk.len() {
                out.push(10.0 * (ar[k] * ar[k] + ai[k] * ai[k]).dlog10());
            }
        }
        out
    }

    fn log_freqs(lo: f64, hi: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| lo * (hi / lo).dpowf(i as f64 / (n - 1) as f64))
            .collect()
    }

    /// Magnitudes of the roots of z² + a1 z + a2.
    fn pole_radii(c: &BiquadCoefs) -> [f64; 2] {
        let d = c.a1 * c.a1 - 4.0 * c.a2;
        if d >= 0.0 {
            let r = d.sqrt();
            [((-c.a1 + r) / 2.0).abs(), ((-c.a1 - r) / 2.0).abs()]
        } else {
            let m = c.a2.sqrt();
            [m, m]
        }
    }

    fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got}, want {want} ± {tol}"
        );
    }

    #[test]
    fn butterworth_qs_match_the_tables() {
        let qs = |n| butterworth_qs(n).collect::<Vec<_>>();
        assert_eq!(qs(1).len(), 1);
        assert_close(qs(1)[0], std::f64::consts::FRAC_1_SQRT_2, 1e-15, "Q 12");
        for (got, want) in qs(2).iter().zip([0.541_196_10, 1.306_563_0]) {
            assert_close(*got, want, 1e-7, "Q 24");
        }
        let want48 = [0.509_795_58, 0.601_344_89, 0.899_976_22, 2.562_915_4];
        assert_eq!(qs(4).len(), 4);
        for (got, want) in qs(4).iter().zip(want48) {
            assert_close(*got, want, 1e-7, "Q 48");
        }
        for (slope, n) in [(12, 1), (24, 2), (48, 4)] {
            let hp = design(
                EqKind::HighPass {
                    freq_hz: 1000.0,
                    slope_db_oct: slope,
                },
                48_000,
            )
            .expect("design");
            assert_eq!(hp.len(), n);
        }
    }

    /// Acceptance 1: the node's impulse response matches `response_db`.
    #[test]
    fn impulse_response_matches_analytic_response() {
        let mut cases = Vec::new();
        for rate in RATES {
            for freq in [30.0, 1000.0, 10_000.0] {
                for kind in kinds_at(freq) {
                    cases.push((kind, rate));
                }
            }
        }
        let results: Vec<(f64, usize, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = cases
                .chunks(cases.len().div_ceil(8))
                .map(|chunk| {
                    s.spawn(move || {
                        let mut worst = (0.0_f64, 0_usize, String::new());
                        for &(kind, rate) in chunk {
                            let h = impulse_response(kind, rate);
                            let coefs = design(kind, rate).expect("design");
                            let freqs = log_freqs(10.0, 0.45 * f64::from(rate), 240);
                            let measured = dft_db(&h, &freqs, rate);
                            for (f, m) in freqs.iter().zip(&measured) {
                                let want = response_db(&coefs, *f, rate);
                                if want < -100.0 {
                                    // Deep stopband / notch: linear comparison.
                                    let lin = |db: f64| 10f64.dpowf(db / 20.0);
                                    assert!((lin(*m) - lin(want)).abs() < 1e-7, "{kind:?} {f}");
                                    continue;
                                }
                                let dev = (m - want).abs();
                                assert!(
                                    dev < 0.01,
                                    "{kind:?} at {rate} Hz, {f} Hz: DFT {m} dB vs analytic {want} dB"
                                );
                                if dev > worst.0 {
                                    worst = (dev, h.len(), format!("{kind:?} at {rate} Hz, {f:.1} Hz"));
                                }
                            }
                        }
                        worst
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("worker thread"))
                .collect()
        });
        let worst =
            results.into_iter().fold(
                (0.0, 0, String::new()),
                |a, b| if b.0 > a.0 { b } else { a },
            );
        eprintln!(
            "worst DFT deviation {:.3e} dB ({}, {} samples)",
            worst.0, worst.2, worst.1
        );
    }

    /// Acceptance 2: known values.
    #[test]
    fn known_values() {
        for rate in RATES {
            let fs = f64::from(rate);
            for freq_hz in [30.0, 1000.0, 10_000.0] {
                // Peak gain at the centre.
                for gain_db in [-12.0, 12.0, 30.0, -30.0] {
                    for q in [0.7, 4.0] {
                        let c = design(
                            EqKind::Peak {
                                freq_hz,
                                gain_db,
                                q,
                            },
                            rate,
                        )
                        .expect("design");
                        assert_close(response_db(&c, freq_hz, rate), gain_db, 1e-9, "peak centre");
                    }
                }
                // Butterworth: −3.0103 dB at the cutoff.
                for slope_db_oct in [12, 24, 48] {
                    for kind in [
                        EqKind::HighPass {
                            freq_hz,
                            slope_db_oct,
                        },
                        EqKind::LowPass {
                            freq_hz,
                            slope_db_oct,
                        },
                    ] {
                        let c = design(kind, rate).expect("design");
                        assert_close(response_db(&c, freq_hz, rate), -3.0103, 0.01, "cutoff");
                        assert_close(
                            response_db(&c, freq_hz, rate),
                            -10.0 * 2f64.dlog10(),
                            1e-9,
                            "cutoff exact",
                        );
                    }
                }
                // Notch: nothing at the centre.
                let c = design(EqKind::Notch { freq_hz, q: 10.0 }, rate).expect("design");
                assert!(response_db(&c, freq_hz, rate) < -100.0);
            }
            // Shelves reach the full gain at the far end.
            for gain_db in [-12.0, 12.0] {
                let q = std::f64::consts::FRAC_1_SQRT_2;
                let ls = design(
                    EqKind::LowShelf {
                        freq_hz: 1000.0,
                        gain_db,
                        q,
                    },
                    rate,
                )
                .expect("design");
                assert_close(response_db(&ls, 0.0, rate), gain_db, 1e-9, "low shelf DC");
                assert_close(
                    response_db(&ls, 10.0, rate),
                    gain_db,
                    0.05,
                    "low shelf 10 Hz",
                );
                assert_close(
                    response_db(&ls, 0.45 * fs, rate),
                    0.0,
                    0.05,
                    "low shelf top",
                );
                let hs = design(
                    EqKind::HighShelf {
                        freq_hz: 1000.0,
                        gain_db,
                        q,
                    },
                    rate,
                )
                .expect("design");
                assert_close(
                    response_db(&hs, fs / 2.0, rate),
                    gain_db,
                    1e-9,
                    "high shelf Nyquist",
                );
                assert_close(
                    response_db(&hs, 0.45 * fs, rate),
                    gain_db,
                    0.05,
                    "high shelf top",
                );
                assert_close(response_db(&hs, 10.0, rate), 0.0, 0.05, "high shelf 10 Hz");
                // Half the gain at the corner (cookbook shelf midpoint).
                assert_close(
                    response_db(&ls, 1000.0, rate),
                    gain_db / 2.0,
                    1e-9,
                    "ls mid",
                );
                assert_close(
                    response_db(&hs, 1000.0, rate),
                    gain_db / 2.0,
                    1e-9,
                    "hs mid",
                );
            }
            // Asymptotic slope of the high-pass.
            for (slope_db_oct, want) in [(12, 12.0), (24, 24.0), (48, 48.0)] {
                let fc = 1000.0;
                let c = design(
                    EqKind::HighPass {
                        freq_hz: fc,
                        slope_db_oct,
                    },
                    rate,
                )
                .expect("design");
                let drop = response_db(&c, fc / 8.0, rate) - response_db(&c, fc / 16.0, rate);
                assert_close(drop, want, 0.5, "high-pass slope");
                let lp = design(
                    EqKind::LowPass {
                        freq_hz: 100.0,
                        slope_db_oct,
                    },
                    rate,
                )
                .expect("design");
                let drop = response_db(&lp, 800.0, rate) - response_db(&lp, 1600.0, rate);
                assert_close(drop, want, 0.5, "low-pass slope");
            }
        }
    }

    /// Acceptance 3: stable at extreme settings, finite and bounded on noise.
    #[test]
    fn stable_at_extremes() {
        let mut cases = Vec::new();
        for rate in RATES {
            let fs = f64::from(rate);
            for freq_hz in [5.0, 0.49 * fs] {
                for slope_db_oct in [12, 24, 48] {
                    cases.push((
                        EqKind::HighPass {
                            freq_hz,
                            slope_db_oct,
                        },
                        rate,
                        0.0,
                    ));
                    cases.push((
                        EqKind::LowPass {
                            freq_hz,
                            slope_db_oct,
                        },
                        rate,
                        0.0,
                    ));
                }
                for q in [0.05, 50.0] {
                    cases.push((EqKind::Notch { freq_hz, q }, rate, 0.0));
                    for gain_db in [-30.0, 30.0] {
                        cases.push((
                            EqKind::LowShelf {
                                freq_hz,
                                gain_db,
                                q,
                            },
                            rate,
                            gain_db,
                        ));
                        cases.push((
                            EqKind::HighShelf {
                                freq_hz,
                                gain_db,
                                q,
                            },
                            rate,
                            gain_db,
                        ));
                        cases.push((
                            EqKind::Peak {
                                freq_hz,
                                gain_db,
                                q,
                            },
                            rate,
                            gain_db,
                        ));
                    }
                }
            }
        }
        std::thread::scope(|s| {
            for chunk in cases.chunks(cases.len().div_ceil(8)) {
                s.spawn(move || {
                    for &(kind, rate, gain_db) in chunk {
                        let coefs = design(kind, rate).expect("design");
                        for c in &coefs {
                            for r in pole_radii(c) {
                                assert!(r < 1.0, "{kind:?} at {rate} Hz: pole radius {r}");
                            }
                        }
                        let mut node = eq(kind, rate);
                        node.prepare(rate, 2, 4096);
                        let mut block = Block::new(2, 4096);
                        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
                        let bound = 10.0 * 10f64.dpowf(gain_db.max(0.0) / 20.0);
                        let total = 10 * rate as usize;
                        let mut done = 0;
                        let mut peak = 0.0_f64;
                        while done < total {
                            let n = 4096.min(total - done);
                            block.set_frames(n);
                            for ch in block.channels_mut() {
                                ch.iter_mut().for_each(|x| *x = noise.next());
                            }
                            node.process(&mut block);
                            assert!(
                                block
                                    .channel(0)
                                    .iter()
                                    .chain(block.channel(1))
                                    .all(|x| x.is_finite()),
                                "{kind:?} at {rate} Hz: non-finite output"
                            );
                            peak = peak.max(block.peak());
                            done += n;
                        }
                        assert!(peak < bound, "{kind:?} at {rate} Hz: peak {peak} ≥ {bound}");
                        // Then a second of silence: the state decays, finite.
                        for _ in 0..(rate as usize).div_ceil(4096) {
                            block.silence(4096);
                            node.process(&mut block);
                            assert!(block.channel(0).iter().all(|x| x.is_finite()));
                        }
                    }
                });
            }
        });
    }

    /// Acceptance 4: errors name the value.
    #[test]
    fn errors_name_the_value() {
        let at_nyquist = design(
            EqKind::Peak {
                freq_hz: 24_000.0,
                gain_db: 3.0,
                q: 1.0,
            },
            48_000,
        )
        .expect_err("at Nyquist");
        assert!(matches!(at_nyquist, EqError::AboveNyquist { .. }));
        let msg = at_nyquist.to_string();
        assert!(
            msg.contains(
                "24000 Hz is at or above the Nyquist frequency (24000 Hz) of 48000 Hz audio"
            ),
            "{msg}"
        );
        assert!(msg.contains("use a lower frequency"), "{msg}");

        let above = Eq::new(
            EqKind::LowPass {
                freq_hz: 30_000.0,
                slope_db_oct: 12,
            },
            44_100,
        )
        .err()
        .expect("above Nyquist");
        let msg = above.to_string();
        assert!(
            msg.contains("low_pass") && msg.contains("30000 Hz") && msg.contains("22050 Hz"),
            "{msg}"
        );

        let slope = design(
            EqKind::HighPass {
                freq_hz: 80.0,
                slope_db_oct: 18,
            },
            48_000,
        )
        .expect_err("slope 18");
        assert_eq!(
            slope,
            EqError::BadSlope {
                filter: "high_pass",
                slope_db_oct: 18
            }
        );
        assert!(slope.to_string().contains("slope 18 dB/oct"), "{slope}");
        assert!(slope.to_string().contains("12, 24 or 48"), "{slope}");

        for kind in [
            EqKind::Peak {
                freq_hz: 1000.0,
                gain_db: 3.0,
                q: 0.0,
            },
            EqKind::LowShelf {
                freq_hz: 1000.0,
                gain_db: 3.0,
                q: 0.0,
            },
            EqKind::Notch {
                freq_hz: 1000.0,
                q: 0.0,
            },
        ] {
            let e = design(kind, 48_000).expect_err("q = 0");
            assert!(matches!(e, EqError::BadQ { q, .. } if q == 0.0));
            assert!(e.to_string().contains("Q 0 is not above 0"), "{e}");
        }
        let e = design(
            EqKind::Peak {
                freq_hz: 1000.0,
                gain_db: 3.0,
                q: -2.5,
            },
            48_000,
        )
        .expect_err("negative q");
        assert!(e.to_string().contains("Q -2.5"), "{e}");

        let e = design(
            EqKind::Peak {
                freq_hz: 1000.0,
                gain_db: f64::NAN,
                q: 1.0,
            },
            48_000,
        )
        .expect_err("NaN gain");
        assert!(e.to_string().contains("gain_db is NaN"), "{e}");
        let e = design(
            EqKind::Notch {
                freq_hz: f64::INFINITY,
                q: 1.0,
            },
            48_000,
        )
        .expect_err("infinite freq");
        assert!(e.to_string().contains("freq_hz is inf"), "{e}");
        let e = design(
            EqKind::HighPass {
                freq_hz: 0.0,
                slope_db_oct: 12,
            },
            48_000,
        )
        .expect_err("0 Hz");
        assert!(e.to_string().contains("frequency 0 Hz"), "{e}");
        assert!(matches!(
            design(
                EqKind::HighPass {
                    freq_hz: 100.0,
                    slope_db_oct: 12
                },
                0
            ),
            Err(EqError::BadSampleRate { .. })
        ));
        // A gain so large the coefficients overflow.
        let e = design(
            EqKind::LowShelf {
                freq_hz: 1000.0,
                gain_db: 20_000.0,
                q: 1.0,
            },
            48_000,
        )
        .expect_err("huge gain");
        assert!(matches!(e, EqError::Unstable { .. }), "{e}");
    }

    fn noise_through(kind: EqKind, rate: u32, block_len: usize, total: usize) -> Vec<Vec<f64>> {
        let mut node = eq(kind, rate);
        node.prepare(rate, 2, block_len);
        let mut block = Block::new(2, block_len);
        let mut noise = Noise(12345);
        let mut out: Vec<Vec<f64>> = (0..2).map(|_| Vec::with_capacity(total)).collect();
        let mut done = 0;
        while done < total {
            let n = block_len.min(total - done);
            block.set_frames(n);
            // Generate frame-interleaved so both block sizes see the same input.
            for i in 0..n {
                for ch in 0..2 {
                    block.channel_mut(ch)[i] = noise.next();
                }
            }
            node.process(&mut block);
            for (ch, o) in out.iter_mut().enumerate() {
                o.extend_from_slice(block.channel(ch));
            }
            done += n;
        }
        out
    }

    /// Acceptance 5: output does not depend on the block size.
    #[test]
    fn block_size_independent() {
        for kind in kinds_at(1000.0).into_iter().chain(kinds_at(30.0)) {
            let a = noise_through(kind, 48_000, 4096, 48_000);
            let b = noise_through(kind, 48_000, 333, 48_000);
            for (x, y) in a.iter().zip(&b) {
                assert!(
                    x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                    "{kind:?}: outputs differ between block sizes"
                );
            }
        }
    }

    #[test]
    fn node_contract() {
        let kind = EqKind::Peak {
            freq_hz: 1000.0,
            gain_db: 6.0,
            q: 1.0,
        };
        let mut node = eq(kind, 48_000);
        assert_eq!(node.name(), "peak");
        assert_eq!(node.latency(), 0);
        assert!(node.gain_envelope().is_none());
        for (k, name) in [
            (
                EqKind::HighPass {
                    freq_hz: 80.0,
                    slope_db_oct: 24,
                },
                "high_pass",
            ),
            (
                EqKind::LowPass {
                    freq_hz: 8000.0,
                    slope_db_oct: 48,
                },
                "low_pass",
            ),
            (
                EqKind::LowShelf {
                    freq_hz: 100.0,
                    gain_db: 2.0,
                    q: 0.7,
                },
                "low_shelf",
            ),
            (
                EqKind::HighShelf {
                    freq_hz: 8000.0,
                    gain_db: 2.0,
                    q: 0.7,
                },
                "high_shelf",
            ),
            (
                EqKind::Notch {
                    freq_hz: 60.0,
                    q: 10.0,
                },
                "notch",
            ),
        ] {
            assert_eq!(eq(k, 48_000).name(), name);
        }

        // reset() returns to the initial state: the same input gives the same bits.
        node.prepare(48_000, 2, 512);
        let run = |node: &mut Eq| {
            let mut block = Block::new(2, 512);
            let mut noise = Noise(7);
            block.set_frames(512);
            for ch in block.channels_mut() {
                ch.iter_mut().for_each(|x| *x = noise.next());
            }
            node.process(&mut block);
            block
        };
        let first = run(&mut node);
        let _ = run(&mut node);
        node.reset();
        let again = run(&mut node);
        assert_eq!(first.channel(0), again.channel(0));
        assert_eq!(first.channel(1), again.channel(1));

        // Preparing at another rate re-designs.
        let mut node = eq(kind, 48_000);
        node.prepare(96_000, 1, 64);
        assert_eq!(node.sample_rate(), 96_000);
        assert_eq!(
            node.coefs(),
            design(kind, 96_000).expect("design").as_slice()
        );
        assert!(node.design_error().is_none());
        // …and a rate the filter cannot run at leaves it a pass-through, with the error kept.
        let mut node = eq(
            EqKind::LowPass {
                freq_hz: 20_000.0,
                slope_db_oct: 12,
            },
            48_000,
        );
        node.prepare(32_000, 1, 64);
        assert!(matches!(
            node.design_error(),
            Some(EqError::AboveNyquist { .. })
        ));
        let mut block = Block::new(1, 64);
        block.set_frames(64);
        block.channel_mut(0).fill(0.25);
        node.process(&mut block);
        assert!(block.channel(0).iter().all(|&x| x == 0.25));
    }

    /// Every output sample, bit for bit, against the previous implementation
    /// (one channel and one section at a time over the block), for filters
    /// of one, two and four sections, every test signal, block size and
    /// channel count.
    #[test]
    fn matches_the_previous_implementation() {
        use crate::previous::{self, BLOCK_SIZES, CHANNELS, SIGNALS};
        let q = std::f64::consts::FRAC_1_SQRT_2;
        let kinds = [
            EqKind::HighPass {
                freq_hz: 30.0,
                slope_db_oct: 12,
            },
            EqKind::HighPass {
                freq_hz: 80.0,
                slope_db_oct: 24,
            },
            EqKind::LowPass {
                freq_hz: 16_000.0,
                slope_db_oct: 48,
            },
            EqKind::LowShelf {
                freq_hz: 120.0,
                gain_db: 4.0,
                q,
            },
            EqKind::HighShelf {
                freq_hz: 9_000.0,
                gain_db: -3.0,
                q,
            },
            EqKind::Peak {
                freq_hz: 2_500.0,
                gain_db: 6.0,
                q: 4.0,
            },
            EqKind::Notch {
                freq_hz: 60.0,
                q: 10.0,
            },
        ];
        let cases: Vec<_> = kinds
            .iter()
            .flat_map(|&k| CHANNELS.map(|ch| (k, ch)))
            .collect();
        std::thread::scope(|s| {
            for chunk in cases.chunks(cases.len().div_ceil(4)) {
                s.spawn(move || {
                    for &(kind, channels) in chunk {
                        for (sig, name) in SIGNALS.iter().enumerate() {
                            let input = previous::signal(sig, channels, 9_000);
                            for block in BLOCK_SIZES {
                                let mut new = eq(kind, 48_000);
                                let mut old =
                                    previous::eq::Eq::new(kind, 48_000).expect("valid filter");
                                new.prepare(48_000, channels, block);
                                old.prepare(48_000, channels, block);
                                let what =
                                    format!("{kind:?}: {name}, {channels} ch, blocks of {block}");
                                previous::assert_same(&mut new, &mut old, &input, block, &what);
                                new.reset();
                                old.reset();
                                previous::assert_same(&mut new, &mut old, &input, block, &what);
                            }
                        }
                    }
                });
            }
        });
        // More channels in the block than prepared: those pass through.
        let kind = kinds[1];
        let input = previous::signal(0, 5, 5_000);
        let mut new = eq(kind, 48_000);
        let mut old = previous::eq::Eq::new(kind, 48_000).expect("valid filter");
        new.prepare(48_000, 3, 333);
        old.prepare(48_000, 3, 333);
        previous::assert_same(&mut new, &mut old, &input, 333, "5 channels, 3 prepared");
    }
}
