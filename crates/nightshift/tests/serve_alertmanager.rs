//! `nightshift serve` as a webhook receiver of a real Alertmanager (Debian's 0.25, installed by
//! `scripts/test`): an alert posted to Alertmanager reaches Nightshift firing, then resolved,
//! with Alertmanager's own fingerprint; and bad alert payloads are answered 400.

mod common;

use common::{
    CHECKOUT_ALERTS, RW_HEADERS, Running, free_port, get, http, post_alert_storm, rw_body,
    rw_series, start_alertmanager, start_nightshift, temp_dir, wait_for,
};
use std::time::Duration;

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
    let Some(alertmanager) = nightshift_testkit::peers::alertmanager() else {
        return;
    };
    let dir = temp_dir("serve-am");
    let (ns, am) = (free_port(), free_port());
    let _nightshift = start_nightshift(&dir, ns);
    let _alertmanager = start_alertmanager(
        alertmanager,
        &dir,
        am,
        &format!(
            "route:\n  receiver: nightshift\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: nightshift\n    webhook_configs:\n      - url: http://127.0.0.1:{ns}/api/v1/alerts/alertmanager\n        send_resolved: true\n"
        ),
    );

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

/// Remote-writes one series' samples to Nightshift.
fn write_series(ns: u16, labels: &[(&str, &str)], samples: &[(i64, f64)]) {
    let body = rw_body(vec![rw_series(labels, samples)]);
    let (code, text) = http(ns, "POST", "/api/v1/write", &RW_HEADERS, &body);
    assert_eq!(code, 204, "{text}");
}

/// Alertmanager's active alerts named `alertname`.
fn am_alerts(am: u16, alertname: &str) -> Vec<serde_json::Value> {
    let (_, body) = get(
        am,
        &format!("/api/v2/alerts?filter=alertname%3D%22{alertname}%22"),
    );
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// A real Alertmanager that routes nowhere, and `nightshift serve` posting its alerts to it
/// with `extra` configuration: (the two processes, Nightshift's port, Alertmanager's port).
/// `None`, with the reason printed, when Alertmanager is not installed (and peers are not
/// required).
fn nightshift_posting_to_alertmanager(
    name: &str,
    extra: &str,
) -> Option<(Running, Running, u16, u16)> {
    let alertmanager = nightshift_testkit::peers::alertmanager()?;
    let dir = temp_dir(name);
    let (ns, am) = (free_port(), free_port());
    let am_proc = start_alertmanager(
        alertmanager,
        &dir,
        am,
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    );
    let config = format!("alertmanager:\n  url: http://127.0.0.1:{am}\n  resend: 1m\n{extra}");
    let ns_proc = common::start_nightshift_with(&dir, ns, &config);
    Some((am_proc, ns_proc, ns, am))
}

#[test]
fn nightshift_raises_and_resolves_its_anomaly_alerts_in_a_real_alertmanager() {
    let Some((_am, _nightshift, ns, am)) = nightshift_posting_to_alertmanager(
        "serve-am-out",
        "detect:\n  watch: ['checkout_latency_seconds']\n",
    ) else {
        return;
    };

    // Two days of a steady series at 5-minute steps, then a value far above anything seen.
    let labels = [
        ("__name__", "checkout_latency_seconds"),
        ("service", "checkout"),
    ];
    let now = jiff::Timestamp::now().as_millisecond();
    let start = now - 600 * 300_000;
    let history: Vec<(i64, f64)> = (0..598)
        .map(|i| (start + i * 300_000, 0.2 + 0.01 * ((i * 7919) % 13) as f64))
        .collect();
    write_series(ns, &labels, &history);
    write_series(ns, &labels, &[(now - 30_000, 5.0)]);
    let firing = wait_for(Duration::from_secs(30), || {
        let a = am_alerts(am, "NightshiftAnomaly");
        (!a.is_empty()).then_some(a)
    })
    .expect("Nightshift's anomaly alert reached Alertmanager");
    let labels_seen = &firing[0]["labels"];
    assert_eq!(labels_seen["metric"], "checkout_latency_seconds");
    assert_eq!(labels_seen["service"], "checkout");
    assert_eq!(labels_seen["severity"], "warning");
    let summary = firing[0]["annotations"]["summary"].as_str().unwrap_or("");
    assert!(summary.contains("checkout_latency_seconds"), "{summary}");

    // Back to normal: the event ends and the alert resolves. (A firing alert is sent ending four
    // resends, four minutes, ahead: only Nightshift's resolution ends it within the wait.)
    let after: Vec<(i64, f64)> = (1..=20).map(|i| (now - 30_000 + i * 1000, 0.2)).collect();
    write_series(ns, &labels, &after);
    wait_for(Duration::from_secs(30), || {
        am_alerts(am, "NightshiftAnomaly").is_empty().then_some(())
    })
    .expect("the alert resolved in Alertmanager");
}

#[test]
fn an_alert_storm_becomes_a_stored_incident_raised_in_alertmanager() {
    let Some((_am, _nightshift, ns, am)) = nightshift_posting_to_alertmanager("serve-incident", "")
    else {
        return;
    };
    // The incident is stored and readable, with its ranked hypotheses and evidence.
    let id = post_alert_storm(ns, "checkout", &CHECKOUT_ALERTS);
    let (code, body) = get(ns, &format!("/api/v1/incidents/{id}"));
    assert_eq!(code, 200, "{body}");
    let incident: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(incident["alerts"].as_array().map(Vec::len), Some(3));
    assert_eq!(incident["hypotheses"][0]["entity"]["name"], "checkout");
    assert!(
        incident["hypotheses"][0]["evidence"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );
    assert_eq!(get(ns, "/api/v1/incidents/inc-none").0, 404);
    assert_eq!(get(ns, "/api/v1/incidents?status=sideways").0, 400);

    // Acknowledged by someone: the answer is the incident as stored, with the transition on
    // its timeline, and it lists as acknowledged.
    let ack = format!("/api/v1/incidents/{id}/acknowledge");
    let (code, body) = http(ns, "POST", &ack, &JSON, br#"{"by": "ana"}"#);
    assert_eq!(code, 200, "{body}");
    let acked: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["acknowledged_by"], "ana");
    let (_, body) = get(ns, &format!("/api/v1/incidents/{id}"));
    let stored: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(stored["status"], "acknowledged", "{body}");
    assert!(
        stored["timeline"].as_array().is_some_and(|t| t
            .iter()
            .any(|e| e["kind"] == "lifecycle" && e["text"] == "acknowledged by ana")),
        "{body}"
    );
    let (_, body) = get(ns, "/api/v1/incidents?status=acknowledged");
    assert!(body.contains(&id), "{body}");
    let (code, body) = http(ns, "POST", &ack, &JSON, br#"{"who": "ana"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("by"), "{body}");
    let (code, body) = http(
        ns,
        "POST",
        "/api/v1/incidents/inc-none/acknowledge",
        &JSON,
        b"",
    );
    assert_eq!(code, 404, "{body}");
    assert_eq!(get(ns, "/api/v1/anomalies?limit=nope").0, 400);

    // And Alertmanager has it, with the root cause and a link back.
    let raised = wait_for(Duration::from_secs(30), || {
        let a = am_alerts(am, "NightshiftIncident");
        (!a.is_empty()).then_some(a)
    })
    .expect("the incident alert reached Alertmanager");
    assert_eq!(raised[0]["labels"]["incident_id"], id.as_str());
    assert_eq!(raised[0]["labels"]["service"], "checkout");
    let annotations = &raised[0]["annotations"];
    assert!(
        annotations["root_cause"]
            .as_str()
            .is_some_and(|r| r.starts_with("checkout"))
    );
    assert!(
        annotations["link"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!("/api/v1/incidents/{id}")))
    );
}
