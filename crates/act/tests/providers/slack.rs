//! Slack incoming webhooks.

use crate::{assert_hidden, failed, ok, refused};
use axum::http::Method;
use nightshift_act::notify::Endpoints;
use nightshift_testkit::notify::is_json;
use nightshift_testkit::notify::slack::*;
use serde_json::json;

fn slack_endpoints(base: &str) -> Endpoints {
    Endpoints {
        slack_webhook: Some(format!("{base}{SLACK_PATH}")),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn slack_posts_text_and_channel_as_json_and_hides_the_webhook_path() {
    let (s, base) = slack_stand_in();
    let ep = slack_endpoints(&base);
    let out = ok(
        &ep,
        "notify.slack",
        json!({"text": "Rolled back checkout for INC-7", "channel": "#ops"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.uri, SLACK_PATH);
    assert!(is_json(&hit.headers));
    assert_eq!(
        hit.json(),
        json!({"text": "Rolled back checkout for INC-7", "channel": "#ops"})
    );
    assert_eq!(out.output, json!({"status": 200}));
    assert_eq!(out.request["url"], json!(format!("{base}/***")));
    assert_eq!(out.request["method"], "POST");
    assert_hidden(&out.request.to_string(), "slackSECRETpath");
}

#[tokio::test]
async fn slack_errors_carry_slacks_code() {
    let (s, base) = slack_stand_in();
    let ep = slack_endpoints(&base);
    for (channel, status, code) in [
        ("#archived", 410, "channel_is_archived"),
        ("#announcements", 403, "action_prohibited"),
        ("#nowhere", 404, "channel_not_found"),
    ] {
        let e = failed(
            &ep,
            "notify.slack",
            json!({"text": "hello", "channel": channel}),
        )
        .await;
        assert!(
            e.message.contains(&format!("HTTP {status}")) && e.message.contains(code),
            "{}",
            e.message
        );
        assert_hidden(&e.message, "slackSECRETpath");
    }
    // A revoked or mistyped webhook.
    let revoked = Endpoints {
        slack_webhook: Some(format!("{base}/services/T0001/B0001/revoked")),
        ..Endpoints::default()
    };
    let e = failed(&revoked, "notify.slack", json!({"text": "hello"})).await;
    assert!(e.message.contains("HTTP 404") && e.message.contains("no_service"));
    assert_hidden(&e.request.unwrap().to_string(), "revoked");
    // Blank text is refused here rather than sent for Slack to answer `no_text`.
    let before = s.hits.all().len();
    let why = refused(&ep, "notify.slack", json!({"text": "  "})).await;
    assert!(why.contains("text"), "{why}");
    assert_eq!(s.hits.all().len(), before);
}
