#![doc = include_str!("../README.md")]

mod alerts;
mod cluster;
pub mod generate;
mod logs;
pub mod scenario;
mod simulation;
mod stats;

pub use alerts::Rule as AlertRule;
pub use scenario::{
    ChangeSpec, Fault, FaultKind, Scenario, ScenarioError, ServiceKind, ServiceSpec, parse_duration,
};
pub use simulation::{Simulation, Tick};

/// The built-in scenarios: `(file name, YAML text)`.
pub fn builtin_scenarios() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "platform-bad-deploy-users.yaml",
            include_str!("../../../scenarios/platform-bad-deploy-users.yaml"),
        ),
        (
            "platform-cascading-faults.yaml",
            include_str!("../../../scenarios/platform-cascading-faults.yaml"),
        ),
        (
            "platform-cert-expiry-users.yaml",
            include_str!("../../../scenarios/platform-cert-expiry-users.yaml"),
        ),
        (
            "platform-concurrent-faults.yaml",
            include_str!("../../../scenarios/platform-concurrent-faults.yaml"),
        ),
        (
            "platform-cpu-throttle-pricing.yaml",
            include_str!("../../../scenarios/platform-cpu-throttle-pricing.yaml"),
        ),
        (
            "platform-crashloop-inventory.yaml",
            include_str!("../../../scenarios/platform-crashloop-inventory.yaml"),
        ),
        (
            "platform-db-saturation-users.yaml",
            include_str!("../../../scenarios/platform-db-saturation-users.yaml"),
        ),
        (
            "platform-dns-failure-orders.yaml",
            include_str!("../../../scenarios/platform-dns-failure-orders.yaml"),
        ),
        (
            "platform-kafka-disk-full.yaml",
            include_str!("../../../scenarios/platform-kafka-disk-full.yaml"),
        ),
        (
            "platform-node-down-data.yaml",
            include_str!("../../../scenarios/platform-node-down-data.yaml"),
        ),
        (
            "platform-quiet.yaml",
            include_str!("../../../scenarios/platform-quiet.yaml"),
        ),
        (
            "platform-two-faults.yaml",
            include_str!("../../../scenarios/platform-two-faults.yaml"),
        ),
        (
            "shop-bad-deploy-checkout.yaml",
            include_str!("../../../scenarios/shop-bad-deploy-checkout.yaml"),
        ),
        (
            "shop-crashloop-catalog.yaml",
            include_str!("../../../scenarios/shop-crashloop-catalog.yaml"),
        ),
        (
            "shop-db-saturation.yaml",
            include_str!("../../../scenarios/shop-db-saturation.yaml"),
        ),
        (
            "shop-disk-full-postgres.yaml",
            include_str!("../../../scenarios/shop-disk-full-postgres.yaml"),
        ),
        (
            "shop-memory-leak-cart.yaml",
            include_str!("../../../scenarios/shop-memory-leak-cart.yaml"),
        ),
        (
            "shop-network-latency-payments.yaml",
            include_str!("../../../scenarios/shop-network-latency-payments.yaml"),
        ),
        (
            "shop-node-down.yaml",
            include_str!("../../../scenarios/shop-node-down.yaml"),
        ),
        (
            "shop-quiet.yaml",
            include_str!("../../../scenarios/shop-quiet.yaml"),
        ),
        (
            "shop-red-herring-deploy.yaml",
            include_str!("../../../scenarios/shop-red-herring-deploy.yaml"),
        ),
    ]
}

#[cfg(test)]
mod tests;
