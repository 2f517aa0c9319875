//! Variants: built-in presets merged with what the spec says, resolved against
//! a title's stems into per-stem and per-bus gains, mutes and chains.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{
    FoldDownSpec, Graph, InsertAt, Layout, LevelPolicy, NodeKind, NodeSpec, OutputKind, Role, Spec,
    Title, VariantSpec,
};

pub const BUILTIN_VARIANTS: [&str; 8] = [
    "full",
    "instrumental",
    "acappella",
    "tv",
    "vocal_up",
    "vocal_down",
    "stems",
    "fold_down",
];

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
    Variant {
        name: name.to_string(),
        description: v.description.clone().unwrap_or(description),
        level: v.level.unwrap_or(level),
        output: v.output.unwrap_or(output),
        gains,
        mute,
        only,
        insert,
        replace: v.replace.clone(),
        fold_down,
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
            .filter(|r| !r.is_vocal() && **r != Role::Dialogue)
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
                muted: !(sounds(&key) || (bus_in_only && !variant.mute.contains(&key))),
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

/// Whether `variant` applies to `title`: a fold-down needs a 5.1 master.
pub fn applies_to(variant: &Variant, title: &Title) -> bool {
    variant.fold_down.is_none() || title.layout == Layout::Surround51
}
