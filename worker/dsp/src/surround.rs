//! 5.1 specifics: a node run on one channel only (the LFE low-pass) and the
//! stereo fold-down matrix (ITU-R BS.775 Lo/Ro by default).
//!
//! Channel order is WAV's: L R C LFE Ls Rs.

use super::block::Block;
use super::node::{Node, db_to_gain};

pub const LEFT: usize = 0;
pub const RIGHT: usize = 1;
pub const CENTER: usize = 2;
pub const LFE: usize = 3;
pub const LEFT_SURROUND: usize = 4;
pub const RIGHT_SURROUND: usize = 5;

/// Runs `inner` on one channel of the block; the others pass untouched.
pub struct ChannelNode {
    inner: Box<dyn Node>,
    channel: usize,
    scratch: Block,
}

impl ChannelNode {
    /// `inner` is prepared here for one channel.
    pub fn new(
        mut inner: Box<dyn Node>,
        channel: usize,
        sample_rate: u32,
        max_block: usize,
    ) -> Self {
        inner.prepare(sample_rate, 1, max_block);
        ChannelNode {
            inner,
            channel,
            scratch: Block::new(1, max_block),
        }
    }

    pub fn latency(&self) -> usize {
        self.inner.latency()
    }

    pub fn process(&mut self, block: &mut Block) {
        if self.channel >= block.channels() {
            return;
        }
        let n = block.frames();
        self.scratch.set_frames(n);
        self.scratch
            .channel_mut(0)
            .copy_from_slice(&block.channel(self.channel)[..n]);
        self.inner.process(&mut self.scratch);
        block.channel_mut(self.channel)[..n].copy_from_slice(&self.scratch.channel(0)[..n]);
    }
}

/// Linear gains of a fold-down: Lo = L + c·C + s·Ls + f·LFE, Ro = R + c·C +
/// s·Rs + f·LFE.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FoldMatrix {
    pub center: f64,
    pub surround: f64,
    /// 0 drops the LFE.
    pub lfe: f64,
}

impl FoldMatrix {
    /// From the spec's dB values: `None` is BS.775's 1/√2 for the centre and
    /// surrounds, and "dropped" for the LFE.
    pub fn from_db(center_db: Option<f64>, surround_db: Option<f64>, lfe_db: Option<f64>) -> Self {
        let bs775 = std::f64::consts::FRAC_1_SQRT_2;
        FoldMatrix {
            center: center_db.map_or(bs775, db_to_gain),
            surround: surround_db.map_or(bs775, db_to_gain),
            lfe: lfe_db.map_or(0.0, db_to_gain),
        }
    }

    /// Folds a 5.1 block into a stereo one, each output sample summed in a
    /// fixed order (front, centre, surround, LFE).
    pub fn fold(&self, input: &Block, out: &mut Block) {
        let n = input.frames();
        out.set_frames(n);
        let c = &input.channel(CENTER)[..n];
        let lfe = &input.channel(LFE)[..n];
        for (side, (front, surround)) in [(LEFT, LEFT_SURROUND), (RIGHT, RIGHT_SURROUND)]
            .into_iter()
            .enumerate()
        {
            let f = &input.channel(front)[..n];
            let s = &input.channel(surround)[..n];
            let o = &mut out.channel_mut(side)[..n];
            for i in 0..n {
                let mut v = f[i] + self.center * c[i] + self.surround * s[i];
                if self.lfe != 0.0 {
                    v += self.lfe * lfe[i];
                }
                o[i] = v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eq::{Eq, EqKind};

    fn block_of(ch: &[Vec<f64>]) -> Block {
        let n = ch[0].len();
        let mut b = Block::new(ch.len(), n);
        b.set_frames(n);
        for (i, c) in ch.iter().enumerate() {
            b.channel_mut(i).copy_from_slice(c);
        }
        b
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // frame i across six parallel channels
    fn bs775_fold_is_the_formula() {
        let ch: Vec<Vec<f64>> = (0..6)
            .map(|c| {
                (0..64)
                    .map(|i| ((i * 7 + c * 13) % 17) as f64 / 17.0 - 0.5)
                    .collect()
            })
            .collect();
        let b = block_of(&ch);
        let mut out = Block::new(2, 64);
        FoldMatrix::from_db(None, None, None).fold(&b, &mut out);
        let k = std::f64::consts::FRAC_1_SQRT_2;
        for i in 0..64 {
            let lo = ch[0][i] + k * ch[2][i] + k * ch[4][i];
            let ro = ch[1][i] + k * ch[2][i] + k * ch[5][i];
            assert_eq!(out.channel(0)[i], lo);
            assert_eq!(out.channel(1)[i], ro);
        }
        // The LFE at -10 dB when asked for.
        FoldMatrix::from_db(Some(-6.0), Some(0.0), Some(-10.0)).fold(&b, &mut out);
        let (c, f) = (db_to_gain(-6.0), db_to_gain(-10.0));
        for i in 0..64 {
            let lo = ch[0][i] + c * ch[2][i] + ch[4][i] + f * ch[3][i];
            assert!((out.channel(0)[i] - lo).abs() < 1e-15);
        }
    }

    #[test]
    fn channel_node_touches_one_channel() {
        let lp = Eq::new(
            EqKind::LowPass {
                freq_hz: 120.0,
                slope_db_oct: 24,
            },
            48_000,
        )
        .expect("eq");
        let mut node = ChannelNode::new(Box::new(lp), LFE, 48_000, 4800);
        // A 2 kHz tone on every channel: only the LFE loses it.
        let tone: Vec<f64> = (0..4800)
            .map(|i| (std::f64::consts::TAU * 2000.0 * i as f64 / 48_000.0).sin())
            .collect();
        let mut b = block_of(&vec![tone.clone(); 6]);
        node.process(&mut b);
        for c in [0, 1, 2, 4, 5] {
            assert_eq!(b.channel(c), &tone[..]);
        }
        let tail_peak = b.channel(LFE)[2400..]
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()));
        // 24 dB/oct, 4 octaves above 120 Hz: about -96 dB.
        assert!(tail_peak < 10f64.powf(-80.0 / 20.0), "{tail_peak}");
    }
}
