//! Finding the period: a fixed-size history of the series in time bins, and the autocorrelation
//! scan that decides whether it repeats daily, weekly or at a period of its own.

use super::{
    DAY_MS, MIN_PERIOD_STEPS, MIN_SCAN_LAG, SCANNED_MARGIN, SeasonalConfig, WEEK_MS, WEEKLY_MARGIN,
};
use nightshift_core::Millis;
use serde::{Deserialize, Serialize};

/// The warm-up history: equal-width bins of the mean value and of the mean jump between
/// consecutive points.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct History {
    pub(super) origin: Millis,
    pub(super) width: Millis,
    /// Bins before neighbours are merged.
    pub(super) capacity: usize,
    /// Closed bins, covering `[origin, origin + len × width)`.
    pub(super) means: Vec<f32>,
    /// Mean |difference between consecutive points| in each closed bin: the point-level noise,
    /// which averaging points into bins hides.
    pub(super) jitter: Vec<f32>,
    pub(super) acc_sum: f64,
    pub(super) acc_n: u32,
    pub(super) acc_jitter: f64,
    pub(super) acc_jitter_n: u32,
}

impl History {
    pub(super) fn new(origin: Millis, width: Millis, capacity: usize) -> Self {
        Self {
            origin,
            width,
            capacity,
            means: Vec::with_capacity(capacity),
            jitter: Vec::with_capacity(capacity),
            acc_sum: 0.0,
            acc_n: 0,
            acc_jitter: 0.0,
            acc_jitter_n: 0,
        }
    }

    /// History covered by closed bins.
    pub(super) fn covered(&self) -> Millis {
        self.means.len() as Millis * self.width
    }

    pub(super) fn push(&mut self, ts: Millis, value: f64, jump: Option<f64>) {
        loop {
            let idx = (ts - self.origin).div_euclid(self.width);
            let open = self.means.len() as Millis;
            if idx <= open {
                self.acc_sum += value;
                self.acc_n += 1;
                if let Some(j) = jump {
                    self.acc_jitter += j;
                    self.acc_jitter_n += 1;
                }
                return;
            }
            if self.means.len() >= self.capacity {
                self.compact();
                continue;
            }
            let last_jitter = self.jitter.last().copied().unwrap_or(0.0);
            let (mean, jitter) = if self.acc_n > 0 {
                let jitter = if self.acc_jitter_n > 0 {
                    (self.acc_jitter / f64::from(self.acc_jitter_n)) as f32
                } else {
                    last_jitter
                };
                ((self.acc_sum / f64::from(self.acc_n)) as f32, jitter)
            } else {
                // An empty bin inside a gap: the straight line from the last bin to this point.
                let last = self.means.last().map_or(value, |m| f64::from(*m));
                let mean = last + (value - last) / (idx - open + 1) as f64;
                (mean as f32, last_jitter)
            };
            self.means.push(mean);
            self.jitter.push(jitter);
            self.acc_sum = 0.0;
            self.acc_n = 0;
            self.acc_jitter = 0.0;
            self.acc_jitter_n = 0;
        }
    }

    /// Halves the resolution: merges bins pairwise and doubles the width. Called with an even
    /// number of closed bins, so the open bin stays aligned.
    pub(super) fn compact(&mut self) {
        let half = self.means.len() / 2;
        for i in 0..half {
            self.means[i] = 0.5 * (self.means[2 * i] + self.means[2 * i + 1]);
            self.jitter[i] = 0.5 * (self.jitter[2 * i] + self.jitter[2 * i + 1]);
        }
        self.means.truncate(half);
        self.jitter.truncate(half);
        self.width = self.width.saturating_mul(2);
    }

    /// Mean value and jitter at bin position `pos` (bin centres at integers), interpolated.
    pub(super) fn at(&self, pos: f64) -> (f64, f64) {
        let n = self.means.len();
        if n == 0 {
            return (0.0, 0.0);
        }
        let pos = pos.clamp(0.0, (n - 1) as f64);
        let i = (pos.floor() as usize).min(n - 1);
        let j = (i + 1).min(n - 1);
        let f = pos - i as f64;
        let lerp = |v: &[f32]| f64::from(v[i]) + (f64::from(v[j]) - f64::from(v[i])) * f;
        (lerp(&self.means), lerp(&self.jitter))
    }
}

pub(super) enum Decision {
    Seasonal {
        period: Millis,
        anchor: Millis,
        autocorrelation: f64,
    },
    NotSeasonal {
        strongest_lag: Millis,
        autocorrelation: f64,
    },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    pub(super) period: Millis,
    pub(super) wall_clock: bool,
    pub(super) r: f64,
    pub(super) prominence: f64,
}

/// The period test: autocorrelation of the detrended history at a day, a week and its highest
/// scanned peak.
pub(super) fn analyse(h: &History, step: f64, cfg: &SeasonalConfig) -> Decision {
    let none = Decision::NotSeasonal {
        strongest_lag: 0,
        autocorrelation: 0.0,
    };
    let n = h.means.len();
    if n < 2 * MIN_SCAN_LAG + 4 {
        return none;
    }
    let x: Vec<f64> = h.means.iter().map(|v| f64::from(*v)).collect();
    let fit = linear_fit(&x);
    let d: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(t, v)| v - (fit.0 + fit.1 * t as f64))
        .collect();
    let var = d.iter().map(|v| v * v).sum::<f64>() / n as f64;
    let mean_abs = x.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
    if var.partial_cmp(&(1e-24 * (1.0 + mean_abs * mean_abs))) != Some(std::cmp::Ordering::Greater)
    {
        // A constant series: nothing repeats.
        return none;
    }
    // Lags up to half the history (the period seen at least twice), one more for the
    // interpolation of wall-clock lags.
    let max_lag = (n / 2 + 1).min(n - 2);
    let mut r = vec![0.0; max_lag + 1];
    r[0] = 1.0;
    for (lag, slot) in r.iter_mut().enumerate().skip(1) {
        let s: f64 = d[..n - lag].iter().zip(&d[lag..]).map(|(a, b)| a * b).sum();
        *slot = s / (n - lag) as f64 / var;
    }
    // Lowest autocorrelation at any lag up to each lag, for the prominence.
    let mut low = vec![1.0f64; max_lag + 1];
    for lag in 1..=max_lag {
        low[lag] = low[lag - 1].min(r[lag]);
    }
    let width = h.width as f64;
    let long_enough = |period: f64| period >= MIN_PERIOD_STEPS * step.max(1.0);

    let mut candidates: Vec<Candidate> = Vec::with_capacity(3);
    for period in [DAY_MS, WEEK_MS] {
        let lag = period as f64 / width;
        let lo = lag.floor() as usize;
        if lo < 1 || lo + 1 > max_lag || !long_enough(period as f64) {
            continue;
        }
        let f = lag - lo as f64;
        let at = r[lo] * (1.0 - f) + r[lo + 1] * f;
        candidates.push(Candidate {
            period,
            wall_clock: true,
            r: at,
            prominence: at - low[lo],
        });
    }
    // The fundamental of the scanned peaks: the shortest lag whose local maximum comes close
    // to the highest one (a 40-minute cycle also peaks at 80 and 120 minutes).
    let scan_end = (n / 2).min(max_lag - 1);
    let peaks: Vec<usize> = (MIN_SCAN_LAG..=scan_end)
        .filter(|&l| r[l] >= r[l - 1] && r[l] > r[l + 1])
        .collect();
    let top = peaks.iter().map(|&l| r[l]).fold(-1.0, f64::max);
    if let Some(&lag) = peaks.iter().find(|&&l| r[l] >= top - WEEKLY_MARGIN) {
        let period = refined_period(&r, lag, scan_end) * width;
        if long_enough(period) {
            candidates.push(Candidate {
                period: period.round() as Millis,
                wall_clock: false,
                r: r[lag],
                prominence: r[lag] - low[lag - 1],
            });
        }
    }

    let eligible = |c: &Candidate| {
        c.r >= cfg.min_autocorrelation && c.prominence >= cfg.min_prominence && c.period > 0
    };
    let mut best: Option<Candidate> = None;
    for c in candidates.iter().copied().filter(eligible) {
        best = match best {
            None => Some(c),
            Some(b) => {
                let margin = if c.wall_clock {
                    WEEKLY_MARGIN
                } else {
                    SCANNED_MARGIN
                };
                if c.r > b.r + margin { Some(c) } else { Some(b) }
            }
        };
    }
    // A short cycle that divides the wall-clock period and repeats about as well is the
    // simpler model (its slots learn many times a day); it takes the exact divisor so that its
    // phase never drifts against the clock.
    if let Some(b) = best
        && b.wall_clock
        && let Some(c) = candidates.iter().find(|c| !c.wall_clock && eligible(c))
    {
        let q = (b.period as f64 / c.period as f64).round();
        let exact = b.period as f64 / q;
        if q >= 2.0 && (exact - c.period as f64).abs() <= 0.05 * exact && c.r >= b.r - WEEKLY_MARGIN
        {
            best = Some(Candidate {
                period: exact.round() as Millis,
                ..b
            });
        }
    }
    match best {
        Some(c) => Decision::Seasonal {
            period: c.period,
            // Wall-clock periods (and their divisors) keep epoch phases: time of day in UTC,
            // day of week. Others count from the start of the history.
            anchor: if c.wall_clock { 0 } else { h.origin },
            autocorrelation: c.r,
        },
        None => {
            let strongest = candidates.iter().max_by(|a, b| a.r.total_cmp(&b.r));
            Decision::NotSeasonal {
                strongest_lag: strongest.map_or(0, |c| c.period),
                autocorrelation: strongest.map_or(0.0, |c| c.r),
            }
        }
    }
}

/// The period, in bins, of an autocorrelation peak at `lag`. A peak's position is only known to
/// a fraction of a bin, and a scanned period is not tied to the clock, so that error would add
/// up cycle after cycle; the peak at the furthest multiple still in range divides it by the
/// multiple. Each peak is placed between bins by a parabola through it and its neighbours.
pub(super) fn refined_period(r: &[f64], lag: usize, last: usize) -> f64 {
    let vertex = |l: usize| {
        let (a, b, c) = (r[l - 1], r[l], r[l + 1]);
        let curvature = a - 2.0 * b + c;
        let shift = if curvature < 0.0 {
            (0.5 * (a - c) / curvature).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        l as f64 + shift
    };
    let base = vertex(lag);
    let multiple = (last as f64 / base).floor();
    if multiple < 2.0 {
        return base;
    }
    let target = multiple * base;
    let reach = (multiple / 2.0).ceil().max(1.0) as usize;
    let centre = target.round() as usize;
    let lo = centre.saturating_sub(reach).max(1);
    let hi = (centre + reach).min(last);
    let far = (lo..=hi).max_by(|a, b| r[*a].total_cmp(&r[*b]));
    match far {
        // Only a clear repeat of the peak refines it; noise at long lags would not.
        Some(l) if l > lo && l < hi && r[l] >= r[lag] - 0.2 => vertex(l) / multiple,
        _ => base,
    }
}

/// Least-squares line through `x` against its index: (intercept, slope).
pub(super) fn linear_fit(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    if x.len() < 2 {
        return (x.first().copied().unwrap_or(0.0), 0.0);
    }
    let t_mean = (n - 1.0) / 2.0;
    let x_mean = x.iter().sum::<f64>() / n;
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    for (t, v) in x.iter().enumerate() {
        let dt = t as f64 - t_mean;
        sxy += dt * (v - x_mean);
        sxx += dt * dt;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (x_mean - slope * t_mean, slope)
}

/// Linear trend (intercept, slope per bin; bin `i` centred at `i`) through the means of the
/// last whole periods of `x`, `period` bins long. A least-squares line through the raw history
/// would not do: over whole cycles a sine correlates with time and tilts the line.
pub(super) fn cycle_trend(x: &[f32], period: f64) -> (f64, f64) {
    let n = x.len();
    let cycles = (n as f64 / period).floor();
    if cycles < 1.0 || period < 1.0 {
        return linear_fit(&x.iter().map(|v| f64::from(*v)).collect::<Vec<_>>());
    }
    let start = n as f64 - cycles * period;
    let count = cycles as usize;
    let mut sums = vec![0.0; count];
    let mut counts = vec![0u32; count];
    for (i, v) in x.iter().enumerate().skip(start.ceil() as usize) {
        let j = (((i as f64 - start) / period) as usize).min(count - 1);
        sums[j] += f64::from(*v);
        counts[j] += 1;
    }
    let points: Vec<(f64, f64)> = (0..count)
        .filter(|j| counts[*j] > 0)
        .map(|j| {
            let centre = start + (j as f64 + 0.5) * period - 0.5;
            (centre, sums[j] / f64::from(counts[j]))
        })
        .collect();
    let m = points.len() as f64;
    if points.len() < 2 {
        return (points.first().map_or(0.0, |p| p.1), 0.0);
    }
    let t_mean = points.iter().map(|p| p.0).sum::<f64>() / m;
    let v_mean = points.iter().map(|p| p.1).sum::<f64>() / m;
    let sxy: f64 = points.iter().map(|p| (p.0 - t_mean) * (p.1 - v_mean)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - t_mean).powi(2)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (v_mean - slope * t_mean, slope)
}
