//! ffmpeg's `ebur128` at full precision (the independent loudness
//! reference) and a temporary folder removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory under the system temp dir, unique per process and test, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("stemforge-test-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Integrated loudness (LUFS), loudness range (LU) and true peak (dBTP, the
/// largest over channels) by ffmpeg's ebur128 filter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FfR128 {
    pub i: f64,
    pub lra: f64,
    /// The loudness range from ffmpeg's own 100 ms short-term values by the
    /// percentile rule of the EBU Tech 3342 reference code (nearest rank
    /// `round((n-1)·p)`). ffmpeg's `LRA` ranks its histogram as `lrint(n·p)`,
    /// one rank lower at the 10th percentile for some n: on sparse material
    /// (a stem that is silent half the time) that alone moves LRA by ~0.7 LU.
    pub lra_ebu_rule: f64,
    pub tp: f64,
}

/// [`FfR128`] of a file, read at full precision from the filter's per-frame
/// metadata (`lavfi.r128.I`, `lavfi.r128.LRA`, `lavfi.r128.true_peaks_chN`)
/// Safe to call from several threads at once.
pub fn ffmpeg_r128(p: &Path) -> FfR128 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let meta = std::env::temp_dir().join(format!(
        "stemforge-ffr128-{}-{}-{}.txt",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed),
        p.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let filter = format!(
        "ebur128=peak=true:metadata=1,ametadata=mode=print:file={}",
        meta.display()
    );
    let o = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-i"])
        .arg(p)
        .args(["-af", &filter, "-f", "null", "-"])
        .output()
        .expect("ffmpeg must be installed (apt-get install -y ffmpeg; .ci/run does this)");
    assert!(
        o.status.success(),
        "ffmpeg failed on {}: {}",
        p.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let txt = std::fs::read_to_string(&meta).expect("ffmpeg metadata file");
    let _ = std::fs::remove_file(&meta);
    let last = |key: &str| -> f64 {
        txt.lines()
            .rev()
            .filter_map(|l| l.strip_prefix(key))
            .find_map(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {key} in ffmpeg output for {}", p.display()))
    };
    let tp = txt
        .lines()
        .filter(|l| l.starts_with("lavfi.r128.true_peaks_ch"))
        .filter_map(|l| l.split('=').nth(1)?.trim().parse::<f64>().ok())
        .fold(0.0_f64, f64::max);
    FfR128 {
        i: last("lavfi.r128.I="),
        lra: last("lavfi.r128.LRA="),
        lra_ebu_rule: lra_ebu_rule(
            &txt.lines()
                .filter_map(|l| l.strip_prefix("lavfi.r128.S="))
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .collect::<Vec<_>>(),
        ),
        tp: 20.0 * tp.log10(),
    }
}

/// EBU Tech 3342 loudness range of short-term loudness values (LUFS): gate at
/// -70 LUFS and 20 LU below their power mean, then L(95 %) - L(10 %) with the
/// reference code's nearest rank. 0 when nothing passes the gates.
pub fn lra_ebu_rule(short_term: &[f64]) -> f64 {
    let energy = |l: f64| 10f64.powf((l + 0.691) / 10.0);
    let above: Vec<f64> = short_term.iter().copied().filter(|&l| l >= -70.0).collect();
    if above.is_empty() {
        return 0.0;
    }
    let mean = above.iter().map(|&l| energy(l)).sum::<f64>() / above.len() as f64;
    let gate = -0.691 + 10.0 * mean.log10() - 20.0;
    let mut kept: Vec<f64> = above.into_iter().filter(|&l| l >= gate).collect();
    kept.sort_by(f64::total_cmp);
    let at = |q: f64| kept[((kept.len() - 1) as f64 * q).round() as usize];
    at(0.95) - at(0.10)
}
