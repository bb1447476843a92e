#![doc = include_str!("../README.md")]

mod classify;
mod deriver;
pub mod promql;
mod rules;
#[cfg(test)]
mod tests;

pub use deriver::SignalDeriver;
pub use promql::histogram_quantile;

use nightshift_core::{Entity, Millis, SeriesKey, SignalClass};
use serde::{Deserialize, Serialize};

/// One point of a derived series: the detector input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The derived series, e.g. `service:http_requests:rate1m{service="checkout"}`.
    pub key: SeriesKey,
    pub entity: Entity,
    pub class: SignalClass,
    pub ts: Millis,
    pub value: f64,
    /// Pasteable PromQL (LogQL for the log signal) computing this series for this entity.
    pub promql: String,
}
