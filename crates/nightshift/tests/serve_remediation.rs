//! Remediation in `nightshift serve`, verified against a real Prometheus and a real Alertmanager
//! (Debian's, installed by `scripts/test`): an incident's runbooks become actions; an automatic
//! one runs its real command and is verified by PromQL (fixed, and fed back as a change); one
//! whose verification never holds is rolled back and escalated (an alert in Alertmanager);
//! approvals go by the approver's token and role, through the API and the CLI; a dry run shows
//! what a runbook would send and sends nothing; the kill switch (by request or by its file)
//! cancels what waits; every decision is in the audit log, whose chain holds and whose export
//! (a file and a webhook) copies it; actions outlive a restart. An automatic runbook runs on
//! its own only for alerts sent with a token that `act.auto_sources` names; the target is
//! where the configuration places the root cause, whatever the alerts' labels say.

mod common;

use common::{
    free_port, nightshift, post_alert_storm_with, start_alertmanager, start_nightshift_serving,
    start_nightshift_with, start_self_scraping_prometheus, temp_dir, wait_for,
};
use nightshift_testkit::notify::echo::{Echo, echo_stand_in};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";
/// The token Alertmanager sends alerts with (ingest), which `act.auto_sources` trusts.
const SENDER: &str = "sender-token-0123456789";
/// Another ingest token, which `act.auto_sources` does not name.
const OTHER: &str = "other-token-0123456789a";
/// The operators' token (read and admin).
const OPS: &str = "ops-token-0123456789abcd";
const BEARER_OPS: &str = "Bearer ops-token-0123456789abcd";

/// Under `serve:`: the tokens above.
fn serve_auth() -> String {
    format!(
        "  auth:\n    tokens:\n      - {{name: alertmanager, token: {SENDER}, scopes: [ingest]}}\n      - {{name: other-sender, token: {OTHER}, scopes: [ingest]}}\n      - {{name: ops, token: {OPS}, scopes: [read, admin]}}\n"
    )
}

/// A request to Nightshift, with the operators' token unless `headers` carry one.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut with = headers.to_vec();
    if !with
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        with.push(("Authorization", BEARER_OPS));
    }
    common::http(port, method, path, &with, body)
}

fn get(port: u16, path: &str) -> (u16, String) {
    http(port, "GET", path, &[], b"")
}

/// [`common::post_alert_storm`] sent with `sender`'s token, read back with the operators'.
fn post_alert_storm(port: u16, service: &str, names: &[&str], sender: &str) -> String {
    let auth = format!("Bearer {sender}");
    post_alert_storm_with(
        port,
        service,
        names,
        &[("Authorization", &auth)],
        &[("Authorization", BEARER_OPS)],
    )
}

/// Three runbooks for checkout: automatic (verified by a query that holds), approve/medium
/// (verified by one that never holds, so it is rolled back), approve/high.
fn write_runbooks(dir: &Path) {
    let runbooks = dir.join("runbooks");
    std::fs::create_dir_all(&runbooks).unwrap();
    let files = [
        (
            "restart.yaml",
            r#"name: restart-checkout
trigger: {services: [checkout]}
target: {kind: service, names: [checkout]}
mode: auto
risk: low
limits: {per_hour: 1}
steps:
  - id: restart
    uses: command.run
    with:
      program: /bin/echo
      args: [restarted, {value: "{{ target.name }}", is: k8s_name}]
verify:
  promql: 'up{job="prometheus"} == 1'
  within: 60s
"#,
        ),
        (
            "tune.yaml",
            r#"name: tune-checkout
trigger: {services: [checkout]}
mode: approve
risk: medium
steps:
  - uses: command.run
    with:
      program: /bin/echo
      args: [tuned, {value: "{{ target.name }}", is: k8s_name}]
verify:
  promql: 'up{job="no-such-job"} == 1'
  within: 3s
rollback:
  - uses: command.run
    with:
      program: /bin/echo
      args: [untuned]
"#,
        ),
        (
            "drain.yaml",
            r#"name: drain-checkout
trigger: {services: [checkout]}
mode: approve
risk: high
steps:
  - uses: command.run
    with:
      program: /bin/echo
      args: [drained]
verify:
  signal: incident_resolved
  within: 10m
"#,
        ),
    ];
    for (name, text) in files {
        std::fs::write(runbooks.join(name), text).unwrap();
    }
}

fn actions(port: u16) -> Vec<Value> {
    let (status, body) = get(port, "/api/v1/actions");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The action of `runbook`, once `done` holds for it.
fn action_of(port: u16, runbook: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(Duration::from_secs(60), || {
        actions(port)
            .into_iter()
            .find(|a| a["proposal"]["runbook"] == runbook && done(a))
    })
    .unwrap_or_else(|| panic!("{runbook}: {:#?}", actions(port)))
}

fn decide(port: u16, id: &str, verb: &str, token: Option<&str>) -> (u16, String) {
    let path = format!("/api/v1/actions/{id}/{verb}");
    match token {
        Some(t) => http(
            port,
            "POST",
            &path,
            &[("Authorization", &format!("Bearer {t}"))],
            b"",
        ),
        None => common::http(port, "POST", &path, &[], b""),
    }
}

fn audit_events(port: u16, action: &str) -> Vec<String> {
    let (_, body) = get(port, &format!("/api/v1/audit?action={action}"));
    let entries: Vec<Value> = serde_json::from_str(&body).unwrap();
    entries
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

/// A stand-in SIEM webhook (the echoing stand-in): every body POSTed to it, in order.
fn siem_bodies(siem: &Echo) -> Vec<String> {
    siem.hits
        .all()
        .iter()
        .filter(|h| h.uri == "/siem")
        .map(|h| String::from_utf8_lossy(&h.body).into_owned())
        .collect()
}

/// The alerts a real Alertmanager holds named `alertname`.
fn alertmanager_alerts(port: u16, alertname: &str) -> Vec<Value> {
    let (status, body) = common::get(
        port,
        &format!("/api/v2/alerts?filter=alertname%3D%22{alertname}%22"),
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn actions_run_verify_roll_back_and_wait_for_the_right_approver() {
    let (Some(prometheus), Some(alertmanager)) = (
        nightshift_testkit::peers::prometheus(),
        nightshift_testkit::peers::alertmanager(),
    ) else {
        return;
    };
    let dir = temp_dir("serve-remediation");
    write_runbooks(&dir);
    let (ns, prom, am) = (free_port(), free_port(), free_port());
    let _prometheus = start_self_scraping_prometheus(prometheus, &dir, prom);
    let _alertmanager = start_alertmanager(
        alertmanager,
        &dir,
        am,
        "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
    );
    let (siem_got, siem_url, _) = echo_stand_in();
    let audit = dir.join("audit.jsonl");
    let export = dir.join("siem.jsonl");
    let config = format!(
        "prometheus:\n  url: http://127.0.0.1:{prom}\n  queries: [{{query: up, interval: 1m}}]\nalertmanager:\n  url: http://127.0.0.1:{am}\nact:\n  runbooks: {}\n  audit_log: {}\n  commands: [/bin/echo]\n  auto_sources: [alertmanager]\n  verify_every: 1s\n  audit_export: {{file: {}, webhook: '{siem_url}/siem'}}\n  approvers:\n    - {{name: alice, max_risk: high, token: {ALICE}}}\n    - {{name: bob, max_risk: medium, token: {BOB}}}\n",
        dir.join("runbooks").display(),
        audit.display(),
        export.display(),
    );
    let nightshift_serve = start_nightshift_serving(&dir, ns, &serve_auth(), &config);
    let incident = post_alert_storm(
        ns,
        "checkout",
        &["CheckoutErrorsHigh", "CheckoutDown"],
        SENDER,
    );

    // The automatic action ran its command, and Prometheus says it worked: fixed.
    let auto = action_of(ns, "restart-checkout", |a| a["state"] == "fixed");
    assert_eq!(auto["proposal"]["incident"], incident.as_str());
    assert_eq!(auto["decided_by"], "nightshift");
    let step = &auto["execution"]["steps"][0];
    assert_eq!(step["request"]["program"], "/bin/echo");
    assert_eq!(
        step["request"]["args"],
        serde_json::json!(["restarted", "checkout"])
    );
    assert_eq!(step["output"]["stdout"], "restarted checkout\n");
    assert_eq!(auto["execution"]["verified"], true);
    let id = auto["id"].as_str().unwrap();
    assert_eq!(
        audit_events(ns, id),
        ["approved", "started", "step", "fixed"]
    );
    // The fix is a change on checkout, which the incident's resolution will name.
    let change = wait_for(Duration::from_secs(20), || {
        let (_, body) = get(ns, "/api/v1/changes");
        let list: Vec<Value> = serde_json::from_str(&body).ok()?;
        list.into_iter()
            .find(|c| c["version"].as_str().is_some_and(|v| v.contains(id)))
    })
    .expect("the fix recorded as a change");
    assert_eq!(change["target"], "checkout");

    // Two wait for approval, and nothing of theirs ran.
    let tune = action_of(ns, "tune-checkout", |a| a["state"] == "pending");
    let drain = action_of(ns, "drain-checkout", |a| a["state"] == "pending");
    let (tune_id, drain_id) = (tune["id"].as_str().unwrap(), drain["id"].as_str().unwrap());
    assert!(tune.get("execution").is_none());

    // A dry run of each runbook answering the incident: the exact command each would run,
    // nothing run, the verification as it stands, and the limit that would refuse the
    // automatic one now that it has run once this hour.
    let (status, body) = http(
        ns,
        "POST",
        &format!("/api/v1/incidents/{incident}/dry-run"),
        &[],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let runs: Vec<Value> = serde_json::from_str(&body).unwrap();
    let run_of = |name: &str| {
        runs.iter()
            .find(|r| r["proposal"]["runbook"] == name)
            .unwrap_or_else(|| panic!("{name}: {runs:#?}"))
    };
    assert_eq!(runs.len(), 3, "{runs:#?}");
    let restart = run_of("restart-checkout");
    assert_eq!(
        restart["rehearsal"]["steps"][0]["request"]["args"],
        serde_json::json!(["restarted", "checkout"])
    );
    assert_eq!(restart["rehearsal"]["steps"][0]["output"], "(dry run)");
    assert_eq!(restart["rehearsal"]["holds_now"], true);
    assert!(
        restart["gate"]
            .as_str()
            .unwrap_or_default()
            .contains("1 of at most 1 in the last hour"),
        "{restart:#}"
    );
    let tune_run = run_of("tune-checkout");
    assert_eq!(tune_run["rehearsal"]["holds_now"], false);
    assert_eq!(
        tune_run["rehearsal"]["rollback"][0]["request"]["args"],
        serde_json::json!(["untuned"])
    );
    let server = format!("http://127.0.0.1:{ns}");
    let out = nightshift(&[
        "runbook",
        "dry-run",
        &incident,
        "--runbook",
        "drain-checkout",
        "--server",
        &server,
        "--token",
        OPS,
    ]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("would run /bin/echo drained"), "{said}");
    assert!(
        said.contains("verify incident_resolved within 10m: does not hold now"),
        "{said}"
    );
    // Dry runs decide nothing: no audit entry, no state changed.
    assert_eq!(audit_events(ns, drain_id), ["proposed"]);
    assert_eq!(audit_events(ns, tune_id), ["proposed"]);
    let out = nightshift(&[
        "runbook",
        "dry-run",
        &incident,
        "--runbook",
        "no-such",
        "--server",
        &server,
        "--token",
        OPS,
    ]);
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains("404") && why.contains("no runbook is named no-such"),
        "{why}"
    );

    // No token, a stranger's token, and a role too low are refused; the last is audited.
    let (code, why) = decide(ns, drain_id, "approve", None);
    assert_eq!(code, 401, "{why}");
    let (code, why) = decide(ns, drain_id, "approve", Some("not-a-token-of-anyone"));
    assert_eq!(code, 401, "{why}");
    // A token that may read but is no approver's.
    let (code, why) = decide(ns, drain_id, "approve", Some(SENDER));
    assert_eq!(code, 403, "{why}");
    let (code, why) = decide(ns, drain_id, "approve", Some(BOB));
    assert_eq!(code, 403, "{why}");
    assert!(
        why.contains("bob may not approve a high risk action"),
        "{why}"
    );
    // Audited, and it still waits for someone who may.
    assert_eq!(audit_events(ns, drain_id), ["proposed", "not_allowed"]);

    // Bob approves the medium one through the CLI; its verification never holds: rolled back
    // and escalated.
    let out = nightshift(&["approve", tune_id, "--token", BOB, "--server", &server]);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(tune_id) && said.contains("by bob"), "{said}");
    let failed = action_of(ns, "tune-checkout", |a| a["state"] == "failed");
    assert_eq!(failed["execution"]["verified"], false);
    assert_eq!(
        failed["execution"]["rollback"][0]["output"]["stdout"],
        "untuned\n"
    );
    assert!(
        failed["execution"]["summary"]
            .as_str()
            .unwrap()
            .contains("rolled back; escalated"),
        "{failed}"
    );
    assert_eq!(
        audit_events(ns, tune_id),
        [
            "proposed",
            "approved",
            "started",
            "step",
            "rollback_step",
            "not_fixed",
            "escalated"
        ]
    );
    // The escalation is an alert in Alertmanager, which pages whoever its routes say.
    let escalated = wait_for(Duration::from_secs(20), || {
        alertmanager_alerts(am, "NightshiftActionFailed")
            .into_iter()
            .find(|a| a["labels"]["action_id"] == tune_id)
    })
    .expect("the escalation raised in Alertmanager");
    assert_eq!(escalated["labels"]["runbook"], "tune-checkout");
    assert_eq!(escalated["labels"]["incident_id"], incident.as_str());
    assert_eq!(escalated["labels"]["service"], "checkout");
    assert_eq!(escalated["labels"]["severity"], "critical");
    assert!(
        escalated["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("a person must take over"),
        "{escalated:#}"
    );
    // The fixed action raised none.
    assert!(
        !alertmanager_alerts(am, "NightshiftActionFailed")
            .iter()
            .any(|a| a["labels"]["action_id"] == id)
    );

    // The kill switch cancels what still waits; approving it afterwards is a conflict.
    let out = nightshift(&["kill-switch", "on", "--token", ALICE, "--server", &server]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("cancelled {drain_id}")),
        "{out:?}"
    );
    assert_eq!(get(ns, "/api/v1/kill-switch").1.trim(), r#"{"on":true}"#);
    let (code, why) = decide(ns, drain_id, "approve", Some(ALICE));
    assert_eq!(code, 409, "{why}");
    // Turning it off takes the high-risk role, which bob lacks.
    let out = nightshift(&["kill-switch", "off", "--token", BOB, "--server", &server]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bob may not turn the kill switch off"),
        "{out:?}"
    );
    assert!(why.contains("cancelled"), "{why}");

    // The CLI lists them; a bad state filter is named.
    let out = nightshift(&["actions", "--server", &server, "--token", OPS]);
    let listed = String::from_utf8_lossy(&out.stdout);
    for (id, state) in [(id, "fixed"), (tune_id, "failed"), (drain_id, "cancelled")] {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(id) && l.contains(state)),
            "{listed}"
        );
    }
    let (code, why) = get(ns, "/api/v1/actions?state=done");
    assert_eq!(code, 400, "{why}");
    assert!(why.contains("not one of"), "{why}");

    // The API document names the remediation routes.
    let doc: Value = serde_json::from_str(&get(ns, "/openapi.json").1).unwrap();
    for path in [
        "/api/v1/actions/{id}/approve",
        "/api/v1/actions/{id}/reject",
        "/api/v1/kill-switch",
    ] {
        assert!(doc["paths"][path]["post"].is_object(), "{path}");
    }

    // The chain holds, and the exports (file and webhook) hold the same lines, in order.
    let out = nightshift(&["audit", "verify", "--file", audit.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let logged = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(logged, std::fs::read_to_string(&export).unwrap());
    let lines: Vec<String> = logged.lines().map(str::to_string).collect();
    let posted = wait_for(Duration::from_secs(20), || {
        let got = siem_bodies(&siem_got);
        (got.len() >= lines.len()).then_some(got)
    })
    .unwrap_or_else(|| siem_bodies(&siem_got));
    assert_eq!(posted[..lines.len().min(posted.len())], lines[..]);

    // After a restart the actions are still there, and the incident is not offered its
    // runbooks again.
    drop(nightshift_serve);
    let _again = start_nightshift_serving(&dir, ns, &serve_auth(), &config);
    let kept = actions(ns);
    assert_eq!(kept.len(), 3, "{kept:#?}");
    assert!(
        kept.iter()
            .any(|a| a["id"] == drain_id && a["state"] == "cancelled")
    );
    // The kill switch turned on by request is still on.
    assert_eq!(get(ns, "/api/v1/kill-switch").1.trim(), r#"{"on":true}"#);
}

#[test]
fn the_kill_switch_file_stops_automatic_actions_and_approvals() {
    let dir = temp_dir("serve-kill-switch-file");
    write_runbooks(&dir);
    let ns = free_port();
    let flag = dir.join("STOP");
    std::fs::write(&flag, "maintenance\n").unwrap();
    let config = format!(
        "act:\n  runbooks: {}\n  audit_log: {}\n  commands: [/bin/echo]\n  auto_sources: [alertmanager]\n  kill_switch_file: {}\n  approvers:\n    - {{name: alice, max_risk: high, token: {ALICE}}}\n",
        dir.join("runbooks").display(),
        dir.join("audit.jsonl").display(),
        flag.display(),
    );
    let _serve = start_nightshift_serving(&dir, ns, &serve_auth(), &config);
    assert_eq!(get(ns, "/api/v1/kill-switch").1.trim(), r#"{"on":true}"#);
    post_alert_storm(
        ns,
        "checkout",
        &["CheckoutErrorsHigh", "CheckoutDown"],
        SENDER,
    );

    // The automatic one is refused, not run; approving one that waits is a conflict (a gate,
    // not the approver's role), and it is refused for good, in the audit log.
    let auto = action_of(ns, "restart-checkout", |a| a["state"] == "refused");
    assert_eq!(auto["note"], "the kill switch is on");
    assert!(auto.get("execution").is_none());
    let drain = action_of(ns, "drain-checkout", |a| a["state"] == "pending");
    let drain_id = drain["id"].as_str().unwrap();
    let (code, why) = decide(ns, drain_id, "approve", Some(ALICE));
    assert_eq!(code, 409, "{why}");
    assert!(why.contains("the kill switch is on"), "{why}");
    assert_eq!(audit_events(ns, drain_id), ["proposed", "refused"]);

    // Without the file the switch is off again (it was never turned on by request).
    std::fs::remove_file(&flag).unwrap();
    assert_eq!(get(ns, "/api/v1/kill-switch").1.trim(), r#"{"on":false}"#);
}

/// Alerts nobody vouched for (no credentials on a loopback server, or an ingest token that
/// `act.auto_sources` does not name) never start an automatic runbook, and alert labels never
/// choose what a runbook touches: the target is placed by `act.workloads`.
#[test]
fn untrusted_alerts_wait_for_a_person_and_labels_never_choose_the_target() {
    let dir = temp_dir("serve-untrusted-alerts");
    write_runbooks(&dir);
    std::fs::write(
        dir.join("runbooks/where.yaml"),
        r#"name: where-checkout
trigger: {services: [checkout]}
target: {kind: service, namespaces: [shop]}
mode: approve
risk: medium
steps:
  - uses: command.run
    with:
      program: /bin/echo
      args: [{value: "{{ target.namespace }}", is: k8s_label}, {value: "{{ target.deployment }}", is: k8s_name}]
verify:
  signal: incident_resolved
  within: 2s
"#,
    )
    .unwrap();
    let ns = free_port();
    let config = format!(
        "act:\n  runbooks: {}\n  audit_log: {}\n  commands: [/bin/echo]\n  workloads:\n    checkout: {{namespace: shop, deployment: checkout-web}}\n  approvers:\n    - {{name: alice, max_risk: high, token: {ALICE}}}\n",
        dir.join("runbooks").display(),
        dir.join("audit.jsonl").display(),
    );
    let _serve = start_nightshift_with(&dir, ns, &config);
    // Unauthenticated, with labels that name another namespace and Deployment.
    for name in ["CheckoutErrorsHigh", "CheckoutDown"] {
        let body = format!(
            r#"[{{"labels": {{"alertname": "{name}", "service": "checkout", "severity": "critical", "namespace": "kube-system", "deployment": "coredns", "pod": "coredns-0"}}}}]"#
        );
        let (code, why) = common::http(
            ns,
            "POST",
            "/api/v1/alerts",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(code, 200, "{why}");
    }
    let waiting = action_of(ns, "restart-checkout", |a| a["state"] == "pending");
    assert!(waiting.get("execution").is_none(), "{waiting:#}");
    assert!(
        waiting["note"]
            .as_str()
            .unwrap_or_default()
            .contains("came in unauthenticated"),
        "{waiting:#}"
    );
    let id = waiting["id"].as_str().unwrap();
    assert_eq!(audit_events(ns, id), ["proposed"]);
    let target = &waiting["proposal"]["target"];
    assert_eq!(target["namespace"], "shop", "{target:#}");
    assert_eq!(target["deployment"], "checkout-web", "{target:#}");
    assert_eq!(target["placed_by"], "configuration", "{target:#}");

    // Approved by a person, the step runs on the configured workload, not the labels'.
    let placed = action_of(ns, "where-checkout", |a| a["state"] == "pending");
    let pid = placed["id"].as_str().unwrap();
    let (code, why) = decide(ns, pid, "approve", Some(ALICE));
    assert_eq!(code, 200, "{why}");
    // Its verification cannot hold (nothing resolves the incident): it ends failed, run.
    let ran = action_of(ns, "where-checkout", |a| a["state"] == "failed");
    assert_eq!(
        ran["execution"]["steps"][0]["output"]["stdout"], "shop checkout-web\n",
        "{ran:#}"
    );
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(
        !audit.contains("coredns\""),
        "a label value reached an action: {audit}"
    );
}

/// An ingest token that `act.auto_sources` does not name is authenticated, but does not
/// vouch for an automatic action.
#[test]
fn an_ingest_identity_not_trusted_for_automatic_actions_leaves_them_to_a_person() {
    let dir = temp_dir("serve-other-sender");
    write_runbooks(&dir);
    let ns = free_port();
    let config = format!(
        "act:\n  runbooks: {}\n  audit_log: {}\n  commands: [/bin/echo]\n  auto_sources: [alertmanager]\n",
        dir.join("runbooks").display(),
        dir.join("audit.jsonl").display(),
    );
    let _serve = start_nightshift_serving(&dir, ns, &serve_auth(), &config);
    post_alert_storm(ns, "checkout", &["CheckoutErrorsHigh"], OTHER);
    let waiting = action_of(ns, "restart-checkout", |a| a["state"] == "pending");
    assert!(waiting.get("execution").is_none());
    assert!(
        waiting["note"]
            .as_str()
            .unwrap_or_default()
            .contains("came from other-sender, whom act.auto_sources does not list"),
        "{waiting:#}"
    );
    // The stored alert names who sent it.
    let (_, body) = get(ns, "/api/v1/alerts");
    assert!(body.contains(r#""source":"other-sender""#), "{body}");
}
