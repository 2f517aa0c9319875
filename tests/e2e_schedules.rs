//! `[[schedules]]` end to end, with a real `stemforge coordinator` process:
//! a schedule whose slot is a few seconds ahead (a daily 6-field cron with
//! seconds, so it fires once in the test's life) fires once, its job
//! renders, and restarts — clean, after SIGKILL, and after a crash between
//! claiming the slot and recording its job — never make a second job for
//! the slot; slots missed while the coordinator was down run once
//! (`missed = "once"`) or are skipped (`"skip"`); a slot claimed before a
//! crash whose job never got submitted is submitted once at restart;
//! a spec that cannot be read is the schedule's recorded error, not the
//! coordinator's end; `stemforge schedules` lists last and next runs
//! (behind the client token); a bad schedule refuses to start, naming the
//! field.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use stemforge_testkit::cluster::Cluster;
use stemforge_testkit::signal::{sine, white};
use stemforge_testkit::{text, write_wav24};

const CLIENT_TOKEN: &str = "client-5c1d7e2f9a3b4c6d8e0f1a2b3c4d5e6f";
const WORKER_TOKEN: &str = "worker-6d2e8f3a0b4c5d7e9f1a2b3c4d5e6f70";
const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A daily cron (UTC) at the whole second `lead_s` to `lead_s + 1` seconds
/// from now, and that slot in Unix ms.
fn daily_soon(lead_s: i64) -> (String, i64) {
    let slot_s = now_ms() / 1000 + lead_s + 1;
    let sod = slot_s.rem_euclid(86_400);
    let cron = format!("{} {} {} * * *", sod % 60, (sod / 60) % 60, sod / 3600);
    (cron, slot_s * 1000)
}

/// `THH:MM:SS+00:00`: how a job's label ends for a slot in UTC.
fn label_time(slot_ms: i64) -> String {
    let sod = (slot_ms / 1000).rem_euclid(86_400);
    // Whole minutes are written without seconds (`02:00+00:00`).
    if sod % 60 == 0 {
        return format!("T{:02}:{:02}+00:00", sod / 3600, (sod / 60) % 60);
    }
    format!(
        "T{:02}:{:02}:{:02}+00:00",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// A catalog folder holding one 2 s title folder (drums and vocals).
fn write_catalog(dir: &Path) -> PathBuf {
    let title = dir.join("catalog/Tiny");
    std::fs::create_dir_all(&title).expect("mkdir");
    let n = 2 * 48_000;
    let drums: Vec<f64> = (0..n)
        .map(|i| 0.2 * white(i as u64, 7 << 40) * (1.0 - (i % 12_000) as f64 / 12_000.0))
        .collect();
    write_wav24(&title.join("drums.wav"), 48_000, &[drums.clone(), drums]);
    let vox = sine(330.0, 48_000, n, 0.2);
    write_wav24(&title.join("vocals.wav"), 48_000, &[vox.clone(), vox]);
    dir.join("catalog")
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.to_str().expect("utf-8 path"))
}

/// Settings as (variable, value) pairs.
type Vars = Vec<(String, String)>;
/// A client's settings, as `Cluster::cli_env` takes them.
type ClientVars = Vec<(&'static str, String)>;

/// The cluster's token settings, and the client's.
fn tokens(dir: &Path) -> (Vars, ClientVars) {
    let c = dir.join("client.token");
    let w = dir.join("worker.token");
    std::fs::write(&c, format!("{CLIENT_TOKEN}\n")).expect("write token");
    std::fs::write(&w, format!("{WORKER_TOKEN}\n")).expect("write token");
    let cluster = vec![
        (
            "STEMFORGE_CLIENT_TOKEN_FILE".to_string(),
            c.display().to_string(),
        ),
        (
            "STEMFORGE_WORKER_TOKEN_FILE".to_string(),
            w.display().to_string(),
        ),
    ];
    let client = vec![("STEMFORGE_CLIENT_TOKEN_FILE", c.display().to_string())];
    (cluster, client)
}

/// `stemforge schedules --json`, by name.
fn schedules(c: &Cluster, env: &[(&str, String)]) -> Option<Vec<Value>> {
    let o = c.cli_env(&["schedules", "--json"], env);
    if !o.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&o.stdout).expect("schedules --json prints JSON");
    v.as_array().cloned()
}

fn schedule<'a>(list: &'a [Value], name: &str) -> &'a Value {
    list.iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no schedule {name} in {list:?}"))
}

/// Every job (`status --json`) whose label starts with `NAME @ `.
fn jobs_of(c: &Cluster, name: &str, env: &[(&str, String)]) -> Vec<Value> {
    let o = c.cli_env(&["status", "--json"], env);
    assert!(o.status.success(), "{}\n{}", text(&o), c.logs());
    let all: Value = serde_json::from_slice(&o.stdout).expect("status --json");
    let prefix = format!("{name} @ ");
    all.as_array()
        .expect("a list of jobs")
        .iter()
        .filter(|j| j["label"].as_str().is_some_and(|l| l.starts_with(&prefix)))
        .cloned()
        .collect()
}

/// Rewrites a schedule's durable row as a crash would have left it.
fn tamper(data_dir: &Path, sql: &str) {
    let db = rusqlite::Connection::open(data_dir.join("schedules.sqlite")).expect("open db");
    let n = db.execute(sql, []).expect("update");
    assert_eq!(n, 1, "{sql}");
}

#[test]
fn a_schedule_fires_once_at_its_slot_across_restarts() {
    let b = Cluster::builder("schedules-once");
    let dir = b.dir().to_path_buf();
    let catalog = write_catalog(&dir);
    let out = dir.join("out");
    let (soon_cron, slot) = daily_soon(10);
    let config = dir.join("stemforge-schedules.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[schedules]]
name = "soon"
cron = "{soon_cron}"
time_zone = "UTC"
spec = {}
output_dir = {}
priority = 7

[[schedules]]
name = "nightly-catalog"
cron = "0 2 * * *"
time_zone = "Europe/London"
spec = "catalog"
missed = "skip"
"#,
            toml_path(&catalog),
            toml_path(&out)
        ),
    )
    .expect("write config");
    let (cluster_env, client) = tokens(&dir);
    let mut c = b
        .envs(cluster_env)
        .args(&["--config", config.to_str().expect("utf-8")])
        .start()
        .expect("coordinator starts");
    c.start_worker("w1");

    // ListSchedules is a Jobs call: the client token is required.
    let o = c.cli(&["schedules"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("UNAUTHENTICATED"),
        "{}",
        text(&o)
    );
    let list = schedules(&c, &client).expect("schedules");
    assert_eq!(schedule(&list, "soon")["next_run_unix_ms"], slot);
    let nightly = schedule(&list, "nightly-catalog");
    assert!(
        nightly["next_run"]
            .as_str()
            .is_some_and(|t| t.ends_with("T02:00+00:00")),
        "{nightly}"
    );
    // A relative spec is read against the config file's folder.
    assert_eq!(nightly["spec"], catalog.display().to_string());
    assert_eq!(nightly["last_run_unix_ms"], Value::Null);

    // The slot fires: one job, labelled with the slot, and it renders.
    let job = c.wait_for("the scheduled job", Duration::from_secs(60), || {
        jobs_of(&c, "soon", &client).into_iter().next()
    });
    let id = job["job_id"].as_str().expect("job id").to_string();
    assert!(
        job["label"]
            .as_str()
            .is_some_and(|l| l.ends_with(&label_time(slot))),
        "{job}"
    );
    assert_eq!(job["priority"], 7);
    let st = c.wait_job_env(&id, Duration::from_secs(120), &client);
    assert_eq!(st["state"], "succeeded", "{st:#}\n{}", c.logs());
    assert!(out.join("manifest.json").is_file());
    let list = c.wait_for("the run recorded", Duration::from_secs(10), || {
        schedules(&c, &client).filter(|l| schedule(l, "soon")["last_job_id"] == id.as_str())
    });
    let soon = schedule(&list, "soon");
    assert_eq!(soon["last_run_unix_ms"], slot);
    assert_eq!(soon["next_run_unix_ms"], slot + DAY_MS);
    assert_eq!(soon["last_error"], "");
    let table = c.cli_env(&["schedules"], &client);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        table.contains("soon") && table.contains(&id) && table.contains("(Europe/London)"),
        "{table}"
    );

    // SIGKILL, and the row rewritten as if the coordinator died after
    // submitting but before recording the job: the restart finds the job
    // by its label and submits nothing.
    c.kill_coordinator();
    tamper(
        &c.data_dir(),
        "UPDATE schedules SET pending = 1, last_job_id = NULL WHERE name = 'soon'",
    );
    c.restart_coordinator();
    let list = c.wait_for("the job found again", Duration::from_secs(20), || {
        schedules(&c, &client).filter(|l| schedule(l, "soon")["last_job_id"] == id.as_str())
    });
    assert_eq!(schedule(&list, "soon")["next_run_unix_ms"], slot + DAY_MS);
    assert_eq!(jobs_of(&c, "soon", &client).len(), 1);
    assert!(
        c.coordinator_log()
            .contains("found the job of the slot claimed before the restart"),
        "{}",
        c.coordinator_log()
    );

    // A clean restart well after the slot: still one job.
    let code = c.term_coordinator(Duration::from_secs(30));
    assert!(code.success(), "{code:?}");
    c.restart_coordinator();
    c.wait_for("the schedules served", Duration::from_secs(20), || {
        schedules(&c, &client).filter(|l| l.len() == 2)
    });
    std::thread::sleep(Duration::from_secs(2));
    let jobs = jobs_of(&c, "soon", &client);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["job_id"], id.as_str());
    assert!(jobs_of(&c, "nightly-catalog", &client).is_empty());
}

#[test]
fn slots_missed_while_down_run_once_or_are_skipped() {
    let b = Cluster::builder("schedules-missed");
    let dir = b.dir().to_path_buf();
    let catalog = write_catalog(&dir);
    let (cron, slot) = daily_soon(10);
    let entry = |name: &str, missed: &str| {
        format!(
            "[[schedules]]\nname = \"{name}\"\ncron = \"{cron}\"\ntime_zone = \"UTC\"\nspec = {}\noutput_dir = {}\nmissed = \"{missed}\"\n\n",
            toml_path(&catalog),
            toml_path(&dir.join(format!("out-{name}"))),
        )
    };
    let config = dir.join("stemforge.toml");
    // `broken`: its spec is not there; its run is an error it records,
    // and it carries on.
    let broken = format!(
        "[[schedules]]\nname = \"broken\"\ncron = \"{cron}\"\ntime_zone = \"UTC\"\nspec = \"missing.toml\"\n\n"
    );
    std::fs::write(
        &config,
        entry("catchup", "once") + &entry("skipper", "skip") + &entry("claimed", "skip") + &broken,
    )
    .expect("write config");
    // The config is the cluster's working folder's stemforge.toml.
    let mut c = b.start().expect("coordinator starts");
    let list = c.wait_for("the schedules", Duration::from_secs(10), || {
        schedules(&c, &[]).filter(|l| l.len() == 4)
    });
    for name in ["catchup", "skipper", "claimed", "broken"] {
        assert_eq!(schedule(&list, name)["next_run_unix_ms"], slot, "{name}");
    }
    // Down over the slot (no worker: the jobs only have to exist).
    let code = c.term_coordinator(Duration::from_secs(30));
    assert!(code.success(), "{code:?}");
    assert!(
        now_ms() < slot,
        "the coordinator was meant to stop before its slot"
    );
    while now_ms() < slot + 1_000 {
        std::thread::sleep(Duration::from_millis(100));
    }
    // `claimed`: yesterday's slot claimed before a crash, its job never
    // submitted. The restart submits it, once.
    let yesterday = slot - DAY_MS;
    tamper(
        &c.data_dir(),
        &format!(
            "UPDATE schedules SET last_slot_ms = {yesterday}, last_run_ms = {yesterday}, pending = 1 WHERE name = 'claimed'"
        ),
    );
    c.restart_coordinator();
    let caught = c.wait_for("the missed run", Duration::from_secs(30), || {
        Some(jobs_of(&c, "catchup", &[])).filter(|j| !j.is_empty())
    });
    assert_eq!(caught.len(), 1, "{caught:?}");
    assert!(
        caught[0]["label"]
            .as_str()
            .is_some_and(|l| l.ends_with(&label_time(slot))),
        "{caught:?}"
    );
    let claimed = c.wait_for("the claimed slot's job", Duration::from_secs(30), || {
        Some(jobs_of(&c, "claimed", &[])).filter(|j| !j.is_empty())
    });
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let list = c.wait_for("the skip recorded", Duration::from_secs(10), || {
        schedules(&c, &[]).filter(|l| {
            schedule(l, "skipper")["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("skipped"))
                && schedule(l, "claimed")["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("skipped"))
                && schedule(l, "broken")["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("cannot read the spec file"))
        })
    });
    for name in ["catchup", "skipper", "claimed", "broken"] {
        let s = schedule(&list, name);
        assert_eq!(s["next_run_unix_ms"], slot + DAY_MS, "{s}");
        assert!(s["next_run_unix_ms"].as_i64() > Some(now_ms()), "{s}");
    }
    assert_eq!(schedule(&list, "catchup")["last_run_unix_ms"], slot);
    assert_eq!(schedule(&list, "skipper")["last_run_unix_ms"], Value::Null);
    assert_eq!(schedule(&list, "broken")["last_run_unix_ms"], slot);
    assert!(
        schedule(&list, "broken")["spec"]
            .as_str()
            .is_some_and(|s| s.ends_with("missing.toml")),
        "{list:?}"
    );
    assert!(jobs_of(&c, "skipper", &[]).is_empty());
    assert!(jobs_of(&c, "broken", &[]).is_empty());

    // Another restart changes nothing.
    let code = c.term_coordinator(Duration::from_secs(30));
    assert!(code.success(), "{code:?}");
    c.restart_coordinator();
    c.wait_for("the schedules served", Duration::from_secs(20), || {
        schedules(&c, &[]).filter(|l| l.len() == 4)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(jobs_of(&c, "catchup", &[]).len(), 1);
    assert_eq!(jobs_of(&c, "claimed", &[]).len(), 1);
    assert!(jobs_of(&c, "skipper", &[]).is_empty());
}

#[test]
fn a_bad_schedule_refuses_to_start_naming_the_field() {
    for (body, wanted) in [
        (
            "name = \"n\"\ncron = \"0 2 * *\"\ntime_zone = \"UTC\"\nspec = \"x.toml\"\n",
            "schedules[0].cron: \"0 2 * *\" has 4 fields",
        ),
        (
            "name = \"n\"\ncron = \"0 2 * * *\"\nspec = \"x.toml\"\n",
            "schedules[0].time_zone: is required",
        ),
        (
            "name = \"n\"\ncron = \"0 2 * * *\"\ntime_zone = \"London\"\nspec = \"x.toml\"\n",
            "schedules[0].time_zone: \"London\" is not an IANA time zone; write one like \"Europe/London\"",
        ),
    ] {
        let b = Cluster::builder("schedules-bad");
        std::fs::write(
            b.dir().join("stemforge.toml"),
            format!("[[schedules]]\n{body}"),
        )
        .expect("write config");
        let data = b.dir().join("data");
        let e = match b.start() {
            Ok(_) => panic!("a coordinator started with {body}"),
            Err(e) => e,
        };
        assert!(e.contains(wanted), "{wanted}\n{e}");
        assert!(!data.exists(), "nothing opened before the check");
    }
}
