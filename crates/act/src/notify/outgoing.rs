//! One HTTP request as the providers send it and as the audit log shows it: method, URL,
//! headers and body, with the secrets masked in the shown copy only.

use crate::provider::StepError;
use reqwest::{Method, Url};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// How long one call may take, connection to last byte.
pub(super) const TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an answer is read; the rest is left unread.
pub(super) const BODY_CAP: usize = 64 * 1024;

/// What secrets are replaced by in a recorded request.
pub(super) const MASK: &str = "***";

pub(super) enum Body {
    None,
    /// Sent as JSON; `shown` is the copy for the record, secrets masked.
    Json {
        sent: Value,
        shown: Value,
    },
    Text(String),
}

struct Header {
    name: String,
    value: String,
    secret: bool,
}

pub(super) struct Outgoing {
    method: Method,
    url: Url,
    /// The URL as recorded.
    pub shown_url: String,
    headers: Vec<Header>,
    body: Body,
}

/// The answer, read up to [`BODY_CAP`].
pub(super) struct Reply {
    pub status: u16,
    pub text: String,
    /// Whether the body was longer than [`BODY_CAP`] and `text` holds only its start.
    pub truncated: bool,
    /// Where the answer came from (differs from the request's URL after a redirect).
    pub url: Url,
}

impl Outgoing {
    pub fn new(method: Method, url: Url) -> Self {
        Self {
            shown_url: masked_url(&url),
            method,
            url,
            headers: Vec::new(),
            body: Body::None,
        }
    }

    /// Adds a header, masked in the record when its name suggests a secret.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
            secret: is_secret_name(name),
        });
        self
    }

    /// Adds a header that is always masked in the record.
    pub fn secret_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
            secret: true,
        });
        self
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// A JSON body (and `Content-Type: application/json` unless set already).
    pub fn json(mut self, sent: Value, shown: Value) -> Self {
        if !self.has_header("content-type") {
            self = self.header("Content-Type", "application/json");
        }
        self.body = Body::Json { sent, shown };
        self
    }

    /// A text body, sent as given (with `text/plain` unless a content type is set already).
    pub fn text(mut self, text: String) -> Self {
        if !self.has_header("content-type") {
            self = self.header("Content-Type", "text/plain; charset=utf-8");
        }
        self.body = Body::Text(text);
        self
    }

    /// The request as the audit log keeps it.
    pub fn record(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|h| {
                let v = if h.secret { MASK } else { h.value.as_str() };
                (h.name.clone(), Value::String(v.into()))
            })
            .collect();
        let body = match &self.body {
            Body::None => Value::Null,
            Body::Json { shown, .. } => shown.clone(),
            Body::Text(t) => Value::String(t.clone()),
        };
        json!({
            "method": self.method.as_str(),
            "url": self.shown_url,
            "headers": headers,
            "body": body,
        })
    }

    /// Sends the request; gives its record and the answer, or an error carrying the record.
    pub async fn send(&self, http: &reqwest::Client) -> Result<(Value, Reply), StepError> {
        let record = self.record();
        let mut req = http
            .request(self.method.clone(), self.url.clone())
            .timeout(TIMEOUT);
        for h in &self.headers {
            req = req.header(h.name.as_str(), h.value.as_str());
        }
        req = match &self.body {
            Body::None => req,
            Body::Json { sent, .. } => req.body(sent.to_string()),
            Body::Text(t) => req.body(t.clone()),
        };
        let fail = |e: reqwest::Error| {
            StepError::failed(
                record.clone(),
                format!("{} {}: {}", self.method, self.shown_url, describe(e)),
            )
        };
        let mut resp = req.send().await.map_err(fail)?;
        let status = resp.status().as_u16();
        let url = resp.url().clone();
        let mut buf = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = resp.chunk().await.map_err(fail)? {
            let room = BODY_CAP - buf.len();
            if chunk.len() > room {
                buf.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            buf.extend_from_slice(&chunk);
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(s) => s.to_string(),
            // Cut inside a character: keep the whole ones before it.
            Err(e) if truncated && e.error_len().is_none() => {
                String::from_utf8_lossy(&buf[..e.valid_up_to()]).into_owned()
            }
            Err(_) => String::from_utf8_lossy(&buf).into_owned(),
        };
        Ok((
            record,
            Reply {
                status,
                text,
                truncated,
                url,
            },
        ))
    }
}

impl Reply {
    pub fn success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, if it is (and was read whole).
    pub fn json(&self) -> Option<Value> {
        if self.truncated {
            return None;
        }
        serde_json::from_str(&self.text).ok()
    }

    /// The body on one line, cut short, for an error message.
    pub fn excerpt(&self) -> String {
        let one_line = self.text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.is_empty() {
            "(empty body)".into()
        } else {
            super::cut(&one_line, 300)
        }
    }
}

/// What went wrong with a request, without its URL (which may hold a secret) but with the
/// underlying causes (e.g. "Connection refused").
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let what = if e.is_timeout() {
        format!("no answer within {} s", TIMEOUT.as_secs())
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_redirect() {
        "too many redirects".into()
    } else if e.is_builder() {
        "invalid request".into()
    } else {
        "failed".into()
    };
    let mut causes: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !causes.iter().any(|c| c.contains(&text)) {
            causes.push(text);
        }
        source = s.source();
    }
    if causes.is_empty() {
        what
    } else {
        format!("{what} ({})", causes.join(": "))
    }
}

/// Whether a header, query parameter or JSON field named `name` likely holds a secret.
pub(super) fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('-', "_");
    const PARTS: &[&str] = &[
        "token",
        "secret",
        "passw",
        "authorization",
        "cookie",
        "signature",
        "credential",
        "session",
        "api_key",
        "apikey",
        "routing_key",
        "private_key",
        "access_key",
        "genie",
    ];
    PARTS.iter().any(|p| n.contains(p)) || (n.contains("auth") && !n.contains("author"))
}

/// `value` with the values of secret-looking fields masked, at any depth.
pub(crate) fn mask_json(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_name(k) {
                        Value::String(MASK.into())
                    } else {
                        mask_json(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_json).collect()),
        other => other.clone(),
    }
}

/// `url` with its password and secret-looking query parameters masked.
pub(super) fn masked_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some(MASK));
    }
    if url.query_pairs().any(|(k, _)| is_secret_name(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_name(&k) {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// `url` shown only up to its host: for URLs that are themselves the credential.
pub(super) fn host_only(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{}://{host}:{p}/{MASK}", url.scheme()),
        None => format!("{}://{host}/{MASK}", url.scheme()),
    }
}

/// The configured URL `raw` (from `key`), which must be http(s). The error does not repeat
/// the URL, which may be a secret.
pub(super) fn configured_url(raw: &str, key: &str) -> Result<Url, StepError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| StepError::refused(format!("{key} is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(StepError::refused(format!(
            "{key} must be an http:// or https:// URL"
        )));
    }
    Ok(url)
}

/// The configured base URL `base` (from `key`) joined with `path` (which starts with `/`).
pub(super) fn api_url(base: &str, key: &str, path: &str) -> Result<Url, StepError> {
    configured_url(&format!("{}{path}", base.trim().trim_end_matches('/')), key)
}

/// Standard base64 (RFC 4648, with padding), for HTTP Basic credentials.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters (so `/` becomes `%2F`).
pub(super) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }

    #[test]
    fn secrets_are_masked_in_urls_and_json() {
        let url = Url::parse("https://u:pw@h.example/p?token=abc&x=1").unwrap();
        let shown = masked_url(&url);
        assert!(!shown.contains("pw") && !shown.contains("abc"), "{shown}");
        assert!(shown.contains("x=1"), "{shown}");
        let body = json!({"a": {"api_key": "k", "author": "me"}, "list": [{"password": "p"}]});
        assert_eq!(
            mask_json(&body),
            json!({"a": {"api_key": MASK, "author": "me"}, "list": [{"password": MASK}]})
        );
    }

    #[test]
    fn paths_are_encoded_as_one_segment() {
        assert_eq!(encode_component("group/sub proj"), "group%2Fsub%20proj");
    }
}
