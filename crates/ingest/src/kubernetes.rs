//! What a Kubernetes cluster tells Nightshift, from the objects its API serves (the
//! `k8s-openapi` types a watch returns): where each service's pods run, rollouts and scaling
//! as changes, container restarts and node readiness as events, and the cluster's own events.
//! Pure functions of one object and, where a change is a difference, its previous version; the
//! binary's watcher feeds them.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event as K8sEvent, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nightshift_core::resource::semconv;
use nightshift_core::{Change, ChangeKind, Event, EventType, Millis, Resource};

/// Labels that name a workload's service, in the order they are trusted.
const SERVICE_LABELS: [&str; 3] = ["app.kubernetes.io/name", "app", "k8s-app"];

fn millis(t: &k8s_openapi::jiff::Timestamp) -> Millis {
    t.as_millisecond()
}

/// The service a pod belongs to: its `app.kubernetes.io/name`, `app` or `k8s-app` label, else
/// its owner's name (a ReplicaSet `checkout-7d9f8c6b5` names the Deployment `checkout`).
pub fn pod_service(pod: &Pod) -> Option<String> {
    let meta = &pod.metadata;
    if let Some(labels) = &meta.labels
        && let Some(s) = SERVICE_LABELS.iter().find_map(|k| labels.get(*k))
    {
        return Some(s.clone());
    }
    let owner = meta
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    Some(match owner.kind.as_str() {
        // The pod-template hash after the last dash.
        "ReplicaSet" => owner
            .name
            .rsplit_once('-')
            .map_or(owner.name.clone(), |(d, _)| d.to_string()),
        _ => owner.name.clone(),
    })
}

/// Where a service runs, as its pods say: the namespace and the Deployment that owns them (by
/// the pods' controlling ReplicaSet), and the pods' first container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodWorkload {
    pub service: String,
    pub namespace: String,
    pub deployment: String,
    pub container: Option<String>,
}

/// The workload of a pod a Deployment runs; `None` for pods of other controllers (StatefulSets,
/// DaemonSets, Jobs) or none, which the remediation providers do not act on.
pub fn pod_workload(pod: &Pod) -> Option<PodWorkload> {
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "ReplicaSet")?;
    // The pod-template hash after the last dash.
    let (deployment, _) = owner.name.rsplit_once('-')?;
    Some(PodWorkload {
        service: pod_service(pod)?,
        namespace: meta.namespace.clone()?,
        deployment: deployment.to_string(),
        container: pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone()),
    })
}

/// (service, node) of a scheduled pod.
pub fn pod_placement(pod: &Pod) -> Option<(String, String)> {
    let node = pod.spec.as_ref()?.node_name.clone()?;
    Some((pod_service(pod)?, node))
}

fn pod_resource(pod: &Pod) -> Resource {
    let meta = &pod.metadata;
    let mut r = Resource::new();
    if let Some(s) = pod_service(pod) {
        r = r.with(semconv::SERVICE_NAME, &s);
    }
    if let Some(n) = &meta.name {
        r = r.with(semconv::K8S_POD_NAME, n);
    }
    if let Some(ns) = &meta.namespace {
        r = r.with(semconv::K8S_NAMESPACE_NAME, ns);
    }
    if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_ref()) {
        r = r.with(semconv::K8S_NODE_NAME, node);
    }
    r
}

/// A container restart since `before`, as a Warning event per container: the reason the last
/// run ended (`OOMKilled`, `Error`, ...) or `Restarted`.
pub fn pod_restarts(before: Option<&Pod>, now: &Pod, at: Millis) -> Vec<Event> {
    let statuses = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default()
    };
    let previous = before.map(statuses).unwrap_or_default();
    let name = now.metadata.name.clone().unwrap_or_default();
    statuses(now)
        .into_iter()
        .filter_map(|c| {
            let was = previous
                .iter()
                .find(|p| p.name == c.name)
                .map_or(0, |p| p.restart_count);
            // A pod seen for the first time reports its history, not news.
            if before.is_none() || c.restart_count <= was {
                return None;
            }
            let terminated = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let reason = terminated
                .and_then(|t| t.reason.clone())
                .unwrap_or_else(|| "Restarted".to_string());
            let ts = terminated
                .and_then(|t| t.finished_at.as_ref())
                .map_or(at, |t| millis(&t.0));
            Some(Event {
                ts,
                event_type: EventType::Warning,
                message: format!(
                    "container {} restarted ({} restarts), last run ended: {reason}",
                    c.name, c.restart_count
                ),
                reason,
                object: format!("Pod/{name}"),
                resource: pod_resource(now),
            })
        })
        .collect()
}

/// When a cluster event last happened: its last timestamp, else its event time, first
/// timestamp or creation.
pub fn event_time(e: &K8sEvent) -> Option<Millis> {
    e.last_timestamp
        .as_ref()
        .map(|t| millis(&t.0))
        .or_else(|| e.event_time.as_ref().map(|t| millis(&t.0)))
        .or_else(|| e.first_timestamp.as_ref().map(|t| millis(&t.0)))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| millis(&t.0)))
}

/// A cluster event as Nightshift's, with its resource: `service_of` names the service of a pod
/// (from the pods already seen), and a node event names its node.
pub fn cluster_event(e: &K8sEvent, service_of: impl Fn(&str) -> Option<String>) -> Option<Event> {
    let kind = e.involved_object.kind.clone()?;
    let name = e.involved_object.name.clone()?;
    let ts = event_time(e)?;
    let mut resource = Resource::new();
    if let Some(ns) = &e.involved_object.namespace {
        resource = resource.with(semconv::K8S_NAMESPACE_NAME, ns);
    }
    match kind.as_str() {
        "Pod" => {
            resource = resource.with(semconv::K8S_POD_NAME, &name);
            if let Some(s) = service_of(&name) {
                resource = resource.with(semconv::SERVICE_NAME, &s);
            }
        }
        "Node" => resource = resource.with(semconv::K8S_NODE_NAME, &name),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
            let service = if kind == "ReplicaSet" {
                name.rsplit_once('-').map_or(name.as_str(), |(d, _)| d)
            } else {
                &name
            };
            resource = resource.with(semconv::SERVICE_NAME, service);
        }
        _ => {}
    }
    Some(Event {
        ts,
        event_type: if e.type_.as_deref() == Some("Warning") {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: e.reason.clone().unwrap_or_default(),
        object: format!("{kind}/{name}"),
        resource,
        message: e.message.clone().unwrap_or_default(),
    })
}

/// What a description of an object shows: the object without its managed fields and
/// last-applied configuration (bulk, and a copy of the spec), and with the value of every
/// container environment variable hidden, since credentials often sit there under names no
/// redaction rule recognises (`DB_PASS`, `DSN`). `valueFrom` references are kept: they name
/// where a value comes from, not the value.
pub fn describe_view(mut object: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn hide_env(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == "env"
                        && let Value::Array(vars) = child
                    {
                        for var in vars.iter_mut().filter_map(Value::as_object_mut) {
                            if var.contains_key("value") {
                                var.insert("value".into(), Value::String("(hidden)".into()));
                            }
                        }
                    } else {
                        hide_env(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(hide_env),
            _ => {}
        }
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    hide_env(&mut object);
    object
}

/// One cluster event as the investigator reads it.
pub fn event_view(e: &K8sEvent) -> serde_json::Value {
    let o = &e.involved_object;
    serde_json::json!({
        "ts": event_time(e),
        "type": e.type_,
        "reason": e.reason,
        "object": format!("{}/{}", o.kind.as_deref().unwrap_or(""), o.name.as_deref().unwrap_or("")),
        "namespace": o.namespace,
        "message": e.message,
        "count": e.count,
    })
}

/// Restarts of a pod's containers, all together.
pub fn pod_restart_count(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
}

/// Whose logs to read in `pod`: the container asked for, else the one that restarted most
/// (else the first); and whether its previous run's logs are the ones that say something,
/// which they are when it is waiting to be restarted again (`CrashLoopBackOff`).
pub fn log_target(pod: &Pod, container: Option<&str>) -> Result<(String, bool), String> {
    let names: Vec<&str> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default();
    let chosen = match container {
        Some(c) if names.contains(&c) => c.to_string(),
        Some(c) => {
            return Err(format!(
                "pod {} has no container {c:?}; its containers: {}",
                pod.metadata.name.as_deref().unwrap_or(""),
                names.join(", ")
            ));
        }
        None => statuses
            .iter()
            .filter(|s| s.restart_count > 0)
            .max_by_key(|s| s.restart_count)
            .map(|s| s.name.clone())
            .or_else(|| names.first().map(|n| n.to_string()))
            .ok_or("the pod has no containers")?,
    };
    let crashed = statuses.iter().find(|s| s.name == chosen).is_some_and(|s| {
        s.restart_count > 0 && s.state.as_ref().is_some_and(|st| st.waiting.is_some())
    });
    Ok((chosen, crashed))
}

fn images(d: &Deployment) -> Vec<String> {
    d.spec
        .template
        .spec
        .as_ref()
        .map(|p| {
            p.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn revision(meta: &ObjectMeta) -> Option<u64> {
    meta.annotations
        .as_ref()?
        .get("deployment.kubernetes.io/revision")?
        .parse()
        .ok()
}

/// The changes between two versions of a Deployment: a new pod template (a rollout; a rollback
/// when its revision goes back to an earlier template's images) and a new replica count (a
/// scale).
pub fn deployment_changes(before: &Deployment, now: &Deployment, at: Millis) -> Vec<Change> {
    let name = now.metadata.name.clone().unwrap_or_default();
    let ns = now.metadata.namespace.clone().unwrap_or_default();
    let mut out = Vec::new();
    if before.spec.template != now.spec.template {
        let (old, new) = (images(before), images(now));
        let version = new
            .first()
            .and_then(|i| i.rsplit_once(':'))
            .map(|(_, tag)| tag.to_string());
        let rollback = revision(&now.metadata)
            .is_some_and(|r| revision(&before.metadata).is_some_and(|b| r < b));
        out.push(Change {
            id: format!(
                "k8s-{ns}-{name}-gen{}",
                now.metadata.generation.unwrap_or(0)
            ),
            ts: at,
            kind: if rollback {
                ChangeKind::Rollback
            } else {
                ChangeKind::Deploy
            },
            target: name.clone(),
            description: if old != new {
                format!(
                    "Deployment {ns}/{name}: {} → {}",
                    old.join(", "),
                    new.join(", ")
                )
            } else {
                format!("Deployment {ns}/{name}: pod template changed")
            },
            version,
        });
    }
    let replicas = |d: &Deployment| d.spec.replicas;
    if let (Some(a), Some(b)) = (replicas(before), replicas(now))
        && a != b
    {
        out.push(Change {
            id: format!("k8s-{ns}-{name}-scale{}-{at}", b),
            ts: at,
            kind: ChangeKind::Scale,
            target: name.clone(),
            version: None,
            description: format!("Deployment {ns}/{name} scaled from {a} to {b} replicas"),
        });
    }
    out
}

fn ready(n: &Node) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// A node's Ready condition changing: `NodeNotReady` (Warning) or `NodeReady` (Normal).
pub fn node_readiness(before: Option<&Node>, now: &Node, at: Millis) -> Option<Event> {
    let (was, is) = (before.and_then(ready), ready(now)?);
    if was.as_deref() == Some(is.as_str()) || (was.is_none() && is == "True") {
        return None;
    }
    let name = now.metadata.name.clone().unwrap_or_default();
    let (event_type, reason) = if is == "True" {
        (EventType::Normal, "NodeReady")
    } else {
        (EventType::Warning, "NodeNotReady")
    };
    Some(Event {
        ts: at,
        event_type,
        reason: reason.to_string(),
        object: format!("Node/{name}"),
        resource: Resource::node(&name),
        message: format!("node {name} Ready={is}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a Pod")
    }

    fn checkout_pod(restarts: i32) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "checkout-7d9f8c6b5-x2k4p", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8c6b5", "uid": "u", "controller": true}]},
            "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "shop/checkout:1.4"}]},
            "status": {"containerStatuses": [{"name": "app", "ready": true, "restartCount": restarts, "image": "shop/checkout:1.4", "imageID": "",
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-11-21T10:00:00Z"}}}]}
        }))
    }

    #[test]
    fn descriptions_hide_environment_values_and_bulk() {
        let v = describe_view(serde_json::json!({
            "metadata": {"name": "checkout", "managedFields": [{"manager": "kubectl"}],
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...DB_PASS=x...}", "team": "shop"}},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [
                {"name": "DB_PASS", "value": "hunter2"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}}
            ]}]}}}
        }));
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("managedFields"),
            "{text}"
        );
        assert!(!text.contains("last-applied"), "{text}");
        assert!(
            text.contains("\"team\":\"shop\"") && text.contains("secretKeyRef"),
            "{text}"
        );
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            "(hidden)"
        );
    }

    #[test]
    fn logs_come_from_the_container_that_restarted_and_its_previous_run_when_it_is_waiting() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "checkout-1"},
            "spec": {"containers": [{"name": "proxy"}, {"name": "app"}]},
            "status": {"containerStatuses": [
                {"name": "proxy", "ready": true, "restartCount": 0, "image": "", "imageID": ""},
                {"name": "app", "ready": false, "restartCount": 4, "image": "", "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        }));
        assert_eq!(log_target(&p, None), Ok(("app".into(), true)));
        assert_eq!(log_target(&p, Some("proxy")), Ok(("proxy".into(), false)));
        let err = log_target(&p, Some("db")).unwrap_err();
        assert!(err.contains("proxy, app"), "{err}");
        assert_eq!(pod_restart_count(&p), 4);
        assert_eq!(
            log_target(&checkout_pod(0), None),
            Ok(("app".into(), false))
        );
    }

    #[test]
    fn pods_are_placed_under_their_deployment() {
        let p = checkout_pod(0);
        assert_eq!(
            pod_placement(&p),
            Some(("checkout".into(), "node-a".into()))
        );
        let labelled = pod(
            serde_json::json!({"metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "cart"}}, "spec": {"nodeName": "n", "containers": []}}),
        );
        assert_eq!(pod_service(&labelled).as_deref(), Some("cart"));
    }

    #[test]
    fn restarts_become_events_with_their_reason() {
        let (before, after) = (checkout_pod(2), checkout_pod(3));
        let events = pod_restarts(Some(&before), &after, 0);
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].reason.as_str(), events[0].event_type),
            ("OOMKilled", EventType::Warning)
        );
        assert_eq!(events[0].resource.service_name(), Some("checkout"));
        assert_eq!(events[0].ts, 1_795_255_200_000);
        assert!(
            pod_restarts(None, &after, 0).is_empty(),
            "history is not news"
        );
        assert!(pod_restarts(Some(&after), &after, 0).is_empty());
    }

    #[test]
    fn cluster_events_keep_their_object_and_service() {
        let e: K8sEvent = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1", "namespace": "shop"},
            "involvedObject": {"kind": "Pod", "name": "checkout-7d9f8c6b5-x2k4p", "namespace": "shop"},
            "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
            "lastTimestamp": "2026-11-21T10:00:00Z"
        }))
        .expect("an Event");
        let ev = cluster_event(&e, |_| Some("checkout".into())).expect("mapped");
        assert_eq!(
            (ev.reason.as_str(), ev.object.as_str()),
            ("BackOff", "Pod/checkout-7d9f8c6b5-x2k4p")
        );
        assert_eq!(
            (ev.event_type, ev.ts),
            (EventType::Warning, 1_795_255_200_000)
        );
        assert_eq!(ev.resource.service_name(), Some("checkout"));
    }

    fn deployment(image: &str, replicas: i32, revision: &str, generation: i64) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "checkout", "namespace": "shop", "generation": generation,
                "annotations": {"deployment.kubernetes.io/revision": revision}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "checkout"}},
                "template": {"metadata": {"labels": {"app": "checkout"}}, "spec": {"containers": [{"name": "app", "image": image}]}}}
        }))
        .expect("a Deployment")
    }

    #[test]
    fn rollouts_rollbacks_and_scaling_are_changes() {
        let v1 = deployment("shop/checkout:1.4", 3, "4", 7);
        let v2 = deployment("shop/checkout:1.5", 3, "5", 8);
        let c = deployment_changes(&v1, &v2, 9);
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].kind, c[0].version.as_deref()),
            (ChangeKind::Deploy, Some("1.5"))
        );
        assert!(
            c[0].description
                .contains("shop/checkout:1.4 → shop/checkout:1.5")
        );
        let back = deployment("shop/checkout:1.4", 3, "4", 9);
        assert_eq!(
            deployment_changes(&v2, &back, 9)[0].kind,
            ChangeKind::Rollback
        );
        let scaled = deployment("shop/checkout:1.5", 6, "5", 9);
        let c = deployment_changes(&v2, &scaled, 9);
        assert_eq!((c.len(), c[0].kind), (1, ChangeKind::Scale));
        assert!(deployment_changes(&v2, &v2, 9).is_empty());
    }

    #[test]
    fn node_readiness_changes_are_events() {
        let node = |status: &str| -> Node {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "node-a"},
                "status": {"conditions": [{"type": "Ready", "status": status}]}}))
            .expect("a Node")
        };
        let down = node_readiness(Some(&node("True")), &node("Unknown"), 5).expect("an event");
        assert_eq!(
            (down.reason.as_str(), down.event_type),
            ("NodeNotReady", EventType::Warning)
        );
        assert_eq!(
            node_readiness(Some(&node("Unknown")), &node("True"), 6).map(|e| e.reason),
            Some("NodeReady".into())
        );
        assert!(node_readiness(None, &node("True"), 0).is_none());
        assert!(node_readiness(Some(&node("True")), &node("True"), 0).is_none());
    }
}
