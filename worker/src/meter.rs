//! Loudness measurement (ITU-R BS.1770 / EBU R128) with the `ebur128` crate.

use deliverables_spec::compliance::Measurement;
use ebur128::{EbuR128, Mode};

use crate::dsp::Block;
use crate::dsp::true_peak::TruePeakDetector;

/// What to measure: everything, or only integrated loudness and sample peak
/// (cheap enough for the analysis passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterKind {
    Full,
    IntegratedOnly,
}

/// Streams blocks into an EBU R128 meter, polling momentary and short-term
/// loudness every 100 ms of audio for their maxima.
pub struct Meter {
    ebu: EbuR128,
    kind: MeterKind,
    hop: usize,
    /// Frames since the last 100 ms boundary.
    phase: usize,
    max_momentary: f64,
    max_short_term: f64,
    sample_peak: f64,
    frames: u64,
    rate: u32,
    /// The accurate true-peak estimator (design commitment §6), full mode only.
    true_peak: Option<TruePeakDetector>,
}

#[derive(Debug, thiserror::Error)]
#[error("loudness meter: {0}")]
pub struct MeterError(String);

impl Meter {
    pub fn new(channels: usize, rate: u32, kind: MeterKind) -> Result<Self, MeterError> {
        let mode = match kind {
            MeterKind::Full => {
                Mode::I | Mode::LRA | Mode::M | Mode::S | Mode::TRUE_PEAK | Mode::SAMPLE_PEAK
            }
            MeterKind::IntegratedOnly => Mode::I,
        };
        let ch = u32::try_from(channels).map_err(|_| MeterError("too many channels".into()))?;
        let ebu = EbuR128::new(ch, rate, mode).map_err(|e| MeterError(format!("{e:?}")))?;
        Ok(Meter {
            ebu,
            kind,
            hop: (rate as usize / 10).max(1),
            phase: 0,
            max_momentary: f64::NEG_INFINITY,
            max_short_term: f64::NEG_INFINITY,
            sample_peak: 0.0,
            frames: 0,
            rate,
            true_peak: (kind == MeterKind::Full).then(|| TruePeakDetector::new(channels, rate)),
        })
    }

    pub fn add(&mut self, block: &Block) -> Result<(), MeterError> {
        self.sample_peak = self.sample_peak.max(block.peak());
        if let Some(tp) = &mut self.true_peak {
            tp.push_block(block);
        }
        let n = block.frames();
        self.frames += n as u64;
        let mut start = 0;
        while start < n {
            let take = (self.hop - self.phase).min(n - start);
            let planes: Vec<&[f64]> = (0..block.channels())
                .map(|c| &block.channel(c)[start..start + take])
                .collect();
            self.ebu
                .add_frames_planar_f64(&planes)
                .map_err(|e| MeterError(format!("{e:?}")))?;
            start += take;
            self.phase += take;
            if self.phase == self.hop {
                self.phase = 0;
                if self.kind == MeterKind::Full {
                    if let Ok(m) = self.ebu.loudness_momentary() {
                        self.max_momentary = self.max_momentary.max(m);
                    }
                    if let Ok(s) = self.ebu.loudness_shortterm()
                        && self.frames >= 3 * u64::from(self.rate)
                    {
                        self.max_short_term = self.max_short_term.max(s);
                    }
                }
            }
        }
        Ok(())
    }

    /// Integrated loudness so far; `None` for silence (BS.1770 gives −∞).
    pub fn integrated(&self) -> Option<f64> {
        self.ebu.loudness_global().ok().filter(|v| v.is_finite())
    }

    /// Largest absolute sample value seen (linear).
    pub fn sample_peak(&self) -> f64 {
        self.sample_peak
    }

    pub fn finish(&mut self) -> Measurement {
        let mut notes = Vec::new();
        let finite = |v: f64| v.is_finite().then_some(v);
        let integrated = self.integrated();
        let dur = self.frames as f64 / f64::from(self.rate);
        if integrated.is_none() {
            if dur < 0.4 {
                notes.push(format!(
                    "no integrated loudness: {dur:.3} s is shorter than one 400 ms gating block"
                ));
            } else {
                notes.push("no integrated loudness: the audio is silent (every block below the −70 LUFS gate)".to_string());
            }
        }
        let lra = self.ebu.loudness_range().ok().and_then(finite);
        let full = self.kind == MeterKind::Full;
        let true_peak = self
            .true_peak
            .as_mut()
            .map(|t| to_db(t.finish()))
            .and_then(finite);
        let sample_peak = finite(to_db(self.sample_peak));
        if sample_peak.is_none() {
            notes.push("no peak: every sample is zero".to_string());
        }
        if full && dur < 3.0 {
            notes.push("no short-term maximum: shorter than one 3 s window".to_string());
        }
        Measurement {
            integrated_lufs: integrated.map(round3),
            loudness_range_lu: if full { lra.map(round3) } else { None },
            true_peak_dbtp: true_peak.map(round3),
            sample_peak_dbfs: sample_peak.map(round3),
            max_momentary_lufs: finite(self.max_momentary).map(round3),
            max_short_term_lufs: finite(self.max_short_term).map(round3),
            true_peak_method: if full {
                TRUE_PEAK_METHOD.to_string()
            } else {
                String::new()
            },
            notes,
        }
    }
}

/// How `true_peak_dbtp` is measured, for the manifest.
pub const TRUE_PEAK_METHOD: &str = "stemforge polyphase FIR oversampling to >= 384 kHz (ITU-R BS.1770 annex 2 method, longer filters)";

fn to_db(x: f64) -> f64 {
    20.0 * x.log10()
}

/// Manifest values carry 3 decimals: more than any meter resolves.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
