//! `stemforge bench`: realtime factor of the mastering graph on one core, and
//! of ffmpeg doing comparable work in the same run (amix + equalizer +
//! acompressor + alimiter), as a ratio — absolute figures are noisy here.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use deliverables_spec::variant::{resolve_variant, title_graph};
use stemforge_worker::dsp::chain::ChainContext;
use stemforge_worker::dsp::{Block, MixGraph};
use stemforge_worker::source::{BLOCK_FRAMES, TitleSource};

use stemforge_demo as demo;

pub struct BenchReport {
    pub audio_seconds: f64,
    pub graph_realtime: f64,
    pub ffmpeg_realtime: Option<f64>,
}

/// Renders the demo's full mix graph over in-memory stems `repeats` times.
pub fn run(
    dir: &Path,
    seconds: f64,
    repeats: usize,
    layout: deliverables_spec::model::Layout,
) -> Result<BenchReport> {
    let spec_path = demo::write_session(dir, seconds, layout)?;
    let loaded = deliverables_spec::load_file(&spec_path)?;
    let title = &loaded.spec.titles[0];
    let paths: Vec<_> = title.stems.iter().map(|s| loaded.path(&s.file)).collect();

    // Decode once into memory: the bench times the graph, not the decoder.
    let mut source = TitleSource::open(&paths, None, title.layout)?;
    let rate = source.sample_rate;
    let mut blocks: Vec<Vec<Block>> = Vec::new();
    loop {
        let mut b = source.make_blocks();
        if source.read(&mut b)? == 0 {
            break;
        }
        blocks.push(b);
    }
    let frames: usize = blocks.iter().map(|b| b[0].frames()).sum();
    let audio_seconds = frames as f64 / f64::from(rate);

    let full = resolve_variant(
        "full",
        &loaded
            .spec
            .variants
            .get("full")
            .cloned()
            .unwrap_or_default(),
        &loaded.spec.graph,
    );
    let tg = title_graph(&loaded.spec.graph, title, &full);
    let ctx = ChainContext {
        sample_rate: rate,
        channels: title.layout.channels(),
        max_block: BLOCK_FRAMES,
        loudness_db: -8.0,
        fold_gain_db: 0.0,
        default_ceiling_db: -1.1,
    };
    let mut out = Block::new(title.layout.channels(), BLOCK_FRAMES);
    let mut best = f64::MAX;
    let mut sink = 0.0;
    for _ in 0..repeats.max(1) {
        let mut g = MixGraph::new(&tg, &ctx, |_| true, false)?;
        let t = Instant::now();
        for b in &blocks {
            g.process(b, &mut out);
            sink += out.channel(0).first().copied().unwrap_or(0.0);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(sink);

    let ffmpeg_realtime = ffmpeg_time(&paths, repeats)?.map(|t| audio_seconds / t);
    Ok(BenchReport {
        audio_seconds,
        graph_realtime: audio_seconds / best,
        ffmpeg_realtime,
    })
}

/// Best wall time of ffmpeg mixing the stems through a comparable chain, or
/// `None` when ffmpeg is not installed.
fn ffmpeg_time(paths: &[std::path::PathBuf], repeats: usize) -> Result<Option<f64>> {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        return Ok(None);
    }
    let n = paths.len();
    let filter = format!(
        "amix=inputs={n}:normalize=0,equalizer=f=30:t=q:w=0.7:g=-6,equalizer=f=2500:t=q:w=1:g=-2,\
         equalizer=f=8000:t=q:w=0.7:g=2,acompressor=threshold=0.2:ratio=1.5:attack=30:release=250,\
         volume=-8dB,alimiter=limit=0.88:attack=2:release=80:level=disabled"
    );
    let mut best = f64::MAX;
    for _ in 0..repeats.max(1) {
        let mut cmd = Command::new("ffmpeg");
        cmd.args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-threads",
            "1",
        ]);
        for p in paths {
            cmd.arg("-i").arg(p);
        }
        cmd.args([
            "-filter_complex",
            &filter,
            "-filter_threads",
            "1",
            "-f",
            "null",
            "-",
        ]);
        let t = Instant::now();
        let o = cmd.output().context("running ffmpeg")?;
        let e = t.elapsed().as_secs_f64();
        if !o.status.success() {
            bail!("ffmpeg failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        best = best.min(e);
    }
    Ok(Some(best))
}
