//! What is done to pods: evictions (and the PodDisruptionBudgets that refuse them), deletion,
//! and their containers' logs as the kubelet serves them through the API server.

use super::{Cluster, Target, bad_request, key, not_found, respond, respond_as, status};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The fields of a policy/v1 Eviction and of its DeleteOptions.
const EVICTION_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "deleteOptions"];
const DELETE_OPTIONS_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "dryRun",
    "gracePeriodSeconds",
    "ignoreStoreReadErrorWithClusterBreakingPotential",
    "orphanDependents",
    "preconditions",
    "propagationPolicy",
];

pub(super) fn evict(
    c: &mut Cluster,
    t: &Target,
    name: &str,
    body: &Value,
) -> (Response, Vec<String>) {
    let Some(fields) = body.as_object() else {
        return (bad_request("an Eviction must be a JSON object"), Vec::new());
    };
    // The real server's default field validation drops unknown fields and says so in a
    // `Warning` header.
    let mut warnings: Vec<String> = fields
        .keys()
        .filter(|k| !EVICTION_FIELDS.contains(&k.as_str()))
        .map(|k| format!("unknown field {k:?}"))
        .collect();
    if let Some(o) = body["deleteOptions"].as_object() {
        warnings.extend(
            o.keys()
                .filter(|k| !DELETE_OPTIONS_FIELDS.contains(&k.as_str()))
                .map(|k| format!("unknown field \"deleteOptions.{k}\"")),
        );
    }
    if let Some(kind) = body["kind"].as_str()
        && (kind != "Eviction" || body["apiVersion"] != json!("policy/v1"))
    {
        return (
            bad_request(&format!(
                "expected policy/v1 Eviction, got {} {kind}",
                body["apiVersion"]
            )),
            warnings,
        );
    }
    if body["metadata"]["name"].as_str() != Some(name) {
        return (
            bad_request("name in URL does not match name in Eviction object"),
            warnings,
        );
    }
    let k = key(t, name);
    let Some(pod) = c.objects.get(&k).cloned() else {
        return (not_found(t.kind, name), warnings);
    };
    if let Some(budget) = c.protected.get(&format!("{}/{name}", t.ns)) {
        let r = status(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Cannot evict pod as it would violate the pod's disruption budget.",
            Some(json!({"causes": [{
                "reason": "DisruptionBudget",
                "message": format!("The disruption budget {budget} needs 2 healthy pods and has 2 currently"),
            }]})),
        );
        return (r, warnings);
    }
    let grace = body["deleteOptions"]["gracePeriodSeconds"]
        .as_i64()
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30);
    mark_deleted(c, t, &k, pod, grace);
    (status(StatusCode::CREATED, "", "", None), warnings)
}

/// A pod on its way out: marked for deletion after `grace` seconds, gone once the kubelet
/// confirms (which the stand-in leaves to the test).
fn mark_deleted(
    c: &mut Cluster,
    t: &Target,
    k: &(String, String, String),
    mut pod: Value,
    grace: i64,
) {
    pod["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    c.store(t.kind, k.1.clone(), k.2.clone(), pod);
}

pub(super) fn delete(c: &mut Cluster, t: &Target, name: &str) -> Response {
    let k = key(t, name);
    let Some(pod) = c.objects.get(&k).cloned() else {
        return not_found(t.kind, name);
    };
    if pod["spec"]["nodeName"].is_string() {
        // A pod on a node is deleted gracefully: marked, and gone once the kubelet confirms.
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        mark_deleted(c, t, &k, pod, grace);
        respond(StatusCode::OK, &c.objects[&k], &[])
    } else {
        let gone = c.remove(t.kind, &k).unwrap_or(pod);
        respond(StatusCode::OK, &gone, &[])
    }
}

/// `GET …/pods/NAME/log`: a container must be named when the pod has several; a container
/// waiting to start has no current logs, and one that never terminated has no previous ones;
/// `timestamps=true` keeps each line's time, `tailLines=N` keeps the last N lines.
pub(super) fn log(
    c: &Cluster,
    t: &Target,
    name: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let Some(pod) = c.objects.get(&key(t, name)) else {
        return not_found(t.kind, name);
    };
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    let container = match query.get("container") {
        Some(c) => c.as_str(),
        None if names.len() == 1 => names[0],
        None => {
            return bad_request(&format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            ));
        }
    };
    if !names.contains(&container) {
        return bad_request(&format!(
            "container {container} is not valid for pod {name}"
        ));
    }
    let state = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == container))
        .cloned()
        .unwrap_or(Value::Null);
    let previous = query.get("previous").is_some_and(|p| p == "true");
    if previous
        && state["lastState"]["terminated"].is_null()
        && state["restartCount"].as_i64().unwrap_or(0) == 0
    {
        return bad_request(&format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        ));
    }
    if !previous && let Some(reason) = state["state"]["waiting"]["reason"].as_str() {
        return bad_request(&format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        ));
    }
    let lines = c
        .logs
        .get(&(
            t.ns.clone(),
            name.to_string(),
            container.to_string(),
            previous,
        ))
        .cloned()
        .unwrap_or_default();
    let tail = query
        .get("tailLines")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(lines.len());
    let timestamps = query.get("timestamps").is_some_and(|t| t == "true");
    let body: String = lines[lines.len().saturating_sub(tail)..]
        .iter()
        .map(|l| {
            let line = if timestamps {
                l.as_str()
            } else {
                l.split_once(' ').map_or(l.as_str(), |(_, rest)| rest)
            };
            format!("{line}\n")
        })
        .collect();
    respond_as(StatusCode::OK, "text/plain", body, &[])
}
