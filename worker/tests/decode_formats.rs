//! `StemReader` against independent tools, in every container and coding stemforge accepts.
//!
//! Each case builds a short stem with ffmpeg or sox (never with our own writer), checks its
//! header by hand (so a case cannot silently test something other than what it claims, e.g.
//! that a WAVE_FORMAT_EXTENSIBLE case really has format tag 0xFFFE), decodes it with
//! [`StemReader`] and compares every sample with ffmpeg's own decode to raw `f64`.
//!
//! The comparison is bit-for-bit for every format: ffmpeg converts integer PCM to double by
//! multiplying by `1 / 2^(bits-1)` of its sample format (24-bit WAV/AIFF/FLAC codes are
//! left-justified into `s32`, so it divides by 2^31 a code shifted by 8 bits), we divide by
//! `2^(bits-1)`; both are exact powers of two on integers of at most 32 bits, so both give the
//! exact rational value. Floats are widened (f32) or passed through (f64) by both.
//!
//! Every channel carries a sine of its own frequency ([`FREQS`]) so a channel-order mix-up
//! (e.g. 5.1 as L R C LFE Ls Rs read in another order) is caught twice: ffmpeg's decode keeps
//! the file order, and each decoded channel must have its own frequency as its strongest one.
//! The ffmpeg-generated stems are also compared with the generating formula (to within the
//! quantisation), which would catch an error ffmpeg and we shared (e.g. a wrong scale).
//!
//! These tests need `ffmpeg` and `sox` on the PATH and fail (never skip) without them.

use std::f64::consts::PI;
use std::path::Path;
use std::process::Command;

use stemforge_worker::bwf;
use stemforge_worker::decode::StemReader;

use stemforge_testkit::TempDir;

/// Length of every generated stem, in seconds. Every frequency in [`FREQS`] makes a whole
/// number of cycles in it, so they are orthogonal over the stem.
const SECONDS: f64 = 0.25;
/// The sine frequency of channel `ch` (L R C LFE Ls Rs for 5.1).
const FREQS: [f64; 6] = [300.0, 500.0, 700.0, 900.0, 1100.0, 1300.0];

const INSTALL_HINT: &str = "these tests need `ffmpeg` and `sox` on the PATH; install them \
                            (e.g. `apt-get install -y ffmpeg sox`; CI does this)";

/// Runs `tool args`, failing the test with an install hint if it is missing; returns stdout.
fn run(tool: &str, args: &[String]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{tool}` ({e}): {INSTALL_HINT}"));
    assert!(
        out.status.success(),
        "`{tool} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn path_arg(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_string()
}

/// Which independent tool writes the stem.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tool {
    Ffmpeg,
    Sox,
}

/// The coded sample format.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Enc {
    S16,
    S24,
    S32,
    F32,
    F64,
}

impl Enc {
    fn bits(self) -> u32 {
        match self {
            Enc::S16 => 16,
            Enc::S24 => 24,
            Enc::S32 | Enc::F32 => 32,
            Enc::F64 => 64,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Enc::F32 | Enc::F64)
    }
}

/// What the file's header must say, read by [`parse_header`] (not by symphonia or ffmpeg).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// RIFF/WAVE with this `fmt ` format tag and, for 0xFFFE, this sub-format (the first two
    /// bytes of the GUID: 1 = PCM, 3 = IEEE float).
    Wav {
        tag: u16,
        sub: Option<u16>,
    },
    /// FORM/AIFF (big-endian integer PCM).
    Aiff,
    /// FORM/AIFC with this compression type.
    Aifc([u8; 4]),
    Flac,
}

const WAV_PCM: Kind = Kind::Wav {
    tag: 0x0001,
    sub: None,
};
const WAV_FLOAT: Kind = Kind::Wav {
    tag: 0x0003,
    sub: None,
};
const WAV_EXT_PCM: Kind = Kind::Wav {
    tag: 0xFFFE,
    sub: Some(0x0001),
};
const WAV_EXT_FLOAT: Kind = Kind::Wav {
    tag: 0xFFFE,
    sub: Some(0x0003),
};

/// One stem to generate and check.
#[derive(Debug, Clone, Copy)]
struct Case {
    tool: Tool,
    /// File extension: wav, aiff, aifc or flac.
    ext: &'static str,
    rate: u32,
    channels: usize,
    enc: Enc,
    /// Peak of each sine (ffmpeg only; sox synthesises at its own level).
    amplitude: f64,
    /// Expected `StreamInfo::codec` and `StreamInfo::container`.
    codec: &'static str,
    container: &'static str,
    kind: Kind,
}

const fn ff(
    ext: &'static str,
    rate: u32,
    channels: usize,
    enc: Enc,
    codec: &'static str,
    container: &'static str,
    kind: Kind,
) -> Case {
    Case {
        tool: Tool::Ffmpeg,
        ext,
        rate,
        channels,
        enc,
        amplitude: 0.8,
        codec,
        container,
        kind,
    }
}

const fn sox(
    ext: &'static str,
    rate: u32,
    channels: usize,
    enc: Enc,
    codec: &'static str,
    container: &'static str,
    kind: Kind,
) -> Case {
    Case {
        tool: Tool::Sox,
        ext,
        rate,
        channels,
        enc,
        amplitude: 1.0,
        codec,
        container,
        kind,
    }
}

impl Case {
    /// Writes the stem to `path` with the case's tool.
    fn generate(&self, path: &Path) {
        match self.tool {
            Tool::Ffmpeg => {
                let exprs: Vec<String> = FREQS[..self.channels]
                    .iter()
                    .map(|f| format!("{}*sin(2*PI*{f}*t)", self.amplitude))
                    .collect();
                let layout = match self.channels {
                    1 => "mono",
                    2 => "stereo",
                    6 => "5.1",
                    n => panic!("no layout for {n} channels"),
                };
                let src = format!(
                    "aevalsrc=exprs={}:s={}:d={SECONDS}:c={layout}",
                    exprs.join("|"),
                    self.rate
                );
                let (container, codec) = match (self.ext, self.enc) {
                    ("flac", Enc::S16) => ("flac", "flac -sample_fmt s16"),
                    // ffmpeg's FLAC encoder codes s32 input as 24-bit (bits_per_raw_sample 24).
                    ("flac", Enc::S24) => ("flac", "flac -sample_fmt s32"),
                    ("wav", Enc::S16) => ("wav", "pcm_s16le"),
                    ("wav", Enc::S24) => ("wav", "pcm_s24le"),
                    ("wav", Enc::S32) => ("wav", "pcm_s32le"),
                    ("wav", Enc::F32) => ("wav", "pcm_f32le"),
                    ("wav", Enc::F64) => ("wav", "pcm_f64le"),
                    // The aiff muxer writes AIFC (FVER + compression type) for float codecs.
                    ("aiff" | "aifc", Enc::S16) => ("aiff", "pcm_s16be"),
                    ("aiff" | "aifc", Enc::S24) => ("aiff", "pcm_s24be"),
                    ("aiff" | "aifc", Enc::S32) => ("aiff", "pcm_s32be"),
                    ("aiff" | "aifc", Enc::F32) => ("aiff", "pcm_f32be"),
                    ("aiff" | "aifc", Enc::F64) => ("aiff", "pcm_f64be"),
                    other => panic!("no ffmpeg coding for {other:?}"),
                };
                let mut args: Vec<String> = ["-nostdin", "-v", "error", "-y", "-f", "lavfi"]
                    .map(String::from)
                    .to_vec();
                args.extend(["-i".to_string(), src, "-c:a".to_string()]);
                args.extend(codec.split(' ').map(String::from));
                args.extend(["-f".to_string(), container.to_string(), path_arg(path)]);
                run("ffmpeg", &args);
            }
            Tool::Sox => {
                let encoding = if self.enc.is_float() {
                    "floating-point"
                } else {
                    "signed-integer"
                };
                // -D: no dither, so the file is a plain quantised sine. One `sine` per channel.
                let mut args: Vec<String> = vec![
                    "-D".into(),
                    "-n".into(),
                    "-r".into(),
                    self.rate.to_string(),
                    "-b".into(),
                    self.enc.bits().to_string(),
                    "-e".into(),
                    encoding.into(),
                    "-c".into(),
                    self.channels.to_string(),
                    path_arg(path),
                    "synth".into(),
                    SECONDS.to_string(),
                ];
                for f in &FREQS[..self.channels] {
                    args.extend(["sine".to_string(), f.to_string()]);
                }
                run("sox", &args);
            }
        }
    }
}

/// The stream parameters and kind stated by a file's header, parsed by hand.
#[derive(Debug, PartialEq)]
struct Header {
    kind: Kind,
    rate: u32,
    channels: usize,
    bits: u32,
    /// Total frames, where the header states it (AIFF `COMM`, FLAC `STREAMINFO`).
    frames: Option<u64>,
    /// WAVE_FORMAT_EXTENSIBLE channel mask.
    channel_mask: Option<u32>,
}

fn u16_le(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
fn u32_le(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
fn u16_be(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}
fn u32_be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// An integral sample rate from an AIFF 80-bit IEEE 754 extended float.
fn extended_to_rate(b: &[u8]) -> u32 {
    let exponent = i32::from(u16_be(b) & 0x7FFF);
    let mantissa = u64::from_be_bytes(b[2..10].try_into().expect("8 bytes"));
    let shift = 16383 + 63 - exponent;
    assert!((0..64).contains(&shift), "implausible AIFF rate exponent");
    assert_eq!(mantissa & ((1 << shift) - 1), 0, "non-integral AIFF rate");
    u32::try_from(mantissa >> shift).expect("rate fits u32")
}

/// Walks the chunks of an IFF-style body (`bytes` after the 12-byte header) and returns the
/// body of the first chunk `id`.
fn find_chunk<'a>(mut bytes: &'a [u8], id: &[u8; 4], big_endian: bool) -> &'a [u8] {
    while bytes.len() >= 8 {
        let size = if big_endian {
            u32_be(&bytes[4..])
        } else {
            u32_le(&bytes[4..])
        } as usize;
        let body = &bytes[8..];
        assert!(size <= body.len(), "chunk past the end of the file");
        if &bytes[..4] == id {
            return &body[..size];
        }
        bytes = &body[(size + (size & 1)).min(body.len())..];
    }
    panic!("no '{}' chunk", String::from_utf8_lossy(id));
}

fn parse_header(path: &Path) -> Header {
    let bytes = std::fs::read(path).expect("read generated stem");
    match &bytes[..4] {
        b"RIFF" => {
            assert_eq!(&bytes[8..12], b"WAVE");
            let fmt = find_chunk(&bytes[12..], b"fmt ", false);
            let tag = u16_le(fmt);
            let extensible = tag == 0xFFFE;
            if extensible {
                assert!(
                    fmt.len() >= 40,
                    "extensible fmt chunk is {} bytes",
                    fmt.len()
                );
                assert_eq!(u16_le(&fmt[16..]), 22, "cbSize of an extensible fmt");
            }
            Header {
                kind: Kind::Wav {
                    tag,
                    sub: extensible.then(|| u16_le(&fmt[24..])),
                },
                rate: u32_le(&fmt[4..]),
                channels: usize::from(u16_le(&fmt[2..])),
                bits: u32::from(u16_le(&fmt[14..])),
                frames: None,
                channel_mask: extensible.then(|| u32_le(&fmt[20..])),
            }
        }
        b"FORM" => {
            let comm = find_chunk(&bytes[12..], b"COMM", true);
            let kind = match &bytes[8..12] {
                b"AIFF" => Kind::Aiff,
                b"AIFC" => Kind::Aifc(comm[18..22].try_into().expect("4 bytes")),
                other => panic!("FORM type {other:?}"),
            };
            Header {
                kind,
                rate: extended_to_rate(&comm[8..18]),
                channels: usize::from(u16_be(comm)),
                bits: u32::from(u16_be(&comm[6..])),
                frames: Some(u64::from(u32_be(&comm[2..]))),
                channel_mask: None,
            }
        }
        b"fLaC" => {
            // The first metadata block is STREAMINFO; after min/max block and frame sizes
            // come 20 bits rate, 3 bits channels-1, 5 bits bits-1, 36 bits total samples.
            assert_eq!(
                bytes[4] & 0x7F,
                0,
                "first FLAC metadata block is STREAMINFO"
            );
            let packed = u64::from_be_bytes(bytes[18..26].try_into().expect("8 bytes"));
            Header {
                kind: Kind::Flac,
                rate: (packed >> 44) as u32,
                channels: ((packed >> 41) & 0x7) as usize + 1,
                bits: ((packed >> 36) & 0x1F) as u32 + 1,
                frames: Some(packed & 0xF_FFFF_FFFF),
                channel_mask: None,
            }
        }
        other => panic!("unknown magic {other:?}"),
    }
}

/// ffmpeg's decode of `path`, as interleaved f64.
fn ffmpeg_f64(path: &Path) -> Vec<f64> {
    let args = [
        "-nostdin",
        "-v",
        "error",
        "-i",
        &path_arg(path),
        "-f",
        "f64le",
        "-acodec",
        "pcm_f64le",
        "-",
    ]
    .map(String::from);
    let raw = run("ffmpeg", &args);
    assert_eq!(raw.len() % 8, 0);
    raw.chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

/// Reads the whole stream in blocks of `block` frames. Every read but the last must be full,
/// and a read after the end must return 0.
fn read_all(path: &Path, block: usize) -> Vec<Vec<f64>> {
    let mut r = StemReader::open(path).unwrap_or_else(|e| panic!("open: {e}"));
    let channels = r.info().channels;
    let mut out = vec![vec![f64::NAN; block]; channels];
    let mut all = vec![Vec::new(); channels];
    loop {
        let n = r
            .read(&mut out, block)
            .unwrap_or_else(|e| panic!("read at frame {}: {e}", r.position()));
        for (a, o) in all.iter_mut().zip(&out) {
            a.extend_from_slice(&o[..n]);
        }
        if n < block {
            break;
        }
    }
    assert_eq!(r.read(&mut out, block).expect("read after the end"), 0);
    assert_eq!(r.position(), all[0].len() as u64);
    all
}

/// Asserts planar `ours` equals interleaved `reference` bit for bit.
fn assert_bit_exact(ours: &[Vec<f64>], reference: &[f64], what: &str) {
    let channels = ours.len();
    let frames = reference.len() / channels;
    let mut mismatches = 0;
    let mut first = None;
    for (ch, plane) in ours.iter().enumerate() {
        assert_eq!(plane.len(), frames, "{what}: channel {ch} length");
        for (i, &s) in plane.iter().enumerate() {
            let r = reference[i * channels + ch];
            if s.to_bits() != r.to_bits() {
                mismatches += 1;
                first.get_or_insert((i, ch, s, r));
            }
        }
    }
    if let Some((i, ch, s, r)) = first {
        panic!(
            "{what}: {mismatches} samples differ from ffmpeg's decode; first at frame {i} \
             channel {ch}: ours {s:e}, ffmpeg {r:e} (difference {:e})",
            s - r
        );
    }
}

/// The strongest of `FREQS[..candidates]` in `x`, as an index.
fn dominant(x: &[f64], rate: u32, candidates: usize) -> usize {
    let power = |f: f64| {
        let w = 2.0 * PI * f / f64::from(rate);
        let (mut s, mut c) = (0.0, 0.0);
        for (n, &v) in x.iter().enumerate() {
            let (sin, cos) = (w * n as f64).sin_cos();
            s += v * sin;
            c += v * cos;
        }
        s * s + c * c
    };
    let powers: Vec<f64> = FREQS[..candidates].iter().map(|&f| power(f)).collect();
    (0..candidates)
        .max_by(|&a, &b| powers[a].total_cmp(&powers[b]))
        .expect("at least one channel")
}

fn check(name: &str, case: &Case) {
    let dir = TempDir::new(&format!("decode-formats-{name}"));
    let path = dir.path(&format!("{name}.{}", case.ext));
    case.generate(&path);

    // The file really is what the case claims.
    let expected_frames = (f64::from(case.rate) * SECONDS).round() as u64;
    let header = parse_header(&path);
    assert_eq!(header.kind, case.kind, "{name}: header kind");
    assert_eq!(header.rate, case.rate, "{name}: header rate");
    assert_eq!(header.channels, case.channels, "{name}: header channels");
    assert_eq!(header.bits, case.enc.bits(), "{name}: header bits");
    if let Some(frames) = header.frames {
        assert_eq!(frames, expected_frames, "{name}: header frames");
    }
    if let (Some(mask), 6) = (header.channel_mask, case.channels) {
        // L R C LFE + back (0x30) or side (0x600) surrounds: the file order is L R C LFE Ls Rs.
        assert!(
            mask == 0x3F || mask == 0x60F,
            "{name}: 5.1 channel mask {mask:#x}"
        );
    }

    let reference = ffmpeg_f64(&path);
    assert_eq!(
        reference.len() % case.channels,
        0,
        "{name}: ffmpeg's sample count"
    );
    let ref_frames = (reference.len() / case.channels) as u64;
    assert_eq!(ref_frames, expected_frames, "{name}: ffmpeg's frame count");

    let r = StemReader::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let info = r.info().clone();
    drop(r);
    assert_eq!(info.sample_rate, case.rate, "{name}: {info:?}");
    assert_eq!(info.channels, case.channels, "{name}: {info:?}");
    assert_eq!(info.frames, Some(ref_frames), "{name}: {info:?}");
    assert_eq!(
        info.bits_per_sample,
        Some(case.enc.bits()),
        "{name}: {info:?}"
    );
    assert_eq!(info.codec, case.codec, "{name}: {info:?}");
    assert_eq!(info.container, case.container, "{name}: {info:?}");

    // One read of the whole stream, then odd block sizes: all the same samples.
    let whole = read_all(&path, ref_frames as usize + 17);
    assert_eq!(whole[0].len() as u64, ref_frames, "{name}: frames read");
    assert_bit_exact(&whole, &reference, name);
    for block in [1000, 7] {
        let blocks = read_all(&path, block);
        assert_bit_exact(&blocks, &reference, &format!("{name}, {block}-frame reads"));
    }

    if case.amplitude > 1.0 {
        let peak = whole.iter().flatten().fold(0.0_f64, |m, s| m.max(s.abs()));
        assert!(
            peak > 1.0,
            "{name}: peak {peak}: over-full-scale floats clamped"
        );
    }

    // Channel order: every channel has its own frequency.
    for (ch, plane) in whole.iter().enumerate() {
        assert_eq!(
            dominant(plane, case.rate, case.channels),
            ch,
            "{name}: channel {ch} does not carry {} Hz",
            FREQS[ch]
        );
    }

    // ffmpeg stems against the generating formula. Integer codings are within 2 LSB (ffmpeg
    // rounds to 32 bits and then truncates 24-bit codings), floats within their rounding.
    if case.tool == Tool::Ffmpeg {
        let tolerance = match case.enc {
            Enc::F32 => 2.0 * case.amplitude * f64::from(f32::EPSILON),
            Enc::F64 => 1e-12,
            int => 2.0 / f64::from(1u32 << (int.bits() - 1)),
        };
        for (ch, plane) in whole.iter().enumerate() {
            let w = 2.0 * PI * FREQS[ch] / f64::from(case.rate);
            for (n, &s) in plane.iter().enumerate() {
                let want = case.amplitude * (w * n as f64).sin();
                assert!(
                    (s - want).abs() <= tolerance,
                    "{name}: channel {ch} frame {n}: {s} is not {want} (±{tolerance:e})"
                );
            }
        }
    }
}

/// One `#[test]` per case, plus [`ALL`] for the coverage check.
macro_rules! cases {
    ($($name:ident = $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check(stringify!($name), &$case);
            }
        )*
        const ALL: &[(&str, Case)] = &[$((stringify!($name), $case)),*];
    };
}

cases! {
    // ffmpeg (aevalsrc). ffmpeg writes WAVE_FORMAT_EXTENSIBLE for anything but 8/16-bit
    // integer PCM in one or two channels, so all the >16-bit WAVs below are 0xFFFE.
    ffmpeg_wav_s16_stereo_44k = ff("wav", 44_100, 2, Enc::S16, "pcm_s16le", "wav", WAV_PCM);
    ffmpeg_wav_s24_51_48k = ff("wav", 48_000, 6, Enc::S24, "pcm_s24le", "wav", WAV_EXT_PCM);
    ffmpeg_wav_s32_mono_96k = ff("wav", 96_000, 1, Enc::S32, "pcm_s32le", "wav", WAV_EXT_PCM);
    // Over full scale (1.5): float stems may exceed 0 dBFS and must not be clamped.
    ffmpeg_wav_f32_stereo_48k_over_full_scale = Case {
        amplitude: 1.5,
        ..ff("wav", 48_000, 2, Enc::F32, "pcm_f32le", "wav", WAV_EXT_FLOAT)
    };
    ffmpeg_wav_f64_mono_44k = ff("wav", 44_100, 1, Enc::F64, "pcm_f64le", "wav", WAV_EXT_FLOAT);
    ffmpeg_aiff_s16_mono_48k = ff("aiff", 48_000, 1, Enc::S16, "pcm_s16be", "aiff", Kind::Aiff);
    ffmpeg_aiff_s24_51_96k = ff("aiff", 96_000, 6, Enc::S24, "pcm_s24be", "aiff", Kind::Aiff);
    ffmpeg_aiff_s32_stereo_44k = ff("aiff", 44_100, 2, Enc::S32, "pcm_s32be", "aiff", Kind::Aiff);
    ffmpeg_aifc_f32_stereo_44k =
        ff("aifc", 44_100, 2, Enc::F32, "pcm_f32be", "aiff", Kind::Aifc(*b"fl32"));
    ffmpeg_aifc_f64_mono_48k =
        ff("aifc", 48_000, 1, Enc::F64, "pcm_f64be", "aiff", Kind::Aifc(*b"fl64"));
    ffmpeg_flac_s16_stereo_48k = ff("flac", 48_000, 2, Enc::S16, "flac", "flac", Kind::Flac);
    ffmpeg_flac_s24_51_96k = ff("flac", 96_000, 6, Enc::S24, "flac", "flac", Kind::Flac);

    // sox (synth). sox writes WAVE_FORMAT_EXTENSIBLE for >16-bit integer or >2 channels, and
    // plain IEEE float (tag 3) for 32-bit float stereo.
    sox_wav_s16_mono_44k = sox("wav", 44_100, 1, Enc::S16, "pcm_s16le", "wav", WAV_PCM);
    sox_wav_s24_stereo_48k = sox("wav", 48_000, 2, Enc::S24, "pcm_s24le", "wav", WAV_EXT_PCM);
    sox_wav_s24_51_96k = sox("wav", 96_000, 6, Enc::S24, "pcm_s24le", "wav", WAV_EXT_PCM);
    sox_wav_f32_stereo_48k = sox("wav", 48_000, 2, Enc::F32, "pcm_f32le", "wav", WAV_FLOAT);
    sox_aiff_s16_stereo_44k = sox("aiff", 44_100, 2, Enc::S16, "pcm_s16be", "aiff", Kind::Aiff);
    sox_aiff_s24_mono_96k = sox("aiff", 96_000, 1, Enc::S24, "pcm_s24be", "aiff", Kind::Aiff);
    sox_aifc_s16_stereo_48k =
        sox("aifc", 48_000, 2, Enc::S16, "pcm_s16be", "aiff", Kind::Aifc(*b"NONE"));
    sox_flac_s16_mono_44k = sox("flac", 44_100, 1, Enc::S16, "flac", "flac", Kind::Flac);
    sox_flac_s24_stereo_96k = sox("flac", 96_000, 2, Enc::S24, "flac", "flac", Kind::Flac);
}

/// The matrix covers every rate, depth, container, channel count and both tools, and it
/// really includes WAVE_FORMAT_EXTENSIBLE and AIFC (each case checks its own header).
#[test]
fn matrix_covers_every_format() {
    let has = |pred: &dyn Fn(&Case) -> bool| ALL.iter().any(|(_, c)| pred(c));
    for rate in [44_100, 48_000, 96_000] {
        assert!(has(&|c| c.rate == rate), "{rate} Hz");
    }
    for channels in [1, 2, 6] {
        assert!(has(&|c| c.channels == channels), "{channels} channels");
    }
    for enc in [Enc::S16, Enc::S24, Enc::S32, Enc::F32, Enc::F64] {
        assert!(has(&|c| c.enc == enc), "{enc:?}");
    }
    for (container, enc) in [
        ("wav", Enc::S16),
        ("wav", Enc::S24),
        ("aiff", Enc::S16),
        ("aiff", Enc::S24),
        ("flac", Enc::S16),
        ("flac", Enc::S24),
    ] {
        for tool in [Tool::Ffmpeg, Tool::Sox] {
            assert!(
                has(&|c| c.tool == tool && c.container == container && c.enc == enc),
                "{tool:?} {container} {enc:?}"
            );
        }
    }
    assert!(has(&|c| c.kind == WAV_EXT_PCM && c.channels == 6));
    assert!(has(&|c| c.kind == WAV_EXT_FLOAT));
    assert!(has(&|c| matches!(c.kind, Kind::Aifc(_)) && c.enc.is_float()));
}

/// A BWF written by ffmpeg: our `bext` reader finds its TimeReference, including one past
/// 2^32 (a 96 kHz stem starting late in the day), and the audio decodes like any WAV.
#[test]
fn ffmpeg_bwf_time_reference() {
    let dir = TempDir::new("decode-formats-bwf");
    for (rate, time_reference) in [(48_000u32, 123_456u64), (96_000, 96_000 * 86_399)] {
        let path = dir.path(&format!("bwf-{rate}.wav"));
        let args = [
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &format!("aevalsrc=exprs=0.5*sin(2*PI*300*t)|0.5*sin(2*PI*500*t):s={rate}:d={SECONDS}"),
            "-c:a",
            "pcm_s24le",
            "-write_bext",
            "1",
            "-metadata",
            &format!("time_reference={time_reference}"),
            &path_arg(&path),
        ]
        .map(String::from);
        run("ffmpeg", &args);
        let bytes = std::fs::read(&path).expect("read bwf");
        let bext = find_chunk(&bytes[12..], b"bext", false);
        // TimeReferenceLow/High at offset 338 of the bext body.
        assert_eq!(
            u64::from_le_bytes(bext[338..346].try_into().expect("8 bytes")),
            time_reference,
            "ffmpeg wrote the bext TimeReference"
        );

        assert_eq!(
            bwf::bext_time_reference(&path).expect("read bext"),
            Some(time_reference)
        );
        let whole = read_all(&path, 1 << 20);
        assert_bit_exact(&whole, &ffmpeg_f64(&path), "bwf");
        assert_eq!(whole[0].len() as f64, f64::from(rate) * SECONDS);
    }
}
