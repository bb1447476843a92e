//! Groups alerts, anomalies, Kubernetes events and log patterns into incidents by time and by
//! distance in the topology, links the changes that preceded them and keeps each incident's
//! root-cause ranking current.
//!
//! A signal joins an open incident when it arrives within `attach_window` of the incident's last
//! activity and its entity is at most `max_hops` away from an entity already in the incident.
//! Signals that join nothing wait in a short pending buffer; an incident opens only when a
//! connected group of them is strong enough (an alert, a node going away, two anomalous series,
//! or one series anomalous for two minutes), so one-off blips do not page anyone.

mod attach;
mod lifecycle;
mod open;
mod refresh;

use crate::Ranker;
use crate::dedup::{AlertDeduper, AlertOutcome};
use crate::slo::SloTracker;
use nightshift_core::facts::EntityFacts;
use nightshift_core::{
    Alert, Anomaly, Change, Entity, Event, EventType, Incident, LogPattern, MINUTE, Millis,
    Topology,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Hypotheses scoring at least this share of the top one count as leading suspects when deciding
/// whether a new signal belongs to an incident.
const LEADING_SHARE: f64 = 0.5;

#[derive(Debug, Clone)]
pub struct CorrelatorConfig {
    pub attach_window: Millis,
    pub resolve_after: Millis,
    pub pending_window: Millis,
    pub max_hops: usize,
    /// One anomalous series alone opens an incident once it has lasted this long.
    pub persistent_single: Millis,
    pub max_timeline: usize,
    /// A resolved incident whose signals come back within this long reopens instead of a new
    /// incident opening.
    pub reopen_window: Millis,
    /// An incident reopened `flap_reopens` times within `flap_window` is flapping: it then
    /// stays quiet three times `resolve_after` before resolving again.
    pub flap_window: Millis,
    pub flap_reopens: usize,
    /// The availability objective every service's error budget is measured against.
    pub slo_objective: f64,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        Self {
            attach_window: 5 * MINUTE,
            resolve_after: 10 * MINUTE,
            pending_window: 5 * MINUTE,
            max_hops: 3,
            persistent_single: 2 * MINUTE,
            max_timeline: 200,
            reopen_window: 15 * MINUTE,
            flap_window: 60 * MINUTE,
            flap_reopens: 2,
            slo_objective: 0.999,
        }
    }
}

impl CorrelatorConfig {
    /// Refuses settings the correlator cannot work with, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let minutes = |field: &'static str, v: Millis, lo: Millis, hi: Millis, range: &str| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError {
                    field,
                    problem: format!("{} is outside {range}", nightshift_core::format_duration(v)),
                })
            }
        };
        let day = 24 * 60 * MINUTE;
        minutes(
            "attach_window",
            self.attach_window,
            MINUTE / 4,
            day,
            "15s to 24h",
        )?;
        minutes(
            "resolve_after",
            self.resolve_after,
            MINUTE,
            day,
            "1m to 24h",
        )?;
        minutes(
            "pending_window",
            self.pending_window,
            MINUTE / 4,
            day,
            "15s to 24h",
        )?;
        minutes(
            "persistent_single",
            self.persistent_single,
            0,
            day,
            "0s to 24h",
        )?;
        minutes("reopen_window", self.reopen_window, 0, day, "0s to 24h")?;
        minutes("flap_window", self.flap_window, 0, 7 * day, "0s to 7d")?;
        let count = |field: &'static str, v: usize, lo: usize, hi: usize| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError {
                    field,
                    problem: format!("{v} is outside {lo} to {hi}"),
                })
            }
        };
        count("max_hops", self.max_hops, 1, 10)?;
        count("max_timeline", self.max_timeline, 10, 100_000)?;
        count("flap_reopens", self.flap_reopens, 1, 100)?;
        if !(self.slo_objective > 0.5 && self.slo_objective < 1.0) {
            return Err(ConfigError {
                field: "slo_objective",
                problem: format!(
                    "{} is outside (0.5, 1): give the availability objective, e.g. 0.999",
                    self.slo_objective
                ),
            });
        }
        Ok(())
    }
}

/// A correlator setting out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

#[derive(Debug, Clone)]
enum Fact {
    Anomaly(Box<Anomaly>),
    Alert(Box<Alert>),
    Event(Box<Event>),
    Log(Box<LogPattern>),
}

#[derive(Debug, Clone)]
struct Observation {
    ts: Millis,
    entity: Entity,
    fact: Fact,
}

#[derive(Debug, Clone)]
struct IncidentState {
    incident: Incident,
    facts: BTreeMap<Entity, EntityFacts>,
    active_alerts: BTreeSet<String>,
    last_activity: Millis,
    dirty: bool,
    /// When it reopened, for flapping detection.
    reopens: Vec<Millis>,
}

/// What `advance` did to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentUpdate {
    Opened,
    Updated,
    Resolved,
    /// A resolved incident relapsed within the reopen window.
    Reopened,
}

/// Why a lifecycle request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("no incident {0}")]
    NotFound(String),
    #[error("incident {0} is already resolved; it reopens by itself if its signals come back")]
    Resolved(String),
}

/// The streaming correlator: feed it signals in time order, call `advance` once per evaluation.
#[derive(Debug)]
pub struct Correlator {
    cfg: CorrelatorConfig,
    ranker: Box<dyn Ranker>,
    topology: Topology,
    dedup: AlertDeduper,
    changes: VecDeque<Change>,
    incidents: Vec<IncidentState>,
    pending: Vec<Observation>,
    next_id: u64,
    slo: SloTracker,
}

impl Correlator {
    /// The settings this correlator runs with.
    pub fn config(&self) -> &CorrelatorConfig {
        &self.cfg
    }

    /// A correlator that keeps each incident's hypotheses ranked by `ranker`.
    pub fn new(cfg: CorrelatorConfig, ranker: Box<dyn Ranker>) -> Self {
        Self {
            ranker,
            topology: Topology::new(),
            dedup: AlertDeduper::new(),
            changes: VecDeque::new(),
            incidents: Vec::new(),
            pending: Vec::new(),
            next_id: 1,
            slo: SloTracker::new(cfg.slo_objective),
            cfg,
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn topology_mut(&mut self) -> &mut Topology {
        &mut self.topology
    }

    /// Distinct alert firings received (after dedup).
    pub fn alerts_fired(&self) -> u64 {
        self.dedup.fired()
    }

    pub fn alert_duplicates(&self) -> u64 {
        self.dedup.duplicates()
    }

    pub fn observe_alert(&mut self, alert: &Alert) -> AlertOutcome {
        let outcome = self.dedup.observe(alert);
        match outcome {
            AlertOutcome::Fired => {
                if let Some(entity) = alert.entity() {
                    let ts = alert.starts_at;
                    self.route(Observation {
                        ts,
                        entity,
                        fact: Fact::Alert(Box::new(alert.clone())),
                    });
                }
            }
            AlertOutcome::Resolved => {
                for inc in &mut self.incidents {
                    inc.active_alerts.remove(&alert.fingerprint);
                }
            }
            AlertOutcome::Duplicate | AlertOutcome::Stale => {}
        }
        outcome
    }

    pub fn observe_anomaly(&mut self, a: &Anomaly) {
        self.route(Observation {
            ts: a.ts,
            entity: a.entity.clone(),
            fact: Fact::Anomaly(Box::new(a.clone())),
        });
    }

    /// Warning events are signals; normal events only appear on timelines of incidents they touch.
    pub fn observe_event(&mut self, e: &Event) {
        let Some(entity) = e.resource.entity() else {
            return;
        };
        let obs = Observation {
            ts: e.ts,
            entity,
            fact: Fact::Event(Box::new(e.clone())),
        };
        if e.event_type == EventType::Warning {
            self.route(obs);
        } else if let Some(i) = self.find_incident(&obs) {
            self.attach(i, obs);
        }
    }

    pub fn observe_log_pattern(&mut self, p: &LogPattern) {
        self.route(Observation {
            ts: p.ts,
            entity: p.entity.clone(),
            fact: Fact::Log(Box::new(p.clone())),
        });
    }

    /// A service's request rate (per second) and error ratio at one evaluation, for its error
    /// budget's burn rate.
    pub fn observe_traffic(&mut self, service: &str, ts: Millis, requests: f64, error_ratio: f64) {
        self.slo.observe(service, ts, requests, error_ratio);
    }

    pub fn slo(&self) -> &SloTracker {
        &self.slo
    }

    pub fn observe_change(&mut self, c: &Change) {
        self.changes.push_back(c.clone());
        while self
            .changes
            .front()
            .is_some_and(|f| c.ts - f.ts > 4 * self.ranker.change_lookback())
        {
            self.changes.pop_front();
        }
    }

    pub fn incident(&self, id: &str) -> Option<&Incident> {
        self.incidents
            .iter()
            .find(|s| s.incident.id == id)
            .map(|s| &s.incident)
    }

    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.incidents.iter().map(|s| &s.incident)
    }
}
