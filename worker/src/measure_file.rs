//! Measures any audio file the decoder reads (WAV/BWF, FLAC, AIFF; mono,
//! stereo, 5.0, 5.1, 7.1 with BS.1770 channel weights, LFE excluded):
//! the same figures as the manifest, optionally dialogue-gated by a stem.

use std::path::{Path, PathBuf};

use deliverables_spec::Role;
use deliverables_spec::compliance::Measurement;
use deliverables_spec::delivery::DialogueGate;
use deliverables_spec::model::Layout;
use serde::Serialize;

use crate::decode::{DecodeError, StemReader};
use crate::dialogue::{DialogueActivity, DialogueError};
use crate::dsp::Block;
use crate::meter::{Meter, MeterError, MeterKind, Timeline, layout_name};
use crate::source::BLOCK_FRAMES;

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Meter(#[from] MeterError),
    #[error("dialogue stem: {0}")]
    Dialogue(#[from] DialogueError),
    /// Float samples that are not audio: no loudness of such a file means
    /// anything (one NaN silences the meter, one 1e30 reads +592 LUFS).
    #[error(
        "'{}' holds {count} sample(s) that are not audio (NaN, infinite or beyond +60 dBFS), first at frame {first_frame} ({:.3} s); it cannot be measured. Re-export it: a plug-in or converter produced invalid floating-point output",
        .path.display(),
        *.first_frame as f64 / f64::from((*.sample_rate).max(1))
    )]
    InvalidSamples {
        path: PathBuf,
        count: u64,
        first_frame: u64,
        sample_rate: u32,
    },
}

/// A file and what was measured on it.
#[derive(Debug, Clone, Serialize)]
pub struct FileMeasurement {
    /// Not serialised: whoever reports a measurement names the file.
    #[serde(skip_serializing)]
    pub path: PathBuf,
    pub container: String,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: usize,
    /// The channel layout the BS.1770 weights assume.
    pub layout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits_per_sample: Option<u32>,
    pub frames: u64,
    pub duration_s: f64,
    pub measurement: Measurement,
}

/// Where dialogue is, from a dialogue stem file, for gating a measurement.
pub fn dialogue_from_stem(
    stem: &Path,
    gate: &DialogueGate,
) -> Result<DialogueActivity, MeasureError> {
    // A 5.1 dialogue stem is measured as 5.1; mono or stereo as stereo
    // (mono at unity in both channels, as a stereo mix plays it).
    let layout = StemReader::open(stem)
        .map(|r| Layout::implied_by(r.info().channels))
        .unwrap_or_default();
    let found = crate::dialogue::find(
        &[stem.to_path_buf()],
        &[Role::Dialogue],
        None,
        layout,
        None,
        gate,
        || false,
    )?;
    Ok(found.unwrap_or(DialogueActivity {
        roles: vec![Role::Dialogue],
        runs: vec![],
        loudest_block_lufs: None,
    }))
}

/// How overs are looked for: the timecode grid and the ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverSearch {
    pub frame_rate: f64,
    /// `None`: no overs are looked for.
    pub ceiling_dbtp: Option<f64>,
}

impl Default for OverSearch {
    fn default() -> Self {
        OverSearch {
            frame_rate: deliverables_spec::delivery::DEFAULT_FRAME_RATE,
            ceiling_dbtp: None,
        }
    }
}

/// Decodes `path` and measures it in one streaming pass. Overs are timed on
/// the file's own timeline (its BWF `TimeReference`, 0 without one).
pub fn measure_file(
    path: &Path,
    dialogue: Option<&DialogueActivity>,
    overs: OverSearch,
) -> Result<FileMeasurement, MeasureError> {
    let mut reader = StemReader::open(path)?;
    let info = reader.info().clone();
    let mut meter = if dialogue.is_some() {
        Meter::with_blocks(info.channels, info.sample_rate, MeterKind::Full)?
    } else {
        Meter::new(info.channels, info.sample_rate, MeterKind::Full)?
    };
    meter.set_timeline(Timeline {
        frame_rate: overs.frame_rate,
        ceiling_dbtp: overs.ceiling_dbtp,
        time_reference: crate::bwf::bext_time_reference(path)
            .ok()
            .flatten()
            .unwrap_or(0),
    });
    let mut block = Block::new(info.channels, BLOCK_FRAMES);
    let (mut invalid, mut first_invalid) = (0u64, None);
    loop {
        let at = reader.position();
        let n = reader.read(block.raw_mut(), BLOCK_FRAMES)?;
        if n == 0 {
            break;
        }
        block.set_frames(n);
        for c in 0..info.channels {
            for (i, v) in block.channel_mut(c)[..n].iter_mut().enumerate() {
                if !crate::decode::is_audio_sample(*v) {
                    // Counted and kept out of the meter; the file is refused below.
                    *v = 0.0;
                    invalid += 1;
                    let frame = at + i as u64;
                    first_invalid = Some(first_invalid.map_or(frame, |f: u64| f.min(frame)));
                }
            }
        }
        meter.add(&block)?;
    }
    if let Some(first_frame) = first_invalid {
        return Err(MeasureError::InvalidSamples {
            path: path.to_path_buf(),
            count: invalid,
            first_frame,
            sample_rate: info.sample_rate,
        });
    }
    let frames = reader.position();
    let mut m = meter.finish();
    m.dialogue = dialogue.map(|a| a.measure(meter.blocks()));
    Ok(FileMeasurement {
        path: path.to_path_buf(),
        container: info.container.clone(),
        codec: info.codec.clone(),
        sample_rate: info.sample_rate,
        channels: info.channels,
        layout: layout_name(info.channels).to_string(),
        bits_per_sample: info.bits_per_sample,
        frames,
        duration_s: frames as f64 / f64::from(info.sample_rate.max(1)),
        measurement: m,
    })
}
