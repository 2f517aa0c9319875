//! The findings file written beside a title folder that was refused or
//! whose job failed: what is wrong, with the fix, for the editor who
//! dropped the folder.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::Watch;
use super::scan::FINDINGS_SUFFIX;
use crate::server::now_ms;

/// The largest manifest read for findings (one title's).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The fix of a file the names cannot place, in a hot folder.
pub(super) const FOLDER_FIX: &str = "rename the file so its name says its role (drums, bass, music, keys, guitars, vocals, backing vocals, dialogue, fx) or that it is the reference mix (mix, ref, master, print), or move it out of the folder";

/// One line of a findings file.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub(super) severity: String,
    pub(super) check: String,
    pub(super) files: Vec<String>,
    pub(super) message: String,
    pub(super) fix: String,
}

impl Item {
    pub(super) fn error(check: &str, message: impl Into<String>, fix: &str) -> Item {
        Item {
            severity: "error".into(),
            check: check.into(),
            files: Vec::new(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// What a findings file says.
pub(super) struct Report {
    pub(super) title: String,
    pub(super) folder: PathBuf,
    pub(super) fingerprint: String,
    pub(super) job: Option<String>,
    pub(super) headline: String,
    pub(super) items: Vec<Item>,
}

impl Report {
    pub(super) fn new(w: &Watch, title: &str, fingerprint: &str) -> Report {
        Report {
            title: title.into(),
            folder: w.folder.join(title),
            fingerprint: fingerprint.into(),
            job: None,
            headline: String::new(),
            items: Vec::new(),
        }
    }

    /// The first error, for the operator's view.
    pub(super) fn first_line(&self) -> String {
        match self
            .items
            .iter()
            .find(|i| i.severity == "error")
            .or(self.items.first())
        {
            Some(i) => format!("{}: {}", self.headline, i.message),
            None => self.headline.clone(),
        }
    }

    pub(super) fn render(&self) -> String {
        let mut s = format!(
            "stemforge did not deliver \"{}\": {}.\n\nfolder:      {}\n",
            self.title,
            self.headline,
            self.folder.display()
        );
        if let Some(j) = &self.job {
            let _ = writeln!(s, "job:         {j}");
        }
        let _ = writeln!(
            s,
            "checked:     {}\nfingerprint: {}\n\n\
             Fix what is listed below in the folder (replace or rename a file, or\n\
             save it again): stemforge checks the folder again once it has changed\n\
             and settled. Until then it is not submitted again. This file is\n\
             rewritten on every failure and removed once the title is delivered.\n",
            deliverables_spec::timestamp::rfc3339_utc(now_ms()),
            &self.fingerprint[..self.fingerprint.len().min(16)]
        );
        if self.items.is_empty() {
            let _ = writeln!(s, "(no details: see `stemforge status` for the job)");
        }
        for i in &self.items {
            let files = if i.files.is_empty() {
                String::new()
            } else {
                format!(" [{}]", i.files.join(", "))
            };
            let _ = writeln!(s, "{:<8} {}{files}\n  {}", i.severity, i.check, i.message);
            if !i.fix.is_empty() {
                let _ = writeln!(s, "  fix: {}", i.fix);
            }
        }
        s
    }
}

/// A failed or cancelled job's findings: the manifest's preflight findings
/// and title errors, then the tasks' own errors.
pub(super) fn job_findings(
    w: &Watch,
    title: &str,
    job: &str,
    state: deliverables_spec::contract::JobState,
    st: &stemforge_proto::v1::JobStatus,
    fingerprint: &str,
) -> Report {
    let mut r = Report::new(w, title, fingerprint);
    r.job = Some(job.to_string());
    r.headline = if state == deliverables_spec::contract::JobState::Cancelled {
        "its job was cancelled".into()
    } else {
        "its job failed".into()
    };
    let mut preflight_failed = false;
    if let Some(m) = read_manifest(&st.manifest_path) {
        for t in &m.titles {
            if let Some(p) = &t.preflight {
                for f in &p.findings {
                    preflight_failed |= f.severity == deliverables_spec::preflight::Severity::Error;
                    r.items.push(Item {
                        severity: f.severity.as_str().into(),
                        check: format!("preflight {}", f.check),
                        files: f.files.clone(),
                        message: f.message.clone(),
                        fix: f.fix.clone(),
                    });
                }
            }
            // A title failed by its preflight errors says them again: left out.
            if let Some(e) = t.error.as_ref().filter(|_| !preflight_failed) {
                r.items.push(Item::error("title", e.clone(), ""));
            }
        }
    }
    if preflight_failed {
        r.headline = "it failed preflight".into();
    }
    for t in st.tasks.iter().filter(|_| !preflight_failed) {
        if !t.error.is_empty()
            && stemforge_proto::states::task_state(t.state)
                == Some(deliverables_spec::contract::TaskState::Failed)
        {
            r.items.push(Item::error(
                &format!("task {}", t.label),
                t.error.clone(),
                "",
            ));
        }
    }
    // Errors first, as the preflight report orders them.
    r.items.sort_by_key(|i| i.severity != "error");
    r
}

fn read_manifest(path: &str) -> Option<deliverables_spec::manifest::Manifest> {
    if path.is_empty() {
        return None;
    }
    let len = std::fs::metadata(path).ok()?.len();
    if len > MAX_MANIFEST_BYTES {
        warn!(
            manifest = path,
            bytes = len,
            "hot folder: manifest too large to read for findings"
        );
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes)
        .map_err(|e| warn!(manifest = path, error = %e, "hot folder: cannot read the manifest for findings"))
        .ok()
}

/// `<watch folder>/<title>.stemforge-findings.txt`.
pub fn findings_path(root: &Path, title: &str) -> PathBuf {
    root.join(format!("{title}{FINDINGS_SUFFIX}"))
}

/// Writes a findings file atomically: a hidden temporary file beside it,
/// fsynced, renamed over it, the folder fsynced. The drop folder is writable
/// by others: the temporary file has a fresh name and is created only if
/// nothing (no file, no symbolic link) has that name, so a planted link
/// never makes the coordinator write elsewhere; `rename` replaces a link at
/// the final name rather than following it.
pub(super) fn write_findings(root: &Path, title: &str, body: &str) -> std::io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = findings_path(root, title);
    let mut attempt = 0;
    let (tmp, mut f) = loop {
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = root.join(format!(
            ".{title}{FINDINGS_SUFFIX}.{}-{n}-{nanos}.tmp",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let written = (|| {
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    })();
    drop(f);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = std::fs::File::open(root) {
        let _ = d.sync_all();
    }
    Ok(())
}

pub(super) fn remove_findings(root: &Path, title: &str) -> std::io::Result<()> {
    match std::fs::remove_file(findings_path(root, title)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
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

    #[test]
    fn findings_are_written_atomically_beside_the_folder() {
        let d = tmp("findings");
        write_findings(&d, "Song", "first\n").unwrap();
        write_findings(&d, "Song", "second\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(findings_path(&d, "Song")).unwrap(),
            "second\n"
        );
        let names: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
        remove_findings(&d, "Song").unwrap();
        remove_findings(&d, "Song").unwrap();
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_planted_symbolic_link_is_replaced_not_followed() {
        let d = tmp("findings-link");
        let victim = d.join("victim.txt");
        std::fs::write(&victim, "keep me\n").unwrap();
        std::os::unix::fs::symlink(&victim, findings_path(&d, "Song")).unwrap();
        write_findings(&d, "Song", "findings\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        let p = findings_path(&d, "Song");
        assert!(
            !std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "findings\n");
        let _ = std::fs::remove_dir_all(&d);
    }
}
