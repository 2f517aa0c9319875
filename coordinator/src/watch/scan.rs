//! What one scan of a hot folder sees. The rule: a scan reads metadata only
//! (`read_dir`, `stat`), never a file's contents, so a file still being
//! copied is never opened. A title folder's fingerprint is the SHA-256 of
//! every file's (relative path, size, modification time), sorted; the same
//! fingerprint across scans `settle_s` apart means nothing was written in
//! between.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

/// A file inside a title folder that says its copy is complete: the folder
/// is settled on the scan that sees it (unless a temporary file is still
/// there). It is not part of the fingerprint.
pub const READY_MARKER: &str = ".ready";

/// What a title's findings file beside its folder is called after: `<title>`
/// followed by this. Written at the watch folder's top level, never inside
/// the title folder, so writing it does not change the title's fingerprint.
pub const FINDINGS_SUFFIX: &str = ".stemforge-findings.txt";

/// Sub-folders a title folder is read into (deeper ones keep it unsettled).
const MAX_DEPTH: usize = 8;

/// Entries one title folder may hold: a folder of stems holds tens; more is
/// not a title (it keeps the folder unsettled with a message, and bounds a
/// scan's memory).
pub const MAX_ENTRIES: usize = 10_000;

/// One title folder as a scan saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// The folder's files.
    Files {
        /// Hex SHA-256 of the sorted (path, size, mtime) lines.
        fingerprint: String,
        /// Files counted in the fingerprint.
        files: usize,
        /// A file whose name says it is still being copied (`*.part`,
        /// hidden names, …), if any: the folder is not settled.
        in_transit: Option<String>,
        /// The `.ready` marker is there.
        ready: bool,
    },
    /// The folder could not be listed (vanished, permissions, too large).
    Unreadable(String),
}

/// Files the scan leaves out entirely: the marker and what file managers
/// write on their own (Finder's `.DS_Store` and `._*` AppleDouble files,
/// Explorer's `Thumbs.db`/`desktop.ini`), so browsing a folder neither
/// keeps it unsettled nor makes it a changed title.
pub fn ignored(name: &str) -> bool {
    name == READY_MARKER
        || name == ".DS_Store"
        || name.starts_with("._")
        || name.eq_ignore_ascii_case("Thumbs.db")
        || name.eq_ignore_ascii_case("desktop.ini")
}

/// Names copy tools give files while they are being written: hidden names
/// (`.~x`, rsync's `.name.XXXXXX`), `*.part`, `*.partial`, `*.tmp`,
/// `*.temp`, `*.crdownload`, `*.download`. One of these keeps its folder
/// unsettled.
pub fn in_transit(name: &str) -> bool {
    if ignored(name) {
        return false;
    }
    if name.starts_with('.') {
        return true;
    }
    let lower = name.to_ascii_lowercase();
    [
        ".part",
        ".partial",
        ".tmp",
        ".temp",
        ".crdownload",
        ".download",
    ]
    .iter()
    .any(|s| lower.ends_with(s))
}

/// The title folders of a watch folder: its immediate sub-folders, sorted,
/// except hidden ones and any named like a findings file.
pub fn title_folders(root: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            // A name that is not UTF-8 cannot be a title (spec names are text).
            tracing::warn!(folder = %root.display(), entry = ?e.file_name(), "hot folder: a name that is not UTF-8 is left out");
            continue;
        };
        if name.starts_with('.') || name.ends_with(FINDINGS_SUFFIX) {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Lists a title folder (metadata only) and fingerprints it.
pub fn scan_title(dir: &Path) -> Seen {
    let mut lines: Vec<String> = Vec::new();
    let mut in_transit_name = None;
    let mut ready_mtime: Option<u128> = None;
    let mut newest: u128 = 0;
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(dir.to_path_buf(), String::new(), 0)];
    while let Some((d, rel, depth)) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) => return Seen::Unreadable(format!("cannot list '{}': {e}", d.display())),
        };
        for e in rd {
            let e = match e {
                Ok(e) => e,
                Err(e) => return Seen::Unreadable(format!("cannot list '{}': {e}", d.display())),
            };
            let name = e.file_name().to_string_lossy().into_owned();
            let rel_name = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if depth == 0 && name == READY_MARKER {
                ready_mtime = Some(
                    std::fs::metadata(e.path())
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos()),
                );
                continue;
            }
            if ignored(&name) {
                continue;
            }
            if in_transit(&name) && in_transit_name.is_none() {
                in_transit_name = Some(rel_name.clone());
            }
            // Metadata through symbolic links (a linked stem is a stem);
            // a linked folder is not followed (no cycles).
            let link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
            let meta = match std::fs::metadata(e.path()) {
                Ok(m) => m,
                // Gone between the listing and the stat: a copy in progress.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    in_transit_name.get_or_insert(rel_name);
                    continue;
                }
                Err(err) => {
                    return Seen::Unreadable(format!(
                        "cannot read '{}': {err}",
                        e.path().display()
                    ));
                }
            };
            if meta.is_dir() {
                if link {
                    continue;
                }
                if depth + 1 > MAX_DEPTH {
                    return Seen::Unreadable(format!(
                        "'{}' is nested more than {MAX_DEPTH} folders deep; a title folder holds its stems",
                        e.path().display()
                    ));
                }
                stack.push((e.path(), rel_name, depth + 1));
                continue;
            }
            if lines.len() >= MAX_ENTRIES {
                return Seen::Unreadable(format!(
                    "'{}' holds more than {MAX_ENTRIES} files; a title folder holds one title's stems",
                    dir.display()
                ));
            }
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            newest = newest.max(mtime);
            lines.push(format!("{rel_name}\0{}\0{mtime}\n", meta.len()));
        }
    }
    // The marker counts only when written after every file (a copier that
    // knows it is done writes it last); one copied in with the stems, or
    // before them, waits for the settle time like any folder.
    let ready = ready_mtime.is_some_and(|m| m >= newest);
    lines.sort();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
    }
    Seen::Files {
        fingerprint: hex::encode(h.finalize()),
        files: lines.len(),
        in_transit: in_transit_name,
        ready,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "stemforge-watch-scan-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn fp(s: &Seen) -> &str {
        match s {
            Seen::Files { fingerprint, .. } => fingerprint,
            Seen::Unreadable(e) => panic!("{e}"),
        }
    }

    #[test]
    fn names_in_transit_and_ignored() {
        for n in [
            "Bass.wav.part",
            "x.TMP",
            ".~lock.wav#",
            ".Bass.wav.Xy12ab",
            "a.crdownload",
        ] {
            assert!(in_transit(n), "{n}");
        }
        for n in [
            "Bass.wav",
            "Mix print.wav",
            ".ready",
            ".DS_Store",
            "._Bass.wav",
        ] {
            assert!(!in_transit(n), "{n}");
        }
    }

    #[test]
    fn fingerprint_follows_sizes_and_names_but_not_the_marker() {
        let d = tmp("fp");
        std::fs::write(d.join("Bass.wav"), b"abc").unwrap();
        let a = scan_title(&d);
        assert_eq!(scan_title(&d), a, "a scan reproduces");
        std::fs::write(d.join(".DS_Store"), b"x").unwrap();
        std::fs::write(d.join(READY_MARKER), b"").unwrap();
        let b = scan_title(&d);
        assert_eq!(
            fp(&b),
            fp(&a),
            "the marker and Finder's files are not the title"
        );
        assert!(matches!(
            b,
            Seen::Files {
                ready: true,
                in_transit: None,
                files: 1,
                ..
            }
        ));
        std::fs::write(d.join("Bass.wav"), b"abcd").unwrap();
        assert_ne!(fp(&scan_title(&d)), fp(&a), "a size change is a change");
        std::fs::write(d.join("Drums.wav.part"), b"").unwrap();
        assert!(matches!(
            scan_title(&d),
            Seen::Files { in_transit: Some(n), .. } if n == "Drums.wav.part"
        ));
        let _ = std::fs::remove_dir_all(&d);
        assert!(
            matches!(scan_title(&d), Seen::Unreadable(_)),
            "a vanished folder is reported, not a panic"
        );
    }

    #[test]
    fn title_folders_skip_hidden_files_and_findings() {
        let d = tmp("titles");
        std::fs::create_dir_all(d.join("B song")).unwrap();
        std::fs::create_dir_all(d.join("A song")).unwrap();
        std::fs::create_dir_all(d.join(".hidden")).unwrap();
        std::fs::write(d.join(format!("A song{FINDINGS_SUFFIX}")), b"x").unwrap();
        let names: Vec<String> = title_folders(&d)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["A song", "B song"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
