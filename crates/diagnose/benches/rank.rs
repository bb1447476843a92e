//! Cost of ranking one recorded case: 40 services with 4 series each, 1,000 rows (800 of
//! normal operation), a call tree, and a target KPI.
//!
//! Run: `cargo bench -p nightshift-diagnose --bench rank`.

use criterion::{Criterion, criterion_group, criterion_main};
use nightshift_diagnose::recorded::{RecordedCase, RecordedSeries, rank_case};
use std::hint::black_box;

const SERVICES: usize = 40;
const ROWS: usize = 1_000;
const START: usize = 800;

fn case() -> RecordedCase {
    let mut rng = nightshift_core::SplitMix64::new(0);
    let mut noise = move || rng.uniform() - 0.5;
    let name = |i: usize| format!("svc-{i}");
    // A tree: service i calls 2i+1 and 2i+2. The fault is in service 9; its callers up to the
    // root slow down after it.
    let on_path = |i: usize| [0usize, 1, 4, 9].contains(&i);
    let mut series = Vec::new();
    for i in 0..SERVICES {
        for (metric, level) in [
            ("cpu", 0.3),
            ("mem", 0.5),
            ("latency", 0.1),
            ("requests", 100.0),
        ] {
            let values: Vec<f64> = (0..ROWS)
                .map(|r| {
                    let fault = r >= START && on_path(i) && metric != "requests";
                    let v = level * (1.0 + 0.05 * noise());
                    if fault {
                        v * if i == 9 { 3.0 } else { 1.8 }
                    } else {
                        v
                    }
                })
                .collect();
            series.push(RecordedSeries {
                service: name(i),
                metric: metric.into(),
                normal: values[..START].to_vec(),
                reference: Vec::new(),
                after: (START..ROWS)
                    .map(|r| (r as i64 * 1_000, values[r]))
                    .collect(),
            });
        }
    }
    RecordedCase {
        series,
        anomaly_start: START as i64 * 1_000,
        calls: (0..SERVICES)
            .flat_map(|i| [2 * i + 1, 2 * i + 2].map(|c| (i, c)))
            .filter(|(_, c)| *c < SERVICES)
            .map(|(p, c)| (name(p), name(c)))
            .collect(),
        target: Some((name(0), "latency".into())),
        changes: Vec::new(),
    }
}

fn bench(c: &mut Criterion) {
    let case = case();
    assert_eq!(
        rank_case(&case)[0].entity.name,
        "svc-9",
        "the bench ranks the fault first"
    );
    c.bench_function("recorded/rank 40 services x 1000 rows", |b| {
        b.iter(|| rank_case(black_box(&case)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
