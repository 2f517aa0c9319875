//! The render cache: what earlier jobs made, kept by content key, so a job
//! reuses an output (or a preflight report, an analysis result, a pack's
//! ceiling decision) made from the same inputs through the same graph and
//! delivery by the same build, instead of making it again.
//!
//! Rules:
//! - A key is the SHA-256 of everything that can change a bit of what it
//!   names: the build ([`tool_id`]: version and the executable's own
//!   hash), the kind of entry and a recipe the caller serialises (input
//!   audio hashes, resolved graph, gains, delivery…). A recipe that misses
//!   an input would deliver a stale file, so callers put in what the code
//!   path reads, not what seems to matter.
//! - The cache is an optimisation, never a source of failure: an error
//!   opening, reading or writing it is logged and the work is done as if
//!   it missed. A cached file is verified by checksum before it is used;
//!   one that does not verify is forgotten.
//! - Bounded: after every store, entries are evicted least recently used
//!   first until the cache is under its size (`cache_max_gb`).
//! - Layout: `index.sqlite` (one row per entry: kind, bytes, the JSON
//!   value, the job that made it, created / last used, hits) and
//!   `outputs/ab/KEY.wav`. Outputs enter by hard link from the delivered
//!   file (a copy across file systems); a delivered file is only ever
//!   replaced by rename, never written in place, so the link stays intact.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Bumped whenever a recipe's meaning changes without the build changing.
const KEY_SCHEMA: &str = "stemforge-cache-1";

/// Where a job's cache is and how large it may grow.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("render cache '{}': {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("render cache index '{}': {source} (remove the file to start the cache afresh)", .path.display())]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// What kind of thing an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Output,
    Preflight,
    Analysis,
    /// A pack's ceiling decision, for packs the render had to trim.
    Pack,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Output => "output",
            EntryKind::Preflight => "preflight",
            EntryKind::Analysis => "analysis",
            EntryKind::Pack => "pack",
        }
    }
}

/// An entry found.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: serde_json::Value,
    /// The job that made it.
    pub job: String,
    /// The kept file (outputs).
    pub file: Option<PathBuf>,
}

/// The identity of this build: the crate version and the first 16 hex
/// digits of the running executable's SHA-256, so a rebuilt binary never
/// serves what an older one made. `None` when the executable cannot be
/// read: then nothing is cached.
pub fn tool_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        let exe = std::env::current_exe().ok()?;
        let hash = crate::output::sha256_of(&exe).ok()?;
        Some(format!(
            "{}+{}",
            env!("CARGO_PKG_VERSION"),
            hash.get(..16).unwrap_or(&hash)
        ))
    })
    .as_deref()
}

/// The key of a recipe of `kind` (64 hex digits); `None` when the build
/// cannot be identified.
pub fn key(kind: EntryKind, recipe: &impl Serialize) -> Option<String> {
    let tool = tool_id()?;
    let json = serde_json::to_vec(recipe).ok()?;
    let mut h = Sha256::new();
    for part in [
        KEY_SCHEMA.as_bytes(),
        tool.as_bytes(),
        kind.as_str().as_bytes(),
    ] {
        h.update(part);
        h.update([0u8]);
    }
    h.update(&json);
    Some(hex::encode(h.finalize()))
}

/// Totals of a cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CacheStats {
    pub dir: String,
    pub max_bytes: u64,
    pub entries: u64,
    pub bytes: u64,
    /// Entries, bytes and hits per kind.
    pub kinds: Vec<KindStats>,
    /// Unix ms of the least and most recently used entry.
    pub oldest_use_ms: Option<i64>,
    pub newest_use_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindStats {
    pub kind: String,
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
}

pub struct RenderCache {
    dir: PathBuf,
    max_bytes: u64,
    db: Connection,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl RenderCache {
    /// Opens (creating) the cache at `cfg.dir`.
    pub fn open(cfg: &CacheConfig) -> Result<RenderCache, CacheError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        std::fs::create_dir_all(cfg.dir.join("outputs")).map_err(io(&cfg.dir))?;
        let index = cfg.dir.join("index.sqlite");
        let dberr = |source| CacheError::Db {
            path: index.clone(),
            source,
        };
        let db = Connection::open(&index).map_err(dberr)?;
        // Several workers (threads, processes, hosts on a shared mount)
        // share one cache: a rollback journal, which network file systems
        // support (a write-ahead log needs shared memory on one host).
        db.busy_timeout(Duration::from_secs(30)).map_err(dberr)?;
        db.pragma_update(None, "journal_mode", "DELETE")
            .map_err(dberr)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (
                key TEXT PRIMARY KEY,
                kind TEXT NOT NULL,
                bytes INTEGER NOT NULL,
                value TEXT NOT NULL,
                job TEXT NOT NULL,
                created_ms INTEGER NOT NULL,
                last_used_ms INTEGER NOT NULL,
                hits INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX IF NOT EXISTS entries_by_use ON entries(last_used_ms, key);
            -- The total size, kept by triggers: eviction reads one row, not
            -- every entry.
            CREATE TABLE IF NOT EXISTS totals (
                id INTEGER PRIMARY KEY CHECK (id = 0),
                bytes INTEGER NOT NULL
            );
            INSERT OR IGNORE INTO totals VALUES (0, (SELECT COALESCE(SUM(bytes), 0) FROM entries));
            CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries
                BEGIN UPDATE totals SET bytes = bytes + NEW.bytes WHERE id = 0; END;
            CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries
                BEGIN UPDATE totals SET bytes = bytes - OLD.bytes WHERE id = 0; END;
            CREATE TRIGGER IF NOT EXISTS entries_resized AFTER UPDATE OF bytes ON entries
                BEGIN UPDATE totals SET bytes = bytes - OLD.bytes + NEW.bytes WHERE id = 0; END;",
        )
        .map_err(dberr)?;
        Ok(RenderCache {
            dir: cfg.dir.clone(),
            max_bytes: cfg.max_bytes,
            db,
        })
    }

    /// Opens the cache a lease names, or logs why not and returns `None`
    /// (work goes on uncached). The folder must exist: the coordinator
    /// made it; a worker that does not see it (another host without the
    /// shared mount) renders everything rather than start a cache of its
    /// own at that path.
    pub fn open_or_warn(cfg: &CacheConfig) -> Option<RenderCache> {
        if !cfg.dir.join("index.sqlite").is_file() {
            tracing::warn!(
                dir = %cfg.dir.display(),
                "the render cache the coordinator names is not reachable from this worker (share its folder to use it): rendering without it"
            );
            return None;
        }
        match RenderCache::open(cfg) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("rendering without the cache: {e}");
                None
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file_of(&self, key: &str) -> PathBuf {
        self.dir
            .join("outputs")
            .join(key.get(..2).unwrap_or("00"))
            .join(format!("{key}.wav"))
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.sqlite")
    }

    fn db_err(&self) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        move |source| CacheError::Db {
            path: self.index_path(),
            source,
        }
    }

    /// The entry under `key`, marked used. An output whose kept file is
    /// gone is forgotten and reads as a miss.
    pub fn get(&self, kind: EntryKind, key: &str) -> Option<Entry> {
        match self.try_get(kind, key) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("render cache lookup failed, treated as a miss: {e}");
                None
            }
        }
    }

    fn try_get(&self, kind: EntryKind, key: &str) -> Result<Option<Entry>, CacheError> {
        let row: Option<(String, String)> = self
            .db
            .query_row(
                "SELECT value, job FROM entries WHERE key = ?1 AND kind = ?2",
                params![key, kind.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.db_err())?;
        let Some((value, job)) = row else {
            return Ok(None);
        };
        let Ok(value) = serde_json::from_str(&value) else {
            self.forget(key);
            return Ok(None);
        };
        let file = (kind == EntryKind::Output).then(|| self.file_of(key));
        if let Some(f) = &file
            && !f.is_file()
        {
            self.forget(key);
            return Ok(None);
        }
        self.db
            .execute(
                "UPDATE entries SET last_used_ms = ?2, hits = hits + 1 WHERE key = ?1",
                params![key, now_ms()],
            )
            .map_err(self.db_err())?;
        Ok(Some(Entry { value, job, file }))
    }

    /// Keeps `value` (and for an output, `file`) under `key`, then evicts
    /// down to the cache's size. Failures are logged, never returned.
    pub fn put(
        &self,
        kind: EntryKind,
        key: &str,
        job: &str,
        value: &impl Serialize,
        file: Option<&Path>,
    ) {
        if let Err(e) = self.try_put(kind, key, job, value, file) {
            tracing::warn!("render cache: could not keep an entry: {e}");
        }
    }

    fn try_put(
        &self,
        kind: EntryKind,
        key: &str,
        job: &str,
        value: &impl Serialize,
        file: Option<&Path>,
    ) -> Result<(), CacheError> {
        let value = serde_json::to_string(value).map_err(|e| CacheError::Io {
            path: self.index_path(),
            source: std::io::Error::other(e),
        })?;
        let mut bytes = value.len() as u64;
        if let Some(src) = file {
            let dest = self.file_of(key);
            let io = |path: &Path| {
                let path = path.to_path_buf();
                move |source| CacheError::Io { path, source }
            };
            let dir = dest.parent().unwrap_or(&self.dir);
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let temp = crate::output::TempFile::name_for(&dest);
            if std::fs::hard_link(src, &temp).is_err() {
                std::fs::copy(src, &temp).map_err(io(&temp))?;
            }
            let guard = crate::output::TempFile::adopt(temp);
            bytes += std::fs::metadata(guard.path()).map_err(io(&dest))?.len();
            guard.persist(&dest).map_err(io(&dest))?;
        }
        let now = now_ms();
        self.db
            .execute(
                "INSERT INTO entries (key, kind, bytes, value, job, created_ms, last_used_ms, hits)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 0)
                 ON CONFLICT(key) DO UPDATE SET kind = ?2, bytes = ?3, value = ?4, job = ?5,
                     created_ms = ?6, last_used_ms = ?6",
                params![
                    key,
                    kind.as_str(),
                    i64::try_from(bytes).unwrap_or(i64::MAX),
                    value,
                    job,
                    now
                ],
            )
            .map_err(self.db_err())?;
        self.evict_to(self.max_bytes)?;
        Ok(())
    }

    /// Forgets an entry (a kept file that did not verify, say).
    pub fn forget(&self, key: &str) {
        let _ = std::fs::remove_file(self.file_of(key));
        if let Err(e) = self
            .db
            .execute("DELETE FROM entries WHERE key = ?1", params![key])
        {
            tracing::warn!("render cache: could not forget an entry: {e}");
        }
    }

    /// Evicts least recently used entries until the cache holds at most
    /// `max_bytes`. Returns the entries and bytes removed.
    pub fn evict_to(&self, max_bytes: u64) -> Result<(u64, u64), CacheError> {
        let total: i64 = self
            .db
            .query_row("SELECT bytes FROM totals WHERE id = 0", [], |r| r.get(0))
            .map_err(self.db_err())?;
        let mut over = u64::try_from(total).unwrap_or(0).saturating_sub(max_bytes);
        let (mut entries, mut freed) = (0u64, 0u64);
        while over > 0 {
            // A page at a time, oldest use first: the index orders them.
            let page: Vec<(String, i64)> = {
                let mut q = self
                    .db
                    .prepare("SELECT key, bytes FROM entries ORDER BY last_used_ms, key LIMIT 256")
                    .map_err(self.db_err())?;
                q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(self.db_err())?
                    .collect::<Result<_, _>>()
                    .map_err(self.db_err())?
            };
            if page.is_empty() {
                break;
            }
            for (key, bytes) in page {
                if over == 0 {
                    break;
                }
                let bytes = u64::try_from(bytes).unwrap_or(0);
                self.forget(&key);
                over = over.saturating_sub(bytes);
                entries += 1;
                freed += bytes;
            }
        }
        if entries > 0 {
            tracing::info!(
                entries,
                bytes = freed,
                "render cache: evicted least recently used"
            );
        }
        Ok((entries, freed))
    }

    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        let mut q = self
            .db
            .prepare(
                "SELECT kind, COUNT(*), COALESCE(SUM(bytes), 0), COALESCE(SUM(hits), 0)
                 FROM entries GROUP BY kind ORDER BY kind",
            )
            .map_err(self.db_err())?;
        let kinds: Vec<KindStats> = q
            .query_map([], |r| {
                Ok(KindStats {
                    kind: r.get(0)?,
                    entries: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    bytes: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    hits: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                })
            })
            .map_err(self.db_err())?
            .collect::<Result<_, _>>()
            .map_err(self.db_err())?;
        let (oldest, newest): (Option<i64>, Option<i64>) = self
            .db
            .query_row(
                "SELECT MIN(last_used_ms), MAX(last_used_ms) FROM entries",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.db_err())?;
        Ok(CacheStats {
            dir: self.dir.display().to_string(),
            max_bytes: self.max_bytes,
            entries: kinds.iter().map(|k| k.entries).sum(),
            bytes: kinds.iter().map(|k| k.bytes).sum(),
            kinds,
            oldest_use_ms: oldest,
            newest_use_ms: newest,
        })
    }
}

/// The per-user cache folder of a local `stemforge render`:
/// `$XDG_CACHE_HOME/stemforge`, else `~/.cache/stemforge`.
pub fn user_cache_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    from("XDG_CACHE_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("stemforge"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, max_bytes: u64) -> RenderCache {
        RenderCache::open(&CacheConfig {
            dir: dir.to_path_buf(),
            max_bytes,
        })
        .expect("open cache")
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("stemforge-cache-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch");
        d
    }

    #[test]
    fn keys_change_with_every_part_of_the_recipe() {
        let a = key(EntryKind::Output, &("x", 1)).expect("key");
        assert_eq!(a.len(), 64);
        assert_eq!(Some(a.clone()), key(EntryKind::Output, &("x", 1)));
        assert_ne!(Some(a.clone()), key(EntryKind::Output, &("x", 2)));
        assert_ne!(Some(a), key(EntryKind::Analysis, &("x", 1)));
    }

    #[test]
    fn results_and_files_round_trip_and_missing_files_miss() {
        let d = scratch("rt");
        let c = cache(&d.join("c"), u64::MAX);
        assert!(c.get(EntryKind::Analysis, "k1").is_none());
        c.put(
            EntryKind::Analysis,
            "k1",
            "job-a",
            &serde_json::json!({"g": 1.5}),
            None,
        );
        let e = c.get(EntryKind::Analysis, "k1").expect("hit");
        assert_eq!(e.value["g"], 1.5);
        assert_eq!(e.job, "job-a");
        // The wrong kind never answers.
        assert!(c.get(EntryKind::Output, "k1").is_none());

        let f = d.join("out.wav");
        std::fs::write(&f, b"RIFF....").expect("write");
        c.put(
            EntryKind::Output,
            "k2",
            "job-b",
            &serde_json::json!({}),
            Some(&f),
        );
        let e = c.get(EntryKind::Output, "k2").expect("hit");
        let kept = e.file.expect("file");
        assert_eq!(std::fs::read(&kept).expect("read"), b"RIFF....");
        // The delivered file replaced by rename leaves the kept one intact.
        let t = d.join("tmp.wav");
        std::fs::write(&t, b"other").expect("write");
        std::fs::rename(&t, &f).expect("rename");
        assert_eq!(std::fs::read(&kept).expect("read"), b"RIFF....");
        std::fs::remove_file(&kept).expect("rm");
        assert!(c.get(EntryKind::Output, "k2").is_none());
        let s = c.stats().expect("stats");
        assert_eq!(s.entries, 1, "{s:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn eviction_removes_least_recently_used_first() {
        let d = scratch("lru");
        let c = cache(&d.join("c"), u64::MAX);
        let payload = serde_json::json!({"pad": "x".repeat(1000)});
        for k in ["a", "b", "c"] {
            c.put(EntryKind::Analysis, k, "j", &payload, None);
            std::thread::sleep(Duration::from_millis(5));
        }
        // `a` used again: `b` is now the least recently used.
        assert!(c.get(EntryKind::Analysis, "a").is_some());
        let one = c.stats().expect("stats").bytes / 3;
        let (n, freed) = c.evict_to(2 * one).expect("evict");
        assert_eq!((n, freed), (1, one));
        assert!(c.get(EntryKind::Analysis, "b").is_none());
        assert!(c.get(EntryKind::Analysis, "a").is_some());
        assert!(c.get(EntryKind::Analysis, "c").is_some());
        // The kept total follows inserts, replacements and deletions.
        c.put(
            EntryKind::Analysis,
            "c",
            "j2",
            &serde_json::json!({"pad": "y"}),
            None,
        );
        let total: i64 =
            c.db.query_row("SELECT bytes FROM totals", [], |r| r.get(0))
                .expect("total");
        assert_eq!(total as u64, c.stats().expect("stats").bytes);
        c.evict_to(0).expect("evict all");
        assert_eq!(c.stats().expect("stats").entries, 0);
        let _ = std::fs::remove_dir_all(&d);
    }
}
