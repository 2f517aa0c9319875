//! Where each stem sits against the reference mix: its offset (frames),
//! polarity and gain, found by cross-correlating the stem with *the reference
//! minus the other stems* in a few bounded windows.
//!
//! Windows are one-second cores placed where the stems are loudest (one per
//! stem, round-robin, at least four), each captured with `max_offset` frames
//! either side. Memory is bounded by windows × (core + 2·max_offset) × files,
//! never by duration. The correlations of all windows are summed in the
//! frequency domain, so each stem costs one inverse FFT however many windows.
//!
//! FFTs are rustfft's scalar path (no run-time SIMD dispatch): the same
//! numbers on every worker.

use rustfft::FftPlannerScalar;
use rustfft::num_complex::Complex;

/// At least this many windows (fewer only if the programme is shorter).
const MIN_WINDOWS: usize = 4;
/// At most this many windows, however many stems.
const MAX_WINDOWS: usize = 8;

/// One captured window: the mono downmix of every file over
/// `start - max_offset .. start + core + max_offset` (zeros outside the files).
#[derive(Debug)]
struct Window {
    /// First frame of the capture (may be negative: before the files start).
    first: i64,
    /// `files[k]` is file k's mono downmix over the capture.
    files: Vec<Vec<f32>>,
}

/// Mono captures of the chosen windows, filled step by step.
#[derive(Debug)]
pub struct WindowCapture {
    core: usize,
    max_offset: usize,
    windows: Vec<Window>,
}

impl WindowCapture {
    /// Windows at the given core start frames, for `files` files.
    pub fn new(starts: &[u64], core: usize, max_offset: usize, files: usize) -> WindowCapture {
        let len = core + 2 * max_offset;
        let windows = starts
            .iter()
            .map(|&s| Window {
                first: s as i64 - max_offset as i64,
                files: vec![vec![0.0; len]; files],
            })
            .collect();
        WindowCapture {
            core,
            max_offset,
            windows,
        }
    }

    /// Moves stem `file`'s captures `offset` frames earlier (it was that
    /// late) and flips them if `inverted`; what moves in from outside the
    /// capture is silence.
    fn correct(&mut self, file: usize, offset: i64, inverted: bool) {
        let sign = if inverted { -1.0 } else { 1.0 };
        for w in &mut self.windows {
            let old = std::mem::take(&mut w.files[file]);
            w.files[file] = (0..old.len() as i64)
                .map(|t| {
                    usize::try_from(t + offset)
                        .ok()
                        .and_then(|k| old.get(k))
                        .map_or(0.0, |v| sign * v)
                })
                .collect();
        }
    }

    /// Stem `file`'s captures (a copy).
    fn take(&self, file: usize) -> Vec<Vec<f32>> {
        self.windows.iter().map(|w| w.files[file].clone()).collect()
    }

    /// Zeroes stem `file`'s captures.
    fn silence(&mut self, file: usize) {
        for w in &mut self.windows {
            w.files[file].fill(0.0);
        }
    }

    fn restore(&mut self, file: usize, saved: &[Vec<f32>]) {
        for (w, s) in self.windows.iter_mut().zip(saved) {
            w.files[file].clone_from(s);
        }
    }

    /// Energy of the change from `saved` to stem `file`'s captures now, over
    /// the windows' cores.
    fn change_energy(&self, file: usize, saved: &[Vec<f32>]) -> f64 {
        let l = self.max_offset;
        self.windows
            .iter()
            .zip(saved)
            .map(|(w, old)| {
                (l..l + self.core)
                    .map(|t| {
                        let d = f64::from(w.files[file][t]) - f64::from(old[t]);
                        d * d
                    })
                    .sum::<f64>()
            })
            .sum()
    }

    /// Energy of the reference minus every stem over the windows' cores.
    fn residual_energy(&self, stems: usize) -> f64 {
        let l = self.max_offset;
        self.windows
            .iter()
            .map(|w| {
                (l..l + self.core)
                    .map(|t| {
                        let all: f64 = w.files[..stems].iter().map(|f| f64::from(f[t])).sum();
                        let d = f64::from(w.files[stems][t]) - all;
                        d * d
                    })
                    .sum::<f64>()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// File `file`'s samples for frames `position .. position + n`.
    /// Captures `n` frames of `file` at `position`, as the mean over the
    /// title layout's channels: `routes` lists, per layout channel that the
    /// file feeds, which of its `channels` it is (a mono stem in a 5.1 title
    /// feeds only the centre, so it counts 1/6, as it does in the reference).
    pub fn push(
        &mut self,
        file: usize,
        position: u64,
        channels: &[Vec<f64>],
        n: usize,
        routes: &[usize],
        layout_channels: usize,
    ) {
        let len = (self.core + 2 * self.max_offset) as i64;
        let scale = 1.0 / layout_channels.max(1) as f64;
        for w in &mut self.windows {
            let lo = w.first.max(position as i64);
            let hi = (w.first + len).min(position as i64 + n as i64);
            for frame in lo..hi {
                let i = (frame - position as i64) as usize;
                let mono: f64 = routes
                    .iter()
                    .filter_map(|&k| channels.get(k))
                    .map(|c| c[i])
                    .sum::<f64>()
                    * scale;
                w.files[file][(frame - w.first) as usize] = mono as f32;
            }
        }
    }
}

/// Core start frames: each stem's loudest seconds in turn (round-robin over
/// the stems, skipping seconds already taken), `MIN_WINDOWS..=MAX_WINDOWS` of
/// them. `energy[i][s]` is stem i's energy in second s.
pub fn choose_windows(energy: &[&[f64]], rate: u32) -> Vec<u64> {
    let mut ranked: Vec<Vec<usize>> = energy
        .iter()
        .map(|e| {
            let mut idx: Vec<usize> = (0..e.len()).filter(|&s| e[s] > 0.0).collect();
            // Loudest first; ties by time, so the choice is deterministic.
            idx.sort_by(|&a, &b| e[b].total_cmp(&e[a]).then(a.cmp(&b)));
            idx
        })
        .collect();
    let want = energy.len().clamp(MIN_WINDOWS, MAX_WINDOWS);
    let mut chosen: Vec<usize> = Vec::new();
    let mut progress = true;
    while chosen.len() < want && progress {
        progress = false;
        for r in &mut ranked {
            if chosen.len() == want {
                break;
            }
            while let Some(s) = r.first().copied() {
                r.remove(0);
                if !chosen.contains(&s) {
                    chosen.push(s);
                    progress = true;
                    break;
                }
            }
        }
    }
    chosen.sort_unstable();
    chosen
        .into_iter()
        .map(|s| s as u64 * u64::from(rate))
        .collect()
}

/// Below this normalised correlation a stem's placement is not trusted.
pub const MIN_CORRELATION: f64 = 0.3;

/// Places every stem, correcting misplaced ones as it goes: a stem that is
/// late or inverted pollutes every other stem's target (the reference minus
/// the others), so the most certain misplaced stem is corrected in the
/// captures and the rest placed again, until none is left.
///
/// A correction stands only if it explains what it changes: moving stem i
/// changes the windows by Δ, and if the move is right the residual
/// (reference − stems) loses about ‖Δ‖²; at least half of that is required.
/// Against a limited or re-processed reference a stem can correlate best at
/// a wrong lag; such a placement is not trusted (`None`) rather than
/// reported as an offset. Placements are reported against the files as
/// delivered; stems that were not found at all keep their low correlation.
pub fn place_all(capture: &mut WindowCapture, stems: usize) -> Vec<Option<Placement>> {
    let mut applied: Vec<Option<(i64, bool)>> = vec![None; stems];
    // Stems found absent from the reference: taken out of the others'
    // targets, their (low-correlation) placement kept for the report.
    let mut absent: Vec<Option<Placement>> = vec![None; stems];
    let mut rejected = vec![false; stems];
    let mut result = place_stems(capture, stems);
    let mut residual = capture.residual_energy(stems);
    for _ in 0..2 * stems {
        let open = |i: &usize| applied[*i].is_none() && absent[*i].is_none() && !rejected[*i];
        let candidates = || result.iter().enumerate().filter(|(i, _)| open(i));
        // The most certain misplaced stem first; else the least certain
        // stem, which may not be in the reference at all.
        let misplaced = candidates()
            .filter_map(|(i, p)| p.map(|p| (i, p)))
            .filter(|(_, p)| p.correlation >= MIN_CORRELATION && (p.offset != 0 || p.inverted))
            .max_by(|a, b| a.1.correlation.total_cmp(&b.1.correlation));
        let missing = || {
            candidates()
                .filter_map(|(i, p)| p.map(|p| (i, p)))
                .filter(|(_, p)| p.correlation < MIN_CORRELATION)
                .min_by(|a, b| a.1.correlation.total_cmp(&b.1.correlation))
        };
        let (i, p, remove) = match misplaced {
            Some((i, p)) => (i, p, false),
            None => match missing() {
                Some((i, p)) => (i, p, true),
                None => break,
            },
        };
        let saved = capture.take(i);
        if remove {
            capture.silence(i);
        } else {
            capture.correct(i, p.offset, p.inverted);
        }
        let change = capture.change_energy(i, &saved);
        let after = capture.residual_energy(stems);
        if change > 0.0 && residual - after >= 0.5 * change {
            if remove {
                absent[i] = Some(p);
            } else {
                applied[i] = Some((p.offset, p.inverted));
            }
            residual = after;
            // The others' targets changed: rejected stems may place now.
            rejected.fill(false);
            result = place_stems(capture, stems);
        } else {
            capture.restore(i, &saved);
            rejected[i] = true;
        }
    }
    result
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            if absent[i].is_some() {
                return absent[i];
            }
            let mut p = p?;
            if let Some((offset, inverted)) = applied[i] {
                p.offset += offset;
                p.inverted ^= inverted;
            } else if p.correlation >= MIN_CORRELATION && (p.offset != 0 || p.inverted) {
                // Misplaced, but moving it does not help: not trusted.
                return None;
            }
            Some(p)
        })
        .collect()
}

/// Where one stem sits against the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Frames the stem is late against the reference (negative: early).
    pub offset: i64,
    /// The stem appears in the reference upside down.
    pub inverted: bool,
    /// Linear gain of the stem inside the reference (1 = unity).
    pub gain: f64,
    /// Normalised correlation at the best lag (0–1): how surely the stem
    /// was found at all.
    pub correlation: f64,
}

/// Places every stem (files `0..stems`; file `stems` is the reference).
/// `None` for a stem silent in every window.
pub fn place_stems(capture: &WindowCapture, stems: usize) -> Vec<Option<Placement>> {
    if capture.is_empty() {
        return vec![None; stems];
    }
    let core = capture.core;
    let l = capture.max_offset;
    let len = core + 2 * l;
    let n = (core + len).next_power_of_two();
    let mut planner = FftPlannerScalar::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut scratch = vec![Complex::default(); fwd.get_inplace_scratch_len()];

    // Spectrum of (reference - all stems) for each window.
    let residual_spectra: Vec<Vec<Complex<f64>>> = capture
        .windows
        .iter()
        .map(|w| {
            let mut buf: Vec<Complex<f64>> = (0..n)
                .map(|t| {
                    if t < len {
                        let all: f64 = w.files[..stems].iter().map(|f| f64::from(f[t])).sum();
                        Complex::new(f64::from(w.files[stems][t]) - all, 0.0)
                    } else {
                        Complex::default()
                    }
                })
                .collect();
            fwd.process_with_scratch(&mut buf, &mut scratch);
            buf
        })
        .collect();

    let mut acc = vec![Complex::default(); n];
    let mut auto = vec![0.0f64; n];
    let mut buf = vec![Complex::default(); n];
    (0..stems)
        .map(|i| {
            acc.fill(Complex::default());
            auto.fill(0.0);
            let mut core_energy = 0.0;
            for (w, d) in capture.windows.iter().zip(&residual_spectra) {
                let f = &w.files[i];
                // Real part: the stem over the whole capture; imaginary: its core.
                for (t, b) in buf.iter_mut().enumerate() {
                    let long = if t < len { f64::from(f[t]) } else { 0.0 };
                    let short = if t < core { f64::from(f[l + t]) } else { 0.0 };
                    core_energy += short * short;
                    *b = Complex::new(long, short);
                }
                fwd.process_with_scratch(&mut buf, &mut scratch);
                for k in 0..n {
                    let z = buf[k];
                    let zc = buf[(n - k) % n].conj();
                    let long = (z + zc) * 0.5;
                    let short = (z - zc) * Complex::new(0.0, -0.5);
                    // target = (reference - all stems) + this stem.
                    let target = d[k] + long;
                    acc[k] += short.conj() * target;
                    auto[k] += short.norm_sqr();
                }
            }
            if core_energy <= 0.0 {
                return None;
            }
            // Deconvolve: the cross-spectrum over the stem's own spectrum is
            // the response from the stem to its place in the mix, a sharp
            // peak at its offset whatever the stem's colour (a plain
            // cross-correlation of a dark or narrow-band stem is broad, and
            // anything correlated riding on it, an echo, a send, leans the
            // peak by a sample or two). Regularised where the stem is quiet.
            let floor = auto.iter().sum::<f64>() / n as f64;
            for (a, &p) in acc.iter_mut().zip(&auto) {
                *a /= p + floor;
            }
            inv.process_with_scratch(&mut acc, &mut scratch);
            // acc[m] ∝ response at lag m - l; lags m in 0..=2l.
            let mut best = l;
            for m in 0..=2 * l {
                let (a, b) = (acc[m].re.abs(), acc[best].re.abs());
                let closer = m.abs_diff(l) < best.abs_diff(l);
                if a > b || (a == b && closer) {
                    best = m;
                }
            }
            // Correlation and least-squares gain at a lag, in time:
            // Σ core·target and Σ target², target = reference − other stems.
            let at = |m: usize| {
                capture
                    .windows
                    .iter()
                    .flat_map(|w| {
                        (0..core).map(move |t| {
                            let others: f64 = w.files[..stems]
                                .iter()
                                .enumerate()
                                .filter(|&(j, _)| j != i)
                                .map(|(_, f)| f64::from(f[m + t]))
                                .sum();
                            let y = f64::from(w.files[stems][m + t]) - others;
                            (f64::from(w.files[i][l + t]) * y, y * y)
                        })
                    })
                    .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y))
            };
            let normalised = |(c, e): (f64, f64)| c.abs() / (core_energy * e).sqrt().max(1e-300);
            let (mut c, mut target_energy) = at(best);
            // Periodic material (a held chord) fits nearly as well a period
            // away: where lag 0 explains it within 2 %, the stem is in place.
            if best != l {
                let zero = at(l);
                if normalised(zero) >= 0.98 * normalised((c, target_energy)) {
                    best = l;
                    (c, target_energy) = zero;
                }
            }
            Some(Placement {
                offset: l as i64 - best as i64,
                inverted: c < 0.0,
                gain: c.abs() / core_energy,
                correlation: c.abs() / (core_energy * target_energy).sqrt().max(1e-300),
            })
        })
        .collect()
}

/// FFT length for a core and search range.
#[cfg(test)]
fn fft_len(core: usize, max_offset: usize) -> usize {
    (core + core + 2 * max_offset).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in -1..1.
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }

    /// Captures `stems` (and their sum with `shift` applied to stem 0 and
    /// the gain/sign applied) as the reference.
    fn run(shift: i64, sign: f64, gain: f64) -> Vec<Option<Placement>> {
        let rate = 1000;
        let frames = 10_000usize;
        let stems: Vec<Vec<f64>> = (0..3).map(|i| noise(i + 1, frames)).collect();
        // The reference holds stem 0 as it should be: `shift` frames earlier
        // than the delivered (late) stem.
        let reference: Vec<f64> = (0..frames)
            .map(|t| {
                let s0 = usize::try_from(t as i64 + shift)
                    .ok()
                    .and_then(|k| stems[0].get(k))
                    .copied()
                    .unwrap_or(0.0);
                sign * gain * s0 + stems[1][t] + stems[2][t]
            })
            .collect();
        let energy: Vec<Vec<f64>> = stems
            .iter()
            .map(|s| {
                s.chunks(rate)
                    .map(|c| c.iter().map(|v| v * v).sum())
                    .collect()
            })
            .collect();
        let e: Vec<&[f64]> = energy.iter().map(Vec::as_slice).collect();
        let starts = choose_windows(&e, rate as u32);
        assert_eq!(starts.len(), MIN_WINDOWS);
        let mut cap = WindowCapture::new(&starts, rate, 300, 4);
        for (pos, chunk) in (0..frames).collect::<Vec<_>>().chunks(777).enumerate() {
            let p = (pos * 777) as u64;
            for (k, f) in stems.iter().chain([&reference]).enumerate() {
                let ch = vec![chunk.iter().map(|&t| f[t]).collect::<Vec<f64>>()];
                cap.push(k, p, &ch, chunk.len(), &[0, 1], 2);
            }
        }
        place_stems(&cap, 3)
    }

    #[test]
    fn aligned_stems_sit_at_zero_with_unity_gain() {
        let p = run(0, 1.0, 1.0);
        for q in p.iter().flatten() {
            assert_eq!(q.offset, 0);
            assert!(!q.inverted);
            assert!((q.gain - 1.0).abs() < 1e-6, "{q:?}");
            assert!(q.correlation > 0.999, "{q:?}");
        }
        assert_eq!(fft_len(1000, 300), 4096);
    }

    #[test]
    fn a_late_stem_is_found_to_the_frame_and_others_stay_put() {
        let p = run(48, 1.0, 1.0);
        assert_eq!(p[0].map(|q| q.offset), Some(48), "{p:?}");
        assert_eq!(p[1].map(|q| q.offset), Some(0));
        assert_eq!(p[2].map(|q| q.offset), Some(0));
        let p = run(-37, 1.0, 1.0);
        assert_eq!(p[0].map(|q| q.offset), Some(-37), "{p:?}");
    }

    #[test]
    fn polarity_and_gain_are_measured() {
        let p = run(0, -1.0, 0.5);
        let q = p[0].expect("placed");
        assert!(q.inverted);
        assert!((q.gain - 0.5).abs() < 1e-6, "{q:?}");
        assert_eq!(q.offset, 0);
    }
}
