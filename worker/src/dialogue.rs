//! Where dialogue is, from the dialogue stem: the stem-gated estimate of
//! dialogue loudness.
//!
//! The dialogue stems (role `dialogue`, and `vocals` when the spec says so)
//! are summed and metered in the same 400 ms / 100 ms-hop blocks as BS.1770
//! gating. A block is *dialogue* when its loudness is above the absolute gate
//! and within the relative gate of the stem's loudest block. Any output is
//! then measured over those blocks only. Broadcasters' meters (Dolby
//! Dialogue Intelligence) detect speech in the mix instead; this is an
//! estimate from stems and is labelled so everywhere it appears.

use std::path::PathBuf;

use deliverables_spec::Role;
use deliverables_spec::compliance::{DIALOGUE_METHOD, DialogueMeasurement};
use deliverables_spec::delivery::DialogueGate;
use deliverables_spec::model::Layout;
use serde::{Deserialize, Serialize};

use crate::dsp::Block;
use crate::meter::{Meter, MeterError, MeterKind, energy_to_lufs, gated_integrated, round3};
use crate::source::{SourceError, TitleSource};

/// The dialogue blocks of a title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialogueActivity {
    /// Roles whose stems were summed.
    pub roles: Vec<Role>,
    /// Half-open runs `[start, end)` of gating-block indices with dialogue.
    pub runs: Vec<(u64, u64)>,
    /// Loudness of the stems' loudest block, LUFS (what the relative gate hangs from).
    pub loudest_block_lufs: Option<f64>,
}

impl DialogueActivity {
    pub fn active_blocks(&self) -> u64 {
        self.runs.iter().map(|(a, b)| b - a).sum()
    }

    pub fn is_active(&self, block: u64) -> bool {
        let i = self.runs.partition_point(|&(_, end)| end <= block);
        self.runs.get(i).is_some_and(|&(start, _)| start <= block)
    }

    /// Share of the programme with dialogue (0–1): of the programme's 400 ms
    /// blocks that pass the BS.1770 gates (absolute −70 LUFS, relative −10
    /// LU: the blocks its integrated loudness is made of), the fraction
    /// where dialogue is active. Silence and fades do not dilute it.
    pub fn share_of(&self, programme_blocks: &[f64]) -> f64 {
        let Some(threshold) = crate::meter::gate_threshold(programme_blocks.iter().copied()) else {
            return 0.0;
        };
        let (mut gated, mut active) = (0u64, 0u64);
        for (j, &e) in programme_blocks.iter().enumerate() {
            if e >= threshold {
                gated += 1;
                active += u64::from(self.is_active(j as u64));
            }
        }
        if gated == 0 {
            0.0
        } else {
            active as f64 / gated as f64
        }
    }

    /// Share of `total_blocks` gating blocks with dialogue (0–1), silence
    /// included: a first estimate before the programme has been measured.
    pub fn share(&self, total_blocks: u64) -> f64 {
        if total_blocks == 0 {
            return 0.0;
        }
        let active: u64 = self
            .runs
            .iter()
            .map(|&(a, b)| b.min(total_blocks).saturating_sub(a))
            .sum();
        active as f64 / total_blocks as f64
    }

    /// Loudness of an output over the dialogue blocks, from its block energies.
    pub fn measure(&self, blocks: &[f64]) -> DialogueMeasurement {
        let energies = blocks
            .iter()
            .enumerate()
            .filter(|&(j, _)| self.is_active(j as u64))
            .map(|(_, &e)| e);
        DialogueMeasurement {
            integrated_lufs: gated_integrated(energies).map(round3),
            share: (self.share_of(blocks) * 10_000.0).round() / 10_000.0,
            roles: self.roles.clone(),
            method: DIALOGUE_METHOD.to_string(),
        }
    }
}

/// Number of whole 400 ms gating blocks (100 ms hop) in `frames` at `rate`.
pub fn gating_blocks(frames: u64, rate: u32) -> u64 {
    let hop = u64::from(rate / 10).max(1);
    (frames / hop).saturating_sub(3)
}

#[derive(Debug, thiserror::Error)]
pub enum DialogueError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Meter(#[from] MeterError),
}

/// Finds the dialogue blocks in the stems at `paths` (already chosen by
/// role). `cancelled` is polled between blocks.
pub fn find(
    paths: &[PathBuf],
    roles: &[Role],
    delivery_rate: Option<u32>,
    layout: Layout,
    edit: Option<&deliverables_spec::edit::EditSpec>,
    gate: &DialogueGate,
    mut cancelled: impl FnMut() -> bool,
) -> Result<Option<DialogueActivity>, DialogueError> {
    if paths.is_empty() {
        return Ok(None);
    }
    // Routed as the mix routes them (a mono dialogue stem in a 5.1 title is
    // the centre), so the meter weighs it as the mix's meter does.
    let mut source = TitleSource::open_edited(paths, delivery_rate, layout, edit)?;
    let mut inputs = source.make_blocks();
    let channels = inputs.first().map_or(2, Block::channels);
    let mut sum = Block::new(channels, inputs.first().map_or(4096, Block::capacity));
    let mut meter = Meter::with_blocks(channels, source.sample_rate, MeterKind::IntegratedOnly)?;
    loop {
        let n = source.read(&mut inputs)?;
        if n == 0 || cancelled() {
            break;
        }
        sum.set_frames(n);
        for ch in 0..channels {
            let out = &mut sum.channel_mut(ch)[..n];
            out.fill(0.0);
            for b in &inputs {
                for (o, x) in out.iter_mut().zip(&b.channel(ch)[..n]) {
                    *o += x;
                }
            }
        }
        meter.add(&sum)?;
    }
    Ok(Some(activity(meter.blocks(), roles, gate)))
}

/// Applies the gates to the dialogue stems' block energies.
pub fn activity(blocks: &[f64], roles: &[Role], gate: &DialogueGate) -> DialogueActivity {
    let loudest = blocks.iter().copied().fold(0.0_f64, f64::max);
    let loudest_lufs = (loudest > 0.0).then(|| energy_to_lufs(loudest));
    let threshold = loudest_lufs.map(|l| (l - gate.relative_gate_lu).max(gate.absolute_gate_lufs));
    let mut runs: Vec<(u64, u64)> = Vec::new();
    if let Some(t) = threshold {
        for (j, &e) in blocks.iter().enumerate() {
            let j = j as u64;
            if e > 0.0 && energy_to_lufs(e) >= t {
                match runs.last_mut() {
                    Some((_, end)) if *end == j => *end = j + 1,
                    _ => runs.push((j, j + 1)),
                }
            }
        }
    }
    DialogueActivity {
        roles: roles.to_vec(),
        runs,
        loudest_block_lufs: loudest_lufs.map(round3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::lufs_to_energy;

    fn gate() -> DialogueGate {
        DialogueGate {
            roles: vec![Role::Dialogue],
            absolute_gate_lufs: -50.0,
            relative_gate_lu: 20.0,
            min_share: 0.15,
            fallback_target_lufs: -24.0,
            fallback_tolerance_lu: 2.0,
        }
    }

    #[test]
    fn gates_and_runs() {
        // Loudest -20: relative threshold -40 (above the -50 absolute gate).
        let l = [-80.0, -20.0, -25.0, -45.0, -39.0, -100.0, -30.0, -30.0];
        let e: Vec<f64> = l.iter().map(|&x| lufs_to_energy(x)).collect();
        let a = activity(&e, &[Role::Dialogue], &gate());
        assert_eq!(a.runs, vec![(1, 3), (4, 5), (6, 8)]);
        assert_eq!(a.active_blocks(), 5);
        assert!((a.share(10) - 0.5).abs() < 1e-12);
        assert!(a.is_active(1) && a.is_active(2) && !a.is_active(3) && a.is_active(7));
        assert!(!a.is_active(8));
        // A quiet stem: the absolute gate decides.
        let l = [-60.0, -48.0, -55.0, -49.0];
        let e: Vec<f64> = l.iter().map(|&x| lufs_to_energy(x)).collect();
        assert_eq!(activity(&e, &[], &gate()).runs, vec![(1, 2), (3, 4)]);
        // Silence: no runs, no loudest block.
        let a = activity(&[0.0; 5], &[], &gate());
        assert!(a.runs.is_empty() && a.loudest_block_lufs.is_none());
    }

    #[test]
    fn measures_only_dialogue_blocks() {
        let a = DialogueActivity {
            roles: vec![Role::Dialogue],
            runs: vec![(2, 4)],
            loudest_block_lufs: Some(-20.0),
        };
        let mix: Vec<f64> = [-20.0, -20.0, -27.0, -27.0, -20.0]
            .iter()
            .map(|&x| lufs_to_energy(x))
            .collect();
        let m = a.measure(&mix);
        assert!((m.integrated_lufs.unwrap_or(0.0) + 27.0).abs() < 1e-9);
        assert!((m.share - 0.4).abs() < 1e-12);
        assert!(m.method.contains("estimate from stems"));
        // Silent blocks (below the absolute gate) and blocks under the
        // relative gate are not programme: the share is of the gated blocks.
        let mix: Vec<f64> = [-20.0, -20.0, -27.0, -27.0, -20.0, -90.0, -90.0, -45.0]
            .iter()
            .map(|&x| lufs_to_energy(x))
            .collect();
        assert!((a.share_of(&mix) - 0.4).abs() < 1e-12);
        assert!((a.share(mix.len() as u64) - 0.25).abs() < 1e-12);
    }
}
