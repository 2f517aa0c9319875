//! Semantic checks after parsing: every problem found, each naming its field and fix.

use std::collections::{BTreeMap, BTreeSet};

use crate::delivery::{self, Delivery, PROFILES};
use crate::error::{SpecError, did_you_mean};
use crate::model::{
    BitDepth, CleanMode, Graph, LimitPatch, NodeKind, NodeSpec, Role, Spec, TimeRange, Title,
};
use crate::naming::{
    LONGEST_LABEL_STEM_RATE, MAX_FILE_NAME_BYTES, MAX_OUTPUT_NAME_BYTES, PARTIAL_NAME_EXTRA_BYTES,
    check_template, fill, rate_label, slug,
};
use crate::outputs::{PlannedOutput, title_outputs};
use crate::variant::Target;

const GAIN_RANGE_DB: (f64, f64) = (-120.0, 40.0);
const VARIANT_GAIN_RANGE_DB: (f64, f64) = (-60.0, 24.0);
/// Widest stereo width (side gain): past 2× (+6 dB side) mono compatibility
/// and phase problems dominate.
const MAX_WIDTH: f64 = 2.0;

/// How deep a duck may go, dB (below it, mute: exact silence).
const DUCK_DEPTH_RANGE_DB: (f64, f64) = (-120.0, 0.0);
/// The longest fade either side of a ducked range, ms.
const MAX_DUCK_FADE_MS: f64 = 1000.0;

/// Output rates a delivery may ask for.
const SUPPORTED_RATES: std::ops::RangeInclusive<u32> = 8000..=384_000;

/// What a spec text holds: a job's whole spec, or one title of it scoped
/// from the job's text by [`crate::scope::split_titles`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Job,
    /// One title: checks that look across the job's titles (a variant
    /// replacing a node by an `id` written on another title's stem, a
    /// fold-down when no title is 5.1) are left out, since they were made
    /// on the whole spec when the job was submitted.
    Title,
}

/// All problems in a parsed spec (empty when it is valid).
pub fn validate(spec: &Spec) -> Vec<SpecError> {
    validate_in(spec, Scope::Job)
}

/// All problems in a parsed spec of the given scope (empty when it is valid).
pub fn validate_in(spec: &Spec, scope: Scope) -> Vec<SpecError> {
    let mut errs = Vec::new();
    let rate = lowest_pack_rate(spec);
    delivery_checks(spec, &mut errs);
    graph_checks(&spec.graph, rate, &mut errs);
    variant_checks(spec, scope, rate, &mut errs);
    title_checks(spec, rate, &mut errs);
    live_checks(spec, scope, &mut errs);
    preflight_checks(&spec.preflight, &mut errs);
    // File names are made from the templates, titles and variants checked
    // above, so they are measured only once all of those are valid.
    if errs.is_empty() {
        file_name_checks(spec, &mut errs);
    }
    errs
}

/// The lowest rate any title is known to be processed at before its stems
/// are read. A pack's working rate is its output rate (each of
/// `delivery.sample_rates`, or `delivery.sample_rate`); a delivery with
/// neither works at the stems' own rate, known only once they are read, and
/// a filter too high for it is refused when the graph is built then. Rates
/// outside the supported range are reported by [`delivery_checks`].
fn lowest_pack_rate(spec: &Spec) -> Option<u32> {
    Delivery::of(spec)
        .packs()
        .into_iter()
        .flatten()
        .filter(|r| SUPPORTED_RATES.contains(r))
        .min()
}

/// A filter cannot be designed at or above the Nyquist frequency (half the
/// rate) of the audio it runs on: the same test the DSP's filter design
/// makes, so a spec that passes here is not refused for it at render.
pub fn at_or_above_nyquist(freq_hz: f64, rate: u32) -> bool {
    freq_hz >= f64::from(rate) / 2.0
}

fn preflight_checks(p: &crate::model::PreflightSpec, errs: &mut Vec<SpecError>) {
    let fields = [
        (
            "preflight.null_gain_tolerance_db",
            p.null_gain_tolerance_db,
            0.0,
            12.0,
            "the default is 0.1",
        ),
        (
            // Deeper than 140 dB is below 24-bit quantisation and f64 cancellation.
            "preflight.null_min_depth_db",
            p.null_min_depth_db,
            0.0,
            140.0,
            "the default is 40",
        ),
        (
            "preflight.max_offset_s",
            p.max_offset_s,
            0.0,
            10.0,
            "the default is 1",
        ),
        (
            "preflight.length_tolerance_s",
            p.length_tolerance_s,
            0.0,
            3600.0,
            "the default is 0.01",
        ),
    ];
    for (field, v, lo, hi, hint) in fields {
        if !(lo..=hi).contains(&v) {
            errs.push(SpecError::new(field, format!("{v} is outside {lo}..={hi}")).hint(hint));
        }
    }
}

fn delivery_checks(spec: &Spec, errs: &mut Vec<SpecError>) {
    let d = &spec.delivery;
    if let Some(p) = &d.profile
        && delivery::profile(p).is_none()
        && !spec.profiles.contains_key(p)
    {
        errs.push(
            SpecError::new("delivery.profile", format!("unknown profile `{p}`")).hint(
                did_you_mean(
                    p,
                    PROFILES
                        .iter()
                        .map(|p| p.name)
                        .chain(spec.profiles.keys().map(String::as_str)),
                ),
            ),
        );
    }
    for (name, c) in &spec.profiles {
        if delivery::profile(name).is_some() {
            errs.push(
                SpecError::new(
                    format!("profiles.{name}"),
                    "has the name of a built-in profile",
                )
                .hint(format!(
                    "name it differently and write `base = \"{name}\"`, or override fields in [delivery]"
                )),
            );
        }
        if let Some(b) = &c.base
            && delivery::profile(b).is_none()
        {
            errs.push(
                SpecError::new(
                    format!("profiles.{name}.base"),
                    format!("unknown built-in profile `{b}`"),
                )
                .hint(did_you_mean(b, PROFILES.iter().map(|p| p.name))),
            );
        }
    }
    // Each limit is checked where it is written: `[delivery]` or the custom
    // profile that sets it (built-in profiles are valid by construction).
    written_limit_checks("delivery", &spec.delivery.limit_patch(), errs);
    for (name, p) in &spec.profiles {
        written_limit_checks(&format!("profiles.{name}"), &p.limit_patch(), errs);
    }
    let r = Delivery::of(spec);
    // A range whose ends come from different places can still be upside down.
    let own =
        |o: &LimitPatch| o.loudness_range_min_lu.is_some() && o.loudness_range_max_lu.is_some();
    if let (Some(lo), Some(hi)) = (r.loudness_range_min_lu, r.loudness_range_max_lu)
        && lo > hi
        && !own(&spec.delivery.limit_patch())
        && !spec.profiles.values().any(|p| own(&p.limit_patch()))
    {
        errs.push(
            SpecError::new(
                "delivery.loudness_range_min_lu",
                format!("the profile and [delivery] together give a range of {lo} to {hi} LU"),
            )
            .hint("set both ends in one place, the lower first"),
        );
    }
    if !(r.true_peak_margin_db.is_finite() && (0.0..=3.0).contains(&r.true_peak_margin_db)) {
        errs.push(
            SpecError::new(
                "delivery.true_peak_margin_db",
                format!("{} dB is not a usable margin", r.true_peak_margin_db),
            )
            .hint("use 0 to 3 dB; 0.1 is the default"),
        );
    }
    if let Some(o) = &r.origination
        && crate::timestamp::parse_rfc3339_utc(o).is_none()
    {
        errs.push(
            SpecError::new(
                "delivery.origination",
                format!("`{o}` is not a UTC date and time"),
            )
            .hint("write e.g. \"2026-11-24T09:30:00Z\" (BWF carries no time zone)"),
        );
    }
    if !(r.frame_rate.is_finite() && (1.0..=120.0).contains(&r.frame_rate)) {
        errs.push(
            SpecError::new(
                "delivery.frame_rate",
                format!("{} is not a timecode frame rate", r.frame_rate),
            )
            .hint("use e.g. 23.976, 24, 25, 29.97 or 30"),
        );
    }
    if r.originator.len() > 32 || !r.originator.is_ascii() {
        errs.push(
            SpecError::new(
                "delivery.originator",
                format!("`{}` does not fit the BWF field", r.originator),
            )
            .hint("use at most 32 ASCII characters"),
        );
    }
    let rates = r
        .sample_rate
        .map(|sr| ("delivery.sample_rate".to_string(), sr))
        .into_iter()
        .chain(
            r.sample_rates
                .iter()
                .enumerate()
                .map(|(i, &sr)| (format!("delivery.sample_rates[{i}]"), sr)),
        );
    for (field, sr) in rates {
        if !SUPPORTED_RATES.contains(&sr) {
            errs.push(
                SpecError::new(field, format!("{sr} Hz is not a supported rate"))
                    .hint("use e.g. 44100, 48000 or 96000"),
            );
        }
    }
    if let Some(list) = &spec.delivery.sample_rates {
        if list.is_empty() {
            errs.push(
                SpecError::new("delivery.sample_rates", "is empty").hint(
                    "list the rates, e.g. [48000, 96000], or leave it out for the stems' rate",
                ),
            );
        }
        if r.sample_rate.is_some() {
            errs.push(
                SpecError::new(
                    "delivery.sample_rates",
                    "is set together with `sample_rate`",
                )
                .hint("keep one: `sample_rate` for one pack, `sample_rates` for a pack per rate"),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, sr) in list.iter().enumerate() {
            if !seen.insert(sr) {
                errs.push(
                    SpecError::new(
                        format!("delivery.sample_rates[{i}]"),
                        format!("{sr} Hz is listed twice"),
                    )
                    .hint("list each rate once"),
                );
            }
        }
        if list.len() > 1 {
            for (field, t) in [
                ("delivery.naming", &r.naming),
                ("delivery.stem_naming", &r.stem_naming),
            ] {
                if !t.contains("{rate}") {
                    errs.push(
                        SpecError::new(
                            field,
                            format!("`{t}` has no `{{rate}}`: the packs at {} rates would give their files the same names", list.len()),
                        )
                        .hint("add `{rate}`, e.g. \"{title}_{variant}_{rate}k{bits}.wav\""),
                    );
                }
            }
        }
    }
    if r.output_dir.trim().is_empty() {
        errs.push(
            SpecError::new("delivery.output_dir", "is empty")
                .hint("name a folder, e.g. \"deliverables\""),
        );
    }
    // Each folder name in the path is one path component: the render could
    // not create a longer one.
    if let Some(long) = r
        .output_dir
        .split(['/', '\\'])
        .find(|c| c.len() > MAX_FILE_NAME_BYTES)
    {
        errs.push(
            SpecError::new(
                "delivery.output_dir",
                format!(
                    "has a folder name of {} bytes (`{}`), over the limit of {MAX_FILE_NAME_BYTES} bytes",
                    long.len(),
                    shown(long)
                ),
            )
            .hint("shorten the folder's name"),
        );
    }
    for (field, t, needs) in [
        ("delivery.naming", &r.naming, ["title", "variant"]),
        ("delivery.stem_naming", &r.stem_naming, ["title", "role"]),
    ] {
        match check_template(t) {
            Err(bad) => errs.push(
                SpecError::new(field, format!("unknown placeholder `{{{bad}}}`"))
                    .hint(did_you_mean(&bad, crate::naming::PLACEHOLDERS)),
            ),
            Ok(used) => {
                for n in needs {
                    if !used.iter().any(|u| u == n) {
                        errs.push(
                            SpecError::new(field, format!("`{t}` lacks `{{{n}}}`"))
                                .hint("without it two outputs would get the same name"),
                        );
                    }
                }
                if t.contains('/') || t.contains('\\') || t.contains("..") {
                    errs.push(
                        SpecError::new(field, format!("`{t}` leaves the output folder"))
                            .hint("a file name only: no `/`, `\\` or `..`"),
                    );
                }
                if !t.to_ascii_lowercase().ends_with(".wav") {
                    errs.push(
                        SpecError::new(field, format!("`{t}` does not end in .wav"))
                            .hint("outputs are WAV files"),
                    );
                }
            }
        }
    }
}

/// `rate`: the lowest rate the chain is known to run at (see
/// [`lowest_pack_rate`]), which every filter frequency must lie below half of.
fn check_chain(
    chain: &[NodeSpec],
    field: &str,
    loudness_ok: bool,
    rate: Option<u32>,
    errs: &mut Vec<SpecError>,
) {
    let mut loudness = 0;
    for (i, n) in chain.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if matches!(n.kind, NodeKind::Loudness {}) {
            loudness += 1;
            if !loudness_ok {
                errs.push(
                    SpecError::new(f.clone(), "the `loudness` node belongs in the master chain")
                        .hint("move it to [graph.master]"),
                );
            }
        }
        let params = node_param_errors(&n.kind);
        let freq_reported = params.iter().any(|(p, _, _)| *p == "freq_hz");
        for (param, message, hint) in params {
            errs.push(SpecError::new(format!("{f}.{param}"), message).hint(hint));
        }
        if let (Some(rate), Some(freq)) = (rate, n.kind.freq_hz())
            && !freq_reported
            && at_or_above_nyquist(freq, rate)
        {
            let nyquist = f64::from(rate) / 2.0;
            errs.push(
                SpecError::new(
                    format!("{f}.freq_hz"),
                    format!(
                        "{} at {freq} Hz is at or above the Nyquist frequency ({nyquist} Hz) of the {rate} Hz pack",
                        n.kind.name()
                    ),
                )
                .hint(format!("use a frequency below {nyquist} Hz")),
            );
        }
        if let Some(id) = &n.id
            && id.trim().is_empty()
        {
            errs.push(
                SpecError::new(format!("{f}.id"), "is empty")
                    .hint("give the node a name or leave `id` out"),
            );
        }
    }
    if loudness > 1 {
        errs.push(SpecError::new(field, "has more than one `loudness` node").hint("keep one"));
    }
}

/// Out-of-range parameters of one node: (parameter, what is wrong, the fix).
/// Frequencies are checked against the Nyquist frequency of the delivery's
/// rates by [`check_chain`] (and, at the stems' own rate, when the graph is
/// built, since that rate is known only then).
pub fn node_param_errors(kind: &NodeKind) -> Vec<(&'static str, String, String)> {
    let mut e = Vec::new();
    let mut range = |param: &'static str, v: f64, lo: f64, hi: f64, unit: &str, hint: &str| {
        if !(v.is_finite() && v >= lo && v <= hi) {
            e.push((
                param,
                format!("{v} {unit} is out of range"),
                format!("use {lo} to {hi} {unit}{hint}"),
            ));
        }
    };
    match kind {
        NodeKind::Gain { db } => range(
            "db",
            *db,
            GAIN_RANGE_DB.0,
            GAIN_RANGE_DB.1,
            "dB",
            "; use a `mute` node for silence",
        ),
        NodeKind::Mute {} | NodeKind::Loudness {} | NodeKind::Polarity {} => {}
        NodeKind::Balance { position } => range(
            "position",
            *position,
            -1.0,
            1.0,
            "",
            " (-1 left, 0 centre, +1 right)",
        ),
        NodeKind::Width { width } => range(
            "width",
            *width,
            0.0,
            MAX_WIDTH,
            "",
            " (0 mono, 1 unchanged, 2 twice as wide)",
        ),
        NodeKind::HighPass {
            freq_hz,
            slope_db_oct,
        }
        | NodeKind::LowPass {
            freq_hz,
            slope_db_oct,
        } => {
            range("freq_hz", *freq_hz, 1.0, 100_000.0, "Hz", "");
            if ![12, 24, 48].contains(slope_db_oct) {
                e.push((
                    "slope_db_oct",
                    format!("{slope_db_oct} dB/oct is not offered"),
                    "use 12, 24 or 48".to_string(),
                ));
            }
        }
        NodeKind::LowShelf {
            freq_hz,
            gain_db,
            q,
        }
        | NodeKind::HighShelf {
            freq_hz,
            gain_db,
            q,
        }
        | NodeKind::Peak {
            freq_hz,
            gain_db,
            q,
        } => {
            range("freq_hz", *freq_hz, 1.0, 100_000.0, "Hz", "");
            range("gain_db", *gain_db, -30.0, 30.0, "dB", "");
            range("q", *q, 0.05, 50.0, "", "");
        }
        NodeKind::Notch { freq_hz, q } => {
            range("freq_hz", *freq_hz, 1.0, 100_000.0, "Hz", "");
            range("q", *q, 0.05, 100.0, "", "");
        }
        NodeKind::Compressor {
            threshold_db,
            ratio,
            knee_db,
            attack_ms,
            release_ms,
            makeup_db,
            ..
        } => {
            range("threshold_db", *threshold_db, -80.0, 0.0, "dB", "");
            range("ratio", *ratio, 1.0, 100.0, ":1", "; 1 is no compression");
            range("knee_db", *knee_db, 0.0, 24.0, "dB", "");
            range("attack_ms", *attack_ms, 0.01, 500.0, "ms", "");
            range("release_ms", *release_ms, 1.0, 5000.0, "ms", "");
            range("makeup_db", *makeup_db, -24.0, 24.0, "dB", "");
        }
        NodeKind::Limiter {
            ceiling_dbtp,
            lookahead_ms,
            release_ms,
            ..
        } => {
            if let Some(c) = ceiling_dbtp {
                range(
                    "ceiling_dbtp",
                    *c,
                    -20.0,
                    0.0,
                    "dBTP",
                    "; a ceiling above 0 dBTP cannot be delivered",
                );
            }
            range("lookahead_ms", *lookahead_ms, 0.5, 20.0, "ms", "");
            range("release_ms", *release_ms, 1.0, 5000.0, "ms", "");
        }
        NodeKind::Duck {
            ranges,
            depth_db,
            fade_ms,
        } => {
            if let Some(d) = depth_db {
                range(
                    "depth_db",
                    *d,
                    DUCK_DEPTH_RANGE_DB.0,
                    DUCK_DEPTH_RANGE_DB.1,
                    "dB",
                    "; leave `depth_db` out to mute (exact silence)",
                );
            }
            range("fade_ms", *fade_ms, 0.0, MAX_DUCK_FADE_MS, "ms", "");
            if ranges.is_empty() {
                e.push((
                    "ranges",
                    "lists no range".to_string(),
                    "give [start, end] pairs in seconds or \"MM:SS.sss\", e.g. [[62.5, 63.4]]"
                        .to_string(),
                ));
            }
            for (i, message, hint) in range_errors(ranges) {
                e.push(("ranges", format!("range {i}: {message}"), hint));
            }
        }
    }
    e
}

/// The longest programme a time may point into, s (48 hours): times past it
/// are typing mistakes, and sample positions stay far from overflow.
pub const MAX_PROGRAMME_S: f64 = 172_800.0;

/// What is wrong with each of `ranges` (index, what, the fix): each must be
/// `0 <= start < end`, finite. Overlapping or touching ranges are not an
/// error: they are merged into their union.
pub fn range_errors(ranges: &[TimeRange]) -> Vec<(usize, String, String)> {
    let mut e = Vec::new();
    for (i, [a, b]) in ranges.iter().enumerate() {
        let (a, b) = (a.0, b.0);
        let hint = "write [start, end] with 0 <= start < end, in seconds or \"HH:MM:SS.sss\"";
        if !(a.is_finite() && b.is_finite()) {
            e.push((i, format!("[{a}, {b}] is not a time range"), hint.into()));
        } else if a < 0.0 {
            e.push((i, format!("starts before zero ({a} s)"), hint.into()));
        } else if a >= b {
            e.push((
                i,
                format!("[{a}, {b}] does not end after it starts"),
                hint.into(),
            ));
        } else if b > MAX_PROGRAMME_S {
            e.push((
                i,
                format!("ends after {MAX_PROGRAMME_S} s (48 hours)"),
                hint.into(),
            ));
        }
    }
    e
}

/// A list of ranges written at `field` (`titles[i].explicit`,
/// `variants.NAME.clean.ranges`).
fn check_ranges(ranges: &[TimeRange], field: &str, errs: &mut Vec<SpecError>) {
    for (i, message, hint) in range_errors(ranges) {
        errs.push(SpecError::new(format!("{field}[{i}]"), message).hint(hint));
    }
}

fn graph_checks(g: &Graph, rate: Option<u32>, errs: &mut Vec<SpecError>) {
    for (role, c) in &g.roles {
        check_chain(
            &c.chain,
            &format!("graph.roles.{role}.chain"),
            false,
            rate,
            errs,
        );
    }
    let mut owner: BTreeMap<Role, &str> = BTreeMap::new();
    for (name, b) in &g.buses {
        let f = format!("graph.buses.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            errs.push(SpecError::new(
                f.clone(),
                "bus names use letters, digits, `_` and `-`",
            ));
        }
        if b.roles.is_empty() {
            errs.push(
                SpecError::new(format!("{f}.roles"), "is empty")
                    .hint("list the roles the bus groups, e.g. [\"drums\", \"bass\"]"),
            );
        }
        for r in &b.roles {
            if let Some(other) = owner.insert(*r, name) {
                errs.push(
                    SpecError::new(
                        format!("{f}.roles"),
                        format!("role `{r}` is already in bus `{other}`"),
                    )
                    .hint("a role feeds one bus only"),
                );
            }
        }
        check_chain(&b.chain, &format!("{f}.chain"), false, rate, errs);
    }
    check_chain(&g.master.chain, "graph.master.chain", true, rate, errs);
    if !(g.lfe.low_pass_hz.is_finite() && (20.0..=500.0).contains(&g.lfe.low_pass_hz)) {
        errs.push(
            SpecError::new(
                "graph.lfe.low_pass_hz",
                format!("{} Hz is not an LFE low-pass", g.lfe.low_pass_hz),
            )
            .hint("use 20 to 500 Hz (120 Hz is the usual band limit), or `low_pass = false`"),
        );
    }
    if ![12, 24, 48].contains(&g.lfe.slope_db_oct) {
        errs.push(
            SpecError::new(
                "graph.lfe.slope_db_oct",
                format!("{} dB/oct is not offered", g.lfe.slope_db_oct),
            )
            .hint("use 12, 24 or 48"),
        );
    }
}

fn node_ids(g: &Spec) -> BTreeSet<String> {
    g.graph
        .roles
        .values()
        .flat_map(|c| &c.chain)
        .chain(g.graph.buses.values().flat_map(|b| &b.chain))
        .chain(&g.graph.master.chain)
        .chain(
            g.titles
                .iter()
                .flat_map(|t| t.stems.iter().flat_map(|s| &s.chain)),
        )
        .filter_map(|n| n.id.clone())
        .collect()
}

fn target_names(g: &Graph) -> Vec<String> {
    Role::ALL
        .iter()
        .map(|r| r.as_str().to_string())
        .chain(g.buses.keys().cloned())
        .collect()
}

fn variant_checks(spec: &Spec, scope: Scope, rate: Option<u32>, errs: &mut Vec<SpecError>) {
    if spec.variants.is_empty() {
        errs.push(SpecError::new("variants", "no variants").hint("add at least [variants.full]"));
    }
    let names = target_names(&spec.graph);
    let check_target =
        |t: &str, field: String, errs: &mut Vec<SpecError>, master_ok: bool| match Target::parse(
            t,
            &spec.graph,
        ) {
            Some(Target::Master) if !master_ok => errs.push(
                SpecError::new(field, "`master` cannot be used here").hint("name a role or a bus"),
            ),
            Some(_) => {}
            None => errs.push(
                SpecError::new(field, format!("`{t}` is neither a role nor a bus")).hint(
                    did_you_mean(
                        t.trim_start_matches("role:").trim_start_matches("bus:"),
                        names.iter().map(String::as_str),
                    ),
                ),
            ),
        };
    let ids = node_ids(spec);
    for (name, v) in &spec.variants {
        let f = format!("variants.{name}");
        if name.is_empty() || slug(name) != *name {
            errs.push(
                SpecError::new(
                    f.clone(),
                    "variant names use letters, digits, `_`, `-` and `.`",
                )
                .hint("they appear in file names"),
            );
        }
        for (t, db) in &v.gains {
            check_target(t, format!("{f}.gains.{t}"), errs, false);
            if !(db.is_finite() && (VARIANT_GAIN_RANGE_DB.0..=VARIANT_GAIN_RANGE_DB.1).contains(db))
            {
                errs.push(
                    SpecError::new(format!("{f}.gains.{t}"), format!("{db} dB is out of range"))
                        .hint("use -60 to +24 dB, or `mute`"),
                );
            }
        }
        for (i, t) in v.mute.iter().enumerate() {
            check_target(t, format!("{f}.mute[{i}]"), errs, false);
        }
        for (i, t) in v.only.iter().flatten().enumerate() {
            check_target(t, format!("{f}.only[{i}]"), errs, false);
        }
        let is_vocal_move = name == "vocal_up" || name == "vocal_down";
        if let Some(a) = v.amount_db {
            if !is_vocal_move {
                errs.push(
                    SpecError::new(
                        format!("{f}.amount_db"),
                        "only `vocal_up` and `vocal_down` take `amount_db`",
                    )
                    .hint("use `gains` for a custom variant"),
                );
            } else if !(a.is_finite() && a > 0.0 && a <= 24.0) {
                errs.push(SpecError::new(format!("{f}.amount_db"), format!("{a} dB is not a move size")).hint("give the size as a positive number of dB, e.g. 2; the variant's name sets the direction"));
            }
        }
        if let Some(rs) = &v.roles {
            if !is_vocal_move {
                errs.push(
                    SpecError::new(
                        format!("{f}.roles"),
                        "only `vocal_up` and `vocal_down` take `roles`",
                    )
                    .hint("use `gains` for a custom variant"),
                );
            } else if rs.is_empty() {
                errs.push(
                    SpecError::new(format!("{f}.roles"), "is empty").hint("e.g. [\"vocals\"]"),
                );
            }
        }
        for (i, ins) in v.insert.iter().enumerate() {
            let fi = format!("{f}.insert[{i}]");
            check_target(&ins.target, format!("{fi}.target"), errs, true);
            let is_master = ins.target == "master";
            check_chain(&ins.nodes, &format!("{fi}.nodes"), is_master, rate, errs);
            if is_master
                && ins
                    .nodes
                    .iter()
                    .any(|n| matches!(n.kind, NodeKind::Loudness {}))
            {
                errs.push(
                    SpecError::new(
                        format!("{fi}.nodes"),
                        "a variant cannot add a `loudness` node",
                    )
                    .hint("the master chain has one already"),
                );
            }
        }
        if let Some(fd) = &v.fold_down {
            for (key, db) in [
                ("center_db", fd.center_db),
                ("surround_db", fd.surround_db),
                ("lfe_db", fd.lfe_db),
            ] {
                if let Some(db) = db
                    && !(db.is_finite() && (-60.0..=6.0).contains(&db))
                {
                    errs.push(
                        SpecError::new(
                            format!("{f}.fold_down.{key}"),
                            format!("{db} dB is out of range"),
                        )
                        .hint("use -60 to +6 dB (BS.775: -3 for the centre and surrounds); leave `lfe_db` out to drop the LFE"),
                    );
                }
            }
        }
        if v.amount_mode == Some(crate::model::AmountMode::Effective) {
            let resolved = crate::variant::resolve_variant(name, v, &spec.graph);
            let moves = resolved.moves();
            if moves.len() != 1 {
                errs.push(
                    SpecError::new(
                        format!("{f}.amount_mode"),
                        format!(
                            "`effective` needs exactly one level change to search, and `{name}` has {}",
                            moves.len()
                        ),
                    )
                    .hint("give the roles that move one common gain, or use `amount_mode = \"nominal\"`"),
                );
            }
            if resolved.level != crate::model::LevelPolicy::Matched {
                errs.push(
                    SpecError::new(
                        format!("{f}.amount_mode"),
                        "`effective` measures the change against the full mix at its gain; a normalized variant has a gain of its own",
                    )
                    .hint("use `level = \"matched\"` (the preset's), or `amount_mode = \"nominal\"`"),
                );
            }
            if resolved.output != crate::model::OutputKind::Mix {
                errs.push(
                    SpecError::new(
                        format!("{f}.amount_mode"),
                        "`effective` is measured on the variant's mix; this variant delivers stems",
                    )
                    .hint("use it on a `mix` variant; stems follow their mix's gains"),
                );
            }
        }
        if v.remix == Some(true)
            && crate::variant::resolve_variant(name, v, &spec.graph).output
                != crate::model::OutputKind::Stems
        {
            errs.push(
                SpecError::new(
                    format!("{f}.remix"),
                    "only a variant with `output = \"stems\"` delivers re-mix stems",
                )
                .hint("set it on the `stems` variant, or add `output = \"stems\"`"),
            );
        }
        if let Some(c) = &v.clean {
            let fc = format!("{f}.clean");
            if name == "full" {
                errs.push(
                    SpecError::new(
                        fc.clone(),
                        "the full mix cannot be a clean version: it sets the title's master gain",
                    )
                    .hint("keep `full` as mixed and add a clean variant, e.g. [variants.clean]"),
                );
            }
            if c.roles.as_ref().is_some_and(Vec::is_empty) {
                errs.push(SpecError::new(format!("{fc}.roles"), "is empty").hint(
                    "name the roles to clean, e.g. [\"vocals\", \"backing_vocals\"] (the default)",
                ));
            }
            match (c.mode.unwrap_or_default(), c.duck_db) {
                (CleanMode::Mute, Some(_)) => errs.push(
                    SpecError::new(
                        format!("{fc}.duck_db"),
                        "is for `mode = \"duck\"` only; `mute` is exact silence",
                    )
                    .hint("add `mode = \"duck\"`, or leave `duck_db` out"),
                ),
                (CleanMode::Duck, Some(d))
                    if !(d.is_finite() && d >= DUCK_DEPTH_RANGE_DB.0 && d < 0.0) =>
                {
                    errs.push(
                        SpecError::new(format!("{fc}.duck_db"), format!("{d} dB is out of range"))
                            .hint("use -120 to just below 0 dB (default -20), or `mode = \"mute\"` for silence"),
                    );
                }
                _ => {}
            }
            if let Some(ms) = c.fade_ms
                && !(ms.is_finite() && (0.0..=MAX_DUCK_FADE_MS).contains(&ms))
            {
                errs.push(
                    SpecError::new(format!("{fc}.fade_ms"), format!("{ms} ms is out of range"))
                        .hint("use 0 to 1000 ms (default 10)"),
                );
            }
            if let Some(r) = &c.ranges {
                if r.is_empty() {
                    errs.push(
                        SpecError::new(format!("{fc}.ranges"), "lists no range")
                            .hint("leave `ranges` out to use each title's `explicit` ranges, or give [start, end] pairs"),
                    );
                }
                check_ranges(r, &format!("{fc}.ranges"), errs);
            }
        }
        group_checks(spec, name, v, &f, errs);
        if name == "full" && v.fold_down.is_some() {
            errs.push(
                SpecError::new(
                    format!("{f}.fold_down"),
                    "the full mix cannot be a fold-down: it sets the title's master gain",
                )
                .hint("keep `full` in the title's layout and add a fold-down variant, e.g. [variants.fold_down]"),
            );
        }
        let folds = v.fold_down.is_some() || name == "fold_down";
        if folds
            && scope == Scope::Job
            && !spec.variants_are_default()
            && !spec.titles.is_empty()
            && spec.titles.iter().all(|t| t.layout.is_stereo())
        {
            errs.push(
                SpecError::new(
                    f.clone(),
                    "folds a 5.1 master down to stereo, but every title is stereo",
                )
                .hint("set `layout = \"5.1\"` on the 5.1 titles, or remove this variant"),
            );
        }
        for (i, rep) in v.replace.iter().enumerate() {
            let fr = format!("{f}.replace[{i}]");
            if scope == Scope::Job && !ids.contains(&rep.id) {
                errs.push(
                    SpecError::new(format!("{fr}.id"), format!("no node has id `{}`", rep.id))
                        .hint(did_you_mean(&rep.id, ids.iter().map(String::as_str))),
                );
            }
            if let Some(w) = &rep.with {
                if matches!(w.kind, NodeKind::Loudness {}) {
                    errs.push(SpecError::new(
                        format!("{fr}.with"),
                        "cannot replace a node by `loudness`",
                    ));
                }
                check_chain(
                    std::slice::from_ref(w),
                    &format!("{fr}.with"),
                    false,
                    rate,
                    errs,
                );
            }
        }
    }
    // Stems in groups name their files by variant and group (see
    // `naming::group_file_name`): only per-role stem sets can collide.
    let stem_variants: Vec<&String> = spec
        .variants
        .iter()
        .filter(|(n, v)| {
            let r = crate::variant::resolve_variant(n, v, &spec.graph);
            (r.output == crate::model::OutputKind::Stems && r.groups.is_none())
                || r.output == crate::model::OutputKind::Live
        })
        .map(|(n, _)| n)
        .collect();
    let stem_naming = Delivery::of(spec).stem_naming;
    if stem_variants.len() > 1 && !stem_naming.contains("{variant}") {
        errs.push(
            SpecError::new(
                "delivery.stem_naming",
                format!(
                    "variants {} all write stems, and `{stem_naming}` would give their files the same names",
                    stem_variants.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            )
            .hint("add `{variant}` to delivery.stem_naming, e.g. \"{title}_{variant}-{role}_{rate}k{bits}.wav\""),
        );
    }
}

/// A stems variant's `groups`: each group named by a slug, with roles,
/// no role in two groups, and every role that sounds in the variant for a
/// title (one it renders) in a group, so the group files sum to the
/// variant's mix as its per-role stems would. A role left out is reported
/// once, with the first title that has it.
fn group_checks(
    spec: &Spec,
    name: &str,
    v: &crate::model::VariantSpec,
    f: &str,
    errs: &mut Vec<SpecError>,
) {
    let resolved = crate::variant::resolve_variant(name, v, &spec.graph);
    if v.groups.is_some() && resolved.output != crate::model::OutputKind::Stems {
        errs.push(
            SpecError::new(
                format!("{f}.groups"),
                "only a variant with `output = \"stems\"` writes its stems in groups",
            )
            .hint("add `output = \"stems\"`, or remove `groups`"),
        );
        return;
    }
    let Some(groups) = &resolved.groups else {
        return;
    };
    if groups.is_empty() {
        errs.push(
            SpecError::new(format!("{f}.groups"), "names no group")
                .hint("e.g. groups = { dialogue = [\"dialogue\"], music = [\"music\"], effects = [\"fx\"] }, or remove `groups` for one file per role"),
        );
        return;
    }
    let mut owner: BTreeMap<Role, &str> = BTreeMap::new();
    for (g, roles) in groups {
        let fg = format!("{f}.groups.{g}");
        if g.is_empty() || slug(g) != *g {
            errs.push(
                SpecError::new(
                    fg.clone(),
                    format!("`{g}` is not a group name: group names use letters, digits, `_`, `-` and `.`"),
                )
                .hint("the group's name goes into its file's name, e.g. `dialogue`, `music`, `effects`"),
            );
        }
        if roles.is_empty() {
            errs.push(SpecError::new(fg.clone(), "lists no role").hint(format!(
                "list the roles of group `{g}`, e.g. [\"fx\"], or remove the group"
            )));
        }
        for (i, r) in roles.iter().enumerate() {
            match owner.get(r) {
                Some(first) => errs.push(
                    SpecError::new(
                        format!("{fg}[{i}]"),
                        format!("role `{r}` is in group `{first}` too"),
                    )
                    .hint(format!("put `{r}` in one group only: the group files must sum to the mix, and a role in two groups would count twice")),
                ),
                None => {
                    owner.insert(*r, g);
                }
            }
        }
    }
    // Roles that sound for a title and are in no group: the first title
    // for each, and how many titles more.
    let mut left_out: BTreeMap<Role, (String, usize)> = BTreeMap::new();
    for t in &spec.titles {
        let selected = t
            .variants
            .as_ref()
            .is_none_or(|n| n.iter().any(|x| x == name));
        if !selected || !crate::variant::applies_to(&resolved, t) {
            continue;
        }
        let tg = crate::variant::title_graph(&spec.graph, t, &resolved);
        for i in crate::outputs::sounding_stems(&tg) {
            let role = t.stems[i].role;
            if !owner.contains_key(&role) {
                left_out
                    .entry(role)
                    .and_modify(|(_, more)| *more += 1)
                    .or_insert((t.name.clone(), 0));
            }
        }
    }
    for (role, (title, more)) in left_out {
        errs.push(
            SpecError::new(
                format!("{f}.groups"),
                format!(
                    "role `{role}` sounds in `{name}` for title `{title}`{} but is in no group",
                    match more {
                        0 => String::new(),
                        n => format!(" (and {n} title(s) more)"),
                    }
                ),
            )
            .hint(format!("add `{role}` to a group, or mute it in `{name}`: the group files must sum to the mix, and a role in no group would be missing from them")),
        );
    }
}

fn title_checks(spec: &Spec, rate: Option<u32>, errs: &mut Vec<SpecError>) {
    if spec.titles.is_empty() {
        errs.push(
            SpecError::new("titles", "no titles").hint("add a [[titles]] table with its stems"),
        );
    }
    let mut slugs: BTreeMap<String, usize> = BTreeMap::new();
    for (ti, t) in spec.titles.iter().enumerate() {
        let f = format!("titles[{ti}]");
        let s = slug(&t.name);
        if s.is_empty() {
            errs.push(
                SpecError::new(format!("{f}.name"), "is empty or has no letters or digits")
                    .hint("name the title, e.g. \"night-drive\""),
            );
        } else if let Some(prev) = slugs.insert(s.clone(), ti) {
            errs.push(
                SpecError::new(
                    format!("{f}.name"),
                    format!("`{}` gives the same file names as titles[{prev}]", t.name),
                )
                .hint("give each title a distinct name"),
            );
        }
        if t.stems.is_empty() {
            errs.push(
                SpecError::new(format!("{f}.stems"), "no stems")
                    .hint("list the stem files with their roles"),
            );
        }
        let mut files = BTreeSet::new();
        for (si, st) in t.stems.iter().enumerate() {
            let fs = format!("{f}.stems[{si}]");
            if st.file.trim().is_empty() {
                errs.push(
                    SpecError::new(format!("{fs}.file"), "is empty")
                        .hint("give the stem's path, relative to the spec file"),
                );
            } else if !files.insert(st.file.clone()) {
                errs.push(
                    SpecError::new(
                        format!("{fs}.file"),
                        format!("`{}` is listed twice in this title", st.file),
                    )
                    .hint("list each stem file once"),
                );
            }
            check_chain(&st.chain, &format!("{fs}.chain"), false, rate, errs);
        }
        title_variant_checks(spec, t, &f, errs);
        if let Some(e) = &t.edit {
            errs.extend(e.check(&format!("{f}.edit")));
        }
        check_ranges(&t.explicit, &format!("{f}.explicit"), errs);
        if let Some(r) = &t.reference
            && r.trim().is_empty()
        {
            errs.push(
                SpecError::new(format!("{f}.reference"), "is empty")
                    .hint("give the reference mix's path or leave `reference` out"),
            );
        }
    }
}

/// Live-playback options: only on a live variant, in range, a target for
/// `matched`, and (per title that renders it) an interleave map whose
/// entries name the title's stems.
fn live_checks(spec: &Spec, scope: Scope, errs: &mut Vec<SpecError>) {
    use crate::model::{OutputKind, StemLoudness};
    for (name, v) in &spec.variants {
        let f = format!("variants.{name}.live");
        let resolved = crate::variant::resolve_variant(name, v, &spec.graph);
        let Some(l) = &v.live else { continue };
        if resolved.output != OutputKind::Live {
            errs.push(
                SpecError::new(
                    f.clone(),
                    "only a variant with `output = \"live\"` is a live-playback pack",
                )
                .hint("add `output = \"live\"`, or use the built-in `live` variant"),
            );
            continue;
        }
        if let Some(h) = l.headroom_dbtp
            && !(-40.0..=0.0).contains(&h)
        {
            errs.push(
                SpecError::new(
                    format!("{f}.headroom_dbtp"),
                    format!("{h} dBTP is out of range"),
                )
                .hint("give a headroom from -40 to 0 dBTP, e.g. -6.0"),
            );
        }
        match (l.stem_loudness.unwrap_or_default(), l.target_lufs) {
            (StemLoudness::Matched, None) => errs.push(
                SpecError::new(
                    format!("{f}.target_lufs"),
                    "`stem_loudness = \"matched\"` brings each stem to a loudness, and none is given",
                )
                .hint("add `target_lufs`, e.g. -20.0, or use `stem_loudness = \"reported\"`"),
            ),
            (_, Some(t)) if !(-70.0..=0.0).contains(&t) => errs.push(
                SpecError::new(format!("{f}.target_lufs"), format!("{t} LUFS is out of range"))
                    .hint("give a target from -70 to 0 LUFS"),
            ),
            (StemLoudness::Reported, Some(_)) => errs.push(
                SpecError::new(
                    format!("{f}.target_lufs"),
                    "only `stem_loudness = \"matched\"` uses a target; `reported` keeps the stems' balance",
                )
                .hint("add `stem_loudness = \"matched\"` or remove `target_lufs`"),
            ),
            _ => {}
        }
        let Some(il) = &l.interleave else { continue };
        if scope != Scope::Job || spec.titles.is_empty() {
            // The channel count and the map's length need no title.
            let empty = Title {
                name: String::new(),
                reference: None,
                layout: Default::default(),
                stems: Vec::new(),
                variants: None,
                edit: None,
                explicit: Vec::new(),
            };
            if let Err(e) = crate::live::resolve_map(name, &empty, il) {
                errs.extend(e.into_iter().filter(|e| !e.field.contains("map[")));
            }
            continue;
        }
        let mut seen = BTreeSet::new();
        for t in &spec.titles {
            if t.variants.as_ref().is_some_and(|vs| !vs.contains(name)) {
                continue;
            }
            if let Err(e) = crate::live::resolve_map(name, t, il) {
                for e in e {
                    if seen.insert((e.field.clone(), e.message.clone())) {
                        errs.push(e);
                    }
                }
            }
        }
    }
}

/// A title's own selection of variants names variants of the spec, each once.
fn title_variant_checks(spec: &Spec, t: &Title, f: &str, errs: &mut Vec<SpecError>) {
    let Some(names) = &t.variants else {
        return;
    };
    if names.is_empty() {
        errs.push(
            SpecError::new(format!("{f}.variants"), "selects no variant")
                .hint("name at least one variant, or leave `variants` out to render them all"),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, n) in names.iter().enumerate() {
        if !spec.variants.contains_key(n) {
            errs.push(
                SpecError::new(
                    format!("{f}.variants[{i}]"),
                    format!("`{n}` is not a variant of this spec (title `{}`)", t.name),
                )
                .hint(did_you_mean(n, spec.variants.keys().map(String::as_str))),
            );
        } else if t.explicit.is_empty()
            && spec.variants.get(n).is_some_and(|v| {
                crate::variant::resolve_variant(n, v, &spec.graph)
                    .clean
                    .is_some_and(|c| c.ranges.is_none())
            })
        {
            errs.push(
                SpecError::new(
                    format!("{f}.variants[{i}]"),
                    format!("`{n}` cleans the title's explicit lyrics, and title `{}` lists no `explicit` ranges", t.name),
                )
                .hint("add `explicit = [[start, end], …]` to the title (seconds or \"MM:SS.sss\"), or give the variant `clean.ranges`"),
            );
        } else if !seen.insert(n.as_str()) {
            errs.push(
                SpecError::new(
                    format!("{f}.variants[{i}]"),
                    format!("`{n}` is listed twice"),
                )
                .hint("name each variant once"),
            );
        }
    }
}

/// Every output file name a title's render writes (each variant it renders,
/// at each pack's rate) must fit [`MAX_OUTPUT_NAME_BYTES`], or the render
/// cannot create the file. A name too long for a one-letter title is not the
/// title's doing: it is reported once, on the variant's name, or on the
/// template when even a one-letter variant name is too long.
fn file_name_checks(spec: &Spec, errs: &mut Vec<SpecError>) {
    let d = Delivery::of(spec);
    let all = crate::variant::variants(spec);
    // A pack at the stems' own rate is measured with the longest label a
    // stem rate can have, since the rate is known only when they are read.
    let rates: Vec<(u32, bool)> = d
        .packs()
        .into_iter()
        .map(|r| r.map_or((LONGEST_LABEL_STEM_RATE, false), |r| (r, true)))
        .collect();
    let longest_variant = all.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let longest_rate = rates
        .iter()
        .map(|&(r, _)| rate_label(r).len())
        .max()
        .unwrap_or(0);
    // What `{role}` is filled with: a role's name, or a group's label
    // (`VARIANT-GROUP` at most).
    let longest_role = Role::ALL
        .iter()
        .map(|r| r.as_str().len())
        .chain(all.iter().flat_map(|v| {
            v.groups
                .iter()
                .flat_map(|g| g.keys())
                .map(|g| v.name.len() + 1 + g.len())
        }))
        .max()
        .unwrap_or(0);
    let mut shared: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (ti, t) in spec.titles.iter().enumerate() {
        let title = slug(&t.name).len();
        // A title whose every name fits by this bound needs no closer look.
        if [&d.naming, &d.stem_naming].iter().all(|tpl| {
            name_bound(tpl, title, longest_variant, longest_rate, longest_role)
                <= MAX_OUTPUT_NAME_BYTES
        }) {
            continue;
        }
        let mut worst: Option<(usize, String)> = None;
        for v in crate::plan::title_variants(spec, t, &all).keep {
            for &(rate, known) in &rates {
                for o in title_outputs(spec, &d, t, v, rate) {
                    let n = o.file_name.len();
                    if n <= MAX_OUTPUT_NAME_BYTES {
                        continue;
                    }
                    let (template_field, template) = if o.is_stem() {
                        ("delivery.stem_naming", &d.stem_naming)
                    } else {
                        ("delivery.naming", &d.naming)
                    };
                    let len = |title: &str, variant: &str| match &o.group {
                        Some(g) => {
                            crate::naming::group_file_name(&d, title, variant, g, rate, o.bit_depth)
                                .len()
                        }
                        None => fill(
                            template,
                            title,
                            variant,
                            o.role.map_or("", Role::as_str),
                            rate,
                            o.bit_depth,
                        )
                        .len(),
                    };
                    let what = describe_output(&o, rate, known);
                    if len("x", &v.name) <= MAX_OUTPUT_NAME_BYTES {
                        // The title's name makes it too long.
                        if worst.as_ref().is_none_or(|(m, _)| n > *m) {
                            worst = Some((n, what));
                        }
                        continue;
                    }
                    let (field, n) = if len("x", "x") <= MAX_OUTPUT_NAME_BYTES {
                        (format!("variants.{}", v.name), len("x", &v.name))
                    } else {
                        (template_field.to_string(), len("x", "x"))
                    };
                    let e = shared.entry(field).or_insert((0, String::new()));
                    if n > e.0 {
                        *e = (n, what);
                    }
                }
            }
        }
        if let Some((n, what)) = worst {
            errs.push(
                SpecError::new(
                    format!("titles[{ti}].name"),
                    format!(
                        "`{}` gives {what} a file name of {n} bytes, over the limit of {MAX_OUTPUT_NAME_BYTES} bytes",
                        shown(&t.name)
                    ),
                )
                .hint(format!(
                    "shorten the name (the file name is {} bytes over); {}",
                    n - MAX_OUTPUT_NAME_BYTES,
                    limit_why()
                )),
            );
        }
    }
    for (field, (n, what)) in shared {
        let (message, hint) = if field.starts_with("variants.") {
            (
                format!(
                    "gives {what} a file name of {n} bytes even for a one-letter title, over the limit of {MAX_OUTPUT_NAME_BYTES} bytes"
                ),
                "shorten the variant's name",
            )
        } else {
            (
                format!(
                    "gives {what} a file name of {n} bytes even for one-letter title and variant names, over the limit of {MAX_OUTPUT_NAME_BYTES} bytes"
                ),
                "shorten the template",
            )
        };
        errs.push(SpecError::new(field, message).hint(format!("{hint}; {}", limit_why())));
    }
}

/// The most bytes `template` can give a name whose title slug has `title`
/// bytes: each placeholder counted at the longest value it takes (variant
/// names and rate labels at the given lengths, every role, every depth).
fn name_bound(template: &str, title: usize, variant: usize, rate: usize, role: usize) -> usize {
    let bits = [BitDepth::Int16, BitDepth::Int24, BitDepth::Float32]
        .iter()
        .map(|b| b.label().len())
        .max()
        .unwrap_or(0);
    [
        ("{title}", title),
        ("{variant}", variant),
        ("{role}", role),
        ("{rate}", rate),
        ("{bits}", bits),
    ]
    .iter()
    .fold(template.len(), |n, (p, longest)| {
        let k = template.matches(p).count();
        n - k * p.len() + k * longest
    })
}

fn limit_why() -> String {
    format!(
        "a file name has at most {MAX_FILE_NAME_BYTES} bytes, and the render writes each output first under a temporary name up to {PARTIAL_NAME_EXTRA_BYTES} bytes longer"
    )
}

/// Which output a file name is for, e.g. "the `full` mix at 48 kHz".
fn describe_output(o: &PlannedOutput, rate: u32, known: bool) -> String {
    let what = match (o.role, &o.group) {
        (_, Some(g)) => format!("the `{}` stem of group `{g}`", o.variant),
        (None, None) => format!("the `{}` mix", o.variant),
        (Some(role), None) => format!("the `{}` stem of `{role}`", o.variant),
    };
    if known {
        format!("{what} at {rate} Hz")
    } else {
        format!(
            "{what} at the stems' rate (counted as {} kHz, the longest a stem rate is written)",
            rate_label(rate)
        )
    }
}

/// A name as shown in a message: at most 40 characters of it.
fn shown(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Ranges of the limits beyond target, tolerance and ceiling.
/// The loudness limits as written under `at` (`delivery` or
/// `profiles.NAME`), each error named by its own path.
fn written_limit_checks(at: &str, o: &LimitPatch, errs: &mut Vec<SpecError>) {
    let mut range = |field: &str, v: Option<f64>, lo: f64, hi: f64, hint: &str| {
        if let Some(v) = v
            && !(v.is_finite() && (lo..=hi).contains(&v))
        {
            errs.push(
                SpecError::new(format!("{at}.{field}"), format!("{v} is out of range"))
                    .hint(format!("use {lo} to {hi}; {hint}")),
            );
        }
    };
    range(
        "max_short_term_lufs",
        o.max_short_term_lufs,
        -70.0,
        0.0,
        "EBU R 128 s1 uses -18",
    );
    range(
        "max_momentary_lufs",
        o.max_momentary_lufs,
        -70.0,
        0.0,
        "e.g. -10",
    );
    range(
        "loudness_range_min_lu",
        o.loudness_range_min_lu,
        0.0,
        50.0,
        "e.g. 4",
    );
    range(
        "loudness_range_max_lu",
        o.loudness_range_max_lu,
        0.0,
        50.0,
        "e.g. 18",
    );
    if let Some(g) = &o.dialogue {
        range(
            "dialogue.absolute_gate_lufs",
            g.absolute_gate_lufs,
            -70.0,
            0.0,
            "the default is -50",
        );
        range(
            "dialogue.relative_gate_lu",
            g.relative_gate_lu,
            1.0,
            60.0,
            "the default is 20",
        );
        range(
            "dialogue.min_share",
            g.min_share,
            0.0,
            1.0,
            "a fraction: 0.15 is 15 %",
        );
        range(
            "dialogue.fallback_target_lufs",
            g.fallback_target_lufs,
            -70.0,
            0.0,
            "e.g. -24",
        );
        range(
            "dialogue.fallback_tolerance_lu",
            g.fallback_tolerance_lu,
            0.0,
            10.0,
            "e.g. 2",
        );
    }
    if let (Some(lo), Some(hi)) = (o.loudness_range_min_lu, o.loudness_range_max_lu)
        && lo > hi
    {
        errs.push(
            SpecError::new(
                format!("{at}.loudness_range_min_lu"),
                format!("{lo} LU is above loudness_range_max_lu ({hi} LU)"),
            )
            .hint("swap them"),
        );
    }
    if let Some(t) = o.target_lufs
        && !(t.is_finite() && (-70.0..=0.0).contains(&t))
    {
        errs.push(
            SpecError::new(
                format!("{at}.target_lufs"),
                format!("{t} is not a loudness target"),
            )
            .hint("use a value between -70 and 0 LUFS, e.g. -23"),
        );
    }
    match o.tolerance_lu {
        Some(t) if !(t.is_finite() && t >= 0.0) => errs.push(
            SpecError::new(
                format!("{at}.tolerance_lu"),
                format!("must be zero or positive, got {t}"),
            )
            .hint("it is the allowed distance either side of the target, e.g. 0.5"),
        ),
        Some(t) if t > 10.0 => errs.push(
            SpecError::new(
                format!("{at}.tolerance_lu"),
                format!("{t} LU is wider than any delivery standard"),
            )
            .hint("use at most 10 LU"),
        ),
        _ => {}
    }
    if let Some(tp) = o.true_peak_max_dbtp
        && !(tp.is_finite() && (-20.0..=0.0).contains(&tp))
    {
        errs.push(
            SpecError::new(
                format!("{at}.true_peak_max_dbtp"),
                format!("{tp} dBTP is not a usable ceiling"),
            )
            .hint("use a value between -20 and 0 dBTP, e.g. -1"),
        );
    }
}
