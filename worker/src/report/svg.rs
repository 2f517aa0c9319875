//! The short-term loudness plot: one inline `<svg class="st-plot">` per
//! measured output, styled by the report's CSS (classes, no ids, no links).

use std::fmt::Write as _;

use super::html::escape;

/// What one plot shows. Values in LUFS / LU / seconds.
pub(super) struct Plot<'a> {
    /// Entry `i` is the 3 s window ending at `i + 1` s; `None` is a gap.
    pub short_term: &'a [Option<f64>],
    /// The file's duration, so the time axis covers the whole programme.
    pub duration_s: Option<f64>,
    /// Target and tolerance, drawn as a line and a band (normalized outputs).
    pub target: Option<(f64, f64)>,
    /// The delivery's max short-term limit and whether it is judged here.
    pub max_short_term: Option<(f64, bool)>,
    pub integrated: Option<f64>,
    /// Plain text for the accessible name (escaped here).
    pub label: &'a str,
}

const W: f64 = 900.0;
const H: f64 = 250.0;
/// Plot area: left, right, top, bottom edges in viewBox units.
const X0: f64 = 52.0;
const X1: f64 = 874.0;
const Y0: f64 = 12.0;
const Y1: f64 = 196.0;
/// Floor of the loudness axis unless the curve's maximum needs more room.
const FLOOR_LUFS: f64 = -50.0;

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

pub(super) fn short_term_plot(p: &Plot<'_>) -> String {
    let values: Vec<f64> = p
        .short_term
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let total = (p.short_term.len() as f64)
        .max(p.duration_s.filter(|d| d.is_finite()).unwrap_or(0.0))
        .max(1.0);

    // Loudness axis: from the quietest thing drawn (3 dB below, not under
    // the floor) to the loudest (2 dB above) and at least 6 LU over target.
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut include = |v: f64, below: f64, above: f64| {
        if v.is_finite() {
            lo = lo.min(v - below);
            hi = hi.max(v + above);
        }
    };
    for &v in &values {
        include(v, 3.0, 2.0);
    }
    if let Some((t, tol)) = p.target {
        include(t - tol, 2.0, 0.0);
        include(t + tol, 0.0, 2.0);
        include(t, 0.0, 6.0);
    }
    if let Some((max, _)) = p.max_short_term {
        include(max, 2.0, 2.0);
    }
    if let Some(i) = p.integrated {
        include(i, 3.0, 2.0);
    }
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (-40.0, -10.0);
    }
    lo = lo.max(FLOOR_LUFS);
    if hi - lo < 12.0 {
        lo = hi - 12.0;
    }
    let ystep = nice_step(hi - lo, &[1.0, 2.0, 5.0, 10.0, 20.0], 8.0);
    let lo = (lo / ystep).floor() * ystep;
    let hi = (hi / ystep).ceil() * ystep;

    let xs = |t: f64| X0 + (X1 - X0) * t / total;
    let ys = |v: f64| Y1 - (Y1 - Y0) * (v.clamp(lo, hi) - lo) / (hi - lo);

    let mut s = String::with_capacity(1024 + values.len() * 12);
    let _ = write!(
        s,
        "<svg class=\"st-plot\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">",
        n(W),
        n(H),
        escape(p.label)
    );
    let _ = write!(s, "<title>{}</title>", escape(p.label));
    let _ = write!(
        s,
        "<rect class=\"area\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
        n(X0),
        n(Y0),
        n(X1 - X0),
        n(Y1 - Y0)
    );

    // Tolerance band under the grid lines, so they stay readable.
    if let Some((t, tol)) = p.target {
        let (top, bottom) = (ys(t + tol), ys(t - tol));
        let _ = write!(
            s,
            "<rect class=\"band\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
            n(X0),
            n(top),
            n(X1 - X0),
            n((bottom - top).max(0.5))
        );
    }

    // Loudness grid and labels.
    let mut v = lo;
    while v <= hi + 1e-9 {
        let y = ys(v);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>\
             <text class=\"yl\" x=\"{}\" y=\"{}\">{}</text>",
            n(X0),
            n(X1),
            n(X0 - 6.0),
            n(y + 4.0),
            n(v),
            y = n(y)
        );
        v += ystep;
    }
    let _ = write!(
        s,
        "<text class=\"axis\" transform=\"translate(14 {}) rotate(-90)\">LUFS</text>",
        n((Y0 + Y1) / 2.0)
    );

    // Time grid and labels.
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
        let x = xs(t);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\"/>\
             <text class=\"xl\" x=\"{x}\" y=\"{}\">{}</text>",
            n(Y0),
            n(Y1),
            n(Y1 + 15.0),
            time_label(t, long),
            x = n(x)
        );
        t += xstep;
    }
    let _ = write!(
        s,
        "<text class=\"axis\" x=\"{}\" y=\"{}\">time ({})</text>",
        n((X0 + X1) / 2.0),
        n(Y1 + 32.0),
        if long {
            if total >= 3600.0 { "h:mm:ss" } else { "m:ss" }
        } else {
            "s"
        }
    );

    // Reference lines.
    if let Some((t, _)) = p.target {
        let y = n(ys(t));
        let _ = write!(
            s,
            "<line class=\"target\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>",
            n(X0),
            n(X1)
        );
    }
    if let Some((max, _)) = p.max_short_term {
        let y = n(ys(max));
        let _ = write!(
            s,
            "<line class=\"limit\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>",
            n(X0),
            n(X1)
        );
    }
    if let Some(i) = p.integrated.filter(|v| v.is_finite()) {
        let y = n(ys(i));
        let _ = write!(
            s,
            "<line class=\"integrated\" x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\"/>",
            n(X0),
            n(X1)
        );
    }

    // The curve: one polyline per run of values; a lone value is a dot.
    let mut run: Vec<(f64, f64)> = Vec::new();
    let flush = |run: &mut Vec<(f64, f64)>, s: &mut String| {
        match run.len() {
            0 => {}
            1 => {
                let _ = write!(
                    s,
                    "<circle class=\"dot\" cx=\"{}\" cy=\"{}\" r=\"1.5\"/>",
                    n(run[0].0),
                    n(run[0].1)
                );
            }
            _ => {
                s.push_str("<polyline class=\"curve\" points=\"");
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
    for (i, v) in p.short_term.iter().enumerate() {
        match v.filter(|v| v.is_finite()) {
            Some(v) => run.push((xs(i as f64 + 1.0), ys(v))),
            None => flush(&mut run, &mut s),
        }
    }
    flush(&mut run, &mut s);

    if values.is_empty() {
        let _ = write!(
            s,
            "<text class=\"empty\" x=\"{}\" y=\"{}\">no short-term values: shorter than 3 s or silent throughout</text>",
            n((X0 + X1) / 2.0),
            n((Y0 + Y1) / 2.0)
        );
    }

    // Legend, left to right under the axis title.
    let ly = Y1 + 48.0;
    let mut lx = X0;
    let mut item = |s: &mut String, class: &str, text: String| {
        if class == "band" {
            let _ = write!(
                s,
                "<rect class=\"band\" x=\"{}\" y=\"{}\" width=\"22\" height=\"10\"/>",
                n(lx),
                n(ly - 9.0)
            );
        } else {
            let _ = write!(
                s,
                "<line class=\"{class}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
                n(lx),
                n(ly - 4.0),
                n(lx + 22.0),
                n(ly - 4.0)
            );
        }
        let _ = write!(
            s,
            "<text class=\"lg\" x=\"{}\" y=\"{}\">{}</text>",
            n(lx + 28.0),
            n(ly),
            escape(&text)
        );
        // Roughly 6.3 units per character at the legend's font size.
        lx += 28.0 + text.chars().count() as f64 * 6.3 + 18.0;
    };
    if !values.is_empty() {
        item(&mut s, "curve", "short-term (3 s)".into());
    }
    if let Some((t, tol)) = p.target {
        item(&mut s, "target", format!("target {t:.1} LUFS"));
        item(&mut s, "band", format!("tolerance ±{tol:.1} LU"));
    }
    if let Some((max, judged)) = p.max_short_term {
        item(
            &mut s,
            "limit",
            format!(
                "max short-term {max:.1} LUFS{}",
                if judged { "" } else { " (not judged here)" }
            ),
        );
    }
    if let Some(i) = p.integrated.filter(|v| v.is_finite()) {
        item(&mut s, "integrated", format!("integrated {i:.1} LUFS"));
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(st: &[Option<f64>]) -> String {
        short_term_plot(&Plot {
            short_term: st,
            duration_s: Some(st.len() as f64),
            target: Some((-23.0, 0.5)),
            max_short_term: Some((-18.0, true)),
            integrated: Some(-23.0),
            label: "a <b>",
        })
    }

    #[test]
    fn gaps_split_the_curve() {
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
        let s = plot(&st);
        assert_eq!(s.matches("<polyline").count(), 2, "{s}");
        assert_eq!(s.matches("<circle").count(), 1, "{s}");
        assert!(s.starts_with("<svg class=\"st-plot\" viewBox=\"0 0 900 250\""));
        assert!(s.contains("a &lt;b&gt;") && !s.contains("a <b>"));
        assert!(s.contains("class=\"band\"") && s.contains("class=\"limit\""));
    }

    #[test]
    fn empty_curve_says_why() {
        let s = plot(&[None, None]);
        assert!(s.contains("no short-term values"));
        assert!(!s.contains("<polyline"));
    }

    #[test]
    fn long_programmes_label_minutes() {
        let st = vec![Some(-23.0); 3 * 3600];
        let s = plot(&st);
        assert!(s.contains(">1:00:00<"), "hour tick");
        assert!(s.contains("time (h:mm:ss)"));
        assert_eq!(time_label(75.0, true), "1:15");
        assert_eq!(n(-0.04), "0");
        assert_eq!(n(12.0), "12");
        assert_eq!(n(-12.26), "-12.3");
    }
}
