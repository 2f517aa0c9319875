//! The node contract every processor follows.
//!
//! `prepare` allocates, `reset` clears state, `latency` reports delay in
//! frames, and `process` runs one block in place without allocating.

use super::block::Block;
use super::math::DetMath;

pub trait Node: Send {
    /// The spec's name for this node type.
    fn name(&self) -> &'static str;
    /// Called once before processing; the only place a node may allocate.
    fn prepare(&mut self, sample_rate: u32, channels: usize, max_block: usize);
    /// Back to the state before the first block.
    fn reset(&mut self);
    /// Delay this node adds, in frames.
    fn latency(&self) -> usize {
        0
    }
    /// Processes `block` in place. Must not allocate.
    fn process(&mut self, block: &mut Block);
    /// Dynamics nodes (compressor, limiter): the linear gain applied to each
    /// output frame of the last `process` call (channel-linked, so one value
    /// per frame), such that `output[i] = delayed_input[i] * envelope[i]`
    /// where `delayed_input` is the input delayed by `latency()` frames.
    /// Linked stems replay this envelope instead of running their own
    /// detector. `None` for every other node.
    fn gain_envelope(&self) -> Option<&[f64]> {
        None
    }
}

/// Converts decibels to a linear gain.
pub fn db_to_gain(db: f64) -> f64 {
    10f64.dpowf(db / 20.0)
}

/// Converts a linear amplitude to decibels (−∞ for 0).
pub fn gain_to_db(g: f64) -> f64 {
    20.0 * g.dlog10()
}
