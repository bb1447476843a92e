//! Alerts as Alertmanager sees them: labels, annotations, state and a fingerprint.

use crate::{Millis, fnv1a};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// An alert instance, identified by the fingerprint of its labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub status: AlertStatus,
    pub starts_at: Millis,
    pub ends_at: Option<Millis>,
    /// The authenticated identity the alert came in with (a token's or user's name); `None`
    /// when it came unauthenticated. What decides whether it may start an automatic action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Alert {
    /// A firing alert with the fingerprint computed from its labels.
    pub fn firing(
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        starts_at: Millis,
    ) -> Self {
        Self {
            fingerprint: fingerprint(&labels),
            labels,
            annotations,
            status: AlertStatus::Firing,
            starts_at,
            ends_at: None,
            source: None,
        }
    }

    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// The entity the alert is about: the `service` label, else `job`, else `node`.
    pub fn entity(&self) -> Option<crate::Entity> {
        crate::Resource::from_prometheus_labels(
            self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .entity()
    }
}

/// A stable fingerprint of an alert's label set (16 hex digits, like Alertmanager's).
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut buf = Vec::with_capacity(128);
    for (k, v) in labels {
        buf.extend_from_slice(k.as_bytes());
        buf.push(0xff);
        buf.extend_from_slice(v.as_bytes());
        buf.push(0xff);
    }
    format!("{:016x}", fnv1a(&buf))
}
