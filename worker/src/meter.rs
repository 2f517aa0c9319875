//! Loudness measurement (ITU-R BS.1770 / EBU R128) with the `ebur128` crate,
//! plus what it does not give: the accurate true peak (at least as accurate
//! as ffmpeg's 192 kHz measurement, so a file we pass, ffmpeg passes),
//! the 400 ms block energies (for dialogue gating) and a short-term curve.

use deliverables_spec::compliance::{MAX_OVERS, Measurement, Over};
use deliverables_spec::timecode::{frame_start, timecode};
use ebur128::{Channel, EbuR128, Mode};

use crate::dsp::Block;
use crate::dsp::true_peak::TruePeakDetector;

/// What to measure: everything, or only integrated loudness (cheap enough
/// for the analysis passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterKind {
    Full,
    IntegratedOnly,
}

/// BS.1770 weights by WAV channel order (WAVEFORMATEXTENSIBLE default masks):
/// mono, stereo, L R C, quad, 5.0, 5.1, 7.1. The LFE is excluded (weight 0);
/// surrounds at ±90–110° weigh 1.41 (+1.5 dB), backs at ±135° 1.0.
pub fn channel_map(channels: usize) -> Vec<Channel> {
    use Channel::*;
    match channels {
        1 => vec![Center],
        2 => vec![Left, Right],
        3 => vec![Left, Right, Center],
        4 => vec![Left, Right, LeftSurround, RightSurround],
        5 => vec![Left, Right, Center, LeftSurround, RightSurround],
        6 => vec![Left, Right, Center, Unused, LeftSurround, RightSurround],
        8 => vec![Left, Right, Center, Unused, Mp135, Mm135, Mp090, Mm090],
        n => {
            let mut v = vec![Left, Right];
            v.resize(n, Center);
            v
        }
    }
}

/// A short description of the layout the weights assume.
pub fn layout_name(channels: usize) -> &'static str {
    match channels {
        1 => "mono",
        2 => "stereo",
        3 => "3.0 (L R C)",
        4 => "quad (L R Ls Rs)",
        5 => "5.0 (L R C Ls Rs)",
        6 => "5.1 (L R C LFE Ls Rs; LFE excluded)",
        8 => "7.1 (L R C LFE Lb Rb Ls Rs; LFE excluded)",
        _ => "unknown layout (weights 1.0)",
    }
}

/// Energy of −70 LUFS: the BS.1770 absolute gate.
const ABSOLUTE_GATE_LUFS: f64 = -70.0;

pub fn energy_to_lufs(e: f64) -> f64 {
    -0.691 + 10.0 * e.log10()
}

pub fn lufs_to_energy(l: f64) -> f64 {
    10f64.powf((l + 0.691) / 10.0)
}

/// The energy a 400 ms block needs to count in BS.1770 integrated
/// loudness: above the absolute gate (−70 LUFS) and the relative gate (−10
/// LU below the mean of the blocks above the absolute gate). `None` when no
/// block passes the absolute gate.
pub fn gate_threshold(energies: impl Iterator<Item = f64>) -> Option<f64> {
    let abs = lufs_to_energy(ABSOLUTE_GATE_LUFS);
    let (n, sum) = energies
        .filter(|&e| e >= abs)
        .fold((0u64, 0.0), |(n, s), e| (n + 1, s + e));
    (n > 0).then(|| (sum / n as f64 * 0.1).max(abs))
}

/// ITU-R BS.1770 integrated loudness of a set of 400 ms block energies:
/// absolute gate −70 LUFS, relative gate −10 LU. `None` when no block passes.
pub fn gated_integrated(energies: impl Iterator<Item = f64> + Clone) -> Option<f64> {
    let threshold = gate_threshold(energies.clone())?;
    let (n, sum) = energies
        .filter(|&e| e >= threshold)
        .fold((0u64, 0.0), |(n, s), e| (n + 1, s + e));
    (n > 0).then(|| energy_to_lufs(sum / n as f64))
}

/// EBU Tech 3342 (v3+) loudness range from short-term (3 s) energies taken
/// at least every 100 ms: absolute gate −70 LUFS, relative gate −20 LU below
/// their power mean, then the spread between the 10th and 95th percentiles
/// (nearest rank, as libebur128). `None` with no window above the gates.
pub fn loudness_range(short_term_energies: &[f64]) -> Option<f64> {
    let abs = lufs_to_energy(ABSOLUTE_GATE_LUFS);
    let above: Vec<f64> = short_term_energies
        .iter()
        .copied()
        .filter(|&e| e >= abs)
        .collect();
    if above.is_empty() {
        return None;
    }
    let rel = above.iter().sum::<f64>() / above.len() as f64 * 10f64.powf(-20.0 / 10.0);
    let mut kept: Vec<f64> = above.into_iter().filter(|&e| e >= rel).collect();
    if kept.is_empty() {
        return None;
    }
    kept.sort_by(f64::total_cmp);
    let at = |p: f64| kept[((kept.len() - 1) as f64 * p + 0.5) as usize];
    Some(energy_to_lufs(at(0.95)) - energy_to_lufs(at(0.10)))
}

/// Streams blocks into an EBU R128 meter, polling momentary and short-term
/// loudness every 100 ms of audio.
pub struct Meter {
    ebu: EbuR128,
    kind: MeterKind,
    hop: usize,
    /// Frames since the last 100 ms boundary.
    phase: usize,
    hops: u64,
    max_momentary: f64,
    max_short_term: f64,
    sample_peak: f64,
    frames: u64,
    /// Frames handed to [`Meter::add`] so far, counted before they are
    /// metered: where a run of overs is cut at the end of the audio, the
    /// same whatever the block sizes.
    fed: u64,
    rate: u32,
    /// The accurate true-peak estimator, full mode only.
    true_peak: Option<TruePeakDetector>,
    /// Energy of every BS.1770 gating block (400 ms, 100 ms hop), when recorded.
    blocks: Option<Vec<f64>>,
    /// Short-term loudness at every whole second (full mode).
    short_term: Vec<Option<f64>>,
    /// Short-term energy every 100 ms from 3 s on, for the loudness range
    /// (the `ebur128` crate's own LRA steps its windows only every second,
    /// which EBU Tech 3342 v3 no longer allows).
    short_term_energies: Vec<f64>,
    /// Largest momentary loudness of every whole second (full mode).
    momentary: Vec<f64>,
    /// Energies of the last 30 hops (100 ms each), oldest first once full:
    /// momentary (4 hops) and short-term (30 hops) loudness are their
    /// means. The `ebur128` crate would re-sum every sample of a 3 s
    /// window at each 100 ms step (30 times the work, the largest cost of
    /// metering a pack); each sample is summed once here.
    hop_energies: [f64; 30],
    /// The video-frame grid true peaks are followed on (full mode).
    timeline: Timeline,
    /// True peak per video frame: the frame being fed, its max so far, and
    /// the frames fed to the detector.
    tp_frame: u64,
    tp_frame_max: f64,
    tp_fed: u64,
    /// Largest true peak of every whole second (linear).
    true_peak_per_s: Vec<f64>,
    overs: Vec<Over>,
    overs_total: u64,
    /// The run over the ceiling still open: first frame, peak.
    open_over: Option<(u64, f64)>,
}

/// Where a meter looks for overs and how it gives their times.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Video frames per second: the grid overs are found on.
    pub frame_rate: f64,
    /// The ceiling, dBTP; `None`: no overs are looked for.
    pub ceiling_dbtp: Option<f64>,
    /// The file's first sample on the session timeline (BWF
    /// `TimeReference`), for timecodes.
    pub time_reference: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            frame_rate: deliverables_spec::delivery::DEFAULT_FRAME_RATE,
            ceiling_dbtp: None,
            time_reference: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("loudness meter: {0}")]
pub struct MeterError(String);

impl Meter {
    pub fn new(channels: usize, rate: u32, kind: MeterKind) -> Result<Self, MeterError> {
        Meter::build(channels, rate, kind, false)
    }

    /// A meter that also keeps every 400 ms gating block's energy (8 bytes
    /// per 100 ms: 2.9 MB for ten hours), for loudness over a subset of blocks.
    pub fn with_blocks(channels: usize, rate: u32, kind: MeterKind) -> Result<Self, MeterError> {
        Meter::build(channels, rate, kind, true)
    }

    fn build(
        channels: usize,
        rate: u32,
        kind: MeterKind,
        blocks: bool,
    ) -> Result<Self, MeterError> {
        let mut mode = match kind {
            MeterKind::Full => Mode::I | Mode::M,
            MeterKind::IntegratedOnly => Mode::I,
        };
        // Full meters and recorded blocks read each 100 ms hop's energy.
        if blocks {
            mode |= Mode::M;
        }
        let ch = u32::try_from(channels).map_err(|_| MeterError("too many channels".into()))?;
        let mut ebu = EbuR128::new(ch, rate, mode).map_err(|e| MeterError(format!("{e:?}")))?;
        ebu.set_channel_map(&channel_map(channels))
            .map_err(|e| MeterError(format!("{e:?}")))?;
        Ok(Meter {
            ebu,
            kind,
            hop: (rate as usize / 10).max(1),
            phase: 0,
            hops: 0,
            max_momentary: f64::NEG_INFINITY,
            max_short_term: f64::NEG_INFINITY,
            sample_peak: 0.0,
            frames: 0,
            fed: 0,
            rate,
            true_peak: (kind == MeterKind::Full).then(|| TruePeakDetector::new(channels, rate)),
            blocks: blocks.then(Vec::new),
            short_term: Vec::new(),
            short_term_energies: Vec::new(),
            momentary: Vec::new(),
            hop_energies: [0.0; 30],
            timeline: Timeline::default(),
            tp_frame: 0,
            tp_frame_max: 0.0,
            tp_fed: 0,
            true_peak_per_s: Vec::new(),
            overs: Vec::new(),
            overs_total: 0,
            open_over: None,
        })
    }

    /// Sets the frame grid, the ceiling overs are looked for against, and
    /// the timeline position (before the first block).
    pub fn set_timeline(&mut self, timeline: Timeline) {
        if timeline.frame_rate.is_finite() && timeline.frame_rate > 0.0 {
            self.timeline = timeline;
        }
    }

    /// Feeds frames `start .. start + n` of `block` to the true-peak
    /// detector, one video frame at a time: each frame's peak is exact
    /// (the detector reports input frame `p` when fed frame `p + delay`).
    fn push_true_peak(&mut self, block: &Block, mut start: usize, n: usize) {
        let Some(delay) = self.true_peak.as_ref().map(|t| t.delay() as u64) else {
            return;
        };
        let end = start + n;
        while start < end {
            let boundary =
                frame_start(self.tp_frame + 1, self.rate, self.timeline.frame_rate) + delay;
            let take = (boundary.saturating_sub(self.tp_fed)).min((end - start) as u64) as usize;
            // Only what can raise this second's maximum or pass the ceiling
            // is computed: below both, a frame's exact peak is never read.
            let second = (frame_start(self.tp_frame, self.rate, self.timeline.frame_rate)
                / u64::from(self.rate.max(1))) as usize;
            let second_max = self
                .true_peak_per_s
                .get(second)
                .copied()
                .unwrap_or(0.0)
                .max(self.tp_frame_max);
            let ceiling = self
                .timeline
                .ceiling_dbtp
                .map_or(f64::INFINITY, |c| 10f64.powf(c / 20.0));
            let floor = second_max.min(ceiling);
            if take > 0
                && let Some(tp) = self.true_peak.as_mut()
            {
                let v = tp.push_block_range_over(block, start, take, floor);
                self.tp_frame_max = self.tp_frame_max.max(v);
                self.tp_fed += take as u64;
                start += take;
            }
            if self.tp_fed >= boundary {
                self.close_video_frame();
            }
        }
    }

    /// The frame being followed is complete: its peak into the second it
    /// starts in, and into the run of overs.
    fn close_video_frame(&mut self) {
        let (k, v) = (self.tp_frame, self.tp_frame_max);
        let first = frame_start(k, self.rate, self.timeline.frame_rate);
        let second = (first / u64::from(self.rate.max(1))) as usize;
        if self.true_peak_per_s.len() <= second {
            self.true_peak_per_s.resize(second + 1, 0.0);
        }
        self.true_peak_per_s[second] = self.true_peak_per_s[second].max(v);
        let ceiling = self.timeline.ceiling_dbtp.map(|c| 10f64.powf(c / 20.0));
        match (ceiling.is_some_and(|c| v > c), self.open_over) {
            (true, Some((s, p))) => self.open_over = Some((s, p.max(v))),
            (true, None) => self.open_over = Some((k, v)),
            (false, Some(_)) => self.close_over(k),
            (false, None) => {}
        }
        self.tp_frame += 1;
        self.tp_frame_max = 0.0;
    }

    /// Ends the open run of overs before frame `end`.
    fn close_over(&mut self, end: u64) {
        let Some((s, peak)) = self.open_over.take() else {
            return;
        };
        self.overs_total += 1;
        if self.overs.len() < MAX_OVERS {
            let (fps, rate) = (self.timeline.frame_rate, self.rate);
            let first = frame_start(s, rate, fps);
            let last = frame_start(end, rate, fps).min(self.fed.max(first));
            self.overs.push(Over {
                start_s: round3(first as f64 / f64::from(rate)),
                end_s: round3(last as f64 / f64::from(rate)),
                timecode: timecode(self.timeline.time_reference + first, rate, fps),
                peak_dbtp: round3(to_db(peak)),
            });
        }
    }

    pub fn add(&mut self, block: &Block) -> Result<(), MeterError> {
        self.fed += block.frames() as u64;
        self.sample_peak = self.sample_peak.max(block.peak());
        self.push_true_peak(block, 0, block.frames());
        let n = block.frames();
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
            self.frames += take as u64;
            if self.phase == self.hop {
                self.phase = 0;
                self.hops += 1;
                self.on_hop();
            }
        }
        Ok(())
    }

    /// At every 100 ms boundary: the block that just completed.
    fn on_hop(&mut self) {
        if self.blocks.is_none() && self.kind != MeterKind::Full {
            return;
        }
        // This hop's energy (the crate's 100 ms window: its own samples only).
        let e = self
            .ebu
            .loudness_window(100)
            .ok()
            .filter(|l| l.is_finite())
            .map_or(0.0, lufs_to_energy);
        self.hop_energies.copy_within(1.., 0);
        self.hop_energies[29] = e;
        // Sums in a fixed order, oldest hop first.
        let mean = |n: usize| self.hop_energies[30 - n..].iter().sum::<f64>() / n as f64;
        let loudness = |e: f64| {
            if e > 0.0 {
                energy_to_lufs(e)
            } else {
                f64::NEG_INFINITY
            }
        };
        // A gating block needs 400 ms of audio behind it.
        let whole_block = self.hops >= 4;
        let momentary_energy = mean(4);
        if let Some(b) = &mut self.blocks
            && whole_block
        {
            b.push(momentary_energy);
        }
        if self.kind != MeterKind::Full {
            return;
        }
        if whole_block {
            let m = loudness(momentary_energy);
            self.max_momentary = self.max_momentary.max(m);
            // The window ending at hop h lies in second (h − 1) / 10.
            let second = ((self.hops - 1) / 10) as usize;
            if self.momentary.len() <= second {
                self.momentary.resize(second + 1, f64::NEG_INFINITY);
            }
            self.momentary[second] = self.momentary[second].max(m);
        }
        let whole_window = self.hops >= 30;
        let short_term_energy = mean(30);
        let s = Some(loudness(short_term_energy)).filter(|s| s.is_finite());
        if whole_window {
            if let Some(s) = s {
                self.max_short_term = self.max_short_term.max(s);
            }
            self.short_term_energies
                .push(if s.is_some() { short_term_energy } else { 0.0 });
        }
        if self.hops.is_multiple_of(10) {
            let gated = s.filter(|&s| s >= ABSOLUTE_GATE_LUFS);
            self.short_term.push(if whole_window {
                gated.map(round2)
            } else {
                None
            });
        }
    }

    /// Integrated loudness so far; `None` for silence (BS.1770 gives −∞).
    pub fn integrated(&self) -> Option<f64> {
        self.ebu.loudness_global().ok().filter(|v| v.is_finite())
    }

    /// Energies of the 400 ms gating blocks so far (if recorded).
    pub fn blocks(&self) -> &[f64] {
        self.blocks.as_deref().unwrap_or(&[])
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
        let full = self.kind == MeterKind::Full;
        let lra = loudness_range(&self.short_term_energies).and_then(finite);
        // The detector's tail: the last frames' points, into the last video frame.
        if let Some(tp) = self.true_peak.as_mut() {
            let tail = tp.flush();
            self.tp_frame_max = self.tp_frame_max.max(tail);
        }
        if self.true_peak.is_some() && self.frames > 0 {
            self.close_video_frame();
            let end = self.tp_frame;
            self.close_over(end);
        }
        let true_peak = self
            .true_peak
            .as_ref()
            .map(|t| to_db(t.max()))
            .and_then(finite);
        let sample_peak = finite(to_db(self.sample_peak));
        if sample_peak.is_none() {
            notes.push("no peak: every sample is zero".to_string());
        }
        if full && dur < 3.0 {
            notes.push(
                "no short-term maximum or loudness range: shorter than one 3 s window".to_string(),
            );
        } else if full && lra.is_none() {
            notes.push("no loudness range: no 3 s window above the gates".to_string());
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
            short_term_lufs: std::mem::take(&mut self.short_term),
            momentary_lufs: self
                .momentary
                .iter()
                .map(|&m| (m >= ABSOLUTE_GATE_LUFS).then(|| round2(m)))
                .collect(),
            true_peak_dbtp_per_s: self
                .true_peak_per_s
                .iter()
                .map(|&v| finite(to_db(v)).map(round2))
                .collect(),
            overs: std::mem::take(&mut self.overs),
            overs_total: self.overs_total,
            overs_ceiling_dbtp: self.timeline.ceiling_dbtp.filter(|_| full),
            frame_rate: full.then_some(self.timeline.frame_rate),
            dialogue: None,
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
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stereo sine blocks at `dbfs` for `secs`, at 48 kHz.
    fn feed(meter: &mut Meter, dbfs: f64, secs: f64, phase: &mut u64) {
        let rate = 48_000.0;
        let amp = 10f64.powf(dbfs / 20.0);
        let total = (secs * rate) as usize;
        let mut done = 0;
        let mut b = Block::new(2, 4096);
        while done < total {
            let n = (total - done).min(4096);
            b.set_frames(n);
            for i in 0..n {
                let t = (*phase + i as u64) as f64 / rate;
                let x = amp * (2.0 * std::f64::consts::PI * 997.0 * t).sin();
                b.channel_mut(0)[i] = x;
                b.channel_mut(1)[i] = x;
            }
            meter.add(&b).expect("meter");
            *phase += n as u64;
            done += n;
        }
    }

    /// The maxima per second, the overall true peak and the runs over the
    /// ceiling equal those of every step computed one by one (no skipping),
    /// although the meter only computes what can raise a second's maximum
    /// or pass the ceiling.
    #[test]
    fn true_peaks_per_second_and_overs_equal_every_step_computed() {
        let rate = 48_000u32;
        let ceiling_db = -1.0;
        let mut m = Meter::new(2, rate, MeterKind::Full).expect("meter");
        m.set_timeline(Timeline {
            frame_rate: 25.0,
            ceiling_dbtp: Some(ceiling_db),
            time_reference: 0,
        });
        let mut reference = TruePeakDetector::new(2, rate);
        let delay = reference.delay();
        let mut steps: Vec<f64> = Vec::new();
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let total = 9 * rate as usize + 1234;
        let mut t = 0usize;
        // Odd block sizes; loud bursts (some over the ceiling) in quiet music.
        for n in [4096usize, 1, 333, 4096, 2000, 4095, 17].iter().cycle() {
            if t >= total {
                break;
            }
            let n = (*n).min(total - t);
            let mut b = Block::new(2, 4096);
            b.set_frames(n);
            for i in 0..n {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let noise = (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                let k = t + i;
                let loud = match k / 12_000 {
                    5 | 17 | 18 | 30 => 2.2,
                    9 | 24 => 1.4,
                    _ => 0.35,
                };
                let x = loud * (0.45 * (k as f64 * 0.21).sin() + 0.25 * noise);
                b.channel_mut(0)[i] = x;
                b.channel_mut(1)[i] = -0.8 * x;
                let v = reference.push_frame(&[x, -0.8 * x]);
                if k >= delay {
                    steps.push(v);
                }
            }
            m.add(&b).expect("meter");
            t += n;
        }
        for _ in 0..delay {
            steps.push(reference.push_frame(&[0.0, 0.0]));
        }
        let got = m.finish();
        let per_s: Vec<Option<f64>> = steps
            .chunks(rate as usize)
            .map(|c| Some(round2(to_db(c.iter().copied().fold(0.0, f64::max)))))
            .collect();
        assert_eq!(got.true_peak_dbtp_per_s, per_s);
        assert_eq!(
            got.true_peak_dbtp,
            Some(round3(to_db(steps.iter().copied().fold(0.0, f64::max))))
        );
        // Runs of video frames (1920 frames at 25 fps) over the ceiling.
        let c = 10f64.powf(ceiling_db / 20.0);
        let mut overs: Vec<(usize, usize, f64)> = Vec::new();
        for (f, frame) in steps.chunks(1920).enumerate() {
            let v = frame.iter().copied().fold(0.0, f64::max);
            match overs.last_mut() {
                Some(o) if v > c && o.1 == f => {
                    o.1 = f + 1;
                    o.2 = o.2.max(v);
                }
                _ if v > c => overs.push((f, f + 1, v)),
                _ => {}
            }
        }
        assert!(overs.len() >= 3, "{overs:?}");
        assert_eq!(got.overs.len(), overs.len(), "{:?}", got.overs);
        for (o, (f0, _, peak)) in got.overs.iter().zip(&overs) {
            assert_eq!(o.start_s, round3(*f0 as f64 * 1920.0 / f64::from(rate)));
            assert_eq!(o.peak_dbtp, round3(to_db(*peak)));
        }
    }

    #[test]
    fn recomputed_gating_matches_the_crate() {
        let mut m = Meter::with_blocks(2, 48_000, MeterKind::Full).expect("meter");
        let mut ph = 0;
        for (db, s) in [(-36.0, 5.0), (-23.0, 12.3), (-80.0, 3.0), (-30.0, 7.7)] {
            feed(&mut m, db, s, &mut ph);
        }
        let ours = gated_integrated(m.blocks().iter().copied()).expect("loud");
        let crate_value = m.integrated().expect("loud");
        assert!((ours - crate_value).abs() < 1e-9, "{ours} vs {crate_value}");
        // 28 s of audio → 277 whole blocks (one per 100 ms from 0.4 s).
        assert_eq!(m.blocks().len(), 277);
        let meas = m.finish();
        assert_eq!(meas.short_term_lufs.len(), 28);
        assert!(meas.short_term_lufs[..2].iter().all(Option::is_none));
        let s = meas.short_term_lufs[10].expect("loud window");
        assert!((s + 23.0).abs() < 0.05, "{s}");
    }

    #[test]
    fn silence_is_null_with_reasons() {
        let mut m = Meter::new(2, 48_000, MeterKind::Full).expect("meter");
        let mut ph = 0;
        feed(&mut m, -200.0, 5.0, &mut ph);
        let meas = m.finish();
        assert_eq!(meas.integrated_lufs, None);
        assert!(
            meas.notes.iter().any(|n| n.contains("silent")),
            "{:?}",
            meas.notes
        );
        let json = serde_json::to_string(&meas).expect("json");
        assert!(!json.contains("inf") && !json.contains("NaN"), "{json}");
    }
}
