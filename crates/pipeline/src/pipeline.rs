//! The detection-to-diagnosis pipeline: derive signals from raw telemetry, detect anomalies,
//! track log templates, and correlate everything into incidents. One instance per cluster.

use nightshift_core::{
    Alert, Anomaly, Change, EntityKind, Event, LogRecord, Millis, SeriesKey, SpanEdge,
};
use nightshift_correlate::{
    AlertOutcome, Correlator, CorrelatorConfig, IncidentUpdate, LifecycleError,
};
use nightshift_detect::{DetectorBank, Overrides};
use nightshift_diagnose::{RankConfig, Ranking};
use nightshift_logs::{LogTemplateTracker, MinerConfig};
use nightshift_signals::SignalDeriver;
use std::collections::BTreeMap;

/// The derived series an error budget is measured on.
const REQUESTS: &str = "service:http_requests:rate1m";
const ERROR_RATIO: &str = "service:http_errors:ratio_rate1m";

/// Counters of what the pipeline has processed.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PipelineStats {
    pub samples: u64,
    pub signals: u64,
    pub anomalies: u64,
    pub logs: u64,
    pub spans: u64,
    pub events: u64,
    pub changes: u64,
    pub alerts_fired: u64,
    pub alert_duplicates: u64,
    /// Series with a detection engine, and the bytes of state they hold.
    pub detected_series: u64,
    pub detector_state_bytes: u64,
}

/// What one evaluation step produced.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub anomalies: Vec<Anomaly>,
    pub updates: Vec<(String, IncidentUpdate)>,
}

/// Every setting of the pipeline's stages, each the stage's own config struct (from the
/// `correlate`, `diagnose`, `logs.miner` and `detect.overrides` sections of the file).
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    pub correlator: CorrelatorConfig,
    pub rank: RankConfig,
    pub miner: MinerConfig,
    pub overrides: Overrides,
}

impl PipelineConfig {
    /// Refuses a setting a stage cannot work with, naming its section and field.
    pub fn validate(&self) -> Result<(), PipelineError> {
        self.correlator.validate()?;
        self.rank.validate()?;
        self.miner.validate()?;
        Ok(())
    }
}

/// A pipeline setting out of its range: the section and field, and the range it must lie in.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("correlate.{0}")]
    Correlate(#[from] nightshift_correlate::ConfigError),
    #[error("diagnose.{0}")]
    Rank(#[from] nightshift_diagnose::DiagnoseError),
    #[error("logs.miner.{0}")]
    Miner(#[from] nightshift_logs::LogsError),
}

pub struct Pipeline {
    deriver: SignalDeriver,
    detectors: DetectorBank,
    templates: LogTemplateTracker,
    correlator: Correlator,
    stats: PipelineStats,
}

impl Default for Pipeline {
    fn default() -> Self {
        Self::assemble(PipelineConfig::default())
    }
}

impl Pipeline {
    /// A pipeline whose every stage runs with its settings in `cfg`, once they are checked.
    pub fn from_config(cfg: PipelineConfig) -> Result<Self, PipelineError> {
        cfg.validate()?;
        Ok(Self::assemble(cfg))
    }

    fn assemble(cfg: PipelineConfig) -> Self {
        Self {
            deriver: SignalDeriver::new(),
            detectors: DetectorBank::new().with_overrides(cfg.overrides),
            templates: LogTemplateTracker::with_config(cfg.miner),
            correlator: Correlator::new(cfg.correlator, Box::new(Ranking(cfg.rank))),
            stats: PipelineStats::default(),
        }
    }

    /// The log template tracker, e.g. to read its miner's settings.
    pub fn templates(&self) -> &LogTemplateTracker {
        &self.templates
    }

    pub fn ingest_sample(&mut self, key: &SeriesKey, ts: Millis, value: f64) {
        self.stats.samples += 1;
        self.deriver.ingest_sample(key, ts, value);
    }

    pub fn ingest_log(&mut self, log: &LogRecord) {
        self.stats.logs += 1;
        self.deriver.ingest_log(log);
        self.templates.ingest(log);
    }

    pub fn ingest_span(&mut self, edge: &SpanEdge) {
        self.stats.spans += 1;
        let topo = self.correlator.topology_mut();
        topo.add_call(&edge.client, &edge.server);
        if edge.connection_type.as_deref() == Some("database")
            && !topo.databases.contains(&edge.server)
        {
            topo.databases.insert(edge.server.clone());
        }
        self.deriver.ingest_span(edge);
    }

    /// A service's pod runs on `node` (from the Kubernetes API).
    pub fn observe_placement(&mut self, service: &str, node: &str) {
        self.correlator.topology_mut().add_placement(service, node);
    }

    pub fn ingest_event(&mut self, event: &Event) {
        self.stats.events += 1;
        self.correlator.observe_event(event);
    }

    pub fn ingest_change(&mut self, change: &Change) {
        self.stats.changes += 1;
        self.correlator.observe_change(change);
    }

    pub fn ingest_alert(&mut self, alert: &Alert) -> AlertOutcome {
        let outcome = self.correlator.observe_alert(alert);
        self.stats.alerts_fired = self.correlator.alerts_fired();
        self.stats.alert_duplicates = self.correlator.alert_duplicates();
        outcome
    }

    /// Derives signals for evaluation time `ts`, runs the detectors and advances the correlator.
    /// With `learning`, detectors and templates learn but nothing is reported (history replay).
    pub fn evaluate(&mut self, ts: Millis, learning: bool) -> Evaluation {
        let topo = self.correlator.topology_mut();
        for (service, node) in self.deriver.placements() {
            if !topo
                .placement
                .get(service)
                .is_some_and(|n| n.contains(node))
            {
                topo.add_placement(service, node);
            }
        }
        let mut eval = Evaluation::default();
        // Each service's request rate and error ratio, for its error budget.
        let mut traffic: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();
        for signal in self.deriver.flush(ts) {
            self.stats.signals += 1;
            let metric = signal.key.metric.as_str();
            if signal.entity.kind == EntityKind::Service
                && (metric == REQUESTS || metric == ERROR_RATIO)
            {
                let t = traffic.entry(signal.entity.name.clone()).or_default();
                if metric == REQUESTS {
                    t.0 = Some(signal.value);
                } else {
                    t.1 = Some(signal.value);
                }
            }
            if let Some(a) = self.detectors.observe(&signal)
                && !learning
            {
                eval.anomalies.push(a);
            }
        }
        for (service, (requests, errors)) in traffic {
            if let (Some(r), Some(e)) = (requests, errors) {
                self.correlator.observe_traffic(&service, ts, r, e);
            }
        }
        for pattern in self.templates.flush(ts, learning) {
            self.correlator.observe_log_pattern(&pattern);
        }
        self.stats.anomalies += eval.anomalies.len() as u64;
        for a in &eval.anomalies {
            self.correlator.observe_anomaly(a);
        }
        eval.updates = self.correlator.advance(ts);
        eval
    }

    /// Incidents an earlier run recorded: history for new ones, and their ids are not reused.
    pub fn remember(&mut self, incidents: Vec<nightshift_core::Incident>) {
        self.correlator.remember(incidents);
    }

    /// Marks an open incident as acknowledged by `by`.
    pub fn acknowledge(
        &mut self,
        id: &str,
        by: &str,
        now: Millis,
    ) -> Result<&nightshift_core::Incident, LifecycleError> {
        self.correlator.acknowledge(id, by, now)
    }

    pub fn correlator(&self) -> &Correlator {
        &self.correlator
    }

    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            detected_series: self.detectors.len() as u64,
            detector_state_bytes: self.detectors.state_bytes() as u64,
            ..self.stats
        }
    }
}
