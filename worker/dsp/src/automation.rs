//! Gain that follows the timeline: the `duck` node (clean versions mute or
//! duck a role over listed time ranges).
//!
//! The rule: over each range `[start, end)` the gain is exactly the depth
//! (exact silence, `0.0`, for a mute); the fades lie outside the range — a
//! raised-cosine fade down over the `fade` frames before `start`, and up
//! over the `fade` frames from `end` — and everywhere else the gain is
//! exactly 1, so the samples pass bit for bit. Where two ranges' fades
//! meet, the lower gain wins (the union of the ranges is what is ducked).
//! Positions count frames since `reset` at the rate `prepare` gives, less
//! the latency of the nodes before it in its chain ([`Duck::delayed`]), so
//! the times are on the timeline of the chain's input and the gain of a
//! frame does not depend on how the stream is cut into blocks. The fade shape comes from `dsp::math` (pure-Rust `libm`), so
//! the output is bit-identical on every machine.

use deliverables_spec::model::{TimeRange, merge_ranges};

use super::block::Block;
use super::math::DetMath;
use super::node::{Node, db_to_gain};

pub struct Duck {
    /// The ranges in seconds, sorted and merged.
    seconds: Vec<[f64; 2]>,
    /// The gain inside a range: 0 for a mute.
    depth: f64,
    fade_ms: f64,
    /// Frames the signal reaching the node is late by (the latency of the
    /// nodes before it): added to every range.
    offset: u64,
    /// The ranges in frames at the prepared rate, `[start, end)`, sorted,
    /// disjoint and not touching.
    ranges: Vec<(u64, u64)>,
    /// The fade up's weight of unity, frame by frame: `fade` values strictly
    /// between 0 and 1, rising; the fade down reads it backwards.
    ramp: Vec<f64>,
    /// Per-frame gains of the block in hand (scratch, `max_block` long).
    gains: Vec<f64>,
    /// Frames processed since `reset`.
    pos: u64,
    /// The first range whose fade up has not ended before `pos`.
    cursor: usize,
}

impl Duck {
    /// `depth_db`: the gain inside the ranges (`None`: mute, exact silence).
    pub fn new(ranges: &[TimeRange], depth_db: Option<f64>, fade_ms: f64) -> Self {
        Duck {
            seconds: merge_ranges(ranges),
            depth: depth_db.map_or(0.0, |d| db_to_gain(d.min(0.0))),
            fade_ms: if fade_ms.is_finite() {
                fade_ms.max(0.0)
            } else {
                0.0
            },
            offset: 0,
            ranges: Vec::new(),
            ramp: Vec::new(),
            gains: Vec::new(),
            pos: 0,
            cursor: 0,
        }
    }

    /// The same node behind `frames` frames of latency: its ranges move
    /// that much later, so they stay on the timeline of the chain's input.
    pub fn delayed(mut self, frames: usize) -> Self {
        self.offset = frames as u64;
        self
    }

    /// The frame nearest to `seconds` at `rate` (halves away from zero).
    fn frame(seconds: f64, rate: f64) -> u64 {
        (seconds * rate).round() as u64
    }

    /// The weight of unity at frame `n` (1 outside every range and fade,
    /// 0 inside a range), starting the search at range `from`.
    fn weight(&self, n: u64, from: usize) -> f64 {
        let fade = self.ramp.len() as u64;
        let mut w: f64 = 1.0;
        for &(s, e) in self.ranges.get(from..).unwrap_or(&[]) {
            // Ranges are sorted: none further on reaches back to `n`.
            if n + fade < s {
                break;
            }
            let here = if n < s {
                // Fade down: frame j of it, the last just before `start`.
                let j = (n + fade - s) as usize;
                self.ramp[self.ramp.len() - 1 - j]
            } else if n < e {
                0.0
            } else if n < e + fade {
                self.ramp[(n - e) as usize]
            } else {
                1.0
            };
            w = w.min(here);
        }
        w
    }
}

impl Node for Duck {
    fn name(&self) -> &'static str {
        "duck"
    }

    fn prepare(&mut self, sample_rate: u32, _channels: usize, max_block: usize) {
        let rate = f64::from(sample_rate);
        let fade = (self.fade_ms * rate / 1000.0).round() as usize;
        // Raised cosine, the ends (0 and 1) left out: frame j of the fade up
        // weighs 0.5 − 0.5·cos(π·(j+1)/(fade+1)).
        self.ramp = (0..fade)
            .map(|j| {
                let x = (j + 1) as f64 / (fade + 1) as f64;
                0.5 - 0.5 * (std::f64::consts::PI * x).dcos()
            })
            .collect();
        // Rounding to frames can make ranges touch: merge them again.
        self.ranges = Vec::with_capacity(self.seconds.len());
        for &[a, b] in &self.seconds {
            let (s, e) = (
                Duck::frame(a, rate) + self.offset,
                Duck::frame(b, rate) + self.offset,
            );
            match self.ranges.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => self.ranges.push((s, e)),
            }
        }
        self.gains = vec![1.0; max_block];
        self.reset();
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.cursor = 0;
    }

    fn process(&mut self, block: &mut Block) {
        let frames = block.frames();
        let n0 = self.pos;
        self.pos += frames as u64;
        let fade = self.ramp.len() as u64;
        while self
            .ranges
            .get(self.cursor)
            .is_some_and(|&(_, e)| e + fade <= n0)
        {
            self.cursor += 1;
        }
        // Nothing of a range or its fades in this block: unity, untouched.
        match self.ranges.get(self.cursor) {
            Some(&(s, _)) if s < n0 + frames as u64 + fade => {}
            _ => return,
        }
        let frames = frames.min(self.gains.len());
        for i in 0..frames {
            let w = self.weight(n0 + i as u64, self.cursor);
            self.gains[i] = if w == 1.0 {
                1.0
            } else if w == 0.0 {
                self.depth
            } else {
                self.depth + (1.0 - self.depth) * w
            };
        }
        let gains = &self.gains[..frames];
        for c in block.channels_mut() {
            for (x, &g) in c.iter_mut().zip(gains) {
                // A gain of 0 writes +0.0 (not −0.0 from a negative sample):
                // a mute is exact digital silence.
                *x = if g == 0.0 { 0.0 } else { *x * g };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deliverables_spec::model::Seconds;

    const RATE: u32 = 48_000;

    fn ranges(r: &[(f64, f64)]) -> Vec<TimeRange> {
        r.iter().map(|&(a, b)| [Seconds(a), Seconds(b)]).collect()
    }

    /// Noise-like stereo material, never exactly zero.
    fn noise(frames: usize) -> Vec<Vec<f64>> {
        let mut s = 0x2545_f491_4f6c_dd1d_u64;
        (0..2)
            .map(|_| {
                (0..frames)
                    .map(|_| {
                        s ^= s << 13;
                        s ^= s >> 7;
                        s ^= s << 17;
                        let x = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                        if x == 0.0 { 0.25 } else { x }
                    })
                    .collect()
            })
            .collect()
    }

    /// Runs `duck` over `input` in blocks of `block` frames.
    fn run(duck: &mut Duck, input: &[Vec<f64>], block: usize) -> Vec<Vec<f64>> {
        duck.prepare(RATE, input.len(), block);
        let n = input[0].len();
        let mut out = vec![Vec::with_capacity(n); input.len()];
        let mut b = Block::new(input.len(), block);
        let mut at = 0;
        while at < n {
            let len = block.min(n - at);
            b.set_frames(len);
            for (ch, src) in input.iter().enumerate() {
                b.channel_mut(ch).copy_from_slice(&src[at..at + len]);
            }
            duck.process(&mut b);
            for (ch, dst) in out.iter_mut().enumerate() {
                dst.extend_from_slice(b.channel(ch));
            }
            at += len;
        }
        out
    }

    #[test]
    fn mute_is_exact_silence_over_the_range_and_unity_outside_its_fades() {
        let input = noise(3 * RATE as usize);
        let mut d = Duck::new(&ranges(&[(1.0, 1.5)]), None, 10.0);
        let out = run(&mut d, &input, 4096);
        let (s, e, fade) = (48_000, 72_000, 480);
        for (x, y) in input.iter().zip(&out) {
            // Inside: +0.0, bit for bit.
            assert!(y[s..e].iter().all(|v| v.to_bits() == 0));
            // Before the fade down and after the fade up: the input, bit for bit.
            for i in (0..s - fade).chain(e + fade..x.len()) {
                assert_eq!(x[i].to_bits(), y[i].to_bits(), "frame {i}");
            }
            // The fades are outside the range: the frames next to it are
            // attenuated but not silent.
            assert!(y[s - 1] != 0.0 && y[s - 1].abs() < x[s - 1].abs());
            assert!(y[e] != 0.0 && y[e].abs() < x[e].abs());
        }
    }

    #[test]
    fn duck_depth_is_exact_inside_the_range() {
        let input = noise(2 * RATE as usize);
        let mut d = Duck::new(&ranges(&[(0.5, 1.25)]), Some(-20.0), 10.0);
        let out = run(&mut d, &input, 4096);
        let g = db_to_gain(-20.0);
        for (x, y) in input.iter().zip(&out) {
            for i in 24_000..60_000 {
                assert_eq!(y[i].to_bits(), (x[i] * g).to_bits(), "frame {i}");
            }
            assert_eq!(x[23_519].to_bits(), y[23_519].to_bits());
            assert_eq!(x[60_480].to_bits(), y[60_480].to_bits());
        }
    }

    #[test]
    fn fades_are_monotone_raised_cosines_with_bounded_steps() {
        for (depth, fade_ms) in [
            (None, 10.0),
            (Some(-20.0), 10.0),
            (None, 1.0),
            (None, 250.0),
        ] {
            let n = 2 * RATE as usize;
            let ones = vec![vec![1.0; n]];
            let mut d = Duck::new(&ranges(&[(0.5, 1.0)]), depth, fade_ms);
            let g = run(&mut d, &ones, 4096).remove(0);
            let depth_gain = depth.map_or(0.0, db_to_gain);
            let fade = (fade_ms * f64::from(RATE) / 1000.0).round() as usize;
            // The largest step a raised cosine over fade+1 intervals takes.
            let slope = (1.0 - depth_gain) * std::f64::consts::PI / (2.0 * (fade + 1) as f64);
            let (s, e) = (24_000, 48_000);
            for w in g[s - fade - 1..=s].windows(2) {
                assert!(w[1] <= w[0], "fade down rises: {w:?}");
                assert!(w[0] - w[1] <= slope * (1.0 + 1e-9), "step {w:?} > {slope}");
            }
            for w in g[e - 1..=e + fade].windows(2) {
                assert!(w[1] >= w[0], "fade up falls: {w:?}");
                assert!(w[1] - w[0] <= slope * (1.0 + 1e-9), "step {w:?} > {slope}");
            }
            // Symmetric: the fade up mirrors the fade down.
            for j in 0..fade {
                assert_eq!(g[s - 1 - j].to_bits(), g[e + j].to_bits());
            }
            assert_eq!(g[s - fade - 1], 1.0);
            assert_eq!(g[e + fade], 1.0);
            assert_eq!(g[s], depth_gain);
            assert_eq!(g[e - 1], depth_gain);
        }
    }

    #[test]
    fn output_does_not_depend_on_block_size() {
        let input = noise(RATE as usize);
        let r = ranges(&[(0.2, 0.21), (0.3, 0.5), (0.505, 0.6), (0.9999, 2.0)]);
        let reference = run(&mut Duck::new(&r, None, 10.0), &input, 4096);
        for block in [1, 64, 1000] {
            let out = run(&mut Duck::new(&r, None, 10.0), &input, block);
            assert_eq!(out, reference, "block size {block}");
        }
        let ducked = run(&mut Duck::new(&r, Some(-12.0), 7.0), &input, 4096);
        assert_eq!(run(&mut Duck::new(&r, Some(-12.0), 7.0), &input, 1), ducked);
    }

    #[test]
    fn overlapping_and_unordered_ranges_duck_their_union() {
        let input = noise(RATE as usize);
        let messy = ranges(&[(0.6, 0.8), (0.1, 0.3), (0.25, 0.4), (0.4, 0.45)]);
        let union = ranges(&[(0.1, 0.45), (0.6, 0.8)]);
        assert_eq!(
            run(&mut Duck::new(&messy, None, 10.0), &input, 512),
            run(&mut Duck::new(&union, None, 10.0), &input, 512)
        );
        // Ranges closer than two fades: the gain between them is the lower
        // of the two fades, never above either.
        let close = ranges(&[(0.1, 0.2), (0.205, 0.3)]);
        let ones = vec![vec![1.0; RATE as usize]];
        let g = run(&mut Duck::new(&close, None, 10.0), &ones, 4096).remove(0);
        assert!(
            g[4800..9600]
                .iter()
                .chain(&g[9840..14_400])
                .all(|&x| x == 0.0)
        );
        assert!(g[9600..9840].iter().all(|&x| x > 0.0 && x < 0.5));
    }

    #[test]
    fn a_delayed_duck_moves_its_ranges_by_the_latency_before_it() {
        let input = noise(RATE as usize / 2);
        let r = ranges(&[(0.1, 0.2)]);
        let plain = run(&mut Duck::new(&r, None, 10.0), &input, 512);
        let late = run(&mut Duck::new(&r, None, 10.0).delayed(100), &input, 512);
        assert_eq!(late[0][4800 + 100..9600 + 100], plain[0][4800..9600]);
        assert_eq!(late[0][4799 + 100 - 480], input[0][4799 + 100 - 480]);
        assert!(late[0][4800..4900].iter().all(|&x| x != 0.0));
    }

    #[test]
    fn in_a_chain_a_duck_keeps_to_the_chain_inputs_timeline() {
        use crate::chain::{Chain, ChainContext};
        use deliverables_spec::model::{NodeKind, NodeSpec};
        let ctx = ChainContext {
            sample_rate: RATE,
            channels: 2,
            max_block: 512,
            loudness_db: 0.0,
            fold_gain_db: 0.0,
            default_ceiling_db: -1.0,
        };
        let duck = NodeSpec::new(NodeKind::Duck {
            ranges: ranges(&[(0.1, 0.2)]),
            depth_db: None,
            fade_ms: 10.0,
        });
        let limiter = NodeSpec::new(NodeKind::Limiter {
            ceiling_dbtp: None,
            lookahead_ms: 2.0,
            release_ms: 80.0,
            band_limit: true,
        });
        let mut chain = Chain::build(&[limiter, duck], &ctx, "t", false).expect("chain");
        let lat = chain.latency();
        assert!(lat > 0);
        let n = RATE as usize / 2;
        let mut b = Block::new(2, 512);
        let mut out = Vec::new();
        let mut at = 0;
        while at < n {
            let len = 512.min(n - at);
            b.set_frames(len);
            for ch in 0..2 {
                for (i, x) in b.channel_mut(ch).iter_mut().enumerate() {
                    *x = 0.01 * (((at + i) as f64) * 0.05).dsin();
                }
            }
            chain.process(&mut b);
            out.extend_from_slice(b.channel(0));
            at += len;
        }
        // Silent exactly over the range as the chain's input counts it.
        assert!(out[4800 + lat..9600 + lat].iter().all(|x| x.to_bits() == 0));
        assert!(out[4800 + lat - 1] != 0.0 && out[9600 + lat] != 0.0);
    }

    #[test]
    fn reset_starts_the_timeline_again_and_ranges_at_zero_fade_in_part() {
        let input = noise(RATE as usize / 2);
        let mut d = Duck::new(&ranges(&[(0.0, 0.1), (0.002, 0.2)]), None, 10.0);
        let a = run(&mut d, &input, 256);
        d.reset();
        let b = run(&mut d, &input, 256);
        assert_eq!(a, b);
        assert!(a[0][..9600].iter().all(|v| v.to_bits() == 0));
        // No fade at all: a hard switch at the range's edges.
        let hard = run(
            &mut Duck::new(&ranges(&[(0.1, 0.2)]), None, 0.0),
            &input,
            300,
        );
        assert_eq!(hard[0][4799], input[0][4799]);
        assert_eq!(hard[0][4800], 0.0);
        assert_eq!(hard[0][9599], 0.0);
        assert_eq!(hard[0][9600], input[0][9600]);
    }
}
