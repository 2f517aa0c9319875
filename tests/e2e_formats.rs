//! Delivery formats end to end: one 48 kHz session delivered at 44.1 and
//! 96 kHz through the polyphase converter, checked by ffmpeg's meter at full
//! precision (true peak under the ceiling, loudness on target), with exact
//! lengths and bit-identical audio across runs; and a stem at another rate
//! mixed after conversion.

use std::path::Path;

use stemforge_testkit::*;

/// The demo's length at 48 kHz (20 s).
const DEMO_FRAMES: u64 = 960_000;

/// The demo spec with `delivery_line` (the rate or rates), pushed to
/// streaming loudness (-14 LUFS, -1 dBTP) so the master limiter works hard
/// at the converted rate.
fn spec_with(delivery_line: &str) -> String {
    let base = std::fs::read_to_string(&demo().spec).expect("spec");
    assert!(
        base.contains("bit_depth = 24\n") && base.contains("profile = \"ebu-r128\""),
        "the demo spec changed shape"
    );
    base.replace("profile = \"ebu-r128\"", "profile = \"spotify\"")
        .replace(
            "bit_depth = 24\n",
            &format!("bit_depth = 24\n{delivery_line}\n"),
        )
}

/// The demo spec delivered at `rate`.
fn spec_at(rate: u32) -> String {
    spec_with(&format!("sample_rate = {rate}"))
}

/// `round(n · to / from)`.
fn frames_at(n: u64, from: u64, to: u64) -> u64 {
    (2 * n * to + from) / (2 * from)
}

fn check_pack(out: &Path, m: &serde_json::Value, rate: u32) {
    let want_frames = frames_at(DEMO_FRAMES, 48_000, u64::from(rate));
    let outs: Vec<_> = outputs(m)
        .into_iter()
        .filter(|o| o["file"]["sample_rate"] == rate)
        .collect();
    assert_eq!(outs.len(), 12, "the whole pack at {rate} Hz");
    let mut worst_tp = f64::NEG_INFINITY;
    for o in &outs {
        let name = o["file"]["path"].as_str().expect("path");
        let path = out.join(name);
        let r = hound::WavReader::open(&path).expect("open output");
        assert_eq!(r.spec().sample_rate, rate, "{name}");
        assert_eq!(u64::from(r.duration()), want_frames, "{name}: exact length");
        let ff = ffmpeg_r128(&path);
        // The streaming delivery: true peak at most -1 dBTP, by ffmpeg's
        // 192 kHz meter on the converted, quantised file.
        assert!(
            ff.tp <= -1.0,
            "{name} at {rate} Hz: ffmpeg true peak {:.3} dBTP",
            ff.tp
        );
        worst_tp = worst_tp.max(ff.tp);
        if o["variant"] == "full" {
            assert!(
                (ff.i - -14.0).abs() <= 0.15,
                "full mix at {rate} Hz: ffmpeg {:.3} LUFS",
                ff.i
            );
            eprintln!(
                "{rate} Hz: full mix {:.3} LUFS by ffmpeg, ours {}",
                ff.i, o["measurement"]["integrated_lufs"]
            );
        }
    }
    eprintln!("{rate} Hz: worst true peak by ffmpeg over 12 files {worst_tp:.3} dBTP (ceiling -1)");
}

#[test]
fn one_spec_delivers_44k1_and_96k_packs_within_the_ceiling_by_ffmpeg() {
    // One job, one spec: a pack per rate (`delivery.sample_rates`).
    let spec = spec_with("sample_rates = [44100, 96000]");
    let (out, o) = render_demo_variant("two-rates", &spec);
    assert!(o.status.success(), "{}", text(&o));
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(outputs(&m).len(), 24, "two packs of 12");
    for rate in [44_100u32, 96_000] {
        check_pack(&out, &m, rate);
        let tag = if rate == 44_100 { "_44.1k24" } else { "_96k24" };
        let at_rate = outputs(&m)
            .into_iter()
            .filter(|o| o["file"]["sample_rate"] == rate)
            .all(|o| o["file"]["path"].as_str().unwrap_or_default().contains(tag));
        assert!(at_rate, "{rate} Hz files are named with {tag}");
        // Offsets from the full mix are taken at the same rate.
        let full = outputs(&m)
            .into_iter()
            .find(|o| o["variant"] == "full" && o["file"]["sample_rate"] == rate)
            .expect("full mix");
        assert_eq!(full["offset_from_full_lu"], 0.0, "{full:#}");
    }
    // Same inputs and spec, another run: bit-identical audio.
    let (again, o) = render_demo_variant("two-rates-again", &spec);
    assert!(o.status.success(), "{}", text(&o));
    let m2 = read_json(&again.join("manifest.json"));
    assert_eq!(audio_hashes(&m), audio_hashes(&m2));
    let _ = std::fs::remove_dir_all(&again);
    let _ = std::fs::remove_dir_all(&out);
}

/// A scratch session whose `stems/` are the demo's, each made by `make`
/// (source, destination) — a copy, a conversion, a re-wrap.
fn session_from_demo(
    name: &str,
    make: impl Fn(&Path, &Path) -> Result<(), String>,
) -> std::path::PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(dir.join("stems")).expect("mkdir");
    for e in std::fs::read_dir(demo().dir.join("stems")).expect("stems") {
        let p = e.expect("entry").path();
        let dst = dir.join("stems").join(p.file_name().expect("name"));
        if let Err(e) = make(&p, &dst) {
            panic!("{}: {e}", p.display());
        }
    }
    dir
}

/// Runs a tool; its output as the error when it fails.
fn run_tool(cmd: &mut std::process::Command) -> Result<(), String> {
    let o = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(text(&o))
    }
}

#[test]
fn a_stem_at_another_rate_is_converted_and_mixed_with_a_warning() {
    let d = demo();
    let dir = session_from_demo("mixed-rate", |src, dst| {
        if src.to_string_lossy().contains("drums") {
            // sox's own very-high-quality converter makes the 44.1 kHz stem.
            run_tool(
                std::process::Command::new("sox")
                    .arg(src)
                    .arg(dst)
                    .args(["rate", "-v", "44100"]),
            )
        } else {
            std::fs::copy(src, dst)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    });
    let spec = dir.join("deliverables.toml");
    std::fs::copy(&d.spec, &spec).expect("copy spec");
    let out = dir.join("out");
    let m = render_ok(&spec, &out);
    let title = &m["titles"][0];
    let warning = title["preflight"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == "sample_rate")
        .cloned()
        .unwrap_or_default();
    assert_eq!(warning["severity"], "warning", "{:#}", title["preflight"]);
    assert!(
        warning["message"]
            .as_str()
            .is_some_and(|m| m.contains("drums")
                && m.contains("44100 Hz")
                && m.contains("converted")),
        "{warning:#}"
    );
    for o in outputs(&m) {
        let name = o["file"]["path"].as_str().expect("path");
        let r = hound::WavReader::open(out.join(name)).expect("open");
        assert_eq!(r.spec().sample_rate, 48_000, "{name}: the session's rate");
        assert_eq!(u64::from(r.duration()), DEMO_FRAMES, "{name}");
    }
    // The converted drums land where the originals were (no delay: the
    // correlation with the all-48 kHz demo's drums peaks at lag 0) and as
    // loud (sox's filter and ours only take the top above 20 kHz away).
    let stem = "Night-Drive_stem-drums_48k24.wav";
    let (_, ours) = read_wav(&out.join(stem));
    let (_, orig) = read_wav(&d.dir.join("deliverables").join(stem));
    let (a, b) = (&ours[0][240_000..288_000], &orig[0][240_000..288_000]);
    let corr = |lag: i64| -> f64 {
        (16..a.len() - 16)
            .map(|i| a[i] * b[(i as i64 + lag) as usize])
            .sum()
    };
    let best = (-12..=12i64)
        .max_by(|x, y| corr(*x).total_cmp(&corr(*y)))
        .unwrap_or(99);
    assert_eq!(best, 0, "the converted stem is shifted by {best} samples");
    let (l_ours, l_orig) = (
        ffmpeg_r128(&out.join(stem)).i,
        ffmpeg_r128(&d.dir.join("deliverables").join(stem)).i,
    );
    eprintln!(
        "drums through 48 -> 44.1 (sox) -> 48 (ours): {l_ours:.2} LUFS vs {l_orig:.2} unconverted, correlation peak at lag {best}"
    );
    assert!((l_ours - l_orig).abs() <= 0.25, "{l_ours} vs {l_orig}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn timeline_position_is_rescaled_to_the_output_rate() {
    // One hour and 12,345 samples into the session, at 48 kHz.
    let t48: u64 = 48_000 * 3_600 + 12_345;
    let dir = session_from_demo("time-reference", |src, dst| {
        run_tool(
            std::process::Command::new("ffmpeg")
                .args(["-nostdin", "-v", "error", "-y", "-i"])
                .arg(src)
                .args(["-c:a", "pcm_s24le", "-write_bext", "1", "-metadata"])
                .arg(format!("time_reference={t48}"))
                .arg(dst),
        )
    });
    let spec = dir.join("deliverables.toml");
    std::fs::write(&spec, spec_at(44_100)).expect("write spec");
    let out = dir.join("out");
    render_ok(&spec, &out);
    let want = frames_at(t48, 48_000, 44_100);
    let full = out.join("Night-Drive_full_44.1k24.wav");
    // Read back by ffprobe, not by our BWF reader.
    let o = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format_tags=time_reference",
            "-of",
            "default=nw=1:nk=1",
        ])
        .arg(&full)
        .output()
        .expect("run ffprobe");
    let got = String::from_utf8_lossy(&o.stdout).trim().to_string();
    eprintln!("TimeReference {t48} at 48 kHz -> {got} at 44.1 kHz (want {want})");
    assert_eq!(got, want.to_string(), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
