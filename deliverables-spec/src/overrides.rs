//! A selection from a spec, made on its text: `stemforge pack --title T
//! --variants a,b --profile P`. The result is an ordinary spec text (the
//! titles kept, the variants kept, the profile set), so the job submitted is
//! planned, hashed and rendered like any other and its manifest records
//! exactly what was delivered.
//!
//! The text is edited as a TOML document (`toml_edit`), not re-serialised
//! from a parsed table: comments, order and layout stay as the author wrote
//! them, so the submitted spec still reads like theirs and an error found
//! later points at a line they recognise.

use std::collections::BTreeSet;

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::delivery::PROFILES;
use crate::error::closest;
use crate::model::DeliverySpec;
use crate::variant::BUILTIN_VARIANTS;

/// What to keep and what to change; empty fields leave the spec as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Titles to keep, by name (empty: every title).
    pub titles: Vec<String>,
    /// Variants to keep, by name (empty: every variant the spec renders).
    pub variants: Vec<String>,
    /// The delivery profile to deliver to instead of the spec's.
    pub profile: Option<String>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.titles.is_empty() && self.variants.is_empty() && self.profile.is_none()
    }
}

/// Why a selection cannot be applied: each names the flag and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("the spec is not valid TOML, so nothing can be selected from it: {0}")]
    Toml(String),
    #[error("--title `{got}`: the spec has no title of that name ({hint})")]
    UnknownTitle { got: String, hint: String },
    #[error("--variants `{got}`: the spec renders no variant of that name ({hint})")]
    UnknownVariant { got: String, hint: String },
    #[error("--profile `{got}`: no delivery profile of that name ({hint})")]
    UnknownProfile { got: String, hint: String },
    #[error("`{field}` is not a table in the spec; fix the spec before selecting from it")]
    NotATable { field: &'static str },
    #[error("--title: the spec has no `[[titles]]` to select from; add a title to the spec")]
    NoTitles,
}

/// The spec text with only the selected titles and variants, delivered to
/// the selected profile. An empty selection returns the text unchanged
/// (same bytes, same hash). With `profile`, the loudness limits written
/// in `[delivery]` are removed too: the profile's own figures apply, which
/// is what asking for a profile means.
pub fn apply(text: &str, sel: &Selection) -> Result<String, SelectionError> {
    if sel.is_empty() {
        return Ok(text.to_string());
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| SelectionError::Toml(e.to_string()))?;
    if !sel.titles.is_empty() {
        keep_titles(&mut doc, &sel.titles)?;
    }
    if !sel.variants.is_empty() {
        keep_variants(&mut doc, &sel.variants)?;
    }
    if let Some(p) = &sel.profile {
        set_profile(&mut doc, p)?;
    }
    Ok(doc.to_string())
}

/// A title's name as written (`name = "…"`), from a `[[titles]]` table or
/// an inline one.
fn title_name(t: &dyn toml_edit::TableLike) -> Option<&str> {
    t.get("name").and_then(Item::as_str)
}

fn keep_titles(doc: &mut DocumentMut, wanted: &[String]) -> Result<(), SelectionError> {
    let item = doc.get_mut("titles").ok_or(SelectionError::NoTitles)?;
    let names: Vec<String> = match &*item {
        Item::ArrayOfTables(a) => a
            .iter()
            .filter_map(|t| title_name(t))
            .map(str::to_string)
            .collect(),
        Item::Value(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_inline_table)
            .filter_map(|t| title_name(t))
            .map(str::to_string)
            .collect(),
        _ => return Err(SelectionError::NoTitles),
    };
    // A title's name may itself hold a comma: a value is a name first, and
    // a comma-separated list of names only when it is not one.
    let mut chosen: Vec<&str> = Vec::new();
    for w in wanted {
        if names.iter().any(|n| n == w) {
            chosen.push(w);
            continue;
        }
        for part in w.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !names.iter().any(|n| n == part) {
                return Err(SelectionError::UnknownTitle {
                    got: part.to_string(),
                    hint: hint(part, names.iter().map(String::as_str)),
                });
            }
            chosen.push(part);
        }
    }
    let keep = |name: Option<&str>| name.is_some_and(|n| chosen.contains(&n));
    match item {
        Item::ArrayOfTables(a) => a.retain(|t| keep(title_name(t))),
        Item::Value(Value::Array(a)) => {
            a.retain(|v| keep(v.as_inline_table().and_then(|t| title_name(t))))
        }
        _ => return Err(SelectionError::NoTitles),
    }
    Ok(())
}

fn keep_variants(doc: &mut DocumentMut, wanted: &[String]) -> Result<(), SelectionError> {
    match doc.get_mut("variants") {
        // The spec lists its own: keep those asked for, as written.
        Some(item) => {
            let table = item
                .as_table_like_mut()
                .ok_or(SelectionError::NotATable { field: "variants" })?;
            let names: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
            check_variants(wanted, names.iter().map(String::as_str))?;
            let keys: Vec<String> = names
                .into_iter()
                .filter(|n| !wanted.iter().any(|w| w == n))
                .collect();
            for k in keys {
                table.remove(&k);
            }
        }
        // The built-in set applies: list the chosen ones, each on its
        // preset (an empty table).
        None => {
            check_variants(wanted, BUILTIN_VARIANTS)?;
            let mut t = Table::new();
            t.set_implicit(true);
            let chosen: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
            for name in chosen {
                t.insert(name, Item::Table(Table::new()));
            }
            doc.insert("variants", Item::Table(t));
        }
    }
    Ok(())
}

fn check_variants<'a>(
    wanted: &[String],
    known: impl IntoIterator<Item = &'a str> + Clone,
) -> Result<(), SelectionError> {
    for w in wanted {
        if !known.clone().into_iter().any(|k| k == w) {
            return Err(SelectionError::UnknownVariant {
                got: w.clone(),
                hint: hint(w, known),
            });
        }
    }
    Ok(())
}

fn set_profile(doc: &mut DocumentMut, profile: &str) -> Result<(), SelectionError> {
    let custom: Vec<String> = doc
        .get("profiles")
        .and_then(Item::as_table_like)
        .map(|t| t.iter().map(|(k, _)| k.to_string()).collect())
        .unwrap_or_default();
    let known = PROFILES
        .iter()
        .map(|p| p.name)
        .chain(custom.iter().map(String::as_str));
    if !known.clone().any(|k| k == profile) {
        return Err(SelectionError::UnknownProfile {
            got: profile.to_string(),
            hint: hint(profile, known),
        });
    }
    if doc.get("delivery").is_none() {
        doc.insert("delivery", Item::Table(Table::new()));
    }
    let delivery = doc
        .get_mut("delivery")
        .and_then(Item::as_table_like_mut)
        .ok_or(SelectionError::NotATable { field: "delivery" })?;
    for f in DeliverySpec::LIMIT_FIELDS {
        delivery.remove(f);
    }
    delivery.insert("profile", toml_edit::value(profile));
    Ok(())
}

/// "did you mean `x`?", else the names there are.
fn hint<'a>(got: &str, known: impl IntoIterator<Item = &'a str> + Clone) -> String {
    match closest(got, known.clone()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!(
            "the spec has: {}",
            known.into_iter().collect::<Vec<_>>().join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"schema_version = 1

# the delivery
[delivery]
profile = "ebu-r128"
target_lufs = -20.0
output_dir = "out"

[profiles.house]
base = "spotify"

[[titles]]
name = "Night Drive"
stems = [{ file = "a.wav", role = "drums" }]

[[titles]]
name = "Day Ride"
stems = [{ file = "b.wav", role = "bass" }]
"#;

    /// `apply` with titles, variants and a profile.
    fn select(
        text: &str,
        titles: &[&str],
        variants: &[&str],
        profile: Option<&str>,
    ) -> Result<String, SelectionError> {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        apply(
            text,
            &Selection {
                titles: owned(titles),
                variants: owned(variants),
                profile: profile.map(str::to_string),
            },
        )
    }

    fn parsed(text: &str) -> crate::model::Spec {
        toml::from_str(text).expect("a spec")
    }

    #[test]
    fn an_empty_selection_keeps_the_bytes() {
        assert_eq!(apply(SPEC, &Selection::default()).expect("ok"), SPEC);
    }

    #[test]
    fn titles_are_kept_by_name_and_comments_survive() {
        let out = select(SPEC, &["Day Ride"], &[], None).expect("ok");
        let s = parsed(&out);
        assert_eq!(s.titles.len(), 1);
        assert_eq!(s.titles[0].name, "Day Ride");
        assert!(out.contains("# the delivery"), "{out}");
    }

    #[test]
    fn a_title_value_is_a_name_first_then_a_list() {
        let text = SPEC.replace("Day Ride", "Love, Actually");
        let names = |out: &str| {
            parsed(out)
                .titles
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
        };
        let out = select(&text, &["Love, Actually"], &[], None).expect("ok");
        assert_eq!(names(&out), ["Love, Actually"]);
        let out = select(SPEC, &["Night Drive,Day Ride"], &[], None).expect("ok");
        assert_eq!(names(&out), ["Night Drive", "Day Ride"]);
        let e = select(SPEC, &["Night Drive, Dya Ride"], &[], None).expect_err("unknown");
        assert!(
            e.to_string()
                .starts_with("--title `Dya Ride`: the spec has no title of that name"),
            "{e}"
        );
    }

    #[test]
    fn a_misspelt_title_is_named_with_a_suggestion() {
        let e = select(SPEC, &["Night Drve"], &[], None).expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "--title `Night Drve`: the spec has no title of that name (did you mean `Night Drive`?)"
        );
    }

    #[test]
    fn default_variants_become_the_chosen_presets() {
        let out = select(SPEC, &[], &["instrumental", "full"], None).expect("ok");
        let s = parsed(&out);
        assert_eq!(
            s.variants.keys().map(String::as_str).collect::<Vec<_>>(),
            ["full", "instrumental"]
        );
        assert!(s.variants.values().all(|v| *v == Default::default()));
    }

    #[test]
    fn listed_variants_keep_their_settings() {
        let text = format!(
            "{SPEC}\n[variants.full]\n[variants.quiet]\ngains = {{ drums = -6.0 }}\n[variants.stems]\n"
        );
        let out = select(&text, &[], &["quiet"], None).expect("ok");
        let s = parsed(&out);
        assert_eq!(s.variants.len(), 1);
        assert!(out.contains("drums = -6.0"), "{out}");
        let e = select(&text, &[], &["instrumental"], None).expect_err("not listed");
        assert!(
            e.to_string()
                .starts_with("--variants `instrumental`: the spec renders no variant of that name"),
            "{e}"
        );
        let e = select(SPEC, &[], &["instrumentl"], None).expect_err("misspelt");
        assert!(
            e.to_string().contains("did you mean `instrumental`?"),
            "{e}"
        );
    }

    #[test]
    fn a_profile_replaces_the_delivery_limits() {
        let out = select(SPEC, &[], &[], Some("spotify")).expect("ok");
        let s = parsed(&out);
        assert_eq!(s.delivery.profile.as_deref(), Some("spotify"));
        assert_eq!(s.delivery.target_lufs, None);
        assert_eq!(s.delivery.output_dir.as_deref(), Some("out"));
        // A custom profile of the spec is a profile too.
        let out = select(SPEC, &[], &[], Some("house")).expect("ok");
        assert_eq!(parsed(&out).delivery.profile.as_deref(), Some("house"));
        let e = select(SPEC, &[], &[], Some("spotfy")).expect_err("unknown");
        assert!(e.to_string().contains("did you mean `spotify`?"), "{e}");
    }
}
