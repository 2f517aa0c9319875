//! SMPTE-style timecode for positions in a programme: `HH:MM:SS:FF`,
//! non-drop-frame, counted at a frame rate that may be fractional (23.976,
//! 29.97): the frame index is the position times the rate, its digits are
//! counted in whole frames per timecode second (the rate rounded).

/// Timecode of sample `position` at `sample_rate`, at `fps` frames per
/// second. Hours wrap at 24, as on a session timeline that counts from
/// midnight.
pub fn timecode(position: u64, sample_rate: u32, fps: f64) -> String {
    let rate = f64::from(sample_rate.max(1));
    let fps = if fps.is_finite() && fps > 0.0 {
        fps
    } else {
        24.0
    };
    let nominal = (fps.round() as u64).max(1);
    let frame = (position as f64 * fps / rate).floor() as u64;
    let ff = frame % nominal;
    let secs = frame / nominal;
    format!(
        "{:02}:{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ff
    )
}

/// First sample of video frame `frame` at `fps` (the frame grid the report
/// finds overs on).
pub fn frame_start(frame: u64, sample_rate: u32, fps: f64) -> u64 {
    (frame as f64 * f64::from(sample_rate) / fps).floor() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_frames_at_the_rate() {
        assert_eq!(timecode(0, 48_000, 24.0), "00:00:00:00");
        assert_eq!(timecode(48_000 + 2_000, 48_000, 24.0), "00:00:01:01");
        assert_eq!(
            timecode(48_000 * 3661 + 47_999, 48_000, 25.0),
            "01:01:01:24"
        );
        // One hour of samples from a BWF TimeReference of 01:00:00:00.
        assert_eq!(timecode(3600 * 48_000, 48_000, 24.0), "01:00:00:00");
        // 23.976: 24 frames a timecode second, so an hour of real time reads
        // 3.6 s short of an hour of timecode.
        assert_eq!(
            timecode(3600 * 48_000, 48_000, 24_000.0 / 1001.0),
            "00:59:56:09"
        );
        assert_eq!(frame_start(24, 48_000, 24.0), 48_000);
        // Midnight wraps.
        assert_eq!(timecode(25 * 3600 * 48_000, 48_000, 24.0), "01:00:00:00");
    }
}
