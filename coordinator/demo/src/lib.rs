//! `stemforge demo`: writes a self-contained session (synthesised stems, a
//! reference mix and a spec) that the README's first command renders. With
//! `--layout 5.1` the same song is laid out as a 5.1 session (5.1, stereo and
//! mono stems, a 5.1 reference) whose pack adds the stereo fold-down.

mod surround;

pub mod synth;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use deliverables_spec::model::Layout;

pub const DEMO_RATE: u32 = 48_000;
pub const DEMO_SECONDS: f64 = 45.0;
pub const SPEC_FILE: &str = "deliverables.toml";
const TITLE_SLUG: &str = "night-drive";

/// 24-bit code for a sample (round half away from zero, clamped).
fn code24(x: f64) -> i32 {
    (x * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32
}

/// Writes planar 24-bit codes (1, 2 or 6 channels; 6 in WAV 5.1 order).
fn write_wav24(path: &Path, channels: &[Vec<i32>]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: DEMO_RATE,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let frames = channels.first().map_or(0, Vec::len);
    for i in 0..frames {
        for c in channels {
            w.write_sample(c[i])?;
        }
    }
    w.finalize()?;
    Ok(())
}

/// Writes the session into `dir` and returns the spec's path.
pub fn write_session(dir: &Path, seconds: f64, layout: Layout) -> Result<PathBuf> {
    let stems_dir = dir.join("stems");
    std::fs::create_dir_all(&stems_dir)
        .with_context(|| format!("cannot create {}", stems_dir.display()))?;
    let stems = synth::synthesize(seconds, DEMO_RATE);
    let frames = stems.first().map_or(0, |s| s.channels[0].len());
    // The reference mix is the exact unity sum of the 24-bit stems, each
    // routed as the mix routes it (in 5.1: mono to the centre, stereo to the
    // front pair).
    let mut mix = vec![vec![0i64; frames]; layout.channels()];
    let mut entries = String::new();
    for s in &stems {
        let printed: Vec<Vec<f64>> = match layout {
            Layout::Stereo => s.channels.to_vec(),
            Layout::Surround51 => surround::print(s, DEMO_RATE),
        };
        let codes: Vec<Vec<i32>> = printed
            .iter()
            .map(|c| c.iter().map(|&x| code24(x)).collect())
            .collect();
        for (out, m) in mix.iter_mut().enumerate() {
            let Some(src) = layout.source_channel(codes.len(), out) else {
                continue;
            };
            for (a, b) in m.iter_mut().zip(&codes[src]) {
                *a += i64::from(*b);
            }
        }
        let file = format!("stems/{TITLE_SLUG}_{}.wav", s.name);
        write_wav24(&dir.join(&file), &codes)?;
        entries.push_str(&format!(
            "  {{ file = \"{file}\", role = \"{}\" }},\n",
            s.role
        ));
    }
    let mix: Vec<Vec<i32>> = mix
        .into_iter()
        .map(|c| {
            c.into_iter()
                .map(|x| x.clamp(-8_388_608, 8_388_607) as i32)
                .collect()
        })
        .collect();
    let reference = format!("stems/{TITLE_SLUG}_mix.wav");
    write_wav24(&dir.join(&reference), &mix)?;
    let (layout_line, fold_variant, about) = match layout {
        Layout::Stereo => ("", "", "six stereo stems"),
        Layout::Surround51 => (
            "layout = \"5.1\"\n",
            "[variants.fold_down]           # stereo Lo/Ro of the 5.1 full mix (ITU-R BS.775)\n",
            "six stems laid out in 5.1 (5.1, stereo and mono files)",
        ),
    };

    let spec = format!(
        r#"# stemforge demo session: one title, {about} and the reference mix they sum to.
# Render it with `stemforge render {SPEC_FILE}` (the demo command already did).
schema_version = 1

[delivery]
profile = "ebu-r128"          # -23 LUFS +/-0.5 LU, true peak <= -1 dBTP
bit_depth = 24
output_dir = "deliverables"

# A realistic chain: per-stem EQ and compression, a music bus with EQ and
# glue compression, and a master bus with glue compression, the loudness
# stage (the gain that meets the target) and a true-peak limiter.
[graph.roles.drums]
chain = [
  {{ node = "high_pass", freq_hz = 30.0, slope_db_oct = 24 }},
  {{ node = "compressor", threshold_db = -20.0, ratio = 3.0, attack_ms = 5.0, release_ms = 120.0, makeup_db = 2.0 }},
]

[graph.roles.bass]
chain = [
  {{ node = "high_pass", freq_hz = 35.0 }},
  {{ node = "compressor", threshold_db = -22.0, ratio = 4.0, attack_ms = 10.0, release_ms = 150.0, makeup_db = 3.0 }},
]

[graph.roles.keys]
chain = [
  {{ node = "high_pass", freq_hz = 120.0 }},
  {{ node = "peak", freq_hz = 400.0, gain_db = -2.0, q = 1.0 }},
]

[graph.roles.vocals]
chain = [
  {{ node = "high_pass", freq_hz = 90.0, slope_db_oct = 24 }},
  {{ node = "compressor", threshold_db = -24.0, ratio = 3.0, knee_db = 6.0, attack_ms = 3.0, release_ms = 100.0, makeup_db = 4.0, detection = "rms" }},
  {{ node = "high_shelf", freq_hz = 8000.0, gain_db = 2.0 }},
  {{ node = "gain", db = -2.0, id = "lead_trim" }},
]

[graph.roles.backing_vocals]
chain = [
  {{ node = "high_pass", freq_hz = 150.0 }},
  {{ node = "gain", db = -1.5 }},
]

[graph.buses.music]
roles = ["drums", "bass", "keys", "fx"]
chain = [
  {{ node = "low_shelf", freq_hz = 80.0, gain_db = 1.0 }},
  {{ node = "compressor", threshold_db = -18.0, ratio = 2.0, attack_ms = 20.0, release_ms = 200.0, id = "music_glue" }},
]

[graph.master]
chain = [
  {{ node = "high_pass", freq_hz = 20.0 }},
  {{ node = "compressor", threshold_db = -12.0, ratio = 1.5, knee_db = 6.0, attack_ms = 30.0, release_ms = 250.0, id = "glue" }},
  {{ node = "loudness" }},
  {{ node = "limiter", ceiling_dbtp = -1.1, lookahead_ms = 2.0, release_ms = 80.0 }},
]

[variants.full]
[variants.instrumental]
[variants.acappella]
[variants.tv]
[variants.vocal_up]
amount_db = 2.0
[variants.vocal_down]
amount_db = 2.0
[variants.stems]
{fold_variant}
[[titles]]
name = "Night Drive"
{layout_line}reference = "{reference}"
stems = [
{entries}]
"#
    );
    let spec_path = dir.join(SPEC_FILE);
    std::fs::write(&spec_path, spec)
        .with_context(|| format!("cannot write {}", spec_path.display()))?;
    Ok(spec_path)
}
