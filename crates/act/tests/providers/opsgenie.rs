//! Opsgenie Alert API.

use crate::{assert_hidden, failed, ok, refused};
use axum::http::Method;
use nightshift_act::notify::{Endpoints, Opsgenie};
use nightshift_testkit::notify::is_json;
use nightshift_testkit::notify::opsgenie::*;
use serde_json::json;

fn opsgenie_endpoints(base: &str, key: &str) -> Endpoints {
    Endpoints {
        opsgenie: Some(Opsgenie {
            api_key: key.into(),
            url: format!("{base}/"),
        }),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn opsgenie_creates_an_alert_with_a_genie_key() {
    let (s, base) = opsgenie_stand_in();
    let ep = opsgenie_endpoints(&base, OG_KEY);
    let long = format!("checkout is down {}", "!".repeat(200));
    let out = ok(
        &ep,
        "notify.opsgenie",
        json!({"message": long, "priority": "p2", "alias": "INC-7"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(
        (hit.method.clone(), hit.uri.as_str()),
        (Method::POST, "/v2/alerts")
    );
    assert_eq!(
        hit.header("authorization"),
        Some(format!("GenieKey {OG_KEY}").as_str())
    );
    assert!(is_json(&hit.headers));
    let sent = hit.json();
    let message = sent["message"].as_str().unwrap();
    assert_eq!(message.chars().count(), 130);
    assert!(message.starts_with("checkout is down !") && message.ends_with('…'));
    assert_eq!(
        sent,
        json!({"message": message, "alias": "INC-7", "priority": "P2", "source": "Nightshift"})
    );
    assert_eq!(out.output, json!({"request_id": OG_REQUEST_ID}));
    assert_eq!(out.request["headers"]["Authorization"], "***");
    assert_hidden(&out.request.to_string(), OG_KEY);
}

#[tokio::test]
async fn opsgenie_refusals_carry_its_message() {
    let (s, base) = opsgenie_stand_in();
    let e = failed(
        &opsgenie_endpoints(&base, "not-a-key"),
        "notify.opsgenie",
        json!({"message": "x"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 401") && e.message.contains("Could not authenticate"),
        "{}",
        e.message
    );
    assert!(e.message.contains("act.endpoints.opsgenie.api_key"));
    assert_hidden(&e.message, "not-a-key");
    let e = failed(
        &opsgenie_endpoints(&base, OG_READ_ONLY_KEY),
        "notify.opsgenie",
        json!({"message": "x"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 403") && e.message.contains("required permission"),
        "{}",
        e.message
    );
    assert_hidden(&e.message, OG_READ_ONLY_KEY);

    let ep = opsgenie_endpoints(&base, OG_KEY);
    let before = s.hits.all().len();
    let why = refused(
        &ep,
        "notify.opsgenie",
        json!({"message": "x", "priority": "urgent"}),
    )
    .await;
    assert!(why.contains("P1"), "{why}");
    let why = refused(&ep, "notify.opsgenie", json!({"message": ""})).await;
    assert!(why.contains("message"), "{why}");
    assert_eq!(s.hits.all().len(), before);
}
