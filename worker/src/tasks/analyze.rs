//! Analysis: decode a title, find the master gain that brings the full mix to
//! the target through the whole graph, and lower it if any output would clip.
//!
//! Iterative (render, measure, adjust): exact in two passes for linear graphs,
//! and still correct once the graph holds dynamics. Re-decodes on each pass
//! instead of buffering, so memory does not grow with duration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use deliverables_spec::LevelPolicy;
use deliverables_spec::manifest::{InputRecord, LevelRecord};
use deliverables_spec::model::Title;
use deliverables_spec::outputs::{PlannedOutput, title_outputs};
use deliverables_spec::plan::title_variants;
use deliverables_spec::variant::{Variant, resolve_variant, title_graph, variants};
use serde::{Deserialize, Serialize};

use super::{TaskContext, TaskError};
use crate::decode::StemReader;
use crate::dsp::{Block, MixGraph, gain_to_db};
use crate::meter::{Meter, MeterKind};
use crate::output::{Quantizer, sha256_file};
use crate::source::{BLOCK_FRAMES, OUT_CHANNELS, TitleSource};

const MAX_PASSES: u32 = 6;
/// Gain changes below this end the iteration, dB.
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
    /// Normalized variants other than `full`: their own gain.
    pub normalized: BTreeMap<String, LevelRecord>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// A set of outputs that share one gain, and the mix whose loudness sets it.
struct Family {
    name: String,
    gain_db: f64,
    at_unity: Option<f64>,
    loudness: Option<f64>,
    clip_safety_db: f64,
    clip_output: Option<String>,
    converged: bool,
}

/// One graph rendered in a pass.
struct Probe {
    family: usize,
    /// Sets the family's gain by its loudness.
    measures_loudness: bool,
    label: String,
    graph_variant: Variant,
    stems: Vec<usize>,
}

pub fn analyze(ctx: &TaskContext<'_>, title_name: &str) -> Result<AnalysisResult, TaskError> {
    let spec = ctx.spec;
    let title = spec
        .title(title_name)
        .ok_or_else(|| TaskError::Internal(format!("title `{title_name}` is not in the spec")))?;
    let d = spec.delivery();
    let paths: Vec<PathBuf> = title.stems.iter().map(|s| spec.path(&s.file)).collect();

    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    // Open once to learn formats and rate (and to fail early on bad input).
    let source = TitleSource::open(&paths, d.sample_rate)?;
    let rate = source.sample_rate;
    let infos = source.infos();
    drop(source);
    let expected_frames = infos
        .iter()
        .filter_map(|i| i.frames)
        .max()
        .unwrap_or(0)
        .max(1);

    // Families: the full mix (+ matched outputs), then each normalized variant.
    let all = variants(&spec.spec);
    let (live, _) = title_variants(&spec.spec, title, &all);
    let full = resolve_variant(
        "full",
        &spec.spec.variants.get("full").cloned().unwrap_or_default(),
        &spec.spec.graph,
    );
    let mut families = vec![Family::new("full")];
    let mut probes = vec![Probe {
        family: 0,
        measures_loudness: true,
        label: "full mix".into(),
        stems: (0..title.stems.len()).collect(),
        graph_variant: full.clone(),
    }];
    for v in &live {
        let family = if v.level == LevelPolicy::Normalized && v.name != "full" {
            families.push(Family::new(&v.name));
            let f = families.len() - 1;
            probes.push(Probe {
                family: f,
                measures_loudness: true,
                label: format!("{} mix", v.name),
                stems: (0..title.stems.len()).collect(),
                graph_variant: (*v).clone(),
            });
            f
        } else {
            0
        };
        for o in title_outputs(&spec.spec, &d, title, v, rate) {
            probes.push(Probe {
                family,
                measures_loudness: false,
                label: o.file_name.clone(),
                stems: o.stems.clone(),
                graph_variant: (*v).clone(),
            });
        }
    }

    let full_scale = Quantizer::new(d.bit_depth).full_scale();
    let mut passes = 0;
    let mut frames = 0;
    let mut stem_frames = Vec::new();
    while passes < MAX_PASSES {
        passes += 1;
        let pass = run_pass(ctx, title, &probes, &families, |pos| {
            let est = f64::from(passes - 1) + pos as f64 / expected_frames as f64;
            (ctx.progress)((est / 2.0).min(0.95));
        })?;
        let results = pass.readings;
        frames = pass.frames;
        stem_frames = pass.stem_frames;
        let mut all_converged = true;
        for (fi, fam) in families.iter_mut().enumerate() {
            let members = probes.iter().zip(&results).filter(|(p, _)| p.family == fi);
            let mut loud = None;
            let mut peak = (0.0_f64, String::new());
            for (p, r) in members {
                if p.measures_loudness {
                    loud = r.0;
                }
                if r.1 > peak.0 {
                    peak = (r.1, p.label.clone());
                }
            }
            if passes == 1 {
                fam.at_unity = loud;
            }
            fam.loudness = loud;
            let Some(l) = loud else {
                if fi == 0 {
                    return Err(TaskError::Input(format!(
                        "title `{title_name}`: the full mix is silent (no 400 ms block above -70 LUFS); check the stems are the right files"
                    )));
                }
                notes.push(format!(
                    "variant `{}` is silent; it keeps gain 0 dB",
                    fam.name
                ));
                fam.converged = true;
                continue;
            };
            let want = d.target_lufs - l;
            let headroom = if peak.0 > 0.0 {
                gain_to_db(full_scale / peak.0) - CLIP_MARGIN_DB
            } else {
                f64::INFINITY
            };
            let step = want.min(headroom);
            fam.clip_safety_db = (want - step).max(0.0);
            fam.clip_output = (fam.clip_safety_db > CONVERGED_DB).then(|| peak.1.clone());
            fam.converged = step.abs() < CONVERGED_DB;
            if !fam.converged {
                fam.gain_db += step;
                all_converged = false;
            }
        }
        if all_converged {
            break;
        }
    }
    if families.iter().any(|f| !f.converged) {
        notes.push(format!(
            "level search did not settle within {MAX_PASSES} passes"
        ));
    }
    for f in &families {
        if f.clip_safety_db > CONVERGED_DB {
            notes.push(format!(
                "clip safety: `{}` gain lowered {:.2} dB below the loudness target so that `{}` does not clip (no limiter in this graph)",
                f.name,
                f.clip_safety_db,
                f.clip_output.as_deref().unwrap_or("?")
            ));
        }
    }

    // Input records: content hashes and formats.
    for (((s, p), info), &n) in title.stems.iter().zip(&paths).zip(&infos).zip(&stem_frames) {
        if let Some(stated) = info.frames
            && stated != n
        {
            notes.push(format!(
                "stem `{}`: header states {stated} frames but {n} decoded (truncated or mislabelled file)",
                s.file
            ));
        }
        if n < frames {
            notes.push(format!(
                "stem `{}` is {} frames shorter than the longest stem; padded with silence",
                s.file,
                frames - n
            ));
        }
        inputs.push(input_record(&s.file, "stem", Some(s.role), p, info, n)?);
    }
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

    let rec = |f: &Family| LevelRecord {
        full_mix_lufs_at_unity: f.at_unity,
        master_gain_db: round6(f.gain_db),
        clip_safety_db: round6(f.clip_safety_db),
        clip_safety_output: f.clip_output.clone(),
        passes,
    };
    (ctx.progress)(1.0);
    Ok(AnalysisResult {
        title: title.name.clone(),
        sample_rate: rate,
        frames,
        inputs,
        level: rec(&families[0]),
        full_mix_lufs: families[0].loudness,
        normalized: families[1..]
            .iter()
            .map(|f| (f.name.clone(), rec(f)))
            .collect(),
        notes,
    })
}

impl Family {
    fn new(name: &str) -> Self {
        Family {
            name: name.to_string(),
            gain_db: 0.0,
            at_unity: None,
            loudness: None,
            clip_safety_db: 0.0,
            clip_output: None,
            converged: false,
        }
    }
}

/// Gains are rounded so they travel through JSON unchanged (determinism).
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// What one pass found.
struct PassOutcome {
    /// Per probe: integrated loudness (if measured) and sample peak.
    readings: Vec<(Option<f64>, f64)>,
    /// The title's length: its longest stem.
    frames: u64,
    /// Each stem's own length.
    stem_frames: Vec<u64>,
}

/// Renders every probe once; returns (integrated loudness, sample peak) per
/// probe, the title's length in frames and each stem's.
fn run_pass(
    ctx: &TaskContext<'_>,
    title: &Title,
    probes: &[Probe],
    families: &[Family],
    progress: impl Fn(u64),
) -> Result<PassOutcome, TaskError> {
    let paths: Vec<PathBuf> = title.stems.iter().map(|s| ctx.spec.path(&s.file)).collect();
    let mut source = TitleSource::open(&paths, ctx.spec.delivery().sample_rate)?;
    let rate = source.sample_rate;
    let mut inputs = source.make_blocks();
    let spec = &ctx.spec.spec;
    let mut graphs: Vec<(MixGraph, Option<Meter>, f64)> = probes
        .iter()
        .map(|p| {
            let tg = title_graph(&spec.graph, title, &p.graph_variant);
            let g = MixGraph::new(
                &tg,
                round6(families[p.family].gain_db),
                rate,
                OUT_CHANNELS,
                BLOCK_FRAMES,
                |i| p.stems.contains(&i),
            );
            let meter = if p.measures_loudness {
                Some(Meter::new(OUT_CHANNELS, rate, MeterKind::IntegratedOnly)?)
            } else {
                None
            };
            Ok((g, meter, 0.0))
        })
        .collect::<Result<_, TaskError>>()?;
    let mut out = Block::new(OUT_CHANNELS, BLOCK_FRAMES);
    let mut step = 0u64;
    loop {
        let n = source.read(&mut inputs)?;
        if n == 0 {
            break;
        }
        for (g, meter, peak) in &mut graphs {
            g.process(&inputs, &mut out);
            *peak = peak.max(out.peak());
            if let Some(m) = meter {
                m.add(&out)?;
            }
        }
        step += 1;
        if step.is_multiple_of(16) {
            ctx.check_cancel()?;
            progress(source.position());
        }
    }
    Ok(PassOutcome {
        readings: graphs
            .iter()
            .map(|(_, m, p)| (m.as_ref().and_then(Meter::integrated), *p))
            .collect(),
        frames: source.position(),
        stem_frames: source.stem_positions(),
    })
}

fn input_record(
    spec_path: &str,
    kind: &str,
    role: Option<deliverables_spec::Role>,
    path: &std::path::Path,
    info: &crate::decode::StreamInfo,
    frames: u64,
) -> Result<InputRecord, TaskError> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| TaskError::Input(format!("cannot read '{}': {e}", path.display())))?
        .len();
    Ok(InputRecord {
        path: spec_path.to_string(),
        kind: kind.to_string(),
        role,
        sha256: sha256_file(path)?,
        bytes,
        container: info.container.clone(),
        codec: info.codec.clone(),
        sample_rate: info.sample_rate,
        channels: info.channels,
        bits_per_sample: info.bits_per_sample,
        frames,
    })
}

/// The outputs a render of `variant` produces (shared with the render task).
pub fn outputs_for(
    ctx: &TaskContext<'_>,
    title: &Title,
    variant: &Variant,
    rate: u32,
) -> Vec<PlannedOutput> {
    title_outputs(&ctx.spec.spec, &ctx.spec.delivery(), title, variant, rate)
}
