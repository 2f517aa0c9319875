//! `stemforge check SPEC|DIR`: preflight only, no rendering.
//!
//! With a spec, every title is checked as `render` would check it (paths
//! confined to the media roots). With a folder, as stems arrive and before
//! anyone writes a spec: each audio file's role is inferred from its name,
//! the reference mix is the file named like one (`mix`, `ref`, `master`,
//! `print`), and the folder is one title.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use deliverables_spec::catalog::{AUDIO_EXTENSIONS, is_audio_name};
use deliverables_spec::files::MediaRoots;
use deliverables_spec::ingest::{NameKind, classify};
use deliverables_spec::model::{PreflightSpec, Role};
use deliverables_spec::preflight::{Finding, PreflightReport, Severity};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use stemforge_worker::preflight::{InputFile, PreflightInput, run};

#[derive(Debug, Serialize)]
pub struct CheckReport {
    /// The spec or folder checked.
    pub source: String,
    pub titles: Vec<TitleCheck>,
    pub errors: usize,
    pub warnings: usize,
}

#[derive(Debug, Serialize)]
pub struct TitleCheck {
    /// Roles as written in the spec, or as inferred from file names.
    pub roles: Vec<(String, Role)>,
    #[serde(flatten)]
    pub preflight: PreflightReport,
}

/// Checks a spec file or a folder of stems.
pub fn check(path: &Path, media_roots: &[PathBuf]) -> anyhow::Result<CheckReport> {
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read '{}': {e}", path.display()))?;
    let titles = if meta.is_dir() {
        // A folder of folders of stems (as `render DIR` takes it): each
        // sub-folder is a title, but the pack `render DIR` wrote there.
        let (audio, mut subdirs) = crate::catalog_dir::entries(path)?;
        subdirs.retain(|d| !d.join(crate::catalog_dir::SPEC_NAME).exists());
        if audio.is_empty() && !subdirs.is_empty() {
            subdirs
                .iter()
                .map(|d| check_dir(d))
                .collect::<anyhow::Result<_>>()?
        } else {
            vec![check_dir(path)?]
        }
    } else {
        check_spec(path, media_roots)?
    };
    let errors = titles.iter().map(|t| t.preflight.errors()).sum();
    let warnings = titles.iter().map(|t| t.preflight.warnings()).sum();
    Ok(CheckReport {
        source: path.display().to_string(),
        titles,
        errors,
        warnings,
    })
}

fn check_spec(path: &Path, media_roots: &[PathBuf]) -> anyhow::Result<Vec<TitleCheck>> {
    let loaded = deliverables_spec::load_file(path)?;
    let roots = MediaRoots::new(media_roots);
    let mut out = Vec::new();
    for title in &loaded.spec.titles {
        let mut refused = Vec::new();
        let mut confined = |name: &String| match roots.confine(&loaded.path(name)) {
            Ok(p) => Some(InputFile {
                name: name.clone(),
                path: p,
            }),
            Err(why) => {
                refused.push(Finding::new(
                    Severity::Error,
                    "path",
                    &[name],
                    format!("'{name}' is not allowed: {why}"),
                    "move the file under a media root, or add its folder to media_roots (config file or STEMFORGE_MEDIA_ROOTS)",
                ));
                None
            }
        };
        let stems: Vec<InputFile> = title
            .stems
            .iter()
            .filter_map(|s| confined(&s.file))
            .collect();
        let mut reference = title.reference.as_ref().and_then(&mut confined);
        // Without every stem the null test would only measure the gap.
        if refused
            .iter()
            .any(|f| f.files.first() != title.reference.as_ref())
        {
            reference = None;
        }
        let input = PreflightInput {
            title: title.name.clone(),
            stems,
            reference,
            delivery_rate: loaded.delivery().sample_rate,
            layout: title.layout,
        };
        let mut report = run_with_progress(&input, &loaded.spec.preflight);
        report.findings.splice(0..0, refused);
        report.findings.extend(not_versions(&loaded.spec, title));
        report.findings.sort_by_key(|f| f.severity);
        out.push(TitleCheck {
            roles: title
                .stems
                .iter()
                .map(|s| (s.file.clone(), s.role))
                .collect(),
            preflight: report,
        });
    }
    Ok(out)
}

/// A warning for each variant that is not a version of the title: its
/// output would equal another's, or its level change reaches no stem.
fn not_versions(
    spec: &deliverables_spec::Spec,
    title: &deliverables_spec::model::Title,
) -> Vec<Finding> {
    let all = deliverables_spec::variant::variants(spec);
    let tv = deliverables_spec::plan::title_variants(spec, title, &all);
    let skipped = tv.skipped.iter().filter_map(|s| {
        s.same_as
            .as_ref()
            .map(|u| (s.variant.clone(), u.clone(), s.reason.clone(), true))
    });
    let written = tv
        .duplicates
        .iter()
        .map(|(v, s)| (v.clone(), s.variant.clone(), s.reason.clone(), false));
    skipped
        .chain(written)
        .map(|(v, u, reason, skip)| {
            Finding::new(
                Severity::Warning,
                "variant_not_a_version",
                &[],
                if skip {
                    format!("variant `{v}` is skipped (same as `{u}`), {reason}")
                } else {
                    format!("variant `{v}` is written as asked but is the same as `{u}`: {reason}")
                },
                format!("make `{v}` act on a role this title has, or leave it out of the spec"),
            )
        })
        .collect()
}

fn check_dir(dir: &Path) -> anyhow::Result<TitleCheck> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot list '{}': {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .filter(|n| is_audio_name(n))
        .collect();
    names.sort();
    if names.is_empty() {
        anyhow::bail!(
            "'{}' holds no audio files ({})",
            dir.display(),
            AUDIO_EXTENSIONS.join(", ")
        );
    }
    // The catalog's rules (`deliverables_spec::ingest::classify`); what a
    // catalog refuses, a check reports as a warning and carries on.
    let (refs, stems): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| classify(n) == NameKind::Reference);
    let mut notes = Vec::new();
    if refs.len() > 1 {
        notes.push(Finding::new(
            Severity::Warning,
            "reference",
            &refs.iter().map(String::as_str).collect::<Vec<_>>(),
            format!(
                "{} files are named like a reference mix; '{}' is used",
                refs.len(),
                refs[0]
            ),
            "keep one reference mix in the folder (the pre-bus-processing print)",
        ));
    }
    let roles: Vec<(String, Role)> = stems
        .iter()
        .map(|n| match classify(n) {
            NameKind::Stem(r) | NameKind::Both(r) => (n.clone(), r),
            NameKind::Reference | NameKind::Unknown => (n.clone(), Role::Other),
        })
        .collect();
    for n in &stems {
        if let NameKind::Both(r) = classify(n) {
            notes.push(Finding::new(
                Severity::Warning,
                "role_ambiguous",
                &[n],
                format!("'{n}': named like both a `{r}` stem and a reference mix; checked as a `{r}` stem"),
                "rename it, or give its role in the spec (a catalog refuses it until told)",
            ));
        }
        if classify(n) == NameKind::Unknown {
            notes.push(Finding::new(
                Severity::Warning,
                "role_unknown",
                &[n],
                format!("'{n}': no role recognised in the name; treated as `other`"),
                "name it after its content (Drums, Bass, Keys, Gtr, Vox, BGV, DX, FX…) or set its role in the spec",
            ));
        }
    }
    let file = |n: &String| InputFile {
        name: n.clone(),
        path: dir.join(n),
    };
    let title = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let stems: Vec<InputFile> = stems.iter().map(file).collect();
    let reference = refs.first().map(file);
    let layout = stemforge_worker::preflight::infer_layout(stems.iter().chain(&reference));
    let input = PreflightInput {
        title,
        stems,
        reference,
        delivery_rate: None,
        layout,
    };
    let mut report = run_with_progress(&input, &PreflightSpec::default());
    report.findings.extend(notes);
    report.findings.sort_by_key(|f| f.severity);
    Ok(TitleCheck {
        roles,
        preflight: report,
    })
}

fn run_with_progress(input: &PreflightInput, settings: &PreflightSpec) -> PreflightReport {
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(1000);
        if let Ok(style) = ProgressStyle::with_template("{msg:30!} [{bar:40}] {percent:>3}%") {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(format!("preflight {}", input.title));
        b
    });
    let progress = |x: f64| {
        if let Some(b) = &bar {
            b.set_position((x * 1000.0) as u64);
        }
    };
    let report = run(input, settings, &progress);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    tracing::info!(
        title = %input.title,
        errors = report.errors(),
        warnings = report.warnings(),
        "preflight done"
    );
    report
}

/// The readable report: per title, a table of files, the null test, then
/// the findings with their fixes.
pub fn text(r: &CheckReport) -> String {
    let mut s = String::new();
    for t in &r.titles {
        let p = &t.preflight;
        let _ = writeln!(
            s,
            "{} — {} stems at {} Hz{}",
            p.title,
            p.stems.len(),
            p.sample_rate,
            p.reference
                .as_ref()
                .map_or(", no reference mix".to_string(), |f| format!(
                    ", reference '{}'",
                    f.file
                ))
        );
        let _ = writeln!(
            s,
            "  {:<32} {:<15} {:<24} {:>10} {:>9} {:>8} {:>4} {:>7}",
            "FILE", "ROLE", "FORMAT", "LENGTH", "PEAK", "OFFSET", "POL", "GAIN"
        );
        let rows = p.stems.iter().map(Some).chain([p.reference.as_ref()]);
        for f in rows.flatten() {
            let role = t
                .roles
                .iter()
                .find(|(n, _)| *n == f.file)
                .map_or("reference".to_string(), |(_, r)| r.as_str().to_string());
            let format = f.format.as_ref().map_or("unreadable".to_string(), |x| {
                format!(
                    "{} {}ch {}/{}",
                    x.codec,
                    x.channels,
                    x.sample_rate,
                    x.bits_per_sample.map_or("?".into(), |b| b.to_string())
                )
            });
            let rate = f.format.as_ref().map_or(p.sample_rate, |x| x.sample_rate);
            let length = f.frames as f64 / f64::from(rate.max(1));
            // A stem not found in the reference has no meaningful place.
            let found = f
                .placement
                .as_ref()
                .filter(|x| x.correlation >= stemforge_worker::preflight::align::MIN_CORRELATION);
            let (offset, pol, gain) =
                found.map_or(("-".to_string(), "-".to_string(), "-".to_string()), |x| {
                    (
                        x.offset_samples.to_string(),
                        if x.polarity_inverted { "-" } else { "+" }.to_string(),
                        format!("{:+.2}", x.gain_db),
                    )
                });
            let _ = writeln!(
                s,
                "  {:<32} {:<15} {:<24} {:>9.3}s {:>9} {:>8} {:>4} {:>7}",
                clip(&f.file, 32),
                role,
                clip(&format, 24),
                length,
                f.peak_dbfs.map_or("-".into(), |v| format!("{v:.2}")),
                offset,
                pol,
                gain
            );
        }
        if let Some(n) = &p.null_test {
            let fit = n.aligned.as_ref().unwrap_or(&n.as_delivered);
            let _ = writeln!(
                s,
                "  null test: {} — best-fit gain {} dB, residual {} dB (limits ±{} dB, -{} dB){}",
                if n.pass { "PASS" } else { "FAIL" },
                fit.gain_db.map_or("n/a".into(), |g| format!("{g:+.3}")),
                fit.residual_db.map_or("n/a".into(), |r| format!("{r:.1}")),
                n.gain_tolerance_db,
                n.min_depth_db,
                if n.aligned.is_some() {
                    ", after correcting offsets/polarity"
                } else {
                    ""
                }
            );
        }
        for f in &p.findings {
            let _ = writeln!(
                s,
                "  {:<7} {:<16} {}\n  {:<7} {:<16} fix: {}",
                f.severity.as_str().to_uppercase(),
                f.check,
                f.message,
                "",
                "",
                f.fix
            );
        }
        let _ = writeln!(
            s,
            "  {} error(s), {} warning(s)\n",
            p.errors(),
            p.warnings()
        );
    }
    let _ = writeln!(
        s,
        "{}: {} error(s), {} warning(s){}",
        r.source,
        r.errors,
        r.warnings,
        if r.errors > 0 {
            " — titles with errors will not render (preflight.on_error = \"render\" overrides)"
        } else {
            ""
        }
    );
    s
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let head: String = s.chars().take(n - 1).collect();
        format!("{head}…")
    }
}
