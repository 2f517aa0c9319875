//! The manifest task: judge every output against the delivery and write
//! `manifest.json`, `manifest.csv` and `report.html` (each atomically) into
//! the output folder.

use std::collections::BTreeMap;
use std::io::Write;

use deliverables_spec::TaskKind;
use deliverables_spec::compliance::{Outcome, Rule, Verdict, judge_against};
use deliverables_spec::contract::{RenderedOutput, TaskState};
use deliverables_spec::delivery::Delivery;
use deliverables_spec::manifest::{
    MANIFEST_VERSION, Manifest, OutputEntry, Summary, TitleEntry, Tool,
};
use deliverables_spec::model::Title;
use deliverables_spec::plan::title_variants;
use deliverables_spec::variant::variants;
use deliverables_spec::variant::{SameAs, Variant};

use super::analyze::AnalysisResult;
use super::render::RenderResult;
use super::{DepOutcome, TaskContext, TaskError};

pub const MANIFEST_FILE: &str = "manifest.json";

pub use deliverables_spec::contract::ManifestResult;

pub fn write_manifest(ctx: &TaskContext<'_>) -> Result<ManifestResult, TaskError> {
    let spec = &ctx.spec.spec;
    let d = ctx.spec.delivery();
    let all = variants(spec);
    let mut titles = Vec::new();
    let mut summary = Summary::default();
    for title in &spec.titles {
        let entry = title_entry(ctx, d, &all, title);
        if let Some(p) = &entry.preflight {
            summary.preflight_errors += p.errors();
            summary.preflight_warnings += p.warnings();
        }
        if entry.status == "failed" {
            summary.titles_failed += 1;
        }
        for out in &entry.outputs {
            summary.outputs += 1;
            match out.verdict.verdict {
                Outcome::Pass => summary.passed += 1,
                Outcome::Fail => summary.failed += 1,
            }
        }
        titles.push(entry);
    }
    summary.titles = titles.len();
    summary.all_pass = summary.failed == 0 && summary.titles_failed == 0;
    let manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        tool: Tool {
            name: "stemforge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        job_id: ctx.job_id.to_string(),
        spec_sha256: ctx.spec.sha256.clone(),
        submitted: deliverables_spec::timestamp::rfc3339_utc(ctx.submitted_unix_ms),
        delivery: d.clone(),
        summary: summary.clone(),
        titles,
    };
    // The report and the CSV first: manifest.json appearing means the job's
    // paperwork is complete.
    write_atomically(
        &ctx.output_dir.join(crate::report::CSV_FILE),
        crate::report::manifest_csv(&manifest).as_bytes(),
    )?;
    write_atomically(
        &ctx.output_dir.join(crate::report::REPORT_FILE),
        crate::report::report_html(&manifest).as_bytes(),
    )?;
    let path = ctx.output_dir.join(MANIFEST_FILE);
    let mut text =
        serde_json::to_vec_pretty(&manifest).map_err(|e| TaskError::Internal(e.to_string()))?;
    text.push(b'\n');
    write_atomically(&path, &text)?;
    Ok(ManifestResult {
        manifest_path: path.display().to_string(),
        summary,
    })
}

/// One title's entry: its preflight, its analysis (or why there is none)
/// and an entry per output of every render, judged.
fn title_entry(ctx: &TaskContext<'_>, d: &Delivery, all: &[Variant], title: &Title) -> TitleEntry {
    let spec = &ctx.spec.spec;
    // With several packs (`delivery.sample_rates`), the first listed is the
    // title's `level`; the others' notes follow, marked with their rate.
    let first_pack = d.packs()[0].filter(|_| !d.sample_rates.is_empty());
    let analysis_at = |rate: Option<u32>| {
        ctx.deps.values().find(|o| {
            matches!(&o.kind, TaskKind::Analyze { title: t, rate: r } if *t == title.name && *r == rate)
        })
    };
    let preflight_of = || {
        ctx.deps
            .values()
            .find(|o| matches!(&o.kind, TaskKind::Preflight { title: t } if *t == title.name))
    };
    let planned = title_variants(spec, title, all);
    let mut entry = TitleEntry {
        name: title.name.clone(),
        status: "rendered".into(),
        layout: title.layout,
        error: None,
        inputs: vec![],
        level: None,
        outputs: vec![],
        skipped: planned.skipped.clone(),
        notes: vec![],
        preflight: preflight_of().and_then(DepOutcome::result_as),
    };
    let a: Option<AnalysisResult> = match analysis_at(first_pack) {
        Some(o) if o.state == TaskState::Succeeded => o.result_as(),
        Some(o) => {
            entry.status = "failed".into();
            // A skipped analysis: say why its preflight did not succeed.
            let preflight = preflight_of().filter(|p| p.state != TaskState::Succeeded);
            entry.error = Some(match preflight {
                Some(p) if o.state == TaskState::Skipped => {
                    format!("preflight {}: {}", p.state, p.error)
                }
                _ => format!("analysis {}: {}", o.state, o.error),
            });
            None
        }
        None => {
            entry.status = "failed".into();
            entry.error = Some("analysis did not run".into());
            None
        }
    };
    if let Some(a) = &a {
        entry.inputs = a.inputs.clone();
        entry.level = Some(a.level.clone());
        entry.notes = a.notes.clone();
    }
    for rate in d.packs().into_iter().skip(1).flatten() {
        match analysis_at(Some(rate)).and_then(|o| o.result_as::<AnalysisResult>()) {
            Some(o) => entry
                .notes
                .extend(o.notes.iter().map(|n| format!("{rate} Hz pack: {n}"))),
            None => entry
                .notes
                .push(format!("{rate} Hz pack: the analysis did not succeed")),
        }
    }
    // Render results per pack, in variant order.
    let pack_of = |k: &TaskKind| match k {
        TaskKind::Render { rate, .. } => *rate,
        _ => None,
    };
    let mut renders: Vec<&DepOutcome> = ctx
        .deps
        .values()
        .filter(|o| matches!(&o.kind, TaskKind::Render { title: t, .. } if *t == title.name))
        .collect();
    renders.sort_by_key(|o| (pack_of(&o.kind), o.kind.label()));
    // The full mix's loudness at each output rate, for the offsets.
    let full_by_rate: BTreeMap<u32, f64> = renders
        .iter()
        .filter_map(|o| o.result_as::<RenderResult>())
        .filter(|r| r.variant == "full")
        .filter_map(|r| {
            let x = r.outputs.first()?;
            Some((x.file.sample_rate, x.measurement.integrated_lufs?))
        })
        .collect();
    let fallback_full = a.as_ref().and_then(|a| a.full_mix_lufs);
    for o in renders {
        let TaskKind::Render { variant, .. } = &o.kind else {
            continue;
        };
        let v = all.iter().find(|x| &x.name == variant);
        let description = v.map(|v| v.description.clone()).unwrap_or_default();
        let same_as = planned.duplicates.get(variant);
        match o.result_as::<RenderResult>() {
            Some(r) => {
                for out in r.outputs {
                    let full_lufs = full_by_rate
                        .get(&out.file.sample_rate)
                        .copied()
                        .or(fallback_full);
                    entry.outputs.push(output_entry(
                        d,
                        out,
                        &description,
                        full_lufs,
                        same_as.cloned(),
                    ));
                }
            }
            None => entry.outputs.push(missing_output(
                d,
                variant,
                description,
                v.map_or(deliverables_spec::LevelPolicy::Matched, |v| v.level),
                o,
                same_as.cloned(),
            )),
        }
    }
    entry
}

/// A rendered file's entry: what was measured, judged by its rule.
fn output_entry(
    d: &Delivery,
    out: RenderedOutput,
    description: &str,
    full_lufs: Option<f64>,
    same_as: Option<SameAs>,
) -> OutputEntry {
    let target = d.loudness_target(out.measurement.dialogue.as_ref().map(|x| x.share));
    let rule = Rule::of(out.level_policy, out.remix);
    let verdict = judge_against(rule, d, &target, &out.measurement);
    let effective_change_db = match out.level_changes.as_slice() {
        [one] => one.effective_change_db,
        _ => None,
    };
    OutputEntry {
        variant: out.variant,
        description: description.to_string(),
        role: out.role,
        file: Some(out.file),
        level_policy: out.level_policy,
        gain_db: Some(out.gain_db),
        ceiling_trim_db: Some(out.ceiling_trim_db),
        fold_down_gain_db: out.fold_down_gain_db,
        mode: out.mode,
        target_lufs: target.target_lufs,
        tolerance_lu: target.tolerance_lu,
        true_peak_max_dbtp: d.true_peak_max_dbtp,
        offset_from_full_lu: out
            .measurement
            .integrated_lufs
            .zip(full_lufs)
            .map(|(x, f)| ((x - f) * 1000.0).round() / 1000.0),
        measurement: Some(out.measurement),
        stems_trim_db: out.stems_trim_db,
        remix: out.remix,
        effective_change_db,
        level_changes: out.level_changes,
        same_as,
        verdict,
    }
}

/// The entry of a render that did not succeed: failed, with its reason.
fn missing_output(
    d: &Delivery,
    variant: &str,
    description: String,
    policy: deliverables_spec::LevelPolicy,
    o: &DepOutcome,
    same_as: Option<SameAs>,
) -> OutputEntry {
    OutputEntry {
        variant: variant.to_string(),
        description,
        role: None,
        file: None,
        level_policy: policy,
        gain_db: None,
        ceiling_trim_db: None,
        fold_down_gain_db: None,
        mode: deliverables_spec::contract::RenderMode::Mix,
        target_lufs: d.target_lufs,
        tolerance_lu: d.tolerance_lu,
        true_peak_max_dbtp: d.true_peak_max_dbtp,
        measurement: None,
        offset_from_full_lu: None,
        stems_trim_db: None,
        remix: false,
        effective_change_db: None,
        level_changes: Vec::new(),
        same_as,
        verdict: Verdict::failed(
            "the output must be rendered",
            format!(
                "render {}: {}",
                o.state,
                if o.error.is_empty() {
                    "see the analysis error"
                } else {
                    &o.error
                }
            ),
        ),
    }
}

/// Writes a small file: temporary name, fsync, rename. On any error after
/// the temporary file exists (write, fsync, rename) it is removed
/// ([`crate::output::TempFile`] drops it unless the rename succeeded). Errors keep their
/// `io::Error`, so its class decides the retry.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), TaskError> {
    let io = |source: std::io::Error| {
        TaskError::Output(crate::output::OutputError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    use crate::output::TempFile;
    let (tmp, mut f) = TempFile::create(TempFile::name_for(path)).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    tmp.persist(path).map_err(io)
}
