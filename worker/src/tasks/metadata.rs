//! What an output's Broadcast WAV `bext` chunk says: which title, variant
//! and profile, who made it and when (the job's origination time, never the
//! moment of writing), where it sits on the timeline (the stems'
//! `TimeReference`), and how it was coded. Loudness fields are written after
//! the file is measured.

use deliverables_spec::Delivery;
use deliverables_spec::compliance::Measurement;
use deliverables_spec::timestamp::civil;

use sha2::{Digest, Sha256};

use crate::bwf::{Bext, BextLoudness};

/// The parts of a `bext` that differ per output.
pub struct OutputLabel<'a> {
    pub title: &'a str,
    pub variant: &'a str,
    pub role: Option<&'a str>,
    pub file_name: &'a str,
    /// The job's spec, which (with the above) identifies the output.
    pub spec_sha256: &'a str,
}

pub fn output_bext(
    label: &OutputLabel<'_>,
    d: &Delivery,
    origination_unix_s: i64,
    time_reference: u64,
    sample_rate: u32,
    channels: usize,
) -> Bext {
    let what = match label.role {
        Some(role) => format!("{} stem {role}", label.variant),
        None => label.variant.to_string(),
    };
    let c = civil(origination_unix_s);
    let mode = match channels {
        1 => "mono".to_string(),
        2 => "stereo".to_string(),
        n => format!("multichannel-{n}"),
    };
    let float = if d.bit_depth.is_float() { " float" } else { "" };
    Bext {
        description: format!(
            "{} - {what} - {} ({:.1} LUFS, {:.1} dBTP)",
            label.title, d.profile, d.target_lufs, d.true_peak_max_dbtp
        ),
        originator: d.originator.clone(),
        originator_reference: originator_reference(label),
        origination_date: c.date(),
        origination_time: c.time(),
        time_reference,
        coding_history: format!(
            "A=PCM,F={sample_rate},W={},M={mode},T=stemforge {}{float}; {what}; {}\r\n",
            d.bit_depth.bits(),
            env!("CARGO_PKG_VERSION"),
            d.profile
        ),
        ..Bext::default()
    }
}

/// A reference unique to this output and stable across runs (unlike a job
/// id): 32 hex digits of SHA-256 over the spec, title, variant and file name.
fn originator_reference(label: &OutputLabel<'_>) -> String {
    let mut h = Sha256::new();
    for part in [
        label.spec_sha256,
        label.title,
        label.variant,
        label.file_name,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..32].to_string()
}

/// The EBU R128 fields of the `bext`, from the measurement of the file.
pub fn bext_loudness(m: &Measurement) -> BextLoudness {
    BextLoudness {
        integrated_lufs: m.integrated_lufs,
        loudness_range_lu: m.loudness_range_lu,
        max_true_peak_dbtp: m.true_peak_dbtp,
        max_momentary_lufs: m.max_momentary_lufs,
        max_short_term_lufs: m.max_short_term_lufs,
    }
}
