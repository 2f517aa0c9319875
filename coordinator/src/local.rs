//! `stemforge render`: a coordinator on an ephemeral loopback port and N
//! workers in this process, talking over real gRPC — the same path a
//! distributed run takes, with nothing to set up. The port is plain text
//! (loopback only) but not open: each run makes its own random client and
//! worker tokens, so another local user cannot submit to it or lease from it.

use deliverables_spec::contract::{JobState, TaskState};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;
use stemforge_proto::states::{job_state, task_state};

use anyhow::{Context, Result, anyhow};
use deliverables_spec::manifest::Manifest;
use indicatif::{ProgressBar, ProgressStyle};
use stemforge_proto::v1::{JobStatus, SubmitJobRequest};

use tracing::info;

use crate::sandbox::{SandboxBuilder, SandboxStore};
use crate::settings::Settings;
use stemforge_proto::client::Endpoint;

pub struct RenderOptions {
    pub workers: usize,
    /// Overrides the spec's output folder.
    pub out: Option<PathBuf>,
    /// Render everything, neither reading nor filling the render cache.
    pub no_cache: bool,
    /// Where the job writes its pack zip (absolute; its folder must exist),
    /// after the manifest: `stemforge pack`.
    pub bundle: Option<PathBuf>,
}

/// How a render ended.
pub struct RenderOutcome {
    pub status: JobStatus,
    pub manifest: Option<Manifest>,
    pub manifest_path: Option<PathBuf>,
}

impl RenderOutcome {
    pub fn all_pass(&self) -> bool {
        job_state(self.status.state) == Some(JobState::Succeeded)
            && self
                .manifest
                .as_ref()
                .map_or(self.status.all_outputs_pass, |m| m.summary.all_pass)
    }
}

/// Titles up to which `render` keeps its job in memory.
const MEMORY_STORE_TITLES: usize = 200;

/// A scratch folder removed when dropped (every path out of `render`).
struct ScratchDir(std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Renders a spec file end to end through an in-process cluster.
pub async fn render(
    spec_path: &Path,
    settings: &Settings,
    opts: &RenderOptions,
) -> Result<RenderOutcome> {
    let loaded = deliverables_spec::load_file(spec_path)?;
    render_loaded(&loaded, settings, opts).await
}

/// Renders a spec already read and validated (`pack` renders a selection
/// made on the file's text) end to end through an in-process cluster.
pub async fn render_loaded(
    loaded: &deliverables_spec::LoadedSpec,
    settings: &Settings,
    opts: &RenderOptions,
) -> Result<RenderOutcome> {
    let base_dir = std::fs::canonicalize(&loaded.base_dir).with_context(|| {
        format!(
            "cannot resolve the spec's folder {}",
            loaded.base_dir.display()
        )
    })?;
    let out = match &opts.out {
        Some(o) => {
            std::fs::create_dir_all(o)
                .with_context(|| format!("cannot create output folder {}", o.display()))?;
            std::fs::canonicalize(o)?.display().to_string()
        }
        None => String::new(),
    };

    // A catalog keeps its jobs in a SQLite file, so results are not held in
    // memory as the job goes; a few titles stay in memory.
    let scratch = (loaded.spec.titles.len() > MEMORY_STORE_TITLES)
        .then(|| {
            let dir = std::env::temp_dir().join(format!(
                "stemforge-render-{}-{}",
                std::process::id(),
                loaded.sha256.get(..12).unwrap_or_default()
            ));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))
                .map(|()| ScratchDir(dir))
        })
        .transpose()?;
    let store = match &scratch {
        Some(d) => SandboxStore::Sqlite(d.0.join("jobs.sqlite")),
        None => SandboxStore::Memory,
    };
    // Made here, so the workers find it.
    let cache = if opts.no_cache {
        None
    } else {
        settings.local_cache()
    }
    .filter(|c| match stemforge_worker::cache::RenderCache::open(c) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("rendering without the render cache: {e}");
            false
        }
    });
    let sandbox = SandboxBuilder::new(settings)
        .store(store)
        .cache(cache)
        .workers(opts.workers.max(1))
        .start()
        .await?;
    let bundle = opts
        .bundle
        .as_ref()
        .map_or(String::new(), |b| b.display().to_string());
    let result = drive(&sandbox.client, loaded, &base_dir, out, bundle).await;
    sandbox.shutdown().await;
    drop(scratch);
    let status = result?;
    let manifest_path =
        (!status.manifest_path.is_empty()).then(|| PathBuf::from(&status.manifest_path));
    // A catalog's manifest is not read back whole: the terminal gets its
    // path and the job's verdict instead of a table.
    let manifest = match &manifest_path {
        Some(p) if std::fs::metadata(p).is_ok_and(|m| m.len() <= TABULATE_BYTES) => Some(
            serde_json::from_slice(
                &std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| format!("{} is not a manifest", p.display()))?,
        ),
        _ => None,
    };
    Ok(RenderOutcome {
        status,
        manifest,
        manifest_path,
    })
}

/// The largest manifest the end of a render reads back to print its table.
const TABULATE_BYTES: u64 = 8 << 20;
/// The most tasks the end of a render lists (failures among them); a
/// larger job is summarised by its counts.
const LIST_TASKS: u64 = 5_000;

/// Submits the job and follows it to the end, with a progress bar on a terminal.
async fn drive(
    url: &Endpoint,
    loaded: &deliverables_spec::LoadedSpec,
    base_dir: &Path,
    out: String,
    bundle_path: String,
) -> Result<JobStatus> {
    let mut client = crate::remote::connect(url).await?;
    let resp = client
        .submit_job(SubmitJobRequest {
            spec_toml: loaded.text.clone(),
            spec_sha256: loaded.sha256.clone(),
            base_dir: base_dir.display().to_string(),
            priority: 0,
            label: String::new(),
            output_dir: out,
            bundle_path,
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
        .into_inner();
    info!(job = %resp.job_id, tasks = resp.task_count, "job submitted");
    let bar = if std::io::stderr().is_terminal() {
        let b = ProgressBar::new(1000);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {percent:>3}% {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let mut last_done = usize::MAX;
    loop {
        // Counts only: the progress of a catalog costs one small message.
        let st = crate::remote::get_job_head(&mut client, &resp.job_id).await?;
        let c = st.counts.unwrap_or_default();
        let finished = (c.succeeded + c.failed + c.skipped + c.cancelled) as usize;
        if let Some(b) = &bar {
            b.set_position(1000 * finished as u64 / c.total.max(1));
            b.set_message(format!(
                "{finished}/{} tasks, {} running",
                c.total, c.leased
            ));
        } else if finished != last_done {
            info!(finished, total = c.total, "progress");
            last_done = finished;
        }
        if job_state(st.state) != Some(JobState::Running) {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return if c.total <= LIST_TASKS {
                crate::remote::get_job(&mut client, &resp.job_id).await
            } else {
                Ok(st)
            };
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A readable summary of a finished render, for the terminal.
pub fn summary_table(o: &RenderOutcome) -> String {
    let mut s = String::new();
    for t in &o.status.tasks {
        let state = task_state(t.state);
        if let Some(how @ (TaskState::Failed | TaskState::Skipped)) = state {
            s.push_str(&format!(
                "task {} {}: {}\n",
                t.label,
                if how == TaskState::Failed {
                    "FAILED"
                } else {
                    "skipped"
                },
                t.error
            ));
        }
    }
    let Some(m) = &o.manifest else {
        match &o.manifest_path {
            Some(p) => s.push_str(&format!(
                "{}; manifest: {} (too large to tabulate here: see report.html beside it)\n",
                if o.status.all_outputs_pass {
                    "every output passed"
                } else {
                    "NOT every output passed"
                },
                p.display()
            )),
            None => s.push_str("no manifest was written\n"),
        }
        return s;
    };
    let f = |v: Option<f64>| v.map_or("   -   ".to_string(), |x| format!("{x:7.2}"));
    for t in &m.titles {
        s.push_str(&format!("\n{} ({})\n", t.name, t.status));
        if let Some(e) = &t.error {
            s.push_str(&format!("  error: {e}\n"));
        }
        if let Some(l) = &t.level {
            s.push_str(&format!(
                "  master gain {:+.2} dB{}\n",
                l.master_gain_db,
                if l.clip_safety_db > 0.0 {
                    format!(" (clip safety -{:.2} dB)", l.clip_safety_db)
                } else {
                    String::new()
                }
            ));
        }
        s.push_str(&format!(
            "  {:<44} {:>7} {:>7} {:>7}  {}\n",
            "file", "LUFS", "dBTP", "LRA", "verdict"
        ));
        for out in &t.outputs {
            let name = out
                .file
                .as_ref()
                .map_or(format!("({})", out.variant), |f| f.path.clone());
            let m = out.measurement.as_ref();
            let verdict = match out.verdict.verdict {
                deliverables_spec::compliance::Outcome::Pass => "pass".to_string(),
                deliverables_spec::compliance::Outcome::Fail => {
                    format!("FAIL: {}", out.verdict.reasons.join("; "))
                }
            };
            s.push_str(&format!(
                "  {:<44} {} {} {}  {}\n",
                name,
                f(m.and_then(|m| m.integrated_lufs)),
                f(m.and_then(|m| m.true_peak_dbtp)),
                f(m.and_then(|m| m.loudness_range_lu)),
                verdict
            ));
        }
        for sk in &t.skipped {
            s.push_str(&format!("  skipped {}: {}\n", sk.variant, sk.reason));
        }
    }
    s.push_str(&format!(
        "\n{} outputs: {} passed, {} failed; manifest: {}\n",
        m.summary.outputs,
        m.summary.passed,
        m.summary.failed,
        o.manifest_path
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    ));
    if m.summary.outputs_from_cache > 0 {
        s.push_str(&format!(
            "{} rendered, {} reused from the render cache (rendered by an earlier job from the same inputs, graph and delivery)\n",
            m.summary.outputs_rendered, m.summary.outputs_from_cache
        ));
    }
    s
}
