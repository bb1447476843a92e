//! Seeded pseudo-random noise and small drivers for the synthetic-series tests.

use crate::Detector;
use nightshift_core::{Millis, SplitMix64};

/// Gaussian noise from the shared generator, both normals of each Box–Muller pair used.
pub(crate) struct Noise {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl Noise {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::seeded(seed),
            spare: None,
        }
    }

    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        self.rng.uniform()
    }

    /// Standard normal.
    pub(crate) fn gaussian(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

/// `n` points of Gaussian noise around `level`.
pub(crate) fn noisy(n: usize, level: f64, sigma: f64, noise: &mut Noise) -> Vec<f64> {
    (0..n).map(|_| level + sigma * noise.gaussian()).collect()
}

/// A daily traffic curve (200 ± 35 %, peaking mid-morning of the cycle) with 3 % noise,
/// `day_points` points per day.
pub(crate) fn daily_curve(n: usize, day_points: usize, noise: &mut Noise) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t = i as f64 / day_points as f64;
            let level = 200.0 * (1.0 + 0.35 * (std::f64::consts::TAU * t).sin());
            level + 0.03 * level * noise.gaussian()
        })
        .collect()
}

/// The scrape step, start time and day length the synthetic-series tests use.
pub(crate) const STEP: Millis = 15_000;
pub(crate) const T0: Millis = 1_700_000_000_000;
pub(crate) const DAY_POINTS: usize = 24 * 60 * 4;

/// Feeds `values` at [`STEP`] spacing from point `start`; returns every score.
pub(crate) fn run<D: Detector>(d: &mut D, start: usize, values: &[f64]) -> Vec<f64> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            d.update(T0 + (start + i) as Millis * STEP, *v)
                .expect("synthetic points are valid")
                .score
        })
        .collect()
}

/// The highest score.
pub(crate) fn max(scores: &[f64]) -> f64 {
    scores.iter().copied().fold(0.0, f64::max)
}
