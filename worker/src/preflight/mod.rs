//! Preflight: everything that can be known about a title's stems (and its
//! reference mix) before mastering, as findings with a severity, the files,
//! the numbers and the fix.
//!
//! Three streaming passes, memory independent of duration:
//! 1. every file once: format, length, truncation, clipping, DC, silence,
//!    duplicates, limiter ceilings, energy per second, and the null test of
//!    the stems as delivered;
//! 2. with a reference: a few bounded windows captured where the stems are
//!    loudest, to place each stem (offset, polarity, gain) by correlation;
//! 3. only if a stem is misplaced: the null test again with it corrected.
//!
//! A file that cannot be opened or fails mid-stream becomes a finding; the
//! other files are still checked. Nothing here panics on bad input.
//! This module knows about files and audio, not about tasks or gRPC.

pub mod align;
pub mod checks;
pub mod null;
pub mod stats;
mod streams;

use std::path::PathBuf;

use deliverables_spec::model::{Layout, PreflightSpec};
pub use deliverables_spec::preflight::{
    FileFormat, FileReport, Finding, NullTest, PlacementReport, PreflightReport, Severity,
};
use null::{NullAccumulator, NullFit};
use stats::StemStats;
use streams::Lockstep;

use crate::bwf::bext_time_reference;
use crate::decode::{StemReader, StreamInfo};

/// A file to check, with the name the report uses for it.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// As written in the spec, or the file name in a folder.
    pub name: String,
    pub path: PathBuf,
}

/// What to check: a title's stems and, optionally, its reference mix.
#[derive(Debug, Clone)]
pub struct PreflightInput {
    pub title: String,
    pub stems: Vec<InputFile>,
    pub reference: Option<InputFile>,
    /// `delivery.sample_rate`, when the spec sets one.
    pub delivery_rate: Option<u32>,
    /// The title's layout: which stems it accepts and how they sum.
    pub layout: Layout,
}

/// Opened files: readers (None if they failed) and their infos.
struct Opened {
    readers: Vec<Option<StemReader>>,
    infos: Vec<Option<StreamInfo>>,
}

fn open_all(files: &[&InputFile], findings: Option<&mut Vec<Finding>>) -> Opened {
    let mut readers = Vec::new();
    let mut infos = Vec::new();
    let mut errs = Vec::new();
    for f in files {
        match StemReader::open(&f.path) {
            Ok(r) => {
                infos.push(Some(r.info().clone()));
                readers.push(Some(r));
            }
            Err(e) => {
                errs.push(checks::unreadable(&f.name, &e));
                infos.push(None);
                readers.push(None);
            }
        }
    }
    if let Some(f) = findings {
        f.extend(errs);
    }
    Opened { readers, infos }
}

/// The layout a folder of stems is in when no spec says: 5.1 if any file
/// (stem or reference) has six channels, else stereo.
pub fn infer_layout<'a>(files: impl IntoIterator<Item = &'a InputFile>) -> Layout {
    let widest = files
        .into_iter()
        .filter_map(|f| StemReader::open(&f.path).ok())
        .map(|r| Layout::implied_by(r.info().channels))
        .find(|l| !l.is_stereo());
    widest.unwrap_or_default()
}

/// Runs every check on one title. Never fails: what goes wrong is a finding.
/// `progress` receives 0–1.
pub fn run(
    input: &PreflightInput,
    settings: &PreflightSpec,
    progress: &dyn Fn(f64),
) -> PreflightReport {
    let mut findings = Vec::new();
    let started = std::time::Instant::now();
    let (t, readers) = Title::open(input, &mut findings);
    let pass = statistics_pass(&t, readers, progress);
    tracing::debug!(
        ms = started.elapsed().as_millis(),
        "preflight pass 1 (statistics)"
    );
    let mut reports = file_reports(&t, &pass, &mut findings);
    let damaged = file_findings(&t, settings, &pass.stats, &reports, &mut findings);
    let null_test = match (pass.delivered, &input.reference) {
        (Some(delivered), Some(reference)) => Some(null_passes(
            &t,
            settings,
            NullInput {
                delivered,
                reference,
                stats: &pass.stats,
                damaged: &damaged,
            },
            &mut reports,
            &mut findings,
            progress,
        )),
        _ => None,
    };
    progress(1.0);
    tracing::debug!(ms = started.elapsed().as_millis(), "preflight done");

    // Errors first; stable within a severity.
    findings.sort_by_key(|f| f.severity);
    let reference = t.has_ref.then(|| reports.remove(t.n_stems));
    PreflightReport {
        title: input.title.clone(),
        sample_rate: t.rate,
        stems: reports,
        reference,
        null_test,
        findings,
    }
}

/// What every pass knows about the title: its files as opened, its rate and
/// layout, and whether the reference can be nulled against the stems.
struct Title<'a> {
    names: Vec<String>,
    /// The stems, then the reference if there is one.
    files: Vec<&'a InputFile>,
    n_stems: usize,
    has_ref: bool,
    infos: Vec<Option<StreamInfo>>,
    /// The stems' common rate.
    rate: u32,
    time_refs: Vec<Option<u64>>,
    ref_name: Option<&'a str>,
    layout: Layout,
    /// The reference can be compared with the stems' sum.
    null_ok: bool,
    /// The stems are summed in the reference's channels (the layout's, or
    /// one for a mono session).
    sum_channels: usize,
}

impl<'a> Title<'a> {
    /// Opens every file once; formats and rates first.
    fn open(
        input: &'a PreflightInput,
        findings: &mut Vec<Finding>,
    ) -> (Title<'a>, Vec<Option<StemReader>>) {
        let names: Vec<String> = input.stems.iter().map(|s| s.name.clone()).collect();
        let files: Vec<&InputFile> = input.stems.iter().chain(&input.reference).collect();
        let n_stems = input.stems.len();
        let has_ref = input.reference.is_some();
        let opened = open_all(&files, Some(findings));
        let rate = common_rate(&opened.infos[..n_stems]);
        findings.extend(checks::format_findings(
            &names,
            &opened.infos[..n_stems],
            rate,
            input.delivery_rate,
            input.layout,
        ));
        let time_refs: Vec<Option<u64>> = files
            .iter()
            .zip(&opened.infos)
            // Only files that opened as audio (a pipe must not be opened at all).
            .map(|(f, i)| {
                i.as_ref()
                    .and_then(|_| bext_time_reference(&f.path).ok().flatten())
            })
            .collect();
        // Can the reference be compared with the stems' sum at all?
        let ref_info = if has_ref {
            opened.infos[n_stems].clone()
        } else {
            None
        };
        let ref_name = input.reference.as_ref().map(|r| r.name.as_str());
        let layout = input.layout;
        let blocker = null_blocker(
            ref_name,
            ref_info.as_ref(),
            &opened.infos[..n_stems],
            rate,
            layout,
        );
        if let (Some(name), Some(why)) = (ref_name, &blocker)
            && ref_info.is_some()
        {
            findings.push(Finding::new(
                Severity::Warning,
                "null_test",
                &[name],
                format!("the null test cannot run: {why}"),
                "fix the stems' format findings, or supply a reference in the stems' format",
            ));
        }
        let null_ok = has_ref && ref_info.is_some() && blocker.is_none();
        let sum_channels = ref_info
            .as_ref()
            .filter(|_| null_ok)
            .map_or(layout.channels(), |i| i.channels);
        let t = Title {
            names,
            files,
            n_stems,
            has_ref,
            infos: opened.infos,
            rate,
            time_refs,
            ref_name,
            layout,
            null_ok,
            sum_channels,
        };
        (t, opened.readers)
    }
}

/// What pass 1 found.
struct StatisticsPass {
    stats: Vec<Option<StemStats>>,
    /// The null test of the stems as delivered (when it can run).
    delivered: Option<NullAccumulator>,
    /// Per file: frames decoded, the first read error, invalid samples.
    decoded: Vec<u64>,
    errors: Vec<Option<String>>,
    invalid: Vec<(u64, Option<u64>)>,
}

/// Pass 1: statistics of every file and the null test as delivered.
fn statistics_pass(
    t: &Title<'_>,
    readers: Vec<Option<StemReader>>,
    progress: &dyn Fn(f64),
) -> StatisticsPass {
    let mut lock = Lockstep::new(readers);
    let mut stats: Vec<Option<StemStats>> = t
        .infos
        .iter()
        .map(|i| {
            i.as_ref()
                .map(|i| StemStats::new(i.channels, i.sample_rate))
        })
        .collect();
    let mut delivered = t.null_ok.then(|| NullAccumulator::new(t.rate));
    let mut sum = vec![vec![0.0; streams::STEP_FRAMES]; t.sum_channels];
    let expected = t
        .infos
        .iter()
        .flatten()
        .filter_map(|i| i.frames)
        .max()
        .unwrap_or(0)
        .max(1);
    let passes = if t.null_ok { 3.0 } else { 1.0 };
    loop {
        let n = lock.step();
        if n == 0 {
            break;
        }
        for (i, s) in stats.iter_mut().enumerate() {
            if let Some(s) = s {
                s.push(lock.channels(i), n);
            }
        }
        if let Some(acc) = &mut delivered {
            mix_stems(&lock, t.n_stems, t.layout, &mut sum, n, &[]);
            acc.push(lock.channels(t.n_stems), &sum, n);
        }
        progress((lock.position() as f64 / expected as f64).min(1.0) / passes);
    }
    let all = 0..t.files.len();
    StatisticsPass {
        decoded: all.clone().map(|i| lock.decoded(i)).collect(),
        errors: all
            .clone()
            .map(|i| lock.error(i).map(str::to_string))
            .collect(),
        invalid: all.map(|i| lock.invalid(i)).collect(),
        stats,
        delivered,
    }
}

/// One report per file, and the findings of how it read.
fn file_reports(
    t: &Title<'_>,
    pass: &StatisticsPass,
    findings: &mut Vec<Finding>,
) -> Vec<FileReport> {
    t.files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let info = &t.infos[i];
            let own_rate = info.as_ref().map_or(t.rate, |i| i.sample_rate);
            findings.extend(checks::stream_findings(
                &f.name,
                info.as_ref().and_then(|i| i.frames),
                pass.decoded[i],
                pass.errors[i].as_deref(),
                own_rate,
            ));
            let (bad, first) = pass.invalid[i];
            findings.extend(checks::invalid_sample_findings(
                &f.name, bad, first, own_rate,
            ));
            FileReport {
                file: f.name.clone(),
                format: info.as_ref().map(|i| FileFormat {
                    container: i.container.clone(),
                    codec: i.codec.clone(),
                    sample_rate: i.sample_rate,
                    channels: i.channels,
                    bits_per_sample: i.bits_per_sample,
                    declared_frames: i.frames,
                }),
                frames: pass.decoded[i],
                peak_dbfs: pass.stats[i]
                    .as_ref()
                    .filter(|s| s.frames() > 0)
                    .map(|s| round(s.peak_dbfs().max(-200.0), 3)),
                time_reference: t.time_refs[i],
                placement: None,
            }
        })
        .collect()
}

/// Lengths, signal, duplicates and ceilings. Returns the files that could
/// not be read whole (their shortness is their own finding).
fn file_findings(
    t: &Title<'_>,
    settings: &PreflightSpec,
    stats: &[Option<StemStats>],
    reports: &[FileReport],
    findings: &mut Vec<Finding>,
) -> Vec<String> {
    let n_stems = t.n_stems;
    let frames: Vec<u64> = reports[..n_stems].iter().map(|r| r.frames).collect();
    let tolerance = (settings.length_tolerance_s * f64::from(t.rate)).round() as u64;
    let rates: Vec<u32> = t.infos[..n_stems]
        .iter()
        .map(|i| i.as_ref().map_or(t.rate, |i| i.sample_rate))
        .collect();
    findings.extend(checks::length_findings(
        &t.names,
        &frames,
        &rates,
        t.ref_name.zip(t.has_ref.then(|| {
            // The reference's length at the stems' rate.
            let r = &reports[n_stems];
            match r.format.as_ref().map(|f| f.sample_rate) {
                Some(own) if own != t.rate && own > 0 => {
                    (r.frames as f64 * f64::from(t.rate) / f64::from(own)).round() as u64
                }
                _ => r.frames,
            }
        })),
        &t.time_refs[..n_stems],
        t.rate,
        tolerance,
    ));
    // A truncated file's shortness is already its own finding.
    let damaged: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f.check.as_str(), "truncated" | "unreadable"))
        .flat_map(|f| f.files.clone())
        .collect();
    findings.retain(|f| !(f.check == "length" && f.files.iter().any(|x| damaged.contains(x))));
    for (f, s) in t.files.iter().zip(stats) {
        if let Some(s) = s {
            findings.extend(checks::signal_findings(&f.name, s, t.rate));
        }
    }
    findings.extend(checks::duplicate_findings(&t.names, &stats[..n_stems]));
    findings.extend(checks::ceiling_findings(&t.names, &stats[..n_stems]));
    damaged
}

/// What the null passes start from.
struct NullInput<'a> {
    delivered: NullAccumulator,
    reference: &'a InputFile,
    stats: &'a [Option<StemStats>],
    /// Files that could not be read whole.
    damaged: &'a [String],
}

/// Passes 2 and 3: place the stems in the reference, null them again with
/// misplaced stems corrected, and judge the null test.
fn null_passes(
    t: &Title<'_>,
    settings: &PreflightSpec,
    input: NullInput<'_>,
    reports: &mut [FileReport],
    findings: &mut Vec<Finding>,
    progress: &dyn Fn(f64),
) -> NullTest {
    let (n_stems, rate, layout) = (t.n_stems, t.rate, t.layout);
    let as_delivered = input.delivered.finish();
    let frames: Vec<u64> = reports[..n_stems].iter().map(|r| r.frames).collect();
    // Never search further than the programme is long.
    let longest = frames.iter().copied().max().unwrap_or(0);
    let max_offset = ((settings.max_offset_s * f64::from(rate)).round() as usize)
        .min(usize::try_from(longest).unwrap_or(usize::MAX));
    let energy: Vec<&[f64]> = input.stats[..n_stems]
        .iter()
        .map(|s| s.as_ref().map_or(&[][..], |s| &s.energy_per_second[..]))
        .collect();
    let starts = align::choose_windows(&energy, rate);
    // One-second cores, or the whole programme if it is shorter.
    let core = (rate as usize)
        .min(usize::try_from(longest).unwrap_or(usize::MAX))
        .max(1);
    let placements = place(&t.files, &starts, core, max_offset, n_stems, layout);
    progress(2.0 / 3.0);
    for (r, p) in reports.iter_mut().zip(&placements) {
        r.placement = p.map(|p| PlacementReport {
            offset_samples: p.offset,
            polarity_inverted: p.inverted,
            gain_db: round((20.0 * p.gain.max(1e-300).log10()).max(-200.0), 3),
            correlation: round(p.correlation, 4),
        });
    }
    findings.extend(checks::placement_findings(
        &t.names,
        &placements,
        rate,
        max_offset as u64,
    ));
    let corrections: Vec<(i64, f64)> = placements
        .iter()
        .map(|p| match p {
            Some(p) if p.correlation >= checks::MIN_CORRELATION => {
                (p.offset, if p.inverted { -1.0 } else { 1.0 })
            }
            _ => (0, 1.0),
        })
        .collect();
    let aligned = corrections
        .iter()
        .any(|&(o, s)| o != 0 || s < 0.0)
        .then(|| {
            realigned_null(
                &t.files,
                n_stems,
                rate,
                layout,
                t.sum_channels,
                &corrections,
            )
        });
    let ceiling = input.stats[n_stems].as_ref().and_then(|s| {
        let n = s.samples_near_peak(checks::CEILING_BAND_DB);
        (n >= checks::CEILING_MIN_SAMPLES).then(|| (s.peak_dbfs(), n))
    });
    let reference = &input.reference.name;
    let verdict = checks::null_findings(
        reference,
        &as_delivered,
        aligned.as_ref(),
        ceiling,
        settings.null_gain_tolerance_db,
        settings.null_min_depth_db,
    );
    // A damaged stem fails the null test by itself: say so instead.
    if input.damaged.is_empty() {
        // Against a limited reference quiet stems correlate poorly: that
        // is the limiter's doing, already reported, not missing stems.
        if verdict.bus_processing {
            findings.retain(|x| x.check != "not_in_reference");
        }
        let absent: Vec<String> = findings
            .iter()
            .filter(|x| x.check == "not_in_reference")
            .flat_map(|x| x.files.clone())
            .collect();
        for mut x in verdict.findings {
            if x.check == "null_test"
                && !verdict.pass
                && !absent.is_empty()
                && !verdict.bus_processing
            {
                x.message = format!(
                    "{}; or rather, '{}' is not in the reference (see above)",
                    x.message,
                    absent.join("', '")
                );
            }
            findings.push(x);
        }
    } else {
        let list = input.damaged.join("', '");
        findings.push(Finding::new(
            Severity::Warning,
            "null_test",
            &[reference],
            format!("the null test is not judged: '{list}' could not be read whole"),
            "fix the damaged file(s) and check again",
        ));
    }
    NullTest {
        pass: verdict.pass,
        gain_tolerance_db: settings.null_gain_tolerance_db,
        min_depth_db: settings.null_min_depth_db,
        as_delivered: rounded(as_delivered),
        aligned: aligned.map(rounded),
    }
}

/// The most common sample rate among the opened stems (ties: the first
/// stem's), 48 kHz if none opened.
fn common_rate(infos: &[Option<StreamInfo>]) -> u32 {
    let rates: Vec<u32> = infos.iter().flatten().map(|i| i.sample_rate).collect();
    crate::source::working_rate(&rates, None)
}

/// Why the stems cannot be summed against the reference, if they cannot.
fn null_blocker(
    name: Option<&str>,
    reference: Option<&StreamInfo>,
    stems: &[Option<StreamInfo>],
    rate: u32,
    layout: Layout,
) -> Option<String> {
    let r = reference?;
    let name = name.unwrap_or("reference");
    // A mono session (mono stems, mono reference) nulls in one channel.
    let mono_session =
        r.channels == 1 && layout.is_stereo() && stems.iter().flatten().all(|i| i.channels == 1);
    if r.channels != layout.channels() && !mono_session {
        return Some(format!(
            "the reference '{name}' has {} channels; the title is {layout} ({} channels)",
            r.channels,
            layout.channels()
        ));
    }
    if r.sample_rate != rate {
        return Some(format!(
            "the reference '{name}' is {} Hz, the stems {rate} Hz",
            r.sample_rate
        ));
    }
    if stems.iter().any(Option::is_none) {
        return Some("a stem could not be read".into());
    }
    if let Some(i) = stems.iter().flatten().find(|i| i.sample_rate != rate) {
        return Some(format!(
            "the stems are not all at one rate ({} Hz)",
            i.sample_rate
        ));
    }
    if let Some(i) = stems.iter().flatten().find(|i| !layout.accepts(i.channels)) {
        return Some(format!(
            "a {}-channel stem cannot be mixed in a {layout} title",
            i.channels
        ));
    }
    None
}

/// Sums the stems (files `0..n_stems` of `lock`) into `sum` in the title's
/// layout, routed as the mix routes them ([`Layout::source_channel`]).
/// `signs[i]` (if given) multiplies stem i.
fn mix_stems(
    lock: &Lockstep,
    n_stems: usize,
    layout: Layout,
    sum: &mut [Vec<f64>],
    n: usize,
    signs: &[f64],
) {
    for ch in sum.iter_mut() {
        ch[..n].fill(0.0);
    }
    for i in 0..n_stems {
        let src = lock.channels(i);
        let sign = signs.get(i).copied().unwrap_or(1.0);
        for (c, dst) in sum.iter_mut().enumerate() {
            let Some(s) = layout.source_channel(src.len(), c).and_then(|k| src.get(k)) else {
                continue;
            };
            let s = &s[..n];
            for (d, &v) in dst[..n].iter_mut().zip(s) {
                *d += sign * v;
            }
        }
    }
}

/// Pass 2: captures the windows and places every stem.
fn place(
    files: &[&InputFile],
    starts: &[u64],
    core: usize,
    max_offset: usize,
    n_stems: usize,
    layout: Layout,
) -> Vec<Option<align::Placement>> {
    let opened = open_all(files, None);
    // Stems as the mix routes them; the reference as it is.
    let routes: Vec<Vec<usize>> = opened
        .infos
        .iter()
        .enumerate()
        .map(|(k, info)| {
            let ch = info.as_ref().map_or(1, |i| i.channels);
            if k < n_stems {
                (0..layout.channels())
                    .filter_map(|c| layout.source_channel(ch, c))
                    .collect()
            } else {
                (0..ch).collect()
            }
        })
        .collect();
    let mut lock = Lockstep::new(opened.readers);
    let mut cap = align::WindowCapture::new(starts, core, max_offset, files.len());
    let last = starts
        .iter()
        .max()
        .map_or(0, |s| s + (core + max_offset) as u64);
    while lock.position() < last {
        let pos = lock.position();
        let n = lock.step();
        if n == 0 {
            break;
        }
        for (k, r) in routes.iter().enumerate() {
            cap.push(k, pos, lock.channels(k), n, r, layout.channels());
        }
    }
    align::place_all(&mut cap, n_stems)
}

/// Pass 3: the null test with each stem shifted and its polarity corrected.
fn realigned_null(
    files: &[&InputFile],
    n_stems: usize,
    rate: u32,
    layout: Layout,
    channels: usize,
    corrections: &[(i64, f64)],
) -> NullFit {
    let opened = open_all(files, None);
    let mut lock = Lockstep::new(opened.readers);
    for (i, &(offset, _)) in corrections.iter().enumerate() {
        lock.shift(i, offset);
    }
    let signs: Vec<f64> = corrections.iter().map(|&(_, s)| s).collect();
    let mut acc = NullAccumulator::new(rate);
    let mut sum = vec![vec![0.0; streams::STEP_FRAMES]; channels];
    loop {
        let n = lock.step();
        if n == 0 {
            break;
        }
        mix_stems(&lock, n_stems, layout, &mut sum, n, &signs);
        acc.push(lock.channels(n_stems), &sum, n);
    }
    acc.finish()
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    // `+ 0.0` turns -0.0 into 0.0, so reports never read "-0.00".
    (x * k).round() / k + 0.0
}

fn rounded(f: NullFit) -> NullFit {
    NullFit {
        gain_db: f.gain_db.map(|g| round(g, 3)),
        // Anything below -200 dB is an exact null (a bit-exact sum).
        residual_db: f.residual_db.map(|r| round(r.max(-200.0), 2)),
        loud_minus_middle_db: f.loud_minus_middle_db.map(|d| round(d, 2)),
        sum_peak_dbfs: round(f.sum_peak_dbfs.max(-200.0), 3),
        reference_peak_dbfs: round(f.reference_peak_dbfs.max(-200.0), 3),
        sum_overs: f.sum_overs,
    }
}
