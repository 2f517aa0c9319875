//! Security and operations of a real `stemforge coordinator` process: bearer
//! tokens per role, TLS and mutual TLS with certificates made here (rcgen),
//! the guards against an open API or `/metrics` beyond loopback, media roots on the
//! coordinator and on workers, and independent clients (Python grpcio,
//! tonic's reflection client) listing the services and asking health.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stemforge_proto::v1::jobs_client::JobsClient;
use stemforge_proto::v1::tasks_client::TasksClient;
use stemforge_proto::v1::{LeaseTaskRequest, ListJobsRequest};
use stemforge_testkit::cluster::Cluster;
use stemforge_testkit::{scratch, stemforge_env, text};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const CLIENT_TOKEN: &str = "client-9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f60";
const WORKER_TOKEN: &str = "worker-0a1b2c3d4e5f60718293a4b5c6d7e8f9";

/// A coordinator process logging at debug level (the tests read its log),
/// with `env` for it and its workers.
fn coordinator(name: &str, prepare: impl FnOnce(&Path) -> Vec<(&'static str, String)>) -> Cluster {
    let b = Cluster::builder(name).env("STEMFORGE_LOG", "debug");
    let env = prepare(b.dir());
    b.envs(env)
        .start()
        .unwrap_or_else(|e| panic!("the coordinator did not start: {e}"))
}

fn tokens(dir: &Path) -> Vec<(&'static str, String)> {
    let c = dir.join("client.token");
    let w = dir.join("worker.token");
    std::fs::write(&c, format!("{CLIENT_TOKEN}\n")).expect("write token");
    std::fs::write(&w, format!("{WORKER_TOKEN}\n")).expect("write token");
    vec![
        ("STEMFORGE_CLIENT_TOKEN_FILE", c.display().to_string()),
        ("STEMFORGE_WORKER_TOKEN_FILE", w.display().to_string()),
    ]
}

/// What a client needs to be admitted: the client token file in `dir`.
fn client_token(dir: &Path) -> Vec<(&'static str, String)> {
    vec![(
        "STEMFORGE_CLIENT_TOKEN_FILE",
        dir.join("client.token").display().to_string(),
    )]
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    r
}

/// A one-title catalog (half-second tone and noise stems) in `dir`.
fn tiny_spec(dir: &Path) -> PathBuf {
    stemforge_cli::bench_cluster::tiny_catalog(dir, 1).expect("tiny catalog")
}

// ---------------------------------------------------------------------------

#[test]
fn tokens_admit_each_role_to_its_own_api_only_and_are_never_logged() {
    let c = coordinator("sec-tokens", tokens);
    let env = client_token(c.dir());
    let url = c.url().to_string();
    let codes = rt().block_on(async {
        let ch = Channel::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut jobs = JobsClient::new(ch.clone());
        let mut tasks = TasksClient::new(ch);
        let mut out = Vec::new();
        for (who, token) in [
            ("none", None),
            ("wrong", Some("client-9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f61")),
            ("worker", Some(WORKER_TOKEN)),
            ("client", Some(CLIENT_TOKEN)),
        ] {
            let r = jobs.list_jobs(with_token(ListJobsRequest {}, token)).await;
            out.push((format!("Jobs/{who}"), r.err().map(|s| s.code())));
        }
        for (who, token) in [
            ("none", None),
            ("client", Some(CLIENT_TOKEN)),
            ("worker", Some(WORKER_TOKEN)),
        ] {
            let req = LeaseTaskRequest {
                worker_id: "probe".into(),
                wait_ms: 0,
                draining: false,
            };
            let r = tasks.lease_task(with_token(req, token)).await;
            out.push((format!("Tasks/{who}"), r.err().map(|s| s.code())));
        }
        out
    });
    use tonic::Code::{PermissionDenied, Unauthenticated};
    let want = vec![
        ("Jobs/none".to_string(), Some(Unauthenticated)),
        ("Jobs/wrong".to_string(), Some(Unauthenticated)),
        ("Jobs/worker".to_string(), Some(PermissionDenied)),
        ("Jobs/client".to_string(), None),
        ("Tasks/none".to_string(), Some(Unauthenticated)),
        ("Tasks/client".to_string(), Some(PermissionDenied)),
        ("Tasks/worker".to_string(), None),
    ];
    assert_eq!(codes, want);

    // The command line: no token is refused with the code named, the token
    // file lets it through.
    let o = c.cli(&["status"]);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("UNAUTHENTICATED") && err.contains("client_token_file"),
        "{err}"
    );
    let o = c.cli_env(&["status"], &env);
    assert!(o.status.success(), "{}", text(&o));

    // Neither token appears in the coordinator's debug log.
    let log = c.coordinator_log();
    assert!(log.contains("coordinator started"), "{log}");
    for t in [CLIENT_TOKEN, WORKER_TOKEN] {
        assert!(!log.contains(t), "a token leaked into the log");
        assert!(!String::from_utf8_lossy(&o.stderr).contains(t));
    }
}

struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    worker_cert: PathBuf,
    worker_key: PathBuf,
}

impl Pki {
    /// The files [`pki`] wrote into `dir`.
    fn in_dir(dir: &Path) -> Pki {
        Pki {
            ca: dir.join("ca.pem"),
            other_ca: dir.join("other-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            worker_cert: dir.join("worker.pem"),
            worker_key: dir.join("worker.key"),
        }
    }
}

/// A CA, a server certificate for localhost/127.0.0.1, a worker client
/// certificate, and an unrelated CA.
fn pki(dir: &Path) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let ca_of = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca")
    };
    let ca = ca_of("stemforge test CA");
    let other = ca_of("some other CA");
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        let cert = p.signed_by(&key, &ca).expect("sign");
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(
        vec!["localhost".into(), "127.0.0.1".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "coordinator",
    );
    let (worker_cert, worker_key) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, "worker-1");
    let write = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write pem");
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        other_ca: write("other-ca.pem", &other.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        worker_cert: write("worker.pem", &worker_cert),
        worker_key: write("worker.key", &worker_key),
    }
}

#[test]
fn tls_serves_only_tls_and_workers_need_a_client_certificate() {
    let mut c = coordinator("sec-tls", |dir| {
        let pki = pki(dir);
        let mut env = tokens(dir);
        env.extend([
            ("STEMFORGE_TLS_CERT", pki.server_cert.display().to_string()),
            ("STEMFORGE_TLS_KEY", pki.server_key.display().to_string()),
            ("STEMFORGE_TLS_CLIENT_CA", pki.ca.display().to_string()),
        ]);
        env
    });
    let dir = c.dir().to_path_buf();
    let pki = Pki::in_dir(&dir);
    assert!(c.url().starts_with("https://127.0.0.1:"), "{}", c.url());
    let url = c.url().to_string();
    let client_env = vec![
        ("STEMFORGE_TLS_CA", pki.ca.display().to_string()),
        (
            "STEMFORGE_CLIENT_TOKEN_FILE",
            dir.join("client.token").display().to_string(),
        ),
    ];

    // Health and a client call over TLS, verified against the CA.
    let o = c.cli_env(&["health"], &client_env);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "SERVING");
    let o = c.cli_env(&["status"], &client_env);
    assert!(o.status.success(), "{}", text(&o));

    // Plain text to the TLS port fails; so does a server the CA did not sign.
    let plain = format!("http://{}", c.addr());
    let token_file = dir.join("client.token").display().to_string();
    let o = stemforge_env(
        &["status", "--coordinator", &plain],
        &[("STEMFORGE_CLIENT_TOKEN_FILE", &token_file)],
    );
    assert!(
        !o.status.success(),
        "plain text to a TLS port must fail:\n{}",
        text(&o)
    );
    let wrong_ca = vec![
        ("STEMFORGE_TLS_CA", pki.other_ca.display().to_string()),
        (
            "STEMFORGE_CLIENT_TOKEN_FILE",
            dir.join("client.token").display().to_string(),
        ),
    ];
    let o = c.cli_env(&["status"], &wrong_ca);
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("issuer"),
        "{err}"
    );

    // A worker without a client certificate is refused even with its token.
    let code = rt().block_on(async {
        let ch = Channel::from_shared(url.clone())
            .expect("url")
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).expect("ca"))),
            )
            .expect("tls")
            .connect()
            .await
            .expect("connect over TLS");
        let req = LeaseTaskRequest {
            worker_id: "no-cert".into(),
            wait_ms: 0,
            draining: false,
        };
        TasksClient::new(ch)
            .lease_task(with_token(req, Some(WORKER_TOKEN)))
            .await
            .err()
            .map(|s| (s.code(), s.message().to_string()))
    });
    let (code, msg) = code.expect("refused");
    assert_eq!(code, tonic::Code::Unauthenticated, "{msg}");
    assert!(msg.contains("client certificate"), "{msg}");

    // A real worker process with its certificate renders a job end to end.
    let spec = tiny_spec(&dir.join("media"));
    let (ca, cert, key) = (
        pki.ca.display().to_string(),
        pki.worker_cert.display().to_string(),
        pki.worker_key.display().to_string(),
    );
    c.start_worker_env(
        "tls-worker",
        &[
            ("STEMFORGE_TLS_CA", ca.as_str()),
            ("STEMFORGE_TLS_CLIENT_CERT", &cert),
            ("STEMFORGE_TLS_CLIENT_KEY", &key),
            ("STEMFORGE_POLL_WAIT_MS", "300"),
        ],
    );
    let out = dir.join("media/out");
    let o = c.submit_output(&spec, &out, &[], &client_env);
    assert!(o.status.success(), "{}", text(&o));
    let job = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let st = c.wait_job_env(&job, Duration::from_secs(90), &client_env);
    assert_eq!(
        st["state"],
        "succeeded",
        "{st:#}\n{}",
        c.log("worker-tls-worker.log")
    );
    assert!(
        st["tasks"]
            .as_array()
            .is_some_and(|t| t.iter().all(|t| t["worker_id"] == "tls-worker"))
    );
    assert!(out.join("manifest.json").is_file());
}

#[test]
fn an_open_api_beyond_loopback_needs_an_explicit_flag() {
    let dir = scratch("sec-exposure");
    let o = stemforge_testkit::command()
        .args(["coordinator", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.join("data"))
        .env("STEMFORGE_LOG", "warn")
        .output()
        .expect("run");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0")
            && err.contains("TLS")
            && err.contains("--insecure"),
        "{err}"
    );
    assert!(
        !dir.join("data/jobs.sqlite").exists(),
        "refused before touching the store"
    );
    let c = Cluster::builder("sec-exposure-insecure")
        .env("STEMFORGE_LOG", "debug")
        .listen("0.0.0.0:0")
        .args(&["--insecure"])
        .start()
        .expect("starts with --insecure");
    std::thread::sleep(Duration::from_millis(200));
    let log = c.coordinator_log();
    assert!(
        log.contains("WARN") && log.contains("anyone who can reach this address"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metrics_beyond_loopback_need_the_explicit_flag_too() {
    let dir = scratch("sec-metrics-exposure");
    let o = stemforge_testkit::command()
        .args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .env("STEMFORGE_LOG", "warn")
        .output()
        .expect("run");
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("refusing to serve metrics on 0.0.0.0:")
            && err.contains("127.0.0.1")
            && err.contains("--insecure"),
        "{err}"
    );
    assert!(
        !dir.join("data/jobs.sqlite").exists(),
        "refused before touching the store"
    );
    let c = Cluster::builder("sec-metrics-insecure")
        .env("STEMFORGE_LOG", "debug")
        .metrics(false)
        .args(&["--metrics-listen", "0.0.0.0:0", "--insecure"])
        .start()
        .expect("starts with --insecure");
    let log = c.coordinator_log();
    assert!(
        log.contains("WARN") && log.contains("serving /metrics beyond loopback on 0.0.0.0:"),
        "{log}"
    );
    drop(c);
    // metrics_public allows the metrics address alone: the API on a
    // non-loopback address without TLS is still refused...
    let o = stemforge_testkit::command()
        .args([
            "coordinator",
            "--listen",
            "0.0.0.0:0",
            "--metrics-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.join("data2"))
        .env("STEMFORGE_LOG", "warn")
        .env("STEMFORGE_METRICS_PUBLIC", "true")
        .output()
        .expect("run");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("refusing to serve metrics"));
    // ...and with the API on loopback the coordinator starts, warning.
    let c = Cluster::builder("sec-metrics-public")
        .env("STEMFORGE_LOG", "debug")
        .env("STEMFORGE_METRICS_PUBLIC", "true")
        .metrics(false)
        .args(&["--metrics-listen", "0.0.0.0:0"])
        .start()
        .expect("starts with metrics_public");
    assert!(
        c.coordinator_log()
            .contains("serving /metrics beyond loopback on 0.0.0.0:")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn media_roots_confine_specs_at_submission_and_again_on_workers() {
    let mut c = coordinator("sec-roots", |dir| {
        vec![(
            "STEMFORGE_MEDIA_ROOTS",
            dir.join("media").display().to_string(),
        )]
    });
    let dir = c.dir().to_path_buf();
    let media = dir.join("media");
    let inside = tiny_spec(&media.join("show"));
    let outside = tiny_spec(&dir.join("elsewhere"));
    let submit = |c: &Cluster, spec: &Path, out: &Path| c.submit_output(spec, out, &[], &[]);
    let o = submit(&c, &outside, &media.join("out-a"));
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("titles[0].stems[0].file") && err.contains("outside the media roots"),
        "{err}"
    );
    let o = submit(&c, &inside, &dir.join("elsewhere/out"));
    assert!(!o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("output folder") && err.contains("outside the media roots"),
        "{err}"
    );
    // A symbolic link inside the root to a folder outside it is no way out.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.join("elsewhere"), media.join("escape")).expect("symlink");
        let o = submit(&c, &inside, &media.join("escape/out"));
        assert!(!o.status.success(), "{}", text(&o));
    }
    // Accepted by the coordinator, refused by a worker whose roots differ
    // (another mount layout): the task fails at once, not retried.
    let o = submit(&c, &inside, &media.join("out-ok"));
    assert!(o.status.success(), "{}", text(&o));
    let job = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let elsewhere = dir.join("elsewhere").display().to_string();
    c.start_worker_env(
        "narrow",
        &[
            ("STEMFORGE_MEDIA_ROOTS", elsewhere.as_str()),
            ("STEMFORGE_POLL_WAIT_MS", "300"),
        ],
    );
    let st = c.wait_job(&job, Duration::from_secs(90));
    assert_eq!(st["state"], "failed", "{st:#}");
    let first = &st["tasks"][0];
    assert_eq!(first["attempt"], 1, "{first:#}");
    let e = first["error"].as_str().unwrap_or_default();
    assert!(e.contains("outside this worker's media roots"), "{first:#}");
    assert!(!media.join("out-ok").join("manifest.json").exists() || st["state"] == "failed");
}

#[test]
fn independent_clients_list_the_services_by_reflection_and_ask_health() {
    let c = coordinator("sec-reflection", tokens);

    // Python grpcio (reflection v1alpha), an implementation we did not write.
    let python = std::env::var("STEMFORGE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/grpc_probe.py");
    let o = Command::new(&python)
        .arg(&probe)
        .arg(c.addr())
        .arg(CLIENT_TOKEN)
        .output()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    assert!(
        o.status.success(),
        "the Python probe failed (it needs `pip install grpcio grpcio-reflection grpcio-health-checking`; .ci/run sets STEMFORGE_TEST_PYTHON to such an interpreter):\n{}",
        text(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("probe prints JSON");
    let services: Vec<&str> = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for s in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "stemforge.v1.Jobs",
        "stemforge.v1.Tasks",
    ] {
        assert!(services.contains(&s), "{s} not listed: {services:?}");
    }
    assert!(
        v["jobs_methods"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "SubmitJob"))
    );
    assert!(
        v["tasks_methods"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "ReleaseTask"))
    );
    for s in ["", "stemforge.v1.Jobs", "stemforge.v1.Tasks"] {
        assert_eq!(v["health"][s], "SERVING", "{v}");
    }
    assert_eq!(v["jobs_listed"], serde_json::json!([]));
    assert_eq!(v["without_token"], "UNAUTHENTICATED");

    // Reflection v1 (what grpcurl 1.8+ asks first), through tonic's client.
    let names = rt().block_on(async {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let ch = Channel::from_shared(c.url().to_string())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        let mut client = ServerReflectionClient::new(ch);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .expect("reflection v1")
            .into_inner();
        let msg = stream
            .message()
            .await
            .expect("answer")
            .expect("one message");
        match msg.message_response {
            Some(MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    });
    assert!(names.iter().any(|n| n == "stemforge.v1.Jobs"), "{names:?}");
}
