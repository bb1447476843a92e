//! `nightshift eval rca`: replays scenarios and scores detection, grouping and root-cause ranking
//! against each fault's ground truth, beside two baselines computed from the same alerts.

use crate::baseline::{AlertmanagerGrouping, loudest_services};
use nightshift_core::{AlertStatus, Entity, MINUTE, Millis};
use nightshift_pipeline::Replay;
use nightshift_sim::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;

/// How far around a fault an incident may lie and still not count as false.
const FALSE_INCIDENT_MARGIN: Millis = 10 * MINUTE;
/// Alertmanager's default `group_wait`.
const GROUP_WAIT: Millis = 30_000;

/// One fault of one scenario, as each method saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub scenario: String,
    pub fault: String,
    pub target: String,
    pub at_seconds: i64,
    /// Rank of the true target among the hypotheses of the incident that caught the fault.
    pub rank: Option<usize>,
    pub incident: Option<String>,
    pub top: Option<String>,
    pub detection_seconds: Option<i64>,
    pub first_alert_seconds: Option<i64>,
    pub loudest_rank: Option<usize>,
    pub alertmanager_rank: Option<usize>,
    pub alertmanager_detection_seconds: Option<i64>,
}

/// Per-scenario counts.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioScore {
    pub scenario: String,
    pub faults: usize,
    pub alerts: u64,
    pub incidents: usize,
    pub false_incidents: usize,
    pub alertmanager_groups: usize,
    pub alertmanager_false_groups: usize,
    pub grouping: GroupingCounts,
}

/// Alert firings attributed to faults, and how Nightshift's incidents grouped them. A firing
/// belongs to the fault whose window (to 10 minutes after its end) holds its start; among
/// concurrent faults, to the one whose target is nearest its service in the topology. A fault's
/// consequences (`caused_by`) count as that fault. A firing equally near two concurrent faults
/// (a caller of both) has no single true fault: it is counted as ambiguous and left out of
/// purity and completeness.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct GroupingCounts {
    /// Firings equally near two concurrent faults.
    pub ambiguous: usize,
    /// Firings attributed to a fault.
    pub fault_alerts: usize,
    /// Of those, the ones some incident holds.
    pub grouped: usize,
    /// Per incident, its firings of its most common fault, summed (purity's numerator).
    pub pure: usize,
    /// Per fault, its firings in the incident that holds most of them, summed (completeness's
    /// numerator).
    pub complete: usize,
}

/// Grouping quality over alerts: purity (an incident holds one fault's alerts) and
/// completeness (a fault's alerts are in one incident).
#[derive(Debug, Clone, Serialize)]
pub struct Grouping {
    pub alerts: usize,
    /// Firings equally near two concurrent faults, left out of both figures.
    pub ambiguous: usize,
    pub purity: Option<f64>,
    pub completeness: Option<f64>,
}

/// Attributes each firing to a fault and each attributed firing to the incident holding it.
fn grouping_counts(
    scenario: &Scenario,
    replay: &Replay,
    windows: &[(Millis, Millis)],
) -> GroupingCounts {
    let faults = scenario.faults();
    let targets: Vec<Entity> = faults.iter().map(|f| f.entity()).collect();
    // (incident, fault) → firings.
    let mut cells: BTreeMap<(Option<usize>, usize), usize> = BTreeMap::new();
    let mut counts = GroupingCounts::default();
    for a in replay
        .alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
    {
        let entity = a
            .labels
            .get("service")
            .map(|s| Entity::service(s))
            .or_else(|| a.labels.get("node").map(|n| Entity::node(n)));
        // Root faults active at the firing, by the distance of their (or their consequences')
        // targets from the firing's entity.
        let mut nearest: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, _) in windows
            .iter()
            .enumerate()
            .filter(|(_, (s, e))| a.starts_at >= *s && a.starts_at <= e + FALSE_INCIDENT_MARGIN)
        {
            let d = entity
                .as_ref()
                .and_then(|x| replay.topology.distance(x, &targets[i], 8))
                .unwrap_or(usize::MAX);
            let root = faults[i].caused_by.unwrap_or(i);
            let n = nearest.entry(root).or_insert(d);
            *n = (*n).min(d);
        }
        let Some(&best) = nearest.values().min() else {
            continue;
        };
        let mut roots = nearest.iter().filter(|(_, d)| **d == best).map(|(r, _)| *r);
        let fault = roots.next().unwrap_or_default();
        if roots.next().is_some() {
            counts.ambiguous += 1;
            continue;
        }
        let incident = replay.incidents.iter().position(|i| {
            i.alerts.contains(&a.fingerprint)
                && a.starts_at >= i.opened_at - FALSE_INCIDENT_MARGIN
                && a.starts_at <= i.resolved_at.unwrap_or(replay.end_ms) + FALSE_INCIDENT_MARGIN
        });
        counts.fault_alerts += 1;
        if incident.is_some() {
            counts.grouped += 1;
        }
        *cells.entry((incident, fault)).or_default() += 1;
    }
    let mut by_incident: BTreeMap<usize, usize> = BTreeMap::new();
    let mut by_fault: BTreeMap<usize, usize> = BTreeMap::new();
    for ((incident, fault), n) in &cells {
        if let Some(i) = incident {
            let m = by_incident.entry(*i).or_default();
            *m = (*m).max(*n);
            let f = by_fault.entry(*fault).or_default();
            *f = (*f).max(*n);
        }
    }
    counts.pure = by_incident.values().sum();
    counts.complete = by_fault.values().sum();
    counts
}

/// Quality figures of one method over all cases.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub cases: usize,
    pub ac_at_1: f64,
    pub ac_at_3: f64,
    pub avg_at_5: f64,
    pub detected: usize,
    pub mttd_seconds_median: Option<f64>,
    pub incidents: usize,
    pub false_incidents: usize,
    pub compression: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    pub loudest_service: Figures,
    pub alertmanager_grouping: Figures,
}

/// The whole report; the top-level figures are Nightshift's own.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub figures: Figures,
    pub alerts: u64,
    /// Share of detected faults where Nightshift opened its incident before the first static alert fired.
    pub earlier_than_first_alert: f64,
    pub grouping: Grouping,
    pub baselines: Baselines,
    pub scenarios: Vec<ScenarioScore>,
    pub per_case: Vec<Case>,
    /// With `--llm`: the investigator's root causes beside the deterministic ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub investigator: Option<InvestigatorReport>,
}

/// One fault's incident investigated by the LLM.
#[derive(Debug, Clone, Serialize)]
pub struct InvestigatedCase {
    pub scenario: String,
    pub target: String,
    pub incident: String,
    /// The deterministic top hypothesis.
    pub deterministic: String,
    /// The root cause shown: the LLM's when accepted, else the deterministic one.
    pub investigated: String,
    /// Whether the LLM's conclusion was accepted (its citations checked).
    pub accepted: bool,
    /// Why it was not, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub llm_calls: u32,
    pub tool_calls: usize,
    pub tokens: u64,
    pub seconds: f64,
}

/// The investigator's figures over every fault (a fault without an incident counts as wrong
/// for both).
#[derive(Debug, Clone, Serialize)]
pub struct InvestigatorReport {
    pub model: String,
    pub faults: usize,
    pub investigated: usize,
    pub accepted: usize,
    pub deterministic_ac_at_1: f64,
    pub investigated_ac_at_1: f64,
    pub tokens_per_incident: f64,
    pub seconds_per_incident: f64,
    pub seconds_per_incident_median: Option<f64>,
    pub per_case: Vec<InvestigatedCase>,
}

pub fn investigator_report(
    model: String,
    faults: usize,
    cases: Vec<InvestigatedCase>,
) -> InvestigatorReport {
    let share = |n: usize| {
        if faults == 0 {
            0.0
        } else {
            n as f64 / faults as f64
        }
    };
    let n = cases.len().max(1) as f64;
    InvestigatorReport {
        model,
        faults,
        investigated: cases.len(),
        accepted: cases.iter().filter(|c| c.accepted).count(),
        deterministic_ac_at_1: share(cases.iter().filter(|c| c.deterministic == c.target).count()),
        investigated_ac_at_1: share(cases.iter().filter(|c| c.investigated == c.target).count()),
        tokens_per_incident: cases.iter().map(|c| c.tokens as f64).sum::<f64>() / n,
        seconds_per_incident: cases.iter().map(|c| c.seconds).sum::<f64>() / n,
        seconds_per_incident_median: median(cases.iter().map(|c| c.seconds).collect()),
        per_case: cases,
    }
}

/// Scores one replayed scenario.
pub fn score_scenario(scenario: &Scenario, replay: &Replay) -> (ScenarioScore, Vec<Case>) {
    let start = scenario.start_ms();
    let windows: Vec<(Millis, Millis)> = scenario
        .faults()
        .iter()
        .map(|f| {
            let s = start + f.at_ms;
            (s, f.duration_ms.map_or(replay.end_ms, |d| s + d))
        })
        .collect();
    let overlaps_fault = |from: Millis, to: Millis| {
        windows
            .iter()
            .any(|(s, e)| from <= e + FALSE_INCIDENT_MARGIN && to >= s - FALSE_INCIDENT_MARGIN)
    };

    let false_incidents = replay
        .incidents
        .iter()
        .filter(|i| !overlaps_fault(i.opened_at, i.resolved_at.unwrap_or(replay.end_ms)))
        .count();

    let mut am = AlertmanagerGrouping::new(&["alertname", "service"], GROUP_WAIT);
    for a in &replay.alerts {
        let now = if a.status == AlertStatus::Firing {
            a.starts_at
        } else {
            a.ends_at.unwrap_or(a.starts_at)
        };
        am.observe(a, now);
    }
    let groups = am.groups();
    let am_false = groups
        .iter()
        .filter(|g| !overlaps_fault(g.notified_at, g.ended_at.unwrap_or(replay.end_ms)))
        .count();
    let fired = replay
        .alerts
        .iter()
        .filter(|a| a.status == AlertStatus::Firing)
        .count() as u64;

    let mut cases = Vec::new();
    for (f, (s, e)) in scenario
        .faults()
        .iter()
        .zip(&windows)
        .filter(|(f, _)| f.caused_by.is_none())
    {
        let incident = replay
            .incidents
            .iter()
            .filter(|i| i.opened_at >= *s && i.opened_at <= *e)
            .min_by_key(|i| i.opened_at);
        let rank = incident.and_then(|i| {
            i.hypotheses
                .iter()
                .position(|h| h.entity.name == f.target)
                .map(|p| p + 1)
        });
        let first_alert = replay
            .alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Firing && a.starts_at >= *s && a.starts_at <= *e)
            .map(|a| a.starts_at)
            .min();
        let loudest = loudest_services(&replay.alerts, *s, *e);
        let loudest_rank = loudest
            .iter()
            .position(|(svc, _)| *svc == f.target)
            .map(|p| p + 1);
        let mut am_order: Vec<&str> = Vec::new();
        let mut in_window: Vec<_> = groups
            .iter()
            .filter(|g| g.notified_at >= *s && g.notified_at <= *e)
            .collect();
        in_window.sort_by_key(|g| g.notified_at);
        for g in &in_window {
            if let Some(svc) = g.label("service").filter(|s| !s.is_empty())
                && !am_order.contains(&svc)
            {
                am_order.push(svc);
            }
        }
        cases.push(Case {
            scenario: scenario.name().to_string(),
            fault: f.kind.as_str().to_string(),
            target: f.target.clone(),
            at_seconds: f.at_ms / 1000,
            rank,
            incident: incident.map(|i| i.id.clone()),
            top: incident
                .and_then(|i| i.hypotheses.first())
                .map(|h| h.entity.name.clone()),
            detection_seconds: incident.map(|i| (i.opened_at - s) / 1000),
            first_alert_seconds: first_alert.map(|t| (t - s) / 1000),
            loudest_rank,
            alertmanager_rank: am_order
                .iter()
                .position(|svc| *svc == f.target)
                .map(|p| p + 1),
            alertmanager_detection_seconds: in_window.first().map(|g| (g.notified_at - s) / 1000),
        });
    }
    let score = ScenarioScore {
        scenario: scenario.name().to_string(),
        faults: scenario
            .faults()
            .iter()
            .filter(|f| f.caused_by.is_none())
            .count(),
        alerts: fired,
        incidents: replay.incidents.len(),
        false_incidents,
        alertmanager_groups: groups.len(),
        alertmanager_false_groups: am_false,
        grouping: grouping_counts(scenario, replay, &windows),
    };
    (score, cases)
}

fn ac_at(ranks: &[Option<usize>], k: usize) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / ranks.len() as f64
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn figures(
    ranks: &[Option<usize>],
    detections: &[Option<i64>],
    incidents: usize,
    false_incidents: usize,
    alerts: u64,
) -> Figures {
    Figures {
        cases: ranks.len(),
        ac_at_1: ac_at(ranks, 1),
        ac_at_3: ac_at(ranks, 3),
        avg_at_5: (1..=5).map(|k| ac_at(ranks, k)).sum::<f64>() / 5.0,
        detected: detections.iter().flatten().count(),
        mttd_seconds_median: median(detections.iter().flatten().map(|d| *d as f64).collect()),
        incidents,
        false_incidents,
        compression: (incidents > 0).then(|| alerts as f64 / incidents as f64),
    }
}

pub fn report(scores: Vec<ScenarioScore>, cases: Vec<Case>) -> Report {
    let alerts: u64 = scores.iter().map(|s| s.alerts).sum();
    let incidents: usize = scores.iter().map(|s| s.incidents).sum();
    let false_incidents: usize = scores.iter().map(|s| s.false_incidents).sum();
    let ranks: Vec<_> = cases.iter().map(|c| c.rank).collect();
    let detections: Vec<_> = cases.iter().map(|c| c.detection_seconds).collect();
    let own = figures(&ranks, &detections, incidents, false_incidents, alerts);
    let first_alerts: Vec<_> = cases.iter().map(|c| c.first_alert_seconds).collect();
    let loudest = figures(
        &cases.iter().map(|c| c.loudest_rank).collect::<Vec<_>>(),
        &first_alerts,
        0,
        0,
        alerts,
    );
    let am = figures(
        &cases
            .iter()
            .map(|c| c.alertmanager_rank)
            .collect::<Vec<_>>(),
        &cases
            .iter()
            .map(|c| c.alertmanager_detection_seconds)
            .collect::<Vec<_>>(),
        scores.iter().map(|s| s.alertmanager_groups).sum(),
        scores.iter().map(|s| s.alertmanager_false_groups).sum(),
        alerts,
    );
    let detected: Vec<&Case> = cases
        .iter()
        .filter(|c| c.detection_seconds.is_some())
        .collect();
    let earlier = detected
        .iter()
        .filter(|c| match (c.detection_seconds, c.first_alert_seconds) {
            (Some(d), Some(a)) => d < a,
            (Some(_), None) => true,
            _ => false,
        })
        .count();
    let g = scores
        .iter()
        .fold(GroupingCounts::default(), |acc, s| GroupingCounts {
            ambiguous: acc.ambiguous + s.grouping.ambiguous,
            fault_alerts: acc.fault_alerts + s.grouping.fault_alerts,
            grouped: acc.grouped + s.grouping.grouped,
            pure: acc.pure + s.grouping.pure,
            complete: acc.complete + s.grouping.complete,
        });
    let share = |n: usize, d: usize| (d > 0).then(|| n as f64 / d as f64);
    Report {
        figures: own,
        alerts,
        grouping: Grouping {
            alerts: g.fault_alerts,
            ambiguous: g.ambiguous,
            purity: share(g.pure, g.grouped),
            completeness: share(g.complete, g.fault_alerts),
        },
        earlier_than_first_alert: if detected.is_empty() {
            0.0
        } else {
            earlier as f64 / detected.len() as f64
        },
        baselines: Baselines {
            loudest_service: loudest,
            alertmanager_grouping: am,
        },
        scenarios: scores,
        per_case: cases,
        investigator: None,
    }
}
