//! `stemforge bench --pack [SPEC]`: the cost of a whole deliverable pack
//! (preflight, analysis, every variant and stem, measurement, manifest) next
//! to ffmpeg producing the same outputs, in one run.
//!
//! Runs alternate (stemforge, ffmpeg, stemforge, ffmpeg …) so both sides see
//! the same machine state; the median of each figure is reported.
//!
//! - stemforge: one child process, `stemforge render SPEC --workers 1`.
//! - ffmpeg: for every output stemforge wrote (its `manifest.json`), one
//!   ffmpeg process rendering that output from the stems through the spec's
//!   graph translated into a `-filter_complex` ([`output_filter`]), then one
//!   ffmpeg process measuring it (`ebur128=peak=true`). The pack's CPU time
//!   is the sum over its processes, its peak RSS the largest, its wall time
//!   the sum of their elapsed times (they run one after another).
//!
//! **How a process is measured.** Each child runs under the hidden
//! `stemforge bench-probe --report FILE -- CMD ARGS` ([`probe`]): the probe
//! spawns the command, waits for it, then reads `getrusage(RUSAGE_CHILDREN)`.
//! The kernel's own accounting for the waited child (and any descendants it
//! waited for): user + system CPU at microsecond resolution and `ru_maxrss`,
//! the child's RSS high-water mark. Both are exact, unlike sampling
//! `/proc/PID/status` (misses a peak between polls or just before exit) or
//! `/proc/self/stat` cutime/cstime (clock ticks, 10 ms). The probe's own
//! start-up is not counted: RUSAGE_CHILDREN covers only its child.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use deliverables_spec::model::{Detection, Layout, NodeKind, NodeSpec, Role};
use deliverables_spec::outputs::title_outputs;
use deliverables_spec::variant::{TitleGraph, title_graph};
use serde::{Deserialize, Serialize};

use stemforge_demo as demo;

/// What `stemforge bench --pack` is asked to do.
pub struct PackOptions {
    /// The spec to render; `None`: the demo session, written for the run.
    pub spec: Option<PathBuf>,
    /// Length of the demo session (ignored with a spec).
    pub seconds: f64,
    pub layout: Layout,
    pub repeats: usize,
}

/// One measured process (or, for ffmpeg, one pack: the sum of its processes'
/// CPU and elapsed time, the largest of their peaks).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Usage {
    pub cpu_s: f64,
    pub wall_s: f64,
    pub peak_rss_mb: f64,
}

/// One side's figures: medians over the runs, and each run.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub cpu_s: f64,
    pub wall_s: f64,
    pub peak_rss_mb: f64,
    /// Audio seconds of the session per CPU second.
    pub realtime_per_core: f64,
    /// Processes per pack.
    pub processes: usize,
    pub runs: Vec<Usage>,
}

/// One output as both tools measured it: how close the translation is.
#[derive(Debug, Clone, Serialize)]
pub struct OutputCheck {
    pub title: String,
    pub file: String,
    pub stemforge_integrated_lufs: Option<f64>,
    pub ffmpeg_integrated_lufs: Option<f64>,
    pub stemforge_true_peak_dbtp: Option<f64>,
    pub ffmpeg_true_peak_dbtp: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PackReport {
    /// The spec rendered, or `demo` for the demo session.
    pub spec: String,
    pub titles: usize,
    pub outputs: usize,
    /// Seconds of audio in the session (each title's length, summed).
    pub audio_seconds: f64,
    pub repeats: usize,
    pub stemforge: Side,
    pub ffmpeg: Side,
    /// stemforge CPU / ffmpeg CPU (medians).
    pub cpu_ratio: f64,
    /// stemforge wall / ffmpeg wall (medians).
    pub wall_ratio: f64,
    /// Largest |ΔI| between the two tools' outputs, LU, where both have one.
    pub max_integrated_diff_lu: Option<f64>,
    pub checks: Vec<OutputCheck>,
    /// Where the ffmpeg chain is not the same processing as stemforge's.
    pub substitutions: Vec<String>,
    /// Anything else worth knowing about the run.
    pub notes: Vec<String>,
}

/// Removes the bench's temporary folder however the bench ends.
struct TempGuard(PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(opts: &PackOptions) -> Result<PackReport> {
    match Command::new("ffmpeg").arg("-version").output() {
        Ok(o) if o.status.success() => {}
        _ => bail!(
            "`stemforge bench --pack` compares against ffmpeg, and `ffmpeg -version` does not run: \
             install ffmpeg (e.g. apt-get install ffmpeg) or put it on the PATH"
        ),
    }
    let exe = std::env::current_exe().context("cannot find the path of this executable")?;
    let tmp = std::env::temp_dir().join(format!("stemforge-bench-pack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let guard = TempGuard(tmp);
    let tmp = guard.0.as_path();

    let (spec_path, label) = match &opts.spec {
        Some(p) => {
            let abs = std::fs::canonicalize(p)
                .with_context(|| format!("cannot open the spec {}", p.display()))?;
            (abs, p.display().to_string())
        }
        None => (
            demo::write_session(&tmp.join("session"), opts.seconds, opts.layout)
                .context("cannot write the demo session")?,
            "demo".to_string(),
        ),
    };
    let loaded = deliverables_spec::load_file(&spec_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?;

    let repeats = opts.repeats.max(1);
    let sf_out = tmp.join("stemforge-out");
    let ff_out = tmp.join("ffmpeg-out");
    let mut sf_runs = Vec::new();
    let mut ff_runs = Vec::new();
    let mut plan: Option<Plan> = None;
    let mut notes = BTreeSet::new();
    let mut checks = Vec::new();
    for r in 0..repeats {
        // stemforge: the whole pack, one process.
        let _ = std::fs::remove_dir_all(&sf_out);
        let args: Vec<OsString> = vec![
            "render".into(),
            spec_path.clone().into(),
            "--workers".into(),
            "1".into(),
            "--out".into(),
            sf_out.clone().into(),
            // Every repeat renders: the cache would serve the second.
            "--no-cache".into(),
        ];
        // The work, not the progress log, is measured.
        let (usage, out) = probed(
            &exe,
            tmp,
            exe.as_os_str(),
            &args,
            &[("STEMFORGE_LOG", "warn")],
        )?;
        let manifest_path = sf_out.join("manifest.json");
        match out.status.code() {
            Some(0) => {}
            Some(1) if manifest_path.exists() => {
                notes.insert(
                    "stemforge render exited 1: not every output passed its checks (timed anyway)"
                        .to_string(),
                );
            }
            _ => bail!(
                "`{} render {} --workers 1` failed ({}):\n{}",
                exe.display(),
                spec_path.display(),
                out.status,
                tail(&out)
            ),
        }
        sf_runs.push(usage);
        if plan.is_none() {
            let m = read_manifest(&manifest_path)?;
            plan = Some(build_plan(&loaded, &m, &ff_out)?);
        }
        let Some(p) = plan.as_ref() else {
            bail!("no ffmpeg plan was built");
        };
        let _ = std::fs::remove_dir_all(&sf_out);

        // ffmpeg: the same outputs, a render and a measurement per output.
        std::fs::create_dir_all(&ff_out)
            .with_context(|| format!("cannot create {}", ff_out.display()))?;
        let mut total = Usage::default();
        for job in &p.jobs {
            let (u, o) = probed(&exe, tmp, "ffmpeg".as_ref(), &job.render_args, &[])?;
            if !o.status.success() {
                bail!(
                    "ffmpeg rendering {} failed ({}): {}\nfilter graph: {}",
                    job.file,
                    o.status,
                    tail(&o),
                    job.filter
                );
            }
            add(&mut total, u);
            let (u, o) = probed(&exe, tmp, "ffmpeg".as_ref(), &measure_args(&job.path), &[])?;
            if !o.status.success() {
                bail!(
                    "ffmpeg measuring {} failed ({}): {}",
                    job.path.display(),
                    o.status,
                    tail(&o)
                );
            }
            add(&mut total, u);
            if r == 0 {
                let (i, tp) = parse_ebur128(&String::from_utf8_lossy(&o.stderr));
                checks.push(OutputCheck {
                    title: job.title.clone(),
                    file: job.file.clone(),
                    stemforge_integrated_lufs: job.stemforge_integrated,
                    ffmpeg_integrated_lufs: i,
                    stemforge_true_peak_dbtp: job.stemforge_true_peak,
                    ffmpeg_true_peak_dbtp: tp,
                });
            }
            // Keep the disk free: a long pack is gigabytes.
            let _ = std::fs::remove_file(&job.path);
        }
        ff_runs.push(total);
    }
    let Some(plan) = plan else {
        bail!("no run was made");
    };
    let audio_seconds = plan.audio_seconds;
    let side = |runs: Vec<Usage>, processes: usize| {
        let cpu_s = median(runs.iter().map(|u| u.cpu_s));
        Side {
            cpu_s,
            wall_s: median(runs.iter().map(|u| u.wall_s)),
            peak_rss_mb: median(runs.iter().map(|u| u.peak_rss_mb)),
            realtime_per_core: audio_seconds / cpu_s,
            processes,
            runs,
        }
    };
    let stemforge = side(sf_runs, 1);
    let ffmpeg = side(ff_runs, 2 * plan.jobs.len());
    let max_integrated_diff_lu = checks
        .iter()
        .filter_map(|c| Some((c.stemforge_integrated_lufs? - c.ffmpeg_integrated_lufs?).abs()))
        .reduce(f64::max);
    Ok(PackReport {
        spec: label,
        titles: plan.titles,
        outputs: plan.jobs.len(),
        audio_seconds,
        repeats,
        cpu_ratio: stemforge.cpu_s / ffmpeg.cpu_s,
        wall_ratio: stemforge.wall_s / ffmpeg.wall_s,
        stemforge,
        ffmpeg,
        max_integrated_diff_lu,
        checks,
        substitutions: plan.substitutions.into_iter().collect(),
        notes: notes.into_iter().collect(),
    })
}

fn add(total: &mut Usage, u: Usage) {
    total.cpu_s += u.cpu_s;
    total.wall_s += u.wall_s;
    total.peak_rss_mb = total.peak_rss_mb.max(u.peak_rss_mb);
}

fn median(xs: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The last lines of a process's stderr (and stdout), for an error message.
fn tail(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// What the probe writes for the bench to read.
#[derive(Debug, Serialize, Deserialize)]
struct ProbeReport {
    user_s: f64,
    sys_s: f64,
    max_rss_kib: i64,
    wall_s: f64,
}

/// Runs `program args` under `exe bench-probe`, returning its usage and output.
fn probed(
    exe: &Path,
    tmp: &Path,
    program: &std::ffi::OsStr,
    args: &[OsString],
    env: &[(&str, &str)],
) -> Result<(Usage, Output)> {
    let report = tmp.join("probe.json");
    let _ = std::fs::remove_file(&report);
    let mut cmd = Command::new(exe);
    cmd.arg("bench-probe")
        .arg("--report")
        .arg(&report)
        .arg("--")
        .arg(program)
        .args(args.iter())
        .envs(env.iter().copied());
    let out = cmd.output().with_context(|| {
        format!(
            "cannot run {} bench-probe -- {}",
            exe.display(),
            Path::new(program).display()
        )
    })?;
    let text = std::fs::read_to_string(&report).with_context(|| {
        format!(
            "the probe of `{}` wrote no report ({}): {}",
            Path::new(program).display(),
            out.status,
            tail(&out)
        )
    })?;
    let r: ProbeReport = serde_json::from_str(&text)
        .with_context(|| format!("unreadable probe report {}", report.display()))?;
    Ok((
        Usage {
            cpu_s: r.user_s + r.sys_s,
            wall_s: r.wall_s,
            // ru_maxrss is in KiB on Linux.
            peak_rss_mb: r.max_rss_kib as f64 * 1024.0 / 1e6,
        },
        out,
    ))
}

/// `stemforge bench-probe --report FILE -- CMD ARGS`: runs the command with
/// this process's stdio, waits for it, writes its CPU time, peak RSS and
/// elapsed time to FILE, and exits with its exit code.
pub fn probe(report: &Path, cmd: &[OsString]) -> Result<ExitCode> {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    let Some((program, args)) = cmd.split_first() else {
        bail!("bench-probe: no command given after --");
    };
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run `{}`", Path::new(program).display()))?;
    let wall_s = started.elapsed().as_secs_f64();
    // The waited child's accounting, kept by the kernel (this process's
    // own time is not included).
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let secs = |t: nix::sys::time::TimeVal| t.num_microseconds() as f64 / 1e6;
    let r = ProbeReport {
        user_s: secs(u.user_time()),
        sys_s: secs(u.system_time()),
        max_rss_kib: u.max_rss(),
        wall_s,
    };
    std::fs::write(report, serde_json::to_string(&r)?)
        .with_context(|| format!("cannot write {}", report.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::from(1),
    })
}

// ---------------------------------------------------------------------------
// The manifest, as far as the bench reads it.

#[derive(Debug, Deserialize)]
struct Manifest {
    titles: Vec<MTitle>,
}

#[derive(Debug, Deserialize)]
struct MTitle {
    name: String,
    #[serde(default)]
    inputs: Vec<MInput>,
    #[serde(default)]
    outputs: Vec<MOutput>,
}

#[derive(Debug, Deserialize)]
struct MInput {
    path: String,
    kind: String,
    sample_rate: u32,
    channels: usize,
}

#[derive(Debug, Deserialize)]
struct MOutput {
    variant: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    file: Option<MFile>,
    gain_db: Option<f64>,
    #[serde(default)]
    ceiling_trim_db: Option<f64>,
    #[serde(default)]
    fold_down_gain_db: Option<f64>,
    #[serde(default)]
    level_changes: Vec<MLevelChange>,
    #[serde(default)]
    measurement: Option<MMeasurement>,
}

#[derive(Debug, Deserialize)]
struct MFile {
    path: String,
    sample_rate: u32,
    bit_depth: u32,
    sample_format: String,
    duration_s: f64,
}

#[derive(Debug, Deserialize)]
struct MLevelChange {
    targets: Vec<String>,
    applied_db: f64,
}

#[derive(Debug, Deserialize)]
struct MMeasurement {
    integrated_lufs: Option<f64>,
    true_peak_dbtp: Option<f64>,
}

fn read_manifest(p: &Path) -> Result<Manifest> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a manifest", p.display()))
}

// ---------------------------------------------------------------------------
// The ffmpeg side: one job per output.

struct Job {
    title: String,
    file: String,
    /// Where ffmpeg writes it.
    path: PathBuf,
    filter: String,
    render_args: Vec<OsString>,
    stemforge_integrated: Option<f64>,
    stemforge_true_peak: Option<f64>,
}

struct Plan {
    jobs: Vec<Job>,
    titles: usize,
    audio_seconds: f64,
    substitutions: BTreeSet<String>,
}

fn build_plan(
    loaded: &deliverables_spec::LoadedSpec,
    m: &Manifest,
    out_dir: &Path,
) -> Result<Plan> {
    let spec = &loaded.spec;
    let d = loaded.delivery();
    let mut jobs = Vec::new();
    let mut subs = BTreeSet::new();
    let mut seen_titles: Vec<(&str, f64)> = Vec::new();
    for mt in &m.titles {
        let title = loaded.title(&mt.name).with_context(|| {
            format!(
                "the manifest names title `{}`, which the spec does not have",
                mt.name
            )
        })?;
        let stem_inputs: Vec<&MInput> = mt.inputs.iter().filter(|i| i.kind == "stem").collect();
        if stem_inputs.len() != title.stems.len()
            || stem_inputs
                .iter()
                .zip(&title.stems)
                .any(|(i, s)| i.path != s.file)
        {
            bail!(
                "the manifest's inputs of `{}` do not match the spec's stems",
                mt.name
            );
        }
        for o in &mt.outputs {
            // A failed render has no file: nothing to reproduce.
            let (Some(file), Some(gain_db)) = (&o.file, o.gain_db) else {
                continue;
            };
            let dur = seen_titles.iter_mut().find(|(n, _)| *n == mt.name);
            match dur {
                Some((_, s)) => *s = s.max(file.duration_s),
                None => seen_titles.push((&mt.name, file.duration_s)),
            }
            let mut variant = loaded.variant(&o.variant).with_context(|| {
                format!(
                    "the manifest names variant `{}`, which the spec does not have",
                    o.variant
                )
            })?;
            // An `effective` level change renders at the gain the analysis
            // searched, as the worker does.
            for lc in &o.level_changes {
                for t in &lc.targets {
                    variant.gains.insert(t.clone(), lc.applied_db);
                }
            }
            let tg = title_graph(&spec.graph, title, &variant);
            let planned = title_outputs(spec, d, title, &variant, file.sample_rate)
                .into_iter()
                .find(|p| p.file_name == file.path && p.role == o.role && p.group == o.group)
                .with_context(|| {
                    format!(
                        "output {} of `{}` is not one the spec plans for variant `{}`",
                        file.path, mt.name, o.variant
                    )
                })?;
            let ctx = Tctx {
                channels: title.layout.channels(),
                loudness_db: gain_db,
                ceiling_db: d.working_ceiling_db(),
                rate: file.sample_rate,
            };
            let mut g = GraphText::default();
            let inputs: Vec<(usize, &MInput)> =
                planned.stems.iter().map(|&i| (i, stem_inputs[i])).collect();
            let filter = output_filter(
                &tg,
                title.layout,
                &inputs,
                &ctx,
                o.fold_down_gain_db.unwrap_or(0.0),
                o.ceiling_trim_db.unwrap_or(0.0),
                &mut g,
            )?;
            subs.extend(g.subs);
            if o.role.is_some() || o.group.is_some() {
                subs.insert(
                    "processed stems: each role runs its own detectors through its bus and master chains; \
                     stemforge replays the full mix's bus and master dynamics envelopes on every stem \
                     (linked stems), which ffmpeg has no filter for"
                        .to_string(),
                );
            }
            let codec = match (file.sample_format.as_str(), file.bit_depth) {
                ("float", _) => "pcm_f32le",
                (_, 16) => "pcm_s16le",
                (_, 24) => "pcm_s24le",
                (f, b) => bail!(
                    "output {} is {b}-bit {f}: no ffmpeg codec chosen",
                    file.path
                ),
            };
            let path = out_dir.join(format!("{}-{}", jobs.len(), file.path));
            let mut args: Vec<OsString> = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
                .iter()
                .map(OsString::from)
                .collect();
            for &(i, _) in &inputs {
                args.push("-i".into());
                args.push(loaded.path(&title.stems[i].file).into());
            }
            for a in [
                "-filter_complex_threads",
                "1",
                "-filter_complex",
                &filter,
                "-map",
                "[out]",
                "-threads",
                "1",
                "-c:a",
                codec,
                "-write_bext",
                "1",
            ] {
                args.push(a.into());
            }
            args.push(path.clone().into());
            jobs.push(Job {
                title: mt.name.clone(),
                file: file.path.clone(),
                path,
                filter,
                render_args: args,
                stemforge_integrated: o.measurement.as_ref().and_then(|m| m.integrated_lufs),
                stemforge_true_peak: o.measurement.as_ref().and_then(|m| m.true_peak_dbtp),
            });
        }
    }
    if jobs.is_empty() {
        bail!("stemforge wrote no output: nothing to compare");
    }
    if d.dither == deliverables_spec::model::Dither::Tpdf {
        subs.insert(
            "dither: stemforge adds TPDF dither before quantising; ffmpeg's encoder quantises plainly"
                .to_string(),
        );
    }
    Ok(Plan {
        jobs,
        titles: seen_titles.len(),
        audio_seconds: seen_titles.iter().map(|(_, s)| s).sum(),
        substitutions: subs,
    })
}

/// ffmpeg measuring a file as the manifest does: integrated loudness, LRA,
/// true peak (per-frame log at `verbose`, not printed; the summary is).
fn measure_args(path: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["-nostdin", "-hide_banner", "-nostats", "-loglevel", "info"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push("-i".into());
    a.push(path.into());
    for x in [
        "-filter_threads",
        "1",
        "-af",
        "ebur128=peak=true:framelog=verbose",
        "-f",
        "null",
        "-",
    ] {
        a.push(x.into());
    }
    a
}

/// Integrated loudness and true peak from ebur128's summary.
fn parse_ebur128(log: &str) -> (Option<f64>, Option<f64>) {
    let summary = log.rsplit("Summary:").next().unwrap_or("");
    let value = |key: &str| {
        summary
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    // ffmpeg reports silence as −70 LUFS (its gate); stemforge as none.
    (value("I:").filter(|i| *i > -70.0), value("Peak:"))
}

/// What a chain is translated with.
struct Tctx {
    /// The title's channels (2 or 6).
    channels: usize,
    /// What `loudness` applies: the master gain the manifest recorded.
    loudness_db: f64,
    /// A limiter without its own ceiling limits to this.
    ceiling_db: f64,
    rate: u32,
}

#[derive(Default)]
struct GraphText {
    subs: BTreeSet<String>,
}

fn lin(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// `stereo` or `5.1`: ffmpeg's name of a title's layout.
fn layout_name(channels: usize) -> &'static str {
    if channels == 6 { "5.1" } else { "stereo" }
}

/// A `pan` that sets the front pair to `l`/`r` (expressions of c0, c1) and
/// passes every other channel of the layout through.
fn pan_front(channels: usize, l: &str, r: &str) -> String {
    let mut s = format!("pan={}|c0={l}|c1={r}", layout_name(channels));
    for c in 2..channels {
        let _ = write!(s, "|c{c}=c{c}");
    }
    s
}

/// The Q of each section of a Butterworth cascade of `sections` biquads
/// (order 2·sections), ascending as stemforge runs them.
fn butterworth_qs(sections: usize) -> Vec<f64> {
    let n = 2 * sections;
    let mut qs: Vec<f64> = (1..=sections)
        .map(|k| {
            let theta = (2 * k - 1) as f64 * std::f64::consts::PI / (2 * n) as f64;
            1.0 / (2.0 * theta.cos())
        })
        .collect();
    qs.sort_by(f64::total_cmp);
    qs
}

/// One node as ffmpeg filters (possibly none; possibly several).
fn node_filters(n: &NodeSpec, c: &Tctx, g: &mut GraphText) -> Vec<String> {
    match &n.kind {
        NodeKind::Gain { db } => vec![format!("volume={db}dB")],
        NodeKind::Mute {} => vec!["volume=0".into()],
        NodeKind::Loudness {} => vec![format!("volume={}dB", c.loudness_db)],
        NodeKind::Polarity {} => vec!["volume=-1".into()],
        NodeKind::Balance { position } => {
            // The far side is attenuated by cos(|position|·π/2).
            let far = (position.abs().min(1.0) * std::f64::consts::FRAC_PI_2).cos();
            let (l, r) = if *position > 0.0 {
                (far, 1.0)
            } else {
                (1.0, far)
            };
            vec![pan_front(
                c.channels,
                &format!("{l}*c0"),
                &format!("{r}*c1"),
            )]
        }
        NodeKind::Width { width } => {
            // Mid/side on the front pair: L' = (1+w)/2·L + (1−w)/2·R.
            let a = (1.0 + width) / 2.0;
            let b = (1.0 - width) / 2.0;
            vec![pan_front(
                c.channels,
                &format!("{a}*c0+{b}*c1"),
                &format!("{b}*c0+{a}*c1"),
            )]
        }
        NodeKind::HighPass {
            freq_hz,
            slope_db_oct,
        }
        | NodeKind::LowPass {
            freq_hz,
            slope_db_oct,
        } => {
            let name = if matches!(n.kind, NodeKind::HighPass { .. }) {
                "highpass"
            } else {
                "lowpass"
            };
            // 12 dB/oct: one 2-pole section; 24 and 48: two and four in
            // series, with the Butterworth Qs stemforge's cascade uses.
            let sections = (*slope_db_oct as usize / 12).max(1);
            butterworth_qs(sections)
                .into_iter()
                .map(|q| format!("{name}=f={freq_hz}:p=2:t=q:w={q}"))
                .collect()
        }
        NodeKind::LowShelf {
            freq_hz,
            gain_db,
            q,
        } => {
            vec![format!("lowshelf=f={freq_hz}:g={gain_db}:t=q:w={q}")]
        }
        NodeKind::HighShelf {
            freq_hz,
            gain_db,
            q,
        } => {
            vec![format!("highshelf=f={freq_hz}:g={gain_db}:t=q:w={q}")]
        }
        NodeKind::Peak {
            freq_hz,
            gain_db,
            q,
        } => {
            vec![format!("equalizer=f={freq_hz}:t=q:w={q}:g={gain_db}")]
        }
        NodeKind::Notch { freq_hz, q } => vec![format!("bandreject=f={freq_hz}:t=q:w={q}")],
        NodeKind::Compressor {
            threshold_db,
            ratio,
            knee_db,
            attack_ms,
            release_ms,
            makeup_db,
            detection,
        } => {
            // acompressor's ranges: threshold ≥ −60 dB, ratio ≤ 20, makeup
            // 0…+36 dB, knee a factor 1…8 (0…18 dB wide: knee = 10^(W/20),
            // the knee spans threshold/√knee … threshold·√knee).
            let clamp = |v: f64, lo: f64, hi: f64, what: &str, g: &mut GraphText| {
                if v < lo || v > hi {
                    g.subs.insert(format!(
                        "compressor {what} {v} is outside acompressor's range: clamped to {lo}…{hi}"
                    ));
                }
                v.clamp(lo, hi)
            };
            let threshold = clamp(lin(*threshold_db), 0.000_976_563, 1.0, "threshold", g);
            let ratio = clamp(*ratio, 1.0, 20.0, "ratio", g);
            let makeup = clamp(lin(*makeup_db), 1.0, 64.0, "makeup", g);
            let knee = clamp(lin(*knee_db), 1.0, 8.0, "knee", g);
            let attack = attack_ms.clamp(0.01, 2000.0);
            let release = release_ms.clamp(0.01, 9000.0);
            let det = match detection {
                Detection::Peak => "peak",
                Detection::Rms => "rms",
            };
            g.subs.insert(
                "compressor → acompressor: same threshold, ratio, knee width, times and makeup, \
                 channels linked on their maximum; ffmpeg's knee curve and level detector differ \
                 in detail from stemforge's (Giannoulis et al. soft knee, smooth-branching envelope)"
                    .to_string(),
            );
            vec![format!(
                "acompressor=threshold={threshold}:ratio={ratio}:attack={attack}:release={release}:\
                 makeup={makeup}:knee={knee}:link=maximum:detection={det}"
            )]
        }
        NodeKind::Limiter {
            ceiling_dbtp,
            lookahead_ms,
            release_ms,
            band_limit,
        } => {
            let mut v = Vec::new();
            if *band_limit {
                // stemforge's band limit is a 121-tap linear-phase FIR with
                // its passband to 0.42·fs and stopband from 0.475·fs; the
                // nearest ffmpeg filter is firequalizer's linear-phase FIR
                // with the same corners and the same delay (60 samples).
                let r = f64::from(c.rate);
                v.push(format!(
                    "firequalizer=gain_entry='entry(0,0);entry({},0);entry({},-100)':delay={}",
                    0.42 * r,
                    0.475 * r,
                    60.0 / r
                ));
                g.subs.insert(
                    "limiter band limit (121-tap FIR low-pass at 0.42·fs) → firequalizer, a \
                     linear-phase FIR with the same corners and delay"
                        .to_string(),
                );
            }
            let ceiling = ceiling_dbtp.unwrap_or(c.ceiling_db);
            let limit = lin(ceiling).clamp(0.0625, 1.0);
            let attack = lookahead_ms.clamp(0.1, 80.0);
            let release = release_ms.clamp(1.0, 8000.0);
            g.subs.insert(
                "limiter → alimiter (ceiling as its limit, lookahead as its attack, release, no \
                 auto level): alimiter limits sample peaks; stemforge's limiter limits true \
                 (inter-sample) peaks, oversampled"
                    .to_string(),
            );
            v.push(format!(
                "alimiter=limit={limit}:attack={attack}:release={release}:level=disabled"
            ));
            v
        }
        NodeKind::Duck {
            ranges, depth_db, ..
        } => {
            // The depth over each range, switched per audio frame by
            // `volume`'s timeline: the fades are left out (cost, not sound,
            // is what the benchmark compares).
            g.subs
                .insert("duck → volume over each range (per-frame timeline, no fades)".to_string());
            let gain = depth_db.map_or(0.0, lin);
            deliverables_spec::model::merge_ranges(ranges)
                .into_iter()
                .map(|[a, b]| format!("volume={gain}:enable='between(t,{a},{b})'"))
                .collect()
        }
    }
}

fn chain_filters(chain: &[NodeSpec], c: &Tctx, g: &mut GraphText) -> Vec<String> {
    chain.iter().flat_map(|n| node_filters(n, c, g)).collect()
}

/// How a stem with `ch` channels enters a title of `layout`: stereo plays a
/// mono stem in both channels; 5.1 plays mono in the centre, stereo in the
/// front pair and 5.1 as it is (an explicit identity map, so every input
/// carries the same channel layout into `amix`).
fn routing(ch: usize, layout: Layout, file: &str) -> Result<Option<String>> {
    Ok(match (layout, ch) {
        (Layout::Stereo, 1) => Some("pan=stereo|c0=c0|c1=c0".into()),
        (Layout::Stereo, 2) => None,
        (Layout::Surround51, 1) => Some("pan=5.1|c2=c0".into()),
        (Layout::Surround51, 2) => Some("pan=5.1|c0=c0|c1=c1".into()),
        (Layout::Surround51, 6) => Some("pan=5.1|c0=c0|c1=c1|c2=c2|c3=c3|c4=c4|c5=c5".into()),
        _ => bail!("{file}: {ch} channels cannot be mixed in a {layout} title"),
    })
}

/// One `-filter_complex` segment: `[in1][in2]…` summed (if more than one),
/// then `filters`, into `[out]`.
fn segment(inputs: &[String], filters: Vec<String>, out: &str) -> String {
    let mut f = Vec::new();
    if inputs.len() > 1 {
        f.push(format!("amix=inputs={}:normalize=0", inputs.len()));
    }
    f.extend(filters);
    if f.is_empty() {
        f.push("anull".into());
    }
    format!("{}{}[{out}]", inputs.concat(), f.join(","))
}

fn volume_db(db: f64) -> Option<String> {
    (db != 0.0).then(|| format!("volume={db}dB"))
}

/// The graph of one output as a `-filter_complex` whose result is `[out]`:
/// each kept stem (input k, in `inputs` order) through its routing, the LFE
/// low-pass (5.1), its chain and its gain; the buses summed (`amix`, no
/// normalisation) through their chains and gains; the master sum through the
/// master chain (`loudness` = the manifest's master gain), the fold-down
/// (5.1 → stereo, its gain and limiter), then the output's ceiling trim.
/// Muted stems and buses are not in `inputs` (the planned output's stems).
fn output_filter(
    tg: &TitleGraph,
    layout: Layout,
    inputs: &[(usize, &MInput)],
    c: &Tctx,
    fold_gain_db: f64,
    trim_db: f64,
    g: &mut GraphText,
) -> Result<String> {
    let mut segs = Vec::new();
    let mut to_bus: Vec<Vec<String>> = vec![Vec::new(); tg.buses.len()];
    let mut to_master = Vec::new();
    for (k, &(i, input)) in inputs.iter().enumerate() {
        let sp = tg
            .stems
            .iter()
            .find(|s| s.index == i)
            .with_context(|| format!("stem {i} is not in the title's graph"))?;
        let mut f = Vec::new();
        if input.sample_rate != c.rate {
            f.push(format!("aresample={}", c.rate));
            g.subs.insert(
                "sample-rate conversion: stemforge's resampler → aresample (swresample defaults)"
                    .to_string(),
            );
        }
        f.extend(routing(input.channels, layout, &input.path)?);
        if let Some(lfe) = &tg.lfe_low_pass
            && layout == Layout::Surround51
        {
            f.extend(
                node_filters(lfe, c, g)
                    .into_iter()
                    .map(|x| format!("{x}:c=LFE")),
            );
        }
        f.extend(chain_filters(&sp.chain, c, g));
        f.extend(volume_db(sp.gain_db));
        let label = format!("s{k}");
        segs.push(segment(&[format!("[{k}:a]")], f, &label));
        match sp.bus {
            Some(b) => to_bus[b].push(format!("[{label}]")),
            None => to_master.push(format!("[{label}]")),
        }
    }
    for (b, ins) in to_bus.iter().enumerate() {
        if ins.is_empty() || tg.buses[b].muted {
            continue;
        }
        let bus = &tg.buses[b];
        let mut f = chain_filters(&bus.chain, c, g);
        f.extend(volume_db(bus.gain_db));
        let label = format!("b{b}");
        segs.push(segment(ins, f, &label));
        to_master.push(format!("[{label}]"));
    }
    if to_master.is_empty() {
        bail!("no stem sounds in this output");
    }
    let mut f = chain_filters(&tg.master, c, g);
    if let Some(fold) = &tg.fold_down {
        let k = &fold.coefficients;
        let bs775 = std::f64::consts::FRAC_1_SQRT_2;
        let cg = k.center_db.map_or(bs775, lin);
        let sg = k.surround_db.map_or(bs775, lin);
        let lfe = k
            .lfe_db
            .map_or(String::new(), |d| format!("+{}*c3", lin(d)));
        f.push(format!(
            "pan=stereo|c0=c0+{cg}*c2+{sg}*c4{lfe}|c1=c1+{cg}*c2+{sg}*c5{lfe}"
        ));
        f.extend(volume_db(fold_gain_db));
        let stereo = Tctx {
            channels: 2,
            loudness_db: c.loudness_db,
            ceiling_db: c.ceiling_db,
            rate: c.rate,
        };
        f.extend(chain_filters(&fold.chain, &stereo, g));
    }
    f.extend(volume_db(trim_db));
    segs.push(segment(&to_master, f, "out"));
    Ok(segs.join(";"))
}

// ---------------------------------------------------------------------------

/// The report as a table.
pub fn text(r: &PackReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pack: {} ({} title{}, {:.1} s of audio, {} outputs); {} alternating run{} each, medians",
        r.spec,
        r.titles,
        if r.titles == 1 { "" } else { "s" },
        r.audio_seconds,
        r.outputs,
        r.repeats,
        if r.repeats == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        s,
        "{:<28} {:>9} {:>9} {:>13} {:>14}",
        "", "CPU s", "wall s", "peak RSS MB", "realtime/core"
    );
    let row = |s: &mut String, name: String, x: &Side| {
        let _ = writeln!(
            s,
            "{:<28} {:>9.2} {:>9.2} {:>13.1} {:>13.1}x",
            name, x.cpu_s, x.wall_s, x.peak_rss_mb, x.realtime_per_core
        );
    };
    row(
        &mut s,
        "stemforge render --workers 1".to_string(),
        &r.stemforge,
    );
    row(
        &mut s,
        format!("ffmpeg ({} processes)", r.ffmpeg.processes),
        &r.ffmpeg,
    );
    let _ = writeln!(
        s,
        "stemforge/ffmpeg: CPU {:.2}x, wall {:.2}x",
        r.cpu_ratio, r.wall_ratio
    );
    if let Some(d) = r.max_integrated_diff_lu {
        let _ = writeln!(
            s,
            "translation check: ffmpeg's outputs are within {d:.2} LU of stemforge's (integrated loudness, largest difference)"
        );
    }
    if !r.substitutions.is_empty() {
        let _ = writeln!(s, "ffmpeg differs from stemforge where:");
        for x in &r.substitutions {
            let _ = writeln!(s, "  - {x}");
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn butterworth_qs_match_stemforge() {
        let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(
            &butterworth_qs(1),
            &[std::f64::consts::FRAC_1_SQRT_2]
        ));
        assert!(close(&butterworth_qs(2), &[0.54119610, 1.3065630]));
        assert!(close(
            &butterworth_qs(4),
            &[0.50979558, 0.60134489, 0.89997622, 2.5629154]
        ));
    }

    #[test]
    fn median_and_summary() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0].into_iter()), 2.5);
        let log = "[Parsed_ebur128_0 @ 0x1] Summary:\n\n  Integrated loudness:\n    I:         -23.0 LUFS\n\
                   \n  True peak:\n    Peak:       -9.8 dBFS\n";
        assert_eq!(parse_ebur128(log), (Some(-23.0), Some(-9.8)));
        assert_eq!(parse_ebur128("nothing"), (None, None));
    }
}
