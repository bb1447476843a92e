//! An echoing HTTP server, for `http.request`, webhooks and audit exports: `/status/N` answers N,
//! `/json` echoes the body as JSON, `/text` and `/big` answer text (the latter about 100 KiB),
//! `/created` 201, `/redirect` a 302 to wherever `elsewhere` says; anything else 200.

use super::{Hits, json_reply, start};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Echo {
    pub hits: Hits,
    /// Where `/redirect` sends the client.
    pub elsewhere: Arc<Mutex<String>>,
}

pub async fn echo(State(s): State<Echo>, uri: Uri, body: Bytes) -> Response {
    let path = uri.path();
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return (status, format!("status {code}\n  with   details")).into_response();
    }
    match path {
        "/json" => json_reply(
            StatusCode::OK,
            json!({"ok": true, "received": String::from_utf8_lossy(&body)}),
        ),
        "/text" => (StatusCode::OK, "plain words").into_response(),
        // About 100 KiB, two-byte characters after one ASCII one: 64 KiB ends inside one.
        "/big" => (StatusCode::OK, format!("a{}", "é".repeat(50 * 1024))).into_response(),
        "/created" => (StatusCode::CREATED, "").into_response(),
        "/redirect" => {
            let to = format!("{}/json", s.elsewhere.lock().unwrap());
            (StatusCode::FOUND, [(header::LOCATION, to)], "").into_response()
        }
        _ => (StatusCode::OK, "").into_response(),
    }
}

pub fn echo_stand_in() -> (Echo, String, String) {
    let s = Echo::default();
    let base = start(Router::new().fallback(echo).with_state(s.clone()), &s.hits);
    let host_port = base.trim_start_matches("http://").to_string();
    (s, base, host_port)
}
