//! The sum-to-mix null test: how well the stems, summed at unity, reconstruct
//! the reference mix. Accumulated step by step over the whole programme:
//! the best-fit gain g of the sum against the reference (least squares,
//! reference ≈ g·sum), the residual `reference − g·sum` relative to the
//! reference, and where that residual lives: spread evenly (something is
//! missing from the stems: a send, a parallel chain) or concentrated where
//! the mix is loudest (bus compression or limiting on the reference).
//!
//! Memory: three numbers per 100 ms block.

pub use deliverables_spec::preflight::NullFit;

use super::stats::FULL_SCALE;

pub use deliverables_spec::preflight::FOLLOWS_PEAKS_DB;

/// Step-by-step sums for one null test.
#[derive(Debug, Clone)]
pub struct NullAccumulator {
    block_frames: u64,
    frames: u64,
    /// Per 100 ms block: Σr², Σs², Σr·s (over channels).
    blocks: Vec<[f64; 3]>,
    /// Samples where the stems' sum is over full scale and the reference not.
    pub sum_overs: u64,
    pub sum_peak: f64,
    pub reference_peak: f64,
}

impl NullAccumulator {
    pub fn new(sample_rate: u32) -> NullAccumulator {
        NullAccumulator {
            block_frames: u64::from(sample_rate / 10).max(1),
            frames: 0,
            blocks: Vec::new(),
            sum_overs: 0,
            sum_peak: 0.0,
            reference_peak: 0.0,
        }
    }

    /// Adds `n` frames of the reference and the stems' sum (same channels).
    pub fn push(&mut self, reference: &[Vec<f64>], sum: &[Vec<f64>], n: usize) {
        let mut i = 0;
        while i < n {
            let frame = self.frames + i as u64;
            let block = (frame / self.block_frames) as usize;
            let k = (((block as u64 + 1) * self.block_frames - frame) as usize).min(n - i);
            if self.blocks.len() <= block {
                self.blocks.resize(block + 1, [0.0; 3]);
            }
            let acc = &mut self.blocks[block];
            for (r, s) in reference.iter().zip(sum) {
                for (&r, &s) in r[i..i + k].iter().zip(&s[i..i + k]) {
                    acc[0] += r * r;
                    acc[1] += s * s;
                    acc[2] += r * s;
                    let (ra, sa) = (r.abs(), s.abs());
                    if sa > self.sum_peak {
                        self.sum_peak = sa;
                    }
                    if ra > self.reference_peak {
                        self.reference_peak = ra;
                    }
                    if sa > FULL_SCALE && ra < FULL_SCALE {
                        self.sum_overs += 1;
                    }
                }
            }
            i += k;
        }
        self.frames += n as u64;
    }

    pub fn finish(&self) -> NullFit {
        let db = |x: f64| 20.0 * x.max(1e-300).log10();
        let [rr, ss, rs] = self
            .blocks
            .iter()
            .fold([0.0; 3], |a, b| [a[0] + b[0], a[1] + b[1], a[2] + b[2]]);
        let g = if ss > 0.0 && rs > 0.0 { rs / ss } else { 0.0 };
        let residual = |b: &[f64; 3]| (b[0] - 2.0 * g * b[2] + g * g * b[1]).max(0.0);
        let residual_db = (rr > 0.0).then(|| {
            let res: f64 = self.blocks.iter().map(residual).sum();
            10.0 * (res.max(1e-300) / rr).log10()
        });

        // Where the residual lives: blocks of the reference above -60 dB of
        // its mean, ranked by loudness.
        let mean = rr / self.blocks.len().max(1) as f64;
        let mut ranked: Vec<&[f64; 3]> =
            self.blocks.iter().filter(|b| b[0] > mean * 1e-6).collect();
        ranked.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let ratio = |part: &[&[f64; 3]]| {
            let r: f64 = part.iter().map(|b| b[0]).sum();
            let e: f64 = part.iter().map(|b| residual(b)).sum();
            (r > 0.0).then(|| e.max(1e-300) / r)
        };
        let m = ranked.len();
        let loud_minus_middle_db = if m >= 20 && g > 0.0 {
            match (
                ratio(&ranked[m - m / 10..]),
                ratio(&ranked[m / 4..m * 3 / 4]),
            ) {
                (Some(loud), Some(mid)) => Some(10.0 * (loud / mid).log10()),
                _ => None,
            }
        } else {
            None
        };
        NullFit {
            gain_db: (g > 0.0).then(|| db(g)),
            residual_db,
            loud_minus_middle_db,
            sum_peak_dbfs: db(self.sum_peak),
            reference_peak_dbfs: db(self.reference_peak),
            sum_overs: self.sum_overs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(n: usize, f: f64, a: f64) -> Vec<f64> {
        (0..n)
            .map(|i| a * (std::f64::consts::TAU * f * i as f64 / 1000.0).sin())
            .collect()
    }

    fn fit(r: &[f64], s: &[f64]) -> NullFit {
        let mut acc = NullAccumulator::new(1000);
        for (rc, sc) in r.chunks(333).zip(s.chunks(333)) {
            acc.push(&[rc.to_vec()], &[sc.to_vec()], rc.len());
        }
        acc.finish()
    }

    #[test]
    fn exact_copy_nulls_and_gain_is_measured() {
        let s = sine(10_000, 13.0, 0.5);
        let f = fit(&s, &s);
        assert!(f.gain_db.is_some_and(|g| g.abs() < 1e-12));
        assert!(f.residual_db.is_some_and(|r| r < -200.0), "{f:?}");
        let louder: Vec<f64> = s.iter().map(|v| v * 2.0).collect();
        let f = fit(&louder, &s);
        assert!(
            f.gain_db.is_some_and(|g| (g - 6.0206).abs() < 1e-3),
            "{f:?}"
        );
        assert!(f.residual_db.is_some_and(|r| r < -200.0));
    }

    #[test]
    fn a_missing_part_is_broadband_a_clipped_peak_follows_the_mix() {
        // A quiet-to-loud programme.
        let env: Vec<f64> = (0..20_000)
            .map(|i| 0.05 + 0.9 * f64::from(i) / 20_000.0)
            .collect();
        let a = sine(20_000, 13.0, 1.0);
        let b = sine(20_000, 71.0, 1.0);
        let stems: Vec<f64> = env.iter().zip(&a).map(|(e, x)| e * x).collect();
        // Reference = stems + a part at -20 dB that the stems lack.
        let missing: Vec<f64> = stems
            .iter()
            .zip(&b)
            .zip(&env)
            .map(|((s, x), e)| s + 0.1 * e * x)
            .collect();
        let f = fit(&missing, &stems);
        let r = f.residual_db.expect("residual");
        assert!((r + 20.0).abs() < 0.5, "{f:?}");
        assert!(!f.follows_peaks(), "{f:?}");
        // Reference = stems clipped at 0.7: only the loud end differs.
        let clipped: Vec<f64> = stems.iter().map(|v| v.clamp(-0.7, 0.7)).collect();
        let f = fit(&clipped, &stems);
        assert!(f.follows_peaks(), "{f:?}");
        assert_eq!(f.sum_overs, 0);
    }
}
