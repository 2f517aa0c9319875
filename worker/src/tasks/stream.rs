//! Streams a title's stems through a set of graphs, block by block.
//!
//! Handles latency: after the stems end, silence is fed until every graph has
//! flushed, and each graph's first `latency()` output frames are dropped, so
//! every output starts at the timeline's zero and has exactly the stems'
//! length. Linked graphs run after their reference on the same block.

use super::{TaskContext, TaskError};
use crate::dsp::{Block, MixGraph};
use crate::source::{BLOCK_FRAMES, TitleSource};

/// One graph to run, and (for linked stems) the stage whose envelopes it replays.
pub struct Stage {
    pub graph: MixGraph,
    /// Index of an earlier, unlinked stage.
    pub reference: Option<usize>,
}

impl Stage {
    pub fn own(graph: MixGraph) -> Stage {
        Stage {
            graph,
            reference: None,
        }
    }
}

/// Runs every stage over the whole title. `sink(stage, block)` receives each
/// stage's trimmed output in order. Returns the title's length in frames.
pub fn run_stages(
    ctx: &TaskContext<'_>,
    source: &mut TitleSource,
    stages: &mut [Stage],
    expected_frames: u64,
    progress: impl Fn(f64),
    mut sink: impl FnMut(usize, &Block) -> Result<(), TaskError>,
) -> Result<u64, TaskError> {
    let mut inputs = source.make_blocks();
    let mut outs: Vec<Block> = stages
        .iter()
        .map(|s| Block::new(s.graph.out_channels(), BLOCK_FRAMES))
        .collect();
    // One trimmed buffer per stage: a fold-down's is stereo in a 5.1 title.
    let mut trimmed = outs.clone();
    let lat: Vec<u64> = stages.iter().map(|s| s.graph.latency() as u64).collect();
    let flush = lat.iter().copied().max().unwrap_or(0);
    let mut fed: u64 = 0;
    let mut input_frames: Option<u64> = None;
    let mut step = 0u64;
    loop {
        let n = match input_frames {
            None => {
                let n = source.read(&mut inputs)?;
                if n == 0 {
                    input_frames = Some(fed);
                    continue;
                }
                n
            }
            Some(total) => {
                let left = (total + flush).saturating_sub(fed);
                if left == 0 {
                    break;
                }
                let n = left.min(BLOCK_FRAMES as u64) as usize;
                for b in &mut inputs {
                    b.silence(n);
                }
                n
            }
        };
        let block_start = fed;
        fed += n as u64;
        for i in 0..stages.len() {
            let (done, rest) = stages.split_at_mut(i);
            let stage = &mut rest[0];
            match stage.reference {
                Some(r) if r < i => {
                    stage
                        .graph
                        .process_linked(&inputs, &done[r].graph, &mut outs[i])
                }
                _ => stage.graph.process(&inputs, &mut outs[i]),
            }
            // Output frame k of this block sits at timeline position block_start + k - latency.
            let first = lat[i].saturating_sub(block_start).min(n as u64) as usize;
            let limit = input_frames.unwrap_or(u64::MAX);
            let last = (limit.saturating_add(lat[i]))
                .saturating_sub(block_start)
                .min(n as u64) as usize;
            if first < last {
                trimmed[i].copy_range_from(&outs[i], first, last - first);
                sink(i, &trimmed[i])?;
            }
        }
        step += 1;
        if step.is_multiple_of(16) {
            ctx.check_cancel()?;
            progress((fed as f64 / expected_frames.max(1) as f64).min(1.0));
        }
    }
    Ok(input_frames.unwrap_or(fed))
}
