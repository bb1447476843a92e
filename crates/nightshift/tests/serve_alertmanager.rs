//! `nightshift serve` as a webhook receiver of a real Alertmanager (Debian's 0.25, installed by
//! `scripts/test`): an alert posted to Alertmanager reaches Nightshift firing, then resolved,
//! with Alertmanager's own fingerprint; and bad alert payloads are answered 400.

mod common;

use common::{Running, free_port, get, http, start_nightshift, temp_dir, wait_for};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn alertmanager_binary() -> Option<&'static str> {
    [
        "/usr/bin/prometheus-alertmanager",
        "/usr/bin/alertmanager",
        "/usr/local/bin/alertmanager",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

fn rfc3339(offset_ms: i64) -> String {
    let now = jiff::Timestamp::now().as_millisecond() + offset_ms;
    jiff::Timestamp::from_millisecond(now)
        .map(|t| t.to_string())
        .expect("a valid time")
}

const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

/// Nightshift's stored alerts with `status`, as (fingerprint, alertname) pairs.
fn stored(ns: u16, status: &str) -> Vec<(String, String)> {
    let (code, body) = get(ns, &format!("/api/v1/alerts?status={status}"));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v.as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            (
                a["fingerprint"].as_str().unwrap_or("").to_string(),
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_real_alertmanager_delivers_firing_then_resolved_alerts() {
    let Some(alertmanager) = alertmanager_binary() else {
        eprintln!(
            "skipped: no alertmanager binary (scripts/test installs Debian's `prometheus-alertmanager`)"
        );
        return;
    };
    let dir = temp_dir("serve-am");
    let (ns, am) = (free_port(), free_port());
    let _nightshift = start_nightshift(&dir, ns);
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: nightshift\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: nightshift\n    webhook_configs:\n      - url: http://127.0.0.1:{ns}/api/v1/alerts/alertmanager\n        send_resolved: true\n"
        ),
    )
    .expect("write alertmanager.yml");
    let _alertmanager = Running(
        Command::new(alertmanager)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager starts"),
    );
    wait_for(Duration::from_secs(30), || {
        (get(am, "/-/ready").0 == 200).then_some(())
    })
    .expect("alertmanager becomes ready");

    let alert = |ends: Option<String>| {
        let ends = ends.map_or(String::new(), |e| format!(r#", "endsAt": "{e}""#));
        format!(
            r#"[{{"labels": {{"alertname": "CheckoutLatencyHigh", "service": "checkout", "severity": "page"}}, "annotations": {{"summary": "p99 above 1s"}}, "startsAt": "{}"{ends}}}]"#,
            rfc3339(-60_000)
        )
    };
    let (code, body) = http(am, "POST", "/api/v2/alerts", &JSON, alert(None).as_bytes());
    assert_eq!(code, 200, "Alertmanager took the alert: {body}");

    let firing = wait_for(Duration::from_secs(30), || {
        let s = stored(ns, "firing");
        (!s.is_empty()).then_some(s)
    })
    .expect("the firing alert reached Nightshift");
    assert_eq!(firing[0].1, "CheckoutLatencyHigh");
    // The same fingerprint as Alertmanager's own.
    let (_, am_alerts) = get(am, "/api/v2/alerts");
    let am_alerts: serde_json::Value = serde_json::from_str(&am_alerts).expect("JSON");
    assert_eq!(
        am_alerts[0]["fingerprint"].as_str(),
        Some(firing[0].0.as_str()),
        "{am_alerts}"
    );

    // Ended a second ago: Alertmanager resolves it and tells Nightshift.
    let (code, body) = http(
        am,
        "POST",
        "/api/v2/alerts",
        &JSON,
        alert(Some(rfc3339(-1_000))).as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    let resolved = wait_for(Duration::from_secs(30), || {
        let s = stored(ns, "resolved");
        (!s.is_empty()).then_some(s)
    })
    .expect("the resolved alert reached Nightshift");
    assert_eq!(resolved[0].0, firing[0].0);
}

#[test]
fn bad_alert_payloads_are_answered_400_and_good_ones_stored() {
    let dir = temp_dir("serve-alerts-bad");
    let ns = free_port();
    let _nightshift = start_nightshift(&dir, ns);
    let cases: [(&str, &str, &str); 5] = [
        ("/api/v1/alerts/alertmanager", "{", "not valid JSON"),
        (
            "/api/v1/alerts/alertmanager",
            r#"{"version": "3", "alerts": []}"#,
            "version \"3\"",
        ),
        (
            "/api/v1/alerts",
            r#"[{"labels": {"bad-name": "x"}}]"#,
            "label name \"bad-name\"",
        ),
        (
            "/api/v1/alerts",
            r#"[{"labels": {}}]"#,
            "at least one label",
        ),
        (
            "/api/v1/alerts",
            r#"{"labels": {"a": "b"}}"#,
            "not valid JSON",
        ),
    ];
    for (path, body, says) in cases {
        let (code, text) = http(ns, "POST", path, &JSON, body.as_bytes());
        assert_eq!(code, 400, "{path} {body}: {text}");
        assert!(text.contains(says), "{path} {body}: {text}");
    }
    assert_eq!(get(ns, "/api/v1/alerts?status=sideways").0, 400);
    let (code, _) = http(
        ns,
        "POST",
        "/api/v1/alerts",
        &JSON,
        br#"[{"labels": {"alertname": "Kept"}}]"#,
    );
    assert_eq!(code, 200);
    assert_eq!(
        stored(ns, "firing")
            .iter()
            .map(|a| a.1.as_str())
            .collect::<Vec<_>>(),
        vec!["Kept"]
    );
    assert_eq!(get(ns, "/healthz").0, 200);
}
