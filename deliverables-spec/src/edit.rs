//! Edits of a title's programme: cutdowns (:60, :30, :15) and other
//! re-edits, as segments of the source joined by crossfades.
//!
//! A title with an `edit` plays its stems through the edit before anything
//! else: every stem is cut the same way, so the whole graph (chains, buses,
//! master, loudness search, limiter) runs on the edited programme and every
//! output of the title is the edit's exact length.
//!
//! The rules, at a working rate `r`:
//! - Positions are timecode at a declared frame rate (`HH:MM:SS:FF`, drop
//!   frame at 29.97 written `HH:MM:SS;FF` or declared `29.97df`) or sample
//!   counts at a declared `sample_rate`; one edit uses one kind. Timecode
//!   counts from `timecode_start`, the timecode of the stems' first sample.
//! - Segment `k` occupies the record timeline from `R_k` to `R_{k+1}`,
//!   where `R_k` is the sum of the earlier segments' lengths in the edit's
//!   own unit (frames or samples), converted to samples once
//!   (`round(R_k · r / unit rate)`). So the edit is exactly as long as its
//!   segments, `round(Σ (out − in) · r / unit rate)` frames: 750 frames at
//!   25 fps are 30 s × r.
//! - A crossfade of `L` samples at the join before segment `k` is centred
//!   on it: it starts `L/2` (rounded down) before `R_k`. The outgoing
//!   segment plays on past its `out` and the incoming one starts before its
//!   `in`, on material of the source (handles), so the edit point itself
//!   stays where it was written. Crossfades may not overlap each other or
//!   the head and tail fades; handles must lie inside the programme.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{SpecError, SpecErrors};

/// A frame rate an edit's timecode counts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FrameRate {
    #[serde(rename = "23.976")]
    Fps23976,
    #[serde(rename = "24")]
    Fps24,
    #[serde(rename = "25")]
    Fps25,
    /// 29.97 non-drop-frame.
    #[serde(rename = "29.97")]
    Fps2997,
    /// 29.97 drop-frame: frame numbers 0 and 1 are skipped at the start of
    /// every minute but each tenth.
    #[serde(rename = "29.97df")]
    Fps2997Df,
    #[serde(rename = "30")]
    Fps30,
}

impl FrameRate {
    pub const NAMES: [&'static str; 6] = ["23.976", "24", "25", "29.97", "29.97df", "30"];

    /// Frames per second as a fraction (numerator, denominator).
    pub fn ratio(self) -> (u64, u64) {
        match self {
            FrameRate::Fps23976 => (24_000, 1001),
            FrameRate::Fps24 => (24, 1),
            FrameRate::Fps25 => (25, 1),
            FrameRate::Fps2997 | FrameRate::Fps2997Df => (30_000, 1001),
            FrameRate::Fps30 => (30, 1),
        }
    }

    /// Frames counted per timecode second.
    pub fn nominal(self) -> u64 {
        match self {
            FrameRate::Fps23976 | FrameRate::Fps24 => 24,
            FrameRate::Fps25 => 25,
            FrameRate::Fps2997 | FrameRate::Fps2997Df | FrameRate::Fps30 => 30,
        }
    }

    pub fn is_drop_frame(self) -> bool {
        self == FrameRate::Fps2997Df
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FrameRate::Fps23976 => "23.976",
            FrameRate::Fps24 => "24",
            FrameRate::Fps25 => "25",
            FrameRate::Fps2997 => "29.97",
            FrameRate::Fps2997Df => "29.97df",
            FrameRate::Fps30 => "30",
        }
    }

    /// The frame index of timecode `tc` (`HH:MM:SS:FF`; `;` or `.` before
    /// the frames is accepted and means nothing more than the declared rate
    /// says).
    pub fn frames(self, tc: &str) -> Result<u64, String> {
        let parts: Vec<&str> = tc.trim().split([':', ';', '.']).collect();
        let [h, m, s, f] = parts.as_slice() else {
            return Err(format!("`{tc}` is not timecode HH:MM:SS:FF"));
        };
        let num = |x: &str, what: &str, max: u64| -> Result<u64, String> {
            let v: u64 = x
                .parse()
                .map_err(|_| format!("`{tc}`: {what} `{x}` is not a number"))?;
            if v >= max {
                return Err(format!(
                    "`{tc}`: {what} {v} is out of range (0–{})",
                    max - 1
                ));
            }
            Ok(v)
        };
        let (h, m, s, f) = (
            num(h, "hours", 24)?,
            num(m, "minutes", 60)?,
            num(s, "seconds", 60)?,
            num(f, "frames", self.nominal())?,
        );
        let minutes = h * 60 + m;
        let mut frames = (minutes * 60 + s) * self.nominal() + f;
        if self.is_drop_frame() {
            if s == 0 && f < 2 && m % 10 != 0 {
                return Err(format!(
                    "`{tc}` does not exist in drop-frame timecode (frames 00 and 01 are dropped at the start of each minute but every tenth)"
                ));
            }
            frames -= 2 * (minutes - minutes / 10);
        }
        Ok(frames)
    }

    /// Timecode of frame index `frames`.
    pub fn timecode(self, frames: u64) -> String {
        let n = self.nominal();
        let mut f = frames;
        if self.is_drop_frame() {
            // 17982 frames per ten minutes; the first minute keeps all 1800.
            let tens = f / 17_982;
            let rem = f % 17_982;
            f += 18 * tens;
            if rem >= 2 {
                f += 2 * ((rem - 2) / 1798);
            }
        }
        let sep = if self.is_drop_frame() { ';' } else { ':' };
        format!(
            "{:02}:{:02}:{:02}{sep}{:02}",
            f / (n * 3600) % 24,
            f / (n * 60) % 60,
            f / n % 60,
            f % n
        )
    }
}

impl fmt::Display for FrameRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A position in the source: timecode text or a sample count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Position {
    Samples(u64),
    Timecode(String),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Samples(n) => write!(f, "sample {n}"),
            Position::Timecode(t) => f.write_str(t),
        }
    }
}

/// The shape of crossfades and of the head and tail fades.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FadeShape {
    /// sin/cos: constant power through the join (unrelated material).
    #[default]
    EqualPower,
    /// Straight lines: constant amplitude (the same material either side).
    Linear,
}

impl FadeShape {
    /// Gain of a fade-in at `x` in [0, 1] (a fade-out is `gain(1 − x)`).
    pub fn gain(self, x: f64, sin: impl Fn(f64) -> f64) -> f64 {
        match self {
            FadeShape::EqualPower => sin(x * std::f64::consts::FRAC_PI_2),
            FadeShape::Linear => x,
        }
    }
}

/// One segment of the source: from `in` (inclusive) to `out` (exclusive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    #[serde(rename = "in")]
    pub start: Position,
    #[serde(rename = "out")]
    pub end: Position,
    /// The crossfade into this segment (not the first), ms; default the
    /// edit's `crossfade_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossfade_ms: Option<f64>,
}

pub const DEFAULT_CROSSFADE_MS: f64 = 10.0;
pub const DEFAULT_FADE_MS: f64 = 5.0;

/// An edit of a title's programme, as written on a title (`edit = {...}`),
/// or made from a cutdown by [`expand`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditSpec {
    /// The title this is a cut of (set by the expansion of `cutdowns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    /// The cut's own name (`30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The rate timecode positions count at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<FrameRate>,
    /// The rate sample positions count at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// Timecode of the stems' first sample (default `00:00:00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timecode_start: Option<String>,
    #[serde(default)]
    pub segments: Vec<SegmentSpec>,
    /// Crossfade at every join, ms (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossfade_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossfade_shape: Option<FadeShape>,
    /// Fade at the head, ms (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fade_in_ms: Option<f64>,
    /// Fade at the tail, ms (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fade_out_ms: Option<f64>,
    /// The length the edit must come to (timecode or samples, as the
    /// positions); `validate` refuses an edit of another length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Position>,
    /// The CMX 3600 EDL the segments were read from (a record only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edl: Option<String>,
}

/// One piece of the edited programme at a working rate: `len` samples of
/// the source from `source_start`, placed at `record_start`, faded in over
/// its first `fade_in` and out over its last `fade_out` samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub source_start: u64,
    pub record_start: u64,
    pub len: u64,
    pub fade_in: u64,
    pub fade_out: u64,
}

impl Piece {
    pub fn record_end(&self) -> u64 {
        self.record_start + self.len
    }
    pub fn source_end(&self) -> u64 {
        self.source_start + self.len
    }
}

/// An edit at a working rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pieces {
    pub rate: u32,
    pub pieces: Vec<Piece>,
    /// The edit's length, samples.
    pub frames: u64,
    pub shape: FadeShape,
}

/// What an edit says, in the edit's unit (frames or samples), checked.
struct Units {
    /// (in, out) per segment.
    segments: Vec<(u64, u64)>,
    /// Units per second as a fraction.
    per_second: (u64, u64),
}

impl EditSpec {
    fn shape(&self) -> FadeShape {
        self.crossfade_shape.unwrap_or_default()
    }

    fn crossfade_at(&self, k: usize) -> f64 {
        self.segments
            .get(k)
            .and_then(|s| s.crossfade_ms)
            .or(self.crossfade_ms)
            .unwrap_or(DEFAULT_CROSSFADE_MS)
    }

    fn position(&self, p: &Position, origin: u64) -> Result<u64, String> {
        match (p, self.frame_rate, self.sample_rate) {
            (Position::Samples(n), _, Some(_)) => Ok(*n),
            (Position::Samples(_), _, None) => Err(
                "is a sample count and the edit has no `sample_rate`: say which rate it counts at"
                    .into(),
            ),
            (Position::Timecode(_), _, Some(_)) => Err(
                "is timecode and the edit counts samples (`sample_rate`): write every position the same way"
                    .into(),
            ),
            (Position::Timecode(tc), Some(fr), None) => {
                let f = fr.frames(tc)?;
                f.checked_sub(origin).ok_or_else(|| {
                    format!(
                        "`{tc}` is before `timecode_start` {}",
                        fr.timecode(origin)
                    )
                })
            }
            (Position::Timecode(_), None, None) => Err(
                "is timecode and the edit has no `frame_rate`: declare one of 23.976, 24, 25, 29.97, 29.97df, 30"
                    .into(),
            ),
        }
    }

    fn units(&self, path: &str, errs: &mut Vec<SpecError>) -> Option<Units> {
        let origin = match (&self.timecode_start, self.frame_rate) {
            (None, _) => 0,
            (Some(tc), Some(fr)) => match fr.frames(tc) {
                Ok(f) => f,
                Err(e) => {
                    errs.push(SpecError::new(format!("{path}.timecode_start"), e));
                    return None;
                }
            },
            (Some(_), None) => {
                errs.push(
                    SpecError::new(
                        format!("{path}.timecode_start"),
                        "is timecode and the edit has no `frame_rate`",
                    )
                    .hint("declare `frame_rate`"),
                );
                return None;
            }
        };
        let per_second = match (self.frame_rate, self.sample_rate) {
            (_, Some(sr)) if !(8_000..=384_000).contains(&sr) => {
                errs.push(
                    SpecError::new(
                        format!("{path}.sample_rate"),
                        format!("{sr} Hz is not an audio sample rate"),
                    )
                    .hint("give the rate the sample positions count at, e.g. 48000"),
                );
                return None;
            }
            (_, Some(sr)) => (u64::from(sr), 1),
            (Some(fr), None) => fr.ratio(),
            (None, None) => (25, 1), // reported per position below
        };
        if self.segments.is_empty() {
            errs.push(
                SpecError::new(format!("{path}.segments"), "lists no segments")
                    .hint("give each segment's `in` and `out`, or an `edl`"),
            );
            return None;
        }
        let before = errs.len();
        let mut segments = Vec::new();
        for (k, s) in self.segments.iter().enumerate() {
            let sp = format!("{path}.segments[{k}]");
            let a = self
                .position(&s.start, origin)
                .map_err(|e| errs.push(SpecError::new(format!("{sp}.in"), e)));
            let b = self
                .position(&s.end, origin)
                .map_err(|e| errs.push(SpecError::new(format!("{sp}.out"), e)));
            if let (Ok(a), Ok(b)) = (a, b) {
                let secs = |u: u64| u as f64 * per_second.1 as f64 / per_second.0 as f64;
                if secs(b) > crate::validate::MAX_PROGRAMME_S {
                    errs.push(
                        SpecError::new(
                            format!("{sp}.out"),
                            "is more than 48 hours into the programme",
                        )
                        .hint("check the position (and `timecode_start`)"),
                    );
                    continue;
                }
                if b <= a {
                    errs.push(
                        SpecError::new(
                            format!("{sp}.out"),
                            format!("{} is not after `in` {}", s.end, s.start),
                        )
                        .hint("a segment plays from `in` up to `out`"),
                    );
                }
                segments.push((a, b));
            }
        }
        (errs.len() == before).then_some(Units {
            segments,
            per_second,
        })
    }

    /// The checks a spec alone allows (no audio): positions, fades,
    /// crossfades that overlap, the declared duration. `path` is where the
    /// edit was written.
    pub fn check(&self, path: &str) -> Vec<SpecError> {
        let mut errs = Vec::new();
        let ms_ok = |v: f64| v.is_finite() && (0.0..=10_000.0).contains(&v);
        for (field, v) in [
            ("crossfade_ms", self.crossfade_ms),
            ("fade_in_ms", self.fade_in_ms),
            ("fade_out_ms", self.fade_out_ms),
        ] {
            if let Some(v) = v
                && !ms_ok(v)
            {
                errs.push(
                    SpecError::new(format!("{path}.{field}"), format!("{v} ms is out of range"))
                        .hint("give 0 to 10000 ms"),
                );
            }
        }
        for (k, s) in self.segments.iter().enumerate() {
            if let Some(v) = s.crossfade_ms
                && !ms_ok(v)
            {
                errs.push(
                    SpecError::new(
                        format!("{path}.segments[{k}].crossfade_ms"),
                        format!("{v} ms is out of range"),
                    )
                    .hint("give 0 to 10000 ms"),
                );
            }
        }
        if !errs.is_empty() {
            return errs;
        }
        let Some(u) = self.units(path, &mut errs) else {
            return errs;
        };
        // Overlaps, in seconds (at any rate the same up to a sample).
        let secs = |units: u64| units as f64 * u.per_second.1 as f64 / u.per_second.0 as f64;
        let n = u.segments.len();
        for (k, &(a, b)) in u.segments.iter().enumerate() {
            let len_ms = secs(b - a) * 1000.0;
            let head = if k == 0 {
                self.fade_in_ms.unwrap_or(DEFAULT_FADE_MS)
            } else {
                self.crossfade_at(k) / 2.0
            };
            let tail = if k + 1 == n {
                self.fade_out_ms.unwrap_or(DEFAULT_FADE_MS)
            } else {
                self.crossfade_at(k + 1) / 2.0
            };
            if head + tail > len_ms + 1e-9 {
                errs.push(
                    SpecError::new(
                        format!("{path}.segments[{k}]"),
                        format!(
                            "is {len_ms:.1} ms long and its fades take {head:.1} + {tail:.1} ms: the crossfades overlap"
                        ),
                    )
                    .hint("lengthen the segment or shorten its crossfades"),
                );
            }
            if k > 0
                && a < (self.crossfade_at(k) / 2000.0 * u.per_second.0 as f64
                    / u.per_second.1 as f64)
                    .ceil() as u64
            {
                errs.push(
                    SpecError::new(
                        format!("{path}.segments[{k}].in"),
                        "is too close to the programme's start for its crossfade, which needs half its length of source before `in`",
                    )
                    .hint("start the segment later or shorten the crossfade"),
                );
            }
        }
        if let Some(d) = &self.duration {
            let total: u64 = u.segments.iter().map(|(a, b)| b - a).sum();
            match self.position(d, 0) {
                Err(e) => errs.push(SpecError::new(format!("{path}.duration"), e)),
                Ok(want) if want != total => errs.push(
                    SpecError::new(
                        format!("{path}.duration"),
                        format!(
                            "the segments come to {} but the edit must be {}",
                            self.describe_units(total),
                            self.describe_units(want)
                        ),
                    )
                    .hint("adjust the segments' in and out points"),
                ),
                Ok(_) => {}
            }
        }
        errs
    }

    fn describe_units(&self, n: u64) -> String {
        match (self.sample_rate, self.frame_rate) {
            (Some(sr), _) => format!("{n} samples at {sr} Hz"),
            (None, Some(fr)) => format!("{n} frames ({} at {fr} fps)", fr.timecode(n)),
            (None, None) => n.to_string(),
        }
    }

    /// The edit at working rate `rate`, checked against the programme's
    /// length (`programme` samples at `rate`). Errors name the field.
    pub fn pieces(&self, rate: u32, programme: u64) -> Result<Pieces, String> {
        let mut errs = Vec::new();
        let Some(u) = self.units("edit", &mut errs) else {
            return Err(errs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "));
        };
        let (num, den) = u.per_second;
        let at_rate = |units: u64| -> u64 {
            let x = u128::from(units) * u128::from(rate) * u128::from(den);
            ((2 * x + u128::from(num)) / (2 * u128::from(num))) as u64
        };
        let ms = |v: f64| -> u64 { (v * f64::from(rate) / 1000.0).round().max(0.0) as u64 };
        let n = u.segments.len();
        let mut record = Vec::with_capacity(n + 1);
        let mut acc = 0u64;
        record.push(0);
        for &(a, b) in &u.segments {
            acc += b - a;
            record.push(at_rate(acc));
        }
        let frames = record[n];
        let xf: Vec<u64> = (0..=n)
            .map(|k| {
                if k == 0 || k == n {
                    0
                } else {
                    ms(self.crossfade_at(k))
                }
            })
            .collect();
        let mut pieces = Vec::with_capacity(n);
        for (k, &(a, _)) in u.segments.iter().enumerate() {
            let src = at_rate(a);
            let pre = xf[k] / 2;
            let post = xf[k + 1] - xf[k + 1] / 2;
            let source_start = src.checked_sub(pre).ok_or_else(|| {
                format!(
                    "edit.segments[{k}].in: its crossfade needs {pre} samples of source before it and the programme starts {src} samples before; start the segment later or shorten the crossfade"
                )
            })?;
            let len = record[k + 1] - record[k] + pre + post;
            let piece = Piece {
                source_start,
                record_start: record[k] - pre,
                len,
                fade_in: if k == 0 {
                    ms(self.fade_in_ms.unwrap_or(DEFAULT_FADE_MS))
                } else {
                    xf[k]
                },
                fade_out: if k + 1 == n {
                    ms(self.fade_out_ms.unwrap_or(DEFAULT_FADE_MS))
                } else {
                    xf[k + 1]
                },
            };
            if piece.source_end() > programme {
                return Err(format!(
                    "edit.segments[{k}] runs to {} s of source (with its crossfade) and the programme is {} s long: set `out` inside the programme",
                    round3(piece.source_end() as f64 / f64::from(rate)),
                    round3(programme as f64 / f64::from(rate)),
                ));
            }
            if piece.fade_in + piece.fade_out > piece.len {
                return Err(format!(
                    "edit.segments[{k}]: its fades ({} + {} samples) are longer than it ({} samples); shorten them",
                    piece.fade_in, piece.fade_out, piece.len
                ));
            }
            pieces.push(piece);
        }
        Ok(Pieces {
            rate,
            pieces,
            frames,
            shape: self.shape(),
        })
    }

    /// Each segment in seconds: (source in, source out, record start, the
    /// handle before it, the handle after it). `None` if the edit does not
    /// check.
    fn seconds(&self) -> Option<Vec<[f64; 5]>> {
        let mut errs = Vec::new();
        let u = self.units("edit", &mut errs)?;
        let secs = |x: u64| x as f64 * u.per_second.1 as f64 / u.per_second.0 as f64;
        let n = u.segments.len();
        let mut record = 0u64;
        let mut out = Vec::with_capacity(n);
        for (k, &(a, b)) in u.segments.iter().enumerate() {
            let pre = if k == 0 {
                0.0
            } else {
                self.crossfade_at(k) / 2000.0
            };
            let post = if k + 1 == n {
                0.0
            } else {
                self.crossfade_at(k + 1) / 2000.0
            };
            out.push([secs(a), secs(b), secs(record), pre, post]);
            record += b - a;
        }
        Some(out)
    }

    /// Time ranges on the source's timeline (a title's `explicit` lyrics)
    /// carried onto the edit's: each part a segment plays (its handles
    /// included, which a crossfade lets through) lands where the segment
    /// does; parts no segment plays are dropped.
    pub fn map_ranges(&self, ranges: &[[f64; 2]]) -> Vec<[f64; 2]> {
        let Some(segs) = self.seconds() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &[s, e] in ranges {
            for &[a, b, rec, pre, post] in &segs {
                let (lo, hi) = (s.max(a - pre), e.min(b + post));
                if lo < hi {
                    out.push([(lo - a + rec).max(0.0), hi - a + rec]);
                }
            }
        }
        out
    }

    /// The manifest's record of the edit at `rate`.
    pub fn record(&self, rate: u32, programme: u64) -> EditRecord {
        let pieces = self.pieces(rate, programme).ok();
        EditRecord {
            of: self.of.clone(),
            name: self.name.clone(),
            frame_rate: self.frame_rate,
            sample_rate: rate,
            frames: pieces.as_ref().map_or(0, |p| p.frames),
            duration_s: pieces
                .as_ref()
                .map_or(0.0, |p| round3(p.frames as f64 / f64::from(rate))),
            crossfade_shape: self.shape(),
            edl: self.edl.clone(),
            segments: self
                .segments
                .iter()
                .enumerate()
                .map(|(k, s)| SegmentRecord {
                    source_in: s.start.clone(),
                    source_out: s.end.clone(),
                    crossfade_ms: (k > 0).then(|| self.crossfade_at(k)),
                    piece: pieces.as_ref().and_then(|p| p.pieces.get(k).copied()),
                })
                .collect(),
            fade_in_ms: self.fade_in_ms.unwrap_or(DEFAULT_FADE_MS),
            fade_out_ms: self.fade_out_ms.unwrap_or(DEFAULT_FADE_MS),
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// An edit as the manifest records it: what was asked and where each
/// segment landed at the output rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<FrameRate>,
    pub sample_rate: u32,
    pub frames: u64,
    pub duration_s: f64,
    pub crossfade_shape: FadeShape,
    pub fade_in_ms: f64,
    pub fade_out_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edl: Option<String>,
    pub segments: Vec<SegmentRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub source_in: Position,
    pub source_out: Position,
    /// The crossfade into it (every segment but the first), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crossfade_ms: Option<f64>,
    /// Where it landed, samples at the output rate (handles included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece: Option<Piece>,
}

/// A cutdown as written in a title (`[[titles.cutdowns]]`): the edit, its
/// name, and the variants it renders (default `full`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CutdownSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<String>>,
    #[serde(flatten)]
    pub edit: EditSpec,
}

/// Reads a CMX 3600 EDL into segments (timecode at `frame_rate`, or at
/// 29.97 drop-frame when the EDL says `FCM: DROP FRAME` and no rate is
/// given). Events on audio tracks are used (picture events when there are
/// none); dissolves (`D nnn`) become crossfades of that many frames
/// centred on the edit point; events must follow each other on the record
/// timeline without gaps.
pub fn read_edl(text: &str, frame_rate: Option<FrameRate>) -> Result<EditSpec, String> {
    let mut drop = None;
    struct Ev {
        line: usize,
        audio: bool,
        dissolve: Option<u64>,
        tc: [String; 4],
    }
    let mut events = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let up = line.to_ascii_uppercase();
        if let Some(fcm) = up.strip_prefix("FCM:") {
            drop = Some(fcm.trim().starts_with("DROP"));
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_none_or(|f| !f.chars().all(|c| c.is_ascii_digit()))
        {
            continue; // TITLE:, comments (*), blank lines
        }
        let tcs: Vec<&str> = fields
            .iter()
            .copied()
            .filter(|f| f.len() >= 11 && f.matches([':', ';']).count() == 3)
            .collect();
        if tcs.len() != 4 || fields.len() < 7 {
            return Err(format!(
                "line {}: an event needs number, reel, track, transition and four timecodes",
                i + 1
            ));
        }
        let reel = fields[1].to_ascii_uppercase();
        if matches!(reel.as_str(), "BL" | "BLK" | "BLACK") {
            return Err(format!(
                "line {}: a black (BL) event: stemforge cuts the title's own stems, without gaps",
                i + 1
            ));
        }
        let track = fields[2].to_ascii_uppercase();
        let trans = fields[3].to_ascii_uppercase();
        let dissolve = match trans.chars().next() {
            Some('C') => None,
            Some('D') | Some('W') => {
                let d = fields
                    .get(4)
                    .and_then(|d| d.parse::<u64>().ok())
                    .ok_or_else(|| {
                        format!("line {}: a dissolve needs its length in frames", i + 1)
                    })?;
                Some(d)
            }
            _ => {
                return Err(format!(
                    "line {}: transition `{}` is not supported (cuts C and dissolves D are)",
                    i + 1,
                    fields[3]
                ));
            }
        };
        events.push(Ev {
            line: i + 1,
            audio: track.starts_with('A') || track == "B" || track.contains("/A"),
            dissolve,
            tc: [
                tcs[0].to_string(),
                tcs[1].to_string(),
                tcs[2].to_string(),
                tcs[3].to_string(),
            ],
        });
    }
    let fr = match (frame_rate, drop) {
        (Some(f), Some(d)) if d != f.is_drop_frame() => {
            return Err(format!(
                "the EDL says {} and `frame_rate` is {f}: declare the rate the EDL counts at",
                if d {
                    "FCM: DROP FRAME"
                } else {
                    "FCM: NON-DROP FRAME"
                }
            ));
        }
        (Some(f), _) => f,
        (None, Some(true)) => FrameRate::Fps2997Df,
        (None, _) => {
            return Err(
                "the EDL does not say its frame rate: declare `frame_rate` (23.976, 24, 25, 29.97, 29.97df, 30)"
                    .into(),
            );
        }
    };
    let any_audio = events.iter().any(|e| e.audio);
    let mut segs: Vec<(u64, u64, u64, u64, Option<u64>, usize)> = Vec::new();
    let mut seen = BTreeMap::new();
    for e in events.iter().filter(|e| e.audio == any_audio) {
        let f = |k: usize| {
            fr.frames(&e.tc[k])
                .map_err(|m| format!("line {}: {m}", e.line))
        };
        let (si, so, ri, ro) = (f(0)?, f(1)?, f(2)?, f(3)?);
        if ro <= ri || so <= si {
            continue; // the zero-length "from" clip of a dissolve
        }
        if so - si != ro - ri {
            return Err(format!(
                "line {}: source and record durations differ (a speed change): stemforge cuts at speed",
                e.line
            ));
        }
        // The same event on several audio tracks: once.
        if seen.insert(ri, e.line).is_some() {
            continue;
        }
        segs.push((si, so, ri, ro, e.dissolve, e.line));
    }
    segs.sort_by_key(|s| s.2);
    if segs.is_empty() {
        return Err("the EDL has no events with a duration".into());
    }
    let mut out: Vec<SegmentSpec> = Vec::new();
    let mut ends: Vec<u64> = Vec::new();
    for (k, &(si, so, ri, ro, dissolve, line)) in segs.iter().enumerate() {
        let mut si = si;
        let mut crossfade_ms = None;
        if k > 0 {
            let prev_ro = segs[k - 1].3;
            if ri != prev_ro {
                return Err(format!(
                    "line {line}: the event starts at record {} but the one before ends at {}: stemforge joins events end to end, without gaps or overlaps",
                    fr.timecode(ri),
                    fr.timecode(prev_ro)
                ));
            }
            if let Some(d) = dissolve {
                // CMX dissolves start at the incoming event's record in;
                // ours are centred on the edit point: move it half-way in.
                // An odd dissolve loses its last frame, so the crossfade
                // stays whole frames either side of the edit point and
                // never reads before the incoming event's in point.
                let d = d - d % 2;
                let half = d / 2;
                if let (Some(prev), Some(end)) = (out.last_mut(), ends.last_mut()) {
                    *end += half;
                    prev.end = Position::Timecode(fr.timecode(*end));
                }
                si += half;
                let (num, den) = fr.ratio();
                crossfade_ms = Some(d as f64 * 1000.0 * den as f64 / num as f64);
            } else {
                crossfade_ms = None;
            }
        }
        if si >= so {
            return Err(format!("line {line}: the dissolve is as long as the event"));
        }
        out.push(SegmentSpec {
            start: Position::Timecode(fr.timecode(si)),
            end: Position::Timecode(fr.timecode(so)),
            crossfade_ms,
        });
        ends.push(so);
        let _ = ro;
    }
    Ok(EditSpec {
        frame_rate: Some(fr),
        segments: out,
        ..EditSpec::default()
    })
}

/// An EDL is text of a few kilobytes: anything over 1 MiB is refused
/// unread (a coordinator reads it while it answers the submission).
const MAX_EDL_BYTES: u64 = 1 << 20;

fn read_small(p: &Path) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    let mut text = String::new();
    f.take(MAX_EDL_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {} as text: {e}", p.display()))?;
    if text.len() as u64 > MAX_EDL_BYTES {
        return Err(format!("{} is over 1 MiB: not an EDL", p.display()));
    }
    Ok(text)
}

/// Expands every title's `cutdowns` into titles of their own (after their
/// title, in order): the title's stems and layout, no reference, the cut's
/// variants (default `full`) and its `edit`. An `edl` is read here, relative
/// to `base`, and only under `roots` (a coordinator's media roots; an EDL
/// elsewhere is refused unread). `Ok(None)`: no cutdowns (or not TOML: the
/// parser reports it).
pub fn expand(
    text: &str,
    base: &Path,
    file: Option<&Path>,
    roots: &crate::files::MediaRoots,
) -> Result<Option<String>, SpecErrors> {
    use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};
    if !text.contains("cutdowns") {
        return Ok(None);
    }
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return Ok(None);
    };
    let fail = |errors: Vec<SpecError>| SpecErrors {
        file: file.map(Path::to_path_buf),
        errors,
    };
    let tables: Vec<Table> = match doc.get("titles") {
        Some(Item::ArrayOfTables(a)) => a.iter().cloned().collect(),
        Some(Item::Value(Value::Array(a))) => a
            .iter()
            .filter_map(|v| v.as_inline_table().map(|t| t.clone().into_table()))
            .collect(),
        _ => return Ok(None),
    };
    if !tables.iter().any(|t| t.contains_key("cutdowns")) {
        return Ok(None);
    }
    let has_full = match doc.get("variants").and_then(Item::as_table_like) {
        None => true,
        Some(v) => v.contains_key("full"),
    };
    let mut errs = Vec::new();
    let mut out = ArrayOfTables::new();
    let mut names: Vec<String> = tables
        .iter()
        .filter_map(|t| {
            t.get("name")
                .and_then(Item::as_str)
                .map(crate::naming::slug)
        })
        .collect();
    for (ti, t) in tables.into_iter().enumerate() {
        // Written back with its sub-tables inline: the document orders
        // `[[titles.stems]]` headers by their old positions, which would
        // hang them under the wrong title once cuts are inserted.
        let mut t = flat(&t);
        let cuts = t.remove("cutdowns");
        let parent = t
            .get("name")
            .and_then(Item::as_str)
            .unwrap_or("")
            .to_string();
        let base_table = {
            let mut b = t.clone();
            b.remove("reference");
            b.remove("variants");
            b.remove("edit");
            b
        };
        out.push(t);
        let Some(cuts) = cuts else { continue };
        let list: Vec<Table> = match cuts {
            Item::ArrayOfTables(a) => a.into_iter().collect(),
            Item::Value(Value::Array(a)) => a
                .into_iter()
                .filter_map(|v| match v {
                    Value::InlineTable(t) => Some(t.into_table()),
                    _ => None,
                })
                .collect(),
            _ => {
                errs.push(
                    SpecError::new(format!("titles[{ti}].cutdowns"), "must be a list of tables")
                        .hint("write each cut as a [[titles.cutdowns]] table"),
                );
                continue;
            }
        };
        for (ci, c) in list.into_iter().enumerate() {
            let path = format!("titles[{ti}].cutdowns[{ci}]");
            let mut cut: CutdownSpec = match toml::from_str::<CutdownSpec>(&c.to_string()) {
                Ok(c) => c,
                Err(e) => {
                    errs.push(
                        SpecError::new(path, e.message().trim().to_string())
                            .hint("a cutdown has a name, and segments or an edl"),
                    );
                    continue;
                }
            };
            if let Some(edl) = cut.edit.edl.clone() {
                if !cut.edit.segments.is_empty() {
                    errs.push(
                        SpecError::new(format!("{path}.edl"), "is given with segments")
                            .hint("take the segments from the EDL or list them, not both"),
                    );
                    continue;
                }
                let p = crate::files::resolve(base, &edl);
                let read = roots
                    .confine(&p)
                    .map_err(|why| format!("{} is not allowed: {why}", p.display()))
                    .and_then(|p| read_small(&p))
                    .and_then(|t| read_edl(&t, cut.edit.frame_rate));
                match read {
                    Ok(e) => {
                        cut.edit.frame_rate = e.frame_rate;
                        cut.edit.segments = e.segments;
                    }
                    Err(e) => {
                        errs.push(
                            SpecError::new(format!("{path}.edl"), e)
                                .hint("give a CMX 3600 EDL of cuts and dissolves"),
                        );
                        continue;
                    }
                }
            }
            let name = format!("{parent} {}", cut.name.trim());
            if crate::naming::slug(&cut.name).is_empty() {
                errs.push(
                    SpecError::new(format!("{path}.name"), "has no letters or digits")
                        .hint("name the cut, e.g. \"30s\""),
                );
                continue;
            }
            let slug = crate::naming::slug(&name);
            if names.contains(&slug) {
                errs.push(
                    SpecError::new(
                        format!("{path}.name"),
                        format!("`{name}` gives the same file names as another title"),
                    )
                    .hint("give each cut a distinct name"),
                );
                continue;
            }
            names.push(slug);
            if cut.variants.is_none() && !has_full {
                errs.push(
                    SpecError::new(
                        format!("{path}.variants"),
                        "is not given and the spec has no `full` variant",
                    )
                    .hint("list the variants this cut renders"),
                );
                continue;
            }
            let check = cut.edit.check(&path);
            if !check.is_empty() {
                errs.extend(check);
                continue;
            }
            let mut edit = cut.edit.clone();
            edit.of = Some(parent.clone());
            edit.name = Some(cut.name.clone());
            let mut d = base_table.clone();
            d.insert("name", toml_edit::value(name));
            // The title's explicit-lyric ranges are times on its stems: a
            // clean version of the cut mutes them where the cut plays them.
            d.remove("explicit");
            if let Some(x) = base_table.get("explicit") {
                #[derive(Deserialize)]
                struct Explicit {
                    explicit: Vec<crate::model::TimeRange>,
                }
                let written: Vec<crate::model::TimeRange> =
                    toml::from_str::<Explicit>(&format!("explicit = {x}"))
                        .map(|e| e.explicit)
                        .unwrap_or_default();
                let mapped = edit.map_ranges(&crate::model::merge_ranges(&written));
                if !mapped.is_empty() {
                    let mut arr = toml_edit::Array::new();
                    for [a, b] in mapped {
                        let mut pair = toml_edit::Array::new();
                        pair.push(a);
                        pair.push(b);
                        arr.push(pair);
                    }
                    d.insert("explicit", toml_edit::value(arr));
                }
            }
            let variants = cut.variants.clone().unwrap_or_else(|| vec!["full".into()]);
            let mut arr = toml_edit::Array::new();
            for v in variants {
                arr.push(v);
            }
            d.insert("variants", toml_edit::value(arr));
            match serde_json::to_value(&edit).map(|v| inline(&v)) {
                Ok(Some(e)) => {
                    d.insert("edit", Item::Value(e));
                }
                Ok(None) | Err(_) => {
                    errs.push(SpecError::new(path, "cannot be written as TOML"));
                }
            }
            out.push(d);
        }
    }
    if !errs.is_empty() {
        return Err(fail(errs));
    }
    doc.insert("titles", Item::ArrayOfTables(out));
    Ok(Some(doc.to_string()))
}

/// `t` with every sub-table and array of tables written inline, in a new
/// table (no positions from the document it came from).
fn flat(t: &toml_edit::Table) -> toml_edit::Table {
    use toml_edit::{Item, Value};
    let mut out = toml_edit::Table::new();
    for (k, item) in t.iter() {
        let v = match item {
            Item::None => continue,
            Item::Value(v) => v.clone(),
            Item::Table(sub) => Value::InlineTable(flat(sub).into_inline_table()),
            Item::ArrayOfTables(a) => {
                let mut arr = toml_edit::Array::new();
                for sub in a.iter() {
                    arr.push(Value::InlineTable(flat(sub).into_inline_table()));
                }
                Value::Array(arr)
            }
        };
        out.insert(k, Item::Value(v));
    }
    out
}

/// A JSON value as an inline TOML value (`None`: JSON null, which TOML
/// cannot hold; serde skips the `None` fields of an edit before this).
fn inline(v: &serde_json::Value) -> Option<toml_edit::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => (*b).into(),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            (None, None) => return None,
        },
        J::String(s) => s.as_str().into(),
        J::Array(a) => {
            let mut out = toml_edit::Array::new();
            for x in a {
                out.push(inline(x)?);
            }
            toml_edit::Value::Array(out)
        }
        J::Object(m) => {
            let mut t = toml_edit::InlineTable::new();
            for (k, x) in m {
                t.insert(k, inline(x)?);
            }
            toml_edit::Value::InlineTable(t)
        }
    })
}

#[cfg(test)]
mod tests;
