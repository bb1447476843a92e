//! Small numeric tools the model needs: latency distributions described by their first two
//! moments (summed and mixed like independent request stages), and seeded noise.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Upper bounds of the histogram buckets every simulated histogram uses, without `+Inf`.
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The `le` label values, including `+Inf`.
pub const BUCKET_LABELS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

/// A latency distribution kept as mean and second moment, so sequential stages add and
/// alternatives mix exactly; it is read out through a log-normal with the same two moments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub mean: f64,
    /// E[X²].
    pub m2: f64,
}

impl Moments {
    pub const ZERO: Moments = Moments { mean: 0.0, m2: 0.0 };

    /// A stage with the given mean and coefficient of variation.
    pub fn with_cv(mean: f64, cv: f64) -> Moments {
        let var = (cv * mean).powi(2);
        Moments {
            mean,
            m2: var + mean * mean,
        }
    }

    pub fn var(self) -> f64 {
        (self.m2 - self.mean * self.mean).max(0.0)
    }

    /// Independent stages in sequence: means and variances add.
    pub fn then(self, other: Moments) -> Moments {
        let mean = self.mean + other.mean;
        let var = self.var() + other.var();
        Moments {
            mean,
            m2: var + mean * mean,
        }
    }

    /// `r` independent repetitions of a stage per request, where a fractional part means only
    /// that share of requests makes one more call.
    pub fn repeated(self, r: f64) -> Moments {
        let k = r.floor();
        let f = r - k;
        let mean = r * self.mean;
        let var = k * self.var() + f * self.m2 - (f * self.mean).powi(2);
        Moments {
            mean,
            m2: var.max(0.0) + mean * mean,
        }
    }

    /// A constant delay added to every request.
    pub fn shifted(self, by: f64) -> Moments {
        Moments {
            mean: self.mean + by,
            m2: self.m2 + 2.0 * by * self.mean + by * by,
        }
    }

    /// Mixture of `self` with weight `1 - w` and `other` with weight `w`.
    pub fn mix(self, other: Moments, w: f64) -> Moments {
        let w = w.clamp(0.0, 1.0);
        Moments {
            mean: self.mean * (1.0 - w) + other.mean * w,
            m2: self.m2 * (1.0 - w) + other.m2 * w,
        }
    }

    /// Log-normal parameters (mu, sigma) with the same mean and variance.
    pub fn lognormal(self) -> (f64, f64) {
        let mean = self.mean.max(1e-6);
        let s2 = (1.0 + self.var() / (mean * mean)).ln().max(1e-4);
        (mean.ln() - s2 / 2.0, s2.sqrt())
    }

    /// Share of requests at or below `x` seconds.
    pub fn cdf(self, x: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        let (mu, sigma) = self.lognormal();
        normal_cdf((x.ln() - mu) / sigma)
    }

    /// Cuts the distribution at a client timeout: returns the share that times out and the
    /// moments of what the client observes (timed-out calls last exactly `timeout`).
    pub fn truncated(self, timeout: f64) -> (f64, Moments) {
        let (mu, sigma) = self.lognormal();
        let z = (timeout.ln() - mu) / sigma;
        let p_to = 1.0 - normal_cdf(z);
        if p_to < 1e-9 {
            return (0.0, self);
        }
        // Partial moments of the log-normal below the cut: E[X^k; X < T].
        let part1 = (mu + sigma * sigma / 2.0).exp() * normal_cdf(z - sigma);
        let part2 = (2.0 * mu + 2.0 * sigma * sigma).exp() * normal_cdf(z - 2.0 * sigma);
        let mean = part1 + timeout * p_to;
        let m2 = part2 + timeout * timeout * p_to;
        (
            p_to,
            Moments {
                mean,
                m2: m2.max(mean * mean),
            },
        )
    }
}

/// Standard normal CDF (Abramowitz–Stegun 7.1.26 on erf; error below 1.5e-7).
pub fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    let erf = if x >= 0.0 { erf } else { -erf };
    0.5 * (1.0 + erf)
}

/// A standard normal draw (Box–Muller).
pub fn gauss(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Multiplicative noise around 1 with relative standard deviation `rel`, never below 0.5.
pub fn jitter(rng: &mut ChaCha8Rng, rel: f64) -> f64 {
    (1.0 + rel * gauss(rng)).max(0.5)
}

/// A Poisson draw; exact for small means, normal approximation above 30.
pub fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> u64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * gauss(rng)).round().max(0.0) as u64;
    }
    let limit = (-lambda).exp();
    let mut k = 0u64;
    let mut p = 1.0;
    loop {
        p *= rng.random::<f64>();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// A binomial draw: Poisson for rare events, normal approximation for large counts.
pub fn binomial(rng: &mut ChaCha8Rng, n: u64, p: f64) -> u64 {
    if n == 0 || p.is_nan() || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    let nf = n as f64;
    let mean = nf * p;
    let draw = if mean < 20.0 && p < 0.1 {
        poisson(rng, mean)
    } else if nf * (1.0 - p) < 20.0 && p > 0.9 {
        n.saturating_sub(poisson(rng, nf * (1.0 - p)))
    } else {
        (mean + (mean * (1.0 - p)).sqrt() * gauss(rng))
            .round()
            .max(0.0) as u64
    };
    draw.min(n)
}

/// Turns an expected count into an integer count with Poisson-like spread.
pub fn count(rng: &mut ChaCha8Rng, expected: f64) -> u64 {
    poisson(rng, expected)
}

/// A stable 64-bit seed for one purpose, so unrelated parts of the simulation draw from
/// independent streams and adding a fault does not reshuffle pod names.
pub fn derive_seed(seed: u64, purpose: &str) -> u64 {
    let mut buf = seed.to_le_bytes().to_vec();
    buf.extend_from_slice(purpose.as_bytes());
    nightshift_core::fnv1a(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn normal_cdf_matches_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((normal_cdf(-2.326) - 0.01).abs() < 1e-4);
    }

    #[test]
    fn repeated_calls_scale_mean_and_variance() {
        let a = Moments::with_cv(0.1, 0.5);
        let three = a.repeated(3.0);
        assert!((three.mean - 0.3).abs() < 1e-12);
        assert!((three.var() - 3.0 * a.var()).abs() < 1e-12);
        let some = a.repeated(0.25);
        assert!((some.mean - 0.025).abs() < 1e-12);
        assert!(some.var() > 0.0);
    }

    #[test]
    fn moments_add_and_fit() {
        let a = Moments::with_cv(0.1, 0.5);
        let b = Moments::with_cv(0.2, 0.5);
        let s = a.then(b);
        assert!((s.mean - 0.3).abs() < 1e-12);
        assert!((s.var() - (0.0025 + 0.01)).abs() < 1e-12);
        let (mu, sigma) = s.lognormal();
        assert!(((mu + sigma * sigma / 2.0).exp() - 0.3).abs() < 1e-9);
    }

    #[test]
    fn truncation_caps_the_mean_at_the_timeout() {
        let slow = Moments::with_cv(3.0, 0.8);
        let (p, m) = slow.truncated(2.0);
        assert!(p > 0.3 && p < 0.9, "{p}");
        assert!(m.mean < 2.0 && m.mean > 1.0, "{}", m.mean);
        let fast = Moments::with_cv(0.05, 0.5);
        let (p, m) = fast.truncated(2.0);
        assert!(p < 1e-6);
        assert!((m.mean - 0.05).abs() < 1e-6);
    }

    #[test]
    fn binomial_stays_within_bounds() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (n, p) in [
            (10u64, 0.5),
            (1000, 0.001),
            (1000, 0.999),
            (5, 0.0),
            (50_000, 0.3),
        ] {
            for _ in 0..100 {
                assert!(binomial(&mut rng, n, p) <= n);
            }
        }
        let mean: f64 = (0..2000)
            .map(|_| binomial(&mut rng, 1000, 0.2) as f64)
            .sum::<f64>()
            / 2000.0;
        assert!((mean - 200.0).abs() < 3.0, "{mean}");
    }
}
