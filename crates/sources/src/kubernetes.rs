//! `kubernetes:` in the configuration: watches Pods, Events, Deployments and Nodes through the
//! cluster's API server (the `kube` crate's watcher, which lists, then watches and re-lists
//! after a gap) and hands what they say to the pipeline thread: pod placement for the topology,
//! restarts and node readiness as events, rollouts and scaling as changes (stored first), and
//! the cluster's own Warning and Normal events. The mapping lives in
//! `nightshift_ingest::kubernetes`; this is the I/O around it.

use crate::{Deliver, SourceError};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event as K8sEvent, Node, Pod};
use kube::runtime::watcher::{self, Event as Watched};
use kube::{Api, Client};
use nightshift_core::{Change, Event};
use nightshift_ingest::kubernetes as k8s;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The cluster to watch (`kubernetes:`); present means on.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Only this namespace's pods, events and deployments (nodes are cluster-wide); all when unset.
    pub namespace: Option<String>,
    /// A kubeconfig file; by default the in-cluster service account or `$KUBECONFIG`.
    pub kubeconfig: Option<String>,
}

/// A client of the configured cluster: a kubeconfig file, else in-cluster or `$KUBECONFIG`.
pub async fn client(k: &KubernetesConfig) -> Result<Client, SourceError> {
    let config = match &k.kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                SourceError::KubeconfigUnreadable {
                    path: path.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| SourceError::KubeconfigContext {
                    path: path.clone(),
                    source,
                })?
        }
        None => kube::Config::infer()
            .await
            .map_err(SourceError::NoCluster)?,
    };
    Client::try_from(config).map_err(SourceError::Client)
}

/// What the watchers found, for the pipeline thread.
#[derive(Debug, Default)]
pub struct ClusterNews {
    pub placements: Vec<(String, String)>,
    /// Where services run (namespace, Deployment), from their pods.
    pub workloads: Vec<k8s::PodWorkload>,
    pub events: Vec<Event>,
    pub changes: Vec<Change>,
}

impl ClusterNews {
    pub fn is_empty(&self) -> bool {
        self.placements.is_empty()
            && self.workloads.is_empty()
            && self.events.is_empty()
            && self.changes.is_empty()
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs every watcher until the pipeline is gone. A watcher error (the API server away, a
/// permission missing) is logged and retried by the watcher's own backoff.
pub async fn run(client: Client, namespace: Option<String>, deliver: Deliver<ClusterNews>) {
    let services: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let ns = namespace.as_deref();
    let pods = watch_pods(api::<Pod>(&client, ns), services.clone(), deliver.clone());
    let events = watch_events(api::<K8sEvent>(&client, ns), services, deliver.clone());
    let deployments = watch_deployments(api::<Deployment>(&client, ns), deliver.clone());
    let nodes = watch_nodes(Api::<Node>::all(client.clone()), deliver);
    tokio::join!(pods, events, deployments, nodes);
}

/// A watcher's stream with the backoff kube recommends, logging its errors.
fn stream<K>(api: Api<K>, what: &'static str) -> impl futures_util::Stream<Item = Watched<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    use kube::runtime::WatchStreamExt;
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .inspect_err(move |e| tracing::warn!(error = %e, what, "Kubernetes watch failed; retrying"))
        .filter_map(|r| async move { r.ok() })
}

fn applied<K>(e: Watched<K>) -> Option<K> {
    match e {
        Watched::Apply(k) | Watched::InitApply(k) => Some(k),
        _ => None,
    }
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

/// Watches one kind of object and delivers what `news_of` makes of each change: given the
/// object's previous version when `remember` keeps them (pods, deployments, nodes), never for
/// events, which are news once.
async fn watch<K>(
    api: Api<K>,
    what: &'static str,
    remember: bool,
    deliver: Deliver<ClusterNews>,
    mut news_of: impl FnMut(Option<&K>, &K) -> ClusterNews,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let mut seen: HashMap<String, K> = HashMap::new();
    let mut s = std::pin::pin!(stream(api, what));
    while let Some(e) = s.next().await {
        let Some(obj) = applied(e) else { continue };
        let k = key(obj.meta());
        let news = news_of(seen.get(&k), &obj);
        if remember {
            seen.insert(k, obj);
        }
        if !news.is_empty() && !deliver(news).await {
            return;
        }
    }
}

async fn watch_pods(
    api: Api<Pod>,
    services: Arc<Mutex<HashMap<String, String>>>,
    deliver: Deliver<ClusterNews>,
) {
    watch(api, "pods", true, deliver, |before, pod| {
        let mut news = ClusterNews::default();
        if let Some(placement) = k8s::pod_placement(pod) {
            if let (Some(name), Ok(mut m)) = (pod.metadata.name.clone(), services.lock()) {
                m.insert(name, placement.0.clone());
            }
            news.placements.push(placement);
        }
        news.workloads.extend(k8s::pod_workload(pod));
        news.events = k8s::pod_restarts(before, pod, crate::now_ms());
        news
    })
    .await;
}

async fn watch_events(
    api: Api<K8sEvent>,
    services: Arc<Mutex<HashMap<String, String>>>,
    deliver: Deliver<ClusterNews>,
) {
    let started = crate::now_ms();
    watch(api, "events", false, deliver, |_, ev| {
        let lookup = |pod: &str| services.lock().ok().and_then(|m| m.get(pod).cloned());
        // Events from before start-up are the cluster's history, not news.
        ClusterNews {
            events: k8s::cluster_event(ev, lookup)
                .filter(|e| e.ts >= started - 60_000)
                .into_iter()
                .collect(),
            ..ClusterNews::default()
        }
    })
    .await;
}

async fn watch_deployments(api: Api<Deployment>, deliver: Deliver<ClusterNews>) {
    watch(api, "deployments", true, deliver, |before, d| ClusterNews {
        changes: before
            .map(|b| k8s::deployment_changes(b, d, crate::now_ms()))
            .unwrap_or_default(),
        ..ClusterNews::default()
    })
    .await;
}

async fn watch_nodes(api: Api<Node>, deliver: Deliver<ClusterNews>) {
    watch(api, "nodes", true, deliver, |before, n| ClusterNews {
        events: k8s::node_readiness(before, n, crate::now_ms())
            .into_iter()
            .collect(),
        ..ClusterNews::default()
    })
    .await;
}
