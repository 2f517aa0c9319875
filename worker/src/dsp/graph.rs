//! The mix graph for one title under one variant: stem chains → buses →
//! master chain. Sums in f64 in a fixed order, so the output is the same bits
//! on every run and every worker.

use deliverables_spec::variant::TitleGraph;

use super::block::Block;
use super::chain::Chain;
use super::node::db_to_gain;

struct StemProc {
    /// Index into the title's stems (and the decoded input blocks).
    input: usize,
    chain: Chain,
    gain: f64,
    bus: Option<usize>,
}

struct BusProc {
    chain: Chain,
    gain: f64,
    sum: Block,
    active: bool,
}

pub struct MixGraph {
    stems: Vec<StemProc>,
    buses: Vec<BusProc>,
    master: Chain,
    scratch: Block,
}

impl MixGraph {
    /// Builds the graph; `keep` selects which stems feed it (all of them for a
    /// mix, one role's for a stem output). Muted stems are left out.
    pub fn new(
        tg: &TitleGraph,
        master_gain_db: f64,
        sample_rate: u32,
        channels: usize,
        max_block: usize,
        keep: impl Fn(usize) -> bool,
    ) -> MixGraph {
        let bus_live = |b: Option<usize>| b.is_none_or(|b| !tg.buses[b].muted);
        let stems: Vec<StemProc> = tg
            .stems
            .iter()
            .filter(|s| !s.muted && bus_live(s.bus) && keep(s.index))
            .map(|s| StemProc {
                input: s.index,
                chain: Chain::build(&s.chain, 0.0, sample_rate, channels, max_block),
                gain: db_to_gain(s.gain_db),
                bus: s.bus,
            })
            .collect();
        let buses = tg
            .buses
            .iter()
            .enumerate()
            .map(|(i, b)| BusProc {
                chain: Chain::build(&b.chain, 0.0, sample_rate, channels, max_block),
                gain: db_to_gain(b.gain_db),
                sum: Block::new(channels, max_block),
                active: stems.iter().any(|s| s.bus == Some(i)),
            })
            .collect();
        MixGraph {
            stems,
            buses,
            master: Chain::build(&tg.master, master_gain_db, sample_rate, channels, max_block),
            scratch: Block::new(channels, max_block),
        }
    }

    /// True when no stem feeds this graph (its output is silence).
    pub fn is_silent(&self) -> bool {
        self.stems.is_empty()
    }

    /// Delay from input to output, in frames (the longest path).
    pub fn latency(&self) -> usize {
        let bus_lat = |b: Option<usize>| b.map_or(0, |b| self.buses[b].chain.latency());
        self.stems
            .iter()
            .map(|s| s.chain.latency() + bus_lat(s.bus))
            .max()
            .unwrap_or(0)
            + self.master.latency()
    }

    /// Mixes one block. `inputs[i]` is the decoded block of the title's stem `i`;
    /// all have the same frame count. Writes the master output to `out`.
    pub fn process(&mut self, inputs: &[Block], out: &mut Block) {
        let frames = inputs.first().map_or(0, Block::frames);
        out.silence(frames);
        for b in &mut self.buses {
            b.sum.silence(frames);
        }
        for s in &mut self.stems {
            self.scratch.copy_from(&inputs[s.input]);
            s.chain.process(&mut self.scratch);
            match s.bus {
                Some(b) => self.buses[b].sum.add_scaled(&self.scratch, s.gain),
                None => out.add_scaled(&self.scratch, s.gain),
            }
        }
        for b in self.buses.iter_mut().filter(|b| b.active) {
            b.chain.process(&mut b.sum);
            out.add_scaled(&b.sum, b.gain);
        }
        self.master.process(out);
    }
}
