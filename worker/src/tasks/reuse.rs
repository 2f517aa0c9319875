//! The render cache seen from a pack: the key of each output, a cached
//! file copied and re-labelled for this job, a rendered file kept.
//!
//! An output's key is made of what the code path that writes and measures
//! it reads: the audio hashes of every stem it hears (for a linked stem,
//! every stem of the mix whose envelopes it replays; for a mix whose moves
//! are measured, the full mix's too), its graph as it sounds, the chain
//! context (rate, channels, master and fold gains, default ceiling), the
//! head's latency, the trims, the output format and dither seed (title,
//! variant, file name), the whole resolved delivery, the timeline position,
//! the dialogue blocks it is gated on and the analysis' searched move. Not
//! in it: what only labels the file (the spec's hash, the origination time
//! and description in `bext`), which is rewritten on reuse.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

use deliverables_spec::contract::{
    CacheStatus, CacheUse, FamilyTrims, PackCeiling, RenderedOutput,
};
use deliverables_spec::manifest::{FileRecord, LevelChange};
use deliverables_spec::model::Title;
use deliverables_spec::outputs::PlannedOutput;
use deliverables_spec::variant::TitleGraph;

use super::TaskContext;
use super::analyze::{AnalysisResult, carries_dialogue};
use super::metadata::{OutputLabel, bext_loudness, output_bext};
use super::render::{VariantPass, full_graph};
use super::stream::Stages;
use crate::cache::{EntryKind, RenderCache, key};
use crate::dialogue::DialogueActivity;
use crate::output::{FileDigest, TempFile, digest_wav};

#[derive(Serialize)]
struct OutputRecipe<'a> {
    title: &'a str,
    layout: &'a str,
    /// A cutdown's edit: which parts of the stems are heard, and how joined.
    edit: Option<&'a deliverables_spec::edit::EditSpec>,
    frames: u64,
    sample_rate: u32,
    source_rate: Option<u32>,
    time_reference: u64,
    inputs: Vec<(usize, &'a str)>,
    variant: serde_json::Value,
    planned: &'a PlannedOutput,
    graph: TitleGraph,
    context: String,
    latency: usize,
    channels: usize,
    family: &'a str,
    gain_db: f64,
    trim_db: f64,
    own_trim_db: f64,
    fold_gain_db: f64,
    delivery: serde_json::Value,
    dialogue: Option<&'a DialogueActivity>,
    searched_move: Option<&'a LevelChange>,
    full: Option<FullRecipe<'a>>,
    deferred_ceiling: bool,
}

/// What a measured move compares against: the full mix.
#[derive(Serialize)]
struct FullRecipe<'a> {
    inputs: Vec<(usize, &'a str)>,
    graph: TitleGraph,
    context: String,
    trim_db: f64,
}

/// The audio hash of every stem `tg` hears (`None` if one is unknown).
fn heard<'a>(
    title: &Title,
    analysis: &'a AnalysisResult,
    tg: &TitleGraph,
) -> Option<Vec<(usize, &'a str)>> {
    tg.stems
        .iter()
        .filter(|s| !s.muted)
        .map(|s| {
            let file = &title.stems.get(s.index)?.file;
            analysis
                .inputs
                .iter()
                .find(|r| r.kind == "stem" && &r.path == file)
                .map(|r| (s.index, r.sha256.as_str()))
        })
        .collect()
}

/// The key of every planned output of `passes` (in pack order), built with
/// every output wanted; `decided`: the trims the pass renders with when
/// they are not the analysis' own. `None` for an output that cannot be
/// keyed (an input without a hash, no build identity).
pub(super) fn output_keys(
    ctx: &TaskContext<'_>,
    title: &Title,
    analysis: &AnalysisResult,
    pack_rate: Option<u32>,
    stages: &Stages,
    passes: &[VariantPass],
    decided: Option<&BTreeMap<String, FamilyTrims>>,
) -> Vec<Option<String>> {
    let d = ctx.spec.delivery();
    let (full_tg, full_cc) = full_graph(ctx, title, analysis);
    let full_tg = full_tg.effective();
    let full_inputs = heard(title, analysis, &full_tg);
    let full_trim = match decided.and_then(|c| c.get("full")) {
        Some(t) => t.ceiling_trim_db + t.variant_trims_db.get("full").copied().unwrap_or(0.0),
        None => {
            analysis.level.ceiling_trim_db
                + analysis
                    .level
                    .variant_trims_db
                    .get("full")
                    .copied()
                    .unwrap_or(0.0)
        }
    };
    let mut keys = Vec::new();
    for p in passes {
        let graph = p.tg.effective();
        let inputs = heard(title, analysis, &graph);
        let mut variant = serde_json::to_value(&p.variant).unwrap_or_default();
        if let Some(v) = variant.as_object_mut() {
            // Only the report shows it.
            v.remove("description");
        }
        for (o, st) in p.planned.iter().zip(&p.output_stages) {
            let (Some(st), Some(inputs)) = (st, inputs.clone()) else {
                keys.push(None);
                continue;
            };
            let full = if p.measure_moves {
                let Some(inputs) = full_inputs.clone() else {
                    keys.push(None);
                    continue;
                };
                Some(FullRecipe {
                    inputs,
                    graph: full_tg.clone(),
                    context: format!("{full_cc:?}"),
                    trim_db: full_trim,
                })
            } else {
                None
            };
            let dialogue = analysis
                .dialogue
                .as_ref()
                .filter(|_| carries_dialogue(title, &o.stems, analysis.dialogue.as_ref()));
            let recipe = OutputRecipe {
                title: &title.name,
                layout: title.layout.as_str(),
                edit: title.edit.as_ref(),
                frames: analysis.frames,
                sample_rate: analysis.sample_rate,
                source_rate: pack_rate.or(d.sample_rate),
                time_reference: analysis.time_reference,
                inputs,
                variant: variant.clone(),
                planned: o,
                graph: graph.clone(),
                context: format!("{:?}", p.cc),
                latency: stages.latency(*st),
                channels: stages.out_channels(*st),
                family: &p.family,
                gain_db: p.gain_db,
                trim_db: p.trim_db,
                own_trim_db: p.own_trim_db,
                fold_gain_db: p.fold_gain_db,
                delivery: delivery_key(d),
                dialogue,
                searched_move: analysis.moves.get(&p.variant.name),
                full,
                deferred_ceiling: !analysis.deferred_ceiling.is_empty(),
            };
            keys.push(key(EntryKind::Output, &recipe));
        }
    }
    keys
}

/// The key of a pack's ceiling decision: its outputs' first-pass keys.
pub(super) fn pack_key(first_pass: &[Option<String>]) -> Option<String> {
    let all: Option<Vec<&str>> = first_pass.iter().map(|k| k.as_deref()).collect();
    key(EntryKind::Pack, &all?)
}

pub(super) fn decided_pack(cache: &RenderCache, pack_key: &str) -> Option<PackCeiling> {
    let e = cache.get(EntryKind::Pack, pack_key)?;
    match serde_json::from_value(e.value) {
        Ok(c) => Some(c),
        Err(_) => {
            cache.forget(pack_key);
            None
        }
    }
}

/// What the cache keeps of an output besides its file.
#[derive(Serialize, Deserialize)]
struct CachedRecord {
    output: RenderedOutput,
    /// Samples clamped at full scale (the ceiling rule reads it).
    clipped: u64,
}

/// A cached file copied beside its final name, re-labelled for this job
/// and verified; it appears on [`Reused::commit`], and its temporary file
/// is removed if it never does.
pub(super) struct Reused {
    temp: TempFile,
    final_path: PathBuf,
    pub(super) output: RenderedOutput,
    pub(super) clipped: u64,
}

impl Reused {
    pub(super) fn commit(self) -> Result<(), crate::output::OutputError> {
        self.temp
            .persist(&self.final_path)
            .map_err(|source| crate::output::OutputError::Io {
                path: self.final_path.clone(),
                source,
            })
    }
}

/// The cached output under `key`, copied to a temporary file beside
/// `o`'s final name with this job's `bext` (names, reference, origination;
/// the loudness it was measured at) and its audio verified against the
/// checksum taken when it was rendered. `None` (and the entry forgotten if
/// it is bad) on a miss or any failure: the output is rendered instead.
pub(super) fn reuse(
    ctx: &TaskContext<'_>,
    cache: &RenderCache,
    key: &str,
    title: &Title,
    analysis: &AnalysisResult,
    p: &VariantPass,
    o: &PlannedOutput,
) -> Option<Reused> {
    let entry = cache.get(EntryKind::Output, key)?;
    let Ok(rec) = serde_json::from_value::<CachedRecord>(entry.value) else {
        cache.forget(key);
        return None;
    };
    let src = entry.file?;
    let final_path = ctx.output_dir.join(&o.file_name);
    match relabel(ctx, &src, &final_path, title, analysis, p, o, &rec) {
        Ok((temp, digest)) if digest.audio_sha256 == rec.output.file.audio_sha256 => {
            tracing::debug!(file = %o.file_name, from_job = %entry.job, "reused from the render cache");
            Some(Reused {
                temp,
                final_path,
                output: RenderedOutput {
                    file: FileRecord {
                        path: o.file_name.clone(),
                        sha256: digest.sha256,
                        bytes: digest.bytes,
                        ..rec.output.file.clone()
                    },
                    cache: Some(CacheUse {
                        status: CacheStatus::Hit,
                        job: entry.job,
                    }),
                    ..rec.output
                },
                clipped: rec.clipped,
            })
        }
        Ok(_) => {
            tracing::warn!(file = %o.file_name, "a cached output's audio does not match its checksum: forgotten, rendering it");
            cache.forget(key);
            None
        }
        Err(e) => {
            tracing::warn!(file = %o.file_name, "cannot reuse a cached output ({e}): rendering it");
            None
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn relabel(
    ctx: &TaskContext<'_>,
    src: &std::path::Path,
    final_path: &std::path::Path,
    title: &Title,
    analysis: &AnalysisResult,
    p: &VariantPass,
    o: &PlannedOutput,
    rec: &CachedRecord,
) -> Result<(TempFile, FileDigest), String> {
    if let Some(dir) = final_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let temp = TempFile::adopt(TempFile::name_for(final_path));
    std::fs::copy(src, temp.path()).map_err(|e| e.to_string())?;
    let mut bext = output_bext(
        &OutputLabel {
            title: &title.name,
            variant: &p.variant.name,
            role: o.stem_label(),
            file_name: &o.file_name,
            spec_sha256: &ctx.spec.sha256,
        },
        ctx.spec.delivery(),
        ctx.origination_unix_s,
        analysis.time_reference,
        analysis.sample_rate,
        rec.output.file.channels,
    );
    bext.loudness = bext_loudness(&rec.output.measurement);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(temp.path())
        .map_err(|e| e.to_string())?;
    crate::bwf::rewrite_bext(&mut f, &bext).map_err(|e| e.to_string())?;
    f.sync_all().map_err(|e| e.to_string())?;
    drop(f);
    let digest = digest_wav(temp.path()).map_err(|e| e.to_string())?;
    Ok((temp, digest))
}

/// Keeps a rendered, committed output in the cache (by hard link).
pub(super) fn keep(
    ctx: &TaskContext<'_>,
    cache: &RenderCache,
    key: &str,
    output: &RenderedOutput,
    clipped: u64,
) {
    let file = ctx.output_dir.join(&output.file.path);
    let rec = CachedRecord {
        output: RenderedOutput {
            cache: None,
            ..output.clone()
        },
        clipped,
    };
    cache.put(EntryKind::Output, key, ctx.job_id, &rec, Some(&file));
}

/// The delivery as it shapes audio and measurements: what only places or
/// labels files (output folder, originator, origination) is left out, so
/// moving a delivery to another folder reuses its outputs.
pub(super) fn delivery_key(d: &deliverables_spec::Delivery) -> serde_json::Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        for k in ["output_dir", "originator", "origination", "profile_source"] {
            m.remove(k);
        }
    }
    v
}

/// The SHA-256 of each of a title's stems and its reference, by path as
/// written (`None` if one cannot be read: nothing is cached then, and the
/// task reports the file as it would).
fn input_hashes(ctx: &TaskContext<'_>, title: &Title) -> Option<Vec<(String, String)>> {
    title
        .stems
        .iter()
        .map(|s| &s.file)
        .chain(title.reference.as_ref())
        .map(|f| {
            crate::output::sha256_of(&ctx.spec.path(f))
                .ok()
                .map(|h| (f.clone(), h))
        })
        .collect()
}

/// A title's task result (preflight report, analysis) from the cache when
/// an earlier job made it from the same files (by content), title and
/// `settings`; else `make()`'s, kept.
pub(super) fn title_result<T: Serialize + serde::de::DeserializeOwned>(
    ctx: &TaskContext<'_>,
    kind: EntryKind,
    title: &Title,
    settings: serde_json::Value,
    make: impl FnOnce() -> Result<T, super::TaskError>,
) -> Result<T, super::TaskError> {
    let Some(cache) = ctx.cache else {
        return make();
    };
    let k = input_hashes(ctx, title).and_then(|inputs| {
        key(
            kind,
            &serde_json::json!({"title": title, "inputs": inputs, "settings": settings}),
        )
    });
    let Some(k) = k else {
        return make();
    };
    if let Some(e) = cache.get(kind, &k) {
        match serde_json::from_value(e.value) {
            Ok(v) => {
                tracing::info!(title = %title.name, kind = kind.as_str(), from_job = %e.job, "result reused from the render cache");
                return Ok(v);
            }
            Err(_) => cache.forget(&k),
        }
    }
    let v = make()?;
    cache.put(kind, &k, ctx.job_id, &v, None);
    Ok(v)
}
