//! Resource identity after OpenTelemetry semantic conventions, and the mapping from Prometheus labels.
//!
//! | Prometheus label | OTel attribute |
//! |---|---|
//! | `service` (or `job` when no `service` label) | `service.name` |
//! | `instance` | `service.instance.id` |
//! | `namespace` | `k8s.namespace.name` |
//! | `pod` | `k8s.pod.name` |
//! | `container` | `k8s.container.name` |
//! | `node` | `k8s.node.name` |
//! | `host` / `hostname` | `host.name` |
//!
//! `job` is only used as the service name when it is not a well-known infrastructure job
//! (`node`, `node-exporter`, `kube-state-metrics`, `kubelet`, `cadvisor`), because those jobs
//! describe the scraper, not the workload.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// OpenTelemetry semantic-convention attribute names used by Nightshift.
pub mod semconv {
    pub const SERVICE_NAME: &str = "service.name";
    pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
    pub const SERVICE_VERSION: &str = "service.version";
    pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
    pub const K8S_POD_NAME: &str = "k8s.pod.name";
    pub const K8S_CONTAINER_NAME: &str = "k8s.container.name";
    pub const K8S_NODE_NAME: &str = "k8s.node.name";
    pub const HOST_NAME: &str = "host.name";
}

/// The module docs' table: each Prometheus label and the OTel attribute it maps to (`hostname`
/// is read as `host` too).
pub const LABEL_ATTRIBUTES: [(&str, &str); 7] = [
    ("service", semconv::SERVICE_NAME),
    ("instance", semconv::SERVICE_INSTANCE_ID),
    ("namespace", semconv::K8S_NAMESPACE_NAME),
    ("pod", semconv::K8S_POD_NAME),
    ("container", semconv::K8S_CONTAINER_NAME),
    ("node", semconv::K8S_NODE_NAME),
    ("host", semconv::HOST_NAME),
];

/// The Prometheus label an OTel resource attribute maps to, if the table has it.
pub fn prometheus_label(attribute: &str) -> Option<&'static str> {
    LABEL_ATTRIBUTES
        .iter()
        .find(|(_, a)| *a == attribute)
        .map(|(l, _)| *l)
}

/// `job` values that name the scraper rather than the workload.
pub const INFRA_JOBS: &[&str] = &[
    "node",
    "node-exporter",
    "kube-state-metrics",
    "kubelet",
    "cadvisor",
];

/// Whether `name` is a Kubernetes object name (a DNS-1123 subdomain: lower-case letters,
/// digits, `-` and `.`, alphanumeric at both ends, at most 253 characters).
pub fn is_k8s_name(name: &str) -> bool {
    dns_name(name, 253, true)
}

/// Whether `name` is a Kubernetes namespace, container or label name (a DNS-1123 label: as a
/// subdomain but without `.`, at most 63 characters).
pub fn is_k8s_label(name: &str) -> bool {
    dns_name(name, 63, false)
}

fn dns_name(s: &str, max: usize, dots: bool) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
        })
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// The thing that produced a signal, as OTel resource attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Resource {
    pub attributes: BTreeMap<String, String>,
}

impl Resource {
    pub fn new() -> Self {
        Self::default()
    }

    /// A resource for a service (and nothing else).
    pub fn service(name: &str) -> Self {
        Self::new().with(semconv::SERVICE_NAME, name)
    }

    /// A resource for a node.
    pub fn node(name: &str) -> Self {
        Self::new().with(semconv::K8S_NODE_NAME, name)
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.attributes.insert(key.to_string(), value.to_string());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    pub fn service_name(&self) -> Option<&str> {
        self.get(semconv::SERVICE_NAME)
    }

    pub fn node_name(&self) -> Option<&str> {
        self.get(semconv::K8S_NODE_NAME)
            .or_else(|| self.get(semconv::HOST_NAME))
    }

    /// Maps Prometheus labels to OTel attributes (see the module docs for the table).
    pub fn from_prometheus_labels<'a>(
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut r = Resource::new();
        let mut job = None;
        for (k, v) in labels {
            if v.is_empty() {
                continue;
            }
            if k == "job" {
                job = Some(v);
                continue;
            }
            let label = if k == "hostname" { "host" } else { k };
            let Some(&(_, attr)) = LABEL_ATTRIBUTES.iter().find(|(l, _)| *l == label) else {
                continue;
            };
            r.attributes.insert(attr.to_string(), v.to_string());
        }
        if let Some(job) = job
            && r.service_name().is_none()
            && !INFRA_JOBS.contains(&job)
        {
            r.attributes
                .insert(semconv::SERVICE_NAME.to_string(), job.to_string());
        }
        r
    }

    /// The entity this resource belongs to for diagnosis: its service if it has one, else its node.
    pub fn entity(&self) -> Option<Entity> {
        if let Some(s) = self.service_name() {
            Some(Entity::service(s))
        } else {
            self.node_name().map(Entity::node)
        }
    }
}

/// What a hypothesis can blame: a service (any workload, including databases) or a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Service,
    Node,
}

/// A named diagnosable thing: `service/checkout` or `node/db-03`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entity {
    pub kind: EntityKind,
    pub name: String,
}

impl Entity {
    pub fn service(name: &str) -> Self {
        Self {
            kind: EntityKind::Service,
            name: name.to_string(),
        }
    }
    pub fn node(name: &str) -> Self {
        Self {
            kind: EntityKind::Node,
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            EntityKind::Service => write!(f, "service/{}", self.name),
            EntityKind::Node => write!(f, "node/{}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_labels_map_to_semconv() {
        let r = Resource::from_prometheus_labels([
            ("job", "checkout"),
            ("pod", "checkout-1"),
            ("namespace", "shop"),
            ("node", "n1"),
        ]);
        assert_eq!(r.service_name(), Some("checkout"));
        assert_eq!(r.get(semconv::K8S_POD_NAME), Some("checkout-1"));
        assert_eq!(r.get(semconv::K8S_NAMESPACE_NAME), Some("shop"));
        assert_eq!(r.entity(), Some(Entity::service("checkout")));
    }

    #[test]
    fn infrastructure_jobs_are_not_services() {
        let r = Resource::from_prometheus_labels([("job", "node-exporter"), ("node", "n1")]);
        assert_eq!(r.service_name(), None);
        assert_eq!(r.entity(), Some(Entity::node("n1")));
    }

    #[test]
    fn service_label_wins_over_job() {
        let r = Resource::from_prometheus_labels([("job", "kubernetes-pods"), ("service", "cart")]);
        assert_eq!(r.service_name(), Some("cart"));
    }
}
