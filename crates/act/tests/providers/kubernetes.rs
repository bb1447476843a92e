//! The Kubernetes provider against a stand-in API server.
//!
//! No cluster runs in CI, so `StandIn` plays the API server for the requests the provider
//! makes: it keeps Deployments, ReplicaSets, Pods and Nodes in memory, applies strategic merge,
//! merge and JSON patches to them, serves the scale subresource and evictions, and rejects what
//! the real API server rejects, with a `Status` body and the same code: a PATCH whose content
//! type is not a patch type (415), a POST that is not JSON (415), an invalid `fieldManager`
//! (422), a malformed body (400), an unknown object (404), an eviction a PodDisruptionBudget
//! forbids (429), a Deployment whose template no longer matches its selector (422). It is
//! stricter in one way: a write without a `fieldManager` is refused (400), where the real server
//! would make one up from the user agent, so a provider that forgets it cannot pass. Every
//! request is recorded (method, path, decoded query, content type, body, warnings) so the tests
//! can say exactly what was sent.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use nightshift_act::kubernetes::Kubernetes;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------------------------------------
// The stand-in API server
// ---------------------------------------------------------------------------------------------

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    /// The body as JSON (`Null` when empty, a string when not JSON).
    body: Value,
    /// The `Warning`s the answer carried (unknown fields the server dropped).
    warnings: Vec<String>,
}

/// The stand-in's state: objects by (resource, namespace, name), the requests seen, and the
/// pods a PodDisruptionBudget protects (pod `ns/name` → budget name).
#[derive(Default)]
struct Cluster {
    objects: BTreeMap<(String, String, String), Value>,
    seen: Vec<Seen>,
    protected: BTreeMap<String, String>,
    resource_version: u64,
}

/// A resource the stand-in serves.
struct Kind {
    group: &'static str,
    plural: &'static str,
    namespaced: bool,
    kind: &'static str,
    api_version: &'static str,
    /// Fields a `fieldSelector` may use, as the real API server allows them.
    fields: &'static [&'static str],
}

const KINDS: &[Kind] = &[
    Kind {
        group: "",
        plural: "pods",
        namespaced: true,
        kind: "Pod",
        api_version: "v1",
        fields: &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
    },
    Kind {
        group: "",
        plural: "nodes",
        namespaced: false,
        kind: "Node",
        api_version: "v1",
        fields: &["metadata.name", "spec.unschedulable"],
    },
    Kind {
        group: "apps",
        plural: "deployments",
        namespaced: true,
        kind: "Deployment",
        api_version: "apps/v1",
        fields: &["metadata.name", "metadata.namespace"],
    },
    Kind {
        group: "apps",
        plural: "replicasets",
        namespaced: true,
        kind: "ReplicaSet",
        api_version: "apps/v1",
        fields: &["metadata.name", "metadata.namespace", "status.replicas"],
    },
];

const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

type Shared = Arc<Mutex<Cluster>>;

/// The stand-in, running on 127.0.0.1 on a port of its own.
struct StandIn {
    cluster: Shared,
    url: String,
}

impl StandIn {
    async fn start(objects: Vec<Value>) -> Self {
        let mut cluster = Cluster::default();
        for o in objects {
            cluster.insert(o);
        }
        let cluster = Arc::new(Mutex::new(cluster));
        let app = Router::new().fallback(handle).with_state(cluster.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { cluster, url }
    }

    fn provider(&self) -> Kubernetes {
        Kubernetes::new(self.client(), "nightshift")
    }

    /// A client for the stand-in. kube's default client retries 429, 503 and 504 with an
    /// exponential backoff (15 times, minutes in all); the tests turn that off so that a
    /// PodDisruptionBudget's 429 comes back at once and each eviction is sent exactly once.
    fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = kube::Config::new(self.url.parse().unwrap());
        config.default_retry = false;
        kube::Client::try_from(config).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.cluster.lock().unwrap().seen.clone()
    }

    fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != "GET")
            .collect()
    }

    fn object(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let c = self.cluster.lock().unwrap();
        c.objects
            .get(&(plural.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    fn protect(&self, pod: &str, budget: &str) {
        let mut c = self.cluster.lock().unwrap();
        c.protected.insert(pod.to_string(), budget.to_string());
    }
}

impl Cluster {
    fn insert(&mut self, mut o: Value) {
        let kind = o["kind"].as_str().unwrap().to_string();
        let k = KINDS
            .iter()
            .find(|k| k.kind == kind)
            .expect("a kind the stand-in serves");
        let ns = if k.namespaced {
            o["metadata"]["namespace"].as_str().unwrap().to_string()
        } else {
            String::new()
        };
        let name = o["metadata"]["name"].as_str().unwrap().to_string();
        self.resource_version += 1;
        o["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        if o["metadata"].get("uid").is_none() {
            o["metadata"]["uid"] = json!(format!("uid-{}-{name}", k.plural));
        }
        if k.kind == "Deployment" && o["metadata"].get("generation").is_none() {
            o["metadata"]["generation"] = json!(1);
        }
        self.objects.insert((k.plural.to_string(), ns, name), o);
    }
}

fn status(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": if code.is_success() { "Success" } else { "Failure" },
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    if code.is_success() {
        body.as_object_mut().unwrap().remove("reason");
        body.as_object_mut().unwrap().remove("message");
    }
    respond(code, &body, &[])
}

fn respond(code: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let mut r = Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json");
    for w in warnings {
        r = r.header("Warning", format!("299 - {w:?}"));
    }
    r.body(axum::body::Body::from(body.to_string())).unwrap()
}

fn not_found(k: &Kind, name: &str) -> Response {
    let resource = if k.group.is_empty() {
        k.plural.to_string()
    } else {
        format!("{}.{}", k.plural, k.group)
    };
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{resource} {name:?} not found"),
        Some(json!({"name": name, "group": k.group, "kind": k.plural})),
    )
}

fn invalid(kind: &str, name: &str, cause: &str) -> Response {
    status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        &format!("{kind} {name:?} is invalid: {cause}"),
        None,
    )
}

fn bad_request(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// `application/x-www-form-urlencoded` decoding of one query component.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'+', _, _) => out.push(b' '),
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            (c, _, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

async fn handle(
    State(cluster): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = String::from_utf8_lossy(&body).into_owned();
    let parsed: Option<Value> = if text.is_empty() {
        Some(Value::Null)
    } else {
        serde_json::from_str(&text).ok()
    };
    let mut c = cluster.lock().unwrap();
    c.seen.push(Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: query.clone(),
        content_type: content_type.clone(),
        body: parsed.clone().unwrap_or(Value::String(text)),
        warnings: Vec::new(),
    });
    let (response, warnings) = serve(&mut c, &method, uri.path(), &query, content_type, parsed);
    c.seen.last_mut().unwrap().warnings = warnings;
    response
}

/// Where a path points: a resource, its namespace, an object's name and a subresource.
struct Target<'k> {
    kind: &'k Kind,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn route(path: &str) -> Option<Target<'static>> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", "apps", "v1", rest @ ..] => ("apps", rest),
        _ => return None,
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        rest => (String::new(), rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    let kind = KINDS
        .iter()
        .find(|k| k.group == group && k.plural == plural)?;
    if kind.namespaced == ns.is_empty() && name.is_some() {
        return None;
    }
    Some(Target {
        kind,
        ns,
        name,
        sub,
    })
}

fn serve(
    c: &mut Cluster,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    content_type: Option<String>,
    body: Option<Value>,
) -> (Response, Vec<String>) {
    let Some(t) = route(path) else {
        return (
            status(
                StatusCode::NOT_FOUND,
                "NotFound",
                "the server could not find the requested resource",
                None,
            ),
            Vec::new(),
        );
    };
    let writes = matches!(*method, Method::PATCH | Method::POST | Method::PUT);
    if writes {
        match query.get("fieldManager") {
            None => {
                return (
                    bad_request("this stand-in requires a fieldManager on every write"),
                    Vec::new(),
                );
            }
            Some(fm)
                if fm.is_empty()
                    || fm.chars().count() > 128
                    || fm.chars().any(char::is_control) =>
            {
                return (
                    invalid(
                        "PatchOptions.meta.k8s.io",
                        "",
                        &format!("fieldManager: Invalid value: {fm:?}"),
                    ),
                    Vec::new(),
                );
            }
            Some(_) => {}
        }
    }
    let media = content_type
        .as_deref()
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_string());
    if *method == Method::PATCH && !PATCH_TYPES.contains(&media.as_deref().unwrap_or_default()) {
        return (
            status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types \
                     include: {}",
                    PATCH_TYPES.join(", ")
                ),
                None,
            ),
            Vec::new(),
        );
    }
    if *method == Method::POST && media.as_deref() != Some("application/json") {
        return (
            status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json, application/yaml, \
                 application/vnd.kubernetes.protobuf",
                None,
            ),
            Vec::new(),
        );
    }
    let Some(body) = body else {
        return (
            bad_request("the body of the request is not valid JSON"),
            Vec::new(),
        );
    };
    match (method.clone(), t.name.clone(), t.sub.as_deref()) {
        (Method::GET, None, None) => (list(c, &t, query), Vec::new()),
        (Method::GET, Some(name), None) => match c.objects.get(&key(&t, &name)) {
            Some(o) => (respond(StatusCode::OK, o, &[]), Vec::new()),
            None => (not_found(t.kind, &name), Vec::new()),
        },
        (Method::GET, Some(name), Some("scale")) if t.kind.plural == "deployments" => {
            match c.objects.get(&key(&t, &name)) {
                Some(d) => (respond(StatusCode::OK, &scale_of(d), &[]), Vec::new()),
                None => (not_found(t.kind, &name), Vec::new()),
            }
        }
        (Method::PATCH, Some(name), None) => (
            patch_object(c, &t, &name, media.as_deref().unwrap(), &body),
            Vec::new(),
        ),
        (Method::PATCH, Some(name), Some("scale")) if t.kind.plural == "deployments" => (
            patch_scale(c, &t, &name, media.as_deref().unwrap(), &body),
            Vec::new(),
        ),
        (Method::POST, Some(name), Some("eviction")) if t.kind.plural == "pods" => {
            evict(c, &t, &name, &body)
        }
        (Method::DELETE, Some(name), None) if t.kind.plural == "pods" => {
            (delete_pod(c, &t, &name), Vec::new())
        }
        _ => (
            status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            ),
            Vec::new(),
        ),
    }
}

fn key(t: &Target, name: &str) -> (String, String, String) {
    (t.kind.plural.to_string(), t.ns.clone(), name.to_string())
}

fn list(c: &Cluster, t: &Target, query: &BTreeMap<String, String>) -> Response {
    let labels = match query.get("labelSelector").map(|s| label_selector(s)) {
        Some(Err(e)) => return bad_request(&format!("unable to parse requirement: {e}")),
        Some(Ok(r)) => r,
        None => Vec::new(),
    };
    let mut fields = Vec::new();
    if let Some(s) = query.get("fieldSelector") {
        for term in s.split(',').filter(|t| !t.is_empty()) {
            let (field, want, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return bad_request(&format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            if !t.kind.fields.contains(&field) {
                return bad_request(&format!("field label not supported: {field}"));
            }
            fields.push((field.to_string(), want.to_string(), equal));
        }
    }
    let items: Vec<Value> = c
        .objects
        .iter()
        .filter(|((plural, ns, _), _)| plural == t.kind.plural && (t.ns.is_empty() || *ns == t.ns))
        .map(|(_, o)| o)
        .filter(|o| {
            let l = &o["metadata"]["labels"];
            labels.iter().all(|r| r.matches(l))
        })
        .filter(|o| {
            fields.iter().all(|(f, want, equal)| {
                let v = f.split('.').fold(*o, |v, part| &v[part]);
                let got = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (got == *want) == *equal
            })
        })
        .map(|o| {
            // Items of a list carry no apiVersion and kind, as the real server sends them.
            let mut o = o.clone();
            o.as_object_mut().unwrap().remove("apiVersion");
            o.as_object_mut().unwrap().remove("kind");
            o
        })
        .collect();
    respond(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", t.kind.kind), "apiVersion": t.kind.api_version,
            "metadata": {"resourceVersion": c.resource_version.to_string()},
            "items": items,
        }),
        &[],
    )
}

/// One requirement of a label selector.
enum Requirement {
    Equal(String, String, bool),
    In(String, Vec<String>, bool),
    Exists(String, bool),
}

impl Requirement {
    fn matches(&self, labels: &Value) -> bool {
        match self {
            Requirement::Equal(k, v, eq) => (labels[k].as_str() == Some(v)) == *eq,
            Requirement::In(k, vs, within) => {
                let found = labels[k]
                    .as_str()
                    .is_some_and(|l| vs.iter().any(|v| v == l));
                if *within { found } else { !found }
            }
            Requirement::Exists(k, exists) => labels.get(k).is_some() == *exists,
        }
    }
}

/// Parses a label selector as the API server does (`a=b,c!=d,e in (f,g),!h`).
fn label_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    let mut out = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let r = if let Some((k, v)) = term.split_once(" notin ") {
            Requirement::In(k.trim().into(), set(v)?, false)
        } else if let Some((k, v)) = term.split_once(" in ") {
            Requirement::In(k.trim().into(), set(v)?, true)
        } else if let Some((k, v)) = term.split_once("!=") {
            Requirement::Equal(k.trim().into(), v.trim().into(), false)
        } else if let Some((k, v)) = term.split_once("==") {
            Requirement::Equal(k.trim().into(), v.trim().into(), true)
        } else if let Some((k, v)) = term.split_once('=') {
            Requirement::Equal(k.trim().into(), v.trim().into(), true)
        } else if let Some(k) = term.strip_prefix('!') {
            Requirement::Exists(k.trim().into(), false)
        } else {
            Requirement::Exists(term.into(), true)
        };
        out.push(r);
    }
    Ok(out)
}

fn set(v: &str) -> Result<Vec<String>, String> {
    let v = v.trim();
    let inner = v
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("expected a set in parentheses, found {v:?}"))?;
    Ok(inner.split(',').map(|s| s.trim().to_string()).collect())
}

fn scale_of(d: &Value) -> Value {
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

fn patch_object(c: &mut Cluster, t: &Target, name: &str, media: &str, body: &Value) -> Response {
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
    if after != before {
        c.resource_version += 1;
        after["metadata"]["resourceVersion"] = json!(c.resource_version.to_string());
        if before["spec"] != after["spec"]
            && let Some(g) = after["metadata"]["generation"].as_i64()
        {
            after["metadata"]["generation"] = json!(g + 1);
        }
    }
    c.objects.insert(k, after.clone());
    respond(StatusCode::OK, &after, &[])
}

fn patch_scale(c: &mut Cluster, t: &Target, name: &str, media: &str, body: &Value) -> Response {
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
        c.resource_version += 1;
        deployment["metadata"]["resourceVersion"] = json!(c.resource_version.to_string());
        let g = deployment["metadata"]["generation"].as_i64().unwrap_or(1);
        deployment["metadata"]["generation"] = json!(g + 1);
    }
    c.objects.insert(k, deployment.clone());
    respond(StatusCode::OK, &scale_of(&deployment), &[])
}

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

fn evict(c: &mut Cluster, t: &Target, name: &str, body: &Value) -> (Response, Vec<String>) {
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
    let Some(mut pod) = c.objects.get(&k).cloned() else {
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
    pod["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    c.resource_version += 1;
    pod["metadata"]["resourceVersion"] = json!(c.resource_version.to_string());
    c.objects.insert(k, pod);
    (status(StatusCode::CREATED, "", "", None), warnings)
}

fn delete_pod(c: &mut Cluster, t: &Target, name: &str) -> Response {
    let k = key(t, name);
    let Some(mut pod) = c.objects.get(&k).cloned() else {
        return not_found(t.kind, name);
    };
    if pod["spec"]["nodeName"].is_string() {
        // A pod on a node is deleted gracefully: marked, and gone once the kubelet confirms.
        let grace = pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        pod["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
        pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        c.resource_version += 1;
        pod["metadata"]["resourceVersion"] = json!(c.resource_version.to_string());
        c.objects.insert(k, pod.clone());
    } else {
        c.objects.remove(&k);
    }
    respond(StatusCode::OK, &pod, &[])
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
    let k8s = StandIn::start(vec![cart()]).await;
    let out = k8s
        .provider()
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
    let k8s = StandIn::start(vec![paused]).await;
    let e = k8s
        .provider()
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
    let k8s = StandIn::start(vec![cart()]).await;
    let p = k8s.provider();
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
    let k8s = StandIn::start(vec![cart()]).await;
    let p = k8s.provider();
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
    let k8s = StandIn::start(objects).await;
    let out = k8s
        .provider()
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
    ])
    .await;
    let e = k8s
        .provider()
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
    let k8s = StandIn::start(vec![two_containers()]).await;
    let before = k8s.object("deployments", "shop", "cart").unwrap();
    let out = k8s
        .provider()
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
    let k8s = StandIn::start(vec![two_containers()]).await;
    let before = k8s.object("deployments", "shop", "cart").unwrap();
    let p = k8s.provider();
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
    let k8s = StandIn::start(vec![node("worker-1", false)]).await;
    let p = k8s.provider();
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
    let k8s = StandIn::start(node_with_pods()).await;
    let out = k8s
        .provider()
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
    let k8s = StandIn::start(node_with_pods()).await;
    k8s.protect("shop/cart-7d9f1b-abcde", "cart-pdb");
    let e = k8s
        .provider()
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
    let k8s = StandIn::start(node_with_pods()).await;
    let out = k8s
        .provider()
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
    let k8s = StandIn::start(node_with_pods()).await;
    let p = k8s.provider();
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
    let k8s = StandIn::start(vec![cart()]).await;
    let p = k8s.provider();
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
    let k8s = StandIn::start(vec![cart()]).await;
    let with = json!({"namespace": "shop", "deployment": "cart"});
    let e = k8s
        .provider()
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

#[tokio::test]
async fn the_stand_in_rejects_what_the_api_server_rejects() {
    let k8s = StandIn::start(vec![cart()]).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let url = format!("{}/apis/apps/v1/namespaces/shop/deployments/cart", k8s.url);
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
            k8s.url
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
        k8s.url
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
