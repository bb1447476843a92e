//! Incidents opened from pending signals: a connected group strong enough to page for.

use super::{Correlator, Fact, IncidentState, IncidentUpdate, Observation};
use nightshift_core::{
    BlastRadius, Entity, EventType, EvidenceKind, Incident, IncidentStatus, Millis, Priority,
    SignalClass, TimelineEntry,
};
use std::collections::{BTreeMap, BTreeSet};

impl Correlator {
    pub(super) fn open_from_pending(
        &mut self,
        now: Millis,
        out: &mut Vec<(String, IncidentUpdate)>,
    ) {
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
}

pub(super) fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

pub(super) fn strong_enough(obs: &[Observation], persistent_single: Millis) -> bool {
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
