//! Test signals, one module for every test: deterministic noise from a
//! counter (splitmix64, integer arithmetic only, so the same on every
//! machine), sines, and levels. Tests that need a musical stem build it
//! from these; sessions of real instruments come from
//! `tests/support/real_session.py`.

use std::f64::consts::TAU;

/// splitmix64's output function: a well-mixed 64-bit value of `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^= z >> 30;
    z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 27;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1): sample `i` of the noise stream `stream` (streams far
/// apart, e.g. `seed << 40`, do not overlap in any test's length).
pub fn uniform(i: u64, stream: u64) -> f64 {
    (splitmix64(i.wrapping_add(stream)) >> 11) as f64 / (1u64 << 53) as f64
}

/// White noise in [−1, 1): sample `i` of the stream `stream`.
pub fn white(i: u64, stream: u64) -> f64 {
    uniform(i, stream) * 2.0 - 1.0
}

/// `channels` × `frames` of white noise in [−0.5, 0.5), each channel its
/// own stream of `seed`.
pub fn noise_planar(channels: usize, frames: usize, seed: u64) -> Vec<Vec<f64>> {
    (0..channels)
        .map(|c| {
            let stream = ((c as u64 + 1) << 40).wrapping_add(seed);
            (0..frames)
                .map(|i| uniform(i as u64, stream) - 0.5)
                .collect()
        })
        .collect()
}

/// Sample `n` of a unit sine of `freq` Hz at `rate`.
pub fn sine_at(freq: f64, rate: u32, n: usize) -> f64 {
    (TAU * freq * n as f64 / f64::from(rate)).sin()
}

/// `frames` of a sine of `freq` Hz and peak `amp` at `rate`.
pub fn sine(freq: f64, rate: u32, frames: usize, amp: f64) -> Vec<f64> {
    (0..frames).map(|n| amp * sine_at(freq, rate, n)).collect()
}

/// Sample `n` of a unit sine of a whole number of Hz, exactly periodic
/// (the phase is reduced in integers, so it does not drift with `n`).
pub fn sine_periodic(freq: u32, rate: u32, n: usize) -> f64 {
    let k = (n as u64 * u64::from(freq)) % u64::from(rate);
    (TAU * k as f64 / f64::from(rate)).sin()
}

/// Peak amplitude of a level in dBFS.
pub fn amp(dbfs: f64) -> f64 {
    10f64.powf(dbfs / 20.0)
}

/// An amplitude (ratio) in dB.
pub fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

/// RMS level of samples, dBFS (a full-scale sine reads −3.01).
pub fn rms_db(x: &[f64]) -> f64 {
    let e: f64 = x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64;
    10.0 * e.log10()
}

/// RMS level over every channel of planar samples, dBFS.
pub fn rms_db_planar(x: &[Vec<f64>]) -> f64 {
    let n: usize = x.iter().map(Vec::len).sum();
    let e: f64 = x.iter().flatten().map(|v| v * v).sum();
    10.0 * (e / n.max(1) as f64).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_its_published_sequence() {
        // The reference implementation's first outputs from state 0 (state
        // advanced by the golden gamma before mixing).
        let gamma = 0x9E37_79B9_7F4A_7C15u64;
        let mix = |z: u64| {
            let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        assert_eq!(mix(gamma), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(1), mix(gamma));
    }

    #[test]
    fn levels_of_known_signals() {
        let s = sine(1000.0, 48_000, 48_000, 1.0);
        assert!((rms_db(&s) + 3.0103).abs() < 1e-3);
        assert!((db(amp(-6.0)) + 6.0).abs() < 1e-12);
        let n = noise_planar(2, 100_000, 7);
        // Uniform in ±0.5: RMS 1/√12 → −10.79 dB.
        assert!((rms_db_planar(&n) + 10.79).abs() < 0.05);
        assert_eq!(
            sine_periodic(1000, 48_000, 48),
            sine_periodic(1000, 48_000, 0)
        );
    }
}
