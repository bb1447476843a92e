//! The isolation forest on correlated service metrics: quiet on normal data, firing on broken
//! correlations and out-of-range metrics, checkpoints, bounds and the numerical pieces.

use super::forest::average_path;
use super::whiten::symmetric_eigen;
use super::*;
use crate::testkit::Noise;

const STEP: Millis = 15_000;
const T0: Millis = 1_700_000_000_000;

/// Request rate, CPU and p99 latency driven by one load factor, so they move together.
fn service(load: f64, noise: &mut Noise) -> [f64; 3] {
    [
        500.0 + 100.0 * load,
        0.5 + 0.1 * (0.9 * load + 0.436 * noise.gaussian()),
        0.2 + 0.02 * (0.8 * load + 0.6 * noise.gaussian()),
    ]
}

fn detector() -> IsolationForestDetector {
    IsolationForestDetector::new(
        3,
        IsolationForestConfig {
            dimension_names: vec!["request_rate".into(), "cpu".into(), "latency_p99".into()],
            ..IsolationForestConfig::default()
        },
    )
    .expect("3 dimensions")
}

fn feed(d: &mut IsolationForestDetector, noise: &mut Noise, from: usize, n: usize) -> Vec<f64> {
    (from..from + n)
        .map(|i| {
            let v = service(noise.gaussian(), noise);
            d.update(T0 + i as Millis * STEP, &v).expect("valid").score
        })
        .collect()
}

#[test]
fn quiet_on_correlated_normal_data() {
    for seed in 1..=4 {
        let mut d = detector();
        let mut noise = Noise::new(seed);
        let scores = feed(&mut d, &mut noise, 0, 4000);
        assert!(scores[..127].iter().all(|s| *s == 0.0), "scored in warm-up");
        let scored = &scores[128..];
        let loud = scored.iter().filter(|s| **s >= 0.5).count();
        let rate = loud as f64 / scored.len() as f64;
        assert!(rate < 0.01, "seed {seed}: {loud} of {} ≥ 0.5", scored.len());
    }
}

#[test]
fn fires_on_a_combination_that_breaks_the_correlation() {
    // High traffic (z ≈ +2.5) with low CPU (z ≈ −2.3) and ordinary latency: each value is
    // inside the range its metric showed, the combination never happened.
    let odd = [750.0, 0.27, 0.22];
    for seed in [5, 6, 7] {
        let mut d = detector();
        let mut noise = Noise::new(seed);
        let mut seen = [(f64::MAX, f64::MIN); 3];
        for i in 0..3000 {
            let v = service(noise.gaussian(), &mut noise);
            for (range, x) in seen.iter_mut().zip(v) {
                *range = (range.0.min(x), range.1.max(x));
            }
            d.update(T0 + i * STEP, &v).expect("valid");
        }
        assert!(
            odd.iter()
                .zip(seen)
                .all(|(x, (lo, hi))| (lo..=hi).contains(x))
        );
        let s = d.update(T0 + 3000 * STEP, &odd).expect("valid");
        let why = d.explain();
        assert!(s.score > 0.5, "seed {seed}: {s:?}: {why}");
        assert!(why.contains("cpu"), "{why}");
        assert!(why.contains("request_rate"), "{why}");
        // The same traffic with the CPU it usually brings is normal.
        let usual = [750.0, 0.72, 0.24];
        let s = d.update(T0 + 3001 * STEP, &usual).expect("valid");
        assert!(s.score < 0.5, "{s:?}: {}", d.explain());
    }
}

#[test]
fn fires_on_one_metric_out_of_range_and_names_it() {
    let mut d = detector();
    let mut noise = Noise::new(6);
    feed(&mut d, &mut noise, 0, 1000);
    let s = d
        .update(T0 + 1000 * STEP, &[500.0, 0.5, 0.9])
        .expect("valid");
    assert!(s.score > 0.9, "{s:?}");
    let why = d.explain();
    assert!(why.starts_with("isolation forest: score"), "{why}");
    assert!(why.contains("most unusual: latency_p99"), "{why}");
}

#[test]
fn anomalies_stay_out_of_the_reference() {
    let mut d = detector();
    let mut noise = Noise::new(7);
    feed(&mut d, &mut noise, 0, 1000);
    // Half an hour of the broken combination: it keeps scoring high.
    let scores: Vec<f64> = (0..120)
        .map(|i| {
            let odd = [750.0 + noise.gaussian(), 0.27, 0.22];
            d.update(T0 + (1000 + i) as Millis * STEP, &odd)
                .expect("valid")
                .score
        })
        .collect();
    assert!(scores.iter().all(|s| *s > 0.5), "{scores:?}");
}

#[test]
fn same_seed_same_scores_and_a_checkpoint_restores() {
    let mut a = detector();
    let mut b = detector();
    let mut na = Noise::new(8);
    let mut nb = Noise::new(8);
    assert_eq!(feed(&mut a, &mut na, 0, 700), feed(&mut b, &mut nb, 0, 700));

    let json = serde_json::to_string(&a).expect("serialise");
    let mut restored: IsolationForestDetector = serde_json::from_str(&json).expect("restore");
    let mut n1 = Noise::new(9);
    let mut n2 = Noise::new(9);
    assert_eq!(
        feed(&mut a, &mut n1, 700, 500),
        feed(&mut restored, &mut n2, 700, 500)
    );
    assert_eq!(a.explain(), restored.explain());
}

#[test]
fn bad_input_is_refused_and_leaves_the_state() {
    let mut d = detector();
    let mut noise = Noise::new(10);
    feed(&mut d, &mut noise, 0, 300);
    let before = serde_json::to_string(&d).expect("serialise");
    let next = T0 + 300 * STEP;
    assert!(matches!(
        d.update(next, &[1.0, f64::NAN, 1.0]),
        Err(DetectError::NonFinite(v)) if v.is_nan()
    ));
    assert!(matches!(
        d.update(next, &[1.0, 2.0]),
        Err(DetectError::WrongDimensions {
            expected: 3,
            got: 2
        })
    ));
    assert!(matches!(
        d.update(next, &[1.0, 2.0, 3.0, 4.0]),
        Err(DetectError::WrongDimensions { .. })
    ));
    let last = next - STEP;
    assert_eq!(
        d.update(last, &[500.0, 0.5, 0.2]),
        Err(DetectError::OutOfOrder { ts: last, last })
    );
    assert_eq!(serde_json::to_string(&d).expect("serialise"), before);
}

#[test]
fn dimensions_are_bounded_and_memory_is_reported() {
    let cfg = IsolationForestConfig::default();
    assert_eq!(
        IsolationForestDetector::new(0, cfg.clone()).err(),
        Some(InvalidDimensions(0))
    );
    assert!(IsolationForestDetector::new(MAX_DIMENSIONS + 1, cfg.clone()).is_err());
    let mut d = IsolationForestDetector::new(5, cfg).expect("5 dimensions");
    let mut noise = Noise::new(11);
    for i in 0..400 {
        let load = noise.gaussian();
        let v = [
            load,
            0.5 * load + noise.gaussian(),
            noise.gaussian(),
            noise.gaussian(),
            0.01 * noise.uniform(),
        ];
        d.update(T0 + i * STEP, &v).expect("valid");
    }
    println!(
        "IsolationForestDetector, 5 dimensions: forest {} bytes, total {} bytes",
        d.forest_bytes(),
        d.state_bytes()
    );
    assert!(d.forest_bytes() <= 32 * 1024, "{}", d.forest_bytes());
    assert!(d.state_bytes() <= 40 * 1024, "{}", d.state_bytes());
}

#[test]
fn jacobi_diagonalises_a_covariance() {
    let a = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0];
    let (values, vectors) = symmetric_eigen(a.clone(), 3);
    for k in 0..3 {
        for i in 0..3 {
            let av: f64 = (0..3).map(|j| a[i * 3 + j] * vectors[j * 3 + k]).sum();
            assert!((av - values[k] * vectors[i * 3 + k]).abs() < 1e-9);
        }
    }
}

#[test]
fn average_path_matches_the_paper() {
    assert_eq!(average_path(1.0), 0.0);
    assert_eq!(average_path(2.0), 1.0);
    // c(256) ≈ 10.24 (Liu et al. use it to normalise with ψ = 256).
    assert!((average_path(256.0) - 10.244).abs() < 0.01);
}
