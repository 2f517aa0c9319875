//! Task execution: what a worker does with a leased task. No gRPC here: the
//! service module calls [`execute`] with the task and its dependencies' results.

pub mod analyze;
pub mod effective;
pub mod manifest;
pub mod metadata;
pub mod preflight;
pub mod render;
pub mod stream;
pub mod trim;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use deliverables_spec::{LoadedSpec, TaskKind};
use serde::Serialize;

use crate::decode::DecodeError;
use crate::meter::MeterError;
use crate::output::OutputError;
use crate::source::SourceError;

/// Everything a task needs besides its kind.
pub struct TaskContext<'a> {
    pub spec: &'a LoadedSpec,
    pub job_id: &'a str,
    /// Where outputs go (absolute).
    pub output_dir: PathBuf,
    /// Results of the dependencies, by task id.
    pub deps: &'a BTreeMap<String, DepOutcome>,
    /// Every task's outcome, a page at a time (the manifest task's input).
    pub outcomes: Option<&'a dyn manifest::OutcomePages>,
    /// Job submission time, Unix ms.
    pub submitted_unix_ms: i64,
    /// BWF origination time, Unix seconds (decided at submission).
    pub origination_unix_s: i64,
    pub cancel: &'a AtomicBool,
    pub progress: &'a (dyn Fn(f64) + Sync),
}

impl TaskContext<'_> {
    pub fn check_cancel(&self) -> Result<(), TaskError> {
        if self.cancel.load(Ordering::Relaxed) {
            Err(TaskError::Cancelled)
        } else {
            Ok(())
        }
    }
}

pub use deliverables_spec::contract::DepOutcome;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Meter(#[from] MeterError),
    /// Preflight found errors in the title's stems.
    #[error("{0}")]
    Preflight(String),
    /// The input cannot give a usable deliverable (e.g. a silent full mix).
    #[error("{0}")]
    Input(String),
    /// The task record or its dependencies are not what this worker expects.
    #[error("{0}")]
    Internal(String),
    #[error("cancelled")]
    Cancelled,
}

impl From<crate::dialogue::DialogueError> for TaskError {
    fn from(e: crate::dialogue::DialogueError) -> Self {
        match e {
            crate::dialogue::DialogueError::Source(s) => TaskError::Source(s),
            crate::dialogue::DialogueError::Meter(m) => TaskError::Meter(m),
        }
    }
}

impl From<crate::measure_file::MeasureError> for TaskError {
    fn from(e: crate::measure_file::MeasureError) -> Self {
        match e {
            crate::measure_file::MeasureError::Decode(d) => TaskError::Decode(d),
            crate::measure_file::MeasureError::Meter(m) => TaskError::Meter(m),
            crate::measure_file::MeasureError::Dialogue(d) => d.into(),
            e @ crate::measure_file::MeasureError::InvalidSamples { .. } => {
                TaskError::Input(e.to_string())
            }
        }
    }
}

impl TaskError {
    /// Whether running the task again could succeed (I/O hiccups: yes; bad input: no).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TaskError::Output(OutputError::Io { .. })
                | TaskError::Decode(DecodeError::Open { .. } | DecodeError::Io { .. })
                | TaskError::Source(SourceError::Decode(
                    DecodeError::Open { .. } | DecodeError::Io { .. }
                ))
                | TaskError::Internal(_)
        )
    }
}

/// Runs a task; returns its result document.
pub fn execute(kind: &TaskKind, ctx: &TaskContext<'_>) -> Result<serde_json::Value, TaskError> {
    match kind {
        TaskKind::Preflight { title } => to_json(preflight::preflight(ctx, title)),
        TaskKind::Analyze { title, rate } => to_json(analyze::analyze(ctx, title, *rate)),
        TaskKind::Render {
            title,
            variant,
            rate,
        } => to_json(render::render(ctx, title, variant, *rate)),
        TaskKind::Manifest => to_json(manifest::write_manifest(ctx)),
    }
}

fn to_json<T: Serialize>(v: Result<T, TaskError>) -> Result<serde_json::Value, TaskError> {
    v.and_then(|r| serde_json::to_value(r).map_err(|e| TaskError::Internal(e.to_string())))
}
