//! PagerDuty Events API v2.

use crate::{assert_hidden, failed, ok, refused};
use axum::http::Method;
use nightshift_act::notify::{Endpoints, PagerDuty};
use nightshift_testkit::notify::is_json;
use nightshift_testkit::notify::pagerduty::*;
use serde_json::json;

const PD_KEY: &str = "R0UT1NGKEY0123456789abcdef012345"; // 32 characters, as PagerDuty wants

fn pagerduty_endpoints(base: &str, key: &str) -> Endpoints {
    Endpoints {
        pagerduty: Some(PagerDuty {
            routing_key: key.into(),
            url: format!("{base}/v2/enqueue"),
        }),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn pagerduty_triggers_an_event_and_returns_its_dedup_key() {
    let (s, base) = pagerduty_stand_in(None);
    let ep = pagerduty_endpoints(&base, PD_KEY);
    let out = ok(
        &ep,
        "notify.pagerduty",
        json!({"summary": "checkout 5xx at 12%", "severity": "Critical", "dedup_key": "INC-7"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(
        (hit.method.clone(), hit.uri.as_str()),
        (Method::POST, "/v2/enqueue")
    );
    assert!(is_json(&hit.headers));
    assert_eq!(
        hit.json(),
        json!({
            "routing_key": PD_KEY,
            "event_action": "trigger",
            "dedup_key": "INC-7",
            "payload": {"summary": "checkout 5xx at 12%", "source": "nightshift", "severity": "critical"},
            "client": "Nightshift",
        })
    );
    assert_eq!(out.output, json!({"dedup_key": "INC-7"}));
    assert_eq!(out.request["body"]["routing_key"], "***");
    assert_eq!(out.request["url"], json!(format!("{base}/v2/enqueue")));
    assert_hidden(&out.request.to_string(), PD_KEY);

    // Without a dedup key PagerDuty makes one; severity defaults to error; a long summary is
    // cut to PagerDuty's 1024 characters.
    let long = "x".repeat(3000);
    let out = ok(&ep, "notify.pagerduty", json!({"summary": long})).await;
    assert_eq!(
        out.output,
        json!({"dedup_key": "5ac64822c9d04b0f8e5d1c4bc4a3b2a1"})
    );
    let sent = s.hits.all()[1].json();
    assert_eq!(sent["payload"]["severity"], "error");
    assert_eq!(
        sent["payload"]["summary"].as_str().unwrap().chars().count(),
        1024
    );
    assert!(sent.get("dedup_key").is_none());
}

#[tokio::test]
async fn pagerduty_invalid_events_and_rate_limits_are_reported() {
    let (s, base) = pagerduty_stand_in(Some(1));
    // A key of the wrong length: PagerDuty's 400 and its reasons, without the key.
    let short_key = "shortKEY12345";
    let e = failed(
        &pagerduty_endpoints(&base, short_key),
        "notify.pagerduty",
        json!({"summary": "x"}),
    )
    .await;
    assert!(e.message.contains("HTTP 400"), "{}", e.message);
    assert!(
        e.message.contains("Event object is invalid"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("Length of 'routing_key' is incorrect (should be 32 characters)"),
        "{}",
        e.message
    );
    assert_hidden(&e.message, short_key);
    assert_hidden(&e.request.unwrap().to_string(), short_key);

    // One event per key: the second is rate-limited.
    let ep = pagerduty_endpoints(&base, PD_KEY);
    ok(&ep, "notify.pagerduty", json!({"summary": "first"})).await;
    let e = failed(&ep, "notify.pagerduty", json!({"summary": "second"})).await;
    assert!(
        e.message.contains("HTTP 429") && e.message.contains("rate-limited"),
        "{}",
        e.message
    );

    // Refused before sending: an unknown severity, an over-long dedup key.
    let before = s.hits.all().len();
    let why = refused(
        &ep,
        "notify.pagerduty",
        json!({"summary": "x", "severity": "sev1"}),
    )
    .await;
    assert!(
        why.contains("severity") && why.contains("critical"),
        "{why}"
    );
    let why = refused(
        &ep,
        "notify.pagerduty",
        json!({"summary": "x", "dedup_key": "k".repeat(256)}),
    )
    .await;
    assert!(why.contains("255"), "{why}");
    assert_eq!(s.hits.all().len(), before);
}
