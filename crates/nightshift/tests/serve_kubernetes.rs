//! `nightshift serve` watching a Kubernetes API. No cluster runs on this machine (no container
//! engine), so the test serves the API's list and watch protocol itself, with the objects a
//! cluster returns: a list with a `resourceVersion`, then a watch stream of `MODIFIED` and
//! `ADDED` events as newline-delimited JSON. The watchers must place the pod under its
//! service, record the rollout as a change, and report the restart, the cluster event and the
//! node going NotReady.

mod common;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{free_port, get as http_get, metric, start_nightshift_with, temp_dir, wait_for};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn pod(restarts: i32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout-7d9f8c6b5-x2k4p", "namespace": "shop", "resourceVersion": "10",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8c6b5", "uid": "u1", "controller": true}]},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "shop/checkout:1.5"}]},
        "status": {"containerStatuses": [{"name": "app", "ready": true, "restartCount": restarts, "image": "shop/checkout:1.5", "imageID": "",
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-11-21T10:00:00Z"}}}]}
    })
}

fn deployment(image: &str, revision: &str, generation: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "checkout", "namespace": "shop", "generation": generation, "resourceVersion": "11",
            "annotations": {"deployment.kubernetes.io/revision": revision}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "checkout"}},
            "template": {"metadata": {"labels": {"app": "checkout"}}, "spec": {"containers": [{"name": "app", "image": image}]}}}
    })
}

fn node(ready: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a", "resourceVersion": "12"},
        "status": {"conditions": [{"type": "Ready", "status": ready}]}})
}

fn event() -> Value {
    let now = jiff::Timestamp::now().to_string();
    json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "checkout.1", "namespace": "shop", "resourceVersion": "13"},
        "involvedObject": {"kind": "Pod", "name": "checkout-7d9f8c6b5-x2k4p", "namespace": "shop"},
        "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
        "lastTimestamp": now})
}

/// Per resource: what the first list returns, and the events of the first watch.
struct Fake {
    lists: HashMap<&'static str, (&'static str, Vec<Value>)>,
    watches: Mutex<HashMap<&'static str, Vec<Value>>>,
}

async fn serve_resource(
    State((fake, resource)): State<(Arc<Fake>, &'static str)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let events = fake
            .watches
            .lock()
            .map(|mut w| w.remove(resource).unwrap_or_default())
            .unwrap_or_default();
        if events.is_empty() {
            // Nothing new: hold the watch a moment, as an idle API server does.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let body: String = events.iter().map(|e| format!("{e}\n")).collect();
        return ([("content-type", "application/json")], body).into_response();
    }
    let (kind, items) = &fake.lists[resource];
    let list = json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "10"}, "items": items});
    ([("content-type", "application/json")], list.to_string()).into_response()
}

#[test]
fn the_watchers_turn_cluster_objects_into_topology_changes_and_events() {
    let api_port = free_port();
    let fake = Arc::new(Fake {
        lists: HashMap::from([
            ("pods", ("PodList", vec![pod(2)])),
            (
                "deployments",
                (
                    "DeploymentList",
                    vec![deployment("shop/checkout:1.4", "4", 7)],
                ),
            ),
            ("nodes", ("NodeList", vec![node("True")])),
            ("events", ("EventList", vec![])),
        ]),
        watches: Mutex::new(HashMap::from([
            ("pods", vec![json!({"type": "MODIFIED", "object": pod(3)})]),
            (
                "deployments",
                vec![
                    json!({"type": "MODIFIED", "object": deployment("shop/checkout:1.5", "5", 8)}),
                ],
            ),
            (
                "nodes",
                vec![json!({"type": "MODIFIED", "object": node("Unknown")})],
            ),
            ("events", vec![json!({"type": "ADDED", "object": event()})]),
        ])),
    });
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let router = Router::new()
        .route(
            "/api/v1/pods",
            get(serve_resource).with_state((fake.clone(), "pods")),
        )
        .route(
            "/api/v1/nodes",
            get(serve_resource).with_state((fake.clone(), "nodes")),
        )
        .route(
            "/api/v1/events",
            get(serve_resource).with_state((fake.clone(), "events")),
        )
        .route(
            "/apis/apps/v1/deployments",
            get(serve_resource).with_state((fake, "deployments")),
        );
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", api_port))
            .await
            .expect("bind");
        axum::serve(listener, router).await.expect("serve");
    });

    let dir = temp_dir("serve-k8s");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://127.0.0.1:{api_port}\"}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: c\n  context: {{cluster: fake, user: u}}\ncurrent-context: c\n"
        ),
    )
    .expect("write kubeconfig");
    let ns = free_port();
    let _nightshift = start_nightshift_with(
        &dir,
        ns,
        &format!("kubernetes:\n  kubeconfig: {}\n", kubeconfig.display()),
    );

    // The pod placed under its Deployment's service.
    let topology = wait_for(Duration::from_secs(30), || {
        let (_, body) = http_get(ns, "/api/v1/topology");
        body.contains("\"checkout\":[\"node-a\"]").then_some(body)
    })
    .expect("the pod's placement reaches the topology");
    assert!(topology.contains("node-a"), "{topology}");

    // The rollout recorded as a change.
    let changes = wait_for(Duration::from_secs(30), || {
        let (_, body) = http_get(ns, "/api/v1/changes");
        body.contains("k8s-shop-checkout-gen8").then_some(body)
    })
    .expect("the rollout is recorded");
    assert!(
        changes.contains("shop/checkout:1.4 → shop/checkout:1.5"),
        "{changes}"
    );

    // The restart (OOMKilled), the BackOff event and the node going NotReady.
    let events = wait_for(Duration::from_secs(30), || {
        let page = http_get(ns, "/metrics").1;
        metric(
            &page,
            r#"nightshift_ingest_kubernetes_total{kind="events"}"#,
        )
        .filter(|n| *n >= 3.0)
    });
    assert_eq!(events, Some(3.0));
}
