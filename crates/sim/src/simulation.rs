//! The simulation loop: each tick moves traffic down the call graph, latency and errors back up,
//! applies the active faults, and writes what the cluster's exporters, logs and events would show.

use crate::alerts::{AlertEngine, NodeObservation, PodObservation};
use crate::cluster::{Cluster, ClusterService, EVICTION_MS, NODE_GRACE_MS, Pod};
use crate::logs::{self, Cause};
use crate::scenario::{FaultKind, Scenario, ServiceKind};
use crate::stats::{BUCKETS, Moments, binomial, count, derive_seed, gauss, jitter, poisson};
use nightshift_core::{Alert, Change, Event, EventType, LogRecord, SeriesKey, Severity, SpanEdge};
use rand::{Rng, SeedableRng};
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

    fn compute_effects(&mut self, ts: i64) {
        self.fx.fill(FaultEffects::NONE);
        for (fi, f) in self.cluster.faults.iter().enumerate() {
            if !f.active(ts) {
                continue;
            }
            let el = (ts - f.start_ms) as f64;
            let sev = f.severity;
            if f.kind == FaultKind::NodeDown {
                continue;
            }
            let fx = &mut self.fx[f.target];
            match f.kind {
                FaultKind::MemoryLeak => fx.leak = Some(fi),
                FaultKind::CpuThrottle => {
                    fx.throttle_mult = 3.0 + 3.0 * sev;
                    fx.throttle_ratio = 0.45 + 0.35 * sev;
                }
                FaultKind::DbSaturation => {
                    // Connections pile up over a minute or two rather than in one scrape.
                    fx.db_sat = (el / 90_000.0).min(1.0);
                    fx.db_factor = 10.0 + 20.0 * sev;
                    fx.db_reject = 0.04 + 0.08 * sev;
                    fx.db_rollback = 0.04 + 0.08 * sev;
                }
                FaultKind::BadDeploy => fx.bad = Some(fi),
                FaultKind::NetworkLatency => {
                    fx.net_delay = (0.2 + 0.6 * sev) * (el / 20_000.0).min(1.0)
                }
                FaultKind::PodCrashloop => fx.crashloop = Some(fi),
                FaultKind::DiskFull => fx.disk = Some(fi),
                // Cached resolutions expire within a TTL or so.
                FaultKind::DnsFailure => {
                    fx.dns_fail = (0.8 + 0.15 * sev) * (el / 30_000.0).min(1.0)
                }
                // Pooled connections made before expiry keep working until they are recycled.
                FaultKind::CertExpiry => fx.tls_fail = 0.6 + 0.37 * (el / 180_000.0).min(1.0),
                FaultKind::NodeDown => {}
            }
        }
    }

    fn update_pods(&mut self, ts: i64) {
        let step = self.step_ms;
        for p in 0..self.pods.len() {
            let pod = &self.cluster.pods[p];
            let svc = &self.cluster.services[pod.service];
            let fx = self.fx[pod.service];
            let st = &mut self.pods[p];
            st.crash_loss = 0.0;
            st.blackhole = false;
            st.exists = pod.from_ms <= ts && ts < pod.to_ms;
            if !st.exists {
                st.running = false;
                st.ready = false;
                continue;
            }
            if !st.started {
                st.started = true;
                let initial = pod.from_ms <= self.first_ms;
                st.running_since = if initial {
                    pod.from_ms - 86_400_000
                } else {
                    pod.from_ms + 3_000
                };
                st.down_until = st.running_since;
                st.startup_log_pending = !initial;
            }
            if let Some(since) = self.cluster.node_down_since(pod.node, ts) {
                if !st.node_was_down {
                    st.node_was_down = true;
                    st.ready_when_node_died = st.ready;
                }
                st.running = false;
                st.ready = false;
                st.blackhole = st.ready_when_node_died && ts - since < NODE_GRACE_MS;
                continue;
            }
            if st.node_was_down {
                // The node rebooted; its containers start again.
                st.node_was_down = false;
                st.restart(ts - step / 2, 20_000);
                self.events.push(pod_event(
                    ts - step / 2 + 1_000,
                    EventType::Normal,
                    "SandboxChanged",
                    pod,
                    "Pod sandbox changed, it will be killed and re-created.".to_string(),
                ));
            }

            let crashing = fx
                .crashloop
                .filter(|_| pod.slot < crashing_replicas(svc.replicas));
            if let Some(fi) = crashing {
                let fault_start = self.cluster.faults[fi].start_ms;
                let offset = (nightshift_core::fnv1a(pod.name.as_bytes()) % 45_000) as i64;
                if st.crash.is_none() && ts >= fault_start + offset {
                    st.crash = Some(CrashLoop {
                        waiting: false,
                        next_ms: fault_start + offset,
                        crashes: 0,
                    });
                }
                if let Some(mut cr) = st.crash {
                    let was_ready = st.ready;
                    while cr.next_ms <= ts {
                        let t = cr.next_ms;
                        if cr.waiting {
                            cr.waiting = false;
                            let run_ms = 3_000
                                + ((nightshift_core::fnv1a(pod.name.as_bytes()) >> 8) % 5_000)
                                    as i64;
                            cr.next_ms = t + run_ms;
                            for (sev, body) in logs::startup_lines(svc, pod) {
                                self.logs.push(log(t, pod, sev, body));
                            }
                            container_start_events(&mut self.events, t, pod, svc);
                        } else {
                            if cr.crashes == 0 && was_ready {
                                st.crash_loss = (3_000.0 / step as f64).min(1.0);
                            }
                            st.restart(t, 0);
                            st.startup_log_pending = false;
                            self.logs.push(log(
                                t,
                                pod,
                                Severity::Fatal,
                                logs::crash_line(svc, &self.cluster.namespace),
                            ));
                            let backoff = (10_000i64 << cr.crashes.min(5)).min(300_000);
                            cr.crashes += 1;
                            cr.waiting = true;
                            cr.next_ms = t + backoff;
                            if cr.crashes >= 2 {
                                let msg = format!(
                                    "Back-off restarting failed container {} in pod {}_{}",
                                    svc.name, pod.name, self.cluster.namespace
                                );
                                self.events.push(pod_event(
                                    t + 1_000,
                                    EventType::Warning,
                                    "BackOff",
                                    pod,
                                    msg,
                                ));
                            }
                        }
                    }
                    st.crash = Some(cr);
                    st.running = false;
                    st.ready = false;
                    continue;
                }
            } else if let Some(cr) = st.crash.take() {
                // The cause is gone: the next start succeeds.
                let start = if cr.waiting { cr.next_ms } else { ts };
                st.down_until = start;
                st.running_since = start;
                st.startup_log_pending = true;
            }

            let running = ts >= st.down_until;
            if running && st.startup_log_pending {
                st.startup_log_pending = false;
                let t = st.down_until.max(ts - step + 1);
                for (sev, body) in logs::startup_lines(svc, pod) {
                    self.logs.push(log(t, pod, sev, body));
                }
            }

            if let Some(fi) = fx.leak {
                if running {
                    if st.leak_ttl <= 0.0 {
                        let sev = self.cluster.faults[fi].severity;
                        let h = nightshift_core::fnv1a(
                            format!("{}/{}", pod.name, st.restarts).as_bytes(),
                        );
                        let u = (h % 1000) as f64 / 1000.0;
                        // 15-30 minutes from a fresh start to the limit.
                        st.leak_ttl = (15.0 + 15.0 * (0.6 * u + 0.4 * (1.0 - sev))) * 60_000.0;
                    }
                    st.leak_elapsed += step as f64;
                    let x = st.leak_elapsed / st.leak_ttl;
                    if x >= 1.0 {
                        let oom_at =
                            ts - ((st.leak_elapsed - st.leak_ttl) as i64).clamp(0, step - 1);
                        if let Some(line) = logs::oom_line(svc) {
                            self.logs
                                .push(log(oom_at - 200, pod, Severity::Fatal, line));
                        }
                        let limit_mib = (svc.mem_limit / 1_048_576.0) as u64;
                        self.events.push(pod_event(
                            oom_at,
                            EventType::Warning,
                            "OOMKilled",
                            pod,
                            format!("Container {} in pod {} was OOMKilled (exit code 137): memory limit {limit_mib}Mi exceeded", svc.name, pod.name),
                        ));
                        if st.ready {
                            st.crash_loss = (3_000.0 / step as f64).min(1.0);
                        }
                        let down = if svc.lang == crate::cluster::Lang::Java {
                            35_000
                        } else {
                            20_000
                        };
                        st.restart(oom_at, down);
                        container_start_events(&mut self.events, oom_at + 1_000, pod, svc);
                    } else {
                        st.leak_extra = leak_curve(x, svc.mem_base_frac) - svc.mem_base_frac;
                    }
                }
            } else if st.leak_extra > 0.0 {
                // The leaking code path is off again; the heap shrinks back over a couple of minutes.
                st.leak_extra *= (-(step as f64) / 60_000.0).exp();
                st.leak_elapsed = 0.0;
                st.leak_ttl = 0.0;
                if st.leak_extra < 0.002 {
                    st.leak_extra = 0.0;
                }
            }

            if svc.statefulset {
                match fx.disk {
                    Some(fi) => {
                        let f = &self.cluster.faults[fi];
                        let h =
                            (nightshift_core::fnv1a(pod.name.as_bytes()) % 1000) as f64 / 1000.0;
                        let fill_ms = (5.0 + 4.0 * f.severity) * 60_000.0 * (0.9 + 0.2 * h);
                        let prog = ((ts - f.start_ms) as f64 / fill_ms).clamp(0.0, 1.0);
                        let base = volume_base_used(svc, ts - self.first_ms);
                        st.disk_extra = (1.0 - base) * prog.powf(1.3);
                    }
                    None => {
                        st.disk_extra *= (-(step as f64) / 45_000.0).exp();
                    }
                }
            }

            st.running = ts >= st.down_until;
            st.ready = st.running && ts >= st.running_since + READY_DELAY_MS;
        }
    }

    fn traffic(&mut self, ts: i64) {
        let season = Self::season(ts);
        let step_s = self.step_s();
        for s in 0..self.svc.len() {
            self.svc[s].inbound = 0.0;
        }
        let topo = self.cluster.topo.clone();
        for &s in &topo {
            let svc = &self.cluster.services[s];
            let fx = self.fx[s];
            let mut attempted = self.svc[s].inbound;
            if svc.entry_rps > 0.0 {
                let t = &mut self.svc[s];
                if t.burst_left > 0 {
                    t.burst_left -= 1;
                } else if self.rng.random_bool((0.002 * step_s / 15.0).min(0.5)) {
                    // A short harmless burst (a marketing push, a retrying client) of at most ~30 s.
                    t.burst_left = if step_s <= 15.0 {
                        self.rng.random_range(0..2)
                    } else {
                        0
                    };
                    t.burst =
                        1.0 + (0.2 + 0.2 * self.rng.random::<f64>()) * (15.0 / step_s).min(1.0);
                } else {
                    t.burst = 1.0;
                }
                attempted += svc.entry_rps * season * jitter(&mut self.rng, 0.03) * t.burst;
            }
            let t = &mut self.svc[s];
            t.attempted = attempted;
            t.ready.clear();
            let mut blackholed = 0usize;
            let mut loss = 0.0;
            let mut crashed = 0usize;
            for &p in &self.cluster.pods_of[s] {
                let st = &self.pods[p];
                if st.ready {
                    t.ready.push(p);
                } else if st.blackhole {
                    blackholed += 1;
                }
                if st.crash_loss > 0.0 {
                    loss += st.crash_loss;
                    crashed += 1;
                }
            }
            let endpoints = t.ready.len() + blackholed + crashed;
            t.unavailable = if t.ready.is_empty() && blackholed == 0 {
                1.0
            } else {
                0.0
            };
            t.blackhole = if endpoints > 0 {
                blackholed as f64 / endpoints as f64
            } else {
                0.0
            };
            t.reset = if endpoints > 0 {
                loss / endpoints as f64
            } else {
                0.0
            };
            t.tls = fx.tls_fail;
            t.reject = if svc.kind == ServiceKind::Database {
                fx.db_reject * fx.db_sat
            } else {
                0.0
            };
            let served = attempted
                * (1.0 - t.tls)
                * (1.0 - t.unavailable)
                * (1.0 - t.blackhole)
                * (1.0 - t.reject)
                * (1.0 - t.reset);
            t.served = served;
            let n_ready = t.ready.len().max(1) as f64;
            let mut passed = 0.0;
            for &p in &t.ready {
                let st = &mut self.pods[p];
                st.rps = served / n_ready * jitter(&mut self.rng, 0.02);
                st.util = st.rps / svc.capacity_per_pod;
                st.shed = if st.util > 1.0 {
                    1.0 - 1.0 / st.util
                } else {
                    0.0
                };
                passed += st.rps * (1.0 - st.shed);
            }
            for &e in &self.out_edges[s] {
                let k = self.edges[e].server;
                let calls = passed * self.edges[e].per_request * jitter(&mut self.rng, 0.01);
                self.edge_ticks[e].calls = calls;
                self.svc[k].inbound += calls * (1.0 - fx.dns_fail);
            }
        }
        for p in 0..self.pods.len() {
            if !self.pods[p].ready {
                self.pods[p].rps = 0.0;
                self.pods[p].util = 0.0;
                self.pods[p].shed = 0.0;
            }
        }
    }

    fn edge(&self, e: usize) -> EdgeTick {
        let info = &self.edges[e];
        let client_fx = self.fx[info.client];
        let server_fx = self.fx[info.server];
        let server = &self.svc[info.server];
        let calls = self.edge_ticks[e].calls;
        let mut causes = [0.0; 8];
        let mut rest = 1.0;
        for (c, share) in [
            (C_DNS, client_fx.dns_fail),
            (C_TLS, server.tls),
            (C_REFUSED, server.unavailable),
            (C_IO_TIMEOUT, server.blackhole),
            (C_TOO_MANY, server.reject),
            (C_RESET, server.reset),
        ] {
            causes[c] = rest * share;
            rest -= causes[c];
        }
        let reach = rest.max(0.0);
        let mut seen = server
            .moments
            .unwrap_or(Moments::with_cv(0.001, 0.5))
            .shifted(0.0005);
        if server_fx.net_delay > 0.0 {
            // Jitter and retransmits make the added delay anything but constant.
            seen = seen.then(Moments::with_cv(server_fx.net_delay, 0.6));
        }
        if server_fx.db_sat > 0.0 {
            // Waiting for a pooled connection comes on top of the query itself.
            seen = seen.then(Moments::with_cv(seen.mean * 0.5 * server_fx.db_sat, 1.0));
        }
        let (p_to, truncated) = seen.truncated(CLIENT_TIMEOUT_S);
        causes[C_TIMEOUT] = reach * p_to;
        causes[C_SERVER] = reach * (1.0 - p_to) * server.err;
        let err: f64 = causes.iter().sum::<f64>().min(1.0);
        let fast = |mean: f64| Moments::with_cv(mean, 0.5);
        let parts = [
            (causes[C_DNS], fast(0.002)),
            (causes[C_TLS], fast(0.006)),
            (causes[C_REFUSED], fast(0.001)),
            (
                causes[C_IO_TIMEOUT],
                Moments {
                    mean: CLIENT_TIMEOUT_S,
                    m2: CLIENT_TIMEOUT_S * CLIENT_TIMEOUT_S,
                },
            ),
            (causes[C_TOO_MANY], fast(0.004)),
            (causes[C_RESET], fast(0.02)),
            (reach, truncated),
        ];
        let mut moments = Moments::ZERO;
        for (w, m) in parts {
            moments.mean += w * m.mean;
            moments.m2 += w * m.m2;
        }
        EdgeTick {
            calls,
            err,
            moments,
            causes,
        }
    }

    fn latency(&mut self) {
        let topo = self.cluster.topo.clone();
        let blip_p = (0.0015 * self.step_s() / 15.0).min(0.2);
        for &s in topo.iter().rev() {
            let mut down = Moments::ZERO;
            let mut survive = 1.0;
            for i in 0..self.out_edges[s].len() {
                let e = self.out_edges[s][i];
                let et = self.edge(e);
                self.edge_ticks[e] = et;
                let r = self.edges[e].per_request;
                down = down.then(et.moments.repeated(r));
                // Whole calls fail independently; a fractional call only happens on that share of requests.
                let fail = self.edges[e].alpha * et.err;
                survive *= (1.0 - fail).powi(r.floor() as i32) * (1.0 - r.fract() * fail);
            }
            let down_err = 1.0 - survive;
            let svc = &self.cluster.services[s];
            let fx = self.fx[s];
            let is_db = svc.kind == ServiceKind::Database;
            let disk_err = if svc.statefulset {
                self.disk_error(s)
            } else {
                0.0
            };
            let (mut w_sum, mut mean_sum, mut m2_sum, mut err_sum) = (0.0, 0.0, 0.0, 0.0);
            for i in 0..self.svc[s].ready.len() {
                let p = self.svc[s].ready[i];
                let pod = &self.cluster.pods[p];
                let blip = if self.rng.random_bool(blip_p) {
                    2.5 + 2.0 * self.rng.random::<f64>()
                } else {
                    1.0
                };
                let st = &mut self.pods[p];
                let mem_frac = svc.mem_base_frac + st.leak_extra;
                let gc = 1.0 + 4.0 * ((mem_frac - 0.8) / 0.2).max(0.0).powi(2);
                // A throttled container gets less CPU per request, so it queues as if busier.
                let u = (st.util * if fx.throttle_mult > 1.0 { 1.5 } else { 1.0 }).min(0.95);
                let queueing = 1.0 + 0.5 * u * u / (1.0 - u);
                let bad = fx.bad.filter(|fi| {
                    self.cluster.faults[*fi].bad_version.as_deref() == Some(pod.version.as_str())
                });
                let (bad_err, bad_lat) = match bad {
                    Some(fi) => {
                        let sev = self.cluster.faults[fi].severity;
                        (0.10 + 0.30 * sev, 1.0 + 0.5 * sev)
                    }
                    None => (0.0, 1.0),
                };
                let db = if is_db {
                    1.0 + (fx.db_factor - 1.0) * fx.db_sat
                } else {
                    1.0
                };
                let own_mean =
                    svc.latency_s * queueing * fx.throttle_mult * gc * blip * bad_lat * db;
                // CFS throttling stalls requests for the rest of a 100 ms period: a long tail.
                let cv = if is_db {
                    0.8 + 0.7 * fx.db_sat
                } else if fx.throttle_mult > 1.0 {
                    1.2
                } else {
                    0.5
                };
                let own = Moments::with_cv(own_mean, cv);
                let mut total = own.then(down);
                st.gc_err = 0.02 * (gc - 1.0) / 4.0;
                st.bad_err = bad_err;
                st.own_err =
                    (svc.error_rate * jitter(&mut self.rng, 0.3) + bad_err + st.gc_err + disk_err)
                        .min(1.0);
                st.down_err = down_err;
                let mut err = 1.0 - (1.0 - st.own_err) * (1.0 - down_err);
                if st.shed > 0.0 {
                    total = total.mix(Moments::with_cv(0.003, 0.5), st.shed);
                    err = st.shed + (1.0 - st.shed) * err;
                }
                st.own_mean = own_mean;
                st.moments = total;
                st.err = err;
                w_sum += st.rps;
                mean_sum += st.rps * total.mean;
                m2_sum += st.rps * total.m2;
                err_sum += st.rps * err;
            }
            let t = &mut self.svc[s];
            t.disk_err = disk_err;
            if w_sum > 0.0 {
                t.moments = Some(Moments {
                    mean: mean_sum / w_sum,
                    m2: m2_sum / w_sum,
                });
                t.err = err_sum / w_sum;
            } else {
                t.moments = None;
                t.err = 0.0;
            }
        }
    }

    /// Share of a stateful service's requests that fail because its volume is full.
    fn disk_error(&self, s: usize) -> f64 {
        // After the fault the volume drains back over a minute; writes keep failing until it has.
        let Some(fi) = self.fx[s].disk.or_else(|| {
            self.cluster.pods_of[s]
                .iter()
                .any(|p| self.pods[*p].disk_extra > 0.0)
                .then_some(usize::MAX)
        }) else {
            return 0.0;
        };
        let write_share = self
            .cluster
            .faults
            .get(fi)
            .map_or(0.4, |f| 0.3 + 0.3 * f.severity);
        let mut worst: f64 = 0.0;
        let svc = &self.cluster.services[s];
        for &p in &self.cluster.pods_of[s] {
            let st = &self.pods[p];
            if !st.exists {
                continue;
            }
            let avail = 1.0 - svc.pvc_base_used - st.disk_extra;
            // Writes start failing in the last half percent, all of them once it is gone.
            let f = ((0.005 - avail) / 0.004).clamp(0.0, 1.0);
            worst = worst.max(f);
        }
        worst * write_share
    }

    fn emit_pods(&mut self, ts: i64, samples: &mut Vec<(u32, f64)>) {
        let step_s = self.step_s();
        let since_first = ts - self.first_ms;
        for p in 0..self.pods.len() {
            let pod = &self.cluster.pods[p];
            let svc = &self.cluster.services[pod.service];
            let fx = self.fx[pod.service];
            let st = &mut self.pods[p];
            let obs = &mut self.pod_obs[p];
            *obs = PodObservation::ABSENT;
            st.last_requests = 0;
            st.last_errors = 0;
            if !st.exists {
                continue;
            }
            let node_up = !self.cluster.node_is_down(pod.node, ts);
            let se = &pod.series;
            samples.push((se.up, if st.running { 1.0 } else { 0.0 }));
            samples.push((se.info, 1.0));
            samples.push((se.restarts, st.restarts));
            samples.push((se.limit_cpu, svc.cpu_limit));
            samples.push((se.limit_mem, svc.mem_limit));
            obs.exists = true;
            obs.restarts = st.restarts;
            if node_up && let Some([avail, cap]) = se.pvc {
                let used = volume_base_used(svc, since_first) + st.disk_extra;
                let free = ((1.0 - used) * svc.pvc_capacity).max(0.0);
                let free = if free < 1.0 {
                    0.0
                } else {
                    (free / 4096.0).floor() * 4096.0
                };
                samples.push((avail, free));
                samples.push((cap, svc.pvc_capacity));
                obs.volume_available_ratio = Some(free / svc.pvc_capacity);
            }
            if !st.running {
                continue;
            }
            obs.scraped = true;
            let rng = &mut self.rng;

            // CPU: follows load loosely; pinned at the limit when throttled.
            let gc_excess = ((svc.mem_base_frac + st.leak_extra - 0.8) / 0.2)
                .max(0.0)
                .powi(2);
            let mut cpu = svc.cpu_limit * (0.04 + 0.7 * st.util.min(1.3)) * jitter(rng, 0.05)
                + svc.cpu_limit * 0.25 * gc_excess;
            if fx.db_sat > 0.0 {
                cpu += (svc.cpu_limit * 0.9 - cpu).max(0.0) * fx.db_sat;
            }
            let throttle_ratio = if fx.throttle_mult > 1.0 {
                cpu = svc.cpu_limit * (0.96 + 0.035 * rng.random::<f64>());
                (fx.throttle_ratio * jitter(rng, 0.08)).min(0.98)
            } else {
                (0.003 + 0.5 * (cpu / svc.cpu_limit - 0.6).max(0.0).powi(2)) * jitter(rng, 0.2)
            };
            cpu = cpu.min(svc.cpu_limit);
            st.cpu = cpu;
            st.cpu_total += cpu * step_s;
            let periods = (step_s * 10.0 * (0.6 + 0.4 * (cpu / svc.cpu_limit).min(1.0))).round();
            st.periods += periods;
            st.throttled += (periods * throttle_ratio).round();
            samples.push((se.cpu, st.cpu_total));
            samples.push((se.periods, st.periods));
            samples.push((se.throttled, st.throttled));
            obs.cfs_periods = st.periods;
            obs.cfs_throttled = st.throttled;

            // Memory: a baseline, a little load, a GC sawtooth, and whatever leaks.
            let period_ms = 90_000 + (nightshift_core::fnv1a(pod.name.as_bytes()) % 60_000) as i64;
            let saw = 0.03 * ((ts.rem_euclid(period_ms)) as f64 / period_ms as f64);
            let load = 0.04 * (st.util / 0.45 - 1.0).clamp(-1.0, 1.0);
            let mem_frac = (svc.mem_base_frac + load + saw + st.leak_extra + 0.004 * gauss(rng))
                .clamp(0.05, 0.998);
            st.mem_frac = mem_frac;
            samples.push((se.mem, (mem_frac * svc.mem_limit / 4096.0).round() * 4096.0));
            obs.memory_ratio = Some(mem_frac);

            if let Some(h) = &se.http {
                let n = count(rng, st.rps * step_s);
                let n5 = binomial(rng, n, st.err);
                let shed_part = st.shed;
                let own_part = (1.0 - st.shed) * st.own_err;
                let down_part = (1.0 - st.shed) * (1.0 - st.own_err) * st.down_err;
                let total = shed_part + own_part + down_part;
                let p503 = if total > 0.0 {
                    (shed_part + 0.7 * down_part + 0.1 * own_part) / total
                } else {
                    0.5
                };
                let n503 = binomial(rng, n5, p503);
                let n500 = n5 - n503;
                let n404 = binomial(rng, n - n5, 0.004);
                let n200 = n - n5 - n404;
                for (i, c) in [n200, n404, n500, n503].into_iter().enumerate() {
                    st.codes[i] += c as f64;
                    samples.push((h.codes[i], st.codes[i]));
                }
                let nf = n as f64;
                for (i, le) in BUCKETS.iter().enumerate() {
                    st.buckets[i] += (nf * st.moments.cdf(*le)).round();
                }
                st.buckets[11] += nf;
                for i in 0..12 {
                    samples.push((h.buckets[i], st.buckets[i]));
                }
                st.h_sum += nf * st.moments.mean * jitter(rng, 0.02);
                st.h_count += nf;
                samples.push((h.sum, st.h_sum));
                samples.push((h.count, st.h_count));
                st.last_requests = n;
                st.last_errors = n5;
                obs.requests = st.h_count;
                obs.errors = st.codes[2] + st.codes[3];
                obs.buckets = st.buckets;
            }

            if let Some(pg) = &se.pg {
                let queries = count(rng, st.rps * step_s);
                let disk = self.svc[pod.service].disk_err;
                let rollback_ratio = (0.003 + fx.db_rollback * fx.db_sat + 0.9 * disk).min(1.0);
                let rollbacks = binomial(rng, queries, rollback_ratio);
                st.pg_commit += (queries - rollbacks) as f64;
                st.pg_rollback += rollbacks as f64;
                let own = Moments::with_cv(st.own_mean.max(1e-5), 0.8 + 0.7 * fx.db_sat);
                let qf = queries as f64;
                for (i, le) in BUCKETS.iter().enumerate() {
                    st.pg_buckets[i] += (qf * own.cdf(*le)).round();
                }
                st.pg_buckets[11] += qf;
                st.pg_sum += qf * own.mean * jitter(rng, 0.02);
                st.pg_count += qf;
                let max = svc.max_connections;
                let busy = (st.rps * st.own_mean * 3.0 + 2.0 + gauss(rng)).clamp(1.0, max);
                let active = (busy
                    + (max * (0.95 + 0.03 * rng.random::<f64>()) - busy) * fx.db_sat)
                    .round()
                    .min(max);
                let idle_base = (max * 0.28 + 2.0 * gauss(rng)).round().max(0.0);
                let idle = (idle_base * (1.0 - fx.db_sat)
                    + (max - active - 1.0).max(0.0) * fx.db_sat)
                    .round()
                    .min(max - active)
                    .max(0.0);
                samples.push((pg.active, active));
                samples.push((pg.idle, idle));
                samples.push((pg.max, max));
                samples.push((pg.commit, st.pg_commit));
                samples.push((pg.rollback, st.pg_rollback));
                for i in 0..12 {
                    samples.push((pg.buckets[i], st.pg_buckets[i]));
                }
                samples.push((pg.sum, st.pg_sum));
                samples.push((pg.count, st.pg_count));
                obs.pg_sum = st.pg_sum;
                obs.pg_count = st.pg_count;
                obs.pg_connections_ratio = Some((active + idle) / max);
                st.last_requests = queries;
                st.last_errors = rollbacks;
            }
        }
    }

    fn emit_nodes(&mut self, ts: i64, samples: &mut Vec<(u32, f64)>) -> Vec<NodeObservation> {
        let step_s = self.step_s();
        let since_first = (ts - self.first_ms) as f64;
        let mut out = Vec::with_capacity(self.nodes.len());
        for n in 0..self.nodes.len() {
            let info = &self.cluster.nodes[n];
            let se = &info.series;
            if let Some(since) = self.cluster.node_down_since(n, ts) {
                self.nodes[n].was_down = true;
                let ready = ts - since < NODE_GRACE_MS;
                samples.push((se.up, 0.0));
                samples.push((se.ready, if ready { 1.0 } else { 0.0 }));
                out.push(NodeObservation {
                    up: false,
                    ready,
                    filesystem_available_ratio: None,
                });
                continue;
            }
            if self.nodes[n].was_down {
                // Counters since boot start again after the reboot.
                self.nodes[n].was_down = false;
                self.nodes[n].cpu = [0.0; 4];
            }
            let (mut busy, mut ws, mut iowait) = (0.3, 0.0, info.cores * 0.01);
            for (p, pod) in self.cluster.pods.iter().enumerate() {
                let st = &self.pods[p];
                if pod.node != n || !st.running {
                    continue;
                }
                let svc = &self.cluster.services[pod.service];
                busy += st.cpu;
                ws += st.mem_frac * svc.mem_limit;
                if svc.statefulset {
                    iowait += 0.6 * self.fx[pod.service].db_sat
                        + if st.disk_extra > 0.0 { 0.8 } else { 0.0 };
                }
            }
            let busy = (busy * jitter(&mut self.rng, 0.03)).min(info.cores * 0.98);
            let iowait = (iowait * jitter(&mut self.rng, 0.1))
                .min(info.cores - busy)
                .max(0.0);
            let idle = (info.cores - busy - iowait).max(0.0);
            let shares = [idle, busy * 0.72, busy * 0.28, iowait];
            for ((total, share), series) in self.nodes[n].cpu.iter_mut().zip(shares).zip(se.cpu) {
                *total += share * step_s;
                samples.push((series, *total));
            }
            let page_cache = info.mem_total * (0.12 + 0.01 * gauss(&mut self.rng));
            let mem_avail = (info.mem_total - 2.5 * 1_073_741_824.0 - ws - page_cache * 0.3)
                .max(info.mem_total * 0.02);
            let fs_used = info.fs_used_frac + 0.004 * since_first / 3_600_000.0;
            let fs_avail = ((1.0 - fs_used) * info.fs_size / 4096.0).round() * 4096.0;
            samples.push((se.up, 1.0));
            samples.push((se.mem_available, mem_avail.round()));
            samples.push((se.mem_total, info.mem_total));
            samples.push((se.fs_avail, fs_avail));
            samples.push((se.fs_size, info.fs_size));
            samples.push((se.ready, 1.0));
            out.push(NodeObservation {
                up: true,
                ready: true,
                filesystem_available_ratio: Some(fs_avail / info.fs_size),
            });
        }
        out
    }

    fn emit_spans(&mut self, ts: i64) -> Vec<SpanEdge> {
        let step_s = self.step_s();
        let mut spans = Vec::with_capacity(self.edges.len());
        for (e, info) in self.edges.iter().enumerate() {
            let et = &self.edge_ticks[e];
            let requests = count(&mut self.rng, et.calls * step_s);
            if requests == 0 {
                continue;
            }
            let errors = binomial(&mut self.rng, requests, et.err);
            spans.push(SpanEdge {
                ts,
                client: self.cluster.services[info.client].name.clone(),
                server: self.cluster.services[info.server].name.clone(),
                connection_type: info.connection_type.map(str::to_string),
                requests,
                errors,
                duration_seconds_sum: requests as f64
                    * et.moments.mean
                    * jitter(&mut self.rng, 0.02),
            });
        }
        spans
    }

    fn emit_logs(&mut self, ts: i64) {
        let step_s = self.step_s();
        let scale = step_s / 15.0;
        let expiry: Vec<String> = self
            .cluster
            .faults
            .iter()
            .map(|f| {
                if f.kind == FaultKind::CertExpiry {
                    rfc3339(f.start_ms / 1000 - 1)
                } else {
                    String::new()
                }
            })
            .collect();
        let mut causes: Vec<(Cause, Option<usize>, f64)> = Vec::new();
        for p in 0..self.pods.len() {
            let st = &self.pods[p];
            if !st.running {
                continue;
            }
            let pod = &self.cluster.pods[p];
            let s = pod.service;
            let svc = &self.cluster.services[s];
            let fx = self.fx[s];
            let lo = ts - self.step_ms;
            let rng = &mut self.rng;
            let step_ms = self.step_ms;
            let at = move |rng: &mut ChaCha8Rng| lo + 1 + rng.random_range(0..step_ms);
            let info_rate = if svc.has_http() {
                2.0 * (st.util / 0.3).clamp(0.5, 1.5)
            } else {
                0.6
            };
            for _ in 0..poisson(rng, info_rate * scale) {
                let body = logs::info_line(rng, svc, st.moments.mean.max(st.own_mean));
                self.logs.push(log(at(rng), pod, Severity::Info, body));
            }
            if rng.random_bool((0.02 * scale).min(1.0)) {
                let body = logs::routine_warning(rng, svc);
                self.logs.push(log(at(rng), pod, Severity::Warn, body));
            }
            if st.mem_frac > 0.85 && svc.kind == ServiceKind::Service {
                for _ in 0..poisson(rng, 1.5 * scale * (st.mem_frac - 0.85) / 0.15) {
                    let body = logs::memory_warning(rng, svc, st.mem_frac);
                    self.logs.push(log(at(rng), pod, Severity::Warn, body));
                }
            }
            // Slowness the pod notices: slow queries on a database, slow upstreams or slow handlers elsewhere.
            let slow_own = st.own_mean > 5.0 * svc.latency_s && st.own_mean > 0.05;
            let slowest = self.out_edges[s]
                .iter()
                .map(|e| (self.edges[*e].server, self.edge_ticks[*e].moments.mean))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let slow_peer = slowest.filter(|(_, m)| *m > 0.25);
            if slow_own || slow_peer.is_some() {
                for _ in 0..poisson(rng, 1.2 * scale) {
                    let (lat, peer) = match slow_peer {
                        Some((k, m)) if !slow_own => (m, Some(&self.cluster.services[k])),
                        _ => (st.own_mean, None),
                    };
                    let body = logs::slow_warning(rng, svc, lat, peer);
                    self.logs.push(log(at(rng), pod, Severity::Warn, body));
                }
            }

            if !svc.has_http() {
                let t = &self.svc[s];
                let share = 1.0 / t.ready.len().max(1) as f64;
                let rejected = t.attempted * t.reject * share * step_s;
                if rejected > 0.0 {
                    for _ in 0..poisson(rng, (rejected * 0.05).min(25.0)) {
                        self.logs.push(log(
                            at(rng),
                            pod,
                            Severity::Error,
                            logs::too_many_clients_server_line(),
                        ));
                    }
                }
                let disk_fails = st.rps * t.disk_err * step_s;
                if disk_fails > 0.0
                    || (fx.disk.is_some()
                        && st.disk_extra > 0.0
                        && 1.0 - svc.pvc_base_used - st.disk_extra < 0.01)
                {
                    for _ in 0..poisson(rng, (disk_fails * 0.05).clamp(0.5, 25.0)) {
                        let body = logs::disk_full_line(rng, svc);
                        self.logs.push(log(at(rng), pod, Severity::Error, body));
                    }
                }
                continue;
            }

            if st.last_errors == 0 {
                continue;
            }
            causes.clear();
            let base_err = (st.own_err - st.bad_err - st.gc_err).max(0.0);
            causes.push((Cause::Generic, None, base_err));
            causes.push((Cause::BadDeploy, None, st.bad_err));
            causes.push((Cause::GcPressure, None, st.gc_err));
            causes.push((Cause::Overloaded, None, st.shed * 3.0));
            for &e in &self.out_edges[s] {
                let et = &self.edge_ticks[e];
                let k = self.edges[e].server;
                let a = self.edges[e].alpha;
                let server_cause = if self.svc[k].disk_err > 0.0 {
                    Cause::PeerDiskFull
                } else {
                    Cause::Upstream
                };
                for (ci, cause) in [
                    (C_DNS, Cause::Dns),
                    (C_TLS, Cause::Tls),
                    (C_REFUSED, Cause::Refused),
                    (C_RESET, Cause::Reset),
                    (C_IO_TIMEOUT, Cause::IoTimeout),
                    (C_TOO_MANY, Cause::TooManyClients),
                    (C_TIMEOUT, Cause::Timeout),
                    (C_SERVER, server_cause),
                ] {
                    if et.causes[ci] > 0.0 {
                        causes.push((
                            cause,
                            Some(k),
                            a * et.causes[ci] * self.edges[e].per_request.min(1.0),
                        ));
                    }
                }
            }
            let total: f64 = causes.iter().map(|c| c.2).sum();
            if total <= 0.0 {
                continue;
            }
            let n_lines = poisson(rng, (st.last_errors as f64 * 0.05).min(30.0 * scale));
            for _ in 0..n_lines {
                let mut pick = rng.random::<f64>() * total;
                let mut chosen = causes[0];
                for c in &causes {
                    if pick < c.2 {
                        chosen = *c;
                        break;
                    }
                    pick -= c.2;
                }
                let (cause, peer, _) = chosen;
                let peer_svc = peer.map(|k| &self.cluster.services[k]);
                let expiry_for = peer
                    .and_then(|k| {
                        self.cluster
                            .faults
                            .iter()
                            .position(|f| f.kind == FaultKind::CertExpiry && f.target == k)
                    })
                    .map_or("", |fi| expiry[fi].as_str());
                let t = at(rng);
                let now = if cause == Cause::Tls {
                    rfc3339(t / 1000)
                } else {
                    String::new()
                };
                let (sev, body) = logs::error_line(
                    rng,
                    svc,
                    peer_svc,
                    cause,
                    &self.cluster.namespace,
                    &now,
                    expiry_for,
                );
                self.logs.push(log(t, pod, sev, body));
            }
        }
    }

    fn emit_probe_events(&mut self, ts: i64) {
        for p in 0..self.pods.len() {
            let st = &self.pods[p];
            if !st.ready || ts - st.last_unhealthy < 60_000 {
                continue;
            }
            let pod = &self.cluster.pods[p];
            // The probe has a 1 s timeout; a pod this slow or this close to OOM misses it.
            if st.own_mean > 0.5 || st.mem_frac > 0.97 {
                let msg = format!(
                    "Readiness probe failed: Get \"http://{}:8080/healthz\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                    pod.ip
                );
                self.events.push(pod_event(
                    ts - self.step_ms / 3,
                    EventType::Warning,
                    "Unhealthy",
                    pod,
                    msg,
                ));
                self.pods[p].last_unhealthy = ts;
            }
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

/// How many replicas of a crash-looping service crash: most of them, so capacity visibly drops.
fn crashing_replicas(replicas: usize) -> usize {
    (replicas * 2).div_ceil(3).max(1)
}

/// Working set (share of the limit) after `x` of the time from a fresh start to OOM: a steady
/// climb, then a slow crawl past 90 % while the garbage collector fights for every byte.
fn leak_curve(x: f64, base: f64) -> f64 {
    if x <= 0.65 {
        base + (0.92 - base) * x / 0.65
    } else {
        0.92 + 0.08 * ((x - 0.65) / 0.35).powf(1.5)
    }
}

/// Used share of a volume without faults: its base plus slow growth.
fn volume_base_used(svc: &ClusterService, since_first_ms: i64) -> f64 {
    svc.pvc_base_used + 0.002 * since_first_ms as f64 / 3_600_000.0
}

fn rfc3339(epoch_s: i64) -> String {
    match jiff::Timestamp::from_second(epoch_s) {
        Ok(t) => t.to_string(),
        Err(_) => epoch_s.to_string(),
    }
}

fn log(ts: i64, pod: &Pod, severity: Severity, body: String) -> LogRecord {
    LogRecord {
        ts,
        resource: pod.resource.clone(),
        severity,
        body,
        attributes: Default::default(),
    }
}

fn pod_event(ts: i64, event_type: EventType, reason: &str, pod: &Pod, message: String) -> Event {
    Event {
        ts,
        event_type,
        reason: reason.to_string(),
        object: format!("Pod/{}", pod.name),
        resource: pod.resource.clone(),
        message,
    }
}

fn container_start_events(out: &mut Vec<Event>, t: i64, pod: &Pod, svc: &ClusterService) {
    let image = match svc.kind {
        ServiceKind::Service => format!("{}:{}", svc.image, pod.version),
        _ => format!("{}:{}", svc.image, pod.version.trim_start_matches('v')),
    };
    out.push(pod_event(
        t,
        EventType::Normal,
        "Pulled",
        pod,
        format!("Container image \"{image}\" already present on machine"),
    ));
    out.push(pod_event(
        t + 100,
        EventType::Normal,
        "Created",
        pod,
        format!("Created container {}", svc.name),
    ));
    out.push(pod_event(
        t + 300,
        EventType::Normal,
        "Started",
        pod,
        format!("Started container {}", svc.name),
    ));
}

// Pods are only evicted from a node the controller already considers NotReady.
const _: () = assert!(EVICTION_MS > NODE_GRACE_MS);
