//! A title's stems read in lockstep: one block per stem per step, all the same
//! length, shorter stems padded with silence, every stem routed into the
//! title's layout ([`Layout::source_channel`]: in stereo a mono stem plays in
//! both channels; in 5.1 mono plays in the centre and stereo in the front
//! pair), and every stem converted to the title's working rate (the delivery's
//! sample rate, else the rate most stems share) by the deterministic
//! polyphase converter, so the whole graph — limiter and true-peak checks
//! included — runs at the rate that is delivered.

use std::path::PathBuf;

use deliverables_spec::edit::{EditSpec, FadeShape, Piece, Pieces};
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
    #[error("the title's {0}")]
    Edit(String),
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

/// The stems at the working rate, in lockstep, unedited.
struct Streams {
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

impl Streams {
    /// Opens every stem and checks they can be mixed together.
    fn open(
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
        Ok(Streams {
            readers,
            raw,
            conversions,
            sample_rate: rate,
            layout,
            native: false,
            position: 0,
        })
    }

    /// Whether any stem is converted to the working rate.
    fn converts(&self) -> bool {
        self.conversions.iter().any(Option::is_some)
    }

    fn infos(&self) -> Vec<StreamInfo> {
        self.readers.iter().map(|r| r.info().clone()).collect()
    }

    /// Channels of every block read: the title layout's.
    fn channels(&self) -> usize {
        self.layout.channels()
    }

    /// Blocks to pass to [`TitleSource::read`]: one block per stem, in the
    /// title's layout.
    fn make_blocks(&self) -> Vec<Block> {
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
    fn position(&self) -> u64 {
        self.position
    }

    /// Frames each stem has decoded so far, at its own rate (its own length
    /// once read to the end).
    fn stem_positions(&self) -> Vec<u64> {
        self.readers.iter().map(StemReader::position).collect()
    }

    /// Reads the next step into `out` (one block per stem). Returns the frame
    /// count, the same for every stem: the longest stem decides, shorter ones
    /// are padded with silence. 0 when every stem has ended.
    fn read(&mut self, out: &mut [Block]) -> Result<usize, SourceError> {
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

/// A title's stems as the graph reads them: in lockstep at the working
/// rate, and through the title's edit when it has one (every stem cut the
/// same way, so the graph runs on the edited programme).
pub struct TitleSource {
    streams: Streams,
    edit: Option<Edited>,
    /// The working rate: every block read is at this rate.
    pub sample_rate: u32,
}

impl TitleSource {
    /// Opens every stem and checks they can be mixed together.
    pub fn open(
        paths: &[PathBuf],
        delivery_rate: Option<u32>,
        layout: Layout,
    ) -> Result<Self, SourceError> {
        Self::open_edited(paths, delivery_rate, layout, None)
    }

    /// Opens every stem as [`TitleSource::open_edited`] does (same checks,
    /// same rate conversion, the same edit), but reads each at its own
    /// channel count, not routed into the layout: block `i` of
    /// [`TitleSource::make_blocks`] has stem `i`'s channels.
    pub fn open_native(
        paths: &[PathBuf],
        delivery_rate: Option<u32>,
        layout: Layout,
        edit: Option<&EditSpec>,
    ) -> Result<Self, SourceError> {
        let mut s = Self::open_edited(paths, delivery_rate, layout, edit)?;
        s.streams.native = true;
        if let Some(e) = &mut s.edit {
            e.native = true;
        }
        Ok(s)
    }

    /// Opens every stem, to be read through `edit` when given. An edit
    /// reaching outside the programme (the longest stem at the working
    /// rate) is refused here, naming the segment.
    pub fn open_edited(
        paths: &[PathBuf],
        delivery_rate: Option<u32>,
        layout: Layout,
        edit: Option<&EditSpec>,
    ) -> Result<Self, SourceError> {
        let streams = Streams::open(paths, delivery_rate, layout)?;
        let rate = streams.sample_rate;
        let edit = match edit {
            None => None,
            Some(e) => {
                // A stem whose header does not state its length leaves the
                // programme's end unknown: pieces past the stems read silence.
                let programme = streams
                    .readers
                    .iter()
                    .map(|r| {
                        let i = r.info();
                        i.frames.map_or(u64::MAX, |n| {
                            Resampler::output_frames(n, i.sample_rate, rate)
                        })
                    })
                    .max()
                    .unwrap_or(0);
                let pieces = e.pieces(rate, programme).map_err(SourceError::Edit)?;
                Some(Edited {
                    paths: paths.to_vec(),
                    delivery_rate,
                    layout,
                    native: false,
                    pieces,
                    next: 0,
                    active: Vec::new(),
                    position: 0,
                })
            }
        };
        Ok(TitleSource {
            streams,
            edit,
            sample_rate: rate,
        })
    }

    /// Whether any stem is converted to the working rate.
    pub fn converts(&self) -> bool {
        self.streams.converts()
    }

    pub fn infos(&self) -> Vec<StreamInfo> {
        self.streams.infos()
    }

    /// The frames a full read gives, as far as the headers tell: the
    /// edit's exact length, else the longest stem's stated length (at its
    /// own rate).
    pub fn expected_frames(&self) -> u64 {
        match &self.edit {
            Some(e) => e.pieces.frames,
            None => self
                .streams
                .infos()
                .iter()
                .filter_map(|i| i.frames)
                .max()
                .unwrap_or(0),
        }
    }

    /// The title's edit at the working rate, if it has one.
    pub fn edit(&self) -> Option<&Pieces> {
        self.edit.as_ref().map(|e| &e.pieces)
    }

    /// Channels of every block read: the title layout's.
    pub fn channels(&self) -> usize {
        self.streams.channels()
    }

    /// Blocks to pass to [`TitleSource::read`]: one block per stem, in the
    /// title's layout.
    pub fn make_blocks(&self) -> Vec<Block> {
        self.streams.make_blocks()
    }

    /// Frames delivered so far.
    pub fn position(&self) -> u64 {
        match &self.edit {
            Some(e) => e.position,
            None => self.streams.position(),
        }
    }

    /// Frames each stem has decoded so far, at its own rate (its own length
    /// once read to the end). An edited title reads pieces of its stems:
    /// their stated lengths stand in.
    pub fn stem_positions(&self) -> Vec<u64> {
        match &self.edit {
            Some(_) => self
                .streams
                .infos()
                .iter()
                .map(|i| i.frames.unwrap_or(0))
                .collect(),
            None => self.streams.stem_positions(),
        }
    }

    /// Reads the next step into `out` (one block per stem). Returns the frame
    /// count, the same for every stem: the longest stem (or the edit)
    /// decides, shorter ones are padded with silence. 0 at the end.
    pub fn read(&mut self, out: &mut [Block]) -> Result<usize, SourceError> {
        match &mut self.edit {
            Some(e) => e.read(out),
            None => self.streams.read(out),
        }
    }
}

/// The edit being played: the pieces not yet reached, and those sounding
/// (at most two at once: crossfades do not overlap), each on its own
/// streams positioned in the source.
struct Edited {
    paths: Vec<PathBuf>,
    delivery_rate: Option<u32>,
    layout: Layout,
    /// Pieces read at each stem's own channel count.
    native: bool,
    pieces: Pieces,
    next: usize,
    active: Vec<Cursor>,
    position: u64,
}

impl Edited {
    fn read(&mut self, out: &mut [Block]) -> Result<usize, SourceError> {
        let left = self.pieces.frames.saturating_sub(self.position);
        let n = (BLOCK_FRAMES as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        for o in out.iter_mut() {
            o.silence(n);
        }
        let end = self.position + n as u64;
        while let Some(p) = self.pieces.pieces.get(self.next)
            && p.record_start < end
        {
            self.active.push(Cursor::open(
                &self.paths,
                self.delivery_rate,
                self.layout,
                self.native,
                *p,
            )?);
            self.next += 1;
        }
        let shape = self.pieces.shape;
        for c in &mut self.active {
            let from = c.piece.record_start.max(self.position);
            let to = c.piece.record_end().min(end);
            if to > from {
                c.add_into(
                    out,
                    (from - self.position) as usize,
                    (to - from) as usize,
                    shape,
                )?;
            }
        }
        self.active.retain(|c| c.piece.record_end() > end);
        self.position = end;
        Ok(n)
    }
}

/// One piece of an edit: its own streams, read from the piece's start in
/// the source, and what has been handed out.
struct Cursor {
    piece: Piece,
    streams: Streams,
    buf: Vec<Block>,
    head: usize,
    avail: usize,
    ended: bool,
    /// Frames of the piece handed out.
    done: u64,
}

impl Cursor {
    /// Opens the stems again and reads up to the piece's start (decoding is
    /// exact from the top; a seek would not be through the converter).
    fn open(
        paths: &[PathBuf],
        delivery_rate: Option<u32>,
        layout: Layout,
        native: bool,
        piece: Piece,
    ) -> Result<Cursor, SourceError> {
        let mut streams = Streams::open(paths, delivery_rate, layout)?;
        streams.native = native;
        let buf = streams.make_blocks();
        let mut c = Cursor {
            piece,
            streams,
            buf,
            head: 0,
            avail: 0,
            ended: false,
            done: 0,
        };
        let mut skip = piece.source_start;
        while skip > 0 {
            c.fill()?;
            if c.ended {
                break;
            }
            let k = ((c.avail - c.head) as u64).min(skip) as usize;
            c.head += k;
            skip -= k as u64;
        }
        Ok(c)
    }

    fn fill(&mut self) -> Result<(), SourceError> {
        if self.head == self.avail && !self.ended {
            self.avail = self.streams.read(&mut self.buf)?;
            self.head = 0;
            self.ended = self.avail == 0;
        }
        Ok(())
    }

    /// The piece's gain at its frame `i`: its fade in, its fade out.
    fn gain(&self, i: u64, shape: FadeShape) -> f64 {
        use crate::dsp::math::DetMath;
        let p = &self.piece;
        let sin = |x: f64| x.dsin();
        let mut g = 1.0;
        if i < p.fade_in {
            g *= shape.gain((i as f64 + 0.5) / p.fade_in as f64, sin);
        }
        let from_end = p.len - i;
        if from_end <= p.fade_out {
            g *= shape.gain((from_end as f64 - 0.5) / p.fade_out as f64, sin);
        }
        g
    }

    /// Adds the piece's next `n` frames, faded, into `out` from frame `at`.
    fn add_into(
        &mut self,
        out: &mut [Block],
        at: usize,
        n: usize,
        shape: FadeShape,
    ) -> Result<(), SourceError> {
        let mut written = 0;
        while written < n {
            self.fill()?;
            if self.ended {
                // Past the stems' end: silence, which `out` already holds.
                self.done += (n - written) as u64;
                return Ok(());
            }
            let k = (self.avail - self.head).min(n - written);
            for j in 0..k {
                let g = self.gain(self.done + j as u64, shape);
                for (o, b) in out.iter_mut().zip(&self.buf) {
                    for ch in 0..b.channels() {
                        o.channel_mut(ch)[at + written + j] += g * b.channel(ch)[self.head + j];
                    }
                }
            }
            self.head += k;
            self.done += k as u64;
            written += k;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deliverables_spec::edit::{Position, SegmentSpec};

    /// A mono 32-bit float stem whose sample `i` is `i · 1e-6`: a read-back
    /// value names the source frame it came from.
    fn ramp(dir: &std::path::Path, name: &str, frames: u32) -> PathBuf {
        let p = dir.join(name);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&p, spec).expect("create wav");
        for i in 0..frames {
            w.write_sample(i as f32 * 1e-6).expect("write");
        }
        w.finalize().expect("finalize");
        p
    }

    fn read_all(s: &mut TitleSource) -> Vec<f64> {
        let mut blocks = s.make_blocks();
        let mut out = Vec::new();
        loop {
            let n = s.read(&mut blocks).expect("read");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&blocks[0].channel(0)[..n]);
        }
    }

    #[test]
    fn an_edit_reads_the_source_frames_it_names() {
        let dir = stemforge_testkit::scratch("source-edit");
        let p = ramp(&dir, "ramp.wav", 100_000);
        let seg = |a: u64, b: u64, xf: Option<f64>| SegmentSpec {
            start: Position::Samples(a),
            end: Position::Samples(b),
            crossfade_ms: xf,
        };
        // Three segments, out of order, joined by 1 ms (48-sample)
        // crossfades, no head or tail fade; each longer than a block.
        let edit = EditSpec {
            sample_rate: Some(48_000),
            segments: vec![
                seg(10_000, 15_000, None),
                seg(60_000, 70_000, None),
                seg(20_000, 26_000, None),
            ],
            crossfade_ms: Some(1.0),
            fade_in_ms: Some(0.0),
            fade_out_ms: Some(0.0),
            ..EditSpec::default()
        };
        for native in [false, true] {
            let mut s = if native {
                TitleSource::open_native(
                    std::slice::from_ref(&p),
                    None,
                    Layout::Stereo,
                    Some(&edit),
                )
            } else {
                TitleSource::open_edited(
                    std::slice::from_ref(&p),
                    None,
                    Layout::Stereo,
                    Some(&edit),
                )
            }
            .expect("opens");
            assert_eq!(s.expected_frames(), 21_000);
            let got = read_all(&mut s);
            assert_eq!(got.len(), 21_000);
            let at = |f: u64| f64::from(f as f32 * 1e-6);
            // Away from the joins every frame is its source frame exactly.
            for (rec, from, len) in [
                (24, 10_024, 4_952),
                (5_024, 60_024, 9_952),
                (15_024, 20_024, 5_976),
            ] {
                for i in 0..len {
                    assert_eq!(
                        got[rec + i],
                        at(from + i as u64),
                        "native {native}: frame {}",
                        rec + i
                    );
                }
            }
            // Through a join the two sources' gains sum to unity power.
            for i in 0..48 {
                let x = (i as f64 + 0.5) / 48.0 * std::f64::consts::FRAC_PI_2;
                let (fo, fi) = (x.cos(), x.sin());
                let want = fo * at(15_000 - 24 + i) + fi * at(60_000 - 24 + i);
                assert!(
                    (got[5_000 - 24 + i as usize] - want).abs() < 1e-12,
                    "join 1 frame {i}"
                );
            }
        }
        // An edit past the programme's end is refused, naming the segment.
        let long = EditSpec {
            segments: vec![seg(90_000, 120_000, None)],
            ..edit
        };
        let Err(SourceError::Edit(e)) =
            TitleSource::open_edited(&[p], None, Layout::Stereo, Some(&long))
        else {
            panic!("refused")
        };
        assert!(e.contains("segments[0]"), "{e}");
    }
}
