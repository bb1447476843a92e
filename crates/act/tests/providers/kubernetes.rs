//! The Kubernetes provider against the stand-in API server (`nightshift_testkit::kubernetes`),
//! which applies patches, scales, evicts and deletes as the real one does and records every
//! request, so the tests say exactly what was sent.

use nightshift_act::kubernetes::Kubernetes;
use nightshift_testkit::kubernetes::{Seen, StandIn};
use serde_json::{Value, json};

fn provider(k8s: &StandIn) -> Kubernetes {
    Kubernetes::new(k8s.client(), "nightshift")
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

fn deployment(ns: &str, name: &str, revision: u32, containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("uid-deploy-{name}"),
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"prometheus.io/scrape": "true"},
                },
                "spec": {"containers": containers},
            },
        },
        "status": {"replicas": 3},
    })
}

fn cart() -> Value {
    deployment(
        "shop",
        "cart",
        3,
        json!([{"name": "app", "image": "registry.example/cart:3.0"}]),
    )
}

fn replica_set(owner: &str, owner_uid: &str, name: &str, revision: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": name, "namespace": "shop",
            "labels": {"app": "cart", "pod-template-hash": name.rsplit('-').next().unwrap()},
            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": owner, "uid": owner_uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {
                "app": "cart", "pod-template-hash": name.rsplit('-').next().unwrap(),
            }},
            "template": {
                "metadata": {
                    "labels": {"app": "cart", "pod-template-hash": name.rsplit('-').next().unwrap()},
                    "annotations": {"prometheus.io/scrape": "true"},
                },
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
}

fn node(name: &str, unschedulable: bool) -> Value {
    let mut n = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}});
    if unschedulable {
        n["spec"]["unschedulable"] = json!(true);
    }
    n
}

fn pod(ns: &str, name: &str, node: &str, owner_kind: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": owner_kind, "name": format!("{name}-owner"),
                "uid": format!("uid-{name}-owner"), "controller": true,
            }],
        },
        "spec": {
            "nodeName": node, "terminationGracePeriodSeconds": 30,
            "containers": [{"name": "app", "image": "registry.example/app:1"}],
        },
        "status": {"phase": "Running"},
    })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

fn only(seen: &[Seen]) -> &Seen {
    assert_eq!(seen.len(), 1, "{seen:#?}");
    &seen[0]
}

fn assert_patch(s: &Seen, path: &str, content_type: &str, body: &Value) {
    assert_eq!(s.method, "PATCH");
    assert_eq!(s.path, path);
    assert_eq!(
        s.query.get("fieldManager").map(String::as_str),
        Some("nightshift")
    );
    assert_eq!(s.content_type.as_deref(), Some(content_type));
    assert_eq!(&s.body, body);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[tokio::test]
async fn rollout_restart_stamps_the_pod_template_like_kubectl() {
    let k8s = StandIn::start(vec![cart()]);
    let out = provider(&k8s)
        .call(
            "kubernetes.rollout_restart",
            &json!({"namespace": "shop", "deployment": "cart"}),
        )
        .await
        .unwrap();

    let at = out.output["restarted_at"].as_str().unwrap().to_string();
    at.parse::<k8s_openapi::jiff::Timestamp>()
        .expect("restarted_at is an RFC 3339 time");
    let body = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": at,
    }}}}});
    let path = "/apis/apps/v1/namespaces/shop/deployments/cart";
    assert_patch(
        only(&k8s.writes()),
        path,
        "application/strategic-merge-patch+json",
        &body,
    );
    assert_eq!(
        out.request,
        json!({"method": "PATCH", "path": path, "field_manager": "nightshift",
               "patch_type": "strategic", "body": body})
    );

    let d = k8s.object("deployments", "shop", "cart").unwrap();
    let annotations = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["kubectl.kubernetes.io/restartedAt"], json!(at));
    assert_eq!(
        annotations["prometheus.io/scrape"],
        json!("true"),
        "merged, not replaced"
    );
    assert_eq!(d["metadata"]["generation"], json!(2));
}

#[tokio::test]
async fn rollout_restart_refuses_a_paused_deployment() {
    let mut paused = cart();
    paused["spec"]["paused"] = json!(true);
    let k8s = StandIn::start(vec![paused]);
    let e = provider(&k8s)
        .call(
            "kubernetes.rollout_restart",
            &json!({"namespace": "shop", "deployment": "cart"}),
        )
        .await
        .unwrap_err();
    assert!(e.message.contains("paused"), "{}", e.message);
    assert!(k8s.writes().is_empty());
}

#[tokio::test]
async fn scale_is_clamped_into_its_bounds_and_reports_the_previous_count() {
    let k8s = StandIn::start(vec![cart()]);
    let p = provider(&k8s);
    let path = "/apis/apps/v1/namespaces/shop/deployments/cart/scale";

    let out = p
        .call(
            "kubernetes.scale",
            &json!({"namespace": "shop", "deployment": "cart", "replicas": "12", "min": "2", "max": "6"}),
        )
        .await
        .unwrap();
    assert_eq!(out.output, json!({"previous": 3, "replicas": 6}));
    let body = json!({"spec": {"replicas": 6}});
    assert_patch(
        only(&k8s.writes()),
        path,
        "application/merge-patch+json",
        &body,
    );
    assert_eq!(
        out.request,
        json!({"method": "PATCH", "path": path, "field_manager": "nightshift",
               "patch_type": "merge", "body": body})
    );
    let reads: Vec<_> = k8s
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert_eq!(
        only(&reads).path,
        path,
        "the scale subresource is read first"
    );
    assert_eq!(
        k8s.object("deployments", "shop", "cart").unwrap()["spec"]["replicas"],
        json!(6)
    );

    // Numbers as JSON numbers; below min goes up to min.
    let out = p
        .call(
            "kubernetes.scale",
            &json!({"namespace": "shop", "deployment": "cart", "replicas": 1, "min": 2, "max": 10}),
        )
        .await
        .unwrap();
    assert_eq!(out.output, json!({"previous": 6, "replicas": 2}));

    // No bounds: taken as given.
    let out = p
        .call(
            "kubernetes.scale",
            &json!({"namespace": "shop", "deployment": "cart", "replicas": "4"}),
        )
        .await
        .unwrap();
    assert_eq!(out.output, json!({"previous": 2, "replicas": 4}));
    assert_eq!(
        k8s.object("deployments", "shop", "cart").unwrap()["spec"]["replicas"],
        json!(4)
    );
}

#[tokio::test]
async fn scale_refuses_what_is_not_a_whole_number() {
    let k8s = StandIn::start(vec![cart()]);
    let p = provider(&k8s);
    for (with, arg) in [
        (json!({"replicas": "4.5"}), "replicas"),
        (json!({"replicas": 4.5}), "replicas"),
        (json!({"replicas": "-1"}), "replicas"),
        (json!({"replicas": "four"}), "replicas"),
        (json!({"replicas": "4; rm -rf /"}), "replicas"),
        (json!({"replicas": ["4"]}), "replicas"),
        (json!({"replicas": "99999999999"}), "replicas"),
        (json!({"replicas": "4", "min": "x"}), "min"),
        (json!({"replicas": "4", "max": "1e3"}), "max"),
    ] {
        let mut with = with;
        with["namespace"] = json!("shop");
        with["deployment"] = json!("cart");
        let e = p.call("kubernetes.scale", &with).await.unwrap_err();
        assert_eq!(e.request, None, "{with}");
        assert!(
            e.message.contains(&format!("argument {arg}")),
            "{}",
            e.message
        );
    }
    let e = p
        .call(
            "kubernetes.scale",
            &json!({"namespace": "shop", "deployment": "cart", "replicas": "4", "min": "6", "max": "2"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.request, None);
    assert!(
        e.message.contains("min (6) is above max (2)"),
        "{}",
        e.message
    );
    assert!(k8s.seen().is_empty(), "{:#?}", k8s.seen());
}

#[tokio::test]
async fn rollback_returns_to_the_previous_revision_of_the_deployment_itself() {
    let uid = "uid-deploy-cart";
    let objects = vec![
        cart(),
        replica_set("cart", uid, "cart-5b7d9f", 1, "registry.example/cart:1.0"),
        replica_set("cart", uid, "cart-6c8e0a", 2, "registry.example/cart:2.0"),
        replica_set("cart", uid, "cart-7d9f1b", 3, "registry.example/cart:3.0"),
        // Another Deployment's ReplicaSet that the selector matches too, with revision 2 and a
        // name listed after the others.
        replica_set(
            "cart-canary",
            "uid-deploy-cart-canary",
            "cart-canary-8e0a2c",
            2,
            "registry.example/cart:canary",
        ),
    ];
    let k8s = StandIn::start(objects);
    let out = provider(&k8s)
        .call(
            "kubernetes.rollback",
            &json!({"namespace": "shop", "deployment": "cart"}),
        )
        .await
        .unwrap();
    assert_eq!(out.output, json!({"from_revision": 3, "to_revision": 2}));

    let lists: Vec<_> = k8s
        .seen()
        .into_iter()
        .filter(|s| s.path == "/apis/apps/v1/namespaces/shop/replicasets")
        .collect();
    assert_eq!(
        only(&lists).query.get("labelSelector").map(String::as_str),
        Some("app=cart")
    );

    let template = json!({
        "metadata": {"labels": {"app": "cart"}, "annotations": {"prometheus.io/scrape": "true"}},
        "spec": {"containers": [{"name": "app", "image": "registry.example/cart:2.0"}]},
    });
    let body = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    let path = "/apis/apps/v1/namespaces/shop/deployments/cart";
    assert_patch(
        only(&k8s.writes()),
        path,
        "application/json-patch+json",
        &body,
    );
    assert_eq!(
        out.request,
        json!({"method": "PATCH", "path": path, "field_manager": "nightshift",
               "patch_type": "json", "body": body})
    );

    let d = k8s.object("deployments", "shop", "cart").unwrap();
    assert_eq!(d["spec"]["template"], template);
    assert!(
        d["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none()
    );
}

#[tokio::test]
async fn rollback_refuses_when_there_is_no_earlier_revision() {
    let mut first = cart();
    first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("1");
    let k8s = StandIn::start(vec![
        first,
        replica_set(
            "cart",
            "uid-deploy-cart",
            "cart-5b7d9f",
            1,
            "registry.example/cart:1.0",
        ),
    ]);
    let e = provider(&k8s)
        .call(
            "kubernetes.rollback",
            &json!({"namespace": "shop", "deployment": "cart"}),
        )
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("deployment shop/cart has no revision before 1 to roll back to"),
        "{}",
        e.message
    );
    assert!(k8s.writes().is_empty());
}

fn two_containers() -> Value {
    deployment(
        "shop",
        "cart",
        3,
        json!([
            {"name": "app", "image": "registry.example/cart:3.0", "resources": {
                "limits": {"memory": "512Mi", "cpu": "1"},
                "requests": {"memory": "256Mi", "cpu": "250m"},
            }},
            {"name": "proxy", "image": "registry.example/proxy:1", "resources": {
                "limits": {"memory": "64Mi"},
            }},
        ]),
    )
}

#[tokio::test]
async fn patch_resources_changes_only_the_named_container() {
    let k8s = StandIn::start(vec![two_containers()]);
    let before = k8s.object("deployments", "shop", "cart").unwrap();
    let out = provider(&k8s)
        .call(
            "kubernetes.patch_resources",
            &json!({"namespace": "shop", "deployment": "cart", "container": "app",
                    "memory_limit": "768Mi", "cpu_request": "500m"}),
        )
        .await
        .unwrap();

    let previous = json!({
        "limits": {"memory": "512Mi", "cpu": "1"},
        "requests": {"memory": "256Mi", "cpu": "250m"},
    });
    let now = json!({
        "limits": {"memory": "768Mi", "cpu": "1"},
        "requests": {"memory": "256Mi", "cpu": "500m"},
    });
    assert_eq!(out.output, json!({"previous": previous, "resources": now}));
    let body = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "app",
        "resources": {"limits": {"memory": "768Mi"}, "requests": {"cpu": "500m"}},
    }]}}}});
    assert_patch(
        only(&k8s.writes()),
        "/apis/apps/v1/namespaces/shop/deployments/cart",
        "application/strategic-merge-patch+json",
        &body,
    );

    let after = k8s.object("deployments", "shop", "cart").unwrap();
    let containers = &after["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["name"], json!("app"));
    assert_eq!(containers[0]["resources"], now);
    assert_eq!(
        containers[1],
        before["spec"]["template"]["spec"]["containers"][1]
    );
    assert_eq!(containers.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn patch_resources_refuses_bad_quantities_unknown_containers_and_requests_above_limits() {
    let k8s = StandIn::start(vec![two_containers()]);
    let before = k8s.object("deployments", "shop", "cart").unwrap();
    let p = provider(&k8s);
    let base = json!({"namespace": "shop", "deployment": "cart", "container": "app"});
    for (arg, q) in [
        ("memory_limit", "768MB"),
        ("memory_limit", "-1Gi"),
        ("memory_limit", "1e"),
        ("memory_limit", "0Mi"),
        ("cpu_limit", "$(id)"),
        ("cpu_request", "1; rm -rf /"),
        ("memory_request", "1 Gi"),
    ] {
        let mut with = base.clone();
        with[arg] = json!(q);
        let e = p
            .call("kubernetes.patch_resources", &with)
            .await
            .unwrap_err();
        assert_eq!(e.request, None, "{q}");
        assert!(
            e.message.contains(&format!("argument {arg}")),
            "{}",
            e.message
        );
    }
    let e = p
        .call("kubernetes.patch_resources", &base)
        .await
        .unwrap_err();
    assert!(e.message.contains("nothing to change"), "{}", e.message);
    assert!(k8s.seen().is_empty(), "refused before any request");

    let mut with = base.clone();
    with["container"] = json!("db");
    with["memory_limit"] = json!("1Gi");
    let e = p
        .call("kubernetes.patch_resources", &with)
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("deployment shop/cart has no container \"db\" (its containers: app, proxy)"),
        "{}",
        e.message
    );
    assert_eq!(e.request.unwrap()["method"], json!("GET"));

    let mut with = base.clone();
    with["memory_request"] = json!("1Gi");
    let e = p
        .call("kubernetes.patch_resources", &with)
        .await
        .unwrap_err();
    assert!(
        e.message
            .contains("memory request (1Gi) above its limit (512Mi)"),
        "{}",
        e.message
    );
    assert!(k8s.writes().is_empty());
    assert_eq!(k8s.object("deployments", "shop", "cart").unwrap(), before);
}

#[tokio::test]
async fn cordon_marks_the_node_unschedulable_and_says_whether_it_was() {
    let k8s = StandIn::start(vec![node("worker-1", false)]);
    let p = provider(&k8s);
    let out = p
        .call("kubernetes.cordon", &json!({"node": "worker-1"}))
        .await
        .unwrap();
    assert_eq!(out.output, json!({"was_unschedulable": false}));
    let body = json!({"spec": {"unschedulable": true}});
    assert_patch(
        only(&k8s.writes()),
        "/api/v1/nodes/worker-1",
        "application/merge-patch+json",
        &body,
    );
    assert_eq!(
        out.request,
        json!({"method": "PATCH", "path": "/api/v1/nodes/worker-1", "field_manager": "nightshift",
               "patch_type": "merge", "body": body})
    );
    assert_eq!(
        k8s.object("nodes", "", "worker-1").unwrap()["spec"]["unschedulable"],
        json!(true)
    );

    let out = p
        .call("kubernetes.cordon", &json!({"node": "worker-1"}))
        .await
        .unwrap();
    assert_eq!(out.output, json!({"was_unschedulable": true}));
}

fn node_with_pods() -> Vec<Value> {
    let mut mirror = pod("kube-system", "etcd-worker-1", "worker-1", "Node");
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "0f1e2d"});
    let mut done = pod("batch", "report-28391", "worker-1", "Job");
    done["status"]["phase"] = json!("Succeeded");
    vec![
        node("worker-1", false),
        node("worker-2", false),
        pod("shop", "cart-7d9f1b-abcde", "worker-1", "ReplicaSet"),
        pod("shop", "web-6c8e0a-fghij", "worker-1", "ReplicaSet"),
        pod("kube-system", "fluent-bit-x7k2p", "worker-1", "DaemonSet"),
        mirror,
        done,
        pod("shop", "cart-7d9f1b-klmno", "worker-2", "ReplicaSet"),
    ]
}

#[tokio::test]
async fn drain_evicts_ordinary_pods_and_leaves_daemonset_mirror_and_finished_ones() {
    let k8s = StandIn::start(node_with_pods());
    let out = provider(&k8s)
        .call(
            "kubernetes.drain",
            &json!({"node": "worker-1", "grace_period_seconds": "60"}),
        )
        .await
        .unwrap();
    assert_eq!(
        out.output,
        json!({
            "evicted": ["shop/cart-7d9f1b-abcde", "shop/web-6c8e0a-fghij"],
            "skipped": [
                {"pod": "batch/report-28391", "reason": "finished"},
                {"pod": "kube-system/etcd-worker-1", "reason": "mirror pod"},
                {"pod": "kube-system/fluent-bit-x7k2p", "reason": "DaemonSet"},
            ],
        })
    );

    let seen = k8s.seen();
    let list = seen
        .iter()
        .find(|s| s.path == "/api/v1/pods")
        .expect("the node's pods are listed");
    assert_eq!(
        list.query.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=worker-1")
    );

    let writes = k8s.writes();
    assert_eq!(writes.len(), 3, "{writes:#?}");
    assert_patch(
        &writes[0],
        "/api/v1/nodes/worker-1",
        "application/merge-patch+json",
        &json!({"spec": {"unschedulable": true}}),
    );
    for (w, (ns, name)) in writes[1..]
        .iter()
        .zip([("shop", "cart-7d9f1b-abcde"), ("shop", "web-6c8e0a-fghij")])
    {
        assert_eq!(w.method, "POST");
        assert_eq!(
            w.path,
            format!("/api/v1/namespaces/{ns}/pods/{name}/eviction")
        );
        assert_eq!(
            w.query.get("fieldManager").map(String::as_str),
            Some("nightshift")
        );
        assert_eq!(w.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            w.body,
            json!({"apiVersion": "policy/v1", "kind": "Eviction",
                   "metadata": {"name": name, "namespace": ns},
                   "deleteOptions": {"gracePeriodSeconds": 60}})
        );
        assert!(w.warnings.is_empty(), "no field dropped: {:?}", w.warnings);
    }
    let recorded = out.request.as_array().unwrap();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0]["path"], json!("/api/v1/nodes/worker-1"));
    assert_eq!(
        recorded[1],
        json!({"method": "POST", "path": "/api/v1/namespaces/shop/pods/cart-7d9f1b-abcde/eviction",
               "field_manager": "nightshift", "body": writes[1].body})
    );

    // The grace period reached the server as the Eviction's deleteOptions.
    for name in ["cart-7d9f1b-abcde", "web-6c8e0a-fghij"] {
        let p = k8s.object("pods", "shop", name).unwrap();
        assert_eq!(
            p["metadata"]["deletionGracePeriodSeconds"],
            json!(60),
            "{name}"
        );
    }
    for (ns, name) in [
        ("kube-system", "fluent-bit-x7k2p"),
        ("kube-system", "etcd-worker-1"),
        ("batch", "report-28391"),
        ("shop", "cart-7d9f1b-klmno"),
    ] {
        let p = k8s.object("pods", ns, name).unwrap();
        assert!(
            p["metadata"].get("deletionTimestamp").is_none(),
            "{ns}/{name}"
        );
    }
    assert_eq!(
        k8s.object("nodes", "", "worker-1").unwrap()["spec"]["unschedulable"],
        json!(true)
    );
    assert!(
        k8s.object("nodes", "", "worker-2").unwrap()["spec"]
            .get("unschedulable")
            .is_none()
    );
}

#[tokio::test]
async fn drain_reports_the_pod_a_disruption_budget_protects() {
    let k8s = StandIn::start(node_with_pods());
    k8s.protect("shop/cart-7d9f1b-abcde", "cart-pdb");
    let e = provider(&k8s)
        .call("kubernetes.drain", &json!({"node": "worker-1"}))
        .await
        .unwrap_err();
    assert!(
        e.message.contains("pod shop/cart-7d9f1b-abcde"),
        "{}",
        e.message
    );
    assert!(e.message.contains("PodDisruptionBudget"), "{}", e.message);
    assert!(e.message.contains("429"), "{}", e.message);
    assert!(
        e.message.contains("evicted: [shop/web-6c8e0a-fghij]"),
        "{}",
        e.message
    );
    let request = e.request.unwrap();
    let paths: Vec<&str> = request
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/api/v1/nodes/worker-1",
            "/api/v1/namespaces/shop/pods/cart-7d9f1b-abcde/eviction",
            "/api/v1/namespaces/shop/pods/web-6c8e0a-fghij/eviction",
        ]
    );
    // Without grace_period_seconds, no deleteOptions: each pod's own grace period applies.
    assert_eq!(
        request[2]["body"],
        json!({"apiVersion": "policy/v1", "kind": "Eviction",
               "metadata": {"name": "web-6c8e0a-fghij", "namespace": "shop"}})
    );
    let posts: Vec<String> = k8s
        .writes()
        .into_iter()
        .filter(|w| w.method == "POST")
        .map(|w| w.path)
        .collect();
    assert_eq!(posts, paths[1..], "each eviction sent once");
    let protected = k8s.object("pods", "shop", "cart-7d9f1b-abcde").unwrap();
    assert!(protected["metadata"].get("deletionTimestamp").is_none());
    let evicted = k8s.object("pods", "shop", "web-6c8e0a-fghij").unwrap();
    assert_eq!(evicted["metadata"]["deletionGracePeriodSeconds"], json!(30));
}

#[tokio::test]
async fn delete_pod_deletes_it() {
    let k8s = StandIn::start(node_with_pods());
    let out = provider(&k8s)
        .call(
            "kubernetes.delete_pod",
            &json!({"namespace": "shop", "pod": "cart-7d9f1b-abcde"}),
        )
        .await
        .unwrap();
    assert_eq!(out.output, json!({"deleted": "cart-7d9f1b-abcde"}));
    let w = k8s.writes();
    let w = only(&w);
    assert_eq!(w.method, "DELETE");
    assert_eq!(w.path, "/api/v1/namespaces/shop/pods/cart-7d9f1b-abcde");
    assert_eq!(out.request["method"], json!("DELETE"));
    assert_eq!(out.request["path"], json!(w.path));
    let p = k8s.object("pods", "shop", "cart-7d9f1b-abcde").unwrap();
    assert!(p["metadata"]["deletionTimestamp"].is_string());
}

#[tokio::test]
async fn hostile_names_are_refused_before_any_request() {
    let k8s = StandIn::start(node_with_pods());
    let p = provider(&k8s);
    let calls: &[(&str, Value, &[&str])] = &[
        (
            "kubernetes.rollout_restart",
            json!({"namespace": "shop", "deployment": "cart"}),
            &["namespace", "deployment"],
        ),
        (
            "kubernetes.scale",
            json!({"namespace": "shop", "deployment": "cart", "replicas": "4"}),
            &["namespace", "deployment"],
        ),
        (
            "kubernetes.rollback",
            json!({"namespace": "shop", "deployment": "cart"}),
            &["namespace", "deployment"],
        ),
        (
            "kubernetes.patch_resources",
            json!({"namespace": "shop", "deployment": "cart", "container": "app", "memory_limit": "1Gi"}),
            &["namespace", "deployment", "container"],
        ),
        ("kubernetes.cordon", json!({"node": "worker-1"}), &["node"]),
        ("kubernetes.drain", json!({"node": "worker-1"}), &["node"]),
        (
            "kubernetes.delete_pod",
            json!({"namespace": "shop", "pod": "cart-7d9f1b-abcde"}),
            &["namespace", "pod"],
        ),
    ];
    let hostile = [
        "x; rm -rf /",
        "$(id)",
        "--all",
        "a\nb",
        "`id`",
        "../kube-system",
        "cart/scale",
        "cart?dryRun=All",
        "Cart",
        "-cart",
        "cart ",
        "",
    ];
    for (uses, with, args) in calls {
        for arg in *args {
            for h in hostile {
                let mut with = with.clone();
                with[*arg] = json!(h);
                let e = p.call(uses, &with).await.unwrap_err();
                assert_eq!(e.request, None, "{uses} {arg}={h:?}");
                assert!(
                    e.message.contains(&format!("argument {arg}")),
                    "{uses} {arg}={h:?}: {}",
                    e.message
                );
            }
            let mut with = with.clone();
            with.as_object_mut().unwrap().remove(*arg);
            let e = p.call(uses, &with).await.unwrap_err();
            assert!(
                e.message.contains(&format!("argument {arg} is missing")),
                "{}",
                e.message
            );
        }
    }
    assert!(k8s.seen().is_empty(), "{:#?}", k8s.seen());
}

#[tokio::test]
async fn a_missing_deployment_or_node_is_a_clear_error() {
    let k8s = StandIn::start(vec![cart()]);
    let p = provider(&k8s);
    for uses in [
        "kubernetes.rollout_restart",
        "kubernetes.rollback",
        "kubernetes.scale",
    ] {
        let e = p
            .call(
                uses,
                &json!({"namespace": "shop", "deployment": "gone", "replicas": "2"}),
            )
            .await
            .unwrap_err();
        assert!(
            e.message
                .starts_with("deployment shop/gone does not exist (404"),
            "{uses}: {}",
            e.message
        );
        assert_eq!(e.request.unwrap()["method"], json!("GET"), "{uses}");
    }
    let e = p
        .call("kubernetes.cordon", &json!({"node": "worker-9"}))
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with("node worker-9 does not exist (404"),
        "{}",
        e.message
    );
    assert_eq!(e.request.unwrap()["path"], json!("/api/v1/nodes/worker-9"));
    let e = p
        .call("kubernetes.drain", &json!({"node": "worker-9"}))
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with("node worker-9 does not exist (404"),
        "{}",
        e.message
    );
    assert_eq!(
        e.request.unwrap(),
        json!([{"method": "GET", "path": "/api/v1/nodes/worker-9"}]),
        "drain gives a list of requests"
    );
    let e = p
        .call(
            "kubernetes.delete_pod",
            &json!({"namespace": "shop", "pod": "gone"}),
        )
        .await
        .unwrap_err();
    assert!(
        e.message.starts_with("pod shop/gone does not exist (404"),
        "{}",
        e.message
    );
    assert_eq!(e.request.unwrap()["method"], json!("DELETE"));
    assert!(k8s.writes().iter().all(|w| w.method == "DELETE"));
}

#[tokio::test]
async fn unknown_providers_and_unusable_field_managers_are_refused() {
    let k8s = StandIn::start(vec![cart()]);
    let with = json!({"namespace": "shop", "deployment": "cart"});
    let e = provider(&k8s)
        .call("kubernetes.exec", &with)
        .await
        .unwrap_err();
    assert_eq!(e.request, None);
    assert!(
        e.message
            .contains("no Kubernetes provider \"kubernetes.exec\""),
        "{}",
        e.message
    );

    for fm in ["", "night\nshift", &"x".repeat(129)] {
        let p = Kubernetes::new(k8s.client(), fm);
        let e = p
            .call("kubernetes.rollout_restart", &with)
            .await
            .unwrap_err();
        assert_eq!(e.request, None);
        assert!(e.message.contains("field manager"), "{}", e.message);
    }
    assert!(k8s.seen().is_empty());
}

#[test]
fn calls_can_run_on_any_thread() {
    fn send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
    let p = Kubernetes::new(client, "nightshift");
    let with = json!({});
    let call = p.call("kubernetes.drain", &with);
    send(&call);
}

#[tokio::test]
async fn scale_by_a_change_reads_the_count_stops_at_max_and_is_restored_from_what_it_read() {
    let k8s = StandIn::start(vec![cart()]);
    let p = provider(&k8s);
    let scale = json!({"namespace": "shop", "deployment": "cart", "by": "+2", "min": 2, "max": 6});
    let out = p.call("kubernetes.scale", &scale).await.unwrap();
    assert_eq!(out.output, json!({"previous": 3, "replicas": 5}));
    // Again: 5 + 2 stops at max.
    let again = p.call("kubernetes.scale", &scale).await.unwrap();
    assert_eq!(again.output, json!({"previous": 5, "replicas": 6}));
    // The rollback sets the count the first step read.
    let restore = json!({"namespace": "shop", "deployment": "cart",
                         "replicas": out.output["previous"].to_string()});
    let back = p.call("kubernetes.scale", &restore).await.unwrap();
    assert_eq!(back.output, json!({"previous": 6, "replicas": 3}));
    assert_eq!(
        k8s.object("deployments", "shop", "cart").unwrap()["spec"]["replicas"],
        json!(3)
    );
    // A change needs its max; a change and a count together, or neither, are refused; so is
    // what is not a change. Nothing is sent for any of them.
    let writes = k8s.writes().len();
    for (with, says) in [
        (json!({"by": "+2"}), "needs max"),
        (json!({"by": "+2", "replicas": "4", "max": 9}), "not both"),
        (json!({"max": 9}), "give by"),
        (json!({"by": "two", "max": 9}), "is not a change"),
        (json!({"by": "+2000", "max": 9}), "is not a change"),
        (json!({"by": "+2; rm", "max": 9}), "is not a change"),
    ] {
        let mut w = with.clone();
        w["namespace"] = json!("shop");
        w["deployment"] = json!("cart");
        let err = p.call("kubernetes.scale", &w).await.unwrap_err();
        assert!(err.message.contains(says), "{with}: {}", err.message);
    }
    assert_eq!(k8s.writes().len(), writes);
}

#[tokio::test]
async fn memory_is_raised_by_a_factor_up_to_its_cap_and_restored_from_what_was_read() {
    let k8s = StandIn::start(vec![two_containers()]);
    let p = provider(&k8s);
    let raise = json!({"namespace": "shop", "deployment": "cart", "container": "app",
                       "memory_limit_factor": "1.5", "memory_limit_max": "1Gi"});
    let out = p.call("kubernetes.patch_resources", &raise).await.unwrap();
    assert_eq!(out.output["previous"]["limits"]["memory"], "512Mi");
    assert_eq!(out.output["resources"]["limits"]["memory"], "768Mi");
    // 768Mi x 1.5 is over the cap: the cap.
    let capped = p.call("kubernetes.patch_resources", &raise).await.unwrap();
    assert_eq!(capped.output["resources"]["limits"]["memory"], "1024Mi");
    // At the cap, there is nothing to raise: a failure, not a silent success.
    let err = p
        .call("kubernetes.patch_resources", &raise)
        .await
        .unwrap_err();
    assert!(
        err.message.contains("already at the cap"),
        "{}",
        err.message
    );
    // The rollback puts back the limit the first step read.
    let restore = json!({"namespace": "shop", "deployment": "cart", "container": "app",
                         "memory_limit": out.output["previous"]["limits"]["memory"]});
    p.call("kubernetes.patch_resources", &restore)
        .await
        .unwrap();
    let after = k8s.object("deployments", "shop", "cart").unwrap();
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
    // A factor without its cap, or out of range, is refused before anything is sent.
    for (with, says) in [
        (json!({"memory_limit_factor": "1.5"}), "needs its cap"),
        (
            json!({"memory_limit_factor": "50", "memory_limit_max": "4Gi"}),
            "at most 10",
        ),
        (
            json!({"memory_limit_factor": "-1", "memory_limit_max": "4Gi"}),
            "above 0",
        ),
    ] {
        let mut w = with.clone();
        w["namespace"] = json!("shop");
        w["deployment"] = json!("cart");
        w["container"] = json!("app");
        let err = p.call("kubernetes.patch_resources", &w).await.unwrap_err();
        assert!(err.message.contains(says), "{with}: {}", err.message);
    }
}
