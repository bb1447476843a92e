//! The recording rules: what each interval's accumulated inputs of an entity or a call edge
//! become as derived series (`docs/signals.md`), each with the PromQL that computes it.

use crate::Signal;
use crate::promql::{histogram_quantile, quoted};
use nightshift_core::{Entity, Millis, SeriesKey, SignalClass};
use std::fmt::Write as _;

/// Which two series a ratio pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Pair {
    Cpu,
    Memory,
    Volume,
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PairAcc {
    pub(crate) numerator: Option<f64>,
    pub(crate) denominator: Option<f64>,
}

/// Sums of the interval's contributions for one entity. `None` means no input arrived.
#[derive(Debug, Default, Clone)]
pub(crate) struct EntityAcc {
    pub(crate) http_total: Option<f64>,
    pub(crate) http_5xx: f64,
    pub(crate) buckets: Vec<(f64, f64)>,
    pub(crate) duration_sum: Option<f64>,
    pub(crate) duration_count: Option<f64>,
    pub(crate) up_sum: f64,
    pub(crate) up_n: u32,
    pub(crate) restarts: Option<f64>,
    pub(crate) cpu_ratio: Option<f64>,
    pub(crate) memory_ratio: Option<f64>,
    pub(crate) cfs_periods: Option<f64>,
    pub(crate) cfs_throttled: f64,
    pub(crate) pg_connections: Option<f64>,
    pub(crate) pg_max_connections: Option<f64>,
    pub(crate) pg_commits: Option<f64>,
    pub(crate) pg_rollbacks: Option<f64>,
    pub(crate) pg_query_sum: Option<f64>,
    pub(crate) pg_query_count: Option<f64>,
    pub(crate) volume_ratio: Option<f64>,
    pub(crate) node_up_sum: f64,
    pub(crate) node_up_n: u32,
    pub(crate) cpu_idle: Option<f64>,
    pub(crate) cpu_all: Option<f64>,
    pub(crate) mem_available: Option<f64>,
    pub(crate) mem_total: Option<f64>,
    pub(crate) fs_available: Option<f64>,
    pub(crate) fs_size: Option<f64>,
}

pub(crate) fn add(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.unwrap_or(0.0) + v);
}

pub(crate) fn max_into(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.map_or(v, |s| s.max(v)));
}

pub(crate) fn min_into(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.map_or(v, |s| s.min(v)));
}

#[derive(Debug)]
pub(crate) struct EdgeAcc {
    pub(crate) client: String,
    pub(crate) server: String,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) duration_seconds: f64,
    pub(crate) fresh: bool,
    pub(crate) last_ts: Millis,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LoggerAcc {
    pub(crate) errors: u64,
    pub(crate) last_ts: Millis,
}

/// Where one entity's signals for one evaluation go.
struct Emitter<'a> {
    out: &'a mut Vec<Signal>,
    entity: &'a Entity,
    labels: &'a [(&'a str, &'a str)],
    ts: Millis,
}

impl Emitter<'_> {
    fn push(&mut self, metric: &str, class: SignalClass, value: f64, promql: String) {
        if !value.is_finite() {
            return;
        }
        self.out.push(Signal {
            key: SeriesKey::new(metric, self.labels),
            entity: self.entity.clone(),
            class,
            ts: self.ts,
            value,
            promql,
        });
    }
}

pub(crate) fn service_signals(
    e: &Entity,
    a: &mut EntityAcc,
    logger: Option<LoggerAcc>,
    interval_s: Option<f64>,
    ts: Millis,
    out: &mut Vec<Signal>,
) {
    use SignalClass::*;
    let name = e.name.as_str();
    let labels = [("service", name)];
    let sel = format!("service={}", quoted(name));
    let mut em = Emitter {
        out,
        entity: e,
        labels: &labels,
        ts,
    };
    let mut push = |metric: &str, class: SignalClass, value: f64, promql: String| {
        em.push(metric, class, value, promql);
    };

    if let Some(total) = a.http_total {
        push(
            "service:http_requests:rate1m",
            Traffic,
            total,
            format!("sum by (service) (rate(http_requests_total{{{sel}}}[1m]))"),
        );
        if total > 0.0 {
            push(
                "service:http_errors:ratio_rate1m",
                Errors,
                a.http_5xx / total,
                format!(
                    "sum by (service) (rate(http_requests_total{{{sel},code=~\"5..\"}}[1m])) / \
                     sum by (service) (rate(http_requests_total{{{sel}}}[1m]))"
                ),
            );
        }
    }
    if !a.buckets.is_empty()
        && let Some(p99) = histogram_quantile(0.99, &mut a.buckets)
    {
        push(
            "service:http_request_duration_seconds:p99",
            Latency,
            p99,
            format!(
                "histogram_quantile(0.99, sum by (service, le) \
                 (rate(http_request_duration_seconds_bucket{{{sel}}}[1m])))"
            ),
        );
    }
    if let (Some(sum), Some(count)) = (a.duration_sum, a.duration_count)
        && count > 0.0
    {
        push(
            "service:http_request_duration_seconds:mean",
            Latency,
            sum / count,
            format!(
                "sum by (service) (rate(http_request_duration_seconds_sum{{{sel}}}[1m])) / \
                 sum by (service) (rate(http_request_duration_seconds_count{{{sel}}}[1m]))"
            ),
        );
    }
    if a.up_n > 0 {
        push(
            "service:up:ratio",
            Availability,
            a.up_sum / f64::from(a.up_n),
            format!("avg by (service) (up{{{sel}}})"),
        );
    }
    if let Some(r) = a.restarts {
        push(
            "service:restarts:increase5m",
            Availability,
            r,
            format!(
                "sum by (service) (increase(kube_pod_container_status_restarts_total{{{sel}}}[5m]))"
            ),
        );
    }
    if let Some(r) = a.cpu_ratio {
        push(
            "service:cpu_usage:ratio_limit",
            Saturation,
            r,
            format!(
                "max by (service) (sum by (service, pod, container) \
                 (rate(container_cpu_usage_seconds_total{{{sel},container!=\"\",container!=\"POD\"}}[1m])) / \
                 sum by (service, pod, container) \
                 (kube_pod_container_resource_limits{{{sel},resource=\"cpu\"}}))"
            ),
        );
    }
    if let Some(periods) = a.cfs_periods
        && periods > 0.0
    {
        push(
            "service:cpu_throttled:ratio",
            Saturation,
            a.cfs_throttled / periods,
            format!(
                "sum by (service) (rate(container_cpu_cfs_throttled_periods_total{{{sel},container!=\"\",container!=\"POD\"}}[1m])) / \
                 sum by (service) (rate(container_cpu_cfs_periods_total{{{sel},container!=\"\",container!=\"POD\"}}[1m]))"
            ),
        );
    }
    if let Some(r) = a.memory_ratio {
        push(
            "service:memory_working_set:ratio_limit",
            Saturation,
            r,
            format!(
                "max by (service) (sum by (service, pod, container) \
                 (container_memory_working_set_bytes{{{sel},container!=\"\",container!=\"POD\"}}) / \
                 sum by (service, pod, container) \
                 (kube_pod_container_resource_limits{{{sel},resource=\"memory\"}}))"
            ),
        );
    }
    if let (Some(conns), Some(max)) = (a.pg_connections, a.pg_max_connections)
        && max > 0.0
    {
        push(
            "service:pg_connections:ratio_max",
            Saturation,
            conns / max,
            format!(
                "sum by (service) (pg_stat_activity_count{{{sel}}}) / \
                 sum by (service) (pg_settings_max_connections{{{sel}}})"
            ),
        );
    }
    if let (Some(sum), Some(count)) = (a.pg_query_sum, a.pg_query_count)
        && count > 0.0
    {
        push(
            "service:pg_query_duration_seconds:mean",
            Latency,
            sum / count,
            format!(
                "sum by (service) (rate(pg_query_duration_seconds_sum{{{sel}}}[1m])) / \
                 sum by (service) (rate(pg_query_duration_seconds_count{{{sel}}}[1m]))"
            ),
        );
    }
    if a.pg_commits.is_some() || a.pg_rollbacks.is_some() {
        let rollbacks = a.pg_rollbacks.unwrap_or(0.0);
        let all = a.pg_commits.unwrap_or(0.0) + rollbacks;
        if all > 0.0 {
            push(
                "service:pg_rollbacks:ratio",
                Errors,
                rollbacks / all,
                format!(
                    "sum by (service) (rate(pg_stat_database_xact_rollback_total{{{sel}}}[1m])) / \
                     (sum by (service) (rate(pg_stat_database_xact_commit_total{{{sel}}}[1m])) + \
                     sum by (service) (rate(pg_stat_database_xact_rollback_total{{{sel}}}[1m])))"
                ),
            );
        }
    }
    if let Some(r) = a.volume_ratio {
        push(
            "service:volume_available:ratio",
            Saturation,
            r,
            format!(
                "min by (service) (kubelet_volume_stats_available_bytes{{{sel}}} / \
                 kubelet_volume_stats_capacity_bytes{{{sel}}})"
            ),
        );
    }
    if let (Some(l), Some(secs)) = (logger, interval_s) {
        // Loki streams from OTel resources carry `service_name`; severity is `detected_level`.
        push(
            "service:log_errors:rate1m",
            Logs,
            l.errors as f64 / secs,
            format!(
                "sum(rate({{service_name={}}} | detected_level=~\"error|fatal\" [1m]))",
                quoted(name)
            ),
        );
    }
}

pub(crate) fn node_signals(e: &Entity, a: &EntityAcc, ts: Millis, out: &mut Vec<Signal>) {
    use SignalClass::*;
    let name = e.name.as_str();
    let labels = [("node", name)];
    let sel = format!("node={}", quoted(name));
    let mut em = Emitter {
        out,
        entity: e,
        labels: &labels,
        ts,
    };
    let mut push = |metric: &str, class: SignalClass, value: f64, promql: String| {
        em.push(metric, class, value, promql);
    };
    if a.node_up_n > 0 {
        push(
            "node:up",
            Availability,
            a.node_up_sum / f64::from(a.node_up_n),
            format!("avg by (node) (up{{job=\"node-exporter\",{sel}}})"),
        );
    }
    if let Some(all) = a.cpu_all
        && all > 0.0
    {
        // Idle share of all CPU time: equals `1 - avg(rate(idle))` over per-CPU series and stays
        // right when a node exports one series per mode summed over its CPUs.
        push(
            "node:cpu_busy:ratio",
            Saturation,
            1.0 - a.cpu_idle.unwrap_or(0.0) / all,
            format!(
                "1 - sum by (node) (rate(node_cpu_seconds_total{{{sel},mode=\"idle\"}}[1m])) / \
                 sum by (node) (rate(node_cpu_seconds_total{{{sel}}}[1m]))"
            ),
        );
    }
    if let (Some(avail), Some(total)) = (a.mem_available, a.mem_total)
        && total > 0.0
    {
        push(
            "node:memory_available:ratio",
            Saturation,
            avail / total,
            format!(
                "node_memory_MemAvailable_bytes{{{sel}}} / node_memory_MemTotal_bytes{{{sel}}}"
            ),
        );
    }
    if let (Some(avail), Some(size)) = (a.fs_available, a.fs_size)
        && size > 0.0
    {
        push(
            "node:filesystem_available:ratio",
            Saturation,
            avail / size,
            format!(
                "node_filesystem_avail_bytes{{{sel},mountpoint=\"/\"}} / \
                 node_filesystem_size_bytes{{{sel},mountpoint=\"/\"}}"
            ),
        );
    }
}

pub(crate) fn edge_signals(
    e: &EdgeAcc,
    interval_s: Option<f64>,
    ts: Millis,
    out: &mut Vec<Signal>,
) {
    use SignalClass::*;
    let entity = Entity::service(&e.server);
    let labels = [("client", e.client.as_str()), ("server", e.server.as_str())];
    let mut sel = String::new();
    let _ = write!(
        sel,
        "client={},server={}",
        quoted(&e.client),
        quoted(&e.server)
    );
    let mut em = Emitter {
        out,
        entity: &entity,
        labels: &labels,
        ts,
    };
    let mut push = |metric: &str, class: SignalClass, value: f64, promql: String| {
        em.push(metric, class, value, promql);
    };
    let requests = e.requests as f64;
    if let Some(secs) = interval_s {
        push(
            "edge:requests:rate1m",
            Traffic,
            requests / secs,
            format!(
                "sum by (client, server) (rate(traces_service_graph_request_total{{{sel}}}[1m]))"
            ),
        );
    }
    if e.requests > 0 {
        push(
            "edge:errors:ratio",
            Errors,
            e.errors as f64 / requests,
            format!(
                "sum by (client, server) (rate(traces_service_graph_request_failed_total{{{sel}}}[1m])) / \
                 sum by (client, server) (rate(traces_service_graph_request_total{{{sel}}}[1m]))"
            ),
        );
        push(
            "edge:duration_seconds:mean",
            Latency,
            e.duration_seconds / requests,
            format!(
                "sum by (client, server) (rate(traces_service_graph_request_client_seconds_sum{{{sel}}}[1m])) / \
                 sum by (client, server) (rate(traces_service_graph_request_client_seconds_count{{{sel}}}[1m]))"
            ),
        );
    }
}
