//! The handlers of what the stack sends: remote-write, OTLP, Loki, Alertmanager and change
//! hooks. Each decodes (`nightshift_ingest`), stores what must be durable, and queues the rest
//! for the pipeline thread.

use super::{App, RETRY_AFTER_SECONDS, Work};
use crate::now_ms;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nightshift_core::{Alert, AlertStatus};
use nightshift_ingest::changes::{self, HookError, HookOutcome};
use nightshift_ingest::otlp::{self, Encoding, OtlpError};
use nightshift_ingest::{
    AlertError, WriteBatch, decode_postable, decode_webhook, decode_write_request,
};
use nightshift_store::Store;
use std::sync::Arc;
use std::sync::mpsc::TrySendError;

pub(crate) fn text(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

pub(super) async fn remote_write(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Under overload, a request the queue has no room for is refused before it costs a decode.
    if app.metrics.queue_depth.get() >= app.queue_capacity as i64 {
        app.metrics.reject("overloaded");
        return busy("remote-write");
    }
    let h = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let decoded = decode_write_request(
        h(header::CONTENT_ENCODING),
        h(header::CONTENT_TYPE),
        &body,
        now_ms(),
    );
    let (batch, partial) = match decoded {
        Ok(ok) => ok,
        Err(e) => {
            app.metrics.reject("invalid");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return text(status, format!("remote-write: {e}"));
        }
    };
    let (samples, stale) = (batch.samples.len() as u64, batch.stale as u64);
    if samples + stale > 0 {
        if let Some(busy) = enqueue(&app, Work::Samples(batch), "remote-write") {
            return busy;
        }
        app.metrics.samples.inc_by(samples);
        app.metrics.stale.inc_by(stale);
    }
    match partial {
        // The valid series are queued; the sender must not retry the rest.
        Some(e) => {
            app.metrics.reject("invalid_series");
            text(StatusCode::BAD_REQUEST, format!("remote-write: {e}"))
        }
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// 503 with `Retry-After`: the detectors are behind.
pub(super) fn busy(what: &str) -> Response {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{what}: the detectors are behind; retry later"),
    );
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    r
}

/// Queues work for the pipeline thread; when it cannot, the answer to give instead (a full
/// queue is answered 503 with `Retry-After`).
pub(super) fn enqueue(app: &App, work: Work, what: &str) -> Option<Response> {
    match app.queue.try_send(work) {
        Ok(()) => {
            app.metrics.queue_depth.inc();
            None
        }
        Err(TrySendError::Full(_)) => {
            app.metrics.reject("overloaded");
            Some(busy(what))
        }
        Err(TrySendError::Disconnected(_)) => Some(text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: shutting down"),
        )),
    }
}

/// Stores the alerts, then queues them for the correlator: a 2xx means they are on disk.
pub(super) async fn accept_alerts(
    app: &App,
    decoded: Result<Vec<Alert>, AlertError>,
    what: &str,
) -> Response {
    let alerts = match decoded {
        Ok(a) => a,
        Err(e) => {
            app.metrics.reject("invalid_alerts");
            return text(StatusCode::BAD_REQUEST, format!("{what}: {e}"));
        }
    };
    for a in &alerts {
        if let Err(e) = app.store.record_alert(a).await {
            tracing::error!(error = %e, "cannot store an alert");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{what}: cannot store the alerts ({e}); retry later"),
            );
        }
    }
    for a in &alerts {
        let status = match a.status {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        };
        app.metrics
            .alerts
            .get_or_create(&vec![("status".to_string(), status.to_string())])
            .inc();
    }
    if !alerts.is_empty()
        && let Some(busy) = enqueue(app, Work::Alerts(alerts), what)
    {
        return busy;
    }
    StatusCode::OK.into_response()
}

pub(super) async fn alertmanager_webhook(State(app): State<Arc<App>>, body: Bytes) -> Response {
    accept_alerts(&app, decode_webhook(&body), "alertmanager webhook").await
}

pub(super) async fn postable_alerts(State(app): State<Arc<App>>, body: Bytes) -> Response {
    accept_alerts(&app, decode_postable(&body, now_ms()), "alerts").await
}

/// An OTLP answer: the message encoded as the request was, with its content type.
pub(super) fn otlp_answer(status: StatusCode, body: Vec<u8>, encoding: Encoding) -> Response {
    let ct = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    (status, [(header::CONTENT_TYPE, ct)], body).into_response()
}

/// An OTLP error: a `google.rpc.Status` in the request's encoding (JSON when it is unknown).
pub(super) fn otlp_error(app: &App, what: &str, e: &OtlpError, headers: &HeaderMap) -> Response {
    app.metrics.reject("invalid_otlp");
    let encoding = otlp::encoding_of(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )
    .unwrap_or(Encoding::Json);
    let status = otlp::Status {
        code: otlp::INVALID_ARGUMENT,
        message: format!("{what}: {e}"),
    };
    let code = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    otlp_answer(code, otlp::encode(&status, encoding), encoding)
}

pub(super) fn otlp_decode<T: prost::Message + serde::de::DeserializeOwned + Default>(
    what: &'static str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(T, Encoding), OtlpError> {
    let h = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    otlp::decode(
        what,
        h(header::CONTENT_TYPE),
        h(header::CONTENT_ENCODING),
        body,
    )
}

pub(super) async fn otlp_metrics(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, encoding) = match otlp_decode::<otlp::ExportMetricsServiceRequest>(
        "metrics request",
        &headers,
        &body,
    ) {
        Ok(ok) => ok,
        Err(e) => return otlp_error(&app, "otlp metrics", &e, &headers),
    };
    let mut decoded = otlp::metric_samples(&req);
    let (cumulative, refused) = match app.deltas.lock() {
        Ok(mut d) => d.accumulate(std::mem::take(&mut decoded.deltas)),
        Err(_) => (Vec::new(), decoded.deltas.len()),
    };
    decoded.samples.extend(cumulative);
    let n = decoded.samples.len();
    if n > 0 {
        let batch = WriteBatch {
            samples: decoded.samples,
            ..WriteBatch::default()
        };
        if let Some(busy) = enqueue(&app, Work::Samples(batch), "otlp metrics") {
            return busy;
        }
        app.metrics.count_items("samples", n);
    }
    let mut answer = otlp::ExportMetricsServiceResponse::default();
    if refused > 0 {
        answer.partial_success = Some(
            opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess {
                rejected_data_points: refused as i64,
                error_message: "delta series beyond detect.max_series were not kept".into(),
            },
        );
    }
    otlp_answer(StatusCode::OK, otlp::encode(&answer, encoding), encoding)
}

pub(super) async fn otlp_traces(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, encoding) =
        match otlp_decode::<otlp::ExportTraceServiceRequest>("traces request", &headers, &body) {
            Ok(ok) => ok,
            Err(e) => return otlp_error(&app, "otlp traces", &e, &headers),
        };
    let edges = otlp::span_edges(&req);
    let n = edges.len();
    if n > 0 {
        if let Some(busy) = enqueue(&app, Work::Spans(edges), "otlp traces") {
            return busy;
        }
        app.metrics.count_items("spans", n);
    }
    let answer = otlp::ExportTraceServiceResponse::default();
    otlp_answer(StatusCode::OK, otlp::encode(&answer, encoding), encoding)
}

pub(super) async fn otlp_logs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, encoding) =
        match otlp_decode::<otlp::ExportLogsServiceRequest>("logs request", &headers, &body) {
            Ok(ok) => ok,
            Err(e) => return otlp_error(&app, "otlp logs", &e, &headers),
        };
    let logs = otlp::log_records(&req);
    let n = logs.len();
    if n > 0 {
        if let Some(busy) = enqueue(&app, Work::Logs(logs), "otlp logs") {
            return busy;
        }
        app.metrics.count_items("logs", n);
    }
    let answer = otlp::ExportLogsServiceResponse::default();
    otlp_answer(StatusCode::OK, otlp::encode(&answer, encoding), encoding)
}

/// `POST /loki/api/v1/push`: 204 once the records are queued, as Loki answers.
pub(super) async fn loki_push(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let logs = match nightshift_ingest::loki::decode_push(ct, &body) {
        Ok(l) => l,
        Err(e) => {
            app.metrics.reject("invalid_loki");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return text(status, format!("loki push: {e}"));
        }
    };
    let n = logs.len();
    if n > 0 {
        if let Some(busy) = enqueue(&app, Work::Logs(logs), "loki push") {
            return busy;
        }
        app.metrics.count_items("loki_logs", n);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Stores the changes, then queues them for the correlator; answers what became of them.
pub(super) async fn accept_hook(
    app: &App,
    what: &str,
    outcome: Result<HookOutcome, HookError>,
) -> Response {
    let changes = match outcome {
        Ok(HookOutcome::Changes(c)) => c,
        Ok(HookOutcome::Ignored(why)) => {
            return (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::json!({"ignored": why})),
            )
                .into_response();
        }
        Err(e) => {
            app.metrics.reject("invalid_change");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return text(status, format!("{what}: {e}"));
        }
    };
    for c in &changes {
        if let Err(e) = app.store.record_change(c).await {
            tracing::error!(error = %e, "cannot store a change");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{what}: cannot store the change ({e}); retry later"),
            );
        }
    }
    let ids: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
    if !changes.is_empty()
        && let Some(busy) = enqueue(app, Work::Changes(changes), what)
    {
        return busy;
    }
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"recorded": ids})),
    )
        .into_response()
}

pub(super) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, "authorization").and_then(|a| a.strip_prefix("Bearer "))
}

pub(super) fn not_configured(what: &str, key: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("{what}: this hook is off; set hooks.{key} in the configuration to turn it on"),
    )
}

pub(super) async fn generic_changes(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // With serve.auth the credentials check has authenticated an ingest identity already.
    if let Some(token) = &app.hooks.changes_token
        && app.guard.is_none()
        && let Err(e) = changes::verify_token(token, bearer(&headers), "Authorization: Bearer")
    {
        return accept_hook(&app, "changes", Err(e)).await;
    }
    let outcome = changes::decode_generic(&body, now_ms()).map(HookOutcome::Changes);
    accept_hook(&app, "changes", outcome).await
}

pub(super) async fn github_hook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = &app.hooks.github_secret else {
        return not_configured("github hook", "github_secret");
    };
    let outcome = changes::verify_github_signature(
        secret,
        header_str(&headers, "x-hub-signature-256"),
        &body,
    )
    .and_then(|()| changes::decode_github(header_str(&headers, "x-github-event"), &body));
    accept_hook(&app, "github hook", outcome).await
}

pub(super) async fn gitlab_hook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = &app.hooks.gitlab_token else {
        return not_configured("gitlab hook", "gitlab_token");
    };
    let outcome = changes::verify_token(
        token,
        header_str(&headers, "x-gitlab-token"),
        "X-Gitlab-Token",
    )
    .and_then(|()| changes::decode_gitlab(header_str(&headers, "x-gitlab-event"), &body, now_ms()));
    accept_hook(&app, "gitlab hook", outcome).await
}

pub(super) async fn argocd_hook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = &app.hooks.argocd_token else {
        return not_configured("argocd hook", "argocd_token");
    };
    let outcome = changes::verify_token(token, bearer(&headers), "Authorization: Bearer")
        .and_then(|()| changes::decode_argocd(&body, now_ms()));
    accept_hook(&app, "argocd hook", outcome).await
}
