//! End to end: the real binary renders the demo through its in-process
//! coordinator and workers; outputs are checked with independent tools.

use stemforge_testkit::*;

#[test]
fn demo_renders_every_variant_within_tolerance() {
    let d = demo();
    let m = &d.manifest;
    let outs = outputs(m);
    let names: Vec<&str> = outs
        .iter()
        .map(|o| o["file"]["path"].as_str().expect("path"))
        .collect();
    for v in [
        "full",
        "instrumental",
        "acappella",
        "tv",
        "vocal_up",
        "vocal_down",
    ] {
        let want = format!("Night-Drive_{v}_48k24.wav");
        assert!(
            names.contains(&want.as_str()),
            "missing {want} in {names:?}"
        );
    }
    for role in ["drums", "bass", "keys", "vocals", "backing_vocals", "fx"] {
        let want = format!("Night-Drive_stem-{role}_48k24.wav");
        assert!(
            names.contains(&want.as_str()),
            "missing {want} in {names:?}"
        );
    }
    assert_eq!(outs.len(), 12);
    assert_eq!(m["summary"]["all_pass"], true, "{:#}", m["summary"]);

    let title = &m["titles"][0];
    let stem_frames = title["inputs"][0]["frames"].as_u64().expect("frames");
    assert_eq!(stem_frames, 20 * 48_000);
    let master = title["level"]["master_gain_db"]
        .as_f64()
        .expect("master gain");
    for o in &outs {
        // Every file is a valid 48 kHz 24-bit stereo WAV of the stems' length.
        let path = d
            .dir
            .join("deliverables")
            .join(o["file"]["path"].as_str().expect("path"));
        let (spec, ch) = read_wav(&path);
        assert_eq!(
            (spec.sample_rate, spec.bits_per_sample, spec.channels),
            (48_000, 24, 2)
        );
        assert_eq!(ch[0].len() as u64, stem_frames, "{}", path.display());
        // Matched variants (every one here but the full mix) carry exactly its master gain.
        assert_eq!(o["gain_db"].as_f64(), Some(master), "{}", o["file"]["path"]);
        assert_eq!(o["verdict"]["verdict"], "pass");
    }
    let full = outs.iter().find(|o| o["variant"] == "full").expect("full");
    let i = full["measurement"]["integrated_lufs"].as_f64().expect("I");
    assert!((i - -23.0).abs() <= 0.5, "full mix at {i} LUFS");
    assert_eq!(full["level_policy"], "normalized");
    assert_eq!(
        outs.iter().find(|o| o["variant"] == "tv").expect("tv")["level_policy"],
        "matched"
    );
    // vocal_up is louder than full, vocal_down quieter; offsets are reported.
    let off = |v: &str| {
        outs.iter().find(|o| o["variant"] == v).expect(v)["offset_from_full_lu"]
            .as_f64()
            .expect("offset")
    };
    assert!(
        off("vocal_up") > 0.3 && off("vocal_down") < -0.3,
        "{} {}",
        off("vocal_up"),
        off("vocal_down")
    );
    assert!(off("instrumental") < 0.0 && off("acappella") < 0.0);
}

#[test]
fn loudness_agrees_with_ffmpeg() {
    let d = demo();
    let (mut worst_i, mut worst_lra, mut worst_tp) = (0.0_f64, 0.0_f64, 0.0_f64);
    for o in outputs(&d.manifest) {
        let path = d
            .dir
            .join("deliverables")
            .join(o["file"]["path"].as_str().expect("path"));
        let m = &o["measurement"];
        let ff = ffmpeg_r128(&path);
        let i = m["integrated_lufs"].as_f64().expect("I");
        let lra = m["loudness_range_lu"].as_f64().expect("LRA");
        // True peak from our oversampling estimator against ffmpeg's 192 kHz one.
        let tp = m["true_peak_dbtp"].as_f64().expect("TP");
        worst_i = worst_i.max((i - ff.i).abs());
        worst_lra = worst_lra.max((lra - ff.lra_ebu_rule).abs());
        worst_tp = worst_tp.max((tp - ff.tp).abs());
        let p = path.display();
        assert!((i - ff.i).abs() <= 0.1, "{p}: I ours {i}, ffmpeg {}", ff.i);
        // ffmpeg's LRA ranks its percentiles differently (see FfR128): on the
        // mixes that does not matter; on sparse stems it can move one rank.
        // Every output must match the EBU rule on ffmpeg's own short-term
        // values; the mixes must also match ffmpeg's LRA.
        assert!(
            (lra - ff.lra_ebu_rule).abs() <= 0.05,
            "{p}: LRA ours {lra}, EBU rule on ffmpeg's short-term values {}",
            ff.lra_ebu_rule
        );
        if o["role"].is_null() {
            assert!(
                (lra - ff.lra).abs() <= 0.5,
                "{p}: LRA ours {lra}, ffmpeg {}",
                ff.lra
            );
        }
        eprintln!(
            "{:<44} I {i:8.3} ff {:8.3} | LRA {lra:6.3} ff {:6.3} ebu-rule {:6.3} | TP {tp:7.3} ff {:7.3}",
            o["file"]["path"].as_str().unwrap_or("?"),
            ff.i,
            ff.lra,
            ff.lra_ebu_rule,
            ff.tp
        );
        assert!(
            (tp - ff.tp).abs() <= 0.2,
            "{p}: TP ours {tp}, ffmpeg {}",
            ff.tp
        );
    }
    eprintln!(
        "largest difference from ffmpeg: integrated {worst_i:.4} LU, LRA (EBU rule) {worst_lra:.4} LU, true peak {worst_tp:.4} dB"
    );
}

#[test]
fn stems_sum_to_the_full_mix() {
    let d = demo();
    let dir = d.dir.join("deliverables");
    let (_, full) = read_wav(&dir.join("Night-Drive_full_48k24.wav"));
    let sum = sum_wavs(
        &["drums", "bass", "keys", "vocals", "backing_vocals", "fx"]
            .map(|role| dir.join(format!("Night-Drive_stem-{role}_48k24.wav"))),
    );
    // Seven independently dithered (TPDF, ±1 LSB) and rounded 24-bit files:
    // at most 7 × 1.5 LSB per sample, and only dither noise on average.
    let lsb = 1.0 / 8_388_608.0;
    let (mut max_err, mut e2, mut n) = (0.0_f64, 0.0, 0.0);
    for (a, b) in sum.iter().zip(&full) {
        for (x, y) in a.iter().zip(b) {
            max_err = max_err.max((x - y).abs());
            e2 += (x - y) * (x - y);
            n += 1.0;
        }
    }
    let rms_db = 10.0 * (e2 / n).log10();
    assert!(
        max_err <= 10.5 * lsb,
        "stems sum differs from the full mix by {} LSB",
        max_err / lsb
    );
    assert!(rms_db <= -125.0, "Σ stems − full = {rms_db:.1} dBFS RMS");
}

/// With a linear graph and float output, vocal_up − full is exactly the vocal
/// stem times the gain difference (to float precision).
#[test]
fn vocal_up_minus_full_is_the_scaled_vocal_stem() {
    let d = demo();
    let spec = std::fs::read_to_string(&d.spec).expect("spec");
    // No dynamics after the vocal's fader: drop the bus and master compressors
    // ("glue") and the limiter; per-stem processing stays.
    let float_spec =
        without_lines(&spec, &["glue", "\"limiter\""]).replace("bit_depth = 24", "bit_depth = 32");
    assert!(
        float_spec.contains("\"compressor\""),
        "per-stem compressors stay"
    );
    assert!(!float_spec.contains("\"limiter\""));
    let (out, o) = render_demo_variant("float", &float_spec);
    assert!(o.status.success(), "{}", text(&o));
    let (spec, up) = read_wav(&out.join("Night-Drive_vocal_up_48k32f.wav"));
    assert_eq!(spec.sample_format, hound::SampleFormat::Float);
    let (_, full) = read_wav(&out.join("Night-Drive_full_48k32f.wav"));
    let (_, vox) = read_wav(&out.join("Night-Drive_stem-vocals_48k32f.wav"));
    let k = 10f64.powf(2.0 / 20.0) - 1.0;
    let (mut err2, mut sig2, mut max_rel) = (0.0, 0.0, 0.0_f64);
    for ch in 0..2 {
        for i in 0..up[ch].len() {
            let diff = up[ch][i] - full[ch][i];
            let want = k * vox[ch][i];
            let e = diff - want;
            err2 += e * e;
            sig2 += want * want;
            // Each file is rounded to f32 once: error within a few f32 ulps of the
            // mix, plus an absolute floor of 1e-12 (-240 dBFS) for the decaying
            // tails, where recursive filters' internal state rounds at ~1e-17.
            let tol = 4.0 * f64::from(f32::EPSILON) * (up[ch][i].abs() + full[ch][i].abs()) + 1e-12;
            max_rel = max_rel.max(e.abs() / tol);
        }
    }
    assert!(sig2 > 0.0);
    let snr_db = 10.0 * (sig2 / err2.max(1e-300)).log10();
    assert!(
        max_rel <= 1.0,
        "difference exceeds float precision (x{max_rel:.2} of tolerance)"
    );
    assert!(
        snr_db > 120.0,
        "vocal_up - full vs scaled vocal stem: only {snr_db:.1} dB apart"
    );
}

/// A corrupt stem fails its title with a clear reason; the job reports it and exits non-zero.
#[test]
fn corrupt_stem_fails_its_title_cleanly() {
    let d = demo();
    let dir = scratch("corrupt");
    let spec = std::fs::read_to_string(&d.spec).expect("spec");
    // Title 1: the demo (absolute stem paths); title 2: the same with a text file as its bass stem.
    let stems = d.dir.join("stems");
    let abs = spec.replace("\"stems/", &format!("\"{}/", stems.display()));
    std::fs::write(
        dir.join("bad_bass.wav"),
        b"this is not audio, just text named .wav",
    )
    .expect("write");
    let title2 = abs
        .split("[[titles]]")
        .nth(1)
        .expect("title block")
        .replace("name = \"Night Drive\"", "name = \"Broken\"")
        .replace(
            &format!("{}/night-drive_bass.wav", stems.display()),
            "bad_bass.wav",
        );
    std::fs::write(dir.join("job.toml"), format!("{abs}\n[[titles]]{title2}")).expect("write");
    let o = stemforge(&[
        "render",
        dir.join("job.toml").to_str().expect("utf-8"),
        "--workers",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let all = text(&o);
    assert!(!all.contains("panicked"), "{all}");
    let m = read_json(&dir.join("deliverables/manifest.json"));
    let titles = m["titles"].as_array().expect("titles");
    assert_eq!(titles[0]["status"], "rendered");
    assert_eq!(titles[1]["status"], "failed");
    let err = titles[1]["error"].as_str().expect("error");
    assert!(err.contains("bad_bass.wav"), "{err}");
    assert_eq!(m["summary"]["titles_failed"], 1);
    assert_eq!(
        outputs(&m)
            .iter()
            .filter(|o| o["verdict"]["verdict"] == "pass")
            .count(),
        12
    );
    // The failed title counts every file it would have written: a stem set
    // is one entry per role, so both titles list the same files.
    let files = |t: &serde_json::Value| -> Vec<(String, String)> {
        t["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(|o| (o["variant"].to_string(), o["role"].to_string()))
            .collect()
    };
    assert_eq!(files(&titles[1]), files(&titles[0]));
    assert_eq!(m["summary"]["outputs"], 2 * files(&titles[0]).len());
    assert_eq!(m["summary"]["failed"], files(&titles[1]).len());
}

/// A target the mix cannot reach without clipping: the clip safety lowers the
/// master gain, no sample clips, and the manifest says why the full mix fails.
#[test]
fn clip_safety_keeps_samples_below_full_scale_and_reports_it() {
    let d = demo();
    let spec = std::fs::read_to_string(&d.spec).expect("spec");
    // The clip safety matters where no limiter bounds the peaks.
    let hot = without_lines(&spec, &["\"limiter\""])
        .replace("bit_depth = 24", "bit_depth = 16\ntarget_lufs = -6.0");
    let (out, o) = render_demo_variant("hot", &hot);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let m = read_json(&out.join("manifest.json"));
    let level = &m["titles"][0]["level"];
    let safety = level["clip_safety_db"].as_f64().expect("clip safety");
    assert!(safety > 1.0, "clip safety {safety} dB");
    assert!(level["clip_safety_output"].as_str().is_some());
    let outs = outputs(&m);
    let full = outs.iter().find(|o| o["variant"] == "full").expect("full");
    assert_eq!(full["verdict"]["verdict"], "fail");
    let reason = full["verdict"]["reasons"][0].as_str().expect("reason");
    assert!(reason.contains("outside -6.0"), "{reason}");
    // The loudest output touches full scale but never clips: no sample at the
    // clamp limit beyond the one the gain was fitted to, none flagged clipped.
    let mut loudest = 0.0_f64;
    for o in &outs {
        assert!(o["measurement"]["notes"].as_array().is_none_or(|n| {
            !n.iter()
                .any(|x| x.as_str().is_some_and(|s| s.contains("clipped")))
        }));
        let (_, ch) = read_wav(&out.join(o["file"]["path"].as_str().expect("path")));
        let peak = ch.iter().flatten().fold(0.0_f64, |a, x| a.max(x.abs()));
        loudest = loudest.max(peak);
    }
    assert!(loudest <= 32_767.0 / 32_768.0, "peak {loudest}");
    // The clip safety fits the loudest output to full scale; then the
    // ceiling rule trims every output onto the working ceiling (−1.1 dBTP):
    // the full mix, already under its target, can spare nothing, so each
    // output that needs more takes a trim of its own, recorded.
    let trim = level["ceiling_trim_db"].as_f64().expect("trim");
    assert!(trim < 0.0, "trim {trim}");
    let loudest_db = 20.0 * loudest.log10();
    assert!(
        loudest_db <= -1.1 + 0.001,
        "loudest sample {loudest_db:.4} dBFS"
    );
    let before = level["output_true_peaks_dbtp"]
        .as_object()
        .expect("true peaks before trim");
    assert_eq!(before.len(), outs.len());
    for o in &outs {
        let tp = o["measurement"]["true_peak_dbtp"].as_f64().expect("TP");
        assert!(tp <= -1.1 + 0.005, "{}: {tp}", o["file"]["path"]);
        let path = o["file"]["path"].as_str().expect("path");
        let pre = before[path].as_f64().expect("before");
        let applied = o["ceiling_trim_db"].as_f64().expect("applied trim");
        // The trim moved the peak by exactly its size (dither aside).
        assert!(
            (pre + applied - tp).abs() < 0.01,
            "{path}: {pre} {applied} {tp}"
        );
    }
    assert!(
        level["trim_rule"]
            .as_str()
            .is_some_and(|r| r.contains("ceiling wins") || r.contains("of its own")),
        "{level:#}"
    );
    let full_tp = full["measurement"]["true_peak_dbtp"].as_f64().expect("TP");
    assert!(full_tp <= -1.0, "full mix true peak {full_tp}");
}

/// The committed JSON schema describes the manifest we write: every key we
/// write is declared, every required key is written, types match.
#[test]
fn manifest_matches_its_committed_schema() {
    let schema_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deliverables-spec/manifest.schema.json");
    let schema = read_json(&schema_path);
    let mut problems = Vec::new();
    check_schema(&demo().manifest, &schema, &schema, "$", &mut problems);
    assert!(
        problems.is_empty(),
        "manifest vs schema:\n{}",
        problems.join("\n")
    );
}

fn check_schema(
    v: &serde_json::Value,
    s: &serde_json::Value,
    root: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if let Some(r) = s["$ref"].as_str() {
        let name = r.trim_start_matches("#/$defs/");
        return check_schema(v, &root["$defs"][name], root, at, out);
    }
    if let Some(alts) = s["oneOf"].as_array() {
        let ok = alts.iter().any(|a| {
            let mut p = Vec::new();
            check_schema(v, a, root, at, &mut p);
            p.is_empty()
        });
        if !ok {
            out.push(format!("{at}: matches no alternative"));
        }
        return;
    }
    let type_ok = |t: &str| match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_u64() || v.is_i64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    };
    match &s["type"] {
        Value::String(t) if !type_ok(t) => out.push(format!("{at}: expected {t}, got {v}")),
        Value::Array(ts) if !ts.iter().filter_map(Value::as_str).any(type_ok) => {
            out.push(format!("{at}: expected {ts:?}, got {v}"))
        }
        _ => {}
    }
    if let Some(e) = s["enum"].as_array()
        && !e.contains(v)
    {
        out.push(format!("{at}: {v} not in {e:?}"));
    }
    if let Some(obj) = v.as_object()
        && let Some(props) = s["properties"].as_object()
    {
        for k in obj.keys() {
            if !props.contains_key(k) {
                out.push(format!("{at}.{k}: written but not in the schema"));
            }
        }
        for r in s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(r) {
                out.push(format!("{at}.{r}: required but missing"));
            }
        }
        for (k, sub) in props {
            if let Some(x) = obj.get(k) {
                check_schema(x, sub, root, &format!("{at}.{k}"), out);
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            check_schema(x, items, root, &format!("{at}[{i}]"), out);
        }
    }
}

/// A stem shorter than the others is padded with silence, every output keeps
/// the longest stem's length, and the manifest says so.
#[test]
fn short_stem_is_padded_and_reported() {
    let d = demo();
    let dir = scratch("short");
    let stems = d.dir.join("stems");
    // A copy of the bass stem one second short.
    let (spec, bass) = read_wav(&stems.join("night-drive_bass.wav"));
    let mut w = hound::WavWriter::create(dir.join("short_bass.wav"), spec).expect("wav");
    for i in 0..bass[0].len() - 48_000 {
        for c in &bass {
            w.write_sample((c[i] * 8_388_608.0).round() as i32)
                .expect("sample");
        }
    }
    w.finalize().expect("finalize");
    let text_spec = std::fs::read_to_string(&d.spec)
        .expect("spec")
        .replace("\"stems/", &format!("\"{}/", stems.display()))
        .replace(
            &format!("{}/night-drive_bass.wav", stems.display()),
            "short_bass.wav",
        );
    std::fs::write(dir.join("job.toml"), text_spec).expect("write");
    let o = stemforge(&["render", dir.join("job.toml").to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let m = read_json(&dir.join("deliverables/manifest.json"));
    let notes = m["titles"][0]["notes"].as_array().expect("notes");
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .is_some_and(|s| s.contains("short_bass.wav") && s.contains("48000 frames shorter"))),
        "{notes:?}"
    );
    let bass_in = m["titles"][0]["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .find(|i| i["role"] == "bass")
        .expect("bass")
        .clone();
    assert_eq!(bass_in["frames"], 19 * 48_000);
    for o in outputs(&m) {
        assert_eq!(o["file"]["frames"], 20 * 48_000, "{}", o["file"]["path"]);
    }
}

/// The spec text without the lines that contain any of `needles`.
fn without_lines(spec: &str, needles: &[&str]) -> String {
    spec.lines()
        .filter(|l| !needles.iter().any(|n| l.contains(n)))
        .collect::<Vec<_>>()
        .join("\n")
}
