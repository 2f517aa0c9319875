//! The `[[watch]]` entries: their keys, and the checks made once at
//! coordinator start (each error names `watch[i].field` and the fix).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

/// One `[[watch]]` entry as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// The watched folder (must exist; under a media root when any are
    /// configured). Each sub-folder is a title.
    #[serde(default)]
    pub folder: String,
    /// A spec file holding everything but titles: `[delivery]` (profile),
    /// `[profiles]`, `[graph]` (chains, buses), `[variants]`, `[preflight]`.
    #[serde(default)]
    pub template: String,
    /// Seconds a title folder must stay unchanged before it is submitted.
    #[serde(default = "default_settle_s")]
    pub settle_s: f64,
    /// Scans only, no file-system events (network file systems: NFS, SMB).
    #[serde(default)]
    pub poll: bool,
    /// Seconds between scans when nothing is waiting to settle.
    #[serde(default = "default_poll_interval_s")]
    pub poll_interval_s: f64,
    /// Priority of the jobs submitted (higher runs first).
    #[serde(default)]
    pub priority: i32,
    /// Jobs are labelled `<label>/<title folder>` (default: the folder's name).
    #[serde(default)]
    pub label: String,
    /// Where packs go, one sub-folder per title; outside the watched folder
    /// (default: `<folder>-deliverables` beside it).
    #[serde(default)]
    pub output_dir: String,
}

fn default_settle_s() -> f64 {
    30.0
}

fn default_poll_interval_s() -> f64 {
    15.0
}

/// A `[[watch]]` entry checked and resolved at coordinator start.
#[derive(Debug, Clone)]
pub struct Watch {
    /// Its place in the configuration (`watch[i]`).
    pub index: usize,
    /// The watched folder, canonical.
    pub folder: PathBuf,
    /// The template file, canonical.
    pub template: PathBuf,
    pub(super) template_text: String,
    pub(super) template_sha256: String,
    /// The folder the template's relative paths resolve against.
    pub(super) template_base: PathBuf,
    pub settle: Duration,
    pub poll: bool,
    pub poll_interval: Duration,
    pub priority: i32,
    pub label: String,
    /// Where packs go (created at start), canonical.
    pub output_dir: PathBuf,
}

/// A title added to the template when it is checked at start: one stem
/// of every role, so a template is judged on its own settings, not on
/// what some title lacks.
const PROBE_TITLE: &str = r#"
[[titles]]
name = "stemforge template check"
stems = [
  { file = "drums.wav", role = "drums" },
  { file = "bass.wav", role = "bass" },
  { file = "music.wav", role = "music" },
  { file = "keys.wav", role = "keys" },
  { file = "guitars.wav", role = "guitars" },
  { file = "vocals.wav", role = "vocals" },
  { file = "backing_vocals.wav", role = "backing_vocals" },
  { file = "dialogue.wav", role = "dialogue" },
  { file = "fx.wav", role = "fx" },
  { file = "other.wav", role = "other" },
]
"#;

/// Checks a template's text: it must be a valid spec once a title is
/// added, and hold no titles or catalog of its own.
pub fn check_template(text: &str) -> Result<(), String> {
    let probe = format!("{text}\n{PROBE_TITLE}");
    match deliverables_spec::parse_and_validate(&probe, None) {
        Ok(spec) if spec.titles.len() == 1 => Ok(()),
        Ok(_) => Err(
            "holds [[titles]] of its own; a template holds everything but titles (each folder dropped is a title): remove them"
                .into(),
        ),
        Err(e) if e.errors.iter().any(|x| x.field == "catalog") => Err(
            "holds a [catalog]; each folder dropped is the template's one title: remove the [catalog] table"
                .into(),
        ),
        Err(e) => {
            let mut s = String::from("is not a valid spec once a title is added:");
            for x in &e.errors {
                let _ = write!(s, "\n  - {x}");
            }
            Err(s)
        }
    }
}

/// Checks every `[[watch]]` entry (errors name `watch[i].field` and the
/// fix), creates output folders, and resolves paths (relative ones against
/// `base`, the config file's folder).
pub fn validate(
    cfgs: &[WatchConfig],
    media_roots: &[PathBuf],
    base: &Path,
) -> anyhow::Result<Vec<Watch>> {
    let roots = deliverables_spec::files::MediaRoots::new(media_roots);
    let mut out: Vec<Watch> = Vec::with_capacity(cfgs.len());
    for (i, c) in cfgs.iter().enumerate() {
        let field = |f: &str| format!("watch[{i}].{f}");
        if c.folder.trim().is_empty() {
            anyhow::bail!("{} is required: the folder to watch", field("folder"));
        }
        let folder = std::fs::canonicalize(base.join(&c.folder)).map_err(|e| {
            anyhow::anyhow!(
                "{} '{}': {e}; create the folder or fix the path",
                field("folder"),
                c.folder
            )
        })?;
        if !folder.is_dir() {
            anyhow::bail!("{} '{}' is not a folder", field("folder"), c.folder);
        }
        roots.confine(&folder).map_err(|why| {
            anyhow::anyhow!(
                "{} '{}' is not under a media root: {why}; move it under one or add one to media_roots",
                field("folder"),
                c.folder
            )
        })?;
        if c.template.trim().is_empty() {
            anyhow::bail!(
                "{} is required: a spec file with everything but titles ([delivery], [variants], [graph])",
                field("template")
            );
        }
        let template = std::fs::canonicalize(base.join(&c.template)).map_err(|e| {
            anyhow::anyhow!(
                "{} '{}': {e}; fix the path (relative paths are read against the config file's folder)",
                field("template"),
                c.template
            )
        })?;
        let template_text = std::fs::read_to_string(&template)
            .with_context(|| format!("{} '{}': cannot read it", field("template"), c.template))?;
        check_template(&template_text).map_err(|why| {
            anyhow::anyhow!("{} '{}' {why}", field("template"), template.display())
        })?;
        if template.starts_with(&folder) {
            anyhow::bail!(
                "{} '{}' is inside the watched folder; keep it outside (a folder there is a title)",
                field("template"),
                c.template
            );
        }
        let secs = |f: &str, v: f64, min: f64, max: f64| -> anyhow::Result<Duration> {
            if !v.is_finite() || v < min || v > max {
                anyhow::bail!("{} = {v}: give seconds between {min} and {max}", field(f));
            }
            Ok(Duration::from_secs_f64(v))
        };
        let settle = secs("settle_s", c.settle_s, 0.1, 86_400.0)?;
        let poll_interval = secs("poll_interval_s", c.poll_interval_s, 0.1, 3_600.0)?;
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "watch".into());
        let output_dir = if c.output_dir.trim().is_empty() {
            match folder.parent() {
                Some(p) => p.join(format!("{name}-deliverables")),
                None => anyhow::bail!(
                    "{} is required for a watched folder at the file system's root",
                    field("output_dir")
                ),
            }
        } else {
            base.join(&c.output_dir)
        };
        if output_dir
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            anyhow::bail!(
                "{} '{}' climbs with `..`; give the folder's plain absolute path",
                field("output_dir"),
                output_dir.display()
            );
        }
        roots.confine_output(&output_dir).map_err(|why| {
            anyhow::anyhow!(
                "{} '{}' is not allowed: {why}; write under a media root or add one to media_roots",
                field("output_dir"),
                output_dir.display()
            )
        })?;
        let output_dir = resolved(&output_dir);
        out.push(Watch {
            index: i,
            template_base: template
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
            template_sha256: deliverables_spec::plan::spec_hash(&template_text),
            template_text,
            template,
            settle,
            poll: c.poll,
            poll_interval,
            priority: c.priority,
            label: if c.label.trim().is_empty() {
                name
            } else {
                c.label.trim().to_string()
            },
            output_dir,
            folder,
        });
    }
    // Outputs never land in a watched tree (they would change a title or
    // become one), and no folder is watched twice or inside another.
    for a in &out {
        for b in &out {
            if a.output_dir.starts_with(&b.folder) || b.folder.starts_with(&a.output_dir) {
                anyhow::bail!(
                    "watch[{}].output_dir '{}' overlaps the watched folder '{}' (watch[{}].folder); put it beside the folder, not in it",
                    a.index,
                    a.output_dir.display(),
                    b.folder.display(),
                    b.index
                );
            }
        }
    }
    for a in &out {
        for b in &out {
            if a.index < b.index
                && (a.folder.starts_with(&b.folder) || b.folder.starts_with(&a.folder))
            {
                anyhow::bail!(
                    "watch[{}].folder '{}' and watch[{}].folder '{}' overlap; watch each folder once, and none inside another",
                    a.index,
                    a.folder.display(),
                    b.index,
                    b.folder.display()
                );
            }
        }
    }
    // Made only once every entry is good, so a refused configuration
    // leaves no folder behind.
    for w in &mut out {
        std::fs::create_dir_all(&w.output_dir).with_context(|| {
            format!(
                "watch[{}].output_dir '{}': cannot create it",
                w.index,
                w.output_dir.display()
            )
        })?;
        w.output_dir = std::fs::canonicalize(&w.output_dir)?;
    }
    Ok(out)
}

/// A path with its nearest existing folder resolved (symbolic links, as
/// the watched folders are), the rest as written.
fn resolved(p: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = p;
    loop {
        if let Ok(real) = std::fs::canonicalize(cur) {
            let mut out = real;
            for c in rest.iter().rev() {
                out.push(c);
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return p.to_path_buf(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("stemforge-watch-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::canonicalize(&d).unwrap()
    }

    const TEMPLATE: &str = "schema_version = 1\n[delivery]\nprofile = \"ebu-r128\"\n[variants.full]\n[variants.instrumental]\n";

    fn cfg(folder: &Path, template: &Path) -> WatchConfig {
        WatchConfig {
            folder: folder.display().to_string(),
            template: template.display().to_string(),
            settle_s: 2.0,
            poll: false,
            poll_interval_s: 1.0,
            priority: 0,
            label: String::new(),
            output_dir: String::new(),
        }
    }

    #[test]
    fn templates_are_judged_alone() {
        assert_eq!(check_template(TEMPLATE), Ok(()));
        assert_eq!(check_template("schema_version = 1\n"), Ok(()));
        let e =
            check_template("schema_version = 1\n[delivery]\nprofile = \"ebu-r129\"\n").unwrap_err();
        assert!(e.contains("delivery.profile"), "{e}");
        let e = check_template(&format!("{TEMPLATE}[catalog]\nfolders = [\"x/*\"]\n")).unwrap_err();
        assert!(e.contains("[catalog]"), "{e}");
        let e = check_template(&format!(
            "{TEMPLATE}[[titles]]\nname = \"a\"\nstems = [{{ file = \"a.wav\", role = \"drums\" }}]\n"
        ))
        .unwrap_err();
        assert!(e.contains("[[titles]]"), "{e}");
    }

    #[test]
    fn config_errors_name_the_entry_and_field() {
        let d = tmp("cfg");
        let inbox = d.join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        let t = d.join("template.toml");
        std::fs::write(&t, TEMPLATE).unwrap();
        let ws = validate(&[cfg(&inbox, &t)], &[], Path::new("/")).unwrap();
        assert_eq!(
            ws[0].output_dir,
            d.join("inbox-deliverables"),
            "outputs beside, not inside"
        );
        assert!(ws[0].output_dir.is_dir());
        assert_eq!(ws[0].label, "inbox");

        let err = |c: WatchConfig, roots: &[PathBuf]| {
            format!(
                "{:#}",
                validate(&[cfg(&inbox, &t), c], roots, Path::new("/")).unwrap_err()
            )
        };
        let e = err(
            WatchConfig {
                folder: d.join("nope").display().to_string(),
                ..cfg(&inbox, &t)
            },
            &[],
        );
        assert!(e.starts_with("watch[1].folder"), "{e}");
        let e = err(
            WatchConfig {
                template: String::new(),
                ..cfg(&inbox, &t)
            },
            &[],
        );
        assert!(e.starts_with("watch[1].template"), "{e}");
        let e = err(
            WatchConfig {
                settle_s: -1.0,
                ..cfg(&inbox, &t)
            },
            &[],
        );
        assert!(e.starts_with("watch[1].settle_s"), "{e}");
        let e = err(
            WatchConfig {
                output_dir: inbox.join("out").display().to_string(),
                ..cfg(&inbox, &t)
            },
            &[],
        );
        assert!(
            e.contains("watch[1].output_dir") && e.contains("overlaps"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            validate(&[cfg(&inbox, &t), cfg(&inbox, &t)], &[], Path::new("/")).unwrap_err()
        );
        assert!(e.contains("overlap"), "{e}");
        let bad = d.join("bad.toml");
        std::fs::write(
            &bad,
            "schema_version = 1\n[variants.ful]\npreset = \"nope\"\n",
        )
        .unwrap();
        let e = err(
            WatchConfig {
                template: bad.display().to_string(),
                ..cfg(&inbox, &t)
            },
            &[],
        );
        assert!(e.starts_with("watch[1].template"), "{e}");
        let roots = [d.join("elsewhere")];
        std::fs::create_dir_all(&roots[0]).unwrap();
        let e = format!(
            "{:#}",
            validate(&[cfg(&inbox, &t)], &roots, Path::new("/")).unwrap_err()
        );
        assert!(
            e.starts_with("watch[0].folder") && e.contains("media root"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
