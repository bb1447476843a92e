//! Groups alerts, anomalies, Kubernetes events and log patterns into incidents by time and by
//! distance in the topology, links the changes that preceded them and keeps each incident's
//! root-cause ranking current.
//!
//! A signal joins an open incident when it arrives within `attach_window` of the incident's last
//! activity and its entity is at most `max_hops` away from an entity already in the incident.
//! Signals that join nothing wait in a short pending buffer; an incident opens only when a
//! connected group of them is strong enough (an alert, a node going away, two anomalous series,
//! or one series anomalous for two minutes), so one-off blips do not page anyone.

use crate::dedup::{AlertDeduper, AlertOutcome};
use crate::rank::{RankConfig, rank};
use crate::slo::SloTracker;
use nightshift_core::LogPattern;
use nightshift_core::facts::{AlertFact, EdgeFact, EntityFacts, SeriesFact};
use nightshift_core::{
    Alert, Anomaly, BlastRadius, Change, Entity, EntityKind, Event, EventType, EvidenceKind,
    Hypothesis, Incident, IncidentStatus, MINUTE, Millis, SignalClass, TimelineEntry, Topology,
};
use nightshift_core::{BurnSeverity, InhibitedAlert, Priority, SimilarIncident};
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
    pub rank: RankConfig,
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
            rank: RankConfig::default(),
            max_timeline: 200,
            reopen_window: 15 * MINUTE,
            flap_window: 60 * MINUTE,
            flap_reopens: 2,
            slo_objective: 0.999,
        }
    }
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
    topology: Topology,
    dedup: AlertDeduper,
    changes: VecDeque<Change>,
    incidents: Vec<IncidentState>,
    pending: Vec<Observation>,
    next_id: u64,
    slo: SloTracker,
}

impl Default for Correlator {
    fn default() -> Self {
        Self::new(CorrelatorConfig::default())
    }
}

impl Correlator {
    pub fn new(cfg: CorrelatorConfig) -> Self {
        Self {
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
            .is_some_and(|f| c.ts - f.ts > 4 * self.cfg.rank.change_lookback)
        {
            self.changes.pop_front();
        }
    }

    fn route(&mut self, obs: Observation) {
        match self.find_incident(&obs) {
            Some(i) => self.attach(i, obs),
            None => self.pending.push(obs),
        }
    }

    /// The open incident this observation belongs to: recent enough and closest in the topology.
    fn find_incident(&self, obs: &Observation) -> Option<usize> {
        let reach = self.topology.within_hops(&obs.entity, self.cfg.max_hops);
        let class = match &obs.fact {
            Fact::Anomaly(a) => Some(a.class),
            Fact::Alert(a) => alert_class(a.name()),
            _ => None,
        };
        self.incidents
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.incident.status.is_active() && obs.ts - s.last_activity <= self.cfg.attach_window
            })
            .filter(|(_, s)| self.explains(s, &obs.entity))
            .filter_map(|(i, s)| {
                let d = s.facts.keys().filter_map(|e| reach.get(e)).min()?;
                let suspect = leading_suspects(&s.incident.hypotheses).any(|h| *h == obs.entity);
                // A caller of two failing services: its symptom belongs with the incident where
                // its calls went wrong the same way.
                let same_calls = class.is_some_and(|c| {
                    s.facts
                        .get(&obs.entity)
                        .is_some_and(|f| f.edges_out.keys().any(|(_, ec)| *ec == c))
                });
                Some((i, (!suspect, !same_calls, *d), s.last_activity))
            })
            .min_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
            .map(|(i, _, _)| i)
    }

    /// Whether an incident's diagnosis can account for a signal on `entity`: the entity is
    /// already part of it, or it lies on one dependency path with a leading suspect (it depends
    /// on the suspect, so the fault can reach it, or the suspect depends on it, so it may be the
    /// real cause). A signal off every such path is a second fault, even next door in the
    /// topology, and waits to open an incident of its own. Before any ranking every nearby
    /// signal is welcome.
    fn explains(&self, st: &IncidentState, entity: &Entity) -> bool {
        st.incident.hypotheses.is_empty()
            || st.facts.contains_key(entity)
            || leading_suspects(&st.incident.hypotheses).any(|h| {
                h == entity
                    || self.topology.depends_on(entity, h)
                    || self.topology.depends_on(h, entity)
                    || self.shares_workload(entity, h)
            })
    }

    /// Two nodes running replicas of one service: when one fails, the other takes its load.
    fn shares_workload(&self, a: &Entity, b: &Entity) -> bool {
        a.kind == EntityKind::Node
            && b.kind == EntityKind::Node
            && self
                .topology
                .services_on(&a.name)
                .any(|s| self.topology.nodes_of(s).any(|n| n == b.name))
    }

    fn attach(&mut self, i: usize, obs: Observation) {
        let max_timeline = self.cfg.max_timeline;
        let st = &mut self.incidents[i];
        st.last_activity = st.last_activity.max(obs.ts);
        st.incident.updated_at = st.incident.updated_at.max(obs.ts);
        st.dirty = true;
        let mut timeline = |kind, entity: &Entity, text: String| {
            if st.incident.timeline.len() < max_timeline {
                st.incident.timeline.push(TimelineEntry {
                    ts: obs.ts,
                    kind,
                    entity: entity.clone(),
                    text,
                });
            }
        };
        match obs.fact {
            Fact::Anomaly(a) => {
                st.incident.anomaly_count += 1;
                let (client, server) = (a.series.label("client"), a.series.label("server"));
                if let (true, Some(client), Some(server)) =
                    (a.series.metric.starts_with("edge:"), client, server)
                {
                    let fact = |peer: &str| EdgeFact {
                        peer: peer.to_string(),
                        class: a.class,
                        first_ts: a.ts,
                        peak_score: a.score,
                        value: a.value,
                        expected: a.expected,
                        promql: a.promql.clone(),
                    };
                    let srv = Entity::service(server);
                    let cli = Entity::service(client);
                    let new = !st
                        .facts
                        .get(&srv)
                        .is_some_and(|f| f.edges_in.contains_key(&(client.to_string(), a.class)));
                    for (ent, map_in) in [(srv.clone(), true), (cli.clone(), false)] {
                        let f = st.facts.entry(ent).or_default();
                        f.touch_onset(a.ts);
                        let key = (if map_in { client } else { server }.to_string(), a.class);
                        let map = if map_in {
                            &mut f.edges_in
                        } else {
                            &mut f.edges_out
                        };
                        let e = map
                            .entry(key)
                            .or_insert_with(|| fact(if map_in { client } else { server }));
                        if a.score > e.peak_score {
                            e.peak_score = a.score;
                            e.value = a.value;
                            e.expected = a.expected;
                        }
                    }
                    if new {
                        timeline(
                            EvidenceKind::Trace,
                            &srv,
                            format!("calls {client} → {server}: {} anomalous", a.class.as_str()),
                        );
                    }
                } else {
                    let f = st.facts.entry(obs.entity.clone()).or_default();
                    f.touch_onset(a.ts);
                    let selector = a.series.selector();
                    let new = !f.series.contains_key(&selector);
                    let s = f
                        .series
                        .entry(selector.clone())
                        .or_insert_with(|| SeriesFact {
                            metric: a.series.metric.clone(),
                            selector,
                            class: a.class,
                            direction: a.direction,
                            first_ts: a.ts,
                            peak_ts: a.ts,
                            peak_score: a.score,
                            value: a.value,
                            expected: a.expected,
                            promql: a.promql.clone(),
                            detector: a.detector.clone(),
                            reports: 0,
                        });
                    s.reports += 1;
                    if a.score > s.peak_score {
                        s.peak_score = a.score;
                        s.peak_ts = a.ts;
                        s.value = a.value;
                        s.expected = a.expected;
                    }
                    if new {
                        let text = format!(
                            "{} {} {} (expected {})",
                            a.series.metric,
                            if a.direction == nightshift_core::Direction::Up {
                                "rose to"
                            } else {
                                "fell to"
                            },
                            crate::rank::fmt_value(a.value),
                            crate::rank::fmt_value(a.expected)
                        );
                        timeline(EvidenceKind::Anomaly, &obs.entity, text);
                    }
                }
            }
            Fact::Alert(a) => {
                st.active_alerts.insert(a.fingerprint.clone());
                if !st.incident.alerts.contains(&a.fingerprint) {
                    st.incident.alerts.push(a.fingerprint.clone());
                }
                let f = st.facts.entry(obs.entity.clone()).or_default();
                f.touch(obs.ts);
                let name = a.name().to_string();
                let new = !f.alerts.contains_key(&name);
                let fact = f.alerts.entry(name.clone()).or_insert_with(|| AlertFact {
                    alertname: name.clone(),
                    first_ts: obs.ts,
                    firings: 0,
                    severity: a.label("severity").unwrap_or("").to_string(),
                });
                fact.firings += 1;
                if new {
                    timeline(
                        EvidenceKind::Alert,
                        &obs.entity,
                        format!("alert {name} fired"),
                    );
                }
            }
            Fact::Event(e) => {
                let f = st.facts.entry(obs.entity.clone()).or_default();
                let new = !f.events.contains_key(&e.reason);
                f.add_event(&e);
                if new {
                    timeline(
                        EvidenceKind::KubeEvent,
                        &obs.entity,
                        format!("{} {}: {}", e.object, e.reason, e.message),
                    );
                }
            }
            Fact::Log(p) => {
                let f = st.facts.entry(obs.entity.clone()).or_default();
                let new = !f.logs.contains_key(&p.template);
                f.add_log(&p);
                if new {
                    timeline(
                        EvidenceKind::LogPattern,
                        &obs.entity,
                        format!(
                            "{}log pattern: {}",
                            if p.new { "new " } else { "" },
                            p.template
                        ),
                    );
                }
            }
        }
    }

    /// Opens incidents from pending signals, resolves quiet ones and re-ranks changed ones.
    /// Returns the incidents that changed, with what happened to them.
    pub fn advance(&mut self, now: Millis) -> Vec<(String, IncidentUpdate)> {
        let mut out = Vec::new();
        self.pending
            .retain(|o| now - o.ts <= self.cfg.pending_window);
        self.open_from_pending(now, &mut out);
        for st in &mut self.incidents {
            let quiet = if st.incident.flapping {
                3 * self.cfg.resolve_after
            } else {
                self.cfg.resolve_after
            };
            if st.incident.status.is_active()
                && st.active_alerts.is_empty()
                && now - st.last_activity >= quiet
            {
                st.incident.status = IncidentStatus::Resolved;
                st.incident.resolved_at = Some(now);
                st.incident.updated_at = now;
                st.incident.resolution = Some(resolution(&st.incident, &self.changes, now));
                transition(
                    &mut st.incident,
                    now,
                    "resolved: signals back to normal".into(),
                );
                out.push((st.incident.id.clone(), IncidentUpdate::Resolved));
            }
        }
        for st in &mut self.incidents {
            if st.incident.status.is_active() && burn_slo(st, &self.slo, now) {
                st.dirty = true;
            }
        }
        let changes: Vec<Change> = self.changes.iter().cloned().collect();
        for st in &mut self.incidents {
            if !st.dirty {
                continue;
            }
            st.dirty = false;
            refresh(st, &self.topology, &changes, &self.cfg);
            if !out.iter().any(|(id, _)| *id == st.incident.id) {
                out.push((st.incident.id.clone(), IncidentUpdate::Updated));
            }
        }
        for (id, update) in &out {
            if *update != IncidentUpdate::Resolved
                && let Some(i) = self.incidents.iter().position(|s| s.incident.id == *id)
            {
                let similar = self.similar_to(i);
                self.incidents[i].incident.similar = similar;
            }
        }
        out
    }

    fn open_from_pending(&mut self, now: Millis, out: &mut Vec<(String, IncidentUpdate)>) {
        if self.pending.is_empty() {
            return;
        }
        // Connected groups of pending entities (within max_hops of each other).
        let entities: Vec<Entity> = self
            .pending
            .iter()
            .map(|o| o.entity.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut group: Vec<usize> = (0..entities.len()).collect();
        for (i, entity) in entities.iter().enumerate() {
            let reach = self.topology.within_hops(entity, self.cfg.max_hops);
            for (j, other) in entities.iter().enumerate().skip(i + 1) {
                if reach.contains_key(other) {
                    let (gi, gj) = (find(&mut group, i), find(&mut group, j));
                    group[gj] = gi;
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<Observation>> = BTreeMap::new();
        let pending = std::mem::take(&mut self.pending);
        for o in pending {
            let idx = entities.iter().position(|e| *e == o.entity).unwrap_or(0);
            let g = find(&mut group, idx);
            groups.entry(g).or_default().push(o);
        }
        for (_, obs) in groups {
            if !strong_enough(&obs, self.cfg.persistent_single) {
                self.pending.extend(obs);
                continue;
            }
            if let Some(i) = self.relapsed(&obs, now) {
                self.reopen(i, now);
                for o in obs {
                    self.attach(i, o);
                }
                self.incidents[i].incident.timeline.sort_by_key(|t| t.ts);
                out.push((
                    self.incidents[i].incident.id.clone(),
                    IncidentUpdate::Reopened,
                ));
                continue;
            }
            let id = format!("inc-{:04}", self.next_id);
            self.next_id += 1;
            let first_entity = obs[0].entity.clone();
            let incident = Incident {
                id: id.clone(),
                title: String::new(),
                status: IncidentStatus::Open,
                opened_at: now,
                updated_at: now,
                resolved_at: None,
                acknowledged_at: None,
                acknowledged_by: None,
                reopened: 0,
                flapping: false,
                priority: Priority::P4,
                slo: Vec::new(),
                inhibited: Vec::new(),
                similar: Vec::new(),
                resolution: None,
                blast_radius: BlastRadius::default(),
                alerts: Vec::new(),
                anomaly_count: 0,
                changes: Vec::new(),
                hypotheses: Vec::new(),
                timeline: vec![TimelineEntry {
                    ts: now,
                    kind: EvidenceKind::Lifecycle,
                    entity: first_entity,
                    text: "opened".into(),
                }],
            };
            self.incidents.push(IncidentState {
                incident,
                facts: BTreeMap::new(),
                active_alerts: BTreeSet::new(),
                last_activity: now,
                dirty: true,
                reopens: Vec::new(),
            });
            let i = self.incidents.len() - 1;
            let mut obs = obs;
            obs.sort_by_key(|o| o.ts);
            for o in obs {
                self.attach(i, o);
            }
            self.incidents[i].incident.timeline.sort_by_key(|t| t.ts);
            out.push((id, IncidentUpdate::Opened));
        }
    }

    /// The incident resolved within the reopen window that a strong group of new signals is a
    /// relapse of: its leading suspect misbehaves again. Symptoms shared with other faults (a
    /// gateway that calls everything) are not enough.
    fn relapsed(&self, obs: &[Observation], now: Millis) -> Option<usize> {
        self.incidents
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.incident.status == IncidentStatus::Resolved
                    && s.incident
                        .resolved_at
                        .is_some_and(|r| now - r <= self.cfg.reopen_window)
                    && leading_suspects(&s.incident.hypotheses)
                        .any(|h| obs.iter().any(|o| o.entity == *h))
            })
            .max_by_key(|(_, s)| s.incident.resolved_at)
            .map(|(i, _)| i)
    }

    fn reopen(&mut self, i: usize, now: Millis) {
        let (window, flap_reopens) = (self.cfg.flap_window, self.cfg.flap_reopens);
        let st = &mut self.incidents[i];
        let was = st.incident.resolved_at.unwrap_or(now);
        st.reopens.push(now);
        st.reopens.retain(|t| now - t <= window);
        st.last_activity = now;
        st.dirty = true;
        let inc = &mut st.incident;
        inc.status = IncidentStatus::Open;
        inc.resolved_at = None;
        inc.resolution = None;
        inc.updated_at = now;
        inc.reopened += 1;
        transition(
            inc,
            now,
            format!(
                "reopened: signals came back {} after resolving",
                nightshift_core::format_duration(now - was)
            ),
        );
        if !inc.flapping && st.reopens.len() >= flap_reopens {
            inc.flapping = true;
            transition(
                inc,
                now,
                format!(
                    "flapping: reopened {} times within {}; it now waits {} of quiet before resolving",
                    st.reopens.len(),
                    nightshift_core::format_duration(window),
                    nightshift_core::format_duration(3 * self.cfg.resolve_after)
                ),
            );
        }
    }

    /// Earlier resolved incidents like incident `i`, most similar first: the same leading
    /// suspect weighs half, the same kind of cause a quarter, shared log templates the last
    /// quarter (Jaccard overlap). Only those at least half similar, three at most.
    fn similar_to(&self, i: usize) -> Vec<SimilarIncident> {
        let st = &self.incidents[i];
        let Some(top) = st.incident.hypotheses.first() else {
            return Vec::new();
        };
        let templates = |s: &IncidentState| -> BTreeSet<String> {
            s.facts
                .values()
                .flat_map(|f| f.logs.keys().cloned())
                .collect()
        };
        let mine = templates(st);
        let mut out: Vec<SimilarIncident> = self.incidents[..i]
            .iter()
            .filter(|p| p.incident.status == IncidentStatus::Resolved)
            .filter_map(|p| {
                let ptop = p.incident.hypotheses.first()?;
                let theirs = templates(p);
                let union = mine.union(&theirs).count();
                let shared = if union == 0 {
                    0.0
                } else {
                    mine.intersection(&theirs).count() as f64 / union as f64
                };
                let similarity = 0.5 * f64::from(u8::from(ptop.entity == top.entity))
                    + 0.25 * f64::from(u8::from(ptop.cause == top.cause))
                    + 0.25 * shared;
                (similarity >= 0.5).then(|| SimilarIncident {
                    id: p.incident.id.clone(),
                    title: p.incident.title.clone(),
                    opened_at: p.incident.opened_at,
                    resolved_at: p.incident.resolved_at,
                    similarity,
                    resolution: p.incident.resolution.clone().unwrap_or_default(),
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then(b.opened_at.cmp(&a.opened_at))
        });
        out.truncate(3);
        out
    }

    /// Takes back incidents recorded by an earlier run, as history for "has this happened
    /// before?", and numbers new incidents after them. Their per-entity facts are not stored,
    /// so their log templates do not count towards similarity. Incidents still active when the
    /// earlier run stopped resolve here once quiet, like any other.
    pub fn remember(&mut self, incidents: impl IntoIterator<Item = Incident>) {
        let mut known: BTreeSet<String> = self
            .incidents
            .iter()
            .map(|s| s.incident.id.clone())
            .collect();
        for incident in incidents {
            if !known.insert(incident.id.clone()) {
                continue;
            }
            if let Some(n) = incident
                .id
                .strip_prefix("inc-")
                .and_then(|n| n.parse::<u64>().ok())
            {
                self.next_id = self.next_id.max(n + 1);
            }
            self.incidents.push(IncidentState {
                last_activity: incident.updated_at,
                facts: BTreeMap::new(),
                active_alerts: BTreeSet::new(),
                dirty: false,
                reopens: Vec::new(),
                incident,
            });
        }
        self.incidents.sort_by_key(|s| s.incident.opened_at);
    }

    /// Marks an incident as acknowledged by `by`. Acknowledging it again changes nothing.
    pub fn acknowledge(
        &mut self,
        id: &str,
        by: &str,
        now: Millis,
    ) -> Result<&Incident, LifecycleError> {
        let st = self
            .incidents
            .iter_mut()
            .find(|s| s.incident.id == id)
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        let inc = &mut st.incident;
        match inc.status {
            IncidentStatus::Resolved => return Err(LifecycleError::Resolved(id.to_string())),
            IncidentStatus::Acknowledged => {}
            IncidentStatus::Open => {
                inc.status = IncidentStatus::Acknowledged;
                inc.acknowledged_at = Some(now);
                inc.acknowledged_by = Some(by.to_string());
                inc.updated_at = inc.updated_at.max(now);
                transition(inc, now, format!("acknowledged by {by}"));
            }
        }
        Ok(inc)
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

/// An incident's leading suspects: its hypotheses scoring at least `LEADING_SHARE` of the top one.
fn leading_suspects(hypotheses: &[Hypothesis]) -> impl Iterator<Item = &Entity> {
    let top = hypotheses.first().map_or(0.0, |h| h.score);
    hypotheses
        .iter()
        .take_while(move |h| h.score >= top * LEADING_SHARE)
        .map(|h| &h.entity)
}

/// The golden signal an alert's name speaks of, when it says (`HighLatencyP99`, `HighErrorRate`).
fn alert_class(name: &str) -> Option<SignalClass> {
    let name = name.to_ascii_lowercase();
    if ["latency", "slow", "duration"]
        .iter()
        .any(|w| name.contains(w))
    {
        Some(SignalClass::Latency)
    } else if ["error", "5xx", "fail"].iter().any(|w| name.contains(w)) {
        Some(SignalClass::Errors)
    } else {
        None
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Whether a connected group of pending signals warrants an incident (see the module docs).
fn strong_enough(obs: &[Observation], persistent_single: Millis) -> bool {
    // Evidence units: one per (entity, class). The mean and the p99 of one service's latency, and
    // the calls into it, are one symptom seen three ways, not three symptoms.
    let mut units: BTreeMap<(Entity, SignalClass), f64> = BTreeMap::new();
    let mut spans: BTreeMap<String, (Millis, Millis, SignalClass)> = BTreeMap::new();
    let mut warning_events = 0;
    for o in obs {
        match &o.fact {
            Fact::Alert(_) => return true,
            Fact::Event(e) if e.reason == "NodeNotReady" => return true,
            Fact::Event(e) if e.event_type == EventType::Warning => warning_events += 1,
            Fact::Anomaly(a) => {
                let u = units.entry((a.entity.clone(), a.class)).or_insert(0.0);
                *u = u.max(a.score);
                let s = spans
                    .entry(a.series.selector())
                    .or_insert((a.ts, a.ts, a.class));
                s.0 = s.0.min(a.ts);
                s.1 = s.1.max(a.ts);
            }
            _ => {}
        }
    }
    // Traffic moves with users; on its own it counts half.
    let weight = |c: SignalClass| if c == SignalClass::Traffic { 0.5 } else { 1.0 };
    let n: f64 = units.keys().map(|(_, c)| weight(*c)).sum();
    let score: f64 = units.iter().map(|((_, c), s)| s * weight(*c)).sum();
    let persistent = spans
        .values()
        .any(|s| s.2 != SignalClass::Traffic && s.1 - s.0 >= persistent_single);
    (n >= 2.0 && score >= 1.2) || persistent || (warning_events > 0 && n >= 1.0)
}

/// Recomputes hypotheses, title, blast radius and linked changes of one incident.
fn refresh(st: &mut IncidentState, topo: &Topology, changes: &[Change], cfg: &CorrelatorConfig) {
    let inc = &mut st.incident;
    let lookback = cfg.rank.change_lookback;
    let near: BTreeSet<Entity> = st.facts.keys().cloned().collect();
    let linked: Vec<Change> = changes
        .iter()
        .filter(|c| c.ts <= inc.updated_at && inc.opened_at - c.ts <= lookback)
        .filter(|c| {
            near.iter().any(|e| {
                topo.distance(e, &Entity::service(&c.target), 1).is_some() || e.name == c.target
            })
        })
        .cloned()
        .collect();
    inc.hypotheses = rank(&st.facts, topo, &linked, inc.opened_at, &cfg.rank);
    for c in &linked {
        if !inc.changes.iter().any(|x| x.id == c.id) {
            inc.changes.push(c.clone());
            if inc.timeline.len() < cfg.max_timeline {
                let text = c.summary();
                inc.timeline.push(TimelineEntry {
                    ts: c.ts,
                    kind: EvidenceKind::Change,
                    entity: Entity::service(&c.target),
                    text,
                });
                inc.timeline.sort_by_key(|t| t.ts);
            }
        }
    }
    let affected: Vec<Entity> = st
        .facts
        .iter()
        .filter(|(_, f)| f.has_own_health_signal() || !f.edges_in.is_empty())
        .map(|(e, _)| e.clone())
        .collect();
    let entry: BTreeSet<&str> = topo.entry_points().into_iter().collect();
    let suspects: Vec<&Entity> = leading_suspects(&inc.hypotheses).collect();
    let endpoints: BTreeSet<String> = st
        .facts
        .iter()
        .flat_map(|(e, f)| {
            f.edges_in
                .keys()
                .map(move |(client, _)| format!("{client} → {}", e.name))
        })
        .collect();
    let at_risk: BTreeSet<String> = suspects
        .first()
        .map(|s| {
            topo.services
                .iter()
                .filter(|svc| {
                    let e = Entity::service(svc.as_str());
                    !affected.contains(&e) && topo.depends_on(&e, s)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    inc.blast_radius = BlastRadius {
        entry_points: affected
            .iter()
            .filter(|e| e.kind == EntityKind::Service && entry.contains(e.name.as_str()))
            .map(|e| e.name.clone())
            .collect(),
        entities: affected,
        endpoints: endpoints.into_iter().collect(),
        at_risk: at_risk.into_iter().collect(),
    };
    // Alerts on entities that depend on a leading suspect are its symptoms.
    inc.inhibited = st
        .facts
        .iter()
        .filter_map(|(e, f)| {
            let cause = suspects.iter().find(|s| topo.depends_on(e, s))?;
            Some(f.alerts.keys().map(move |name| InhibitedAlert {
                alertname: name.clone(),
                entity: e.clone(),
                cause: (*cause).clone(),
            }))
        })
        .flatten()
        .collect();
    inc.priority = priority(inc, &entry);
    inc.title = match inc.hypotheses.first() {
        Some(h) => {
            let n = inc.blast_radius.entities.len();
            format!(
                "{} on {} ({} affected)",
                capitalise(&h.cause),
                h.entity.name,
                n
            )
        }
        None => "Unexplained anomalies".into(),
    };
}

/// Updates the burn rates of the incident's services; true when one reached a new level (the
/// incident is then refreshed, its priority with it). Each service keeps its worst burn seen
/// while the incident lasts.
fn burn_slo(st: &mut IncidentState, slo: &SloTracker, now: Millis) -> bool {
    let inc = &mut st.incident;
    let mut changed = false;
    for e in st.facts.keys().filter(|e| e.kind == EntityKind::Service) {
        let Some(burn) = slo.alerting(&e.name, now) else {
            continue;
        };
        match inc.slo.iter_mut().find(|b| b.service == burn.service) {
            Some(b) if b.severity > burn.severity => {}
            Some(b) if b.severity == burn.severity => {
                if burn.burn_5m > b.burn_5m {
                    *b = burn;
                }
            }
            _ => {
                inc.timeline.push(TimelineEntry {
                    ts: now,
                    kind: EvidenceKind::Anomaly,
                    entity: e.clone(),
                    text: format!("SLO {}: {}", burn.severity.as_str(), burn.summary()),
                });
                inc.slo.retain(|b| b.service != burn.service);
                inc.slo.push(burn);
                changed = true;
            }
        }
    }
    changed
}

/// An incident's priority from its services' burns and its user-facing symptoms (see
/// `docs/architecture.md`, "Error budgets and priority").
fn priority(inc: &Incident, entry: &BTreeSet<&str>) -> Priority {
    let worst = |user: bool| {
        inc.slo
            .iter()
            .filter(|b| entry.contains(b.service.as_str()) == user)
            .map(|b| b.severity)
            .max()
    };
    match (worst(true), worst(false)) {
        (Some(BurnSeverity::Page), _) => Priority::P1,
        (_, Some(BurnSeverity::Page)) | (Some(BurnSeverity::Ticket), _) => Priority::P2,
        (_, Some(BurnSeverity::Ticket)) => Priority::P3,
        _ if !inc.blast_radius.entry_points.is_empty() => Priority::P3,
        _ => Priority::P4,
    }
}

/// How a resolved incident ended: a change to one of its entities while it was open (a fix or a
/// rollback), else recovery on its own, with who had acknowledged it.
fn resolution(inc: &Incident, changes: &VecDeque<Change>, now: Millis) -> String {
    let after = |ts: Millis| nightshift_core::format_duration(ts - inc.opened_at);
    let involved = |target: &str| {
        inc.hypotheses.iter().any(|h| h.entity.name == target)
            || inc.blast_radius.entities.iter().any(|e| e.name == target)
    };
    let fix = changes
        .iter()
        .rfind(|c| c.ts >= inc.opened_at && c.ts <= now && involved(&c.target));
    let acked = inc
        .acknowledged_by
        .as_deref()
        .map(|by| format!(" (acknowledged by {by})"))
        .unwrap_or_default();
    match fix {
        Some(c) => format!("{} {} after it opened{acked}", c.summary(), after(c.ts)),
        None => format!("recovered on its own after {}{acked}", after(now)),
    }
}

/// Puts a status change on the timeline. Transitions are few and always recorded, past the
/// timeline's cap on evidence lines.
fn transition(inc: &mut Incident, ts: Millis, text: String) {
    let entity = inc
        .hypotheses
        .first()
        .map(|h| h.entity.clone())
        .or_else(|| inc.timeline.first().map(|t| t.entity.clone()))
        .unwrap_or_else(|| Entity::service("?"));
    inc.timeline.push(TimelineEntry {
        ts,
        kind: EvidenceKind::Lifecycle,
        entity,
        text,
    });
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_core::{Direction, SeriesKey};

    fn anomaly(service: &str, metric: &str, class: SignalClass, ts: Millis) -> Anomaly {
        Anomaly {
            series: SeriesKey::new(metric, &[("service", service)]),
            entity: Entity::service(service),
            class,
            ts,
            score: 0.9,
            value: 10.0,
            expected: 1.0,
            lower: 0.0,
            upper: 2.0,
            direction: Direction::Up,
            detector: "test".into(),
            promql: metric.into(),
        }
    }

    /// `gateway` calls `search → elastic` and `users → users-db`.
    fn correlator() -> Correlator {
        let mut c = Correlator::default();
        let t = c.topology_mut();
        t.add_call("gateway", "search");
        t.add_call("search", "elastic");
        t.add_call("gateway", "users");
        t.add_call("users", "users-db");
        c
    }

    /// Feeds one saturation anomaly on `service` and one latency anomaly on `caller` per
    /// minute from `from` to `to` (exclusive), advancing the correlator each minute.
    fn fault(c: &mut Correlator, service: &str, caller: &str, from: Millis, to: Millis) {
        let mut t = from;
        while t < to {
            c.observe_anomaly(&anomaly(service, "cpu", SignalClass::Saturation, t));
            c.observe_anomaly(&anomaly(caller, "latency", SignalClass::Latency, t));
            c.advance(t);
            t += MINUTE;
        }
    }

    fn quiet(c: &mut Correlator, from: Millis, to: Millis) {
        let mut t = from;
        while t < to {
            c.advance(t);
            t += MINUTE;
        }
    }

    #[test]
    fn a_concurrent_fault_off_the_suspects_path_opens_its_own_incident() {
        let mut c = correlator();
        fault(&mut c, "elastic", "search", 0, 5 * MINUTE);
        fault(&mut c, "users-db", "users", 5 * MINUTE, 10 * MINUTE);
        let incidents: Vec<&Incident> = c.incidents().collect();
        assert_eq!(incidents.len(), 2, "{incidents:#?}");
        assert_eq!(
            incidents[0].hypotheses[0].entity,
            Entity::service("elastic")
        );
        assert_eq!(
            incidents[1].hypotheses[0].entity,
            Entity::service("users-db")
        );
        // The gateway calls both: its latency is explained by either.
        c.observe_anomaly(&anomaly(
            "gateway",
            "latency",
            SignalClass::Latency,
            10 * MINUTE,
        ));
        c.advance(10 * MINUTE);
        assert_eq!(c.incidents().count(), 2);
    }

    #[test]
    fn a_user_facing_error_budget_burning_fast_makes_the_incident_p1() {
        let mut c = correlator();
        for m in 0..60 {
            c.observe_traffic("gateway", m * MINUTE, 100.0, 0.0001);
            c.observe_traffic("users", m * MINUTE, 50.0, 0.0001);
        }
        // users-db fails; users returns 10% errors (100× the 99.9% budget), the gateway 5%.
        let mut t = 60 * MINUTE;
        while t < 70 * MINUTE {
            c.observe_traffic("gateway", t, 100.0, 0.05);
            c.observe_traffic("users", t, 50.0, 0.1);
            c.observe_anomaly(&anomaly("users-db", "cpu", SignalClass::Saturation, t));
            c.observe_anomaly(&anomaly("users", "errors", SignalClass::Errors, t));
            c.advance(t);
            t += MINUTE;
        }
        let inc = c.incidents().next().expect("an incident");
        // Only users is in the incident so far: an internal service paging is P2.
        assert_eq!(inc.priority, Priority::P2, "{:?}", inc.slo);
        assert_eq!(inc.slo.len(), 1);
        assert_eq!(inc.slo[0].service, "users");
        // The gateway's errors join it: a user-facing page.
        while t < 82 * MINUTE {
            c.observe_traffic("gateway", t, 100.0, 0.05);
            c.observe_anomaly(&anomaly("gateway", "errors", SignalClass::Errors, t));
            c.advance(t);
            t += MINUTE;
        }
        let inc = c.incidents().next().expect("an incident");
        assert_eq!(inc.priority, Priority::P1, "{:?}", inc.slo);
        assert!(
            inc.timeline
                .iter()
                .any(|e| e.text.starts_with("SLO page: gateway burns"))
        );
    }

    #[test]
    fn lifecycle_acknowledge_resolve_reopen_and_flap_all_on_the_timeline() {
        let mut c = correlator();
        fault(&mut c, "users-db", "users", 0, 5 * MINUTE);
        let id = c.incidents().next().expect("an incident").id.clone();
        assert!(matches!(
            c.acknowledge("inc-9999", "ana", MINUTE),
            Err(LifecycleError::NotFound(_))
        ));
        let inc = c.acknowledge(&id, "ana", 5 * MINUTE).expect("acknowledged");
        assert_eq!(inc.status, IncidentStatus::Acknowledged);
        assert_eq!(inc.acknowledged_by.as_deref(), Some("ana"));
        // Still attached to while acknowledged, and resolved once quiet.
        fault(&mut c, "users-db", "users", 5 * MINUTE, 6 * MINUTE);
        quiet(&mut c, 6 * MINUTE, 20 * MINUTE);
        let inc = c.incident(&id).expect("kept");
        assert_eq!(inc.status, IncidentStatus::Resolved);
        assert!(matches!(
            c.acknowledge(&id, "ana", 20 * MINUTE),
            Err(LifecycleError::Resolved(_))
        ));
        // A relapse within the reopen window reopens it rather than opening a new one.
        fault(&mut c, "users-db", "users", 25 * MINUTE, 28 * MINUTE);
        assert_eq!(c.incidents().count(), 1);
        let inc = c.incident(&id).expect("kept");
        assert_eq!(inc.status, IncidentStatus::Open);
        assert_eq!((inc.reopened, inc.flapping), (1, false));
        quiet(&mut c, 28 * MINUTE, 40 * MINUTE);
        assert_eq!(
            c.incident(&id).map(|i| i.status),
            Some(IncidentStatus::Resolved)
        );
        // A second relapse within the hour: flapping, and it now needs longer to resolve.
        fault(&mut c, "users-db", "users", 45 * MINUTE, 48 * MINUTE);
        let inc = c.incident(&id).expect("kept");
        assert_eq!((inc.reopened, inc.flapping), (2, true));
        quiet(&mut c, 48 * MINUTE, 62 * MINUTE);
        assert_eq!(
            c.incident(&id).map(|i| i.status),
            Some(IncidentStatus::Open)
        );
        quiet(&mut c, 62 * MINUTE, 80 * MINUTE);
        let inc = c.incident(&id).expect("kept");
        assert_eq!(inc.status, IncidentStatus::Resolved);
        let transitions: Vec<&str> = inc
            .timeline
            .iter()
            .filter(|t| t.kind == EvidenceKind::Lifecycle)
            .map(|t| t.text.split(':').next().unwrap_or_default())
            .collect();
        assert_eq!(
            transitions,
            [
                "opened",
                "acknowledged by ana",
                "resolved",
                "reopened",
                "resolved",
                "reopened",
                "flapping",
                "resolved"
            ]
        );
        // Past the reopen window, the same fault is a new incident, which remembers the first
        // one and how it ended.
        fault(&mut c, "users-db", "users", 200 * MINUTE, 205 * MINUTE);
        assert_eq!(c.incidents().count(), 2);
        let new = c.incidents().last().expect("the new incident");
        assert_eq!(new.similar.len(), 1, "{:?}", new.similar);
        assert_eq!(new.similar[0].id, id);
        assert!(new.similar[0].similarity >= 0.75);
        assert!(
            new.similar[0]
                .resolution
                .starts_with("recovered on its own after"),
            "{}",
            new.similar[0].resolution
        );
    }

    #[test]
    fn incidents_of_an_earlier_run_are_history_and_their_ids_are_not_reused() {
        let mut before = correlator();
        fault(&mut before, "users-db", "users", 0, 5 * MINUTE);
        quiet(&mut before, 5 * MINUTE, 20 * MINUTE);
        let past: Vec<Incident> = before.incidents().cloned().collect();
        assert_eq!(past[0].status, IncidentStatus::Resolved);
        assert!(past[0].resolution.is_some());

        let mut c = correlator();
        c.remember(past.clone());
        c.remember(past);
        assert_eq!(c.incidents().count(), 1, "remembered once");
        fault(&mut c, "users-db", "users", 120 * MINUTE, 125 * MINUTE);
        let new = c.incidents().last().expect("a new incident");
        assert_eq!(new.id, "inc-0002");
        assert_eq!(new.similar.first().map(|p| p.id.as_str()), Some("inc-0001"));
    }

    #[test]
    fn symptom_alerts_are_shown_under_their_cause_and_a_fix_is_remembered() {
        let mut c = correlator();
        let alert = |name: &str, service: &str, ts: Millis| {
            let labels = BTreeMap::from([
                ("alertname".to_string(), name.to_string()),
                ("service".to_string(), service.to_string()),
            ]);
            Alert::firing(labels, BTreeMap::new(), ts)
        };
        fault(&mut c, "users-db", "users", 0, 3 * MINUTE);
        c.observe_alert(&alert("HighErrorRate", "users", 3 * MINUTE));
        c.observe_alert(&alert("PostgresTooManyConnections", "users-db", 3 * MINUTE));
        fault(&mut c, "users-db", "users", 3 * MINUTE, 5 * MINUTE);
        let inc = c.incidents().next().expect("an incident");
        assert_eq!(inc.hypotheses[0].entity, Entity::service("users-db"));
        let inhibited: Vec<(&str, &str)> = inc
            .inhibited
            .iter()
            .map(|a| (a.alertname.as_str(), a.entity.name.as_str()))
            .collect();
        assert_eq!(inhibited, [("HighErrorRate", "users")]);
        assert_eq!(inc.inhibited[0].cause, Entity::service("users-db"));
        // The gateway calls users and shows nothing yet: at risk.
        assert_eq!(inc.blast_radius.at_risk, ["gateway"]);
        // A rollback of users-db while it is open is what resolved it.
        c.observe_change(&Change {
            id: "c1".into(),
            ts: 6 * MINUTE,
            kind: nightshift_core::ChangeKind::Rollback,
            target: "users-db".into(),
            version: Some("v1".into()),
            description: String::new(),
        });
        let mut r = alert("HighErrorRate", "users", 3 * MINUTE);
        r.status = nightshift_core::AlertStatus::Resolved;
        c.observe_alert(&r);
        let mut r = alert("PostgresTooManyConnections", "users-db", 3 * MINUTE);
        r.status = nightshift_core::AlertStatus::Resolved;
        c.observe_alert(&r);
        quiet(&mut c, 6 * MINUTE, 20 * MINUTE);
        fault(&mut c, "users-db", "users", 60 * MINUTE, 65 * MINUTE);
        let new = c.incidents().last().expect("a second incident");
        assert_eq!(c.incidents().count(), 2);
        assert!(
            new.similar[0]
                .resolution
                .starts_with("rollback of users-db (v1)"),
            "{:?}",
            new.similar
        );
    }
}
