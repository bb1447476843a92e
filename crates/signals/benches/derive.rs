//! Cost per raw sample of signal derivation, on the raw series of a simulated cluster.
//!
//! Run: `cargo bench -p nightshift-signals --bench derive`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use nightshift_core::SeriesKey;
use nightshift_signals::SignalDeriver;
use std::hint::black_box;

const STEP: i64 = 15_000;
const T0: i64 = 1_700_000_000_000;

/// The raw series of one simulated cluster: `services` services with three pods each.
fn cluster(services: usize) -> Vec<SeriesKey> {
    let mut keys = Vec::new();
    for s in 0..services {
        let svc = format!("svc-{s}");
        for p in 0..3 {
            let pod = format!("{svc}-{p}");
            let base = [
                ("namespace", "shop"),
                ("service", svc.as_str()),
                ("job", svc.as_str()),
                ("pod", pod.as_str()),
            ];
            let with = |m: &str, extra: &[(&str, &str)]| {
                let mut l = base.to_vec();
                l.extend_from_slice(extra);
                SeriesKey::new(m, &l)
            };
            for code in ["200", "404", "500", "503"] {
                keys.push(with("http_requests_total", &[("code", code)]));
            }
            for le in [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
            ] {
                keys.push(with("http_request_duration_seconds_bucket", &[("le", le)]));
            }
            keys.push(with("http_request_duration_seconds_sum", &[]));
            keys.push(with("http_request_duration_seconds_count", &[]));
            let instance = format!("{pod}:8080");
            keys.push(with("up", &[("instance", &instance)]));
            let c = [("container", "app")];
            keys.push(with("container_cpu_usage_seconds_total", &c));
            keys.push(with("container_cpu_cfs_periods_total", &c));
            keys.push(with("container_cpu_cfs_throttled_periods_total", &c));
            keys.push(with("container_memory_working_set_bytes", &c));
            keys.push(with("kube_pod_container_status_restarts_total", &c));
            keys.push(with(
                "kube_pod_container_resource_limits",
                &[("container", "app"), ("resource", "cpu"), ("unit", "core")],
            ));
            keys.push(with(
                "kube_pod_container_resource_limits",
                &[
                    ("container", "app"),
                    ("resource", "memory"),
                    ("unit", "byte"),
                ],
            ));
        }
    }
    keys
}

fn bench_derive(c: &mut Criterion) {
    let keys = cluster(50);
    let mut g = c.benchmark_group("derive");
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function(format!("ingest_sample x{}", keys.len()), |b| {
        let mut d = SignalDeriver::new();
        let mut tick = 0i64;
        b.iter(|| {
            tick += 1;
            let ts = T0 + tick * STEP;
            for (j, k) in keys.iter().enumerate() {
                d.ingest_sample(k, ts, (tick * 10 + j as i64) as f64);
            }
        });
    });
    g.bench_function(format!("interval (ingest + flush) x{}", keys.len()), |b| {
        let mut d = SignalDeriver::new();
        let mut tick = 0i64;
        b.iter_batched(
            || (),
            |()| {
                tick += 1;
                let ts = T0 + tick * STEP;
                for (j, k) in keys.iter().enumerate() {
                    d.ingest_sample(k, ts, (tick * 10 + j as i64) as f64);
                }
                black_box(d.flush(ts))
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, bench_derive);
criterion_main!(benches);
