//! Baselines the evaluation compares Nightshift against, computed from the same alert stream:
//! Alertmanager's label grouping and "blame the loudest service".

use nightshift_core::{Alert, AlertStatus, Millis};
use std::collections::{BTreeMap, BTreeSet};

type GroupKey = Vec<(String, String)>;

/// One Alertmanager notification group: alerts sharing the `group_by` label values, from its
/// first alert until all its alerts resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertGroup {
    pub key: Vec<(String, String)>,
    /// When the first notification went out (first alert + `group_wait`).
    pub notified_at: Millis,
    pub ended_at: Option<Millis>,
    pub alerts: u32,
}

impl AlertGroup {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.key
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Alertmanager-style grouping (`group_by`, `group_wait`): each distinct label combination is
/// one notification group, as Alertmanager's dispatcher forms them.
#[derive(Debug)]
pub struct AlertmanagerGrouping {
    group_by: Vec<String>,
    group_wait: Millis,
    /// Open groups by label values: the group's index and its firing fingerprints.
    open: BTreeMap<GroupKey, (usize, BTreeSet<String>)>,
    groups: Vec<AlertGroup>,
}

impl AlertmanagerGrouping {
    pub fn new(group_by: &[&str], group_wait: Millis) -> Self {
        Self {
            group_by: group_by.iter().map(|s| s.to_string()).collect(),
            group_wait,
            open: BTreeMap::new(),
            groups: Vec::new(),
        }
    }

    pub fn observe(&mut self, alert: &Alert, now: Millis) {
        let key: Vec<(String, String)> = self
            .group_by
            .iter()
            .map(|k| (k.clone(), alert.label(k).unwrap_or("").to_string()))
            .collect();
        match alert.status {
            AlertStatus::Firing => {
                let (idx, members) = self.open.entry(key.clone()).or_insert_with(|| {
                    self.groups.push(AlertGroup {
                        key,
                        notified_at: now + self.group_wait,
                        ended_at: None,
                        alerts: 0,
                    });
                    (self.groups.len() - 1, BTreeSet::new())
                });
                if members.insert(alert.fingerprint.clone()) {
                    self.groups[*idx].alerts += 1;
                }
            }
            AlertStatus::Resolved => {
                if let Some((idx, members)) = self.open.get_mut(&key) {
                    members.remove(&alert.fingerprint);
                    if members.is_empty() {
                        self.groups[*idx].ended_at = Some(now);
                        self.open.remove(&key);
                    }
                }
            }
        }
    }

    pub fn groups(&self) -> &[AlertGroup] {
        &self.groups
    }
}

/// Ranks services by how many alerts named them in a time range: the on-call's first guess.
pub fn loudest_services<'a>(
    alerts: impl IntoIterator<Item = &'a Alert>,
    from: Millis,
    to: Millis,
) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in alerts {
        if a.status == AlertStatus::Firing
            && a.starts_at >= from
            && a.starts_at <= to
            && let Some(e) = a.entity()
        {
            *counts.entry(e.name).or_default() += 1;
        }
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, service: &str, pod: &str, status: AlertStatus) -> Alert {
        let labels = BTreeMap::from([
            ("alertname".to_string(), name.to_string()),
            ("service".to_string(), service.to_string()),
            ("pod".to_string(), pod.to_string()),
        ]);
        let mut a = Alert::firing(labels, BTreeMap::new(), 0);
        a.status = status;
        a
    }

    #[test]
    fn groups_by_labels_and_ends_when_all_resolved() {
        let mut g = AlertmanagerGrouping::new(&["alertname", "service"], 30_000);
        g.observe(
            &alert("HighErrorRate", "api", "api-1", AlertStatus::Firing),
            0,
        );
        g.observe(
            &alert("HighErrorRate", "api", "api-2", AlertStatus::Firing),
            10,
        );
        g.observe(
            &alert("HighLatency", "api", "api-1", AlertStatus::Firing),
            20,
        );
        assert_eq!(g.groups().len(), 2);
        assert_eq!(g.groups()[0].alerts, 2);
        g.observe(
            &alert("HighErrorRate", "api", "api-1", AlertStatus::Resolved),
            100,
        );
        assert_eq!(g.groups()[0].ended_at, None);
        g.observe(
            &alert("HighErrorRate", "api", "api-2", AlertStatus::Resolved),
            200,
        );
        assert_eq!(g.groups()[0].ended_at, Some(200));
        g.observe(
            &alert("HighErrorRate", "api", "api-1", AlertStatus::Firing),
            300,
        );
        assert_eq!(
            g.groups().len(),
            3,
            "a new firing after the group ended is a new notification group"
        );
    }

    #[test]
    fn loudest_counts_alerts_in_range() {
        let a = [
            alert("A", "x", "x-1", AlertStatus::Firing),
            alert("B", "x", "x-1", AlertStatus::Firing),
            alert("A", "y", "y-1", AlertStatus::Firing),
        ];
        assert_eq!(
            loudest_services(&a, 0, 10),
            vec![("x".to_string(), 2), ("y".to_string(), 1)]
        );
    }
}
