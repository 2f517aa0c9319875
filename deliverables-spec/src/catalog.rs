//! `[catalog]`: titles taken from folders of stems and from a CSV index
//! instead of written one by one.
//!
//! ```toml
//! [catalog]
//! folders = ["incoming/*"]      # globs, relative to the spec's folder: each directory is a title
//! exclude = ["incoming/_old*"]  # folder globs left out
//! index = "catalog.csv"         # a CSV index, one row per title
//! on_error = "stop"             # or "skip": leave out titles with findings, keep the rest
//! [catalog.titles."Night Drive"]
//! roles = { "07_Perc.wav" = "drums" }
//! reference = "NightDrive_print_v2.wav"
//! layout = "5.1"
//! variants = ["full", "instrumental"]
//! exclude = ["old_take.wav"]
//! ```
//!
//! The rules:
//! - Expansion happens once, when the spec is read from its file
//!   ([`crate::load_file`]): the `[catalog]` table is replaced by one
//!   `[[titles]]` table per title, and that text is what is hashed, planned,
//!   submitted and cut per title. A spec text that still holds `[catalog]`
//!   is refused by the parser.
//! - A title's name is its folder's name (or the index's `title` column).
//!   Hidden folders are not matched by a glob's `*`. A title's files are its
//!   folder's own files, sorted (sub-folders and hidden files are not read); roles and the reference mix come from the file
//!   names by [`crate::ingest::classify`], the one rule set `check DIR` uses.
//! - Nothing is guessed: a name that names no role, a name that is both a
//!   stem's and a mix's, two candidate reference mixes, a file that is not
//!   audio, a folder with no audio, a title name used twice and a folder
//!   taken twice are each a finding naming the folder, the file and the fix.
//!   Every finding is reported at once. By default any finding stops the
//!   load; with `on_error = "skip"` a title with findings is left out
//!   (listed in [`Expanded::skipped`] and as comments atop the expanded
//!   text) while findings about the catalog itself still stop it.
//! - Deterministic: folders are sorted by path and titles come in that
//!   order, then the index's rows in file order, after any `[[titles]]`
//!   written by hand. Work is linear in the number of folders and files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use crate::delivery::DEFAULT_PROFILE;
use crate::error::{SpecError, SpecErrors, closest, did_you_mean};
use crate::ingest::{NameKind, classify};
use crate::model::{Layout, Role};

/// File extensions taken as audio in a folder of stems.
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "bwf", "wave", "aif", "aiff", "aifc", "flac"];

/// Whether a file name has an audio extension (any case).
pub fn is_audio_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The `[catalog]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    /// Globs relative to the spec's folder; every directory matched is a title.
    #[serde(default)]
    pub folders: Vec<String>,
    /// Globs of folders to leave out, relative to the spec's folder.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A CSV index, relative to the spec's folder.
    #[serde(default)]
    pub index: Option<String>,
    #[serde(default)]
    pub on_error: OnError,
    /// Per-title settings, by title name.
    #[serde(default)]
    pub titles: BTreeMap<String, TitleOverride>,
}

/// What a title with findings does to the load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Any finding stops the load (nothing is submitted).
    #[default]
    Stop,
    /// A title with findings is left out; the others are kept.
    Skip,
}

/// One title's settings over what its file names say.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TitleOverride {
    /// A file's role, by its name in the folder.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// The reference mix, by its name in the folder.
    #[serde(default)]
    pub reference: Option<String>,
    #[serde(default)]
    pub layout: Option<Layout>,
    /// The spec's variants this title renders.
    #[serde(default)]
    pub variants: Option<Vec<String>>,
    /// Files of the folder that are not part of the title.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// A spec text with its catalog expanded.
#[derive(Debug, Clone)]
pub struct Expanded {
    /// The spec text with `[catalog]` replaced by `[[titles]]` tables.
    pub text: String,
    /// Findings of the titles left out under `on_error = "skip"`.
    pub skipped: Vec<SpecError>,
}

#[derive(Deserialize)]
struct Holder {
    #[serde(default)]
    catalog: Option<CatalogSpec>,
}

/// Where a title came from, for messages and fixes.
#[derive(Debug, Clone)]
enum Origin {
    Folder,
    Index { csv: String, line: u64 },
}

/// A title before its files are placed.
#[derive(Debug, Clone)]
struct Candidate {
    name: String,
    origin: Origin,
    /// Folder its files are relative to, relative to the spec's folder
    /// (empty: the spec's folder).
    dir: String,
    /// The title's folder as shown in messages.
    shown: String,
    /// Files relative to `dir`, sorted (listed from the folder), or as the
    /// index lists them.
    files: Vec<String>,
    /// Whether `files` were listed from the folder (else the index named them).
    from_folder: bool,
    settings: TitleOverride,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || Path::new(name).is_absolute() {
        name.to_string()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

/// A string as a TOML basic string, for fixes the user can paste.
fn quoted(s: &str) -> String {
    Value::from(s).to_string().trim().to_string()
}

/// Expands the `[catalog]` of spec text whose paths are relative to `base`.
/// `Ok(None)`: the text has no catalog (or is not TOML: the parser reports that).
pub fn expand(
    text: &str,
    base: &Path,
    file: Option<&Path>,
) -> Result<Option<Expanded>, SpecErrors> {
    if !text.contains("catalog") {
        return Ok(None);
    }
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return Ok(None);
    };
    if !doc.contains_key("catalog") {
        return Ok(None);
    }
    let fail = |errors: Vec<SpecError>| SpecErrors {
        file: file.map(Path::to_path_buf),
        errors,
    };
    let catalog = read_catalog(text).map_err(|e| fail(vec![e]))?;
    let mut errs = Vec::new();
    let job_profile = doc
        .get("delivery")
        .and_then(|d| d.get("profile"))
        .and_then(Item::as_str)
        .unwrap_or(DEFAULT_PROFILE)
        .to_string();
    let written: Vec<String> = written_title_names(&doc);

    let mut candidates = folder_candidates(&catalog, base, &mut errs);
    if let Some(index) = &catalog.index {
        candidates.extend(index_candidates(index, base, &job_profile, &mut errs));
    }
    if catalog.folders.is_empty() && catalog.index.is_none() {
        errs.push(
            SpecError::new("catalog", "takes titles from nowhere")
                .hint("add `folders = [\"incoming/*\"]` or `index = \"catalog.csv\"`"),
        );
    }
    let mut candidates = check_unique(candidates, &written, base, &mut errs);
    apply_overrides(&catalog, &mut candidates, &mut errs);

    let mut titles = Vec::with_capacity(candidates.len());
    let mut skipped = Vec::new();
    for c in &candidates {
        match resolve(c, base) {
            Ok(t) => titles.push(t),
            Err(found) if catalog.on_error == OnError::Skip => skipped.extend(found),
            Err(found) => errs.extend(found),
        }
    }
    if titles.is_empty() && written.is_empty() && errs.is_empty() {
        errs.push(
            SpecError::new("catalog", "gives no title: every title has findings")
                .hint("fix the findings listed as left out, or set `on_error = \"stop\"` to see them as errors"),
        );
        errs.append(&mut skipped);
    }
    if !errs.is_empty() {
        return Err(fail(errs));
    }
    doc.remove("catalog");
    append_titles(&mut doc, titles).map_err(|e| fail(vec![e]))?;
    let mut out = String::new();
    if !skipped.is_empty() {
        out.push_str("# titles left out of the catalog (on_error = \"skip\"):\n");
        for s in &skipped {
            for line in s.to_string().lines() {
                out.push_str("#   ");
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.push_str(&doc.to_string());
    Ok(Some(Expanded { text: out, skipped }))
}

fn read_catalog(text: &str) -> Result<CatalogSpec, SpecError> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| crate::parse::from_toml_error(&e, text))?;
    serde_path_to_error::deserialize::<_, Holder>(de)
        .map(|h| h.catalog.unwrap_or_default())
        .map_err(|e| {
            let field = e.path().to_string();
            let mut err = crate::parse::from_toml_error(&e.into_inner(), text);
            err.field = crate::parse::clean_path(&field);
            err
        })
}

fn written_title_names(doc: &DocumentMut) -> Vec<String> {
    let name =
        |t: &dyn toml_edit::TableLike| t.get("name").and_then(Item::as_str).map(str::to_string);
    match doc.get("titles") {
        Some(Item::ArrayOfTables(a)) => a.iter().filter_map(|t| name(t)).collect(),
        Some(Item::Value(Value::Array(a))) => a
            .iter()
            .filter_map(Value::as_inline_table)
            .filter_map(|t| name(t))
            .collect(),
        _ => Vec::new(),
    }
}

/// `base` as a glob prefix (its own `*`, `[`, `?` taken literally).
fn glob_in(base: &Path, pattern: &str) -> Option<String> {
    if Path::new(pattern).is_absolute() {
        return Some(pattern.to_string());
    }
    let b = base.to_str()?;
    Some(format!("{}/{pattern}", glob::Pattern::escape(b)))
}

/// A path under `base` as written in the expanded spec: relative to `base`
/// when it is under it, else as it is.
fn relative(base: &Path, p: &Path) -> Option<String> {
    p.strip_prefix(base)
        .unwrap_or(p)
        .to_str()
        .map(str::to_string)
}

fn folder_candidates(cat: &CatalogSpec, base: &Path, errs: &mut Vec<SpecError>) -> Vec<Candidate> {
    let mut excluded = Vec::new();
    for (i, x) in cat.exclude.iter().enumerate() {
        match glob::Pattern::new(x) {
            Ok(p) => excluded.push(p),
            Err(e) => errs.push(
                SpecError::new(
                    format!("catalog.exclude[{i}]"),
                    format!("`{x}` is not a glob: {e}"),
                )
                .hint("write a glob like \"incoming/_old*\""),
            ),
        }
    }
    let mut dirs: Vec<(String, usize)> = Vec::new();
    for (i, pattern) in cat.folders.iter().enumerate() {
        let field = format!("catalog.folders[{i}]");
        let Some(full) = glob_in(base, pattern) else {
            errs.push(
                SpecError::new(field, "the spec's folder is not a UTF-8 path")
                    .hint("move the spec to a folder whose path is UTF-8"),
            );
            continue;
        };
        // `*` does not match a leading dot: hidden folders are not titles.
        let options = glob::MatchOptions {
            require_literal_leading_dot: true,
            ..glob::MatchOptions::new()
        };
        let paths = match glob::glob_with(&full, options) {
            Ok(p) => p,
            Err(e) => {
                errs.push(
                    SpecError::new(field, format!("`{pattern}` is not a glob: {e}"))
                        .hint("write a glob like \"incoming/*\", relative to the spec's folder"),
                );
                continue;
            }
        };
        let before = dirs.len();
        for entry in paths {
            let path = match entry {
                Ok(p) => p,
                Err(e) => {
                    errs.push(
                        SpecError::new(
                            field.clone(),
                            format!("cannot read '{}': {}", e.path().display(), e.error()),
                        )
                        .hint("check the folder's permissions"),
                    );
                    continue;
                }
            };
            if !path.is_dir() {
                continue;
            }
            let Some(rel) = relative(base, &path) else {
                errs.push(
                    SpecError::new(
                        field.clone(),
                        format!("'{}' is not a UTF-8 path", path.display()),
                    )
                    .hint("rename the folder"),
                );
                continue;
            };
            // A relative exclude names the folder as the spec does, an
            // absolute one as the glob found it.
            if excluded
                .iter()
                .any(|x| x.matches(&rel) || x.matches_path(&path))
            {
                continue;
            }
            dirs.push((rel, i));
        }
        if dirs.len() == before {
            errs.push(
                SpecError::new(field, format!("`{pattern}` matches no folder"))
                    .hint("globs are relative to the spec's folder; check the path"),
            );
        }
    }
    dirs.sort();
    let mut out = Vec::with_capacity(dirs.len());
    for (rel, _) in dirs {
        // The spec's own folder (`folders = ["."]`) is named as it is on disk.
        let name = std::fs::canonicalize(base.join(&rel))
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .unwrap_or_else(|| rel.clone());
        match list_folder(&base.join(&rel)) {
            Ok(files) => out.push(Candidate {
                name,
                origin: Origin::Folder,
                shown: if rel.is_empty() {
                    ".".into()
                } else {
                    rel.clone()
                },
                dir: rel,
                files,
                from_folder: true,
                settings: TitleOverride::default(),
            }),
            Err(e) => errs.push(
                SpecError::new(
                    format!("catalog.titles.{}", quoted(&name)),
                    format!("cannot list '{rel}': {e}"),
                )
                .hint("check the folder's permissions"),
            ),
        }
    }
    out
}

/// A folder's own files, sorted; hidden files and sub-folders are not read.
fn list_folder(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.path().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The index's columns.
pub const INDEX_COLUMNS: &[&str] = &[
    "title",
    "folder",
    "files",
    "roles",
    "reference",
    "variants",
    "profile",
    "layout",
    "exclude",
];

/// Splits a `;`-separated cell into its non-empty items.
fn items(cell: &str) -> Vec<String> {
    cell.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn index_candidates(
    index: &str,
    base: &Path,
    job_profile: &str,
    errs: &mut Vec<SpecError>,
) -> Vec<Candidate> {
    let path = crate::files::resolve(base, index);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            errs.push(
                SpecError::new(
                    "catalog.index",
                    format!("cannot read '{}': {e}", path.display()),
                )
                .hint("give the CSV's path relative to the spec's folder"),
            );
            return Vec::new();
        }
    };
    let csv_dir = Path::new(index)
        .parent()
        .and_then(Path::to_str)
        .unwrap_or("")
        .to_string();
    let (rows, found) = parse_index(&bytes, index, &csv_dir, job_profile);
    errs.extend(found);
    let mut out = Vec::with_capacity(rows.len());
    for mut c in rows {
        if c.from_folder {
            match list_folder(&base.join(&c.dir)) {
                Ok(files) => c.files = files,
                Err(e) => {
                    errs.push(
                        SpecError::new(
                            index_field(&c.origin),
                            format!("cannot list the folder '{}': {e}", c.shown),
                        )
                        .hint("give the folder's path relative to the CSV's folder"),
                    );
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

fn index_field(origin: &Origin) -> String {
    match origin {
        Origin::Index { csv, line } => format!("catalog.index ({csv} line {line})"),
        Origin::Folder => "catalog.folders".to_string(),
    }
}

/// Reads an index: one candidate per row (folders not yet listed), and
/// every problem found, each naming the CSV's line and column.
fn parse_index(
    bytes: &[u8],
    csv: &str,
    csv_dir: &str,
    job_profile: &str,
) -> (Vec<Candidate>, Vec<SpecError>) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut errs = Vec::new();
    let at = |line: u64| format!("catalog.index ({csv} line {line})");
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|c| c.to_ascii_lowercase()).collect(),
        Err(e) => {
            errs.push(csv_error(&e, csv));
            return (Vec::new(), errs);
        }
    };
    let mut col: HashMap<&str, usize> = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        match INDEX_COLUMNS.iter().find(|c| **c == h) {
            Some(c) if col.contains_key(c) => errs.push(
                SpecError::new(at(1), format!("column `{h}` appears twice"))
                    .hint("keep one column of each name"),
            ),
            Some(c) => {
                col.insert(c, i);
            }
            None => errs.push(
                SpecError::new(at(1), format!("unknown column `{h}` (column {})", i + 1))
                    .hint(did_you_mean(h, INDEX_COLUMNS.iter().copied())),
            ),
        }
    }
    if !col.contains_key("folder") && !col.contains_key("files") {
        errs.push(
            SpecError::new(
                at(1),
                "the header has neither a `folder` nor a `files` column",
            )
            .hint(format!(
                "the first row names the columns: {}; each row needs a folder or files",
                INDEX_COLUMNS.join(", ")
            )),
        );
    }
    if !errs.is_empty() {
        return (Vec::new(), errs);
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errs.push(csv_error(&e, csv));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let cell = |name: &str| col.get(name).and_then(|&i| record.get(i)).unwrap_or("");
        if record.iter().all(str::is_empty) {
            continue;
        }
        let field = at(line);
        let mut bad = |column: &str, message: String, hint: String| {
            errs.push(
                SpecError::new(field.clone(), format!("column `{column}`: {message}")).hint(hint),
            );
        };
        let folder = cell("folder");
        let files = items(cell("files"));
        if folder.is_empty() && files.is_empty() {
            bad(
                "folder",
                "empty, and so is `files`".into(),
                "give the title's folder (its files are read from it) or its files, `;`-separated"
                    .into(),
            );
            continue;
        }
        let dir = if folder.is_empty() {
            csv_dir.to_string()
        } else {
            join(csv_dir, folder.trim_end_matches('/'))
        };
        let name = match cell("title") {
            "" => match Path::new(folder.trim_end_matches('/'))
                .file_name()
                .and_then(|n| n.to_str())
            {
                Some(n) => n.to_string(),
                None => {
                    bad(
                        "title",
                        "empty, and no folder names the title".into(),
                        "give the title's name".into(),
                    );
                    continue;
                }
            },
            t => t.to_string(),
        };
        let mut settings = TitleOverride {
            reference: Some(cell("reference").to_string()).filter(|r| !r.is_empty()),
            exclude: items(cell("exclude")),
            ..TitleOverride::default()
        };
        let variants = items(cell("variants"));
        if !variants.is_empty() {
            settings.variants = Some(variants);
        }
        for pair in items(cell("roles")) {
            let Some((file, role)) = pair.rsplit_once('=') else {
                bad(
                    "roles",
                    format!("`{pair}` has no role"),
                    format!("write it as `{pair}=drums`, pairs separated by `;`"),
                );
                continue;
            };
            let (file, role) = (file.trim(), role.trim());
            match Role::parse(&role.to_ascii_lowercase()) {
                Some(r) => {
                    settings.roles.insert(file.to_string(), r);
                }
                None => bad(
                    "roles",
                    format!("`{role}` (for `{file}`) is not a role"),
                    did_you_mean(role, Role::ALL.map(Role::as_str)),
                ),
            }
        }
        match cell("layout") {
            "" => {}
            "stereo" => settings.layout = Some(Layout::Stereo),
            "5.1" => settings.layout = Some(Layout::Surround51),
            other => bad(
                "layout",
                format!("`{other}` is not a layout"),
                "use `stereo` or `5.1`".into(),
            ),
        }
        match cell("profile") {
            "" => {}
            p if p == job_profile => {}
            p => bad(
                "profile",
                format!("`{p}` differs from the job's delivery profile `{job_profile}`"),
                format!(
                    "a job delivers to one profile: split the index by profile, one spec per profile with `[delivery] profile = {}`, or leave the column empty",
                    quoted(p)
                ),
            ),
        }
        out.push(Candidate {
            name,
            origin: Origin::Index {
                csv: csv.to_string(),
                line,
            },
            shown: if folder.is_empty() {
                format!("{csv} line {line}")
            } else {
                dir.clone()
            },
            dir,
            from_folder: files.is_empty(),
            files,
            settings,
        });
    }
    (out, errs)
}

fn csv_error(e: &csv::Error, csv: &str) -> SpecError {
    let line = e.position().map_or(0, |p| p.line());
    let field = format!("catalog.index ({csv} line {line})");
    match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => SpecError::new(
            field,
            format!("{len} fields where the header has {expected_len}"),
        )
        .hint("quote a field that holds a comma (\"Song, The\"), or add the missing fields"),
        csv::ErrorKind::Utf8 { .. } => {
            SpecError::new(field, "is not UTF-8 text").hint("save the index as UTF-8 CSV")
        }
        _ => SpecError::new(field, format!("cannot read the CSV: {e}"))
            .hint("check the file is comma-separated text with a header row"),
    }
}

/// A title name is used once, a folder is taken once: the second use of
/// either is a finding naming both, and the second candidate is dropped
/// (its files would only repeat the first's findings).
fn check_unique(
    candidates: Vec<Candidate>,
    written: &[String],
    base: &Path,
    errs: &mut Vec<SpecError>,
) -> Vec<Candidate> {
    let mut names: HashMap<String, String> = written
        .iter()
        .map(|n| (n.clone(), "a [[titles]] table".to_string()))
        .collect();
    let mut folders: HashMap<PathBuf, String> = HashMap::new();
    let mut out = Vec::with_capacity(candidates.len());
    for c in candidates {
        let here = match &c.origin {
            Origin::Folder => format!("folder '{}'", c.shown),
            Origin::Index { csv, line } => format!("{csv} line {line}"),
        };
        if c.from_folder {
            let dir = base.join(&c.dir);
            let key = std::fs::canonicalize(&dir).unwrap_or(dir);
            if let Some(first) = folders.get(&key) {
                errs.push(
                    SpecError::new(
                        index_field(&c.origin),
                        format!(
                            "folder '{}' is taken twice: by {first} and by {here}",
                            c.shown
                        ),
                    )
                    .hint("narrow the globs, or remove the index row, so each folder is one title"),
                );
                continue;
            }
            folders.insert(key, here.clone());
        }
        if let Some(first) = names.get(&c.name) {
            errs.push(
                SpecError::new(
                    format!("catalog.titles.{}", quoted(&c.name)),
                    format!(
                        "title name `{}` is used twice: by {first} and by {here}",
                        c.name
                    ),
                )
                .hint("rename one of the folders, or set the index's `title` column"),
            );
            continue;
        }
        names.insert(c.name.clone(), here);
        out.push(c);
    }
    out
}

/// `[catalog.titles."X"]` applies to the title named X, over its index
/// row's columns; a name that is no title's is a finding.
fn apply_overrides(cat: &CatalogSpec, candidates: &mut [Candidate], errs: &mut Vec<SpecError>) {
    let by_name: HashMap<String, usize> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    for (name, o) in &cat.titles {
        let Some(&i) = by_name.get(name) else {
            errs.push(
                SpecError::new(
                    format!("catalog.titles.{}", quoted(name)),
                    "no folder or index row gives a title of this name",
                )
                .hint(
                    match closest(name, candidates.iter().map(|c| c.name.as_str())) {
                        Some(c) => format!("did you mean {}?", quoted(c)),
                        None => {
                            "a title's name is its folder's name, or the index's `title`".into()
                        }
                    },
                ),
            );
            continue;
        };
        let s = &mut candidates[i].settings;
        s.roles.extend(o.roles.clone());
        s.exclude.extend(o.exclude.iter().cloned());
        if o.reference.is_some() {
            s.reference.clone_from(&o.reference);
        }
        if o.layout.is_some() {
            s.layout = o.layout;
        }
        if o.variants.is_some() {
            s.variants.clone_from(&o.variants);
        }
    }
}

/// A title placed from its files: each stem with its role, and the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub name: String,
    pub stems: Vec<(String, Role)>,
    pub reference: Option<String>,
    pub layout: Layout,
    pub variants: Option<Vec<String>>,
}

/// Where the fix for a title goes.
fn fix_for(c: &Candidate, toml: &str, csv_cell: &str) -> String {
    let table = format!("[catalog.titles.{}] {toml}", quoted(&c.name));
    match &c.origin {
        Origin::Folder => format!("add `{table}`"),
        Origin::Index { csv, line } => {
            format!("set {csv_cell} on {csv} line {line}, or add `{table}`")
        }
    }
}

fn resolve(c: &Candidate, base: &Path) -> Result<Placed, Vec<SpecError>> {
    let field = match &c.origin {
        Origin::Folder => format!("catalog.titles.{}", quoted(&c.name)),
        Origin::Index { .. } => index_field(&c.origin),
    };
    let mut found = Vec::new();
    let problem =
        |found: &mut Vec<SpecError>, file: Option<&str>, message: String, hint: String| {
            let what = match file {
                Some(f) => format!("'{}': {message}", join(&c.shown, f)),
                None => format!("'{}': {message}", c.shown),
            };
            found.push(SpecError::new(field.clone(), what).hint(hint));
        };
    let s = &c.settings;
    let name_of = |f: &str| {
        Path::new(f)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(f)
            .to_string()
    };
    let roles_list = Role::ALL.map(Role::as_str).join(", ");
    for (listed, what) in s
        .roles
        .keys()
        .map(|k| (k, "roles"))
        .chain(s.exclude.iter().map(|k| (k, "exclude")))
    {
        if !c.files.contains(listed) {
            let near = closest(listed, c.files.iter().map(String::as_str))
                .map_or(String::new(), |n| format!(" (did you mean {}?)", quoted(n)));
            problem(
                &mut found,
                None,
                format!(
                    "`{what}` names {}, which is not one of the title's files",
                    quoted(listed)
                ),
                format!("name a file of the title{near}"),
            );
        }
    }
    let mut stems = Vec::new();
    let mut candidates_ref = Vec::new();
    for f in &c.files {
        if s.exclude.contains(f) || s.reference.as_deref() == Some(f.as_str()) {
            continue;
        }
        if !c.from_folder && !base.join(join(&c.dir, f)).is_file() {
            problem(
                &mut found,
                Some(f),
                "not found".into(),
                "list files relative to the CSV's folder (or to the row's folder)".into(),
            );
            continue;
        }
        if let Some(r) = s.roles.get(f) {
            stems.push((f.clone(), *r));
            continue;
        }
        let name = name_of(f);
        if !is_audio_name(&name) {
            problem(
                &mut found,
                Some(f),
                "not an audio file".into(),
                format!(
                    "{} ({} are read)",
                    fix_for(
                        c,
                        &format!("exclude = [{}]", quoted(f)),
                        &format!("`exclude` to `{f}`")
                    ),
                    AUDIO_EXTENSIONS.join(", ")
                ),
            );
            continue;
        }
        match classify(&name) {
            NameKind::Stem(r) => stems.push((f.clone(), r)),
            NameKind::Reference => candidates_ref.push(f.clone()),
            NameKind::Both(r) => problem(
                &mut found,
                Some(f),
                format!("named like both a `{r}` stem and a reference mix"),
                format!(
                    "say which: {}, or make it the reference",
                    fix_for(
                        c,
                        &format!("roles = {{ {} = \"{r}\" }}", quoted(f)),
                        &format!("`roles` to `{f}={r}`")
                    )
                ),
            ),
            NameKind::Unknown => problem(
                &mut found,
                Some(f),
                "no role in its name".into(),
                format!(
                    "{} with its role (one of {roles_list}), or rename it after its content",
                    fix_for(
                        c,
                        &format!("roles = {{ {} = \"keys\" }}", quoted(f)),
                        &format!("`roles` to `{f}=keys`")
                    )
                ),
            ),
        }
    }
    let reference = match &s.reference {
        Some(r) => {
            if !base.join(join(&c.dir, r)).is_file() {
                problem(
                    &mut found,
                    Some(r),
                    "the reference mix named is not found".into(),
                    "name the reference by its file name in the title's folder".into(),
                );
            }
            for other in &candidates_ref {
                problem(
                    &mut found,
                    Some(other),
                    format!(
                        "named like a reference mix, but the reference is {}",
                        quoted(r)
                    ),
                    fix_for(
                        c,
                        &format!("exclude = [{}]", quoted(other)),
                        &format!("`exclude` to `{other}`"),
                    ),
                );
            }
            Some(r.clone())
        }
        None if candidates_ref.len() > 1 => {
            let list = candidates_ref
                .iter()
                .map(|n| quoted(n))
                .collect::<Vec<_>>()
                .join(", ");
            problem(
                &mut found,
                None,
                format!(
                    "{} files are named like a reference mix: {list}",
                    candidates_ref.len()
                ),
                format!(
                    "choose one: {}, and exclude the others",
                    fix_for(
                        c,
                        &format!("reference = {}", quoted(&candidates_ref[0])),
                        &format!("`reference` to `{}`", candidates_ref[0])
                    )
                ),
            );
            None
        }
        None => candidates_ref.first().cloned(),
    };
    let any_audio = c.files.iter().any(|f| is_audio_name(&name_of(f)));
    if stems.is_empty() && (!any_audio || found.is_empty()) {
        problem(
            &mut found,
            None,
            if any_audio {
                "holds a reference mix but no stems".into()
            } else {
                "holds no audio files".into()
            },
            format!(
                "put the title's stems ({}) in the folder, or leave the folder out of the catalog",
                AUDIO_EXTENSIONS.join(", ")
            ),
        );
    }
    if !found.is_empty() {
        return Err(found);
    }
    Ok(Placed {
        name: c.name.clone(),
        stems: stems
            .into_iter()
            .map(|(f, r)| (join(&c.dir, &f), r))
            .collect(),
        reference: reference.map(|r| join(&c.dir, &r)),
        layout: s.layout.unwrap_or_default(),
        variants: s.variants.clone(),
    })
}

/// One `[[titles]]` table per placed title, after the titles written by hand.
fn append_titles(doc: &mut DocumentMut, titles: Vec<Placed>) -> Result<(), SpecError> {
    let mut tables = match doc.remove("titles") {
        None => ArrayOfTables::new(),
        Some(Item::ArrayOfTables(a)) => a,
        Some(Item::Value(Value::Array(a))) => {
            let mut out = ArrayOfTables::new();
            for v in a {
                match v {
                    Value::InlineTable(t) => out.push(t.into_table()),
                    other => {
                        return Err(SpecError::new(
                            "titles",
                            format!("must be a list of tables; found: {}", other.type_name()),
                        ));
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(SpecError::new(
                "titles",
                format!("must be a list of tables; found: {}", other.type_name()),
            ));
        }
    };
    for t in titles {
        tables.push(title_table(t));
    }
    doc.insert("titles", Item::ArrayOfTables(tables));
    Ok(())
}

fn title_table(t: Placed) -> Table {
    let mut table = Table::new();
    table.insert("name", toml_edit::value(t.name));
    if let Some(r) = t.reference {
        table.insert("reference", toml_edit::value(r));
    }
    if t.layout != Layout::Stereo {
        table.insert("layout", toml_edit::value(t.layout.as_str()));
    }
    if let Some(v) = t.variants {
        table.insert(
            "variants",
            toml_edit::value(v.into_iter().collect::<Array>()),
        );
    }
    let mut stems = Array::new();
    for (file, role) in t.stems {
        let mut s = InlineTable::new();
        s.insert("file", file.into());
        s.insert("role", role.as_str().into());
        let mut v = Value::InlineTable(s);
        v.decor_mut().set_prefix("\n  ");
        stems.push_formatted(v);
    }
    stems.set_trailing("\n");
    stems.set_trailing_comma(true);
    table.insert("stems", toml_edit::value(stems));
    table
}

#[cfg(test)]
mod tests;
