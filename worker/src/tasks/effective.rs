//! The delivered size of a variant's level change ("vocal +2 dB"): under
//! bus and master dynamics a limiter gives back part of the move, so the
//! change is measured, not assumed.
//!
//! The moved roles' contribution is rendered twice as linked stems — in the
//! full mix (replaying the full mix's bus and master envelopes) and in the
//! variant (replaying the variant's) — and the change is the least-squares
//! gain of the second against the first: `g = <v, f> / <f, f>` over every
//! sample of every channel, in dB. It is the gain that best maps what the
//! listener heard of those roles in the full mix onto what they hear in the
//! variant.

use deliverables_spec::model::{Graph, Title};
use deliverables_spec::variant::{Move, Target};

use crate::dsp::{Block, gain_to_db};

/// Accumulates `<variant, full>` and `<full, full>` block by block.
#[derive(Debug, Clone, Default)]
pub struct ChangeMeter {
    dot: f64,
    energy: f64,
}

impl ChangeMeter {
    /// `full` and `variant` are the same stretch of the timeline.
    pub fn add(&mut self, full: &Block, variant: &Block) {
        let frames = full.frames().min(variant.frames());
        for c in 0..full.channels().min(variant.channels()) {
            for (f, v) in full.channel(c)[..frames]
                .iter()
                .zip(&variant.channel(c)[..frames])
            {
                self.dot += f * v;
                self.energy += f * f;
            }
        }
    }

    /// The change in dB; `None` when the roles are silent in the full mix or
    /// the variant's contribution is not a scaled copy of theirs at all.
    pub fn change_db(&self) -> Option<f64> {
        (self.energy > 0.0 && self.dot > 0.0)
            .then(|| gain_to_db(self.dot / self.energy))
            .filter(|g| g.is_finite())
    }
}

/// The title's stems a move reaches: those of its roles, and those routed
/// to its buses.
pub fn move_stems(graph: &Graph, title: &Title, m: &Move) -> Vec<usize> {
    let bus_of = |role| {
        graph
            .buses
            .iter()
            .find(|(_, b)| b.roles.contains(&role))
            .map(|(n, _)| n.clone())
    };
    title
        .stems
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            m.targets.iter().any(|t| match Target::parse(t, graph) {
                Some(Target::Role(r)) => r == s.role,
                Some(Target::Bus(b)) => bus_of(s.role).as_deref() == Some(b.as_str()),
                _ => false,
            })
        })
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(samples: &[f64]) -> Block {
        let mut b = Block::new(2, samples.len());
        b.set_frames(samples.len());
        for c in 0..2 {
            b.channel_mut(c).copy_from_slice(samples);
        }
        b
    }

    #[test]
    fn a_scaled_copy_reads_its_gain() {
        let f: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.01).sin()).collect();
        let g = 10f64.powf(1.5 / 20.0);
        let v: Vec<f64> = f.iter().map(|x| x * g).collect();
        let mut m = ChangeMeter::default();
        m.add(&block(&f), &block(&v));
        assert!((m.change_db().unwrap_or(0.0) - 1.5).abs() < 1e-9);
        // Silence in the full mix: nothing to compare.
        let mut m = ChangeMeter::default();
        m.add(&block(&[0.0; 8]), &block(&[1.0; 8]));
        assert_eq!(m.change_db(), None);
    }

    #[test]
    fn an_energy_weighted_average_of_a_varying_gain() {
        // Half the time at +2 dB, half at 0 dB, equal energy: in between.
        let f: Vec<f64> = (0..2000).map(|i| (i as f64 * 0.1).sin()).collect();
        let g = 10f64.powf(2.0 / 20.0);
        let v: Vec<f64> = f
            .iter()
            .enumerate()
            .map(|(i, x)| if i < 1000 { x * g } else { *x })
            .collect();
        let mut m = ChangeMeter::default();
        m.add(&block(&f), &block(&v));
        let c = m.change_db().unwrap_or(0.0);
        assert!(c > 0.9 && c < 1.1, "{c}");
    }
}
