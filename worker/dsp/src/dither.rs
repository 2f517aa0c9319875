//! TPDF dither: triangular noise of ±1 LSB peak, added before quantisation
//! to 16/24-bit so the rounding error is independent of the signal.
//!
//! Seeded per (spec, title, variant, output, channel) so the noise — and so
//! the file — is bit-identical on every run and worker,
//! and independent between outputs, so processed stems still null against
//! the mix down to the dither noise.

use sha2::{Digest, Sha256};

/// Triangular-PDF noise source for one channel.
#[derive(Debug, Clone)]
pub struct Tpdf {
    state: u64,
}

impl Tpdf {
    pub fn new(seed: u64) -> Self {
        Tpdf { state: seed }
    }

    /// SplitMix64: small, fast, and identical on every platform.
    #[inline]
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) from the top 53 bits.
    #[inline]
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// The next dither value in LSB units: the sum of two uniform ±½ LSB
    /// values, triangular on (−1, 1).
    #[inline]
    pub fn sample(&mut self) -> f64 {
        self.uniform() - self.uniform()
    }
}

/// The seed for one channel of one output: its title, variant and file
/// name, nothing else of the job. An output whose audio path is unchanged
/// gets the same noise whatever else the spec changes, so the render cache
/// can reuse it; two outputs of a job never share a seed.
pub fn seed(title: &str, variant: &str, output: &str, channel: usize) -> u64 {
    let mut h = Sha256::new();
    for part in [title, variant, output] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update((channel as u64).to_le_bytes());
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triangular_with_the_right_moments() {
        let mut t = Tpdf::new(seed("t", "full", "x.wav", 0));
        let n = 1_000_000;
        let (mut sum, mut sq, mut max) = (0.0, 0.0, 0.0_f64);
        let mut hist = [0usize; 4];
        for _ in 0..n {
            let v = t.sample();
            sum += v;
            sq += v * v;
            max = max.max(v.abs());
            hist[((v + 1.0) * 2.0).floor().clamp(0.0, 3.0) as usize] += 1;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64;
        assert!(mean.abs() < 0.003, "mean {mean}");
        // TPDF of two ±½ uniforms: variance 1/6 LSB².
        assert!((var - 1.0 / 6.0).abs() < 0.002, "variance {var}");
        assert!(max < 1.0);
        // Triangle: the inner quarters hold 3/4 of the mass.
        let inner = (hist[1] + hist[2]) as f64 / n as f64;
        assert!((inner - 0.75).abs() < 0.005, "inner mass {inner}");
    }

    #[test]
    fn seeds_are_stable_and_distinct() {
        let a = seed("t", "full", "x.wav", 0);
        assert_eq!(a, seed("t", "full", "x.wav", 0));
        assert_ne!(a, seed("t", "full", "x.wav", 1));
        assert_ne!(a, seed("t", "tv", "x.wav", 0));
        let mut x = Tpdf::new(a);
        let mut y = Tpdf::new(a);
        for _ in 0..1000 {
            assert_eq!(x.sample().to_bits(), y.sample().to_bits());
        }
    }
}
