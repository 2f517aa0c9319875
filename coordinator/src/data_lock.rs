//! One coordinator per data directory: an exclusive advisory lock
//! (`flock`, through `std::fs::File::try_lock`) on `DATA_DIR/coordinator.lock`,
//! taken before the job store is opened and held until the process ends. The
//! kernel drops the lock when the process dies, however it dies, so a lock
//! file left by a killed coordinator never blocks a restart. The file's text
//! (pid, host, start time of the holder) only explains a refusal; the lock
//! itself is the only thing that decides.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// The lock file inside the data directory.
pub const LOCK_FILE: &str = "coordinator.lock";

/// How long a refused coordinator waits for the holder to write its
/// details (it writes them right after locking).
const HOLDER_TEXT_WAIT: Duration = Duration::from_millis(500);

/// The held lock: dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    path: PathBuf,
    /// Kept open for the life of the lock; closing it unlocks.
    _file: File,
}

/// Who holds a data directory, as its lock file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub host: Option<String>,
    pub started: Option<String>,
}

impl Holder {
    /// This process, now.
    fn this_process() -> Holder {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Holder {
            pid: Some(std::process::id()),
            host: Some(host_name()),
            started: Some(deliverables_spec::timestamp::rfc3339_utc(unix_ms)),
        }
    }

    fn to_text(&self) -> String {
        let mut s = String::new();
        if let Some(pid) = self.pid {
            s.push_str(&format!("pid {pid}\n"));
        }
        if let Some(host) = &self.host {
            s.push_str(&format!("host {host}\n"));
        }
        if let Some(started) = &self.started {
            s.push_str(&format!("started {started}\n"));
        }
        s
    }

    /// Reads what [`Holder::to_text`] wrote; unknown or malformed lines are
    /// skipped (the file is only an explanation, never trusted for a decision).
    fn parse(text: &str) -> Holder {
        let mut h = Holder::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            let value = value.trim();
            match key {
                "pid" => h.pid = value.parse().ok(),
                "host" if !value.is_empty() => h.host = Some(value.to_string()),
                "started" if !value.is_empty() => h.started = Some(value.to_string()),
                _ => {}
            }
        }
        h
    }

    fn describe(&self) -> String {
        let pid = self
            .pid
            .map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}"));
        let host = self.host.as_deref().unwrap_or("an unknown host");
        match &self.started {
            Some(t) => format!("{pid} on {host}, started {t}"),
            None => format!("{pid} on {host}"),
        }
    }
}

impl DataDirLock {
    /// Locks `data_dir` (which must exist) for this process, or refuses
    /// naming the coordinator that holds it and what to do.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock> {
        let path = data_dir.join(LOCK_FILE);
        // Never truncate on open: until the lock is ours, the text is the
        // holder's explanation for whoever is refused.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                anyhow::bail!(
                    "another coordinator ({}) is using the data directory {}: stop that coordinator first, or give this one another --data-dir",
                    holder.describe(),
                    data_dir.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot lock {} (the data directory must be on a file system that supports file locks)",
                        path.display()
                    )
                });
            }
        }
        let text = Holder::this_process().to_text();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot write the lock file {}", path.display()))?;
        Ok(DataDirLock { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The holder's details; it writes them just after locking, so an empty
/// file is read again for a moment before giving up on them.
fn read_holder(file: &mut File) -> Holder {
    let start = Instant::now();
    loop {
        let mut text = String::new();
        let read = file
            .seek(SeekFrom::Start(0))
            .and_then(|_| file.read_to_string(&mut text));
        let holder = Holder::parse(&text);
        if read.is_err() || holder.pid.is_some() || start.elapsed() >= HOLDER_TEXT_WAIT {
            return holder;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// This machine's name (the kernel's, else `/etc/hostname`, else `$HOSTNAME`).
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .chain(std::env::var("HOSTNAME").ok())
        .find(|s| !s.is_empty() && !s.contains(char::is_whitespace))
        .unwrap_or_else(|| "unknown-host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("stemforge-lock-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create dir");
        Dir(d)
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let d = dir("second");
        let first = DataDirLock::acquire(&d.0).expect("first lock");
        let text = std::fs::read_to_string(first.path()).expect("read lock file");
        let me = Holder::parse(&text);
        assert_eq!(me.pid, Some(std::process::id()), "{text}");
        assert!(me.host.is_some() && me.started.is_some(), "{text}");
        // A second open file description conflicts even in the same process.
        let e = DataDirLock::acquire(&d.0)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            e.contains(&format!("pid {}", std::process::id()))
                && e.contains(&d.0.display().to_string())
                && e.contains("--data-dir"),
            "{e}"
        );
        drop(first);
        assert!(DataDirLock::acquire(&d.0).is_ok());
    }

    #[test]
    fn a_left_over_lock_file_does_not_block() {
        let d = dir("stale");
        std::fs::write(d.0.join(LOCK_FILE), "pid 1\nhost elsewhere\n").expect("write");
        let l = DataDirLock::acquire(&d.0).expect("an unlocked file is free");
        let text = std::fs::read_to_string(l.path()).expect("read");
        assert!(!text.contains("elsewhere"), "{text}");
    }

    #[test]
    fn holder_text_round_trips_and_garbage_is_ignored() {
        let h = Holder {
            pid: Some(42),
            host: Some("box".into()),
            started: Some("2024-01-02T03:04:05Z".into()),
        };
        assert_eq!(Holder::parse(&h.to_text()), h);
        assert_eq!(Holder::parse("pid x\n\0\nhost \n"), Holder::default());
        assert_eq!(
            Holder::default().describe(),
            "pid unknown on an unknown host"
        );
    }
}
