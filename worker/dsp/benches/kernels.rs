//! Criterion benchmarks of the DSP kernels on one core, each node built
//! directly from this crate: the band limit, an EQ cascade, the compressor
//! (peak and RMS detection), the master limiter and the true-peak meter.
//! Input: 10 s of music-like stereo material at 48 kHz in 4096-frame blocks.
//! Throughput is in input frames; realtime factor = frames per second / 48 000.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use stemforge_dsp::Block;
use stemforge_dsp::band_limit::BandLimit;
use stemforge_dsp::dynamics::{Compressor, CompressorParams, Detection};
use stemforge_dsp::eq::{Eq, EqKind};
use stemforge_dsp::limiter::{Limiter, LimiterParams};
use stemforge_dsp::math::DetMath;
use stemforge_dsp::node::Node;
use stemforge_dsp::true_peak::TruePeakDetector;

const RATE: u32 = 48_000;
const BLOCK: usize = 4096;
const SECONDS: usize = 10;

/// Music-like stereo test material, scaled by `gain`: decaying tones and
/// noise bursts (the worker crate's DSP benchmark uses the same recipe).
fn material(gain: f64) -> Vec<Block> {
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
            let env = (-beat * 8.0).dexp();
            let x = 0.5 * env * ((t as f64) * 0.013).dsin()
                + 0.3 * env * noise
                + 0.1 * ((t as f64) * 0.0021).dsin();
            b.channel_mut(0)[i] = gain * x;
            b.channel_mut(1)[i] = gain * 0.9 * x;
            t += 1;
        }
        out.push(b);
    }
    out
}

fn frames(input: &[Block]) -> u64 {
    input.iter().map(|b| b.frames() as u64).sum()
}

/// Runs `nodes` in order over the material, block by block.
fn run_nodes(c: &mut Criterion, name: &str, gain: f64, make: impl Fn() -> Vec<Box<dyn Node>>) {
    let input = material(gain);
    let mut g = c.benchmark_group("kernels");
    g.throughput(Throughput::Elements(frames(&input)));
    g.sample_size(10);
    g.bench_function(name, |b| {
        let mut nodes = make();
        for n in &mut nodes {
            n.prepare(RATE, 2, BLOCK);
        }
        let mut work = Block::new(2, BLOCK);
        b.iter(|| {
            for n in &mut nodes {
                n.reset();
            }
            for blk in &input {
                work.copy_from(blk);
                for n in &mut nodes {
                    n.process(&mut work);
                }
            }
            std::hint::black_box(work.channel(0)[0])
        })
    });
    g.finish();
}

fn eq(kind: EqKind) -> Box<dyn Node> {
    match Eq::new(kind, RATE) {
        Ok(e) => Box::new(e),
        Err(e) => panic!("bench EQ: {e}"),
    }
}

fn compressor(detection: Detection) -> Box<dyn Node> {
    Box::new(Compressor::new(CompressorParams {
        threshold_db: -18.0,
        ratio: 3.0,
        knee_db: 6.0,
        attack_ms: 5.0,
        release_ms: 120.0,
        makeup_db: 2.0,
        detection,
    }))
}

fn true_peak_meter(c: &mut Criterion) {
    let input = material(1.0);
    let mut g = c.benchmark_group("kernels");
    g.throughput(Throughput::Elements(frames(&input)));
    g.sample_size(10);
    g.bench_function("true_peak_meter_stereo", |b| {
        let mut det = TruePeakDetector::new(2, RATE);
        b.iter(|| {
            det.reset();
            for blk in &input {
                det.push_block(blk);
            }
            std::hint::black_box(det.finish())
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    run_nodes(c, "band_limit_stereo", 1.0, || {
        vec![Box::new(BandLimit::new()) as Box<dyn Node>]
    });
    // A realistic cascade of four biquads: high-pass 24 dB/oct (two
    // sections), a peak and a high shelf.
    run_nodes(c, "eq_cascade_4_sections", 1.0, || {
        vec![
            eq(EqKind::HighPass {
                freq_hz: 30.0,
                slope_db_oct: 24,
            }),
            eq(EqKind::Peak {
                freq_hz: 2500.0,
                gain_db: -2.0,
                q: 1.2,
            }),
            eq(EqKind::HighShelf {
                freq_hz: 10_000.0,
                gain_db: 1.5,
                q: std::f64::consts::FRAC_1_SQRT_2,
            }),
        ]
    });
    run_nodes(c, "eq_low_pass_48", 1.0, || {
        vec![eq(EqKind::LowPass {
            freq_hz: 16_000.0,
            slope_db_oct: 48,
        })]
    });
    run_nodes(c, "compressor_peak", 1.0, || {
        vec![compressor(Detection::Peak)]
    });
    run_nodes(c, "compressor_rms", 1.0, || {
        vec![compressor(Detection::Rms)]
    });
    // The master limiter as the demo runs it, after its +6 dB loudness gain.
    run_nodes(c, "limiter_master", 2.0, || {
        vec![Box::new(Limiter::new(LimiterParams {
            ceiling_db: -1.1,
            lookahead_ms: 2.0,
            release_ms: 80.0,
        })) as Box<dyn Node>]
    });
    true_peak_meter(c);
}

criterion_group!(kernels, benches);
criterion_main!(kernels);
