//! TOML text → [`Spec`], with errors that name the field path, the line and the fix.

use std::path::Path;

use crate::error::{SpecError, SpecErrors, did_you_mean};
use crate::model::{Role, SCHEMA_VERSION, Spec};

/// Parses spec text. `file` only labels errors.
pub fn parse_spec(text: &str, file: Option<&Path>) -> Result<Spec, SpecErrors> {
    let fail = |e: SpecError| SpecErrors::one(file.map(Path::to_path_buf), e);

    // Check the schema version first, so an old or future file gets that
    // message rather than a confusing field error.
    let table: toml::Table = toml::from_str(text).map_err(|e| fail(from_toml_error(&e, text)))?;
    match table.get("schema_version") {
        None => {
            return Err(fail(SpecError::new("schema_version", "missing").hint(
                format!("add `schema_version = {SCHEMA_VERSION}` at the top"),
            )));
        }
        Some(toml::Value::Integer(v)) if *v == i64::from(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(fail(
                SpecError::new(
                    "schema_version",
                    format!("version {other} is not supported by this build"),
                )
                .hint(format!(
                    "this build reads schema_version = {SCHEMA_VERSION}"
                )),
            ));
        }
    }

    // A catalog is expanded where the spec's folder is known, when the file
    // is loaded; text that still holds one did not come through there.
    if table.contains_key("catalog") {
        return Err(fail(
            SpecError::new("catalog", "is expanded when the spec is read from its file")
                .hint("load the spec with its file (`stemforge validate/render/submit SPEC`), which replaces `[catalog]` by its titles"),
        ));
    }
    let de = toml::Deserializer::parse(text).map_err(|e| fail(from_toml_error(&e, text)))?;
    serde_path_to_error::deserialize::<_, Spec>(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let mut err = from_toml_error(&inner, text);
        err.field = clean_path(&field);
        fail(err)
    })
}

/// Turns a toml/serde message into a field error with a hint for misspellings.
pub(crate) fn from_toml_error(e: &toml::de::Error, text: &str) -> SpecError {
    let message = e.message().trim().to_string();
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let mut err = SpecError::new(String::new(), message.clone());
    err.line = line;

    // serde's wording: "unknown field `x`, expected one of `a`, `b`" /
    // "unknown variant `x`, expected one of ..." / "expected `a` or `b`".
    if let Some(got) = backticked(&message, "unknown field `")
        .or_else(|| backticked(&message, "unknown variant `"))
    {
        let expected: Vec<String> = message
            .split_once("expected")
            .map(|(_, rest)| {
                rest.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let kind = if message.starts_with("unknown field") {
            "unknown key"
        } else {
            "unknown value"
        };
        err.message = format!("{kind} `{got}`");
        if !expected.is_empty() {
            err.hint = Some(did_you_mean(&got, expected.iter().map(String::as_str)));
        }
    } else if message.contains("bit depth") {
        err.message = message.clone();
    }
    // Role names appear as map keys too (graph.roles.<role>): same hint.
    if err.hint.is_none() && message.contains("unknown variant") {
        err.hint = Some(format!(
            "roles are: {}",
            Role::ALL.map(Role::as_str).join(", ")
        ));
    }
    err
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.split_once(prefix)?.1;
    Some(rest.split('`').next()?.to_string())
}

/// serde_path_to_error writes `titles[0].stems[1].role`; keep that, minus a leading dot.
pub(crate) fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.trim_start_matches('.').to_string()
    }
}
