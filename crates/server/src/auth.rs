//! Who may call the server, and for what: bearer tokens and HTTP basic-auth users, each with
//! scopes (`serve.auth`). The route table ([`required_scope`]) says which scope every route
//! needs; `serve`'s middleware checks it before any handler runs.
//!
//! Tokens are compared by SHA-256 digest against every configured token with a constant-time
//! comparison and no early exit, so the time an answer takes does not tell how much of a token
//! was right. Basic-auth passwords are bcrypt hashes (as Prometheus' `web.config.file` takes
//! them); a password that verified once is remembered by digest so that a sender which
//! authenticates every request (Prometheus remote-write does) pays bcrypt's cost once.

use axum::http;
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use subtle::ConstantTimeEq;

/// What a credential allows. `admin` allows everything the others do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Push telemetry, alerts and changes (remote-write, OTLP, Loki push, webhooks).
    Ingest,
    /// Read incidents, alerts, anomalies, topology, actions, the audit log and `/metrics`.
    Read,
    /// Ask the assistant and the LLM (`/api/v1/ask`, `/mcp`).
    Ask,
    /// Acknowledge incidents, approve and reject actions, the kill switch.
    Act,
    /// Everything.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::Ingest,
        Scope::Read,
        Scope::Ask,
        Scope::Act,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Ask => "ask",
            Scope::Act => "act",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: `/healthz`, `/readyz`.
    Open,
    /// The route authenticates its caller itself, by a secret of its source (the GitHub,
    /// GitLab, Argo CD and Slack hooks sign or carry their own).
    OwnSecret,
    /// A credential with this scope (or `admin`).
    Scope(Scope),
}

/// The scope each route needs: the one table the middleware and the docs go by. A path the
/// server does not serve needs `read`, so that nobody learns which paths exist without one.
pub fn required_scope(method: &http::Method, path: &str, metrics_public: bool) -> Access {
    use Scope::*;
    let write = method != http::Method::GET && method != http::Method::HEAD;
    match path {
        "/healthz" | "/readyz" => Access::Open,
        "/metrics" if metrics_public => Access::Open,
        "/hooks/github"
        | "/hooks/gitlab"
        | "/hooks/argocd"
        | "/hooks/slack/commands"
        | "/hooks/slack/interactions" => Access::OwnSecret,
        "/api/v1/write"
        | "/api/v1/alerts/alertmanager"
        | "/v1/metrics"
        | "/v1/traces"
        | "/v1/logs"
        | "/loki/api/v1/push" => Access::Scope(Ingest),
        "/api/v1/alerts" | "/api/v1/changes" if write => Access::Scope(Ingest),
        "/api/v1/ask" => Access::Scope(Ask),
        p if p == "/mcp" || p.starts_with("/mcp/") => Access::Scope(Ask),
        "/api/v1/kill-switch" if write => Access::Scope(Act),
        p if write
            && p.starts_with("/api/v1/actions/")
            && (p.ends_with("/approve") || p.ends_with("/reject")) =>
        {
            Access::Scope(Act)
        }
        p if write && p.starts_with("/api/v1/incidents/") && p.ends_with("/acknowledge") => {
            Access::Scope(Act)
        }
        _ => Access::Scope(Read),
    }
}

/// One bearer token.
#[derive(Clone)]
pub struct Token {
    pub name: String,
    /// The token itself (read from `token` or `token_file`).
    pub secret: String,
    pub scopes: BTreeSet<Scope>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// One basic-auth user: a bcrypt hash of the password and the user's scopes.
#[derive(Debug, Clone)]
pub struct BasicUser {
    pub hash: String,
    pub scopes: BTreeSet<Scope>,
}

/// `serve.auth`, checked.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub tokens: Vec<Token>,
    pub basic_auth_users: BTreeMap<String, BasicUser>,
    /// Serve without credentials even on a non-loopback address (warned at every start).
    pub insecure_open: bool,
    /// `/metrics` without a credential.
    pub metrics_public: bool,
}

impl AuthConfig {
    /// Whether any credential is configured (the server then checks every route).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty() || !self.basic_auth_users.is_empty()
    }

    /// Whether `name` is a configured token or user that may send telemetry and alerts (the
    /// `ingest` scope, or `admin`).
    pub fn may_ingest(&self, name: &str) -> bool {
        let ingests = |scopes: &BTreeSet<Scope>| grants(scopes, Scope::Ingest);
        self.tokens
            .iter()
            .any(|t| t.name == name && ingests(&t.scopes))
            || self
                .basic_auth_users
                .get(name)
                .is_some_and(|u| ingests(&u.scopes))
    }
}

/// Who a request comes from, as the server authenticated it: the only name that reaches the
/// audit log, acknowledgements and decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
}

impl Identity {
    pub fn allows(&self, scope: Scope) -> bool {
        grants(&self.scopes, scope)
    }
}

/// Whether holding `scopes` allows `scope`: `admin` allows every scope.
fn grants(scopes: &BTreeSet<Scope>, scope: Scope) -> bool {
    scopes.contains(&Scope::Admin) || scopes.contains(&scope)
}

/// A credential the request carried, as parsed from its `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    None,
    Bearer(String),
    Basic {
        user: String,
        password: String,
    },
    /// A header that is neither (named in the 401).
    Malformed,
}

impl Presented {
    pub fn from_header(value: Option<&http::HeaderValue>) -> Presented {
        use base64::Engine;
        let Some(v) = value else {
            return Presented::None;
        };
        let Ok(v) = v.to_str() else {
            return Presented::Malformed;
        };
        let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            return Presented::Bearer(rest.to_string());
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                return Presented::Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                };
            }
        }
        Presented::Malformed
    }
}

/// How many verified basic-auth passwords are remembered; beyond it the oldest are forgotten
/// (and counted), and those users pay bcrypt once more.
const VERIFIED_CAPACITY: usize = 1024;

/// Digests of `user:password` that verified (to the user), and the order they did.
type Verified = (
    HashMap<[u8; 32], String>,
    std::collections::VecDeque<[u8; 32]>,
);

/// Checks credentials against the configuration.
pub struct Authenticator {
    tokens: Vec<([u8; 32], Identity)>,
    users: BTreeMap<String, (String, Identity)>,
    /// Digests of `user:password` that verified, in the order they did.
    verified: Mutex<Verified>,
    /// Remembered verifications forgotten to keep the bound.
    pub forgotten: std::sync::atomic::AtomicU64,
}

/// Any bcrypt hash (of a password nobody has), verified when the user is unknown so that an
/// unknown user takes as long as a wrong password.
const DUMMY_HASH: &str = "$2b$10$CwTycUXWue0Thq9StjUM0uJ8.l3cFgJ4gXyOBjB4XtSgcS6yC2Hsa";

fn digest(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Authenticator {
        Authenticator {
            tokens: config
                .tokens
                .iter()
                .map(|t| {
                    (
                        digest(t.secret.as_bytes()),
                        Identity {
                            name: t.name.clone(),
                            scopes: t.scopes.clone(),
                        },
                    )
                })
                .collect(),
            users: config
                .basic_auth_users
                .iter()
                .map(|(name, u)| {
                    (
                        name.clone(),
                        (
                            u.hash.clone(),
                            Identity {
                                name: name.clone(),
                                scopes: u.scopes.clone(),
                            },
                        ),
                    )
                })
                .collect(),
            verified: Mutex::new(Default::default()),
            forgotten: Default::default(),
        }
    }

    /// Whether basic auth is offered (for `WWW-Authenticate`).
    pub fn offers_basic(&self) -> bool {
        !self.users.is_empty()
    }

    /// The identity a bearer token names: every token is compared, whole.
    pub fn token(&self, token: &str) -> Option<Identity> {
        let given = digest(token.as_bytes());
        let mut found = None;
        for (d, who) in &self.tokens {
            if bool::from(d.ct_eq(&given)) && found.is_none() {
                found = Some(who.clone());
            }
        }
        found
    }

    /// The identity a user and password name. Slow (bcrypt) the first time a password is
    /// seen: call it off the async runtime.
    pub fn basic(&self, user: &str, password: &str) -> Option<Identity> {
        let key = digest(format!("{user}\0{password}").as_bytes());
        let known = self.users.get(user);
        if let Some((_, who)) = known {
            let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.0.get(&key).is_some_and(|name| name == user) {
                return Some(who.clone());
            }
        }
        let hash = known.map(|(h, _)| h.as_str()).unwrap_or(DUMMY_HASH);
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        let who = known.filter(|_| ok).map(|(_, who)| who.clone())?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *verified;
        if map.insert(key, user.to_string()).is_none() {
            order.push_back(key);
        }
        while order.len() > VERIFIED_CAPACITY {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
                self.forgotten
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Some(who)
    }
}

/// Whether `hash` is a bcrypt hash `basic_auth_users` can verify against.
pub fn is_bcrypt_hash(hash: &str) -> bool {
    hash.parse::<bcrypt::HashParts>().is_ok()
}

/// Whether `addr` only accepts connections from this machine.
pub fn is_loopback(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn config() -> AuthConfig {
        AuthConfig {
            tokens: vec![Token {
                name: "prom".into(),
                secret: "s3cret-token-abcdef".into(),
                scopes: [Scope::Ingest].into(),
            }],
            basic_auth_users: [(
                "alice".to_string(),
                BasicUser {
                    hash: bcrypt::hash("pa:ss", 4).unwrap(),
                    scopes: [Scope::Read, Scope::Act].into(),
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn tokens_and_passwords_name_their_identity_and_nothing_else() {
        let a = Authenticator::new(&config());
        assert_eq!(a.token("s3cret-token-abcdef").unwrap().name, "prom");
        assert!(a.token("s3cret-token-abcdeF").is_none());
        assert!(a.token("").is_none());
        let who = a.basic("alice", "pa:ss").unwrap();
        assert!(who.allows(Scope::Act) && !who.allows(Scope::Ingest));
        assert_eq!(a.basic("alice", "pa:ss").unwrap().name, "alice");
        assert!(a.basic("alice", "wrong").is_none());
        assert!(a.basic("bob", "pa:ss").is_none());
    }

    #[test]
    fn admin_allows_every_scope() {
        let admin = Identity {
            name: "root".into(),
            scopes: [Scope::Admin].into(),
        };
        assert!(Scope::ALL.iter().all(|s| admin.allows(*s)));
    }

    #[test]
    fn authorization_headers_are_parsed() {
        let h = |s: &str| Presented::from_header(Some(&http::HeaderValue::from_str(s).unwrap()));
        assert_eq!(h("Bearer abc"), Presented::Bearer("abc".into()));
        assert_eq!(h("bearer  abc "), Presented::Bearer("abc".into()));
        // "alice:pa:ss": the password may hold a colon.
        assert_eq!(
            h("Basic YWxpY2U6cGE6c3M="),
            Presented::Basic {
                user: "alice".into(),
                password: "pa:ss".into()
            }
        );
        assert_eq!(h("Basic !!!"), Presented::Malformed);
        assert_eq!(h("Token abc"), Presented::Malformed);
        assert_eq!(h("Bearer"), Presented::Malformed);
        assert_eq!(Presented::from_header(None), Presented::None);
    }

    #[test]
    fn the_route_table_guards_writes_and_opens_only_the_probes() {
        let s = |m: Method, p: &str| required_scope(&m, p, false);
        assert_eq!(s(Method::GET, "/healthz"), Access::Open);
        assert_eq!(s(Method::GET, "/metrics"), Access::Scope(Scope::Read));
        assert_eq!(required_scope(&Method::GET, "/metrics", true), Access::Open);
        assert_eq!(
            s(Method::POST, "/api/v1/alerts"),
            Access::Scope(Scope::Ingest)
        );
        assert_eq!(s(Method::GET, "/api/v1/alerts"), Access::Scope(Scope::Read));
        assert_eq!(
            s(Method::POST, "/api/v1/actions/a1/approve"),
            Access::Scope(Scope::Act)
        );
        assert_eq!(s(Method::POST, "/mcp"), Access::Scope(Scope::Ask));
        assert_eq!(s(Method::POST, "/hooks/github"), Access::OwnSecret);
        assert_eq!(s(Method::GET, "/nothing-here"), Access::Scope(Scope::Read));
    }
}
