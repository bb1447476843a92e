//! Seasonal baseline with automatic period detection: finds whether a series repeats daily,
//! weekly or at another period, then scores each point against what is normal at its phase.

mod period;
mod profile;

use self::period::{Decision, History, analyse};
use self::profile::{Profile, phase_name};
use crate::detector::check_point;
use crate::sampling::SamplingStep;
use crate::window::fmt_num;
use crate::{Band, DetectError, Detector, Score};
use nightshift_core::Millis;
use serde::{Deserialize, Serialize};

const MINUTE_MS: Millis = 60_000;

const HOUR_MS: Millis = 60 * MINUTE_MS;

const DAY_MS: Millis = 24 * HOUR_MS;

const WEEK_MS: Millis = 7 * DAY_MS;

/// Bins of the warm-up history. When it fills, neighbouring bins are merged, so it spans any
/// length of history at a resolution that coarsens as it grows: 2 × 8 KiB at most, freed once
/// the period is decided.
const HISTORY_BINS: usize = 2048;

/// Upper bound on level slots per period, whatever the configuration (8 KiB of `f64`).
const MAX_SLOTS: usize = 1024;

/// Fewest level slots a period is cut into.
const MIN_SLOTS: usize = 4;

/// The spread is learned on coarser slots than the level (1/24 of the period, an hour of a
/// day): a 5-minute slot sees one point a day, far too few for a stable spread, while traffic
/// noise does change with the hour.
const SPREAD_SLOTS: usize = 24;

/// Mean |difference of consecutive points| to standard deviation of white noise: sqrt(pi) / 2.
const JUMP_TO_SIGMA: f64 = 0.886_226_925_452_758;

/// Residuals beyond this many σ are clipped (level) or winsorised (spread) when learning.
const CLIP: f64 = 3.0;

/// `calibrated_score` is 0.5 at 4 σ; the band marks that boundary.
const BAND_SIGMAS: f64 = 4.0;

/// Largest per-point weight of a spread slot: its estimate always averages about 100 points,
/// however few fall in one visit (a 40-minute cycle at 1-minute steps puts under two points in
/// each spread slot per cycle).
const SPREAD_POINT_WEIGHT: f64 = 0.02;

/// A point at or above this score starts or continues a run of surprising points.
const HIGH_SCORE: f64 = 0.5;

/// A run ends after this many consecutive points below [`HIGH_SCORE`].
const CALM_POINTS: u8 = 2;

/// A period shorter than this many sampling steps has no shape worth a profile.
const MIN_PERIOD_STEPS: f64 = 4.0;

/// Smallest lag, in history bins, the autocorrelation scan considers.
const MIN_SCAN_LAG: usize = 4;

/// Weekly is preferred to daily only when it repeats clearly better: a purely daily series
/// also repeats weekly, and a weekly profile learns each slot once a week instead of daily.
const WEEKLY_MARGIN: f64 = 0.05;

/// A scanned period that is not daily or weekly must repeat clearly better than a wall-clock
/// one to win: wall-clock periods are what operations data follows, and they are exact.
const SCANNED_MARGIN: f64 = 0.1;

/// Consecutive points further apart than this many steps are a gap, not a jump.
const GAP_STEPS: f64 = 3.0;

/// Tuning of [`SeasonalDetector`]. The defaults need no per-metric adjustment: the period,
/// the profile and the spread all come from the series itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeasonalConfig {
    /// History before the first decision. Two days, so that a daily period is seen twice.
    pub decide_after: Millis,
    /// A series without a period by then is declared not seasonal for good. Fifteen days, so
    /// that a weekly period is seen twice. Between the two the decision is retried each time
    /// the history doubles.
    pub give_up_after: Millis,
    /// Least autocorrelation at the period (after removing a linear trend) to call a series
    /// seasonal. White noise sits near 0; a daily traffic curve with 3 % noise near 0.95.
    pub min_autocorrelation: f64,
    /// Least rise of the autocorrelation at the period over its lowest value at shorter lags.
    /// A random walk has a high autocorrelation at every lag but never dips and rises again.
    pub min_prominence: f64,
    /// Bins of warm-up history (clamped to 64..=2048; two `f32` each). Fewer bins cost memory
    /// during the first days only, and resolution for cycles that are not a day or a week.
    pub history_bins: usize,
    /// Level slots per period (clamped to 4..=1024); fewer when the sampling step is coarser
    /// than period / `max_slots`, so every slot sees at least one point per period.
    pub max_slots: usize,
    /// Weight of each new period in a level slot (0.2: about five periods of memory).
    pub profile_weight: f64,
    /// Weight of each new period in a spread slot.
    pub spread_weight: f64,
    /// Time constant of the level adjustment that follows slow drift (growth, a resized
    /// workload) on top of the profile.
    pub drift_time_constant: Millis,
    /// After surprising points for this long without a break, the level they sit at becomes
    /// the new normal (a permanent step is an event once, not forever).
    pub relearn_after: Millis,
    /// Spread floor as a share of |expected|: a flat, noiseless series must not alarm on wiggles.
    pub relative_floor: f64,
    /// Absolute spread floor, for series that sit at zero.
    pub absolute_floor: f64,
}

impl Default for SeasonalConfig {
    fn default() -> Self {
        Self {
            decide_after: 2 * DAY_MS,
            give_up_after: 15 * DAY_MS,
            min_autocorrelation: 0.3,
            min_prominence: 0.2,
            history_bins: HISTORY_BINS,
            max_slots: 288,
            profile_weight: 0.2,
            spread_weight: 0.3,
            drift_time_constant: 6 * HOUR_MS,
            relearn_after: 3 * HOUR_MS,
            relative_floor: 0.005,
            absolute_floor: 1e-9,
        }
    }
}

/// What the detector has concluded about the series' seasonality.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Seasonality {
    /// Still collecting history.
    Undecided,
    /// The series repeats every `period`; `autocorrelation` is how closely (in [−1, 1]).
    Seasonal {
        period: Millis,
        autocorrelation: f64,
    },
    /// No period passed the test. `strongest_lag` and `autocorrelation` are the best
    /// candidate's. `settled` is false while the test will be retried on a longer history.
    NotSeasonal {
        strongest_lag: Millis,
        autocorrelation: f64,
        settled: bool,
    },
}

/// The last scored point, for [`SeasonalDetector::explain`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct LastPoint {
    ts: Millis,
    value: f64,
    expected: f64,
    sigma: f64,
    score: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Stage {
    /// One point seen: the bin width of the history comes from the second.
    Starting,
    Collecting(History),
    Tracking(Profile),
    /// Not seasonal for good: nothing left to learn.
    Quiet,
}

/// A streaming seasonal baseline that finds the series' period by itself, so that "500 RPS at
/// 2 PM is normal, at 2 AM it is not": a value normal for another phase of the period scores
/// high at this one.
///
/// * **Period detection** (once, on a bounded warm-up history): the sample autocorrelation
///   function of the linearly detrended history (Box & Jenkins, *Time Series Analysis:
///   Forecasting and Control*, ch. 2), evaluated at the wall-clock periods operations data
///   follows (a day and a week) and scanned over all lags for its highest peak. A period is
///   accepted when its autocorrelation reaches
///   [`min_autocorrelation`](SeasonalConfig::min_autocorrelation) and rises at least
///   [`min_prominence`](SeasonalConfig::min_prominence) above the lowest value at shorter
///   lags (the peak-after-trough rule that keeps trends and random walks out). The history is
///   at most 2048 bins that merge pairwise when full; the scan costs O(bins²) once, about a
///   millisecond, instead of a periodogram crate over raw points, which would need the whole
///   raw history (two days at 15 s are 11,520 points).
/// * **Profile**: up to [`max_slots`](SeasonalConfig::max_slots) level slots per period (each
///   averaging all points falling in it), interpolated between slot centres, plus a level
///   adjustment with time constant [`drift_time_constant`](SeasonalConfig::drift_time_constant)
///   for slow drift: additive Holt–Winters without trend (Holt 1957, Winters 1960), updated
///   per slot visit rather than per point so the step does not change the memory.
/// * **Spread**: per 1/24 of the period, a winsorised exponentially weighted mean absolute
///   residual (×√(π/2)), started from the warm-up history's residuals and point-to-point
///   jitter, with a floor of [`relative_floor`](SeasonalConfig::relative_floor) × |expected|.
/// * **Score**: robust z = |value − expected| / σ through [`calibrated_score`]: 0.5 at z = 4,
///   ≈ 0.9 at z = 6, > 0.99 from z = 8. The band is expected ± 4 σ.
/// * **Damped learning**: every update is weighted by (1 − score)² and residuals are clipped at
///   3 σ (Huber), so an anomaly does not rewrite the profile; after
///   [`relearn_after`](SeasonalConfig::relearn_after) of continuous surprise the level is
///   relearned.
///
/// Not seasonal series score 0 and say so in [`explain`](Detector::explain): they are left to
/// the non-seasonal detectors. Memory: 16.3 KiB while collecting, 2.8 KiB with a 288-slot
/// profile, 0.3 KiB when not seasonal ([`Detector::state_bytes`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeasonalDetector {
    cfg: SeasonalConfig,
    last_ts: Option<Millis>,
    prev_value: f64,
    /// Sampling step, averaged over regular intervals.
    #[serde(flatten)]
    sampling: SamplingStep,
    /// History needed for the next decision.
    next_check: Millis,
    seasonality: Seasonality,
    stage: Stage,
    last: Option<LastPoint>,
}

impl Default for SeasonalDetector {
    fn default() -> Self {
        Self::new(SeasonalConfig::default())
    }
}

impl SeasonalDetector {
    /// Name reported in evidence.
    pub const NAME: &'static str = "seasonal";

    pub fn new(cfg: SeasonalConfig) -> Self {
        Self {
            cfg,
            last_ts: None,
            prev_value: 0.0,
            sampling: SamplingStep::default(),
            next_check: cfg.decide_after.max(1),
            seasonality: Seasonality::Undecided,
            stage: Stage::Starting,
            last: None,
        }
    }

    pub fn config(&self) -> &SeasonalConfig {
        &self.cfg
    }

    /// What has been concluded about the series' seasonality so far.
    pub fn seasonality(&self) -> Seasonality {
        self.seasonality
    }

    /// Whether a period has been found (the detector scores only then).
    pub fn is_seasonal(&self) -> bool {
        matches!(self.seasonality, Seasonality::Seasonal { .. })
    }

    /// The detected period, once the series is known to be seasonal.
    pub fn period(&self) -> Option<Millis> {
        match self.seasonality {
            Seasonality::Seasonal { period, .. } => Some(period),
            _ => None,
        }
    }

    /// The sampling step derived from the timestamps, after two points.
    pub fn step(&self) -> Option<Millis> {
        self.sampling
            .known()
            .then(|| self.sampling.ms().round() as Millis)
    }

    /// The expected value and band at `ts`, once a profile is learned (for charts ahead of
    /// the data).
    pub fn expected_at(&self, ts: Millis) -> Option<Band> {
        let Stage::Tracking(p) = &self.stage else {
            return None;
        };
        let (expected, sigma) = p.expect(ts, &self.cfg);
        Some(band(expected, sigma))
    }

    /// Scores one point and learns from it. Points must come in increasing time order.
    pub fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        let prev_ts = self.last_ts;
        check_point(prev_ts, ts, value)?;
        let dt = prev_ts.map(|last| ts - last);
        let jump = match dt {
            Some(dt) => {
                self.sampling.learn(dt, GAP_STEPS);
                ((dt as f64) <= GAP_STEPS * self.sampling.ms())
                    .then(|| (value - self.prev_value).abs())
            }
            None => None,
        };
        let prev_value = self.prev_value;
        self.last_ts = Some(ts);
        self.prev_value = value;

        match &mut self.stage {
            Stage::Starting => {
                if let (Some(first), Some(dt)) = (prev_ts, dt) {
                    let mut h = History::new(
                        first,
                        dt.max(1),
                        self.cfg.history_bins.clamp(64, HISTORY_BINS),
                    );
                    h.push(first, prev_value, None);
                    h.push(ts, value, jump);
                    self.stage = Stage::Collecting(h);
                }
                Ok(Score::ZERO)
            }
            Stage::Collecting(h) => {
                h.push(ts, value, jump);
                if h.covered() >= self.next_check {
                    self.decide();
                }
                Ok(Score::ZERO)
            }
            Stage::Tracking(p) => {
                let dt = dt.unwrap_or(0);
                let (score, expected, sigma) = p.update(ts, dt, value, &self.cfg);
                self.last = Some(LastPoint {
                    ts,
                    value,
                    expected,
                    sigma,
                    score,
                });
                Ok(Score {
                    score,
                    band: Some(band(expected, sigma)),
                })
            }
            Stage::Quiet => Ok(Score::ZERO),
        }
    }

    /// Runs the period test on the history and either starts tracking, schedules a retry on
    /// a longer history, or settles on "not seasonal".
    fn decide(&mut self) {
        let Stage::Collecting(h) = &self.stage else {
            return;
        };
        let covered = h.covered();
        match analyse(h, self.sampling.ms(), &self.cfg) {
            Decision::Seasonal {
                period,
                anchor,
                autocorrelation,
            } => {
                let profile =
                    Profile::from_history(h, period, anchor, self.sampling.ms(), &self.cfg);
                self.seasonality = Seasonality::Seasonal {
                    period,
                    autocorrelation,
                };
                self.stage = Stage::Tracking(profile);
            }
            Decision::NotSeasonal {
                strongest_lag,
                autocorrelation,
            } => {
                let settled = covered >= self.cfg.give_up_after;
                self.seasonality = Seasonality::NotSeasonal {
                    strongest_lag,
                    autocorrelation,
                    settled,
                };
                if settled {
                    self.stage = Stage::Quiet;
                } else {
                    self.next_check = covered.saturating_mul(2).min(self.cfg.give_up_after);
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match &self.stage {
            Stage::Collecting(h) => {
                (h.means.capacity() + h.jitter.capacity()) * std::mem::size_of::<f32>()
            }
            Stage::Tracking(p) => {
                (p.shape.capacity() + p.spread.capacity()) * std::mem::size_of::<f64>()
            }
            Stage::Starting | Stage::Quiet => 0,
        }
    }
}

impl Detector for SeasonalDetector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        SeasonalDetector::update(self, ts, value)
    }

    fn explain(&self) -> String {
        match (&self.stage, self.seasonality) {
            (Stage::Starting, _) => "seasonal: learning, fewer than two points seen".to_string(),
            (Stage::Collecting(h), seasonality) => {
                let mut s = format!(
                    "seasonal: learning, {} of history at a {} step; the period is decided at {}",
                    duration(h.covered()),
                    duration(self.sampling.ms().round() as Millis),
                    duration(self.next_check),
                );
                if let Seasonality::NotSeasonal {
                    strongest_lag,
                    autocorrelation,
                    ..
                } = seasonality
                {
                    s.push_str(&format!(
                        " (not seasonal so far: strongest repeat is an autocorrelation of {autocorrelation:.2} \
                         at a lag of {}, {:.2} needed; quiet until then)",
                        duration(strongest_lag),
                        self.cfg.min_autocorrelation
                    ));
                }
                s
            }
            (
                Stage::Quiet,
                Seasonality::NotSeasonal {
                    strongest_lag,
                    autocorrelation,
                    ..
                },
            ) => format!(
                "seasonal: not seasonal, the strongest repeat over {} of history is an autocorrelation \
                 of {autocorrelation:.2} at a lag of {} ({:.2} needed); this detector stays quiet",
                duration(self.cfg.give_up_after),
                duration(strongest_lag),
                self.cfg.min_autocorrelation
            ),
            (Stage::Quiet, _) => "seasonal: not seasonal; this detector stays quiet".to_string(),
            (Stage::Tracking(p), seasonality) => {
                let strength = match seasonality {
                    Seasonality::Seasonal {
                        autocorrelation, ..
                    } => format!(", autocorrelation {autocorrelation:.2}"),
                    _ => String::new(),
                };
                let Some(last) = self.last else {
                    return format!(
                        "seasonal: period {}{strength} detected; no point scored yet",
                        duration(p.period)
                    );
                };
                let z = (last.value - last.expected) / last.sigma;
                let side = if z >= 0.0 { "above" } else { "below" };
                format!(
                    "seasonal: {} at {}, where {} ± {} (4 σ) is normal; {:.1} σ {side} it, score {:.2} \
                     (period {}{strength})",
                    fmt_num(last.value),
                    phase_name(last.ts, p.period, p.anchor),
                    fmt_num(last.expected),
                    fmt_num(BAND_SIGMAS * last.sigma),
                    z.abs(),
                    last.score,
                    duration(p.period),
                )
            }
        }
    }

    fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap_bytes()
    }
}

fn band(expected: f64, sigma: f64) -> Band {
    Band {
        expected,
        lower: expected - BAND_SIGMAS * sigma,
        upper: expected + BAND_SIGMAS * sigma,
    }
}

/// A duration in the largest unit that keeps it readable.
pub(crate) fn duration(ms: Millis) -> String {
    let ms = ms.max(0) as f64;
    let (v, unit) = if ms >= DAY_MS as f64 {
        (ms / DAY_MS as f64, "d")
    } else if ms >= HOUR_MS as f64 {
        (ms / HOUR_MS as f64, "h")
    } else if ms >= MINUTE_MS as f64 {
        (ms / MINUTE_MS as f64, "min")
    } else {
        (ms / 1000.0, "s")
    };
    if (v - v.round()).abs() < 0.05 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Noise;

    /// Midnight UTC, so test times of day are easy to read.
    const T0: Millis = 1_699_920_000_000;

    /// A daily traffic curve: lowest at 02:00 UTC (130), highest at 14:00 (270), with 3 %
    /// multiplicative noise.
    fn traffic(ts: Millis, noise: &mut Noise) -> f64 {
        let level = daily_level(ts);
        level * (1.0 + 0.03 * noise.gaussian())
    }

    fn daily_level(ts: Millis) -> f64 {
        let hours = ts.rem_euclid(DAY_MS) as f64 / HOUR_MS as f64;
        200.0 * (1.0 - 0.35 * (std::f64::consts::TAU * (hours - 2.0) / 24.0).cos())
    }

    /// Feeds `n` points of `f` at `step` from `start`; returns the scores.
    fn feed(
        d: &mut SeasonalDetector,
        start: Millis,
        step: Millis,
        n: usize,
        mut f: impl FnMut(Millis) -> f64,
    ) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let ts = start + i as Millis * step;
                d.update(ts, f(ts))
                    .expect("synthetic points are valid")
                    .score
            })
            .collect()
    }

    #[test]
    fn finds_the_daily_period_at_five_and_one_minute_steps() {
        for (step, seed) in [(5 * MINUTE_MS, 1), (MINUTE_MS, 2), (15_000, 3)] {
            let mut d = SeasonalDetector::default();
            let mut noise = Noise::new(seed);
            let n = (2 * DAY_MS / step) as usize + 2;
            let scores = feed(&mut d, T0, step, n, |ts| traffic(ts, &mut noise));
            assert!(
                scores[..n - 2].iter().all(|s| *s == 0.0),
                "scored during warm-up"
            );
            assert_eq!(
                d.period(),
                Some(DAY_MS),
                "step {step}: {:?}",
                d.seasonality()
            );
            assert_eq!(d.step(), Some(step));
            assert!(d.state_bytes() <= 8 * 1024, "{} bytes", d.state_bytes());
        }
    }

    #[test]
    fn stays_quiet_over_three_days_of_a_noisy_daily_curve() {
        for (step, seed) in [(5 * MINUTE_MS, 4), (MINUTE_MS, 5)] {
            let mut d = SeasonalDetector::default();
            let mut noise = Noise::new(seed);
            let n = (3 * DAY_MS / step) as usize;
            let scores = feed(&mut d, T0, step, n, |ts| traffic(ts, &mut noise));
            let loud = scores.iter().filter(|s| **s >= 0.5).count();
            let max = scores.iter().copied().fold(0.0, f64::max);
            assert_eq!(loud, 0, "step {step}: {loud} points ≥ 0.5, max {max:.3}");
            assert!(scores[n - 1] == 0.0 || d.period() == Some(DAY_MS));
        }
    }

    #[test]
    fn the_two_pm_level_at_two_am_scores_high() {
        let step = 5 * MINUTE_MS;
        let mut d = SeasonalDetector::default();
        let mut noise = Noise::new(6);
        let n = (2 * DAY_MS / step) as usize + 12;
        feed(&mut d, T0, step, n, |ts| traffic(ts, &mut noise));
        assert_eq!(d.period(), Some(DAY_MS));
        assert!(d.is_seasonal());
        // Day three: normal until 02:00, then the afternoon peak level at 02:00.
        let day3 = T0 + 2 * DAY_MS;
        let calm = feed(&mut d, T0 + n as Millis * step, step, 24 - 12, |ts| {
            traffic(ts, &mut noise)
        });
        assert!(calm.iter().all(|s| *s < 0.5), "{calm:?}");
        let two_pm = daily_level(day3 + 14 * HOUR_MS);
        let at_2am = d.update(day3 + 2 * HOUR_MS, two_pm).expect("valid");
        assert!(at_2am.score > 0.99, "{at_2am:?}");
        let band = at_2am.band.expect("band");
        assert!(two_pm > band.upper && band.expected < 150.0, "{band:?}");
        let why = d.explain();
        assert!(why.contains("02:00 UTC"), "{why}");
        assert!(why.contains("above"), "{why}");

        // The same value at 2 PM is normal, and the anomaly did not rewrite 2 AM.
        let mut d2 = d.clone();
        let at_2pm = d2.update(day3 + 14 * HOUR_MS, two_pm).expect("valid");
        assert!(at_2pm.score < 0.1, "{at_2pm:?}");
        let expected_2am = d
            .expected_at(day3 + DAY_MS + 2 * HOUR_MS)
            .expect("profile")
            .expected;
        assert!((expected_2am - 130.0).abs() < 8.0, "{expected_2am}");
    }

    #[test]
    fn white_noise_is_not_seasonal() {
        let mut d = SeasonalDetector::default();
        let mut noise = Noise::new(7);
        let step = 5 * MINUTE_MS;
        let n = (16 * DAY_MS / step) as usize;
        let scores = feed(&mut d, T0, step, n, |_| 50.0 + 5.0 * noise.gaussian());
        assert!(scores.iter().all(|s| *s == 0.0));
        match d.seasonality() {
            Seasonality::NotSeasonal {
                settled,
                autocorrelation,
                ..
            } => {
                assert!(settled);
                assert!(autocorrelation < 0.3, "{autocorrelation}");
            }
            other => panic!("white noise judged {other:?}"),
        }
        let why = d.explain();
        assert!(why.contains("not seasonal"), "{why}");
        assert!(d.state_bytes() < 512, "{} bytes", d.state_bytes());
    }

    #[test]
    fn a_random_walk_is_not_seasonal() {
        let mut d = SeasonalDetector::default();
        let mut noise = Noise::new(8);
        let step = 5 * MINUTE_MS;
        let mut level = 100.0;
        feed(&mut d, T0, step, (2 * DAY_MS / step) as usize + 2, |_| {
            level += noise.gaussian();
            level
        });
        assert!(
            matches!(d.seasonality(), Seasonality::NotSeasonal { .. }),
            "{:?}",
            d.seasonality()
        );
    }

    #[test]
    fn a_weekly_pattern_is_found_when_the_daily_test_fails() {
        // Busy on weekdays, idle at weekends, flat within each day: only a week repeats.
        let weekday = |ts: Millis| (ts.div_euclid(DAY_MS) + 4).rem_euclid(7); // 0 = Sunday
        let mut d = SeasonalDetector::default();
        let mut noise = Noise::new(9);
        let step = 15 * MINUTE_MS;
        let n = ((15 * DAY_MS + 6 * HOUR_MS) / step) as usize;
        feed(&mut d, T0, step, n, |ts| {
            let level = if (1..=5).contains(&weekday(ts)) {
                100.0
            } else {
                40.0
            };
            level + 3.0 * noise.gaussian()
        });
        assert_eq!(d.period(), Some(WEEK_MS), "{:?}", d.seasonality());
        let mut sunday_noon = T0 + 16 * DAY_MS + 12 * HOUR_MS;
        while weekday(sunday_noon) != 0 {
            sunday_noon += DAY_MS;
        }
        let s = d.update(sunday_noon, 100.0).expect("valid");
        assert!(s.score > 0.9, "weekday level on a Sunday: {s:?}");
        assert!(d.explain().contains("Sun 12:00 UTC"), "{}", d.explain());
    }

    #[test]
    fn a_short_cycle_is_found_by_the_scan() {
        // 40 minutes divides the day and is snapped to it; 47 minutes does not.
        for (minutes, seed) in [(40, 10), (47, 15)] {
            let period = minutes * MINUTE_MS;
            let mut d = SeasonalDetector::default();
            let mut noise = Noise::new(seed);
            let step = MINUTE_MS;
            let n = (2 * DAY_MS / step) as usize + 2;
            let wave = |ts: Millis| {
                let phase = (ts - T0).rem_euclid(period) as f64 / period as f64;
                10.0 + 4.0 * (std::f64::consts::TAU * phase).sin()
            };
            feed(&mut d, T0, step, n, |ts| wave(ts) + noise.gaussian());
            let found = d.period().expect("periodic");
            assert!(
                (found - period).abs() <= 2_000,
                "{minutes} min found as {}",
                duration(found)
            );
            // A day later the profile is still in phase.
            let later = feed(
                &mut d,
                T0 + n as Millis * step,
                step,
                (DAY_MS / step) as usize,
                |ts| wave(ts) + noise.gaussian(),
            );
            let loud = later.iter().filter(|s| **s >= 0.5).count();
            assert_eq!(loud, 0, "{minutes} min: {loud} loud points");
        }
    }

    #[test]
    fn a_step_that_lasts_becomes_the_new_normal() {
        let step = 5 * MINUTE_MS;
        let mut d = SeasonalDetector::default();
        let mut noise = Noise::new(11);
        let n = (2 * DAY_MS / step) as usize + 2;
        feed(&mut d, T0, step, n, |ts| traffic(ts, &mut noise));
        let start = T0 + n as Millis * step;
        let shifted = feed(&mut d, start, step, (DAY_MS / step) as usize, |ts| {
            traffic(ts, &mut noise) + 150.0
        });
        assert!(shifted[0] > 0.99);
        let tail = &shifted[shifted.len() / 2..];
        assert!(
            tail.iter().all(|s| *s < 0.5),
            "still alarming half a day after a permanent step"
        );
    }

    #[test]
    fn bad_input_is_refused_and_leaves_the_state() {
        let step = 5 * MINUTE_MS;
        let mut d = SeasonalDetector::default();
        let mut noise = Noise::new(12);
        let n = (2 * DAY_MS / step) as usize + 2;
        feed(&mut d, T0, step, n, |ts| traffic(ts, &mut noise));
        let before = serde_json::to_string(&d).expect("serialise");
        let last = T0 + (n as Millis - 1) * step;
        assert_eq!(
            d.update(last + step, f64::NAN).map_err(|e| e.to_string()),
            Err("value NaN is not a finite number".to_string())
        );
        assert!(matches!(
            d.update(last + step, f64::NEG_INFINITY),
            Err(DetectError::NonFinite(_))
        ));
        assert_eq!(
            d.update(last, 1.0),
            Err(DetectError::OutOfOrder { ts: last, last })
        );
        assert_eq!(serde_json::to_string(&d).expect("serialise"), before);
    }

    #[test]
    fn a_checkpoint_restores_to_identical_scores() {
        let step = 5 * MINUTE_MS;
        for stop in [100, (2 * DAY_MS / step) as usize + 50] {
            let mut d = SeasonalDetector::default();
            let mut noise = Noise::new(13);
            let values: Vec<f64> = (0..stop + 300)
                .map(|i| traffic(T0 + i as Millis * step, &mut noise))
                .collect();
            for (i, v) in values[..stop].iter().enumerate() {
                d.update(T0 + i as Millis * step, *v).expect("valid");
            }
            let json = serde_json::to_string(&d).expect("serialise");
            let mut restored: SeasonalDetector = serde_json::from_str(&json).expect("restore");
            for (i, v) in values.iter().enumerate().skip(stop) {
                let ts = T0 + i as Millis * step;
                let a = d.update(ts, *v).expect("valid");
                let b = restored.update(ts, *v).expect("valid");
                assert_eq!(a, b, "point {i}");
            }
            assert_eq!(d.explain(), restored.explain());
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let step = 15_000;
        let mut d = SeasonalDetector::default();
        let mut noise = Noise::new(14);
        let mut peak = 0;
        for i in 0..(2 * DAY_MS / step) as usize + 2 {
            let ts = T0 + i as Millis * step;
            d.update(ts, traffic(ts, &mut noise)).expect("valid");
            peak = peak.max(d.state_bytes());
        }
        println!(
            "SeasonalDetector: {peak} bytes while collecting, {} tracking",
            d.state_bytes()
        );
        assert!(peak <= 17 * 1024, "{peak}");
        assert!(d.state_bytes() <= 8 * 1024);
    }

    #[test]
    fn explains_in_words() {
        let mut d = SeasonalDetector::default();
        assert!(d.explain().contains("learning"));
        d.update(T0, 1.0).expect("valid");
        d.update(T0 + MINUTE_MS, 1.0).expect("valid");
        assert!(d.explain().contains("2 d"), "{}", d.explain());
        assert_eq!(duration(90 * MINUTE_MS), "1.5 h");
        assert_eq!(
            phase_name(T0 + 14 * HOUR_MS + 5 * MINUTE_MS, DAY_MS, 0),
            "14:05 UTC"
        );
    }
}
