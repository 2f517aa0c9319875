//! Who may call what: bearer tokens per role (clients on `Jobs`, workers on
//! `Tasks`), compared in constant time and never logged; the coordinator's
//! TLS identity and the CA its workers' client certificates must chain to;
//! and the guards against exposing a plain, open API or `/metrics` on the
//! network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use stemforge_proto::client::Token;
use subtle::ConstantTimeEq;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The two kinds of caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Submits and follows jobs (`stemforge.v1.Jobs`).
    Client,
    /// Leases and reports tasks (`stemforge.v1.Tasks`).
    Worker,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Worker => "worker",
        }
    }
}

/// SHA-256 of a token: what is kept and compared, so comparison time depends
/// on neither the secret's length nor where a guess first differs.
#[derive(Clone)]
struct Digested([u8; 32]);

impl Digested {
    fn of(s: &[u8]) -> Digested {
        Digested(Sha256::digest(s).into())
    }

    fn matches(&self, other: &Digested) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// The tokens a coordinator accepts. A role without a token is open (the
/// zero-config loopback default); the exposure guard keeps that off networks.
#[derive(Clone, Default)]
pub struct Auth {
    client: Option<Digested>,
    worker: Option<Digested>,
    /// Workers must present a client certificate (mutual TLS).
    require_worker_cert: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("client_token", &self.client.is_some())
            .field("worker_token", &self.worker.is_some())
            .field("require_worker_cert", &self.require_worker_cert)
            .finish()
    }
}

impl Auth {
    pub fn new(client: Option<&Token>, worker: Option<&Token>, require_worker_cert: bool) -> Auth {
        Auth {
            client: client.map(|t| Digested::of(t.expose().as_bytes())),
            worker: worker.map(|t| Digested::of(t.expose().as_bytes())),
            require_worker_cert,
        }
    }

    /// No tokens: anyone who can connect may call anything.
    pub fn open() -> Auth {
        Auth::default()
    }

    pub fn has_both_tokens(&self) -> bool {
        self.client.is_some() && self.worker.is_some()
    }

    /// Whether a client token is configured (the dashboard's login).
    pub fn has_client_token(&self) -> bool {
        self.client.is_some()
    }

    /// Whether `presented` is the client token, compared in constant time
    /// on digests (false when none is configured).
    pub fn client_token_matches(&self, presented: &str) -> bool {
        self.client
            .as_ref()
            .is_some_and(|c| c.matches(&Digested::of(presented.trim().as_bytes())))
    }

    fn expected(&self, role: Role) -> Option<&Digested> {
        match role {
            Role::Client => self.client.as_ref(),
            Role::Worker => self.worker.as_ref(),
        }
    }

    /// Admits `req` to a service of `role`, or says why not:
    /// `UNAUTHENTICATED` for a missing or unknown token (or a worker without
    /// its certificate), `PERMISSION_DENIED` for the other role's token.
    pub fn check<T>(&self, req: &Request<T>, role: Role) -> Result<(), Status> {
        if role == Role::Worker && self.require_worker_cert && !has_peer_cert(req) {
            return Err(Status::unauthenticated(
                "workers must present a client certificate signed by the coordinator's tls_client_ca",
            ));
        }
        let Some(expected) = self.expected(role) else {
            return Ok(());
        };
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| Digested::of(t.trim().as_bytes()));
        let Some(presented) = presented else {
            return Err(Status::unauthenticated(format!(
                "no bearer token: this coordinator requires the {} token (set {}_token_file or STEMFORGE_{}_TOKEN)",
                role.name(),
                role.name(),
                role.name().to_ascii_uppercase()
            )));
        };
        if presented.matches(expected) {
            return Ok(());
        }
        let other = match role {
            Role::Client => Role::Worker,
            Role::Worker => Role::Client,
        };
        if self.expected(other).is_some_and(|o| presented.matches(o)) {
            return Err(Status::permission_denied(format!(
                "the {} token is not allowed to call the {} API",
                other.name(),
                role.name()
            )));
        }
        Err(Status::unauthenticated(format!(
            "the bearer token is not this coordinator's {} token",
            role.name()
        )))
    }

    /// An interceptor admitting callers of `role`.
    pub fn interceptor(
        self: &Arc<Self>,
        role: Role,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
        let auth = self.clone();
        move |req: Request<()>| {
            auth.check(&req, role)?;
            Ok(req)
        }
    }
}

/// A fresh random token (256 bits from the operating system, hex).
pub fn random_token() -> anyhow::Result<Token> {
    Ok(Token::new(&random_hex()?)?)
}

/// 256 bits from the operating system's random source, hex: session ids
/// and CSRF tokens of the dashboard, generated tokens.
pub fn random_hex() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| anyhow::anyhow!("cannot read random bytes for a session token: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Constant-time equality of two secrets (on their digests, so neither
/// length nor the first difference shows in the time taken).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    Digested::of(a.as_bytes()).matches(&Digested::of(b.as_bytes()))
}

fn has_peer_cert<T>(req: &Request<T>) -> bool {
    req.peer_certs().is_some_and(|c| !c.is_empty())
}

/// The coordinator's TLS files.
#[derive(Debug, Clone)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA for client certificates: when set, workers must present one.
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    pub fn config(&self) -> anyhow::Result<ServerTlsConfig> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", p.display()))
        };
        let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(
            read(&self.cert, "tls_cert")?,
            read(&self.key, "tls_key")?,
        ));
        if let Some(ca) = &self.client_ca {
            // Optional at the TLS layer: clients need no certificate; the
            // Tasks service then refuses workers without one.
            cfg = cfg
                .client_ca_root(Certificate::from_pem(read(ca, "tls_client_ca")?))
                .client_auth_optional(true);
        }
        Ok(cfg)
    }
}

/// Refuses to serve an unprotected API beyond this machine unless the
/// operator said so explicitly; then it warns. Protected means TLS and both
/// tokens.
pub fn exposure_check(
    addr: SocketAddr,
    tls: bool,
    auth: &Auth,
    allow_insecure: bool,
) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !tls {
        missing.push("TLS (tls_cert, tls_key)");
    }
    if auth.client.is_none() {
        missing.push("a client token (client_token_file)");
    }
    if auth.worker.is_none() {
        missing.push("a worker token (worker_token_file)");
    }
    if missing.is_empty() {
        return Ok(());
    }
    if allow_insecure {
        tracing::warn!(
            %addr,
            "serving beyond loopback without {}: anyone who can reach this address can submit jobs and lease tasks (--insecure)",
            missing.join(", ")
        );
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen on {addr} without {}: configure them, listen on 127.0.0.1, or pass --insecure (allow_insecure = true) to accept the risk",
        missing.join(", ")
    )
}

/// Refuses to serve `/metrics` (plain HTTP, no tokens) beyond this machine
/// unless the operator said so explicitly; then it warns. The same rule as
/// [`exposure_check`] for the API: nothing unauthenticated leaves loopback
/// without `--insecure`.
pub fn metrics_exposure_check(addr: SocketAddr, allow_insecure: bool) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if allow_insecure {
        tracing::warn!(
            %addr,
            "serving /metrics beyond loopback on {addr} without TLS or tokens: anyone who can reach this address can read the coordinator's metrics (metrics_public or --insecure)"
        );
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve metrics on {addr}: /metrics is plain HTTP without tokens; serve it on a loopback address (--metrics-listen 127.0.0.1:PORT), or set metrics_public = true (STEMFORGE_METRICS_PUBLIC=true; --insecure also allows it) when only trusted hosts (e.g. your Prometheus) can reach {addr}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut().insert(
                "authorization",
                format!("Bearer {t}").parse().expect("header"),
            );
        }
        r
    }

    fn tok(s: &str) -> Token {
        Token::new(s).expect("token")
    }

    #[test]
    fn each_role_accepts_its_own_token_only() {
        let (c, w) = (
            tok("client-token-0123456789"),
            tok("worker-token-0123456789"),
        );
        let auth = Auth::new(Some(&c), Some(&w), false);
        assert!(auth.check(&req(Some(c.expose())), Role::Client).is_ok());
        assert!(auth.check(&req(Some(w.expose())), Role::Worker).is_ok());
        let code = |r: Result<(), Status>| r.err().map(|s| s.code());
        assert_eq!(
            code(auth.check(&req(Some(c.expose())), Role::Worker)),
            Some(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            code(auth.check(&req(Some(w.expose())), Role::Client)),
            Some(tonic::Code::PermissionDenied)
        );
        assert_eq!(
            code(auth.check(&req(None), Role::Client)),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            code(auth.check(&req(Some("client-token-0123456780")), Role::Client)),
            Some(tonic::Code::Unauthenticated)
        );
    }

    #[test]
    fn refusals_never_echo_a_token() {
        let c = tok("client-token-0123456789");
        let auth = Auth::new(Some(&c), None, false);
        let guess = "guess-guess-guess-guess";
        let msg = auth
            .check(&req(Some(guess)), Role::Client)
            .err()
            .map(|s| s.message().to_string())
            .unwrap_or_default();
        assert!(!msg.contains(guess) && !msg.contains(c.expose()), "{msg}");
        assert!(!format!("{auth:?}").contains(c.expose()));
    }

    #[test]
    fn open_roles_admit_anyone_and_the_guard_keeps_them_local() {
        let auth = Auth::open();
        assert!(auth.check(&req(None), Role::Worker).is_ok());
        let lan: SocketAddr = "0.0.0.0:7447".parse().expect("addr");
        let lo: SocketAddr = "127.0.0.1:7447".parse().expect("addr");
        assert!(exposure_check(lo, false, &auth, false).is_ok());
        let e = exposure_check(lan, false, &auth, false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("TLS") && e.contains("--insecure"), "{e}");
        assert!(exposure_check(lan, false, &auth, true).is_ok());
        let (c, w) = (
            tok("client-token-0123456789"),
            tok("worker-token-0123456789"),
        );
        let full = Auth::new(Some(&c), Some(&w), false);
        assert!(exposure_check(lan, true, &full, false).is_ok());
        assert!(exposure_check(lan, false, &full, false).is_err());
    }

    #[test]
    fn metrics_stay_on_loopback_unless_insecure() {
        for lo in ["127.0.0.1:9464", "[::1]:9464"] {
            let lo: SocketAddr = lo.parse().expect("addr");
            assert!(metrics_exposure_check(lo, false).is_ok());
        }
        for lan in ["0.0.0.0:9464", "[::]:9464", "192.168.1.20:9464"] {
            let lan: SocketAddr = lan.parse().expect("addr");
            let e = metrics_exposure_check(lan, false)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains(&format!("metrics on {lan}"))
                    && e.contains("--insecure")
                    && e.contains("127.0.0.1"),
                "{e}"
            );
            assert!(metrics_exposure_check(lan, true).is_ok());
        }
    }
}
