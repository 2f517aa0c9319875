//! Property tests for the decode path on damaged input: [`StemReader`] must never panic, never
//! hang and never produce unbounded audio from a small file, and every error it reports must
//! name the file.
//!
//! Inputs are built here, byte by byte, from small valid files (RIFF/WAVE PCM 16/24-bit, float32
//! with a `fact` chunk, WAVE_FORMAT_EXTENSIBLE, AIFF, AIFF with MARK/COMT/NAME chunks, AIFF-C
//! `fl32`, FLAC with and without SEEKTABLE/VORBIS_COMMENT/PADDING blocks), then damaged:
//!
//! 1. `mutated_headers`: 1..8 mutations in the header (overwrite/flip a byte, write extreme
//!    u16/u32 values or chunk tags, insert or delete bytes);
//! 2. `truncations`: the file cut at a random length (biased towards the header);
//! 3. `random_bytes`: garbage named `.wav`/`.aif`/`.flac`/..., bare or behind a valid
//!    `RIFF....WAVE`, `FORM....AIFF`, `fLaC`... prefix, or as a sequence of chunks with random
//!    lengths;
//! 4. `errors_name_the_file`: any of the above under awkward file names (spaces, non-ASCII,
//!    several dots, no extension); every error's `Display` must contain the path.
//!
//! Every case is opened and read to the end in random block sizes, checking the `read` contract
//! (`n <= frames`, a short read is followed by `Ok(0)`, errors are sticky, `position()` counts
//! what was delivered). Hangs are caught two ways: the total frames read are capped (a reader
//! that keeps returning audio fails the property), and a watchdog thread ends the process with
//! the offending input in hex if a single open or read runs longer than [`HANG_LIMIT`].
//! When a property fails, the minimal failing file is printed as a Rust byte array.
//!
//! Case counts: `PROPTEST_CASES` (per property) when set, else the defaults below (20000 cases
//! in all, a couple of seconds). The extended run (400000 cases, well under a minute) is
//! `PROPTEST_CASES=100000 cargo test --release -p stemforge-worker --test decode_props`.
//! Failure persistence is off: the tests write nothing into the repository; case files live in
//! `$TMPDIR/stemforge-decode-props-<pid>/`, one file per test thread, removed at the end.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use stemforge_worker::decode::{DecodeError, StemReader};

// ------------------------------------------------------------------------------------ config

/// Default cases per property: 20000 in all, about 2 s in the dev profile on 2 cores (a case
/// is ~0.1 ms). `PROPTEST_CASES` overrides all of them.
const CASES_MUTATED: u32 = 8000;
const CASES_TRUNCATED: u32 = 4000;
const CASES_RANDOM: u32 = 5000;
const CASES_NAMES: u32 = 3000;

/// A single `open` or `read` taking longer than this is a hang (a normal one takes well under a
/// millisecond on these ~2 KB files, even unoptimised).
const HANG_LIMIT: Duration = Duration::from_secs(30);

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        // Shrinking re-runs the decoder; bound it so a failure in a long run reports promptly.
        max_shrink_time: 120_000,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------------------ valid files

/// A small valid file and what it decodes to.
#[derive(Debug)]
struct BaseFile {
    name: &'static str,
    ext: &'static str,
    bytes: Vec<u8>,
    /// Offset of the first audio byte: everything before it is header.
    header_len: usize,
    channels: usize,
    /// The decoded samples, planar, full scale 1.0.
    expected: Vec<Vec<f64>>,
}

impl BaseFile {
    fn frames(&self) -> u64 {
        self.expected[0].len() as u64
    }
}

/// Frames in every base file: several packets' worth for FLAC (blocks of 48 and 64), a few
/// hundred bytes of audio for PCM.
const FRAMES: usize = 200;
const RATE: u32 = 48_000;
/// 48000 as an 80-bit IEEE extended float (AIFF COMM).
const RATE_EXTENDED: [u8; 10] = [0x40, 0x0E, 0xBB, 0x80, 0, 0, 0, 0, 0, 0];
/// KSDATAFORMAT_SUBTYPE_PCM.
const GUID_PCM: [u8; 16] = [
    0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
];

/// A deterministic signed integer code of `bits` bits for frame `i`, channel `ch`, covering the
/// range including both extremes.
fn code(i: usize, ch: usize, bits: u32) -> i32 {
    let full = 1i64 << (bits - 1);
    let v = match i {
        0 => -full,
        1 => full - 1,
        _ => ((i as i64 * 2_654_435_761 + ch as i64 * 40_503) % (2 * full)) - full,
    };
    v as i32
}

/// `FRAMES` x `channels` integer codes and their expected planar decoding.
fn int_codes(channels: usize, bits: u32) -> (Vec<Vec<i32>>, Vec<Vec<f64>>) {
    let frames: Vec<Vec<i32>> = (0..FRAMES)
        .map(|i| (0..channels).map(|ch| code(i, ch, bits)).collect())
        .collect();
    let scale = f64::from(1u32 << (bits - 1));
    let planar = (0..channels)
        .map(|ch| frames.iter().map(|f| f64::from(f[ch]) / scale).collect())
        .collect();
    (frames, planar)
}

fn float_samples(channels: usize) -> (Vec<Vec<f32>>, Vec<Vec<f64>>) {
    let frames: Vec<Vec<f32>> = (0..FRAMES)
        .map(|i| {
            (0..channels)
                .map(|ch| ((i * 37 + ch * 11) % 200) as f32 / 100.0 - 1.0)
                .collect()
        })
        .collect();
    let planar = (0..channels)
        .map(|ch| frames.iter().map(|f| f64::from(f[ch])).collect())
        .collect();
    (frames, planar)
}

fn pcm_le(frames: &[Vec<i32>], bytes_per_sample: usize) -> Vec<u8> {
    frames
        .iter()
        .flatten()
        .flat_map(|s| s.to_le_bytes()[..bytes_per_sample].to_vec())
        .collect()
}

fn pcm_be(frames: &[Vec<i32>], bytes_per_sample: usize) -> Vec<u8> {
    frames
        .iter()
        .flatten()
        .flat_map(|s| s.to_be_bytes()[4 - bytes_per_sample..].to_vec())
        .collect()
}

/// A RIFF (little-endian) chunk, padded to an even length.
fn chunk_le(tag: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut c = tag.to_vec();
    c.extend_from_slice(&(body.len() as u32).to_le_bytes());
    c.extend_from_slice(body);
    if body.len() % 2 == 1 {
        c.push(0);
    }
    c
}

/// An IFF (big-endian) chunk, padded to an even length.
fn chunk_be(tag: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut c = tag.to_vec();
    c.extend_from_slice(&(body.len() as u32).to_be_bytes());
    c.extend_from_slice(body);
    if body.len() % 2 == 1 {
        c.push(0);
    }
    c
}

/// `RIFF <len> WAVE` + chunks; the last chunk must be `data` with an even-length payload.
fn riff_wave(chunks: &[Vec<u8>], data: &[u8]) -> (Vec<u8>, usize) {
    let mut body = b"WAVE".to_vec();
    for c in chunks {
        body.extend_from_slice(c);
    }
    body.extend_from_slice(&chunk_le(b"data", data));
    let mut file = b"RIFF".to_vec();
    file.extend_from_slice(&(body.len() as u32).to_le_bytes());
    file.extend_from_slice(&body);
    let header_len = file.len() - data.len();
    (file, header_len)
}

/// The 16-byte WAVEFORMAT body.
fn fmt_body(tag: u16, channels: u16, bits: u16, container_bytes: u16) -> Vec<u8> {
    let align = channels * container_bytes;
    let mut b = Vec::new();
    b.extend_from_slice(&tag.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&RATE.to_le_bytes());
    b.extend_from_slice(&(RATE * u32::from(align)).to_le_bytes());
    b.extend_from_slice(&align.to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b
}

fn wav_pcm16_stereo() -> BaseFile {
    let (frames, expected) = int_codes(2, 16);
    let (bytes, header_len) = riff_wave(
        &[chunk_le(b"fmt ", &fmt_body(1, 2, 16, 2))],
        &pcm_le(&frames, 2),
    );
    BaseFile {
        name: "wav pcm16 stereo",
        ext: "wav",
        bytes,
        header_len,
        channels: 2,
        expected,
    }
}

/// Mono 24-bit with a LIST/INFO chunk between `fmt ` and `data`.
fn wav_pcm24_mono_info() -> BaseFile {
    let (frames, expected) = int_codes(1, 24);
    let mut info = b"INFO".to_vec();
    info.extend_from_slice(&chunk_le(b"INAM", b"lead vox\0"));
    info.extend_from_slice(&chunk_le(b"ISFT", b"stemforge\0"));
    let (bytes, header_len) = riff_wave(
        &[
            chunk_le(b"fmt ", &fmt_body(1, 1, 24, 3)),
            chunk_le(b"LIST", &info),
        ],
        &pcm_le(&frames, 3),
    );
    BaseFile {
        name: "wav pcm24 mono + LIST/INFO",
        ext: "wav",
        bytes,
        header_len,
        channels: 1,
        expected,
    }
}

/// Stereo float32: an 18-byte `fmt ` (cbSize 0) and a `fact` chunk.
fn wav_float32_fact() -> BaseFile {
    let (frames, expected) = float_samples(2);
    let mut fmt = fmt_body(3, 2, 32, 4);
    fmt.extend_from_slice(&0u16.to_le_bytes());
    let data: Vec<u8> = frames
        .iter()
        .flatten()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let (bytes, header_len) = riff_wave(
        &[
            chunk_le(b"fmt ", &fmt),
            chunk_le(b"fact", &(FRAMES as u32).to_le_bytes()),
        ],
        &data,
    );
    BaseFile {
        name: "wav float32 stereo + fact",
        ext: "wav",
        bytes,
        header_len,
        channels: 2,
        expected,
    }
}

/// WAVE_FORMAT_EXTENSIBLE, PCM sub-format, 24-bit stereo with a front L/R channel mask.
fn wav_extensible24() -> BaseFile {
    let (frames, expected) = int_codes(2, 24);
    let mut fmt = fmt_body(0xFFFE, 2, 24, 3);
    fmt.extend_from_slice(&22u16.to_le_bytes());
    fmt.extend_from_slice(&24u16.to_le_bytes());
    fmt.extend_from_slice(&0x3u32.to_le_bytes());
    fmt.extend_from_slice(&GUID_PCM);
    let (bytes, header_len) = riff_wave(&[chunk_le(b"fmt ", &fmt)], &pcm_le(&frames, 3));
    BaseFile {
        name: "wav extensible pcm24 stereo",
        ext: "wav",
        bytes,
        header_len,
        channels: 2,
        expected,
    }
}

/// `FORM <len> <form>` + chunks + SSND (offset 0, block size 0) as the last chunk.
fn form_aiff(form: &[u8; 4], chunks: &[Vec<u8>], data: &[u8]) -> (Vec<u8>, usize) {
    let mut body = form.to_vec();
    for c in chunks {
        body.extend_from_slice(c);
    }
    let mut ssnd = vec![0; 8];
    ssnd.extend_from_slice(data);
    body.extend_from_slice(&chunk_be(b"SSND", &ssnd));
    let mut file = b"FORM".to_vec();
    file.extend_from_slice(&(body.len() as u32).to_be_bytes());
    file.extend_from_slice(&body);
    let header_len = file.len() - data.len() - data.len() % 2;
    (file, header_len)
}

fn comm_body(channels: u16, bits: u16) -> Vec<u8> {
    let mut c = Vec::new();
    c.extend_from_slice(&channels.to_be_bytes());
    c.extend_from_slice(&(FRAMES as u32).to_be_bytes());
    c.extend_from_slice(&bits.to_be_bytes());
    c.extend_from_slice(&RATE_EXTENDED);
    c
}

fn aiff16_stereo() -> BaseFile {
    let (frames, expected) = int_codes(2, 16);
    let (bytes, header_len) = form_aiff(
        b"AIFF",
        &[chunk_be(b"COMM", &comm_body(2, 16))],
        &pcm_be(&frames, 2),
    );
    BaseFile {
        name: "aiff pcm16 stereo",
        ext: "aif",
        bytes,
        header_len,
        channels: 2,
        expected,
    }
}

/// Mono 24-bit AIFF with NAME, MARK (one marker) and COMT (one comment) chunks.
fn aiff24_rich() -> BaseFile {
    let (frames, expected) = int_codes(1, 24);
    let mut mark = 1u16.to_be_bytes().to_vec();
    mark.extend_from_slice(&1i16.to_be_bytes());
    mark.extend_from_slice(&100u32.to_be_bytes());
    mark.extend_from_slice(b"\x03cue"); // pascal string, odd total length: no pad byte
    let mut comt = 1u16.to_be_bytes().to_vec();
    comt.extend_from_slice(&0u32.to_be_bytes());
    comt.extend_from_slice(&1i16.to_be_bytes());
    comt.extend_from_slice(&5u16.to_be_bytes());
    comt.extend_from_slice(b"hello");
    let (bytes, header_len) = form_aiff(
        b"AIFF",
        &[
            chunk_be(b"COMM", &comm_body(1, 24)),
            chunk_be(b"NAME", b"lead vox"),
            chunk_be(b"MARK", &mark),
            chunk_be(b"COMT", &comt),
        ],
        &pcm_be(&frames, 3),
    );
    BaseFile {
        name: "aiff pcm24 mono + NAME/MARK/COMT",
        ext: "aiff",
        bytes,
        header_len,
        channels: 1,
        expected,
    }
}

/// AIFF-C, `fl32` (big-endian float32), mono, with an FVER chunk.
fn aifc_fl32() -> BaseFile {
    let (frames, expected) = float_samples(1);
    let mut comm = comm_body(1, 32);
    comm.extend_from_slice(b"fl32");
    comm.extend_from_slice(&[0, 0]); // empty pascal string + pad
    let data: Vec<u8> = frames
        .iter()
        .flatten()
        .flat_map(|s| s.to_be_bytes())
        .collect();
    let (bytes, header_len) = form_aiff(
        b"AIFC",
        &[
            chunk_be(b"FVER", &0xA280_5140u32.to_be_bytes()),
            chunk_be(b"COMM", &comm),
        ],
        &data,
    );
    BaseFile {
        name: "aifc fl32 mono",
        ext: "aifc",
        bytes,
        header_len,
        channels: 1,
        expected,
    }
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

/// A FLAC metadata block header.
fn flac_block(last: bool, kind: u8, body: &[u8]) -> Vec<u8> {
    let len = (body.len() as u32).to_be_bytes();
    let mut b = vec![(u8::from(last) << 7) | kind, len[1], len[2], len[3]];
    b.extend_from_slice(body);
    b
}

/// A 48 kHz FLAC stream of VERBATIM subframes (valid, uncompressed FLAC: no encoder needed),
/// as in `decode.rs`'s tests. `extra` metadata blocks follow STREAMINFO. Returns the bytes and
/// the offset of the first frame.
fn flac(
    channels: u8,
    bits: u8,
    block: usize,
    frames: &[Vec<i32>],
    extra: &[(u8, Vec<u8>)],
) -> (Vec<u8>, usize) {
    let mut info = Vec::new();
    info.extend_from_slice(&(block as u16).to_be_bytes()); // min block size
    info.extend_from_slice(&(block as u16).to_be_bytes()); // max block size
    info.extend_from_slice(&[0; 6]); // min/max frame size unknown
    let packed: u64 = (u64::from(RATE) << 44)
        | (u64::from(channels - 1) << 41)
        | (u64::from(bits - 1) << 36)
        | frames.len() as u64;
    info.extend_from_slice(&packed.to_be_bytes());
    info.extend_from_slice(&[0; 16]); // MD5 unknown
    let mut out = b"fLaC".to_vec();
    out.extend_from_slice(&flac_block(extra.is_empty(), 0, &info));
    for (i, (kind, body)) in extra.iter().enumerate() {
        out.extend_from_slice(&flac_block(i + 1 == extra.len(), *kind, body));
    }
    let header_len = out.len() + 8; // the first frame header is header too
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
                fr.extend_from_slice(&frame[ch].to_be_bytes()[4 - usize::from(bits / 8)..]);
            }
        }
        let crc = crc16(&fr);
        fr.extend_from_slice(&crc.to_be_bytes());
        out.extend_from_slice(&fr);
    }
    (out, header_len)
}

fn flac16_stereo() -> BaseFile {
    let (frames, expected) = int_codes(2, 16);
    let (bytes, header_len) = flac(2, 16, 64, &frames, &[]);
    BaseFile {
        name: "flac 16 stereo",
        ext: "flac",
        bytes,
        header_len,
        channels: 2,
        expected,
    }
}

/// Mono 24-bit FLAC with SEEKTABLE, VORBIS_COMMENT and PADDING blocks.
fn flac24_metadata() -> BaseFile {
    let (frames, expected) = int_codes(1, 24);
    let mut seek = 0u64.to_be_bytes().to_vec();
    seek.extend_from_slice(&0u64.to_be_bytes());
    seek.extend_from_slice(&48u16.to_be_bytes());
    let mut vorbis = 9u32.to_le_bytes().to_vec();
    vorbis.extend_from_slice(b"stemforge");
    vorbis.extend_from_slice(&1u32.to_le_bytes());
    vorbis.extend_from_slice(&14u32.to_le_bytes());
    vorbis.extend_from_slice(b"TITLE=lead vox");
    let (bytes, header_len) = flac(
        1,
        24,
        48,
        &frames,
        &[(3, seek), (4, vorbis), (1, vec![0; 16])],
    );
    BaseFile {
        name: "flac 24 mono + SEEKTABLE/VORBIS_COMMENT/PADDING",
        ext: "flac",
        bytes,
        header_len,
        channels: 1,
        expected,
    }
}

fn bases() -> &'static [BaseFile] {
    static BASES: OnceLock<Vec<BaseFile>> = OnceLock::new();
    BASES.get_or_init(|| {
        vec![
            wav_pcm16_stereo(),
            wav_pcm24_mono_info(),
            wav_float32_fact(),
            wav_extensible24(),
            aiff16_stereo(),
            aiff24_rich(),
            aifc_fl32(),
            flac16_stereo(),
            flac24_metadata(),
        ]
    })
}

fn base_index() -> impl Strategy<Value = usize> {
    0..bases().len()
}

// --------------------------------------------------------------------------- scratch files

/// The per-process scratch directory; each test gets a sub-directory.
fn process_dir() -> PathBuf {
    std::env::temp_dir().join(format!("stemforge-decode-props-{}", std::process::id()))
}

/// Serialises creating and removing scratch directories across test threads.
static DIRS: Mutex<()> = Mutex::new(());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

thread_local! {
    /// This thread's scratch directory (set by [`Scratch`]).
    static CASE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
    /// The case file last written by this thread: one file per thread, replaced when the
    /// name (extension) changes.
    static CASE_FILE: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
    /// The bytes of the last case that failed on this thread (the minimal one after shrinking).
    static LAST_FAILURE: RefCell<Option<(PathBuf, Vec<u8>)>> = const { RefCell::new(None) };
    /// What this thread's cases did (cases, plus shrinking steps after a failure).
    static STATS: Cell<Stats> = const { Cell::new(Stats { files: 0, opened: 0, audio: 0, read_errors: 0 }) };
}

/// Counts of what the decoder did with a property's inputs, printed with `--nocapture` to show
/// the inputs reach past the header checks.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    files: u64,
    /// Files `open` accepted.
    opened: u64,
    /// Files that decoded at least one frame.
    audio: u64,
    /// Files where `read` reported an error (after `open` succeeded).
    read_errors: u64,
}

/// A test's scratch directory. Dropping it (also when the test fails) removes it, and the
/// per-process directory once it is empty.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let _guard = lock(&DIRS);
        let dir = process_dir().join(test);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        CASE_DIR.with(|d| *d.borrow_mut() = Some(dir.clone()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _guard = lock(&DIRS);
        CASE_DIR.with(|d| *d.borrow_mut() = None);
        CASE_FILE.with(|f| *f.borrow_mut() = None);
        let _ = std::fs::remove_dir_all(&self.0);
        // Fails (harmlessly) while another test still has its sub-directory.
        let _ = std::fs::remove_dir(process_dir());
    }
}

/// Writes `bytes` to this thread's case file, named `name`, and returns its path.
fn write_case(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = CASE_DIR
        .with(|d| d.borrow().clone())
        .expect("a Scratch directory is set up");
    let path = dir.join(name);
    CASE_FILE.with(|f| {
        let mut f = f.borrow_mut();
        if let Some(old) = f.as_ref().filter(|old| **old != path) {
            let _ = std::fs::remove_file(old);
        }
        *f = Some(path.clone());
    });
    // Overwrite in place rather than truncate to zero and rewrite (`fs::write`): ext4 flushes a
    // file replaced by truncation on close, which made the extended run mostly I/O wait.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .expect("open the case file");
    file.write_all(bytes).expect("write the case file");
    file.set_len(bytes.len() as u64)
        .expect("set the case file's length");
    path
}

/// Runs the property `prop` in a scratch directory; if it fails, prints the minimal failing
/// file as a Rust byte array (ready for a regression test) before failing.
fn run_property(test: &str, prop: fn()) {
    let scratch = Scratch::new(test);
    STATS.with(|s| s.set(Stats::default()));
    let start = Instant::now();
    let result = panic::catch_unwind(prop);
    drop(scratch);
    // Shown with --nocapture.
    let stats = STATS.with(Cell::get);
    println!(
        "{test}: {} files in {:.1} s: {} opened, {} decoded audio, {} read errors",
        stats.files,
        start.elapsed().as_secs_f64(),
        stats.opened,
        stats.audio,
        stats.read_errors
    );
    if let Err(payload) = result {
        if let Some((path, bytes)) = LAST_FAILURE.with(|f| f.borrow_mut().take()) {
            eprintln!(
                "minimal failing input ({} bytes, written as {}):\nconst INPUT: &[u8] = &{};",
                bytes.len(),
                path.display(),
                rust_bytes(&bytes)
            );
        }
        panic::resume_unwind(payload);
    }
}

fn rust_bytes(bytes: &[u8]) -> String {
    let items: Vec<String> = bytes.iter().map(|b| format!("0x{b:02x}")).collect();
    let lines: Vec<String> = items
        .chunks(16)
        .map(|c| format!("    {},", c.join(", ")))
        .collect();
    format!("[\n{}\n]", lines.join("\n"))
}

// -------------------------------------------------------------------------------- watchdog

/// Open/read calls in progress: thread -> (started, file).
fn in_progress() -> &'static Mutex<HashMap<ThreadId, (Instant, PathBuf)>> {
    static RUNNING: OnceLock<Mutex<HashMap<ThreadId, (Instant, PathBuf)>>> = OnceLock::new();
    RUNNING.get_or_init(|| {
        thread::Builder::new()
            .name("decode-watchdog".into())
            .spawn(watchdog)
            .expect("spawn the watchdog");
        Mutex::new(HashMap::new())
    })
}

/// Ends the process if any open/read has run longer than [`HANG_LIMIT`], printing the input.
/// (A hung call cannot be interrupted; ending the process is the only way to fail, not hang.)
fn watchdog() {
    loop {
        thread::sleep(Duration::from_millis(500));
        let hung = lock(in_progress())
            .values()
            .find(|(start, _)| start.elapsed() > HANG_LIMIT)
            .cloned();
        if let Some((start, path)) = hung {
            let bytes = std::fs::read(&path).unwrap_or_default();
            // Straight to the process's stderr: test output capture would swallow eprintln!.
            let _ = writeln!(
                std::io::stderr(),
                "decode_props: HANG: one StemReader open/read call on {} has run for {:.0} s \
                 (limit {} s). The input ({} bytes):\nconst INPUT: &[u8] = &{};",
                path.display(),
                start.elapsed().as_secs_f64(),
                HANG_LIMIT.as_secs(),
                bytes.len(),
                rust_bytes(&bytes)
            );
            std::process::exit(101);
        }
    }
}

/// Times `f` under the watchdog.
fn watched<T>(path: &Path, f: impl FnOnce() -> T) -> T {
    /// Unregisters the call when it returns or unwinds (a stale entry would trip the watchdog).
    struct Registered(ThreadId);
    impl Drop for Registered {
        fn drop(&mut self) {
            lock(in_progress()).remove(&self.0);
        }
    }
    let id = thread::current().id();
    lock(in_progress()).insert(id, (Instant::now(), path.to_path_buf()));
    let _registered = Registered(id);
    f()
}

// ---------------------------------------------------------------------------- the checks

/// What decoding a case produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decoded {
    opened: bool,
    frames: u64,
    /// `read` reported an error (after `frames` frames).
    read_error: bool,
}

fn assert_names_file(err: &DecodeError, path: &Path) {
    let msg = err.to_string();
    let shown = path.display().to_string();
    assert!(
        msg.contains(&shown),
        "the error does not name the file {shown:?}: {msg}"
    );
}

/// Opens `path` and reads it to the end in blocks of `blocks` (cycled), checking the `read`
/// contract. Fails if more than `max_frames` frames come out. Any error is fine as long as it
/// names the file.
fn decode_checked(path: &Path, blocks: &[usize], max_frames: u64) -> Decoded {
    let mut reader = match watched(path, || StemReader::open(path)) {
        Ok(r) => r,
        Err(e) => {
            assert_names_file(&e, path);
            return Decoded {
                opened: false,
                frames: 0,
                read_error: false,
            };
        }
    };
    let info = reader.info().clone();
    assert!(
        (1..=256).contains(&info.channels) && info.sample_rate > 0,
        "implausible stream info accepted: {info:?}"
    );
    let widest = blocks.iter().copied().max().unwrap_or(1).max(1);
    let mut out = vec![vec![0.0; widest]; info.channels];
    let mut total = 0u64;
    let mut read_error = false;
    for &block in blocks.iter().cycle() {
        match watched(path, || reader.read(&mut out, block)) {
            Ok(n) => {
                assert!(n <= block, "read {n} frames when {block} were asked for");
                total += n as u64;
                assert_eq!(
                    reader.position(),
                    total,
                    "position() is not the frames delivered"
                );
                assert!(
                    total <= max_frames,
                    "{total} frames decoded, more than the {max_frames} this input can hold \
                     (info {info:?}): the reader does not stop"
                );
                if n < block {
                    let again = watched(path, || reader.read(&mut out, block));
                    assert!(
                        matches!(again, Ok(0)),
                        "a short read must be the end, then Ok(0); got {again:?}"
                    );
                    break;
                }
            }
            Err(e) => {
                assert_names_file(&e, path);
                match watched(path, || reader.read(&mut out, block)) {
                    Err(again) => assert_names_file(&again, path),
                    Ok(n) => panic!("read returned Ok({n}) after the error {e}"),
                }
                assert_eq!(reader.position(), total);
                read_error = true;
                break;
            }
        }
    }
    Decoded {
        opened: true,
        frames: total,
        read_error,
    }
}

/// Writes the case, decodes it, and on failure remembers the bytes for [`run_property`].
fn check(name: &str, bytes: &[u8], blocks: &[usize], max_frames: u64) -> Decoded {
    let path = write_case(name, bytes);
    match panic::catch_unwind(AssertUnwindSafe(|| {
        decode_checked(&path, blocks, max_frames)
    })) {
        Ok(decoded) => {
            STATS.with(|s| {
                let mut t = s.get();
                t.files += 1;
                t.opened += u64::from(decoded.opened);
                t.audio += u64::from(decoded.frames > 0);
                t.read_errors += u64::from(decoded.read_error);
                s.set(t);
            });
            decoded
        }
        Err(payload) => {
            LAST_FAILURE.with(|f| *f.borrow_mut() = Some((path, bytes.to_vec())));
            panic::resume_unwind(payload)
        }
    }
}

/// The cap on frames from a damaged file: 10x what the original held, plus 1M.
fn frame_cap(original_frames: u64) -> u64 {
    10 * original_frames + 1_000_000
}

// ---------------------------------------------------------------------------- strategies

/// Read sizes: tiny, typical, and the sizes the pipeline uses.
fn blocks() -> impl Strategy<Value = Vec<usize>> {
    vec(
        prop_oneof![
            2 => 1usize..=16,
            3 => 1usize..=2048,
            1 => select(vec![64usize, 1024, 1152, 4096]),
        ],
        1..6,
    )
}

fn u16_value() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => select(vec![0u16, 1, 2, 3, 4, 8, 16, 18, 22, 24, 32, 40, 64, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF]),
        1 => any::<u16>(),
    ]
}

fn u32_value() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => select(vec![
            0u32, 1, 2, 3, 4, 8, 16, 18, 40, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFF0, 0xFFFF_FFFE,
            0xFFFF_FFFF,
        ]),
        1 => 0u32..4096,
        1 => any::<u32>(),
    ]
}

/// Chunk/format tags the readers look for (and FLAC sync codes).
const TAGS: [[u8; 4]; 21] = [
    *b"RIFF",
    *b"WAVE",
    *b"fmt ",
    *b"data",
    *b"fact",
    *b"LIST",
    *b"INFO",
    *b"INAM",
    *b"FORM",
    *b"AIFF",
    *b"AIFC",
    *b"COMM",
    *b"SSND",
    *b"MARK",
    *b"COMT",
    *b"APPL",
    *b"NAME",
    *b"ID3 ",
    *b"fLaC",
    [0xFF, 0xF8, 0x7A, 0x18],
    [0x84, 0x00, 0x00, 0x22],
];

#[derive(Debug, Clone)]
enum Mutation {
    Byte {
        at: Index,
        value: u8,
    },
    Flip {
        at: Index,
        bit: u8,
    },
    U16 {
        at: Index,
        value: u16,
        big_endian: bool,
        aligned: bool,
    },
    U32 {
        at: Index,
        value: u32,
        big_endian: bool,
        aligned: bool,
    },
    Tag {
        at: Index,
        tag: [u8; 4],
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Delete {
        at: Index,
        len: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => (any::<Index>(), any::<u8>()).prop_map(|(at, value)| Mutation::Byte { at, value }),
        2 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        3 => (any::<Index>(), u16_value(), any::<bool>(), any::<bool>()).prop_map(
            |(at, value, big_endian, aligned)| Mutation::U16 { at, value, big_endian, aligned }
        ),
        3 => (any::<Index>(), u32_value(), any::<bool>(), any::<bool>()).prop_map(
            |(at, value, big_endian, aligned)| Mutation::U32 { at, value, big_endian, aligned }
        ),
        1 => (any::<Index>(), select(TAGS.to_vec())).prop_map(|(at, tag)| Mutation::Tag { at, tag }),
        1 => (any::<Index>(), vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<Index>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
    ]
}

/// 1..8 mutations, mostly few: every mutation is likely to break the file outright, and the
/// interesting cases are the ones that still open.
fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop_oneof![3 => vec(mutation(), 1..=2), 1 => vec(mutation(), 1..=8)]
}

/// Where a field of `width` bytes may start in the first `span` bytes, or `None` if none fits.
fn field_at(at: &Index, span: usize, width: usize, aligned: bool) -> Option<usize> {
    if span < width {
        return None;
    }
    let i = at.index(span - width + 1);
    Some(if aligned { i & !1 } else { i })
}

/// Applies `m` within the first `window` bytes of `bytes`.
fn apply(m: &Mutation, bytes: &mut Vec<u8>, window: usize) {
    let span = window.min(bytes.len());
    let mut put = |at: &Index, field: &[u8], aligned: bool| {
        if let Some(i) = field_at(at, span, field.len(), aligned) {
            bytes[i..i + field.len()].copy_from_slice(field);
        }
    };
    match m {
        Mutation::Byte { at, value } => put(at, &[*value], false),
        Mutation::Flip { at, bit } => {
            if span > 0 {
                bytes[at.index(span)] ^= 1 << bit;
            }
        }
        Mutation::U16 {
            at,
            value,
            big_endian,
            aligned,
        } => {
            let field = if *big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            put(at, &field, *aligned);
        }
        Mutation::U32 {
            at,
            value,
            big_endian,
            aligned,
        } => {
            let field = if *big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            };
            put(at, &field, *aligned);
        }
        Mutation::Tag { at, tag } => put(at, tag, true),
        Mutation::Insert {
            at,
            bytes: inserted,
        } => {
            let i = at.index(span + 1);
            bytes.splice(i..i, inserted.iter().copied());
        }
        Mutation::Delete { at, len } => {
            if span > 0 {
                let i = at.index(span);
                let end = (i + len).min(bytes.len());
                bytes.drain(i..end);
            }
        }
    }
}

/// The header window mutations land in: the first ~80 bytes, or the whole header when it is
/// longer (LIST/INFO, MARK/COMT, FLAC metadata blocks).
fn header_window(base: &BaseFile) -> usize {
    base.header_len.max(80)
}

fn mutate(base: &BaseFile, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = base.bytes.clone();
    let window = header_window(base);
    for m in mutations {
        apply(m, &mut bytes, window);
    }
    bytes
}

/// A cut point: anywhere in the file, or (as often) in or just after the header.
fn cut_point() -> impl Strategy<Value = (bool, Index)> {
    (any::<bool>(), any::<Index>())
}

fn truncate(base: &BaseFile, in_header: bool, at: &Index) -> usize {
    let len = base.bytes.len();
    if in_header {
        at.index((base.header_len + 16).min(len) + 1)
    } else {
        at.index(len + 1)
    }
}

const EXTENSIONS: [&str; 10] = [
    "wav", "WAV", "wave", "bwf", "aif", "aiff", "aifc", "flac", "bin", "",
];

/// Well-formed chunks (as in the base files) for shuffling into garbage: reordered, duplicated
/// or missing chunks reach the readers' chunk-order checks.
fn real_chunks() -> Vec<Vec<u8>> {
    let mut fmt_float = fmt_body(3, 2, 32, 4);
    fmt_float.extend_from_slice(&0u16.to_le_bytes());
    let mut fmt_ext = fmt_body(0xFFFE, 2, 24, 3);
    fmt_ext.extend_from_slice(&22u16.to_le_bytes());
    fmt_ext.extend_from_slice(&24u16.to_le_bytes());
    fmt_ext.extend_from_slice(&0x3u32.to_le_bytes());
    fmt_ext.extend_from_slice(&GUID_PCM);
    let mut comm_fl32 = comm_body(1, 32);
    comm_fl32.extend_from_slice(b"fl32\0\0");
    let mut ssnd = vec![0; 8];
    ssnd.extend_from_slice(&[0x12; 24]);
    vec![
        chunk_le(b"fmt ", &fmt_body(1, 2, 16, 2)),
        chunk_le(b"fmt ", &fmt_float),
        chunk_le(b"fmt ", &fmt_ext),
        chunk_le(b"fact", &(FRAMES as u32).to_le_bytes()),
        chunk_le(b"LIST", b"INFOINAM\x04\0\0\0vox\0"),
        chunk_le(b"data", &[0x34; 24]),
        chunk_be(b"COMM", &comm_body(2, 16)),
        chunk_be(b"COMM", &comm_fl32),
        chunk_be(b"SSND", &ssnd),
        chunk_be(b"MARK", b"\0\x01\0\x01\0\0\0\x10\x03cue"),
        chunk_be(b"COMT", b"\0\x01\0\0\0\0\0\x01\0\x02hi"),
        chunk_be(b"NAME", b"vox"),
        chunk_be(b"FVER", &0xA280_5140u32.to_be_bytes()),
    ]
}

/// Garbage: bare random bytes, a valid magic/prefix then random bytes, or a prefix then a run of
/// chunks: random tags, lengths and payloads, or well-formed chunks in random order.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    // A RIFF/FORM header: its size field is random, or (as often) correct for what follows.
    let riff = |magic: &'static [u8; 4], form: &'static [u8; 4]| {
        prop_oneof![Just(None), u32_value().prop_map(Some)].prop_map(move |size| {
            let mut p = magic.to_vec();
            p.extend_from_slice(&size.unwrap_or(0).to_le_bytes());
            p.extend_from_slice(form);
            (p, size.is_none())
        })
    };
    let magic = |bytes: &'static [u8]| Just((bytes.to_vec(), false));
    let prefix = prop_oneof![
        2 => magic(b""),
        2 => riff(b"RIFF", b"WAVE"),
        2 => riff(b"FORM", b"AIFF"),
        1 => riff(b"FORM", b"AIFC"),
        1 => magic(b"fLaC"),
        1 => magic(b"fLaC\x00\x00\x00\x22"),
        1 => magic(b"fLaC\x80\x00\x00\x22"),
        1 => magic(b"ID3\x04\x00\x00\x00\x00\x00\x20"),
    ];
    let chunk = (
        select(TAGS.to_vec()),
        u32_value(),
        any::<bool>(),
        vec(any::<u8>(), 0..48),
    )
        .prop_map(|(tag, len, big_endian, payload)| {
            let mut c = tag.to_vec();
            c.extend_from_slice(&if big_endian {
                len.to_be_bytes()
            } else {
                len.to_le_bytes()
            });
            c.extend_from_slice(&payload);
            c
        });
    let any_chunk = prop_oneof![1 => chunk, 3 => select(real_chunks())];
    let body = prop_oneof![
        vec(any::<u8>(), 0..2048),
        vec(any_chunk, 0..8).prop_map(|chunks| chunks.concat()),
    ];
    (prefix, body).prop_map(|((mut p, fix_size), b)| {
        p.extend_from_slice(&b);
        if fix_size {
            let size = (p.len() - 8) as u32;
            let field = if p.starts_with(b"FORM") {
                size.to_be_bytes()
            } else {
                size.to_le_bytes()
            };
            p[4..8].copy_from_slice(&field);
        }
        p
    })
}

fn file_name(stem: &str, ext: &str) -> String {
    if ext.is_empty() {
        stem.to_string()
    } else {
        format!("{stem}.{ext}")
    }
}

/// Damaged content of any kind, with the extension it is delivered under.
#[derive(Debug, Clone)]
enum Damage {
    Mutated {
        base: usize,
        mutations: Vec<Mutation>,
    },
    Truncated {
        base: usize,
        in_header: bool,
        at: Index,
    },
    Garbage {
        ext: &'static str,
        bytes: Vec<u8>,
    },
}

impl Damage {
    /// The bytes, their extension, and the cap on frames they may decode to.
    fn realise(&self) -> (Vec<u8>, &'static str, u64) {
        match self {
            Damage::Mutated { base, mutations } => {
                let b = &bases()[*base];
                (mutate(b, mutations), b.ext, frame_cap(b.frames()))
            }
            Damage::Truncated {
                base,
                in_header,
                at,
            } => {
                let b = &bases()[*base];
                (
                    b.bytes[..truncate(b, *in_header, at)].to_vec(),
                    b.ext,
                    b.frames(),
                )
            }
            Damage::Garbage { ext, bytes } => (bytes.clone(), ext, frame_cap(bytes.len() as u64)),
        }
    }
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (base_index(), mutations())
            .prop_map(|(base, mutations)| Damage::Mutated { base, mutations }),
        (base_index(), cut_point()).prop_map(|(base, (in_header, at))| Damage::Truncated {
            base,
            in_header,
            at
        }),
        (select(EXTENSIONS.to_vec()), garbage())
            .prop_map(|(ext, bytes)| Damage::Garbage { ext, bytes }),
    ]
}

/// File names a delivery may well use.
const STEMS: [&str; 8] = [
    "case",
    "Lead Vox (final) v2",
    "ünïcødé-stêm_日本",
    "dots.in.the.name",
    "-leading-dash",
    "#50% mix & 'quotes'",
    "UPPER CASE",
    "a",
];

// ---------------------------------------------------------------------------- properties

proptest! {
    #![proptest_config(config(CASES_MUTATED))]
    fn mutated_headers_prop(
        base in base_index(),
        mutations in mutations(),
        blocks in blocks(),
    ) {
        let b = &bases()[base];
        let bytes = mutate(b, &mutations);
        check(&file_name("case", b.ext), &bytes, &blocks, frame_cap(b.frames()));
    }
}

proptest! {
    #![proptest_config(config(CASES_TRUNCATED))]
    fn truncations_prop(base in base_index(), (in_header, at) in cut_point(), blocks in blocks()) {
        let b = &bases()[base];
        let cut = truncate(b, in_header, &at);
        // The frames decoded must never exceed what the intact file holds.
        let decoded = check(&file_name("case", b.ext), &b.bytes[..cut], &blocks, b.frames());
        if cut == b.bytes.len() {
            prop_assert_eq!(
                decoded,
                Decoded { opened: true, frames: b.frames(), read_error: false }
            );
        }
    }
}

proptest! {
    #![proptest_config(config(CASES_RANDOM))]
    fn random_bytes_prop(ext in select(EXTENSIONS.to_vec()), bytes in garbage(), blocks in blocks()) {
        check(&file_name("case", ext), &bytes, &blocks, frame_cap(bytes.len() as u64));
    }
}

proptest! {
    #![proptest_config(config(CASES_NAMES))]
    fn errors_name_the_file_prop(
        stem in select(STEMS.to_vec()),
        keep_ext in prop::bool::weighted(0.9),
        damage in damage(),
        blocks in blocks(),
    ) {
        let (bytes, ext, cap) = damage.realise();
        // `check` asserts that every error from open and read contains the full path.
        check(&file_name(stem, if keep_ext { ext } else { "" }), &bytes, &blocks, cap);
    }
}

#[test]
fn mutated_headers() {
    run_property("mutated", mutated_headers_prop);
}

#[test]
fn truncations() {
    run_property("truncated", truncations_prop);
}

#[test]
fn random_bytes() {
    run_property("random", random_bytes_prop);
}

#[test]
fn errors_name_the_file() {
    run_property("names", errors_name_the_file_prop);
}

// ----------------------------------------------------------------------- plain tests

/// The properties start from valid files: each base decodes exactly, whatever the block size.
#[test]
fn base_files_decode_exactly() {
    let _scratch = Scratch::new("bases");
    for b in bases() {
        for block in [1, 7, 64, 1152, 4096] {
            let path = write_case(&file_name("case", b.ext), &b.bytes);
            let mut r = StemReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", b.name));
            assert_eq!(r.info().channels, b.channels, "{}", b.name);
            assert_eq!(r.info().sample_rate, RATE, "{}", b.name);
            let mut out = vec![vec![0.0; block]; b.channels];
            let mut all = vec![Vec::new(); b.channels];
            loop {
                let n = r
                    .read(&mut out, block)
                    .unwrap_or_else(|e| panic!("{}: {e}", b.name));
                for (dst, src) in all.iter_mut().zip(&out) {
                    dst.extend_from_slice(&src[..n]);
                }
                if n < block {
                    break;
                }
            }
            assert_eq!(all, b.expected, "{} read in blocks of {block}", b.name);
        }
        assert!(b.header_len < b.bytes.len(), "{}", b.name);
    }
}

/// The checks themselves catch what they claim to: a missing file, a cut header and garbage
/// all give errors naming the file; a decoder that returned more than the cap would fail.
#[test]
fn checks_accept_errors_and_enforce_the_frame_cap() {
    let _scratch = Scratch::new("selfcheck");
    let b = &bases()[0];
    let not_opened = Decoded {
        opened: false,
        frames: 0,
        read_error: false,
    };
    let garbage_path = write_case("x.wav", b"not audio at all");
    assert_eq!(decode_checked(&garbage_path, &[64], 0), not_opened);
    let missing = garbage_path.with_file_name("missing.wav");
    assert_eq!(decode_checked(&missing, &[64], 0), not_opened);
    let cut = write_case("x.wav", &b.bytes[..30]);
    assert!(!decode_checked(&cut, &[64], 0).opened);

    let valid = write_case("x.wav", &b.bytes);
    let over_cap = panic::catch_unwind(|| decode_checked(&valid, &[64], b.frames() - 1));
    assert!(
        over_cap.is_err(),
        "decoding more than the cap must fail the property"
    );
    assert_eq!(
        decode_checked(&valid, &[64, 3], b.frames()),
        Decoded {
            opened: true,
            frames: b.frames(),
            read_error: false,
        }
    );
}

// ------------------------------------------------------------------ regressions found here
//
// Minimised from failures of the properties above. All three are arithmetic overflows inside
// symphonia-format-riff 0.6.1 while probing the header, so they panic only where overflow
// checks are on (the dev/test profile); release builds wrap silently, and `open` then returns
// an error for these inputs (the tests pass in release). They are not marked #[ignore]: they
// can be guarded from our side (catch a panic from symphonia's probe in decode.rs and report the
// file as unsupported, or check the channel count before probing, or turn overflow checks off
// for symphonia-format-riff in the dev profile).

/// Runs the full check on a minimised input: no panic, bounded output, errors name the file.
fn regression(name: &str, bytes: &[u8]) {
    let _scratch = Scratch::new(name);
    let path = write_case(name, bytes);
    decode_checked(&path, &[1024], frame_cap(0));
}

/// `fmt ` chunk, WAVE_FORMAT_PCM, 32768 channels x 16 bits: symphonia computes the expected
/// block align as `num_channels * (bits_per_sample / 8)` in u16 before validating the channel
/// count: "attempt to multiply with overflow" at symphonia-format-riff-0.6.1/src/wave/chunks.rs:100
/// (`WaveFormatChunk::read_pcm_fmt`, from `WavReader::try_new` via `StemReader::open`).
#[test]
fn regression_wav_pcm_channel_count_overflows_block_align() {
    #[rustfmt::skip]
    const INPUT: &[u8] = &[
        b'R', b'I', b'F', b'F', 0x1c, 0x00, 0x00, 0x00, b'W', b'A', b'V', b'E',
        b'f', b'm', b't', b' ', 0x10, 0x00, 0x00, 0x00,
        0x01, 0x00, // format: PCM
        0x00, 0x80, // channels: 32768
        0x80, 0xbb, 0x00, 0x00, // 48000 Hz
        0x00, 0x00, 0x00, 0x00, // bytes per second
        0x00, 0x00, // block align
        0x10, 0x00, // 16 bits
    ];
    regression("pcm_channels.wav", INPUT);
}

/// `fmt ` chunk, WAVE_FORMAT_EXTENSIBLE (PCM sub-format, 16 bits), 40 channels but a channel mask
/// of 0x3: symphonia's `fix_wave_channel_mask` adds the 38 missing bits as `1 << 38` on a u32:
/// "attempt to shift left with overflow" at symphonia-format-riff-0.6.1/src/wave/chunks.rs:690
/// (from `WaveFormatChunk::read_ext_fmt`). Any channel count above 32, or a mask whose top bit
/// is set with too few bits for the channel count (`<< 32`), does it.
#[test]
fn regression_wav_extensible_channel_mask_shift_overflows() {
    #[rustfmt::skip]
    const INPUT: &[u8] = &[
        b'R', b'I', b'F', b'F', 0x34, 0x00, 0x00, 0x00, b'W', b'A', b'V', b'E',
        b'f', b'm', b't', b' ', 0x28, 0x00, 0x00, 0x00,
        0xfe, 0xff, // format: WAVE_FORMAT_EXTENSIBLE
        0x28, 0x00, // channels: 40
        0x80, 0xbb, 0x00, 0x00, // 48000 Hz
        0x00, 0x00, 0x00, 0x00, // bytes per second
        0x00, 0x00, // block align
        0x10, 0x00, // 16 bits
        0x16, 0x00, // cbSize 22
        0x10, 0x00, // 16 valid bits
        0x03, 0x00, 0x00, 0x00, // channel mask: front left + right
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, // KSDATAFORMAT_SUBTYPE_PCM
        0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
    ];
    regression("ext_mask.wav", INPUT);
}

/// AIFF `COMM` chunk with 32768 channels x 16 bits: symphonia computes the frame length as
/// `(bits_per_sample / 8) * num_channels` in u16: "attempt to multiply with overflow" at
/// symphonia-format-riff-0.6.1/src/common.rs:215 (`FormatPcm::make_packet_info`, from
/// `AiffReader::try_new`). Any AIFF channel count with `(bits / 8) * channels > 65535` does it
/// (16-bit: 32768 channels or more, 24-bit: 21846, 32-bit: 16384); in release it wraps (to 0
/// here: "block size is 0").
#[test]
fn regression_aiff_channel_count_overflows_frame_length() {
    #[rustfmt::skip]
    const INPUT: &[u8] = &[
        b'F', b'O', b'R', b'M', 0x00, 0x00, 0x00, 0x1e, b'A', b'I', b'F', b'F',
        b'C', b'O', b'M', b'M', 0x00, 0x00, 0x00, 0x12,
        0x80, 0x00, // channels: 32768
        0x00, 0x00, 0x00, 0x00, // frames
        0x00, 0x10, // 16 bits
        0x40, 0x0e, 0xbb, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 48000 Hz
    ];
    regression("channels.aif", INPUT);
}
