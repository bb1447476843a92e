//! `nightshift serve`: the daemon against a real stack. An HTTP server takes what the stack sends
//! (Prometheus remote-write today) and hands it, through a bounded queue, to one worker thread
//! that owns the pipeline `demo` runs; `/metrics` exposes what the worker finds.
//!
//! Backpressure: a write request is decoded on the server's threads, then queued for the
//! worker. When the queue is full the request is answered 503 with `Retry-After`, which
//! Prometheus retries with backoff, so memory stays bounded under any burst and nothing that
//! was answered 2xx is dropped.

use crate::api;
use crate::config::Config;
use crate::notify::{self, Notice, NotifyMetrics, anomaly_alert, incident_notice};
use crate::pipeline::Pipeline;
use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nightshift_core::{
    Alert, AlertStatus, Anomaly, Change, Incident, LogRecord, Millis, SpanEdge, Topology,
};
use nightshift_detect::{EventPhase, SeriesWatch, watch::DEFAULT_MAX_SERIES};
use nightshift_ingest::changes::{self, HookError, HookOutcome};
use nightshift_ingest::otlp::{self, DeltaToCumulative, Encoding, OtlpError};
use nightshift_ingest::{
    AlertError, WriteBatch, decode_postable, decode_webhook, decode_write_request,
};
use nightshift_store::{SqliteStore, Store};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Compressed request bodies above this are refused with 413 before they are read whole.
const MAX_BODY_BYTES: usize = 16 << 20;
/// What a sender is told to wait when the queue is full, in seconds.
const RETRY_AFTER_SECONDS: &str = "1";

type Labels = Vec<(String, String)>;

/// What the pipeline thread has the recorder write to the store.
enum Record {
    Incident(Box<Incident>),
    Anomalies(Vec<Anomaly>),
}

/// Writes what the pipeline thread finds to the store, in order, until the thread is done.
async fn record(store: SqliteStore, mut rx: tokio::sync::mpsc::Receiver<Record>) {
    while let Some(r) = rx.recv().await {
        let result = match &r {
            Record::Incident(i) => store.upsert_incident(i).await,
            Record::Anomalies(a) => store.record_anomalies(a).await,
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot record a finding in the database");
        }
    }
}

/// What the HTTP handlers hand to the pipeline thread, in arrival order.
enum Work {
    Samples(WriteBatch),
    /// Alerts already stored.
    Alerts(Vec<Alert>),
    Spans(Vec<SpanEdge>),
    Logs(Vec<LogRecord>),
    /// Changes already stored.
    Changes(Vec<Change>),
    /// What the Kubernetes watchers found (its changes already stored).
    Cluster(crate::kube_watch::ClusterNews),
}

/// What `/metrics` exposes about the server itself and the series it watches.
/// Buckets of the latency histograms: 0.1 ms to about 3 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1e-4, 2.0, 15,
    ))
}

struct Metrics {
    anomaly_score: Family<Labels, Gauge<f64, AtomicU64>>,
    samples: Counter,
    stale: Counter,
    rejected: Family<Labels, Counter>,
    queue_depth: Gauge,
    alerts: Family<Labels, Counter>,
    otlp: Family<Labels, Counter>,
    kubernetes: Family<Labels, Counter>,
    request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    evaluation_seconds: Histogram,
    watched_series: Gauge,
    derived_series: Gauge,
    anomalies: Counter,
    incidents_open: Gauge,
    detector_state_bytes: Gauge,
    notify: NotifyMetrics,
    pull: crate::pull::PullMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            anomaly_score: Family::default(),
            samples: Counter::default(),
            stale: Counter::default(),
            rejected: Family::default(),
            queue_depth: Gauge::default(),
            alerts: Family::default(),
            otlp: Family::default(),
            kubernetes: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            evaluation_seconds: latency_histogram(),
            watched_series: Gauge::default(),
            derived_series: Gauge::default(),
            anomalies: Counter::default(),
            incidents_open: Gauge::default(),
            detector_state_bytes: Gauge::default(),
            notify: NotifyMetrics::default(),
            pull: crate::pull::PullMetrics::default(),
        }
    }
}

impl Metrics {
    fn register(&self, r: &mut Registry) {
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
            "nightshift_ingest_alerts",
            "Alerts received and stored, by status",
            self.alerts.clone(),
        );
        r.register(
            "nightshift_ingest_otlp_items",
            "OTLP and Loki items accepted, by signal (samples, spans, logs, loki_logs)",
            self.otlp.clone(),
        );
        r.register(
            "nightshift_ingest_kubernetes",
            "What the Kubernetes watchers found, by kind (placements, events, changes)",
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

    fn register_notify(&self, r: &mut Registry) {
        r.register(
            "nightshift_alertmanager_posts",
            "Posts of Nightshift's alerts that Alertmanager accepted",
            self.notify.sent.clone(),
        );
        r.register(
            "nightshift_alertmanager_post_failures",
            "Posts of Nightshift's alerts that failed (retried on the next second)",
            self.notify.failed.clone(),
        );
    }

    fn register_pull(&self, r: &mut Registry) {
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

    fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }
}

pub(crate) struct App {
    queue: SyncSender<Work>,
    /// The queue's capacity, to refuse a request before decoding it when the queue is full.
    queue_capacity: usize,
    pub(crate) store: SqliteStore,
    /// The topology as of the last evaluation.
    pub(crate) topology: Arc<Mutex<Topology>>,
    /// Running totals of OTLP delta series.
    deltas: Mutex<DeltaToCumulative>,
    hooks: crate::config::Hooks,
    metrics: Arc<Metrics>,
    registry: Registry,
    ready: Arc<AtomicBool>,
}

fn now_ms() -> Millis {
    jiff::Timestamp::now().as_millisecond()
}

/// Runs the server until Ctrl-C or SIGTERM, then lets the worker finish the queued requests.
pub fn serve(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let store = SqliteStore::open(&config.serve.store)
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}; set store.path in the configuration",
                config.serve.store
            )
        })?;
    let (tx, rx) = std::sync::mpsc::sync_channel(config.serve.queue);
    let ready = Arc::new(AtomicBool::new(false));
    // One TLS crypto provider for the process, chosen here (rustls needs exactly one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let notices = match &config.alertmanager {
        Some(am) => {
            metrics.register_notify(&mut registry);
            let client = http_client(am.timeout_ms, "Alertmanager")?;
            let (ntx, nrx) = tokio::sync::mpsc::channel(4096);
            tokio::spawn(notify::run(
                client,
                am.url.clone(),
                Duration::from_millis(am.resend_ms as u64),
                nrx,
                metrics.notify.clone(),
            ));
            Some(ntx)
        }
        None => None,
    };
    let pull = if let Some(prom) = config.prometheus.clone() {
        metrics.register_pull(&mut registry);
        let client = http_client(prom.timeout_ms, "the PromQL pull")?;
        let deliver = deliver_as(tx.clone(), metrics.queue_depth.clone(), Work::Samples);
        Some(tokio::spawn(crate::pull::run(
            client,
            prom,
            metrics.pull.clone(),
            deliver,
        )))
    } else {
        None
    };
    let cluster = match &config.kubernetes {
        Some(k) => Some(tokio::spawn(crate::kube_watch::run(
            kube_client(k).await?,
            k.namespace.clone(),
            deliver_news(tx.clone(), store.clone(), metrics.clone()),
        ))),
        None => None,
    };
    let files = if config.log_files.is_empty() {
        None
    } else {
        let (queue, metrics) = (tx.clone(), metrics.clone());
        let deliver: Deliver<Vec<LogRecord>> = Arc::new(move |records| {
            let (queue, metrics) = (queue.clone(), metrics.clone());
            Box::pin(async move {
                let n = records.len() as u64;
                let ok = submit(&queue, &metrics.queue_depth, Work::Logs(records)).await;
                metrics
                    .otlp
                    .get_or_create(&vec![("signal".to_string(), "file_logs".to_string())])
                    .inc_by(n);
                ok
            })
        });
        Some(tokio::spawn(crate::tail::run(
            config.log_files.clone(),
            deliver,
        )))
    };
    let link_base = format!("http://{}/api/v1/incidents", config.serve.listen);
    let topology = Arc::new(Mutex::new(Topology::default()));
    // Findings wait here for the database; when it falls behind, the pipeline thread waits, its
    // queue fills and senders are answered 503: backpressure all the way, nothing dropped.
    let (rec_tx, rec_rx) = tokio::sync::mpsc::channel(1024);
    let recorder = tokio::spawn(record(store.clone(), rec_rx));
    let worker = {
        let metrics = metrics.clone();
        let worker_topology = topology.clone();
        let ready = ready.clone();
        let watch = SeriesWatch::new(config.watch.clone(), config.overrides.clone())
            .with_max_series(config.max_series.unwrap_or(DEFAULT_MAX_SERIES));
        let pipeline = Pipeline::default().with_overrides(config.overrides.clone());
        let interval = Duration::from_millis(config.serve.interval_ms as u64);
        std::thread::Builder::new()
            .name("nightshift-pipeline".into())
            .spawn(move || {
                let out = Outbox {
                    notices,
                    link_base,
                    records: rec_tx,
                    topology: worker_topology,
                };
                work(rx, pipeline, watch, interval, &metrics, &ready, &out)
            })
            .context("cannot start the pipeline thread")?
    };
    let app = Arc::new(App {
        queue: tx,
        queue_capacity: config.serve.queue,
        store,
        topology,
        hooks: config.hooks.clone(),
        deltas: Mutex::new(DeltaToCumulative::new(
            config.max_series.unwrap_or(DEFAULT_MAX_SERIES),
        )),
        metrics,
        registry,
        ready,
    });
    let router = Router::new()
        .route("/api/v1/write", post(remote_write))
        .route("/api/v1/alerts/alertmanager", post(alertmanager_webhook))
        .route("/v1/metrics", post(otlp_metrics))
        .route("/v1/traces", post(otlp_traces))
        .route("/v1/logs", post(otlp_logs))
        .route("/loki/api/v1/push", post(loki_push))
        .route("/api/v1/changes", post(generic_changes).get(api::changes))
        .route("/hooks/github", post(github_hook))
        .route("/hooks/gitlab", post(gitlab_hook))
        .route("/hooks/argocd", post(argocd_hook))
        .route("/api/v1/alerts", post(postable_alerts).get(api::alerts))
        .route("/api/v1/incidents", get(api::incidents))
        .route("/api/v1/incidents/{id}", get(api::incident))
        .route("/api/v1/anomalies", get(api::anomalies))
        .route("/api/v1/topology", get(api::topology))
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/openapi.json", get(openapi))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(app.clone(), timed))
        .with_state(app.clone());
    let listener = tokio::net::TcpListener::bind(config.serve.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; set serve.listen in the configuration to a free address",
                config.serve.listen
            )
        })?;
    tracing::info!(listen = %config.serve.listen, "serving");
    eprintln!(
        "nightshift serve: listening on http://{}",
        config.serve.listen
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server stopped")?;
    // The server has stopped taking requests and the pull stops; closing the queue lets the
    // worker drain it.
    for task in [pull, cluster, files].into_iter().flatten() {
        task.abort();
        let _ = task.await;
    }
    let store = app.store.clone();
    drop(app);
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the pipeline thread panicked"))?;
    // The thread is done; the recorder writes what it still holds.
    let _ = recorder.await;
    store.close().await;
    eprintln!("nightshift serve: stopped after draining the queue");
    Ok(())
}

/// A client of the configured cluster: a kubeconfig file, else in-cluster or `$KUBECONFIG`.
async fn kube_client(k: &crate::config::KubernetesConfig) -> Result<kube::Client> {
    let config = match &k.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("kubernetes.kubeconfig: cannot read {path}"))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubernetes.kubeconfig: {path} has no usable context"))?
        }
        None => kube::Config::infer().await.context(
            "kubernetes: no in-cluster service account and no $KUBECONFIG; set kubernetes.kubeconfig",
        )?,
    };
    kube::Client::try_from(config).context("kubernetes: cannot build the API client")
}

/// Stores the watchers' changes, then queues their news for the pipeline thread, waiting while
/// it is behind.
fn deliver_news(
    queue: SyncSender<Work>,
    store: SqliteStore,
    metrics: Arc<Metrics>,
) -> Deliver<crate::kube_watch::ClusterNews> {
    Arc::new(move |news| {
        let (queue, store, metrics) = (queue.clone(), store.clone(), metrics.clone());
        Box::pin(async move {
            for (kind, n) in [
                ("placements", news.placements.len()),
                ("events", news.events.len()),
                ("changes", news.changes.len()),
            ] {
                metrics
                    .kubernetes
                    .get_or_create(&vec![("kind".to_string(), kind.to_string())])
                    .inc_by(n as u64);
            }
            for c in &news.changes {
                if let Err(e) = store.record_change(c).await {
                    tracing::error!(error = %e, "cannot store a change from Kubernetes");
                }
            }
            submit(&queue, &metrics.queue_depth, Work::Cluster(news)).await
        })
    })
}

/// Times every request into `nightshift_http_request_duration_seconds{route}` (the route's
/// pattern, so ids in paths do not make new series).
async fn timed(
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

/// How a source Nightshift pulls from (PromQL, Kubernetes, files) hands what it found to the
/// pipeline thread: the future waits while the pipeline is behind and gives `false` once it is
/// gone.
pub(crate) type Deliver<T> =
    Arc<dyn Fn(T) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

/// A [`Deliver`] that queues each item as the work `wrap` makes of it.
fn deliver_as<T: Send + 'static>(
    queue: SyncSender<Work>,
    depth: Gauge,
    wrap: fn(T) -> Work,
) -> Deliver<T> {
    Arc::new(move |item| {
        let (queue, depth) = (queue.clone(), depth.clone());
        Box::pin(async move { submit(&queue, &depth, wrap(item)).await })
    })
}

/// Queues work from a source Nightshift pulls, waiting while the pipeline is behind; `false`
/// once it is gone.
async fn submit(queue: &SyncSender<Work>, depth: &Gauge, mut work: Work) -> bool {
    loop {
        match queue.try_send(work) {
            Ok(()) => {
                depth.inc();
                return true;
            }
            Err(TrySendError::Full(back)) => {
                work = back;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
}

/// An HTTP client for calls to the user's stack, with a timeout per request.
fn http_client(timeout_ms: i64, what: &str) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout_ms as u64))
        .build()
        .with_context(|| format!("cannot build the HTTP client for {what}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

pub(crate) fn text(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

async fn remote_write(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
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
fn busy(what: &str) -> Response {
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
fn enqueue(app: &App, work: Work, what: &str) -> Option<Response> {
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
async fn accept_alerts(app: &App, decoded: Result<Vec<Alert>, AlertError>, what: &str) -> Response {
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

async fn alertmanager_webhook(State(app): State<Arc<App>>, body: Bytes) -> Response {
    accept_alerts(&app, decode_webhook(&body), "alertmanager webhook").await
}

async fn postable_alerts(State(app): State<Arc<App>>, body: Bytes) -> Response {
    accept_alerts(&app, decode_postable(&body, now_ms()), "alerts").await
}

/// An OTLP answer: the message encoded as the request was, with its content type.
fn otlp_answer(status: StatusCode, body: Vec<u8>, encoding: Encoding) -> Response {
    let ct = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    (status, [(header::CONTENT_TYPE, ct)], body).into_response()
}

/// An OTLP error: a `google.rpc.Status` in the request's encoding (JSON when it is unknown).
fn otlp_error(app: &App, what: &str, e: &OtlpError, headers: &HeaderMap) -> Response {
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

fn otlp_decode<T: prost::Message + serde::de::DeserializeOwned + Default>(
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

fn count_otlp(app: &App, signal: &str, n: usize) {
    app.metrics
        .otlp
        .get_or_create(&vec![("signal".to_string(), signal.to_string())])
        .inc_by(n as u64);
}

async fn otlp_metrics(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
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
        count_otlp(&app, "samples", n);
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

async fn otlp_traces(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
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
        count_otlp(&app, "spans", n);
    }
    let answer = otlp::ExportTraceServiceResponse::default();
    otlp_answer(StatusCode::OK, otlp::encode(&answer, encoding), encoding)
}

async fn otlp_logs(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
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
        count_otlp(&app, "logs", n);
    }
    let answer = otlp::ExportLogsServiceResponse::default();
    otlp_answer(StatusCode::OK, otlp::encode(&answer, encoding), encoding)
}

/// `POST /loki/api/v1/push`: 204 once the records are queued, as Loki answers.
async fn loki_push(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
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
        app.metrics
            .otlp
            .get_or_create(&vec![("signal".to_string(), "loki_logs".to_string())])
            .inc_by(n as u64);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Stores the changes, then queues them for the correlator; answers what became of them.
async fn accept_hook(app: &App, what: &str, outcome: Result<HookOutcome, HookError>) -> Response {
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

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, "authorization").and_then(|a| a.strip_prefix("Bearer "))
}

fn not_configured(what: &str, key: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("{what}: this hook is off; set hooks.{key} in the configuration to turn it on"),
    )
}

async fn generic_changes(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(token) = &app.hooks.changes_token
        && let Err(e) = changes::verify_token(token, bearer(&headers), "Authorization: Bearer")
    {
        return accept_hook(&app, "changes", Err(e)).await;
    }
    let outcome = changes::decode_generic(&body, now_ms()).map(HookOutcome::Changes);
    accept_hook(&app, "changes", outcome).await
}

async fn github_hook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
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

async fn gitlab_hook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
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

async fn argocd_hook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = &app.hooks.argocd_token else {
        return not_configured("argocd hook", "argocd_token");
    };
    let outcome = changes::verify_token(token, bearer(&headers), "Authorization: Bearer")
        .and_then(|()| changes::decode_argocd(&body, now_ms()));
    accept_hook(&app, "argocd hook", outcome).await
}

async fn metrics_page(State(app): State<Arc<App>>) -> Response {
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

/// The API's OpenAPI 3 description (`src/openapi.json`).
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline is starting".into(),
        )
    }
}

/// The labels of a watched series on `nightshift_anomaly_score`: its own labels and its name as
/// `metric` (a label of its own called `metric` becomes `exported_metric`, as Prometheus
/// renames clashing labels).
fn score_labels(key: &nightshift_core::SeriesKey) -> Labels {
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

/// Where the worker sends what Nightshift alerts on, when an Alertmanager is configured.
struct Outbox {
    notices: Option<tokio::sync::mpsc::Sender<Notice>>,
    link_base: String,
    records: tokio::sync::mpsc::Sender<Record>,
    topology: Arc<Mutex<Topology>>,
}

impl Outbox {
    /// Hands a notice to the notifier; if it is 4,096 notices behind, the notice is dropped with
    /// a warning rather than stalling detection.
    /// Hands a finding to the recorder, waiting while it is behind.
    fn record(&self, r: Record) {
        if self.records.blocking_send(r).is_err() {
            tracing::error!("the recorder stopped; a finding was not stored");
        }
    }

    fn send(&self, notice: Notice) {
        if let Some(tx) = &self.notices
            && tx.try_send(notice).is_err()
        {
            tracing::warn!("the Alertmanager notifier is behind; a notice was dropped");
        }
    }
}

/// The worker: owns the pipeline and the watched series, applies queued batches in arrival
/// order, and evaluates the derived signals every `interval` of wall time.
fn work(
    rx: Receiver<Work>,
    mut pipeline: Pipeline,
    mut watch: SeriesWatch,
    interval: Duration,
    metrics: &Metrics,
    ready: &AtomicBool,
    out: &Outbox,
) {
    // Each watched series' gauge, kept so a sample costs one atomic store, not a label lookup.
    let mut gauges: HashMap<nightshift_core::SeriesKey, Gauge<f64, AtomicU64>> = HashMap::new();
    // Watched series in an anomaly event, whose alert is firing.
    let mut in_event: std::collections::HashSet<nightshift_core::SeriesKey> = Default::default();
    let mut next_eval = Instant::now() + interval;
    ready.store(true, Ordering::Relaxed);
    loop {
        match rx.recv_timeout(next_eval.saturating_duration_since(Instant::now())) {
            Ok(Work::Alerts(alerts)) => {
                metrics.queue_depth.dec();
                for a in &alerts {
                    pipeline.ingest_alert(a);
                }
            }
            Ok(Work::Spans(edges)) => {
                metrics.queue_depth.dec();
                for e in &edges {
                    pipeline.ingest_span(e);
                }
            }
            Ok(Work::Cluster(news)) => {
                metrics.queue_depth.dec();
                for (service, node) in &news.placements {
                    pipeline.observe_placement(service, node);
                }
                for e in &news.events {
                    pipeline.ingest_event(e);
                }
                for c in &news.changes {
                    pipeline.ingest_change(c);
                }
            }
            Ok(Work::Changes(list)) => {
                metrics.queue_depth.dec();
                for c in &list {
                    pipeline.ingest_change(c);
                }
            }
            Ok(Work::Logs(logs)) => {
                metrics.queue_depth.dec();
                for l in &logs {
                    pipeline.ingest_log(l);
                }
            }
            Ok(Work::Samples(batch)) => {
                metrics.queue_depth.dec();
                for (key, ts, value) in &batch.samples {
                    pipeline.ingest_sample(key, *ts, *value);
                    if let Some(score) = watch.observe(key, *ts, *value) {
                        gauges
                            .entry(key.clone())
                            .or_insert_with(|| {
                                metrics
                                    .anomaly_score
                                    .get_or_create(&score_labels(key))
                                    .clone()
                            })
                            .set(score.score);
                        match score.phase {
                            EventPhase::Onset => {
                                let why = watch
                                    .get(key)
                                    .map(|w| w.ensemble.explain_top())
                                    .unwrap_or_default();
                                let summary = format!("{key} is anomalous: {why}");
                                out.send(Notice::Firing(anomaly_alert(key, *ts, summary)));
                                in_event.insert(key.clone());
                            }
                            EventPhase::Normal if in_event.remove(key) => {
                                out.send(Notice::Resolved {
                                    key: format!("anomaly:{key}"),
                                    at: *ts,
                                });
                            }
                            _ => {}
                        }
                    }
                }
                metrics.watched_series.set(watch.len() as i64);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if Instant::now() >= next_eval {
            let started = Instant::now();
            let eval = pipeline.evaluate(now_ms(), false);
            metrics
                .evaluation_seconds
                .observe(started.elapsed().as_secs_f64());
            metrics.anomalies.inc_by(eval.anomalies.len() as u64);
            if !eval.anomalies.is_empty() {
                out.record(Record::Anomalies(eval.anomalies));
            }
            for (id, _) in &eval.updates {
                if let Some(i) = pipeline.correlator().incidents().find(|i| i.id == *id) {
                    out.record(Record::Incident(Box::new(i.clone())));
                    out.send(incident_notice(i, format!("{}/{id}", out.link_base)));
                }
            }
            if let Ok(mut t) = out.topology.lock() {
                t.clone_from(pipeline.correlator().topology());
            }
            let stats = pipeline.stats();
            metrics.derived_series.set(stats.detected_series as i64);
            metrics
                .detector_state_bytes
                .set((stats.detector_state_bytes as usize + watch.state_bytes()) as i64);
            metrics.incidents_open.set(
                pipeline
                    .correlator()
                    .incidents()
                    .filter(|i| i.status == nightshift_core::IncidentStatus::Open)
                    .count() as i64,
            );
            next_eval += interval;
            if next_eval < Instant::now() {
                next_eval = Instant::now() + interval;
            }
        }
    }
    ready.store(false, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    /// Every route the server mounts is described in the OpenAPI document, and nothing else.
    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("valid JSON");
        let mut documented: Vec<String> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect();
        let source = include_str!("serve.rs");
        let mut mounted: Vec<String> = source
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".route(\""))
            .filter_map(|l| l.split('"').next())
            .map(str::to_string)
            .collect();
        documented.sort();
        mounted.sort();
        assert_eq!(documented, mounted);
    }
}
