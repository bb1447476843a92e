//! PagerDuty Events API v2: POST /v2/enqueue; 202 with the dedup key, 400 with the reasons,
//! 429 when a routing key sends too much.

use super::{Hits, field, is_json, json_reply, start};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct PagerDutyApi {
    pub hits: Hits,
    /// Events accepted per routing key before answering 429.
    pub limit: Option<usize>,
    pub accepted: Arc<Mutex<HashMap<String, usize>>>,
}

pub async fn pagerduty_api(
    State(s): State<PagerDutyApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let invalid = |errors: Vec<String>| {
        json_reply(
            StatusCode::BAD_REQUEST,
            json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
        )
    };
    if method != Method::POST || uri.path() != "/v2/enqueue" {
        return json_reply(StatusCode::NOT_FOUND, json!({"status": "not found"}));
    }
    if !is_json(&headers) {
        return invalid(vec!["Content-Type must be application/json".into()]);
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return invalid(vec!["Invalid JSON".into()]);
    };
    let mut errors = Vec::new();
    match field(&event, "/routing_key") {
        None => errors.push("'routing_key' is missing or blank".to_string()),
        Some(k) if k.len() != 32 => {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".into())
        }
        Some(_) => {}
    }
    let action = field(&event, "/event_action");
    if !matches!(action, Some("trigger" | "acknowledge" | "resolve")) {
        errors.push(
            "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')"
                .into(),
        );
    }
    if let Some(key) = event.get("dedup_key")
        && key.as_str().is_none_or(|k| k.chars().count() > 255)
    {
        errors.push("'dedup_key' must be a string of at most 255 characters".into());
    }
    if action == Some("trigger") {
        match field(&event, "/payload/summary") {
            None => errors.push("'payload.summary' is missing or blank".into()),
            Some(summary) if summary.chars().count() > 1024 => {
                errors.push("'payload.summary' must be at most 1024 characters".into())
            }
            Some(_) => {}
        }
        if field(&event, "/payload/source").is_none() {
            errors.push("'payload.source' is missing or blank".into());
        }
        if !matches!(
            field(&event, "/payload/severity"),
            Some("critical" | "error" | "warning" | "info")
        ) {
            errors.push(
                "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')"
                    .into(),
            );
        }
    }
    if !errors.is_empty() {
        return invalid(errors);
    }
    let key = field(&event, "/routing_key").unwrap().to_string();
    {
        let mut accepted = s.accepted.lock().unwrap();
        let n = accepted.entry(key).or_default();
        if s.limit.is_some_and(|limit| *n >= limit) {
            return (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
        }
        *n += 1;
    }
    let dedup = field(&event, "/dedup_key").map_or_else(
        || "5ac64822c9d04b0f8e5d1c4bc4a3b2a1".to_string(),
        str::to_string,
    );
    json_reply(
        StatusCode::ACCEPTED,
        json!({"status": "success", "message": "Event processed", "dedup_key": dedup}),
    )
}

pub fn pagerduty_stand_in(limit: Option<usize>) -> (PagerDutyApi, String) {
    let s = PagerDutyApi {
        limit,
        ..PagerDutyApi::default()
    };
    let base = start(
        Router::new().fallback(pagerduty_api).with_state(s.clone()),
        &s.hits,
    );
    (s, base)
}
