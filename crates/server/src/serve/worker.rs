//! The pipeline thread: applies queued work in arrival order, scores watched series, evaluates
//! the derived signals on its interval, and hands findings to the recorder and the notifier.

use super::metrics::{Metrics, score_labels};
use super::{Record, Work};
use crate::alerts_out::{Notice, anomaly_alert, anomaly_resolved, incident_notice};
use crate::now_ms;
use axum::http::StatusCode;
use nightshift_core::Topology;
use nightshift_detect::{EventPhase, SeriesWatch};
use nightshift_pipeline::Pipeline;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nightshift_correlate::{IncidentUpdate, LifecycleError};

/// Where the worker's findings go: the recorder (the store), the topology the read API serves,
/// and, when an Alertmanager is configured, the notifier.
pub(super) struct Outbox {
    pub(super) notices: Option<tokio::sync::mpsc::Sender<Notice>>,
    pub(super) link_base: String,
    /// Incidents for the Slack notifier, when it runs.
    pub(super) slack: Option<tokio::sync::mpsc::Sender<nightshift_core::Incident>>,
    /// Ids of incidents opened or reopened, for the investigation on opening, when it runs.
    pub(super) opened: Option<tokio::sync::mpsc::Sender<String>>,
    /// Incidents for remediation (runbooks matched, actions offered).
    pub(super) remediation: tokio::sync::mpsc::Sender<nightshift_core::Incident>,
    pub(super) records: tokio::sync::mpsc::Sender<Record>,
    pub(super) topology: Arc<Mutex<Topology>>,
}

impl Outbox {
    /// Hands a finding to the recorder, waiting while it is behind.
    fn record(&self, r: Record) {
        if self.records.blocking_send(r).is_err() {
            tracing::error!("the recorder stopped; a finding was not stored");
        }
    }

    /// Hands an incident to the Slack notifier, if it runs; when it is 1,024 behind, the update
    /// is dropped with a warning (the next one carries the same state).
    fn to_slack(&self, incident: &nightshift_core::Incident) {
        if let Some(slack) = &self.slack
            && slack.try_send(incident.clone()).is_err()
        {
            tracing::warn!("the Slack notifier is behind; an incident update was dropped");
        }
    }

    /// Hands a notice to the notifier; if it is 4,096 notices behind, the notice is dropped with
    /// a warning rather than stalling detection.
    fn send(&self, notice: Notice) {
        if let Some(tx) = &self.notices
            && tx.try_send(notice).is_err()
        {
            tracing::warn!("the Alertmanager notifier is behind; a notice was dropped");
        }
    }
}

/// Feeds one queued batch to the pipeline.
fn apply(pipeline: &mut Pipeline, work: Work, out: &Outbox) {
    match work {
        Work::Samples(batch) => {
            for (key, ts, value) in &batch.samples {
                pipeline.ingest_sample(key, *ts, *value);
            }
        }
        Work::Alerts(alerts) => alerts.iter().for_each(|a| {
            pipeline.ingest_alert(a);
        }),
        Work::Spans(edges) => edges.iter().for_each(|e| pipeline.ingest_span(e)),
        Work::Cluster(news) => {
            for (service, node) in &news.placements {
                pipeline.observe_placement(service, node);
            }
            news.events.iter().for_each(|e| pipeline.ingest_event(e));
            news.changes.iter().for_each(|c| pipeline.ingest_change(c));
        }
        Work::Changes(list) => list.iter().for_each(|c| pipeline.ingest_change(c)),
        Work::Logs(logs) => logs.iter().for_each(|l| pipeline.ingest_log(l)),
        Work::Acknowledge { id, by, reply } => match pipeline.acknowledge(&id, &by, now_ms()) {
            // Answered by the recorder once written, behind the findings queued before it.
            Ok(incident) => {
                out.to_slack(incident);
                out.record(Record::Requested {
                    incident: Box::new(incident.clone()),
                    reply,
                })
            }
            Err(e) => {
                let status = match e {
                    LifecycleError::NotFound(_) => StatusCode::NOT_FOUND,
                    LifecycleError::Resolved(_) => StatusCode::CONFLICT,
                };
                let _ = reply.send(Err((status, e.to_string())));
            }
        },
    }
}

/// The worker: owns the pipeline and the watched series, applies queued batches in arrival
/// order, and evaluates the derived signals every `interval` of wall time.
pub(super) fn work(
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
            Ok(work) => {
                metrics.queue_depth.dec();
                if let Work::Samples(batch) = &work {
                    for (key, ts, value) in &batch.samples {
                        let Some(score) = watch.observe(key, *ts, *value) else {
                            continue;
                        };
                        // The gauge is looked up before the key is cloned for a new one.
                        if let Some(g) = gauges.get(key) {
                            g.set(score.score);
                        } else {
                            let g = metrics
                                .anomaly_score
                                .get_or_create(&score_labels(key))
                                .clone();
                            g.set(score.score);
                            gauges.insert(key.clone(), g);
                        }
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
                                out.send(anomaly_resolved(key, *ts));
                            }
                            _ => {}
                        }
                    }
                    metrics.watched_series.set(watch.len() as i64);
                }
                apply(&mut pipeline, work, out);
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
            for (id, update) in &eval.updates {
                if matches!(update, IncidentUpdate::Opened | IncidentUpdate::Reopened)
                    && let Some(opened) = &out.opened
                    && opened.try_send(id.clone()).is_err()
                {
                    tracing::warn!(incident = %id, "the investigations are behind; this incident is not investigated on opening");
                }
                if let Some(i) = pipeline.correlator().incident(id) {
                    out.record(Record::Incident(Box::new(i.clone())));
                    out.send(incident_notice(i, format!("{}/{id}", out.link_base)));
                    out.to_slack(i);
                    if out.remediation.try_send(i.clone()).is_err() {
                        tracing::warn!(incident = %id, "remediation is behind; this update of the incident is not matched against the runbooks");
                    }
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
