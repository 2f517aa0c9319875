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

/// One stem's processing: (5.1: LFE low-pass) → its chain → its alignment
/// delay. The same for every graph of a title that builds it from the same
/// nodes, so a [`StemBank`] runs it once per block for all of them.
struct StemProc {
    /// Index into the title's stems (and the decoded input blocks).
    input: usize,
    /// 5.1: the LFE channel's low-pass, before the chain.
    lfe: Option<ChannelNode>,
    chain: Chain,
    align: Delay,
}

/// The per-stem processing shared by every graph of a pass: each distinct
/// stem processor (stem, LFE filter, chain, alignment, and the context its
/// nodes read) is built once and run once per block, whatever number of
/// mixes, linked stems and variants read its output. A variant that changes
/// a stem's own chain (an insert on a role) gets a processor of its own.
///
/// Bit-identity: a graph reading a shared processor sums exactly the samples
/// it would have computed with a processor of its own (same nodes, same
/// input, same block sequence), in the same order.
#[derive(Default)]
pub struct StemBank {
    procs: Vec<StemProc>,
    keys: Vec<String>,
    outs: Vec<Block>,
    /// Frames of the block last processed.
    frames: usize,
}

impl StemBank {
    pub fn new() -> StemBank {
        StemBank::default()
    }

    /// Distinct stem processors (what one block costs in stem chains).
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// The processor with this key, or `make()`'s, added.
    fn register(
        &mut self,
        key: String,
        channels: usize,
        max_block: usize,
        make: impl FnOnce() -> Result<StemProc, GraphError>,
    ) -> Result<usize, GraphError> {
        if let Some(i) = self.keys.iter().position(|k| *k == key) {
            return Ok(i);
        }
        self.procs.push(make()?);
        self.keys.push(key);
        self.outs.push(Block::new(channels, max_block));
        Ok(self.procs.len() - 1)
    }

    /// Runs every stem processor on this block. `inputs[i]` is the decoded
    /// block of the title's stem `i`; all have the same frame count.
    pub fn process(&mut self, inputs: &[Block]) {
        self.frames = inputs.first().map_or(0, Block::frames);
        for (s, out) in self.procs.iter_mut().zip(&mut self.outs) {
            out.copy_from(&inputs[s.input]);
            if let Some(l) = &mut s.lfe {
                l.process(out);
            }
            s.chain.process(out);
            s.align.process(out);
        }
    }
}

/// A stem as a graph reads it: a bank processor, its variant gain, its bus.
struct StemTap {
    proc: usize,
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

/// What one output of a title hears after the stem chains: its stems'
/// gains, the buses, the master chain (and fold-down). Reads its stems'
/// processed blocks from a [`StemBank`] it registered them in.
pub struct MixHead {
    stems: Vec<StemTap>,
    buses: Vec<BusProc>,
    master: Chain,
    fold: Option<FoldStage>,
    channels: usize,
    latency: usize,
    linked: bool,
}

/// A whole graph with a bank of its own: for callers that run one graph.
pub struct MixGraph {
    bank: StemBank,
    head: MixHead,
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
        let mut bank = StemBank::new();
        let head = MixHead::new(tg, ctx, keep, linked, &mut bank)?;
        Ok(MixGraph { bank, head })
    }

    /// True when no stem feeds this graph (its output is silence).
    pub fn is_silent(&self) -> bool {
        self.head.is_silent()
    }

    /// Delay from input to output, in frames: trim this many leading frames.
    pub fn latency(&self) -> usize {
        self.head.latency()
    }

    /// Channels of the output: the title's layout, or 2 for a fold-down.
    pub fn out_channels(&self) -> usize {
        self.head.out_channels()
    }

    /// Mixes one block with the graph's own detectors. `inputs[i]` is the
    /// decoded block of the title's stem `i`; all have the same frame count;
    /// `out` has [`MixGraph::out_channels`].
    pub fn process(&mut self, inputs: &[Block], out: &mut Block) {
        self.bank.process(inputs);
        self.head.process(&self.bank, out);
    }

    /// Mixes one block of a linked graph: stem chains run as usual; bus and
    /// master (and fold-down) dynamics apply the envelopes `reference` (the
    /// full graph, built from the same title graph, not linked) computed on
    /// this same block.
    pub fn process_linked(&mut self, inputs: &[Block], reference: &MixGraph, out: &mut Block) {
        self.bank.process(inputs);
        self.head.process_linked(&self.bank, &reference.head, out);
    }
}

/// The key of a stem processor: everything its output depends on.
fn stem_key(
    s: &deliverables_spec::variant::StemPath,
    lfe: Option<&deliverables_spec::model::NodeSpec>,
    align: usize,
    ctx: &ChainContext,
) -> String {
    // The loudness gain only reaches a chain that holds a `loudness` node.
    let loudness = s
        .chain
        .iter()
        .any(|n| matches!(n.kind, deliverables_spec::model::NodeKind::Loudness {}))
        .then_some(ctx.loudness_db.to_bits());
    format!(
        "{}|{:?}|{:?}|{align}|{}|{}|{}|{:?}|{}",
        s.index,
        s.chain,
        lfe,
        ctx.sample_rate,
        ctx.channels,
        ctx.max_block,
        loudness,
        ctx.default_ceiling_db.to_bits(),
    )
}

impl MixHead {
    /// Builds the head of one graph and registers its stems' processors in
    /// `bank` (sharing those already there). `keep` selects which stems
    /// feed it; muted stems are left out. `linked`: bus and master dynamics
    /// replay a reference head's envelopes.
    pub fn new(
        tg: &TitleGraph,
        ctx: &ChainContext,
        keep: impl Fn(usize) -> bool,
        linked: bool,
        bank: &mut StemBank,
    ) -> Result<MixHead, GraphError> {
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
        let fold = FoldStage::build(tg, ctx, linked)?;
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
            let align = target - stem_lat[s.index];
            let key = stem_key(s, tg.lfe_low_pass.as_ref(), align, ctx);
            let proc = bank.register(key, ctx.channels, ctx.max_block, || {
                Ok(StemProc {
                    input: s.index,
                    lfe: lfe_filter()?,
                    chain,
                    align: prep(align),
                })
            })?;
            stems.push(StemTap {
                proc,
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
        Ok(MixHead {
            stems,
            buses,
            master,
            fold,
            channels: ctx.channels,
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
            self.channels
        }
    }

    /// Mixes one block with the head's own detectors, from the stems `bank`
    /// processed for this block (the bank it was built with).
    pub fn process(&mut self, bank: &StemBank, out: &mut Block) {
        debug_assert!(!self.linked, "a linked graph needs its reference");
        self.run(bank, None, out);
    }

    /// Mixes one block of a linked head: bus and master (and fold-down)
    /// dynamics apply the envelopes `reference` (the full mix's head, built
    /// from the same title graph, not linked) computed on this same block.
    pub fn process_linked(&mut self, bank: &StemBank, reference: &MixHead, out: &mut Block) {
        self.run(bank, Some(reference), out);
    }

    fn run(&mut self, bank: &StemBank, reference: Option<&MixHead>, out: &mut Block) {
        let MixHead {
            stems,
            buses,
            master,
            fold,
            ..
        } = self;
        let frames = bank.frames;
        let sum: &mut Block = match fold {
            Some(f) => &mut f.master_out,
            None => &mut *out,
        };
        sum.silence(frames);
        for b in buses.iter_mut() {
            b.sum.silence(frames);
        }
        for s in stems.iter() {
            let processed = &bank.outs[s.proc];
            match s.bus {
                Some(b) => buses[b].sum.add_scaled(processed, s.gain),
                None => sum.add_scaled(processed, s.gain),
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
            f.apply(out, reference.and_then(|r| r.fold.as_ref()));
        }
    }
}

impl FoldStage {
    /// The fold-down stage of `tg`, if it has one.
    fn build(
        tg: &TitleGraph,
        ctx: &ChainContext,
        linked: bool,
    ) -> Result<Option<FoldStage>, GraphError> {
        let Some(f) = &tg.fold_down else {
            return Ok(None);
        };
        let stereo = ChainContext {
            channels: 2,
            ..*ctx
        };
        Ok(Some(FoldStage {
            matrix: FoldMatrix::from_db(
                f.coefficients.center_db,
                f.coefficients.surround_db,
                f.coefficients.lfe_db,
            ),
            gain: db_to_gain(ctx.fold_gain_db),
            chain: Chain::build(&f.chain, &stereo, "fold_down", linked)?,
            master_out: Block::new(ctx.channels, ctx.max_block),
        }))
    }

    /// Folds `master_out` (the master's output of this block) into `out`,
    /// scales it by the fold gain and runs the fold-down chain (replaying
    /// `reference`'s envelopes when given).
    fn apply(&mut self, out: &mut Block, reference: Option<&FoldStage>) {
        self.matrix.fold(&self.master_out, out);
        if self.gain != 1.0 {
            for c in out.channels_mut() {
                for x in c {
                    *x *= self.gain;
                }
            }
        }
        match reference {
            Some(rf) => self.chain.process_linked(out, &rf.chain),
            None => self.chain.process(out),
        }
    }
}

/// A graph cut at its master chain's `loudness` node: what comes before the
/// node (stems, buses, the master's first nodes) does not depend on the
/// master gain nor the fold-down gain; the tail (the `loudness` node, the
/// rest of the master chain, the fold-down) holds every use of both.
///
/// Bit-identity: running the upstream graph's [`MixHead`] and feeding each
/// of its blocks (untrimmed, in order) to the tail gives exactly the blocks
/// the whole graph's head gives: the same nodes, built from the same specs
/// and context, run in the same order on the same samples. The whole
/// graph's latency is the upstream head's plus the tail's.
pub struct MasterTail {
    master: Chain,
    fold: Option<FoldStage>,
    channels: usize,
}

/// Where `tg` can be cut: the index of its master chain's first `loudness`
/// node, when no chain upstream of it (stems, buses) and no fold-down chain
/// holds one. `None`: the gain reaches more than the tail.
pub fn loudness_cut(tg: &TitleGraph) -> Option<usize> {
    let is_loudness = |n: &deliverables_spec::model::NodeSpec| {
        matches!(n.kind, deliverables_spec::model::NodeKind::Loudness {})
    };
    let elsewhere = tg.stems.iter().any(|s| s.chain.iter().any(is_loudness))
        || tg.buses.iter().any(|b| b.chain.iter().any(is_loudness))
        || tg.lfe_low_pass.as_ref().is_some_and(is_loudness)
        || tg
            .fold_down
            .as_ref()
            .is_some_and(|f| f.chain.iter().any(is_loudness));
    if elsewhere {
        return None;
    }
    tg.master.iter().position(is_loudness)
}

/// The graph upstream of the cut at `cut` ([`loudness_cut`]): the master
/// chain's nodes before it, no fold-down. Its head outputs the signal that
/// enters the `loudness` node, in the title's layout.
pub fn upstream_of(tg: &TitleGraph, cut: usize) -> TitleGraph {
    TitleGraph {
        master: tg.master.get(..cut).unwrap_or(&tg.master).to_vec(),
        fold_down: None,
        ..tg.clone()
    }
}

impl MasterTail {
    /// The tail of `tg` from the cut at `cut` ([`loudness_cut`]) on, with
    /// the gains of `ctx`.
    pub fn new(tg: &TitleGraph, cut: usize, ctx: &ChainContext) -> Result<MasterTail, GraphError> {
        Ok(MasterTail {
            master: Chain::build_from(&tg.master, cut, ctx, "graph.master.chain", false)?,
            fold: FoldStage::build(tg, ctx, false)?,
            channels: ctx.channels,
        })
    }

    /// Delay from the tail's input to its output, in frames.
    pub fn latency(&self) -> usize {
        self.master.latency() + self.fold.as_ref().map_or(0, |f| f.chain.latency())
    }

    /// Channels of the output: the title's layout, or 2 for a fold-down.
    pub fn out_channels(&self) -> usize {
        if self.fold.is_some() {
            2
        } else {
            self.channels
        }
    }

    /// Runs one block: `input` is the upstream head's output for this block
    /// (the title's channels); `out` has [`MasterTail::out_channels`].
    pub fn process(&mut self, input: &Block, out: &mut Block) {
        let MasterTail { master, fold, .. } = self;
        let sum: &mut Block = match fold {
            Some(f) => &mut f.master_out,
            None => &mut *out,
        };
        sum.copy_from(input);
        master.process(sum);
        if let Some(f) = fold {
            f.apply(out, None);
        }
    }
}
