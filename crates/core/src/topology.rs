//! The service topology: who calls whom (from traces) and what runs where (from placement).

use crate::{Entity, EntityKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Call graph plus service-to-node placement. Built incrementally from what ingest observes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// `client -> {servers}`.
    pub calls: BTreeMap<String, BTreeSet<String>>,
    /// `service -> {nodes}` its pods run on.
    pub placement: BTreeMap<String, BTreeSet<String>>,
    /// Services known to be databases or other stateful backends (`connection_type=database`).
    pub databases: BTreeSet<String>,
    /// Every service seen, called or not.
    pub services: BTreeSet<String>,
}

impl Topology {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_service(&mut self, service: &str) {
        if !self.services.contains(service) {
            self.services.insert(service.to_string());
        }
    }

    /// Records a call edge; returns true when it was new.
    pub fn add_call(&mut self, client: &str, server: &str) -> bool {
        self.add_service(client);
        self.add_service(server);
        self.calls
            .entry(client.to_string())
            .or_default()
            .insert(server.to_string())
    }

    pub fn add_placement(&mut self, service: &str, node: &str) -> bool {
        self.add_service(service);
        self.placement
            .entry(service.to_string())
            .or_default()
            .insert(node.to_string())
    }

    pub fn callees(&self, service: &str) -> impl Iterator<Item = &str> {
        self.calls
            .get(service)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    pub fn callers<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.calls
            .iter()
            .filter(move |(_, s)| s.contains(service))
            .map(|(c, _)| c.as_str())
    }

    pub fn nodes_of(&self, service: &str) -> impl Iterator<Item = &str> {
        self.placement
            .get(service)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    pub fn services_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.placement
            .iter()
            .filter(move |(_, n)| n.contains(node))
            .map(|(s, _)| s.as_str())
    }

    pub fn nodes(&self) -> BTreeSet<&str> {
        self.placement
            .values()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Services nobody calls: the user-facing entry points.
    pub fn entry_points(&self) -> Vec<&str> {
        let called: BTreeSet<&str> = self.calls.values().flatten().map(String::as_str).collect();
        self.services
            .iter()
            .map(String::as_str)
            .filter(|s| !called.contains(s) && self.calls.contains_key(*s))
            .collect()
    }

    /// Entities adjacent to `e`: callers, callees, and placement in both directions.
    pub fn neighbours(&self, e: &Entity) -> Vec<Entity> {
        match e.kind {
            EntityKind::Service => self
                .callees(&e.name)
                .chain(self.callers(&e.name))
                .map(Entity::service)
                .chain(self.nodes_of(&e.name).map(Entity::node))
                .collect(),
            EntityKind::Node => self.services_on(&e.name).map(Entity::service).collect(),
        }
    }

    /// What `e` depends on directly: the services it calls and the nodes it runs on.
    pub fn dependencies(&self, e: &Entity) -> Vec<Entity> {
        match e.kind {
            EntityKind::Service => self
                .callees(&e.name)
                .map(Entity::service)
                .chain(self.nodes_of(&e.name).map(Entity::node))
                .collect(),
            EntityKind::Node => Vec::new(),
        }
    }

    /// Entities within `max` hops of `from` over undirected calls and placement, with the hop
    /// count of the shortest path (`from` itself at 0).
    pub fn within_hops(&self, from: &Entity, max: usize) -> BTreeMap<Entity, usize> {
        self.reach(from, max, |e| self.neighbours(e))
    }

    /// Everything `from` depends on within `max` hops (callees, their callees, the nodes they
    /// run on), with the hop count of the shortest path (`from` itself at 0).
    pub fn downstream(&self, from: &Entity, max: usize) -> BTreeMap<Entity, usize> {
        self.reach(from, max, |e| self.dependencies(e))
    }

    /// Whether `a` depends on `b`, directly or through other services: a fault in `b` can then
    /// show up as a symptom in `a`.
    pub fn depends_on(&self, a: &Entity, b: &Entity) -> bool {
        a != b && self.downstream(a, usize::MAX).contains_key(b)
    }

    /// Hop distance between two entities over undirected calls and placement, up to `max` hops.
    pub fn distance(&self, a: &Entity, b: &Entity, max: usize) -> Option<usize> {
        self.within_hops(a, max).get(b).copied()
    }

    /// Breadth-first search from `from` along `next`, up to `max` hops.
    fn reach(
        &self,
        from: &Entity,
        max: usize,
        next: impl Fn(&Entity) -> Vec<Entity>,
    ) -> BTreeMap<Entity, usize> {
        let mut seen = BTreeMap::from([(from.clone(), 0usize)]);
        let mut frontier = vec![from.clone()];
        let mut hops = 0;
        while !frontier.is_empty() && hops < max {
            hops += 1;
            let mut following = Vec::new();
            for e in &frontier {
                for n in next(e) {
                    if !seen.contains_key(&n) {
                        seen.insert(n.clone(), hops);
                        following.push(n);
                    }
                }
            }
            frontier = following;
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_follows_calls_and_placement() {
        let mut t = Topology::new();
        t.add_call("frontend", "checkout");
        t.add_call("checkout", "postgres");
        t.add_placement("postgres", "db-03");
        let fe = Entity::service("frontend");
        assert_eq!(t.distance(&fe, &Entity::service("postgres"), 5), Some(2));
        assert_eq!(t.distance(&fe, &Entity::node("db-03"), 5), Some(3));
        assert_eq!(t.distance(&fe, &Entity::node("db-03"), 2), None);
        assert_eq!(t.entry_points(), vec!["frontend"]);
        let pg = Entity::service("postgres");
        assert!(t.depends_on(&fe, &pg));
        assert!(t.depends_on(&fe, &Entity::node("db-03")));
        assert!(!t.depends_on(&pg, &fe));
        assert!(!t.depends_on(&pg, &pg));
    }
}
