//! The simulation loop: each tick moves traffic down the call graph, latency and errors back up,
//! applies the active faults, and writes what the cluster's exporters, logs and events would show.

mod lifecycle;
mod metrics;
mod records;
mod traffic;

use crate::alerts::{AlertEngine, PodObservation};
use crate::cluster::{Cluster, EVICTION_MS, NODE_GRACE_MS};
use crate::scenario::{Scenario, ServiceKind};
use crate::stats::{Moments, derive_seed};
use nightshift_core::{Alert, Change, Event, LogRecord, SeriesKey, SpanEdge};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One scrape interval of telemetry.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Absolute epoch ms; the tick covers the interval `(ts - step, ts]`.
    pub ts: i64,
    /// True for the fault-free history before t=0.
    pub warmup: bool,
    /// `(index into Simulation::series(), value)`; a series is absent when its target is down.
    pub samples: Vec<(u32, f64)>,
    pub logs: Vec<LogRecord>,
    pub spans: Vec<SpanEdge>,
    pub events: Vec<Event>,
    pub changes: Vec<Change>,
    /// Alert notifications: newly firing and newly resolved alerts.
    pub alerts: Vec<Alert>,
}

/// A container is ready this long after it starts.
const READY_DELAY_MS: i64 = 10_000;
/// Every simulated client gives up after this long.
const CLIENT_TIMEOUT_S: f64 = 2.0;
/// Daily traffic swing around the mean, peaking mid-afternoon (UTC).
const DAILY_AMPLITUDE: f64 = 0.35;
const PEAK_HOUR: f64 = 15.0;

const C_DNS: usize = 0;
const C_TLS: usize = 1;
const C_REFUSED: usize = 2;
const C_RESET: usize = 3;
const C_IO_TIMEOUT: usize = 4;
const C_TOO_MANY: usize = 5;
const C_TIMEOUT: usize = 6;
const C_SERVER: usize = 7;

/// Fault effects on one service at one instant.
#[derive(Debug, Clone, Copy)]
struct FaultEffects {
    throttle_mult: f64,
    throttle_ratio: f64,
    db_sat: f64,
    db_factor: f64,
    db_reject: f64,
    db_rollback: f64,
    bad: Option<usize>,
    net_delay: f64,
    crashloop: Option<usize>,
    disk: Option<usize>,
    dns_fail: f64,
    tls_fail: f64,
    leak: Option<usize>,
}

impl FaultEffects {
    const NONE: FaultEffects = FaultEffects {
        throttle_mult: 1.0,
        throttle_ratio: 0.0,
        db_sat: 0.0,
        db_factor: 1.0,
        db_reject: 0.0,
        db_rollback: 0.0,
        bad: None,
        net_delay: 0.0,
        crashloop: None,
        disk: None,
        dns_fail: 0.0,
        tls_fail: 0.0,
        leak: None,
    };
}

#[derive(Debug, Clone, Copy)]
struct CrashLoop {
    waiting: bool,
    next_ms: i64,
    crashes: u32,
}

#[derive(Debug, Clone)]
struct PodState {
    started: bool,
    exists: bool,
    running: bool,
    ready: bool,
    /// Still listed as an endpoint although its node died: calls to it hang until the timeout.
    blackhole: bool,
    ready_when_node_died: bool,
    node_was_down: bool,
    startup_log_pending: bool,
    restarts: f64,
    running_since: i64,
    down_until: i64,
    /// Share of this tick's requests to the pod lost when it died mid-interval.
    crash_loss: f64,
    codes: [f64; 4],
    buckets: [f64; 12],
    h_sum: f64,
    h_count: f64,
    cpu_total: f64,
    periods: f64,
    throttled: f64,
    pg_commit: f64,
    pg_rollback: f64,
    pg_buckets: [f64; 12],
    pg_sum: f64,
    pg_count: f64,
    leak_elapsed: f64,
    leak_ttl: f64,
    leak_extra: f64,
    disk_extra: f64,
    crash: Option<CrashLoop>,
    last_unhealthy: i64,
    // Per-tick results.
    rps: f64,
    util: f64,
    shed: f64,
    own_mean: f64,
    own_err: f64,
    bad_err: f64,
    gc_err: f64,
    down_err: f64,
    err: f64,
    moments: Moments,
    mem_frac: f64,
    cpu: f64,
    last_requests: u64,
    last_errors: u64,
}

impl PodState {
    fn new() -> Self {
        PodState {
            started: false,
            exists: false,
            running: false,
            ready: false,
            blackhole: false,
            ready_when_node_died: false,
            node_was_down: false,
            startup_log_pending: false,
            restarts: 0.0,
            running_since: 0,
            down_until: 0,
            crash_loss: 0.0,
            codes: [0.0; 4],
            buckets: [0.0; 12],
            h_sum: 0.0,
            h_count: 0.0,
            cpu_total: 0.0,
            periods: 0.0,
            throttled: 0.0,
            pg_commit: 0.0,
            pg_rollback: 0.0,
            pg_buckets: [0.0; 12],
            pg_sum: 0.0,
            pg_count: 0.0,
            leak_elapsed: 0.0,
            leak_ttl: 0.0,
            leak_extra: 0.0,
            disk_extra: 0.0,
            crash: None,
            last_unhealthy: i64::MIN / 2,
            rps: 0.0,
            util: 0.0,
            shed: 0.0,
            own_mean: 0.0,
            own_err: 0.0,
            bad_err: 0.0,
            gc_err: 0.0,
            down_err: 0.0,
            err: 0.0,
            moments: Moments::ZERO,
            mem_frac: 0.0,
            cpu: 0.0,
            last_requests: 0,
            last_errors: 0,
        }
    }

    /// A container restart: the kubelet's restart counter goes up and every counter the
    /// container itself exports starts again from zero.
    fn restart(&mut self, at: i64, down_ms: i64) {
        self.restarts += 1.0;
        self.codes = [0.0; 4];
        self.buckets = [0.0; 12];
        self.h_sum = 0.0;
        self.h_count = 0.0;
        self.cpu_total = 0.0;
        self.periods = 0.0;
        self.throttled = 0.0;
        self.pg_commit = 0.0;
        self.pg_rollback = 0.0;
        self.pg_buckets = [0.0; 12];
        self.pg_sum = 0.0;
        self.pg_count = 0.0;
        self.leak_elapsed = 0.0;
        self.leak_ttl = 0.0;
        self.leak_extra = 0.0;
        self.down_until = at + down_ms;
        self.running_since = self.down_until;
        self.startup_log_pending = true;
    }
}

#[derive(Debug, Clone, Default)]
struct ServiceTick {
    inbound: f64,
    attempted: f64,
    served: f64,
    tls: f64,
    unavailable: f64,
    blackhole: f64,
    reject: f64,
    reset: f64,
    moments: Option<Moments>,
    err: f64,
    /// Share of the service's own errors caused by a full disk.
    disk_err: f64,
    ready: Vec<usize>,
    burst_left: u32,
    burst: f64,
}

#[derive(Debug, Clone, Copy)]
struct EdgeTick {
    calls: f64,
    err: f64,
    moments: Moments,
    causes: [f64; 8],
}

#[derive(Debug, Clone)]
struct EdgeInfo {
    client: usize,
    server: usize,
    /// How much of the callee's failure the caller passes on to its own clients.
    alpha: f64,
    per_request: f64,
    connection_type: Option<&'static str>,
}

#[derive(Debug, Clone, Default)]
struct NodeState {
    cpu: [f64; 4],
    was_down: bool,
}

/// A running simulation; iterate it to get one [`Tick`] per scrape interval.
pub struct Simulation {
    cluster: Cluster,
    start_ms: i64,
    first_ms: i64,
    step_ms: i64,
    total_ticks: usize,
    tick: usize,
    rng: ChaCha8Rng,
    pods: Vec<PodState>,
    svc: Vec<ServiceTick>,
    nodes: Vec<NodeState>,
    edges: Vec<EdgeInfo>,
    out_edges: Vec<Vec<usize>>,
    edge_ticks: Vec<EdgeTick>,
    fx: Vec<FaultEffects>,
    alerts: AlertEngine,
    event_cursor: usize,
    change_cursor: usize,
    logs: Vec<LogRecord>,
    events: Vec<Event>,
    pod_obs: Vec<PodObservation>,
}

impl Simulation {
    pub fn new(scenario: &Scenario) -> Simulation {
        let cluster = Cluster::build(scenario);
        let step_ms = scenario.step_ms();
        let total_ticks = scenario.total_ticks();
        let mut edges = Vec::new();
        let mut out_edges = vec![Vec::new(); cluster.services.len()];
        for (c, svc) in cluster.services.iter().enumerate() {
            for (j, &s) in svc.calls.iter().enumerate() {
                let server = &cluster.services[s];
                let per_request = svc.per_request.get(j).copied().unwrap_or(1.0);
                let (alpha, connection_type) = match server.kind {
                    ServiceKind::Service => (0.85, None),
                    ServiceKind::Database => (0.95, Some("database")),
                    // A failing cache is mostly absorbed by falling back to the source of truth.
                    ServiceKind::Cache => (0.3, Some("database")),
                    ServiceKind::Queue => (0.7, Some("messaging_system")),
                };
                out_edges[c].push(edges.len());
                edges.push(EdgeInfo {
                    client: c,
                    server: s,
                    alpha,
                    per_request,
                    connection_type,
                });
            }
        }
        let pods = vec![PodState::new(); cluster.pods.len()];
        let n_svc = cluster.services.len();
        let n_nodes = cluster.nodes.len();
        let n_pods = cluster.pods.len();
        let empty_edge = EdgeTick {
            calls: 0.0,
            err: 0.0,
            moments: Moments::ZERO,
            causes: [0.0; 8],
        };
        Simulation {
            start_ms: scenario.start_ms(),
            first_ms: scenario.start_ms() - scenario.warmup_ms(),
            step_ms,
            total_ticks,
            tick: 0,
            rng: ChaCha8Rng::seed_from_u64(derive_seed(scenario.seed(), "ticks")),
            pods,
            svc: vec![ServiceTick::default(); n_svc],
            nodes: vec![NodeState::default(); n_nodes],
            edge_ticks: vec![empty_edge; edges.len()],
            edges,
            out_edges,
            fx: vec![FaultEffects::NONE; n_svc],
            alerts: AlertEngine::new(n_pods, step_ms),
            event_cursor: 0,
            change_cursor: 0,
            logs: Vec::new(),
            events: Vec::new(),
            pod_obs: vec![PodObservation::ABSENT; n_pods],
            cluster,
        }
    }

    /// Every metric series the simulation emits; `Tick::samples` index into this.
    pub fn series(&self) -> &[SeriesKey] {
        &self.cluster.series
    }

    /// Ticks in the whole run, including warm-up.
    pub fn total_ticks(&self) -> usize {
        self.total_ticks
    }

    /// The scenario's namespace.
    pub fn namespace(&self) -> &str {
        &self.cluster.namespace
    }

    fn step_s(&self) -> f64 {
        self.step_ms as f64 / 1000.0
    }

    fn season(ts: i64) -> f64 {
        let hour = (ts.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
        1.0 + DAILY_AMPLITUDE * (std::f64::consts::TAU * (hour - PEAK_HOUR) / 24.0).cos()
    }

    fn run_tick(&mut self) -> Tick {
        let ts = self.first_ms + self.tick as i64 * self.step_ms;
        let warmup = ts < self.start_ms;
        self.logs.clear();
        self.events.clear();
        self.compute_effects(ts);
        self.update_pods(ts);
        self.traffic(ts);
        self.latency();
        let mut samples = Vec::with_capacity(self.cluster.series.len());
        self.emit_pods(ts, &mut samples);
        let nodes_obs = self.emit_nodes(ts, &mut samples);
        let spans = self.emit_spans(ts);
        self.emit_logs(ts);
        self.emit_probe_events(ts);

        let lo = ts - self.step_ms;
        let mut events = std::mem::take(&mut self.events);
        while self.event_cursor < self.cluster.events.len()
            && self.cluster.events[self.event_cursor].ts <= ts
        {
            let e = &self.cluster.events[self.event_cursor];
            if e.ts > lo || self.tick == 0 {
                events.push(e.clone());
            }
            self.event_cursor += 1;
        }
        for e in &mut events {
            // Follow-up events (a container starting after a crash) may be due just after the scrape.
            e.ts = e.ts.min(ts);
        }
        events.sort_by_key(|e| e.ts);
        let mut changes = Vec::new();
        while self.change_cursor < self.cluster.changes.len()
            && self.cluster.changes[self.change_cursor].ts <= ts
        {
            changes.push(self.cluster.changes[self.change_cursor].clone());
            self.change_cursor += 1;
        }

        for (p, o) in self.pod_obs.iter().enumerate() {
            self.alerts.observe(ts, p, o);
        }
        let notes = self
            .alerts
            .evaluate(ts, &self.cluster, &self.pod_obs, &nodes_obs);
        let alerts = if warmup {
            Vec::new()
        } else if ts - self.step_ms < self.start_ms {
            // Anything already firing when the scenario starts is announced once, in full.
            self.alerts.firing()
        } else {
            notes
        };
        let mut logs = std::mem::take(&mut self.logs);
        logs.sort_by_key(|l| l.ts);
        Tick {
            ts,
            warmup,
            samples,
            logs,
            spans,
            events,
            changes,
            alerts,
        }
    }
}

impl Iterator for Simulation {
    type Item = Tick;

    fn next(&mut self) -> Option<Tick> {
        if self.tick >= self.total_ticks {
            return None;
        }
        let t = self.run_tick();
        self.tick += 1;
        Some(t)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total_ticks - self.tick;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Simulation {}

// Pods are only evicted from a node the controller already considers NotReady.
const _: () = assert!(EVICTION_MS > NODE_GRACE_MS);
