//! Preflight end to end: a good six-stem session built by independent tools
//! (ffmpeg synthesises the stems, sox sums them into the reference mix), then
//! one fault planted per test with ffmpeg or sox, checked through the real
//! `stemforge check` and `stemforge render` binaries. Each test asserts the
//! finding, its severity and its numbers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use stemforge_testkit::*;

const RATE: u64 = 48_000;
const SECONDS: u64 = 8;
const STEMS: [&str; 6] = ["Drums", "Bass", "Keys", "LeadVox", "BGV", "FX"];

fn run_tool(tool: &str, args: &[&str]) {
    let o = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): install ffmpeg and sox"));
    assert!(o.status.success(), "{tool} {args:?}: {}", text(&o));
}

fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-nostdin", "-v", "error", "-y"];
    all.extend_from_slice(args);
    run_tool("ffmpeg", &all);
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The good session, made once per test binary.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = scratch("preflight-base");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/preflight_session.sh");
        run_tool(
            "bash",
            &[p(&script), p(&dir), &SECONDS.to_string(), &RATE.to_string()],
        );
        dir
    })
}

/// A copy of the good session to plant a fault in.
fn session(name: &str) -> PathBuf {
    let dir = scratch(&format!("preflight-{name}"));
    for f in STEMS
        .iter()
        .map(|s| format!("{s}.wav"))
        .chain(["Mix.wav".into()])
    {
        std::fs::copy(base().join(&f), dir.join(&f)).expect("copy session file");
    }
    dir
}

/// `stemforge check PATH --json`: exit code and the report.
fn check(path: &Path) -> (i32, Value) {
    let o = stemforge(&["check", p(path), "--json"]);
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("check --json is not JSON ({e}): {}", text(&o)));
    (o.status.code().unwrap_or(-1), report)
}

fn title(report: &Value) -> &Value {
    &report["titles"][0]
}

fn findings<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    title(report)["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == check)
        .collect()
}

fn one<'a>(report: &'a Value, check: &str) -> &'a Value {
    let f = findings(report, check);
    assert_eq!(f.len(), 1, "one `{check}` finding expected: {report:#}");
    f[0]
}

fn stem<'a>(report: &'a Value, file: &str) -> &'a Value {
    title(report)["stems"]
        .as_array()
        .expect("stems")
        .iter()
        .find(|s| s["file"] == file)
        .unwrap_or_else(|| panic!("no stem {file}: {report:#}"))
}

fn null_fit(report: &Value) -> &Value {
    let n = &title(report)["null_test"];
    if n["aligned"].is_null() {
        &n["as_delivered"]
    } else {
        &n["aligned"]
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_good_session_passes_with_every_stem_in_place() {
    let (code, r) = check(base());
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");
    assert_eq!(r["warnings"], 0, "{r:#}");
    let t = title(&r);
    assert_eq!(t["null_test"]["pass"], true);
    // sox summed the 24-bit stems exactly: the null is bit-exact.
    assert!(num(&null_fit(&r)["residual_db"]) <= -150.0, "{r:#}");
    assert!(num(&null_fit(&r)["gain_db"]).abs() < 1e-3);
    for s in STEMS {
        let s = stem(&r, &format!("{s}.wav"));
        assert_eq!(s["placement"]["offset_samples"], 0, "{s}");
        assert_eq!(s["placement"]["polarity_inverted"], false, "{s}");
        assert!(num(&s["placement"]["gain_db"]).abs() < 0.01, "{s}");
        assert_eq!(s["frames"], RATE * SECONDS);
        assert_eq!(s["format"]["bits_per_sample"], 24);
    }
    // Roles inferred from the names as engineers write them.
    let roles: Vec<(String, String)> = serde_json::from_value(t["roles"].clone()).expect("roles");
    let role = |f: &str| roles.iter().find(|(n, _)| n == f).map(|(_, r)| r.as_str());
    assert_eq!(role("LeadVox.wav"), Some("vocals"));
    assert_eq!(role("BGV.wav"), Some("backing_vocals"));
    assert_eq!(role("FX.wav"), Some("fx"));
    assert_eq!(t["reference"]["file"], "Mix.wav");
}

#[test]
fn a_stem_480_samples_late_is_named_with_its_exact_offset() {
    let dir = session("late");
    let src = base().join("LeadVox.wav");
    ffmpeg(&[
        "-i",
        p(&src),
        "-af",
        &format!("adelay=480S:all=1,atrim=end_sample={}", RATE * SECONDS),
        "-c:a",
        "pcm_s24le",
        p(&dir.join("LeadVox.wav")),
    ]);
    let (code, r) = check(&dir);
    assert_eq!(code, 1, "{r:#}");
    let f = one(&r, "stem_offset");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["files"], serde_json::json!(["LeadVox.wav"]));
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("480 samples (10.00 ms) late"), "{msg}");
    assert_eq!(stem(&r, "LeadVox.wav")["placement"]["offset_samples"], 480);
    for s in ["Drums", "Bass", "Keys", "BGV", "FX"] {
        assert_eq!(
            stem(&r, &format!("{s}.wav"))["placement"]["offset_samples"],
            0,
            "{s}"
        );
    }
    // Slid back by 480 samples, the stems null (the last 480 are gone).
    let n = &title(&r)["null_test"];
    assert!(num(&n["as_delivered"]["residual_db"]) > -40.0, "{n}");
    assert!(num(&n["aligned"]["residual_db"]) < -40.0, "{n}");
    assert_eq!(n["pass"], true);
}

#[test]
fn a_polarity_flip_is_named_and_the_corrected_sum_nulls() {
    let dir = session("polarity");
    ffmpeg(&[
        "-i",
        p(&base().join("Bass.wav")),
        "-af",
        "volume=-1",
        "-c:a",
        "pcm_s24le",
        p(&dir.join("Bass.wav")),
    ]);
    let (code, r) = check(&dir);
    assert_eq!(code, 1);
    let f = one(&r, "polarity");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["files"], serde_json::json!(["Bass.wav"]));
    assert!(findings(&r, "stem_offset").is_empty(), "{r:#}");
    let n = &title(&r)["null_test"];
    // Flipped, the bass cancels instead of adding; corrected, exact again.
    assert!(num(&n["as_delivered"]["residual_db"]) > -10.0, "{n}");
    assert!(num(&n["aligned"]["residual_db"]) <= -150.0, "{n}");
}

#[test]
fn a_missing_send_fails_the_null_test_as_a_broadband_residual() {
    // The reference carries a delay/echo return of the vocal at -3 dB that
    // no stem has: a send that was not printed.
    let dir = session("send");
    let ret = dir.join("return.wav");
    ffmpeg(&[
        "-i",
        p(&base().join("LeadVox.wav")),
        "-af",
        "aecho=0:1.0:47|93|151:0.6|0.4|0.3,volume=-3dB",
        "-c:a",
        "pcm_s24le",
        p(&ret),
    ]);
    run_tool(
        "sox",
        &[
            "-D",
            "-m",
            "-v",
            "1",
            p(&base().join("Mix.wav")),
            "-v",
            "1",
            p(&ret),
            "-b",
            "24",
            p(&dir.join("Mix.wav")),
            "trim",
            "0",
            &SECONDS.to_string(),
        ],
    );
    std::fs::remove_file(&ret).expect("remove return");
    let (code, r) = check(&dir);
    assert_eq!(code, 1);
    let f = one(&r, "null_test");
    assert_eq!(f["severity"], "error");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("missing from the stems"), "{msg}");
    assert!(findings(&r, "stem_offset").is_empty(), "{r:#}");
    let fit = null_fit(&r);
    let residual = num(&fit["residual_db"]);
    assert!((-40.0..-15.0).contains(&residual), "{fit}");
    assert!(num(&fit["gain_db"]).abs() < 0.1, "{fit}");
    assert!(num(&fit["loud_minus_middle_db"]) < 6.0, "{fit}");
}

#[test]
fn a_limited_reference_is_recognised_as_bus_processing() {
    let dir = session("limited");
    ffmpeg(&[
        "-i",
        p(&base().join("Mix.wav")),
        "-af",
        "alimiter=level_in=2:limit=0.5:level=false:attack=5:release=50:latency=1",
        "-c:a",
        "pcm_s24le",
        p(&dir.join("Mix.wav")),
    ]);
    let (code, r) = check(&dir);
    assert_eq!(code, 1);
    let f = one(&r, "null_test");
    assert_eq!(f["severity"], "error");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("bus compression or limiting on the reference"),
        "{msg}"
    );
    assert!(msg.contains("pile up at -6.02 dBFS"), "{msg}");
    // Limiting is not mistaken for misplaced stems.
    assert!(findings(&r, "stem_offset").is_empty(), "{r:#}");
    assert!(findings(&r, "polarity").is_empty(), "{r:#}");
}

#[test]
fn stems_printed_through_a_bus_limiter_share_one_ceiling() {
    let dir = session("buslimiter");
    let limiter = "volume=12dB,alimiter=limit=0.7943:level=false:attack=5:release=50:latency=1";
    for s in STEMS {
        ffmpeg(&[
            "-i",
            p(&base().join(format!("{s}.wav"))),
            "-af",
            limiter,
            "-c:a",
            "pcm_s24le",
            p(&dir.join(format!("{s}.wav"))),
        ]);
    }
    ffmpeg(&[
        "-i",
        p(&base().join("Mix.wav")),
        "-af",
        limiter,
        "-c:a",
        "pcm_s24le",
        p(&dir.join("Mix.wav")),
    ]);
    let (code, r) = check(&dir);
    assert_eq!(code, 1, "{r:#}");
    let f = one(&r, "common_ceiling");
    assert_eq!(f["severity"], "warning");
    let files = f["files"].as_array().expect("files");
    assert!(files.len() >= 3, "{f}");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(msg.contains("-2.00 dBFS"), "{msg}");
    assert!(msg.contains("mix-bus limiter"), "{msg}");
    assert_eq!(one(&r, "null_test")["severity"], "error");
    assert_eq!(title(&r)["null_test"]["pass"], false);
}

#[test]
fn a_44k1_stem_among_48k_stems_is_a_warning_naming_it_as_converted() {
    let dir = session("rate");
    run_tool(
        "sox",
        &[
            p(&base().join("FX.wav")),
            "-r",
            "44100",
            p(&dir.join("FX.wav")),
        ],
    );
    let (code, r) = check(&dir);
    let f = one(&r, "sample_rate");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["files"], serde_json::json!(["FX.wav"]));
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("44100 Hz") && msg.contains("48000 Hz") && msg.contains("converted"),
        "{msg}"
    );
    // No error any more: the title renders; only the null test is skipped.
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(one(&r, "null_test")["severity"], "warning");
    // Same duration: not reported as short.
    assert!(findings(&r, "length").is_empty(), "{r:#}");
    assert_eq!(title(&r)["sample_rate"], 48_000);
}

/// Byte offset of a WAV file's sample data.
fn data_offset(bytes: &[u8]) -> usize {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        if &bytes[at..at + 4] == b"data" {
            return at + 8;
        }
        at += 8 + size + (size & 1);
    }
    panic!("no data chunk");
}

#[test]
fn a_truncated_stem_is_an_error_with_the_frame_it_ends_at() {
    let dir = session("truncated");
    let bytes = std::fs::read(base().join("Keys.wav")).expect("read");
    let cut = 1_500_000;
    std::fs::write(dir.join("Keys.wav"), &bytes[..cut]).expect("write");
    let frames = (cut - data_offset(&bytes)) / 6;
    let (code, r) = check(&dir);
    assert_eq!(code, 1);
    let f = one(&r, "truncated");
    assert_eq!(f["severity"], "error");
    let msg = f["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(&format!("ends at frame {frames} ")),
        "{msg} (expected frame {frames})"
    );
    assert!(
        msg.contains(&format!("declares {} frames", RATE * SECONDS)),
        "{msg}"
    );
    assert_eq!(stem(&r, "Keys.wav")["frames"], frames as u64);
    // The null test is not blamed on a missing send.
    let n = one(&r, "null_test");
    assert_eq!(n["severity"], "warning");
    assert!(findings(&r, "length").is_empty(), "{r:#}");
}

/// Writes a spec for two titles, `good` and `late`, rendering the full mix.
fn two_title_spec(dir: &Path, extra: &str) -> PathBuf {
    let stems = |sub: &str| {
        STEMS
            .iter()
            .map(|s| {
                format!(
                    "  {{ file = \"{sub}/{s}.wav\", role = \"{}\" }},\n",
                    match *s {
                        "Drums" => "drums",
                        "Bass" => "bass",
                        "Keys" => "keys",
                        "LeadVox" => "vocals",
                        "BGV" => "backing_vocals",
                        _ => "fx",
                    }
                )
            })
            .collect::<String>()
    };
    let spec = format!(
        "schema_version = 1\n{extra}\n[delivery]\nprofile = \"ebu-r128\"\noutput_dir = \"out\"\n\n\
         [variants.full]\n\n\
         [[titles]]\nname = \"Good\"\nreference = \"good/Mix.wav\"\nstems = [\n{}]\n\n\
         [[titles]]\nname = \"Late\"\nreference = \"late/Mix.wav\"\nstems = [\n{}]\n",
        stems("good"),
        stems("late")
    );
    let path = dir.join("spec.toml");
    std::fs::write(&path, spec).expect("write spec");
    path
}

fn two_title_session(name: &str) -> PathBuf {
    let root = scratch(&format!("preflight-{name}"));
    for sub in ["good", "late"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        for f in STEMS
            .iter()
            .map(|s| format!("{s}.wav"))
            .chain(["Mix.wav".into()])
        {
            std::fs::copy(base().join(&f), root.join(sub).join(&f)).expect("copy");
        }
    }
    ffmpeg(&[
        "-i",
        p(&base().join("LeadVox.wav")),
        "-af",
        &format!("adelay=480S:all=1,atrim=end_sample={}", RATE * SECONDS),
        "-c:a",
        "pcm_s24le",
        p(&root.join("late/LeadVox.wav")),
    ]);
    root
}

#[test]
fn render_stops_a_title_with_preflight_errors_and_carries_on_with_the_rest() {
    let root = two_title_session("render");
    let spec = two_title_spec(&root, "");

    // `check SPEC` sees the same thing, per title, with a readable table.
    let o = stemforge(&["check", p(&spec)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("stem_offset"), "{out}");
    assert!(out.contains("late/LeadVox.wav"), "{out}");
    assert!(out.contains("null test: PASS"), "{out}");

    let o = stemforge(&["render", p(&spec), "--workers", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let m = read_json(&root.join("out/manifest.json"));
    let titles = m["titles"].as_array().expect("titles");
    let good = &titles[0];
    let late = &titles[1];
    assert_eq!(good["status"], "rendered", "{good:#}");
    assert_eq!(good["outputs"].as_array().map(Vec::len), Some(1));
    assert_eq!(good["preflight"]["null_test"]["pass"], true);
    assert_eq!(late["status"], "failed", "{late:#}");
    let err = late["error"].as_str().unwrap_or_default();
    assert!(err.contains("preflight found 1 error(s)"), "{err}");
    assert!(err.contains("480 samples"), "{err}");
    // Its render was skipped: listed, but no file.
    let outs = late["outputs"].as_array().expect("outputs");
    assert!(outs.iter().all(|o| o["file"].is_null()), "{late:#}");
    let f = &late["preflight"]["findings"][0];
    assert_eq!(f["check"], "stem_offset");
    assert_eq!(m["summary"]["preflight_errors"], 1);
    assert!(!root.join("out/Late_full_48k24.wav").exists());
    let html = std::fs::read_to_string(root.join("out/report.html")).expect("report");
    assert!(
        html.contains("<h3>Preflight</h3>"),
        "report has a preflight section"
    );
    assert!(html.contains("480 samples (10.00 ms) late"));

    // Overridden in the spec: reported, rendered anyway.
    let root = two_title_session("render-override");
    let spec = two_title_spec(&root, "[preflight]\non_error = \"render\"\n");
    let o = stemforge(&["render", p(&spec), "--workers", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = read_json(&root.join("out/manifest.json"));
    let late = &m["titles"][1];
    assert_eq!(late["status"], "rendered", "{late:#}");
    assert_eq!(late["preflight"]["findings"][0]["check"], "stem_offset");
    let notes = late["notes"].to_string();
    assert!(
        notes.contains("rendered despite 1 preflight error"),
        "{notes}"
    );
}

#[test]
fn check_dir_infers_roles_and_reports_names_it_cannot_place() {
    let dir = session("roles");
    std::fs::copy(base().join("Keys.wav"), dir.join("Take 7 final.wav")).expect("copy");
    std::fs::write(dir.join("notes.txt"), "not audio").expect("write");
    let o = stemforge(&["check", p(&dir)]);
    let out = String::from_utf8_lossy(&o.stdout);
    // A duplicate of Keys: an error, and an unknown role: a warning.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(out.contains("role_unknown"), "{out}");
    assert!(
        out.contains("'Take 7 final.wav': no role recognised"),
        "{out}"
    );
    assert!(out.contains("identical_stems"), "{out}");
    assert!(!out.contains("notes.txt"), "{out}");
    for (file, role) in [("LeadVox.wav", "vocals"), ("BGV.wav", "backing_vocals")] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(file))
            .unwrap_or_else(|| panic!("no row for {file}: {out}"));
        assert!(line.contains(role), "{line}");
    }
}

#[test]
fn a_stem_that_is_not_in_the_reference_is_reported_as_such() {
    // An alternate guitar take, delivered but not in the approved mix.
    let dir = session("alt-take");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("anoisesrc=c=pink:a=0.2:r={RATE}:d={SECONDS}:seed=11"),
        "-af",
        "bandpass=f=700:w=500,volume=8",
        "-ac",
        "2",
        "-c:a",
        "pcm_s24le",
        p(&dir.join("Gtr Alt.wav")),
    ]);
    let (code, r) = check(&dir);
    assert_eq!(code, 1, "{r:#}");
    let f = one(&r, "not_in_reference");
    assert_eq!(f["severity"], "warning");
    assert_eq!(f["files"], serde_json::json!(["Gtr Alt.wav"]));
    let c = num(&stem(&r, "Gtr Alt.wav")["placement"]["correlation"]);
    assert!(c < 0.3, "{c}");
    // The others are still placed exactly, and the null test fails.
    for s in STEMS {
        assert_eq!(
            stem(&r, &format!("{s}.wav"))["placement"]["offset_samples"],
            0,
            "{s}"
        );
    }
    assert_eq!(title(&r)["null_test"]["pass"], false);
}
