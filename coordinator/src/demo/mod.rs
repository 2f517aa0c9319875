//! `stemforge demo`: writes a self-contained session (synthesised stems, a
//! reference mix and a spec) that the README's first command renders.

pub mod synth;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub const DEMO_RATE: u32 = 48_000;
pub const DEMO_SECONDS: f64 = 45.0;
pub const SPEC_FILE: &str = "deliverables.toml";
const TITLE_SLUG: &str = "night-drive";

/// 24-bit code for a sample (round half away from zero, clamped).
fn code24(x: f64) -> i32 {
    (x * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32
}

fn write_wav24(path: &Path, left: &[i32], right: &[i32]) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: DEMO_RATE,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("cannot write {}", path.display()))?;
    for (l, r) in left.iter().zip(right) {
        w.write_sample(*l)?;
        w.write_sample(*r)?;
    }
    w.finalize()?;
    Ok(())
}

/// Writes the session into `dir` and returns the spec's path.
pub fn write_session(dir: &Path, seconds: f64) -> Result<PathBuf> {
    let stems_dir = dir.join("stems");
    std::fs::create_dir_all(&stems_dir)
        .with_context(|| format!("cannot create {}", stems_dir.display()))?;
    let stems = synth::synthesize(seconds, DEMO_RATE);
    let frames = stems.first().map_or(0, |s| s.channels[0].len());
    // The reference mix is the exact unity sum of the 24-bit stems.
    let mut mix = [vec![0i64; frames], vec![0i64; frames]];
    let mut entries = String::new();
    for s in &stems {
        let [l, r] = [&s.channels[0], &s.channels[1]]
            .map(|c| c.iter().map(|&x| code24(x)).collect::<Vec<i32>>());
        for (m, c) in mix.iter_mut().zip([&l, &r]) {
            for (a, b) in m.iter_mut().zip(c) {
                *a += i64::from(*b);
            }
        }
        let file = format!("stems/{TITLE_SLUG}_{}.wav", s.name);
        write_wav24(&dir.join(&file), &l, &r)?;
        entries.push_str(&format!(
            "  {{ file = \"{file}\", role = \"{}\" }},\n",
            s.role
        ));
    }
    let [ml, mr] = mix.map(|c| {
        c.into_iter()
            .map(|x| x.clamp(-8_388_608, 8_388_607) as i32)
            .collect::<Vec<_>>()
    });
    let reference = format!("stems/{TITLE_SLUG}_mix.wav");
    write_wav24(&dir.join(&reference), &ml, &mr)?;

    let spec = format!(
        r#"# stemforge demo session: one title, six stems and the reference mix they sum to.
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

[[titles]]
name = "Night Drive"
reference = "{reference}"
stems = [
{entries}]
"#
    );
    let spec_path = dir.join(SPEC_FILE);
    std::fs::write(&spec_path, spec)
        .with_context(|| format!("cannot write {}", spec_path.display()))?;
    Ok(spec_path)
}
