//! Stand-ins for the notification and ticket APIs that cannot be reached from here (Slack,
//! PagerDuty, Opsgenie, Jira, GitLab) and an echoing HTTP server, each enforcing its real API's
//! documented request format and answering with its documented status codes and bodies. Every
//! stand-in records what it received ([`Hits`]), so a test checks the exact method, path,
//! headers and body sent, and that nothing at all is sent when a call is refused.

pub mod echo;
pub mod gitlab;
pub mod jira;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Hit {
    pub method: Method,
    /// The path and query exactly as received (still percent-encoded).
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone, Default)]
pub struct Hits(pub Arc<Mutex<Vec<Hit>>>);

impl Hits {
    pub fn push(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Hit {
        let hit = Hit {
            method: method.clone(),
            uri: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string()),
            headers: headers.clone(),
            body: body.to_vec(),
        };
        self.0.lock().unwrap().push(hit.clone());
        hit
    }

    pub fn all(&self) -> Vec<Hit> {
        self.0.lock().unwrap().clone()
    }

    pub fn only(&self) -> Hit {
        let all = self.all();
        assert_eq!(all.len(), 1, "expected exactly one request, got {all:?}");
        all[0].clone()
    }
}

/// Serves a stand-in from a thread of its own, recording every request it receives into
/// `hits` before its handler sees it; its base URL (`http://127.0.0.1:PORT`).
pub fn start(router: Router, hits: &Hits) -> String {
    let router = router.layer(axum::middleware::from_fn_with_state(hits.clone(), record));
    format!(
        "http://127.0.0.1:{}",
        crate::stand_in::serve_stand_in(router)
    )
}

async fn record(State(hits): State<Hits>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    hits.push(&parts.method, &parts.uri, &parts.headers, &body);
    next.run(Request::from_parts(parts, Body::from(body))).await
}

pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

pub fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html")],
        body.to_string(),
    )
        .into_response()
}

pub fn json_reply(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A field as text, `None` when absent, not text or blank.
pub fn field<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}
