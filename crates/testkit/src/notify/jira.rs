//! Jira REST API v2: POST /rest/api/2/issue with Basic (Cloud) or Bearer (Data Center);
//! 201 {id, key, self}; 400 {errorMessages, errors}; 401 when not authenticated.

use super::{Hits, field, is_json, json_reply, start};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

pub const JIRA_USER: &str = "ops@acme.example";

pub const JIRA_TOKEN: &str = "jira-api-token-93b1";

pub const JIRA_PAT: &str = "jira-dc-pat-41f0";

#[derive(Clone, Default)]
pub struct JiraApi {
    pub hits: Hits,
    pub base: Arc<Mutex<String>>,
}

pub async fn jira_api(
    State(s): State<JiraApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method != Method::POST || uri.path() != "/rest/api/2/issue" {
        return json_reply(
            StatusCode::NOT_FOUND,
            json!({"errorMessages": ["Not found"], "errors": {}}),
        );
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let basic = format!(
        "Basic {}",
        b64(format!("{JIRA_USER}:{JIRA_TOKEN}").as_bytes())
    );
    if auth != basic && auth != format!("Bearer {JIRA_PAT}") {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain")],
            "Client must be authenticated to access this resource.",
        )
            .into_response();
    }
    if !is_json(&headers) {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let Ok(issue) = serde_json::from_slice::<Value>(&body) else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"errorMessages": ["Unexpected character in the request body"], "errors": {}}),
        );
    };
    let mut errors = serde_json::Map::new();
    if field(&issue, "/fields/project/key") != Some("OPS") {
        errors.insert("project".into(), json!("Specify a valid project ID or key"));
    }
    match field(&issue, "/fields/summary") {
        None => {
            errors.insert(
                "summary".into(),
                json!("You must specify a summary of the issue."),
            );
        }
        Some(s) if s.chars().count() >= 255 => {
            errors.insert(
                "summary".into(),
                json!("Summary must be less than 255 characters."),
            );
        }
        Some(s) if s.contains(['\r', '\n']) => {
            errors.insert(
                "summary".into(),
                json!("The summary is invalid because it contains newline characters."),
            );
        }
        Some(_) => {}
    }
    if !matches!(
        field(&issue, "/fields/issuetype/name"),
        Some("Task" | "Bug")
    ) {
        errors.insert("issuetype".into(), json!("Specify a valid issue type"));
    }
    if let Some(d) = issue.pointer("/fields/description")
        && d.as_str().is_none_or(|d| d.chars().count() > 32767)
    {
        errors.insert(
            "description".into(),
            json!(
                "The entered text is too long. It exceeds the allowed limit of 32,767 characters."
            ),
        );
    }
    if !errors.is_empty() {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"errorMessages": [], "errors": errors}),
        );
    }
    let base = s.base.lock().unwrap().clone();
    json_reply(
        StatusCode::CREATED,
        json!({"id": "10042", "key": "OPS-42", "self": format!("{base}/rest/api/2/issue/10042")}),
    )
}

pub fn jira_stand_in() -> (JiraApi, String) {
    let s = JiraApi::default();
    let base = start(
        Router::new().fallback(jira_api).with_state(s.clone()),
        &s.hits,
    );
    *s.base.lock().unwrap() = base.clone();
    (s, base)
}

/// Base64 written independently of the provider's, to check its `Authorization` header.
pub fn b64(bytes: &[u8]) -> String {
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".as_bytes();
    let mut bits = String::new();
    for b in bytes {
        bits.push_str(&format!("{b:08b}"));
    }
    let whole = bits.len().next_multiple_of(6);
    while bits.len() < whole {
        bits.push('0');
    }
    let mut out: String = bits
        .as_bytes()
        .chunks(6)
        .map(|c| {
            alphabet[usize::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap()] as char
        })
        .collect();
    let padded = out.len().next_multiple_of(4);
    while out.len() < padded {
        out.push('=');
    }
    out
}
