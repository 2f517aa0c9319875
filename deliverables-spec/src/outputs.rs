//! The files one variant of one title produces.

use serde::{Deserialize, Serialize};

use crate::delivery::Delivery;
use crate::model::{BitDepth, LevelPolicy, OutputKind, Role, Spec, Title};
use crate::naming::{mix_file_name, stem_file_name};
use crate::variant::{TitleGraph, Variant, title_graph};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedOutput {
    pub variant: String,
    /// `Some` for a processed-stem file.
    pub role: Option<Role>,
    pub file_name: String,
    pub level: LevelPolicy,
    /// Indices of the title's stems that feed this file.
    pub stems: Vec<usize>,
    /// The sample format it is written in: the delivery's, or 32-bit float
    /// for re-mix stems.
    pub bit_depth: BitDepth,
    /// Held to the true-peak ceiling (everything but re-mix stems).
    pub ceiling: bool,
}

/// Outputs of `variant` for `title` at `rate`, in a fixed order (mix, or
/// stems in role order). Roles that are silent in the variant give no file.
pub fn title_outputs(
    spec: &Spec,
    d: &Delivery,
    title: &Title,
    variant: &Variant,
    rate: u32,
) -> Vec<PlannedOutput> {
    let tg = title_graph(&spec.graph, title, variant);
    let live: Vec<usize> = sounding_stems(&tg);
    match variant.output {
        OutputKind::Mix => vec![PlannedOutput {
            variant: variant.name.clone(),
            role: None,
            file_name: mix_file_name(d, &title.name, &variant.name, rate),
            level: variant.level,
            stems: live,
            bit_depth: d.bit_depth,
            ceiling: true,
        }],
        OutputKind::Stems => Role::ALL
            .iter()
            .filter_map(|&role| {
                let stems: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|&i| title.stems[i].role == role)
                    .collect();
                let bit_depth = if variant.remix {
                    BitDepth::Float32
                } else {
                    d.bit_depth
                };
                (!stems.is_empty()).then(|| PlannedOutput {
                    variant: variant.name.clone(),
                    role: Some(role),
                    file_name: stem_file_name(
                        d,
                        &title.name,
                        &variant.name,
                        role.as_str(),
                        rate,
                        bit_depth,
                    ),
                    level: variant.level,
                    stems,
                    bit_depth,
                    ceiling: !variant.remix,
                })
            })
            .collect(),
        OutputKind::Live => live_outputs(d, title, variant, rate, &live),
    }
}

/// A live pack: one file per sounding stem (in spec order, named with
/// [`crate::live::stem_label`]), then the interleaved file when the variant
/// asks for one (named like a mix). Click and guide are written untouched,
/// every other stem is held to the headroom (see [`crate::live`]).
fn live_outputs(
    d: &Delivery,
    title: &Title,
    variant: &Variant,
    rate: u32,
    sounding: &[usize],
) -> Vec<PlannedOutput> {
    let mut out: Vec<PlannedOutput> = sounding
        .iter()
        .map(|&i| PlannedOutput {
            variant: variant.name.clone(),
            role: Some(title.stems[i].role),
            file_name: stem_file_name(
                d,
                &title.name,
                &variant.name,
                &crate::live::stem_label(title, i),
                rate,
                d.bit_depth,
            ),
            level: variant.level,
            stems: vec![i],
            bit_depth: d.bit_depth,
            // Held to the headroom, not to the delivery's ceiling.
            ceiling: false,
        })
        .collect();
    if let Some(il) = variant.live.as_ref().and_then(|l| l.interleave.as_ref()) {
        let mut stems: Vec<usize> = crate::live::resolve_map(&variant.name, title, il)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| match m {
                crate::live::MapSource::Stem { stem, .. } => Some(stem),
                crate::live::MapSource::Silence => None,
            })
            .collect();
        stems.sort_unstable();
        stems.dedup();
        out.push(PlannedOutput {
            variant: variant.name.clone(),
            role: None,
            file_name: mix_file_name(d, &title.name, &variant.name, rate),
            level: variant.level,
            stems,
            bit_depth: d.bit_depth,
            ceiling: false,
        });
    }
    out
}

/// Stems that sound in this graph (not muted themselves, nor through their bus).
pub fn sounding_stems(tg: &TitleGraph) -> Vec<usize> {
    tg.stems
        .iter()
        .filter(|s| !s.muted && s.bus.is_none_or(|b| !tg.buses[b].muted))
        .map(|s| s.index)
        .collect()
}
