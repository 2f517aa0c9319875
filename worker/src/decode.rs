//! Streaming decode of delivered stems (WAV/BWF, AIFF, FLAC) into planar `f64` blocks.
//!
//! [`StemReader`] wraps a symphonia 0.6 format reader and decoder. It keeps one decoded packet,
//! converted to `f64`, in an internal FIFO so that [`StemReader::read`] can hand out blocks of
//! any size without ever holding the whole file in memory.
//!
//! Conversion is exact: integer PCM is divided by `2^(bits-1)` of the decoded sample width
//! (symphonia left-justifies narrower codes, e.g. 20-in-24 bit WAV or FLAC into `i32`), so
//! 24-bit code 8388607 becomes `8388607 / 8388608`. Float samples are passed through unchanged
//! (no clamping: a 32-bit float stem may legitimately exceed full scale).

use std::fmt;
use std::fs::File;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use symphonia::core::audio::sample::{Sample, i24, u24};
use symphonia::core::audio::{Audio, AudioBuffer, GenericAudioBufferRef};
use symphonia::core::codecs::audio::well_known::{
    CODEC_ID_PCM_F32BE, CODEC_ID_PCM_F32LE, CODEC_ID_PCM_F64BE, CODEC_ID_PCM_F64LE,
};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Largest packet (in frames) we pre-size the FIFO for at open. Larger packets still work, the
/// FIFO just grows once. Caps the allocation a hostile header can request up front.
const MAX_PRESIZE_FRAMES: u64 = 1 << 16;

/// More channels than any stem layout (beds are at most 7.1.4, 12 channels); guards memory
/// against a hostile header declaring thousands of channels, and symphonia's channel-mask
/// arithmetic, which overflows past 32.
const MAX_CHANNELS: usize = 32;

/// Sample rates a stem may have: telephone to 8× DXD. Outside it a header is
/// lying (and a huge rate would size buffers by it).
pub const RATES: std::ops::RangeInclusive<u32> = 8_000..=768_000;

/// A float sample beyond this magnitude (+60 dBFS) is not audio: no
/// converter or plug-in produces it from real material.
pub const MAX_MAGNITUDE: f64 = 1000.0;

/// Whether a decoded sample is audio: finite and within [`MAX_MAGNITUDE`].
/// NaN, infinities and absurd magnitudes come from broken float exports;
/// every reader (preflight, `measure`) applies this one rule.
pub fn is_audio_sample(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_MAGNITUDE
}

/// What a stem file is, as found when opening it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub sample_rate: u32,
    pub channels: usize,
    /// Total frames if the container states it.
    pub frames: Option<u64>,
    /// Bits per sample of the coded samples if known (16, 24, 32...).
    pub bits_per_sample: Option<u32>,
    /// Short human description of the coding, e.g. "pcm_s24le", "pcm_f32le", "flac".
    pub codec: String,
    /// Container, e.g. "wav", "flac", "aiff".
    pub container: String,
}

/// Why a stem could not be opened or decoded. Messages name the file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be opened (missing, permissions, a directory...).
    #[error("cannot open stem '{}': {source} (check the path in the spec)", .path.display())]
    Open { path: PathBuf, source: io::Error },
    /// Not an audio file we can read: unknown/corrupt container, unsupported codec or feature.
    #[error(
        "'{}' is not a readable audio file (unsupported or corrupt container: {reason}); \
         deliver WAV, BWF, AIFF or FLAC",
        .path.display()
    )]
    Unsupported { path: PathBuf, reason: String },
    /// The audio data is malformed at (or just after) `frame`.
    #[error("'{}' is corrupt at frame {frame}: {reason}; re-export the stem", .path.display())]
    Corrupt {
        path: PathBuf,
        frame: u64,
        reason: String,
    },
    /// The container holds no audio track.
    #[error("'{}' contains no audio track; deliver WAV, BWF, AIFF or FLAC", .path.display())]
    NoAudioTrack { path: PathBuf },
    /// The operating system failed a read mid-stream (not an end of file).
    #[error(
        "cannot read stem '{}' at frame {frame}: {source} (check the storage and retry)",
        .path.display()
    )]
    Io {
        path: PathBuf,
        frame: u64,
        source: io::Error,
    },
    /// The caller passed output buffers that cannot hold the request (a programming error).
    #[error("internal error reading '{}': {reason}", .path.display())]
    InvalidRequest { path: PathBuf, reason: String },
}

/// A terminal failure remembered so that later `read` calls report it again.
#[derive(Debug, Clone)]
enum Failure {
    Corrupt {
        frame: u64,
        reason: String,
    },
    Unsupported {
        reason: String,
    },
    /// A read error, kept as its OS error code when it has one so the
    /// error reported again is the same error (its class decides retries).
    Io {
        frame: u64,
        kind: io::ErrorKind,
        os_error: Option<i32>,
        message: String,
    },
}

impl Failure {
    fn to_error(&self, path: &Path) -> DecodeError {
        match self {
            Failure::Corrupt { frame, reason } => DecodeError::Corrupt {
                path: path.to_path_buf(),
                frame: *frame,
                reason: reason.clone(),
            },
            Failure::Unsupported { reason } => DecodeError::Unsupported {
                path: path.to_path_buf(),
                reason: reason.clone(),
            },
            Failure::Io {
                frame,
                kind,
                os_error,
                message,
            } => DecodeError::Io {
                path: path.to_path_buf(),
                frame: *frame,
                source: match os_error {
                    Some(code) => io::Error::from_raw_os_error(*code),
                    None => io::Error::new(*kind, message.clone()),
                },
            },
        }
    }
}

/// Classifies an error from `FormatReader::next_packet` (other than a clean/truncated end).
fn demux_failure(err: SymphoniaError, frame: u64) -> Failure {
    match err {
        SymphoniaError::ResetRequired => Failure::Unsupported {
            reason: "chained streams (the track list changes mid-stream) are not supported"
                .to_string(),
        },
        SymphoniaError::IoError(e) => Failure::Io {
            frame,
            kind: e.kind(),
            os_error: e.raw_os_error(),
            message: e.to_string(),
        },
        SymphoniaError::Unsupported(what) => Failure::Unsupported {
            reason: format!("unsupported feature mid-stream: {what}"),
        },
        other => Failure::Corrupt {
            frame,
            reason: other.to_string(),
        },
    }
}

/// Classifies an error from `AudioDecoder::decode`. An I/O error from the decoder means the
/// packet was shorter than its header claimed, i.e. malformed data, not a storage failure.
fn decode_failure(err: SymphoniaError, frame: u64) -> Failure {
    match err {
        SymphoniaError::ResetRequired => Failure::Unsupported {
            reason: "the decoder requires a reset (chained streams are not supported)".to_string(),
        },
        SymphoniaError::Unsupported(what) => Failure::Unsupported {
            reason: format!("unsupported coding feature: {what}"),
        },
        SymphoniaError::IoError(e) => Failure::Corrupt {
            frame,
            reason: format!("packet data ends early ({e})"),
        },
        other => Failure::Corrupt {
            frame,
            reason: other.to_string(),
        },
    }
}

/// Maps an error while probing the container at open.
fn probe_error(path: &Path, err: SymphoniaError) -> DecodeError {
    match err {
        SymphoniaError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            DecodeError::Unsupported {
                path: path.to_path_buf(),
                reason: "the file ends before the end of its header chunks (truncated?)"
                    .to_string(),
            }
        }
        SymphoniaError::IoError(source) => DecodeError::Open {
            path: path.to_path_buf(),
            source,
        },
        other => DecodeError::Unsupported {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// Streams one audio file as planar f64 blocks of any requested size. Memory bounded (one decoded
/// packet + a FIFO), never the whole file.
pub struct StemReader {
    path: PathBuf,
    info: StreamInfo,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    /// Converted samples of the last decoded packet, one vector per channel. Valid samples are
    /// `fifo_pos..fifo_len`; the vectors only grow (to the largest packet seen).
    fifo: Vec<Vec<f64>>,
    fifo_pos: usize,
    fifo_len: usize,
    /// Frames pushed into the FIFO so far (the frame index of the next packet to decode).
    decoded: u64,
    /// Frames handed to the caller so far.
    delivered: u64,
    /// The expected timestamp of the next packet when timestamps count frames (time base
    /// 1/sample_rate), else `None`. Used to catch data the demuxer skipped: symphonia's FLAC
    /// reader silently drops frames that fail their CRC and resyncs on the next one.
    next_pts: Option<i64>,
    ended: bool,
    failure: Option<Failure>,
}

impl fmt::Debug for StemReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StemReader")
            .field("path", &self.path)
            .field("info", &self.info)
            .field("position", &self.delivered)
            .field("ended", &self.ended)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl StemReader {
    /// Opens `path`, probes its container (the extension is used as a hint) and prepares a
    /// decoder for the default audio track.
    pub fn open(path: &Path) -> Result<Self, DecodeError> {
        let open_err = |source: io::Error| DecodeError::Open {
            path: path.to_path_buf(),
            source,
        };
        let unsupported = |reason: &str| DecodeError::Unsupported {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };

        // Look before opening: opening a FIFO (or a device) would block or
        // read forever.
        let meta = std::fs::metadata(path).map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "it is a directory, not a file",
            )));
        }
        if !meta.is_file() {
            return Err(open_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is not a regular file (a pipe, socket or device)",
            )));
        }
        let file = File::open(path).map_err(open_err)?;
        if meta.len() == 0 {
            return Err(unsupported("the file is empty (0 bytes)"));
        }

        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(&ext.to_ascii_lowercase());
        }
        if let Some(n) = declared_channels(path)
            && n > MAX_CHANNELS
        {
            return Err(unsupported(&format!(
                "its header declares {n} channels; stems must be mono, stereo or 5.1 (at most {MAX_CHANNELS} channels are read)"
            )));
        }
        // symphonia can panic on malformed headers (arithmetic overflow in debug
        // builds); a panic there is a bad file, not a crash.
        let format = catch_unwind(AssertUnwindSafe(|| {
            symphonia::default::get_probe().probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
        }))
        .map_err(|p| {
            unsupported(&format!(
                "its header is malformed (the reader failed: {})",
                panic_message(&p)
            ))
        })?
        .map_err(|e| probe_error(path, e))?;

        let no_track = || DecodeError::NoAudioTrack {
            path: path.to_path_buf(),
        };
        let track = format
            .default_track(TrackType::Audio)
            .ok_or_else(no_track)?;
        let track_id = track.id;
        let frames = track.num_frames;
        let pts_counts_frames = track.time_base.is_some_and(|tb| {
            tb.numer.get() == 1 && Some(tb.denom.get()) == track_sample_rate(track)
        });
        let next_pts = pts_counts_frames.then_some(track.start_ts.get());
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(no_track)?
            .clone();

        let sample_rate = match params.sample_rate {
            Some(rate) if RATES.contains(&rate) => rate,
            Some(rate) => {
                return Err(unsupported(&format!(
                    "its header states a sample rate of {rate} Hz (stems are {} to {} Hz)",
                    RATES.start(),
                    RATES.end()
                )));
            }
            None => return Err(unsupported("the sample rate is not stated")),
        };
        let channels = match &params.channels {
            Some(ch) if ch.count() > 0 => ch.count(),
            _ => return Err(unsupported("the channel count is not stated")),
        };
        if channels > MAX_CHANNELS {
            return Err(unsupported(&format!(
                "{channels} channels declared, at most {MAX_CHANNELS} are supported"
            )));
        }

        let decoder = catch_unwind(AssertUnwindSafe(|| {
            symphonia::default::get_codecs()
                .make_audio_decoder(&params, &AudioDecoderOptions::default())
        }))
        .map_err(|p| {
            unsupported(&format!(
                "its coding parameters are malformed (the decoder failed: {})",
                panic_message(&p)
            ))
        })?
        .map_err(|e| DecodeError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("cannot decode the audio coding: {e}"),
        })?;

        let bits_per_sample = params.bits_per_sample.or(match params.codec {
            CODEC_ID_PCM_F32LE | CODEC_ID_PCM_F32BE => Some(32),
            CODEC_ID_PCM_F64LE | CODEC_ID_PCM_F64BE => Some(64),
            _ => None,
        });
        let container = match format.format_info().short_name {
            "wave" => "wav",
            other => other,
        };
        let info = StreamInfo {
            sample_rate,
            channels,
            frames,
            bits_per_sample,
            codec: decoder.codec_info().short_name.to_string(),
            container: container.to_string(),
        };
        tracing::debug!(path = %path.display(), ?info, "opened stem");

        let presize = params
            .max_frames_per_packet
            .unwrap_or(0)
            .min(MAX_PRESIZE_FRAMES) as usize;
        let fifo = (0..channels).map(|_| vec![0.0; presize]).collect();

        Ok(StemReader {
            path: path.to_path_buf(),
            info,
            format,
            decoder,
            track_id,
            fifo,
            fifo_pos: 0,
            fifo_len: 0,
            decoded: 0,
            delivered: 0,
            next_pts,
            ended: false,
            failure: None,
        })
    }

    /// What the file is, as found when opening it.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// The path this reader was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames delivered so far.
    pub fn position(&self) -> u64 {
        self.delivered
    }

    /// Fills `out[ch][..n]` for every channel `ch` in `0..info.channels` with the next `n` frames,
    /// `n <= frames`, and returns `n`. `n < frames` only at the end of the stream (then 0 forever
    /// after). A stream that ends early (truncated file) simply ends: compare [`Self::position`]
    /// with `info().frames` to detect truncation.
    ///
    /// `out.len()` must be `>= info.channels` and each `out[ch].len() >= frames`, otherwise
    /// [`DecodeError::InvalidRequest`] is returned. After an error, further calls return the
    /// same error.
    pub fn read(&mut self, out: &mut [Vec<f64>], frames: usize) -> Result<usize, DecodeError> {
        let channels = self.info.channels;
        if out.len() < channels {
            return Err(DecodeError::InvalidRequest {
                path: self.path.clone(),
                reason: format!(
                    "{} output buffers passed for {channels} channels",
                    out.len()
                ),
            });
        }
        if let Some((ch, buf)) = out[..channels]
            .iter()
            .enumerate()
            .find(|(_, b)| b.len() < frames)
        {
            return Err(DecodeError::InvalidRequest {
                path: self.path.clone(),
                reason: format!(
                    "output buffer for channel {ch} holds {} frames, {frames} requested",
                    buf.len()
                ),
            });
        }

        let mut filled = 0;
        while filled < frames {
            let avail = self.fifo_len - self.fifo_pos;
            if avail == 0 {
                if !self.refill()? {
                    break;
                }
                continue;
            }
            let n = avail.min(frames - filled);
            let src_range = self.fifo_pos..self.fifo_pos + n;
            for (dst, src) in out.iter_mut().zip(&self.fifo) {
                dst[filled..filled + n].copy_from_slice(&src[src_range.clone()]);
            }
            self.fifo_pos += n;
            filled += n;
        }
        self.delivered += filled as u64;
        Ok(filled)
    }

    /// Decodes the next non-empty packet of our track into the FIFO. Returns `Ok(false)` at the
    /// end of the stream. Only called when the FIFO is empty.
    fn refill(&mut self) -> Result<bool, DecodeError> {
        if let Some(failure) = &self.failure {
            return Err(failure.to_error(&self.path));
        }
        if self.ended {
            return Ok(false);
        }
        let frame = self.decoded;
        let result = catch_unwind(AssertUnwindSafe(|| self.refill_inner())).unwrap_or_else(|p| {
            Err(Failure::Corrupt {
                frame,
                reason: format!(
                    "the decoder failed on malformed data ({})",
                    panic_message(&p)
                ),
            })
        });
        match result {
            Ok(more) => {
                self.ended = !more;
                Ok(more)
            }
            Err(failure) => {
                let err = failure.to_error(&self.path);
                tracing::warn!(path = %self.path.display(), "{err}");
                self.failure = Some(failure);
                Err(err)
            }
        }
    }

    fn refill_inner(&mut self) -> Result<bool, Failure> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(false),
                Err(SymphoniaError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // A truncated file: symphonia fails the read of the last (partial) packet.
                    // Treat as the end; the caller compares position() with info().frames.
                    tracing::warn!(
                        path = %self.path.display(),
                        frame = self.decoded,
                        stated_frames = ?self.info.frames,
                        "stream ended early (unexpected end of file)"
                    );
                    return Ok(false);
                }
                Err(e) => return Err(demux_failure(e, self.decoded)),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let frame = self.decoded;
            if let Some(expected) = self.next_pts {
                let pts = packet.pts.get();
                if pts != expected {
                    let reason = if pts > expected {
                        format!(
                            "{} frames could not be decoded and were skipped",
                            pts.abs_diff(expected)
                        )
                    } else {
                        format!(
                            "packet timestamps go back by {} frames",
                            pts.abs_diff(expected)
                        )
                    };
                    return Err(Failure::Corrupt { frame, reason });
                }
                self.next_pts = pts.checked_add_unsigned(packet.dur.get());
            }
            let buf = self
                .decoder
                .decode(&packet)
                .map_err(|e| decode_failure(e, frame))?;
            let n = convert_into(&buf, &mut self.fifo, self.info.channels)
                .map_err(|reason| Failure::Corrupt { frame, reason })?;
            if n == 0 {
                continue;
            }
            self.fifo_pos = 0;
            self.fifo_len = n;
            self.decoded += n as u64;
            return Ok(true);
        }
    }
}

/// The text of a caught panic.
fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "internal error".to_string())
}

/// The channel count a WAV `fmt ` or AIFF `COMM` chunk declares, read from the
/// first 64 KiB without trusting anything else in the header.
fn declared_channels(path: &Path) -> Option<usize> {
    use std::io::Read;
    let mut head = Vec::new();
    File::open(path)
        .ok()?
        .take(65_536)
        .read_to_end(&mut head)
        .ok()?;
    let (big_endian, want, at_channels) = match head.get(..4)? {
        b"RIFF" => (false, b"fmt ", 2),
        b"FORM" => (true, b"COMM", 0),
        _ => return None,
    };
    let mut at = 12usize;
    while at.checked_add(8)? <= head.len() {
        let size_bytes: [u8; 4] = head.get(at + 4..at + 8)?.try_into().ok()?;
        let size = if big_endian {
            u32::from_be_bytes(size_bytes)
        } else {
            u32::from_le_bytes(size_bytes)
        } as usize;
        if head.get(at..at + 4)? == want {
            let c: [u8; 2] = head
                .get(at + 8 + at_channels..at + 10 + at_channels)?
                .try_into()
                .ok()?;
            return Some(usize::from(if big_endian {
                u16::from_be_bytes(c)
            } else {
                u16::from_le_bytes(c)
            }));
        }
        at = at
            .checked_add(8)?
            .checked_add(size)?
            .checked_add(size & 1)?;
    }
    None
}

fn track_sample_rate(track: &symphonia::core::formats::Track) -> Option<u32> {
    track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .and_then(|a| a.sample_rate)
}

/// Converts a decoded buffer into the FIFO (growing it if the packet is larger than any before)
/// and returns the number of frames.
fn convert_into(
    buf: &GenericAudioBufferRef<'_>,
    fifo: &mut [Vec<f64>],
    channels: usize,
) -> Result<usize, String> {
    if buf.num_planes() != channels {
        return Err(format!(
            "a packet decoded to {} channels, the stream has {channels}",
            buf.num_planes()
        ));
    }
    const S8: f64 = 128.0;
    const S16: f64 = 32_768.0;
    const S24: f64 = 8_388_608.0;
    const S32: f64 = 2_147_483_648.0;
    match buf {
        GenericAudioBufferRef::U8(b) => copy_planes(b, fifo, |s: u8| (f64::from(s) - S8) / S8),
        GenericAudioBufferRef::U16(b) => copy_planes(b, fifo, |s: u16| (f64::from(s) - S16) / S16),
        GenericAudioBufferRef::U24(b) => {
            copy_planes(b, fifo, |s: u24| (f64::from(s.inner()) - S24) / S24)
        }
        GenericAudioBufferRef::U32(b) => copy_planes(b, fifo, |s: u32| (f64::from(s) - S32) / S32),
        GenericAudioBufferRef::S8(b) => copy_planes(b, fifo, |s: i8| f64::from(s) / S8),
        GenericAudioBufferRef::S16(b) => copy_planes(b, fifo, |s: i16| f64::from(s) / S16),
        GenericAudioBufferRef::S24(b) => copy_planes(b, fifo, |s: i24| f64::from(s.inner()) / S24),
        GenericAudioBufferRef::S32(b) => copy_planes(b, fifo, |s: i32| f64::from(s) / S32),
        GenericAudioBufferRef::F32(b) => copy_planes(b, fifo, f64::from),
        GenericAudioBufferRef::F64(b) => copy_planes(b, fifo, |s: f64| s),
    }
}

fn copy_planes<S: Sample>(
    buf: &AudioBuffer<S>,
    fifo: &mut [Vec<f64>],
    conv: impl Fn(S) -> f64,
) -> Result<usize, String> {
    let frames = buf.frames();
    for (ch, dst) in fifo.iter_mut().enumerate() {
        let src = buf
            .plane(ch)
            .and_then(|p| p.get(..frames))
            .ok_or_else(|| format!("a packet is missing audio for channel {ch}"))?;
        if dst.len() < frames {
            dst.resize(frames, 0.0);
        }
        for (d, s) in dst.iter_mut().zip(src) {
            *d = conv(*s);
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file (or directory) in the temp dir, unique per process and test, removed on drop.
    struct Temp(PathBuf);

    impl Temp {
        fn new(test: &str, ext: &str) -> Self {
            let name = format!("stemforge-decode-{}-{test}.{ext}", std::process::id());
            Temp(std::env::temp_dir().join(name))
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            if self.0.is_dir() {
                let _ = std::fs::remove_dir(&self.0);
            } else {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    /// Writes an integer WAV with hound; `frames[i][ch]` is the code of channel `ch` at frame `i`.
    fn write_int_wav(path: &Path, channels: u16, bits: u16, frames: &[Vec<i32>]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 48_000,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create wav");
        for frame in frames {
            for &s in frame {
                match bits {
                    8 => w.write_sample(s as i8).expect("write"),
                    16 => w.write_sample(s as i16).expect("write"),
                    _ => w.write_sample(s).expect("write"),
                }
            }
        }
        w.finalize().expect("finalize wav");
    }

    fn write_float_wav(path: &Path, channels: u16, frames: &[Vec<f32>]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(path, spec).expect("create wav");
        for frame in frames {
            for &s in frame {
                w.write_sample(s).expect("write");
            }
        }
        w.finalize().expect("finalize wav");
    }

    /// Reads the whole stream with `block`-frame reads, checking the read contract on the way:
    /// every read is full until the single short one, after which reads return 0.
    fn read_all(reader: &mut StemReader, block: usize) -> Vec<Vec<f64>> {
        let channels = reader.info().channels;
        // One spare buffer and extra length: read() must only touch out[..channels][..n].
        let mut out = vec![vec![f64::NAN; block + 7]; channels + 1];
        let mut all = vec![Vec::new(); channels];
        loop {
            let n = reader.read(&mut out, block).expect("read");
            assert!(n <= block);
            for (dst, src) in all.iter_mut().zip(&out) {
                dst.extend_from_slice(&src[..n]);
            }
            assert_eq!(reader.position(), all[0].len() as u64);
            if n < block {
                break;
            }
        }
        assert!(
            out[channels].iter().all(|s| s.is_nan()),
            "spare buffer touched"
        );
        for _ in 0..3 {
            assert_eq!(reader.read(&mut out, block).expect("read after end"), 0);
        }
        all
    }

    /// Asserts `decoded` equals `expected` (frame-major) sample for sample, exactly.
    fn assert_exact(decoded: &[Vec<f64>], expected: &[Vec<f64>]) {
        assert_eq!(decoded[0].len(), expected.len(), "frame count");
        for (i, frame) in expected.iter().enumerate() {
            for (ch, &want) in frame.iter().enumerate() {
                let got = decoded[ch][i];
                assert!(
                    got.to_bits() == want.to_bits(),
                    "frame {i} channel {ch}: got {got:e}, want {want:e}"
                );
            }
        }
    }

    fn scale(codes: &[Vec<i32>], full_scale: f64) -> Vec<Vec<f64>> {
        codes
            .iter()
            .map(|f| f.iter().map(|&c| f64::from(c) / full_scale).collect())
            .collect()
    }

    /// 1000 stereo 16-bit frames: a ramp over the full range plus the extreme codes.
    fn s16_codes() -> Vec<Vec<i32>> {
        let mut codes: Vec<Vec<i32>> = (0..1000)
            .map(|i| vec![-32_768 + i * 65, 32_767 - i * 65])
            .collect();
        codes[999] = vec![32_767, -32_768];
        codes[500] = vec![1, -1];
        codes
    }

    /// Stereo 24-bit frames: a ramp over the full range plus i24 max/min and +-1 LSB.
    fn s24_codes(n: i32) -> Vec<Vec<i32>> {
        let step = 16_777_215 / n;
        let mut codes: Vec<Vec<i32>> = (0..n)
            .map(|i| {
                let l = -8_388_608 + i * step;
                vec![l, -l - 1]
            })
            .collect();
        codes[1] = vec![8_388_607, -8_388_608];
        codes[2] = vec![1, -1];
        codes
    }

    #[test]
    fn decodes_16_bit_stereo_exactly_with_odd_block_sizes() {
        let f = Temp::new("s16", "wav");
        let codes = s16_codes();
        write_int_wav(&f.0, 2, 16, &codes);
        let expected = scale(&codes, 32_768.0);
        for block in [4096, 333, 1000, 1] {
            let mut r = StemReader::open(&f.0).expect("open");
            let all = read_all(&mut r, block);
            assert_exact(&all, &expected);
            assert_eq!(r.position(), 1000);
        }
        // Spot-check the extremes against hand-computed values.
        let mut r = StemReader::open(&f.0).expect("open");
        let all = read_all(&mut r, 4096);
        assert_eq!(all[0][0], -1.0);
        assert_eq!(all[0][999], 32_767.0 / 32_768.0);
        assert_eq!(all[1][999], -1.0);
        assert_eq!(all[0][500], 1.0 / 32_768.0);
    }

    #[test]
    fn decodes_24_bit_stereo_exactly_including_extreme_codes() {
        let f = Temp::new("s24", "wav");
        let codes = s24_codes(1000);
        write_int_wav(&f.0, 2, 24, &codes);
        let expected = scale(&codes, 8_388_608.0);
        for block in [4096, 333, 1152, 7] {
            let mut r = StemReader::open(&f.0).expect("open");
            let all = read_all(&mut r, block);
            assert_exact(&all, &expected);
            assert_eq!(all[0][1], 8_388_607.0 / 8_388_608.0);
            assert_eq!(all[1][1], -1.0);
            assert_eq!(all[0][2], 1.0 / 8_388_608.0);
            assert_eq!(all[1][2], -1.0 / 8_388_608.0);
        }
        let r = StemReader::open(&f.0).expect("open");
        assert_eq!(
            r.info(),
            &StreamInfo {
                sample_rate: 48_000,
                channels: 2,
                frames: Some(1000),
                bits_per_sample: Some(24),
                codec: "pcm_s24le".to_string(),
                container: "wav".to_string(),
            }
        );
        assert_eq!(r.path(), f.0.as_path());
        assert_eq!(r.position(), 0);
    }

    #[test]
    fn decodes_32_bit_float_stereo_unchanged() {
        let f = Temp::new("f32", "wav");
        let mut frames: Vec<Vec<f32>> = (0..1000)
            .map(|i| {
                let x = i as f32 / 999.0;
                vec![2.0 * x - 1.0, (x * 17.0).sin() * 0.3]
            })
            .collect();
        // Full scale, over full scale (floats are not clamped), subnormal, negative zero.
        frames[10] = vec![1.0, -1.0];
        frames[11] = vec![1.5, -2.25];
        frames[12] = vec![1.0e-40, -0.0];
        frames[13] = vec![f32::MIN_POSITIVE, 0.1];
        write_float_wav(&f.0, 2, &frames);
        let expected: Vec<Vec<f64>> = frames
            .iter()
            .map(|fr| fr.iter().map(|&s| f64::from(s)).collect())
            .collect();
        for block in [4096, 333] {
            let mut r = StemReader::open(&f.0).expect("open");
            let all = read_all(&mut r, block);
            assert_exact(&all, &expected);
            assert_eq!(all[0][11], 1.5);
            assert_eq!(all[1][11], -2.25);
            assert_eq!(all[0][12], f64::from(1.0e-40_f32));
            assert!(all[1][12] == 0.0 && all[1][12].is_sign_negative());
            assert_eq!(all[1][13], f64::from(0.1_f32));
        }
        let r = StemReader::open(&f.0).expect("open");
        let info = r.info();
        assert_eq!(info.codec, "pcm_f32le");
        assert_eq!(info.container, "wav");
        assert_eq!(info.bits_per_sample, Some(32));
        assert_eq!(info.frames, Some(1000));
        assert_eq!((info.sample_rate, info.channels), (48_000, 2));
    }

    #[test]
    fn decodes_mono_16_bit_and_8_bit() {
        let f = Temp::new("mono16", "wav");
        let codes: Vec<Vec<i32>> = (0..777).map(|i| vec![(i * 84) - 32_768]).collect();
        write_int_wav(&f.0, 1, 16, &codes);
        let mut r = StemReader::open(&f.0).expect("open");
        assert_eq!(r.info().channels, 1);
        assert_eq!(r.info().frames, Some(777));
        assert_eq!(r.info().bits_per_sample, Some(16));
        assert_eq!(r.info().codec, "pcm_s16le");
        let all = read_all(&mut r, 100);
        assert_eq!(all.len(), 1);
        assert_exact(&all, &scale(&codes, 32_768.0));
        assert_eq!(all[0][776], (776.0 * 84.0 - 32_768.0) / 32_768.0);

        // 8-bit WAV is unsigned on disk; hound takes signed codes and offsets them.
        let f8 = Temp::new("mono8", "wav");
        let codes8: Vec<Vec<i32>> = (0..300).map(|i| vec![(i % 256) - 128]).collect();
        write_int_wav(&f8.0, 1, 8, &codes8);
        let mut r = StemReader::open(&f8.0).expect("open");
        assert_eq!(r.info().codec, "pcm_u8");
        let all = read_all(&mut r, 64);
        assert_exact(&all, &scale(&codes8, 128.0));
        assert_eq!(all[0][0], -1.0);
        assert_eq!(all[0][255], 127.0 / 128.0);
    }

    #[test]
    fn truncated_wav_decodes_up_to_the_cut_then_ends() {
        let f = Temp::new("trunc", "wav");
        let codes = s24_codes(10_000);
        write_int_wav(&f.0, 2, 24, &codes);
        let bytes = std::fs::read(&f.0).expect("read back");
        // hound puts the data chunk last: 10000 frames * 6 bytes end at EOF.
        std::fs::write(&f.0, &bytes[..bytes.len() - 1001]).expect("truncate");
        let complete_frames = (60_000 - 1001) / 6; // 9833, the partial 9834th is dropped

        for block in [4096, 333] {
            let mut r = StemReader::open(&f.0).expect("open truncated");
            assert_eq!(
                r.info().frames,
                Some(10_000),
                "the header still states 10000"
            );
            let all = read_all(&mut r, block);
            assert_eq!(r.position(), complete_frames);
            assert_exact(
                &all,
                &scale(&codes[..complete_frames as usize], 8_388_608.0),
            );
        }
    }

    #[test]
    fn wav_cut_inside_the_header_is_unsupported() {
        let f = Temp::new("hdrcut", "wav");
        write_int_wav(&f.0, 2, 16, &s16_codes());
        let bytes = std::fs::read(&f.0).expect("read back");
        std::fs::write(&f.0, &bytes[..30]).expect("truncate");
        let err = StemReader::open(&f.0).expect_err("must fail");
        assert!(matches!(err, DecodeError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("stemforge-decode-"), "{err}");
    }

    #[test]
    fn text_file_named_wav_is_unsupported_and_names_the_file() {
        let f = Temp::new("text", "wav");
        std::fs::write(&f.0, "this is not audio, it is a text file\n".repeat(20)).expect("write");
        let err = StemReader::open(&f.0).expect_err("must fail");
        assert!(matches!(err, DecodeError::Unsupported { .. }), "{err:?}");
        let msg = err.to_string();
        let name = f.0.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("deliver WAV, BWF, AIFF or FLAC"), "{msg}");
    }

    #[test]
    fn zero_length_file_is_unsupported_and_names_the_file() {
        let f = Temp::new("empty", "wav");
        std::fs::write(&f.0, b"").expect("write");
        let err = StemReader::open(&f.0).expect_err("must fail");
        assert!(matches!(err, DecodeError::Unsupported { .. }), "{err:?}");
        let msg = err.to_string();
        let name = f.0.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains("empty"), "{msg}");
    }

    #[test]
    fn missing_file_and_directory_give_open_errors() {
        let f = Temp::new("missing", "wav");
        let err = StemReader::open(&f.0).expect_err("must fail");
        match &err {
            DecodeError::Open { path, source } => {
                assert_eq!(path, &f.0);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected Open, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.starts_with("cannot open stem '"), "{msg}");
        assert!(msg.contains("missing.wav"), "{msg}");
        assert!(msg.ends_with("(check the path in the spec)"), "{msg}");

        let d = Temp::new("dir", "wav");
        std::fs::create_dir(&d.0).expect("mkdir");
        let err = StemReader::open(&d.0).expect_err("must fail");
        assert!(matches!(err, DecodeError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("dir.wav"), "{err}");
    }

    #[test]
    fn too_few_output_buffers_is_an_error_not_a_panic() {
        let f = Temp::new("bufs", "wav");
        write_int_wav(&f.0, 2, 16, &s16_codes());
        let mut r = StemReader::open(&f.0).expect("open");
        let mut one = vec![vec![0.0; 100]];
        assert!(matches!(
            r.read(&mut one, 100),
            Err(DecodeError::InvalidRequest { .. })
        ));
        let mut short = vec![vec![0.0; 100], vec![0.0; 50]];
        assert!(matches!(
            r.read(&mut short, 100),
            Err(DecodeError::InvalidRequest { .. })
        ));
        // Nothing was consumed; a valid request still starts at frame 0.
        assert_eq!(r.position(), 0);
        let mut ok = vec![vec![0.0; 100], vec![0.0; 100]];
        assert_eq!(r.read(&mut ok, 100).expect("read"), 100);
        assert_eq!(ok[0][0], -1.0);
        assert_eq!(ok[1][0], 32_767.0 / 32_768.0);
        assert_eq!(r.read(&mut ok, 0).expect("empty read"), 0);
        assert_eq!(r.position(), 100);
    }

    /// Writes a big-endian AIFF (COMM + SSND) by hand; hound cannot write AIFF.
    fn write_aiff(path: &Path, channels: u16, bits: u16, frames: &[Vec<i32>]) {
        let bytes_per = usize::from(bits / 8);
        let mut data = Vec::new();
        for frame in frames {
            for &s in frame {
                data.extend_from_slice(&s.to_be_bytes()[4 - bytes_per..]);
            }
        }
        let mut comm = Vec::new();
        comm.extend_from_slice(&channels.to_be_bytes());
        comm.extend_from_slice(&(frames.len() as u32).to_be_bytes());
        comm.extend_from_slice(&bits.to_be_bytes());
        // 48000 as an 80-bit IEEE extended float.
        comm.extend_from_slice(&[0x40, 0x0E, 0xBB, 0x80, 0, 0, 0, 0, 0, 0]);
        let mut body = b"AIFF".to_vec();
        body.extend_from_slice(b"COMM");
        body.extend_from_slice(&(comm.len() as u32).to_be_bytes());
        body.extend_from_slice(&comm);
        body.extend_from_slice(b"SSND");
        body.extend_from_slice(&(data.len() as u32 + 8).to_be_bytes());
        body.extend_from_slice(&[0; 8]); // offset, block size
        body.extend_from_slice(&data);
        let mut file = b"FORM".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_be_bytes());
        file.extend_from_slice(&body);
        std::fs::write(path, file).expect("write aiff");
    }

    #[test]
    fn decodes_24_bit_aiff_exactly() {
        let f = Temp::new("s24", "aiff");
        let codes = s24_codes(1000);
        write_aiff(&f.0, 2, 24, &codes);
        let mut r = StemReader::open(&f.0).expect("open");
        assert_eq!(
            r.info(),
            &StreamInfo {
                sample_rate: 48_000,
                channels: 2,
                frames: Some(1000),
                bits_per_sample: Some(24),
                codec: "pcm_s24be".to_string(),
                container: "aiff".to_string(),
            }
        );
        let all = read_all(&mut r, 333);
        assert_exact(&all, &scale(&codes, 8_388_608.0));
        assert_eq!(all[0][1], 8_388_607.0 / 8_388_608.0);
    }

    #[test]
    fn absurd_channel_count_is_unsupported() {
        let f = Temp::new("manych", "aiff");
        write_aiff(&f.0, 300, 16, &[vec![0; 300]]);
        let err = StemReader::open(&f.0).expect_err("must fail");
        assert!(matches!(err, DecodeError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("declares 300 channels"), "{err}");
    }

    fn crc8(data: &[u8]) -> u8 {
        let mut crc = 0u8;
        for &b in data {
            crc ^= b;
            for _ in 0..8 {
                crc = if crc & 0x80 != 0 {
                    (crc << 1) ^ 0x07
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    fn crc16(data: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in data {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x8005
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    /// Writes a FLAC stream at 48 kHz using VERBATIM subframes (valid, uncompressed FLAC), so the
    /// test needs no encoder. `bits` is 16 or 24; blocks of `block` frames, fewer than 128.
    fn write_flac(path: &Path, channels: u8, bits: u8, block: usize, frames: &[Vec<i32>]) {
        let mut out = b"fLaC".to_vec();
        out.extend_from_slice(&[0x80, 0, 0, 34]); // last metadata block, STREAMINFO, 34 bytes
        out.extend_from_slice(&(block as u16).to_be_bytes()); // min block size
        out.extend_from_slice(&(block as u16).to_be_bytes()); // max block size
        out.extend_from_slice(&[0; 6]); // min/max frame size unknown
        let packed: u64 = (48_000u64 << 44)
            | (u64::from(channels - 1) << 41)
            | (u64::from(bits - 1) << 36)
            | frames.len() as u64;
        out.extend_from_slice(&packed.to_be_bytes());
        out.extend_from_slice(&[0; 16]); // MD5 unknown
        let size_code = if bits == 16 { 0b100 } else { 0b110 };
        for (index, chunk) in frames.chunks(block).enumerate() {
            assert!(index < 128, "frame number must fit one UTF-8 byte");
            let mut fr = vec![0xFF, 0xF8, 0x7A, ((channels - 1) << 4) | (size_code << 1)];
            fr.push(index as u8);
            fr.extend_from_slice(&(chunk.len() as u16 - 1).to_be_bytes());
            fr.push(crc8(&fr));
            for ch in 0..usize::from(channels) {
                fr.push(0x02); // VERBATIM, no wasted bits
                for frame in chunk {
                    let be = frame[ch].to_be_bytes();
                    fr.extend_from_slice(&be[4 - usize::from(bits / 8)..]);
                }
            }
            let crc = crc16(&fr);
            fr.extend_from_slice(&crc.to_be_bytes());
            out.extend_from_slice(&fr);
        }
        std::fs::write(path, out).expect("write flac");
    }

    #[test]
    fn decodes_flac_exactly() {
        let f = Temp::new("s24", "flac");
        let codes = s24_codes(5000);
        write_flac(&f.0, 2, 24, 1024, &codes);
        for block in [4096, 333] {
            let mut r = StemReader::open(&f.0).expect("open");
            assert_eq!(
                r.info(),
                &StreamInfo {
                    sample_rate: 48_000,
                    channels: 2,
                    frames: Some(5000),
                    bits_per_sample: Some(24),
                    codec: "flac".to_string(),
                    container: "flac".to_string(),
                }
            );
            let all = read_all(&mut r, block);
            assert_exact(&all, &scale(&codes, 8_388_608.0));
            assert_eq!(all[0][1], 8_388_607.0 / 8_388_608.0);
            assert_eq!(all[1][1], -1.0);
        }

        let f16 = Temp::new("mono16", "flac");
        let codes16: Vec<Vec<i32>> = (0..3000).map(|i| vec![i * 21 - 32_768]).collect();
        write_flac(&f16.0, 1, 16, 1000, &codes16);
        let mut r = StemReader::open(&f16.0).expect("open");
        assert_eq!(r.info().bits_per_sample, Some(16));
        let all = read_all(&mut r, 4096);
        assert_exact(&all, &scale(&codes16, 32_768.0));
    }

    #[test]
    fn corrupt_flac_frame_is_reported_at_its_frame() {
        let f = Temp::new("corrupt", "flac");
        let codes = s24_codes(5000);
        write_flac(&f.0, 2, 24, 1024, &codes);
        let mut bytes = std::fs::read(&f.0).expect("read back");
        // Frame layout: 42 bytes of marker + STREAMINFO, then per block 8 header bytes,
        // 2 * (1 + 1024 * 3) subframe bytes and 2 CRC bytes. Damage a sample in block 2.
        let frame_len = 8 + 2 * (1 + 1024 * 3) + 2;
        bytes[42 + 2 * frame_len + 100] ^= 0x10;
        std::fs::write(&f.0, &bytes).expect("write");

        let mut r = StemReader::open(&f.0).expect("open");
        let mut out = vec![vec![0.0; 333]; 2];
        let mut decoded = vec![Vec::new(); 2];
        let err = loop {
            match r.read(&mut out, 333) {
                Ok(n) => {
                    assert_eq!(n, 333, "must not end quietly");
                    for (d, o) in decoded.iter_mut().zip(&out) {
                        d.extend_from_slice(&o[..n]);
                    }
                }
                Err(e) => break e,
            }
        };
        match &err {
            DecodeError::Corrupt { frame, reason, .. } => {
                assert_eq!(*frame, 2048, "{reason}");
                assert!(reason.contains("1024 frames"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("corrupt.flac' is corrupt at frame 2048"),
            "{msg}"
        );
        assert!(msg.ends_with("re-export the stem"), "{msg}");
        // Everything delivered before the damage is intact.
        let good = decoded[0].len();
        assert_eq!(good, 1998); // 6 full reads of 333 frames
        assert_exact(&decoded, &scale(&codes[..good], 8_388_608.0));
        // The failure is sticky.
        assert!(matches!(
            r.read(&mut out, 333),
            Err(DecodeError::Corrupt { frame: 2048, .. })
        ));
    }

    #[test]
    fn truncated_flac_ends_without_panic() {
        let f = Temp::new("trunc", "flac");
        let codes = s24_codes(5000);
        write_flac(&f.0, 2, 24, 1024, &codes);
        let bytes = std::fs::read(&f.0).expect("read back");
        std::fs::write(&f.0, &bytes[..bytes.len() - 1001]).expect("truncate");
        let mut r = StemReader::open(&f.0).expect("open");
        let all = read_all(&mut r, 333);
        // The partial last FLAC frame is dropped; everything before it is exact.
        assert_eq!(r.position(), 4096);
        assert_eq!(r.info().frames, Some(5000));
        assert_exact(&all, &scale(&codes[..4096], 8_388_608.0));
    }

    #[test]
    fn a_read_error_mid_stream_keeps_its_os_error_code() {
        // The failure is remembered and reported again by later reads: it
        // must stay the same OS error (EIO is retried, a format error not).
        let path = PathBuf::from("stems/x.wav");
        let eio = io::Error::from_raw_os_error(5);
        let failure = demux_failure(SymphoniaError::IoError(eio), 42);
        for _ in 0..2 {
            match failure.to_error(&path) {
                DecodeError::Io { frame, source, .. } => {
                    assert_eq!(frame, 42);
                    assert_eq!(source.raw_os_error(), Some(5));
                }
                other => panic!("{other:?}"),
            }
        }
        // The decoder's own I/O error is a short packet: a format error.
        let short = decode_failure(
            SymphoniaError::IoError(io::Error::from(io::ErrorKind::UnexpectedEof)),
            3,
        );
        assert!(matches!(
            short.to_error(&path),
            DecodeError::Corrupt { frame: 3, .. }
        ));
    }

    #[test]
    fn error_messages_name_the_file_and_the_fix() {
        let path = PathBuf::from("stems/x.wav");
        let corrupt = Failure::Corrupt {
            frame: 12_345,
            reason: "bad data".into(),
        }
        .to_error(&path);
        assert_eq!(
            corrupt.to_string(),
            "'stems/x.wav' is corrupt at frame 12345: bad data; re-export the stem"
        );
        let decode =
            decode_failure(SymphoniaError::DecodeError("flac: bad crc"), 7).to_error(&path);
        assert!(matches!(decode, DecodeError::Corrupt { frame: 7, .. }));
        assert_eq!(
            decode.to_string(),
            "'stems/x.wav' is corrupt at frame 7: malformed stream: flac: bad crc; re-export the stem"
        );
        let reset = demux_failure(SymphoniaError::ResetRequired, 9).to_error(&path);
        assert!(matches!(reset, DecodeError::Unsupported { .. }));
        assert!(reset.to_string().contains("chained streams"));
        let unsupported = DecodeError::Unsupported {
            path: path.clone(),
            reason: "no suitable format reader found".into(),
        };
        assert_eq!(
            unsupported.to_string(),
            "'stems/x.wav' is not a readable audio file (unsupported or corrupt container: \
             no suitable format reader found); deliver WAV, BWF, AIFF or FLAC"
        );
        let open = DecodeError::Open {
            path,
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(
            open.to_string()
                .starts_with("cannot open stem 'stems/x.wav': ")
        );
    }

    #[test]
    fn reader_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<StemReader>();
        assert_send::<DecodeError>();
    }
}
