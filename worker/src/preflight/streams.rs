//! Several files read in lockstep for preflight, each at its own channel
//! count, each optionally shifted in time. Unlike [`crate::source`], a file
//! that fails mid-stream does not stop the others: its error is kept, and it
//! reads as silence from there on, so every other check still runs.

use crate::decode::StemReader;

/// Frames per step.
pub const STEP_FRAMES: usize = 4096;

/// One file in the set.
struct Stream {
    reader: Option<StemReader>,
    /// Planar buffer of the last step (`STEP_FRAMES` per channel).
    buf: Vec<Vec<f64>>,
    /// Frames of silence still to emit before the file's first frame (a
    /// stem that is early against the reference is delayed this much).
    lead: u64,
    /// Frames still to drop from the file's start (a late stem is advanced).
    skip: u64,
    /// The first read error, as a message naming the file.
    error: Option<String>,
    /// Frames delivered from the file itself (not lead-in, not skipped).
    delivered: u64,
    /// Frames the last step filled in `buf`.
    filled: usize,
    /// Samples that were not numbers (NaN, infinite) or absurdly large in a
    /// float file: read as silence, counted, and the first one's frame.
    invalid: u64,
    first_invalid: Option<u64>,
}

/// Files read together, step by step.
pub struct Lockstep {
    streams: Vec<Stream>,
    scratch: Vec<Vec<f64>>,
    position: u64,
}

impl Lockstep {
    /// `readers[i]` is `None` for a file that could not be opened: it reads as
    /// silence with `channels[i]` channels.
    pub fn new(readers: Vec<Option<StemReader>>) -> Lockstep {
        let max_ch = readers
            .iter()
            .flatten()
            .map(|r| r.info().channels)
            .max()
            .unwrap_or(1);
        let streams = readers
            .into_iter()
            .map(|reader| {
                let ch = reader.as_ref().map_or(1, |r| r.info().channels);
                Stream {
                    reader,
                    buf: vec![vec![0.0; STEP_FRAMES]; ch],
                    lead: 0,
                    skip: 0,
                    error: None,
                    delivered: 0,
                    filled: 0,
                    invalid: 0,
                    first_invalid: None,
                }
            })
            .collect();
        Lockstep {
            streams,
            scratch: vec![vec![0.0; STEP_FRAMES]; max_ch],
            position: 0,
        }
    }

    /// Shifts stream `i`: positive `frames` drops that many frames from its
    /// start (it was late), negative delays it (it was early). Call before
    /// the first step.
    pub fn shift(&mut self, i: usize, frames: i64) {
        let s = &mut self.streams[i];
        if frames >= 0 {
            s.skip = frames.unsigned_abs();
        } else {
            s.lead = frames.unsigned_abs();
        }
    }

    /// Frames handed out so far.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Reads the next step. Returns how many frames the longest stream gave
    /// (0 when all have ended); every buffer holds that many frames, shorter
    /// streams padded with silence.
    pub fn step(&mut self) -> usize {
        let mut longest = 0;
        for s in &mut self.streams {
            s.filled = fill(s, &mut self.scratch);
            longest = longest.max(s.filled);
        }
        for s in &mut self.streams {
            for ch in &mut s.buf {
                ch[s.filled..longest].fill(0.0);
            }
        }
        self.position += longest as u64;
        longest
    }

    /// Stream `i`'s samples of the last step, one slice per channel.
    pub fn channels(&self, i: usize) -> &[Vec<f64>] {
        &self.streams[i].buf
    }

    /// Stream `i`'s read error, if it failed mid-stream.
    pub fn error(&self, i: usize) -> Option<&str> {
        self.streams[i].error.as_deref()
    }

    /// Samples of stream `i` that were not audio (read as silence), and the
    /// frame of the first.
    pub fn invalid(&self, i: usize) -> (u64, Option<u64>) {
        (self.streams[i].invalid, self.streams[i].first_invalid)
    }

    /// Frames stream `i` has delivered from its file (its decoded length once
    /// the set has been read to the end).
    pub fn decoded(&self, i: usize) -> u64 {
        self.streams[i].delivered
    }
}

/// Fills `s.buf` with up to `STEP_FRAMES` frames: lead-in silence, then the
/// file (after dropping `skip` frames). Returns the frames written.
fn fill(s: &mut Stream, scratch: &mut [Vec<f64>]) -> usize {
    let mut n = 0;
    while s.lead > 0 && n < STEP_FRAMES {
        let k = (STEP_FRAMES - n).min(usize::try_from(s.lead).unwrap_or(usize::MAX));
        for ch in &mut s.buf {
            ch[n..n + k].fill(0.0);
        }
        n += k;
        s.lead -= k as u64;
    }
    let Some(reader) = s.reader.as_mut() else {
        return n;
    };
    while s.skip > 0 {
        let k = STEP_FRAMES.min(usize::try_from(s.skip).unwrap_or(usize::MAX));
        match reader.read(scratch, k) {
            Ok(0) => {
                s.skip = 0;
                return n;
            }
            Ok(got) => s.skip -= got as u64,
            Err(e) => {
                s.error = Some(e.to_string());
                s.reader = None;
                return n;
            }
        }
    }
    while n < STEP_FRAMES {
        let want = STEP_FRAMES - n;
        match reader.read(scratch, want) {
            Ok(0) => break,
            Ok(got) => {
                for (dst, src) in s.buf.iter_mut().zip(scratch.iter()) {
                    for (i, (d, &v)) in dst[n..n + got].iter_mut().zip(&src[..got]).enumerate() {
                        if crate::decode::is_audio_sample(v) {
                            *d = v;
                        } else {
                            *d = 0.0;
                            s.invalid += 1;
                            s.first_invalid.get_or_insert(s.delivered + i as u64);
                        }
                    }
                }
                n += got;
                s.delivered += got as u64;
            }
            Err(e) => {
                s.error = Some(e.to_string());
                // Keep the position for the report; stop reading.
                s.reader = None;
                break;
            }
        }
    }
    n
}
