//! Preflight findings and measurements as they travel in task results and
//! appear in the manifest. Computed by the worker's `preflight` module; this
//! is only the data.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The title cannot be rendered as delivered.
    Error,
    /// Reported; the render goes on.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One thing preflight found, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// `unreadable`, `truncated`, `sample_rate`, `stem_offset`, `null_test`, …
    pub check: String,
    /// The file(s) concerned, as written in the spec or found in the folder.
    pub files: Vec<String>,
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    pub fn new(
        severity: Severity,
        check: &str,
        files: &[&str],
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            severity,
            check: check.to_string(),
            files: files.iter().map(|f| f.to_string()).collect(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// A residual this much stronger (relative to the mix) in the loudest tenth
/// of the programme than in its middle follows the mix's peaks, dB.
pub const FOLLOWS_PEAKS_DB: f64 = 6.0;

/// What the null test found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullFit {
    /// 20·log10(g): how much louder the reference is than the stems' sum
    /// (`null` when they do not correlate at all).
    pub gain_db: Option<f64>,
    /// Energy of `reference − g·sum` relative to the reference, dB
    /// (`null` for a silent reference).
    pub residual_db: Option<f64>,
    /// Residual-to-mix ratio in the loudest tenth of the programme minus the
    /// same in its middle half, dB: large when the residual follows the
    /// mix's peaks.
    pub loud_minus_middle_db: Option<f64>,
    /// Sample peak of the stems' sum and of the reference, dBFS.
    pub sum_peak_dbfs: f64,
    pub reference_peak_dbfs: f64,
    /// Samples where the sum is over full scale while the reference is not.
    pub sum_overs: u64,
}

impl NullFit {
    /// The residual is concentrated where the mix is loudest.
    pub fn follows_peaks(&self) -> bool {
        self.loud_minus_middle_db
            .is_some_and(|d| d >= FOLLOWS_PEAKS_DB)
    }
}

/// One file as preflight found it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileReport {
    pub file: String,
    /// `None` when the file could not be opened.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// Frames actually decoded.
    pub frames: u64,
    #[serde(default)]
    pub peak_dbfs: Option<f64>,
    /// BWF `TimeReference`, when the file has a `bext` chunk.
    #[serde(default)]
    pub time_reference: Option<u64>,
    /// Where the stem sits in the reference (stems, with a reference).
    #[serde(default)]
    pub placement: Option<PlacementReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileFormat {
    pub container: String,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: usize,
    pub bits_per_sample: Option<u32>,
    /// Frames the header declares.
    pub declared_frames: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementReport {
    /// Samples late against the reference (negative: early).
    pub offset_samples: i64,
    pub polarity_inverted: bool,
    /// The stem's level inside the reference, dB (0 = unity).
    pub gain_db: f64,
    /// Normalised correlation at that offset (0–1).
    pub correlation: f64,
}

/// The sum-to-mix null test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullTest {
    pub pass: bool,
    pub gain_tolerance_db: f64,
    pub min_depth_db: f64,
    /// The stems summed as delivered.
    pub as_delivered: NullFit,
    /// After correcting the offsets and polarities found (when any were).
    #[serde(default)]
    pub aligned: Option<NullFit>,
}

/// Everything preflight found for one title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightReport {
    pub title: String,
    /// The stems' common sample rate (the most common one), Hz.
    pub sample_rate: u32,
    pub stems: Vec<FileReport>,
    #[serde(default)]
    pub reference: Option<FileReport>,
    #[serde(default)]
    pub null_test: Option<NullTest>,
    /// Errors first, then warnings; in check order within each.
    pub findings: Vec<Finding>,
}

impl PreflightReport {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }
}
