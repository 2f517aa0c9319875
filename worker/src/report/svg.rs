//! The QC plot of one output: loudness (short-term, and the loudest
//! momentary reading of each second) above true peak (the highest of each
//! second), on one time axis, with the target band, the limits, the ceiling
//! and every over marked. Every output of a title is drawn on the same
//! [`Scale`], so plots compare by eye. One inline `<svg class="qc-plot">`,
//! styled by the report's CSS (classes, no ids, no links, no scripts).

use std::fmt::Write as _;

use deliverables_spec::compliance::Measurement;

use super::html::escape;

/// The axes every plot of a title shares.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Scale {
    /// Seconds the time axis covers.
    pub duration_s: f64,
    /// Loudness axis, LUFS: bottom, top, grid step.
    pub lufs: (f64, f64, f64),
    /// True-peak axis, dBTP: bottom, top, grid step.
    pub dbtp: (f64, f64, f64),
}

/// What one output contributes to its title's scale.
pub(super) struct Extent<'a> {
    pub measurement: &'a Measurement,
    pub duration_s: Option<f64>,
    /// Target and tolerance when the output is judged on them.
    pub target: Option<(f64, f64)>,
}

/// Lowest loudness an axis reaches; quieter readings are off the plot and
/// drawn as gaps.
const FLOOR_LUFS: f64 = -60.0;
/// Span of the true-peak axis below its top, dB.
const TP_SPAN_DB: f64 = 30.0;

impl Scale {
    /// One scale for all of a title's outputs: every value any of them
    /// draws, the targets, the limits and the ceiling.
    pub(super) fn of_title(outputs: &[Extent<'_>], ceiling: f64, limits: &[f64]) -> Scale {
        let mut duration = 1.0_f64;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut tp_lo, mut tp_hi) = (f64::INFINITY, ceiling + 1.0);
        let mut include = |v: f64, below: f64, above: f64| {
            if v.is_finite() {
                lo = lo.min(v - below);
                hi = hi.max(v + above);
            }
        };
        for e in outputs {
            let m = e.measurement;
            duration = duration
                .max(m.short_term_lufs.len() as f64)
                .max(m.momentary_lufs.len() as f64)
                .max(e.duration_s.filter(|d| d.is_finite()).unwrap_or(0.0));
            for v in m.short_term_lufs.iter().chain(&m.momentary_lufs).flatten() {
                include(*v, 3.0, 2.0);
            }
            if let Some((t, tol)) = e.target {
                include(t - tol, 2.0, 0.0);
                include(t + tol, 0.0, 4.0);
            }
            for v in m
                .true_peak_dbtp_per_s
                .iter()
                .flatten()
                .chain(&m.true_peak_dbtp)
            {
                tp_lo = tp_lo.min(v - 2.0);
                tp_hi = tp_hi.max(v + 0.5);
            }
        }
        for &l in limits {
            include(l, 2.0, 2.0);
        }
        if !lo.is_finite() || !hi.is_finite() {
            (lo, hi) = (-40.0, -10.0);
        }
        lo = lo.max(FLOOR_LUFS);
        if hi - lo < 12.0 {
            lo = hi - 12.0;
        }
        let step = nice_step(hi - lo, &[1.0, 2.0, 5.0, 10.0, 20.0], 7.0);
        let lufs = ((lo / step).floor() * step, (hi / step).ceil() * step, step);
        let tp_lo = tp_lo.max(tp_hi - TP_SPAN_DB).min(ceiling - 6.0);
        let tstep = nice_step(tp_hi - tp_lo, &[1.0, 2.0, 5.0, 10.0], 4.0);
        let dbtp = (
            (tp_lo / tstep).floor() * tstep,
            (tp_hi / tstep).ceil() * tstep,
            tstep,
        );
        Scale {
            duration_s: duration,
            lufs,
            dbtp,
        }
    }
}

/// What one plot shows. Values in LUFS / dBTP / seconds.
pub(super) struct QcPlot<'a> {
    pub measurement: &'a Measurement,
    /// Target and tolerance, drawn as a line and a band (normalized outputs).
    pub target: Option<(f64, f64)>,
    /// The delivery's max short-term / momentary limits and whether each is
    /// judged here.
    pub max_short_term: Option<(f64, bool)>,
    pub max_momentary: Option<(f64, bool)>,
    /// The true-peak ceiling and whether this output is held to it.
    pub ceiling: Option<(f64, bool)>,
    /// Plain text for the accessible name (escaped here).
    pub label: &'a str,
}

const W: f64 = 900.0;
const H: f64 = 356.0;
/// Plot area left and right edges, in viewBox units.
const X0: f64 = 56.0;
const X1: f64 = 874.0;
/// Loudness panel top and bottom, true-peak panel top and bottom.
const L0: f64 = 12.0;
const L1: f64 = 178.0;
const T0: f64 = 196.0;
const T1: f64 = 276.0;
/// Over labels drawn on the plot at most (the list under it has them all).
const OVER_LABELS: usize = 6;

/// Shortest decimal form with one decimal at most: `12`, `12.5`, `-0` → `0`.
fn n(v: f64) -> String {
    let s = format!("{v:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s).to_string();
    if s == "-0" { "0".to_string() } else { s }
}

/// Time label: plain seconds for short programmes, `m:ss` / `h:mm:ss` beyond.
fn time_label(t: f64, long: bool) -> String {
    let t = t.round() as u64;
    if !long {
        t.to_string()
    } else if t >= 3600 {
        format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
    } else {
        format!("{}:{:02}", t / 60, t % 60)
    }
}

/// Smallest "nice" interval giving at most `max_ticks` intervals over `span`.
fn nice_step(span: f64, candidates: &[f64], max_ticks: f64) -> f64 {
    candidates
        .iter()
        .copied()
        .find(|s| span / s <= max_ticks)
        .unwrap_or_else(|| candidates.last().copied().unwrap_or(1.0))
}

struct Axes<'a> {
    s: &'a Scale,
}

impl Axes<'_> {
    fn x(&self, t: f64) -> f64 {
        X0 + (X1 - X0) * (t / self.s.duration_s).clamp(0.0, 1.0)
    }
    /// Loudness to y; `None` off the bottom of the axis (drawn as a gap).
    fn yl(&self, v: f64) -> Option<f64> {
        let (lo, hi, _) = self.s.lufs;
        (v >= lo).then(|| L1 - (L1 - L0) * (v.min(hi) - lo) / (hi - lo))
    }
    fn yt(&self, v: f64) -> f64 {
        let (lo, hi, _) = self.s.dbtp;
        T1 - (T1 - T0) * (v.clamp(lo, hi) - lo) / (hi - lo)
    }
}

/// A line through `values` (entry `i` drawn at `x(i + offset)`), broken
/// wherever a value is missing or below the axis: drop-outs are gaps, never
/// a line to the floor. A lone value is a dot.
fn curve(s: &mut String, class: &str, a: &Axes<'_>, values: &[Option<f64>], offset: f64) {
    let mut run: Vec<(f64, f64)> = Vec::new();
    let flush = |run: &mut Vec<(f64, f64)>, s: &mut String| {
        match run.len() {
            0 => {}
            1 => {
                let _ = write!(
                    s,
                    "<circle class=\"{class} dot\" cx=\"{}\" cy=\"{}\" r=\"1.5\"/>",
                    n(run[0].0),
                    n(run[0].1)
                );
            }
            _ => {
                let _ = write!(s, "<polyline class=\"{class}\" points=\"");
                for (k, (x, y)) in run.iter().enumerate() {
                    if k > 0 {
                        s.push(' ');
                    }
                    let _ = write!(s, "{},{}", n(*x), n(*y));
                }
                s.push_str("\"/>");
            }
        }
        run.clear();
    };
    for (i, v) in values.iter().enumerate() {
        match v.filter(|v| v.is_finite()).and_then(|v| a.yl(v)) {
            Some(y) => run.push((a.x(i as f64 + offset), y)),
            None => flush(&mut run, s),
        }
    }
    flush(&mut run, s);
}

fn hline(s: &mut String, class: &str, y: f64) {
    let _ = write!(
        s,
        "<line class=\"{class}\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>",
        n(X0),
        n(X1),
        y = n(y)
    );
}

/// Horizontal grid lines and their labels over `(bottom, top, step)`;
/// `y` places a value (`None`: off the axis).
fn y_grid(s: &mut String, (lo, hi, step): (f64, f64, f64), y: impl Fn(f64) -> Option<f64>) {
    let mut v = lo;
    while v <= hi + 1e-9 {
        if let Some(y) = y(v) {
            hline(s, "grid", y);
            let _ = write!(
                s,
                "<text class=\"yl\" x=\"{}\" y=\"{}\">{}</text>",
                n(X0 - 6.0),
                n(y + 4.0),
                n(v)
            );
        }
        v += step;
    }
}

pub(super) fn qc_plot(p: &QcPlot<'_>, scale: &Scale) -> String {
    let m = p.measurement;
    let a = Axes { s: scale };
    let mut s = String::with_capacity(
        2048 + (m.short_term_lufs.len() + m.momentary_lufs.len() + m.true_peak_dbtp_per_s.len())
            * 14,
    );
    let _ = write!(
        s,
        "<svg class=\"qc-plot\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        n(W),
        n(H),
        escape(p.label),
        escape(p.label)
    );
    for (top, bottom, class) in [(L0, L1, "area loudness"), (T0, T1, "area peaks")] {
        let _ = write!(
            s,
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            n(X0),
            n(top),
            n(X1 - X0),
            n(bottom - top)
        );
    }

    // Overs first, so the curves stay on top: a red column over both panels.
    for o in &m.overs {
        let (x0, x1) = (a.x(o.start_s), a.x(o.end_s));
        let _ = write!(
            s,
            "<rect class=\"over\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>over at {}: {} dBTP</title></rect>",
            n(x0),
            n(L0),
            n((x1 - x0).max(1.5)),
            n(T1 - L0),
            escape(&o.timecode),
            n(o.peak_dbtp)
        );
    }

    // Tolerance band under the grid lines, so they stay readable.
    if let Some((t, tol)) = p.target
        && let (Some(top), Some(bottom)) = (a.yl(t + tol), a.yl(t - tol).or(Some(L1)))
    {
        let _ = write!(
            s,
            "<rect class=\"band\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            n(X0),
            n(top),
            n(X1 - X0),
            n((bottom - top).max(0.5))
        );
    }

    // Grids and labels.
    y_grid(&mut s, scale.lufs, |v| a.yl(v));
    y_grid(&mut s, scale.dbtp, |v| Some(a.yt(v)));
    for (label, mid) in [("LUFS", (L0 + L1) / 2.0), ("dBTP", (T0 + T1) / 2.0)] {
        let _ = write!(
            s,
            "<text class=\"axis\" transform=\"translate(14 {}) rotate(-90)\">{label}</text>",
            n(mid)
        );
    }
    let total = scale.duration_s;
    let long = total >= 600.0;
    let xstep = nice_step(
        total,
        &[
            1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0,
            7200.0, 14400.0,
        ],
        12.0,
    );
    let mut t = 0.0;
    while t <= total + 1e-9 {
        let x = n(a.x(t));
        for (top, bottom) in [(L0, L1), (T0, T1)] {
            let _ = write!(
                s,
                "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>",
                n(top),
                n(bottom)
            );
        }
        let _ = write!(
            s,
            "<text class=\"xl\" x=\"{x}\" y=\"{}\">{}</text>",
            n(T1 + 15.0),
            time_label(t, long)
        );
        t += xstep;
    }
    let _ = write!(
        s,
        "<text class=\"axis\" x=\"{}\" y=\"{}\">time ({})</text>",
        n((X0 + X1) / 2.0),
        n(T1 + 31.0),
        if long {
            if total >= 3600.0 { "h:mm:ss" } else { "m:ss" }
        } else {
            "s"
        }
    );

    // Reference lines.
    if let Some((t, _)) = p.target
        && let Some(y) = a.yl(t)
    {
        hline(&mut s, "target", y);
    }
    for (limit, class) in [(p.max_short_term, "limit"), (p.max_momentary, "limit m")] {
        if let Some((v, _)) = limit
            && let Some(y) = a.yl(v)
        {
            hline(&mut s, class, y);
        }
    }
    if let Some(i) = m.integrated_lufs.filter(|v| v.is_finite())
        && let Some(y) = a.yl(i)
    {
        hline(&mut s, "integrated", y);
    }
    if let Some((c, _)) = p.ceiling {
        hline(&mut s, "ceiling", a.yt(c));
    }

    // Loudness: the momentary maxima under the short-term line.
    curve(&mut s, "momentary", &a, &m.momentary_lufs, 0.5);
    curve(&mut s, "curve", &a, &m.short_term_lufs, 1.0);

    // True peak: the highest of each second as a stepped area, broken at
    // digital silence.
    let mut open = false;
    for (i, v) in m.true_peak_dbtp_per_s.iter().enumerate() {
        let x0 = a.x(i as f64);
        let x1 = a.x(i as f64 + 1.0);
        match v.filter(|v| v.is_finite() && *v >= scale.dbtp.0) {
            Some(v) => {
                let y = n(a.yt(v));
                if open {
                    let _ = write!(s, " V{y} H{}", n(x1));
                } else {
                    let _ = write!(
                        s,
                        "<path class=\"tp\" d=\"M{} {} V{y} H{}",
                        n(x0),
                        n(T1),
                        n(x1)
                    );
                    open = true;
                }
            }
            None if open => {
                let _ = write!(s, " V{} Z\"/>", n(T1));
                open = false;
            }
            None => {}
        }
    }
    if open {
        let _ = write!(s, " V{} Z\"/>", n(T1));
    }

    // Overs: a marker on the peaks panel and the first few timecodes.
    for (k, o) in m.overs.iter().enumerate() {
        let x = a.x(o.start_s);
        let _ = write!(
            s,
            "<path class=\"over-mark\" d=\"M{} {} l-5 -8 h10 Z\"/>",
            n(x),
            n(T0 - 1.0)
        );
        if k < OVER_LABELS {
            let _ = write!(
                s,
                "<text class=\"over-tc\" x=\"{}\" y=\"{}\">{}</text>",
                n(x + 6.0),
                n(T0 - 10.0 - 11.0 * (k % 2) as f64),
                escape(&o.timecode)
            );
        }
    }

    let empty = m
        .short_term_lufs
        .iter()
        .chain(&m.momentary_lufs)
        .all(Option::is_none);
    if empty {
        let _ = write!(
            s,
            "<text class=\"empty\" x=\"{}\" y=\"{}\">no loudness readings: silent throughout or shorter than 0.4 s</text>",
            n((X0 + X1) / 2.0),
            n((L0 + L1) / 2.0)
        );
    }

    // Legend, left to right under the axis title.
    let mut ly = T1 + 50.0;
    let mut lx = X0;
    let mut item = |s: &mut String, class: &str, text: String| {
        // Roughly 6.1 units per character at the legend's font size; a
        // second row when the first is full.
        let width = 28.0 + text.chars().count() as f64 * 6.1;
        if lx + width > X1 + 20.0 {
            lx = X0;
            ly += 16.0;
        }
        match class {
            "band" | "tp" | "over" => {
                let _ = write!(
                    s,
                    "<rect class=\"{class} key\" x=\"{}\" y=\"{}\" width=\"22\" height=\"10\"/>",
                    n(lx),
                    n(ly - 9.0)
                );
            }
            _ => {
                let _ = write!(
                    s,
                    "<line class=\"{class}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
                    n(lx),
                    n(ly - 4.0),
                    n(lx + 22.0),
                    n(ly - 4.0)
                );
            }
        }
        let _ = write!(
            s,
            "<text class=\"lg\" x=\"{}\" y=\"{}\">{}</text>",
            n(lx + 28.0),
            n(ly),
            escape(&text)
        );
        lx += width + 14.0;
    };
    item(&mut s, "curve", "short-term".into());
    item(&mut s, "momentary", "momentary (max/s)".into());
    if let Some((t, tol)) = p.target {
        item(&mut s, "target", format!("target {t:.1}"));
        item(&mut s, "band", format!("±{tol:.1} LU"));
    }
    if let Some((v, judged)) = p.max_short_term {
        item(
            &mut s,
            "limit",
            format!("max S {v:.1}{}", if judged { "" } else { " (not judged)" }),
        );
    }
    if let Some((v, judged)) = p.max_momentary {
        item(
            &mut s,
            "limit m",
            format!("max M {v:.1}{}", if judged { "" } else { " (not judged)" }),
        );
    }
    if let Some(i) = m.integrated_lufs.filter(|v| v.is_finite()) {
        item(&mut s, "integrated", format!("I {i:.1}"));
    }
    item(&mut s, "tp", "true peak (max/s)".into());
    if let Some((c, judged)) = p.ceiling {
        item(
            &mut s,
            "ceiling",
            format!(
                "ceiling {c:.1} dBTP{}",
                if judged { "" } else { " (not judged)" }
            ),
        );
    }
    if !m.overs.is_empty() {
        item(&mut s, "over", format!("over ({})", m.overs_total));
    }
    s.push_str("</svg>");
    s
}

/// The overs of one output as an HTML list, with their timecodes.
/// `judged`: whether the output is held to the ceiling (re-mix stems are not).
pub(super) fn overs_list(m: &Measurement, judged: bool) -> String {
    let mut s = String::new();
    if m.overs.is_empty() {
        return s;
    }
    let _ = write!(
        s,
        "<p class=\"overs-h\">{} over{} the {} dBTP ceiling{} (timecode at {} fps, from the file's timeline position):</p><ol class=\"overs\">",
        m.overs_total,
        if m.overs_total == 1 { "" } else { "s" },
        m.overs_ceiling_dbtp.map_or("?".into(), n),
        if judged {
            ""
        } else {
            ", reported for a re-mix stem, not judged"
        },
        m.frame_rate.map_or("?".into(), |f| {
            let t = format!("{f:.3}");
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        })
    );
    for o in &m.overs {
        let _ = write!(
            s,
            "<li><span class=\"mono tc\">{}</span> · {:.3}–{:.3} s · peak {} dBTP</li>",
            escape(&o.timecode),
            o.start_s,
            o.end_s,
            escape(&format!("{:+.2}", o.peak_dbtp))
        );
    }
    s.push_str("</ol>");
    if m.overs_total as usize > m.overs.len() {
        let _ = write!(
            s,
            "<p class=\"muted\">… and {} more (the manifest lists the first {}).</p>",
            m.overs_total as usize - m.overs.len(),
            m.overs.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use deliverables_spec::compliance::Over;

    fn meas(st: &[Option<f64>], tp: &[Option<f64>], overs: Vec<Over>) -> Measurement {
        Measurement {
            integrated_lufs: Some(-23.0),
            short_term_lufs: st.to_vec(),
            momentary_lufs: st.iter().map(|v| v.map(|v| v + 2.0)).collect(),
            true_peak_dbtp_per_s: tp.to_vec(),
            overs_total: overs.len() as u64,
            overs,
            overs_ceiling_dbtp: Some(-1.0),
            frame_rate: Some(24.0),
            ..Default::default()
        }
    }

    fn plot(m: &Measurement) -> String {
        let scale = Scale::of_title(
            &[Extent {
                measurement: m,
                duration_s: Some(m.short_term_lufs.len() as f64),
                target: Some((-23.0, 0.5)),
            }],
            -1.0,
            &[-18.0],
        );
        qc_plot(
            &QcPlot {
                measurement: m,
                target: Some((-23.0, 0.5)),
                max_short_term: Some((-18.0, true)),
                max_momentary: None,
                ceiling: Some((-1.0, true)),
                label: "a <b>",
            },
            &scale,
        )
    }

    #[test]
    fn gaps_split_the_curves() {
        let st = [
            None,
            None,
            Some(-24.0),
            Some(-23.0),
            None,
            Some(-22.0),
            Some(-21.0),
            Some(-20.0),
            None,
            Some(-30.0),
        ];
        let tp = [
            None,
            Some(-3.0),
            Some(-2.0),
            None,
            Some(-4.0),
            None,
            None,
            None,
            None,
            None,
        ];
        let s = plot(&meas(&st, &tp, vec![]));
        assert_eq!(s.matches("<polyline class=\"curve\"").count(), 2, "{s}");
        assert_eq!(s.matches("<circle class=\"curve dot\"").count(), 1, "{s}");
        assert_eq!(s.matches("<path class=\"tp\"").count(), 2, "{s}");
        assert!(s.starts_with("<svg class=\"qc-plot\" viewBox=\"0 0 900 356\""));
        assert!(s.contains("a &lt;b&gt;") && !s.contains("a <b>"));
        assert!(s.contains("class=\"band\"") && s.contains("class=\"limit\""));
        assert!(s.contains("class=\"ceiling\""));
    }

    #[test]
    fn a_drop_below_the_axis_is_a_gap_not_a_line_to_the_floor() {
        let mut st = vec![Some(-20.0); 10];
        st[5] = Some(-95.0);
        let s = plot(&meas(&st, &[Some(-3.0); 10], vec![]));
        assert_eq!(s.matches("<polyline class=\"curve\"").count(), 2, "{s}");
    }

    #[test]
    fn overs_are_marked_with_their_timecode() {
        let over = Over {
            start_s: 4.0,
            end_s: 4.125,
            timecode: "01:00:04:00".into(),
            peak_dbtp: -0.4,
        };
        let m = meas(&[Some(-20.0); 10], &[Some(-3.0); 10], vec![over]);
        let s = plot(&m);
        assert!(
            s.contains("class=\"over\"") && s.contains(">01:00:04:00<"),
            "{s}"
        );
        let l = overs_list(&m, true);
        assert!(
            l.contains("01:00:04:00") && l.contains("-0.40 dBTP") && l.contains("24 fps"),
            "{l}"
        );
    }

    #[test]
    fn one_scale_for_the_title() {
        let loud = meas(&[Some(-8.0); 10], &[Some(-0.5); 10], vec![]);
        let quiet = meas(&[Some(-40.0); 20], &[Some(-20.0); 20], vec![]);
        let s = Scale::of_title(
            &[
                Extent {
                    measurement: &loud,
                    duration_s: Some(10.0),
                    target: None,
                },
                Extent {
                    measurement: &quiet,
                    duration_s: Some(20.0),
                    target: None,
                },
            ],
            -1.0,
            &[],
        );
        assert_eq!(s.duration_s, 20.0);
        assert!(s.lufs.0 <= -43.0 && s.lufs.1 >= -6.0, "{s:?}");
        assert!(s.dbtp.1 >= 0.0 && s.dbtp.0 <= -20.0, "{s:?}");
    }

    #[test]
    fn long_programmes_label_hours() {
        assert_eq!(time_label(75.0, true), "1:15");
        assert_eq!(time_label(3600.0, true), "1:00:00");
        assert_eq!(n(-0.04), "0");
        assert_eq!(n(12.0), "12");
        assert_eq!(n(-12.26), "-12.3");
    }
}
