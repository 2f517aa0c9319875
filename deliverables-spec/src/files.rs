//! Where a spec's files are, and cheap fingerprints of them for task ids.
//!
//! Only metadata is read here (no audio): fingerprints are size + modification
//! time, so planning a catalog of thousands of titles stays instant. Content
//! hashes are taken by the analysis task, which reads the audio anyway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::error::SpecError;
use crate::model::Spec;

/// A spec path resolved against the spec file's folder.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Fingerprint of one input file: `size:mtime_ns`.
pub fn fingerprint(path: &Path) -> std::io::Result<String> {
    let m = std::fs::metadata(path)?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{}:{}", m.len(), mtime))
}

/// Where input files may live. Paths are resolved (`..`, symbolic links)
/// before they are compared, so neither escapes a root.
#[derive(Debug, Clone)]
pub struct MediaRoots(Option<Vec<PathBuf>>);

impl MediaRoots {
    /// `roots` as configured; none configured means no confinement (a
    /// single user's machine). Roots that do not exist are left out (nothing
    /// can be under them).
    pub fn new(roots: &[PathBuf]) -> MediaRoots {
        if roots.is_empty() {
            return MediaRoots(None);
        }
        MediaRoots(Some(
            roots
                .iter()
                .filter_map(|r| std::fs::canonicalize(r).ok())
                .collect(),
        ))
    }

    fn roots(&self) -> &[PathBuf] {
        self.0.as_deref().unwrap_or(&[])
    }

    fn list(&self) -> String {
        if self.roots().is_empty() {
            return "none that exist".to_string();
        }
        self.roots()
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `full` if it resolves to a place under a root, else why not. A path
    /// that does not exist is returned as is (the caller reports it missing).
    pub fn confine(&self, full: &Path) -> Result<PathBuf, String> {
        if self.0.is_none() {
            return Ok(full.to_path_buf());
        }
        let roots = self.roots();
        let Ok(real) = std::fs::canonicalize(full) else {
            // Missing: judge the nearest folder above it that exists (the
            // caller reports the file missing).
            return match nearest_existing(full) {
                Some(p) if !roots.iter().any(|r| p.starts_with(r)) => Err(format!(
                    "its folder {} is outside the media roots ({})",
                    p.display(),
                    self.list()
                )),
                _ => Ok(full.to_path_buf()),
            };
        };
        if roots.iter().any(|r| real.starts_with(r)) {
            return Ok(real);
        }
        let lexical_inside = roots.iter().any(|r| lexical(full).starts_with(r));
        Err(if lexical_inside {
            format!(
                "it is a symbolic link to {}, outside the media roots ({})",
                real.display(),
                self.list()
            )
        } else {
            format!(
                "it resolves to {}, outside the media roots ({})",
                real.display(),
                self.list()
            )
        })
    }
}

impl MediaRoots {
    /// Whether any roots are configured.
    pub fn is_confined(&self) -> bool {
        self.0.is_some()
    }

    /// Checks a folder outputs will be written into (it may not exist yet):
    /// the nearest existing folder on its path must resolve under a root,
    /// and the rest of the path may not climb out with `..`.
    pub fn confine_output(&self, dir: &Path) -> Result<(), String> {
        if self.0.is_none() {
            return Ok(());
        }
        if !dir.is_absolute() {
            return Err(format!("{} is not an absolute path", dir.display()));
        }
        let lexical_dir = lexical(dir);
        let Some(existing) = nearest_existing(&lexical_dir) else {
            return Err(format!("no folder of {} exists", dir.display()));
        };
        if self.roots().iter().any(|r| existing.starts_with(r)) {
            Ok(())
        } else {
            Err(format!(
                "it resolves to {}, outside the media roots ({})",
                existing.display(),
                self.list()
            ))
        }
    }
}

/// The canonical form of the nearest ancestor of `p` (or `p`) that exists.
fn nearest_existing(p: &Path) -> Option<PathBuf> {
    p.ancestors().find_map(|a| std::fs::canonicalize(a).ok())
}

/// `p` with `.` and `..` removed textually (no file system access).
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Checks that every stem and reference file exists, is a non-empty regular
/// file and lies under a media root; returns their fingerprints keyed by the
/// spec's path text.
pub fn check_files(
    spec: &Spec,
    base: &Path,
    roots: &MediaRoots,
) -> Result<BTreeMap<String, String>, Vec<SpecError>> {
    let mut out = BTreeMap::new();
    let mut errs = Vec::new();
    for (ti, t) in spec.titles.iter().enumerate() {
        let files = t
            .stems
            .iter()
            .enumerate()
            .map(|(si, s)| (format!("titles[{ti}].stems[{si}].file"), &s.file))
            .chain(
                t.reference
                    .iter()
                    .map(|r| (format!("titles[{ti}].reference"), r)),
            );
        for (field, p) in files {
            let full = resolve(base, p);
            if let Err(why) = roots.confine(&full) {
                errs.push(
                    SpecError::new(field, format!("`{p}` is not allowed: {why}")).hint(
                        "move the file under a media root, or add its folder to media_roots (config file or STEMFORGE_MEDIA_ROOTS, ':'-separated)",
                    ),
                );
                continue;
            }
            match std::fs::metadata(&full) {
                Err(e) => errs.push(
                    SpecError::new(field, format!("cannot read `{p}` ({})", io_reason(&e))).hint(
                        format!(
                            "looked at {}; paths are relative to the spec file's folder",
                            full.display()
                        ),
                    ),
                ),
                Ok(m) if m.is_dir() => errs.push(
                    SpecError::new(field, format!("`{p}` is a folder, not an audio file"))
                        .hint("name the stem file itself"),
                ),
                Ok(m) if m.len() == 0 => errs.push(
                    SpecError::new(field, format!("`{p}` is empty (0 bytes)"))
                        .hint("re-export or re-copy the file"),
                ),
                Ok(_) => match fingerprint(&full) {
                    Ok(fp) => {
                        out.insert(p.clone(), fp);
                    }
                    Err(e) => errs.push(SpecError::new(
                        field,
                        format!("cannot read `{p}` ({})", io_reason(&e)),
                    )),
                },
            }
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sf-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("media/show")).expect("mkdir");
        std::fs::create_dir_all(d.join("elsewhere")).expect("mkdir");
        d
    }

    #[test]
    fn output_folders_must_land_under_a_root_even_before_they_exist() {
        let d = tmp("out");
        let roots = MediaRoots::new(&[d.join("media")]);
        assert!(
            roots
                .confine_output(&d.join("media/show/deliverables/v2"))
                .is_ok()
        );
        let out = roots.confine_output(&d.join("elsewhere/deliverables"));
        assert!(out.is_err(), "{out:?}");
        // `..` in the part that does not exist yet cannot climb out.
        let climb = d.join("media/new/../../elsewhere/x");
        assert!(roots.confine_output(&climb).is_err());
        #[cfg(unix)]
        {
            // Nor can a symbolic link inside the root that points outside.
            std::os::unix::fs::symlink(d.join("elsewhere"), d.join("media/link")).expect("symlink");
            assert!(
                roots
                    .confine_output(&d.join("media/link/deliverables"))
                    .is_err()
            );
        }
        assert!(
            MediaRoots::new(&[])
                .confine_output(&d.join("elsewhere"))
                .is_ok()
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_missing_input_is_judged_by_its_nearest_existing_folder() {
        let d = tmp("in");
        let roots = MediaRoots::new(&[d.join("media")]);
        assert!(roots.confine(&d.join("media/show/typo/stem.wav")).is_ok());
        assert!(
            roots
                .confine(&d.join("elsewhere/no/such/stem.wav"))
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
