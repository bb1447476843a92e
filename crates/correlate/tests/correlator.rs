//! The correlator with the ranking it runs with in the pipeline: concurrent faults, error-budget
//! priority, the incident lifecycle, history across runs, and symptom alerts under their cause.

use nightshift_core::{
    Alert, Anomaly, Change, Direction, Entity, EvidenceKind, Incident, IncidentStatus, MINUTE,
    Millis, Priority, SeriesKey, SignalClass,
};
use nightshift_correlate::{Correlator, CorrelatorConfig, LifecycleError};
use std::collections::BTreeMap;

fn anomaly(service: &str, metric: &str, class: SignalClass, ts: Millis) -> Anomaly {
    Anomaly {
        series: SeriesKey::new(metric, &[("service", service)]),
        entity: Entity::service(service),
        class,
        ts,
        score: 0.9,
        value: 10.0,
        expected: 1.0,
        lower: 0.0,
        upper: 2.0,
        direction: Direction::Up,
        detector: "test".into(),
        promql: metric.into(),
    }
}

/// `gateway` calls `search → elastic` and `users → users-db`.
fn correlator() -> Correlator {
    let mut c = Correlator::new(
        CorrelatorConfig::default(),
        Box::new(nightshift_diagnose::Ranking::default()),
    );
    let t = c.topology_mut();
    t.add_call("gateway", "search");
    t.add_call("search", "elastic");
    t.add_call("gateway", "users");
    t.add_call("users", "users-db");
    c
}

/// Feeds one saturation anomaly on `service` and one latency anomaly on `caller` per
/// minute from `from` to `to` (exclusive), advancing the correlator each minute.
fn fault(c: &mut Correlator, service: &str, caller: &str, from: Millis, to: Millis) {
    let mut t = from;
    while t < to {
        c.observe_anomaly(&anomaly(service, "cpu", SignalClass::Saturation, t));
        c.observe_anomaly(&anomaly(caller, "latency", SignalClass::Latency, t));
        c.advance(t);
        t += MINUTE;
    }
}

fn quiet(c: &mut Correlator, from: Millis, to: Millis) {
    let mut t = from;
    while t < to {
        c.advance(t);
        t += MINUTE;
    }
}

#[test]
fn a_concurrent_fault_off_the_suspects_path_opens_its_own_incident() {
    let mut c = correlator();
    fault(&mut c, "elastic", "search", 0, 5 * MINUTE);
    fault(&mut c, "users-db", "users", 5 * MINUTE, 10 * MINUTE);
    let incidents: Vec<&Incident> = c.incidents().collect();
    assert_eq!(incidents.len(), 2, "{incidents:#?}");
    assert_eq!(
        incidents[0].hypotheses[0].entity,
        Entity::service("elastic")
    );
    assert_eq!(
        incidents[1].hypotheses[0].entity,
        Entity::service("users-db")
    );
    // The gateway calls both: its latency is explained by either.
    c.observe_anomaly(&anomaly(
        "gateway",
        "latency",
        SignalClass::Latency,
        10 * MINUTE,
    ));
    c.advance(10 * MINUTE);
    assert_eq!(c.incidents().count(), 2);
}

#[test]
fn a_user_facing_error_budget_burning_fast_makes_the_incident_p1() {
    let mut c = correlator();
    for m in 0..60 {
        c.observe_traffic("gateway", m * MINUTE, 100.0, 0.0001);
        c.observe_traffic("users", m * MINUTE, 50.0, 0.0001);
    }
    // users-db fails; users returns 10% errors (100× the 99.9% budget), the gateway 5%.
    let mut t = 60 * MINUTE;
    while t < 70 * MINUTE {
        c.observe_traffic("gateway", t, 100.0, 0.05);
        c.observe_traffic("users", t, 50.0, 0.1);
        c.observe_anomaly(&anomaly("users-db", "cpu", SignalClass::Saturation, t));
        c.observe_anomaly(&anomaly("users", "errors", SignalClass::Errors, t));
        c.advance(t);
        t += MINUTE;
    }
    let inc = c.incidents().next().expect("an incident");
    // Only users is in the incident so far: an internal service paging is P2.
    assert_eq!(inc.priority, Priority::P2, "{:?}", inc.slo);
    assert_eq!(inc.slo.len(), 1);
    assert_eq!(inc.slo[0].service, "users");
    // The gateway's errors join it: a user-facing page.
    while t < 82 * MINUTE {
        c.observe_traffic("gateway", t, 100.0, 0.05);
        c.observe_anomaly(&anomaly("gateway", "errors", SignalClass::Errors, t));
        c.advance(t);
        t += MINUTE;
    }
    let inc = c.incidents().next().expect("an incident");
    assert_eq!(inc.priority, Priority::P1, "{:?}", inc.slo);
    assert!(
        inc.timeline
            .iter()
            .any(|e| e.text.starts_with("SLO page: gateway burns"))
    );
}

#[test]
fn lifecycle_acknowledge_resolve_reopen_and_flap_all_on_the_timeline() {
    let mut c = correlator();
    fault(&mut c, "users-db", "users", 0, 5 * MINUTE);
    let id = c.incidents().next().expect("an incident").id.clone();
    assert!(matches!(
        c.acknowledge("inc-9999", "ana", MINUTE),
        Err(LifecycleError::NotFound(_))
    ));
    let inc = c.acknowledge(&id, "ana", 5 * MINUTE).expect("acknowledged");
    assert_eq!(inc.status, IncidentStatus::Acknowledged);
    assert_eq!(inc.acknowledged_by.as_deref(), Some("ana"));
    // Still attached to while acknowledged, and resolved once quiet.
    fault(&mut c, "users-db", "users", 5 * MINUTE, 6 * MINUTE);
    quiet(&mut c, 6 * MINUTE, 20 * MINUTE);
    let inc = c.incident(&id).expect("kept");
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert!(matches!(
        c.acknowledge(&id, "ana", 20 * MINUTE),
        Err(LifecycleError::Resolved(_))
    ));
    // A relapse within the reopen window reopens it rather than opening a new one.
    fault(&mut c, "users-db", "users", 25 * MINUTE, 28 * MINUTE);
    assert_eq!(c.incidents().count(), 1);
    let inc = c.incident(&id).expect("kept");
    assert_eq!(inc.status, IncidentStatus::Open);
    assert_eq!((inc.reopened, inc.flapping), (1, false));
    quiet(&mut c, 28 * MINUTE, 40 * MINUTE);
    assert_eq!(
        c.incident(&id).map(|i| i.status),
        Some(IncidentStatus::Resolved)
    );
    // A second relapse within the hour: flapping, and it now needs longer to resolve.
    fault(&mut c, "users-db", "users", 45 * MINUTE, 48 * MINUTE);
    let inc = c.incident(&id).expect("kept");
    assert_eq!((inc.reopened, inc.flapping), (2, true));
    quiet(&mut c, 48 * MINUTE, 62 * MINUTE);
    assert_eq!(
        c.incident(&id).map(|i| i.status),
        Some(IncidentStatus::Open)
    );
    quiet(&mut c, 62 * MINUTE, 80 * MINUTE);
    let inc = c.incident(&id).expect("kept");
    assert_eq!(inc.status, IncidentStatus::Resolved);
    let transitions: Vec<&str> = inc
        .timeline
        .iter()
        .filter(|t| t.kind == EvidenceKind::Lifecycle)
        .map(|t| t.text.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        transitions,
        [
            "opened",
            "acknowledged by ana",
            "resolved",
            "reopened",
            "resolved",
            "reopened",
            "flapping",
            "resolved"
        ]
    );
    // Past the reopen window, the same fault is a new incident, which remembers the first
    // one and how it ended.
    fault(&mut c, "users-db", "users", 200 * MINUTE, 205 * MINUTE);
    assert_eq!(c.incidents().count(), 2);
    let new = c.incidents().last().expect("the new incident");
    assert_eq!(new.similar.len(), 1, "{:?}", new.similar);
    assert_eq!(new.similar[0].id, id);
    assert!(new.similar[0].similarity >= 0.75);
    assert!(
        new.similar[0]
            .resolution
            .starts_with("recovered on its own after"),
        "{}",
        new.similar[0].resolution
    );
}

#[test]
fn incidents_of_an_earlier_run_are_history_and_their_ids_are_not_reused() {
    let mut before = correlator();
    fault(&mut before, "users-db", "users", 0, 5 * MINUTE);
    quiet(&mut before, 5 * MINUTE, 20 * MINUTE);
    let past: Vec<Incident> = before.incidents().cloned().collect();
    assert_eq!(past[0].status, IncidentStatus::Resolved);
    assert!(past[0].resolution.is_some());

    let mut c = correlator();
    c.remember(past.clone());
    c.remember(past);
    assert_eq!(c.incidents().count(), 1, "remembered once");
    fault(&mut c, "users-db", "users", 120 * MINUTE, 125 * MINUTE);
    let new = c.incidents().last().expect("a new incident");
    assert_eq!(new.id, "inc-0002");
    assert_eq!(new.similar.first().map(|p| p.id.as_str()), Some("inc-0001"));
}

#[test]
fn symptom_alerts_are_shown_under_their_cause_and_a_fix_is_remembered() {
    let mut c = correlator();
    let alert = |name: &str, service: &str, ts: Millis| {
        let labels = BTreeMap::from([
            ("alertname".to_string(), name.to_string()),
            ("service".to_string(), service.to_string()),
        ]);
        Alert::firing(labels, BTreeMap::new(), ts)
    };
    fault(&mut c, "users-db", "users", 0, 3 * MINUTE);
    c.observe_alert(&alert("HighErrorRate", "users", 3 * MINUTE));
    c.observe_alert(&alert("PostgresTooManyConnections", "users-db", 3 * MINUTE));
    fault(&mut c, "users-db", "users", 3 * MINUTE, 5 * MINUTE);
    let inc = c.incidents().next().expect("an incident");
    assert_eq!(inc.hypotheses[0].entity, Entity::service("users-db"));
    let inhibited: Vec<(&str, &str)> = inc
        .inhibited
        .iter()
        .map(|a| (a.alertname.as_str(), a.entity.name.as_str()))
        .collect();
    assert_eq!(inhibited, [("HighErrorRate", "users")]);
    assert_eq!(inc.inhibited[0].cause, Entity::service("users-db"));
    // The gateway calls users and shows nothing yet: at risk.
    assert_eq!(inc.blast_radius.at_risk, ["gateway"]);
    // A rollback of users-db while it is open is what resolved it.
    c.observe_change(&Change {
        id: "c1".into(),
        ts: 6 * MINUTE,
        kind: nightshift_core::ChangeKind::Rollback,
        target: "users-db".into(),
        version: Some("v1".into()),
        description: String::new(),
    });
    let mut r = alert("HighErrorRate", "users", 3 * MINUTE);
    r.status = nightshift_core::AlertStatus::Resolved;
    c.observe_alert(&r);
    let mut r = alert("PostgresTooManyConnections", "users-db", 3 * MINUTE);
    r.status = nightshift_core::AlertStatus::Resolved;
    c.observe_alert(&r);
    quiet(&mut c, 6 * MINUTE, 20 * MINUTE);
    fault(&mut c, "users-db", "users", 60 * MINUTE, 65 * MINUTE);
    let new = c.incidents().last().expect("a second incident");
    assert_eq!(c.incidents().count(), 2);
    assert!(
        new.similar[0]
            .resolution
            .starts_with("rollback of users-db (v1)"),
        "{:?}",
        new.similar
    );
}
