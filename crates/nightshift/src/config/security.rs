//! `serve.auth`, `serve.tls` and `serve.limits`: read and checked, each mistake named by its key.

use super::check_duration;
use anyhow::{Result, anyhow, bail};
use nightshift_server::auth::{AuthConfig, BasicUser, Scope, Token};
use nightshift_server::config::{ClientAuth, EdgeLimits, TlsConfig};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, RawUser>,
    #[serde(default)]
    insecure_open: bool,
    #[serde(default)]
    metrics_public: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    token: Option<String>,
    token_file: Option<PathBuf>,
    scopes: Vec<String>,
}

/// A bcrypt hash (the user reads, asks and acts), or a hash with the user's scopes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawUser {
    Hash(String),
    WithScopes { hash: String, scopes: Vec<String> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    client_auth: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    max_connections: Option<usize>,
    max_in_flight: Option<usize>,
}

/// The fewest characters a token may have.
const MIN_TOKEN: usize = 16;

fn scopes(key: &str, names: &[String]) -> Result<BTreeSet<Scope>> {
    if names.is_empty() {
        bail!("{key}: give at least one of ingest, read, ask, act, admin");
    }
    names
        .iter()
        .map(|n| {
            Scope::parse(n.trim()).ok_or_else(|| {
                anyhow!("{key}: {n:?} is not a scope; use ingest, read, ask, act or admin")
            })
        })
        .collect()
}

pub(super) fn check_auth(raw: RawAuth) -> Result<AuthConfig> {
    let mut names = BTreeSet::new();
    let mut tokens = Vec::new();
    for (i, t) in raw.tokens.into_iter().enumerate() {
        let key = format!("serve.auth.tokens[{i}]");
        if t.name.trim().is_empty() {
            bail!("{key}.name: name the token's holder, e.g. prometheus");
        }
        if !names.insert(t.name.clone()) {
            bail!("{key}.name: {} is used twice", t.name);
        }
        let secret = match (t.token, &t.token_file) {
            (Some(s), None) => s,
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| anyhow!("{key}.token_file: cannot read {}: {e}", f.display()))?
                .trim()
                .to_string(),
            _ => bail!("{key}: give either token or token_file"),
        };
        if secret.len() < MIN_TOKEN || secret.chars().any(char::is_whitespace) {
            bail!(
                "{key}: a token has at least {MIN_TOKEN} characters and no spaces (e.g. `openssl rand -hex 32`)"
            );
        }
        if tokens.iter().any(|x: &Token| x.secret == secret) {
            bail!("{key}: the same token is given twice; give each holder its own");
        }
        tokens.push(Token {
            name: t.name,
            secret,
            scopes: scopes(&format!("{key}.scopes"), &t.scopes)?,
        });
    }
    let mut users = BTreeMap::new();
    for (name, u) in raw.basic_auth_users {
        let key = format!("serve.auth.basic_auth_users.{name}");
        if !names.insert(name.clone()) {
            bail!("{key}: {name} is also a token's name");
        }
        if name.contains(':') || name.trim().is_empty() {
            bail!("{key}: a user name has no colon and is not empty");
        }
        let (hash, scopes) = match u {
            RawUser::Hash(h) => (h, [Scope::Read, Scope::Ask, Scope::Act].into()),
            RawUser::WithScopes { hash, scopes: s } => {
                (hash, scopes(&format!("{key}.scopes"), &s)?)
            }
        };
        if !nightshift_server::auth::is_bcrypt_hash(&hash) {
            bail!(
                "{key}: not a bcrypt hash; make one with `htpasswd -nbBC 10 \"\" PASSWORD | tr -d ':\\n'`"
            );
        }
        users.insert(name, BasicUser { hash, scopes });
    }
    Ok(AuthConfig {
        tokens,
        basic_auth_users: users,
        insecure_open: raw.insecure_open,
        metrics_public: raw.metrics_public,
    })
}

pub(super) fn check_tls(raw: RawTls) -> Result<TlsConfig> {
    let client_auth = match raw.client_auth.as_deref() {
        None if raw.client_ca_file.is_some() => ClientAuth::Require,
        None | Some("none") => ClientAuth::None,
        Some("optional") => ClientAuth::Optional,
        Some("require") => ClientAuth::Require,
        Some(other) => bail!("serve.tls.client_auth: {other:?} is not none, optional or require"),
    };
    if client_auth != ClientAuth::None && raw.client_ca_file.is_none() {
        bail!(
            "serve.tls.client_ca_file: client_auth needs the CA that client certificates chain to"
        );
    }
    let tls = TlsConfig {
        cert_file: raw.cert_file,
        key_file: raw.key_file,
        client_ca_file: raw.client_ca_file,
        client_auth,
    };
    // Read now, so that a wrong file is named before anything starts.
    nightshift_server::tls::server_config(&tls).map_err(|e| anyhow!(e))?;
    Ok(tls)
}

pub(super) fn check_limits(raw: RawLimits) -> Result<EdgeLimits> {
    let d = EdgeLimits::default();
    let header_timeout_ms = check_duration(
        "serve.limits.header_timeout",
        raw.header_timeout.as_deref(),
        d.header_timeout_ms,
        100..=600_000,
    )?;
    let body_timeout_ms = check_duration(
        "serve.limits.body_timeout",
        raw.body_timeout.as_deref(),
        d.body_timeout_ms,
        100..=600_000,
    )?;
    let max_connections = raw.max_connections.unwrap_or(d.max_connections);
    if !(1..=1_000_000).contains(&max_connections) {
        bail!("serve.limits.max_connections: {max_connections} is outside 1 to 1000000");
    }
    let max_in_flight = raw.max_in_flight.unwrap_or(d.max_in_flight);
    if !(1..=100_000).contains(&max_in_flight) {
        bail!("serve.limits.max_in_flight: {max_in_flight} is outside 1 to 100000");
    }
    Ok(EdgeLimits {
        header_timeout_ms,
        body_timeout_ms,
        max_connections,
        max_in_flight,
    })
}
