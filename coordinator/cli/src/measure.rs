//! `stemforge measure`: the manifest's loudness figures for any files, with
//! a verdict against a delivery profile when one is named.

use std::fmt::Write as _;
use std::path::PathBuf;

use deliverables_spec::LevelPolicy;
use deliverables_spec::compliance::{CheckOutcome, Outcome, Verdict, judge};
use deliverables_spec::delivery::{Delivery, PROFILES, profile};
use deliverables_spec::model::DeliverySpec;
use serde::Serialize;
use stemforge_worker::measure_file::{
    FileMeasurement, OverSearch, dialogue_from_stem, measure_file,
};

pub struct MeasureOptions {
    pub files: Vec<PathBuf>,
    pub profile: Option<String>,
    /// A dialogue stem aligned with the files: also measure dialogue-gated loudness.
    pub dialogue: Option<PathBuf>,
    /// Timecode frame rate for the overs (with a profile).
    pub frame_rate: f64,
}

#[derive(Debug, Serialize)]
pub struct MeasureReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    pub files: Vec<FileEntry>,
    /// Every file read, and (with a profile) passed.
    pub all_pass: bool,
}

#[derive(Debug, Serialize)]
pub struct FileEntry {
    pub path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none", flatten)]
    pub file: Option<FileMeasurement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Measures every file; unreadable ones get an error entry and the rest go on.
pub fn measure(opts: &MeasureOptions) -> anyhow::Result<MeasureReport> {
    let delivery = match &opts.profile {
        Some(name) if profile(name).is_none() => {
            let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
            anyhow::bail!(
                "unknown profile `{name}`; choose one of: {}",
                names.join(", ")
            );
        }
        Some(name) => Some(Delivery::resolve(&DeliverySpec {
            profile: Some(name.clone()),
            ..Default::default()
        })),
        None => None,
    };
    let gate = delivery
        .clone()
        .unwrap_or_else(|| Delivery::resolve(&DeliverySpec::default()))
        .dialogue;
    let dialogue = match &opts.dialogue {
        Some(stem) => Some(
            dialogue_from_stem(stem, &gate)
                .map_err(|e| anyhow::anyhow!("--dialogue {}: {e}", stem.display()))?,
        ),
        None => None,
    };
    let mut all_pass = true;
    let files = opts
        .files
        .iter()
        .map(|path| {
            match measure_file(
                path,
                dialogue.as_ref(),
                OverSearch {
                    frame_rate: opts.frame_rate,
                    ceiling_dbtp: delivery.as_ref().map(|d| d.true_peak_max_dbtp),
                },
            ) {
                Ok(f) => {
                    let verdict = delivery
                        .as_ref()
                        .map(|d| judge(LevelPolicy::Normalized, d, &f.measurement));
                    all_pass &= verdict.as_ref().is_none_or(|v| v.verdict == Outcome::Pass);
                    FileEntry {
                        path: path.clone(),
                        file: Some(f),
                        verdict,
                        error: None,
                    }
                }
                Err(e) => {
                    all_pass = false;
                    FileEntry {
                        path: path.clone(),
                        file: None,
                        verdict: None,
                        error: Some(e.to_string()),
                    }
                }
            }
        })
        .collect();
    Ok(MeasureReport {
        delivery,
        files,
        all_pass,
    })
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{v:.decimals$}"))
}

/// The report for a terminal.
pub fn text(r: &MeasureReport) -> String {
    let mut s = String::new();
    if let Some(d) = &r.delivery {
        let _ = writeln!(s, "profile {}: {}", d.profile, d.profile_source);
    }
    for f in &r.files {
        let Some(fm) = &f.file else {
            let _ = writeln!(
                s,
                "{}\n  error: {}",
                f.path.display(),
                f.error.as_deref().unwrap_or("?")
            );
            continue;
        };
        let m = &fm.measurement;
        let _ = writeln!(
            s,
            "{}\n  {} {}, {} Hz, {}, {:.2} s",
            f.path.display(),
            fm.container,
            fm.codec,
            fm.sample_rate,
            fm.layout,
            fm.duration_s
        );
        let check = |name: &str| {
            f.verdict.as_ref().and_then(|v| {
                v.checks
                    .iter()
                    .find(|c| c.name == name && c.outcome != CheckOutcome::Reported)
                    .map(|c| {
                        let o = if c.outcome == CheckOutcome::Pass {
                            "pass"
                        } else {
                            "FAIL"
                        };
                        format!("  [{}]  {o}", c.limit)
                    })
            })
        };
        let mut line = |label: &str, v: String, unit: &str, name: &str| {
            let _ = writeln!(
                s,
                "  {label:<16}{v:>8} {unit:<5}{}",
                check(name).unwrap_or_default()
            );
        };
        line(
            "integrated",
            num(m.integrated_lufs, 2),
            "LUFS",
            "integrated",
        );
        if let Some(dl) = &m.dialogue {
            line(
                "dialogue-gated",
                num(dl.integrated_lufs, 2),
                "LUFS",
                "dialogue_integrated",
            );
            line(
                "dialogue share",
                format!("{:.1}", dl.share * 100.0),
                "%",
                "",
            );
        }
        line(
            "loudness range",
            num(m.loudness_range_lu, 2),
            "LU",
            "loudness_range",
        );
        line("true peak", num(m.true_peak_dbtp, 2), "dBTP", "true_peak");
        line("sample peak", num(m.sample_peak_dbfs, 2), "dBFS", "");
        line(
            "max momentary",
            num(m.max_momentary_lufs, 2),
            "LUFS",
            "max_momentary",
        );
        line(
            "max short-term",
            num(m.max_short_term_lufs, 2),
            "LUFS",
            "max_short_term",
        );
        if m.overs_total > 0 {
            let _ = writeln!(
                s,
                "  overs of {} dBTP: {} (timecode at {} fps from the file's timeline position)",
                num(m.overs_ceiling_dbtp, 1),
                m.overs_total,
                m.frame_rate.unwrap_or(24.0)
            );
            for o in m.overs.iter().take(10) {
                let _ = writeln!(
                    s,
                    "    {}  {:.3}-{:.3} s  peak {:+.2} dBTP",
                    o.timecode, o.start_s, o.end_s, o.peak_dbtp
                );
            }
            if m.overs_total > 10 {
                let _ = writeln!(s, "    … {} more (see --json)", m.overs_total - 10);
            }
        }
        for n in &m.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        if let Some(dl) = &m.dialogue {
            let _ = writeln!(s, "  dialogue: {}", dl.method);
        }
        if let Some(v) = &f.verdict {
            let _ = writeln!(
                s,
                "  verdict: {}",
                if v.verdict == Outcome::Pass {
                    "PASS"
                } else {
                    "FAIL"
                }
            );
            if let Some(b) = &v.loudness_basis {
                let _ = writeln!(s, "  loudness basis: {b}");
            }
            for reason in &v.reasons {
                let _ = writeln!(s, "  - {reason}");
            }
        }
    }
    s
}
