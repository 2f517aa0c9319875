//! The implementation before work was skipped (stage 1 and stage 2 run
//! on every frame, ring buffers), verbatim but for names: the reference
//! the current one must match bit for bit.

use crate::math::DetMath;
use crate::true_peak::{parabola_peak, polyphase};
use std::f64::consts::PI;

pub(crate) struct Previous {
    channels: usize,
    l2: usize,
    m1: usize,
    m2: usize,
    c1: Vec<f64>,
    group: usize,
    groups: usize,
    c2: Vec<f64>,
    hist1: Vec<Vec<f64>>,
    rev1: Vec<Vec<f64>>,
    pos1: usize,
    rpos1: usize,
    hist2: Vec<Vec<f64>>,
    pos2: usize,
    prev_last: Vec<f64>,
    seq: Vec<f64>,
    lanes: Vec<f64>,
    refine_floor: f64,
    pub(crate) max: f64,
}

impl Previous {
    pub(crate) fn new(channels: usize, sample_rate: u32) -> Self {
        Self::with_design(
            channels,
            crate::true_peak::oversample_for(sample_rate),
            crate::true_peak::STAGE1_HALF,
            crate::true_peak::STAGE1_BETA,
            crate::true_peak::STAGE2_HALF,
            crate::true_peak::STAGE2_BETA,
        )
    }

    pub(crate) fn delay(&self) -> usize {
        self.m1 + self.m2 / 2
    }

    pub(crate) fn reset(&mut self) {
        for h in self
            .hist1
            .iter_mut()
            .chain(&mut self.rev1)
            .chain(&mut self.hist2)
        {
            h.fill(0.0);
        }
        self.prev_last.fill(0.0);
        self.pos1 = 0;
        self.rpos1 = 0;
        self.pos2 = 0;
        self.max = 0.0;
    }

    pub(crate) fn with_design(
        channels: usize,
        oversample: usize,
        half1: usize,
        beta1: f64,
        half2: usize,
        beta2: f64,
    ) -> Self {
        let l2 = oversample.div_ceil(2).max(1);
        let m1 = half1.max(8).div_ceil(8) * 8;
        let m2 = if l2 == 1 {
            0
        } else {
            half2.max(2).div_ceil(2) * 2
        };
        let c1 = polyphase(2, m1, beta1)[1][..m1].to_vec();
        let phases = l2 - 1;
        let group = if phases <= 4 { 4 } else { 8 };
        let groups = phases.div_ceil(group);
        let t2 = 2 * m2;
        let mut c2 = vec![0.0; groups * t2 * group];
        if l2 > 1 {
            let table = polyphase(l2, m2, beta2);
            for (p, row) in table.iter().enumerate().skip(1) {
                let lane = p - 1;
                let (g, l) = (lane / group, lane % group);
                for (k, &c) in row.iter().enumerate() {
                    c2[g * t2 * group + k * group + l] = c;
                }
            }
        }
        Previous {
            channels,
            l2,
            m1,
            m2,
            c1,
            group,
            groups,
            c2,
            hist1: vec![vec![0.0; 4 * m1]; channels],
            rev1: vec![vec![0.0; 4 * m1]; channels],
            pos1: 0,
            rpos1: 0,
            hist2: vec![vec![0.0; 2 * t2]; channels],
            pos2: 0,
            prev_last: vec![0.0; channels],
            seq: vec![0.0; 2 * l2 + 2],
            lanes: vec![0.0; groups * group],
            refine_floor: 0.99 * (PI / (4 * l2) as f64).dcos(),
            max: 0.0,
        }
    }

    pub(crate) fn step(&mut self, sample: impl Fn(usize) -> f64) -> f64 {
        let (m1, m2, l2) = (self.m1, self.m2, self.l2);
        let t1 = 2 * m1;
        let t2 = 2 * m2;
        let pos1 = self.pos1;
        let rpos1 = if self.rpos1 == 0 {
            t1 - 1
        } else {
            self.rpos1 - 1
        };
        let pos2a = self.pos2;
        let pos2b = if pos2a + 1 == t2 { 0 } else { pos2a + 1 };
        let mut best = 0.0_f64;
        for ch in 0..self.channels {
            let x = sample(ch);
            let h1 = &mut self.hist1[ch];
            h1[pos1] = x;
            h1[pos1 + t1] = x;
            let w1 = &h1[pos1 + 1..pos1 + 1 + t1];
            let r1 = &mut self.rev1[ch];
            r1[rpos1] = x;
            r1[rpos1 + t1] = x;
            let rw1 = &r1[rpos1..rpos1 + t1];
            // Stage 1: the input `m1` frames back, the half-way point after
            // it, and the input after that.
            let centre = w1[m1 - 1];
            let mid = half_band(&self.c1, &w1[..m1], &rw1[..m1]);
            let next = w1[m1];
            let seq = &mut self.seq;
            seq[0] = self.prev_last[ch];
            if l2 == 1 {
                seq[1] = centre;
                seq[2] = mid;
                seq[3] = next;
            } else {
                // Stage 2: push both stage-1 points; after each, the point
                // `m2` back (phase 0) and phases 1..l2-1 after it.
                let h2 = &mut self.hist2[ch];
                for (half, (pos, v)) in [(pos2a, centre), (pos2b, mid)].into_iter().enumerate() {
                    h2[pos] = v;
                    h2[pos + t2] = v;
                    let w2 = &h2[pos + 1..pos + 1 + t2];
                    let base = 1 + half * l2;
                    seq[base] = w2[m2 - 1];
                    for g in 0..self.groups {
                        let gl = self.group;
                        let c = &self.c2[g * t2 * gl..(g + 1) * t2 * gl];
                        let out = &mut self.lanes[g * gl..(g + 1) * gl];
                        if gl == 8 {
                            dot_group::<8>(c, w2, out);
                        } else {
                            dot_group::<4>(c, w2, out);
                        }
                    }
                    for (d, &v) in seq[base + 1..base + l2].iter_mut().zip(&self.lanes) {
                        *d = v;
                    }
                    if half == 1 {
                        seq[2 * l2 + 1] = w2[m2];
                    }
                }
            }
            self.prev_last[ch] = seq[2 * l2];
            let v = refined_max(seq, self.refine_floor);
            if v > best {
                best = v;
            }
        }
        self.pos1 = if pos1 + 1 == t1 { 0 } else { pos1 + 1 };
        self.rpos1 = rpos1;
        if l2 > 1 {
            self.pos2 = if pos2b + 1 == t2 { 0 } else { pos2b + 1 };
        }
        self.max = self.max.max(best);
        best
    }
}

#[inline(always)]
fn half_band(c: &[f64], old: &[f64], new: &[f64]) -> f64 {
    let mut acc = [0.0_f64; 8];
    for ((cc, o), n) in c
        .chunks_exact(8)
        .zip(old.chunks_exact(8))
        .zip(new.chunks_exact(8))
    {
        for i in 0..8 {
            acc[i] += cc[i] * (o[i] + n[i]);
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

#[inline(always)]
fn dot_group<const G: usize>(coefs: &[f64], w: &[f64], out: &mut [f64]) {
    let half = w.len() / 2;
    let (c_lo, c_hi) = coefs.split_at(half * G);
    let (w_lo, w_hi) = w.split_at(half);
    let mut a = [0.0_f64; G];
    let mut b = [0.0_f64; G];
    for ((cl, ch), (&xl, &xh)) in c_lo
        .chunks_exact(G)
        .zip(c_hi.chunks_exact(G))
        .zip(w_lo.iter().zip(w_hi))
    {
        for i in 0..G {
            a[i] += cl[i] * xl;
            b[i] += ch[i] * xh;
        }
    }
    for i in 0..G {
        out[i] = a[i] + b[i];
    }
}

#[inline]
fn refined_max(seq: &[f64], floor: f64) -> f64 {
    let n = seq.len();
    let mut grid = 0.0_f64;
    for x in &seq[1..n - 1] {
        let a = x.abs();
        if a > grid {
            grid = a;
        }
    }
    let mut best = grid;
    let floor = grid * floor;
    for i in 1..n - 1 {
        let b = seq[i].abs();
        if b >= floor && b >= seq[i - 1].abs() && b >= seq[i + 1].abs() {
            let v = parabola_peak(seq[i - 1], seq[i], seq[i + 1]);
            if v > best {
                best = v;
            }
        }
    }
    best
}
