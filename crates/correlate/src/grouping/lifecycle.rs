//! An incident's life: resolved when quiet, reopened on a relapse, flapping when it reopens
//! often, acknowledged by a person; each transition on its timeline.

use super::attach::leading_suspects;
use super::refresh::burn_slo;
use super::refresh::refresh;
use super::{Correlator, IncidentState, IncidentUpdate, LifecycleError, Observation};
use nightshift_core::{
    Change, Entity, EvidenceKind, Incident, IncidentStatus, Millis, TimelineEntry,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

impl Correlator {
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
            refresh(
                st,
                &self.topology,
                &changes,
                &self.cfg,
                self.ranker.as_ref(),
            );
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

    /// The incident resolved within the reopen window that a strong group of new signals is a
    /// relapse of: its leading suspect misbehaves again. Symptoms shared with other faults (a
    /// gateway that calls everything) are not enough.
    pub(super) fn relapsed(&self, obs: &[Observation], now: Millis) -> Option<usize> {
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

    pub(super) fn reopen(&mut self, i: usize, now: Millis) {
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
}

pub(super) fn resolution(inc: &Incident, changes: &VecDeque<Change>, now: Millis) -> String {
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

pub(super) fn transition(inc: &mut Incident, ts: Millis, text: String) {
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

pub(super) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
