//! A title's stems read in lockstep: one block per stem per step, all the same
//! length, shorter stems padded with silence, every stem routed into the
//! title's layout ([`Layout::source_channel`]: in stereo a mono stem plays in
//! both channels; in 5.1 mono plays in the centre and stereo in the front
//! pair), and every stem converted to the title's working rate (the delivery's
//! sample rate, else the rate most stems share) by the deterministic
//! polyphase converter, so the whole graph — limiter and true-peak checks
//! included — runs at the rate that is delivered.

use std::path::PathBuf;

use deliverables_spec::model::Layout;

use crate::decode::{DecodeError, StemReader, StreamInfo};
use crate::dsp::Block;
use crate::dsp::resample::{ResampleError, Resampler};

/// Frames per processing block.
pub const BLOCK_FRAMES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("stem '{path}' cannot be converted to {rate} Hz: {source}; re-export it at {rate} Hz")]
    Rate {
        path: PathBuf,
        rate: u32,
        source: ResampleError,
    },
    #[error(
        "stem '{path}' has {channels} channels and the title is {layout}: {}",
        if *channels == 6 { "set `layout = \"5.1\"` on the title, or deliver a stereo print of the stem" } else { "deliver it as a mono, stereo or 5.1 (L R C LFE Ls Rs) file" }
    )]
    Channels {
        path: PathBuf,
        channels: usize,
        layout: Layout,
    },
}

/// The rate a title is processed and delivered at: `delivery.sample_rate`
/// when set, else the rate most stems share (the first such on a tie).
pub fn working_rate(stem_rates: &[u32], delivery_rate: Option<u32>) -> u32 {
    if let Some(r) = delivery_rate {
        return r;
    }
    let mut best = (0, 48_000);
    for &r in stem_rates {
        let count = stem_rates.iter().filter(|&&x| x == r).count();
        if count > best.0 {
            best = (count, r);
        }
    }
    best.1
}

/// A stem at another rate: its converter and the converted frames not yet
/// handed out (per channel, from `head`).
struct Conversion {
    resampler: Resampler,
    pending: Vec<Vec<f64>>,
    head: usize,
    ended: bool,
}

impl Conversion {
    fn available(&self) -> usize {
        self.pending.first().map_or(0, |p| p.len()) - self.head
    }
}

pub struct TitleSource {
    readers: Vec<StemReader>,
    /// Per-stem read buffers at the stem's own channel count.
    raw: Vec<Block>,
    /// Per stem: `Some` when it is converted to the working rate.
    conversions: Vec<Option<Conversion>>,
    /// The working rate: every block read is at this rate.
    pub sample_rate: u32,
    /// The title's layout: every block read has its channels.
    layout: Layout,
    /// Blocks keep each stem's own channels (no routing into the layout):
    /// a live pack's per-stem files.
    native: bool,
    position: u64,
}

impl TitleSource {
    /// Opens every stem and checks they can be mixed together.
    pub fn open(
        paths: &[PathBuf],
        delivery_rate: Option<u32>,
        layout: Layout,
    ) -> Result<Self, SourceError> {
        let readers = paths
            .iter()
            .map(|p| StemReader::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        for r in &readers {
            let ch = r.info().channels;
            if !layout.accepts(ch) {
                return Err(SourceError::Channels {
                    path: r.path().to_path_buf(),
                    channels: ch,
                    layout,
                });
            }
        }
        let rates: Vec<u32> = readers.iter().map(|r| r.info().sample_rate).collect();
        let rate = working_rate(&rates, delivery_rate);
        let conversions = readers
            .iter()
            .map(|r| {
                let info = r.info();
                if info.sample_rate == rate {
                    return Ok(None);
                }
                let resampler =
                    Resampler::new(info.sample_rate, rate, info.channels).map_err(|source| {
                        SourceError::Rate {
                            path: r.path().to_path_buf(),
                            rate,
                            source,
                        }
                    })?;
                Ok(Some(Conversion {
                    resampler,
                    pending: vec![Vec::new(); info.channels],
                    head: 0,
                    ended: false,
                }))
            })
            .collect::<Result<Vec<_>, SourceError>>()?;
        let raw = readers
            .iter()
            .map(|r| Block::new(r.info().channels, BLOCK_FRAMES))
            .collect();
        Ok(TitleSource {
            readers,
            raw,
            conversions,
            sample_rate: rate,
            layout,
            native: false,
            position: 0,
        })
    }

    /// Opens every stem as [`TitleSource::open`] does (same checks, same
    /// rate conversion), but reads each at its own channel count, not
    /// routed into the layout: block `i` of [`TitleSource::make_blocks`]
    /// has stem `i`'s channels.
    pub fn open_native(
        paths: &[PathBuf],
        delivery_rate: Option<u32>,
        layout: Layout,
    ) -> Result<Self, SourceError> {
        let mut s = TitleSource::open(paths, delivery_rate, layout)?;
        s.native = true;
        Ok(s)
    }

    /// Whether any stem is converted to the working rate.
    pub fn converts(&self) -> bool {
        self.conversions.iter().any(Option::is_some)
    }

    pub fn infos(&self) -> Vec<StreamInfo> {
        self.readers.iter().map(|r| r.info().clone()).collect()
    }

    /// Channels of every block read: the title layout's.
    pub fn channels(&self) -> usize {
        self.layout.channels()
    }

    /// Blocks to pass to [`TitleSource::read`]: one block per stem, in the
    /// title's layout.
    pub fn make_blocks(&self) -> Vec<Block> {
        self.readers
            .iter()
            .map(|r| {
                let ch = if self.native {
                    r.info().channels
                } else {
                    self.channels()
                };
                Block::new(ch, BLOCK_FRAMES)
            })
            .collect()
    }

    /// Frames delivered so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Frames each stem has decoded so far, at its own rate (its own length
    /// once read to the end).
    pub fn stem_positions(&self) -> Vec<u64> {
        self.readers.iter().map(StemReader::position).collect()
    }

    /// Reads the next step into `out` (one block per stem). Returns the frame
    /// count, the same for every stem: the longest stem decides, shorter ones
    /// are padded with silence. 0 when every stem has ended.
    pub fn read(&mut self, out: &mut [Block]) -> Result<usize, SourceError> {
        let mut frames = 0;
        for ((r, raw), conv) in self
            .readers
            .iter_mut()
            .zip(&mut self.raw)
            .zip(&mut self.conversions)
        {
            let n = match conv {
                None => {
                    let n = r.read(raw.raw_mut(), BLOCK_FRAMES)?;
                    raw.set_frames(n);
                    n
                }
                Some(c) => {
                    // Decode and convert until a block's worth is waiting
                    // (or the stem has ended and its tail is flushed).
                    while c.available() < BLOCK_FRAMES && !c.ended {
                        let n = r.read(raw.raw_mut(), BLOCK_FRAMES)?;
                        if n == 0 {
                            c.resampler.finish(&mut c.pending);
                            c.ended = true;
                        } else {
                            c.resampler.process_frames(raw.raw_mut(), n, &mut c.pending);
                        }
                    }
                    c.available().min(BLOCK_FRAMES)
                }
            };
            frames = frames.max(n);
        }
        let layout = self.layout;
        let native = self.native;
        // Native: every channel of the stem as it is; else routed.
        let route = |src_ch: usize, ch: usize| {
            if native {
                (ch < src_ch).then_some(ch)
            } else {
                layout.source_channel(src_ch, ch)
            }
        };
        for ((raw, conv), o) in self
            .raw
            .iter_mut()
            .zip(&mut self.conversions)
            .zip(out.iter_mut())
        {
            o.silence(frames);
            let src_ch = raw.channels();
            match conv {
                None => {
                    let n = raw.frames();
                    for ch in 0..o.channels() {
                        if let Some(k) = route(src_ch, ch) {
                            let s = &raw.channel(k)[..n];
                            o.channel_mut(ch)[..n].copy_from_slice(s);
                        }
                    }
                }
                Some(c) => {
                    let n = c.available().min(BLOCK_FRAMES);
                    for ch in 0..o.channels() {
                        if let Some(k) = route(src_ch, ch) {
                            let p = &c.pending[k];
                            o.channel_mut(ch)[..n].copy_from_slice(&p[c.head..c.head + n]);
                        }
                    }
                    c.head += n;
                    // Keep what is left at the front (capacity is kept).
                    if c.head >= BLOCK_FRAMES {
                        for p in &mut c.pending {
                            p.drain(..c.head);
                        }
                        c.head = 0;
                    }
                }
            }
        }
        self.position += frames as u64;
        Ok(frames)
    }
}
