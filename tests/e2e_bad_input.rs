//! Bad input never panics and never takes the job down: every kind of broken
//! stem file gets its own finding naming the file, through the real binary,
//! and the good stem beside them is still checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use stemforge_testkit::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg (install ffmpeg)");
    assert!(o.status.success(), "ffmpeg {args:?}: {}", text(&o));
}

/// A 16-bit WAV with a header that claims ten times the data it holds.
fn lying_wav(path: &Path) {
    let frames = 4800u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + frames * 4 * 10).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&48_000u32.to_le_bytes());
    b.extend_from_slice(&(48_000u32 * 4).to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(frames * 4 * 10).to_le_bytes());
    for i in 0..frames {
        let v = ((f64::from(i) * 0.05).sin() * 8000.0) as i16;
        b.extend_from_slice(&v.to_le_bytes());
        b.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, b).expect("write lying wav");
}

/// A spec folder full of broken stems, plus a file outside it.
fn bad_session() -> (PathBuf, PathBuf) {
    let root = scratch("bad-input");
    let dir = root.join("session");
    std::fs::create_dir_all(dir.join("folder.wav")).expect("mkdir");
    let tone = |path: &Path, extra: &[&str]| {
        // A different pitch per file: no two of them are identical audio.
        let source = format!(
            "sine=frequency={}:sample_rate=48000:duration=1",
            300 + 100 * path.as_os_str().len()
        );
        let mut args = vec!["-f", "lavfi", "-i", source.as_str(), "-ac", "2"];
        args.extend_from_slice(extra);
        args.push(p(path));
        ffmpeg(&args);
    };
    tone(&dir.join("good.wav"), &["-c:a", "pcm_s24le"]);
    tone(&dir.join("eight.wav"), &["-c:a", "pcm_u8"]);
    tone(&root.join("outside.wav"), &["-c:a", "pcm_s24le"]);
    std::fs::write(dir.join("empty.wav"), b"").expect("write");
    std::fs::write(
        dir.join("text.wav"),
        "These are the session notes, not audio.\n",
    )
    .expect("write");
    lying_wav(&dir.join("lying.wav"));
    let spec = hound::WavSpec {
        channels: 64,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(dir.join("sixtyfour.wav"), spec).expect("wav");
    for i in 0..64 * 480 {
        w.write_sample((i % 64) as i16 * 100).expect("sample");
    }
    w.finalize().expect("finalize");
    std::os::unix::fs::symlink(root.join("outside.wav"), dir.join("link.wav")).expect("symlink");
    // A float stem with NaN and infinite samples (a plug-in blew up).
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(dir.join("nan.wav"), spec).expect("wav");
    for i in 0..48_000u32 {
        let v = match i {
            24_000 => f32::NAN,
            24_001 => f32::INFINITY,
            _ => (i as f32 * 0.031).sin() * 0.2,
        };
        w.write_sample(v).expect("sample");
        w.write_sample(v).expect("sample");
    }
    w.finalize().expect("finalize");
    // A header claiming 4 GHz, and a named pipe (opening it would block).
    let mut b = std::fs::read(dir.join("lying.wav")).expect("read");
    b[24..28].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    std::fs::write(dir.join("rate.wav"), b).expect("write");
    let o = Command::new("mkfifo")
        .arg(dir.join("pipe.wav"))
        .output()
        .expect("mkfifo");
    assert!(o.status.success(), "{}", text(&o));

    let stems = [
        "good.wav",
        "empty.wav",
        "text.wav",
        "eight.wav",
        "sixtyfour.wav",
        "missing.wav",
        "folder.wav",
        "../outside.wav",
        "link.wav",
        "lying.wav",
        "nan.wav",
        "rate.wav",
        "pipe.wav",
    ];
    let list: String = stems
        .iter()
        .map(|s| format!("  {{ file = \"{s}\", role = \"other\" }},\n"))
        .collect();
    let spec = format!(
        "schema_version = 1\n[delivery]\noutput_dir = \"out\"\n[variants.full]\n\n\
         [[titles]]\nname = \"Bad\"\nstems = [\n{list}]\n"
    );
    let spec_path = dir.join("spec.toml");
    std::fs::write(&spec_path, spec).expect("write spec");
    (root, spec_path)
}

fn findings_for<'a>(r: &'a Value, file: &str) -> Vec<&'a Value> {
    r["titles"][0]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["files"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == file))
        })
        .collect()
}

fn assert_finding(r: &Value, file: &str, check: &str, words: &[&str]) {
    let f = findings_for(r, file);
    let hit = f
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no `{check}` finding for {file}; its findings: {f:#?}"));
    assert_eq!(hit["severity"], "error", "{hit}");
    let msg = hit["message"].as_str().unwrap_or_default();
    for w in words {
        assert!(msg.contains(w), "`{check}` for {file}: {msg:?} lacks {w:?}");
    }
    assert!(!hit["fix"].as_str().unwrap_or_default().is_empty());
}

#[test]
fn every_broken_stem_gets_its_own_error_and_nothing_panics() {
    let (root, spec) = bad_session();
    // The session folder is the only media root.
    let session_root = spec.parent().map(p).unwrap_or_default().to_string();
    let confined = [("STEMFORGE_MEDIA_ROOTS", session_root.as_str())];
    let o = stemforge_env(&["check", p(&spec), "--json"], &confined);
    assert_eq!(
        o.status.code(),
        Some(1),
        "errors exit 1, not a panic: {}",
        text(&o)
    );
    let r: Value = serde_json::from_slice(&o.stdout).expect("json");

    assert_finding(
        &r,
        "empty.wav",
        "unreadable",
        &["empty.wav", "empty (0 bytes)"],
    );
    assert_finding(
        &r,
        "text.wav",
        "unreadable",
        &["text.wav", "not a readable audio file"],
    );
    assert_finding(&r, "eight.wav", "bit_depth", &["'eight.wav' is 8-bit"]);
    assert_finding(
        &r,
        "sixtyfour.wav",
        "unreadable",
        &["declares 64 channels", "mono, stereo or 5.1"],
    );
    assert_finding(
        &r,
        "missing.wav",
        "unreadable",
        &["missing.wav", "cannot open"],
    );
    assert_finding(&r, "folder.wav", "unreadable", &["folder.wav", "directory"]);
    assert_finding(
        &r,
        "../outside.wav",
        "path",
        &["outside the media roots", "outside.wav"],
    );
    assert_finding(
        &r,
        "link.wav",
        "path",
        &["symbolic link", "outside the media roots"],
    );
    assert_finding(
        &r,
        "lying.wav",
        "truncated",
        &["ends at frame 4800", "declares 48000 frames"],
    );
    assert_finding(
        &r,
        "nan.wav",
        "invalid_samples",
        &["4 sample(s)", "frame 24000"],
    );
    assert_finding(
        &r,
        "rate.wav",
        "unreadable",
        &["sample rate of 4000000000 Hz"],
    );
    assert_finding(&r, "pipe.wav", "unreadable", &["not a regular file"]);
    // The good stem is still read and measured.
    let good = r["titles"][0]["stems"]
        .as_array()
        .expect("stems")
        .iter()
        .find(|s| s["file"] == "good.wav")
        .expect("good stem reported");
    assert_eq!(good["frames"], 48_000);
    assert!(findings_for(&r, "good.wav").is_empty(), "{r:#}");

    // Rendering refuses the spec up front, naming each bad field.
    let o = stemforge_env(&["render", p(&spec)], &confined);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for (i, words) in [
        (1, "is empty (0 bytes)"),
        (5, "no such file"),
        (6, "is a folder"),
        (7, "outside the media roots"),
        (8, "symbolic link"),
    ] {
        let field = format!("titles[0].stems[{i}].file");
        assert!(err.contains(&field), "{field} not named: {err}");
        assert!(err.contains(words), "{words:?} missing: {err}");
    }

    // The folder above, made a media root, lets the outside file in.
    let roots = format!("{session_root}:{}", p(&root));
    let o = stemforge_env(
        &["check", p(&spec), "--json"],
        &[("STEMFORGE_MEDIA_ROOTS", roots.as_str())],
    );
    let r: Value = serde_json::from_slice(&o.stdout).expect("json");
    for f in ["../outside.wav", "link.wav"] {
        assert!(
            findings_for(&r, f).iter().all(|x| x["check"] != "path"),
            "{f}: {r:#}"
        );
    }
    // (The link and the file it points to are then one audio, twice.)
    assert!(
        findings_for(&r, "link.wav")
            .iter()
            .any(|x| x["check"] == "identical_stems")
    );

    // No media roots configured (one user's machine): nothing is confined.
    let o = stemforge(&["check", p(&spec), "--json"]);
    let r: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        !r["titles"][0]["findings"].to_string().contains("\"path\""),
        "{r:#}"
    );
}
