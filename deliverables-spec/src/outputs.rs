//! The files one variant of one title produces.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::delivery::Delivery;
use crate::model::{BitDepth, LevelPolicy, OutputKind, Role, Spec, Title};
use crate::naming::{group_file_name, mix_file_name, stem_file_name};
use crate::variant::{TitleGraph, Variant, title_graph};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedOutput {
    pub variant: String,
    /// `Some` for a processed-stem file of one role.
    pub role: Option<Role>,
    /// `Some` for a processed-stem file of a group of roles (a stems
    /// variant with `groups`): the group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
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
            group: None,
        }],
        OutputKind::Stems => {
            if let Some(groups) = &variant.groups {
                return group_outputs(d, title, variant, groups, &live, rate);
            }
            role_outputs(d, title, variant, &live, rate)
        }
        OutputKind::Live => live_outputs(d, title, variant, rate, &live),
    }
}

/// The sample format and ceiling of a variant's stem files: re-mix stems
/// are 32-bit float with no ceiling.
fn stem_format(d: &Delivery, variant: &Variant) -> (BitDepth, bool) {
    if variant.remix {
        (BitDepth::Float32, false)
    } else {
        (d.bit_depth, true)
    }
}

/// One file per group, in group-name order: the sounding stems whose role
/// is in the group. A group with no sounding stem gives no file.
fn group_outputs(
    d: &Delivery,
    title: &Title,
    variant: &Variant,
    groups: &BTreeMap<String, Vec<Role>>,
    live: &[usize],
    rate: u32,
) -> Vec<PlannedOutput> {
    let (bit_depth, ceiling) = stem_format(d, variant);
    groups
        .iter()
        .filter_map(|(group, roles)| {
            let stems: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| roles.contains(&title.stems[i].role))
                .collect();
            (!stems.is_empty()).then(|| PlannedOutput {
                variant: variant.name.clone(),
                role: None,
                group: Some(group.clone()),
                file_name: group_file_name(d, &title.name, &variant.name, group, rate, bit_depth),
                level: variant.level,
                stems,
                bit_depth,
                ceiling,
            })
        })
        .collect()
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
            group: None,
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
            group: None,
            file_name: mix_file_name(d, &title.name, &variant.name, rate),
            level: variant.level,
            stems,
            bit_depth: d.bit_depth,
            ceiling: false,
        });
    }
    out
}

/// One file per role, in role order.
fn role_outputs(
    d: &Delivery,
    title: &Title,
    variant: &Variant,
    live: &[usize],
    rate: u32,
) -> Vec<PlannedOutput> {
    let (bit_depth, ceiling) = stem_format(d, variant);
    Role::ALL
        .iter()
        .filter_map(|&role| {
            let stems: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| title.stems[i].role == role)
                .collect();
            (!stems.is_empty()).then(|| PlannedOutput {
                variant: variant.name.clone(),
                role: Some(role),
                group: None,
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
                ceiling,
            })
        })
        .collect()
}

impl PlannedOutput {
    /// A processed-stem file (of one role or of a group): a linked head
    /// over the variant's mix, part of a set that sums to it.
    pub fn is_stem(&self) -> bool {
        self.role.is_some() || self.group.is_some()
    }

    /// What a stem file carries: its role's name or its group's (`None`
    /// for a mix).
    pub fn stem_label(&self) -> Option<&str> {
        self.group.as_deref().or(self.role.map(Role::as_str))
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
