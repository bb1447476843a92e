//! How unusual a series' recent level of surprise is, given the surprise it usually shows: the
//! calibration that turns raw detector scores into one score comparable across series.

use serde::{Deserialize, Serialize};

/// Points in the short average of raw scores (Numenta's 10).
pub const SHORT_WINDOW: usize = 10;
/// Memory, in points, of the long-run mean and variance of the short average: about two weeks
/// at a 5-minute step, a few hours at 15 s.
pub const MEMORY: f64 = 4000.0;
/// Points learned before a likelihood is given.
pub const WARMUP_POINTS: u64 = 100;
/// Smallest spread assumed for the short average, so a series that has never surprised (raw
/// scores all 0) does not make the first small surprise infinitely unlikely.
const MIN_SPREAD: f64 = 0.05;
/// Tail probabilities are floored here; 10⁻¹⁰ maps to a score of 1.
const MIN_TAIL: f64 = 1e-10;

/// The anomaly likelihood of Ahmad, Lavin, Purdy & Agha (*Unsupervised real-time anomaly
/// detection for streaming data*, Neurocomputing 262, 2017, §3.3): the raw scores of the last
/// [`SHORT_WINDOW`] points are averaged, and that average is compared with the distribution of
/// such averages over the series' past, modelled as a normal with exponentially weighted mean
/// and variance ([`MEMORY`] points). The tail probability q of the current average is reported
/// on Numenta's log scale, `ln(q) / ln(10⁻¹⁰)`: 0.5 at q = 10⁻⁵, 1 at q = 10⁻¹⁰.
///
/// A series whose detectors often flag (a spiky or bursty one) has a high usual average and a
/// wide spread, so one more flag there is unremarkable; on a quiet series the same flag is
/// unlikely. Each point is judged before it is learned. Constant memory: 152 bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnomalyLikelihood {
    recent: [f64; SHORT_WINDOW],
    next: usize,
    points: u64,
    mean: f64,
    variance: f64,
    last: Reading,
}

/// The last judgement, for explanations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Average raw score of the last points.
    pub average: f64,
    /// The usual average and its spread.
    pub usual: f64,
    pub spread: f64,
    /// Chance of an average at least this high.
    pub tail: f64,
    /// `ln(tail) / ln(10⁻¹⁰)`, 0 while warming up.
    pub score: f64,
}

impl Default for AnomalyLikelihood {
    fn default() -> Self {
        Self {
            recent: [0.0; SHORT_WINDOW],
            next: 0,
            points: 0,
            mean: 0.0,
            variance: 0.0,
            last: Reading::default(),
        }
    }
}

impl AnomalyLikelihood {
    /// Takes one raw score in [0, 1] and returns the likelihood score of the recent average.
    pub fn update(&mut self, raw: f64) -> f64 {
        let raw = if raw.is_finite() {
            raw.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.recent[self.next] = raw;
        self.next = (self.next + 1) % SHORT_WINDOW;
        // Slots not yet filled hold 0, so the sum is that of the points seen.
        let filled = (self.points as usize + 1).min(SHORT_WINDOW);
        let average = self.recent.iter().sum::<f64>() / filled as f64;
        let spread = self.variance.sqrt().max(MIN_SPREAD);
        let z = (average - self.mean) / spread;
        let tail = (0.5 * libm::erfc(z / std::f64::consts::SQRT_2)).max(MIN_TAIL);
        let score = if self.points >= WARMUP_POINTS {
            (tail.ln() / MIN_TAIL.ln()).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.last = Reading {
            average,
            usual: self.mean,
            spread,
            tail,
            score,
        };
        self.points += 1;
        let a = (1.0 / self.points as f64).max(1.0 / MEMORY);
        let d = average - self.mean;
        self.mean += a * d;
        self.variance = (1.0 - a) * (self.variance + a * d * d);
        score
    }

    pub fn last(&self) -> Reading {
        self.last
    }

    /// One line on the last judgement.
    pub fn explain(&self) -> String {
        let r = self.last;
        if self.points < WARMUP_POINTS {
            return format!(
                "learning the usual level of surprise ({} of {WARMUP_POINTS} points)",
                self.points
            );
        }
        format!(
            "recent surprise {:.2} against a usual {:.2} ± {:.2}: a chance of {:.1e}",
            r.average, r.usual, r.spread, r.tail
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Noise;

    #[test]
    fn a_rare_flag_is_unlikely_where_flags_are_rare_and_usual_where_they_are_common() {
        // Quiet series: raw scores near 0, then a run of strong flags.
        let mut quiet = AnomalyLikelihood::default();
        for _ in 0..2000 {
            quiet.update(0.02);
        }
        let rises: Vec<f64> = (0..3).map(|_| quiet.update(0.9)).collect();
        assert!(rises[2] > 0.5, "{rises:?} {}", quiet.explain());
        // Spiky series: a flag at one point in five, at random, is its normal.
        let mut noise = Noise::new(9);
        let mut spiky = AnomalyLikelihood::default();
        for _ in 0..2000 {
            spiky.update(if noise.uniform() < 0.2 { 0.9 } else { 0.05 });
        }
        let same: Vec<f64> = (0..3).map(|_| spiky.update(0.9)).collect();
        assert!(same[2] < rises[2] / 2.0, "{same:?} vs {rises:?}");
    }

    #[test]
    fn nothing_is_scored_while_warming_up_and_state_round_trips() {
        let mut l = AnomalyLikelihood::default();
        for _ in 0..WARMUP_POINTS {
            assert_eq!(l.update(1.0), 0.0);
        }
        assert!(l.update(f64::NAN).is_finite());
        let json = serde_json::to_string(&l).expect("serialises");
        let mut back: AnomalyLikelihood = serde_json::from_str(&json).expect("restores");
        assert_eq!(l.update(0.7), back.update(0.7));
        assert!(std::mem::size_of::<AnomalyLikelihood>() <= 192);
    }
}
