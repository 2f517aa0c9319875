//! The manifest task: judge every output against the delivery and write
//! `manifest.json`, `manifest.csv` and `report.html` (each atomically) into
//! the output folder.

use std::collections::BTreeMap;
use std::io::Write;

use deliverables_spec::compliance::{Outcome, Rule, Verdict, judge_against};
use deliverables_spec::contract::{CacheStatus, RenderedOutput, TaskState};
use deliverables_spec::delivery::Delivery;
use deliverables_spec::manifest::{
    MANIFEST_VERSION, Manifest, OutputEntry, Summary, TitleEntry, Tool,
};
use deliverables_spec::model::Title;
use deliverables_spec::plan::title_variants;
use deliverables_spec::variant::variants;
use deliverables_spec::variant::{SameAs, Variant};
use deliverables_spec::{LoadedSpec, TaskKind};

use super::analyze::AnalysisResult;
use super::render::PackResult;
use super::{DepOutcome, TaskContext, TaskError};

pub const MANIFEST_FILE: &str = "manifest.json";

pub use deliverables_spec::contract::ManifestResult;

/// A job's task outcomes in plan order, a page at a time: how the manifest
/// task reads every result without one message or allocation holding them
/// all.
pub trait OutcomePages: Sync {
    /// Outcomes after plan position `after` (`None`: from the first task),
    /// and the position to continue from when more follow.
    fn page(&self, after: Option<u32>) -> Result<OutcomePage, TaskError>;
}

/// One page of outcomes, and where to continue.
pub type OutcomePage = (Vec<PageItem>, Option<u32>);

/// One task's outcome.
#[derive(Debug, Clone)]
pub struct PageItem {
    /// Plan position.
    pub seq: u32,
    pub outcome: DepOutcome,
    /// On a title's first task: the spec of that title alone (the job's
    /// header and the title), from which its manifest entry is made.
    pub title_spec: Option<String>,
}

/// Titles per page of a catalog report; a job with at most this many
/// titles gets one self-contained `report.html`.
pub const REPORT_PAGE_TITLES: usize = 50;
/// Failed outputs the index of a catalog report lists by name.
const INDEX_FAILURES: usize = 200;
/// The folder beside `report.html` that holds a catalog report's pages.
pub const REPORT_PAGES_DIR: &str = "report";

/// Writes the manifest, the CSV and the report; with `bundle`, then the
/// pack zip at that path (see [`crate::bundle`]), whose result the
/// manifest's result carries.
pub fn write_manifest(
    ctx: &TaskContext<'_>,
    bundle: Option<&std::path::Path>,
) -> Result<ManifestResult, TaskError> {
    let pages = ctx.outcomes.ok_or_else(|| {
        TaskError::Internal("the manifest task needs the job's outcomes (no reader given)".into())
    })?;
    let d = ctx.spec.delivery();
    let head = Manifest {
        manifest_version: MANIFEST_VERSION,
        tool: Tool {
            name: "stemforge".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        job_id: ctx.job_id.to_string(),
        spec_sha256: ctx.spec.sha256.clone(),
        submitted: deliverables_spec::timestamp::rfc3339_utc(ctx.submitted_unix_ms),
        delivery: d.clone(),
        summary: Summary::default(),
        titles: vec![],
    };
    let dir = &ctx.output_dir;
    let mut w = Writers::new(dir, &head)?;
    if bundle.is_some() {
        w.bundle = Some(crate::bundle::Contents::new());
    }
    // A title's tasks are contiguous in the plan, its preflight first
    // (which brings the title's spec): one title's outcomes are held at a
    // time.
    let mut current: Option<(LoadedSpec, BTreeMap<String, DepOutcome>)> = None;
    let mut after = None;
    loop {
        ctx.check_cancel()?;
        let (items, next) = pages.page(after)?;
        for item in items {
            if item.outcome.kind.title().is_none() {
                continue;
            }
            if let Some(text) = item.title_spec {
                if let Some((spec, group)) = current.take() {
                    w.title(title_entry_of(ctx, &spec, &group)?)?;
                }
                let spec =
                    deliverables_spec::load_scoped(text, &ctx.spec.base_dir, &ctx.spec.sha256)
                        .map_err(|e| TaskError::Internal(format!("a title's spec: {e}")))?;
                current = Some((spec, BTreeMap::new()));
            }
            match &mut current {
                Some((_, group)) => {
                    group.insert(format!("{:010}", item.seq), item.outcome);
                }
                None => {
                    return Err(TaskError::Internal(format!(
                        "task {} came before its title's spec",
                        item.outcome.kind.label()
                    )));
                }
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if let Some((spec, group)) = current.take() {
        w.title(title_entry_of(ctx, &spec, &group)?)?;
    }
    let (mut result, contents) = w.finish(&head)?;
    if let (Some(path), Some(contents)) = (bundle, contents) {
        let req = crate::bundle::Request {
            path,
            output_dir: dir,
            job_id: ctx.job_id,
            origination_unix_s: ctx.origination_unix_s,
            delivery: d,
            cancel: ctx.cancel,
        };
        result.bundle = Some(crate::bundle::write(&req, &contents).map_err(bundle_error)?);
    }
    Ok(result)
}

/// A pack zip's failure in the task's failure classes: its I/O errors as
/// an output's (the same table), a changed output folder as bad input.
fn bundle_error(e: crate::bundle::BundleError) -> TaskError {
    use crate::bundle::BundleError;
    match e {
        BundleError::Io { path, source } => io_error(&path, source),
        BundleError::Cancelled => TaskError::Cancelled,
        e @ (BundleError::Zip { .. } | BundleError::Changed { .. }) => {
            TaskError::Input(e.to_string())
        }
    }
}

/// The manifest entry of the one title of `spec` (a title's own spec).
fn title_entry_of(
    ctx: &TaskContext<'_>,
    spec: &LoadedSpec,
    group: &BTreeMap<String, DepOutcome>,
) -> Result<TitleEntry, TaskError> {
    let title = spec
        .spec
        .titles
        .first()
        .ok_or_else(|| TaskError::Internal("a title's spec without its title".into()))?;
    let all = variants(&spec.spec);
    Ok(title_entry(
        ctx,
        &spec.spec,
        spec.delivery(),
        &all,
        title,
        group,
    ))
}

/// The manifest's files being written: JSON and CSV streamed to temporary
/// files title by title, the report a page of titles at a time.
struct Writers {
    dir: std::path::PathBuf,
    /// The manifest's fields but its titles and summary.
    head: Manifest,
    json: StreamedFile,
    csv: StreamedFile,
    first_title: bool,
    summary: Summary,
    /// Titles of the report page being filled.
    page: Vec<TitleEntry>,
    /// A full page waits here until the next one starts, so it knows
    /// whether a next page exists.
    pending: Option<(usize, Vec<TitleEntry>)>,
    pages: Vec<crate::report::PageEntry>,
    failures: Vec<(String, String)>,
    /// Report pages written, removed again if the manifest fails.
    written_pages: Vec<std::path::PathBuf>,
    /// What the pack zip will hold, when the job asked for one.
    bundle: Option<crate::bundle::Contents>,
}

impl Writers {
    fn new(dir: &std::path::Path, head: &Manifest) -> Result<Writers, TaskError> {
        let mut json = StreamedFile::create(&dir.join(MANIFEST_FILE))?;
        // The head of the JSON object: every field but titles and summary,
        // in the manifest's own order, pretty-printed as serde_json prints
        // the whole manifest.
        #[derive(serde::Serialize)]
        struct Head<'a> {
            manifest_version: u32,
            tool: &'a Tool,
            job_id: &'a str,
            spec_sha256: &'a str,
            submitted: &'a str,
            delivery: &'a Delivery,
        }
        let text = serde_json::to_string_pretty(&Head {
            manifest_version: head.manifest_version,
            tool: &head.tool,
            job_id: &head.job_id,
            spec_sha256: &head.spec_sha256,
            submitted: &head.submitted,
            delivery: &head.delivery,
        })
        .map_err(|e| TaskError::Internal(e.to_string()))?;
        let open = text
            .trim_end()
            .strip_suffix('}')
            .unwrap_or(&text)
            .trim_end();
        json.write(open.as_bytes())?;
        json.write(b",\n  \"titles\": [")?;
        let mut csv = StreamedFile::create(&dir.join(crate::report::CSV_FILE))?;
        csv.write(crate::report::csv_header().as_bytes())?;
        Ok(Writers {
            dir: dir.to_path_buf(),
            head: head.clone(),
            json,
            csv,
            first_title: true,
            summary: Summary::default(),
            page: Vec::new(),
            pending: None,
            pages: Vec::new(),
            failures: Vec::new(),
            written_pages: Vec::new(),
            bundle: None,
        })
    }

    fn title(&mut self, entry: TitleEntry) -> Result<(), TaskError> {
        count_title(&mut self.summary, &entry);
        let text =
            serde_json::to_string_pretty(&entry).map_err(|e| TaskError::Internal(e.to_string()))?;
        let mut block = String::with_capacity(text.len() + text.len() / 8);
        block.push_str(if self.first_title { "\n" } else { ",\n" });
        self.first_title = false;
        for (i, line) in text.lines().enumerate() {
            if i > 0 {
                block.push('\n');
            }
            block.push_str("    ");
            block.push_str(line);
        }
        self.json.write(block.as_bytes())?;
        self.csv.write(crate::report::csv_rows(&entry).as_bytes())?;
        if let Some(b) = &mut self.bundle {
            b.add_title(&entry);
        }
        self.page.push(entry);
        if self.page.len() == REPORT_PAGE_TITLES {
            let full = std::mem::take(&mut self.page);
            self.flush_pending(false)?;
            let n = self.pages.len() + usize::from(self.pending.is_some()) + 1;
            self.pending = Some((n, full));
        }
        Ok(())
    }

    fn page_href(n: usize) -> String {
        format!("{REPORT_PAGES_DIR}/page-{n:05}.html")
    }

    /// Writes the page that waited (`last`: no page follows it).
    fn flush_pending(&mut self, last: bool) -> Result<(), TaskError> {
        let Some((n, titles)) = self.pending.take() else {
            return Ok(());
        };
        let mut m = self.head_with(&titles);
        m.summary = page_summary(&titles);
        let prev = (n > 1).then(|| format!("page-{:05}.html", n - 1));
        let next = (!last).then(|| format!("page-{:05}.html", n + 1));
        let html =
            crate::report::report_page_html(&m, "../report.html", prev.as_deref(), next.as_deref());
        let href = Self::page_href(n);
        let path = self.dir.join(&href);
        write_atomically(&path, html.as_bytes())?;
        self.written_pages.push(path);
        if let Some(b) = &mut self.bundle {
            b.add_report_page(href.clone());
        }
        for t in &titles {
            for o in t
                .outputs
                .iter()
                .filter(|o| o.verdict.verdict == Outcome::Fail)
            {
                if self.failures.len() < INDEX_FAILURES {
                    let what = match (o.group.as_deref(), o.role) {
                        (Some(g), _) => format!("{} / {} / {g}", t.name, o.variant),
                        (None, Some(r)) => format!("{} / {} / {}", t.name, o.variant, r.as_str()),
                        (None, None) => format!("{} / {}", t.name, o.variant),
                    };
                    self.failures.push((href.clone(), what));
                }
            }
        }
        let s = &m.summary;
        self.pages.push(crate::report::PageEntry {
            href,
            first_title: titles.first().map(|t| t.name.clone()).unwrap_or_default(),
            last_title: titles.last().map(|t| t.name.clone()).unwrap_or_default(),
            titles: s.titles,
            titles_failed: s.titles_failed,
            outputs: s.outputs,
            passed: s.passed,
            failed: s.failed,
        });
        Ok(())
    }

    fn head_with(&self, titles: &[TitleEntry]) -> Manifest {
        Manifest {
            titles: titles.to_vec(),
            ..self.head.clone()
        }
    }

    /// Writes the report (one page, or the pages and their index), the
    /// CSV and, last, manifest.json: its appearance means the job's
    /// paperwork is complete.
    fn finish(
        mut self,
        head: &Manifest,
    ) -> Result<(ManifestResult, Option<crate::bundle::Contents>), TaskError> {
        let result = self.finish_inner(head);
        if result.is_err() {
            for p in &self.written_pages {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok((result?, self.bundle.take()))
    }

    fn finish_inner(&mut self, head: &Manifest) -> Result<ManifestResult, TaskError> {
        let s = &mut self.summary;
        s.all_pass = s.failed == 0 && s.titles_failed == 0;
        let summary = s.clone();
        let report = self.dir.join(crate::report::REPORT_FILE);
        if self.pages.is_empty() && self.pending.is_none() {
            // One page: the whole report, self-contained.
            let mut m = head.clone();
            m.summary = summary.clone();
            m.titles = std::mem::take(&mut self.page);
            write_atomically(&report, crate::report::report_html(&m).as_bytes())?;
        } else {
            if !self.page.is_empty() {
                let rest = std::mem::take(&mut self.page);
                self.flush_pending(false)?;
                let n = self.pages.len() + 1;
                self.pending = Some((n, rest));
            }
            self.flush_pending(true)?;
            let mut m = head.clone();
            m.summary = summary.clone();
            let html = crate::report::report_index_html(&m, &self.pages, &self.failures);
            write_atomically(&report, html.as_bytes())?;
        }
        let summary_json = serde_json::to_string_pretty(&summary)
            .map_err(|e| TaskError::Internal(e.to_string()))?;
        let mut tail = String::from(if self.first_title { "],\n" } else { "\n  ],\n" });
        tail.push_str("  \"summary\": ");
        for (i, line) in summary_json.lines().enumerate() {
            if i > 0 {
                tail.push_str("\n  ");
            }
            tail.push_str(line);
        }
        tail.push_str("\n}\n");
        self.json.write(tail.as_bytes())?;
        let csv = std::mem::replace(&mut self.csv, StreamedFile::none());
        csv.commit()?;
        let json = std::mem::replace(&mut self.json, StreamedFile::none());
        let path = json.commit()?;
        Ok(ManifestResult {
            manifest_path: path.display().to_string(),
            summary,
            bundle: None,
        })
    }
}

/// Adds a title to a summary: the title, its failure, its outputs and
/// their verdicts, its preflight findings.
fn count_title(s: &mut Summary, t: &TitleEntry) {
    s.titles += 1;
    if let Some(p) = &t.preflight {
        s.preflight_errors += p.errors();
        s.preflight_warnings += p.warnings();
    }
    if t.status == "failed" {
        s.titles_failed += 1;
    }
    for o in &t.outputs {
        s.outputs += 1;
        match o.verdict.verdict {
            Outcome::Pass => s.passed += 1,
            Outcome::Fail => s.failed += 1,
        }
        match o.cache {
            Some(CacheStatus::Hit) => s.outputs_from_cache += 1,
            Some(CacheStatus::Miss | CacheStatus::Off) => s.outputs_rendered += 1,
            None => {}
        }
    }
}

/// The summary of a page of titles.
fn page_summary(titles: &[TitleEntry]) -> Summary {
    let mut s = Summary::default();
    for t in titles {
        count_title(&mut s, t);
    }
    s.all_pass = s.failed == 0 && s.titles_failed == 0;
    s
}

/// A file streamed under a temporary name beside its destination, renamed
/// into place by [`StreamedFile::commit`] after an fsync; the temporary
/// file is removed on every other path (the guard drops armed).
struct StreamedFile {
    open: Option<(
        crate::output::TempFile,
        std::io::BufWriter<std::fs::File>,
        std::path::PathBuf,
    )>,
}

impl StreamedFile {
    fn none() -> StreamedFile {
        StreamedFile { open: None }
    }

    fn create(path: &std::path::Path) -> Result<StreamedFile, TaskError> {
        use crate::output::TempFile;
        let dir = path.parent().unwrap_or(std::path::Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io_error(path, e))?;
        let (guard, f) =
            TempFile::create(TempFile::name_for(path)).map_err(|e| io_error(path, e))?;
        Ok(StreamedFile {
            open: Some((guard, std::io::BufWriter::new(f), path.to_path_buf())),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), TaskError> {
        if let Some((guard, w, _)) = &mut self.open {
            w.write_all(bytes).map_err(|e| io_error(guard.path(), e))?;
        }
        Ok(())
    }

    /// fsync, rename into place, fsync the folder; returns the final path.
    fn commit(mut self) -> Result<std::path::PathBuf, TaskError> {
        let Some((guard, w, path)) = self.open.take() else {
            return Err(TaskError::Internal("file already committed".into()));
        };
        let f = w
            .into_inner()
            .map_err(|e| io_error(guard.path(), e.into_error()))?;
        f.sync_all().map_err(|e| io_error(guard.path(), e))?;
        drop(f);
        guard.persist(&path).map_err(|e| io_error(&path, e))?;
        Ok(path)
    }
}

fn io_error(path: &std::path::Path, e: std::io::Error) -> TaskError {
    TaskError::Output(crate::output::OutputError::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// One title's entry: its preflight, its analysis (or why there is none)
/// and an entry per output of every render, judged.
fn title_entry(
    _ctx: &TaskContext<'_>,
    spec: &deliverables_spec::model::Spec,
    d: &Delivery,
    all: &[Variant],
    title: &Title,
    deps: &BTreeMap<String, DepOutcome>,
) -> TitleEntry {
    // With several packs (`delivery.sample_rates`), the first listed is the
    // title's `level`; the others' notes follow, marked with their rate.
    let first_pack = d.packs()[0].filter(|_| !d.sample_rates.is_empty());
    let analysis_at = |rate: Option<u32>| {
        deps.values().find(|o| {
            matches!(&o.kind, TaskKind::Analyze { title: t, rate: r } if *t == title.name && *r == rate)
        })
    };
    let preflight_of = || {
        deps.values()
            .find(|o| matches!(&o.kind, TaskKind::Preflight { title: t } if *t == title.name))
    };
    let planned = title_variants(spec, title, all);
    let mut entry = TitleEntry {
        name: title.name.clone(),
        status: "rendered".into(),
        layout: title.layout,
        error: None,
        inputs: vec![],
        level: None,
        outputs: vec![],
        skipped: planned.skipped.clone(),
        notes: vec![],
        preflight: preflight_of().and_then(DepOutcome::result_as),
        edit: None,
    };
    let a: Option<AnalysisResult> = match analysis_at(first_pack) {
        Some(o) if o.state == TaskState::Succeeded => o.result_as(),
        Some(o) => {
            entry.status = "failed".into();
            // A skipped analysis: say why its preflight did not succeed.
            let preflight = preflight_of().filter(|p| p.state != TaskState::Succeeded);
            entry.error = Some(match preflight {
                Some(p) if o.state == TaskState::Skipped => {
                    format!("preflight {}: {}", p.state, p.error)
                }
                _ => format!("analysis {}: {}", o.state, o.error),
            });
            None
        }
        None => {
            entry.status = "failed".into();
            entry.error = Some("analysis did not run".into());
            None
        }
    };
    if let Some(a) = &a {
        entry.inputs = a.inputs.clone();
        entry.level = Some(a.level.clone());
        entry.notes = a.notes.clone();
        // Where each segment landed at the rate it was rendered (the
        // analysis refused an edit outside the programme).
        entry.edit = title
            .edit
            .as_ref()
            .map(|e| e.record(a.sample_rate, u64::MAX));
    }
    for rate in d.packs().into_iter().skip(1).flatten() {
        match analysis_at(Some(rate)).and_then(|o| o.result_as::<AnalysisResult>()) {
            Some(o) => entry
                .notes
                .extend(o.notes.iter().map(|n| format!("{rate} Hz pack: {n}"))),
            None => entry
                .notes
                .push(format!("{rate} Hz pack: the analysis did not succeed")),
        }
    }
    // Render results per pack.
    let pack_of = |k: &TaskKind| match k {
        TaskKind::Render { rate, .. } => *rate,
        _ => None,
    };
    let mut renders: Vec<&DepOutcome> = deps
        .values()
        .filter(|o| matches!(&o.kind, TaskKind::Render { title: t, .. } if *t == title.name))
        .collect();
    renders.sort_by_key(|o| (pack_of(&o.kind), o.kind.label()));
    let packs: Vec<(&DepOutcome, Option<PackResult>)> = renders
        .into_iter()
        .map(|o| (o, o.result_as::<PackResult>()))
        .collect();
    // The full mix's loudness at each output rate, for the offsets.
    let full_by_rate: BTreeMap<u32, f64> = packs
        .iter()
        .filter_map(|(_, p)| p.as_ref())
        .flat_map(|p| &p.renders)
        .filter(|r| r.variant == "full")
        .filter_map(|r| {
            let x = r.outputs.first()?;
            Some((x.file.sample_rate, x.measurement.integrated_lufs?))
        })
        .collect();
    let fallback_full = a.as_ref().and_then(|a| a.full_mix_lufs);
    // Trims a render decided on its own files: the first pack's are the
    // title's level; every pack's notes follow (marked with their rate when
    // there are several).
    for (o, pack) in &packs {
        let Some(c) = pack.as_ref().and_then(|p| p.ceiling.as_ref()) else {
            continue;
        };
        let rate = pack_of(&o.kind);
        if rate == first_pack
            && let (Some(level), Some(full)) = (entry.level.as_mut(), c.families.get("full"))
        {
            level.ceiling_trim_db = full.ceiling_trim_db;
            level.variant_trims_db = full.variant_trims_db.clone();
            level.trim_rule = Some(full.trim_rule.clone());
            level.output_true_peaks_dbtp = full.output_true_peaks_dbtp.clone();
            level.render_passes = Some(c.passes);
        }
        entry.notes.extend(
            c.notes
                .iter()
                .map(|n| match rate.filter(|_| rate != first_pack) {
                    Some(r) => format!("{r} Hz pack: {n}"),
                    None => n.clone(),
                }),
        );
    }
    for (o, pack) in packs {
        let TaskKind::Render { variants, .. } = &o.kind else {
            continue;
        };
        // Variants in name order within a pack, as the report lists them.
        let mut names: Vec<&String> = variants.iter().collect();
        names.sort();
        for variant in names {
            let v = all.iter().find(|x| &x.name == variant);
            let description = v.map(|v| v.description.clone()).unwrap_or_default();
            let same_as = planned.duplicates.get(variant);
            match pack
                .as_ref()
                .and_then(|p| p.renders.iter().find(|r| &r.variant == variant))
            {
                Some(r) => {
                    for out in r.outputs.iter().cloned() {
                        let full_lufs = full_by_rate
                            .get(&out.file.sample_rate)
                            .copied()
                            .or(fallback_full);
                        entry.outputs.push(output_entry(
                            d,
                            out,
                            &description,
                            full_lufs,
                            same_as.cloned(),
                        ));
                    }
                }
                None => {
                    // One entry per file the render would have written (a stem
                    // set is several), so the summary counts every file.
                    let rate = pack_of(&o.kind).or(d.packs()[0]).unwrap_or(48_000);
                    type Labels = (Option<deliverables_spec::model::Role>, Option<String>);
                    let roles: Vec<Labels> = match v {
                        Some(v) => {
                            deliverables_spec::outputs::title_outputs(spec, d, title, v, rate)
                                .into_iter()
                                .map(|p| (p.role, p.group))
                                .collect()
                        }
                        None => vec![(None, None)],
                    };
                    let roles = if roles.is_empty() {
                        vec![(None, None)]
                    } else {
                        roles
                    };
                    for (role, group) in roles {
                        let mut e = missing_output(
                            d,
                            variant,
                            description.clone(),
                            v.map_or(deliverables_spec::LevelPolicy::Matched, |v| v.level),
                            o,
                            same_as.cloned(),
                        );
                        e.role = role;
                        e.group = group;
                        entry.outputs.push(e);
                    }
                }
            }
        }
    }
    entry
}

/// A rendered file's entry: what was measured, judged by its rule.
fn output_entry(
    d: &Delivery,
    out: RenderedOutput,
    description: &str,
    full_lufs: Option<f64>,
    same_as: Option<SameAs>,
) -> OutputEntry {
    let target = d.loudness_target(out.measurement.dialogue.as_ref().map(|x| x.share));
    let rule = Rule::of(out.level_policy, out.remix);
    // A live-playback file is held to its pack's headroom, not to the
    // delivery; click/guide and the interleave (its channels are the
    // judged files) are reported.
    let verdict = match &out.live {
        Some(l) => deliverables_spec::compliance::judge_live(
            l.headroom_dbtp,
            l.untouched,
            !l.channels.is_empty(),
            &out.measurement,
        ),
        None => judge_against(rule, d, &target, &out.measurement),
    };
    let effective_change_db = match out.level_changes.as_slice() {
        [one] => one.effective_change_db,
        _ => None,
    };
    OutputEntry {
        variant: out.variant,
        description: description.to_string(),
        role: out.role,
        group: out.group,
        file: Some(out.file),
        level_policy: out.level_policy,
        gain_db: Some(out.gain_db),
        ceiling_trim_db: Some(out.ceiling_trim_db),
        fold_down_gain_db: out.fold_down_gain_db,
        mode: out.mode,
        target_lufs: target.target_lufs,
        tolerance_lu: target.tolerance_lu,
        true_peak_max_dbtp: d.true_peak_max_dbtp,
        offset_from_full_lu: out
            .measurement
            .integrated_lufs
            .zip(full_lufs)
            .map(|(x, f)| ((x - f) * 1000.0).round() / 1000.0),
        measurement: Some(out.measurement),
        stems_trim_db: out.stems_trim_db,
        remix: out.remix,
        effective_change_db,
        level_changes: out.level_changes,
        live: out.live,
        same_as,
        cache: Some(out.cache.as_ref().map_or(CacheStatus::Off, |c| c.status)),
        // With the cache off the job is the manifest's own: not repeated,
        // so the same render in two jobs gives the same entries.
        source_job: out
            .cache
            .filter(|c| c.status != CacheStatus::Off)
            .map(|c| c.job),
        verdict,
    }
}

/// The entry of a render that did not succeed: failed, with its reason.
fn missing_output(
    d: &Delivery,
    variant: &str,
    description: String,
    policy: deliverables_spec::LevelPolicy,
    o: &DepOutcome,
    same_as: Option<SameAs>,
) -> OutputEntry {
    OutputEntry {
        variant: variant.to_string(),
        description,
        role: None,
        group: None,
        file: None,
        level_policy: policy,
        gain_db: None,
        ceiling_trim_db: None,
        fold_down_gain_db: None,
        mode: deliverables_spec::contract::RenderMode::Mix,
        target_lufs: d.target_lufs,
        tolerance_lu: d.tolerance_lu,
        true_peak_max_dbtp: d.true_peak_max_dbtp,
        measurement: None,
        offset_from_full_lu: None,
        stems_trim_db: None,
        remix: false,
        effective_change_db: None,
        level_changes: Vec::new(),
        live: None,
        same_as,
        cache: None,
        source_job: None,
        verdict: Verdict::failed(
            "the output must be rendered",
            format!(
                "render {}: {}",
                o.state,
                if o.error.is_empty() {
                    "see the analysis error"
                } else {
                    &o.error
                }
            ),
        ),
    }
}

/// Writes a small file: temporary name, fsync, rename. On any error after
/// the temporary file exists (write, fsync, rename) it is removed
/// ([`crate::output::TempFile`] drops it unless the rename succeeded). Errors keep their
/// `io::Error`, so its class decides the retry.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<(), TaskError> {
    let io = |source: std::io::Error| {
        TaskError::Output(crate::output::OutputError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    use crate::output::TempFile;
    let (tmp, mut f) = TempFile::create(TempFile::name_for(path)).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    tmp.persist(path).map_err(io)
}
