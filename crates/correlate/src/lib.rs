//! Alert dedup, incident grouping, change linking and root-cause ranking over the topology.
//!
//! Pure: no I/O, no async. The pipeline feeds a [`Correlator`] with signals in time order and
//! calls [`Correlator::advance`] once per evaluation step.

pub mod baseline;
pub mod dedup;
pub mod grouping;
pub mod rank;
pub mod recorded;
pub mod slo;

pub use dedup::{AlertDeduper, AlertOutcome};
pub use grouping::{Correlator, CorrelatorConfig, IncidentUpdate, LifecycleError};
pub use nightshift_core::LogPattern;
pub use rank::{RankConfig, rank};
pub use slo::SloTracker;
