//! Live-playback packs (`output = "live"`): one file per input stem, each
//! the stem through its role chain and its own chain only (no bus, no
//! master, no loudness node, no limiter) times one gain that keeps its
//! true peak under the pack's headroom; click and guide stems untouched
//! (no chain, no gain, no dither); optionally one interleaved file whose
//! channels are exactly the per-stem files' samples.
//!
//! Two passes over the stems, each at the stems' own channel counts: the
//! first measures every stem's true peak (the accurate estimator the
//! ceiling check uses) and integrated loudness through its chains, before
//! any gain; [`deliverables_spec::live::live_gains`] turns those into
//! gains; the second writes the files. Both are deterministic functions
//! of the stems and the spec. The render cache is not used for live files
//! (no key, so no stale hit is possible): they are rendered every time.

use deliverables_spec::contract::{
    CacheStatus, CacheUse, RenderMode, RenderResult, RenderedOutput,
};
use deliverables_spec::live::{MapSource, StemLevel, channel_fits, live_gains, resolve_map};
use deliverables_spec::manifest::{InterleavedChannel, LiveRecord};
use deliverables_spec::model::{Dither, Title};
use deliverables_spec::variant::{Variant, title_graph};

use super::analyze::{AnalysisResult, outputs_for, round6};
use super::metadata::{OutputLabel, output_bext};
use super::render::{finish_measurement, verify};
use super::stream::Feed;
use super::{TaskContext, TaskError};
use crate::dsp::chain::{Chain, ChainContext};
use crate::dsp::nodes::Delay;
use crate::dsp::true_peak::TruePeakDetector;
use crate::dsp::{Block, Node, db_to_gain, gain_to_db};
use crate::meter::{Meter, MeterKind, Timeline};
use crate::output::{DitherSeed, OutputStage, OutputWriter};
use crate::source::{BLOCK_FRAMES, TitleSource};

/// One per-stem file's processing: its chain (none when untouched) and the
/// delay that aligns it with the pack's longest chain.
struct Proc {
    /// Index of the planned output.
    output: usize,
    stem: usize,
    channels: usize,
    untouched: bool,
    chain: Option<Chain>,
    align: Delay,
}

/// Builds every per-stem processor of the pack; returns them and the
/// pack's latency (its longest chain's), which every file is trimmed by.
fn build_procs(
    ctx: &TaskContext<'_>,
    title: &Title,
    variant: &Variant,
    rate: u32,
    planned: &[deliverables_spec::outputs::PlannedOutput],
    stem_channels: &[usize],
) -> Result<(Vec<Proc>, usize), TaskError> {
    let tg = title_graph(&ctx.spec.spec.graph, title, variant);
    let mut procs = Vec::new();
    let mut latencies = Vec::new();
    for (k, o) in planned.iter().enumerate() {
        let (Some(role), [stem]) = (o.role, o.stems.as_slice()) else {
            continue;
        };
        let stem = *stem;
        let channels = stem_channels[stem];
        let untouched = role.is_live_only();
        let chain = if untouched {
            None
        } else {
            let cc = ChainContext {
                sample_rate: rate,
                channels,
                max_block: BLOCK_FRAMES,
                loudness_db: 0.0,
                fold_gain_db: 0.0,
                default_ceiling_db: ctx.spec.delivery().working_ceiling_db(),
            };
            let chain = Chain::build(
                &tg.stems[stem].chain,
                &cc,
                &format!(
                    "title `{}` stem `{}` (its role chain, then its own)",
                    title.name, title.stems[stem].file
                ),
                false,
            )
            .map_err(|e| TaskError::Input(e.to_string()))?;
            Some(chain)
        };
        latencies.push(chain.as_ref().map_or(0, Chain::latency));
        procs.push(Proc {
            output: k,
            stem,
            channels,
            untouched,
            chain,
            align: Delay::new(0),
        });
    }
    let latency = latencies.iter().copied().max().unwrap_or(0);
    for (p, lat) in procs.iter_mut().zip(latencies) {
        p.align = Delay::new(latency - lat);
        p.align.prepare(rate, p.channels, BLOCK_FRAMES);
    }
    Ok((procs, latency))
}

/// One pass over the stems: every processor's output, aligned and trimmed
/// to the timeline (its first `latency` frames dropped, `latency` frames
/// of silence fed after the end), handed to `sink` block by block (one
/// block per processor, all the same length). Returns the title's frames.
#[allow(clippy::too_many_arguments)]
fn run_pass(
    ctx: &TaskContext<'_>,
    title: &Title,
    pack_rate: Option<u32>,
    procs: &mut [Proc],
    latency: usize,
    expected_frames: u64,
    progress: (f64, f64),
    mut sink: impl FnMut(&[Proc], &mut [Block]) -> Result<(), TaskError>,
) -> Result<u64, TaskError> {
    let spec = ctx.spec;
    let paths: Vec<_> = title.stems.iter().map(|s| spec.path(&s.file)).collect();
    let mut source = TitleSource::open_native(
        &paths,
        pack_rate.or(spec.delivery().sample_rate),
        title.layout,
        title.edit.as_ref(),
    )?;
    let mut inputs = source.make_blocks();
    let mut work: Vec<Block> = procs
        .iter()
        .map(|p| Block::new(p.channels, BLOCK_FRAMES))
        .collect();
    let mut kept: Vec<Block> = procs
        .iter()
        .map(|p| Block::new(p.channels, BLOCK_FRAMES))
        .collect();
    let mut feed = Feed::new(latency as u64);
    let mut step = 0u64;
    while let Some(at) = feed.next(&mut source, &mut inputs)? {
        let fed = feed.fed();
        let range = at.kept(latency as u64);
        for ((p, w), k) in procs.iter_mut().zip(&mut work).zip(&mut kept) {
            w.copy_from(&inputs[p.stem]);
            if let Some(c) = &mut p.chain {
                c.process(w);
            }
            p.align.process(w);
            k.copy_range_from(w, range.start, range.len());
        }
        if !range.is_empty() {
            sink(procs, &mut kept)?;
        }
        step += 1;
        if step.is_multiple_of(16) {
            ctx.check_cancel()?;
            let done = (fed as f64 / expected_frames.max(1) as f64).min(1.0);
            (ctx.progress)(progress.0 + progress.1 * done);
        }
    }
    Ok(feed.input_frames())
}

/// Renders one live variant of a title's pack.
pub(super) fn render_live(
    ctx: &TaskContext<'_>,
    title: &Title,
    analysis: &AnalysisResult,
    variant: &Variant,
    pack_rate: Option<u32>,
) -> Result<RenderResult, TaskError> {
    let spec = ctx.spec;
    let d = spec.delivery();
    let rate = analysis.sample_rate;
    let live = variant.live.clone().ok_or_else(|| {
        TaskError::Internal(format!("variant `{}` is not a live pack", variant.name))
    })?;
    let planned = outputs_for(ctx, title, variant, rate);
    let paths: Vec<_> = title.stems.iter().map(|s| spec.path(&s.file)).collect();
    let stem_channels: Vec<usize> =
        TitleSource::open(&paths, pack_rate.or(d.sample_rate), title.layout)?
            .infos()
            .iter()
            .map(|i| i.channels)
            .collect();

    // The interleave map against the stems' channel counts.
    let map: Option<Vec<MapSource>> = match &live.interleave {
        None => None,
        Some(il) => {
            let m = resolve_map(&variant.name, title, il).map_err(|e| {
                TaskError::Input(
                    e.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            for (k, src) in m.iter().enumerate() {
                if let MapSource::Stem { stem, channel } = *src {
                    channel_fits(&il.map[k], channel, stem_channels[stem]).map_err(|why| {
                        TaskError::Input(format!(
                            "variants.{}.live.interleave.map[{k}] (title `{}`): {why}",
                            variant.name, title.name
                        ))
                    })?;
                }
            }
            Some(m)
        }
    };

    // Pass 1: each stem's true peak and loudness through its chains.
    let (mut procs, latency) = build_procs(ctx, title, variant, rate, &planned, &stem_channels)?;
    let mut probes: Vec<Option<(TruePeakDetector, Meter)>> = procs
        .iter()
        .map(|p| {
            (!p.untouched)
                .then(|| {
                    Meter::new(p.channels, rate, MeterKind::IntegratedOnly)
                        .map(|m| (TruePeakDetector::new(p.channels, rate), m))
                })
                .transpose()
        })
        .collect::<Result<_, _>>()
        .map_err(|e| TaskError::Internal(e.to_string()))?;
    run_pass(
        ctx,
        title,
        pack_rate,
        &mut procs,
        latency,
        analysis.frames,
        (0.0, 0.35),
        |_, blocks| {
            for (probe, b) in probes.iter_mut().zip(blocks.iter()) {
                if let Some((tp, m)) = probe {
                    tp.push_block(b);
                    m.add(b).map_err(|e| TaskError::Internal(e.to_string()))?;
                }
            }
            Ok(())
        },
    )?;
    let levels: Vec<StemLevel> = procs
        .iter()
        .zip(&mut probes)
        .map(|(p, probe)| match probe {
            Some((tp, m)) => StemLevel {
                true_peak_dbtp: Some(gain_to_db(tp.finish())).filter(|v| v.is_finite()),
                integrated_lufs: m.finish().integrated_lufs,
                untouched: false,
            },
            None => StemLevel {
                true_peak_dbtp: None,
                integrated_lufs: None,
                untouched: p.untouched,
            },
        })
        .collect();
    let gains = live_gains(&live, d.true_peak_margin_db, &levels);

    // Pass 2: write every file. Each stem's samples are quantised once (its
    // own dither, none when untouched) and the same codes go to its file and
    // to the interleaved file's channels.
    let (mut procs, latency) = build_procs(ctx, title, variant, rate, &planned, &stem_channels)?;
    let linear: Vec<f64> = gains.iter().map(|g| db_to_gain(g.gain_db)).collect();
    let mut quantise: Vec<OutputStage> = procs
        .iter()
        .map(|p| {
            let o = &planned[p.output];
            let seed = DitherSeed {
                title: &title.name,
                variant: &variant.name,
                output: &o.file_name,
            };
            OutputStage::new(
                o.bit_depth,
                p.channels,
                0.0,
                (d.dither == Dither::Tpdf && !p.untouched).then_some(seed),
            )
        })
        .collect();
    let mut quantised: Vec<Block> = procs
        .iter()
        .map(|p| Block::new(p.channels, BLOCK_FRAMES))
        .collect();
    let writer_for = |name: &str,
                      role: Option<&str>,
                      channels: usize,
                      bits,
                      mask: Option<u32>,
                      ceiling: Option<f64>|
     -> Result<OutputWriter, TaskError> {
        let bext = output_bext(
            &OutputLabel {
                title: &title.name,
                variant: &variant.name,
                role,
                file_name: name,
                spec_sha256: &spec.sha256,
            },
            d,
            ctx.origination_unix_s,
            analysis.time_reference,
            rate,
            channels,
        );
        let mut meter = Meter::new(channels, rate, MeterKind::Full)
            .map_err(|e| TaskError::Internal(e.to_string()))?;
        meter.set_timeline(Timeline {
            frame_rate: d.frame_rate,
            ceiling_dbtp: ceiling,
            time_reference: bext.time_reference,
        });
        // The samples arrive quantised: the writer adds nothing.
        Ok(OutputWriter::create_with_mask(
            &ctx.output_dir.join(name),
            rate,
            channels,
            OutputStage::new(bits, channels, 0.0, None),
            &bext,
            mask,
        )?
        .measuring(meter, channels, BLOCK_FRAMES))
    };
    let mut writers: Vec<OutputWriter> = procs
        .iter()
        .map(|p| {
            let o = &planned[p.output];
            writer_for(
                &o.file_name,
                o.role.map(|r| r.as_str()),
                p.channels,
                o.bit_depth,
                None,
                (!p.untouched).then_some(live.headroom_dbtp),
            )
        })
        .collect::<Result<_, _>>()?;
    // The interleaved file: channel k ← (processor, channel), or silence.
    let interleave = planned.iter().position(|o| o.role.is_none());
    let sources: Vec<Option<(usize, usize)>> = map
        .as_ref()
        .map(|m| {
            m.iter()
                .enumerate()
                .map(|(k, s)| match *s {
                    MapSource::Silence => Ok(None),
                    MapSource::Stem { stem, channel } => procs
                        .iter()
                        .position(|p| p.stem == stem)
                        .map(|i| Some((i, channel.unwrap_or(0))))
                        .ok_or_else(|| {
                            TaskError::Input(format!(
                                "variants.{}.live.interleave.map[{k}] (title `{}`): the stem is muted in this variant, so it has no live file to interleave; unmute it or map `\"\"`",
                                variant.name, title.name
                            ))
                        }),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let mut il_writer = match interleave {
        Some(k) => Some(writer_for(
            &planned[k].file_name,
            None,
            sources.len(),
            planned[k].bit_depth,
            Some(0),
            None,
        )?),
        None => None,
    };
    let mut il_block = Block::new(sources.len().max(1), BLOCK_FRAMES);
    let frames = run_pass(
        ctx,
        title,
        pack_rate,
        &mut procs,
        latency,
        analysis.frames,
        (0.35, 0.5),
        |procs, blocks| {
            for (i, b) in blocks.iter_mut().enumerate() {
                if !procs[i].untouched {
                    let g = linear[i];
                    for ch in 0..b.channels() {
                        for x in b.channel_mut(ch) {
                            *x *= g;
                        }
                    }
                }
                quantise[i].render(b, &mut quantised[i]);
                writers[i].write(&quantised[i])?;
            }
            if let Some(w) = &mut il_writer {
                let n = quantised.first().map_or(0, Block::frames);
                il_block.silence(n);
                for (k, s) in sources.iter().enumerate() {
                    if let Some((i, c)) = *s {
                        il_block.channel_mut(k)[..n].copy_from_slice(&quantised[i].channel(c)[..n]);
                    }
                }
                w.write(&il_block)?;
            }
            Ok(())
        },
    )?;
    if frames != analysis.frames {
        return Err(TaskError::Input(format!(
            "title `{}` decoded to {frames} frames now but {} during analysis: a stem changed during the job; resubmit",
            title.name, analysis.frames
        )));
    }

    // Finish, measure, verify; nothing appears before every file verified.
    let mut pending = Vec::new();
    for (i, w) in writers.into_iter().enumerate() {
        pending.push((Some(i), w.finish()?));
    }
    if let Some(w) = il_writer {
        pending.push((None, w.finish()?));
    }
    let mut done = Vec::new();
    for (i, mut p) in pending {
        ctx.check_cancel()?;
        let o = match i {
            Some(i) => &planned[procs[i].output],
            None => &planned[interleave.unwrap_or_default()],
        };
        let m = finish_measurement(&mut p, None)?;
        let (file, m) = verify(&mut p, o, rate, m)?;
        done.push((i, o, p, file, m));
    }
    ctx.check_cancel()?;
    let status = CacheStatus::Off;
    let mut outputs = Vec::new();
    for (i, o, p, file, measurement) in done {
        p.commit()?;
        let record = match i {
            Some(i) => LiveRecord {
                source: Some(title.stems[procs[i].stem].file.clone()),
                untouched: procs[i].untouched,
                gain_db: round6(gains[i].gain_db),
                headroom_dbtp: live.headroom_dbtp,
                stem_loudness: live.stem_loudness,
                target_lufs: live.target_lufs,
                measured_true_peak_dbtp: levels[i].true_peak_dbtp.map(round6),
                measured_integrated_lufs: levels[i].integrated_lufs.map(round6),
                note: gains[i].note.clone(),
                channels: Vec::new(),
            },
            None => LiveRecord {
                source: None,
                untouched: false,
                gain_db: 0.0,
                headroom_dbtp: live.headroom_dbtp,
                stem_loudness: live.stem_loudness,
                target_lufs: live.target_lufs,
                measured_true_peak_dbtp: None,
                measured_integrated_lufs: None,
                note: Some(
                    "interleaved: each channel is the mapped live file's channel, sample for sample; those files are judged".into(),
                ),
                channels: sources
                    .iter()
                    .enumerate()
                    .map(|(k, s)| InterleavedChannel {
                        index: k,
                        map: live
                            .interleave
                            .as_ref()
                            .and_then(|il| il.map.get(k).cloned())
                            .unwrap_or_default(),
                        source_file: s.map(|(i, _)| planned[procs[i].output].file_name.clone()),
                        channel: s.map(|(_, c)| c),
                    })
                    .collect(),
            },
        };
        outputs.push(RenderedOutput {
            variant: variant.name.clone(),
            role: o.role,
            group: None,
            file: deliverables_spec::manifest::FileRecord {
                path: o.file_name.clone(),
                ..file
            },
            gain_db: record.gain_db,
            ceiling_trim_db: 0.0,
            fold_down_gain_db: None,
            level_policy: variant.level,
            mode: RenderMode::Live,
            measurement,
            stems_trim_db: None,
            remix: false,
            level_changes: Vec::new(),
            live: Some(record),
            cache: Some(CacheUse {
                status,
                job: ctx.job_id.to_string(),
            }),
        });
    }
    Ok(RenderResult {
        title: title.name.clone(),
        variant: variant.name.clone(),
        description: variant.description.clone(),
        outputs,
    })
}
