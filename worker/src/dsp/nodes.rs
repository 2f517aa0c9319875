//! The basic nodes: gain (also the loudness stage) and mute.

use super::block::Block;
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
