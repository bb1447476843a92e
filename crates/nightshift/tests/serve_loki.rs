//! `nightshift serve` as a Loki push endpoint (no Loki or Promtail package runs here, so the
//! requests are built as Promtail builds them: `logproto.PushRequest` in snappy, and JSON).

mod common;

use common::{free_port, get, http, metric, start_nightshift_with, temp_dir, wait_for};
use nightshift_ingest::loki::{Entry, PushRequest, Stream, Timestamp};
use prost::Message;
use std::time::Duration;

#[test]
fn loki_pushes_are_accepted_and_bad_ones_refused() {
    let dir = temp_dir("serve-loki");
    let ns = free_port();
    let _nightshift = start_nightshift_with(&dir, ns, "");
    let now = jiff::Timestamp::now().as_second();
    let req = PushRequest {
        streams: vec![Stream {
            labels: r#"{app="checkout", namespace="shop"}"#.into(),
            entries: (0..3)
                .map(|i| Entry {
                    timestamp: Some(Timestamp {
                        seconds: now + i,
                        nanos: 0,
                    }),
                    line: format!("level=error msg=\"payment declined {i}\""),
                    structured_metadata: vec![],
                })
                .collect(),
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("compresses");
    let proto = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
    ];
    assert_eq!(http(ns, "POST", "/loki/api/v1/push", &proto, &body).0, 204);
    let json = format!(
        r#"{{"streams":[{{"stream":{{"app":"cart"}},"values":[["{}","ERROR cart is empty"]]}}]}}"#,
        now * 1_000_000_000
    );
    let ct = [("Content-Type", "application/json")];
    assert_eq!(
        http(ns, "POST", "/loki/api/v1/push", &ct, json.as_bytes()).0,
        204
    );
    let counted = wait_for(Duration::from_secs(10), || {
        metric(
            &get(ns, "/metrics").1,
            r#"nightshift_ingest_otlp_items_total{signal="loki_logs"}"#,
        )
        .filter(|n| *n >= 4.0)
    });
    assert_eq!(counted, Some(4.0));

    let cases: [(&str, &[u8], u16, &str); 4] = [
        ("text/plain", b"x", 415, "Content-Type"),
        (
            "application/x-protobuf",
            b"\xff\xff\xff\xff\xff",
            400,
            "snappy",
        ),
        ("application/json", b"{", 400, "push JSON"),
        (
            "application/json",
            br#"{"streams":[{"stream":{},"values":[[1,"x"]]}]}"#,
            400,
            "stream 0",
        ),
    ];
    for (ct, body, status, says) in cases {
        let (code, answer) = http(
            ns,
            "POST",
            "/loki/api/v1/push",
            &[("Content-Type", ct)],
            body,
        );
        assert_eq!(code, status, "{ct}: {answer}");
        assert!(answer.contains(says), "{ct}: {answer}");
    }
    assert_eq!(get(ns, "/healthz").0, 200);
}
