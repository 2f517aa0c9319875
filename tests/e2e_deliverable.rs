//! Every delivered file deliverable, on sessions made from real instruments
//! (a public General MIDI file rendered by fluidsynth, a voice by espeak-ng:
//! `tests/support/real_session.py`), checked with independent tools:
//! ffmpeg's `ebur128` at full precision for loudness and true peak, hound
//! for samples, our own least-squares fits in this file, headless Chromium
//! for the report.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use stemforge_testkit::signal::rms_db_planar;
use stemforge_testkit::*;

/// Rewrites the session's spec: `[delivery]` lines and extra sections.
fn write_spec(dir: &Path, name: &str, delivery: &str, sections: &str) -> PathBuf {
    let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
    let spec = base
        .replace(
            "[delivery]\nprofile = \"ebu-r128\"\n",
            &format!("[delivery]\n{delivery}\n"),
        )
        .replacen("[[titles]]", &format!("{sections}\n[[titles]]"), 1);
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, spec).expect("write spec");
    p
}

fn out_path(out: &Path, o: &Value) -> PathBuf {
    out.join(o["file"]["path"].as_str().expect("file path"))
}

/// RMS of `sum − g·master` in dBFS: how deep stems null against a master.
fn null_db(sum: &[Vec<f64>], master: &[Vec<f64>], g: f64) -> f64 {
    let residual: Vec<Vec<f64>> = sum
        .iter()
        .zip(master)
        .map(|(s, f)| s.iter().zip(f).map(|(a, b)| a - g * b).collect())
        .collect();
    rms_db_planar(&residual)
}

/// Least-squares `y ≈ a·m + b·v` over every sample: the gains of the two
/// parts of a mix in another mix.
fn fit2(y: &[Vec<f64>], m: &[Vec<f64>], v: &[Vec<f64>]) -> (f64, f64) {
    let (mut mm, mut vv, mut mv, mut ym, mut yv) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for c in 0..y.len() {
        for i in 0..y[c].len() {
            let (yy, a, b) = (y[c][i], m[c][i], v[c][i]);
            mm += a * a;
            vv += b * b;
            mv += a * b;
            ym += yy * a;
            yv += yy * b;
        }
    }
    let det = mm * vv - mv * mv;
    ((ym * vv - yv * mv) / det, (yv * mm - ym * mv) / det)
}

const VARIANTS_EFFECTIVE: &str = r#"
[variants.full]
[variants.instrumental]
[variants.acappella]
[variants.tv]
[variants.stems]
[variants.vocal_up]
amount_mode = "effective"
[variants.vocal_down]
amount_mode = "effective"
"#;

/// Peaky stems that partly cancel (a spoken voice, drums, a bass with a
/// second, inverted bass layer), mastered loud: at −14 and −9 LUFS every
/// file is under the ceiling by ffmpeg, the full mix in its tolerance, the
/// stems sum to the master (times their recorded trim), and vocal up/down
/// deliver their amount.
#[test]
fn loud_masters_of_peaky_stems_deliver_every_file() {
    let dir = real_session("peaky", &["--seconds", "30", "--cancel"]);
    for target in [-14.0, -9.0] {
        let spec = write_spec(
            &dir,
            &format!("at{}", -target as i32),
            &format!("profile = \"spotify\"\ntarget_lufs = {target:.1}\nbit_depth = 32"),
            VARIANTS_EFFECTIVE,
        );
        let out = dir.join(format!("out{}", -target as i32));
        let m = render_ok(&spec, &out);
        let title = &m["titles"][0];
        let level = &title["level"];
        let outs = outputs(&m);
        assert_eq!(outs.len(), 12, "{target}: {outs:#?}");
        // Every file under the ceiling by ffmpeg's 192 kHz true peak.
        let mut worst = f64::NEG_INFINITY;
        for o in &outs {
            let ff = ffmpeg_r128(&out_path(&out, o));
            worst = worst.max(ff.tp);
            assert!(
                ff.tp <= -1.0 + 1e-9,
                "{target} LUFS: {} at {:.4} dBTP by ffmpeg; level {level:#}",
                o["file"]["path"],
                ff.tp
            );
            assert_eq!(o["verdict"]["verdict"], "pass", "{o:#}");
        }
        // The full mix inside its tolerance.
        let full = outs.iter().find(|o| o["variant"] == "full").expect("full");
        let ff_full = ffmpeg_r128(&out_path(&out, full));
        assert!(
            (ff_full.i - target).abs() <= 1.0,
            "{target}: full at {}",
            ff_full.i
        );
        // The stems sum to the master times their recorded trim.
        let stems: Vec<&Value> = outs.iter().filter(|o| o["variant"] == "stems").collect();
        assert_eq!(stems.len(), 6);
        let stems_trim = stems[0]["stems_trim_db"].as_f64().expect("stems_trim_db");
        assert!(
            stems
                .iter()
                .all(|s| s["stems_trim_db"].as_f64() == Some(stems_trim))
        );
        let paths: Vec<PathBuf> = stems.iter().map(|s| out_path(&out, s)).collect();
        let sum = sum_wavs(&paths);
        let (_, master) = read_wav(&out_path(&out, full));
        let g = 10f64.powf(stems_trim / 20.0);
        let null = null_db(&sum, &master, g);
        assert!(null <= -120.0, "{target}: stems null at {null:.1} dBFS");
        eprintln!(
            "{target} LUFS: full {:.3} LUFS / {:.3} dBTP by ffmpeg, worst file {worst:.3} dBTP, title trim {} dB, stems trim {stems_trim} dB, null {null:.1} dBFS; rule: {}",
            ff_full.i, ff_full.tp, level["ceiling_trim_db"], level["trim_rule"]
        );
        if target == -9.0 {
            // Too loud for one trim: the stem set took its own.
            assert!(stems_trim < -0.05, "{level:#}");
            assert!(
                level["trim_rule"]
                    .as_str()
                    .is_some_and(|r| r.contains("stem set")),
                "{level:#}"
            );
        }
        // Vocal up/down deliver their amount: the vocal's gain in the
        // variant, fitted against the full mix's vocal stem and the rest.
        let (_, vocal) = read_wav(&out_path(
            &out,
            stems
                .iter()
                .find(|s| s["role"] == "vocals")
                .expect("vocal stem"),
        ));
        let vocal: Vec<Vec<f64>> = vocal
            .iter()
            .map(|c| c.iter().map(|x| x / g).collect())
            .collect();
        let rest: Vec<Vec<f64>> = master
            .iter()
            .zip(&vocal)
            .map(|(f, v)| f.iter().zip(v).map(|(a, b)| a - b).collect())
            .collect();
        for (name, asked) in [("vocal_up", 2.0), ("vocal_down", -2.0)] {
            let o = outs.iter().find(|o| o["variant"] == name).expect(name);
            let (_, y) = read_wav(&out_path(&out, o));
            let (a, b) = fit2(&y, &rest, &vocal);
            let fitted = 20.0 * b.log10();
            let reported = o["effective_change_db"]
                .as_f64()
                .expect("effective_change_db");
            eprintln!(
                "{target} LUFS {name}: asked {asked:+.1} dB, applied {} dB, fitted vocal {fitted:+.3} dB (rest {:+.3} dB), manifest {reported:+.3} dB",
                o["level_changes"][0]["applied_db"],
                20.0 * a.log10()
            );
            assert!((fitted - asked).abs() <= 0.25, "{target} {name}: {fitted}");
            assert!(
                (fitted - reported).abs() <= 0.1,
                "{target} {name}: {fitted} vs {reported}"
            );
            assert_eq!(o["level_changes"][0]["within_tolerance"], true);
        }
    }
}

/// A cue whose only voice is `dialogue`: the variants that act on vocals
/// are not versions of it. `validate` names them, the pack leaves them out
/// (or writes them, marked, when the spec says so).
#[test]
fn a_dialogue_title_has_no_silent_copies() {
    let dir = real_session("dialogue", &["--seconds", "12", "--voice-role", "dialogue"]);
    let spec = write_spec(&dir, "skip", "profile = \"spotify\"", "");
    let o = stemforge(&["validate", spec.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    for v in ["instrumental", "tv", "vocal_up", "vocal_down"] {
        assert!(
            said.lines()
                .any(|l| l.contains(&format!("Last Train/{v} skipped, not a version"))),
            "{v}: {said}"
        );
    }
    assert!(
        said.contains("variants.vocal_up.roles = [\"dialogue\"]"),
        "{said}"
    );
    assert!(
        said.contains("vocal_up      matched     mix    vocals +2.0 dB"),
        "{said}"
    );
    let check = stemforge(&["check", spec.to_str().expect("utf-8")]);
    assert_eq!(
        String::from_utf8_lossy(&check.stdout)
            .matches("variant_not_a_version")
            .count(),
        4,
        "{}",
        text(&check)
    );

    let out = dir.join("out-skip");
    let m = render_ok(&spec, &out);
    let variants: std::collections::BTreeSet<String> = outputs(&m)
        .iter()
        .map(|o| o["variant"].as_str().unwrap_or_default().to_string())
        .collect();
    // The M&E and the DME are versions of a title with dialogue.
    assert_eq!(
        variants,
        ["dme", "full", "me", "stems"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        "{m:#}"
    );
    let skipped = m["titles"][0]["skipped"].as_array().expect("skipped");
    let same: Vec<(&str, &str)> = skipped
        .iter()
        .filter_map(|s| Some((s["variant"].as_str()?, s["same_as"].as_str()?)))
        .collect();
    assert_eq!(
        same,
        [
            ("instrumental", "full"),
            ("tv", "full"),
            ("vocal_down", "full"),
            ("vocal_up", "full")
        ]
    );
    assert!(!out.join("Last-Train_instrumental_48k24.wav").exists());

    // Written on request, and marked.
    let spec = write_spec(
        &dir,
        "write",
        "profile = \"spotify\"\nidentical_variants = \"write\"",
        "",
    );
    let out = dir.join("out-write");
    let m = render_ok(&spec, &out);
    let outs = outputs(&m);
    assert_eq!(
        outs.len(),
        2 + 4 + 4 + 1 + 2,
        "full, 4 stems, 4 copies, the M&E, the DME's dialogue and music"
    );
    let full = outs.iter().find(|o| o["variant"] == "full").expect("full");
    let (_, f) = read_wav(&out_path(&out, full));
    for v in ["instrumental", "vocal_up", "vocal_down"] {
        let o = outs.iter().find(|o| o["variant"] == v).expect(v);
        assert_eq!(o["same_as"]["variant"], "full", "{o:#}");
        // Identical but for each file's own dither: within 2 LSB.
        let (_, x) = read_wav(&out_path(&out, o));
        let worst = x
            .iter()
            .zip(&f)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(p, q)| (p - q).abs()))
            .fold(0.0, f64::max);
        assert!(worst <= 2.0 / 8_388_608.0, "{v}: {worst}");
    }
    let tv = outs.iter().find(|o| o["variant"] == "tv").expect("tv");
    assert!(
        tv["same_as"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("presence dip")),
        "{tv:#}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert_eq!(html.matches("Not a version of this title").count(), 4);
}

/// Re-mix stems: 32-bit float, no trim beyond the master's, no ceiling
/// judged; they sum to the master exactly, and where they pass the air
/// ceiling is marked with the session's timecode. The report, rendered in
/// headless Chromium, is checked through WebDriver.
#[test]
fn remix_stems_and_the_qc_report_in_a_browser() {
    // Stems placed at 01:00:00:00 on a 48 kHz session timeline.
    let dir = real_session(
        "remix",
        &[
            "--seconds",
            "20",
            "--cancel",
            "--time-reference",
            "172800000",
        ],
    );
    let spec = write_spec(
        &dir,
        "remix",
        "profile = \"spotify\"\ntarget_lufs = -9.0\nframe_rate = 25",
        "[variants.full]\n[variants.stems]\nremix = true\n[variants.vocal_up]\n",
    );
    let out = dir.join("out");
    let m = render_ok(&spec, &out);
    let outs = outputs(&m);
    let full = outs.iter().find(|o| o["variant"] == "full").expect("full");
    let stems: Vec<&Value> = outs.iter().filter(|o| o["variant"] == "stems").collect();
    assert_eq!(stems.len(), 6);
    for s in &stems {
        assert_eq!(s["remix"], true);
        assert_eq!(s["file"]["bit_depth"], 32);
        assert_eq!(s["file"]["sample_format"], "float");
        assert!(
            s["file"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("48k32f.wav"))
        );
        assert_eq!(s["verdict"]["verdict"], "pass");
        assert!(s.get("stems_trim_db").is_none());
        assert_eq!(s["ceiling_trim_db"], full["ceiling_trim_db"]);
    }
    // They sum to the 24-bit master to its dither.
    let sum = sum_wavs(&stems.iter().map(|s| out_path(&out, s)).collect::<Vec<_>>());
    let (_, master) = read_wav(&out_path(&out, full));
    let null = null_db(&sum, &master, 1.0);
    assert!(null <= -120.0, "re-mix stems null at {null:.1} dBFS");
    // Some stem passes the air ceiling: its overs carry the session's
    // timecode, and its first sample above the ceiling lies in one of them.
    let over = stems
        .iter()
        .find(|s| s["measurement"]["overs_total"].as_u64().unwrap_or(0) > 0)
        .expect("a re-mix stem over the -1 dBTP air ceiling at -9 LUFS");
    let (_, x) = read_wav(&out_path(&out, over));
    let ceiling = 10f64.powf(-1.0 / 20.0);
    let first = (0..x[0].len())
        .find(|&i| x.iter().any(|c| c[i].abs() > ceiling))
        .expect("a sample over the ceiling");
    let t = first as f64 / 48_000.0;
    let overs = over["measurement"]["overs"].as_array().expect("overs");
    assert!(
        overs.iter().any(|o| {
            let (a, b) = (
                o["start_s"].as_f64().unwrap_or(f64::NAN),
                o["end_s"].as_f64().unwrap_or(f64::NAN),
            );
            a <= t && t < b
        }),
        "sample over at {t} s not in {overs:#?}"
    );
    let tc = overs[0]["timecode"].as_str().expect("timecode");
    let s0 = overs[0]["start_s"].as_f64().expect("start");
    let frames = (s0 * 25.0).floor() as u64;
    assert_eq!(
        tc,
        format!("01:00:{:02}:{:02}", frames / 25, frames % 25),
        "{overs:#?}"
    );

    browser_checks(&out.join("report.html"), &m);
}

/// Opens the report in headless Chromium through chromedriver and checks
/// what a reader sees.
fn browser_checks(report: &Path, m: &Value) {
    let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(&driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {driver} ({e}): apt-get install chromium chromium-driver (.ci/run does)")
        });
    let profile = report.with_file_name("chromium-profile");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(async {
        // chromedriver takes a moment to listen.
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let c = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with chromium");
        c.set_window_size(1280, 1000).await.expect("window size");
        c.goto(&format!("file://{}", report.display())).await.expect("open the report");
        let page = c
            .execute(
                r#"
                const figs = [...document.querySelectorAll('figure.plot')];
                return {
                  scrollWidth: document.documentElement.scrollWidth,
                  innerWidth: window.innerWidth,
                  scripts: document.scripts.length,
                  plots: document.querySelectorAll('svg.qc-plot').length,
                  figures: figs.map(f => ({
                    caption: f.querySelector('figcaption').textContent,
                    sha: [...f.querySelectorAll('dl.sums dd')].map(d => d.textContent),
                    checks: [...f.querySelectorAll('table.qc tbody tr')].map(r => r.cells[0].textContent),
                    yLabels: [...f.querySelectorAll('svg.qc-plot text.yl')].map(t => t.textContent).join(','),
                    xLabels: [...f.querySelectorAll('svg.qc-plot text.xl')].map(t => t.textContent).join(','),
                    ceilingY: [...f.querySelectorAll('svg.qc-plot line.ceiling')].map(l => l.getAttribute('y1')),
                    overs: f.querySelectorAll('svg.qc-plot rect.over:not(.key)').length,
                    overLabels: [...f.querySelectorAll('svg.qc-plot text.over-tc')].map(t => t.textContent),
                    listed: [...f.querySelectorAll('ol.overs .tc')].map(t => t.textContent),
                    plotWidth: f.querySelector('svg.qc-plot').getBoundingClientRect().width,
                    figureWidth: f.getBoundingClientRect().width,
                  })),
                };
                "#,
                vec![],
            )
            .await
            .expect("read the DOM");
        let shot = c.screenshot().await.expect("screenshot");
        let pdf = c.print(Default::default()).await.expect("print to PDF");
        let _ = c.close().await;
        (page, shot, pdf)
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&profile);
    let (page, shot, pdf) = result;

    let outs = outputs(m);
    assert_eq!(page["scripts"], 0, "the report runs no scripts");
    assert!(
        page["scrollWidth"].as_u64() <= page["innerWidth"].as_u64(),
        "the page overflows sideways: {page}"
    );
    assert_eq!(page["plots"].as_u64(), Some(outs.len() as u64));
    let figs = page["figures"].as_array().expect("figures");
    assert_eq!(figs.len(), outs.len());
    for (f, o) in figs.iter().zip(&outs) {
        let caption = f["caption"].as_str().unwrap_or_default();
        assert!(
            caption.contains(o["file"]["path"].as_str().unwrap_or("?")),
            "{caption}"
        );
        // Checksums as in the manifest.
        assert_eq!(f["sha"][0], o["file"]["sha256"], "{f}");
        assert_eq!(f["sha"][1], o["file"]["audio_sha256"], "{f}");
        // A row for every check of the verdict.
        let rows: Vec<String> = f["checks"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_str().unwrap_or_default().to_string())
            .collect();
        for c in o["verdict"]["checks"].as_array().expect("checks") {
            let name = c["name"].as_str().unwrap_or_default().replace('_', " ");
            assert!(rows.contains(&name), "{name} not in {rows:?}");
        }
        // One scale for the title: same axes, same ceiling line.
        assert_eq!(f["yLabels"], figs[0]["yLabels"]);
        assert_eq!(f["xLabels"], figs[0]["xLabels"]);
        assert_eq!(f["ceilingY"], figs[0]["ceilingY"]);
        assert!(f["plotWidth"].as_f64() <= f["figureWidth"].as_f64());
        // Overs drawn and listed with the manifest's timecodes.
        let overs = o["measurement"]["overs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(f["overs"].as_u64(), Some(overs.len() as u64), "{f}");
        let listed: Vec<&str> = f["listed"]
            .as_array()
            .expect("listed")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let want: Vec<&str> = overs
            .iter()
            .filter_map(|v| v["timecode"].as_str())
            .collect();
        assert_eq!(listed, want);
        if let Some(first) = want.first() {
            assert_eq!(f["overLabels"][0].as_str(), Some(*first));
        }
    }
    assert!(
        shot.starts_with(b"\x89PNG") && shot.len() > 20_000,
        "screenshot"
    );
    assert!(pdf.starts_with(b"%PDF") && pdf.len() > 20_000, "PDF");
    let keep = std::env::var("STEMFORGE_REPORT_SHOT").ok();
    if let Some(p) = keep {
        std::fs::write(&p, &shot).expect("write the screenshot");
    }
}
