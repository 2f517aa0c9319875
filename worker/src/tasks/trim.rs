//! The ceiling rule: which static trims put every delivered file of a level
//! family (a mix and every output that shares its gain) under the true-peak
//! ceiling, given each output's true peak as it would be written.
//!
//! In order:
//! 1. one trim for every output of the family, as long as the family's mix
//!    stays inside its loudness tolerance: matched outputs keep cutting
//!    against each other and stems keep summing to the master;
//! 2. otherwise the mixes share the trim the mixes need, and each stem set
//!    takes one further trim of its own: its stems sum to the master times
//!    a known gain (`stems_trim_db`);
//! 3. a mix the tolerance cannot spare (the family's mix itself excepted)
//!    takes its own trim, recorded; the ceiling always wins over the
//!    tolerance, including for the family's mix.
//!
//! Outputs without a ceiling (re-mix stems) take no part. Pure: no audio.

use std::collections::BTreeMap;

/// Kept between the trimmed mix and the edge of its tolerance, LU: the
/// written file is measured after dither, and other meters read a few
/// thousandths differently.
pub const TOLERANCE_MARGIN_LU: f64 = 0.02;

/// A level family whose ceiling is decided on the pack's written files
/// (the render task's): what [`decide`] needs of its mix.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FamilyCeiling {
    /// `full` (the full mix's family), or the normalized variant's name.
    pub name: String,
    /// File name of the family's mix.
    pub mix_file: String,
    /// Its loudness on its basis at the family gain (`None`: silent).
    pub loudness: Option<f64>,
    /// The lowest loudness its tolerance accepts.
    pub floor_lufs: f64,
}

/// One output as the analysis measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Probed {
    pub variant: String,
    pub file: String,
    /// A processed stem (part of its variant's stem set).
    pub stem: bool,
    /// True peak as it would be written, dBTP (`None`: silent).
    pub true_peak_dbtp: Option<f64>,
}

/// The family's mix: its file and how its loudness sits against its target.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyMix<'a> {
    pub file: &'a str,
    /// Its loudness on its basis at the family gain (`None`: silent).
    pub loudness: Option<f64>,
    /// The lowest loudness its tolerance accepts.
    pub floor_lufs: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trims {
    /// Applied to every output of the family.
    pub title_db: f64,
    /// Further trims by variant (≤ 0; absent when none).
    pub variant_db: BTreeMap<String, f64>,
    /// Which rule applied, in words.
    pub rule: String,
}

/// The trim each output needs to sit at `ceiling` (≤ 0).
fn need(ceiling: f64, p: &Probed) -> f64 {
    p.true_peak_dbtp.map_or(0.0, |tp| (ceiling - tp).min(0.0))
}

/// Decides the trims of one family. `probed` lists its outputs that are held
/// to the ceiling; `ceiling` is the working ceiling (delivery ceiling minus
/// margin).
pub fn decide(ceiling: f64, mix: &FamilyMix<'_>, probed: &[Probed]) -> Trims {
    let min = |it: &mut dyn Iterator<Item = f64>| it.fold(0.0_f64, f64::min);
    let all = min(&mut probed.iter().map(|p| need(ceiling, p)));
    let own = min(&mut probed
        .iter()
        .filter(|p| p.file == mix.file)
        .map(|p| need(ceiling, p)));
    // How far the mix can come down and stay inside its tolerance.
    let spare = mix.loudness.map_or(f64::NEG_INFINITY, |l| {
        (mix.floor_lufs + TOLERANCE_MARGIN_LU - l).min(0.0)
    });
    if all == 0.0 {
        return Trims {
            title_db: 0.0,
            variant_db: BTreeMap::new(),
            rule: "no trim: every output is under the ceiling".into(),
        };
    }
    if all >= spare {
        return Trims {
            title_db: all,
            variant_db: BTreeMap::new(),
            rule: format!(
                "one trim of {all:.3} dB for every output sharing the mix's gain: the mix stays inside its tolerance, stems still sum to it and matched variants still cut against it"
            ),
        };
    }
    let mixes = min(&mut probed.iter().filter(|p| !p.stem).map(|p| need(ceiling, p)));
    // The ceiling wins over the tolerance for the family's mix itself.
    let title = if mixes >= spare {
        mixes
    } else {
        own.min(spare.max(mixes))
    };
    let mut variant_db = BTreeMap::new();
    let mut variants: Vec<&str> = probed.iter().map(|p| p.variant.as_str()).collect();
    variants.dedup();
    for v in variants {
        let extra = probed
            .iter()
            .filter(|p| p.variant == v)
            .map(|p| need(ceiling, p) - title)
            .fold(0.0_f64, f64::min);
        if extra < 0.0 {
            variant_db.insert(v.to_string(), extra);
        }
    }
    let stems: Vec<&String> = variant_db
        .keys()
        .filter(|v| probed.iter().any(|p| &p.variant == *v && p.stem))
        .collect();
    let own_mixes: Vec<&String> = variant_db
        .keys()
        .filter(|v| probed.iter().any(|p| &p.variant == *v && !p.stem))
        .collect();
    let mut rule = format!(
        "one trim of {all:.3} dB for every output would take the mix below its tolerance (it can spare {spare:.3} dB): the mixes take {title:.3} dB"
    );
    if !stems.is_empty() {
        rule.push_str(&format!(
            "; each stem set takes one further trim of its own ({}), so its stems sum to the master times that gain",
            stems
                .iter()
                .map(|v| format!("`{v}` {:.3} dB", variant_db[*v]))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !own_mixes.is_empty() {
        rule.push_str(&format!(
            "; {} would still be over the ceiling and take{} a trim of {} own ({}): {} no longer cut{} against the full mix at its level",
            own_mixes.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "),
            if own_mixes.len() == 1 { "s" } else { "" },
            if own_mixes.len() == 1 { "its" } else { "their" },
            own_mixes
                .iter()
                .map(|v| format!("{:.3} dB", variant_db[*v]))
                .collect::<Vec<_>>()
                .join(", "),
            if own_mixes.len() == 1 { "it" } else { "they" },
            if own_mixes.len() == 1 { "s" } else { "" },
        ));
    }
    if title < spare {
        rule.push_str(&format!(
            "; the ceiling wins: the mix needs {own:.3} dB itself and leaves its tolerance"
        ));
    }
    Trims {
        title_db: title,
        variant_db,
        rule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(variant: &str, file: &str, stem: bool, tp: f64) -> Probed {
        Probed {
            variant: variant.into(),
            file: file.into(),
            stem,
            true_peak_dbtp: Some(tp),
        }
    }

    fn mix(l: f64) -> FamilyMix<'static> {
        // Target -14 ±1: the floor is -15.
        FamilyMix {
            file: "full.wav",
            loudness: Some(l),
            floor_lufs: -15.0,
        }
    }

    #[test]
    fn nothing_over_no_trim() {
        let t = decide(-1.1, &mix(-14.0), &[p("full", "full.wav", false, -1.2)]);
        assert_eq!(t.title_db, 0.0);
        assert!(t.variant_db.is_empty());
    }

    #[test]
    fn one_trim_while_the_mix_stays_in_tolerance() {
        // The case: a vocal stem at -0.23 against -1.1: -0.87 dB for all.
        let probed = [
            p("full", "full.wav", false, -1.15),
            p("stems", "vox.wav", true, -0.23),
            p("stems", "drums.wav", true, -2.0),
            p("instrumental", "inst.wav", false, -1.3),
        ];
        let t = decide(-1.1, &mix(-14.0), &probed);
        assert!((t.title_db + 0.87).abs() < 1e-12, "{t:?}");
        assert!(t.variant_db.is_empty());
    }

    #[test]
    fn stems_take_their_own_trim_beyond_the_tolerance() {
        // The stems need -3 dB; the mix can spare only 0.98 dB.
        let probed = [
            p("full", "full.wav", false, -1.0),
            p("stems", "vox.wav", true, 1.9),
            p("stems", "bass.wav", true, -0.5),
            p("vocal_up", "vu.wav", false, -1.05),
        ];
        let t = decide(-1.1, &mix(-14.0), &probed);
        // Mixes need 0.1 dB together.
        assert!((t.title_db + 0.1).abs() < 1e-12, "{t:?}");
        let s = t.variant_db["stems"];
        assert!((s - (-3.0 + 0.1)).abs() < 1e-12, "{s}");
        assert_eq!(t.variant_db.len(), 1);
        assert!(t.rule.contains("stem set"), "{}", t.rule);
    }

    #[test]
    fn the_ceiling_wins_over_the_tolerance() {
        // The mix itself is 2 dB over: it is trimmed and leaves tolerance.
        let probed = [p("full", "full.wav", false, 0.9)];
        let t = decide(-1.1, &mix(-14.0), &probed);
        assert!((t.title_db + 2.0).abs() < 1e-12);
        assert!(t.rule.contains("ceiling wins"), "{}", t.rule);
        // A matched alt mix far over: the mix goes to the edge of its
        // tolerance, the alt mix takes the rest on its own.
        let probed = [
            p("full", "full.wav", false, -1.2),
            p("acappella", "a.wav", false, 2.0),
        ];
        let t = decide(-1.1, &mix(-14.0), &probed);
        assert!(
            (t.title_db - (-15.0 + TOLERANCE_MARGIN_LU + 14.0)).abs() < 1e-12,
            "{t:?}"
        );
        let a = t.variant_db["acappella"];
        assert!((t.title_db + a + 3.1).abs() < 1e-12, "{t:?}");
    }
}
