//! The deliverables spec: what a job must produce.
//!
//! Pure: no async runtime, no audio I/O (file metadata only, for fingerprints;
//! a `[catalog]` lists folders and reads its CSV index, as text).
//! `parse` reads TOML, `validate` checks meaning, `variant` resolves presets and
//! per-title graphs, `plan` builds the task DAG, `compliance` judges outputs.

pub mod catalog;
pub mod compliance;
pub mod contract;
pub mod delivery;
pub mod edit;
pub mod error;
pub mod files;
pub mod ingest;
pub mod live;
pub mod manifest;
pub mod model;
pub mod naming;
pub mod outputs;
pub mod overrides;
pub mod parse;
pub mod plan;
pub mod preflight;
pub mod scope;
pub mod timecode;
pub mod timestamp;
pub mod validate;
pub mod variant;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use delivery::Delivery;
pub use error::{SpecError, SpecErrors};
pub use model::{LevelPolicy, OutputKind, Role, Spec};
pub use plan::{Plan, PlannedTask, RunWhen, TaskKind};

/// A parsed, validated spec with what identifies it.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub spec: Spec,
    pub text: String,
    /// SHA-256 of the job's spec text: of `text`, or for a title loaded by
    /// [`load_scoped`], of the whole job's text it was cut from.
    pub sha256: String,
    /// Folder that relative paths in the spec are resolved against.
    pub base_dir: PathBuf,
    /// The delivery, resolved once when the spec is loaded: every stage
    /// reads this one value.
    delivery: Delivery,
    /// Titles its `[catalog]` left out under `on_error = "skip"`, with why.
    pub skipped: Vec<SpecError>,
}

impl LoadedSpec {
    /// The resolved delivery (profile, overrides, defaults).
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// Resolves a path written in the spec.
    pub fn path(&self, p: &str) -> PathBuf {
        files::resolve(&self.base_dir, p)
    }

    pub fn title(&self, name: &str) -> Option<&model::Title> {
        self.spec.titles.iter().find(|t| t.name == name)
    }

    pub fn variant(&self, name: &str) -> Option<variant::Variant> {
        self.spec
            .variants
            .get(name)
            .map(|v| variant::resolve_variant(name, v, &self.spec.graph))
    }
}

/// Parses and validates spec text (no file access).
pub fn parse_and_validate(text: &str, file: Option<&Path>) -> Result<Spec, SpecErrors> {
    parse_and_validate_in(text, file, validate::Scope::Job)
}

fn parse_and_validate_in(
    text: &str,
    file: Option<&Path>,
    scope: validate::Scope,
) -> Result<Spec, SpecErrors> {
    let spec = parse::parse_spec(text, file)?;
    let errors = validate::validate_in(&spec, scope);
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(SpecErrors {
            file: file.map(Path::to_path_buf),
            errors,
        })
    }
}

/// Parses and validates spec text whose relative paths live under `base_dir`.
pub fn load_text(
    text: String,
    base_dir: &Path,
    file: Option<&Path>,
) -> Result<LoadedSpec, SpecErrors> {
    // A title's cutdowns become titles of their own here, once: the
    // expanded text is the spec that is hashed, planned and cut per title.
    let text = edit::expand(&text, base_dir, file, &files::MediaRoots::new(&[]))?.unwrap_or(text);
    let spec = parse_and_validate(&text, file)?;
    Ok(LoadedSpec {
        sha256: plan::spec_hash(&text),
        delivery: Delivery::of(&spec),
        spec,
        text,
        base_dir: base_dir.to_path_buf(),
        skipped: Vec::new(),
    })
}

/// Parses and validates the text of one title scoped from a job's spec
/// ([`scope::ScopedSpec::title_text`]) and identifies it by the job's hash:
/// the hash seeds dither and labels outputs, so the title renders exactly as
/// from the job's whole text. The text must hold exactly one title; checks
/// across titles were made on the whole spec ([`validate::Scope::Title`]).
pub fn load_scoped(
    text: String,
    base_dir: &Path,
    job_sha256: &str,
) -> Result<LoadedSpec, SpecErrors> {
    let spec = parse_and_validate_in(&text, None, validate::Scope::Title)?;
    if spec.titles.len() != 1 {
        return Err(SpecErrors::one(
            None,
            SpecError::new(
                "titles",
                format!("a title's scoped text holds {} titles", spec.titles.len()),
            )
            .hint("send one text of scope::split_titles per title"),
        ));
    }
    Ok(LoadedSpec {
        sha256: job_sha256.to_string(),
        delivery: Delivery::of(&spec),
        spec,
        text,
        base_dir: base_dir.to_path_buf(),
        skipped: Vec::new(),
    })
}

/// Reads, parses and validates a spec file. A `[catalog]` is expanded here,
/// once ([`catalog::expand`]): the loaded text, its hash and everything
/// planned from it are those of the expanded spec.
pub fn load_file(path: &Path) -> Result<LoadedSpec, SpecErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SpecErrors::one(
            Some(path.to_path_buf()),
            SpecError::new("", format!("cannot read the spec file: {e}"))
                .hint("check the path given on the command line"),
        )
    })?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    match catalog::expand(&text, &base, Some(path))? {
        None => load_text(text, &base, Some(path)),
        Some(expanded) => {
            let mut loaded = load_text(expanded.text, &base, Some(path))?;
            loaded.skipped = expanded.skipped;
            Ok(loaded)
        }
    }
}

/// Checks the spec's input files (present, readable, under `media_roots`
/// when any are configured) and plans the job.
pub fn plan_job(
    loaded: &LoadedSpec,
    tool_version: &str,
    media_roots: &[PathBuf],
) -> Result<Plan, SpecErrors> {
    let roots = files::MediaRoots::new(media_roots);
    let fingerprints: BTreeMap<String, String> =
        files::check_files(&loaded.spec, &loaded.base_dir, &roots)
            .map_err(|errors| SpecErrors { file: None, errors })?;
    Ok(plan::plan(
        &loaded.spec,
        &loaded.sha256,
        &fingerprints,
        tool_version,
    ))
}
