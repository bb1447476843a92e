//! Writes by patch: strategic merge, merge and JSON patches applied as the API server applies
//! them, what it validates afterwards, and the scale subresource.

use super::{Cluster, Target, bad_request, invalid, key, not_found, respond, status};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

/// A Deployment's `autoscaling/v1` Scale.
pub(super) fn scale_of(d: &Value) -> Value {
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let selector: Vec<String> = d["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": d["metadata"]["name"], "namespace": d["metadata"]["namespace"],
            "uid": d["metadata"]["uid"], "resourceVersion": d["metadata"]["resourceVersion"],
        },
        "spec": {"replicas": replicas},
        "status": {
            "replicas": d["status"]["replicas"].as_i64().unwrap_or(replicas),
            "selector": selector.join(","),
        },
    })
}

/// Applies a patch of media type `media` to `target`.
fn apply(target: &Value, media: &str, patch: &Value) -> Result<Value, Box<Response>> {
    let mut out = target.clone();
    match media {
        "application/merge-patch+json" => {
            if !patch.is_object() {
                return Err(Box::new(bad_request("a merge patch must be a JSON object")));
            }
            merge(&mut out, patch);
        }
        "application/strategic-merge-patch+json" => {
            if !patch.is_object() {
                return Err(Box::new(bad_request(
                    "a strategic merge patch must be a JSON object",
                )));
            }
            strategic(&mut out, patch);
        }
        "application/json-patch+json" => {
            let Some(ops) = patch.as_array() else {
                return Err(Box::new(bad_request("a JSON patch must be a JSON array")));
            };
            for op in ops {
                json_patch_op(&mut out, op).map_err(|e| {
                    Box::new(status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        &format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                        None,
                    ))
                })?;
            }
        }
        _ => {
            return Err(Box::new(status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "server-side apply is not served by this stand-in",
                None,
            )));
        }
    }
    Ok(out)
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of a list field in the core API types' strategic merge patch metadata, for the
/// lists these tests touch; other lists are replaced whole.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "volumeMounts"
        | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        "ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// A strategic merge patch as the API server applies it to the built-in types: maps merge,
/// `null` deletes, lists with a merge key merge by it (`$patch: delete` removes an element),
/// other lists are replaced, `$patch: replace` replaces a map; other directives are ignored.
fn strategic(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut fresh = Value::Object(Map::new());
        let mut rest = p.clone();
        rest.remove("$patch");
        strategic(&mut fresh, &Value::Object(rest));
        *target = fresh;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().unwrap();
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (merge_key(k), v.as_array()) {
            (Some(mk), Some(items)) => {
                let slot = t.entry(k.clone()).or_insert(json!([]));
                if !slot.is_array() {
                    *slot = json!([]);
                }
                let list = slot.as_array_mut().unwrap();
                for item in items {
                    let id = &item[mk];
                    let at = list.iter().position(|e| e[mk] == *id);
                    if item["$patch"].as_str() == Some("delete") {
                        if let Some(i) = at {
                            list.remove(i);
                        }
                        continue;
                    }
                    match at {
                        Some(i) => strategic(&mut list[i], item),
                        None => {
                            let mut fresh = Value::Object(Map::new());
                            strategic(&mut fresh, item);
                            list.push(fresh);
                        }
                    }
                }
            }
            (None, Some(_)) => {
                t.insert(k.clone(), v.clone());
            }
            _ => strategic(t.entry(k.clone()).or_insert(Value::Null), v),
        }
    }
}

/// One RFC 6902 operation (`add`, `replace`, `remove`, `test`).
fn json_patch_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let path = op["path"].as_str().ok_or("an operation without a path")?;
    let tokens: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (last, parents) = tokens
        .split_last()
        .ok_or("cannot patch the whole document")?;
    let mut parent = &mut *doc;
    for t in parents {
        parent = match parent {
            Value::Object(m) => m.get_mut(t),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("path {path} does not exist"))?;
    }
    let value = op.get("value").cloned();
    match (op["op"].as_str(), parent) {
        (Some("add"), Value::Object(m)) => {
            m.insert(last.clone(), value.ok_or("add without a value")?);
        }
        (Some("replace"), Value::Object(m)) => {
            let slot = m.get_mut(last).ok_or_else(|| {
                format!("replace operation does not apply: doc is missing key: {path}")
            })?;
            *slot = value.ok_or("replace without a value")?;
        }
        (Some("remove"), Value::Object(m)) => {
            m.remove(last).ok_or_else(|| {
                format!("remove operation does not apply: doc is missing key: {path}")
            })?;
        }
        (Some("test"), Value::Object(m)) => {
            if m.get(last) != value.as_ref() {
                return Err(format!("testing value {path} failed"));
            }
        }
        (op, _) => {
            return Err(format!(
                "operation {op:?} on {path} is not served by this stand-in"
            ));
        }
    }
    Ok(())
}

/// What the API server checks of a patched object, for the kinds and fields these tests touch.
fn validate(kind: &str, name: &str, before: &Value, after: &Value) -> Result<(), Box<Response>> {
    if before["metadata"]["name"] != after["metadata"]["name"] {
        return Err(Box::new(bad_request(&format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            after["metadata"]["name"]
        ))));
    }
    if kind == "Deployment" {
        let selector = after["spec"]["selector"]["matchLabels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let labels = &after["spec"]["template"]["metadata"]["labels"];
        if selector.iter().any(|(k, v)| labels[k] != *v) {
            return Err(Box::new(invalid(
                "Deployment.apps",
                name,
                "spec.template.metadata.labels: Invalid value: `selector` does not match \
                 template `labels`",
            )));
        }
        let containers = after["spec"]["template"]["spec"]["containers"].as_array();
        if containers.is_none_or(|c| c.is_empty()) {
            return Err(Box::new(invalid(
                "Deployment.apps",
                name,
                "spec.template.spec.containers: Required value",
            )));
        }
    }
    Ok(())
}

pub(super) fn patch_object(
    c: &mut Cluster,
    t: &Target,
    name: &str,
    media: &str,
    body: &Value,
) -> Response {
    let k = key(t, name);
    let Some(before) = c.objects.get(&k).cloned() else {
        return not_found(t.kind, name);
    };
    let mut after = match apply(&before, media, body) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    if let Err(r) = validate(t.kind.kind, name, &before, &after) {
        return *r;
    }
    if after == before {
        return respond(StatusCode::OK, &after, &[]);
    }
    if before["spec"] != after["spec"]
        && let Some(g) = after["metadata"]["generation"].as_i64()
    {
        after["metadata"]["generation"] = json!(g + 1);
    }
    c.store(t.kind, k.1.clone(), k.2.clone(), after);
    respond(StatusCode::OK, &c.objects[&k], &[])
}

pub(super) fn patch_scale(
    c: &mut Cluster,
    t: &Target,
    name: &str,
    media: &str,
    body: &Value,
) -> Response {
    let k = key(t, name);
    let Some(mut deployment) = c.objects.get(&k).cloned() else {
        return not_found(t.kind, name);
    };
    let scale = match apply(&scale_of(&deployment), media, body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(replicas) = scale["spec"]["replicas"].as_i64().filter(|r| *r >= 0) else {
        return invalid(
            "Scale.autoscaling",
            name,
            "spec.replicas: Invalid value: must be greater than or equal to 0",
        );
    };
    if deployment["spec"]["replicas"] != json!(replicas) {
        deployment["spec"]["replicas"] = json!(replicas);
        let g = deployment["metadata"]["generation"].as_i64().unwrap_or(1);
        deployment["metadata"]["generation"] = json!(g + 1);
        c.store(t.kind, k.1.clone(), k.2.clone(), deployment);
    }
    respond(StatusCode::OK, &scale_of(&c.objects[&k]), &[])
}
