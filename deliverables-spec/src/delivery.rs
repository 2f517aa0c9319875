//! Delivery profiles (named presets) and the resolved delivery a render uses.

use serde::{Deserialize, Serialize};

use crate::model::{BitDepth, DeliverySpec, Dither};

/// A named loudness preset. Every field can be overridden in the spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub target_lufs: f64,
    pub tolerance_lu: f64,
    pub true_peak_max_dbtp: f64,
    /// Where the figures come from, for the manifest.
    pub source: &'static str,
}

/// Starting values from the published recommendations; users override per spec.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "ebu-r128",
        target_lufs: -23.0,
        tolerance_lu: 0.5,
        true_peak_max_dbtp: -1.0,
        source: "EBU R 128 (v3): -23 LUFS +/-0.5 LU, -1 dBTP",
    },
    Profile {
        name: "atsc-a85",
        target_lufs: -24.0,
        tolerance_lu: 2.0,
        true_peak_max_dbtp: -2.0,
        source: "ATSC A/85: -24 LKFS +/-2 LU, -2 dBTP",
    },
    Profile {
        name: "spotify",
        target_lufs: -14.0,
        tolerance_lu: 1.0,
        true_peak_max_dbtp: -1.0,
        source: "Spotify loudness normalisation: -14 LUFS, -1 dBTP",
    },
    Profile {
        name: "youtube",
        target_lufs: -14.0,
        tolerance_lu: 1.0,
        true_peak_max_dbtp: -1.0,
        source: "YouTube: -14 LUFS, -1 dBTP",
    },
    Profile {
        name: "apple-music",
        target_lufs: -16.0,
        tolerance_lu: 1.0,
        true_peak_max_dbtp: -1.0,
        source: "Apple Music Sound Check: -16 LUFS, -1 dBTP",
    },
    Profile {
        name: "aes-streaming",
        target_lufs: -18.0,
        tolerance_lu: 2.0,
        true_peak_max_dbtp: -1.0,
        source: "AES TD1004: -16 to -20 LUFS, -1 dBTP",
    },
    Profile {
        name: "podcast",
        target_lufs: -16.0,
        tolerance_lu: 1.0,
        true_peak_max_dbtp: -1.0,
        source: "Apple podcast guidance: -16 LUFS +/-1 LU, -1 dBTP",
    },
];

pub const DEFAULT_PROFILE: &str = "ebu-r128";
pub const DEFAULT_NAMING: &str = "{title}_{variant}_{rate}k{bits}.wav";
pub const DEFAULT_STEM_NAMING: &str = "{title}_stem-{role}_{rate}k{bits}.wav";
pub const DEFAULT_OUTPUT_DIR: &str = "deliverables";

pub fn profile(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// The delivery every output of a job is made for, all defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub profile: String,
    pub target_lufs: f64,
    pub tolerance_lu: f64,
    pub true_peak_max_dbtp: f64,
    /// `None`: the stems' own rate.
    pub sample_rate: Option<u32>,
    pub bit_depth: BitDepth,
    pub output_dir: String,
    pub naming: String,
    pub stem_naming: String,
    pub dither: Dither,
    pub true_peak_margin_db: f64,
}

pub const DEFAULT_TRUE_PEAK_MARGIN_DB: f64 = 0.1;

impl Delivery {
    /// The ceiling limiters and the final check aim for: the delivery's
    /// ceiling minus the safety margin.
    pub fn working_ceiling_db(&self) -> f64 {
        self.true_peak_max_dbtp - self.true_peak_margin_db
    }
}

impl Delivery {
    /// Fills the spec's delivery from its profile. An unknown profile falls
    /// back to the default here; validation reports it.
    pub fn resolve(spec: &DeliverySpec) -> Delivery {
        let name = spec.profile.as_deref().unwrap_or(DEFAULT_PROFILE);
        let p = profile(name).unwrap_or(&PROFILES[0]);
        Delivery {
            profile: name.to_string(),
            target_lufs: spec.target_lufs.unwrap_or(p.target_lufs),
            tolerance_lu: spec.tolerance_lu.unwrap_or(p.tolerance_lu),
            true_peak_max_dbtp: spec.true_peak_max_dbtp.unwrap_or(p.true_peak_max_dbtp),
            sample_rate: spec.sample_rate,
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
        }
    }
}
