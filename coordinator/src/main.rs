//! `stemforge`: render deliverable packs from stems.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deliverables_spec::model::Layout;
use stemforge_coordinator::demo;
use stemforge_coordinator::local::{RenderOptions, render, summary_table};
use stemforge_coordinator::remote;
use stemforge_coordinator::security::Role;
use stemforge_coordinator::settings::Settings;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "stemforge",
    version,
    about = "Stems in, a loudness-compliant deliverable pack and a compliance manifest out."
)]
struct Cli {
    /// Config file (default: ./stemforge.toml if present). STEMFORGE_* variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format on stderr: `text` or `json` (one object per line, with job
    /// and task ids as fields). Default from config `log_format`.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a demo session (synthesised stems, reference mix, spec) and render it.
    Demo {
        /// Folder for the session and its deliverables.
        #[arg(default_value = "stemforge-demo")]
        dir: PathBuf,
        /// Length of the demo song, seconds.
        #[arg(long, default_value_t = demo::DEMO_SECONDS)]
        seconds: f64,
        /// `stereo`, or `5.1`: the same song as a 5.1 session, whose pack
        /// is 5.1 with a stereo fold-down.
        #[arg(long, default_value = "stereo", value_parser = parse_layout)]
        layout: Layout,
        /// In-process workers (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Render every title and variant of a deliverables spec.
    Render {
        spec: PathBuf,
        /// In-process workers (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Output folder (default: the spec's delivery.output_dir).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a spec and its files without rendering.
    Validate { spec: PathBuf },
    /// Preflight only: check the stems of a spec's titles, or a folder of
    /// stems as it arrives (roles from file names, the reference mix from a
    /// name like `mix`/`ref`/`master`/`print`). Exit 1 if any error is found.
    Check {
        /// A spec file or a folder of stems.
        path: PathBuf,
        /// Findings as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Coordinator throughput: tasks per second over many worker connections
    /// (real tiny renders, SQLite store), and a catalog's speed-up with 1, 2
    /// and 4 worker processes.
    BenchCluster {
        /// Tiny titles for the dispatch measurement.
        #[arg(long, default_value_t = 500)]
        tiny_titles: usize,
        /// Concurrent worker connections for the dispatch measurement.
        #[arg(long, default_value_t = 50)]
        connections: usize,
        /// Titles of the scaling catalog (0 skips it).
        #[arg(long, default_value_t = 20)]
        titles: usize,
        /// Length of each scaling title, seconds.
        #[arg(long, default_value_t = 4.0)]
        seconds: f64,
    },
    /// Run a coordinator: the gRPC API over a durable job store in --data-dir.
    Coordinator {
        /// Address to listen on (default from config: 127.0.0.1:7447).
        #[arg(long)]
        listen: Option<String>,
        /// Folder for the job database (default from config: ./stemforge-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve Prometheus metrics at http://ADDR/metrics (default from
        /// config `metrics_listen`; off when empty).
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Allow listening beyond loopback without TLS and both tokens.
        #[arg(long)]
        insecure: bool,
    },
    /// Ask a coordinator's gRPC health service (exit 0 when SERVING): for
    /// probes. Uses the same TLS settings as the other client commands.
    Health {
        #[arg(long)]
        coordinator: Option<String>,
        /// A service name (e.g. stemforge.v1.Tasks); default: the server.
        #[arg(long, default_value = "")]
        service: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Run a worker that pulls tasks from a coordinator.
    Worker {
        /// Coordinator URL (default from config: http://127.0.0.1:7447).
        #[arg(long)]
        coordinator: Option<String>,
        /// Name shown in task histories (default: host name and process id).
        #[arg(long)]
        id: Option<String>,
    },
    /// Submit a spec to a coordinator; prints the job id.
    Submit {
        spec: PathBuf,
        #[arg(long)]
        coordinator: Option<String>,
        /// Higher runs first (default 0).
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        priority: i32,
        /// A name for status listings.
        #[arg(long, default_value = "")]
        label: String,
        /// Output folder (default: the spec's delivery.output_dir).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every job, or one job's tasks and their states.
    Status {
        job: Option<String>,
        #[arg(long)]
        coordinator: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Follow a job live until it finishes (exit 0 if it succeeded).
    Watch {
        job: String,
        #[arg(long)]
        coordinator: Option<String>,
    },
    /// Cancel a job: running tasks stop at their next heartbeat.
    Cancel {
        job: String,
        #[arg(long)]
        coordinator: Option<String>,
    },
    /// Run a job's failed, skipped and cancelled tasks again (or one task).
    Retry {
        job: String,
        /// Only this task (and what it blocked).
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        coordinator: Option<String>,
    },
    /// Measure files (WAV/BWF, FLAC, AIFF; mono to 7.1) as the manifest does:
    /// integrated, LRA, true peak, sample peak, max momentary and short-term.
    Measure {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Judge against a delivery profile (exit 1 if any file fails).
        #[arg(long)]
        profile: Option<String>,
        /// A dialogue stem aligned with the files: add dialogue-gated loudness.
        #[arg(long)]
        dialogue: Option<PathBuf>,
        /// Timecode frames per second for the overs found (with --profile).
        #[arg(long, default_value_t = 24.0)]
        frame_rate: f64,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Realtime factor of the mastering graph on one core (demo chain), with
    /// ffmpeg doing comparable work in the same run.
    Bench {
        /// Length of the benchmark song, seconds.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Runs of each; the best is kept.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// The demo session's layout: `stereo` or `5.1`.
        #[arg(long, default_value = "stereo", value_parser = parse_layout)]
        layout: Layout,
    },
}

/// Logs go to stderr. On a terminal the progress bar tells the story, so only
/// warnings are logged by default; elsewhere (CI, services) progress is logged.
/// Colour only on a terminal: a file or a pipe gets plain text.
fn init_logs(json: bool) {
    let terminal = std::io::stderr().is_terminal();
    let default = if terminal { "warn" } else { "info" };
    let asked = std::env::var("STEMFORGE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let filter = EnvFilter::new(log_directives(asked.as_deref(), default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(terminal)
        .with_writer(std::io::stderr);
    if json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        fmt.init();
    }
}

/// Our crates' log targets.
const OWN_TARGETS: [&str; 5] = [
    "stemforge",
    "stemforge_coordinator",
    "stemforge_worker",
    "stemforge_proto",
    "deliverables_spec",
];

/// The filter: a bare level (`info`, `debug`, or nothing set) applies to our
/// own crates while dependencies stay at `warn` (decoders and the HTTP stack
/// log routine chatter at `info`); anything with a target or a comma is an
/// explicit request and is taken as written.
fn log_directives(asked: Option<&str>, default: &str) -> String {
    let level = match asked.map(str::trim) {
        None | Some("") => default,
        Some(a) if a.contains('=') || a.contains(',') => return a.to_string(),
        Some(a) => a,
    };
    // Dependencies never log more than we do.
    let mut d = String::from(match level {
        "off" | "error" => level,
        _ => "warn",
    });
    for t in OWN_TARGETS {
        d.push_str(&format!(",{t}={level}"));
    }
    d
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(cli.config.as_deref())?;
    let json_logs = match cli.log_format.as_deref() {
        Some(f) => f == "json",
        None => match settings.log_format.as_str() {
            "" | "text" => false,
            "json" => true,
            other => anyhow::bail!("log_format `{other}` is not text or json"),
        },
    };
    init_logs(json_logs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Demo {
            dir,
            seconds,
            layout,
            workers,
        } => {
            if !(1.0..=600.0).contains(&seconds) {
                anyhow::bail!("--seconds must be between 1 and 600");
            }
            let spec = demo::write_session(&dir, seconds, layout)?;
            println!("demo session written to {}", dir.display());
            render_cmd(&rt, &spec, &settings, workers, None)
        }
        Cmd::Render { spec, workers, out } => render_cmd(&rt, &spec, &settings, workers, out),
        Cmd::Bench {
            seconds,
            repeats,
            layout,
        } => {
            if !(1.0..=600.0).contains(&seconds) {
                anyhow::bail!("--seconds must be between 1 and 600");
            }
            let dir = std::env::temp_dir().join(format!("stemforge-bench-{}", std::process::id()));
            let r = stemforge_coordinator::bench::run(&dir, seconds, repeats, layout);
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            println!(
                "audio: {:.1} s, 6 stems, {layout}, demo chain (per-stem EQ + compression, bus EQ + glue, master glue + true-peak limiter)",
                r.audio_seconds
            );
            println!("graph: {:.1}x realtime (one core)", r.graph_realtime);
            match r.ffmpeg_realtime {
                Some(f) => {
                    println!(
                        "ffmpeg amix+equalizer+acompressor+alimiter: {f:.1}x realtime (one thread)"
                    );
                    println!(
                        "ratio: stemforge graph is {:.2}x ffmpeg",
                        r.graph_realtime / f
                    );
                }
                None => println!("ffmpeg: not installed, no comparison"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Measure {
            files,
            profile,
            dialogue,
            frame_rate,
            json,
        } => {
            if !(frame_rate.is_finite() && (1.0..=120.0).contains(&frame_rate)) {
                anyhow::bail!("--frame-rate must be between 1 and 120, e.g. 24, 25 or 29.97");
            }
            let report = stemforge_coordinator::measure::measure(
                &stemforge_coordinator::measure::MeasureOptions {
                    files,
                    profile,
                    dialogue,
                    frame_rate,
                },
            )?;
            let out = if json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                stemforge_coordinator::measure::text(&report)
            };
            write_stdout(&out)?;
            Ok(if report.all_pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::BenchCluster {
            tiny_titles,
            connections,
            titles,
            seconds,
        } => {
            use stemforge_coordinator::bench_cluster;
            let dir = std::env::temp_dir()
                .join(format!("stemforge-bench-cluster-{}", std::process::id()));
            let r = rt.block_on(async {
                let d = bench_cluster::dispatch(&dir, tiny_titles, connections, &settings).await?;
                println!(
                    "dispatch: {} tasks ({} half-second titles: analysis + full mix each, + manifest) over {} worker connections in {:.2} s: {:.1} tasks/s",
                    d.tasks,
                    tiny_titles,
                    d.connections,
                    d.seconds,
                    d.tasks as f64 / d.seconds
                );
                if titles > 0 {
                    let rows = bench_cluster::scaling(&dir, titles, seconds, &settings).await?;
                    let base = rows.first().map_or(1.0, |r| r.seconds);
                    for r in &rows {
                        println!(
                            "catalog of {titles} x {seconds:.0} s titles ({} tasks), {} worker process(es): {:.1} s, speed-up {:.2}x",
                            r.tasks,
                            r.workers,
                            r.seconds,
                            base / r.seconds
                        );
                    }
                }
                anyhow::Ok(())
            });
            let _ = std::fs::remove_dir_all(&dir);
            r?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Coordinator {
            listen,
            data_dir,
            metrics_listen,
            insecure,
        } => {
            let listen = listen.unwrap_or_else(|| settings.listen.clone());
            let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(&settings.data_dir));
            let metrics_listen = metrics_listen.unwrap_or_else(|| settings.metrics_listen.clone());
            rt.block_on(stemforge_coordinator::daemon::run_coordinator(
                &settings,
                &stemforge_coordinator::daemon::CoordinatorArgs {
                    listen: &listen,
                    data_dir: &data_dir,
                    metrics_listen: &metrics_listen,
                    allow_insecure: insecure || settings.allow_insecure,
                },
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Health {
            coordinator,
            service,
            timeout,
        } => {
            let url = coordinator.unwrap_or_else(|| settings.coordinator.clone());
            let ep = settings.endpoint(&url, Role::Client)?;
            let limit = std::time::Duration::from_secs_f64(timeout.clamp(0.1, 600.0));
            let status = rt.block_on(async {
                tokio::time::timeout(limit, remote::health(&ep, &service))
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer from {url} within {timeout} s"))?
            })?;
            println!("{status}");
            Ok(if status == "SERVING" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Worker { coordinator, id } => {
            let url = coordinator.unwrap_or_else(|| settings.coordinator.clone());
            let id = id.unwrap_or_else(default_worker_id);
            rt.block_on(stemforge_coordinator::daemon::run_worker(
                &settings, &url, &id,
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Submit {
            spec,
            coordinator,
            priority,
            label,
            out,
        } => {
            let url = coordinator.unwrap_or_else(|| settings.coordinator.clone());
            let output_dir = match out {
                Some(o) => {
                    std::fs::create_dir_all(&o)?;
                    std::fs::canonicalize(&o)?.display().to_string()
                }
                None => String::new(),
            };
            let resp = rt.block_on(async {
                let mut c = remote::connect(&settings.endpoint(&url, Role::Client)?).await?;
                remote::submit_file(
                    &mut c,
                    &spec,
                    &remote::SubmitOptions {
                        priority,
                        label,
                        output_dir,
                    },
                )
                .await
            })?;
            write_stdout(&format!("{}\n", resp.job_id))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status {
            job,
            coordinator,
            json,
        } => {
            let url = coordinator.unwrap_or_else(|| settings.coordinator.clone());
            let out = rt.block_on(remote::status(
                &settings.endpoint(&url, Role::Client)?,
                job.as_deref(),
                json,
            ))?;
            write_stdout(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Watch { job, coordinator } => {
            let url = coordinator.unwrap_or_else(|| settings.coordinator.clone());
            let st = rt.block_on(remote::watch(&settings.endpoint(&url, Role::Client)?, &job))?;
            println!(
                "job {} {}{}",
                st.job_id,
                remote::job_state_name(st.state),
                if st.manifest_path.is_empty() {
                    String::new()
                } else {
                    format!("; manifest {}", st.manifest_path)
                }
            );
            let succeeded = stemforge_proto::states::job_state(st.state)
                == Some(deliverables_spec::contract::JobState::Succeeded);
            Ok(if succeeded && st.all_outputs_pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Cancel { job, coordinator } => {
            let url = coordinator.unwrap_or_else(|| settings.coordinator.clone());
            rt.block_on(remote::cancel(
                &settings.endpoint(&url, Role::Client)?,
                &job,
            ))?;
            println!("job {job} cancelled");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Retry {
            job,
            task,
            coordinator,
        } => {
            let url = coordinator.unwrap_or_else(|| settings.coordinator.clone());
            let n = rt.block_on(remote::retry(
                &settings.endpoint(&url, Role::Client)?,
                &job,
                task.as_deref(),
            ))?;
            println!("job {job}: {n} tasks to run again");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { path, json } => {
            let report = stemforge_coordinator::check::check(&path, &settings.media_roots())?;
            let out = if json {
                serde_json::to_string_pretty(&report)? + "\n"
            } else {
                stemforge_coordinator::check::text(&report)
            };
            write_stdout(&out)?;
            Ok(if report.errors == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Validate { spec } => {
            let loaded = deliverables_spec::load_file(&spec)?;
            let plan = deliverables_spec::plan_job(
                &loaded,
                env!("CARGO_PKG_VERSION"),
                &settings.media_roots(),
            )?;
            println!(
                "{}: valid; {} titles, {} tasks planned",
                spec.display(),
                loaded.spec.titles.len(),
                plan.tasks.len()
            );
            print!("{}", variants_table(&loaded.spec));
            for s in plan.skipped {
                match &s.same_as {
                    Some(_) => {
                        println!("  warning: {}/{} skipped, {}", s.title, s.variant, s.reason)
                    }
                    None => println!("  skipped {}/{}: {}", s.title, s.variant, s.reason),
                }
            }
            let all = deliverables_spec::variant::variants(&loaded.spec);
            for t in &loaded.spec.titles {
                let tv = deliverables_spec::plan::title_variants(&loaded.spec, t, &all);
                for (v, s) in tv.duplicates {
                    println!(
                        "  warning: {}/{v} written as asked, but it is not a version of this title (same as `{}`): {}",
                        t.name, s.variant, s.reason
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Each variant: its level policy, its output and what it acts on.
fn variants_table(spec: &deliverables_spec::Spec) -> String {
    let all = deliverables_spec::variant::variants(spec);
    let width = all.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut s = String::from("  variants:\n");
    for v in &all {
        s.push_str(&format!(
            "    {:width$}  {:10}  {:5}  {}\n",
            v.name,
            v.level.as_str(),
            match v.output {
                deliverables_spec::OutputKind::Mix => "mix",
                deliverables_spec::OutputKind::Stems => "stems",
            },
            v.acts_on()
        ));
    }
    s
}

/// `--layout`: `stereo` or `5.1`.
fn parse_layout(s: &str) -> Result<Layout, String> {
    match s {
        "stereo" => Ok(Layout::Stereo),
        "5.1" => Ok(Layout::Surround51),
        other => Err(format!("`{other}` is not a layout: use `stereo` or `5.1`")),
    }
}

/// `host-pid`: unique per worker process, readable in task histories.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(s: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(s.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn render_cmd(
    rt: &tokio::runtime::Runtime,
    spec: &std::path::Path,
    settings: &Settings,
    workers: Option<usize>,
    out: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let opts = RenderOptions {
        workers: workers.unwrap_or_else(|| settings.worker_count()),
        out,
    };
    let outcome = rt.block_on(render(spec, settings, &opts))?;
    print!("{}", summary_table(&outcome));
    println!(
        "rendered in {:.2} s with {} workers",
        started.elapsed().as_secs_f64(),
        opts.workers
    );
    Ok(if outcome.all_pass() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn dependencies_stay_at_warn_unless_named() {
        let d = log_directives(None, "info");
        assert!(
            d.starts_with("warn,") && d.contains("stemforge_worker=info"),
            "{d}"
        );
        let d = log_directives(Some("debug"), "info");
        assert!(
            d.starts_with("warn,") && d.contains("stemforge=debug"),
            "{d}"
        );
        assert_eq!(
            log_directives(Some("symphonia=info"), "info"),
            "symphonia=info"
        );
        assert!(log_directives(Some("off"), "info").starts_with("off,"));
        assert!(log_directives(Some("error"), "info").starts_with("error,"));
    }
}
