//! The deterministic explanation of an incident: what happened, why and what to do, from the
//! ranked hypotheses alone, citing their evidence. It is the answer without an LLM and the
//! fallback whenever the LLM's answer cannot be trusted.

use nightshift_core::{Incident, IncidentStatus};
use serde::{Deserialize, Serialize};

/// Who reached a conclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The deterministic ranking.
    Deterministic,
    /// The LLM investigator, its citations checked.
    Llm,
}

/// An explanation of an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conclusion {
    pub incident: String,
    /// The entity at fault, e.g. `postgres` or `node/db-03`.
    pub root_cause: String,
    /// The kind of cause, e.g. `database saturation`.
    pub cause: String,
    /// What happened and why, in plain words.
    pub summary: String,
    /// In [0, 1].
    pub confidence: f64,
    /// What a person should do next. A proposal only: nothing runs from here.
    pub action: String,
    /// The evidence ids the conclusion rests on (`ev-N` of the incident, `tool-N` of the
    /// investigation).
    pub evidence: Vec<String>,
    pub source: Source,
    /// Why the deterministic answer is shown instead of the LLM's, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What a careful SRE would try first against each kind of cause the ranking names.
pub fn recommended_action(cause: &str, entity: &str) -> String {
    let c = cause.to_ascii_lowercase();
    let what = if c.contains("deploy") || c.contains("after change") {
        "roll back the most recent change to {e} and compare error rates before and after"
    } else if c.contains("memory") {
        "check {e}'s memory limit and growth; restart the leaking instances and raise the limit if the working set is legitimate"
    } else if c == "disk full" || c.contains("node disk") {
        "free or expand the volume of {e}: rotate logs, remove old data, grow the volume"
    } else if c.contains("database") {
        "look at {e}'s connection count and slow queries; raise its connection pool or kill the blocking queries"
    } else if c.contains("crash") {
        "read the logs of {e}'s restarting containers; roll back if the loop began with a deploy"
    } else if c.contains("cpu") || c.contains("resource saturation") {
        "scale {e} out (or raise its CPU limit) and look for the hot path"
    } else if c.contains("instances down") {
        "bring {e}'s instances back: check the pods' status and recent evictions"
    } else if c.contains("node failure") {
        "cordon and drain {e}, and let its pods reschedule on healthy nodes"
    } else if c.contains("outbound") {
        "check {e}'s DNS resolution and egress (network policies, resolver health)"
    } else if c.contains("inbound") {
        "check {e}'s certificates and the network path to it"
    } else if c.contains("latency") {
        "compare {e}'s latency with its dependencies' to find where the time goes"
    } else if c.contains("error") {
        "read {e}'s new error log templates and the failing requests"
    } else {
        "look at {e}'s dashboards over the incident window, starting with the evidence listed"
    };
    what.replace("{e}", entity)
}

/// The incident explained from its own ranking: the top hypothesis as the root cause, its
/// evidence as the citations, and its share of the ranking mass as the confidence.
pub fn explain(incident: &Incident) -> Conclusion {
    let Some(top) = incident.hypotheses.first() else {
        return Conclusion {
            incident: incident.id.clone(),
            root_cause: String::new(),
            cause: "unknown".into(),
            summary: format!(
                "{}: no hypothesis yet; the incident has no evidence that points anywhere",
                incident.title
            ),
            confidence: 0.0,
            action: "watch the incident's timeline for the first signals".into(),
            evidence: Vec::new(),
            source: Source::Deterministic,
            note: None,
        };
    };
    let name = top.entity.name.clone();
    let mut summary = top.summary.clone();
    let status = match incident.status {
        IncidentStatus::Resolved => "It has resolved.",
        IncidentStatus::Acknowledged => "It is acknowledged and still going on.",
        IncidentStatus::Open => "It is still going on.",
    };
    if !incident.blast_radius.entry_points.is_empty() {
        summary.push_str(&format!(
            ". Users see it through {}",
            incident.blast_radius.entry_points.join(", ")
        ));
    }
    if let Some(change) = incident
        .changes
        .iter()
        .rfind(|c| c.target == name && c.ts <= incident.opened_at)
    {
        summary.push_str(&format!(". It follows the {}", change.summary()));
    }
    if let Some(second) = incident.hypotheses.get(1) {
        summary.push_str(&format!(
            ". Next most likely: {} ({})",
            second.entity.name, second.cause
        ));
    }
    summary.push_str(". ");
    summary.push_str(status);
    let mut action = recommended_action(&top.cause, &name);
    if let Some(past) = incident.similar.first() {
        action.push_str(&format!(". Last time ({}): {}", past.id, past.resolution));
    }
    Conclusion {
        incident: incident.id.clone(),
        root_cause: name,
        cause: top.cause.clone(),
        summary,
        confidence: top.score.clamp(0.0, 1.0),
        action,
        evidence: top.evidence.iter().map(|e| e.id.clone()).collect(),
        source: Source::Deterministic,
        note: None,
    }
}

/// Every evidence id an incident carries, in any hypothesis.
pub fn evidence_ids(incident: &Incident) -> impl Iterator<Item = &str> {
    incident
        .hypotheses
        .iter()
        .flat_map(|h| h.evidence.iter().map(|e| e.id.as_str()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use nightshift_core::{BlastRadius, Entity, Evidence, EvidenceKind, Hypothesis, Priority};

    pub(crate) fn incident() -> Incident {
        let ev = |id: &str, entity: &str, summary: &str| Evidence {
            id: id.into(),
            kind: EvidenceKind::Anomaly,
            ts: 1_000,
            entity: Entity::service(entity),
            summary: summary.into(),
            series: None,
            observed: Some(95.0),
            expected: Some(20.0),
            query: Some(format!("pg_connections{{service=\"{entity}\"}}")),
            weight: 1.0,
        };
        Incident {
            id: "inc-0001".into(),
            title: "postgres: database saturation".into(),
            status: IncidentStatus::Open,
            opened_at: 1_000,
            updated_at: 2_000,
            resolved_at: None,
            acknowledged_at: None,
            acknowledged_by: None,
            reopened: 0,
            flapping: false,
            priority: Priority::P2,
            slo: vec![],
            inhibited: vec![],
            similar: vec![],
            resolution: None,
            blast_radius: BlastRadius {
                entities: vec![Entity::service("postgres"), Entity::service("frontend")],
                entry_points: vec!["frontend".into()],
                endpoints: vec![],
                at_risk: vec![],
            },
            alerts: vec![],
            anomaly_count: 3,
            changes: vec![],
            hypotheses: vec![
                Hypothesis {
                    rank: 1,
                    entity: Entity::service("postgres"),
                    cause: "database saturation".into(),
                    score: 0.7,
                    summary: "database saturation on service/postgres: connections 95 (normal 20)"
                        .into(),
                    evidence: vec![ev("ev-1", "postgres", "connections 95 (normal 20)")],
                },
                Hypothesis {
                    rank: 2,
                    entity: Entity::service("checkout"),
                    cause: "latency regression".into(),
                    score: 0.3,
                    summary: "latency regression on service/checkout".into(),
                    evidence: vec![ev("ev-2", "checkout", "p99 latency 2.1s (normal 0.2s)")],
                },
            ],
            timeline: vec![],
        }
    }

    #[test]
    fn the_deterministic_explanation_cites_the_top_hypothesis() {
        let c = explain(&incident());
        assert_eq!(c.root_cause, "postgres");
        assert_eq!(c.evidence, vec!["ev-1"]);
        assert_eq!(c.source, Source::Deterministic);
        assert!(c.summary.contains("frontend"), "{}", c.summary);
        assert!(c.summary.contains("checkout"), "{}", c.summary);
        assert!(c.action.contains("connection"), "{}", c.action);
    }
}
