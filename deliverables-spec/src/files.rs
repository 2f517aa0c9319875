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

/// Checks that every stem and reference file exists and is a non-empty
/// regular file; returns their fingerprints keyed by the spec's path text.
pub fn check_files(spec: &Spec, base: &Path) -> Result<BTreeMap<String, String>, Vec<SpecError>> {
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
