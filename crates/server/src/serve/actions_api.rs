//! The remediation API: actions (`GET /api/v1/actions`, `GET /api/v1/actions/{id}`), their
//! approval and rejection (`POST /api/v1/actions/{id}/approve|reject`), the kill switch
//! (`POST /api/v1/kill-switch`), the audit log (`GET /api/v1/audit`) and dry runs of the
//! runbooks for an incident (`POST /api/v1/incidents/{id}/dry-run`). Deciding takes an
//! approver's bearer token (`act.approvers`): who decides is who the token names, and what they
//! may approve is their role.

use super::api::next_link;
use super::{App, text};
use crate::auth::Identity;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use nightshift_act::State as ActionState;
use nightshift_store::Cursor;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionQuery {
    incident: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    /// Where the page starts: the `cursor` of the page before's `next` link.
    cursor: Option<String>,
}

/// The number of action `act-N` (ids are handed out in order).
fn action_number(id: &str) -> u64 {
    id.strip_prefix("act-")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `GET /api/v1/actions?incident=ID&state=pending&limit=N&cursor=C`: newest first, paged like
/// the other lists.
pub(super) async fn actions(
    State(app): State<Arc<App>>,
    uri: Uri,
    query: Result<Query<ActionQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("actions: {e}")),
    };
    if let Some(s) = &q.state
        && !ActionState::ALL.iter().any(|x| x.as_str() == s)
    {
        let names: Vec<&str> = ActionState::ALL.iter().map(|x| x.as_str()).collect();
        return text(
            StatusCode::BAD_REQUEST,
            format!("actions: state {s:?} is not one of {}", names.join(", ")),
        );
    }
    let before = match q.cursor.as_deref().map(|c| Cursor::decode("actions", c)) {
        None => u64::MAX,
        Some(Ok(c)) => c.ts().max(0) as u64,
        Some(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("actions: {e}")),
    };
    let mut list = app.remediation.actions(q.incident.as_deref());
    list.retain(|a| {
        q.state.as_deref().is_none_or(|s| a.state.as_str() == s) && action_number(&a.id) < before
    });
    list.reverse();
    let limit = q.limit.unwrap_or(1000).min(10_000) as usize;
    if list.len() <= limit {
        return Json(list).into_response();
    }
    list.truncate(limit);
    let last = list.last().map_or(0, |a| action_number(&a.id));
    let next = Cursor::new("actions", last as i64, "").encode();
    ([next_link(&uri, "cursor", &next)], Json(list)).into_response()
}

/// `GET /api/v1/actions/{id}`.
pub(super) async fn action(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.remediation.action(&id) {
        Some(a) => Json(a).into_response(),
        None => text(StatusCode::NOT_FOUND, format!("there is no action {id}")),
    }
}

/// The approver the request comes from, or the answer to give instead. With `serve.auth`, the
/// identity the server authenticated must be an approver by name; without it, the bearer token
/// must be an approver's (`act.approvers[].token`).
fn approver(
    app: &App,
    identity: Option<&Identity>,
    headers: &HeaderMap,
    what: &str,
) -> Result<String, Box<Response>> {
    if let Some(who) = identity {
        return app.remediation.approver_named(&who.name).ok_or_else(|| {
            Box::new(text(
                StatusCode::FORBIDDEN,
                format!("{what}: {} is not an approver (act.approvers)", who.name),
            ))
        });
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return Err(Box::new(text(
            StatusCode::UNAUTHORIZED,
            format!("{what}: send Authorization: Bearer <token> of an approver (act.approvers)"),
        )));
    };
    app.remediation.approver(Some(token), None).ok_or_else(|| {
        Box::new(text(
            StatusCode::FORBIDDEN,
            format!("{what}: the token is not an approver's (act.approvers)"),
        ))
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Decision {
    reason: Option<String>,
}

/// An optional JSON body, or the 400 naming what is wrong with it.
fn body<T: Default + for<'a> Deserialize<'a>>(
    bytes: &[u8],
    what: &str,
    shape: &str,
) -> Result<T, Box<Response>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(text(
            StatusCode::BAD_REQUEST,
            format!("{what}: the body must be {shape} ({e})"),
        ))
    })
}

fn answer(r: Result<nightshift_act::Action, (StatusCode, String)>, what: &str) -> Response {
    match r {
        Ok(a) => Json(a).into_response(),
        Err((status, message)) => text(status, format!("{what}: {message}")),
    }
}

/// `POST /api/v1/actions/{id}/approve`: runs the action once its preconditions hold again.
pub(super) async fn approve(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let what = format!("approve {id}");
    let who = match approver(&app, identity.as_deref(), &headers, &what) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if let Err(r) = body::<Decision>(&bytes, &what, "{\"reason\": \"...\"} or empty") {
        return *r;
    }
    answer(app.remediation.approve(&id, &who).await, &what)
}

/// `POST /api/v1/actions/{id}/reject` with an optional `{"reason": "..."}`.
pub(super) async fn reject(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let what = format!("reject {id}");
    let who = match approver(&app, identity.as_deref(), &headers, &what) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let d: Decision = match body(&bytes, &what, "{\"reason\": \"...\"} or empty") {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let reason = d.reason.unwrap_or_else(|| "rejected".into());
    answer(app.remediation.reject(&id, &who, &reason).await, &what)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DryRunRequest {
    runbook: Option<String>,
}

/// `POST /api/v1/incidents/{id}/dry-run` with an optional `{"runbook": "NAME"}`: what every
/// runbook answering the incident (or the one named) would send, nothing sent; the
/// verification evaluated now; the gate that would refuse it. Needs no token: nothing is
/// decided.
pub(super) async fn dry_run(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    let what = format!("dry run for {id}");
    let req: DryRunRequest = match body(&bytes, &what, "{\"runbook\": \"NAME\"} or empty") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match app.remediation.dry_run(&id, req.runbook.as_deref()).await {
        Ok(runs) => Json(runs).into_response(),
        Err((status, message)) => text(status, format!("{what}: {message}")),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct KillSwitch {
    on: Option<bool>,
}

/// `GET /api/v1/kill-switch`: whether it is on.
pub(super) async fn kill_switch_state(State(app): State<Arc<App>>) -> Response {
    Json(json!({"on": app.remediation.killed()})).into_response()
}

/// `POST /api/v1/kill-switch` with `{"on": true|false}`: on stops every automatic action and
/// cancels those waiting for approval.
pub(super) async fn kill_switch(
    State(app): State<Arc<App>>,
    identity: Option<Extension<Identity>>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let what = "kill switch";
    let who = match approver(&app, identity.as_deref(), &headers, what) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let k: KillSwitch = match body(&bytes, what, "{\"on\": true} or {\"on\": false}") {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let Some(on) = k.on else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{what}: the body must be {{\"on\": true}} or {{\"on\": false}}"),
        );
    };
    match app.remediation.kill_switch(on, &who).await {
        Ok(cancelled) => {
            Json(json!({"on": app.remediation.killed(), "cancelled": cancelled})).into_response()
        }
        Err((status, message)) => text(status, format!("{what}: {message}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Entries after this sequence number.
    after: Option<u64>,
    limit: Option<u32>,
    action: Option<String>,
}

/// `GET /api/v1/audit?after=SEQ&action=ID&limit=N`: audit entries in order, as written, read
/// through the log's index (a page costs its own entries, not the log's length); when more
/// follow, the `Link` header's `next` is the same query with `after` at this page's last entry.
pub(super) async fn audit(
    State(app): State<Arc<App>>,
    uri: Uri,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("audit: {e}")),
    };
    let limit = q.limit.unwrap_or(1000).min(10_000) as usize;
    let reader = app.remediation.audit().clone();
    let page = tokio::task::spawn_blocking(move || {
        reader.page(q.after.unwrap_or(0), q.action.as_deref(), limit)
    })
    .await;
    let page = match page {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("audit: cannot read the audit log ({e})"),
            );
        }
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("audit: {e}")),
    };
    let entries: Vec<Value> = page
        .lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    match page.next {
        Some(seq) => ([next_link(&uri, "after", &seq.to_string())], Json(entries)).into_response(),
        None => Json(entries).into_response(),
    }
}
