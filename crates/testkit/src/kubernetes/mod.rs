//! A stand-in Kubernetes API server, shared by the tests of the Kubernetes provider (writes),
//! the cluster watchers (list and watch) and the investigator's tools (reads, events, logs).
//!
//! No cluster runs in CI, so [`StandIn`] plays the API server for the requests Nightshift makes:
//! it keeps Deployments, ReplicaSets, Pods, Nodes and Events in memory; lists them with label
//! and field selectors; streams watch events after a `resourceVersion`; applies strategic merge,
//! merge and JSON patches; serves the scale subresource, evictions and pod logs; and rejects
//! what the real API server rejects, with a `Status` body and the same code: a PATCH whose
//! content type is not a patch type (415), a POST that is not JSON (415), an invalid
//! `fieldManager` (422), a malformed body (400), an unknown object or path (404), an eviction a
//! PodDisruptionBudget forbids (429), a Deployment whose template no longer matches its selector
//! (422), a field selector on a field the resource does not index (400), logs of a pod with
//! several containers asked without naming one (400). It is stricter in one way: a write without
//! a `fieldManager` is refused (400), where the real server would make one up from the user
//! agent, so a provider that forgets it cannot pass. Every request is recorded (method, path,
//! decoded query, content type, body, warnings) so a test can say exactly what was sent.

mod labels;
mod patch;
mod pods;
mod query;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    /// The body as JSON (`Null` when empty, a string when not JSON).
    pub body: Value,
    /// The `Warning`s the answer carried (unknown fields the server dropped).
    pub warnings: Vec<String>,
}

impl std::fmt::Display for Seen {
    /// `METHOD path?query`, the query decoded.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        let mut sep = '?';
        for (k, v) in &self.query {
            write!(f, "{sep}{k}={v}")?;
            sep = '&';
        }
        Ok(())
    }
}

/// One change to an object, as a watch reports it.
struct Change {
    resource_version: u64,
    plural: &'static str,
    ns: String,
    kind: &'static str,
    object: Value,
}

/// The stand-in's state: objects by (resource, namespace, name), every change in order (for
/// watches), the requests seen, the pods a PodDisruptionBudget protects (pod `ns/name` → budget
/// name) and the containers' logs.
#[derive(Default)]
struct Cluster {
    objects: BTreeMap<(String, String, String), Value>,
    changes: Vec<Change>,
    seen: Vec<Seen>,
    protected: BTreeMap<String, String>,
    /// (namespace, pod, container, previous run) → log lines, each led by its RFC 3339 time.
    logs: BTreeMap<(String, String, String, bool), Vec<String>>,
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
        group: "",
        plural: "events",
        namespaced: true,
        kind: "Event",
        api_version: "v1",
        fields: &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
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

/// How long a watch with nothing new stays open before it ends, as an idle API server's watch
/// would time out (shortened so a watcher sees later changes soon).
const IDLE_WATCH: Duration = Duration::from_millis(500);

type Shared = Arc<Mutex<Cluster>>;

/// The stand-in, serving on 127.0.0.1 on a port of its own from a thread of its own, so sync
/// and async tests alike can use it.
pub struct StandIn {
    cluster: Shared,
    url: String,
}

impl StandIn {
    /// Serves `objects` (any of the kinds above, `metadata.namespace` set on namespaced ones).
    pub fn start(objects: Vec<Value>) -> Self {
        let mut cluster = Cluster::default();
        for o in objects {
            cluster.put(o);
        }
        let cluster = Arc::new(Mutex::new(cluster));
        let app = Router::new().fallback(handle).with_state(cluster.clone());
        let port = crate::stand_in::serve_stand_in(app);
        Self {
            cluster,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client for the stand-in. kube's default client retries 429, 503 and 504 with an
    /// exponential backoff (15 times, minutes in all); this one does not, so a
    /// PodDisruptionBudget's 429 comes back at once and each request is sent exactly once.
    pub fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = kube::Config::new(self.url.parse().expect("the stand-in's URL"));
        config.default_retry = false;
        kube::Client::try_from(config).expect("a client")
    }

    /// Writes a kubeconfig pointing at the stand-in (with a bearer token) into `dir`; its path.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster: {{server: \"{}\"}}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n- name: c\n  context: {{cluster: stand-in, user: u}}\ncurrent-context: c\n",
                self.url
            ),
        )
        .expect("write the kubeconfig");
        path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every request received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The requests that were not reads.
    pub fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != "GET")
            .collect()
    }

    /// An object as the stand-in holds it now (`ns` empty for cluster-scoped ones).
    pub fn object(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(plural.to_string(), ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Creates or replaces an object, as a controller elsewhere in the cluster would: watches
    /// see it `ADDED` or `MODIFIED`.
    pub fn put(&self, object: Value) {
        self.lock().put(object);
    }

    /// Makes a PodDisruptionBudget named `budget` protect pod `ns/name`.
    pub fn protect(&self, pod: &str, budget: &str) {
        self.lock()
            .protected
            .insert(pod.to_string(), budget.to_string());
    }

    /// The lines (each led by its RFC 3339 time and a space) that container `container` of pod
    /// `ns/pod` logged in its current run, or in its previous one.
    pub fn set_logs(&self, ns: &str, pod: &str, container: &str, previous: bool, lines: &[&str]) {
        self.lock().logs.insert(
            (ns.into(), pod.into(), container.into(), previous),
            lines.iter().map(|l| l.to_string()).collect(),
        );
    }
}

impl Cluster {
    fn next_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    /// Stores `o` under a new resource version and records the change.
    fn put(&mut self, mut o: Value) {
        let kind = o["kind"]
            .as_str()
            .expect("an object with a kind")
            .to_string();
        let k = KINDS
            .iter()
            .find(|k| k.kind == kind)
            .expect("a kind the stand-in serves");
        let ns = if k.namespaced {
            o["metadata"]["namespace"]
                .as_str()
                .expect("a namespaced object with its namespace")
                .to_string()
        } else {
            String::new()
        };
        let name = o["metadata"]["name"].as_str().expect("a name").to_string();
        if o["metadata"].get("uid").is_none() {
            o["metadata"]["uid"] = json!(format!("uid-{}-{name}", k.plural));
        }
        if k.kind == "Deployment" && o["metadata"].get("generation").is_none() {
            o["metadata"]["generation"] = json!(1);
        }
        self.store(k, ns, name, o);
    }

    /// Stores an object of kind `k` under a new resource version and records the change.
    fn store(&mut self, k: &'static Kind, ns: String, name: String, mut o: Value) {
        let rv = self.next_version();
        o["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (k.plural.to_string(), ns.clone(), name);
        let kind = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.changes.push(Change {
            resource_version: rv,
            plural: k.plural,
            ns,
            kind,
            object: o.clone(),
        });
        self.objects.insert(key, o);
    }

    /// Removes an object and records the change.
    fn remove(&mut self, k: &'static Kind, key: &(String, String, String)) -> Option<Value> {
        let mut o = self.objects.remove(key)?;
        let rv = self.next_version();
        o["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.changes.push(Change {
            resource_version: rv,
            plural: k.plural,
            ns: key.1.clone(),
            kind: "DELETED",
            object: o.clone(),
        });
        Some(o)
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
    if code.is_success()
        && let Some(b) = body.as_object_mut()
    {
        b.remove("reason");
        b.remove("message");
    }
    respond(code, &body, &[])
}

fn respond(code: StatusCode, body: &Value, warnings: &[String]) -> Response {
    respond_as(code, "application/json", body.to_string(), warnings)
}

fn respond_as(code: StatusCode, media: &str, body: String, warnings: &[String]) -> Response {
    let mut r = Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, media);
    for w in warnings {
        r = r.header("Warning", format!("299 - {w:?}"));
    }
    r.body(axum::body::Body::from(body))
        .expect("a well-formed response")
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

async fn handle(
    State(cluster): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = query::parse(uri.query());
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
    let watch = method == Method::GET
        && matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let (response, idle) = {
        let mut c = cluster.lock().unwrap_or_else(|e| e.into_inner());
        c.seen.push(Seen {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: parsed.clone().unwrap_or(Value::String(text)),
            warnings: Vec::new(),
        });
        if watch {
            match watch_now(&c, uri.path(), &query) {
                Ok(events) => {
                    let idle = events.is_empty();
                    (
                        respond_as(StatusCode::OK, "application/json", events, &[]),
                        idle,
                    )
                }
                Err(refusal) => (*refusal, false),
            }
        } else {
            let (response, warnings) =
                serve(&mut c, &method, uri.path(), &query, content_type, parsed);
            if let Some(last) = c.seen.last_mut() {
                last.warnings = warnings;
            }
            (response, false)
        }
    };
    if idle {
        // Nothing new: hold the watch a moment, as an idle API server does, then end it; the
        // watcher watches again from where it was.
        tokio::time::sleep(IDLE_WATCH).await;
    }
    response
}

/// Where a path points: a resource, its namespace, an object's name and a subresource.
struct Target {
    kind: &'static Kind,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn route(path: &str) -> Option<Target> {
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

fn no_such_path() -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        None,
    )
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
        return (no_such_path(), Vec::new());
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
    let media = media.unwrap_or_default();
    let plural = t.kind.plural;
    match (method.clone(), t.name.clone(), t.sub.as_deref()) {
        (Method::GET, None, None) => (list(c, &t, query), Vec::new()),
        (Method::GET, Some(name), None) => match c.objects.get(&key(&t, &name)) {
            Some(o) => (respond(StatusCode::OK, o, &[]), Vec::new()),
            None => (not_found(t.kind, &name), Vec::new()),
        },
        (Method::GET, Some(name), Some("scale")) if plural == "deployments" => {
            match c.objects.get(&key(&t, &name)) {
                Some(d) => (
                    respond(StatusCode::OK, &patch::scale_of(d), &[]),
                    Vec::new(),
                ),
                None => (not_found(t.kind, &name), Vec::new()),
            }
        }
        (Method::GET, Some(name), Some("log")) if plural == "pods" => {
            (pods::log(c, &t, &name, query), Vec::new())
        }
        (Method::PATCH, Some(name), None) => {
            (patch::patch_object(c, &t, &name, &media, &body), Vec::new())
        }
        (Method::PATCH, Some(name), Some("scale")) if plural == "deployments" => {
            (patch::patch_scale(c, &t, &name, &media, &body), Vec::new())
        }
        (Method::POST, Some(name), Some("eviction")) if plural == "pods" => {
            pods::evict(c, &t, &name, &body)
        }
        (Method::DELETE, Some(name), None) if plural == "pods" => {
            (pods::delete(c, &t, &name), Vec::new())
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

/// The label and field selectors of a list or watch, as one test of an object.
fn selection(
    t: &Target,
    query: &BTreeMap<String, String>,
) -> Result<impl Fn(&Value) -> bool, Box<Response>> {
    let labels = match query.get("labelSelector").map(|s| labels::parse(s)) {
        Some(Err(e)) => {
            return Err(Box::new(bad_request(&format!(
                "unable to parse requirement: {e}"
            ))));
        }
        Some(Ok(r)) => r,
        None => Vec::new(),
    };
    let fields = match query.get("fieldSelector") {
        Some(s) => {
            query::field_selector(s, t.kind.fields).map_err(|e| Box::new(bad_request(&e)))?
        }
        None => Vec::new(),
    };
    Ok(move |o: &Value| {
        let l = &o["metadata"]["labels"];
        labels.iter().all(|r| r.matches(l)) && fields.iter().all(|f| f.matches(o))
    })
}

fn list(c: &Cluster, t: &Target, query: &BTreeMap<String, String>) -> Response {
    let selected = match selection(t, query) {
        Ok(s) => s,
        Err(refusal) => return *refusal,
    };
    let mut items: Vec<Value> = c
        .objects
        .iter()
        .filter(|((plural, ns, _), _)| plural == t.kind.plural && (t.ns.is_empty() || *ns == t.ns))
        .map(|(_, o)| o)
        .filter(|o| selected(o))
        .map(|o| {
            // Items of a list carry no apiVersion and kind, as the real server sends them.
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            o
        })
        .collect();
    let mut metadata = json!({"resourceVersion": c.resource_version.to_string()});
    if let Some(limit) = query.get("limit").and_then(|l| l.parse::<usize>().ok())
        && limit > 0
        && items.len() > limit
    {
        items.truncate(limit);
        metadata["continue"] = json!("more");
        metadata["remainingItemCount"] = json!(items.len() - limit);
    }
    respond(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", t.kind.kind), "apiVersion": t.kind.api_version,
            "metadata": metadata, "items": items,
        }),
        &[],
    )
}

/// The watch events of a resource after the asked `resourceVersion` as newline-delimited JSON
/// (empty when nothing changed), or the refusal. With no version, or `0`, the watch starts
/// with every object that exists, as `ADDED`.
fn watch_now(
    c: &Cluster,
    path: &str,
    query: &BTreeMap<String, String>,
) -> Result<String, Box<Response>> {
    let Some(t) = route(path).filter(|t| t.name.is_none() && t.sub.is_none()) else {
        return Err(Box::new(no_such_path()));
    };
    let selected = selection(&t, query)?;
    let after = match query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| invalid("", "", &format!("resourceVersion: Invalid value: {v:?}")))?,
        ),
    };
    let here = |plural: &str, ns: &str| plural == t.kind.plural && (t.ns.is_empty() || ns == t.ns);
    let events: Vec<Value> = match after {
        None => c
            .objects
            .iter()
            .filter(|((plural, ns, _), o)| here(plural, ns) && selected(o))
            .map(|(_, o)| json!({"type": "ADDED", "object": o}))
            .collect(),
        Some(after) => c
            .changes
            .iter()
            .filter(|ch| {
                ch.resource_version > after && here(ch.plural, &ch.ns) && selected(&ch.object)
            })
            .map(|ch| json!({"type": ch.kind, "object": ch.object}))
            .collect(),
    };
    Ok(events.iter().map(|e| format!("{e}\n")).collect())
}
