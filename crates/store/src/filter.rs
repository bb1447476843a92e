//! Filters for the list queries. Every `since` bound is inclusive and applies to the column the
//! results are ordered by, so a page of results is always a contiguous slice of time. `after`
//! is the `next` cursor of the page before (see [`Page`](crate::Page)); `limit` is the page's
//! size.

use crate::Cursor;
use nightshift_core::{AlertStatus, IncidentStatus, Millis};

/// Which incidents [`Store::incidents`](crate::Store::incidents) returns, newest `opened_at` first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IncidentFilter {
    pub status: Option<IncidentStatus>,
    /// Only incidents opened at or after this time.
    pub since: Option<Millis>,
    pub limit: Option<u32>,
    pub after: Option<Cursor>,
}

/// Which alerts [`Store::alerts`](crate::Store::alerts) returns, newest `starts_at` first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    /// Only firings that started at or after this time.
    pub since: Option<Millis>,
    /// Only the firings of the alert with this fingerprint.
    pub fingerprint: Option<String>,
    pub limit: Option<u32>,
    pub after: Option<Cursor>,
}

/// Which anomalies [`Store::anomalies`](crate::Store::anomalies) returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnomalyFilter {
    /// Only anomalies on the entity with this name (a service or node name, e.g. `checkout`).
    pub entity: Option<String>,
    /// Only anomalies at or after this time.
    pub since: Option<Millis>,
    pub limit: Option<u32>,
    pub after: Option<Cursor>,
}

/// Which changes [`Store::changes`](crate::Store::changes) returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFilter {
    /// Only changes at or after this time.
    pub since: Option<Millis>,
    pub limit: Option<u32>,
    pub after: Option<Cursor>,
}
