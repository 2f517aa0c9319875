//! 5.1 end to end: the demo song as a 5.1 session (5.1, stereo and mono
//! stems, a 5.1 reference) rendered by the real binary into 5.1 variants and
//! stems plus a stereo fold-down. Checked with independent tools: ffmpeg's
//! `ebur128` for loudness and true peak (LFE excluded by its own channel
//! map), ffmpeg's filters for the LFE band, hound for the samples.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use stemforge_testkit::signal::rms_db;
use stemforge_testkit::*;

const LSB: f64 = 1.0 / 8_388_608.0;

/// The 5.1 demo, and the same session rendered with extra variants: a
/// fold-down at the master's level without its limiter (to compare with the
/// formula), and a matched fold-down with its stems.
struct Surround {
    /// The demo's own render (the pack a newcomer gets).
    demo_out: PathBuf,
    demo_manifest: serde_json::Value,
    /// The extended spec's render.
    out: PathBuf,
    manifest: serde_json::Value,
    spec_text: String,
    spec_path: PathBuf,
}

fn session() -> &'static Surround {
    static S: OnceLock<Surround> = OnceLock::new();
    S.get_or_init(|| {
        let dir = scratch("surround");
        let d = dir.to_str().expect("utf-8 path");
        let o = stemforge(&[
            "demo",
            d,
            "--layout",
            "5.1",
            "--seconds",
            "20",
            "--workers",
            "2",
        ]);
        assert!(o.status.success(), "5.1 demo failed:\n{}", text(&o));
        let demo_out = dir.join("deliverables");
        let demo_manifest = read_json(&demo_out.join("manifest.json"));
        let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
        assert!(
            base.contains("[variants.fold_down]") && base.contains("layout = \"5.1\""),
            "the 5.1 demo spec changed shape"
        );
        // Two stem variants need the variant in the stem file names.
        let spec_text = base
            .replace(
                "[variants.fold_down]",
                "[variants.lo_ro_unlimited]\nlevel = \"matched\"\nfold_down = { limiter = false }\n\n\
                 [variants.lo_ro_matched]\nfold_down = {}\n\n\
                 [variants.lo_ro_stems]\noutput = \"stems\"\nfold_down = {}\n\n\
                 [variants.fold_down]",
            )
            .replace(
                "bit_depth = 24\n",
                "bit_depth = 24\nstem_naming = \"{title}_{variant}-{role}_{rate}k{bits}.wav\"\n",
            );
        let spec_path = dir.join("extended.toml");
        std::fs::write(&spec_path, &spec_text).expect("write spec");
        let out = dir.join("extended");
        let manifest = render_ok(&spec_path, &out);
        Surround {
            demo_out,
            demo_manifest,
            out,
            manifest,
            spec_text,
            spec_path,
        }
    })
}

fn output<'a>(m: &'a serde_json::Value, file: &str) -> &'a serde_json::Value {
    m["titles"][0]["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["file"]["path"] == file)
        .unwrap_or_else(|| panic!("{file} is not in the manifest"))
}

/// The file of a variant's stem of `role` in a manifest.
fn stem_file(m: &serde_json::Value, variant: &str, role: &str) -> String {
    outputs(m)
        .into_iter()
        .find(|o| o["variant"] == variant && o["role"] == role)
        .and_then(|o| o["file"]["path"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no {variant} stem for {role}"))
}

/// RMS (dBFS) and largest absolute value of `a − b`, over every channel.
fn difference(a: &[Vec<f64>], b: &[Vec<f64>]) -> (f64, f64) {
    let diff: Vec<f64> = a
        .iter()
        .zip(b)
        .flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| p - q))
        .collect();
    let max = diff.iter().fold(0.0_f64, |m, d| m.max(d.abs()));
    (rms_db(&diff), max)
}

#[test]
fn the_5_1_pack_is_5_1_with_a_stereo_fold_down_and_passes() {
    let s = session();
    let m = &s.demo_manifest;
    let outs = outputs(m);
    // full, instrumental, acappella, tv, vocal_up, vocal_down, 6 stems, fold-down.
    assert_eq!(outs.len(), 13, "{outs:#?}");
    for o in &outs {
        let name = o["file"]["path"].as_str().expect("path");
        let (spec, ch) = read_wav(&s.demo_out.join(name));
        let want = if o["variant"] == "fold_down" { 2 } else { 6 };
        assert_eq!(spec.channels, want, "{name}");
        assert_eq!(ch[0].len(), 960_000, "{name}: exact length");
        assert_eq!(
            o["verdict"]["verdict"], "pass",
            "{name}: {:#}",
            o["verdict"]
        );
    }
    assert_eq!(m["titles"][0]["layout"], "5.1");
    // The report and the CSV say what the fold-down's own gain is.
    let fold = output(m, "Night-Drive_fold_down_48k24.wav");
    let fold_gain = fold["fold_down_gain_db"].as_f64().expect("fold gain");
    let csv = std::fs::read_to_string(s.demo_out.join("manifest.csv")).expect("csv");
    let rows: Vec<Vec<&str>> = csv
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').collect())
        .collect();
    let col = rows[0]
        .iter()
        .position(|c| *c == "fold_down_gain_db")
        .expect("column");
    let row = rows
        .iter()
        .find(|r| r.contains(&"Night-Drive_fold_down_48k24.wav"))
        .expect("fold-down row");
    assert_eq!(row[col].parse::<f64>().ok(), Some(fold_gain));
    let html = std::fs::read_to_string(s.demo_out.join("report.html")).expect("report");
    assert!(html.contains("5.1 (L R C LFE Ls Rs") && html.contains("fold-down gain"));
    // ffprobe reads the 5.1 layout from the WAVE_FORMAT_EXTENSIBLE mask.
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=channels,channel_layout",
            "-of",
            "csv=p=0",
        ])
        .arg(s.demo_out.join("Night-Drive_full_48k24.wav"))
        .output()
        .expect("ffprobe");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "6,5.1(side)");
    // Preflight of the 5.1 session: the mono, stereo and 5.1 stems routed
    // into 5.1 null against the 5.1 reference exactly.
    let pf = &m["titles"][0]["preflight"];
    assert_eq!(pf["null_test"]["pass"], true, "{pf:#}");
    let residual = pf["null_test"]["as_delivered"]["residual_db"]
        .as_f64()
        .expect("residual");
    assert!(residual <= -150.0, "null residual {residual} dB");
    assert!(
        pf["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .all(|f| f["severity"] != "error"),
        "{pf:#}"
    );
}

#[test]
fn five_one_loudness_and_true_peak_agree_with_ffmpeg() {
    let s = session();
    let mut worst = 0.0_f64;
    for o in outputs(&s.demo_manifest) {
        let name = o["file"]["path"].as_str().expect("path");
        let ff = ffmpeg_r128(&s.demo_out.join(name));
        let ours = o["measurement"]["integrated_lufs"].as_f64().expect("lufs");
        let d = (ours - ff.i).abs();
        worst = worst.max(d);
        assert!(d <= 0.1, "{name}: ours {ours:.3}, ffmpeg {:.3} LUFS", ff.i);
        // EBU R128 delivery: -1 dBTP by ffmpeg's 192 kHz meter.
        assert!(ff.tp <= -1.0, "{name}: ffmpeg true peak {:.3} dBTP", ff.tp);
        if o["variant"] == "full" || o["variant"] == "fold_down" {
            assert!(
                (ff.i - -23.0).abs() <= 0.1,
                "{name}: ffmpeg {:.3} LUFS, target -23",
                ff.i
            );
            eprintln!(
                "{name}: ffmpeg {:.3} LUFS / {:.3} dBTP, ours {ours:.3} / {}",
                ff.i, ff.tp, o["measurement"]["true_peak_dbtp"]
            );
        }
    }
    eprintln!("largest loudness difference from ffmpeg over the pack: {worst:.4} LU");
}

/// Lo = L + C/√2 + Ls/√2, Ro = R + C/√2 + Rs/√2 of a 5.1 file's samples.
fn bs775(five_one: &[Vec<f64>]) -> [Vec<f64>; 2] {
    let k = std::f64::consts::FRAC_1_SQRT_2;
    let side = |front: usize, surround: usize| -> Vec<f64> {
        (0..five_one[0].len())
            .map(|i| five_one[front][i] + k * five_one[2][i] + k * five_one[surround][i])
            .collect()
    };
    [side(0, 4), side(1, 5)]
}

#[test]
fn the_fold_down_is_the_bs775_formula_before_its_limiter() {
    let s = session();
    let (_, master) = read_wav(&s.out.join("Night-Drive_full_48k24.wav"));
    let formula = bs775(&master);

    // At the master's level and without a limiter: the formula, to within
    // the two files' dither and rounding.
    let (spec, lo_ro) = read_wav(&s.out.join("Night-Drive_lo_ro_unlimited_48k24.wav"));
    assert_eq!(spec.channels, 2);
    let (residual, max_err) = difference(&formula, &lo_ro);
    eprintln!(
        "fold-down vs BS.775 formula of the 5.1 master: residual {residual:.1} dBFS RMS, max {:.2} LSB",
        max_err / LSB
    );
    // Each side: 3 dithered (±1 LSB TPDF) and rounded samples of the master
    // through the formula, plus the fold-down's own: ≤ 1.5·(1 + 2/√2) + 1.5.
    assert!(max_err <= 5.7 * LSB, "{} LSB", max_err / LSB);
    assert!(residual <= -135.0, "{residual:.1} dBFS");

    // The delivered fold-down: the same fold at its own gain (recorded in the
    // manifest), then its limiter. Here the limiter has nothing to do (the
    // fold-down peaks well under the ceiling), so only its band limit
    // (linear phase, above 20 kHz) and the dither separate them.
    let level = &s.manifest["titles"][0]["level"];
    let fold = output(&s.manifest, "Night-Drive_fold_down_48k24.wav");
    assert_eq!(fold["level_policy"], "normalized");
    let (_, delivered) = read_wav(&s.out.join("Night-Drive_fold_down_48k24.wav"));
    // The 5.1 master inside the fold-down runs at the full mix's gain.
    assert_eq!(fold["gain_db"], level["master_gain_db"]);
    let fold_gain_db = fold["fold_down_gain_db"].as_f64().expect("fold-down gain");
    let fitted = least_squares_gain_db(&formula, &delivered);
    eprintln!("fold-down gain: manifest {fold_gain_db:+.4} dB, least-squares fit {fitted:+.4} dB");
    assert!((fitted - fold_gain_db).abs() <= 0.01);
    let g = 10f64.powf(fold_gain_db / 20.0);
    let mut diff = Vec::new();
    let mut signal = Vec::new();
    for (f, o) in formula.iter().zip(&delivered) {
        for (a, b) in f.iter().zip(o) {
            diff.push(g * a - b);
            signal.push(*b);
        }
    }
    let depth = rms_db(&diff) - rms_db(&signal);
    eprintln!(
        "delivered fold-down (gain {fold_gain_db:+.3} dB, master {}) vs gain × formula: {depth:.1} dB below the signal",
        level["master_gain_db"]
    );
    // What separates them is the limiter's band limit (a linear-phase
    // low-pass from 0.42·fs, i.e. the synthesised cymbals' and noise's
    // energy above 20 kHz) and dither: the limiter itself never acts here
    // (the fold-down peaks near -9.5 dBTP).
    assert!(depth <= -40.0, "{depth:.1} dB");
}

/// The least-squares gain from the formula to the delivered file, dB.
fn least_squares_gain_db(formula: &[Vec<f64>; 2], delivered: &[Vec<f64>]) -> f64 {
    let (mut xy, mut xx) = (0.0, 0.0);
    for (f, o) in formula.iter().zip(delivered) {
        for (a, b) in f.iter().zip(o) {
            xy += a * b;
            xx += a * a;
        }
    }
    20.0 * (xy / xx).log10()
}

/// The spec's one title with a plain graph: no chains, only the loudness
/// gain, so each output channel is a fixed linear function of the stems.
fn plain_spec(base: &str, lfe: &str) -> String {
    let titles = base.find("[[titles]]").expect("titles");
    format!(
        "schema_version = 1\n\n[delivery]\nprofile = \"ebu-r128\"\nbit_depth = 24\n\n{lfe}\n[graph.master]\nchain = [{{ node = \"loudness\" }}]\n\n[variants.full]\n\n{}",
        &base[titles..]
    )
}

/// Renders the plain graph (`lfe`: extra TOML) into `dir/name`: the master
/// gain as a linear factor and the full mix's samples.
fn render_plain(dir: &std::path::Path, base: &str, lfe: &str, name: &str) -> (f64, Vec<Vec<f64>>) {
    let spec = dir.join(format!("{name}.toml"));
    std::fs::write(&spec, plain_spec(base, lfe)).expect("write");
    let out = dir.join(name);
    let m = render_ok(&spec, &out);
    let db = m["titles"][0]["level"]["master_gain_db"]
        .as_f64()
        .expect("gain");
    let (_, full) = read_wav(&out.join("Night-Drive_full_48k24.wav"));
    (10f64.powf(db / 20.0), full)
}

/// How far `out` is from `g · reference`, in dB relative to `out`.
fn depth_db(out: &[f64], reference: impl Iterator<Item = f64>, g: f64) -> f64 {
    let diff: Vec<f64> = out.iter().zip(reference).map(|(a, b)| a - g * b).collect();
    rms_db(&diff) - rms_db(out)
}

#[test]
fn the_lfe_is_low_passed_like_ffmpegs_butterworth_and_nothing_else_is() {
    let s = session();
    let dir = s.spec_path.parent().expect("dir");
    let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
    let (g, full) = render_plain(dir, &base, "", "plain");

    // The independent reference: ffmpeg's own 4th-order Butterworth at
    // 120 Hz (two biquads, Q 0.5412 and 1.3066) of the bass stem's LFE
    // channel, the only stem with an LFE.
    let bass = dir.join("stems/night-drive_bass.wav");
    let reference = dir.join("lfe-ffmpeg.wav");
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-y", "-i"])
        .arg(&bass)
        .args([
            "-af",
            "aformat=sample_fmts=dbl,pan=mono|c0=c3,lowpass=f=120:width_type=q:width=0.541196,lowpass=f=120:width_type=q:width=1.306563",
            "-c:a",
            "pcm_f32le",
        ])
        .arg(&reference)
        .output()
        .expect("ffmpeg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, lfe_ref) = read_wav(&reference);
    let (_, stem) = read_wav(&bass);
    let depth = depth_db(&full[3], lfe_ref[0].iter().copied(), g);
    // And how much it removed: the printed LFE against the delivered one.
    let unfiltered = depth_db(&full[3], stem[3].iter().copied(), g);
    eprintln!(
        "LFE ({:.1} dBFS RMS) vs ffmpeg's Butterworth 120 Hz of the stem's LFE: {depth:.1} dB; vs the unfiltered LFE: {unfiltered:.1} dB",
        rms_db(&full[3])
    );
    assert!(depth <= -80.0, "{depth:.1} dB");
    assert!(unfiltered >= -30.0, "the low-pass did nothing");
    // The other channels are untouched: the centre is exactly the stems'
    // centres (bass and the mono lead vocal) at the master gain.
    let (_, vocal) = read_wav(&dir.join("stems/night-drive_lead_vocal.wav"));
    let centres = stem[2].iter().zip(&vocal[0]).map(|(b, v)| b + v);
    let centre_depth = depth_db(&full[2], centres, g);
    eprintln!("centre vs the stems' centres at the master gain: {centre_depth:.1} dB");
    assert!(centre_depth <= -100.0, "{centre_depth:.1} dB");

    // `low_pass = false` passes the LFE untouched.
    let (g, full) = render_plain(
        dir,
        &base,
        "[graph.lfe]\nlow_pass = false\n",
        "plain-no-lfe-filter",
    );
    let depth = depth_db(&full[3], stem[3].iter().copied(), g);
    assert!(depth <= -100.0, "unfiltered LFE: {depth:.1} dB");
}

#[test]
fn stems_sum_to_the_5_1_master_and_fold_down_stems_to_the_fold_down() {
    let s = session();
    let roles = ["drums", "bass", "keys", "vocals", "backing_vocals", "fx"];
    // Fold-down stems (matched) replay the limiter envelope of the matched
    // fold-down: they sum to it.
    for (master, stem_variant) in [
        ("Night-Drive_full_48k24.wav", "stems"),
        ("Night-Drive_lo_ro_matched_48k24.wav", "lo_ro_stems"),
    ] {
        let files: Vec<PathBuf> = roles
            .iter()
            .map(|r| s.out.join(stem_file(&s.manifest, stem_variant, r)))
            .collect();
        let sum = sum_wavs(&files);
        let reference = read_wav(&s.out.join(master)).1;
        assert_eq!(sum.len(), reference.len(), "{stem_variant}: channels");
        let (r, max_err) = difference(&sum, &reference);
        eprintln!(
            "Σ {stem_variant} − master: {r:.1} dBFS RMS, max {:.1} LSB",
            max_err / LSB
        );
        // Seven dithered, rounded files: ≤ 7 × 1.5 LSB per sample.
        assert!(max_err <= 10.5 * LSB, "{} LSB", max_err / LSB);
        assert!(r <= -125.0, "{r:.1} dBFS");
    }
}

#[test]
fn a_5_1_render_is_bit_identical_across_runs() {
    let s = session();
    let again = s.out.with_file_name("extended-again");
    let o = stemforge(&[
        "render",
        s.spec_path.to_str().expect("utf-8"),
        "--workers",
        "1",
        "--out",
        again.to_str().expect("utf-8"),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let second = read_json(&again.join("manifest.json"));
    assert_eq!(audio_hashes(&s.manifest), audio_hashes(&second));
    assert!(s.spec_text.contains("lo_ro_unlimited"));
    let _ = std::fs::remove_dir_all(&again);
}

#[test]
fn a_5_1_stem_in_a_stereo_title_is_refused_with_the_fix() {
    let s = session();
    let dir = s.spec_path.parent().expect("dir");
    let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
    let stereo = base.replace("layout = \"5.1\"\n", "");
    // Asking for a fold-down when no title is 5.1 is a spec error.
    let path = dir.join("stereo-with-fold.toml");
    std::fs::write(&path, &stereo).expect("write");
    let o = stemforge(&["validate", path.to_str().expect("utf-8")]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("variants.fold_down") && t.contains("every title is stereo"),
        "{t}"
    );
    // Without it, the 5.1 stems of a stereo title are preflight errors
    // naming the file and the fix.
    let stereo: String = stereo
        .lines()
        .filter(|l| !l.starts_with("[variants.fold_down]"))
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.join("stereo-title.toml");
    std::fs::write(&path, stereo).expect("write");
    let o = stemforge(&["check", path.to_str().expect("utf-8")]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("night-drive_drums.wav' is 5.1 (6 channels) but the title is stereo")
            && t.contains("layout = \"5.1\""),
        "{t}"
    );
}
