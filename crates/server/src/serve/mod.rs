//! `nightshift serve`: the daemon against a real stack. The HTTP server takes what the stack
//! sends (`receivers.rs`) and the sources Nightshift pulls from (PromQL, Kubernetes, log files)
//! feed one bounded queue to the pipeline thread (`worker.rs`), which owns the pipeline `demo`
//! runs; `/metrics` shows what it finds (`metrics.rs`).
//!
//! Backpressure: a request is decoded on the server's threads, then queued for the worker.
//! When the queue is full the request is answered 503 with `Retry-After`, which senders retry
//! with backoff, so memory stays bounded under any burst and nothing that was answered 2xx is
//! dropped.

mod actions_api;
mod api;
mod edge;
mod guard;
mod metrics;
mod on_open;
mod receivers;
mod remediate;
mod slack_hooks;
mod worker;

use self::metrics::{Metrics, metrics_page, timed};
pub(crate) use self::receivers::text;
use self::receivers::{
    alertmanager_webhook, argocd_hook, enqueue, generic_changes, github_hook, gitlab_hook,
    loki_push, otlp_logs, otlp_metrics, otlp_traces, postable_alerts, remote_write,
};
use self::worker::{Outbox, work};
use crate::ServerError;
use crate::alerts_out::{self, Notice};
use crate::config::Config;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use nightshift_core::{Alert, Anomaly, Change, Incident, LogRecord, SpanEdge, Topology};
use nightshift_detect::{SeriesWatch, watch::DEFAULT_MAX_SERIES};
use nightshift_ingest::WriteBatch;
use nightshift_ingest::otlp::DeltaToCumulative;
use nightshift_pipeline::Pipeline;
use nightshift_sources::Deliver;
use nightshift_store::{SqliteStore, Store};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Request bodies above these are refused with 413 before they are read whole: telemetry
/// (remote-write, OTLP, Loki push), change hooks, and everything else (JSON API requests).
const MAX_TELEMETRY_BODY_BYTES: usize = 16 << 20;
const MAX_HOOK_BODY_BYTES: usize = 8 << 20;
const MAX_BODY_BYTES: usize = 1 << 20;
/// How many of the newest stored incidents a restarted server takes back as history.
const REMEMBERED_INCIDENTS: u32 = 1000;
/// What a sender is told to wait when the queue is full, in seconds.
pub(super) const RETRY_AFTER_SECONDS: &str = "1";

type Labels = Vec<(String, String)>;

/// What the pipeline thread has the recorder write to the store.
enum Record {
    Incident(Box<Incident>),
    Anomalies(Vec<Anomaly>),
    /// An incident someone changed by request; `reply` gets it once it is in the database.
    Requested {
        incident: Box<Incident>,
        reply: Reply,
    },
}

/// Writes what the pipeline thread finds to the store, in order, until the thread is done.
async fn record(store: SqliteStore, mut rx: tokio::sync::mpsc::Receiver<Record>) {
    while let Some(r) = rx.recv().await {
        let result = match r {
            Record::Incident(i) => store.upsert_incident(&i).await,
            Record::Anomalies(a) => store.record_anomalies(&a).await,
            Record::Requested { incident, reply } => {
                let result = store.upsert_incident(&incident).await;
                let answer = match &result {
                    Ok(()) => Ok(*incident),
                    Err(e) => Err((
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        format!("cannot store the incident ({e}); retry later"),
                    )),
                };
                let _ = reply.send(answer);
                result
            }
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
    Cluster(nightshift_sources::kubernetes::ClusterNews),
    /// Someone acknowledges an incident; `reply` gets the incident as changed, once stored.
    Acknowledge {
        id: String,
        by: String,
        reply: Reply,
    },
}

/// The answer to a request on an incident: the incident as changed and stored, or the status
/// and message of the refusal.
type Reply = tokio::sync::oneshot::Sender<Result<Incident, (axum::http::StatusCode, String)>>;

pub(crate) struct App {
    queue: SyncSender<Work>,
    /// The queue's capacity, to refuse a request before decoding it when the queue is full.
    queue_capacity: usize,
    pub(crate) store: SqliteStore,
    /// Answers questions and explains incidents.
    pub(crate) assistant: Arc<crate::assistant::Assistant>,
    /// The topology as of the last evaluation.
    pub(crate) topology: Arc<Mutex<Topology>>,
    /// The Slack app, when configured.
    pub(crate) slack: Option<slack_hooks::SlackHooks>,
    /// Runbooks, actions and their governance.
    pub(crate) remediation: Arc<remediate::Remediation>,
    /// Running totals of OTLP delta series.
    deltas: Mutex<DeltaToCumulative>,
    hooks: crate::config::Hooks,
    metrics: Arc<Metrics>,
    registry: Registry,
    ready: Arc<AtomicBool>,
    /// The credentials check; `None` when `serve.auth` configures none (open, loopback only).
    pub(crate) guard: Option<guard::Guard>,
    /// Permits for requests answered at once (`serve.limits.max_in_flight`).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Permits for decodes running at once (one or two per core).
    decoders: tokio::sync::Semaphore,
}

/// Runs the server until Ctrl-C or SIGTERM, then lets the worker finish the queued requests.
pub fn serve(config: Config) -> Result<(), ServerError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    runtime.block_on(run(config))
}

/// Start-up in the order each part needs the ones before it, the HTTP server until a signal,
/// then shutdown.
async fn run(config: Config) -> Result<(), ServerError> {
    let guard = check_exposure(&config)?;
    let metrics = Arc::new(Metrics::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let store = SqliteStore::open(&config.serve.store)
        .await
        .map_err(|source| ServerError::OpenStore {
            path: config.serve.store.clone(),
            source,
        })?;
    let (queue, rx) = std::sync::mpsc::sync_channel(config.serve.queue);
    // One TLS crypto provider for the process, chosen here (rustls needs exactly one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let notices = spawn_notifier(&config, &metrics, &mut registry)?;
    let placed = remediate::Placed::new(
        config.act.workloads.clone(),
        metrics.workloads_dropped.clone(),
    );
    let sources = spawn_sources(&config, &queue, &store, &metrics, &placed, &mut registry).await?;
    let scheme = if config.serve.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let base_url = format!("{scheme}://{}", config.serve.listen);
    let link_base = format!("{base_url}/api/v1/incidents");
    let topology = Arc::new(Mutex::new(Topology::default()));
    let assistant = Arc::new(crate::assistant::Assistant::new(
        &config,
        store.clone(),
        topology.clone(),
        sources
            .cluster
            .clone()
            .map(|(client, namespace)| crate::assistant::Cluster::new(client, namespace)),
    )?);
    assistant
        .restore_budget()
        .await
        .map_err(|source| ServerError::History {
            what: "the LLM tokens spent today",
            source,
        })?;
    let slack = spawn_slack(&config, &link_base, &assistant)?;
    let (feed, fixes) = spawn_fixes(&queue, &store, &metrics);
    let remediation = remediate::Remediation::new(
        &config,
        store.clone(),
        sources.cluster.as_ref().map(|(c, _)| c.clone()),
        feed,
        slack.for_actions(&config),
        notices.clone().map(|tx| (tx, base_url.clone())),
        placed,
    )
    .await?;
    // Incidents of earlier runs: history for new ones, and their ids are not reused.
    let past = store
        .incidents(&nightshift_store::IncidentFilter {
            limit: Some(REMEMBERED_INCIDENTS),
            ..Default::default()
        })
        .await
        .map_err(|source| ServerError::History {
            what: "the incidents",
            source,
        })?
        .items;
    let opened = spawn_investigations(
        &config,
        &assistant,
        slack.notices.clone(),
        &metrics,
        &mut registry,
    );
    // Findings wait here for the database; when it falls behind, the pipeline thread waits, its
    // queue fills and senders are answered 503: backpressure all the way, nothing dropped.
    let (records, recorder) = spawn_recorder(store.clone());
    let ready = Arc::new(AtomicBool::new(false));
    let out = Outbox {
        notices,
        link_base,
        slack: slack.notices,
        opened,
        remediation: spawn_remediation_feed(remediation.clone()),
        records,
        topology: topology.clone(),
    };
    let worker = spawn_worker(&config, rx, past, out, metrics.clone(), ready.clone())?;
    let app = Arc::new(App {
        queue,
        queue_capacity: config.serve.queue,
        assistant: assistant.clone(),
        slack: slack.hooks,
        remediation,
        store,
        topology,
        hooks: config.hooks.clone(),
        deltas: Mutex::new(DeltaToCumulative::new(
            config.max_series.unwrap_or(DEFAULT_MAX_SERIES),
        )),
        metrics,
        registry,
        ready,
        guard,
        in_flight: Arc::new(tokio::sync::Semaphore::new(
            config.serve.limits.max_in_flight,
        )),
        decoders: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| 2 * n.get()),
        ),
    });
    edge::serve_http(
        routes(app.clone(), assistant, &config),
        config.serve.listen,
        config.serve.tls.as_ref(),
        &config.serve.limits,
        app.clone(),
        shutdown_signal(),
    )
    .await?;
    // The server has stopped taking requests and the sources stop; closing the queue lets the
    // worker drain it.
    for task in sources.tasks.into_iter().chain([fixes]) {
        task.abort();
        let _ = task.await;
    }
    let store = app.store.clone();
    drop(app);
    worker.join().map_err(|_| ServerError::PipelinePanicked)?;
    // The thread is done; the recorder writes what it still holds.
    let _ = recorder.await;
    store.close().await;
    eprintln!("nightshift serve: stopped after draining the queue");
    Ok(())
}

/// The credentials check `serve.auth` asks for, or the refusal to listen beyond this machine
/// without one (unless `serve.auth.insecure_open` says so, warned at every start).
fn check_exposure(config: &Config) -> Result<Option<guard::Guard>, ServerError> {
    let serve = &config.serve;
    let mut auth = serve.auth.clone();
    if !auth.enabled() {
        if crate::auth::is_loopback(&serve.listen) {
            return Ok(None);
        }
        if !auth.insecure_open {
            return Err(ServerError::Insecure(format!(
                "serve.listen is {}, which other machines can reach, and serve.auth has no credentials: \
                 add a token, e.g.\n\n  serve:\n    auth:\n      tokens:\n        - {{name: prometheus, token_file: /etc/nightshift/prometheus.token, scopes: [ingest]}}\n        - {{name: oncall, token_file: /etc/nightshift/oncall.token, scopes: [read, ask, act]}}\n\n\
                 (docs/security.md), listen on 127.0.0.1, or set serve.auth.insecure_open: true to serve anyone who can connect",
                serve.listen
            )));
        }
        let warning = format!(
            "serve.auth.insecure_open: anyone who can reach {} may read, push telemetry and approve; add serve.auth.tokens",
            serve.listen
        );
        tracing::warn!("{warning}");
        eprintln!("nightshift serve: WARNING: {warning}");
        return Ok(None);
    }
    // Approvers' own tokens (act.approvers) read and decide, as before.
    for a in &config.act.approvers {
        if let Some(t) = &a.token {
            auth.tokens.push(crate::auth::Token {
                name: a.name.clone(),
                secret: t.clone(),
                scopes: [crate::auth::Scope::Read, crate::auth::Scope::Act].into(),
            });
        }
    }
    Ok(Some(guard::Guard {
        auth: Arc::new(crate::auth::Authenticator::new(&auth)),
        metrics_public: auth.metrics_public,
    }))
}

/// Nightshift's own alerts to Alertmanager, when configured: the sender of notices.
fn spawn_notifier(
    config: &Config,
    metrics: &Arc<Metrics>,
    registry: &mut Registry,
) -> Result<Option<tokio::sync::mpsc::Sender<Notice>>, ServerError> {
    let Some(am) = &config.alertmanager else {
        return Ok(None);
    };
    metrics.register_alerts_out(registry);
    let client = http_client(am.timeout_ms, "Alertmanager")?;
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    tokio::spawn(alerts_out::run(
        client,
        am.url.clone(),
        Duration::from_millis(am.resend_ms as u64),
        rx,
        metrics.alerts_out.clone(),
    ));
    Ok(Some(tx))
}

/// The running pulled sources, and the Kubernetes client they watch with (for the assistant
/// and the action provider too).
struct Sources {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    cluster: Option<(kube::Client, Option<String>)>,
}

/// The PromQL pull, the Kubernetes watch and the followed log files, each when configured.
async fn spawn_sources(
    config: &Config,
    queue: &SyncSender<Work>,
    store: &SqliteStore,
    metrics: &Arc<Metrics>,
    placed: &Arc<remediate::Placed>,
    registry: &mut Registry,
) -> Result<Sources, ServerError> {
    let mut tasks = Vec::new();
    if let Some(prom) = config.prometheus.clone() {
        metrics.register_pull(registry);
        let client = http_client(prom.timeout_ms, "the PromQL pull")?;
        let deliver = deliver_as(queue.clone(), metrics.queue_depth.clone(), Work::Samples);
        tasks.push(tokio::spawn(nightshift_sources::prometheus::run(
            client,
            prom,
            metrics.pull.clone(),
            deliver,
        )));
    }
    let cluster = match &config.kubernetes {
        Some(k) => Some((
            nightshift_sources::kubernetes::client(k).await?,
            k.namespace.clone(),
        )),
        None => None,
    };
    if let Some((client, namespace)) = cluster.clone() {
        tasks.push(tokio::spawn(nightshift_sources::kubernetes::run(
            client,
            namespace,
            deliver_news(
                queue.clone(),
                store.clone(),
                metrics.clone(),
                placed.clone(),
            ),
        )));
    }
    if !config.log_files.is_empty() {
        let (queue, metrics) = (queue.clone(), metrics.clone());
        let deliver: Deliver<Vec<LogRecord>> = Arc::new(move |mut records| {
            let (queue, metrics) = (queue.clone(), metrics.clone());
            receivers::redact_logs(&mut records);
            Box::pin(async move {
                let n = records.len();
                let ok = submit(&queue, &metrics.queue_depth, Work::Logs(records)).await;
                metrics.count_items("file_logs", n);
                ok
            })
        });
        tasks.push(tokio::spawn(nightshift_sources::files::run(
            config.log_files.clone(),
            deliver,
        )));
    }
    Ok(Sources { tasks, cluster })
}

/// The Slack app, when configured: its hooks for the slash command and buttons, and the sender
/// of incident notifications when it has a bot token.
struct Slack {
    hooks: Option<slack_hooks::SlackHooks>,
    notices: Option<tokio::sync::mpsc::Sender<Incident>>,
}

impl Slack {
    /// Where actions waiting for approval go: the incidents' channel, through the same client,
    /// with buttons when the app can verify their clicks.
    fn for_actions(&self, config: &Config) -> Option<(crate::slack::SlackApi, String, bool)> {
        match (&config.slack, &self.hooks) {
            (Some(sc), Some(hooks)) if sc.bot_token.is_some() => sc
                .channel
                .clone()
                .map(|channel| (hooks.api.clone(), channel, sc.signing_secret.is_some())),
            _ => None,
        }
    }
}

fn spawn_slack(
    config: &Config,
    link_base: &str,
    assistant: &Arc<crate::assistant::Assistant>,
) -> Result<Slack, ServerError> {
    let Some(sc) = &config.slack else {
        return Ok(Slack {
            hooks: None,
            notices: None,
        });
    };
    let api =
        crate::slack::SlackApi::new(&sc.api_url, sc.bot_token.as_deref().unwrap_or_default())?;
    let notices = sc.bot_token.as_ref().map(|_| {
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        tokio::spawn(crate::slack::notify(
            api.clone(),
            sc.clone(),
            link_base.to_string(),
            assistant.clone(),
            rx,
        ));
        tx
    });
    let hooks = slack_hooks::SlackHooks {
        signing_secret: sc.signing_secret.clone(),
        api,
        link_base: link_base.to_string(),
        llm: config.llm.is_some(),
    };
    Ok(Slack {
        hooks: Some(hooks),
        notices,
    })
}

/// A fix is a change: stored, then queued for the pipeline like any other. The task that does
/// it holds the queue, and is stopped at shutdown so that the queue can close.
fn spawn_fixes(
    queue: &SyncSender<Work>,
    store: &SqliteStore,
    metrics: &Arc<Metrics>,
) -> (remediate::FeedChange, tokio::task::JoinHandle<()>) {
    let (changes_tx, mut changes_rx) = tokio::sync::mpsc::unbounded_channel::<Change>();
    let (queue, store, metrics) = (queue.clone(), store.clone(), metrics.clone());
    let task = tokio::spawn(async move {
        while let Some(change) = changes_rx.recv().await {
            if let Err(e) = store.record_change(&change).await {
                tracing::error!("cannot store the change an action made: {e}");
                continue;
            }
            submit(&queue, &metrics.queue_depth, Work::Changes(vec![change])).await;
        }
    });
    let feed: remediate::FeedChange = Box::new(move |change: Change| {
        let _ = changes_tx.send(change);
    });
    (feed, task)
}

/// The LLM's investigation of each incident once it has settled, when configured.
fn spawn_investigations(
    config: &Config,
    assistant: &Arc<crate::assistant::Assistant>,
    slack: Option<tokio::sync::mpsc::Sender<Incident>>,
    metrics: &Arc<Metrics>,
    registry: &mut Registry,
) -> Option<tokio::sync::mpsc::Sender<String>> {
    if config.llm.is_some() {
        metrics.register_llm(registry);
    }
    let l = config.llm.as_ref().filter(|l| l.investigate_on_open)?;
    metrics.register_investigations(registry);
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(on_open::run(
        assistant.clone(),
        Duration::from_millis(l.settle_ms as u64),
        rx,
        slack,
        metrics.clone(),
    ));
    Some(tx)
}

/// Hands each opened or changed incident to remediation, in order.
fn spawn_remediation_feed(
    remediation: Arc<remediate::Remediation>,
) -> tokio::sync::mpsc::Sender<Incident> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Incident>(1024);
    tokio::spawn(async move {
        while let Some(incident) = rx.recv().await {
            remediation.on_incident(incident).await;
        }
    });
    tx
}

fn spawn_recorder(
    store: SqliteStore,
) -> (
    tokio::sync::mpsc::Sender<Record>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    (tx, tokio::spawn(record(store, rx)))
}

/// The pipeline thread: one [`Pipeline`] fed from the queue, ticking every `serve.interval`.
fn spawn_worker(
    config: &Config,
    rx: Receiver<Work>,
    past: Vec<Incident>,
    out: Outbox,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, ServerError> {
    let watch = SeriesWatch::new(config.watch.clone(), config.pipeline.overrides.clone())
        .with_max_series(config.max_series.unwrap_or(DEFAULT_MAX_SERIES));
    let mut pipeline = Pipeline::from_config(config.pipeline.clone())?;
    pipeline.remember(past);
    let interval = Duration::from_millis(config.serve.interval_ms as u64);
    std::thread::Builder::new()
        .name("nightshift-pipeline".into())
        .spawn(move || work(rx, pipeline, watch, interval, &metrics, &ready, &out))
        .map_err(ServerError::Thread)
}

fn telemetry_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_TELEMETRY_BODY_BYTES)
}

fn hook_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_HOOK_BODY_BYTES)
}

/// Every route of the HTTP API, the receivers and `/mcp`.
fn routes(app: Arc<App>, assistant: Arc<crate::assistant::Assistant>, config: &Config) -> Router {
    Router::new()
        .route("/api/v1/write", post(remote_write).layer(telemetry_limit()))
        .route(
            "/api/v1/alerts/alertmanager",
            post(alertmanager_webhook).layer(telemetry_limit()),
        )
        .route("/v1/metrics", post(otlp_metrics).layer(telemetry_limit()))
        .route("/v1/traces", post(otlp_traces).layer(telemetry_limit()))
        .route("/v1/logs", post(otlp_logs).layer(telemetry_limit()))
        .route(
            "/loki/api/v1/push",
            post(loki_push).layer(telemetry_limit()),
        )
        .route("/api/v1/changes", post(generic_changes).get(api::changes))
        .route("/hooks/github", post(github_hook).layer(hook_limit()))
        .route("/hooks/gitlab", post(gitlab_hook).layer(hook_limit()))
        .route("/hooks/argocd", post(argocd_hook).layer(hook_limit()))
        .route("/hooks/slack/commands", post(slack_hooks::slack_command))
        .route(
            "/hooks/slack/interactions",
            post(slack_hooks::slack_interaction),
        )
        .route("/api/v1/alerts", post(postable_alerts).get(api::alerts))
        .route("/api/v1/incidents", get(api::incidents))
        .route("/api/v1/incidents/{id}", get(api::incident))
        .route("/api/v1/incidents/{id}/acknowledge", post(api::acknowledge))
        .route("/api/v1/incidents/{id}/explanation", get(api::explanation))
        .route("/api/v1/incidents/{id}/dry-run", post(actions_api::dry_run))
        .route("/api/v1/ask", post(api::ask))
        .route("/api/v1/actions", get(actions_api::actions))
        .route("/api/v1/actions/{id}", get(actions_api::action))
        .route("/api/v1/actions/{id}/approve", post(actions_api::approve))
        .route("/api/v1/actions/{id}/reject", post(actions_api::reject))
        .route(
            "/api/v1/kill-switch",
            get(actions_api::kill_switch_state).post(actions_api::kill_switch),
        )
        .route("/api/v1/audit", get(actions_api::audit))
        .route("/api/v1/anomalies", get(api::anomalies))
        .route("/api/v1/topology", get(api::topology))
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/openapi.json", get(openapi))
        .route("/readyz", get(readyz))
        .nest_service(
            "/mcp",
            crate::mcp::http_service(assistant, config.serve.mcp_hosts.clone()),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            edge::limit_in_flight,
        ))
        .layer(axum::middleware::from_fn_with_state(app.clone(), timed))
        .with_state(app)
}

/// Stores the watchers' changes, then queues their news for the pipeline thread, waiting while
/// it is behind.
fn deliver_news(
    queue: SyncSender<Work>,
    store: SqliteStore,
    metrics: Arc<Metrics>,
    placed: Arc<remediate::Placed>,
) -> Deliver<nightshift_sources::kubernetes::ClusterNews> {
    Arc::new(move |news| {
        let (queue, store, metrics) = (queue.clone(), store.clone(), metrics.clone());
        placed.observe(&news.workloads);
        Box::pin(async move {
            for (kind, n) in [
                ("placements", news.placements.len()),
                ("workloads", news.workloads.len()),
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
fn http_client(timeout_ms: i64, what: &str) -> Result<reqwest::Client, ServerError> {
    reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout_ms as u64))
        .build()
        .map_err(|source| ServerError::HttpClient {
            what: what.to_string(),
            source,
        })
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

/// The API's OpenAPI 3 description (`serve/openapi.json`).
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
        let source = include_str!("mod.rs");
        let source = &source[..source.find("#[cfg(test)]").expect("the tests")];
        // `.route("PATH"` and `.nest_service("PATH"`, on one line or broken after the `(`.
        let mut mounted: Vec<String> = [".route(", ".nest_service("]
            .iter()
            .flat_map(|call| source.split(call).skip(1))
            .filter_map(|rest| rest.trim_start().strip_prefix('"'))
            .filter_map(|l| l.split('"').next())
            .map(str::to_string)
            .collect();
        documented.sort();
        mounted.sort();
        assert_eq!(documented, mounted);
    }

    /// The scope each operation documents (`x-nightshift-scope`) is the one the server checks.
    #[test]
    fn the_openapi_document_names_the_scope_each_route_checks() {
        use crate::auth::{Access, required_scope};
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("valid JSON");
        let mut checked = 0;
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                let m: axum::http::Method = method.to_uppercase().parse().expect("a method");
                let concrete = path.replace("{id}", "x1");
                let want = match required_scope(&m, &concrete, false) {
                    Access::Open => "open".to_string(),
                    Access::OwnSecret => "own-secret".to_string(),
                    Access::Scope(s) => s.as_str().to_string(),
                };
                assert_eq!(op["x-nightshift-scope"], want.as_str(), "{method} {path}");
                checked += 1;
            }
        }
        assert!(checked > 30, "{checked} operations");
    }
}
