//! Alert dedup, incident grouping, change linking and SLO burn over the topology.
//!
//! Pure: no I/O, no async. The pipeline feeds a [`Correlator`] with signals in time order and
//! calls [`Correlator::advance`] once per evaluation step. Which hypotheses lead an incident is
//! the diagnosis' call ([`Ranker`], implemented by `nightshift-diagnose`): the correlator asks it
//! whenever an incident changes, and attaches new signals by what it answers.

pub mod dedup;
pub mod grouping;
pub mod slo;

pub use dedup::{AlertDeduper, AlertOutcome};
pub use grouping::{Correlator, CorrelatorConfig, IncidentUpdate, LifecycleError};
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
