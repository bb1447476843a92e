//! GitLab REST API v4: POST /api/v4/projects/:id/issues with PRIVATE-TOKEN; 201 with the
//! issue; 400 {message|error}; 401 {"message": "401 Unauthorized"}; 404 project not found.

use super::{Hits, is_json, json_reply, start};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

pub const GL_TOKEN: &str = "glpat-secret-0f9e";

#[derive(Clone, Default)]
pub struct GitLabApi {
    pub hits: Hits,
    pub base: Arc<Mutex<String>>,
}

pub async fn gitlab_api(
    State(s): State<GitLabApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let not_found = || json_reply(StatusCode::NOT_FOUND, json!({"message": "404 Not Found"}));
    // Matched on the raw path, as GitLab does: a project path must come URL-encoded, as one
    // segment.
    let Some(id) = uri
        .path()
        .strip_prefix("/api/v4/projects/")
        .and_then(|rest| rest.strip_suffix("/issues"))
    else {
        return not_found();
    };
    if method != Method::POST || id.contains('/') {
        return not_found();
    }
    if headers.get("private-token").and_then(|v| v.to_str().ok()) != Some(GL_TOKEN) {
        return json_reply(
            StatusCode::UNAUTHORIZED,
            json!({"message": "401 Unauthorized"}),
        );
    }
    let path = match id {
        "42" | "ops%2Fcheckout" => "ops/checkout",
        _ => {
            return json_reply(
                StatusCode::NOT_FOUND,
                json!({"message": "404 Project Not Found"}),
            );
        }
    };
    let issue: Value = if is_json(&headers) {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return json_reply(StatusCode::BAD_REQUEST, json!({"error": "400 Bad request"}));
            }
        }
    } else {
        json!({})
    };
    let Some(title) = issue.get("title") else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "title is missing"}),
        );
    };
    let title = title.as_str().unwrap_or_default();
    if title.trim().is_empty() {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"message": {"title": ["can't be blank"]}}),
        );
    }
    if title.chars().count() > 255 {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"message": {"title": ["is too long (maximum is 255 characters)"]}}),
        );
    }
    let description = issue.get("description").and_then(Value::as_str);
    if description.is_some_and(|d| d.chars().count() > 1_048_576) {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({"message": {"description": ["is too long (maximum is 1048576 characters)"]}}),
        );
    }
    let labels: Vec<&str> = match issue.get("labels") {
        None => vec![],
        Some(Value::String(l)) => l.split(',').collect(),
        Some(_) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                json!({"error": "labels is invalid"}),
            );
        }
    };
    let base = s.base.lock().unwrap().clone();
    json_reply(
        StatusCode::CREATED,
        json!({
            "id": 9001, "iid": 7, "project_id": 42, "title": title,
            "description": description, "state": "opened", "labels": labels,
            "web_url": format!("{base}/{path}/-/issues/7"),
        }),
    )
}

pub fn gitlab_stand_in() -> (GitLabApi, String) {
    let s = GitLabApi::default();
    let base = start(
        Router::new().fallback(gitlab_api).with_state(s.clone()),
        &s.hits,
    );
    *s.base.lock().unwrap() = base.clone();
    (s, base)
}
