//! What `/metrics` shows: the server's own counters and gauges, request and evaluation
//! latencies, and `nightshift_anomaly_score` of the watched series.

use super::receivers::text;
use super::{App, Labels};
use crate::alerts_out::AlertsOutMetrics;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// What `/metrics` exposes about the server itself and the series it watches.
/// Buckets of the latency histograms: 0.1 ms to about 3 s, doubling.
pub(super) fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1e-4, 2.0, 15,
    ))
}

pub(super) struct Metrics {
    pub(super) anomaly_score: Family<Labels, Gauge<f64, AtomicU64>>,
    pub(super) samples: Counter,
    pub(super) stale: Counter,
    pub(super) rejected: Family<Labels, Counter>,
    /// Requests refused by the credentials check, by `reason`.
    pub(super) denied: Family<Labels, Counter>,
    /// Samples dropped for a timestamp out of bounds, by `reason` (past, future).
    pub(super) dropped: Family<Labels, Counter>,
    /// Connections and requests refused at the edge, by `reason`.
    pub(super) edge: Family<Labels, Counter>,
    pub(super) queue_depth: Gauge,
    pub(super) alerts: Family<Labels, Counter>,
    pub(super) items: Family<Labels, Counter>,
    pub(super) kubernetes: Family<Labels, Counter>,
    pub(super) request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub(super) evaluation_seconds: Histogram,
    pub(super) watched_series: Gauge,
    pub(super) derived_series: Gauge,
    pub(super) anomalies: Counter,
    pub(super) incidents_open: Gauge,
    pub(super) detector_state_bytes: Gauge,
    pub(super) alerts_out: AlertsOutMetrics,
    pub(super) pull: nightshift_sources::prometheus::PullMetrics,
    /// Investigations started without being asked, by `source` of the conclusion shown.
    pub(super) investigations: Family<Labels, Counter>,
    /// Alerts whose times or state were not taken as sent, by `reason`.
    pub(super) alert_adjustments: Family<Labels, Counter>,
    /// Workloads from the Kubernetes API not remembered, over the bound.
    pub(super) workloads_dropped: Counter,
    /// Tokens the LLM investigator spent today (UTC), against `llm.daily_tokens`.
    pub(super) llm_tokens_today: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            anomaly_score: Family::default(),
            samples: Counter::default(),
            stale: Counter::default(),
            rejected: Family::default(),
            denied: Family::default(),
            dropped: Family::default(),
            edge: Family::default(),
            queue_depth: Gauge::default(),
            alerts: Family::default(),
            items: Family::default(),
            kubernetes: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            evaluation_seconds: latency_histogram(),
            watched_series: Gauge::default(),
            derived_series: Gauge::default(),
            anomalies: Counter::default(),
            incidents_open: Gauge::default(),
            detector_state_bytes: Gauge::default(),
            alerts_out: AlertsOutMetrics::default(),
            pull: nightshift_sources::prometheus::PullMetrics::default(),
            investigations: Family::default(),
            alert_adjustments: Family::default(),
            workloads_dropped: Counter::default(),
            llm_tokens_today: Gauge::default(),
        }
    }
}

impl Metrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "nightshift_http_request_duration_seconds",
            "Time to answer a request, by route",
            self.request_seconds.clone(),
        );
        r.register(
            "nightshift_evaluation_duration_seconds",
            "Time of one evaluation: derived signals, their detectors, the correlator",
            self.evaluation_seconds.clone(),
        );
        r.register(
            "nightshift_anomaly_score",
            "Calibrated anomaly score in [0, 1] of each watched series (1 at a record high or low)",
            self.anomaly_score.clone(),
        );
        r.register(
            "nightshift_ingest_samples",
            "Samples accepted from remote-write",
            self.samples.clone(),
        );
        r.register(
            "nightshift_ingest_stale_markers",
            "Staleness markers received (series that went away)",
            self.stale.clone(),
        );
        r.register(
            "nightshift_ingest_rejected_requests",
            "Write requests refused, by reason",
            self.rejected.clone(),
        );
        r.register(
            "nightshift_http_denied_requests",
            "Requests refused by the credentials check, by reason (unauthenticated, malformed, unknown, forbidden)",
            self.denied.clone(),
        );
        r.register(
            "nightshift_ingest_dropped_samples",
            "Samples dropped for their timestamp, by reason (past: over 7 days behind this receiver's clock; future: over 10 min ahead)",
            self.dropped.clone(),
        );
        r.register(
            "nightshift_http_edge_refused",
            "Connections and requests refused at the edge, by reason (connections over serve.limits.max_connections, in_flight over serve.limits.max_in_flight, tls_handshake failed or too slow, connection_error such as headers not sent within serve.limits.header_timeout)",
            self.edge.clone(),
        );
        r.register(
            "nightshift_ingest_alerts",
            "Alerts received and stored, by status",
            self.alerts.clone(),
        );
        r.register(
            "nightshift_ingest_alert_adjustments",
            "Alerts not taken as sent, by reason (stamped_too_old, stamped_in_future: startsAt over 7 days behind or 10 min ahead, replaced by the time it was first received; resolved_never_firing: a resolved alert never seen firing, ignored)",
            self.alert_adjustments.clone(),
        );
        r.register(
            "nightshift_workloads_dropped",
            "Services' workloads from the Kubernetes API not remembered, over the bound of 50,000",
            self.workloads_dropped.clone(),
        );
        r.register(
            "nightshift_ingest_otlp_items",
            "OTLP, Loki and log-file items accepted, by signal (samples, spans, logs, loki_logs, file_logs)",
            self.items.clone(),
        );
        r.register(
            "nightshift_ingest_kubernetes",
            "What the Kubernetes watchers found, by kind (placements, workloads, events, changes)",
            self.kubernetes.clone(),
        );
        r.register(
            "nightshift_ingest_queue_depth",
            "Write requests waiting for the detectors",
            self.queue_depth.clone(),
        );
        r.register(
            "nightshift_watched_series",
            "Raw series scored under detect.watch",
            self.watched_series.clone(),
        );
        r.register(
            "nightshift_derived_series",
            "Derived golden-signal series under detection",
            self.derived_series.clone(),
        );
        r.register(
            "nightshift_anomaly_reports",
            "Anomaly reports on derived signals",
            self.anomalies.clone(),
        );
        r.register(
            "nightshift_incidents_open",
            "Incidents currently open",
            self.incidents_open.clone(),
        );
        r.register(
            "nightshift_detector_state_bytes",
            "Bytes of detector state held",
            self.detector_state_bytes.clone(),
        );
    }

    pub(super) fn register_alerts_out(&self, r: &mut Registry) {
        r.register(
            "nightshift_alertmanager_posts",
            "Posts of Nightshift's alerts that Alertmanager accepted",
            self.alerts_out.sent.clone(),
        );
        r.register(
            "nightshift_alertmanager_post_failures",
            "Posts of Nightshift's alerts that failed (retried on the next second)",
            self.alerts_out.failed.clone(),
        );
    }

    pub(super) fn register_llm(&self, r: &mut Registry) {
        r.register(
            "nightshift_llm_tokens_today",
            "Tokens the LLM investigator spent today (UTC), kept across restarts, against llm.daily_tokens",
            self.llm_tokens_today.clone(),
        );
    }

    pub(super) fn register_investigations(&self, r: &mut Registry) {
        r.register(
            "nightshift_investigations",
            "Incidents the LLM investigated on opening, by the source of the conclusion shown (llm, or deterministic when the model's was rejected)",
            self.investigations.clone(),
        );
    }

    pub(super) fn register_pull(&self, r: &mut Registry) {
        r.register(
            "nightshift_pull_samples",
            "Samples pulled with PromQL",
            self.pull.samples.clone(),
        );
        r.register(
            "nightshift_pull_failures",
            "PromQL queries that failed (each try counts)",
            self.pull.failures.clone(),
        );
    }

    /// Counts `n` items accepted from a log or OTLP source, by `signal`.
    pub(super) fn count_items(&self, signal: &str, n: usize) {
        self.items
            .get_or_create(&vec![("signal".to_string(), signal.to_string())])
            .inc_by(n as u64);
    }

    pub(super) fn adjust_alert(&self, reason: &str) {
        self.alert_adjustments
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    pub(super) fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }
}

/// Times every request into `nightshift_http_request_duration_seconds{route}` (the route's
/// pattern, so ids in paths do not make new series).
impl Metrics {
    /// Drops the samples of `batch` out of bounds against the clock, counted.
    pub(super) fn drop_out_of_bounds(
        &self,
        samples: &mut Vec<(nightshift_core::SeriesKey, i64, f64)>,
    ) {
        let (old, new) =
            nightshift_ingest::remote_write::drop_out_of_bounds(samples, crate::now_ms());
        for (reason, n) in [("past", old), ("future", new)] {
            if n > 0 {
                self.dropped
                    .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                    .inc_by(n as u64);
            }
        }
    }

    /// One more connection or request refused at the edge for `reason`.
    pub(super) fn count_edge(&self, reason: &str) {
        self.edge
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }
}

pub(super) async fn timed(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics
        .request_seconds
        .get_or_create(&vec![("route".to_string(), route)])
        .observe(started.elapsed().as_secs_f64());
    response
}

pub(super) async fn metrics_page(State(app): State<Arc<App>>) -> Response {
    let spent = app.assistant.tokens_spent_today();
    app.metrics
        .llm_tokens_today
        .set(spent.min(i64::MAX as u64) as i64);
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &app.registry) {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// The labels of a watched series on `nightshift_anomaly_score`: its own labels and its name as
/// `metric` (a label of its own called `metric` becomes `exported_metric`, as Prometheus
/// renames clashing labels).
pub(super) fn score_labels(key: &nightshift_core::SeriesKey) -> Labels {
    let mut labels: Labels = Vec::with_capacity(key.labels.len() + 1);
    labels.push(("metric".to_string(), key.metric.clone()));
    for (k, v) in &key.labels {
        let k = if k == "metric" {
            "exported_metric".to_string()
        } else {
            k.clone()
        };
        labels.push((k, v.clone()));
    }
    labels
}
