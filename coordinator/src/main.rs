//! `stemforge`: render deliverable packs from stems.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use stemforge_coordinator::demo;
use stemforge_coordinator::local::{RenderOptions, render, summary_table};
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
    },
}

/// Logs go to stderr. On a terminal the progress bar tells the story, so only
/// warnings are logged by default; elsewhere (CI, services) progress is logged.
fn init_logs() {
    let default = if std::io::stderr().is_terminal() {
        "warn"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_env("STEMFORGE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    init_logs();
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Demo {
            dir,
            seconds,
            workers,
        } => {
            if !(1.0..=600.0).contains(&seconds) {
                anyhow::bail!("--seconds must be between 1 and 600");
            }
            let spec = demo::write_session(&dir, seconds)?;
            println!("demo session written to {}", dir.display());
            render_cmd(&rt, &spec, &settings, workers, None)
        }
        Cmd::Render { spec, workers, out } => render_cmd(&rt, &spec, &settings, workers, out),
        Cmd::Bench { seconds, repeats } => {
            if !(1.0..=600.0).contains(&seconds) {
                anyhow::bail!("--seconds must be between 1 and 600");
            }
            let dir = std::env::temp_dir().join(format!("stemforge-bench-{}", std::process::id()));
            let r = stemforge_coordinator::bench::run(&dir, seconds, repeats);
            let _ = std::fs::remove_dir_all(&dir);
            let r = r?;
            println!(
                "audio: {:.1} s, 6 stems, demo chain (per-stem EQ + compression, bus EQ + glue, master glue + true-peak limiter)",
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
            json,
        } => {
            let report = stemforge_coordinator::measure::measure(
                &stemforge_coordinator::measure::MeasureOptions {
                    files,
                    profile,
                    dialogue,
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
        Cmd::Validate { spec } => {
            let loaded = deliverables_spec::load_file(&spec).map_err(|e| anyhow::anyhow!("{e}"))?;
            let plan = deliverables_spec::plan_job(&loaded, env!("CARGO_PKG_VERSION"))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{}: valid; {} titles, {} tasks planned",
                spec.display(),
                loaded.spec.titles.len(),
                plan.tasks.len()
            );
            for s in plan.skipped {
                println!("  skipped {}/{}: {}", s.title, s.variant, s.reason);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
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
