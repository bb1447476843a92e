//! GitLab REST API v4.

use crate::{assert_hidden, failed, ok, refused};
use axum::http::Method;
use nightshift_act::notify::{Endpoints, GitLab};
use nightshift_testkit::notify::gitlab::*;
use nightshift_testkit::notify::is_json;
use serde_json::json;

fn gitlab_endpoints(base: &str, token: &str) -> Endpoints {
    Endpoints {
        gitlab: Some(GitLab {
            url: base.into(),
            token: token.into(),
        }),
        ..Endpoints::default()
    }
}

#[tokio::test]
async fn gitlab_creates_an_issue_by_project_path_or_id() {
    let (s, base) = gitlab_stand_in();
    let ep = gitlab_endpoints(&base, GL_TOKEN);
    let out = ok(
        &ep,
        "ticket.gitlab",
        json!({"project": "ops/checkout", "title": "INC-7: checkout 5xx",
               "description": "Suspected: payments", "labels": ["incident", " sev2 "]}),
    )
    .await;
    let hit = s.hits.only();
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.uri, "/api/v4/projects/ops%2Fcheckout/issues");
    assert_eq!(hit.header("private-token"), Some(GL_TOKEN));
    assert!(is_json(&hit.headers));
    assert_eq!(
        hit.json(),
        json!({"title": "INC-7: checkout 5xx", "description": "Suspected: payments", "labels": "incident,sev2"})
    );
    assert_eq!(
        out.output,
        json!({"iid": 7, "url": format!("{base}/ops/checkout/-/issues/7")})
    );
    assert_eq!(out.request["headers"]["PRIVATE-TOKEN"], "***");
    assert_hidden(&out.request.to_string(), GL_TOKEN);

    ok(
        &ep,
        "ticket.gitlab",
        json!({"project": 42, "title": "t", "labels": "a, b,,c"}),
    )
    .await;
    let hit = s.hits.all()[1].clone();
    assert_eq!(hit.uri, "/api/v4/projects/42/issues");
    assert_eq!(hit.json(), json!({"title": "t", "labels": "a,b,c"}));
}

#[tokio::test]
async fn gitlab_errors_carry_its_message() {
    let (s, base) = gitlab_stand_in();
    let ep = gitlab_endpoints(&base, GL_TOKEN);
    let e = failed(
        &ep,
        "ticket.gitlab",
        json!({"project": "ops/nope", "title": "t"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 404") && e.message.contains("404 Project Not Found"),
        "{}",
        e.message
    );
    assert!(e.message.contains("ops/nope"), "{}", e.message);
    let e = failed(
        &ep,
        "ticket.gitlab",
        json!({"project": "42", "title": "t".repeat(300)}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 400")
            && e.message
                .contains("title is too long (maximum is 255 characters)"),
        "{}",
        e.message
    );
    let e = failed(
        &gitlab_endpoints(&base, "glpat-wrong-1234"),
        "ticket.gitlab",
        json!({"project": "42", "title": "t"}),
    )
    .await;
    assert!(
        e.message.contains("HTTP 401")
            && e.message.contains("401 Unauthorized")
            && e.message.contains("act.endpoints.gitlab.token"),
        "{}",
        e.message
    );
    assert_hidden(&e.message, "glpat-wrong-1234");
    assert_hidden(&e.request.unwrap().to_string(), "glpat-wrong-1234");

    let before = s.hits.all().len();
    let why = refused(
        &ep,
        "ticket.gitlab",
        json!({"project": "42", "title": "t", "labels": {"a": 1}}),
    )
    .await;
    assert!(why.contains("labels"), "{why}");
    assert_eq!(s.hits.all().len(), before);
}
