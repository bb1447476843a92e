//! Recording-rule-like derivation of the detector inputs listed in `docs/signals.md` from raw
//! metric samples, trace call edges and logs, keyed on the catalogue's metric and label names.

use crate::{FingerprintMap, WordHash, series_hash};
use nightshift_core::{
    Entity, EntityKind, LogRecord, Millis, SeriesKey, Severity, SignalClass, SpanEdge,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;

/// How long a sample stays current after it was scraped: Prometheus's default lookback delta.
/// A counter whose previous sample is older gives no rate (the gap hides what happened), and a
/// capacity gauge (limits, totals) older than this no longer serves as a denominator.
const LOOKBACK: Millis = 5 * 60_000;
/// The window of `service:restarts:increase5m`.
const RESTART_WINDOW: Millis = 5 * 60_000;
/// Raw series and edges not seen for this long are forgotten, so pod churn does not grow memory.
/// Longer than both windows above, so nothing still needed is dropped.
const FORGET_SERIES: Millis = 15 * 60_000;
/// A service that has not logged for this long stops getting a zero log-error baseline.
const FORGET_LOGGER: Millis = 60 * 60_000;

use nightshift_core::resource::INFRA_JOBS;

/// One point of a derived series: the detector input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The derived series, e.g. `service:http_requests:rate1m{service="checkout"}`.
    pub key: SeriesKey,
    pub entity: Entity,
    pub class: SignalClass,
    pub ts: Millis,
    pub value: f64,
    /// Pasteable PromQL (LogQL for the log signal) computing this series for this entity.
    pub promql: String,
}

/// What a raw series feeds. Decided once, on first sight of the series.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
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
    fn is_counter(self) -> bool {
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
    fn is_capacity(self) -> bool {
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

/// Per raw series state: its role, latest sample and what it accumulated since the last flush.
#[derive(Debug)]
struct RawSeries {
    fingerprint: u64,
    role: Role,
    entity: u32,
    /// Pairs a numerator series with its denominator (same pod and container, or same volume).
    join: u64,
    last_ts: Millis,
    value: f64,
    /// Reset-corrected increase and the time it spans, since the last flush.
    increase: f64,
    span: Millis,
    /// Sampled since the last flush.
    fresh: bool,
    /// Reset-corrected running total and its recent history, for `increase(...[5m])`.
    total: f64,
    window: VecDeque<(Millis, f64)>,
}

/// Which two series a ratio pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Pair {
    Cpu,
    Memory,
    Volume,
}

#[derive(Debug, Default, Clone, Copy)]
struct PairAcc {
    numerator: Option<f64>,
    denominator: Option<f64>,
}

/// Sums of the interval's contributions for one entity. `None` means no input arrived.
#[derive(Debug, Default, Clone)]
struct EntityAcc {
    http_total: Option<f64>,
    http_5xx: f64,
    buckets: Vec<(f64, f64)>,
    duration_sum: Option<f64>,
    duration_count: Option<f64>,
    up_sum: f64,
    up_n: u32,
    restarts: Option<f64>,
    cpu_ratio: Option<f64>,
    memory_ratio: Option<f64>,
    cfs_periods: Option<f64>,
    cfs_throttled: f64,
    pg_connections: Option<f64>,
    pg_max_connections: Option<f64>,
    pg_commits: Option<f64>,
    pg_rollbacks: Option<f64>,
    pg_query_sum: Option<f64>,
    pg_query_count: Option<f64>,
    volume_ratio: Option<f64>,
    node_up_sum: f64,
    node_up_n: u32,
    cpu_idle: Option<f64>,
    cpu_all: Option<f64>,
    mem_available: Option<f64>,
    mem_total: Option<f64>,
    fs_available: Option<f64>,
    fs_size: Option<f64>,
}

fn add(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.unwrap_or(0.0) + v);
}

fn max_into(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.map_or(v, |s| s.max(v)));
}

fn min_into(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.map_or(v, |s| s.min(v)));
}

#[derive(Debug)]
struct EdgeAcc {
    client: String,
    server: String,
    requests: u64,
    errors: u64,
    duration_seconds: f64,
    fresh: bool,
    last_ts: Millis,
}

#[derive(Debug, Clone, Copy)]
struct LoggerAcc {
    errors: u64,
    last_ts: Millis,
}

/// Turns raw telemetry into the derived signals of `docs/signals.md`, like Prometheus
/// recording rules evaluated once per [`flush`](Self::flush). Raw series are recognised by the
/// standard metric and label names, never by service names.
///
/// Method: Prometheus's `rate` (reset handling of `extrapolatedRate` in `promql/functions.go`,
/// over consecutive samples, so without its extrapolation to the window edges), `increase` over
/// five minutes from the sample at or before the window start, and `histogram_quantile`
/// ([`histogram_quantile`]). A sample stays current for Prometheus's 5-minute lookback.
///
/// Per sample: one word-at-a-time hash of name and labels and one map lookup; the series' role
/// is decided on first sight and cached, and nothing is allocated for known series.
#[derive(Debug, Default)]
pub struct SignalDeriver {
    index: FingerprintMap<u32>,
    series: Vec<RawSeries>,
    entities: Vec<Entity>,
    services: HashMap<String, u32>,
    nodes: HashMap<String, u32>,
    placements: BTreeSet<(String, String)>,
    edges: FingerprintMap<EdgeAcc>,
    loggers: HashMap<u32, LoggerAcc>,
    last_flush: Option<Millis>,
    rejected: u64,
}

impl SignalDeriver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one raw metric sample. Non-finite values and samples not newer than the series'
    /// previous one are dropped (see [`rejected_samples`](Self::rejected_samples)).
    pub fn ingest_sample(&mut self, key: &SeriesKey, ts: Millis, value: f64) {
        if !value.is_finite() {
            self.rejected += 1;
            return;
        }
        let fp = series_hash(key);
        let idx = match self.index.get(&fp) {
            Some(&i) => i as usize,
            None => self.register(key, fp),
        };
        let Some(s) = self.series.get_mut(idx) else {
            return;
        };
        if s.last_ts != Millis::MIN && ts <= s.last_ts {
            self.rejected += 1;
            return;
        }
        if s.role == Role::Ignored {
            s.last_ts = ts;
            return;
        }
        if s.role.is_counter() {
            let has_prev = s.last_ts != Millis::MIN && ts - s.last_ts <= LOOKBACK;
            if has_prev {
                // A drop means the process restarted and counted from zero again.
                let inc = if value < s.value {
                    value
                } else {
                    value - s.value
                };
                s.increase += inc;
                s.span += ts - s.last_ts;
                s.total += inc;
            }
            if s.role == Role::Restarts {
                s.window.push_back((ts, s.total));
                // Keep one point at or before the window start as the base of the increase.
                while s.window.len() >= 2 && s.window[1].0 <= ts - RESTART_WINDOW {
                    s.window.pop_front();
                }
            }
        }
        s.value = value;
        s.last_ts = ts;
        s.fresh = true;
    }

    /// Feeds the call counts of one `client -> server` edge for one interval.
    pub fn ingest_span(&mut self, edge: &SpanEdge) {
        let id = WordHash::new()
            .field(edge.client.as_bytes())
            .field(edge.server.as_bytes())
            .finish();
        let acc = self.edges.entry(id).or_insert_with(|| EdgeAcc {
            client: edge.client.clone(),
            server: edge.server.clone(),
            requests: 0,
            errors: 0,
            duration_seconds: 0.0,
            fresh: false,
            last_ts: edge.ts,
        });
        acc.requests = acc.requests.saturating_add(edge.requests);
        acc.errors = acc.errors.saturating_add(edge.errors);
        if edge.duration_seconds_sum.is_finite() {
            acc.duration_seconds += edge.duration_seconds_sum;
        }
        acc.fresh = true;
        acc.last_ts = acc.last_ts.max(edge.ts);
    }

    /// Feeds one log line; lines without a service are not attributable and are skipped.
    pub fn ingest_log(&mut self, log: &LogRecord) {
        let Some(service) = log.resource.service_name().filter(|s| !s.is_empty()) else {
            return;
        };
        let id = self.service_id(service);
        let acc = self.loggers.entry(id).or_insert(LoggerAcc {
            errors: 0,
            last_ts: log.ts,
        });
        if log.severity >= Severity::Error {
            acc.errors += 1;
        }
        acc.last_ts = acc.last_ts.max(log.ts);
    }

    /// Service-to-node placement learned from `kube_pod_info`, as `(service, node)` pairs.
    pub fn placements(&self) -> impl Iterator<Item = (&str, &str)> {
        self.placements
            .iter()
            .map(|(s, n)| (s.as_str(), n.as_str()))
    }

    /// Number of raw series currently tracked.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Samples dropped because they were not finite or not newer than their series' last one.
    pub fn rejected_samples(&self) -> u64 {
        self.rejected
    }

    /// Computes every derived signal for the evaluation time `ts` from what was ingested since
    /// the last flush (and the counter state kept across flushes), then clears per-interval
    /// state. Signals come out in a stable order: entities in first-seen order, then edges by
    /// client and server.
    pub fn flush(&mut self, ts: Millis) -> Vec<Signal> {
        let interval_s = self
            .last_flush
            .map(|prev| (ts - prev) as f64 / 1000.0)
            .filter(|s| *s > 0.0);
        self.last_flush = Some(ts);

        let mut acc = vec![EntityAcc::default(); self.entities.len()];
        let mut pairs: HashMap<(u32, u64, Pair), PairAcc> = HashMap::new();
        for s in &mut self.series {
            Self::contribute(s, ts, &mut acc, &mut pairs);
            s.increase = 0.0;
            s.span = 0;
            s.fresh = false;
        }
        for ((entity, _, pair), p) in pairs {
            let (Some(n), Some(d)) = (p.numerator, p.denominator) else {
                continue;
            };
            if d <= 0.0 {
                continue;
            }
            let Some(a) = acc.get_mut(entity as usize) else {
                continue;
            };
            match pair {
                Pair::Cpu => max_into(&mut a.cpu_ratio, n / d),
                Pair::Memory => max_into(&mut a.memory_ratio, n / d),
                Pair::Volume => min_into(&mut a.volume_ratio, n / d),
            }
        }

        let mut out = Vec::new();
        for (id, a) in acc.iter_mut().enumerate() {
            let Some(entity) = self.entities.get(id) else {
                continue;
            };
            let logger = self.loggers.get(&(id as u32)).copied();
            match entity.kind {
                EntityKind::Service => {
                    service_signals(entity, a, logger, interval_s, ts, &mut out);
                }
                EntityKind::Node => node_signals(entity, a, ts, &mut out),
            }
        }
        for acc in self.loggers.values_mut() {
            acc.errors = 0;
        }
        self.loggers.retain(|_, l| ts - l.last_ts <= FORGET_LOGGER);

        let mut edges: Vec<&EdgeAcc> = self.edges.values().filter(|e| e.fresh).collect();
        edges.sort_by(|a, b| (&a.client, &a.server).cmp(&(&b.client, &b.server)));
        for e in edges {
            edge_signals(e, interval_s, ts, &mut out);
        }
        for e in self.edges.values_mut() {
            e.requests = 0;
            e.errors = 0;
            e.duration_seconds = 0.0;
            e.fresh = false;
        }
        self.edges.retain(|_, e| ts - e.last_ts <= FORGET_SERIES);
        self.forget_stale(ts);
        out
    }

    fn contribute(
        s: &RawSeries,
        now: Millis,
        acc: &mut [EntityAcc],
        pairs: &mut HashMap<(u32, u64, Pair), PairAcc>,
    ) {
        if s.role == Role::Ignored {
            return;
        }
        let Some(a) = acc.get_mut(s.entity as usize) else {
            return;
        };
        if s.role.is_counter() {
            if s.role == Role::Restarts {
                if s.fresh {
                    add(&mut a.restarts, restart_increase(&s.window, s.total, now));
                }
                return;
            }
            if s.span <= 0 {
                return;
            }
            let rate = s.increase / (s.span as f64 / 1000.0);
            match s.role {
                Role::HttpRequests { server_error } => {
                    add(&mut a.http_total, rate);
                    if server_error {
                        a.http_5xx += rate;
                    }
                }
                Role::HttpBucket { le } => match a.buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, c)) => *c += rate,
                    None => a.buckets.push((le, rate)),
                },
                Role::HttpDurationSum => add(&mut a.duration_sum, rate),
                Role::HttpDurationCount => add(&mut a.duration_count, rate),
                Role::CpuUsage => {
                    let p = pairs.entry((s.entity, s.join, Pair::Cpu)).or_default();
                    add(&mut p.numerator, rate);
                }
                Role::CfsPeriods => add(&mut a.cfs_periods, rate),
                Role::CfsThrottled => a.cfs_throttled += rate,
                Role::PgCommits => add(&mut a.pg_commits, rate),
                Role::PgRollbacks => add(&mut a.pg_rollbacks, rate),
                Role::PgQuerySum => add(&mut a.pg_query_sum, rate),
                Role::PgQueryCount => add(&mut a.pg_query_count, rate),
                Role::NodeCpu { idle } => {
                    add(&mut a.cpu_all, rate);
                    if idle {
                        add(&mut a.cpu_idle, rate);
                    }
                }
                _ => {}
            }
            return;
        }
        let current = if s.role.is_capacity() {
            s.last_ts != Millis::MIN && now - s.last_ts <= LOOKBACK
        } else {
            s.fresh
        };
        if !current {
            return;
        }
        let v = s.value;
        match s.role {
            Role::Up => {
                a.up_sum += v;
                a.up_n += 1;
            }
            Role::NodeUp => {
                a.node_up_sum += v;
                a.node_up_n += 1;
            }
            Role::MemoryWorkingSet
            | Role::MemoryLimit
            | Role::CpuLimit
            | Role::VolumeAvailable
            | Role::VolumeCapacity => {
                let (pair, numerator) = match s.role {
                    Role::MemoryWorkingSet => (Pair::Memory, true),
                    Role::MemoryLimit => (Pair::Memory, false),
                    Role::CpuLimit => (Pair::Cpu, false),
                    Role::VolumeAvailable => (Pair::Volume, true),
                    _ => (Pair::Volume, false),
                };
                let p = pairs.entry((s.entity, s.join, pair)).or_default();
                add(
                    if numerator {
                        &mut p.numerator
                    } else {
                        &mut p.denominator
                    },
                    v,
                );
            }
            Role::PgConnections => add(&mut a.pg_connections, v),
            Role::PgMaxConnections => add(&mut a.pg_max_connections, v),
            Role::NodeMemAvailable => add(&mut a.mem_available, v),
            Role::NodeMemTotal => add(&mut a.mem_total, v),
            Role::NodeFsAvailable => add(&mut a.fs_available, v),
            Role::NodeFsSize => add(&mut a.fs_size, v),
            _ => {}
        }
    }

    /// Drops raw series nobody has sampled for a while (replaced pods, removed targets).
    fn forget_stale(&mut self, now: Millis) {
        let before = self.series.len();
        self.series
            .retain(|s| s.last_ts == Millis::MIN || now - s.last_ts <= FORGET_SERIES);
        if self.series.len() != before {
            self.index.clear();
            for (i, s) in self.series.iter().enumerate() {
                self.index.insert(s.fingerprint, i as u32);
            }
        }
    }

    fn service_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.services.get(name) {
            return id;
        }
        let id = self.entities.len() as u32;
        self.entities.push(Entity::service(name));
        self.services.insert(name.to_string(), id);
        id
    }

    fn node_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.nodes.get(name) {
            return id;
        }
        let id = self.entities.len() as u32;
        self.entities.push(Entity::node(name));
        self.nodes.insert(name.to_string(), id);
        id
    }

    /// Classifies a series seen for the first time and returns its index.
    fn register(&mut self, key: &SeriesKey, fp: u64) -> usize {
        let (role, entity, join) = self.classify(key);
        let idx = self.series.len();
        self.series.push(RawSeries {
            fingerprint: fp,
            role,
            entity,
            join,
            last_ts: Millis::MIN,
            value: 0.0,
            increase: 0.0,
            span: 0,
            fresh: false,
            total: 0.0,
            window: VecDeque::new(),
        });
        self.index.insert(fp, idx as u32);
        idx
    }

    fn classify(&mut self, key: &SeriesKey) -> (Role, u32, u64) {
        const NONE: (Role, u32, u64) = (Role::Ignored, 0, 0);
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
            let id = self.node_id(&node);
            return (role, id, 0);
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
            "container_cpu_cfs_throttled_periods_total" if real_container() => {
                (Role::CfsThrottled, 0)
            }
            "container_memory_working_set_bytes" if real_container() => {
                (Role::MemoryWorkingSet, container_join("memory"))
            }
            "kube_pod_container_resource_limits" => match key.label("resource") {
                Some("cpu") => (Role::CpuLimit, container_join("cpu")),
                Some("memory") => (Role::MemoryLimit, container_join("memory")),
                _ => return NONE,
            },
            "kube_pod_info" => {
                if let Some(node) = key.label("node").filter(|n| !n.is_empty()) {
                    self.placements.insert((service.clone(), node.to_string()));
                }
                return NONE;
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
        let id = self.service_id(&service);
        (role, id, join)
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

/// Reset-corrected increase over the last five minutes: the running total now minus the total
/// at the last sample at or before the window start (or the first sample of a younger series).
fn restart_increase(window: &VecDeque<(Millis, f64)>, total: f64, now: Millis) -> f64 {
    let start = now - RESTART_WINDOW;
    let base = window
        .iter()
        .take_while(|(t, _)| *t <= start)
        .last()
        .or_else(|| window.front())
        .map_or(total, |(_, v)| *v);
    (total - base).max(0.0)
}

/// Prometheus's `histogram_quantile` over classic buckets given as `(upper bound, cumulative
/// count or rate)`, in any order. Follows `bucketQuantile` in Prometheus's
/// `promql/quantile.go`: needs a `+Inf` bucket, repairs non-monotonic counts, interpolates
/// linearly inside the bucket holding the rank, returns the last finite bound when the rank
/// falls in the `+Inf` bucket. `None` where Prometheus returns NaN (no `+Inf` bucket, fewer
/// than two buckets, no observations).
pub fn histogram_quantile(q: f64, buckets: &mut [(f64, f64)]) -> Option<f64> {
    if q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = buckets.len();
    if n < 2 || buckets[n - 1].0 != f64::INFINITY {
        return None;
    }
    let mut max = f64::NEG_INFINITY;
    for b in buckets.iter_mut() {
        max = max.max(b.1);
        b.1 = max;
    }
    let observations = buckets[n - 1].1;
    if observations.is_nan() || observations <= 0.0 {
        return None;
    }
    let mut rank = q * observations;
    let b = buckets.partition_point(|(_, c)| *c < rank);
    if b >= n - 1 {
        return Some(buckets[n - 2].0);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return Some(buckets[0].0);
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    if count <= 0.0 {
        return Some(start);
    }
    Some(start + (end - start) * (rank / count))
}

/// Escapes a label value for a PromQL string literal.
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
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

fn service_signals(
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

fn node_signals(e: &Entity, a: &EntityAcc, ts: Millis, out: &mut Vec<Signal>) {
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

fn edge_signals(e: &EdgeAcc, interval_s: Option<f64>, ts: Millis, out: &mut Vec<Signal>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_core::Resource;

    const S: Millis = 15_000;

    fn pod(metric: &str, service: &str, pod: &str, extra: &[(&str, &str)]) -> SeriesKey {
        let mut labels = vec![
            ("namespace", "shop"),
            ("service", service),
            ("job", service),
            ("pod", pod),
        ];
        labels.extend_from_slice(extra);
        SeriesKey::new(metric, &labels)
    }

    fn find<'a>(signals: &'a [Signal], metric: &str, entity: &str) -> Option<&'a Signal> {
        signals
            .iter()
            .find(|s| s.key.metric == metric && s.entity.name == entity)
    }

    fn value(signals: &[Signal], metric: &str, entity: &str) -> f64 {
        find(signals, metric, entity).map_or(f64::NAN, |s| s.value)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn counter_rates_handle_resets() {
        let mut d = SignalDeriver::new();
        let k = pod("http_requests_total", "cart", "cart-1", &[("code", "200")]);
        let mut rates = Vec::new();
        // 10/s, 10/s, then the process restarts and counts 30 in the next 15 s.
        for (i, v) in [0.0, 150.0, 300.0, 30.0, 180.0].into_iter().enumerate() {
            let ts = i as Millis * S;
            d.ingest_sample(&k, ts, v);
            rates.push(find(&d.flush(ts), "service:http_requests:rate1m", "cart").map(|s| s.value));
        }
        assert_eq!(
            rates,
            vec![None, Some(10.0), Some(10.0), Some(2.0), Some(10.0)]
        );
    }

    #[test]
    fn rate_spans_scrapes_missed_between_flushes() {
        let mut d = SignalDeriver::new();
        let k = pod("http_requests_total", "cart", "cart-1", &[("code", "200")]);
        d.ingest_sample(&k, 0, 0.0);
        d.flush(0);
        assert!(find(&d.flush(S), "service:http_requests:rate1m", "cart").is_none());
        d.ingest_sample(&k, 2 * S, 300.0);
        assert!(close(
            value(&d.flush(2 * S), "service:http_requests:rate1m", "cart"),
            10.0
        ));
    }

    #[test]
    fn error_ratio_sums_pods_and_skips_zero_traffic() {
        let mut d = SignalDeriver::new();
        let series = [
            (
                pod("http_requests_total", "api", "api-1", &[("code", "200")]),
                90.0,
            ),
            (
                pod("http_requests_total", "api", "api-1", &[("code", "500")]),
                6.0,
            ),
            (
                pod("http_requests_total", "api", "api-2", &[("code", "200")]),
                45.0,
            ),
            (
                pod("http_requests_total", "api", "api-2", &[("code", "503")]),
                9.0,
            ),
            (
                pod("http_requests_total", "api", "api-2", &[("code", "404")]),
                0.0,
            ),
        ];
        for (k, _) in &series {
            d.ingest_sample(k, 0, 1000.0);
        }
        d.flush(0);
        for (k, inc) in &series {
            d.ingest_sample(k, S, 1000.0 + inc);
        }
        let out = d.flush(S);
        assert!(close(
            value(&out, "service:http_requests:rate1m", "api"),
            150.0 / 15.0
        ));
        assert!(close(
            value(&out, "service:http_errors:ratio_rate1m", "api"),
            15.0 / 150.0
        ));
        let e = find(&out, "service:http_errors:ratio_rate1m", "api").map(|s| s.promql.clone());
        assert_eq!(
            e.as_deref(),
            Some(
                "sum by (service) (rate(http_requests_total{service=\"api\",code=~\"5..\"}[1m])) / \
                 sum by (service) (rate(http_requests_total{service=\"api\"}[1m]))"
            )
        );
        // No traffic at all: a rate of 0, but no ratio (not NaN).
        for (k, inc) in &series {
            d.ingest_sample(k, 2 * S, 1000.0 + inc);
        }
        let out = d.flush(2 * S);
        assert_eq!(value(&out, "service:http_requests:rate1m", "api"), 0.0);
        assert!(find(&out, "service:http_errors:ratio_rate1m", "api").is_none());
    }

    #[test]
    fn histogram_quantile_interpolates_like_prometheus() {
        let mut b = vec![
            (0.1, 50.0),
            (0.25, 80.0),
            (0.5, 95.0),
            (1.0, 99.0),
            (f64::INFINITY, 100.0),
        ];
        // rank 90 falls in (0.25, 0.5] holding 15 observations, 10 of them below the rank.
        let q90 = histogram_quantile(0.9, &mut b.clone());
        assert!(q90.is_some_and(|v| close(v, 0.25 + 0.25 * 10.0 / 15.0)));
        // rank 99 is the top of (0.5, 1].
        assert!(histogram_quantile(0.99, &mut b.clone()).is_some_and(|v| close(v, 1.0)));
        // rank in the +Inf bucket: the last finite bound.
        assert_eq!(histogram_quantile(0.999, &mut b), Some(1.0));
        // First bucket interpolates from 0; unsorted input is fine.
        let mut u = vec![(f64::INFINITY, 10.0), (1.0, 10.0), (0.5, 5.0)];
        assert!(histogram_quantile(0.2, &mut u).is_some_and(|v| close(v, 0.2)));
        assert_eq!(histogram_quantile(0.5, &mut [(1.0, 3.0), (2.0, 4.0)]), None);
        assert_eq!(
            histogram_quantile(0.5, &mut [(1.0, 0.0), (f64::INFINITY, 0.0)]),
            None
        );
        // Non-monotonic counts are repaired (8 counts as 10), as Prometheus does.
        let mut m = vec![(0.1, 10.0), (0.2, 8.0), (0.4, 20.0), (f64::INFINITY, 20.0)];
        assert!(histogram_quantile(0.75, &mut m).is_some_and(|v| close(v, 0.3)));
    }

    #[test]
    fn p99_is_taken_over_bucket_increases_summed_across_pods() {
        let mut d = SignalDeriver::new();
        let les = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
        // Interval increases per pod (cumulative), chosen so the sum is 0:50, 0.1:80, 0.25:95,
        // 0.5:98, 1:99.5, +Inf:100.
        let pod1 = [30.0, 50.0, 60.0, 61.0, 61.5, 62.0];
        let pod2 = [20.0, 30.0, 35.0, 37.0, 38.0, 38.0];
        for (p, incs) in [("web-1", pod1), ("web-2", pod2)] {
            for (le, inc) in les.iter().zip(incs) {
                let k = pod(
                    "http_request_duration_seconds_bucket",
                    "web",
                    p,
                    &[("le", le)],
                );
                d.ingest_sample(&k, 0, 500.0);
                d.ingest_sample(&k, S, 500.0 + inc);
            }
        }
        let out = d.flush(S);
        // rank 99 of 100 falls in (0.5, 1] holding 1.5, 1.0 of them below the rank.
        let p99 = value(&out, "service:http_request_duration_seconds:p99", "web");
        assert!(close(p99, 0.5 + 0.5 * (1.0 / 1.5)), "{p99}");
    }

    #[test]
    fn mean_latency_and_up_ratio() {
        let mut d = SignalDeriver::new();
        let sum = pod("http_request_duration_seconds_sum", "pay", "pay-1", &[]);
        let count = pod("http_request_duration_seconds_count", "pay", "pay-1", &[]);
        d.ingest_sample(&sum, 0, 10.0);
        d.ingest_sample(&count, 0, 100.0);
        d.ingest_sample(&sum, S, 16.0);
        d.ingest_sample(&count, S, 130.0);
        for (p, up) in [("pay-1", 1.0), ("pay-2", 1.0), ("pay-3", 0.0)] {
            let k = pod("up", "pay", p, &[("instance", &format!("{p}:8080"))]);
            d.ingest_sample(&k, S, up);
        }
        let out = d.flush(S);
        assert!(close(
            value(&out, "service:http_request_duration_seconds:mean", "pay"),
            0.2
        ));
        assert!(close(value(&out, "service:up:ratio", "pay"), 2.0 / 3.0));
        let up = find(&out, "service:up:ratio", "pay").map(|s| s.promql.as_str());
        assert_eq!(up, Some("avg by (service) (up{service=\"pay\"})"));
    }

    #[test]
    fn a_down_target_leaves_only_its_up_signal() {
        let mut d = SignalDeriver::new();
        let req = pod("http_requests_total", "inv", "inv-1", &[("code", "200")]);
        let up = pod("up", "inv", "inv-1", &[("instance", "inv-1:8080")]);
        d.ingest_sample(&req, 0, 0.0);
        d.ingest_sample(&up, 0, 1.0);
        d.flush(0);
        d.ingest_sample(&up, S, 0.0);
        let out = d.flush(S);
        let metrics: Vec<&str> = out.iter().map(|s| s.key.metric.as_str()).collect();
        assert_eq!(metrics, vec!["service:up:ratio"]);
        assert_eq!(out[0].value, 0.0);
    }

    #[test]
    fn restarts_increase_over_five_minutes() {
        let mut d = SignalDeriver::new();
        let k = pod(
            "kube_pod_container_status_restarts_total",
            "q",
            "q-1",
            &[("container", "q")],
        );
        let mut last = Vec::new();
        // One restart at 1 min and one at 3 min; the window then slides past them.
        for i in 0..=40 {
            let ts = i * S;
            let v = if i >= 12 {
                2.0
            } else if i >= 4 {
                1.0
            } else {
                0.0
            };
            d.ingest_sample(&k, ts, v);
            last.push(value(&d.flush(ts), "service:restarts:increase5m", "q"));
        }
        assert_eq!(last[0], 0.0);
        assert_eq!(last[4], 1.0);
        assert_eq!(last[20], 2.0);
        assert_eq!(last[24], 1.0); // the first restart (at 1 min) left the window at 6 min
        assert_eq!(last[32], 0.0);
    }

    #[test]
    fn saturation_ratios_pair_usage_with_limits() {
        let mut d = SignalDeriver::new();
        let c = [("container", "app")];
        for (p, cpu_inc, mem) in [("db-1", 7.5, 600.0), ("db-2", 3.0, 900.0)] {
            let cpu = pod("container_cpu_usage_seconds_total", "db", p, &c);
            d.ingest_sample(&cpu, 0, 100.0);
            d.ingest_sample(&cpu, S, 100.0 + cpu_inc);
            d.ingest_sample(
                &pod("container_memory_working_set_bytes", "db", p, &c),
                S,
                mem,
            );
            let lim = |r: &'static str, u: &'static str| {
                pod(
                    "kube_pod_container_resource_limits",
                    "db",
                    p,
                    &[("container", "app"), ("resource", r), ("unit", u)],
                )
            };
            d.ingest_sample(&lim("cpu", "core"), 0, 1.0);
            d.ingest_sample(&lim("memory", "byte"), 0, 1000.0);
            // Pod-level cgroup series must not count.
            d.ingest_sample(
                &pod(
                    "container_memory_working_set_bytes",
                    "db",
                    p,
                    &[("container", "")],
                ),
                S,
                5000.0,
            );
        }
        for (m, v0, v1) in [
            ("container_cpu_cfs_periods_total", 0.0, 100.0),
            ("container_cpu_cfs_throttled_periods_total", 0.0, 25.0),
            ("pg_stat_database_xact_commit_total", 0.0, 90.0),
            ("pg_stat_database_xact_rollback_total", 0.0, 10.0),
            ("pg_query_duration_seconds_sum", 0.0, 3.0),
            ("pg_query_duration_seconds_count", 0.0, 100.0),
        ] {
            let k = pod(m, "db", "db-1", &c);
            d.ingest_sample(&k, 0, v0);
            d.ingest_sample(&k, S, v1);
        }
        for (state, n) in [("active", 30.0), ("idle", 20.0)] {
            d.ingest_sample(
                &pod("pg_stat_activity_count", "db", "db-1", &[("state", state)]),
                S,
                n,
            );
        }
        d.ingest_sample(
            &pod("pg_settings_max_connections", "db", "db-1", &[]),
            0,
            100.0,
        );
        let pvc = [("persistentvolumeclaim", "data-db-1")];
        d.ingest_sample(
            &pod("kubelet_volume_stats_available_bytes", "db", "db-1", &pvc),
            S,
            20.0,
        );
        d.ingest_sample(
            &pod("kubelet_volume_stats_capacity_bytes", "db", "db-1", &pvc),
            S,
            80.0,
        );

        let out = d.flush(S);
        assert!(close(
            value(&out, "service:cpu_usage:ratio_limit", "db"),
            0.5
        ));
        assert!(close(
            value(&out, "service:memory_working_set:ratio_limit", "db"),
            0.9
        ));
        assert!(close(
            value(&out, "service:cpu_throttled:ratio", "db"),
            0.25
        ));
        assert!(close(value(&out, "service:pg_rollbacks:ratio", "db"), 0.1));
        assert!(close(
            value(&out, "service:pg_query_duration_seconds:mean", "db"),
            0.03
        ));
        assert!(close(
            value(&out, "service:pg_connections:ratio_max", "db"),
            0.5
        ));
        assert!(close(
            value(&out, "service:volume_available:ratio", "db"),
            0.25
        ));
    }

    #[test]
    fn node_signals_and_placement() {
        let mut d = SignalDeriver::new();
        let node = |m: &str, extra: &[(&str, &str)]| {
            let mut l = vec![
                ("job", "node-exporter"),
                ("node", "n1"),
                ("instance", "10.0.0.1:9100"),
            ];
            l.extend_from_slice(extra);
            SeriesKey::new(m, &l)
        };
        for (mode, inc) in [
            ("idle", 45.0),
            ("user", 10.0),
            ("system", 4.0),
            ("iowait", 1.0),
        ] {
            let k = node("node_cpu_seconds_total", &[("mode", mode)]);
            d.ingest_sample(&k, 0, 1000.0);
            d.ingest_sample(&k, S, 1000.0 + inc);
        }
        d.ingest_sample(&node("up", &[]), S, 1.0);
        d.ingest_sample(&node("node_memory_MemAvailable_bytes", &[]), S, 3.0);
        d.ingest_sample(&node("node_memory_MemTotal_bytes", &[]), S, 12.0);
        d.ingest_sample(
            &node("node_filesystem_avail_bytes", &[("mountpoint", "/")]),
            S,
            10.0,
        );
        d.ingest_sample(
            &node("node_filesystem_size_bytes", &[("mountpoint", "/")]),
            S,
            100.0,
        );
        d.ingest_sample(
            &node("node_filesystem_avail_bytes", &[("mountpoint", "/boot")]),
            S,
            1.0,
        );
        let info = pod("kube_pod_info", "db", "db-1", &[("node", "n1")]);
        d.ingest_sample(&info, S, 1.0);
        let out = d.flush(S);
        assert!(close(value(&out, "node:cpu_busy:ratio", "n1"), 0.25));
        assert_eq!(value(&out, "node:up", "n1"), 1.0);
        assert!(close(
            value(&out, "node:memory_available:ratio", "n1"),
            0.25
        ));
        assert!(close(
            value(&out, "node:filesystem_available:ratio", "n1"),
            0.1
        ));
        let up = find(&out, "node:up", "n1").map(|s| (s.entity.clone(), s.class, s.key.clone()));
        assert_eq!(
            up,
            Some((
                Entity::node("n1"),
                SignalClass::Availability,
                SeriesKey::new("node:up", &[("node", "n1")])
            ))
        );
        assert_eq!(d.placements().collect::<Vec<_>>(), vec![("db", "n1")]);
    }

    #[test]
    fn edge_signals_keep_client_and_server() {
        let mut d = SignalDeriver::new();
        d.flush(0);
        let edge = |client: &str, server: &str, requests, errors, secs| SpanEdge {
            ts: S,
            client: client.into(),
            server: server.into(),
            connection_type: None,
            requests,
            errors,
            duration_seconds_sum: secs,
        };
        d.ingest_span(&edge("checkout", "payments", 300, 30, 60.0));
        d.ingest_span(&edge("frontend", "checkout", 150, 0, 15.0));
        let out = d.flush(S);
        let rate = find(&out, "edge:requests:rate1m", "payments");
        assert_eq!(
            rate.map(|s| &s.key),
            Some(&SeriesKey::new(
                "edge:requests:rate1m",
                &[("client", "checkout"), ("server", "payments")]
            ))
        );
        assert_eq!(rate.map(|s| s.value), Some(20.0));
        assert!(close(value(&out, "edge:errors:ratio", "payments"), 0.1));
        assert!(close(
            value(&out, "edge:duration_seconds:mean", "payments"),
            0.2
        ));
        assert!(
            find(&out, "edge:errors:ratio", "checkout").is_some_and(|s| {
                s.key.label("client") == Some("frontend")
                    && s.promql.contains("client=\"frontend\",server=\"checkout\"")
            })
        );
        // Nothing reported for an edge without calls in the interval.
        assert!(
            d.flush(2 * S)
                .iter()
                .all(|s| !s.key.metric.starts_with("edge:"))
        );
    }

    #[test]
    fn log_error_rate_counts_error_and_fatal_lines() {
        let mut d = SignalDeriver::new();
        let log = |ts, severity| LogRecord {
            ts,
            resource: Resource::service("cart").with("k8s.pod.name", "cart-1"),
            severity,
            body: "x".into(),
            attributes: Default::default(),
        };
        d.ingest_log(&log(1, Severity::Info));
        assert!(
            d.flush(0).is_empty(),
            "no interval length on the first flush"
        );
        for sev in [
            Severity::Error,
            Severity::Fatal,
            Severity::Error,
            Severity::Warn,
            Severity::Info,
        ] {
            d.ingest_log(&log(S - 1, sev));
        }
        let out = d.flush(S);
        assert!(close(
            value(&out, "service:log_errors:rate1m", "cart"),
            3.0 / 15.0
        ));
        assert_eq!(
            find(&out, "service:log_errors:rate1m", "cart").map(|s| s.class),
            Some(SignalClass::Logs)
        );
        // Quiet interval: a zero baseline, not silence.
        assert_eq!(
            value(&d.flush(2 * S), "service:log_errors:rate1m", "cart"),
            0.0
        );
    }

    #[test]
    fn signals_without_inputs_are_absent() {
        let mut d = SignalDeriver::new();
        assert!(d.flush(0).is_empty());
        d.ingest_sample(
            &SeriesKey::new("some_other_metric", &[("service", "x")]),
            S,
            1.0,
        );
        d.ingest_sample(&pod("up", "x", "x-1", &[]), S, f64::NAN);
        assert!(d.flush(S).is_empty());
        assert_eq!(d.rejected_samples(), 1);
    }

    #[test]
    fn stale_series_are_forgotten() {
        let mut d = SignalDeriver::new();
        d.ingest_sample(&pod("up", "x", "x-1", &[]), 0, 1.0);
        d.flush(0);
        assert_eq!(d.series_count(), 1);
        d.ingest_sample(&pod("up", "x", "x-2", &[]), FORGET_SERIES + S, 1.0);
        let out = d.flush(FORGET_SERIES + S);
        assert_eq!(d.series_count(), 1);
        assert_eq!(value(&out, "service:up:ratio", "x"), 1.0);
        d.ingest_sample(&pod("up", "x", "x-2", &[]), FORGET_SERIES + 2 * S, 0.0);
        assert_eq!(
            value(&d.flush(FORGET_SERIES + 2 * S), "service:up:ratio", "x"),
            0.0
        );
    }
}
