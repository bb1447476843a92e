//! The deriver: raw samples, call edges and log lines in; once per evaluation, every derived
//! signal out, like Prometheus recording rules evaluated on their interval.

use crate::Signal;
use crate::classify::{Classified, Role, Subject, classify};
use crate::promql::{LOOKBACK, RESTART_WINDOW, counter_increase, restart_increase};
use crate::rules::{
    EdgeAcc, EntityAcc, LoggerAcc, Pair, PairAcc, add, edge_signals, max_into, min_into,
    node_signals, service_signals,
};
use nightshift_core::hash::{FingerprintMap, WordHash, series_hash};
use nightshift_core::{Entity, EntityKind, LogRecord, Millis, SeriesKey, Severity, SpanEdge};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Raw series and edges not seen for this long are forgotten, so pod churn does not grow memory.
/// Longer than both windows of [`crate::promql`], so nothing still needed is dropped.
pub(crate) const FORGET_SERIES: Millis = 15 * 60_000;
/// A service that has not logged for this long stops getting a zero log-error baseline.
const FORGET_LOGGER: Millis = 60 * 60_000;

/// Per raw series state: its role, latest sample and what it accumulated since the last flush.
#[derive(Debug)]
pub(crate) struct RawSeries {
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
                let inc = counter_increase(s.value, value);
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
        let Classified {
            role,
            subject,
            join,
            placement,
        } = classify(key);
        if let Some(p) = placement {
            self.placements.insert(p);
        }
        let entity = match subject {
            Some(Subject::Service(name)) => self.service_id(&name),
            Some(Subject::Node(name)) => self.node_id(&name),
            None => 0,
        };
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
}
