//! Streams a title's stems through a set of graphs, block by block.
//!
//! Handles latency: after the stems end, silence is fed until every graph has
//! flushed, and each graph's first `latency()` output frames are dropped, so
//! every output starts at the timeline's zero and has exactly the stems'
//! length. Linked graphs run after their reference on the same block.
//!
//! Every graph of a pass reads its stems from one [`StemBank`]: each
//! distinct stem chain runs once per block, whatever number of outputs and
//! variants the pass writes.

use deliverables_spec::variant::TitleGraph;

use super::{TaskContext, TaskError};
use crate::dsp::chain::{ChainContext, GraphError};
use crate::dsp::{Block, MixHead, StemBank};
use crate::source::{BLOCK_FRAMES, TitleSource};

/// One graph to run, and (for linked stems) the stage whose envelopes it replays.
pub struct Stage {
    pub graph: MixHead,
    /// Index of an earlier, unlinked stage (in [`Stages::heads`]).
    pub reference: Option<usize>,
}

/// The graphs of one pass over a title: one bank of stem chains, and one
/// head per distinct graph. Callers add graphs by what they need (a stage
/// per probe or output); a graph equal to one already added (same title
/// graph, context, stems and reference) is an alias of it and costs
/// nothing more: the sink receives the same block under both stages.
#[derive(Default)]
pub struct Stages {
    pub bank: StemBank,
    heads: Vec<Stage>,
    keys: Vec<String>,
    /// Stage (as the caller numbers them) → its head.
    alias: Vec<usize>,
}

impl Stages {
    /// Adds a graph; returns its stage index. `reference`: the earlier
    /// stage whose envelopes a linked graph replays (`None`: its own
    /// detectors).
    pub fn add(
        &mut self,
        tg: &TitleGraph,
        cc: &ChainContext,
        keep: impl Fn(usize) -> bool,
        reference: Option<usize>,
    ) -> Result<usize, GraphError> {
        let head_ref = reference.map(|r| self.alias[r]);
        let kept: Vec<usize> = (0..tg.stems.len()).filter(|&i| keep(i)).collect();
        let key = format!("{tg:?}|{cc:?}|{kept:?}|{head_ref:?}");
        let head = match self.keys.iter().position(|k| *k == key) {
            Some(h) => h,
            None => {
                let graph = MixHead::new(
                    tg,
                    cc,
                    |i| kept.contains(&i),
                    head_ref.is_some(),
                    &mut self.bank,
                )?;
                self.heads.push(Stage {
                    graph,
                    reference: head_ref,
                });
                self.keys.push(key);
                self.heads.len() - 1
            }
        };
        self.alias.push(head);
        Ok(self.alias.len() - 1)
    }

    /// Stages added.
    pub fn len(&self) -> usize {
        self.alias.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alias.is_empty()
    }

    /// Distinct graphs run per block.
    pub fn heads(&self) -> usize {
        self.heads.len()
    }

    /// Channels of stage `i`'s output.
    pub fn out_channels(&self, i: usize) -> usize {
        self.heads[self.alias[i]].graph.out_channels()
    }

    /// The head stage `i` runs on (stages equal to an earlier one share it).
    pub fn head_of(&self, i: usize) -> usize {
        self.alias[i]
    }

    /// Latency of stage `i`'s graph, in frames.
    pub fn latency(&self, i: usize) -> usize {
        self.heads[self.alias[i]].graph.latency()
    }
}

/// Where a block sits on the title's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockAt {
    /// Input frames fed before this block.
    pub start: u64,
    /// Frames in the block.
    pub frames: usize,
    /// The stems' length, once they have ended (the block is flush silence).
    pub input_frames: Option<u64>,
}

impl BlockAt {
    /// The frames of this block a graph of latency `latency` outputs: its
    /// first `latency` output frames precede the timeline's zero and frames
    /// past the stems' end plus `latency` follow the title's end (the same
    /// rule as [`run_stages`]).
    pub fn kept(&self, latency: u64) -> std::ops::Range<usize> {
        let n = self.frames as u64;
        let first = latency.saturating_sub(self.start).min(n) as usize;
        let limit = self.input_frames.unwrap_or(u64::MAX);
        let last = (limit.saturating_add(latency))
            .saturating_sub(self.start)
            .min(n) as usize;
        first..last.max(first)
    }
}

/// A pass's input, block by block: the stems as the source reads them,
/// then silence until `flush` frames more have run (so every graph's
/// latency is flushed). The one rule of where a pass's input ends.
pub struct Feed {
    fed: u64,
    input_frames: Option<u64>,
    flush: u64,
}

impl Feed {
    pub fn new(flush: u64) -> Feed {
        Feed {
            fed: 0,
            input_frames: None,
            flush,
        }
    }

    /// Reads the next block into `inputs`; `None` once the flush is done.
    pub fn next(
        &mut self,
        source: &mut TitleSource,
        inputs: &mut [Block],
    ) -> Result<Option<BlockAt>, TaskError> {
        let n = loop {
            match self.input_frames {
                None => {
                    let n = source.read(inputs)?;
                    if n == 0 {
                        self.input_frames = Some(self.fed);
                        continue;
                    }
                    break n;
                }
                Some(total) => {
                    let left = (total + self.flush).saturating_sub(self.fed);
                    if left == 0 {
                        return Ok(None);
                    }
                    let n = left.min(BLOCK_FRAMES as u64) as usize;
                    for b in inputs.iter_mut() {
                        b.silence(n);
                    }
                    break n;
                }
            }
        };
        let at = BlockAt {
            start: self.fed,
            frames: n,
            input_frames: self.input_frames,
        };
        self.fed += n as u64;
        Ok(Some(at))
    }

    /// Frames fed so far.
    pub fn fed(&self) -> u64 {
        self.fed
    }

    /// The stems' length: what they gave before the flush.
    pub fn input_frames(&self) -> u64 {
        self.input_frames.unwrap_or(self.fed)
    }
}

/// Runs every head over the whole title, as [`run_stages`] does, but hands
/// `sink` every head's output untrimmed: `sink(at, outs)` with `outs[h]`
/// head `h`'s whole block. After the stems end, silence is fed until `flush`
/// frames more have run (the caller's graphs may continue past these
/// heads). Returns the title's length in frames.
pub fn run_heads_untrimmed(
    ctx: &TaskContext<'_>,
    source: &mut TitleSource,
    stages: &mut Stages,
    expected_frames: u64,
    flush: u64,
    progress: impl Fn(f64),
    mut sink: impl FnMut(BlockAt, &[Block]) -> Result<(), TaskError>,
) -> Result<u64, TaskError> {
    let Stages {
        bank,
        heads: stages,
        ..
    } = stages;
    let mut inputs = source.make_blocks();
    let mut outs: Vec<Block> = stages
        .iter()
        .map(|s| Block::new(s.graph.out_channels(), BLOCK_FRAMES))
        .collect();
    let mut feed = Feed::new(flush);
    let mut step = 0u64;
    while let Some(at) = feed.next(source, &mut inputs)? {
        let fed = feed.fed();
        bank.process(&inputs);
        for (i, out) in outs.iter_mut().enumerate() {
            let (done, rest) = stages.split_at_mut(i);
            let stage = &mut rest[0];
            match stage.reference {
                Some(r) if r < i => stage.graph.process_linked(bank, &done[r].graph, out),
                _ => stage.graph.process(bank, out),
            }
        }
        sink(at, &outs)?;
        step += 1;
        if step.is_multiple_of(16) {
            ctx.check_cancel()?;
            progress((fed as f64 / expected_frames.max(1) as f64).min(1.0));
        }
    }
    Ok(feed.input_frames())
}

/// Runs every stage over the whole title. `sink(stage, block)` receives each
/// stage's trimmed output in order. Returns the title's length in frames.
pub fn run_stages(
    ctx: &TaskContext<'_>,
    source: &mut TitleSource,
    stages: &mut Stages,
    expected_frames: u64,
    progress: impl Fn(f64),
    mut sink: impl FnMut(usize, &Block) -> Result<(), TaskError>,
) -> Result<u64, TaskError> {
    let Stages {
        bank,
        heads: stages,
        alias,
        ..
    } = stages;
    let mut inputs = source.make_blocks();
    let mut outs: Vec<Block> = stages
        .iter()
        .map(|s| Block::new(s.graph.out_channels(), BLOCK_FRAMES))
        .collect();
    // One trimmed buffer per head: a fold-down's is stereo in a 5.1 title.
    let mut trimmed = outs.clone();
    let mut has_output = vec![false; stages.len()];
    let lat: Vec<u64> = stages.iter().map(|s| s.graph.latency() as u64).collect();
    let flush = lat.iter().copied().max().unwrap_or(0);
    let mut feed = Feed::new(flush);
    let mut step = 0u64;
    while let Some(at) = feed.next(source, &mut inputs)? {
        let fed = feed.fed();
        bank.process(&inputs);
        for i in 0..stages.len() {
            let (done, rest) = stages.split_at_mut(i);
            let stage = &mut rest[0];
            match stage.reference {
                Some(r) if r < i => stage
                    .graph
                    .process_linked(bank, &done[r].graph, &mut outs[i]),
                _ => stage.graph.process(bank, &mut outs[i]),
            }
            // Output frame k of this block sits at timeline position
            // at.start + k - latency.
            let range = at.kept(lat[i]);
            has_output[i] = !range.is_empty();
            if !range.is_empty() {
                trimmed[i].copy_range_from(&outs[i], range.start, range.len());
            }
        }
        // Every stage in the caller's order, after every head has run.
        for (j, &h) in alias.iter().enumerate() {
            if has_output[h] {
                sink(j, &trimmed[h])?;
            }
        }
        step += 1;
        if step.is_multiple_of(16) {
            ctx.check_cancel()?;
            progress((fed as f64 / expected_frames.max(1) as f64).min(1.0));
        }
    }
    Ok(feed.input_frames())
}
