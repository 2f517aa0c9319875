//! The operator dashboard end to end: a `stemforge coordinator` process
//! with a client token serving its HTTP listener, a worker process, and
//! Debian's chromium driven through chromedriver (WebDriver, fantoccini).
//! Login is required; the jobs page follows a running job through
//! server-sent events without reloading; its Cancel button cancels the
//! job, which the gRPC API confirms. A plain HTTP client checks the
//! refusals: no session, a wrong CSRF token, files outside the output
//! folder. `STEMFORGE_SCREENSHOT=path.png` saves the jobs page.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::Value;
use stemforge_testkit::cluster::Cluster;
use stemforge_testkit::text;

const CLIENT_TOKEN: &str = "client-5d1e0c7b9a3f4e2d8c6b1a0f9e8d7c6b";
const RATE: u32 = 48_000;

/// Two stems (drums-like clicks over noise, a tone) of `seconds`.
fn write_title(dir: &Path, name: &str, seed: u64, seconds: f64) {
    use std::f64::consts::TAU;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let code = |x: f64| (x * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32;
    let n = (seconds * f64::from(RATE)) as usize;
    for role in ["drums", "music"] {
        let mut w = hound::WavWriter::create(dir.join(format!("{name}_{role}.wav")), spec)
            .expect("create stem");
        for i in 0..n {
            let t = i as f64 / f64::from(RATE);
            let x = match role {
                "drums" => {
                    let tb = t % 0.5;
                    0.5 * (-tb * 12.0).exp() * (TAU * 55.0 * tb).sin()
                        + 0.03 * stemforge_testkit::signal::white(i as u64, seed)
                }
                _ => 0.2 * (TAU * (220.0 + 20.0 * seed as f64) * t).sin(),
            };
            w.write_sample(code(x)).expect("sample");
            w.write_sample(code(x * 0.9)).expect("sample");
        }
        w.finalize().expect("finalize stem");
    }
}

fn spec(dir: &Path, file: &str, titles: &[(&str, f64)]) -> PathBuf {
    let mut s = String::from(
        "schema_version = 1\n[delivery]\nprofile = \"ebu-r128\"\nbit_depth = 24\noutput_dir = \"deliverables\"\n\n[graph.master]\nchain = [{ node = \"loudness\" }, { node = \"limiter\" }]\n\n[variants.full]\n[variants.instrumental]\n",
    );
    for (i, (name, seconds)) in titles.iter().enumerate() {
        write_title(dir, name, i as u64, *seconds);
        s.push_str(&format!(
            "\n[[titles]]\nname = \"{name}\"\nstems = [\n  {{ file = \"{name}_drums.wav\", role = \"drums\" }},\n  {{ file = \"{name}_music.wav\", role = \"music\" }},\n]\n"
        ));
    }
    let p = dir.join(file);
    std::fs::write(&p, s).expect("write spec");
    p
}

/// A response: status code, head (lower-cased), body.
struct Resp {
    code: u16,
    head: String,
    body: String,
}

/// An HTTP/1.1 request (the connection closed after it).
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> String {
    // `Host: addr` unless the test names another.
    let mut req = if headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n")
    } else {
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n")
    };
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

fn parse(raw: &[u8]) -> Resp {
    let raw = String::from_utf8_lossy(raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Resp {
        code,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// One plain HTTP/1.1 request.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, String)], body: &str) -> Resp {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(request(addr, method, path, headers, body).as_bytes())
        .expect("send request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

/// One HTTP/1.1 request over TLS, trusting only `ca`.
fn https(
    addr: &str,
    ca: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Resp {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots
            .add(c.expect("a CA certificate"))
            .expect("trust the CA");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let req = request(addr, method, path, headers, body);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .expect("a TLS handshake with the dashboard");
        s.write_all(req.as_bytes()).await.expect("send request");
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw)).await;
        parse(&raw)
    })
}

fn header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.head
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[test]
fn the_dashboard_logs_in_follows_a_job_live_and_cancels_it_in_a_real_browser() {
    let b = Cluster::builder("dashboard");
    let token_file = b.dir().join("client.token");
    std::fs::write(&token_file, format!("{CLIENT_TOKEN}\n")).expect("write token");
    let dir = b.dir().to_path_buf();
    let mut c = b
        .envs([
            (
                "STEMFORGE_CLIENT_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("STEMFORGE_HEARTBEAT_MS", "200".to_string()),
            ("STEMFORGE_POLL_WAIT_MS", "300".to_string()),
        ])
        .start()
        .unwrap_or_else(|e| panic!("the coordinator did not start: {e}"));
    let addr = c.http_addr().to_string();
    let client = [(
        "STEMFORGE_CLIENT_TOKEN_FILE",
        token_file.display().to_string(),
    )];

    // A short job that finishes first (its grid has verdicts), then a long
    // one to watch and cancel.
    let small = spec(&dir, "small.toml", &[("Intro", 3.0)]);
    // A long title first: its analysis and render are in flight for
    // seconds (progress to watch, a task to drain).
    let titles: Vec<(String, f64)> = std::iter::once(("Long".to_string(), 90.0))
        .chain((0..10).map(|i| (format!("Cue{i:02}"), 8.0)))
        .collect();
    let titles: Vec<(&str, f64)> = titles.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let long = spec(&dir, "long.toml", &titles);
    let submit = |c: &Cluster, spec: &Path, out: &str, label: &str| {
        let o = c.submit_output(spec, &dir.join(out), &["--label", label], &client);
        assert!(o.status.success(), "submit: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let small_job = submit(&c, &small, "out-small", "intro");
    c.start_worker("w1");
    let st = c.wait_job_env(&small_job, Duration::from_secs(60), &client);
    assert_eq!(st["state"], "succeeded", "{st:#}");

    // Plain HTTP: without a session, pages send to the login, actions are refused.
    let r = http(&addr, "GET", "/", &[], "");
    assert_eq!(r.code, 303, "{}", r.head);
    assert_eq!(header(&r, "location"), Some("/login?next=/"));
    let origin = ("Origin", format!("http://{addr}"));
    let r = http(
        &addr,
        "POST",
        &format!("/jobs/{small_job}/retry"),
        std::slice::from_ref(&origin),
        "csrf=x",
    );
    assert_eq!(r.code, 403, "no session: {}", r.body);
    // A wrong token is refused (after a delay); the right one makes a session.
    let r = http(
        &addr,
        "POST",
        "/login",
        std::slice::from_ref(&origin),
        "token=guess&next=/",
    );
    assert_eq!(r.code, 401, "{}", r.body);
    assert!(header(&r, "set-cookie").is_none());
    let r = http(
        &addr,
        "POST",
        "/login",
        std::slice::from_ref(&origin),
        &format!("token={CLIENT_TOKEN}&next=/"),
    );
    assert_eq!(r.code, 303, "{}", r.head);
    let cookie = header(&r, "set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in ["httponly", "samesite=strict", "path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let session = ("Cookie", cookie.split(';').next().unwrap_or("").to_string());
    // A POST with the session but a wrong CSRF token: 403, nothing changes.
    let r = http(
        &addr,
        "POST",
        &format!("/jobs/{small_job}/priority"),
        &[origin.clone(), session.clone()],
        "csrf=0000&priority=9",
    );
    assert_eq!(r.code, 403, "wrong CSRF: {}", r.body);
    // The right CSRF token but another origin: 403 too.
    let page = http(
        &addr,
        "GET",
        &format!("/jobs/{small_job}"),
        std::slice::from_ref(&session),
        "",
    );
    assert_eq!(page.code, 200, "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a CSRF token in the page")
        .to_string();
    let r = http(
        &addr,
        "POST",
        &format!("/jobs/{small_job}/priority"),
        &[("Origin", "http://evil.example".into()), session.clone()],
        &format!("csrf={csrf}&priority=9"),
    );
    assert_eq!(r.code, 403, "cross-origin: {}", r.body);
    // The job page: its grid judged, its files served from its output folder only.
    assert!(page.body.contains("Intro"), "{}", page.body);
    assert!(
        page.body.contains("<span class=\"verdict\">pass</span>"),
        "{}",
        page.body
    );
    let report = http(
        &addr,
        "GET",
        &format!("/jobs/{small_job}/files/report.html"),
        std::slice::from_ref(&session),
        "",
    );
    assert_eq!(report.code, 200);
    assert!(header(&report, "content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(header(&report, "content-security-policy").is_some_and(|t| t.contains("sandbox")));
    let wav = page
        .body
        .split(&format!("/jobs/{small_job}/files/"))
        .filter_map(|r| r.split('"').next())
        .find(|f| f.ends_with(".wav"))
        .expect("a file link in the grid")
        .to_string();
    let r = http(
        &addr,
        "GET",
        &format!("/jobs/{small_job}/files/{wav}"),
        std::slice::from_ref(&session),
        "",
    );
    assert_eq!(
        (r.code, header(&r, "content-type")),
        (200, Some("audio/wav"))
    );
    std::fs::write(dir.join("secret.txt"), "not for the dashboard").expect("write");
    for bad in [
        "../secret.txt",
        "..%2Fsecret.txt",
        "%2E%2E/secret.txt",
        "/etc/passwd",
        "nope.wav",
    ] {
        let r = http(
            &addr,
            "GET",
            &format!("/jobs/{small_job}/files/{bad}"),
            std::slice::from_ref(&session),
            "",
        );
        assert!(
            r.code == 404 && !r.body.contains("not for the dashboard"),
            "{bad}: {} {}",
            r.code,
            r.body
        );
    }
    #[cfg(unix)]
    {
        let link = dir.join("out-small/escape.txt");
        std::os::unix::fs::symlink(dir.join("secret.txt"), &link).expect("symlink");
        let r = http(
            &addr,
            "GET",
            &format!("/jobs/{small_job}/files/escape.txt"),
            std::slice::from_ref(&session),
            "",
        );
        assert_eq!(r.code, 404, "a symbolic link out of the folder");
    }

    // The long job, submitted with the worker busy elsewhere: none; it runs
    // once the browser watches.
    c.kill_worker("w1");
    let job = submit(&c, &long, "out-long", "long catalog");
    // Priority: from the dashboard (session, CSRF, origin) and from the CLI.
    let r = http(
        &addr,
        "POST",
        &format!("/jobs/{job}/priority"),
        &[origin.clone(), session.clone()],
        &format!("csrf={csrf}&priority=7&next=/jobs/{job}"),
    );
    assert_eq!(r.code, 303, "{}", r.body);
    assert_eq!(
        header(&r, "location"),
        Some(format!("/jobs/{job}").as_str())
    );
    assert_eq!(c.status_env(&job, &client)["priority"], 7);
    let o = c.cli_env(&["priority", &job, "-2"], &client);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(c.status_env(&job, &client)["priority"], -2);
    let o = c.cli(&["priority", &job, "1"]);
    assert!(!o.status.success(), "SetJobPriority needs the client token");

    let shot = std::env::var_os("STEMFORGE_SCREENSHOT").map(PathBuf::from);
    let browser = Browser::start(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let base = format!("http://{addr}");
    let outcome = rt.block_on(async {
        let b = browser.session().await;
        b.set_window_size(1280, 800).await.expect("window size");
        // Not logged in: the login page, and no action buttons anywhere.
        b.goto(&format!("{base}/"))
            .await
            .expect("open the dashboard");
        let url = b.current_url().await.expect("url");
        assert_eq!(url.path(), "/login", "{url}");
        b.find(Locator::Id("token"))
            .await
            .expect("the token field")
            .send_keys(CLIENT_TOKEN)
            .await
            .expect("type the token");
        b.find(Locator::Id("login-submit"))
            .await
            .expect("the login button")
            .click()
            .await
            .expect("log in");
        let row = format!("tr[data-job='{job}']");
        let read = |b: fantoccini::Client| {
            let row = row.clone();
            async move {
                b.execute(
                    "const r = document.querySelector(arguments[0]);
                     const live = document.getElementById('live');
                     return r && {
                       state: r.querySelector('td.state').textContent,
                       pct: r.querySelector('span.pct').textContent,
                       counts: r.querySelector('td.counts').textContent,
                       updates: Number(live.getAttribute('data-updates')),
                       marker: window.__stemforgeMarker || 0,
                       cancel: !!r.querySelector('button.cancel'),
                     };",
                    vec![Value::from(row)],
                )
                .await
                .expect("read the job's row")
            }
        };
        // The click's navigation finishes on its own time: wait for the row.
        let deadline = Instant::now() + Duration::from_secs(20);
        let first = loop {
            let r = read(b.clone()).await;
            if !r.is_null() {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "the jobs page never showed {row}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(first["state"], "running", "{first}");
        assert_eq!(first["pct"], "0.0%", "{first}");
        assert_eq!(first["cancel"], true, "logged in: actions shown {first}");
        // A marker a reload would wipe out.
        b.execute("window.__stemforgeMarker = 42;", vec![])
            .await
            .expect("set a marker");
        (b, first)
    });
    let (b, first) = outcome;
    // Work starts now: the page must follow it by itself.
    let w2 = c.start_worker("w2");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let moved = loop {
        let now = rt.block_on(async {
            b.execute(
                "const r = document.querySelector(arguments[0]);
                 return r && { state: r.querySelector('td.state').textContent,
                   pct: r.querySelector('span.pct').textContent,
                   counts: r.querySelector('td.counts').textContent,
                   updates: Number(document.getElementById('live').getAttribute('data-updates')),
                   marker: window.__stemforgeMarker || 0 };",
                vec![Value::from(format!("tr[data-job='{job}']"))],
            )
            .await
            .expect("read the row")
        });
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        let pct: f64 = now["pct"]
            .as_str()
            .and_then(|p| p.trim_end_matches('%').parse().ok())
            .unwrap_or(0.0);
        // Progress seen, updated twice: enough to show it moves.
        if pct > 0.0 && now["updates"].as_u64() >= Some(2) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the page did not follow the job: {seen:#?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(150));
    };
    assert_eq!(
        moved["marker"], 42,
        "updated in place, never reloaded: {seen:#?}"
    );
    assert_eq!(moved["state"], "running", "{moved}");
    assert_ne!(moved["pct"], first["pct"]);
    eprintln!("dashboard updates seen: {seen:#?}");
    if let Some(path) = &shot {
        let png = rt.block_on(b.screenshot()).expect("screenshot");
        std::fs::write(path, png).expect("write the screenshot");
    }
    // The workers page: the worker, its task; after SIGTERM, draining.
    let worker_row = |c: &Cluster| {
        let r = http(
            &addr,
            "GET",
            "/workers?fragment=1",
            std::slice::from_ref(&session),
            "",
        );
        assert_eq!(r.code, 200, "{}", r.body);
        r.body
            .split("<tr data-worker=\"w2\">")
            .nth(1)
            .and_then(|row| row.split("</tr>").next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("w2 not listed: {}\n{}", r.body, c.logs()))
    };
    // SIGTERM while it holds one of the long title's tasks: it finishes
    // that task, telling the coordinator it is draining.
    let row = c.wait_for(
        "the worker on the long title",
        Duration::from_secs(30),
        || {
            let row = worker_row(&c);
            (row.contains(" Long") && row.contains(&job) && !row.contains("preflight"))
                .then_some(row)
        },
    );
    eprintln!("busy worker: {row}");
    stemforge_testkit::cluster::sigterm(w2);
    let row = c.wait_for("the worker shown draining", Duration::from_secs(10), || {
        let row = worker_row(&c);
        row.contains("<td>draining</td>").then_some(row)
    });
    eprintln!("draining worker: {row}");
    // The small job's page (its grid), saved beside the jobs page's
    // screenshot when one is asked for.
    if let Some(path) = &shot {
        let png = rt.block_on(async {
            b.goto(&format!("{base}/jobs/{small_job}"))
                .await
                .expect("open the job page");
            b.find(Locator::Css("table.grid td.cell"))
                .await
                .expect("the grid");
            let png = b.screenshot().await.expect("screenshot");
            b.goto(&format!("{base}/")).await.expect("back to the jobs");
            png
        });
        std::fs::write(path.with_extension("job.png"), png).expect("write the screenshot");
    }
    // Cancel from the page.
    rt.block_on(async {
        b.find(Locator::Css(&format!("tr[data-job='{job}'] button.cancel")))
            .await
            .expect("the cancel button")
            .click()
            .await
            .expect("click cancel");
    });
    let state = c.wait_for("the row to show cancelled", Duration::from_secs(20), || {
        let s = rt.block_on(async {
            b.execute(
                "const r = document.querySelector(arguments[0]);
                 return r ? r.querySelector('td.state').textContent : null;",
                vec![Value::from(format!("tr[data-job='{job}']"))],
            )
            .await
            .ok()
        })?;
        (s == "cancelled").then_some(s)
    });
    assert_eq!(state, "cancelled");
    let _ = rt.block_on(b.close());
    drop(browser);
    // The API agrees.
    let st = c.wait_job_env(&job, Duration::from_secs(30), &client);
    assert_eq!(st["state"], "cancelled", "{st:#}");
    assert!(
        c.coordinator_log().contains("cancelled from the dashboard"),
        "{}",
        c.coordinator_log()
    );
}

/// chromedriver on a free loopback port, killed when dropped.
struct Browser {
    child: std::process::Child,
    port: u16,
    profile: PathBuf,
}

impl Browser {
    fn start(dir: &Path) -> Browser {
        let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {driver} ({e}): apt-get install chromium chromium-driver (.ci/run does)")
            });
        Browser {
            child,
            port,
            profile: dir.join("chromium-profile"),
        }
    }

    async fn session(&self) -> fantoccini::Client {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    format!("--user-data-dir={}", self.profile.display()),
                ],
            }),
        );
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with chromium")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A CA and a certificate for 127.0.0.1 signed by it, in `dir`.
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "dashboard test CA");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    p.distinguished_name.push(DnType::CommonName, "coordinator");
    let cert = p.signed_by(&key, &ca).expect("sign");
    let write = |name: &str, body: &str| {
        let f = dir.join(name);
        std::fs::write(&f, body).expect("write pem");
        f
    };
    (
        write("ca.pem", &ca.pem()),
        write("server.pem", &cert.pem()),
        write("server.key", &key.serialize_pem()),
    )
}

/// With TLS configured, the HTTP listener speaks both on one port:
/// `/metrics` stays plain HTTP for scrapers, the dashboard is served over
/// TLS only (plain GETs redirected, plain POSTs refused) and its session
/// cookie is `Secure` with the `__Host-` prefix. Beyond loopback without
/// TLS the dashboard is off (warned), or refused when asked for.
#[test]
fn with_tls_the_dashboard_is_https_only_and_its_cookie_secure() {
    let b = Cluster::builder("dashboard-tls");
    let dir = b.dir().to_path_buf();
    let token_file = dir.join("client.token");
    std::fs::write(&token_file, format!("{CLIENT_TOKEN}\n")).expect("write token");
    let (ca, cert, key) = pki(&dir);
    let c = b
        .envs([
            (
                "STEMFORGE_CLIENT_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("STEMFORGE_TLS_CERT", cert.display().to_string()),
            ("STEMFORGE_TLS_KEY", key.display().to_string()),
        ])
        .start()
        .unwrap_or_else(|e| panic!("the coordinator did not start: {e}"));
    let addr = c.http_addr().to_string();
    assert!(c.url().starts_with("https://"), "{}", c.url());
    // Prometheus keeps scraping plain HTTP.
    assert!(c.scrape().contains("stemforge_"), "metrics over plain HTTP");
    let r = https(&addr, &ca, "GET", "/metrics", &[], "");
    assert_eq!(r.code, 200, "metrics over TLS too");
    // Dashboard pages over plain HTTP: redirected to https, posts refused.
    let r = http(&addr, "GET", "/workers", &[], "");
    assert_eq!(r.code, 308, "{}", r.head);
    assert_eq!(
        header(&r, "location"),
        Some(format!("https://{addr}/workers").as_str())
    );
    let r = http(
        &addr,
        "POST",
        "/login",
        &[("Origin", format!("http://{addr}"))],
        &format!("token={CLIENT_TOKEN}"),
    );
    assert_eq!(r.code, 403, "no login over plain HTTP: {}", r.body);
    assert!(header(&r, "set-cookie").is_none());
    // Over TLS: the login sets a Secure, host-only cookie.
    let r = https(&addr, &ca, "GET", "/", &[], "");
    assert_eq!(
        (r.code, header(&r, "location")),
        (303, Some("/login?next=/"))
    );
    let r = https(
        &addr,
        &ca,
        "POST",
        "/login",
        &[("Origin", format!("https://{addr}"))],
        &format!("token={CLIENT_TOKEN}&next=/workers"),
    );
    assert_eq!(r.code, 303, "{}", r.head);
    let cookie = header(&r, "set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(
        cookie.starts_with("__host-stemforge_session=")
            && cookie.contains("; secure")
            && cookie.contains("httponly")
            && cookie.contains("samesite=strict"),
        "{cookie}"
    );
    let session = (
        "Cookie",
        cookie
            .split(';')
            .next()
            .unwrap_or("")
            .replace("__host-", "__Host-"),
    );
    let r = https(
        &addr,
        &ca,
        "GET",
        "/workers",
        std::slice::from_ref(&session),
        "",
    );
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(r.body.contains("<h1>Workers</h1>"), "{}", r.body);

    // Beyond loopback with TLS but without metrics_public: the dashboard
    // alone (no unauthenticated /metrics on the network).
    let mut child = stemforge_testkit::command()
        .args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.join("data-lan-tls"))
        .env("STEMFORGE_LOG", "warn")
        .env("STEMFORGE_CLIENT_TOKEN_FILE", &token_file)
        .env("STEMFORGE_TLS_CERT", &cert)
        .env("STEMFORGE_TLS_KEY", &key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.join("lan-tls.log")).expect("log"))
        .spawn()
        .expect("spawn a coordinator");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(
        child.stdout.take().expect("stdout"),
    ));
    let api = lines.next().and_then(Result::ok).unwrap_or_default();
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let port = second
        .strip_prefix("stemforge dashboard on https://0.0.0.0:")
        .and_then(|p| p.strip_suffix('/'))
        .unwrap_or_else(|| {
            panic!(
                "no dashboard line: {api} / {second}\n{}",
                std::fs::read_to_string(dir.join("lan-tls.log")).unwrap_or_default()
            )
        })
        .to_string();
    let lan = format!("127.0.0.1:{port}");
    assert_ne!(http(&lan, "GET", "/metrics", &[], "").code, 200);
    assert_eq!(https(&lan, &ca, "GET", "/metrics", &[], "").code, 404);
    let r = https(&lan, &ca, "GET", "/", &[], "");
    assert_eq!(r.code, 303, "{}", r.head);
    let _ = child.kill();
    let _ = child.wait();

    // Beyond loopback without TLS: the dashboard is off (metrics still
    // served), and refused when dashboard = true.
    let lan_cluster = Cluster::builder("dashboard-lan")
        .env("STEMFORGE_METRICS_PUBLIC", "true")
        .metrics(false)
        .args(&["--http-listen", "0.0.0.0:0"])
        .start()
        .expect("starts with the dashboard off");
    let log = wait_log(&lan_cluster, "dashboard off");
    assert!(log.contains("beyond loopback without TLS"), "{log}");
    drop(lan_cluster);
    let o = stemforge_testkit::command()
        .args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.join("data-refused"))
        .env("STEMFORGE_LOG", "warn")
        .env("STEMFORGE_METRICS_PUBLIC", "true")
        .env("STEMFORGE_DASHBOARD", "true")
        .output()
        .expect("run");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to serve the dashboard on 0.0.0.0:") && err.contains("--insecure"),
        "{err}"
    );
    drop(c);
}

fn wait_log(c: &Cluster, what: &str) -> String {
    c.wait_for(what, Duration::from_secs(10), || {
        let log = c.coordinator_log();
        log.contains(what).then_some(log)
    })
}

/// Without a client token (loopback only: the API is open there too),
/// viewing needs no login and logging in needs no token, with a note on
/// every page. With a token and `dashboard_public_read`, viewing needs no
/// login but every action still needs one.
#[test]
fn open_loopback_and_public_read_dashboards() {
    let c = Cluster::builder("dashboard-open")
        .start()
        .unwrap_or_else(|e| panic!("the coordinator did not start: {e}"));
    let addr = c.http_addr().to_string();
    let r = http(&addr, "GET", "/", &[], "");
    assert_eq!(r.code, 200, "{}", r.head);
    assert!(
        r.body.contains("No client token is configured"),
        "{}",
        r.body
    );
    let r = http(
        &addr,
        "POST",
        "/login",
        &[("Origin", format!("http://{addr}"))],
        "next=/workers",
    );
    assert_eq!(
        (r.code, header(&r, "location")),
        (303, Some("/workers")),
        "{}",
        r.body
    );
    assert!(header(&r, "set-cookie").is_some_and(|c| !c.contains("secure")));
    // DNS rebinding: a page of another site whose name now points here is
    // same-origin with itself, never with the dashboard; plain HTTP answers
    // only to an address or localhost.
    let port = addr.rsplit(':').next().expect("port");
    let evil = format!("rebind.example:{port}");
    for (method, path) in [("GET", "/"), ("POST", "/login")] {
        let r = http(
            &addr,
            method,
            path,
            &[("Host", evil.clone()), ("Origin", format!("http://{evil}"))],
            "next=/",
        );
        assert_eq!(r.code, 421, "{method} {path} as {evil}: {}", r.head);
        assert!(header(&r, "set-cookie").is_none());
    }
    let r = http(
        &addr,
        "GET",
        "/",
        &[("Host", format!("localhost:{port}"))],
        "",
    );
    assert_eq!(r.code, 200, "{}", r.head);
    drop(c);

    let b = Cluster::builder("dashboard-public");
    let token_file = b.dir().join("client.token");
    std::fs::write(&token_file, format!("{CLIENT_TOKEN}\n")).expect("write token");
    let c = b
        .envs([
            (
                "STEMFORGE_CLIENT_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("STEMFORGE_DASHBOARD_PUBLIC_READ", "true".to_string()),
        ])
        .start()
        .unwrap_or_else(|e| panic!("the coordinator did not start: {e}"));
    let addr = c.http_addr().to_string();
    let r = http(&addr, "GET", "/automations", &[], "");
    assert_eq!(r.code, 200, "{}", r.head);
    assert!(r.body.contains("No schedules configured"), "{}", r.body);
    assert!(
        !r.body.contains("name=\"csrf\""),
        "no forms without a session"
    );
    let r = http(
        &addr,
        "POST",
        "/jobs/any/cancel",
        &[("Origin", format!("http://{addr}"))],
        "csrf=",
    );
    assert_eq!(r.code, 403, "{}", r.body);
}
