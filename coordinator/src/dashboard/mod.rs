//! The operator dashboard on the coordinator's HTTP listener, beside
//! `/metrics`: jobs (state, weighted progress, priority, label, submitted,
//! ETA), a job's titles × outputs grid with verdicts, loudness and links to
//! its report, manifest and files, workers, schedules and hot folders; live
//! through server-sent events (`/events`), which a few lines of script turn
//! into a refetch of the page's live fragment. Server-rendered (askama
//! templates compiled in), no build step for the browser side.
//!
//! Rules: viewing needs a session (a login with the client token) unless
//! `dashboard_public_read` is set or no client token is configured; every
//! action (cancel, retry, priority) is a POST that needs a session, its
//! CSRF token and a same-origin `Origin`/`Referer`, else 403. Without a
//! client token, logging in (with no token) is possible only when the
//! listener is on loopback. Files are served from the job's output folder
//! only. When the coordinator has TLS, dashboard pages are served over
//! TLS only (plain HTTP is redirected) and the session cookie is `Secure`.

mod auth;
pub mod listener;
mod views;

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Form, Path as AxPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::sync::watch;
use tonic::Status;

pub use listener::{HttpListener, Peer, tls_acceptor};

use crate::security::Auth;
use crate::server::Coordinator;
use auth::{Session, Sessions};

/// How the dashboard is served.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    pub auth: Auth,
    /// `dashboard_public_read`: view without logging in.
    pub public_read: bool,
    /// The listener is on a loopback address.
    pub loopback: bool,
    /// The listener has TLS: dashboard pages only over it.
    pub tls: bool,
}

struct Inner {
    coord: Arc<Coordinator>,
    opts: DashboardOptions,
    sessions: Sessions,
    weights: views::WeightCache,
    /// Failed logins wait their turn here, one at a time, each delayed.
    login_gate: tokio::sync::Mutex<()>,
    /// Logins waiting at the gate, bounded.
    login_queue: Arc<tokio::sync::Semaphore>,
    /// Live `/events` streams open, bounded.
    sse_streams: Arc<tokio::sync::Semaphore>,
    stop: watch::Receiver<bool>,
}

#[derive(Clone)]
struct Dash(Arc<Inner>);

/// Live `/events` streams at once (every open dashboard tab holds one).
const SSE_MAX_STREAMS: usize = 256;

/// Logins that may wait at the gate at once.
const LOGIN_QUEUE: usize = 32;

/// A failed login's delay (and, through the gate, the most guesses per
/// second any number of clients get).
const LOGIN_FAILURE_DELAY: Duration = Duration::from_millis(750);
/// The live region refreshes at most this often.
const SSE_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The HTTP listener's routes: `/metrics` when `metrics`, the dashboard
/// when `dashboard` is given.
pub fn app(
    coord: Arc<Coordinator>,
    metrics: bool,
    dashboard: Option<DashboardOptions>,
    stop: watch::Receiver<bool>,
) -> Router {
    let metrics = if metrics {
        Router::new()
            .route("/metrics", get(crate::metrics_http::metrics))
            .with_state(coord.clone())
    } else {
        Router::new()
    };
    let Some(opts) = dashboard else {
        return metrics;
    };
    let dash = Dash(Arc::new(Inner {
        coord,
        opts,
        sessions: Sessions::default(),
        weights: Default::default(),
        login_gate: tokio::sync::Mutex::new(()),
        login_queue: Arc::new(tokio::sync::Semaphore::new(LOGIN_QUEUE)),
        sse_streams: Arc::new(tokio::sync::Semaphore::new(SSE_MAX_STREAMS)),
        stop,
    }));
    let pages = Router::new()
        .route("/", get(jobs_page))
        .route("/jobs/{id}", get(job_page))
        .route("/jobs/{id}/files/{*path}", get(job_file))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
        .route("/jobs/{id}/priority", post(priority))
        .route("/workers", get(workers_page))
        .route("/automations", get(automations_page))
        .route("/events", get(events))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/static/dashboard.js", get(script))
        .route("/static/dashboard.css", get(style))
        .layer(axum::middleware::from_fn_with_state(dash.clone(), guard))
        .with_state(dash);
    metrics.merge(pages)
}

/// Serves `app` on `listener` until `shutdown` turns true.
pub async fn serve(app: Router, listener: HttpListener, mut shutdown: watch::Receiver<bool>) {
    let r = axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "HTTP listener stopped");
    }
}

/// Every dashboard response: over TLS when the coordinator has it (a plain
/// GET is redirected to https, anything else refused), and headers that
/// keep the pages out of frames, caches and other origins' scripts.
async fn guard(State(d): State<Dash>, req: Request, next: Next) -> Response {
    let tls = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .is_some_and(|c| c.0.tls);
    // Over plain HTTP a page of another site whose name was re-pointed at
    // this address (DNS rebinding) would be same-origin with the
    // dashboard: plain HTTP answers only to an IP address or `localhost`.
    // (Over TLS the certificate's name stops it.)
    if !tls {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !plain_host_ok(host) {
            return text(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "over plain HTTP the dashboard answers only to an IP address or localhost, not '{host}': open it by address (e.g. http://127.0.0.1:PORT/), or serve it over TLS"
                ),
            );
        }
    }
    if d.0.opts.tls && !tls {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_string();
        if req.method() == Method::GET && !host.is_empty() {
            let to = format!(
                "https://{host}{}",
                req.uri().path_and_query().map_or("/", |p| p.as_str())
            );
            return redirect(StatusCode::PERMANENT_REDIRECT, &to);
        }
        return text(
            StatusCode::FORBIDDEN,
            "the dashboard is served over https only on this coordinator".into(),
        );
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        if !h.contains_key(&k) {
            h.insert(k, HeaderValue::from_static(v));
        }
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    res
}

/// A `Host` header naming an IP address or `localhost`, with or without a
/// port.
fn plain_host_ok(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port or [v6]
        match rest.split_once(']') {
            Some((v6, tail)) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok()
                    && (tail.is_empty()
                        || tail.strip_prefix(':').is_some_and(|p| {
                            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
                        }));
            }
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => n,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Who is asking, and what they may do.
struct Viewer {
    session: Option<Session>,
    session_id: Option<String>,
}

impl Dash {
    fn viewer(&self, headers: &HeaderMap, peer: &Peer) -> Viewer {
        let id = auth::read_cookie(headers, auth::cookie_name(peer.tls));
        let session = id.as_deref().and_then(|id| self.0.sessions.get(id));
        Viewer {
            session_id: session.as_ref().and(id),
            session,
        }
    }

    fn can_view(&self, v: &Viewer) -> bool {
        v.session.is_some() || self.0.opts.public_read || !self.0.opts.auth.has_client_token()
    }

    /// Logging in is possible: with the client token, or on loopback when
    /// none is configured.
    fn can_login(&self) -> bool {
        self.0.opts.auth.has_client_token() || self.0.opts.loopback
    }

    fn note(&self) -> String {
        if !self.0.opts.auth.has_client_token() {
            if self.0.opts.loopback {
                return "No client token is configured: anyone on this machine can log in and act on jobs.".into();
            }
            return "No client token is configured: the dashboard is read-only beyond loopback."
                .into();
        }
        String::new()
    }
}

fn redirect(code: StatusCode, to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (code, [(header::LOCATION, v)]).into_response(),
        Err(_) => text(StatusCode::BAD_REQUEST, "bad redirect target".into()),
    }
}

fn text(code: StatusCode, body: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body + "\n",
    )
        .into_response()
}

fn html(code: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (
            code,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering the page failed: {e}"),
        ),
    }
}

fn status_response(s: Status) -> Response {
    let code = match s.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::FailedPrecondition | tonic::Code::InvalidArgument => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(code, s.message().to_string())
}

/// `s` percent-encoded for a query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn to_login(path_and_query: &str) -> Response {
    redirect(
        StatusCode::SEE_OTHER,
        &format!("/login?next={}", encode(path_and_query)),
    )
}

#[derive(Template)]
#[template(path = "dashboard/page.html")]
struct PageT<'a> {
    title: &'a str,
    nav: &'a str,
    logged_in: bool,
    can_login: bool,
    csrf: &'a str,
    path: &'a str,
    note: String,
    fragment_url: &'a str,
    live: &'a str,
}

/// A whole page around its live fragment, or the fragment alone.
#[allow(clippy::too_many_arguments)]
fn page(
    d: &Dash,
    v: &Viewer,
    title: &str,
    nav: &str,
    path: &str,
    fragment_url: &str,
    live: Result<String, askama::Error>,
    fragment: bool,
) -> Response {
    let live = match live {
        Ok(l) => l,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("rendering the page failed: {e}"),
            );
        }
    };
    if fragment {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            live,
        )
            .into_response();
    }
    let csrf = v.session.as_ref().map_or("", |s| s.csrf.as_str());
    html(
        StatusCode::OK,
        &PageT {
            title,
            nav,
            logged_in: v.session.is_some(),
            can_login: d.can_login(),
            csrf,
            path,
            note: d.note(),
            fragment_url,
            live: &live,
        },
    )
}

#[derive(Deserialize, Default)]
struct PageQuery {
    page: Option<usize>,
    after: Option<u32>,
    fragment: Option<String>,
}

#[derive(Template)]
#[template(path = "dashboard/jobs_live.html")]
struct JobsLiveT<'a> {
    rows: &'a [views::JobRow],
    page: usize,
    pages: usize,
    total_shown: usize,
    can_act: bool,
    csrf: &'a str,
    back: &'a str,
}

async fn jobs_page(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = d.viewer(&headers, &peer);
    let fragment = q.fragment.is_some();
    let here = match q.page {
        Some(p) => format!("/?page={p}"),
        None => "/".to_string(),
    };
    if !d.can_view(&v) {
        return if fragment {
            text(StatusCode::UNAUTHORIZED, "log in first".into())
        } else {
            to_login(&here)
        };
    }
    // Reading the scheduler (a lock) is kept off the async threads.
    let inner = d.0.clone();
    let want = q.page.unwrap_or(1);
    let read =
        tokio::task::spawn_blocking(move || views::jobs_page(&inner.coord, &inner.weights, want))
            .await;
    let (rows, page_no, pages) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(s)) => return status_response(s),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let csrf = v.session.as_ref().map_or("", |s| s.csrf.as_str());
    let live = JobsLiveT {
        rows: &rows,
        page: page_no,
        pages,
        total_shown: rows.len(),
        can_act: v.session.is_some(),
        csrf,
        back: &here,
    }
    .render();
    let frag = format!("/?page={page_no}&fragment=1");
    page(&d, &v, "Jobs", "jobs", &here, &frag, live, fragment)
}

#[derive(Template)]
#[template(path = "dashboard/job_live.html")]
struct JobLiveT<'a> {
    job: &'a views::JobRow,
    output_dir: &'a str,
    links: Vec<(&'static str, &'static str)>,
    grid: &'a views::JobGrid,
    can_act: bool,
    csrf: &'a str,
    back: &'a str,
    after: Option<u32>,
}

async fn job_page(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    AxPath(id): AxPath<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = d.viewer(&headers, &peer);
    let fragment = q.fragment.is_some();
    let here = match q.after {
        Some(a) => format!("/jobs/{id}?after={a}"),
        None => format!("/jobs/{id}"),
    };
    if !d.can_view(&v) {
        return if fragment {
            text(StatusCode::UNAUTHORIZED, "log in first".into())
        } else {
            to_login(&here)
        };
    }
    // The scheduler's lock, the spec's parse and the output folder's file
    // checks (often a network mount) are kept off the async threads.
    let inner = d.0.clone();
    let (want_id, after) = (id.clone(), q.after);
    let read = tokio::task::spawn_blocking(move || {
        let coord = &inner.coord;
        let (job, leased) = coord.read(|s| Ok((s.job_record(&want_id)?, s.leased()?)))?;
        let row = views::job_row(coord, &inner.weights, &job, &leased)?;
        let grid = views::job_grid(coord, &job, after)?;
        let links: Vec<(&'static str, &'static str)> = [
            ("QC report", "report.html"),
            ("manifest (JSON)", "manifest.json"),
            ("manifest (CSV)", "manifest.csv"),
        ]
        .into_iter()
        .filter(|(_, f)| views::output_file_exists(&job, f))
        .collect();
        Ok::<_, Status>((job, row, grid, links))
    })
    .await;
    let (job, row, grid, links) = match read {
        Ok(Ok(r)) => r,
        Ok(Err(s)) => return status_response(s),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let csrf = v.session.as_ref().map_or("", |s| s.csrf.as_str());
    let live = JobLiveT {
        job: &row,
        output_dir: &job.output_dir,
        links,
        grid: &grid,
        can_act: v.session.is_some(),
        csrf,
        back: &here,
        after: q.after,
    }
    .render();
    let frag = match q.after {
        Some(a) => format!("/jobs/{id}?after={a}&fragment=1"),
        None => format!("/jobs/{id}?fragment=1"),
    };
    let title = if job.label.is_empty() {
        format!("Job {id}")
    } else {
        format!("Job {} ({id})", job.label)
    };
    page(&d, &v, &title, "jobs", &here, &frag, live, fragment)
}

/// The rule for files: a path relative to the job's output folder made of
/// plain names only (no `..`, no root), that resolves — symbolic links
/// followed — to a file inside that folder. Anything else is not found.
fn confine(root: &str, rel: &str) -> Option<PathBuf> {
    let rel_path = Path::new(rel);
    if rel.is_empty()
        || rel_path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let root = std::fs::canonicalize(root).ok()?;
    let full = std::fs::canonicalize(root.join(rel_path)).ok()?;
    (full.starts_with(&root) && full.is_file()).then_some(full)
}

fn content_type(p: &Path) -> &'static str {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "csv" => "text/csv; charset=utf-8",
        "txt" | "md" | "toml" | "log" => "text/plain; charset=utf-8",
        "wav" | "bwf" => "audio/wav",
        "flac" => "audio/flac",
        "aif" | "aiff" => "audio/aiff",
        "zip" => "application/zip",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

async fn job_file(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    AxPath((id, rel)): AxPath<(String, String)>,
) -> Response {
    let v = d.viewer(&headers, &peer);
    if !d.can_view(&v) {
        return to_login(&format!("/jobs/{id}"));
    }
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            "no such file in the job's output folder".into(),
        )
    };
    let Ok(job) = d.0.coord.read(|s| s.job_record(&id)) else {
        return not_found();
    };
    let Some(path) = confine(&job.output_dir, &rel) else {
        return not_found();
    };
    let Ok(mut file) = std::fs::File::open(&path) else {
        return not_found();
    };
    let len = file.metadata().map(|m| m.len()).ok();
    // Streamed in chunks from a blocking thread: a file is never read
    // whole into memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    // Files are the job's, not the dashboard's: no script in them runs
    // with the dashboard's origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:",
        ),
    );
    res
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    next: Option<String>,
    priority: Option<String>,
}

/// The checks every action passes: a live session, its CSRF token, a
/// same-origin request. Returns the refusal, if refused.
fn refuse_post(d: &Dash, headers: &HeaderMap, peer: &Peer, csrf: &str) -> Option<Response> {
    let v = d.viewer(headers, peer);
    let Some(s) = v.session else {
        return Some(text(
            StatusCode::FORBIDDEN,
            "log in with the client token first".into(),
        ));
    };
    if !auth::csrf_ok(&s, csrf) || !auth::same_origin(headers, peer.tls) {
        return Some(text(
            StatusCode::FORBIDDEN,
            "refused: the form's CSRF token or origin does not match this session".into(),
        ));
    }
    None
}

async fn cancel(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    AxPath(id): AxPath<String>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(r) = refuse_post(&d, &headers, &peer, &f.csrf) {
        return r;
    }
    match d.0.coord.cancel(&id) {
        Ok(()) => {
            tracing::info!(job = %id, "cancelled from the dashboard");
            redirect(StatusCode::SEE_OTHER, &auth::local_path(f.next.as_deref()))
        }
        Err(s) => status_response(s),
    }
}

async fn retry(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    AxPath(id): AxPath<String>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(r) = refuse_post(&d, &headers, &peer, &f.csrf) {
        return r;
    }
    match d.0.coord.retry(&id, None) {
        Ok(_) => redirect(StatusCode::SEE_OTHER, &auth::local_path(f.next.as_deref())),
        Err(s) => status_response(s),
    }
}

async fn priority(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    AxPath(id): AxPath<String>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(r) = refuse_post(&d, &headers, &peer, &f.csrf) {
        return r;
    }
    let Some(p) = f
        .priority
        .as_deref()
        .and_then(|p| p.trim().parse::<i32>().ok())
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "priority must be a whole number (higher runs first)".into(),
        );
    };
    match d.0.coord.set_priority(&id, p) {
        Ok(()) => redirect(StatusCode::SEE_OTHER, &auth::local_path(f.next.as_deref())),
        Err(s) => status_response(s),
    }
}

#[derive(Template)]
#[template(path = "dashboard/workers_live.html")]
struct WorkersLiveT<'a> {
    rows: &'a [views::WorkerRow],
}

async fn workers_page(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = d.viewer(&headers, &peer);
    let fragment = q.fragment.is_some();
    if !d.can_view(&v) {
        return if fragment {
            text(StatusCode::UNAUTHORIZED, "log in first".into())
        } else {
            to_login("/workers")
        };
    }
    let rows = match views::workers(&d.0.coord) {
        Ok(r) => r,
        Err(s) => return status_response(s),
    };
    let live = WorkersLiveT { rows: &rows }.render();
    page(
        &d,
        &v,
        "Workers",
        "workers",
        "/workers",
        "/workers?fragment=1",
        live,
        fragment,
    )
}

struct ScheduleRow {
    name: String,
    cron: String,
    time_zone: String,
    spec: String,
    priority: i32,
    label: String,
    last_run: String,
    next_run: String,
    last_job: String,
    last_error: String,
}

struct WatchRow {
    folder: String,
    template: String,
    mode: String,
    settle_s: f64,
    submitted: u32,
    waiting: u32,
    rejected: u32,
    last_scan: String,
    last_submit: String,
    last_job: String,
    last_error: String,
}

#[derive(Template)]
#[template(path = "dashboard/automations_live.html")]
struct AutomationsLiveT {
    schedules: Vec<ScheduleRow>,
    watches: Vec<WatchRow>,
}

async fn automations_page(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let v = d.viewer(&headers, &peer);
    let fragment = q.fragment.is_some();
    if !d.can_view(&v) {
        return if fragment {
            text(StatusCode::UNAUTHORIZED, "log in first".into())
        } else {
            to_login("/automations")
        };
    }
    let a = &d.0.coord.automations;
    let schedules = a
        .schedules()
        .into_iter()
        .map(|s| ScheduleRow {
            name: s.name,
            cron: s.cron,
            time_zone: s.time_zone,
            spec: s.spec,
            priority: s.priority,
            label: s.label,
            last_run: views::fmt_opt_time(s.last_run_ms),
            next_run: views::fmt_opt_time(s.next_run_ms),
            last_job: s.last_job.unwrap_or_default(),
            last_error: s.last_error.unwrap_or_default(),
        })
        .collect();
    let watches = a
        .watches()
        .into_iter()
        .map(|w| WatchRow {
            folder: w.folder,
            template: w.template,
            mode: w.mode,
            settle_s: w.settle_s,
            submitted: w.submitted,
            waiting: w.waiting,
            rejected: w.rejected,
            last_scan: views::fmt_opt_time(w.last_scan_ms),
            last_submit: views::fmt_opt_time(w.last_submit_ms),
            last_job: w.last_job.unwrap_or_default(),
            last_error: w.last_error.unwrap_or_default(),
        })
        .collect();
    let live = AutomationsLiveT { schedules, watches }.render();
    page(
        &d,
        &v,
        "Schedules and hot folders",
        "automations",
        "/automations",
        "/automations?fragment=1",
        live,
        fragment,
    )
}

/// What the live regions depend on beyond job changes: the progress of
/// leased tasks (to 0.5%) and who holds them.
fn progress_fingerprint(coord: &Coordinator) -> Vec<(String, String, i64)> {
    coord
        .read(|s| s.leased())
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            (
                t.task_id,
                t.worker_id.unwrap_or_default(),
                (t.progress * 200.0).round() as i64,
            )
        })
        .collect()
}

/// Server-sent events: `change` when a job changed (woken by the
/// coordinator), `progress` when leased tasks moved (looked at every
/// second); at most one per second. Ends when the coordinator shuts down.
async fn events(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    let v = d.viewer(&headers, &peer);
    if !d.can_view(&v) {
        return text(StatusCode::UNAUTHORIZED, "log in first".into());
    }
    // Each stream is a task that reads the scheduler once a second at most:
    // their number is bounded.
    let Ok(permit) = d.0.sse_streams.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("more than {SSE_MAX_STREAMS} live dashboards are open: close some"),
        );
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, Infallible>>(4);
    let coord = d.0.coord.clone();
    let mut stop = d.0.stop.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut last_fp = progress_fingerprint(&coord);
        let mut last_sent = Instant::now() - SSE_MIN_INTERVAL;
        let mut seq: u64 = 0;
        loop {
            let changed = coord.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let kind = tokio::select! {
                _ = &mut changed => "change",
                _ = tokio::time::sleep(SSE_MIN_INTERVAL) => "tick",
                _ = stop.wait_for(|s| *s) => break,
                _ = tx.closed() => break,
            };
            let wait = SSE_MIN_INTERVAL.saturating_sub(last_sent.elapsed());
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {},
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            let fp = progress_fingerprint(&coord);
            let kind = match kind {
                "change" => "change",
                _ if fp != last_fp => "progress",
                _ => continue,
            };
            last_fp = fp;
            seq += 1;
            let ev = Event::default().id(seq.to_string()).data(kind);
            if tx.send(Ok(ev)).await.is_err() {
                break;
            }
            last_sent = Instant::now();
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
struct LoginT<'a> {
    next: &'a str,
    error: &'a str,
    has_token: bool,
    can_login: bool,
    note: String,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_form(State(d): State<Dash>, Query(q): Query<NextQuery>) -> Response {
    let next = auth::local_path(q.next.as_deref());
    html(
        StatusCode::OK,
        &LoginT {
            next: &next,
            error: "",
            has_token: d.0.opts.auth.has_client_token(),
            can_login: d.can_login(),
            note: d.note(),
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn login(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = auth::local_path(f.next.as_deref());
    let again = |code: StatusCode, error: &str| {
        html(
            code,
            &LoginT {
                next: &next,
                error,
                has_token: d.0.opts.auth.has_client_token(),
                can_login: d.can_login(),
                note: d.note(),
            },
        )
    };
    if !auth::same_origin(&headers, peer.tls) {
        return text(
            StatusCode::FORBIDDEN,
            "refused: the login form was not sent from this dashboard".into(),
        );
    }
    if !d.can_login() {
        return again(
            StatusCode::FORBIDDEN,
            "This coordinator has no client token: logging in is possible on loopback only.",
        );
    }
    let auth = &d.0.opts.auth;
    // Every attempt takes its turn at the gate before the token is compared,
    // and a wrong one holds the gate for the delay: however many guesses
    // arrive at once, they are judged one at a time, so guessing stays
    // slow. Attempts queue at most `LOGIN_QUEUE` deep; beyond, 429.
    let Ok(_queued) = d.0.login_queue.clone().try_acquire_owned() else {
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            "too many logins at once: try again in a moment".into(),
        );
    };
    let turn = d.0.login_gate.lock().await;
    if auth.has_client_token() && !auth.client_token_matches(&f.token) {
        tokio::time::sleep(LOGIN_FAILURE_DELAY).await;
        drop(turn);
        tracing::warn!(peer = %peer.addr, "dashboard login with a wrong token");
        return again(
            StatusCode::UNAUTHORIZED,
            "That is not this coordinator's client token.",
        );
    }
    drop(turn);
    let (id, _) = match d.0.sessions.create() {
        Ok(s) => s,
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    tracing::info!(peer = %peer.addr, "dashboard login");
    let mut res = redirect(StatusCode::SEE_OTHER, &next);
    if let Ok(v) = HeaderValue::from_str(&auth::session_cookie(&id, peer.tls)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn logout(
    State(d): State<Dash>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(r) = refuse_post(&d, &headers, &peer, &f.csrf) {
        return r;
    }
    if let Some(id) = d.viewer(&headers, &peer).session_id {
        d.0.sessions.remove(&id);
    }
    let mut res = redirect(StatusCode::SEE_OTHER, "/login");
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie(peer.tls)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/dashboard.js"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/dashboard.css"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_answers_only_to_addresses_and_localhost() {
        for ok in [
            "127.0.0.1:9464",
            "127.0.0.1",
            "localhost:80",
            "LOCALHOST",
            "[::1]:9464",
            "[::1]",
            "10.0.0.5:9464",
        ] {
            assert!(plain_host_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "rebind.evil:9464",
            "evil.localhost:9464",
            "127.0.0.1.nip.io:9464",
            "[::1",
            "[::1]x",
            "127.0.0.1:",
            "127.0.0.1:9a",
            "coordinator:9464",
        ] {
            assert!(!plain_host_ok(bad), "{bad}");
        }
    }

    #[test]
    fn files_stay_inside_the_output_folder() {
        let dir = std::env::temp_dir().join(format!("sf-dash-confine-{}", std::process::id()));
        let out = dir.join("out");
        std::fs::create_dir_all(out.join("sub")).expect("mkdir");
        std::fs::write(out.join("sub/a.wav"), b"x").expect("write");
        std::fs::write(dir.join("secret.txt"), b"s").expect("write");
        let root = out.to_str().expect("utf-8");
        assert!(confine(root, "sub/a.wav").is_some());
        assert!(confine(root, "../secret.txt").is_none());
        assert!(confine(root, "sub/../../secret.txt").is_none());
        assert!(confine(root, "/etc/passwd").is_none());
        assert!(confine(root, "sub").is_none(), "folders are not files");
        assert!(confine(root, "").is_none());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.join("secret.txt"), out.join("link.txt"))
                .expect("symlink");
            assert!(confine(root, "link.txt").is_none(), "no symlink escape");
        }
        assert_eq!(
            content_type(Path::new("x/REPORT.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.wav")), "audio/wav");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn eta_and_durations() {
        assert_eq!(views::eta(0.5, 0, 60_000, true), "1m 00s");
        assert_eq!(views::eta(0.001, 0, 60_000, true), "–");
        assert_eq!(views::eta(0.5, 0, 60_000, false), "–");
        assert_eq!(views::fmt_duration(7_200_000), "2h 00m");
        assert_eq!(encode("/jobs/a b?x=1"), "/jobs/a%20b%3Fx%3D1");
    }
}
