//! What the pipeline concludes: anomalies, incidents, root-cause hypotheses and their evidence.

use crate::{Change, Entity, Millis, SeriesKey};
use serde::{Deserialize, Serialize};

/// What a signal measures, in the field's golden-signal terms. Diagnosis weighs classes
/// differently: a traffic drop is usually a consequence upstream, an error burst is a symptom
/// here, saturation points at the resource itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalClass {
    Latency,
    Errors,
    Traffic,
    Saturation,
    Availability,
    Logs,
    Other,
}

impl SignalClass {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalClass::Latency => "latency",
            SignalClass::Errors => "errors",
            SignalClass::Traffic => "traffic",
            SignalClass::Saturation => "saturation",
            SignalClass::Availability => "availability",
            SignalClass::Logs => "logs",
            SignalClass::Other => "other",
        }
    }
}

/// Which way a value left its normal range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

/// A point where a series left its learned normal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub series: SeriesKey,
    pub entity: Entity,
    pub class: SignalClass,
    pub ts: Millis,
    /// Calibrated anomaly score in [0, 1].
    pub score: f64,
    pub value: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    pub direction: Direction,
    /// Which detector fired.
    pub detector: String,
    /// A PromQL expression that shows the signal.
    pub promql: String,
}

/// What kind of fact an [`Evidence`] item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    Anomaly,
    Alert,
    LogPattern,
    KubeEvent,
    Change,
    Trace,
    Topology,
    /// A status transition of the incident itself (opened, acknowledged, resolved, reopened).
    Lifecycle,
}

impl EvidenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Anomaly => "anomaly",
            EvidenceKind::Alert => "alert",
            EvidenceKind::LogPattern => "log",
            EvidenceKind::KubeEvent => "k8s-event",
            EvidenceKind::Change => "change",
            EvidenceKind::Trace => "trace",
            EvidenceKind::Topology => "topology",
            EvidenceKind::Lifecycle => "lifecycle",
        }
    }
}

/// One fact that supports a hypothesis, with what the user needs to check it themselves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Unique within the incident, e.g. `ev-3`; the LLM cites these.
    pub id: String,
    pub kind: EvidenceKind,
    pub ts: Millis,
    pub entity: Entity,
    /// One line a person reads.
    pub summary: String,
    pub series: Option<String>,
    pub observed: Option<f64>,
    pub expected: Option<f64>,
    /// A query that shows the fact (PromQL, or LogQL for logs).
    pub query: Option<String>,
    /// How much this fact weighed in the ranking.
    pub weight: f64,
}

/// The suspected causes a hypothesis names (`Hypothesis::cause`): what runbooks trigger on.
pub mod cause {
    pub const NODE_FAILURE: &str = "node failure";
    pub const NODE_DISK_FULL: &str = "node disk full";
    pub const NODE_SATURATION: &str = "node resource saturation";
    pub const BAD_DEPLOY: &str = "bad deploy";
    pub const MEMORY_EXHAUSTION: &str = "memory exhaustion";
    pub const DISK_FULL: &str = "disk full";
    pub const DATABASE_SATURATION: &str = "database saturation";
    pub const CRASH_LOOP: &str = "crash loop";
    pub const CPU_SATURATION: &str = "CPU saturation";
    pub const INSTANCES_DOWN: &str = "instances down";
    pub const FAILING_OUTBOUND: &str = "failing outbound calls (DNS or egress)";
    pub const FAILING_INBOUND: &str = "failing inbound connections (TLS or network)";
    pub const INBOUND_LATENCY: &str = "network latency on inbound calls";
    pub const DEPENDENCY_TROUBLE: &str = "dependency trouble";
    pub const REGRESSION_AFTER_CHANGE: &str = "regression after change";
    pub const ERROR_BURST: &str = "error burst";
    pub const LATENCY_REGRESSION: &str = "latency regression";
    pub const ANOMALOUS: &str = "anomalous behaviour";
}

/// Every cause a hypothesis may name.
pub const CAUSES: [&str; 18] = [
    cause::NODE_FAILURE,
    cause::NODE_DISK_FULL,
    cause::NODE_SATURATION,
    cause::BAD_DEPLOY,
    cause::MEMORY_EXHAUSTION,
    cause::DISK_FULL,
    cause::DATABASE_SATURATION,
    cause::CRASH_LOOP,
    cause::CPU_SATURATION,
    cause::INSTANCES_DOWN,
    cause::FAILING_OUTBOUND,
    cause::FAILING_INBOUND,
    cause::INBOUND_LATENCY,
    cause::DEPENDENCY_TROUBLE,
    cause::REGRESSION_AFTER_CHANGE,
    cause::ERROR_BURST,
    cause::LATENCY_REGRESSION,
    cause::ANOMALOUS,
];

/// A ranked root-cause candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub rank: u32,
    pub entity: Entity,
    /// The suspected kind of cause, e.g. `saturation`, `bad deploy`, `crash loop`.
    pub cause: String,
    /// Share of the ranking mass, in [0, 1].
    pub score: f64,
    pub summary: String,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    #[default]
    Open,
    /// Someone is on it; it still resolves by itself when its signals recover.
    Acknowledged,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
        }
    }

    /// Open or acknowledged: still going on.
    pub fn is_active(self) -> bool {
        self != IncidentStatus::Resolved
    }
}

/// Who else is hurt: the entities showing symptoms and the user-facing entry points among them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlastRadius {
    pub entities: Vec<Entity>,
    /// Services with no callers (user-facing) that show symptoms.
    pub entry_points: Vec<String>,
    /// Calls that went wrong, as `client → server`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Services that depend on the leading suspect, directly or not, and show no symptom yet.
    #[serde(default)]
    pub at_risk: Vec<String>,
}

/// An alert that is a symptom of the diagnosed cause: kept and shown with the incident, but
/// not a lead of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InhibitedAlert {
    pub alertname: String,
    pub entity: Entity,
    /// The leading suspect it is a symptom of.
    pub cause: Entity,
}

/// An earlier incident like this one, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimilarIncident {
    pub id: String,
    pub title: String,
    pub opened_at: Millis,
    pub resolved_at: Option<Millis>,
    /// In [0, 1]: shared root cause, fault signature and log templates.
    pub similarity: f64,
    /// What resolved it, e.g. "rollback of checkout (v2.4.0) 12m after it opened".
    pub resolution: String,
}

/// How urgent a burn is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BurnSeverity {
    /// 6× over 6 h and 30 min.
    Ticket,
    /// 14.4× over 1 h and 5 min.
    Page,
}

impl BurnSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            BurnSeverity::Ticket => "ticket",
            BurnSeverity::Page => "page",
        }
    }
}

/// One service's burn rates at one moment, for an incident to show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloBurn {
    pub service: String,
    /// The availability objective, e.g. 0.999.
    pub objective: f64,
    pub severity: BurnSeverity,
    pub burn_5m: f64,
    pub burn_30m: f64,
    pub burn_1h: f64,
    pub burn_6h: f64,
    pub ts: Millis,
}

impl SloBurn {
    /// One line a person reads.
    pub fn summary(&self) -> String {
        let (long, short, lw, sw) = match self.severity {
            BurnSeverity::Page => (self.burn_1h, self.burn_5m, "1h", "5m"),
            BurnSeverity::Ticket => (self.burn_6h, self.burn_30m, "6h", "30m"),
        };
        let objective = format!("{:.4}", self.objective * 100.0);
        let objective = objective.trim_end_matches('0').trim_end_matches('.');
        format!(
            "{} burns its {objective}% error budget {long:.1}× over {lw} and {short:.1}× over {sw}",
            self.service
        )
    }
}

/// How urgently an incident needs people, from its users' point of view.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Priority {
    /// A user-facing service burns its error budget at the page rate.
    P1,
    /// The page rate on an internal service, or the ticket rate on a user-facing one.
    P2,
    /// The ticket rate on an internal service, or user-facing services showing symptoms.
    P3,
    /// No error budget burning and no user-facing symptom.
    #[default]
    P4,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
            Priority::P4 => "P4",
        }
    }
}

/// One line of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub ts: Millis,
    pub kind: EvidenceKind,
    pub entity: Entity,
    pub text: String,
}

/// A group of signals that share one cause.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub title: String,
    pub status: IncidentStatus,
    pub opened_at: Millis,
    pub updated_at: Millis,
    pub resolved_at: Option<Millis>,
    #[serde(default)]
    pub acknowledged_at: Option<Millis>,
    #[serde(default)]
    pub acknowledged_by: Option<String>,
    /// Times it came back after resolving, within the correlator's reopen window.
    #[serde(default)]
    pub reopened: u32,
    /// Resolving and relapsing repeatedly; it then waits longer before resolving again.
    #[serde(default)]
    pub flapping: bool,
    #[serde(default)]
    pub priority: Priority,
    /// Services of the incident burning their error budget, at the worst seen.
    #[serde(default)]
    pub slo: Vec<SloBurn>,
    /// Alerts that are symptoms of the leading suspect.
    #[serde(default)]
    pub inhibited: Vec<InhibitedAlert>,
    /// Earlier incidents like this one, most similar first.
    #[serde(default)]
    pub similar: Vec<SimilarIncident>,
    /// Once resolved, what resolved it (see [`SimilarIncident::resolution`]).
    #[serde(default)]
    pub resolution: Option<String>,
    pub blast_radius: BlastRadius,
    /// Distinct alert fingerprints grouped here.
    pub alerts: Vec<String>,
    pub anomaly_count: u64,
    pub changes: Vec<Change>,
    pub hypotheses: Vec<Hypothesis>,
    pub timeline: Vec<TimelineEntry>,
}
