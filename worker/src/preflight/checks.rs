//! Findings: what each check concludes from the measured facts, with a
//! severity, the files concerned, the numbers, and what to do. Pure
//! functions of the facts; nothing here reads a file.

use super::align::Placement;
use super::null::NullFit;
use super::stats::{CLIP_RUN, DC_DBFS, SILENCE_DBFS, StemStats};
use crate::decode::{DecodeError, StreamInfo};
use crate::dsp::resample::Resampler;
use deliverables_spec::model::Layout;
pub use deliverables_spec::preflight::{Finding, Severity};

pub use super::align::MIN_CORRELATION;
/// Samples within this of a file's peak count as sitting at its ceiling, dB.
pub const CEILING_BAND_DB: f64 = 0.05;
/// A file with at least this many samples at its ceiling looks limited.
pub const CEILING_MIN_SAMPLES: u64 = 200;
/// Limited stems whose ceilings agree within this share one limiter, dB.
pub const COMMON_CEILING_DB: f64 = 0.1;

/// The stems' sum passing a reference's ceiling by this means the reference
/// was limited, dB.
pub const LIMITED_OVERSHOOT_DB: f64 = 0.5;

/// A file that could not be opened or read.
pub fn unreadable(name: &str, e: &DecodeError) -> Finding {
    let fix = match e {
        DecodeError::Open { .. } => "check the path and that the file is readable",
        DecodeError::Corrupt { .. } | DecodeError::Io { .. } => {
            "re-export or re-copy the file from the mix session"
        }
        _ => "deliver it as WAV/BWF, AIFF or FLAC (PCM 16/24/32-bit or float)",
    };
    Finding::new(Severity::Error, "unreadable", &[name], e.to_string(), fix)
}

/// Format checks across the stems that opened: rate, layout, bit depth.
/// `infos[i]` is `None` for a stem that did not open.
pub fn format_findings(
    names: &[String],
    infos: &[Option<StreamInfo>],
    rate: u32,
    delivery_rate: Option<u32>,
    layout: Layout,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, info) in names.iter().zip(infos) {
        let Some(info) = info else { continue };
        if info.sample_rate != rate {
            let target = delivery_rate.unwrap_or(rate);
            match Resampler::new(info.sample_rate, target, 1) {
                Ok(_) => out.push(Finding::new(
                    Severity::Warning,
                    "sample_rate",
                    &[name],
                    format!(
                        "'{name}' is {} Hz; the other stems are {rate} Hz: it is converted to {target} Hz for the mix, and the null test against the reference is skipped",
                        info.sample_rate
                    ),
                    format!("re-export it at {rate} Hz from the mix session to mix it unconverted"),
                )),
                Err(e) => out.push(Finding::new(
                    Severity::Error,
                    "sample_rate",
                    &[name],
                    format!(
                        "'{name}' is {} Hz; the other stems are {rate} Hz, and {e}",
                        info.sample_rate
                    ),
                    format!("re-export it at {rate} Hz from the mix session"),
                )),
            }
        }
        match info.channels {
            n if layout.accepts(n) => {}
            6 => out.push(Finding::new(
                Severity::Error,
                "channel_layout",
                &[name],
                format!("'{name}' is 5.1 (6 channels) but the title is stereo"),
                "set `layout = \"5.1\"` on the title to deliver 5.1 (with a stereo fold-down), or deliver a stereo print of this stem",
            )),
            n => out.push(Finding::new(
                Severity::Error,
                "channel_layout",
                &[name],
                format!(
                    "'{name}' has {n} channels; a {layout} title mixes {} stems",
                    if layout.is_stereo() { "mono and stereo" } else { "mono, stereo and 5.1 (L R C LFE Ls Rs)" }
                ),
                "re-export it as a mono, stereo or 5.1 stem (one file per stem)",
            )),
        }
        if let Some(bits) = info.bits_per_sample
            && bits < 16
        {
            out.push(Finding::new(
                Severity::Error,
                "bit_depth",
                &[name],
                format!(
                    "'{name}' is {bits}-bit: about {} dB of dynamic range, not a mastering source",
                    bits * 6
                ),
                "re-export it at 24-bit or 32-bit float from the mix session",
            ));
        }
    }
    let opened: Vec<(&String, &StreamInfo)> = names
        .iter()
        .zip(infos)
        .filter_map(|(n, i)| i.as_ref().map(|i| (n, i)))
        .collect();
    let stereo = layout.is_stereo() && opened.iter().any(|(_, i)| i.channels == 2);
    for (name, info) in &opened {
        if stereo && info.channels == 1 {
            out.push(Finding::new(
                Severity::Warning,
                "channel_layout",
                &[name],
                format!("'{name}' is mono among stereo stems: it plays at unity in both channels (centre)"),
                "if it should be panned, print it as a stereo stem",
            ));
        }
    }
    let depths: Vec<u32> = opened
        .iter()
        .filter_map(|(_, i)| i.bits_per_sample)
        .filter(|&b| b >= 16)
        .collect();
    if let Some(&deepest) = depths.iter().max()
        && depths.iter().any(|&b| b != deepest)
    {
        for (name, info) in &opened {
            // 24-bit and 32-bit (float) are both full-resolution prints; a
            // 16-bit stem among them was bounced at the wrong setting.
            if let Some(b) = info.bits_per_sample
                && (16..24).contains(&b)
                && deepest >= 24
            {
                out.push(Finding::new(
                    Severity::Warning,
                    "bit_depth",
                    &[name],
                    format!("'{name}' is {b}-bit; other stems are {deepest}-bit"),
                    "re-export every stem at the session's native depth",
                ));
            }
        }
    }
    if let Some(want) = delivery_rate
        && want != rate
        && let Err(e) = Resampler::new(rate, want, 1)
    {
        let first = names.first().map_or("", String::as_str);
        out.push(Finding::new(
            Severity::Error,
            "sample_rate",
            &[first],
            format!("delivery.sample_rate is {want} Hz but the stems are {rate} Hz, and {e}"),
            format!(
                "set delivery.sample_rate = {rate} or leave it out, or deliver stems at {want} Hz"
            ),
        ));
    }
    out
}

/// A file that decoded to fewer frames than its header declares, or failed
/// mid-stream.
pub fn stream_findings(
    name: &str,
    declared: Option<u64>,
    decoded: u64,
    error: Option<&str>,
    rate: u32,
) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(e) = error {
        out.push(Finding::new(
            Severity::Error,
            "unreadable",
            &[name],
            format!("{e} (read {decoded} frames before the fault)"),
            "re-export or re-copy the file from the mix session",
        ));
    } else if let Some(d) = declared
        && decoded < d
    {
        out.push(Finding::new(
            Severity::Error,
            "truncated",
            &[name],
            format!(
                "'{name}' ends at frame {decoded} ({:.3} s) but its header declares {d} frames ({:.3} s): the file is truncated",
                secs(decoded, rate),
                secs(d, rate)
            ),
            "re-copy it (an interrupted transfer?) or re-export it",
        ));
    }
    out
}

/// Float samples that are not numbers (NaN, infinite) or beyond +60 dBFS.
pub fn invalid_sample_findings(
    name: &str,
    count: u64,
    first: Option<u64>,
    rate: u32,
) -> Vec<Finding> {
    if count == 0 {
        return vec![];
    }
    let at = first.unwrap_or(0);
    vec![Finding::new(
        Severity::Error,
        "invalid_samples",
        &[name],
        format!(
            "'{name}' holds {count} sample(s) that are not audio (NaN, infinite or beyond +60 dBFS), first at {:.3} s (frame {at}); they were read as silence",
            secs(at, rate)
        ),
        "re-export the stem; a plug-in in its chain produced invalid floating-point output",
    )]
}

/// Stems shorter than the longest, the reference's length, and BWF timeline
/// positions that disagree.
pub fn length_findings(
    names: &[String],
    frames: &[u64],
    rates: &[u32],
    reference: Option<(&str, u64)>,
    time_refs: &[Option<u64>],
    rate: u32,
    tolerance_frames: u64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    // Lengths at the common rate, so a stem at another rate compares by time.
    let frames: Vec<u64> = frames
        .iter()
        .zip(rates)
        .map(|(&n, &r)| {
            if r == rate || r == 0 {
                n
            } else {
                (n as f64 * f64::from(rate) / f64::from(r)).round() as u64
            }
        })
        .collect();
    let longest = frames.iter().copied().max().unwrap_or(0);
    for (name, &n) in names.iter().zip(&frames) {
        if n > 0 && longest - n > tolerance_frames {
            out.push(Finding::new(
                Severity::Warning,
                "length",
                &[name],
                format!(
                    "'{name}' is {:.3} s long, {} frames ({:.3} s) shorter than the longest stem: it is padded with silence",
                    secs(n, rate),
                    longest - n,
                    secs(longest - n, rate)
                ),
                "if its end is missing, re-export it over the whole session length",
            ));
        }
    }
    if let Some((rname, rn)) = reference
        && rn.abs_diff(longest) > tolerance_frames
        && longest > 0
    {
        out.push(Finding::new(
            Severity::Warning,
            "length",
            &[rname],
            format!(
                "the reference '{rname}' is {:.3} s long, the stems {:.3} s",
                secs(rn, rate),
                secs(longest, rate)
            ),
            "export the reference over the same range as the stems",
        ));
    }
    let stamped: Vec<(&String, u64)> = names
        .iter()
        .zip(time_refs)
        .filter_map(|(n, t)| t.map(|t| (n, t)))
        .collect();
    if let Some(&(_, first)) = stamped.first()
        && stamped.iter().any(|&(_, t)| t != first)
    {
        let earliest = stamped.iter().map(|&(_, t)| t).min().unwrap_or(first);
        let list = stamped
            .iter()
            .map(|(n, t)| format!("'{n}' +{} frames", t - earliest))
            .collect::<Vec<_>>()
            .join(", ");
        let files: Vec<&str> = stamped.iter().map(|(n, _)| n.as_str()).collect();
        out.push(Finding::new(
            Severity::Error,
            "time_reference",
            &files,
            format!(
                "the stems start at different timeline positions (BWF TimeReference, relative to the earliest): {list}"
            ),
            "re-export every stem from the same session start; if they are aligned by their first sample anyway, set preflight.on_error = \"render\"",
        ));
    }
    out
}

/// Clipping, DC, silence: per file. `is_reference` words the messages.
pub fn signal_findings(name: &str, s: &StemStats, rate: u32) -> Vec<Finding> {
    let mut out = Vec::new();
    if s.frames() > 0 && s.is_silent() {
        out.push(Finding::new(
            Severity::Warning,
            "silent",
            &[name],
            format!(
                "'{name}' is silent: its peak is {:.1} dBFS (below {SILENCE_DBFS} dBFS)",
                s.peak_dbfs().max(-999.0)
            ),
            "check it is the right file, or drop it from the delivery",
        ));
        return out;
    }
    if s.clips > 0 {
        let at = s.first_clip_frame.unwrap_or(0);
        out.push(Finding::new(
            Severity::Warning,
            "clipping",
            &[name],
            format!(
                "'{name}' clips {} time(s) ({CLIP_RUN} or more full-scale samples in a row), first at {:.3} s (frame {at})",
                s.clips,
                secs(at, rate)
            ),
            "re-print it with headroom (or as 32-bit float) from the mix session",
        ));
    }
    if s.dc_dbfs() > DC_DBFS {
        out.push(Finding::new(
            Severity::Warning,
            "dc_offset",
            &[name],
            format!(
                "'{name}' has a DC offset of {:.1} dBFS (above {DC_DBFS} dBFS)",
                s.dc_dbfs()
            ),
            "high-pass the source or re-print it; DC eats headroom and thumps at edits",
        ));
    }
    out
}

/// Pairs of stems with identical audio.
pub fn duplicate_findings(names: &[String], stats: &[Option<StemStats>]) -> Vec<Finding> {
    let mut out = Vec::new();
    let digests: Vec<Option<String>> = stats
        .iter()
        .map(|s| {
            s.as_ref()
                .filter(|s| s.frames() > 0 && !s.is_silent())
                .map(StemStats::audio_digest)
        })
        .collect();
    for i in 0..names.len() {
        for j in i + 1..names.len() {
            if digests[i].is_some() && digests[i] == digests[j] {
                out.push(Finding::new(
                    Severity::Error,
                    "identical_stems",
                    &[&names[i], &names[j]],
                    format!(
                        "'{}' and '{}' contain identical audio: one of them was exported twice",
                        names[i], names[j]
                    ),
                    "re-export the missing stem; summed as is, this part plays 6 dB too loud",
                ));
            }
        }
    }
    out
}

/// Stems whose peaks pile up at one common ceiling: printed through a bus
/// limiter (each stem soloed through the mix bus).
pub fn ceiling_findings(names: &[String], stats: &[Option<StemStats>]) -> Vec<Finding> {
    let limited: Vec<(usize, f64, u64)> = stats
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let s = s.as_ref()?;
            let at = s.samples_near_peak(CEILING_BAND_DB);
            (!s.is_silent() && s.peak_dbfs() > -20.0 && at >= CEILING_MIN_SAMPLES)
                .then(|| (i, s.peak_dbfs(), at))
        })
        .collect();
    let mut out = Vec::new();
    let mut used = vec![false; limited.len()];
    for a in 0..limited.len() {
        if used[a] {
            continue;
        }
        let group: Vec<usize> = (a..limited.len())
            .filter(|&b| !used[b] && (limited[b].1 - limited[a].1).abs() <= COMMON_CEILING_DB)
            .collect();
        if group.len() < 2 {
            continue;
        }
        for &b in &group {
            used[b] = true;
        }
        let files: Vec<&str> = group
            .iter()
            .map(|&b| names[limited[b].0].as_str())
            .collect();
        let detail = group
            .iter()
            .map(|&b| {
                format!(
                    "'{}' {:.2} dBFS ({} samples)",
                    names[limited[b].0], limited[b].1, limited[b].2
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Finding::new(
            Severity::Warning,
            "common_ceiling",
            &files,
            format!(
                "{} stems pile their peaks up at one ceiling (samples within {CEILING_BAND_DB} dB of the peak): {detail}: they look printed through the mix-bus limiter",
                group.len()
            ),
            "re-print the stems with the mix-bus compressor/limiter bypassed (mastering applies its own)",
        ));
    }
    out
}

/// Offset, polarity and presence of each stem in the reference.
pub fn placement_findings(
    names: &[String],
    placements: &[Option<Placement>],
    rate: u32,
    max_offset: u64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, p) in names.iter().zip(placements) {
        let Some(p) = p else { continue };
        if p.correlation < MIN_CORRELATION {
            out.push(Finding::new(
                Severity::Warning,
                "not_in_reference",
                &[name],
                format!(
                    "'{name}' was not found in the reference within ±{} frames (correlation {:.2}): it is not part of that mix, or is shifted further",
                    max_offset, p.correlation
                ),
                "check that the reference is the mix these stems were printed from",
            ));
            continue;
        }
        if p.offset != 0 {
            let (way, fix_way) = if p.offset > 0 {
                ("late", "earlier")
            } else {
                ("early", "later")
            };
            let n = p.offset.unsigned_abs();
            out.push(Finding::new(
                Severity::Error,
                "stem_offset",
                &[name],
                format!(
                    "'{name}' is {n} samples ({:.2} ms) {way} against the reference",
                    n as f64 * 1000.0 / f64::from(rate.max(1))
                ),
                format!("re-export it from the session start, or slide it {n} samples {fix_way}"),
            ));
        }
        if p.inverted {
            out.push(Finding::new(
                Severity::Error,
                "polarity",
                &[name],
                format!(
                    "'{name}' is polarity-inverted against the reference (correlation -{:.2})",
                    p.correlation
                ),
                "re-export it with the polarity (phase) switch off, or invert it",
            ));
        }
    }
    out
}

/// What the null test concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct NullVerdict {
    pub pass: bool,
    pub findings: Vec<Finding>,
    /// The failure is blamed on bus compression or limiting on the reference.
    pub bus_processing: bool,
}

impl NullVerdict {
    fn new(pass: bool, findings: Vec<Finding>) -> NullVerdict {
        NullVerdict {
            pass,
            findings,
            bus_processing: false,
        }
    }
}

/// The null test verdict. `aligned` is the fit after correcting offsets and
/// polarity, when any were found.
pub fn null_findings(
    reference: &str,
    delivered: &NullFit,
    aligned: Option<&NullFit>,
    reference_ceiling: Option<(f64, u64)>,
    gain_tolerance_db: f64,
    min_depth_db: f64,
) -> NullVerdict {
    let fit = aligned.unwrap_or(delivered);
    let after = if aligned.is_some() {
        " after correcting the offsets and polarity above"
    } else {
        ""
    };
    let mut out = Vec::new();
    let Some(residual) = fit.residual_db else {
        out.push(Finding::new(
            Severity::Warning,
            "null_test",
            &[reference],
            format!("the reference '{reference}' is silent: the null test cannot run"),
            "supply the reference mix the stems were printed from (in the title's layout)",
        ));
        return NullVerdict::new(false, out);
    };
    let Some(gain) = fit.gain_db else {
        out.push(Finding::new(
            Severity::Error,
            "null_test",
            &[reference],
            format!("the stems' sum does not correlate with the reference '{reference}'{after}"),
            "check that the reference is the mix these stems were printed from",
        ));
        return NullVerdict::new(false, out);
    };
    let deep = residual <= -min_depth_db;
    let unity = gain.abs() <= gain_tolerance_db;
    if fit.sum_overs > 0 {
        out.push(Finding::new(
            Severity::Warning,
            "sum_overshoot",
            &[reference],
            format!(
                "the stems sum to {:+.2} dBFS ({} samples over full scale) where the reference peaks at {:.2} dBFS: the reference went through a bus limiter or clipper",
                fit.sum_peak_dbfs, fit.sum_overs, fit.reference_peak_dbfs
            ),
            "expected if the reference is the limited print; mastering applies its own limiter",
        ));
    }
    if deep && unity {
        return NullVerdict::new(true, out);
    }
    let numbers = format!(
        "best-fit gain {gain:+.2} dB (tolerance ±{gain_tolerance_db}), residual {residual:.1} dB (limit -{min_depth_db})"
    );
    // A reference pinned at a ceiling the stems' sum goes past was limited.
    let limited =
        reference_ceiling.filter(|&(peak, _)| fit.sum_peak_dbfs > peak + LIMITED_OVERSHOOT_DB);
    if !deep && (fit.follows_peaks() || limited.is_some()) {
        let why = match limited {
            Some((peak, n)) => format!(
                "the reference's peaks pile up at {peak:.2} dBFS ({n} samples within {CEILING_BAND_DB} dB) while the stems' sum reaches {:.2} dBFS",
                fit.sum_peak_dbfs
            ),
            None => format!(
                "the residual follows the mix's loud peaks ({:+.1} dB stronger in the loudest tenth)",
                fit.loud_minus_middle_db.unwrap_or(0.0)
            ),
        };
        out.push(Finding::new(
            Severity::Error,
            "null_test",
            &[reference],
            format!(
                "the stems do not sum to the reference{after}: {numbers}; {why}: bus compression or limiting on the reference that the stems do not carry"
            ),
            "supply the pre-bus-processing mix as the reference, or re-print the stems through the same bus chain; set preflight.on_error = \"render\" to master them as they are",
        ));
        return NullVerdict {
            pass: false,
            findings: out,
            bus_processing: true,
        };
    }
    if !deep {
        out.push(Finding::new(
            Severity::Error,
            "null_test",
            &[reference],
            format!(
                "the stems do not sum to the reference{after}: {numbers}; the residual is spread across the programme: part of the mix is missing from the stems (a send or return, a parallel chain, a muted track)"
            ),
            "re-print the stems with every send, return and parallel chain routed into a stem",
        ));
    } else {
        out.push(Finding::new(
            Severity::Error,
            "null_test",
            &[reference],
            format!(
                "the stems' sum is {:.2} dB {} the reference{after} ({numbers}): a master fader or bus gain the stems do not carry",
                gain.abs(),
                if gain > 0.0 { "quieter than" } else { "louder than" }
            ),
            "re-print the stems with the master fader at the mix's setting, or confirm the reference",
        ));
    }
    NullVerdict::new(false, out)
}

fn secs(frames: u64, rate: u32) -> f64 {
    frames as f64 / f64::from(rate.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn stats_of(samples: &[f64]) -> StemStats {
        let mut s = StemStats::new(2, 48_000);
        for chunk in samples.chunks(7) {
            s.push(&[chunk.to_vec(), chunk.to_vec()], chunk.len());
        }
        s
    }

    fn info(rate: u32, channels: usize, bits: u32) -> Option<StreamInfo> {
        Some(StreamInfo {
            sample_rate: rate,
            channels,
            frames: Some(48_000),
            bits_per_sample: Some(bits),
            codec: "pcm".into(),
            container: "wav".into(),
        })
    }

    #[test]
    fn silence_dc_and_duplicates() {
        let tone: Vec<f64> = (0..4800)
            .map(|i| 0.3 * (f64::from(i) * std::f64::consts::TAU / 480.0).sin())
            .collect();
        let quiet = stats_of(&[1e-6; 480]);
        let shifted: Vec<f64> = tone.iter().map(|v| v + 0.01).collect();
        let n = names(&["quiet.wav", "vox.wav", "vox copy.wav", "bass.wav"]);
        let stats = [quiet, stats_of(&tone), stats_of(&tone), stats_of(&shifted)];
        let mut f: Vec<Finding> = n
            .iter()
            .zip(&stats)
            .flat_map(|(n, s)| signal_findings(n, s, 48_000))
            .collect();
        let opt: Vec<Option<StemStats>> = stats.into_iter().map(Some).collect();
        f.extend(duplicate_findings(&n, &opt));
        let checks: Vec<&str> = f.iter().map(|x| x.check.as_str()).collect();
        assert_eq!(checks, ["silent", "dc_offset", "identical_stems"], "{f:#?}");
        assert_eq!(f[1].files, ["bass.wav"]);
        assert!(f[1].message.contains("-40.0 dBFS"), "{}", f[1].message);
        assert_eq!(f[2].severity, Severity::Error);
        assert_eq!(f[2].files, ["vox.wav", "vox copy.wav"]);
    }

    #[test]
    fn formats_rates_layouts_and_depths() {
        let n = names(&["a.wav", "b.wav", "c.wav", "d.wav", "e.wav"]);
        let infos = [
            info(48_000, 2, 24),
            info(44_100, 2, 24),
            info(48_000, 1, 16),
            info(48_000, 6, 24),
            None,
        ];
        let f = format_findings(&n, &infos, 48_000, Some(96_000), Layout::Stereo);
        let got: Vec<(&str, Severity, &str)> = f
            .iter()
            .map(|x| (x.check.as_str(), x.severity, x.files[0].as_str()))
            .collect();
        // The 44.1 kHz stem is converted (a warning); delivering at 96 kHz
        // is a conversion the converter makes, so no finding.
        assert_eq!(
            got,
            [
                ("sample_rate", Severity::Warning, "b.wav"),
                ("channel_layout", Severity::Error, "d.wav"),
                ("channel_layout", Severity::Warning, "c.wav"),
                ("bit_depth", Severity::Warning, "c.wav"),
            ],
            "{f:#?}"
        );
        assert!(
            f[0].message.contains("converted to 96000 Hz"),
            "{}",
            f[0].message
        );
        // A rate the converter cannot reach is an error naming it.
        let f = format_findings(&n[..1], &infos[..1], 48_000, Some(44_101), Layout::Stereo);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(
            (f[0].check.as_str(), f[0].severity),
            ("sample_rate", Severity::Error)
        );
        assert!(
            f[0].message.contains("delivery.sample_rate is 44101 Hz"),
            "{}",
            f[0].message
        );
        assert!(
            f[0].message.contains("unsupported conversion"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn lengths_by_time_and_disagreeing_timeline_positions() {
        let n = names(&["a.wav", "b.wav", "c.wav"]);
        // c is at 44.1 kHz but as long as a: not short. b is 480 frames short.
        let frames = [48_000, 47_520, 44_100];
        let rates = [48_000, 48_000, 44_100];
        let f = length_findings(&n, &frames, &rates, None, &[None; 3], 48_000, 480);
        assert!(f.is_empty(), "within tolerance: {f:#?}");
        let f = length_findings(
            &n,
            &frames,
            &rates,
            Some(("mix.wav", 96_000)),
            &[None; 3],
            48_000,
            479,
        );
        assert_eq!(f.len(), 2, "{f:#?}");
        assert!(
            f[0].message.contains("480 frames (0.010 s) shorter"),
            "{}",
            f[0].message
        );
        assert_eq!(f[1].files, ["mix.wav"]);
        let f = length_findings(
            &n,
            &frames,
            &rates,
            None,
            &[Some(172_800_000), Some(172_800_480), None],
            48_000,
            480,
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, "time_reference");
        assert_eq!(f[0].severity, Severity::Error);
        assert!(
            f[0].message.contains("'b.wav' +480 frames"),
            "{}",
            f[0].message
        );
    }

    fn fit(gain: f64, residual: f64, loud: f64) -> NullFit {
        NullFit {
            gain_db: Some(gain),
            residual_db: Some(residual),
            loud_minus_middle_db: Some(loud),
            sum_peak_dbfs: -1.0,
            reference_peak_dbfs: -1.0,
            sum_overs: 0,
        }
    }

    #[test]
    fn null_verdicts_say_what_they_suggest() {
        let pass = null_findings("mix.wav", &fit(0.05, -60.0, 0.0), None, None, 0.1, 40.0);
        assert_eq!(pass, NullVerdict::new(true, vec![]));
        let NullVerdict {
            pass: ok,
            findings: f,
            bus_processing,
        } = null_findings("mix.wav", &fit(0.0, -20.0, 1.0), None, None, 0.1, 40.0);
        assert!(
            !ok && f[0].message.contains("missing from the stems"),
            "{f:#?}"
        );
        assert!(!bus_processing);
        let NullVerdict {
            findings: f,
            bus_processing,
            ..
        } = null_findings("mix.wav", &fit(0.0, -20.0, 12.0), None, None, 0.1, 40.0);
        assert!(
            f[0].message.contains("follows the mix's loud peaks"),
            "{f:#?}"
        );
        assert!(bus_processing);
        let NullVerdict {
            findings: f,
            bus_processing,
            ..
        } = null_findings(
            "mix.wav",
            &fit(0.0, -20.0, 1.0),
            None,
            Some((-3.0, 900)),
            0.1,
            40.0,
        );
        assert!(f[0].message.contains("pile up at -3.00 dBFS"), "{f:#?}");
        assert!(bus_processing);
        let NullVerdict {
            pass: ok,
            findings: f,
            bus_processing,
        } = null_findings("mix.wav", &fit(0.5, -80.0, 0.0), None, None, 0.1, 40.0);
        assert!(
            !ok && f[0].message.contains("0.50 dB quieter than the reference"),
            "{f:#?}"
        );
        assert!(!bus_processing);
        // Aligned fit decides, and says so.
        let NullVerdict {
            pass: ok,
            findings: f,
            bus_processing,
        } = null_findings(
            "mix.wav",
            &fit(0.0, -10.0, 0.0),
            Some(&fit(0.0, -20.0, 0.0)),
            None,
            0.1,
            40.0,
        );
        assert!(!ok && f[0].message.contains("after correcting"), "{f:#?}");
        assert!(!bus_processing);
    }
}
