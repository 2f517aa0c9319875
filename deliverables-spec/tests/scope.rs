//! A job's spec text cut by title: each title's text loads as that title of
//! the whole spec, with the job's hash, and its size does not grow with the
//! number of titles.

use std::path::Path;

use deliverables_spec::plan::spec_hash;
use deliverables_spec::scope::split_titles;
use deliverables_spec::{load_scoped, load_text};

/// Three titles written three ways (stems inline, as `[[titles.stems]]`
/// tables, with a chain), with comments, a section after the titles, and
/// two checks that look across titles: a replaced node whose `id` is on one
/// title's stem, and a fold-down that only the 5.1 title has.
const JOB: &str = r#"
# A job of three titles.
schema_version = 1

[delivery]
profile = "ebu-r128"
sample_rates = [48000, 44100]
naming = "{title}_{variant}_{rate}k{bits}.wav"

[graph.master]
chain = [{ node = "loudness" }]

# The titles.
[[titles]]
name = "Night Drive"
reference = "night/mix.wav"
stems = [
  { file = "night/drums.wav", role = "drums" },
  { file = "night/vox.wav", role = "vocals", chain = [{ node = "high_pass", freq_hz = 90.0, id = "vox_hp" }] },
]

[[titles]]
# The surround one.
name = "Harbour"
layout = "5.1"

[[titles.stems]]
file = "harbour/music.wav"
role = "music"

[[titles.stems]]
file = "harbour/dialogue.wav"
role = "dialogue"
chain = [{ node = "peak", freq_hz = 3000.0, gain_db = 2.0 }]

[[titles]]
name = "Interlude"
stems = [{ file = "interlude/keys.wav", role = "keys" }]

# Variants come after the titles.
[variants.full]
[variants.stems]
[variants.fold_down]
fold_down = { center_db = -4.5 }
[variants.soft_vox]
replace = [{ id = "vox_hp", with = { node = "high_pass", freq_hz = 150.0 } }]
"#;

const INLINE_JOB: &str = r#"
schema_version = 1
titles = [
  { name = "One", stems = [{ file = "a.wav", role = "drums" }] },
  { name = "Two", stems = [{ file = "b.wav", role = "bass" }] },
  { name = "Three", layout = "5.1", stems = [{ file = "c.wav", role = "music" }] },
]

[delivery]
sample_rate = 48000

[graph.master]
chain = [{ node = "loudness" }]

[variants.full]
"#;

fn check_scoped_equal_full(job: &str) {
    let base = Path::new("/media/job");
    let full = load_text(job.to_string(), base, None).unwrap_or_else(|e| panic!("{e}"));
    let split = split_titles(job).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(split.titles.len(), full.spec.titles.len());
    assert_eq!(full.spec.titles.len(), 3);
    assert!(!split.header.contains("[[titles]]"), "{}", split.header);
    for (i, want) in full.spec.titles.iter().enumerate() {
        let text = split.title_text(i).expect("a text per title");
        let one = load_scoped(text.clone(), base, &full.sha256)
            .unwrap_or_else(|e| panic!("title {i}: {e}\n{text}"));
        assert_eq!(one.spec.titles, vec![want.clone()], "title {i}:\n{text}");
        assert_eq!(one.delivery(), full.delivery(), "title {i}");
        assert_eq!(one.sha256, full.sha256);
        assert_eq!(one.base_dir, full.base_dir);
        assert_eq!(one.text, text);
        // Every other section is the job's.
        let mut rest = full.spec.clone();
        rest.titles = vec![want.clone()];
        assert_eq!(one.spec, rest, "title {i}");
    }
    assert_eq!(split.title_text(3), None);
}

#[test]
fn each_scoped_title_loads_as_that_title_of_the_job() {
    check_scoped_equal_full(JOB);
}

#[test]
fn titles_written_as_an_inline_array_are_split_too() {
    check_scoped_equal_full(INLINE_JOB);
}

#[test]
fn the_scoped_text_keeps_the_job_hash_not_its_own() {
    let split = split_titles(JOB).expect("split");
    let text = split.title_text(0).expect("title 0");
    let job = spec_hash(JOB);
    let one = load_scoped(text.clone(), Path::new("."), &job).expect("loads");
    assert_eq!(one.sha256, job);
    assert_ne!(spec_hash(&text), job);
}

#[test]
fn checks_across_titles_are_left_to_the_job() {
    // On its own, title 2 (stereo) would fail two checks that look across
    // titles: the fold-down has no 5.1 title and `vox_hp` is on no stem.
    let split = split_titles(JOB).expect("split");
    let text = split.title_text(2).expect("title 2");
    assert!(deliverables_spec::parse_and_validate(&text, None).is_err());
    load_scoped(text, Path::new("."), &spec_hash(JOB)).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_text_with_other_than_one_title_is_not_a_scoped_title() {
    let e =
        load_scoped(JOB.to_string(), Path::new("."), &spec_hash(JOB)).expect_err("three titles");
    assert!(e.to_string().contains("holds 3 titles"), "{e}");
}

#[test]
fn what_is_not_a_list_of_tables_is_refused() {
    let e = split_titles("schema_version = 1\ntitles = 3\n").expect_err("not a list");
    assert!(
        e.contains("`titles` must be a list of tables; found: integer"),
        "{e}"
    );
    let e = split_titles("schema_version = 1\ntitles = [1]\n").expect_err("not tables");
    assert!(
        e.contains("titles[0] must be a table; found: integer"),
        "{e}"
    );
    assert!(split_titles("schema_version = ").is_err());
}

#[test]
fn scoped_text_size_does_not_grow_with_the_number_of_titles() {
    let mut job = String::from(
        "schema_version = 1\n\n[delivery]\nsample_rate = 48000\n\n[graph.master]\nchain = [{ node = \"loudness\" }]\n\n[variants.full]\n[variants.stems]\n",
    );
    for i in 0..1000 {
        job.push_str(&format!(
            "\n[[titles]]\nname = \"Title {i}\"\nstems = [\n  {{ file = \"t{i}/drums.wav\", role = \"drums\" }},\n  {{ file = \"t{i}/vox.wav\", role = \"vocals\" }},\n]\n"
        ));
    }
    assert!(job.len() > 100 * 1024);
    let full = load_text(job.clone(), Path::new("."), None).unwrap_or_else(|e| panic!("{e}"));
    let split = split_titles(&job).expect("split");
    assert_eq!(split.titles.len(), 1000);
    for i in 0..1000 {
        let text = split.title_text(i).expect("text");
        assert!(text.len() < 16 * 1024, "title {i}: {} bytes", text.len());
    }
    let last = load_scoped(
        split.title_text(999).expect("text"),
        Path::new("."),
        &full.sha256,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(last.spec.titles[0], full.spec.titles[999]);
}
