//! The `command` provider run for real: values of the target reach the program as single,
//! checked arguments, never through a shell, never as options. Each hostile value is refused
//! with an error naming it, and the refusal is an audit entry. Alert labels cannot reach a step
//! that acts at all: such a runbook is refused when it is read.

use nightshift_act::audit::{self, AuditLog};
use nightshift_act::command::CommandSpec;
use nightshift_act::runbook;
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

const RUNBOOK: &str = r#"
name: restart-by-command
trigger:
  alerts: [ExporterDown]
mode: approve
risk: medium
steps:
  - id: restart
    uses: command.run
    with:
      program: /bin/echo
      args:
        - rollout
        - restart
        - {value: "deployment/{{ target.deployment }}", is: word}
        - {value: "{{ target.namespace }}", is: k8s_label}
verify:
  signal: incident_resolved
  within: 5m
"#;

fn run(labels: serde_json::Value, log: &mut AuditLog) -> Result<String, String> {
    let rb = runbook::parse(RUNBOOK).expect("the runbook is valid");
    let step = &rb.steps[0];
    let context = json!({"target": labels});
    let allowed = [PathBuf::from("/bin/echo")];
    let result = runbook::command_argv(&step.with, &context)
        .and_then(|(program, args)| {
            CommandSpec::new(&program, &args, &allowed).map_err(|e| e.to_string())
        })
        .and_then(|cmd| cmd.run(Duration::from_secs(10)).map_err(|e| e.to_string()));
    match result {
        Ok(outcome) => {
            log.append(
                1,
                "runbook:restart-by-command",
                "executed",
                Some("act-1"),
                "test",
                json!({"stdout": outcome.stdout}),
            )
            .expect("audit");
            Ok(outcome.stdout)
        }
        Err(e) => {
            log.append(
                1,
                "runbook:restart-by-command",
                "refused",
                Some("act-1"),
                &e,
                json!({"labels": labels}),
            )
            .expect("audit");
            Err(e)
        }
    }
}

#[test]
fn a_step_that_acts_may_not_read_alert_labels() {
    for (uses, with) in [
        (
            "command.run",
            r#"{program: /bin/echo, args: [{value: "{{ labels.deployment }}", is: word}]}"#,
        ),
        (
            "kubernetes.rollout_restart",
            r#"{namespace: "{{ labels.namespace }}", deployment: "{{ target.deployment }}"}"#,
        ),
        (
            "http.request",
            r#"{url: "https://ops.example.com/restart/{{ alerts[0] }}"}"#,
        ),
    ] {
        let text = format!(
            "name: x\ntrigger: {{alerts: [A]}}\nmode: approve\nrisk: medium\nsteps:\n  - uses: {uses}\n    with: {with}\nverify: {{signal: incident_resolved, within: 5m}}\n"
        );
        let problems = runbook::parse(&text).expect_err(uses);
        assert!(
            problems
                .iter()
                .any(|p| p.line == 7 && p.message.contains("what an alert's sender wrote")),
            "{uses}: {problems:?}"
        );
    }
    // A notification may quote them.
    let text = "name: x\ntrigger: {alerts: [A]}\nmode: suggest\nrisk: low\nsteps:\n  - uses: notify.slack\n    with: {text: \"{{ labels.job }} is down\"}\n";
    runbook::parse(text).expect("a notification may quote alert labels");
}

#[test]
fn hostile_target_values_never_run_and_never_become_options() {
    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("pwned");
    let audit_path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&audit_path).unwrap();

    // A plain value runs, as one argument.
    let out = run(
        json!({"deployment": "checkout", "namespace": "shop"}),
        &mut log,
    )
    .unwrap();
    assert_eq!(out, "rollout restart deployment/checkout shop\n");

    let hostile = [
        ("deployment", "x; rm -rf /".to_string()),
        ("deployment", format!("$(touch {})", pwned.display())),
        ("deployment", format!("`touch {}`", pwned.display())),
        ("deployment", "`id`".to_string()),
        ("deployment", "checkout\nrm -rf /".to_string()),
        ("namespace", "--all-namespaces".to_string()),
        ("namespace", "-n".to_string()),
        ("namespace", "shop && id".to_string()),
        ("deployment", "a|b".to_string()),
        ("namespace", "".to_string()),
    ];
    for (label, value) in &hostile {
        let mut labels = json!({"deployment": "checkout", "namespace": "shop"});
        labels[*label] = json!(value);
        let err = run(labels, &mut log).expect_err(value);
        assert!(err.contains("argument"), "{value:?}: {err}");
        assert!(
            err.contains("is not a")
                || err.contains("option")
                || err.contains("control")
                || err.contains("empty"),
            "{value:?}: {err}"
        );
    }
    assert!(!pwned.exists(), "a hostile value was executed");

    // Every attempt is in the audit log, refusals included, and the chain holds.
    let head = audit::verify(&audit_path).unwrap().unwrap();
    assert_eq!(head.entries, 1 + hostile.len() as u64);
    let text = std::fs::read_to_string(&audit_path).unwrap();
    assert_eq!(text.matches("\"event\":\"refused\"").count(), hostile.len());
}

#[test]
fn only_allow_listed_programs_run_and_long_ones_are_stopped() {
    use nightshift_act::command::{Arg, CommandError};
    let allowed = [PathBuf::from("/bin/sleep")];
    let e = CommandSpec::new("/bin/sh", &[Arg::Literal("-c".into())], &allowed).unwrap_err();
    assert!(matches!(e, CommandError::NotAllowed { .. }), "{e}");
    let e = CommandSpec::new("sleep", &[], &allowed).unwrap_err();
    assert!(
        matches!(e, CommandError::NotAllowed { .. }),
        "relative paths are not looked up: {e}"
    );
    let cmd = CommandSpec::new("/bin/sleep", &[Arg::Literal("30".into())], &allowed).unwrap();
    let e = cmd.run(Duration::from_millis(300)).unwrap_err();
    assert!(matches!(e, CommandError::Timeout { .. }), "{e}");
}
