//! Values that break from the recent past (ADTK's `PersistAD`) and series that stop moving: a
//! frozen exporter repeating its last value where the series normally varies.

use crate::detector::{Sanitise, check_point};
use crate::window::{
    ABS_FLOOR, IqrReference, MAX_RING, SortedRing, evidence_score, fmt_num, is_harmful,
};
use crate::{AlarmDirection, Band, DetectError, Detector, Score};
use nightshift_core::{Millis, format_duration};
use serde::{Deserialize, Serialize};

/// Surprise (in nats) of a frozen run that scores 0.5 on its own: a run that likely happens by
/// chance less than once in a million given how often the series repeats a value.
const STUCK_SURPRISE: f64 = 13.815_510_557_964_274; // ln(1e6)
/// The chance of another repeat is never taken below this, so one repeat in a series that has
/// never repeated is worth at most ln(1000) ≈ 6.9 nats.
const MIN_REPEAT_CHANCE: f64 = 1e-3;
/// Steps the repeat statistics and the usual step are learned over (about an hour at 15 s).
const REPEAT_MEMORY: f64 = 256.0;
const STEP_MEMORY: f64 = 64.0;
/// Steps learned before a frozen run is scored.
const STUCK_MIN_STEPS: u64 = 64;
/// Weight, in shares of steps, of an imagined "moved after a repeat": the repeat chance of a
/// series that has seen few repeats lately leans toward zero instead of trusting one or two,
/// and falls to half of what it was some seven hours (at 15 s) after the repeats stop.
const REPEAT_PRIOR: f64 = 1.0 / 1024.0;

/// Tuning of [`PersistDetector`]. The defaults need no per-metric adjustment: both checks are
/// relative to what the series itself has shown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersistConfig {
    /// Points in the preceding window whose median a value is compared with (1 to 64). ADTK
    /// defaults to 1 (the previous value); 8 keeps one noisy neighbour from setting the
    /// reference.
    pub window: usize,
    /// ADTK's factor: a change from the preceding median beyond Q3 + c × IQR of the changes
    /// seen is flagged (score 0.5).
    pub c: f64,
    /// Which changes count (ADTK's `side`). The stuck check ignores it.
    pub alarm: AlarmDirection,
    /// Changes kept as the reference (4 to 64).
    pub history: usize,
    /// Reference changes needed before changes are scored.
    pub min_history: usize,
    /// Changes smaller than this share of the level never reach 0.5.
    pub relative_floor: f64,
    /// A frozen run of this many points scores 0.5 when such a run is unheard of for the
    /// series (2.5 minutes at 15 s); 1.5 times as many score 0.9.
    pub stuck_points: u32,
    /// A step counts as "no change" when it is at most this share of the series' usual
    /// non-zero step (exact repeats always count).
    pub stuck_tolerance: f64,
    /// After this long frozen, the frozen value is taken as the new normal and the repeat
    /// chance learns again (a gauge that legitimately stopped changing).
    pub relearn_after: Millis,
}

impl Default for PersistConfig {
    fn default() -> Self {
        Self {
            window: 8,
            c: 3.0,
            alarm: AlarmDirection::Both,
            history: 64,
            min_history: 16,
            relative_floor: 0.01,
            stuck_points: 10,
            stuck_tolerance: 1e-3,
            relearn_after: 6 * 60 * 60_000,
        }
    }
}

impl Sanitise for PersistConfig {
    fn sanitised(self) -> Self {
        let d = Self::default();
        let history = self.history.clamp(4, MAX_RING);
        let pos = |x: f64, or: f64| if x.is_finite() && x > 0.0 { x } else { or };
        Self {
            window: self.window.clamp(1, MAX_RING),
            c: pos(self.c, d.c),
            alarm: self.alarm,
            history,
            min_history: self.min_history.clamp(1, history),
            relative_floor: if self.relative_floor.is_finite() && self.relative_floor >= 0.0 {
                self.relative_floor
            } else {
                d.relative_floor
            },
            stuck_points: self.stuck_points.max(2),
            stuck_tolerance: if self.stuck_tolerance.is_finite() && self.stuck_tolerance >= 0.0 {
                self.stuck_tolerance
            } else {
                d.stuck_tolerance
            },
            relearn_after: self.relearn_after.max(0),
        }
    }
}

/// Which check drove the last score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Finding {
    #[default]
    WarmingUp,
    /// Neither check is near its flag.
    Normal,
    /// The value broke from the preceding median.
    Jump,
    /// The series stopped moving.
    Stuck,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Reading {
    finding: Finding,
    value: f64,
    median: f64,
    q3: f64,
    spread: f64,
    jump_score: f64,
    stuck_score: f64,
    score: f64,
}

/// Finds points that break from the recent past and series that freeze.
///
/// * **Jumps** — ADTK's `PersistAD` (Arundo, *Anomaly Detection Toolkit*,
///   <https://adtk.readthedocs.io/en/stable/api/detectors.html#adtk.detector.PersistAD>): the
///   change from the median of the preceding [`window`](PersistConfig::window) points, flagged
///   beyond Q3 + c × IQR (c = 3) of the |changes| seen (quartiles of the last
///   [`history`](PersistConfig::history), averaged over about 256 points), with a sign check for
///   [`alarm`](PersistConfig::alarm). Evidence e = (|change| − Q3) / (c × IQR), c × IQR floored at
///   [`relative_floor`](PersistConfig::relative_floor) of the level.
/// * **Frozen series** — a run of steps that do not move (exact repeats, or steps under
///   [`stuck_tolerance`](PersistConfig::stuck_tolerance) of the usual non-zero step). Its
///   surprise is repeats × ln(1 / p), with p the chance the series normally repeats again right
///   after a repeat (the share of its recent steps that were repeats after a repeat, over the
///   share that came after a repeat, both exponentially weighted over about 256 steps): the
///   log-probability of a run this long arising by chance, as in a run-length test. A run is
///   learned when it ends, and judged against what was learned before it began. Evidence is
///   the smaller of run / `stuck_points` and surprise / ln(10⁶). A series that is always
///   constant has p = 1, so no surprise: only a change from varying to frozen alarms, and
///   intermittent series (mostly zero) need runs far longer than their usual ones. Steps of a
///   flagged frozen run are not learned (for [`relearn_after`](PersistConfig::relearn_after)),
///   so a frozen exporter keeps alarming.
/// * **Score**: the larger of the two evidences through 1 − 2^(−e³): 0.5 at the flag, 0.9 at
///   e = 1.5, above 0.99 from e = 2.
/// * **Band**: expected = the preceding window's median; lower/upper = expected ∓
///   (Q3 + c × IQR).
/// * **Warm-up**: score 0 until the window is full and the reference holds
///   [`min_history`](PersistConfig::min_history) changes (25 points by default); only frozen
///   runs that begin after the first 64 steps are scored.
/// * **Cost**: one push into the 8-value window and one into the 64-value reference per point;
///   1,544 bytes of state by default.
///
/// After a level shift the jump check fires for up to `window` points, then the preceding
/// median has moved to the new level and it is quiet again. The jump check scores single
/// points, so plain Gaussian noise has isolated points at 0.5 or more about 4 times in 10,000
/// (ADTK's own rate at c = 3 is about 3 in 10,000; none reached 0.99 in 300,000 points tried);
/// on intermittent series (mostly zero) the quartiles of change are zero and every burst is a
/// jump, as in ADTK, while the frozen check stays quiet there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistDetector {
    #[serde(deserialize_with = "crate::detector::sanitised")]
    cfg: PersistConfig,
    last_ts: Option<Millis>,
    preceding: SortedRing,
    /// Reference: |value − preceding median| samples.
    changes: IqrReference,
    prev: Option<f64>,
    /// Steps learned (moving or not).
    steps: u64,
    /// Shares of recent steps that came right after a repeat, and that were themselves a
    /// repeat after a repeat. Their ratio is the chance that a repeat follows a repeat:
    /// conditional, because a series with a few long runs (errors that are mostly zero)
    /// repeats far more within a run than its overall share of repeats says; and a ratio of
    /// shares of all steps, so that once a series stops repeating both shares fade and the
    /// chance falls back toward zero.
    after_repeat: f64,
    repeat_after_repeat: f64,
    /// Non-zero steps learned by the usual step.
    moving_steps: u64,
    /// The repeat chance when the current run began (or was taken as the new normal), and
    /// the run's length then: a run is judged against what the series showed before it.
    run_chance: f64,
    run_chance_from: u32,
    /// Whether the current run began after warm-up. One that began before is how the series
    /// started out (a constant series is one long such run): it is learned, never scored.
    run_scored: bool,
    /// Whether the current run has reached the flag: it will not be learned.
    run_flagged: bool,
    /// Repeats of the current run already learned.
    run_learned: u32,
    /// Mean size of the steps that moved.
    usual_step: f64,
    /// Points in the current frozen run (1 = the last point moved).
    run_points: u32,
    run_since: Millis,
    points: u64,
    last: Reading,
}

impl Default for PersistDetector {
    fn default() -> Self {
        Self::new(PersistConfig::default())
    }
}

impl PersistDetector {
    /// Name reported in explanations and evidence.
    pub const NAME: &'static str = "persist";

    /// A detector with `cfg`, each field clamped to its valid range.
    pub fn new(cfg: PersistConfig) -> Self {
        let cfg = cfg.sanitised();
        Self {
            cfg,
            last_ts: None,
            preceding: SortedRing::new(cfg.window),
            changes: IqrReference::new(cfg.history),
            prev: None,
            steps: 0,
            after_repeat: 0.0,
            repeat_after_repeat: 0.0,
            moving_steps: 0,
            run_chance: 0.0,
            run_chance_from: 0,
            run_scored: false,
            run_flagged: false,
            run_learned: 0,
            usual_step: 0.0,
            run_points: 0,
            run_since: 0,
            points: 0,
            last: Reading::default(),
        }
    }

    /// A detector with default tuning whose jump check alarms in `alarm` direction only.
    pub fn with_alarm(alarm: AlarmDirection) -> Self {
        Self::new(PersistConfig {
            alarm,
            ..PersistConfig::default()
        })
    }

    pub fn config(&self) -> &PersistConfig {
        &self.cfg
    }

    /// Number (counting from 1) of the first point whose jump can score.
    pub fn warmup_points(&self) -> u64 {
        (self.cfg.window + self.cfg.min_history + 1) as u64
    }

    /// How long the series has repeated its value, when it is in a run of at least two points.
    pub fn frozen_for(&self) -> Option<Millis> {
        match self.last_ts {
            Some(ts) if self.run_points >= 2 => Some(ts.saturating_sub(self.run_since)),
            _ => None,
        }
    }

    /// Chance, learned so far, that the series repeats its value again right after a repeat.
    pub fn repeat_chance(&self) -> f64 {
        self.repeat_after_repeat / (self.after_repeat + REPEAT_PRIOR)
    }

    fn stuck_evidence(&self) -> f64 {
        if !self.run_scored || self.run_points < 2 {
            return 0.0;
        }
        let repeats = f64::from(self.run_points.saturating_sub(self.run_chance_from.max(1)));
        let surprise = repeats * (1.0 / self.run_chance.max(MIN_REPEAT_CHANCE)).ln();
        (f64::from(self.run_points) / f64::from(self.cfg.stuck_points))
            .min(surprise / STUCK_SURPRISE)
    }

    /// Whether the series is in a flagged frozen run: it stays out of the reference of changes.
    fn frozen(&self) -> bool {
        self.run_flagged
    }

    /// Learns one step: whether the step before it was a repeat, and whether it is one.
    fn learn_step(&mut self, after_repeat: bool, still: bool) {
        self.steps += 1;
        let a = (1.0 / self.steps as f64).max(1.0 / REPEAT_MEMORY);
        let both = after_repeat && still;
        self.after_repeat += a * (f64::from(u8::from(after_repeat)) - self.after_repeat);
        self.repeat_after_repeat += a * (f64::from(u8::from(both)) - self.repeat_after_repeat);
    }

    /// Learns `k` repeats in a row that each followed a repeat, in closed form once the
    /// averages have reached their fixed memory, so a long run costs O(1) when it ends.
    fn learn_repeats(&mut self, mut k: u64) {
        while k > 0 && (self.steps as f64) < REPEAT_MEMORY {
            self.learn_step(true, true);
            k -= 1;
        }
        if k > 0 {
            self.steps = self.steps.saturating_add(k);
            let keep = (1.0 - 1.0 / REPEAT_MEMORY).powf(k as f64);
            self.after_repeat = 1.0 + (self.after_repeat - 1.0) * keep;
            self.repeat_after_repeat = 1.0 + (self.repeat_after_repeat - 1.0) * keep;
        }
    }

    /// Learns the repeats of the current run not yet learned.
    fn learn_run(&mut self) {
        let repeats = self.run_points.saturating_sub(1);
        if self.run_learned == 0 && repeats > 0 {
            // The run's first repeat followed a step that moved.
            self.learn_step(false, true);
            self.run_learned = 1;
        }
        if repeats > self.run_learned {
            self.learn_repeats(u64::from(repeats - self.run_learned));
        }
        self.run_learned = repeats;
    }
}

impl Detector for PersistDetector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        check_point(self.last_ts, ts, value)?;
        self.last_ts = Some(ts);
        self.points += 1;

        if let Some(prev) = self.prev {
            let step = (value - prev).abs();
            let still = step == 0.0 || step <= self.cfg.stuck_tolerance * self.usual_step;
            if still {
                if self.run_points == 1 {
                    self.run_chance = self.repeat_chance();
                    self.run_chance_from = 1;
                    self.run_scored = self.steps >= STUCK_MIN_STEPS;
                    self.run_flagged = false;
                    self.run_learned = 0;
                }
                self.run_points = self.run_points.saturating_add(1);
            } else {
                let after_repeat = self.run_points >= 2;
                if after_repeat && !self.run_flagged {
                    self.learn_run();
                }
                self.learn_step(after_repeat, false);
                self.moving_steps += 1;
                let b = (1.0 / self.moving_steps as f64).max(1.0 / STEP_MEMORY);
                self.usual_step += b * (step - self.usual_step);
                self.run_points = 1;
                self.run_since = ts;
                self.run_flagged = false;
            }
        } else {
            self.run_points = 1;
            self.run_since = ts;
        }
        self.prev = Some(value);

        if self.stuck_evidence() >= 1.0 {
            self.run_flagged = true;
        }
        if self.run_flagged && ts.saturating_sub(self.run_since) >= self.cfg.relearn_after {
            // Frozen for `relearn_after`: this is what the series does now. The run so far is
            // learned and judged from here on against what it taught.
            self.learn_run();
            self.run_chance = self.repeat_chance();
            self.run_chance_from = self.run_points;
            self.run_flagged = false;
        }
        let stuck_score = evidence_score(self.stuck_evidence());
        let frozen = self.frozen();

        let mut reading = Reading {
            value,
            stuck_score,
            score: stuck_score,
            finding: Finding::WarmingUp,
            ..Reading::default()
        };
        let mut band = None;
        if self.preceding.is_full() {
            let median = self.preceding.median();
            let change = value - median;
            reading.median = median;
            if self.changes.ready(self.cfg.min_history) {
                let floor = self.cfg.relative_floor * median.abs() + ABS_FLOOR;
                let judged = self.changes.judge(self.cfg.c, floor);
                let (q3, spread) = (judged.q3, judged.spread);
                let jump_score = if is_harmful(self.cfg.alarm, change) {
                    evidence_score(judged.evidence(change.abs()))
                } else {
                    0.0
                };
                reading.q3 = q3;
                reading.spread = spread;
                reading.jump_score = jump_score;
                band = Some(Band {
                    expected: median,
                    lower: median - (q3 + spread),
                    upper: median + (q3 + spread),
                });
            }
            // A frozen stretch is not the series' usual variation: it stays out of the reference.
            self.changes
                .offer(change.abs(), !frozen, 1, self.cfg.min_history);
        }
        self.preceding.push(value);

        reading.score = reading.jump_score.max(stuck_score);
        reading.finding = if band.is_none() && self.steps < STUCK_MIN_STEPS {
            Finding::WarmingUp
        } else if reading.score < 0.25 {
            Finding::Normal
        } else if stuck_score >= reading.jump_score {
            Finding::Stuck
        } else {
            Finding::Jump
        };
        self.last = reading;
        Ok(Score {
            score: reading.score,
            band,
        })
    }

    fn explain(&self) -> String {
        let r = &self.last;
        let w = self.cfg.window;
        let repeat = format!("{:.1} %", 100.0 * self.run_chance);
        match r.finding {
            Finding::WarmingUp => format!(
                "warming up: {} of {} points seen before changes are scored",
                self.points.min(self.warmup_points()),
                self.warmup_points()
            ),
            Finding::Stuck => format!(
                "value frozen at {} for {} points ({}) where the series usually moves by {} a \
                 step and had repeated again after a repeat {repeat} of the time; score {:.2}",
                fmt_num(r.value),
                self.run_points,
                format_duration(self.frozen_for().unwrap_or(0)),
                fmt_num(self.usual_step),
                r.score
            ),
            Finding::Jump | Finding::Normal => {
                let change = r.value - r.median;
                let head = if r.finding == Finding::Jump {
                    let dir = if change > 0.0 { "above" } else { "below" };
                    format!(
                        "value {} is {} {dir} the median {} of the preceding {w} points",
                        fmt_num(r.value),
                        fmt_num(change.abs()),
                        fmt_num(r.median)
                    )
                } else {
                    format!(
                        "value {} within reach of the median {} of the preceding {w} points",
                        fmt_num(r.value),
                        fmt_num(r.median)
                    )
                };
                format!(
                    "{head}; changes are flagged from {} (Q3 {} + {} × IQR {} of the last {}); \
                     frozen run {} points; score {:.2}",
                    fmt_num(r.q3 + r.spread),
                    fmt_num(r.q3),
                    fmt_num(self.cfg.c),
                    fmt_num(r.spread / self.cfg.c),
                    self.changes.len(),
                    self.run_points,
                    r.score
                )
            }
        }
    }

    fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.preceding.heap_bytes() + self.changes.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{DAY_POINTS, Noise, STEP, T0, daily_curve, max, noisy, run};

    /// What "quiet" means for a check that scores single points: ADTK's c = 3 flags about
    /// 3 in 10,000 points of Gaussian noise, so isolated points may reach 0.5, but rarely,
    /// never two close together and never overwhelmingly.
    fn assert_quiet(scores: &[f64]) {
        let flagged: Vec<usize> = (0..scores.len()).filter(|i| scores[*i] >= 0.5).collect();
        assert!(
            flagged.len() as f64 <= 1e-3 * scores.len() as f64,
            "{} points flagged",
            flagged.len()
        );
        assert!(flagged.windows(2).all(|w| w[1] - w[0] >= 4), "{flagged:?}");
        assert!(max(scores) < 0.99, "max score {}", max(scores));
    }

    /// Points of `values` that score 0.5 or more because the series looks frozen.
    fn stuck_alarms(d: &mut PersistDetector, start: usize, values: &[f64]) -> usize {
        let mut n = 0;
        for (i, v) in values.iter().enumerate() {
            let s = d
                .update(T0 + (start + i) as Millis * STEP, *v)
                .expect("synthetic points are valid");
            if s.score >= 0.5 && d.last.finding == Finding::Stuck {
                n += 1;
            }
        }
        n
    }

    #[test]
    fn frozen_exporter_is_flagged_after_ten_points() {
        let mut d = PersistDetector::default();
        let mut noise = Noise::new(1);
        let s = run(&mut d, 0, &noisy(600, 40.0, 2.0, &mut noise));
        assert!(max(&s) < 0.5, "false alarm while varying: {}", max(&s));
        let frozen = vec![41.37; 40];
        let s = run(&mut d, 600, &frozen);
        // Point 0 of the frozen stretch is the last real value, repeated from there on.
        let first = s.iter().position(|x| *x >= 0.5).expect("freeze flagged");
        assert_eq!(first, 9, "the 10th point of the run reaches 0.5: {s:?}");
        assert!(s[14] > 0.9 && s[19] > 0.99, "{s:?}");
        let text = d.explain();
        assert!(text.contains("frozen at 41.37 for 40 points"), "{text}");
        assert_eq!(d.frozen_for(), Some(39 * STEP));
        // It thaws: quiet again once the preceding window is past the frozen value.
        let s = run(&mut d, 640, &noisy(60, 40.0, 2.0, &mut noise));
        assert!(max(&s[8..]) < 0.5, "{s:?}");
        assert!(d.frozen_for().is_none());
    }

    #[test]
    fn near_freeze_within_tolerance_counts_as_frozen() {
        let mut d = PersistDetector::default();
        let mut noise = Noise::new(2);
        run(&mut d, 0, &noisy(400, 1000.0, 10.0, &mut noise));
        let almost: Vec<f64> = (0..20).map(|i| 1003.0 + 1e-4 * f64::from(i % 2)).collect();
        let s = run(&mut d, 400, &almost);
        assert!(max(&s) > 0.9, "{s:?}");
    }

    #[test]
    fn always_constant_series_never_alarms() {
        let mut d = PersistDetector::default();
        let s = run(&mut d, 0, &vec![1.0; 3000]);
        assert_eq!(max(&s), 0.0);
        // An occasional change in a mostly constant gauge is a jump, not a freeze.
        let mut v = vec![1.0; 200];
        v.extend(vec![2.0; 400]);
        let s = run(&mut d, 3000, &v);
        assert!(s[200] > 0.99, "the step is a jump");
        assert!(d.repeat_chance() > 0.99, "{}", d.repeat_chance());
        assert!(max(&s[210..]) < 0.05, "{}", max(&s[210..]));
    }

    #[test]
    fn a_series_that_started_flat_is_watched_once_it_varies() {
        // Two hours flat (a fresh exporter), then twelve varying: the early repeats fade, and a
        // freeze alarms again.
        let mut d = PersistDetector::default();
        let mut noise = Noise::new(25);
        assert_eq!(max(&run(&mut d, 0, &[7.0; 480])), 0.0);
        run(&mut d, 480, &noisy(2880, 7.0, 0.5, &mut noise));
        assert!(d.repeat_chance() < 0.05, "{}", d.repeat_chance());
        let s = run(&mut d, 3360, &[7.25; 20]);
        assert!(s[9] >= 0.5 && s[19] > 0.99, "{s:?}");
    }

    #[test]
    fn intermittent_series_usual_zero_runs_stay_quiet() {
        // Errors that are zero most of the time: long runs of zeros are its normal.
        for seed in [21, 22, 23] {
            let mut d = PersistDetector::with_alarm(AlarmDirection::Up);
            let mut noise = Noise::new(seed);
            let values: Vec<f64> = (0..DAY_POINTS)
                .map(|_| {
                    if noise.uniform() < 0.07 {
                        0.013 * (1.0 + noise.uniform())
                    } else {
                        0.0
                    }
                })
                .collect();
            assert_eq!(stuck_alarms(&mut d, 0, &values), 0, "seed {seed}");
            assert!(d.repeat_chance() > 0.85, "{}", d.repeat_chance());
        }
    }

    #[test]
    fn quantised_gauge_updating_every_minute_stays_quiet() {
        // Scraped every 15 s, the exporter refreshes every 60 s: three repeats in four is normal.
        let mut d = PersistDetector::default();
        let mut noise = Noise::new(24);
        let mut v = 0.0;
        let values: Vec<f64> = (0..DAY_POINTS)
            .map(|i| {
                if i % 4 == 0 {
                    v = 50.0 + 5.0 * noise.gaussian();
                }
                v
            })
            .collect();
        assert_eq!(stuck_alarms(&mut d, 0, &values), 0);
        assert!(
            (d.repeat_chance() - 2.0 / 3.0).abs() < 0.1,
            "{}",
            d.repeat_chance()
        );
        // Frozen for 10 minutes is a different matter: far beyond its usual three repeats.
        let s = run(&mut d, DAY_POINTS, &[v; 40]);
        assert!(s[9] < 0.5 && s[39] > 0.5, "{} {}", s[9], s[39]);
    }

    #[test]
    fn spike_is_flagged_and_noise_is_quiet() {
        for seed in [3, 4, 5] {
            let mut d = PersistDetector::default();
            let mut noise = Noise::new(seed);
            let mut values = noisy(DAY_POINTS, 100.0, 5.0, &mut noise);
            let s = run(&mut d, 0, &values[..DAY_POINTS - 100]);
            assert_quiet(&s);
            values[DAY_POINTS - 50] += 60.0;
            let s = run(&mut d, DAY_POINTS - 100, &values[DAY_POINTS - 100..]);
            assert!(s[50] > 0.99, "seed {seed}: spike scored {}", s[50]);
            assert!(d.explain().contains("median"));
        }
    }

    #[test]
    fn daily_sinusoid_stays_quiet() {
        let mut d = PersistDetector::default();
        let mut noise = Noise::new(7);
        let values: Vec<f64> = daily_curve(2 * DAY_POINTS, DAY_POINTS, &mut noise);
        assert_eq!(stuck_alarms(&mut d, 0, &values), 0);
        let s = run(&mut d, values.len(), &values);
        assert_quiet(&s);
    }

    #[test]
    fn level_shift_is_quiet_once_settled() {
        let mut d = PersistDetector::default();
        let mut noise = Noise::new(8);
        run(&mut d, 0, &noisy(600, 100.0, 3.0, &mut noise));
        let s = run(&mut d, 600, &noisy(200, 130.0, 3.0, &mut noise));
        assert!(s[0] > 0.99, "the jump itself is flagged");
        assert!(max(&s[8..]) < 0.5, "{:?}", &s[..20]);
    }

    #[test]
    fn slow_trend_is_neither_a_jump_nor_a_freeze() {
        let mut d = PersistDetector::default();
        let mut noise = Noise::new(9);
        let v: Vec<f64> = (0..3000)
            .map(|i| 0.4 + 0.0001 * i as f64 + 0.004 * noise.gaussian())
            .collect();
        assert_eq!(stuck_alarms(&mut d, 0, &v[..1000]), 0);
        assert_quiet(&run(&mut d, 1000, &v[1000..]));
    }

    #[test]
    fn a_long_freeze_becomes_the_new_normal() {
        let cfg = PersistConfig {
            relearn_after: 60 * 60_000,
            ..PersistConfig::default()
        };
        let mut d = PersistDetector::new(cfg);
        let mut noise = Noise::new(10);
        run(&mut d, 0, &noisy(400, 5.0, 1.0, &mut noise));
        let s = run(&mut d, 400, &[5.5; 4 * 60 * 4]);
        assert!(s[60] > 0.99, "frozen within the hour alarms");
        assert!(
            s[s.len() - 1] < 0.5,
            "after hours frozen it is the new normal"
        );
    }

    #[test]
    fn warm_up_scores_zero() {
        let mut d = PersistDetector::default();
        assert!(d.explain().starts_with("warming up"));
        let mut noise = Noise::new(11);
        assert_eq!(d.warmup_points(), 25);
        let s = run(&mut d, 0, &noisy(24, 10.0, 1.0, &mut noise));
        assert_eq!(max(&s), 0.0);
        let score = d.update(T0 + 24 * STEP, 10.0).expect("valid");
        assert!(score.band.is_some());
    }

    #[test]
    fn bad_input_is_refused_and_leaves_state_unchanged() {
        let mut d = PersistDetector::default();
        let mut noise = Noise::new(12);
        run(&mut d, 0, &noisy(100, 10.0, 1.0, &mut noise));
        let before = serde_json::to_string(&d).expect("serialises");
        assert!(matches!(
            d.update(T0 + 100 * STEP, f64::NAN),
            Err(DetectError::NonFinite(_))
        ));
        assert!(matches!(
            d.update(T0 + 50 * STEP, 1.0),
            Err(DetectError::OutOfOrder { .. })
        ));
        assert_eq!(serde_json::to_string(&d).expect("serialises"), before);
    }

    #[test]
    fn checkpoint_round_trip_mid_stream_scores_identically() {
        let mut noise = Noise::new(13);
        let mut values = noisy(500, 20.0, 1.0, &mut noise);
        values.extend([21.0; 30]);
        values.extend(noisy(50, 20.0, 1.0, &mut noise));
        let mut a = PersistDetector::default();
        run(&mut a, 0, &values[..505]);
        let json = serde_json::to_string(&a).expect("serialises");
        let mut b: PersistDetector = serde_json::from_str(&json).expect("restores");
        let sa = run(&mut a, 505, &values[505..]);
        let sb = run(&mut b, 505, &values[505..]);
        assert_eq!(sa, sb);
        assert!(
            max(&sa) > 0.9,
            "the freeze straddling the checkpoint is found"
        );
        assert_eq!(a.explain(), b.explain());
    }

    #[test]
    fn state_fits_the_budget() {
        let mut d = PersistDetector::default();
        let mut noise = Noise::new(14);
        run(&mut d, 0, &noisy(1000, 1.0, 0.1, &mut noise));
        println!("PersistDetector: {} bytes", d.state_bytes());
        assert!(d.state_bytes() <= 2048, "{} bytes", d.state_bytes());
        assert_eq!(d.state_bytes(), PersistDetector::default().state_bytes());
    }
}
