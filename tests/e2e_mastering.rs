//! The mastering graph end to end: linked stems null against the mastered
//! mix, every output is time-aligned, and the limiter never lets a true peak
//! through on the written file (checked by ffmpeg as well as by us).

use std::path::{Path, PathBuf};

use stemforge_testkit::*;

/// The demo session pushed to streaming loudness (-14 LUFS), where the master
/// limiter works hard, rendered at `bits`.
fn hot_demo(bits: &str, tag: &str) -> (PathBuf, serde_json::Value) {
    render_variant_of_demo(&format!("hot{bits}-{tag}"), bits, false)
}

/// The demo spec at -14 LUFS and `bits`; `no_eq` drops every EQ node (which
/// shifts phase) and keeps gains, dynamics and the limiter (which add latency).
fn render_variant_of_demo(name: &str, bits: &str, no_eq: bool) -> (PathBuf, serde_json::Value) {
    let d = demo();
    let mut spec = std::fs::read_to_string(&d.spec)
        .expect("spec")
        .replace("profile = \"ebu-r128\"", "profile = \"spotify\"")
        .replace("bit_depth = 24", &format!("bit_depth = {bits}"));
    if no_eq {
        let eq = [
            "\"high_pass\"",
            "\"low_pass\"",
            "\"low_shelf\"",
            "\"high_shelf\"",
            "\"peak\"",
        ];
        spec = spec
            .lines()
            .filter(|l| !eq.iter().any(|e| l.contains(e)))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(spec.contains("\"limiter\"") && spec.contains("\"compressor\""));
    }
    let (out, o) = render_demo_variant(name, &spec);
    assert!(o.status.success(), "{}", text(&o));
    let m = read_json(&out.join("manifest.json"));
    (out, m)
}

const ROLES: [&str; 6] = ["drums", "bass", "keys", "vocals", "backing_vocals", "fx"];

/// RMS of (Σ stems − full mix) in dBFS, and the full mix's RMS.
fn null_depth(dir: &Path, suffix: &str) -> (f64, f64) {
    let (_, full) = read_wav(&dir.join(format!("Night-Drive_full_{suffix}.wav")));
    let sum =
        sum_wavs(&ROLES.map(|role| dir.join(format!("Night-Drive_stem-{role}_{suffix}.wav"))));
    let (mut e2, mut s2, mut n) = (0.0, 0.0, 0.0);
    for (a, b) in sum.iter().zip(&full) {
        for (x, y) in a.iter().zip(b) {
            e2 += (x - y) * (x - y);
            s2 += y * y;
            n += 1.0;
        }
    }
    (10.0 * (e2 / n).log10(), 10.0 * (s2 / n).log10())
}

#[test]
fn linked_stems_null_against_the_limited_mix() {
    let (out, m) = hot_demo("32", "null");
    let full = outputs(&m)
        .into_iter()
        .find(|o| o["variant"] == "full")
        .expect("full");
    let i = full["measurement"]["integrated_lufs"].as_f64().expect("I");
    assert!((i - -14.0).abs() <= 0.1, "full mix at {i} LUFS");
    for o in outputs(&m).iter().filter(|o| o["variant"] == "stems") {
        assert_eq!(o["mode"], "linked_stem");
    }
    let (residual, level) = null_depth(&out, "48k32f");
    eprintln!("float: Σ stems − full = {residual:.1} dBFS RMS (mix {level:.1} dBFS RMS)");
    assert!(residual <= -120.0, "residual {residual:.1} dBFS RMS");

    let (out24, _) = hot_demo("24", "null");
    let (residual24, _) = null_depth(&out24, "48k24");
    eprintln!("24-bit: Σ stems − full = {residual24:.1} dBFS RMS");
    // Only the seven outputs' independent TPDF dither remains.
    assert!(residual24 <= -125.0, "residual {residual24:.1} dBFS RMS");
    assert!(
        residual24 >= -150.0,
        "dither noise should be there: {residual24:.1}"
    );
}

/// Lag (in frames, within ±max_lag) where the cross-correlation of a and b peaks.
fn xcorr_peak(a: &[f64], b: &[f64], max_lag: i64) -> i64 {
    let n = a.len().min(b.len()) as i64;
    let (mut best, mut best_lag) = (f64::MIN, 0);
    for lag in -max_lag..=max_lag {
        let mut s = 0.0;
        let mut i = max_lag;
        while i < n - max_lag {
            s += a[i as usize] * b[(i + lag) as usize];
            i += 1;
        }
        if s > best {
            best = s;
            best_lag = lag;
        }
    }
    best_lag
}

/// Latency (limiter lookahead, its detector, alignment delays) is fully
/// compensated: with every EQ removed, the mastered mix correlates with the
/// raw unity sum of the stems at exactly lag 0. (The demo's minimum-phase EQs
/// themselves move the correlation peak a few frames — their group delay in
/// the low end, not a timeline shift — so that check is made without them.)
#[test]
fn mix_is_aligned_with_the_raw_stems() {
    let d = demo();
    let (out, m) = render_variant_of_demo("no_eq", "24", true);
    // Raw unity sum of the input stems (4 s from the first chorus).
    let stems = d.dir.join("stems");
    let seg = 13 * 48_000..17 * 48_000;
    let mut raw = vec![0.0; seg.len()];
    for name in [
        "drums",
        "bass",
        "keys",
        "lead_vocal",
        "backing_vocals",
        "fx",
    ] {
        let (_, s) = read_wav(&stems.join(format!("night-drive_{name}.wav")));
        for (r, x) in raw.iter_mut().zip(&s[0][seg.clone()]) {
            *r += x;
        }
    }
    let (_, full) = read_wav(&out.join("Night-Drive_full_48k24.wav"));
    assert_eq!(
        xcorr_peak(&full[0][seg.clone()], &raw, 200),
        0,
        "full mix vs raw stems"
    );
    assert!(m["titles"][0]["level"]["master_gain_db"].as_f64().is_some());
}

/// Every mix variant lines up with the full mix (same chains, same latency),
/// and every output has exactly the stems' frame count. (Linked stems are
/// held to a stricter test: they must null against the full mix, which a
/// one-frame shift of any stem would fail by tens of dB.)
#[test]
fn every_output_is_aligned_with_the_full_mix() {
    let (out, m) = hot_demo("24", "align");
    let seg = 13 * 48_000..17 * 48_000;
    let (_, full) = read_wav(&out.join("Night-Drive_full_48k24.wav"));
    for o in outputs(&m) {
        assert_eq!(o["file"]["frames"], 20 * 48_000, "{}", o["file"]["path"]);
        if o["variant"] == "full" || o["mode"] != "mix" {
            continue;
        }
        let (_, x) = read_wav(&out.join(o["file"]["path"].as_str().expect("path")));
        let lag = xcorr_peak(&full[0][seg.clone()], &x[0][seg.clone()], 200);
        assert_eq!(
            lag, 0,
            "{} is shifted {lag} frames against the full mix",
            o["file"]["path"]
        );
    }
}

/// Writes a stereo 48 kHz 32-bit float WAV (values may exceed 1.0).
fn write_f32(path: &Path, left: &[f64], right: &[f64]) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for (l, r) in left.iter().zip(right) {
        w.write_sample(*l as f32).expect("sample");
        w.write_sample(*r as f32).expect("sample");
    }
    w.finalize().expect("finalize");
}

/// Torture signals, 6 s each at 48 kHz.
fn torture(dir: &Path) -> Vec<(&'static str, String)> {
    let n = 6 * 48_000;
    let sr = 48_000.0;
    let tau = std::f64::consts::TAU;
    let mut rng = 0x1234_5678_9abc_def0_u64;
    let mut noise = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let step: Vec<f64> = (0..n)
        .map(|i| (tau * 997.0 * i as f64 / sr).sin() * if i < n / 2 { 0.1 } else { 1.0 })
        .collect();
    let sweep: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 / sr;
            let (f0, f1, dur) = (20.0_f64, 20_000.0_f64, 6.0);
            let k = (f1 / f0).ln() / dur;
            (tau * f0 * ((k * t).exp() - 1.0) / k).sin()
        })
        .collect();
    let square: Vec<f64> = (0..n)
        .map(|i| {
            if (tau * 11_900.0 * i as f64 / sr).sin() >= 0.0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    let clipped: Vec<f64> = (0..n).map(|_| (noise() * 4.0).clamp(-1.0, 1.0)).collect();
    let mut out = Vec::new();
    for (name, sig) in [
        ("step", step),
        ("sweep", sweep),
        ("square", square),
        ("clipped_noise", clipped),
    ] {
        let file = format!("{name}.wav");
        let other: Vec<f64> = sig.iter().map(|x| 0.8 * x).collect();
        write_f32(&dir.join(&file), &sig, &other);
        out.push((name, file));
    }
    out
}

#[test]
fn limiter_never_lets_a_true_peak_through() {
    let dir = scratch("torture");
    let signals = torture(&dir);
    let mut titles = String::new();
    for (name, file) in &signals {
        titles.push_str(&format!(
            "[[titles]]\nname = \"{name}\"\nstems = [{{ file = \"{file}\", role = \"other\" }}]\n\n"
        ));
    }
    let mut worst = f64::MIN;
    for bits in ["16", "24", "32"] {
        // A target no limited signal can reach: the search drives the limiter
        // as hard as its gain range allows.
        let spec = format!(
            "schema_version = 1\n[delivery]\ntarget_lufs = 0.0\ntolerance_lu = 1.0\ntrue_peak_max_dbtp = -1.0\nbit_depth = {bits}\noutput_dir = \"out{bits}\"\n\n[graph.master]\nchain = [{{ node = \"loudness\" }}, {{ node = \"limiter\" }}]\n\n[variants.full]\n\n{titles}"
        );
        let p = dir.join(format!("torture{bits}.toml"));
        std::fs::write(&p, spec).expect("spec");
        let o = stemforge(&["render", p.to_str().expect("utf-8")]);
        let all = text(&o);
        assert!(!all.contains("panicked"), "{all}");
        let m = read_json(&dir.join(format!("out{bits}/manifest.json")));
        for o in outputs(&m) {
            let file = dir
                .join(format!("out{bits}"))
                .join(o["file"]["path"].as_str().expect("path"));
            let ours = o["measurement"]["true_peak_dbtp"].as_f64().expect("TP");
            let ff = ffmpeg_r128(&file).tp;
            eprintln!(
                "{bits}-bit {}: TP ours {ours:.3}, ffmpeg {ff:.3} dBTP",
                o["file"]["path"]
            );
            assert!(
                ours <= -1.0,
                "{}: our TP {ours} dBTP over the ceiling",
                file.display()
            );
            assert!(
                ff <= -1.0,
                "{}: ffmpeg TP {ff} dBTP over the ceiling",
                file.display()
            );
            assert!(o["verdict"]["reasons"].as_array().is_none_or(|r| {
                !r.iter()
                    .any(|x| x.as_str().is_some_and(|s| s.contains("true peak")))
            }));
            worst = worst.max(ours).max(ff);
        }
    }
    eprintln!("worst true peak over all torture outputs: {worst:.3} dBTP (ceiling -1.0)");
}

#[test]
fn width_nodes_keep_stems_nulling_and_width_zero_on_the_master_is_mono() {
    let d = demo();
    let base = std::fs::read_to_string(&d.spec)
        .expect("spec")
        .replace("bit_depth = 24", "bit_depth = 32");
    // Narrow the backing vocals, widen the music bus (a stem and a bus node).
    let wide = base
        .replace(
            "  { node = \"gain\", db = -1.5 },\n",
            "  { node = \"gain\", db = -1.5 },\n  { node = \"width\", width = 0.4 },\n",
        )
        .replace(
            "  { node = \"low_shelf\", freq_hz = 80.0, gain_db = 1.0 },\n",
            "  { node = \"low_shelf\", freq_hz = 80.0, gain_db = 1.0 },\n  { node = \"width\", width = 1.6 },\n",
        );
    assert_eq!(
        wide.matches("\"width\"").count(),
        2,
        "the demo spec changed shape"
    );
    let (out, o) = render_demo_variant("width-nodes", &wide);
    assert!(o.status.success(), "{}", text(&o));
    let (residual, level) = null_depth(&out, "48k32f");
    eprintln!("width nodes: Σ stems − full = {residual:.1} dBFS RMS (mix {level:.1})");
    assert!(residual <= -120.0, "residual {residual:.1} dBFS RMS");

    // Width 0 on the master, before the limiter: every output is mono.
    let mono = base.replace(
        "  { node = \"loudness\" },\n",
        "  { node = \"width\", width = 0.0 },\n  { node = \"loudness\" },\n",
    );
    assert!(mono.contains("width = 0.0"));
    let (out, o) = render_demo_variant("width-mono", &mono);
    assert!(o.status.success(), "{}", text(&o));
    let (_, full) = read_wav(&out.join("Night-Drive_full_48k32f.wav"));
    let diff = full[0]
        .iter()
        .zip(&full[1])
        .map(|(l, r)| (l - r).abs())
        .fold(0.0f64, f64::max);
    let peak = full[0].iter().map(|x| x.abs()).fold(0.0f64, f64::max);
    assert!(peak > 0.1, "the mix has signal");
    assert_eq!(diff, 0.0, "width 0 on the master: L = R in the file");
}
