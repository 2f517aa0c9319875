//! The compliance manifest: what was delivered, measured and judged.
//! Its JSON form is documented in `deliverables-spec/manifest.schema.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compliance::{Measurement, Verdict};
use crate::delivery::Delivery;
use crate::model::{LevelPolicy, Role};
use crate::plan::SkippedOutput;

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub tool: Tool,
    pub job_id: String,
    pub spec_sha256: String,
    /// Job submission time (UTC, RFC 3339): not the time of writing.
    pub submitted: String,
    pub delivery: Delivery,
    pub summary: Summary,
    pub titles: Vec<TitleEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub titles: usize,
    pub titles_failed: usize,
    pub outputs: usize,
    pub passed: usize,
    pub failed: usize,
    /// True when every title rendered and every output passed.
    pub all_pass: bool,
    /// Preflight findings over all titles.
    #[serde(default)]
    pub preflight_errors: usize,
    #[serde(default)]
    pub preflight_warnings: usize,
    /// Outputs copied from the render cache, and rendered by this job.
    #[serde(default)]
    pub outputs_from_cache: usize,
    #[serde(default)]
    pub outputs_rendered: usize,
}

/// One input file as found by the analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputRecord {
    /// As written in the spec.
    pub path: String,
    /// `stem` or `reference`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub sha256: String,
    pub bytes: u64,
    pub container: String,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_sample: Option<u32>,
    /// Frames decoded (stems) or stated by the header (reference).
    pub frames: u64,
    /// BWF `TimeReference` (samples since midnight), when the file has a `bext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_reference: Option<u64>,
}

/// How the title's level was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelRecord {
    /// Full mix loudness before the master gain (gain 0 dB).
    pub full_mix_lufs_at_unity: Option<f64>,
    /// The master gain every matched output carries.
    pub master_gain_db: f64,
    /// How much the clip safety lowered the master gain below what the target
    /// needed (0 when the target was reachable without clipping).
    pub clip_safety_db: f64,
    /// Which output's peak set the clip safety, when it acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_safety_output: Option<String>,
    /// Analysis passes (render, measure, adjust).
    pub passes: u32,
    /// True peak of the family's mix as it will be written (dithered,
    /// quantised), before the ceiling trim, by the accurate estimator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mix_true_peak_dbtp: Option<f64>,
    /// Static trim (≤ 0) applied to every linked output so the mix meets the
    /// working ceiling (delivery ceiling minus margin) after quantisation.
    #[serde(default)]
    pub ceiling_trim_db: f64,
    /// The loudness rule the gain was searched for (basis, target, why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness_target: Option<crate::delivery::LoudnessTarget>,
    /// Share of the programme with dialogue, from the dialogue stem (0–1);
    /// absent when the title has no dialogue stem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialogue_share: Option<f64>,
    /// A fold-down's own gain after the fold to stereo, dB: the 5.1 master
    /// keeps `master_gain_db`, this brings the fold-down to its target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold_down_gain_db: Option<f64>,
    /// Extra trims (≤ 0, dB) beyond `ceiling_trim_db` for outputs that one
    /// title trim could not bring under the ceiling without taking the mix
    /// out of its tolerance, by variant: a stems variant's is common to its
    /// stem set (they sum to the master times that gain).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variant_trims_db: BTreeMap<String, f64>,
    /// Which ceiling rule applied and why, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim_rule: Option<String>,
    /// True peak of every output of the family as it would be written
    /// (dithered and quantised as written; before quantisation when the
    /// pack had to be written again), before any trim, by file: what the
    /// trims were decided on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub output_true_peaks_dbtp: BTreeMap<String, f64>,
    /// Passes the render made over the stems when it decided the ceiling on
    /// its written files: 1 when every file was under it as written; 3 when
    /// the pack was written again, trimmed (peaks measured before
    /// quantisation in between). Absent when the analysis decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_passes: Option<u32>,
}

/// A variant's level change (`gains`, `amount_db`) and what was delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelChange {
    /// The roles and buses moved (`role:vocals`, `bus:music`).
    pub targets: Vec<String>,
    /// The change the spec asks for, dB.
    pub asked_db: f64,
    /// The gain applied before the bus and master dynamics: the asked one
    /// (`nominal`), or the one the search found (`effective`).
    pub applied_db: f64,
    pub mode: crate::model::AmountMode,
    /// The change delivered, dB, measured on the rendered audio (see
    /// [`EFFECTIVE_CHANGE_METHOD`]); `None` where it cannot be measured.
    pub effective_change_db: Option<f64>,
    /// Whether it is within [`EFFECTIVE_TOLERANCE_DB`] of the asked change.
    pub within_tolerance: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How `effective_change_db` is measured.
pub const EFFECTIVE_CHANGE_METHOD: &str = "least-squares gain of the moved roles' contribution in this output against their contribution in the full mix: both rendered as linked stems (the moved stems through their chains with the mix's own bus and master dynamics envelopes), g = <variant, full> / <full, full> over every sample, in dB, plus any difference in ceiling trim";

/// How close an `effective` level change must come to the asked one, dB.
pub const EFFECTIVE_TOLERANCE_DB: f64 = 0.25;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TitleEntry {
    pub name: String,
    /// `rendered` or `failed`.
    pub status: String,
    /// The layout the title is mixed in.
    #[serde(default)]
    pub layout: crate::model::Layout,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub inputs: Vec<InputRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LevelRecord>,
    pub outputs: Vec<OutputEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedOutput>,
    /// What the analysis noticed: padded or truncated stems, clip safety, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What preflight found in the stems and reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<crate::preflight::PreflightReport>,
    /// The title is an edit (a cutdown): its segments as asked and where
    /// each landed at the output rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<crate::edit::EditRecord>,
}

/// Facts about a written file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the output folder.
    pub path: String,
    pub sha256: String,
    /// SHA-256 of the WAV `data` chunk only: the audio, independent of metadata.
    pub audio_sha256: String,
    pub bytes: u64,
    pub format: String,
    pub codec: String,
    pub sample_rate: u32,
    pub bit_depth: u32,
    pub sample_format: String,
    pub channels: usize,
    pub frames: u64,
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputEntry {
    pub variant: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The group of roles a stem file carries (a stems variant with
    /// `groups`, e.g. `dme`'s `dialogue`, `music`, `effects`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Absent when the render failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRecord>,
    pub level_policy: LevelPolicy,
    /// Master gain applied to this output, dB.
    pub gain_db: Option<f64>,
    /// The title's ceiling trim applied to this output, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling_trim_db: Option<f64>,
    /// A fold-down's own gain after the fold to stereo, dB (`gain_db` is
    /// the gain of its 5.1 master).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold_down_gain_db: Option<f64>,
    /// How the output was produced: `mix` (its own sum through the chains,
    /// its own detectors) or `linked_stem` (one role through the same chains,
    /// with the bus and master dynamics envelopes of the variant's mix).
    pub mode: crate::contract::RenderMode,
    pub target_lufs: f64,
    pub tolerance_lu: f64,
    pub true_peak_max_dbtp: f64,
    pub measurement: Option<Measurement>,
    /// Integrated loudness minus the full mix's, LU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_from_full_lu: Option<f64>,
    /// A stem's trim beyond the title's, dB (≤ 0): its stem set sums to the
    /// master times this gain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stems_trim_db: Option<f64>,
    /// A re-mix stem: 32-bit float, no ceiling applied or judged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remix: bool,
    /// The delivered change of the variant's one level change, dB (see
    /// `level_changes` for each change, asked and applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_change_db: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub level_changes: Vec<LevelChange>,
    /// Written although it is not a version of the title
    /// (`identical_variants = "write"`): the output it duplicates, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as: Option<crate::variant::SameAs>,
    /// A live-playback pack's file: its source stem, gain and rule, or the
    /// interleaved file's channel map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveRecord>,
    /// `hit` (copied from the render cache), `miss` (rendered, kept in the
    /// cache) or `off` (rendered, no cache); absent when the render failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::contract::CacheStatus>,
    /// The job that rendered the file's audio (an earlier one on a hit);
    /// absent with the cache off (the manifest's own job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_job: Option<String>,
    pub verdict: Verdict,
}

/// One file of a live-playback pack (`output = "live"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveRecord {
    /// The input stem (as written in the spec); absent for the interleaved file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Click and guide: the input's samples, no chain, gain or dither.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub untouched: bool,
    /// The gain after the stem's chains, dB (0 for click and guide).
    pub gain_db: f64,
    /// True peaks stay at or under this, dBTP.
    pub headroom_dbtp: f64,
    /// `reported` or `matched`.
    pub stem_loudness: crate::model::StemLoudness,
    /// The stem loudness aimed at with `matched`, LUFS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_lufs: Option<f64>,
    /// True peak through the chains before the gain, dBTP (accurate
    /// estimator; what the gain was decided on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_true_peak_dbtp: Option<f64>,
    /// Integrated loudness through the chains before the gain, LUFS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_integrated_lufs: Option<f64>,
    /// Why the gain is not the rule's plain one (a matched stem lowered to
    /// the headroom), or what the file is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The interleaved file's channels, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<InterleavedChannel>,
}

/// Channel `index` of an interleaved live file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterleavedChannel {
    pub index: usize,
    /// As written in the map (`""`: silence).
    pub map: String,
    /// The per-stem live file it equals sample for sample; absent: silence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_file: Option<String>,
    /// The channel of that file (0 = L or mono, 1 = R).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<usize>,
}

impl OutputEntry {
    /// What a stem file carries: its group's name or its role's (`None`
    /// for a mix).
    pub fn stem_label(&self) -> Option<&str> {
        self.group.as_deref().or(self.role.map(Role::as_str))
    }
}
