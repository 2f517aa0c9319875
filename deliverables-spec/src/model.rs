//! The deliverables spec as data: what the TOML file says, nothing derived.
//!
//! Every map is a `BTreeMap` so that serialising a spec (for content-addressed
//! task ids) is deterministic.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Adds the loudness limit fields to a struct written in the spec, and
/// `limit_patch()` to read them as one [`LimitPatch`]. The rule: the limit
/// fields are listed here and nowhere else, so `[delivery]` and
/// `[profiles.NAME]` accept the same keys and resolve through one path.
macro_rules! limit_fields {
    ($(#[$sm:meta])* pub struct $name:ident { $($body:tt)* }) => {
        limit_fields!(@emit [$(#[$sm])*] $name [$($body)*]
            /// Integrated loudness target, LUFS (LKFS).
            target_lufs: f64,
            /// Accepted distance either side of the target, LU.
            tolerance_lu: f64,
            /// The ceiling no output may exceed, dBTP.
            true_peak_max_dbtp: f64,
            /// Loudest 3 s window allowed, LUFS.
            max_short_term_lufs: f64,
            /// Loudest 400 ms window allowed, LUFS.
            max_momentary_lufs: f64,
            /// Loudness range (EBU Tech 3342) allowed, LU: lower end.
            loudness_range_min_lu: f64,
            /// … and upper end.
            loudness_range_max_lu: f64,
            /// What integrated loudness is measured on: the whole programme or,
            /// estimated from the dialogue stem, the dialogue.
            loudness_basis: LoudnessBasis,
            /// How dialogue is found (dialogue-gated profiles) and when to fall back.
            dialogue: DialogueSpec
        );
    };
    (@emit [$($sm:tt)*] $name:ident [$($body:tt)*] $($(#[$fm:meta])* $f:ident : $t:ty),*) => {
        $($sm)*
        pub struct $name {
            $($body)*
            $(
                $(#[$fm])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $f: Option<$t>,
            )*
        }

        impl $name {
            /// Every limit field's spec name, in declaration order.
            pub const LIMIT_FIELDS: &'static [&'static str] = &[$(stringify!($f)),*];

            /// The limit fields as written here.
            pub fn limit_patch(&self) -> LimitPatch {
                LimitPatch { $($f: self.$f.clone(),)* }
            }

            /// The limit fields set here, by their spec names.
            pub fn limits_set(&self) -> Vec<&'static str> {
                [$((stringify!($f), self.$f.is_some())),*]
                    .into_iter()
                    .filter_map(|(n, set)| set.then_some(n))
                    .collect()
            }
        }
    };
}

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Explicit schema version; must equal [`SCHEMA_VERSION`].
    pub schema_version: u32,
    #[serde(default)]
    pub delivery: DeliverySpec,
    /// Custom delivery profiles by name, selectable as `delivery.profile`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, ProfileSpec>,
    #[serde(default)]
    pub graph: Graph,
    /// Variants by name. Built-in names (`full`, `instrumental`, `acappella`,
    /// `tv`, `vocal_up`, `vocal_down`, `stems`, `fold_down`, `me`, `dme`)
    /// take their defaults from a
    /// preset; any other name is a custom variant.
    #[serde(default = "default_variants")]
    pub variants: BTreeMap<String, VariantSpec>,
    /// Checks run on the stems before anything is rendered.
    #[serde(default, skip_serializing_if = "PreflightSpec::is_default")]
    pub preflight: PreflightSpec,
    pub titles: Vec<Title>,
}

impl Spec {
    /// True when the spec lists no variants of its own (every built-in one
    /// applies, the fold-down only to 5.1 titles).
    pub fn variants_are_default(&self) -> bool {
        self.variants == default_variants()
    }
}

fn default_variants() -> BTreeMap<String, VariantSpec> {
    crate::variant::BUILTIN_VARIANTS
        .into_iter()
        .map(|n| (n.to_string(), VariantSpec::default()))
        .collect()
}

/// What kind of material a stem carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Drums,
    Bass,
    Music,
    Keys,
    Guitars,
    Vocals,
    BackingVocals,
    Dialogue,
    Fx,
    Other,
    /// A click (metronome) for a live band's in-ears: only a live output
    /// carries it, untouched.
    Click,
    /// Cues, count-ins, a guide vocal for the band: only a live output
    /// carries it, untouched.
    Guide,
}

impl Role {
    pub const ALL: [Role; 12] = [
        Role::Drums,
        Role::Bass,
        Role::Music,
        Role::Keys,
        Role::Guitars,
        Role::Vocals,
        Role::BackingVocals,
        Role::Dialogue,
        Role::Fx,
        Role::Other,
        Role::Click,
        Role::Guide,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Drums => "drums",
            Role::Bass => "bass",
            Role::Music => "music",
            Role::Keys => "keys",
            Role::Guitars => "guitars",
            Role::Vocals => "vocals",
            Role::BackingVocals => "backing_vocals",
            Role::Dialogue => "dialogue",
            Role::Fx => "fx",
            Role::Other => "other",
            Role::Click => "click",
            Role::Guide => "guide",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Lead and backing vocals: what `acappella` keeps and `instrumental` drops.
    pub fn is_vocal(self) -> bool {
        matches!(self, Role::Vocals | Role::BackingVocals)
    }

    /// Click and guide: muted in every output but a live one (a full mix
    /// never contains the click), where they pass untouched.
    pub fn is_live_only(self) -> bool {
        matches!(self, Role::Click | Role::Guide)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Title {
    /// Human name; file names use its slug (see [`crate::naming::slug`]).
    pub name: String,
    /// Optional reference mix the stems should reconstruct (in the title's
    /// layout: stereo, or 5.1 for a 5.1 title).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The channel layout the title is mixed and delivered in (default
    /// stereo). In a 5.1 title, mono stems play in the centre, stereo stems
    /// in the front pair and 5.1 stems as they are.
    #[serde(default, skip_serializing_if = "Layout::is_stereo")]
    pub layout: Layout,
    pub stems: Vec<StemSpec>,
    /// The spec's variants this title renders (default: every one that
    /// applies to it). Each name must be a variant of the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<Vec<String>>,
    /// The title is an edit of its stems (a cutdown): segments joined by
    /// crossfades, applied to every stem before the graph. Written by the
    /// expansion of a title's `[[titles.cutdowns]]`, or by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edit: Option<crate::edit::EditSpec>,
    /// Where the title's lyrics are explicit: `[start, end]` pairs on the
    /// stems' timeline, each time in seconds or `"HH:MM:SS.sss"` /
    /// `"MM:SS.sss"`. A variant with `clean` mutes (or ducks) its roles
    /// there unless it lists ranges of its own; the built-in `clean`
    /// variant applies only to titles that list some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explicit: Vec<TimeRange>,
}

/// A time on the stems' timeline, in seconds from their start. Written as
/// a number of seconds or as a string `"HH:MM:SS.sss"` / `"MM:SS.sss"`;
/// the string is resolved when the spec is read and kept (and serialised)
/// as the number it names, so both spellings of a time hash alike.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Seconds(pub f64);

/// `[start, end]`: the half-open span `start <= t < end`.
pub type TimeRange = [Seconds; 2];

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time: seconds (e.g. 62.5) or \"HH:MM:SS.sss\" / \"MM:SS.sss\"")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v as f64))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_time(v).map(Seconds).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `"HH:MM:SS.sss"` or `"MM:SS.sss"` (or plain seconds, `"62.5"`) as
/// seconds. The rule: digits only, minutes and seconds below 60 after a
/// larger field, any number of decimals on the seconds; the result is the
/// decimal number of seconds the fields spell, read as `f64` once (so
/// `"01:01:01.1"` is exactly `3661.1`).
pub fn parse_time(text: &str) -> Result<f64, String> {
    let bad = |why: &str| {
        format!(
            "`{text}` is not a time ({why}): write seconds (62.5) or \"HH:MM:SS.sss\" / \"MM:SS.sss\""
        )
    };
    let fields: Vec<&str> = text.trim().split(':').collect();
    if fields.len() > 3 {
        return Err(bad("more than three fields"));
    }
    let digits = |f: &str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit());
    let (secs, larger) = fields.split_last().ok_or_else(|| bad("empty"))?;
    let (whole, frac) = secs.split_once('.').unwrap_or((secs, ""));
    if !digits(whole) || !(frac.is_empty() || digits(frac)) {
        return Err(bad("the seconds are not a number"));
    }
    let mut total: u64 = 0;
    for (i, f) in larger.iter().enumerate() {
        if !digits(f) || f.len() > 6 {
            return Err(bad("hours and minutes are whole numbers"));
        }
        let v: u64 = f.parse().map_err(|_| bad("a field is too large"))?;
        // Minutes after hours are below 60.
        if i > 0 && v >= 60 {
            return Err(bad("minutes must be below 60"));
        }
        total = total * 60 + v;
    }
    let s: u64 = whole
        .parse()
        .map_err(|_| bad("the seconds are too large"))?;
    if !larger.is_empty() && s >= 60 {
        return Err(bad("seconds must be below 60"));
    }
    let number = format!(
        "{}.{}",
        total * 60 + s,
        if frac.is_empty() { "0" } else { frac }
    );
    number.parse::<f64>().map_err(|_| bad("not a number"))
}

/// Ranges as sorted, disjoint `[start, end)` spans in seconds: overlapping
/// or touching ranges are merged into their union (the order they are
/// written in does not matter). Ranges that are not `0 <= start < end`
/// (which validation refuses) are left out.
pub fn merge_ranges(ranges: &[TimeRange]) -> Vec<[f64; 2]> {
    let mut r: Vec<[f64; 2]> = ranges
        .iter()
        .map(|[a, b]| [a.0, b.0])
        .filter(|[a, b]| a.is_finite() && b.is_finite() && *a >= 0.0 && a < b)
        .collect();
    r.sort_by(|x, y| x[0].total_cmp(&y[0]).then(x[1].total_cmp(&y[1])));
    let mut out: Vec<[f64; 2]> = Vec::with_capacity(r.len());
    for [a, b] in r {
        match out.last_mut() {
            Some(last) if a <= last[1] => last[1] = last[1].max(b),
            _ => out.push([a, b]),
        }
    }
    out
}

/// A title's channel layout. 5.1 is in WAV order: L R C LFE Ls Rs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Layout {
    #[default]
    #[serde(rename = "stereo")]
    Stereo,
    #[serde(rename = "5.1")]
    Surround51,
}

impl Layout {
    pub fn channels(self) -> usize {
        match self {
            Layout::Stereo => 2,
            Layout::Surround51 => 6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Stereo => "stereo",
            Layout::Surround51 => "5.1",
        }
    }

    pub fn is_stereo(&self) -> bool {
        *self == Layout::Stereo
    }

    /// Which channel of a stem with `stem_channels` channels feeds output
    /// channel `out` of this layout (`None`: silence there). Stereo: mono
    /// plays in both channels. 5.1: mono plays in the centre, stereo in the
    /// front pair, 5.1 as it is.
    pub fn source_channel(self, stem_channels: usize, out: usize) -> Option<usize> {
        match (self, stem_channels) {
            (Layout::Stereo, 1) => Some(0),
            (Layout::Stereo, 2) | (Layout::Surround51, 6) => Some(out),
            (Layout::Surround51, 1) => (out == 2).then_some(0),
            (Layout::Surround51, 2) => (out < 2).then_some(out),
            _ => None,
        }
    }

    /// The layout a file with this many channels implies when no spec says:
    /// 5.1 for six, else stereo.
    pub fn implied_by(channels: usize) -> Layout {
        if channels == Layout::Surround51.channels() {
            Layout::Surround51
        } else {
            Layout::Stereo
        }
    }

    /// Whether stems with this many channels can be mixed in this layout.
    pub fn accepts(self, stem_channels: usize) -> bool {
        match self {
            Layout::Stereo => matches!(stem_channels, 1 | 2),
            Layout::Surround51 => matches!(stem_channels, 1 | 2 | 6),
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemSpec {
    /// Path to the audio file, relative to the spec file's folder.
    pub file: String,
    pub role: Role,
    /// Processing for this stem alone, after its role's chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<NodeSpec>,
}

/// Processing chains: per role, per bus, and the master bus.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    /// Chain applied to every stem of a role.
    #[serde(default)]
    pub roles: BTreeMap<Role, ChainSpec>,
    /// Buses: groups of roles with their own chain, summed before the master.
    #[serde(default)]
    pub buses: BTreeMap<String, BusSpec>,
    #[serde(default)]
    pub master: ChainSpec,
    /// The LFE channel of 5.1 titles.
    #[serde(default, skip_serializing_if = "LfeSpec::is_default")]
    pub lfe: LfeSpec,
}

/// The LFE channel of a 5.1 title: low-passed as each stem enters the graph
/// (it is excluded from loudness by BS.1770 either way).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LfeSpec {
    /// Butterworth low-pass on the LFE channel (`false` to pass it untouched).
    pub low_pass: bool,
    pub low_pass_hz: f64,
    /// 12, 24 or 48 dB/octave.
    pub slope_db_oct: u32,
}

impl Default for LfeSpec {
    fn default() -> Self {
        LfeSpec {
            low_pass: true,
            low_pass_hz: 120.0,
            slope_db_oct: 24,
        }
    }
}

impl LfeSpec {
    pub fn is_default(&self) -> bool {
        *self == LfeSpec::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    #[serde(default)]
    pub chain: Vec<NodeSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSpec {
    pub roles: Vec<Role>,
    #[serde(default)]
    pub chain: Vec<NodeSpec>,
}

/// One processing node with its parameters. `id` names it for variant overrides.
///
/// Written inline as `{ node = "gain", db = -3.0, id = "trim" }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(flatten)]
    pub kind: NodeKind,
}

impl NodeSpec {
    pub fn new(kind: NodeKind) -> Self {
        NodeSpec { id: None, kind }
    }
}

// serde cannot combine `flatten` with `deny_unknown_fields`, so the node is read
// as a map, its `id` taken out, and the rest read strictly as a `NodeKind`.
impl<'de> Deserialize<'de> for NodeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let id = match map.remove("id") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`id` must be a string, got {other}"
                )));
            }
        };
        if !map.contains_key("node") {
            return Err(D::Error::custom(format!(
                "missing `node`: say which node this is, one of {}",
                NodeKind::NAMES.join(", ")
            )));
        }
        let kind =
            NodeKind::deserialize(serde_json::Value::Object(map)).map_err(D::Error::custom)?;
        Ok(NodeSpec { id, kind })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "node", rename_all = "snake_case", deny_unknown_fields)]
pub enum NodeKind {
    /// Static gain (trim) in dB.
    Gain { db: f64 },
    /// Silence.
    Mute {},
    /// Where the title's master gain (found by analysis to meet the loudness
    /// target) is applied. Master chain only; appended at its end if absent,
    /// or before the first limiter.
    Loudness {},
    /// Inverts the signal.
    Polarity {},
    /// Stereo balance: -1 full left … 0 centre … +1 full right. The far side
    /// is attenuated by cos(|position|·π/2); the near side is untouched.
    Balance { position: f64 },
    /// Stereo width by mid/side: the side signal (L−R)/2 is scaled by
    /// `width` (0 = mono, 1 = unchanged, 2 = twice as wide) while the mid
    /// (L+R)/2 is kept, so the mono sum L+R is unchanged. On 5.1 it acts on
    /// the front pair (L, R) only.
    Width { width: f64 },
    /// Butterworth high-pass: 12 dB/oct (one biquad), 24 or 48 (cascades).
    HighPass {
        freq_hz: f64,
        #[serde(default = "default_slope")]
        slope_db_oct: u32,
    },
    LowPass {
        freq_hz: f64,
        #[serde(default = "default_slope")]
        slope_db_oct: u32,
    },
    /// Audio EQ Cookbook shelves and bell; `q` as in the cookbook.
    LowShelf {
        freq_hz: f64,
        gain_db: f64,
        #[serde(default = "default_shelf_q")]
        q: f64,
    },
    HighShelf {
        freq_hz: f64,
        gain_db: f64,
        #[serde(default = "default_shelf_q")]
        q: f64,
    },
    /// Peaking ("bell") EQ.
    Peak {
        freq_hz: f64,
        gain_db: f64,
        #[serde(default = "default_bell_q")]
        q: f64,
    },
    Notch {
        freq_hz: f64,
        #[serde(default = "default_notch_q")]
        q: f64,
    },
    /// Feed-forward compressor, channel-linked.
    Compressor {
        threshold_db: f64,
        ratio: f64,
        #[serde(default = "default_knee")]
        knee_db: f64,
        #[serde(default = "default_attack")]
        attack_ms: f64,
        #[serde(default = "default_release")]
        release_ms: f64,
        #[serde(default)]
        makeup_db: f64,
        #[serde(default)]
        detection: Detection,
    },
    /// True-peak lookahead limiter, channel-linked. `ceiling_dbtp` defaults
    /// to the delivery's ceiling minus its safety margin.
    Limiter {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ceiling_dbtp: Option<f64>,
        #[serde(default = "default_lookahead")]
        lookahead_ms: f64,
        #[serde(default = "default_limiter_release")]
        release_ms: f64,
        /// A linear-phase low-pass just below Nyquist (passband to 0.42·fs)
        /// before the limiter, so inter-sample peaks read the same on every
        /// meter. On by default.
        #[serde(default = "default_true")]
        band_limit: bool,
    },
    /// Mutes or ducks over time ranges (the `clean` variant's node): over
    /// each `[start, end)` the gain is exactly `depth_db` (absent: exact
    /// silence), with raised-cosine fades of `fade_ms` outside the range —
    /// down ending at `start`, up starting at `end`. Times are on the
    /// timeline of the chain's input (the stems' timeline in a stem's
    /// chain: the latency of the nodes before it is allowed for);
    /// overlapping or touching ranges are merged.
    Duck {
        ranges: Vec<TimeRange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        depth_db: Option<f64>,
        #[serde(default = "default_duck_fade")]
        fade_ms: f64,
    },
}

/// The fade either side of a ducked range, ms.
pub const DEFAULT_DUCK_FADE_MS: f64 = 10.0;

fn default_duck_fade() -> f64 {
    DEFAULT_DUCK_FADE_MS
}

fn default_true() -> bool {
    true
}

/// Compressor level detection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detection {
    #[default]
    Peak,
    Rms,
}

fn default_slope() -> u32 {
    12
}
fn default_shelf_q() -> f64 {
    std::f64::consts::FRAC_1_SQRT_2
}
fn default_bell_q() -> f64 {
    1.0
}
fn default_notch_q() -> f64 {
    10.0
}
fn default_knee() -> f64 {
    6.0
}
fn default_attack() -> f64 {
    10.0
}
fn default_release() -> f64 {
    150.0
}
fn default_lookahead() -> f64 {
    2.0
}
fn default_limiter_release() -> f64 {
    80.0
}

impl NodeKind {
    pub const NAMES: [&'static str; 15] = [
        "gain",
        "mute",
        "loudness",
        "polarity",
        "balance",
        "width",
        "high_pass",
        "low_pass",
        "low_shelf",
        "high_shelf",
        "peak",
        "notch",
        "compressor",
        "limiter",
        "duck",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Gain { .. } => "gain",
            NodeKind::Mute {} => "mute",
            NodeKind::Loudness {} => "loudness",
            NodeKind::Polarity {} => "polarity",
            NodeKind::Balance { .. } => "balance",
            NodeKind::Width { .. } => "width",
            NodeKind::HighPass { .. } => "high_pass",
            NodeKind::LowPass { .. } => "low_pass",
            NodeKind::LowShelf { .. } => "low_shelf",
            NodeKind::HighShelf { .. } => "high_shelf",
            NodeKind::Peak { .. } => "peak",
            NodeKind::Notch { .. } => "notch",
            NodeKind::Compressor { .. } => "compressor",
            NodeKind::Limiter { .. } => "limiter",
            NodeKind::Duck { .. } => "duck",
        }
    }

    /// True for nodes whose output is a fixed linear function of their input:
    /// loudness then scales exactly with gain and analysis needs no iteration.
    pub fn is_linear(&self) -> bool {
        !self.is_dynamics()
    }

    /// Nodes whose gain depends on the signal (compressor, limiter). For linked
    /// stems their gain envelope is computed on the full mix and shared.
    pub fn is_dynamics(&self) -> bool {
        matches!(self, NodeKind::Compressor { .. } | NodeKind::Limiter { .. })
    }

    /// The frequency a filter node is designed at (`None` for the nodes
    /// that are not filters): it must lie below the Nyquist frequency of
    /// the rate the node runs at.
    pub fn freq_hz(&self) -> Option<f64> {
        match self {
            NodeKind::HighPass { freq_hz, .. }
            | NodeKind::LowPass { freq_hz, .. }
            | NodeKind::LowShelf { freq_hz, .. }
            | NodeKind::HighShelf { freq_hz, .. }
            | NodeKind::Peak { freq_hz, .. }
            | NodeKind::Notch { freq_hz, .. } => Some(*freq_hz),
            NodeKind::Gain { .. }
            | NodeKind::Mute {}
            | NodeKind::Loudness {}
            | NodeKind::Polarity {}
            | NodeKind::Balance { .. }
            | NodeKind::Width { .. }
            | NodeKind::Compressor { .. }
            | NodeKind::Limiter { .. }
            | NodeKind::Duck { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelPolicy {
    /// Uses the full mix's master gain: variants cut against each other and
    /// stems sum to the full mix. Judged on the true-peak ceiling.
    Matched,
    /// Brought to the delivery target itself and judged on it.
    Normalized,
}

impl LevelPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LevelPolicy::Matched => "matched",
            LevelPolicy::Normalized => "normalized",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// One file: the variant's mix, in the title's layout (stereo for a
    /// fold-down).
    Mix,
    /// One file per role: the processed stems, which sum to the variant's mix.
    Stems,
    /// A live-playback pack: one file per input stem through its role and
    /// own chain only (no bus, no master), at a gain that keeps its true
    /// peak under the headroom; click and guide untouched (see [`LiveSpec`]).
    Live,
}

/// A variant as written in the spec. Unset fields take the preset's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// Free text for the manifest; presets describe themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Gain in dB per role or bus name (`bus:NAME` / `role:NAME` to be explicit).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gains: BTreeMap<String, f64>,
    /// Roles or buses to silence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute: Vec<String>,
    /// Roles or buses to keep; every other role is muted (used by `acappella`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only: Option<Vec<String>>,
    /// For `vocal_up` / `vocal_down`: the size of the change in dB (positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_db: Option<f64>,
    /// For `vocal_up` / `vocal_down`: which roles move (default: `vocals`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LevelPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputKind>,
    /// Nodes added to a chain for this variant only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insert: Vec<InsertOverride>,
    /// Nodes (by `id`) replaced for this variant only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace: Vec<ReplaceOverride>,
    /// Fold the 5.1 master down to stereo (5.1 titles only): ITU-R BS.775
    /// Lo/Ro by default. `fold_down = {}` takes every default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold_down: Option<FoldDownSpec>,
    /// What a level change (`gains`, `amount_db`) means: `nominal` applies
    /// it before the bus and master dynamics (a limiter delivers less);
    /// `effective` searches the gain so the delivered change of the moved
    /// roles equals the amount asked, where the limiter allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_mode: Option<AmountMode>,
    /// Stems for a re-mix rather than for air (`output = "stems"` only):
    /// written as 32-bit float with no ceiling applied or judged, so they
    /// sum to the master unscaled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remix: Option<bool>,
    /// A stems output as groups of roles (`output = "stems"` only): one
    /// file per group, named by the group, instead of one per role. Every
    /// role that sounds must be in exactly one group, so the group files
    /// sum to the variant's mix as per-role stems do. `dme` defaults to
    /// dialogue / music / effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<BTreeMap<String, Vec<Role>>>,
    /// A live-playback pack's options (`output = "live"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveSpec>,
    /// A clean version: the listed roles muted (or ducked) over the
    /// title's explicit-lyric ranges (`Title::explicit`) or the ranges
    /// given here. `clean = {}` takes every default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean: Option<CleanSpec>,
}

/// A live-playback pack, as written (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveSpec {
    /// No stem's true peak goes above this, dBTP (default -6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headroom_dbtp: Option<f64>,
    /// `reported` (one gain for every stem, their balance kept) or
    /// `matched` (each stem to `target_lufs`, lowered where its peak would
    /// pass the headroom).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stem_loudness: Option<StemLoudness>,
    /// Each stem's integrated loudness with `stem_loudness = "matched"`, LUFS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_lufs: Option<f64>,
    /// One multichannel file of every stem's channels, as `map` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interleave: Option<InterleaveSpec>,
}

/// How a live pack sets each stem's level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StemLoudness {
    /// One common gain: the loudest stem's true peak lands at the headroom
    /// (less the delivery's margin); each stem's loudness reported.
    #[default]
    Reported,
    /// Each stem its own gain to `target_lufs`, lowered to the headroom.
    Matched,
}

/// A live pack's interleaved file: channel `k` plays `map[k]`: `"ROLE"` (a
/// mono stem), `"ROLE:L"` / `"ROLE:R"` (a channel of a stereo stem), a
/// stem's file name (without extension) in place of the role when the role
/// has several stems, `""` for silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterleaveSpec {
    /// 8 or 16.
    pub channels: u32,
    pub map: Vec<String>,
}

/// A clean version, as written (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CleanSpec {
    /// The roles cleaned (default `["vocals", "backing_vocals"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
    /// `mute` (default: exact silence) or `duck` (down by `duck_db`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CleanMode>,
    /// How far `duck` lowers the roles, dB (default -20; `duck` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duck_db: Option<f64>,
    /// The fade either side of each range, ms (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fade_ms: Option<f64>,
    /// The ranges, instead of the title's `explicit` list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<TimeRange>>,
}

/// How a clean version treats its ranges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanMode {
    /// Exact digital silence over each range.
    #[default]
    Mute,
    /// Down by `duck_db` over each range.
    Duck,
}

/// What a variant's level change promises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmountMode {
    /// The gain is applied as written, before the bus and master dynamics.
    #[default]
    Nominal,
    /// The gain is searched so the delivered change equals the amount.
    Effective,
}

/// What the plan does with a variant that is not a version of a title (its
/// output would equal another output's, or its level change acts on no
/// stem of the title).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdenticalVariants {
    /// Not rendered; listed as skipped with `same_as` and the reason.
    #[default]
    Skip,
    /// Rendered anyway; the output records `same_as` and the reason.
    Write,
}

/// A stereo fold-down of a 5.1 master, as written (every field optional):
/// Lo = L + c·C + s·Ls (+ f·LFE), Ro = R + c·C + s·Rs (+ f·LFE).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoldDownSpec {
    /// Centre into each side, dB (default -3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_db: Option<f64>,
    /// Each surround into its side, dB (default -3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surround_db: Option<f64>,
    /// LFE into each side, dB; dropped unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfe_db: Option<f64>,
    /// A true-peak limiter at the delivery ceiling after the fold (default
    /// on): summing channels raises peaks a limited 5.1 master kept down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limiter: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsertOverride {
    /// `master`, `bus:NAME` or `role:NAME`.
    pub target: String,
    #[serde(default)]
    pub at: InsertAt,
    pub nodes: Vec<NodeSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsertAt {
    Start,
    #[default]
    End,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceOverride {
    /// The `id` of a node anywhere in the graph.
    pub id: String,
    /// The replacement; omit to bypass (remove) the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<NodeSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub enum BitDepth {
    Int16,
    Int24,
    Float32,
}

impl BitDepth {
    pub fn bits(self) -> u32 {
        match self {
            BitDepth::Int16 => 16,
            BitDepth::Int24 => 24,
            BitDepth::Float32 => 32,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, BitDepth::Float32)
    }
    /// Short label for names and reports: `16`, `24`, `32f`.
    pub fn label(self) -> &'static str {
        match self {
            BitDepth::Int16 => "16",
            BitDepth::Int24 => "24",
            BitDepth::Float32 => "32f",
        }
    }
}

impl TryFrom<u32> for BitDepth {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        match v {
            16 => Ok(BitDepth::Int16),
            24 => Ok(BitDepth::Int24),
            32 => Ok(BitDepth::Float32),
            other => Err(format!(
                "bit depth {other} is not supported; use 16 or 24 (PCM) or 32 (float)"
            )),
        }
    }
}

impl From<BitDepth> for u32 {
    fn from(b: BitDepth) -> u32 {
        b.bits()
    }
}

limit_fields! {
    /// Delivery as written: a named profile plus field overrides (the limit
    /// fields are [`LimitPatch`]'s, added by `limit_fields!`).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DeliverySpec {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub profile: Option<String>,
        /// Output sample rate; defaults to the stems' rate.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub sample_rate: Option<u32>,
        /// Several output rates: one pack per rate from the same session (each
        /// title analysed and rendered at each rate). Instead of `sample_rate`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub sample_rates: Option<Vec<u32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub bit_depth: Option<BitDepth>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub output_dir: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub naming: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub stem_naming: Option<String>,
        /// Dither before quantising to 16/24-bit (float output is never dithered).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dither: Option<Dither>,
        /// Safety margin below the true-peak ceiling that limiters and the final
        /// ceiling check aim for, dB (default 0.1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub true_peak_margin_db: Option<f64>,
        /// BWF origination date and time, RFC 3339 UTC (`2026-11-24T09:30:00Z`).
        /// Default: `SOURCE_DATE_EPOCH`, else the job's submission time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub origination: Option<String>,
        /// BWF `Originator` (32 ASCII characters at most); default `stemforge`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub originator: Option<String>,
        /// Variants that are not versions of a title: `skip` (default) or `write`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub identical_variants: Option<IdenticalVariants>,
        /// Frames per second of the timecode the report gives times in (an
        /// over at HH:MM:SS:FF, counted from the stems' BWF timeline position);
        /// default 24. Non-drop-frame counting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub frame_rate: Option<f64>,
    }
}

/// What a delivery's integrated loudness is measured on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoudnessBasis {
    /// The whole programme (ITU-R BS.1770 gating).
    #[default]
    Programme,
    /// Only where the dialogue stem is active (an estimate from stems).
    Dialogue,
}

/// Dialogue gating, as written (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialogueSpec {
    /// Count `vocals` (and `backing_vocals`) stems as dialogue too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_vocals: Option<bool>,
    /// A 400 ms block of the dialogue stem counts as speech above this, LUFS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_gate_lufs: Option<f64>,
    /// … and within this many LU of the stem's loudest block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_gate_lu: Option<f64>,
    /// Below this share of the programme (0–1) the profile's fallback applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_target_lufs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_tolerance_lu: Option<f64>,
}

limit_fields! {
    /// A custom delivery profile: a built-in one (`base`) with the limit
    /// fields of [`LimitPatch`] changed.
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ProfileSpec {
        /// Built-in profile the other fields override (default `ebu-r128`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub base: Option<String>,
        /// Where the figures come from, for the manifest and report.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub description: Option<String>,
    }
}

limit_fields! {
    /// The loudness limits a profile fixes, as a patch: each field set here
    /// replaces the profile's. Written under `[delivery]` or
    /// `[profiles.NAME]`; this is the one list of them (the macro adds the
    /// same fields to both, so unknown keys are still refused by name).
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct LimitPatch {}
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dither {
    /// Triangular-PDF noise of ±1 LSB, seeded per output (reproducible).
    #[default]
    Tpdf,
    None,
}

/// Preflight: what it tolerates and what an error does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreflightSpec {
    /// What a preflight error does to its title.
    pub on_error: PreflightOnError,
    /// The stems' sum passes the null test when its best-fit gain against the
    /// reference is within this many dB of unity.
    pub null_gain_tolerance_db: f64,
    /// … and what is left after that fit is at least this many dB below the
    /// reference.
    pub null_min_depth_db: f64,
    /// How far (seconds, either way) a stem's offset against the reference is
    /// searched.
    pub max_offset_s: f64,
    /// Stems shorter than the longest by more than this (seconds) are reported
    /// (they are padded with silence either way).
    pub length_tolerance_s: f64,
}

impl Default for PreflightSpec {
    fn default() -> Self {
        PreflightSpec {
            on_error: PreflightOnError::Stop,
            null_gain_tolerance_db: 0.1,
            null_min_depth_db: 40.0,
            max_offset_s: 1.0,
            length_tolerance_s: 0.01,
        }
    }
}

impl PreflightSpec {
    pub fn is_default(&self) -> bool {
        *self == PreflightSpec::default()
    }
}

/// What a preflight error does to its title.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PreflightOnError {
    /// The title is not rendered; the other titles carry on.
    #[default]
    Stop,
    /// Reported in the manifest and report; the title is rendered anyway.
    Render,
}
