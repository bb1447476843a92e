//! Questions in plain words ("why is checkout slow?", "what changed in payments in the last
//! hour?") answered from what Nightshift recorded, without an LLM: the services and nodes the
//! question names are found in the topology, the time window in its words, and the answer lists
//! the incidents, anomalies and changes that concern them, each with its evidence id and query.

use crate::explain::{Source, explain};
use nightshift_core::{Anomaly, Change, Incident, Millis, Topology};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What a question is answered from: the caller reads it from the store.
#[derive(Debug, Clone, Default)]
pub struct AskContext {
    pub topology: Topology,
    /// Recent incidents, newest first.
    pub incidents: Vec<Incident>,
    /// Recent anomalies, newest first.
    pub anomalies: Vec<Anomaly>,
    /// Recent changes, newest first.
    pub changes: Vec<Change>,
    pub now: Millis,
}

/// One fact an answer rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cited {
    /// `inc-0003/ev-2`, `anomaly-4` or `change-1`: unique within the answer.
    pub id: String,
    pub summary: String,
    /// A PromQL or LogQL query that shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// The answer to a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub question: String,
    pub answer: String,
    /// The services and nodes the question was understood to be about.
    pub entities: Vec<String>,
    /// The start of the time window looked at.
    pub since: Millis,
    /// Incidents the answer mentions.
    pub incidents: Vec<String>,
    pub evidence: Vec<Cited>,
    /// Queries that show what the answer says.
    pub queries: Vec<String>,
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How far back a question looks when it does not say.
pub const DEFAULT_WINDOW_MS: Millis = 3_600_000;
/// Anomalies and changes listed at most per answer.
const MAX_LISTED: usize = 5;

/// The services and nodes of the topology a question names, in the order they appear. Names
/// match whole words, case-insensitively, with `-` and `_` read as spaces, and a plural `s`
/// tolerated ("payment" finds `payments`).
pub fn entities_in(question: &str, topology: &Topology) -> Vec<String> {
    entities_named(question, &known_entities(topology, &[]))
}

/// The services and nodes known from the topology and from incidents (alerts name services
/// the traces may never have shown): what a question or a root cause may name.
pub fn known_entities<'a>(topology: &'a Topology, incidents: &'a [Incident]) -> BTreeSet<&'a str> {
    let mut known: BTreeSet<&str> = topology
        .services
        .iter()
        .map(String::as_str)
        .chain(topology.calls.keys().map(String::as_str))
        .chain(topology.nodes())
        .collect();
    for i in incidents {
        known.extend(i.hypotheses.iter().map(|h| h.entity.name.as_str()));
        known.extend(i.blast_radius.entities.iter().map(|e| e.name.as_str()));
    }
    known
}

/// The names of `known` a question names, in the order they appear.
fn entities_named(question: &str, known: &BTreeSet<&str>) -> Vec<String> {
    let text = format!(" {} ", normalise(question));
    let mut found: Vec<(usize, String)> = Vec::new();
    for &name in known {
        let n = normalise(name);
        if n.is_empty() {
            continue;
        }
        let mut variants = vec![n.clone()];
        if let Some(singular) = n.strip_suffix('s').filter(|s| s.len() >= 4) {
            variants.push(singular.to_string());
        } else {
            variants.push(format!("{n}s"));
        }
        if let Some(pos) = variants
            .iter()
            .filter_map(|v| text.find(&format!(" {v} ")))
            .min()
        {
            found.push((pos, name.to_string()));
        }
    }
    found.sort();
    found.into_iter().map(|(_, n)| n).collect()
}

fn normalise(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The time window a question names ("in the last 30 minutes", "past 2h", "last hour",
/// "today"), in ms; `None` when it names none.
pub fn window_in(question: &str, now: Millis) -> Option<Millis> {
    let text = normalise(question);
    let words: Vec<&str> = text.split(' ').collect();
    if words.contains(&"today") {
        return Some(now.rem_euclid(86_400_000).max(60_000));
    }
    for (i, w) in words.iter().enumerate() {
        if !matches!(*w, "last" | "past") {
            continue;
        }
        let (count, unit) = match (words.get(i + 1), words.get(i + 2)) {
            (Some(n), Some(u)) if n.parse::<f64>().is_ok() => (n.parse::<f64>().ok()?, *u),
            (Some(n), _) if split_number(n).is_some() => split_number(n)?,
            (Some(u), _) => (1.0, *u),
            _ => continue,
        };
        let unit_ms = match unit {
            "s" | "sec" | "secs" | "second" | "seconds" => 1_000.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60_000.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000.0,
            "d" | "day" | "days" => 86_400_000.0,
            "week" | "weeks" | "w" => 604_800_000.0,
            _ => continue,
        };
        return Some((count * unit_ms) as Millis);
    }
    None
}

/// `30m` → (30, "m").
fn split_number(word: &str) -> Option<(f64, &str)> {
    let digits = word.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let n = word[..digits].parse().ok()?;
    Some((n, &word[digits..]))
}

/// What the question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Changes,
    Trouble,
    Overview,
}

fn intent(question: &str) -> Intent {
    let t = normalise(question);
    let has = |words: &[&str]| t.split(' ').any(|w| words.iter().any(|x| w.starts_with(x)));
    if has(&[
        "change", "deploy", "rollout", "release", "rollback", "config",
    ]) {
        Intent::Changes
    } else if has(&[
        "why", "slow", "latenc", "error", "fail", "down", "broken", "wrong", "crash", "incident",
        "alert", "problem", "issue", "happen",
    ]) {
        Intent::Trouble
    } else {
        Intent::Overview
    }
}

/// Whether an incident concerns any of `entities` (all incidents when none are named).
fn concerns(i: &Incident, entities: &[String]) -> bool {
    entities.is_empty()
        || entities.iter().any(|e| {
            i.hypotheses.iter().any(|h| &h.entity.name == e)
                || i.blast_radius.entities.iter().any(|x| &x.name == e)
        })
}

/// The deterministic answer.
pub fn answer(question: &str, ctx: &AskContext) -> Answer {
    let mut known = known_entities(&ctx.topology, &ctx.incidents);
    known.extend(ctx.anomalies.iter().map(|a| a.entity.name.as_str()));
    known.extend(ctx.changes.iter().map(|c| c.target.as_str()));
    let entities = entities_named(question, &known);
    let window = window_in(question, ctx.now).unwrap_or(DEFAULT_WINDOW_MS);
    let since = ctx.now - window;
    let intent = intent(question);
    let about = if entities.is_empty() {
        "the system".to_string()
    } else {
        entities.join(", ")
    };
    let span = nightshift_core::format_duration(window);
    let mut lines: Vec<String> = Vec::new();
    let mut evidence: Vec<Cited> = Vec::new();
    let mut incidents: Vec<String> = Vec::new();

    let relevant: Vec<&Incident> = ctx
        .incidents
        .iter()
        .filter(|i| i.status.is_active() || i.updated_at >= since)
        .filter(|i| concerns(i, &entities))
        .take(MAX_LISTED)
        .collect();
    let changes: Vec<&Change> = ctx
        .changes
        .iter()
        .filter(|c| c.ts >= since)
        .filter(|c| entities.is_empty() || entities.contains(&c.target))
        .take(MAX_LISTED)
        .collect();
    let mut anomalies: Vec<&Anomaly> = ctx
        .anomalies
        .iter()
        .filter(|a| a.ts >= since)
        .filter(|a| entities.is_empty() || entities.contains(&a.entity.name))
        .collect();
    anomalies.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.ts.cmp(&a.ts)));
    anomalies.truncate(MAX_LISTED);

    let change_lines = |lines: &mut Vec<String>, evidence: &mut Vec<Cited>| {
        if changes.is_empty() {
            lines.push(format!(
                "No change to {about} was recorded in the last {span}."
            ));
        }
        for c in &changes {
            let id = format!("change-{}", evidence.len() + 1);
            let ago = nightshift_core::format_duration(ctx.now - c.ts);
            let text = format!("{} {ago} ago", c.summary());
            lines.push(format!("[{id}] {text}"));
            evidence.push(Cited {
                id,
                summary: text,
                query: None,
            });
        }
    };
    if intent == Intent::Changes {
        change_lines(&mut lines, &mut evidence);
    }
    if relevant.is_empty() && intent != Intent::Changes {
        lines.push(format!("No incident concerns {about} in the last {span}."));
    }
    for i in &relevant {
        let c = explain(i);
        incidents.push(i.id.clone());
        let cited: Vec<String> = c.evidence.iter().map(|e| format!("{}/{e}", i.id)).collect();
        lines.push(format!(
            "{} ({}, {}): {} Root cause: {} ({}, confidence {:.2}). Recommended: {}. [{}]",
            i.id,
            i.status.as_str(),
            i.priority.as_str(),
            c.summary,
            c.root_cause,
            c.cause,
            c.confidence,
            c.action,
            cited.join(", ")
        ));
        for h in i.hypotheses.iter().take(1) {
            for e in &h.evidence {
                evidence.push(Cited {
                    id: format!("{}/{}", i.id, e.id),
                    summary: e.summary.clone(),
                    query: e.query.clone(),
                });
            }
        }
    }
    if intent != Intent::Changes {
        for a in &anomalies {
            let id = format!("anomaly-{}", evidence.len() + 1);
            let ago = nightshift_core::format_duration(ctx.now - a.ts);
            let text = format!(
                "{} {} {} at {:.3} (expected {:.3}) {ago} ago, score {:.2}",
                a.entity,
                a.series.metric,
                match a.direction {
                    nightshift_core::Direction::Up => "rose",
                    nightshift_core::Direction::Down => "fell",
                },
                a.value,
                a.expected,
                a.score
            );
            lines.push(format!("[{id}] {text}"));
            evidence.push(Cited {
                id,
                summary: text,
                query: Some(a.promql.clone()),
            });
        }
        if anomalies.is_empty() && !entities.is_empty() {
            lines.push(format!("No anomaly on {about} in the last {span}."));
        }
        if intent == Intent::Trouble {
            change_lines(&mut lines, &mut evidence);
        }
    }
    if entities.is_empty() && !question.trim().is_empty() {
        lines.insert(
            0,
            "The question names no known service or node; this is the whole system.".into(),
        );
    }
    let queries: Vec<String> = evidence
        .iter()
        .filter_map(|e| e.query.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Answer {
        question: question.to_string(),
        answer: lines.join("\n"),
        entities,
        since,
        incidents,
        evidence,
        queries,
        source: Source::Deterministic,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        let mut t = Topology::new();
        t.add_call("frontend", "checkout");
        t.add_call("checkout", "payments");
        t.add_call("checkout", "users-db");
        t.add_placement("users-db", "db-03");
        t
    }

    #[test]
    fn entities_are_found_as_whole_words_with_plurals_and_separators() {
        let t = topology();
        assert_eq!(entities_in("why is checkout slow?", &t), vec!["checkout"]);
        assert_eq!(
            entities_in("what changed in payment and users db?", &t),
            vec!["payments", "users-db"]
        );
        assert_eq!(entities_in("is node db-03 ok", &t), vec!["db-03"]);
        assert!(entities_in("checkouts everywhere? no: checkoutx", &t) == vec!["checkout"]);
        assert!(entities_in("hello", &t).is_empty());
    }

    #[test]
    fn windows_are_read_from_the_words() {
        let now = 10 * 86_400_000 + 3_600_000;
        assert_eq!(window_in("in the last hour", now), Some(3_600_000));
        assert_eq!(window_in("last 30 minutes", now), Some(1_800_000));
        assert_eq!(window_in("past 2h?", now), Some(7_200_000));
        assert_eq!(window_in("what happened today", now), Some(3_600_000));
        assert_eq!(window_in("why is it slow", now), None);
    }

    #[test]
    fn a_question_about_a_service_lists_its_incident_with_cited_evidence() {
        let mut inc = crate::explain::tests::incident();
        inc.blast_radius
            .entities
            .push(nightshift_core::Entity::service("checkout"));
        let ctx = AskContext {
            topology: topology(),
            incidents: vec![inc],
            now: 5_000,
            ..Default::default()
        };
        let a = answer("why is checkout slow?", &ctx);
        assert_eq!(a.entities, vec!["checkout"]);
        assert_eq!(a.incidents, vec!["inc-0001"]);
        assert!(a.answer.contains("postgres"), "{}", a.answer);
        assert!(a.evidence.iter().any(|e| e.id == "inc-0001/ev-1"));
        assert!(!a.queries.is_empty());
        let none = answer("what changed in payments in the last hour?", &ctx);
        assert!(
            none.answer.contains("No change to payments"),
            "{}",
            none.answer
        );
    }
}
