//! Governance end to end on the shipped runbooks, with a real audit log: limits refuse the
//! N+1th action and say so in the log, the kill switch cancels what waits for approval, roles,
//! protected namespaces, change windows and a resolved incident stop an approval.

use nightshift_act::audit::{self, AuditLog};
use nightshift_act::govern::{ChangeWindow, GovernError, Governor, Policy, State};
use nightshift_act::plan::{Workload, Workloads, propose};
use nightshift_act::runbook::shipped;
use nightshift_act::{Proposal, Risk, Runbook};
use nightshift_core::{Alert, Entity, Hypothesis, Incident, cause};
use std::collections::BTreeMap;

const MONDAY_10H: i64 = 1_795_428_000_000; // 2026-11-23T10:00:00Z
const SATURDAY_10H: i64 = 1_795_255_200_000; // 2026-11-21T10:00:00Z

fn incident(id: &str, service: &str, why: &str) -> Incident {
    Incident {
        id: id.into(),
        title: format!("{why} on {service}"),
        hypotheses: vec![Hypothesis {
            rank: 1,
            entity: Entity::service(service),
            cause: why.into(),
            score: 0.9,
            summary: String::new(),
            evidence: vec![],
        }],
        ..Incident::default()
    }
}

/// The shipped runbook `name`'s proposal for `service` in namespace `ns`.
fn proposal(name: &str, id: &str, service: &str, why: &str, ns: &str) -> (Runbook, Proposal) {
    let runbooks = shipped();
    let labels: BTreeMap<String, String> = [("alertname", "X")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let alerts = [Alert::firing(labels, BTreeMap::new(), 0)];
    let workloads = Workloads::from([(
        service.to_string(),
        Workload {
            namespace: ns.into(),
            deployment: service.into(),
            container: None,
            placed_by: "configuration".into(),
        },
    )]);
    let p = propose(&runbooks, &incident(id, service, why), &alerts, &workloads)
        .into_iter()
        .find(|p| p.runbook == name)
        .unwrap_or_else(|| panic!("{name} is not proposed for {service}"));
    let r = runbooks.into_iter().find(|r| r.name == name).unwrap();
    (r, p)
}

/// The scale-out runbook proposed for CPU saturation of `service` in namespace default.
fn cpu_saturation(incident: &str, service: &str) -> (Runbook, Proposal) {
    proposal(
        "scale-out-saturated",
        incident,
        service,
        cause::CPU_SATURATION,
        "default",
    )
}

/// The OOM runbook proposed for `service` in `ns` and offered at Monday 10:00: (it, the action).
fn offer_oom(g: &mut Governor, incident: &str, service: &str, ns: &str) -> (Runbook, String) {
    let (r, p) = proposal(
        "oomkilled-raise-memory",
        incident,
        service,
        cause::MEMORY_EXHAUSTION,
        ns,
    );
    let id = g.offer(&r, p, MONDAY_10H).unwrap().id.clone();
    (r, id)
}

fn governor(policy: Policy) -> (tempfile::TempDir, std::path::PathBuf, Governor) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let g = Governor::new(policy, AuditLog::open(&path).unwrap());
    (dir, path, g)
}

fn audit_events(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .to_string()
                .trim_matches('"')
                .to_string()
        })
        .collect()
}

#[test]
fn the_action_past_a_limit_is_refused_and_audited() {
    let (_d, path, mut g) = governor(Policy::default());
    // scale-out-saturated: auto, low risk, at most 2 an hour and 1 per target.
    let t0 = MONDAY_10H;
    let (r, p) = cpu_saturation("inc-1", "pricing");
    assert_eq!(g.offer(&r, p, t0).unwrap().state, State::Approved);
    let (r, p) = cpu_saturation("inc-2", "pricing");
    let a = g.offer(&r, p, t0 + 60_000).unwrap();
    assert_eq!(a.state, State::Refused);
    assert!(
        a.note
            .as_deref()
            .unwrap()
            .contains("limit per target (default/pricing): 1 of at most 1"),
        "{a:?}"
    );
    let (r, p) = cpu_saturation("inc-3", "search");
    assert_eq!(g.offer(&r, p, t0 + 120_000).unwrap().state, State::Approved);
    let (r, p) = cpu_saturation("inc-4", "cart");
    let a = g.offer(&r, p, t0 + 180_000).unwrap();
    assert_eq!(a.state, State::Refused);
    assert!(
        a.note.as_deref().unwrap().contains("2 of at most 2"),
        "{a:?}"
    );
    // An hour after the first, there is room again.
    let (r, p) = cpu_saturation("inc-5", "cart");
    assert_eq!(
        g.offer(&r, p, t0 + 3_600_001).unwrap().state,
        State::Approved
    );
    // The same incident and runbook again is the same action, not a new one.
    let (r, p) = cpu_saturation("inc-5", "cart");
    assert_eq!(g.offer(&r, p, t0 + 3_700_000).unwrap().id, "act-0005");

    assert_eq!(
        audit_events(&path),
        ["approved", "refused", "approved", "refused", "approved"]
    );
    assert_eq!(audit::verify(&path).unwrap().unwrap().entries, 5);
}

#[test]
fn the_kill_switch_cancels_what_waits_for_approval_and_stops_automatic_actions() {
    let policy = Policy {
        approvers: [("alice".to_string(), Risk::High)].into(),
        ..Policy::default()
    };
    let (_d, path, mut g) = governor(policy);
    let (oom, id) = offer_oom(&mut g, "inc-1", "cart", "shop");
    assert_eq!(g.action(&id).unwrap().state, State::Pending);

    assert_eq!(
        g.kill_switch(true, "user:bob", MONDAY_10H + 1).unwrap(),
        std::slice::from_ref(&id)
    );
    assert_eq!(g.action(&id).unwrap().state, State::Cancelled);
    let e = g
        .approve(&oom, &id, "alice", true, MONDAY_10H + 2)
        .unwrap_err();
    assert!(matches!(e, GovernError::NotPending { .. }), "{e}");
    let (scale, p) = cpu_saturation("inc-2", "pricing");
    let a = g.offer(&scale, p, MONDAY_10H + 3).unwrap();
    assert_eq!(a.state, State::Refused);
    assert_eq!(a.note.as_deref(), Some("the kill switch is on"));

    g.kill_switch(false, "user:bob", MONDAY_10H + 4).unwrap();
    let (scale, p) = cpu_saturation("inc-3", "pricing");
    assert_eq!(
        g.offer(&scale, p, MONDAY_10H + 5).unwrap().state,
        State::Approved
    );
    assert_eq!(
        audit_events(&path),
        [
            "proposed",
            "kill_switch_on",
            "cancelled",
            "refused",
            "kill_switch_off",
            "approved"
        ]
    );
}

#[test]
fn approvals_need_the_role_a_window_an_open_incident_and_an_unprotected_namespace() {
    let policy = Policy {
        approvers: [
            ("alice".to_string(), Risk::Medium),
            ("bob".to_string(), Risk::Low),
        ]
        .into(),
        protected_namespaces: ["kube-system".to_string()].into(),
        change_windows: vec![ChangeWindow::parse("Mon-Fri 09:00-17:00").unwrap()],
        ..Policy::default()
    };
    let (_d, path, mut g) = governor(policy);
    let (oom, id) = offer_oom(&mut g, "inc-1", "cart", "shop");

    let e = g.approve(&oom, &id, "bob", true, MONDAY_10H).unwrap_err();
    assert!(
        e.to_string()
            .contains("bob may not approve a medium risk action"),
        "{e}"
    );
    let e = g
        .approve(&oom, &id, "mallory", true, MONDAY_10H)
        .unwrap_err();
    assert!(matches!(e, GovernError::Refused(_)), "{e}");
    assert_eq!(
        g.action(&id).unwrap().state,
        State::Pending,
        "a wrong approver changes nothing"
    );

    let e = g
        .approve(&oom, &id, "alice", true, SATURDAY_10H)
        .unwrap_err();
    assert!(e.to_string().contains("outside every change window"), "{e}");
    assert!(
        matches!(e, GovernError::Gate(_)),
        "a gate, not a role: {e:?}"
    );
    assert_eq!(g.action(&id).unwrap().state, State::Refused);

    let (oom, id) = offer_oom(&mut g, "inc-2", "cart", "shop");
    let e = g
        .approve(&oom, &id, "alice", false, MONDAY_10H)
        .unwrap_err();
    assert!(e.to_string().contains("no longer calls for it"), "{e}");
    assert_eq!(g.action(&id).unwrap().state, State::Cancelled);

    let (oom, id) = offer_oom(&mut g, "inc-3", "coredns", "kube-system");
    let e = g.approve(&oom, &id, "alice", true, MONDAY_10H).unwrap_err();
    assert!(
        e.to_string().contains("namespace kube-system is protected"),
        "{e}"
    );

    let (oom, id) = offer_oom(&mut g, "inc-4", "cart", "shop");
    let a = g.approve(&oom, &id, "alice", true, MONDAY_10H + 1).unwrap();
    assert_eq!(a.state, State::Approved);
    assert_eq!(a.decided_by.as_deref(), Some("alice"));
    assert_eq!(
        audit_events(&path),
        [
            "proposed",
            "not_allowed",
            "not_allowed",
            "refused",
            "proposed",
            "cancelled",
            "proposed",
            "refused",
            "proposed",
            "approved"
        ]
    );
    assert_eq!(audit::verify(&path).unwrap().unwrap().entries, 10);
}

#[test]
fn change_windows_read_days_and_hours_in_utc() {
    let w = ChangeWindow::parse("Mon-Fri 09:00-17:00").unwrap();
    assert!(w.contains(MONDAY_10H));
    assert!(!w.contains(SATURDAY_10H));
    assert!(!w.contains(MONDAY_10H + 7 * 3_600_000), "17:00 is outside");
    let weekend = ChangeWindow::parse("Sat-Sun 00:00-24:00").unwrap();
    assert!(weekend.contains(SATURDAY_10H));
    for bad in [
        "Mon-Fri",
        "Funday 09:00-10:00",
        "Mon 10:00-09:00",
        "Mon 25:00-26:00",
    ] {
        assert!(ChangeWindow::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_automatic_runbook_waits_for_a_person_when_nobody_vouched_for_the_alerts() {
    let (_d, path, mut g) = governor(Policy::default());
    let (r, mut p) = cpu_saturation("inc-1", "pricing");
    p.untrusted = Some("alert CPUThrottlingHigh came in unauthenticated".into());
    let a = g.offer(&r, p, MONDAY_10H).unwrap();
    assert_eq!(a.state, State::Pending, "{a:?}");
    assert!(a.execution.is_none());
    assert!(a.note.as_deref().unwrap().contains("unauthenticated"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("waits for approval: alert CPUThrottlingHigh came in unauthenticated"),
        "{text}"
    );

    // A target the runbook's selector does not allow is refused at the gate, even when a
    // proposal was built for it by hand.
    let (r, mut p) = cpu_saturation("inc-2", "search");
    p.target.namespace = Some("kube-system".into());
    let a = g.offer(&r, p, MONDAY_10H).unwrap();
    assert_eq!(a.state, State::Refused, "{a:?}");
    assert!(
        a.note
            .as_deref()
            .unwrap()
            .contains("runs in namespace kube-system, not in the runbook's default, platform"),
        "{a:?}"
    );
}
