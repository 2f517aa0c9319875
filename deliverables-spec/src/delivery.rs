//! Delivery profiles (named presets, built-in or custom) and the resolved
//! delivery a render uses: every limit it checks, all defaults filled in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{
    BitDepth, DeliverySpec, Dither, IdenticalVariants, LimitPatch, LoudnessBasis, ProfileSpec, Role,
};

/// A built-in loudness preset. Every field can be overridden in the spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub target_lufs: f64,
    /// Accepted distance either side of the target, LU.
    pub tolerance_lu: f64,
    pub true_peak_max_dbtp: f64,
    pub max_short_term_lufs: Option<f64>,
    pub basis: LoudnessBasis,
    /// For dialogue-gated profiles: below this dialogue share, measure the
    /// full programme against (target, tolerance) instead.
    pub fallback: Option<(f64, f64, f64)>,
    /// Where the figures come from, for the manifest.
    pub source: &'static str,
}

const fn programme(
    name: &'static str,
    target_lufs: f64,
    tolerance_lu: f64,
    true_peak_max_dbtp: f64,
    source: &'static str,
) -> Profile {
    Profile {
        name,
        target_lufs,
        tolerance_lu,
        true_peak_max_dbtp,
        max_short_term_lufs: None,
        basis: LoudnessBasis::Programme,
        fallback: None,
        source,
    }
}

/// Starting values from the published recommendations; users override per spec.
pub const PROFILES: &[Profile] = &[
    programme(
        "ebu-r128",
        -23.0,
        0.5,
        -1.0,
        "EBU R 128: -23 LUFS +/-0.5 LU, -1 dBTP",
    ),
    Profile {
        max_short_term_lufs: Some(-18.0),
        ..programme(
            "ebu-r128-s1",
            -23.0,
            0.5,
            -1.0,
            "EBU R 128 s1 (short-form: ads, promos): -23 LUFS +/-0.5 LU, -1 dBTP, max short-term -18 LUFS",
        )
    },
    programme(
        "atsc-a85",
        -24.0,
        2.0,
        -2.0,
        "ATSC A/85: -24 LKFS +/-2 LU, -2 dBTP",
    ),
    Profile {
        basis: LoudnessBasis::Dialogue,
        fallback: Some((0.15, -24.0, 2.0)),
        ..programme(
            "netflix",
            -27.0,
            2.0,
            -2.0,
            "Netflix: -27 LKFS +/-2 LU dialogue-gated, -2 dBTP; under 15% dialogue: -24 LKFS +/-2 LU full programme",
        )
    },
    programme(
        "spotify",
        -14.0,
        1.0,
        -1.0,
        "Spotify loudness normalisation: -14 LUFS, -1 dBTP",
    ),
    programme("youtube", -14.0, 1.0, -1.0, "YouTube: -14 LUFS, -1 dBTP"),
    programme(
        "apple-music",
        -16.0,
        1.0,
        -1.0,
        "Apple Music Sound Check: -16 LUFS, -1 dBTP",
    ),
    programme(
        "aes-streaming",
        -18.0,
        2.0,
        -1.0,
        "AES TD1004: target -18 LUFS, accepted -20 to -16 LUFS, -1 dBTP",
    ),
    programme(
        "podcast",
        -16.0,
        1.0,
        -1.0,
        "Apple podcast guidance: -16 LUFS +/-1 LU, -1 dBTP",
    ),
];

pub const DEFAULT_PROFILE: &str = "ebu-r128";
pub const DEFAULT_NAMING: &str = "{title}_{variant}_{rate}k{bits}.wav";
pub const DEFAULT_STEM_NAMING: &str = "{title}_stem-{role}_{rate}k{bits}.wav";
pub const DEFAULT_OUTPUT_DIR: &str = "deliverables";
pub const DEFAULT_TRUE_PEAK_MARGIN_DB: f64 = 0.1;
pub const DEFAULT_ORIGINATOR: &str = "stemforge";
/// Timecode frame rate of the report when the spec sets none (film).
pub const DEFAULT_FRAME_RATE: f64 = 24.0;

/// Dialogue gating defaults (item 3 of the compliance issue).
pub const DEFAULT_DIALOGUE_ABSOLUTE_GATE_LUFS: f64 = -50.0;
pub const DEFAULT_DIALOGUE_RELATIVE_GATE_LU: f64 = 20.0;
pub const DEFAULT_DIALOGUE_MIN_SHARE: f64 = 0.15;

pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// How dialogue is found in a title's stems, and what happens without it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialogueGate {
    /// Stems of these roles are summed to find where dialogue is.
    pub roles: Vec<Role>,
    pub absolute_gate_lufs: f64,
    pub relative_gate_lu: f64,
    /// Below this share of the programme, the fallback applies.
    pub min_share: f64,
    pub fallback_target_lufs: f64,
    pub fallback_tolerance_lu: f64,
}

/// The delivery every output of a job is made for, all defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub profile: String,
    /// Where the profile's figures come from.
    pub profile_source: String,
    pub target_lufs: f64,
    pub tolerance_lu: f64,
    pub true_peak_max_dbtp: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_short_term_lufs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_momentary_lufs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness_range_min_lu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness_range_max_lu: Option<f64>,
    pub loudness_basis: LoudnessBasis,
    pub dialogue: DialogueGate,
    /// `None`: the stems' own rate.
    pub sample_rate: Option<u32>,
    /// Several output rates, one pack each (`sample_rates`); empty for one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample_rates: Vec<u32>,
    pub bit_depth: BitDepth,
    pub output_dir: String,
    pub naming: String,
    pub stem_naming: String,
    pub dither: Dither,
    pub true_peak_margin_db: f64,
    /// BWF origination time from the spec (RFC 3339 UTC), if it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origination: Option<String>,
    pub originator: String,
    /// Variants that are not versions of a title: skipped or written.
    #[serde(default)]
    pub identical_variants: IdenticalVariants,
    /// Timecode frame rate for times in the report.
    #[serde(default = "default_frame_rate")]
    pub frame_rate: f64,
}

fn default_frame_rate() -> f64 {
    DEFAULT_FRAME_RATE
}

/// The loudness rule that applies to a title: which measurement, which target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoudnessTarget {
    pub basis: LoudnessBasis,
    pub target_lufs: f64,
    pub tolerance_lu: f64,
    /// Why this basis: e.g. the fallback and the dialogue share behind it.
    pub why: String,
}

impl Delivery {
    /// The packs a title is delivered in: with `sample_rates`, one per rate
    /// (each `Some`); else one, at `sample_rate` (`None`: the stems' rate).
    pub fn packs(&self) -> Vec<Option<u32>> {
        if self.sample_rates.is_empty() {
            vec![self.sample_rate]
        } else {
            self.sample_rates.iter().copied().map(Some).collect()
        }
    }

    /// The ceiling limiters and the final check aim for: the delivery's
    /// ceiling minus the safety margin.
    pub fn working_ceiling_db(&self) -> f64 {
        self.true_peak_max_dbtp - self.true_peak_margin_db
    }

    /// Which loudness rule applies, given the dialogue share of the
    /// programme (`None`: the title or output has no dialogue stem).
    pub fn loudness_target(&self, dialogue_share: Option<f64>) -> LoudnessTarget {
        let programme = |target_lufs, tolerance_lu, why: String| LoudnessTarget {
            basis: LoudnessBasis::Programme,
            target_lufs,
            tolerance_lu,
            why,
        };
        if self.loudness_basis == LoudnessBasis::Programme {
            return programme(
                self.target_lufs,
                self.tolerance_lu,
                "full programme (ITU-R BS.1770 gating)".into(),
            );
        }
        let g = &self.dialogue;
        match dialogue_share {
            Some(share) if share > 0.0 && share + 1e-12 >= g.min_share => LoudnessTarget {
                basis: LoudnessBasis::Dialogue,
                target_lufs: self.target_lufs,
                tolerance_lu: self.tolerance_lu,
                why: format!(
                    "dialogue-gated, estimated from the {} stem: dialogue covers {:.1}% of the programme (at least {:.0}%)",
                    role_list(&g.roles),
                    share * 100.0,
                    g.min_share * 100.0
                ),
            },
            Some(share) => programme(
                g.fallback_target_lufs,
                g.fallback_tolerance_lu,
                format!(
                    "fallback to full programme: dialogue covers {:.1}% of the programme, under {:.0}%",
                    share * 100.0,
                    g.min_share * 100.0
                ),
            ),
            None => programme(
                g.fallback_target_lufs,
                g.fallback_tolerance_lu,
                format!(
                    "fallback to full programme: no {} stem to find dialogue in",
                    role_list(&g.roles)
                ),
            ),
        }
    }

    /// The delivery a spec asks for, with its custom profiles.
    pub(crate) fn of(spec: &crate::Spec) -> Delivery {
        Delivery::resolve_with(&spec.delivery, &spec.profiles)
    }

    /// Fills a delivery from its (built-in) profile and the spec's overrides.
    /// An unknown profile falls back to the default here; validation reports it.
    pub fn resolve(spec: &DeliverySpec) -> Delivery {
        Delivery::resolve_with(spec, &BTreeMap::new())
    }

    /// As [`Delivery::resolve`], with the spec's custom profiles: the
    /// built-in profile's limits, patched by the custom profile's, patched
    /// by `[delivery]`'s.
    pub fn resolve_with(spec: &DeliverySpec, custom: &BTreeMap<String, ProfileSpec>) -> Delivery {
        let name = spec.profile.as_deref().unwrap_or(DEFAULT_PROFILE);
        let (base, custom) = match custom.get(name) {
            Some(c) => (
                c.base.as_deref().and_then(profile).unwrap_or(&PROFILES[0]),
                Some(c),
            ),
            None => (profile(name).unwrap_or(&PROFILES[0]), None),
        };
        let mut d = Delivery::from_profile(name, base, spec);
        if let Some(c) = custom {
            d.apply(&c.limit_patch());
            d.profile_source = match &c.description {
                Some(text) => text.clone(),
                None => format!("custom profile based on {}", base.name),
            };
        }
        let changed = spec.limits_set();
        if !changed.is_empty() {
            d.profile_source = format!(
                "{}; overridden in the spec: {}",
                d.profile_source,
                changed.join(", ")
            );
        }
        d.apply(&spec.limit_patch());
        d
    }

    /// A built-in profile's limits with `[delivery]`'s other settings (the
    /// limits `[delivery]` sets are applied afterwards, by [`Delivery::apply`]).
    fn from_profile(name: &str, p: &Profile, spec: &DeliverySpec) -> Delivery {
        // Without a fallback of its own, a programme profile switched to
        // dialogue gating falls back to its own target.
        let (min_share, ft, ftol) =
            p.fallback
                .unwrap_or((DEFAULT_DIALOGUE_MIN_SHARE, p.target_lufs, p.tolerance_lu));
        Delivery {
            profile: name.to_string(),
            profile_source: p.source.to_string(),
            target_lufs: p.target_lufs,
            tolerance_lu: p.tolerance_lu,
            true_peak_max_dbtp: p.true_peak_max_dbtp,
            max_short_term_lufs: p.max_short_term_lufs,
            max_momentary_lufs: None,
            loudness_range_min_lu: None,
            loudness_range_max_lu: None,
            loudness_basis: p.basis,
            dialogue: DialogueGate {
                roles: vec![Role::Dialogue],
                absolute_gate_lufs: DEFAULT_DIALOGUE_ABSOLUTE_GATE_LUFS,
                relative_gate_lu: DEFAULT_DIALOGUE_RELATIVE_GATE_LU,
                min_share,
                fallback_target_lufs: ft,
                fallback_tolerance_lu: ftol,
            },
            sample_rate: spec.sample_rate,
            sample_rates: spec.sample_rates.clone().unwrap_or_default(),
            bit_depth: spec.bit_depth.unwrap_or(BitDepth::Int24),
            output_dir: spec
                .output_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_OUTPUT_DIR.to_string()),
            naming: spec
                .naming
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMING.to_string()),
            stem_naming: spec
                .stem_naming
                .clone()
                .unwrap_or_else(|| DEFAULT_STEM_NAMING.to_string()),
            dither: spec.dither.unwrap_or_default(),
            true_peak_margin_db: spec
                .true_peak_margin_db
                .unwrap_or(DEFAULT_TRUE_PEAK_MARGIN_DB),
            origination: spec.origination.clone(),
            originator: spec
                .originator
                .clone()
                .unwrap_or_else(|| DEFAULT_ORIGINATOR.to_string()),
            identical_variants: spec.identical_variants.unwrap_or_default(),
            frame_rate: spec.frame_rate.unwrap_or(DEFAULT_FRAME_RATE),
        }
    }

    /// Each limit the patch sets replaces this delivery's.
    fn apply(&mut self, o: &LimitPatch) {
        let set = |dst: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        set(&mut self.target_lufs, o.target_lufs);
        set(&mut self.tolerance_lu, o.tolerance_lu);
        set(&mut self.true_peak_max_dbtp, o.true_peak_max_dbtp);
        self.max_short_term_lufs = o.max_short_term_lufs.or(self.max_short_term_lufs);
        self.max_momentary_lufs = o.max_momentary_lufs.or(self.max_momentary_lufs);
        self.loudness_range_min_lu = o.loudness_range_min_lu.or(self.loudness_range_min_lu);
        self.loudness_range_max_lu = o.loudness_range_max_lu.or(self.loudness_range_max_lu);
        if let Some(b) = o.loudness_basis {
            self.loudness_basis = b;
        }
        if let Some(d) = &o.dialogue {
            let g = &mut self.dialogue;
            if d.include_vocals == Some(true) {
                g.roles = vec![Role::Dialogue, Role::Vocals, Role::BackingVocals];
            } else if d.include_vocals == Some(false) {
                g.roles = vec![Role::Dialogue];
            }
            set(&mut g.absolute_gate_lufs, d.absolute_gate_lufs);
            set(&mut g.relative_gate_lu, d.relative_gate_lu);
            set(&mut g.min_share, d.min_share);
            set(&mut g.fallback_target_lufs, d.fallback_target_lufs);
            set(&mut g.fallback_tolerance_lu, d.fallback_tolerance_lu);
        }
    }
}

fn role_list(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_states_its_limits() {
        let get = |n: &str| {
            Delivery::resolve(&DeliverySpec {
                profile: Some(n.into()),
                ..Default::default()
            })
        };
        let s1 = get("ebu-r128-s1");
        assert_eq!(
            (s1.target_lufs, s1.tolerance_lu, s1.max_short_term_lufs),
            (-23.0, 0.5, Some(-18.0))
        );
        let n = get("netflix");
        assert_eq!(n.loudness_basis, LoudnessBasis::Dialogue);
        assert_eq!((n.target_lufs, n.true_peak_max_dbtp), (-27.0, -2.0));
        let aes = get("aes-streaming");
        assert_eq!(
            (
                aes.target_lufs - aes.tolerance_lu,
                aes.target_lufs + aes.tolerance_lu
            ),
            (-20.0, -16.0)
        );
        for p in PROFILES {
            assert!(!p.source.is_empty());
            assert_eq!(get(p.name).profile_source, p.source);
        }
    }

    #[test]
    fn netflix_falls_back_under_15_percent_dialogue() {
        let n = Delivery::resolve(&DeliverySpec {
            profile: Some("netflix".into()),
            ..Default::default()
        });
        let t = n.loudness_target(Some(0.40));
        assert_eq!(
            (t.basis, t.target_lufs, t.tolerance_lu),
            (LoudnessBasis::Dialogue, -27.0, 2.0)
        );
        let t = n.loudness_target(Some(0.10));
        assert_eq!(
            (t.basis, t.target_lufs, t.tolerance_lu),
            (LoudnessBasis::Programme, -24.0, 2.0)
        );
        assert!(
            t.why.contains("10.0%") && t.why.contains("15%"),
            "{}",
            t.why
        );
        let t = n.loudness_target(None);
        assert_eq!(t.target_lufs, -24.0);
        assert!(t.why.contains("no dialogue stem"), "{}", t.why);
    }

    #[test]
    fn custom_profile_then_delivery_overrides() {
        let mut custom = BTreeMap::new();
        custom.insert(
            "broadcaster-x".to_string(),
            ProfileSpec {
                base: Some("atsc-a85".into()),
                description: Some("Broadcaster X QC sheet 2026".into()),
                max_short_term_lufs: Some(-20.0),
                ..Default::default()
            },
        );
        let d = Delivery::resolve_with(
            &DeliverySpec {
                profile: Some("broadcaster-x".into()),
                true_peak_max_dbtp: Some(-3.0),
                ..Default::default()
            },
            &custom,
        );
        assert_eq!(d.target_lufs, -24.0);
        assert_eq!(d.true_peak_max_dbtp, -3.0);
        assert_eq!(d.max_short_term_lufs, Some(-20.0));
        assert_eq!(
            d.profile_source,
            "Broadcaster X QC sheet 2026; overridden in the spec: true_peak_max_dbtp"
        );
    }
}
