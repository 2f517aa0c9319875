//! The demo song printed as a 5.1 session, the way a film mixer's stems
//! arrive: some stems 5.1, the lead vocal mono (the centre), the backing
//! vocals stereo (the front pair). Surround returns are short delays of the
//! front, and the bass feeds the LFE, so the LFE low-pass has work to do.

use super::synth::SynthStem;

/// Delays `x` by `frames` (the first `frames` are silence), same length.
fn delayed(x: &[f64], frames: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    if frames < x.len() {
        out[frames..].copy_from_slice(&x[..x.len() - frames]);
    }
    out
}

fn scaled(x: &[f64], g: f64) -> Vec<f64> {
    x.iter().map(|v| v * g).collect()
}

/// The stem's channels as its file holds them: 1, 2 or 6 (L R C LFE Ls Rs).
pub fn print(s: &SynthStem, rate: u32) -> Vec<Vec<f64>> {
    let [l, r] = &s.channels;
    let n = l.len();
    let silent = vec![0.0; n];
    let ms = |m: f64| (m * f64::from(rate) / 1000.0).round() as usize;
    let mono: Vec<f64> = l.iter().zip(r).map(|(a, b)| 0.5 * (a + b)).collect();
    match s.name {
        // Kit in front, its room in the surrounds.
        "drums" => vec![
            l.clone(),
            r.clone(),
            silent.clone(),
            silent,
            scaled(&delayed(l, ms(17.0)), 0.35),
            scaled(&delayed(r, ms(23.0)), 0.35),
        ],
        // Bass in the centre and the front pair, and in the LFE (full
        // band as printed: its harmonics above 120 Hz are the low-pass's).
        "bass" => vec![
            scaled(l, 0.5),
            scaled(r, 0.5),
            scaled(&mono, 0.5),
            scaled(&mono, 0.7),
            silent.clone(),
            silent,
        ],
        // Keys wide: front pair, crossed delays in the surrounds.
        "keys" => vec![
            l.clone(),
            r.clone(),
            silent.clone(),
            silent,
            scaled(&delayed(r, ms(29.0)), 0.5),
            scaled(&delayed(l, ms(31.0)), 0.5),
        ],
        // Effects mostly behind.
        "fx" => vec![
            scaled(l, 0.5),
            scaled(r, 0.5),
            silent.clone(),
            silent,
            l.clone(),
            r.clone(),
        ],
        // The lead vocal is a mono stem: it plays in the centre.
        "lead_vocal" => vec![mono],
        // Backing vocals stay a stereo stem: the front pair.
        _ => vec![l.clone(), r.clone()],
    }
}
