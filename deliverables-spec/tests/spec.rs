//! Parsing, validation, variant resolution and planning, without audio.

use std::collections::BTreeMap;

use deliverables_spec::model::{BitDepth, NodeKind, Role};
use deliverables_spec::plan::{RunWhen, TaskKind, plan, spec_hash};
use deliverables_spec::variant::{title_graph, variants};
use deliverables_spec::{LevelPolicy, OutputKind, SpecErrors, parse_and_validate};

const GOOD: &str = r#"
schema_version = 1

[delivery]
profile = "ebu-r128"
bit_depth = 24

[graph.roles.vocals]
chain = [{ node = "gain", db = -1.0, id = "vox_trim" }]

[graph.buses.music]
roles = ["drums", "bass", "keys", "fx"]
chain = [{ node = "gain", db = -0.5 }]

[graph.master]
chain = [{ node = "gain", db = 0.0 }, { node = "loudness" }]

[variants.full]
[variants.instrumental]
[variants.acappella]
[variants.tv]
[variants.vocal_up]
amount_db = 1.5
[variants.vocal_down]
[variants.stems]
[variants.quiet_music]
gains = { music = -6.0 }
level = "normalized"

[[titles]]
name = "Night Drive"
reference = "mix.wav"
stems = [
  { file = "drums.wav", role = "drums" },
  { file = "bass.wav", role = "bass" },
  { file = "vox.wav", role = "vocals" },
  { file = "bgv.wav", role = "backing_vocals" },
]

[[titles]]
name = "Interlude"
stems = [{ file = "keys.wav", role = "keys" }]
"#;

/// Each render depends on exactly the analysis of its title at its rate.
fn renders_depend_on_their_analysis(p: &deliverables_spec::Plan) {
    for t in &p.tasks {
        if let TaskKind::Render { title, rate, .. } = &t.kind {
            let want = TaskKind::Analyze {
                title: title.clone(),
                rate: *rate,
            };
            let a = p
                .tasks
                .iter()
                .find(|x| x.kind == want)
                .expect("analysis at the same rate");
            assert_eq!(t.deps, vec![a.id.clone()]);
        }
    }
}

fn errors(text: &str) -> SpecErrors {
    match parse_and_validate(text, Some(std::path::Path::new("job.toml"))) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

fn one_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.errors.len(), 1, "{e}");
    e.errors[0].to_string()
}

#[test]
fn good_spec_parses() {
    let s = parse_and_validate(GOOD, None).expect("valid");
    assert_eq!(s.titles.len(), 2);
    assert_eq!(s.delivery.bit_depth, Some(BitDepth::Int24));
    assert_eq!(
        s.graph.roles[&Role::Vocals].chain[0].id.as_deref(),
        Some("vox_trim")
    );
    assert_eq!(
        s.graph.roles[&Role::Vocals].chain[0].kind,
        NodeKind::Gain { db: -1.0 }
    );
}

#[test]
fn unknown_key_names_field_line_and_suggestion() {
    let text = GOOD.replace("bit_depth = 24", "bit_depth = 24\ntolerence_lu = 1.0");
    let msg = one_error(&text);
    assert!(msg.contains("delivery"), "{msg}");
    assert!(msg.contains("unknown key `tolerence_lu`"), "{msg}");
    assert!(msg.contains("did you mean `tolerance_lu`?"), "{msg}");
    assert!(msg.contains("line 7"), "{msg}");
}

#[test]
fn misspelt_role_suggests_the_right_one() {
    let text = GOOD.replace(r#"role = "backing_vocals""#, r#"role = "backing_vocal""#);
    let msg = one_error(&text);
    assert!(msg.contains("titles[0].stems[3].role"), "{msg}");
    assert!(msg.contains("did you mean `backing_vocals`?"), "{msg}");
}

#[test]
fn misspelt_node_suggests() {
    let text = GOOD.replace(r#"node = "gain", db = -0.5"#, r#"node = "gian", db = -0.5"#);
    let msg = one_error(&text);
    assert!(msg.contains("graph.buses.music.chain"), "{msg}");
    assert!(msg.contains("did you mean `gain`?"), "{msg}");
}

#[test]
fn negative_tolerance_is_refused() {
    let text = GOOD.replace("bit_depth = 24", "bit_depth = 24\ntolerance_lu = -0.5");
    let msg = one_error(&text);
    assert!(
        msg.contains("delivery.tolerance_lu: must be zero or positive, got -0.5"),
        "{msg}"
    );
}

#[test]
fn unsupported_bit_depth_is_refused() {
    let text = GOOD.replace("bit_depth = 24", "bit_depth = 20");
    let msg = one_error(&text);
    assert!(msg.contains("delivery.bit_depth"), "{msg}");
    assert!(msg.contains("use 16 or 24 (PCM) or 32 (float)"), "{msg}");
}

#[test]
fn schema_version_is_required_and_checked() {
    let msg = one_error(&GOOD.replace("schema_version = 1", ""));
    assert!(msg.contains("schema_version: missing"), "{msg}");
    let msg = one_error(&GOOD.replace("schema_version = 1", "schema_version = 7"));
    assert!(msg.contains("version 7 is not supported"), "{msg}");
}

#[test]
fn semantic_errors_are_all_reported() {
    let text = GOOD
        .replace(r#"profile = "ebu-r128""#, r#"profile = "ebu-r182""#)
        .replace("gains = { music = -6.0 }", "gains = { musik = -6.0 }")
        .replace("amount_db = 1.5", "amount_db = -1.5")
        .replace(
            r#"roles = ["drums", "bass", "keys", "fx"]"#,
            r#"roles = ["drums", "bass", "keys", "fx", "drums"]"#,
        );
    let e = errors(&text);
    let all = e.to_string();
    assert_eq!(e.errors.len(), 4, "{all}");
    assert!(
        all.contains("delivery.profile: unknown profile `ebu-r182` (did you mean `ebu-r128`?)"),
        "{all}"
    );
    assert!(all.contains("variants.quiet_music.gains.musik"), "{all}");
    assert!(all.contains("did you mean `music`?"), "{all}");
    assert!(all.contains("variants.vocal_up.amount_db"), "{all}");
    assert!(
        all.contains("role `drums` is already in bus `music`"),
        "{all}"
    );
    assert!(all.starts_with("job.toml: 4 problems"), "{all}");
}

#[test]
fn loudness_node_only_on_master() {
    let text = GOOD.replace(
        r#"chain = [{ node = "gain", db = -0.5 }]"#,
        r#"chain = [{ node = "loudness" }]"#,
    );
    assert!(one_error(&text).contains("belongs in the master chain"));
}

#[test]
fn presets_resolve_to_what_engineers_expect() {
    let s = parse_and_validate(GOOD, None).expect("valid");
    let vs = variants(&s);
    let by = |n: &str| vs.iter().find(|v| v.name == n).expect(n).clone();
    let t = &s.titles[0];
    let muted = |v: &str| -> Vec<Role> {
        title_graph(&s.graph, t, &by(v))
            .stems
            .iter()
            .filter(|p| p.muted)
            .map(|p| p.role)
            .collect()
    };
    assert_eq!(muted("full"), vec![]);
    assert_eq!(
        muted("instrumental"),
        vec![Role::Vocals, Role::BackingVocals]
    );
    assert_eq!(muted("acappella"), vec![Role::Drums, Role::Bass]);
    assert_eq!(muted("tv"), vec![Role::Vocals]);
    let up = title_graph(&s.graph, t, &by("vocal_up"));
    assert_eq!(up.stems[2].gain_db, 1.5);
    assert_eq!(up.stems[3].gain_db, 0.0);
    let down = title_graph(&s.graph, t, &by("vocal_down"));
    assert_eq!(down.stems[2].gain_db, -2.0);
    assert_eq!(by("full").level, LevelPolicy::Normalized);
    assert_eq!(by("tv").level, LevelPolicy::Matched);
    assert_eq!(by("stems").output, OutputKind::Stems);
    assert_eq!(by("quiet_music").level, LevelPolicy::Normalized);
    let q = title_graph(&s.graph, t, &by("quiet_music"));
    assert_eq!(q.buses[0].gain_db, -6.0);
    // The master always carries exactly one loudness node.
    assert_eq!(
        q.master
            .iter()
            .filter(|n| n.kind == NodeKind::Loudness {})
            .count(),
        1
    );
}

#[test]
fn plan_is_a_deterministic_dag() {
    let s = parse_and_validate(GOOD, None).expect("valid");
    let fp: BTreeMap<String, String> = [
        "drums.wav",
        "bass.wav",
        "vox.wav",
        "bgv.wav",
        "keys.wav",
        "mix.wav",
    ]
    .iter()
    .map(|f| (f.to_string(), format!("100:{f}")))
    .collect();
    let h = spec_hash(GOOD);
    let p = plan(&s, &h, &fp, "0.1.0");
    let p2 = plan(&s, &h, &fp, "0.1.0");
    assert_eq!(p, p2);
    // Per title: preflight → analyze → renders. Title 1: 8 variants;
    // title 2 (keys only): acappella skipped (silent), and instrumental,
    // tv, vocal_up and vocal_down are not versions of it (no vocals).
    let preflights = p
        .tasks
        .iter()
        .filter(|t| matches!(t.kind, TaskKind::Preflight { .. }))
        .count();
    assert_eq!(preflights, 2);
    let analyses = p
        .tasks
        .iter()
        .filter(|t| matches!(t.kind, TaskKind::Analyze { .. }))
        .count();
    let renders = p
        .tasks
        .iter()
        .filter(|t| matches!(t.kind, TaskKind::Render { .. }))
        .count();
    // One render task per title's pack, listing every variant it renders.
    let variants: Vec<usize> = p
        .tasks
        .iter()
        .filter_map(|t| match &t.kind {
            TaskKind::Render { variants, .. } => Some(variants.len()),
            _ => None,
        })
        .collect();
    assert_eq!((analyses, renders), (2, 2));
    assert_eq!(variants, [8, 3]);
    assert_eq!(p.skipped.len(), 5);
    assert_eq!(p.skipped[0].variant, "acappella");
    assert_eq!(p.skipped[0].same_as, None);
    let same: Vec<(&str, Option<&str>)> = p.skipped[1..]
        .iter()
        .map(|s| (s.variant.as_str(), s.same_as.as_deref()))
        .collect();
    assert_eq!(
        same,
        [
            ("instrumental", Some("full")),
            ("tv", Some("full")),
            ("vocal_down", Some("full")),
            ("vocal_up", Some("full")),
        ]
    );
    assert!(
        p.skipped[2]
            .reason
            .contains("only by its processing changes (the presence dip)"),
        "{}",
        p.skipped[2].reason
    );
    let manifest = p.tasks.last().expect("tasks");
    assert_eq!(manifest.kind, TaskKind::Manifest { bundle: None });
    assert_eq!(manifest.run_when, RunWhen::JobFinished);
    assert!(manifest.deps.is_empty());
    // Analyses depend on their title's preflight, renders on their
    // title's analysis only.
    for t in &p.tasks {
        if let TaskKind::Analyze { title, .. } = &t.kind {
            let pf = p
                .tasks
                .iter()
                .find(|x| {
                    x.kind
                        == TaskKind::Preflight {
                            title: title.clone(),
                        }
                })
                .expect("preflight");
            assert_eq!(t.deps, vec![pf.id.clone()]);
            assert!(pf.deps.is_empty());
        }
    }
    renders_depend_on_their_analysis(&p);
    // Ids are unique and content-addressed: a changed input changes its title's ids only.
    let ids: std::collections::BTreeSet<_> = p.tasks.iter().map(|t| &t.id).collect();
    assert_eq!(ids.len(), p.tasks.len());
    let mut fp2 = fp.clone();
    fp2.insert("keys.wav".into(), "101:changed".into());
    let p3 = plan(&s, &h, &fp2, "0.1.0");
    let changed: Vec<_> = p
        .tasks
        .iter()
        .zip(&p3.tasks)
        .filter(|(a, b)| a.id != b.id)
        .map(|(a, _)| a.kind.label())
        .collect();
    assert!(
        changed
            .iter()
            .all(|l| l.contains("Interlude") || l == "manifest"),
        "{changed:?}"
    );
    // Its preflight, analysis, pack render, and the manifest.
    assert_eq!(changed.len(), 1 + 1 + 1 + 1);
}

/// The README's spec example (its "A spec" section) is a valid spec.
#[test]
fn readme_example_is_valid() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    // The first TOML block of the README's "A spec" section.
    let section = readme
        .split_once("\n## A spec\n")
        .map(|(_, s)| s)
        .expect("an `## A spec` section in the README");
    let block = section
        .split("```toml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a toml block in the README");
    let s = parse_and_validate(block, None).unwrap_or_else(|e| panic!("README example: {e}"));
    assert_eq!(s.variants.len(), 8);
    assert_eq!(s.titles[0].stems.len(), 3);
}

#[test]
fn two_stem_variants_need_variant_in_stem_names() {
    let text = GOOD.replace(
        "[variants.stems]",
        "[variants.stems]\n[variants.stems_inst]\noutput = \"stems\"\nmute = [\"vocals\"]",
    );
    let msg = one_error(&text);
    assert!(msg.contains("delivery.stem_naming"), "{msg}");
    assert!(msg.contains("add `{variant}`"), "{msg}");
    let ok = text.replace(
        "bit_depth = 24",
        "bit_depth = 24\nstem_naming = \"{title}_{variant}-{role}.wav\"",
    );
    parse_and_validate(&ok, None).expect("valid with {variant} in the stem names");
}

/// The `tv` preset dips the presence range on the music bus (or, without a
/// `music` bus, on every non-vocal, non-dialogue role); the user's own
/// `insert` replaces it.
#[test]
fn tv_preset_dips_the_music_and_is_overridable() {
    let s = parse_and_validate(GOOD, None).expect("valid");
    let tv = variants(&s)
        .into_iter()
        .find(|v| v.name == "tv")
        .expect("tv");
    assert_eq!(tv.insert.len(), 1);
    assert_eq!(tv.insert[0].target, "bus:music");
    assert_eq!(
        tv.insert[0].nodes[0].kind,
        NodeKind::Peak {
            freq_hz: 2500.0,
            gain_db: -3.0,
            q: 0.7
        }
    );
    let g = title_graph(&s.graph, &s.titles[0], &tv);
    assert!(
        g.buses[0]
            .chain
            .iter()
            .any(|n| n.id.as_deref() == Some("tv_presence_dip"))
    );
    assert!(g.stems.iter().all(|st| {
        st.chain
            .iter()
            .all(|n| n.id.as_deref() != Some("tv_presence_dip"))
    }));

    let no_bus = GOOD.replace("[graph.buses.music]\nroles = [\"drums\", \"bass\", \"keys\", \"fx\"]\nchain = [{ node = \"gain\", db = -0.5 }]\n", "");
    let s2 = parse_and_validate(&no_bus, None).expect("valid");
    let tv2 = variants(&s2)
        .into_iter()
        .find(|v| v.name == "tv")
        .expect("tv");
    let targets: Vec<&str> = tv2.insert.iter().map(|i| i.target.as_str()).collect();
    assert!(
        targets.contains(&"role:drums")
            && !targets.contains(&"role:vocals")
            && !targets.contains(&"role:dialogue"),
        "{targets:?}"
    );

    let custom = GOOD.replace("[variants.tv]", "[variants.tv]\ninsert = [{ target = \"master\", nodes = [{ node = \"gain\", db = -1.0 }] }]");
    let s3 = parse_and_validate(&custom, None).expect("valid");
    let tv3 = variants(&s3)
        .into_iter()
        .find(|v| v.name == "tv")
        .expect("tv");
    assert_eq!(tv3.insert.len(), 1);
    assert_eq!(tv3.insert[0].target, "master");
}

/// A 5.1 title beside a stereo one, the default variant set.
const SURROUND: &str = r#"
schema_version = 1

[graph.lfe]
low_pass_hz = 100.0

[[titles]]
name = "Cue 5.1"
layout = "5.1"
stems = [{ file = "music.wav", role = "music" }, { file = "dx.wav", role = "dialogue" }]

[[titles]]
name = "Song"
stems = [{ file = "keys.wav", role = "keys" }]
"#;

#[test]
fn a_5_1_title_gets_a_fold_down_and_a_stereo_title_does_not() {
    use deliverables_spec::model::Layout;
    let spec = parse_and_validate(SURROUND, None).expect("valid");
    assert_eq!(spec.titles[0].layout, Layout::Surround51);
    assert_eq!(spec.titles[1].layout, Layout::Stereo);
    let all = variants(&spec);
    let fold = all
        .iter()
        .find(|v| v.name == "fold_down")
        .expect("built in");
    assert_eq!(fold.level, LevelPolicy::Normalized);
    let f = fold.fold_down.as_ref().expect("folds");
    assert_eq!(
        (f.center_db, f.surround_db, f.lfe_db, f.limiter),
        (None, None, None, true)
    );
    assert!(fold.description.contains("BS.775"), "{}", fold.description);

    let tg = title_graph(&spec.graph, &spec.titles[0], fold);
    let fp = tg.fold_down.as_ref().expect("fold path");
    assert!(
        matches!(fp.chain[..], [ref n] if matches!(n.kind, NodeKind::Limiter { ceiling_dbtp: None, .. }))
    );
    assert!(matches!(
        tg.lfe_low_pass.as_ref().map(|n| &n.kind),
        Some(NodeKind::LowPass { freq_hz, slope_db_oct: 24 }) if *freq_hz == 100.0
    ));
    // The stereo title: no LFE, no fold, and no fold-down task (nor a
    // "skipped" entry: a fold-down does not apply to it).
    let stereo = title_graph(&spec.graph, &spec.titles[1], fold);
    assert!(stereo.fold_down.is_none() && stereo.lfe_low_pass.is_none());
    let p = plan(&spec, "h", &BTreeMap::new(), "t");
    let renders: Vec<(String, String)> = p
        .tasks
        .iter()
        .flat_map(|t| match &t.kind {
            TaskKind::Render {
                title, variants, ..
            } => variants
                .iter()
                .map(|v| (title.clone(), v.clone()))
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    assert!(renders.contains(&("Cue 5.1".into(), "fold_down".into())));
    assert!(!renders.iter().any(|(t, v)| t == "Song" && v == "fold_down"));
    assert!(
        p.skipped.iter().all(|s| s.variant != "fold_down"),
        "{:?}",
        p.skipped
    );
}

#[test]
fn fold_down_settings_are_checked() {
    let with = |extra: &str| {
        SURROUND.replace(
            "[[titles]]\nname = \"Cue 5.1\"",
            &format!("{extra}\n[[titles]]\nname = \"Cue 5.1\""),
        )
    };
    let e = one_error(&with(
        "[variants.lo_ro]\nfold_down = { center_db = 12.0 }\n",
    ));
    assert!(
        e.contains("variants.lo_ro.fold_down.center_db") && e.contains("-60 to +6"),
        "{e}"
    );
    let e = one_error(&SURROUND.replace("low_pass_hz = 100.0", "low_pass_hz = 4000.0"));
    assert!(e.contains("graph.lfe.low_pass_hz"), "{e}");
    let e = one_error(&SURROUND.replace("layout = \"5.1\"", "layout = \"7.1\""));
    assert!(e.contains("layout") && e.contains("5.1"), "{e}");
    // A fold-down listed explicitly when every title is stereo.
    let stereo = SURROUND.replace("layout = \"5.1\"\n", "");
    let e = one_error(&stereo.replace(
        "[graph.lfe]",
        "[variants.full]\n[variants.fold_down]\n[graph.lfe]",
    ));
    assert!(
        e.contains("variants.fold_down") && e.contains("every title is stereo"),
        "{e}"
    );
    // ... but the default set on stereo titles is fine.
    parse_and_validate(&stereo, None).expect("defaults apply to stereo titles");
    // The full mix stays in the title's layout: it sets the master gain.
    let e = one_error(&with("[variants.full]\nfold_down = {}\n"));
    assert!(
        e.contains("variants.full.fold_down") && e.contains("master gain"),
        "{e}"
    );
}

#[test]
fn sample_rates_plan_a_pack_per_rate() {
    let two = GOOD.replace(
        "bit_depth = 24\n",
        "bit_depth = 24\nsample_rates = [48000, 96000]\n",
    );
    let spec = parse_and_validate(&two, None).expect("valid");
    let p = plan(&spec, "h", &BTreeMap::new(), "t");
    let count = |f: &dyn Fn(&TaskKind) -> bool| p.tasks.iter().filter(|t| f(&t.kind)).count();
    // Two titles: one preflight each, an analysis per title and rate, and
    // every render once per rate, depending on the analysis at its rate.
    assert_eq!(count(&|k| matches!(k, TaskKind::Preflight { .. })), 2);
    assert_eq!(
        count(&|k| matches!(k, TaskKind::Analyze { rate: Some(_), .. })),
        4
    );
    let single = plan(
        &parse_and_validate(GOOD, None).expect("valid"),
        "h",
        &BTreeMap::new(),
        "t",
    );
    let renders = |p: &deliverables_spec::Plan| {
        p.tasks
            .iter()
            .filter(|t| matches!(t.kind, TaskKind::Render { .. }))
            .count()
    };
    assert_eq!(renders(&p), 2 * renders(&single));
    renders_depend_on_their_analysis(&p);
    // A single pack keeps its tasks free of a rate (ids unchanged).
    assert!(single.tasks.iter().all(|t| !matches!(
        t.kind,
        TaskKind::Analyze { rate: Some(_), .. } | TaskKind::Render { rate: Some(_), .. }
    )));

    let e = errors(&GOOD.replace(
        "bit_depth = 24\n",
        "bit_depth = 24\nsample_rate = 48000\nsample_rates = [48000, 48000, 1]\nnaming = \"{title}_{variant}.wav\"\n",
    ))
    .to_string();
    for want in [
        "delivery.sample_rates: is set together with `sample_rate`",
        "delivery.sample_rates[1]: 48000 Hz is listed twice",
        "delivery.sample_rates[2]: 1 Hz is not a supported rate",
        "delivery.naming: `{title}_{variant}.wav` has no `{rate}`",
    ] {
        assert!(e.contains(want), "{want}\nin:\n{e}");
    }
}

/// The level-change and re-mix options say where they do not apply.
#[test]
fn effective_amounts_and_remix_stems_are_checked() {
    let cases = [
        (
            "[variants.vocal_up]\namount_db = 1.5\namount_mode = \"effective\"\nlevel = \"normalized\"",
            "variants.vocal_up.amount_mode: `effective` measures the change against the full mix",
        ),
        (
            "[variants.quiet_music]\ngains = { music = -6.0, vocals = 1.0 }\namount_mode = \"effective\"\nlevel = \"normalized\"",
            "variants.quiet_music.amount_mode: `effective` needs exactly one level change to search, and `quiet_music` has 2",
        ),
        (
            "[variants.stems]\namount_mode = \"effective\"",
            "variants.stems.amount_mode: `effective` needs exactly one level change",
        ),
        (
            "[variants.tv]\nremix = true",
            "variants.tv.remix: only a variant with `output = \"stems\"` delivers re-mix stems",
        ),
    ];
    for (section, want) in cases {
        let header = section.lines().next().unwrap_or_default();
        let start = GOOD.find(header).expect("section in GOOD");
        let end = GOOD[start + header.len()..]
            .find("\n[")
            .map_or(GOOD.len(), |e| start + header.len() + e);
        let text = format!("{}{section}{}", &GOOD[..start], &GOOD[end..]);
        let err = parse_and_validate(&text, None)
            .expect_err(section)
            .to_string();
        assert!(err.contains(want), "{section}:\n{err}");
    }
    let text = GOOD.replace("bit_depth = 24", "bit_depth = 24\nframe_rate = 0.5");
    let msg = one_error(&text);
    assert!(
        msg.contains("delivery.frame_rate: 0.5 is not a timecode frame rate"),
        "{msg}"
    );
    // Valid: an effective vocal move, re-mix stems, a film frame rate.
    let text = GOOD
        .replace(
            "amount_db = 1.5",
            "amount_db = 1.5\namount_mode = \"effective\"",
        )
        .replace("[variants.stems]", "[variants.stems]\nremix = true")
        .replace(
            "bit_depth = 24",
            "bit_depth = 24\nframe_rate = 23.976\nidentical_variants = \"write\"",
        );
    parse_and_validate(&text, None).expect("valid");
}

/// A limit is reported where it was written: a custom profile's own field,
/// not the delivery it resolves into.
#[test]
fn profile_limits_are_named_by_their_own_path() {
    let text = GOOD.replace(
        "[delivery]\nprofile = \"ebu-r128\"",
        "[profiles.house]\nbase = \"atsc-a85\"\ntarget_lufs = 12.0\ntolerance_lu = -1.0\n\n[delivery]\nprofile = \"house\"",
    );
    let err = parse_and_validate(&text, None)
        .expect_err("bad profile")
        .to_string();
    assert!(
        err.contains("profiles.house.target_lufs: 12 is not a loudness target"),
        "{err}"
    );
    assert!(
        err.contains("profiles.house.tolerance_lu: must be zero or positive"),
        "{err}"
    );
    assert!(
        !err.contains("delivery.target_lufs") && !err.contains("delivery.tolerance_lu"),
        "{err}"
    );
}

/// A film reel (dialogue, music, effects) beside a song (vocals).
const FILM: &str = r#"
schema_version = 1

[[titles]]
name = "Reel 1"
stems = [
  { file = "dx.wav", role = "dialogue" },
  { file = "score.wav", role = "music" },
  { file = "drums.wav", role = "drums" },
  { file = "fx.wav", role = "fx" },
]

[[titles]]
name = "Song"
stems = [{ file = "keys.wav", role = "keys" }, { file = "vox.wav", role = "vocals" }]
"#;

/// Each title's rendered variants in the plan.
fn rendered(spec: &deliverables_spec::Spec) -> Vec<(String, String)> {
    plan(spec, "h", &BTreeMap::new(), "t")
        .tasks
        .iter()
        .flat_map(|t| match &t.kind {
            TaskKind::Render {
                title, variants, ..
            } => variants
                .iter()
                .map(|v| (title.clone(), v.clone()))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// `me` mutes the dialogue at the full mix's gain; `dme` writes three group
/// files over every sounding stem; both only for titles with dialogue.
#[test]
fn me_and_dme_resolve_and_apply_to_titles_with_dialogue() {
    use deliverables_spec::outputs::title_outputs;
    let spec = parse_and_validate(FILM, None).expect("valid");
    assert!(spec.variants_are_default());
    let all = variants(&spec);
    let me = all.iter().find(|v| v.name == "me").expect("me built in");
    assert_eq!(
        (me.level, me.output, me.description.as_str()),
        (
            LevelPolicy::Matched,
            OutputKind::Mix,
            "M&E: music and effects, dialogue muted"
        )
    );
    assert!(me.mute.contains("role:dialogue") && me.groups.is_none());
    let dme = all.iter().find(|v| v.name == "dme").expect("dme built in");
    assert_eq!(
        (dme.level, dme.output),
        (LevelPolicy::Matched, OutputKind::Stems)
    );
    let groups = dme.groups.as_ref().expect("groups");
    assert_eq!(
        groups.keys().map(String::as_str).collect::<Vec<_>>(),
        ["dialogue", "effects", "music"]
    );
    assert_eq!(groups["effects"], [Role::Fx]);
    // The plain `stems` variant writes per-role files, no groups.
    assert!(
        all.iter()
            .find(|v| v.name == "stems")
            .expect("stems")
            .groups
            .is_none()
    );

    let d = deliverables_spec::Delivery::resolve_with(&spec.delivery, &spec.profiles);
    let outs = title_outputs(&spec, &d, &spec.titles[0], dme, 48_000);
    let got: Vec<(Option<&str>, &str, Vec<usize>)> = outs
        .iter()
        .map(|o| (o.group.as_deref(), o.file_name.as_str(), o.stems.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                Some("dialogue"),
                "Reel-1_stem-dme-dialogue_48k24.wav",
                vec![0]
            ),
            (
                Some("effects"),
                "Reel-1_stem-dme-effects_48k24.wav",
                vec![3]
            ),
            (Some("music"), "Reel-1_stem-dme-music_48k24.wav", vec![1, 2]),
        ]
    );
    assert!(outs.iter().all(|o| o.role.is_none() && o.is_stem()));
    // The groups are a set of files of their own: not the `stems` variant's.
    let r = rendered(&spec);
    for v in ["full", "stems", "me", "dme"] {
        assert!(r.contains(&("Reel 1".into(), v.into())), "{v}: {r:?}");
    }
    assert!(
        !r.iter()
            .any(|(t, v)| t == "Song" && (v == "me" || v == "dme")),
        "{r:?}"
    );
    let p = plan(&spec, "h", &BTreeMap::new(), "t");
    assert!(
        p.skipped
            .iter()
            .all(|s| !(s.title == "Song" && (s.variant == "me" || s.variant == "dme"))),
        "a song without dialogue gets neither, silently: {:?}",
        p.skipped
    );
}

/// Groups written in the spec replace the preset's; any stems variant may
/// set them, with `{variant}` in the stem template used as it is.
#[test]
fn groups_are_overridable_and_any_stems_variant_may_have_them() {
    let text = FILM.replacen(
        "\n[[titles]]",
        "[delivery]\nstem_naming = \"{title}_{variant}_{role}.wav\"\n\
         [variants.full]\n[variants.dme]\ngroups = { dx = [\"dialogue\"], mx = [\"music\", \"drums\"], fx = [\"fx\"] }\n\
         [variants.split]\noutput = \"stems\"\ngroups = { voice = [\"dialogue\", \"vocals\"], band = [\"keys\", \"music\", \"drums\", \"fx\"] }\n\n[[titles]]",
        1,
    );
    let spec = parse_and_validate(&text, None).expect("valid");
    let d = deliverables_spec::Delivery::resolve_with(&spec.delivery, &spec.profiles);
    let all = variants(&spec);
    let dme = all.iter().find(|v| v.name == "dme").expect("dme");
    let names: Vec<String> =
        deliverables_spec::outputs::title_outputs(&spec, &d, &spec.titles[0], dme, 48_000)
            .into_iter()
            .map(|o| o.file_name)
            .collect();
    assert_eq!(
        names,
        [
            "Reel-1_dme_dx.wav",
            "Reel-1_dme_fx.wav",
            "Reel-1_dme_mx.wav"
        ]
    );
    let split = all.iter().find(|v| v.name == "split").expect("split");
    let song: Vec<(Option<String>, Vec<usize>)> =
        deliverables_spec::outputs::title_outputs(&spec, &d, &spec.titles[1], split, 48_000)
            .into_iter()
            .map(|o| (o.group, o.stems))
            .collect();
    assert_eq!(
        song,
        [
            (Some("band".into()), vec![0]),
            (Some("voice".into()), vec![1])
        ]
    );
    assert!(
        split
            .acts_on()
            .contains("stems in groups: band = keys+music+drums+fx")
    );
}

#[test]
fn group_errors_name_the_field_and_the_fix() {
    let with = |groups: &str| {
        FILM.replacen(
            "\n[[titles]]",
            &format!("[variants.full]\n[variants.dme]\ngroups = {groups}\n\n[[titles]]"),
            1,
        )
    };
    // A role in two groups.
    let msg = one_error(&with(
        r#"{ dialogue = ["dialogue"], music = ["music", "drums", "fx"], effects = ["fx"] }"#,
    ));
    assert!(msg.contains("variants.dme.groups.music[2]"), "{msg}");
    assert!(msg.contains("role `fx` is in group `effects` too"), "{msg}");
    assert!(msg.contains("must sum to the mix"), "{msg}");
    // A group without roles.
    let msg = one_error(&with(
        r#"{ dialogue = ["dialogue"], music = ["music", "drums"], effects = ["fx"], ambience = [] }"#,
    ));
    assert!(msg.contains("variants.dme.groups.ambience"), "{msg}");
    assert!(msg.contains("lists no role"), "{msg}");
    // A name that is not a slug, and an empty one.
    let msg = one_error(&with(
        r#"{ dialogue = ["dialogue"], "mu/sic" = ["music", "drums"], effects = ["fx"] }"#,
    ));
    assert!(msg.contains("variants.dme.groups.mu/sic"), "{msg}");
    assert!(msg.contains("is not a group name"), "{msg}");
    let msg = one_error(&with(
        r#"{ dialogue = ["dialogue"], "" = ["music", "drums"], effects = ["fx"] }"#,
    ));
    assert!(msg.contains("variants.dme.groups."), "{msg}");
    // No group at all.
    let msg = one_error(&with("{}"));
    assert!(
        msg.contains("variants.dme.groups") && msg.contains("names no group"),
        "{msg}"
    );
    // A role that sounds and is in no group: the files would not sum.
    let msg = one_error(&with(
        r#"{ dialogue = ["dialogue"], music = ["music", "drums"] }"#,
    ));
    assert!(msg.contains("variants.dme.groups"), "{msg}");
    assert!(
        msg.contains("role `fx` sounds in `dme` for title `Reel 1` but is in no group"),
        "{msg}"
    );
    assert!(msg.contains("add `fx` to a group"), "{msg}");
    // … unless the variant mutes it.
    let muted = with(r#"{ dialogue = ["dialogue"], music = ["music", "drums"] }"#)
        .replace("[variants.dme]\n", "[variants.dme]\nmute = [\"fx\"]\n");
    parse_and_validate(&muted, None).expect("a muted role needs no group");
    // An unknown role is refused where it is written.
    let e = errors(&with(
        r#"{ dialogue = ["dialog"], music = ["music", "drums"], effects = ["fx"] }"#,
    ));
    assert!(e.to_string().contains("dialog"), "{e}");
    // Groups on a mix.
    let text = FILM.replacen(
        "\n[[titles]]",
        "[variants.full]\n[variants.me]\ngroups = { all = [\"music\"] }\n\n[[titles]]",
        1,
    );
    let msg = one_error(&text);
    assert!(msg.contains("variants.me.groups"), "{msg}");
    assert!(
        msg.contains("output = \\\"stems\\\"") || msg.contains("output = \"stems\""),
        "{msg}"
    );
}
