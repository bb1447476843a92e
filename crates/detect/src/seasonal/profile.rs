//! What is normal at each phase of the period: a circular profile of levels and spreads, learned
//! with time- and visit-weighted updates and read by interpolation between slots.

use super::period::{History, cycle_trend};
use super::{
    CALM_POINTS, CLIP, DAY_MS, HIGH_SCORE, JUMP_TO_SIGMA, MAX_SLOTS, MIN_SLOTS, MINUTE_MS,
    SPREAD_POINT_WEIGHT, SPREAD_SLOTS, SeasonalConfig, WEEK_MS, duration,
};
use crate::baseline::calibrated_score;
use crate::window::MEAN_ABS_TO_SIGMA;
use nightshift_core::Millis;
use serde::{Deserialize, Serialize};

/// The learned seasonal profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Profile {
    pub(super) period: Millis,
    /// Time at which the phase is 0.
    pub(super) anchor: Millis,
    pub(super) slot_ms: f64,
    pub(super) spread_ms: f64,
    /// Level of each slot relative to `offset`.
    pub(super) shape: Vec<f64>,
    /// Mean |residual| of each spread slot.
    pub(super) spread: Vec<f64>,
    /// Level adjustment for slow drift.
    pub(super) offset: f64,
    /// Where `offset` would be had it kept learning through the current run of surprise.
    pub(super) shadow: f64,
    pub(super) run_since: Option<Millis>,
    pub(super) calm: u8,
}

impl Profile {
    pub(super) fn from_history(
        h: &History,
        period: Millis,
        anchor: Millis,
        step: f64,
        cfg: &SeasonalConfig,
    ) -> Self {
        let n = h.means.len();
        let max_slots = cfg.max_slots.clamp(MIN_SLOTS, MAX_SLOTS);
        let per_step = (period as f64 / step.max(1.0)).round();
        let slots = (per_step as usize).clamp(MIN_SLOTS, max_slots);
        let spread_slots = slots.min(SPREAD_SLOTS);
        let p = period as f64;
        let slot_ms = p / slots as f64;
        let spread_ms = p / spread_slots as f64;
        let width = h.width as f64;
        let fit = cycle_trend(&h.means, p / width);
        let origin = h.origin as f64;
        let origin_phase = (h.origin - anchor).rem_euclid(period) as f64;
        let detrended = |pos: f64| {
            let (v, _) = h.at(pos);
            v - (fit.0 + fit.1 * pos)
        };

        // Level: the detrended history at each slot centre, averaged over the periods seen.
        let first_t = origin + 0.5 * width;
        let last_t = origin + (n as f64 - 0.5) * width;
        let mut shape = vec![0.0; slots];
        for (k, level) in shape.iter_mut().enumerate() {
            let centre = (k as f64 + 0.5) * slot_ms;
            let mut t = origin + (centre - origin_phase).rem_euclid(p);
            let (mut sum, mut count) = (0.0, 0u32);
            while t <= last_t {
                if t >= first_t {
                    sum += detrended((t - origin) / width - 0.5);
                    count += 1;
                }
                t += p;
            }
            if count > 0 {
                *level = sum / f64::from(count);
            }
        }
        let mean = shape.iter().sum::<f64>() / slots as f64;
        shape.iter_mut().for_each(|v| *v -= mean);

        // Spread: the in-sample residual of each bin (corrected for the periods it was averaged
        // over) plus the point-level noise that averaging points into bins removed.
        let cycles = (n as f64 * width / p).max(1.5);
        let per_bin = (width / step.max(1.0)).max(1.0);
        let mut resid2 = vec![0.0; spread_slots];
        let mut jitter = vec![0.0; spread_slots];
        let mut count = vec![0u32; spread_slots];
        for i in 0..n {
            let t = origin + (i as f64 + 0.5) * width;
            let phase = (t - anchor as f64).rem_euclid(p);
            let (_, jit) = h.at(i as f64);
            let r = detrended(i as f64) - circular_lerp(&shape, phase / slot_ms);
            let j = ((phase / spread_ms) as usize).min(spread_slots - 1);
            resid2[j] += r * r;
            jitter[j] += jit;
            count[j] += 1;
        }
        let total: u32 = count.iter().sum();
        let all_resid2 = resid2.iter().sum::<f64>() / f64::from(total.max(1));
        let all_jitter = jitter.iter().sum::<f64>() / f64::from(total.max(1));
        let spread = (0..spread_slots)
            .map(|j| {
                let (r2, jit) = if count[j] > 0 {
                    let c = f64::from(count[j]);
                    (resid2[j] / c, jitter[j] / c)
                } else {
                    (all_resid2, all_jitter)
                };
                let point_noise = (JUMP_TO_SIGMA * jit).powi(2);
                let var = r2 * cycles / (cycles - 1.0) + point_noise * (1.0 - 1.0 / per_bin);
                // The profile itself is an average over `cycles × per_bin` points: its own error
                // is part of every residual scored against it.
                (var * (1.0 + 1.0 / (cycles * per_bin))).sqrt() / MEAN_ABS_TO_SIGMA
            })
            .collect();

        let offset = fit.0 + fit.1 * (n as f64 - 0.5);
        Self {
            period,
            anchor,
            slot_ms,
            spread_ms,
            shape,
            spread,
            offset,
            shadow: offset,
            run_since: None,
            calm: 0,
        }
    }

    pub(super) fn phase(&self, ts: Millis) -> f64 {
        (ts - self.anchor).rem_euclid(self.period.max(1)) as f64
    }

    /// Expected value and σ at `ts`.
    pub(super) fn expect(&self, ts: Millis, cfg: &SeasonalConfig) -> (f64, f64) {
        let phase = self.phase(ts);
        let expected = self.offset + circular_lerp(&self.shape, phase / self.slot_ms);
        let dev = circular_lerp(&self.spread, phase / self.spread_ms);
        let floor = cfg.relative_floor * expected.abs() + cfg.absolute_floor;
        (expected, (MEAN_ABS_TO_SIGMA * dev).max(floor))
    }

    /// Scores a point and learns from it; returns (score, expected, σ).
    pub(super) fn update(
        &mut self,
        ts: Millis,
        dt: Millis,
        value: f64,
        cfg: &SeasonalConfig,
    ) -> (f64, f64, f64) {
        let phase = self.phase(ts);
        let shape = circular_lerp(&self.shape, phase / self.slot_ms);
        let expected = self.offset + shape;
        let dev = circular_lerp(&self.spread, phase / self.spread_ms);
        let floor = cfg.relative_floor * expected.abs() + cfg.absolute_floor;
        let sigma = (MEAN_ABS_TO_SIGMA * dev).max(floor);
        let residual = value - expected;
        let score = calibrated_score(residual.abs() / sigma);

        // Damped learning: a surprising point barely moves the profile.
        let trust = (1.0 - score) * (1.0 - score);
        let bound = CLIP * sigma;
        let dt = dt.max(0) as f64;
        let a_slot = trust * visit_weight(dt, self.slot_ms, cfg.profile_weight);
        let a_spread =
            trust * visit_weight(dt, self.spread_ms, cfg.spread_weight).min(SPREAD_POINT_WEIGHT);
        let a_drift = trust * time_weight(dt, cfg.drift_time_constant as f64);

        // The expectation interpolates two slots, so the residual is shared between them in
        // the same proportions (least-mean-squares on the interpolated profile).
        let clipped = residual.clamp(-bound, bound);
        let (i0, i1, frac) = circular_neighbours(self.shape.len(), phase / self.slot_ms);
        if let Some(level) = self.shape.get_mut(i0) {
            *level += a_slot * (1.0 - frac) * clipped;
        }
        if let Some(level) = self.shape.get_mut(i1) {
            *level += a_slot * frac * clipped;
        }
        let j = ((phase / self.spread_ms) as usize).min(self.spread.len().saturating_sub(1));
        if let Some(s) = self.spread.get_mut(j) {
            *s += a_spread * (residual.abs().min(bound) - *s);
        }
        self.offset += a_drift * clipped;

        // A long run of surprise is a new normal: follow it in the shadow and adopt it.
        if score >= HIGH_SCORE {
            self.calm = 0;
            let since = *self.run_since.get_or_insert_with(|| {
                self.shadow = self.offset;
                ts
            });
            let a_shadow = time_weight(dt, (cfg.relearn_after as f64 / 3.0).max(1.0));
            self.shadow += a_shadow * (value - shape - self.shadow);
            if ts - since >= cfg.relearn_after {
                self.offset = self.shadow;
                self.run_since = None;
            }
        } else if self.run_since.is_some() {
            self.calm += 1;
            if self.calm >= CALM_POINTS {
                self.run_since = None;
                self.calm = 0;
            }
        }
        (score, expected, sigma)
    }
}

/// Value of periodic slots at fractional slot position `pos`, interpolated linearly between
/// slot centres (so the expectation has no steps at slot edges).
pub(super) fn circular_lerp(v: &[f64], pos: f64) -> f64 {
    let (i0, i1, frac) = circular_neighbours(v.len(), pos);
    match (v.get(i0), v.get(i1)) {
        (Some(a), Some(b)) => a + (b - a) * frac,
        _ => 0.0,
    }
}

/// The two slots whose centres surround fractional slot position `pos` among `n` periodic
/// slots, and the weight of the second.
pub(super) fn circular_neighbours(n: usize, pos: f64) -> (usize, usize, f64) {
    if n == 0 {
        return (0, 0, 0.0);
    }
    let p = pos - 0.5;
    let lo = p.floor();
    let i0 = (lo as i64).rem_euclid(n as i64) as usize;
    let i1 = if i0 + 1 >= n { 0 } else { i0 + 1 };
    (i0, i1, p - lo)
}

/// Per-point weight such that one full visit of a slot of `width` ms moves it by `per_visit`,
/// whatever the sampling step; a gap counts as at most one visit.
pub(super) fn visit_weight(dt: f64, width: f64, per_visit: f64) -> f64 {
    let x = (dt / width.max(1.0)).min(1.0);
    -((1.0 - per_visit.clamp(0.0, 1.0)).ln() * x).exp_m1()
}

/// Exponential-smoothing weight of a point `dt` ms after the previous one, for time constant
/// `tau`; a gap counts as at most one time constant.
pub(super) fn time_weight(dt: f64, tau: f64) -> f64 {
    let tau = tau.max(1.0);
    -(-(dt.min(tau) / tau)).exp_m1()
}

/// Plain-words phase of `ts`: time of day for a daily period, weekday and time for a weekly
/// one, position in the cycle otherwise.
pub(super) fn phase_name(ts: Millis, period: Millis, anchor: Millis) -> String {
    let phase = (ts - anchor).rem_euclid(period.max(1));
    let clock = |ms: Millis| {
        let minutes = ms.rem_euclid(DAY_MS) / MINUTE_MS;
        format!("{:02}:{:02} UTC", minutes / 60, minutes % 60)
    };
    match period {
        DAY_MS => clock(phase),
        WEEK_MS => {
            // 1970-01-01, the epoch, was a Thursday.
            const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
            let day = (phase / DAY_MS).clamp(0, 6) as usize;
            format!("{} {}", DAYS[day], clock(phase))
        }
        _ => format!("{} into its {} cycle", duration(phase), duration(period)),
    }
}
