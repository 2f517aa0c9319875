//! Human-readable views of a compliance manifest: a self-contained HTML
//! report (tables, verdicts, inline SVG loudness plots) and a CSV export.
//!
//! Pure functions of the [`Manifest`](deliverables_spec::manifest::Manifest):
//! no I/O, no clock, no randomness, no hash-map iteration, so the same
//! manifest always gives the same bytes.

mod csv;
mod html;
mod svg;

pub use csv::{csv_header, csv_rows, manifest_csv};
pub use html::{PageEntry, report_html, report_index_html, report_page_html};

/// File name of the HTML report, next to `manifest.json`.
pub const REPORT_FILE: &str = "report.html";
/// File name of the CSV export, next to `manifest.json`.
pub const CSV_FILE: &str = "manifest.csv";

/// A synthetic manifest exercising every case the report draws.
#[cfg(test)]
pub(crate) mod testdata {
    use deliverables_spec::compliance::{
        DIALOGUE_METHOD, Measurement, Outcome, Over, Verdict, judge,
    };
    use deliverables_spec::delivery::Delivery;
    use deliverables_spec::manifest::{
        FileRecord, MANIFEST_VERSION, Manifest, OutputEntry, Summary, TitleEntry, Tool,
    };
    use deliverables_spec::model::{DeliverySpec, LevelPolicy, Role};
    use serde_json::json;

    /// Records built from JSON, so optional fields added to the manifest
    /// later take their defaults here too.
    fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("fixture matches the manifest types")
    }

    fn file(path: &str, seconds: f64) -> FileRecord {
        from_json(json!({
            "path": path,
            "sha256": format!("{:064x}", path.len() * 7919),
            "audio_sha256": format!("{:064x}", path.len() * 104_729),
            "bytes": (seconds * 48_000.0 * 6.0) as u64 + 68,
            "format": "wav",
            "codec": "pcm_s24le",
            "sample_rate": 48_000,
            "bit_depth": 24,
            "sample_format": "int",
            "channels": 2,
            "frames": (seconds * 48_000.0) as u64,
            "duration_s": seconds,
        }))
    }

    /// A short-term curve: `null` for the first 2 s, then a deterministic
    /// wobble around `centre`, with `gap` seconds of silence (nulls).
    fn curve(
        seconds: usize,
        centre: f64,
        swing: f64,
        gap: Option<(usize, usize)>,
    ) -> Vec<Option<f64>> {
        (0..seconds)
            .map(|i| {
                if i < 2 || gap.is_some_and(|(a, b)| (a..b).contains(&i)) {
                    return None;
                }
                let x = i as f64;
                let v = centre + swing * (0.6 * (x * 0.05).sin() + 0.4 * (x * 0.37).sin());
                Some((v * 1000.0).round() / 1000.0)
            })
            .collect()
    }

    fn measured(integrated: f64, tp: f64, st: Vec<Option<f64>>) -> Measurement {
        let max_st = st
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        // Momentary a little above short-term; true peak follows loudness,
        // reaching `tp` at the loudest second.
        let momentary: Vec<Option<f64>> = st.iter().map(|v| v.map(|v| v + 1.4)).collect();
        let true_peak: Vec<Option<f64>> = st
            .iter()
            .map(|v| v.map(|v| ((tp + (v - max_st)) * 100.0).round() / 100.0))
            .collect();
        // Overs of the -1 dBTP ceiling where the peaks pass it.
        let overs: Vec<Over> = true_peak
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some_and(|v| v > -1.0))
            .map(|(i, v)| Over {
                start_s: i as f64 + 0.25,
                end_s: i as f64 + 0.3,
                timecode: deliverables_spec::timecode::timecode(
                    3600 * 48_000 + (i as u64) * 48_000 + 12_000,
                    48_000,
                    24.0,
                ),
                peak_dbtp: v.unwrap_or(0.0),
            })
            .collect();
        Measurement {
            integrated_lufs: Some(integrated),
            loudness_range_lu: Some(6.2),
            true_peak_dbtp: Some(tp),
            sample_peak_dbfs: Some(tp - 0.31),
            max_momentary_lufs: Some(max_st + 1.4),
            max_short_term_lufs: max_st.is_finite().then_some(max_st),
            true_peak_method: "polyphase FIR oversampling".into(),
            short_term_lufs: st,
            momentary_lufs: momentary,
            true_peak_dbtp_per_s: true_peak,
            overs_total: overs.len() as u64,
            overs,
            overs_ceiling_dbtp: Some(-1.0),
            frame_rate: Some(24.0),
            dialogue: None,
            notes: vec![],
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn output(
        d: &Delivery,
        variant: &str,
        role: Option<Role>,
        policy: LevelPolicy,
        file: Option<FileRecord>,
        measurement: Option<Measurement>,
        full: Option<f64>,
        failure: &str,
    ) -> OutputEntry {
        let verdict = match &measurement {
            Some(m) => judge(policy, d, m),
            None => Verdict::failed("the output must be rendered", failure),
        };
        let offset = measurement
            .as_ref()
            .and_then(|m| m.integrated_lufs)
            .zip(full)
            .map(|(x, f)| ((x - f) * 1000.0).round() / 1000.0);
        let rendered = file.is_some();
        from_json(json!({
            "variant": variant,
            "description": format!("{variant} <mix> & more"),
            "role": role,
            "file": file,
            "level_policy": policy,
            "gain_db": rendered.then_some(-5.021),
            "ceiling_trim_db": rendered.then_some(0.0),
            "mode": if role.is_some() { "linked_stem" } else { "mix" },
            "target_lufs": d.target_lufs,
            "tolerance_lu": d.tolerance_lu,
            "true_peak_max_dbtp": d.true_peak_max_dbtp,
            "measurement": measurement,
            "offset_from_full_lu": offset,
            "verdict": verdict,
        }))
    }

    pub(crate) fn sample() -> Manifest {
        let d = Delivery::resolve(&DeliverySpec {
            profile: Some("ebu-r128-s1".into()),
            ..Default::default()
        });
        let name = "Night <Drive> & \"Day\"";
        let full_i = -23.018;

        let mut full = measured(full_i, -1.62, curve(600, -23.5, 4.0, Some((200, 215))));
        full.dialogue = Some(from_json(json!({
            "integrated_lufs": -24.1,
            "share": 0.38,
            "roles": ["dialogue"],
            "method": DIALOGUE_METHOD,
        })));
        let tv = measured(-22.3, -1.4, curve(45, -22.0, 5.0, None));
        let instrumental = measured(-31.4, -4.2, curve(600, -31.0, 6.0, Some((200, 215))));
        let stem = measured(-26.0, -0.6, curve(600, -27.0, 9.0, Some((120, 300))));
        let silent = Measurement {
            true_peak_method: "polyphase FIR oversampling".into(),
            short_term_lufs: vec![None; 12],
            notes: vec!["digital silence: every sample is zero".into()],
            ..Default::default()
        };

        let outputs = vec![
            output(
                &d,
                "full",
                None,
                LevelPolicy::Normalized,
                Some(file("Night-Drive_full_48k24.wav", 600.0)),
                Some(full),
                Some(full_i),
                "",
            ),
            output(
                &d,
                "tv",
                None,
                LevelPolicy::Normalized,
                Some(file("Night-Drive_tv_48k24.wav", 45.0)),
                Some(tv),
                Some(full_i),
                "",
            ),
            output(
                &d,
                "instrumental",
                None,
                LevelPolicy::Matched,
                Some(file("Night-Drive_instrumental_48k24.wav", 600.0)),
                Some(instrumental),
                Some(full_i),
                "",
            ),
            output(
                &d,
                "stems",
                Some(Role::Dialogue),
                LevelPolicy::Matched,
                Some(file("Night-Drive_stem-dialogue_48k24.wav", 600.0)),
                Some(stem),
                Some(full_i),
                "",
            ),
            output(
                &d,
                "acappella",
                None,
                LevelPolicy::Normalized,
                Some(file("Night-Drive_acappella_48k24.wav", 12.0)),
                Some(silent),
                Some(full_i),
                "",
            ),
            output(
                &d,
                "radio",
                None,
                LevelPolicy::Normalized,
                None,
                None,
                None,
                "render failed: disk full while writing Night-Drive_radio_48k24.wav",
            ),
        ];
        let first: TitleEntry = from_json(json!({
            "name": name,
            "status": "rendered",
            "inputs": [
                {
                    "path": "stems/night <drive>_dialogue.wav",
                    "kind": "stem",
                    "role": "dialogue",
                    "sha256": "ab".repeat(32),
                    "bytes": 172_800_068u64,
                    "container": "wav",
                    "codec": "pcm_s24le",
                    "sample_rate": 48_000,
                    "channels": 2,
                    "bits_per_sample": 24,
                    "frames": 28_800_000u64,
                },
                {
                    "path": "stems/night-drive_music.flac",
                    "kind": "stem",
                    "role": "music",
                    "sha256": "cd".repeat(32),
                    "bytes": 98_000_000u64,
                    "container": "flac",
                    "codec": "flac",
                    "sample_rate": 44_100,
                    "channels": 2,
                    "bits_per_sample": 16,
                    "frames": 26_460_000u64,
                },
            ],
            "level": {
                "full_mix_lufs_at_unity": -17.997,
                "master_gain_db": -5.021,
                "clip_safety_db": 0.0,
                "passes": 2,
                "mix_true_peak_dbtp": -1.55,
                "ceiling_trim_db": 0.0,
                "loudness_target": d.loudness_target(Some(0.38)),
                "dialogue_share": 0.38,
            },
            "outputs": outputs,
            "skipped": [{
                "title": name,
                "variant": "karaoke",
                "reason": "no vocal stems: the variant would be silent",
            }],
            "notes": [
                "stem `music` resampled from 44.1 kHz to 48 kHz",
                "stem `fx` padded with 0.50 s of silence <to the end>",
            ],
        }));
        let second: TitleEntry = from_json(json!({
            "name": "B-side, \"live\"",
            "status": "failed",
            "error": "analysis failed: stem <dialog.wav> is unreadable",
            "inputs": [],
            "outputs": [output(
                &d,
                "full",
                None,
                LevelPolicy::Normalized,
                None,
                None,
                None,
                "render skipped: not run,\na task it depends on failed",
            )],
        }));
        let titles = vec![first, second];
        let all: Vec<&OutputEntry> = titles.iter().flat_map(|t| &t.outputs).collect();
        let passed = all
            .iter()
            .filter(|o| o.verdict.verdict == Outcome::Pass)
            .count();
        let summary = Summary {
            titles: titles.len(),
            titles_failed: titles.iter().filter(|t| t.status != "rendered").count(),
            outputs: all.len(),
            passed,
            failed: all.len() - passed,
            all_pass: false,
            ..Default::default()
        };
        Manifest {
            manifest_version: MANIFEST_VERSION,
            tool: Tool {
                name: "stemforge".into(),
                version: "0.1.0".into(),
            },
            job_id: "fedc28b830b8-1795485588046-0".into(),
            spec_sha256: "fedc28b830b87b949bb307f4c2bf2baf445ae19c45d5f38a44a5790818f12bb7".into(),
            submitted: "2026-11-24T01:59:48Z".into(),
            delivery: d,
            summary,
            titles,
        }
    }

    #[test]
    fn sample_covers_the_cases() {
        let m = sample();
        let outs: Vec<&OutputEntry> = m.titles.iter().flat_map(|t| &t.outputs).collect();
        let verdicts: Vec<Outcome> = outs.iter().map(|o| o.verdict.verdict).collect();
        // full pass, tv fail, instrumental pass (reported), dialogue stem
        // fail (true peak), acappella fail (silent), radio and B-side unrendered.
        use Outcome::{Fail, Pass};
        assert_eq!(verdicts, [Pass, Fail, Pass, Fail, Fail, Fail, Fail]);
        assert_eq!(
            outs[1].verdict.reasons.len(),
            2,
            "{:?}",
            outs[1].verdict.reasons
        );
    }
}
