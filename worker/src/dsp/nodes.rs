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
