//! Files written by `worker::bwf::BwfWriter` checked against independent readers: ffprobe
//! (bext tags, stream parameters, channel layout), ffmpeg (raw sample bytes), hound and our own
//! `StemReader` (sample values).
//!
//! These tests need `ffprobe` and `ffmpeg` on the PATH and fail (not skip) without them.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use stemforge_worker::bwf::{self, Bext, BextLoudness, BwfWriter, Layout, WavFormat};
use stemforge_worker::decode::StemReader;

use stemforge_testkit::TempDir;

const RATE: u32 = 48_000;

/// Runs an ffmpeg tool, failing the test with an install hint if it is missing.
fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{tool}` ({e}): these tests need ffmpeg's `ffprobe` and `ffmpeg` on the \
             PATH; install ffmpeg (e.g. `apt-get install ffmpeg`)"
        )
    });
    assert!(
        out.status.success(),
        "`{tool} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ffprobe(path: &Path) -> Value {
    let path = path.to_str().expect("utf-8 temp path");
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
            path,
        ],
    );
    serde_json::from_slice(&out).expect("ffprobe prints JSON")
}

/// `ffmpeg -i FILE -f <raw> -`: the decoded samples as raw bytes.
fn ffmpeg_raw(path: &Path, raw_format: &str) -> Vec<u8> {
    let path = path.to_str().expect("utf-8 temp path");
    run(
        "ffmpeg",
        &["-nostdin", "-v", "error", "-i", path, "-f", raw_format, "-"],
    )
}

fn test_bext(time_reference: u64) -> Bext {
    let mut umid = [0u8; 64];
    for (i, b) in umid.iter_mut().enumerate().take(32) {
        *b = 0x10 + i as u8;
    }
    Bext {
        description: "stemforge test: drums stem".to_string(),
        originator: "stemforge".to_string(),
        originator_reference: "SFTEST0000000001".to_string(),
        origination_date: "2024-05-17".to_string(),
        origination_time: "13:45:09".to_string(),
        time_reference,
        version: 2,
        umid,
        loudness: BextLoudness {
            integrated_lufs: Some(-23.04),
            loudness_range_lu: Some(6.1),
            max_true_peak_dbtp: Some(-1.5),
            max_momentary_lufs: None,
            max_short_term_lufs: Some(-19.9),
        },
        // Odd length: the writer adds a NUL so the bext chunk stays even (hound ignores pad
        // bytes after unknown chunks).
        coding_history: "A=PCM,F=48000,W=24,M=stereo,T=stemforge\r\nA=PCM,F=48000,W=24,T=x\r\n"
            .to_string(),
    }
}

/// The samples of a test signal: a different sine per channel.
fn signal(channels: u16, frames: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(frames * usize::from(channels));
    for i in 0..frames {
        for ch in 0..channels {
            let f = 220.0 * f64::from(ch + 1) + 3.0;
            let a = 0.9 - 0.1 * f64::from(ch);
            out.push(a * stemforge_testkit::signal::sine_at(f, RATE, i));
        }
    }
    out
}

/// The signal quantised to `bits`-bit integer codes.
fn int_codes(sig: &[f64], bits: u16) -> Vec<i32> {
    let scale = f64::from(1u32 << (bits - 1));
    sig.iter()
        .map(|&s| (s * scale).round().clamp(-scale, scale - 1.0) as i32)
        .collect()
}

/// Little-endian sample bytes of integer codes.
fn int_bytes(codes: &[i32], bits: u16) -> Vec<u8> {
    let n = usize::from(bits / 8);
    codes
        .iter()
        .flat_map(|c| c.to_le_bytes()[..n].to_vec())
        .collect()
}

fn write_file(path: &Path, format: &WavFormat, bext: &Bext, data: &[u8]) -> Layout {
    let file = BufWriter::new(File::create(path).expect("create wav"));
    let mut w = BwfWriter::new(file, format, bext).expect("writer");
    // Several calls, not frame aligned.
    for part in data.chunks(1001) {
        w.write_samples(part).expect("write samples");
    }
    let (_, layout) = w.finish().expect("finish");
    layout
}

fn tag<'a>(probe: &'a Value, name: &str) -> &'a str {
    probe["format"]["tags"][name]
        .as_str()
        .unwrap_or_else(|| panic!("ffprobe shows no format tag '{name}': {probe:#}"))
}

/// A tag that ffmpeg's WAV demuxer renames to a generic key: ffmpeg reads the bext field under
/// its own name and then converts it (`wav_metadata_conv`: description → comment,
/// originator → encoded_by, origination_date → date, origination_time → creation_time).
/// Accepts either name so the test holds for ffmpeg versions with and without the conversion.
fn bext_tag<'a>(probe: &'a Value, bext_name: &str, ffmpeg_name: &str) -> &'a str {
    let tags = &probe["format"]["tags"];
    tags[bext_name]
        .as_str()
        .or_else(|| tags[ffmpeg_name].as_str())
        .unwrap_or_else(|| {
            panic!("ffprobe shows neither tag '{bext_name}' nor '{ffmpeg_name}': {probe:#}")
        })
}

/// Checks the bext tags ffprobe shows against what we wrote.
fn check_tags(probe: &Value, bext: &Bext) {
    assert_eq!(bext_tag(probe, "description", "comment"), bext.description);
    assert_eq!(bext_tag(probe, "originator", "encoded_by"), bext.originator);
    assert_eq!(
        tag(probe, "originator_reference"),
        bext.originator_reference
    );
    assert_eq!(
        bext_tag(probe, "origination_date", "date"),
        bext.origination_date
    );
    assert_eq!(
        bext_tag(probe, "origination_time", "creation_time"),
        bext.origination_time
    );
    assert_eq!(
        tag(probe, "time_reference"),
        bext.time_reference.to_string()
    );
    assert_eq!(tag(probe, "coding_history"), bext.coding_history);
    // ffmpeg prints a version >= 1 UMID as hex, only the first 32 bytes when the rest is zero.
    let umid_len = if bext.umid[32..].iter().all(|&b| b == 0) {
        32
    } else {
        64
    };
    let umid: String = bext.umid[..umid_len]
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(tag(probe, "umid"), format!("0x{umid}"));
}

/// Checks stream parameters ffprobe shows.
fn check_stream(probe: &Value, channels: u16, codec: &str, bits: u64, frames: u64) {
    let streams = probe["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 1, "{probe:#}");
    let s = &streams[0];
    assert_eq!(s["codec_type"], "audio");
    assert_eq!(s["codec_name"], codec, "{s:#}");
    assert_eq!(s["sample_rate"], RATE.to_string());
    assert_eq!(s["channels"], u64::from(channels));
    assert_eq!(s["bits_per_sample"], bits, "{s:#}");
    assert_eq!(s["duration_ts"], frames, "{s:#}");
}

/// Decodes with `StemReader` into interleaved f64.
fn decode_all(path: &Path, channels: u16, bits: u32, frames: u64) -> Vec<f64> {
    let mut r = StemReader::open(path).expect("StemReader opens our file");
    let info = r.info().clone();
    assert_eq!(info.sample_rate, RATE);
    assert_eq!(info.channels, usize::from(channels));
    assert_eq!(info.frames, Some(frames));
    assert_eq!(info.bits_per_sample, Some(bits));
    let ch = usize::from(channels);
    let mut planar = vec![vec![0.0f64; 4096]; ch];
    let mut out = Vec::new();
    loop {
        let n = r.read(&mut planar, 4096).expect("decode");
        if n == 0 {
            break;
        }
        for i in 0..n {
            for plane in &planar {
                out.push(plane[i]);
            }
        }
    }
    assert_eq!(out.len() as u64, frames * u64::from(channels));
    out
}

/// One integer-PCM file through every reader.
fn check_int_file(test: &str, channels: u16, bits: u16, time_reference: u64) -> Value {
    let dir = TempDir::new(test);
    let path = dir.path("out.wav");
    let frames = RATE as usize;
    let codes = int_codes(&signal(channels, frames), bits);
    let data = int_bytes(&codes, bits);
    let format = WavFormat {
        sample_rate: RATE,
        channels,
        bits_per_sample: bits,
        float: false,
        channel_mask: None,
    };
    let bext = test_bext(time_reference);
    let layout = write_file(&path, &format, &bext, &data);
    assert_eq!(layout.frames, frames as u64);
    assert_eq!(layout.data_bytes, data.len() as u64);

    // Our reader.
    assert_eq!(
        bwf::read_bext(&path).expect("read_bext"),
        Some(bext.clone())
    );
    assert_eq!(
        bwf::bext_time_reference(&path).expect("time reference"),
        Some(time_reference)
    );

    // ffprobe.
    let probe = ffprobe(&path);
    check_tags(&probe, &bext);
    let codec = format!("pcm_s{bits}le");
    check_stream(&probe, channels, &codec, u64::from(bits), frames as u64);

    // ffmpeg: the same bytes back.
    let raw = ffmpeg_raw(&path, &format!("s{bits}le"));
    assert!(
        raw == data,
        "ffmpeg decodes different bytes ({} vs {})",
        raw.len(),
        data.len()
    );

    // hound.
    let mut hr = hound::WavReader::open(&path).expect("hound opens our file");
    let spec = hr.spec();
    assert_eq!(spec.channels, channels);
    assert_eq!(spec.sample_rate, RATE);
    assert_eq!(spec.bits_per_sample, bits);
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    let hs: Vec<i32> = hr
        .samples::<i32>()
        .collect::<Result<_, _>>()
        .expect("hound samples");
    assert!(hs == codes, "hound reads different samples");

    // StemReader: code c reads as c / 2^(bits-1), exactly.
    let decoded = decode_all(&path, channels, u32::from(bits), frames as u64);
    let scale = f64::from(1u32 << (bits - 1));
    for (i, (&d, &c)) in decoded.iter().zip(&codes).enumerate() {
        assert_eq!(d, f64::from(c) / scale, "sample {i}");
    }
    probe
}

#[test]
fn stereo_24_bit() {
    check_int_file("stereo24", 2, 24, 1_234_567);
}

#[test]
fn stereo_16_bit_time_reference_above_32_bits() {
    // 0x1_0000_0000 + 0x1234_5678: the high u32 must be written after the low u32.
    let tr = (1u64 << 32) + 0x1234_5678;
    let probe = check_int_file("stereo16", 2, 16, tr);
    assert_eq!(tag(&probe, "time_reference"), "4600387192");
}

#[test]
fn mono_32_bit_int() {
    check_int_file("mono32", 1, 32, 0);
}

#[test]
fn six_channel_24_bit_is_5_1_side() {
    let probe = check_int_file("six24", 6, 24, 48_000 * 3600);
    assert_eq!(
        probe["streams"][0]["channel_layout"], "5.1(side)",
        "{probe:#}"
    );
}

#[test]
fn stereo_32_bit_float() {
    let dir = TempDir::new("stereo-float");
    let path = dir.path("out.wav");
    let frames = RATE as usize;
    // Slightly over full scale on purpose: float must pass through unclamped.
    let samples: Vec<f32> = signal(2, frames)
        .iter()
        .map(|&s| (s * 1.1) as f32)
        .collect();
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let format = WavFormat {
        sample_rate: RATE,
        channels: 2,
        bits_per_sample: 32,
        float: true,
        channel_mask: None,
    };
    let bext = test_bext(86_399 * u64::from(RATE));
    let layout = write_file(&path, &format, &bext, &data);
    assert_eq!(layout.frames, frames as u64);

    // The fact chunk holds the frame count.
    let mut f = File::open(&path).expect("open");
    let chunks = bwf::read_chunks(&mut f).expect("chunks");
    let ids: Vec<&[u8; 4]> = chunks.iter().map(|c| &c.id).collect();
    assert_eq!(ids, [b"JUNK", b"fmt ", b"bext", b"fact", b"data"]);
    let bytes = std::fs::read(&path).expect("read");
    let fact = chunks[3].offset as usize;
    assert_eq!(
        u32::from_le_bytes(bytes[fact..fact + 4].try_into().expect("4 bytes")),
        RATE
    );

    assert_eq!(
        bwf::read_bext(&path).expect("read_bext"),
        Some(bext.clone())
    );

    let probe = ffprobe(&path);
    check_tags(&probe, &bext);
    check_stream(&probe, 2, "pcm_f32le", 32, frames as u64);
    assert_eq!(probe["streams"][0]["sample_fmt"], "flt");

    let raw = ffmpeg_raw(&path, "f32le");
    assert!(raw == data, "ffmpeg decodes different bytes");

    let mut hr = hound::WavReader::open(&path).expect("hound opens our file");
    assert_eq!(hr.spec().sample_format, hound::SampleFormat::Float);
    let hs: Vec<f32> = hr
        .samples::<f32>()
        .collect::<Result<_, _>>()
        .expect("hound samples");
    assert!(hs == samples, "hound reads different samples");

    let decoded = decode_all(&path, 2, 32, frames as u64);
    for (i, (&d, &s)) in decoded.iter().zip(&samples).enumerate() {
        assert_eq!(d, f64::from(s), "sample {i}");
    }
}

#[test]
fn patched_loudness_keeps_the_file_readable() {
    let dir = TempDir::new("patch");
    let path = dir.path("out.wav");
    let codes = int_codes(&signal(2, 4800), 24);
    let data = int_bytes(&codes, 24);
    let format = WavFormat {
        sample_rate: RATE,
        channels: 2,
        bits_per_sample: 24,
        float: false,
        channel_mask: None,
    };
    let bext = Bext {
        loudness: BextLoudness::default(),
        ..test_bext(0)
    };
    let layout = write_file(&path, &format, &bext, &data);
    let measured = BextLoudness {
        integrated_lufs: Some(-23.0),
        loudness_range_lu: Some(4.2),
        max_true_peak_dbtp: Some(-1.04),
        max_momentary_lufs: Some(-15.5),
        max_short_term_lufs: Some(-20.0),
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open for patch");
    bwf::patch_loudness(&mut f, layout.bext_offset, &measured).expect("patch");
    drop(f);
    let back = bwf::read_bext(&path).expect("read").expect("bext");
    assert_eq!(back.loudness, measured);
    check_tags(&ffprobe(&path), &bext);
    assert!(ffmpeg_raw(&path, "s24le") == data);
}
