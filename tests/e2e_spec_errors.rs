//! Spec mistakes: the binary names the field and the fix, exits 2, never panics.

use stemforge_testkit::*;

const SPEC: &str = r#"schema_version = 1
[delivery]
bit_depth = 24
[variants.full]
[[titles]]
name = "t"
stems = [{ file = "a.wav", role = "drums" }, { file = "b.wav", role = "vocals" }]
"#;

/// Two tiny valid stems, `a.wav` and `b.wav`, so only the planted mistake is wrong.
fn write_two_stems(dir: &std::path::Path) {
    // Two different stems (identical ones are a preflight error).
    for (k, f) in [(1, "a.wav"), (2, "b.wav")] {
        let w = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut wr = hound::WavWriter::create(dir.join(f), w).expect("wav");
        for i in 0..48_000 {
            wr.write_sample((i % (100 * k)) * 1000).expect("sample");
            wr.write_sample(0i32).expect("sample");
        }
        wr.finalize().expect("finalize");
    }
}

fn check(name: &str, spec: &str, expect: &[&str]) {
    let dir = scratch(&format!("spec-{name}"));
    write_two_stems(&dir);
    let p = dir.join("job.toml");
    std::fs::write(&p, spec).expect("write");
    let o = stemforge(&["render", p.to_str().expect("utf-8")]);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(2), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    for e in expect {
        assert!(all.contains(e), "expected `{e}` in:\n{all}");
    }
}

#[test]
fn unknown_key() {
    check(
        "key",
        &SPEC.replace("bit_depth = 24", "bit_depth = 24\ntarget_lufts = -23"),
        &[
            "job.toml",
            "delivery.target_lufts",
            "unknown key `target_lufts`",
            "did you mean `target_lufs`?",
        ],
    );
}

#[test]
fn misspelt_role() {
    check(
        "role",
        &SPEC.replace(r#"role = "vocals""#, r#"role = "vocal""#),
        &[
            "titles[0].stems[1].role",
            "unknown value `vocal`",
            "did you mean `vocals`?",
        ],
    );
}

#[test]
fn missing_stem_file() {
    check(
        "missing",
        &SPEC.replace("b.wav", "vox_final.wav"),
        &[
            "titles[0].stems[1].file",
            "cannot read `vox_final.wav` (no such file)",
            "relative to the spec file's folder",
        ],
    );
}

#[test]
fn negative_tolerance() {
    check(
        "tol",
        &SPEC.replace("bit_depth = 24", "bit_depth = 24\ntolerance_lu = -1"),
        &["delivery.tolerance_lu: must be zero or positive, got -1"],
    );
}

#[test]
fn unsupported_bit_depth() {
    check(
        "bits",
        &SPEC.replace("bit_depth = 24", "bit_depth = 12"),
        &[
            "delivery.bit_depth",
            "bit depth 12 is not supported; use 16 or 24 (PCM) or 32 (float)",
        ],
    );
}

#[test]
fn misspelt_variant_target_and_profile() {
    check(
        "multi",
        &SPEC
            .replace(
                "[variants.full]",
                "[variants.full]\n[variants.quiet]\ngains = { vocal = -3 }",
            )
            .replace("bit_depth = 24", "bit_depth = 24\nprofile = \"spotfy\""),
        &[
            "2 problems",
            "delivery.profile: unknown profile `spotfy` (did you mean `spotify`?)",
            "variants.quiet.gains.vocal",
            "did you mean `vocals`?",
        ],
    );
}

/// A filter above the stems' Nyquist frequency is caught when the graph is
/// built (the rate is known only then): the title fails with the node named.
#[test]
fn filter_above_nyquist_names_the_node() {
    let dir = scratch("nyquist");
    write_two_stems(&dir);
    let spec = SPEC.replace("[variants.full]", "[graph.buses.band]\nroles = [\"drums\"]\nchain = [{ node = \"gain\", db = 0.0 }, { node = \"high_pass\", freq_hz = 30000.0 }]\n\n[variants.full]");
    std::fs::write(dir.join("job.toml"), spec).expect("write");
    let o = stemforge(&["render", dir.join("job.toml").to_str().expect("utf-8")]);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    let m = read_json(&dir.join("deliverables/manifest.json"));
    let err = m["titles"][0]["error"].as_str().expect("title error");
    assert!(
        err.contains("graph.buses.band.chain[1] (high_pass)"),
        "{err}"
    );
    assert!(err.contains("Nyquist"), "{err}");
}

#[test]
fn out_of_range_node_parameters() {
    check(
        "params",
        &SPEC.replace("[variants.full]", "[graph.master]\nchain = [{ node = \"compressor\", threshold_db = -20.0, ratio = 0.5 }, { node = \"limiter\", ceiling_dbtp = 1.0 }, { node = \"peak\", freq_hz = 1000.0, gain_db = 3.0, q = 0.0 }]\n\n[variants.full]"),
        &["3 problems", "graph.master.chain[0].ratio: 0.5 :1 is out of range", "graph.master.chain[1].ceiling_dbtp: 1 dBTP is out of range", "a ceiling above 0 dBTP cannot be delivered", "graph.master.chain[2].q"],
    );
}

#[test]
fn profile_mistakes_name_the_field_and_the_fix() {
    // A custom profile misspelt in `delivery.profile`: the hint offers it.
    check(
        "custom-profile",
        &SPEC.replace(
            "[delivery]\nbit_depth = 24",
            "[profiles.broadcaster-x]\nbase = \"atsc-a85\"\n\n[delivery]\nbit_depth = 24\nprofile = \"broadcaster-y\"",
        ),
        &[
            "delivery.profile",
            "unknown profile `broadcaster-y`",
            "did you mean `broadcaster-x`?",
        ],
    );
    check(
        "profile-base",
        &SPEC.replace(
            "[delivery]",
            "[profiles.ebu-r128]\nbase = \"netflx\"\n\n[delivery]",
        ),
        &[
            "profiles.ebu-r128",
            "has the name of a built-in profile",
            "profiles.ebu-r128.base",
            "did you mean `netflix`?",
        ],
    );
    check(
        "limits",
        &SPEC.replace(
            "bit_depth = 24",
            "bit_depth = 24\nmax_short_term_lufs = 5.0\nloudness_range_min_lu = 20.0\nloudness_range_max_lu = 4.0\norigination = \"24/11/2026 10:00\"\n\n[delivery.dialogue]\nmin_share = 15.0",
        ),
        &[
            "delivery.max_short_term_lufs",
            "delivery.loudness_range_min_lu",
            "swap them",
            "delivery.origination",
            "2026-11-24T09:30:00Z",
            "delivery.dialogue.min_share",
            "0.15 is 15 %",
        ],
    );
    check(
        "dialogue-key",
        &SPEC.replace(
            "bit_depth = 24",
            "bit_depth = 24\n\n[delivery.dialogue]\nrelative_gate = 15.0",
        ),
        &[
            "delivery.dialogue.relative_gate",
            "did you mean `relative_gate_lu`?",
        ],
    );
}
