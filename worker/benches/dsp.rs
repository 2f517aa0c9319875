//! Criterion benchmarks of the DSP on one core: the limiter, the band limit,
//! a compressor, an EQ, a mastering bus chain, and 48 → 44.1 kHz sample-rate
//! conversion. Throughput is reported in input frames; realtime factor =
//! frames per second / 48 000. `stemforge bench` times the demo's whole graph
//! against ffmpeg in the same run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use deliverables_spec::model::{Detection, NodeKind, NodeSpec};
use stemforge_worker::dsp::Block;
use stemforge_worker::dsp::chain::{Chain, ChainContext};
use stemforge_worker::dsp::resample::Resampler;

const RATE: u32 = 48_000;
const BLOCK: usize = 4096;
const SECONDS: usize = 10;

/// Music-like stereo test material: decaying tones and noise bursts.
fn material() -> Vec<Block> {
    let mut out = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut t = 0usize;
    for _ in 0..(SECONDS * RATE as usize).div_ceil(BLOCK) {
        let mut b = Block::new(2, BLOCK);
        b.silence(BLOCK);
        for i in 0..BLOCK {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let noise = (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let beat = (t % 24_000) as f64 / 24_000.0;
            let env = (-beat * 8.0).exp();
            let x = 0.5 * env * ((t as f64) * 0.013).sin()
                + 0.3 * env * noise
                + 0.1 * ((t as f64) * 0.0021).sin();
            b.channel_mut(0)[i] = x;
            b.channel_mut(1)[i] = 0.9 * x;
            t += 1;
        }
        out.push(b);
    }
    out
}

fn chain(nodes: Vec<NodeKind>) -> Chain {
    let ctx = ChainContext {
        sample_rate: RATE,
        channels: 2,
        max_block: BLOCK,
        loudness_db: 6.0,
        fold_gain_db: 0.0,
        default_ceiling_db: -1.1,
    };
    let specs: Vec<NodeSpec> = nodes.into_iter().map(NodeSpec::new).collect();
    match Chain::build(&specs, &ctx, "bench", false) {
        Ok(c) => c,
        Err(e) => panic!("bench chain: {e}"),
    }
}

fn run(c: &mut Criterion, name: &str, nodes: Vec<NodeKind>) {
    let input = material();
    let frames: usize = input.iter().map(Block::frames).sum();
    let mut g = c.benchmark_group("dsp");
    g.throughput(Throughput::Elements(frames as u64));
    g.sample_size(10);
    g.bench_function(name, |b| {
        let mut ch = chain(nodes.clone());
        let mut work = Block::new(2, BLOCK);
        b.iter(|| {
            for blk in &input {
                work.copy_from(blk);
                ch.process(&mut work);
            }
            std::hint::black_box(work.channel(0)[0])
        })
    });
    g.finish();
}

/// 48 → 44.1 kHz, stereo, fed in the pipeline's 4096-frame blocks.
fn resample(c: &mut Criterion) {
    let input = material();
    let frames: usize = input.iter().map(Block::frames).sum();
    let mut g = c.benchmark_group("dsp");
    g.throughput(Throughput::Elements(frames as u64));
    g.sample_size(10);
    g.bench_function("resample_48k_to_44k1_stereo", |b| {
        let mut r = match Resampler::new(RATE, 44_100, 2) {
            Ok(r) => r,
            Err(e) => panic!("bench resampler: {e}"),
        };
        let cap = Resampler::output_frames(frames as u64, RATE, 44_100) as usize;
        let mut out: Vec<Vec<f64>> = (0..2).map(|_| Vec::with_capacity(cap)).collect();
        b.iter(|| {
            out.iter_mut().for_each(Vec::clear);
            for blk in &input {
                r.process(&[blk.channel(0), blk.channel(1)], &mut out);
            }
            r.finish(&mut out);
            std::hint::black_box(out[0].len())
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    resample(c);
    let limiter = NodeKind::Limiter {
        ceiling_dbtp: None,
        lookahead_ms: 2.0,
        release_ms: 80.0,
        band_limit: false,
    };
    run(c, "limiter", vec![NodeKind::Loudness {}, limiter.clone()]);
    run(
        c,
        "limiter_with_band_limit",
        vec![
            NodeKind::Loudness {},
            NodeKind::Limiter {
                ceiling_dbtp: None,
                lookahead_ms: 2.0,
                release_ms: 80.0,
                band_limit: true,
            },
        ],
    );
    run(
        c,
        "compressor",
        vec![NodeKind::Compressor {
            threshold_db: -18.0,
            ratio: 3.0,
            knee_db: 6.0,
            attack_ms: 5.0,
            release_ms: 120.0,
            makeup_db: 2.0,
            detection: Detection::Peak,
        }],
    );
    run(
        c,
        "eq_high_pass_24",
        vec![NodeKind::HighPass {
            freq_hz: 30.0,
            slope_db_oct: 24,
        }],
    );
    run(
        c,
        "master_bus",
        vec![
            NodeKind::HighPass {
                freq_hz: 20.0,
                slope_db_oct: 12,
            },
            NodeKind::Compressor {
                threshold_db: -12.0,
                ratio: 1.5,
                knee_db: 6.0,
                attack_ms: 30.0,
                release_ms: 250.0,
                makeup_db: 0.0,
                detection: Detection::Peak,
            },
            NodeKind::Loudness {},
            limiter,
        ],
    );
}

criterion_group!(dsp, benches);
criterion_main!(dsp);
