//! Opsgenie Alert API: POST /v2/alerts with `Authorization: GenieKey KEY`; 202 with a
//! requestId; 401, 403, 422 with a message.

use super::{Hits, field, is_json, json_reply, start};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

pub const OG_KEY: &str = "og-api-key-7e1d2c";

pub const OG_READ_ONLY_KEY: &str = "og-read-only-key-55aa";

#[derive(Clone, Default)]
pub struct OpsgenieApi {
    pub hits: Hits,
}

pub const OG_REQUEST_ID: &str = "43a29c5c-3dbf-4fa4-9c26-f4f71023e120";

pub async fn opsgenie_api(method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let answer = |status: StatusCode, message: &str, errors: Option<Value>| {
        let mut b = json!({"message": message, "took": 0.001, "requestId": OG_REQUEST_ID});
        if let Some(errors) = errors {
            b["errors"] = errors;
        }
        json_reply(status, b)
    };
    if method != Method::POST || uri.path() != "/v2/alerts" {
        return answer(StatusCode::NOT_FOUND, "Not Found", None);
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match auth.strip_prefix("GenieKey ") {
        Some(OG_KEY) => {}
        Some(OG_READ_ONLY_KEY) => {
            return answer(
                StatusCode::FORBIDDEN,
                "You do not have the required permission to do this action",
                None,
            );
        }
        _ => return answer(StatusCode::UNAUTHORIZED, "Could not authenticate", None),
    }
    let unprocessable = |field: &str, why: &str| {
        answer(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Request body is not processable. Please check the errors.",
            Some(json!({ field: why })),
        )
    };
    if !is_json(&headers) {
        return unprocessable("body", "Content type must be application/json");
    }
    let Ok(alert) = serde_json::from_slice::<Value>(&body) else {
        return unprocessable("body", "Could not parse the request body");
    };
    match field(&alert, "/message") {
        None => return unprocessable("message", "Message can not be empty."),
        Some(m) if m.chars().count() > 130 => {
            return unprocessable("message", "Message can not be longer than 130 characters.");
        }
        Some(_) => {}
    }
    if let Some(p) = alert.get("priority")
        && !matches!(p.as_str(), Some("P1" | "P2" | "P3" | "P4" | "P5"))
    {
        return unprocessable("priority", "Priority should be one of [P1, P2, P3, P4, P5]");
    }
    if let Some(a) = alert.get("alias")
        && a.as_str().is_none_or(|a| a.chars().count() > 512)
    {
        return unprocessable("alias", "Alias can not be longer than 512 characters.");
    }
    if let Some(src) = alert.get("source")
        && src.as_str().is_none_or(|s| s.chars().count() > 100)
    {
        return unprocessable("source", "Source can not be longer than 100 characters.");
    }
    json_reply(
        StatusCode::ACCEPTED,
        json!({"result": "Request will be processed", "took": 0.302, "requestId": OG_REQUEST_ID}),
    )
}

pub fn opsgenie_stand_in() -> (OpsgenieApi, String) {
    let s = OpsgenieApi::default();
    let base = start(
        Router::new().fallback(opsgenie_api).with_state(s.clone()),
        &s.hits,
    );
    (s, base)
}
