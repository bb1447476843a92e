//! The storage contract: what every stage records and what the API, UI, CLI and MCP read back.

use crate::{AlertFilter, AnomalyFilter, ChangeFilter, IncidentFilter, Page, StoreError};
use async_trait::async_trait;
use nightshift_core::{Alert, Anomaly, Change, Incident, Millis};

/// Durable state shared by the pipeline and its readers.
///
/// Object-safe, so the binary can hold an `Arc<dyn Store>` and pick the backend from config.
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts or replaces an incident by id, including all of its hypotheses, evidence and
    /// timeline: what was stored before for this incident is gone afterwards. Atomic.
    async fn upsert_incident(&self, incident: &Incident) -> Result<(), StoreError>;

    /// The incident with this id, if any.
    async fn incident(&self, id: &str) -> Result<Option<Incident>, StoreError>;

    /// A page of the incidents matching the filter, newest `opened_at` first.
    async fn incidents(&self, filter: &IncidentFilter) -> Result<Page<Incident>, StoreError>;

    /// Records one firing of an alert, keyed by `(fingerprint, starts_at)`. Seeing the same firing
    /// again updates its status, end and annotations; once resolved, a late `firing` copy of the
    /// same firing does not reopen it. A new firing (new `starts_at`) is a new row.
    async fn record_alert(&self, alert: &Alert) -> Result<(), StoreError>;

    /// A page of the alert firings matching the filter, newest `starts_at` first.
    async fn alerts(&self, filter: &AlertFilter) -> Result<Page<Alert>, StoreError>;

    /// Appends anomalies; all or none are stored.
    async fn record_anomalies(&self, anomalies: &[Anomaly]) -> Result<(), StoreError>;

    /// A page of the anomalies matching the filter, newest first (ties: last recorded first).
    async fn anomalies(&self, filter: &AnomalyFilter) -> Result<Page<Anomaly>, StoreError>;

    /// Records a change; recording the same id again replaces it rather than duplicating it.
    async fn record_change(&self, change: &Change) -> Result<(), StoreError>;

    /// A page of the changes matching the filter, newest first.
    async fn changes(&self, filter: &ChangeFilter) -> Result<Page<Change>, StoreError>;

    /// Keeps a remediation action, a JSON document (the act crate's `Action`) with its id,
    /// incident, state and time of last change; keeping the same id again replaces it.
    async fn upsert_action(&self, action: &StoredAction) -> Result<(), StoreError>;

    /// Actions, oldest first; only those of `incident` when given.
    async fn actions(&self, incident: Option<&str>) -> Result<Vec<StoredAction>, StoreError>;

    /// Tokens the LLM investigator spent on UTC day `day` (days since the epoch), 0 when none
    /// were recorded.
    async fn llm_tokens(&self, day: i64) -> Result<u64, StoreError>;

    /// Records the tokens spent on `day` so far; a lower count than the one recorded (a write
    /// that arrived late) leaves it as it is.
    async fn record_llm_tokens(&self, day: i64, tokens: u64) -> Result<(), StoreError>;
}

/// A remediation action as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAction {
    pub id: String,
    pub incident: String,
    pub state: String,
    pub updated_at: Millis,
    pub document: serde_json::Value,
}

/// Writes what one run saw and found: incidents, the alerts and changes it was given, and the
/// anomalies it detected. A replay and the recorded-incident evaluations keep their results so.
pub async fn record_findings(
    store: &dyn Store,
    incidents: &[Incident],
    alerts: &[Alert],
    changes: &[Change],
    anomalies: &[Anomaly],
) -> Result<(), StoreError> {
    for i in incidents {
        store.upsert_incident(i).await?;
    }
    for a in alerts {
        store.record_alert(a).await?;
    }
    for c in changes {
        store.record_change(c).await?;
    }
    store.record_anomalies(anomalies).await
}
