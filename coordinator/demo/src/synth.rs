//! Deterministic synthesiser for the demo multitrack session.
//!
//! [`synthesize`] renders a short song (A minor, 112 BPM, 4/4, i–VI–III–VII)
//! as six planar stereo stems: drums, bass, keys, lead vocal, backing vocals
//! and effects. The stems are meant to exercise loudness meters, compressors
//! and limiters, so they behave like real music: transient drums, enveloped
//! notes, formant-filtered voices with phrasing gaps, sparse effects and a
//! decaying ending.
//!
//! Arrangement (bars of 4 × 60/112 ≈ 2.143 s):
//! * bars 0–1: intro (drums and keys only, Am–G);
//! * then alternating 4-bar verses and choruses (Am–F–C–G per 4 bars), the
//!   last section cut short where the song ends;
//! * a final hit (kick, crash, bass, Am chord) on the last bar line that
//!   leaves at least 1.5 s to the end, decaying to silence, with a
//!   raised-cosine fade to exact silence over the last 1.5 s.
//!
//! Everything is deterministic: noise comes from a SplitMix64 generator with
//! fixed seeds, events are rendered in a fixed order, and only `std` `f64`
//! maths is used. No allocation happens per sample.

use std::f64::consts::{PI, TAU};
use stemforge_dsp::math::DetMath;

/// One synthesised stem of the demo session.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthStem {
    /// File-name stem, e.g. "drums", "bass", "keys", "lead_vocal", "backing_vocals", "fx".
    pub name: &'static str,
    /// Role as the spec names it: one of "drums", "bass", "keys", "vocals", "backing_vocals", "fx".
    pub role: &'static str,
    /// Planar stereo: [left, right], each `frames` long, values in -1..1 (f64).
    pub channels: [Vec<f64>; 2],
}

/// Synthesise the whole session: deterministic (same output bits for the same
/// arguments on any x86-64 machine). Each channel is
/// `round(seconds * sample_rate)` frames long (zero frames for a non-positive
/// or non-finite duration or a zero sample rate). Stems are returned in the
/// order drums, bass, keys, lead_vocal, backing_vocals, fx.
pub fn synthesize(seconds: f64, sample_rate: u32) -> Vec<SynthStem> {
    let song = Song::new(seconds, sample_rate);
    let mut rendered = [
        render_drums(&song),
        render_bass(&song),
        render_keys(&song),
        render_lead_vocal(&song),
        render_backing_vocals(&song),
        render_fx(&song),
    ];

    // Per stem: remove DC, fade the ending, and find the gain to the stem's target peak.
    let mut gains = [0.0f64; 6];
    for ((stereo, spec), gain) in rendered.iter_mut().zip(STEMS.iter()).zip(gains.iter_mut()) {
        let peak = stereo.iter_mut().fold(0.0f64, |m, channel| {
            m.max(finish_channel(channel, song.sr, spec.dc_block))
        });
        if peak > 0.0 {
            *gain = db_to_gain(spec.peak_db) / peak;
        }
    }
    // Apply those gains; then one common gain keeps the unity sum of all
    // stems below the ceiling.
    let sum_peak = apply_gains_and_sum_peak(&mut rendered, &gains);
    let ceiling = db_to_gain(SUM_CEILING_DB);
    if sum_peak > ceiling {
        let common = ceiling / sum_peak;
        for channel in rendered.iter_mut().flat_map(|s| s.iter_mut()) {
            channel.iter_mut().for_each(|v| *v *= common);
        }
    }

    rendered
        .into_iter()
        .zip(STEMS.iter())
        .map(|(channels, spec)| SynthStem {
            name: spec.name,
            role: spec.role,
            channels,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Constants: tempo, form, levels
// ---------------------------------------------------------------------------

const BPM: f64 = 112.0;
const BEATS_PER_BAR: f64 = 4.0;
const INTRO_BARS: usize = 2;
const SECTION_BARS: usize = 4;
/// The final hit lands on the last bar line at least this long before the end.
const MIN_TAIL_SECONDS: f64 = 1.5;
/// Raised-cosine fade to silence over the last this-many seconds.
const END_FADE_SECONDS: f64 = 1.5;
/// The unity sum of all stems peaks at most here (sample peak, dBFS).
const SUM_CEILING_DB: f64 = -1.5;
/// Control-rate block (samples) for filter-coefficient and pitch updates.
const BLOCK: usize = 32;
/// Update interval (samples) of swept drum/impact oscillators.
const SWEEP_BLOCK: usize = 8;

struct StemSpec {
    name: &'static str,
    role: &'static str,
    /// Sample peak the stem is scaled to before the sum check (dBFS).
    peak_db: f64,
    /// Whether the stem has asymmetric waveforms (kick, saw bass) that need a DC blocker.
    dc_block: bool,
}

const STEMS: [StemSpec; 6] = [
    StemSpec {
        name: "drums",
        role: "drums",
        peak_db: -7.0,
        dc_block: true,
    },
    StemSpec {
        name: "bass",
        role: "bass",
        peak_db: -11.0,
        dc_block: true,
    },
    StemSpec {
        name: "keys",
        role: "keys",
        peak_db: -13.0,
        dc_block: false,
    },
    StemSpec {
        name: "lead_vocal",
        role: "vocals",
        peak_db: -7.0,
        dc_block: false,
    },
    StemSpec {
        name: "backing_vocals",
        role: "backing_vocals",
        peak_db: -16.0,
        dc_block: false,
    },
    StemSpec {
        name: "fx",
        role: "fx",
        peak_db: -13.0,
        dc_block: false,
    },
];

// ---------------------------------------------------------------------------
// Song form and harmony
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Intro,
    Verse,
    Chorus,
}

/// A chord: bass root, keys voicing and the two backing-vocal notes (MIDI).
struct Chord {
    bass: u8,
    keys: [u8; 3],
    backing: [u8; 2],
}

const AM: Chord = Chord {
    bass: 33,
    keys: [57, 60, 64],
    backing: [60, 64],
};
const FM: Chord = Chord {
    bass: 29,
    keys: [57, 60, 65],
    backing: [60, 65],
};
const CM: Chord = Chord {
    bass: 36,
    keys: [55, 60, 64],
    backing: [64, 67],
};
const GM: Chord = Chord {
    bass: 31,
    keys: [55, 59, 62],
    backing: [62, 67],
};
/// i–VI–III–VII in A minor, one chord per bar.
const PROGRESSION: [&Chord; 4] = [&AM, &FM, &CM, &GM];
const INTRO_CHORDS: [&Chord; 2] = [&AM, &GM];

/// The song's timeline, shared by every stem.
struct Song {
    sr: f64,
    frames: usize,
    /// Seconds per bar.
    bar: f64,
    /// Section of each bar before the final hit.
    bars: Vec<Section>,
    /// Time of the final hit (end of the last bar), seconds.
    end: f64,
}

impl Song {
    fn new(seconds: f64, sample_rate: u32) -> Song {
        let sr = f64::from(sample_rate.max(1));
        let frames = if sample_rate > 0 && seconds.is_finite() && seconds > 0.0 {
            (seconds * f64::from(sample_rate)).round() as usize
        } else {
            0
        };
        let length = frames as f64 / sr;
        let bar = BEATS_PER_BAR * 60.0 / BPM;
        let n_bars = ((length - MIN_TAIL_SECONDS) / bar).floor().max(0.0) as usize;
        let bars = (0..n_bars)
            .map(|b| {
                if b < INTRO_BARS {
                    Section::Intro
                } else if (b - INTRO_BARS) % (2 * SECTION_BARS) < SECTION_BARS {
                    Section::Verse
                } else {
                    Section::Chorus
                }
            })
            .collect();
        Song {
            sr,
            frames,
            bar,
            bars,
            end: n_bars as f64 * bar,
        }
    }

    fn beat(&self) -> f64 {
        self.bar / BEATS_PER_BAR
    }

    fn eighth(&self) -> f64 {
        self.beat() / 2.0
    }

    fn bar_time(&self, b: usize) -> f64 {
        b as f64 * self.bar
    }

    fn sample(&self, t: f64) -> usize {
        (t * self.sr).round().max(0.0) as usize
    }

    /// Start sample and clipped length of an event at `t` lasting `dur` seconds.
    fn span(&self, t: f64, dur: f64) -> Option<(usize, usize)> {
        let s0 = self.sample(t);
        if s0 >= self.frames {
            return None;
        }
        let n = ((dur * self.sr).round().max(0.0) as usize).min(self.frames - s0);
        (n > 0).then_some((s0, n))
    }

    fn starts_section(&self, b: usize) -> bool {
        b == 0 || self.bars[b - 1] != self.bars[b]
    }

    /// True for the last bar of a section (including the last bar of the song).
    fn ends_section(&self, b: usize) -> bool {
        b + 1 >= self.bars.len() || self.bars[b + 1] != self.bars[b]
    }

    fn chord(&self, b: usize) -> &'static Chord {
        if b < INTRO_BARS {
            INTRO_CHORDS[b % INTRO_CHORDS.len()]
        } else {
            PROGRESSION[(b - INTRO_BARS) % PROGRESSION.len()]
        }
    }

    /// Sections as (kind, first bar, end bar exclusive); the last may be cut short.
    fn sections(&self) -> Vec<(Section, usize, usize)> {
        let mut out = Vec::new();
        let mut b = 0;
        while b < self.bars.len() {
            let kind = self.bars[b];
            let mut e = b + 1;
            while e < self.bars.len() && self.bars[e] == kind {
                e += 1;
            }
            out.push((kind, b, e));
            b = e;
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Small DSP toolkit
// ---------------------------------------------------------------------------

type Stereo = [Vec<f64>; 2];

fn silent(frames: usize) -> Stereo {
    [vec![0.0; frames], vec![0.0; frames]]
}

fn midi_hz(midi: f64) -> f64 {
    440.0 * ((midi - 69.0) / 12.0).dexp2()
}

fn db_to_gain(db: f64) -> f64 {
    10f64.dpowf(db / 20.0)
}

/// Per-sample multiplier of an exponential decay with time constant `tau` seconds.
fn decay(tau: f64, sr: f64) -> f64 {
    (-1.0 / (tau * sr)).dexp()
}

/// One-pole smoothing coefficient for time constant `tau` seconds over `samples` samples.
fn smooth_coef(tau: f64, samples: f64, sr: f64) -> f64 {
    1.0 - (-samples / (tau * sr)).dexp()
}

/// Equal-power pan gains for `p` in -1 (left) ..= 1 (right).
fn pan_gains(p: f64) -> (f64, f64) {
    let a = (p.clamp(-1.0, 1.0) + 1.0) * PI / 4.0;
    (a.dcos(), a.dsin())
}

/// Linear fade over the last `len` samples of an `n`-sample event.
fn tail_fade(i: usize, n: usize, len: usize) -> f64 {
    let remaining = n - i;
    if remaining < len {
        remaining as f64 / len as f64
    } else {
        1.0
    }
}

/// Smoothstep attack ramp over `len` samples.
fn attack_ramp(i: usize, len: f64) -> f64 {
    let x = i as f64 / len;
    if x >= 1.0 {
        1.0
    } else {
        x * x * (3.0 - 2.0 * x)
    }
}

/// PolyBLEP residual for a unit-phase oscillator (`t` in 0..1, `dt` = f/sr).
fn poly_blep(t: f64, dt: f64) -> f64 {
    if t < dt {
        let x = t / dt;
        x + x - x * x - 1.0
    } else if t > 1.0 - dt {
        let x = (t - 1.0) / dt;
        x * x + x + x + 1.0
    } else {
        0.0
    }
}

/// Sine oscillator as a rotating (optionally decaying) phasor: no per-sample `sin`.
#[derive(Clone, Copy)]
struct Phasor {
    c: f64,
    s: f64,
    rot_c: f64,
    rot_s: f64,
}

impl Phasor {
    /// Starts at phase zero (output 0) with amplitude `amp`.
    fn new(amp: f64) -> Phasor {
        Phasor {
            c: amp,
            s: 0.0,
            rot_c: 1.0,
            rot_s: 0.0,
        }
    }

    /// Frequency in Hz and per-sample amplitude multiplier (1 = no decay).
    fn set(&mut self, freq: f64, damping: f64, sr: f64) {
        let w = TAU * freq / sr;
        self.rot_c = damping * w.dcos();
        self.rot_s = damping * w.dsin();
    }

    fn next(&mut self) -> f64 {
        let c = self.c * self.rot_c - self.s * self.rot_s;
        self.s = self.c * self.rot_s + self.s * self.rot_c;
        self.c = c;
        self.s
    }
}

/// SplitMix64: tiny, fast and fully deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [-1, 1): white noise.
    fn bipolar(&mut self) -> f64 {
        2.0 * self.uniform() - 1.0
    }

    /// 1 ± `amount`, uniformly.
    fn jitter(&mut self, amount: f64) -> f64 {
        1.0 + amount * self.bipolar()
    }
}

/// One-pole low-pass (and the complementary high-pass).
#[derive(Clone, Copy)]
struct OnePole {
    a: f64,
    z: f64,
}

impl OnePole {
    fn new(fc: f64, sr: f64) -> OnePole {
        let fc = fc.min(0.45 * sr);
        OnePole {
            a: 1.0 - (-TAU * fc / sr).dexp(),
            z: 0.0,
        }
    }

    fn lp(&mut self, x: f64) -> f64 {
        self.z += self.a * (x - self.z);
        self.z
    }

    fn hp(&mut self, x: f64) -> f64 {
        x - self.lp(x)
    }
}

/// Topology-preserving state-variable filter (Simper).
#[derive(Clone, Copy, Default)]
struct Svf {
    ic1: f64,
    ic2: f64,
    a1: f64,
    a2: f64,
    a3: f64,
    k: f64,
}

/// The three simultaneous outputs of an [`Svf`].
struct SvfOut {
    low: f64,
    /// Band-pass normalised to 0 dB at the centre frequency.
    band: f64,
    high: f64,
}

impl Svf {
    fn new(fc: f64, q: f64, sr: f64) -> Svf {
        let mut f = Svf::default();
        f.set(fc, q, sr);
        f
    }

    fn set(&mut self, fc: f64, q: f64, sr: f64) {
        let g = (PI * fc.clamp(10.0, 0.45 * sr) / sr).dtan();
        self.k = 1.0 / q;
        self.a1 = 1.0 / (1.0 + g * (g + self.k));
        self.a2 = g * self.a1;
        self.a3 = g * self.a2;
    }

    fn process(&mut self, x: f64) -> SvfOut {
        let v3 = x - self.ic2;
        let v1 = self.a1 * self.ic1 + self.a2 * v3;
        let v2 = self.ic2 + self.a2 * self.ic1 + self.a3 * v3;
        self.ic1 = 2.0 * v1 - self.ic1;
        self.ic2 = 2.0 * v2 - self.ic2;
        SvfOut {
            low: v2,
            band: self.k * v1,
            high: x - self.k * v1 - v2,
        }
    }
}

/// Two-pole band-pass biquad (RBJ, 0 dB peak gain), transposed direct form II.
#[derive(Clone, Copy, Default)]
struct Biquad {
    b0: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    z1: f64,
    z2: f64,
}

impl Biquad {
    fn set_bandpass(&mut self, f0: f64, bandwidth: f64, sr: f64) {
        let f0 = f0.clamp(20.0, 0.45 * sr);
        let q = (f0 / bandwidth).max(0.5);
        let w0 = TAU * f0 / sr;
        let alpha = w0.dsin() / (2.0 * q);
        let a0 = 1.0 + alpha;
        self.b0 = alpha / a0;
        self.b2 = -alpha / a0;
        self.a1 = -2.0 * w0.dcos() / a0;
        self.a2 = (1.0 - alpha) / a0;
    }

    fn process(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.z1;
        self.z1 = -self.a1 * y + self.z2;
        self.z2 = self.b2 * x - self.a2 * y;
        y
    }
}

/// A note event: start time and held duration in seconds, MIDI pitch, velocity.
#[derive(Clone, Copy)]
struct Hit {
    t: f64,
    dur: f64,
    midi: f64,
    vel: f64,
}

// ---------------------------------------------------------------------------
// Drums
// ---------------------------------------------------------------------------

fn render_drums(song: &Song) -> Stereo {
    let mut out = silent(song.frames);
    let mut rng = Rng::new(0xD2D2_0001);
    let e = song.eighth();
    for (b, &sec) in song.bars.iter().enumerate() {
        let t0 = song.bar_time(b);
        let fill = song.ends_section(b);
        if song.starts_section(b) && sec != Section::Intro {
            crash(&mut out, song, t0, 0.8, &mut rng);
        }

        let kicks: &[(f64, f64)] = match sec {
            Section::Intro => &[(0.0, 1.0), (4.0, 0.9)],
            Section::Verse => &[(0.0, 1.0), (3.0, 0.7), (4.0, 0.95)],
            Section::Chorus => &[(0.0, 1.0), (3.0, 0.8), (4.0, 1.0), (5.0, 0.6), (7.0, 0.7)],
        };
        for &(slot, vel) in kicks {
            if !(fill && slot >= 6.0) {
                let v = vel * rng.jitter(0.04);
                kick(&mut out, song, t0 + slot * e, v, &mut rng);
            }
        }

        let snares: &[(f64, f64)] = if fill {
            &[(2.0, 0.9), (6.0, 0.7), (6.5, 0.55), (7.0, 0.8), (7.5, 1.0)]
        } else {
            match sec {
                Section::Intro => &[(2.0, 0.7), (6.0, 0.75)],
                Section::Verse => &[(2.0, 0.9), (6.0, 0.95), (7.5, 0.2)],
                Section::Chorus => &[(2.0, 1.0), (6.0, 1.0)],
            }
        };
        for &(slot, vel) in snares {
            let v = vel * rng.jitter(0.05);
            snare(&mut out, song, t0 + slot * e, v, &mut rng);
        }

        let hat_level = match sec {
            Section::Intro => 0.55,
            Section::Verse => 0.7,
            Section::Chorus => 0.85,
        };
        for slot in 0..8u32 {
            if fill && slot >= 6 {
                continue;
            }
            let accent = if slot % 2 == 0 { 1.0 } else { 0.6 };
            let open = sec == Section::Chorus && slot == 7 && b % 2 == 1;
            let v = hat_level * accent * rng.jitter(0.1);
            hat(&mut out, song, t0 + f64::from(slot) * e, v, open, &mut rng);
        }
    }
    if !song.bars.is_empty() {
        kick(&mut out, song, song.end, 1.0, &mut rng);
        crash(&mut out, song, song.end, 0.9, &mut rng);
    }
    out
}

/// Kick: sine swept ~153 → 48 Hz, fast exponential decay, noise click.
fn kick(out: &mut Stereo, song: &Song, t: f64, vel: f64, rng: &mut Rng) {
    let sr = song.sr;
    let Some((s0, n)) = song.span(t, 0.45) else {
        return;
    };
    let (sweep_rate, body_rate, click_rate) =
        (decay(0.028, sr), decay(0.16, sr), decay(0.0012, sr));
    let (mut sweep, mut body, mut click) = (1.0, 1.0, 1.0);
    let mut osc = Phasor::new(1.0);
    let mut click_hp = OnePole::new(1500.0, sr);
    let attack = 0.0004 * sr;
    let fade = (0.01 * sr) as usize;
    let [left, right] = out;
    let frames = left[s0..s0 + n].iter_mut().zip(&mut right[s0..s0 + n]);
    for (i, (l, r)) in frames.enumerate() {
        if i % SWEEP_BLOCK == 0 {
            osc.set(48.0 + 105.0 * sweep, 1.0, sr);
        }
        let tone = osc.next() * body * attack_ramp(i, attack);
        let v = (tone + 0.45 * click * click_hp.hp(rng.bipolar())) * vel * tail_fade(i, n, fade);
        *l += v;
        *r += v;
        sweep *= sweep_rate;
        body *= body_rate;
        click *= click_rate;
    }
}

/// Snare: band-passed noise burst plus a ~190 Hz tone, centred.
fn snare(out: &mut Stereo, song: &Song, t: f64, vel: f64, rng: &mut Rng) {
    let sr = song.sr;
    let Some((s0, n)) = song.span(t, 0.3) else {
        return;
    };
    let (sweep_rate, tone_rate, noise_rate) = (decay(0.012, sr), decay(0.05, sr), decay(0.09, sr));
    let (mut sweep, mut tone_env, mut noise_env) = (1.0, 1.0, 1.0);
    let mut osc = Phasor::new(0.55);
    let mut band = Svf::new(1900.0, 0.8, sr);
    let mut low_cut = OnePole::new(450.0, sr);
    let attack = 0.0007 * sr;
    let fade = (0.008 * sr) as usize;
    let [left, right] = out;
    let frames = left[s0..s0 + n].iter_mut().zip(&mut right[s0..s0 + n]);
    for (i, (l, r)) in frames.enumerate() {
        if i % SWEEP_BLOCK == 0 {
            osc.set(182.0 + 40.0 * sweep, 1.0, sr);
        }
        let tone = osc.next() * tone_env;
        let noise = 1.1 * low_cut.hp(band.process(rng.bipolar()).band) * noise_env;
        let v = (tone + noise) * attack_ramp(i, attack) * vel * tail_fade(i, n, fade);
        *l += v;
        *r += v;
        sweep *= sweep_rate;
        tone_env *= tone_rate;
        noise_env *= noise_rate;
    }
}

/// Hi-hat: high-passed noise, short (closed) or choked after an eighth (open),
/// panned a little to the right.
fn hat(out: &mut Stereo, song: &Song, t: f64, vel: f64, open: bool, rng: &mut Rng) {
    let sr = song.sr;
    let (dur, tau) = if open {
        (song.eighth(), 0.2)
    } else {
        (0.09, 0.025)
    };
    let Some((s0, n)) = song.span(t, dur) else {
        return;
    };
    let rate = decay(tau, sr);
    let mut env = 1.0;
    let mut high = Svf::new(7500.0, 0.7, sr);
    let mut hp = OnePole::new(5000.0, sr);
    let (gl, gr) = pan_gains(0.35);
    let attack = 0.0003 * sr;
    let fade = (0.006 * sr) as usize;
    let [left, right] = out;
    let frames = left[s0..s0 + n].iter_mut().zip(&mut right[s0..s0 + n]);
    for (i, (l, r)) in frames.enumerate() {
        let x = hp.hp(high.process(rng.bipolar()).high);
        let v = 0.6 * x * env * attack_ramp(i, attack) * vel * tail_fade(i, n, fade);
        *l += v * gl;
        *r += v * gr;
        env *= rate;
    }
}

/// Crash: long high-passed noise, decorrelated left/right, slightly left.
fn crash(out: &mut Stereo, song: &Song, t: f64, vel: f64, rng: &mut Rng) {
    let sr = song.sr;
    let Some((s0, n)) = song.span(t, 2.4) else {
        return;
    };
    let rate = decay(0.7, sr);
    let mut env = 1.0;
    let mut filters = [Svf::new(3500.0, 0.6, sr), Svf::new(3700.0, 0.6, sr)];
    let gains = [0.5, 0.4];
    let attack = 0.001 * sr;
    let fade = (0.02 * sr) as usize;
    for i in 0..n {
        let e = env * attack_ramp(i, attack) * vel * tail_fade(i, n, fade);
        for ((channel, filter), gain) in out.iter_mut().zip(filters.iter_mut()).zip(gains) {
            channel[s0 + i] += gain * e * filter.process(rng.bipolar()).high;
        }
        env *= rate;
    }
}

// ---------------------------------------------------------------------------
// Bass
// ---------------------------------------------------------------------------

/// (eighth slot, length in eighths, octave shift in semitones, velocity).
type BassStep = (f64, f64, u8, f64);

const VERSE_BASS: [BassStep; 5] = [
    (0.0, 2.0, 0, 1.0),
    (3.0, 1.0, 0, 0.75),
    (4.0, 1.5, 0, 0.9),
    (6.0, 1.0, 12, 0.65),
    (7.0, 1.0, 0, 0.8),
];

const CHORUS_BASS: [BassStep; 8] = [
    (0.0, 1.0, 0, 1.0),
    (1.0, 1.0, 0, 0.7),
    (2.0, 1.0, 12, 0.8),
    (3.0, 1.0, 0, 0.7),
    (4.0, 1.0, 0, 0.95),
    (5.0, 1.0, 0, 0.7),
    (6.0, 1.0, 12, 0.8),
    (7.0, 1.0, 0, 0.75),
];

fn render_bass(song: &Song) -> Stereo {
    let mut out = silent(song.frames);
    let e = song.eighth();
    for (b, &sec) in song.bars.iter().enumerate() {
        let pattern: &[BassStep] = match sec {
            Section::Intro => &[],
            Section::Verse => &VERSE_BASS,
            Section::Chorus => &CHORUS_BASS,
        };
        let root = song.chord(b).bass;
        for &(slot, len, octave, vel) in pattern {
            let hit = Hit {
                t: song.bar_time(b) + slot * e,
                dur: len * e * 0.88,
                midi: f64::from(root + octave),
                vel,
            };
            bass_note(&mut out, song, hit);
        }
    }
    if !song.bars.is_empty() {
        let hit = Hit {
            t: song.end,
            dur: 1.4,
            midi: f64::from(AM.bass),
            vel: 1.0,
        };
        bass_note(&mut out, song, hit);
    }
    out
}

/// Saw/square blend through an enveloped SVF low-pass; mono, centred.
fn bass_note(out: &mut Stereo, song: &Song, hit: Hit) {
    let sr = song.sr;
    let release = 0.012;
    let Some((s0, n)) = song.span(hit.t, hit.dur + release) else {
        return;
    };
    let f = midi_hz(hit.midi);
    let dt = f / sr;
    let held = (hit.dur * sr).round() as usize;
    let release_n = release * sr;
    let (cut_rate, amp_rate) = (decay(0.07, sr), decay(0.25, sr));
    let (mut cut_env, mut amp_env) = (1.0, 1.0);
    let mut filter = Svf::default();
    let mut phase = 0.0f64;
    let attack = 0.003 * sr;
    let [left, right] = out;
    let frames = left[s0..s0 + n].iter_mut().zip(&mut right[s0..s0 + n]);
    for (i, (l, r)) in frames.enumerate() {
        if i % BLOCK == 0 {
            let fc = 90.0 + 1.5 * f + 900.0 * hit.vel * cut_env;
            filter.set(fc, 1.1, sr);
        }
        phase += dt;
        if phase >= 1.0 {
            phase -= 1.0;
        }
        let saw = 2.0 * phase - 1.0 - poly_blep(phase, dt);
        let square = (if phase < 0.5 { 1.0 } else { -1.0 }) + poly_blep(phase, dt)
            - poly_blep((phase + 0.5).fract(), dt);
        let x = filter.process(0.7 * saw + 0.3 * square).low;
        let off = if i >= held {
            (1.0 - (i - held) as f64 / release_n).max(0.0)
        } else {
            1.0
        };
        let v = x * (0.7 + 0.3 * amp_env) * attack_ramp(i, attack) * off * hit.vel;
        *l += v;
        *r += v;
        cut_env *= cut_rate;
        amp_env *= amp_rate;
    }
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyTone {
    /// Electric-piano-like: fast attack, decaying partials.
    Piano,
    /// Pad: slow attack, sustained, wider detune.
    Pad,
}

fn render_keys(song: &Song) -> Stereo {
    let mut out = silent(song.frames);
    let mut rng = Rng::new(0x4B45_5953);
    let e = song.eighth();
    for (b, &sec) in song.bars.iter().enumerate() {
        let chord = song.chord(b);
        // (eighth slot, length in eighths, velocity)
        let (tone, hits): (KeyTone, &[(f64, f64, f64)]) = match sec {
            Section::Intro => (KeyTone::Piano, &[(0.0, 4.0, 0.8), (4.0, 4.0, 0.6)]),
            Section::Verse => (
                KeyTone::Piano,
                &[(0.0, 3.0, 0.8), (3.0, 3.0, 0.62), (6.0, 2.0, 0.55)],
            ),
            Section::Chorus => (KeyTone::Pad, &[(0.0, 8.0, 0.75)]),
        };
        for &(slot, len, vel) in hits {
            let top = (tone == KeyTone::Pad).then_some(chord.keys[0] + 12);
            for midi in chord.keys.iter().copied().chain(top) {
                let hit = Hit {
                    t: song.bar_time(b) + slot * e,
                    dur: len * e,
                    midi: f64::from(midi),
                    vel: vel * rng.jitter(0.12),
                };
                keys_note(&mut out, song, hit, tone);
            }
        }
    }
    if !song.bars.is_empty() {
        for &midi in &AM.keys {
            let hit = Hit {
                t: song.end,
                dur: 1.2,
                midi: f64::from(midi),
                vel: 0.85,
            };
            keys_note(&mut out, song, hit, KeyTone::Piano);
        }
    }
    out
}

/// Additive note: four harmonic partials per channel, detuned left/right, ADSR-ish.
fn keys_note(out: &mut Stereo, song: &Song, hit: Hit, tone: KeyTone) {
    let sr = song.sr;
    // (partial amplitudes, partial decay base, decay exponent, attack, release tau, detune cents)
    let (amps, tau, tau_exp, attack, release, detune): ([f64; 4], f64, f64, f64, f64, f64) =
        match tone {
            KeyTone::Piano => ([1.0, 0.45, 0.22, 0.1], 1.6, 1.3, 0.004, 0.08, 2.0),
            KeyTone::Pad => ([1.0, 0.5, 0.3, 0.15], 6.0, 0.5, 0.15, 0.15, 4.0),
        };
    let Some((s0, n)) = song.span(hit.t, hit.dur + 4.0 * release) else {
        return;
    };
    let f = midi_hz(hit.midi);
    let held = (hit.dur * sr).round() as usize;
    let release_rate = decay(release, sr);
    let attack_n = attack * sr;
    let fade = (0.005 * sr) as usize;
    // Spread the voicing across the stereo field: lower notes left, higher right.
    let (gl, gr) = pan_gains(((hit.midi - 60.0) / 12.0 * 0.5).clamp(-0.5, 0.5));
    for (ch, channel) in out.iter_mut().enumerate() {
        let side = if ch == 0 { -1.0 } else { 1.0 };
        // Each partial is a decaying phasor: its envelope is built into the rotation.
        // The upper partials are detuned in opposite directions left and right
        // for width; the fundamental stays common so the channels stay correlated.
        let mut partials = [Phasor::new(0.0); 4];
        for (k, (p, &amp)) in partials.iter_mut().zip(amps.iter()).enumerate() {
            let harmonic = (k + 1) as f64;
            let cents = if k == 0 { 0.0 } else { side * detune };
            let fk = f * harmonic * (cents / 1200.0).dexp2();
            *p = Phasor::new(if fk < 0.45 * sr { amp } else { 0.0 });
            p.set(fk, decay(tau / harmonic.dpowf(tau_exp), sr), sr);
        }
        let mut env = 0.35 * hit.vel * if ch == 0 { gl } else { gr };
        for (i, o) in channel[s0..s0 + n].iter_mut().enumerate() {
            if i >= held {
                env *= release_rate;
            }
            let [p0, p1, p2, p3] = &mut partials;
            let v = (p0.next() + p1.next()) + (p2.next() + p3.next());
            let shape = if (i as f64) < attack_n || i + fade > n {
                attack_ramp(i, attack_n) * tail_fade(i, n, fade)
            } else {
                1.0
            };
            *o += v * env * shape;
        }
    }
}

// ---------------------------------------------------------------------------
// Voices (lead and backing): glottal source through three formant band-passes
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vowel {
    A,
    E,
    I,
    O,
    U,
}

impl Vowel {
    /// Formants as (frequency Hz, bandwidth Hz, linear gain) for F1, F2, F3.
    fn formants(self) -> [(f64, f64, f64); 3] {
        match self {
            Vowel::A => [
                (800.0, 90.0, 1.0),
                (1150.0, 100.0, 0.63),
                (2800.0, 140.0, 0.2),
            ],
            Vowel::E => [
                (450.0, 70.0, 1.0),
                (1750.0, 100.0, 0.4),
                (2700.0, 140.0, 0.18),
            ],
            Vowel::I => [
                (330.0, 60.0, 1.0),
                (2000.0, 110.0, 0.32),
                (2900.0, 150.0, 0.18),
            ],
            Vowel::O => [
                (480.0, 80.0, 1.0),
                (820.0, 90.0, 0.5),
                (2800.0, 130.0, 0.12),
            ],
            Vowel::U => [
                (340.0, 60.0, 1.0),
                (720.0, 80.0, 0.3),
                (2550.0, 170.0, 0.06),
            ],
        }
    }
}

/// A sung syllable: start and duration (seconds), MIDI pitch, vowel, level.
#[derive(Clone, Copy)]
struct Syllable {
    start: f64,
    dur: f64,
    midi: f64,
    vowel: Vowel,
    gain: f64,
}

struct VoiceStyle {
    /// Amplitude attack / release time constants (s).
    attack: f64,
    release: f64,
    /// Vibrato depth (semitones), rate (Hz) and onset delay after a syllable starts (s).
    vib_depth: f64,
    vib_rate: f64,
    vib_delay: f64,
    /// Breath-noise level relative to the voiced source.
    breath: f64,
    /// Pitch glide time constant (s).
    glide: f64,
    /// Source brightness: one-pole low-pass cut-off (Hz).
    tilt_hz: f64,
    pan: f64,
}

const LEAD_STYLE: VoiceStyle = VoiceStyle {
    attack: 0.03,
    release: 0.06,
    vib_depth: 0.3,
    vib_rate: 5.5,
    vib_delay: 0.22,
    breath: 0.09,
    glide: 0.025,
    tilt_hz: 2200.0,
    pan: 0.0,
};

/// Phrase templates: (beat within the 2-bar phrase, length in beats, MIDI, vowel).
type PhraseNote = (f64, f64, u8, Vowel);

const VERSE_PHRASES: [&[PhraseNote]; 2] = [
    &[
        (0.5, 0.5, 64, Vowel::A),
        (1.0, 0.5, 64, Vowel::E),
        (1.5, 1.0, 67, Vowel::I),
        (2.5, 0.5, 65, Vowel::O),
        (3.0, 1.0, 64, Vowel::A),
        (4.0, 0.5, 60, Vowel::E),
        (4.5, 0.5, 62, Vowel::U),
        (5.0, 1.5, 60, Vowel::A),
    ],
    &[
        (0.5, 0.5, 67, Vowel::O),
        (1.0, 0.5, 67, Vowel::A),
        (1.5, 1.0, 69, Vowel::E),
        (2.5, 0.5, 67, Vowel::I),
        (3.0, 1.0, 64, Vowel::A),
        (4.0, 0.5, 62, Vowel::O),
        (4.5, 0.5, 59, Vowel::E),
        (5.0, 1.5, 62, Vowel::A),
    ],
];

const CHORUS_PHRASES: [&[PhraseNote]; 2] = [
    &[
        (0.0, 1.0, 72, Vowel::A),
        (1.0, 0.5, 71, Vowel::E),
        (1.5, 1.0, 69, Vowel::O),
        (2.5, 0.5, 67, Vowel::I),
        (3.0, 1.0, 69, Vowel::A),
        (4.0, 1.0, 72, Vowel::O),
        (5.0, 0.5, 74, Vowel::E),
        (5.5, 1.0, 72, Vowel::A),
    ],
    &[
        (0.0, 1.0, 76, Vowel::A),
        (1.0, 0.5, 74, Vowel::E),
        (1.5, 1.0, 72, Vowel::I),
        (2.5, 0.5, 71, Vowel::O),
        (3.0, 1.0, 67, Vowel::A),
        (4.0, 0.5, 71, Vowel::E),
        (4.5, 0.5, 72, Vowel::U),
        (5.0, 1.5, 74, Vowel::A),
    ],
];

fn render_lead_vocal(song: &Song) -> Stereo {
    let mut out = silent(song.frames);
    let mut rng = Rng::new(0x564F_4341);
    let beat = song.beat();
    let mut phrase: Vec<Syllable> = Vec::with_capacity(16);
    for (sec, first, end) in song.sections() {
        let (templates, level) = match sec {
            Section::Intro => continue,
            Section::Verse => (&VERSE_PHRASES, 0.85),
            Section::Chorus => (&CHORUS_PHRASES, 1.0),
        };
        let limit = song.bar_time(end) - 0.25 * beat;
        for (p, b) in (first..end).step_by(2).enumerate() {
            let t0 = song.bar_time(b);
            phrase.clear();
            for &(at, len, midi, vowel) in templates[p % templates.len()] {
                let start = t0 + at * beat;
                let dur = (len * beat).min(limit - start);
                if dur >= 0.2 * beat {
                    phrase.push(Syllable {
                        start,
                        dur,
                        midi: f64::from(midi),
                        vowel,
                        gain: level * if len >= 1.0 { 1.0 } else { 0.9 },
                    });
                }
            }
            render_phrase(&mut out, song, &phrase, &LEAD_STYLE, &mut rng);
        }
    }
    out
}

fn render_backing_vocals(song: &Song) -> Stereo {
    let mut out = silent(song.frames);
    let mut rng = Rng::new(0x4241_434B);
    let beat = song.beat();
    let mut line: Vec<Syllable> = Vec::with_capacity(8);
    for (sec, first, end) in song.sections() {
        if sec != Section::Chorus {
            continue;
        }
        for voice in 0..2 {
            line.clear();
            for b in first..end {
                let vowel = if ((b - first) / 2) % 2 == 0 {
                    Vowel::U
                } else {
                    Vowel::A
                };
                line.push(Syllable {
                    start: song.bar_time(b),
                    dur: song.bar - 0.35 * beat,
                    midi: f64::from(song.chord(b).backing[voice]),
                    vowel,
                    gain: 1.0,
                });
            }
            let style = VoiceStyle {
                attack: 0.14,
                release: 0.25,
                vib_depth: 0.12,
                vib_rate: if voice == 0 { 5.0 } else { 5.3 },
                vib_delay: 0.3,
                breath: 0.14,
                glide: 0.06,
                tilt_hz: 1400.0,
                pan: if voice == 0 { -0.65 } else { 0.65 },
            };
            render_phrase(&mut out, song, &line, &style, &mut rng);
        }
    }
    out
}

/// Render one phrase (syllables in time order, non-overlapping) of a formant voice.
fn render_phrase(
    out: &mut Stereo,
    song: &Song,
    notes: &[Syllable],
    style: &VoiceStyle,
    rng: &mut Rng,
) {
    let (Some(first), Some(last)) = (notes.first(), notes.last()) else {
        return;
    };
    let sr = song.sr;
    let s_begin = song.sample(first.start);
    let s_stop = song
        .sample(last.start + last.dur + 1.5 * style.release + 0.05)
        .min(song.frames);
    if s_begin >= s_stop {
        return;
    }
    let (gl, gr) = pan_gains(style.pan);
    let block = BLOCK as f64;
    let glide_coef = smooth_coef(style.glide, block, sr);
    let formant_coef = smooth_coef(0.035, block, sr);
    let attack_coef = smooth_coef(style.attack / 3.0, 1.0, sr);
    let release_coef = smooth_coef(style.release / 3.0, 1.0, sr);
    let release_step = 1.0 / (4.0 * style.release * sr);
    let burst_rate = decay(0.03, sr);

    let mut idx = 0usize;
    let mut pitch = first.midi;
    let mut formants = first.vowel.formants();
    let mut filters = [Biquad::default(); 3];
    let mut tilt = OnePole::new(style.tilt_hz, sr);
    let mut air = OnePole::new(4000.0, sr);
    let mut amp = 0.0f64;
    let mut burst = 1.0f64;
    let mut vib_phase = 0.0f64;
    let mut drift = 0.0f64;
    let mut phase = 0.0f64;
    let mut dt = midi_hz(pitch) / sr;
    let [left, right] = out;

    for s in s_begin..s_stop {
        let t = s as f64 / sr;
        while idx + 1 < notes.len() && t >= notes[idx + 1].start {
            idx += 1;
            burst = 1.0;
        }
        let note = notes[idx];
        let since = t - note.start;
        let in_note = since >= 0.0 && since < note.dur;
        let legato = idx > 0 && note.start - (notes[idx - 1].start + notes[idx - 1].dur) < 0.05;
        let target = if !in_note {
            0.0
        } else if legato && since < 0.03 {
            0.45 * note.gain
        } else {
            note.gain
        };
        if target > amp {
            amp += (target - amp) * attack_coef;
        } else {
            amp -= ((amp - target) * release_coef)
                .max(release_step)
                .min(amp - target);
        }

        if (s - s_begin).is_multiple_of(BLOCK) {
            let depth = style.vib_depth * ((since - style.vib_delay) / 0.35).clamp(0.0, 1.0);
            vib_phase += TAU * style.vib_rate * block / sr;
            drift += (0.06 * rng.bipolar() - drift) * 0.05;
            pitch += (note.midi - pitch) * glide_coef;
            dt = (midi_hz(pitch + depth * vib_phase.dsin() + drift) / sr).min(0.45);
            for ((state, target), filter) in formants
                .iter_mut()
                .zip(note.vowel.formants())
                .zip(filters.iter_mut())
            {
                state.0 += (target.0 - state.0) * formant_coef;
                state.1 += (target.1 - state.1) * formant_coef;
                state.2 += (target.2 - state.2) * formant_coef;
                filter.set_bandpass(state.0, state.1, sr);
            }
        }

        phase += dt;
        if phase >= 1.0 {
            phase -= 1.0;
        }
        let saw = 2.0 * phase - 1.0 - poly_blep(phase, dt);
        let voiced = tilt.lp(saw);
        let consonant = if in_note { 0.6 * burst } else { 0.0 };
        let breath = rng.bipolar() * style.breath * (amp + consonant);
        burst *= burst_rate;
        let excitation = voiced * amp + breath;
        let mut v = 0.15 * air.hp(breath);
        for (state, filter) in formants.iter().zip(filters.iter_mut()) {
            v += state.2 * filter.process(excitation);
        }
        left[s] += v * gl;
        right[s] += v * gr;
    }
}

// ---------------------------------------------------------------------------
// FX
// ---------------------------------------------------------------------------

fn render_fx(song: &Song) -> Stereo {
    let mut out = silent(song.frames);
    let mut rng = Rng::new(0x4658_0001);
    for (sec, first, _) in song.sections() {
        if first == 0 {
            continue;
        }
        let t = song.bar_time(first);
        if sec == Section::Chorus {
            riser(&mut out, song, t, &mut rng);
        }
        reverse_cymbal(&mut out, song, t, &mut rng);
        if sec == Section::Chorus {
            impact(&mut out, song, t, &mut rng);
        }
    }
    out
}

/// One bar of band-passed noise with rising centre and level, auto-panned, ending at `t_end`.
fn riser(out: &mut Stereo, song: &Song, t_end: f64, rng: &mut Rng) {
    let sr = song.sr;
    let s0 = song.sample((t_end - song.bar).max(0.0));
    let s1 = song.sample(t_end).min(song.frames);
    if s1 <= s0 {
        return;
    }
    let n = s1 - s0;
    let mut filter = Svf::default();
    let mut lfo = 0.0f64;
    let (mut gl, mut gr) = pan_gains(0.0);
    let fade = (0.01 * sr) as usize;
    let [left, right] = out;
    let frames = left[s0..s1].iter_mut().zip(&mut right[s0..s1]);
    for (i, (l, r)) in frames.enumerate() {
        let x = i as f64 / n as f64;
        if i % BLOCK == 0 {
            filter.set(250.0 * 36f64.dpowf(x), 2.5, sr);
            lfo += TAU * (0.4 + 5.0 * x * x) * BLOCK as f64 / sr;
            (gl, gr) = pan_gains(0.75 * lfo.dsin());
        }
        let v = 2.0 * filter.process(rng.bipolar()).band * x * x * tail_fade(i, n, fade);
        *l += v * gl;
        *r += v * gr;
    }
}

/// Reverse-cymbal swell: high-passed stereo noise rising over 1.5 beats into `t_end`.
fn reverse_cymbal(out: &mut Stereo, song: &Song, t_end: f64, rng: &mut Rng) {
    let sr = song.sr;
    let s0 = song.sample((t_end - 1.5 * song.beat()).max(0.0));
    let s1 = song.sample(t_end).min(song.frames);
    if s1 <= s0 {
        return;
    }
    let n = s1 - s0;
    let mut filters = [Svf::new(5000.0, 0.7, sr), Svf::new(5200.0, 0.7, sr)];
    let fade = (0.006 * sr) as usize;
    for i in 0..n {
        let x = i as f64 / n as f64;
        let env = 0.5 * x * (5.0 * (x - 1.0)).dexp() * tail_fade(i, n, fade);
        for (channel, filter) in out.iter_mut().zip(filters.iter_mut()) {
            channel[s0 + i] += env * filter.process(rng.bipolar()).high;
        }
    }
}

/// Low boom: sine swept ~114 → 34 Hz with a long decay plus a dark noise thump.
fn impact(out: &mut Stereo, song: &Song, t: f64, rng: &mut Rng) {
    let sr = song.sr;
    let Some((s0, n)) = song.span(t, 2.4) else {
        return;
    };
    let (sweep_rate, body_rate, noise_rate) = (decay(0.08, sr), decay(0.6, sr), decay(0.1, sr));
    let (mut sweep, mut body, mut noise_env) = (1.0, 1.0, 1.0);
    let mut osc = Phasor::new(1.0);
    let mut filters = [OnePole::new(300.0, sr), OnePole::new(320.0, sr)];
    let attack = 0.0015 * sr;
    let fade = (0.03 * sr) as usize;
    for i in 0..n {
        if i % SWEEP_BLOCK == 0 {
            osc.set(34.0 + 80.0 * sweep, 1.0, sr);
        }
        let shape = attack_ramp(i, attack) * tail_fade(i, n, fade);
        let boom = osc.next() * body;
        for (channel, filter) in out.iter_mut().zip(filters.iter_mut()) {
            let thump = 2.0 * filter.lp(rng.bipolar()) * noise_env;
            channel[s0 + i] += (boom + thump) * shape;
        }
        sweep *= sweep_rate;
        body *= body_rate;
        noise_env *= noise_rate;
    }
}

// ---------------------------------------------------------------------------
// Final processing
// ---------------------------------------------------------------------------

/// Finishes one channel in place: optionally a one-pole DC blocker at ~5 Hz
/// (flushing tiny values to zero), then a raised-cosine fade to exact silence
/// over the last `END_FADE_SECONDS`. Returns the channel's sample peak.
fn finish_channel(x: &mut [f64], sr: f64, dc_block: bool) -> f64 {
    let fade_len = ((END_FADE_SECONDS * sr).round() as usize).min(x.len());
    let fade_start = x.len() - fade_len;
    if dc_block {
        let r = (-TAU * 5.0 / sr).dexp();
        let (mut x1, mut y1) = (0.0f64, 0.0f64);
        for v in x.iter_mut() {
            let y = *v - x1 + r * y1;
            x1 = *v;
            y1 = if y.abs() < 1e-30 { 0.0 } else { y };
            *v = y1;
        }
    }
    for (i, v) in x[fade_start..].iter_mut().enumerate() {
        let p = (i + 1) as f64 / fade_len as f64;
        *v *= 0.5 * (1.0 + (PI * p).dcos());
    }
    x.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Scales each stem by its gain in place and returns the sample peak of the
/// unity sum of all stems.
fn apply_gains_and_sum_peak(stems: &mut [Stereo], gains: &[f64]) -> f64 {
    let frames = stems.first().map_or(0, |s| s[0].len());
    let mut sum = vec![0.0f64; frames];
    let mut peak = 0.0f64;
    for ch in 0..2 {
        sum.iter_mut().for_each(|v| *v = 0.0);
        for (stem, &gain) in stems.iter_mut().zip(gains) {
            for (acc, v) in sum.iter_mut().zip(stem[ch].iter_mut()) {
                *v *= gain;
                *acc += *v;
            }
        }
        peak = sum.iter().fold(peak, |m, v| m.max(v.abs()));
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    const SR: u32 = 48_000;
    const LONG_SECONDS: f64 = 45.0;
    const NAMES: [&str; 6] = [
        "drums",
        "bass",
        "keys",
        "lead_vocal",
        "backing_vocals",
        "fx",
    ];
    const ROLES: [&str; 6] = ["drums", "bass", "keys", "vocals", "backing_vocals", "fx"];

    fn long_session() -> &'static [SynthStem] {
        static SESSION: OnceLock<Vec<SynthStem>> = OnceLock::new();
        SESSION.get_or_init(|| synthesize(LONG_SECONDS, SR))
    }

    fn stem<'a>(stems: &'a [SynthStem], name: &str) -> &'a SynthStem {
        match stems.iter().find(|s| s.name == name) {
            Some(s) => s,
            None => panic!("no stem named {name}"),
        }
    }

    fn db(x: f64) -> f64 {
        20.0 * x.max(1e-300).dlog10()
    }

    fn peak(s: &SynthStem) -> f64 {
        s.channels
            .iter()
            .flatten()
            .fold(0.0f64, |m, v| m.max(v.abs()))
    }

    /// RMS over both channels of frames `a..b`.
    fn rms(s: &SynthStem, a: usize, b: usize) -> f64 {
        let b = b.min(s.channels[0].len());
        if b <= a {
            return 0.0;
        }
        let sum: f64 = s
            .channels
            .iter()
            .flat_map(|c| c[a..b].iter())
            .map(|v| v * v)
            .sum();
        (sum / (2 * (b - a)) as f64).sqrt()
    }

    fn frame(t: f64) -> usize {
        (t * f64::from(SR)).round() as usize
    }

    #[test]
    fn synth_is_deterministic() {
        let a = synthesize(10.0, SR);
        let b = synthesize(10.0, SR);
        assert_eq!(a.len(), b.len());
        for (sa, sb) in a.iter().zip(&b) {
            assert_eq!(sa.name, sb.name);
            for (ca, cb) in sa.channels.iter().zip(&sb.channels) {
                assert_eq!(ca.len(), cb.len());
                assert!(
                    ca.iter().zip(cb).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "stem {} differs between runs",
                    sa.name
                );
            }
        }
        // Everything but the chorus-only backing vocals sounds within 10 s.
        for s in &a {
            if s.name != "backing_vocals" {
                assert!(peak(s) > 0.0, "stem {} is silent in 10 s", s.name);
            }
        }
    }

    #[test]
    fn synth_lengths_names_and_roles() {
        let cases: [(f64, u32); 6] = [
            (0.0, 48_000),
            (-1.0, 48_000),
            (1.0, 44_100),
            (2.345_67, 48_000),
            (4.999_99, 22_050),
            (3.0, 0),
        ];
        for (seconds, rate) in cases {
            let stems = synthesize(seconds, rate);
            let expected = if rate == 0 || seconds <= 0.0 {
                0
            } else {
                (seconds * f64::from(rate)).round() as usize
            };
            assert_eq!(stems.len(), 6);
            for ((s, name), role) in stems.iter().zip(NAMES).zip(ROLES) {
                assert_eq!(s.name, name);
                assert_eq!(s.role, role);
                for c in &s.channels {
                    assert_eq!(c.len(), expected, "{name} at {seconds} s / {rate} Hz");
                    assert!(c.iter().all(|v| v.is_finite()));
                }
            }
        }
    }

    #[test]
    fn synth_levels_and_sum_headroom() {
        let stems = long_session();
        let frames = frame(LONG_SECONDS);
        for s in stems {
            for c in &s.channels {
                assert_eq!(c.len(), frames);
                assert!(c.iter().all(|v| v.is_finite()), "{} has NaN/inf", s.name);
                let mean = c.iter().sum::<f64>() / c.len() as f64;
                assert!(mean.abs() < 1e-3, "{} DC offset {mean}", s.name);
            }
            let p = db(peak(s));
            assert!(
                (-20.0..=-5.0).contains(&p),
                "{} peaks at {p:.2} dBFS",
                s.name
            );
        }
        let mut sum_peak = 0.0f64;
        for ch in 0..2 {
            for i in 0..frames {
                let sum: f64 = stems.iter().map(|s| s.channels[ch][i]).sum();
                sum_peak = sum_peak.max(sum.abs());
            }
        }
        assert!(
            db(sum_peak) < -1.0,
            "unity sum peaks at {:.2} dBFS",
            db(sum_peak)
        );
    }

    #[test]
    fn synth_lead_vocal_has_phrasing_gaps() {
        let stems = long_session();
        let lead = stem(stems, "lead_vocal");
        let song = Song::new(LONG_SECONDS, SR);
        // Silent during the whole intro (so certainly the first bar).
        assert_eq!(rms(lead, 0, frame(song.bar_time(INTRO_BARS))), 0.0);
        let window = frame(0.05);
        let mut runs = 0;
        let mut run = 0usize;
        let mut a = frame(song.bar_time(INTRO_BARS));
        let stop = frame(song.end);
        while a + window <= stop {
            if db(rms(lead, a, a + window)) < -60.0 {
                run += window;
            } else {
                if run >= frame(0.25) {
                    runs += 1;
                }
                run = 0;
            }
            a += window;
        }
        if run >= frame(0.25) {
            runs += 1;
        }
        assert!(runs >= 3, "only {runs} phrasing gaps");
        // And it does sing: verses and choruses are well above the gaps.
        assert!(db(rms(lead, frame(song.bar_time(INTRO_BARS)), stop)) > -35.0);
    }

    #[test]
    fn synth_drums_are_punchy_and_bass_is_low() {
        let stems = long_session();
        let drums = stem(stems, "drums");
        let len = drums.channels[0].len();
        let crest = db(peak(drums) / rms(drums, 0, len));
        assert!(crest > 12.0, "drum crest factor {crest:.2} dB");

        let bass = stem(stems, "bass");
        let mut hp = OnePole::new(300.0, f64::from(SR));
        let (mut total, mut high) = (0.0, 0.0);
        for &v in &bass.channels[0] {
            let h = hp.hp(v);
            total += v * v;
            high += h * h;
        }
        assert!(total > 0.0);
        assert!(
            high / total < 0.35,
            "bass energy above 300 Hz: {:.3}",
            high / total
        );
        // Mono-centred.
        assert!(
            bass.channels[0]
                .iter()
                .zip(&bass.channels[1])
                .all(|(l, r)| l == r)
        );
    }

    #[test]
    fn synth_backing_vocals_only_in_choruses() {
        let stems = long_session();
        let backing = stem(stems, "backing_vocals");
        let song = Song::new(LONG_SECONDS, SR);
        let first_chorus = INTRO_BARS + SECTION_BARS;
        assert_eq!(song.bars[first_chorus], Section::Chorus);
        let before = frame(song.bar_time(first_chorus));
        assert!(db(rms(backing, 0, before)) < -80.0);
        let chorus_end = frame(song.bar_time(first_chorus + SECTION_BARS));
        assert!(db(rms(backing, before, chorus_end)) > -40.0);
    }

    #[test]
    fn synth_arrangement_and_silent_ending() {
        let song = Song::new(LONG_SECONDS, SR);
        let sections = song.sections();
        assert_eq!(sections[0], (Section::Intro, 0, 2));
        assert_eq!(sections[1], (Section::Verse, 2, 6));
        assert_eq!(sections[2], (Section::Chorus, 6, 10));
        assert!(LONG_SECONDS - song.end >= MIN_TAIL_SECONDS);
        assert!(LONG_SECONDS - song.end < MIN_TAIL_SECONDS + song.bar);

        let stems = long_session();
        let frames = frame(LONG_SECONDS);
        for s in stems {
            // The tail decays: the last 10 ms are far below the stem's peak.
            let tail = rms(s, frames - frame(0.01), frames);
            assert!(db(tail) < db(peak(s)) - 40.0, "{} does not decay", s.name);
            for c in &s.channels {
                assert!(c[frames - 1].abs() < 1e-9);
            }
        }
    }

    #[test]
    fn synth_other_sample_rates_stay_sane() {
        for rate in [8_000, 44_100] {
            let stems = synthesize(16.0, rate);
            for s in &stems {
                assert!(s.channels.iter().flatten().all(|v| v.is_finite()));
                assert!(peak(s) <= db_to_gain(-5.0), "{} at {rate} Hz", s.name);
            }
        }
    }
}
