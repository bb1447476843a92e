//! Running a runbook with the real `command` provider: outputs flow to later steps, a failed
//! verification rolls back, and the kill switch stops a run between steps.

use nightshift_act::execute::{
    Check, Execution, Executor, Polling, STOPPED, StepRecord, Verifier, execute,
};
use nightshift_act::runbook::parse;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

struct Always(bool);

impl Verifier for Always {
    fn holds<'a>(
        &'a self,
        _check: &'a Check,
        _incident: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async move { Ok(self.0) })
    }
}

const RUNBOOK: &str = r#"name: two-steps
trigger: {services: [checkout]}
mode: approve
risk: medium
steps:
  - id: first
    uses: command.run
    with:
      program: /bin/echo
      args: [one, {value: "{{ target.name }}", is: k8s_name}]
  - id: second
    uses: command.run
    with:
      program: /bin/echo
      args: [{value: "{{ steps.first.output.code }}", is: integer}]
verify: {promql: 'up == 1', within: 1s}
rollback:
  - uses: command.run
    with: {program: /bin/echo, args: [undone]}
"#;

fn executor() -> Executor {
    Executor {
        commands: vec!["/bin/echo".into()],
        ..Executor::default()
    }
}

/// The two-step runbook run on checkout, verified by `verifier`.
async fn run(
    verifier: bool,
    report: &mut (dyn FnMut(&StepRecord, bool) + Send),
    stop: &(dyn Fn() -> bool + Send + Sync),
) -> Execution {
    let polling = Polling {
        every: Duration::from_millis(10),
        within: Some(Duration::from_millis(30)),
    };
    execute(
        &executor(),
        &Always(verifier),
        &parse(RUNBOOK).unwrap(),
        "inc-1",
        &json!({"target": {"name": "checkout"}}),
        polling,
        report,
        stop,
    )
    .await
}

#[tokio::test]
async fn outputs_flow_on_and_a_verification_that_never_holds_rolls_back() {
    let mut seen = Vec::new();
    let ex = run(
        true,
        &mut |r, rollback| seen.push((r.id.clone(), rollback)),
        &|| false,
    )
    .await;
    assert!(ex.fixed, "{ex:?}");
    assert_eq!(
        ex.steps[0].output.as_ref().unwrap()["stdout"],
        "one checkout\n"
    );
    // The second step read the first one's exit code.
    assert_eq!(ex.steps[1].request.as_ref().unwrap()["args"], json!(["0"]));
    assert_eq!(seen, [("first".into(), false), ("second".into(), false)]);

    let ex = run(false, &mut |_, _| {}, &|| false).await;
    assert!(!ex.fixed);
    assert_eq!(ex.verified, Some(false));
    assert_eq!(
        ex.rollback[0].output.as_ref().unwrap()["stdout"],
        "undone\n"
    );
    assert!(
        ex.summary.contains("did not hold within 1s"),
        "{}",
        ex.summary
    );
    assert!(
        ex.summary.ends_with("rolled back; escalated"),
        "{}",
        ex.summary
    );
}

#[tokio::test]
async fn the_kill_switch_stops_a_run_between_steps() {
    let killed = AtomicBool::new(false);
    let ex = run(
        true,
        // The switch goes on while the first step runs.
        &mut |_, _| killed.store(true, Ordering::SeqCst),
        &|| killed.load(Ordering::SeqCst),
    )
    .await;
    assert!(!ex.fixed);
    assert_eq!(ex.steps.len(), 2);
    assert!(ex.steps[0].error.is_none());
    assert!(!ex.steps[1].ran);
    assert_eq!(ex.steps[1].error.as_deref(), Some(STOPPED));
    assert!(
        ex.rollback.is_empty(),
        "nothing more runs, not even the rollback"
    );
    assert!(
        ex.summary
            .contains("stopped by the kill switch after 1 step"),
        "{}",
        ex.summary
    );
}

/// A dry run against the world as configured: HTTP calls to hooks.example.com only, no
/// Kubernetes, `/usr/bin/touch` on the allow-list.
async fn rehearse(steps: &str) -> nightshift_act::execute::Rehearsal {
    let runbook = parse(&format!(
        "name: dry\ntrigger: {{services: [checkout]}}\nmode: approve\nrisk: medium\nsteps:\n{steps}verify: {{promql: 'up == 1', within: 1m}}\n"
    ))
    .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = nightshift_act::execute::Http {
        endpoints: nightshift_act::notify::Endpoints {
            http_hosts: vec!["hooks.example.com".into()],
            ..Default::default()
        },
        client: reqwest::Client::new(),
    };
    let executor = Executor {
        commands: vec!["/usr/bin/touch".into()],
        ..Executor::default()
    }
    .with("http", std::sync::Arc::new(http));
    nightshift_act::execute::rehearse(
        &executor,
        &Always(false),
        &runbook,
        "inc-1",
        &json!({"target": {"name": "checkout"}}),
    )
    .await
}

#[tokio::test]
async fn a_dry_run_sends_nothing_shows_no_secret_and_refuses_what_a_run_would() {
    let r = rehearse(
        r#"  - uses: http.request
    with:
      url: https://hooks.example.com/restart
      headers: {Authorization: "Bearer s3cr3t-t0ken"}
  - uses: command.run
    with:
      program: /usr/bin/touch
      args: [{value: "{{ target.name }}", is: k8s_name}]
"#,
    )
    .await;
    let shown = serde_json::to_string(&r).unwrap();
    assert!(!shown.contains("s3cr3t-t0ken"), "{shown}");
    assert_eq!(r.steps.len(), 2, "{r:#?}");
    assert_eq!(r.steps[0].error, None, "{r:#?}");
    assert_eq!(r.steps[0].request.as_ref().unwrap()["uses"], "http.request");
    assert_eq!(
        r.steps[1].request.as_ref().unwrap()["args"],
        json!(["checkout"])
    );
    assert_eq!(r.steps[1].output, Some(json!("(dry run)")));
    assert_eq!(r.holds_now, Some(false));
    // touch did not run: no file `checkout` in the working directory.
    assert!(!std::path::Path::new("checkout").exists());

    // What a run would refuse, the dry run refuses: a host not listed, a provider family not
    // configured.
    let r =
        rehearse("  - uses: http.request\n    with: {url: 'https://evil.example.com/x'}\n").await;
    let error = r.steps[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("may not call evil.example.com"), "{error}");
    let r = rehearse(
        "  - uses: kubernetes.rollout_restart\n    with: {namespace: shop, deployment: cart}\n",
    )
    .await;
    let error = r.steps[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("no kubernetes provider is configured"),
        "{error}"
    );
}

#[test]
fn the_kubernetes_check_refuses_what_the_api_would() {
    use nightshift_act::kubernetes::check;
    let ok = json!({"namespace": "shop", "deployment": "cart", "replicas": "4"});
    assert!(check("kubernetes.scale", &ok).is_ok());
    for (uses, with, says) in [
        (
            "kubernetes.scale",
            json!({"namespace": "shop", "deployment": "Cart;x"}),
            "not a Kubernetes object name",
        ),
        (
            "kubernetes.scale",
            json!({"namespace": "shop.x", "deployment": "cart"}),
            "not a Kubernetes name",
        ),
        (
            "kubernetes.scale",
            json!({"namespace": "shop", "deployment": "cart", "replicas": "-1"}),
            "whole number",
        ),
        (
            "kubernetes.patch_resources",
            json!({"namespace": "shop", "deployment": "cart", "container": "app", "memory_limit": "lots"}),
            "not a Kubernetes quantity",
        ),
        ("kubernetes.explode", json!({}), "no Kubernetes provider"),
    ] {
        let e = check(uses, &with).unwrap_err();
        assert!(e.message.contains(says), "{uses} {with}: {}", e.message);
    }
}
