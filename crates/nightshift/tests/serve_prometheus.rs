//! `nightshift serve` against a real Prometheus (Debian's 2.42, installed by `scripts/test`):
//! Prometheus remote-writes its own series to Nightshift and scrapes Nightshift's `/metrics`;
//! then every kind of bad write request is tried against the same server.

mod common;

use common::{
    RW_HEADERS, free_port, get, http, metric, rw_body, rw_series, start_nightshift,
    start_prometheus, start_self_scraping_prometheus, temp_dir, wait_for,
};
use std::time::Duration;

#[test]
fn a_real_prometheus_writes_to_nightshift_and_scrapes_its_scores() {
    let Some(prometheus) = nightshift_testkit::peers::prometheus() else {
        return;
    };
    let dir = temp_dir("serve-prom");
    let (ns, prom) = (free_port(), free_port());
    let _nightshift = start_nightshift(&dir, ns);
    let _prometheus = start_prometheus(
        prometheus,
        &dir,
        prom,
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{prom}']}}]\n  - job_name: nightshift\n    static_configs: [{{targets: ['127.0.0.1:{ns}']}}]\nremote_write:\n  - url: http://127.0.0.1:{ns}/api/v1/write\n    queue_config: {{batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}}\n"
        ),
    );

    // Remote-write reaches the detectors: samples counted, and a score per watched series.
    let page = wait_for(Duration::from_secs(60), || {
        let (status, page) = get(ns, "/metrics");
        (status == 200
            && metric(&page, "nightshift_ingest_samples_total").is_some_and(|n| n > 0.0)
            && page.contains(r#"nightshift_anomaly_score{metric="up",instance="127.0.0.1:"#)
            && page.contains(r#"nightshift_anomaly_score{metric="prometheus_tsdb_head_series""#))
        .then_some(page)
    })
    .expect("Prometheus's samples scored by Nightshift");
    for line in page
        .lines()
        .filter(|l| l.starts_with("nightshift_anomaly_score{"))
    {
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number");
        assert!((0.0..=1.0).contains(&v), "{line}");
    }

    // Prometheus scrapes /metrics and can query the scores with PromQL.
    let result = wait_for(Duration::from_secs(60), || {
        let (status, body) = get(
            prom,
            "/api/v1/query?query=nightshift_anomaly_score%7Bmetric%3D%22up%22%7D",
        );
        (status == 200 && body.contains(r#""metric":"up""#)).then_some(body)
    })
    .expect("Prometheus scraped nightshift_anomaly_score");
    assert!(result.contains(r#""job":"nightshift""#), "{result}");
}

#[test]
fn bad_write_requests_are_answered_4xx_and_nothing_accepted_is_lost() {
    let dir = temp_dir("serve-bad");
    let ns = free_port();
    let _nightshift = start_nightshift(&dir, ns);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock");
    let write = |headers: &[(&str, &str)], b: &[u8]| http(ns, "POST", "/api/v1/write", headers, b);
    let good = rw_body(vec![rw_series(
        &[("__name__", "up"), ("job", "a")],
        &[(now, 1.0)],
    )]);
    assert_eq!(write(&RW_HEADERS, &good).0, 204);

    let junk_proto = snap::raw::Encoder::new()
        .compress_vec(&[0x0a, 0x7f, 0x01])
        .expect("compresses");
    let oversized = vec![0u8; 17 << 20];
    // (what, headers, body, status, what the answer says)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "wrong content type",
            vec![
                ("Content-Type", "application/json"),
                ("Content-Encoding", "snappy"),
            ],
            good.clone(),
            415,
            "Content-Type",
        ),
        (
            "no content encoding",
            vec![("Content-Type", "application/x-protobuf")],
            good.clone(),
            415,
            "Content-Encoding",
        ),
        (
            "bad snappy",
            RW_HEADERS.to_vec(),
            b"\xff\xff\xff\xff\xff\xff".to_vec(),
            400,
            "snappy",
        ),
        (
            "malformed protobuf",
            RW_HEADERS.to_vec(),
            junk_proto,
            400,
            "protobuf",
        ),
        ("oversized body", RW_HEADERS.to_vec(), oversized, 413, ""),
    ];
    for (what, headers, b, status, says) in cases {
        let (got, text) = write(&headers, &b);
        assert_eq!(got, status, "{what}: {text}");
        assert!(text.contains(says), "{what}: {text}");
    }

    // One request, one good series and two bad ones: 400 naming the first problem, and the
    // good series accepted.
    let mixed = rw_body(vec![
        rw_series(&[("__name__", "up"), ("job", "b")], &[(now, 1.0)]),
        rw_series(&[("__name__", "up"), ("bad-name", "x")], &[(now, 1.0)]),
        rw_series(
            &[("__name__", "up"), ("job", "c")],
            &[(now + 3_600_000, 1.0)],
        ),
    ]);
    let (got, text) = write(&RW_HEADERS, &mixed);
    assert_eq!(got, 400, "{text}");
    assert!(
        text.contains("\"bad-name\"") && text.contains("2 of 3 series refused"),
        "{text}"
    );

    // Every accepted sample arrived: one from the first request, one from the mixed one.
    let samples = wait_for(Duration::from_secs(10), || {
        let page = get(ns, "/metrics").1;
        metric(&page, "nightshift_ingest_samples_total").filter(|n| *n >= 2.0)
    });
    assert_eq!(samples, Some(2.0));
    assert_eq!(get(ns, "/healthz").0, 200, "the server is still healthy");
    // Latencies: every route answered so far, and the evaluations.
    let page = get(ns, "/metrics").1;
    assert!(
        page.contains(r#"nightshift_http_request_duration_seconds_count{route="/api/v1/write"}"#),
        "{page}"
    );
    assert!(
        page.contains("nightshift_evaluation_duration_seconds_count"),
        "{page}"
    );
    let (code, doc) = get(ns, "/openapi.json");
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&doc).expect("OpenAPI JSON");
    assert!(doc["paths"]["/api/v1/write"]["post"].is_object());
}

#[test]
fn nightshift_pulls_with_promql_from_a_real_prometheus_and_stops_cleanly() {
    let Some(prometheus) = nightshift_testkit::peers::prometheus() else {
        return;
    };
    let dir = temp_dir("serve-pull");
    let (ns, prom) = (free_port(), free_port());
    let _prometheus = start_self_scraping_prometheus(prometheus, &dir, prom);
    let extra = format!(
        "prometheus:\n  url: http://127.0.0.1:{prom}\n  queries:\n    - {{query: up, interval: 1s, step: 1s, lookback: 1m}}\n    - {{query: 'sum(rate(prometheus_http_requests_total[1m]))', name: 'prometheus:http_requests:rate1m', interval: 1s, step: 1s}}\n    - {{query: 'count(up)', name: 'targets:up:count', interval: 1s, instant: true}}\ndetect:\n  watch: ['up', 'prometheus:http_requests:rate1m', 'targets:up:count']\n"
    );
    let mut nightshift = common::start_nightshift_with(&dir, ns, &extra);

    // Pulled samples reach the detectors: both queries' series are scored.
    wait_for(Duration::from_secs(60), || {
        let page = get(ns, "/metrics").1;
        (metric(&page, "nightshift_pull_samples_total").is_some_and(|n| n > 0.0)
            && page.contains(r#"nightshift_anomaly_score{metric="up",instance="127.0.0.1:"#)
            && page
                .contains(r#"nightshift_anomaly_score{metric="prometheus:http_requests:rate1m"}"#))
        .then_some(())
    })
    .expect("series pulled with PromQL are scored");
    // Nothing arrived by remote-write: this Prometheus has none configured.
    assert!(metric(&get(ns, "/metrics").1, "nightshift_ingest_samples_total") == Some(0.0));

    // SIGTERM: the pull stops, the queue drains, the process exits.
    let pid = nightshift.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .arg(&pid)
            .status()
            .is_ok_and(|s| s.success())
    );
    let exited = wait_for(Duration::from_secs(20), || {
        nightshift.0.try_wait().ok().flatten()
    });
    assert!(
        exited.is_some_and(|s| s.success()),
        "exit after SIGTERM: {exited:?}"
    );
}
