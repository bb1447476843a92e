//! What an incident shows besides its signals, recomputed when it changes: hypotheses, title,
//! blast radius, linked changes, inhibited alerts, error-budget burn, priority and history.

use super::attach::leading_suspects;
use super::lifecycle::capitalise;
use super::{Correlator, CorrelatorConfig, IncidentState};
use crate::Ranker;
use crate::slo::SloTracker;
use nightshift_core::{
    BlastRadius, BurnSeverity, Change, Entity, EntityKind, EvidenceKind, Incident, IncidentStatus,
    InhibitedAlert, Millis, Priority, SimilarIncident, TimelineEntry, Topology,
};
use std::collections::BTreeSet;

impl Correlator {
    /// Earlier resolved incidents like incident `i`, most similar first: the same leading
    /// suspect weighs half, the same kind of cause a quarter, shared log templates the last
    /// quarter (Jaccard overlap). Only those at least half similar, three at most.
    pub(super) fn similar_to(&self, i: usize) -> Vec<SimilarIncident> {
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
}

pub(super) fn refresh(
    st: &mut IncidentState,
    topo: &Topology,
    changes: &[Change],
    cfg: &CorrelatorConfig,
    ranker: &dyn Ranker,
) {
    let inc = &mut st.incident;
    let lookback = ranker.change_lookback();
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
    inc.hypotheses = ranker.rank(&st.facts, topo, &linked, inc.opened_at);
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

pub(super) fn burn_slo(st: &mut IncidentState, slo: &SloTracker, now: Millis) -> bool {
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

pub(super) fn priority(inc: &Incident, entry: &BTreeSet<&str>) -> Priority {
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
