//! Transcendental functions for the audio path, from the pure-Rust `libm`
//! crate. The platform libm (glibc) picks CPU-specific variants at run time,
//! which may differ in the last bit between machines; these do not, so
//! coefficients, gains and synthesis are bit-identical on every x86-64
//! worker.

/// Deterministic maths on `f64`, with method syntax like `std`'s.
pub trait DetMath {
    fn dsin(self) -> f64;
    fn dcos(self) -> f64;
    fn dtan(self) -> f64;
    fn dexp(self) -> f64;
    fn dexp2(self) -> f64;
    fn dpowf(self, e: f64) -> f64;
    fn dlog10(self) -> f64;
}

impl DetMath for f64 {
    #[inline]
    fn dsin(self) -> f64 {
        libm::sin(self)
    }
    #[inline]
    fn dcos(self) -> f64 {
        libm::cos(self)
    }
    #[inline]
    fn dtan(self) -> f64 {
        libm::tan(self)
    }
    #[inline]
    fn dexp(self) -> f64 {
        libm::exp(self)
    }
    #[inline]
    fn dexp2(self) -> f64 {
        libm::exp2(self)
    }
    #[inline]
    fn dpowf(self, e: f64) -> f64 {
        libm::pow(self, e)
    }
    #[inline]
    fn dlog10(self) -> f64 {
        libm::log10(self)
    }
}

#[cfg(test)]
mod tests {
    use super::DetMath;

    #[test]
    fn agrees_with_std_to_an_ulp() {
        for i in 1..1000 {
            let x = f64::from(i) * 0.0137;
            for (a, b) in [
                (x.dsin(), x.sin()),
                (x.dcos(), x.cos()),
                (x.dexp(), x.exp()),
                (10f64.dpowf(x / 20.0), 10f64.powf(x / 20.0)),
                (x.dlog10(), x.log10()),
            ] {
                assert!(
                    (a - b).abs() <= 2.0 * f64::EPSILON * b.abs().max(1.0),
                    "{x}: {a} vs {b}"
                );
            }
        }
    }
}
