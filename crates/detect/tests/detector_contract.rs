//! The contract every streaming detector keeps, written once and run over all of them: scores
//! in [0, 1] whatever the input, bad points refused without a trace, gaps, constant and huge
//! values taken in stride, a reset that starts over and a checkpoint that restores.

use nightshift_core::{Millis, SplitMix64};
use nightshift_detect::{
    DetectError, Detector, Ensemble, ForecastBandConfig, ForecastBandDetector,
    IsolationForestConfig, IsolationForestDetector, LevelShiftDetector, MAX_MAGNITUDE,
    MultivariateDetector, PersistDetector, RangeBreachDetector, RobustBaselineDetector, Score,
    SeasonalDetector, TrendDetector, VolatilityShiftDetector,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

const STEP: Millis = 60_000;
const T0: Millis = 1_700_000_000_000;
const DAY: usize = 24 * 60;

/// Gaussian noise from the project's generator.
fn gaussian(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.uniform().max(f64::MIN_POSITIVE);
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Three days of a noisy daily curve at one-minute steps with what detectors are for on the
/// third: a spike, a level shift, a burst of noise and a ramp, then a six-hour gap.
fn stream(seed: u64) -> Vec<(Millis, f64)> {
    let mut rng = SplitMix64::seeded(seed);
    let mut points = Vec::with_capacity(3 * DAY);
    for i in 0..3 * DAY {
        let t = i as f64 / DAY as f64;
        let mut v = 200.0 * (1.0 + 0.3 * (std::f64::consts::TAU * t).sin());
        v += 4.0 * gaussian(&mut rng);
        match i - i.min(2 * DAY) {
            100 => v *= 4.0,
            300..=500 => v += 150.0,
            700..=760 => v += 60.0 * gaussian(&mut rng),
            900..=1100 => v += (i - 2 * DAY - 900) as f64,
            _ => {}
        }
        let gap = if i >= 2 * DAY + 1200 { 360 } else { 0 };
        points.push((T0 + (i + gap) as Millis * STEP, v));
    }
    points
}

/// Feeds every point, checking each score; returns the scores.
fn feed<D: Detector>(d: &mut D, points: &[(Millis, f64)]) -> Vec<Score> {
    points
        .iter()
        .map(|(ts, v)| {
            let s = d
                .update(*ts, *v)
                .unwrap_or_else(|e| panic!("{}: a valid point at {ts} was refused: {e}", d.name()));
            check_score(d.name(), &s, *ts);
            s
        })
        .collect()
}

fn check_score(name: &str, s: &Score, ts: Millis) {
    assert!(
        s.score.is_finite() && (0.0..=1.0).contains(&s.score),
        "{name}: score {} at {ts} is outside [0, 1]",
        s.score
    );
    if let Some(b) = s.band {
        assert!(
            !(b.expected.is_nan() || b.lower.is_nan() || b.upper.is_nan()) && b.lower <= b.upper,
            "{name}: band {b:?} at {ts} is not a range"
        );
    }
}

fn checkpoint<D: Serialize + DeserializeOwned>(d: &D) -> D {
    serde_json::from_str(&serde_json::to_string(d).expect("state serialises"))
        .expect("state restores")
}

fn scores_are_in_the_unit_interval<D: Detector>(mut d: D) {
    let scores = feed(&mut d, &stream(1));
    assert!(!d.explain().is_empty(), "{}: no explanation", d.name());
    assert!(
        scores.iter().any(|s| s.score > 0.0),
        "{}: three days with a spike, a shift and a ramp scored nothing",
        d.name()
    );
}

fn bad_points_are_refused_without_a_trace<D: Detector + Clone>(mut d: D) {
    let points = stream(2);
    let (before, after) = points.split_at(2 * DAY + 50);
    feed(&mut d, before);
    let mut twin = d.clone();
    let (last, _) = before[before.len() - 1];
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(
            matches!(d.update(last + STEP, bad), Err(DetectError::NonFinite(_))),
            "{}: {bad} was not refused",
            d.name()
        );
    }
    for ts in [last, last - STEP, Millis::MIN] {
        assert!(
            matches!(d.update(ts, 1.0), Err(DetectError::OutOfOrder { .. })),
            "{}: a point at {ts}, not after {last}, was not refused",
            d.name()
        );
    }
    let a = feed(&mut d, after);
    let b = feed(&mut twin, after);
    assert_eq!(a, b, "{}: a refused point changed the state", d.name());
}

fn constant_input_is_not_an_anomaly<D: Detector>(mut d: D) {
    for level in [0.0, 1.0, 12_345.678] {
        d.reset();
        let points: Vec<_> = (0..2 * DAY)
            .map(|i| (T0 + i as Millis * STEP, level))
            .collect();
        let scores = feed(&mut d, &points);
        let top = scores.iter().map(|s| s.score).fold(0.0, f64::max);
        assert!(top < 0.5, "{}: a constant {level} scored {top}", d.name());
    }
}

fn huge_and_tiny_values_keep_scores_finite<D: Detector + Clone>(mut d: D) {
    let shapes: [fn(usize) -> f64; 4] = [
        |i| 1e99 * (1.0 + 0.01 * (i % 7) as f64),
        |i| {
            if i % 2 == 0 {
                MAX_MAGNITUDE
            } else {
                -MAX_MAGNITUDE
            }
        },
        |i| 1e-300 * (i % 5) as f64,
        |i| {
            if i == 500 {
                MAX_MAGNITUDE
            } else {
                (i % 3) as f64
            }
        },
    ];
    for shape in shapes {
        d.reset();
        let points: Vec<_> = (0..DAY)
            .map(|i| (T0 + i as Millis * STEP, shape(i)))
            .collect();
        feed(&mut d, &points);
        d.explain();
    }
    // Beyond the bound a value is refused, leaving the state as it was.
    let mut twin = d.clone();
    let next = T0 + DAY as Millis * STEP;
    for beyond in [MAX_MAGNITUDE * 1.01, -f64::MAX, f64::MAX] {
        assert!(
            matches!(d.update(next, beyond), Err(DetectError::OutOfRange(_))),
            "{}: {beyond} was not refused",
            d.name()
        );
    }
    assert_eq!(d.update(next, 1.0), twin.update(next, 1.0));
}

fn a_reset_starts_over<D: Detector + Clone>(fresh: D) {
    let points = stream(3);
    let mut d = fresh.clone();
    feed(&mut d, &stream(4));
    d.reset();
    // A reset forgets the last time too: the next points may come from any time.
    let mut new = fresh;
    assert_eq!(
        feed(&mut d, &points),
        feed(&mut new, &points),
        "{}: a reset detector scores unlike a new one",
        d.name()
    );
}

fn a_checkpoint_restores_mid_stream<D: Detector + Serialize + DeserializeOwned>(mut d: D) {
    let points = stream(5);
    for cut in [10, DAY + 7, 2 * DAY + 320] {
        let (before, after) = points.split_at(cut);
        d.reset();
        feed(&mut d, before);
        let mut restored = checkpoint(&d);
        assert_eq!(
            feed(&mut d, after),
            feed(&mut restored, after),
            "{}: the restored state scores unlike the original after point {cut}",
            d.name()
        );
    }
}

/// One test per clause of the contract for each detector.
macro_rules! contract {
    ($($name:ident => $make:expr;)+) => {$(
        mod $name {
            use super::*;

            #[test]
            fn scores_are_in_the_unit_interval() {
                super::scores_are_in_the_unit_interval($make);
            }

            #[test]
            fn bad_points_are_refused_without_a_trace() {
                super::bad_points_are_refused_without_a_trace($make);
            }

            #[test]
            fn constant_input_is_not_an_anomaly() {
                super::constant_input_is_not_an_anomaly($make);
            }

            #[test]
            fn huge_and_tiny_values_keep_scores_finite() {
                super::huge_and_tiny_values_keep_scores_finite($make);
            }

            #[test]
            fn a_reset_starts_over() {
                super::a_reset_starts_over($make);
            }

            #[test]
            fn a_checkpoint_restores_mid_stream() {
                super::a_checkpoint_restores_mid_stream($make);
            }
        }
    )+};
}

contract! {
    robust_baseline => RobustBaselineDetector::default();
    seasonal => SeasonalDetector::default();
    level_shift => LevelShiftDetector::default();
    volatility_shift => VolatilityShiftDetector::default();
    persist => PersistDetector::default();
    trend => TrendDetector::default().with_limit(1e6);
    forecast_band => ForecastBandDetector::default();
    forecast_band_seasonal =>
        ForecastBandDetector::new(ForecastBandConfig::default(), Some(60)).expect("valid season");
    range_breach => RangeBreachDetector::default();
    ensemble => Ensemble::default();
}

/// The isolation forest takes vectors; the same clauses hold for it.
mod isolation_forest {
    use super::*;

    fn forest() -> IsolationForestDetector {
        IsolationForestDetector::new(3, IsolationForestConfig::default()).expect("3 dimensions")
    }

    fn vectors(seed: u64) -> Vec<(Millis, [f64; 3])> {
        stream(seed)
            .into_iter()
            .map(|(ts, v)| (ts, [v, 0.5 * v + 3.0, (ts / STEP % 17) as f64]))
            .collect()
    }

    fn feed(d: &mut IsolationForestDetector, points: &[(Millis, [f64; 3])]) -> Vec<Score> {
        points
            .iter()
            .map(|(ts, v)| {
                let s = d.update(*ts, v).expect("valid vector");
                check_score(d.name(), &s, *ts);
                s
            })
            .collect()
    }

    #[test]
    fn scores_are_in_the_unit_interval_whatever_the_values() {
        let mut d = forest();
        assert!(feed(&mut d, &vectors(1)).iter().any(|s| s.score > 0.0));
        let mut d = forest();
        let huge: Vec<_> = (0..DAY)
            .map(|i| {
                let x = if i % 2 == 0 {
                    MAX_MAGNITUDE
                } else {
                    -MAX_MAGNITUDE
                };
                (T0 + i as Millis * STEP, [x, 1e99, 1e-300])
            })
            .collect();
        feed(&mut d, &huge);
        let constant: Vec<_> = (0..DAY)
            .map(|i| (T0 + i as Millis * STEP, [5.0, 5.0, 5.0]))
            .collect();
        let mut d = forest();
        let top = feed(&mut d, &constant)
            .iter()
            .map(|s| s.score)
            .fold(0.0, f64::max);
        assert!(top < 0.5, "a constant vector scored {top}");
    }

    #[test]
    fn bad_vectors_are_refused_without_a_trace() {
        let points = vectors(2);
        let (before, after) = points.split_at(DAY);
        let mut d = forest();
        feed(&mut d, before);
        let mut twin = d.clone();
        let (last, _) = before[before.len() - 1];
        assert!(d.update(last + STEP, &[1.0, f64::NAN, 2.0]).is_err());
        assert!(
            d.update(last + STEP, &[1.0, 2.0]).is_err(),
            "a short vector"
        );
        assert!(d.update(last, &[1.0, 2.0, 3.0]).is_err(), "a repeated time");
        assert_eq!(feed(&mut d, after), feed(&mut twin, after));
    }

    #[test]
    fn a_checkpoint_restores_mid_stream() {
        let points = vectors(5);
        let (before, after) = points.split_at(DAY + 7);
        let mut d = forest();
        feed(&mut d, before);
        let mut restored = checkpoint(&d);
        assert_eq!(feed(&mut d, after), feed(&mut restored, after));
    }
}
