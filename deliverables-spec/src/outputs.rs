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
    }
}

/// Stems that sound in this graph (not muted themselves, nor through their bus).
pub fn sounding_stems(tg: &TitleGraph) -> Vec<usize> {
    tg.stems
        .iter()
        .filter(|s| !s.muted && s.bus.is_none_or(|b| !tg.buses[b].muted))
        .map(|s| s.index)
        .collect()
}
