//! A whole cluster on this machine, started one way by everything that
//! needs one: `render` (in-process workers, random tokens), the benchmarks
//! (a SQLite store, many connections, or worker processes) and the tests.
//! A coordinator on an ephemeral loopback port, over a memory or SQLite
//! store, with N workers in this process and/or M `stemforge worker`
//! processes, all talking real gRPC.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use stemforge_proto::client::{Endpoint, Token};
use stemforge_worker::service::{WorkerOptions, run_worker};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::security::{Auth, random_token};
use crate::server::{Coordinator, ServeOptions, serve};
use crate::settings::Settings;
use crate::sqlite_store::SqliteStore;
use crate::store::{CachedStore, MemoryStore, Store};

/// Where the sandbox keeps its jobs.
#[derive(Debug, Clone)]
pub enum SandboxStore {
    Memory,
    /// A durable store in this file (created with its folder).
    Sqlite(PathBuf),
}

/// What to start.
#[derive(Debug, Clone)]
pub struct SandboxBuilder {
    settings: Settings,
    store: SandboxStore,
    workers: usize,
    /// `stemforge worker` processes: the binary and how many.
    processes: Option<(PathBuf, usize)>,
    tokens: bool,
    name: String,
    cache: Option<stemforge_worker::cache::CacheConfig>,
}

impl SandboxBuilder {
    /// One in-process worker, a memory store, random tokens; scheduling,
    /// poll wait and media roots from `settings`.
    pub fn new(settings: &Settings) -> SandboxBuilder {
        SandboxBuilder {
            settings: settings.clone(),
            store: SandboxStore::Memory,
            workers: 1,
            processes: None,
            tokens: true,
            name: "local".into(),
            cache: None,
        }
    }

    pub fn store(mut self, store: SandboxStore) -> Self {
        self.store = store;
        self
    }

    /// Workers in this process (each its own connection).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Worker processes of the `stemforge` binary at `exe`. Processes read
    /// no tokens, so a sandbox with processes runs without them.
    pub fn worker_processes(mut self, exe: PathBuf, n: usize) -> Self {
        self.processes = Some((exe, n));
        self.tokens = false;
        self
    }

    /// Random per-run client and worker tokens (the default), or none.
    pub fn tokens(mut self, on: bool) -> Self {
        self.tokens = on;
        self
    }

    /// The render cache the coordinator names in its leases (default: none,
    /// every task renders).
    pub fn cache(mut self, cache: Option<stemforge_worker::cache::CacheConfig>) -> Self {
        self.cache = cache;
        self
    }

    /// Prefix of the worker ids (`local-0`, `bench-3`, …).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    pub async fn start(self) -> Result<Sandbox> {
        let store: Box<dyn Store> = match &self.store {
            SandboxStore::Memory => Box::new(MemoryStore::new()),
            SandboxStore::Sqlite(path) => {
                Box::new(CachedStore::load(Box::new(SqliteStore::open(path)?))?)
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind a loopback port")?;
        let url = format!("http://{}", listener.local_addr()?);
        let coord = Coordinator::new(
            store,
            self.settings.scheduler(),
            self.settings.media_roots(),
            self.cache.clone(),
        );
        coord
            .start_epoch()
            .map_err(|e| anyhow::anyhow!("starting the coordinator: {}", e.message()))?;
        let (client_token, worker_token) = if self.tokens {
            (Some(random_token()?), Some(random_token()?))
        } else {
            (None, None)
        };
        let serve_opts = ServeOptions {
            tls: None,
            auth: Auth::new(client_token.as_ref(), worker_token.as_ref(), false),
            drain: None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(coord, listener, stop_rx.clone(), serve_opts));
        let endpoint = |token: Option<Token>| Endpoint {
            token,
            ..Endpoint::plain(&url)
        };
        let worker_ep = endpoint(worker_token);
        let workers = (0..self.workers)
            .map(|i| {
                let mut o =
                    WorkerOptions::new(&format!("{}-{i}", self.name), self.settings.poll_wait_ms);
                o.media_roots = self.settings.media_roots();
                tokio::spawn(run_worker(worker_ep.clone(), o, stop_rx.clone()))
            })
            .collect();
        let mut sandbox = Sandbox {
            client: endpoint(client_token),
            url,
            stop,
            server,
            workers,
            processes: Vec::new(),
        };
        if let Some((exe, n)) = &self.processes {
            for i in 0..*n {
                let child = Command::new(exe)
                    .args(["worker", "--coordinator", &sandbox.url, "--id"])
                    .arg(format!("{}-proc-{i}", self.name))
                    .env("STEMFORGE_LOG", "warn")
                    .stdout(Stdio::null())
                    .spawn()
                    .with_context(|| format!("cannot start a worker process ({})", exe.display()));
                match child {
                    Ok(c) => sandbox.processes.push(c),
                    Err(e) => {
                        sandbox.shutdown().await;
                        return Err(e);
                    }
                }
            }
        }
        info!(
            url = %sandbox.url,
            workers = self.workers,
            processes = sandbox.processes.len(),
            "sandbox cluster started"
        );
        Ok(sandbox)
    }
}

/// A running cluster. [`Sandbox::shutdown`] stops it; dropping it kills any
/// worker processes.
pub struct Sandbox {
    pub url: String,
    /// How a client reaches it (with the client token, if any).
    pub client: Endpoint,
    stop: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    workers: Vec<JoinHandle<Result<(), stemforge_worker::service::WorkerError>>>,
    processes: Vec<Child>,
}

impl Sandbox {
    /// Stops the workers (in-process ones finish their task in hand), the
    /// worker processes and the coordinator.
    pub async fn shutdown(mut self) {
        // Worker processes first: they would only log a refused connection.
        kill(&mut self.processes);
        let _ = self.stop.send(true);
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
        let server = std::mem::replace(&mut self.server, tokio::spawn(async { Ok(()) }));
        let _ = server.await;
    }
}

fn kill(processes: &mut Vec<Child>) {
    for c in processes.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
    processes.clear();
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        kill(&mut self.processes);
    }
}
