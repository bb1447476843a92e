//! A series' sampling step, derived from its timestamps: what the seasonal baseline needs to
//! size its profile and the forecast band to count missing points.

use nightshift_core::Millis;
use serde::{Deserialize, Serialize};

/// Weight of each regular interval once a few have been seen (the first ones average evenly).
const STEP_WEIGHT: f64 = 0.05;

/// The step in milliseconds: the first interval, then an average of regular intervals.
/// Serialised as the two fields `step` and `intervals` of the detector that holds it
/// (`#[serde(flatten)]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SamplingStep {
    /// 0 until the first interval.
    step: f64,
    intervals: u32,
}

impl SamplingStep {
    /// Learns one interval; one longer than `gap_steps` steps is a gap and does not refine the
    /// estimate.
    pub(crate) fn learn(&mut self, dt: Millis, gap_steps: f64) {
        let dt = dt as f64;
        if self.intervals == 0 {
            self.step = dt;
        } else if dt <= gap_steps * self.step {
            let w = (1.0 / f64::from(self.intervals + 1)).max(STEP_WEIGHT);
            self.step += w * (dt - self.step);
        }
        self.intervals = self.intervals.saturating_add(1);
    }

    /// The step in ms; 0 before the first interval.
    pub(crate) fn ms(&self) -> f64 {
        self.step
    }

    /// Whether an interval has been seen.
    pub(crate) fn known(&self) -> bool {
        self.intervals > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_intervals_average_and_gaps_do_not_count() {
        let mut s = SamplingStep::default();
        assert!(!s.known());
        s.learn(15_000, 3.0);
        assert_eq!(s.ms(), 15_000.0);
        s.learn(16_000, 3.0);
        assert_eq!(s.ms(), 15_500.0);
        s.learn(600_000, 3.0);
        assert_eq!(s.ms(), 15_500.0, "a gap leaves the step as it was");
    }
}
