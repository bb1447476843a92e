//! Jira REST API v2 (Cloud and Data Center).

use crate::{assert_hidden, failed, ok};
use axum::http::Method;
use nightshift_act::notify::{Endpoints, Jira};
use nightshift_testkit::notify::jira::*;
use serde_json::json;

fn jira_endpoints(base: &str, user: Option<&str>, token: &str) -> Endpoints {
    Endpoints {
        jira: Some(Jira {
            url: format!("{base}/"),
            user: user.map(str::to_string),
            token: token.into(),
        }),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn jira_creates_an_issue_with_basic_auth() {
    let (s, base) = jira_stand_in();
    let ep = jira_endpoints(&base, Some(JIRA_USER), JIRA_TOKEN);
    let out = ok(
        &ep,
        "ticket.jira",
        json!({"project": "OPS", "summary": "INC-7: checkout\n5xx", "description": "Suspected: payments"}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(
        (hit.method.clone(), hit.uri.as_str()),
        (Method::POST, "/rest/api/2/issue")
    );
    assert_eq!(
        hit.header("authorization"),
        Some(
            format!(
                "Basic {}",
                b64(format!("{JIRA_USER}:{JIRA_TOKEN}").as_bytes())
            )
            .as_str()
        )
    );
    assert_eq!(
        hit.json(),
        json!({"fields": {
            "project": {"key": "OPS"},
            "summary": "INC-7: checkout 5xx",
            "description": "Suspected: payments",
            "issuetype": {"name": "Task"},
        }})
    );
    assert_eq!(
        out.output,
        json!({"key": "OPS-42", "id": "10042", "url": format!("{base}/browse/OPS-42")})
    );
    assert_eq!(out.request["headers"]["Authorization"], "***");
    assert_hidden(&out.request.to_string(), JIRA_TOKEN);

    // Data Center: no user, the token as a bearer; a long summary cut under Jira's limit.
    let ep = jira_endpoints(&base, None, JIRA_PAT);
    ok(
        &ep,
        "ticket.jira",
        json!({"project": "OPS", "summary": "s".repeat(400), "issue_type": "Bug"}),
    )
    .await;
    let hit = s.hits.all()[1].clone();
    assert_eq!(
        hit.header("authorization"),
        Some(format!("Bearer {JIRA_PAT}").as_str())
    );
    assert_eq!(hit.json()["fields"]["issuetype"]["name"], "Bug");
    assert_eq!(
        hit.json()["fields"]["summary"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        254
    );
}

#[tokio::test]
async fn jira_errors_list_its_field_messages() {
    let (_s, base) = jira_stand_in();
    let ep = jira_endpoints(&base, Some(JIRA_USER), JIRA_TOKEN);
    let e = failed(
        &ep,
        "ticket.jira",
        json!({"project": "NOPE", "summary": "x", "issue_type": "Epic"}),
    )
    .await;
    assert!(e.message.contains("HTTP 400"), "{}", e.message);
    assert!(
        e.message
            .contains("project: Specify a valid project ID or key"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("issuetype: Specify a valid issue type"),
        "{}",
        e.message
    );
    let e = failed(
        &ep,
        "ticket.jira",
        json!({"project": "OPS", "summary": "x", "description": "d".repeat(40_000)}),
    )
    .await;
    assert!(
        e.message
            .contains("description: The entered text is too long"),
        "{}",
        e.message
    );

    let wrong = jira_endpoints(&base, Some(JIRA_USER), "wrong-token-xyz");
    let e = failed(
        &wrong,
        "ticket.jira",
        json!({"project": "OPS", "summary": "x"}),
    )
    .await;
    assert!(e.message.contains("HTTP 401"), "{}", e.message);
    assert!(
        e.message.contains("Client must be authenticated")
            && e.message.contains("act.endpoints.jira"),
        "{}",
        e.message
    );
    assert_hidden(&e.message, "wrong-token-xyz");
    assert_hidden(&e.request.unwrap().to_string(), "wrong-token-xyz");
}
