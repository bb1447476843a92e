//! Cost per point of the streaming detectors.
//!
//! Run: `cargo bench -p nightshift-detect --bench detect`.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use nightshift_core::{SeriesKey, SignalClass};
use nightshift_detect::{
    AlarmDirection, Detector, DetectorBank, ForecastBandConfig, ForecastBandDetector,
    IsolationForestConfig, IsolationForestDetector, LevelShiftDetector, PersistDetector,
    RangeBreachDetector, RobustBaselineDetector, SeasonalDetector, TrendDetector,
    VolatilityShiftDetector,
};
use nightshift_signals::Signal;
use std::hint::black_box;

const STEP: i64 = 15_000;
const T0: i64 = 1_700_000_000_000;

/// A daily traffic curve with deterministic noise, long enough to cycle through.
fn traffic(n: usize) -> Vec<f64> {
    let mut rng = nightshift_core::SplitMix64::new(0x2545_f491_4f6c_dd1d);
    (0..n)
        .map(|i| {
            let u = rng.uniform() - 0.5;
            let day = (i as f64 * STEP as f64) / 86_400_000.0;
            200.0 * (1.0 + 0.35 * (std::f64::consts::TAU * day).sin()) * (1.0 + 0.05 * u)
        })
        .collect()
}

/// `d` after the first `warm` values, one per [`STEP`] from [`T0`].
fn warmed<D: Detector>(mut d: D, values: &[f64], warm: usize) -> D {
    for (i, v) in values[..warm].iter().enumerate() {
        let _ = d.update(T0 + i as i64 * STEP, *v);
    }
    d
}

/// Benches `update` of a detector already fed the first `fed` values, on the values after them
/// (cycling): the steady state of a long-running series.
fn bench_update<D: Detector>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    values: &[f64],
    fed: usize,
    mut d: D,
) {
    let mut i = fed;
    g.bench_function(name, |b| {
        b.iter(|| {
            let v = values[i % values.len()];
            i += 1;
            black_box(d.update(T0 + i as i64 * STEP, black_box(v)))
        });
    });
}

/// A group of one detector's `update`, fed `warm` values first.
fn steady<D: Detector>(c: &mut Criterion, group: &str, values: &[f64], warm: usize, d: D) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(1));
    bench_update(&mut g, "update", values, warm, warmed(d, values, warm));
    g.finish();
}

fn bench_baseline(c: &mut Criterion) {
    let values = traffic(3 * 5760);
    // Past warm-up and with a daily profile.
    let d = RobustBaselineDetector::with_alarm(AlarmDirection::Both);
    steady(c, "baseline", &values, 2 * 5760, d);
}

/// One signal of 1,000 series per call, through lookup, ensemble and anomaly.
fn bench_bank(c: &mut Criterion) {
    let values = traffic(3 * 5760);
    let mut g = c.benchmark_group("bank");
    g.throughput(Throughput::Elements(1));
    g.bench_function("observe", |b| {
        let mut bank = DetectorBank::new();
        let mut signals: Vec<Signal> = (0..1000)
            .map(|s| {
                let name = format!("svc-{s}");
                Signal {
                    key: SeriesKey::new("service:http_requests:rate1m", &[("service", &name)]),
                    entity: nightshift_core::Entity::service(&name),
                    class: SignalClass::Traffic,
                    ts: 0,
                    value: 0.0,
                    promql: String::new(),
                }
            })
            .collect();
        let n = signals.len();
        let mut i = 0usize;
        b.iter(|| {
            let s = &mut signals[i % n];
            s.ts = T0 + (i / n) as i64 * STEP;
            s.value = values[(i / n) % values.len()];
            i += 1;
            black_box(bank.observe(s))
        });
    });
    g.finish();
}

fn bench_ensemble(c: &mut Criterion) {
    let values = traffic(3 * 5760);
    let mut g = c.benchmark_group("ensemble");
    g.throughput(Throughput::Elements(1));
    // Two days in: the seasonal member has decided, every member is past warm-up.
    let warm = 2 * 5760;
    let e = warmed(nightshift_detect::Ensemble::default(), &values, warm);
    bench_update(&mut g, "assess", &values, warm, e);
    g.finish();
}

/// Milliseconds since the epoch of NAB's `YYYY-MM-DD HH:MM:SS` (UTC), by the civil-from-days
/// formula: the bench needs no date crate for one fixed format.
fn nab_millis(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + hh) * 60 + mm) * 60_000 + ss * 1000)
}

/// Every series of the NAB corpus at `../shared/data/nab` (beside the repository), as
/// (timestamp, value) rows; `None`, with the reason printed, when it is not there.
fn nab_corpus() -> Option<Vec<Vec<(i64, f64)>>> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/nab/data");
    let Ok(categories) = std::fs::read_dir(&dir) else {
        eprintln!(
            "ensemble/nab corpus: skipped, no NAB data at {}",
            dir.display()
        );
        return None;
    };
    let mut corpus = Vec::new();
    for category in categories.flatten() {
        for file in std::fs::read_dir(category.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(file.path()).ok()?;
            let rows = text
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let (ts, v) = l.split_once(',')?;
                    Some((nab_millis(ts.trim())?, v.trim().parse().ok()?))
                })
                .collect();
            corpus.push(rows);
        }
    }
    Some(corpus)
}

/// The default ensemble over the whole NAB corpus from a cold start, warm-up included: the
/// throughput on real series of every shape and step, as `nightshift eval nab` runs it.
fn bench_nab(c: &mut Criterion) {
    let Some(corpus) = nab_corpus() else {
        return;
    };
    let points: usize = corpus.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("ensemble");
    g.throughput(Throughput::Elements(points as u64));
    g.sample_size(10);
    g.bench_function(format!("nab corpus ({} files)", corpus.len()), |b| {
        b.iter(|| {
            let mut onsets = 0usize;
            for rows in &corpus {
                let mut e = nightshift_detect::Ensemble::default();
                for &(ts, v) in rows {
                    if let Ok(s) = e.assess(ts, v) {
                        onsets += usize::from(s.phase == nightshift_detect::EventPhase::Onset);
                    }
                }
            }
            black_box(onsets)
        });
    });
    g.finish();
}

/// The seasonal, forecast-band and isolation-forest detectors in their steady state.
fn bench_models(c: &mut Criterion) {
    let values = traffic(3 * 5760);
    let mut g = c.benchmark_group("seasonal");
    g.throughput(Throughput::Elements(1));
    // Two days at 15 s decide the daily period; the bench runs on the profile after that.
    let warm = 2 * 5760 + 10;
    let d = warmed(SeasonalDetector::default(), &values, warm);
    assert!(d.period().is_some());
    bench_update(&mut g, "update", &values, warm, d);
    g.finish();

    let mut g = c.benchmark_group("forecast");
    g.throughput(Throughput::Elements(1));
    for (name, season) in [("update", None), ("update season 240", Some(240))] {
        let d =
            ForecastBandDetector::new(ForecastBandConfig::default(), season).expect("valid season");
        bench_update(&mut g, name, &values, 2000, warmed(d, &values, 2000));
    }
    g.finish();

    let mut g = c.benchmark_group("isolation_forest");
    g.throughput(Throughput::Elements(1));
    g.bench_function("update 5 dims", |b| {
        // Five metrics of one service moving with its traffic; refits are included, amortised.
        let vectors: Vec<[f64; 5]> = values
            .iter()
            .enumerate()
            .map(|(k, v)| {
                let wobble = ((k * 7919) % 101) as f64 / 101.0 - 0.5;
                [
                    *v,
                    0.01 + 0.002 * wobble,
                    0.2 + 0.0004 * v + 0.01 * wobble,
                    0.3 + 0.002 * v,
                    0.6 + 0.05 * wobble,
                ]
            })
            .collect();
        let mut d = IsolationForestDetector::new(5, IsolationForestConfig::default())
            .expect("5 dimensions");
        let mut i = 0usize;
        for v in &vectors[..1000] {
            let _ = d.update(T0 + i as i64 * STEP, v);
            i += 1;
        }
        b.iter(|| {
            let v = &vectors[i % vectors.len()];
            i += 1;
            black_box(d.update(T0 + i as i64 * STEP, black_box(v)))
        });
    });
    g.finish();
}

/// The level-shift, volatility-shift, persist, trend and range-breach detectors after a day of
/// traffic.
fn bench_shapes(c: &mut Criterion) {
    let values = traffic(3 * 5760);
    steady(
        c,
        "level_shift",
        &values,
        5760,
        LevelShiftDetector::default(),
    );
    steady(
        c,
        "volatility_shift",
        &values,
        5760,
        VolatilityShiftDetector::default(),
    );
    steady(c, "persist", &values, 5760, PersistDetector::default());
    steady(
        c,
        "trend",
        &values,
        5760,
        TrendDetector::default().with_limit(1000.0),
    );
    steady(
        c,
        "range_breach",
        &values,
        5760,
        RangeBreachDetector::default(),
    );
}

criterion_group!(
    benches,
    bench_baseline,
    bench_bank,
    bench_ensemble,
    bench_nab,
    bench_models,
    bench_shapes
);
criterion_main!(benches);
