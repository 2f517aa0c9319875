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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use stemforge_proto::client::Endpoint;

use stemforge_coordinator::remote::{self, SubmitOptions};
use stemforge_coordinator::sandbox::{Sandbox, SandboxBuilder, SandboxStore};
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
