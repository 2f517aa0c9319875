//! Pass/fail rules: a measured output against the delivery, by level policy.
//!
//! Pure: the worker measures, this module judges, so the rules are testable
//! without audio and identical wherever they run.

use serde::{Deserialize, Serialize};

use crate::delivery::{Delivery, LoudnessTarget};
use crate::model::{LevelPolicy, LoudnessBasis, Role};

/// What was measured on a written file. `None` where a value does not exist
/// (silence has no integrated loudness); `notes` says why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub integrated_lufs: Option<f64>,
    pub loudness_range_lu: Option<f64>,
    pub true_peak_dbtp: Option<f64>,
    pub sample_peak_dbfs: Option<f64>,
    pub max_momentary_lufs: Option<f64>,
    pub max_short_term_lufs: Option<f64>,
    /// Which true-peak estimator produced `true_peak_dbtp`.
    pub true_peak_method: String,
    /// Short-term loudness (3 s window) at the end of every whole second:
    /// entry `i` is the window ending at `i + 1` s. `null` before 3 s and
    /// where the window is silent (below −70 LUFS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short_term_lufs: Vec<Option<f64>>,
    /// The largest momentary loudness (400 ms window) of every whole
    /// second: entry `i` over the windows ending in `(i, i + 1]` s. `null`
    /// where every window is below −70 LUFS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub momentary_lufs: Vec<Option<f64>>,
    /// The largest true peak of every whole second, dBTP (`null`: digital
    /// silence).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub true_peak_dbtp_per_s: Vec<Option<f64>>,
    /// Where the true peak goes over the ceiling, on the video-frame grid
    /// of `frame_rate`: the first [`MAX_OVERS`] runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overs: Vec<Over>,
    /// Runs over the ceiling in all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overs_total: u64,
    /// The ceiling overs were looked for against, dBTP (none: not looked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overs_ceiling_dbtp: Option<f64>,
    /// Frames per second of the timecodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<f64>,
    /// Loudness over the blocks where the dialogue stem is active: present
    /// when the title has a dialogue stem and this output contains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialogue: Option<DialogueMeasurement>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Overs listed at most per output; `overs_total` counts them all.
pub const MAX_OVERS: usize = 100;

/// A run of video frames whose true peak is over the ceiling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Over {
    /// Seconds from the file's start.
    pub start_s: f64,
    pub end_s: f64,
    /// `HH:MM:SS:FF` of its first frame on the session timeline (the file's
    /// BWF `TimeReference` plus its position).
    pub timecode: String,
    pub peak_dbtp: f64,
}

/// Dialogue-gated loudness, estimated from stems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DialogueMeasurement {
    /// Integrated loudness of this output over the dialogue blocks only
    /// (BS.1770 gating within them); `None` if no block passes the gates.
    pub integrated_lufs: Option<f64>,
    /// Share of the programme's 400 ms blocks in which dialogue is active (0–1).
    pub share: f64,
    /// Stems whose sum decided where dialogue is.
    pub roles: Vec<Role>,
    pub method: String,
}

/// The wording every dialogue measurement carries: it is not a speech detector.
pub const DIALOGUE_METHOD: &str = "estimate from stems: the mix measured over the 400 ms blocks where the dialogue stem is active (its block loudness above the absolute gate and within the relative gate of its loudest block); broadcasters' meters detect speech in the mix instead";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
}

/// One limit checked, or one value reported without a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Pass,
    Fail,
    /// Measured and reported; not judged under this output's rule.
    Reported,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `integrated`, `dialogue_integrated`, `true_peak`, `max_short_term`,
    /// `max_momentary`, `loudness_range`.
    pub name: String,
    pub measured: Option<f64>,
    pub unit: String,
    /// The limit in words, e.g. `-23.0 ±0.5` or `≤ -1.0`.
    pub limit: String,
    pub outcome: CheckOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub verdict: Outcome,
    /// The rule applied, in words.
    pub rule: String,
    /// What integrated loudness was measured on, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loudness_basis: Option<String>,
    /// Why it failed (empty on pass).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Every limit checked (and values reported), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

impl Verdict {
    /// A verdict for an output that could not be measured at all.
    pub fn failed(rule: impl Into<String>, reason: impl Into<String>) -> Verdict {
        Verdict {
            verdict: Outcome::Fail,
            rule: rule.into(),
            loudness_basis: None,
            reasons: vec![reason.into()],
            checks: vec![],
        }
    }
}

/// Smallest tolerance used for float comparisons of rounded meter readings.
const EPS: f64 = 1e-9;

struct Checks(Vec<Check>);

impl Checks {
    fn add(
        &mut self,
        name: &str,
        measured: Option<f64>,
        unit: &str,
        limit: String,
        judged: bool,
        fail: Option<String>,
    ) {
        let outcome = match (judged, &fail) {
            (false, _) => CheckOutcome::Reported,
            (true, None) => CheckOutcome::Pass,
            (true, Some(_)) => CheckOutcome::Fail,
        };
        self.0.push(Check {
            name: name.into(),
            measured,
            unit: unit.into(),
            limit: if judged { limit } else { "not judged".into() },
            outcome,
            reason: if judged { fail } else { None },
        });
    }

    /// A "no more than" limit on an optional value.
    fn at_most(&mut self, name: &str, what: &str, m: Option<f64>, unit: &str, max: f64) {
        let fail = match m {
            Some(v) if v > max + EPS => Some(format!(
                "{what} {v:.2} {unit} is above the {max:.1} {unit} limit by {:.2}",
                v - max
            )),
            _ => None,
        };
        self.add(name, m, unit, format!("≤ {max:.1}"), true, fail);
    }
}

/// Which limits an output is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Every limit of the delivery (the full mix, normalized variants).
    Normalized,
    /// The true-peak ceiling only: the loudness follows the full mix.
    Matched,
    /// Nothing: a re-mix stem (32-bit float, no ceiling), measured and
    /// reported.
    Remix,
}

impl Rule {
    pub fn of(policy: LevelPolicy, remix: bool) -> Rule {
        match (remix, policy) {
            (true, _) => Rule::Remix,
            (false, LevelPolicy::Normalized) => Rule::Normalized,
            (false, LevelPolicy::Matched) => Rule::Matched,
        }
    }
}

/// Judges one output. `normalized` outputs (and the full mix) are held to
/// every limit of the delivery; `matched` ones to the true-peak ceiling only
/// (their loudness follows the full mix by design and is reported).
pub fn judge(policy: LevelPolicy, d: &Delivery, m: &Measurement) -> Verdict {
    judge_rule(Rule::of(policy, false), d, m)
}

/// Judges one output under `rule`, on the loudness target its measured
/// dialogue share picks.
pub fn judge_rule(rule: Rule, d: &Delivery, m: &Measurement) -> Verdict {
    let target = d.loudness_target(m.dialogue.as_ref().map(|x| x.share));
    judge_against(rule, d, &target, m)
}

/// Judges one output under `rule` against `target` (what
/// [`Delivery::loudness_target`] gave for it: the caller records the same
/// value it judged on).
pub fn judge_against(
    rule: Rule,
    d: &Delivery,
    target: &LoudnessTarget,
    m: &Measurement,
) -> Verdict {
    let policy = match rule {
        Rule::Normalized => LevelPolicy::Normalized,
        Rule::Matched | Rule::Remix => LevelPolicy::Matched,
    };
    let mut c = Checks(Vec::new());
    let ceiling = d.true_peak_max_dbtp;
    let normalized = policy == LevelPolicy::Normalized;

    // Integrated loudness, on the basis the profile and the dialogue share pick.
    let (lo, hi) = (
        target.target_lufs - target.tolerance_lu,
        target.target_lufs + target.tolerance_lu,
    );
    let (name, what, value) = match target.basis {
        LoudnessBasis::Dialogue => (
            "dialogue_integrated",
            "dialogue-gated integrated",
            m.dialogue.as_ref().and_then(|x| x.integrated_lufs),
        ),
        LoudnessBasis::Programme => ("integrated", "integrated", m.integrated_lufs),
    };
    let fail = match value {
        None => Some(format!(
            "no {what} loudness (silent, shorter than 400 ms, or no block passed the gates)"
        )),
        Some(i) if i < lo - EPS || i > hi + EPS => Some(format!(
            "{what} {i:.2} LUFS is outside {:.1} ±{:.1} LU (off by {:+.2} LU)",
            target.target_lufs,
            target.tolerance_lu,
            i - target.target_lufs
        )),
        Some(_) => None,
    };
    c.add(
        name,
        value,
        "LUFS",
        format!("{:.1} ±{:.1}", target.target_lufs, target.tolerance_lu),
        normalized,
        fail,
    );
    if target.basis == LoudnessBasis::Dialogue {
        c.add(
            "integrated",
            m.integrated_lufs,
            "LUFS",
            String::new(),
            false,
            None,
        );
    }
    if rule == Rule::Remix {
        c.add(
            "true_peak",
            m.true_peak_dbtp,
            "dBTP",
            String::new(),
            false,
            None,
        );
    } else {
        c.at_most("true_peak", "true peak", m.true_peak_dbtp, "dBTP", ceiling);
    }
    if normalized {
        if let Some(max) = d.max_short_term_lufs {
            c.at_most(
                "max_short_term",
                "max short-term",
                m.max_short_term_lufs,
                "LUFS",
                max,
            );
        }
        if let Some(max) = d.max_momentary_lufs {
            c.at_most(
                "max_momentary",
                "max momentary",
                m.max_momentary_lufs,
                "LUFS",
                max,
            );
        }
        if d.loudness_range_min_lu.is_some() || d.loudness_range_max_lu.is_some() {
            let (min, max) = (
                d.loudness_range_min_lu.unwrap_or(0.0),
                d.loudness_range_max_lu.unwrap_or(f64::INFINITY),
            );
            let fail = match m.loudness_range_lu {
                Some(v) if v < min - EPS || v > max + EPS => Some(format!(
                    "loudness range {v:.1} LU is outside {min:.1} to {max:.1} LU"
                )),
                None => Some("no loudness range (shorter than 3 s or silent)".into()),
                _ => None,
            };
            c.add(
                "loudness_range",
                m.loudness_range_lu,
                "LU",
                format!("{min:.1} to {max:.1}"),
                true,
                fail,
            );
        }
    }
    let limits =
        c.0.iter()
            .filter(|x| x.outcome != CheckOutcome::Reported)
            .map(|x| format!("{} {}", x.name.replace('_', " "), x.limit))
            .collect::<Vec<_>>()
            .join(", ");
    let rule = if rule == Rule::Remix {
        "re-mix stem: 32-bit float for a re-mix, not for air; no ceiling applied, loudness and true peak reported, not judged".to_string()
    } else if normalized {
        format!(
            "normalized: every limit of {} applies ({limits})",
            d.profile
        )
    } else {
        format!(
            "matched to the full mix's gain: only the true-peak ceiling of {} applies ({limits}); loudness reported, not judged",
            d.profile
        )
    };
    let reasons: Vec<String> = c.0.iter().filter_map(|x| x.reason.clone()).collect();
    Verdict {
        verdict: if reasons.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        rule,
        loudness_basis: normalized.then(|| target.why.clone()),
        reasons,
        checks: c.0,
    }
}

/// Judges one file of a live-playback pack: the true peak against the
/// pack's headroom (a `Check`); the integrated loudness reported, never
/// judged against the delivery's target. Click and guide (`untouched`)
/// pass as they came: their peak is reported, not judged.
pub fn judge_live(
    headroom_dbtp: f64,
    untouched: bool,
    interleaved: bool,
    m: &Measurement,
) -> Verdict {
    let untouched = untouched || interleaved;
    let mut c = Checks(Vec::new());
    c.add(
        "integrated",
        m.integrated_lufs,
        "LUFS",
        String::new(),
        false,
        None,
    );
    if untouched {
        c.add(
            "true_peak",
            m.true_peak_dbtp,
            "dBTP",
            String::new(),
            false,
            None,
        );
    } else {
        c.at_most(
            "true_peak",
            "true peak",
            m.true_peak_dbtp,
            "dBTP",
            headroom_dbtp,
        );
    }
    let reasons: Vec<String> = c.0.iter().filter_map(|x| x.reason.clone()).collect();
    Verdict {
        verdict: if reasons.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        rule: if interleaved {
            "live interleave: its channels are the pack's per-stem files, judged each on its own; loudness and true peak reported, not judged".to_string()
        } else if untouched {
            "live click/guide: passed untouched (no chain, no gain, no dither); loudness and true peak reported, not judged".to_string()
        } else {
            format!(
                "live playback: true peak at most the pack's {headroom_dbtp:.1} dBTP headroom; loudness reported, not judged against the delivery target"
            )
        },
        loudness_basis: None,
        reasons,
        checks: c.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_files_are_judged_on_their_headroom_only() {
        let m = |tp: f64| Measurement {
            true_peak_dbtp: Some(tp),
            integrated_lufs: Some(-12.0),
            ..Default::default()
        };
        // Loud, but under the headroom: pass (loudness not judged).
        let v = judge_live(-6.0, false, false, &m(-6.05));
        assert_eq!(v.verdict, Outcome::Pass, "{v:?}");
        assert!(
            v.checks
                .iter()
                .any(|c| c.name == "true_peak" && c.outcome == CheckOutcome::Pass)
        );
        assert!(
            v.checks
                .iter()
                .any(|c| c.name == "integrated" && c.outcome == CheckOutcome::Reported)
        );
        let v = judge_live(-6.0, false, false, &m(-5.5));
        assert_eq!(v.verdict, Outcome::Fail);
        // A click at -3 dBTP is reported, not judged; so is the interleave.
        assert_eq!(
            judge_live(-6.0, true, false, &m(-3.0)).verdict,
            Outcome::Pass
        );
        assert_eq!(
            judge_live(-6.0, false, true, &m(-3.0)).verdict,
            Outcome::Pass
        );
    }
    use crate::model::DeliverySpec;

    fn m(i: Option<f64>, tp: f64) -> Measurement {
        Measurement {
            integrated_lufs: i,
            true_peak_dbtp: Some(tp),
            ..Default::default()
        }
    }

    fn profile(name: &str) -> Delivery {
        Delivery::resolve(&DeliverySpec {
            profile: Some(name.into()),
            ..Default::default()
        })
    }

    #[test]
    fn normalized_rules() {
        let d = Delivery::resolve(&DeliverySpec::default()); // -23 ±0.5, -1 dBTP
        assert_eq!(
            judge(LevelPolicy::Normalized, &d, &m(Some(-23.4), -1.5)).verdict,
            Outcome::Pass
        );
        let v = judge(LevelPolicy::Normalized, &d, &m(Some(-22.3), -1.5));
        assert_eq!(v.verdict, Outcome::Fail);
        assert!(v.reasons[0].contains("+0.70 LU"), "{:?}", v.reasons);
        assert_eq!(v.checks[0].outcome, CheckOutcome::Fail);
        assert_eq!(v.checks[1].outcome, CheckOutcome::Pass);
        let v = judge(LevelPolicy::Normalized, &d, &m(Some(-23.0), -0.5));
        assert!(
            v.reasons[0].contains("true peak -0.50 dBTP is above the -1.0 dBTP limit by 0.50"),
            "{:?}",
            v.reasons
        );
        let v = judge(LevelPolicy::Normalized, &d, &m(None, -40.0));
        assert_eq!(v.verdict, Outcome::Fail);
        assert!(v.rule.contains("integrated -23.0 ±0.5"), "{}", v.rule);
    }

    #[test]
    fn matched_judged_on_ceiling_only() {
        let d = Delivery::resolve(&DeliverySpec::default());
        let v = judge(LevelPolicy::Matched, &d, &m(Some(-31.0), -6.0));
        assert_eq!(v.verdict, Outcome::Pass);
        assert_eq!(v.checks[0].outcome, CheckOutcome::Reported);
        assert_eq!(
            judge(LevelPolicy::Matched, &d, &m(None, -60.0)).verdict,
            Outcome::Pass
        );
        assert_eq!(
            judge(LevelPolicy::Matched, &d, &m(Some(-20.0), -0.9)).verdict,
            Outcome::Fail
        );
    }

    #[test]
    fn s1_checks_max_short_term() {
        let d = profile("ebu-r128-s1");
        let mut x = m(Some(-23.0), -3.0);
        x.max_short_term_lufs = Some(-17.2);
        let v = judge(LevelPolicy::Normalized, &d, &x);
        assert_eq!(v.verdict, Outcome::Fail);
        assert!(
            v.reasons[0].contains("max short-term -17.20 LUFS is above the -18.0 LUFS limit"),
            "{:?}",
            v.reasons
        );
        x.max_short_term_lufs = Some(-18.5);
        assert_eq!(
            judge(LevelPolicy::Normalized, &d, &x).verdict,
            Outcome::Pass
        );
        // Plain R128 does not check it.
        x.max_short_term_lufs = Some(-10.0);
        let v = judge(LevelPolicy::Normalized, &profile("ebu-r128"), &x);
        assert_eq!(v.verdict, Outcome::Pass);
    }

    #[test]
    fn netflix_dialogue_basis_and_fallback() {
        let d = profile("netflix");
        let mut x = m(Some(-22.0), -3.0);
        x.dialogue = Some(DialogueMeasurement {
            integrated_lufs: Some(-26.5),
            share: 0.4,
            roles: vec![Role::Dialogue],
            method: DIALOGUE_METHOD.into(),
        });
        let v = judge(LevelPolicy::Normalized, &d, &x);
        assert_eq!(v.verdict, Outcome::Pass, "{:?}", v.reasons);
        assert_eq!(v.checks[0].name, "dialogue_integrated");
        assert!(
            v.loudness_basis
                .as_deref()
                .unwrap_or_default()
                .contains("40.0%")
        );
        // 10 % dialogue: full programme at -24 ±2; -22.0 passes, -21.5 fails.
        if let Some(dl) = x.dialogue.as_mut() {
            dl.share = 0.1;
        }
        let v = judge(LevelPolicy::Normalized, &d, &x);
        assert_eq!(v.checks[0].name, "integrated");
        assert_eq!(v.verdict, Outcome::Pass);
        assert!(
            v.loudness_basis
                .as_deref()
                .unwrap_or_default()
                .contains("fallback")
        );
        x.integrated_lufs = Some(-21.5);
        assert_eq!(
            judge(LevelPolicy::Normalized, &d, &x).verdict,
            Outcome::Fail
        );
        // No dialogue stem at all: falls back and says so.
        x.dialogue = None;
        let v = judge(LevelPolicy::Normalized, &d, &x);
        assert!(
            v.loudness_basis
                .as_deref()
                .unwrap_or_default()
                .contains("no dialogue stem"),
            "{:?}",
            v.loudness_basis
        );
    }

    #[test]
    fn loudness_range_limits_when_set() {
        let d = Delivery::resolve(&DeliverySpec {
            loudness_range_min_lu: Some(4.0),
            loudness_range_max_lu: Some(18.0),
            ..Default::default()
        });
        let mut x = m(Some(-23.0), -3.0);
        x.loudness_range_lu = Some(2.5);
        let v = judge(LevelPolicy::Normalized, &d, &x);
        assert!(
            v.reasons[0].contains("outside 4.0 to 18.0"),
            "{:?}",
            v.reasons
        );
        x.loudness_range_lu = Some(9.0);
        assert_eq!(
            judge(LevelPolicy::Normalized, &d, &x).verdict,
            Outcome::Pass
        );
    }
}
