//! Errors a person can act on: the file, the field path, what is wrong, and the fix.

use std::fmt;
use std::path::PathBuf;

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    /// Dotted field path, e.g. `titles[0].stems[2].role`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it, e.g. "did you mean `vocals`?".
    pub hint: Option<String>,
    /// 1-based line in the spec file, when known.
    pub line: Option<usize>,
}

impl SpecError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            field: field.into(),
            message: message.into(),
            hint: None,
            line: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.field, self.message)?;
        }
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

/// Every problem found in one spec file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct SpecErrors {
    pub file: Option<PathBuf>,
    pub errors: Vec<SpecError>,
}

impl SpecErrors {
    pub fn one(file: Option<PathBuf>, e: SpecError) -> Self {
        SpecErrors {
            file,
            errors: vec![e],
        }
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "spec".to_string());
        let n = self.errors.len();
        write!(
            f,
            "{file}: {n} problem{} in the deliverables spec",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

/// The closest candidate to a misspelt name, if it is close enough to be a likely typo.
pub fn closest<'a>(got: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let got_l = got.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&got_l, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) || c.starts_with(&got_l) || got_l.starts_with(c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub(crate) fn did_you_mean<'a>(
    got: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
) -> String {
    match closest(got, candidates.clone()) {
        Some(c) => format!("did you mean `{c}`?"),
        None => format!(
            "expected one of: {}",
            candidates.into_iter().collect::<Vec<_>>().join(", ")
        ),
    }
}
