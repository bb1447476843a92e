//! `http.request` and `notify.webhook` against an echoing server.

use crate::{assert_hidden, failed, ok, refused};
use axum::http::Method;
use nightshift_act::notify::Endpoints;
use nightshift_testkit::notify::echo::*;
use nightshift_testkit::notify::is_json;
use serde_json::json;

pub(crate) fn hosts(entries: &[&str]) -> Endpoints {
    Endpoints {
        http_hosts: entries.iter().map(|e| e.to_string()).collect(),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn http_request_sends_method_headers_and_json_and_masks_secrets() {
    let (s, base, host_port) = echo_stand_in();
    let ep = hosts(&[&host_port]);
    let out = ok(
        &ep,
        "http.request",
        json!({
            "url": format!("{base}/json?api_key=QUERYSECRET&page=2"),
            "method": "put",
            "headers": {"X-Trace": "abc", "Authorization": "Bearer HEADERSECRET"},
            "body": {"replicas": 3, "password": "BODYSECRET"},
        }),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(hit.method, Method::PUT);
    assert_eq!(hit.uri, "/json?api_key=QUERYSECRET&page=2");
    assert_eq!(hit.header("x-trace"), Some("abc"));
    assert_eq!(hit.header("authorization"), Some("Bearer HEADERSECRET"));
    assert!(is_json(&hit.headers));
    assert_eq!(hit.json(), json!({"replicas": 3, "password": "BODYSECRET"}));
    assert_eq!(out.output["status"], 200);
    assert_eq!(out.output["body"]["ok"], true);
    assert_eq!(out.request["method"], "PUT");
    assert_eq!(out.request["headers"]["Authorization"], "***");
    assert_eq!(out.request["headers"]["X-Trace"], "abc");
    assert_eq!(
        out.request["body"],
        json!({"replicas": 3, "password": "***"})
    );
    let recorded = out.request.to_string();
    for secret in ["QUERYSECRET", "HEADERSECRET", "BODYSECRET"] {
        assert_hidden(&recorded, secret);
    }
    assert!(out.request["url"].as_str().unwrap().contains("page=2"));
}

#[tokio::test]
async fn http_request_defaults_statuses_and_long_answers() {
    let (s, base, host_port) = echo_stand_in();
    // The host alone allows any port.
    let ep = hosts(&["127.0.0.1"]);
    // POST by default; text goes as text.
    let out = ok(
        &ep,
        "http.request",
        json!({"url": format!("{base}/text"), "body": "restart please"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.body, b"restart please");
    assert_eq!(
        hit.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(out.output, json!({"status": 200, "body": "plain words"}));

    // expect_status: an exact status, given as a number or as text; otherwise any 2xx.
    let out = ok(
        &ep,
        "http.request",
        json!({"url": format!("{base}/status/404"), "method": "GET", "expect_status": 404}),
    )
    .await;
    assert_eq!(out.output["status"], 404);
    let e = failed(
        &ep,
        "http.request",
        json!({"url": format!("{base}/status/503"), "method": "GET"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 503 (expected 2xx)")
            && e.message.contains("status 503 with details"),
        "{}",
        e.message
    );
    let e = failed(
        &ep,
        "http.request",
        json!({"url": format!("{base}/created"), "expect_status": "200"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 201 (expected 200)"),
        "{}",
        e.message
    );

    // A long answer is cut at 64 KiB, on a character boundary.
    let out = ok(
        &ep,
        "http.request",
        json!({"url": format!("{base}/big"), "method": "GET"}),
    )
    .await;
    let body = out.output["body"].as_str().unwrap();
    assert_eq!(body.len(), 64 * 1024 - 1);
    assert!(body.starts_with('a') && body.chars().skip(1).all(|c| c == 'é'));

    // A port-specific entry allows only that port.
    let only_other_port = hosts(&["127.0.0.1:1"]);
    let why = refused(
        &only_other_port,
        "http.request",
        json!({"url": format!("{base}/json")}),
    )
    .await;
    assert!(why.contains(&host_port), "{why}");
}

#[tokio::test]
async fn http_request_refuses_unlisted_hosts_and_bad_arguments_sending_nothing() {
    let (s, base, host_port) = echo_stand_in();
    let port = host_port.rsplit(':').next().unwrap();
    let ep = hosts(&[&host_port]);
    let cases = [
        (
            json!({"url": format!("http://localhost:{port}/json")}),
            "may not call localhost",
        ),
        (
            json!({"url": format!("ftp://{host_port}/x")}),
            "http:// or https://",
        ),
        (json!({"url": "not a url"}), "not a valid URL"),
        (
            json!({"url": format!("{base}/json"), "method": "TRACE"}),
            "TRACE",
        ),
        (
            json!({"url": format!("{base}/json"), "headers": {"X-A": "1\r\nX-Injected: 1"}}),
            "line breaks",
        ),
        (
            json!({"url": format!("{base}/json"), "headers": {"Host": "example.com"}}),
            "may not be set",
        ),
        (
            json!({"url": format!("{base}/json"), "headers": ["X-A: 1"]}),
            "headers must be a mapping",
        ),
        (
            json!({"url": format!("{base}/json"), "expect_status": 42}),
            "expect_status",
        ),
    ];
    for (with, why) in cases {
        let message = refused(&ep, "http.request", with.clone()).await;
        assert!(message.contains(why), "{with}: {message}");
    }
    let message = refused(
        &ep,
        "notify.webhook",
        json!({"url": "https://hooks.example.com/x"}),
    )
    .await;
    assert!(
        message.contains("hooks.example.com") && message.contains("act.endpoints.http_hosts"),
        "{message}"
    );
    // With no hosts listed, nothing may be called.
    let none = Endpoints::default();
    for uses in ["http.request", "notify.webhook"] {
        let message = refused(&none, uses, json!({"url": format!("{base}/json")})).await;
        assert!(message.contains("act.endpoints.http_hosts"), "{message}");
    }
    assert!(s.hits.all().is_empty(), "sent: {:?}", s.hits.all());
}

#[tokio::test]
async fn redirects_off_the_listed_hosts_are_not_followed_or_fail() {
    let (s, base, host_port) = echo_stand_in();
    let (other, other_base, _) = echo_stand_in();
    *s.elsewhere.lock().unwrap() = other_base;
    let ep = hosts(&[&host_port]);
    let with = json!({"url": format!("{base}/redirect"), "method": "GET"});
    // The engine's client does not follow: the 302 is the answer.
    let e = failed(&ep, "http.request", with.clone()).await;
    assert!(e.message.contains("HTTP 302"), "{}", e.message);
    assert!(other.hits.all().is_empty());
    // A client that follows redirects: the call fails, naming where it landed.
    let following = reqwest::Client::new();
    let e = ep
        .call(&following, "http.request", &with)
        .await
        .expect_err("landed on an unlisted host");
    assert!(
        e.message.contains("after a redirect") && e.message.contains("http_hosts"),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn webhook_posts_json() {
    let (s, base, host_port) = echo_stand_in();
    let ep = hosts(&[&host_port]);
    let out = ok(
        &ep,
        "notify.webhook",
        json!({"url": format!("{base}/hook"), "body": {"incident": "INC-7", "token": "T0KEN"}}),
    )
    .await;
    assert_eq!(out.output, json!({"status": 200}));
    assert_eq!(
        out.request["body"],
        json!({"incident": "INC-7", "token": "***"})
    );
    // Text that is JSON is sent as that JSON; no body sends {}.
    ok(
        &ep,
        "notify.webhook",
        json!({"url": format!("{base}/hook"), "body": "{\"a\": [1, 2]}"}),
    )
    .await;
    ok(
        &ep,
        "notify.webhook",
        json!({"url": format!("{base}/hook")}),
    )
    .await;
    let hits = s.hits.all();
    assert_eq!(hits.len(), 3);
    assert!(
        hits.iter()
            .all(|h| h.method == Method::POST && h.uri == "/hook" && is_json(&h.headers))
    );
    assert_eq!(
        hits[0].json(),
        json!({"incident": "INC-7", "token": "T0KEN"})
    );
    assert_eq!(hits[1].json(), json!({"a": [1, 2]}));
    assert_eq!(hits[2].json(), json!({}));
    let e = failed(
        &ep,
        "notify.webhook",
        json!({"url": format!("{base}/status/500")}),
    )
    .await;
    assert!(e.message.contains("HTTP 500"), "{}", e.message);
}
