//! Writing outputs: quantise, write Broadcast WAV to a temporary name in the destination
//! folder, fsync, verify by reading back, then rename into place.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use deliverables_spec::model::BitDepth;
use sha2::{Digest, Sha256};

use crate::bwf::{self, Bext, BextLoudness, BwfWriter, WavFormat};
use crate::dsp::Block;
use crate::dsp::dither::{self, Tpdf};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "cannot write '{path}': {source} (check the output folder exists and is writable, and the disk has space)"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write '{path}': {reason}")]
    Wav { path: PathBuf, reason: String },
    #[error("'{path}' is not a WAV file we can verify: {reason}")]
    Verify { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Converts f64 samples to the output format's codes, deterministically.
#[derive(Debug, Clone, Copy)]
pub struct Quantizer {
    depth: BitDepth,
    scale: f64,
    max_code: f64,
}

impl Quantizer {
    pub fn new(depth: BitDepth) -> Self {
        let bits = depth.bits();
        let scale = if depth.is_float() {
            1.0
        } else {
            f64::from(1u32 << (bits - 1))
        };
        Quantizer {
            depth,
            scale,
            max_code: scale - 1.0,
        }
    }

    /// Largest value that survives quantisation without clipping (linear).
    pub fn full_scale(&self) -> f64 {
        if self.depth.is_float() {
            1.0
        } else {
            self.max_code / self.scale
        }
    }

    /// Integer code for `x` already including dither, in code units after
    /// scaling (round half away from zero), and whether it clipped.
    #[inline]
    pub fn int_code(&self, x: f64) -> (i32, bool) {
        let v = (x * self.scale).round();
        let c = v.clamp(-self.scale, self.max_code);
        (c as i32, c != v)
    }
}

/// The last step before the file: a static trim (the title's ceiling
/// correction), TPDF dither for integer formats, and quantisation.
#[derive(Debug, Clone)]
pub struct OutputStage {
    q: Quantizer,
    trim: f64,
    dither: Vec<Tpdf>,
    /// Samples clamped at full scale so far.
    pub clipped: u64,
}

/// Where the dither of an output comes from: the same output of the same
/// spec always gets the same noise.
#[derive(Debug, Clone)]
pub struct DitherSeed<'a> {
    pub spec_sha256: &'a str,
    pub title: &'a str,
    pub variant: &'a str,
    pub output: &'a str,
}

impl OutputStage {
    /// `trim_db` ≤ 0 is applied before dither. Integer formats are dithered
    /// (TPDF, ±1 LSB) unless `dither` is `None`; float is never dithered.
    pub fn new(
        depth: BitDepth,
        channels: usize,
        trim_db: f64,
        dither: Option<DitherSeed<'_>>,
    ) -> Self {
        let dither = match dither {
            Some(d) if !depth.is_float() => (0..channels)
                .map(|c| Tpdf::new(dither::seed(d.spec_sha256, d.title, d.variant, d.output, c)))
                .collect(),
            _ => Vec::new(),
        };
        OutputStage {
            q: Quantizer::new(depth),
            trim: crate::dsp::db_to_gain(trim_db),
            dither,
            clipped: 0,
        }
    }

    pub fn quantizer(&self) -> Quantizer {
        self.q
    }

    /// The integer code of sample `x` on channel `ch`.
    #[inline]
    pub fn int_code(&mut self, ch: usize, x: f64) -> i32 {
        let d = self.dither.get_mut(ch).map_or(0.0, Tpdf::sample);
        let (c, clipped) = self.q.int_code(x * self.trim + d / self.q.scale);
        self.clipped += u64::from(clipped);
        c
    }

    /// The f32 sample for float output.
    #[inline]
    pub fn float_sample(&self, x: f64) -> f32 {
        (x * self.trim) as f32
    }

    /// What the file will hold for `block`, as f64 (for measuring before writing).
    pub fn render(&mut self, block: &Block, out: &mut Block) {
        out.set_frames(block.frames());
        for ch in 0..block.channels() {
            for i in 0..block.frames() {
                let x = block.channel(ch)[i];
                out.channel_mut(ch)[i] = if self.q.depth.is_float() {
                    f64::from(self.float_sample(x))
                } else {
                    f64::from(self.int_code(ch, x)) / self.q.scale
                };
            }
        }
    }
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A Broadcast WAV file being written under a temporary name.
pub struct OutputWriter {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: Option<BwfWriter<BufWriter<File>>>,
    stage: OutputStage,
    depth: BitDepth,
    audio_hash: Sha256,
    /// Interleaved bytes of one block, reused.
    bytes: Vec<u8>,
    frames: u64,
}

/// A finished, fsynced, not yet visible output.
pub struct Pending {
    pub final_path: PathBuf,
    pub temp_path: PathBuf,
    /// SHA-256 of the data chunk as written.
    pub audio_sha256: String,
    pub frames: u64,
    /// Samples that had to be clamped at full scale (0 unless the clip safety failed).
    pub clipped: u64,
    /// File offset of the `bext` body, for the loudness fields measured later.
    pub bext_offset: u64,
}

impl OutputWriter {
    pub fn create(
        final_path: &Path,
        sample_rate: u32,
        channels: usize,
        stage: OutputStage,
        bext: &Bext,
    ) -> Result<Self, OutputError> {
        let depth = stage.quantizer().depth;
        let dir = final_path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let name = final_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("output.wav");
        let temp_path = dir.join(format!(
            ".{name}.{}-{}.partial",
            std::process::id(),
            TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&temp_path).map_err(io_err(&temp_path))?;
        let format = WavFormat {
            sample_rate,
            channels: u16::try_from(channels).map_err(|_| OutputError::Wav {
                path: temp_path.clone(),
                reason: format!("{channels} channels do not fit a WAV header"),
            })?,
            bits_per_sample: depth.bits() as u16,
            float: depth.is_float(),
            channel_mask: None,
        };
        let writer = BwfWriter::new(BufWriter::with_capacity(1 << 16, file), &format, bext)
            .map_err(|e| OutputError::Wav {
                path: temp_path.clone(),
                reason: e.to_string(),
            })?;
        Ok(OutputWriter {
            final_path: final_path.to_path_buf(),
            temp_path,
            writer: Some(writer),
            stage,
            depth,
            audio_hash: Sha256::new(),
            bytes: Vec::new(),
            frames: 0,
        })
    }

    /// Writes one block, interleaving its channels.
    pub fn write(&mut self, block: &Block) -> Result<(), OutputError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let bytes_per = (self.depth.bits() / 8) as usize;
        self.bytes.clear();
        for i in 0..block.frames() {
            for ch in 0..block.channels() {
                let x = block.channel(ch)[i];
                if self.depth.is_float() {
                    let f = self.stage.float_sample(x);
                    self.bytes.extend_from_slice(&f.to_le_bytes());
                } else {
                    let code = self.stage.int_code(ch, x);
                    self.bytes
                        .extend_from_slice(&code.to_le_bytes()[..bytes_per]);
                }
            }
        }
        self.audio_hash.update(&self.bytes);
        w.write_samples(&self.bytes).map_err(|e| OutputError::Wav {
            path: self.temp_path.clone(),
            reason: e.to_string(),
        })?;
        self.frames += block.frames() as u64;
        Ok(())
    }

    /// Completes the header and fsyncs. The file is still under its temporary name.
    pub fn finish(mut self) -> Result<Pending, OutputError> {
        let mut bext_offset = 0;
        if let Some(w) = self.writer.take() {
            let (buf, layout) = w.finish().map_err(|e| OutputError::Wav {
                path: self.temp_path.clone(),
                reason: e.to_string(),
            })?;
            bext_offset = layout.bext_offset;
            let f = buf.into_inner().map_err(|e| OutputError::Io {
                path: self.temp_path.clone(),
                source: e.into_error(),
            })?;
            f.sync_all().map_err(io_err(&self.temp_path))?;
        }
        Ok(Pending {
            final_path: self.final_path.clone(),
            temp_path: self.temp_path.clone(),
            audio_sha256: hex::encode(self.audio_hash.clone().finalize()),
            frames: self.frames,
            clipped: self.stage.clipped,
            bext_offset,
        })
    }
}

impl Drop for OutputWriter {
    /// An abandoned writer (error, cancellation) leaves no temporary file.
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

impl Pending {
    /// Writes the measured loudness into the file's `bext` chunk and fsyncs.
    pub fn write_loudness(&self, l: &BextLoudness) -> Result<(), OutputError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.temp_path)
            .map_err(io_err(&self.temp_path))?;
        bwf::patch_loudness(&mut f, self.bext_offset, l).map_err(|e| OutputError::Wav {
            path: self.temp_path.clone(),
            reason: e.to_string(),
        })?;
        f.sync_all().map_err(io_err(&self.temp_path))
    }

    /// Makes the file visible under its final name, atomically.
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        std::fs::rename(&self.temp_path, &self.final_path).map_err(io_err(&self.final_path))?;
        if let Some(dir) = self.final_path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(self.final_path)
    }

    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.temp_path);
    }
}

/// Checksums of a WAV file read back from disk.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDigest {
    pub sha256: String,
    pub audio_sha256: String,
    pub bytes: u64,
    pub data_bytes: u64,
}

/// Reads a RIFF/WAVE file: the whole-file SHA-256 and the `data` chunk's.
pub fn digest_wav(path: &Path) -> Result<FileDigest, OutputError> {
    let verr = |reason: String| OutputError::Verify {
        path: path.to_path_buf(),
        reason,
    };
    let sha256 = sha256_file(path)?;
    let mut f = BufReader::new(File::open(path).map_err(io_err(path))?);
    let bytes = f.get_ref().metadata().map_err(io_err(path))?.len();
    let mut hdr = [0u8; 12];
    f.read_exact(&mut hdr)
        .map_err(|e| verr(format!("no RIFF header: {e}")))?;
    if &hdr[0..4] != b"RIFF" || &hdr[8..12] != b"WAVE" {
        return Err(verr("not a RIFF/WAVE file".into()));
    }
    loop {
        let mut ch = [0u8; 8];
        f.read_exact(&mut ch)
            .map_err(|_| verr("no data chunk".into()))?;
        let size = u64::from(u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]));
        if &ch[0..4] == b"data" {
            let mut h = Sha256::new();
            let mut take = (&mut f).take(size);
            let n = std::io::copy(&mut take, &mut HashWriter(&mut h)).map_err(io_err(path))?;
            if n != size {
                return Err(verr(format!("data chunk says {size} bytes, file has {n}")));
            }
            return Ok(FileDigest {
                sha256,
                audio_sha256: hex::encode(h.finalize()),
                bytes,
                data_bytes: size,
            });
        }
        f.seek(SeekFrom::Current((size + (size & 1)) as i64))
            .map_err(io_err(path))?;
    }
}

struct HashWriter<'a>(&'a mut Sha256);
impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// SHA-256 of a whole file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, OutputError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut HashWriter(&mut h)).map_err(io_err(path))?;
    Ok(hex::encode(h.finalize()))
}
