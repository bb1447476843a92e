//! The Kubernetes provider: the `kubernetes.*` steps of a runbook, carried out through the
//! Kubernetes API the way `kubectl` would (`rollout restart`, `scale`, `rollout undo`, `set
//! resources`, `cordon`, `drain`, `delete pod`).
//!
//! Every argument that names something (namespace, deployment, container, pod, node) is checked
//! against Kubernetes' own name grammar before any request is made, so a rendered template can
//! never smuggle a path, a selector or an option into a request: a bad name is refused with
//! nothing sent. Every write carries the configured field manager (`fieldManager=...`), so the
//! cluster's managed fields show which changes Nightshift made.
//!
//! What a call gives back ([`StepOutcome::request`], [`StepError::request`]) is the write it
//! made, as `{"method", "path", "field_manager", "patch_type", "body"}` (`patch_type` is
//! `strategic`, `merge` or `json`); `kubernetes.drain`, which makes several writes, gives the list
//! of them. When a read fails before any write, the read is given instead (`{"method": "GET",
//! "path", "query"}`).

use crate::provider::{StepError, StepOutcome, required, text_arg};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod, ResourceRequirements};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Selector;
use kube::{Resource, ResourceExt};
use nightshift_core::resource::{is_k8s_label, is_k8s_name};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The annotation `kubectl rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The annotation the deployment controller keeps the revision in, on Deployments and their
/// ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label the deployment controller adds to each ReplicaSet's pod template.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation that marks a mirror pod (a static pod as the kubelet shows it in the API).
pub const MIRROR_POD: &str = "kubernetes.io/config.mirror";

/// The longest field manager the API server accepts.
const FIELD_MANAGER_MAX: usize = 128;

/// The Kubernetes provider: a client and the field manager its writes are made as.
#[derive(Clone)]
pub struct Kubernetes {
    client: kube::Client,
    field_manager: String,
}

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

impl Kubernetes {
    /// A provider that talks to the cluster through `client` and makes every write as
    /// `field_manager` (e.g. `"nightshift"`). A field manager the API server would reject
    /// (empty, longer than 128 characters, or holding a control character) makes every call
    /// refused.
    ///
    /// kube's default client (`Config::default_retry`) retries answers 429, 503 and 504 up to
    /// 15 times with an exponential backoff, minutes in all: an eviction a
    /// PodDisruptionBudget refuses is then tried again for that long, as `kubectl drain` does,
    /// before the drain reports it. A client built with `default_retry = false` reports it at
    /// once.
    pub fn new(client: kube::Client, field_manager: impl Into<String>) -> Self {
        Self {
            client,
            field_manager: field_manager.into(),
        }
    }

    /// Runs provider `uses` (`kubernetes.rollout_restart`, `kubernetes.scale`,
    /// `kubernetes.rollback`, `kubernetes.patch_resources`, `kubernetes.cordon`,
    /// `kubernetes.drain`, `kubernetes.delete_pod`) with its rendered arguments `with`, a JSON
    /// object whose values are mostly strings (`replicas: "4"`).
    pub async fn call(&self, uses: &str, with: &Value) -> Result<StepOutcome, StepError> {
        let fm = &self.field_manager;
        if fm.is_empty()
            || fm.chars().count() > FIELD_MANAGER_MAX
            || fm.chars().any(char::is_control)
        {
            return Err(StepError::refused(format!(
                "the field manager {fm:?} is not one the Kubernetes API accepts (1 to \
                 {FIELD_MANAGER_MAX} printable characters)"
            )));
        }
        match uses {
            "kubernetes.rollout_restart" => self.rollout_restart(with).await,
            "kubernetes.scale" => self.scale(with).await,
            "kubernetes.rollback" => self.rollback(with).await,
            "kubernetes.patch_resources" => self.patch_resources(with).await,
            "kubernetes.cordon" => self.cordon(with).await,
            "kubernetes.drain" => self.drain(with).await,
            "kubernetes.delete_pod" => self.delete_pod(with).await,
            other => Err(StepError::refused(format!(
                "no Kubernetes provider {other:?}; there are kubernetes.rollout_restart, \
                 kubernetes.scale, kubernetes.rollback, kubernetes.patch_resources, \
                 kubernetes.cordon, kubernetes.drain and kubernetes.delete_pod"
            ))),
        }
    }

    /// Like `kubectl rollout restart`: a strategic merge patch that stamps the pod template
    /// with the time, so the Deployment rolls out new pods. A paused Deployment is refused, as
    /// kubectl refuses it (the patch would not roll anything until it is resumed).
    async fn rollout_restart(&self, with: &Value) -> Result<StepOutcome, StepError> {
        let (ns, name) = (label_arg(with, "namespace")?, name_arg(with, "deployment")?);
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let path = object_path::<Deployment>(Some(&ns), &name);
        let current = api
            .get(&name)
            .await
            .map_err(|e| failure(read(&path, None), "read", &deployment(&ns, &name), e))?;
        if paused(&current) {
            return Err(StepError::failed(
                read(&path, None),
                format!(
                    "deployment {ns}/{name} is paused; resume it before restarting it (a paused \
                     Deployment rolls nothing out)"
                ),
            ));
        }
        let now = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let body =
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
        let request = self.write("PATCH", &path, Some("strategic"), &body);
        api.patch(&name, &self.patch_params(), &Patch::Strategic(&body))
            .await
            .map_err(|e| failure(request.clone(), "patch", &deployment(&ns, &name), e))?;
        Ok(StepOutcome {
            request,
            output: json!({"restarted_at": now}),
        })
    }

    /// Like `kubectl scale`, within bounds: reads the scale subresource, changes the count by
    /// `by` (`+2`, `-1`) from what it reads, or sets `replicas` (a count recorded before, which
    /// a rollback restores), clamps it into `[min, max]`, and sets it with a merge patch of the
    /// scale subresource (which is what HorizontalPodAutoscalers and kubectl change too). The
    /// count read is reported as `previous`.
    async fn scale(&self, with: &Value) -> Result<StepOutcome, StepError> {
        let (ns, name) = (label_arg(with, "namespace")?, name_arg(with, "deployment")?);
        let by = change_arg(with, "by")?;
        let asked = whole_arg(with, "replicas")?;
        let (min, max) = (whole_arg(with, "min")?, whole_arg(with, "max")?);
        match (by, asked, max) {
            (Some(_), Some(_), _) => {
                return Err(StepError::refused(
                    "give by (a change) or replicas (a count), not both",
                ));
            }
            (None, None, _) => {
                return Err(StepError::refused(
                    "give by (a change, such as \"+2\") or replicas (a count recorded before)",
                ));
            }
            (Some(_), None, None) => {
                return Err(StepError::refused(
                    "scaling by a change needs max, the most replicas it may reach",
                ));
            }
            _ => {}
        }
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return Err(StepError::refused(format!(
                "min ({min}) is above max ({max})"
            )));
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let path = format!("{}/scale", object_path::<Deployment>(Some(&ns), &name));
        let scale = api.get_scale(&name).await.map_err(|e| {
            failure(
                read(&path, None),
                "read the scale of",
                &deployment(&ns, &name),
                e,
            )
        })?;
        let previous = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
        let target = by
            .map_or(asked.unwrap_or(previous), |d| previous.saturating_add(d))
            .clamp(min.unwrap_or(0), max.unwrap_or(i32::MAX));
        let body = json!({"spec": {"replicas": target}});
        let request = self.write("PATCH", &path, Some("merge"), &body);
        api.patch_scale(&name, &self.patch_params(), &Patch::Merge(&body))
            .await
            .map_err(|e| failure(request.clone(), "scale", &deployment(&ns, &name), e))?;
        Ok(StepOutcome {
            request,
            output: json!({"previous": previous, "replicas": target}),
        })
    }

    /// Like `kubectl rollout undo`: finds the Deployment's ReplicaSets (those its selector
    /// matches and that it controls, by owner UID), takes the one with the highest revision
    /// below the Deployment's own, and puts that ReplicaSet's pod template back without its
    /// `pod-template-hash` label. The template is replaced whole with a JSON patch
    /// (`replace /spec/template`), as kubectl does: a strategic merge would keep containers,
    /// variables and annotations the current template added.
    async fn rollback(&self, with: &Value) -> Result<StepOutcome, StepError> {
        let (ns, name) = (label_arg(with, "namespace")?, name_arg(with, "deployment")?);
        let what = deployment(&ns, &name);
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let path = object_path::<Deployment>(Some(&ns), &name);
        let current = deployments
            .get(&name)
            .await
            .map_err(|e| failure(read(&path, None), "read", &what, e))?;
        if paused(&current) {
            return Err(StepError::failed(
                read(&path, None),
                format!("{what} is paused; resume it before rolling it back, as kubectl requires"),
            ));
        }
        let uid = current.metadata.uid.clone().unwrap_or_default();
        let selector = Selector::try_from(current.spec.selector.clone()).map_err(|e| {
            StepError::failed(
                read(&path, None),
                format!("{what} has a selector that cannot be used: {e}"),
            )
        })?;
        if selector.selects_all() {
            return Err(StepError::failed(
                read(&path, None),
                format!("{what} has an empty selector to find its ReplicaSets by"),
            ));
        }
        let replica_sets: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);
        let list_path = ReplicaSet::url_path(&(), Some(&ns));
        let list_query = format!("labelSelector={selector}");
        let owned: Vec<ReplicaSet> = replica_sets
            .list(&ListParams::default().labels_from(&selector))
            .await
            .map_err(|e| {
                failure(
                    read(&list_path, Some(&list_query)),
                    "list the ReplicaSets of",
                    &what,
                    e,
                )
            })?
            .items
            .into_iter()
            .filter(|rs| {
                !uid.is_empty()
                    && rs.owner_references().iter().any(|o| {
                        o.uid == uid && o.controller == Some(true) && o.kind == "Deployment"
                    })
            })
            .collect();
        let revisions: Vec<(i64, ReplicaSet)> = owned
            .into_iter()
            .filter_map(|rs| revision(rs.annotations()).map(|r| (r, rs)))
            .collect();
        // The Deployment's own annotation says which revision runs; when it is missing (the
        // controller has not seen the Deployment yet), the newest ReplicaSet is taken as current.
        let from = revision(current.annotations())
            .or_else(|| revisions.iter().map(|(r, _)| *r).max())
            .ok_or_else(|| {
                StepError::failed(
                    read(&list_path, Some(&list_query)),
                    format!("{what} has no revisions, so there is nothing to roll back to"),
                )
            })?;
        let (to, earlier) = revisions
            .into_iter()
            .filter(|(r, _)| *r < from)
            .max_by_key(|(r, _)| *r)
            .ok_or_else(|| {
                StepError::failed(
                    read(&list_path, Some(&list_query)),
                    format!(
                        "{what} has no revision before {from} to roll back to (no ReplicaSet it \
                         owns has a lower {REVISION})"
                    ),
                )
            })?;
        let mut template = earlier.spec.template.ok_or_else(|| {
            StepError::failed(
                read(&list_path, Some(&list_query)),
                format!("the ReplicaSet of revision {to} of {what} has no pod template"),
            )
        })?;
        if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH);
        }
        let template = serde_json::to_value(&template).map_err(|e| {
            StepError::refused(format!(
                "cannot encode the pod template of revision {to}: {e}"
            ))
        })?;
        let body = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
        let request = self.write("PATCH", &path, Some("json"), &body);
        // `Patch::Json` comes with kube's `jsonpatch` feature, which its `runtime` feature
        // turns on.
        let patch = serde_json::from_value(body.clone())
            .map_err(|e| StepError::refused(format!("cannot build the JSON patch: {e}")))?;
        deployments
            .patch(&name, &self.patch_params(), &Patch::Json::<()>(patch))
            .await
            .map_err(|e| failure(request.clone(), "roll back", &what, e))?;
        Ok(StepOutcome {
            request,
            output: json!({"from_revision": from, "to_revision": to}),
        })
    }

    /// Like `kubectl set resources`: a strategic merge patch of one container's limits and
    /// requests, the container picked by name (the merge key of `containers`), so the other
    /// containers and the values not given stay as they are. The quantities are checked first,
    /// and so is the result: a request above its limit is refused here rather than by the API
    /// server, and so is a zero limit (most likely a template that rendered nothing).
    async fn patch_resources(&self, with: &Value) -> Result<StepOutcome, StepError> {
        let (ns, name) = (label_arg(with, "namespace")?, name_arg(with, "deployment")?);
        let container = label_arg(with, "container")?;
        let mut changes: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
        for (arg, kind, resource) in [
            ("memory_limit", "limits", "memory"),
            ("memory_request", "requests", "memory"),
            ("cpu_limit", "limits", "cpu"),
            ("cpu_request", "requests", "cpu"),
        ] {
            let Some(q) = text_arg(with, arg).filter(|q| !q.is_empty()) else {
                continue;
            };
            match quantity_value(&q) {
                None => {
                    return Err(StepError::refused(format!(
                        "argument {arg} {q:?} is not a Kubernetes quantity (like 768Mi, 1Gi, 500m \
                         or 2)"
                    )));
                }
                Some(v) if v == 0.0 && kind == "limits" => {
                    return Err(StepError::refused(format!(
                        "argument {arg} {q:?} is zero, which is no usable limit"
                    )));
                }
                Some(_) => {}
            }
            changes.entry(kind).or_default().insert(resource, q);
        }
        let factor = factor_arg(with)?;
        if changes.is_empty() && factor.is_none() {
            return Err(StepError::refused(
                "nothing to change: give at least one of memory_limit, memory_limit_factor, \
                 memory_request, cpu_limit, cpu_request",
            ));
        }
        let what = deployment(&ns, &name);
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let path = object_path::<Deployment>(Some(&ns), &name);
        let current = api
            .get(&name)
            .await
            .map_err(|e| failure(read(&path, None), "read", &what, e))?;
        let containers = current
            .spec
            .template
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        let Some(found) = containers.iter().find(|c| c.name == container) else {
            let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
            return Err(StepError::failed(
                read(&path, None),
                format!(
                    "{what} has no container {container:?} (its containers: {})",
                    names.join(", ")
                ),
            ));
        };
        let old = found.resources.clone().unwrap_or_default();
        if let Some((factor, cap)) = factor {
            let raised = raise_memory(&old, factor, cap)
                .map_err(|why| StepError::failed(read(&path, None), format!("{what}: {why}")))?;
            changes
                .entry("limits")
                .or_default()
                .insert("memory", raised);
        }
        for resource in ["memory", "cpu"] {
            let limit = changes
                .get("limits")
                .and_then(|m| m.get(resource).cloned())
                .or_else(|| existing(&old, "limits", resource));
            let request = changes
                .get("requests")
                .and_then(|m| m.get(resource).cloned())
                .or_else(|| existing(&old, "requests", resource));
            if let (Some(l), Some(r)) = (&limit, &request)
                && let (Some(lv), Some(rv)) = (quantity_value(l), quantity_value(r))
                && rv > lv
            {
                return Err(StepError::failed(
                    read(&path, None),
                    format!(
                        "container {container:?} of {what} would have a {resource} request ({r}) \
                         above its limit ({l}), which Kubernetes rejects"
                    ),
                ));
            }
        }
        let previous = serde_json::to_value(&old).unwrap_or_else(|_| json!({}));
        let body = json!({"spec": {"template": {"spec": {"containers": [
            {"name": container, "resources": changes}
        ]}}}});
        let request = self.write("PATCH", &path, Some("strategic"), &body);
        let patched = api
            .patch(&name, &self.patch_params(), &Patch::Strategic(&body))
            .await
            .map_err(|e| failure(request.clone(), "patch", &what, e))?;
        let now = patched
            .spec
            .template
            .spec
            .and_then(|s| s.containers.into_iter().find(|c| c.name == container))
            .and_then(|c| c.resources)
            .and_then(|r| serde_json::to_value(r).ok())
            .unwrap_or_else(|| json!({}));
        Ok(StepOutcome {
            request,
            output: json!({"previous": previous, "resources": now}),
        })
    }

    /// Like `kubectl cordon`: marks the node unschedulable with a merge patch.
    async fn cordon(&self, with: &Value) -> Result<StepOutcome, StepError> {
        let node = name_arg(with, "node")?;
        let (request, was) = self.cordon_node(&node).await?;
        Ok(StepOutcome {
            request,
            output: json!({"was_unschedulable": was}),
        })
    }

    /// Reads the node (to tell whether it was cordoned already), then cordons it. Gives the
    /// patch sent and whether the node was unschedulable before.
    async fn cordon_node(&self, node: &str) -> Result<(Value, bool), StepError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let path = object_path::<Node>(None, node);
        let what = format!("node {node}");
        let current = api
            .get(node)
            .await
            .map_err(|e| failure(read(&path, None), "read", &what, e))?;
        let was = current.spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let body = json!({"spec": {"unschedulable": true}});
        let request = self.write("PATCH", &path, Some("merge"), &body);
        api.patch(node, &self.patch_params(), &Patch::Merge(&body))
            .await
            .map_err(|e| failure(request.clone(), "cordon", &what, e))?;
        Ok((request, was))
    }

    /// Like `kubectl drain`: cordons the node, then evicts its pods one by one through the
    /// Eviction API, which honours PodDisruptionBudgets. DaemonSet pods (their controller would
    /// only put them back), mirror pods (the kubelet owns them), pods that have finished and
    /// pods already being deleted are skipped. A pod whose eviction a PodDisruptionBudget
    /// refuses (429) does not stop the others; the call then fails, naming every such pod,
    /// and leaves the node cordoned. The pods are taken in namespace and name order.
    async fn drain(&self, with: &Value) -> Result<StepOutcome, StepError> {
        let node = name_arg(with, "node")?;
        let grace = whole_arg(with, "grace_period_seconds")?;
        let (cordon, _) = self.cordon_node(&node).await.map_err(|mut e| {
            e.request = e.request.map(|r| Value::Array(vec![r]));
            e
        })?;
        let mut requests = vec![cordon];

        let pods: Api<Pod> = Api::all(self.client.clone());
        let selector = format!("spec.nodeName={node}");
        let list_path = Pod::url_path(&(), None);
        let listed = pods
            .list(&ListParams::default().fields(&selector))
            .await
            .map_err(|e| {
                requests.push(read(&list_path, Some(&format!("fieldSelector={selector}"))));
                failure(
                    Value::Array(requests.clone()),
                    "list the pods of",
                    &format!("node {node}"),
                    e,
                )
            })?;
        let mut items = listed.items;
        items.sort_by_key(|p| (p.namespace().unwrap_or_default(), p.name_any()));

        let (mut evicted, mut skipped, mut blocked) = (Vec::new(), Vec::new(), Vec::new());
        for pod in items {
            let ns = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            let id = format!("{ns}/{name}");
            if let Some(reason) = skip_reason(&pod) {
                skipped.push(json!({"pod": id, "reason": reason}));
                continue;
            }
            // Names read from the API server are checked like arguments: they go into paths.
            if !is_k8s_label(&ns) || !is_k8s_name(&name) {
                skipped.push(json!({"pod": id, "reason": "not a valid pod name"}));
                continue;
            }
            // The Eviction is built and posted as the API defines it (`deleteOptions`), rather
            // than through `Api::evict`, whose body names the field `delete_options`, which the
            // API server drops, losing the grace period.
            let eviction = Eviction {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..ObjectMeta::default()
                },
                delete_options: grace.map(|g| DeleteOptions {
                    grace_period_seconds: Some(i64::from(g)),
                    ..DeleteOptions::default()
                }),
            };
            let body = serde_json::to_value(&eviction).unwrap_or(Value::Null);
            let path = format!("{}/eviction", object_path::<Pod>(Some(&ns), &name));
            requests.push(self.write("POST", &path, None, &body));
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let sent: Result<Value, kube::Error> = api
                .create_subresource("eviction", &name, &self.post_params(), &eviction)
                .await;
            match sent {
                Ok(_) => evicted.push(json!(id)),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    skipped.push(json!({"pod": id, "reason": "already gone"}));
                }
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    blocked.push(format!("{id} ({})", s.message));
                }
                Err(e) => {
                    return Err(failure(
                        Value::Array(requests),
                        "evict",
                        &format!("pod {id} from node {node}"),
                        e,
                    ));
                }
            }
        }
        if !blocked.is_empty() {
            return Err(StepError::failed(
                Value::Array(requests),
                format!(
                    "node {node} is cordoned but not drained: a PodDisruptionBudget refused the \
                     eviction of pod {} (429); evicted: [{}]",
                    blocked.join(", pod "),
                    evicted
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(StepOutcome {
            request: Value::Array(requests),
            output: json!({"evicted": evicted, "skipped": skipped}),
        })
    }

    /// Like `kubectl delete pod`: deletes it with its own grace period. A DELETE carries no
    /// field manager: the Kubernetes API takes none for deletions.
    async fn delete_pod(&self, with: &Value) -> Result<StepOutcome, StepError> {
        let (ns, name) = (label_arg(with, "namespace")?, name_arg(with, "pod")?);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let params = DeleteParams::default();
        let request = json!({
            "method": "DELETE",
            "path": object_path::<Pod>(Some(&ns), &name),
            "body": serde_json::to_value(&params).unwrap_or_else(|_| json!({})),
        });
        api.delete(&name, &params)
            .await
            .map_err(|e| failure(request.clone(), "delete", &format!("pod {ns}/{name}"), e))?;
        Ok(StepOutcome {
            request,
            output: json!({"deleted": name}),
        })
    }

    fn patch_params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        }
    }

    fn post_params(&self) -> PostParams {
        PostParams {
            field_manager: Some(self.field_manager.clone()),
            ..PostParams::default()
        }
    }

    /// The record of a write: method, path, field manager, patch type (for a PATCH) and body.
    fn write(&self, method: &str, path: &str, patch_type: Option<&str>, body: &Value) -> Value {
        let mut r = Map::new();
        r.insert("method".into(), json!(method));
        r.insert("path".into(), json!(path));
        r.insert("field_manager".into(), json!(self.field_manager));
        if let Some(t) = patch_type {
            r.insert("patch_type".into(), json!(t));
        }
        r.insert("body".into(), body.clone());
        Value::Object(r)
    }
}

/// The record of a read: a GET of `path`, with its query when it has one.
fn read(path: &str, query: Option<&str>) -> Value {
    match query {
        Some(q) => json!({"method": "GET", "path": path, "query": q}),
        None => json!({"method": "GET", "path": path}),
    }
}

/// The API path of object `name` of kind `K`, as kube builds it.
fn object_path<K: Resource<DynamicType = ()>>(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", K::url_path(&(), namespace))
}

fn deployment(ns: &str, name: &str) -> String {
    format!("deployment {ns}/{name}")
}

/// A failed request, described for whoever reads the audit log: a 404 says what is missing;
/// any other answer gives the API server's code, reason and message.
fn failure(request: Value, action: &str, what: &str, e: kube::Error) -> StepError {
    let message = match &e {
        kube::Error::Api(s) if s.code == 404 => {
            format!("{what} does not exist (404 NotFound: {})", s.message)
        }
        kube::Error::Api(s) => format!(
            "cannot {action} {what}: the API server answered {} {}: {}",
            s.code, s.reason, s.message
        ),
        other => format!("cannot {action} {what}: {other}"),
    };
    StepError::failed(request, message)
}

/// What a dry run can check of step `uses` without a cluster: that it is a Kubernetes provider,
/// and that every name, number and quantity it would send is one the API accepts.
pub fn check(uses: &str, with: &Value) -> Result<(), StepError> {
    let known = crate::runbook::PROVIDERS
        .iter()
        .any(|(name, ..)| *name == uses && name.starts_with("kubernetes."));
    if !known {
        return Err(StepError::refused(format!(
            "no Kubernetes provider {uses:?}"
        )));
    }
    let given = |k: &str| with.get(k).is_some_and(|v| !v.is_null());
    for key in ["deployment", "node", "pod"]
        .into_iter()
        .filter(|k| given(k))
    {
        name_arg(with, key)?;
    }
    for key in ["namespace", "container"].into_iter().filter(|k| given(k)) {
        label_arg(with, key)?;
    }
    for key in ["replicas", "min", "max", "grace_period_seconds"] {
        whole_arg(with, key)?;
    }
    change_arg(with, "by")?;
    factor_arg(with)?;
    for key in ["memory_limit", "memory_request", "cpu_limit", "cpu_request"] {
        if let Some(q) = text_arg(with, key).filter(|q| !q.is_empty())
            && quantity_value(&q).is_none()
        {
            return Err(StepError::refused(format!(
                "argument {key} {q:?} is not a Kubernetes quantity (like 768Mi, 1Gi, 500m or 2)"
            )));
        }
    }
    Ok(())
}

/// Argument `key`, which must be a Kubernetes object name (deployment, pod, node).
fn name_arg(with: &Value, key: &str) -> Result<String, StepError> {
    let v = required(with, key)?;
    if is_k8s_name(&v) {
        Ok(v)
    } else {
        Err(StepError::refused(format!(
            "argument {key} {v:?} is not a Kubernetes object name (lower-case letters, digits, \
             '-' and '.')"
        )))
    }
}

/// Argument `key`, which must be a Kubernetes label-like name (namespace, container).
fn label_arg(with: &Value, key: &str) -> Result<String, StepError> {
    let v = required(with, key)?;
    if is_k8s_label(&v) {
        Ok(v)
    } else {
        Err(StepError::refused(format!(
            "argument {key} {v:?} is not a Kubernetes name (lower-case letters, digits and '-', \
             at most 63)"
        )))
    }
}

/// Optional argument `key`, a whole number from 0 to 2147483647 given as text or as a number;
/// `None` when absent or empty.
fn whole_arg(with: &Value, key: &str) -> Result<Option<i32>, StepError> {
    let Some(raw) = with.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(text) = text_arg(with, key) else {
        return Err(StepError::refused(format!(
            "argument {key} must be a whole number, not {raw}"
        )));
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i32>() {
        Ok(n) if n >= 0 => Ok(Some(n)),
        _ => Err(StepError::refused(format!(
            "argument {key} {text:?} is not a whole number from 0 to {}",
            i32::MAX
        ))),
    }
}

/// Optional argument `key`, a change of a count: `+2`, `-1` or `2`; `None` when absent.
fn change_arg(with: &Value, key: &str) -> Result<Option<i32>, StepError> {
    let Some(text) = text_arg(with, key) else {
        return match with.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(raw) => Err(StepError::refused(format!(
                "argument {key} must be a change such as \"+2\", not {raw}"
            ))),
        };
    };
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    match digits.parse::<i32>() {
        Ok(n) if digits.bytes().all(|b| b.is_ascii_digit()) && n <= 1000 => {
            Ok(Some(if t.starts_with('-') { -n } else { n }))
        }
        _ => Err(StepError::refused(format!(
            "argument {key} {t:?} is not a change such as \"+2\" or \"-1\" (at most 1000)"
        ))),
    }
}

/// `memory_limit_factor` and its cap `memory_limit_max` (bytes), when given.
fn factor_arg(with: &Value) -> Result<Option<(f64, f64)>, StepError> {
    let Some(text) = text_arg(with, "memory_limit_factor").filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let factor: f64 = text
        .trim()
        .parse()
        .ok()
        .filter(|f: &f64| f.is_finite() && *f > 0.0 && *f <= 10.0)
        .ok_or_else(|| {
            StepError::refused(format!(
                "argument memory_limit_factor {text:?} is not a number above 0 and at most 10"
            ))
        })?;
    let cap_text = text_arg(with, "memory_limit_max").unwrap_or_default();
    let cap = quantity_value(cap_text.trim())
        .filter(|v| *v > 0.0)
        .ok_or_else(|| {
            StepError::refused(format!(
                "argument memory_limit_max {cap_text:?} is not a Kubernetes quantity above zero \
                 (like 4Gi); a factor needs its cap"
            ))
        })?;
    Ok(Some((factor, cap)))
}

/// The memory limit `factor` times the current one, at most `cap` bytes, in whole MiB.
fn raise_memory(old: &ResourceRequirements, factor: f64, cap: f64) -> Result<String, String> {
    const MIB: f64 = 1024.0 * 1024.0;
    let current = existing(old, "limits", "memory").ok_or(
        "the container has no memory limit to change by a factor; give memory_limit instead",
    )?;
    let bytes = quantity_value(&current)
        .ok_or_else(|| format!("its memory limit {current:?} is not a quantity"))?;
    let wanted = (bytes * factor).min(cap);
    let mib = (wanted / MIB).ceil();
    if (mib * MIB - bytes).abs() < MIB / 2.0 || (factor > 1.0 && mib * MIB <= bytes) {
        return Err(format!(
            "its memory limit is {current}, already at the cap of {} MiB: nothing to raise",
            (cap / MIB).floor()
        ));
    }
    Ok(format!("{mib}Mi"))
}

fn paused(d: &Deployment) -> bool {
    d.spec.paused.unwrap_or(false)
}

/// The revision an object's annotations give, when they give one.
fn revision(annotations: &BTreeMap<String, String>) -> Option<i64> {
    annotations.get(REVISION)?.trim().parse().ok()
}

/// The current `kind` (`limits` or `requests`) quantity of `resource`, when set.
fn existing(r: &ResourceRequirements, kind: &str, resource: &str) -> Option<String> {
    let map = if kind == "limits" {
        r.limits.as_ref()
    } else {
        r.requests.as_ref()
    };
    map?.get(resource).map(|q| q.0.clone())
}

/// Why `kubectl drain` would leave this pod alone, if it would.
fn skip_reason(pod: &Pod) -> Option<&'static str> {
    if pod.annotations().contains_key(MIRROR_POD) {
        return Some("mirror pod");
    }
    if pod
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.kind == "DaemonSet")
    {
        return Some("DaemonSet");
    }
    if matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    ) {
        return Some("finished");
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("already terminating");
    }
    None
}

/// The value of a Kubernetes quantity in its base unit (bytes, cores), or `None` when `s` is not
/// a non-negative quantity: digits with at most one `.`, then nothing, a decimal suffix (`m`, `k`,
/// `M`, `G`, `T`, `P`, `E`), a binary one (`Ki` … `Ei`) or an exponent (`e3`, `E-2`).
pub fn quantity_value(s: &str) -> Option<f64> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if !number.bytes().any(|b| b.is_ascii_digit()) || number.matches('.').count() > 1 {
        return None;
    }
    let base: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exponent = &e[1..];
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(exponent.parse::<i32>().ok()?)
        }
        _ => return None,
    };
    Some(base * scale).filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::quantity_value;

    #[test]
    fn quantities() {
        for (q, v) in [
            ("768Mi", 768.0 * 1024.0 * 1024.0),
            ("500m", 0.5),
            ("2", 2.0),
            ("1.5Gi", 1.5 * 1024f64.powi(3)),
            (".5", 0.5),
            ("5.", 5.0),
            ("1k", 1000.0),
            ("1E", 1e18),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("0", 0.0),
        ] {
            assert_eq!(quantity_value(q), Some(v), "{q}");
        }
        for q in [
            "", "Mi", ".", "1..5", "-1", "+1", "1 Mi", "1mi", "1MB", "1e", "1e+", "1ee3", "1Gi;",
            "$(id)", "1\n", "1e1.5",
        ] {
            assert_eq!(quantity_value(q), None, "{q:?}");
        }
    }
}
