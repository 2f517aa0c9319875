//! What the coordinator's automations show of themselves: each schedule and
//! each hot folder keeps its current view here, and the operator surfaces
//! (`ListSchedules`, `ListWatchFolders`, the dashboard) read it. Views are
//! small and bounded by the configuration (one per configured schedule or
//! folder), never by the number of jobs or titles.

use std::sync::Mutex;

/// One `[[schedules]]` entry as the operator sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleView {
    pub name: String,
    /// The cron expression as configured.
    pub cron: String,
    /// IANA time-zone name the expression is read in.
    pub time_zone: String,
    /// The spec file or catalog folder submitted.
    pub spec: String,
    pub priority: i32,
    pub label: String,
    /// `once` or `skip`: what a run missed while the coordinator was down does.
    pub missed: String,
    /// The scheduled time of the last run (Unix ms), if any.
    pub last_run_ms: Option<i64>,
    /// The job the last run submitted.
    pub last_job: Option<String>,
    /// The next scheduled time (Unix ms).
    pub next_run_ms: Option<i64>,
    /// Why the last run did not submit, if it did not.
    pub last_error: Option<String>,
}

/// One `[[watch]]` folder as the operator sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchView {
    /// The watched folder.
    pub folder: String,
    /// The spec template titles dropped there are rendered with.
    pub template: String,
    pub settle_s: f64,
    /// `notify` (file-system events) or `poll`.
    pub mode: String,
    /// Title folders submitted since the coordinator started watching.
    pub submitted: u32,
    /// Title folders seen but not yet settled.
    pub waiting: u32,
    /// Title folders that failed their check and wait for a change.
    pub rejected: u32,
    pub last_scan_ms: Option<i64>,
    pub last_submit_ms: Option<i64>,
    pub last_job: Option<String>,
    pub last_error: Option<String>,
}

/// The live views, owned by the coordinator.
#[derive(Debug, Default)]
pub struct Automations {
    schedules: Mutex<Vec<ScheduleView>>,
    watches: Mutex<Vec<WatchView>>,
}

impl Automations {
    pub fn schedules(&self) -> Vec<ScheduleView> {
        self.schedules.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn watches(&self) -> Vec<WatchView> {
        self.watches.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Replaces (by name) or adds a schedule's view.
    pub fn put_schedule(&self, view: ScheduleView) {
        if let Ok(mut v) = self.schedules.lock() {
            match v.iter_mut().find(|s| s.name == view.name) {
                Some(s) => *s = view,
                None => v.push(view),
            }
        }
    }

    /// Replaces (by folder) or adds a hot folder's view.
    pub fn put_watch(&self, view: WatchView) {
        if let Ok(mut v) = self.watches.lock() {
            match v.iter_mut().find(|w| w.folder == view.folder) {
                Some(w) => *w = view,
                None => v.push(view),
            }
        }
    }
}
