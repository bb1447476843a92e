//! Alert deduplication by fingerprint: repeated notifications of one firing alert count once.

use nightshift_core::{Alert, AlertStatus, Millis};
use std::collections::HashMap;

/// What a notification meant for the alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOutcome {
    /// A new firing (first notification, or firing again after it resolved).
    Fired,
    /// The alert was already firing: a repeat notification.
    Duplicate,
    /// A firing alert resolved.
    Resolved,
    /// A resolve for an alert that was not firing (already resolved, or never seen).
    Stale,
}

/// Tracks which alert fingerprints are firing, and since when.
#[derive(Debug, Default)]
pub struct AlertDeduper {
    firing: HashMap<String, Millis>,
    fired: u64,
    duplicates: u64,
}

impl AlertDeduper {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe(&mut self, alert: &Alert) -> AlertOutcome {
        match alert.status {
            AlertStatus::Firing => {
                if self.firing.contains_key(&alert.fingerprint) {
                    self.duplicates += 1;
                    AlertOutcome::Duplicate
                } else {
                    self.firing
                        .insert(alert.fingerprint.clone(), alert.starts_at);
                    self.fired += 1;
                    AlertOutcome::Fired
                }
            }
            AlertStatus::Resolved => {
                if self.firing.remove(&alert.fingerprint).is_some() {
                    AlertOutcome::Resolved
                } else {
                    AlertOutcome::Stale
                }
            }
        }
    }

    pub fn is_firing(&self, fingerprint: &str) -> bool {
        self.firing.contains_key(fingerprint)
    }

    /// Distinct firings seen (a re-fire after resolve counts again).
    pub fn fired(&self) -> u64 {
        self.fired
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn alert(name: &str, status: AlertStatus) -> Alert {
        let labels = BTreeMap::from([("alertname".to_string(), name.to_string())]);
        let mut a = Alert::firing(labels, BTreeMap::new(), 0);
        a.status = status;
        a
    }

    #[test]
    fn repeats_count_once_and_refire_counts_again() {
        let mut d = AlertDeduper::new();
        assert_eq!(
            d.observe(&alert("A", AlertStatus::Firing)),
            AlertOutcome::Fired
        );
        assert_eq!(
            d.observe(&alert("A", AlertStatus::Firing)),
            AlertOutcome::Duplicate
        );
        assert_eq!(
            d.observe(&alert("B", AlertStatus::Firing)),
            AlertOutcome::Fired
        );
        assert_eq!(
            d.observe(&alert("A", AlertStatus::Resolved)),
            AlertOutcome::Resolved
        );
        assert_eq!(
            d.observe(&alert("A", AlertStatus::Resolved)),
            AlertOutcome::Stale
        );
        assert_eq!(
            d.observe(&alert("A", AlertStatus::Firing)),
            AlertOutcome::Fired
        );
        assert_eq!((d.fired(), d.duplicates()), (3, 1));
    }
}
