//! The implementations the current kernels replaced, kept verbatim (but for
//! names) as the references the tests hold the current ones to, bit for bit:
//! each later optimisation (skipped steps, shortcuts in the gain computer,
//! several outputs or channels computed at once) must not change a single
//! output sample.

pub(crate) mod band_limit;
pub(crate) mod dynamics;
pub(crate) mod eq;
pub(crate) mod limiter;
pub(crate) mod true_peak;

use crate::block::Block;
use crate::math::DetMath;
use crate::node::Node;

/// Block sizes the comparisons run with.
pub(crate) const BLOCK_SIZES: [usize; 4] = [1, 7, 333, 4096];
/// Channel counts the comparisons run with (3 as well: a kernel running
/// channels in groups of lanes then has a group of two and one of one).
pub(crate) const CHANNELS: [usize; 4] = [1, 2, 3, 6];

/// The test signals' names, indexed as [`signal`]'s `kind`.
pub(crate) const SIGNALS: [&str; 8] = [
    "noise",
    "tones",
    "impulses",
    "silence",
    "tiny",
    "clipped noise",
    "bursts",
    "loud",
];

/// xorshift64*: uniform noise in [-1, 1).
pub(crate) struct Noise(pub(crate) u64);

impl Noise {
    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// `frames` samples per channel of test signal `kind` (see [`SIGNALS`]),
/// different on every channel: full-scale noise; a sum of tones; sparse
/// impulses of both signs; silence; noise at denormal-ish amplitudes (some
/// subnormal); hard-clipped noise at full scale; decaying bursts of tone
/// and noise between silences (the gain computers attack, release and
/// settle); noise and tones far above full scale.
pub(crate) fn signal(kind: usize, channels: usize, frames: usize) -> Vec<Vec<f64>> {
    (0..channels)
        .map(|ch| {
            let mut noise = Noise(0x9E37_79B9_7F4A_7C15 ^ ((ch as u64 + 1) * 0x1234_5678));
            let f = 0.01 + 0.003 * ch as f64;
            (0..frames)
                .map(|i| {
                    let t = i as f64;
                    match kind {
                        0 => noise.next(),
                        1 => 0.5 * (f * t).dsin() + 0.3 * (7.3 * f * t).dsin(),
                        2 => {
                            if i % (97 + 13 * ch) == 5 {
                                if (i / 97) % 2 == 0 { 1.0 } else { -0.75 }
                            } else {
                                0.0
                            }
                        }
                        3 => 0.0,
                        4 => noise.next() * if i % 2 == 0 { 1e-310 } else { 1e-300 },
                        5 => (4.0 * noise.next()).clamp(-1.0, 1.0),
                        6 => {
                            let period = 9000 + 1000 * ch;
                            let phase = i % period;
                            if phase < period / 3 {
                                let env = (-(phase as f64) / 800.0).dexp();
                                env * (0.8 * (f * t).dsin() + 0.4 * noise.next())
                            } else {
                                0.0
                            }
                        }
                        _ => 1e6 * noise.next() + 3e3 * (f * t).dsin(),
                    }
                })
                .collect()
        })
        .collect()
}

/// Runs `new` and `old` (both prepared with `max_block ≥ block`) over
/// `input` in blocks of `block` frames and asserts that every output sample
/// and every gain envelope has the same bits in both.
pub(crate) fn assert_same(
    new: &mut dyn Node,
    old: &mut dyn Node,
    input: &[Vec<f64>],
    block: usize,
    what: &str,
) {
    let channels = input.len();
    let frames = input.first().map_or(0, Vec::len);
    let mut a = Block::new(channels, block);
    let mut b = Block::new(channels, block);
    let mut start = 0;
    while start < frames {
        let n = block.min(frames - start);
        a.set_frames(n);
        for (ch, x) in input.iter().enumerate() {
            a.channel_mut(ch).copy_from_slice(&x[start..start + n]);
        }
        b.copy_from(&a);
        new.process(&mut a);
        old.process(&mut b);
        for ch in 0..channels {
            for (i, (x, y)) in a.channel(ch).iter().zip(b.channel(ch)).enumerate() {
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "{what}: channel {ch}, frame {}: {x} vs {y}",
                    start + i
                );
            }
        }
        match (new.gain_envelope(), old.gain_envelope()) {
            (Some(e), Some(f)) => {
                assert_eq!(e.len(), f.len(), "{what}: envelope length at {start}");
                for (i, (x, y)) in e.iter().zip(f).enumerate() {
                    assert_eq!(
                        x.to_bits(),
                        y.to_bits(),
                        "{what}: envelope, frame {}: {x} vs {y}",
                        start + i
                    );
                }
            }
            (None, None) => {}
            _ => panic!("{what}: one node has a gain envelope, the other not"),
        }
        start += n;
    }
}

/// Times `new` against `old` on 10 s of music-like stereo (the criterion
/// benchmark's material; with `clip`, amplified by it and hard-clipped at
/// full scale) in 4096-frame blocks, alternating the two so that both see
/// the same machine load; prints the best of `rounds` for each.
pub(crate) fn ab_timing(
    name: &str,
    new: &mut dyn Node,
    old: &mut dyn Node,
    clip: Option<f64>,
    rounds: usize,
) {
    const RATE: usize = 48_000;
    const BLOCK: usize = 4096;
    let frames = 10 * RATE;
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut left = Vec::with_capacity(frames);
    for t in 0..frames {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let noise = (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        let beat = (t % 24_000) as f64 / 24_000.0;
        let env = (-beat * 8.0).dexp();
        let x = 0.5 * env * ((t as f64) * 0.013).dsin()
            + 0.3 * env * noise
            + 0.1 * ((t as f64) * 0.0021).dsin();
        left.push(clip.map_or(x, |g| (g * x).clamp(-1.0, 1.0)));
    }
    let right: Vec<f64> = left.iter().map(|x| 0.9 * x).collect();
    new.prepare(RATE as u32, 2, BLOCK);
    old.prepare(RATE as u32, 2, BLOCK);
    let mut block = Block::new(2, BLOCK);
    let mut time = |node: &mut dyn Node| {
        node.reset();
        let t = std::time::Instant::now();
        for start in (0..frames).step_by(BLOCK) {
            let n = BLOCK.min(frames - start);
            block.set_frames(n);
            block
                .channel_mut(0)
                .copy_from_slice(&left[start..start + n]);
            block
                .channel_mut(1)
                .copy_from_slice(&right[start..start + n]);
            node.process(&mut block);
        }
        t.elapsed().as_secs_f64()
    };
    let (mut a, mut b) = (f64::MAX, f64::MAX);
    for _ in 0..rounds {
        a = a.min(time(new));
        b = b.min(time(old));
    }
    println!(
        "{name}: {:.1} M frames/s, previous implementation {:.1} M frames/s: {:.2}x",
        frames as f64 / a / 1e6,
        frames as f64 / b / 1e6,
        b / a
    );
}

/// The current kernels against the previous ones, one after the other on
/// the same material (`cargo test --release -p stemforge-dsp -- --ignored
/// --nocapture kernel_speed`).
#[test]
#[ignore]
fn kernel_speed() {
    use crate::dynamics::{Compressor, CompressorParams, Detection};
    use crate::eq::{Eq, EqKind};
    let rounds = 7;
    ab_timing(
        "band limit",
        &mut crate::band_limit::BandLimit::new(),
        &mut band_limit::BandLimit::new(),
        None,
        rounds,
    );
    let q = std::f64::consts::FRAC_1_SQRT_2;
    for kind in [
        EqKind::HighPass {
            freq_hz: 30.0,
            slope_db_oct: 24,
        },
        EqKind::Peak {
            freq_hz: 2500.0,
            gain_db: -2.0,
            q: 1.2,
        },
        EqKind::HighShelf {
            freq_hz: 10_000.0,
            gain_db: 1.5,
            q,
        },
        EqKind::LowPass {
            freq_hz: 16_000.0,
            slope_db_oct: 48,
        },
    ] {
        let (Ok(mut new), Ok(mut old)) = (Eq::new(kind, 48_000), eq::Eq::new(kind, 48_000)) else {
            panic!("{kind:?}: not a valid filter");
        };
        ab_timing(kind.name(), &mut new, &mut old, None, rounds);
    }
    for detection in [Detection::Peak, Detection::Rms] {
        let p = CompressorParams {
            threshold_db: -18.0,
            ratio: 3.0,
            knee_db: 6.0,
            attack_ms: 5.0,
            release_ms: 120.0,
            makeup_db: 2.0,
            detection,
        };
        for clip in [None, Some(8.0)] {
            ab_timing(
                &format!("compressor {detection:?}, clipped {clip:?}"),
                &mut Compressor::new(p),
                &mut dynamics::Compressor::new(p),
                clip,
                rounds,
            );
        }
    }
}
