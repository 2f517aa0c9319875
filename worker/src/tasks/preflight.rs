//! The preflight task: every check on one title's stems and reference, before
//! the analysis decodes them for mastering. It succeeds whatever it finds;
//! the analysis reads its findings and stops the title on errors (unless the
//! spec says `preflight.on_error = "render"`), and the manifest reports them.

use deliverables_spec::TaskKind;
use deliverables_spec::model::PreflightOnError;

use super::{TaskContext, TaskError};
use crate::decode::DecodeError;
use crate::preflight::{InputFile, PreflightInput, PreflightReport, Severity, run};

pub fn preflight(ctx: &TaskContext<'_>, title_name: &str) -> Result<PreflightReport, TaskError> {
    let spec = ctx.spec;
    let title = spec
        .title(title_name)
        .ok_or_else(|| TaskError::Internal(format!("title `{title_name}` is not in the spec")))?;
    let file = |f: &String| InputFile {
        name: f.clone(),
        path: spec.path(f),
    };
    let input = PreflightInput {
        title: title.name.clone(),
        // Click and guide are in no mix (live outputs only): the reference
        // does not contain them, so they stay out of the null test.
        stems: title
            .stems
            .iter()
            .filter(|s| !s.role.is_live_only())
            .map(|s| file(&s.file))
            .collect(),
        reference: title.reference.as_ref().map(file),
        delivery_rate: spec.delivery().sample_rate,
        layout: title.layout,
    };
    // A file that was there at submission and cannot be reached now is an
    // I/O failure a retry may fix (a share remounting), not a finding.
    for f in input.stems.iter().chain(&input.reference) {
        std::fs::metadata(&f.path).map_err(|source| DecodeError::Open {
            path: f.path.clone(),
            source,
        })?;
    }
    ctx.check_cancel()?;
    let settings = serde_json::json!({
        "preflight": spec.spec.preflight,
        "rate": spec.delivery().sample_rate,
    });
    super::reuse::title_result(
        ctx,
        crate::cache::EntryKind::Preflight,
        title,
        settings,
        || {
            let report = run(&input, &spec.spec.preflight, ctx.progress);
            tracing::info!(
                title = %title.name,
                errors = report.errors(),
                warnings = report.warnings(),
                "preflight done"
            );
            Ok(report)
        },
    )
}

/// The analysis's gate: the title's preflight report from the dependencies,
/// and an error if it found errors and the spec does not override them.
/// Returns notes for the manifest.
pub fn gate(ctx: &TaskContext<'_>, title: &str) -> Result<Vec<String>, TaskError> {
    let Some(dep) = ctx
        .deps
        .values()
        .find(|d| matches!(&d.kind, TaskKind::Preflight { title: t } if t == title))
    else {
        // Plans from before preflight existed, or a run without it.
        return Ok(vec![]);
    };
    let report: PreflightReport = serde_json::from_value(dep.result.clone()).map_err(|e| {
        TaskError::Internal(format!("preflight result of `{title}` is unreadable: {e}"))
    })?;
    let errors: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.message.as_str())
        .collect();
    if errors.is_empty() {
        return Ok(vec![]);
    }
    match ctx.spec.spec.preflight.on_error {
        PreflightOnError::Stop => Err(TaskError::Preflight(format!(
            "preflight found {} error(s) in title `{title}`: {}; fix the stems (see the report) or set preflight.on_error = \"render\" to render anyway",
            errors.len(),
            errors.join("; ")
        ))),
        PreflightOnError::Render => Ok(vec![format!(
            "rendered despite {} preflight error(s) (preflight.on_error = \"render\")",
            errors.len()
        )]),
    }
}
