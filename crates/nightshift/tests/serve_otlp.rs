//! `nightshift serve` as an OTLP/HTTP receiver: the official OTLP/JSON examples are accepted,
//! client spans build the call graph, protobuf works as well as JSON, and bad requests are
//! answered 4xx with an OTLP `Status` naming the problem.

mod common;

use common::{free_port, get, http, metric, start_nightshift_with, temp_dir, wait_for};
use prost::Message;
use std::time::Duration;

const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

fn example(name: &str) -> Option<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/otlp")
        .join(name);
    std::fs::read(&path).ok()
}

#[test]
fn otlp_examples_spans_and_bad_requests() {
    let dir = temp_dir("serve-otlp");
    let ns = free_port();
    let _nightshift =
        start_nightshift_with(&dir, ns, "detect:\n  watch: ['{service=\"my.service\"}']\n");

    // The official examples (opentelemetry-proto's examples/), when the data folder is there.
    match example("metrics.json") {
        None => eprintln!("skipped the official examples: no ../shared/data/otlp"),
        Some(original) => {
            // The examples are stamped December 2018, which a live receiver drops as too old
            // (counted); stamped now, they are taken.
            let (code, answer) = http(ns, "POST", "/v1/metrics", &JSON, &original);
            assert_eq!(code, 200, "{answer}");
            let dropped = get(ns, "/metrics").1;
            assert!(
                dropped.contains(r#"nightshift_ingest_dropped_samples_total{reason="past"}"#),
                "{dropped}"
            );
            let now_ns = jiff::Timestamp::now().as_nanosecond().to_string();
            let metrics = String::from_utf8_lossy(&original)
                .replace("1544712660300000000", &now_ns)
                .into_bytes();
            for (path, file) in [
                ("/v1/metrics", "metrics.json"),
                ("/v1/traces", "trace.json"),
                ("/v1/logs", "logs.json"),
                ("/v1/logs", "events.json"),
            ] {
                let body = if file == "metrics.json" {
                    metrics.clone()
                } else {
                    example(file).unwrap_or_default()
                };
                let (code, answer) = http(ns, "POST", path, &JSON, &body);
                assert_eq!(code, 200, "{file}: {answer}");
                let v: serde_json::Value = serde_json::from_str(&answer).expect("a JSON answer");
                assert!(
                    v.get("partialSuccess").is_none_or(|p| p.is_null()),
                    "{file}: {answer}"
                );
            }
            let page = wait_for(Duration::from_secs(10), || {
                let page = get(ns, "/metrics").1;
                page.contains(r#"nightshift_anomaly_score{metric="my_gauge""#)
                    .then_some(page)
            })
            .expect("the example's gauge is watched");
            assert!(
                page.contains(r#"nightshift_anomaly_score{metric="my_counter_total""#),
                "{page}"
            );
            assert!(
                metric(
                    &page,
                    r#"nightshift_ingest_otlp_items_total{signal="logs"}"#
                )
                .is_some_and(|n| n >= 2.0)
            );
        }
    }

    // Client spans: calls from checkout to payments (failed) and to a database.
    let spans = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
      "scopeSpans":[{"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"POST /pay","kind":3,
         "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000250000000",
         "attributes":[{"key":"peer.service","value":{"stringValue":"payments"}}],"status":{"code":2}},
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"SELECT","kind":3,
         "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000",
         "attributes":[{"key":"db.system","value":{"stringValue":"postgresql"}},{"key":"server.address","value":{"stringValue":"orders-db"}}]}]}]}]}"#;
    assert_eq!(http(ns, "POST", "/v1/traces", &JSON, spans).0, 200);
    let topology = wait_for(Duration::from_secs(10), || {
        let (_, body) = get(ns, "/api/v1/topology");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let calls = v["calls"]["checkout"].as_array()?.clone();
        (calls.len() == 2).then_some(v)
    })
    .expect("the calls reach the topology");
    assert!(
        topology["databases"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "orders-db")),
        "{topology}"
    );

    // Protobuf in, protobuf out.
    let req = nightshift_ingest::otlp::ExportLogsServiceRequest::default();
    let (code, _) = http(
        ns,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        &req.encode_to_vec(),
    );
    assert_eq!(code, 200);

    // Bad requests: 4xx, and a Status naming the problem.
    let cases: [(&str, &str, &[u8], u16, &str); 4] = [
        ("/v1/metrics", "text/plain", b"{}", 415, "Content-Type"),
        (
            "/v1/logs",
            "application/json",
            b"{\"resourceLogs\": 5}",
            400,
            "logs request",
        ),
        (
            "/v1/traces",
            "application/x-protobuf",
            &[0x0a, 0xff, 0xff],
            400,
            "traces request",
        ),
        (
            "/v1/metrics",
            "application/json",
            b"not json",
            400,
            "metrics request",
        ),
    ];
    for (path, ct, body, status, says) in cases {
        let (code, answer) = http(ns, "POST", path, &[("Content-Type", ct)], body);
        assert_eq!(code, status, "{path} {ct}: {answer}");
        if ct.ends_with("json") || ct == "text/plain" {
            let v: serde_json::Value = serde_json::from_str(&answer).expect("a JSON Status");
            assert!(
                v["message"].as_str().is_some_and(|m| m.contains(says)),
                "{answer}"
            );
        }
    }
    let (code, _) = http(
        ns,
        "POST",
        "/v1/logs",
        &[
            ("Content-Type", "application/json"),
            ("Content-Encoding", "gzip"),
        ],
        b"not gzip",
    );
    assert_eq!(code, 400);
    assert_eq!(get(ns, "/healthz").0, 200);
}
