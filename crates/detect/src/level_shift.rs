//! Level shifts: the median of the latest window against the median of the window before it,
//! judged by how much those two medians usually differ (ADTK's `LevelShiftAD`, streamed).

use crate::detector::{Sanitise, check_point};
use crate::window::{
    ABS_FLOOR, IqrReference, MAX_RING, SortedRing, evidence_score, fmt_num, is_harmful,
};
use crate::{AlarmDirection, Band, DetectError, Detector, Score};
use nightshift_core::Millis;
use serde::{Deserialize, Serialize};

/// Tuning of [`LevelShiftDetector`]. The defaults need no per-metric adjustment: the flag is
/// relative to how much the series' own window medians usually differ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LevelShiftConfig {
    /// Points in each of the two adjacent windows (1 to 64). Eight points at a 15 s step is two
    /// minutes a side: long enough that one or two spikes cannot move a median, short enough
    /// to confirm a shift within about five points.
    pub window: usize,
    /// ADTK's factor: a median difference beyond Q3 + c × IQR of the reference differences is
    /// a shift (score 0.5).
    pub c: f64,
    /// Which shifts count: up, down or both (ADTK's `side`).
    pub alarm: AlarmDirection,
    /// Median differences kept as the reference (4 to 64).
    pub history: usize,
    /// One median difference enters the reference every this many points: adjacent
    /// differences share most of their windows, so sampling spreads the reference over
    /// `history × history_every` points (256 by default) for the same memory.
    pub history_every: usize,
    /// Reference differences needed before shifts are scored. Adjacent differences are far
    /// from independent, so quartiles of fewer than 32 flag ordinary noise.
    pub min_history: usize,
    /// Shifts smaller than this share of the level never reach 0.5, so a series that is
    /// almost constant does not alarm on a wiggle.
    pub relative_floor: f64,
}

impl Default for LevelShiftConfig {
    fn default() -> Self {
        Self {
            window: 8,
            c: 6.0,
            alarm: AlarmDirection::Both,
            history: 64,
            history_every: 4,
            min_history: 32,
            relative_floor: 0.01,
        }
    }
}

impl Sanitise for LevelShiftConfig {
    /// The configuration with every field in its valid range.
    fn sanitised(self) -> Self {
        let d = Self::default();
        let history = self.history.clamp(4, MAX_RING);
        Self {
            window: self.window.clamp(1, MAX_RING),
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

/// The numbers behind the last score, kept for [`Detector::explain`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Reading {
    /// Whether the windows and the reference were full enough to score.
    scored: bool,
    before: f64,
    after: f64,
    q3: f64,
    /// c × IQR of the reference, after the floor.
    spread: f64,
    /// (|after − before| − Q3) / spread: 1 is ADTK's flag.
    evidence: f64,
    score: f64,
}

/// Finds shifts in a series' level: the median of the latest [`window`](LevelShiftConfig::window)
/// points against the median of the `window` points before them, flagged when their difference
/// exceeds Q3 + c × IQR of the differences seen so far (c = 6).
///
/// The method is ADTK's `LevelShiftAD` (Arundo, *Anomaly Detection Toolkit*,
/// <https://adtk.readthedocs.io/en/stable/api/detectors.html#adtk.detector.LevelShiftAD>): a
/// `DoubleRollingAggregate` of medians with an `l1` difference, an `InterQuartileRangeAD` with
/// `c = (None, 6)` on it and a sign check for `side`. Streaming it, the quartiles come from a
/// reference of the last [`history`](LevelShiftConfig::history) differences (one every
/// [`history_every`](LevelShiftConfig::history_every) points), averaged over four times that
/// span (1,024 points by default), instead of the whole training series, and each point is
/// scored as the right edge of the right window.
///
/// * **Score**: evidence e = (|difference| − Q3) / (c × IQR), through 1 − 2^(−e³): 0.5 exactly at
///   ADTK's flag, 0.9 at e = 1.5, above 0.99 from e = 2. Shifts against
///   [`alarm`](LevelShiftConfig::alarm) score 0. c × IQR is floored at
///   [`relative_floor`](LevelShiftConfig::relative_floor) of the level.
/// * **Band**: expected = the earlier window's median; lower/upper = expected ∓ (Q3 + c × IQR),
///   the range the latest window's median may move in without a flag.
/// * **Warm-up**: score 0 until both windows are full and the reference holds
///   [`min_history`](LevelShiftConfig::min_history) differences (144 points by default).
/// * **Cost**: two pushes into 8-value sorted windows per point, one into the 64-value
///   reference every fourth point; 1,640 bytes of state by default.
///
/// A shift is flagged while the windows straddle it (about `window` points after it shows),
/// then the detector is quiet again at the new level: a shift is an event, not a state. On
/// synthetic series at the defaults, a 10σ shift reaches 0.5 within 5 points; no point of
/// 300,000 of Gaussian noise reached 0.5, and 2 points of 300,000 of a daily curve whose noise
/// grows with its level did (the quartiles lag the noise by hours).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LevelShiftDetector {
    #[serde(deserialize_with = "crate::detector::sanitised")]
    cfg: LevelShiftConfig,
    last_ts: Option<Millis>,
    /// The earlier window (the points before `right`).
    left: SortedRing,
    /// The latest window, ending with the current point.
    right: SortedRing,
    /// Reference: |right median − left median| samples.
    diffs: IqrReference,
    points: u64,
    last: Reading,
}

impl Default for LevelShiftDetector {
    fn default() -> Self {
        Self::new(LevelShiftConfig::default())
    }
}

impl LevelShiftDetector {
    /// Name reported in explanations and evidence.
    pub const NAME: &'static str = "level_shift";

    /// A detector with `cfg`, each field clamped to its valid range.
    pub fn new(cfg: LevelShiftConfig) -> Self {
        let cfg = cfg.sanitised();
        Self {
            cfg,
            last_ts: None,
            left: SortedRing::new(cfg.window),
            right: SortedRing::new(cfg.window),
            diffs: IqrReference::new(cfg.history),
            points: 0,
            last: Reading::default(),
        }
    }

    /// A detector with default tuning that alarms in `alarm` direction only.
    pub fn with_alarm(alarm: AlarmDirection) -> Self {
        Self::new(LevelShiftConfig {
            alarm,
            ..LevelShiftConfig::default()
        })
    }

    pub fn config(&self) -> &LevelShiftConfig {
        &self.cfg
    }

    /// Number (counting from 1) of the first point that can score.
    pub fn warmup_points(&self) -> u64 {
        (2 * self.cfg.window + self.cfg.min_history * self.cfg.history_every) as u64
    }
}

impl Detector for LevelShiftDetector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        check_point(self.last_ts, ts, value)?;
        self.last_ts = Some(ts);
        self.points += 1;
        if let Some(older) = self.right.push(value) {
            self.left.push(older);
        }
        if !self.left.is_full() {
            self.last = Reading::default();
            return Ok(Score::ZERO);
        }
        let before = self.left.median();
        let after = self.right.median();
        let delta = after - before;

        let mut reading = Reading {
            before,
            after,
            ..Reading::default()
        };
        let mut band = None;
        if self.diffs.ready(self.cfg.min_history) {
            let floor = self.cfg.relative_floor * before.abs() + ABS_FLOOR;
            let judged = self.diffs.judge(self.cfg.c, floor);
            let (q3, spread) = (judged.q3, judged.spread);
            let evidence = judged.evidence(delta.abs());
            let score = if is_harmful(self.cfg.alarm, delta) {
                evidence_score(evidence)
            } else {
                0.0
            };
            reading = Reading {
                scored: true,
                q3,
                spread,
                evidence,
                score,
                ..reading
            };
            band = Some(Band {
                expected: before,
                lower: before - (q3 + spread),
                upper: before + (q3 + spread),
            });
        }

        // The reference learns after scoring, so a point is never judged against itself.
        self.diffs.offer(
            delta.abs(),
            true,
            self.cfg.history_every,
            self.cfg.min_history,
        );
        self.last = reading;
        Ok(Score {
            score: reading.score,
            band,
        })
    }

    fn explain(&self) -> String {
        let r = &self.last;
        let w = self.cfg.window;
        if !r.scored {
            return format!(
                "warming up: {} of {} points seen before level shifts are scored",
                self.points.min(self.warmup_points()),
                self.warmup_points()
            );
        }
        let threshold = r.q3 + r.spread;
        let delta = r.after - r.before;
        let what = if r.score >= 0.5 {
            let dir = if delta > 0.0 { "up" } else { "down" };
            format!(
                "level shifted {dir} from {} to {} (median of {w} points each)",
                fmt_num(r.before),
                fmt_num(r.after)
            )
        } else {
            format!(
                "level steady: median {} over the last {w} points vs {} before",
                fmt_num(r.after),
                fmt_num(r.before)
            )
        };
        format!(
            "{what}; difference {}, flagged from {} (Q3 {} + {} × IQR {} of the last {} \
             median differences); score {:.2}",
            fmt_num(delta.abs()),
            fmt_num(threshold),
            fmt_num(r.q3),
            fmt_num(self.cfg.c),
            fmt_num(r.spread / self.cfg.c),
            self.diffs.len(),
            r.score
        )
    }

    fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.left.heap_bytes()
            + self.right.heap_bytes()
            + self.diffs.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{DAY_POINTS, Noise, STEP, T0, daily_curve, max, noisy, run};

    fn first_at_least(scores: &[f64], s: f64) -> Option<usize> {
        scores.iter().position(|x| *x >= s)
    }

    #[test]
    fn shift_of_ten_sigma_is_flagged_within_five_points() {
        let mut d = LevelShiftDetector::default();
        let mut noise = Noise::new(3);
        let before = noisy(600, 100.0, 3.0, &mut noise);
        let s = run(&mut d, 0, &before);
        assert!(max(&s[80..]) < 0.5, "false alarm before the shift");
        let after = noisy(60, 130.0, 3.0, &mut noise);
        let s = run(&mut d, 600, &after);
        let at = first_at_least(&s, 0.5).expect("shift not flagged");
        assert!(at < 5, "flagged at point {} of the shift", at + 1);
        assert!(max(&s) > 0.99, "a 10σ shift is overwhelming");
        assert!(d.explain().contains("level"), "{}", d.explain());
        // Settled at the new level: quiet again once both windows are past the shift.
        assert!(max(&s[2 * 8..]) < 0.5, "still flagged after settling");
    }

    #[test]
    fn downward_shift_respects_the_alarm_direction() {
        let mut noise = Noise::new(4);
        let before = noisy(400, 50.0, 1.0, &mut noise);
        let after = noisy(40, 40.0, 1.0, &mut noise);
        let mut up = LevelShiftDetector::with_alarm(AlarmDirection::Up);
        let mut down = LevelShiftDetector::with_alarm(AlarmDirection::Down);
        run(&mut up, 0, &before);
        run(&mut down, 0, &before);
        assert!(max(&run(&mut up, 400, &after)) < 0.1);
        let s = run(&mut down, 400, &after);
        assert!(max(&s) > 0.99);
        let text = down.explain();
        assert!(text.contains("steady") || text.contains("down"), "{text}");
    }

    #[test]
    fn stationary_noise_stays_quiet() {
        for seed in [10, 11, 12] {
            let mut d = LevelShiftDetector::default();
            let mut noise = Noise::new(seed);
            let values = noisy(DAY_POINTS, 100.0, 5.0, &mut noise);
            let s = run(&mut d, 0, &values);
            assert!(max(&s) < 0.5, "seed {seed}: max score {}", max(&s));
        }
    }

    #[test]
    fn heavy_tailed_spikes_stay_quiet() {
        // Isolated spikes are what the medians are there to ignore.
        let mut d = LevelShiftDetector::default();
        let mut noise = Noise::new(13);
        let mut values = noisy(4000, 100.0, 2.0, &mut noise);
        for i in (300..4000).step_by(97) {
            values[i] += 60.0;
        }
        let s = run(&mut d, 0, &values);
        assert!(max(&s) < 0.5, "max score {}", max(&s));
    }

    #[test]
    fn daily_sinusoid_stays_quiet() {
        let mut d = LevelShiftDetector::default();
        let mut noise = Noise::new(7);
        let values: Vec<f64> = daily_curve(2 * DAY_POINTS, DAY_POINTS, &mut noise);
        let s = run(&mut d, 0, &values);
        assert!(max(&s) < 0.5, "max score {}", max(&s));
    }

    #[test]
    fn slow_trend_is_not_a_shift() {
        // A leak of +50 % over 4 hours moves each 2-minute window only a little.
        let mut d = LevelShiftDetector::default();
        let mut noise = Noise::new(8);
        let values: Vec<f64> = (0..3000)
            .map(|i| {
                let leak = if i > 600 {
                    (i - 600) as f64 / 960.0
                } else {
                    0.0
                };
                0.4 * (1.0 + 0.5 * leak.min(1.0)) * (1.0 + 0.01 * noise.gaussian())
            })
            .collect();
        let s = run(&mut d, 0, &values);
        assert!(max(&s) < 0.5, "max score {}", max(&s));
    }

    #[test]
    fn constant_series_alarms_only_on_a_real_step() {
        let mut d = LevelShiftDetector::with_alarm(AlarmDirection::Down);
        let s = run(&mut d, 0, &[1.0; 300]);
        assert_eq!(max(&s), 0.0);
        let s = run(&mut d, 300, &[2.0 / 3.0; 20]);
        assert!(first_at_least(&s, 0.5).is_some_and(|i| i < 5), "{s:?}");
    }

    #[test]
    fn warm_up_scores_zero_then_scores() {
        let mut d = LevelShiftDetector::default();
        assert_eq!(d.warmup_points(), 144);
        assert!(d.explain().starts_with("warming up"));
        let mut noise = Noise::new(2);
        let values = noisy(143, 10.0, 1.0, &mut noise);
        for (i, v) in values.iter().enumerate() {
            let s = d.update(T0 + i as Millis * STEP, *v).expect("valid");
            assert_eq!(s, Score::ZERO);
        }
        let s = d.update(T0 + 143 * STEP, 10.0).expect("valid");
        assert!(s.band.is_some());
    }

    #[test]
    fn bad_input_is_refused_and_leaves_state_unchanged() {
        let mut d = LevelShiftDetector::default();
        let mut noise = Noise::new(5);
        run(&mut d, 0, &noisy(100, 10.0, 1.0, &mut noise));
        let before = serde_json::to_string(&d).expect("serialises");
        assert!(matches!(
            d.update(T0 + 100 * STEP, f64::NAN),
            Err(DetectError::NonFinite(_))
        ));
        assert!(matches!(
            d.update(T0 + 100 * STEP, f64::NEG_INFINITY),
            Err(DetectError::NonFinite(_))
        ));
        assert_eq!(
            d.update(T0 + 99 * STEP, 1.0),
            Err(DetectError::OutOfOrder {
                ts: T0 + 99 * STEP,
                last: T0 + 99 * STEP
            })
        );
        assert_eq!(serde_json::to_string(&d).expect("serialises"), before);
    }

    #[test]
    fn checkpoint_round_trip_mid_stream_scores_identically() {
        let mut noise = Noise::new(6);
        let mut values = noisy(500, 20.0, 1.0, &mut noise);
        values.extend(noisy(100, 26.0, 1.0, &mut noise));
        let mut a = LevelShiftDetector::default();
        run(&mut a, 0, &values[..450]);
        let json = serde_json::to_string(&a).expect("serialises");
        let mut b: LevelShiftDetector = serde_json::from_str(&json).expect("restores");
        assert_eq!(a.explain(), b.explain());
        let sa = run(&mut a, 450, &values[450..]);
        let sb = run(&mut b, 450, &values[450..]);
        assert_eq!(sa, sb);
        assert!(max(&sa) > 0.5, "the shift after the checkpoint is found");
        assert_eq!(a.state_bytes(), b.state_bytes());
    }

    #[test]
    fn state_fits_the_budget() {
        let mut d = LevelShiftDetector::default();
        let mut noise = Noise::new(9);
        run(&mut d, 0, &noisy(1000, 1.0, 0.1, &mut noise));
        println!("LevelShiftDetector: {} bytes", d.state_bytes());
        assert!(d.state_bytes() <= 2048, "{} bytes", d.state_bytes());
        assert_eq!(d.state_bytes(), LevelShiftDetector::default().state_bytes());
    }
}
