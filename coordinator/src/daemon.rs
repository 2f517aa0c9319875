//! The two long-running roles of the binary: `stemforge coordinator` (the
//! gRPC services over a durable SQLite job store) and `stemforge worker`
//! (pulls tasks from a coordinator). Both stop cleanly on SIGTERM or Ctrl-C.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::data_lock::DataDirLock;
use crate::security::{Role, exposure_check, metrics_exposure_check};
use crate::server::{Coordinator, ServeOptions, serve};
use crate::settings::Settings;
use crate::sqlite_store::SqliteStore;
use crate::store::CachedStore;

/// The job database inside the data directory.
pub const DB_FILE: &str = "jobs.sqlite";

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What `stemforge coordinator` is told on its command line, over the
/// settings.
pub struct CoordinatorArgs<'a> {
    pub listen: &'a str,
    pub data_dir: &'a Path,
    /// Prometheus `/metrics` address (empty: off).
    pub metrics_listen: &'a str,
    pub allow_insecure: bool,
    /// A non-loopback `metrics_listen` is meant (`metrics_public`).
    pub metrics_public: bool,
}

/// Runs a coordinator until a shutdown signal. Refuses to start when another
/// coordinator holds the data directory (`DATA_DIR/coordinator.lock`). Prints
/// `stemforge coordinator listening on http(s)://ADDR` once it accepts work.
/// On SIGTERM it stops handing out work, drains in-flight calls and closes
/// the store; a restart on the same data directory resumes every job.
pub async fn run_coordinator(settings: &Settings, args: &CoordinatorArgs<'_>) -> Result<()> {
    let data_dir = args.data_dir;
    let tls = settings.server_tls()?;
    let auth = settings.auth()?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    // One coordinator per data directory: the lock is taken before anything
    // else is bound or opened and held until this function returns (the
    // kernel releases it if the process dies).
    let lock = DataDirLock::acquire(data_dir)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    exposure_check(addr, tls.is_some(), &auth, args.allow_insecure)?;
    let tls_config = tls.as_ref().map(|t| t.config()).transpose()?;
    // Both listeners are checked before the store is opened, so a refused
    // configuration leaves the job store untouched.
    let metrics = if args.metrics_listen.is_empty() {
        None
    } else {
        let l = TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| format!("cannot serve metrics on {}", args.metrics_listen))?;
        let maddr = l.local_addr()?;
        metrics_exposure_check(maddr, args.metrics_public || args.allow_insecure)?;
        Some((maddr, l))
    };

    // Hot folders are checked before the store is opened too: a bad
    // `[[watch]]` entry stops the start with its field named.
    let watches = crate::watch::validate(&settings.watch, &settings.media_roots())?;

    let db = data_dir.join(DB_FILE);
    let store = SqliteStore::open(&db)?;
    let store = CachedStore::load(Box::new(store))?;
    // Workers are told the cache's absolute path in every lease.
    let cache = settings.coordinator_cache(
        &std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
    );
    // Made here, so workers only ever use a cache that exists.
    let cache = cache.filter(|c| match stemforge_worker::cache::RenderCache::open(c) {
        Ok(_) => {
            info!(dir = %c.dir.display(), max_gb = c.max_bytes as f64 / 1e9, "render cache");
            true
        }
        Err(e) => {
            tracing::warn!("render cache off: {e}");
            false
        }
    });
    let coord = Coordinator::new(
        Box::new(store),
        settings.scheduler(),
        settings.media_roots(),
        cache,
    );
    if settings.media_roots().is_empty() {
        tracing::warn!(
            "no media_roots configured: submitted specs may read and write any file this coordinator's workers can; set media_roots (or STEMFORGE_MEDIA_ROOTS) on a shared coordinator"
        );
    }
    let epoch = coord
        .start_epoch()
        .map_err(|e| anyhow::anyhow!("starting on {}: {}", db.display(), e.message()))?;
    info!(epoch, "coordinator epoch");
    // Leases that lapsed while no coordinator ran are requeued at once.
    let requeued = coord.sweep();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Scripts and tests read these lines: the API address first.
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "stemforge coordinator listening on {scheme}://{addr}");
    if let Some((maddr, _)) = &metrics {
        let _ = writeln!(out, "stemforge metrics on http://{maddr}/metrics");
    }
    let _ = out.flush();
    drop(out);
    let metrics = metrics.map(|(_, l)| {
        tokio::spawn(crate::metrics_http::serve(
            coord.clone(),
            l,
            stop_rx.clone(),
        ))
    });
    info!(%addr, db = %db.display(), lock = %lock.path().display(), requeued, tls = tls.is_some(), "coordinator started");
    let opts = ServeOptions {
        tls: tls_config,
        auth,
        drain: Some(settings.drain_timeout()),
    };
    let watch_tasks = crate::watch::start(coord.clone(), watches, data_dir, stop_rx.clone())?;
    let server = tokio::spawn(serve(coord, listener, stop_rx, opts));
    shutdown_signal().await;
    info!("SIGTERM/interrupt: shutting down");
    let _ = stop_tx.send(true);
    // Hot folders stop before the store closes (no submission after it);
    // a scan stuck on an unresponsive network mount is not waited for long.
    for t in watch_tasks {
        if tokio::time::timeout(std::time::Duration::from_secs(10), t)
            .await
            .is_err()
        {
            tracing::warn!(
                "a hot folder did not stop within 10 s (a scan stuck on its file system?)"
            );
        }
    }
    server.await.context("coordinator task")?.map_err(|e| {
        anyhow::anyhow!(
            "coordinator server: {}",
            stemforge_proto::client::error_chain(&e)
        )
    })?;
    if let Some(m) = metrics {
        let _ = m.await;
    }
    info!("coordinator stopped");
    drop(lock);
    Ok(())
}

/// Runs one worker process until a shutdown signal. The task in hand may
/// finish within `drain_timeout_s`; after that (or at a second signal) it
/// is stopped, its temporary files removed and its lease handed back.
pub async fn run_worker(settings: &Settings, url: &str, worker_id: &str) -> Result<()> {
    let endpoint = settings.endpoint(url, Role::Worker)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut opts = stemforge_worker::service::WorkerOptions::new(worker_id, settings.poll_wait_ms);
    opts.drain = settings.drain_timeout();
    opts.media_roots = settings.media_roots();
    if opts.media_roots.is_empty() {
        tracing::warn!(
            "no media_roots configured: this worker reads and writes wherever a spec says; set media_roots (or STEMFORGE_MEDIA_ROOTS)"
        );
    }
    let mut worker = tokio::spawn(stemforge_worker::service::run_worker(
        endpoint, opts, stop_rx,
    ));
    tokio::select! {
        r = &mut worker => {
            return Ok(r.context("worker task")??);
        }
        _ = shutdown_signal() => {}
    }
    let _ = stop_tx.send(true);
    // A second signal does not wait for the drain: the service sees the
    // sender dropped and hands back at once.
    tokio::select! {
        r = &mut worker => {
            return Ok(r.context("worker task")??);
        }
        _ = shutdown_signal() => {
            tracing::warn!("second signal: stopping the task in hand now");
            drop(stop_tx);
        }
    }
    worker.await.context("worker task")??;
    Ok(())
}
