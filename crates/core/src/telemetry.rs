//! Non-metric telemetry: logs, call edges seen in traces, Kubernetes events and changes.

use crate::{Entity, Millis, Resource};
use serde::{Deserialize, Serialize};

/// Log severity, after the OTel log data model's severity ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Trace => "trace",
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
        }
    }
}

/// One log line with the resource that wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub ts: Millis,
    pub resource: Resource,
    pub severity: Severity,
    /// The message: a JSON or logfmt line's message field, else the whole line.
    pub body: String,
    /// The record's own labels: a structured line's other fields, Loki's structured metadata,
    /// OTLP log attributes.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Calls from one service to another over one interval, as a trace pipeline's service graph
/// reports them (Tempo's `traces_service_graph_request_total{client,server}` and friends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEdge {
    /// End of the interval the counts cover.
    pub ts: Millis,
    pub client: String,
    pub server: String,
    /// `database`, `messaging_system` or `None` for a plain RPC/HTTP call.
    pub connection_type: Option<String>,
    pub requests: u64,
    /// Calls whose client span ended with an error status.
    pub errors: u64,
    /// Sum of client-side durations in seconds.
    pub duration_seconds_sum: f64,
}

/// Kubernetes event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    Normal,
    Warning,
}

/// A Kubernetes event (`OOMKilled`, `BackOff`, `Unhealthy`, `NodeNotReady`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub ts: Millis,
    pub event_type: EventType,
    pub reason: String,
    /// The involved object, `Kind/name`, e.g. `Pod/checkout-5d8f-2`.
    pub object: String,
    pub resource: Resource,
    pub message: String,
}

/// What kind of change happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Deploy,
    Config,
    FeatureFlag,
    Scale,
    Rollback,
    Infrastructure,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Deploy => "deploy",
            ChangeKind::Config => "config",
            ChangeKind::FeatureFlag => "feature_flag",
            ChangeKind::Scale => "scale",
            ChangeKind::Rollback => "rollback",
            ChangeKind::Infrastructure => "infrastructure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "deploy" | "deployment" | "release" => ChangeKind::Deploy,
            "config" | "configuration" => ChangeKind::Config,
            "feature_flag" | "flag" => ChangeKind::FeatureFlag,
            "scale" => ChangeKind::Scale,
            "rollback" => ChangeKind::Rollback,
            "infrastructure" | "infra" => ChangeKind::Infrastructure,
            _ => return None,
        })
    }
}

/// A change to the system: a deploy, a config change, a flag flip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub id: String,
    pub ts: Millis,
    pub kind: ChangeKind,
    /// The service (or node) changed.
    pub target: String,
    pub version: Option<String>,
    pub description: String,
}

impl Change {
    /// What changed, as a person reads it: `deploy of checkout (v2.4.1)`.
    pub fn summary(&self) -> String {
        match &self.version {
            Some(v) => format!("{} of {} ({v})", self.kind.as_str(), self.target),
            None => format!("{} of {}", self.kind.as_str(), self.target),
        }
    }
}

/// A new, bursting, shifted or vanished log template of one entity, as the log pipeline reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPattern {
    pub ts: Millis,
    pub entity: Entity,
    pub template: String,
    pub severity: Severity,
    /// Lines matching the template in the reporting interval.
    pub count: u64,
    /// True when the template was never seen from this entity before.
    pub new: bool,
    /// True when a template this entity logged steadily has stopped (`count` is then 0).
    #[serde(default)]
    pub vanished: bool,
    /// Set when the report is a rate shift: the lines per interval the entity's baseline
    /// expected (`count` is what came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usual_rate: Option<f64>,
    /// Up to two example lines.
    pub examples: Vec<String>,
    /// When the entity first and last logged the template.
    #[serde(default)]
    pub first_seen: Millis,
    #[serde(default)]
    pub last_seen: Millis,
}
