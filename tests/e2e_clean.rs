//! Clean versions (issue 20) on a real-instrument session (a General MIDI
//! file through fluidsynth, a voice by espeak-ng; `tests/support/real_session.py`,
//! Python from `STEMFORGE_TEST_PYTHON`): the title lists explicit-lyric
//! ranges where the voice is loud, and the pack renders the full mix, the
//! built-in `clean` mix, clean stems (muted) and ducked stems (-20 dB),
//! beside the plain stems. Everything is measured on the delivered files
//! decoded by ffmpeg (32-bit float, so no dither hides a muted range).

use std::path::{Path, PathBuf};
use std::process::Command;

use stemforge_testkit::{real_session, render_ok};

const RATE: usize = 48_000;
/// The session's master limiter runs a 121-tap linear-phase band limit
/// (60 frames either side) after the stems' chains: it spreads the last
/// and first faded samples that far into a muted range.
const BAND_LIMIT_HALF: usize = 60;
const FADE: usize = RATE / 100; // 10 ms, the default

/// Planar f64 samples of any file ffmpeg reads.
fn decode(p: &Path) -> Vec<Vec<f64>> {
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(p)
        .args(["-f", "f64le", "-acodec", "pcm_f64le", "-"])
        .output()
        .expect("ffmpeg must be installed (.ci/run installs it)");
    assert!(o.status.success(), "ffmpeg on {}", p.display());
    let ch = 2;
    let frames = o.stdout.len() / 8 / ch;
    let mut out: Vec<Vec<f64>> = (0..ch).map(|_| Vec::with_capacity(frames)).collect();
    for (i, b) in o.stdout.chunks_exact(8).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        out[i % ch].push(f64::from_le_bytes(a));
    }
    out
}

fn db(x: f64) -> f64 {
    20.0 * x.log10()
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
}

fn peak(x: &[f64]) -> f64 {
    x.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// Pearson correlation of two equally long signals.
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    ab / (aa * bb).sqrt()
}

/// Sample-to-sample differences.
fn diff(x: &[f64]) -> Vec<f64> {
    x.windows(2).map(|w| w[1] - w[0]).collect()
}

/// L + R.
fn mono(ch: &[Vec<f64>]) -> Vec<f64> {
    ch[0].iter().zip(&ch[1]).map(|(l, r)| l + r).collect()
}

/// Two 1 s windows where the voice is loudest, at least 2 s apart and
/// clear of the ends, in frames, in time order.
fn loud_spots(voice: &[f64]) -> Vec<(usize, usize)> {
    let hop = RATE / 10;
    let starts: Vec<usize> = (RATE / 2..voice.len() - 2 * RATE).step_by(hop).collect();
    let mut by_level: Vec<(f64, usize)> = starts
        .iter()
        .map(|&s| (rms(&voice[s..s + RATE]), s))
        .collect();
    by_level.sort_by(|a, b| b.0.total_cmp(&a.0));
    let first = by_level[0].1;
    let second = by_level
        .iter()
        .find(|(_, s)| s.abs_diff(first) >= 2 * RATE)
        .expect("a second loud second")
        .1;
    let mut spots = vec![(first, first + RATE), (second, second + RATE)];
    spots.sort();
    spots
}

/// `MM:SS.sss` of a frame count.
fn clock(frames: usize) -> String {
    let ms = frames * 1000 / RATE;
    format!("{:02}:{:02}.{:03}", ms / 60_000, ms / 1000 % 60, ms % 1000)
}

fn write_spec(dir: &Path, spots: &[(usize, usize)]) -> PathBuf {
    let base = std::fs::read_to_string(dir.join("deliverables.toml")).expect("spec");
    let base = base.replacen(
        "profile = \"ebu-r128\"\n",
        "profile = \"ebu-r128\"\nbit_depth = 32\nstem_naming = \"{title}_{variant}-{role}_{rate}k{bits}.wav\"\n",
        1,
    );
    let (head, titles) = base.split_once("[[titles]]").expect("titles");
    // One range as a clock string, one as seconds.
    let explicit = format!(
        "explicit = [[\"{}\", \"{}\"], [{}, {}]]\n",
        clock(spots[0].0),
        clock(spots[0].1),
        spots[1].0 as f64 / RATE as f64,
        spots[1].1 as f64 / RATE as f64
    );
    let titles = titles.replacen(
        "name = \"Last Train\"\n",
        &format!("name = \"Last Train\"\n{explicit}"),
        1,
    );
    let spec = format!(
        "{head}[variants.full]\n[variants.stems]\n[variants.clean]\n\
         [variants.clean_stems]\noutput = \"stems\"\nclean = {{}}\n\
         [variants.duck_stems]\noutput = \"stems\"\nclean = {{ mode = \"duck\", duck_db = -20 }}\n\n\
         [[titles]]{titles}"
    );
    let p = dir.join("clean.toml");
    std::fs::write(&p, spec).expect("write spec");
    p
}

/// The largest sample-to-sample step of `x` inside `[from, to)`.
fn largest_step(x: &[f64], from: usize, to: usize) -> f64 {
    x[from..to]
        .windows(2)
        .fold(0.0, |m, w| m.max((w[1] - w[0]).abs()))
}

#[test]
fn clean_versions_mute_and_duck_the_explicit_ranges() {
    let dir = real_session("clean", &["--seconds", "20"]);
    let voice_in = decode(&dir.join("Voice.wav"));
    let spots = loud_spots(&mono(&voice_in));
    let spec = write_spec(&dir, &spots);
    let out = dir.join("out");
    let manifest = render_ok(&spec, &out);
    let file = |v: &str| out.join(format!("Last-Train_{v}_48k32f.wav"));
    // The built-in clean mix says what it did; every output passed.
    let outs = stemforge_testkit::outputs(&manifest);
    assert_eq!(outs.len(), 17, "full, clean, three sets of five stems");
    let clean_desc = outs
        .iter()
        .find(|o| o["variant"] == "clean")
        .and_then(|o| o["description"].as_str())
        .expect("the clean mix");
    assert!(
        clean_desc.contains("mutes vocals, backing_vocals over the title's explicit ranges"),
        "{clean_desc}"
    );
    assert!(
        outs.iter().all(|o| o["verdict"]["verdict"] == "pass"),
        "{:?}",
        outs.iter()
            .map(|o| &o["verdict"]["verdict"])
            .collect::<Vec<_>>()
    );

    let clean_vox = decode(&file("clean_stems-vocals"));
    let plain_vox = decode(&file("stems-vocals"));
    let duck_vox = decode(&file("duck_stems-vocals"));
    let full = decode(&file("full"));
    let clean = decode(&file("clean"));
    // Every delivered file starts at the timeline's zero with the stems'
    // length.
    for f in [&clean_vox, &plain_vox, &duck_vox, &full, &clean] {
        assert_eq!(f[0].len(), voice_in[0].len());
    }

    for &(s, e) in &spots {
        let at = format!(
            "{:.3}–{:.3} s",
            s as f64 / RATE as f64,
            e as f64 / RATE as f64
        );
        // 1. Muted: digital silence over the range, but for the band
        // limit's reach at its edges, where it is far below hearing; the
        // plain stems are loud there (so this can fail).
        let inner = s + BAND_LIMIT_HALF..e - BAND_LIMIT_HALF;
        for ch in 0..2 {
            let c = &clean_vox[ch];
            assert!(
                c[inner.clone()].iter().all(|x| *x == 0.0),
                "{at}: clean vocals not silent (peak {:.1} dBFS)",
                db(peak(&c[inner.clone()]))
            );
            let edges = peak(&c[s..s + BAND_LIMIT_HALF]).max(peak(&c[e - BAND_LIMIT_HALF..e]));
            assert!(
                edges < 10f64.powf(-140.0 / 20.0),
                "{at}: edges {:.1} dBFS",
                db(edges)
            );
            let loud = peak(&plain_vox[ch][s..e]);
            assert!(db(loud) > -30.0, "{at}: plain vocals {:.1} dBFS", db(loud));
            eprintln!(
                "{at} ch{ch}: clean vocals silent over {} of {} frames (edges peak {:.1} dBFS); plain vocals peak {:.1} dBFS",
                inner.len(),
                e - s,
                db(edges),
                db(loud)
            );
        }

        // 2. Ducked: 20 dB down over the range against the plain stems.
        for ch in 0..2 {
            let down = db(rms(&duck_vox[ch][s..e]) / rms(&plain_vox[ch][s..e]));
            eprintln!("{at} ch{ch}: ducked vocals {down:+.3} dB");
            assert!((down + 20.0).abs() <= 0.1, "{at}: ducked {down:+.3} dB");
        }

        // 3. The clean mix holds nothing of the voice over the range; the
        // full mix does.
        // Measured on first differences as well: two unrelated seconds of
        // bass-heavy audio correlate by chance up to about ±0.02; the
        // difference whitens both, so chance falls to about 1/√48000.
        let v = &mono(&voice_in)[s..e];
        let (mc, mf) = (&mono(&clean)[s..e], &mono(&full)[s..e]);
        let c_clean = correlation(mc, v);
        let c_full = correlation(mf, v);
        let (dv, dc, df) = (diff(v), diff(mc), diff(mf));
        let d_clean = correlation(&dc, &dv);
        let d_full = correlation(&df, &dv);
        eprintln!(
            "{at}: correlation with the voice: clean {c_clean:+.4} (differences {d_clean:+.4}), full {c_full:+.4} (differences {d_full:+.4})"
        );
        assert!(d_clean.abs() < 0.02, "{at}: clean mix {d_clean}");
        assert!(c_clean.abs() < 0.05, "{at}: clean mix {c_clean}");
        assert!(
            c_full > 0.3 && d_full > 0.3,
            "{at}: full mix {c_full}, {d_full}"
        );
    }

    // 4. No click: around each fade the clean vocals step no more from
    // sample to sample than they do anywhere else in the file.
    let guard = 2 * FADE;
    for (ch, c) in clean_vox.iter().enumerate() {
        let mut around = 0.0f64;
        let mut elsewhere = 0.0f64;
        let mut from = 0;
        for &(s, e) in &spots {
            around = around
                .max(largest_step(c, s - FADE - guard, s + guard))
                .max(largest_step(c, e - guard, e + FADE + guard));
            elsewhere = elsewhere.max(largest_step(c, from, s - FADE - guard));
            from = e + FADE + guard;
        }
        elsewhere = elsewhere.max(largest_step(c, from, c.len()));
        eprintln!(
            "ch{ch}: largest step around the fades {:.5}, elsewhere {:.5}",
            around, elsewhere
        );
        assert!(around <= elsewhere, "ch{ch}: {around} > {elsewhere}");
    }
}
