//! Planning: spec → per-title task DAG (preflight → analysis → renders) →
//! job manifest.
//!
//! A pure, deterministic function. Task ids are content-addressed: the hash of
//! everything that determines the task's output (tool version, inputs'
//! fingerprints, graph, variant, delivery), so an unchanged task keeps its id
//! across submissions — the basis for caching and incremental re-renders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::delivery::Delivery;
use crate::model::{IdenticalVariants, OutputKind, Spec, Title};
use crate::variant::{SameAs, Variant, same_as, title_graph, variants};

/// What a task does. Serialised into the task record and sent to workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskKind {
    /// Check a title's stems (and reference) before anything is rendered.
    Preflight { title: String },
    /// Decode a title, find its master gain, hash its inputs. `rate` is set
    /// when the spec asks for a pack per rate (`delivery.sample_rates`).
    Analyze {
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<u32>,
    },
    /// Render variants of a title (mixes, sets of stems) in one pass over
    /// its stems, at `rate` as its analysis. The plan gives each title's
    /// pack one task with every variant it renders: the stem chains run
    /// once for all of them.
    Render {
        title: String,
        variants: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<u32>,
    },
    /// Judge every output against the delivery and write the job manifest;
    /// with `bundle` (an absolute path, set at submission), also the pack
    /// zip there. Absent from the JSON when not asked, so a job without a
    /// bundle plans and serialises exactly as before.
    Manifest {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bundle: Option<String>,
    },
}

impl TaskKind {
    /// The title the task works on (`None`: the job-wide manifest).
    pub fn title(&self) -> Option<&str> {
        match self {
            TaskKind::Preflight { title }
            | TaskKind::Analyze { title, .. }
            | TaskKind::Render { title, .. } => Some(title),
            TaskKind::Manifest { .. } => None,
        }
    }

    pub fn label(&self) -> String {
        match self {
            TaskKind::Preflight { title } => format!("preflight {title}"),
            TaskKind::Analyze { title, rate } => format!("analyze {title}{}", at(*rate)),
            TaskKind::Render {
                title,
                variants,
                rate,
            } => match variants.as_slice() {
                [one] => format!("render {title}/{one}{}", at(*rate)),
                many => format!("render {title}/pack ({} variants){}", many.len(), at(*rate)),
            },
            TaskKind::Manifest { .. } => "manifest".to_string(),
        }
    }
}

/// ` @ 48000 Hz` for a task of one pack among several, else nothing.
fn at(rate: Option<u32>) -> String {
    rate.map(|r| format!(" @ {r} Hz")).unwrap_or_default()
}

/// When a task may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunWhen {
    /// Every dependency succeeded (a failed one skips this task).
    DepsSucceeded,
    /// Every dependency finished, however.
    DepsFinished,
    /// Every other task of the job finished, however: the job's manifest,
    /// which reports failures. It lists no dependencies, so its record does
    /// not grow with the job.
    JobFinished,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedTask {
    pub id: String,
    pub kind: TaskKind,
    pub deps: Vec<String>,
    pub run_when: RunWhen,
    /// Relative cost, for progress display.
    pub weight: f64,
}

/// An output the plan leaves out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedOutput {
    pub title: String,
    pub variant: String,
    pub reason: String,
    /// Set when the variant is not a version of the title: the variant
    /// whose output it would duplicate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub spec_sha256: String,
    pub tasks: Vec<PlannedTask>,
    pub skipped: Vec<SkippedOutput>,
}

/// SHA-256 of spec text, hex.
pub fn spec_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn content_id(parts: &[&serde_json::Value]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        // serde_json writes maps in key order here (BTreeMap / struct order).
        h.update(p.to_string().as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// A title's variants: what is rendered, what is not and why.
#[derive(Debug, Clone)]
pub struct TitleVariants<'a> {
    /// Variants rendered for this title, in spec order.
    pub keep: Vec<&'a Variant>,
    pub skipped: Vec<SkippedOutput>,
    /// Variants among `keep` that are not versions of the title, written
    /// because the spec says `identical_variants = "write"`.
    pub duplicates: BTreeMap<String, SameAs>,
}

/// Which variants a title renders: those it selects (`variants` of the
/// title; every one when it selects none) that apply to it. A variant the
/// title does not select, and a fold-down for a stereo title, is not a loss:
/// it is not listed. Silent variants are skipped; variants that are
/// not versions of the title ([`same_as`]) are skipped or written as the
/// delivery says.
pub fn title_variants<'a>(spec: &Spec, title: &Title, all: &'a [Variant]) -> TitleVariants<'a> {
    let mut audible = Vec::new();
    let mut skipped = Vec::new();
    let selected = |v: &Variant| {
        title
            .variants
            .as_ref()
            .is_none_or(|names| names.contains(&v.name))
    };
    for v in all
        .iter()
        .filter(|v| selected(v) && crate::variant::applies_to(v, title))
    {
        if title_graph(&spec.graph, title, v).is_audible() {
            audible.push(v);
        } else {
            skipped.push(SkippedOutput {
                title: title.name.clone(),
                variant: v.name.clone(),
                reason: format!(
                    "every stem of this title is muted in `{}` ({})",
                    v.name, v.description
                ),
                same_as: None,
            });
        }
    }
    let write = spec.delivery.identical_variants.unwrap_or_default() == IdenticalVariants::Write;
    let mut keep = Vec::new();
    let mut duplicates = BTreeMap::new();
    for (v, found) in audible.iter().zip(same_as(&spec.graph, title, &audible)) {
        match found {
            None => keep.push(*v),
            Some(s) if write => {
                keep.push(*v);
                duplicates.insert(v.name.clone(), s);
            }
            Some(s) => skipped.push(SkippedOutput {
                title: title.name.clone(),
                variant: v.name.clone(),
                reason: format!(
                    "not a version of this title: {} (set `delivery.identical_variants = \"write\"` to deliver it anyway)",
                    s.reason
                ),
                same_as: Some(s.variant),
            }),
        }
    }
    TitleVariants {
        keep,
        skipped,
        duplicates,
    }
}

/// Plans a validated spec. `fingerprints` maps each input path (as written in
/// the spec) to its fingerprint.
pub fn plan(
    spec: &Spec,
    spec_sha256: &str,
    fingerprints: &BTreeMap<String, String>,
    tool_version: &str,
) -> Plan {
    let d = Delivery::of(spec);
    let delivery = json(&d);
    let graph = json(&spec.graph);
    let all = variants(spec);
    let all_json = json(&all);
    let version = json(&tool_version);
    let preflight = json(&spec.preflight);
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();

    for title in &spec.titles {
        let inputs: BTreeMap<&str, &str> = title
            .stems
            .iter()
            .map(|s| s.file.as_str())
            .chain(title.reference.as_deref())
            .map(|f| (f, fingerprints.get(f).map(String::as_str).unwrap_or("")))
            .collect();
        let preflight_kind = TaskKind::Preflight {
            title: title.name.clone(),
        };
        let preflight_id = content_id(&[
            &version,
            &json(&preflight_kind),
            &json(title),
            &json(&inputs),
            &preflight,
            &json(&spec.delivery.sample_rate),
        ]);
        let stems_weight = title.stems.len() as f64;
        tasks.push(PlannedTask {
            id: preflight_id.clone(),
            kind: preflight_kind,
            deps: vec![],
            run_when: RunWhen::DepsSucceeded,
            weight: 0.5 * stems_weight,
        });
        let TitleVariants {
            keep,
            skipped: skip,
            ..
        } = title_variants(spec, title, &all);
        skipped.extend(skip);
        // One analysis and one set of renders per pack (per rate when the
        // spec lists several; `rate` stays unset for a single pack).
        let several = !d.sample_rates.is_empty();
        for pack in d.packs() {
            let rate = pack.filter(|_| several);
            let analyze_kind = TaskKind::Analyze {
                title: title.name.clone(),
                rate,
            };
            // Analysis sees every variant: the clip safety looks at all outputs.
            let analyze_id = content_id(&[
                &version,
                &json(&analyze_kind),
                &json(&preflight_id),
                &json(title),
                &json(&inputs),
                &graph,
                &all_json,
                &delivery,
            ]);
            tasks.push(PlannedTask {
                id: analyze_id.clone(),
                kind: analyze_kind,
                deps: vec![preflight_id.clone()],
                run_when: RunWhen::DepsSucceeded,
                weight: 2.0 * stems_weight,
            });
            if keep.is_empty() {
                continue;
            }
            let kind = TaskKind::Render {
                title: title.name.clone(),
                variants: keep.iter().map(|v| v.name.clone()).collect(),
                rate,
            };
            let id = content_id(&[
                &version,
                &json(&kind),
                &json(&analyze_id),
                &json(&keep),
                &delivery,
            ]);
            let outputs: f64 = keep
                .iter()
                .map(|v| match v.output {
                    OutputKind::Mix => 1.0,
                    OutputKind::Stems | OutputKind::Live => 1.5,
                })
                .sum();
            tasks.push(PlannedTask {
                id,
                kind,
                deps: vec![analyze_id.clone()],
                run_when: RunWhen::DepsSucceeded,
                weight: stems_weight * 0.5 + outputs,
            });
        }
    }
    let mut deps: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    deps.dedup();
    let manifest_id = content_id(&[
        &version,
        &json(&TaskKind::Manifest { bundle: None }),
        &json(&deps),
        &json(&spec_sha256),
    ]);
    tasks.push(PlannedTask {
        id: manifest_id,
        kind: TaskKind::Manifest { bundle: None },
        deps: vec![],
        run_when: RunWhen::JobFinished,
        weight: 0.2,
    });
    Plan {
        spec_sha256: spec_sha256.to_string(),
        tasks,
        skipped,
    }
}
