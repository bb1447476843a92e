#![doc = include_str!("../README.md")]

pub mod dedup;
pub mod grouping;
pub mod slo;

pub use dedup::{AlertDeduper, AlertOutcome};
pub use grouping::{ConfigError, Correlator, CorrelatorConfig, IncidentUpdate, LifecycleError};
pub use nightshift_core::LogPattern;
pub use slo::SloTracker;

use nightshift_core::{Change, Entity, EntityFacts, Hypothesis, Millis, Topology};
use std::collections::BTreeMap;

/// Ranks root-cause hypotheses over what one incident knows per entity.
pub trait Ranker: std::fmt::Debug + Send + Sync {
    /// The hypotheses, most likely first, for an incident opened at `opened_at` with the
    /// `changes` linked to it.
    fn rank(
        &self,
        facts: &BTreeMap<Entity, EntityFacts>,
        topology: &Topology,
        changes: &[Change],
        opened_at: Millis,
    ) -> Vec<Hypothesis>;

    /// How long before an incident a change may be and still be linked to it as a suspect.
    fn change_lookback(&self) -> Millis;
}
