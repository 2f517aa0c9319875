//! End to end: `stemforge bench --pack` on a short demo session, as a
//! process. Checks the figures hang together (ratio, realtime factor, sane
//! memory), not how fast either side is.
//!
//! ffmpeg must be installed: this test fails (not skips) without it.

use serde_json::Value;
use stemforge_testkit::*;

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_f64()
        .unwrap_or_else(|| panic!("{} is not a number in:\n{v:#}", path.join(".")))
}

#[test]
fn pack_bench_reports_consistent_figures() {
    let o = stemforge(&[
        "bench",
        "--pack",
        "--seconds",
        "5",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "bench --pack failed:\n{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", text(&o)));

    // The demo's pack: six variant mixes and six processed stems.
    assert_eq!(r["outputs"].as_u64(), Some(12), "{r:#}");
    assert_eq!(r["ffmpeg"]["processes"].as_u64(), Some(24), "{r:#}");
    let audio = num(&r, &["audio_seconds"]);
    assert!((audio - 5.0).abs() < 1e-6, "audio {audio}");

    let sf_cpu = num(&r, &["stemforge", "cpu_s"]);
    let ff_cpu = num(&r, &["ffmpeg", "cpu_s"]);
    assert!(sf_cpu > 0.0 && ff_cpu > 0.0, "{r:#}");
    let ratio = num(&r, &["cpu_ratio"]);
    assert!((ratio - sf_cpu / ff_cpu).abs() < 1e-6, "ratio {ratio}");
    let wall_ratio = num(&r, &["wall_ratio"]);
    let (sf_wall, ff_wall) = (
        num(&r, &["stemforge", "wall_s"]),
        num(&r, &["ffmpeg", "wall_s"]),
    );
    assert!((wall_ratio - sf_wall / ff_wall).abs() < 1e-6, "{r:#}");

    for side in ["stemforge", "ffmpeg"] {
        let rss = num(&r, &[side, "peak_rss_mb"]);
        assert!(rss > 1.0 && rss < 2000.0, "{side} peak RSS {rss} MB");
        let cpu = num(&r, &[side, "cpu_s"]);
        let rt = num(&r, &[side, "realtime_per_core"]);
        assert!(
            (rt - audio / cpu).abs() < 1e-6,
            "{side}: {rt} vs {audio}/{cpu}"
        );
        assert_eq!(r[side]["runs"].as_array().map(Vec::len), Some(1), "{r:#}");
    }

    // Every output was measured by ffmpeg too (the a cappella mix is silent
    // in the first 5 s of the demo, so only the full mix is sure to have a
    // loudness on both sides).
    let checks = r["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 12);
    let full = checks
        .iter()
        .find(|c| c["file"].as_str().is_some_and(|f| f.contains("_full_")))
        .expect("the full mix is checked");
    assert!(full["ffmpeg_integrated_lufs"].is_number(), "{r:#}");
    assert!(full["stemforge_integrated_lufs"].is_number(), "{r:#}");
}

#[test]
fn pack_bench_names_a_missing_spec() {
    let o = stemforge(&["bench", "--pack", "/nonexistent/deliverables.toml"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/deliverables.toml"), "{err}");
}
