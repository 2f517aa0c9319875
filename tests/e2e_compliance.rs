//! Compliance end to end: profiles and verdicts, dialogue gating against
//! stems whose speech regions are known, Broadcast WAV metadata read back by
//! ffprobe and by our reader, and the report and CSV beside the manifest.

use std::path::{Path, PathBuf};
use std::process::Command;

use stemforge_testkit::*;

/// ffprobe's format tags of a file, as JSON.
fn ffprobe_tags(p: &Path) -> serde_json::Value {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-show_format", "-of", "json"])
        .arg(p)
        .output()
        .expect("ffprobe must be installed (apt-get install -y ffmpeg; .ci/run does this)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("ffprobe JSON");
    v["format"]["tags"].clone()
}

/// ffmpeg 5 renames some bext fields in its tags; accept either name.
fn tag<'a>(tags: &'a serde_json::Value, names: &[&str]) -> &'a str {
    names
        .iter()
        .find_map(|n| tags[*n].as_str())
        .unwrap_or_else(|| panic!("no {names:?} in {tags}"))
}

#[test]
fn bext_read_back_by_ffprobe_and_our_reader_matches_the_manifest() {
    let d = demo();
    let m = &d.manifest;
    let submitted = m["submitted"].as_str().expect("submitted");
    let mut references = std::collections::BTreeSet::new();
    for o in outputs(m) {
        let path = d
            .dir
            .join("deliverables")
            .join(o["file"]["path"].as_str().expect("path"));
        let tags = ffprobe_tags(&path);
        let desc = tag(&tags, &["description", "comment"]);
        assert!(
            desc.contains("Night Drive")
                && desc.contains(o["variant"].as_str().expect("variant"))
                && desc.contains("ebu-r128"),
            "{desc}"
        );
        assert_eq!(tag(&tags, &["originator", "encoded_by"]), "stemforge");
        // Unique per output, stable across runs: 32 hex digits.
        let reference = tag(&tags, &["originator_reference"]);
        assert_eq!(reference.len(), 32);
        assert!(reference.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(
            references.insert(reference.to_string()),
            "{reference} repeats"
        );
        // No spec origination, no SOURCE_DATE_EPOCH: the job's submission time.
        assert_eq!(tag(&tags, &["origination_date", "date"]), &submitted[..10]);
        assert_eq!(
            tag(&tags, &["origination_time", "creation_time"]),
            &submitted[11..19]
        );
        assert_eq!(tag(&tags, &["time_reference"]), "0");
        let history = tag(&tags, &["coding_history"]);
        assert!(
            history.starts_with("A=PCM,F=48000,W=24,M=stereo,T=stemforge"),
            "{history}"
        );
        // Our reader: the loudness fields are the manifest's values × 100.
        let bext = stemforge_worker::bwf::read_bext(&path)
            .expect("read bext")
            .expect("has bext");
        assert_eq!(bext.version, 2);
        let meas = &o["measurement"];
        for (field, key) in [
            (bext.loudness.integrated_lufs, "integrated_lufs"),
            (bext.loudness.loudness_range_lu, "loudness_range_lu"),
            (bext.loudness.max_true_peak_dbtp, "true_peak_dbtp"),
            (bext.loudness.max_momentary_lufs, "max_momentary_lufs"),
            (bext.loudness.max_short_term_lufs, "max_short_term_lufs"),
        ] {
            let want = meas[key].as_f64().map(|v| (v * 100.0).round() / 100.0);
            assert_eq!(field, want, "{key} of {}", path.display());
        }
        // The byte offsets of EBU Tech 3285 v2, straight from the file.
        let bytes = std::fs::read(&path).expect("read output");
        let at = bytes
            .windows(4)
            .position(|w| w == b"bext")
            .expect("bext chunk")
            + 8;
        let i16_at = |o: usize| i16::from_le_bytes([bytes[at + o], bytes[at + o + 1]]);
        assert_eq!(u16::from_le_bytes([bytes[at + 346], bytes[at + 347]]), 2);
        let lufs = meas["integrated_lufs"].as_f64().expect("I");
        assert_eq!(i16_at(412), (lufs * 100.0).round() as i16);
        let tp = meas["true_peak_dbtp"].as_f64().expect("TP");
        assert_eq!(i16_at(416), (tp * 100.0).round() as i16);
        assert!(bytes[at + 602..].starts_with(b"A=PCM,F=48000"));
    }
}

#[test]
fn report_and_csv_describe_every_output() {
    let d = demo();
    let out = d.dir.join("deliverables");
    let n = outputs(&d.manifest).len();
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert_eq!(html.matches("<svg class=\"qc-plot\"").count(), n);
    assert!(html.contains("ALL PASS"), "demo should pass");
    assert!(!html.contains("<script") && !html.contains("https://"));
    for o in outputs(&d.manifest) {
        let file = o["file"]["path"].as_str().expect("path");
        assert!(html.contains(file), "{file} missing from the report");
    }
    let csv = std::fs::read_to_string(out.join("manifest.csv")).expect("manifest.csv");
    let rows: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), n + 1, "header + one row per output");
    assert!(rows[0].starts_with("title,variant,role,file,"));
    // Every row carries its output's audio checksum.
    for o in outputs(&d.manifest) {
        let sha = o["file"]["audio_sha256"].as_str().expect("sha");
        assert_eq!(rows.iter().filter(|r| r.contains(sha)).count(), 1);
    }
    // Short-term curve: one value per second, null before 3 s.
    let full = outputs(&d.manifest)
        .into_iter()
        .find(|o| o["variant"] == "full")
        .expect("full");
    let curve = full["measurement"]["short_term_lufs"]
        .as_array()
        .expect("curve");
    assert_eq!(curve.len(), 20);
    assert!(curve[..2].iter().all(serde_json::Value::is_null));
    let max = full["measurement"]["max_short_term_lufs"]
        .as_f64()
        .expect("max S");
    for v in curve.iter().filter_map(serde_json::Value::as_f64) {
        assert!(v <= max + 0.01, "{v} above max short-term {max}");
    }
}

#[test]
fn an_unreachable_profile_fails_with_reasons_exit_1_and_highlighted_rows() {
    let d = demo();
    let spec = std::fs::read_to_string(&d.spec).expect("spec");
    // -9 LUFS with a -1 dBTP ceiling, and a short-term limit no mix at that
    // loudness can meet.
    let loud = spec.replace(
        "bit_depth = 24",
        "bit_depth = 24\ntarget_lufs = -9.0\ntrue_peak_max_dbtp = -1.0\nmax_short_term_lufs = -12.0",
    );
    let (out, o) = render_demo_variant("too-loud", &loud);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(m["summary"]["all_pass"], false);
    let outs = outputs(&m);
    let full = outs.iter().find(|o| o["variant"] == "full").expect("full");
    assert_eq!(full["verdict"]["verdict"], "fail");
    let reasons: Vec<&str> = full["verdict"]["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("max short-term") && r.contains("-12.0 LUFS limit")),
        "{reasons:?}"
    );
    let failed: Vec<_> = outs
        .iter()
        .filter(|o| o["verdict"]["verdict"] == "fail")
        .collect();
    for f in &failed {
        assert!(
            !f["verdict"]["reasons"].as_array().expect("r").is_empty(),
            "{f}"
        );
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert_eq!(
        html.matches("<tr class=\"fail\"><td class=\"out\"").count(),
        failed.len(),
        "one highlighted row per failed output"
    );
    assert!(html.contains("FAILED"));
    let csv = std::fs::read_to_string(out.join("manifest.csv")).expect("csv");
    assert_eq!(csv.matches(",fail,").count(), failed.len());
    // The stdout summary names the failures too.
    assert!(text(&o).contains("FAIL"), "{}", text(&o));
}

#[test]
fn netflix_without_a_dialogue_stem_falls_back_and_says_so() {
    let d = demo();
    let spec = std::fs::read_to_string(&d.spec).expect("spec");
    let nf = spec.replace("profile = \"ebu-r128\"", "profile = \"netflix\"");
    let (out, o) = render_demo_variant("netflix-music", &nf);
    assert!(o.status.success(), "{}", text(&o));
    let m = read_json(&out.join("manifest.json"));
    let level = &m["titles"][0]["level"];
    assert_eq!(level["loudness_target"]["target_lufs"], -24.0);
    assert_eq!(level["loudness_target"]["basis"], "programme");
    let full = outputs(&m)
        .into_iter()
        .find(|o| o["variant"] == "full")
        .expect("full");
    let basis = full["verdict"]["loudness_basis"].as_str().expect("basis");
    assert!(
        basis.contains("fallback") && basis.contains("no dialogue"),
        "{basis}"
    );
    let i = full["measurement"]["integrated_lufs"].as_f64().expect("I");
    assert!(
        (i + 24.0).abs() < 0.05,
        "full mix {i} LUFS, fallback target -24"
    );
    assert_eq!(full["target_lufs"], -24.0);
    assert!(full["measurement"].get("dialogue").is_none());
}

// ---------------------------------------------------------------- dialogue

const RATE: u32 = 48_000;
const SECONDS: f64 = 30.0;

/// Speech-like bursts: a 140 Hz buzz with formant-ish harmonics, syllables at
/// 4 Hz, only inside `regions` (seconds); silence elsewhere.
fn dialogue_stem(regions: &[(f64, f64)]) -> Vec<f64> {
    let n = (SECONDS * f64::from(RATE)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            if !regions.iter().any(|&(a, b)| t >= a && t < b) {
                return 0.0;
            }
            let syllable = 0.55 + 0.45 * (std::f64::consts::TAU * 4.0 * t).sin();
            let voice: f64 = [(1.0, 1.0), (3.0, 0.6), (5.0, 0.5), (9.0, 0.3), (17.0, 0.15)]
                .iter()
                .map(|&(h, a)| a * (std::f64::consts::TAU * 140.0 * h * t).sin())
                .sum();
            0.12 * syllable * voice
        })
        .collect()
}

/// A music bed under the whole cue: a slow chord with a little movement.
fn music_stem() -> Vec<f64> {
    let n = (SECONDS * f64::from(RATE)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            let swell = 0.8 + 0.2 * (std::f64::consts::TAU * 0.1 * t).sin();
            let chord: f64 = [110.0, 164.8, 220.0, 277.2, 329.6]
                .iter()
                .map(|f| (std::f64::consts::TAU * f * t).sin())
                .sum();
            0.05 * swell * chord
        })
        .collect()
}

fn write_stereo(path: &Path, x: &[f64]) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create stem");
    for &s in x {
        let c = (s * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
        w.write_sample(c).expect("write");
        w.write_sample(c).expect("write");
    }
    w.finalize().expect("finalize");
}

/// A two-stem cue (music + dialogue) and a spec using `profile`.
fn dialogue_session(name: &str, regions: &[(f64, f64)], delivery_extra: &str) -> PathBuf {
    let dir = scratch(name);
    write_stereo(&dir.join("music.wav"), &music_stem());
    write_stereo(&dir.join("dialogue.wav"), &dialogue_stem(regions));
    let spec = format!(
        r#"schema_version = 1

[delivery]
profile = "netflix"
output_dir = "out"
{delivery_extra}

[graph.master]
chain = [{{ node = "loudness" }}, {{ node = "limiter" }}]

[variants.full]
[variants.music_only]
description = "music and effects: no dialogue"
mute = ["role:dialogue"]
level = "normalized"

[[titles]]
name = "Spot"
stems = [
  {{ file = "music.wav", role = "music" }},
  {{ file = "dialogue.wav", role = "dialogue" }},
]
"#
    );
    let p = dir.join("spec.toml");
    std::fs::write(&p, spec).expect("write spec");
    p
}

/// Gating blocks (400 ms, 100 ms hop) that overlap the regions, over all
/// blocks of the cue: what the stem gate should find for clean speech.
fn expected_share(regions: &[(f64, f64)]) -> f64 {
    let total = ((SECONDS - 0.3) / 0.1).round() as usize;
    let active = (0..total)
        .filter(|&j| {
            let (s, e) = (j as f64 * 0.1, j as f64 * 0.1 + 0.4);
            regions.iter().any(|&(a, b)| s < b - 0.01 && e > a + 0.01)
        })
        .count();
    active as f64 / total as f64
}

#[test]
fn dialogue_gated_loudness_follows_the_known_speech_regions() {
    let regions = [(4.0, 10.0), (16.0, 22.0)]; // 12 s of speech in 30 s
    let spec = dialogue_session("dialogue", &regions, "");
    let o = stemforge(&["render", spec.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let m = read_json(&spec.with_file_name("out").join("manifest.json"));
    let want = expected_share(&regions);
    let level = &m["titles"][0]["level"];
    let share = level["dialogue_share"].as_f64().expect("share");
    eprintln!("dialogue share {share:.4}, expected {want:.4} (speech is 40% of the time)");
    assert!(
        (share - want).abs() < 0.01,
        "share {share}, expected {want}"
    );
    assert_eq!(level["loudness_target"]["basis"], "dialogue");
    let outs = outputs(&m);
    let full = outs.iter().find(|o| o["variant"] == "full").expect("full");
    let dl = &full["measurement"]["dialogue"];
    let gated = dl["integrated_lufs"].as_f64().expect("dialogue-gated I");
    eprintln!(
        "full mix: dialogue-gated {gated} LUFS, programme {} LUFS",
        full["measurement"]["integrated_lufs"]
    );
    assert!(
        (gated + 27.0).abs() < 0.05,
        "dialogue-gated {gated}, target -27"
    );
    assert!(
        dl["method"]
            .as_str()
            .expect("method")
            .contains("estimate from stems")
    );
    assert_eq!(full["verdict"]["verdict"], "pass", "{}", full["verdict"]);
    assert_eq!(full["verdict"]["checks"][0]["name"], "dialogue_integrated");
    // Speech sits above the bed: the programme reads quieter than the dialogue.
    let programme = full["measurement"]["integrated_lufs"].as_f64().expect("I");
    assert!(programme < gated, "{programme} vs {gated}");
    // The normalized music-only mix has no dialogue: full-programme fallback.
    let mo = outs
        .iter()
        .find(|o| o["variant"] == "music_only")
        .expect("music_only");
    let basis = mo["verdict"]["loudness_basis"].as_str().expect("basis");
    assert!(basis.contains("no dialogue"), "{basis}");
    let i = mo["measurement"]["integrated_lufs"].as_f64().expect("I");
    assert!((i + 24.0).abs() < 0.05, "music-only {i}");

    // The same cue measured from the outside: `stemforge measure --dialogue`.
    let full_path = spec
        .with_file_name("out")
        .join(full["file"]["path"].as_str().expect("path"));
    let o = stemforge(&[
        "measure",
        "--json",
        "--profile",
        "netflix",
        "--dialogue",
        spec.with_file_name("dialogue.wav").to_str().expect("utf-8"),
        full_path.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let f = &j["files"][0];
    assert_eq!(
        f["measurement"]["dialogue"]["integrated_lufs"],
        dl["integrated_lufs"]
    );
    assert_eq!(f["verdict"]["verdict"], "pass");
}

#[test]
fn sparse_dialogue_falls_back_to_the_full_programme() {
    let regions = [(12.0, 13.2)]; // about 5 % of the cue
    let spec = dialogue_session("sparse", &regions, "");
    let o = stemforge(&["render", spec.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let m = read_json(&spec.with_file_name("out").join("manifest.json"));
    let level = &m["titles"][0]["level"];
    let share = level["dialogue_share"].as_f64().expect("share");
    assert!(share < 0.15, "{share}");
    assert_eq!(level["loudness_target"]["target_lufs"], -24.0);
    let full = outputs(&m)
        .into_iter()
        .find(|o| o["variant"] == "full")
        .expect("full");
    let basis = full["verdict"]["loudness_basis"].as_str().expect("basis");
    assert!(
        basis.contains("fallback") && basis.contains("under 15%"),
        "{basis}"
    );
    let i = full["measurement"]["integrated_lufs"].as_f64().expect("I");
    assert!((i + 24.0).abs() < 0.05, "{i}");
}

// ------------------------------------------------------ origination, timeline

#[test]
fn origination_comes_from_the_spec_or_source_date_epoch_and_time_reference_from_the_stems() {
    let regions = [(4.0, 10.0)];
    let spec = dialogue_session("origin", &regions, "");
    let dir = spec.parent().expect("dir").to_path_buf();
    // Stems printed one hour into the session (BWF TimeReference), written by ffmpeg.
    let one_hour = 3600 * u64::from(RATE);
    for stem in ["music.wav", "dialogue.wav"] {
        let src = dir.join(stem);
        let tmp = dir.join(format!("bwf-{stem}"));
        let o = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y", "-i"])
            .arg(&src)
            .args([
                "-c:a",
                "copy",
                "-write_bext",
                "1",
                "-metadata",
                &format!("time_reference={one_hour}"),
            ])
            .arg(&tmp)
            .output()
            .expect("ffmpeg");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::rename(&tmp, &src).expect("replace stem");
    }
    // 1. SOURCE_DATE_EPOCH (2001-09-09T01:46:40Z) when the spec sets nothing.
    let o = stemforge_testkit::command()
        .args(["render", spec.to_str().expect("utf-8")])
        .env("STEMFORGE_LOG", "warn")
        .env("SOURCE_DATE_EPOCH", "1000000000")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", text(&o));
    let m = read_json(&dir.join("out/manifest.json"));
    let first = |m: &serde_json::Value| {
        dir.join("out")
            .join(outputs(m)[0]["file"]["path"].as_str().expect("path"))
    };
    let tags = ffprobe_tags(&first(&m));
    assert_eq!(tag(&tags, &["origination_date", "date"]), "2001-09-09");
    assert_eq!(
        tag(&tags, &["origination_time", "creation_time"]),
        "01:46:40"
    );
    assert_eq!(tag(&tags, &["time_reference"]), one_hour.to_string());
    let inputs = m["titles"][0]["inputs"].as_array().expect("inputs");
    assert!(inputs.iter().all(|i| i["time_reference"] == one_hour));
    let sha_epoch = outputs(&m)[0]["file"]["sha256"].clone();

    // 2. The spec's origination wins over SOURCE_DATE_EPOCH.
    let text_spec = std::fs::read_to_string(&spec).expect("spec");
    std::fs::write(
        &spec,
        text_spec.replace(
            "output_dir = \"out\"",
            "output_dir = \"out\"\norigination = \"2026-01-02T03:04:05Z\"",
        ),
    )
    .expect("write spec");
    let o = stemforge_testkit::command()
        .args(["render", spec.to_str().expect("utf-8")])
        .env("STEMFORGE_LOG", "warn")
        .env("SOURCE_DATE_EPOCH", "1000000000")
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", text(&o));
    let m = read_json(&dir.join("out/manifest.json"));
    let tags = ffprobe_tags(&first(&m));
    assert_eq!(tag(&tags, &["origination_date", "date"]), "2026-01-02");
    assert_eq!(
        tag(&tags, &["origination_time", "creation_time"]),
        "03:04:05"
    );
    // Only the metadata changed: same audio, different file.
    assert_ne!(outputs(&m)[0]["file"]["sha256"], sha_epoch);

    // 3. Re-rendering the same spec gives byte-identical files.
    let before = outputs(&m)[0]["file"]["sha256"].clone();
    let o = stemforge(&["render", spec.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let m = read_json(&dir.join("out/manifest.json"));
    assert_eq!(outputs(&m)[0]["file"]["sha256"], before);
}
