//! Slack's two ways in: incoming webhooks (POST JSON with `text`; 200 `ok` or an error code as
//! text) and the Web API (`chat.postMessage`, `chat.update` with a bot token; 200 with
//! `{"ok": false, "error": …}` when refused), with the Block Kit limits both enforce, and the
//! response URLs that slash commands and buttons answer at.

use super::{Hits, field, is_json, start, text};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The incoming webhook's path (its secret part included).
pub const SLACK_PATH: &str = "/services/T0001/B0001/slackSECRETpath";

#[derive(Clone, Default)]
pub struct Slack {
    pub hits: Hits,
}

pub async fn slack_api(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "invalid_method");
    }
    if uri.path() != SLACK_PATH {
        return text(StatusCode::NOT_FOUND, "no_service");
    }
    if !is_json(&headers) {
        return text(StatusCode::BAD_REQUEST, "invalid_payload");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return text(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    if !payload.is_object() {
        return text(StatusCode::BAD_REQUEST, "invalid_payload");
    }
    if check_blocks(&payload).is_err() {
        return text(StatusCode::BAD_REQUEST, "invalid_blocks");
    }
    let has_blocks = payload.get("blocks").is_some() || payload.get("attachments").is_some();
    if field(&payload, "/text").is_none() && !has_blocks {
        return text(StatusCode::BAD_REQUEST, "no_text");
    }
    match field(&payload, "/channel") {
        Some("#archived") => text(StatusCode::GONE, "channel_is_archived"),
        Some("#announcements") => text(StatusCode::FORBIDDEN, "action_prohibited"),
        Some("#nowhere") => text(StatusCode::NOT_FOUND, "channel_not_found"),
        _ => text(StatusCode::OK, "ok"),
    }
}

pub fn slack_stand_in() -> (Slack, String) {
    let s = Slack::default();
    let base = start(
        Router::new().fallback(slack_api).with_state(s.clone()),
        &s.hits,
    );
    (s, base)
}

/// The bot token the Web API stand-in accepts.
pub const BOT_TOKEN: &str = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy";
/// The id of `#incidents`, the one channel the Web API stand-in knows.
pub const CHANNEL_ID: &str = "C0INCIDENTS";

/// What the stand-in Slack received: Web API calls accepted, and response_url posts.
#[derive(Default)]
pub struct Received {
    /// (method, body) of each accepted call.
    pub calls: Vec<(String, Value)>,
    /// Each call's error when Slack would refuse it.
    pub refused: Vec<String>,
    pub responses: Vec<Value>,
    pub posted_ts: HashSet<String>,
}

pub type Shared = Arc<Mutex<Received>>;

/// Slack's documented limits on Block Kit messages, as `invalid_blocks` would report them.
pub fn check_blocks(body: &Value) -> Result<(), String> {
    let blocks = match &body["blocks"] {
        Value::Null => return Ok(()),
        Value::Array(b) => b,
        _ => return Err("invalid_blocks_format".into()),
    };
    if blocks.len() > 50 {
        return Err("invalid_blocks: more than 50 blocks".into());
    }
    let mut action_ids = HashSet::new();
    for b in blocks {
        match b["type"].as_str() {
            Some("header") => {
                if b["text"]["type"] != "plain_text"
                    || b["text"]["text"]
                        .as_str()
                        .is_none_or(|t| t.chars().count() > 150)
                {
                    return Err("invalid_blocks: header text".into());
                }
            }
            Some("section") => {
                let t = b["text"]["text"].as_str().unwrap_or_default();
                if t.is_empty() || t.chars().count() > 3000 {
                    return Err("invalid_blocks: section text".into());
                }
            }
            Some("context") => {
                let n = b["elements"].as_array().map_or(0, Vec::len);
                if n == 0 || n > 10 {
                    return Err("invalid_blocks: context elements".into());
                }
            }
            Some("actions") => {
                let elements = b["elements"].as_array().cloned().unwrap_or_default();
                if elements.is_empty() || elements.len() > 25 {
                    return Err("invalid_blocks: actions elements".into());
                }
                for e in elements {
                    let id = e["action_id"].as_str().unwrap_or_default().to_string();
                    if e["type"] != "button"
                        || e["text"]["type"] != "plain_text"
                        || e["text"]["text"]
                            .as_str()
                            .is_none_or(|t| t.chars().count() > 75)
                        || id.is_empty()
                        || id.len() > 255
                        || !action_ids.insert(id)
                        || e["value"].as_str().is_some_and(|v| v.len() > 2000)
                    {
                        return Err(format!("invalid_blocks: button {e}"));
                    }
                }
            }
            _ => return Err(format!("invalid_blocks: block type {}", b["type"])),
        }
    }
    Ok(())
}

async fn web_api(
    State(got): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Json<Value> {
    let refuse = |got: &Shared, error: String| {
        got.lock()
            .unwrap()
            .refused
            .push(format!("{method}: {error}"));
        Json(json!({"ok": false, "error": error}))
    };
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    match auth {
        None => return refuse(&got, "not_authed".into()),
        Some(a) if a != format!("Bearer {BOT_TOKEN}") => {
            return refuse(&got, "invalid_auth".into());
        }
        _ => {}
    }
    let json_type = is_json(&headers);
    let Ok(body) = serde_json::from_str::<Value>(&body)
        .map_err(|_| ())
        .and_then(|b| if json_type { Ok(b) } else { Err(()) })
    else {
        return refuse(&got, "invalid_json".into());
    };
    if body["text"].as_str().is_none_or(str::is_empty) && body["blocks"].is_null() {
        return refuse(&got, "no_text".into());
    }
    if let Err(e) = check_blocks(&body) {
        return refuse(&got, e);
    }
    let ts = match method.as_str() {
        "chat.postMessage" => {
            if body["channel"] != "#incidents" && body["channel"] != CHANNEL_ID {
                return refuse(&got, "channel_not_found".into());
            }
            let mut g = got.lock().unwrap();
            let ts = format!("1700000000.{:06}", g.posted_ts.len() + 1);
            g.posted_ts.insert(ts.clone());
            ts
        }
        "chat.update" => {
            // chat.update takes the channel's id, not its name.
            if body["channel"] != CHANNEL_ID {
                return refuse(&got, "channel_not_found".into());
            }
            let ts = body["ts"].as_str().unwrap_or_default().to_string();
            if !got.lock().unwrap().posted_ts.contains(&ts) {
                return refuse(&got, "message_not_found".into());
            }
            ts
        }
        _ => return refuse(&got, "unknown_method".into()),
    };
    got.lock().unwrap().calls.push((method.clone(), body));
    Json(json!({"ok": true, "channel": CHANNEL_ID, "ts": ts}))
}

async fn response_url(State(got): State<Shared>, headers: HeaderMap, body: String) -> &'static str {
    let json_type = is_json(&headers);
    let mut g = got.lock().unwrap();
    match serde_json::from_str::<Value>(&body) {
        Ok(v) if json_type && check_blocks(&v).is_ok() => g.responses.push(v),
        _ => g.refused.push(format!("response_url: {body}")),
    }
    "ok"
}

/// Starts the Web API stand-in (`/api/{method}`, and `/response/{n}` for response URLs) on its
/// own thread; its port and what it receives.
pub fn web_api_stand_in() -> (u16, Shared) {
    let got: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/api/{method}", axum::routing::post(web_api))
        .route("/response/{n}", axum::routing::post(response_url))
        .with_state(got.clone());
    (crate::stand_in::serve_stand_in(app), got)
}
