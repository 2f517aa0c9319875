//! A chain: nodes built from the spec's node list, run in order.

use deliverables_spec::model::{NodeKind, NodeSpec};

use super::block::Block;
use super::node::Node;
use super::nodes::{Gain, Mute};

pub struct Chain {
    nodes: Vec<Box<dyn Node>>,
}

impl Chain {
    /// Builds and prepares the nodes. `loudness_db` is the gain the
    /// `loudness` node applies (the title's master gain).
    pub fn build(
        specs: &[NodeSpec],
        loudness_db: f64,
        sample_rate: u32,
        channels: usize,
        max_block: usize,
    ) -> Chain {
        let mut nodes: Vec<Box<dyn Node>> = specs
            .iter()
            .map(|n| -> Box<dyn Node> {
                match &n.kind {
                    NodeKind::Gain { db } => Box::new(Gain::from_db("gain", *db)),
                    NodeKind::Mute {} => Box::new(Mute),
                    NodeKind::Loudness {} => Box::new(Gain::from_db("loudness", loudness_db)),
                }
            })
            .collect();
        for n in &mut nodes {
            n.prepare(sample_rate, channels, max_block);
        }
        Chain { nodes }
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Total delay of the chain, in frames.
    pub fn latency(&self) -> usize {
        self.nodes.iter().map(|n| n.latency()).sum()
    }

    pub fn reset(&mut self) {
        for n in &mut self.nodes {
            n.reset();
        }
    }

    pub fn process(&mut self, block: &mut Block) {
        for n in &mut self.nodes {
            n.process(block);
        }
    }
}
