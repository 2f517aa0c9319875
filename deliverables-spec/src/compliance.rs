//! Pass/fail rules: a measured output against the delivery, by level policy.
//!
//! Pure: the worker measures, this module judges, so the rules are testable
//! without audio and identical wherever they run.

use serde::{Deserialize, Serialize};

use crate::delivery::Delivery;
use crate::model::LevelPolicy;

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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub verdict: Outcome,
    /// The rule applied, in words.
    pub rule: String,
    /// Why it failed (empty on pass).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// Smallest tolerance used for float comparisons of rounded meter readings.
const EPS: f64 = 1e-9;

/// Judges one output. `normalized` outputs (and the full mix) must meet the
/// loudness target and the ceiling; `matched` ones the ceiling only (their
/// loudness follows the full mix by design).
pub fn judge(policy: LevelPolicy, d: &Delivery, m: &Measurement) -> Verdict {
    let mut reasons = Vec::new();
    let ceiling = d.true_peak_max_dbtp;
    match m.true_peak_dbtp {
        Some(tp) if tp > ceiling + EPS => reasons.push(format!(
            "true peak {tp:.2} dBTP is above the {ceiling:.1} dBTP ceiling by {:.2} dB",
            tp - ceiling
        )),
        _ => {}
    }
    let rule = match policy {
        LevelPolicy::Normalized => {
            let lo = d.target_lufs - d.tolerance_lu;
            let hi = d.target_lufs + d.tolerance_lu;
            match m.integrated_lufs {
                None => reasons
                    .push("no integrated loudness (silent or shorter than 400 ms)".to_string()),
                Some(i) if i < lo - EPS || i > hi + EPS => reasons.push(format!(
                    "integrated {i:.2} LUFS is outside {:.1} ±{:.1} LU (off by {:+.2} LU)",
                    d.target_lufs,
                    d.tolerance_lu,
                    i - d.target_lufs
                )),
                Some(_) => {}
            }
            format!(
                "normalized: integrated {:.1} LUFS ±{:.1} LU and true peak ≤ {:.1} dBTP ({})",
                d.target_lufs, d.tolerance_lu, ceiling, d.profile
            )
        }
        LevelPolicy::Matched => format!(
            "matched to the full mix's gain: true peak ≤ {ceiling:.1} dBTP ({}); loudness reported, not judged",
            d.profile
        ),
    };
    Verdict {
        verdict: if reasons.is_empty() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        rule,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeliverySpec;

    fn m(i: Option<f64>, tp: f64) -> Measurement {
        Measurement {
            integrated_lufs: i,
            true_peak_dbtp: Some(tp),
            ..Default::default()
        }
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
        let v = judge(LevelPolicy::Normalized, &d, &m(Some(-23.0), -0.5));
        assert!(
            v.reasons[0].contains("above the -1.0 dBTP ceiling by 0.50 dB"),
            "{:?}",
            v.reasons
        );
        let v = judge(LevelPolicy::Normalized, &d, &m(None, -40.0));
        assert_eq!(v.verdict, Outcome::Fail);
    }

    #[test]
    fn matched_judged_on_ceiling_only() {
        let d = Delivery::resolve(&DeliverySpec::default());
        assert_eq!(
            judge(LevelPolicy::Matched, &d, &m(Some(-31.0), -6.0)).verdict,
            Outcome::Pass
        );
        assert_eq!(
            judge(LevelPolicy::Matched, &d, &m(None, -60.0)).verdict,
            Outcome::Pass
        );
        assert_eq!(
            judge(LevelPolicy::Matched, &d, &m(Some(-20.0), -0.9)).verdict,
            Outcome::Fail
        );
    }
}
