//! Clean versions: the `duck` node, `Title.explicit`, the `clean` variant
//! option and preset — parsing, validation, resolution and planning.

use std::collections::BTreeMap;

use deliverables_spec::model::{NodeKind, Role, Seconds, parse_time};
use deliverables_spec::plan::{TaskKind, plan};
use deliverables_spec::variant::{title_graph, variants};
use deliverables_spec::{SpecErrors, parse_and_validate};

const HEAD: &str = r#"
schema_version = 1

[graph.roles.vocals]
chain = [{ node = "high_pass", freq_hz = 90.0 }]
"#;

const SONGS: &str = r#"
[[titles]]
name = "Explicit"
explicit = [["00:01:02.500", "01:03.4"], [10, 11.25], [10.5, 12.0]]
stems = [
  { file = "drums.wav", role = "drums" },
  { file = "vox.wav", role = "vocals" },
  { file = "bgv.wav", role = "backing_vocals" },
]

[[titles]]
name = "Radio Safe"
stems = [
  { file = "drums2.wav", role = "drums" },
  { file = "vox2.wav", role = "vocals" },
]
"#;

fn errors(text: &str) -> SpecErrors {
    match parse_and_validate(text, None) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

/// (title, variant) pairs rendered.
type Renders = Vec<(String, String)>;
/// (title, variant, reason) of each skipped output.
type Skipped = Vec<(String, String, String)>;

/// What the plan renders, and what it skips with the reason.
fn rendered(spec: &deliverables_spec::model::Spec) -> (Renders, Skipped) {
    let p = plan(spec, "h", &BTreeMap::new(), "t");
    let renders = p
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
    let skipped = p
        .skipped
        .iter()
        .map(|s| (s.title.clone(), s.variant.clone(), s.reason.clone()))
        .collect();
    (renders, skipped)
}

#[test]
fn times_are_seconds_or_clock_strings_resolved_when_read() {
    assert_eq!(parse_time("01:01:01.1"), Ok(3661.1));
    assert_eq!(parse_time("01:03.4"), Ok(63.4));
    assert_eq!(parse_time("75:00"), Ok(4500.0));
    assert_eq!(parse_time("62.5"), Ok(62.5));
    for bad in [
        "1:60.0", "1:61:00", "-1:00", "1:2:3:4", "", "1:xx", "1.5:00", "1:.5",
    ] {
        assert!(parse_time(bad).is_err(), "{bad}");
    }
    let spec = parse_and_validate(&format!("{HEAD}{SONGS}"), None).expect("valid");
    let e = &spec.titles[0].explicit;
    assert_eq!(e[0], [Seconds(62.5), Seconds(63.4)]);
    assert_eq!(e[1], [Seconds(10.0), Seconds(11.25)]);
    // Stored (and so hashed) as the numbers: both spellings serialise alike.
    let json = serde_json::to_string(&spec.titles[0].explicit).expect("json");
    assert_eq!(json, "[[62.5,63.4],[10.0,11.25],[10.5,12.0]]");

    // A bad string is refused where it was written.
    let e = errors(&format!(
        "{HEAD}[[titles]]\nname = \"X\"\nexplicit = [[\"1:75\", 3]]\nstems = [{{ file = \"v.wav\", role = \"vocals\" }}]\n"
    ));
    let msg = e.to_string();
    assert!(msg.contains("titles[0].explicit"), "{msg}");
    assert!(msg.contains("seconds must be below 60"), "{msg}");
}

#[test]
fn the_clean_preset_ducks_each_cleaned_stem_at_the_end_of_its_chain() {
    let spec = parse_and_validate(&format!("{HEAD}{SONGS}"), None).expect("valid");
    let all = variants(&spec);
    let clean = all.iter().find(|v| v.name == "clean").expect("built in");
    assert!(
        clean.description.contains("mutes vocals, backing_vocals"),
        "{}",
        clean.description
    );
    let tg = title_graph(&spec.graph, &spec.titles[0], clean);
    for s in &tg.stems {
        match s.role {
            Role::Vocals | Role::BackingVocals => {
                let first = s.chain.last().expect("a duck");
                assert_eq!(first.id.as_deref(), Some("clean"));
                // Sorted and merged: [10, 11.25] and [10.5, 12] are one range.
                assert_eq!(
                    first.kind,
                    NodeKind::Duck {
                        ranges: vec![
                            [Seconds(10.0), Seconds(12.0)],
                            [Seconds(62.5), Seconds(63.4)]
                        ],
                        depth_db: None,
                        fade_ms: 10.0,
                    }
                );
            }
            _ => assert!(s.chain.iter().all(|n| n.kind.name() != "duck")),
        }
    }
    // The vocals' own chain comes first.
    let vox = tg
        .stems
        .iter()
        .find(|s| s.role == Role::Vocals)
        .expect("vocals");
    assert_eq!(vox.chain[0].kind.name(), "high_pass");

    // Default variant set: `clean` for the title with explicit ranges only,
    // and no "skipped" entry for the other (it does not apply there).
    let (renders, skipped) = rendered(&spec);
    assert!(renders.contains(&("Explicit".into(), "clean".into())));
    assert!(
        !renders
            .iter()
            .any(|(t, v)| t == "Radio Safe" && v == "clean")
    );
    assert!(skipped.iter().all(|(_, v, _)| v != "clean"), "{skipped:?}");
}

#[test]
fn custom_clean_variants_duck_or_mute_and_say_why_they_are_skipped() {
    let text = format!(
        r#"{HEAD}
[delivery]
stem_naming = "{{title}}_{{variant}}-{{role}}.wav"

[variants.full]
[variants.stems]
[variants.clean_stems]
output = "stems"
clean = {{}}
[variants.ducked]
clean = {{ mode = "duck", duck_db = -12.5, fade_ms = 25, roles = ["vocals"] }}
[variants.own_ranges]
clean = {{ ranges = [[1, 2]] }}
{SONGS}"#
    );
    let spec = parse_and_validate(&text, None).expect("valid");
    let all = variants(&spec);
    let ducked = all.iter().find(|v| v.name == "ducked").expect("ducked");
    let tg = title_graph(&spec.graph, &spec.titles[0], ducked);
    let last: Vec<(Role, Option<&NodeKind>)> = tg
        .stems
        .iter()
        .map(|s| (s.role, s.chain.last().map(|n| &n.kind)))
        .collect();
    assert!(matches!(
        last[1],
        (Role::Vocals, Some(NodeKind::Duck { depth_db: Some(d), fade_ms, .. })) if *d == -12.5 && *fade_ms == 25.0
    ));
    // Only the roles named: the backing vocals are untouched.
    assert_eq!(last[2], (Role::BackingVocals, None));

    let (renders, skipped) = rendered(&spec);
    for v in ["clean_stems", "ducked", "own_ranges"] {
        assert!(
            renders.contains(&("Explicit".into(), v.into())),
            "{v}: {renders:?}"
        );
    }
    // The title without ranges: its own-range variant is a version; the
    // others are not, with the reason and the fix.
    assert!(renders.contains(&("Radio Safe".into(), "own_ranges".into())));
    for v in ["clean_stems", "ducked"] {
        let (_, _, why) = skipped
            .iter()
            .find(|(t, s, _)| t == "Radio Safe" && s == v)
            .unwrap_or_else(|| panic!("{v} skipped: {skipped:?}"));
        assert!(why.contains("lists no `explicit` ranges"), "{why}");
        assert!(why.contains("explicit = [[start, end]"), "{why}");
    }
}

#[test]
fn bad_ranges_fades_and_depths_name_their_field_and_fix() {
    let text = format!(
        r#"{HEAD}
[variants.full]
[variants.c]
clean = {{ duck_db = -10, fade_ms = 2000, roles = [], ranges = [[3, 2]] }}
[variants.d]
clean = {{ mode = "duck", duck_db = 3 }}
[variants.full_clean]
insert = [{{ target = "vocals", nodes = [{{ node = "duck", ranges = [[-1, 2], [5, 5]], depth_db = 6, fade_ms = -1 }}] }}]

[[titles]]
name = "X"
explicit = [[4, 1]]
variants = ["full"]
stems = [{{ file = "v.wav", role = "vocals" }}]

[[titles]]
name = "Y"
variants = ["full", "c", "d"]
stems = [{{ file = "v2.wav", role = "vocals" }}]
"#
    );
    let e = errors(&text);
    let fields: Vec<&str> = e.errors.iter().map(|x| x.field.as_str()).collect();
    for want in [
        "variants.c.clean.roles",
        "variants.c.clean.duck_db",
        "variants.c.clean.fade_ms",
        "variants.c.clean.ranges[0]",
        "variants.d.clean.duck_db",
        "variants.full_clean.insert[0].nodes[0].depth_db",
        "variants.full_clean.insert[0].nodes[0].fade_ms",
        "variants.full_clean.insert[0].nodes[0].ranges",
        "titles[0].explicit[0]",
        "titles[1].variants[2]",
    ] {
        assert!(fields.contains(&want), "{want} not in {fields:?}\n{e}");
    }
    let all = e.to_string();
    assert!(all.contains("is for `mode = \"duck\"` only"), "{all}");
    assert!(all.contains("does not end after it starts"), "{all}");
    assert!(all.contains("starts before zero"), "{all}");
    // `d` is named by title Y, which has no explicit ranges.
    assert!(all.contains("lists no `explicit` ranges"), "{all}");

    // A cue whose voice is dialogue: the default roles find no stem, and
    // the reason says how to clean the dialogue instead.
    let cue = format!(
        "{HEAD}[variants.full]\n[variants.c]\nclean = {{ ranges = [[1, 2]] }}\n\
         [[titles]]\nname = \"Cue\"\nstems = [{{ file = \"d.wav\", role = \"dialogue\" }}, {{ file = \"m.wav\", role = \"music\" }}]\n"
    );
    let spec = parse_and_validate(&cue, None).expect("valid");
    let (_, skipped) = rendered(&spec);
    assert!(
        skipped.iter().any(|(_, v, why)| v == "c"
            && why.contains("no stem of those roles")
            && why.contains("clean.roles = [\"dialogue\"]")),
        "{skipped:?}"
    );

    // The full mix cannot be clean.
    let e = errors(&format!("{HEAD}[variants.full]\nclean = {{}}\n{SONGS}"));
    assert_eq!(e.errors[0].field, "variants.full.clean", "{e}");
}
