//! The read side of `serve`'s HTTP API: what was stored and found, as JSON. Every list is newest
//! first and bounded (`limit`, at most 10,000; 1,000 by default); a bad query parameter is a 400
//! naming it.

use crate::serve::{App, text};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nightshift_core::{AlertStatus, IncidentStatus, Millis};
use nightshift_store::{AlertFilter, AnomalyFilter, IncidentFilter, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
    entity: Option<String>,
    since: Option<Millis>,
    limit: Option<u32>,
}

fn limit(q: &ListQuery) -> Option<u32> {
    Some(q.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT))
}

fn bad(what: &str, problem: impl std::fmt::Display) -> Response {
    text(StatusCode::BAD_REQUEST, format!("{what}: {problem}"))
}

/// A list from the store as JSON, or 503 naming the database problem.
fn listed<T: Serialize>(what: &str, r: Result<Vec<T>, StoreError>) -> Response {
    match r {
        Ok(items) => Json(items).into_response(),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: cannot read the database ({e})"),
        ),
    }
}

/// The query of a list with a status (alerts, incidents): `status` one of `choices` (first the
/// active state, then the ended one), no `entity`.
fn status_query<T: Copy>(
    what: &str,
    query: Result<Query<ListQuery>, QueryRejection>,
    choices: [(&str, T); 2],
) -> Result<(ListQuery, Option<T>), Box<Response>> {
    let q = query.map_err(|e| Box::new(bad(what, e)))?.0;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => match choices.iter().find(|(name, _)| *name == s) {
            Some((_, v)) => Some(*v),
            None => {
                let (a, b) = (choices[0].0, choices[1].0);
                return Err(Box::new(bad(
                    what,
                    format!("status {s:?} is neither {a} nor {b}"),
                )));
            }
        },
    };
    if q.entity.is_some() {
        return Err(Box::new(bad(what, "`entity` applies to anomalies only")));
    }
    Ok((q, status))
}

/// `GET /api/v1/alerts?status=firing|resolved&since=MS&limit=N`: stored alerts.
pub(crate) async fn alerts(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let choices = [
        ("firing", AlertStatus::Firing),
        ("resolved", AlertStatus::Resolved),
    ];
    let (q, status) = match status_query("alerts", query, choices) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let filter = AlertFilter {
        status,
        since: q.since,
        limit: limit(&q),
    };
    listed("alerts", app.store.alerts(&filter).await)
}

/// `GET /api/v1/incidents?status=open|resolved&since=MS&limit=N`: incidents by `opened_at`.
pub(crate) async fn incidents(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let choices = [
        ("open", IncidentStatus::Open),
        ("resolved", IncidentStatus::Resolved),
    ];
    let (q, status) = match status_query("incidents", query, choices) {
        Ok(ok) => ok,
        Err(r) => return *r,
    };
    let filter = IncidentFilter {
        status,
        since: q.since,
        limit: limit(&q),
    };
    listed("incidents", app.store.incidents(&filter).await)
}

/// `GET /api/v1/incidents/{id}`: one incident with its hypotheses, evidence and timeline.
pub(crate) async fn incident(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.store.incident(&id).await {
        Ok(Some(i)) => Json(i).into_response(),
        Ok(None) => text(StatusCode::NOT_FOUND, format!("no incident {id:?}")),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("incident {id}: cannot read the database ({e})"),
        ),
    }
}

/// `GET /api/v1/anomalies?entity=NAME&since=MS&limit=N`: anomaly reports on derived signals.
pub(crate) async fn anomalies(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad("anomalies", e),
    };
    if q.status.is_some() {
        return bad("anomalies", "`status` applies to alerts and incidents only");
    }
    let filter = AnomalyFilter {
        entity: q.entity.clone(),
        since: q.since,
        limit: limit(&q),
    };
    listed("anomalies", app.store.anomalies(&filter).await)
}

/// `GET /api/v1/topology`: the call graph and placement learned so far.
pub(crate) async fn topology(State(app): State<Arc<App>>) -> Response {
    let snapshot = app
        .topology
        .lock()
        .map(|t| t.clone())
        .unwrap_or_else(|poisoned| poisoned.into_inner().clone());
    Json(snapshot).into_response()
}

/// `GET /api/v1/changes?since=MS&limit=N`: recorded deploys and other changes.
pub(crate) async fn changes(
    State(app): State<Arc<App>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return bad("changes", e),
    };
    if q.status.is_some() || q.entity.is_some() {
        return bad("changes", "only `since` and `limit` apply to changes");
    }
    listed("changes", app.store.changes(q.since, limit(&q)).await)
}
