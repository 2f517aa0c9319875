//! The pack zip: what a music supervisor sends on. One zip holding every
//! output file (at its path relative to the output folder), `manifest.json`,
//! `manifest.csv`, `report.html` (and `report/` pages when the report has
//! them) and a plain-text `README.txt` that explains the pack to whoever
//! opens it.
//!
//! The rules:
//! - **Streamed.** Each file goes through [`std::io::copy`] into its entry;
//!   no file is ever held whole in memory. What the zip holds besides the
//!   copies is one short line per output (the README's and the checksum to
//!   compare).
//! - **Checked.** Each output's SHA-256 is taken while it is copied and must
//!   equal the manifest's `sha256`; a mismatch means the folder changed
//!   under the job, and the zip is not written.
//! - **Atomic.** The zip is written under a temporary name in its
//!   destination folder, fsynced, then renamed; every error path removes the
//!   temporary file (a [`TempFile`] guard).
//! - **Deterministic.** Entries come in a fixed order (README, manifest,
//!   CSV, report, report pages, then the outputs in manifest order), with
//!   the job's origination time as every entry's time, Unix permissions
//!   0644 and a fixed compression level: the same job gives the same bytes.
//! - **Stored audio, deflated text.** WAVs are stored (they do not
//!   compress, and a stored entry can be checked or extracted by any tool);
//!   the text files are deflated by a pure-Rust backend. An entry of 4 GiB
//!   or more is written with ZIP64 sizes.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use deliverables_spec::compliance::Outcome;
use deliverables_spec::contract::BundleResult;
use deliverables_spec::delivery::Delivery;
use deliverables_spec::manifest::TitleEntry;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, System, ZipWriter};

use crate::output::TempFile;

/// The README's name in the zip.
pub const README: &str = "README.txt";

/// Copy buffer and writer buffer, bytes.
const BUFFER: usize = 256 * 1024;

/// Why a pack zip was not written.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("pack zip {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pack zip {path}: {source}")]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error(
        "{file} changed since the job wrote it: its SHA-256 is now {got}, the manifest says {expected}; the output folder was modified during the job, render it again"
    )]
    Changed {
        file: String,
        expected: String,
        got: String,
    },
    #[error("cancelled")]
    Cancelled,
}

impl BundleError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
        move |source| BundleError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn zip(path: &Path) -> impl FnOnce(zip::result::ZipError) -> BundleError + '_ {
        move |source| match source {
            zip::result::ZipError::Io(source) => BundleError::Io {
                path: path.to_path_buf(),
                source,
            },
            source => BundleError::Zip {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// One output of the pack, as the README lists it.
#[derive(Debug, Clone, PartialEq)]
struct OutputLine {
    /// Relative to the output folder; the entry's name.
    path: String,
    sha256: String,
    title: String,
    /// `variant` or `variant / role`.
    what: String,
    integrated_lufs: Option<f64>,
    true_peak_dbtp: Option<f64>,
    verdict: &'static str,
}

/// What goes in the zip, gathered title by title as the manifest is
/// written.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    titles: Vec<String>,
    outputs: Vec<OutputLine>,
    /// Report pages (`report/page-00001.html` …), relative paths.
    report_pages: Vec<String>,
}

impl Contents {
    pub fn new() -> Contents {
        Contents::default()
    }

    /// A title's written outputs (an output without a file — a failed
    /// render — has nothing to pack).
    pub fn add_title(&mut self, t: &TitleEntry) {
        self.titles.push(t.name.clone());
        for o in &t.outputs {
            let Some(f) = &o.file else { continue };
            let m = o.measurement.as_ref();
            self.outputs.push(OutputLine {
                path: f.path.clone(),
                sha256: f.sha256.clone(),
                title: t.name.clone(),
                what: match o.stem_label() {
                    Some(r) => format!("{} / {r}", o.variant),
                    None => o.variant.clone(),
                },
                integrated_lufs: m.and_then(|m| m.integrated_lufs),
                true_peak_dbtp: m.and_then(|m| m.true_peak_dbtp),
                verdict: match o.verdict.verdict {
                    Outcome::Pass => "pass",
                    Outcome::Fail => "FAIL",
                },
            });
        }
    }

    /// A page of the report, relative to the output folder.
    pub fn add_report_page(&mut self, relative: String) {
        self.report_pages.push(relative);
    }
}

/// Where and how to write the zip.
pub struct Request<'a> {
    /// The zip's path (absolute; its folder exists).
    pub path: &'a Path,
    /// The job's output folder: every entry's path is relative to it.
    pub output_dir: &'a Path,
    pub job_id: &'a str,
    /// Every entry's time, Unix seconds: the job's origination time.
    pub origination_unix_s: i64,
    pub delivery: &'a Delivery,
    pub cancel: &'a AtomicBool,
}

/// How an entry is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Packing {
    Stored,
    Deflated,
}

/// Writes the zip atomically; returns its path, SHA-256, size and entry
/// count.
pub fn write(req: &Request<'_>, contents: &Contents) -> Result<BundleResult, BundleError> {
    let path = req.path;
    let started = std::time::Instant::now();
    let (guard, file) =
        TempFile::create(TempFile::name_for(path)).map_err(BundleError::io(path))?;
    let time = zip_time(req.origination_unix_s);
    let mut zip = ZipWriter::new(BufWriter::with_capacity(BUFFER, file));
    let mut entries = 0u64;

    let readme = readme(req, contents);
    start(
        &mut zip,
        README,
        Packing::Deflated,
        readme.len() as u64,
        time,
        path,
    )?;
    zip.write_all(readme.as_bytes())
        .map_err(BundleError::io(path))?;
    entries += 1;

    let mut paperwork: Vec<String> = [
        crate::tasks::manifest::MANIFEST_FILE,
        crate::report::CSV_FILE,
        crate::report::REPORT_FILE,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    paperwork.extend(contents.report_pages.iter().cloned());
    for name in &paperwork {
        copy_in(&mut zip, req, name, Packing::Deflated, time)?;
        entries += 1;
    }
    for o in &contents.outputs {
        let packing = if o.path.to_ascii_lowercase().ends_with(".wav") {
            Packing::Stored
        } else {
            Packing::Deflated
        };
        let got = copy_in(&mut zip, req, &o.path, packing, time)?;
        if !got.eq_ignore_ascii_case(&o.sha256) {
            return Err(BundleError::Changed {
                file: req.output_dir.join(&o.path).display().to_string(),
                expected: o.sha256.clone(),
                got,
            });
        }
        entries += 1;
    }

    let buffered = zip.finish().map_err(BundleError::zip(path))?;
    let file = buffered
        .into_inner()
        .map_err(|e| BundleError::io(path)(e.into_error()))?;
    file.sync_all().map_err(BundleError::io(path))?;
    drop(file);
    let (sha256, bytes) = hash_file(guard.path()).map_err(BundleError::io(path))?;
    guard.persist(path).map_err(BundleError::io(path))?;
    tracing::info!(
        zip = %path.display(),
        bytes,
        entries,
        secs = started.elapsed().as_secs_f64(),
        "pack zip written"
    );
    Ok(BundleResult {
        path: path.display().to_string(),
        sha256,
        bytes,
        entries,
    })
}

/// Starts an entry with the pack's fixed options.
fn start<W: Write + std::io::Seek>(
    zip: &mut ZipWriter<W>,
    name: &str,
    packing: Packing,
    size: u64,
    time: DateTime,
    path: &Path,
) -> Result<(), BundleError> {
    let opts = SimpleFileOptions::default()
        .compression_method(match packing {
            Packing::Stored => CompressionMethod::Stored,
            Packing::Deflated => CompressionMethod::Deflated,
        })
        .compression_level(match packing {
            Packing::Stored => None,
            Packing::Deflated => Some(6),
        })
        .last_modified_time(time)
        .system(System::Unix)
        .unix_permissions(0o644)
        // ZIP64 sizes where the 32-bit fields cannot hold the entry.
        .large_file(size >= u64::from(u32::MAX));
    zip.start_file(name, opts).map_err(BundleError::zip(path))
}

/// Copies one file of the output folder into its entry, streaming;
/// returns its SHA-256 (hex) as copied.
fn copy_in<W: Write + std::io::Seek>(
    zip: &mut ZipWriter<W>,
    req: &Request<'_>,
    name: &str,
    packing: Packing,
    time: DateTime,
) -> Result<String, BundleError> {
    if req.cancel.load(Ordering::Relaxed) {
        return Err(BundleError::Cancelled);
    }
    let src = req.output_dir.join(name);
    let f = File::open(&src).map_err(BundleError::io(&src))?;
    let size = f.metadata().map_err(BundleError::io(&src))?.len();
    start(zip, name, packing, size, time, req.path)?;
    let mut reader = Hashing {
        inner: BufReader::with_capacity(BUFFER, f),
        hasher: Sha256::new(),
    };
    std::io::copy(&mut reader, zip).map_err(BundleError::io(&src))?;
    Ok(hex::encode(reader.hasher.finalize()))
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// SHA-256 (hex) and length of a file, streamed.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut r = Hashing {
        inner: BufReader::with_capacity(BUFFER, File::open(path)?),
        hasher: Sha256::new(),
    };
    let bytes = std::io::copy(&mut r, &mut std::io::sink())?;
    Ok((hex::encode(r.hasher.finalize()), bytes))
}

/// The origination time as a zip entry time (2-second resolution, years
/// 1980–2107: a time outside is clamped to the nearest end).
fn zip_time(unix_s: i64) -> DateTime {
    let c = deliverables_spec::timestamp::civil(unix_s);
    let fields = |c: deliverables_spec::timestamp::Civil| {
        DateTime::from_date_and_time(
            c.year as u16,
            c.month as u8,
            c.day as u8,
            c.hour as u8,
            c.minute as u8,
            c.second as u8,
        )
    };
    match c.year {
        y if y < 1980 => DateTime::default(),
        y if y > 2107 => DateTime::from_date_and_time(2107, 12, 31, 23, 59, 58).unwrap_or_default(),
        _ => fields(c).unwrap_or_default(),
    }
}

/// The README: what the pack is, the delivery it was made to, each file
/// with its loudness and verdict, and what the paperwork is.
fn readme(req: &Request<'_>, contents: &Contents) -> String {
    use std::fmt::Write as _;
    let d = req.delivery;
    let mut s = String::new();
    let _ = writeln!(s, "Deliverable pack: {}", contents.titles.join(", "));
    let _ = writeln!(
        s,
        "Made by stemforge {} (job {}), {}.",
        env!("CARGO_PKG_VERSION"),
        req.job_id,
        deliverables_spec::timestamp::rfc3339_utc(req.origination_unix_s.saturating_mul(1000))
    );
    s.push('\n');
    let _ = writeln!(s, "Delivery profile: {} ({})", d.profile, d.profile_source);
    let _ = writeln!(
        s,
        "  integrated loudness: {:.1} LUFS +/- {:.1} LU, measured on the {}",
        d.target_lufs,
        d.tolerance_lu,
        match d.loudness_basis {
            deliverables_spec::model::LoudnessBasis::Programme => "whole programme",
            deliverables_spec::model::LoudnessBasis::Dialogue => "dialogue",
        }
    );
    let _ = writeln!(s, "  true peak: at most {:.1} dBTP", d.true_peak_max_dbtp);
    if let Some(v) = d.max_short_term_lufs {
        let _ = writeln!(s, "  short-term loudness: at most {v:.1} LUFS");
    }
    if let Some(v) = d.max_momentary_lufs {
        let _ = writeln!(s, "  momentary loudness: at most {v:.1} LUFS");
    }
    match (d.loudness_range_min_lu, d.loudness_range_max_lu) {
        (Some(lo), Some(hi)) => {
            let _ = writeln!(s, "  loudness range: {lo:.1} to {hi:.1} LU");
        }
        (Some(lo), None) => {
            let _ = writeln!(s, "  loudness range: at least {lo:.1} LU");
        }
        (None, Some(hi)) => {
            let _ = writeln!(s, "  loudness range: at most {hi:.1} LU");
        }
        (None, None) => {}
    }
    let _ = writeln!(
        s,
        "  The full mix and normalized variants are held to every limit; matched\n  variants and stems share the full mix's gain and are held to the true-peak\n  ceiling only."
    );
    s.push('\n');
    let _ = writeln!(
        s,
        "Files ({}), loudness measured on each file as written:",
        contents.outputs.len()
    );
    let width = contents
        .outputs
        .iter()
        .map(|o| o.path.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let what = contents
        .outputs
        .iter()
        .map(|o| o.what.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let several = contents.titles.len() > 1;
    let _ = writeln!(
        s,
        "  {:<width$}  {:<what$}  {:>9}  {:>9}  verdict{}",
        "file",
        "variant",
        "LUFS",
        "dBTP",
        if several { "  title" } else { "" }
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
    for o in &contents.outputs {
        let line = format!(
            "  {:<width$}  {:<what$}  {:>9}  {:>9}  {:<7}{}",
            o.path,
            o.what,
            f(o.integrated_lufs),
            f(o.true_peak_dbtp),
            o.verdict,
            if several {
                format!("  {}", o.title)
            } else {
                String::new()
            }
        );
        let _ = writeln!(s, "{}", line.trim_end());
    }
    if contents.outputs.iter().any(|o| o.integrated_lufs.is_none()) {
        s.push_str("  (LUFS -: silent or too short to measure; the manifest says why)\n");
    }
    s.push('\n');
    s.push_str(
        "Also in this pack:\n\
         \x20 manifest.json  every file's SHA-256 checksums (whole file, and audio data\n\
         \x20                alone), format, full loudness measurements and the verdict\n\
         \x20                with each rule checked; machine-readable.\n\
         \x20 manifest.csv   one row per file with the same figures, for a spreadsheet.\n\
         \x20 report.html    the QC sheet: open it in a browser (loudness over time, true\n\
         \x20                peak, limits and every over of the ceiling).\n",
    );
    if !contents.report_pages.is_empty() {
        s.push_str("  report/        the QC sheet's pages, linked from report.html.\n");
    }
    s.push_str(
        "\nTo check a file: its SHA-256 (sha256sum FILE) equals its \"sha256\" in\nmanifest.json.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output folder with the paperwork and one "WAV"; the contents
    /// listing it with `sha256`.
    fn folder(name: &str, sha256: Option<&str>) -> (PathBuf, Contents, Delivery) {
        let dir = stemforge_testkit::scratch(name);
        let out = dir.join("out");
        std::fs::create_dir_all(out.join("report")).expect("mkdir");
        for (f, body) in [
            ("manifest.json", "{}\n"),
            ("manifest.csv", "file\n"),
            ("report.html", "<html></html>\n"),
            ("report/page-00001.html", "<html>1</html>\n"),
        ] {
            std::fs::write(out.join(f), body).expect("write");
        }
        let audio: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(out.join("Song_full_48k24.wav"), &audio).expect("write");
        let contents = Contents {
            titles: vec!["Song".into()],
            outputs: vec![OutputLine {
                path: "Song_full_48k24.wav".into(),
                sha256: sha256.map_or_else(|| hex::encode(Sha256::digest(&audio)), str::to_string),
                title: "Song".into(),
                what: "full".into(),
                integrated_lufs: Some(-23.0),
                true_peak_dbtp: Some(-1.5),
                verdict: "pass",
            }],
            report_pages: vec!["report/page-00001.html".into()],
        };
        let delivery = deliverables_spec::load_text(
            "schema_version = 1\n[[titles]]\nname = \"Song\"\nstems = [{ file = \"a.wav\", role = \"drums\" }]\n".into(),
            &dir,
            None,
        )
        .expect("spec")
        .delivery()
        .clone();
        (dir, contents, delivery)
    }

    /// Writes the zip of `dir/out` at `path`.
    fn write_at(
        path: &Path,
        dir: &Path,
        delivery: &Delivery,
        contents: &Contents,
    ) -> Result<BundleResult, BundleError> {
        write(
            &Request {
                path,
                output_dir: &dir.join("out"),
                job_id: "job-1",
                origination_unix_s: 1_795_512_600,
                delivery,
                cancel: &AtomicBool::new(false),
            },
            contents,
        )
    }

    fn partials(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".partial"))
            .collect()
    }

    #[test]
    fn the_same_folder_gives_the_same_bytes() {
        let (dir, contents, delivery) = folder("bundle-same", None);
        let write_to = |name: &str| {
            let path = dir.join(name);
            let r = write_at(&path, &dir, &delivery, &contents).expect("zip written");
            (r, std::fs::read(&path).expect("zip"))
        };
        let (a, bytes_a) = write_to("a.zip");
        let (b, bytes_b) = write_to("b.zip");
        assert_eq!(bytes_a, bytes_b);
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(a.sha256, hex::encode(Sha256::digest(&bytes_a)));
        assert_eq!(a.bytes, bytes_a.len() as u64);
        // README, manifest, CSV, report, its page and the output.
        assert_eq!(a.entries, 6);
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes_a)).expect("a zip");
        assert_eq!(z.len(), 6);
        let wav = z.by_name("Song_full_48k24.wav").expect("entry");
        assert_eq!(wav.compression(), CompressionMethod::Stored);
        assert_eq!(wav.size(), 100_000);
        drop(wav);
        let readme = z.by_name(README).expect("readme");
        assert_eq!(readme.compression(), CompressionMethod::Deflated);
        assert!(partials(&dir).is_empty());
    }

    #[test]
    fn a_changed_output_is_refused_and_leaves_nothing_behind() {
        let (dir, contents, delivery) = folder("bundle-changed", Some(&"0".repeat(64)));
        let path = dir.join("pack.zip");
        let e = write_at(&path, &dir, &delivery, &contents).expect_err("checksum differs");
        let msg = e.to_string();
        assert!(
            matches!(e, BundleError::Changed { .. })
                && msg.contains("Song_full_48k24.wav changed since the job wrote it"),
            "{msg}"
        );
        assert!(!path.exists());
        assert!(partials(&dir).is_empty(), "{:?}", partials(&dir));
    }

    #[test]
    fn a_missing_folder_is_an_io_error_naming_the_zip() {
        let (dir, contents, delivery) = folder("bundle-missing", None);
        let path = dir.join("nowhere/pack.zip");
        let e = write_at(&path, &dir, &delivery, &contents).expect_err("no folder");
        assert!(
            matches!(&e, BundleError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{e}"
        );
        assert!(e.to_string().contains("nowhere"), "{e}");
    }

    #[test]
    fn entry_times_follow_the_origination_and_stay_in_range() {
        // 2026-11-24T09:30:00Z
        let t = zip_time(1_795_512_600);
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2026, 11, 24, 9, 30, 0)
        );
        assert_eq!(zip_time(0).year(), 1980);
        assert_eq!(zip_time(i64::from(u32::MAX) * 2).year(), 2107);
    }
}
