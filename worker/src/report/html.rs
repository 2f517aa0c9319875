//! `report.html`: the manifest for people. One self-contained page (inline
//! CSS, inline SVG, no scripts, no external assets) that prints on A4.

use std::fmt::Write as _;

use deliverables_spec::compliance::{Check, CheckOutcome, Measurement, Outcome, Verdict};
use deliverables_spec::manifest::{LevelRecord, Manifest, OutputEntry, TitleEntry};
use deliverables_spec::model::{LevelPolicy, LoudnessBasis};

use super::svg::{Extent, QcPlot, Scale, overs_list, qc_plot};

const DASH: &str = "—";

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number with `dec` decimals; never `-0.00`, `—` when not finite.
fn num(v: f64, dec: usize) -> String {
    if !v.is_finite() {
        return DASH.into();
    }
    let s = format!("{v:.dec$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        _ => s,
    }
}

/// As [`num`], with an explicit sign (`+0.50`, `-1.04`, `0.00`).
fn signed(v: f64, dec: usize) -> String {
    let s = num(v, dec);
    if v > 0.0 && s.chars().any(|c| c.is_ascii_digit() && c != '0') {
        format!("+{s}")
    } else {
        s
    }
}

fn opt(v: Option<f64>, dec: usize, unit: &str) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{} {unit}", num(v, dec)),
        _ => DASH.into(),
    }
}

fn khz(rate: u32) -> String {
    format!("{} kHz", f64::from(rate) / 1000.0)
}

fn duration(s: f64) -> String {
    if !s.is_finite() {
        return DASH.into();
    }
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let t = s.round() as u64;
    if t >= 3600 {
        format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
    } else {
        format!("{}:{:02}", t / 60, t % 60)
    }
}

fn pct(share: f64) -> String {
    format!("{} %", num(share * 100.0, 1))
}

fn bits_label(bits: u32, sample_format: Option<&str>) -> String {
    match (bits, sample_format) {
        (32, Some("float")) | (32, None) => "32-bit float".into(),
        (b, _) => format!("{b}-bit PCM"),
    }
}

/// `variant` or `variant (role)`, plain text.
fn output_label(o: &OutputEntry) -> String {
    match o.stem_label() {
        Some(r) => format!("{} ({r})", o.variant),
        None => o.variant.clone(),
    }
}

fn is_fail(v: &Verdict) -> bool {
    v.verdict == Outcome::Fail
}

/// Distinct values in first-seen order (deterministic, no hashing).
fn distinct<T: PartialEq + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; background: #fff; color: #1b1b1b;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 22px; margin: 0; }
h2 { font-size: 19px; margin: 40px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #222; }
h3 { font-size: 15px; margin: 20px 0 6px; }
h4 { font-size: 13px; margin: 12px 0 4px; }
p { margin: 6px 0; }
ul { margin: 4px 0; padding-left: 22px; }
.mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; overflow-wrap: anywhere; }
.muted { color: #555; }
.top { display: flex; justify-content: space-between; align-items: flex-start; gap: 24px; }
.badge { display: inline-block; padding: 1px 9px; border: 2px solid; border-radius: 4px; font-weight: 700; font-size: 13px; vertical-align: middle; white-space: nowrap; }
.badge.big { font-size: 20px; padding: 4px 16px; }
.badge.pass { color: #0b5d1e; background: #e3f3e7; }
.badge.fail { color: #9b0d0d; background: #fbe0e0; }
.counts { margin-top: 4px; text-align: right; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 8px 32px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 3px 14px; margin: 6px 0; }
dl.kv dt { color: #555; }
dl.kv dd { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border: 1px solid #c4c4c4; padding: 4px 6px; text-align: left; vertical-align: top; }
thead th { background: #eef0f2; font-weight: 600; }
th .u { display: block; font-weight: 400; color: #555; font-size: 11px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td .lim { display: block; font-size: 11px; color: #555; font-weight: 400; }
td .why { display: block; font-size: 11px; color: #555; white-space: normal; max-width: 15em; margin-left: auto; text-align: right; }
td.out b { font-size: 14px; }
td.out .role { display: inline-block; margin-left: 4px; padding: 0 5px; border: 1px solid #888; border-radius: 3px; font-size: 11px; }
td.out .mono, td.out .pol { display: block; font-size: 11px; }
td.out .pol { color: #444; }
td.out { min-width: 13em; }
td.out .note { display: block; font-size: 11px; font-style: italic; color: #444; }
tr.fail > td { background: #fff3f3; }
tr.fail > td:first-child { box-shadow: inset 4px 0 0 #c62828; }
td.fail, tr.fail > td.fail { background: #f7cccc; color: #7f0000; font-weight: 700; }
td.fail .lim, td.fail .why { color: #7f0000; }
td.verdict { white-space: nowrap; font-weight: 700; text-align: center; }
td.verdict.pass { color: #0b5d1e; }
td.missing { color: #444; }
td.missing .why { max-width: none; text-align: left; margin: 0; }
table.idx td.n, table.idx th.n { text-align: right; width: 6em; }
table.inputs { font-size: 12px; }
.reasons li { margin: 2px 0; }
.reasons .fail-mark { color: #9b0d0d; font-weight: 700; }
.error { padding: 6px 10px; border-left: 4px solid #c62828; background: #fbe0e0; color: #6b0000; }
.plots { display: grid; grid-template-columns: 1fr; gap: 14px; }
figure.plot { margin: 0; border: 1px solid #d0d0d0; border-radius: 4px; padding: 8px 10px 4px; break-inside: avoid; }
figure.plot figcaption { font-size: 13px; margin-bottom: 2px; }
figure.plot figcaption .mono { font-size: 11px; }
p.no-plot { color: #555; font-style: italic; padding: 8px 0; }
svg.qc-plot { display: block; width: 100%; height: auto; font-family: inherit; }
.qc-plot .area { fill: #fff; stroke: #999; stroke-width: 1; }
.qc-plot .grid { stroke: #e2e2e2; stroke-width: 1; }
.qc-plot .band { fill: #2e7d32; fill-opacity: 0.16; }
.qc-plot .target { stroke: #2e7d32; stroke-width: 1.5; }
.qc-plot .limit { stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 7 4; }
.qc-plot .limit.m { stroke: #e65100; }
.qc-plot .ceiling { stroke: #c62828; stroke-width: 1.5; }
.qc-plot .integrated { stroke: #333; stroke-width: 1; stroke-dasharray: 2 2; }
.qc-plot .curve { fill: none; stroke: #1646a0; stroke-width: 1.6; stroke-linejoin: round; }
.qc-plot .momentary { fill: none; stroke: #8fb0e8; stroke-width: 1; stroke-linejoin: round; }
.qc-plot circle.curve { fill: #1646a0; }
.qc-plot circle.momentary { fill: #8fb0e8; }
.qc-plot .tp { fill: #7a5cb0; fill-opacity: 0.45; stroke: #5b3f8f; stroke-width: 0.8; }
.qc-plot rect.over { fill: #e53935; fill-opacity: 0.25; }
.qc-plot .over-mark { fill: #c62828; }
.qc-plot .over-tc { fill: #9b0d0d; font-size: 10px; font-weight: 700; }
.qc-plot text { fill: #333; font-size: 12px; }
.qc-plot .yl { text-anchor: end; }
.qc-plot .xl { text-anchor: middle; }
.qc-plot .axis { text-anchor: middle; font-size: 12px; fill: #555; }
.qc-plot .lg { font-size: 11px; }
.qc-plot .empty { text-anchor: middle; font-style: italic; fill: #777; }
figure.plot.fail { border-color: #c62828; border-width: 2px; }
table.qc { margin-top: 6px; font-size: 12px; }
table.qc td.res { white-space: nowrap; font-weight: 600; }
table.qc td.res.pass { color: #0b5d1e; }
table.qc td.res.fail { color: #7f0000; background: #f7cccc; }
table.qc td.res.reported { color: #555; font-weight: 400; }
table.qc td.res .why { display: block; white-space: normal; font-weight: 400; font-size: 11px; }
dl.sums { font-size: 11px; margin: 4px 0 2px; }
ol.overs { margin: 2px 0 6px; font-size: 12px; columns: 2; }
p.overs-h { font-size: 12px; font-weight: 600; color: #9b0d0d; margin: 4px 0 0; }
p.same-as { font-size: 12px; padding: 4px 8px; border-left: 4px solid #e65100; background: #fff3e0; }
.same { font-size: 11px; padding: 0 5px; border: 1px solid #e65100; border-radius: 3px; color: #a34400; }
footer { margin-top: 40px; padding-top: 8px; border-top: 1px solid #ccc; font-size: 12px; color: #555; }
@page { size: A4; margin: 12mm; }
@media print {
  body { font-size: 11px; }
  main { max-width: none; padding: 0; }
  h1 { font-size: 18px; }
  h2 { font-size: 15px; margin-top: 0; }
  h3 { font-size: 12px; margin-top: 12px; }
  .badge.big { font-size: 15px; }
  table { font-size: 9.5px; }
  th .u, td .lim, td .why, td.out .mono, td.out .pol, td.out .note { font-size: 8.5px; }
  td.out { min-width: 0; width: 17%; }
  td.out b { font-size: 10.5px; }
  td.num { white-space: normal; }
  th, td { padding: 2px 3px; }
  .scroll { overflow: visible; }
  h2 { break-after: avoid; }
  section.title { break-before: page; }
  tr, figure { break-inside: avoid; }
  table.qc { font-size: 9px; }
  ol.overs { font-size: 9px; }
}
"#;

/// The report for a manifest. Same manifest, same bytes.
pub fn report_html(m: &Manifest) -> String {
    let mut h = String::with_capacity(32 * 1024);
    open_page(&mut h, m);
    let dialogue_column = m.titles.iter().flat_map(|t| &t.outputs).any(|o| {
        o.measurement.as_ref().is_some_and(|x| x.dialogue.is_some())
            || o.verdict
                .checks
                .iter()
                .any(|c| c.name == "dialogue_integrated")
    });
    for (i, t) in m.titles.iter().enumerate() {
        title(&mut h, m, t, i + 1, dialogue_column);
    }
    close_page(&mut h, m);
    h
}

/// One page of a catalog report, as its index lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PageEntry {
    /// File name, relative to the index.
    pub href: String,
    pub first_title: String,
    pub last_title: String,
    pub titles: usize,
    pub titles_failed: usize,
    pub outputs: usize,
    pub passed: usize,
    pub failed: usize,
}

/// A page of a catalog report: the full report of `m` (a manifest holding
/// only this page's titles and their summary), with links to the index and
/// to the pages beside it.
pub fn report_page_html(
    m: &Manifest,
    index_href: &str,
    prev: Option<&str>,
    next: Option<&str>,
) -> String {
    let mut nav = format!(
        "<main>\n<nav class=\"muted\"><a href=\"{}\">All titles</a>",
        escape(index_href)
    );
    if let Some(p) = prev {
        let _ = write!(nav, " · <a href=\"{}\">previous page</a>", escape(p));
    }
    if let Some(n) = next {
        let _ = write!(nav, " · <a href=\"{}\">next page</a>", escape(n));
    }
    nav.push_str("</nav>");
    report_html(m).replacen("<main>", &nav, 1)
}

/// The index of a catalog report: the job's header and summary, then one
/// row per page (titles, failures), then the first `failures` failed
/// outputs. Its size grows with the number of pages, not of outputs.
pub fn report_index_html(
    m: &Manifest,
    pages: &[PageEntry],
    failures: &[(String, String)],
) -> String {
    let mut h = String::with_capacity(16 * 1024 + 200 * pages.len());
    open_page(&mut h, m);
    h.push_str(
        "<section><h2>Pages</h2><table class=\"qc\"><thead><tr><th>page</th><th>titles</th>\
         <th>count</th><th>titles failed</th><th>outputs</th><th>passed</th><th>failed</th></tr></thead><tbody>\n",
    );
    for (i, p) in pages.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr><td><a href=\"{}\">{}</a></td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.href),
            i + 1,
            escape(&p.first_title),
            escape(&p.last_title),
            p.titles,
            p.titles_failed,
            p.outputs,
            p.passed,
            p.failed
        );
    }
    h.push_str("</tbody></table></section>\n");
    if !failures.is_empty() {
        h.push_str("<section><h2>Failures</h2><ul>\n");
        for (href, what) in failures {
            let _ = writeln!(
                h,
                "<li><a href=\"{}\">{}</a></li>",
                escape(href),
                escape(what)
            );
        }
        h.push_str("</ul></section>\n");
    }
    close_page(&mut h, m);
    h
}

/// The document's head, the opening of its body and the job's header.
fn open_page(h: &mut String, m: &Manifest) {
    let _ = writeln!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Loudness compliance report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>",
        escape(&m.job_id)
    );
    header(h, m);
}

/// The footer and the document's end.
fn close_page(h: &mut String, m: &Manifest) {
    let _ = writeln!(
        h,
        "<footer>Generated from the compliance manifest (version {}) of job <span class=\"mono\">{}</span> by {} {}. \
         Values are as measured on the written files; the manifest is the authoritative record.</footer>\n\
         </main>\n</body>\n</html>",
        m.manifest_version,
        escape(&m.job_id),
        escape(&m.tool.name),
        escape(&m.tool.version)
    );
}

fn header(h: &mut String, m: &Manifest) {
    let s = &m.summary;
    let badge = if s.all_pass {
        "<span class=\"badge big pass\">✓ ALL PASS</span>".to_string()
    } else if s.failed > 0 {
        format!(
            "<span class=\"badge big fail\">✗ {} FAILED</span>",
            s.failed
        )
    } else if s.titles_failed > 0 {
        format!(
            "<span class=\"badge big fail\">✗ {} TITLE{} FAILED</span>",
            s.titles_failed,
            if s.titles_failed == 1 { "" } else { "S" }
        )
    } else {
        "<span class=\"badge big fail\">✗ NOT PASSED</span>".to_string()
    };
    let _ = writeln!(
        h,
        "<header>\n<div class=\"top\"><div><h1>Loudness compliance report</h1>\
         <p class=\"muted\">job <span class=\"mono\">{}</span> · submitted {}</p></div>\
         <div><div style=\"text-align:right\">{badge}</div>\
         <p class=\"counts\">titles {} ({} failed) · outputs {}: {} passed, {} failed</p></div></div>",
        escape(&m.job_id),
        escape(&m.submitted),
        s.titles,
        s.titles_failed,
        s.outputs,
        s.passed,
        s.failed
    );

    let d = &m.delivery;
    h.push_str("<div class=\"cols\">\n<section><h3>Job</h3><dl class=\"kv\">");
    kv(
        h,
        "Job id",
        &format!("<span class=\"mono\">{}</span>", escape(&m.job_id)),
    );
    kv(h, "Submitted", &escape(&m.submitted));
    kv(
        h,
        "Tool",
        &format!("{} {}", escape(&m.tool.name), escape(&m.tool.version)),
    );
    kv(
        h,
        "Spec SHA-256",
        &format!("<span class=\"mono\">{}</span>", escape(&m.spec_sha256)),
    );
    kv(h, "Manifest version", &m.manifest_version.to_string());
    let files: Vec<_> = m
        .titles
        .iter()
        .flat_map(|t| &t.outputs)
        .filter_map(|o| o.file.as_ref())
        .collect();
    let rates = distinct(files.iter().map(|f| f.sample_rate));
    let depths = distinct(
        files
            .iter()
            .map(|f| bits_label(f.bit_depth, Some(f.sample_format.as_str()))),
    );
    let channels = distinct(files.iter().map(|f| f.channels));
    let mut format = match d.sample_rate {
        Some(r) => khz(r),
        None => "the stems' own rate".to_string(),
    };
    format.push_str(" · ");
    format.push_str(&bits_label(
        d.bit_depth.bits(),
        d.bit_depth.is_float().then_some("float"),
    ));
    let _ = write!(
        format,
        " · {} dither",
        match d.dither {
            deliverables_spec::model::Dither::Tpdf => "TPDF",
            deliverables_spec::model::Dither::None => "no",
        }
    );
    kv(h, "Output format", &escape(&format));
    if !files.is_empty() {
        let join = |v: Vec<String>| v.join(", ");
        kv(
            h,
            "Files written",
            &escape(&format!(
                "{} · {} · {} ch · {} file{}",
                join(rates.iter().map(|r| khz(*r)).collect()),
                join(depths),
                join(channels.iter().map(|c| c.to_string()).collect()),
                files.len(),
                if files.len() == 1 { "" } else { "s" }
            )),
        );
    }
    h.push_str("</dl></section>\n<section><h3>Delivery</h3><dl class=\"kv\">");
    kv(
        h,
        "Profile",
        &format!(
            "<b>{}</b><br><span class=\"muted\">{}</span>",
            escape(&d.profile),
            escape(&d.profile_source)
        ),
    );
    kv(
        h,
        "Integrated target",
        &escape(&format!(
            "{} LUFS ±{} LU, {}",
            num(d.target_lufs, 1),
            num(d.tolerance_lu, 1),
            match d.loudness_basis {
                LoudnessBasis::Programme => "full programme",
                LoudnessBasis::Dialogue => "dialogue-gated (estimated from stems)",
            }
        )),
    );
    if d.loudness_basis == LoudnessBasis::Dialogue {
        let g = &d.dialogue;
        let roles: Vec<String> = g.roles.iter().map(|r| r.to_string()).collect();
        kv(
            h,
            "Dialogue gate",
            &escape(&format!(
                "{} stem above {} LUFS, within {} LU of its loudest block; under {} dialogue: {} LUFS ±{} LU on the full programme",
                roles.join("/"),
                num(g.absolute_gate_lufs, 1),
                num(g.relative_gate_lu, 1),
                pct(g.min_share),
                num(g.fallback_target_lufs, 1),
                num(g.fallback_tolerance_lu, 1)
            )),
        );
    }
    kv(
        h,
        "True-peak ceiling",
        &escape(&format!(
            "≤ {} dBTP (rendered to {} dBTP: margin {} dB)",
            num(d.true_peak_max_dbtp, 1),
            num(d.working_ceiling_db(), 1),
            num(d.true_peak_margin_db, 1)
        )),
    );
    if let Some(v) = d.max_short_term_lufs {
        kv(
            h,
            "Max short-term",
            &escape(&format!("≤ {} LUFS", num(v, 1))),
        );
    }
    if let Some(v) = d.max_momentary_lufs {
        kv(
            h,
            "Max momentary",
            &escape(&format!("≤ {} LUFS", num(v, 1))),
        );
    }
    if d.loudness_range_min_lu.is_some() || d.loudness_range_max_lu.is_some() {
        let lo = d
            .loudness_range_min_lu
            .map_or("0".to_string(), |v| num(v, 1));
        let hi = d
            .loudness_range_max_lu
            .map_or("∞".to_string(), |v| num(v, 1));
        kv(h, "Loudness range", &escape(&format!("{lo} to {hi} LU")));
    }
    h.push_str("</dl></section>\n</div>\n");

    // Title index.
    h.push_str(
        "<h3>Titles</h3><table class=\"idx\"><thead><tr><th>Title</th><th>Status</th>\
         <th class=\"n\">Outputs</th><th class=\"n\">Passed</th><th class=\"n\">Failed</th></tr></thead><tbody>\n",
    );
    for (i, t) in m.titles.iter().enumerate() {
        let failed = t.outputs.iter().filter(|o| is_fail(&o.verdict)).count();
        let bad = t.status != "rendered" || failed > 0;
        let _ = writeln!(
            h,
            "<tr class=\"{}\"><td><a href=\"#t{}\">{}</a></td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num{}\">{}</td></tr>",
            if bad { "fail" } else { "pass" },
            i + 1,
            escape(&t.name),
            status_badge(&t.status),
            t.outputs.len(),
            t.outputs.len() - failed,
            if failed > 0 { " fail" } else { "" },
            failed
        );
    }
    h.push_str("</tbody></table>\n</header>\n");
}

fn kv(h: &mut String, key: &str, value_html: &str) {
    let _ = write!(h, "<dt>{}</dt><dd>{value_html}</dd>", escape(key));
}

fn status_badge(status: &str) -> String {
    if status == "rendered" {
        "<span class=\"badge pass\">rendered</span>".into()
    } else {
        format!(
            "<span class=\"badge fail\">✗ {}</span>",
            escape(&status.to_uppercase())
        )
    }
}

/// One column of the verdict table.
struct Column {
    head: &'static str,
    unit: &'static str,
    /// The check that judges it, by name.
    check: Option<&'static str>,
    decimals: usize,
    signed: bool,
    value: fn(&OutputEntry, &Measurement) -> Option<f64>,
    /// Why the value can be missing, when no failed check says.
    missing: fn(&Measurement) -> &'static str,
}

fn columns(dialogue: bool) -> Vec<Column> {
    let mut c = vec![Column {
        head: "Integrated",
        unit: "LUFS",
        check: Some("integrated"),
        decimals: 2,
        signed: false,
        value: |_, m| m.integrated_lufs,
        missing: |_| "silent or under 0.4 s",
    }];
    if dialogue {
        c.push(Column {
            head: "Dialogue-gated",
            unit: "LUFS",
            check: Some("dialogue_integrated"),
            decimals: 2,
            signed: false,
            value: |_, m| m.dialogue.as_ref().and_then(|d| d.integrated_lufs),
            missing: |m| {
                if m.dialogue.is_some() {
                    "no block passed the gates"
                } else {
                    "no dialogue stem"
                }
            },
        });
    }
    c.extend([
        Column {
            head: "LRA",
            unit: "LU",
            check: Some("loudness_range"),
            decimals: 1,
            signed: false,
            value: |_, m| m.loudness_range_lu,
            missing: |_| "silent or under 3 s",
        },
        Column {
            head: "True peak",
            unit: "dBTP",
            check: Some("true_peak"),
            decimals: 2,
            signed: false,
            value: |_, m| m.true_peak_dbtp,
            missing: |_| "digital silence",
        },
        Column {
            head: "Sample peak",
            unit: "dBFS",
            check: None,
            decimals: 2,
            signed: false,
            value: |_, m| m.sample_peak_dbfs,
            missing: |_| "digital silence",
        },
        Column {
            head: "Max momentary",
            unit: "LUFS",
            check: Some("max_momentary"),
            decimals: 2,
            signed: false,
            value: |_, m| m.max_momentary_lufs,
            missing: |_| "silent or under 0.4 s",
        },
        Column {
            head: "Max short-term",
            unit: "LUFS",
            check: Some("max_short_term"),
            decimals: 2,
            signed: false,
            value: |_, m| m.max_short_term_lufs,
            missing: |_| "silent or under 3 s",
        },
        Column {
            head: "Offset from full",
            unit: "LU",
            check: None,
            decimals: 2,
            signed: true,
            value: |o, _| o.offset_from_full_lu,
            missing: |_| "no loudness to compare",
        },
    ]);
    c
}

fn find_check<'a>(v: &'a Verdict, name: &str) -> Option<&'a Check> {
    v.checks.iter().find(|c| c.name == name)
}

fn value_cell(h: &mut String, col: &Column, o: &OutputEntry, m: &Measurement) {
    let value = (col.value)(o, m).filter(|v| v.is_finite());
    let shown = value.map(|v| {
        if col.signed {
            signed(v, col.decimals)
        } else {
            num(v, col.decimals)
        }
    });
    let judged = col
        .check
        .and_then(|name| find_check(&o.verdict, name))
        .filter(|c| c.outcome != CheckOutcome::Reported);
    // A missing value: a short reason visibly, the full one on hover.
    let short = (col.missing)(m);
    let mut full = judged
        .and_then(|c| c.reason.clone())
        .unwrap_or_else(|| short.to_string());
    if !m.notes.is_empty() {
        let _ = write!(full, " ({})", m.notes.join("; "));
    }
    let (title, why) = match &shown {
        Some(_) => (
            judged
                .and_then(|c| c.reason.as_deref())
                .map(|r| format!(" title=\"{}\"", escape(r)))
                .unwrap_or_default(),
            String::new(),
        ),
        None => (
            format!(" title=\"{}\"", escape(&full)),
            format!("<span class=\"why\">{}</span>", escape(short)),
        ),
    };
    match judged {
        Some(c) => {
            let fail = c.outcome == CheckOutcome::Fail;
            let _ = write!(
                h,
                "<td class=\"num{}\"{title}>{}{}<span class=\"lim\">/ {}</span>{why}</td>",
                if fail { " fail" } else { "" },
                if fail {
                    "<span class=\"mark\">✗</span> "
                } else {
                    ""
                },
                shown.as_deref().unwrap_or(DASH),
                escape(&c.limit)
            );
        }
        None => {
            let _ = write!(
                h,
                "<td class=\"num\"{title}>{}{why}</td>",
                shown.as_deref().unwrap_or(DASH)
            );
        }
    }
}

fn title(h: &mut String, m: &Manifest, t: &TitleEntry, index: usize, dialogue_column: bool) {
    let _ = writeln!(
        h,
        "<section class=\"title\" id=\"t{index}\">\n<h2>{} {}</h2>",
        escape(&t.name),
        status_badge(&t.status)
    );
    if !t.layout.is_stereo() {
        let _ = writeln!(
            h,
            "<p class=\"layout\">{} (L R C LFE Ls Rs; LFE excluded from loudness)</p>",
            escape(t.layout.as_str())
        );
    }
    if let Some(e) = &t.error {
        let _ = writeln!(h, "<p class=\"error\">✗ {}</p>", escape(e));
    }
    if let Some(l) = &t.level {
        level(h, l);
    }
    if let Some(p) = &t.preflight {
        preflight(h, p);
    }
    if !t.notes.is_empty() {
        h.push_str("<h3>Notes</h3><ul class=\"notes\">");
        for n in &t.notes {
            let _ = write!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul>\n");
    }

    h.push_str("<h3>Outputs</h3>\n");
    if t.outputs.is_empty() {
        h.push_str("<p class=\"muted\">No outputs.</p>\n");
    } else {
        verdict_table(h, t, dialogue_column);
    }
    if !t.skipped.is_empty() {
        h.push_str("<h4>Skipped</h4><ul>");
        for s in &t.skipped {
            let same = s
                .same_as
                .as_ref()
                .map(|u| format!(" <span class=\"same\">same as {}</span>", escape(u)))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<li><b>{}</b>{same}: {}</li>",
                escape(&s.variant),
                escape(&s.reason)
            );
        }
        h.push_str("</ul>\n");
    }
    if !t.inputs.is_empty() {
        inputs(h, t);
    }
    if !t.outputs.is_empty() {
        let scale = title_scale(m, t);
        h.push_str(
            "<h3>QC sheets</h3>\n<p class=\"muted\">Every output of the title on one time axis and one scale. \
             Loudness: short-term (3 s) and the loudest momentary (400 ms) reading of each second; \
             true peak: the highest of each second. Overs of the ceiling are marked in red with their timecode.</p>\n\
             <div class=\"plots\">\n",
        );
        for o in &t.outputs {
            figure(h, m, o, &scale);
        }
        h.push_str("</div>\n");
    }
    h.push_str("</section>\n");
}

/// The target an output's verdict judged its loudness on, if any: the one
/// the manifest recorded with the verdict.
fn judged_target(o: &OutputEntry) -> Option<(f64, f64)> {
    (o.level_policy == LevelPolicy::Normalized && !o.remix)
        .then_some((o.target_lufs, o.tolerance_lu))
}

/// One scale for all the title's plots.
fn title_scale(m: &Manifest, t: &TitleEntry) -> Scale {
    let extents: Vec<Extent<'_>> = t
        .outputs
        .iter()
        .filter_map(|o| {
            let meas = o.measurement.as_ref()?;
            Some(Extent {
                measurement: meas,
                duration_s: o.file.as_ref().map(|f| f.duration_s),
                target: judged_target(o),
            })
        })
        .collect();
    let limits: Vec<f64> = [
        m.delivery.max_short_term_lufs,
        m.delivery.max_momentary_lufs,
    ]
    .into_iter()
    .flatten()
    .collect();
    Scale::of_title(&extents, m.delivery.true_peak_max_dbtp, &limits)
}

/// Preflight: the null test in one line, then every finding with its fix.
fn preflight(h: &mut String, p: &deliverables_spec::preflight::PreflightReport) {
    h.push_str("<h3>Preflight</h3>");
    if let Some(n) = &p.null_test {
        let fit = n.aligned.as_ref().unwrap_or(&n.as_delivered);
        let _ = writeln!(
            h,
            "<p>Null test against the reference: <b>{}</b> — best-fit gain {} dB, residual {} dB{}.</p>",
            if n.pass { "pass" } else { "fail" },
            fit.gain_db.map_or("n/a".into(), |g| signed(g, 2)),
            fit.residual_db.map_or("n/a".into(), |r| num(r, 1)),
            if n.aligned.is_some() {
                " (after correcting offsets and polarity)"
            } else {
                ""
            }
        );
    }
    if p.findings.is_empty() {
        h.push_str("<p class=\"muted\">No findings.</p>\n");
        return;
    }
    h.push_str(
        "<table class=\"preflight\"><thead><tr><th>Severity</th><th>Check</th><th>Finding</th><th>Fix</th></tr></thead><tbody>",
    );
    for f in &p.findings {
        let class = if f.severity == deliverables_spec::preflight::Severity::Error {
            " class=\"fail\""
        } else {
            ""
        };
        let _ = write!(
            h,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.severity.as_str(),
            escape(&f.check),
            escape(&f.message),
            escape(&f.fix)
        );
    }
    h.push_str("</tbody></table>\n");
}

fn level(h: &mut String, l: &LevelRecord) {
    h.push_str("<h3>Level</h3><dl class=\"kv\">");
    if let Some(t) = &l.loudness_target {
        kv(
            h,
            "Loudness rule",
            &escape(&format!(
                "{} LUFS ±{} LU · {}",
                num(t.target_lufs, 1),
                num(t.tolerance_lu, 1),
                t.why
            )),
        );
    }
    if let Some(s) = l.dialogue_share {
        kv(h, "Dialogue share", &escape(&pct(s)));
    }
    kv(
        h,
        "Full mix at unity gain",
        &escape(&opt(l.full_mix_lufs_at_unity, 2, "LUFS")),
    );
    kv(
        h,
        "Master gain",
        &escape(&format!("{} dB", signed(l.master_gain_db, 2))),
    );
    let mut clip = format!("{} dB", num(l.clip_safety_db, 2));
    if let Some(o) = &l.clip_safety_output {
        let _ = write!(clip, " (set by {o})");
    }
    kv(h, "Clip safety reduction", &escape(&clip));
    kv(
        h,
        "Ceiling trim",
        &escape(&format!("{} dB", signed(l.ceiling_trim_db, 2))),
    );
    for (v, t) in &l.variant_trims_db {
        kv(
            h,
            &format!("Further trim of `{v}`"),
            &escape(&format!("{} dB", signed(*t, 2))),
        );
    }
    if let Some(r) = &l.trim_rule {
        kv(h, "Ceiling rule", &escape(r));
    }
    if let Some(tp) = l.mix_true_peak_dbtp {
        kv(
            h,
            "Mix true peak before trim",
            &escape(&format!("{} dBTP", num(tp, 2))),
        );
    }
    kv(h, "Analysis passes", &l.passes.to_string());
    h.push_str("</dl>\n");
}

fn verdict_table(h: &mut String, t: &TitleEntry, dialogue_column: bool) {
    let cols = columns(dialogue_column);
    h.push_str("<div class=\"scroll\"><table class=\"verdicts\"><thead><tr><th>Output</th>");
    for c in &cols {
        let _ = write!(h, "<th>{}<span class=\"u\">{}</span></th>", c.head, c.unit);
    }
    h.push_str("<th>Verdict</th></tr></thead>\n<tbody>\n");
    for o in &t.outputs {
        let fail = is_fail(&o.verdict);
        let _ = write!(
            h,
            "<tr class=\"{}\"><td class=\"out\"><b title=\"{}\">{}</b>",
            if fail { "fail" } else { "pass" },
            escape(&o.description),
            escape(&o.variant)
        );
        if let Some(r) = o.stem_label() {
            let _ = write!(h, "<span class=\"role\">{}</span>", escape(r));
        }
        match &o.file {
            Some(f) => {
                let _ = write!(h, "<span class=\"mono\">{}</span>", escape(&f.path));
            }
            None => h.push_str("<span class=\"mono\">no file</span>"),
        }
        let mut pol = format!("{} · {}", o.level_policy.as_str(), o.mode.as_str());
        if let Some(g) = o.gain_db {
            let _ = write!(pol, " · gain {} dB", signed(g, 2));
        }
        if let Some(g) = o.fold_down_gain_db {
            let _ = write!(pol, " · fold-down gain {} dB", signed(g, 2));
        }
        let _ = write!(h, "<span class=\"pol\">{}</span>", escape(&pol));
        if let Some(m) = &o.measurement {
            for n in &m.notes {
                let _ = write!(h, "<span class=\"note\">{}</span>", escape(n));
            }
        }
        h.push_str("</td>");
        match &o.measurement {
            Some(m) => {
                for c in &cols {
                    value_cell(h, c, o, m);
                }
            }
            None => {
                let why = if o.verdict.reasons.is_empty() {
                    "not measured".to_string()
                } else {
                    o.verdict.reasons.join("; ")
                };
                let _ = write!(
                    h,
                    "<td class=\"missing\" colspan=\"{}\" title=\"{}\">{DASH} not measured<span class=\"why\">{}</span></td>",
                    cols.len(),
                    escape(&why),
                    escape(&why)
                );
            }
        }
        let _ = writeln!(
            h,
            "<td class=\"verdict {0}\">{1}</td></tr>",
            if fail { "fail" } else { "pass" },
            if fail { "✗ FAIL" } else { "✓ PASS" }
        );
    }
    h.push_str("</tbody></table></div>\n");

    let failing: Vec<&OutputEntry> = t.outputs.iter().filter(|o| is_fail(&o.verdict)).collect();
    if !failing.is_empty() {
        h.push_str("<h4>Why outputs failed</h4><ul class=\"reasons\">");
        for o in failing {
            let reasons = if o.verdict.reasons.is_empty() {
                "failed (no reason recorded)".to_string()
            } else {
                o.verdict.reasons.join("; ")
            };
            let _ = write!(
                h,
                "<li><span class=\"fail-mark\">✗</span> <b>{}</b>: {}</li>",
                escape(&output_label(o)),
                escape(&reasons)
            );
        }
        h.push_str("</ul>\n");
    }

    // Rules and loudness bases, each listed once with the outputs it covers.
    let grouped = |get: fn(&OutputEntry) -> Option<&String>| -> Vec<(String, Vec<String>)> {
        distinct(t.outputs.iter().filter_map(get).cloned())
            .into_iter()
            .map(|text| {
                let who = t
                    .outputs
                    .iter()
                    .filter(|o| get(o) == Some(&text))
                    .map(output_label)
                    .collect();
                (text, who)
            })
            .collect()
    };
    let rules = grouped(|o| Some(&o.verdict.rule));
    h.push_str("<h4>Rules applied</h4><ul class=\"rules\">");
    for (rule, who) in &rules {
        let _ = write!(
            h,
            "<li><b>{}</b>: {}</li>",
            escape(&who.join(", ")),
            escape(rule)
        );
    }
    h.push_str("</ul>\n");
    let bases = grouped(|o| o.verdict.loudness_basis.as_ref());
    if !bases.is_empty() {
        h.push_str("<h4>Loudness basis</h4><ul class=\"rules\">");
        for (basis, who) in &bases {
            let _ = write!(
                h,
                "<li><b>{}</b>: {}</li>",
                escape(&who.join(", ")),
                escape(basis)
            );
        }
        h.push_str("</ul>\n");
    }
}

fn inputs(h: &mut String, t: &TitleEntry) {
    h.push_str(
        "<h3>Inputs</h3><div class=\"scroll\"><table class=\"inputs\"><thead><tr><th>File</th><th>Kind</th>\
         <th>Format</th><th>Duration</th><th>SHA-256</th></tr></thead><tbody>\n",
    );
    for i in &t.inputs {
        let kind = match i.role {
            Some(r) => format!("{} ({r})", i.kind),
            None => i.kind.clone(),
        };
        let mut format = format!(
            "{} {} · {} · {} ch",
            i.container,
            i.codec,
            khz(i.sample_rate),
            i.channels
        );
        if let Some(b) = i.bits_per_sample {
            let _ = write!(format, " · {b}-bit");
        }
        let dur = if i.sample_rate > 0 {
            duration(i.frames as f64 / f64::from(i.sample_rate))
        } else {
            DASH.to_string()
        };
        let short: String = i.sha256.chars().take(16).collect();
        let _ = writeln!(
            h,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"mono\" title=\"{}\">{}…</td></tr>",
            escape(&i.path),
            escape(&kind),
            escape(&format),
            escape(&dur),
            escape(&i.sha256),
            escape(&short)
        );
    }
    h.push_str("</tbody></table></div>\n");
}

fn figure(h: &mut String, m: &Manifest, o: &OutputEntry, scale: &Scale) {
    let label = output_label(o);
    let fail = is_fail(&o.verdict);
    let _ = write!(
        h,
        "<figure class=\"plot{}\"><figcaption><b>{}</b> ",
        if fail { " fail" } else { "" },
        escape(&label)
    );
    if let Some(f) = &o.file {
        let _ = write!(
            h,
            "<span class=\"mono\">{}</span> · {} · {} · {} ch · {} ",
            escape(&f.path),
            khz(f.sample_rate),
            escape(&bits_label(f.bit_depth, Some(f.sample_format.as_str()))),
            f.channels,
            escape(&duration(f.duration_s))
        );
    }
    let _ = writeln!(
        h,
        "· {}{} <span class=\"badge {}\">{}</span></figcaption>",
        escape(o.level_policy.as_str()),
        if o.remix { " · re-mix stem" } else { "" },
        if fail { "fail" } else { "pass" },
        if fail { "✗ FAIL" } else { "✓ PASS" }
    );
    if let Some(same) = &o.same_as {
        let _ = write!(
            h,
            "<p class=\"same-as\">Not a version of this title: the same as <b>{}</b>. {}</p>",
            escape(&same.variant),
            escape(&same.reason)
        );
    }
    match &o.measurement {
        Some(meas) => {
            let target = judged_target(o);
            let normalized = target.is_some();
            let aria = format!(
                "Loudness and true peak of {} over time{}",
                label,
                o.file
                    .as_ref()
                    .map(|f| format!(", {}", f.path))
                    .unwrap_or_default()
            );
            h.push_str(&qc_plot(
                &QcPlot {
                    measurement: meas,
                    target,
                    max_short_term: m.delivery.max_short_term_lufs.map(|v| (v, normalized)),
                    max_momentary: m.delivery.max_momentary_lufs.map(|v| (v, normalized)),
                    ceiling: Some((m.delivery.true_peak_max_dbtp, !o.remix)),
                    label: &aria,
                },
                scale,
            ));
            h.push_str(&overs_list(meas, !o.remix));
        }
        None => {
            let why = if o.verdict.reasons.is_empty() {
                "no measurement".to_string()
            } else {
                o.verdict.reasons.join("; ")
            };
            let _ = write!(
                h,
                "<p class=\"no-plot\">No plot: the output was not measured ({}).</p>",
                escape(&why)
            );
        }
    }
    qc_checks(h, o);
    h.push_str("</figure>\n");
}

/// The QC rows of one output: every limit its rule judges, the values it
/// reports, its level change, its trims and its checksums.
fn qc_checks(h: &mut String, o: &OutputEntry) {
    h.push_str(
        "<table class=\"qc\"><thead><tr><th>Check</th><th>Limit</th><th>Measured</th><th>Result</th></tr></thead><tbody>",
    );
    for c in &o.verdict.checks {
        let (class, result) = match c.outcome {
            CheckOutcome::Pass => ("pass", "✓ pass"),
            CheckOutcome::Fail => ("fail", "✗ FAIL"),
            CheckOutcome::Reported => ("reported", "reported"),
        };
        let measured = c
            .measured
            .map_or_else(|| DASH.to_string(), |v| format!("{} {}", num(v, 2), c.unit));
        let _ = write!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"res {class}\">{result}{}</td></tr>",
            escape(&c.name.replace('_', " ")),
            escape(&match c.outcome {
                CheckOutcome::Reported => "not judged".to_string(),
                _ if c.limit.is_empty() => DASH.to_string(),
                _ => format!("{} {}", c.limit, c.unit),
            }),
            escape(&measured),
            c.reason
                .as_ref()
                .map(|r| format!("<span class=\"why\">{}</span>", escape(r)))
                .unwrap_or_default()
        );
    }
    for lc in &o.level_changes {
        let result = match lc.within_tolerance {
            Some(true) => ("pass", "✓ within 0.25 dB"),
            Some(false) => ("fail", "✗ not reached"),
            None => ("reported", "reported"),
        };
        let targets: Vec<&str> = lc
            .targets
            .iter()
            .map(|t| t.trim_start_matches("role:"))
            .collect();
        let _ = write!(
            h,
            "<tr class=\"{0}\"><td>effective change of {1}</td><td>{2} dB asked ({3}, applied {4} dB)</td>\
             <td class=\"num\">{5}</td><td class=\"res {0}\">{6}{7}</td></tr>",
            result.0,
            escape(&targets.join("+")),
            signed(lc.asked_db, 2),
            match lc.mode {
                deliverables_spec::model::AmountMode::Nominal => "nominal",
                deliverables_spec::model::AmountMode::Effective => "effective",
            },
            signed(lc.applied_db, 2),
            lc.effective_change_db
                .map_or_else(|| DASH.to_string(), |c| format!("{} dB", signed(c, 2))),
            result.1,
            lc.note
                .as_ref()
                .map(|n| format!("<span class=\"why\">{}</span>", escape(n)))
                .unwrap_or_default()
        );
    }
    if let Some(t) = o.ceiling_trim_db.filter(|t| *t != 0.0) {
        let stems = o
            .stems_trim_db
            .filter(|s| *s != 0.0)
            .map(|s| {
                format!(
                    " (of which {} dB for the stem set: the stems sum to the master × {} dB)",
                    signed(s, 2),
                    signed(s, 2)
                )
            })
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr class=\"reported\"><td>ceiling trim</td><td>{DASH}</td><td class=\"num\">{} dB</td><td class=\"res reported\">applied{}</td></tr>",
            signed(t, 2),
            escape(&stems)
        );
    }
    h.push_str("</tbody></table>");
    if let Some(f) = &o.file {
        let _ = write!(
            h,
            "<dl class=\"kv sums\"><dt>SHA-256</dt><dd class=\"mono\">{}</dd><dt>audio SHA-256</dt><dd class=\"mono\">{}</dd></dl>",
            escape(&f.sha256),
            escape(&f.audio_sha256)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::sample;
    use super::*;

    #[test]
    fn one_plot_per_measured_output() {
        let m = sample();
        let html = report_html(&m);
        let measured = m
            .titles
            .iter()
            .flat_map(|t| &t.outputs)
            .filter(|o| o.measurement.is_some())
            .count();
        let unmeasured = m
            .titles
            .iter()
            .flat_map(|t| &t.outputs)
            .filter(|o| o.measurement.is_none())
            .count();
        assert!(measured >= 4 && unmeasured >= 2);
        assert_eq!(html.matches("<svg class=\"qc-plot\"").count(), measured);
        // Every measured output has its QC rows and checksums.
        assert_eq!(
            html.matches("<table class=\"qc\">").count(),
            measured + unmeasured
        );
        assert_eq!(html.matches("<p class=\"no-plot\"").count(), unmeasured);
        // The curve with nulls in the middle is split.
        assert!(html.matches("<polyline").count() > measured);
    }

    #[test]
    fn failures_are_marked_and_explained() {
        let m = sample();
        let html = report_html(&m);
        let failing: Vec<&OutputEntry> = m
            .titles
            .iter()
            .flat_map(|t| &t.outputs)
            .filter(|o| o.verdict.verdict == Outcome::Fail)
            .collect();
        assert!(failing.len() >= 3);
        // Rows of the verdict tables (the title index has rows of its own).
        let tables: String = html
            .split("<table class=\"verdicts\">")
            .skip(1)
            .filter_map(|t| t.split("</table>").next())
            .collect();
        assert_eq!(tables.matches("<tr class=\"fail\">").count(), failing.len());
        let passing = m.summary.outputs - failing.len();
        assert_eq!(tables.matches("<tr class=\"pass\">").count(), passing);
        for o in &failing {
            for r in &o.verdict.reasons {
                assert!(html.contains(&escape(r)), "reason missing: {r}");
            }
        }
        // Failed cells: tinted and marked, with the limit next to the value.
        assert!(html.contains("<td class=\"num fail\""));
        assert!(html.contains(
            "<span class=\"mark\">✗</span> -22.30<span class=\"lim\">/ -23.0 ±0.5</span>"
        ));
        assert!(html.contains("✗ FAIL"));
        // A judged pass shows value against limit; a reported value plainly.
        assert!(html.contains("-23.02<span class=\"lim\">/ -23.0 ±0.5</span>"));
        assert!(html.contains("<td class=\"num\">-31.40</td>"));
        // Missing values: a dash, the reason as a tooltip and visibly.
        assert!(html.contains("title=\"no integrated loudness"));
        assert!(html.contains("<span class=\"why\">silent or under 0.4 s</span>"));
        // Rules, the failed title's error, the overall badge.
        assert!(html.contains("Rules applied"));
        assert!(html.contains("analysis failed: stem &lt;dialog.wav&gt; is unreadable"));
        assert!(html.contains(&format!("✗ {} FAILED", m.summary.failed)));
        // The dialogue column appears because one output has a dialogue measurement.
        assert!(html.contains("Dialogue-gated"));
    }

    #[test]
    fn escapes_and_stays_self_contained() {
        let m = sample();
        let html = report_html(&m);
        assert!(html.contains("Night &lt;Drive&gt; &amp; &quot;Day&quot;"));
        assert!(!html.contains("<Drive>"));
        assert!(!html.contains("&\"Day"));
        assert!(!html.contains("<&\">"));
        let lower = html.to_lowercase();
        assert!(!lower.contains("<script"));
        assert!(!lower.contains("http://") && !lower.contains("https://"));
        assert!(!lower.contains("src="));
        assert!(!lower.contains("<link"));
        assert!(!lower.contains("url("));
        for href in lower.split("href=\"").skip(1) {
            assert!(
                href.starts_with('#'),
                "non-local link: {}",
                &href[..20.min(href.len())]
            );
        }
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.trim_end().ends_with("</html>"));
        assert_eq!(
            html.matches("<section").count(),
            html.matches("</section>").count()
        );
        assert_eq!(
            html.matches("<table").count(),
            html.matches("</table>").count()
        );
        assert_eq!(html.matches("<tr").count(), html.matches("</tr>").count());
        assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    }

    #[test]
    fn deterministic() {
        let m = sample();
        assert_eq!(report_html(&m), report_html(&m.clone()));
    }

    #[test]
    fn number_formats() {
        assert_eq!(num(-0.001, 2), "0.00");
        assert_eq!(num(-23.016, 2), "-23.02");
        assert_eq!(signed(0.4, 2), "+0.40");
        assert_eq!(signed(0.0001, 2), "0.00");
        assert_eq!(signed(-1.047, 2), "-1.05");
        assert_eq!(khz(44100), "44.1 kHz");
        assert_eq!(khz(48000), "48 kHz");
        assert_eq!(duration(20.0), "20.0 s");
        assert_eq!(duration(3725.0), "1:02:05");
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }

    /// Writes the sample report for a look:
    /// `cargo test -p stemforge-worker --lib report::html::tests::dump -- --ignored`
    /// then `tests/report_screenshot.sh /tmp/report_sample.html /tmp/report_sample.png`.
    /// `REPORT_MANIFEST=path/manifest.json` renders a real manifest instead;
    /// `REPORT_SAMPLE=out.html` changes where it is written.
    #[test]
    #[ignore]
    fn dump() {
        let path =
            std::env::var("REPORT_SAMPLE").unwrap_or_else(|_| "/tmp/report_sample.html".into());
        let m = match std::env::var("REPORT_MANIFEST") {
            Ok(src) => {
                let text = std::fs::read_to_string(&src).expect("read the manifest");
                serde_json::from_str(&text).expect("parse the manifest")
            }
            Err(_) => sample(),
        };
        std::fs::write(&path, report_html(&m)).expect("write the sample report");
        eprintln!("wrote {path}");
    }
}
