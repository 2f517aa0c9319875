//! Job notifications through a real coordinator process: a webhook
//! receiver started by the test gets one signed POST per ended job (a
//! finished one and a cancelled one), retried after a 503 with the same
//! delivery id and body; a receiver that never answers is given up without
//! holding anything back; every attempt is a note in the job's events; a
//! restart sends nothing again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use stemforge_testkit::cluster::Cluster;
use stemforge_testkit::*;

const SECRET: &str = "4f2c9a7d1e8b6035c4a1f9e27d3b8c60";

/// A 4-second demo session written once for this test binary.
fn session() -> &'static PathBuf {
    static SPEC: OnceLock<PathBuf> = OnceLock::new();
    SPEC.get_or_init(|| {
        let dir = scratch("webhooks-session");
        let d = dir.to_str().expect("utf-8 path");
        let o = stemforge(&["demo", d, "--seconds", "4", "--workers", "2"]);
        assert!(o.status.success(), "demo failed:\n{}", text(&o));
        dir.join("deliverables.toml")
    })
}

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
struct Post {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    /// What the receiver answered.
    answered: u16,
    /// When it arrived (Unix ms).
    at_ms: i64,
}

#[derive(Clone, Default)]
struct Receiver {
    posts: Arc<Mutex<Vec<Post>>>,
}

impl Receiver {
    fn posts(&self) -> Vec<Post> {
        self.posts.lock().expect("posts").clone()
    }
}

/// The first attempt of every delivery gets a 503, later ones a 200.
async fn hook(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let mut posts = r.posts.lock().expect("posts");
    let id = headers
        .get("x-stemforge-delivery")
        .cloned()
        .unwrap_or_default();
    let seen = posts
        .iter()
        .any(|p| p.headers.get("x-stemforge-delivery") == Some(&id));
    let status = if seen {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    posts.push(Post {
        headers,
        body: body.to_vec(),
        answered: status.as_u16(),
        at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    });
    status
}

/// Starts the receiver and a listener that accepts connections and never
/// answers; returns their ports and the receiver's record.
fn start_servers() -> (u16, u16, Receiver) {
    start_servers_on(0)
}

/// As [`start_servers`], the receiver on `port` (0: any).
fn start_servers_on(port: u16) -> (u16, u16, Receiver) {
    let rec = Receiver::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let r = rec.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send((
                l.local_addr().expect("addr").port(),
                silent.local_addr().expect("addr").port(),
            ))
            .expect("send");
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((s, _)) = silent.accept().await {
                    held.push(s);
                }
            });
            let app = Router::new()
                .route("/hooks/stemforge", post(hook))
                .with_state(r);
            axum::serve(l, app).await.expect("serve");
        });
    });
    let (port, silent) = rx.recv().expect("ports");
    (port, silent, rec)
}

fn verify(p: &Post) -> Value {
    let ts = &p.headers["x-stemforge-timestamp"];
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&p.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        p.headers["x-stemforge-signature"], want,
        "signature of {:?}",
        p.headers
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let ts: i64 = ts.parse().expect("timestamp");
    assert!((now - ts).abs() < 300, "timestamp {ts} vs now {now}");
    assert_eq!(p.headers["x-stemforge-event"], "job.ended");
    assert_eq!(p.headers["content-type"], "application/json");
    serde_json::from_slice(&p.body).expect("JSON body")
}

#[test]
fn every_ended_job_gets_one_signed_post_retried_after_a_503() {
    let (port, silent, rec) = start_servers();
    let builder = Cluster::builder("webhooks");
    std::fs::write(builder.dir().join("hook.secret"), format!("{SECRET}\n")).expect("secret");
    std::fs::write(
        builder.dir().join("stemforge.toml"),
        format!(
            r#"
[[webhooks]]
url = "http://127.0.0.1:{port}/hooks/stemforge?token=not-for-logs"
secret_file = "hook.secret"
backoff_s = 0.2

[[webhooks]]
url = "http://127.0.0.1:{silent}/never-answers"
secret_file = "hook.secret"
timeout_s = 1.0
max_attempts = 2
backoff_s = 0.2
"#
        ),
    )
    .expect("config");
    let mut c = builder.start().unwrap_or_else(|e| panic!("cluster: {e}"));
    c.start_worker("w1");

    let done = c.submit(session(), &c.dir().join("out-a"), &["--label", "night A"]);
    let st = c.wait_job(&done, Duration::from_secs(120));
    assert_eq!(st["state"], "succeeded", "{st:#}");
    // A job cancelled before it ends is notified too.
    let cancelled = c.submit(session(), &c.dir().join("out-b"), &[]);
    let o = c.cli(&["cancel", &cancelled]);
    assert!(o.status.success(), "cancel:\n{}", text(&o));

    let accepted = |job: &str| {
        rec.posts()
            .into_iter()
            .filter(|p| p.answered == 200)
            .filter(|p| serde_json::from_slice::<Value>(&p.body).is_ok_and(|v| v["job_id"] == job))
            .collect::<Vec<_>>()
    };
    for job in [&done, &cancelled] {
        c.wait_for("a delivered webhook", Duration::from_secs(30), || {
            (!accepted(job).is_empty()).then_some(())
        });
    }

    // One accepted POST per job; each after exactly one 503 with the same
    // delivery id and body.
    let posts = rec.posts();
    assert_eq!(
        posts.iter().filter(|p| p.answered == 200).count(),
        2,
        "{posts:#?}"
    );
    assert_eq!(posts.len(), 4, "{posts:#?}");
    for job in [&done, &cancelled] {
        let ok = accepted(job);
        assert_eq!(ok.len(), 1, "{ok:#?}");
        let id = &ok[0].headers["x-stemforge-delivery"];
        let tries: Vec<&Post> = posts
            .iter()
            .filter(|p| &p.headers["x-stemforge-delivery"] == id)
            .collect();
        assert_eq!(tries.len(), 2);
        assert_eq!(tries[0].answered, 503);
        assert_eq!(tries[0].body, tries[1].body);
        for p in tries {
            verify(p);
        }
    }

    // The summaries.
    let a = verify(&accepted(&done)[0]);
    let manifest = read_json(std::path::Path::new(
        a["manifest_path"].as_str().expect("path"),
    ));
    let n_outputs = outputs(&manifest).len() as u64;
    assert_eq!(a["state"], "succeeded");
    assert_eq!(a["label"], "night A");
    assert_eq!(a["titles"], 1);
    assert_eq!(a["titles_failed"], 0);
    assert_eq!(a["outputs"], n_outputs);
    assert!(n_outputs > 0);
    assert_eq!(
        a["outputs_passed"].as_u64().expect("n") + a["outputs_failed"].as_u64().expect("n"),
        n_outputs
    );
    assert_eq!(a["all_pass"], manifest["summary"]["all_pass"]);
    assert_eq!(a["tasks_failed"], 0);
    // For the record: from the job's end to the first attempt's arrival.
    let first = posts
        .iter()
        .find(|p| {
            p.headers["x-stemforge-delivery"] == accepted(&done)[0].headers["x-stemforge-delivery"]
        })
        .expect("first attempt");
    eprintln!(
        "webhook latency: job end → first POST {} ms",
        first.at_ms - a["ended_unix_ms"].as_i64().expect("ms")
    );
    let b = verify(&accepted(&cancelled)[0]);
    assert_eq!(b["state"], "cancelled");
    assert_eq!(b["manifest_path"], "");
    assert!(b["tasks_cancelled"].as_u64().expect("n") > 0, "{b:#}");

    // The silent receiver is given up after its 2 attempts of 1 s.
    let events = |job: &str| {
        let o = c.cli(&["watch", job]);
        assert!(o.status.success(), "watch:\n{}", text(&o));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let ev = c.wait_for("the silent hook given up", Duration::from_secs(30), || {
        let ev = events(&done);
        ev.contains("never-answers: gave up after 2 attempts")
            .then_some(ev)
    });
    let shown = format!("webhook http://127.0.0.1:{port}/hooks/stemforge");
    assert!(
        ev.contains(&format!(
            "{shown}: attempt 1 failed (HTTP 503 Service Unavailable); retrying"
        )),
        "{ev}"
    );
    assert!(
        ev.contains(&format!("{shown}: delivered (HTTP 200, attempt 2)")),
        "{ev}"
    );
    assert!(
        !ev.contains("not-for-logs"),
        "a URL's query is never shown:\n{ev}"
    );
    assert!(!c.coordinator_log().contains("not-for-logs"));

    // A restart delivers nothing again.
    let status = c.term_coordinator(Duration::from_secs(20));
    assert!(status.success(), "coordinator exit {status:?}");
    c.restart_coordinator();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rec.posts().len(), 4, "{:#?}", rec.posts());
}

#[test]
fn a_webhook_without_a_secret_refuses_the_start_naming_the_field() {
    let builder = Cluster::builder("webhooks-bad");
    std::fs::write(
        builder.dir().join("stemforge.toml"),
        "[[webhooks]]\nurl = \"http://127.0.0.1:9/x\"\n",
    )
    .expect("config");
    let e = match builder.start() {
        Ok(_) => panic!("a coordinator started with an unsigned webhook"),
        Err(e) => e,
    };
    assert!(e.contains("webhooks[0].secret_file"), "{e}");
}

#[test]
fn a_delivery_pending_when_the_coordinator_dies_is_made_after_its_restart() {
    // A port with nothing listening yet: attempts fail until the receiver
    // starts, after the coordinator was killed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let builder = Cluster::builder("webhooks-restart");
    std::fs::write(builder.dir().join("hook.secret"), SECRET).expect("secret");
    std::fs::write(
        builder.dir().join("stemforge.toml"),
        format!(
            "[[webhooks]]\nurl = \"http://127.0.0.1:{port}/hooks/stemforge\"\nsecret_file = \"hook.secret\"\nbackoff_s = 0.5\nmax_attempts = 50\n"
        ),
    )
    .expect("config");
    let mut c = builder.start().unwrap_or_else(|e| panic!("cluster: {e}"));
    c.start_worker("w1");
    let job = c.submit(session(), &c.dir().join("out"), &[]);
    let st = c.wait_job(&job, Duration::from_secs(120));
    assert_eq!(st["state"], "succeeded", "{st:#}");
    c.wait_for("a failed attempt", Duration::from_secs(30), || {
        let o = c.cli(&["watch", &job]);
        String::from_utf8_lossy(&o.stderr)
            .contains("attempt 1 failed")
            .then_some(())
    });
    c.kill_coordinator();
    let (_, _, rec) = start_servers_on(port);
    c.restart_coordinator();
    c.wait_for(
        "the delivery after the restart",
        Duration::from_secs(30),
        || rec.posts().iter().any(|p| p.answered == 200).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(1));
    let posts = rec.posts();
    // The receiver's first answer to a delivery is a 503: one retry, then
    // one accepted POST, both of the one delivery.
    assert_eq!(posts.len(), 2, "{posts:#?}");
    assert_eq!(
        posts[0].headers["x-stemforge-delivery"],
        posts[1].headers["x-stemforge-delivery"]
    );
    let body = verify(&posts[1]);
    assert_eq!(body["job_id"], job.as_str());
    assert_eq!(body["state"], "succeeded");
}
