//! Scenario files: the YAML that describes a simulated cluster, its faults and its changes,
//! parsed and validated into a [`Scenario`] whose invariants the simulation relies on.

use nightshift_core::ChangeKind;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// 2026-03-02T13:00:00Z, a Monday afternoon: traffic is climbing towards its daily peak.
pub const DEFAULT_START_MS: i64 = 1_772_456_400_000;
const DEFAULT_WARMUP_MS: i64 = 3_600_000;
const DEFAULT_ENTRY_RPS: f64 = 50.0;
const MAX_TICKS: i64 = 200_000;

/// Why a scenario file was rejected. The message names the file, the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The text is not YAML, or does not have the shape of a scenario (unknown or missing field,
    /// wrong type).
    #[error("{origin}{}: {message}", fmt_line(*.line, *.column))]
    Syntax {
        origin: String,
        line: Option<u64>,
        column: Option<u64>,
        message: String,
    },
    /// The YAML is well formed but describes something the simulator cannot run.
    #[error("{origin}: {path}: {problem}")]
    Invalid {
        origin: String,
        path: String,
        problem: String,
    },
}

fn fmt_line(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// What a scenario injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    MemoryLeak,
    CpuThrottle,
    DbSaturation,
    BadDeploy,
    NetworkLatency,
    PodCrashloop,
    DiskFull,
    NodeDown,
    DnsFailure,
    CertExpiry,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::MemoryLeak,
        FaultKind::CpuThrottle,
        FaultKind::DbSaturation,
        FaultKind::BadDeploy,
        FaultKind::NetworkLatency,
        FaultKind::PodCrashloop,
        FaultKind::DiskFull,
        FaultKind::NodeDown,
        FaultKind::DnsFailure,
        FaultKind::CertExpiry,
    ];

    /// The snake_case name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::MemoryLeak => "memory_leak",
            FaultKind::CpuThrottle => "cpu_throttle",
            FaultKind::DbSaturation => "db_saturation",
            FaultKind::BadDeploy => "bad_deploy",
            FaultKind::NetworkLatency => "network_latency",
            FaultKind::PodCrashloop => "pod_crashloop",
            FaultKind::DiskFull => "disk_full",
            FaultKind::NodeDown => "node_down",
            FaultKind::DnsFailure => "dns_failure",
            FaultKind::CertExpiry => "cert_expiry",
        }
    }

    pub fn parse(s: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the fault's target is a node (otherwise it is a service).
    pub fn targets_node(self) -> bool {
        self == FaultKind::NodeDown
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One injected fault: the ground truth that `eval rca` scores against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Start, relative to the scenario start.
    pub at_ms: i64,
    /// How long it lasts; `None` means until the end of the scenario.
    pub duration_ms: Option<i64>,
    pub kind: FaultKind,
    /// A service name, or a node name for `node_down`.
    pub target: String,
    /// Index of the earlier fault this one is a consequence of (a cascading failure). Its
    /// symptoms belong to that fault's incident, and that fault's target is the root cause.
    pub caused_by: Option<usize>,
}

impl Fault {
    /// The entity the fault hits: its target service, or its node for `node_down`.
    pub fn entity(&self) -> nightshift_core::Entity {
        if self.kind.targets_node() {
            nightshift_core::Entity::node(&self.target)
        } else {
            nightshift_core::Entity::service(&self.target)
        }
    }

    /// End relative to the scenario start, given the scenario's duration.
    pub fn end_ms(&self, scenario_duration_ms: i64) -> i64 {
        self.duration_ms
            .map_or(scenario_duration_ms, |d| self.at_ms + d)
    }

    /// Whether the fault is in effect at `t_ms` (relative to the scenario start).
    pub fn active_at(&self, t_ms: i64, scenario_duration_ms: i64) -> bool {
        t_ms >= self.at_ms && t_ms < self.end_ms(scenario_duration_ms)
    }
}

/// What a workload is; decides which exporters it has and how it is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    /// A stateless HTTP service (a Deployment).
    Service,
    /// A PostgreSQL database (a StatefulSet with postgres-exporter and a volume).
    Database,
    /// A cache such as Redis (a StatefulSet with a volume).
    Cache,
    /// A message queue such as Kafka (a StatefulSet with a volume).
    Queue,
}

impl ServiceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Service => "service",
            ServiceKind::Database => "database",
            ServiceKind::Cache => "cache",
            ServiceKind::Queue => "queue",
        }
    }

    fn parse(s: &str) -> Option<ServiceKind> {
        [
            ServiceKind::Service,
            ServiceKind::Database,
            ServiceKind::Cache,
            ServiceKind::Queue,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Stateful workloads run as StatefulSets and own a persistent volume.
    pub fn is_stateful(self) -> bool {
        self != ServiceKind::Service
    }
}

/// A declared service, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub kind: ServiceKind,
    pub calls: Vec<String>,
    /// Calls made per request served, aligned with `calls` (1 unless the scenario says otherwise;
    /// below 1 when only some requests need the callee, above 1 for several queries per request).
    pub per_request: Vec<f64>,
    /// Requests per second at the daily mean; only entry points (services nobody calls) have it.
    pub rps: Option<f64>,
    pub replicas: u32,
    /// Pins every pod to this node.
    pub node: Option<String>,
    /// Own processing time per request, without callees.
    pub latency_ms: f64,
    /// Baseline share of requests that fail on their own.
    pub error_rate: f64,
}

/// A change the scenario makes (a deploy, a config change, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSpec {
    /// Relative to the scenario start.
    pub at_ms: i64,
    pub kind: ChangeKind,
    pub target: String,
    pub version: Option<String>,
    pub description: Option<String>,
}

/// A parsed, validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    name: String,
    seed: u64,
    start_ms: i64,
    duration_ms: i64,
    step_ms: i64,
    warmup_ms: i64,
    namespace: String,
    nodes: Vec<String>,
    services: Vec<ServiceSpec>,
    faults: Vec<Fault>,
    changes: Vec<ChangeSpec>,
}

impl Scenario {
    /// Parses and validates scenario YAML. `origin` names the file in errors.
    pub fn parse(yaml: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario =
            serde_saphyr::from_str(yaml).map_err(|e| syntax_error(origin, &e))?;
        Validator { origin }.validate(raw)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ground truth: the faults (times relative to scenario start, in ms). Only the evaluator
    /// reads these.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    /// Absolute epoch ms of t=0.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    pub fn duration_ms(&self) -> i64 {
        self.duration_ms
    }

    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }

    /// Fault-free history simulated before t=0.
    /// Evaluation ticks the simulation runs, warm-up included.
    pub fn total_ticks(&self) -> usize {
        ((self.warmup_ms + self.duration_ms()) / self.step_ms()) as usize
    }

    pub fn warmup_ms(&self) -> i64 {
        self.warmup_ms
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    pub fn services(&self) -> &[ServiceSpec] {
        &self.services
    }

    pub fn changes(&self) -> &[ChangeSpec] {
        &self.changes
    }
}

fn syntax_error(origin: &str, e: &serde_saphyr::Error) -> ScenarioError {
    let e = nightshift_core::yaml::YamlError::of(e);
    ScenarioError::Syntax {
        origin: origin.to_string(),
        line: e.line,
        column: e.column,
        message: e.message,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    seed: Option<u64>,
    start: Option<String>,
    duration: String,
    step: String,
    warmup: Option<String>,
    namespace: Option<String>,
    nodes: Option<Vec<String>>,
    services: Vec<RawService>,
    #[serde(default)]
    faults: Vec<RawFault>,
    #[serde(default)]
    changes: Vec<RawChange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    kind: Option<String>,
    #[serde(default)]
    calls: Vec<RawCall>,
    rps: Option<f64>,
    replicas: Option<u32>,
    node: Option<String>,
    latency_ms: Option<f64>,
    error_rate: Option<f64>,
}

/// A call edge: a bare service name (one call per request) or `{to: name, per_request: 0.3}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCall {
    Name(String),
    Detailed(RawCallDetail),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallDetail {
    to: String,
    per_request: f64,
}

impl RawCall {
    fn target(&self) -> &str {
        match self {
            RawCall::Name(n) => n,
            RawCall::Detailed(d) => &d.to,
        }
    }

    fn per_request(&self) -> f64 {
        match self {
            RawCall::Name(_) => 1.0,
            RawCall::Detailed(d) => d.per_request,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at: String,
    kind: String,
    target: String,
    duration: Option<String>,
    /// The target of an earlier fault that this one is a consequence of.
    caused_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChange {
    at: String,
    kind: String,
    target: String,
    version: Option<String>,
    description: Option<String>,
}

pub use nightshift_core::parse_duration;

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 52
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_lowercase()
        && !s.ends_with('-')
}

struct Validator<'a> {
    origin: &'a str,
}

impl Validator<'_> {
    fn err(&self, path: impl Into<String>, problem: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            origin: self.origin.to_string(),
            path: path.into(),
            problem: problem.into(),
        }
    }

    fn duration(&self, path: &str, text: &str) -> Result<i64, ScenarioError> {
        parse_duration(text).map_err(|p| self.err(path, p))
    }

    fn validate(&self, raw: RawScenario) -> Result<Scenario, ScenarioError> {
        if raw.name.trim().is_empty() {
            return Err(self.err("name", "must not be empty"));
        }
        let start_ms = match &raw.start {
            None => DEFAULT_START_MS,
            Some(text) => text
                .trim()
                .parse::<jiff::Timestamp>()
                .map_err(|e| self.err("start", format!("bad timestamp {text:?} (expected RFC 3339 like 2026-03-02T13:00:00Z): {e}")))?
                .as_millisecond(),
        };
        let duration_ms = self.duration("duration", &raw.duration)?;
        if duration_ms <= 0 {
            return Err(self.err("duration", "must be greater than zero"));
        }
        let step_ms = self.duration("step", &raw.step)?;
        if step_ms <= 0 {
            return Err(self.err("step", "must be greater than zero"));
        }
        if step_ms < 1_000 || step_ms % 1_000 != 0 {
            return Err(self.err(
                "step",
                format!(
                    "{} is not a whole number of seconds (scrape intervals are 1s or more)",
                    raw.step
                ),
            ));
        }
        if step_ms > 300_000 {
            return Err(self.err(
                "step",
                format!(
                    "{} is longer than 5m; alert rules and rates need a finer scrape interval",
                    raw.step
                ),
            ));
        }
        if duration_ms % step_ms != 0 {
            return Err(self.err(
                "step",
                format!("{} does not divide the duration {}", raw.step, raw.duration),
            ));
        }
        let warmup_ms = match &raw.warmup {
            None => DEFAULT_WARMUP_MS,
            Some(w) => self.duration("warmup", w)?,
        };
        if warmup_ms % step_ms != 0 {
            return Err(self.err(
                "step",
                format!(
                    "{} does not divide the warm-up {}",
                    raw.step,
                    raw.warmup.as_deref().unwrap_or("1h")
                ),
            ));
        }
        if (warmup_ms + duration_ms) / step_ms > MAX_TICKS {
            return Err(self.err(
                "step",
                format!(
                    "{} gives more than {MAX_TICKS} ticks over warm-up and duration",
                    raw.step
                ),
            ));
        }
        let namespace = raw.namespace.unwrap_or_else(|| "default".to_string());
        if !is_dns_label(&namespace) {
            return Err(self.err(
                "namespace",
                format!("{namespace:?} is not a valid Kubernetes namespace name"),
            ));
        }

        let mut services = self.services(&raw.services)?;
        let called: BTreeSet<String> = services
            .iter()
            .flat_map(|s| s.calls.iter().cloned())
            .collect();
        for (i, s) in services.iter_mut().enumerate() {
            let is_entry = !called.contains(&s.name);
            if s.rps.is_some() && !is_entry {
                return Err(self.err(
                    format!("services[{i}].rps"),
                    format!("{} is called by other services; rps is only set on entry points (its traffic comes from its callers)", s.name),
                ));
            }
            if is_entry && s.rps.is_none() {
                s.rps = Some(DEFAULT_ENTRY_RPS);
            }
        }
        let service_index: BTreeMap<&str, usize> = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        self.check_acyclic(&services, &service_index)?;

        let nodes = self.nodes(raw.nodes.as_deref(), &services)?;
        let faults = self.faults(&raw.faults, &services, &service_index, &nodes, duration_ms)?;
        let changes = self.changes(&raw.changes, &service_index, &nodes, duration_ms)?;

        Ok(Scenario {
            name: raw.name.trim().to_string(),
            seed: raw.seed.unwrap_or(1),
            start_ms,
            duration_ms,
            step_ms,
            warmup_ms,
            namespace,
            nodes,
            services,
            faults,
            changes,
        })
    }

    fn services(&self, raw: &[RawService]) -> Result<Vec<ServiceSpec>, ScenarioError> {
        if raw.is_empty() {
            return Err(self.err("services", "at least one service is required"));
        }
        let mut seen = BTreeMap::new();
        for (i, s) in raw.iter().enumerate() {
            if !is_dns_label(&s.name) {
                return Err(self.err(
                    format!("services[{i}].name"),
                    format!("{:?} is not a valid Kubernetes name (lowercase letters, digits and '-', starting with a letter, at most 52 characters)", s.name),
                ));
            }
            if let Some(first) = seen.insert(s.name.as_str(), i) {
                return Err(self.err(
                    format!("services[{i}].name"),
                    format!(
                        "duplicate service name {:?} (first declared at services[{first}])",
                        s.name
                    ),
                ));
            }
        }
        let mut out = Vec::with_capacity(raw.len());
        for (i, s) in raw.iter().enumerate() {
            let kind = match &s.kind {
                None => ServiceKind::Service,
                Some(k) => ServiceKind::parse(k).ok_or_else(|| {
                    self.err(format!("services[{i}].kind"), format!("unknown service kind {k:?} (expected one of service, database, cache, queue)"))
                })?,
            };
            let mut calls_seen = BTreeSet::new();
            for (j, call) in s.calls.iter().enumerate() {
                let c = call.target();
                let path = format!("services[{i}].calls[{j}]");
                let r = call.per_request();
                if !(r.is_finite() && r > 0.0 && r <= 100.0) {
                    return Err(self.err(
                        format!("{path}.per_request"),
                        format!("{r} is not a number of calls per request between 0 and 100"),
                    ));
                }
                if !seen.contains_key(c) {
                    return Err(self.err(path, format!("call to undeclared service {c:?}")));
                }
                if c == s.name {
                    return Err(self.err(path, format!("{c} calls itself")));
                }
                if !calls_seen.insert(c) {
                    return Err(self.err(path, format!("{c} is listed twice")));
                }
            }
            if let Some(rps) = s.rps
                && !(rps.is_finite() && rps > 0.0 && rps <= 100_000.0)
            {
                return Err(self.err(
                    format!("services[{i}].rps"),
                    format!("{rps} is not a request rate between 0 and 100000"),
                ));
            }
            let replicas = s
                .replicas
                .unwrap_or(if kind == ServiceKind::Service { 3 } else { 1 });
            if !(1..=20).contains(&replicas) {
                return Err(self.err(
                    format!("services[{i}].replicas"),
                    format!("{replicas} is outside 1..=20"),
                ));
            }
            if let Some(n) = &s.node
                && !is_dns_label(n)
            {
                return Err(self.err(
                    format!("services[{i}].node"),
                    format!("{n:?} is not a valid node name"),
                ));
            }
            let latency_ms = match s.latency_ms {
                None => default_latency_ms(kind),
                Some(l) if l.is_finite() && l > 0.0 && l <= 10_000.0 => l,
                Some(l) => {
                    return Err(self.err(
                        format!("services[{i}].latency_ms"),
                        format!("{l} is not a latency between 0 and 10000 ms"),
                    ));
                }
            };
            let error_rate = match s.error_rate {
                None => {
                    if kind == ServiceKind::Service {
                        0.0005
                    } else {
                        0.0002
                    }
                }
                Some(e) if e.is_finite() && (0.0..=0.5).contains(&e) => e,
                Some(e) => {
                    return Err(self.err(
                        format!("services[{i}].error_rate"),
                        format!("{e} is not a ratio between 0 and 0.5"),
                    ));
                }
            };
            out.push(ServiceSpec {
                name: s.name.clone(),
                kind,
                calls: s.calls.iter().map(|c| c.target().to_string()).collect(),
                per_request: s.calls.iter().map(RawCall::per_request).collect(),
                rps: s.rps,
                replicas,
                node: s.node.clone(),
                latency_ms,
                error_rate,
            });
        }
        Ok(out)
    }

    fn check_acyclic(
        &self,
        services: &[ServiceSpec],
        index: &BTreeMap<&str, usize>,
    ) -> Result<(), ScenarioError> {
        // Colours: 0 unvisited, 1 on the current path, 2 done.
        let mut colour = vec![0u8; services.len()];
        for root in 0..services.len() {
            if colour[root] != 0 {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            colour[root] = 1;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                if let Some(callee_name) = services[node].calls.get(*next) {
                    *next += 1;
                    let Some(&callee) = index.get(callee_name.as_str()) else {
                        continue;
                    };
                    match colour[callee] {
                        0 => {
                            colour[callee] = 1;
                            stack.push((callee, 0));
                        }
                        1 => {
                            let pos = stack.iter().position(|(n, _)| *n == callee).unwrap_or(0);
                            let mut cycle: Vec<&str> = stack[pos..]
                                .iter()
                                .map(|(n, _)| services[*n].name.as_str())
                                .collect();
                            cycle.push(services[callee].name.as_str());
                            let j = services[node]
                                .calls
                                .iter()
                                .position(|c| c == callee_name)
                                .unwrap_or(0);
                            return Err(self.err(
                                format!("services[{node}].calls[{j}]"),
                                format!(
                                    "call cycle {} (the call graph must be acyclic)",
                                    cycle.join(" -> ")
                                ),
                            ));
                        }
                        _ => {}
                    }
                } else {
                    colour[node] = 2;
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    fn nodes(
        &self,
        raw: Option<&[String]>,
        services: &[ServiceSpec],
    ) -> Result<Vec<String>, ScenarioError> {
        let mut nodes: Vec<String> = Vec::new();
        match raw {
            Some(list) => {
                if list.is_empty() {
                    return Err(self.err(
                        "nodes",
                        "at least one node is required when the list is given",
                    ));
                }
                for (i, n) in list.iter().enumerate() {
                    if !is_dns_label(n) {
                        return Err(self.err(
                            format!("nodes[{i}]"),
                            format!("{n:?} is not a valid node name"),
                        ));
                    }
                    if nodes.contains(n) {
                        return Err(
                            self.err(format!("nodes[{i}]"), format!("duplicate node {n:?}"))
                        );
                    }
                    nodes.push(n.clone());
                }
                for (i, s) in services.iter().enumerate() {
                    if let Some(n) = &s.node
                        && !nodes.contains(n)
                    {
                        return Err(self.err(
                            format!("services[{i}].node"),
                            format!("{n:?} is not in the nodes list"),
                        ));
                    }
                }
            }
            None => {
                nodes.extend(["node-1", "node-2", "node-3"].map(String::from));
                for s in services {
                    if let Some(n) = &s.node
                        && !nodes.contains(n)
                    {
                        nodes.push(n.clone());
                    }
                }
            }
        }
        if nodes.len() > services.len() + 64 {
            return Err(self.err("nodes", "too many nodes"));
        }
        Ok(nodes)
    }

    fn at(&self, path: &str, text: &str, duration_ms: i64) -> Result<i64, ScenarioError> {
        let at = self.duration(path, text)?;
        if at >= duration_ms {
            return Err(self.err(
                path,
                format!(
                    "{text} is outside the scenario (it lasts {})",
                    nightshift_core::format_duration(duration_ms)
                ),
            ));
        }
        Ok(at)
    }

    fn faults(
        &self,
        raw: &[RawFault],
        services: &[ServiceSpec],
        index: &BTreeMap<&str, usize>,
        nodes: &[String],
        duration_ms: i64,
    ) -> Result<Vec<Fault>, ScenarioError> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, f) in raw.iter().enumerate() {
            let kind = FaultKind::parse(&f.kind).ok_or_else(|| {
                let expected: Vec<&str> = FaultKind::ALL.iter().map(|k| k.as_str()).collect();
                self.err(
                    format!("faults[{i}].kind"),
                    format!(
                        "unknown fault kind {:?} (expected one of {})",
                        f.kind,
                        expected.join(", ")
                    ),
                )
            })?;
            let at_ms = self.at(&format!("faults[{i}].at"), &f.at, duration_ms)?;
            let duration = match &f.duration {
                None => None,
                Some(d) => {
                    let path = format!("faults[{i}].duration");
                    let ms = self.duration(&path, d)?;
                    if ms <= 0 {
                        return Err(self.err(path, "must be greater than zero"));
                    }
                    if at_ms + ms > duration_ms {
                        return Err(self.err(
                            path,
                            format!(
                                "the fault would end at {}, outside the scenario (it lasts {})",
                                nightshift_core::format_duration(at_ms + ms),
                                nightshift_core::format_duration(duration_ms)
                            ),
                        ));
                    }
                    Some(ms)
                }
            };
            let tpath = format!("faults[{i}].target");
            if kind.targets_node() {
                if !nodes.contains(&f.target) {
                    let hint = if index.contains_key(f.target.as_str()) {
                        " (it is a service; node_down targets a node)"
                    } else {
                        ""
                    };
                    return Err(self.err(
                        tpath,
                        format!("{:?} is not a declared node{hint}", f.target),
                    ));
                }
            } else {
                let Some(&si) = index.get(f.target.as_str()) else {
                    let hint = if nodes.contains(&f.target) {
                        format!(
                            " (it is a node; only node_down targets nodes, {kind} targets a service)"
                        )
                    } else {
                        String::new()
                    };
                    return Err(self.err(
                        tpath,
                        format!("{:?} is not a declared service{hint}", f.target),
                    ));
                };
                let svc = &services[si];
                let has_callers = services.iter().any(|s| s.calls.contains(&svc.name));
                match kind {
                    FaultKind::DbSaturation if svc.kind != ServiceKind::Database => {
                        return Err(self.err(
                            tpath,
                            format!(
                                "db_saturation needs a database, but {} is of kind {}",
                                svc.name,
                                svc.kind.as_str()
                            ),
                        ));
                    }
                    FaultKind::DiskFull if !svc.kind.is_stateful() => {
                        return Err(self.err(tpath, format!("disk_full needs a stateful service (database, cache or queue), but {} is a stateless service", svc.name)));
                    }
                    FaultKind::DnsFailure if svc.calls.is_empty() => {
                        return Err(self.err(tpath, format!("dns_failure needs a service that calls others, but {} calls nobody", svc.name)));
                    }
                    FaultKind::NetworkLatency | FaultKind::CertExpiry if !has_callers => {
                        return Err(self.err(tpath, format!("{kind} is observed by callers, but nothing in the scenario calls {}", svc.name)));
                    }
                    _ => {}
                }
            }
            let caused_by = match &f.caused_by {
                None => None,
                Some(cause) => {
                    let earlier = out
                        .iter()
                        .rposition(|e: &Fault| e.target == *cause && e.at_ms <= at_ms);
                    let Some(c) = earlier else {
                        return Err(self.err(
                            format!("faults[{i}].caused_by"),
                            format!("{cause:?} is not the target of an earlier fault"),
                        ));
                    };
                    // The root of a chain of consequences.
                    Some(out[c].caused_by.unwrap_or(c))
                }
            };
            out.push(Fault {
                at_ms,
                duration_ms: duration,
                kind,
                target: f.target.clone(),
                caused_by,
            });
        }
        Ok(out)
    }

    fn changes(
        &self,
        raw: &[RawChange],
        index: &BTreeMap<&str, usize>,
        nodes: &[String],
        duration_ms: i64,
    ) -> Result<Vec<ChangeSpec>, ScenarioError> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, c) in raw.iter().enumerate() {
            let kind = match c.kind.as_str() {
                "deploy" => ChangeKind::Deploy,
                "config" => ChangeKind::Config,
                "feature_flag" => ChangeKind::FeatureFlag,
                "scale" => ChangeKind::Scale,
                "rollback" => ChangeKind::Rollback,
                "infrastructure" => ChangeKind::Infrastructure,
                other => {
                    return Err(self.err(
                        format!("changes[{i}].kind"),
                        format!("unknown change kind {other:?} (expected one of deploy, config, feature_flag, scale, rollback, infrastructure)"),
                    ));
                }
            };
            let at_ms = self.at(&format!("changes[{i}].at"), &c.at, duration_ms)?;
            let is_service = index.contains_key(c.target.as_str());
            if !is_service && !nodes.contains(&c.target) {
                return Err(self.err(
                    format!("changes[{i}].target"),
                    format!("{:?} is neither a declared service nor a node", c.target),
                ));
            }
            if !is_service
                && matches!(
                    kind,
                    ChangeKind::Deploy | ChangeKind::Rollback | ChangeKind::Scale
                )
            {
                return Err(self.err(
                    format!("changes[{i}].target"),
                    format!(
                        "{} is a node; a {} changes a service",
                        c.target,
                        kind.as_str()
                    ),
                ));
            }
            if let Some(v) = &c.version
                && (v.is_empty() || v.len() > 64 || v.chars().any(char::is_whitespace))
            {
                return Err(self.err(
                    format!("changes[{i}].version"),
                    format!("{v:?} is not a version tag"),
                ));
            }
            out.push(ChangeSpec {
                at_ms,
                kind,
                target: c.target.clone(),
                version: c.version.clone(),
                description: c.description.clone(),
            });
        }
        Ok(out)
    }
}

fn default_latency_ms(kind: ServiceKind) -> f64 {
    match kind {
        ServiceKind::Service => 20.0,
        ServiceKind::Database => 6.0,
        ServiceKind::Cache => 1.0,
        ServiceKind::Queue => 4.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name: t\nseed: 3\nduration: 2h\nstep: 15s\nservices:\n  - {name: frontend, calls: [checkout]}\n  - {name: checkout, calls: [postgres]}\n  - {name: postgres, kind: database, node: db-03}\n";

    fn parse(extra: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(&format!("{BASE}{extra}"), "scenarios/x.yaml")
    }

    fn message(extra: &str) -> String {
        match parse(extra) {
            Ok(_) => panic!("expected an error for {extra:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn durations_parse_like_operators_write_them() {
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("15m"), Ok(900_000));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert!(parse_duration("15").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("m5").is_err());
    }

    #[test]
    fn defaults_are_filled_in() {
        let s = match parse("") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(s.start_ms(), DEFAULT_START_MS);
        assert_eq!(s.warmup_ms(), 3_600_000);
        assert_eq!(s.namespace(), "default");
        assert_eq!(s.nodes(), ["node-1", "node-2", "node-3", "db-03"]);
        assert_eq!(s.services()[0].rps, Some(DEFAULT_ENTRY_RPS));
        assert_eq!(s.services()[0].replicas, 3);
        assert_eq!(s.services()[2].replicas, 1);
        assert_eq!(s.services()[1].rps, None);
    }

    #[test]
    fn default_start_is_the_documented_instant() {
        let ts: jiff::Timestamp = match "2026-03-02T13:00:00Z".parse() {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(ts.as_millisecond(), DEFAULT_START_MS);
    }

    #[test]
    fn unknown_fault_kind_names_the_field_and_the_choices() {
        let m = message("faults:\n  - {at: 30m, kind: meltdown, target: checkout}\n");
        assert!(m.starts_with("scenarios/x.yaml: faults[0].kind: unknown fault kind \"meltdown\" (expected one of memory_leak,"), "{m}");
        assert!(m.contains("cert_expiry"), "{m}");
    }

    #[test]
    fn call_to_undeclared_service_is_rejected() {
        let yaml = BASE.replace("calls: [postgres]", "calls: [postgres, payments]");
        let m = Scenario::parse(&yaml, "scenarios/x.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert_eq!(
            m,
            "scenarios/x.yaml: services[1].calls[1]: call to undeclared service \"payments\""
        );
    }

    #[test]
    fn unknown_target_is_rejected() {
        let m = message("faults:\n  - {at: 30m, kind: cpu_throttle, target: paymnts}\n");
        assert_eq!(
            m,
            "scenarios/x.yaml: faults[0].target: \"paymnts\" is not a declared service"
        );
        let m = message("faults:\n  - {at: 30m, kind: node_down, target: checkout}\n");
        assert!(
            m.contains("faults[0].target: \"checkout\" is not a declared node (it is a service"),
            "{m}"
        );
        let m = message("faults:\n  - {at: 30m, kind: db_saturation, target: checkout}\n");
        assert!(
            m.contains("faults[0].target: db_saturation needs a database"),
            "{m}"
        );
        let m = message("faults:\n  - {at: 30m, kind: cpu_throttle, target: db-03}\n");
        assert!(m.contains("it is a node"), "{m}");
        let m = message("changes:\n  - {at: 30m, kind: deploy, target: nobody}\n");
        assert!(
            m.contains("changes[0].target: \"nobody\" is neither a declared service nor a node"),
            "{m}"
        );
    }

    #[test]
    fn bad_duration_is_rejected() {
        let m = message("faults:\n  - {at: 30 minutes, kind: cpu_throttle, target: checkout}\n");
        assert!(
            m.starts_with("scenarios/x.yaml: faults[0].at: bad duration \"30 minutes\""),
            "{m}"
        );
        let m = Scenario::parse(&BASE.replace("duration: 2h", "duration: 2"), "s.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            m.starts_with("s.yaml: duration: bad duration \"2\": missing unit"),
            "{m}"
        );
    }

    #[test]
    fn step_must_be_positive_and_divide_the_duration() {
        let m = Scenario::parse(&BASE.replace("step: 15s", "step: 0s"), "s.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert_eq!(m, "s.yaml: step: must be greater than zero");
        let m = Scenario::parse(&BASE.replace("step: 15s", "step: 7m"), "s.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("s.yaml: step: 7m is longer than 5m"), "{m}");
        let m = Scenario::parse(&BASE.replace("step: 15s", "step: 7s"), "s.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert_eq!(m, "s.yaml: step: 7s does not divide the duration 2h");
        let m = Scenario::parse(&BASE.replace("step: 15s", "step: 1500ms"), "s.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(m.contains("not a whole number of seconds"), "{m}");
    }

    #[test]
    fn call_cycles_are_rejected() {
        let yaml = BASE.replace(
            "kind: database, node: db-03}",
            "kind: database, node: db-03, calls: [frontend]}",
        );
        let m = Scenario::parse(&yaml, "scenarios/x.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert_eq!(
            m,
            "scenarios/x.yaml: services[2].calls[0]: call cycle frontend -> checkout -> postgres -> frontend (the call graph must be acyclic)"
        );
        let yaml = BASE.replace("calls: [postgres]", "calls: [checkout]");
        let m = Scenario::parse(&yaml, "x.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("services[1].calls[0]: checkout calls itself"),
            "{m}"
        );
    }

    #[test]
    fn duplicate_service_names_are_rejected() {
        let m = message("  - {name: checkout}\n");
        assert_eq!(
            m,
            "scenarios/x.yaml: services[3].name: duplicate service name \"checkout\" (first declared at services[1])"
        );
    }

    #[test]
    fn faults_outside_the_scenario_are_rejected() {
        let m = message("faults:\n  - {at: 2h, kind: cpu_throttle, target: checkout}\n");
        assert_eq!(
            m,
            "scenarios/x.yaml: faults[0].at: 2h is outside the scenario (it lasts 2h00m)"
        );
        let m = message(
            "faults:\n  - {at: 110m, kind: cpu_throttle, target: checkout, duration: 20m}\n",
        );
        assert!(m.starts_with("scenarios/x.yaml: faults[0].duration: the fault would end at 2h10m, outside the scenario"), "{m}");
    }

    #[test]
    fn consequences_name_an_earlier_fault() {
        let sc = parse("faults:\n  - {at: 30m, kind: db_saturation, target: postgres}\n  - {at: 40m, kind: pod_crashloop, target: checkout, caused_by: postgres}\n").unwrap();
        assert_eq!(sc.faults()[0].caused_by, None);
        assert_eq!(sc.faults()[1].caused_by, Some(0));
        let m = message(
            "faults:\n  - {at: 30m, kind: pod_crashloop, target: checkout, caused_by: postgres}\n  - {at: 40m, kind: db_saturation, target: postgres}\n",
        );
        assert_eq!(
            m,
            "scenarios/x.yaml: faults[0].caused_by: \"postgres\" is not the target of an earlier fault"
        );
    }

    #[test]
    fn yaml_syntax_errors_carry_the_line() {
        let err = Scenario::parse("name: t\nduration: 2h\nstep: [15s\n", "broken.yaml")
            .map(|_| ())
            .unwrap_err();
        let m = err.to_string();
        assert!(m.starts_with("broken.yaml:"), "{m}");
        assert!(
            matches!(err, ScenarioError::Syntax { line: Some(_), .. }),
            "{err:?}"
        );
        assert!(!m.contains('\n'), "{m}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let yaml = BASE.replace("{name: checkout,", "{name: checkout, rpss: 3,");
        let err = Scenario::parse(&yaml, "scenarios/x.yaml")
            .map(|_| ())
            .unwrap_err();
        let m = err.to_string();
        assert!(m.starts_with("scenarios/x.yaml:7:"), "{m}");
        assert!(m.contains("unknown field `rpss`"), "{m}");
        let m = message("severity: high\n");
        assert!(m.contains("unknown field `severity`"), "{m}");
    }

    #[test]
    fn rps_only_on_entry_points() {
        let yaml = BASE.replace("{name: checkout,", "{name: checkout, rps: 30,");
        let m = Scenario::parse(&yaml, "x.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            m.starts_with("x.yaml: services[1].rps: checkout is called by other services"),
            "{m}"
        );
    }

    #[test]
    fn calls_take_an_optional_rate_per_request() {
        let yaml = BASE.replace(
            "calls: [postgres]",
            "calls: [{to: postgres, per_request: 3}]",
        );
        let s = Scenario::parse(&yaml, "x.yaml").map_err(|e| e.to_string());
        let s = match s {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(s.services()[1].calls, ["postgres"]);
        assert_eq!(s.services()[1].per_request, [3.0]);
        assert_eq!(s.services()[0].per_request, [1.0]);
        let yaml = BASE.replace(
            "calls: [postgres]",
            "calls: [{to: postgres, per_request: 0}]",
        );
        let m = Scenario::parse(&yaml, "x.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            m.starts_with("x.yaml: services[1].calls[0].per_request: 0 is not"),
            "{m}"
        );
        let yaml = BASE.replace(
            "calls: [postgres]",
            "calls: [{to: postgres, per_request: 2, retries: 3}]",
        );
        let m = Scenario::parse(&yaml, "x.yaml")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("x.yaml:"), "{m}");
    }

    #[test]
    fn fault_kinds_round_trip() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::parse(k.as_str()), Some(k));
        }
    }
}
