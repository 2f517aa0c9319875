//! The two long-running roles of the binary: `stemforge coordinator` (the
//! gRPC services over a durable SQLite job store) and `stemforge worker`
//! (pulls tasks from a coordinator). Both stop cleanly on SIGTERM or Ctrl-C.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::server::{Coordinator, serve};
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

/// Runs a coordinator until a shutdown signal. Prints
/// `stemforge coordinator listening on http://ADDR` once it accepts work.
pub async fn run_coordinator(settings: &Settings, listen: &str, data_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let db = data_dir.join(DB_FILE);
    let store = SqliteStore::open(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let store = CachedStore::load(Box::new(store)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let coord = Coordinator::new(
        Box::new(store),
        settings.scheduler(),
        settings.media_roots(),
    );
    if settings.media_roots().is_empty() {
        tracing::warn!(
            "no media_roots configured: submitted specs may read any file this coordinator's workers can; set media_roots (or STEMFORGE_MEDIA_ROOTS) on a shared coordinator"
        );
    }
    // Leases that lapsed while no coordinator ran are requeued at once.
    let requeued = coord.sweep();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "stemforge coordinator listening on http://{addr}");
    let _ = out.flush();
    drop(out);
    info!(%addr, db = %db.display(), requeued, "coordinator started");
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(serve(coord, listener, stop_rx));
    shutdown_signal().await;
    info!("shutting down");
    let _ = stop_tx.send(true);
    server
        .await
        .context("coordinator task")?
        .context("coordinator server")?;
    Ok(())
}

/// Runs one worker process until a shutdown signal; a task in flight is
/// cancelled (its temporary files removed) and left to its lease.
pub async fn run_worker(settings: &Settings, url: &str, worker_id: &str) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let opts = stemforge_worker::service::WorkerOptions {
        worker_id: worker_id.to_string(),
        poll_wait_ms: settings.poll_wait_ms,
    };
    let worker = tokio::spawn(stemforge_worker::service::run_worker(
        url.to_string(),
        opts,
        stop_rx,
    ));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    worker
        .await
        .context("worker task")?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
