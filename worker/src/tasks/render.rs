//! Render: one variant of one title, through the graph, into WAV files that
//! appear atomically, each verified by reading it back and measuring it.
//!
//! A mix runs its own detectors on its own sum. A `stems` output runs the
//! variant's whole mix as a reference (not written) and one *linked* graph
//! per role that replays the reference's bus and master dynamics envelopes:
//! Σ processed stems = the mastered mix.

use deliverables_spec::compliance::Measurement;
use deliverables_spec::manifest::{EFFECTIVE_TOLERANCE_DB, FileRecord, LevelChange};
use deliverables_spec::model::AmountMode;
use deliverables_spec::model::Dither;
use std::collections::{BTreeMap, BTreeSet};

use deliverables_spec::LevelPolicy;
use deliverables_spec::model::{BitDepth, Title};
use deliverables_spec::variant::{Variant, title_graph};

use super::analyze::{AnalysisResult, carries_dialogue, chain_context, outputs_for, round6};
use super::effective::{ChangeMeter, move_stems};
use super::metadata::{OutputLabel, bext_loudness, output_bext};
use super::stream::{Stages, run_stages};
use super::trim::{FamilyMix, Probed, decide};
use super::{TaskContext, TaskError};
use crate::dialogue::DialogueActivity;
use crate::dsp::gain_to_db;
use crate::dsp::true_peak::TruePeakDetector;
use crate::meter::{Meter, MeterKind, Timeline};
use crate::output::{DitherSeed, OutputStage, OutputWriter, Pending, digest_wav};
use crate::source::TitleSource;

use super::reuse::{self, Reused};
use deliverables_spec::contract::{CacheStatus, CacheUse};
pub use deliverables_spec::contract::{
    FamilyTrims, PackCeiling, PackResult, RenderMode, RenderResult, RenderedOutput,
};

/// The analysis result (of the pack at `rate`) among a task's dependencies.
pub fn analysis_of(
    ctx: &TaskContext<'_>,
    title: &str,
    rate: Option<u32>,
) -> Result<AnalysisResult, TaskError> {
    ctx.deps
        .values()
        .find(|d| {
            matches!(&d.kind, deliverables_spec::TaskKind::Analyze { title: t, rate: r } if t == title && *r == rate)
        })
        .ok_or_else(|| {
            TaskError::Internal(format!(
                "render of `{title}` was leased without its analysis result"
            ))
        })
        .and_then(|d| {
            serde_json::from_value(d.result.clone()).map_err(|e| {
                TaskError::Internal(format!("analysis result of `{title}` is unreadable: {e}"))
            })
        })
}

/// What one variant of the pack renders, and where its stages are.
pub(super) struct VariantPass {
    /// Its level family: `full`, or its own name when normalized.
    pub(super) family: String,
    pub(super) variant: deliverables_spec::variant::Variant,
    pub(super) planned: Vec<deliverables_spec::outputs::PlannedOutput>,
    pub(super) tg: deliverables_spec::variant::TitleGraph,
    pub(super) cc: crate::dsp::chain::ChainContext,
    pub(super) gain_db: f64,
    pub(super) trim_db: f64,
    pub(super) own_trim_db: f64,
    pub(super) fold_gain_db: f64,
    /// Stage of each planned output (`None`: not rendered by this pass).
    pub(super) output_stages: Vec<Option<usize>>,
    /// Per move: the moved roles' linked stems in the full mix and here.
    change_stages: Vec<(usize, usize)>,
    linked: bool,
    pub(super) measure_moves: bool,
    moves: Vec<deliverables_spec::variant::Move>,
}

/// The full mix's graph and context: what a variant's moves are measured
/// against.
pub(super) fn full_graph(
    ctx: &TaskContext<'_>,
    title: &Title,
    analysis: &AnalysisResult,
) -> (
    deliverables_spec::variant::TitleGraph,
    crate::dsp::chain::ChainContext,
) {
    let spec = ctx.spec;
    let full_variant = spec.variant("full").unwrap_or_else(|| {
        deliverables_spec::variant::resolve_variant("full", &Default::default(), &spec.spec.graph)
    });
    (
        title_graph(&spec.spec.graph, title, &full_variant),
        chain_context(
            ctx,
            analysis.sample_rate,
            title.layout,
            analysis.level.master_gain_db,
            analysis.level.fold_down_gain_db.unwrap_or(0.0),
        ),
    )
}

/// The pack's graphs: every variant's outputs (and what measures its
/// moves) as stages over one bank of stem chains. `decided`: trims decided
/// on the pack's files, by family, in place of the analysis' own.
/// `want(v, k)`: whether output `k` of variant `v` is rendered by this pass
/// (the others get no stage, and cost nothing).
fn build(
    ctx: &TaskContext<'_>,
    title: &Title,
    analysis: &AnalysisResult,
    variant_names: &[String],
    decided: Option<&BTreeMap<String, FamilyTrims>>,
    want: &dyn Fn(usize, usize) -> bool,
) -> Result<(Stages, Vec<VariantPass>), TaskError> {
    let spec = ctx.spec;
    let rate = analysis.sample_rate;
    let title_name = &title.name;
    let graph_err =
        |e: crate::dsp::chain::GraphError| TaskError::Input(format!("title `{title_name}`: {e}"));
    let mut stages = Stages::default();
    let mut passes: Vec<VariantPass> = Vec::new();
    for (vi, variant_name) in variant_names.iter().enumerate() {
        let variant = spec.variant(variant_name).ok_or_else(|| {
            TaskError::Internal(format!("variant `{variant_name}` is not in the spec"))
        })?;
        let level = analysis.level_of(&variant);
        let family = family_of(analysis, &variant);
        // The trims decided on this pack's files replace the analysis' own.
        let (trim_db, variant_trims) = match decided.and_then(|t| t.get(&family)) {
            Some(t) => (t.ceiling_trim_db, &t.variant_trims_db),
            None => (level.ceiling_trim_db, &level.variant_trims_db),
        };
        let gain_db = level.master_gain_db;
        // Outputs the title trim alone leaves over the ceiling take their own
        // (a stem set takes one for all its stems).
        let own_trim_db = variant_trims.get(&variant.name).copied().unwrap_or(0.0);
        let fold_gain_db = level.fold_down_gain_db.unwrap_or(0.0);
        // The graph as rendered: an effective move at the gain the analysis found.
        let applied = analysis.applied(&variant);
        let tg = title_graph(&spec.spec.graph, title, &applied);
        let planned = outputs_for(ctx, title, &applied, rate);
        let cc = chain_context(ctx, rate, title.layout, gain_db, fold_gain_db);
        let wanted: Vec<bool> = (0..planned.len()).map(|k| want(vi, k)).collect();
        // Stems replay the envelopes of the variant's whole mix.
        let linked = planned.iter().any(|o| o.is_stem());
        let reference = if linked && wanted.iter().any(|&w| w) {
            Some(stages.add(&tg, &cc, |_| true, None).map_err(graph_err)?)
        } else {
            None
        };
        let mut output_stages = Vec::new();
        for (o, &w) in planned.iter().zip(&wanted) {
            output_stages.push(if w {
                Some(
                    stages
                        .add(&tg, &cc, |i| o.stems.contains(&i), reference)
                        .map_err(graph_err)?,
                )
            } else {
                None
            });
        }
        let moves = variant.moves();
        let measure_moves = !linked && !moves.is_empty() && tg.fold_down.is_none();
        passes.push(VariantPass {
            family,
            variant,
            planned,
            tg,
            cc,
            gain_db,
            trim_db,
            own_trim_db,
            fold_gain_db,
            output_stages,
            change_stages: Vec::new(),
            linked,
            measure_moves,
            moves,
        });
    }
    // A mix that moves roles: their contribution here and in the full mix,
    // as linked stems, to measure the change delivered. The full mix's head
    // is the full variant's own when the pack renders it.
    let measured =
        |p: &VariantPass| p.measure_moves && p.output_stages.first().is_some_and(Option::is_some);
    if passes.iter().any(measured) {
        let (full_tg, full_cc) = full_graph(ctx, title, analysis);
        let f = stages
            .add(&full_tg, &full_cc, |_| true, None)
            .map_err(graph_err)?;
        for p in passes.iter_mut().filter(|p| measured(p)) {
            let Some(Some(mix)) = p.output_stages.first().copied() else {
                continue;
            };
            for m in &p.moves {
                let keep = move_stems(&spec.spec.graph, title, m);
                let b = stages
                    .add(&full_tg, &full_cc, |i| keep.contains(&i), Some(f))
                    .map_err(graph_err)?;
                let v = stages
                    .add(&p.tg, &p.cc, |i| keep.contains(&i), Some(mix))
                    .map_err(graph_err)?;
                p.change_stages.push((b, v));
            }
        }
    }
    Ok((stages, passes))
}

/// Logs the graph of a pass about to run over the stems (one line per
/// pass: tests count them).
fn log_pass(title: &Title, stages: &Stages, passes: &[VariantPass]) {
    tracing::debug!(
        title = %title.name,
        variants = passes.len(),
        stages = stages.len(),
        graphs = stages.heads(),
        stem_chains = stages.bank.len(),
        "pack graph"
    );
}

/// The level family a variant's outputs belong to: `full`, or a
/// normalized variant's own.
fn family_of(analysis: &AnalysisResult, variant: &Variant) -> String {
    match variant.level {
        LevelPolicy::Normalized if analysis.normalized.contains_key(&variant.name) => {
            variant.name.clone()
        }
        _ => "full".to_string(),
    }
}

/// One pass over the stems writing every file of the pack (measured as
/// written), and the change meters of the moves.
fn write_pack(
    ctx: &TaskContext<'_>,
    title: &Title,
    analysis: &AnalysisResult,
    pack_rate: Option<u32>,
    mut stages: Stages,
    passes: &[VariantPass],
) -> Result<(Vec<Pending>, Vec<ChangeMeter>), TaskError> {
    log_pass(title, &stages, passes);
    let spec = ctx.spec;
    let d = spec.delivery();
    let rate = analysis.sample_rate;
    let title_name = &title.name;
    // What each stage's block feeds: a writer, a full-mix copy, a change meter.
    enum Use {
        Write(usize),
        Copy(usize),
        Compare(usize),
    }
    let mut uses: Vec<Vec<Use>> = (0..stages.len()).map(|_| Vec::new()).collect();
    let mut change_meters: Vec<ChangeMeter> = Vec::new();
    let mut full_copies: Vec<crate::dsp::Block> = Vec::new();
    let mut writers = Vec::new();
    for p in passes {
        for (o, &st) in p.planned.iter().zip(&p.output_stages) {
            let Some(st) = st else { continue };
            let channels = stages.out_channels(st);
            let seed = DitherSeed {
                title: &title.name,
                variant: &p.variant.name,
                output: &o.file_name,
            };
            let stage = OutputStage::new(
                o.bit_depth,
                channels,
                p.output_trim(o),
                (d.dither == Dither::Tpdf).then_some(seed),
            );
            let bext = output_bext(
                &OutputLabel {
                    title: &title.name,
                    variant: &p.variant.name,
                    role: o.stem_label(),
                    file_name: &o.file_name,
                    spec_sha256: &spec.sha256,
                },
                d,
                ctx.origination_unix_s,
                analysis.time_reference,
                rate,
                channels,
            );
            // Measured as written: dialogue-gated where the output carries it.
            let gated = analysis
                .dialogue
                .as_ref()
                .is_some_and(|_| carries_dialogue(title, &o.stems, analysis.dialogue.as_ref()));
            let mut meter = if gated {
                Meter::with_blocks(channels, rate, MeterKind::Full)
            } else {
                Meter::new(channels, rate, MeterKind::Full)
            }
            .map_err(|e| TaskError::Internal(e.to_string()))?;
            meter.set_timeline(Timeline {
                frame_rate: d.frame_rate,
                // Re-mix stems too: not judged, but where they pass the air
                // ceiling is worth knowing.
                ceiling_dbtp: Some(d.true_peak_max_dbtp),
                time_reference: bext.time_reference,
            });
            uses[st].push(Use::Write(writers.len()));
            writers.push(
                OutputWriter::create(
                    &ctx.output_dir.join(&o.file_name),
                    rate,
                    channels,
                    stage,
                    &bext,
                )?
                .measuring(meter, channels, crate::source::BLOCK_FRAMES),
            );
        }
        for &(b, v) in &p.change_stages {
            let k = change_meters.len();
            change_meters.push(ChangeMeter::default());
            full_copies.push(crate::dsp::Block::new(
                stages.out_channels(b),
                crate::source::BLOCK_FRAMES,
            ));
            uses[b].push(Use::Copy(k));
            uses[v].push(Use::Compare(k));
        }
    }
    let paths: Vec<_> = title.stems.iter().map(|s| spec.path(&s.file)).collect();
    let mut source = TitleSource::open_edited(
        &paths,
        pack_rate.or(d.sample_rate),
        title.layout,
        title.edit.as_ref(),
    )?;
    let frames = run_stages(
        ctx,
        &mut source,
        &mut stages,
        analysis.frames,
        |f| (ctx.progress)(0.7 * f),
        |i, block| {
            for u in &uses[i] {
                match *u {
                    Use::Write(w) => writers[w].write(block)?,
                    Use::Copy(k) => full_copies[k].copy_from(block),
                    Use::Compare(k) => change_meters[k].add(&full_copies[k], block),
                }
            }
            Ok(())
        },
    )?;
    if frames != analysis.frames {
        return Err(TaskError::Input(format!(
            "title `{title_name}` decoded to {frames} frames now but {} during analysis: a stem changed during the job; resubmit",
            analysis.frames
        )));
    }
    let pending = writers
        .into_iter()
        .map(OutputWriter::finish)
        .collect::<Result<Vec<_>, _>>()?;

    Ok((pending, change_meters))
}

/// One pass over the stems measuring every output's true peak as the
/// analysis' ceiling pass does: before quantisation (float, no dither, no
/// trim), so an output over full scale reads its real peak, not a clipped
/// one. Returns each planned output's true peak, in pack order.
fn float_peaks(
    ctx: &TaskContext<'_>,
    title: &Title,
    analysis: &AnalysisResult,
    pack_rate: Option<u32>,
    mut stages: Stages,
    passes: &[VariantPass],
) -> Result<Vec<Option<f64>>, TaskError> {
    log_pass(title, &stages, passes);
    let d = ctx.spec.delivery();
    let rate = analysis.sample_rate;
    let mut uses: Vec<Vec<usize>> = (0..stages.len()).map(|_| Vec::new()).collect();
    let mut probes = Vec::new();
    for p in passes {
        for &st in p.output_stages.iter().flatten() {
            let channels = stages.out_channels(st);
            uses[st].push(probes.len());
            probes.push((
                OutputStage::new(BitDepth::Float32, channels, 0.0, None),
                TruePeakDetector::new(channels, rate),
                crate::dsp::Block::new(channels, crate::source::BLOCK_FRAMES),
            ));
        }
    }
    let paths: Vec<_> = title.stems.iter().map(|s| ctx.spec.path(&s.file)).collect();
    let mut source = TitleSource::open_edited(
        &paths,
        pack_rate.or(d.sample_rate),
        title.layout,
        title.edit.as_ref(),
    )?;
    run_stages(
        ctx,
        &mut source,
        &mut stages,
        analysis.frames,
        |f| (ctx.progress)(0.7 * f),
        |i, block| {
            for &k in &uses[i] {
                let (os, tp, q) = &mut probes[k];
                os.render(block, q);
                tp.push_block(q);
            }
            Ok(())
        },
    )?;
    Ok(probes
        .iter_mut()
        .map(|(_, tp, _)| Some(gain_to_db(tp.finish())).filter(|v| v.is_finite()))
        .collect())
}

/// One output of a pass, in pack order: written by this pass (measured as
/// written) or copied from the render cache.
enum Slot {
    Fresh(Box<(Pending, Measurement)>),
    Cached(Box<Reused>),
}

impl Slot {
    fn true_peak_dbtp(&self) -> Option<f64> {
        match self {
            Slot::Fresh(f) => f.1.true_peak_dbtp,
            Slot::Cached(c) => c.output.measurement.true_peak_dbtp,
        }
    }

    fn clipped(&self) -> u64 {
        match self {
            Slot::Fresh(f) => f.0.clipped,
            Slot::Cached(c) => c.clipped,
        }
    }
}

/// What one pass made: its graphs, every planned output (variant index,
/// output), its slot and key, and the change meters of its moves.
struct PassOut {
    passes: Vec<VariantPass>,
    planned: Vec<(usize, deliverables_spec::outputs::PlannedOutput)>,
    slots: Vec<Slot>,
    keys: Vec<Option<String>>,
    change_meters: Vec<ChangeMeter>,
}

/// The cache key of every output of the pack at `decided` trims, in pack
/// order, from a build with every output wanted (`None`: no cache).
fn pack_keys(
    ctx: &TaskContext<'_>,
    title: &Title,
    analysis: &AnalysisResult,
    variant_names: &[String],
    pack_rate: Option<u32>,
    decided: Option<&BTreeMap<String, FamilyTrims>>,
) -> Result<Option<Vec<Option<String>>>, TaskError> {
    if ctx.cache.is_none() {
        return Ok(None);
    }
    let (stages, passes) = build(ctx, title, analysis, variant_names, decided, &|_, _| true)?;
    Ok(Some(reuse::output_keys(
        ctx, title, analysis, pack_rate, &stages, &passes, decided,
    )))
}

/// One pass of the pack at `decided` trims (`None`: the analysis' own):
/// outputs whose key the cache holds (when `lookup`) are copied from it,
/// the rest rendered together in one pass over the stems. `keys`: the
/// outputs' keys when the caller has them.
#[allow(clippy::too_many_arguments)]
fn pack_pass(
    ctx: &TaskContext<'_>,
    title: &Title,
    analysis: &AnalysisResult,
    variant_names: &[String],
    pack_rate: Option<u32>,
    decided: Option<&BTreeMap<String, FamilyTrims>>,
    lookup: bool,
    keys: Option<Vec<Option<String>>>,
) -> Result<PassOut, TaskError> {
    let keys = match keys {
        Some(k) => k,
        None => {
            pack_keys(ctx, title, analysis, variant_names, pack_rate, decided)?.unwrap_or_default()
        }
    };
    // Planned outputs in pack order, from a build that adds no stage.
    let (_, shape) = build(ctx, title, analysis, variant_names, decided, &|_, _| false)?;
    let names: BTreeSet<&str> = shape
        .iter()
        .flat_map(|p| p.planned.iter().map(|o| o.file_name.as_str()))
        .collect();
    remove_stale_partials(&ctx.output_dir, &names);
    let mut cached: Vec<Option<Reused>> = Vec::new();
    for (p, o) in shape
        .iter()
        .flat_map(|p| p.planned.iter().map(move |o| (p, o)))
    {
        let k = keys.get(cached.len()).cloned().flatten();
        cached.push(match (ctx.cache, k) {
            (Some(cache), Some(k)) if lookup => reuse::reuse(ctx, cache, &k, title, analysis, p, o),
            _ => None,
        });
    }
    // Index of output `k` of variant `v` in pack order.
    let starts: Vec<usize> = shape
        .iter()
        .scan(0, |n, p| {
            let at = *n;
            *n += p.planned.len();
            Some(at)
        })
        .collect();
    let missing = |v: usize, k: usize| cached.get(starts[v] + k).is_none_or(Option::is_none);
    let (stages, passes) = build(ctx, title, analysis, variant_names, decided, &missing)?;
    let planned: Vec<(usize, deliverables_spec::outputs::PlannedOutput)> = passes
        .iter()
        .enumerate()
        .flat_map(|(k, p)| p.planned.iter().map(move |o| (k, o.clone())))
        .collect();
    let (mut pending, change_meters) = if cached.iter().all(Option::is_some) {
        (Vec::new(), Vec::new())
    } else {
        write_pack(ctx, title, analysis, pack_rate, stages, &passes)?
    };
    let dialogue_of = |o: &deliverables_spec::outputs::PlannedOutput| {
        analysis
            .dialogue
            .as_ref()
            .filter(|_| carries_dialogue(title, &o.stems, analysis.dialogue.as_ref()))
    };
    let fresh_planned: Vec<_> = planned
        .iter()
        .zip(&cached)
        .filter(|(_, c)| c.is_none())
        .map(|(p, _)| p.clone())
        .collect();
    let measured = finish_measurements(&mut pending, &fresh_planned, dialogue_of)?;
    let mut fresh = pending.into_iter().zip(measured);
    let slots = cached
        .into_iter()
        .map(|c| match c {
            Some(r) => Ok(Slot::Cached(Box::new(r))),
            None => fresh
                .next()
                .map(|f| Slot::Fresh(Box::new(f)))
                .ok_or_else(|| TaskError::Internal("a pass wrote fewer files than planned".into())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PassOut {
        passes,
        planned,
        slots,
        keys,
        change_meters,
    })
}

/// Renders every variant of a title's pack (at `pack_rate`) in one pass
/// over its stems: one bank of stem chains, one head per distinct graph
/// (a stem set's reference mix is the full mix's head when they are the
/// same graph), every file written and measured as the pass goes. Outputs
/// the render cache holds are copied from it instead, and only the rest
/// rendered.
///
/// When the analysis left the ceiling to the render (every master ends in
/// a limiter), the files are written untrimmed and the trims decided on
/// their measured true peaks: nothing over the ceiling, nothing to do.
/// Otherwise they are discarded, the peaks measured before quantisation
/// (as the analysis' ceiling pass does) and the pack written again with
/// the trims those give; that decision is kept in the cache under the
/// first pass's keys, so a later job with the same pack goes straight to
/// the trimmed files.
pub fn render(
    ctx: &TaskContext<'_>,
    title_name: &str,
    variant_names: &[String],
    pack_rate: Option<u32>,
) -> Result<PackResult, TaskError> {
    // Live-playback packs share no graph, gain or trim with the rest of the
    // pack: rendered on their own (see `tasks::live`).
    let spec = ctx.spec;
    let is_live = |n: &String| {
        spec.variant(n)
            .is_some_and(|v| v.output == deliverables_spec::OutputKind::Live)
    };
    let rest: Vec<String> = variant_names
        .iter()
        .filter(|n| !is_live(n))
        .cloned()
        .collect();
    let mut result = if rest.is_empty() {
        PackResult {
            title: title_name.to_string(),
            renders: Vec::new(),
            ceiling: None,
        }
    } else {
        render_pack(ctx, title_name, &rest, pack_rate)?
    };
    for n in variant_names.iter().filter(|n| is_live(n)) {
        let title = spec.title(title_name).ok_or_else(|| {
            TaskError::Internal(format!("title `{title_name}` is not in the spec"))
        })?;
        let analysis = analysis_of(ctx, title_name, pack_rate)?;
        let variant = spec
            .variant(n)
            .ok_or_else(|| TaskError::Internal(format!("variant `{n}` is not in the spec")))?;
        result.renders.push(super::live::render_live(
            ctx, title, &analysis, &variant, pack_rate,
        )?);
    }
    Ok(result)
}

/// [`render`] of every variant but the live packs.
fn render_pack(
    ctx: &TaskContext<'_>,
    title_name: &str,
    variant_names: &[String],
    pack_rate: Option<u32>,
) -> Result<PackResult, TaskError> {
    let spec = ctx.spec;
    let title = spec
        .title(title_name)
        .ok_or_else(|| TaskError::Internal(format!("title `{title_name}` is not in the spec")))?;
    let analysis = analysis_of(ctx, title_name, pack_rate)?;
    let d = spec.delivery();
    let rate = analysis.sample_rate;
    let deferred = !analysis.deferred_ceiling.is_empty();
    // The first pass's keys, and a decision an earlier job made on them.
    let first_keys = pack_keys(ctx, title, &analysis, variant_names, pack_rate, None)?;
    let pack_key = first_keys.as_deref().and_then(reuse::pack_key);
    let earlier = match (ctx.cache, &pack_key) {
        (Some(cache), Some(k)) if deferred => reuse::decided_pack(cache, k),
        _ => None,
    };
    let mut keep_decision = false;
    let (mut out, ceiling) = if let Some(earlier) = earlier {
        let out = pack_pass(
            ctx,
            title,
            &analysis,
            variant_names,
            pack_rate,
            Some(&earlier.families),
            true,
            None,
        )?;
        (out, Some(earlier))
    } else {
        let mut out = pack_pass(
            ctx,
            title,
            &analysis,
            variant_names,
            pack_rate,
            None,
            true,
            first_keys,
        )?;
        let mut ceiling = None;
        if deferred {
            let peaks: Vec<Option<f64>> = out.slots.iter().map(Slot::true_peak_dbtp).collect();
            let clipped = out.slots.iter().any(|s| s.clipped() > 0);
            let mut decided = decide_pack(d, &analysis, &out.passes, &out.planned, &peaks);
            let mut pack_passes = 1;
            if clipped
                || decided
                    .values()
                    .any(|t| t.ceiling_trim_db < 0.0 || !t.variant_trims_db.is_empty())
            {
                // Over the ceiling as written: nothing of this pass is
                // delivered (every temporary file is removed).
                drop(out);
                let all = |_: usize, _: usize| true;
                let (stages, passes_f) = build(ctx, title, &analysis, variant_names, None, &all)?;
                let planned_f: Vec<_> = passes_f
                    .iter()
                    .enumerate()
                    .flat_map(|(k, p)| p.planned.iter().map(move |o| (k, o.clone())))
                    .collect();
                let peaks = float_peaks(ctx, title, &analysis, pack_rate, stages, &passes_f)?;
                decided = decide_pack(d, &analysis, &passes_f, &planned_f, &peaks);
                out = pack_pass(
                    ctx,
                    title,
                    &analysis,
                    variant_names,
                    pack_rate,
                    Some(&decided),
                    false,
                    None,
                )?;
                pack_passes = 3;
                keep_decision = true;
            }
            let mut notes = Vec::new();
            for (name, t) in &decided {
                if t.ceiling_trim_db < 0.0 || !t.variant_trims_db.is_empty() {
                    let worst = t.output_true_peaks_dbtp.iter().fold(
                        None,
                        |w: Option<(&String, f64)>, (f, &tp)| match w {
                            Some(w) if w.1 >= tp => Some(w),
                            _ => Some((f, tp)),
                        },
                    );
                    notes.push(format!(
                        "ceiling ({:.2} dBTP working ceiling{}): {}{}",
                        d.working_ceiling_db(),
                        if name == "full" {
                            String::new()
                        } else {
                            format!(", `{name}`")
                        },
                        worst.map_or(String::new(), |(file, tp)| format!(
                            "the highest output, `{file}`, measured {tp:.3} dBTP before quantisation; "
                        )),
                        t.trim_rule
                    ));
                }
            }
            ceiling = Some(PackCeiling {
                families: decided,
                notes,
                passes: pack_passes,
            });
        }
        (out, ceiling)
    };

    // Verify every file before any becomes visible (copies from the cache
    // were verified as they were made).
    let n_planned = out.planned.len();
    let mut verified = Vec::new();
    for (i, (slot, (_, o))) in out.slots.iter_mut().zip(&out.planned).enumerate() {
        ctx.check_cancel()?;
        if let Slot::Fresh(f) = slot {
            let (p, m) = &mut **f;
            verified.push(Some(verify(p, o, rate, m.clone())?));
        } else {
            verified.push(None);
        }
        (ctx.progress)(0.7 + 0.3 * (i + 1) as f64 / n_planned as f64);
    }
    // A cancel heard while the last file was verified: nothing appears
    // (every `Pending` dropped unpublished removes its temporary file).
    ctx.check_cancel()?;
    let PassOut {
        passes,
        planned,
        slots,
        keys,
        change_meters,
    } = out;
    // The delivered change of each move: measured before the output
    // stage, so a trim this output has and the full mix has not counts too.
    let (full_title_trim, full_trims) = match ceiling.as_ref().and_then(|c| c.families.get("full"))
    {
        Some(t) => (t.ceiling_trim_db, &t.variant_trims_db),
        None => (
            analysis.level.ceiling_trim_db,
            &analysis.level.variant_trims_db,
        ),
    };
    let full_trim = full_title_trim + full_trims.get("full").copied().unwrap_or(0.0);
    let mut meters = change_meters.iter();
    let level_changes: Vec<Vec<LevelChange>> = passes
        .iter()
        .map(|p| {
            let variant = &p.variant;
            let measured: Vec<Option<f64>> = if p.measure_moves && !p.change_stages.is_empty() {
                p.moves
                    .iter()
                    .map(|_| meters.next().and_then(ChangeMeter::change_db))
                    .collect()
            } else {
                vec![None; p.moves.len()]
            };
            p.moves
                .iter()
                .zip(measured)
                .map(|(m, change)| {
                    let searched = analysis.moves.get(&variant.name);
                    let effective = change.map(|c| c + (p.trim_db + p.own_trim_db) - full_trim);
                    let mode = variant.amount_mode;
                    LevelChange {
                        targets: m.targets.clone(),
                        asked_db: m.gain_db,
                        applied_db: searched.map_or(m.gain_db, |s| s.applied_db),
                        mode,
                        effective_change_db: effective.map(crate::meter::round3),
                        within_tolerance: (mode == AmountMode::Effective)
                            .then(|| {
                                effective.map(|c| (c - m.gain_db).abs() <= EFFECTIVE_TOLERANCE_DB)
                            })
                            .flatten(),
                        note: if !p.measure_moves {
                            Some(if p.linked {
                                "measured on the variant's mix, not on its stems".to_string()
                            } else {
                                "not measured on a fold-down: the full mix is not folded"
                                    .to_string()
                            })
                        } else {
                            searched.and_then(|s| s.note.clone())
                        },
                    }
                })
                .collect()
        })
        .collect();
    let mut renders: Vec<RenderResult> = passes
        .iter()
        .map(|p| RenderResult {
            title: title.name.clone(),
            variant: p.variant.name.clone(),
            description: p.variant.description.clone(),
            outputs: Vec::new(),
        })
        .collect();
    let status = if ctx.cache.is_some() {
        CacheStatus::Miss
    } else {
        CacheStatus::Off
    };
    for (((slot, (k, o)), verified), key) in slots
        .into_iter()
        .zip(&planned)
        .zip(verified)
        .zip(keys.into_iter().chain(std::iter::repeat(None)))
    {
        let k = *k;
        let (pend, (digest_file, measurement)) = match (slot, verified) {
            (Slot::Cached(r), _) => {
                let r = *r;
                let output = r.output.clone();
                r.commit()?;
                renders[k].outputs.push(output);
                continue;
            }
            (Slot::Fresh(f), Some(v)) => (f.0, v),
            (Slot::Fresh(_), None) => {
                return Err(TaskError::Internal("an output was not verified".into()));
            }
        };
        let clipped = pend.clipped;
        pend.commit()?;
        let p = &passes[k];
        let output = RenderedOutput {
            variant: p.variant.name.clone(),
            role: o.role,
            group: o.group.clone(),
            file: FileRecord {
                path: o.file_name.clone(),
                ..digest_file
            },
            gain_db: p.gain_db,
            ceiling_trim_db: round6(p.output_trim(o)),
            fold_down_gain_db: p.tg.fold_down.as_ref().map(|_| p.fold_gain_db),
            level_policy: p.variant.level,
            mode: if o.is_stem() {
                RenderMode::LinkedStem
            } else {
                RenderMode::Mix
            },
            measurement,
            stems_trim_db: (o.is_stem() && o.ceiling).then_some(round6(p.own_trim_db)),
            remix: !o.ceiling,
            live: None,
            level_changes: if !o.is_stem() {
                level_changes[k].clone()
            } else {
                Vec::new()
            },
            cache: Some(CacheUse {
                status,
                job: ctx.job_id.to_string(),
            }),
        };
        if let (Some(cache), Some(key)) = (ctx.cache, key) {
            reuse::keep(ctx, cache, &key, &output, clipped);
        }
        renders[k].outputs.push(output);
    }
    if keep_decision && let (Some(cache), Some(k), Some(c)) = (ctx.cache, &pack_key, &ceiling) {
        cache.put(crate::cache::EntryKind::Pack, k, ctx.job_id, c, None);
    }
    Ok(PackResult {
        title: title.name.clone(),
        renders,
        ceiling,
    })
}

/// Finishes the measurement of every file (taken as it was written).
fn finish_measurements<'a>(
    pending: &mut [Pending],
    planned: &[(usize, deliverables_spec::outputs::PlannedOutput)],
    dialogue_of: impl Fn(&deliverables_spec::outputs::PlannedOutput) -> Option<&'a DialogueActivity>,
) -> Result<Vec<Measurement>, TaskError> {
    pending
        .iter_mut()
        .zip(planned)
        .map(|(p, (_, o))| finish_measurement(p, dialogue_of(o)))
        .collect()
}

/// The trims of every family the analysis left to the render, decided on
/// `peaks` (each planned output's true peak, in pack order) by the ceiling
/// rule.
fn decide_pack(
    d: &deliverables_spec::Delivery,
    analysis: &AnalysisResult,
    passes: &[VariantPass],
    planned: &[(usize, deliverables_spec::outputs::PlannedOutput)],
    peaks: &[Option<f64>],
) -> BTreeMap<String, FamilyTrims> {
    let ceiling = d.working_ceiling_db();
    analysis
        .deferred_ceiling
        .iter()
        .map(|fam| {
            let mine = || {
                planned
                    .iter()
                    .zip(peaks)
                    .filter(|((k, _), _)| passes[*k].family == fam.name)
            };
            let probed: Vec<Probed> = mine()
                .filter(|((_, o), _)| o.ceiling)
                .map(|((k, o), tp)| Probed {
                    variant: passes[*k].variant.name.clone(),
                    file: o.file_name.clone(),
                    stem: o.is_stem(),
                    true_peak_dbtp: *tp,
                })
                .collect();
            let t = decide(
                ceiling,
                &FamilyMix {
                    file: &fam.mix_file,
                    loudness: fam.loudness,
                    floor_lufs: fam.floor_lufs,
                },
                &probed,
            );
            (
                fam.name.clone(),
                FamilyTrims {
                    ceiling_trim_db: round6(t.title_db),
                    variant_trims_db: t
                        .variant_db
                        .into_iter()
                        .map(|(v, x)| (v, round6(x)))
                        .collect(),
                    trim_rule: t.rule,
                    output_true_peaks_dbtp: mine()
                        .filter_map(|((_, o), tp)| tp.map(|tp| (o.file_name.clone(), round6(tp))))
                        .collect(),
                },
            )
        })
        .collect()
}

impl VariantPass {
    /// Re-mix stems take the title's trim (they sum to the master) but no
    /// ceiling trim of their own.
    fn output_trim(&self, o: &deliverables_spec::outputs::PlannedOutput) -> f64 {
        if o.ceiling {
            self.trim_db + self.own_trim_db
        } else {
            self.trim_db
        }
    }
}

/// Deletes temporary files an earlier attempt at the pack's outputs left
/// behind (a worker killed mid-write), reading the folder once. This
/// attempt holds the lease: any writer of those files is gone or has lost
/// its lease, and its rename will fail.
fn remove_stale_partials(dir: &std::path::Path, file_names: &BTreeSet<&str>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        // `.NAME.<pid>-<n>.partial`
        let of = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".partial"))
            .and_then(|n| n.rsplit_once('.'))
            .map(|(file, _)| file);
        if of.is_some_and(|f| file_names.contains(f)) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    tracing::info!(file = %name, "removed a stale temporary file of an earlier attempt")
                }
                Err(err) => {
                    tracing::warn!(file = %name, "cannot remove a stale temporary file: {err}")
                }
            }
        }
    }
}

/// Finishes the measurement taken as the file was written: its samples as
/// the decoder gives them back.
pub(super) fn finish_measurement(
    p: &mut Pending,
    dialogue: Option<&DialogueActivity>,
) -> Result<Measurement, TaskError> {
    let Some(mut meter) = p.meter.take() else {
        return Err(TaskError::Internal(format!(
            "'{}' was written without its meter",
            p.temp_path.display()
        )));
    };
    if let (count, Some(first)) = p.invalid_samples {
        return Err(TaskError::Internal(format!(
            "'{}' would hold {count} sample(s) that are not audio (NaN, infinite or beyond +60 dBFS), first at frame {first}: the graph produced invalid floating-point output",
            p.temp_path.display()
        )));
    }
    let mut m = meter.finish();
    m.dialogue = dialogue.map(|a| a.measure(meter.blocks()));
    Ok(m)
}

/// Writes the measured loudness into the file's `bext`, then reads the
/// finished file back: its data chunk must hash to what was written, and
/// be as long.
pub(super) fn verify(
    p: &mut Pending,
    o: &deliverables_spec::outputs::PlannedOutput,
    rate: u32,
    mut m: Measurement,
) -> Result<(FileRecord, Measurement), TaskError> {
    p.write_loudness(&bext_loudness(&m))?;
    let digest = digest_wav(&p.temp_path)?;
    if digest.audio_sha256 != p.audio_sha256 || digest.data_bytes != p.data_bytes {
        return Err(TaskError::Internal(format!(
            "'{}' reads back different audio than was written ({} bytes, {} written); disk or file-system fault",
            p.temp_path.display(),
            digest.data_bytes,
            p.data_bytes
        )));
    }
    if p.clipped > 0 {
        m.notes
            .push(format!("{} samples clipped at full scale", p.clipped));
    }
    let channels = p.channels;
    let bits = o.bit_depth.bits();
    let file = FileRecord {
        path: String::new(),
        sha256: digest.sha256,
        audio_sha256: digest.audio_sha256,
        bytes: digest.bytes,
        format: "wav".to_string(),
        codec: crate::output::pcm_codec_name(o.bit_depth),
        sample_rate: rate,
        bit_depth: bits,
        sample_format: if o.bit_depth.is_float() {
            "float"
        } else {
            "int"
        }
        .to_string(),
        channels,
        frames: p.frames,
        duration_s: p.frames as f64 / f64::from(rate),
    };
    Ok((file, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_partials_of_the_packs_outputs_are_removed_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("stemforge-partials-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let names = [
            ".T_full.wav.4242-0.partial",
            ".T_full.wav.4242-7.partial",
            ".T_tv.wav.1-2.partial",
            ".T_full.wav.partial",
            "T_full.wav",
            ".Other_full.wav.9-9.partial",
        ];
        for n in names {
            std::fs::write(dir.join(n), b"x").expect("write");
        }
        remove_stale_partials(&dir, &BTreeSet::from(["T_full.wav", "T_tv.wav"]));
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .expect("read")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".Other_full.wav.9-9.partial",
                ".T_full.wav.partial",
                "T_full.wav"
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
