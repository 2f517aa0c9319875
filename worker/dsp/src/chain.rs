//! A chain: nodes built from the spec's node list, run in order.
//!
//! A chain can be built *linked*: its dynamics nodes (compressor, limiter)
//! are replaced by [`EnvelopeReplay`] nodes that apply the gain envelope the
//! same position of a reference chain computed on the same block. Linked
//! stems use this so that Σ processed stems = the mastered mix.

use deliverables_spec::model::{Detection as SpecDetection, NodeKind, NodeSpec};

use super::automation::Duck;
use super::band_limit::BandLimit;
use super::block::Block;
use super::dynamics::{Compressor, CompressorParams, Detection};
use super::eq::{Eq, EqKind};
use super::limiter::{Limiter, LimiterParams};
use super::node::Node;
use super::nodes::{Balance, EnvelopeReplay, Gain, Mute, Polarity, Width};

/// What every node of a graph is built with.
#[derive(Debug, Clone, Copy)]
pub struct ChainContext {
    pub sample_rate: u32,
    pub channels: usize,
    pub max_block: usize,
    /// The gain the `loudness` node applies (the title's master gain), dB.
    pub loudness_db: f64,
    /// A fold-down's own gain after the fold to stereo, dB.
    pub fold_gain_db: f64,
    /// A limiter without `ceiling_dbtp` limits to this (delivery ceiling minus margin).
    pub default_ceiling_db: f64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct GraphError {
    /// Where the node is, e.g. `graph.buses.music.chain[1]`.
    pub field: String,
    pub reason: String,
}

enum Slot {
    Node(Box<dyn Node>),
    Replay(EnvelopeReplay),
}

impl Slot {
    fn latency(&self) -> usize {
        match self {
            Slot::Node(n) => n.latency(),
            Slot::Replay(r) => r.latency(),
        }
    }
}

pub struct Chain {
    slots: Vec<Slot>,
}

/// Builds one node from its spec.
pub fn build_node(spec: &NodeSpec, ctx: &ChainContext) -> Result<Box<dyn Node>, String> {
    let eq = |k: EqKind| -> Result<Box<dyn Node>, String> {
        Eq::new(k, ctx.sample_rate)
            .map(|e| Box::new(e) as Box<dyn Node>)
            .map_err(|e| e.to_string())
    };
    Ok(match &spec.kind {
        NodeKind::Gain { db } => Box::new(Gain::from_db("gain", *db)),
        NodeKind::Mute {} => Box::new(Mute),
        NodeKind::Loudness {} => Box::new(Gain::from_db("loudness", ctx.loudness_db)),
        NodeKind::Polarity {} => Box::new(Polarity),
        NodeKind::Balance { position } => Box::new(Balance::new(*position)),
        NodeKind::Width { width } => Box::new(Width::new(*width)),
        NodeKind::HighPass {
            freq_hz,
            slope_db_oct,
        } => eq(EqKind::HighPass {
            freq_hz: *freq_hz,
            slope_db_oct: *slope_db_oct,
        })?,
        NodeKind::LowPass {
            freq_hz,
            slope_db_oct,
        } => eq(EqKind::LowPass {
            freq_hz: *freq_hz,
            slope_db_oct: *slope_db_oct,
        })?,
        NodeKind::LowShelf {
            freq_hz,
            gain_db,
            q,
        } => eq(EqKind::LowShelf {
            freq_hz: *freq_hz,
            gain_db: *gain_db,
            q: *q,
        })?,
        NodeKind::HighShelf {
            freq_hz,
            gain_db,
            q,
        } => eq(EqKind::HighShelf {
            freq_hz: *freq_hz,
            gain_db: *gain_db,
            q: *q,
        })?,
        NodeKind::Peak {
            freq_hz,
            gain_db,
            q,
        } => eq(EqKind::Peak {
            freq_hz: *freq_hz,
            gain_db: *gain_db,
            q: *q,
        })?,
        NodeKind::Notch { freq_hz, q } => eq(EqKind::Notch {
            freq_hz: *freq_hz,
            q: *q,
        })?,
        NodeKind::Compressor {
            threshold_db,
            ratio,
            knee_db,
            attack_ms,
            release_ms,
            makeup_db,
            detection,
        } => Box::new(Compressor::new(CompressorParams {
            threshold_db: *threshold_db,
            ratio: *ratio,
            knee_db: *knee_db,
            attack_ms: *attack_ms,
            release_ms: *release_ms,
            makeup_db: *makeup_db,
            detection: match detection {
                SpecDetection::Peak => Detection::Peak,
                SpecDetection::Rms => Detection::Rms,
            },
        })),
        NodeKind::Limiter {
            ceiling_dbtp,
            lookahead_ms,
            release_ms,
            ..
        } => Box::new(Limiter::new(LimiterParams {
            ceiling_db: ceiling_dbtp.unwrap_or(ctx.default_ceiling_db),
            lookahead_ms: *lookahead_ms,
            release_ms: *release_ms,
        })),
        NodeKind::Duck {
            ranges,
            depth_db,
            fade_ms,
        } => Box::new(Duck::new(ranges, *depth_db, *fade_ms)),
    })
}

impl Chain {
    /// Builds and prepares the nodes; `field` names the chain in errors.
    /// `linked`: dynamics nodes replay a reference chain's envelopes.
    pub fn build(
        specs: &[NodeSpec],
        ctx: &ChainContext,
        field: &str,
        linked: bool,
    ) -> Result<Chain, GraphError> {
        Chain::build_numbered(specs, 0, 0, ctx, field, linked)
    }

    /// Builds the nodes `specs[from..]`: the rest of a chain from one of its
    /// nodes on. Run after a chain of `specs[..from]` it processes exactly
    /// as the chain of all of `specs` (each node is its own object, built
    /// from its spec and `ctx` alone). Errors name nodes by their index in
    /// the whole chain.
    pub fn build_from(
        specs: &[NodeSpec],
        from: usize,
        ctx: &ChainContext,
        field: &str,
        linked: bool,
    ) -> Result<Chain, GraphError> {
        // A duck further on counts its times from the whole chain's input:
        // it needs the latency of the nodes left out.
        let rest = specs.get(from..).unwrap_or(&[]);
        let upstream = if rest.iter().any(|n| matches!(n.kind, NodeKind::Duck { .. })) {
            Chain::build(specs.get(..from).unwrap_or(&[]), ctx, field, linked)?.latency()
        } else {
            0
        };
        Chain::build_numbered(rest, from, upstream, ctx, field, linked)
    }

    /// Builds `specs`, the first of which is node `first` of the chain,
    /// behind `upstream` frames of latency of the nodes before it.
    fn build_numbered(
        specs: &[NodeSpec],
        first: usize,
        upstream: usize,
        ctx: &ChainContext,
        field: &str,
        linked: bool,
    ) -> Result<Chain, GraphError> {
        let mut slots = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let i = first + i;
            // A limiter's band limit is a node of its own: linear, so linked
            // stems run it too and still sum to the mix.
            if let NodeKind::Limiter {
                band_limit: true, ..
            } = spec.kind
            {
                let mut b = BandLimit::new();
                b.prepare(ctx.sample_rate, ctx.channels, ctx.max_block);
                slots.push(Slot::Node(Box::new(b)));
            }
            let mut node = match &spec.kind {
                // A duck's times are on the chain input's timeline: it is
                // told the latency of the nodes before it.
                NodeKind::Duck {
                    ranges,
                    depth_db,
                    fade_ms,
                } => Box::new(
                    Duck::new(ranges, *depth_db, *fade_ms)
                        .delayed(upstream + slots.iter().map(Slot::latency).sum::<usize>()),
                ),
                _ => build_node(spec, ctx).map_err(|reason| GraphError {
                    field: format!("{field}[{i}] ({})", spec.kind.name()),
                    reason,
                })?,
            };
            node.prepare(ctx.sample_rate, ctx.channels, ctx.max_block);
            slots.push(if linked && spec.kind.is_dynamics() {
                let mut r = EnvelopeReplay::new(node.name(), node.latency());
                r.prepare(ctx.sample_rate, ctx.channels, ctx.max_block);
                Slot::Replay(r)
            } else {
                Slot::Node(node)
            });
        }
        Ok(Chain { slots })
    }

    /// Total delay of the chain, in frames.
    pub fn latency(&self) -> usize {
        self.slots.iter().map(Slot::latency).sum()
    }

    pub fn reset(&mut self) {
        for s in &mut self.slots {
            match s {
                Slot::Node(n) => n.reset(),
                Slot::Replay(r) => r.reset(),
            }
        }
    }

    pub fn process(&mut self, block: &mut Block) {
        for s in &mut self.slots {
            match s {
                Slot::Node(n) => n.process(block),
                Slot::Replay(r) => r.process(block),
            }
        }
    }

    /// Processes with dynamics replayed from `reference` (built from the same
    /// node list, already run on this block).
    pub fn process_linked(&mut self, block: &mut Block, reference: &Chain) {
        for (i, s) in self.slots.iter_mut().enumerate() {
            match s {
                Slot::Node(n) => n.process(block),
                Slot::Replay(r) => match reference.slots.get(i) {
                    Some(Slot::Node(src)) => match src.gain_envelope() {
                        Some(env) => r.apply(block, env),
                        None => r.process(block),
                    },
                    _ => r.process(block),
                },
            }
        }
    }
}
