//! A streaming per-series detector that learns the series' own normal (robust level, spread and
//! daily profile) and scores each new point by how far it falls outside it.

use crate::detector::check_point;
use crate::event::{EventPhase, EventRule, EventTracker};
use crate::window::MEAN_ABS_TO_SIGMA;
use crate::{AlarmDirection, Band, DetectError, Detector, Score};
use nightshift_core::{Direction, Millis};
use serde::{Deserialize, Serialize};

/// Half-hour slots of the daily profile.
const SLOTS: usize = 48;
const SLOT_MS: Millis = 30 * 60_000;
const DAY_MS: Millis = 24 * 60 * 60_000;
/// A profile is used after a day of history with at least three quarters of its slots learned.
const MIN_FILLED_SLOTS: u32 = 36;
/// Weight of each new day in a profile slot (about three days of memory).
const PROFILE_WEIGHT: f32 = 0.3;

/// Residuals beyond this many scales are clipped in the level update (Huber) and winsorised in
/// the spread update, so the outliers the detector exists to find barely move its baseline.
const CLIP: f64 = 3.0;
/// Intermittent series (errors that are zero most of the time) have a tiny mean absolute
/// deviation but recurring bursts; the burst size has to count as normal too. The tail is the
/// 5th-largest |residual| learned, each fading with a 6-hour time constant: one outlier (a GC
/// pause) does not move it, bursts that keep coming do.
const TAIL_RANK: usize = 5;
const TAIL_FADE: Millis = 6 * 60 * 60_000;
/// Tail-to-scale divisor. For normal noise at 15 s steps the 5th largest residual of the last
/// few hours is about 3 σ, so dividing by 3.5 leaves such series on their deviation-based
/// scale; only a heavier tail raises the scale.
const TAIL_TO_SCALE: f64 = 3.5;
/// Learned points per tail rank while the series is young (rank 1 right after warm-up).
const TAIL_RANK_EVERY: u32 = 40;
/// Warm-up points before this one are too early (the level is still settling) to enter the tail.
const TAIL_FROM_POINT: u32 = 10;

/// Score calibration: a Weibull curve of shape 3 with its median at z = 4, so
/// score(4) = 0.5, score(6) ≈ 0.9, score(8) ≈ 0.996.
const SCORE_Z_MEDIAN: f64 = 4.0;
const SCORE_SCALE: f64 = 4.519_789_105_349_560_5;
/// A point "hits" at this score; an event needs 3 hits among the last 4 points and ends after
/// 2 points in a row that miss. There is no shortcut for extreme points: derived rates smear a
/// 30 s burst over two points, and a burst is exactly the harmless blip persistence is there to
/// ignore.
const HIT_SCORE: f64 = 0.5;
const EVENT_RULE: EventRule = EventRule {
    hits_for_event: 3,
    window: 4,
    quiet_to_end: 2,
};
/// A point is learned only once it has left the persistence window without an event starting,
/// so the first points of an anomaly never reach the baseline.
const PENDING: usize = 3;

/// Tuning of [`RobustBaselineDetector`]. The defaults need no per-metric adjustment: every
/// threshold is relative to what the series itself has shown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RobustBaselineConfig {
    pub alarm: AlarmDirection,
    /// Points learned before any score is given.
    pub warmup_points: u32,
    /// Time constant of the level. 10 minutes lags a ±35 % daily curve by under 2 % of its
    /// level, while a leak that doubles in 30 minutes outruns it within minutes.
    pub level_time_constant: Millis,
    /// Time constant of the spread and of the model-accuracy averages.
    pub spread_time_constant: Millis,
    /// Spread floor as a share of |expected|: flat series (`up` = 1) must not alarm on wiggles.
    pub relative_floor: f64,
    /// Absolute spread floor, for series that sit at zero.
    pub absolute_floor: f64,
    /// After this long in one continuous anomaly, the current level becomes the new normal.
    pub relearn_after: Millis,
}

impl Default for RobustBaselineConfig {
    fn default() -> Self {
        Self {
            alarm: AlarmDirection::Both,
            warmup_points: 40,
            level_time_constant: 10 * 60_000,
            spread_time_constant: 60 * 60_000,
            relative_floor: 0.015,
            absolute_floor: 1e-6,
            relearn_after: 2 * 60 * 60_000,
        }
    }
}

/// Where a point stands relative to the series' anomaly events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Too few points learned to score.
    WarmingUp,
    /// No event (the point may still score high: a blip is not an event).
    Normal,
    /// This point confirms a new anomaly event.
    Onset,
    /// An event that started earlier goes on.
    Ongoing,
}

/// The verdict on one point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// Calibrated score in [0, 1] in the harmful direction (0 in the harmless one, and while
    /// warming up).
    pub score: f64,
    /// Signed robust z-score: (value − expected) / scale.
    pub z: f64,
    pub expected: f64,
    /// The band where the score stays under 0.5 (expected ± 4 scales).
    pub lower: f64,
    pub upper: f64,
    /// The event's direction while one is active, else the sign of this point's deviation.
    pub direction: Direction,
    pub phase: Phase,
}

impl Assessment {
    /// Whether the series is in an anomaly event at this point.
    pub fn is_anomalous(&self) -> bool {
        matches!(self.phase, Phase::Onset | Phase::Ongoing)
    }
}

/// Maps a harmful-direction robust z-score to [0, 1]: 1 − exp(−(z / s)³) with s chosen so that
/// z = 4 scores 0.5. Smooth and monotone; near zero below z = 2, near one from z = 8.
pub fn calibrated_score(z: f64) -> f64 {
    if z <= 0.0 || z.is_nan() {
        return 0.0;
    }
    1.0 - (-(z / SCORE_SCALE).powi(3)).exp()
}

/// 1 − exp(−dt/τ) with dt clamped to [0, τ/4]. On that range a fifth-order Taylor polynomial is
/// within 4e-7 of the exponential and far cheaper, which matters at one call per point.
fn ewma_weight(dt: Millis, tau: Millis) -> f64 {
    let tau = tau.max(1);
    let x = dt.clamp(0, tau / 4) as f64 / tau as f64;
    x * (1.0 - x / 2.0 * (1.0 - x / 3.0 * (1.0 - x / 4.0 * (1.0 - x / 5.0))))
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Episode {
    since: Millis,
    direction: Direction,
    /// What the levels would be had they kept learning, adopted if the episode outlasts
    /// `relearn_after`.
    shadow_flat: f64,
    shadow_seasonal: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Pending {
    ts: Millis,
    value: f64,
    /// One-step-ahead residual and robust scale at scoring time.
    residual: f64,
    scale: f64,
}

/// The largest |residuals| seen, each fading with time constant [`TAIL_FADE`], enough to read
/// off the [`TAIL_RANK`]-th largest. Each is kept as `ln r + t / TAIL_FADE`: comparing these
/// compares the faded sizes at any common time, so nothing needs rescaling as time passes, and
/// no entry drops out abruptly.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct TopResiduals {
    /// An empty slot, or a residual of 0, holds −∞: written as `null` in a checkpoint, since
    /// JSON has no infinities.
    #[serde(with = "neg_infinity_as_null")]
    keys: [f64; TAIL_RANK],
    len: u8,
}

/// Serde for [`TopResiduals::keys`]: −∞ as `null` (JSON has no infinities), read back the same.
mod neg_infinity_as_null {
    use super::TAIL_RANK;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(keys: &[f64; TAIL_RANK], s: S) -> Result<S::Ok, S::Error> {
        let written: Vec<Option<f64>> = keys
            .iter()
            .map(|k| (*k != f64::NEG_INFINITY).then_some(*k))
            .collect();
        written.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[f64; TAIL_RANK], D::Error> {
        let read = Vec::<Option<f64>>::deserialize(d)?;
        let len = read.len();
        let keys: Vec<f64> = read
            .into_iter()
            .map(|k| k.unwrap_or(f64::NEG_INFINITY))
            .collect();
        keys.try_into()
            .map_err(|_| serde::de::Error::invalid_length(len, &"one key per tail rank"))
    }
}

impl Default for TopResiduals {
    fn default() -> Self {
        Self {
            keys: [f64::NEG_INFINITY; TAIL_RANK],
            len: 0,
        }
    }
}

impl TopResiduals {
    fn key(ts: Millis, r: f64) -> f64 {
        r.ln() + ts as f64 / TAIL_FADE as f64
    }

    fn push(&mut self, ts: Millis, r: f64) {
        let key = Self::key(ts, r);
        let len = usize::from(self.len);
        if len < TAIL_RANK {
            self.keys[len] = key;
            self.len += 1;
        } else if let Some(min) = self.keys.iter_mut().min_by(|a, b| a.total_cmp(b))
            && key > *min
        {
            *min = key;
        }
    }

    /// The `rank`-th largest faded |residual| at `now` (rank 1 to [`TAIL_RANK`]), or 0 while
    /// fewer are held.
    fn kth(&self, now: Millis, rank: usize) -> f64 {
        let rank = rank.clamp(1, TAIL_RANK);
        if usize::from(self.len) < rank {
            return 0.0;
        }
        let key = if rank == TAIL_RANK {
            self.keys.iter().copied().fold(f64::INFINITY, f64::min)
        } else {
            let mut keys = self.keys;
            keys.sort_unstable_by(|a, b| b.total_cmp(a));
            keys[rank - 1]
        };
        (key - now as f64 / TAIL_FADE as f64).exp()
    }
}

/// Serde for arrays longer than serde's built-in 32: written as a sequence, read back checking
/// the length.
mod fixed_array {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize, const N: usize>(
        a: &[T; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        a.as_slice().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>, const N: usize>(
        d: D,
    ) -> Result<[T; N], D::Error> {
        let v = Vec::<T>::deserialize(d)?;
        let len = v.len();
        v.try_into()
            .map_err(|_| serde::de::Error::invalid_length(len, &"the profile's slot count"))
    }
}

/// Mean level per half hour of the day, each slot an exponentially weighted average over days
/// of the points learned in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DailyProfile {
    #[serde(with = "fixed_array")]
    slots: [f32; SLOTS],
    /// Slots that hold learned data; the others are interpolated once the profile is ready.
    filled: u64,
    ready: bool,
    /// First point accumulated (`Millis::MIN`: none yet).
    start: Millis,
    /// Start of the slot being accumulated (`Millis::MIN`: none yet).
    acc_start: Millis,
    acc_sum: f64,
    acc_n: u32,
}

impl DailyProfile {
    fn new() -> Self {
        Self {
            slots: [0.0; SLOTS],
            filled: 0,
            ready: false,
            start: Millis::MIN,
            acc_start: Millis::MIN,
            acc_sum: 0.0,
            acc_n: 0,
        }
    }

    fn ready(&self) -> bool {
        self.ready
    }

    /// The profile at `ts`, interpolated linearly between slot centres so the expectation has
    /// no half-hourly steps.
    fn at(&self, ts: Millis) -> f64 {
        let pos = ts.rem_euclid(DAY_MS) as f64 / SLOT_MS as f64 - 0.5;
        let lo = pos.floor();
        let frac = pos - lo;
        let i0 = (lo as i64).rem_euclid(SLOTS as i64) as usize;
        let i1 = (i0 + 1) % SLOTS;
        f64::from(self.slots[i0]) * (1.0 - frac) + f64::from(self.slots[i1]) * frac
    }

    /// Adds a learned point; returns true when the profile has just become ready.
    fn accumulate(&mut self, ts: Millis, value: f64) -> bool {
        if self.start == Millis::MIN {
            self.start = ts;
        }
        let slot_start = ts.div_euclid(SLOT_MS) * SLOT_MS;
        let mut became_ready = false;
        if slot_start != self.acc_start {
            self.fold();
            if !self.ready
                && ts - self.start >= DAY_MS
                && self.filled.count_ones() >= MIN_FILLED_SLOTS
            {
                self.ready = true;
                became_ready = true;
            }
            if self.ready {
                self.fill_gaps();
            }
            self.acc_start = slot_start;
            self.acc_sum = 0.0;
            self.acc_n = 0;
        }
        self.acc_sum += value;
        self.acc_n += 1;
        became_ready
    }

    fn fold(&mut self) {
        if self.acc_n == 0 || self.acc_start == Millis::MIN {
            return;
        }
        let mean = (self.acc_sum / f64::from(self.acc_n)) as f32;
        if !mean.is_finite() {
            return;
        }
        let idx = (self.acc_start.rem_euclid(DAY_MS) / SLOT_MS) as usize;
        let bit = 1u64 << idx;
        if self.filled & bit == 0 {
            self.slots[idx] = mean;
            self.filled |= bit;
        } else {
            self.slots[idx] += PROFILE_WEIGHT * (mean - self.slots[idx]);
        }
    }

    /// Slots never learned (the series was anomalous or silent then) take the straight line
    /// between their nearest learned neighbours, which also bridges a ramp frozen out on day one.
    fn fill_gaps(&mut self) {
        if self.filled == 0 {
            return;
        }
        for i in 0..SLOTS {
            if self.filled & (1 << i) != 0 {
                continue;
            }
            let is_filled = |j: usize| self.filled & (1 << (j % SLOTS)) != 0;
            let back = (1..SLOTS)
                .find(|d| is_filled(i + SLOTS - d))
                .unwrap_or(SLOTS);
            let ahead = (1..SLOTS).find(|d| is_filled(i + d)).unwrap_or(SLOTS);
            let before = self.slots[(i + SLOTS - back) % SLOTS];
            let after = self.slots[(i + ahead) % SLOTS];
            let w = back as f32 / (back + ahead) as f32;
            self.slots[i] = before + (after - before) * w;
        }
    }
}

/// A streaming anomaly detector for one series that learns the series' own normal, so no
/// per-metric threshold is configured.
///
/// * **Level**: an exponentially weighted moving average (time constant
///   [`level_time_constant`](RobustBaselineConfig::level_time_constant)) with Huber-clipped
///   updates (residuals capped at 3 scales) — Huber, *Robust Estimation of a Location
///   Parameter* (1964); the robust EWMA/Holt–Winters filter of Gelper, Fried & Croux,
///   *Robust forecasting with exponential and Holt–Winters smoothing*, J. Forecasting (2010).
/// * **Daily seasonality**: after a full day of history, a half-hourly profile (each slot an
///   average over days) plus a local level on the deseasonalised series is the expectation,
///   whenever it has predicted better than the plain level (additive Holt–Winters without trend).
/// * **Spread**: the largest of a winsorised exponentially weighted mean absolute deviation
///   (×√(π/2)), the 5th-largest |residual| fading over 6 hours (÷ 3.5; it keeps the usual bursts
///   of intermittent series normal), and a floor of 1.5 % of |expected| plus a tiny constant.
/// * **Score**: the robust z-score in the harmful direction through a Weibull curve
///   ([`calibrated_score`]).
/// * **Events**: score ≥ 0.5 on 3 of the last 4 points.
///   While an event lasts nothing is learned (a shadow level keeps learning and is adopted after
///   [`relearn_after`](RobustBaselineConfig::relearn_after)); points are learned only after
///   leaving the 4-point persistence window without an event, so an anomaly's first points never
///   enter the baseline.
///
/// Memory: 520 bytes inline and no heap, whatever the length of the series
/// (`size_of` is checked in the tests).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RobustBaselineDetector {
    cfg: RobustBaselineConfig,
    last_ts: Millis,
    learned: u32,
    learned_ts: Millis,
    /// Level of the raw series.
    flat: f64,
    /// Level of the series minus its daily profile (used once the profile is ready).
    seasonal: f64,
    /// Exponentially weighted mean |one-step error| of each model, to pick the better one.
    flat_error: f64,
    seasonal_error: f64,
    mad: f64,
    tail: TopResiduals,
    event: EventTracker,
    pending_len: u8,
    episode: Option<Episode>,
    pending: [Pending; PENDING],
    profile: DailyProfile,
}

impl Default for RobustBaselineDetector {
    fn default() -> Self {
        Self::new(RobustBaselineConfig::default())
    }
}

impl RobustBaselineDetector {
    /// Name reported in [`nightshift_core::Anomaly::detector`].
    pub const NAME: &'static str = "robust_baseline";

    pub fn new(cfg: RobustBaselineConfig) -> Self {
        Self {
            cfg,
            last_ts: Millis::MIN,
            learned: 0,
            learned_ts: Millis::MIN,
            flat: 0.0,
            seasonal: 0.0,
            flat_error: 0.0,
            seasonal_error: 0.0,
            mad: 0.0,
            tail: TopResiduals::default(),
            event: EventTracker::default(),
            pending_len: 0,
            episode: None,
            pending: [Pending::default(); PENDING],
            profile: DailyProfile::new(),
        }
    }

    /// A detector with default tuning that alarms in `alarm` direction only.
    pub fn with_alarm(alarm: AlarmDirection) -> Self {
        Self::new(RobustBaselineConfig {
            alarm,
            ..RobustBaselineConfig::default()
        })
    }

    pub fn config(&self) -> &RobustBaselineConfig {
        &self.cfg
    }

    /// Timestamp of the last accepted point.
    pub fn last_ts(&self) -> Option<Millis> {
        (self.last_ts != Millis::MIN).then_some(self.last_ts)
    }

    /// Start of the current anomaly event, if one is active.
    pub fn anomaly_since(&self) -> Option<Millis> {
        self.episode.map(|e| e.since)
    }

    /// Whether a full day of history has built the daily profile.
    pub fn has_daily_profile(&self) -> bool {
        self.profile.ready()
    }

    /// Heap memory owned by the detector: none; all state is inline.
    pub fn heap_bytes(&self) -> usize {
        0
    }

    /// Scores one point and learns from it (unless it is anomalous). Points must come in
    /// increasing time order.
    pub fn update(&mut self, ts: Millis, value: f64) -> Result<Assessment, DetectError> {
        check_point(self.last_ts(), ts, value)?;
        let prev_ts = self.last_ts;
        self.last_ts = ts;
        let expected = if self.learned == 0 {
            value
        } else {
            self.expected_at(ts)
        };
        let scale = self.scale(expected, ts);
        let residual = value - expected;
        let deviation = if residual >= 0.0 {
            Direction::Up
        } else {
            Direction::Down
        };
        let band = SCORE_Z_MEDIAN * scale;

        if self.learned < self.cfg.warmup_points {
            self.learn(Pending {
                ts,
                value,
                residual,
                scale,
            });
            return Ok(Assessment {
                score: 0.0,
                z: 0.0,
                expected,
                lower: expected - band,
                upper: expected + band,
                direction: deviation,
                phase: Phase::WarmingUp,
            });
        }

        let z = residual / scale;
        let harm = self.cfg.alarm.harm(z);
        let score = calibrated_score(harm);
        let phase = match (
            self.event.step(&EVENT_RULE, score >= HIT_SCORE, false),
            self.episode,
        ) {
            (EventPhase::Onset, _) => {
                let shadow_seasonal = if self.profile.ready() {
                    value - self.profile.at(ts)
                } else {
                    self.seasonal
                };
                self.episode = Some(Episode {
                    since: ts,
                    direction: deviation,
                    shadow_flat: value,
                    shadow_seasonal,
                });
                // The points that led into the event are part of it, not normal behaviour.
                self.pending_len = 0;
                Phase::Onset
            }
            (EventPhase::Ongoing, Some(mut ep)) => {
                let a = self.level_rate(ts - prev_ts, u32::MAX);
                ep.shadow_flat += a * (value - ep.shadow_flat);
                if self.profile.ready() {
                    let d = value - self.profile.at(ts);
                    ep.shadow_seasonal += a * (d - ep.shadow_seasonal);
                }
                if ts - ep.since >= self.cfg.relearn_after {
                    // Not a fault any more but the new normal (a permanent step, a resized
                    // workload): resume learning from where the shadow levels got to.
                    self.flat = ep.shadow_flat;
                    self.seasonal = ep.shadow_seasonal;
                    self.episode = None;
                    self.event.end();
                    Phase::Normal
                } else {
                    self.episode = Some(ep);
                    Phase::Ongoing
                }
            }
            _ => {
                self.episode = None;
                Phase::Normal
            }
        };

        if phase == Phase::Normal {
            if usize::from(self.pending_len) == PENDING {
                let oldest = self.pending[0];
                self.pending.copy_within(1.., 0);
                self.pending_len -= 1;
                self.learn(oldest);
            }
            self.pending[usize::from(self.pending_len)] = Pending {
                ts,
                value,
                residual,
                scale,
            };
            self.pending_len += 1;
        }

        let direction = match self.episode {
            Some(ep) => ep.direction,
            None => deviation,
        };
        Ok(Assessment {
            score,
            z,
            expected,
            lower: expected - band,
            upper: expected + band,
            direction,
            phase,
        })
    }

    fn use_seasonal(&self) -> bool {
        self.profile.ready() && self.seasonal_error < self.flat_error
    }

    fn expected_at(&self, ts: Millis) -> f64 {
        if self.use_seasonal() {
            self.profile.at(ts) + self.seasonal
        } else {
            self.flat
        }
    }

    /// The robust scale (standard-deviation equivalent) for a point expected at `expected`.
    fn scale(&self, expected: f64, ts: Millis) -> f64 {
        let floor = self.floor(expected);
        (MEAN_ABS_TO_SIGMA * self.mad)
            .max(self.tail.kth(ts, self.tail_rank()) / TAIL_TO_SCALE)
            .max(floor)
    }

    /// Young series have seen few bursts: read the tail at a lower rank until 200 points are
    /// learned, so a series that bursts from the start is not judged on its calm.
    fn tail_rank(&self) -> usize {
        (self.learned / TAIL_RANK_EVERY) as usize
    }

    fn floor(&self, expected: f64) -> f64 {
        self.cfg.relative_floor * expected.abs() + self.cfg.absolute_floor
    }

    /// EWMA weight for a step of `dt`, never below 1/n so early points average evenly. Gaps
    /// count as at most a quarter time constant, so a point after an outage cannot overwrite
    /// the level.
    fn level_rate(&self, dt: Millis, n: u32) -> f64 {
        ewma_weight(dt, self.cfg.level_time_constant).max(1.0 / f64::from(n))
    }

    fn spread_rate(&self, dt: Millis, n: u32) -> f64 {
        ewma_weight(dt, self.cfg.spread_time_constant).max(1.0 / f64::from(n))
    }

    fn learn(&mut self, p: Pending) {
        self.learned = self.learned.saturating_add(1);
        let n = self.learned;
        let dt = if self.learned_ts == Millis::MIN {
            0
        } else {
            p.ts - self.learned_ts
        };
        self.learned_ts = p.ts;
        let warm = n <= self.cfg.warmup_points;
        let bound = CLIP * p.scale;
        let clip = |e: f64| if warm { e } else { e.clamp(-bound, bound) };
        let a = self.level_rate(dt, n);

        if n > 1 {
            let b = self.spread_rate(dt, n - 1);
            let r = p.residual.abs();
            let r = if warm { r } else { r.min(bound) };
            self.mad += b * (r - self.mad);

            let e_flat = p.value - self.flat;
            self.flat += a * clip(e_flat);
            self.flat_error += b * (e_flat.abs() - self.flat_error);
            if self.profile.ready() {
                let e_seasonal = p.value - self.profile.at(p.ts) - self.seasonal;
                self.seasonal += a * clip(e_seasonal);
                self.seasonal_error += b * (e_seasonal.abs() - self.seasonal_error);
            }
        } else {
            self.flat = p.value;
        }

        if n >= TAIL_FROM_POINT {
            self.tail.push(p.ts, p.residual.abs());
        }

        if self.profile.accumulate(p.ts, p.value) {
            // Switch-over without a jump: the deseasonalised level starts where the plain one is.
            self.seasonal = self.flat - self.profile.at(p.ts);
            self.seasonal_error = self.flat_error;
        }
    }
}

impl Detector for RobustBaselineDetector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        let a = RobustBaselineDetector::update(self, ts, value)?;
        Ok(Score {
            score: a.score,
            // The band of a warming-up detector rests on a handful of points: not worth showing.
            band: (a.phase != Phase::WarmingUp).then_some(Band {
                expected: a.expected,
                lower: a.lower,
                upper: a.upper,
            }),
        })
    }

    fn explain(&self) -> String {
        let Some(ts) = self.last_ts() else {
            return "robust_baseline: no point seen yet".to_string();
        };
        if self.learned < self.cfg.warmup_points {
            return format!(
                "robust_baseline: learning, {} of {} warm-up points",
                self.learned, self.cfg.warmup_points
            );
        }
        let expected = self.expected_at(ts);
        let band = SCORE_Z_MEDIAN * self.scale(expected, ts);
        let model = if self.use_seasonal() {
            "daily profile plus level"
        } else {
            "robust level"
        };
        match self.episode {
            Some(ep) => format!(
                "robust_baseline: anomaly event going {} since {} ms; normal is {expected:.4} ± \
                 {band:.4} ({model}), not learned from while the event lasts",
                match ep.direction {
                    Direction::Up => "up",
                    Direction::Down => "down",
                },
                ep.since
            ),
            None if self.event.last_hit() => format!(
                "robust_baseline: last point outside {expected:.4} ± {band:.4} ({model}); an event \
                 needs {} of the last {} points outside",
                EVENT_RULE.hits_for_event, EVENT_RULE.window
            ),
            None => format!("robust_baseline: within {expected:.4} ± {band:.4} ({model})"),
        }
    }

    fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Noise, noisy};

    const STEP: Millis = 15_000;
    const T0: Millis = 1_700_000_000_000;

    /// Feeds `values` at 15 s steps from `start`; returns the index of every onset.
    fn onsets(d: &mut RobustBaselineDetector, start: usize, values: &[f64]) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let ts = T0 + (start + i) as Millis * STEP;
            let a = d.update(ts, *v).expect("synthetic points are valid");
            if a.phase == Phase::Onset {
                out.push(start + i);
            }
        }
        out
    }

    #[test]
    fn score_calibration_has_its_anchor_points() {
        assert_eq!(calibrated_score(0.0), 0.0);
        assert!((calibrated_score(4.0) - 0.5).abs() < 1e-9);
        assert!(calibrated_score(2.0) < 0.1);
        assert!(calibrated_score(8.0) > 0.99);
        assert!(calibrated_score(-5.0) == 0.0);
    }

    #[test]
    fn nothing_is_scored_during_warm_up() {
        let mut d = RobustBaselineDetector::default();
        let mut noise = Noise::new(1);
        for i in 0..40 {
            let a = d
                .update(T0 + i * STEP, 10.0 + noise.gaussian())
                .expect("valid");
            assert_eq!(a.phase, Phase::WarmingUp);
            assert_eq!(a.score, 0.0);
        }
        let a = d.update(T0 + 40 * STEP, 10.0).expect("valid");
        assert_eq!(a.phase, Phase::Normal);
    }

    #[test]
    fn bad_input_is_refused() {
        let mut d = RobustBaselineDetector::default();
        assert!(matches!(
            d.update(T0, f64::NAN),
            Err(DetectError::NonFinite(_))
        ));
        assert!(matches!(
            d.update(T0, f64::INFINITY),
            Err(DetectError::NonFinite(_))
        ));
        d.update(T0, 1.0).expect("valid");
        assert_eq!(
            d.update(T0, 1.0),
            Err(DetectError::OutOfOrder { ts: T0, last: T0 })
        );
    }

    #[test]
    fn daily_traffic_curve_over_two_days_raises_no_event() {
        let mut d = RobustBaselineDetector::default();
        let mut noise = Noise::new(7);
        let points = 2 * 24 * 60 * 4;
        let values: Vec<f64> = (0..points)
            .map(|i| {
                let t = (i as Millis * STEP) as f64 / DAY_MS as f64;
                let level = 200.0 * (1.0 + 0.35 * (std::f64::consts::TAU * t).sin());
                level + 0.03 * level * noise.gaussian()
            })
            .collect();
        assert_eq!(onsets(&mut d, 0, &values), Vec::<usize>::new());
        assert!(d.has_daily_profile());
    }

    #[test]
    fn daily_profile_takes_over_the_expectation_on_day_two() {
        // A steep daily curve with little noise: the plain level lags it, the profile does not.
        let mut d = RobustBaselineDetector::default();
        let mut noise = Noise::new(11);
        let mut day2_error = 0.0;
        let points = 2 * 24 * 60 * 4;
        for i in 0..points {
            let t = (i as Millis * STEP) as f64 / DAY_MS as f64;
            let level = 100.0 * (1.0 + 0.5 * (std::f64::consts::TAU * 2.0 * t).sin());
            let v = level * (1.0 + 0.005 * noise.gaussian());
            let a = d.update(T0 + i as Millis * STEP, v).expect("valid");
            assert!(!a.is_anomalous(), "false event at point {i}");
            if i >= points / 2 {
                day2_error += (a.expected - level).abs();
            }
        }
        let mean_error = day2_error / (points / 2) as f64;
        assert!(d.use_seasonal());
        assert!(
            mean_error < 1.0,
            "day-two expectation off by {mean_error} on average"
        );
    }

    #[test]
    fn level_shift_of_ten_sigma_is_detected_within_four_points() {
        let mut d = RobustBaselineDetector::default();
        let mut noise = Noise::new(3);
        let before = noise_series(&mut noise, 600, 100.0, 3.0);
        assert!(onsets(&mut d, 0, &before).is_empty());
        let after = noise_series(&mut noise, 40, 130.0, 3.0);
        let found = onsets(&mut d, 600, &after);
        assert!(!found.is_empty(), "shift not detected");
        assert!(
            found[0] - 600 < 4,
            "detected at point {} of the shift",
            found[0] - 600 + 1
        );
    }

    fn noise_series(noise: &mut Noise, n: usize, level: f64, sigma: f64) -> Vec<f64> {
        noisy(n, level, sigma, noise)
    }

    #[test]
    fn one_and_two_point_spikes_are_not_events() {
        let mut d = RobustBaselineDetector::default();
        let mut noise = Noise::new(5);
        let mut values = noisy(2000, 50.0, 1.0, &mut noise);
        values[500] += 40.0; // one extreme point (a GC pause)
        values[800] += 7.0; // two strong points (a short burst)
        values[801] += 7.0;
        values[1200] += 6.0;
        values[1202] += 6.0; // two strong points out of four, not three
        let mut scores = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let a = d.update(T0 + i as Millis * STEP, *v).expect("valid");
            assert!(!a.is_anomalous(), "blip became an event at point {i}");
            scores.push(a.score);
        }
        assert!(
            scores[500] > 0.99 && scores[800] > 0.5,
            "spikes score {} and {}",
            scores[500],
            scores[800]
        );
    }

    #[test]
    fn memory_leak_doubling_in_thirty_minutes_is_caught_early() {
        let mut d = RobustBaselineDetector::with_alarm(AlarmDirection::Up);
        let mut noise = Noise::new(9);
        let level = 0.4;
        let flat: Vec<f64> = (0..480)
            .map(|_| level * (1.0 + 0.01 * noise.gaussian()))
            .collect();
        assert!(onsets(&mut d, 0, &flat).is_empty());
        // 30 minutes at 15 s = 120 points to double.
        let leak: Vec<f64> = (1..=120)
            .map(|i| level * (1.0 + i as f64 / 120.0) * (1.0 + 0.01 * noise.gaussian()))
            .collect();
        let found = onsets(&mut d, 480, &leak);
        assert!(!found.is_empty(), "leak not detected");
        let minutes = (found[0] - 480 + 1) as f64 / 4.0;
        assert!(minutes <= 6.0, "leak detected only after {minutes} minutes");
    }

    #[test]
    fn error_ratio_jump_is_detected() {
        let mut d = RobustBaselineDetector::with_alarm(AlarmDirection::Up);
        let mut noise = Noise::new(13);
        let normal: Vec<f64> = (0..400)
            .map(|_| (0.001 + 0.0004 * noise.gaussian()).max(0.0))
            .collect();
        assert!(onsets(&mut d, 0, &normal).is_empty());
        let burst: Vec<f64> = (0..8)
            .map(|_| (0.05 + 0.005 * noise.gaussian()).max(0.0))
            .collect();
        let found = onsets(&mut d, 400, &burst);
        assert!(
            found.first().is_some_and(|i| i - 400 < 3),
            "onsets: {found:?}"
        );
    }

    #[test]
    fn one_pod_of_three_down_is_detected() {
        let mut d = RobustBaselineDetector::with_alarm(AlarmDirection::Down);
        let flat = vec![1.0; 300];
        assert!(onsets(&mut d, 0, &flat).is_empty());
        let down = vec![2.0 / 3.0; 6];
        let found = onsets(&mut d, 300, &down);
        assert_eq!(found, vec![302], "a drop is confirmed on its third point");
    }

    #[test]
    fn flat_series_ignore_tiny_wiggles() {
        let mut d = RobustBaselineDetector::with_alarm(AlarmDirection::Down);
        let mut noise = Noise::new(17);
        let values: Vec<f64> = (0..2000)
            .map(|_| 1.0 - 0.002 * noise.gaussian().abs())
            .collect();
        let mut v = values.clone();
        v[..300].fill(1.0);
        assert!(onsets(&mut d, 0, &v).is_empty());
    }

    #[test]
    fn intermittent_series_do_not_alarm_on_their_usual_bursts() {
        // Errors that are zero most of the time and a small burst now and then.
        for seed in [21, 22, 23] {
            let mut d = RobustBaselineDetector::with_alarm(AlarmDirection::Up);
            let mut noise = Noise::new(seed);
            let values: Vec<f64> = (0..4 * 60 * 24)
                .map(|_| {
                    if noise.uniform() < 0.07 {
                        0.013 * (1.0 + noise.uniform())
                    } else {
                        0.0
                    }
                })
                .collect();
            assert_eq!(
                onsets(&mut d, 0, &values),
                Vec::<usize>::new(),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn harmless_direction_is_ignored() {
        let mut d = RobustBaselineDetector::with_alarm(AlarmDirection::Up);
        let mut noise = Noise::new(19);
        let normal = noisy(400, 0.02, 0.001, &mut noise);
        assert!(onsets(&mut d, 0, &normal).is_empty());
        let recovered = noisy(400, 0.0005, 0.0001, &mut noise);
        assert!(onsets(&mut d, 400, &recovered).is_empty());
    }

    #[test]
    fn learning_is_frozen_during_an_anomaly() {
        let mut d = RobustBaselineDetector::default();
        let mut noise = Noise::new(23);
        let normal = noisy(600, 100.0, 3.0, &mut noise);
        assert!(onsets(&mut d, 0, &normal).is_empty());
        // Twenty minutes at +30 %: one event, held throughout.
        let fault = noisy(80, 130.0, 3.0, &mut noise);
        let mut phases = Vec::new();
        for (i, v) in fault.iter().enumerate() {
            let a = d
                .update(T0 + (600 + i) as Millis * STEP, *v)
                .expect("valid");
            phases.push(a.phase);
        }
        assert_eq!(phases.iter().filter(|p| **p == Phase::Onset).count(), 1);
        assert!(
            phases[3..].iter().all(|p| *p == Phase::Ongoing),
            "{phases:?}"
        );
        // Back to normal: the event ends and no second one starts.
        let back = noisy(400, 100.0, 3.0, &mut noise);
        assert!(onsets(&mut d, 680, &back).is_empty());
        assert!(d.anomaly_since().is_none());
    }

    #[test]
    fn a_permanent_change_is_relearned_after_two_hours() {
        let mut d = RobustBaselineDetector::default();
        let mut noise = Noise::new(29);
        let normal = noisy(600, 100.0, 3.0, &mut noise);
        assert!(onsets(&mut d, 0, &normal).is_empty());
        let shifted = noisy(4 * 60 * 4, 140.0, 3.0, &mut noise);
        let found = onsets(&mut d, 600, &shifted);
        assert_eq!(
            found.len(),
            1,
            "one event for the change, then the new normal: {found:?}"
        );
        assert!(d.anomaly_since().is_none());
    }

    #[test]
    fn ewma_weight_matches_the_exponential() {
        for dt in [0, 1, 1_000, 15_000, 60_000, 150_000, 600_000, 10_000_000] {
            let x = dt.min(150_000) as f64 / 600_000.0;
            assert!(
                (ewma_weight(dt, 600_000) - (1.0 - (-x).exp())).abs() < 4e-7,
                "{dt}"
            );
        }
    }

    #[test]
    fn the_detector_trait_drives_it_like_the_others() {
        let mut d = RobustBaselineDetector::default();
        let d: &mut dyn Detector = &mut d;
        assert_eq!(d.name(), "robust_baseline");
        assert!(d.explain().contains("no point seen"));
        let mut noise = Noise::new(31);
        let mut last = Score::ZERO;
        for i in 0..200 {
            last = d
                .update(T0 + i * STEP, 50.0 + noise.gaussian())
                .expect("valid");
            if i < 40 {
                assert_eq!(last.band, None, "no band while warming up");
            }
        }
        let band = last.band.expect("a band once warm");
        assert!(band.lower < 50.0 && 50.0 < band.upper, "{band:?}");
        assert!(d.explain().contains("within"), "{}", d.explain());
        assert!(d.update(T0, 1.0).is_err());
        assert_eq!(
            d.state_bytes(),
            std::mem::size_of::<RobustBaselineDetector>()
        );
    }

    #[test]
    fn one_detector_is_small_and_owns_no_heap() {
        let d = RobustBaselineDetector::default();
        let bytes = std::mem::size_of::<RobustBaselineDetector>() + d.heap_bytes();
        println!("RobustBaselineDetector: {bytes} bytes per series");
        assert!(bytes <= 544, "{bytes} bytes");
    }
}
