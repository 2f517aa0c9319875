//! `stemforge render DIR`: a folder of stems rendered with no spec written.
//!
//! The rule: DIR holding audio files is one title (named after the folder);
//! DIR holding no audio but sub-folders is a catalog, one title per
//! sub-folder. Either way the command writes a spec of a `[catalog]` (the
//! default variants and profile; roles and the reference mix from file
//! names, by the catalog's own rules and findings) into the output folder
//! and renders that spec, so the pack carries the spec it came from and a
//! title the names cannot settle gets its overrides in that file. The
//! output folder is `DIR/deliverables` (a spec's `delivery.output_dir`
//! default, with DIR as the spec's folder) unless `--out` says otherwise; a
//! catalog leaves it out of its titles (and, as any catalog, hidden folders).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use deliverables_spec::catalog::is_audio_name;
use deliverables_spec::delivery::DEFAULT_OUTPUT_DIR;
use deliverables_spec::model::Layout;
use stemforge_worker::preflight::{InputFile, infer_layout};

/// The name of the spec written into the output folder.
pub const SPEC_NAME: &str = "stemforge-render-dir.toml";

/// The spec written for a folder and where the pack goes.
#[derive(Debug)]
pub struct DirSpec {
    /// The spec file written.
    pub spec: PathBuf,
    /// The output folder (absolute).
    pub out: PathBuf,
    /// Titles the spec takes (sub-folders for a catalog; 1 otherwise).
    pub titles: usize,
}

/// A folder's audio files and sub-folders (hidden entries left out), sorted.
pub fn entries(dir: &Path) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut audio = Vec::new();
    let mut dirs = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("cannot list '{}'", dir.display()))? {
        let e = e.with_context(|| format!("cannot list '{}'", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            dirs.push(path);
        } else if is_audio_name(&name) {
            audio.push(path);
        }
    }
    audio.sort();
    dirs.sort();
    Ok((audio, dirs))
}

/// A path as a TOML string holding a glob that matches it literally.
fn literal_glob(p: &Path) -> anyhow::Result<String> {
    let s = p
        .to_str()
        .with_context(|| format!("'{}' is not a UTF-8 path", p.display()))?;
    Ok(toml_string(&glob_escape(s)))
}

/// `*`, `?`, `[` and `]` taken literally in a glob.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '*' | '?' | '[' | ']' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The layout a title folder's files imply: 5.1 when any file has six channels.
fn layout_of(files: &[PathBuf]) -> Layout {
    let inputs: Vec<InputFile> = files
        .iter()
        .map(|p| InputFile {
            name: p.display().to_string(),
            path: p.clone(),
        })
        .collect();
    infer_layout(&inputs)
}

/// Writes the spec that renders `dir` into the output folder and returns it.
pub fn write_spec(dir: &Path, out: Option<PathBuf>) -> anyhow::Result<DirSpec> {
    let dir =
        std::fs::canonicalize(dir).with_context(|| format!("cannot read '{}'", dir.display()))?;
    let out = out.unwrap_or_else(|| dir.join(DEFAULT_OUTPUT_DIR));
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the output folder '{}'", out.display()))?;
    let out = std::fs::canonicalize(&out)?;
    let (audio, subdirs) = entries(&dir)?;
    let mut spec = format!(
        "# Written by `stemforge render {}`: the folder's stems as a catalog, roles and\n\
         # the reference mix from file names. Add overrides here and render this file.\n\
         schema_version = 1\n\n[catalog]\n",
        dir.display()
    );
    let mut layouts = Vec::new();
    let titles = if !audio.is_empty() {
        let _ = writeln!(spec, "folders = [{}]", literal_glob(&dir)?);
        layouts.push((dir.clone(), layout_of(&audio)));
        1
    } else {
        let titles: Vec<&PathBuf> = subdirs.iter().filter(|d| **d != out).collect();
        if titles.is_empty() {
            anyhow::bail!(
                "'{}' holds no audio files ({}) and no folders of stems",
                dir.display(),
                deliverables_spec::catalog::AUDIO_EXTENSIONS.join(", ")
            );
        }
        let utf8 = dir
            .to_str()
            .with_context(|| format!("'{}' is not a UTF-8 path", dir.display()))?;
        let all = format!("{}/*", glob_escape(utf8));
        let _ = writeln!(
            spec,
            "folders = [{}]\nexclude = [{}]",
            toml_string(&all),
            literal_glob(&out)?
        );
        for d in &titles {
            let (files, _) = entries(d)?;
            layouts.push(((*d).clone(), layout_of(&files)));
        }
        titles.len()
    };
    for (d, layout) in layouts {
        push_layout(&mut spec, &d, layout);
    }
    let path = out.join(SPEC_NAME);
    std::fs::write(&path, spec).with_context(|| format!("cannot write '{}'", path.display()))?;
    Ok(DirSpec {
        spec: path,
        out,
        titles,
    })
}

/// A title folder's layout override, for a layout other than stereo (the
/// catalog's default); the title is named after the folder.
fn push_layout(spec: &mut String, title_dir: &Path, layout: Layout) {
    if layout == Layout::Stereo {
        return;
    }
    let name = title_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(
        spec,
        "\n[catalog.titles.{}]\nlayout = \"{layout}\"",
        toml_string(&name)
    );
}

/// The spec text of one title folder rendered with a template (a hot
/// folder's title): the template's text (everything but titles: delivery,
/// profiles, graph, variants, preflight) followed by a `[catalog]` taking
/// exactly `title_dir`, so roles and the reference mix come from file names
/// by the catalog's own rules and findings, as for `render DIR`. The
/// caller expands it ([`deliverables_spec::catalog::expand`]). The template
/// must hold no `[catalog]` or `[[titles]]` of its own (the caller checks
/// that once, when the template is read). Reads the audio files' headers
/// for the layout: call it only on a folder that has stopped changing.
pub fn template_spec(template: &str, title_dir: &Path) -> anyhow::Result<String> {
    let dir = std::fs::canonicalize(title_dir)
        .with_context(|| format!("cannot read '{}'", title_dir.display()))?;
    let (audio, _) = entries(&dir)?;
    let mut spec = String::with_capacity(template.len() + 256);
    spec.push_str(template);
    if !spec.ends_with('\n') {
        spec.push('\n');
    }
    let _ = writeln!(spec, "\n[catalog]\nfolders = [{}]", literal_glob(&dir)?);
    push_layout(&mut spec, &dir, layout_of(&audio));
    Ok(spec)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_template_takes_one_title_folder() {
        let d =
            std::env::temp_dir().join(format!("stemforge-template-spec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let title = d.join("inbox").join("Song [v2]");
        std::fs::create_dir_all(&title).unwrap();
        for f in ["Drums.wav", "Bass.wav", "Song MIX.wav"] {
            std::fs::write(title.join(f), b"not audio: only names are read").unwrap();
        }
        let template = "schema_version = 1\n[delivery]\nprofile = \"ebu-r128\"\n[variants.full]";
        let text = template_spec(template, &title).unwrap();
        assert!(
            text.starts_with(template),
            "the template comes first, as written"
        );
        let e = deliverables_spec::catalog::expand(&text, &d, None)
            .unwrap()
            .unwrap();
        let loaded = deliverables_spec::load_text(e.text, &d, None).unwrap();
        let t = &loaded.spec.titles;
        assert_eq!(t.len(), 1);
        assert_eq!(
            t[0].name, "Song [v2]",
            "named after its folder, globs taken literally"
        );
        assert_eq!(t[0].stems.len(), 2);
        assert!(
            t[0].reference
                .as_deref()
                .is_some_and(|r| r.ends_with("Song MIX.wav"))
        );
        assert_eq!(loaded.delivery().profile, "ebu-r128");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn globs_and_strings_are_escaped() {
        assert_eq!(glob_escape("/a/Song [v2]*?"), "/a/Song [[]v2[]][*][?]");
        assert_eq!(toml_string("a \"b\" \\c"), "\"a \\\"b\\\" \\\\c\"");
    }
}
