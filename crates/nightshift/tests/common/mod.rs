//! What the binary's integration tests share: running the binary and `nightshift serve`, and
//! the requests they make of it; peers, processes and polling come from `nightshift_testkit`.
#![allow(dead_code, unused_imports)]

pub use nightshift_testkit::process::{
    Running, free_port, get, http, http_full, start_alertmanager, start_prometheus,
    start_self_scraping_prometheus, temp_dir, wait_for,
};
pub use nightshift_testkit::stand_in::serve_stand_in;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs the nightshift binary with `args` to its end.
pub fn nightshift(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(args)
        .output()
        .expect("the nightshift binary runs")
}

/// Runs the nightshift binary, requires it to succeed, and reads its output as JSON.
pub fn nightshift_json(args: &[&str]) -> serde_json::Value {
    json_of(&nightshift(args))
}

/// A successful run's output as JSON; a failed run fails the test with its error output.
pub fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// Posts one critical alert per name on `service` to Nightshift's Alertmanager API (v2) and
/// gives the id of the open incident they make.
pub fn post_alert_storm(port: u16, service: &str, names: &[&str]) -> String {
    post_alert_storm_with(port, service, names, &[], &[])
}

/// [`post_alert_storm`], the alerts sent with headers `send` and the incidents read with
/// headers `read` (credentials).
pub fn post_alert_storm_with(
    port: u16,
    service: &str,
    names: &[&str],
    send: &[(&str, &str)],
    read: &[(&str, &str)],
) -> String {
    for name in names {
        let body = format!(
            r#"[{{"labels": {{"alertname": "{name}", "service": "{service}", "severity": "critical"}}}}]"#
        );
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend_from_slice(send);
        assert_eq!(
            http(port, "POST", "/api/v1/alerts", &headers, body.as_bytes()).0,
            200
        );
    }
    wait_for(Duration::from_secs(30), || {
        let (_, body) = http(port, "GET", "/api/v1/incidents?status=open", read, b"");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v[0]["id"].as_str().map(str::to_string)
    })
    .expect("an incident opened")
}

/// Three critical alerts on checkout.
pub const CHECKOUT_ALERTS: [&str; 3] = [
    "CheckoutErrorsHigh",
    "CheckoutLatencyHigh",
    "CheckoutPodRestarting",
];

/// A deploy of checkout (v2.4.1, described by `description`), then [`CHECKOUT_ALERTS`]: the id
/// of the incident they make.
pub fn checkout_incident_after_deploy(port: u16, description: &str) -> String {
    let change = serde_json::json!({
        "kind": "deploy", "target": "checkout", "version": "v2.4.1", "description": description,
    })
    .to_string();
    let json = [("Content-Type", "application/json")];
    assert_eq!(
        http(port, "POST", "/api/v1/changes", &json, change.as_bytes()).0,
        200
    );
    post_alert_storm(port, "checkout", &CHECKOUT_ALERTS)
}

/// The value of the first sample of `name` on a /metrics page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn start_nightshift(dir: &Path, port: u16) -> Running {
    start_nightshift_with(
        dir,
        port,
        "detect:\n  watch: ['up', 'prometheus_tsdb_head_series']\n",
    )
}

/// `nightshift serve` on `port`, its database in `dir`, with `extra` configuration sections.
pub fn start_nightshift_with(dir: &Path, port: u16, extra: &str) -> Running {
    start_nightshift_serving(dir, port, "", extra)
}

/// [`start_nightshift_with`], with `serve_keys` (lines indented two spaces) under `serve:`.
pub fn start_nightshift_serving(dir: &Path, port: u16, serve_keys: &str, extra: &str) -> Running {
    let config = dir.join("nightshift.yaml");
    std::fs::write(
        &config,
        format!(
            "serve:\n  listen: 127.0.0.1:{port}\n  interval: 1s\n{serve_keys}store:\n  path: {}\n{extra}",
            dir.join("nightshift.db").display()
        ),
    )
    .expect("write config");
    let child = Command::new(env!("CARGO_BIN_EXE_nightshift"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nightshift serve starts");
    let running = Running(child);
    wait_for(Duration::from_secs(20), || {
        (get(port, "/readyz").0 == 200).then_some(())
    })
    .expect("nightshift serve becomes ready");
    running
}

/// A remote-write series with its samples, as (timestamp ms, value).
pub fn rw_series(
    labels: &[(&str, &str)],
    samples: &[(i64, f64)],
) -> nightshift_ingest::remote_write::TimeSeries {
    use nightshift_ingest::remote_write::{Label, Sample, TimeSeries};
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: (*n).into(),
                value: (*v).into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
    }
}

/// A remote-write body: the request as protobuf, snappy block-compressed.
pub fn rw_body(series: Vec<nightshift_ingest::remote_write::TimeSeries>) -> Vec<u8> {
    use prost::Message;
    let req = nightshift_ingest::remote_write::WriteRequest { timeseries: series };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("compresses")
}

/// The headers of a remote-write 1.0 request.
pub const RW_HEADERS: [(&str, &str); 2] = [
    ("Content-Type", "application/x-protobuf"),
    ("Content-Encoding", "snappy"),
];
