//! Values outside everything the series has shown: a new all-time high or low.

use crate::detector::{Sanitise, check_point};
use crate::window::fmt_num;
use crate::{AlarmDirection, Band, DetectError, Detector, Score};
use nightshift_core::{Millis, format_duration};
use serde::{Deserialize, Serialize};

/// Tuning of [`RangeBreachDetector`]. The defaults need no per-metric adjustment: the margin is
/// a share of the range the series itself has covered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RangeBreachConfig {
    /// A value breaches when it lies beyond the lowest or highest value seen by more than this
    /// share of the range seen (the 5 % "spatial tolerance" of Numenta's NAB detector).
    pub tolerance: f64,
    /// Which way of leaving the range counts.
    pub alarm: AlarmDirection,
    /// History needed before a breach is reported, both in points and in time: a series that
    /// has not yet been through a day has not yet shown its daily high and low.
    pub warmup_points: u32,
    pub warmup: Millis,
}

impl Default for RangeBreachConfig {
    fn default() -> Self {
        Self {
            tolerance: 0.05,
            alarm: AlarmDirection::Both,
            warmup_points: 30,
            warmup: 24 * 60 * 60_000,
        }
    }
}

impl Sanitise for RangeBreachConfig {
    fn sanitised(self) -> Self {
        Self {
            tolerance: if self.tolerance.is_finite() && self.tolerance >= 0.0 {
                self.tolerance
            } else {
                Self::default().tolerance
            },
            alarm: self.alarm,
            warmup_points: self.warmup_points.max(2),
            warmup: self.warmup.max(0),
        }
    }
}

/// What the last point did to the range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Reading {
    value: f64,
    /// The range before the point.
    low: f64,
    high: f64,
    /// How far beyond the range, as a share of it (0 inside it).
    excess: f64,
    breach: bool,
    warming_up: bool,
}

/// Flags a value beyond the lowest or highest the series has ever shown, by more than a share
/// of the range it has covered: a record high or low.
///
/// * **Method**: the "spatial anomaly" rule Numenta added to its detector for the Numenta
///   Anomaly Benchmark (Lavin & Ahmad, *Evaluating Real-time Anomaly Detection Algorithms — the
///   Numenta Anomaly Benchmark*, 2015; `nab/detectors/numenta/numenta_detector.py`, spatial
///   tolerance 5 %): a value more than [`tolerance`](RangeBreachConfig::tolerance) × (max − min)
///   above the maximum or below the minimum seen is anomalous whatever any model predicts.
///   Statistical members judge a value against a spread learned from the recent past, and a
///   spiky or drifting series teaches them a wide one; a record is a record however noisy the
///   series is.
/// * **Score**: 1 at a breach, 0 otherwise; the range then widens to include the value, so a
///   plateau at a new level breaches once.
/// * **Band**: the range seen, widened by the tolerance; expected is its middle.
/// * **Warm-up**: nothing is reported before [`warmup_points`](RangeBreachConfig::warmup_points)
///   points and [`warmup`](RangeBreachConfig::warmup) of history (a day by default).
/// * **Cost**: two comparisons per point; 120 bytes of state.
///
/// A series that keeps growing (a counter, a filling disk) breaches every time it gains another
/// 5 % of its range; the ensemble discounts a member by how often it flags a series, and the
/// trend detector is the one that speaks for growth.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RangeBreachDetector {
    #[serde(deserialize_with = "crate::detector::sanitised")]
    cfg: RangeBreachConfig,
    first_ts: Option<Millis>,
    last_ts: Option<Millis>,
    points: u64,
    low: f64,
    high: f64,
    last: Reading,
}

impl Default for RangeBreachDetector {
    fn default() -> Self {
        Self::new(RangeBreachConfig::default())
    }
}

impl RangeBreachDetector {
    /// Name reported in explanations and evidence.
    pub const NAME: &'static str = "range_breach";

    pub fn new(cfg: RangeBreachConfig) -> Self {
        Self {
            cfg: cfg.sanitised(),
            first_ts: None,
            last_ts: None,
            points: 0,
            low: f64::INFINITY,
            high: f64::NEG_INFINITY,
            last: Reading::default(),
        }
    }

    pub fn config(&self) -> &RangeBreachConfig {
        &self.cfg
    }

    /// The lowest and highest values seen, once there is a point.
    pub fn range(&self) -> Option<(f64, f64)> {
        (self.points > 0).then_some((self.low, self.high))
    }

    fn band(&self) -> Option<Band> {
        let (low, high) = self.range()?;
        let margin = self.cfg.tolerance * (high - low);
        Some(Band {
            expected: low + (high - low) / 2.0,
            lower: low - margin,
            upper: high + margin,
        })
    }
}

impl Detector for RangeBreachDetector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        check_point(self.last_ts, ts, value)?;
        let first = *self.first_ts.get_or_insert(ts);
        self.last_ts = Some(ts);
        let band = self.band();
        let range = self.high - self.low;
        let above = value - self.high;
        let below = self.low - value;
        let beyond = match self.cfg.alarm {
            AlarmDirection::Up => above,
            AlarmDirection::Down => below,
            AlarmDirection::Both => above.max(below),
        };
        let excess = if self.points == 0 || beyond <= 0.0 {
            0.0
        } else if range > 0.0 {
            beyond / range
        } else {
            f64::INFINITY
        };
        let warming_up =
            self.points < u64::from(self.cfg.warmup_points) || ts - first < self.cfg.warmup;
        let breach = !warming_up && excess > self.cfg.tolerance;
        self.last = Reading {
            value,
            low: self.low,
            high: self.high,
            excess,
            breach,
            warming_up,
        };
        self.low = self.low.min(value);
        self.high = self.high.max(value);
        self.points += 1;
        Ok(Score {
            score: if breach { 1.0 } else { 0.0 },
            band,
        })
    }

    fn explain(&self) -> String {
        let r = self.last;
        if self.points == 0 {
            return "no points yet".into();
        }
        let seen = match (self.first_ts, self.last_ts) {
            (Some(a), Some(b)) => format_duration(b - a),
            _ => "0s".into(),
        };
        if r.warming_up {
            return format!(
                "learning the range ({} points over {seen} so far)",
                self.points
            );
        }
        let side = if r.value > r.high {
            "above the highest"
        } else {
            "below the lowest"
        };
        let edge = if r.value > r.high { r.high } else { r.low };
        if r.excess > 0.0 {
            let share = if r.excess.is_finite() {
                format!(
                    "{:.0}% of the range {}..{}",
                    100.0 * r.excess,
                    fmt_num(r.low),
                    fmt_num(r.high)
                )
            } else {
                "a series that never moved before".into()
            };
            let verdict = if r.breach {
                "a new record"
            } else {
                "within the tolerance"
            };
            format!(
                "{} is {side} value in {seen} ({}) by {share}: {verdict}",
                fmt_num(r.value),
                fmt_num(edge)
            )
        } else {
            format!(
                "{} is inside the range {}..{} seen in {seen}",
                fmt_num(r.value),
                fmt_num(r.low),
                fmt_num(r.high)
            )
        }
    }

    fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{DAY_POINTS, Noise, STEP, T0, noisy, run};

    /// Indices (from `start`) of the points that breached.
    fn breaches(d: &mut RangeBreachDetector, start: usize, values: &[f64]) -> Vec<usize> {
        let scores = run(d, start, values);
        (0..scores.len())
            .filter(|&i| scores[i] > 0.0)
            .map(|i| start + i)
            .collect()
    }

    #[test]
    fn a_record_high_breaches_once_and_widens_the_range() {
        let mut noise = Noise::new(11);
        let mut d = RangeBreachDetector::default();
        let day = noisy(DAY_POINTS, 100.0, 1.0, &mut noise);
        assert!(
            breaches(&mut d, 0, &day).is_empty(),
            "the warm-up day is silent"
        );
        let n = day.len();
        let (low, high) = d.range().expect("points seen");
        // Inside the range, and just past it but within the 5 % tolerance: nothing.
        assert!(breaches(&mut d, n, &[100.0, high + 0.04 * (high - low)]).is_empty());
        let spike = high + 0.5 * (high - low);
        assert_eq!(breaches(&mut d, n + 2, &[spike]), vec![n + 2]);
        assert!(d.explain().contains("new record"), "{}", d.explain());
        assert!(
            breaches(&mut d, n + 3, &[spike]).is_empty(),
            "the range now holds it"
        );
    }

    #[test]
    fn nothing_breaches_while_warming_up_or_in_the_harmless_direction() {
        let mut d = RangeBreachDetector::new(RangeBreachConfig {
            alarm: AlarmDirection::Up,
            ..RangeBreachConfig::default()
        });
        // A rising series sets a record at every point; none counts in its first day.
        let rising: Vec<f64> = (0..DAY_POINTS + 100).map(|i| i as f64).collect();
        let flagged = breaches(&mut d, 0, &rising);
        assert!(
            flagged.iter().all(|&i| i >= DAY_POINTS),
            "{:?}",
            &flagged[..3]
        );
        let n = rising.len();
        assert!(
            breaches(&mut d, n, &[-1e6]).is_empty(),
            "drops are harmless here"
        );
        assert_eq!(breaches(&mut d, n + 1, &[1e6]), vec![n + 1]);
    }

    #[test]
    fn state_round_trips_and_refuses_bad_points() {
        let mut noise = Noise::new(5);
        let mut d = RangeBreachDetector::default();
        run(&mut d, 0, &noisy(DAY_POINTS, 10.0, 1.0, &mut noise));
        assert!(matches!(
            d.update(T0, 1.0),
            Err(DetectError::OutOfOrder { .. })
        ));
        let later = T0 + 10 * DAY_POINTS as Millis * STEP;
        assert!(matches!(
            d.update(later, f64::INFINITY),
            Err(DetectError::NonFinite(_))
        ));
        let json = serde_json::to_string(&d).expect("serialises");
        let mut back: RangeBreachDetector = serde_json::from_str(&json).expect("restores");
        assert_eq!(d.update(later, 50.0).ok(), back.update(later, 50.0).ok());
        assert_eq!(d.explain(), back.explain());
        assert!(d.state_bytes() <= 128, "{}", d.state_bytes());
    }
}
