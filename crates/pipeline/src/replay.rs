//! Replays a simulated scenario through the pipeline, faster than real time.

use crate::pipeline::{Pipeline, PipelineStats};
use nightshift_core::{Alert, Anomaly, Incident, Millis, Topology};
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

/// Runs the whole scenario through `pipeline` (a fresh one, built from the configuration). The
/// pipeline sees only telemetry, never the scenario's faults. `on_tick` is called
/// with each step's timestamp and whether it is warm-up history, before the step is fed: the
/// caller paces the replay against the wall clock there, if it wants to, and shows progress.
pub fn replay(
    scenario: &Scenario,
    mut pipeline: Pipeline,
    mut on_tick: impl FnMut(Millis, bool),
) -> Replay {
    let mut sim = Simulation::new(scenario);
    let series = sim.series().to_vec();
    let mut alerts = Vec::new();
    let mut anomalies = Vec::new();
    let mut changes = Vec::new();
    let mut end = scenario.start_ms();
    for tick in sim.by_ref() {
        on_tick(tick.ts, tick.warmup);
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
