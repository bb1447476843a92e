//! A static alerting rule set evaluated like Prometheus does it: every tick, over windows of the
//! simulated series, pending for `for:` before firing, and resolved once the condition clears.

use crate::cluster::Cluster;
use crate::stats::BUCKETS;
use nightshift_core::{Alert, AlertStatus};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The rules, named as in common kube-prometheus-style rule sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    HighErrorRate,
    PodHighErrorRate,
    HighLatencyP99,
    CpuThrottlingHigh,
    ContainerMemoryNearLimit,
    KubePodCrashLooping,
    TargetDown,
    PostgresTooManyConnections,
    PostgresSlowQueries,
    KubePersistentVolumeFillingUp,
    NodeDown,
    KubeNodeNotReady,
    NodeFilesystemAlmostFull,
}

impl Rule {
    pub const ALL: [Rule; 13] = [
        Rule::HighErrorRate,
        Rule::PodHighErrorRate,
        Rule::HighLatencyP99,
        Rule::CpuThrottlingHigh,
        Rule::ContainerMemoryNearLimit,
        Rule::KubePodCrashLooping,
        Rule::TargetDown,
        Rule::PostgresTooManyConnections,
        Rule::PostgresSlowQueries,
        Rule::KubePersistentVolumeFillingUp,
        Rule::NodeDown,
        Rule::KubeNodeNotReady,
        Rule::NodeFilesystemAlmostFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::HighErrorRate => "HighErrorRate",
            Rule::PodHighErrorRate => "PodHighErrorRate",
            Rule::HighLatencyP99 => "HighLatencyP99",
            Rule::CpuThrottlingHigh => "CPUThrottlingHigh",
            Rule::ContainerMemoryNearLimit => "ContainerMemoryNearLimit",
            Rule::KubePodCrashLooping => "KubePodCrashLooping",
            Rule::TargetDown => "TargetDown",
            Rule::PostgresTooManyConnections => "PostgresTooManyConnections",
            Rule::PostgresSlowQueries => "PostgresSlowQueries",
            Rule::KubePersistentVolumeFillingUp => "KubePersistentVolumeFillingUp",
            Rule::NodeDown => "NodeDown",
            Rule::KubeNodeNotReady => "KubeNodeNotReady",
            Rule::NodeFilesystemAlmostFull => "NodeFilesystemAlmostFull",
        }
    }

    /// How long the condition must hold before the alert fires.
    pub fn for_ms(self) -> i64 {
        match self {
            Rule::HighErrorRate | Rule::PodHighErrorRate => 120_000,
            Rule::HighLatencyP99
            | Rule::CpuThrottlingHigh
            | Rule::ContainerMemoryNearLimit
            | Rule::NodeFilesystemAlmostFull => 300_000,
            Rule::KubePodCrashLooping
            | Rule::TargetDown
            | Rule::KubePersistentVolumeFillingUp
            | Rule::NodeDown => 60_000,
            Rule::PostgresTooManyConnections
            | Rule::PostgresSlowQueries
            | Rule::KubeNodeNotReady => 120_000,
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            Rule::HighErrorRate
            | Rule::KubePersistentVolumeFillingUp
            | Rule::NodeDown
            | Rule::PostgresTooManyConnections => "critical",
            _ => "warning",
        }
    }

    /// The rule's expression, for the record and the README.
    pub fn expr(self) -> &'static str {
        match self {
            Rule::HighErrorRate => {
                "sum by (namespace, service, job) (rate(http_requests_total{code=~\"5..\"}[5m])) / sum by (namespace, service, job) (rate(http_requests_total[5m])) > 0.05"
            }
            Rule::PodHighErrorRate => {
                "sum by (namespace, service, job, pod) (rate(http_requests_total{code=~\"5..\"}[5m])) / sum by (namespace, service, job, pod) (rate(http_requests_total[5m])) > 0.05"
            }
            Rule::HighLatencyP99 => {
                "histogram_quantile(0.99, sum by (namespace, service, job, pod, le) (rate(http_request_duration_seconds_bucket[5m]))) > 1"
            }
            Rule::CpuThrottlingHigh => {
                "increase(container_cpu_cfs_throttled_periods_total[5m]) / increase(container_cpu_cfs_periods_total[5m]) > 0.25"
            }
            Rule::ContainerMemoryNearLimit => {
                "container_memory_working_set_bytes / on (namespace, pod, container) kube_pod_container_resource_limits{resource=\"memory\"} > 0.9"
            }
            Rule::KubePodCrashLooping => {
                "increase(kube_pod_container_status_restarts_total[10m]) > 1"
            }
            Rule::TargetDown => "up{job!=\"node-exporter\"} == 0",
            Rule::PostgresTooManyConnections => {
                "sum by (namespace, service, job, pod) (pg_stat_activity_count) / on (namespace, service, job, pod) pg_settings_max_connections > 0.9"
            }
            Rule::PostgresSlowQueries => {
                "rate(pg_query_duration_seconds_sum[5m]) / rate(pg_query_duration_seconds_count[5m]) > 0.05"
            }
            Rule::KubePersistentVolumeFillingUp => {
                "kubelet_volume_stats_available_bytes / kubelet_volume_stats_capacity_bytes < 0.05"
            }
            Rule::NodeDown => "up{job=\"node-exporter\"} == 0",
            Rule::KubeNodeNotReady => {
                "kube_node_status_condition{condition=\"Ready\",status=\"true\"} == 0"
            }
            Rule::NodeFilesystemAlmostFull => {
                "node_filesystem_avail_bytes{mountpoint=\"/\"} / node_filesystem_size_bytes{mountpoint=\"/\"} < 0.1"
            }
        }
    }
}

const F_REQ: usize = 0;
const F_ERR: usize = 1;
const F_BUCKET: usize = 2;
const F_PERIODS: usize = 14;
const F_THROTTLED: usize = 15;
const F_RESTARTS: usize = 16;
const F_PG_SUM: usize = 17;
const F_PG_COUNT: usize = 18;
const NF: usize = 19;

/// What the rules can see of one pod at one scrape.
#[derive(Debug, Clone, Copy)]
pub struct PodObservation {
    /// The pod object exists (kube-state-metrics reports it).
    pub exists: bool,
    /// The pod's own target and cAdvisor answered.
    pub scraped: bool,
    pub requests: f64,
    pub errors: f64,
    pub buckets: [f64; 12],
    pub cfs_periods: f64,
    pub cfs_throttled: f64,
    pub restarts: f64,
    pub pg_sum: f64,
    pub pg_count: f64,
    pub memory_ratio: Option<f64>,
    pub pg_connections_ratio: Option<f64>,
    pub volume_available_ratio: Option<f64>,
}

impl PodObservation {
    pub const ABSENT: PodObservation = PodObservation {
        exists: false,
        scraped: false,
        requests: 0.0,
        errors: 0.0,
        buckets: [0.0; 12],
        cfs_periods: 0.0,
        cfs_throttled: 0.0,
        restarts: 0.0,
        pg_sum: 0.0,
        pg_count: 0.0,
        memory_ratio: None,
        pg_connections_ratio: None,
        volume_available_ratio: None,
    };
}

/// What the rules can see of one node at one scrape.
#[derive(Debug, Clone, Copy)]
pub struct NodeObservation {
    pub up: bool,
    pub ready: bool,
    pub filesystem_available_ratio: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Snap {
    ts: i64,
    app: bool,
    ksm: bool,
    v: [f64; NF],
}

#[derive(Debug, Default)]
struct Window {
    snaps: VecDeque<Snap>,
}

impl Window {
    /// Prometheus `increase()` without extrapolation: summed deltas with counter resets.
    fn increase(&self, field: usize, now: i64, range_ms: i64, need_app: bool) -> Option<f64> {
        let mut prev: Option<f64> = None;
        let mut total = 0.0;
        let mut samples = 0;
        for s in self
            .snaps
            .iter()
            .filter(|s| s.ts > now - range_ms && s.ts <= now)
        {
            if (need_app && !s.app) || (!need_app && !s.ksm) {
                continue;
            }
            let v = s.v[field];
            if let Some(p) = prev {
                total += if v >= p { v - p } else { v };
            }
            prev = Some(v);
            samples += 1;
        }
        (samples >= 2).then_some(total)
    }
}

#[derive(Debug)]
struct AlertState {
    active_at: i64,
    fired_at: Option<i64>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// Evaluates the rule set and remembers pending and firing alerts between ticks.
pub struct AlertEngine {
    windows: Vec<Window>,
    keep_ms: i64,
    states: BTreeMap<(Rule, u32), AlertState>,
}

type Hit = (Rule, u32, f64);

impl AlertEngine {
    pub fn new(pods: usize, step_ms: i64) -> Self {
        AlertEngine {
            windows: (0..pods).map(|_| Window::default()).collect(),
            keep_ms: 600_000 + step_ms,
            states: BTreeMap::new(),
        }
    }

    /// Records one scrape of every pod.
    pub fn observe(&mut self, ts: i64, pod: usize, o: &PodObservation) {
        let Some(w) = self.windows.get_mut(pod) else {
            return;
        };
        while w.snaps.front().is_some_and(|s| s.ts <= ts - self.keep_ms) {
            w.snaps.pop_front();
        }
        if !o.exists {
            return;
        }
        let mut v = [0.0; NF];
        v[F_REQ] = o.requests;
        v[F_ERR] = o.errors;
        v[F_BUCKET..F_BUCKET + 12].copy_from_slice(&o.buckets);
        v[F_PERIODS] = o.cfs_periods;
        v[F_THROTTLED] = o.cfs_throttled;
        v[F_RESTARTS] = o.restarts;
        v[F_PG_SUM] = o.pg_sum;
        v[F_PG_COUNT] = o.pg_count;
        w.snaps.push_back(Snap {
            ts,
            app: o.scraped,
            ksm: true,
            v,
        });
    }

    /// Evaluates every rule at `ts` and returns the notifications: alerts that started firing and
    /// alerts that resolved.
    pub fn evaluate(
        &mut self,
        ts: i64,
        cluster: &Cluster,
        pods: &[PodObservation],
        nodes: &[NodeObservation],
    ) -> Vec<Alert> {
        let hits = self.conditions(ts, cluster, pods, nodes);
        let mut out = Vec::new();
        let mut seen: BTreeSet<(Rule, u32)> = BTreeSet::new();
        for (rule, subject, value) in hits {
            let key = (rule, subject);
            seen.insert(key);
            let state = self.states.entry(key).or_insert_with(|| {
                let labels = labels(rule, subject, cluster);
                AlertState {
                    active_at: ts,
                    fired_at: None,
                    labels,
                    annotations: BTreeMap::new(),
                }
            });
            state.annotations = annotations(rule, subject, value, cluster);
            if state.fired_at.is_none() && ts - state.active_at >= rule.for_ms() {
                state.fired_at = Some(ts);
                out.push(Alert::firing(
                    state.labels.clone(),
                    state.annotations.clone(),
                    ts,
                ));
            }
        }
        let gone: Vec<(Rule, u32)> = self
            .states
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(state) = self.states.remove(&key)
                && let Some(fired_at) = state.fired_at
            {
                let mut a = Alert::firing(state.labels, state.annotations, fired_at);
                a.status = AlertStatus::Resolved;
                a.ends_at = Some(ts);
                out.push(a);
            }
        }
        out
    }

    /// Alerts firing right now, as a notification re-sent in full (used when warm-up ends).
    pub fn firing(&self) -> Vec<Alert> {
        self.states
            .values()
            .filter_map(|s| {
                s.fired_at
                    .map(|at| Alert::firing(s.labels.clone(), s.annotations.clone(), at))
            })
            .collect()
    }

    fn conditions(
        &self,
        ts: i64,
        cluster: &Cluster,
        pods: &[PodObservation],
        nodes: &[NodeObservation],
    ) -> Vec<Hit> {
        const FIVE_M: i64 = 300_000;
        let mut hits = Vec::new();
        let mut svc_req = vec![0.0; cluster.services.len()];
        let mut svc_err = vec![0.0; cluster.services.len()];
        for (p, o) in pods.iter().enumerate() {
            let pod = &cluster.pods[p];
            let w = &self.windows[p];
            let svc = &cluster.services[pod.service];
            if svc.has_http() {
                if let (Some(req), Some(err)) = (
                    w.increase(F_REQ, ts, FIVE_M, true),
                    w.increase(F_ERR, ts, FIVE_M, true),
                ) {
                    svc_req[pod.service] += req;
                    svc_err[pod.service] += err;
                    // Rate at least 0.1/s, as rules usually guard against idle pods.
                    if o.scraped && req > 30.0 && err / req > 0.05 {
                        hits.push((Rule::PodHighErrorRate, p as u32, err / req));
                    }
                }
                if o.scraped
                    && let Some(p99) = histogram_p99(w, ts, FIVE_M)
                    && p99 > 1.0
                {
                    hits.push((Rule::HighLatencyP99, p as u32, p99));
                }
            }
            if !o.exists {
                continue;
            }
            if !o.scraped {
                hits.push((Rule::TargetDown, p as u32, 0.0));
            } else {
                if let (Some(periods), Some(throttled)) = (
                    w.increase(F_PERIODS, ts, FIVE_M, true),
                    w.increase(F_THROTTLED, ts, FIVE_M, true),
                ) && periods > 0.0
                    && throttled / periods > 0.25
                {
                    hits.push((Rule::CpuThrottlingHigh, p as u32, throttled / periods));
                }
                if let Some(m) = o.memory_ratio
                    && m > 0.9
                {
                    hits.push((Rule::ContainerMemoryNearLimit, p as u32, m));
                }
                if let Some(c) = o.pg_connections_ratio
                    && c > 0.9
                {
                    hits.push((Rule::PostgresTooManyConnections, p as u32, c));
                }
                if let (Some(sum), Some(count)) = (
                    w.increase(F_PG_SUM, ts, FIVE_M, true),
                    w.increase(F_PG_COUNT, ts, FIVE_M, true),
                ) && count > 0.0
                    && sum / count > 0.05
                {
                    hits.push((Rule::PostgresSlowQueries, p as u32, sum / count));
                }
            }
            if let Some(r) = w.increase(F_RESTARTS, ts, 600_000, false)
                && r > 1.0
            {
                hits.push((Rule::KubePodCrashLooping, p as u32, r));
            }
            if let Some(v) = o.volume_available_ratio
                && v < 0.05
            {
                hits.push((Rule::KubePersistentVolumeFillingUp, p as u32, v));
            }
        }
        for (s, (req, err)) in svc_req.iter().zip(&svc_err).enumerate() {
            if *req > 30.0 && err / req > 0.05 {
                hits.push((Rule::HighErrorRate, s as u32, err / req));
            }
        }
        for (n, o) in nodes.iter().enumerate() {
            if !o.up {
                hits.push((Rule::NodeDown, n as u32, 0.0));
            }
            if !o.ready {
                hits.push((Rule::KubeNodeNotReady, n as u32, 0.0));
            }
            if let Some(r) = o.filesystem_available_ratio
                && r < 0.1
            {
                hits.push((Rule::NodeFilesystemAlmostFull, n as u32, r));
            }
        }
        hits
    }
}

/// `histogram_quantile(0.99, ...)` over the bucket increases in the window.
fn histogram_p99(w: &Window, ts: i64, range_ms: i64) -> Option<f64> {
    let mut inc = [0.0; 12];
    for (i, v) in inc.iter_mut().enumerate() {
        *v = w.increase(F_BUCKET + i, ts, range_ms, true)?;
    }
    let total = inc[11];
    if total < 20.0 {
        return None;
    }
    let rank = 0.99 * total;
    let mut prev_count = 0.0;
    let mut prev_bound = 0.0;
    for (i, &count) in inc.iter().enumerate() {
        if count >= rank {
            if i == 11 {
                return Some(BUCKETS[10]);
            }
            let in_bucket = count - prev_count;
            let frac = if in_bucket > 0.0 {
                (rank - prev_count) / in_bucket
            } else {
                1.0
            };
            return Some(prev_bound + (BUCKETS[i] - prev_bound) * frac);
        }
        prev_count = count;
        if i < 11 {
            prev_bound = BUCKETS[i];
        }
    }
    None
}

fn labels(rule: Rule, subject: u32, c: &Cluster) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("alertname".to_string(), rule.name().to_string());
    l.insert("severity".to_string(), rule.severity().to_string());
    let s = subject as usize;
    match rule {
        Rule::HighErrorRate => {
            let svc = &c.services[s];
            l.insert("namespace".to_string(), c.namespace.clone());
            l.insert("service".to_string(), svc.name.clone());
            l.insert("job".to_string(), svc.name.clone());
        }
        Rule::NodeDown | Rule::NodeFilesystemAlmostFull => {
            let n = &c.nodes[s];
            l.insert("node".to_string(), n.name.clone());
            l.insert("instance".to_string(), format!("{}:9100", n.name));
            l.insert("job".to_string(), "node-exporter".to_string());
            if rule == Rule::NodeFilesystemAlmostFull {
                l.insert("mountpoint".to_string(), "/".to_string());
            }
        }
        Rule::KubeNodeNotReady => {
            l.insert("node".to_string(), c.nodes[s].name.clone());
            l.insert("condition".to_string(), "Ready".to_string());
            l.insert("status".to_string(), "true".to_string());
            l.insert("job".to_string(), "kube-state-metrics".to_string());
        }
        _ => {
            let pod = &c.pods[s];
            let svc = &c.services[pod.service];
            l.insert("namespace".to_string(), c.namespace.clone());
            l.insert("service".to_string(), svc.name.clone());
            l.insert("job".to_string(), svc.name.clone());
            l.insert("pod".to_string(), pod.name.clone());
            match rule {
                Rule::TargetDown
                | Rule::PodHighErrorRate
                | Rule::HighLatencyP99
                | Rule::PostgresTooManyConnections
                | Rule::PostgresSlowQueries => {
                    l.insert("instance".to_string(), pod.instance.clone());
                }
                Rule::KubePersistentVolumeFillingUp => {
                    if let Some(claim) = &pod.pvc_name {
                        l.insert("persistentvolumeclaim".to_string(), claim.clone());
                    }
                }
                _ => {
                    l.insert("container".to_string(), svc.name.clone());
                }
            }
        }
    }
    l
}

fn annotations(rule: Rule, subject: u32, value: f64, c: &Cluster) -> BTreeMap<String, String> {
    let s = subject as usize;
    let pod = || c.pods.get(s).map_or("", |p| p.name.as_str());
    let node = || c.nodes.get(s).map_or("", |n| n.name.as_str());
    let (summary, description) = match rule {
        Rule::HighErrorRate => {
            let svc = c.services.get(s).map_or("", |v| v.name.as_str());
            (
                format!("High 5xx error rate on {svc}"),
                format!(
                    "{:.1}% of requests to {svc} failed with 5xx over the last 5m.",
                    value * 100.0
                ),
            )
        }
        Rule::PodHighErrorRate => (
            format!("High 5xx error rate on pod {}", pod()),
            format!(
                "{:.1}% of requests to {} failed with 5xx over the last 5m.",
                value * 100.0,
                pod()
            ),
        ),
        Rule::HighLatencyP99 => (
            format!("High p99 latency on {}", pod()),
            format!(
                "p99 request latency of {} is {value:.2}s (threshold 1s).",
                pod()
            ),
        ),
        Rule::CpuThrottlingHigh => (
            "Processes experience elevated CPU throttling.".to_string(),
            format!(
                "{:.0}% throttling of CPU in namespace {} for container {}.",
                value * 100.0,
                c.namespace,
                pod()
            ),
        ),
        Rule::ContainerMemoryNearLimit => (
            format!("Container {} is close to its memory limit", pod()),
            format!(
                "Working set of {} is at {:.0}% of its memory limit.",
                pod(),
                value * 100.0
            ),
        ),
        Rule::KubePodCrashLooping => (
            "Pod is crash looping.".to_string(),
            format!(
                "Pod {}/{} restarted {value:.0} times in the last 10 minutes.",
                c.namespace,
                pod()
            ),
        ),
        Rule::TargetDown => (
            format!("Target {} is down", pod()),
            format!("Prometheus cannot scrape {}:8080 (up == 0).", pod()),
        ),
        Rule::PostgresTooManyConnections => (
            format!("PostgreSQL {} is running out of connections", pod()),
            format!(
                "{:.0}% of max_connections are in use on {}.",
                value * 100.0,
                pod()
            ),
        ),
        Rule::PostgresSlowQueries => (
            format!("Slow queries on {}", pod()),
            format!(
                "Mean query duration on {} is {:.0}ms over the last 5m.",
                pod(),
                value * 1000.0
            ),
        ),
        Rule::KubePersistentVolumeFillingUp => (
            "PersistentVolume is filling up.".to_string(),
            format!(
                "The volume of {} has {:.2}% free space left.",
                pod(),
                value * 100.0
            ),
        ),
        Rule::NodeDown => (
            format!("Node {} is down", node()),
            format!(
                "node-exporter on {} has been unreachable for more than 1 minute.",
                node()
            ),
        ),
        Rule::KubeNodeNotReady => (
            "Node is not ready.".to_string(),
            format!("{} has been unready for more than 2 minutes.", node()),
        ),
        Rule::NodeFilesystemAlmostFull => (
            format!("Filesystem on {} is almost full", node()),
            format!(
                "Filesystem / on {} has {:.1}% available space left.",
                node(),
                value * 100.0
            ),
        ),
    };
    BTreeMap::from([
        ("summary".to_string(), summary),
        ("description".to_string(), description),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(values: &[(i64, f64)]) -> Window {
        let mut w = Window::default();
        for (ts, v) in values {
            let mut arr = [0.0; NF];
            arr[F_REQ] = *v;
            w.snaps.push_back(Snap {
                ts: *ts,
                app: true,
                ksm: true,
                v: arr,
            });
        }
        w
    }

    #[test]
    fn increase_handles_counter_resets() {
        let w = window(&[(0, 10.0), (15, 20.0), (30, 5.0), (45, 15.0)]);
        assert_eq!(w.increase(F_REQ, 45, 100, true), Some(10.0 + 5.0 + 10.0));
        assert_eq!(w.increase(F_REQ, 45, 10, true), None);
    }

    #[test]
    fn p99_interpolates_within_the_bucket() {
        let mut w = Window::default();
        for (ts, scale) in [(0, 0.0), (15, 1.0)] {
            let mut v = [0.0; NF];
            // 90 requests under 0.1s, 10 between 1s and 2.5s.
            let cum = [
                0.0, 0.0, 0.0, 0.0, 90.0, 90.0, 90.0, 90.0, 100.0, 100.0, 100.0, 100.0,
            ];
            for i in 0..12 {
                v[F_BUCKET + i] = cum[i] * scale;
            }
            w.snaps.push_back(Snap {
                ts,
                app: true,
                ksm: true,
                v,
            });
        }
        let p = histogram_p99(&w, 15, 100);
        assert!(p.is_some_and(|p| p > 2.0 && p < 2.5), "{p:?}");
    }
}
