//! Which open incident a signal joins, and what joining adds to the incident: the signal is
//! recent, near in the topology and on a dependency path of a leading suspect, or it waits.

use super::{Correlator, Fact, IncidentState, LEADING_SHARE, Observation};
use nightshift_core::{
    AlertFact, EdgeFact, Entity, EntityKind, EvidenceKind, Hypothesis, SeriesFact, SignalClass,
    TimelineEntry,
};

impl Correlator {
    pub(super) fn route(&mut self, obs: Observation) {
        match self.find_incident(&obs) {
            Some(i) => self.attach(i, obs),
            None => self.pending.push(obs),
        }
    }

    /// The open incident this observation belongs to: recent enough and closest in the topology.
    pub(super) fn find_incident(&self, obs: &Observation) -> Option<usize> {
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
    pub(super) fn explains(&self, st: &IncidentState, entity: &Entity) -> bool {
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
    pub(super) fn shares_workload(&self, a: &Entity, b: &Entity) -> bool {
        a.kind == EntityKind::Node
            && b.kind == EntityKind::Node
            && self
                .topology
                .services_on(&a.name)
                .any(|s| self.topology.nodes_of(s).any(|n| n == b.name))
    }

    pub(super) fn attach(&mut self, i: usize, obs: Observation) {
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
                            nightshift_core::format_value(a.value),
                            nightshift_core::format_value(a.expected)
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
}

pub(super) fn leading_suspects(hypotheses: &[Hypothesis]) -> impl Iterator<Item = &Entity> {
    let top = hypotheses.first().map_or(0.0, |h| h.score);
    hypotheses
        .iter()
        .take_while(move |h| h.score >= top * LEADING_SHARE)
        .map(|h| &h.entity)
}

pub(super) fn alert_class(name: &str) -> Option<SignalClass> {
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
