//! The simulated cluster's layout, planned once per scenario: services and their sizing, nodes,
//! every pod that will ever exist (rollouts and evictions create new ones), and the series list.

use crate::scenario::{FaultKind, Scenario, ServiceKind};
use crate::stats::{BUCKET_LABELS, derive_seed};
use nightshift_core::resource::semconv;
use nightshift_core::{Change, ChangeKind, Event, EventType, Resource, SeriesKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap};

/// Rolling updates replace one pod every this many ms.
const ROLLOUT_STAGGER_MS: i64 = 20_000;
/// How long the node controller waits before marking an unreachable node NotReady.
pub const NODE_GRACE_MS: i64 = 40_000;
/// How long pods on a NotReady node are tolerated before they are evicted.
pub const EVICTION_MS: i64 = 300_000;
/// A changelog entry this close to a fault is taken to be the change that caused it.
const SAME_CHANGE_WINDOW_MS: i64 = 60_000;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// The runtime a service is written in; decides its log and exception wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Go,
    Java,
    Node,
    Python,
    Postgres,
    Redis,
    Kafka,
}

#[derive(Debug, Clone)]
pub struct ClusterService {
    pub name: String,
    pub kind: ServiceKind,
    pub calls: Vec<usize>,
    /// Calls per request served, aligned with `calls`.
    pub per_request: Vec<f64>,
    /// Names of the callees, for log wording.
    pub call_names: Vec<String>,
    pub callers: Vec<usize>,
    /// Declared entry rate at the daily mean; zero for services that only get called.
    pub entry_rps: f64,
    pub replicas: usize,
    pub pinned: Option<usize>,
    pub latency_s: f64,
    pub error_rate: f64,
    pub cpu_limit: f64,
    pub mem_limit: f64,
    pub mem_base_frac: f64,
    /// Expected inbound rate at the daily mean, from the call graph.
    pub mean_rps: f64,
    pub capacity_per_pod: f64,
    pub lang: Lang,
    pub pvc_capacity: f64,
    pub pvc_base_used: f64,
    pub max_connections: f64,
    pub cluster_ip: String,
    pub statefulset: bool,
    /// Image repository without tag.
    pub image: String,
}

impl ClusterService {
    pub fn has_http(&self) -> bool {
        self.kind == ServiceKind::Service
    }
    pub fn dns_name(&self, namespace: &str) -> String {
        format!("{}.{namespace}.svc.cluster.local", self.name)
    }
}

#[derive(Debug, Clone)]
pub struct NodeSeries {
    pub up: u32,
    /// idle, user, system, iowait.
    pub cpu: [u32; 4],
    pub mem_available: u32,
    pub mem_total: u32,
    pub fs_avail: u32,
    pub fs_size: u32,
    pub ready: u32,
}

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub cores: f64,
    pub mem_total: f64,
    pub fs_size: f64,
    pub fs_used_frac: f64,
    pub dedicated: bool,
    pub series: NodeSeries,
}

#[derive(Debug, Clone)]
pub struct HttpSeries {
    /// `code` 200, 404, 500, 503.
    pub codes: [u32; 4],
    pub buckets: [u32; 12],
    pub sum: u32,
    pub count: u32,
}

#[derive(Debug, Clone)]
pub struct PgSeries {
    pub active: u32,
    pub idle: u32,
    pub max: u32,
    pub commit: u32,
    pub rollback: u32,
    pub buckets: [u32; 12],
    pub sum: u32,
    pub count: u32,
}

#[derive(Debug, Clone)]
pub struct PodSeries {
    pub up: u32,
    pub info: u32,
    pub restarts: u32,
    pub limit_cpu: u32,
    pub limit_mem: u32,
    pub cpu: u32,
    pub periods: u32,
    pub throttled: u32,
    pub mem: u32,
    pub http: Option<HttpSeries>,
    pub pg: Option<PgSeries>,
    /// available, capacity.
    pub pvc: Option<[u32; 2]>,
}

/// One pod object from creation to deletion. A StatefulSet pod recreated under the same name
/// is a new `Pod` that shares most series with its predecessor.
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub service: usize,
    pub slot: usize,
    pub node: usize,
    /// Absolute ms the pod object exists from (inclusive) and until (exclusive).
    pub from_ms: i64,
    pub to_ms: i64,
    pub version: String,
    pub ip: String,
    pub instance: String,
    pub pvc_name: Option<String>,
    pub series: PodSeries,
    pub resource: Resource,
}

/// A fault with its target resolved and its severity drawn.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub kind: FaultKind,
    /// Service index, or node index for `node_down`.
    pub target: usize,
    pub start_ms: i64,
    pub end_ms: i64,
    /// In [0, 1]; scales the fault's magnitude within its documented range.
    pub severity: f64,
    /// For `bad_deploy`: the version whose pods misbehave.
    pub bad_version: Option<String>,
}

impl FaultPlan {
    pub fn active(&self, ts: i64) -> bool {
        ts >= self.start_ms && ts < self.end_ms
    }
}

pub struct Cluster {
    pub namespace: String,
    pub services: Vec<ClusterService>,
    /// Callers before callees.
    pub topo: Vec<usize>,
    pub nodes: Vec<NodeInfo>,
    pub pods: Vec<Pod>,
    /// Pod indices per service.
    pub pods_of: Vec<Vec<usize>>,
    pub series: Vec<SeriesKey>,
    pub faults: Vec<FaultPlan>,
    /// Planned Kubernetes events (rollouts, evictions, node conditions), sorted by time.
    pub events: Vec<Event>,
    /// Changes as CI/CD reports them, sorted by time.
    pub changes: Vec<Change>,
    /// Absolute ms intervals each node is down.
    pub node_down: Vec<Vec<(i64, i64)>>,
}

impl Cluster {
    pub fn node_is_down(&self, node: usize, ts: i64) -> bool {
        self.node_down[node]
            .iter()
            .any(|(a, b)| ts >= *a && ts < *b)
    }

    /// When the node went down, if it is down at `ts`.
    pub fn node_down_since(&self, node: usize, ts: i64) -> Option<i64> {
        self.node_down[node]
            .iter()
            .find(|(a, b)| ts >= *a && ts < *b)
            .map(|(a, _)| *a)
    }

    pub fn build(scenario: &Scenario) -> Cluster {
        Planner::new(scenario).plan()
    }
}

#[derive(Default)]
struct SeriesRegistry {
    keys: Vec<SeriesKey>,
    index: HashMap<SeriesKey, u32>,
}

impl SeriesRegistry {
    fn get(&mut self, metric: &str, labels: &[(&str, &str)]) -> u32 {
        let key = SeriesKey::new(metric, labels);
        if let Some(i) = self.index.get(&key) {
            return *i;
        }
        let i = self.keys.len() as u32;
        self.index.insert(key.clone(), i);
        self.keys.push(key);
        i
    }
}

const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn random_name(rng: &mut ChaCha8Rng, len: usize) -> String {
    (0..len)
        .map(|_| NAME_ALPHABET[rng.random_range(0..NAME_ALPHABET.len())] as char)
        .collect()
}

fn template_hash(seed: u64, service: &str, version: &str) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &format!("rs/{service}/{version}")));
    random_name(&mut rng, 10)
}

fn bump_version(v: &str) -> String {
    let parts: Vec<&str> = v.trim_start_matches('v').split('.').collect();
    if parts.len() == 3
        && let (Ok(a), Ok(b), Ok(c)) = (
            parts[0].parse::<u32>(),
            parts[1].parse::<u32>(),
            parts[2].parse::<u32>(),
        )
    {
        let prefix = if v.starts_with('v') { "v" } else { "" };
        return format!("{prefix}{a}.{b}.{}", c + 1);
    }
    format!("{v}-1")
}

enum Operation {
    Rollout {
        svc: usize,
        kind: ChangeKind,
        version: Option<String>,
        description: Option<String>,
        bad_fault: Option<usize>,
    },
    Evict {
        node: usize,
        back_ms: i64,
    },
}

struct Planner<'a> {
    scenario: &'a Scenario,
    seed: u64,
    name_rng: ChaCha8Rng,
    reg: SeriesRegistry,
    services: Vec<ClusterService>,
    nodes: Vec<NodeInfo>,
    pods: Vec<Pod>,
    /// Current pod per service slot while planning.
    current: Vec<Vec<usize>>,
    versions: Vec<Vec<String>>,
    events: Vec<Event>,
    changes: Vec<Change>,
    node_down: Vec<Vec<(i64, i64)>>,
    ip_counter: Vec<u32>,
}

impl<'a> Planner<'a> {
    fn new(scenario: &'a Scenario) -> Self {
        let seed = scenario.seed();
        Planner {
            scenario,
            seed,
            name_rng: ChaCha8Rng::seed_from_u64(derive_seed(seed, "pod-names")),
            reg: SeriesRegistry::default(),
            services: Vec::new(),
            nodes: Vec::new(),
            pods: Vec::new(),
            current: Vec::new(),
            versions: Vec::new(),
            events: Vec::new(),
            changes: Vec::new(),
            node_down: Vec::new(),
            ip_counter: Vec::new(),
        }
    }

    fn plan(mut self) -> Cluster {
        let sc = self.scenario;
        let first_ms = sc.start_ms() - sc.warmup_ms();
        self.build_services();
        self.build_nodes();
        let topo = topo_order(&self.services);
        self.propagate_mean_rates(&topo);

        // Initial pods, then everything the scenario changes, in time order.
        for s in 0..self.services.len() {
            let version = self.versions[s][0].clone();
            let mut slots = Vec::new();
            for slot in 0..self.services[s].replicas {
                let node = self.initial_node(s, slot);
                let name = self.pod_name(s, &version, slot);
                let p = self.add_pod(s, slot, node, name, first_ms, &version);
                slots.push(p);
            }
            self.current.push(slots);
        }

        let mut faults = self.plan_faults();
        for f in &faults {
            if f.kind == FaultKind::NodeDown {
                self.node_down[f.target].push((f.start_ms, f.end_ms));
            }
        }
        let service_index: BTreeMap<String, usize> = self
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let mut ops: Vec<(i64, Operation)> = Vec::new();
        for c in sc.changes() {
            let ts = sc.start_ms() + c.at_ms;
            match (c.kind, service_index.get(c.target.as_str()).copied()) {
                (ChangeKind::Deploy | ChangeKind::Rollback, Some(s)) => ops.push((
                    ts,
                    Operation::Rollout {
                        svc: s,
                        kind: c.kind,
                        version: c.version.clone(),
                        description: c.description.clone(),
                        bad_fault: None,
                    },
                )),
                (ChangeKind::Scale, Some(s)) => {
                    self.push_change(
                        ts,
                        c.kind,
                        &c.target,
                        c.version.clone(),
                        c.description.clone(),
                    );
                    let obj = self.workload_object(s);
                    let msg = format!(
                        "Scaled replica set {}-{} to {}",
                        c.target,
                        template_hash(self.seed, &c.target, &self.versions[s][0]),
                        self.services[s].replicas
                    );
                    self.event(
                        ts + 1_000,
                        EventType::Normal,
                        "ScalingReplicaSet",
                        &obj,
                        self.service_resource(s),
                        msg,
                    );
                }
                _ => self.push_change(
                    ts,
                    c.kind,
                    &c.target,
                    c.version.clone(),
                    c.description.clone(),
                ),
            }
        }
        let scenario_end = sc.start_ms() + sc.duration_ms();
        for (fi, f) in faults.iter().enumerate() {
            match f.kind {
                FaultKind::BadDeploy => {
                    let name = &self.services[f.target].name;
                    // A listed deploy right at the fault's start is the bad deploy itself.
                    let near = |ops: &[(i64, Operation)], at: i64| {
                        ops.iter().position(|(ts, op)| {
                            matches!(op, Operation::Rollout { svc, .. } if *svc == f.target)
                                && (ts - at).abs() <= SAME_CHANGE_WINDOW_MS
                        })
                    };
                    let end_near = near(&ops, f.end_ms);
                    match near(&ops, f.start_ms) {
                        Some(i) => {
                            if let Operation::Rollout { bad_fault, .. } = &mut ops[i].1 {
                                *bad_fault = Some(fi);
                            }
                        }
                        None => ops.push((
                            f.start_ms,
                            Operation::Rollout {
                                svc: f.target,
                                kind: ChangeKind::Deploy,
                                version: None,
                                description: None,
                                bad_fault: Some(fi),
                            },
                        )),
                    }
                    if f.end_ms < scenario_end && end_near.is_none() {
                        let description =
                            Some(format!("Roll back {name} after elevated error rate"));
                        ops.push((
                            f.end_ms,
                            Operation::Rollout {
                                svc: f.target,
                                kind: ChangeKind::Rollback,
                                version: None,
                                description,
                                bad_fault: None,
                            },
                        ));
                    }
                }
                FaultKind::NodeDown if f.end_ms - f.start_ms > EVICTION_MS => {
                    ops.push((
                        f.start_ms + EVICTION_MS,
                        Operation::Evict {
                            node: f.target,
                            back_ms: f.end_ms,
                        },
                    ));
                }
                _ => {}
            }
        }
        for f in faults.iter().filter(|f| f.kind == FaultKind::NodeDown) {
            self.node_condition_events(f.target, f.start_ms, f.end_ms);
        }
        // Stable: equal times keep the order the scenario lists them in.
        ops.sort_by_key(|(ts, _)| *ts);
        for (ts, op) in ops {
            match op {
                Operation::Rollout {
                    svc,
                    kind,
                    version,
                    description,
                    bad_fault,
                } => {
                    let version = match (version, kind) {
                        (Some(v), _) => v,
                        (None, ChangeKind::Rollback) => self.previous_version(svc),
                        (None, _) => bump_version(self.latest_version(svc)),
                    };
                    self.versions[svc].push(version.clone());
                    let target = self.services[svc].name.clone();
                    self.push_change(ts, kind, &target, Some(version.clone()), description);
                    if let Some(fi) = bad_fault {
                        faults[fi].bad_version = Some(version.clone());
                    }
                    self.rollout(svc, &version, ts, kind == ChangeKind::Rollback);
                }
                Operation::Evict { node, back_ms } => self.evict(node, ts, back_ms),
            }
        }

        self.events.sort_by_key(|e| e.ts);
        self.changes.sort_by_key(|c| c.ts);
        let mut pods_of = vec![Vec::new(); self.services.len()];
        for (i, p) in self.pods.iter().enumerate() {
            pods_of[p.service].push(i);
        }
        Cluster {
            namespace: sc.namespace().to_string(),
            services: self.services,
            topo,
            nodes: self.nodes,
            pods: self.pods,
            pods_of,
            series: self.reg.keys,
            faults,
            events: self.events,
            changes: self.changes,
            node_down: self.node_down,
        }
    }

    fn build_services(&mut self) {
        let sc = self.scenario;
        let index: BTreeMap<&str, usize> = sc
            .services()
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let node_index: BTreeMap<&str, usize> = sc
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        for (i, spec) in sc.services().iter().enumerate() {
            let mut rng =
                ChaCha8Rng::seed_from_u64(derive_seed(self.seed, &format!("svc/{}", spec.name)));
            let calls: Vec<usize> = spec
                .calls
                .iter()
                .filter_map(|c| index.get(c.as_str()).copied())
                .collect();
            let lang = match spec.kind {
                ServiceKind::Database => Lang::Postgres,
                ServiceKind::Cache => Lang::Redis,
                ServiceKind::Queue => Lang::Kafka,
                ServiceKind::Service => {
                    [Lang::Go, Lang::Java, Lang::Node, Lang::Python][rng.random_range(0..4)]
                }
            };
            let (cpu_limit, mem_limit, mem_base_frac) = match (spec.kind, lang) {
                (ServiceKind::Database, _) => (4.0, 8.0 * GIB, rng.random_range(0.55..0.65)),
                (ServiceKind::Cache, _) => (1.0, 2.0 * GIB, rng.random_range(0.55..0.65)),
                (ServiceKind::Queue, _) => (2.0, 4.0 * GIB, rng.random_range(0.5..0.6)),
                (_, Lang::Java) => (1.0, 1024.0 * MIB, rng.random_range(0.5..0.6)),
                _ => (0.5, 512.0 * MIB, rng.random_range(0.35..0.5)),
            };
            let (pvc_capacity, max_connections) = match spec.kind {
                ServiceKind::Database => (100.0 * GIB, 100.0),
                ServiceKind::Queue => (200.0 * GIB, 0.0),
                ServiceKind::Cache => (10.0 * GIB, 0.0),
                ServiceKind::Service => (0.0, 0.0),
            };
            let version = match spec.kind {
                ServiceKind::Database => "16.4".to_string(),
                ServiceKind::Cache => "7.2.5".to_string(),
                ServiceKind::Queue => "3.7.1".to_string(),
                ServiceKind::Service => format!(
                    "v{}.{}.{}",
                    rng.random_range(1..4),
                    rng.random_range(0..30),
                    rng.random_range(0..10)
                ),
            };
            let image = match spec.kind {
                ServiceKind::Database => "docker.io/library/postgres".to_string(),
                ServiceKind::Cache => "docker.io/library/redis".to_string(),
                ServiceKind::Queue => "docker.io/bitnami/kafka".to_string(),
                ServiceKind::Service => {
                    format!("registry.internal/{}/{}", sc.namespace(), spec.name)
                }
            };
            self.versions.push(vec![version]);
            self.services.push(ClusterService {
                name: spec.name.clone(),
                kind: spec.kind,
                calls,
                per_request: spec.per_request.clone(),
                call_names: spec.calls.clone(),
                callers: Vec::new(),
                entry_rps: spec.rps.unwrap_or(0.0),
                replicas: spec.replicas as usize,
                pinned: spec
                    .node
                    .as_deref()
                    .and_then(|n| node_index.get(n).copied()),
                latency_s: spec.latency_ms / 1000.0,
                error_rate: spec.error_rate,
                cpu_limit,
                mem_limit,
                mem_base_frac,
                mean_rps: 0.0,
                capacity_per_pod: 1.0,
                lang,
                pvc_capacity,
                pvc_base_used: rng.random_range(0.45..0.7),
                max_connections,
                cluster_ip: format!("10.96.{}.{}", 10 + i / 200, 10 + i % 200),
                statefulset: spec.kind.is_stateful(),
                image,
            });
        }
        for s in 0..self.services.len() {
            for c in self.services[s].calls.clone() {
                self.services[c].callers.push(s);
            }
        }
    }

    fn build_nodes(&mut self) {
        let sc = self.scenario;
        let pinned: Vec<usize> = self.services.iter().filter_map(|s| s.pinned).collect();
        for (i, name) in sc.nodes().iter().enumerate() {
            let mut rng =
                ChaCha8Rng::seed_from_u64(derive_seed(self.seed, &format!("node/{name}")));
            let dedicated = pinned.contains(&i);
            let instance = format!("{name}:9100");
            let base: [(&str, &str); 3] = [
                ("instance", instance.as_str()),
                ("job", "node-exporter"),
                ("node", name.as_str()),
            ];
            let mode = |reg: &mut SeriesRegistry, mode: &str| {
                reg.get(
                    "node_cpu_seconds_total",
                    &[base[0], base[1], ("mode", mode), base[2]],
                )
            };
            let cpu = [
                mode(&mut self.reg, "idle"),
                mode(&mut self.reg, "user"),
                mode(&mut self.reg, "system"),
                mode(&mut self.reg, "iowait"),
            ];
            let series = NodeSeries {
                up: self.reg.get("up", &base),
                cpu,
                mem_available: self.reg.get("node_memory_MemAvailable_bytes", &base),
                mem_total: self.reg.get("node_memory_MemTotal_bytes", &base),
                fs_avail: self.reg.get(
                    "node_filesystem_avail_bytes",
                    &[base[0], base[1], ("mountpoint", "/"), base[2]],
                ),
                fs_size: self.reg.get(
                    "node_filesystem_size_bytes",
                    &[base[0], base[1], ("mountpoint", "/"), base[2]],
                ),
                ready: self.reg.get(
                    "kube_node_status_condition",
                    &[
                        ("condition", "Ready"),
                        ("job", "kube-state-metrics"),
                        ("node", name),
                        ("status", "true"),
                    ],
                ),
            };
            let (cores, mem_total, fs_size) = if dedicated {
                (16.0, 64.0 * GIB, 200.0 * GIB)
            } else {
                (8.0, 32.0 * GIB, 100.0 * GIB)
            };
            self.nodes.push(NodeInfo {
                name: name.clone(),
                cores,
                mem_total,
                fs_size,
                fs_used_frac: rng.random_range(0.35..0.6),
                dedicated,
                series,
            });
            self.node_down.push(Vec::new());
            self.ip_counter.push(10);
        }
    }

    fn propagate_mean_rates(&mut self, topo: &[usize]) {
        for &s in topo {
            let own = self.services[s].entry_rps;
            let inbound: f64 = own + self.services[s].mean_rps;
            self.services[s].mean_rps = inbound;
            for (j, c) in self.services[s].calls.clone().into_iter().enumerate() {
                let r = self.services[s].per_request.get(j).copied().unwrap_or(1.0);
                self.services[c].mean_rps += inbound * r;
            }
        }
        for s in &mut self.services {
            // Sized so the daily peak (about +35 %) runs each pod at about 45 % of capacity.
            s.capacity_per_pod = (1.35 * s.mean_rps / s.replicas as f64 / 0.45).max(1.0);
        }
    }

    fn spread_nodes(&self) -> Vec<usize> {
        let general: Vec<usize> = (0..self.nodes.len())
            .filter(|n| !self.nodes[*n].dedicated)
            .collect();
        if general.is_empty() {
            (0..self.nodes.len()).collect()
        } else {
            general
        }
    }

    fn initial_node(&self, s: usize, slot: usize) -> usize {
        if let Some(n) = self.services[s].pinned {
            return n;
        }
        let spread = self.spread_nodes();
        let offset = (derive_seed(self.seed, &format!("place/{}", self.services[s].name))
            % spread.len() as u64) as usize;
        spread[(offset + slot) % spread.len()]
    }

    /// Where the scheduler puts a replacement pod at `ts`: its pinned node, else the healthy
    /// general node running the fewest pods of the service.
    fn schedule(&self, s: usize, slot: usize, preferred: usize, ts: i64) -> usize {
        if let Some(n) = self.services[s].pinned {
            return n;
        }
        let down = |n: usize| self.node_down[n].iter().any(|(a, b)| ts >= *a && ts < *b);
        if !down(preferred) {
            return preferred;
        }
        let spread = self.spread_nodes();
        let load = |n: usize| {
            self.current[s]
                .iter()
                .enumerate()
                .filter(|(i, p)| *i != slot && self.pods[**p].node == n)
                .count()
        };
        spread
            .iter()
            .copied()
            .filter(|n| !down(*n))
            .min_by_key(|n| (load(*n), (*n + slot) % spread.len()))
            .unwrap_or(preferred)
    }

    fn latest_version(&self, s: usize) -> &str {
        self.versions[s]
            .last()
            .map(String::as_str)
            .unwrap_or("v1.0.0")
    }

    fn previous_version(&self, s: usize) -> String {
        let v = &self.versions[s];
        if v.len() >= 2 {
            v[v.len() - 2].clone()
        } else {
            v.first().cloned().unwrap_or_else(|| "v1.0.0".to_string())
        }
    }

    fn pod_name(&mut self, s: usize, version: &str, slot: usize) -> String {
        let svc = &self.services[s];
        if svc.statefulset {
            format!("{}-{slot}", svc.name)
        } else {
            let hash = template_hash(self.seed, &svc.name, version);
            let suffix = random_name(&mut self.name_rng, 5);
            format!("{}-{hash}-{suffix}", svc.name)
        }
    }

    fn service_resource(&self, s: usize) -> Resource {
        Resource::service(&self.services[s].name)
            .with(semconv::K8S_NAMESPACE_NAME, self.scenario.namespace())
    }

    fn workload_object(&self, s: usize) -> String {
        let kind = if self.services[s].statefulset {
            "StatefulSet"
        } else {
            "Deployment"
        };
        format!("{kind}/{}", self.services[s].name)
    }

    fn push_change(
        &mut self,
        ts: i64,
        kind: ChangeKind,
        target: &str,
        version: Option<String>,
        description: Option<String>,
    ) {
        let description = description.unwrap_or_else(|| match (&version, kind) {
            (Some(v), ChangeKind::Deploy) => format!("Deploy {target} {v}"),
            (Some(v), ChangeKind::Rollback) => format!("Roll back {target} to {v}"),
            (Some(v), _) => format!("{} {target} {v}", kind.as_str()),
            (None, _) => format!("{} change on {target}", kind.as_str()),
        });
        let id_src = format!(
            "{}/{}/{ts}/{}",
            kind.as_str(),
            target,
            version.as_deref().unwrap_or("")
        );
        let id = format!(
            "chg-{:012x}",
            nightshift_core::fnv1a(id_src.as_bytes()) & 0xffff_ffff_ffff
        );
        self.changes.push(Change {
            id,
            ts,
            kind,
            target: target.to_string(),
            version,
            description,
        });
    }

    fn event(
        &mut self,
        ts: i64,
        event_type: EventType,
        reason: &str,
        object: &str,
        resource: Resource,
        message: String,
    ) {
        self.events.push(Event {
            ts,
            event_type,
            reason: reason.to_string(),
            object: object.to_string(),
            resource,
            message,
        });
    }

    fn pod_event(
        &mut self,
        ts: i64,
        event_type: EventType,
        reason: &str,
        pod: usize,
        message: String,
    ) {
        let p = &self.pods[pod];
        let obj = format!("Pod/{}", p.name);
        let res = p.resource.clone();
        self.event(ts, event_type, reason, &obj, res, message);
    }

    fn add_pod(
        &mut self,
        s: usize,
        slot: usize,
        node: usize,
        name: String,
        from_ms: i64,
        version: &str,
    ) -> usize {
        let ns = self.scenario.namespace().to_string();
        let svc = self.services[s].clone();
        let node_name = self.nodes[node].name.clone();
        let instance = format!("{name}:8080");
        let ip = {
            let c = &mut self.ip_counter[node];
            *c += 1;
            format!("10.244.{}.{}", node + 1, 10 + (*c % 240))
        };
        let sn = svc.name.as_str();
        let base: [(&str, &str); 4] = [
            ("job", sn),
            ("namespace", &ns),
            ("pod", &name),
            ("service", sn),
        ];
        fn with<'x>(
            base: &[(&'x str, &'x str)],
            extra: &[(&'x str, &'x str)],
        ) -> Vec<(&'x str, &'x str)> {
            let mut v: Vec<(&str, &str)> = base.to_vec();
            v.extend_from_slice(extra);
            v
        }
        let r = &mut self.reg;
        let container = [("container", sn)];
        let http = svc.has_http().then(|| HttpSeries {
            codes: ["200", "404", "500", "503"]
                .map(|c| r.get("http_requests_total", &with(&base, &[("code", c)]))),
            buckets: BUCKET_LABELS.map(|le| {
                r.get(
                    "http_request_duration_seconds_bucket",
                    &with(&base, &[("le", le)]),
                )
            }),
            sum: r.get("http_request_duration_seconds_sum", &base),
            count: r.get("http_request_duration_seconds_count", &base),
        });
        let pg = (svc.kind == ServiceKind::Database).then(|| PgSeries {
            active: r.get(
                "pg_stat_activity_count",
                &with(&base, &[("state", "active")]),
            ),
            idle: r.get("pg_stat_activity_count", &with(&base, &[("state", "idle")])),
            max: r.get("pg_settings_max_connections", &base),
            commit: r.get("pg_stat_database_xact_commit_total", &base),
            rollback: r.get("pg_stat_database_xact_rollback_total", &base),
            buckets: BUCKET_LABELS.map(|le| {
                r.get(
                    "pg_query_duration_seconds_bucket",
                    &with(&base, &[("le", le)]),
                )
            }),
            sum: r.get("pg_query_duration_seconds_sum", &base),
            count: r.get("pg_query_duration_seconds_count", &base),
        });
        let pvc_name = svc.statefulset.then(|| format!("data-{name}"));
        let pvc = pvc_name.as_deref().map(|claim| {
            [
                r.get(
                    "kubelet_volume_stats_available_bytes",
                    &with(&base, &[("persistentvolumeclaim", claim)]),
                ),
                r.get(
                    "kubelet_volume_stats_capacity_bytes",
                    &with(&base, &[("persistentvolumeclaim", claim)]),
                ),
            ]
        });
        let series = PodSeries {
            up: r.get("up", &with(&base, &[("instance", &instance)])),
            info: r.get("kube_pod_info", &with(&base, &[("node", &node_name)])),
            restarts: r.get(
                "kube_pod_container_status_restarts_total",
                &with(&base, &container),
            ),
            limit_cpu: r.get(
                "kube_pod_container_resource_limits",
                &with(
                    &base,
                    &[container[0], ("resource", "cpu"), ("unit", "core")],
                ),
            ),
            limit_mem: r.get(
                "kube_pod_container_resource_limits",
                &with(
                    &base,
                    &[container[0], ("resource", "memory"), ("unit", "byte")],
                ),
            ),
            cpu: r.get(
                "container_cpu_usage_seconds_total",
                &with(&base, &container),
            ),
            periods: r.get("container_cpu_cfs_periods_total", &with(&base, &container)),
            throttled: r.get(
                "container_cpu_cfs_throttled_periods_total",
                &with(&base, &container),
            ),
            mem: r.get(
                "container_memory_working_set_bytes",
                &with(&base, &container),
            ),
            http,
            pg,
            pvc,
        };
        let resource = Resource::service(sn)
            .with(semconv::K8S_POD_NAME, &name)
            .with(semconv::K8S_NAMESPACE_NAME, &ns)
            .with(semconv::K8S_NODE_NAME, &node_name);
        self.pods.push(Pod {
            name,
            service: s,
            slot,
            node,
            from_ms,
            to_ms: i64::MAX,
            version: version.to_string(),
            ip,
            instance,
            pvc_name,
            series,
            resource,
        });
        self.pods.len() - 1
    }

    fn image(&self, s: usize, version: &str) -> String {
        let v = version.trim_start_matches('v');
        match self.services[s].kind {
            ServiceKind::Service => format!("{}:{version}", self.services[s].image),
            _ => format!("{}:{v}", self.services[s].image),
        }
    }

    fn start_events(&mut self, pod: usize, ts: i64) {
        let (s, node, version, name) = {
            let p = &self.pods[pod];
            (p.service, p.node, p.version.clone(), p.name.clone())
        };
        let ns = self.scenario.namespace().to_string();
        let image = self.image(s, &version);
        let c = self.services[s].name.clone();
        let node_name = self.nodes[node].name.clone();
        let pull_ms = 800 + (nightshift_core::fnv1a(name.as_bytes()) % 2400) as i64;
        self.pod_event(
            ts,
            EventType::Normal,
            "Scheduled",
            pod,
            format!("Successfully assigned {ns}/{name} to {node_name}"),
        );
        self.pod_event(
            ts + 300,
            EventType::Normal,
            "Pulling",
            pod,
            format!("Pulling image \"{image}\""),
        );
        self.pod_event(
            ts + 300 + pull_ms,
            EventType::Normal,
            "Pulled",
            pod,
            format!(
                "Successfully pulled image \"{image}\" in {:.3}s",
                pull_ms as f64 / 1000.0
            ),
        );
        self.pod_event(
            ts + 400 + pull_ms,
            EventType::Normal,
            "Created",
            pod,
            format!("Created container {c}"),
        );
        self.pod_event(
            ts + 600 + pull_ms,
            EventType::Normal,
            "Started",
            pod,
            format!("Started container {c}"),
        );
    }

    fn rollout(&mut self, s: usize, version: &str, ts: i64, rollback: bool) {
        let replicas = self.services[s].replicas;
        let name = self.services[s].name.clone();
        let statefulset = self.services[s].statefulset;
        let obj = self.workload_object(s);
        let res = self.service_resource(s);
        let old_version = self.pods[self.current[s][0]].version.clone();
        let new_hash = template_hash(self.seed, &name, version);
        let old_hash = template_hash(self.seed, &name, &old_version);
        if rollback {
            self.event(
                ts,
                EventType::Normal,
                "DeploymentRollback",
                &obj,
                res.clone(),
                format!(
                    "Rolled back deployment \"{name}\" to revision with image version {version}"
                ),
            );
        }
        // StatefulSets update the highest ordinal first; Deployments surge one pod at a time.
        let order: Vec<usize> = if statefulset {
            (0..replicas).rev().collect()
        } else {
            (0..replicas).collect()
        };
        for (step, slot) in order.into_iter().enumerate() {
            let t = ts + step as i64 * ROLLOUT_STAGGER_MS + 1_000;
            let old = self.current[s][slot];
            if self.pods[old].to_ms <= t {
                continue;
            }
            let node = self.schedule(s, slot, self.pods[old].node, t);
            if statefulset {
                self.pods[old].to_ms = t;
                self.pod_event(
                    t,
                    EventType::Normal,
                    "Killing",
                    old,
                    format!("Stopping container {name}"),
                );
                self.event(
                    t,
                    EventType::Normal,
                    "SuccessfulDelete",
                    &obj,
                    res.clone(),
                    format!(
                        "delete Pod {} in StatefulSet {name} successful",
                        self.pods[old].name
                    ),
                );
                let pod_name = self.pods[old].name.clone();
                let new = self.add_pod(s, slot, node, pod_name.clone(), t + 2_000, version);
                self.event(
                    t + 2_000,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &obj,
                    res.clone(),
                    format!("create Pod {pod_name} in StatefulSet {name} successful"),
                );
                self.start_events(new, t + 2_000);
                self.current[s][slot] = new;
            } else {
                let pod_name = self.pod_name(s, version, slot);
                self.event(
                    t,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    &obj,
                    res.clone(),
                    format!("Scaled up replica set {name}-{new_hash} to {}", step + 1),
                );
                let new = self.add_pod(s, slot, node, pod_name, t, version);
                self.start_events(new, t);
                // The old pod goes once the new one is ready (maxUnavailable 0).
                let kill = t + 15_000;
                self.pods[old].to_ms = kill;
                self.event(
                    kill,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    &obj,
                    res.clone(),
                    format!(
                        "Scaled down replica set {name}-{old_hash} to {}",
                        replicas - step - 1
                    ),
                );
                self.pod_event(
                    kill,
                    EventType::Normal,
                    "Killing",
                    old,
                    format!("Stopping container {name}"),
                );
                self.current[s][slot] = new;
            }
        }
    }

    fn evict(&mut self, node: usize, ts: i64, back_ms: i64) {
        let ns = self.scenario.namespace().to_string();
        let total_nodes = self.nodes.len();
        for s in 0..self.services.len() {
            if self.services[s].statefulset {
                // StatefulSet pods stay bound until the node answers again (at most one pod per ordinal).
                continue;
            }
            for slot in 0..self.current[s].len() {
                let old = self.current[s][slot];
                let p = &self.pods[old];
                if p.node != node || p.from_ms > ts || p.to_ms <= ts {
                    continue;
                }
                let old_name = p.name.clone();
                let version = p.version.clone();
                self.pods[old].to_ms = ts;
                self.pod_event(
                    ts,
                    EventType::Normal,
                    "TaintManagerEviction",
                    old,
                    format!("Marking for deletion Pod {ns}/{old_name}"),
                );
                let pod_name = self.pod_name(s, &version, slot);
                let target = self.schedule(s, slot, node, ts + 2_000);
                if target == node {
                    // Pinned, or nowhere else to go: the replacement waits for the node.
                    let new = self.add_pod(s, slot, node, pod_name, back_ms, &version);
                    let msg = format!(
                        "0/{total_nodes} nodes are available: 1 node(s) had untolerated taint {{node.kubernetes.io/unreachable: }}, {} node(s) didn't match Pod's node affinity/selector.",
                        total_nodes - 1
                    );
                    self.pod_event(ts + 2_000, EventType::Warning, "FailedScheduling", new, msg);
                    self.start_events(new, back_ms);
                    self.current[s][slot] = new;
                } else {
                    let new = self.add_pod(s, slot, target, pod_name, ts + 2_000, &version);
                    self.start_events(new, ts + 2_000);
                    self.current[s][slot] = new;
                }
            }
        }
    }

    fn node_condition_events(&mut self, node: usize, start: i64, end: i64) {
        let name = self.nodes[node].name.clone();
        let res = Resource::node(&name);
        let obj = format!("Node/{name}");
        self.event(
            start + NODE_GRACE_MS,
            EventType::Normal,
            "NodeNotReady",
            &obj,
            res.clone(),
            format!("Node {name} status is now: NodeNotReady"),
        );
        let on_node: Vec<usize> = (0..self.pods.len())
            .filter(|p| {
                self.pods[*p].node == node
                    && self.pods[*p].from_ms <= start
                    && self.pods[*p].to_ms > start
            })
            .collect();
        for p in on_node {
            self.pod_event(
                start + NODE_GRACE_MS + 200,
                EventType::Warning,
                "NodeNotReady",
                p,
                "Node is not ready".to_string(),
            );
        }
        let scenario_end = self.scenario.start_ms() + self.scenario.duration_ms();
        if end < scenario_end {
            self.event(
                end,
                EventType::Normal,
                "Starting",
                &obj,
                res.clone(),
                "Starting kubelet.".to_string(),
            );
            self.event(
                end + 2_000,
                EventType::Warning,
                "Rebooted",
                &obj,
                res.clone(),
                format!(
                    "Node {name} has been rebooted, boot id: {:08x}-{:04x}",
                    nightshift_core::fnv1a(name.as_bytes()) as u32,
                    end % 0xffff
                ),
            );
            self.event(
                end + 10_000,
                EventType::Normal,
                "NodeReady",
                &obj,
                res,
                format!("Node {name} status is now: NodeReady"),
            );
        }
    }

    fn plan_faults(&mut self) -> Vec<FaultPlan> {
        let sc = self.scenario;
        let mut out = Vec::new();
        for (i, f) in sc.faults().iter().enumerate() {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
                self.seed,
                &format!("fault/{i}/{}", f.kind.as_str()),
            ));
            let target = if f.kind.targets_node() {
                sc.nodes().iter().position(|n| n == &f.target)
            } else {
                self.services.iter().position(|s| s.name == f.target)
            };
            let Some(target) = target else { continue };
            out.push(FaultPlan {
                kind: f.kind,
                target,
                start_ms: sc.start_ms() + f.at_ms,
                end_ms: sc.start_ms() + f.end_ms(sc.duration_ms()),
                severity: rng.random_range(0.0..1.0),
                bad_version: None,
            });
        }
        out
    }
}

/// Callers before callees (Kahn's algorithm; the scenario guarantees a DAG).
fn topo_order(services: &[ClusterService]) -> Vec<usize> {
    let mut indegree: Vec<usize> = services.iter().map(|s| s.callers.len()).collect();
    let mut ready: Vec<usize> = (0..services.len()).filter(|i| indegree[*i] == 0).collect();
    ready.reverse();
    let mut out = Vec::with_capacity(services.len());
    while let Some(s) = ready.pop() {
        out.push(s);
        for &c in services[s].calls.iter().rev() {
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_bump_their_patch_level() {
        assert_eq!(bump_version("v2.4.1"), "v2.4.2");
        assert_eq!(bump_version("1.0.9"), "1.0.10");
        assert_eq!(bump_version("latest"), "latest-1");
    }

    #[test]
    fn pod_names_look_like_kubernetes_ones() {
        let yaml = "name: t\nduration: 1h\nstep: 15s\nservices:\n  - {name: checkout, calls: [postgres]}\n  - {name: postgres, kind: database}\n";
        let sc = Scenario::parse(yaml, "t.yaml").map_err(|e| e.to_string());
        let sc = match sc {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let c = Cluster::build(&sc);
        let names: Vec<&str> = c.pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), 4);
        let parts: Vec<&str> = names[0].split('-').collect();
        assert_eq!(parts[0], "checkout");
        assert_eq!(parts[1].len(), 10);
        assert_eq!(parts[2].len(), 5);
        assert_eq!(names[3], "postgres-0");
        assert_eq!(c.topo, vec![0, 1]);
    }
}
