//! Changes in a series' noise level: the typical step size of the latest window against the
//! window before it, judged by how much that ratio usually moves (ADTK's `VolatilityShiftAD`).

use crate::detector::{Sanitise, check_point};
use crate::window::{
    ABS_FLOOR, IqrReference, MAX_RING, SortedRing, evidence_score, fmt_num, is_harmful,
};
use crate::{AlarmDirection, DetectError, Detector, Score};
use nightshift_core::Millis;
use serde::{Deserialize, Serialize};

/// Largest steps left out of each window's typical step: one spike makes two large steps (up
/// and back), and a level shift makes one.
const TRIM: usize = 2;
/// Smallest c × IQR on the log ratio: a series whose step size never varies (a steady counter)
/// would otherwise flag a 10 % change in it. ln 1.5: changes under 1.5× never reach 0.5.
const MIN_LOG_SPREAD: f64 = 0.405_465_108_108_164_4;

/// Tuning of [`VolatilityShiftDetector`]. The defaults need no per-metric adjustment: the flag
/// is relative to how much the series' own noise level usually moves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolatilityShiftConfig {
    /// Steps in the latest window (4 to 64). A spread needs more points than a median to
    /// settle: 32 steps, 8 minutes at 15 s.
    pub window: usize,
    /// Earlier windows of the same length whose median typical step is the reference (2 to
    /// 16). One window against one window, as in ADTK, leaves the comparison as noisy as both
    /// windows together; the median of seven is steadier and ignores one odd window.
    pub reference_windows: usize,
    /// A log ratio beyond Q3 + c × IQR of the ratios seen is flagged (score 0.5). With the
    /// default windows a tripling of the noise is flagged within about a window, a doubling
    /// about half the time; ADTK's default of 6 would miss most triplings.
    pub c: f64,
    /// Which changes count: more noise (the default), less, or both.
    pub alarm: AlarmDirection,
    /// Ratios kept as the reference (4 to 64).
    pub history: usize,
    /// One ratio enters the reference every this many points.
    pub history_every: usize,
    /// Reference ratios needed before changes are scored. Ratios a few points apart share most
    /// of their windows, so fewer than 32 understate how far the ratio wanders.
    pub min_history: usize,
    /// Typical steps under this share of the level count as no noise, so a constant series
    /// that starts to wiggle in its last digits does not alarm.
    pub relative_floor: f64,
}

impl Default for VolatilityShiftConfig {
    fn default() -> Self {
        Self {
            window: 32,
            reference_windows: 7,
            c: 4.0,
            alarm: AlarmDirection::Up,
            history: 48,
            history_every: 8,
            min_history: 32,
            relative_floor: 1e-3,
        }
    }
}

impl Sanitise for VolatilityShiftConfig {
    fn sanitised(self) -> Self {
        let d = Self::default();
        let history = self.history.clamp(4, MAX_RING);
        Self {
            window: self.window.clamp(4, MAX_RING),
            reference_windows: self.reference_windows.clamp(2, 16),
            c: if self.c.is_finite() && self.c > 0.0 {
                self.c
            } else {
                d.c
            },
            alarm: self.alarm,
            history,
            history_every: self.history_every.clamp(1, 1024),
            min_history: self.min_history.clamp(1, history),
            relative_floor: if self.relative_floor.is_finite() && self.relative_floor >= 0.0 {
                self.relative_floor
            } else {
                d.relative_floor
            },
        }
    }
}

/// Earlier windows needed before a ratio is taken at all (it enters the reference of ratios,
/// not yet a score).
const MIN_REFERENCE_WINDOWS: usize = 2;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Reading {
    scored: bool,
    before: f64,
    after: f64,
    log_ratio: f64,
    q3: f64,
    spread: f64,
    score: f64,
}

/// The mean of a window's steps without its [`TRIM`] largest.
fn typical_step(window: &SortedRing) -> f64 {
    let sorted = window.sorted();
    let keep = sorted.len() - TRIM.min(sorted.len() / 4);
    if keep == 0 {
        return 0.0;
    }
    sorted[..keep].iter().sum::<f64>() / keep as f64
}

/// Finds changes in how noisy a series is: the typical step |xₜ − xₜ₋₁| over the latest
/// [`window`](VolatilityShiftConfig::window) steps against the median typical step of the
/// [`reference_windows`](VolatilityShiftConfig::reference_windows) windows before it, flagged
/// when the log of their ratio exceeds Q3 + c × IQR of the log ratios seen so far (c = 4).
///
/// The method is ADTK's `VolatilityShiftAD` (Arundo, *Anomaly Detection Toolkit*,
/// <https://adtk.readthedocs.io/en/stable/api/detectors.html#adtk.detector.VolatilityShiftAD>):
/// a `DoubleRollingAggregate` of a spread measure over two windows, an `InterQuartileRangeAD` on
/// their absolute relative difference and a sign check for `side`. Four choices differ, each
/// for ops series:
///
/// * the spread is that of the **steps**, not of the values: a level shift or a trend inside a
///   window inflates the standard deviation of values but not the steps, so neither reads as
///   volatility (that is [`LevelShiftDetector`](crate::LevelShiftDetector)'s and
///   [`TrendDetector`](crate::TrendDetector)'s job);
/// * it is a **trimmed mean** of the step sizes (the two largest left out), so one spike does
///   not read as volatility either, and series on a coarse grid (counts) still give a smooth
///   measure;
/// * the earlier side is the **median of several windows** (the newest completed one, which
///   may overlap the latest window, left out), which halves the noise of the comparison;
/// * windows are compared by the **log ratio** of their spreads rather than ADTK's
///   `abs_rel_diff`, which is symmetric: a halving is as far as a doubling, where
///   |relative difference| can never exceed 1 going down and so never flags a calmer series.
///
/// * **Score**: evidence e = (|log ratio| − Q3) / (c × IQR) through 1 − 2^(−e³): 0.5 at the
///   flag, 0.9 at e = 1.5, above 0.99 from e = 2. Changes against
///   [`alarm`](VolatilityShiftConfig::alarm) (default: only rises) score 0. The quartiles are
///   those of the last [`history`](VolatilityShiftConfig::history) ratios (one every
///   [`history_every`](VolatilityShiftConfig::history_every) points), averaged over four times
///   that span.
/// * **Band**: none; the detector models spread, not an expected value.
/// * **Warm-up**: score 0 until half the reference windows are complete and the reference
///   holds [`min_history`](VolatilityShiftConfig::min_history) ratios (353 points by default).
/// * **Cost**: one push into a 32-value sorted window and one trimmed sum per point; 1,800
///   bytes of state by default.
///
/// Measured on synthetic Gaussian noise at the defaults: a tripling of the noise reaches 0.5
/// after a median of 22 points (all of 20 seeds within 64), a doubling in about 60 % of cases
/// within 100 points; no point of 300,000 of steady noise, or of a daily curve with noise
/// proportional to its level, reached 0.5. After a change the reference follows the new noise
/// level once most of its windows have seen it, so a lasting change is flagged for a few
/// windows, then becomes the normal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolatilityShiftDetector {
    #[serde(deserialize_with = "crate::detector::sanitised")]
    cfg: VolatilityShiftConfig,
    last_ts: Option<Millis>,
    prev: Option<f64>,
    steps: u64,
    /// Step sizes of the latest window, ending with the current point.
    latest: SortedRing,
    /// Typical step of the newest completed window, kept out of the reference while it may
    /// overlap the latest window.
    newest: Option<f64>,
    /// Typical steps of the completed windows before it.
    earlier: SortedRing,
    /// Reference: |log ratio| samples.
    ratios: IqrReference,
    points: u64,
    last: Reading,
}

impl Default for VolatilityShiftDetector {
    fn default() -> Self {
        Self::new(VolatilityShiftConfig::default())
    }
}

impl VolatilityShiftDetector {
    /// Name reported in explanations and evidence.
    pub const NAME: &'static str = "volatility_shift";

    /// A detector with `cfg`, each field clamped to its valid range.
    pub fn new(cfg: VolatilityShiftConfig) -> Self {
        let cfg = cfg.sanitised();
        Self {
            cfg,
            last_ts: None,
            prev: None,
            steps: 0,
            latest: SortedRing::new(cfg.window),
            newest: None,
            earlier: SortedRing::new(cfg.reference_windows),
            ratios: IqrReference::new(cfg.history),
            points: 0,
            last: Reading::default(),
        }
    }

    /// A detector with default tuning that alarms in `alarm` direction only.
    pub fn with_alarm(alarm: AlarmDirection) -> Self {
        Self::new(VolatilityShiftConfig {
            alarm,
            ..VolatilityShiftConfig::default()
        })
    }

    pub fn config(&self) -> &VolatilityShiftConfig {
        &self.cfg
    }

    /// Earlier windows needed before a score.
    fn scoring_windows(&self) -> usize {
        self.cfg
            .reference_windows
            .div_ceil(2)
            .max(MIN_REFERENCE_WINDOWS)
    }

    /// Number (counting from 1) of the first point that can score.
    pub fn warmup_points(&self) -> u64 {
        let w = self.cfg.window;
        let first_ratio = 1 + w * (MIN_REFERENCE_WINDOWS + 1);
        let history = first_ratio + self.cfg.history_every * self.cfg.min_history;
        let windows = 1 + w * (self.scoring_windows() + 1);
        history.max(windows) as u64
    }

    /// The latest window's typical step over the reference, once there is one.
    pub fn noise_ratio(&self) -> Option<f64> {
        (self.earlier.len() >= MIN_REFERENCE_WINDOWS).then(|| self.last.log_ratio.exp())
    }
}

impl Detector for VolatilityShiftDetector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        check_point(self.last_ts, ts, value)?;
        self.last_ts = Some(ts);
        self.points += 1;
        let Some(prev) = self.prev.replace(value) else {
            return Ok(Score::ZERO);
        };
        self.latest.push((value - prev).abs());
        self.steps += 1;
        let after = typical_step(&self.latest);
        if self.steps.is_multiple_of(self.cfg.window as u64) {
            // The latest window has just been fully renewed: it becomes the newest completed
            // window, and the one before it joins the reference.
            if let Some(older) = self.newest.replace(after) {
                self.earlier.push(older);
            }
        }
        if self.earlier.len() < MIN_REFERENCE_WINDOWS {
            self.last = Reading::default();
            return Ok(Score::ZERO);
        }
        let floor = self.cfg.relative_floor * value.abs() + ABS_FLOOR;
        let before = self.earlier.median();
        let log_ratio = ((after + floor) / (before + floor)).ln();

        let mut reading = Reading {
            before,
            after,
            log_ratio,
            ..Reading::default()
        };
        if self.ratios.ready(self.cfg.min_history) && self.earlier.len() >= self.scoring_windows() {
            let judged = self.ratios.judge(self.cfg.c, MIN_LOG_SPREAD);
            let (q3, spread) = (judged.q3, judged.spread);
            let score = if is_harmful(self.cfg.alarm, log_ratio) {
                evidence_score(judged.evidence(log_ratio.abs()))
            } else {
                0.0
            };
            reading = Reading {
                scored: true,
                q3,
                spread,
                score,
                ..reading
            };
        }

        self.ratios.offer(
            log_ratio.abs(),
            true,
            self.cfg.history_every,
            self.cfg.min_history,
        );
        self.last = reading;
        Ok(Score {
            score: reading.score,
            band: None,
        })
    }

    fn explain(&self) -> String {
        let r = &self.last;
        if !r.scored {
            return format!(
                "warming up: {} of {} points seen before noise changes are scored",
                self.points.min(self.warmup_points()),
                self.warmup_points()
            );
        }
        let ratio = r.log_ratio.exp();
        let head = if r.score >= 0.5 {
            let (dir, factor) = if ratio >= 1.0 {
                ("up", ratio)
            } else {
                ("down", 1.0 / ratio)
            };
            format!("noise level {dir} {factor:.1}×")
        } else {
            format!("noise level steady ({ratio:.2}×)")
        };
        format!(
            "{head}: typical step {} over the last {} points vs {} in the {} windows before; \
             log ratio {:.2}, flagged from {:.2} (Q3 {:.2} + {} × IQR {:.2} of the last {} \
             ratios); score {:.2}",
            fmt_num(r.after),
            self.cfg.window,
            fmt_num(r.before),
            self.earlier.len(),
            r.log_ratio,
            r.q3 + r.spread,
            r.q3,
            fmt_num(self.cfg.c),
            r.spread / self.cfg.c,
            self.ratios.len(),
            r.score
        )
    }

    fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.latest.heap_bytes()
            + self.earlier.heap_bytes()
            + self.ratios.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{DAY_POINTS, Noise, STEP, T0, daily_curve, max, noisy, run};

    #[test]
    fn tripled_noise_is_flagged_within_about_a_window() {
        let mut delays = Vec::new();
        for seed in 1..=20 {
            let mut d = VolatilityShiftDetector::default();
            let mut noise = Noise::new(seed);
            let s = run(&mut d, 0, &noisy(1500, 100.0, 2.0, &mut noise));
            assert!(max(&s) < 0.5, "seed {seed}: false alarm {}", max(&s));
            let after = noisy(64, 100.0, 6.0, &mut noise);
            let mut found = None;
            for (i, v) in after.iter().enumerate() {
                let s = d
                    .update(T0 + (1500 + i) as Millis * STEP, *v)
                    .expect("valid");
                if s.score >= 0.5 {
                    let text = d.explain();
                    assert!(text.starts_with("noise level up"), "{text}");
                    found = Some(i + 1);
                    break;
                }
            }
            delays.push(found.unwrap_or_else(|| panic!("seed {seed}: not flagged in 64 points")));
        }
        delays.sort_unstable();
        println!("tripled noise flagged after {delays:?} points");
        // The latest window has to be mostly new steps: typically two thirds of it.
        assert!(delays[delays.len() / 2] <= 32, "{delays:?}");
    }

    #[test]
    fn doubled_noise_is_worth_a_look() {
        let mut d = VolatilityShiftDetector::default();
        let mut noise = Noise::new(4);
        run(&mut d, 0, &noisy(1500, 100.0, 2.0, &mut noise));
        let s = run(&mut d, 1500, &noisy(64, 100.0, 4.0, &mut noise));
        assert!(max(&s) >= 0.4, "{}", max(&s));
    }

    #[test]
    fn calmer_series_alarms_only_when_asked() {
        let mut noise = Noise::new(5);
        let before = noisy(1500, 10.0, 3.0, &mut noise);
        let after = noisy(64, 10.0, 0.5, &mut noise);
        let mut up = VolatilityShiftDetector::default();
        let mut both = VolatilityShiftDetector::with_alarm(AlarmDirection::Both);
        run(&mut up, 0, &before);
        run(&mut both, 0, &before);
        assert!(max(&run(&mut up, 1500, &after)) < 0.1);
        assert!(max(&run(&mut both, 1500, &after[..32])) > 0.9);
        assert!(
            both.explain().starts_with("noise level down"),
            "{}",
            both.explain()
        );
    }

    #[test]
    fn stationary_noise_stays_quiet() {
        for seed in [10, 11, 12] {
            let mut d = VolatilityShiftDetector::default();
            let mut noise = Noise::new(seed);
            let s = run(&mut d, 0, &noisy(DAY_POINTS, 100.0, 5.0, &mut noise));
            assert!(max(&s) < 0.5, "seed {seed}: max score {}", max(&s));
        }
    }

    #[test]
    fn daily_sinusoid_stays_quiet() {
        // Noise proportional to the level: the noise itself follows the day, slowly.
        let mut d = VolatilityShiftDetector::default();
        let mut noise = Noise::new(7);
        let values: Vec<f64> = daily_curve(2 * DAY_POINTS, DAY_POINTS, &mut noise);
        let s = run(&mut d, 0, &values);
        assert!(max(&s) < 0.5, "max score {}", max(&s));
    }

    #[test]
    fn level_shift_spikes_and_trend_are_not_volatility() {
        let mut d = VolatilityShiftDetector::default();
        let mut noise = Noise::new(8);
        let mut values = noisy(1500, 100.0, 2.0, &mut noise);
        values.extend(noisy(500, 130.0, 2.0, &mut noise));
        for i in (400..2000).step_by(150) {
            values[i] += 40.0;
        }
        values.extend((0..500).map(|i| 130.0 + 0.2 * f64::from(i) + 2.0 * noise.gaussian()));
        let s = run(&mut d, 0, &values);
        assert!(max(&s) < 0.5, "max score {}", max(&s));
    }

    #[test]
    fn counts_on_a_coarse_grid_stay_quiet() {
        // Small integer counts: most steps are 0 or 1, so a median step would jump between
        // the two; the trimmed mean moves smoothly.
        let mut d = VolatilityShiftDetector::default();
        let mut noise = Noise::new(9);
        let values: Vec<f64> = (0..DAY_POINTS)
            .map(|_| (3.0 + 0.8 * noise.gaussian()).round().max(0.0))
            .collect();
        let s = run(&mut d, 0, &values);
        assert!(max(&s) < 0.5, "max score {}", max(&s));
        assert_eq!(max(&run(&mut d, DAY_POINTS, &[3.0; 300])), 0.0);
    }

    #[test]
    fn warm_up_scores_zero() {
        let mut d = VolatilityShiftDetector::default();
        assert_eq!(d.warmup_points(), 353);
        assert!(d.explain().starts_with("warming up"));
        let mut noise = Noise::new(11);
        let s = run(&mut d, 0, &noisy(352, 10.0, 1.0, &mut noise));
        assert_eq!(max(&s), 0.0);
        assert!(d.explain().starts_with("warming up"));
        d.update(T0 + 352 * STEP, 50.0).expect("valid");
        assert!(d.explain().starts_with("noise level"), "{}", d.explain());
        assert!(d.noise_ratio().is_some());
    }

    #[test]
    fn bad_input_is_refused_and_leaves_state_unchanged() {
        let mut d = VolatilityShiftDetector::default();
        let mut noise = Noise::new(12);
        run(&mut d, 0, &noisy(300, 10.0, 1.0, &mut noise));
        let before = serde_json::to_string(&d).expect("serialises");
        assert!(matches!(
            d.update(T0 + 300 * STEP, f64::INFINITY),
            Err(DetectError::NonFinite(_))
        ));
        assert!(matches!(
            d.update(T0 + 299 * STEP, 1.0),
            Err(DetectError::OutOfOrder { .. })
        ));
        assert_eq!(serde_json::to_string(&d).expect("serialises"), before);
    }

    #[test]
    fn checkpoint_round_trip_mid_stream_scores_identically() {
        let mut noise = Noise::new(13);
        let mut values = noisy(1000, 20.0, 1.0, &mut noise);
        values.extend(noisy(200, 20.0, 4.0, &mut noise));
        let mut a = VolatilityShiftDetector::default();
        run(&mut a, 0, &values[..990]);
        let json = serde_json::to_string(&a).expect("serialises");
        let mut b: VolatilityShiftDetector = serde_json::from_str(&json).expect("restores");
        let sa = run(&mut a, 990, &values[990..]);
        let sb = run(&mut b, 990, &values[990..]);
        assert_eq!(sa, sb);
        assert!(max(&sa) > 0.9, "the change after the checkpoint is found");
        assert_eq!(a.explain(), b.explain());
    }

    #[test]
    fn state_fits_the_budget() {
        let mut d = VolatilityShiftDetector::default();
        let mut noise = Noise::new(14);
        run(&mut d, 0, &noisy(1000, 1.0, 0.1, &mut noise));
        println!("VolatilityShiftDetector: {} bytes", d.state_bytes());
        assert!(d.state_bytes() <= 2048, "{} bytes", d.state_bytes());
        assert_eq!(
            d.state_bytes(),
            VolatilityShiftDetector::default().state_bytes()
        );
    }
}
