//! The `command` provider run for real: values from alert labels reach the program as single,
//! checked arguments, never through a shell, never as options. Each hostile value is refused
//! with an error naming it, and the refusal is an audit entry.

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
        - {value: "deployment/{{ labels.deployment }}", is: word}
        - {value: "{{ labels.namespace }}", is: k8s_label}
verify:
  signal: incident_resolved
  within: 5m
"#;

fn run(labels: serde_json::Value, log: &mut AuditLog) -> Result<String, String> {
    let rb = runbook::parse(RUNBOOK).expect("the runbook is valid");
    let step = &rb.steps[0];
    let context = json!({"labels": labels});
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
fn hostile_label_values_never_run_and_never_become_options() {
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
