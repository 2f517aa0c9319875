//! What a render would refuse is refused by validation, at the field it was
//! written at: filters at or above a pack's Nyquist frequency, and output
//! file names longer than one path component may be.

use deliverables_spec::naming::MAX_OUTPUT_NAME_BYTES;
use deliverables_spec::{SpecErrors, parse_and_validate};

fn spec(delivery: &str, extra: &str, stem_chain: &str, title: &str) -> String {
    format!(
        r#"
schema_version = 1

[delivery]
{delivery}

[graph.master]
chain = [{{ node = "loudness" }}]
{extra}
[variants.full]
[variants.stems]

[[titles]]
name = "{title}"
stems = [
  {{ file = "drums.wav", role = "drums" }},
  {{ file = "vox.wav", role = "vocals", chain = [{{ node = "gain", db = 0.0 }}, {{ node = "high_pass", freq_hz = 80.0 }}, {stem_chain}] }},
]
"#
    )
}

fn errors(text: &str) -> SpecErrors {
    match parse_and_validate(text, None) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

fn one_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.errors.len(), 1, "{e}");
    e.errors[0].to_string()
}

const LOW_PASS_30K: &str = r#"{ node = "low_pass", freq_hz = 30000.0 }"#;

#[test]
fn low_pass_above_nyquist_of_a_48k_delivery_is_refused_at_its_field() {
    let e = one_error(&spec(
        "sample_rate = 48000",
        "",
        LOW_PASS_30K,
        "Night Drive",
    ));
    assert_eq!(
        e,
        "titles[0].stems[1].chain[2].freq_hz: low_pass at 30000 Hz is at or above the Nyquist \
         frequency (24000 Hz) of the 48000 Hz pack (use a frequency below 24000 Hz)"
    );
}

#[test]
fn low_pass_below_nyquist_passes() {
    let ok = spec(
        "sample_rate = 48000",
        "",
        r#"{ node = "low_pass", freq_hz = 20000.0 }"#,
        "Night Drive",
    );
    parse_and_validate(&ok, None).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn at_nyquist_is_refused_as_the_dsp_refuses_it() {
    let e = one_error(&spec(
        "sample_rate = 48000",
        "",
        r#"{ node = "peak", freq_hz = 24000.0, gain_db = 3.0 }"#,
        "Night Drive",
    ));
    assert!(e.contains("peak at 24000 Hz is at or above"), "{e}");
}

#[test]
fn the_lowest_pack_rate_decides() {
    let e = one_error(&spec(
        "sample_rates = [96000, 44100, 48000]",
        "",
        r#"{ node = "high_shelf", freq_hz = 23000.0, gain_db = 2.0 }"#,
        "Night Drive",
    ));
    assert!(
        e.starts_with("titles[0].stems[1].chain[2].freq_hz: high_shelf at 23000 Hz")
            && e.contains("Nyquist frequency (22050 Hz) of the 44100 Hz pack"),
        "{e}"
    );
    // 23 kHz is below every Nyquist frequency of 48 and 96 kHz packs.
    let ok = spec(
        "sample_rates = [96000, 48000]",
        "",
        r#"{ node = "high_shelf", freq_hz = 23000.0, gain_db = 2.0 }"#,
        "Night Drive",
    );
    parse_and_validate(&ok, None).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn every_place_a_node_is_written_is_checked() {
    let extra = r#"
[graph.roles.drums]
chain = [{ node = "notch", freq_hz = 25000.0 }]

[graph.buses.band]
roles = ["drums"]
chain = [{ node = "low_shelf", freq_hz = 22050.0, gain_db = 1.0 }]

[variants.bright]
insert = [{ target = "master", nodes = [{ node = "peak", freq_hz = 40000.0, gain_db = 1.0 }] }]
replace = [{ id = "vox_hp", with = { node = "high_pass", freq_hz = 30000.0 } }]
"#;
    let text = spec(
        "sample_rate = 44100",
        extra,
        r#"{ node = "gain", db = 0.0, id = "vox_hp" }"#,
        "Night Drive",
    );
    let e = errors(&text);
    let fields: Vec<&str> = e.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "graph.roles.drums.chain[0].freq_hz",
            "graph.buses.band.chain[0].freq_hz",
            "variants.bright.insert[0].nodes[0].freq_hz",
            "variants.bright.replace[0].with[0].freq_hz",
        ],
        "{e}"
    );
    assert!(
        e.errors.iter().all(|e| e.message.contains("44100 Hz pack")),
        "{e}"
    );
}

#[test]
fn without_a_delivery_rate_the_stems_rate_decides_at_render() {
    // The working rate is then the stems' own, unknown until they are read.
    let text = spec("", "", LOW_PASS_30K, "Night Drive");
    parse_and_validate(&text, None).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_10000_character_title_is_refused_at_its_name() {
    let name = "a".repeat(10_000);
    let e = one_error(&spec(
        "sample_rate = 48000",
        "",
        r#"{ node = "gain", db = 0.0 }"#,
        &name,
    ));
    assert!(e.starts_with("titles[0].name: `aaaa"), "{e}");
    // The longest of its names is its `vocals` stem's:
    // `{title}_stem-vocals_48k24.wav`.
    let longest = 10_000 + "_stem-vocals_48k24.wav".len();
    assert!(
        e.contains(&format!(
            "a file name of {longest} bytes, over the limit of {MAX_OUTPUT_NAME_BYTES} bytes"
        )),
        "{e}"
    );
    assert!(
        e.contains("the `stems` stem of `vocals` at 48000 Hz"),
        "{e}"
    );
}

#[test]
fn the_longest_title_that_fits_passes_and_one_more_letter_does_not() {
    // `{title}_stem-vocals_48k24.wav` is the longest name of this title.
    let room = MAX_OUTPUT_NAME_BYTES - "_stem-vocals_48k24.wav".len();
    let ok = spec(
        "sample_rate = 48000",
        "",
        r#"{ node = "gain", db = 0.0 }"#,
        &"a".repeat(room),
    );
    parse_and_validate(&ok, None).unwrap_or_else(|e| panic!("{e}"));
    let long = spec(
        "sample_rate = 48000",
        "",
        r#"{ node = "gain", db = 0.0 }"#,
        &"a".repeat(room + 1),
    );
    let e = one_error(&long);
    assert!(
        e.contains("shorten the name (the file name is 1 bytes over"),
        "{e}"
    );
}

#[test]
fn at_the_stems_rate_names_are_measured_with_the_longest_rate_label() {
    // `767.999` is two bytes longer than `48`.
    let room = MAX_OUTPUT_NAME_BYTES - "_stem-vocals_767.999k24.wav".len();
    let ok = spec("", "", r#"{ node = "gain", db = 0.0 }"#, &"a".repeat(room));
    parse_and_validate(&ok, None).unwrap_or_else(|e| panic!("{e}"));
    let e = one_error(&spec(
        "",
        "",
        r#"{ node = "gain", db = 0.0 }"#,
        &"a".repeat(room + 1),
    ));
    assert!(
        e.contains("at the stems' rate (counted as 767.999 kHz"),
        "{e}"
    );
}

#[test]
fn a_long_variant_name_is_reported_once_on_the_variant() {
    // A variant that changes nothing is not rendered, so it gets a change.
    let long = "v".repeat(300);
    let text = spec("sample_rate = 48000", &format!("[variants.{long}]\ngains = {{ drums = -3.0 }}\n"), r#"{ node = "gain", db = 0.0 }"#, "Night Drive")
        .replace("[[titles]]", "[[titles]]\nname = \"Second\"\nstems = [{ file = \"x.wav\", role = \"drums\" }]\n\n[[titles]]");
    let e = one_error(&text);
    assert!(
        e.starts_with(&format!("variants.{long}: gives the `{long}` mix")),
        "{e}"
    );
    assert!(e.contains("even for a one-letter title"), "{e}");
}

#[test]
fn a_long_template_is_reported_on_the_template() {
    let t = format!("{{title}}_{{variant}}_{}.wav", "n".repeat(300));
    let e = one_error(&spec(
        &format!("naming = \"{t}\""),
        "",
        r#"{ node = "gain", db = 0.0 }"#,
        "Night Drive",
    ));
    assert!(
        e.starts_with("delivery.naming: gives the `full` mix"),
        "{e}"
    );
}

#[test]
fn a_long_folder_name_in_output_dir_is_refused() {
    let e = one_error(&spec(
        &format!("output_dir = \"out/{}\"", "d".repeat(256)),
        "",
        r#"{ node = "gain", db = 0.0 }"#,
        "Night Drive",
    ));
    assert!(
        e.starts_with("delivery.output_dir: has a folder name of 256 bytes"),
        "{e}"
    );
}
