//! `http.request` and `notify.webhook`: calls to URLs the runbook names, limited to the hosts
//! `act.endpoints.http_hosts` lists.

use super::Endpoints;
use super::outgoing::{Outgoing, Reply, mask_json};
use crate::provider::{StepError, StepOutcome, required, text_arg};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Value, json};

/// Headers a runbook may not set: they would change where the request goes or how it is
/// framed.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
];

pub(super) async fn request(
    ep: &Endpoints,
    http: &reqwest::Client,
    with: &Value,
) -> Result<StepOutcome, StepError> {
    let url = allowed_url(ep, "http.request", &required(with, "url")?)?;
    let method = match text_arg(with, "method") {
        None => Method::POST,
        Some(m) => match m.trim().to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            _ => {
                return Err(StepError::refused(format!(
                    "method {m:?} is not one of GET, POST, PUT, PATCH, DELETE"
                )));
            }
        },
    };
    let mut out = Outgoing::new(method, url);
    match with.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(headers)) => {
            for (name, value) in headers {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(StepError::refused(format!("header {name:?} must be text")));
                    }
                };
                if HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(StepError::refused(format!(
                        "{name:?} is not a valid header name"
                    )));
                }
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(StepError::refused(format!(
                        "header {name:?} may not be set by a runbook"
                    )));
                }
                // Also refuses CR and LF, which would add headers of their own.
                if HeaderValue::from_str(&value).is_err() {
                    return Err(StepError::refused(format!(
                        "header {name:?} has a value that is not valid in a header (line breaks or control characters)"
                    )));
                }
                out = out.header(name, &value);
            }
        }
        Some(_) => {
            return Err(StepError::refused(
                "headers must be a mapping of header names to text",
            ));
        }
    }
    out = match with.get("body") {
        None | Some(Value::Null) => out,
        Some(Value::String(text)) => out.text(text.clone()),
        Some(body) => out.json(body.clone(), mask_json(body)),
    };
    let expect = match with.get("expect_status") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            match n {
                Some(n @ 100..=599) => Some(n as u16),
                _ => {
                    return Err(StepError::refused(format!(
                        "expect_status {v} is not an HTTP status (100 to 599)"
                    )));
                }
            }
        }
    };
    let (request, reply) = out.send(http).await?;
    stayed_on_allowed_host(ep, &request, &reply)?;
    let expected = match expect {
        Some(code) => reply.status == code,
        None => reply.success(),
    };
    if !expected {
        let wanted = expect.map_or("2xx".to_string(), |c| c.to_string());
        return Err(StepError::failed(
            request,
            format!(
                "{} answered HTTP {} (expected {wanted}): {}",
                out.shown_url,
                reply.status,
                reply.excerpt()
            ),
        ));
    }
    let body = reply.json().unwrap_or(Value::String(reply.text));
    Ok(StepOutcome {
        request,
        output: json!({"status": reply.status, "body": body}),
    })
}

pub(super) async fn webhook(
    ep: &Endpoints,
    http: &reqwest::Client,
    with: &Value,
) -> Result<StepOutcome, StepError> {
    let url = allowed_url(ep, "notify.webhook", &required(with, "url")?)?;
    // Templates render to text: text that is JSON is sent as that JSON, other text as a
    // JSON string.
    let body = match with.get("body") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(text)) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
        }
        Some(body) => body.clone(),
    };
    let out = Outgoing::new(Method::POST, url).json(body.clone(), mask_json(&body));
    let (request, reply) = out.send(http).await?;
    stayed_on_allowed_host(ep, &request, &reply)?;
    if !reply.success() {
        return Err(StepError::failed(
            request,
            format!(
                "the webhook {} answered HTTP {}: {}",
                out.shown_url,
                reply.status,
                reply.excerpt()
            ),
        ));
    }
    Ok(StepOutcome {
        request,
        output: json!({"status": reply.status}),
    })
}

/// `raw` as an http(s) URL whose host `act.endpoints.http_hosts` lists.
pub(super) fn allowed_url(ep: &Endpoints, uses: &str, raw: &str) -> Result<Url, StepError> {
    // The error does not repeat the URL: it may carry a credential.
    let url = Url::parse(raw.trim())
        .map_err(|e| StepError::refused(format!("url is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StepError::refused(format!(
            "url must be http:// or https://, not {}://",
            url.scheme()
        )));
    }
    let Some(host) = url.host_str() else {
        return Err(StepError::refused("url has no host"));
    };
    if !host_allowed(&ep.http_hosts, &url) {
        return Err(StepError::refused(format!(
            "{uses} may not call {host}{}: add it to act.endpoints.http_hosts (now: {})",
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            ep.http_hosts.join(", ")
        )));
    }
    Ok(url)
}

/// Whether `hosts` lists `url`'s host, alone (any port) or with `url`'s port.
fn host_allowed(hosts: &[String], url: &Url) -> bool {
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let with_port = url.port_or_known_default().map(|p| format!("{host}:{p}"));
    hosts.iter().any(|entry| {
        let entry = entry.trim().to_ascii_lowercase();
        !entry.is_empty() && (entry == host || Some(&entry) == with_port.as_ref())
    })
}

/// Fails the call when the answer came, after a redirect, from a host that is not listed.
fn stayed_on_allowed_host(ep: &Endpoints, request: &Value, reply: &Reply) -> Result<(), StepError> {
    if host_allowed(&ep.http_hosts, &reply.url) {
        return Ok(());
    }
    Err(StepError::failed(
        request.clone(),
        format!(
            "the answer came from {} after a redirect, which act.endpoints.http_hosts does not list; \
             build the HTTP client without following redirects",
            reply.url.host_str().unwrap_or("an unknown host")
        ),
    ))
}
