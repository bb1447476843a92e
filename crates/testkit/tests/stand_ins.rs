//! The stand-ins are only as good as the rules they hold a client to: each refuses a request
//! that breaks its API's documented rules, the way the API does.

use nightshift_testkit::kubernetes::StandIn;
use nightshift_testkit::notify::gitlab::{GL_TOKEN, gitlab_stand_in};
use nightshift_testkit::notify::jira::{JIRA_TOKEN, JIRA_USER, jira_stand_in};
use nightshift_testkit::notify::opsgenie::{OG_KEY, opsgenie_stand_in};
use nightshift_testkit::notify::pagerduty::pagerduty_stand_in;
use nightshift_testkit::notify::slack::{SLACK_PATH, slack_stand_in};
use serde_json::{Value, json};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
}

async fn send(req: reqwest::RequestBuilder) -> (u16, String) {
    let r = req.send().await.expect("the stand-in answers");
    let status = r.status().as_u16();
    (status, r.text().await.expect("a body"))
}

#[tokio::test]
async fn slack_webhook_refuses_what_slack_refuses() {
    let http = client();
    let (_, slack) = slack_stand_in();
    let url = format!("{slack}{SLACK_PATH}");
    assert_eq!(
        send(http.post(&url).json(&json!({"channel": "#ops"}))).await,
        (400, "no_text".to_string())
    );
    assert_eq!(
        send(
            http.post(&url)
                .body("{not json")
                .header("content-type", "application/json")
        )
        .await,
        (400, "invalid_payload".to_string())
    );
}

#[tokio::test]
async fn pagerduty_refuses_invalid_events_with_its_reasons() {
    let http = client();
    let (_, pd) = pagerduty_stand_in(None);
    let url = format!("{pd}/v2/enqueue");
    let (status, body) = send(http.post(&url).json(&json!({
        "event_action": "trigger",
        "payload": {"source": "s", "severity": "fatal"},
    })))
    .await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "invalid event");
    let errors = body["errors"].to_string();
    for e in [
        "'routing_key' is missing",
        "'payload.summary' is missing",
        "'payload.severity' is invalid",
    ] {
        assert!(errors.contains(e), "{errors}");
    }
}

#[tokio::test]
async fn opsgenie_refuses_missing_keys_and_messages() {
    let http = client();
    let (_, og) = opsgenie_stand_in();
    let url = format!("{og}/v2/alerts");
    let (status, _) = send(http.post(&url).json(&json!({"message": "x"}))).await;
    assert_eq!(status, 401);
    let (status, _) = send(
        http.post(&url)
            .header("authorization", format!("Bearer {OG_KEY}"))
            .json(&json!({"message": "x"})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = send(
        http.post(&url)
            .header("authorization", format!("GenieKey {OG_KEY}"))
            .json(&json!({"alias": "a"})),
    )
    .await;
    assert_eq!(status, 422);
    assert!(body.contains("Message can not be empty."), "{body}");
}

#[tokio::test]
async fn jira_refuses_unauthenticated_and_invalid_issues() {
    let http = client();
    let (_, jira) = jira_stand_in();
    let url = format!("{jira}/rest/api/2/issue");
    let issue = json!({"fields": {"project": {"key": "OPS"}, "summary": "s", "issuetype": {"name": "Task"}}});
    let (status, _) = send(http.post(&url).json(&issue)).await;
    assert_eq!(status, 401);
    let (status, _) = send(
        http.post(&url)
            .basic_auth(JIRA_USER, Some(JIRA_TOKEN))
            .json(&issue),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = send(
        http.post(&url)
            .basic_auth(JIRA_USER, Some(JIRA_TOKEN))
            .json(&json!({"fields": {"project": {"key": "X"}, "issuetype": {"name": "Task"}}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body.contains("Specify a valid project ID or key")
            && body.contains("You must specify a summary"),
        "{body}"
    );
}

#[tokio::test]
async fn gitlab_refuses_tokens_titles_and_unknown_projects() {
    let http = client();
    let (_, gl) = gitlab_stand_in();
    let url = format!("{gl}/api/v4/projects/42/issues");
    let (status, body) = send(http.post(&url).json(&json!({"title": "t"}))).await;
    assert_eq!(
        (status, body.as_str()),
        (401, r#"{"message":"401 Unauthorized"}"#)
    );
    let (status, body) = send(
        http.post(&url)
            .header("PRIVATE-TOKEN", GL_TOKEN)
            .json(&json!({"description": "d"})),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"error":"title is missing"}"#)
    );
    let (status, _) = send(
        http.post(format!("{gl}/api/v4/projects/ops/checkout/issues"))
            .header("PRIVATE-TOKEN", GL_TOKEN)
            .json(&json!({"title": "t"})),
    )
    .await;
    assert_eq!(status, 404, "an unencoded project path matches no route");
    let (status, _) = send(
        http.post(format!("{gl}/api/v4/projects/7/issues"))
            .header("PRIVATE-TOKEN", GL_TOKEN)
            .json(&json!({"title": "t"})),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_stand_in_rejects_what_the_api_server_rejects() {
    let k8s = StandIn::start(vec![cart()]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/apis/apps/v1/namespaces/shop/deployments/cart",
        k8s.url()
    );
    let body = r#"{"spec":{"replicas":5}}"#;

    let send = |content_type: &'static str, query: &'static str| {
        http.patch(format!("{url}{query}"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let r = send("application/json", "?fieldManager=nightshift")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["kind"], json!("Status"));
    assert_eq!(s["reason"], json!("UnsupportedMediaType"));

    let r = send("application/merge-patch+json", "").await.unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let r = send("application/merge-patch+json", "?fieldManager=a%0Ab")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);

    let r = http
        .get(format!(
            "{}/apis/apps/v1/namespaces/shop/deployments/gone",
            k8s.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["message"], json!("deployments.apps \"gone\" not found"));

    let r = send("application/merge-patch+json", "?fieldManager=nightshift")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        k8s.object("deployments", "shop", "cart").unwrap()["spec"]["replicas"],
        json!(5)
    );

    // kube's own `Api::evict` names the field `delete_options`; the server drops it, warning.
    let pods = format!(
        "{}/api/v1/namespaces/shop/pods/p/eviction?fieldManager=x",
        k8s.url()
    );
    let r = http
        .post(pods)
        .header("Content-Type", "application/json")
        .body(r#"{"delete_options":{"gracePeriodSeconds":1},"metadata":{"name":"p"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let last = k8s.seen().pop().unwrap();
    assert_eq!(last.warnings, ["unknown field \"delete_options\""]);
}

fn cart() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cart", "namespace": "shop"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "cart"}},
            "template": {
                "metadata": {"labels": {"app": "cart"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/cart:3.0"}]},
            },
        },
    })
}

fn two_container_pod(waiting: bool) -> Value {
    let state = if waiting {
        json!({"waiting": {"reason": "CrashLoopBackOff"}})
    } else {
        json!({"running": {}})
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "cart-1", "namespace": "shop", "labels": {"app": "cart"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "proxy"}, {"name": "app"}]},
        "status": {"containerStatuses": [
            {"name": "proxy", "restartCount": 0, "state": {"running": {}}},
            {"name": "app", "restartCount": 4, "state": state},
        ]},
    })
}

/// A watch from a list's version sees what changed after it, in order, and only that; an idle
/// watch ends empty; selectors apply to watches as to lists.
#[tokio::test]
async fn watches_report_changes_after_the_version_they_start_from() {
    let k8s = StandIn::start(vec![cart(), two_container_pod(false)]);
    let http = client();
    let (code, list) = send(http.get(format!("{}/apis/apps/v1/deployments", k8s.url()))).await;
    assert_eq!(code, 200, "{list}");
    let list: Value = serde_json::from_str(&list).expect("a list");
    assert_eq!(list["kind"], "DeploymentList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("a version")
        .to_string();

    let mut rolled = cart();
    rolled["spec"]["template"]["spec"]["containers"][0]["image"] = json!("cart:3.1");
    k8s.put(rolled);
    k8s.put(two_container_pod(true));
    let watch = |path: &str, query: &str| {
        http.get(format!(
            "{}{path}?watch=true&resourceVersion={version}{query}",
            k8s.url()
        ))
    };
    let (code, events) = send(watch("/apis/apps/v1/namespaces/shop/deployments", "")).await;
    assert_eq!(code, 200);
    let events: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).expect("one event per line"))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "MODIFIED");
    assert_eq!(
        events[0]["object"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "cart:3.1"
    );
    let (_, none) = send(watch("/api/v1/pods", "&labelSelector=app%3Dother")).await;
    assert_eq!(none, "", "a selector that matches nothing");
    let (code, _) = send(watch("/api/v1/pods", "&fieldSelector=spec.image%3Dx")).await;
    assert_eq!(code, 400, "a field the API server does not index");
}

/// Logs as the kubelet serves them: a container named when there are several, none for a
/// container waiting to start, the previous run's on request, times and tails as asked.
#[tokio::test]
async fn pod_logs_follow_the_kubelets_rules() {
    let k8s = StandIn::start(vec![two_container_pod(true)]);
    k8s.set_logs(
        "shop",
        "cart-1",
        "app",
        true,
        &["2026-01-01T00:00:00Z one", "2026-01-01T00:00:01Z two"],
    );
    let http = client();
    let log = |query: &str| {
        http.get(format!(
            "{}/api/v1/namespaces/shop/pods/cart-1/log{query}",
            k8s.url()
        ))
    };
    let (code, body) = send(log("")).await;
    assert_eq!(code, 400);
    assert!(body.contains("choose one of: [proxy app]"), "{body}");
    let (code, body) = send(log("?container=app")).await;
    assert_eq!(code, 400);
    assert!(
        body.contains("is waiting to start: CrashLoopBackOff"),
        "{body}"
    );
    let (code, body) = send(log("?container=db")).await;
    assert_eq!(code, 400);
    assert!(body.contains("container db is not valid"), "{body}");
    let (_, body) = send(log("?container=proxy&previous=true")).await;
    assert!(body.contains("previous terminated container"), "{body}");
    assert_eq!(
        send(log("?container=app&previous=true")).await,
        (200, "one\ntwo\n".to_string())
    );
    assert_eq!(
        send(log(
            "?container=app&previous=true&timestamps=true&tailLines=1"
        ))
        .await,
        (200, "2026-01-01T00:00:01Z two\n".to_string())
    );
}
