//! Root-cause ranking over the topology.
//!
//! Each entity gets a *strength* from its own evidence, weighted by how root-like each kind of
//! evidence is (saturation and availability point at the resource itself; latency and errors
//! propagate to callers; a traffic change is usually a consequence upstream). Anomalous calls
//! on an edge are blamed on the end the pattern points to: a callee whose callers all fail is
//! suspect, and so is a caller whose calls to several healthy callees all fail.
//!
//! Strength is then *explained away* along dependencies, as in ε-Diagnosis and the
//! anomaly-weighted dependency walks of MicroRCA: a service whose callee (or node) is at least as
//! anomalous, and went wrong no later, is more likely a victim than a cause. Changes shortly before
//! the incident raise the score of an entity that shows its own symptoms, never of a healthy one,
//! so a red-herring deploy is not blamed.

use crate::DiagnoseError;
use nightshift_core::facts::EntityFacts;
use nightshift_core::{
    Change, Entity, EntityKind, EventType, Evidence, EvidenceKind, Hypothesis, MINUTE, Millis,
    Severity, SignalClass, Topology, cause, format_value,
};
use nightshift_correlate::Ranker;
use std::collections::BTreeMap;

/// Tunables of the ranking; the defaults are what the evaluation reports.
#[derive(Debug, Clone)]
pub struct RankConfig {
    /// How far back a change can be and still be linked.
    pub change_lookback: Millis,
    /// A dependency that went wrong this much later than its dependant does not explain it.
    pub onset_slack: Millis,
    /// How many dependency hops downstream can explain a symptom away.
    pub explain_hops: usize,
    pub max_hypotheses: usize,
    pub max_evidence: usize,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            change_lookback: 30 * MINUTE,
            onset_slack: 2 * MINUTE,
            explain_hops: 3,
            max_hypotheses: 5,
            max_evidence: 8,
        }
    }
}

impl RankConfig {
    /// Refuses settings the ranking cannot work with, naming the field.
    pub fn validate(&self) -> Result<(), DiagnoseError> {
        let bad = |field: &str, v: String, range: &str| {
            Err(DiagnoseError::Config(format!(
                "{field}: {v} is outside {range}"
            )))
        };
        if !(MINUTE..=24 * 60 * MINUTE).contains(&self.change_lookback) {
            return bad(
                "change_lookback",
                nightshift_core::format_duration(self.change_lookback),
                "1m to 24h",
            );
        }
        if !(0..=60 * MINUTE).contains(&self.onset_slack) {
            return bad(
                "onset_slack",
                nightshift_core::format_duration(self.onset_slack),
                "0s to 1h",
            );
        }
        if self.explain_hops > 10 {
            return bad("explain_hops", self.explain_hops.to_string(), "0 to 10");
        }
        if !(1..=50).contains(&self.max_hypotheses) {
            return bad("max_hypotheses", self.max_hypotheses.to_string(), "1 to 50");
        }
        if !(1..=100).contains(&self.max_evidence) {
            return bad("max_evidence", self.max_evidence.to_string(), "1 to 100");
        }
        Ok(())
    }
}

/// The ranking as the correlator asks for it, with its settings.
#[derive(Debug, Clone, Default)]
pub struct Ranking(pub RankConfig);

impl Ranker for Ranking {
    fn rank(
        &self,
        facts: &BTreeMap<Entity, EntityFacts>,
        topology: &Topology,
        changes: &[Change],
        opened_at: Millis,
    ) -> Vec<Hypothesis> {
        rank(facts, topology, changes, opened_at, &self.0)
    }

    fn change_lookback(&self) -> Millis {
        self.0.change_lookback
    }
}

fn class_weight(c: SignalClass) -> f64 {
    match c {
        SignalClass::Saturation | SignalClass::Availability => 1.0,
        SignalClass::Errors => 0.7,
        SignalClass::Latency => 0.5,
        SignalClass::Logs => 0.4,
        SignalClass::Other => 0.3,
        SignalClass::Traffic => 0.15,
    }
}

fn event_weight(reason: &str, object: &str, t: EventType) -> f64 {
    match reason {
        // Pods get NodeNotReady too; it points at their node, not at them.
        "NodeNotReady" if object.starts_with("Node/") => 1.5,
        "NodeNotReady" => 0.3,
        "OOMKilled" | "OOMKilling" => 1.0,
        "BackOff" | "CrashLoopBackOff" => 0.8,
        "Unhealthy" | "FailedMount" | "Evicted" => 0.4,
        _ if t == EventType::Warning => 0.3,
        _ => 0.0,
    }
}

/// Many anomalous edges add confidence, but not without bound: the edges of a hub would
/// otherwise outweigh the saturation of the thing it calls.
const MAX_EDGE_BLAME: f64 = 2.0;

/// Share of the strength explained away from victims that flows on to what explains them.
const EXPLAINED_FLOW: f64 = 0.5;

const CLASSES: [SignalClass; 7] = [
    SignalClass::Latency,
    SignalClass::Errors,
    SignalClass::Traffic,
    SignalClass::Saturation,
    SignalClass::Availability,
    SignalClass::Logs,
    SignalClass::Other,
];

/// Per-entity ranking inputs, kept for the explanation.
#[derive(Debug, Clone, Default)]
struct Strength {
    own: f64,
    events: f64,
    logs: f64,
    alerts: f64,
    edge_blame: f64,
    /// The saturation part of `own`.
    saturation: f64,
}

impl Strength {
    fn total(&self) -> f64 {
        self.own + self.events + self.logs + self.alerts + self.edge_blame
    }
}

/// How much of a class's weight is left once anomalous calls out of the entity account for it:
/// a service whose calls to a dependency got slow is slow because of that call.
fn unexplained_share(f: &EntityFacts, class: SignalClass) -> f64 {
    let explained = matches!(
        class,
        SignalClass::Latency | SignalClass::Errors | SignalClass::Logs
    ) && f
        .edges_out
        .keys()
        .any(|(_, c)| *c == class || (class == SignalClass::Logs && *c == SignalClass::Errors));
    if explained { 0.3 } else { 1.0 }
}

fn own_strength(f: &EntityFacts) -> Strength {
    let saturation = class_weight(SignalClass::Saturation) * f.class_peak(SignalClass::Saturation);
    let own = CLASSES
        .iter()
        .map(|c| class_weight(*c) * unexplained_share(f, *c) * f.class_peak(*c))
        .sum();
    let events = f
        .events
        .values()
        .map(|e| event_weight(&e.reason, &e.object, e.event_type))
        .sum::<f64>()
        .min(2.0);
    let logs = (f
        .logs
        .values()
        .filter(|l| l.new && l.severity >= Severity::Error)
        .count() as f64
        * 0.3)
        .min(0.6);
    let alerts = f
        .alerts
        .values()
        .map(|a| {
            if a.alertname.starts_with("Node") || a.alertname.starts_with("KubeNode") {
                0.5
            } else {
                0.05
            }
        })
        .sum::<f64>()
        .min(0.8);
    Strength {
        own,
        events,
        logs,
        alerts,
        edge_blame: 0.0,
        saturation,
    }
}

/// Splits the blame for each anomalous edge between its two ends (see the module docs).
fn blame_edges(
    facts: &BTreeMap<Entity, EntityFacts>,
    topo: &Topology,
    strengths: &mut BTreeMap<Entity, Strength>,
) {
    // Only failing or slow calls say where the fault is; a traffic change on an edge is a consequence.
    let health = |c: &SignalClass| matches!(c, SignalClass::Errors | SignalClass::Latency);
    let anomalous_in = |s: &str| -> usize {
        facts.get(&Entity::service(s)).map_or(0, |f| {
            f.edges_in
                .keys()
                .filter(|(_, c)| health(c))
                .map(|(c, _)| c)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
    };
    let anomalous_out = |c: &str| -> usize {
        facts.get(&Entity::service(c)).map_or(0, |f| {
            f.edges_out
                .keys()
                .filter(|(_, c)| health(c))
                .map(|(s, _)| s)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        })
    };
    for (server, f) in facts {
        if server.kind != EntityKind::Service {
            continue;
        }
        let in_deg = topo
            .callers(&server.name)
            .count()
            .max(anomalous_in(&server.name))
            .max(1);
        let in_frac = anomalous_in(&server.name) as f64 / in_deg as f64;
        for ((client, _), edge) in f.edges_in.iter().filter(|((_, c), _)| health(c)) {
            let out_deg = topo
                .callees(client)
                .count()
                .max(anomalous_out(client))
                .max(1);
            let out_frac = anomalous_out(client) as f64 / out_deg as f64;
            let total = in_frac + out_frac;
            if total <= 0.0 {
                continue;
            }
            // A server whose own calls fail the same way passes the blame on.
            let w = edge.peak_score * unexplained_share(f, edge.class);
            strengths.entry(server.clone()).or_default().edge_blame += w * in_frac / total;
            strengths
                .entry(Entity::service(client))
                .or_default()
                .edge_blame += w * out_frac / total;
        }
    }
}

/// Ranks root-cause hypotheses for one incident.
pub fn rank(
    facts: &BTreeMap<Entity, EntityFacts>,
    topo: &Topology,
    changes: &[Change],
    opened_at: Millis,
    cfg: &RankConfig,
) -> Vec<Hypothesis> {
    let mut strengths: BTreeMap<Entity, Strength> = facts
        .iter()
        .map(|(e, f)| (e.clone(), own_strength(f)))
        .collect();
    blame_edges(facts, topo, &mut strengths);
    for s in strengths.values_mut() {
        s.edge_blame = s.edge_blame.min(MAX_EDGE_BLAME);
    }
    let onset = |e: &Entity| {
        facts
            .get(e)
            .and_then(|f| f.onset_ts.or(f.first_ts))
            .unwrap_or(Millis::MAX)
    };

    // Explain away: each entity keeps the share of its strength its dependencies don't explain,
    // and the explained share flows to the dependencies that explain it (one step of an
    // anomaly-weighted walk towards the root), so a node or a database that explains many
    // victims at once gains from each of them.
    let mut kept: BTreeMap<Entity, f64> = BTreeMap::new();
    let mut received: BTreeMap<Entity, f64> = BTreeMap::new();
    // Entities whose strength is mostly explained, and their main explainer.
    let mut explained_by: BTreeMap<Entity, Entity> = BTreeMap::new();
    for (e, s) in &strengths {
        let total = s.total();
        if total <= 0.0 {
            continue;
        }
        let self_saturated = facts
            .get(e)
            .is_some_and(|f| f.class_peak(SignalClass::Saturation) > 0.0);
        let mut score = total;
        let mut explainers: Vec<(Entity, f64)> = Vec::new();
        for (d, hops) in topo.downstream(e, cfg.explain_hops) {
            if d == *e {
                continue;
            }
            let Some(ds) = strengths.get(&d) else {
                continue;
            };
            // A busy node does not explain a service that is itself saturated: that service is
            // more likely the noisy neighbour than the victim.
            let dt = if d.kind == EntityKind::Node && self_saturated {
                ds.total() - ds.saturation
            } else {
                ds.total()
            };
            if dt <= 0.0 || onset(&d) > onset(e).saturating_add(cfg.onset_slack) {
                continue;
            }
            // Farther dependencies explain less: the symptom could have other paths.
            let w = 0.7f64.powi(hops as i32 - 1) * dt / (dt + total);
            score *= 1.0 - w;
            explainers.push((d, w));
        }
        // A node that is only busy is explained by the saturated workloads on it (its noisy
        // neighbours), the mirror of the rule above.
        if e.kind == EntityKind::Node && s.saturation >= total - 1e-9 {
            for svc in topo.services_on(&e.name).map(Entity::service) {
                let Some(ss) = strengths.get(&svc) else {
                    continue;
                };
                if ss.saturation > 0.0 && onset(&svc) <= onset(e).saturating_add(cfg.onset_slack) {
                    let w = ss.saturation / (ss.saturation + total);
                    score *= 1.0 - w;
                    explainers.push((svc, w));
                }
            }
        }
        if score < 0.5 * total
            && let Some((d, _)) = explainers.iter().max_by(|a, b| a.1.total_cmp(&b.1))
        {
            explained_by.insert(e.clone(), d.clone());
        }
        let weights: f64 = explainers.iter().map(|(_, w)| w).sum();
        for (d, w) in explainers {
            *received.entry(d).or_default() += (total - score) * w / weights;
        }
        kept.insert(e.clone(), score);
    }
    let mut scored: Vec<(Entity, f64, f64)> = Vec::new(); // (entity, score, change factor)
    for (e, score) in &kept {
        let total = strengths.get(e).map_or(0.0, Strength::total);
        let healthy = !facts.get(e).is_some_and(EntityFacts::has_own_health_signal);
        // A change explains symptoms its dependencies don't: a deployed service that is mostly
        // a victim of its callee or its node gets no credit for having been deployed.
        let victim = *score < 0.5 * total;
        let change_factor = if healthy || victim {
            0.0
        } else {
            change_factor(e, changes, opened_at, cfg)
        };
        let flowed = EXPLAINED_FLOW * received.get(e).copied().unwrap_or(0.0);
        scored.push((
            e.clone(),
            (score + flowed) * (1.0 + change_factor),
            change_factor,
        ));
    }
    // Earlier onset breaks near-ties: the first to go wrong is upstream in the failure chain.
    let earliest = scored.iter().map(|(e, _, _)| onset(e)).min().unwrap_or(0);
    for (e, score, _) in &mut scored {
        if onset(e) == earliest {
            *score *= 1.1;
        }
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    scored.truncate(cfg.max_hypotheses);
    let sum: f64 = scored.iter().map(|s| s.1).sum();

    let mut next_id = 1;
    scored
        .into_iter()
        .enumerate()
        .map(|(i, (entity, score, change_factor))| {
            let f = facts.get(&entity).cloned().unwrap_or_default();
            let strength = strengths.get(&entity).cloned().unwrap_or_default();
            let linked: Vec<&Change> = if change_factor > 0.0 {
                linked_changes(&entity, changes, opened_at, cfg).collect()
            } else {
                Vec::new()
            };
            let cause = match explained_by.get(&entity) {
                Some(root) => format!("knock-on effect of {root}"),
                None => suspected_cause(&entity, &f, &strength, !linked.is_empty()),
            };
            let mut evidence = evidence_for(&entity, &f, &linked, cfg.max_evidence);
            for ev in &mut evidence {
                ev.id = format!("ev-{next_id}");
                next_id += 1;
            }
            let summary = summarise(&entity, &cause, &evidence);
            Hypothesis {
                rank: i as u32 + 1,
                entity,
                cause,
                score: if sum > 0.0 { score / sum } else { 0.0 },
                summary,
                evidence,
            }
        })
        .collect()
}

fn linked_changes<'a>(
    e: &'a Entity,
    changes: &'a [Change],
    opened_at: Millis,
    cfg: &'a RankConfig,
) -> impl Iterator<Item = &'a Change> + 'a {
    changes.iter().filter(move |c| {
        c.target == e.name && c.ts <= opened_at && opened_at - c.ts <= cfg.change_lookback
    })
}

/// How much a recent change on this entity raises its score: up to +50% right before the
/// incident, fading over the lookback.
fn change_factor(e: &Entity, changes: &[Change], opened_at: Millis, cfg: &RankConfig) -> f64 {
    linked_changes(e, changes, opened_at, cfg)
        .map(|c| 0.5 * (1.0 - (opened_at - c.ts) as f64 / cfg.change_lookback as f64))
        .fold(0.0, f64::max)
}

fn suspected_cause(e: &Entity, f: &EntityFacts, s: &Strength, changed: bool) -> String {
    let has_metric = |needle: &str| f.series.values().any(|x| x.metric.contains(needle));
    let has_event = |r: &str| f.events.contains_key(r);
    if e.kind == EntityKind::Node {
        return if has_event("NodeNotReady") || has_metric("node:up") {
            cause::NODE_FAILURE.into()
        } else if has_metric("filesystem") {
            cause::NODE_DISK_FULL.into()
        } else {
            cause::NODE_SATURATION.into()
        };
    }
    if changed && (f.class_peak(SignalClass::Errors) > 0.0 || f.logs.values().any(|l| l.new)) {
        return cause::BAD_DEPLOY.into();
    }
    if has_event("OOMKilled") || has_metric("memory") {
        return cause::MEMORY_EXHAUSTION.into();
    }
    if has_metric("volume") {
        return cause::DISK_FULL.into();
    }
    if has_metric("pg_connections") {
        return cause::DATABASE_SATURATION.into();
    }
    if has_event("BackOff") || has_metric("restarts") {
        return cause::CRASH_LOOP.into();
    }
    if has_metric("cpu") {
        return cause::CPU_SATURATION.into();
    }
    if has_metric("up:") {
        return cause::INSTANCES_DOWN.into();
    }
    let own_health =
        s.own - class_weight(SignalClass::Traffic) * f.class_peak(SignalClass::Traffic);
    if s.edge_blame > own_health {
        let into = f.edges_in.keys().any(|(_, c)| *c == SignalClass::Errors);
        let out = f.edges_out.keys().any(|(_, c)| *c == SignalClass::Errors);
        let slow_in = f.edges_in.keys().any(|(_, c)| *c == SignalClass::Latency);
        return if out && !into {
            cause::FAILING_OUTBOUND.into()
        } else if into {
            cause::FAILING_INBOUND.into()
        } else if slow_in {
            cause::INBOUND_LATENCY.into()
        } else {
            cause::DEPENDENCY_TROUBLE.into()
        };
    }
    if changed {
        return cause::REGRESSION_AFTER_CHANGE.into();
    }
    if f.class_peak(SignalClass::Errors) > 0.0 {
        cause::ERROR_BURST.into()
    } else if f.class_peak(SignalClass::Latency) > 0.0 {
        cause::LATENCY_REGRESSION.into()
    } else {
        cause::ANOMALOUS.into()
    }
}

fn summarise(e: &Entity, cause: &str, evidence: &[Evidence]) -> String {
    let first = evidence
        .iter()
        .map(|e| e.summary.as_str())
        .next()
        .unwrap_or("no direct evidence");
    format!("{cause} on {e}: {first}")
}

fn evidence_for(e: &Entity, f: &EntityFacts, changes: &[&Change], max: usize) -> Vec<Evidence> {
    let mut out: Vec<Evidence> = Vec::new();
    let ev = |kind, ts, summary: String, weight| Evidence {
        id: String::new(),
        kind,
        ts,
        entity: e.clone(),
        summary,
        series: None,
        observed: None,
        expected: None,
        query: None,
        weight,
    };
    for c in changes {
        let v = c
            .version
            .as_deref()
            .map(|v| format!(" to {v}"))
            .unwrap_or_default();
        out.push(ev(
            EvidenceKind::Change,
            c.ts,
            format!("{} of {}{v} ({})", c.kind.as_str(), c.target, c.description),
            1.0,
        ));
    }
    let mut series: Vec<_> = f.series.values().collect();
    series.sort_by(|a, b| {
        (class_weight(b.class) * b.peak_score).total_cmp(&(class_weight(a.class) * a.peak_score))
    });
    for s in series {
        out.push(Evidence {
            series: Some(s.selector.clone()),
            observed: Some(s.value),
            expected: Some(s.expected),
            query: Some(s.promql.clone()),
            ..ev(
                EvidenceKind::Anomaly,
                s.first_ts,
                format!(
                    "{} {} {} (expected {}), score {:.2}",
                    s.metric,
                    verb(s.direction),
                    format_value(s.value),
                    format_value(s.expected),
                    s.peak_score
                ),
                class_weight(s.class) * s.peak_score,
            )
        });
    }
    for ev_ in f
        .events
        .values()
        .filter(|x| event_weight(&x.reason, &x.object, x.event_type) > 0.0)
    {
        out.push(ev(
            EvidenceKind::KubeEvent,
            ev_.first_ts,
            format!(
                "{} {} ×{}: {}",
                ev_.object, ev_.reason, ev_.count, ev_.message
            ),
            event_weight(&ev_.reason, &ev_.object, ev_.event_type),
        ));
    }
    for l in f
        .logs
        .values()
        .filter(|l| l.severity >= Severity::Warn || l.vanished || l.usual_rate.is_some())
    {
        let usual;
        let what = if l.new {
            "new log pattern"
        } else if l.vanished {
            "stopped: log pattern"
        } else if let Some(rate) = l.usual_rate {
            usual = format!("log rate shifted (usually {rate:.1} lines an interval):");
            &usual
        } else {
            "log pattern"
        };
        let examples = l
            .examples
            .iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(Evidence {
            query: Some(nightshift_core::query::logql_contains(
                [("service_name", e.name.as_str())],
                literal_prefix(&l.template),
            )),
            ..ev(
                EvidenceKind::LogPattern,
                l.first_ts,
                format!(
                    "{what} \"{}\" ×{} over {} from the first line; e.g. {examples}",
                    l.template,
                    l.count,
                    nightshift_core::format_duration(l.last_ts.saturating_sub(l.first_seen).max(0))
                ),
                if l.new { 0.3 } else { 0.1 },
            )
        });
    }
    for (dir, edges) in [("from", &f.edges_in), ("to", &f.edges_out)] {
        for ((peer, class), x) in edges {
            out.push(Evidence {
                observed: Some(x.value),
                expected: Some(x.expected),
                query: Some(x.promql.clone()),
                ..ev(
                    EvidenceKind::Trace,
                    x.first_ts,
                    format!(
                        "calls {dir} {peer}: {} {} (expected {})",
                        class.as_str(),
                        format_value(x.value),
                        format_value(x.expected)
                    ),
                    x.peak_score * 0.5,
                )
            });
        }
    }
    for a in f.alerts.values() {
        out.push(ev(
            EvidenceKind::Alert,
            a.first_ts,
            format!(
                "alert {} ({}) fired ×{}",
                a.alertname, a.severity, a.firings
            ),
            0.05,
        ));
    }
    // Changes first; then the strongest fact of each kind, so a log line or an event a person
    // recognises is not crowded out by a fifth anomalous series; then the rest by weight.
    out.sort_by(|a, b| {
        (b.kind == EvidenceKind::Change)
            .cmp(&(a.kind == EvidenceKind::Change))
            .then(b.weight.total_cmp(&a.weight))
            .then(a.ts.cmp(&b.ts))
    });
    let mut chosen: Vec<Evidence> = Vec::new();
    let mut rest: Vec<Evidence> = Vec::new();
    for e in out {
        if e.kind == EvidenceKind::Change || !chosen.iter().any(|c| c.kind == e.kind) {
            chosen.push(e);
        } else {
            rest.push(e);
        }
    }
    chosen.extend(rest);
    chosen.truncate(max);
    chosen
}

fn literal_prefix(template: &str) -> &str {
    let end = template.find("<*>").unwrap_or(template.len());
    template[..end].trim_end()
}

fn verb(d: nightshift_core::Direction) -> &'static str {
    match d {
        nightshift_core::Direction::Up => "rose to",
        nightshift_core::Direction::Down => "fell to",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_range_are_refused_by_name() {
        assert!(RankConfig::default().validate().is_ok());
        for (cfg, field) in [
            (
                RankConfig {
                    change_lookback: 0,
                    ..RankConfig::default()
                },
                "change_lookback",
            ),
            (
                RankConfig {
                    onset_slack: -1,
                    ..RankConfig::default()
                },
                "onset_slack",
            ),
            (
                RankConfig {
                    explain_hops: 11,
                    ..RankConfig::default()
                },
                "explain_hops",
            ),
            (
                RankConfig {
                    max_hypotheses: 0,
                    ..RankConfig::default()
                },
                "max_hypotheses",
            ),
            (
                RankConfig {
                    max_evidence: 0,
                    ..RankConfig::default()
                },
                "max_evidence",
            ),
        ] {
            let e = cfg.validate().expect_err(field).to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }
    use nightshift_core::facts::{EdgeFact, SeriesFact};
    use nightshift_core::{ChangeKind, Direction};

    fn series(f: &mut EntityFacts, metric: &str, class: SignalClass, score: f64, ts: Millis) {
        f.touch_onset(ts);
        f.series.insert(
            metric.to_string(),
            SeriesFact {
                metric: metric.to_string(),
                selector: metric.to_string(),
                class,
                direction: Direction::Up,
                first_ts: ts,
                peak_ts: ts,
                peak_score: score,
                value: 1.0,
                expected: 0.5,
                promql: metric.to_string(),
                detector: "test".into(),
                reports: 1,
            },
        );
    }

    fn edge(
        facts: &mut BTreeMap<Entity, EntityFacts>,
        client: &str,
        server: &str,
        class: SignalClass,
        score: f64,
    ) {
        let fact = |peer: &str| EdgeFact {
            peer: peer.into(),
            class,
            first_ts: 0,
            peak_score: score,
            value: 1.0,
            expected: 0.0,
            promql: String::new(),
        };
        let s = facts.entry(Entity::service(server)).or_default();
        s.touch(0);
        s.edges_in.insert((client.into(), class), fact(client));
        let c = facts.entry(Entity::service(client)).or_default();
        c.touch(0);
        c.edges_out.insert((server.into(), class), fact(server));
    }

    fn shop() -> Topology {
        let mut t = Topology::new();
        t.add_call("frontend", "checkout");
        t.add_call("frontend", "catalog");
        t.add_call("checkout", "payments");
        t.add_call("checkout", "postgres");
        t.add_call("catalog", "postgres");
        t.add_placement("postgres", "db-03");
        t
    }

    fn top(h: &[Hypothesis]) -> &str {
        &h[0].entity.name
    }

    #[test]
    fn saturated_database_outranks_its_louder_callers() {
        let mut facts: BTreeMap<Entity, EntityFacts> = BTreeMap::new();
        for svc in ["frontend", "checkout", "catalog"] {
            let f = facts.entry(Entity::service(svc)).or_default();
            series(f, "errors", SignalClass::Errors, 0.95, 0);
            series(f, "latency", SignalClass::Latency, 0.95, 0);
            series(f, "log_errors", SignalClass::Logs, 0.9, 0);
        }
        let pg = facts.entry(Entity::service("postgres")).or_default();
        series(pg, "pg_connections", SignalClass::Saturation, 0.9, 0);
        series(pg, "pg_query_duration", SignalClass::Latency, 0.8, 0);
        let h = rank(&facts, &shop(), &[], 60_000, &RankConfig::default());
        assert_eq!(top(&h), "postgres");
        assert_eq!(h[0].cause, "database saturation");
        let frontend = h
            .iter()
            .find(|h| h.entity.name == "frontend")
            .map(|h| h.cause.as_str());
        assert_eq!(
            frontend,
            Some("knock-on effect of service/checkout"),
            "the entry point is named a victim"
        );
        assert!(
            h[0].evidence.iter().any(|e| e.query.is_some()),
            "evidence carries a query"
        );
    }

    #[test]
    fn deploy_on_a_healthy_service_is_not_blamed_but_on_a_sick_one_it_is() {
        let mut facts: BTreeMap<Entity, EntityFacts> = BTreeMap::new();
        series(
            facts.entry(Entity::service("frontend")).or_default(),
            "errors",
            SignalClass::Errors,
            0.9,
            0,
        );
        series(
            facts.entry(Entity::service("payments")).or_default(),
            "errors",
            SignalClass::Errors,
            0.8,
            0,
        );
        let deploy = |target: &str| Change {
            id: format!("d-{target}"),
            ts: 0,
            kind: ChangeKind::Deploy,
            target: target.into(),
            version: Some("v2".into()),
            description: String::new(),
        };
        let h = rank(
            &facts,
            &shop(),
            &[deploy("catalog")],
            60_000,
            &RankConfig::default(),
        );
        assert!(
            h.iter().all(|h| h.entity.name != "catalog"),
            "healthy deployed service must not be a hypothesis"
        );
        assert_eq!(top(&h), "payments");
        let h = rank(
            &facts,
            &shop(),
            &[deploy("payments")],
            60_000,
            &RankConfig::default(),
        );
        assert_eq!(top(&h), "payments");
        assert_eq!(h[0].cause, "bad deploy");
        assert_eq!(h[0].evidence[0].kind, EvidenceKind::Change);
    }

    #[test]
    fn failing_calls_are_blamed_on_the_end_they_point_to() {
        // Every caller of postgres fails to reach it: the callee is suspect.
        let mut facts: BTreeMap<Entity, EntityFacts> = BTreeMap::new();
        edge(&mut facts, "checkout", "postgres", SignalClass::Errors, 0.9);
        edge(&mut facts, "catalog", "postgres", SignalClass::Errors, 0.9);
        series(
            facts.entry(Entity::service("checkout")).or_default(),
            "errors",
            SignalClass::Errors,
            0.6,
            0,
        );
        series(
            facts.entry(Entity::service("catalog")).or_default(),
            "errors",
            SignalClass::Errors,
            0.6,
            0,
        );
        let h = rank(&facts, &shop(), &[], 60_000, &RankConfig::default());
        assert_eq!(top(&h), "postgres");

        // checkout's calls to all its callees fail while catalog still reaches postgres: checkout is suspect.
        let mut facts: BTreeMap<Entity, EntityFacts> = BTreeMap::new();
        edge(&mut facts, "checkout", "postgres", SignalClass::Errors, 0.9);
        edge(&mut facts, "checkout", "payments", SignalClass::Errors, 0.9);
        series(
            facts.entry(Entity::service("checkout")).or_default(),
            "errors",
            SignalClass::Errors,
            0.7,
            0,
        );
        let h = rank(&facts, &shop(), &[], 60_000, &RankConfig::default());
        assert_eq!(top(&h), "checkout");
        assert_eq!(h[0].cause, "failing outbound calls (DNS or egress)");
    }

    #[test]
    fn a_node_that_went_away_outranks_the_services_on_it() {
        let mut facts: BTreeMap<Entity, EntityFacts> = BTreeMap::new();
        let n = facts.entry(Entity::node("db-03")).or_default();
        series(n, "node:up", SignalClass::Availability, 1.0, 0);
        n.events.insert(
            "NodeNotReady".into(),
            nightshift_core::facts::EventFact {
                reason: "NodeNotReady".into(),
                event_type: EventType::Warning,
                first_ts: 0,
                count: 1,
                object: "Node/db-03".into(),
                message: "Node db-03 status is now: NodeNotReady".into(),
            },
        );
        let pg = facts.entry(Entity::service("postgres")).or_default();
        series(pg, "service:up:ratio", SignalClass::Availability, 1.0, 0);
        series(pg, "errors", SignalClass::Errors, 0.9, 0);
        let h = rank(&facts, &shop(), &[], 60_000, &RankConfig::default());
        assert_eq!(h[0].entity, Entity::node("db-03"));
        assert_eq!(h[0].cause, "node failure");
    }
}
