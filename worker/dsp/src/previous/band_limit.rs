//! The band limit before its FIR ran several outputs at once, verbatim but
//! for names: the reference the current one must match bit for bit.

use crate::band_limit::design;
use crate::block::Block;
use crate::node::Node;

const TAPS: usize = 121;

pub struct BandLimit {
    taps: Vec<f64>,
    /// Per channel: history, stored twice over so every window is one slice.
    hist: Vec<Vec<f64>>,
    pos: usize,
}

impl BandLimit {
    pub fn new() -> Self {
        BandLimit {
            taps: design(),
            hist: Vec::new(),
            pos: 0,
        }
    }
}

/// The symmetric FIR over one window (oldest to newest): taps are folded
/// (h[k] = h[N-1-k]) and summed in four interleaved partial sums, combined in
/// a fixed order — deterministic, and quick without any reordering by the
/// compiler.
#[inline]
fn fir(h: &[f64], w: &[f64]) -> f64 {
    const HALF: usize = (TAPS - 1) / 2;
    let (h, w) = (&h[..TAPS], &w[..TAPS]);
    let mut acc = [0.0f64; 4];
    let mut k = 0;
    while k + 4 <= HALF {
        for j in 0..4 {
            acc[j] += h[k + j] * (w[k + j] + w[TAPS - 1 - k - j]);
        }
        k += 4;
    }
    while k < HALF {
        acc[0] += h[k] * (w[k] + w[TAPS - 1 - k]);
        k += 1;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + h[HALF] * w[HALF]
}

impl Node for BandLimit {
    fn name(&self) -> &'static str {
        "band_limit"
    }
    fn prepare(&mut self, _: u32, channels: usize, _: usize) {
        self.hist = vec![vec![0.0; 2 * TAPS]; channels];
        self.pos = 0;
    }
    fn reset(&mut self) {
        for h in &mut self.hist {
            h.fill(0.0);
        }
        self.pos = 0;
    }
    fn latency(&self) -> usize {
        (TAPS - 1) / 2
    }
    fn process(&mut self, block: &mut Block) {
        let start = self.pos;
        for (ch, hist) in self.hist.iter_mut().enumerate().take(block.channels()) {
            let mut p = start;
            for x in block.channel_mut(ch) {
                // Newest sample at p and p + TAPS; the window hist[p+1 ..= p+TAPS]
                // runs oldest to newest.
                hist[p] = *x;
                hist[p + TAPS] = *x;
                *x = fir(&self.taps, &hist[p + 1..p + 1 + TAPS]);
                p += 1;
                if p == TAPS {
                    p = 0;
                }
            }
        }
        self.pos = (start + block.frames()) % TAPS;
    }
}
