//! PromQL pull: configured queries run against a Prometheus-compatible API on their interval,
//! their results fed to the same pipeline thread as remote-write. The first run of each query
//! fetches `lookback` of history, so detectors start warm; later runs fetch only what is new.

use crate::Deliver;
use nightshift_core::Millis;
use nightshift_ingest::{WriteBatch, decode_query_response};
use prometheus_client::metrics::counter::Counter;
use std::time::Duration;

/// A Prometheus-compatible API to pull series from with PromQL (`prometheus:`).
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// Base URL, e.g. `http://127.0.0.1:9090` (`/api/v1/query_range` is added).
    pub url: String,
    pub timeout_ms: i64,
    /// Further tries after a failed query, one and then two seconds apart, and so on.
    pub retries: u32,
    pub queries: Vec<PullQuery>,
}

/// One query run every `interval_ms`.
#[derive(Debug, Clone)]
pub struct PullQuery {
    pub query: String,
    /// The name of results without `__name__` (expressions).
    pub name: String,
    pub interval_ms: i64,
    pub step_ms: i64,
    /// History fetched on the first run, so baselines start warm.
    pub lookback_ms: i64,
    /// An instant query (`/api/v1/query`) instead of a range query.
    pub instant: bool,
}

/// Counters of the pull, exposed on `/metrics`.
#[derive(Clone, Default)]
pub struct PullMetrics {
    pub samples: Counter,
    pub failures: Counter,
}

fn seconds(ms: Millis) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// Runs every query of `cfg` until the pipeline is gone.
pub async fn run(
    client: reqwest::Client,
    cfg: PrometheusConfig,
    metrics: PullMetrics,
    deliver: Deliver<WriteBatch>,
) {
    // A JoinSet aborts its tasks when dropped, so aborting this future stops every query (and
    // releases their hold on the pipeline's queue).
    let mut tasks = tokio::task::JoinSet::new();
    for q in cfg.queries.clone() {
        let (client, metrics, deliver) = (client.clone(), metrics.clone(), deliver.clone());
        let (url, retries) = (cfg.url.clone(), cfg.retries);
        tasks.spawn(pull_one(client, url, retries, q, metrics, deliver));
    }
    while tasks.join_next().await.is_some() {}
}

async fn pull_one(
    client: reqwest::Client,
    url: String,
    retries: u32,
    q: PullQuery,
    metrics: PullMetrics,
    deliver: Deliver<WriteBatch>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(q.interval_ms as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The newest sample time handed on, so a range is never fetched twice.
    let mut seen_until: Option<Millis> = None;
    loop {
        tick.tick().await;
        let end = crate::now_ms();
        let request = if q.instant {
            client
                .get(format!("{url}/api/v1/query"))
                .query(&[("query", q.query.as_str()), ("time", &seconds(end))])
        } else {
            let start = seen_until.map_or(end - q.lookback_ms, |t| t + 1);
            client.get(format!("{url}/api/v1/query_range")).query(&[
                ("query", q.query.as_str()),
                ("start", &seconds(start)),
                ("end", &seconds(end)),
                ("step", &seconds(q.step_ms)),
            ])
        };
        let Some(samples) = fetch(request, retries, &q, &metrics).await else {
            continue;
        };
        let fresh: Vec<_> = samples
            .into_iter()
            .filter(|(_, ts, _)| seen_until.is_none_or(|s| *ts > s))
            .collect();
        if let Some(newest) = fresh.iter().map(|s| s.1).max() {
            seen_until = Some(seen_until.map_or(newest, |s| s.max(newest)));
        }
        if fresh.is_empty() {
            continue;
        }
        metrics.samples.inc_by(fresh.len() as u64);
        let batch = WriteBatch {
            samples: fresh,
            ..WriteBatch::default()
        };
        // Waits while the pipeline is behind, so a slow pipeline slows the pull instead of
        // growing memory.
        if !deliver(batch).await {
            return;
        }
    }
}

/// One query with retries, one second, then two, ... apart; `None` after the last failure.
async fn fetch(
    request: reqwest::RequestBuilder,
    retries: u32,
    q: &PullQuery,
    metrics: &PullMetrics,
) -> Option<Vec<(nightshift_core::SeriesKey, Millis, f64)>> {
    for attempt in 0..=retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
        let req = request.try_clone()?;
        let problem = match req.send().await {
            Ok(r) => {
                let status = r.status();
                match r.bytes().await {
                    // The API answers errors as JSON too (400 bad_data, 422 execution, 503).
                    Ok(body) => match decode_query_response(&body, &q.name) {
                        Ok(samples) => return Some(samples),
                        Err(e) => format!("{status}: {e}"),
                    },
                    Err(e) => format!("{status}: {e}"),
                }
            }
            Err(e) => e.to_string(),
        };
        metrics.failures.inc();
        tracing::warn!(query = %q.query, attempt, %problem, "PromQL pull failed");
    }
    None
}
