//! Running statistics of one file, gathered step by step while it is decoded:
//! sample peak, clipping runs, DC, a fingerprint of the audio, the energy of
//! every second (to choose alignment windows) and a fine histogram of the
//! loudest samples (to see peaks piling up at a limiter's ceiling).
//!
//! A few nanoseconds per sample: the histogram is indexed by the bits of the
//! float (exponent and top mantissa bits: a logarithmic scale without a
//! logarithm) and the fingerprint is a multiply-xor hash, not a cryptographic
//! one (it only has to tell two stems apart; their files are hashed with
//! SHA-256 for the manifest elsewhere).
//!
//! Memory: 64 KiB plus 8 bytes per second of audio.

/// A sample at or above this magnitude is at full scale: within one 16-bit
/// step of 1.0, so 16- and 24-bit clips both count, and float overs too.
pub const FULL_SCALE: f64 = 1.0 - 1.0 / 32_768.0;
/// Consecutive full-scale samples that make a clip.
pub const CLIP_RUN: usize = 3;
/// A file with nothing above this is silent, dBFS.
pub const SILENCE_DBFS: f64 = -90.0;
/// A channel mean beyond this is a DC offset, dBFS.
pub const DC_DBFS: f64 = -60.0;

/// Mantissa bits kept in a histogram index: bins are 2^-10 of an octave
/// wide (0.004–0.008 dB).
const HIST_MANTISSA_BITS: u32 = 10;
/// The histogram covers magnitudes from 2^HIST_MIN_EXP (-36 dBFS) …
const HIST_MIN_EXP: i32 = -6;
/// … up to 2^HIST_MAX_EXP (+18 dBFS: float stems may exceed full scale).
const HIST_MAX_EXP: i32 = 3;
const HIST_BINS: usize = ((HIST_MAX_EXP - HIST_MIN_EXP) as usize) << HIST_MANTISSA_BITS;
/// `hist_index(x)` is `(bits of x >> SHIFT) - BASE`.
const HIST_SHIFT: u32 = 52 - HIST_MANTISSA_BITS;
const HIST_BASE: u64 = ((1023 + HIST_MIN_EXP) as u64) << HIST_MANTISSA_BITS;

/// Histogram bin of a magnitude `a >= 2^HIST_MIN_EXP` (clamped at the top).
fn hist_index(a: f64) -> usize {
    let i = (a.to_bits() >> HIST_SHIFT).saturating_sub(HIST_BASE) as usize;
    i.min(HIST_BINS - 1)
}

const HASH_K1: u64 = 0x9E37_79B9_7F4A_7C15;
const HASH_K2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// Running statistics of one file.
#[derive(Debug, Clone)]
pub struct StemStats {
    rate: u64,
    frames: u64,
    peak: f64,
    sums: Vec<f64>,
    /// Current run of full-scale samples per channel.
    run: Vec<usize>,
    /// Clip events (runs reaching `CLIP_RUN`), and the first one's frame.
    pub clips: u64,
    pub first_clip_frame: Option<u64>,
    /// Two multiply-xor hash lanes over every sample's bits.
    hash: [u64; 2],
    /// Sum over channels of x² for every whole second (the last one partial).
    pub energy_per_second: Vec<f64>,
    /// Sample magnitudes from `HIST_FLOOR_DB` up, in `HIST_BIN_DB` bins.
    hist: Vec<u64>,
}

impl StemStats {
    pub fn new(channels: usize, sample_rate: u32) -> StemStats {
        StemStats {
            rate: u64::from(sample_rate.max(1)),
            frames: 0,
            peak: 0.0,
            sums: vec![0.0; channels],
            run: vec![0; channels],
            clips: 0,
            first_clip_frame: None,
            hash: [HASH_K1, HASH_K2],
            energy_per_second: Vec::new(),
            hist: vec![0; HIST_BINS],
        }
    }

    /// Adds `n` frames (`channels[ch][..n]`).
    pub fn push(&mut self, channels: &[Vec<f64>], n: usize) {
        let hist_min = f64::from(HIST_MIN_EXP).exp2();
        for (ch, x) in channels.iter().enumerate().take(self.sums.len()) {
            let x = &x[..n];
            let mut sum = 0.0;
            let mut peak = self.peak;
            let [mut h1, mut h2] = self.hash;
            for (i, &v) in x.iter().enumerate() {
                let a = v.abs();
                sum += v;
                peak = peak.max(a);
                if a >= FULL_SCALE {
                    self.run[ch] += 1;
                    if self.run[ch] == CLIP_RUN {
                        self.clips += 1;
                        let at = self.frames + i as u64 + 1 - CLIP_RUN as u64;
                        self.first_clip_frame =
                            Some(self.first_clip_frame.map_or(at, |f| f.min(at)));
                    }
                } else {
                    self.run[ch] = 0;
                }
                if a >= hist_min {
                    self.hist[hist_index(a)] += 1;
                }
                let bits = v.to_bits();
                h1 = (h1 ^ bits).wrapping_mul(HASH_K1).rotate_left(29);
                h2 = (h2 ^ bits).wrapping_mul(HASH_K2).rotate_left(31);
            }
            self.peak = peak;
            self.hash = [h1, h2];
            self.sums[ch] += sum;
            // Energy per second, split where a second boundary falls.
            let mut i = 0;
            while i < n {
                let frame = self.frames + i as u64;
                let second = (frame / self.rate) as usize;
                let to_boundary = ((second as u64 + 1) * self.rate - frame) as usize;
                let k = to_boundary.min(n - i);
                if self.energy_per_second.len() <= second {
                    self.energy_per_second.resize(second + 1, 0.0);
                }
                self.energy_per_second[second] += x[i..i + k].iter().map(|v| v * v).sum::<f64>();
                i += k;
            }
        }
        self.frames += n as u64;
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn peak(&self) -> f64 {
        self.peak
    }

    pub fn peak_dbfs(&self) -> f64 {
        20.0 * self.peak.max(1e-300).log10()
    }

    pub fn is_silent(&self) -> bool {
        self.peak_dbfs() < SILENCE_DBFS
    }

    /// Largest channel mean, dBFS.
    pub fn dc_dbfs(&self) -> f64 {
        let n = self.frames.max(1) as f64;
        let worst = self.sums.iter().map(|s| (s / n).abs()).fold(0.0, f64::max);
        20.0 * worst.max(1e-300).log10()
    }

    /// Fingerprint of the decoded samples (and their count): equal for
    /// identical audio.
    pub fn audio_digest(&self) -> String {
        format!("{:016x}{:016x}-{}", self.hash[0], self.hash[1], self.frames)
    }

    /// Samples (over all channels) within `db` of the file's peak, counted in
    /// histogram bins (so to within a bin, < 0.01 dB). 0 for quiet files.
    pub fn samples_near_peak(&self, db: f64) -> u64 {
        let floor = f64::from(HIST_MIN_EXP).exp2();
        if !self.peak.is_finite() || self.peak < floor {
            return 0;
        }
        let top = hist_index(self.peak);
        let lo = hist_index((self.peak * 10f64.powf(-db / 20.0)).max(floor));
        self.hist[lo..=top].iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn stats_of(samples: &[f64]) -> StemStats {
        let mut s = StemStats::new(2, 48_000);
        // Feed in uneven blocks so runs cross block edges.
        for chunk in samples.chunks(7) {
            let ch = vec![chunk.to_vec(), chunk.to_vec()];
            s.push(&ch, chunk.len());
        }
        s
    }

    #[test]
    fn clip_runs_across_block_edges() {
        let mut x = vec![0.5; 100];
        // Two samples at full scale: not a clip.
        x[10] = 1.0;
        x[11] = -1.0;
        // Three in a row spanning the edge at 14: one clip (per channel).
        x[13] = 1.0;
        x[14] = 1.0;
        x[15] = 1.0;
        x[16] = 1.0;
        let s = stats_of(&x);
        assert_eq!(s.clips, 2, "one run on each of two channels");
        assert_eq!(s.first_clip_frame, Some(13));
        assert!((s.dc_dbfs() - 20.0 * (0.5f64 + 4.0 * 0.5 / 100.0).log10()).abs() < 0.5);
    }

    #[test]
    fn energy_per_second_splits_at_second_boundaries() {
        let mut s = StemStats::new(1, 10);
        // 25 frames at 10 Hz: seconds of 10, 10 and 5 frames, pushed in 7s.
        let x: Vec<f64> = (0..25).map(|i| f64::from(i / 10 + 1)).collect();
        for c in x.chunks(7) {
            s.push(&[c.to_vec()], c.len());
        }
        assert_eq!(s.energy_per_second, [10.0, 40.0, 45.0]);
    }

    #[test]
    fn samples_near_peak_count_a_ceiling() {
        // A "limited" signal: many samples at 0.891 (-1 dBFS), the rest lower.
        let mut x: Vec<f64> = (0..1000)
            .map(|i| 0.5 * (f64::from(i) * 0.1).sin())
            .collect();
        for v in x.iter_mut().step_by(10) {
            *v = 0.891;
        }
        let s = stats_of(&x);
        // 100 per channel, two channels.
        assert_eq!(s.samples_near_peak(0.1), 200);
        assert!((s.peak_dbfs() + 1.0).abs() < 0.01);
    }
}
