//! Random scenarios for held-out evaluation: topologies, names, fault kinds, targets and timings
//! drawn from a seed, so quality can be measured on systems nobody wrote or tuned against.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt::Write;

const ENTRY_NAMES: &[&str] = &[
    "edge",
    "web",
    "gateway",
    "mobile-bff",
    "portal",
    "public-api",
];
const SERVICE_NAMES: &[&str] = &[
    "ledger",
    "billing",
    "quotes",
    "profile",
    "media",
    "geo",
    "fraud",
    "ratings",
    "tickets",
    "feeds",
    "mailer",
    "invoices",
    "accounts",
    "offers",
    "routing",
    "stock",
    "reviews",
    "loyalty",
    "tax",
    "audit",
    "identity",
    "uploads",
    "pricing-engine",
    "bookings",
];
const DB_NAMES: &[&str] = &[
    "ledger-db",
    "accounts-db",
    "main-pg",
    "orders-pg",
    "events-db",
    "catalog-db",
];
const CACHE_NAMES: &[&str] = &["redis", "memcached", "session-cache"];
const QUEUE_NAMES: &[&str] = &["rabbitmq", "nats", "event-bus"];
const FAULTS: &[&str] = &[
    "memory_leak",
    "cpu_throttle",
    "db_saturation",
    "bad_deploy",
    "network_latency",
    "pod_crashloop",
    "disk_full",
    "node_down",
    "dns_failure",
    "cert_expiry",
];

struct PlannedService {
    name: String,
    kind: &'static str,
    calls: Vec<usize>,
    node: Option<String>,
}

/// Scenario YAML drawn from `seed`: 6–14 services in layers over 3–5 nodes, one or two faults
/// (or none, one time in ten), sometimes an unrelated deploy shortly before the fault.
pub fn random_scenario(seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_901d);
    let pick = |rng: &mut ChaCha8Rng, pool: &[&str], n: usize| -> Vec<String> {
        let mut v: Vec<&str> = pool.to_vec();
        v.shuffle(rng);
        v.into_iter().take(n).map(str::to_string).collect()
    };
    let n = rng.random_range(1..=2);
    let entries = pick(&mut rng, ENTRY_NAMES, n);
    let n = rng.random_range(3..=8);
    let mids = pick(&mut rng, SERVICE_NAMES, n);
    let (mid_layer, leaf_layer) = mids.split_at(mids.len() / 2);
    let n = rng.random_range(1..=2);
    let dbs = pick(&mut rng, DB_NAMES, n);
    let nodes: Vec<String> = (1..=rng.random_range(3..=5))
        .map(|i| format!("worker-{i}"))
        .collect();
    let dedicated_db_node = rng.random_bool(0.5).then(|| "storage-1".to_string());

    let mut svcs: Vec<PlannedService> = Vec::new();
    let mut push = |name: &str, kind: &'static str, node: Option<String>| {
        svcs.push(PlannedService {
            name: name.to_string(),
            kind,
            calls: Vec::new(),
            node,
        });
        svcs.len() - 1
    };
    let entry_ix: Vec<usize> = entries.iter().map(|n| push(n, "service", None)).collect();
    let mid_ix: Vec<usize> = mid_layer.iter().map(|n| push(n, "service", None)).collect();
    let leaf_ix: Vec<usize> = leaf_layer
        .iter()
        .map(|n| push(n, "service", None))
        .collect();
    let db_ix: Vec<usize> = dbs
        .iter()
        .map(|n| push(n, "database", dedicated_db_node.clone()))
        .collect();
    let cache_ix: Vec<usize> = if rng.random_bool(0.6) {
        vec![push(&pick(&mut rng, CACHE_NAMES, 1)[0], "cache", None)]
    } else {
        vec![]
    };
    let queue_ix: Vec<usize> = if rng.random_bool(0.4) {
        vec![push(&pick(&mut rng, QUEUE_NAMES, 1)[0], "queue", None)]
    } else {
        vec![]
    };

    // Calls go strictly deeper, so the graph is a DAG; every deeper service gets a caller.
    let layers = [
        entry_ix.clone(),
        mid_ix.clone(),
        leaf_ix.clone(),
        [db_ix.clone(), cache_ix.clone(), queue_ix.clone()].concat(),
    ];
    for depth in 1..layers.len() {
        let callers: Vec<usize> = layers[..depth]
            .iter()
            .flatten()
            .copied()
            .filter(|i| svcs[*i].kind == "service")
            .collect();
        for &callee in &layers[depth] {
            let caller = if depth == 1 {
                *callers.choose(&mut rng).unwrap_or(&0)
            } else {
                // Prefer the layer just above, so chains get deep.
                *layers[depth - 1]
                    .iter()
                    .filter(|i| svcs[**i].kind == "service")
                    .collect::<Vec<_>>()
                    .choose(&mut rng)
                    .copied()
                    .unwrap_or(&callers[0])
            };
            svcs[caller].calls.push(callee);
        }
        for &caller in &callers {
            if rng.random_bool(0.35) {
                let extra = *layers[depth].choose(&mut rng).unwrap_or(&caller);
                if extra != caller && !svcs[caller].calls.contains(&extra) {
                    svcs[caller].calls.push(extra);
                }
            }
        }
    }

    let step = if rng.random_bool(0.75) { 15 } else { 30 };
    let duration_min = 120;
    let mut y = String::new();
    let _ = writeln!(y, "name: generated-{seed}");
    let _ = writeln!(y, "seed: {}", rng.random_range(1..100_000));
    let _ = writeln!(
        y,
        "start: 2026-03-{:02}T{:02}:{:02}:00Z",
        rng.random_range(2..=27),
        rng.random_range(0..24),
        rng.random_range(0..4) * 15
    );
    let _ = writeln!(y, "duration: {duration_min}m");
    let _ = writeln!(y, "step: {step}s");
    let _ = writeln!(y, "namespace: prod");
    let mut all_nodes = nodes.clone();
    all_nodes.extend(dedicated_db_node.clone());
    let _ = writeln!(y, "nodes: [{}]", all_nodes.join(", "));
    let _ = writeln!(y, "services:");
    for (i, s) in svcs.iter().enumerate() {
        let mut fields = vec![format!("name: {}", s.name)];
        if s.kind != "service" {
            fields.push(format!("kind: {}", s.kind));
        }
        if entry_ix.contains(&i) {
            fields.push(format!("rps: {}", rng.random_range(40..400)));
        }
        if !s.calls.is_empty() {
            let calls: Vec<String> = s.calls.iter().map(|c| svcs[*c].name.clone()).collect();
            fields.push(format!("calls: [{}]", calls.join(", ")));
        }
        if let Some(n) = &s.node {
            fields.push(format!("node: {n}"));
        }
        let _ = writeln!(y, "  - {{{}}}", fields.join(", "));
    }

    let n_faults = match rng.random_range(0..10) {
        0 => 0,
        1 | 2 => 2,
        _ => 1,
    };
    let mut faults = Vec::new();
    let mut changes = Vec::new();
    let mut next_free = 20;
    for _ in 0..n_faults {
        let latest = duration_min - 35;
        if next_free > latest {
            break;
        }
        let at = rng.random_range(next_free..=latest.min(next_free + 50));
        let len = rng.random_range(10..=30);
        next_free = at + len + 30;
        let kind = *FAULTS.choose(&mut rng).unwrap_or(&"cpu_throttle");
        let services: Vec<usize> = (0..svcs.len())
            .filter(|i| svcs[*i].kind == "service")
            .collect();
        let has_callers = |i: usize| svcs.iter().any(|s| s.calls.contains(&i));
        let candidates: Vec<String> = match kind {
            "db_saturation" => db_ix.iter().map(|i| svcs[*i].name.clone()).collect(),
            "disk_full" => [db_ix.clone(), queue_ix.clone()]
                .concat()
                .iter()
                .map(|i| svcs[*i].name.clone())
                .collect(),
            "node_down" => dedicated_db_node
                .iter()
                .cloned()
                .chain(nodes.iter().cloned())
                .take(2)
                .collect(),
            "dns_failure" => services
                .iter()
                .filter(|i| !svcs[**i].calls.is_empty())
                .map(|i| svcs[*i].name.clone())
                .collect(),
            "cert_expiry" | "network_latency" => services
                .iter()
                .filter(|i| has_callers(**i))
                .map(|i| svcs[*i].name.clone())
                .collect(),
            _ => services.iter().map(|i| svcs[*i].name.clone()).collect(),
        };
        let Some(target) = candidates.choose(&mut rng).cloned() else {
            continue;
        };
        faults.push(format!(
            "  - {{at: {at}m, kind: {kind}, target: {target}, duration: {len}m}}"
        ));
        if rng.random_bool(0.5) {
            let others: Vec<&PlannedService> = svcs
                .iter()
                .filter(|s| s.kind == "service" && s.name != target)
                .collect();
            if let Some(o) = others.choose(&mut rng) {
                let before = rng.random_range(2..=10).min(at - 1);
                changes.push(format!(
                    "  - {{at: {}m, kind: deploy, target: {}, version: v1.{}.0}}",
                    at - before,
                    o.name,
                    rng.random_range(2..40)
                ));
            }
        }
    }
    if !faults.is_empty() {
        let _ = writeln!(y, "faults:");
        for f in faults {
            let _ = writeln!(y, "{f}");
        }
    }
    if !changes.is_empty() {
        let _ = writeln!(y, "changes:");
        for c in changes {
            let _ = writeln!(y, "{c}");
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scenario;

    #[test]
    fn generated_scenarios_are_valid_and_deterministic() {
        for seed in 0..200 {
            let yaml = random_scenario(seed);
            assert_eq!(yaml, random_scenario(seed));
            if let Err(e) = Scenario::parse(&yaml, "generated") {
                panic!("seed {seed}: {e}\n{yaml}");
            }
        }
    }
}
