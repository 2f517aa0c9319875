//! The EQ node's cascade before channels ran in lanes and sections per
//! sample, verbatim but for names (coefficients come from the current
//! `design`): the reference the current one must match bit for bit.

use crate::block::Block;
use crate::eq::{BiquadCoefs, EqError, EqKind, design};
use crate::node::Node;

pub struct Eq {
    coefs: Vec<BiquadCoefs>,
    /// `[s1, s2]` per channel per section, channel-major.
    state: Vec<[f64; 2]>,
}

impl Eq {
    pub fn new(kind: EqKind, sample_rate: u32) -> Result<Eq, EqError> {
        Ok(Eq {
            coefs: design(kind, sample_rate)?,
            state: Vec::new(),
        })
    }
}

impl Node for Eq {
    fn name(&self) -> &'static str {
        "eq"
    }

    fn prepare(&mut self, _sample_rate: u32, channels: usize, _max_block: usize) {
        self.state = vec![[0.0; 2]; channels * self.coefs.len()];
    }

    fn reset(&mut self) {
        self.state.fill([0.0; 2]);
    }

    fn process(&mut self, block: &mut Block) {
        let sections = self.coefs.len();
        if sections == 0 {
            return;
        }
        // Channels beyond those prepared (a contract violation) pass through.
        for (samples, states) in block
            .channels_mut()
            .zip(self.state.chunks_exact_mut(sections))
        {
            for (c, st) in self.coefs.iter().zip(states.iter_mut()) {
                let [mut s1, mut s2] = *st;
                for x in samples.iter_mut() {
                    let input = *x;
                    let y = c.b0 * input + s1;
                    s1 = c.b1 * input - c.a1 * y + s2;
                    s2 = c.b2 * input - c.a2 * y;
                    *x = y;
                }
                *st = [s1, s2];
            }
        }
    }
}
