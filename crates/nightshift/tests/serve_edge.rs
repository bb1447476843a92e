//! The HTTP edge under attack: connections that never finish their headers are cut, requests
//! beyond `serve.limits.max_in_flight` are answered 503 with `Retry-After`, decompression bombs
//! are refused without the memory they ask for, bodies over a route's limit are 413, and
//! samples stamped far from now are dropped and counted.

mod common;

use common::{free_port, get, http, start_nightshift_serving, temp_dir, wait_for};
use nightshift_testkit::process::http_full;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const LIMITS: &str =
    "  limits:\n    header_timeout: 1s\n    body_timeout: 10s\n    max_in_flight: 2\n";

#[test]
fn connections_that_never_finish_their_headers_are_cut() {
    let dir = temp_dir("serve-edge-slow");
    let port = free_port();
    let _ns = start_nightshift_serving(&dir, port, LIMITS, "");
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .expect("writes");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let mut cut = 0;
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            // Closed, perhaps after a 408.
            Ok(0) => cut += 1,
            Ok(n) if String::from_utf8_lossy(&buf[..n]).contains(" 408 ") => cut += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => cut += 1,
            _ => {}
        }
    }
    assert_eq!(cut, slow.len());
    assert_eq!(get(port, "/healthz").0, 200);
}

#[test]
fn requests_beyond_the_in_flight_limit_are_told_to_retry() {
    let dir = temp_dir("serve-edge-busy");
    let port = free_port();
    let _ns = start_nightshift_serving(&dir, port, LIMITS, "");
    // Two requests whose bodies never finish hold both permits. A probe of ours that lands
    // between them takes a permit for a moment and the second is told to retry: then try again.
    let hold = || -> Vec<TcpStream> {
        (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
                s.write_all(
                    b"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{",
                )
                .expect("writes");
                s
            })
            .collect()
    };
    let unanswered = |held: &[TcpStream]| {
        held.iter().all(|mut h| {
            h.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let mut buf = [0u8; 64];
            matches!(h.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
    };
    let held = wait_for(Duration::from_secs(20), || {
        let held = hold();
        unanswered(&held).then_some(held)
    })
    .expect("two requests held open");
    let (code, busy, _) = http_full(port, "GET", "/api/v1/incidents", &[], b"");
    assert_eq!(code, 503, "{busy}");
    assert!(
        busy.to_ascii_lowercase().contains("retry-after: 1"),
        "{busy}"
    );
    // The probes get through regardless.
    assert_eq!(get(port, "/healthz").0, 200);
    drop(held);
    wait_for(Duration::from_secs(10), || {
        (get(port, "/api/v1/incidents").0 == 200).then_some(())
    })
    .expect("served again once the permits are back");
    let (_, page) = get(port, "/metrics");
    assert!(
        page.contains("nightshift_http_edge_refused_total{reason=\"in_flight\"}"),
        "{page}"
    );
}

/// The peak resident memory of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[test]
fn decompression_bombs_and_oversized_bodies_are_refused() {
    let dir = temp_dir("serve-edge-bomb");
    let port = free_port();
    let ns = start_nightshift_serving(&dir, port, "", "");
    let before = peak_rss(ns.0.id());
    // 40 MiB of zeros gzip to about 40 KiB: a thousand to one.
    let bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![0u8; 40 << 20]).expect("compresses");
        gz.finish().expect("compresses")
    };
    let threads: Vec<_> = (0..24)
        .map(|_| {
            let bomb = bomb.clone();
            std::thread::spawn(move || {
                http(
                    port,
                    "POST",
                    "/v1/logs",
                    &[
                        ("Content-Type", "application/x-protobuf"),
                        ("Content-Encoding", "gzip"),
                    ],
                    &bomb,
                )
            })
        })
        .collect();
    for t in threads {
        let (code, body) = t.join().expect("a request");
        assert_eq!(code, 413, "{body}");
        assert!(body.contains("decompresses"), "{body}");
    }
    let grew = peak_rss(ns.0.id()).saturating_sub(before);
    assert!(grew < 200 << 20, "the peak grew by {grew} bytes");
    // Over a route's limit: 1 MiB for the JSON API.
    let big = vec![b' '; 2 << 20];
    let (code, _) = http(
        port,
        "POST",
        "/api/v1/alerts",
        &[("Content-Type", "application/json")],
        &big,
    );
    assert_eq!(code, 413);
    assert_eq!(get(port, "/healthz").0, 200);
}

#[test]
fn otlp_points_stamped_far_from_now_are_dropped_and_counted() {
    let dir = temp_dir("serve-edge-time");
    let port = free_port();
    let _ns = start_nightshift_serving(&dir, port, "", "detect:\n  watch: ['queue_depth']\n");
    let now_ns = jiff::Timestamp::now().as_nanosecond();
    let point = |offset_s: i128, v: f64| {
        format!(
            r#"{{"timeUnixNano": "{}", "asDouble": {v}}}"#,
            now_ns + offset_s * 1_000_000_000
        )
    };
    let body = format!(
        r#"{{"resourceMetrics": [{{"resource": {{"attributes": [{{"key": "service.name", "value": {{"stringValue": "checkout"}}}}]}}, "scopeMetrics": [{{"metrics": [{{"name": "queue_depth", "gauge": {{"dataPoints": [{}, {}, {}]}}}}]}}]}}]}}"#,
        point(3600, 1e9),
        point(-30 * 86_400, -1e9),
        point(0, 3.0)
    );
    let (code, answer) = http(
        port,
        "POST",
        "/v1/metrics",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(code, 200, "{answer}");
    let page = wait_for(Duration::from_secs(10), || {
        let (_, page) = get(port, "/metrics");
        page.contains("nightshift_ingest_dropped_samples_total{reason=\"future\"} 1")
            .then_some(page)
    })
    .expect("the future point is counted");
    assert!(
        page.contains("nightshift_ingest_dropped_samples_total{reason=\"past\"} 1"),
        "{page}"
    );
    // The point stamped now is kept.
    assert!(
        page.contains("nightshift_ingest_otlp_items_total{signal=\"samples\"} 1"),
        "{page}"
    );
}

#[test]
fn a_torn_audit_line_is_repaired_and_the_server_starts() {
    let dir = temp_dir("serve-edge-torn");
    let port = free_port();
    let path = dir.join("audit.jsonl");
    let mut log = nightshift_act::audit::AuditLog::open(&path).expect("opens");
    log.append(
        1,
        "user:alice",
        "kill_switch",
        None,
        "on",
        serde_json::json!({"on": false}),
    )
    .expect("appends");
    drop(log);
    let mut bytes = std::fs::read(&path).expect("reads");
    bytes.extend_from_slice(br#"{"seq":2,"ts":2,"actor":"nights"#);
    std::fs::write(&path, bytes).expect("writes");
    let _ns = start_nightshift_serving(&dir, port, "", "");
    let (code, body) = get(port, "/api/v1/audit");
    assert_eq!(code, 200, "{body}");
    let entries: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(entries[1]["event"], "repaired", "{body}");
    let torn = std::fs::read_to_string(dir.join("audit.jsonl.torn")).expect("moved aside");
    assert!(torn.contains("nights"));
    let out = common::nightshift(&["audit", "verify", "--file", path.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Alerts whose times a sender's clock got wrong are stamped with the time they were first
/// received; a `resolved` for an alert never seen firing is ignored; each is counted.
#[test]
fn alerts_stamped_far_from_now_are_restamped_and_stray_resolutions_ignored() {
    let dir = temp_dir("serve-edge-alert-time");
    let port = free_port();
    let _ns = start_nightshift_serving(&dir, port, "", "");
    let post = |body: &str| {
        let (code, why) = http(
            port,
            "POST",
            "/api/v1/alerts/alertmanager",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(code, 200, "{why}");
    };
    let webhook = |status: &str, name: &str, starts: &str| {
        format!(
            r#"{{"version": "4", "status": "{status}", "receiver": "nightshift", "groupLabels": {{}}, "commonLabels": {{}}, "commonAnnotations": {{}}, "externalURL": "http://am", "alerts": [{{"status": "{status}", "labels": {{"alertname": "{name}", "service": "checkout"}}, "annotations": {{}}, "startsAt": "{starts}", "endsAt": "{starts}", "fingerprint": "x"}}]}}"#
        )
    };
    let before = jiff::Timestamp::now().as_millisecond();
    post(&webhook("firing", "Ancient", "2019-01-01T00:00:00Z"));
    post(&webhook("firing", "FromTheFuture", "2099-01-01T00:00:00Z"));
    post(&webhook("resolved", "NeverFired", "2026-01-01T00:00:00Z"));
    let page = wait_for(Duration::from_secs(10), || {
        let (_, page) = get(port, "/metrics");
        page.contains("reason=\"resolved_never_firing\"} 1")
            .then_some(page)
    })
    .expect("the stray resolution is counted");
    for reason in ["stamped_too_old", "stamped_in_future"] {
        assert!(
            page.contains(&format!(
                "nightshift_ingest_alert_adjustments_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {page}"
        );
    }
    let (_, body) = get(port, "/api/v1/alerts");
    let alerts: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(alerts.len(), 2, "{body}");
    assert!(!body.contains("NeverFired"), "{body}");
    for a in &alerts {
        assert!(a["starts_at"].as_i64().unwrap() >= before, "{a}");
    }
    // Sent again, the same old firing keeps the time it was first received: one alert.
    post(&webhook("firing", "Ancient", "2019-01-01T00:00:00Z"));
    let (_, body) = get(port, "/api/v1/alerts");
    assert_eq!(body.matches("Ancient").count(), 1, "{body}");
}
