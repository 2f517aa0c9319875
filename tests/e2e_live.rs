//! Live-playback packs (issue 20), on a real-instrument session (a General
//! MIDI file through fluidsynth, a voice by espeak-ng) with a click (sox
//! blips) and a guide (an espeak-ng count-in): every live stem's true peak
//! under the headroom, the loudest on it (less the margin), click and guide
//! delivered sample-identical to their inputs, the 16-channel interleave
//! equal channel for channel to the per-stem files, and the full mix
//! unchanged by adding the click and guide stems. Measured with ffmpeg.

use std::path::{Path, PathBuf};
use std::process::Command;

use stemforge_testkit::{
    ffmpeg_r128, outputs, read_json, read_wav, real_session, scratch, stemforge_env, text,
};

const FRAMES: u32 = 20 * 48_000;

fn sox(dir: &Path, args: &[&str]) {
    let o = Command::new("sox")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run sox");
    assert!(o.status.success(), "sox {args:?}: {}", text(&o));
}

/// Click.wav: 30 ms 1 kHz blips every 0.5 s at -3 dBFS; Guide.wav: a
/// spoken count-in. Both mono, 24-bit, 48 kHz, exactly the session's length.
fn write_click_and_guide(dir: &Path) {
    let len = format!("{FRAMES}s");
    sox(
        dir,
        &[
            "-n", "-r", "48000", "-b", "24", "-c", "1", "blip.wav", "synth", "0.03", "sine",
            "1000", "gain", "-3",
        ],
    );
    sox(dir, &["blip.wav", "beat.wav", "pad", "0", "0.47"]);
    let mut args: Vec<&str> = vec!["beat.wav"; 41];
    args.extend(["click_long.wav"]);
    sox(dir, &args);
    sox(dir, &["click_long.wav", "Click.wav", "trim", "0s", &len]);
    let o = Command::new("espeak-ng")
        .args(["-w"])
        .arg(dir.join("count.wav"))
        .arg("one, two, three, four")
        .output()
        .expect("run espeak-ng");
    assert!(o.status.success(), "espeak-ng: {}", text(&o));
    sox(
        dir,
        &[
            "count.wav",
            "-r",
            "48000",
            "-b",
            "24",
            "-c",
            "1",
            "guide_long.wav",
            "pad",
            "0.2",
            "25",
        ],
    );
    sox(dir, &["guide_long.wav", "Guide.wav", "trim", "0s", &len]);
}

const MAP: &str = r#"["click", "guide", "drums:L", "drums:R", "bass:L", "bass:R", "keys:L", "keys:R", "Horns:L", "Horns:R", "vocals:L", "vocals:R", "", "", "guide", ""]"#;

/// The session's spec rendering `full` and `live` (16-channel interleave),
/// with or without the click and guide stems.
fn write_spec(dir: &Path, name: &str, with_click: bool) -> PathBuf {
    let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
    let (head, titles) = base.split_once("[[titles]]").expect("titles");
    let mut spec = format!("{head}[variants.full]\n");
    if with_click {
        spec.push_str(&format!(
            "\n[variants.live]\nlive = {{ interleave = {{ channels = 16, map = {MAP} }} }}\n"
        ));
    }
    spec.push_str(&format!("\n[[titles]]{titles}"));
    if with_click {
        spec.push_str(
            "\n[[titles.stems]]\nfile = \"Click.wav\"\nrole = \"click\"\n\n[[titles.stems]]\nfile = \"Guide.wav\"\nrole = \"guide\"\n",
        );
    }
    let p = dir.join(name);
    std::fs::write(&p, spec).expect("write spec");
    p
}

fn render(spec: &Path, out: &Path) -> serde_json::Value {
    let o = stemforge_env(
        &[
            "render",
            spec.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
            "--workers",
            "2",
        ],
        &[
            ("SOURCE_DATE_EPOCH", "1700000000"),
            ("STEMFORGE_LOG", "warn"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    read_json(&out.join("manifest.json"))
}

fn by_path<'a>(outs: &'a [serde_json::Value], path: &str) -> &'a serde_json::Value {
    outs.iter()
        .find(|o| o["file"]["path"] == path)
        .unwrap_or_else(|| panic!("no output {path}"))
}

#[test]
fn a_live_pack_holds_its_headroom_passes_click_and_guide_untouched_and_interleaves_exactly() {
    let dir = real_session("live", &["--seconds", "20"]);
    write_click_and_guide(&dir);
    let spec = write_spec(&dir, "live.toml", true);

    // A map entry naming no stem is refused before anything renders, by field.
    let bad = dir.join("bad.toml");
    let text_of = std::fs::read_to_string(&spec).expect("spec");
    std::fs::write(&bad, text_of.replace("\"drums:R\"", "\"guitars:R\"")).expect("write");
    let o = stemforge_env(&["validate", bad.to_str().expect("utf-8")], &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("variants.live.live.interleave.map[3]: `guitars:R`"),
        "{}",
        text(&o)
    );

    let out = scratch("live-out");
    let m = render(&spec, &out);
    let outs = outputs(&m);
    assert_eq!(m["summary"]["all_pass"], true, "{m:#}");

    // One live file per stem, named by role; click and guide untouched.
    let stem_file = |role: &str| format!("Last-Train_stem-{role}_48k24.wav");
    let roles = ["drums", "bass", "keys", "other", "vocals"];
    let mut loudest = f64::NEG_INFINITY;
    let mut gains = Vec::new();
    for role in roles {
        let o = by_path(&outs, &stem_file(role));
        assert_eq!(o["variant"], "live");
        assert_eq!(o["mode"], "live");
        assert_eq!(o["verdict"]["verdict"], "pass", "{o:#}");
        let check = o["verdict"]["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["name"] == "true_peak")
            .cloned()
            .expect("true_peak check");
        assert_eq!(check["outcome"], "pass");
        assert!(o["live"]["measured_integrated_lufs"].is_number(), "{o:#}");
        gains.push(o["live"]["gain_db"].as_f64().expect("gain"));
        let ff = ffmpeg_r128(&out.join(stem_file(role)));
        eprintln!("live {role}: ffmpeg {:.3} dBTP, {:.2} LUFS", ff.tp, ff.i);
        assert!(ff.tp <= -6.0, "{role}: {} dBTP over the headroom", ff.tp);
        loudest = loudest.max(ff.tp);
    }
    // `reported`: one gain for every stem, the loudest peak on -6.1.
    assert!(gains.iter().all(|g| *g == gains[0]), "{gains:?}");
    eprintln!(
        "loudest live stem: {loudest:.3} dBTP (aim -6.1), common gain {:.3} dB",
        gains[0]
    );
    assert!((loudest - -6.1).abs() <= 0.5, "loudest {loudest} dBTP");

    for (role, input) in [("click", "Click.wav"), ("guide", "Guide.wav")] {
        let o = by_path(&outs, &stem_file(role));
        assert_eq!(o["live"]["untouched"], true, "{o:#}");
        assert_eq!(o["live"]["gain_db"], 0.0);
        let (_, delivered) = read_wav(&out.join(stem_file(role)));
        let (_, original) = read_wav(&dir.join(input));
        assert_eq!(delivered.len(), 1);
        assert!(
            delivered == original,
            "{role} is not sample-identical to {input}"
        );
    }

    // The interleave: channel k is the mapped file's channel, exactly.
    let il = "Last-Train_live_48k24.wav";
    let (ilspec, channels) = read_wav(&out.join(il));
    assert_eq!(ilspec.channels, 16);
    let o = by_path(&outs, il);
    let map = o["live"]["channels"].as_array().expect("map");
    assert_eq!(map.len(), 16);
    let entries: Vec<String> = serde_json::from_str(MAP).expect("map");
    let file_of = |e: &str| -> Option<(String, usize)> {
        if e.is_empty() {
            return None;
        }
        let (name, ch) = match e.split_once(':') {
            Some((n, "L")) => (n, 0),
            Some((n, _)) => (n, 1),
            None => (e, 0),
        };
        let role = if name == "Horns" { "other" } else { name };
        Some((stem_file(role), ch))
    };
    let mut cache: std::collections::BTreeMap<String, Vec<Vec<f64>>> = Default::default();
    for (k, e) in entries.iter().enumerate() {
        let want = file_of(e);
        assert_eq!(
            map[k]["source_file"].as_str().map(str::to_string),
            want.as_ref().map(|w| w.0.clone()),
            "channel {k}"
        );
        match want {
            None => assert!(
                channels[k].iter().all(|&x| x == 0.0),
                "channel {k} not silent"
            ),
            Some((f, c)) => {
                let s = cache
                    .entry(f.clone())
                    .or_insert_with(|| read_wav(&out.join(&f)).1);
                assert!(
                    s[c] == channels[k],
                    "channel {k} differs from {f} channel {c}"
                );
            }
        }
    }

    // The full mix is the same audio without the click and guide stems.
    let plain = write_spec(&dir, "plain.toml", false);
    let out2 = scratch("live-plain");
    let m2 = render(&plain, &out2);
    let full = "Last-Train_full_48k24.wav";
    assert_eq!(
        by_path(&outs, full)["file"]["audio_sha256"],
        by_path(&outputs(&m2), full)["file"]["audio_sha256"],
        "the click or guide reached the full mix"
    );
}
