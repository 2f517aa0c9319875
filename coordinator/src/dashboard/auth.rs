//! Who is looking at the dashboard: sessions made by logging in with the
//! client token, their cookies and CSRF tokens, and the same-origin check
//! every POST passes.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use axum::http::header;

use crate::security::{random_hex, secrets_equal};
use crate::server::now_ms;

/// How long a session lasts after login.
pub const SESSION_TTL_MS: i64 = 12 * 3_600_000;
/// Sessions kept at most (the oldest go first): memory stays bounded
/// whatever a client does with the login form.
const MAX_SESSIONS: usize = 1_024;

#[derive(Debug, Clone)]
pub struct Session {
    /// Embedded in every form of the session's pages and checked on every
    /// POST.
    pub csrf: String,
    pub expires_ms: i64,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new session: a random id (256 bits) and CSRF token.
    pub fn create(&self) -> anyhow::Result<(String, Session)> {
        let id = random_hex()?;
        let s = Session {
            csrf: random_hex()?,
            expires_ms: now_ms() + SESSION_TTL_MS,
        };
        let now = now_ms();
        let mut m = self
            .map
            .lock()
            .map_err(|_| anyhow::anyhow!("session table poisoned"))?;
        m.retain(|_, v| v.expires_ms > now);
        while m.len() >= MAX_SESSIONS {
            let oldest = m
                .iter()
                .min_by_key(|(_, v)| v.expires_ms)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => m.remove(&k),
                None => break,
            };
        }
        m.insert(id.clone(), s.clone());
        Ok((id, s))
    }

    /// The live session with this id (compared as a map key: the id is 256
    /// random bits, so its lookup time says nothing useful about others).
    pub fn get(&self, id: &str) -> Option<Session> {
        let m = self.map.lock().ok()?;
        m.get(id).filter(|s| s.expires_ms > now_ms()).cloned()
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(id);
        }
    }
}

/// The session cookie's name. Over TLS it carries the `__Host-` prefix:
/// browsers accept it only with `Secure`, `Path=/` and no `Domain`.
pub fn cookie_name(tls: bool) -> &'static str {
    if tls {
        "__Host-stemforge_session"
    } else {
        "stemforge_session"
    }
}

/// `Set-Cookie` for a new session: `HttpOnly` (no script reads it),
/// `SameSite=Strict` (no other site's page sends it), `Secure` whenever the
/// dashboard is served over TLS.
pub fn session_cookie(id: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        cookie_name(tls),
        SESSION_TTL_MS / 1000
    )
}

/// `Set-Cookie` removing the session cookie.
pub fn clear_cookie(tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}",
        cookie_name(tls)
    )
}

/// The value of cookie `name` in the request, if any.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
}

/// Whether a POST comes from a page of this dashboard: its `Origin` (or,
/// without one, its `Referer`) names the scheme and host the request was
/// sent to. A request with neither is refused: browsers send `Origin` on
/// form posts.
pub fn same_origin(headers: &HeaderMap, tls: bool) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let scheme = if tls { "https" } else { "http" };
    let expected = format!("{scheme}://{host}");
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) {
        return origin.eq_ignore_ascii_case(&expected);
    }
    if let Some(referer) = headers.get(header::REFERER).and_then(|h| h.to_str().ok()) {
        let rest = referer.get(expected.len()..).unwrap_or("x");
        return referer
            .get(..expected.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(&expected))
            && (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'));
    }
    false
}

/// Whether `presented` is the session's CSRF token (constant time).
pub fn csrf_ok(session: &Session, presented: &str) -> bool {
    !presented.is_empty() && secrets_equal(&session.csrf, presented)
}

/// A local path to return to after a login or an action: only paths of
/// this site (`/…`, not `//host…`), else the jobs page.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn posts_must_come_from_this_origin() {
        let ok = headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "http://127.0.0.1:9464"),
        ]);
        assert!(same_origin(&ok, false));
        assert!(!same_origin(&ok, true), "scheme must match");
        let other = headers(&[
            ("host", "127.0.0.1:9464"),
            ("origin", "http://evil.example"),
        ]);
        assert!(!same_origin(&other, false));
        let referer = headers(&[("host", "h:1"), ("referer", "https://h:1/jobs/x?after=3")]);
        assert!(same_origin(&referer, true));
        let prefix = headers(&[("host", "h:1"), ("referer", "https://h:10/")]);
        assert!(
            !same_origin(&prefix, true),
            "a longer port is another origin"
        );
        assert!(!same_origin(&headers(&[("host", "h:1")]), false));
    }

    #[test]
    fn cookies_sessions_and_return_paths() {
        let h = headers(&[("cookie", "a=1; stemforge_session=abc ; b=2")]);
        assert_eq!(read_cookie(&h, "stemforge_session").as_deref(), Some("abc"));
        assert!(session_cookie("x", true).contains("; Secure"));
        assert!(session_cookie("x", true).starts_with("__Host-"));
        assert!(!session_cookie("x", false).contains("Secure"));
        let s = Sessions::default();
        let (id, sess) = s.create().expect("session");
        assert_eq!(id.len(), 64);
        assert!(csrf_ok(&sess, &sess.csrf));
        assert!(!csrf_ok(&sess, ""));
        assert!(!csrf_ok(&sess, "wrong"));
        assert!(s.get(&id).is_some());
        s.remove(&id);
        assert!(s.get(&id).is_none());
        assert_eq!(local_path(Some("/jobs/a")), "/jobs/a");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(None), "/");
    }
}
