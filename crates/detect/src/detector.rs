//! The streaming detector interface every per-series detector implements, so the ensemble,
//! the NAB harness and `nightshift detect` can drive any of them the same way.

use crate::DetectError;
use crate::error::MAX_MAGNITUDE;
use nightshift_core::Millis;
use serde::{Deserialize, Serialize};

/// Which deviations are harmful for a series. Harmless ones are scored 0 and never become
/// events: a recovering error ratio or an idle service must not page anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmDirection {
    /// Only rises are bad (errors, latency, saturation, restarts, log errors).
    Up,
    /// Only drops are bad (availability, available-capacity ratios).
    Down,
    /// Both ways (traffic).
    Both,
}

impl AlarmDirection {
    /// The z-score's magnitude in the harmful direction, 0 in the harmless one.
    pub(crate) fn harm(self, z: f64) -> f64 {
        match self {
            AlarmDirection::Up => z.max(0.0),
            AlarmDirection::Down => (-z).max(0.0),
            AlarmDirection::Both => z.abs(),
        }
    }
}

/// The range a detector expected a point in, for charts and evidence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
}

/// What one detector says about one point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// How anomalous the point is, in [0, 1]; 0 while warming up.
    pub score: f64,
    /// The expected value and band, when the detector models one.
    pub band: Option<Band>,
}

impl Score {
    pub const ZERO: Score = Score {
        score: 0.0,
        band: None,
    };
}

/// A per-series streaming detector: one `update` per point, in time order, bounded memory,
/// state that serialises (checkpoint and restore with serde) and an explanation of its last
/// score.
pub trait Detector {
    /// Short name for explanations and evidence, e.g. `level_shift`.
    fn name(&self) -> &'static str;

    /// Scores one point. Errors on non-finite values and on timestamps that do not advance;
    /// the state is unchanged then.
    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError>;

    /// Why the last score is what it is, in one line a person reads
    /// (e.g. "level shifted from 12.1 to 18.4, 6.2× the IQR of the last 20 points").
    fn explain(&self) -> String;

    /// Forgets everything learned and starts over with the same configuration, as a new
    /// detector would (after a series' normal has changed for good, say).
    fn reset(&mut self);

    /// Bytes of state held (struct plus heap), for the memory budget per series.
    fn state_bytes(&self) -> usize;
}

/// The check every value gets before a detector touches its state: finite, and within
/// ±[`MAX_MAGNITUDE`].
pub(crate) fn check_value(value: f64) -> Result<(), DetectError> {
    if !value.is_finite() {
        return Err(DetectError::NonFinite(value));
    }
    if value.abs() > MAX_MAGNITUDE {
        return Err(DetectError::OutOfRange(value));
    }
    Ok(())
}

/// The input check every detector makes before touching its state: a value [`check_value`]
/// accepts, and a time after the last point accepted.
pub(crate) fn check_point(last: Option<Millis>, ts: Millis, value: f64) -> Result<(), DetectError> {
    check_value(value)?;
    match last {
        Some(last) if ts <= last => Err(DetectError::OutOfOrder { ts, last }),
        _ => Ok(()),
    }
}

/// A detector configuration whose fields are clamped to their valid ranges.
pub(crate) trait Sanitise {
    fn sanitised(self) -> Self;
}

/// Deserialises a configuration through [`Sanitise`], so a checkpoint's configuration goes
/// through the same clamping as the detector's constructor
/// (`#[serde(deserialize_with = "crate::detector::sanitised")]`).
pub(crate) fn sanitised<'de, D, C>(d: D) -> Result<C, D::Error>
where
    D: serde::Deserializer<'de>,
    C: Deserialize<'de> + Sanitise,
{
    C::deserialize(d).map(Sanitise::sanitised)
}
