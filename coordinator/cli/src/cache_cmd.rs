//! `stemforge cache stats|prune`: what the render cache holds, and making
//! it smaller.

use std::path::PathBuf;

use anyhow::Context;
use stemforge_coordinator::settings::Settings;
use stemforge_worker::cache::{CacheConfig, CacheStats, RenderCache};

/// The cache a command works on: `--dir`, else the configured or per-user one.
pub fn config(settings: &Settings, dir: Option<PathBuf>) -> anyhow::Result<CacheConfig> {
    let dir = match dir {
        Some(d) => d,
        None => settings
            .local_cache_location()
            .context(
                "no cache folder: set `cache_dir` (config or STEMFORGE_CACHE_DIR) or pass --dir",
            )?
            .dir,
    };
    Ok(CacheConfig {
        dir,
        max_bytes: settings.cache_max_bytes(),
    })
}

pub fn open(cfg: &CacheConfig) -> anyhow::Result<RenderCache> {
    if !cfg.dir.join("index.sqlite").is_file() {
        anyhow::bail!(
            "'{}' holds no render cache (a render with the cache on makes one; a coordinator's is DATA_DIR/cache: pass --dir)",
            cfg.dir.display()
        );
    }
    Ok(RenderCache::open(cfg)?)
}

/// Human-readable bytes.
fn size(b: u64) -> String {
    match b {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

pub fn stats_text(s: &CacheStats) -> String {
    let mut out = format!(
        "render cache {}\n{} entries, {} of {} allowed\n",
        s.dir,
        s.entries,
        size(s.bytes),
        size(s.max_bytes)
    );
    if !s.kinds.is_empty() {
        out.push_str(&format!(
            "{:<10} {:>8} {:>12} {:>8}\n",
            "kind", "entries", "size", "hits"
        ));
        for k in &s.kinds {
            out.push_str(&format!(
                "{:<10} {:>8} {:>12} {:>8}\n",
                k.kind,
                k.entries,
                size(k.bytes),
                k.hits
            ));
        }
    }
    let when = |ms: Option<i64>| {
        ms.map_or("-".to_string(), |ms| {
            let c = deliverables_spec::timestamp::civil(ms / 1000);
            format!("{} {} UTC", c.date(), c.time())
        })
    };
    if s.entries > 0 {
        out.push_str(&format!(
            "least recently used {} · most recently used {}\n",
            when(s.oldest_use_ms),
            when(s.newest_use_ms)
        ));
    }
    out
}

/// Evicts least recently used entries down to `max_bytes`; returns the
/// entries and bytes removed, and the cache's totals after.
pub fn prune(cache: &RenderCache, max_bytes: u64) -> anyhow::Result<(u64, u64, CacheStats)> {
    let (n, freed) = cache.evict_to(max_bytes)?;
    Ok((n, freed, cache.stats()?))
}

pub fn pruned_text(n: u64, freed: u64, after: &CacheStats) -> String {
    format!(
        "removed {n} entries ({}); {} entries, {} left\n",
        size(freed),
        after.entries,
        size(after.bytes)
    )
}
