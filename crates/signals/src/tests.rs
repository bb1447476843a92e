//! The derivation against hand-computed PromQL results.

use crate::deriver::FORGET_SERIES;
use crate::{Signal, SignalDeriver, histogram_quantile};
use nightshift_core::{
    Entity, LogRecord, Millis, Resource, SeriesKey, Severity, SignalClass, SpanEdge,
};

const S: Millis = 15_000;

fn pod(metric: &str, service: &str, pod: &str, extra: &[(&str, &str)]) -> SeriesKey {
    let mut labels = vec![
        ("namespace", "shop"),
        ("service", service),
        ("job", service),
        ("pod", pod),
    ];
    labels.extend_from_slice(extra);
    SeriesKey::new(metric, &labels)
}

fn find<'a>(signals: &'a [Signal], metric: &str, entity: &str) -> Option<&'a Signal> {
    signals
        .iter()
        .find(|s| s.key.metric == metric && s.entity.name == entity)
}

fn value(signals: &[Signal], metric: &str, entity: &str) -> f64 {
    find(signals, metric, entity).map_or(f64::NAN, |s| s.value)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn counter_rates_handle_resets() {
    let mut d = SignalDeriver::new();
    let k = pod("http_requests_total", "cart", "cart-1", &[("code", "200")]);
    let mut rates = Vec::new();
    // 10/s, 10/s, then the process restarts and counts 30 in the next 15 s.
    for (i, v) in [0.0, 150.0, 300.0, 30.0, 180.0].into_iter().enumerate() {
        let ts = i as Millis * S;
        d.ingest_sample(&k, ts, v);
        rates.push(find(&d.flush(ts), "service:http_requests:rate1m", "cart").map(|s| s.value));
    }
    assert_eq!(
        rates,
        vec![None, Some(10.0), Some(10.0), Some(2.0), Some(10.0)]
    );
}

#[test]
fn rate_spans_scrapes_missed_between_flushes() {
    let mut d = SignalDeriver::new();
    let k = pod("http_requests_total", "cart", "cart-1", &[("code", "200")]);
    d.ingest_sample(&k, 0, 0.0);
    d.flush(0);
    assert!(find(&d.flush(S), "service:http_requests:rate1m", "cart").is_none());
    d.ingest_sample(&k, 2 * S, 300.0);
    assert!(close(
        value(&d.flush(2 * S), "service:http_requests:rate1m", "cart"),
        10.0
    ));
}

#[test]
fn error_ratio_sums_pods_and_skips_zero_traffic() {
    let mut d = SignalDeriver::new();
    let series = [
        (
            pod("http_requests_total", "api", "api-1", &[("code", "200")]),
            90.0,
        ),
        (
            pod("http_requests_total", "api", "api-1", &[("code", "500")]),
            6.0,
        ),
        (
            pod("http_requests_total", "api", "api-2", &[("code", "200")]),
            45.0,
        ),
        (
            pod("http_requests_total", "api", "api-2", &[("code", "503")]),
            9.0,
        ),
        (
            pod("http_requests_total", "api", "api-2", &[("code", "404")]),
            0.0,
        ),
    ];
    for (k, _) in &series {
        d.ingest_sample(k, 0, 1000.0);
    }
    d.flush(0);
    for (k, inc) in &series {
        d.ingest_sample(k, S, 1000.0 + inc);
    }
    let out = d.flush(S);
    assert!(close(
        value(&out, "service:http_requests:rate1m", "api"),
        150.0 / 15.0
    ));
    assert!(close(
        value(&out, "service:http_errors:ratio_rate1m", "api"),
        15.0 / 150.0
    ));
    let e = find(&out, "service:http_errors:ratio_rate1m", "api").map(|s| s.promql.clone());
    assert_eq!(
        e.as_deref(),
        Some(
            "sum by (service) (rate(http_requests_total{service=\"api\",code=~\"5..\"}[1m])) / \
             sum by (service) (rate(http_requests_total{service=\"api\"}[1m]))"
        )
    );
    // No traffic at all: a rate of 0, but no ratio (not NaN).
    for (k, inc) in &series {
        d.ingest_sample(k, 2 * S, 1000.0 + inc);
    }
    let out = d.flush(2 * S);
    assert_eq!(value(&out, "service:http_requests:rate1m", "api"), 0.0);
    assert!(find(&out, "service:http_errors:ratio_rate1m", "api").is_none());
}

#[test]
fn histogram_quantile_interpolates_like_prometheus() {
    let mut b = vec![
        (0.1, 50.0),
        (0.25, 80.0),
        (0.5, 95.0),
        (1.0, 99.0),
        (f64::INFINITY, 100.0),
    ];
    // rank 90 falls in (0.25, 0.5] holding 15 observations, 10 of them below the rank.
    let q90 = histogram_quantile(0.9, &mut b.clone());
    assert!(q90.is_some_and(|v| close(v, 0.25 + 0.25 * 10.0 / 15.0)));
    // rank 99 is the top of (0.5, 1].
    assert!(histogram_quantile(0.99, &mut b.clone()).is_some_and(|v| close(v, 1.0)));
    // rank in the +Inf bucket: the last finite bound.
    assert_eq!(histogram_quantile(0.999, &mut b), Some(1.0));
    // First bucket interpolates from 0; unsorted input is fine.
    let mut u = vec![(f64::INFINITY, 10.0), (1.0, 10.0), (0.5, 5.0)];
    assert!(histogram_quantile(0.2, &mut u).is_some_and(|v| close(v, 0.2)));
    assert_eq!(histogram_quantile(0.5, &mut [(1.0, 3.0), (2.0, 4.0)]), None);
    assert_eq!(
        histogram_quantile(0.5, &mut [(1.0, 0.0), (f64::INFINITY, 0.0)]),
        None
    );
    // Non-monotonic counts are repaired (8 counts as 10), as Prometheus does.
    let mut m = vec![(0.1, 10.0), (0.2, 8.0), (0.4, 20.0), (f64::INFINITY, 20.0)];
    assert!(histogram_quantile(0.75, &mut m).is_some_and(|v| close(v, 0.3)));
}

#[test]
fn p99_is_taken_over_bucket_increases_summed_across_pods() {
    let mut d = SignalDeriver::new();
    let les = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
    // Interval increases per pod (cumulative), chosen so the sum is 0:50, 0.1:80, 0.25:95,
    // 0.5:98, 1:99.5, +Inf:100.
    let pod1 = [30.0, 50.0, 60.0, 61.0, 61.5, 62.0];
    let pod2 = [20.0, 30.0, 35.0, 37.0, 38.0, 38.0];
    for (p, incs) in [("web-1", pod1), ("web-2", pod2)] {
        for (le, inc) in les.iter().zip(incs) {
            let k = pod(
                "http_request_duration_seconds_bucket",
                "web",
                p,
                &[("le", le)],
            );
            d.ingest_sample(&k, 0, 500.0);
            d.ingest_sample(&k, S, 500.0 + inc);
        }
    }
    let out = d.flush(S);
    // rank 99 of 100 falls in (0.5, 1] holding 1.5, 1.0 of them below the rank.
    let p99 = value(&out, "service:http_request_duration_seconds:p99", "web");
    assert!(close(p99, 0.5 + 0.5 * (1.0 / 1.5)), "{p99}");
}

#[test]
fn mean_latency_and_up_ratio() {
    let mut d = SignalDeriver::new();
    let sum = pod("http_request_duration_seconds_sum", "pay", "pay-1", &[]);
    let count = pod("http_request_duration_seconds_count", "pay", "pay-1", &[]);
    d.ingest_sample(&sum, 0, 10.0);
    d.ingest_sample(&count, 0, 100.0);
    d.ingest_sample(&sum, S, 16.0);
    d.ingest_sample(&count, S, 130.0);
    for (p, up) in [("pay-1", 1.0), ("pay-2", 1.0), ("pay-3", 0.0)] {
        let k = pod("up", "pay", p, &[("instance", &format!("{p}:8080"))]);
        d.ingest_sample(&k, S, up);
    }
    let out = d.flush(S);
    assert!(close(
        value(&out, "service:http_request_duration_seconds:mean", "pay"),
        0.2
    ));
    assert!(close(value(&out, "service:up:ratio", "pay"), 2.0 / 3.0));
    let up = find(&out, "service:up:ratio", "pay").map(|s| s.promql.as_str());
    assert_eq!(up, Some("avg by (service) (up{service=\"pay\"})"));
}

#[test]
fn a_down_target_leaves_only_its_up_signal() {
    let mut d = SignalDeriver::new();
    let req = pod("http_requests_total", "inv", "inv-1", &[("code", "200")]);
    let up = pod("up", "inv", "inv-1", &[("instance", "inv-1:8080")]);
    d.ingest_sample(&req, 0, 0.0);
    d.ingest_sample(&up, 0, 1.0);
    d.flush(0);
    d.ingest_sample(&up, S, 0.0);
    let out = d.flush(S);
    let metrics: Vec<&str> = out.iter().map(|s| s.key.metric.as_str()).collect();
    assert_eq!(metrics, vec!["service:up:ratio"]);
    assert_eq!(out[0].value, 0.0);
}

#[test]
fn restarts_increase_over_five_minutes() {
    let mut d = SignalDeriver::new();
    let k = pod(
        "kube_pod_container_status_restarts_total",
        "q",
        "q-1",
        &[("container", "q")],
    );
    let mut last = Vec::new();
    // One restart at 1 min and one at 3 min; the window then slides past them.
    for i in 0..=40 {
        let ts = i * S;
        let v = if i >= 12 {
            2.0
        } else if i >= 4 {
            1.0
        } else {
            0.0
        };
        d.ingest_sample(&k, ts, v);
        last.push(value(&d.flush(ts), "service:restarts:increase5m", "q"));
    }
    assert_eq!(last[0], 0.0);
    assert_eq!(last[4], 1.0);
    assert_eq!(last[20], 2.0);
    assert_eq!(last[24], 1.0); // the first restart (at 1 min) left the window at 6 min
    assert_eq!(last[32], 0.0);
}

#[test]
fn saturation_ratios_pair_usage_with_limits() {
    let mut d = SignalDeriver::new();
    let c = [("container", "app")];
    for (p, cpu_inc, mem) in [("db-1", 7.5, 600.0), ("db-2", 3.0, 900.0)] {
        let cpu = pod("container_cpu_usage_seconds_total", "db", p, &c);
        d.ingest_sample(&cpu, 0, 100.0);
        d.ingest_sample(&cpu, S, 100.0 + cpu_inc);
        d.ingest_sample(
            &pod("container_memory_working_set_bytes", "db", p, &c),
            S,
            mem,
        );
        let lim = |r: &'static str, u: &'static str| {
            pod(
                "kube_pod_container_resource_limits",
                "db",
                p,
                &[("container", "app"), ("resource", r), ("unit", u)],
            )
        };
        d.ingest_sample(&lim("cpu", "core"), 0, 1.0);
        d.ingest_sample(&lim("memory", "byte"), 0, 1000.0);
        // Pod-level cgroup series must not count.
        d.ingest_sample(
            &pod(
                "container_memory_working_set_bytes",
                "db",
                p,
                &[("container", "")],
            ),
            S,
            5000.0,
        );
    }
    for (m, v0, v1) in [
        ("container_cpu_cfs_periods_total", 0.0, 100.0),
        ("container_cpu_cfs_throttled_periods_total", 0.0, 25.0),
        ("pg_stat_database_xact_commit_total", 0.0, 90.0),
        ("pg_stat_database_xact_rollback_total", 0.0, 10.0),
        ("pg_query_duration_seconds_sum", 0.0, 3.0),
        ("pg_query_duration_seconds_count", 0.0, 100.0),
    ] {
        let k = pod(m, "db", "db-1", &c);
        d.ingest_sample(&k, 0, v0);
        d.ingest_sample(&k, S, v1);
    }
    for (state, n) in [("active", 30.0), ("idle", 20.0)] {
        d.ingest_sample(
            &pod("pg_stat_activity_count", "db", "db-1", &[("state", state)]),
            S,
            n,
        );
    }
    d.ingest_sample(
        &pod("pg_settings_max_connections", "db", "db-1", &[]),
        0,
        100.0,
    );
    let pvc = [("persistentvolumeclaim", "data-db-1")];
    d.ingest_sample(
        &pod("kubelet_volume_stats_available_bytes", "db", "db-1", &pvc),
        S,
        20.0,
    );
    d.ingest_sample(
        &pod("kubelet_volume_stats_capacity_bytes", "db", "db-1", &pvc),
        S,
        80.0,
    );

    let out = d.flush(S);
    assert!(close(
        value(&out, "service:cpu_usage:ratio_limit", "db"),
        0.5
    ));
    assert!(close(
        value(&out, "service:memory_working_set:ratio_limit", "db"),
        0.9
    ));
    assert!(close(
        value(&out, "service:cpu_throttled:ratio", "db"),
        0.25
    ));
    assert!(close(value(&out, "service:pg_rollbacks:ratio", "db"), 0.1));
    assert!(close(
        value(&out, "service:pg_query_duration_seconds:mean", "db"),
        0.03
    ));
    assert!(close(
        value(&out, "service:pg_connections:ratio_max", "db"),
        0.5
    ));
    assert!(close(
        value(&out, "service:volume_available:ratio", "db"),
        0.25
    ));
}

#[test]
fn node_signals_and_placement() {
    let mut d = SignalDeriver::new();
    let node = |m: &str, extra: &[(&str, &str)]| {
        let mut l = vec![
            ("job", "node-exporter"),
            ("node", "n1"),
            ("instance", "10.0.0.1:9100"),
        ];
        l.extend_from_slice(extra);
        SeriesKey::new(m, &l)
    };
    for (mode, inc) in [
        ("idle", 45.0),
        ("user", 10.0),
        ("system", 4.0),
        ("iowait", 1.0),
    ] {
        let k = node("node_cpu_seconds_total", &[("mode", mode)]);
        d.ingest_sample(&k, 0, 1000.0);
        d.ingest_sample(&k, S, 1000.0 + inc);
    }
    d.ingest_sample(&node("up", &[]), S, 1.0);
    d.ingest_sample(&node("node_memory_MemAvailable_bytes", &[]), S, 3.0);
    d.ingest_sample(&node("node_memory_MemTotal_bytes", &[]), S, 12.0);
    d.ingest_sample(
        &node("node_filesystem_avail_bytes", &[("mountpoint", "/")]),
        S,
        10.0,
    );
    d.ingest_sample(
        &node("node_filesystem_size_bytes", &[("mountpoint", "/")]),
        S,
        100.0,
    );
    d.ingest_sample(
        &node("node_filesystem_avail_bytes", &[("mountpoint", "/boot")]),
        S,
        1.0,
    );
    let info = pod("kube_pod_info", "db", "db-1", &[("node", "n1")]);
    d.ingest_sample(&info, S, 1.0);
    let out = d.flush(S);
    assert!(close(value(&out, "node:cpu_busy:ratio", "n1"), 0.25));
    assert_eq!(value(&out, "node:up", "n1"), 1.0);
    assert!(close(
        value(&out, "node:memory_available:ratio", "n1"),
        0.25
    ));
    assert!(close(
        value(&out, "node:filesystem_available:ratio", "n1"),
        0.1
    ));
    let up = find(&out, "node:up", "n1").map(|s| (s.entity.clone(), s.class, s.key.clone()));
    assert_eq!(
        up,
        Some((
            Entity::node("n1"),
            SignalClass::Availability,
            SeriesKey::new("node:up", &[("node", "n1")])
        ))
    );
    assert_eq!(d.placements().collect::<Vec<_>>(), vec![("db", "n1")]);
}

#[test]
fn edge_signals_keep_client_and_server() {
    let mut d = SignalDeriver::new();
    d.flush(0);
    let edge = |client: &str, server: &str, requests, errors, secs| SpanEdge {
        ts: S,
        client: client.into(),
        server: server.into(),
        connection_type: None,
        requests,
        errors,
        duration_seconds_sum: secs,
    };
    d.ingest_span(&edge("checkout", "payments", 300, 30, 60.0));
    d.ingest_span(&edge("frontend", "checkout", 150, 0, 15.0));
    let out = d.flush(S);
    let rate = find(&out, "edge:requests:rate1m", "payments");
    assert_eq!(
        rate.map(|s| &s.key),
        Some(&SeriesKey::new(
            "edge:requests:rate1m",
            &[("client", "checkout"), ("server", "payments")]
        ))
    );
    assert_eq!(rate.map(|s| s.value), Some(20.0));
    assert!(close(value(&out, "edge:errors:ratio", "payments"), 0.1));
    assert!(close(
        value(&out, "edge:duration_seconds:mean", "payments"),
        0.2
    ));
    assert!(
        find(&out, "edge:errors:ratio", "checkout").is_some_and(|s| {
            s.key.label("client") == Some("frontend")
                && s.promql.contains("client=\"frontend\",server=\"checkout\"")
        })
    );
    // Nothing reported for an edge without calls in the interval.
    assert!(
        d.flush(2 * S)
            .iter()
            .all(|s| !s.key.metric.starts_with("edge:"))
    );
}

#[test]
fn log_error_rate_counts_error_and_fatal_lines() {
    let mut d = SignalDeriver::new();
    let log = |ts, severity| LogRecord {
        ts,
        resource: Resource::service("cart").with("k8s.pod.name", "cart-1"),
        severity,
        body: "x".into(),
        attributes: Default::default(),
    };
    d.ingest_log(&log(1, Severity::Info));
    assert!(
        d.flush(0).is_empty(),
        "no interval length on the first flush"
    );
    for sev in [
        Severity::Error,
        Severity::Fatal,
        Severity::Error,
        Severity::Warn,
        Severity::Info,
    ] {
        d.ingest_log(&log(S - 1, sev));
    }
    let out = d.flush(S);
    assert!(close(
        value(&out, "service:log_errors:rate1m", "cart"),
        3.0 / 15.0
    ));
    assert_eq!(
        find(&out, "service:log_errors:rate1m", "cart").map(|s| s.class),
        Some(SignalClass::Logs)
    );
    // Quiet interval: a zero baseline, not silence.
    assert_eq!(
        value(&d.flush(2 * S), "service:log_errors:rate1m", "cart"),
        0.0
    );
}

#[test]
fn signals_without_inputs_are_absent() {
    let mut d = SignalDeriver::new();
    assert!(d.flush(0).is_empty());
    d.ingest_sample(
        &SeriesKey::new("some_other_metric", &[("service", "x")]),
        S,
        1.0,
    );
    d.ingest_sample(&pod("up", "x", "x-1", &[]), S, f64::NAN);
    assert!(d.flush(S).is_empty());
    assert_eq!(d.rejected_samples(), 1);
}

#[test]
fn stale_series_are_forgotten() {
    let mut d = SignalDeriver::new();
    d.ingest_sample(&pod("up", "x", "x-1", &[]), 0, 1.0);
    d.flush(0);
    assert_eq!(d.series_count(), 1);
    d.ingest_sample(&pod("up", "x", "x-2", &[]), FORGET_SERIES + S, 1.0);
    let out = d.flush(FORGET_SERIES + S);
    assert_eq!(d.series_count(), 1);
    assert_eq!(value(&out, "service:up:ratio", "x"), 1.0);
    d.ingest_sample(&pod("up", "x", "x-2", &[]), FORGET_SERIES + 2 * S, 0.0);
    assert_eq!(
        value(&d.flush(FORGET_SERIES + 2 * S), "service:up:ratio", "x"),
        0.0
    );
}
