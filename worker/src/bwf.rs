//! Broadcast WAV (BWF) I/O: a streaming RIFF/WAVE writer with a `bext` chunk, a `bext` reader
//! and a top-level chunk lister.
//!
//! hound cannot write a `bext` chunk, hence this module. It is pure I/O: it knows nothing about
//! DSP or gRPC and takes sample bytes exactly as they go into the `data` chunk.
//!
//! Files written by [`BwfWriter`] have the chunk order
//!
//! ```text
//! RIFF <size> WAVE
//!   JUNK (28-byte body, zeros: reserved for an RF64 `ds64` chunk, EBU Tech 3306 practice)
//!   fmt  (PCM / IEEE float, or WAVE_FORMAT_EXTENSIBLE for more than 2 channels)
//!   bext (EBU Tech 3285 version 2)
//!   fact (float formats only: frame count)
//!   data
//! ```
//!
//! Every chunk body of odd size is followed by one zero pad byte that is not counted in the
//! chunk size (the `bext` body may be odd because of its coding history).
//!
//! The readers never panic on corrupt input and never trust sizes from the file for
//! allocations beyond what the file actually holds.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Offset of `Description` (256 bytes) in the `bext` body.
pub const BEXT_DESCRIPTION: usize = 0;
/// Size of `Description`.
pub const BEXT_DESCRIPTION_LEN: usize = 256;
/// Offset of `Originator` (32 bytes).
pub const BEXT_ORIGINATOR: usize = 256;
/// Size of `Originator`.
pub const BEXT_ORIGINATOR_LEN: usize = 32;
/// Offset of `OriginatorReference` (32 bytes).
pub const BEXT_ORIGINATOR_REFERENCE: usize = 288;
/// Size of `OriginatorReference`.
pub const BEXT_ORIGINATOR_REFERENCE_LEN: usize = 32;
/// Offset of `OriginationDate` (10 bytes, `yyyy-mm-dd`).
pub const BEXT_ORIGINATION_DATE: usize = 320;
/// Size of `OriginationDate`.
pub const BEXT_ORIGINATION_DATE_LEN: usize = 10;
/// Offset of `OriginationTime` (8 bytes, `hh:mm:ss`).
pub const BEXT_ORIGINATION_TIME: usize = 330;
/// Size of `OriginationTime`.
pub const BEXT_ORIGINATION_TIME_LEN: usize = 8;
/// Offset of `TimeReference` (u64 LE: low u32 then high u32; samples since midnight).
pub const BEXT_TIME_REFERENCE: usize = 338;
/// Offset of `Version` (u16 LE).
pub const BEXT_VERSION: usize = 346;
/// Offset of `UMID` (64 bytes; SMPTE 330M).
pub const BEXT_UMID: usize = 348;
/// Size of `UMID`.
pub const BEXT_UMID_LEN: usize = 64;
/// Offset of `LoudnessValue` (i16 LE, integrated loudness in LUFS × 100). Version 2.
pub const BEXT_LOUDNESS_VALUE: usize = 412;
/// Offset of `LoudnessRange` (i16 LE, LU × 100). Version 2.
pub const BEXT_LOUDNESS_RANGE: usize = 414;
/// Offset of `MaxTruePeakLevel` (i16 LE, dBTP × 100). Version 2.
pub const BEXT_MAX_TRUE_PEAK_LEVEL: usize = 416;
/// Offset of `MaxMomentaryLoudness` (i16 LE, LUFS × 100). Version 2.
pub const BEXT_MAX_MOMENTARY_LOUDNESS: usize = 418;
/// Offset of `MaxShortTermLoudness` (i16 LE, LUFS × 100). Version 2.
pub const BEXT_MAX_SHORT_TERM_LOUDNESS: usize = 420;
/// Offset of `Reserved` (180 zero bytes).
pub const BEXT_RESERVED: usize = 422;
/// Size of `Reserved`.
pub const BEXT_RESERVED_LEN: usize = 180;
/// Offset of `CodingHistory` (variable length, ASCII, CR LF terminated lines).
pub const BEXT_CODING_HISTORY: usize = 602;
/// Size of the fixed part of the `bext` body (everything before `CodingHistory`).
pub const BEXT_FIXED_LEN: usize = BEXT_CODING_HISTORY;
/// The `bext` version this module writes.
pub const BEXT_WRITE_VERSION: u16 = 2;
/// The i16 loudness code meaning "not measured / unknown".
pub const LOUDNESS_UNKNOWN: i16 = 0x7FFF;
/// Size of the `JUNK` chunk body reserved for a later RF64 `ds64` chunk.
pub const JUNK_LEN: usize = 28;

/// A `bext` body larger than this is treated as corrupt instead of being read into memory.
const MAX_BEXT_LEN: u64 = 16 << 20;

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_IEEE_FLOAT: u16 = 3;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT share this GUID tail after the 16-bit format tag.
const GUID_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// Why a WAV/BWF file could not be written or read. Messages name the problem.
#[derive(Debug, thiserror::Error)]
pub enum BwfError {
    /// An I/O error of the underlying reader or writer.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A file could not be opened.
    #[error("cannot open '{}': {source}", .path.display())]
    Open { path: PathBuf, source: io::Error },
    /// The stream does not start with `RIFF....WAVE`.
    #[error("not a RIFF/WAVE file (it starts with {found})")]
    NotWave { found: String },
    /// The file at `path` does not start with `RIFF....WAVE`.
    #[error("'{}' is not a RIFF/WAVE file", .path.display())]
    NotWaveFile { path: PathBuf },
    /// An RF64 file (`RF64....WAVE`); reading those is not supported yet.
    #[error("RF64 files (over 4 GiB) are not supported yet")]
    Rf64,
    /// The file ends inside a header.
    #[error("truncated file: {0}")]
    Truncated(String),
    /// A chunk declares more bytes than the file holds.
    #[error(
        "chunk '{id}' at offset {offset} declares {size} bytes but only {available} remain \
         in the file (truncated or corrupt file)"
    )]
    ChunkPastEof {
        id: String,
        offset: u64,
        size: u64,
        available: u64,
    },
    /// A header field is impossible.
    #[error("corrupt file: {0}")]
    Corrupt(String),
    /// The `bext` chunk is malformed.
    #[error("malformed bext chunk: {0}")]
    BadBext(String),
    /// The requested output format cannot be written.
    #[error("unsupported wav format: {0}")]
    UnsupportedFormat(String),
    /// The output would exceed the 32-bit sizes of RIFF/WAVE.
    #[error(
        "output too large: {bytes} bytes of audio exceed the 4 GiB limit of RIFF/WAVE; \
         RF64 is not supported yet (outputs over 4 GiB)"
    )]
    TooLarge { bytes: u64 },
    /// `finish` was called with a data chunk that does not hold whole frames.
    #[error("the data chunk holds {bytes} bytes, not a whole number of {block_align}-byte frames")]
    PartialFrame { bytes: u64, block_align: u16 },
    /// A previous write failed part-way; the writer cannot continue.
    #[error("an earlier write to this file failed; the file is incomplete")]
    Poisoned,
    /// An error reading the file at `path`.
    #[error("'{}': {source}", .path.display())]
    InFile {
        path: PathBuf,
        source: Box<BwfError>,
    },
}

/// The sample format of a file to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    pub sample_rate: u32,
    pub channels: u16,
    /// 16, 24 or 32 for integer PCM; 32 for float.
    pub bits_per_sample: u16,
    /// IEEE float samples (only with 32 bits).
    pub float: bool,
    /// `dwChannelMask` for more than 2 channels; `None` picks one by channel count (see
    /// [`default_channel_mask`]). Ignored for 1 and 2 channels, which are written as plain
    /// PCM / IEEE float without a mask.
    pub channel_mask: Option<u32>,
}

impl WavFormat {
    /// Bytes per frame (`nBlockAlign`).
    pub fn block_align(&self) -> u16 {
        self.channels.saturating_mul(self.bits_per_sample / 8)
    }

    fn validate(&self) -> Result<(), BwfError> {
        let unsupported = |reason: String| Err(BwfError::UnsupportedFormat(reason));
        match (self.float, self.bits_per_sample) {
            (false, 16 | 24 | 32) | (true, 32) => {}
            (false, b) => {
                return unsupported(format!("{b}-bit integer samples (use 16, 24 or 32)"));
            }
            (true, b) => return unsupported(format!("{b}-bit float samples (use 32)")),
        }
        if self.channels == 0 {
            return unsupported("0 channels".to_string());
        }
        if u32::from(self.channels) * u32::from(self.bits_per_sample / 8) > u32::from(u16::MAX) {
            return unsupported(format!("{} channels (too many)", self.channels));
        }
        if self.sample_rate == 0 {
            return unsupported("a sample rate of 0 Hz".to_string());
        }
        if u64::from(self.sample_rate) * u64::from(self.block_align()) > u64::from(u32::MAX) {
            return unsupported(format!(
                "a sample rate of {} Hz with {} channels (byte rate over 32 bits)",
                self.sample_rate, self.channels
            ));
        }
        Ok(())
    }

    /// The `fmt ` chunk body.
    fn fmt_body(&self) -> Vec<u8> {
        let extensible = self.channels > 2;
        let tag = match (extensible, self.float) {
            (true, _) => WAVE_FORMAT_EXTENSIBLE,
            (false, false) => WAVE_FORMAT_PCM,
            (false, true) => WAVE_FORMAT_IEEE_FLOAT,
        };
        let block_align = self.block_align();
        let mut b = Vec::with_capacity(40);
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&self.channels.to_le_bytes());
        b.extend_from_slice(&self.sample_rate.to_le_bytes());
        b.extend_from_slice(&(self.sample_rate * u32::from(block_align)).to_le_bytes());
        b.extend_from_slice(&block_align.to_le_bytes());
        b.extend_from_slice(&self.bits_per_sample.to_le_bytes());
        if extensible {
            let mask = self
                .channel_mask
                .unwrap_or_else(|| default_channel_mask(self.channels));
            let sub = if self.float {
                WAVE_FORMAT_IEEE_FLOAT
            } else {
                WAVE_FORMAT_PCM
            };
            b.extend_from_slice(&22u16.to_le_bytes()); // cbSize
            b.extend_from_slice(&self.bits_per_sample.to_le_bytes()); // wValidBitsPerSample
            b.extend_from_slice(&mask.to_le_bytes());
            b.extend_from_slice(&sub.to_le_bytes());
            b.extend_from_slice(&GUID_TAIL);
        } else if self.float {
            b.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        }
        b
    }
}

/// The `dwChannelMask` written for `channels` when [`WavFormat::channel_mask`] is `None`:
/// 3 → 0x7 (L R C), 4 → 0x33 (quad), 5 → 0x607 (5.0: FL FR FC SL SR),
/// 6 → 0x60F (5.1: FL FR FC LFE SL SR), 8 → 0x63F (7.1), otherwise 0 (unassigned).
pub fn default_channel_mask(channels: u16) -> u32 {
    match channels {
        3 => 0x7,
        4 => 0x33,
        5 => 0x607,
        6 => 0x60F,
        8 => 0x63F,
        _ => 0,
    }
}

/// EBU R128 loudness values of a `bext` version 2 chunk. `None` is "unknown" (code 0x7FFF).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BextLoudness {
    pub integrated_lufs: Option<f64>,
    pub loudness_range_lu: Option<f64>,
    pub max_true_peak_dbtp: Option<f64>,
    pub max_momentary_lufs: Option<f64>,
    pub max_short_term_lufs: Option<f64>,
}

impl BextLoudness {
    /// The five fields as written at [`BEXT_LOUDNESS_VALUE`]..[`BEXT_RESERVED`].
    fn encode(&self) -> [u8; 10] {
        let mut out = [0u8; 10];
        let values = [
            self.integrated_lufs,
            self.loudness_range_lu,
            self.max_true_peak_dbtp,
            self.max_momentary_lufs,
            self.max_short_term_lufs,
        ];
        for (dst, v) in out.chunks_exact_mut(2).zip(values) {
            dst.copy_from_slice(&encode_loudness(v).to_le_bytes());
        }
        out
    }
}

/// The contents of a `bext` chunk (EBU Tech 3285).
///
/// Text fields are ASCII in the file. When writing, non-ASCII characters are folded (common
/// Latin-1 accented letters to their base letter, `ß` to `ss`, anything else to `_`) and each
/// field is truncated to its size. When reading, text is trimmed of trailing NULs and spaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Bext {
    /// Free description, up to 256 characters.
    pub description: String,
    /// Name of the originator, up to 32 characters.
    pub originator: String,
    /// Unambiguous reference allocated by the originator, up to 32 characters.
    pub originator_reference: String,
    /// `yyyy-mm-dd`.
    pub origination_date: String,
    /// `hh:mm:ss`.
    pub origination_time: String,
    /// First sample's position in samples since midnight.
    pub time_reference: u64,
    /// The version read from a file. The writer always writes [`BEXT_WRITE_VERSION`] (2).
    pub version: u16,
    /// SMPTE UMID (zeros if none).
    pub umid: [u8; 64],
    /// Loudness values (always `None` when read from a version 0 or 1 chunk).
    pub loudness: BextLoudness,
    /// Coding history: lines terminated by CR LF. The writer converts bare LF line ends to
    /// CR LF, ensures a trailing CR LF when non-empty and, when the result has an odd length,
    /// adds one NUL so that the chunk size is even (readers drop trailing NULs).
    pub coding_history: String,
}

impl Default for Bext {
    fn default() -> Self {
        Bext {
            description: String::new(),
            originator: String::new(),
            originator_reference: String::new(),
            origination_date: String::new(),
            origination_time: String::new(),
            time_reference: 0,
            version: BEXT_WRITE_VERSION,
            umid: [0; 64],
            loudness: BextLoudness::default(),
            coding_history: String::new(),
        }
    }
}

impl Bext {
    /// The `bext` chunk body as written (version 2), without the pad byte.
    fn to_body(&self) -> Vec<u8> {
        let history = coding_history_bytes(&self.coding_history);
        // An odd-length history gets a terminating NUL inside the chunk so that the chunk is
        // even and needs no pad byte: hound 3.5 (and other lax readers) ignore pad bytes after
        // unknown chunks and would misread the rest of the file.
        let len = BEXT_FIXED_LEN + history.len();
        let mut b = vec![0u8; len + (len & 1)];
        put_text(
            &mut b,
            BEXT_DESCRIPTION,
            BEXT_DESCRIPTION_LEN,
            &self.description,
        );
        put_text(
            &mut b,
            BEXT_ORIGINATOR,
            BEXT_ORIGINATOR_LEN,
            &self.originator,
        );
        put_text(
            &mut b,
            BEXT_ORIGINATOR_REFERENCE,
            BEXT_ORIGINATOR_REFERENCE_LEN,
            &self.originator_reference,
        );
        put_text(
            &mut b,
            BEXT_ORIGINATION_DATE,
            BEXT_ORIGINATION_DATE_LEN,
            &self.origination_date,
        );
        put_text(
            &mut b,
            BEXT_ORIGINATION_TIME,
            BEXT_ORIGINATION_TIME_LEN,
            &self.origination_time,
        );
        b[BEXT_TIME_REFERENCE..BEXT_TIME_REFERENCE + 8]
            .copy_from_slice(&self.time_reference.to_le_bytes());
        b[BEXT_VERSION..BEXT_VERSION + 2].copy_from_slice(&BEXT_WRITE_VERSION.to_le_bytes());
        b[BEXT_UMID..BEXT_UMID + BEXT_UMID_LEN].copy_from_slice(&self.umid);
        b[BEXT_LOUDNESS_VALUE..BEXT_RESERVED].copy_from_slice(&self.loudness.encode());
        b[BEXT_CODING_HISTORY..BEXT_CODING_HISTORY + history.len()].copy_from_slice(&history);
        b
    }

    /// Parses a `bext` chunk body (versions 0, 1 and 2; later versions are read with the
    /// version 2 layout).
    fn from_body(body: &[u8]) -> Result<Bext, BwfError> {
        if body.len() < BEXT_FIXED_LEN {
            return Err(BwfError::BadBext(format!(
                "the chunk is {} bytes, shorter than the {BEXT_FIXED_LEN} bytes of its fixed fields",
                body.len()
            )));
        }
        let (fixed, history) = body.split_at(BEXT_FIXED_LEN);
        let text = |at: usize, len: usize| get_text(&fixed[at..at + len]);
        let le_u16 = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]);
        let le_i16 = |at: usize| i16::from_le_bytes([fixed[at], fixed[at + 1]]);

        let mut tr = [0u8; 8];
        tr.copy_from_slice(&fixed[BEXT_TIME_REFERENCE..BEXT_TIME_REFERENCE + 8]);
        let mut umid = [0u8; 64];
        umid.copy_from_slice(&fixed[BEXT_UMID..BEXT_UMID + BEXT_UMID_LEN]);
        let version = le_u16(BEXT_VERSION);
        let loudness = if version >= 2 {
            BextLoudness {
                integrated_lufs: decode_loudness(le_i16(BEXT_LOUDNESS_VALUE)),
                loudness_range_lu: decode_loudness(le_i16(BEXT_LOUDNESS_RANGE)),
                max_true_peak_dbtp: decode_loudness(le_i16(BEXT_MAX_TRUE_PEAK_LEVEL)),
                max_momentary_lufs: decode_loudness(le_i16(BEXT_MAX_MOMENTARY_LOUDNESS)),
                max_short_term_lufs: decode_loudness(le_i16(BEXT_MAX_SHORT_TERM_LOUDNESS)),
            }
        } else {
            BextLoudness::default()
        };
        let history_end = history
            .iter()
            .rposition(|&c| c != 0)
            .map_or(0, |last| last + 1);
        Ok(Bext {
            description: text(BEXT_DESCRIPTION, BEXT_DESCRIPTION_LEN),
            originator: text(BEXT_ORIGINATOR, BEXT_ORIGINATOR_LEN),
            originator_reference: text(BEXT_ORIGINATOR_REFERENCE, BEXT_ORIGINATOR_REFERENCE_LEN),
            origination_date: text(BEXT_ORIGINATION_DATE, BEXT_ORIGINATION_DATE_LEN),
            origination_time: text(BEXT_ORIGINATION_TIME, BEXT_ORIGINATION_TIME_LEN),
            time_reference: u64::from_le_bytes(tr),
            version,
            umid,
            loudness,
            coding_history: decode_text(&history[..history_end])
                .trim_end_matches([' ', '\0'])
                .to_string(),
        })
    }
}

/// Encodes a loudness value for `bext`: `round(v × 100)` clamped to −32768..=32766, or
/// 0x7FFF ("unknown") for `None` and NaN.
pub fn encode_loudness(v: Option<f64>) -> i16 {
    match v {
        Some(v) if !v.is_nan() => (v * 100.0).round().clamp(-32768.0, 32766.0) as i16,
        _ => LOUDNESS_UNKNOWN,
    }
}

/// Decodes a `bext` loudness code: 0x7FFF is `None`, anything else `code / 100`.
pub fn decode_loudness(v: i16) -> Option<f64> {
    (v != LOUDNESS_UNKNOWN).then(|| f64::from(v) / 100.0)
}

/// Folds one character to ASCII for a `bext` text field (see [`Bext`]).
fn fold_char(c: char, out: &mut String) {
    let folded = match c {
        ' '..='~' => {
            out.push(c);
            return;
        }
        'À'..='Å' => "A",
        'Æ' => "AE",
        'Ç' => "C",
        'È'..='Ë' => "E",
        'Ì'..='Ï' => "I",
        'Ð' => "D",
        'Ñ' => "N",
        'Ò'..='Ö' | 'Ø' => "O",
        'Ù'..='Ü' => "U",
        'Ý' | 'Ÿ' => "Y",
        'Þ' => "TH",
        'ß' => "ss",
        'à'..='å' => "a",
        'æ' => "ae",
        'ç' => "c",
        'è'..='ë' => "e",
        'ì'..='ï' => "i",
        'ð' => "d",
        'ñ' => "n",
        'ò'..='ö' | 'ø' => "o",
        'ù'..='ü' => "u",
        'ý' | 'ÿ' => "y",
        'þ' => "th",
        'Œ' => "OE",
        'œ' => "oe",
        'Š' => "S",
        'š' => "s",
        'Ž' => "Z",
        'ž' => "z",
        _ => "_",
    };
    out.push_str(folded);
}

/// `s` folded to printable ASCII (control characters, including NUL, become `_`).
fn fold_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        fold_char(c, &mut out);
    }
    out
}

/// Writes `s`, folded and truncated to `len` bytes, at `b[at..at + len]` (rest stays NUL).
fn put_text(b: &mut [u8], at: usize, len: usize, s: &str) {
    let folded = fold_ascii(s);
    let bytes = &folded.as_bytes()[..folded.len().min(len)];
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The coding history as written: folded to ASCII, every line ending in CR LF.
fn coding_history_bytes(s: &str) -> Vec<u8> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = String::with_capacity(s.len() + 2);
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        out.push_str(&fold_ascii(line.strip_suffix('\r').unwrap_or(line)));
        out.push_str("\r\n");
    }
    out.into_bytes()
}

/// Decodes a text field: up to the first NUL, trailing spaces trimmed. Bytes are taken as
/// UTF-8 when valid (some writers put UTF-8 there), else as Latin-1.
fn get_text(field: &[u8]) -> String {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    decode_text(&field[..end])
        .trim_end_matches([' ', '\0'])
        .to_string()
}

fn decode_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Where things are in a file written by [`BwfWriter`] (absolute offsets in the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// File offset of the `bext` chunk body.
    pub bext_offset: u64,
    /// File offset of the `data` chunk body.
    pub data_offset: u64,
    /// Size of the `data` body (without its pad byte).
    pub data_bytes: u64,
    /// Number of frames in `data`.
    pub frames: u64,
}

/// A streaming Broadcast WAV writer (see the module docs for the chunk layout).
///
/// Writes go straight to `inner`: wrap files in a [`std::io::BufWriter`]. Sizes are written as
/// 0 at first and patched by [`BwfWriter::finish`]; a file whose writer was dropped without
/// `finish` is incomplete.
#[derive(Debug)]
pub struct BwfWriter<W: Write + Seek> {
    inner: W,
    /// Stream position of `RIFF`.
    start: u64,
    /// Stream position of the `fact` body, for float formats.
    fact_pos: Option<u64>,
    bext_offset: u64,
    data_offset: u64,
    data_bytes: u64,
    block_align: u16,
    poisoned: bool,
}

impl<W: Write + Seek> BwfWriter<W> {
    /// Writes the headers (RIFF, JUNK, fmt, bext, fact, data) at the current position of
    /// `inner`. Errors on unsupported formats (see [`WavFormat`]). `bext.version` is ignored:
    /// version 2 is written.
    pub fn new(mut inner: W, format: &WavFormat, bext: &Bext) -> Result<Self, BwfError> {
        format.validate()?;
        let start = inner.stream_position()?;
        let mut head = Vec::with_capacity(1024);
        head.extend_from_slice(b"RIFF");
        head.extend_from_slice(&0u32.to_le_bytes());
        head.extend_from_slice(b"WAVE");
        push_chunk(&mut head, b"JUNK", &[0u8; JUNK_LEN])?;
        push_chunk(&mut head, b"fmt ", &format.fmt_body())?;
        let bext_offset = start + head.len() as u64 + 8;
        push_chunk(&mut head, b"bext", &bext.to_body())?;
        let fact_pos = if format.float {
            let pos = start + head.len() as u64 + 8;
            push_chunk(&mut head, b"fact", &0u32.to_le_bytes())?;
            Some(pos)
        } else {
            None
        };
        head.extend_from_slice(b"data");
        head.extend_from_slice(&0u32.to_le_bytes());
        let data_offset = start + head.len() as u64;
        inner.write_all(&head)?;
        Ok(BwfWriter {
            inner,
            start,
            fact_pos,
            bext_offset,
            data_offset,
            data_bytes: 0,
            block_align: format.block_align(),
            poisoned: false,
        })
    }

    /// Appends interleaved little-endian sample bytes exactly as they go into `data`. Frames
    /// may be split across calls. Errors if the file would exceed the 4 GiB RIFF limit.
    pub fn write_samples(&mut self, bytes: &[u8]) -> Result<(), BwfError> {
        if self.poisoned {
            return Err(BwfError::Poisoned);
        }
        let total = self.data_bytes + bytes.len() as u64;
        if self.riff_size(total) > u64::from(u32::MAX) {
            return Err(BwfError::TooLarge { bytes: total });
        }
        if let Err(e) = self.inner.write_all(bytes) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.data_bytes = total;
        Ok(())
    }

    /// The RIFF size field for a data chunk of `data_bytes` (with its pad byte).
    fn riff_size(&self, data_bytes: u64) -> u64 {
        (self.data_offset - self.start - 8) + data_bytes + (data_bytes & 1)
    }

    /// Pads the data chunk if odd, patches the RIFF size, the data size and (float) the `fact`
    /// frame count, leaves `inner` positioned at the end of the file and flushes it.
    pub fn finish(mut self) -> Result<(W, Layout), BwfError> {
        if self.poisoned {
            return Err(BwfError::Poisoned);
        }
        let block_align = self.block_align;
        if !self.data_bytes.is_multiple_of(u64::from(block_align)) {
            return Err(BwfError::PartialFrame {
                bytes: self.data_bytes,
                block_align,
            });
        }
        let frames = self.data_bytes / u64::from(block_align);
        let too_large = || BwfError::TooLarge {
            bytes: self.data_bytes,
        };
        let riff_size = u32::try_from(self.riff_size(self.data_bytes)).map_err(|_| too_large())?;
        let data_size = u32::try_from(self.data_bytes).map_err(|_| too_large())?;
        let fact_frames = u32::try_from(frames).map_err(|_| too_large())?;

        let w = &mut self.inner;
        if self.data_bytes & 1 == 1 {
            w.write_all(&[0])?;
        }
        let end = w.stream_position()?;
        w.seek(SeekFrom::Start(self.start + 4))?;
        w.write_all(&riff_size.to_le_bytes())?;
        w.seek(SeekFrom::Start(self.data_offset - 4))?;
        w.write_all(&data_size.to_le_bytes())?;
        if let Some(pos) = self.fact_pos {
            w.seek(SeekFrom::Start(pos))?;
            w.write_all(&fact_frames.to_le_bytes())?;
        }
        w.seek(SeekFrom::Start(end))?;
        w.flush()?;
        let layout = Layout {
            bext_offset: self.bext_offset,
            data_offset: self.data_offset,
            data_bytes: self.data_bytes,
            frames,
        };
        Ok((self.inner, layout))
    }
}

/// Appends a chunk (header, body, pad byte if odd) to `out`.
fn push_chunk(out: &mut Vec<u8>, id: &[u8; 4], body: &[u8]) -> Result<(), BwfError> {
    let size = u32::try_from(body.len()).map_err(|_| BwfError::TooLarge {
        bytes: body.len() as u64,
    })?;
    out.extend_from_slice(id);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
    Ok(())
}

/// Overwrites the five loudness fields of an already written `bext` (at
/// `bext_offset + 412`), e.g. after measuring the file. `bext_offset` is the file offset of
/// the `bext` body ([`Layout::bext_offset`] or [`Chunk::offset`]); it is not checked. The
/// stream position is restored afterwards.
pub fn patch_loudness<F: Write + Seek>(
    f: &mut F,
    bext_offset: u64,
    l: &BextLoudness,
) -> Result<(), BwfError> {
    let pos = f.stream_position()?;
    f.seek(SeekFrom::Start(bext_offset + BEXT_LOUDNESS_VALUE as u64))?;
    f.write_all(&l.encode())?;
    f.seek(SeekFrom::Start(pos))?;
    f.flush()?;
    Ok(())
}

/// Replaces the whole `bext` body of an already written file with `bext`
/// (loudness fields included), in place: the new body must be exactly as
/// long as the old one, so no other chunk moves and the `data` chunk is
/// untouched. Used to re-label a file made by an earlier job (its names,
/// origination, reference) without rewriting its audio.
pub fn rewrite_bext<F: Read + Write + Seek>(f: &mut F, bext: &Bext) -> Result<(), BwfError> {
    let chunks = read_chunks(f)?;
    let Some(c) = chunks.iter().find(|c| &c.id == b"bext") else {
        return Err(BwfError::UnsupportedFormat(
            "the file has no bext chunk to rewrite".into(),
        ));
    };
    let body = bext.to_body();
    if body.len() as u64 != c.size {
        return Err(BwfError::UnsupportedFormat(format!(
            "the new bext is {} bytes, the file's {}: it cannot be rewritten in place",
            body.len(),
            c.size
        )));
    }
    f.seek(SeekFrom::Start(c.offset))?;
    f.write_all(&body)?;
    f.flush()?;
    Ok(())
}

/// A top-level chunk of a RIFF/WAVE file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The four-character code, e.g. `*b"fmt "`.
    pub id: [u8; 4],
    /// File offset of the chunk body.
    pub offset: u64,
    /// Size of the body as declared (without the pad byte).
    pub size: u64,
}

/// A four-character code for messages (non-printable bytes escaped).
fn fourcc(id: &[u8]) -> String {
    id.escape_ascii().to_string()
}

/// Reads exactly `buf.len()` bytes; an early end of file becomes [`BwfError::Truncated`].
fn read_header<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<(), BwfError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            BwfError::Truncated(format!("the file ends inside {what}"))
        } else {
            BwfError::Io(e)
        }
    })
}

/// Lists the top-level chunks of a RIFF/WAVE file, from the start of the stream.
///
/// Errors on non-RIFF/WAVE input (RF64 included), on a file that ends inside a chunk header,
/// and on a chunk whose declared size runs past the end of the file (the error names it).
/// Listing stops at the end of the RIFF chunk as declared, or at the end of the file if that
/// comes first. A missing pad byte after a final odd-sized chunk is tolerated.
pub fn read_chunks<R: Read + Seek>(r: &mut R) -> Result<Vec<Chunk>, BwfError> {
    let file_len = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 12];
    let got = read_up_to(r, &mut head)?;
    if got >= 4 && &head[..4] == b"RF64" {
        return Err(BwfError::Rf64);
    }
    if got < 4 || &head[..4] != b"RIFF" {
        return Err(BwfError::NotWave {
            found: format!("\"{}\"", fourcc(&head[..got.min(4)])),
        });
    }
    if got == 12 && &head[8..12] != b"WAVE" {
        return Err(BwfError::NotWave {
            found: format!("RIFF form type \"{}\"", fourcc(&head[8..12])),
        });
    }
    if got < 12 {
        return Err(BwfError::Truncated(
            "the file ends inside the RIFF header".to_string(),
        ));
    }
    let riff_size = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
    if riff_size < 4 {
        return Err(BwfError::Corrupt(format!(
            "the RIFF header declares {riff_size} bytes (less than its 'WAVE' form type)"
        )));
    }
    let end = (8 + riff_size).min(file_len);

    let mut chunks = Vec::new();
    let mut pos = 12u64;
    while pos < end {
        if end - pos < 8 {
            return Err(BwfError::Truncated(format!(
                "the file ends inside a chunk header at offset {pos}"
            )));
        }
        r.seek(SeekFrom::Start(pos))?;
        let mut h = [0u8; 8];
        read_header(r, &mut h, &format!("a chunk header at offset {pos}"))?;
        let id = [h[0], h[1], h[2], h[3]];
        let size = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
        let offset = pos + 8;
        let available = file_len - offset;
        if size > available {
            return Err(BwfError::ChunkPastEof {
                id: fourcc(&id),
                offset: pos,
                size,
                available,
            });
        }
        chunks.push(Chunk { id, offset, size });
        pos = offset + size + (size & 1);
    }
    Ok(chunks)
}

/// Reads until `buf` is full or the end of the stream; returns the bytes read.
fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, BwfError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

/// The `bext` chunk of a RIFF/WAVE stream, if any (the first one if there are several).
fn read_bext_from<R: Read + Seek>(r: &mut R) -> Result<Option<Bext>, BwfError> {
    let chunks = read_chunks(r)?;
    let Some(chunk) = chunks.iter().find(|c| &c.id == b"bext") else {
        return Ok(None);
    };
    if chunk.size > MAX_BEXT_LEN {
        return Err(BwfError::BadBext(format!(
            "the chunk is {} bytes (implausibly large)",
            chunk.size
        )));
    }
    r.seek(SeekFrom::Start(chunk.offset))?;
    let mut body = Vec::new();
    r.by_ref().take(chunk.size).read_to_end(&mut body)?;
    if (body.len() as u64) < chunk.size {
        return Err(BwfError::Truncated(
            "the file ends inside the bext chunk".into(),
        ));
    }
    Bext::from_body(&body).map(Some)
}

/// The `bext` chunk of any WAV/BWF file, if it has one (versions 0, 1, 2; for v0/v1 the
/// loudness fields are `None`). Text fields are trimmed of trailing NULs and spaces.
pub fn read_bext(path: &Path) -> Result<Option<Bext>, BwfError> {
    let file = File::open(path).map_err(|source| BwfError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_bext_from(&mut BufReader::new(file)).map_err(|e| match e {
        BwfError::NotWave { .. } => BwfError::NotWaveFile {
            path: path.to_path_buf(),
        },
        other => BwfError::InFile {
            path: path.to_path_buf(),
            source: Box::new(other),
        },
    })
}

/// The `TimeReference` of a stem (samples since midnight), `None` when it has no `bext`.
pub fn bext_time_reference(path: &Path) -> Result<Option<u64>, BwfError> {
    Ok(read_bext(path)?.map(|b| b.time_reference))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn sample_bext() -> Bext {
        let mut umid = [0u8; 64];
        for (i, b) in umid.iter_mut().enumerate() {
            *b = i as u8 * 3 + 1;
        }
        Bext {
            description: "Stem: drums, mastered".to_string(),
            originator: "stemforge".to_string(),
            originator_reference: "SF-0001-drums".to_string(),
            origination_date: "2024-05-17".to_string(),
            origination_time: "13:45:09".to_string(),
            time_reference: 0x1_2345_6789,
            version: 2,
            umid,
            loudness: BextLoudness {
                integrated_lufs: Some(-23.04),
                loudness_range_lu: Some(7.5),
                max_true_peak_dbtp: Some(-1.0),
                max_momentary_lufs: None,
                max_short_term_lufs: Some(-18.26),
            },
            coding_history: "A=PCM,F=48000,W=24,M=stereo,T=stemforge\r\n".to_string(),
        }
    }

    fn fmt(channels: u16, bits: u16, float: bool) -> WavFormat {
        WavFormat {
            sample_rate: 48_000,
            channels,
            bits_per_sample: bits,
            float,
            channel_mask: None,
        }
    }

    /// Writes a file in memory with `frames` frames of a byte ramp.
    fn write_mem(format: &WavFormat, bext: &Bext, frames: usize) -> (Vec<u8>, Layout, Vec<u8>) {
        let data: Vec<u8> = (0..frames * usize::from(format.block_align()))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut w = BwfWriter::new(Cursor::new(Vec::new()), format, bext).expect("new");
        // Split across calls, including mid-frame.
        let (a, b) = data.split_at(data.len() / 3 + 1);
        w.write_samples(a).expect("write a");
        w.write_samples(b).expect("write b");
        let (cur, layout) = w.finish().expect("finish");
        (cur.into_inner(), layout, data)
    }

    fn bext_body(file: &[u8]) -> (Chunk, Vec<u8>) {
        let chunks = read_chunks(&mut Cursor::new(file)).expect("chunks");
        let c = chunks
            .into_iter()
            .find(|c| &c.id == b"bext")
            .expect("bext chunk");
        let body = file[c.offset as usize..(c.offset + c.size) as usize].to_vec();
        (c, body)
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
    }

    #[test]
    fn round_trip_all_fields() {
        let bext = sample_bext();
        let (file, _, _) = write_mem(&fmt(2, 24, false), &bext, 100);
        let back = read_bext_from(&mut Cursor::new(&file))
            .expect("read")
            .expect("has bext");
        assert_eq!(back, bext);
        assert_eq!(back.loudness.max_momentary_lufs, None);
        assert_eq!(back.loudness.integrated_lufs, Some(-23.04));
        assert_eq!(back.time_reference, 0x1_2345_6789);
    }

    #[test]
    fn loudness_codes() {
        assert_eq!(encode_loudness(None), 0x7FFF);
        assert_eq!(encode_loudness(Some(f64::NAN)), 0x7FFF);
        assert_eq!(encode_loudness(Some(-23.04)), -2304);
        assert_eq!(encode_loudness(Some(-23.045)), -2305);
        assert_eq!(encode_loudness(Some(0.0)), 0);
        assert_eq!(encode_loudness(Some(327.67)), 32766);
        assert_eq!(encode_loudness(Some(1e9)), 32766);
        assert_eq!(encode_loudness(Some(f64::INFINITY)), 32766);
        assert_eq!(encode_loudness(Some(-1e9)), -32768);
        assert_eq!(encode_loudness(Some(f64::NEG_INFINITY)), -32768);
        assert_eq!(decode_loudness(0x7FFF), None);
        assert_eq!(decode_loudness(-2304), Some(-23.04));
        assert_eq!(decode_loudness(-32768), Some(-327.68));
        assert_eq!(decode_loudness(32766), Some(327.66));
    }

    #[test]
    fn exact_field_offsets() {
        let bext = sample_bext();
        let (file, layout, _) = write_mem(&fmt(2, 16, false), &bext, 10);
        let (chunk, body) = bext_body(&file);
        assert_eq!(chunk.offset, layout.bext_offset);
        assert_eq!(
            &file[chunk.offset as usize - 8..chunk.offset as usize - 4],
            b"bext"
        );
        // The sample history is 41 bytes: one NUL makes the chunk even.
        assert_eq!(bext.coding_history.len(), 41);
        assert_eq!(chunk.size as usize, BEXT_FIXED_LEN + 42);

        assert_eq!(&body[0..21], b"Stem: drums, mastered");
        assert!(body[21..256].iter().all(|&b| b == 0));
        assert_eq!(&body[256..265], b"stemforge");
        assert!(body[265..288].iter().all(|&b| b == 0));
        assert_eq!(&body[288..301], b"SF-0001-drums");
        assert_eq!(&body[320..330], b"2024-05-17");
        assert_eq!(&body[330..338], b"13:45:09");
        // TimeReference: low u32 then high u32.
        assert_eq!(u32_at(&body, 338), 0x2345_6789);
        assert_eq!(u32_at(&body, 342), 0x1);
        assert_eq!(u16_at(&body, 346), 2);
        assert_eq!(&body[348..412], &bext.umid[..]);
        assert_eq!(u16_at(&body, 412) as i16, -2304);
        assert_eq!(u16_at(&body, 414) as i16, 750);
        assert_eq!(u16_at(&body, 416) as i16, -100);
        assert_eq!(u16_at(&body, 418), 0x7FFF);
        assert_eq!(u16_at(&body, 420) as i16, -1826);
        assert!(body[422..602].iter().all(|&b| b == 0));
        assert_eq!(&body[602..643], bext.coding_history.as_bytes());
        assert_eq!(body[643], 0);
    }

    #[test]
    fn chunk_order_and_headers() {
        for (format, float) in [
            (fmt(1, 16, false), false),
            (fmt(2, 24, false), false),
            (fmt(2, 32, false), false),
            (fmt(2, 32, true), true),
            (fmt(6, 24, false), false),
            (fmt(6, 32, true), true),
        ] {
            let (file, layout, data) = write_mem(&format, &sample_bext(), 33);
            let chunks = read_chunks(&mut Cursor::new(&file)).expect("chunks");
            let ids: Vec<&[u8; 4]> = chunks.iter().map(|c| &c.id).collect();
            if float {
                assert_eq!(ids, [b"JUNK", b"fmt ", b"bext", b"fact", b"data"]);
            } else {
                assert_eq!(ids, [b"JUNK", b"fmt ", b"bext", b"data"]);
            }
            assert_eq!(chunks[0].offset, 20);
            assert_eq!(chunks[0].size, JUNK_LEN as u64);
            assert!(file[20..48].iter().all(|&b| b == 0));
            assert_eq!(&file[..4], b"RIFF");
            assert_eq!(u32_at(&file, 4) as usize, file.len() - 8);
            assert_eq!(&file[8..12], b"WAVE");

            let fmt_c = &chunks[1];
            let f = &file[fmt_c.offset as usize..];
            let ba = format.block_align();
            let tag = u16_at(f, 0);
            match (format.channels > 2, float) {
                (true, _) => {
                    assert_eq!(fmt_c.size, 40);
                    assert_eq!(tag, 0xFFFE);
                    assert_eq!(u16_at(f, 16), 22);
                    assert_eq!(u16_at(f, 18), format.bits_per_sample);
                    assert_eq!(u32_at(f, 20), 0x60F);
                    assert_eq!(u16_at(f, 24), if float { 3 } else { 1 });
                    assert_eq!(&f[26..40], &GUID_TAIL);
                }
                (false, false) => {
                    assert_eq!(fmt_c.size, 16);
                    assert_eq!(tag, 1);
                }
                (false, true) => {
                    assert_eq!(fmt_c.size, 18);
                    assert_eq!(tag, 3);
                    assert_eq!(u16_at(f, 16), 0);
                }
            }
            assert_eq!(u16_at(f, 2), format.channels);
            assert_eq!(u32_at(f, 4), 48_000);
            assert_eq!(u32_at(f, 8), 48_000 * u32::from(ba));
            assert_eq!(u16_at(f, 12), ba);
            assert_eq!(u16_at(f, 14), format.bits_per_sample);

            if float {
                assert_eq!(chunks[3].size, 4);
                assert_eq!(u32_at(&file, chunks[3].offset as usize), 33);
            }
            let d = chunks.last().expect("data");
            assert_eq!(d.offset, layout.data_offset);
            assert_eq!(d.size, layout.data_bytes);
            assert_eq!(layout.frames, 33);
            assert_eq!(
                &file[d.offset as usize..(d.offset + d.size) as usize],
                &data[..]
            );
        }
    }

    #[test]
    fn channel_masks() {
        for (ch, mask) in [
            (3, 0x7),
            (4, 0x33),
            (5, 0x607),
            (6, 0x60F),
            (8, 0x63F),
            (7, 0),
        ] {
            assert_eq!(default_channel_mask(ch), mask);
            let (file, _, _) = write_mem(&fmt(ch, 16, false), &Bext::default(), 2);
            let chunks = read_chunks(&mut Cursor::new(&file)).expect("chunks");
            assert_eq!(u32_at(&file, chunks[1].offset as usize + 20), mask);
        }
        let mut f = fmt(6, 24, false);
        f.channel_mask = Some(0x3F);
        let (file, _, _) = write_mem(&f, &Bext::default(), 2);
        let chunks = read_chunks(&mut Cursor::new(&file)).expect("chunks");
        assert_eq!(u32_at(&file, chunks[1].offset as usize + 20), 0x3F);
    }

    #[test]
    fn unsupported_formats_error() {
        for f in [
            fmt(2, 8, false),
            fmt(2, 20, false),
            fmt(2, 64, true),
            fmt(2, 16, true),
            fmt(0, 16, false),
            WavFormat {
                sample_rate: 0,
                ..fmt(2, 16, false)
            },
        ] {
            let err = BwfWriter::new(Cursor::new(Vec::new()), &f, &Bext::default())
                .expect_err("must fail");
            assert!(matches!(err, BwfError::UnsupportedFormat(_)), "{err}");
        }
    }

    #[test]
    fn odd_coding_history_gets_a_nul() {
        let bext = Bext {
            coding_history: "A=PCM,F=48000\r\nA=PCM,F=4800".to_string(), // odd once CRLF added
            ..sample_bext()
        };
        let (file, layout, data) = write_mem(&fmt(2, 24, false), &bext, 5);
        let (chunk, body) = bext_body(&file);
        // 29 bytes of history + a NUL: the chunk is even, so no pad byte follows it.
        assert_eq!(chunk.size, 602 + 30);
        assert_eq!(&body[602..], b"A=PCM,F=48000\r\nA=PCM,F=4800\r\n\0");
        let next = (chunk.offset + chunk.size) as usize;
        assert_eq!(&file[next..next + 4], b"data");
        assert_eq!(layout.data_offset as usize, next + 8);
        let back = read_bext_from(&mut Cursor::new(&file))
            .expect("read")
            .expect("bext");
        assert_eq!(back.coding_history, "A=PCM,F=48000\r\nA=PCM,F=4800\r\n");
        assert_eq!(
            &file[layout.data_offset as usize..][..data.len()],
            &data[..]
        );
        // An even history is written as is.
        let bext = Bext {
            coding_history: "A=PCM,F=48000\r\nA=PCM,F=480".to_string(),
            ..sample_bext()
        };
        let (file, _, _) = write_mem(&fmt(2, 24, false), &bext, 5);
        assert_eq!(bext_body(&file).0.size, 602 + 28);
    }

    /// Odd chunk bodies are followed by a pad byte (written by `push_chunk`, skipped by the
    /// readers), e.g. an odd `bext` written by another tool.
    #[test]
    fn odd_chunks_are_padded() {
        let mut body = Bext::default().to_body();
        body.extend_from_slice(b"A=PCM\r\n\0\0"); // 602 + 9 = odd
        let mut riff = b"WAVE".to_vec();
        push_chunk(&mut riff, b"fmt ", &fmt(2, 16, false).fmt_body()).expect("fmt");
        push_chunk(&mut riff, b"bext", &body).expect("bext");
        push_chunk(&mut riff, b"data", &[1, 2, 3, 4]).expect("data");
        push_chunk(&mut riff, b"odd ", &[9]).expect("odd");
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&(riff.len() as u32).to_le_bytes());
        file.extend_from_slice(&riff);
        assert_eq!(file.len() % 2, 0);

        let chunks = read_chunks(&mut Cursor::new(&file)).expect("chunks");
        let ids: Vec<&[u8; 4]> = chunks.iter().map(|c| &c.id).collect();
        assert_eq!(ids, [b"fmt ", b"bext", b"data", b"odd "]);
        let bext = &chunks[1];
        assert_eq!(bext.size, 611);
        assert_eq!(file[(bext.offset + bext.size) as usize], 0, "pad byte");
        assert_eq!(chunks[2].offset, bext.offset + 612 + 8);
        assert_eq!(&file[chunks[2].offset as usize..][..4], &[1, 2, 3, 4]);
        assert_eq!(
            (chunks[3].offset, chunks[3].size),
            (file.len() as u64 - 2, 1)
        );
        let back = read_bext_from(&mut Cursor::new(&file))
            .expect("read")
            .expect("bext");
        assert_eq!(back.coding_history, "A=PCM\r\n");
    }

    #[test]
    fn coding_history_line_ends() {
        assert_eq!(coding_history_bytes(""), b"");
        assert_eq!(coding_history_bytes("a"), b"a\r\n");
        assert_eq!(coding_history_bytes("a\nb\n"), b"a\r\nb\r\n");
        assert_eq!(coding_history_bytes("a\r\nb"), b"a\r\nb\r\n");
        assert_eq!(coding_history_bytes("é\r\n"), b"e\r\n");
    }

    #[test]
    fn odd_data_is_padded() {
        // Mono 24-bit, 3 frames = 9 bytes: odd.
        let (file, layout, _) = write_mem(&fmt(1, 24, false), &Bext::default(), 3);
        assert_eq!(layout.data_bytes, 9);
        assert_eq!(file.len() as u64, layout.data_offset + 10);
        assert_eq!(file[file.len() - 1], 0);
        assert_eq!(u32_at(&file, 4) as usize, file.len() - 8);
        let chunks = read_chunks(&mut Cursor::new(&file)).expect("chunks");
        assert_eq!(chunks.last().map(|c| c.size), Some(9));
    }

    #[test]
    fn partial_frame_is_an_error() {
        let mut w = BwfWriter::new(
            Cursor::new(Vec::new()),
            &fmt(2, 16, false),
            &Bext::default(),
        )
        .expect("new");
        w.write_samples(&[1, 2, 3]).expect("write");
        let err = w.finish().expect_err("partial frame");
        assert!(
            matches!(
                err,
                BwfError::PartialFrame {
                    bytes: 3,
                    block_align: 4
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn over_4_gib_is_refused() {
        let mut w = BwfWriter::new(
            Cursor::new(Vec::new()),
            &fmt(2, 16, false),
            &Bext::default(),
        )
        .expect("new");
        let header = w.data_offset - w.start - 8;
        // Pretend almost 4 GiB were written already.
        // u32::MAX is odd and the header even: the largest data chunk is u32::MAX - header - 1
        // bytes (the RIFF size then counts no pad byte).
        w.data_bytes = u64::from(u32::MAX) - header - 5;
        w.write_samples(&[0; 4]).expect("exactly at the limit");
        assert_eq!(w.riff_size(w.data_bytes), u64::from(u32::MAX) - 1);
        let err = w
            .write_samples(&[0; 1])
            .expect_err("one byte (plus pad) over the limit");
        assert!(
            err.to_string().contains("RF64 is not supported yet"),
            "{err}"
        );
        assert!(matches!(err, BwfError::TooLarge { .. }));
    }

    #[test]
    fn patch_loudness_changes_only_its_bytes() {
        let (file, layout, _) = write_mem(&fmt(2, 24, false), &sample_bext(), 20);
        let mut cur = Cursor::new(file.clone());
        cur.seek(SeekFrom::Start(7)).expect("seek");
        let l = BextLoudness {
            integrated_lufs: Some(-16.0),
            loudness_range_lu: None,
            max_true_peak_dbtp: Some(-0.98),
            max_momentary_lufs: Some(-9.5),
            max_short_term_lufs: Some(-12.01),
        };
        patch_loudness(&mut cur, layout.bext_offset, &l).expect("patch");
        assert_eq!(cur.position(), 7, "position restored");
        let patched = cur.into_inner();
        assert_eq!(patched.len(), file.len());
        let lo = layout.bext_offset as usize + 412;
        let hi = layout.bext_offset as usize + 422;
        assert_eq!(&patched[..lo], &file[..lo]);
        assert_eq!(&patched[hi..], &file[hi..]);
        assert_ne!(&patched[lo..hi], &file[lo..hi]);
        let back = read_bext_from(&mut Cursor::new(&patched))
            .expect("read")
            .expect("bext");
        assert_eq!(back.loudness, l);
        assert_eq!(
            Bext {
                loudness: sample_bext().loudness,
                ..back
            },
            sample_bext()
        );
    }

    #[test]
    fn text_folding_and_truncation() {
        assert_eq!(fold_ascii("Café Müller Straße"), "Cafe Muller Strasse");
        assert_eq!(
            fold_ascii("ÀÉÎÕÜÇÑØÆ àéîõüçñøæ ÿ"),
            "AEIOUCNOAE aeioucnoae y"
        );
        assert_eq!(fold_ascii("日本 – ok\t\0"), "__ _ ok__");
        let bext = Bext {
            description: "é".repeat(300),
            originator: "Ünïcödé Örigïnätör with a long name".to_string(),
            originator_reference: "ß".repeat(20),
            origination_date: "2024-05-17T00".to_string(),
            origination_time: "12:34:56.789".to_string(),
            ..Bext::default()
        };
        let (file, _, _) = write_mem(&fmt(2, 16, false), &bext, 1);
        let (_, body) = bext_body(&file);
        assert!(body[..BEXT_TIME_REFERENCE].iter().all(|b| b.is_ascii()));
        assert_eq!(&body[0..256], "e".repeat(256).as_bytes());
        let back = read_bext_from(&mut Cursor::new(&file))
            .expect("read")
            .expect("bext");
        assert_eq!(back.description, "e".repeat(256));
        assert_eq!(back.originator, "Unicode Originator with a long n");
        assert_eq!(back.originator_reference, "s".repeat(32));
        assert_eq!(back.origination_date, "2024-05-17");
        assert_eq!(back.origination_time, "12:34:56");
    }

    #[test]
    fn reading_trims_and_decodes() {
        let mut body = vec![0u8; 602];
        body[..6].copy_from_slice(b"abc   ");
        body[256..260].copy_from_slice(b"x\0yz");
        body[288] = 0xE9; // Latin-1 é
        body.extend_from_slice(b"A=PCM\r\n\0\0");
        let b = Bext::from_body(&body).expect("parse");
        assert_eq!(b.description, "abc");
        assert_eq!(b.originator, "x");
        assert_eq!(b.originator_reference, "é");
        assert_eq!(b.version, 0);
        assert_eq!(b.coding_history, "A=PCM\r\n");
    }

    #[test]
    fn version_0_and_1_have_no_loudness() {
        let (file, layout, _) = write_mem(&fmt(2, 16, false), &sample_bext(), 4);
        for version in [0u16, 1] {
            let mut f = file.clone();
            let at = layout.bext_offset as usize + BEXT_VERSION;
            f[at..at + 2].copy_from_slice(&version.to_le_bytes());
            let b = read_bext_from(&mut Cursor::new(&f))
                .expect("read")
                .expect("bext");
            assert_eq!(b.version, version);
            assert_eq!(b.loudness, BextLoudness::default());
            assert_eq!(b.description, sample_bext().description);
        }
    }

    fn temp_path(test: &str) -> PathBuf {
        std::env::temp_dir().join(format!("stemforge-bwf-{}-{test}.wav", std::process::id()))
    }

    #[test]
    fn read_bext_without_bext_is_none() {
        let path = temp_path("no-bext");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        for i in 0..10i16 {
            w.write_sample(i).expect("sample");
        }
        w.finalize().expect("finalize");
        let got = read_bext(&path);
        let tr = bext_time_reference(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(got.expect("read"), None);
        assert_eq!(tr.expect("read"), None);
    }

    #[test]
    fn read_bext_from_file() {
        let path = temp_path("with-bext");
        let file = io::BufWriter::new(File::create(&path).expect("create"));
        let mut w = BwfWriter::new(file, &fmt(2, 24, false), &sample_bext()).expect("new");
        w.write_samples(&[0; 60]).expect("write");
        w.finish().expect("finish");
        let got = read_bext(&path);
        let tr = bext_time_reference(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(got.expect("read"), Some(sample_bext()));
        assert_eq!(tr.expect("tr"), Some(0x1_2345_6789));
    }

    #[test]
    fn read_bext_errors_name_the_file() {
        let path = temp_path("not-wave");
        std::fs::write(&path, b"fLaC\0\0\0\x22 not a wav file at all").expect("write");
        let err = read_bext(&path).expect_err("not wave");
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            err.to_string(),
            format!("'{}' is not a RIFF/WAVE file", path.display())
        );

        let missing = temp_path("missing");
        let err = read_bext(&missing).expect_err("missing");
        assert!(matches!(err, BwfError::Open { .. }), "{err}");
        assert!(err.to_string().contains("cannot open"), "{err}");

        let path = temp_path("truncated");
        let (file, layout, _) = write_mem(&fmt(2, 24, false), &sample_bext(), 100);
        std::fs::write(&path, &file[..layout.data_offset as usize + 10]).expect("write");
        let err = read_bext(&path).expect_err("truncated");
        let _ = std::fs::remove_file(&path);
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("chunk 'data'"), "{msg}");
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let wrong = |bytes: &[u8]| read_chunks(&mut Cursor::new(bytes)).expect_err("must fail");
        assert!(matches!(wrong(b""), BwfError::NotWave { .. }));
        assert!(matches!(wrong(b"RIF"), BwfError::NotWave { .. }));
        assert!(matches!(wrong(b"RIFF\x10\0"), BwfError::Truncated(_)));
        assert!(matches!(
            wrong(b"RIFX\x04\0\0\0WAVE"),
            BwfError::NotWave { .. }
        ));
        assert!(matches!(
            wrong(b"RIFF\x04\0\0\0AVI "),
            BwfError::NotWave { .. }
        ));
        assert!(matches!(wrong(b"RIFF\0\0\0\0WAVE"), BwfError::Corrupt(_)));
        assert!(matches!(wrong(b"RF64\xff\xff\xff\xffWAVE"), BwfError::Rf64));
        // A chunk header cut short.
        let err = wrong(b"RIFF\x10\0\0\0WAVEJUNK\x04");
        assert!(matches!(err, BwfError::Truncated(_)), "{err}");
        // A chunk whose size runs past the end.
        let err = wrong(b"RIFF\x20\0\0\0WAVEdata\xff\0\0\0abcd");
        assert!(
            matches!(&err, BwfError::ChunkPastEof { id, size: 255, available: 4, .. } if id == "data"),
            "{err}"
        );
        assert!(err.to_string().contains("'data'"), "{err}");
        // An empty RIFF/WAVE is fine (no chunks).
        assert_eq!(
            read_chunks(&mut Cursor::new(b"RIFF\x04\0\0\0WAVE")).expect("ok"),
            Vec::new()
        );
        // The final pad byte may be missing.
        let chunks = read_chunks(&mut Cursor::new(b"RIFF\x10\0\0\0WAVEdata\x03\0\0\0abc"))
            .expect("missing pad tolerated");
        assert_eq!(chunks.len(), 1);
        // Short bext.
        let mut f = b"RIFF\x1c\0\0\0WAVEbext\x10\0\0\0".to_vec();
        f.extend_from_slice(&[0; 16]);
        let err = read_bext_from(&mut Cursor::new(&f)).expect_err("short bext");
        assert!(matches!(err, BwfError::BadBext(_)), "{err}");
    }

    #[test]
    fn riff_size_bounds_the_listing() {
        let (mut file, _, _) = write_mem(&fmt(2, 16, false), &sample_bext(), 4);
        let len = file.len();
        // Trailing garbage after the RIFF chunk is ignored.
        file.extend_from_slice(b"garbage!garbage!");
        let chunks = read_chunks(&mut Cursor::new(&file)).expect("chunks");
        assert_eq!(chunks.len(), 4);
        // A RIFF size larger than the file (unpatched/streamed) is bounded by the file.
        file.truncate(len);
        file[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            read_chunks(&mut Cursor::new(&file)).expect("chunks").len(),
            4
        );
    }

    /// Every truncation and many byte corruptions of a valid file: errors or Ok, never panics.
    #[test]
    fn corrupt_input_never_panics() {
        let (file, _, _) = write_mem(&fmt(6, 32, true), &sample_bext(), 7);
        for len in 0..file.len() {
            let cut = &file[..len];
            let chunks = read_chunks(&mut Cursor::new(cut));
            let bext = read_bext_from(&mut Cursor::new(cut));
            if len < 12 {
                assert!(chunks.is_err() && bext.is_err(), "len {len}");
            }
            // The data chunk (at the end) is always cut: an error, or (cut at a chunk
            // boundary) a listing without it.
            if let Ok(chunks) = &chunks {
                assert!(chunks.iter().all(|c| &c.id != b"data"), "len {len}");
            }
        }
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let head = file.len().min(1000);
        for _ in 0..5000 {
            let mut f = file.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % head as u64) as usize;
                f[at] = next() as u8;
            }
            let _ = read_chunks(&mut Cursor::new(&f));
            let _ = read_bext_from(&mut Cursor::new(&f));
        }
        // Sizes set to extremes.
        for v in [0u32, 1, 601, 602, 603, u32::MAX, u32::MAX - 1] {
            let mut f = file.clone();
            let (c, _) = bext_body(&file);
            let at = c.offset as usize - 4;
            f[at..at + 4].copy_from_slice(&v.to_le_bytes());
            let _ = read_chunks(&mut Cursor::new(&f));
            let _ = read_bext_from(&mut Cursor::new(&f));
        }
    }
}
