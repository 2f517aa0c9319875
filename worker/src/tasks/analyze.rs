//! Analysis: decode a title, find the master gain that brings the full mix to
//! the target *through the whole graph* (render, measure, adjust: the
//! limiter makes loudness non-linear in gain, so a secant step is used);
//! for variants whose level change is `effective`, search the gain of the
//! move so the delivered change equals the amount asked; then guarantee the
//! ceiling: every output is rendered once and measured with the accurate
//! true-peak estimator, and the static trims that put each one under the
//! working ceiling are decided once per title ([`super::trim`]).
//!
//! The gain search keeps, on its first pass, the signal entering each
//! family mix's `loudness` node (nothing upstream of it depends on the
//! gains searched), and runs later passes on only the graph from that node
//! on: the same samples in the same blocks, so the same result as running
//! the whole graph each pass ([`GainPasses`]). What it keeps stays in
//! memory up to a bound and spills to a temporary file past it. Every other
//! pass (probes of outputs for clip safety, effective moves, the ceiling)
//! re-decodes the stems instead of buffering them: memory does not grow
//! with duration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use deliverables_spec::LevelPolicy;
use deliverables_spec::delivery::LoudnessTarget;
use deliverables_spec::manifest::{EFFECTIVE_TOLERANCE_DB, InputRecord, LevelChange, LevelRecord};
use deliverables_spec::model::LoudnessBasis;
use deliverables_spec::model::{AmountMode, BitDepth};
use deliverables_spec::model::{Dither, Layout, NodeKind, Title};
use deliverables_spec::outputs::{PlannedOutput, sounding_stems, title_outputs};
use deliverables_spec::plan::title_variants;
use deliverables_spec::variant::{
    Move, TitleGraph, Variant, resolve_variant, title_graph, variants,
};
use serde::{Deserialize, Serialize};

use super::effective::{ChangeMeter, move_stems};
use super::stream::{BlockAt, Stages, run_heads_untrimmed, run_stages};
use super::trim::{FamilyMix, Probed, Trims, decide};
use super::{TaskContext, TaskError};
use crate::cache::EntryKind;
use crate::decode::StemReader;
use crate::dialogue::DialogueActivity;
use crate::dsp::chain::ChainContext;
use crate::dsp::graph::{MasterTail, loudness_cut, upstream_of};
use crate::dsp::resample::Resampler;
use crate::dsp::true_peak::TruePeakDetector;
use crate::dsp::{Block, gain_to_db};
use crate::meter::{Meter, MeterKind, round3};
use crate::output::{DitherSeed, OutputStage, Quantizer, sha256_of};
use crate::source::{BLOCK_FRAMES, TitleSource};

use super::signal_cache::{DEFAULT_MEMORY_BOUND, SignalCache};

const MAX_PASSES: u32 = 8;
/// Loudness error that ends the search, LU.
const LOUDNESS_TOLERANCE: f64 = 0.005;
/// Gain steps below this end the search, dB.
const CONVERGED_DB: f64 = 0.001;
/// Kept below full scale so rounding never reaches a clipped code, dB.
const CLIP_MARGIN_DB: f64 = 0.0001;

/// What renders need from the analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisResult {
    pub title: String,
    pub sample_rate: u32,
    /// Length of every output: the longest stem.
    pub frames: u64,
    pub inputs: Vec<InputRecord>,
    /// The full mix's family: the full mix and every matched output.
    pub level: LevelRecord,
    /// Integrated loudness of the full mix at the master gain.
    pub full_mix_lufs: Option<f64>,
    /// Normalized variants other than `full`: their own gain and trim.
    pub normalized: BTreeMap<String, LevelRecord>,
    /// Where the dialogue stem is active (titles with a dialogue stem).
    #[serde(default)]
    pub dialogue: Option<DialogueActivity>,
    /// BWF `TimeReference` every output carries: the stems' (0 without bext).
    #[serde(default)]
    pub time_reference: u64,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Variants whose level change is `effective`: the gain their move is
    /// applied at, and the change the analysis measured at that gain.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub moves: BTreeMap<String, LevelChange>,
    /// Set when every family's master ends in a limiter: no ceiling pass
    /// here; the render task measures the files it writes and decides the
    /// trims of these families on them (rendering again only if one is
    /// needed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred_ceiling: Vec<super::trim::FamilyCeiling>,
}

impl AnalysisResult {
    /// The level record of the family `variant` belongs to: its own for a
    /// normalized variant, else the full mix's.
    pub fn level_of(&self, variant: &Variant) -> &LevelRecord {
        match (variant.level, self.normalized.get(&variant.name)) {
            (LevelPolicy::Normalized, Some(own)) => own,
            _ => &self.level,
        }
    }

    /// The variant as rendered: an effective move at the gain found.
    pub fn applied(&self, variant: &Variant) -> Variant {
        match self.moves.get(&variant.name) {
            Some(m) => variant.with_move_gain(m.applied_db),
            None => variant.clone(),
        }
    }
}

/// A set of outputs that share one gain, and the mix whose loudness sets it.
struct Family {
    name: String,
    /// File name of the family's mix (its dither seed), for the ceiling check.
    mix_file: String,
    gain_db: f64,
    /// The loudness rule this family's mix is brought to.
    target: LoudnessTarget,
    search: GainSearch,
    at_unity: Option<f64>,
    loudness: Option<f64>,
    true_peak_db: Option<f64>,
    clip_safety_db: f64,
    clip_output: Option<String>,
    converged: bool,
    /// Peaks are bounded by a limiter on the master (a fold-down's: after
    /// the fold): no clip probes needed.
    limited: bool,
    /// A fold-down family: `gain_db` is the gain after the fold; the 5.1
    /// master keeps the full mix's gain.
    fold: bool,
    /// For a fold-down: the master gain its last pass ran at. Its search
    /// starts afresh when that moves (the function it searches changed).
    master_at: Option<f64>,
    /// The family's mix carries a dialogue stem: its share of the
    /// programme (measured on the mix) picks the loudness rule.
    has_dialogue: bool,
    /// That share, from the last pass.
    dialogue_share: Option<f64>,
}

impl Family {
    /// The master gain and the fold-down gain a probe of this family runs at.
    fn gains(&self, full: &Family) -> (f64, f64) {
        if self.fold {
            (full.gain_db, self.gain_db)
        } else {
            (self.gain_db, 0.0)
        }
    }
}

/// One graph rendered in a pass.
struct Probe {
    family: usize,
    /// The family's mix: sets the gain by its loudness.
    measures_loudness: bool,
    /// Quantised as this file will be written, and its true peak measured.
    output: Option<ProbeOutput>,
    label: String,
    variant: Variant,
    stems: Vec<usize>,
    /// Index of the probe whose envelopes a linked stem replays.
    reference: Option<usize>,
    /// Index of an earlier probe this one's signal is compared with (the
    /// moved roles in the full mix, for an effective change).
    compare: Option<usize>,
}

/// A file as a probe writes it: its dither seed and its sample format.
#[derive(Clone)]
struct ProbeOutput {
    variant: String,
    file: String,
    bit_depth: BitDepth,
}

impl Probe {
    /// A graph rendered for its peaks and envelopes only.
    fn plain(family: usize, label: String, variant: Variant, stems: Vec<usize>) -> Probe {
        Probe {
            family,
            measures_loudness: false,
            output: None,
            label,
            variant,
            stems,
            reference: None,
            compare: None,
        }
    }
}

/// `rate`: this pack's rate when the spec delivers several
/// (`delivery.sample_rates`); else `delivery.sample_rate` applies.
pub fn analyze(
    ctx: &TaskContext<'_>,
    title_name: &str,
    rate: Option<u32>,
) -> Result<AnalysisResult, TaskError> {
    let spec = ctx.spec;
    let Some(title) = spec.title(title_name) else {
        return Err(TaskError::Internal(format!(
            "title `{title_name}` is not in the spec"
        )));
    };
    // Everything of the spec the analysis reads besides the title.
    let settings = serde_json::json!({
        "rate": rate,
        "graph": spec.spec.graph,
        "variants": spec.spec.variants,
        "preflight": spec.spec.preflight,
        "delivery": super::reuse::delivery_key(spec.delivery()),
    });
    super::reuse::title_result(ctx, EntryKind::Analysis, title, settings, || {
        analyze_with(ctx, title_name, rate, &GainPasses::default_cached()).map(|(r, _)| r)
    })
}

/// [`analyze`] with the gain search's passes run as `gain_passes` says
/// (the result is the same either way); also tells how they ran.
pub(crate) fn analyze_with(
    ctx: &TaskContext<'_>,
    title_name: &str,
    rate: Option<u32>,
    gain_passes: &GainPasses,
) -> Result<(AnalysisResult, GainPassStats), TaskError> {
    let spec = ctx.spec;
    let title = spec
        .title(title_name)
        .ok_or_else(|| TaskError::Internal(format!("title `{title_name}` is not in the spec")))?;
    let d = spec.delivery();
    let delivery_rate = rate.or(d.sample_rate);
    let paths: Vec<PathBuf> = title.stems.iter().map(|s| spec.path(&s.file)).collect();

    let mut notes = super::preflight::gate(ctx, title_name)?;
    // Open once to learn formats and rate (and to fail early on bad input).
    let source =
        TitleSource::open_edited(&paths, delivery_rate, title.layout, title.edit.as_ref())?;
    let rate = source.sample_rate;
    let infos = source.infos();
    let expected_frames = source.expected_frames().max(1);
    drop(source);

    let dialogue = find_dialogue(ctx, title, d, delivery_rate)?;
    // A first estimate: the share is measured on each family's mix, over its
    // gated programme, from the first pass on.
    let blocks_total = crate::dialogue::gating_blocks(expected_frames, rate);
    let first_share = dialogue.as_ref().map(|a| a.share(blocks_total));

    let all = variants(&spec.spec);
    // A live-playback pack has no master gain, trim or ceiling pass of its
    // own: the render measures and sets its stems' gains.
    let live: Vec<&Variant> = title_variants(&spec.spec, title, &all)
        .keep
        .into_iter()
        .filter(|v| v.output != deliverables_spec::OutputKind::Live)
        .collect();
    let full = resolve_variant(
        "full",
        &spec.spec.variants.get("full").cloned().unwrap_or_default(),
        &spec.spec.graph,
    );
    let every_stem: Vec<usize> = (0..title.stems.len()).collect();
    let family = |v: &Variant| Family::new(ctx, title, v, rate, dialogue.as_ref(), first_share);
    let mut families = vec![family(&full)];
    let loudness_probe = |family: usize, f: &Family, v: &Variant| Probe {
        measures_loudness: true,
        output: Some(ProbeOutput {
            variant: f.name.clone(),
            file: f.mix_file.clone(),
            bit_depth: d.bit_depth,
        }),
        ..Probe::plain(
            family,
            format!("{} mix", v.name),
            v.clone(),
            every_stem.clone(),
        )
    };
    let mut probes = vec![loudness_probe(0, &families[0], &full)];
    for v in &live {
        let family = if v.level == LevelPolicy::Normalized && v.name != "full" {
            families.push(family(v));
            let fi = families.len() - 1;
            probes.push(loudness_probe(fi, &families[fi], v));
            fi
        } else {
            0
        };
        if families[family].limited {
            continue;
        }
        // Without a master limiter, every output's peak decides the clip safety.
        let outs = title_outputs(&spec.spec, d, title, v, rate);
        let reference = if outs.iter().any(|o| o.is_stem()) {
            probes.push(Probe::plain(
                family,
                format!("{} mix", v.name),
                (*v).clone(),
                every_stem.clone(),
            ));
            Some(probes.len() - 1)
        } else {
            None
        };
        for o in outs {
            probes.push(Probe {
                reference: reference.filter(|_| o.is_stem()),
                ..Probe::plain(family, o.file_name.clone(), (*v).clone(), o.stems.clone())
            });
        }
    }

    let full_scale = Quantizer::new(d.bit_depth).full_scale();
    let mut passes = 0;
    let mut frames = 0;
    let mut stem_frames = Vec::new();
    let input = PassInput {
        title,
        delivery_rate,
        rate,
        paths: &paths,
        expected_frames,
        dialogue: dialogue.as_ref(),
    };
    let mut stats = GainPassStats::default();
    let mut cached = match gain_passes {
        GainPasses::WholeGraph => None,
        GainPasses::Cached {
            memory_bound,
            spill_dir,
        } => CachedPasses::plan(ctx, title, &probes, *memory_bound, spill_dir.clone()),
    };
    while passes < MAX_PASSES {
        passes += 1;
        let pass = match cached
            .as_mut()
            .map(|c| c.run(ctx, &input, &probes, &families, passes))
        {
            None => run_pass(ctx, &input, &probes, &families, passes)?,
            Some(Ok(pass)) => {
                stats.cached_passes += u32::from(passes > 1);
                pass
            }
            Some(Err(CachedFailure::Task(e))) => return Err(e),
            Some(Err(CachedFailure::Cache(e))) => {
                tracing::warn!(
                    title = %title.name,
                    error = %e,
                    "level search cannot read the kept signal back; running whole graphs"
                );
                cached = None;
                run_pass(ctx, &input, &probes, &families, passes)?
            }
        };
        frames = pass.frames;
        stem_frames = pass.stem_frames;
        let mut all_converged = true;
        // The master gain this pass ran at, and whether it has settled.
        let full_gain = families[0].gain_db;
        let mut master_settled = false;
        // How far the master gain moves after this pass (family 0 first).
        let mut master_step = 0.0;
        for (fi, fam) in families.iter_mut().enumerate() {
            let mut peak = (0.0_f64, String::new());
            for (p, r) in probes.iter().zip(&pass.readings) {
                if p.family != fi {
                    continue;
                }
                if p.measures_loudness {
                    if fam.has_dialogue
                        && passes <= 2
                        && let Some(share) = r.dialogue_share
                    {
                        // The rule follows the share measured on the mix
                        // (settled after the first passes, so the search
                        // cannot chase a share that moves with the gain);
                        // a new rule is a new function to search.
                        let target = d.loudness_target(Some(share));
                        if target != fam.target {
                            fam.target = target;
                            fam.search = GainSearch::default();
                        }
                        fam.dialogue_share = Some(share);
                    }
                    fam.loudness = match fam.target.basis {
                        LoudnessBasis::Dialogue => r.dialogue_loudness,
                        LoudnessBasis::Programme => r.loudness,
                    };
                    fam.true_peak_db = r.true_peak_db;
                }
                if r.peak > peak.0 {
                    peak = (r.peak, p.label.clone());
                }
            }
            if passes == 1 {
                fam.at_unity = fam.loudness;
            }
            if fam.loudness.is_none() && fi == 0 && passes == 1 {
                return Err(TaskError::Input(format!(
                    "title `{title_name}`: the full mix is silent (no 400 ms block above -70 LUFS); check the stems are the right files"
                )));
            }
            if fam.loudness.is_none() && passes == 1 {
                notes.push(format!(
                    "variant `{}` is silent; it keeps gain 0 dB",
                    fam.name
                ));
                fam.converged = true;
                continue;
            }
            // Silence at a very low trial gain reads as "far below the target".
            let l = fam.loudness.unwrap_or(f64::NEG_INFINITY);
            let target = fam.target.target_lufs;
            let err = target - l;
            if fam.fold {
                // This pass ran the master at `full_gain` (before family 0's
                // update below): a new master gain is a new function.
                if fam.master_at != Some(full_gain) {
                    fam.search = GainSearch::default();
                }
                fam.master_at = Some(full_gain);
            }
            let want = fam.search.next(fam.gain_db, l, target) - fam.gain_db;
            let headroom = if peak.0 > 0.0 && !fam.limited {
                gain_to_db(full_scale / peak.0) - CLIP_MARGIN_DB
            } else {
                f64::INFINITY
            };
            let step = want.min(headroom);
            fam.clip_safety_db = if want > headroom {
                (err - headroom.max(0.0)).max(0.0)
            } else {
                0.0
            };
            fam.clip_output = (fam.clip_safety_db > CONVERGED_DB).then(|| peak.1.clone());
            fam.converged = (step.abs() < CONVERGED_DB
                || (step == want && err.abs() < LOUDNESS_TOLERANCE))
                // A fold-down has settled only on a settled master.
                && (!fam.fold || master_settled);
            if !fam.converged {
                // A fold-down follows its master: the fold gain's step is
                // net of what the master moves, which moves it as much.
                let compensate = if fam.fold { master_step } else { 0.0 };
                fam.gain_db = round6(fam.gain_db + step - compensate);
                all_converged = false;
            }
            if fi == 0 {
                master_settled = fam.converged;
                master_step = fam.gain_db - full_gain;
            }
        }
        if all_converged {
            break;
        }
    }
    // The kept signal (and its spill file) is not needed past the search.
    stats.spilled_bytes = cached.as_ref().map_or(0, CachedPasses::spilled_bytes);
    drop(cached);
    if families.iter().any(|f| !f.converged) {
        notes.push(format!(
            "level search stopped after {MAX_PASSES} passes within {:.3} LU of the target",
            families
                .iter()
                .filter_map(|f| f.loudness.map(|l| (f.target.target_lufs - l).abs()))
                .fold(0.0, f64::max)
        ));
    }
    for f in &families {
        if f.clip_safety_db > CONVERGED_DB {
            notes.push(format!(
                "clip safety: `{}` gain lowered {:.2} dB below the loudness target so that `{}` does not clip (no limiter on the master)",
                f.name,
                f.clip_safety_db,
                f.clip_output.as_deref().unwrap_or("?")
            ));
        }
    }

    let moves = search_moves(ctx, &input, &live, &families)?;
    for m in moves.values() {
        if let Some(n) = &m.note {
            notes.push(n.clone());
        }
    }
    // Behind a master limiter every output is almost always under the
    // ceiling: the render checks its written files instead of a whole pass
    // here. Without one, peaks follow the gain: probe them first.
    let defer = families.iter().all(|f| f.limited);
    let (probed, output_peaks) = if defer {
        (Vec::new(), Vec::new())
    } else {
        ceiling_pass(ctx, &input, &live, &families, &moves)?
    };

    // Input records: content hashes and formats.
    let mut inputs = Vec::new();
    for (((s, p), info), &n) in title.stems.iter().zip(&paths).zip(&infos).zip(&stem_frames) {
        if let Some(stated) = info.frames
            && stated != n
        {
            notes.push(format!(
                "stem `{}`: header states {stated} frames but {n} decoded (truncated or mislabelled file)",
                s.file
            ));
        }
        // The stem's length at the working rate (it may have been converted).
        let n_here = Resampler::output_frames(n, info.sample_rate, rate);
        if info.sample_rate != rate {
            notes.push(format!(
                "stem `{}` is {} Hz: converted to {rate} Hz (polyphase, pass band flat to 20 kHz)",
                s.file, info.sample_rate
            ));
        }
        if n_here < frames {
            notes.push(format!(
                "stem `{}` is {} frames shorter than the longest stem; padded with silence",
                s.file,
                frames - n_here
            ));
        }
        inputs.push(input_record(&s.file, "stem", Some(s.role), p, info, n)?);
    }
    let time_reference = timeline_position(&inputs, rate, &mut notes);
    if let Some(r) = &title.reference {
        let p = spec.path(r);
        let rd = StemReader::open(&p)?;
        let info = rd.info().clone();
        inputs.push(input_record(
            r,
            "reference",
            None,
            &p,
            &info,
            info.frames.unwrap_or(0),
        )?);
    }

    let ceiling = d.working_ceiling_db();
    let full_gain = families[0].gain_db;
    let rec = |fi: usize, f: &Family, notes: &mut Vec<String>| {
        let own: Vec<Probed> = probed
            .iter()
            .filter(|(i, _)| *i == fi)
            .map(|(_, p)| p.clone())
            .collect();
        let Trims {
            title_db: trim,
            variant_db,
            rule,
        } = decide(
            ceiling,
            &FamilyMix {
                file: &f.mix_file,
                loudness: f.loudness,
                floor_lufs: f.target.target_lufs - f.target.tolerance_lu,
            },
            &own,
        );
        if !defer && (trim < 0.0 || !variant_db.is_empty()) {
            let worst = own
                .iter()
                .filter_map(|p| p.true_peak_dbtp.map(|tp| (tp, &p.file)))
                .fold(None, |w: Option<(f64, &String)>, x| match w {
                    Some(w) if w.0 >= x.0 => Some(w),
                    _ => Some(x),
                });
            notes.push(format!(
                "ceiling ({ceiling:.2} dBTP working ceiling): {}{rule}",
                worst.map_or(String::new(), |(tp, file)| format!(
                    "the highest output, `{file}`, measured {tp:.3} dBTP after quantisation; "
                ))
            ));
        }
        LevelRecord {
            full_mix_lufs_at_unity: f.at_unity,
            master_gain_db: round6(if f.fold { full_gain } else { f.gain_db }),
            clip_safety_db: round6(f.clip_safety_db),
            clip_safety_output: f.clip_output.clone(),
            passes,
            mix_true_peak_dbtp: f.true_peak_db.map(round6),
            ceiling_trim_db: round6(trim),
            loudness_target: Some(f.target.clone()),
            dialogue_share: f.dialogue_share.map(|s| (s * 10_000.0).round() / 10_000.0),
            fold_down_gain_db: f.fold.then(|| round6(f.gain_db)),
            variant_trims_db: variant_db
                .into_iter()
                .map(|(v, t)| (v, round6(t)))
                .collect(),
            trim_rule: (!defer).then_some(rule),
            render_passes: None,
            output_true_peaks_dbtp: output_peaks
                .iter()
                .filter(|(i, _, _)| *i == fi)
                .map(|(_, file, tp)| (file.clone(), round6(*tp)))
                .collect(),
        }
    };
    let level = rec(0, &families[0], &mut notes);
    let mut normalized = BTreeMap::new();
    for (fi, f) in families.iter().enumerate().skip(1) {
        normalized.insert(f.name.clone(), rec(fi, f, &mut notes));
    }
    (ctx.progress)(1.0);
    let result = AnalysisResult {
        title: title.name.clone(),
        sample_rate: rate,
        frames,
        inputs,
        level,
        full_mix_lufs: families[0].loudness,
        normalized,
        dialogue,
        time_reference,
        notes,
        moves,
        deferred_ceiling: if defer {
            families
                .iter()
                .enumerate()
                .map(|(fi, f)| super::trim::FamilyCeiling {
                    name: if fi == 0 {
                        "full".into()
                    } else {
                        f.name.clone()
                    },
                    mix_file: f.mix_file.clone(),
                    loudness: f.loudness,
                    floor_lufs: f.target.target_lufs - f.target.tolerance_lu,
                })
                .collect()
        } else {
            Vec::new()
        },
    };
    Ok((result, stats))
}

/// The stems' BWF `TimeReference`: outputs start where the stems start on
/// the session timeline. Stems that disagree are noted; the first one wins.
/// A stem's `TimeReference` counts samples at its own rate; outputs carry it
/// at the working rate (`rate`).
fn timeline_position(inputs: &[InputRecord], rate: u32, notes: &mut Vec<String>) -> u64 {
    let mut with = inputs.iter().filter(|i| i.kind == "stem").filter_map(|i| {
        i.time_reference
            .map(|t| (i, Resampler::output_frames(t, i.sample_rate, rate)))
    });
    let Some((first, t)) = with.next() else {
        return 0;
    };
    for (other, u) in with {
        if u != t {
            notes.push(format!(
                "stems disagree on their BWF TimeReference: `{}` starts at sample {t}, `{}` at {u}; outputs carry {t}. Check the stems were printed from the same session start",
                first.path, other.path
            ));
        }
    }
    t
}

/// Where the title's dialogue is, when it has stems of the dialogue roles.
fn find_dialogue(
    ctx: &TaskContext<'_>,
    title: &Title,
    d: &deliverables_spec::Delivery,
    delivery_rate: Option<u32>,
) -> Result<Option<DialogueActivity>, TaskError> {
    let gate = &d.dialogue;
    let paths: Vec<PathBuf> = title
        .stems
        .iter()
        .filter(|s| gate.roles.contains(&s.role))
        .map(|s| ctx.spec.path(&s.file))
        .collect();
    let roles: Vec<_> = gate
        .roles
        .iter()
        .copied()
        .filter(|r| title.stems.iter().any(|s| s.role == *r))
        .collect();
    crate::dialogue::find(
        &paths,
        &roles,
        delivery_rate,
        title.layout,
        title.edit.as_ref(),
        gate,
        || ctx.check_cancel().is_err(),
    )
    .map_err(TaskError::from)
}

/// Whether any stem of the dialogue roles sounds in this graph.
pub fn carries_dialogue(
    title: &Title,
    sounding: &[usize],
    activity: Option<&DialogueActivity>,
) -> bool {
    activity.is_some_and(|a| {
        sounding.iter().any(|&i| {
            title
                .stems
                .get(i)
                .is_some_and(|s| a.roles.contains(&s.role))
        })
    })
}

impl Family {
    fn new(
        ctx: &TaskContext<'_>,
        title: &Title,
        v: &Variant,
        rate: u32,
        dialogue: Option<&DialogueActivity>,
        share: Option<f64>,
    ) -> Self {
        let tg = title_graph(&ctx.spec.spec.graph, title, v);
        let has_dialogue = carries_dialogue(title, &sounding_stems(&tg), dialogue);
        let dialogue_share = share.filter(|_| has_dialogue);
        let target = ctx.spec.delivery().loudness_target(dialogue_share);
        let mix_file = deliverables_spec::naming::mix_file_name(
            ctx.spec.delivery(),
            &title.name,
            &v.name,
            rate,
        );
        Family {
            name: v.name.clone(),
            mix_file,
            gain_db: 0.0,
            target,
            search: GainSearch::default(),
            at_unity: None,
            loudness: None,
            true_peak_db: None,
            clip_safety_db: 0.0,
            clip_output: None,
            converged: false,
            limited: match &tg.fold_down {
                Some(f) => &f.chain,
                None => &tg.master,
            }
            .iter()
            .any(|n| matches!(n.kind, NodeKind::Limiter { .. })),
            // Only a normalized fold-down has a gain of its own; a matched
            // one is in the full mix's family at fold gain 0 dB.
            fold: tg.fold_down.is_some() && v.level == LevelPolicy::Normalized && v.name != "full",
            master_at: None,
            has_dialogue,
            dialogue_share,
        }
    }
}

/// Largest change of a gain in one pass, dB.
const MAX_STEP_DB: f64 = 24.0;
/// Range an effective move's gain is searched in, dB (a variant's gains).
const MOVE_RANGE_DB: (f64, f64) = (-60.0, 24.0);
/// Distance from the asked change that ends a move's search, dB.
const MOVE_CONVERGED_DB: f64 = 0.01;
/// Range the master gain is searched in, dB.
const GAIN_RANGE_DB: (f64, f64) = (-60.0, 40.0);

/// Finds the gain at which loudness meets the target. Loudness rises with
/// gain, but by less than 1 dB per dB once a limiter works (and not at all
/// when it saturates), so: a secant step, kept inside the bracket of gains
/// known to be below and above the target (bisecting otherwise), at most
/// `MAX_STEP_DB` per pass, within `GAIN_RANGE_DB`.
#[derive(Debug, Default, Clone)]
struct GainSearch {
    below: Option<f64>,
    above: Option<f64>,
    last: Option<(f64, f64)>,
}

impl GainSearch {
    fn next(&mut self, gain: f64, loudness: f64, target: f64) -> f64 {
        if loudness < target {
            self.below = Some(self.below.map_or(gain, |b| b.max(gain)));
        } else {
            self.above = Some(self.above.map_or(gain, |a| a.min(gain)));
        }
        let err = target - loudness;
        let slope = match self.last {
            Some((g0, l0))
                if (gain - g0).abs() > 1e-9 && loudness.is_finite() && l0.is_finite() =>
            {
                (loudness - l0) / (gain - g0)
            }
            _ => 1.0,
        };
        self.last = Some((gain, loudness));
        let mut next = if err.is_finite() && slope > 0.02 {
            gain + (err / slope).clamp(-MAX_STEP_DB, MAX_STEP_DB)
        } else if err.is_finite() {
            gain + err.signum() * MAX_STEP_DB.min(err.abs().max(1.0))
        } else {
            gain + MAX_STEP_DB
        };
        if let (Some(b), Some(a)) = (self.below, self.above)
            && !(next > b && next < a)
        {
            next = 0.5 * (a + b);
        }
        next.clamp(GAIN_RANGE_DB.0, GAIN_RANGE_DB.1)
    }
}

/// Gains are rounded so they travel through JSON unchanged (determinism).
pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

struct Reading {
    /// Integrated loudness of the whole programme.
    loudness: Option<f64>,
    /// Over the dialogue blocks only (titles with dialogue).
    dialogue_loudness: Option<f64>,
    /// Share of the gated programme with dialogue (titles with dialogue).
    dialogue_share: Option<f64>,
    /// Sample peak before quantisation (linear).
    peak: f64,
    /// True peak of the quantised, dithered file the probe writes, dBTP.
    true_peak_db: Option<f64>,
    /// Change against the compared probe, dB (probes with `compare`).
    change_db: Option<f64>,
}

/// What one pass found.
struct PassOutcome {
    readings: Vec<Reading>,
    /// The title's length: its longest stem.
    frames: u64,
    /// Each stem's own length.
    stem_frames: Vec<u64>,
}

/// The context every graph of this title is built with: its rate and
/// layout, the master gain and (fold-downs) the gain after the fold.
pub fn chain_context(
    ctx: &TaskContext<'_>,
    rate: u32,
    layout: Layout,
    gain_db: f64,
    fold_gain_db: f64,
) -> ChainContext {
    ChainContext {
        sample_rate: rate,
        channels: layout.channels(),
        max_block: BLOCK_FRAMES,
        loudness_db: gain_db,
        fold_gain_db,
        default_ceiling_db: ctx.spec.delivery().working_ceiling_db(),
    }
}

/// What every pass reads: the title, its stems, and where its dialogue is.
#[derive(Clone, Copy)]
struct PassInput<'a> {
    title: &'a Title,
    /// The rate asked for (`None`: the stems' own).
    delivery_rate: Option<u32>,
    /// The working rate that gives.
    rate: u32,
    paths: &'a [PathBuf],
    expected_frames: u64,
    dialogue: Option<&'a DialogueActivity>,
}

/// Renders every probe once.
fn run_pass(
    ctx: &TaskContext<'_>,
    input: &PassInput<'_>,
    probes: &[Probe],
    families: &[Family],
    pass: u32,
) -> Result<PassOutcome, TaskError> {
    let PassInput {
        title,
        delivery_rate,
        paths,
        rate: _,
        expected_frames,
        dialogue,
    } = *input;
    let mut source =
        TitleSource::open_edited(paths, delivery_rate, title.layout, title.edit.as_ref())?;
    let rate = source.sample_rate;
    let spec = &ctx.spec.spec;
    let mut stages = Stages::default();
    for p in probes {
        let tg = title_graph(&spec.graph, title, &p.variant);
        let (master_db, fold_db) = families[p.family].gains(&families[0]);
        let cc = chain_context(ctx, rate, title.layout, master_db, fold_db);
        stages
            .add(&tg, &cc, |i| p.stems.contains(&i), p.reference)
            .map_err(|e| TaskError::Input(format!("title `{}`: {e}", title.name)))?;
    }
    let mut acc = Probes::new(ctx, title, rate, dialogue.is_some(), probes, |i| {
        stages.out_channels(i)
    })?;
    let frames = run_stages(
        ctx,
        &mut source,
        &mut stages,
        expected_frames,
        |f| (ctx.progress)(((f64::from(pass - 1) + f) / 3.0).min(0.95)),
        |i, block| acc.add(i, block),
    )?;
    Ok(PassOutcome {
        readings: acc.readings(dialogue),
        frames,
        stem_frames: source.stem_positions(),
    })
}

/// What each probe of a pass measures, fed block by block.
struct Probes<'p> {
    probes: &'p [Probe],
    acc: Vec<Acc>,
}

struct Acc {
    meter: Option<Meter>,
    peak: f64,
    out_stage: Option<OutputStage>,
    tp: Option<TruePeakDetector>,
    quantised: Block,
    /// A copy of the last block, for the probes compared with this one.
    copy: Option<Block>,
    change: Option<ChangeMeter>,
}

impl<'p> Probes<'p> {
    /// `channels(i)`: the channels of probe `i`'s output. `dialogue`: the
    /// title has dialogue (its meters keep their blocks).
    fn new(
        ctx: &TaskContext<'_>,
        title: &Title,
        rate: u32,
        dialogue: bool,
        probes: &'p [Probe],
        channels: impl Fn(usize) -> usize,
    ) -> Result<Probes<'p>, TaskError> {
        let d = ctx.spec.delivery();
        let compared: Vec<usize> = probes.iter().filter_map(|p| p.compare).collect();
        let acc = probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let channels = channels(i);
                let out_stage = p.output.as_ref().map(|o| {
                    let seed = DitherSeed {
                        title: &title.name,
                        variant: &o.variant,
                        output: &o.file,
                    };
                    OutputStage::new(
                        o.bit_depth,
                        channels,
                        0.0,
                        (d.dither == Dither::Tpdf).then_some(seed),
                    )
                });
                Ok(Acc {
                    meter: match (p.measures_loudness, dialogue) {
                        (false, _) => None,
                        (true, false) => {
                            Some(Meter::new(channels, rate, MeterKind::IntegratedOnly)?)
                        }
                        (true, true) => Some(Meter::with_blocks(
                            channels,
                            rate,
                            MeterKind::IntegratedOnly,
                        )?),
                    },
                    peak: 0.0,
                    tp: out_stage
                        .as_ref()
                        .map(|_| TruePeakDetector::new(channels, rate)),
                    out_stage,
                    quantised: Block::new(channels, BLOCK_FRAMES),
                    copy: compared
                        .contains(&i)
                        .then(|| Block::new(channels, BLOCK_FRAMES)),
                    change: p.compare.map(|_| ChangeMeter::default()),
                })
            })
            .collect::<Result<_, TaskError>>()?;
        Ok(Probes { probes, acc })
    }

    /// Probe `i`'s next block of output.
    fn add(&mut self, i: usize, block: &Block) -> Result<(), TaskError> {
        let (done, rest) = self.acc.split_at_mut(i);
        let a = &mut rest[0];
        a.peak = a.peak.max(block.peak());
        if let Some(m) = &mut a.meter {
            m.add(block)?;
        }
        if let (Some(os), Some(tp)) = (&mut a.out_stage, &mut a.tp) {
            os.render(block, &mut a.quantised);
            tp.push_block(&a.quantised);
        }
        if let Some(c) = &mut a.copy {
            c.copy_from(block);
        }
        if let (Some(ch), Some(j)) = (&mut a.change, self.probes[i].compare)
            && let Some(full) = done.get(j).and_then(|r| r.copy.as_ref())
        {
            ch.add(full, block);
        }
        Ok(())
    }

    /// What every probe measured over the whole title.
    fn readings(mut self, dialogue: Option<&DialogueActivity>) -> Vec<Reading> {
        self.acc
            .iter_mut()
            .map(|a| {
                let blocks = a.meter.as_ref().map(Meter::blocks).unwrap_or(&[]);
                Reading {
                    loudness: a.meter.as_ref().and_then(Meter::integrated),
                    dialogue_loudness: dialogue.and_then(|act| {
                        crate::meter::gated_integrated(
                            blocks
                                .iter()
                                .enumerate()
                                .filter(|&(j, _)| act.is_active(j as u64))
                                .map(|(_, &e)| e),
                        )
                    }),
                    dialogue_share: dialogue
                        .filter(|_| a.meter.is_some())
                        .map(|act| act.share_of(blocks)),
                    peak: a.peak,
                    true_peak_db: a
                        .tp
                        .as_mut()
                        .map(|t| gain_to_db(t.finish()))
                        .filter(|v| v.is_finite()),
                    change_db: a.change.as_ref().and_then(ChangeMeter::change_db),
                }
            })
            .collect()
    }
}

/// How the gain search runs its passes.
#[derive(Debug, Clone)]
pub(crate) enum GainPasses {
    /// Every pass decodes the stems and runs every probe's whole graph
    /// (what the cached passes are tested against).
    #[cfg_attr(not(test), allow(dead_code))]
    WholeGraph,
    /// Pass 1 runs the graphs upstream of each loudness probe's `loudness`
    /// node and keeps what enters that node (up to `memory_bound` bytes in
    /// memory, the rest in a file in `spill_dir`); later passes run only the
    /// tails ([`MasterTail`]) on it. Probe sets it cannot make exact run
    /// whole graphs.
    Cached {
        memory_bound: usize,
        spill_dir: PathBuf,
    },
}

impl GainPasses {
    /// What [`analyze`] uses: cached, spilling to the system's temporary
    /// folder (`TMPDIR`) past [`DEFAULT_MEMORY_BOUND`].
    fn default_cached() -> GainPasses {
        GainPasses::Cached {
            memory_bound: DEFAULT_MEMORY_BOUND,
            spill_dir: std::env::temp_dir(),
        }
    }
}

/// How the gain search's passes ran.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct GainPassStats {
    /// Passes run from the kept signal (no decode, no stem chains, no buses).
    pub cached_passes: u32,
    /// Bytes of the kept signal written to the spill file.
    pub spilled_bytes: u64,
}

/// Why a cached pass did not give its outcome.
enum CachedFailure {
    /// The pass failed as a whole-graph pass would (input, cancel, meter).
    Task(TaskError),
    /// The kept signal cannot be written or read back: whole-graph passes
    /// take over.
    Cache(std::io::Error),
}

impl From<TaskError> for CachedFailure {
    fn from(e: TaskError) -> Self {
        CachedFailure::Task(e)
    }
}

/// The signal pass 1 kept, and where its blocks sat.
struct Recording {
    cache: SignalCache,
    blocks: Vec<BlockAt>,
    rate: u32,
    frames: u64,
    stem_frames: Vec<u64>,
}

enum CacheState {
    /// Pass 1 has not run.
    Fresh,
    Recorded(Box<Recording>),
    /// Pass 1 could not keep the signal.
    Broken,
}

/// The gain search's passes run from a kept pre-loudness signal.
///
/// Exactness: every probe is a loudness probe of the whole mix, unlinked,
/// whose graph holds its only `loudness` node(s) in the master chain
/// ([`loudness_cut`]). Everything upstream of the first one is built from
/// the title graph and a context whose gains are never read upstream, so it
/// is the same signal at every pass; the tail, rebuilt each pass at that
/// pass's gains, receives it in the same blocks as the whole graph would
/// and its output is trimmed by the same rule ([`BlockAt::kept`]).
struct CachedPasses {
    memory_bound: usize,
    spill_dir: PathBuf,
    /// Per probe: its title graph and where it is cut.
    graphs: Vec<(TitleGraph, usize)>,
    /// Per probe: the upstream head (the kept stream) it reads.
    stream_of: Vec<usize>,
    /// Per stream: the upstream graph's latency.
    pre_latency: Vec<usize>,
    state: CacheState,
}

/// One pass's tails: each distinct (graph, gains) once.
struct Tails {
    tails: Vec<MasterTail>,
    /// Per tail: the stream it reads and the whole graph's latency.
    stream: Vec<usize>,
    latency: Vec<u64>,
    out: Vec<Block>,
    trimmed: Vec<Block>,
    has_output: Vec<bool>,
    /// Per probe: its tail.
    of_probe: Vec<usize>,
}

impl Tails {
    /// Runs every tail on this block's kept signal (`pre[stream]`), trims
    /// as the whole graph's output is trimmed and feeds every probe.
    fn step(&mut self, at: BlockAt, pre: &[Block], acc: &mut Probes<'_>) -> Result<(), TaskError> {
        for (t, tail) in self.tails.iter_mut().enumerate() {
            tail.process(&pre[self.stream[t]], &mut self.out[t]);
            let kept = at.kept(self.latency[t]);
            self.has_output[t] = !kept.is_empty();
            if !kept.is_empty() {
                self.trimmed[t].copy_range_from(&self.out[t], kept.start, kept.len());
            }
        }
        for (j, &t) in self.of_probe.iter().enumerate() {
            if self.has_output[t] {
                acc.add(j, &self.trimmed[t])?;
            }
        }
        Ok(())
    }
}

impl CachedPasses {
    /// `None` when a probe cannot run exactly from a kept signal (see the
    /// type's doc): the search then runs whole graphs.
    fn plan(
        ctx: &TaskContext<'_>,
        title: &Title,
        probes: &[Probe],
        memory_bound: usize,
        spill_dir: PathBuf,
    ) -> Option<CachedPasses> {
        let mut graphs = Vec::with_capacity(probes.len());
        for p in probes {
            let whole_mix = (0..title.stems.len()).all(|i| p.stems.contains(&i));
            if !p.measures_loudness || p.reference.is_some() || p.compare.is_some() || !whole_mix {
                tracing::info!(
                    title = %title.name,
                    probe = %p.label,
                    "level search runs whole graphs: a probe other than a family's mix (clip safety without a master limiter)"
                );
                return None;
            }
            let tg = title_graph(&ctx.spec.spec.graph, title, &p.variant);
            let Some(cut) = loudness_cut(&tg) else {
                tracing::info!(
                    title = %title.name,
                    probe = %p.label,
                    "level search runs whole graphs: the loudness gain reaches more than the master chain's tail"
                );
                return None;
            };
            graphs.push((tg, cut));
        }
        Some(CachedPasses {
            memory_bound,
            spill_dir,
            graphs,
            stream_of: Vec::new(),
            pre_latency: Vec::new(),
            state: CacheState::Fresh,
        })
    }

    /// Bytes spilled to the file so far.
    fn spilled_bytes(&self) -> u64 {
        match &self.state {
            CacheState::Recorded(r) => r.cache.spilled_bytes(),
            _ => 0,
        }
    }

    /// The tails of this pass, at the families' current gains.
    fn tails(
        &self,
        ctx: &TaskContext<'_>,
        title: &Title,
        rate: u32,
        probes: &[Probe],
        families: &[Family],
    ) -> Result<Tails, TaskError> {
        let mut keys: Vec<String> = Vec::new();
        let mut t = Tails {
            tails: Vec::new(),
            stream: Vec::new(),
            latency: Vec::new(),
            out: Vec::new(),
            trimmed: Vec::new(),
            has_output: Vec::new(),
            of_probe: Vec::with_capacity(probes.len()),
        };
        for (i, p) in probes.iter().enumerate() {
            let (tg, cut) = &self.graphs[i];
            let (master_db, fold_db) = families[p.family].gains(&families[0]);
            let cc = chain_context(ctx, rate, title.layout, master_db, fold_db);
            let key = format!("{tg:?}|{cc:?}");
            let k = match keys.iter().position(|k| *k == key) {
                Some(k) => k,
                None => {
                    let tail = MasterTail::new(tg, *cut, &cc)
                        .map_err(|e| TaskError::Input(format!("title `{}`: {e}", title.name)))?;
                    let s = self.stream_of[i];
                    t.latency
                        .push((self.pre_latency[s] + tail.latency()) as u64);
                    t.out.push(Block::new(tail.out_channels(), BLOCK_FRAMES));
                    t.trimmed
                        .push(Block::new(tail.out_channels(), BLOCK_FRAMES));
                    t.has_output.push(false);
                    t.stream.push(s);
                    t.tails.push(tail);
                    keys.push(key);
                    keys.len() - 1
                }
            };
            t.of_probe.push(k);
        }
        Ok(t)
    }

    /// Runs one pass of the gain search: pass 1 from the stems (keeping the
    /// signal), later ones from what it kept.
    fn run(
        &mut self,
        ctx: &TaskContext<'_>,
        input: &PassInput<'_>,
        probes: &[Probe],
        families: &[Family],
        pass: u32,
    ) -> Result<PassOutcome, CachedFailure> {
        match std::mem::replace(&mut self.state, CacheState::Broken) {
            CacheState::Fresh => self.record(ctx, input, probes, families, pass),
            CacheState::Recorded(mut rec) => {
                let out = self.replay(ctx, input, probes, families, pass, &mut rec);
                self.state = CacheState::Recorded(rec);
                out
            }
            CacheState::Broken => Err(CachedFailure::Cache(std::io::Error::other(
                "the kept signal is unavailable",
            ))),
        }
    }

    /// Pass 1: the upstream graphs from the stems, their blocks kept, the
    /// tails run on them.
    fn record(
        &mut self,
        ctx: &TaskContext<'_>,
        input: &PassInput<'_>,
        probes: &[Probe],
        families: &[Family],
        pass: u32,
    ) -> Result<PassOutcome, CachedFailure> {
        let PassInput {
            title,
            delivery_rate,
            paths,
            expected_frames,
            dialogue,
            ..
        } = *input;
        let mut source =
            TitleSource::open_edited(paths, delivery_rate, title.layout, title.edit.as_ref())
                .map_err(|e| CachedFailure::Task(e.into()))?;
        let rate = source.sample_rate;
        // The upstream graphs do not read the gains: built at 0 dB, those of
        // probes that differ only in gains are one stream.
        let cc0 = chain_context(ctx, rate, title.layout, 0.0, 0.0);
        let mut stages = Stages::default();
        let mut pre_latency = Vec::new();
        let mut stream_of = Vec::with_capacity(probes.len());
        for (p, (tg, cut)) in probes.iter().zip(&self.graphs) {
            let s = stages
                .add(&upstream_of(tg, *cut), &cc0, |k| p.stems.contains(&k), None)
                .map_err(|e| TaskError::Input(format!("title `{}`: {e}", title.name)))?;
            let h = stages.head_of(s);
            if h == pre_latency.len() {
                pre_latency.push(stages.latency(s));
            }
            stream_of.push(h);
        }
        self.stream_of = stream_of;
        self.pre_latency = pre_latency;
        let mut tails = self.tails(ctx, title, rate, probes, families)?;
        let flush = tails.latency.iter().copied().max().unwrap_or(0);
        let mut acc = Probes::new(ctx, title, rate, dialogue.is_some(), probes, |i| {
            tails.tails[tails.of_probe[i]].out_channels()
        })?;
        let mut cache = Some(SignalCache::new(self.memory_bound, self.spill_dir.clone()));
        let mut blocks = Vec::new();
        let mut failure = None;
        let frames = run_heads_untrimmed(
            ctx,
            &mut source,
            &mut stages,
            expected_frames,
            flush,
            |f| (ctx.progress)(((f64::from(pass - 1) + f) / 3.0).min(0.95)),
            |at, outs| {
                if let Some(c) = &mut cache {
                    if let Err(e) = outs.iter().try_for_each(|b| c.push(b)) {
                        // This pass still measures; later ones run whole graphs.
                        failure = Some(e);
                        cache = None;
                    } else {
                        blocks.push(at);
                    }
                }
                tails.step(at, outs, &mut acc)
            },
        )?;
        let outcome = PassOutcome {
            readings: acc.readings(dialogue),
            frames,
            stem_frames: source.stem_positions(),
        };
        match (cache, failure) {
            (Some(cache), _) => {
                tracing::info!(
                    title = %title.name,
                    streams = self.pre_latency.len(),
                    spilled_bytes = cache.spilled_bytes(),
                    "level search keeps the signal entering the loudness node"
                );
                self.state = CacheState::Recorded(Box::new(Recording {
                    cache,
                    blocks,
                    rate,
                    frames: outcome.frames,
                    stem_frames: outcome.stem_frames.clone(),
                }));
            }
            (None, e) => {
                tracing::warn!(
                    title = %title.name,
                    error = %e.map_or_else(|| "unknown".to_string(), |e| e.to_string()),
                    "level search cannot keep the signal; later passes run whole graphs"
                );
                self.state = CacheState::Broken;
            }
        }
        Ok(outcome)
    }

    /// Passes 2..: the tails on the kept signal.
    fn replay(
        &self,
        ctx: &TaskContext<'_>,
        input: &PassInput<'_>,
        probes: &[Probe],
        families: &[Family],
        pass: u32,
        rec: &mut Recording,
    ) -> Result<PassOutcome, CachedFailure> {
        let title = input.title;
        let channels = title.layout.channels();
        let mut tails = self.tails(ctx, title, rec.rate, probes, families)?;
        let mut acc = Probes::new(
            ctx,
            title,
            rec.rate,
            input.dialogue.is_some(),
            probes,
            |i| tails.tails[tails.of_probe[i]].out_channels(),
        )?;
        let mut pre: Vec<Block> = (0..self.pre_latency.len())
            .map(|_| Block::new(channels, BLOCK_FRAMES))
            .collect();
        rec.cache.rewind().map_err(CachedFailure::Cache)?;
        for (step, &at) in rec.blocks.iter().enumerate() {
            for b in &mut pre {
                rec.cache.next(b, at.frames).map_err(CachedFailure::Cache)?;
            }
            tails.step(at, &pre, &mut acc)?;
            if (step + 1).is_multiple_of(16) {
                ctx.check_cancel()?;
                let f = (at.start as f64 / input.expected_frames.max(1) as f64).min(1.0);
                (ctx.progress)(((f64::from(pass - 1) + f) / 3.0).min(0.95));
            }
        }
        Ok(PassOutcome {
            readings: acc.readings(input.dialogue),
            frames: rec.frames,
            stem_frames: rec.stem_frames.clone(),
        })
    }
}

/// The passes that search the gain of each `effective` move: the moved
/// roles' contribution is rendered as linked stems in the full mix and in
/// the variant (at the family's settled gains), and the move's gain is
/// adjusted until the change measured between them ([`ChangeMeter`]) is the
/// amount asked, within what the dynamics allow.
fn search_moves(
    ctx: &TaskContext<'_>,
    input: &PassInput<'_>,
    live: &[&Variant],
    families: &[Family],
) -> Result<BTreeMap<String, LevelChange>, TaskError> {
    let spec = &ctx.spec.spec;
    let title = input.title;
    struct Search {
        variant: Variant,
        mv: Move,
        stems: Vec<usize>,
        gain: f64,
        search: GainSearch,
        /// (gain, measured change) with the smallest error so far.
        best: Option<(f64, f64)>,
        done: bool,
    }
    let mut searches: Vec<Search> = live
        .iter()
        .filter(|v| v.amount_mode == AmountMode::Effective && v.level == LevelPolicy::Matched)
        .filter_map(|v| {
            let [mv] = v.moves().try_into().ok()?;
            let stems = move_stems(&spec.graph, title, &mv);
            (!stems.is_empty()).then(|| Search {
                variant: (*v).clone(),
                gain: mv.gain_db,
                mv,
                stems,
                search: GainSearch::default(),
                best: None,
                done: false,
            })
        })
        .collect();
    if searches.is_empty() {
        return Ok(BTreeMap::new());
    }
    let every_stem: Vec<usize> = (0..title.stems.len()).collect();
    let full = live.iter().find(|v| v.name == "full").map_or_else(
        || resolve_variant("full", &Default::default(), &spec.graph),
        |v| (*v).clone(),
    );
    let mut pass = 0;
    while pass < MAX_PASSES && searches.iter().any(|s| !s.done) {
        pass += 1;
        // The full mix, and the moved roles in it, once per distinct set.
        let mut probes = vec![Probe::plain(
            0,
            "full mix".into(),
            full.clone(),
            every_stem.clone(),
        )];
        let mut measured = Vec::new();
        for s in &searches {
            let b = match probes[1..].iter().position(|p| p.stems == s.stems) {
                Some(k) => k + 1,
                None => {
                    probes.push(Probe {
                        reference: Some(0),
                        ..Probe::plain(
                            0,
                            format!("{} in the full mix", s.mv.label()),
                            full.clone(),
                            s.stems.clone(),
                        )
                    });
                    probes.len() - 1
                }
            };
            let v = s.variant.with_move_gain(s.gain);
            probes.push(Probe::plain(
                0,
                format!("{} mix", v.name),
                v.clone(),
                every_stem.clone(),
            ));
            let c = probes.len() - 1;
            probes.push(Probe {
                reference: Some(c),
                compare: Some(b),
                ..Probe::plain(
                    0,
                    format!("{} in {}", s.mv.label(), v.name),
                    v,
                    s.stems.clone(),
                )
            });
            measured.push(probes.len() - 1);
        }
        let outcome = run_pass(ctx, input, &probes, families, pass)?;
        for (s, &k) in searches.iter_mut().zip(&measured) {
            if s.done {
                continue;
            }
            let Some(change) = outcome.readings[k].change_db else {
                s.done = true;
                continue;
            };
            let asked = s.mv.gain_db;
            if s.best
                .is_none_or(|(_, b)| (change - asked).abs() < (b - asked).abs())
            {
                s.best = Some((s.gain, change));
            }
            let next = s
                .search
                .next(s.gain, change, asked)
                .clamp(MOVE_RANGE_DB.0, MOVE_RANGE_DB.1);
            if (change - asked).abs() < MOVE_CONVERGED_DB || (next - s.gain).abs() < CONVERGED_DB {
                s.done = true;
            } else {
                s.gain = round6(next);
            }
        }
    }
    Ok(searches
        .into_iter()
        .map(|s| {
            let asked = s.mv.gain_db;
            let (applied, change) = s.best.unwrap_or((asked, f64::NAN));
            let change = change.is_finite().then_some(change);
            let within = change.map(|c| (c - asked).abs() <= EFFECTIVE_TOLERANCE_DB);
            let note = match (change, within) {
                (None, _) => Some(format!(
                    "`{}`: the change of {} cannot be measured (silent in the full mix); the gain is applied as written",
                    s.variant.name,
                    s.mv.label()
                )),
                (Some(c), Some(false)) => Some(format!(
                    "`{}`: the dynamics allow only {c:+.2} dB of the {asked:+.2} dB asked for {} (at a gain of {applied:+.2} dB before them)",
                    s.variant.name,
                    s.mv.label()
                )),
                _ => None,
            };
            (
                s.variant.name.clone(),
                LevelChange {
                    targets: s.mv.targets.clone(),
                    asked_db: asked,
                    applied_db: round6(applied),
                    mode: AmountMode::Effective,
                    effective_change_db: change.map(round3),
                    within_tolerance: within,
                    note,
                },
            )
        })
        .collect())
}

/// Renders every output of every variant once at the settled gains (and
/// effective moves) and measures its true peak with the accurate estimator:
/// what the trims are decided on. Returns the outputs held to the ceiling by family, and every
/// output's true peak by family and file.
#[allow(clippy::type_complexity)]
fn ceiling_pass(
    ctx: &TaskContext<'_>,
    input: &PassInput<'_>,
    live: &[&Variant],
    families: &[Family],
    moves: &BTreeMap<String, LevelChange>,
) -> Result<(Vec<(usize, Probed)>, Vec<(usize, String, f64)>), TaskError> {
    let spec = &ctx.spec.spec;
    let d = ctx.spec.delivery();
    let title = input.title;
    let rate = input.rate;
    let every_stem: Vec<usize> = (0..title.stems.len()).collect();
    let mut probes = Vec::new();
    let mut ceiling = Vec::new();
    for v in live {
        let v = match moves.get(&v.name) {
            Some(m) => v.with_move_gain(m.applied_db),
            None => (*v).clone(),
        };
        let family = if v.level == LevelPolicy::Normalized && v.name != "full" {
            families.iter().position(|f| f.name == v.name).unwrap_or(0)
        } else {
            0
        };
        let outs = title_outputs(spec, d, title, &v, rate);
        let reference = if outs.iter().any(|o| o.is_stem()) {
            probes.push(Probe::plain(
                family,
                format!("{} mix", v.name),
                v.clone(),
                every_stem.clone(),
            ));
            Some(probes.len() - 1)
        } else {
            None
        };
        for o in outs {
            ceiling.push(o.ceiling);
            probes.push(Probe {
                // Measured before quantisation: an output still over full
                // scale at trim 0 would clip in an integer format and read
                // low. Dither adds at most 2 LSB (0.0006 dB at 16-bit near
                // the ceiling), well inside the true-peak margin.
                output: Some(ProbeOutput {
                    variant: v.name.clone(),
                    file: o.file_name.clone(),
                    bit_depth: BitDepth::Float32,
                }),
                reference: reference.filter(|_| o.is_stem()),
                ..Probe::plain(family, o.file_name.clone(), v.clone(), o.stems.clone())
            });
        }
    }
    let outcome = run_pass(ctx, input, &probes, families, MAX_PASSES)?;
    let mut probed = Vec::new();
    let mut peaks = Vec::new();
    for ((p, r), held) in probes
        .iter()
        .zip(&outcome.readings)
        .filter(|(p, _)| p.output.is_some())
        .zip(ceiling)
    {
        let Some(o) = &p.output else { continue };
        if let Some(tp) = r.true_peak_db {
            peaks.push((p.family, o.file.clone(), tp));
        }
        if held {
            probed.push((
                p.family,
                Probed {
                    variant: o.variant.clone(),
                    file: o.file.clone(),
                    stem: p.reference.is_some(),
                    true_peak_dbtp: r.true_peak_db,
                },
            ));
        }
    }
    Ok((probed, peaks))
}

fn input_record(
    spec_path: &str,
    kind: &str,
    role: Option<deliverables_spec::Role>,
    path: &std::path::Path,
    info: &crate::decode::StreamInfo,
    frames: u64,
) -> Result<InputRecord, TaskError> {
    // Read errors keep their io::Error: its class decides the retry.
    let read_err = |source| {
        TaskError::Decode(crate::decode::DecodeError::Open {
            path: path.to_path_buf(),
            source,
        })
    };
    let bytes = std::fs::metadata(path).map_err(read_err)?.len();
    Ok(InputRecord {
        path: spec_path.to_string(),
        kind: kind.to_string(),
        role,
        sha256: sha256_of(path).map_err(read_err)?,
        bytes,
        container: info.container.clone(),
        codec: info.codec.clone(),
        sample_rate: info.sample_rate,
        channels: info.channels,
        bits_per_sample: info.bits_per_sample,
        frames,
        // Not a WAV, or no bext: no timeline position.
        time_reference: crate::bwf::bext_time_reference(path).ok().flatten(),
    })
}

/// The outputs a render of `variant` produces (shared with the render task).
pub fn outputs_for(
    ctx: &TaskContext<'_>,
    title: &Title,
    variant: &Variant,
    rate: u32,
) -> Vec<PlannedOutput> {
    title_outputs(&ctx.spec.spec, ctx.spec.delivery(), title, variant, rate)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::sync::atomic::AtomicBool;

    use super::*;

    const RATE: u32 = 48_000;

    fn write_wav(path: &Path, channels: &[Vec<f64>]) {
        let spec = hound::WavSpec {
            channels: channels.len() as u16,
            sample_rate: RATE,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create wav");
        for i in 0..channels[0].len() {
            for c in channels {
                w.write_sample((c[i] * 8_388_607.0).round() as i32)
                    .expect("write sample");
            }
        }
        w.finalize().expect("finalize wav");
    }

    /// Music: noise with a slow swell and a low tone, two channels.
    fn music(frames: usize) -> Vec<Vec<f64>> {
        (0..2u64)
            .map(|c| {
                (0..frames)
                    .map(|i| {
                        let t = i as f64 / f64::from(RATE);
                        let swell = 0.3 + 0.25 * (t * 1.3).sin();
                        swell * stemforge_testkit::signal::white(i as u64, c + 1)
                            + 0.4 * (std::f64::consts::TAU * 55.0 * t).sin()
                    })
                    .collect()
            })
            .collect()
    }

    /// Speech-like bursts: 1 s on, 0.5 s off.
    fn dialogue(frames: usize) -> Vec<Vec<f64>> {
        let ch: Vec<f64> = (0..frames)
            .map(|i| {
                let t = i as f64 / f64::from(RATE);
                let on = (t % 1.5) < 1.0;
                if on {
                    0.5 * (std::f64::consts::TAU * 220.0 * t).sin()
                        * (0.6 + 0.4 * (std::f64::consts::TAU * 4.0 * t).sin())
                } else {
                    0.0
                }
            })
            .collect();
        vec![ch.clone(), ch]
    }

    /// A title of `seconds` with a music and a dialogue stem, under `spec`
    /// (`{stems}` is replaced by the stem list).
    fn session(name: &str, seconds: f64, spec: &str) -> (std::path::PathBuf, LoadedSpec) {
        let dir = stemforge_testkit::scratch(name);
        let frames = (seconds * f64::from(RATE)) as usize;
        write_wav(&dir.join("music.wav"), &music(frames));
        write_wav(&dir.join("dialogue.wav"), &dialogue(frames));
        let text = spec.replace(
            "{stems}",
            r#"stems = [
  { file = "music.wav", role = "music" },
  { file = "dialogue.wav", role = "dialogue" },
]"#,
        );
        let loaded = deliverables_spec::load_text(text, &dir, None).expect("spec loads");
        (dir, loaded)
    }

    use deliverables_spec::LoadedSpec;

    fn run(
        spec: &LoadedSpec,
        dir: &Path,
        passes: &GainPasses,
    ) -> Result<(AnalysisResult, GainPassStats), TaskError> {
        let cancel = AtomicBool::new(false);
        let deps = BTreeMap::new();
        let progress = |_: f64| {};
        let ctx = TaskContext {
            spec,
            job_id: "test",
            output_dir: dir.join("out"),
            deps: &deps,
            outcomes: None,
            cache: None,
            submitted_unix_ms: 0,
            origination_unix_s: 0,
            cancel: &cancel,
            progress: &progress,
        };
        let title = spec.spec.titles[0].name.clone();
        analyze_with(&ctx, &title, None, passes)
    }

    /// The cached passes (in memory, and spilling past a tiny bound) give
    /// the whole-graph passes' result, field for field and in JSON, and
    /// leave no file behind.
    fn assert_cached_equals_whole(name: &str, spec_text: &str) -> GainPassStats {
        let (dir, spec) = session(name, 4.0, spec_text);
        let (whole, whole_stats) = run(&spec, &dir, &GainPasses::WholeGraph).expect("whole");
        assert_eq!(whole_stats.cached_passes, 0);
        assert!(whole.level.passes >= 2, "the search takes passes");
        let spill_dir = dir.join("spill");
        std::fs::create_dir_all(&spill_dir).expect("mkdir");
        let mut last = GainPassStats::default();
        for bound in [DEFAULT_MEMORY_BOUND, 64 << 10] {
            let (cached, stats) = run(
                &spec,
                &dir,
                &GainPasses::Cached {
                    memory_bound: bound,
                    spill_dir: spill_dir.clone(),
                },
            )
            .expect("cached");
            assert_eq!(cached, whole, "{name}, bound {bound}");
            assert_eq!(
                serde_json::to_string(&cached).expect("json"),
                serde_json::to_string(&whole).expect("json"),
                "{name}, bound {bound}"
            );
            assert_eq!(
                stats.cached_passes,
                whole.level.passes - 1,
                "{name}: every pass after the first runs from the kept signal"
            );
            assert_eq!(stats.spilled_bytes > 0, bound < DEFAULT_MEMORY_BOUND);
            assert_eq!(
                std::fs::read_dir(&spill_dir).expect("ls").count(),
                0,
                "{name}: the spill file is removed"
            );
            last = stats;
        }
        let _ = std::fs::remove_dir_all(&dir);
        last
    }

    #[test]
    fn cached_passes_equal_whole_graph_passes_with_dialogue_gating() {
        let stats = assert_cached_equals_whole(
            "analysis-cache-dialogue",
            r#"schema_version = 1
[delivery]
profile = "netflix"
output_dir = "out"

[graph.master]
chain = [
  { node = "high_pass", freq_hz = 20.0 },
  { node = "compressor", threshold_db = -14.0, ratio = 2.0, attack_ms = 10.0, release_ms = 150.0 },
  { node = "loudness" },
  { node = "limiter", lookahead_ms = 2.0, release_ms = 80.0 },
]

[variants.full]
[variants.music_only]
mute = ["role:dialogue"]
level = "normalized"
[variants.hot]
gains = { "role:music" = 3.0 }
level = "normalized"

[[titles]]
name = "Spot"
{stems}
"#,
        );
        // 4 s of stereo f64 per stream, past a 64 KiB bound.
        assert!(stats.spilled_bytes > 1 << 20, "{stats:?}");
    }

    #[test]
    fn cached_passes_equal_whole_graph_passes_with_a_fold_down_family() {
        assert_cached_equals_whole(
            "analysis-cache-fold",
            r#"schema_version = 1
[delivery]
profile = "ebu-r128"
output_dir = "out"

[graph.master]
chain = [
  { node = "compressor", threshold_db = -16.0, ratio = 2.0, attack_ms = 10.0, release_ms = 150.0 },
  { node = "loudness" },
  { node = "gain", db = -1.0 },
  { node = "limiter", ceiling_dbtp = -1.5, lookahead_ms = 2.0, release_ms = 80.0 },
]

[variants.full]
[variants.stereo]
fold_down = {}
level = "normalized"

[[titles]]
name = "Spot"
layout = "5.1"
{stems}
"#,
        );
    }

    #[test]
    fn a_master_without_a_limiter_runs_whole_graph_passes() {
        let (dir, spec) = session(
            "analysis-cache-unlimited",
            4.0,
            r#"schema_version = 1
[delivery]
profile = "ebu-r128"
output_dir = "out"

[graph.master]
chain = [{ node = "loudness" }]

[variants.full]

[[titles]]
name = "Spot"
{stems}
"#,
        );
        let cached = GainPasses::Cached {
            memory_bound: DEFAULT_MEMORY_BOUND,
            spill_dir: dir.clone(),
        };
        let (a, stats) = run(&spec, &dir, &cached).expect("cached");
        let (b, _) = run(&spec, &dir, &GainPasses::WholeGraph).expect("whole");
        assert_eq!(a, b);
        assert_eq!(stats, GainPassStats::default(), "clip probes: no cache");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cancel_during_the_cached_passes_leaves_no_spill_file() {
        let (dir, spec) = session(
            "analysis-cache-cancel",
            4.0,
            r#"schema_version = 1
[delivery]
profile = "ebu-r128"
output_dir = "out"

[graph.master]
chain = [{ node = "loudness" }, { node = "limiter" }]

[variants.full]

[[titles]]
name = "Spot"
{stems}
"#,
        );
        let spill_dir = dir.join("spill");
        std::fs::create_dir_all(&spill_dir).expect("mkdir");
        let cancel = AtomicBool::new(false);
        let deps = BTreeMap::new();
        // Cancels once the first pass is well under way (progress past 1/6).
        let progress = |f: f64| {
            if f > 0.5 / 3.0 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        };
        let ctx = TaskContext {
            spec: &spec,
            job_id: "test",
            output_dir: dir.join("out"),
            deps: &deps,
            outcomes: None,
            cache: None,
            submitted_unix_ms: 0,
            origination_unix_s: 0,
            cancel: &cancel,
            progress: &progress,
        };
        let r = analyze_with(
            &ctx,
            "Spot",
            None,
            &GainPasses::Cached {
                memory_bound: 1 << 10,
                spill_dir: spill_dir.clone(),
            },
        );
        assert!(matches!(r, Err(TaskError::Cancelled)), "{r:?}");
        assert_eq!(std::fs::read_dir(&spill_dir).expect("ls").count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
