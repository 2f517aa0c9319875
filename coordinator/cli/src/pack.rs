//! `stemforge pack SPEC [--title T]... [--variants a,b] [--profile P] -o
//! pack.zip [--coordinator URL]`: the pack for a song, on request. The
//! selection is made on the spec's text (`deliverables_spec::overrides`), so
//! the job is an ordinary spec; the zip is written by the job's manifest
//! task (`stemforge_worker::bundle`), locally through the in-process cluster
//! `render` uses, or by a coordinator's workers.
//!
//! The rendered files go to `--out DIR`, else to a folder beside the zip
//! named after it (`-o /x/night-drive.zip` → `/x/night-drive/`): a pack made
//! to another profile never overwrites the spec's own deliverables, and the
//! folder holds exactly what the zip holds.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use deliverables_spec::LoadedSpec;
use deliverables_spec::contract::JobState;
use deliverables_spec::overrides::Selection;
use sha2::{Digest, Sha256};
use stemforge_coordinator::local::{RenderOptions, RenderOutcome, render_loaded, summary_table};
use stemforge_coordinator::remote;
use stemforge_coordinator::security::Role;
use stemforge_coordinator::settings::Settings;
use stemforge_proto::v1::JobStatus;

/// A pack runs before anything else the coordinator has queued.
pub const PACK_PRIORITY: i32 = 100;

/// What `pack` was asked for, resolved from its arguments.
pub struct PackOptions {
    pub spec: PathBuf,
    pub selection: Selection,
    /// The zip, as given (`-o`).
    pub zip: PathBuf,
    /// Folder for the rendered files (default: beside the zip, named after it).
    pub out: Option<PathBuf>,
    /// A coordinator URL: submit there instead of rendering here.
    pub coordinator: Option<String>,
    pub workers: usize,
    pub priority: i32,
    /// Render everything here, neither reading nor filling the render cache.
    pub no_cache: bool,
}

/// The spec as text, where its relative paths start and the file it came
/// from (for error messages). The one place `pack` reads its argument.
pub struct SpecSource {
    pub text: String,
    pub base_dir: PathBuf,
    pub file: Option<PathBuf>,
}

/// Reads the spec `pack` was given: a spec file (its `[catalog]`
/// expanded into titles, so the selection sees them), or a folder of stems
/// (one title; a folder of folders, one title each), for which the spec
/// `render DIR` would write is written into `out` and read.
pub fn spec_source(path: &Path, out: &Path) -> Result<SpecSource> {
    let path = if path.is_dir() {
        crate::catalog_dir::write_spec(path, Some(out.to_path_buf()))?.spec
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the spec {}", path.display()))?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let text = match deliverables_spec::catalog::expand(&text, &base_dir, Some(&path))? {
        Some(e) => e.text,
        None => text,
    };
    // Cutdowns become titles here too, so `--titles` picks a cut by its name.
    let text = deliverables_spec::edit::expand(
        &text,
        &base_dir,
        Some(&path),
        &deliverables_spec::files::MediaRoots::new(&[]),
    )?
    .unwrap_or(text);
    Ok(SpecSource {
        text,
        base_dir,
        file: Some(path),
    })
}

/// The selected spec, loaded and validated.
pub fn selected_spec(src: SpecSource, sel: &Selection) -> Result<LoadedSpec> {
    let shown = src
        .file
        .as_ref()
        .map_or("the spec".to_string(), |f| f.display().to_string());
    let text =
        deliverables_spec::overrides::apply(&src.text, sel).map_err(|e| anyhow!("{shown}: {e}"))?;
    Ok(deliverables_spec::load_text(
        text,
        &src.base_dir,
        src.file.as_deref(),
    )?)
}

/// `-o`: an absolute file path in a folder that exists and can be written.
pub fn zip_destination(zip: &Path) -> Result<PathBuf> {
    let name = zip.file_name().ok_or_else(|| {
        anyhow!(
            "-o {}: give the zip's file name, e.g. -o pack.zip",
            zip.display()
        )
    })?;
    let parent = zip
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(parent).map_err(|e| {
        anyhow!(
            "-o {}: its folder {} cannot be used ({e}); create it or choose another",
            zip.display(),
            parent.display()
        )
    })?;
    if !dir.is_dir() {
        bail!(
            "-o {}: {} is not a folder; choose a path in a folder",
            zip.display(),
            parent.display()
        );
    }
    let dest = dir.join(name);
    if dest.is_dir() {
        bail!(
            "-o {}: that is a folder; give the zip's file name, e.g. {}",
            zip.display(),
            dest.join("pack.zip").display()
        );
    }
    // The folder must take a new file: found now, not after the render.
    let probe = dir.join(format!(".stemforge-pack-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| {
        anyhow!(
            "-o {}: cannot write in {} ({e}); choose a folder you can write to",
            zip.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(dest)
}

/// The folder for the rendered files: `--out`, else beside the zip.
fn output_path(zip: &Path, out: Option<&Path>) -> PathBuf {
    match out {
        Some(o) => o.to_path_buf(),
        None => {
            let stem = zip
                .file_stem()
                .and_then(|s| s.to_str())
                .filter(|s| !s.is_empty())
                .unwrap_or("pack");
            zip.with_file_name(stem)
        }
    }
}

/// Creates the output folder (once the selection is known to be good).
fn output_folder(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output folder {}", dir.display()))?;
    Ok(std::fs::canonicalize(dir)?)
}

/// How a pack ended.
pub struct PackOutcome {
    pub render: RenderOutcome,
    pub zip: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// Renders the selection (here or on a coordinator) and checks the zip.
pub async fn pack(opts: &PackOptions, settings: &Settings) -> Result<PackOutcome> {
    let zip = zip_destination(&opts.zip)?;
    let out = output_path(&zip, opts.out.as_deref());
    let loaded = selected_spec(spec_source(&opts.spec, &out)?, &opts.selection)?;
    let out = output_folder(&out)?;
    let render = match &opts.coordinator {
        None => {
            let r = RenderOptions {
                workers: opts.workers,
                out: Some(out),
                bundle: Some(zip.clone()),
                no_cache: opts.no_cache,
            };
            render_loaded(&loaded, settings, &r).await?
        }
        Some(url) => submit_and_watch(url, &loaded, settings, &out, &zip, opts.priority).await?,
    };
    let st = &render.status;
    if st.bundle_path.is_empty() {
        bail!(
            "the job ({}) wrote no pack zip{}",
            remote::job_state_name(st.state),
            manifest_error(st).map_or(String::new(), |e| format!(": {e}"))
        );
    }
    let written = PathBuf::from(&st.bundle_path);
    // The zip is where it was asked for and is what the job reported.
    let (sha256, bytes) = hash_file(&written)?;
    if sha256 != st.bundle_sha256 {
        bail!(
            "{}: SHA-256 {sha256}, but the job reported {}; the file changed after the job wrote it",
            written.display(),
            st.bundle_sha256
        );
    }
    Ok(PackOutcome {
        render,
        zip: written,
        sha256,
        bytes,
    })
}

/// The manifest task's error, when it failed.
fn manifest_error(st: &JobStatus) -> Option<String> {
    st.tasks
        .iter()
        .find(|t| t.label == "manifest" && !t.error.is_empty())
        .map(|t| t.error.clone())
}

/// Submits the selection at pack priority and follows it to its end.
async fn submit_and_watch(
    url: &str,
    loaded: &LoadedSpec,
    settings: &Settings,
    out: &Path,
    zip: &Path,
    priority: i32,
) -> Result<RenderOutcome> {
    let ep = settings.endpoint(url, Role::Client)?;
    let mut client = remote::connect(&ep).await?;
    let resp = remote::submit_loaded(
        &mut client,
        loaded,
        &remote::SubmitOptions {
            priority,
            label: format!(
                "pack {}",
                zip.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ),
            output_dir: out.display().to_string(),
            bundle_path: zip.display().to_string(),
        },
    )
    .await?;
    eprintln!("job {} submitted (priority {priority})", resp.job_id);
    let head = remote::watch(&ep, &resp.job_id).await?;
    let status = if stemforge_proto::states::job_state(head.state) == Some(JobState::Running) {
        head
    } else {
        remote::get_job(&mut client, &resp.job_id).await?
    };
    let manifest_path =
        (!status.manifest_path.is_empty()).then(|| PathBuf::from(&status.manifest_path));
    // The manifest is read back when this machine sees the folder.
    let manifest = manifest_path
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok(RenderOutcome {
        status,
        manifest,
        manifest_path,
    })
}

/// SHA-256 (hex) and size of a file, streamed.
fn hash_file(p: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
    let mut h = Sha256::new();
    let bytes =
        std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", p.display()))?;
    Ok((hex::encode(h.finalize()), bytes))
}

/// What `pack` prints: the zip, then the summary table.
pub fn text(o: &PackOutcome) -> String {
    format!(
        "pack {}\n  {} bytes ({:.1} MB), sha256 {}\n{}",
        o.zip.display(),
        o.bytes,
        o.bytes as f64 / 1e6,
        o.sha256,
        summary_table(&o.render)
    )
}
