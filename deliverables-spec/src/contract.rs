//! The task contract between the coordinator and its workers: what a task
//! is in ([`TaskState`]), how each attempt ended ([`HistoryEntry`]), what a
//! leased task receives of its dependencies ([`DepOutcome`]) and the results
//! the coordinator itself reads ([`RenderResult`], [`ManifestResult`]). Both
//! sides depend on these types; neither reads the other's JSON by hand.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::compliance::Measurement;
use crate::manifest::{FileRecord, LevelChange, Summary};
use crate::model::{LevelPolicy, Role};
use crate::plan::TaskKind;

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for dependencies.
    Blocked,
    Queued,
    Leased,
    Succeeded,
    Failed,
    /// Not run: a dependency failed.
    Skipped,
    Cancelled,
}

impl TaskState {
    pub const ALL: [TaskState; 7] = [
        TaskState::Blocked,
        TaskState::Queued,
        TaskState::Leased,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Skipped,
        TaskState::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Skipped | TaskState::Cancelled
        )
    }

    /// The state [`as_str`](Self::as_str) names (event streams carry names).
    pub fn from_name(name: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Blocked => "blocked",
            TaskState::Queued => "queued",
            TaskState::Leased => "leased",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an attempt of a task ended (or what else its history records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// The worker reported an error: retried after `retry_in_ms`, or (none)
    /// failed for good.
    Error {
        retry_in_ms: Option<i64>,
    },
    /// No heartbeat within the lease: the worker was lost or stalled.
    LeaseExpired {
        retry_in_ms: Option<i64>,
    },
    /// The worker gave the lease back unfinished (it was shutting down):
    /// counted against neither the task nor the worker.
    HandedBack,
    /// Not an attempt: someone asked for the task to run again.
    RetryRequested,
}

/// One line of a task's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// The attempt it concerns (the last one, for a retry request).
    pub attempt: u32,
    pub worker_id: String,
    pub at_ms: i64,
    pub outcome: Outcome,
    /// The worker's error, the reason a lease was handed back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Records written before histories were typed were lines of text; they
/// read back as the outcome their text names, the text kept as the message.
impl<'de> Deserialize<'de> for HistoryEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Typed {
            attempt: u32,
            worker_id: String,
            at_ms: i64,
            outcome: Outcome,
            #[serde(default)]
            message: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Typed(Typed),
            Line(String),
        }
        Ok(match Either::deserialize(d)? {
            Either::Typed(t) => HistoryEntry {
                attempt: t.attempt,
                worker_id: t.worker_id,
                at_ms: t.at_ms,
                outcome: t.outcome,
                message: t.message,
            },
            Either::Line(line) => HistoryEntry::from_line(line),
        })
    }
}

impl HistoryEntry {
    fn from_line(line: String) -> HistoryEntry {
        let attempt = line
            .strip_prefix("attempt ")
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let outcome = if line.contains("lease handed back") {
            Outcome::HandedBack
        } else if line.contains("lease expired") {
            Outcome::LeaseExpired { retry_in_ms: None }
        } else if line.starts_with("retry requested") {
            Outcome::RetryRequested
        } else if line.contains(": succeeded on ") {
            Outcome::Succeeded
        } else {
            Outcome::Error { retry_in_ms: None }
        };
        HistoryEntry {
            attempt,
            worker_id: String::new(),
            at_ms: 0,
            outcome,
            message: line,
        }
    }
}

/// The line `status` shows.
impl fmt::Display for HistoryEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A line read back from an old record is shown as it was written.
        if self.at_ms == 0 && self.worker_id.is_empty() && !self.message.is_empty() {
            return f.write_str(&self.message);
        }
        let (a, w, m) = (self.attempt, &self.worker_id, &self.message);
        match self.outcome {
            Outcome::Succeeded => write!(f, "attempt {a}: succeeded on {w} at {}", self.at_ms),
            Outcome::Error {
                retry_in_ms: Some(ms),
            } => write!(f, "attempt {a} on {w}: {m}; retry in {ms} ms"),
            Outcome::Error { retry_in_ms: None } => {
                write!(f, "attempt {a} on {w}: {m}; failed for good")
            }
            Outcome::LeaseExpired {
                retry_in_ms: Some(ms),
            } => write!(
                f,
                "attempt {a} on {w}: lease expired (worker lost or stalled); retry in {ms} ms"
            ),
            Outcome::LeaseExpired { retry_in_ms: None } => write!(
                f,
                "attempt {a} on {w}: lease expired (worker lost or stalled); failed for good"
            ),
            Outcome::HandedBack => write!(f, "attempt {a} on {w}: lease handed back ({m})"),
            Outcome::RetryRequested => write!(f, "retry requested at {}", self.at_ms),
        }
    }
}

/// A dependency's outcome, as a leased task receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DepOutcome {
    pub kind: TaskKind,
    pub state: TaskState,
    /// The dependency's result document (its task kind says which type).
    #[serde(default)]
    pub result: serde_json::Value,
    #[serde(default)]
    pub error: String,
}

impl DepOutcome {
    /// Its result as `T`, when it succeeded.
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        (self.state == TaskState::Succeeded)
            .then(|| serde_json::from_value(self.result.clone()).ok())
            .flatten()
    }
}

/// How a rendered file was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenderMode {
    /// Its own sum through the chains, its own detectors.
    Mix,
    /// One role through the same chains, with the bus and master dynamics
    /// envelopes of the variant's mix.
    LinkedStem,
    /// A live-playback pack's file: one stem through its own chains at the
    /// pack's gain (or untouched), or the interleave of those files.
    Live,
}

impl RenderMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RenderMode::Mix => "mix",
            RenderMode::LinkedStem => "linked_stem",
            RenderMode::Live => "live",
        }
    }
}

/// One file a render wrote, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedOutput {
    pub variant: String,
    pub role: Option<Role>,
    /// The group of roles a stem file carries (stems variants with `groups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub file: FileRecord,
    pub gain_db: f64,
    pub ceiling_trim_db: f64,
    /// A fold-down's gain after the fold (fold-down variants only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold_down_gain_db: Option<f64>,
    pub level_policy: LevelPolicy,
    pub mode: RenderMode,
    pub measurement: Measurement,
    /// A stem's trim beyond the title's (its set's common trim), dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stems_trim_db: Option<f64>,
    /// A re-mix stem: 32-bit float, no ceiling.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remix: bool,
    /// The variant's level changes, asked, applied and delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub level_changes: Vec<LevelChange>,
    /// A live-playback pack's file (see [`crate::manifest::LiveRecord`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<crate::manifest::LiveRecord>,
    /// Whether the file was rendered or reused from the render cache, and
    /// by which job it was rendered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheUse>,
}

impl RenderedOutput {
    /// What a stem file carries: its group's name or its role's (`None`
    /// for a mix).
    pub fn stem_label(&self) -> Option<&str> {
        self.group.as_deref().or(self.role.map(Role::as_str))
    }
}

/// Where an output's audio came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheUse {
    pub status: CacheStatus,
    /// The job that rendered the audio: this one on a miss, an earlier one
    /// on a hit.
    pub job: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheStatus {
    /// Copied from the render cache: an earlier job rendered the same
    /// audio from the same inputs, graph and delivery.
    Hit,
    /// Rendered by this job (and kept in the cache).
    Miss,
    /// Rendered by this job with the cache off.
    Off,
}

/// What a render task wrote for one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderResult {
    pub title: String,
    pub variant: String,
    pub description: String,
    pub outputs: Vec<RenderedOutput>,
}

impl RenderResult {
    /// Seconds of audio it wrote, over all its files.
    pub fn audio_seconds(&self) -> f64 {
        self.outputs.iter().map(|o| o.file.duration_s).sum()
    }
}

/// The result of a render task: a title's pack (at one rate), one
/// [`RenderResult`] per variant, in the order the task lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackResult {
    pub title: String,
    pub renders: Vec<RenderResult>,
    /// The trims decided on the written files, when the analysis left the
    /// ceiling to the render (every master ends in a limiter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<PackCeiling>,
}

/// The ceiling decided by a render task on its own files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PackCeiling {
    /// By level family: `full`, or a normalized variant's name.
    pub families: std::collections::BTreeMap<String, FamilyTrims>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Passes over the stems: 1 when every file was under the ceiling as
    /// written; 3 when a trim was needed (the peaks measured before
    /// quantisation, then the pack written again, trimmed).
    pub passes: u32,
}

/// One family's trims and the true peaks they were decided on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FamilyTrims {
    pub ceiling_trim_db: f64,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub variant_trims_db: std::collections::BTreeMap<String, f64>,
    pub trim_rule: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub output_true_peaks_dbtp: std::collections::BTreeMap<String, f64>,
}

impl PackResult {
    /// Seconds of audio it wrote, over all its files.
    pub fn audio_seconds(&self) -> f64 {
        self.renders.iter().map(RenderResult::audio_seconds).sum()
    }
}

/// The result of the manifest task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestResult {
    pub manifest_path: String,
    pub summary: Summary,
    /// The pack zip, when the job asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleResult>,
}

/// The pack zip the manifest task wrote: every output file, the manifest,
/// the report and a README, each entry's checksum checked against the
/// manifest's while it was copied in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleResult {
    /// Absolute path of the zip.
    pub path: String,
    /// Hex SHA-256 of the whole zip file.
    pub sha256: String,
    pub bytes: u64,
    /// Files in the zip.
    pub entries: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_lines_read_as_before_and_old_records_still_load() {
        let e = HistoryEntry {
            attempt: 2,
            worker_id: "w1".into(),
            at_ms: 7,
            outcome: Outcome::Error {
                retry_in_ms: Some(2000),
            },
            message: "disk full".into(),
        };
        assert_eq!(
            e.to_string(),
            "attempt 2 on w1: disk full; retry in 2000 ms"
        );
        let json = serde_json::to_string(&e).expect("json");
        let back: HistoryEntry = serde_json::from_str(&json).expect("typed");
        assert_eq!(back, e);
        let old: Vec<HistoryEntry> = serde_json::from_str(
            r#"["attempt 1 on w1: lease handed back (shutdown)", "attempt 3 on w2: lease expired (worker lost or stalled); failed for good", "retry requested at 5"]"#,
        )
        .expect("legacy lines");
        assert_eq!(
            old.iter().map(|h| h.outcome).collect::<Vec<_>>(),
            [
                Outcome::HandedBack,
                Outcome::LeaseExpired { retry_in_ms: None },
                Outcome::RetryRequested
            ]
        );
        assert_eq!(old[1].attempt, 3);
        assert_eq!(
            old[0].to_string(),
            "attempt 1 on w1: lease handed back (shutdown)"
        );
    }
}
