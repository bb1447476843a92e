//! The investigator's Kubernetes tools, offered when `kubernetes:` is configured:
//! `k8s_describe` (an object with its recent events, as `kubectl describe` shows them),
//! `k8s_events` and `k8s_logs`. All read-only, through the same API client the watchers use,
//! so the cluster's RBAC bounds what they can see. Secrets and ConfigMaps are never read, and
//! container environment values are hidden (`nightshift_ingest::kubernetes::describe_view`).

use super::{arg_num, arg_str, spec};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Event as K8sEvent, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, LogParams};
use kube::core::Selector;
use nightshift_core::Millis;
use nightshift_ingest::kubernetes as k8s;
use nightshift_llm::ToolSpec;
use serde_json::{Value, json};

/// Log lines one `k8s_logs` call returns at most, and bytes.
const MAX_LOG_LINES: f64 = 500.0;
const MAX_LOG_BYTES: i64 = 256 * 1024;

/// The resource a kind's name (singular, plural or short, as kubectl takes them) means, and
/// whether it is namespaced.
fn resource(kind: &str) -> Result<(ApiResource, bool), String> {
    let k = kind.trim().to_ascii_lowercase();
    Ok(match k.as_str() {
        "pod" | "pods" | "po" => (ApiResource::erase::<Pod>(&()), true),
        "deployment" | "deployments" | "deploy" => (ApiResource::erase::<Deployment>(&()), true),
        "replicaset" | "replicasets" | "rs" => (ApiResource::erase::<ReplicaSet>(&()), true),
        "statefulset" | "statefulsets" | "sts" => (ApiResource::erase::<StatefulSet>(&()), true),
        "daemonset" | "daemonsets" | "ds" => (ApiResource::erase::<DaemonSet>(&()), true),
        "service" | "services" | "svc" => (ApiResource::erase::<Service>(&()), true),
        "job" | "jobs" => (ApiResource::erase::<Job>(&()), true),
        "cronjob" | "cronjobs" | "cj" => (ApiResource::erase::<CronJob>(&()), true),
        "horizontalpodautoscaler" | "horizontalpodautoscalers" | "hpa" => {
            (ApiResource::erase::<HorizontalPodAutoscaler>(&()), true)
        }
        "persistentvolumeclaim" | "persistentvolumeclaims" | "pvc" => {
            (ApiResource::erase::<PersistentVolumeClaim>(&()), true)
        }
        "node" | "nodes" | "no" => (ApiResource::erase::<Node>(&()), false),
        "namespace" | "namespaces" | "ns" => (ApiResource::erase::<Namespace>(&()), false),
        "persistentvolume" | "persistentvolumes" | "pv" => {
            (ApiResource::erase::<PersistentVolume>(&()), false)
        }
        "secret" | "secrets" | "configmap" | "configmaps" | "cm" => {
            return Err(
                "Secrets and ConfigMaps are never read: they hold credentials; describe the \
                 workload that uses them instead"
                    .into(),
            );
        }
        _ => return Err(format!("cannot describe a {kind:?}; kinds: {KINDS}")),
    })
}

const KINDS: &str = "pod, deployment, replicaset, statefulset, daemonset, service, job, cronjob, \
                     hpa, pvc, node, namespace, pv";

/// `name` if it is a Kubernetes object name (a DNS subdomain), else what is wrong with it.
fn object_name<'a>(what: &str, name: Option<&'a str>) -> Result<&'a str, String> {
    let name = name.ok_or_else(|| format!("give the {what}"))?.trim();
    if nightshift_core::resource::is_k8s_name(name) {
        Ok(name)
    } else {
        Err(format!(
            "{name:?} is not a Kubernetes {what}: lower-case letters, digits, '-' and '.'"
        ))
    }
}

/// What the Kubernetes API said, for the model.
fn api_error(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("the Kubernetes API answered {}: {}", s.code, s.message),
        other => format!("cannot reach the Kubernetes API: {other}"),
    }
}

/// The cluster the tools read.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    /// The configured namespace: where namespaced objects are looked for unless a call names
    /// another, and the only one `k8s_events` lists by default.
    namespace: Option<String>,
}

impl Cluster {
    pub fn new(client: kube::Client, namespace: Option<String>) -> Self {
        Self { client, namespace }
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        let ns = json!({"type": "string", "description": "default: the configured namespace, else \"default\""});
        vec![
            spec(
                "k8s_describe",
                "A Kubernetes object (spec and status, environment values hidden) with its recent events.",
                json!({
                    "kind": {"type": "string", "description": KINDS},
                    "name": {"type": "string"},
                    "namespace": ns,
                }),
                &["kind", "name"],
            ),
            spec(
                "k8s_events",
                "Kubernetes events over the last minutes, newest first, optionally of one object or type.",
                json!({
                    "namespace": {"type": "string"},
                    "kind": {"type": "string", "description": "of the object, e.g. Pod"},
                    "name": {"type": "string", "description": "of the object"},
                    "type": {"type": "string", "enum": ["Warning", "Normal"]},
                    "minutes": {"type": "number", "description": "how far back, default 60"},
                    "limit": {"type": "integer", "maximum": 100},
                }),
                &[],
            ),
            spec(
                "k8s_logs",
                "The last log lines of a pod's container; given a Deployment, StatefulSet or DaemonSet, of its pod that restarted most. A crash-looping container's previous run is read unless `previous` is set.",
                json!({
                    "pod": {"type": "string", "description": "a pod, or a workload's name"},
                    "namespace": ns,
                    "container": {"type": "string"},
                    "previous": {"type": "boolean"},
                    "tail_lines": {"type": "integer", "maximum": 500},
                    "minutes": {"type": "number"},
                }),
                &["pod"],
            ),
        ]
    }

    /// The namespace a call means.
    fn namespace<'a>(&'a self, args: &'a Value) -> Result<&'a str, String> {
        match arg_str(args, "namespace") {
            Some(ns) => object_name("namespace", Some(ns)),
            None => Ok(self.namespace.as_deref().unwrap_or("default")),
        }
    }

    fn dynamic(&self, ar: &ApiResource, namespaced: bool, ns: &str) -> Api<DynamicObject> {
        if namespaced {
            Api::namespaced_with(self.client.clone(), ns, ar)
        } else {
            Api::all_with(self.client.clone(), ar)
        }
    }

    /// Runs one of the tools; `None` when `name` is not one of them.
    pub async fn call(
        &self,
        name: &str,
        args: &Value,
        now: Millis,
    ) -> Option<Result<Value, String>> {
        Some(match name {
            "k8s_describe" => self.describe(args, now).await,
            "k8s_events" => self.events(args, now).await,
            "k8s_logs" => self.logs(args).await,
            _ => return None,
        })
    }

    async fn describe(&self, args: &Value, now: Millis) -> Result<Value, String> {
        let (ar, namespaced) = resource(arg_str(args, "kind").ok_or("give the object's `kind`")?)?;
        let name = object_name("name", arg_str(args, "name"))?;
        let ns = self.namespace(args)?;
        let api = self.dynamic(&ar, namespaced, ns);
        let Some(object) = api.get_opt(name).await.map_err(api_error)? else {
            // The names that do exist, so that the next call can pick one.
            let names: Vec<String> = api
                .list(&ListParams::default().limit(30))
                .await
                .map_err(api_error)?
                .items
                .into_iter()
                .filter_map(|o| o.metadata.name)
                .collect();
            let place = if namespaced {
                format!(" in namespace {ns}")
            } else {
                String::new()
            };
            return Err(format!(
                "there is no {} {name:?}{place}; there are: {}",
                ar.kind,
                names.join(", ")
            ));
        };
        let fields = format!("involvedObject.name={name},involvedObject.kind={}", ar.kind);
        let events = self
            .list_events(namespaced.then_some(ns), &fields, now - 86_400_000, 20)
            .await?;
        let object = serde_json::to_value(object).unwrap_or_default();
        Ok(json!({"object": k8s::describe_view(object), "events": events}))
    }

    async fn events(&self, args: &Value, now: Millis) -> Result<Value, String> {
        let ns = match arg_str(args, "namespace") {
            Some(ns) => Some(object_name("namespace", Some(ns))?),
            None => self.namespace.as_deref(),
        };
        let mut fields = Vec::new();
        if let Some(name) = arg_str(args, "name") {
            fields.push(format!(
                "involvedObject.name={}",
                object_name("name", Some(name))?
            ));
        }
        if let Some(kind) = arg_str(args, "kind") {
            fields.push(format!("involvedObject.kind={}", resource(kind)?.0.kind));
        }
        match arg_str(args, "type") {
            Some(t @ ("Warning" | "Normal")) => fields.push(format!("type={t}")),
            Some(other) => return Err(format!("`type` is Warning or Normal, not {other:?}")),
            None => {}
        }
        let since = super::since(args, now, 60.0);
        let limit = arg_num(args, "limit").unwrap_or(30.0).clamp(1.0, 100.0) as usize;
        Ok(json!(
            self.list_events(ns, &fields.join(","), since, limit)
                .await?
        ))
    }

    /// Events matching `fields` since `since`, newest first.
    async fn list_events(
        &self,
        ns: Option<&str>,
        fields: &str,
        since: Millis,
        limit: usize,
    ) -> Result<Vec<Value>, String> {
        let api: Api<K8sEvent> = match ns {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut lp = ListParams::default().limit(500);
        if !fields.is_empty() {
            lp = lp.fields(fields);
        }
        let mut events: Vec<(Millis, K8sEvent)> = api
            .list(&lp)
            .await
            .map_err(api_error)?
            .items
            .into_iter()
            .filter_map(|e| Some((k8s::event_time(&e)?, e)))
            .filter(|(ts, _)| *ts >= since)
            .collect();
        events.sort_by_key(|(ts, _)| std::cmp::Reverse(*ts));
        Ok(events
            .iter()
            .take(limit)
            .map(|(_, e)| k8s::event_view(e))
            .collect())
    }

    async fn logs(&self, args: &Value) -> Result<Value, String> {
        let name = object_name("pod", arg_str(args, "pod"))?;
        let ns = self.namespace(args)?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pod = match pods.get_opt(name).await.map_err(api_error)? {
            Some(p) => p,
            None => self.busiest_pod(&pods, ns, name).await?,
        };
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let (container, crashed) = k8s::log_target(&pod, arg_str(args, "container"))?;
        let previous = match args.get("previous") {
            Some(Value::Bool(b)) => *b,
            _ => crashed,
        };
        let lines = arg_num(args, "tail_lines")
            .unwrap_or(100.0)
            .clamp(1.0, MAX_LOG_LINES) as i64;
        let since_seconds =
            arg_num(args, "minutes").map(|m| (m.clamp(1.0, 10_080.0) * 60.0) as i64);
        let text = pods
            .logs(
                &pod_name,
                &LogParams {
                    container: Some(container.clone()),
                    previous,
                    tail_lines: Some(lines),
                    since_seconds,
                    limit_bytes: Some(MAX_LOG_BYTES),
                    timestamps: true,
                    ..LogParams::default()
                },
            )
            .await
            .map_err(api_error)?;
        Ok(json!({
            "pod": pod_name,
            "namespace": ns,
            "container": container,
            "previous": previous,
            "restarts": k8s::pod_restart_count(&pod),
            "lines": text.lines().collect::<Vec<_>>(),
        }))
    }

    /// The pod of workload `name` (a Deployment, StatefulSet or DaemonSet) that restarted most.
    async fn busiest_pod(&self, pods: &Api<Pod>, ns: &str, name: &str) -> Result<Pod, String> {
        let mut selector = None;
        for ar in [
            ApiResource::erase::<Deployment>(&()),
            ApiResource::erase::<StatefulSet>(&()),
            ApiResource::erase::<DaemonSet>(&()),
        ] {
            if let Some(w) = self
                .dynamic(&ar, true, ns)
                .get_opt(name)
                .await
                .map_err(api_error)?
            {
                selector =
                    serde_json::from_value::<LabelSelector>(w.data["spec"]["selector"].clone())
                        .ok()
                        .and_then(|l| Selector::try_from(l).ok())
                        .map(|s| s.to_string())
                        .filter(|s| !s.is_empty());
                break;
            }
        }
        let Some(selector) = selector else {
            return Err(format!(
                "there is no pod, Deployment, StatefulSet or DaemonSet {name:?} in namespace {ns}"
            ));
        };
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_error)?
            .items;
        list.into_iter()
            .max_by_key(|p| {
                (
                    k8s::pod_restart_count(p),
                    std::cmp::Reverse(p.metadata.name.clone()),
                )
            })
            .ok_or_else(|| format!("{name} in namespace {ns} has no pods ({selector})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_names_are_checked_before_anything_is_asked() {
        assert_eq!(resource("Deploy").unwrap().0.kind, "Deployment");
        assert!(!resource("node").unwrap().1);
        assert!(resource("secret").unwrap_err().contains("never read"));
        assert!(resource("widget").unwrap_err().contains("pod, deployment"));
        assert_eq!(
            object_name("name", Some("checkout-7d9f.x")),
            Ok("checkout-7d9f.x")
        );
        for bad in ["../secrets", "Checkout", "a b", "-x", "x/y", ""] {
            assert!(object_name("name", Some(bad)).is_err(), "{bad:?}");
        }
    }
}
