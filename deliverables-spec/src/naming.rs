//! Output file names from the delivery's naming templates.

use crate::delivery::Delivery;
use crate::model::BitDepth;

pub const PLACEHOLDERS: [&str; 5] = ["title", "variant", "role", "rate", "bits"];

/// The most bytes one file name (one path component) may have: the limit
/// of the common file systems outputs are written to.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// How many bytes the temporary name an output is first written under
/// ([`partial_file_name`]) adds to its final name at most: a `.` before
/// it, then `.PID-SEQ.partial` with a `u32` process id (10 digits at most)
/// and a `u64` sequence number (20 digits at most).
pub const PARTIAL_NAME_EXTRA_BYTES: usize = 1 + 1 + 10 + 1 + 20 + ".partial".len();

/// The longest output file name a render can write: its temporary name
/// must fit [`MAX_FILE_NAME_BYTES`] too.
pub const MAX_OUTPUT_NAME_BYTES: usize = MAX_FILE_NAME_BYTES - PARTIAL_NAME_EXTRA_BYTES;

/// Stems are decoded at 8 kHz to 768 kHz; no rate there has a longer
/// [`rate_label`] than this one's (`767.999`: three digits either side of
/// the point). File names at the stems' own rate are measured with it.
pub const LONGEST_LABEL_STEM_RATE: u32 = 767_999;

/// The temporary name an output called `name` is written under before it
/// is renamed into place: hidden, and unique per process and write.
pub fn partial_file_name(name: &str, pid: u32, seq: u64) -> String {
    format!(".{name}.{pid}-{seq}.partial")
}

/// A name safe for file systems: letters, digits, `-`, `_`, `.`; spaces become `-`.
pub fn slug(s: &str) -> String {
    let out: String = s
        .trim()
        .chars()
        .map(|c| if c.is_whitespace() { '-' } else { c })
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    out.trim_matches('.').to_string()
}

/// `48000` → `48`, `44100` → `44.1`.
pub fn rate_label(rate: u32) -> String {
    if rate.is_multiple_of(1000) {
        (rate / 1000).to_string()
    } else {
        format!("{}", f64::from(rate) / 1000.0)
    }
}

/// Placeholders used in a template, and the first unknown one if any.
pub fn check_template(t: &str) -> Result<Vec<String>, String> {
    let mut used = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in `{t}`"))?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(name.to_string());
        }
        used.push(name.to_string());
        rest = &after[close + 1..];
    }
    Ok(used)
}

/// Fills a template. Unknown placeholders were rejected by validation.
pub fn fill(
    template: &str,
    title: &str,
    variant: &str,
    role: &str,
    rate: u32,
    bits: BitDepth,
) -> String {
    template
        .replace("{title}", &slug(title))
        .replace("{variant}", &slug(variant))
        .replace("{role}", role)
        .replace("{rate}", &rate_label(rate))
        .replace("{bits}", bits.label())
}

/// File name of a variant's mix.
pub fn mix_file_name(d: &Delivery, title: &str, variant: &str, rate: u32) -> String {
    fill(&d.naming, title, variant, "", rate, d.bit_depth)
}

/// File name of one processed stem of a variant (`stems` or a custom stems
/// variant), written at `bits` (re-mix stems are 32-bit float whatever the
/// delivery's depth).
pub fn stem_file_name(
    d: &Delivery,
    title: &str,
    variant: &str,
    role: &str,
    rate: u32,
    bits: BitDepth,
) -> String {
    fill(&d.stem_naming, title, variant, role, rate, bits)
}

/// File name of one group of a stems variant with `groups`: the stem
/// template with the group's name where the role goes. When the template
/// has no `{variant}`, the group's name is prefixed by the variant's
/// (`dme-dialogue`), so a group never takes the file name of another
/// variant's stem of the same name (a role has no `-`).
pub fn group_file_name(
    d: &Delivery,
    title: &str,
    variant: &str,
    group: &str,
    rate: u32,
    bits: BitDepth,
) -> String {
    let label = if d.stem_naming.contains("{variant}") {
        slug(group)
    } else {
        format!("{}-{}", slug(variant), slug(group))
    };
    fill(&d.stem_naming, title, variant, &label, rate, bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeliverySpec;

    #[test]
    fn default_names() {
        let d = Delivery::resolve(&DeliverySpec::default());
        assert_eq!(
            mix_file_name(&d, "Night Drive", "vocal_up", 48000),
            "Night-Drive_vocal_up_48k24.wav"
        );
        assert_eq!(
            stem_file_name(&d, "Night Drive", "stems", "bass", 44100, d.bit_depth),
            "Night-Drive_stem-bass_44.1k24.wav"
        );
    }

    #[test]
    fn group_names() {
        let d = Delivery::resolve(&DeliverySpec::default());
        assert_eq!(
            group_file_name(&d, "Reel 1", "dme", "dialogue", 48000, d.bit_depth),
            "Reel-1_stem-dme-dialogue_48k24.wav"
        );
        let d = Delivery::resolve(&DeliverySpec {
            stem_naming: Some("{title}_{variant}_{role}.wav".into()),
            ..DeliverySpec::default()
        });
        assert_eq!(
            group_file_name(&d, "Reel 1", "dme", "effects", 48000, d.bit_depth),
            "Reel-1_dme_effects.wav"
        );
    }

    #[test]
    fn name_length_bounds() {
        let name = "x_full_48k24.wav";
        assert_eq!(
            partial_file_name(name, u32::MAX, u64::MAX).len(),
            name.len() + PARTIAL_NAME_EXTRA_BYTES
        );
        assert_eq!(MAX_OUTPUT_NAME_BYTES, 214);
        let longest = rate_label(LONGEST_LABEL_STEM_RATE).len();
        assert_eq!(rate_label(LONGEST_LABEL_STEM_RATE), "767.999");
        assert!((8_000..=768_000).all(|r| rate_label(r).len() <= longest));
    }

    #[test]
    fn template_check() {
        assert_eq!(
            check_template("{title}_{varaint}.wav"),
            Err("varaint".into())
        );
        assert!(check_template("{title}_{variant}.wav").is_ok());
        assert!(check_template("{title").is_err());
        assert_eq!(slug("../etc/passwd"), "etcpasswd");
    }
}
