//! Live-playback packs (`output = "live"`): the options resolved, the
//! interleave map read against a title's stems, and the gain rule — pure
//! functions the render task and validation share.
//!
//! A live pack is one file per input stem, each through its role chain and
//! its own chain only (no bus, no master, no loudness node, no limiter),
//! times one gain that keeps its true peak under the headroom. Click and
//! guide stems pass untouched (no chain, no gain, no dither).

use serde::{Deserialize, Serialize};

use crate::error::SpecError;
use crate::model::{InterleaveSpec, LiveSpec, StemLoudness, Title};

/// A live stem's true peak stays at or under this by default, dBTP.
pub const DEFAULT_HEADROOM_DBTP: f64 = -6.0;

/// Channel counts an interleaved live file may have.
pub const INTERLEAVE_CHANNELS: [u32; 2] = [8, 16];

/// A live pack's options, resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Live {
    pub headroom_dbtp: f64,
    pub stem_loudness: StemLoudness,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_lufs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interleave: Option<InterleaveSpec>,
}

impl Live {
    pub fn resolve(s: Option<&LiveSpec>) -> Live {
        let d = LiveSpec::default();
        let s = s.unwrap_or(&d);
        Live {
            headroom_dbtp: s.headroom_dbtp.unwrap_or(DEFAULT_HEADROOM_DBTP),
            stem_loudness: s.stem_loudness.unwrap_or_default(),
            target_lufs: s.target_lufs,
            interleave: s.interleave.clone(),
        }
    }
}

/// What channel `k` of an interleaved file plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapSource {
    Silence,
    /// Stem `stem` of the title (index into its stems); `channel`: `None`
    /// for a mono stem (`"ROLE"`), `Some(0)` / `Some(1)` for `:L` / `:R`.
    Stem {
        stem: usize,
        channel: Option<usize>,
    },
}

/// The label a stem's live file carries in place of `{role}`: its role, and
/// `_2`, `_3`, … for the second, third stem of the same role (in spec order).
pub fn stem_label(title: &Title, index: usize) -> String {
    let role = title.stems[index].role;
    let n = title.stems[..index]
        .iter()
        .filter(|s| s.role == role)
        .count();
    if n == 0 {
        role.as_str().to_string()
    } else {
        format!("{role}_{}", n + 1)
    }
}

/// A stem's file name without folder and extension (`Guitar 2` for
/// `stems/Guitar 2.wav`): how a map names a stem when its role has several.
pub fn stem_file_stem(file: &str) -> &str {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    match base.rsplit_once('.') {
        Some((s, _)) if !s.is_empty() => s,
        _ => base,
    }
}

/// Reads the interleave map of variant `variant` against `title`'s stems.
/// Errors name `variants.NAME.live.interleave.map[k]` (or `.channels`) and
/// the fix. Whether a stem is mono or stereo is only known from its file:
/// the render checks that (see [`channel_fits`]).
pub fn resolve_map(
    variant: &str,
    title: &Title,
    il: &InterleaveSpec,
) -> Result<Vec<MapSource>, Vec<SpecError>> {
    let f = format!("variants.{variant}.live.interleave");
    let mut errs = Vec::new();
    if !INTERLEAVE_CHANNELS.contains(&il.channels) {
        errs.push(
            SpecError::new(
                format!("{f}.channels"),
                format!(
                    "{} channels: an interleaved live file has 8 or 16",
                    il.channels
                ),
            )
            .hint("set `channels = 8` or `channels = 16`"),
        );
    } else if il.map.len() != il.channels as usize {
        errs.push(
            SpecError::new(
                format!("{f}.map"),
                format!(
                    "the map lists {} channel(s) and the file has {}",
                    il.map.len(),
                    il.channels
                ),
            )
            .hint(format!(
                "give exactly {} entries, `\"\"` for a silent channel",
                il.channels
            )),
        );
    }
    let mut out = Vec::with_capacity(il.map.len());
    for (k, e) in il.map.iter().enumerate() {
        match resolve_entry(title, e) {
            Ok(s) => out.push(s),
            Err((msg, hint)) => {
                errs.push(SpecError::new(format!("{f}.map[{k}]"), msg).hint(hint));
                out.push(MapSource::Silence);
            }
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// One map entry: `""`, `ROLE`, `ROLE:L`, `ROLE:R`, `FILE:L`, …
fn resolve_entry(title: &Title, e: &str) -> Result<MapSource, (String, String)> {
    let e = e.trim();
    if e.is_empty() {
        return Ok(MapSource::Silence);
    }
    let (name, channel) = match e.rsplit_once(':') {
        Some((n, c)) if c.eq_ignore_ascii_case("l") => (n, Some(0)),
        Some((n, c)) if c.eq_ignore_ascii_case("r") => (n, Some(1)),
        Some((_, c)) => {
            return Err((
                format!("`{e}`: `:{c}` is not a channel"),
                "write `NAME:L` or `NAME:R` for a channel of a stereo stem, `NAME` for a mono stem"
                    .to_string(),
            ));
        }
        None => (e, None),
    };
    let by_role: Vec<usize> = match crate::model::Role::parse(name) {
        Some(r) => (0..title.stems.len())
            .filter(|&i| title.stems[i].role == r)
            .collect(),
        None => Vec::new(),
    };
    let by_file: Vec<usize> = (0..title.stems.len())
        .filter(|&i| stem_file_stem(&title.stems[i].file) == name)
        .collect();
    let files = || {
        title
            .stems
            .iter()
            .map(|s| format!("`{}`", stem_file_stem(&s.file)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let stem = match (by_role.as_slice(), by_file.as_slice()) {
        (_, [one]) | ([one], []) => *one,
        (many, []) if many.len() > 1 => {
            return Err((
                format!(
                    "`{e}`: title `{}` has {} `{name}` stems",
                    title.name,
                    many.len()
                ),
                format!(
                    "name the stem by its file name instead of its role, one of {}",
                    many.iter()
                        .map(|&i| format!("`{}`", stem_file_stem(&title.stems[i].file)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        (_, []) => {
            return Err((
                format!(
                    "`{e}`: title `{}` has no stem of role `{name}` nor a stem file named `{name}`",
                    title.name
                ),
                format!(
                    "use a role of the title's stems or one of its stem files ({}), or `\"\"` for silence",
                    files()
                ),
            ));
        }
        (_, _) => {
            return Err((
                format!(
                    "`{e}`: title `{}` has several stem files named `{name}`",
                    title.name
                ),
                "rename one of the files".to_string(),
            ));
        }
    };
    Ok(MapSource::Stem { stem, channel })
}

/// Whether a map entry fits a stem with `stem_channels` channels: `ROLE`
/// needs a mono stem, `ROLE:L` / `ROLE:R` a stereo one. `Err` says why and
/// the fix.
pub fn channel_fits(
    entry: &str,
    channel: Option<usize>,
    stem_channels: usize,
) -> Result<(), String> {
    match (channel, stem_channels) {
        (None, 1) | (Some(_), 2) => Ok(()),
        (None, n) => Err(format!(
            "`{entry}` names a stem with {n} channels as mono: write `{entry}:L` or `{entry}:R`"
        )),
        (Some(_), n) => Err(format!(
            "`{entry}` names a channel of a stem with {n} channel(s): {}",
            if n == 1 {
                "write it without `:L` / `:R` (the stem is mono)"
            } else {
                "only mono and stereo stems can be mapped"
            }
        )),
    }
}

/// A live stem as measured through its chains, before any gain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StemLevel {
    /// True peak, dBTP (`None`: silent).
    pub true_peak_dbtp: Option<f64>,
    /// Integrated loudness, LUFS (`None`: silent or too short).
    pub integrated_lufs: Option<f64>,
    /// Click and guide: passed untouched, no gain.
    pub untouched: bool,
}

/// The gain a live stem gets, and why it is not the asked one.
#[derive(Debug, Clone, PartialEq)]
pub struct StemGain {
    pub gain_db: f64,
    pub note: Option<String>,
}

/// The gain rule of a live pack. Every peak lands at or under the aim, the
/// headroom less the delivery's true-peak margin:
/// - `reported`: one gain for every stem (click and guide excepted), so the
///   loudest stem's true peak lands on the aim and the balance is kept;
/// - `matched`: each stem its own gain to `target_lufs`, lowered where its
///   true peak would pass the aim (with a note saying so).
///
/// Click and guide get 0 dB.
pub fn live_gains(live: &Live, margin_db: f64, stems: &[StemLevel]) -> Vec<StemGain> {
    let aim = live.headroom_dbtp - margin_db;
    let common = stems
        .iter()
        .filter(|s| !s.untouched)
        .filter_map(|s| s.true_peak_dbtp)
        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))))
        .map_or(0.0, |loudest| aim - loudest);
    stems
        .iter()
        .map(|s| {
            if s.untouched {
                return StemGain {
                    gain_db: 0.0,
                    note: Some("click/guide: passed untouched (no chain, no gain, no dither), not judged on the headroom".into()),
                };
            }
            match live.stem_loudness {
                StemLoudness::Reported => StemGain {
                    gain_db: common,
                    note: None,
                },
                StemLoudness::Matched => {
                    let target = live.target_lufs.unwrap_or(-23.0);
                    let Some(i) = s.integrated_lufs else {
                        // Nothing to match: only the peak rule applies.
                        let g = s.true_peak_dbtp.map_or(0.0, |p| (aim - p).min(0.0));
                        return StemGain {
                            gain_db: g,
                            note: Some(
                                "no integrated loudness (silent or shorter than 400 ms): not matched"
                                    .into(),
                            ),
                        };
                    };
                    let want = target - i;
                    match s.true_peak_dbtp {
                        Some(p) if p + want > aim => StemGain {
                            gain_db: aim - p,
                            note: Some(format!(
                                "lowered {:.2} dB below the {target:.1} LUFS match: its true peak would be {:.2} dBTP, over the {:.1} dBTP headroom",
                                want - (aim - p),
                                p + want,
                                live.headroom_dbtp
                            )),
                        },
                        _ => StemGain {
                            gain_db: want,
                            note: None,
                        },
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Layout, Role, StemSpec};

    fn title(stems: &[(&str, Role)]) -> Title {
        Title {
            name: "T".into(),
            reference: None,
            layout: Layout::Stereo,
            variants: None,
            edit: None,
            explicit: Vec::new(),
            stems: stems
                .iter()
                .map(|(f, r)| StemSpec {
                    file: f.to_string(),
                    role: *r,
                    chain: vec![],
                })
                .collect(),
        }
    }

    fn lv(tp: f64, i: f64) -> StemLevel {
        StemLevel {
            true_peak_dbtp: Some(tp),
            integrated_lufs: Some(i),
            untouched: false,
        }
    }

    #[test]
    fn reported_is_one_gain_that_puts_the_loudest_peak_on_the_aim() {
        let live = Live::resolve(None);
        let click = StemLevel {
            true_peak_dbtp: Some(-3.0),
            integrated_lufs: Some(-20.0),
            untouched: true,
        };
        let g = live_gains(&live, 0.1, &[lv(-1.0, -18.0), lv(-9.5, -30.0), click]);
        // Aim -6.1; the loudest stem (-1.0) lands on it; balance kept.
        assert!((g[0].gain_db - -5.1).abs() < 1e-12, "{g:?}");
        assert_eq!(g[0].gain_db, g[1].gain_db);
        assert!((-9.5 + g[1].gain_db) <= -6.1);
        // The click is not counted and not moved.
        assert_eq!(g[2].gain_db, 0.0);
        assert!(
            g[2].note
                .as_deref()
                .is_some_and(|n| n.contains("untouched"))
        );
        // Quiet stems are raised to the aim too.
        let g = live_gains(&live, 0.1, &[lv(-12.0, -30.0)]);
        assert!((g[0].gain_db - 5.9).abs() < 1e-12);
    }

    #[test]
    fn matched_goes_to_the_target_unless_the_peak_says_no() {
        let live = Live {
            stem_loudness: StemLoudness::Matched,
            target_lufs: Some(-20.0),
            ..Live::resolve(None)
        };
        let g = live_gains(&live, 0.1, &[lv(-12.0, -26.0), lv(-3.0, -24.0)]);
        // +6 dB puts the first at -20 LUFS, its peak at -6.0... over -6.1:
        // lowered to -6.1.
        assert!((g[0].gain_db - 5.9).abs() < 1e-12, "{g:?}");
        assert!(g[0].note.as_deref().is_some_and(|n| n.contains("lowered")));
        // The second: +4 dB would peak at +1: lowered to -3.1 dB.
        assert!((g[1].gain_db - -3.1).abs() < 1e-12);
        // A stem with room gets exactly the target.
        let g = live_gains(&live, 0.1, &[lv(-20.0, -30.0)]);
        assert_eq!((g[0].gain_db, g[0].note.clone()), (10.0, None));
    }

    #[test]
    fn map_entries_resolve_and_errors_name_the_entry_and_the_fix() {
        let t = title(&[
            ("Click.wav", Role::Click),
            ("stems/Gtr A.wav", Role::Guitars),
            ("stems/Gtr B.wav", Role::Guitars),
            ("Bass.wav", Role::Bass),
        ]);
        let il = |map: &[&str]| InterleaveSpec {
            channels: 8,
            map: map.iter().map(|s| s.to_string()).collect(),
        };
        let ok = resolve_map(
            "live",
            &t,
            &il(&["click", "bass", "Gtr A:L", "Gtr B:R", "", "", "", ""]),
        )
        .expect("valid");
        assert_eq!(
            ok[..4],
            [
                MapSource::Stem {
                    stem: 0,
                    channel: None
                },
                MapSource::Stem {
                    stem: 3,
                    channel: None
                },
                MapSource::Stem {
                    stem: 1,
                    channel: Some(0)
                },
                MapSource::Stem {
                    stem: 2,
                    channel: Some(1)
                },
            ]
        );
        assert_eq!(ok[4], MapSource::Silence);
        let errs = resolve_map(
            "live",
            &t,
            &il(&["guitars:L", "keys", "bass:X", "", "", "", "", ""]),
        )
        .expect_err("invalid");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "variants.live.live.interleave.map[0]",
                "variants.live.live.interleave.map[1]",
                "variants.live.live.interleave.map[2]"
            ]
        );
        assert!(
            errs[0]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("`Gtr A`"))
        );
        assert!(errs[1].message.contains("no stem of role `keys`"));
        // The length must equal the channel count, and that is 8 or 16.
        let errs = resolve_map("live", &t, &il(&["click"])).expect_err("short");
        assert_eq!(errs[0].field, "variants.live.live.interleave.map");
        let errs = resolve_map(
            "live",
            &t,
            &InterleaveSpec {
                channels: 4,
                map: vec![String::new(); 4],
            },
        )
        .expect_err("4 channels");
        assert_eq!(errs[0].field, "variants.live.live.interleave.channels");
        // Mono/stereo fit, known from the files.
        assert!(channel_fits("bass", None, 1).is_ok());
        assert!(channel_fits("bass", None, 2).is_err_and(|e| e.contains("bass:L")));
        assert!(channel_fits("click:L", Some(0), 1).is_err());
        assert!(channel_fits("keys:R", Some(1), 2).is_ok());
    }

    #[test]
    fn second_stems_of_a_role_are_numbered() {
        let t = title(&[
            ("a.wav", Role::Guitars),
            ("b.wav", Role::Bass),
            ("c.wav", Role::Guitars),
        ]);
        assert_eq!(
            (0..3).map(|i| stem_label(&t, i)).collect::<Vec<_>>(),
            ["guitars", "bass", "guitars_2"]
        );
        assert_eq!(stem_file_stem("stems/Gtr A.wav"), "Gtr A");
    }
}
