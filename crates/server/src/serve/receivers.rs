//! The handlers of what the stack sends: remote-write, OTLP, Loki, Alertmanager and change
//! hooks. Each decodes (`nightshift_ingest`), stores what must be durable, and queues the rest
//! for the pipeline thread.

use super::{App, RETRY_AFTER_SECONDS, Work};
use crate::auth::Identity;
use crate::now_ms;
use axum::Extension;
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
    let (ce, ct) = (
        header_str(&headers, header::CONTENT_ENCODING.as_str()).map(str::to_string),
        header_str(&headers, header::CONTENT_TYPE.as_str()).map(str::to_string),
    );
    let decoded = off_runtime(&app, "remote-write", move || {
        decode_write_request(ce.as_deref(), ct.as_deref(), &body, now_ms())
    })
    .await;
    let decoded = match decoded {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (mut batch, partial) = match decoded {
        Ok(ok) => ok,
        Err(e) => {
            app.metrics.reject("invalid");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return text(status, format!("remote-write: {e}"));
        }
    };
    // Too far ahead is refused per series above (400); too far behind is dropped, counted.
    app.metrics.drop_out_of_bounds(&mut batch.samples);
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

/// Runs a decode on the blocking pool, at most as many at once as `App::decoders` allows, so
/// that decompression and parsing neither stall the async threads nor hold more than a few
/// decoded bodies in memory at once; waiting requests hold only their compressed bodies.
pub(super) async fn off_runtime<T: Send + 'static>(
    app: &App,
    what: &str,
    decode: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    let unavailable = || {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: shutting down"),
        )
    };
    let Ok(_permit) = app.decoders.acquire().await else {
        return Err(unavailable());
    };
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|_| unavailable())
}

/// Secrets out of log records before anything keeps them (templates, examples, evidence,
/// prompts): telemetry is stored redacted.
pub(crate) fn redact_logs(logs: &mut [nightshift_core::LogRecord]) {
    for l in logs {
        let body = nightshift_llm::redact::redact(&l.body);
        if body != l.body {
            l.body = body;
        }
        for v in l.attributes.values_mut() {
            let r = nightshift_llm::redact::redact(v);
            if r != *v {
                *v = r;
            }
        }
    }
}

/// 503 with `Retry-After`: the detectors are behind.
pub(super) fn busy(what: &str) -> Response {
    retry_later(format!("{what}: the detectors are behind; retry later"))
}

/// 503 with `Retry-After` and `message`.
pub(super) fn retry_later(message: String) -> Response {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, message);
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
    source: Option<String>,
) -> Response {
    let alerts = match decoded {
        Ok(a) => a,
        Err(e) => {
            app.metrics.reject("invalid_alerts");
            return text(StatusCode::BAD_REQUEST, format!("{what}: {e}"));
        }
    };
    let alerts = match within_bounds(app, alerts, source).await {
        Ok(a) => a,
        Err(e) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{what}: cannot read the alerts stored before ({e}); retry later"),
            );
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

/// The name of the identity a request was authenticated as, if it was.
fn identity_name(identity: Option<Extension<Identity>>) -> Option<String> {
    identity.map(|Extension(i)| i.name)
}

pub(super) async fn alertmanager_webhook(
    State(app): State<Arc<App>>,
    identity: Option<Extension<Identity>>,
    body: Bytes,
) -> Response {
    let source = identity_name(identity);
    accept_alerts(&app, decode_webhook(&body), "alertmanager webhook", source).await
}

pub(super) async fn postable_alerts(
    State(app): State<Arc<App>>,
    identity: Option<Extension<Identity>>,
    body: Bytes,
) -> Response {
    let source = identity_name(identity);
    accept_alerts(&app, decode_postable(&body, now_ms()), "alerts", source).await
}

/// `alerts` as they are taken: each marked with the identity it came with (`source`); a
/// `startsAt` over 7 days behind or 10 minutes ahead of this clock replaced by the time the
/// alert was first received (the stored firing's, else now), so that a sender's clock cannot
/// place an alert out of every window; a `resolved` for an alert never seen firing ignored.
/// Each adjustment is counted.
async fn within_bounds(
    app: &App,
    alerts: Vec<Alert>,
    source: Option<String>,
) -> Result<Vec<Alert>, nightshift_store::StoreError> {
    use nightshift_ingest::remote_write::{MAX_FUTURE_MS, MAX_PAST_MS};
    let now = now_ms();
    let mut kept = Vec::with_capacity(alerts.len());
    for mut a in alerts {
        a.source = source.clone();
        let too_old = a.starts_at < now.saturating_sub(MAX_PAST_MS);
        let too_new = a.starts_at > now.saturating_add(MAX_FUTURE_MS);
        if too_old || too_new || a.status == AlertStatus::Resolved {
            let filter = nightshift_store::AlertFilter {
                fingerprint: Some(a.fingerprint.clone()),
                limit: Some(1),
                ..Default::default()
            };
            let latest = app.store.alerts(&filter).await?.items.into_iter().next();
            if a.status == AlertStatus::Resolved && latest.is_none() {
                app.metrics.adjust_alert("resolved_never_firing");
                continue;
            }
            if too_old || too_new {
                app.metrics.adjust_alert(if too_new {
                    "stamped_in_future"
                } else {
                    "stamped_too_old"
                });
                // The firing it continues (or, resolved, ends), else a new one from now.
                a.starts_at = latest
                    .filter(|l| {
                        l.status == AlertStatus::Firing || a.status == AlertStatus::Resolved
                    })
                    .map_or(now, |l| l.starts_at);
                a.ends_at = a.ends_at.map(|e| e.clamp(a.starts_at, now));
            }
        }
        kept.push(a);
    }
    Ok(kept)
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

/// Decodes an OTLP body off the async threads; `Err(Ok(e))` is the decode's refusal,
/// `Err(Err(r))` the answer when no decode could run.
pub(super) async fn otlp_decode<
    T: prost::Message + serde::de::DeserializeOwned + Default + Send + 'static,
>(
    app: &App,
    what: &'static str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(T, Encoding), Result<OtlpError, Response>> {
    otlp_decode_then(app, what, headers, body, |t| t).await
}

/// [`otlp_decode`], then `then` on the decoded request, both off the async runtime.
pub(super) async fn otlp_decode_then<
    T: prost::Message + serde::de::DeserializeOwned + Default + Send + 'static,
    U: Send + 'static,
>(
    app: &App,
    what: &'static str,
    headers: &HeaderMap,
    body: Bytes,
    then: impl FnOnce(T) -> U + Send + 'static,
) -> Result<(U, Encoding), Result<OtlpError, Response>> {
    let (ct, ce) = (
        header_str(headers, header::CONTENT_TYPE.as_str()).map(str::to_string),
        header_str(headers, header::CONTENT_ENCODING.as_str()).map(str::to_string),
    );
    match off_runtime(app, what, move || {
        otlp::decode(what, ct.as_deref(), ce.as_deref(), &body).map(|(t, e)| (then(t), e))
    })
    .await
    {
        Ok(Ok(ok)) => Ok(ok),
        Ok(Err(e)) => Err(Ok(e)),
        Err(r) => Err(Err(r)),
    }
}

pub(super) async fn otlp_metrics(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (req, encoding) = match otlp_decode::<otlp::ExportMetricsServiceRequest>(
        &app,
        "metrics request",
        &headers,
        body,
    )
    .await
    {
        Ok(ok) => ok,
        Err(Ok(e)) => return otlp_error(&app, "otlp metrics", &e, &headers),
        Err(Err(r)) => return r,
    };
    let mut decoded = otlp::metric_samples(&req);
    let (cumulative, refused) = match app.deltas.lock() {
        Ok(mut d) => d.accumulate(std::mem::take(&mut decoded.deltas)),
        Err(_) => (Vec::new(), decoded.deltas.len()),
    };
    decoded.samples.extend(cumulative);
    // OTLP has no refusal per series: a point stamped far from now is dropped and counted.
    app.metrics.drop_out_of_bounds(&mut decoded.samples);
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
    let (req, encoding) = match otlp_decode::<otlp::ExportTraceServiceRequest>(
        &app,
        "traces request",
        &headers,
        body,
    )
    .await
    {
        Ok(ok) => ok,
        Err(Ok(e)) => return otlp_error(&app, "otlp traces", &e, &headers),
        Err(Err(r)) => return r,
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
    // Records are taken out of the request and redacted off the runtime, like decoding.
    let records = |req: otlp::ExportLogsServiceRequest| {
        let mut logs = otlp::log_records(&req);
        redact_logs(&mut logs);
        logs
    };
    let (logs, encoding) =
        match otlp_decode_then(&app, "logs request", &headers, body, records).await {
            Ok(ok) => ok,
            Err(Ok(e)) => return otlp_error(&app, "otlp logs", &e, &headers),
            Err(Err(r)) => return r,
        };
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
    let ct = header_str(&headers, header::CONTENT_TYPE.as_str()).map(str::to_string);
    let decoded = off_runtime(&app, "loki push", move || {
        nightshift_ingest::loki::decode_push(ct.as_deref(), &body).map(|mut logs| {
            redact_logs(&mut logs);
            logs
        })
    })
    .await;
    let logs = match decoded {
        Err(r) => return r,
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
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
    identity: Option<Extension<Identity>>,
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
    // Ids are namespaced by the identity that sent them: one sender cannot replace another's.
    let sender = identity_name(identity);
    let outcome = changes::decode_generic(&body, now_ms(), sender.as_deref().unwrap_or(""))
        .map(HookOutcome::Changes);
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
