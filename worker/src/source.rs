//! A title's stems read in lockstep: one block per stem per step, all the same
//! length, shorter stems padded with silence, mono stems spread to stereo.

use std::path::PathBuf;

use crate::decode::{DecodeError, StemReader, StreamInfo};
use crate::dsp::Block;

/// Output channel layout of this build: stereo. (5.1 comes with the film/TV work.)
pub const OUT_CHANNELS: usize = 2;
/// Frames per processing block.
pub const BLOCK_FRAMES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(
        "stems of one title must share a sample rate: {details}; resample them to one rate before delivery (sample-rate conversion is not supported yet)"
    )]
    RateMismatch { details: String },
    #[error(
        "stem '{path}' has {channels} channels; this build mixes mono and stereo stems (5.1 is not supported yet): deliver it as stereo"
    )]
    Channels { path: PathBuf, channels: usize },
    #[error(
        "delivery.sample_rate is {wanted} Hz but the stems are {have} Hz; sample-rate conversion is not supported yet: set delivery.sample_rate = {have} or leave it out"
    )]
    DeliveryRate { wanted: u32, have: u32 },
}

pub struct TitleSource {
    readers: Vec<StemReader>,
    /// Per-stem read buffers at the stem's own channel count.
    raw: Vec<Block>,
    pub sample_rate: u32,
    position: u64,
}

impl TitleSource {
    /// Opens every stem and checks they can be mixed together.
    pub fn open(paths: &[PathBuf], delivery_rate: Option<u32>) -> Result<Self, SourceError> {
        let readers = paths
            .iter()
            .map(|p| StemReader::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        for r in &readers {
            let ch = r.info().channels;
            if ch == 0 || ch > OUT_CHANNELS {
                return Err(SourceError::Channels {
                    path: r.path().to_path_buf(),
                    channels: ch,
                });
            }
        }
        let rate = readers.first().map_or(48_000, |r| r.info().sample_rate);
        if readers.iter().any(|r| r.info().sample_rate != rate) {
            let details = readers
                .iter()
                .map(|r| format!("'{}' is {} Hz", r.path().display(), r.info().sample_rate))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SourceError::RateMismatch { details });
        }
        if let Some(w) = delivery_rate
            && w != rate
        {
            return Err(SourceError::DeliveryRate {
                wanted: w,
                have: rate,
            });
        }
        let raw = readers
            .iter()
            .map(|r| Block::new(r.info().channels, BLOCK_FRAMES))
            .collect();
        Ok(TitleSource {
            readers,
            raw,
            sample_rate: rate,
            position: 0,
        })
    }

    pub fn infos(&self) -> Vec<StreamInfo> {
        self.readers.iter().map(|r| r.info().clone()).collect()
    }

    /// Blocks to pass to [`TitleSource::read`]: one stereo block per stem.
    pub fn make_blocks(&self) -> Vec<Block> {
        (0..self.readers.len())
            .map(|_| Block::new(OUT_CHANNELS, BLOCK_FRAMES))
            .collect()
    }

    /// Frames delivered so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Frames each stem has delivered so far (its own length once read to the end).
    pub fn stem_positions(&self) -> Vec<u64> {
        self.readers.iter().map(StemReader::position).collect()
    }

    /// Reads the next step into `out` (one block per stem). Returns the frame
    /// count, the same for every stem: the longest stem decides, shorter ones
    /// are padded with silence. 0 when every stem has ended.
    pub fn read(&mut self, out: &mut [Block]) -> Result<usize, SourceError> {
        let mut frames = 0;
        for (r, raw) in self.readers.iter_mut().zip(&mut self.raw) {
            let n = r.read(raw.raw_mut(), BLOCK_FRAMES)?;
            raw.set_frames(n);
            frames = frames.max(n);
        }
        for (raw, o) in self.raw.iter().zip(out.iter_mut()) {
            let n = raw.frames();
            o.silence(frames);
            let src_ch = raw.channels();
            for ch in 0..OUT_CHANNELS {
                // Mono stems feed both sides at unity ("dual mono").
                let s = &raw.channel(ch.min(src_ch - 1))[..n];
                o.channel_mut(ch)[..n].copy_from_slice(s);
            }
        }
        self.position += frames as u64;
        Ok(frames)
    }
}
