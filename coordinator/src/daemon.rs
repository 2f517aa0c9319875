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
    // Schedules and webhooks are checked before anything is bound or
    // opened: a bad one refuses to start. Their relative paths are read
    // against the config file's folder.
    let config_base = crate::schedules::config_base(settings.config_file.as_deref());
    let schedules = crate::schedules::validate(&settings.schedules, &config_base)?;
    let hooks = crate::webhooks::resolve(&settings.webhooks, &config_base)?;
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
    let (metrics, dashboard, serve_metrics) = if args.metrics_listen.is_empty() {
        (None, None, false)
    } else {
        let l = TcpListener::bind(args.metrics_listen)
            .await
            .with_context(|| format!("cannot serve metrics on {}", args.metrics_listen))?;
        let maddr = l.local_addr()?;
        let dashboard = dashboard_options(settings, maddr, tls.is_some(), &auth, args)?;
        // `/metrics` keeps its own rule. A listener beyond loopback that
        // serves the dashboard (TLS) without `metrics_public` serves the
        // dashboard alone; without the dashboard it is refused as before.
        let serve_metrics = match metrics_exposure_check(
            maddr,
            args.metrics_public || args.allow_insecure,
        ) {
            Ok(()) => true,
            Err(e) if dashboard.is_some() => {
                tracing::warn!(addr = %maddr, "/metrics not served on the HTTP listener (set metrics_public to serve it): {e}");
                false
            }
            Err(e) => return Err(e),
        };
        (Some((maddr, l)), dashboard, serve_metrics)
    };
    let http_tls = match (&tls, &dashboard) {
        (Some(t), Some(_)) => Some(crate::dashboard::tls_acceptor(&t.cert, &t.key)?),
        _ => None,
    };

    // The schedules' claims live beside the job store, owned under the same lock.
    let schedules_db = if schedules.is_empty() {
        None
    } else {
        Some(crate::schedules::StateDb::open(
            &data_dir.join(crate::schedules::DB_FILE),
        )?)
    };
    // Hot folders are checked before the store is opened too: a bad
    // `[[watch]]` entry stops the start with its field named.
    let watches = crate::watch::validate(&settings.watch, &settings.media_roots(), &config_base)?;

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
    // Before the sweep, the first thing that can end a job.
    let notifier = if hooks.is_empty() {
        None
    } else {
        let n = hooks.len();
        let notifier = crate::webhooks::Notifier::open(coord.clone(), hooks, data_dir)?;
        info!(hooks = n, "webhooks on");
        Some(notifier)
    };
    // Leases that lapsed while no coordinator ran are requeued at once.
    let requeued = coord.sweep();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Scripts and tests read these lines: the API address first.
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "stemforge coordinator listening on {scheme}://{addr}");
    if let Some((maddr, _)) = &metrics {
        if serve_metrics {
            let _ = writeln!(out, "stemforge metrics on http://{maddr}/metrics");
        }
        if dashboard.is_some() {
            let scheme = if http_tls.is_some() { "https" } else { "http" };
            let _ = writeln!(out, "stemforge dashboard on {scheme}://{maddr}/");
        }
    }
    let _ = out.flush();
    drop(out);
    let metrics = match metrics {
        Some((_, l)) => {
            let listener = crate::dashboard::HttpListener::new(l, http_tls)?;
            let app =
                crate::dashboard::app(coord.clone(), serve_metrics, dashboard, stop_rx.clone());
            Some(tokio::spawn(crate::dashboard::serve(
                app,
                listener,
                stop_rx.clone(),
            )))
        }
        None => None,
    };
    let notifier = notifier.map(|(n, ends)| tokio::spawn(n.run(ends, stop_rx.clone())));
    info!(%addr, db = %db.display(), lock = %lock.path().display(), requeued, tls = tls.is_some(), "coordinator started");
    let opts = ServeOptions {
        tls: tls_config,
        auth,
        drain: Some(settings.drain_timeout()),
    };
    let schedules = match schedules_db {
        Some(db) => crate::schedules::start(coord.clone(), schedules, db, stop_rx.clone()),
        None => Vec::new(),
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
    if let Some(n) = notifier {
        let _ = n.await;
    }
    for s in schedules {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s).await;
    }
    info!("coordinator stopped");
    drop(lock);
    Ok(())
}

/// Whether the HTTP listener at `addr` serves the dashboard, and how. The
/// exposure rule is the gRPC API's: beyond loopback only with TLS (or
/// `allow_insecure`, warned about). Unset `dashboard`: on where the rule
/// allows it, else off with a warning (so a `/metrics`-only listener keeps
/// working); `dashboard = true` where it does not: refused.
fn dashboard_options(
    settings: &Settings,
    addr: std::net::SocketAddr,
    tls: bool,
    auth: &crate::security::Auth,
    args: &CoordinatorArgs<'_>,
) -> Result<Option<crate::dashboard::DashboardOptions>> {
    let loopback = addr.ip().is_loopback();
    // Beyond loopback the dashboard needs what the gRPC API needs: TLS, and
    // a client token to log in with (or viewing declared public), so
    // nothing unauthenticated leaves the machine without --insecure.
    let guarded = tls && (auth.has_client_token() || settings.dashboard_public_read);
    let allowed = loopback || guarded || args.allow_insecure;
    match settings.dashboard {
        Some(false) => return Ok(None),
        Some(true) if !allowed => anyhow::bail!(
            "refusing to serve the dashboard on {addr} without TLS and a client token: set tls_cert, tls_key and client_token_file, listen on 127.0.0.1, set dashboard = false, or pass --insecure (allow_insecure = true) to accept the risk"
        ),
        None if !allowed => {
            tracing::warn!(%addr, "dashboard off: the HTTP listener is beyond loopback without TLS and a client token (set tls_cert/tls_key and client_token_file, or dashboard = false to silence this)");
            return Ok(None);
        }
        _ => {}
    }
    if !loopback && !tls {
        tracing::warn!(%addr, "serving the dashboard beyond loopback without TLS: tokens and session cookies cross the network in the clear (--insecure)");
    }
    if !auth.has_client_token() && !settings.dashboard_public_read && !loopback {
        tracing::warn!(%addr, "no client token: the dashboard is read-only and open to anyone who reaches {addr}");
    }
    Ok(Some(crate::dashboard::DashboardOptions {
        auth: auth.clone(),
        public_read: settings.dashboard_public_read,
        loopback,
        tls,
    }))
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
