//! Replays a simulated scenario through the pipeline, faster than real time.

use crate::pipeline::{Pipeline, PipelineStats};
use indicatif::ProgressBar;
use nightshift_core::{Alert, Anomaly, Incident, Millis, Topology};
use nightshift_detect::Overrides;
use nightshift_sim::{Scenario, Simulation};

/// Everything a replay produced, for display, storage and scoring.
pub struct Replay {
    pub incidents: Vec<Incident>,
    /// Alert notifications as the user's alerting sent them (firing and resolved).
    pub alerts: Vec<Alert>,
    pub anomalies: Vec<Anomaly>,
    pub changes: Vec<nightshift_core::Change>,
    pub topology: Topology,
    pub stats: PipelineStats,
    pub start_ms: Millis,
    pub end_ms: Millis,
}

impl Replay {
    /// Writes what the run saw and found into `store`: incidents, alerts, changes, anomalies.
    pub async fn record(
        &self,
        store: &nightshift_store::SqliteStore,
    ) -> Result<(), nightshift_store::StoreError> {
        use nightshift_store::Store;
        for i in &self.incidents {
            store.upsert_incident(i).await?;
        }
        for a in &self.alerts {
            store.record_alert(a).await?;
        }
        for c in &self.changes {
            store.record_change(c).await?;
        }
        store.record_anomalies(&self.anomalies).await
    }
}

/// Runs the whole scenario. The pipeline sees only telemetry, never the scenario's faults.
/// With `speed`, simulated time runs that many times faster than the wall clock (warm-up
/// history is replayed at full speed, as a back-fill would be); without it, as fast as it can.
/// `overrides` are the per-series detection rules of the configuration.
pub fn replay(
    scenario: &Scenario,
    progress: &ProgressBar,
    speed: Option<f64>,
    overrides: &Overrides,
) -> Replay {
    let mut sim = Simulation::new(scenario);
    let series = sim.series().to_vec();
    let mut pipeline = Pipeline::default().with_overrides(overrides.clone());
    let mut alerts = Vec::new();
    let mut anomalies = Vec::new();
    let mut changes = Vec::new();
    let mut end = scenario.start_ms();
    let pace = speed
        .filter(|s| *s > 0.0)
        .map(|s| std::time::Duration::from_secs_f64(scenario.step_ms() as f64 / 1000.0 / s));
    let mut next_due = std::time::Instant::now();
    for tick in sim.by_ref() {
        if let (Some(pace), false) = (pace, tick.warmup) {
            next_due += pace;
            std::thread::sleep(next_due.saturating_duration_since(std::time::Instant::now()));
        } else {
            next_due = std::time::Instant::now();
        }
        for (idx, v) in &tick.samples {
            if let Some(key) = series.get(*idx as usize) {
                pipeline.ingest_sample(key, tick.ts, *v);
            }
        }
        for s in &tick.spans {
            pipeline.ingest_span(s);
        }
        for l in &tick.logs {
            pipeline.ingest_log(l);
        }
        for c in &tick.changes {
            pipeline.ingest_change(c);
            changes.push(c.clone());
        }
        for e in &tick.events {
            pipeline.ingest_event(e);
        }
        for a in &tick.alerts {
            pipeline.ingest_alert(a);
            alerts.push(a.clone());
        }
        let eval = pipeline.evaluate(tick.ts, tick.warmup);
        anomalies.extend(eval.anomalies);
        end = tick.ts;
        progress.inc(1);
    }
    let correlator = pipeline.correlator();
    Replay {
        incidents: correlator.incidents().cloned().collect(),
        topology: correlator.topology().clone(),
        alerts,
        anomalies,
        changes,
        stats: pipeline.stats(),
        start_ms: scenario.start_ms(),
        end_ms: end,
    }
}
