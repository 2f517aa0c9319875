//! Connecting to a coordinator: TLS (server verified against a configured
//! CA, optionally presenting a client certificate) and a bearer token on
//! every call. Shared by workers and client commands.

use std::fmt;
use std::path::PathBuf;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::v1::jobs_client::JobsClient;
use crate::v1::tasks_client::TasksClient;

/// A bearer token. Its `Debug`/`Display` never show the value, so it cannot
/// end up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from configuration; surrounding whitespace (a file's trailing
    /// newline) is not part of it.
    pub fn new(value: &str) -> Result<Token, ClientError> {
        let v = value.trim();
        if v.is_empty() {
            return Err(ClientError::Config("a token is empty".into()));
        }
        if v.len() < 16 {
            return Err(ClientError::Config(
                "a token is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)".into(),
            ));
        }
        if !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::Config(
                "a token may hold only printable ASCII without spaces".into(),
            ));
        }
        Ok(Token(v.to_string()))
    }

    /// Reads a token file (one token, surrounding whitespace ignored).
    pub fn from_file(path: &std::path::Path) -> Result<Token, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ClientError::Config(format!(
                "cannot read the token file {}: {e}",
                path.display()
            ))
        })?;
        Token::new(&text).map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))
    }

    /// The secret itself, for the comparison on the server side.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// TLS settings of a client: the CA that signed the coordinator's
/// certificate, and (for mutual TLS) this client's own certificate and key.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name to verify the coordinator's certificate for, when it differs
    /// from the URL's host.
    pub domain: Option<String>,
}

/// Where the coordinator is and how to prove who we are.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub tls: ClientTls,
    pub token: Option<Token>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach the coordinator at {url}: {reason}")]
    Connect { url: String, reason: String },
}

/// Adds `authorization: Bearer …` to every request.
#[derive(Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel that carries the token.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

impl Endpoint {
    pub fn plain(url: &str) -> Endpoint {
        Endpoint {
            url: url.to_string(),
            tls: ClientTls::default(),
            token: None,
        }
    }

    fn is_https(&self) -> bool {
        self.url.starts_with("https://")
    }

    fn endpoint(&self) -> Result<tonic::transport::Endpoint, ClientError> {
        let mut ep = Channel::from_shared(self.url.clone()).map_err(|e| {
            ClientError::Config(format!(
                "`{}` is not a coordinator URL ({e}); write http://HOST:PORT or https://HOST:PORT",
                self.url
            ))
        })?;
        let t = &self.tls;
        if self.is_https() {
            let ca = t.ca.as_ref().ok_or_else(|| {
                ClientError::Config(format!(
                    "{} is https but no CA is configured to verify it: set tls_ca (or STEMFORGE_TLS_CA) to the CA certificate (PEM)",
                    self.url
                ))
            })?;
            let mut cfg =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca, "tls_ca")?));
            match (&t.cert, &t.key) {
                (Some(c), Some(k)) => {
                    cfg = cfg.identity(Identity::from_pem(
                        read(c, "tls_client_cert")?,
                        read(k, "tls_client_key")?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(ClientError::Config(
                        "tls_client_cert and tls_client_key go together: set both or neither"
                            .into(),
                    ));
                }
            }
            if let Some(d) = &t.domain {
                cfg = cfg.domain_name(d.clone());
            }
            ep = ep
                .tls_config(cfg)
                .map_err(|e| ClientError::Config(format!("TLS settings for {}: {e}", self.url)))?;
        } else if t.ca.is_some() || t.cert.is_some() {
            return Err(ClientError::Config(format!(
                "TLS files are configured but {} is plain http; use https://",
                self.url
            )));
        }
        Ok(ep)
    }

    fn bearer(&self) -> Result<Bearer, ClientError> {
        self.token
            .as_ref()
            .map(|t| {
                MetadataValue::try_from(format!("Bearer {}", t.expose()))
                    .map_err(|_| ClientError::Config("the token is not valid header text".into()))
            })
            .transpose()
            .map(Bearer)
    }

    /// A channel that connects on first use (and reconnects after losses).
    pub fn lazy(&self) -> Result<AuthChannel, ClientError> {
        let ch = self.endpoint()?.connect_lazy();
        Ok(InterceptedService::new(ch, self.bearer()?))
    }

    /// Connects now, so a wrong address or a TLS mismatch is reported here.
    pub async fn connect(&self) -> Result<AuthChannel, ClientError> {
        let ch = self
            .endpoint()?
            .connect()
            .await
            .map_err(|e| ClientError::Connect {
                url: self.url.clone(),
                reason: error_chain(&e),
            })?;
        Ok(InterceptedService::new(ch, self.bearer()?))
    }

    pub fn jobs(&self, ch: AuthChannel) -> JobsClient<AuthChannel> {
        JobsClient::new(ch)
    }

    pub fn tasks(&self, ch: AuthChannel) -> TasksClient<AuthChannel> {
        TasksClient::new(ch)
    }
}

/// An error and its causes on one line (transport errors hide the useful
/// part, e.g. a certificate problem, in their sources).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_never_printed() {
        let t = Token::new("  s3cr3t-s3cr3t-s3cr3t\n").expect("token");
        assert_eq!(t.expose(), "s3cr3t-s3cr3t-s3cr3t");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        let e = Endpoint {
            url: "http://x".into(),
            tls: ClientTls::default(),
            token: Some(t),
        };
        assert!(!format!("{e:?}").contains("s3cr3t"));
    }

    #[test]
    fn weak_or_odd_tokens_are_refused() {
        assert!(Token::new("").is_err());
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in the middle!").is_err());
    }

    #[test]
    fn https_without_a_ca_says_what_to_set() {
        let e = Endpoint::plain("https://coordinator:7447").lazy().err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("tls_ca"), "{msg}");
    }
}
