//! Cutdowns of a 60-second title made from real instruments (a General MIDI
//! file through fluidsynth, a voice by espeak-ng: `tests/support/real_session.py`),
//! checked with independent tools: ffprobe for lengths, ffmpeg's `ebur128`
//! at full precision for loudness and true peak, hound for samples.
//!
//! A :30 from segments at 25 fps and a :15 from a CMX 3600 EDL with a
//! dissolve at 29.97 fps are exactly their length in samples, on target and
//! under the ceiling on their own, carry the right material, join without a
//! click, render bit-identically with one worker or two, and `validate`
//! refuses edits outside the programme or with overlapping crossfades.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use stemforge_testkit::*;

const RATE: u64 = 48_000;

/// A cut's title, its exact length in frames, and its joins as (record,
/// source) seconds.
type Case<'a> = (&'a str, u64, &'a [(f64, f64)]);

const CUTS: &str = r#"
[[titles.cutdowns]]
name = "30s"
frame_rate = "25"
duration = "00:00:30:00"
crossfade_ms = 40
segments = [
  { in = "00:00:00:00", out = "00:00:12:00" },
  { in = "00:00:40:00", out = "00:00:58:00" },
]
variants = ["full", "instrumental"]

[[titles.cutdowns]]
name = "15s"
edl = "spot15.edl"
frame_rate = "29.97"
timecode_start = "01:00:00:00"
"#;

/// Two events joined by a 12-frame dissolve; the picture track is ignored
/// (the audio events decide).
const EDL: &str = "TITLE: LAST TRAIN 15
FCM: NON-DROP FRAME

001  LT       A      C        01:00:02:00 01:00:09:00 00:00:00:00 00:00:07:00
002  LT       A      C        01:00:09:00 01:00:09:00 00:00:07:00 00:00:07:00
002  LT       A      D    012 01:00:44:00 01:00:52:00 00:00:07:00 00:00:15:00
003  LT       V      C        01:00:00:00 01:00:15:00 00:00:00:00 00:00:15:00
";

fn session() -> PathBuf {
    let dir = real_session("cutdowns", &["--seconds", "60"]);
    std::fs::write(dir.join("spot15.edl"), EDL).expect("edl");
    dir
}

fn write_spec(dir: &Path, name: &str, cuts: &str) -> PathBuf {
    let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
    let spec =
        base.replace(
            "reference = \"Mix.wav\"\n",
            "reference = \"Mix.wav\"\nvariants = [\"full\"]\n",
        )
        .replace(
            "profile = \"ebu-r128\"\n",
            &format!("profile = \"ebu-r128\"\noutput_dir = \"{name}-out\"\n"),
        ) + cuts;
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, spec).expect("write spec");
    p
}

/// Renders `spec` into its `NAME-out` folder; the manifest and the folder.
fn render(spec: &Path, workers: &str) -> (Value, PathBuf) {
    let o = stemforge(&[
        "render",
        spec.to_str().expect("utf-8"),
        "--workers",
        workers,
    ]);
    assert!(o.status.success(), "render failed:\n{}", text(&o));
    let stem = spec.file_stem().and_then(|s| s.to_str()).expect("name");
    let out = spec.with_file_name(format!("{stem}-out"));
    (read_json(&out.join("manifest.json")), out)
}

/// Frames of the file's audio stream, by ffprobe.
fn ffprobe_frames(p: &Path) -> u64 {
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=duration_ts",
            "-of",
            "csv=p=0",
        ])
        .arg(p)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe frames of {}: {}", p.display(), text(&o)))
}

/// The largest sample-to-sample step over `range` of frames (every channel).
fn max_step(ch: &[Vec<f64>], range: std::ops::Range<usize>) -> f64 {
    ch.iter()
        .map(|c| {
            (range.start.max(1)..range.end.min(c.len()))
                .map(|i| (c[i] - c[i - 1]).abs())
                .fold(0.0, f64::max)
        })
        .fold(0.0, f64::max)
}

/// Correlation of `a[a0..a0+n]` with `b[b0..b0+n]`, every channel together.
fn corr(a: &[Vec<f64>], a0: usize, b: &[Vec<f64>], b0: usize, n: usize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        for i in 0..n {
            ab += x[a0 + i] * y[b0 + i];
            aa += x[a0 + i] * x[a0 + i];
            bb += y[b0 + i] * y[b0 + i];
        }
    }
    ab / (aa * bb).sqrt()
}

fn output<'a>(m: &'a Value, title: &str, variant: &str) -> &'a Value {
    m["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .find(|t| t["name"] == title)
        .and_then(|t| {
            t["outputs"]
                .as_array()?
                .iter()
                .find(|o| o["variant"] == variant)
        })
        .unwrap_or_else(|| panic!("no {title}/{variant} in the manifest"))
}

fn title<'a>(m: &'a Value, name: &str) -> &'a Value {
    m["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no title {name}"))
}

#[test]
fn cutdowns_are_exact_on_target_and_seamless() {
    let dir = session();
    let spec = write_spec(&dir, "cuts", CUTS);
    let v = stemforge(&["validate", spec.to_str().expect("utf-8")]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("3 titles"), "{}", text(&v));

    let (m, out) = render(&spec, "2");
    let parent = read_wav(
        &out.join(
            output(&m, "Last Train", "full")["file"]["path"]
                .as_str()
                .expect("path"),
        ),
    )
    .1;

    // (title, exact frames, joins as (record, source) seconds)
    let df_frames = 450 * RATE * 1001 / 30_000; // 450 frames at 29.97: 15.015 s
    let ntsc = |frames: u64| frames as f64 * 1001.0 / 30_000.0;
    let cases: [Case; 2] = [
        ("Last Train 30s", 30 * RATE, &[(0.0, 0.0), (12.0, 40.0)]),
        // The dissolve is centred 6 frames after the record in.
        // 29.97 fps counts 30 frames a timecode second: frame f is at
        // f · 1001 / 30000 s.
        (
            "Last Train 15s",
            df_frames,
            &[(0.0, ntsc(60)), (ntsc(7 * 30 + 6), ntsc(44 * 30 + 6))],
        ),
    ];
    for (name, frames, joins) in cases {
        let t = title(&m, name);
        assert_eq!(
            t["edit"]["frames"].as_u64(),
            Some(frames),
            "{name}: {}",
            t["edit"]
        );
        assert_eq!(t["edit"]["of"], "Last Train");
        for o in t["outputs"].as_array().expect("outputs") {
            let p = out.join(o["file"]["path"].as_str().expect("path"));
            assert_eq!(ffprobe_frames(&p), frames, "{}", p.display());
            assert_eq!(o["verdict"]["verdict"], "pass", "{name}: {o}");
            let r = ffmpeg_r128(&p);
            let ceiling = o["true_peak_max_dbtp"].as_f64().expect("ceiling");
            assert!(
                r.tp <= ceiling,
                "{name}/{}: {} dBTP over {ceiling}",
                o["variant"],
                r.tp
            );
            if o["level_policy"] == "normalized" {
                let target = o["target_lufs"].as_f64().expect("target");
                let tol = o["tolerance_lu"].as_f64().expect("tolerance");
                assert!(
                    (r.i - target).abs() <= tol,
                    "{name}: {} LUFS, target {target} ± {tol}",
                    r.i
                );
                println!(
                    "{name}: {frames} frames, {:.2} LUFS, {:.2} dBTP by ffmpeg",
                    r.i, r.tp
                );
            }
        }
        let full = read_wav(
            &out.join(
                output(&m, name, "full")["file"]["path"]
                    .as_str()
                    .expect("path"),
            ),
        )
        .1;
        let len = full[0].len();
        // Each segment carries the parent's material from its source point
        // (the cut is mastered on its own: the same music, not the same
        // samples), and nothing else there does.
        let bounds: Vec<usize> = joins
            .iter()
            .map(|(rec, _)| (rec * RATE as f64) as usize)
            .chain([len])
            .collect();
        for (k, (rec, src)) in joins.iter().enumerate() {
            let a0 = (rec * RATE as f64) as usize + RATE as usize / 10;
            let b0 = (src * RATE as f64) as usize + RATE as usize / 10;
            let n = bounds[k + 1] - a0 - RATE as usize / 10;
            let c = corr(&full, a0, &parent, b0, n);
            let elsewhere = corr(
                &full,
                a0,
                &parent,
                b0 + 5 * RATE as usize,
                n.min(parent[0].len() - b0 - 5 * RATE as usize),
            );
            println!(
                "{name} segment {k}: correlation {c:.3} with the parent at its source, {elsewhere:.3} 5 s later"
            );
            assert!(
                c > 0.9 && elsewhere < 0.5,
                "{name} segment {k}: {c} / {elsewhere}"
            );
        }
        // No click: around each join (and at the head and tail) no step is
        // larger than the largest step of the programme elsewhere.
        let around: Vec<std::ops::Range<usize>> = bounds[..bounds.len() - 1]
            .iter()
            .map(|&b| b.saturating_sub(RATE as usize / 10)..(b + RATE as usize / 10).min(len))
            .chain(std::iter::once(len - RATE as usize / 10..len))
            .collect();
        let mut rest = 0.0_f64;
        let mut start = 0;
        for r in &around {
            rest = rest.max(max_step(&full, start..r.start));
            start = r.end;
        }
        for r in &around {
            let s = max_step(&full, r.clone());
            println!(
                "{name}: step {s:.4} around {:?} s, programme's own {rest:.4}",
                r.start as f64 / RATE as f64
            );
            assert!(
                s <= rest,
                "{name}: a step of {s} around frame {} (the programme's own: {rest})",
                r.start
            );
        }
        assert!(
            full.iter().all(|c| c[0].abs() < 1e-3),
            "{name}: starts with a jump"
        );
    }

    // `pack --title` picks a cut by its name: the zip holds that cut alone,
    // the same audio.
    let zip = dir.join("spot15.zip");
    let o = stemforge(&[
        "pack",
        spec.to_str().expect("utf-8"),
        "--title",
        "Last Train 15s",
        "-o",
        zip.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "pack failed:\n{}", text(&o));
    let packed = read_json(&dir.join("spot15").join("manifest.json"));
    let names: Vec<&str> = packed["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["Last Train 15s"]);
    assert_eq!(
        output(&packed, "Last Train 15s", "full")["file"]["audio_sha256"],
        output(&m, "Last Train 15s", "full")["file"]["audio_sha256"]
    );

    // Bit-identical with one worker.
    let (again, _) = render(&write_spec(&dir, "again", CUTS), "1");
    for name in ["Last Train 30s", "Last Train 15s"] {
        for o in title(&m, name)["outputs"].as_array().expect("outputs") {
            let v = o["variant"].as_str().expect("variant");
            assert_eq!(
                o["file"]["audio_sha256"],
                output(&again, name, v)["file"]["audio_sha256"],
                "{name}/{v}"
            );
        }
    }
}

#[test]
fn validate_refuses_edits_outside_the_programme_or_overlapping() {
    let dir = real_session("cutdowns-bad", &["--seconds", "20"]);
    let outside = write_spec(
        &dir,
        "outside",
        r#"
[[titles.cutdowns]]
name = "long"
frame_rate = "24"
segments = [{ in = "00:00:05:00", out = "00:00:25:00" }]
"#,
    );
    let o = stemforge(&["validate", outside.to_str().expect("utf-8")]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("Last Train long") && t.contains("segments[0]") && t.contains("programme"),
        "{t}"
    );

    let overlap = write_spec(
        &dir,
        "overlap",
        r#"
[[titles.cutdowns]]
name = "tight"
frame_rate = "25"
crossfade_ms = 200
segments = [
  { in = "00:00:01:00", out = "00:00:03:00" },
  { in = "00:00:08:00", out = "00:00:08:02" },
  { in = "00:00:12:00", out = "00:00:14:00" },
]
"#,
    );
    let o = stemforge(&["validate", overlap.to_str().expect("utf-8")]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("titles[0].cutdowns[0].segments[1]") && t.contains("overlap"),
        "{t}"
    );

    let drop = write_spec(
        &dir,
        "drop",
        r#"
[[titles.cutdowns]]
name = "df"
frame_rate = "29.97df"
segments = [{ in = "00:00:01;00", out = "00:01:00;00" }]
"#,
    );
    let o = stemforge(&["validate", drop.to_str().expect("utf-8")]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("segments[0].out") && t.contains("drop-frame"),
        "{t}"
    );
}

/// RMS of `ch` over `[a, b)` frames, dBFS.
fn rms_db(ch: &[Vec<f64>], a: usize, b: usize) -> f64 {
    let (mut e, mut n) = (0.0, 0);
    for c in ch {
        for x in &c[a..b] {
            e += x * x;
            n += 1;
        }
    }
    10.0 * (e / n.max(1) as f64).max(1e-30).log10()
}

/// A title's explicit-lyric ranges are times on its stems; a clean version
/// of a cut mutes them where the cut plays them (here a second the cut
/// plays 28 s earlier), not at the same numbers on the cut's timeline.
#[test]
fn a_clean_cut_mutes_the_title_s_explicit_ranges_where_it_plays_them() {
    let dir = real_session("cutdowns-clean", &["--seconds", "60"]);
    // The loudest second of the voice inside the cut's second segment
    // (40–58 s of the source, 12–30 s of the cut).
    let voice = read_wav(&dir.join("Voice.wav")).1;
    let r = RATE as usize;
    let start = (40..57)
        .max_by(|&a, &b| {
            rms_db(&voice, a * r, (a + 1) * r).total_cmp(&rms_db(&voice, b * r, (b + 1) * r))
        })
        .expect("a second");
    let loud = rms_db(&voice, start * r, (start + 1) * r);
    assert!(
        loud > -40.0,
        "the voice is quiet everywhere in 40–57 s: {loud}"
    );
    let variants = "[variants.full]\n[variants.clean_stems]\noutput = \"stems\"\nclean = {}\n\n";
    let cut = r#"
[[titles.cutdowns]]
name = "30s"
frame_rate = "25"
segments = [
  { in = "00:00:00:00", out = "00:00:12:00" },
  { in = "00:00:40:00", out = "00:00:58:00" },
]
variants = ["full", "clean_stems"]
"#;
    let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
    let spec_text = base
        .replace(
            "reference = \"Mix.wav\"\n",
            &format!(
                "reference = \"Mix.wav\"\nvariants = [\"full\"]\nexplicit = [[{start}.0, {}.0]]\n",
                start + 1
            ),
        )
        .replacen("[[titles]]", &format!("{variants}[[titles]]"), 1)
        + cut;
    let spec = dir.join("clean.toml");
    std::fs::write(&spec, spec_text).expect("write spec");
    let o = stemforge(&["render", spec.to_str().expect("utf-8"), "--workers", "2"]);
    assert!(o.status.success(), "render failed:\n{}", text(&o));
    let m = read_json(&dir.join("deliverables").join("manifest.json"));
    let cut = title(&m, "Last Train 30s");
    let vocals = cut["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["variant"] == "clean_stems" && o["role"] == "vocals")
        .unwrap_or_else(|| panic!("no clean vocals stem: {cut}"));
    let ch = read_wav(
        &dir.join("deliverables")
            .join(vocals["file"]["path"].as_str().expect("path")),
    )
    .1;
    // The range lands 28 s earlier in the cut: (start − 28) s. Leave the
    // limiter's band-limit edges (a few ms) out.
    let (a, b) = ((start - 28) * r + r / 100, (start - 27) * r - r / 100);
    let muted = rms_db(&ch, a, b);
    println!(
        "clean cut: the voice's loudest second {start}–{} s ({loud:.1} dBFS) is {muted:.1} dBFS at {}–{} s of the cut",
        start + 1,
        start - 28,
        start - 27
    );
    // 24-bit TPDF dither is what is left (about -138 dBFS RMS).
    assert!(
        muted < -120.0,
        "{muted} dBFS where the explicit range plays"
    );
}
