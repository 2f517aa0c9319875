//! Film deliverables on a real session (a General MIDI file through
//! fluidsynth, a voice by espeak-ng as `dialogue`, sox noise swells as
//! `fx`): the M&E takes the dialogue out, the DME's three group files sum
//! to the full mix, and a song without dialogue gets neither.
//!
//! Audio is read back by ffmpeg (`-f f64le`), loudness by ffmpeg's ebur128.
//! Needs the session's tools (`tests/support/real_session.py`,
//! `STEMFORGE_TEST_PYTHON`).

use std::path::{Path, PathBuf};
use std::process::Command;

use stemforge_testkit::{ffmpeg_r128, outputs, read_json, real_session, scratch, stemforge, text};

/// Interleaved stereo samples of a file, decoded by ffmpeg to f64.
fn decode(p: &Path) -> Vec<f64> {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-i"])
        .arg(p)
        .args(["-ac", "2", "-f", "f64le", "-acodec", "pcm_f64le", "-"])
        .output()
        .expect("ffmpeg must be installed");
    assert!(
        o.status.success(),
        "ffmpeg failed on {}: {}",
        p.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

/// Pearson correlation of two equally long signals.
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "signals of different lengths");
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x - ma, y - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

fn sox(args: &[&str]) {
    let o = Command::new("sox")
        .args(args)
        .output()
        .expect("sox must be installed");
    assert!(o.status.success(), "sox {args:?}: {}", text(&o));
}

/// Noise swells and bursts for the `fx` stem: pink noise, band-limited,
/// in slow amplitude swells, at the session's rate and length.
fn write_fx(p: &Path, seconds: &str) {
    sox(&[
        "-n",
        "-r",
        "48000",
        "-b",
        "24",
        "-c",
        "2",
        p.to_str().expect("utf-8"),
        "synth",
        seconds,
        "pinknoise",
        "sinc",
        "200-6000",
        "tremolo",
        "0.35",
        "100",
        "gain",
        "-16",
    ]);
}

/// The session's spec up to its titles: delivery, graph.
fn head(dir: &Path) -> String {
    let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
    base.split_once("[[titles]]").expect("titles").0.to_string()
}

/// A title's TOML: stems `(file, role)`.
fn title(name: &str, stems: &[(&str, &str)]) -> String {
    let mut t = format!("[[titles]]\nname = \"{name}\"\n");
    for (file, role) in stems {
        t.push_str(&format!(
            "[[titles.stems]]\nfile = \"{file}\"\nrole = \"{role}\"\n"
        ));
    }
    t
}

fn render(spec: &Path, out: &Path) -> (serde_json::Value, String) {
    let o = stemforge(&[
        "render",
        spec.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
        "--workers",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    (read_json(&out.join("manifest.json")), text(&o))
}

#[test]
fn me_takes_the_dialogue_out_and_the_dme_groups_sum_to_the_full_mix() {
    let dir = real_session("film", &["--seconds", "20", "--voice-role", "dialogue"]);
    write_fx(&dir.join("Fx.wav"), "20");
    // 32-bit float: nothing quantises the sum away (float is never
    // dithered). No reference: the session's Mix.wav has no effects.
    let spec_text = format!(
        "{}\n[variants.full]\n[variants.me]\n[variants.dme]\n\n{}",
        head(&dir).replace(
            "profile = \"ebu-r128\"",
            "profile = \"ebu-r128\"\nbit_depth = 32"
        ),
        title(
            "Last Train",
            &[
                ("Drums.wav", "drums"),
                ("Bass.wav", "bass"),
                ("Keys.wav", "keys"),
                ("Horns.wav", "other"),
                ("Voice.wav", "dialogue"),
                ("Fx.wav", "fx"),
            ]
        )
    );
    assert!(spec_text.contains("bit_depth = 32"), "{spec_text}");
    let spec = dir.join("film.toml");
    std::fs::write(&spec, &spec_text).expect("write spec");
    let out = scratch("film-out");
    let started = std::time::Instant::now();
    let (manifest, log) = render(&spec, &out);
    eprintln!(
        "render of full, me, dme (20 s, 6 stems): {:.2} s\n{log}",
        started.elapsed().as_secs_f64()
    );

    let outs = outputs(&manifest);
    let file_of = |pred: &dyn Fn(&serde_json::Value) -> bool| -> PathBuf {
        let o = outs
            .iter()
            .find(|o| pred(o))
            .unwrap_or_else(|| panic!("no such output in {outs:#?}"));
        out.join(o["file"]["path"].as_str().expect("path"))
    };
    let full = file_of(&|o| o["variant"] == "full");
    let me = file_of(&|o| o["variant"] == "me");
    let dme: Vec<serde_json::Value> = outs
        .iter()
        .filter(|o| o["variant"] == "dme")
        .cloned()
        .collect();
    // One file per group, named by the group, in group-name order; no
    // per-role stems.
    let groups: Vec<(&str, &str)> = dme
        .iter()
        .map(|o| {
            assert!(o.get("role").is_none(), "{o:#}");
            assert_eq!(o["mode"], "linked_stem", "{o:#}");
            (
                o["group"].as_str().expect("group"),
                o["file"]["path"].as_str().expect("path"),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("dialogue", "Last-Train_stem-dme-dialogue_48k32f.wav"),
            ("effects", "Last-Train_stem-dme-effects_48k32f.wav"),
            ("music", "Last-Train_stem-dme-music_48k32f.wav"),
        ]
    );
    for o in outs.iter() {
        assert_eq!(o["verdict"]["verdict"], "pass", "{o:#}");
        assert_eq!(o["file"]["bit_depth"], 32, "{o:#}");
    }
    let me_entry = outs.iter().find(|o| o["variant"] == "me").expect("me");
    assert_eq!(me_entry["level_policy"], "matched");
    assert_eq!(
        me_entry["description"],
        "M&E: music and effects, dialogue muted"
    );

    // The M&E against the dialogue stem as delivered to us.
    let dialogue = decode(&dir.join("Voice.wav"));
    let full_s = decode(&full);
    let me_s = decode(&me);
    let r_full = correlation(&full_s, &dialogue);
    let r_me = correlation(&me_s, &dialogue);
    eprintln!("correlation with the dialogue stem: full {r_full:.4}, me {r_me:.5}");
    assert!(
        r_full > 0.1,
        "the full mix carries the dialogue: r = {r_full}"
    );
    assert!(r_me.abs() < 0.02, "the M&E has no dialogue: r = {r_me}");

    // Σ DME groups − full mix.
    let mut sum = vec![0.0; full_s.len()];
    for (_, path) in &groups {
        let g = decode(&out.join(path));
        assert_eq!(g.len(), sum.len(), "{path}");
        for (a, x) in sum.iter_mut().zip(&g) {
            *a += x;
        }
    }
    let peak_residual = sum
        .iter()
        .zip(&full_s)
        .map(|(s, f)| (s - f).abs())
        .fold(0.0_f64, f64::max);
    let peak_full = full_s.iter().map(|x| x.abs()).fold(0.0_f64, f64::max);
    let depth = 20.0 * peak_residual.max(1e-300).log10();
    eprintln!(
        "Σ DME − full: peak residual {depth:.1} dBFS (full mix peak {:.2} dBFS)",
        20.0 * peak_full.log10()
    );
    assert!(peak_full > 0.1, "the full mix is not silent");
    assert!(
        depth <= -120.0,
        "the DME groups null against the full mix to {depth:.1} dBFS only"
    );

    // Loudness by ffmpeg: the M&E is quieter than the full mix (matched:
    // the full mix's gain, less the dialogue), each a real programme.
    let (l_full, l_me) = (ffmpeg_r128(&full), ffmpeg_r128(&me));
    eprintln!(
        "ffmpeg ebur128: full {:.2} LUFS {:.2} dBTP, me {:.2} LUFS {:.2} dBTP",
        l_full.i, l_full.tp, l_me.i, l_me.tp
    );
    assert!((l_full.i - -23.0).abs() <= 0.5, "{l_full:?}");
    assert!(l_me.i < l_full.i && l_me.i > l_full.i - 20.0, "{l_me:?}");
    assert!(l_me.tp <= -1.0 + 0.05, "{l_me:?}");
}

#[test]
fn me_and_dme_come_with_dialogue_only_in_the_default_set() {
    let dir = real_session("film-default", &["--seconds", "4"]);
    write_fx(&dir.join("Fx.wav"), "4");
    let spec_text = format!(
        "{}\n{}\n{}",
        head(&dir),
        title(
            "Reel One",
            &[
                ("Drums.wav", "drums"),
                ("Bass.wav", "bass"),
                ("Voice.wav", "dialogue"),
                ("Fx.wav", "fx"),
            ]
        ),
        title(
            "Song",
            &[
                ("Drums.wav", "drums"),
                ("Bass.wav", "bass"),
                ("Keys.wav", "keys"),
                ("Voice.wav", "vocals"),
            ]
        )
    );
    assert!(!spec_text.contains("[variants"), "the default set");
    let spec = dir.join("default.toml");
    std::fs::write(&spec, &spec_text).expect("write spec");

    let o = stemforge(&["validate", spec.to_str().expect("utf-8")]);
    let shown = text(&o);
    assert!(o.status.success(), "{shown}");
    // Lines compared word by word (the table's column widths follow the
    // longest variant name).
    let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = shown.lines().map(words).collect();
    for line in [
        "me matched mix mutes dialogue",
        "dme matched stems stems in groups: dialogue = dialogue, effects = fx, music = drums+bass+music+keys+guitars+vocals+backing_vocals+other",
        "me, dme: for 1 of 2 titles (those with a dialogue stem)",
    ] {
        assert!(lines.iter().any(|l| l == line), "`{line}` not in:\n{shown}");
    }
    // Nothing about them for the song: not skipped, not applicable.
    assert!(
        !shown.contains("Song/me") && !shown.contains("Song/dme"),
        "{shown}"
    );

    let out = scratch("film-default-out");
    let (manifest, _) = render(&spec, &out);
    let variants_of = |name: &str| -> Vec<String> {
        let t = manifest["titles"]
            .as_array()
            .expect("titles")
            .iter()
            .find(|t| t["name"] == name)
            .expect("title");
        let mut v: Vec<String> = t["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .map(|o| {
                format!(
                    "{}{}",
                    o["variant"].as_str().expect("variant"),
                    o["group"]
                        .as_str()
                        .or(o["role"].as_str())
                        .map(|g| format!("/{g}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        v.sort();
        v
    };
    let reel = variants_of("Reel One");
    assert!(
        reel.contains(&"me".to_string())
            && reel.contains(&"dme/dialogue".to_string())
            && reel.contains(&"dme/effects".to_string())
            && reel.contains(&"dme/music".to_string()),
        "{reel:?}"
    );
    let song = variants_of("Song");
    assert!(
        song.iter()
            .all(|v| !v.starts_with("me") && !v.starts_with("dme")),
        "{song:?}"
    );
    assert!(song.contains(&"instrumental".to_string()), "{song:?}");
    // Not skipped either: they do not apply to it.
    let song_entry = manifest["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .find(|t| t["name"] == "Song")
        .expect("song");
    assert!(
        song_entry["skipped"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|s| s["variant"] != "me" && s["variant"] != "dme"),
        "{song_entry:#}"
    );
}
