//! Preflight statistics of one stem, gathered block by block while it is
//! decoded (memory independent of duration), and the findings they lead to:
//! clipping (runs of at least three full-scale samples), DC offset, a silent
//! stem, and stems with identical audio.
//!
//! The sum-to-mix null test and the alignment search build on the same
//! streaming pass (issue 6); this module knows nothing about files or tasks.

use sha2::{Digest, Sha256};

use crate::dsp::Block;

/// A sample at or above this magnitude is at full scale: within one 16-bit
/// step of 1.0, so 16- and 24-bit clips both count, and float overs too.
pub const FULL_SCALE: f64 = 1.0 - 1.0 / 32_768.0;
/// Consecutive full-scale samples that make a clip.
pub const CLIP_RUN: usize = 3;
/// A stem with nothing above this is silent, dBFS.
pub const SILENCE_DBFS: f64 = -90.0;
/// A channel mean beyond this is a DC offset, dBFS.
pub const DC_DBFS: f64 = -60.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The title cannot be rendered as delivered.
    Error,
    /// Reported; the render goes on.
    Warning,
}

/// One thing preflight found, for the report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// `clipping`, `dc_offset`, `silent_stem`, `identical_stems`, …
    pub check: String,
    /// The stem(s) concerned, as written in the spec or found in the folder.
    pub files: Vec<String>,
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// Running statistics of one stem.
#[derive(Debug, Clone)]
pub struct StemStats {
    frames: u64,
    peak: f64,
    sums: Vec<f64>,
    /// Current run of full-scale samples per channel.
    run: Vec<usize>,
    /// Clip events (runs reaching `CLIP_RUN`), and the first one's frame.
    pub clips: u64,
    pub first_clip_frame: Option<u64>,
    hash: Sha256,
}

impl StemStats {
    pub fn new(channels: usize) -> StemStats {
        StemStats {
            frames: 0,
            peak: 0.0,
            sums: vec![0.0; channels],
            run: vec![0; channels],
            clips: 0,
            first_clip_frame: None,
            hash: Sha256::new(),
        }
    }

    pub fn push(&mut self, block: &Block) {
        let n = block.frames();
        for ch in 0..block.channels().min(self.sums.len()) {
            let x = &block.channel(ch)[..n];
            let mut sum = 0.0;
            for (i, &v) in x.iter().enumerate() {
                let a = v.abs();
                sum += v;
                self.peak = self.peak.max(a);
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
                self.hash.update(v.to_bits().to_le_bytes());
            }
            self.sums[ch] += sum;
        }
        self.frames += n as u64;
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn peak_dbfs(&self) -> f64 {
        20.0 * self.peak.max(1e-300).log10()
    }

    /// Largest channel mean, dBFS.
    pub fn dc_dbfs(&self) -> f64 {
        let n = self.frames.max(1) as f64;
        let worst = self.sums.iter().map(|s| (s / n).abs()).fold(0.0, f64::max);
        20.0 * worst.max(1e-300).log10()
    }

    /// SHA-256 of the decoded samples: equal for identical audio.
    pub fn audio_digest(&self) -> String {
        hex::encode(self.hash.clone().finalize())
    }
}

/// Findings of a title's stems (`names[i]` labels `stats[i]`).
pub fn findings(names: &[String], stats: &[StemStats], rate: u32) -> Vec<Finding> {
    let mut out = Vec::new();
    let secs = |frame: u64| frame as f64 / f64::from(rate.max(1));
    for (name, s) in names.iter().zip(stats) {
        if s.frames() > 0 && s.peak_dbfs() < SILENCE_DBFS {
            out.push(Finding {
                severity: Severity::Warning,
                check: "silent_stem".into(),
                files: vec![name.clone()],
                message: format!(
                    "'{name}' is silent: its peak is {:.1} dBFS (below {SILENCE_DBFS} dBFS)",
                    s.peak_dbfs()
                ),
                fix: "check it is the right file, or drop it from the delivery".into(),
            });
            continue;
        }
        if s.clips > 0 {
            let at = s.first_clip_frame.unwrap_or(0);
            out.push(Finding {
                severity: Severity::Warning,
                check: "clipping".into(),
                files: vec![name.clone()],
                message: format!(
                    "'{name}' clips {} time(s) ({CLIP_RUN} or more full-scale samples in a row), first at {:.3} s (frame {at})",
                    s.clips,
                    secs(at)
                ),
                fix: "re-print the stem with headroom (or as 32-bit float) from the mix session".into(),
            });
        }
        if s.dc_dbfs() > DC_DBFS {
            out.push(Finding {
                severity: Severity::Warning,
                check: "dc_offset".into(),
                files: vec![name.clone()],
                message: format!(
                    "'{name}' has a DC offset of {:.1} dBFS (above {DC_DBFS} dBFS)",
                    s.dc_dbfs()
                ),
                fix: "high-pass the source or re-print it; DC eats headroom and thumps at edits"
                    .into(),
            });
        }
    }
    for i in 0..stats.len() {
        for j in i + 1..stats.len() {
            if stats[i].frames() > 0
                && stats[i].peak_dbfs() >= SILENCE_DBFS
                && stats[i].audio_digest() == stats[j].audio_digest()
            {
                out.push(Finding {
                    severity: Severity::Error,
                    check: "identical_stems".into(),
                    files: vec![names[i].clone(), names[j].clone()],
                    message: format!(
                        "'{}' and '{}' contain identical audio: one of them is exported twice",
                        names[i], names[j]
                    ),
                    fix: "re-export the missing stem; summed as is, this part plays 6 dB too loud"
                        .into(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(samples: &[f64]) -> StemStats {
        let mut s = StemStats::new(2);
        // Feed in uneven blocks so runs cross block edges.
        for chunk in samples.chunks(7) {
            let mut b = Block::new(2, 8);
            b.set_frames(chunk.len());
            b.channel_mut(0)[..chunk.len()].copy_from_slice(chunk);
            b.channel_mut(1)[..chunk.len()].copy_from_slice(chunk);
            s.push(&b);
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
        let f = findings(&["drums.wav".into()], &[s], 48_000);
        assert_eq!(f.len(), 2, "{f:?}"); // clipping + DC (0.5 mean)
        assert!(f[0].message.contains("frame 13"), "{}", f[0].message);
    }

    #[test]
    fn silence_dc_and_duplicates() {
        let quiet = stats_of(&[1e-6; 480]);
        let tone: Vec<f64> = (0..4800)
            .map(|i| 0.3 * (f64::from(i) * std::f64::consts::TAU / 480.0).sin())
            .collect();
        let a = stats_of(&tone);
        let b = stats_of(&tone);
        let shifted: Vec<f64> = tone.iter().map(|v| v + 0.01).collect();
        let c = stats_of(&shifted);
        let names: Vec<String> = ["quiet.wav", "vox.wav", "vox copy.wav", "bass.wav"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = findings(&names, &[quiet, a, b, c], 48_000);
        let checks: Vec<&str> = f.iter().map(|x| x.check.as_str()).collect();
        assert_eq!(
            checks,
            ["silent_stem", "dc_offset", "identical_stems"],
            "{f:#?}"
        );
        assert_eq!(f[1].files, ["bass.wav"]);
        assert!(f[1].message.contains("-40.0 dBFS"), "{}", f[1].message);
        assert_eq!(f[2].severity, Severity::Error);
        assert_eq!(f[2].files, ["vox.wav", "vox copy.wav"]);
    }
}
