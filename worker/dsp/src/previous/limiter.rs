//! The limiter before the detector skipped frames and the gain computer
//! took shortcuts, verbatim but for names: the reference the current one
//! must match bit for bit.

use crate::block::Block;
use crate::math::DetMath;
use crate::node::{Node, db_to_gain};
use crate::previous::true_peak::Previous as TruePeakDetector;

use crate::limiter::LimiterParams;

const INTERNAL_MARGIN_DB: f64 = 0.05;

const SCALE: f64 = (1u64 << 40) as f64;
const SNAP: f64 = 1.0 / (1u64 << 30) as f64;

pub struct Limiter {
    params: LimiterParams,
    state: Option<State>,
}

struct State {
    channels: usize,
    detector: TruePeakDetector,
    target: f64,
    hold: MinWindow,
    box1: BoxMean,
    box2: BoxMean,
    alpha: f64,
    gain: f64,
    delay: Vec<Vec<f64>>,
    delay_pos: usize,
    latency: usize,
    envelope: Vec<f64>,
    envelope_len: usize,
}

impl Limiter {
    pub fn new(p: LimiterParams) -> Limiter {
        Limiter {
            params: p,
            state: None,
        }
    }

    #[inline]
    fn gain_for(st: &mut State, sample: impl Fn(usize) -> f64) -> f64 {
        let tp = st.detector.step(sample);
        let r = if tp > st.target { st.target / tp } else { 1.0 };
        let h = st.hold.push(r);
        let s = st.box2.push(st.box1.push(h));
        let mut released = 1.0 - (1.0 - st.gain) * st.alpha;
        if released > 1.0 - SNAP {
            released = 1.0;
        }
        let g = if s < released { s } else { released };
        st.gain = g;
        g
    }
}

impl Node for Limiter {
    fn name(&self) -> &'static str {
        "limiter"
    }

    fn prepare(&mut self, sample_rate: u32, channels: usize, max_block: usize) {
        let sr = f64::from(sample_rate.max(1));
        let p = self.params;
        let ms = if p.lookahead_ms.is_finite() {
            p.lookahead_ms.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let lookahead = ((ms * sr / 1000.0).round() as usize).max(1);
        // Flat zone: `before` frames ahead of each peak, `lookahead` after.
        let before = (lookahead / 4).max(1);
        let after = lookahead;
        let b = lookahead + 1 - before;
        let b1 = b.div_ceil(2);
        let b2 = b + 1 - b1;
        let release_frames = if p.release_ms.is_finite() {
            p.release_ms.max(0.0) * sr / 1000.0
        } else {
            0.0
        };
        let alpha = if release_frames > 0.0 {
            (-1.0 / release_frames).dexp()
        } else {
            0.0
        };
        // The spec validates the ceiling; a non-finite one here means 0 dBTP.
        let ceiling_db = if p.ceiling_db.is_finite() {
            p.ceiling_db
        } else {
            0.0
        };
        let detector = TruePeakDetector::new(channels, sample_rate);
        let latency = lookahead + detector.delay();
        self.state = Some(State {
            channels,
            detector,
            target: db_to_gain(ceiling_db - INTERNAL_MARGIN_DB),
            hold: MinWindow::new(after + lookahead + 1),
            box1: BoxMean::new(b1),
            box2: BoxMean::new(b2),
            alpha,
            gain: 1.0,
            delay: vec![vec![0.0; latency]; channels],
            delay_pos: 0,
            latency,
            envelope: vec![1.0; max_block],
            envelope_len: 0,
        });
    }

    fn reset(&mut self) {
        if let Some(st) = &mut self.state {
            st.detector.reset();
            st.hold.reset();
            st.box1.reset();
            st.box2.reset();
            st.gain = 1.0;
            for d in &mut st.delay {
                d.fill(0.0);
            }
            st.delay_pos = 0;
            st.envelope_len = 0;
        }
    }

    fn latency(&self) -> usize {
        self.state.as_ref().map_or(0, |s| s.latency)
    }

    fn process(&mut self, block: &mut Block) {
        let Some(st) = &mut self.state else {
            return;
        };
        let frames = block.frames();
        debug_assert_eq!(block.channels(), st.channels, "limiter: channel count");
        if frames > st.envelope.len() {
            // More than `max_block`: a caller bug; grow once rather than fail.
            st.envelope.resize(frames, 1.0);
        }
        let channels = st.channels.min(block.channels());
        for i in 0..frames {
            let g = Self::gain_for(st, |c| {
                if c < channels {
                    block.channel(c)[i]
                } else {
                    0.0
                }
            });
            st.envelope[i] = g;
        }
        st.envelope_len = frames;
        let env = &st.envelope[..frames];
        let lat = st.latency;
        for ch in 0..channels {
            let ring = &mut st.delay[ch];
            let mut pos = st.delay_pos;
            for (x, &g) in block.channel_mut(ch).iter_mut().zip(env) {
                let d = ring[pos];
                ring[pos] = *x;
                *x = d * g;
                pos += 1;
                if pos == lat {
                    pos = 0;
                }
            }
        }
        st.delay_pos = (st.delay_pos + frames) % lat;
    }

    fn gain_envelope(&self) -> Option<&[f64]> {
        Some(
            self.state
                .as_ref()
                .map_or(&[][..], |s| &s.envelope[..s.envelope_len]),
        )
    }
}

struct MinWindow {
    len: u64,
    idx: Vec<u64>,
    val: Vec<f64>,
    head: usize,
    count: usize,
    t: u64,
}

impl MinWindow {
    fn new(len: usize) -> Self {
        MinWindow {
            len: len as u64,
            idx: vec![0; len],
            val: vec![0.0; len],
            head: 0,
            count: 0,
            t: 0,
        }
    }

    fn reset(&mut self) {
        self.head = 0;
        self.count = 0;
        self.t = 0;
    }

    #[inline]
    fn push(&mut self, v: f64) -> f64 {
        let cap = self.val.len();
        let wrap = |i: usize| if i >= cap { i - cap } else { i };
        // Drop what fell out of the window, then every value ≥ v from the back.
        while self.count > 0 && self.idx[self.head] + self.len <= self.t {
            self.head = wrap(self.head + 1);
            self.count -= 1;
        }
        while self.count > 0 && self.val[wrap(self.head + self.count - 1)] >= v {
            self.count -= 1;
        }
        let pos = wrap(self.head + self.count);
        self.idx[pos] = self.t;
        self.val[pos] = v;
        self.count += 1;
        self.t += 1;
        self.val[self.head]
    }
}

struct BoxMean {
    ring: Vec<u64>,
    pos: usize,
    sum: u64,
    norm: f64,
}

impl BoxMean {
    fn new(len: usize) -> Self {
        let len = len.max(1);
        BoxMean {
            ring: vec![SCALE as u64; len],
            pos: 0,
            sum: SCALE as u64 * len as u64,
            norm: SCALE * len as f64,
        }
    }

    fn reset(&mut self) {
        self.ring.fill(SCALE as u64);
        self.pos = 0;
        self.sum = SCALE as u64 * self.ring.len() as u64;
    }

    #[inline]
    fn push(&mut self, v: f64) -> f64 {
        // `as` saturates: NaN → 0, and v ≤ 1 by construction.
        let q = (v * SCALE) as u64;
        self.sum = self.sum - self.ring[self.pos] + q;
        self.ring[self.pos] = q;
        self.pos = if self.pos + 1 == self.ring.len() {
            0
        } else {
            self.pos + 1
        };
        self.sum as f64 / self.norm
    }
}
