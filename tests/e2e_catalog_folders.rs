//! End to end on titles taken from folders: a catalog of 20 title folders
//! of real instruments under the naming conventions engineers use, rendered
//! from a glob and from a CSV index with no title written by hand; the two
//! runs' outputs compared bit for bit; `stemforge render DIR` on one folder;
//! and the findings that stop a catalog before anything is rendered.
//!
//! Needs the real-instrument session's tools (`tests/support/real_session.py`,
//! `STEMFORGE_TEST_PYTHON`) and sox.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use stemforge_testkit::*;

/// The session's files, in this order: each convention names them.
const SOURCES: [&str; 6] = ["Drums", "Bass", "Keys", "Horns", "Voice", "Mix"];

/// The naming conventions: file names for [`SOURCES`], `|`-separated
/// (`{}`: the title's short name), the container, and the roles the names
/// must give. `Take 3` names no role: the glob's spec and the index each
/// say `music`.
const CONVENTIONS: [(&str, &str, &str); 6] = [
    (
        "01_Kick|02_Bass|03_Keys|04_Horns|05_LeadVox|{}_MIX",
        "wav",
        "drums bass keys music vocals",
    ),
    (
        "Drums|Bass DI|Piano|Brass|Vox|{} print",
        "wav",
        "drums bass keys music vocals",
    ),
    (
        "{} - DRUMS|{} - Bass DI|{} - RHODES|{} - STRINGS|{} - Lead Vocal|{} - REF",
        "aif",
        "drums bass keys music vocals",
    ),
    (
        "kit_stereo|sub_bass|synth pad|horns|bgv|fullmix",
        "flac",
        "drums bass keys music backing_vocals",
    ),
    (
        "02 Snare|808|Organ|Orch|DX|Master 24b",
        "wav",
        "drums bass keys music dialogue",
    ),
    (
        "PERC|BASS|KEYS|Take 3|LEADVOX|MIX",
        "wav",
        "drums bass keys music vocals",
    ),
];

/// One naming convention, read from [`CONVENTIONS`].
struct Convention {
    names: Vec<&'static str>,
    ext: &'static str,
    roles: Vec<&'static str>,
}

fn convention(i: usize) -> Convention {
    let (names, ext, roles) = CONVENTIONS[i % CONVENTIONS.len()];
    Convention {
        names: names.split('|').collect(),
        ext,
        roles: roles.split(' ').collect(),
    }
}

const TITLES: [&str; 20] = [
    "Last Train",
    "Night Drive",
    "Undertow",
    "Harbour Lights",
    "Paper Moon",
    "Static",
    "Low Tide",
    "Glass House",
    "Northbound",
    "Afterglow",
    "Slow Burn",
    "Ember",
    "Quiet Storm",
    "Blue Hour",
    "Driftwood",
    "Neon Rain",
    "Open Road",
    "Skyline",
    "Wildfire",
    "Homecoming",
];

/// The title with its own selection of variants.
const SELECTIVE: &str = "Paper Moon";

/// How title `i` is derived from its session: convention, length, gain.
fn variety(i: usize) -> (Convention, f64, Option<f64>) {
    let c = convention(i);
    let seconds = if i % 3 == 1 { 3.0 } else { 4.0 };
    let gain = (i % 4 == 2).then_some(-4.0);
    (c, seconds, gain)
}

fn short(title: &str) -> String {
    title.replace(' ', "")
}

fn file_name(c: &Convention, k: usize, title: &str) -> String {
    format!("{}.{}", c.names[k].replace("{}", &short(title)), c.ext)
}

fn sox(args: &[&str]) {
    let o = Command::new("sox").args(args).output().expect("run sox");
    assert!(
        o.status.success(),
        "sox {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A real session (a MIDI file's instruments, a spoken voice) and 20 title
/// folders derived from it under `root/titles`: a 3 or 4 s window of each
/// file, every other title resampled 6 % faster, some 4 dB down, under the
/// naming conventions.
fn catalog() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        // The session's window where every instrument group plays (the
        // MIDI file opens with keys alone), taken as it is and 6 % faster
        // (resampled: a linear change, so the stems still sum to the mix).
        let session = real_session("catalog-session", &["--seconds", "20"]);
        let sessions = [(&session, None), (&session, Some("1.06"))];
        let root = scratch("catalog-folders");
        std::fs::copy(session.join("deliverables.toml"), root.join("session.toml"))
            .expect("copy the session's spec");
        for (i, title) in TITLES.iter().enumerate() {
            let (c, seconds, gain) = variety(i);
            let dir = root.join("titles").join(title);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let (session, speed) = sessions[i % 2];
            for (k, src) in SOURCES.iter().enumerate() {
                let from = session.join(format!("{src}.wav"));
                let to = dir.join(file_name(&c, k, title));
                let (from, to) = (from.to_str().expect("utf-8"), to.to_str().expect("utf-8"));
                // Every file of a title gets the same length and gain, so
                // the stems still sum to the reference mix.
                let mut args = vec!["-D", from];
                if c.ext == "flac" || c.ext == "aif" {
                    args.extend(["-b", "24"]);
                }
                args.push(to);
                let (t, g) = (seconds.to_string(), gain.map(|g| g.to_string()));
                match speed {
                    None => args.extend(["trim", "16", &t]),
                    Some(x) => args.extend(["trim", "15", "5", "speed", x, "trim", "0", &t]),
                }
                if let Some(g) = &g {
                    args.extend(["gain", g]);
                }
                sox(&args);
            }
        }
        root
    })
}

/// The spec head both runs share: the session's chain, with the default
/// TPDF dither (seeded by title, variant and file name, so two jobs whose
/// specs differ in form still write the same audio).
fn head(root: &Path) -> String {
    let session = std::fs::read_to_string(root.join("session.toml")).expect("session spec");
    session
        .split("[[titles]]")
        .next()
        .expect("head")
        .to_string()
}

fn run(spec: &Path, out: &Path) -> Value {
    let o = stemforge(&["render", p(spec), "--workers", "2", "--out", p(out)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    read_json(&out.join("manifest.json"))
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// (title, variant, role) → audio_sha256, asserting each output passes.
fn outputs(m: &Value) -> BTreeMap<(String, String, String), String> {
    let mut out = BTreeMap::new();
    for t in m["titles"].as_array().expect("titles") {
        let name = t["name"].as_str().expect("name");
        assert_eq!(t["status"], "rendered", "{name}: {t:#}");
        // The reference found by its name is the stems' sum.
        assert_eq!(t["preflight"]["null_test"]["pass"], true, "{name}");
        // Real instruments: no stem of the window is silent.
        let findings = t["preflight"]["findings"].as_array().expect("findings");
        assert!(
            findings.iter().all(|f| f["check"] != "silent"),
            "{name}: {findings:#?}"
        );
        for o in t["outputs"].as_array().expect("outputs") {
            assert_eq!(o["verdict"]["verdict"], "pass", "{name}: {o:#}");
            let key = (
                name.to_string(),
                o["variant"].as_str().expect("variant").to_string(),
                // A stem's role, or a DME file's group.
                o["role"]
                    .as_str()
                    .or(o["group"].as_str())
                    .unwrap_or("")
                    .to_string(),
            );
            let hash = o["file"]["audio_sha256"]
                .as_str()
                .expect("hash")
                .to_string();
            assert!(out.insert(key, hash).is_none(), "{name}: an output twice");
        }
    }
    out
}

/// Each title's inputs as (file name, role), the reference as `reference`.
fn inputs(m: &Value, title: &str) -> Vec<(String, String)> {
    let t = m["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .find(|t| t["name"] == title)
        .unwrap_or_else(|| panic!("no title {title}"));
    let mut v: Vec<(String, String)> = t["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| {
            let path = i["path"].as_str().expect("path");
            let name = path.rsplit('/').next().unwrap_or(path).to_string();
            let role = match i["kind"].as_str() {
                Some("reference") => "reference".to_string(),
                _ => i["role"].as_str().expect("role").to_string(),
            };
            (name, role)
        })
        .collect();
    v.sort();
    v
}

fn expected_inputs(i: usize, title: &str) -> Vec<(String, String)> {
    let (c, _, _) = variety(i);
    let mut v: Vec<(String, String)> = (0..5)
        .map(|k| (file_name(&c, k, title), c.roles[k].to_string()))
        .chain([(file_name(&c, 5, title), "reference".to_string())])
        .collect();
    v.sort();
    v
}

/// Titles whose files need a word from the spec: the convention with `Take 3`.
fn needs_role(i: usize) -> bool {
    variety(i).0.names[3] == "Take 3"
}

#[test]
fn twenty_folders_render_from_a_glob_and_from_a_csv_bit_identically() {
    let root = catalog();
    let head = head(root);
    let mut overrides = String::new();
    for (i, t) in TITLES.iter().enumerate() {
        if needs_role(i) {
            overrides.push_str(&format!(
                "\n[catalog.titles.\"{t}\"]\nroles = {{ \"Take 3.wav\" = \"music\" }}\n"
            ));
        }
    }
    overrides.push_str(&format!(
        "\n[catalog.titles.\"{SELECTIVE}\"]\nvariants = [\"full\", \"stems\"]\n"
    ));
    let glob_spec = root.join("by-glob.toml");
    std::fs::write(
        &glob_spec,
        format!("{head}\n[catalog]\nfolders = [\"titles/*\"]\n{overrides}"),
    )
    .expect("write spec");
    let started = std::time::Instant::now();
    let by_glob = run(&glob_spec, &root.join("out-glob"));
    eprintln!(
        "glob: 20 titles rendered in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The index: rows in reverse order, odd rows by folder, even rows by
    // their files (a quoted `;` list) and reference, roles and variants in
    // their columns.
    let mut csv = String::from("title,folder,files,roles,reference,variants,profile\n");
    for (i, t) in TITLES.iter().enumerate().rev() {
        let (c, _, _) = variety(i);
        let roles = if needs_role(i) {
            "Take 3.wav=music"
        } else {
            ""
        };
        let variants = if *t == SELECTIVE { "full;stems" } else { "" };
        if i % 2 == 1 {
            csv.push_str(&format!("{t},titles/{t},,{roles},,{variants},ebu-r128\n"));
        } else {
            // In name order, as a folder lists them: stems are summed in
            // the order the title lists them.
            let mut files: Vec<String> = (0..5)
                .map(|k| format!("titles/{t}/{}", file_name(&c, k, t)))
                .collect();
            files.sort();
            let roles = if roles.is_empty() {
                String::new()
            } else {
                format!("titles/{t}/{roles}")
            };
            csv.push_str(&format!(
                "{t},,\"{}\",{roles},titles/{t}/{},{variants},\n",
                files.join(";"),
                file_name(&c, 5, t)
            ));
        }
    }
    std::fs::write(root.join("catalog.csv"), csv).expect("write csv");
    let csv_spec = root.join("by-index.toml");
    std::fs::write(
        &csv_spec,
        format!("{head}\n[catalog]\nindex = \"catalog.csv\"\n"),
    )
    .expect("write spec");
    let started = std::time::Instant::now();
    let by_csv = run(&csv_spec, &root.join("out-csv"));
    eprintln!(
        "csv: 20 titles rendered in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let glob_out = outputs(&by_glob);
    let csv_out = outputs(&by_csv);
    for m in [&by_glob, &by_csv] {
        assert_eq!(m["summary"]["titles"], 20, "{:#}", m["summary"]);
        assert_eq!(m["summary"]["all_pass"], true, "{:#}", m["summary"]);
        for (i, t) in TITLES.iter().enumerate() {
            assert_eq!(inputs(m, t), expected_inputs(i, t), "{t}");
        }
    }
    // Every title has its pack (the fold-down is for 5.1), its stems one
    // file per role; the selective title only its two variants.
    for (i, t) in TITLES.iter().enumerate() {
        let variants: std::collections::BTreeSet<&str> = glob_out
            .keys()
            .filter(|(n, _, _)| n == t)
            .map(|(_, v, _)| v.as_str())
            .collect();
        if *t == SELECTIVE {
            assert_eq!(variants.into_iter().collect::<Vec<_>>(), ["full", "stems"]);
        } else {
            // Without a vocal stem, the instrumental is the full mix and the
            // a cappella is silent: both are left out (a dialogue title).
            let vocal = variety(i)
                .0
                .roles
                .iter()
                .any(|r| *r == "vocals" || *r == "backing_vocals");
            let mut want = vec!["full", "stems"];
            if vocal {
                want.extend(["instrumental", "acappella"]);
            }
            for v in want {
                assert!(variants.contains(v), "{t}: {variants:?}");
            }
        }
        let stems = glob_out
            .keys()
            .filter(|(n, v, _)| n == t && v == "stems")
            .count();
        let distinct_roles: std::collections::BTreeSet<&str> =
            variety(i).0.roles.iter().copied().collect();
        assert_eq!(stems, distinct_roles.len(), "{t}");
    }
    assert_eq!(
        glob_out, csv_out,
        "the index and the glob give the same titles, so the same audio"
    );
    eprintln!(
        "{} outputs of 20 titles bit-identical between the glob and the index",
        glob_out.len()
    );
}

#[test]
fn render_dir_renders_one_folder_with_no_spec() {
    let root = catalog();
    let dir = scratch("render-dir").join("Night Drive");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(root.join("titles/Night Drive")).expect("ls") {
        let e = entry.expect("entry");
        std::fs::copy(e.path(), dir.join(e.file_name())).expect("copy");
    }
    let o = stemforge(&["render", p(&dir), "--workers", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = dir.join("deliverables");
    let m = read_json(&out.join("manifest.json"));
    assert_eq!(m["summary"]["titles"], 1);
    assert_eq!(m["summary"]["all_pass"], true, "{:#}", m["summary"]);
    assert_eq!(m["delivery"]["profile"], "ebu-r128");
    let i = TITLES
        .iter()
        .position(|t| *t == "Night Drive")
        .expect("title");
    assert_eq!(inputs(&m, "Night Drive"), expected_inputs(i, "Night Drive"));
    let outs = outputs(&m);
    for v in ["full", "instrumental", "acappella", "tv", "stems"] {
        assert!(outs.keys().any(|(_, x, _)| x == v), "{v}: {outs:?}");
    }
    // The spec it rendered is left beside the pack, ready for overrides.
    let spec = std::fs::read_to_string(out.join("stemforge-render-dir.toml")).expect("spec");
    assert!(spec.contains("[catalog]"), "{spec}");
    // A second run does not take its own output folder for stems.
    let o = stemforge(&["validate", p(&out.join("stemforge-render-dir.toml"))]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn render_dir_of_folders_renders_each_as_a_title() {
    let root = catalog();
    let base = scratch("render-dir-catalog");
    for t in ["Last Train", "Undertow"] {
        let d = base.join(t);
        std::fs::create_dir_all(&d).expect("mkdir");
        for entry in std::fs::read_dir(root.join("titles").join(t)).expect("ls") {
            let e = entry.expect("entry");
            std::fs::copy(e.path(), d.join(e.file_name())).expect("copy");
        }
    }
    // A hidden folder is no title.
    std::fs::create_dir_all(base.join(".cache")).expect("mkdir");
    std::fs::write(base.join(".cache/peaks.wav"), b"").expect("write");
    let out = base.join("deliverables");
    for _ in 0..2 {
        // The second run finds the first one's output folder beside the
        // title folders, and leaves it out.
        let o = stemforge(&["render", p(&base), "--workers", "2"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let m = read_json(&out.join("manifest.json"));
        assert_eq!(title_fields(&m, "name"), ["Last Train", "Undertow"]);
        assert_eq!(m["summary"]["all_pass"], true, "{:#}", m["summary"]);
    }
    // `check DIR` takes the folder of folders the same way, the pack
    // beside them left out.
    let o = stemforge(&["check", p(&base), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(title_fields(&r, "title"), ["Last Train", "Undertow"]);
}

/// `field` of each of a report's `titles`.
fn title_fields<'a>(report: &'a Value, field: &str) -> Vec<&'a str> {
    report["titles"]
        .as_array()
        .expect("titles")
        .iter()
        .map(|t| t[field].as_str().expect("a string"))
        .collect()
}

#[test]
fn a_catalog_with_unplaceable_files_stops_with_every_finding() {
    let root = catalog();
    let base = scratch("catalog-findings");
    let good = root.join("titles/Last Train");
    for (folder, files) in [
        (
            "Good",
            vec![
                ("01_Kick.wav", "01_Kick.wav"),
                ("02_Bass.wav", "02_Bass.wav"),
            ],
        ),
        (
            "Bad",
            vec![
                ("01_Kick.wav", "Track 7.wav"),
                ("02_Bass.wav", "Drum Mix.wav"),
                ("LastTrain_MIX.wav", "Mix A.wav"),
                ("LastTrain_MIX.wav", "Print B.wav"),
            ],
        ),
        ("Empty", vec![]),
    ] {
        let d = base.join(folder);
        std::fs::create_dir_all(&d).expect("mkdir");
        for (from, to) in files {
            std::fs::copy(good.join(from), d.join(to)).expect("copy");
        }
    }
    std::fs::write(base.join("Bad/notes.txt"), "lyrics").expect("write");
    // `render DIR` on a folder of folders is a catalog of them.
    let o = stemforge(&["render", p(&base)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for needle in [
        "Bad/Track 7.wav': no role in its name",
        "roles = { \"Track 7.wav\" = \"keys\" }",
        "Bad/Drum Mix.wav': named like both a `drums` stem and a reference mix",
        "2 files are named like a reference mix: \"Mix A.wav\", \"Print B.wav\"",
        "Bad/notes.txt': not an audio file",
        "Empty': holds no audio files",
        "stemforge-render-dir.toml",
    ] {
        assert!(err.contains(needle), "{needle}:\n{err}");
    }
    // Five findings, none about the output folder the command made.
    assert!(
        err.contains(": 5 problems in the deliverables spec"),
        "{err}"
    );
    assert!(!base.join("deliverables/manifest.json").exists());
}
