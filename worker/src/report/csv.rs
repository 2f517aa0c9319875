//! `manifest.csv`: one row per output across all titles, for spreadsheets.
//! RFC 4180: comma separated, `\r\n` line ends, fields quoted when needed.

use std::borrow::Cow;

use deliverables_spec::compliance::Outcome;
use deliverables_spec::manifest::Manifest;

/// The header row, in column order.
pub(super) const COLUMNS: &[&str] = &[
    "title",
    "variant",
    "role",
    "file",
    "sample_rate",
    "bit_depth",
    "channels",
    "duration_s",
    "sha256",
    "audio_sha256",
    "level_policy",
    "gain_db",
    "fold_down_gain_db",
    "integrated_lufs",
    "dialogue_integrated_lufs",
    "dialogue_share",
    "loudness_range_lu",
    "true_peak_dbtp",
    "sample_peak_dbfs",
    "max_momentary_lufs",
    "max_short_term_lufs",
    "offset_from_full_lu",
    "effective_change_db",
    "ceiling_trim_db",
    "stems_trim_db",
    "remix",
    "overs",
    "first_over_timecode",
    "same_as",
    "target_lufs",
    "tolerance_lu",
    "true_peak_max_dbtp",
    "verdict",
    "reasons",
];

/// Quotes a field when it holds a comma, quote or line break.
fn field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// A number as Rust's `{}` prints it (shortest exact form); empty for `None`.
fn number(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

fn push_row(out: &mut String, cells: &[String]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&field(c));
    }
    out.push_str("\r\n");
}

/// The manifest as CSV: a header row, then one row per output.
pub fn manifest_csv(m: &Manifest) -> String {
    let mut out = csv_header();
    for t in &m.titles {
        out.push_str(&csv_rows(t));
    }
    out
}

/// The CSV's header row.
pub fn csv_header() -> String {
    let mut out = String::new();
    push_row(
        &mut out,
        &COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
    );
    out
}

/// One title's rows: one per output, so a catalog's CSV is written a title
/// at a time.
pub fn csv_rows(t: &deliverables_spec::manifest::TitleEntry) -> String {
    let mut out = String::with_capacity(512 * t.outputs.len());
    {
        for o in &t.outputs {
            let f = o.file.as_ref();
            let me = o.measurement.as_ref();
            let dialogue = me.and_then(|x| x.dialogue.as_ref());
            let row = [
                t.name.clone(),
                o.variant.clone(),
                // A group's name in the role column for stems in groups.
                o.stem_label().unwrap_or_default().to_string(),
                f.map(|f| f.path.clone()).unwrap_or_default(),
                f.map(|f| f.sample_rate.to_string()).unwrap_or_default(),
                f.map(|f| f.bit_depth.to_string()).unwrap_or_default(),
                f.map(|f| f.channels.to_string()).unwrap_or_default(),
                number(f.map(|f| f.duration_s)),
                f.map(|f| f.sha256.clone()).unwrap_or_default(),
                f.map(|f| f.audio_sha256.clone()).unwrap_or_default(),
                o.level_policy.as_str().to_string(),
                number(o.gain_db),
                number(o.fold_down_gain_db),
                number(me.and_then(|x| x.integrated_lufs)),
                number(dialogue.and_then(|d| d.integrated_lufs)),
                number(dialogue.map(|d| d.share)),
                number(me.and_then(|x| x.loudness_range_lu)),
                number(me.and_then(|x| x.true_peak_dbtp)),
                number(me.and_then(|x| x.sample_peak_dbfs)),
                number(me.and_then(|x| x.max_momentary_lufs)),
                number(me.and_then(|x| x.max_short_term_lufs)),
                number(o.offset_from_full_lu),
                number(o.effective_change_db),
                number(o.ceiling_trim_db),
                number(o.stems_trim_db),
                if o.remix { "yes" } else { "" }.to_string(),
                me.map(|x| x.overs_total.to_string()).unwrap_or_default(),
                me.and_then(|x| x.overs.first())
                    .map(|v| v.timecode.clone())
                    .unwrap_or_default(),
                o.same_as
                    .as_ref()
                    .map(|s| s.variant.clone())
                    .unwrap_or_default(),
                number(Some(o.target_lufs)),
                number(Some(o.tolerance_lu)),
                number(Some(o.true_peak_max_dbtp)),
                match o.verdict.verdict {
                    Outcome::Pass => "pass".to_string(),
                    Outcome::Fail => "fail".to_string(),
                },
                o.verdict.reasons.join("; "),
            ];
            push_row(&mut out, &row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testdata::sample;
    use super::*;

    /// A small RFC 4180 reader: records of fields, `\r\n` between records.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if quoted {
                match c {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        cell.push('"');
                    }
                    '"' => quoted = false,
                    c => cell.push(c),
                }
                continue;
            }
            match c {
                '"' => {
                    assert!(cell.is_empty(), "quote inside an unquoted field");
                    quoted = true;
                }
                ',' => row.push(std::mem::take(&mut cell)),
                '\r' => {
                    assert_eq!(chars.next(), Some('\n'), "bare CR");
                    row.push(std::mem::take(&mut cell));
                    rows.push(std::mem::take(&mut row));
                }
                '\n' => panic!("bare LF outside quotes"),
                c => cell.push(c),
            }
        }
        assert!(!quoted, "unterminated quote");
        assert!(cell.is_empty() && row.is_empty(), "no final CRLF");
        rows
    }

    #[test]
    fn one_row_per_output_and_round_trips() {
        let m = sample();
        let text = manifest_csv(&m);
        let rows = parse(&text);
        let outputs: Vec<_> = m
            .titles
            .iter()
            .flat_map(|t| t.outputs.iter().map(move |o| (t, o)))
            .collect();
        assert_eq!(rows.len(), 1 + outputs.len());
        assert_eq!(rows[0], COLUMNS);
        for r in &rows {
            assert_eq!(r.len(), COLUMNS.len(), "{r:?}");
        }
        let col = |name: &str| COLUMNS.iter().position(|c| *c == name).expect("column");
        for (r, (t, o)) in rows[1..].iter().zip(&outputs) {
            // Titles with commas and quotes come back intact.
            assert_eq!(r[col("title")], t.name);
            assert_eq!(r[col("variant")], o.variant);
            assert_eq!(r[col("reasons")], o.verdict.reasons.join("; "));
            assert_eq!(
                r[col("verdict")],
                if o.verdict.verdict == Outcome::Pass {
                    "pass"
                } else {
                    "fail"
                }
            );
            match &o.file {
                Some(f) => assert_eq!(r[col("file")], f.path),
                None => {
                    // None → empty fields, all of them.
                    for c in [
                        "file",
                        "sample_rate",
                        "sha256",
                        "integrated_lufs",
                        "gain_db",
                    ] {
                        assert_eq!(r[col(c)], "", "{c} of {}", o.variant);
                    }
                }
            }
            let i = o.measurement.as_ref().and_then(|x| x.integrated_lufs);
            assert_eq!(r[col("integrated_lufs")], number(i));
            if let Some(v) = i {
                assert_eq!(r[col("integrated_lufs")].parse::<f64>().ok(), Some(v));
            }
        }
        // The title with a comma and quotes is quoted, quotes doubled.
        assert!(text.contains("\"B-side, \"\"live\"\"\""));
        // A reason with a line break stays inside its quoted field.
        assert!(rows.iter().any(|r| r[col("reasons")].contains('\n')));
        assert!(text.ends_with("\r\n"));
        assert_eq!(text, manifest_csv(&m.clone()));
    }

    #[test]
    fn fields_and_numbers() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(number(Some(-23.0)), "-23");
        assert_eq!(number(Some(-23.018)), "-23.018");
        assert_eq!(number(None), "");
    }
}
