//! The default per-series detection engine: several detectors, each looking for one kind of
//! departure from normal, combined into one calibrated score and into anomaly *events*.
//!
//! Which detectors speak is decided per series, from what the series shows: the seasonal
//! baseline only once a period has been found (and then it replaces the non-seasonal deviation
//! check, which would mistake the daily swing for anomalies); the trend detector's exhaustion
//! forecast only when a limit is known; the range breach only after a day of history. No
//! per-metric threshold is needed; per-series overrides ([`EnsembleConfig`]) can switch
//! detectors off or change the event rule.
//!
//! Two scores come out of each point: the *raw* score (the strongest member, discounted by how
//! often that member flags this series), on which events start and end, and the *calibrated*
//! score ([`crate::likelihood`]), which says how unlikely the recent raw scores are for this
//! series and so compares across series.

use crate::detector::check_point;
use crate::event::{EventPhase, EventRule, EventTracker};
use crate::{
    AlarmDirection, AnomalyLikelihood, DetectError, Detector, ForecastBandDetector,
    LevelShiftConfig, LevelShiftDetector, PersistConfig, PersistDetector, RangeBreachConfig,
    RangeBreachDetector, RobustBaselineConfig, RobustBaselineDetector, Score, SeasonalConfig,
    SeasonalDetector, Seasonality, TrendConfig, TrendDetector, VolatilityShiftDetector,
};
use nightshift_core::Millis;
use serde::{Deserialize, Serialize};

/// The detectors of the ensemble, in the order of [`EnsembleScore::scores`].
pub const MEMBERS: [&str; 8] = [
    "robust_baseline",
    "seasonal",
    "level_shift",
    "volatility_shift",
    "persist",
    "trend",
    "forecast_band",
    "range_breach",
];

/// Indices into [`MEMBERS`] (and every per-member array of the ensemble).
const ROBUST: usize = 0;
const SEASONAL: usize = 1;
const LEVEL_SHIFT: usize = 2;
const VOLATILITY_SHIFT: usize = 3;
const PERSIST: usize = 4;
const FORECAST: usize = 6;
/// The range breach: a record high or low starts an event on its own.
const BREACH: usize = 7;

/// Weight of each point in a member's flag rate: a memory of about 4,000 points.
const HIT_RATE_WEIGHT: f64 = 1.0 / 4000.0;
/// A member flagging this share of points (one in twenty) is no surprise at all.
const SURPRISE_RATE: f64 = 0.05;

/// Per-series settings; the defaults need no tuning.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnsembleConfig {
    /// Weight of each member's score (0 switches a member off), in [`MEMBERS`] order.
    pub weights: [f64; 8],
    /// A point "hits" at this combined score.
    pub hit: f64,
    /// When points at or above `hit` make an event and when it ends.
    pub event: EventRule,
    /// Known upper limit of the series (1.0 for ratios, a capacity), for exhaustion forecasts.
    pub limit: Option<f64>,
    /// Which way of leaving normal is harmful for this series; the other way scores 0.
    pub alarm: AlarmDirection,
    /// Smallest spread the deviation members assume, in the series' unit.
    pub absolute_floor: f64,
}

impl Default for EnsembleConfig {
    fn default() -> Self {
        Self {
            weights: [1.0; 8],
            hit: 0.5,
            event: EventRule {
                hits_for_event: 3,
                window: 4,
                quiet_to_end: 8,
            },
            limit: None,
            alarm: AlarmDirection::Both,
            absolute_floor: RobustBaselineConfig::default().absolute_floor,
        }
    }
}

/// The ensemble's verdict on one point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnsembleScore {
    /// Calibrated score in [0, 1], comparable across series: the anomaly likelihood of the
    /// recent raw scores given this series' usual ones (0.5 at a one-in-10⁵ chance), or 1 at a
    /// record high or low.
    pub score: f64,
    /// The strongest weighted member score, after the discount for how often that member flags
    /// this series. Events start and end on it.
    pub raw: f64,
    /// Each member's own score, in [`MEMBERS`] order.
    pub scores: [f64; 8],
    /// Index into [`MEMBERS`] of the member that gave `raw` (the range breach at a record).
    pub top: usize,
    pub phase: EventPhase,
    /// The expected value and band of the member that models the level best right now.
    pub band: Option<crate::Band>,
}

/// The default detection engine for one series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ensemble {
    cfg: EnsembleConfig,
    robust: RobustBaselineDetector,
    seasonal: SeasonalDetector,
    level: LevelShiftDetector,
    volatility: VolatilityShiftDetector,
    persist: PersistDetector,
    trend: TrendDetector,
    forecast: ForecastBandDetector,
    breach: RangeBreachDetector,
    likelihood: AnomalyLikelihood,
    /// Exponentially weighted share of points each member flags.
    hit_rate: [f64; 8],
    event: EventTracker,
    /// When the current event started.
    event_since: Millis,
    last: Option<EnsembleScore>,
    /// Time of the last point accepted: the ensemble's own, as any member may be switched off.
    #[serde(default)]
    last_ts: Option<Millis>,
}

impl Default for Ensemble {
    fn default() -> Self {
        Self::new(EnsembleConfig::default())
    }
}

impl Ensemble {
    pub fn new(cfg: EnsembleConfig) -> Self {
        let alarm = cfg.alarm;
        let trend = TrendDetector::new(TrendConfig {
            alarm,
            ..TrendConfig::default()
        });
        let trend = match cfg.limit {
            Some(limit) => trend.with_limit(limit),
            None => trend,
        };
        Self {
            cfg,
            robust: RobustBaselineDetector::new(RobustBaselineConfig {
                alarm,
                absolute_floor: cfg.absolute_floor,
                ..RobustBaselineConfig::default()
            }),
            // 512 warm-up bins (4 KiB) keep the ensemble inside its 16 KiB budget; days and
            // weeks are still resolved to minutes.
            seasonal: SeasonalDetector::new(SeasonalConfig {
                history_bins: 512,
                ..SeasonalConfig::default()
            }),
            level: LevelShiftDetector::new(LevelShiftConfig {
                alarm,
                ..LevelShiftConfig::default()
            }),
            volatility: VolatilityShiftDetector::default(),
            persist: PersistDetector::new(PersistConfig {
                alarm,
                ..PersistConfig::default()
            }),
            trend,
            forecast: ForecastBandDetector::default(),
            breach: RangeBreachDetector::new(RangeBreachConfig {
                alarm,
                ..RangeBreachConfig::default()
            }),
            likelihood: AnomalyLikelihood::default(),
            hit_rate: [0.0; 8],
            event: EventTracker::default(),
            event_since: 0,
            last: None,
            last_ts: None,
        }
    }

    pub fn config(&self) -> &EnsembleConfig {
        &self.cfg
    }

    /// The members, in [`MEMBERS`] order.
    fn members(&self) -> [&dyn Detector; 8] {
        [
            &self.robust,
            &self.seasonal,
            &self.level,
            &self.volatility,
            &self.persist,
            &self.trend,
            &self.forecast,
            &self.breach,
        ]
    }

    fn members_mut(&mut self) -> [&mut dyn Detector; 8] {
        [
            &mut self.robust,
            &mut self.seasonal,
            &mut self.level,
            &mut self.volatility,
            &mut self.persist,
            &mut self.trend,
            &mut self.forecast,
            &mut self.breach,
        ]
    }

    /// Scores one point with every member and advances the event state.
    pub fn assess(&mut self, ts: Millis, value: f64) -> Result<EnsembleScore, DetectError> {
        // Members check each point themselves; check once here so a refused point leaves
        // every member's state as it was.
        check_point(self.last_ts, ts, value)?;
        self.last_ts = Some(ts);
        let w = self.cfg.weights;
        let mut scores = [0.0; 8];
        let mut bands: [Option<crate::Band>; 8] = [None; 8];
        let members = self.members_mut();
        for (i, m) in members.into_iter().enumerate() {
            if w[i] <= 0.0 {
                continue;
            }
            let Score { score, band } = m.update(ts, value).unwrap_or(Score::ZERO);
            scores[i] = (w[i] * score).clamp(0.0, 1.0);
            bands[i] = band;
        }
        // Members without an alarm direction of their own (seasonal, forecast band) are held to
        // the series' harmful direction through their expectation.
        for (i, b) in bands.iter().enumerate() {
            if let Some(b) = b {
                let harmless = match self.cfg.alarm {
                    AlarmDirection::Up => value < b.expected,
                    AlarmDirection::Down => value > b.expected,
                    AlarmDirection::Both => false,
                };
                if harmless {
                    scores[i] = 0.0;
                }
            }
        }
        // A seasonal series' daily swing is not an anomaly: once the seasonal baseline has
        // found a period it speaks for point deviations instead of the non-seasonal baseline.
        let seasonal = matches!(self.seasonal.seasonality(), Seasonality::Seasonal { .. });
        if seasonal {
            // The daily shape has regular steps and swings that the non-seasonal members would
            // read as shifts: in a seasonal series they speak only where the seasonal residual
            // agrees something is off.
            scores[ROBUST] = 0.0;
            for i in [LEVEL_SHIFT, VOLATILITY_SHIFT, PERSIST, FORECAST] {
                scores[i] = scores[i].min(scores[SEASONAL]);
            }
        } else {
            scores[SEASONAL] = 0.0;
        }
        // How often each member flags this series is part of what is normal for it, as NAB's
        // anomaly likelihood discounts a detector's usual level of surprise: a member that flags
        // one point in a hundred here (a spiky series) is discounted by a fifth, one in twenty
        // is silenced.
        for (i, s) in scores.iter_mut().enumerate() {
            let rate = self.hit_rate[i];
            self.hit_rate[i] += HIT_RATE_WEIGHT * (f64::from(u8::from(*s >= self.cfg.hit)) - rate);
            *s *= (1.0 - rate / SURPRISE_RATE).clamp(0.0, 1.0);
        }
        let (top, raw) = scores
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0, 0.0),
                |best, (i, s)| if s > best.1 { (i, s) } else { best },
            );
        let band = if seasonal {
            bands[SEASONAL].or(bands[ROBUST])
        } else {
            bands[ROBUST].or(bands[FORECAST])
        };

        let hit = raw >= self.cfg.hit;
        // A record high or low is news on its own, even during an event (which it restarts):
        // the series has gone somewhere it has never been.
        let record = scores[BREACH] >= self.cfg.hit;
        let likely = self.likelihood.update(raw);
        let (score, top) = if record { (1.0, BREACH) } else { (likely, top) };
        let phase = self.event.step(&self.cfg.event, hit, record);
        if phase == EventPhase::Onset {
            self.event_since = ts;
        }
        let out = EnsembleScore {
            score,
            raw,
            scores,
            top,
            phase,
            band,
        };
        self.last = Some(out);
        Ok(out)
    }

    /// Time of the last point accepted.
    pub fn last_ts(&self) -> Option<Millis> {
        self.last_ts
    }

    /// When the current event started, while one is going on.
    pub fn event_since(&self) -> Option<Millis> {
        self.event.in_event().then_some(self.event_since)
    }

    /// Time to exhaustion of the known limit at the current trend, if there is one.
    pub fn time_to_exhaustion(&self) -> Option<Millis> {
        self.trend.time_to_exhaustion()
    }

    /// The explanation of the member that gave the last score.
    pub fn explain_top(&self) -> String {
        let Some(last) = self.last else {
            return "no points yet".into();
        };
        let member = self.members()[last.top.min(BREACH)];
        format!(
            "{}: {}; {}",
            MEMBERS[last.top],
            member.explain(),
            self.likelihood.explain()
        )
    }
}

impl Detector for Ensemble {
    fn name(&self) -> &'static str {
        "ensemble"
    }

    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        self.assess(ts, value).map(|e| Score {
            score: e.score,
            band: e.band,
        })
    }

    fn explain(&self) -> String {
        self.explain_top()
    }

    fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    fn state_bytes(&self) -> usize {
        // Each member's own figure replaces its inline size within the ensemble's.
        self.members()
            .iter()
            .map(|m| m.state_bytes() - std::mem::size_of_val(*m))
            .sum::<usize>()
            + std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Noise, noisy};

    const STEP: Millis = 15_000;

    fn run(e: &mut Ensemble, from: usize, values: &[f64]) -> Vec<(usize, EnsembleScore)> {
        values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let s = e.assess((from + i) as Millis * STEP, *v).ok()?;
                (s.phase == EventPhase::Onset).then_some((from + i, s))
            })
            .collect()
    }

    #[test]
    fn a_level_shift_is_one_event_with_an_onset() {
        let mut noise = Noise::new(7);
        let mut e = Ensemble::default();
        let quiet = noisy(1500, 100.0, 2.0, &mut noise);
        assert!(
            run(&mut e, 0, &quiet).is_empty(),
            "stationary noise raises no event"
        );
        let shifted = noisy(40, 130.0, 2.0, &mut noise);
        let onsets = run(&mut e, 1500, &shifted);
        assert!(
            !onsets.is_empty() && onsets[0].0 < 1506,
            "shift found within six points: {onsets:?}"
        );
        assert!(
            onsets.len() <= 2,
            "one shift is not a burst of events: {}",
            onsets.len()
        );
        assert!(!e.explain_top().is_empty());
    }

    #[test]
    fn a_record_high_is_an_onset_of_its_own_scored_one() {
        let mut noise = Noise::new(21);
        let mut e = Ensemble::default();
        let day = (24 * 60 * 60_000 / STEP) as usize;
        run(&mut e, 0, &noisy(day + 100, 100.0, 2.0, &mut noise));
        let onsets = run(&mut e, day + 100, &[200.0]);
        assert_eq!(onsets.len(), 1, "a record is news at once");
        let s = onsets[0].1;
        assert_eq!((s.score, MEMBERS[s.top]), (1.0, "range_breach"));
        assert!(
            e.explain_top().contains("new record"),
            "{}",
            e.explain_top()
        );
    }

    #[test]
    fn the_calibrated_score_is_low_for_noise_and_high_for_a_shift() {
        let mut noise = Noise::new(8);
        let mut e = Ensemble::default();
        let mut values = noisy(3000, 100.0, 2.0, &mut noise);
        // Two early spikes widen the range seen, so the shift below sets no record.
        values[100] = 130.0;
        values[200] = 70.0;
        let scores: Vec<f64> = values
            .iter()
            .enumerate()
            .map(|(i, v)| e.assess(i as Millis * STEP, *v).expect("valid").score)
            .collect();
        let loud = scores[500..].iter().filter(|s| **s >= 0.5).count();
        assert!(loud <= 3, "{loud} noise points at 0.5 or more");
        let peak = (0..20)
            .map(|i| {
                let v = 112.0 + 2.0 * noise.gaussian();
                let s = e.assess((3000 + i) as Millis * STEP, v).expect("valid");
                assert_ne!(MEMBERS[s.top], "range_breach", "inside the range seen");
                s.score
            })
            .fold(0.0, f64::max);
        assert!(peak >= 0.5, "a sustained 6σ shift reaches {peak}");
    }

    #[test]
    fn state_fits_the_budget_and_round_trips() {
        let mut noise = Noise::new(3);
        let mut e = Ensemble::default();
        run(&mut e, 0, &noisy(800, 50.0, 1.0, &mut noise));
        let members = e.members().map(Detector::state_bytes);
        assert!(
            e.state_bytes() <= 16 * 1024,
            "{} bytes of state: {members:?}",
            e.state_bytes()
        );
        let json = serde_json::to_string(&e).expect("serialises");
        let mut restored: Ensemble = serde_json::from_str(&json).expect("restores");
        let rest = noisy(200, 60.0, 1.0, &mut noise);
        for (i, v) in rest.iter().enumerate() {
            let ts = (800 + i) as Millis * STEP;
            assert_eq!(e.assess(ts, *v).ok(), restored.assess(ts, *v).ok());
        }
    }

    #[test]
    fn time_order_holds_with_any_member_switched_off() {
        let mut weights = [1.0; 8];
        weights[0] = 0.0;
        let mut e = Ensemble::new(EnsembleConfig {
            weights,
            ..EnsembleConfig::default()
        });
        e.assess(2 * STEP, 1.0).expect("first point");
        assert_eq!(e.last_ts(), Some(2 * STEP));
        assert!(matches!(
            e.assess(STEP, 1.0),
            Err(DetectError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn refused_points_leave_the_state_unchanged() {
        let mut e = Ensemble::default();
        e.assess(STEP, 1.0).expect("first point");
        assert!(matches!(
            e.assess(2 * STEP, f64::NAN),
            Err(DetectError::NonFinite(_))
        ));
        assert!(matches!(
            e.assess(STEP, 2.0),
            Err(DetectError::OutOfOrder { .. })
        ));
        assert!(e.assess(2 * STEP, 1.0).is_ok());
    }
}
