//! Writing outputs: quantise, write Broadcast WAV to a temporary name in the destination
//! folder, fsync, verify by reading back, then rename into place.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use deliverables_spec::model::BitDepth;
use sha2::{Digest, Sha256};

use crate::bwf::{self, Bext, BextLoudness, BwfError, BwfWriter, WavFormat};
use crate::dsp::Block;
use crate::dsp::dither::{self, Tpdf};
use crate::meter::Meter;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(
        "cannot write '{path}': {source} (check the output folder exists and is writable, and the disk has space)"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The WAV writer failed; an I/O error inside it stays an I/O error
    /// (its class decides whether the task is retried).
    #[error("cannot write '{path}': {source}")]
    Wav { path: PathBuf, source: BwfError },
    #[error("'{path}' is not a WAV file we can verify: {reason}")]
    Verify { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn wav_err(path: &Path) -> impl FnOnce(BwfError) -> OutputError + '_ {
    move |source| OutputError::Wav {
        path: path.to_path_buf(),
        source,
    }
}

/// A temporary file that is removed when the value is dropped, unless
/// [`TempFile::persist`] renamed it into place first. Every writer holds
/// one from the moment its temporary file exists, so no error path (write,
/// fsync, verify, rename, a cancel, a panic) leaves the file behind.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// A fresh temporary name beside `final_path`:
    /// `.NAME.<pid>-<n>.partial` (hidden, and never a name a delivery uses).
    pub fn name_for(final_path: &Path) -> PathBuf {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = final_path.parent().unwrap_or(Path::new("."));
        let name = final_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("output");
        dir.join(format!(
            ".{name}.{}-{}.partial",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Creates (truncates) `path` for writing; from here on the file is
    /// removed on drop.
    pub fn create(path: PathBuf) -> std::io::Result<(TempFile, File)> {
        let file = File::create(&path)?;
        Ok((TempFile { path, armed: true }, file))
    }

    /// Takes charge of a temporary file made by other means (a copy, a
    /// link): from here on it is removed on drop.
    pub fn adopt(path: PathBuf) -> TempFile {
        TempFile { path, armed: true }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `to` and fsyncs the folder (best effort). On a
    /// failed rename the file is still removed when `self` drops.
    pub fn persist(mut self, to: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.armed = false;
        if let Some(dir) = to.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
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
    channels: usize,
    trim: f64,
    dither: Vec<Tpdf>,
    /// Samples clamped at full scale so far.
    pub clipped: u64,
}

/// Where the dither of an output comes from: the same output (title,
/// variant, file name) always gets the same noise.
#[derive(Debug, Clone)]
pub struct DitherSeed<'a> {
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
                .map(|c| Tpdf::new(dither::seed(d.title, d.variant, d.output, c)))
                .collect(),
            _ => Vec::new(),
        };
        OutputStage {
            q: Quantizer::new(depth),
            channels,
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

/// A Broadcast WAV file being written under a temporary name (removed if
/// the writer is dropped unfinished).
pub struct OutputWriter {
    final_path: PathBuf,
    temp: TempFile,
    writer: Option<BwfWriter<BufWriter<File>>>,
    stage: OutputStage,
    depth: BitDepth,
    audio_hash: Sha256,
    /// Interleaved bytes of one block, reused.
    bytes: Vec<u8>,
    frames: u64,
    /// Meters the samples as they are written (see [`OutputWriter::measuring`]).
    meter: Option<WriteMeter>,
}

/// The file's samples as the decoder reads them back, metered as they are
/// written: integer codes over `2^(bits-1)`, float samples widened — the
/// exact values [`crate::decode`] produces from the file.
struct WriteMeter {
    meter: Meter,
    samples: Block,
    invalid: u64,
    first_invalid: Option<u64>,
}

/// A finished, fsynced, not yet visible output. Dropped without
/// [`Pending::commit`], its temporary file is removed.
pub struct Pending {
    pub final_path: PathBuf,
    pub temp_path: PathBuf,
    temp: TempFile,
    /// SHA-256 of the data chunk as written.
    pub audio_sha256: String,
    pub frames: u64,
    /// Samples that had to be clamped at full scale (0 unless the clip safety failed).
    pub clipped: u64,
    /// File offset of the `bext` body, for the loudness fields measured later.
    pub bext_offset: u64,
    /// The meter that read every sample as written (when measuring).
    pub meter: Option<Meter>,
    /// Samples written that are not audio (NaN, infinite, beyond +60 dBFS:
    /// only a float output can hold one), and the first one's frame.
    pub invalid_samples: (u64, Option<u64>),
    /// Data-chunk bytes written.
    pub data_bytes: u64,
    pub channels: usize,
}

impl OutputWriter {
    pub fn create(
        final_path: &Path,
        sample_rate: u32,
        channels: usize,
        stage: OutputStage,
        bext: &Bext,
    ) -> Result<Self, OutputError> {
        OutputWriter::create_with_mask(final_path, sample_rate, channels, stage, bext, None)
    }

    /// [`OutputWriter::create`] with the `dwChannelMask` given (`None`: the
    /// default for the channel count; `Some(0)`: no speaker positions, as
    /// an interleaved playback file whose channels are not a layout).
    pub fn create_with_mask(
        final_path: &Path,
        sample_rate: u32,
        channels: usize,
        stage: OutputStage,
        bext: &Bext,
        channel_mask: Option<u32>,
    ) -> Result<Self, OutputError> {
        let depth = stage.quantizer().depth;
        let dir = final_path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let channels = u16::try_from(channels).map_err(|_| OutputError::Wav {
            path: final_path.to_path_buf(),
            source: BwfError::UnsupportedFormat(format!(
                "{channels} channels do not fit a WAV header"
            )),
        })?;
        let temp_path = TempFile::name_for(final_path);
        let (temp, file) = TempFile::create(temp_path.clone()).map_err(io_err(&temp_path))?;
        let format = WavFormat {
            sample_rate,
            channels,
            bits_per_sample: depth.bits() as u16,
            float: depth.is_float(),
            channel_mask,
        };
        let writer = BwfWriter::new(BufWriter::with_capacity(1 << 16, file), &format, bext)
            .map_err(wav_err(&temp_path))?;
        Ok(OutputWriter {
            final_path: final_path.to_path_buf(),
            temp,
            writer: Some(writer),
            stage,
            depth,
            audio_hash: Sha256::new(),
            bytes: Vec::new(),
            frames: 0,
            meter: None,
        })
    }

    /// Meters every sample as it is written: the values the file holds,
    /// exactly as decoding it gives them back, so the measurement is the
    /// file's own (and needs no second read of it).
    pub fn measuring(mut self, meter: Meter, channels: usize, max_block: usize) -> Self {
        self.meter = Some(WriteMeter {
            meter,
            samples: Block::new(channels, max_block),
            invalid: 0,
            first_invalid: None,
        });
        self
    }

    /// Writes one block, interleaving its channels.
    pub fn write(&mut self, block: &Block) -> Result<(), OutputError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let bytes_per = (self.depth.bits() / 8) as usize;
        let scale = self.stage.q.scale;
        let (frames, channels) = (block.frames(), block.channels());
        self.bytes.clear();
        self.bytes.reserve(frames * channels * bytes_per);
        if let Some(m) = &mut self.meter {
            m.samples.set_frames(frames);
        }
        if self.depth.is_float() {
            for i in 0..frames {
                for ch in 0..channels {
                    let f = self.stage.float_sample(block.channel(ch)[i]);
                    self.bytes.extend_from_slice(&f.to_le_bytes());
                    if let Some(m) = &mut self.meter {
                        let read_back = f64::from(f);
                        m.samples.channel_mut(ch)[i] = if crate::decode::is_audio_sample(read_back)
                        {
                            read_back
                        } else {
                            // Kept out of the meter and counted: the output is refused.
                            m.invalid += 1;
                            m.first_invalid.get_or_insert(self.frames + i as u64);
                            0.0
                        };
                    }
                }
            }
        } else {
            // Integer codes read back as code / 2^(bits-1): always audio.
            for i in 0..frames {
                for ch in 0..channels {
                    let code = self.stage.int_code(ch, block.channel(ch)[i]);
                    self.bytes
                        .extend_from_slice(&code.to_le_bytes()[..bytes_per]);
                    if let Some(m) = &mut self.meter {
                        m.samples.channel_mut(ch)[i] = f64::from(code) / scale;
                    }
                }
            }
        }
        self.audio_hash.update(&self.bytes);
        w.write_samples(&self.bytes)
            .map_err(wav_err(self.temp.path()))?;
        if let Some(m) = &mut self.meter {
            m.meter.add(&m.samples).map_err(|e| OutputError::Verify {
                path: self.temp.path().to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        self.frames += block.frames() as u64;
        Ok(())
    }

    /// Completes the header and fsyncs. The file is still under its
    /// temporary name; on an error here it is removed.
    pub fn finish(self) -> Result<Pending, OutputError> {
        let OutputWriter {
            final_path,
            temp,
            writer,
            stage,
            audio_hash,
            frames,
            meter,
            depth,
            ..
        } = self;
        let mut bext_offset = 0;
        if let Some(w) = writer {
            let (buf, layout) = w.finish().map_err(wav_err(temp.path()))?;
            bext_offset = layout.bext_offset;
            let f = buf.into_inner().map_err(|e| OutputError::Io {
                path: temp.path().to_path_buf(),
                source: e.into_error(),
            })?;
            f.sync_all().map_err(io_err(temp.path()))?;
        }
        Ok(Pending {
            final_path,
            temp_path: temp.path().to_path_buf(),
            temp,
            audio_sha256: hex::encode(audio_hash.finalize()),
            frames,
            clipped: stage.clipped,
            bext_offset,
            invalid_samples: meter
                .as_ref()
                .map_or((0, None), |m| (m.invalid, m.first_invalid)),
            meter: meter.map(|m| m.meter),
            data_bytes: frames * u64::from(depth.bits() / 8) * stage.channels as u64,
            channels: stage.channels,
        })
    }
}

impl Pending {
    /// Writes the measured loudness into the file's `bext` chunk and fsyncs.
    pub fn write_loudness(&self, l: &BextLoudness) -> Result<(), OutputError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.temp_path)
            .map_err(io_err(&self.temp_path))?;
        bwf::patch_loudness(&mut f, self.bext_offset, l).map_err(wav_err(&self.temp_path))?;
        f.sync_all().map_err(io_err(&self.temp_path))
    }

    /// Makes the file visible under its final name, atomically. If the
    /// rename fails the temporary file is removed.
    pub fn commit(self) -> Result<PathBuf, OutputError> {
        self.temp
            .persist(&self.final_path)
            .map_err(io_err(&self.final_path))?;
        Ok(self.final_path)
    }

    /// Removes the temporary file (as dropping does).
    pub fn discard(self) {}
}

/// The codec name the decoder reports for our WAV output at `depth`.
pub fn pcm_codec_name(depth: BitDepth) -> String {
    if depth.is_float() {
        format!("pcm_f{}le", depth.bits())
    } else {
        format!("pcm_s{}le", depth.bits())
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

/// Reads a RIFF/WAVE file: the whole-file SHA-256 and the `data` chunk's,
/// in one read of the file (the chunk headers are found first).
pub fn digest_wav(path: &Path) -> Result<FileDigest, OutputError> {
    let verr = |reason: String| OutputError::Verify {
        path: path.to_path_buf(),
        reason,
    };
    let mut f = BufReader::new(File::open(path).map_err(io_err(path))?);
    let bytes = f.get_ref().metadata().map_err(io_err(path))?.len();
    // A short file is a verification failure; any other read error stays
    // an I/O error (a storage fault, classified as such).
    let short = |e: std::io::Error, what: &str| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            verr(what.to_string())
        } else {
            io_err(path)(e)
        }
    };
    let mut hdr = [0u8; 12];
    f.read_exact(&mut hdr)
        .map_err(|e| short(e, "no RIFF header"))?;
    if &hdr[0..4] != b"RIFF" || &hdr[8..12] != b"WAVE" {
        return Err(verr("not a RIFF/WAVE file".into()));
    }
    let (data_at, size) = loop {
        let mut ch = [0u8; 8];
        f.read_exact(&mut ch)
            .map_err(|e| short(e, "no data chunk"))?;
        let size = u64::from(u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]));
        if &ch[0..4] == b"data" {
            break (f.stream_position().map_err(io_err(path))?, size);
        }
        f.seek(SeekFrom::Current((size + (size & 1)) as i64))
            .map_err(io_err(path))?;
    };
    if data_at + size > bytes {
        return Err(verr(format!(
            "data chunk says {size} bytes, file has {}",
            bytes.saturating_sub(data_at)
        )));
    }
    f.seek(SeekFrom::Start(0)).map_err(io_err(path))?;
    let (mut whole, mut audio) = (Sha256::new(), Sha256::new());
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        whole.update(chunk);
        // The part of this read inside the data chunk.
        let lo = data_at.clamp(at, at + n as u64);
        let hi = (data_at + size).clamp(at, at + n as u64);
        if lo < hi {
            audio.update(&chunk[(lo - at) as usize..(hi - at) as usize]);
        }
        at += n as u64;
    }
    if at != bytes {
        return Err(verr(format!("read {at} bytes of {bytes}")));
    }
    Ok(FileDigest {
        sha256: hex::encode(whole.finalize()),
        audio_sha256: hex::encode(audio.finalize()),
        bytes,
        data_bytes: size,
    })
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
    sha256_of(path).map_err(io_err(path))
}

/// SHA-256 of a whole file, streamed; the bare I/O error (for inputs,
/// whose errors are not output errors).
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut HashWriter(&mut h))?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The temporary files (`.NAME.<pid>-<n>.partial`) in `dir`.
    fn partials(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".partial"))
            .collect()
    }

    fn writer(final_path: &Path) -> OutputWriter {
        let stage = OutputStage::new(BitDepth::Int24, 2, 0.0, None);
        let mut w =
            OutputWriter::create(final_path, 48_000, 2, stage, &Bext::default()).expect("create");
        let mut block = Block::new(2, 4800);
        block.set_frames(4800);
        for ch in 0..2 {
            for (i, x) in block.channel_mut(ch).iter_mut().enumerate() {
                *x = 0.25 * (i as f64 * 0.01).sin();
            }
        }
        w.write(&block).expect("write");
        assert_eq!(partials(final_path.parent().expect("dir")).len(), 1);
        w
    }

    /// The measurement taken as a file is written is the one a read-back
    /// gives: the same figures, bit for bit, for 16-, 24-bit (dithered) and
    /// float files of odd block sizes, 2 and 6 channels, with overs.
    #[test]
    fn measured_as_written_equals_measured_from_the_file() {
        use crate::meter::{MeterKind, Timeline};
        let dir = stemforge_testkit::scratch("output-measured-as-written");
        for (depth, channels) in [
            (BitDepth::Int24, 2),
            (BitDepth::Int16, 2),
            (BitDepth::Float32, 2),
            (BitDepth::Int24, 6),
        ] {
            let path = dir.join(format!("{}-{channels}.wav", depth.bits()));
            let seed = DitherSeed {
                title: "t",
                variant: "v",
                output: "o",
            };
            let stage = OutputStage::new(depth, channels, -0.5, Some(seed));
            let bext = Bext {
                time_reference: 48_000 * 3600,
                ..Bext::default()
            };
            let timeline = Timeline {
                frame_rate: 25.0,
                ceiling_dbtp: Some(-1.0),
                time_reference: bext.time_reference,
            };
            let mut meter = Meter::new(channels, 48_000, MeterKind::Full).expect("meter");
            meter.set_timeline(timeline);
            let mut w = OutputWriter::create(&path, 48_000, channels, stage, &bext)
                .expect("create")
                .measuring(meter, channels, 4096);
            let mut rng = 0x2545_F491_4F6C_DD1D_u64;
            let mut t = 0usize;
            // Odd sizes among whole blocks, for 5.7 s (short-term and LRA too).
            let sizes = [
                4096, 1, 333, 4096, 4096, 2000, 4095, 4096, 4096, 4096, 4096, 17,
            ];
            for n in sizes.iter().cycle().take(96).copied() {
                let mut b = Block::new(channels, 4096);
                b.set_frames(n);
                for i in 0..n {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let noise = (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                    // A burst that passes the ceiling, between quiet tones.
                    let loud = if (20_000..24_000).contains(&t) || (150_000..170_000).contains(&t) {
                        1.9
                    } else {
                        0.3
                    };
                    for c in 0..channels {
                        b.channel_mut(c)[i] =
                            loud * (0.5 * (t as f64 * 0.031 * (c + 1) as f64).sin() + 0.2 * noise);
                    }
                    t += 1;
                }
                w.write(&b).expect("write");
            }
            let mut p = w.finish().expect("finish");
            let mut meter = p.meter.take().expect("meter");
            let as_written = meter.finish();
            let read = crate::measure_file::measure_file(
                &p.temp_path,
                None,
                crate::measure_file::OverSearch {
                    frame_rate: 25.0,
                    ceiling_dbtp: Some(-1.0),
                },
            )
            .expect("measure");
            assert_eq!(read.measurement, as_written, "{path:?}");
            assert_eq!(as_written.overs.len(), 2, "the bursts are overs");
            assert!(as_written.loudness_range_lu.is_some());
            assert_eq!(read.codec, pcm_codec_name(depth));
            assert_eq!((read.frames, read.channels), (p.frames, channels));
            let digest = digest_wav(&p.temp_path).expect("digest");
            assert_eq!(
                (digest.audio_sha256.as_str(), digest.data_bytes),
                (p.audio_sha256.as_str(), p.data_bytes)
            );
        }
    }

    #[test]
    fn a_failed_rename_removes_the_temporary_file() {
        let dir = stemforge_testkit::scratch("output-rename-fails");
        // The final name is taken by a non-empty folder: the rename fails
        // after the file was written, fsynced, verified and patched.
        let target = dir.join("Song_full.wav");
        std::fs::create_dir_all(target.join("in-the-way")).expect("mkdir");
        let p = writer(&target).finish().expect("finish");
        digest_wav(&p.temp_path).expect("verify");
        p.write_loudness(&BextLoudness::default()).expect("patch");
        let err = p.commit().expect_err("a folder is in the way");
        match &err {
            OutputError::Io { source, .. } => assert!(
                matches!(
                    source.kind(),
                    std::io::ErrorKind::IsADirectory | std::io::ErrorKind::DirectoryNotEmpty
                ),
                "{source:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(partials(&dir), Vec::<String>::new(), "{err}");
        assert!(
            target.join("in-the-way").is_dir(),
            "the folder is untouched"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_abandoned_writer_or_unpublished_output_leaves_no_temporary_file() {
        let dir = stemforge_testkit::scratch("output-abandoned");
        let target = dir.join("Song_full.wav");
        // An error or cancel while writing.
        drop(writer(&target));
        assert_eq!(partials(&dir), Vec::<String>::new());
        // An error or cancel while verifying (the file is finished, not published).
        let p = writer(&target).finish().expect("finish");
        assert!(p.temp_path.exists());
        drop(p);
        assert_eq!(partials(&dir), Vec::<String>::new());
        writer(&target).finish().expect("finish").discard();
        assert_eq!(partials(&dir), Vec::<String>::new());
        assert!(!target.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_committed_output_is_kept_under_its_final_name() {
        let dir = stemforge_testkit::scratch("output-committed");
        let target = dir.join("Song_full.wav");
        let p = writer(&target).finish().expect("finish");
        let frames = p.frames;
        assert_eq!(p.commit().expect("commit"), target);
        assert_eq!(partials(&dir), Vec::<String>::new());
        let d = digest_wav(&target).expect("a WAV");
        assert_eq!(d.data_bytes, frames * 2 * 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn write_atomically_removes_its_temporary_file_when_the_rename_fails() {
        let dir = stemforge_testkit::scratch("atomically-rename-fails");
        let target = dir.join("manifest.json");
        std::fs::create_dir_all(target.join("in-the-way")).expect("mkdir");
        crate::tasks::manifest::write_atomically(&target, b"{}\n")
            .expect_err("a folder is in the way");
        assert_eq!(partials(&dir), Vec::<String>::new());
        // And a good write leaves only the file.
        let ok = dir.join("report.csv");
        crate::tasks::manifest::write_atomically(&ok, b"a,b\n").expect("write");
        assert_eq!(std::fs::read(&ok).expect("read"), b"a,b\n");
        assert_eq!(partials(&dir), Vec::<String>::new());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
