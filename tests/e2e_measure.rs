//! End to end: `stemforge measure` on material made by ffmpeg (not by our
//! code), checked against ffmpeg's ebur128 filter and, for true peak, against a
//! brute-force reference (sox, ≥ 8× oversampled with its very-high-quality
//! resampler). Also the CLI contract: profiles, exit codes, errors, silence.
//!
//! ffmpeg and sox must be installed: these tests fail (not skip) without them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;
use stemforge_testkit::*;

/// Runs `tool args`, failing with an install hint if it is missing and with its
/// stderr if it fails.
fn run_tool(tool: &str, args: &[&str]) -> Output {
    let o = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{tool}` ({e}): these tests need ffmpeg and sox on the PATH \
             (apt-get install -y ffmpeg sox)"
        )
    });
    assert!(
        o.status.success(),
        "`{tool} {}` failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-nostdin", "-hide_banner", "-loglevel", "error", "-y"];
    all.extend_from_slice(args);
    run_tool("ffmpeg", &all);
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// True peak (dBTP) by brute force, independent of ffmpeg and of us: sox
/// attenuates by 20 dB (sox works in 32-bit integers and would clip the
/// overs), oversamples to ≥ 8× (≥ 700 kHz) with `rate -v -b 99.7` and prints
/// the largest sample; +20 dB. `stats` prints 2 decimals.
fn sox_true_peak(p: &Path, rate: u32) -> f64 {
    let up = (rate * (768_000 / rate).max(8)).to_string();
    let o = run_tool(
        "sox",
        &[
            s(p),
            "-n",
            "gain",
            "-20",
            "rate",
            "-v",
            "-b",
            "99.7",
            &up,
            "stats",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("Pk lev dB"))
        .unwrap_or_else(|| panic!("no `Pk lev dB` in sox stats:\n{err}"));
    let overall: f64 = line
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse sox stats line `{line}`"));
    overall + 20.0
}

/// One generated file and what it should decode as.
struct Gen {
    path: PathBuf,
    rate: u32,
    bits: u64,
    container: &'static str,
    /// Hard-clipped full-band material: ffmpeg's true peak reads low on it.
    clipped: bool,
}

struct Material {
    dir: PathBuf,
    files: Vec<Gen>,
    /// A 1 kHz stereo sine reading -23.0 LUFS (10 s, 48 kHz, 24-bit).
    at_minus_23: PathBuf,
    /// 10 s of digital silence (48 kHz, 24-bit stereo).
    silent: PathBuf,
}

/// Every generated file, made once per test binary.
fn material() -> &'static Material {
    static M: OnceLock<Material> = OnceLock::new();
    M.get_or_init(|| {
        let dir = scratch("measure");
        // Programme-like master (48 kHz float): decorrelated pink noise in L/R
        // plus gated tones, the whole mix swelling by 14 dB over an 8 s cycle
        // so the loudness range is ~10 LU.
        let master = dir.join("master.wav");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "anoisesrc=color=pink:amplitude=0.35:seed=11:sample_rate=48000:duration=20",
            "-f",
            "lavfi",
            "-i",
            "anoisesrc=color=pink:amplitude=0.35:seed=23:sample_rate=48000:duration=20",
            "-f",
            "lavfi",
            "-i",
            "aevalsrc=exprs=0.12*sin(2*PI*220*t)+0.05*sin(2*PI*1760*t)*gt(mod(t\\,2)\\,1)\
             |0.10*sin(2*PI*330*t)+0.04*sin(2*PI*4400*t)*lt(mod(t\\,3)\\,1):s=48000:d=20",
            "-filter_complex",
            "[0][1][2]amerge=inputs=3,pan=stereo|c0=c0+c2|c1=c1+c3,\
             aeval=val(ch)*pow(10\\,-14*(0.5-0.5*cos(2*PI*t/8))/20):c=same",
            "-c:a",
            "pcm_f32le",
            s(&master),
        ]);
        let mut jobs: Vec<(String, u32, &str, u64, &'static str)> = Vec::new();
        for rate in [44_100u32, 48_000, 96_000] {
            for (codec, bits) in [("pcm_s16le", 16), ("pcm_s24le", 24), ("pcm_f32le", 32)] {
                let name = format!("prog_{rate}_{codec}.wav");
                jobs.push((name, rate, codec, bits, "wav"));
            }
        }
        jobs.push(("prog_48000_flac24.flac".into(), 48_000, "flac", 24, "flac"));
        jobs.push((
            "prog_44100_s24be.aiff".into(),
            44_100,
            "pcm_s24be",
            24,
            "aiff",
        ));
        let mut files: Vec<Gen> = std::thread::scope(|sc| {
            let hs: Vec<_> = jobs
                .iter()
                .map(|(name, rate, codec, bits, container)| {
                    let path = dir.join(name);
                    let master = &master;
                    sc.spawn(move || {
                        let r = format!("aresample={rate}");
                        let mut args = vec!["-i", s(master), "-af", &r, "-c:a", codec];
                        if *codec == "flac" {
                            args.extend_from_slice(&["-sample_fmt", "s32"]);
                        }
                        args.push(s(&path));
                        ffmpeg(&args);
                        Gen {
                            path,
                            rate: *rate,
                            bits: *bits,
                            container,
                            clipped: false,
                        }
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("ffmpeg thread"))
                .collect()
        });
        // A deliberately clipped stem: bright noise + tones, +12 dB, hard-clipped
        // at full scale, 24-bit: full-band content up to Nyquist, where short
        // interpolation filters under-read the inter-sample peaks.
        let clipped = dir.join("clipped_48000_s24.wav");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "anoisesrc=color=white:amplitude=0.25:seed=5:sample_rate=48000:duration=10",
            "-f",
            "lavfi",
            "-i",
            "aevalsrc=exprs=0.3*sin(2*PI*7000*t)+0.2*sin(2*PI*3100*t):s=48000:d=10",
            "-filter_complex",
            "[0][1]amerge=inputs=2,pan=stereo|c0=c0+c1|c1=0.8*c0+c1,volume=12dB,\
             aeval=clip(val(ch)\\,-1\\,1):c=same",
            "-c:a",
            "pcm_s24le",
            s(&clipped),
        ]);
        files.push(Gen {
            path: clipped,
            rate: 48_000,
            bits: 24,
            container: "wav",
            clipped: true,
        });
        // -23 dBFS peak 1 kHz sine on both channels: -23.0 LUFS (EBU Tech 3341 case 1).
        let at_minus_23 = dir.join("sine_-23.wav");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "aevalsrc=exprs=0.0707946*sin(2*PI*1000*t)|0.0707946*sin(2*PI*1000*t):s=48000:d=10",
            "-c:a",
            "pcm_s24le",
            s(&at_minus_23),
        ]);
        let silent = dir.join("silent.wav");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=48000:cl=stereo",
            "-t",
            "10",
            "-c:a",
            "pcm_s24le",
            s(&silent),
        ]);
        Material {
            dir,
            files,
            at_minus_23,
            silent,
        }
    })
}

fn measure_json(args: &[&str]) -> (Output, Value) {
    let mut all = vec!["measure", "--json"];
    all.extend_from_slice(args);
    let o = stemforge(&all);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("measure --json prints JSON ({e}):\n{}", text(&o)));
    (o, v)
}

fn no_panic(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked"),
        "stemforge panicked:\n{}",
        text(o)
    );
}

fn name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).expect("file name")
}

#[test]
fn measure_matches_ffmpeg_and_a_brute_force_true_peak() {
    let m = material();
    let paths: Vec<&str> = m.files.iter().map(|g| s(&g.path)).collect();
    let (o, v) = measure_json(&paths);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(0), "no profile: exit 0\n{}", text(&o));
    assert_eq!(v["all_pass"], true);
    let entries = v["files"].as_array().expect("files");
    assert_eq!(entries.len(), m.files.len());

    // The references, two files at a time.
    let refs: Vec<(FfR128, f64)> = std::thread::scope(|sc| {
        let hs: Vec<_> = m
            .files
            .iter()
            .map(|g| sc.spawn(|| (ffmpeg_r128(&g.path), sox_true_peak(&g.path, g.rate))))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("reference thread"))
            .collect()
    });

    let mut table = format!(
        "\n{:<26} {:>8} {:>8} {:>6} | {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6} | {:>6} {:>6}\n",
        "file", "I", "ff I", "ΔI", "LRA", "ff LRA", "ΔLRA", "TP", "ff TP", "ΔTP", "sox TP", "Δsox"
    );
    let mut bad = Vec::new();
    for ((g, e), (ff, sox_tp)) in m.files.iter().zip(entries).zip(&refs) {
        let file = name(&g.path);
        assert_eq!(e["path"], s(&g.path));
        assert!(e.get("error").is_none(), "{file}: {e:#}");
        assert_eq!(e["sample_rate"].as_u64(), Some(u64::from(g.rate)), "{file}");
        assert_eq!(e["bits_per_sample"].as_u64(), Some(g.bits), "{file}");
        assert_eq!(e["container"], g.container, "{file}");
        assert_eq!(e["channels"], 2, "{file}");
        let dur = e["duration_s"].as_f64().expect("duration");
        let want = if g.clipped { 10.0 } else { 20.0 };
        assert!((dur - want).abs() < 0.01, "{file}: {dur} s");
        let ms = &e["measurement"];
        let get = |k: &str| {
            ms[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{file}: no {k} in {ms:#}"))
        };
        let (i, lra, tp) = (
            get("integrated_lufs"),
            get("loudness_range_lu"),
            get("true_peak_dbtp"),
        );
        let (di, dlra, dtp, dsox) = (i - ff.i, lra - ff.lra, tp - ff.tp, tp - sox_tp);
        table.push_str(&format!(
            "{file:<26} {i:>8.3} {:>8.3} {di:>+6.3} | {lra:>6.3} {:>6.3} {dlra:>+6.3} | \
             {tp:>6.3} {:>6.3} {dtp:>+6.3} | {sox_tp:>6.2} {dsox:>+6.2}\n",
            ff.i, ff.lra, ff.tp
        ));
        if di.abs() > 0.1 {
            bad.push(format!("{file}: |ΔI| = {:.3} LU > 0.1", di.abs()));
        }
        if dlra.abs() > 0.5 {
            bad.push(format!("{file}: |ΔLRA| = {:.3} LU > 0.5", dlra.abs()));
        }
        // The brute-force reference is the arbiter of true peak everywhere.
        if dsox.abs() > 0.2 {
            bad.push(format!(
                "{file}: true peak {tp:.3} vs brute force {sox_tp:.2}: |Δ| > 0.2 dB"
            ));
        }
        if g.clipped {
            // ffmpeg resamples to 192 kHz with a short filter and reads hard-clipped
            // material low (by ~0.7 dB here); we must not read below ffmpeg.
            if dtp < -0.2 {
                bad.push(format!(
                    "{file}: true peak {tp:.3} is {:.3} dB below ffmpeg's",
                    -dtp
                ));
            }
        } else if dtp.abs() > 0.2 {
            bad.push(format!("{file}: |ΔTP| = {:.3} dB > 0.2", dtp.abs()));
        }
    }
    eprintln!(
        "{table}(ours vs ffmpeg ebur128=peak=true at full precision; sox TP: \
         gain -20, rate -v -b 99.7 to >= 8x, stats, +20 dB)"
    );
    assert!(bad.is_empty(), "out of tolerance:\n{}", bad.join("\n"));
}

#[test]
fn measure_json_has_unique_keys() {
    // Duplicate object keys are legal-but-undefined JSON (RFC 8259 §4): parsers
    // keep the first, the last, or reject the document.
    let m = material();
    let o = stemforge(&["measure", "--json", s(&m.at_minus_23)]);
    no_panic(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    let file_obj = out.split("\"files\"").nth(1).expect("files");
    let paths = file_obj.matches("\"path\":").count();
    assert_eq!(
        paths,
        1,
        "one file entry must carry one \"path\" key:\n{}",
        text(&o)
    );
}

#[test]
fn profile_pass_fail_and_unknown() {
    let m = material();
    let f = s(&m.at_minus_23);

    let (o, v) = measure_json(&["--profile", "ebu-r128", f]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e = &v["files"][0];
    let i = e["measurement"]["integrated_lufs"].as_f64().expect("I");
    assert!((i + 23.0).abs() <= 0.1, "{i}");
    assert_eq!(e["verdict"]["verdict"], "pass", "{e:#}");
    assert_eq!(v["all_pass"], true);
    assert!(
        v["delivery"].is_object(),
        "the resolved delivery is reported"
    );

    let (o, v) = measure_json(&["--profile", "spotify", f]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let verdict = &v["files"][0]["verdict"];
    assert_eq!(verdict["verdict"], "fail", "{verdict:#}");
    let reasons: Vec<&str> = verdict["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r.as_str().expect("reason"))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("integrated")),
        "{reasons:?}"
    );
    assert_eq!(v["all_pass"], false);

    let o = stemforge(&["measure", "--profile", "nope", f]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nope"), "{}", text(&o));
    for p in deliverables_spec::delivery::PROFILES {
        assert!(
            err.contains(p.name),
            "stderr lists {}:\n{}",
            p.name,
            text(&o)
        );
    }
}

#[test]
fn text_mode_shows_values_and_markers() {
    let m = material();
    let f = s(&m.at_minus_23);
    let o = stemforge(&["measure", "--profile", "ebu-r128", f]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("integrated"), "{out}");
    assert!(out.contains("-22.9") || out.contains("-23.0"), "{out}");
    assert!(out.contains("pass") && !out.contains("FAIL"), "{out}");

    let o = stemforge(&["measure", "--profile", "spotify", f]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAIL"), "{out}");
    assert!(out.contains("integrated"), "{out}");
}

#[test]
fn corrupt_file_is_an_error_entry_and_the_rest_are_measured() {
    let m = material();
    let dir = &m.dir;
    // Pseudo-random bytes (xorshift) named .wav, and the same behind a RIFF/WAVE header.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    let random = dir.join("random.wav");
    std::fs::write(&random, &noise).expect("write random.wav");
    let riff = dir.join("riff_garbage.wav");
    let mut bytes = b"RIFF".to_vec();
    bytes.extend_from_slice(&(noise.len() as u32 + 4).to_le_bytes());
    bytes.extend_from_slice(b"WAVE");
    bytes.extend_from_slice(&noise);
    std::fs::write(&riff, &bytes).expect("write riff_garbage.wav");

    let good = &m.files[0].path;
    let (o, v) = measure_json(&[s(good), s(&random), s(&m.at_minus_23), s(&riff)]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(v["all_pass"], false);
    let files = v["files"].as_array().expect("files");
    assert_eq!(files.len(), 4);
    for (k, e) in files.iter().enumerate() {
        let bad = k == 1 || k == 3;
        if bad {
            let err = e["error"].as_str().unwrap_or_else(|| panic!("{e:#}"));
            assert!(!err.is_empty());
            assert!(e.get("measurement").is_none(), "{e:#}");
        } else {
            assert!(e.get("error").is_none(), "{e:#}");
            assert!(e["measurement"]["integrated_lufs"].is_f64(), "{e:#}");
        }
    }
    eprintln!(
        "random.wav: {}\nriff_garbage.wav: {}",
        files[1]["error"], files[3]["error"]
    );
}

#[test]
fn silent_file_is_null_with_a_note_and_no_infinities() {
    let m = material();
    let (o, v) = measure_json(&[s(&m.silent)]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ms = &v["files"][0]["measurement"];
    assert!(ms["integrated_lufs"].is_null(), "{ms:#}");
    assert!(ms["true_peak_dbtp"].is_null(), "{ms:#}");
    assert!(ms["sample_peak_dbfs"].is_null(), "{ms:#}");
    let notes = ms["notes"].as_array().expect("notes");
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("silent"))),
        "{notes:?}"
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let words: Vec<String> = out
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(str::to_ascii_lowercase)
        .collect();
    for bad in ["inf", "infinity", "nan"] {
        assert!(!words.iter().any(|w| w == bad), "`{bad}` in:\n{out}");
    }
    // With a profile, silence fails on integrated loudness (and still no panic).
    let (o, v) = measure_json(&["--profile", "ebu-r128", s(&m.silent)]);
    no_panic(&o);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(v["files"][0]["verdict"]["verdict"], "fail");
}

/// A float file holding one sample that is not audio is refused, naming the
/// frame, the way `check` refuses it as a stem: one NaN used to read as
/// silence, one +Inf as all zeros, and 1e30 samples as +592 LUFS.
#[test]
fn invalid_float_samples_are_refused_with_their_frame() {
    let dir = scratch("invalid-samples");
    let rate = 48_000u32;
    let write = |name: &str, bad: f32, at: usize| {
        let p = dir.join(name);
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&p, spec).expect("create");
        for i in 0..rate as usize * 2 {
            let x = 0.25 * (i as f32 * 0.0573).sin();
            w.write_sample(if i == at { bad } else { x })
                .expect("write");
            w.write_sample(x).expect("write");
        }
        w.finalize().expect("finalize");
        p
    };
    let cases = [
        (write("nan.wav", f32::NAN, 12_345), 12_345u64),
        (write("inf.wav", f32::INFINITY, 40_000), 40_000),
        (write("huge.wav", 1e30, 7), 7),
    ];
    for (p, frame) in &cases {
        let o = stemforge(&["measure", s(p)]);
        no_panic(&o);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let out = text(&o);
        assert!(
            out.contains(&format!("first at frame {frame}")) && out.contains("not audio"),
            "{out}"
        );
        assert!(!out.contains("LUFS"), "no loudness for such a file: {out}");
        let (o, v) = measure_json(&[s(p)]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            v["files"][0]["error"]
                .as_str()
                .is_some_and(|e| e.contains(&format!("frame {frame}"))),
            "{v:#}"
        );
    }
}
