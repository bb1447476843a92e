//! Exponential-smoothing forecast band: additive Holt–Winters updated per point, giving a
//! forecast and prediction interval to chart and a score for points that leave the interval.

use crate::detector::check_point;
use crate::sampling::SamplingStep;
use crate::window::fmt_num;
use crate::{Band, DetectError, Detector, Score};
use nightshift_core::Millis;
use serde::{Deserialize, Serialize};

/// Longest season, in points (16 KiB of seasonal state).
pub const MAX_SEASON_LENGTH: usize = 2048;
/// Longest horizon [`ForecastBandDetector::forecast`] computes.
pub const MAX_HORIZON: usize = 4 * MAX_SEASON_LENGTH;
/// One-step errors beyond this many σ are clipped before they update the state (Huber), so a
/// single outlier barely moves level, trend and season.
const HUBER: f64 = 3.0;
/// One-step errors beyond this many σ are winsorised before they update the error variance.
const VARIANCE_CLIP: f64 = 4.0;
/// Consecutive points further apart than this many steps do not refine the step estimate.
const GAP_STEPS: f64 = 1.5;
/// Longest gap, in steps, projected forward; longer gaps are treated as this long.
const MAX_GAP_STEPS: i64 = 1 << 20;

/// The season length given to [`ForecastBandDetector::new`] is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("season length {0} is outside 2..={MAX_SEASON_LENGTH} points")]
pub struct InvalidSeasonLength(pub usize);

/// Tuning of [`ForecastBandDetector`]. Smoothing parameters are in the error-correction form
/// of Hyndman et al. (level `alpha`, trend `beta`, season `gamma`), each the share of the
/// one-step error a component absorbs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForecastBandConfig {
    /// Level smoothing. 0.2 follows a level shift within about ten points and keeps the
    /// one-step error within 11 % of the noise for white noise.
    pub alpha: f64,
    /// Trend smoothing (αβ* in Holt's form: β* = 0.05).
    pub beta: f64,
    /// Seasonal smoothing, per visit of a season position (about ten seasons of memory).
    pub gamma: f64,
    /// Trend damping φ (Gardner & McKenzie): the trend fades instead of extrapolating forever,
    /// which forecasts operations data better than a straight line. 1 gives the undamped
    /// ETS(A,A,A) / ETS(A,A,N).
    pub damping: f64,
    /// Band half-width in σ of the one-step error. 3 σ holds about 99 % of normal points.
    pub band_sigmas: f64,
    /// Weight of each new squared one-step error in the variance (about 50 points of memory).
    pub variance_weight: f64,
    /// Points run through the recursion, after the seasonal start-up, before any score.
    pub warmup_points: u32,
    /// σ floor as a share of |forecast|: a flat, noiseless series must not alarm on wiggles.
    pub relative_floor: f64,
    /// Absolute σ floor, for series that sit at zero.
    pub absolute_floor: f64,
}

impl Default for ForecastBandConfig {
    fn default() -> Self {
        Self {
            alpha: 0.2,
            beta: 0.01,
            gamma: 0.1,
            damping: 0.98,
            band_sigmas: 3.0,
            variance_weight: 0.02,
            warmup_points: 30,
            relative_floor: 0.001,
            absolute_floor: 1e-9,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct LastForecast {
    value: f64,
    forecast: f64,
    sigma: f64,
    score: f64,
    /// Season position the point was forecast at.
    position: usize,
    seasonal: f64,
}

/// A forecast band from exponential smoothing, updated point by point: additive Holt–Winters
/// with damped trend, ETS(A,Ad,A) when a season length is given, ETS(A,Ad,N) otherwise
/// (R. J. Hyndman, A. B. Koehler, J. K. Ord, R. D. Snyder, *Forecasting with Exponential
/// Smoothing: The State Space Approach*, Springer 2008, ch. 2–3 and 6). The state-space
/// recursion is written here: `augurs-ets` fits the same model in batch (likelihood
/// optimisation over the whole series) and has no per-point update.
///
/// * **Recursion** (error-correction form), with e the one-step error clipped at 3 σ (the
///   robust Holt–Winters of Gelper, Fried & Croux, J. Forecasting 2010):
///   ŷ = ℓ + φb + s₋ₘ; ℓ ← ℓ + φb + αe; b ← φb + βe; s ← s₋ₘ + γe.
/// * **Start-up**: with a season of m points, the first 2m points give the level, the trend
///   (difference of the two seasons' means) and the seasonal indices (Hyndman et al. §2.6.1,
///   the classical heuristic); without a season the first point is the level.
/// * **Band**: ŷ ± k σ, σ² an exponentially weighted mean of squared one-step errors
///   (winsorised at 4 σ), k = [`band_sigmas`](ForecastBandConfig::band_sigmas) = 3.
/// * **Score**: 0 inside the band; outside, 1 − 2^(−x²) for x σ beyond the band edge, so
///   0.5 one σ beyond it (4 σ from the forecast with k = 3), 0.94 two σ beyond, > 0.99 from
///   2.6 σ beyond.
/// * **Gaps**: missing points (from the step derived from the timestamps) advance the season
///   position and project level and trend forward, so the phase stays aligned.
///
/// Memory: 8 bytes per season position plus 264 bytes (16.3 KiB at the largest season).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForecastBandDetector {
    cfg: ForecastBandConfig,
    /// Season length in points; 0 without a season.
    season: usize,
    level: f64,
    trend: f64,
    seasonal: Vec<f64>,
    /// Season position of the next point.
    position: usize,
    variance: f64,
    /// Points run through the recursion.
    fitted: u32,
    /// Positions collected for the seasonal start-up.
    collected: usize,
    season_sums: [f64; 2],
    ready: bool,
    last_ts: Option<Millis>,
    last_value: f64,
    /// Sampling step, averaged over regular intervals.
    #[serde(flatten)]
    sampling: SamplingStep,
    last: Option<LastForecast>,
}

impl Default for ForecastBandDetector {
    fn default() -> Self {
        Self::non_seasonal(ForecastBandConfig::default())
    }
}

impl ForecastBandDetector {
    /// Name reported in evidence.
    pub const NAME: &'static str = "forecast_band";

    /// A detector with a season of `season_length` points (2 to [`MAX_SEASON_LENGTH`]), or
    /// none.
    pub fn new(
        cfg: ForecastBandConfig,
        season_length: Option<usize>,
    ) -> Result<Self, InvalidSeasonLength> {
        let season = match season_length {
            Some(m) if !(2..=MAX_SEASON_LENGTH).contains(&m) => {
                return Err(InvalidSeasonLength(m));
            }
            Some(m) => m,
            None => 0,
        };
        Ok(Self {
            cfg,
            season,
            level: 0.0,
            trend: 0.0,
            seasonal: vec![0.0; season],
            position: 0,
            variance: 0.0,
            fitted: 0,
            collected: 0,
            season_sums: [0.0; 2],
            ready: false,
            last_ts: None,
            last_value: 0.0,
            sampling: SamplingStep::default(),
            last: None,
        })
    }

    /// A detector without a season: ETS(A,Ad,N).
    pub fn non_seasonal(cfg: ForecastBandConfig) -> Self {
        Self {
            cfg,
            season: 0,
            level: 0.0,
            trend: 0.0,
            seasonal: Vec::new(),
            position: 0,
            variance: 0.0,
            fitted: 0,
            collected: 0,
            season_sums: [0.0; 2],
            ready: false,
            last_ts: None,
            last_value: 0.0,
            sampling: SamplingStep::default(),
            last: None,
        }
    }

    pub fn config(&self) -> &ForecastBandConfig {
        &self.cfg
    }

    /// Season length in points, if the model has a season.
    pub fn season_length(&self) -> Option<usize> {
        (self.season > 0).then_some(self.season)
    }

    /// Whether the warm-up is over and points are scored.
    pub fn is_warm(&self) -> bool {
        self.ready && self.fitted >= self.cfg.warmup_points
    }

    /// σ of the one-step error, once warm.
    pub fn sigma(&self) -> Option<f64> {
        self.is_warm()
            .then(|| self.sigma_at(self.level + self.cfg.damping * self.trend))
    }

    /// Forecasts and prediction bands for the next `horizon` points (at most
    /// [`MAX_HORIZON`]), empty while warming up. The h-step variance is
    /// σ² (1 + Σ_{j<h} c_j²) with c_j = α + β(φ + … + φ^j) + γ[j ≡ 0 mod m]
    /// (Hyndman et al. 2008, Table 6.1, class 1).
    pub fn forecast(&self, horizon: usize) -> Vec<Band> {
        if !self.is_warm() {
            return Vec::new();
        }
        let c = &self.cfg;
        let horizon = horizon.min(MAX_HORIZON);
        let mut out = Vec::with_capacity(horizon);
        let (mut damp_pow, mut damp_sum, mut c_sum) = (1.0, 0.0, 0.0);
        for h in 1..=horizon {
            damp_pow *= c.damping;
            damp_sum += damp_pow;
            let s = self.seasonal_at(self.position + h - 1);
            let mean = self.level + damp_sum * self.trend + s;
            let sd = (self.variance * (1.0 + c_sum)).sqrt().max(self.floor(mean));
            out.push(Band {
                expected: mean,
                lower: mean - c.band_sigmas * sd,
                upper: mean + c.band_sigmas * sd,
            });
            let season_hit = self.season > 0 && h % self.season == 0;
            let cj = c.alpha + c.beta * damp_sum + if season_hit { c.gamma } else { 0.0 };
            c_sum += cj * cj;
        }
        out
    }

    /// Scores one point and learns from it. Points must come in increasing time order.
    pub fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        check_point(self.last_ts, ts, value)?;
        let mut steps = match self.last_ts {
            Some(last) => self.steps_since(ts - last),
            None => 1,
        };
        let prev = self.last_value;
        self.last_ts = Some(ts);
        self.last_value = value;

        if !self.ready {
            if self.season == 0 {
                self.level = value;
                self.trend = 0.0;
                self.ready = true;
                return Ok(Score::ZERO);
            }
            // Missing points during start-up: the straight line between their neighbours.
            let mut j = 1;
            while j < steps && !self.ready {
                self.collect(prev + (value - prev) * j as f64 / steps as f64);
                j += 1;
            }
            if !self.ready {
                self.collect(value);
                return Ok(Score::ZERO);
            }
            // Missing points the start-up did not take are projected over below.
            steps -= j - 1;
        }

        self.project(steps - 1);
        let c = self.cfg;
        let position = self.position;
        let s = self.seasonal_at(position);
        let forecast = self.level + c.damping * self.trend + s;
        let error = value - forecast;
        let sigma = self.sigma_at(forecast);
        let warm = self.fitted >= c.warmup_points;
        let score = if warm {
            band_score(error.abs() / sigma, c.band_sigmas)
        } else {
            0.0
        };

        let e = if warm {
            error.clamp(-HUBER * sigma, HUBER * sigma)
        } else {
            error
        };
        self.level += c.damping * self.trend + c.alpha * e;
        self.trend = c.damping * self.trend + c.beta * e;
        if let Some(slot) = self.seasonal.get_mut(position) {
            *slot += c.gamma * e;
        }
        self.advance(1);
        let ev = if warm {
            error.clamp(-VARIANCE_CLIP * sigma, VARIANCE_CLIP * sigma)
        } else {
            error
        };
        let w = (1.0 / f64::from(self.fitted.saturating_add(1))).max(c.variance_weight);
        self.variance += w * (ev * ev - self.variance);
        self.fitted = self.fitted.saturating_add(1);

        if !warm {
            return Ok(Score::ZERO);
        }
        self.last = Some(LastForecast {
            value,
            forecast,
            sigma,
            score,
            position,
            seasonal: s,
        });
        Ok(Score {
            score,
            band: Some(Band {
                expected: forecast,
                lower: forecast - c.band_sigmas * sigma,
                upper: forecast + c.band_sigmas * sigma,
            }),
        })
    }

    /// Points elapsed over `dt` at the derived step (1 for the first interval, which sets it).
    fn steps_since(&mut self, dt: Millis) -> i64 {
        let step = self.sampling.ms();
        let steps = if !self.sampling.known() || step <= 0.0 {
            1
        } else {
            ((dt as f64 / step).round() as i64).clamp(1, MAX_GAP_STEPS)
        };
        self.sampling.learn(dt, GAP_STEPS);
        steps
    }

    /// Adds one start-up point; after two seasons, sets level, trend and seasonal indices.
    fn collect(&mut self, y: f64) {
        let m = self.season;
        let pos = self.collected;
        if let Some(slot) = self.seasonal.get_mut(pos % m) {
            *slot += y;
        }
        if let Some(sum) = self.season_sums.get_mut(pos / m) {
            *sum += y;
        }
        self.collected += 1;
        if self.collected < 2 * m {
            return;
        }
        let mf = m as f64;
        let mean1 = self.season_sums[0] / mf;
        let mean2 = self.season_sums[1] / mf;
        let slope = (mean2 - mean1) / mf;
        let centre = (mf - 1.0) / 2.0;
        let mid = (mean1 + mean2) / 2.0;
        for (i, s) in self.seasonal.iter_mut().enumerate() {
            // Both seasons' values at position i, less the line through the season means.
            *s = *s / 2.0 - (mid + (i as f64 - centre) * slope);
        }
        let mean = self.seasonal.iter().sum::<f64>() / mf;
        self.seasonal.iter_mut().for_each(|s| *s -= mean);
        self.level = mean2 + centre * slope + mean;
        self.trend = slope;
        self.position = 0;
        self.ready = true;
    }

    /// Carries the state over `gap` missing points: level and trend follow their own forecast,
    /// the season position moves on.
    fn project(&mut self, gap: i64) {
        if gap <= 0 {
            return;
        }
        let phi = self.cfg.damping;
        if (1.0 - phi).abs() < 1e-12 {
            self.level += gap as f64 * self.trend;
        } else {
            let pow = phi.powi(i32::try_from(gap).unwrap_or(i32::MAX));
            self.level += self.trend * phi * (1.0 - pow) / (1.0 - phi);
            self.trend *= pow;
        }
        self.advance(usize::try_from(gap).unwrap_or(0));
    }

    fn advance(&mut self, by: usize) {
        if self.season > 0 {
            self.position = (self.position + by % self.season) % self.season;
        }
    }

    fn seasonal_at(&self, position: usize) -> f64 {
        if self.season == 0 {
            return 0.0;
        }
        self.seasonal
            .get(position % self.season)
            .copied()
            .unwrap_or(0.0)
    }

    fn floor(&self, forecast: f64) -> f64 {
        self.cfg.relative_floor * forecast.abs() + self.cfg.absolute_floor
    }

    fn sigma_at(&self, forecast: f64) -> f64 {
        self.variance.sqrt().max(self.floor(forecast))
    }
}

/// Score of a point `u` σ from the forecast with the band at `k` σ: 0 inside, then
/// 1 − 2^(−(u − k)²), 0.5 one σ beyond the edge.
fn band_score(u: f64, k: f64) -> f64 {
    let beyond = u - k;
    if beyond <= 0.0 || beyond.is_nan() {
        return 0.0;
    }
    -(-std::f64::consts::LN_2 * beyond * beyond).exp_m1()
}

impl Detector for ForecastBandDetector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        ForecastBandDetector::update(self, ts, value)
    }

    fn explain(&self) -> String {
        if !self.ready {
            return format!(
                "forecast band: learning, {} of the {} points of the first two seasons seen",
                self.collected,
                2 * self.season
            );
        }
        let Some(last) = self.last.filter(|_| self.is_warm()) else {
            return format!(
                "forecast band: learning the error spread, {} of {} points",
                self.fitted, self.cfg.warmup_points
            );
        };
        let k = self.cfg.band_sigmas;
        let off = (last.value - last.forecast) / last.sigma;
        let side = if off >= 0.0 { "above" } else { "below" };
        let place = if off.abs() <= k {
            "inside the band".to_string()
        } else {
            format!("{:.1} σ outside the band", off.abs() - k)
        };
        let season = if self.season > 0 {
            format!(
                ", seasonal {} (position {} of {})",
                fmt_num(last.seasonal),
                last.position + 1,
                self.season
            )
        } else {
            String::new()
        };
        format!(
            "forecast band: {} is {:.1} σ {side} the forecast {} (band {} to {} at ± {k} σ, σ {}), \
             {place}; score {:.2}. Level {}, trend {} per point{season}",
            fmt_num(last.value),
            off.abs(),
            fmt_num(last.forecast),
            fmt_num(last.forecast - k * last.sigma),
            fmt_num(last.forecast + k * last.sigma),
            fmt_num(last.sigma),
            last.score,
            fmt_num(self.level),
            fmt_num(self.trend),
        )
    }

    fn reset(&mut self) {
        let season = (self.season > 0).then_some(self.season);
        if let Ok(fresh) = Self::new(self.cfg, season) {
            *self = fresh;
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.seasonal.capacity() * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Noise;

    const STEP: Millis = 60_000;
    const T0: Millis = 1_700_000_000_000;

    /// Trend plus a season of `m` points plus normal noise of σ = `sigma`.
    fn trend_season(n: usize, m: usize, sigma: f64, noise: &mut Noise) -> Vec<f64> {
        (0..n)
            .map(|t| {
                let phase = std::f64::consts::TAU * (t % m) as f64 / m as f64;
                100.0
                    + 0.02 * t as f64
                    + 15.0 * phase.sin()
                    + 5.0 * (2.0 * phase).cos()
                    + sigma * noise.gaussian()
            })
            .collect()
    }

    fn run(d: &mut ForecastBandDetector, start: usize, values: &[f64]) -> Vec<Score> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                d.update(T0 + (start + i) as Millis * STEP, *v)
                    .expect("synthetic points are valid")
            })
            .collect()
    }

    fn coverage(scores: &[Score], values: &[f64]) -> f64 {
        let banded: Vec<(Band, f64)> = scores
            .iter()
            .zip(values)
            .filter_map(|(s, v)| s.band.map(|b| (b, *v)))
            .collect();
        let inside = banded
            .iter()
            .filter(|(b, v)| *v >= b.lower && *v <= b.upper)
            .count();
        inside as f64 / banded.len() as f64
    }

    #[test]
    fn season_length_is_bounded() {
        let cfg = ForecastBandConfig::default();
        assert_eq!(
            ForecastBandDetector::new(cfg, Some(1)).err(),
            Some(InvalidSeasonLength(1))
        );
        assert!(ForecastBandDetector::new(cfg, Some(4096)).is_err());
        let d = ForecastBandDetector::new(cfg, Some(2048)).expect("largest season");
        println!(
            "ForecastBandDetector: {} bytes at season 2048",
            d.state_bytes()
        );
        assert!(d.state_bytes() <= 17 * 1024);
        let plain = ForecastBandDetector::default().state_bytes();
        println!("ForecastBandDetector: {plain} bytes without a season");
        assert!(plain <= 320, "{plain}");
    }

    #[test]
    fn band_holds_a_noisy_trend_and_season() {
        for seed in 1..=5 {
            let mut noise = Noise::new(seed);
            let m = 48;
            let values = trend_season(40 * m, m, 2.0, &mut noise);
            let mut d =
                ForecastBandDetector::new(ForecastBandConfig::default(), Some(m)).expect("m");
            let scores = run(&mut d, 0, &values);
            let warm_from = 2 * m + 30;
            assert!(scores[..warm_from].iter().all(|s| s.score == 0.0));
            let cov = coverage(&scores, &values);
            assert!(
                cov >= 0.95,
                "seed {seed}: {cov:.3} of points inside the band"
            );
            let loud = scores.iter().filter(|s| s.score >= 0.5).count();
            assert!(loud <= 3, "seed {seed}: {loud} points scored ≥ 0.5");
            let sigma = d.sigma().expect("warm");
            assert!((1.7..2.6).contains(&sigma), "σ {sigma}");
        }
    }

    #[test]
    fn band_holds_a_trend_without_season() {
        let mut noise = Noise::new(7);
        let values: Vec<f64> = (0..2000)
            .map(|t| 50.0 + 0.1 * t as f64 + noise.gaussian())
            .collect();
        let mut d = ForecastBandDetector::default();
        let scores = run(&mut d, 0, &values);
        let cov = coverage(&scores[200..], &values[200..]);
        assert!(cov >= 0.95, "{cov}");
    }

    #[test]
    fn fires_on_a_level_shift() {
        let mut noise = Noise::new(8);
        let m = 24;
        let mut values = trend_season(30 * m, m, 1.0, &mut noise);
        let shift_at = 25 * m + 5;
        for v in &mut values[shift_at..] {
            *v += 12.0;
        }
        let mut d = ForecastBandDetector::new(ForecastBandConfig::default(), Some(m)).expect("m");
        let scores = run(&mut d, 0, &values);
        assert!(
            scores[..shift_at].iter().filter(|s| s.score >= 0.5).count() <= 2,
            "alarms before the shift"
        );
        assert!(scores[shift_at].score > 0.99, "{:?}", scores[shift_at]);
        assert!(scores[shift_at + 1].score > 0.9);
        let why = d.explain();
        assert!(why.contains("forecast band"), "{why}");

        // Without a season too.
        let mut noise = Noise::new(9);
        let mut flat: Vec<f64> = (0..600).map(|_| 20.0 + 0.5 * noise.gaussian()).collect();
        for v in &mut flat[500..] {
            *v += 4.0;
        }
        let mut d = ForecastBandDetector::default();
        let scores = run(&mut d, 0, &flat);
        assert!(scores[500].score > 0.99, "{:?}", scores[500]);
        assert!(
            d.explain().contains("above the forecast"),
            "{}",
            d.explain()
        );
    }

    #[test]
    fn missing_points_keep_the_season_in_phase() {
        let mut noise = Noise::new(10);
        let m = 48;
        let values = trend_season(20 * m, m, 1.0, &mut noise);
        let mut d = ForecastBandDetector::new(ForecastBandConfig::default(), Some(m)).expect("m");
        let mut loud = 0;
        for (i, v) in values.iter().enumerate() {
            // A 17-point outage in the middle and one during start-up.
            if (500..517).contains(&i) || (30..33).contains(&i) {
                continue;
            }
            let s = d.update(T0 + i as Millis * STEP, *v).expect("valid");
            loud += usize::from(s.score >= 0.5);
        }
        assert!(loud <= 2, "{loud} loud points");
    }

    #[test]
    fn forecast_bands_widen_with_the_horizon() {
        let mut noise = Noise::new(11);
        let m = 24;
        let values = trend_season(20 * m, m, 1.0, &mut noise);
        let mut d = ForecastBandDetector::new(ForecastBandConfig::default(), Some(m)).expect("m");
        run(&mut d, 0, &values);
        let ahead = d.forecast(2 * m);
        assert_eq!(ahead.len(), 2 * m);
        let width = |b: &Band| b.upper - b.lower;
        assert!(width(&ahead[2 * m - 1]) > width(&ahead[0]));
        // The one-step forecast is the one the next update is scored against.
        let next = values.len();
        let truth = 100.0
            + 0.02 * next as f64
            + 15.0 * (std::f64::consts::TAU * (next % m) as f64 / m as f64).sin()
            + 5.0 * (2.0 * std::f64::consts::TAU * (next % m) as f64 / m as f64).cos();
        let s = d.update(T0 + next as Millis * STEP, truth).expect("valid");
        assert_eq!(s.band.map(|b| b.expected), Some(ahead[0].expected));
        assert!((ahead[0].expected - truth).abs() < 2.0);
        assert!(ForecastBandDetector::default().forecast(5).is_empty());
    }

    #[test]
    fn bad_input_is_refused_and_leaves_the_state() {
        let mut noise = Noise::new(12);
        let values = trend_season(200, 24, 1.0, &mut noise);
        let mut d = ForecastBandDetector::new(ForecastBandConfig::default(), Some(24)).expect("m");
        run(&mut d, 0, &values);
        let before = serde_json::to_string(&d).expect("serialise");
        let last = T0 + 199 * STEP;
        assert!(matches!(
            d.update(last + STEP, f64::NAN),
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
        for (season, stop) in [(Some(24), 30), (Some(24), 300), (None, 100)] {
            let mut noise = Noise::new(13);
            let values = trend_season(600, 24, 1.0, &mut noise);
            let mut d =
                ForecastBandDetector::new(ForecastBandConfig::default(), season).expect("m");
            run(&mut d, 0, &values[..stop]);
            let json = serde_json::to_string(&d).expect("serialise");
            let mut restored: ForecastBandDetector = serde_json::from_str(&json).expect("restore");
            let a = run(&mut d, stop, &values[stop..]);
            let b = run(&mut restored, stop, &values[stop..]);
            assert_eq!(a, b);
            assert_eq!(d.explain(), restored.explain());
            assert_eq!(d.forecast(10), restored.forecast(10));
        }
    }

    #[test]
    fn score_mapping_has_its_anchor_points() {
        assert_eq!(band_score(2.9, 3.0), 0.0);
        assert!((band_score(4.0, 3.0) - 0.5).abs() < 1e-12);
        assert!(band_score(5.0, 3.0) > 0.93);
        assert!(band_score(5.6, 3.0) > 0.99);
    }
}
