//! The basic nodes: gain (also the loudness stage) and mute.

use super::block::Block;
use super::math::DetMath;
use super::node::{Node, db_to_gain};

/// Static gain. Also used for the loudness stage, with the title's master gain.
pub struct Gain {
    name: &'static str,
    gain: f64,
}

impl Gain {
    pub fn from_db(name: &'static str, db: f64) -> Self {
        Gain {
            name,
            gain: db_to_gain(db),
        }
    }
}

impl Node for Gain {
    fn name(&self) -> &'static str {
        self.name
    }
    fn prepare(&mut self, _: u32, _: usize, _: usize) {}
    fn reset(&mut self) {}
    fn process(&mut self, block: &mut Block) {
        if self.gain == 1.0 {
            return;
        }
        for c in block.channels_mut() {
            for x in c {
                *x *= self.gain;
            }
        }
    }
}

/// Silence.
pub struct Mute;

impl Node for Mute {
    fn name(&self) -> &'static str {
        "mute"
    }
    fn prepare(&mut self, _: u32, _: usize, _: usize) {}
    fn reset(&mut self) {}
    fn process(&mut self, block: &mut Block) {
        for c in block.channels_mut() {
            c.fill(0.0);
        }
    }
}

/// Inverts the signal.
pub struct Polarity;

impl Node for Polarity {
    fn name(&self) -> &'static str {
        "polarity"
    }
    fn prepare(&mut self, _: u32, _: usize, _: usize) {}
    fn reset(&mut self) {}
    fn process(&mut self, block: &mut Block) {
        for c in block.channels_mut() {
            for x in c {
                *x = -*x;
            }
        }
    }
}

/// Stereo balance: the far side is attenuated by cos(|p|·π/2), the near side
/// untouched; centre is unity. On more than two channels it acts on the front pair.
pub struct Balance {
    left: f64,
    right: f64,
}

impl Balance {
    pub fn new(position: f64) -> Self {
        let p = position.clamp(-1.0, 1.0);
        let far = (p.abs() * std::f64::consts::FRAC_PI_2).dcos();
        let (left, right) = if p > 0.0 {
            (far, 1.0)
        } else if p < 0.0 {
            (1.0, far)
        } else {
            (1.0, 1.0)
        };
        Balance { left, right }
    }
}

impl Node for Balance {
    fn name(&self) -> &'static str {
        "balance"
    }
    fn prepare(&mut self, _: u32, _: usize, _: usize) {}
    fn reset(&mut self) {}
    fn process(&mut self, block: &mut Block) {
        if block.channels() < 2 {
            return;
        }
        for (ch, g) in [(0, self.left), (1, self.right)] {
            if g != 1.0 {
                for x in block.channel_mut(ch) {
                    *x *= g;
                }
            }
        }
    }
}

/// Stereo width by mid/side on channels 0 and 1 (L, R; the front pair of a
/// 5.1 block): M = (L+R)/2, S = w·(L−R)/2, L' = M+S, R' = M−S. Linear and
/// latency-free, so stems processed with it still sum to the mix. Width 0
/// makes the pair mono (L' = R' exactly); L'+R' = L+R to rounding.
pub struct Width {
    width: f64,
}

impl Width {
    pub fn new(width: f64) -> Self {
        Width {
            width: width.max(0.0),
        }
    }
}

impl Node for Width {
    fn name(&self) -> &'static str {
        "width"
    }
    fn prepare(&mut self, _: u32, _: usize, _: usize) {}
    fn reset(&mut self) {}
    fn process(&mut self, block: &mut Block) {
        if block.channels() < 2 || self.width == 1.0 {
            return;
        }
        let frames = block.frames();
        let w = self.width;
        let raw = block.raw_mut();
        let (left, rest) = raw.split_at_mut(1);
        let (l, r) = (&mut left[0][..frames], &mut rest[0][..frames]);
        for (a, b) in l.iter_mut().zip(r.iter_mut()) {
            let mid = 0.5 * (*a + *b);
            let side = w * 0.5 * (*a - *b);
            *a = mid + side;
            *b = mid - side;
        }
    }
}

/// A fixed delay of whole frames: latency compensation between parallel paths.
pub struct Delay {
    frames: usize,
    /// Per channel ring buffer of `frames` samples.
    ring: Vec<Vec<f64>>,
    pos: usize,
}

impl Delay {
    pub fn new(frames: usize) -> Self {
        Delay {
            frames,
            ring: Vec::new(),
            pos: 0,
        }
    }

    /// Delays `block` in place by `frames` (a no-op for 0).
    fn run(&mut self, block: &mut Block) {
        if self.frames == 0 {
            return;
        }
        let start = self.pos;
        for (ch, ring) in self.ring.iter_mut().enumerate().take(block.channels()) {
            let mut p = start;
            for x in block.channel_mut(ch) {
                std::mem::swap(x, &mut ring[p]);
                p += 1;
                if p == self.frames {
                    p = 0;
                }
            }
        }
        self.pos = (start + block.frames()) % self.frames;
    }
}

impl Node for Delay {
    fn name(&self) -> &'static str {
        "delay"
    }
    fn prepare(&mut self, _: u32, channels: usize, _: usize) {
        self.ring = vec![vec![0.0; self.frames]; channels];
        self.pos = 0;
    }
    fn reset(&mut self) {
        for r in &mut self.ring {
            r.fill(0.0);
        }
        self.pos = 0;
    }
    fn latency(&self) -> usize {
        self.frames
    }
    fn process(&mut self, block: &mut Block) {
        self.run(block);
    }
}

/// Replays a dynamics node's gain envelope computed elsewhere (on the full
/// mix) onto this signal: the same delay as the source node, then the same
/// per-frame gain. Linked stems use it so that Σ stems = the mastered mix.
pub struct EnvelopeReplay {
    name: &'static str,
    delay: Delay,
}

impl EnvelopeReplay {
    /// `latency` must equal the source node's.
    pub fn new(name: &'static str, latency: usize) -> Self {
        EnvelopeReplay {
            name,
            delay: Delay::new(latency),
        }
    }

    /// Delays `block` and multiplies frame i by `envelope[i]`.
    pub fn apply(&mut self, block: &mut Block, envelope: &[f64]) {
        self.delay.run(block);
        for c in block.channels_mut() {
            for (x, g) in c.iter_mut().zip(envelope) {
                *x *= g;
            }
        }
    }
}

impl Node for EnvelopeReplay {
    fn name(&self) -> &'static str {
        self.name
    }
    fn prepare(&mut self, sr: u32, channels: usize, max_block: usize) {
        self.delay.prepare(sr, channels, max_block);
    }
    fn reset(&mut self) {
        self.delay.reset();
    }
    fn latency(&self) -> usize {
        self.delay.frames
    }
    /// Without an envelope to replay (never in a linked graph), only delays.
    fn process(&mut self, block: &mut Block) {
        self.delay.run(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5.1 block of decorrelated noise-like material (L R C LFE Ls Rs).
    fn surround_block(frames: usize) -> Block {
        let mut b = Block::new(6, frames);
        b.set_frames(frames);
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        for ch in 0..6 {
            for x in b.channel_mut(ch) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                *x = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            }
        }
        b
    }

    #[test]
    fn width_zero_is_mono_and_every_width_keeps_the_mono_sum() {
        let input = surround_block(48_000);
        let peak = input.peak();
        for w in [0.0, 0.25, 0.5, 1.0, 1.5, 2.0] {
            let mut b = surround_block(48_000);
            Width::new(w).process(&mut b);
            if w == 0.0 {
                assert!(
                    b.channel(0)
                        .iter()
                        .zip(b.channel(1))
                        .all(|(l, r)| l.to_bits() == r.to_bits()),
                    "width 0: L = R exactly"
                );
            }
            let err = b
                .channel(0)
                .iter()
                .zip(b.channel(1))
                .zip(input.channel(0).iter().zip(input.channel(1)))
                .map(|((l, r), (l0, r0))| ((l + r) - (l0 + r0)).abs())
                .fold(0.0f64, f64::max);
            let err_db = 20.0 * (err.max(1e-300) / peak).log10();
            assert!(err_db <= -120.0, "width {w}: L+R moved by {err_db:.1} dB");
            // The side signal scales by exactly `w` (to rounding).
            let side = |blk: &Block, i: usize| blk.channel(0)[i] - blk.channel(1)[i];
            for i in [0, 1000, 47_999] {
                assert!((side(&b, i) - w * side(&input, i)).abs() < 1e-12);
            }
            // Centre, LFE and surrounds are untouched.
            for ch in 2..6 {
                assert_eq!(b.channel(ch), input.channel(ch), "channel {ch}, width {w}");
            }
        }
    }

    #[test]
    fn width_one_is_bit_transparent_and_mono_blocks_pass_through() {
        let mut b = surround_block(1024);
        let before = b.channel(0).to_vec();
        Width::new(1.0).process(&mut b);
        assert_eq!(b.channel(0), before.as_slice());
        let mut mono = Block::new(1, 16);
        mono.set_frames(16);
        mono.channel_mut(0).fill(0.5);
        Width::new(0.0).process(&mut mono);
        assert!(mono.channel(0).iter().all(|x| *x == 0.5));
    }
}
