//! `stemforge`: render deliverable packs from stems.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use deliverables_spec::model::Layout;
use stemforge_coordinator::local::{RenderOptions, render, summary_table};
use stemforge_coordinator::remote;
use stemforge_coordinator::security::Role;
use stemforge_coordinator::settings::Settings;
use stemforge_demo as demo;
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
    Demo(DemoArgs),
    /// Render every title and variant of a deliverables spec.
    Render(RenderArgs),
    /// The pack for a song, on request: render a selection of a spec
    /// (titles, variants, another profile) and write one zip of every file,
    /// the manifest, the report and a README. Prints the zip's path, size,
    /// SHA-256 and the summary table.
    Pack(PackArgs),
    /// Check a spec and its files without rendering.
    Validate(ValidateArgs),
    /// Preflight only: check the stems of a spec's titles, or a folder of
    /// stems as it arrives (roles from file names, the reference mix from a
    /// name like `mix`/`ref`/`master`/`print`; a folder of such folders, each
    /// as a title). Exit 1 if any error is found.
    Check(CheckArgs),
    /// Coordinator throughput: tasks per second over many worker connections
    /// (real tiny renders, SQLite store), and a catalog's speed-up with 1, 2
    /// and 4 worker processes. With --catalog: a coordinator process per
    /// catalog size, its submit time, memory and leases per second.
    BenchCluster(BenchClusterArgs),
    /// Run a coordinator: the gRPC API over a durable job store in --data-dir.
    Coordinator(CoordinatorArgs),
    /// Ask a coordinator's gRPC health service (exit 0 when SERVING): for
    /// probes. Uses the same TLS settings as the other client commands.
    Health(HealthArgs),
    /// Run a worker that pulls tasks from a coordinator.
    Worker(WorkerArgs),
    /// Submit a spec to a coordinator; prints the job id.
    Submit(SubmitArgs),
    /// Every job, or one job's tasks and their states.
    Status(StatusArgs),
    /// Follow a job live until it finishes (exit 0 if it succeeded).
    Watch(WatchArgs),
    /// The coordinator's `[[schedules]]`: cron and zone, last run (and its
    /// job), next run, last error.
    Schedules(SchedulesArgs),
    /// The coordinator's hot folders (`[[watch]]`): what each has
    /// submitted, what waits to settle, what was rejected.
    HotFolders(HotFoldersArgs),
    /// Cancel a job: running tasks stop at their next heartbeat.
    Cancel(CancelArgs),
    /// Run a job's failed, skipped and cancelled tasks again (or one task).
    Retry(RetryArgs),
    /// Change a running job's priority (higher runs first): its queued
    /// tasks move in the lease order at once.
    Priority(PriorityArgs),
    /// Measure files (WAV/BWF, FLAC, AIFF; mono to 7.1) as the manifest does:
    /// integrated, LRA, true peak, sample peak, max momentary and short-term.
    Measure(MeasureArgs),
    /// Realtime factor of the mastering graph on one core (demo chain), with
    /// ffmpeg doing comparable work in the same run. With --pack: the cost
    /// of a whole pack (`render --workers 1`) against ffmpeg writing and
    /// measuring the same outputs, CPU time, wall time and peak memory.
    Bench(BenchArgs),
    /// The render cache: `stats`, or `prune` it to a size.
    Cache(CacheArgs),
    /// Internal to `bench --pack`: runs a command, then writes its CPU time,
    /// peak RSS and elapsed time (getrusage of the waited child) to a file.
    #[command(name = "bench-probe", hide = true)]
    BenchProbe(BenchProbeArgs),
}

#[derive(Args)]
struct DemoArgs {
    /// Folder for the session and its deliverables.
    #[arg(default_value = "stemforge-demo")]
    pub dir: PathBuf,
    /// Length of the demo song, seconds.
    #[arg(long, default_value_t = demo::DEMO_SECONDS)]
    pub seconds: f64,
    /// `stereo`, or `5.1`: the same song as a 5.1 session, whose pack
    /// is 5.1 with a stereo fold-down.
    #[arg(long, default_value = "stereo", value_parser = parse_layout)]
    pub layout: Layout,
    /// In-process workers (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Render everything: neither reuse nor keep outputs in the render cache.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Args)]
struct RenderArgs {
    /// A spec file, or a folder of stems (one title; or, holding only
    /// sub-folders, one title per sub-folder) rendered with the default
    /// variants and profile into DIR/deliverables.
    pub spec: PathBuf,
    /// In-process workers (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Output folder (default: the spec's delivery.output_dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Render everything: neither reuse nor keep outputs in the render cache
    /// (config `cache = false` turns it off for good).
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Args)]
struct CacheArgs {
    #[command(subcommand)]
    pub cmd: CacheCmd,
    /// The cache folder (default: config `cache_dir`, else the per-user
    /// cache folder; a coordinator's is DATA_DIR/cache).
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand)]
enum CacheCmd {
    /// Entries, size and hits of each kind.
    Stats,
    /// Evict least recently used entries down to a size.
    Prune {
        /// Size to prune to, GB (default: config `cache_max_gb`).
        #[arg(long, conflicts_with = "all")]
        max_gb: Option<f64>,
        /// Remove every entry.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Args)]
struct PackArgs {
    /// A spec, or a folder of stems (one title; a folder of folders, one
    /// title each) rendered with the default variants and profile.
    pub spec: PathBuf,
    /// Keep only this title (repeat it, or a comma-separated list; a name
    /// that holds a comma is taken whole).
    #[arg(long = "title")]
    pub titles: Vec<String>,
    /// Keep only these variants, e.g. `full,instrumental` (names the spec renders).
    #[arg(long, value_delimiter = ',')]
    pub variants: Vec<String>,
    /// Deliver to this profile instead of the spec's (its limits replace
    /// the ones written in [delivery]).
    #[arg(long)]
    pub profile: Option<String>,
    /// The zip to write (its folder must exist).
    #[arg(short = 'o', long = "output", required = true)]
    pub output: PathBuf,
    /// Folder for the rendered files (default: beside the zip, named after it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Submit to this coordinator and follow the job, instead of rendering here.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// In-process workers when rendering here (default: one per core).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Priority on a coordinator (higher runs first).
    #[arg(long, default_value_t = stemforge_cli::pack::PACK_PRIORITY, allow_hyphen_values = true)]
    pub priority: i32,
    /// Render everything (when rendering here): neither reuse nor keep
    /// outputs in the render cache.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Args)]
struct ValidateArgs {
    pub spec: PathBuf,
}

#[derive(Args)]
struct CheckArgs {
    /// A spec file or a folder of stems.
    pub path: PathBuf,
    /// Findings as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
struct BenchClusterArgs {
    /// Tiny titles for the dispatch measurement.
    #[arg(long, default_value_t = 500)]
    pub tiny_titles: usize,
    /// Concurrent worker connections for the dispatch measurement.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Titles of the scaling catalog (0 skips it).
    #[arg(long, default_value_t = 20)]
    pub titles: usize,
    /// Length of each scaling title (and of the catalog mode's stems), seconds.
    #[arg(long, default_value_t = 4.0)]
    pub seconds: f64,
    /// Catalog mode, instead of the measurements above: titles per catalog,
    /// comma-separated (e.g. 100,1000,10000). Each size gets a coordinator
    /// process on a fresh SQLite folder; prints submit time, its memory and
    /// lease-and-release cycles per second with the whole job queued.
    #[arg(long, value_delimiter = ',')]
    pub catalog: Vec<usize>,
    /// Catalog mode: lease-and-release cycles per size.
    #[arg(long, default_value_t = 2000)]
    pub leases: usize,
    /// Catalog mode: concurrent gRPC clients leasing as workers.
    #[arg(long, default_value_t = 4)]
    pub lease_clients: usize,
}

#[derive(Args)]
struct CoordinatorArgs {
    /// Address to listen on (default from config: 127.0.0.1:7447).
    #[arg(long)]
    pub listen: Option<String>,
    /// Folder for the job database (default from config: ./stemforge-data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The HTTP listener: Prometheus metrics at http://ADDR/metrics and
    /// the operator dashboard at http(s)://ADDR/ (default from config
    /// `http_listen` or its older name `metrics_listen`; off when empty).
    #[arg(long = "http-listen", visible_alias = "metrics-listen")]
    pub metrics_listen: Option<String>,
    /// Allow listening beyond loopback without TLS and both tokens.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Args)]
struct HealthArgs {
    #[arg(long)]
    pub coordinator: Option<String>,
    /// A service name (e.g. stemforge.v1.Tasks); default: the server.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
}

#[derive(Args)]
struct WorkerArgs {
    /// Coordinator URL (default from config: http://127.0.0.1:7447).
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Name shown in task histories (default: host name and process id).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Args)]
struct SubmitArgs {
    pub spec: PathBuf,
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Higher runs first (default 0).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub priority: i32,
    /// A name for status listings.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Output folder (default: the spec's delivery.output_dir).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
struct HotFoldersArgs {
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
struct StatusArgs {
    pub job: Option<String>,
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
struct SchedulesArgs {
    #[arg(long)]
    pub coordinator: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
struct WatchArgs {
    pub job: String,
    #[arg(long)]
    pub coordinator: Option<String>,
}

#[derive(Args)]
struct CancelArgs {
    pub job: String,
    #[arg(long)]
    pub coordinator: Option<String>,
}

#[derive(Args)]
struct RetryArgs {
    pub job: String,
    /// Only this task (and what it blocked).
    #[arg(long)]
    pub task: Option<String>,
    #[arg(long)]
    pub coordinator: Option<String>,
}

#[derive(Args)]
struct PriorityArgs {
    pub job: String,
    /// The new priority (higher runs first; negative allowed).
    #[arg(allow_hyphen_values = true)]
    pub priority: i32,
    #[arg(long)]
    pub coordinator: Option<String>,
}

#[derive(Args)]
struct MeasureArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Judge against a delivery profile (exit 1 if any file fails).
    #[arg(long)]
    pub profile: Option<String>,
    /// A dialogue stem aligned with the files: add dialogue-gated loudness.
    #[arg(long)]
    pub dialogue: Option<PathBuf>,
    /// Timecode frames per second for the overs found (with --profile).
    #[arg(long, default_value_t = 24.0)]
    pub frame_rate: f64,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Length of the benchmark song, seconds (default 60; with --pack the
    /// demo's 45).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Runs of each; the best is kept (with --pack: runs alternate between
    /// stemforge and ffmpeg and the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// The demo session's layout: `stereo` or `5.1`.
    #[arg(long, default_value = "stereo", value_parser = parse_layout)]
    pub layout: Layout,
    /// Measure a whole pack: `stemforge render --workers 1` against ffmpeg
    /// rendering the same outputs through the spec's graph and measuring
    /// each (ebur128); CPU, wall, peak RSS, realtime factor per core.
    #[arg(long)]
    pub pack: bool,
    /// With --pack: the spec to render (all its titles; default: the demo
    /// session, written to a temporary folder).
    #[arg(requires = "pack")]
    pub spec: Option<PathBuf>,
    /// With --pack: print the figures as JSON.
    #[arg(long, requires = "pack")]
    pub json: bool,
}

#[derive(Args)]
struct BenchProbeArgs {
    /// Where the figures are written (JSON).
    #[arg(long)]
    pub report: PathBuf,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub cmd: Vec<std::ffi::OsString>,
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
    // The probe measures another process: no settings, logs or runtime.
    if let Cmd::BenchProbe(a) = &cli.cmd {
        return stemforge_cli::bench_pack::probe(&a.report, &a.cmd);
    }
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
    let ctx = Ctx { rt, settings };
    let result = match cli.cmd {
        Cmd::Demo(a) => demo(&ctx, a),
        Cmd::Render(a) => render_spec(&ctx, a),
        Cmd::Pack(a) => pack(&ctx, a),
        Cmd::Bench(a) => bench(a),
        Cmd::BenchProbe(a) => stemforge_cli::bench_pack::probe(&a.report, &a.cmd),
        Cmd::Measure(a) => measure(a),
        Cmd::BenchCluster(a) => bench_cluster(&ctx, cli.config.as_deref(), a),
        Cmd::Coordinator(a) => coordinator(&ctx, a),
        Cmd::Health(a) => health(&ctx, a),
        Cmd::Worker(a) => worker(&ctx, a),
        Cmd::Submit(a) => submit(&ctx, a),
        Cmd::Status(a) => status(&ctx, a),
        Cmd::Watch(a) => watch(&ctx, a),
        Cmd::Schedules(a) => schedules(&ctx, a),
        Cmd::HotFolders(a) => hot_folders(&ctx, a),
        Cmd::Cancel(a) => cancel(&ctx, a),
        Cmd::Retry(a) => retry(&ctx, a),
        Cmd::Priority(a) => priority(&ctx, a),
        Cmd::Check(a) => check(&ctx, a),
        Cmd::Validate(a) => validate(&ctx, a),
        Cmd::Cache(a) => cache(&ctx, a),
    };
    // A blocking task stuck on a dead mount (a hot folder's scan, say) must
    // not hold the process after its command is done: the runtime gives
    // such tasks 5 s, then exits without them.
    ctx.rt.shutdown_timeout(std::time::Duration::from_secs(5));
    result
}

/// What every command runs with: the layered settings and the runtime.
struct Ctx {
    rt: tokio::runtime::Runtime,
    settings: Settings,
}

fn demo(ctx: &Ctx, a: DemoArgs) -> anyhow::Result<ExitCode> {
    let DemoArgs {
        dir,
        seconds,
        layout,
        workers,
        no_cache,
    } = a;
    if !(1.0..=600.0).contains(&seconds) {
        anyhow::bail!("--seconds must be between 1 and 600");
    }
    let spec = demo::write_session(&dir, seconds, layout)?;
    println!("demo session written to {}", dir.display());
    render_cmd(&ctx.rt, &spec, &ctx.settings, workers, None, no_cache)
}

fn render_spec(ctx: &Ctx, a: RenderArgs) -> anyhow::Result<ExitCode> {
    let RenderArgs {
        spec,
        workers,
        out,
        no_cache,
    } = a;
    if spec.is_dir() {
        let d = stemforge_cli::catalog_dir::write_spec(&spec, out)?;
        println!(
            "{}: {} title(s); spec written to {}",
            spec.display(),
            d.titles,
            d.spec.display()
        );
        return render_cmd(
            &ctx.rt,
            &d.spec,
            &ctx.settings,
            workers,
            Some(d.out),
            no_cache,
        )
        .with_context(|| {
            format!(
                "a title the file names cannot settle takes overrides in {} (then `stemforge render` it)",
                d.spec.display()
            )
        });
    }
    warn_skipped(&spec);
    render_cmd(&ctx.rt, &spec, &ctx.settings, workers, out, no_cache)
}

fn cache(ctx: &Ctx, a: CacheArgs) -> anyhow::Result<ExitCode> {
    use stemforge_cli::cache_cmd;
    let cfg = cache_cmd::config(&ctx.settings, a.dir)?;
    let cache = cache_cmd::open(&cfg)?;
    match a.cmd {
        CacheCmd::Stats => {
            let s = cache.stats()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", cache_cmd::stats_text(&s));
            }
        }
        CacheCmd::Prune { max_gb, all } => {
            let max_bytes = match (all, max_gb) {
                (true, _) => 0,
                (false, Some(gb)) if gb.is_finite() && gb >= 0.0 => (gb * 1e9) as u64,
                (false, Some(gb)) => anyhow::bail!("--max-gb {gb}: give a size of 0 or more"),
                (false, None) => cfg.max_bytes,
            };
            let (n, freed, after) = cache_cmd::prune(&cache, max_bytes)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({"removed": n, "bytes_freed": freed, "after": after})
                );
            } else {
                print!("{}", cache_cmd::pruned_text(n, freed, &after));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Titles a catalog left out (`on_error = "skip"`), on stderr. Only a
/// spec with a catalog is read for it (render reads every spec itself).
fn warn_skipped(spec: &std::path::Path) {
    let has_catalog = std::fs::read_to_string(spec).is_ok_and(|t| t.contains("[catalog"));
    if has_catalog && let Ok(l) = deliverables_spec::load_file(spec) {
        for s in &l.skipped {
            eprintln!("warning: left out of the catalog: {s}");
        }
    }
}

fn pack(ctx: &Ctx, a: PackArgs) -> anyhow::Result<ExitCode> {
    let PackArgs {
        spec,
        titles,
        variants,
        profile,
        output,
        out,
        coordinator,
        workers,
        priority,
        no_cache,
    } = a;
    let opts = stemforge_cli::pack::PackOptions {
        spec,
        selection: deliverables_spec::overrides::Selection {
            titles,
            variants,
            profile,
        },
        zip: output,
        out,
        coordinator,
        workers: workers.unwrap_or_else(|| ctx.settings.worker_count()),
        priority,
        no_cache,
    };
    let started = std::time::Instant::now();
    let o = ctx
        .rt
        .block_on(stemforge_cli::pack::pack(&opts, &ctx.settings))?;
    write_stdout(&stemforge_cli::pack::text(&o))?;
    println!("packed in {:.2} s", started.elapsed().as_secs_f64());
    Ok(if o.render.all_pass() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let BenchArgs {
        seconds,
        repeats,
        layout,
        pack,
        spec,
        json,
    } = a;
    if pack {
        return bench_pack(spec, seconds, repeats, layout, json);
    }
    let seconds = seconds.unwrap_or(60.0);
    if !(1.0..=600.0).contains(&seconds) {
        anyhow::bail!("--seconds must be between 1 and 600");
    }
    let dir = std::env::temp_dir().join(format!("stemforge-bench-{}", std::process::id()));
    let r = stemforge_cli::bench::run(&dir, seconds, repeats, layout);
    let _ = std::fs::remove_dir_all(&dir);
    let r = r?;
    println!(
        "audio: {:.1} s, 6 stems, {layout}, demo chain (per-stem EQ + compression, bus EQ + glue, master glue + true-peak limiter)",
        r.audio_seconds
    );
    println!("graph: {:.1}x realtime (one core)", r.graph_realtime);
    match r.ffmpeg_realtime {
        Some(f) => {
            println!("ffmpeg amix+equalizer+acompressor+alimiter: {f:.1}x realtime (one thread)");
            println!(
                "ratio: stemforge graph is {:.2}x ffmpeg",
                r.graph_realtime / f
            );
        }
        None => println!("ffmpeg: not installed, no comparison"),
    }
    Ok(ExitCode::SUCCESS)
}

fn bench_pack(
    spec: Option<PathBuf>,
    seconds: Option<f64>,
    repeats: usize,
    layout: Layout,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let seconds = seconds.unwrap_or(demo::DEMO_SECONDS);
    if spec.is_none() && !(seconds.is_finite() && (1.0..=7200.0).contains(&seconds)) {
        anyhow::bail!("--seconds must be between 1 and 7200");
    }
    if repeats == 0 {
        anyhow::bail!("--repeats must be at least 1");
    }
    let r = stemforge_cli::bench_pack::run(&stemforge_cli::bench_pack::PackOptions {
        spec,
        seconds,
        layout,
        repeats,
    })?;
    let out = if json {
        serde_json::to_string_pretty(&r)? + "\n"
    } else {
        stemforge_cli::bench_pack::text(&r)
    };
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn measure(a: MeasureArgs) -> anyhow::Result<ExitCode> {
    let MeasureArgs {
        files,
        profile,
        dialogue,
        frame_rate,
        json,
    } = a;
    if !(frame_rate.is_finite() && (1.0..=120.0).contains(&frame_rate)) {
        anyhow::bail!("--frame-rate must be between 1 and 120, e.g. 24, 25 or 29.97");
    }
    let report = stemforge_cli::measure::measure(&stemforge_cli::measure::MeasureOptions {
        files,
        profile,
        dialogue,
        frame_rate,
    })?;
    let out = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        stemforge_cli::measure::text(&report)
    };
    write_stdout(&out)?;
    Ok(if report.all_pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn bench_cluster(
    ctx: &Ctx,
    config: Option<&std::path::Path>,
    a: BenchClusterArgs,
) -> anyhow::Result<ExitCode> {
    let BenchClusterArgs {
        tiny_titles,
        connections,
        titles,
        seconds,
        catalog,
        leases,
        lease_clients,
    } = a;
    use stemforge_cli::bench_cluster;
    let dir = std::env::temp_dir().join(format!("stemforge-bench-cluster-{}", std::process::id()));
    if !catalog.is_empty() {
        if catalog.contains(&0) {
            anyhow::bail!("--catalog sizes must be at least 1 title");
        }
        if !(1.0..=600.0).contains(&seconds) {
            anyhow::bail!("--seconds must be between 1 and 600");
        }
        if leases == 0 {
            anyhow::bail!("--leases must be at least 1");
        }
        if !(1..=256).contains(&lease_clients) {
            anyhow::bail!("--lease-clients must be between 1 and 256");
        }
        let opts = bench_cluster::CatalogOptions {
            sizes: &catalog,
            stem_seconds: seconds,
            leases,
            clients: lease_clients,
            settings: &ctx.settings,
            config,
        };
        let rows = ctx.rt.block_on(bench_cluster::catalog_sizes(&dir, &opts));
        let _ = std::fs::remove_dir_all(&dir);
        let rows = rows?;
        println!(
            "catalog: a coordinator process per size (SQLite store, whole job queued); {leases} lease+release cycles over {} client(s) each",
            rows.first().map_or(lease_clients, |r| r.clients)
        );
        print!("{}", bench_cluster::catalog_table(&rows));
        return Ok(ExitCode::SUCCESS);
    }
    let r = ctx.rt.block_on(async {
        let d = bench_cluster::dispatch(&dir, tiny_titles, connections, &ctx.settings).await?;
        println!(
            "dispatch: {} tasks ({} half-second titles: analysis + full mix each, + manifest) over {} worker connections in {:.2} s: {:.1} tasks/s",
            d.tasks,
            tiny_titles,
            d.connections,
            d.seconds,
            d.tasks as f64 / d.seconds
        );
        if titles > 0 {
            let rows = bench_cluster::scaling(&dir, titles, seconds, &ctx.settings).await?;
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

fn coordinator(ctx: &Ctx, a: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    let CoordinatorArgs {
        listen,
        data_dir,
        metrics_listen,
        insecure,
    } = a;
    let listen = listen.unwrap_or_else(|| ctx.settings.listen.clone());
    let data_dir = data_dir.unwrap_or_else(|| PathBuf::from(&ctx.settings.data_dir));
    let metrics_listen = match metrics_listen {
        Some(m) => m,
        None => ctx.settings.http_address()?,
    };
    ctx.rt
        .block_on(stemforge_coordinator::daemon::run_coordinator(
            &ctx.settings,
            &stemforge_coordinator::daemon::CoordinatorArgs {
                listen: &listen,
                data_dir: &data_dir,
                metrics_listen: &metrics_listen,
                allow_insecure: insecure || ctx.settings.allow_insecure,
                metrics_public: ctx.settings.metrics_public,
            },
        ))?;
    Ok(ExitCode::SUCCESS)
}

fn health(ctx: &Ctx, a: HealthArgs) -> anyhow::Result<ExitCode> {
    let HealthArgs {
        coordinator,
        service,
        timeout,
    } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    let ep = ctx.settings.endpoint(&url, Role::Client)?;
    let limit = std::time::Duration::from_secs_f64(timeout.clamp(0.1, 600.0));
    let status = ctx.rt.block_on(async {
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

fn worker(ctx: &Ctx, a: WorkerArgs) -> anyhow::Result<ExitCode> {
    let WorkerArgs { coordinator, id } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    let id = id.unwrap_or_else(default_worker_id);
    ctx.rt.block_on(stemforge_coordinator::daemon::run_worker(
        &ctx.settings,
        &url,
        &id,
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn submit(ctx: &Ctx, a: SubmitArgs) -> anyhow::Result<ExitCode> {
    let SubmitArgs {
        spec,
        coordinator,
        priority,
        label,
        out,
    } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    let output_dir = match out {
        Some(o) => {
            std::fs::create_dir_all(&o)?;
            std::fs::canonicalize(&o)?.display().to_string()
        }
        None => String::new(),
    };
    let resp = ctx.rt.block_on(async {
        let mut c = remote::connect(&ctx.settings.endpoint(&url, Role::Client)?).await?;
        remote::submit_file(
            &mut c,
            &spec,
            &remote::SubmitOptions {
                priority,
                label,
                output_dir,
                bundle_path: String::new(),
            },
        )
        .await
    })?;
    write_stdout(&format!("{}\n", resp.job_id))?;
    Ok(ExitCode::SUCCESS)
}

fn status(ctx: &Ctx, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let StatusArgs {
        job,
        coordinator,
        json,
    } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    let out = ctx.rt.block_on(remote::status(
        &ctx.settings.endpoint(&url, Role::Client)?,
        job.as_deref(),
        json,
    ))?;
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn schedules(ctx: &Ctx, a: SchedulesArgs) -> anyhow::Result<ExitCode> {
    let SchedulesArgs { coordinator, json } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    let out = ctx.rt.block_on(remote::schedules(
        &ctx.settings.endpoint(&url, Role::Client)?,
        json,
    ))?;
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn hot_folders(ctx: &Ctx, a: HotFoldersArgs) -> anyhow::Result<ExitCode> {
    let HotFoldersArgs { coordinator, json } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    let out = ctx.rt.block_on(remote::hot_folders(
        &ctx.settings.endpoint(&url, Role::Client)?,
        json,
    ))?;
    write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

fn watch(ctx: &Ctx, a: WatchArgs) -> anyhow::Result<ExitCode> {
    let WatchArgs { job, coordinator } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    let st = ctx.rt.block_on(remote::watch(
        &ctx.settings.endpoint(&url, Role::Client)?,
        &job,
    ))?;
    println!(
        "job {} {}{}{}",
        st.job_id,
        remote::job_state_name(st.state),
        if st.manifest_path.is_empty() {
            String::new()
        } else {
            format!("; manifest {}", st.manifest_path)
        },
        if st.bundle_path.is_empty() {
            String::new()
        } else {
            format!("; pack {} (sha256 {})", st.bundle_path, st.bundle_sha256)
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

fn cancel(ctx: &Ctx, a: CancelArgs) -> anyhow::Result<ExitCode> {
    let CancelArgs { job, coordinator } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    ctx.rt.block_on(remote::cancel(
        &ctx.settings.endpoint(&url, Role::Client)?,
        &job,
    ))?;
    println!("job {job} cancelled");
    Ok(ExitCode::SUCCESS)
}

fn retry(ctx: &Ctx, a: RetryArgs) -> anyhow::Result<ExitCode> {
    let RetryArgs {
        job,
        task,
        coordinator,
    } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    let n = ctx.rt.block_on(remote::retry(
        &ctx.settings.endpoint(&url, Role::Client)?,
        &job,
        task.as_deref(),
    ))?;
    println!("job {job}: {n} tasks to run again");
    Ok(ExitCode::SUCCESS)
}

fn priority(ctx: &Ctx, a: PriorityArgs) -> anyhow::Result<ExitCode> {
    let PriorityArgs {
        job,
        priority,
        coordinator,
    } = a;
    let url = coordinator.unwrap_or_else(|| ctx.settings.coordinator.clone());
    ctx.rt.block_on(remote::set_priority(
        &ctx.settings.endpoint(&url, Role::Client)?,
        &job,
        priority,
    ))?;
    println!("job {job}: priority {priority}");
    Ok(ExitCode::SUCCESS)
}

fn check(ctx: &Ctx, a: CheckArgs) -> anyhow::Result<ExitCode> {
    let CheckArgs { path, json } = a;
    let report = stemforge_cli::check::check(&path, &ctx.settings.media_roots())?;
    let out = if json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        stemforge_cli::check::text(&report)
    };
    write_stdout(&out)?;
    Ok(if report.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn validate(ctx: &Ctx, a: ValidateArgs) -> anyhow::Result<ExitCode> {
    let ValidateArgs { spec } = a;
    let loaded = deliverables_spec::load_file(&spec)?;
    for s in &loaded.skipped {
        println!("  warning: left out of the catalog: {s}");
    }
    let plan = deliverables_spec::plan_job(
        &loaded,
        env!("CARGO_PKG_VERSION"),
        &ctx.settings.media_roots(),
    )?;
    let outside = edits_outside(&loaded);
    if !outside.is_empty() {
        eprintln!(
            "error: {}: {} edit(s) do not fit their programme",
            spec.display(),
            outside.len()
        );
        for e in outside {
            eprintln!("  - {e}");
        }
        return Ok(ExitCode::FAILURE);
    }
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
    // The picture variants (M&E, DME) apply to titles with a dialogue stem
    // only: how many titles get them, in one line.
    let picture: Vec<&str> = deliverables_spec::variant::DIALOGUE_VARIANTS
        .into_iter()
        .filter(|n| loaded.spec.variants.contains_key(*n))
        .collect();
    if !picture.is_empty() {
        let with = loaded
            .spec
            .titles
            .iter()
            .filter(|t| {
                t.stems
                    .iter()
                    .any(|s| s.role == deliverables_spec::model::Role::Dialogue)
            })
            .count();
        println!(
            "  {}: for {with} of {} titles (those with a dialogue stem)",
            picture.join(", "),
            loaded.spec.titles.len()
        );
    }
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

/// The titles whose edit (a cutdown) reaches outside its stems at some
/// pack's rate: the stems' headers are read for their lengths, as the
/// analysis will, so `validate` refuses what a render would.
fn edits_outside(loaded: &deliverables_spec::LoadedSpec) -> Vec<String> {
    let mut out = Vec::new();
    for t in &loaded.spec.titles {
        let Some(e) = &t.edit else { continue };
        let paths: Vec<_> = t.stems.iter().map(|s| loaded.path(&s.file)).collect();
        let cut = match (&e.of, &e.name) {
            (Some(of), Some(n)) => format!(" (cutdown `{n}` of `{of}`)"),
            _ => String::new(),
        };
        for pack in loaded.delivery().packs() {
            if let Err(err) =
                stemforge_worker::source::TitleSource::open_edited(&paths, pack, t.layout, Some(e))
            {
                out.push(format!("title `{}`{cut}: {err}", t.name));
                break;
            }
        }
    }
    out
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
                deliverables_spec::OutputKind::Live => "live",
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
    no_cache: bool,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let opts = RenderOptions {
        workers: workers.unwrap_or_else(|| settings.worker_count()),
        out,
        no_cache,
        bundle: None,
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
