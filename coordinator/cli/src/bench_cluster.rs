//! `stemforge bench-cluster`: how fast the coordinator hands out real tasks,
//! and how a catalog scales with worker processes on this machine.
//!
//! 1. Dispatch: a catalog of many half-second titles (gain-only graph, full
//!    mix only) over `--connections` in-process workers, each with its own
//!    gRPC connection, against the durable SQLite store: tasks finished per
//!    second. Every task is a real analysis or render, just a short one.
//! 2. Scaling: a catalog of `--titles` demo titles (the whole variant pack)
//!    rendered by 1, 2 and 4 `stemforge worker` processes: wall time and
//!    speed-up against one process.
//!
//! With `--catalog SIZES` it measures the coordinator at catalog sizes
//! instead ([`catalog_sizes`]): per size a `stemforge coordinator` process on
//! a fresh SQLite folder, the whole job queued, its submit time, its memory
//! and how many lease-and-release cycles per second it serves. Only the
//! public gRPC API and the binary are used, so the figures stay comparable
//! whatever the coordinator does inside.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use deliverables_spec::model::Layout;
use stemforge_proto::client::Endpoint;
use stemforge_proto::v1::tasks_client::TasksClient;
use stemforge_proto::v1::{LeaseRef, LeaseTaskRequest, ReleaseTaskRequest};

use stemforge_coordinator::remote::{self, SubmitOptions};
use stemforge_coordinator::sandbox::{Sandbox, SandboxBuilder, SandboxStore};
use stemforge_coordinator::security::Role;
use stemforge_coordinator::settings::Settings;
use stemforge_demo as demo;

pub struct DispatchReport {
    pub tasks: usize,
    pub connections: usize,
    pub seconds: f64,
}

pub struct ScalingRow {
    pub workers: usize,
    pub tasks: usize,
    pub seconds: f64,
}

/// Writes the demo session into `dir` and a spec with `titles` copies of its
/// title (each with its own name, so its own outputs); `only_full` keeps one
/// variant. Returns the spec path.
pub fn catalog(dir: &Path, seconds: f64, titles: usize, only_full: bool) -> Result<PathBuf> {
    let one = demo::write_session(dir, seconds, Default::default())?;
    let text = std::fs::read_to_string(&one)?;
    let at = text
        .find("[[titles]]")
        .ok_or_else(|| anyhow!("demo spec has no titles"))?;
    let (mut head, block) = (text[..at].to_string(), &text[at..]);
    if only_full && let Some(v) = head.find("[variants.") {
        head = format!("{}[variants.full]\n\n", &head[..v]);
    }
    let mut spec = head;
    for i in 0..titles {
        spec.push_str(&block.replace(
            "name = \"Night Drive\"",
            &format!("name = \"Night Drive {:03}\"", i + 1),
        ));
        spec.push('\n');
    }
    let path = dir.join(format!("catalog-{titles}.toml"));
    std::fs::write(&path, spec)?;
    Ok(path)
}

/// `titles` titles of two half-second stems (a tone and noise), gain-only
/// graph, full mix only: each analysis and render is real but takes
/// milliseconds, so the coordinator's dispatch is what is measured.
pub fn tiny_catalog(dir: &Path, titles: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut noise = 0x2545_f491_4f6c_dd1d_u64;
    for (name, tone) in [("tone", true), ("noise", false)] {
        let mut w = hound::WavWriter::create(dir.join(format!("{name}.wav")), spec)?;
        for i in 0..24_000 {
            let x = if tone {
                0.2 * (std::f64::consts::TAU * 440.0 * f64::from(i) / 48_000.0).sin()
            } else {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                0.05 * ((noise >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
            };
            let c = (x * 8_388_607.0) as i32;
            w.write_sample(c)?;
            w.write_sample(c)?;
        }
        w.finalize()?;
    }
    let mut text = String::from(
        "schema_version = 1\n\n[graph.master]\nchain = [{ node = \"loudness\" }]\n\n[variants.full]\n\n",
    );
    for i in 0..titles {
        text.push_str(&format!(
            "[[titles]]\nname = \"Tiny {:04}\"\nstems = [\n  {{ file = \"tone.wav\", role = \"keys\" }},\n  {{ file = \"noise.wav\", role = \"fx\" }},\n]\n\n",
            i + 1
        ));
    }
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

async fn wait_done(url: &str, job: &str) -> Result<usize> {
    let mut c = remote::connect(&Endpoint::plain(url)).await?;
    loop {
        let st = remote::get_job(&mut c, job).await?;
        let state = stemforge_proto::states::job_state(st.state);
        if state != Some(deliverables_spec::contract::JobState::Running) {
            if state != Some(deliverables_spec::contract::JobState::Succeeded) {
                return Err(anyhow!(
                    "benchmark job ended {}",
                    remote::job_state_name(st.state)
                ));
            }
            return Ok(st.tasks.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Tasks per second over `connections` concurrent worker connections.
pub async fn dispatch(
    dir: &Path,
    titles: usize,
    connections: usize,
    settings: &Settings,
) -> Result<DispatchReport> {
    let spec = tiny_catalog(&dir.join("tiny"), titles)?;
    let sandbox = SandboxBuilder::new(settings)
        .store(SandboxStore::Sqlite(dir.join("data/jobs.sqlite")))
        .workers(connections)
        .tokens(false)
        .name("bench")
        .start()
        .await?;
    let (tasks, seconds) = timed_job(sandbox, &spec, &dir.join("tiny-out")).await?;
    Ok(DispatchReport {
        tasks,
        connections,
        seconds,
    })
}

/// Submits `spec` to the sandbox, waits for the job to end and stops the
/// sandbox; the job's task count and the wall time from submission.
async fn timed_job(sandbox: Sandbox, spec: &Path, out: &Path) -> Result<(usize, f64)> {
    let url = sandbox.url.clone();
    let started = Instant::now();
    let submitted = async {
        let mut c = remote::connect(&Endpoint::plain(&url)).await?;
        let options = SubmitOptions {
            output_dir: out.display().to_string(),
            ..Default::default()
        };
        let job = remote::submit_file(&mut c, spec, &options).await?.job_id;
        wait_done(&url, &job).await
    }
    .await;
    let seconds = started.elapsed().as_secs_f64();
    sandbox.shutdown().await;
    Ok((submitted?, seconds))
}

/// Wall time of a `titles`-title catalog with 1, 2 and 4 worker processes.
pub async fn scaling(
    dir: &Path,
    titles: usize,
    seconds: f64,
    settings: &Settings,
) -> Result<Vec<ScalingRow>> {
    let spec = catalog(&dir.join("catalog"), seconds, titles, false)?;
    let exe = std::env::current_exe().context("cannot find the stemforge binary")?;
    let mut rows = Vec::new();
    for workers in [1usize, 2, 4] {
        let sandbox = SandboxBuilder::new(settings)
            .store(SandboxStore::Sqlite(
                dir.join(format!("data-{workers}/jobs.sqlite")),
            ))
            .workers(0)
            .worker_processes(exe.clone(), workers)
            .name("scaling")
            .start()
            .await?;
        let out = dir.join(format!("out-{workers}"));
        let (tasks, seconds) = timed_job(sandbox, &spec, &out).await?;
        rows.push(ScalingRow {
            workers,
            tasks,
            seconds,
        });
    }
    Ok(rows)
}

/// One catalog size: what was queued and what it cost the coordinator.
pub struct CatalogRow {
    pub titles: usize,
    /// Tasks the coordinator planned, as `SubmitJob` reported them.
    pub tasks: u32,
    /// Files the job would deliver.
    pub outputs: usize,
    /// Bytes of spec text (the coordinator sends it with every lease).
    pub spec_bytes: usize,
    /// Wall time of the `SubmitJob` call.
    pub submit_seconds: f64,
    /// Coordinator resident memory right after the submission (VmRSS), MiB;
    /// `None` where `/proc` does not exist.
    pub rss_mib: Option<f64>,
    /// Its high-water mark (VmHWM) after the lease cycles, MiB.
    pub peak_mib: Option<f64>,
    pub leases: usize,
    pub clients: usize,
    pub lease_seconds: f64,
}

impl CatalogRow {
    pub fn leases_per_second(&self) -> f64 {
        self.leases as f64 / self.lease_seconds.max(1e-9)
    }
}

/// What `--catalog` runs.
pub struct CatalogOptions<'a> {
    /// Titles per catalog, one coordinator each.
    pub sizes: &'a [usize],
    /// Length of the shared stems, seconds.
    pub stem_seconds: f64,
    /// Lease-and-release cycles per size.
    pub leases: usize,
    /// Concurrent gRPC clients acting as workers (at most one per title).
    pub clients: usize,
    pub settings: &'a Settings,
    /// The config file this command was given, handed on to the coordinator.
    pub config: Option<&'a Path>,
}

/// The demo session's stems under short names, and the spec text every
/// catalog shares: everything before the titles, and one title's stems.
struct CatalogSession {
    dir: PathBuf,
    head: String,
    stems: String,
}

/// Writes the demo session (six stems, seven variants: six mixes and a
/// stems output, so twelve files per title) into `dir`. The stems are
/// renamed `s/N.wav` so that a title costs about 200 bytes of spec: the
/// largest catalogs must fit one gRPC message.
fn catalog_session(dir: &Path, seconds: f64) -> Result<CatalogSession> {
    let spec = demo::write_session(dir, seconds, Layout::Stereo)?;
    let loaded = deliverables_spec::load_file(&spec)?;
    let at = loaded
        .text
        .find("[[titles]]")
        .ok_or_else(|| anyhow!("demo spec has no titles"))?;
    let title = loaded
        .spec
        .titles
        .first()
        .ok_or_else(|| anyhow!("demo spec has no titles"))?;
    std::fs::create_dir_all(dir.join("s"))?;
    let mut stems = String::from("stems = [");
    for (i, s) in title.stems.iter().enumerate() {
        let short = format!("s/{i}.wav");
        std::fs::rename(loaded.path(&s.file), dir.join(&short))
            .with_context(|| format!("cannot rename {} to {short}", s.file))?;
        let _ = write!(stems, "{{ file = \"{short}\", role = \"{}\" }}, ", s.role);
    }
    stems.push(']');
    Ok(CatalogSession {
        dir: dir.to_path_buf(),
        head: loaded.text[..at].to_string(),
        stems,
    })
}

/// Streams a spec of `titles` titles, all on the session's stems, to a file
/// (the bench never holds more than one title's text while writing).
fn write_catalog(session: &CatalogSession, titles: usize) -> Result<PathBuf> {
    let path = session.dir.join(format!("catalog-{titles}.toml"));
    let mut w = BufWriter::new(
        File::create(&path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    w.write_all(session.head.as_bytes())?;
    for i in 0..titles {
        writeln!(
            w,
            "[[titles]]\nname = \"Title {:05}\"\n{}\n",
            i + 1,
            session.stems
        )?;
    }
    w.flush()?;
    Ok(path)
}

/// Files a spec delivers: every kept variant's outputs of every title, in
/// every pack.
fn count_outputs(loaded: &deliverables_spec::LoadedSpec) -> usize {
    use deliverables_spec::outputs::title_outputs;
    use deliverables_spec::plan::title_variants;
    let spec = &loaded.spec;
    let d = loaded.delivery();
    let all = deliverables_spec::variant::variants(spec);
    let packs = d.packs();
    let mut n = 0;
    for title in &spec.titles {
        for v in title_variants(spec, title, &all).keep {
            for rate in &packs {
                // The rate only names the files; any rate counts them.
                n += title_outputs(spec, d, title, v, rate.unwrap_or(48_000)).len();
            }
        }
    }
    n
}

/// A `stemforge coordinator` child process; killed when dropped unless
/// [`CoordinatorProcess::stop`] ended it.
struct CoordinatorProcess {
    child: Option<Child>,
    url: String,
    log: PathBuf,
}

impl CoordinatorProcess {
    /// Starts `exe coordinator` on an ephemeral loopback port over a SQLite
    /// store in `dir/data`, logging warnings into `dir/coordinator.log`,
    /// with no metrics listener; returns once it prints its address.
    fn start(exe: &Path, dir: &Path, config: Option<&Path>) -> Result<CoordinatorProcess> {
        let log = dir.join("coordinator.log");
        let log_file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut cmd = Command::new(exe);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .env("STEMFORGE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start a coordinator ({})", exe.display()))?;
        let stdout = child.stdout.take();
        let mut proc = CoordinatorProcess {
            child: Some(child),
            url: String::new(),
            log,
        };
        let stdout = stdout.ok_or_else(|| anyhow!("the coordinator has no stdout"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            // Keep the pipe drained until the process ends.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| anyhow!("the coordinator did not start:\n{}", proc.log_text()))?;
        let url = line
            .strip_prefix("stemforge coordinator listening on ")
            .ok_or_else(|| anyhow!("the coordinator printed `{line}` instead of its address"))?;
        proc.url = url.to_string();
        Ok(proc)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for it to drain and exit (killed after a minute).
    fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        while sent && Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    return Err(anyhow!(
                        "the coordinator exited {status} after SIGTERM:\n{}",
                        self.log_text()
                    ));
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(anyhow!(
            "the coordinator did not stop on SIGTERM within a minute; killed"
        ))
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// VmRSS and VmHWM of a process in MiB, from `/proc/PID/status` (`None`
/// where it cannot be read: not Linux, or the process is gone).
fn memory_mib(pid: Option<u32>) -> (Option<f64>, Option<f64>) {
    let Some(text) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
    else {
        return (None, None);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `leases` lease-and-release cycles shared among `clients` connections,
/// each its own worker id; the wall time of all of them. A released task is
/// queued again at once, so the job stays whole.
async fn lease_cycles(worker: &Endpoint, clients: usize, leases: usize) -> Result<f64> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(TasksClient::new(worker.connect().await?));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let next = next.clone();
            tokio::spawn(async move {
                let worker_id = format!("bench-lease-{i}");
                while next.fetch_add(1, Ordering::Relaxed) < leases {
                    let lease = c
                        .lease_task(LeaseTaskRequest {
                            worker_id: worker_id.clone(),
                            wait_ms: 5_000,
                            draining: false,
                        })
                        .await
                        .map_err(remote::status_err)?
                        .into_inner()
                        .lease
                        .ok_or_else(|| {
                            anyhow!("no task was leased within 5 s though the catalog is queued")
                        })?;
                    c.release_task(ReleaseTaskRequest {
                        lease: Some(LeaseRef {
                            job_id: lease.job_id,
                            task_id: lease.task_id,
                            lease_id: lease.lease_id,
                            attempt: lease.attempt,
                        }),
                        reason: "bench-cluster: lease cost".into(),
                    })
                    .await
                    .map_err(remote::status_err)?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for h in handles {
        h.await.context("a lease client stopped")??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One size: a coordinator process with the whole catalog queued.
async fn catalog_size(
    session: &CatalogSession,
    dir: &Path,
    titles: usize,
    opts: &CatalogOptions<'_>,
) -> Result<CatalogRow> {
    let spec = write_catalog(session, titles)?;
    let loaded = deliverables_spec::load_file(&spec)?;
    let outputs = count_outputs(&loaded);
    let spec_bytes = loaded.text.len();
    std::fs::create_dir_all(dir)?;
    let exe = std::env::current_exe().context("cannot find the stemforge binary")?;
    let coordinator = CoordinatorProcess::start(&exe, dir, opts.config)?;
    let client = opts.settings.endpoint(&coordinator.url, Role::Client)?;
    let worker = opts.settings.endpoint(&coordinator.url, Role::Worker)?;
    let mut jobs = remote::connect(&client).await?;
    let options = SubmitOptions {
        label: format!("bench-cluster catalog of {titles}"),
        output_dir: dir.join("out").display().to_string(),
        ..Default::default()
    };
    let started = Instant::now();
    let submitted = remote::submit_loaded(&mut jobs, &loaded, &options)
        .await
        .with_context(|| {
            format!(
                "submitting the {titles}-title catalog ({:.1} MB of spec)",
                spec_bytes as f64 / 1e6
            )
        })?;
    let submit_seconds = started.elapsed().as_secs_f64();
    drop(loaded);
    let (rss_mib, _) = memory_mib(coordinator.pid());
    let clients = opts.clients.clamp(1, titles.max(1));
    let lease_seconds = lease_cycles(&worker, clients, opts.leases).await?;
    let (_, peak_mib) = memory_mib(coordinator.pid());
    remote::cancel(&client, &submitted.job_id).await?;
    coordinator.stop()?;
    let _ = std::fs::remove_file(&spec);
    let _ = std::fs::remove_dir_all(dir);
    Ok(CatalogRow {
        titles,
        tasks: submitted.task_count,
        outputs,
        spec_bytes,
        submit_seconds,
        rss_mib,
        peak_mib,
        leases: opts.leases,
        clients,
        lease_seconds,
    })
}

/// For each size: a coordinator process on a fresh SQLite folder, the
/// catalog submitted through `Jobs.SubmitJob` (timed), its memory with the
/// whole job queued, then lease-and-release cycles through `Tasks.LeaseTask`
/// and `Tasks.ReleaseTask`; the job is cancelled and the coordinator stopped
/// with SIGTERM before the next size.
pub async fn catalog_sizes(dir: &Path, opts: &CatalogOptions<'_>) -> Result<Vec<CatalogRow>> {
    let session = catalog_session(&dir.join("session"), opts.stem_seconds)?;
    let mut rows = Vec::with_capacity(opts.sizes.len());
    for &titles in opts.sizes {
        let row = catalog_size(&session, &dir.join(format!("size-{titles}")), titles, opts).await?;
        rows.push(row);
    }
    Ok(rows)
}

/// The figures as a table; the last column is leases/s against the first row.
pub fn catalog_table(rows: &[CatalogRow]) -> String {
    let mb = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"));
    let base = rows.first().map_or(1.0, CatalogRow::leases_per_second);
    let mut s = format!(
        "{:>8} {:>8} {:>8} {:>9} {:>9} {:>13} {:>13} {:>9} {:>9}\n",
        "titles",
        "tasks",
        "outputs",
        "spec MB",
        "submit s",
        "RSS MiB after",
        "peak RSS MiB",
        "leases/s",
        "vs first"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:>8} {:>8} {:>8} {:>9.2} {:>9.3} {:>13} {:>13} {:>9.1} {:>8.2}x",
            r.titles,
            r.tasks,
            r.outputs,
            r.spec_bytes as f64 / 1e6,
            r.submit_seconds,
            mb(r.rss_mib),
            mb(r.peak_mib),
            r.leases_per_second(),
            r.leases_per_second() / base.max(1e-9)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_title_delivers_twelve_files_from_shared_stems() {
        let dir =
            std::env::temp_dir().join(format!("stemforge-catalog-test-{}", std::process::id()));
        let session = catalog_session(&dir, 1.0).expect("session");
        let spec = write_catalog(&session, 3).expect("catalog");
        let loaded = deliverables_spec::load_file(&spec).expect("valid spec");
        assert_eq!(loaded.spec.titles.len(), 3);
        assert_eq!(count_outputs(&loaded), 36);
        let plan = deliverables_spec::plan_job(&loaded, "test", &[]).expect("plan");
        // Per title: preflight, analysis, its pack's render; then the manifest.
        assert_eq!(plan.tasks.len(), 3 * 3 + 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn memory_of_this_process_is_read_on_linux() {
        let (rss, peak) = memory_mib(Some(std::process::id()));
        if cfg!(target_os = "linux") {
            assert!(
                rss.is_some_and(|r| r > 0.0) && peak >= rss,
                "{rss:?} {peak:?}"
            );
        }
    }
}
