//! A recorded multichannel signal, replayed block by block: the blocks of
//! one or more streams, written once in order and read back in the same
//! order as often as needed.
//!
//! Memory stays bounded whatever the duration: blocks are kept in memory
//! up to `memory_bound` bytes in all; every block after that goes to a
//! temporary file (raw f64, little-endian, channel after channel), which is
//! removed when the cache drops, on every path (errors, cancels, panics
//! included).

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::dsp::Block;

/// Bytes of samples kept in memory, in all streams, before spilling.
pub const DEFAULT_MEMORY_BOUND: usize = 64 << 20;

const SAMPLE_BYTES: usize = std::mem::size_of::<f64>();

/// A temporary file, removed on drop.
#[derive(Debug)]
struct SpillFile {
    path: PathBuf,
}

impl SpillFile {
    /// Creates a fresh file in `dir` (never an existing one: two workers
    /// sharing the folder cannot collide).
    fn create(dir: &Path) -> io::Result<(SpillFile, File)> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        loop {
            let path = dir.join(format!(
                ".stemforge-analysis.{}-{}-{nanos}.f64",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(f) => return Ok((SpillFile { path }, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

enum Spill {
    None,
    Writing(SpillFile, BufWriter<File>),
    Reading(SpillFile, BufReader<File>),
}

/// Blocks written in one order and replayed in that order.
pub struct SignalCache {
    memory_bound: usize,
    spill_dir: PathBuf,
    mem: Vec<f64>,
    /// Blocks held in memory: always the first ones written.
    mem_blocks: usize,
    blocks: usize,
    spill: Spill,
    spilled_bytes: u64,
    bytes: Vec<u8>,
    /// Replay position: blocks read, samples of `mem` read.
    read_blocks: usize,
    read_mem: usize,
}

impl SignalCache {
    /// An empty cache: `memory_bound` bytes in memory, the rest in a file in
    /// `spill_dir` (created on the first block over the bound).
    pub fn new(memory_bound: usize, spill_dir: PathBuf) -> SignalCache {
        SignalCache {
            memory_bound,
            spill_dir,
            mem: Vec::new(),
            mem_blocks: 0,
            blocks: 0,
            spill: Spill::None,
            spilled_bytes: 0,
            bytes: Vec::new(),
            read_blocks: 0,
            read_mem: 0,
        }
    }

    /// Bytes written to the spill file.
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes
    }

    /// Where the spill file is, while there is one.
    #[cfg(test)]
    pub fn spill_path(&self) -> Option<&Path> {
        match &self.spill {
            Spill::None => None,
            Spill::Writing(f, _) | Spill::Reading(f, _) => Some(&f.path),
        }
    }

    /// Appends one block (its valid frames, every channel). Only before the
    /// first [`SignalCache::rewind`].
    pub fn push(&mut self, block: &Block) -> io::Result<()> {
        let samples = block.channels() * block.frames();
        let in_mem = self.mem_blocks == self.blocks
            && (self.mem.len() + samples) * SAMPLE_BYTES <= self.memory_bound;
        if in_mem {
            // Grown by doubling, never past the bound.
            let need = self.mem.len() + samples;
            if need > self.mem.capacity() {
                let cap = (self.mem.capacity() * 2)
                    .max(need)
                    .min(self.memory_bound / SAMPLE_BYTES);
                self.mem.reserve_exact(cap - self.mem.len());
            }
            for c in 0..block.channels() {
                self.mem.extend_from_slice(block.channel(c));
            }
            self.mem_blocks += 1;
        } else {
            if let Spill::None = self.spill {
                let (guard, file) = SpillFile::create(&self.spill_dir)?;
                tracing::debug!(path = %guard.path.display(), "analysis cache spills to a file");
                self.spill = Spill::Writing(guard, BufWriter::with_capacity(1 << 20, file));
            }
            let Spill::Writing(_, w) = &mut self.spill else {
                return Err(io::Error::other("signal cache written after replay"));
            };
            self.bytes.clear();
            for c in 0..block.channels() {
                for x in block.channel(c) {
                    self.bytes.extend_from_slice(&x.to_le_bytes());
                }
            }
            w.write_all(&self.bytes)?;
            self.spilled_bytes += self.bytes.len() as u64;
        }
        self.blocks += 1;
        Ok(())
    }

    /// Ends writing (the first time) and goes back to the first block.
    pub fn rewind(&mut self) -> io::Result<()> {
        self.read_blocks = 0;
        self.read_mem = 0;
        self.spill = match std::mem::replace(&mut self.spill, Spill::None) {
            Spill::None => Spill::None,
            Spill::Writing(guard, w) => {
                let mut f = w.into_inner().map_err(|e| e.into_error())?;
                f.seek(SeekFrom::Start(0))?;
                Spill::Reading(guard, BufReader::with_capacity(1 << 20, f))
            }
            Spill::Reading(guard, mut r) => {
                r.seek(SeekFrom::Start(0))?;
                Spill::Reading(guard, r)
            }
        };
        Ok(())
    }

    /// Reads the next block into `block`: `frames` frames of its channels,
    /// as they were pushed (the caller knows each block's size and width).
    pub fn next(&mut self, block: &mut Block, frames: usize) -> io::Result<()> {
        if self.read_blocks >= self.blocks {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "signal cache read past its last block",
            ));
        }
        block.set_frames(frames);
        if self.read_blocks < self.mem_blocks {
            for c in 0..block.channels() {
                let src = self
                    .mem
                    .get(self.read_mem..self.read_mem + frames)
                    .ok_or_else(|| io::Error::other("signal cache block out of range"))?;
                block.channel_mut(c).copy_from_slice(src);
                self.read_mem += frames;
            }
        } else {
            let Spill::Reading(_, r) = &mut self.spill else {
                return Err(io::Error::other("signal cache read before rewind"));
            };
            self.bytes
                .resize(block.channels() * frames * SAMPLE_BYTES, 0);
            r.read_exact(&mut self.bytes)?;
            for (c, raw) in self.bytes.chunks_exact(frames * SAMPLE_BYTES).enumerate() {
                for (x, b) in block
                    .channel_mut(c)
                    .iter_mut()
                    .zip(raw.chunks_exact(SAMPLE_BYTES))
                {
                    let mut le = [0u8; SAMPLE_BYTES];
                    le.copy_from_slice(b);
                    *x = f64::from_le_bytes(le);
                }
            }
        }
        self.read_blocks += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(channels: usize, frames: usize, seed: f64) -> Block {
        let mut b = Block::new(channels, frames);
        b.set_frames(frames);
        for c in 0..channels {
            for (i, x) in b.channel_mut(c).iter_mut().enumerate() {
                *x = seed * (c as f64 + 1.0) + (i as f64).sin() / 3.0;
            }
        }
        b
    }

    fn same(a: &Block, b: &Block) -> bool {
        a.channels() == b.channels()
            && a.frames() == b.frames()
            && (0..a.channels()).all(|c| {
                a.channel(c)
                    .iter()
                    .zip(b.channel(c))
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            })
    }

    #[test]
    fn blocks_past_the_bound_spill_to_a_file_that_is_removed_on_drop() {
        let dir = stemforge_testkit::scratch("signal-cache-spill");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let written: Vec<Block> = (0..10)
            .map(|i| block(2, 100 + i * 7, f64::from(i as u32)))
            .collect();
        // Room for about three blocks in memory.
        let mut cache = SignalCache::new(3 * 2 * 120 * 8, dir.clone());
        for b in &written {
            cache.push(b).expect("push");
        }
        let path = cache.spill_path().expect("spilled").to_path_buf();
        assert!(path.starts_with(&dir));
        assert!(cache.spilled_bytes() > 0);
        assert!(cache.mem.len() * SAMPLE_BYTES <= 3 * 2 * 120 * 8);
        for _ in 0..2 {
            cache.rewind().expect("rewind");
            let mut got = Block::new(2, 256);
            for b in &written {
                cache.next(&mut got, b.frames()).expect("read");
                assert!(same(&got, b));
            }
            assert!(cache.next(&mut got, 1).is_err(), "past the end");
        }
        assert!(path.exists());
        drop(cache);
        assert!(!path.exists(), "the spill file is removed on drop");
        assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn under_the_bound_nothing_is_written() {
        let dir = stemforge_testkit::scratch("signal-cache-memory");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut cache = SignalCache::new(DEFAULT_MEMORY_BOUND, dir.clone());
        let b = block(6, 4096, 0.25);
        cache.push(&b).expect("push");
        assert!(cache.spill_path().is_none());
        cache.rewind().expect("rewind");
        let mut got = Block::new(6, 4096);
        cache.next(&mut got, 4096).expect("read");
        assert!(same(&got, &b));
        assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
