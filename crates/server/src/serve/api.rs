//! `serve`'s HTTP API on what was stored and found, as JSON, the one request that changes an
//! incident (acknowledging it), and questions and explanations (`ask`, `explanation`). Every list is newest first and paged (`limit`, at most 10,000;
//! 1,000 by default): when more items follow a page, its `Link: <…>; rel="next"` header is the
//! same query with a `cursor` for the next page. A bad query parameter is a 400 naming it.

use super::{App, Work, enqueue, text};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use nightshift_core::{AlertStatus, IncidentStatus, Millis};
use nightshift_store::{
    AlertFilter, AnomalyFilter, ChangeFilter, Cursor, IncidentFilter, Page, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    entity: Option<String>,
    since: Option<Millis>,
    limit: Option<u32>,
    /// Where the page starts: the `cursor` of the page before's `next` link.
    cursor: Option<String>,
}

fn limit(q: &ListQuery) -> Option<u32> {
    Some(q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT))
}

/// The query's `cursor` for the list `what`, or the 400 that names what is wrong with it.
fn cursor(what: &str, q: &ListQuery) -> Result<Option<Cursor>, Box<Response>> {
    q.cursor
        .as_deref()
        .map(|c| Cursor::decode(what, c).map_err(|e| Box::new(bad(what, e))))
        .transpose()
}

/// The `Link` header to the page after this one: the request's own query with `param` set to
/// `value` (a cursor or a sequence number, both URL-safe).
pub(super) fn next_link(uri: &Uri, param: &str, value: &str) -> (header::HeaderName, HeaderValue) {
    let mut query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some(param))
        .collect();
    let set = format!("{param}={value}");
    query.push(&set);
    let link = format!("<{}?{}>; rel=\"next\"", uri.path(), query.join("&"));
    // The path and query came in as a valid request target; the value is URL-safe.
    let value = HeaderValue::from_str(&link).unwrap_or(HeaderValue::from_static(""));
    (header::LINK, value)
}

fn bad(what: &str, problem: impl std::fmt::Display) -> Response {
    text(StatusCode::BAD_REQUEST, format!("{what}: {problem}"))
}

/// A page from the store as a JSON list with its `next` link, or 503 naming the database
/// problem.
fn listed<T: Serialize>(what: &str, uri: &Uri, r: Result<Page<T>, StoreError>) -> Response {
    match r {
        Ok(Page { items, next: None }) => Json(items).into_response(),
        Ok(Page {
            items,
            next: Some(c),
        }) => ([next_link(uri, "cursor", &c.encode())], Json(items)).into_response(),
        Err(StoreError::Invalid { what: _, reason }) => bad(what, reason),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: cannot read the database ({e})"),
        ),
    }
}

/// The query of a list with a status (alerts, incidents): `status` one of `choices`, no
/// `entity`.
fn status_query<T: Copy>(
    what: &str,
    query: Result<Query<ListQuery>, QueryRejection>,
    choices: &[(&str, T)],
) -> Result<(ListQuery, Option<T>), Box<Response>> {
    let q = query.map_err(|e| Box::new(bad(what, e)))?.0;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => match choices.iter().find(|(name, _)| *name == s) {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                return Err(Box::new(bad(
                    what,
                    format!("status {s:?} is not one of {}", names.join(", ")),
                )));
            }
        },
    };
    if q.entity.is_some() {
        return Err(Box::new(bad(what, "`entity` applies to anomalies only")));
    }
    Ok((q, status))
}

/// `GET /api/v1/alerts?status=firing|resolved&since=MS&limit=N&cursor=C`: stored alerts.
pub(super) async fn alerts(
    State(app): State<Arc<App>>,
    uri: Uri,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let choices = [
        ("firing", AlertStatus::Firing),
        ("resolved", AlertStatus::Resolved),
    ];
    let (q, status) = match status_query("alerts", query, &choices) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let after = match cursor("alerts", &q) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let filter = AlertFilter {
        status,
        since: q.since,
        limit: limit(&q),
        after,
        ..AlertFilter::default()
    };
    listed("alerts", &uri, app.store.alerts(&filter).await)
}

/// `GET /api/v1/incidents?status=open|acknowledged|resolved&since=MS&limit=N&cursor=C`:
/// incidents by `opened_at`.
pub(super) async fn incidents(
    State(app): State<Arc<App>>,
    uri: Uri,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let choices = [
        IncidentStatus::Open,
        IncidentStatus::Acknowledged,
        IncidentStatus::Resolved,
    ]
    .map(|s| (s.as_str(), s));
    let (q, status) = match status_query("incidents", query, &choices) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let after = match cursor("incidents", &q) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let filter = IncidentFilter {
        status,
        since: q.since,
        limit: limit(&q),
        after,
    };
    listed("incidents", &uri, app.store.incidents(&filter).await)
}

/// `GET /api/v1/incidents/{id}`: one incident with its hypotheses, evidence and timeline.
pub(super) async fn incident(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.store.incident(&id).await {
        Ok(Some(i)) => Json(i).into_response(),
        Ok(None) => text(StatusCode::NOT_FOUND, format!("no incident {id:?}")),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("incident {id}: cannot read the database ({e})"),
        ),
    }
}

/// Who acknowledges, in the optional JSON body of an acknowledgement.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Acknowledgement {
    by: Option<String>,
}

/// `POST /api/v1/incidents/{id}/acknowledge` with an optional body `{"by": "NAME"}`: marks an
/// open incident as acknowledged. The answer is the incident as stored: 404 for an incident
/// this server does not track, 409 for a resolved one.
pub(super) async fn acknowledge(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    identity: Option<axum::Extension<crate::auth::Identity>>,
    body: axum::body::Bytes,
) -> Response {
    let what = format!("acknowledge {id}");
    let ack: Acknowledgement = if body.iter().all(u8::is_ascii_whitespace) {
        Acknowledgement::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(e) => {
                return bad(
                    &what,
                    format!("the body must be {{\"by\": \"NAME\"}} ({e})"),
                );
            }
        }
    };
    // With credentials, who acknowledges is who authenticated, whatever the body says.
    let by = match identity {
        Some(who) => who.name.clone(),
        None => ack.by.unwrap_or_else(|| "api".to_string()),
    };
    if by.trim().is_empty() || by.len() > 200 {
        return bad(&what, "`by` must name someone, in at most 200 bytes");
    }
    match acknowledge_incident(&app, id, by, &what).await {
        Ok(incident) => Json(incident).into_response(),
        Err(refused) => refused,
    }
}

/// Has the pipeline acknowledge an incident on behalf of `by`: the incident as stored, or the
/// answer to give instead (404 unknown, 409 resolved, 503 busy), `what` naming the request.
pub(super) async fn acknowledge_incident(
    app: &App,
    id: String,
    by: String,
    what: &str,
) -> Result<nightshift_core::Incident, Response> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    if let Some(busy) = enqueue(app, Work::Acknowledge { id, by, reply }, what) {
        return Err(busy);
    }
    match answer.await {
        Ok(Ok(incident)) => Ok(incident),
        Ok(Err((status, message))) => Err(text(status, format!("{what}: {message}"))),
        Err(_) => Err(text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: shutting down"),
        )),
    }
}

/// `GET /api/v1/anomalies?entity=NAME&since=MS&limit=N&cursor=C`: anomaly reports on derived
/// signals.
pub(super) async fn anomalies(
    State(app): State<Arc<App>>,
    uri: Uri,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad("anomalies", e),
    };
    if q.status.is_some() {
        return bad("anomalies", "`status` applies to alerts and incidents only");
    }
    let after = match cursor("anomalies", &q) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let filter = AnomalyFilter {
        entity: q.entity.clone(),
        since: q.since,
        limit: limit(&q),
        after,
    };
    listed("anomalies", &uri, app.store.anomalies(&filter).await)
}

/// `GET /api/v1/topology`: the call graph and placement learned so far.
pub(super) async fn topology(State(app): State<Arc<App>>) -> Response {
    let snapshot = app
        .topology
        .lock()
        .map(|t| t.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
    Json(snapshot).into_response()
}

/// `GET /api/v1/changes?since=MS&limit=N&cursor=C`: recorded deploys and other changes.
pub(super) async fn changes(
    State(app): State<Arc<App>>,
    uri: Uri,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad("changes", e),
    };
    if q.status.is_some() || q.entity.is_some() {
        return bad(
            "changes",
            "only `since`, `limit` and `cursor` apply to changes",
        );
    }
    let after = match cursor("changes", &q) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let filter = ChangeFilter {
        since: q.since,
        limit: limit(&q),
        after,
    };
    listed("changes", &uri, app.store.changes(&filter).await)
}

/// The body of `POST /api/v1/ask`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Question {
    question: String,
    /// Let the LLM investigate when one is configured (default true).
    llm: Option<bool>,
}

/// Questions longer than this are refused.
const MAX_QUESTION_BYTES: usize = 2_000;

/// `POST /api/v1/ask` with `{"question": "why is checkout slow?"}`: the answer with the evidence
/// and queries that show it; from the LLM investigator when configured, else deterministic.
pub(super) async fn ask(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let q: Question = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => {
            return bad(
                "ask",
                format!("the body must be {{\"question\": \"…\"}} ({e})"),
            );
        }
    };
    if q.question.trim().is_empty() || q.question.len() > MAX_QUESTION_BYTES {
        return bad(
            "ask",
            format!("`question` must be a question of 1 to {MAX_QUESTION_BYTES} bytes"),
        );
    }
    match app
        .assistant
        .ask(q.question.trim(), q.llm.unwrap_or(true))
        .await
    {
        Ok(reply) => Json(reply).into_response(),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("ask: cannot read the database ({e})"),
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExplainQuery {
    llm: Option<bool>,
}

/// `GET /api/v1/incidents/{id}/explanation?llm=false`: what happened, why and what to do,
/// citing the incident's evidence; investigated by the LLM when configured (once per incident
/// revision), deterministic otherwise or with `llm=false`.
pub(super) async fn explanation(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    query: Result<Query<ExplainQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad("explanation", e),
    };
    match app.store.incident(&id).await {
        Ok(Some(i)) => Json(app.assistant.explain(&i, q.llm.unwrap_or(true)).await).into_response(),
        Ok(None) => text(StatusCode::NOT_FOUND, format!("no incident {id:?}")),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("incident {id}: cannot read the database ({e})"),
        ),
    }
}
