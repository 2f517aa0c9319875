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
use deliverables_spec::variant::title_graph;

use super::analyze::{AnalysisResult, carries_dialogue, chain_context, outputs_for, round6};
use super::effective::{ChangeMeter, move_stems};
use super::metadata::{OutputLabel, bext_loudness, output_bext};
use super::stream::{Stage, run_stages};
use super::{TaskContext, TaskError};
use crate::dialogue::DialogueActivity;
use crate::dsp::MixGraph;
use crate::output::{DitherSeed, OutputStage, OutputWriter, Pending, digest_wav};
use crate::source::TitleSource;

pub use deliverables_spec::contract::{RenderMode, RenderResult, RenderedOutput};

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

pub fn render(
    ctx: &TaskContext<'_>,
    title_name: &str,
    variant_name: &str,
    pack_rate: Option<u32>,
) -> Result<RenderResult, TaskError> {
    let spec = ctx.spec;
    let title = spec
        .title(title_name)
        .ok_or_else(|| TaskError::Internal(format!("title `{title_name}` is not in the spec")))?;
    let variant = spec.variant(variant_name).ok_or_else(|| {
        TaskError::Internal(format!("variant `{variant_name}` is not in the spec"))
    })?;
    let analysis = analysis_of(ctx, title_name, pack_rate)?;
    let d = spec.delivery();
    let rate = analysis.sample_rate;
    let level = analysis.level_of(&variant);
    let (gain_db, trim_db) = (level.master_gain_db, level.ceiling_trim_db);
    // Outputs the title trim alone leaves over the ceiling take their own
    // (a stem set takes one for all its stems).
    let own_trim_db = level
        .variant_trims_db
        .get(&variant.name)
        .copied()
        .unwrap_or(0.0);
    let fold_gain_db = level.fold_down_gain_db.unwrap_or(0.0);
    // The graph as rendered: an effective move at the gain the analysis found.
    let applied = analysis.applied(&variant);
    let tg = title_graph(&spec.spec.graph, title, &applied);
    let planned = outputs_for(ctx, title, &applied, rate);
    let cc = chain_context(ctx, rate, title.layout, gain_db, fold_gain_db);
    let graph_err =
        |e: crate::dsp::chain::GraphError| TaskError::Input(format!("title `{title_name}`: {e}"));

    // Stage 0 is the variant's whole mix when stems replay its envelopes.
    let linked = planned.iter().any(|o| o.role.is_some());
    let mut stages = Vec::new();
    if linked {
        stages.push(Stage::own(
            MixGraph::new(&tg, &cc, |_| true, false).map_err(graph_err)?,
        ));
    }
    for o in &planned {
        let g = MixGraph::new(&tg, &cc, |i| o.stems.contains(&i), linked).map_err(graph_err)?;
        stages.push(Stage {
            graph: g,
            reference: linked.then_some(0),
        });
    }
    let first_output = usize::from(linked);
    let channels: Vec<usize> = stages[first_output..]
        .iter()
        .map(|s| s.graph.out_channels())
        .collect();
    // A mix that moves roles: their contribution here and in the full mix,
    // as linked stems, to measure the change delivered.
    let moves = variant.moves();
    let measure_moves = !linked && !moves.is_empty() && tg.fold_down.is_none();
    let mut change_stages: Vec<(usize, usize)> = Vec::new();
    if measure_moves {
        let full_variant = spec.variant("full").unwrap_or_else(|| {
            deliverables_spec::variant::resolve_variant(
                "full",
                &Default::default(),
                &spec.spec.graph,
            )
        });
        let full_tg = title_graph(&spec.spec.graph, title, &full_variant);
        let full_cc = chain_context(
            ctx,
            rate,
            title.layout,
            analysis.level.master_gain_db,
            analysis.level.fold_down_gain_db.unwrap_or(0.0),
        );
        let f = stages.len();
        stages.push(Stage::own(
            MixGraph::new(&full_tg, &full_cc, |_| true, false).map_err(graph_err)?,
        ));
        for m in &moves {
            let keep = move_stems(&spec.spec.graph, title, m);
            let b = stages.len();
            stages.push(Stage {
                graph: MixGraph::new(&full_tg, &full_cc, |i| keep.contains(&i), true)
                    .map_err(graph_err)?,
                reference: Some(f),
            });
            stages.push(Stage {
                graph: MixGraph::new(&tg, &cc, |i| keep.contains(&i), true).map_err(graph_err)?,
                reference: Some(first_output),
            });
            change_stages.push((b, b + 1));
        }
    }
    let mut full_copies: Vec<crate::dsp::Block> = change_stages
        .iter()
        .map(|&(b, _)| {
            crate::dsp::Block::new(stages[b].graph.out_channels(), crate::source::BLOCK_FRAMES)
        })
        .collect();
    let mut change_meters = vec![ChangeMeter::default(); change_stages.len()];
    let n_outputs = planned.len();
    for o in &planned {
        remove_stale_partials(&ctx.output_dir, &o.file_name);
    }
    // Re-mix stems take the title's trim (they sum to the master) but no
    // ceiling trim of their own.
    let output_trim = |o: &deliverables_spec::outputs::PlannedOutput| {
        if o.ceiling {
            trim_db + own_trim_db
        } else {
            trim_db
        }
    };
    let mut writers = planned
        .iter()
        .zip(&channels)
        .map(|(o, &channels)| {
            let seed = DitherSeed {
                spec_sha256: &spec.sha256,
                title: &title.name,
                variant: &variant.name,
                output: &o.file_name,
            };
            let stage = OutputStage::new(
                o.bit_depth,
                channels,
                output_trim(o),
                (d.dither == Dither::Tpdf).then_some(seed),
            );
            let bext = output_bext(
                &OutputLabel {
                    title: &title.name,
                    variant: &variant.name,
                    role: o.role.map(|r| r.as_str()),
                    file_name: &o.file_name,
                    spec_sha256: &spec.sha256,
                },
                d,
                ctx.origination_unix_s,
                analysis.time_reference,
                rate,
                channels,
            );
            OutputWriter::create(
                &ctx.output_dir.join(&o.file_name),
                rate,
                channels,
                stage,
                &bext,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let paths: Vec<_> = title.stems.iter().map(|s| spec.path(&s.file)).collect();
    let mut source = TitleSource::open(&paths, pack_rate.or(d.sample_rate), title.layout)?;
    let frames = run_stages(
        ctx,
        &mut source,
        &mut stages,
        analysis.frames,
        |f| (ctx.progress)(0.7 * f),
        |i, block| {
            if (first_output..first_output + n_outputs).contains(&i) {
                writers[i - first_output].write(block)?;
            }
            for (k, &(b, v)) in change_stages.iter().enumerate() {
                if i == b {
                    full_copies[k].copy_from(block);
                } else if i == v {
                    change_meters[k].add(&full_copies[k], block);
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

    // Verify every file before any becomes visible.
    let mut verified = Vec::new();
    for (i, (p, o)) in pending.iter().zip(&planned).enumerate() {
        ctx.check_cancel()?;
        let dialogue = analysis
            .dialogue
            .as_ref()
            .filter(|_| carries_dialogue(title, &o.stems, analysis.dialogue.as_ref()));
        let r = verify(p, d, o, rate, dialogue)?;
        (ctx.progress)(0.7 + 0.3 * (i + 1) as f64 / planned.len() as f64);
        verified.push((o, r));
    }
    // A cancel heard while the last file was verified: nothing appears
    // (every `Pending` dropped unpublished removes its temporary file).
    ctx.check_cancel()?;
    // The delivered change of each move: measured before the output
    // stage, so a trim this output has and the full mix has not counts too.
    let full_trim = analysis.level.ceiling_trim_db
        + analysis
            .level
            .variant_trims_db
            .get("full")
            .copied()
            .unwrap_or(0.0);
    let level_changes: Vec<LevelChange> = moves
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let searched = analysis.moves.get(&variant.name);
            let effective = change_meters
                .get(k)
                .and_then(ChangeMeter::change_db)
                .map(|c| c + (trim_db + own_trim_db) - full_trim);
            let mode = variant.amount_mode;
            LevelChange {
                targets: m.targets.clone(),
                asked_db: m.gain_db,
                applied_db: searched.map_or(m.gain_db, |s| s.applied_db),
                mode,
                effective_change_db: effective.map(crate::meter::round3),
                within_tolerance: (mode == AmountMode::Effective)
                    .then(|| effective.map(|c| (c - m.gain_db).abs() <= EFFECTIVE_TOLERANCE_DB))
                    .flatten(),
                note: if !measure_moves {
                    Some(if linked {
                        "measured on the variant's mix, not on its stems".to_string()
                    } else {
                        "not measured on a fold-down: the full mix is not folded".to_string()
                    })
                } else {
                    searched.and_then(|s| s.note.clone())
                },
            }
        })
        .collect();
    let mut outputs = Vec::new();
    for (p, (o, (digest_file, measurement))) in pending.into_iter().zip(verified) {
        p.commit()?;
        outputs.push(RenderedOutput {
            variant: variant.name.clone(),
            role: o.role,
            file: FileRecord {
                path: o.file_name.clone(),
                ..digest_file
            },
            gain_db,
            ceiling_trim_db: round6(output_trim(o)),
            fold_down_gain_db: tg.fold_down.as_ref().map(|_| fold_gain_db),
            level_policy: variant.level,
            mode: if o.role.is_some() {
                RenderMode::LinkedStem
            } else {
                RenderMode::Mix
            },
            measurement,
            stems_trim_db: (o.role.is_some() && o.ceiling).then_some(round6(own_trim_db)),
            remix: !o.ceiling,
            level_changes: if o.role.is_none() {
                level_changes.clone()
            } else {
                Vec::new()
            },
        });
    }
    Ok(RenderResult {
        title: title.name.clone(),
        variant: variant.name.clone(),
        description: variant.description.clone(),
        outputs,
    })
}

/// Deletes temporary files an earlier attempt at the same output left behind
/// (a worker killed mid-write). This attempt holds the lease: any writer of
/// those files is gone or has lost its lease, and its rename will fail.
fn remove_stale_partials(dir: &std::path::Path, file_name: &str) {
    let prefix = format!(".{file_name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(&prefix) && name.ends_with(".partial") {
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

/// Reads a written file back and measures the audio as stored, writes the
/// loudness into its `bext`, then checksums the finished file.
fn verify(
    p: &Pending,
    d: &deliverables_spec::Delivery,
    o: &deliverables_spec::outputs::PlannedOutput,
    rate: u32,
    dialogue: Option<&DialogueActivity>,
) -> Result<(FileRecord, Measurement), TaskError> {
    let read = crate::measure_file::measure_file(
        &p.temp_path,
        dialogue,
        crate::measure_file::OverSearch {
            frame_rate: d.frame_rate,
            // Re-mix stems too: not judged, but where they pass the air
            // ceiling is worth knowing.
            ceiling_dbtp: Some(d.true_peak_max_dbtp),
        },
    )?;
    let frames = read.frames;
    if frames != p.frames || read.sample_rate != rate {
        return Err(TaskError::Internal(format!(
            "'{}' reads back as {frames} frames at {} Hz, written {} at {rate} Hz",
            p.temp_path.display(),
            read.sample_rate,
            p.frames
        )));
    }
    let mut m = read.measurement;
    p.write_loudness(&bext_loudness(&m))?;
    let digest = digest_wav(&p.temp_path)?;
    if digest.audio_sha256 != p.audio_sha256 {
        return Err(TaskError::Internal(format!(
            "'{}' reads back different audio than was written; disk or file-system fault",
            p.temp_path.display()
        )));
    }
    if p.clipped > 0 {
        m.notes
            .push(format!("{} samples clipped at full scale", p.clipped));
    }
    let file = FileRecord {
        path: String::new(),
        sha256: digest.sha256,
        audio_sha256: digest.audio_sha256,
        bytes: digest.bytes,
        format: "wav".to_string(),
        codec: read.codec,
        sample_rate: read.sample_rate,
        bit_depth: o.bit_depth.bits(),
        sample_format: if o.bit_depth.is_float() {
            "float"
        } else {
            "int"
        }
        .to_string(),
        channels: read.channels,
        frames,
        duration_s: frames as f64 / f64::from(rate),
    };
    Ok((file, m))
}
