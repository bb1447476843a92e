//! The `ansible.playbook` step with a real `ansible-playbook` (ansible-core from PyPI, in the
//! peers `scripts/llm-peers` sets up; without it these tests print why and pass, unless
//! `NIGHTSHIFT_REQUIRE_PEERS=1`): the playbook runs with each templated value as one checked
//! `-e` argument, hostile values never reach Ansible (no shell, no option, no Jinja for Ansible
//! to evaluate), and a dry run shows the exact command without running it.

use nightshift_act::Runbook;
use nightshift_act::execute::{Check, Executor, Rehearsal, StepRecord, Verifier, rehearse};
use nightshift_act::runbook::parse;
use serde_json::json;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// `ansible-playbook` of the peers' virtualenv.
fn ansible_playbook() -> Option<PathBuf> {
    // The venv's own path, absolute, as the allow-list must name it.
    let absolute = |p: &PathBuf| Some(p.parent()?.canonicalize().ok()?.join("ansible-playbook"));
    nightshift_testkit::peers::program("ansible-playbook", |p| p.exists() && absolute(p).is_some())
        .and_then(|p| absolute(&p))
}

const PLAYBOOK: &str = r#"- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ out }}"
        content: "restarted {{ service }}\n"
"#;

/// A playbook writing "restarted SERVICE" to `out`, its inventory (this machine, over the local
/// connection, with the peers' Python), and a runbook running it for the incident's target.
fn setup(dir: &Path, ansible: &Path) -> (String, PathBuf) {
    let python = ansible.parent().unwrap().join("python");
    std::fs::write(dir.join("play.yml"), PLAYBOOK).unwrap();
    std::fs::write(
        dir.join("inventory"),
        format!(
            "localhost ansible_connection=local ansible_python_interpreter={}\n",
            python.display()
        ),
    )
    .unwrap();
    let out = dir.join("done.txt");
    let runbook = format!(
        r#"name: restart-by-ansible
trigger: {{services: [checkout]}}
mode: approve
risk: medium
steps:
  - id: play
    uses: ansible.playbook
    with:
      playbook: {play}
      inventory: {inventory}
      limit: localhost
      timeout: 120s
      extra_vars:
        out: {out}
        service: "{{{{ target.name }}}}"
verify: {{promql: 'up{{job="checkout"}} == 1', within: 1m}}
"#,
        play = dir.join("play.yml").display(),
        inventory = dir.join("inventory").display(),
        out = out.display(),
    );
    (runbook, out)
}

/// Runs `runbook`'s steps for a target named `target`, `ansible` on the allow-list: each
/// step's record, and whether all went through.
async fn play(ansible: &Path, runbook: &Runbook, target: &str) -> (Vec<StepRecord>, bool) {
    let executor = Executor {
        commands: vec![ansible.to_path_buf()],
        ..Executor::default()
    };
    let mut ctx = json!({"target": {"name": target}, "steps": {}});
    executor.run(&runbook.steps, &mut ctx, &mut |_| {}).await
}

#[tokio::test]
async fn a_playbook_runs_with_each_value_one_checked_argument() {
    let Some(ansible) = ansible_playbook() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (text, out) = setup(dir.path(), &ansible);
    let runbook = parse(&text).unwrap();
    let (records, ok) = play(&ansible, &runbook, "checkout").await;
    assert!(ok, "{records:#?}");
    let r = &records[0];
    let request = r.request.as_ref().unwrap();
    assert_eq!(request["program"], ansible.display().to_string());
    assert_eq!(
        request["args"],
        json!([
            dir.path().join("play.yml").display().to_string(),
            "-i",
            dir.path().join("inventory").display().to_string(),
            "--limit",
            "localhost",
            "-e",
            format!("out={}", out.display()),
            "-e",
            "service=checkout",
        ])
    );
    let output = r.output.as_ref().unwrap();
    assert_eq!(output["code"], 0, "{output:#}");
    assert!(
        output["stdout"].as_str().unwrap().contains("changed=1"),
        "{output:#}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "restarted checkout\n"
    );
}

#[tokio::test]
async fn hostile_values_never_reach_ansible() {
    let Some(ansible) = ansible_playbook() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (text, out) = setup(dir.path(), &ansible);
    let runbook = parse(&text).unwrap();
    let pwned = dir.path().join("pwned");
    for hostile in [
        "x; rm -rf /".to_string(),
        format!("$(touch {})", pwned.display()),
        "`id`".into(),
        "a\nb".into(),
        // Would be a second variable (Ansible splits key=value pairs on spaces)...
        "checkout out=/etc/passwd".into(),
        // ...or Jinja that Ansible itself would evaluate on the controller.
        format!("{{{{ lookup('pipe', 'touch {}') }}}}", pwned.display()),
    ] {
        let (records, ok) = play(&ansible, &runbook, &hostile).await;
        assert!(!ok, "{hostile:?} went through: {records:#?}");
        let error = records[0].error.as_deref().unwrap_or_default();
        assert!(
            error.contains("is not a plain word")
                || error.contains("starts with '-'")
                || error.contains("control character"),
            "{hostile:?}: {error}"
        );
        assert!(records[0].output.is_none(), "{hostile:?} ran: {records:#?}");
    }
    assert!(!out.exists(), "the playbook ran");
    assert!(!pwned.exists(), "a hostile value was executed");

    // An option-like value stays the value of its variable (`service=--become`), never an
    // option of ansible-playbook.
    let (records, ok) = play(&ansible, &runbook, "--become").await;
    assert!(ok, "{records:#?}");
    let args = &records[0].request.as_ref().unwrap()["args"];
    assert_eq!(args[8], "service=--become");
    assert!(!args.as_array().unwrap().iter().any(|a| a == "--become"));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "restarted --become\n"
    );
}

/// Needs no Ansible: what would make it read a file is refused before anything runs.
#[tokio::test]
async fn file_references_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ansible = dir.path().join("ansible-playbook");
    let (text, _) = setup(dir.path(), &ansible);
    // A variable name is a name: `-e @FILE` would make Ansible read variables from a file.
    let bad_key = text.replace("        out: ", "        \"@out\": ");
    let problems = parse(&bad_key).unwrap_err();
    assert!(
        problems.iter().any(|p| p.field.ends_with("with.extra_vars")
            && p.message.contains("\"@out\" is not a variable name")),
        "{problems:?}"
    );
    // `--limit @FILE` would read the hosts from a file.
    let runbook = parse(&text.replace("limit: localhost", "limit: \"@hosts.txt\"")).unwrap();
    let r = dry_run(&ansible, &runbook).await;
    assert!(
        r.steps[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("names a file"),
        "{r:#?}"
    );
}

/// A dry run of `runbook` for checkout, `ansible` on the allow-list, its verification not
/// holding.
async fn dry_run(ansible: &Path, runbook: &Runbook) -> Rehearsal {
    let executor = Executor {
        commands: vec![ansible.to_path_buf()],
        ..Executor::default()
    };
    rehearse(
        &executor,
        &HoldsNot,
        runbook,
        "inc-1",
        &json!({"target": {"name": "checkout"}}),
    )
    .await
}

struct HoldsNot;

impl Verifier for HoldsNot {
    fn holds<'a>(
        &'a self,
        _check: &'a Check,
        _incident: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async { Ok(false) })
    }
}

#[tokio::test]
async fn a_dry_run_shows_the_command_and_runs_nothing() {
    let Some(ansible) = ansible_playbook() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (text, out) = setup(dir.path(), &ansible);
    let runbook = parse(&text).unwrap();
    let r = dry_run(&ansible, &runbook).await;
    let step = &r.steps[0];
    assert_eq!(step.error, None, "{r:#?}");
    assert_eq!(
        step.request.as_ref().unwrap()["args"][8],
        "service=checkout"
    );
    assert_eq!(r.holds_now, Some(false));
    assert_eq!(
        r.check,
        Some(Check::Promql("up{job=\"checkout\"} == 1".into()))
    );
    assert!(!out.exists(), "a dry run ran the playbook");
    // Off the allow-list, a dry run says so as a real run would.
    let r = rehearse(
        &Executor::default(),
        &HoldsNot,
        &runbook,
        "inc-1",
        &json!({"target": {"name": "checkout"}}),
    )
    .await;
    assert!(
        r.steps[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("not on the allow-list"),
        "{r:#?}"
    );
}
