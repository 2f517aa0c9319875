//! Output file names from the delivery's naming templates.

use crate::delivery::Delivery;
use crate::model::BitDepth;

pub const PLACEHOLDERS: [&str; 5] = ["title", "variant", "role", "rate", "bits"];

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
