//! Variants: built-in presets merged with what the spec says, resolved against
//! a title's stems into per-stem and per-bus gains, mutes and chains.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{
    AmountMode, CleanMode, CleanSpec, FoldDownSpec, Graph, InsertAt, Layout, LevelPolicy, NodeKind,
    NodeSpec, OutputKind, Role, Seconds, Spec, Title, VariantSpec,
};

pub const BUILTIN_VARIANTS: [&str; 11] = [
    "full",
    "instrumental",
    "acappella",
    "tv",
    "vocal_up",
    "vocal_down",
    "stems",
    "fold_down",
    "clean",
    "me",
    "dme",
];

/// Default depth of a `clean` variant in `duck` mode, dB.
pub const DEFAULT_CLEAN_DUCK_DB: f64 = -20.0;

/// Built-in variants for picture (M&E, DME): they apply only to titles
/// with a stem of the `dialogue` role (see [`applies_to`]).
pub const DIALOGUE_VARIANTS: [&str; 2] = ["me", "dme"];

/// The `dme` preset's groups: dialogue, music (every musical role) and
/// effects. Every role a title can sound in `dme` is in one of them, so
/// the three files sum to the full mix.
pub fn default_dme_groups() -> BTreeMap<String, Vec<Role>> {
    BTreeMap::from([
        ("dialogue".to_string(), vec![Role::Dialogue]),
        (
            "music".to_string(),
            vec![
                Role::Drums,
                Role::Bass,
                Role::Music,
                Role::Keys,
                Role::Guitars,
                Role::Vocals,
                Role::BackingVocals,
                Role::Other,
            ],
        ),
        ("effects".to_string(), vec![Role::Fx]),
    ])
}

/// Default size of the `vocal_up` / `vocal_down` move.
pub const DEFAULT_VOCAL_MOVE_DB: f64 = 2.0;

/// A variant with its preset applied: what it does, independent of any title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub description: String,
    pub level: LevelPolicy,
    pub output: OutputKind,
    /// Gain per role/bus target (`role:NAME` / `bus:NAME`), dB.
    pub gains: BTreeMap<String, f64>,
    /// Muted targets.
    pub mute: BTreeSet<String>,
    /// If set, only these targets sound.
    pub only: Option<BTreeSet<String>>,
    pub insert: Vec<crate::model::InsertOverride>,
    pub replace: Vec<crate::model::ReplaceOverride>,
    /// Set when the variant is a stereo fold-down of a 5.1 master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold_down: Option<FoldDown>,
    /// Whether the level change is applied as written or searched so the
    /// delivered change equals it.
    #[serde(default, skip_serializing_if = "is_nominal")]
    pub amount_mode: AmountMode,
    /// Stems for a re-mix: 32-bit float, no ceiling.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub remix: bool,
    /// A stems output written as groups of roles: one file per group
    /// (`None`: one file per role). Set only on stems outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<BTreeMap<String, Vec<Role>>>,
    /// A live-playback pack's options (`output = "live"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<crate::live::Live>,
    /// Set for a clean version: roles muted or ducked over time ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean: Option<Clean>,
}

/// A clean version, resolved: which roles, how deep, the fades, and the
/// ranges (`None`: the title's `explicit` list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clean {
    pub roles: Vec<Role>,
    /// `None`: muted (exact silence); else ducked by this many dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth_db: Option<f64>,
    pub fade_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Vec<crate::model::TimeRange>>,
}

impl Clean {
    pub fn resolve(c: &CleanSpec) -> Clean {
        Clean {
            roles: c
                .roles
                .clone()
                .unwrap_or_else(|| vec![Role::Vocals, Role::BackingVocals]),
            depth_db: match c.mode.unwrap_or_default() {
                CleanMode::Mute => None,
                CleanMode::Duck => Some(c.duck_db.unwrap_or(DEFAULT_CLEAN_DUCK_DB)),
            },
            fade_ms: c.fade_ms.unwrap_or(crate::model::DEFAULT_DUCK_FADE_MS),
            ranges: c.ranges.clone(),
        }
    }

    /// The ranges it cleans in `title`, sorted and merged: its own, else
    /// the title's explicit-lyric ranges.
    pub fn ranges_in(&self, title: &Title) -> Vec<[f64; 2]> {
        crate::model::merge_ranges(self.ranges.as_deref().unwrap_or(&title.explicit))
    }

    /// The node it appends to each cleaned stem's chain in
    /// `title`, or `None` when there is no range to clean.
    pub fn node(&self, title: &Title) -> Option<NodeSpec> {
        let ranges = self.ranges_in(title);
        (!ranges.is_empty()).then(|| NodeSpec {
            id: Some("clean".into()),
            kind: NodeKind::Duck {
                ranges: ranges
                    .into_iter()
                    .map(|[a, b]| [Seconds(a), Seconds(b)])
                    .collect(),
                depth_db: self.depth_db,
                fade_ms: self.fade_ms,
            },
        })
    }

    /// `mutes vocals, backing_vocals over the explicit ranges (10 ms fades)`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} over {} ({} ms fades)",
            match self.depth_db {
                None => "mutes".to_string(),
                Some(d) => format!("ducks ({d:+.1} dB)"),
            },
            self.roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            match &self.ranges {
                None => "the title's explicit ranges".to_string(),
                Some(r) => format!("{} range(s)", r.len()),
            },
            self.fade_ms
        )
    }
}

fn is_nominal(m: &AmountMode) -> bool {
    *m == AmountMode::Nominal
}

/// Targets moved together by one gain: a variant's level change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    /// `role:NAME` / `bus:NAME` keys, in order.
    pub targets: Vec<String>,
    pub gain_db: f64,
}

impl Move {
    /// `vocals+backing_vocals`: the targets without their prefixes.
    pub fn label(&self) -> String {
        self.targets
            .iter()
            .map(|t| target_label(t))
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// `role:vocals` → `vocals`, `bus:music` → `bus music`.
fn target_label(t: &str) -> String {
    match (t.strip_prefix("role:"), t.strip_prefix("bus:")) {
        (Some(r), _) => r.to_string(),
        (_, Some(b)) => format!("bus {b}"),
        _ => t.to_string(),
    }
}

impl Variant {
    /// Its level changes: targets moved by a non-zero gain, one [`Move`]
    /// per distinct gain (in order of the first target).
    pub fn moves(&self) -> Vec<Move> {
        let mut out: Vec<Move> = Vec::new();
        for (t, &db) in &self.gains {
            if db == 0.0 {
                continue;
            }
            match out.iter_mut().find(|m| m.gain_db.to_bits() == db.to_bits()) {
                Some(m) => m.targets.push(t.clone()),
                None => out.push(Move {
                    targets: vec![t.clone()],
                    gain_db: db,
                }),
            }
        }
        out
    }

    /// What its level changes do, in words (`validate` shows it): e.g.
    /// `mutes vocals, backing_vocals` or `vocals +2.0 dB`.
    pub fn acts_on(&self) -> String {
        let mut parts = Vec::new();
        if !self.mute.is_empty() {
            parts.push(format!(
                "mutes {}",
                self.mute
                    .iter()
                    .map(|t| target_label(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(o) = &self.only {
            parts.push(format!(
                "keeps only {}",
                o.iter()
                    .map(|t| target_label(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for m in self.moves() {
            parts.push(format!(
                "{} {:+.1} dB{}",
                m.label(),
                m.gain_db,
                if self.amount_mode == AmountMode::Effective {
                    " (effective)"
                } else {
                    ""
                }
            ));
        }
        if !self.insert.is_empty() || !self.replace.is_empty() {
            parts.push(format!(
                "changes processing ({} insert(s), {} replacement(s))",
                self.insert.len(),
                self.replace.len()
            ));
        }
        if self.fold_down.is_some() {
            parts.push("folds down to stereo".into());
        }
        if let Some(c) = &self.clean {
            parts.push(c.describe());
        }
        if let Some(groups) = &self.groups {
            parts.push(format!(
                "stems in groups: {}",
                groups
                    .iter()
                    .map(|(g, roles)| format!(
                        "{g} = {}",
                        roles
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join("+")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if parts.is_empty() {
            "every stem as mixed".into()
        } else {
            parts.join("; ")
        }
    }

    /// The variant with its one move's gain set to `gain_db` (the gain an
    /// effective-amount search settled on). Variants with other moves are
    /// returned unchanged.
    pub fn with_move_gain(&self, gain_db: f64) -> Variant {
        let mut v = self.clone();
        if let [m] = self.moves().as_slice() {
            for t in &m.targets {
                v.gains.insert(t.clone(), gain_db);
            }
        }
        v
    }

    /// Whether it changes levels at all (mutes, `only`, non-zero gains).
    fn changes_levels(&self) -> bool {
        !self.mute.is_empty() || self.only.is_some() || !self.moves().is_empty()
    }
}

/// A fold-down's coefficients, resolved. `None` gains are ITU-R BS.775's
/// 1/√2 (−3.01 dB); the LFE is dropped unless `lfe_db` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldDown {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_db: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surround_db: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lfe_db: Option<f64>,
    pub limiter: bool,
}

impl FoldDown {
    pub fn resolve(s: &FoldDownSpec) -> FoldDown {
        FoldDown {
            center_db: s.center_db,
            surround_db: s.surround_db,
            lfe_db: s.lfe_db,
            limiter: s.limiter.unwrap_or(true),
        }
    }

    /// How the coefficients read in a description.
    pub fn describe(&self) -> String {
        let db = |d: Option<f64>| d.map_or("-3 dB".to_string(), |d| format!("{d:+.1} dB"));
        let standard = self.center_db.is_none() && self.surround_db.is_none();
        format!(
            "{}C {}, Ls/Rs {}, LFE {}{}",
            if standard {
                "ITU-R BS.775 Lo/Ro: "
            } else {
                "Lo/Ro: "
            },
            db(self.center_db),
            db(self.surround_db),
            self.lfe_db
                .map_or("dropped".to_string(), |d| format!("{d:+.1} dB")),
            if self.limiter {
                ", true-peak limited"
            } else {
                ""
            }
        )
    }
}

/// Which chain a target string names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Role(Role),
    Bus(String),
    Master,
}

impl Target {
    /// Parses `master`, `bus:NAME`, `role:NAME` or a bare name (a bus if the
    /// graph has one by that name, else a role).
    pub fn parse(s: &str, graph: &Graph) -> Option<Target> {
        if s == "master" {
            return Some(Target::Master);
        }
        if let Some(b) = s.strip_prefix("bus:") {
            return graph
                .buses
                .contains_key(b)
                .then(|| Target::Bus(b.to_string()));
        }
        if let Some(r) = s.strip_prefix("role:") {
            return Role::parse(r).map(Target::Role);
        }
        if graph.buses.contains_key(s) {
            return Some(Target::Bus(s.to_string()));
        }
        Role::parse(s).map(Target::Role)
    }

    pub fn key(&self) -> String {
        match self {
            Target::Role(r) => format!("role:{r}"),
            Target::Bus(b) => format!("bus:{b}"),
            Target::Master => "master".to_string(),
        }
    }
}

/// Applies the preset (if the name is built in) and the spec's fields.
/// Targets are normalised to `role:`/`bus:` keys; unknown ones are dropped
/// here (validation reports them).
pub fn resolve_variant(name: &str, v: &VariantSpec, graph: &Graph) -> Variant {
    let key = |s: &String| Target::parse(s, graph).map(|t| t.key());
    let vocal_roles: Vec<Role> = v.roles.clone().unwrap_or_else(|| vec![Role::Vocals]);
    let amount = v.amount_db.unwrap_or(DEFAULT_VOCAL_MOVE_DB);
    let roles_label = vocal_roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join("+");

    let mut gains = BTreeMap::new();
    let mut mute = BTreeSet::new();
    let mut only = None;
    let (level, output, description) = match name {
        "full" => (
            LevelPolicy::Normalized,
            OutputKind::Mix,
            "full mix: every stem".to_string(),
        ),
        "instrumental" => {
            mute.insert("role:vocals".to_string());
            mute.insert("role:backing_vocals".to_string());
            (
                LevelPolicy::Matched,
                OutputKind::Mix,
                "instrumental: lead and backing vocals muted".to_string(),
            )
        }
        "acappella" => {
            only = Some(BTreeSet::from([
                "role:vocals".to_string(),
                "role:backing_vocals".to_string(),
            ]));
            (
                LevelPolicy::Matched,
                OutputKind::Mix,
                "a cappella: lead and backing vocals only".to_string(),
            )
        }
        "tv" => {
            mute.insert("role:vocals".to_string());
            (
                LevelPolicy::Matched,
                OutputKind::Mix,
                format!(
                    "TV mix: lead vocal muted, backing vocals kept, {TV_DIP_DB} dB presence dip at {TV_DIP_HZ} Hz on the music"
                ),
            )
        }
        "vocal_up" | "vocal_down" => {
            let signed = if name == "vocal_up" { amount } else { -amount };
            for r in &vocal_roles {
                gains.insert(format!("role:{r}"), signed);
            }
            (
                LevelPolicy::Matched,
                OutputKind::Mix,
                format!("{roles_label} {signed:+.1} dB"),
            )
        }
        "stems" => (
            LevelPolicy::Matched,
            OutputKind::Stems,
            "processed stems, one file per role; they sum to the full mix".to_string(),
        ),
        "fold_down" => (
            LevelPolicy::Normalized,
            OutputKind::Mix,
            "stereo fold-down of the 5.1 full mix".to_string(),
        ),
        // Not in the default set: a spec lists it to get it.
        "live" => (
            LevelPolicy::Matched,
            OutputKind::Live,
            "live-playback pack: one file per stem through its own chains, true peaks under the headroom; click and guide untouched".to_string(),
        ),
        "clean" => (
            LevelPolicy::Matched,
            OutputKind::Mix,
            "clean version of the full mix".to_string(),
        ),
        "me" => {
            mute.insert(format!("role:{}", Role::Dialogue));
            (
                LevelPolicy::Matched,
                OutputKind::Mix,
                "M&E: music and effects, dialogue muted".to_string(),
            )
        }
        "dme" => (
            LevelPolicy::Matched,
            OutputKind::Stems,
            "DME: dialogue, music and effects stems; they sum to the full mix".to_string(),
        ),
        _ => (
            LevelPolicy::Matched,
            OutputKind::Mix,
            format!("custom variant `{name}`"),
        ),
    };
    for (t, db) in &v.gains {
        if let Some(k) = key(t) {
            *gains.entry(k).or_insert(0.0) += db;
        }
    }
    mute.extend(v.mute.iter().filter_map(key));
    if let Some(o) = &v.only {
        only = Some(o.iter().filter_map(key).collect());
    }
    // The TV preset's presence dip; the user's own `insert` list replaces it.
    let insert = if name == "tv" && v.insert.is_empty() {
        tv_presence_dip(graph)
    } else {
        v.insert.clone()
    };
    let fold_down = match (&v.fold_down, name) {
        (Some(f), _) => Some(FoldDown::resolve(f)),
        (None, "fold_down") => Some(FoldDown::resolve(&FoldDownSpec::default())),
        (None, _) => None,
    };
    let description = match &fold_down {
        Some(f) if name == "fold_down" => format!("{description} ({})", f.describe()),
        Some(f) => format!("{description}, folded down to stereo ({})", f.describe()),
        None => description,
    };
    let clean = match (&v.clean, name) {
        (Some(c), _) => Some(Clean::resolve(c)),
        (None, "clean") => Some(Clean::resolve(&CleanSpec::default())),
        (None, _) => None,
    };
    let description = match &clean {
        Some(c) => format!("{description}: {}", c.describe()),
        None => description,
    };
    let output = v.output.unwrap_or(output);
    // Groups belong to a stems output: the spec's own, or the `dme` preset's.
    let groups = match (&v.groups, name) {
        (Some(g), _) => Some(g.clone()),
        (None, "dme") => Some(default_dme_groups()),
        (None, _) => None,
    }
    .filter(|_| output == OutputKind::Stems);
    Variant {
        name: name.to_string(),
        description: v.description.clone().unwrap_or(description),
        level: v.level.unwrap_or(level),
        output,
        gains,
        mute,
        only,
        insert,
        replace: v.replace.clone(),
        fold_down,
        amount_mode: v.amount_mode.unwrap_or_default(),
        remix: v.remix.unwrap_or(false) && output == OutputKind::Stems,
        live: (output == OutputKind::Live).then(|| crate::live::Live::resolve(v.live.as_ref())),
        clean,
        groups,
    }
}

/// The `tv` preset's dip: a gentle bell cut in the presence range where the
/// dialogue sits.
pub const TV_DIP_HZ: f64 = 2500.0;
pub const TV_DIP_DB: f64 = -3.0;
pub const TV_DIP_Q: f64 = 0.7;

/// On the `music` bus if there is one, else on every non-vocal, non-dialogue role.
fn tv_presence_dip(graph: &Graph) -> Vec<crate::model::InsertOverride> {
    let dip = NodeSpec {
        id: Some("tv_presence_dip".into()),
        kind: NodeKind::Peak {
            freq_hz: TV_DIP_HZ,
            gain_db: TV_DIP_DB,
            q: TV_DIP_Q,
        },
    };
    let targets: Vec<String> = if graph.buses.contains_key("music") {
        vec!["bus:music".into()]
    } else {
        Role::ALL
            .iter()
            .filter(|r| !r.is_vocal() && **r != Role::Dialogue && !r.is_live_only())
            .map(|r| format!("role:{r}"))
            .collect()
    };
    targets
        .into_iter()
        .map(|target| crate::model::InsertOverride {
            target,
            at: InsertAt::End,
            nodes: vec![dip.clone()],
        })
        .collect()
}

/// All variants of a spec, resolved, in name order.
pub fn variants(spec: &Spec) -> Vec<Variant> {
    spec.variants
        .iter()
        .map(|(n, v)| resolve_variant(n, v, &spec.graph))
        .collect()
}

/// A title's processing for one variant: everything the engine needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TitleGraph {
    /// The LFE low-pass each stem passes through first (5.1 titles).
    pub lfe_low_pass: Option<NodeSpec>,
    pub stems: Vec<StemPath>,
    pub buses: Vec<BusPath>,
    /// Always contains exactly one `loudness` node.
    pub master: Vec<NodeSpec>,
    /// A fold-down variant: the master folded to stereo, then this stage.
    pub fold_down: Option<FoldPath>,
}

/// After the master: the fold to stereo, its own gain (the fold-down's
/// level; see [`crate::manifest::LevelRecord::fold_down_gain_db`]), then
/// `chain` (the limiter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldPath {
    pub coefficients: FoldDown,
    pub chain: Vec<NodeSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StemPath {
    /// Index into the title's stems.
    pub index: usize,
    pub role: Role,
    /// Role chain, then the stem's own chain, then variant inserts.
    pub chain: Vec<NodeSpec>,
    /// Variant gain for this stem's role, dB.
    pub gain_db: f64,
    pub muted: bool,
    /// Index into `buses`, or `None` for straight to master.
    pub bus: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusPath {
    pub name: String,
    pub chain: Vec<NodeSpec>,
    pub gain_db: f64,
    pub muted: bool,
}

impl TitleGraph {
    /// True when every node is linear: loudness then scales exactly with gain.
    pub fn is_linear(&self) -> bool {
        self.stems
            .iter()
            .flat_map(|s| &s.chain)
            .chain(self.buses.iter().flat_map(|b| &b.chain))
            .chain(&self.master)
            .chain(self.fold_down.iter().flat_map(|f| &f.chain))
            .all(|n| n.kind.is_linear())
    }

    /// True when at least one stem sounds.
    pub fn is_audible(&self) -> bool {
        self.stems
            .iter()
            .any(|s| !s.muted && s.bus.is_none_or(|b| !self.buses[b].muted))
    }
}

/// Builds the graph for one title under one variant.
pub fn title_graph(graph: &Graph, title: &Title, variant: &Variant) -> TitleGraph {
    let bus_names: Vec<&String> = graph.buses.keys().collect();
    let bus_of = |role: Role| graph.buses.values().position(|b| b.roles.contains(&role));
    let sounds = |key: &str| -> bool {
        !variant.mute.contains(key) && variant.only.as_ref().is_none_or(|o| o.contains(key))
    };

    let mut buses: Vec<BusPath> = graph
        .buses
        .iter()
        .map(|(name, b)| {
            let key = format!("bus:{name}");
            BusPath {
                name: name.clone(),
                chain: b.chain.clone(),
                gain_db: variant.gains.get(&key).copied().unwrap_or(0.0),
                // A bus named in `only` keeps all its roles; a bus not named
                // is not muted by `only` itself (its roles decide).
                muted: variant.mute.contains(&key),
            }
        })
        .collect();

    let mut stems: Vec<StemPath> = title
        .stems
        .iter()
        .enumerate()
        .map(|(index, s)| {
            let key = format!("role:{}", s.role);
            let bus = bus_of(s.role);
            let bus_in_only = bus.is_some_and(|b| {
                variant
                    .only
                    .as_ref()
                    .is_some_and(|o| o.contains(&format!("bus:{}", bus_names[b])))
            });
            let mut chain = graph
                .roles
                .get(&s.role)
                .map(|c| c.chain.clone())
                .unwrap_or_default();
            chain.extend(s.chain.iter().cloned());
            StemPath {
                index,
                role: s.role,
                chain,
                gain_db: variant.gains.get(&key).copied().unwrap_or(0.0),
                // Click and guide sound in live outputs only: a mix, a stem
                // set, any preset never contains them.
                muted: !(sounds(&key) || (bus_in_only && !variant.mute.contains(&key)))
                    || (s.role.is_live_only() && variant.output != OutputKind::Live),
                bus,
            }
        })
        .collect();

    let mut master = graph.master.chain.clone();
    if !master
        .iter()
        .any(|n| matches!(n.kind, NodeKind::Loudness {}))
    {
        // Gain into the limiter, not after it.
        let at = master
            .iter()
            .position(|n| matches!(n.kind, NodeKind::Limiter { .. }))
            .unwrap_or(master.len());
        master.insert(at, NodeSpec::new(NodeKind::Loudness {}));
    }

    for ins in &variant.insert {
        let target = Target::parse(&ins.target, graph);
        let apply = |chain: &mut Vec<NodeSpec>| match ins.at {
            InsertAt::Start => {
                chain.splice(0..0, ins.nodes.iter().cloned());
            }
            InsertAt::End => chain.extend(ins.nodes.iter().cloned()),
        };
        match target {
            Some(Target::Master) => apply(&mut master),
            Some(Target::Bus(b)) => {
                if let Some(bp) = buses.iter_mut().find(|x| x.name == b) {
                    apply(&mut bp.chain);
                }
            }
            Some(Target::Role(r)) => {
                for sp in stems.iter_mut().filter(|s| s.role == r) {
                    apply(&mut sp.chain);
                }
            }
            None => {}
        }
    }
    for rep in &variant.replace {
        let chains = stems
            .iter_mut()
            .map(|s| &mut s.chain)
            .chain(buses.iter_mut().map(|b| &mut b.chain))
            .chain(std::iter::once(&mut master));
        for chain in chains {
            let mut out = Vec::with_capacity(chain.len());
            for n in chain.drain(..) {
                if n.id.as_deref() == Some(rep.id.as_str()) {
                    if let Some(w) = &rep.with {
                        let mut w = w.clone();
                        w.id = n.id.clone();
                        out.push(w);
                    }
                } else {
                    out.push(n);
                }
            }
            *chain = out;
        }
    }

    // A clean version's duck goes last in each cleaned stem's chain (after
    // the variant's own inserts and replacements, so none removes it): like
    // a fader's automation, after the stem's processing, so no filter
    // rings into a muted range and no compressor undoes part of a duck.
    // Its times stay on the stems' timeline: the DSP chain delays its
    // ranges by the latency of the nodes before it.
    if let Some(node) = variant.clean.as_ref().and_then(|c| c.node(title)) {
        let roles = variant
            .clean
            .as_ref()
            .map(|c| c.roles.as_slice())
            .unwrap_or(&[]);
        for sp in stems.iter_mut().filter(|s| roles.contains(&s.role)) {
            sp.chain.push(node.clone());
        }
    }

    let fold_down = variant
        .fold_down
        .as_ref()
        .filter(|_| title.layout == Layout::Surround51)
        .map(|f| FoldPath {
            coefficients: f.clone(),
            chain: if f.limiter {
                vec![NodeSpec {
                    id: Some("fold_down_limiter".into()),
                    kind: NodeKind::Limiter {
                        ceiling_dbtp: None,
                        lookahead_ms: 2.0,
                        release_ms: 80.0,
                        band_limit: true,
                    },
                }]
            } else {
                Vec::new()
            },
        });
    let lfe_low_pass =
        (title.layout == Layout::Surround51 && graph.lfe.low_pass).then(|| NodeSpec {
            id: Some("lfe_low_pass".into()),
            kind: NodeKind::LowPass {
                freq_hz: graph.lfe.low_pass_hz,
                slope_db_oct: graph.lfe.slope_db_oct,
            },
        });

    TitleGraph {
        lfe_low_pass,
        stems,
        buses,
        master,
        fold_down,
    }
}

/// Whether `variant` applies to `title`: a fold-down needs a 5.1 master;
/// the built-in `clean` (on the title's own ranges) needs a title that
/// lists `explicit` ranges; M&E and DME (`me`, `dme`) need a stem of the
/// `dialogue` role (a song without dialogue has nothing to take out).
pub fn applies_to(variant: &Variant, title: &Title) -> bool {
    let folds = variant.fold_down.is_none() || title.layout == Layout::Surround51;
    let cleans = variant.name != "clean"
        || variant
            .clean
            .as_ref()
            .is_none_or(|c| c.ranges.is_some() || !title.explicit.is_empty());
    let dialogue = !DIALOGUE_VARIANTS.contains(&variant.name.as_str())
        || title.stems.iter().any(|s| s.role == Role::Dialogue);
    folds && cleans && dialogue
}

impl TitleGraph {
    /// The graph as it sounds: stems that are silent (muted, or on a muted
    /// bus) and buses nothing reaches lose their chains and gains, so two
    /// graphs that produce the same audio compare equal.
    pub fn effective(&self) -> TitleGraph {
        let mut g = self.clone();
        let sounds: Vec<bool> = g
            .stems
            .iter()
            .map(|s| !s.muted && s.bus.is_none_or(|b| !self.buses[b].muted))
            .collect();
        for (s, &on) in g.stems.iter_mut().zip(&sounds) {
            if !on {
                s.chain.clear();
                s.gain_db = 0.0;
                s.muted = true;
            }
        }
        for (b, bus) in g.buses.iter_mut().enumerate() {
            let reached = self
                .stems
                .iter()
                .zip(&sounds)
                .any(|(s, &on)| on && s.bus == Some(b));
            if !reached {
                bus.chain.clear();
                bus.gain_db = 0.0;
                bus.muted = true;
            }
        }
        g
    }
}

/// A variant that is not a version of a title, and which output it would
/// duplicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SameAs {
    /// The variant whose output this one equals (or, when only its inserts
    /// differ, would equal without them).
    pub variant: String,
    pub reason: String,
}

/// What decides whether two variants' outputs are the same files (stems
/// in groups are other files than stems per role; a live pack's options).
type OutputKey = (
    TitleGraph,
    OutputKind,
    bool,
    Option<crate::live::Live>,
    Option<BTreeMap<String, Vec<Role>>>,
);

fn output_key(graph: &Graph, title: &Title, v: &Variant) -> OutputKey {
    (
        title_graph(graph, title, v).effective(),
        v.output,
        v.remix,
        v.live.clone(),
        v.groups.clone(),
    )
}

/// For each of `candidates` (the variants a title renders, in plan order),
/// whether it is a version of the title or the same as an earlier one:
/// - its graph, as it sounds, equals an earlier variant's with the same
///   output (and level policy, or the earlier one is `full`, which every
///   matched output follows): the files would be identical;
/// - or it changes levels (mutes, `only`, gains) and none of those changes
///   reaches a stem of this title: what its name promises does not happen
///   (the `tv` preset's presence dip alone does not make a TV mix).
///
/// `full` is always a version.
pub fn same_as(graph: &Graph, title: &Title, candidates: &[&Variant]) -> Vec<Option<SameAs>> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // `full` first: everything else is compared against it.
    order.sort_by_key(|&i| candidates[i].name != "full");
    let mut versions: Vec<(&Variant, OutputKey)> = Vec::new();
    let mut out = vec![None; candidates.len()];
    for i in order {
        let v = candidates[i];
        let key = output_key(graph, title, v);
        let same_policy = |u: &Variant| u.level == v.level || u.name == "full";
        let identical = versions
            .iter()
            .find(|(u, k)| *k == key && same_policy(u))
            .map(|(u, _)| u.name.clone());
        // The variant without its processing changes, and without its
        // level changes too: equal, the level changes reach no stem.
        let mut bare = v.clone();
        bare.insert.clear();
        bare.replace.clear();
        let mut base = bare.clone();
        base.gains.clear();
        base.mute.clear();
        base.only = None;
        let base_key = output_key(graph, title, &base);
        let noop = v.changes_levels() && output_key(graph, title, &bare) == base_key;
        // A clean version with nothing to clean in this title (no range, or
        // no stem of its roles) is the plain variant under another name.
        let clean_noop = v.clean.as_ref().is_some_and(|c| {
            c.node(title).is_none() || !title.stems.iter().any(|s| c.roles.contains(&s.role))
        });
        let found = match (identical, noop) {
            (None, _) if clean_noop => {
                let mut plain = v.clone();
                plain.clean = None;
                let plain_key = output_key(graph, title, &plain);
                let u = versions
                    .iter()
                    .find(|(u, k)| *k == plain_key && same_policy(u))
                    .map_or_else(|| "full".to_string(), |(u, _)| u.name.clone());
                Some(SameAs {
                    reason: format!(
                        "{}: it would be {} without its cleaning",
                        why_noop(graph, title, v).unwrap_or_default(),
                        if u == "full" && v.output != OutputKind::Mix {
                            "the same variant's plain stems".to_string()
                        } else {
                            format!("`{u}`")
                        }
                    ),
                    variant: u,
                })
            }
            (Some(u), _) => Some(SameAs {
                reason: format!(
                    "{}: its output would be identical to `{u}`'s",
                    why_noop(graph, title, v).unwrap_or_else(|| format!(
                        "`{}` sounds the same as `{u}` for this title",
                        v.name
                    ))
                ),
                variant: u,
            }),
            (None, true) => {
                // Which version it is apart from its processing changes.
                let u = versions
                    .iter()
                    .find(|(u, k)| *k == base_key && same_policy(u))
                    .map_or_else(|| "full".to_string(), |(u, _)| u.name.clone());
                Some(SameAs {
                    reason: format!(
                        "{}: it would differ from `{u}` only by its processing changes ({})",
                        why_noop(graph, title, v).unwrap_or_default(),
                        if v.name == "tv"
                            && v.insert == tv_presence_dip(graph)
                            && v.replace.is_empty()
                        {
                            "the presence dip".to_string()
                        } else {
                            format!(
                                "{} insert(s), {} replacement(s)",
                                v.insert.len(),
                                v.replace.len()
                            )
                        }
                    ),
                    variant: u,
                })
            }
            (None, false) => None,
        };
        if v.name == "full" || found.is_none() {
            versions.push((v, key));
        } else {
            out[i] = found;
        }
    }
    out
}

/// Why a variant's level changes do nothing to a title, in words, with the
/// fix when the title has dialogue where the variant expects vocals.
fn why_noop(graph: &Graph, title: &Title, v: &Variant) -> Option<String> {
    let roles_of = |t: &str| -> Vec<Role> {
        match Target::parse(t, graph) {
            Some(Target::Role(r)) => vec![r],
            Some(Target::Bus(b)) => graph
                .buses
                .get(&b)
                .map(|x| x.roles.clone())
                .unwrap_or_default(),
            _ => vec![],
        }
    };
    let present = |t: &str| {
        roles_of(t)
            .iter()
            .any(|r| title.stems.iter().any(|s| s.role == *r))
    };
    let mut parts = Vec::new();
    let absent: Vec<String> = v
        .mute
        .iter()
        .filter(|t| !present(t))
        .map(|t| target_label(t))
        .collect();
    if !absent.is_empty() {
        parts.push(format!(
            "`{}` mutes {}, and this title has no stem of {}",
            v.name,
            absent.join(", "),
            if absent.len() == 1 {
                "that role"
            } else {
                "those roles"
            }
        ));
    }
    if let Some(o) = &v.only
        && title
            .stems
            .iter()
            .all(|s| o.iter().any(|t| roles_of(t).contains(&s.role)))
    {
        parts.push(format!(
            "`{}` keeps only {}, which is every stem of this title",
            v.name,
            o.iter()
                .map(|t| target_label(t))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (t, &db) in &v.gains {
        if db == 0.0 {
            parts.push(format!("`{}` moves {} by 0 dB", v.name, target_label(t)));
        } else if !present(t) {
            parts.push(format!(
                "`{}` moves {} by {db:+.1} dB, and this title has no {} stem",
                v.name,
                target_label(t),
                target_label(t)
            ));
        }
    }
    if let Some(c) = &v.clean {
        if c.ranges_in(title).is_empty() {
            parts.push(format!(
                "`{}` cleans the title's explicit lyrics, and this title lists no `explicit` ranges (add `explicit = [[start, end], …]` to the title, or `ranges` to `variants.{}.clean`)",
                v.name, v.name
            ));
        } else if !title.stems.iter().any(|s| c.roles.contains(&s.role)) {
            parts.push(format!(
                "`{}` cleans {}, and this title has no stem of {}",
                v.name,
                c.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if c.roles.len() == 1 {
                    "that role"
                } else {
                    "those roles"
                }
            ));
            if title.stems.iter().any(|s| s.role == Role::Dialogue) {
                parts.push(format!(
                    "the title's voice is `dialogue`: to clean it, set `variants.{}.clean.roles = [\"dialogue\"]`",
                    v.name
                ));
            }
        }
    }
    if parts.is_empty() {
        return None;
    }
    let vocal_targets = v
        .mute
        .iter()
        .chain(v.gains.keys())
        .any(|t| roles_of(t).iter().any(|r| r.is_vocal()));
    let has_dialogue = title.stems.iter().any(|s| s.role == Role::Dialogue);
    let mut text = parts.join("; ");
    if vocal_targets && has_dialogue {
        text.push_str(&format!(
            " (the title's voice is `dialogue`: {})",
            match v.name.as_str() {
                "vocal_up" | "vocal_down" => format!(
                    "to move it, set `variants.{}.roles = [\"dialogue\"]`",
                    v.name
                ),
                _ => "to take it out, use the built-in `me` variant (M&E: dialogue muted)"
                    .to_string(),
            }
        ));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::StemSpec;

    fn title(roles: &[Role]) -> Title {
        Title {
            name: "t".into(),
            reference: None,
            layout: Layout::Stereo,
            variants: None,
            edit: None,
            explicit: vec![],
            stems: roles
                .iter()
                .enumerate()
                .map(|(i, &role)| StemSpec {
                    file: format!("{i}.wav"),
                    role,
                    chain: vec![],
                })
                .collect(),
        }
    }

    fn check(roles: &[Role], specs: &[(&str, VariantSpec)]) -> Vec<Option<SameAs>> {
        let graph = Graph::default();
        let vs: Vec<Variant> = specs
            .iter()
            .map(|(n, s)| resolve_variant(n, s, &graph))
            .collect();
        let refs: Vec<&Variant> = vs.iter().collect();
        same_as(&graph, &title(roles), &refs)
    }

    #[test]
    fn versions_and_copies() {
        let d = VariantSpec::default;
        // A song with vocals: every preset is a version.
        let r = check(
            &[Role::Drums, Role::Vocals],
            &[
                ("full", d()),
                ("instrumental", d()),
                ("tv", d()),
                ("vocal_up", d()),
            ],
        );
        assert!(r.iter().all(Option::is_none), "{r:?}");
        // A 0 dB move and a custom variant that changes nothing are copies
        // of the full mix; a normalized copy of `full` too.
        let zero = VariantSpec {
            amount_db: Some(0.0),
            ..d()
        };
        let same = VariantSpec {
            gains: BTreeMap::from([("drums".to_string(), 0.0)]),
            level: Some(LevelPolicy::Normalized),
            ..d()
        };
        let r = check(
            &[Role::Drums, Role::Vocals],
            &[("full", d()), ("same", same), ("vocal_up", zero)],
        );
        assert_eq!(r[0], None);
        for x in &r[1..] {
            assert_eq!(
                x.as_ref().map(|s| s.variant.as_str()),
                Some("full"),
                "{r:?}"
            );
        }
        assert!(
            r[2].as_ref()
                .is_some_and(|s| s.reason.contains("moves vocals by 0 dB")),
            "{r:?}"
        );
        // Two variants that both mute drums: the second is a copy of the first.
        let mute = || VariantSpec {
            mute: vec!["drums".into()],
            ..d()
        };
        let r = check(
            &[Role::Drums, Role::Vocals],
            &[("full", d()), ("a", mute()), ("b", mute())],
        );
        assert_eq!(
            (r[1].clone(), r[2].as_ref().map(|s| s.variant.as_str())),
            (None, Some("a"))
        );
    }
}
