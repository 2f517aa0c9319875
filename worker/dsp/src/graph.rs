//! The mix graph for one title under one variant: (5.1: the LFE low-pass) →
//! stem chains → buses → master chain (→ for a fold-down: the fold to
//! stereo, its gain and its chain). Sums in f64 in a fixed order, so the
//! output is the same bits on every run and every worker.
//!
//! Latency compensation: each path is delayed so that every signal reaches
//! each summing point aligned. The delays are computed over *all* the
//! title's stems, whatever the variant mutes or the output keeps, so every
//! graph of a title (mixes, linked stems) has the same internal alignment
//! and the same total latency, which the caller trims from the output.

use deliverables_spec::variant::TitleGraph;

use super::block::Block;
use super::chain::{Chain, ChainContext, GraphError, build_node};
use super::node::{Node, db_to_gain};
use super::nodes::Delay;
use super::surround::{ChannelNode, FoldMatrix, LFE};

struct StemProc {
    /// Index into the title's stems (and the decoded input blocks).
    input: usize,
    /// 5.1: the LFE channel's low-pass, before the chain.
    lfe: Option<ChannelNode>,
    chain: Chain,
    align: Delay,
    gain: f64,
    bus: Option<usize>,
}

struct BusProc {
    chain: Chain,
    align: Delay,
    gain: f64,
    sum: Block,
    active: bool,
}

/// A fold-down after the master: the 5.1 master is mixed into `master_out`,
/// folded to stereo into the graph's output, scaled by `gain`, then `chain`.
struct FoldStage {
    matrix: FoldMatrix,
    gain: f64,
    chain: Chain,
    master_out: Block,
}

pub struct MixGraph {
    stems: Vec<StemProc>,
    buses: Vec<BusProc>,
    master: Chain,
    fold: Option<FoldStage>,
    scratch: Block,
    latency: usize,
    linked: bool,
}

impl MixGraph {
    /// Builds the graph. `keep` selects which stems feed it (all of them for a
    /// mix, one role's for a stem output); muted stems are left out.
    /// `linked`: bus and master dynamics replay a reference graph's envelopes
    /// (see [`MixGraph::process_linked`]).
    pub fn new(
        tg: &TitleGraph,
        ctx: &ChainContext,
        keep: impl Fn(usize) -> bool,
        linked: bool,
    ) -> Result<MixGraph, GraphError> {
        let bus_live = |b: Option<usize>| b.is_none_or(|b| !tg.buses[b].muted);
        // Every stem's chain, to learn the latencies of the whole structure.
        let mut chains = Vec::with_capacity(tg.stems.len());
        for s in &tg.stems {
            chains.push(Chain::build(
                &s.chain,
                ctx,
                &format!("chain of stem {} (role {})", s.index + 1, s.role),
                false,
            )?);
        }
        let stem_lat: Vec<usize> = chains.iter().map(Chain::latency).collect();
        let mut bus_chains = Vec::with_capacity(tg.buses.len());
        for bp in &tg.buses {
            bus_chains.push(Chain::build(
                &bp.chain,
                ctx,
                &format!("graph.buses.{}.chain", bp.name),
                linked,
            )?);
        }
        let bus_in_lat: Vec<usize> = (0..tg.buses.len())
            .map(|b| {
                tg.stems
                    .iter()
                    .filter(|s| s.bus == Some(b))
                    .map(|s| stem_lat[s.index])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let bus_out_lat: Vec<usize> = bus_chains
            .iter()
            .zip(&bus_in_lat)
            .map(|(c, l)| l + c.latency())
            .collect();
        let bus_used = |b: usize| tg.stems.iter().any(|s| s.bus == Some(b));
        let master_in = tg
            .stems
            .iter()
            .filter(|s| s.bus.is_none())
            .map(|s| stem_lat[s.index])
            .chain(
                (0..tg.buses.len())
                    .filter(|&b| bus_used(b))
                    .map(|b| bus_out_lat[b]),
            )
            .max()
            .unwrap_or(0);
        let master = Chain::build(&tg.master, ctx, "graph.master.chain", linked)?;
        let fold = match &tg.fold_down {
            Some(f) => {
                let stereo = ChainContext {
                    channels: 2,
                    ..*ctx
                };
                Some(FoldStage {
                    matrix: FoldMatrix::from_db(
                        f.coefficients.center_db,
                        f.coefficients.surround_db,
                        f.coefficients.lfe_db,
                    ),
                    gain: db_to_gain(ctx.fold_gain_db),
                    chain: Chain::build(&f.chain, &stereo, "fold_down", linked)?,
                    master_out: Block::new(ctx.channels, ctx.max_block),
                })
            }
            None => None,
        };
        let latency = master_in + master.latency() + fold.as_ref().map_or(0, |f| f.chain.latency());
        let lfe_filter = || -> Result<Option<ChannelNode>, GraphError> {
            let Some(spec) = tg.lfe_low_pass.as_ref().filter(|_| ctx.channels > LFE) else {
                return Ok(None);
            };
            let node = build_node(spec, ctx).map_err(|reason| GraphError {
                field: "graph.lfe".into(),
                reason,
            })?;
            Ok(Some(ChannelNode::new(
                node,
                LFE,
                ctx.sample_rate,
                ctx.max_block,
            )))
        };

        let prep = |frames: usize| {
            let mut d = Delay::new(frames);
            d.prepare(ctx.sample_rate, ctx.channels, ctx.max_block);
            d
        };
        let mut stems = Vec::new();
        for (s, chain) in tg.stems.iter().zip(chains) {
            if s.muted || !bus_live(s.bus) || !keep(s.index) {
                continue;
            }
            let target = match s.bus {
                Some(b) => bus_in_lat[b],
                None => master_in,
            };
            stems.push(StemProc {
                input: s.index,
                lfe: lfe_filter()?,
                chain,
                align: prep(target - stem_lat[s.index]),
                gain: db_to_gain(s.gain_db),
                bus: s.bus,
            });
        }
        let buses = tg
            .buses
            .iter()
            .zip(bus_chains)
            .enumerate()
            .map(|(i, (b, chain))| BusProc {
                chain,
                align: prep(master_in - bus_out_lat[i].min(master_in)),
                gain: db_to_gain(b.gain_db),
                sum: Block::new(ctx.channels, ctx.max_block),
                active: stems.iter().any(|s| s.bus == Some(i)),
            })
            .collect();
        Ok(MixGraph {
            stems,
            buses,
            master,
            fold,
            scratch: Block::new(ctx.channels, ctx.max_block),
            latency,
            linked,
        })
    }

    /// True when no stem feeds this graph (its output is silence).
    pub fn is_silent(&self) -> bool {
        self.stems.is_empty()
    }

    /// Delay from input to output, in frames: trim this many leading frames.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Channels of the output: the title's layout, or 2 for a fold-down.
    pub fn out_channels(&self) -> usize {
        if self.fold.is_some() {
            2
        } else {
            self.scratch.channels()
        }
    }

    /// Mixes one block with the graph's own detectors. `inputs[i]` is the
    /// decoded block of the title's stem `i`; all have the same frame count;
    /// `out` has [`MixGraph::out_channels`].
    pub fn process(&mut self, inputs: &[Block], out: &mut Block) {
        debug_assert!(!self.linked, "a linked graph needs its reference");
        self.run(inputs, None, out);
    }

    /// Mixes one block of a linked graph: stem chains run as usual; bus and
    /// master (and fold-down) dynamics apply the envelopes `reference` (the
    /// full graph, built from the same title graph, not linked) computed on
    /// this same block.
    pub fn process_linked(&mut self, inputs: &[Block], reference: &MixGraph, out: &mut Block) {
        self.run(inputs, Some(reference), out);
    }

    fn run(&mut self, inputs: &[Block], reference: Option<&MixGraph>, out: &mut Block) {
        let MixGraph {
            stems,
            buses,
            master,
            fold,
            scratch,
            ..
        } = self;
        let frames = inputs.first().map_or(0, Block::frames);
        let sum: &mut Block = match fold {
            Some(f) => &mut f.master_out,
            None => &mut *out,
        };
        sum.silence(frames);
        for b in buses.iter_mut() {
            b.sum.silence(frames);
        }
        for s in stems.iter_mut() {
            scratch.copy_from(&inputs[s.input]);
            if let Some(l) = &mut s.lfe {
                l.process(scratch);
            }
            s.chain.process(scratch);
            s.align.process(scratch);
            match s.bus {
                Some(b) => buses[b].sum.add_scaled(scratch, s.gain),
                None => sum.add_scaled(scratch, s.gain),
            }
        }
        for (i, b) in buses.iter_mut().enumerate() {
            if !b.active {
                continue;
            }
            match reference {
                Some(r) => b.chain.process_linked(&mut b.sum, &r.buses[i].chain),
                None => b.chain.process(&mut b.sum),
            }
            b.align.process(&mut b.sum);
            sum.add_scaled(&b.sum, b.gain);
        }
        match reference {
            Some(r) => master.process_linked(sum, &r.master),
            None => master.process(sum),
        }
        if let Some(f) = fold {
            f.matrix.fold(&f.master_out, out);
            if f.gain != 1.0 {
                for c in out.channels_mut() {
                    for x in c {
                        *x *= f.gain;
                    }
                }
            }
            match reference.and_then(|r| r.fold.as_ref()) {
                Some(rf) => f.chain.process_linked(out, &rf.chain),
                None => f.chain.process(out),
            }
        }
    }
}
