//! A block of planar f64 audio with a fixed capacity, allocated once.

/// Planar audio: `channels` buffers of `capacity` samples, `frames` of them valid.
#[derive(Debug, Clone)]
pub struct Block {
    data: Vec<Vec<f64>>,
    frames: usize,
}

impl Block {
    /// Allocates a silent block. The only allocation a block ever makes.
    pub fn new(channels: usize, capacity: usize) -> Self {
        Block {
            data: vec![vec![0.0; capacity]; channels],
            frames: 0,
        }
    }

    pub fn channels(&self) -> usize {
        self.data.len()
    }

    pub fn capacity(&self) -> usize {
        self.data.first().map_or(0, Vec::len)
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Sets the valid length (clamped to capacity).
    pub fn set_frames(&mut self, frames: usize) {
        self.frames = frames.min(self.capacity());
    }

    pub fn channel(&self, ch: usize) -> &[f64] {
        &self.data[ch][..self.frames]
    }

    pub fn channel_mut(&mut self, ch: usize) -> &mut [f64] {
        let n = self.frames;
        &mut self.data[ch][..n]
    }

    /// Every channel's valid samples, mutably.
    pub fn channels_mut(&mut self) -> impl Iterator<Item = &mut [f64]> {
        let n = self.frames;
        self.data.iter_mut().map(move |c| &mut c[..n])
    }

    /// The full-capacity buffers, for readers that fill them.
    pub fn raw_mut(&mut self) -> &mut [Vec<f64>] {
        &mut self.data
    }

    /// Zeroes `frames` frames and makes them valid.
    pub fn silence(&mut self, frames: usize) {
        self.set_frames(frames);
        for c in self.channels_mut() {
            c.fill(0.0);
        }
    }

    /// Copies `src` (same channel count) into this block.
    pub fn copy_from(&mut self, src: &Block) {
        self.set_frames(src.frames);
        for (d, s) in self.data.iter_mut().zip(&src.data) {
            d[..src.frames].copy_from_slice(&s[..src.frames]);
        }
    }

    /// Copies `len` frames of `src` starting at `start` into this block.
    pub fn copy_range_from(&mut self, src: &Block, start: usize, len: usize) {
        self.set_frames(len);
        for (d, s) in self.data.iter_mut().zip(&src.data) {
            d[..len].copy_from_slice(&s[start..start + len]);
        }
    }

    /// `self += gain * src`, sample by sample, in a fixed order (deterministic).
    pub fn add_scaled(&mut self, src: &Block, gain: f64) {
        let n = self.frames.min(src.frames);
        for (d, s) in self.data.iter_mut().zip(&src.data) {
            for (x, y) in d[..n].iter_mut().zip(&s[..n]) {
                *x += gain * y;
            }
        }
    }

    /// Largest absolute sample value.
    pub fn peak(&self) -> f64 {
        self.data
            .iter()
            .flat_map(|c| &c[..self.frames])
            .fold(0.0_f64, |m, x| m.max(x.abs()))
    }
}
