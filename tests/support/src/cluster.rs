//! A cluster of real processes for the end-to-end tests: a `stemforge
//! coordinator` on an ephemeral loopback port (or any address the test
//! gives) over its SQLite store in a fresh folder, `stemforge worker`
//! processes, and the client commands against it. Tokens, TLS and media
//! roots are settings (`STEMFORGE_*` variables) or coordinator arguments
//! given to the builder. Every process logs into the cluster's folder; all
//! are killed when the value is dropped (also when a test fails); the
//! folder is removed after a passing test and kept, with its logs, after a
//! failing one.
//!
//! The in-process counterpart (a coordinator and workers inside one
//! process, for `render` and the benchmarks) is `coordinator::sandbox`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{scratch, text};

/// What to start: settings for every process of the cluster, coordinator
/// arguments, where it listens.
pub struct ClusterBuilder {
    dir: PathBuf,
    env: BTreeMap<String, String>,
    args: Vec<String>,
    listen: String,
    metrics: bool,
}

impl ClusterBuilder {
    /// The cluster's folder (created empty): write token files,
    /// certificates or specs here before [`ClusterBuilder::start`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A setting for the coordinator and every worker (`STEMFORGE_*`).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.insert(key.to_string(), value.into());
        self
    }

    /// Several settings, as [`ClusterBuilder::env`].
    pub fn envs<K: AsRef<str>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in vars {
            self.env.insert(k.as_ref().to_string(), v.into());
        }
        self
    }

    /// Extra arguments of `stemforge coordinator` (e.g. `--insecure`).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Where the coordinator listens (default `127.0.0.1:0`).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// Serve Prometheus metrics on an ephemeral loopback port (default on).
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Starts the coordinator and waits until it listens; the error carries
    /// its log when it does not.
    pub fn start(self) -> Result<Cluster, String> {
        let mut c = Cluster {
            dir: self.dir,
            env: self.env.into_iter().collect(),
            args: self.args,
            metrics: self.metrics,
            url: String::new(),
            metrics_addr: String::new(),
            coordinator: None,
            starts: 0,
            workers: Vec::new(),
            others: Vec::new(),
        };
        c.spawn_coordinator(&self.listen)?;
        Ok(c)
    }
}

/// A coordinator and workers as child processes (see the module's doc).
pub struct Cluster {
    dir: PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    metrics: bool,
    /// `http(s)://HOST:PORT`, fixed at the first start (a restart reuses the port).
    url: String,
    /// The current coordinator's Prometheus endpoint (`127.0.0.1:PORT`).
    metrics_addr: String,
    coordinator: Option<Child>,
    starts: usize,
    workers: Vec<(String, Child)>,
    /// Client commands left running (`watch`).
    others: Vec<Child>,
}

impl Cluster {
    /// A cluster in a fresh folder named after `name`, logging at `info`
    /// without colour; nothing started yet.
    pub fn builder(name: &str) -> ClusterBuilder {
        ClusterBuilder {
            dir: scratch(&format!("cluster-{name}")),
            env: [("STEMFORGE_LOG", "info"), ("NO_COLOR", "1")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: Vec::new(),
            listen: "127.0.0.1:0".into(),
            metrics: true,
        }
    }

    /// The cluster's folder: logs, the coordinator's data, the test's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `http(s)://HOST:PORT` of the coordinator.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The coordinator's data directory (`--data-dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The process id of the running coordinator.
    pub fn coordinator_pid(&self) -> u32 {
        self.coordinator.as_ref().expect("a coordinator runs").id()
    }

    /// `HOST:PORT` of the coordinator.
    pub fn addr(&self) -> &str {
        self.url.split("://").nth(1).unwrap_or(&self.url)
    }

    fn spawn_coordinator(&mut self, listen: &str) -> Result<(), String> {
        self.starts += 1;
        let log_name = format!("coordinator-{}.log", self.starts);
        let log = File::create(self.dir.join(&log_name)).expect("create log");
        let mut cmd = crate::command();
        cmd.args(["coordinator", "--listen", listen, "--data-dir"])
            .arg(self.data_dir())
            .args(&self.args);
        if self.metrics {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn coordinator");
        let stdout = child.stdout.take().expect("coordinator stdout");
        let wanted = if self.metrics { 2 } else { 1 };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for _ in 0..wanted {
                if let Some(Ok(l)) = lines.next() {
                    let _ = tx.send(l);
                }
            }
            // Keep the pipe drained until the process ends.
            for _ in lines {}
        });
        let fail = |child: &mut Child, what: &str| {
            let _ = child.kill();
            let status = child.wait().ok();
            let log = std::fs::read_to_string(self.dir.join(&log_name)).unwrap_or_default();
            Err(format!("{what}; exit {status:?}\n{log}"))
        };
        let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
            return fail(&mut child, "the coordinator did not start");
        };
        let Some(url) = line.strip_prefix("stemforge coordinator listening on ") else {
            return fail(&mut child, &format!("unexpected first line `{line}`"));
        };
        let url = url.to_string();
        if self.metrics {
            let Ok(metrics) = rx.recv_timeout(Duration::from_secs(30)) else {
                return fail(&mut child, "the coordinator did not serve metrics");
            };
            let Some(addr) = metrics
                .strip_prefix("stemforge metrics on http://")
                .and_then(|m| m.strip_suffix("/metrics"))
            else {
                return fail(&mut child, &format!("unexpected second line `{metrics}`"));
            };
            self.metrics_addr = addr.to_string();
        }
        self.coordinator = Some(child);
        if !self.url.is_empty() {
            assert_eq!(url, self.url, "a restarted coordinator keeps its address");
        }
        self.url = url;
        Ok(())
    }

    /// SIGKILL: no shutdown handler runs.
    pub fn kill_coordinator(&mut self) {
        let mut c = self.coordinator.take().expect("a coordinator runs");
        c.kill().expect("kill -9 the coordinator");
        c.wait().expect("reap the coordinator");
    }

    /// SIGTERM to the coordinator; returns how it exited (it must drain and
    /// exit on its own within `timeout`).
    pub fn term_coordinator(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut c = self.coordinator.take().expect("a coordinator runs");
        sigterm(c.id());
        wait_child(&mut c, timeout).unwrap_or_else(|| {
            panic!(
                "the coordinator ignored SIGTERM for {timeout:?}\n{}",
                self.logs()
            )
        })
    }

    /// SIGTERM to a worker; returns how it exited (killed after `timeout`).
    pub fn term_worker(&mut self, id: &str, timeout: Duration) -> std::process::ExitStatus {
        let (_, mut c) = self.take_worker(id);
        sigterm(c.id());
        wait_child(&mut c, timeout).unwrap_or_else(|| {
            panic!(
                "worker {id} ignored SIGTERM for {timeout:?}\n{}",
                self.logs()
            )
        })
    }

    /// The coordinator's `/metrics` page.
    pub fn scrape(&self) -> String {
        Cluster::scraper(self.metrics_addr.clone())()
    }

    /// `HOST:PORT` of the coordinator's HTTP listener (`/metrics`, the
    /// dashboard).
    pub fn http_addr(&self) -> &str {
        &self.metrics_addr
    }

    /// A function that fetches the coordinator's `/metrics` page (plain
    /// HTTP/1.1), for a thread that scrapes while the test goes on.
    pub fn metrics_scraper(&self) -> impl Fn() -> String + Send + 'static {
        Cluster::scraper(self.metrics_addr.clone())
    }

    fn scraper(addr: String) -> impl Fn() -> String + Send + 'static {
        move || {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(&addr).expect("connect to /metrics");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            write!(
                s,
                "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            )
            .expect("send request");
            let mut body = String::new();
            s.read_to_string(&mut body).expect("read /metrics");
            assert!(body.starts_with("HTTP/1.1 200"), "{body}");
            body
        }
    }

    /// A new coordinator process on the same port and data folder.
    pub fn restart_coordinator(&mut self) {
        assert!(self.coordinator.is_none(), "kill the coordinator first");
        let listen = self.addr().to_string();
        if let Err(e) = self.spawn_coordinator(&listen) {
            panic!("the coordinator did not restart: {e}\n{}", self.logs());
        }
    }

    /// Starts `stemforge worker --id ID`; returns its process id.
    pub fn start_worker(&mut self, id: &str) -> u32 {
        self.start_worker_env(id, &[])
    }

    /// As [`Cluster::start_worker`], with settings of its own.
    pub fn start_worker_env(&mut self, id: &str, env: &[(&str, &str)]) -> u32 {
        let log = File::create(self.dir.join(format!("worker-{id}.log"))).expect("create log");
        let child = crate::command()
            .args(["worker", "--coordinator", &self.url, "--id", id])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn worker");
        let pid = child.id();
        self.workers.push((id.to_string(), child));
        pid
    }

    fn take_worker(&mut self, id: &str) -> (String, Child) {
        let i = self
            .workers
            .iter()
            .position(|(w, _)| w == id)
            .unwrap_or_else(|| panic!("no worker {id}"));
        self.workers.remove(i)
    }

    /// SIGKILL to a worker: it cannot clean up or report.
    pub fn kill_worker(&mut self, id: &str) {
        let (_, mut c) = self.take_worker(id);
        c.kill().expect("kill -9 the worker");
        c.wait().expect("reap the worker");
    }

    pub fn worker_alive(&mut self, id: &str) -> bool {
        self.workers
            .iter_mut()
            .find(|(w, _)| w == id)
            .is_some_and(|(_, c)| c.try_wait().expect("try_wait").is_none())
    }

    /// A log of this cluster's folder (`coordinator-N.log`, `worker-ID.log`).
    pub fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// The current coordinator's log.
    pub fn coordinator_log(&self) -> String {
        self.log(&format!("coordinator-{}.log", self.starts))
    }

    /// The last lines of every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let mut s = String::new();
        for p in names {
            let body = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = body.lines().collect();
            let _ = writeln!(s, "--- {} (last 25 lines)", p.display());
            for l in &lines[lines.len().saturating_sub(25)..] {
                let _ = writeln!(s, "{l}");
            }
        }
        s
    }

    /// A client command against this cluster (`--coordinator` added).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    /// As [`Cluster::cli`], with the client's own settings (token file,
    /// CA); the cluster's settings are not passed to clients.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, String)]) -> Output {
        let mut cmd = crate::command();
        cmd.args(args)
            .args(["--coordinator", &self.url])
            .env("STEMFORGE_LOG", "warn")
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(&self.dir);
        run(cmd, Duration::from_secs(60))
    }

    /// `stemforge submit SPEC --out OUT [extra]`; returns the job id.
    pub fn submit(&self, spec: &Path, out: &Path, extra: &[&str]) -> String {
        let o = self.submit_output(spec, out, extra, &[]);
        assert!(o.status.success(), "submit failed:\n{}", text(&o));
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(
            !id.is_empty() && !id.contains(char::is_whitespace),
            "submit prints only the job id:\n{}",
            text(&o)
        );
        id
    }

    /// `stemforge submit SPEC --out OUT [extra]` with the client's settings,
    /// whatever it answers.
    pub fn submit_output(
        &self,
        spec: &Path,
        out: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Output {
        let mut args = vec![
            "submit",
            spec.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
        ];
        args.extend_from_slice(extra);
        self.cli_env(&args, env)
    }

    /// `stemforge status JOB --json`, or `None` if the coordinator does not answer.
    pub fn try_status(&self, job: &str) -> Option<Value> {
        self.try_status_env(job, &[])
    }

    fn try_status_env(&self, job: &str, env: &[(&str, String)]) -> Option<Value> {
        let o = self.cli_env(&["status", job, "--json"], env);
        if !o.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&o.stdout).expect("status --json prints JSON"))
    }

    /// As [`Cluster::status`], asking with the client's settings.
    pub fn status_env(&self, job: &str, env: &[(&str, String)]) -> Value {
        self.try_status_env(job, env)
            .unwrap_or_else(|| panic!("status of {job} failed\n{}", self.logs()))
    }

    pub fn status(&self, job: &str) -> Value {
        self.try_status(job)
            .unwrap_or_else(|| panic!("status of {job} failed\n{}", self.logs()))
    }

    /// Polls `f` every 50 ms until it returns something; fails the test after `timeout`.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls the job until it is no longer running. Fails the test after
    /// `timeout`, or earlier if the job stalls: nothing leased and no task
    /// changing for 8 s (longer than any retry backoff of these tests).
    pub fn wait_job(&self, job: &str, timeout: Duration) -> Value {
        self.wait_job_env(job, timeout, &[])
    }

    /// As [`Cluster::wait_job`], asking with the client's settings.
    pub fn wait_job_env(&self, job: &str, timeout: Duration, env: &[(&str, String)]) -> Value {
        const STALL: Duration = Duration::from_secs(8);
        let start = Instant::now();
        let mut last: Option<(String, Instant)> = None;
        loop {
            if let Some(st) = self.try_status_env(job, env) {
                if st["state"] != "running" {
                    return st;
                }
                let sig: String = tasks(&st)
                    .iter()
                    .map(|t| format!("{}:{};", t["state"], t["attempt"]))
                    .collect();
                let leased = tasks(&st).iter().any(|t| t["state"] == "leased");
                match &last {
                    Some((s, since)) if *s == sig => {
                        assert!(
                            leased || since.elapsed() < STALL,
                            "job {job} stalled: no task leased and nothing changed for {STALL:?}\n{st:#}\n{}",
                            self.logs()
                        );
                    }
                    _ => last = Some((sig, Instant::now())),
                }
            }
            assert!(
                start.elapsed() < timeout,
                "job {job} still running after {timeout:?}\n{:#}\n{}",
                self.try_status_env(job, env).unwrap_or_default(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `stemforge watch JOB` in the background (output into the
    /// cluster's folder: `watch.out`, `watch.log`); returns its index for
    /// [`Cluster::wait_other`].
    pub fn spawn_watch(&mut self, job: &str) -> usize {
        let child = crate::command()
            .args(["watch", job, "--coordinator", &self.url])
            .env("STEMFORGE_LOG", "warn")
            .env("NO_COLOR", "1")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(File::create(self.dir.join("watch.out")).expect("create"))
            .stderr(File::create(self.dir.join("watch.log")).expect("create"))
            .spawn()
            .expect("spawn watch");
        self.others.push(child);
        self.others.len() - 1
    }

    /// Waits for a background client command to exit (killed after `timeout`).
    pub fn wait_other(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait_child(&mut self.others[i], timeout)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut all: Vec<Child> = self.workers.drain(..).map(|(_, c)| c).collect();
        all.append(&mut self.others);
        all.extend(self.coordinator.take());
        for c in &mut all {
            let _ = c.kill();
        }
        for c in &mut all {
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("cluster files and logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The tasks of a `status --json` answer.
pub fn tasks(st: &Value) -> &[Value] {
    st["tasks"].as_array().map_or(&[], Vec::as_slice)
}

/// Runs a command to its end, reading both pipes; fails the test after `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stemforge");
    fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    }
    let out = drain(child.stdout.take().expect("stdout"));
    let err = drain(child.stderr.take().expect("stderr"));
    let status = wait_child(&mut child, timeout)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish within {timeout:?}"));
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Waits for a child to exit; kills it and returns `None` after `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM to a process (by the system's `kill`).
pub fn sigterm(pid: u32) {
    let o = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .output()
        .expect("run kill");
    assert!(o.status.success(), "kill -TERM {pid}: {}", text(&o));
}

/// `name{labels} value` lines of a Prometheus page, as a map.
pub fn metric_values(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| l.starts_with("stemforge_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}
