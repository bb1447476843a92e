//! Which derived signals a raw series feeds, decided once from its standard metric and label
//! names (never from service names): its role, the entity it describes and, for ratios, the
//! series it pairs with.

use nightshift_core::SeriesKey;
use nightshift_core::hash::WordHash;
use nightshift_core::resource::INFRA_JOBS;

/// What a raw series feeds. Decided once, on first sight of the series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Role {
    Ignored,
    HttpRequests { server_error: bool },
    HttpBucket { le: f64 },
    HttpDurationSum,
    HttpDurationCount,
    Up,
    Restarts,
    CpuUsage,
    CpuLimit,
    CfsPeriods,
    CfsThrottled,
    MemoryWorkingSet,
    MemoryLimit,
    PgConnections,
    PgMaxConnections,
    PgCommits,
    PgRollbacks,
    PgQuerySum,
    PgQueryCount,
    VolumeAvailable,
    VolumeCapacity,
    NodeUp,
    NodeCpu { idle: bool },
    NodeMemAvailable,
    NodeMemTotal,
    NodeFsAvailable,
    NodeFsSize,
}

impl Role {
    pub(crate) fn is_counter(self) -> bool {
        matches!(
            self,
            Role::HttpRequests { .. }
                | Role::HttpBucket { .. }
                | Role::HttpDurationSum
                | Role::HttpDurationCount
                | Role::Restarts
                | Role::CpuUsage
                | Role::CfsPeriods
                | Role::CfsThrottled
                | Role::PgCommits
                | Role::PgRollbacks
                | Role::PgQuerySum
                | Role::PgQueryCount
                | Role::NodeCpu { .. }
        )
    }

    /// Capacities change rarely and may come from a slower scrape, so the last value within
    /// the lookback window still counts; everything else must be sampled in the interval.
    pub(crate) fn is_capacity(self) -> bool {
        matches!(
            self,
            Role::CpuLimit
                | Role::MemoryLimit
                | Role::PgMaxConnections
                | Role::VolumeCapacity
                | Role::NodeMemTotal
                | Role::NodeFsSize
        )
    }
}

/// The entity a raw series describes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Subject {
    Service(String),
    Node(String),
}

/// What [`classify`] found out about a raw series.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Classified {
    pub(crate) role: Role,
    /// `None` for an ignored series.
    pub(crate) subject: Option<Subject>,
    /// Pairs a numerator series with its denominator (same pod and container, or same volume).
    pub(crate) join: u64,
    /// A `(service, node)` placement the series states (`kube_pod_info`).
    pub(crate) placement: Option<(String, String)>,
}

/// Classifies a series seen for the first time.
pub(crate) fn classify(key: &SeriesKey) -> Classified {
    const NONE: Classified = Classified {
        role: Role::Ignored,
        subject: None,
        join: 0,
        placement: None,
    };
    let metric = key.metric.as_str();
    let workload = |key: &SeriesKey| -> Option<String> {
        key.label("service")
            .filter(|s| !s.is_empty())
            .or_else(|| {
                key.label("job")
                    .filter(|j| !j.is_empty() && !INFRA_JOBS.contains(j))
            })
            .map(str::to_string)
    };
    let is_node_exporter_up = metric == "up"
        && (key.label("job") == Some("node-exporter")
            || key.label("service") == Some("node-exporter"));
    if metric.starts_with("node_") || is_node_exporter_up {
        let Some(node) = node_name(key) else {
            return NONE;
        };
        let role = match metric {
            "up" => Role::NodeUp,
            "node_cpu_seconds_total" => Role::NodeCpu {
                idle: key.label("mode") == Some("idle"),
            },
            "node_memory_MemAvailable_bytes" => Role::NodeMemAvailable,
            "node_memory_MemTotal_bytes" => Role::NodeMemTotal,
            "node_filesystem_avail_bytes" | "node_filesystem_size_bytes"
                if key.label("mountpoint").is_some_and(|m| m != "/") =>
            {
                Role::Ignored
            }
            "node_filesystem_avail_bytes" => Role::NodeFsAvailable,
            "node_filesystem_size_bytes" => Role::NodeFsSize,
            _ => Role::Ignored,
        };
        if role == Role::Ignored {
            return NONE;
        }
        return Classified {
            role,
            subject: Some(Subject::Node(node)),
            join: 0,
            placement: None,
        };
    }

    let Some(service) = workload(key) else {
        return NONE;
    };
    // cAdvisor also exports pod-level cgroups (`container=""`) and the pause container
    // (`POD`); counting them would double the pod's usage.
    let real_container = || {
        key.label("container")
            .is_some_and(|c| !c.is_empty() && c != "POD")
    };
    let container_join = |tag: &str| {
        WordHash::new()
            .field(tag.as_bytes())
            .field(key.label("pod").unwrap_or("").as_bytes())
            .field(key.label("container").unwrap_or("").as_bytes())
            .finish()
    };
    let (role, join) = match metric {
        "http_requests_total" => {
            let code = key.label("code").unwrap_or("");
            (
                Role::HttpRequests {
                    server_error: code.len() == 3 && code.starts_with('5'),
                },
                0,
            )
        }
        "http_request_duration_seconds_bucket" => match key.label("le").and_then(parse_le) {
            Some(le) => (Role::HttpBucket { le }, 0),
            None => return NONE,
        },
        "http_request_duration_seconds_sum" => (Role::HttpDurationSum, 0),
        "http_request_duration_seconds_count" => (Role::HttpDurationCount, 0),
        "up" => (Role::Up, 0),
        "kube_pod_container_status_restarts_total" => (Role::Restarts, 0),
        "container_cpu_usage_seconds_total" if real_container() => {
            (Role::CpuUsage, container_join("cpu"))
        }
        "container_cpu_cfs_periods_total" if real_container() => (Role::CfsPeriods, 0),
        "container_cpu_cfs_throttled_periods_total" if real_container() => (Role::CfsThrottled, 0),
        "container_memory_working_set_bytes" if real_container() => {
            (Role::MemoryWorkingSet, container_join("memory"))
        }
        "kube_pod_container_resource_limits" => match key.label("resource") {
            Some("cpu") => (Role::CpuLimit, container_join("cpu")),
            Some("memory") => (Role::MemoryLimit, container_join("memory")),
            _ => return NONE,
        },
        "kube_pod_info" => {
            let placement = key
                .label("node")
                .filter(|n| !n.is_empty())
                .map(|node| (service.clone(), node.to_string()));
            return Classified { placement, ..NONE };
        }
        "pg_stat_activity_count" => (Role::PgConnections, 0),
        "pg_settings_max_connections" => (Role::PgMaxConnections, 0),
        "pg_stat_database_xact_commit_total" => (Role::PgCommits, 0),
        "pg_stat_database_xact_rollback_total" => (Role::PgRollbacks, 0),
        "pg_query_duration_seconds_sum" => (Role::PgQuerySum, 0),
        "pg_query_duration_seconds_count" => (Role::PgQueryCount, 0),
        "kubelet_volume_stats_available_bytes" | "kubelet_volume_stats_capacity_bytes" => {
            let join = WordHash::new()
                .field(key.label("namespace").unwrap_or("").as_bytes())
                .field(key.label("persistentvolumeclaim").unwrap_or("").as_bytes())
                .finish();
            let role = if metric.ends_with("available_bytes") {
                Role::VolumeAvailable
            } else {
                Role::VolumeCapacity
            };
            (role, join)
        }
        _ => return NONE,
    };
    Classified {
        role,
        subject: Some(Subject::Service(service)),
        join,
        placement: None,
    }
}

/// The node a node-exporter series describes: its `node` label, else its `instance` host.
fn node_name(key: &SeriesKey) -> Option<String> {
    if let Some(n) = key.label("node").filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let instance = key.label("instance").filter(|i| !i.is_empty())?;
    let host = match instance.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => instance,
    };
    Some(host.to_string())
}

/// Parses a bucket bound the way Prometheus writes them (`0.25`, `+Inf`).
fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        _ => s.parse::<f64>().ok().filter(|v| !v.is_nan()),
    }
}
