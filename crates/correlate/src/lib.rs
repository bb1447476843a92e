//! Alert dedup, incident grouping, change linking and root-cause ranking over the topology.
