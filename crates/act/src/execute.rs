//! Running an approved action: its steps in order, each rendered with the outputs of the steps
//! before it and handed to its provider; then the verification, polled until it holds or its
//! time is up; and, when a step fails or the verification never holds, the rollback steps.
//! Every call's exact request and result is kept for the audit log.

use crate::command::CommandSpec;
use crate::plan::{render_value, step_holds};
use crate::provider::{StepError, StepOutcome, text_arg};
use crate::runbook::{Runbook, Step, command_argv};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A provider call in flight.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<StepOutcome, StepError>> + Send + 'a>>;

/// Something that carries out steps: Kubernetes, the HTTP providers, or a stand-in for a dry run.
pub trait Provider: Send + Sync {
    /// Runs `uses` with its rendered arguments.
    fn call<'a>(&'a self, uses: &'a str, with: &'a Value) -> CallFuture<'a>;

    /// What a dry run can check without sending: what this provider would refuse.
    fn check(&self, _uses: &str, _with: &Value) -> Result<(), StepError> {
        Ok(())
    }
}

impl Provider for crate::kubernetes::Kubernetes {
    fn call<'a>(&'a self, uses: &'a str, with: &'a Value) -> CallFuture<'a> {
        Box::pin(crate::kubernetes::Kubernetes::call(self, uses, with))
    }

    fn check(&self, uses: &str, with: &Value) -> Result<(), StepError> {
        crate::kubernetes::check(uses, with)
    }
}

/// Stands in, in a dry run against the live world, for a provider family the configuration
/// does not set up: a real run would refuse its steps, so the dry run does too.
struct Unconfigured;

impl Provider for Unconfigured {
    fn call<'a>(&'a self, uses: &'a str, _with: &'a Value) -> CallFuture<'a> {
        Box::pin(async move { Err(unconfigured(uses)) })
    }

    fn check(&self, uses: &str, _with: &Value) -> Result<(), StepError> {
        Err(unconfigured(uses))
    }
}

/// The refusal of a step whose provider family is not configured.
fn unconfigured(uses: &str) -> StepError {
    let family = uses.split('.').next().unwrap_or_default();
    StepError::refused(format!("no {family} provider is configured for {uses}"))
}

/// The HTTP providers with the client they send through.
pub struct Http {
    pub endpoints: crate::notify::Endpoints,
    pub client: reqwest::Client,
}

impl Provider for Http {
    fn call<'a>(&'a self, uses: &'a str, with: &'a Value) -> CallFuture<'a> {
        Box::pin(self.endpoints.call(&self.client, uses, with))
    }

    fn check(&self, uses: &str, with: &Value) -> Result<(), StepError> {
        self.endpoints.check(uses, with)
    }
}

/// What a step did, as kept with its action and written to the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    pub uses: String,
    /// False when its `when` did not hold.
    pub ran: bool,
    /// The exact request sent, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs steps. Providers are found by the part of `uses` before the dot (`kubernetes`,
/// `http`, `notify`, `ticket`); `command.run` and `ansible.playbook` run here, on the
/// allow-list.
#[derive(Clone, Default)]
pub struct Executor {
    pub providers: BTreeMap<String, Arc<dyn Provider>>,
    /// Absolute paths of the programs `command.run` and `ansible.playbook` may start.
    pub commands: Vec<PathBuf>,
    /// Render and check every step (commands against the allow-list and their argument
    /// grammar too) but send nothing: each record's request is what would be sent.
    pub dry_run: bool,
}

/// Why a step did not run when the kill switch went on during a run.
pub const STOPPED: &str = "stopped: the kill switch is on";

/// The provider families a step's `uses` may name besides `command` and `ansible`.
const FAMILIES: [&str; 4] = ["kubernetes", "http", "notify", "ticket"];

/// How long a command may run when its step does not say.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl Executor {
    /// Gives the `kubernetes`, `http`, `notify` and `ticket` steps to `provider`.
    pub fn with(mut self, family: &str, provider: Arc<dyn Provider>) -> Self {
        self.providers.insert(family.to_string(), provider);
        self
    }

    /// Runs `steps` in order with `context` (which gains `steps.ID.output` as each step
    /// finishes), stopping at the first failure. Gives every step's record and whether all went
    /// through. `report` sees each record as soon as it is made.
    pub async fn run(
        &self,
        steps: &[Step],
        context: &mut Value,
        report: &mut (dyn FnMut(&StepRecord) + Send),
    ) -> (Vec<StepRecord>, bool) {
        self.run_until(steps, context, report, &|| false).await
    }

    /// [`Executor::run`], stopping before any step once `stop` says so (the kill switch).
    pub async fn run_until(
        &self,
        steps: &[Step],
        context: &mut Value,
        report: &mut (dyn FnMut(&StepRecord) + Send),
        stop: &(dyn Fn() -> bool + Send + Sync),
    ) -> (Vec<StepRecord>, bool) {
        let mut records = Vec::new();
        for s in steps {
            if stop() {
                let record = StepRecord {
                    id: s.id.clone(),
                    uses: s.uses.clone(),
                    ran: false,
                    request: None,
                    output: None,
                    error: Some(STOPPED.into()),
                };
                report(&record);
                records.push(record);
                return (records, false);
            }
            let record = self.step(s, context).await;
            if let Some(out) = &record.output {
                // A dry run's output is not known: later steps render with a placeholder.
                let out = if self.dry_run {
                    crate::template::unknown_output(&s.id)
                } else {
                    out.clone()
                };
                context["steps"][&s.id] = json!({ "output": out });
            }
            report(&record);
            let failed = record.error.is_some();
            records.push(record);
            if failed {
                return (records, false);
            }
        }
        (records, true)
    }

    async fn step(&self, s: &Step, context: &Value) -> StepRecord {
        let mut record = StepRecord {
            id: s.id.clone(),
            uses: s.uses.clone(),
            ran: false,
            request: None,
            output: None,
            error: None,
        };
        match step_holds(s, context) {
            Ok(false) => return record,
            Ok(true) => {}
            Err(e) => {
                record.error = Some(e);
                return record;
            }
        }
        record.ran = true;
        let result = match s.uses.as_str() {
            "command.run" => self.command(s, context).await,
            "ansible.playbook" => self.ansible(s, context).await,
            uses => match render_value(&json!(s.with), context) {
                Err(e) => Err(StepError::refused(format!("cannot render: {e}"))),
                Ok(with) => {
                    let family = uses.split('.').next().unwrap_or_default();
                    match self.providers.get(family) {
                        // Shown, not sent: checked by the provider that would send it (when
                        // there is one), secret-looking fields masked as in a plan.
                        provider if self.dry_run => provider
                            .map_or(Ok(()), |p| p.check(uses, &with))
                            .map(|()| StepOutcome {
                                request: json!({"uses": uses, "with": crate::notify::mask_json(&with)}),
                                output: json!(format!("(dry run: output of {})", s.id)),
                            }),
                        Some(p) => p.call(uses, &with).await,
                        None => Err(unconfigured(uses)),
                    }
                }
            },
        };
        match result {
            Ok(o) => {
                record.request = Some(o.request);
                record.output = Some(o.output);
            }
            Err(e) => {
                record.request = e.request;
                record.error = Some(e.message);
            }
        }
        record
    }

    async fn command(&self, s: &Step, context: &Value) -> Result<StepOutcome, StepError> {
        let (program, args) = command_argv(&s.with, context).map_err(StepError::refused)?;
        let spec = CommandSpec::new(&program, &args, &self.commands)
            .map_err(|e| StepError::refused(e.to_string()))?;
        run_command(spec, timeout_of(&s.with)?, self.dry_run).await
    }

    /// `ansible-playbook PLAYBOOK [-i INVENTORY] [--limit LIMIT] [-e KEY=VALUE]...`, each
    /// rendered value checked as a plain word.
    async fn ansible(&self, s: &Step, context: &Value) -> Result<StepOutcome, StepError> {
        use crate::command::{Arg, ArgKind};
        let program = self
            .commands
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == "ansible-playbook"))
            .ok_or_else(|| {
                StepError::refused("ansible-playbook is not on the allow-list (act.commands)")
            })?;
        let with = render_value(&json!(s.with), context)
            .map_err(|e| StepError::refused(format!("cannot render: {e}")))?;
        let word = |v: String| Arg::Value {
            value: v,
            kind: ArgKind::Word,
        };
        let mut args = vec![word(
            text_arg(&with, "playbook").ok_or_else(|| StepError::refused("no playbook"))?,
        )];
        for (flag, key) in [("-i", "inventory"), ("--limit", "limit")] {
            if let Some(v) = text_arg(&with, key) {
                // `--limit @FILE` would read the hosts from a file.
                if key == "limit" && v.starts_with('@') {
                    return Err(StepError::refused(format!(
                        "limit {v:?} names a file; give host or group names"
                    )));
                }
                args.push(Arg::Literal(flag.into()));
                args.push(word(v));
            }
        }
        if let Some(vars) = with.get("extra_vars").and_then(Value::as_object) {
            for (k, v) in vars {
                // A key is a variable name: never `@file` (which Ansible would read) or text
                // that would split into more variables.
                if !nightshift_core::is_identifier(k) {
                    return Err(StepError::refused(format!(
                        "extra_vars: {k:?} is not a variable name (letters, digits, _)"
                    )));
                }
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                args.push(Arg::Literal("-e".into()));
                args.push(word(format!("{k}={v}")));
            }
        }
        let spec = CommandSpec::new(&program.display().to_string(), &args, &self.commands)
            .map_err(|e| StepError::refused(e.to_string()))?;
        run_command(spec, timeout_of(&s.with)?, self.dry_run).await
    }
}

fn timeout_of(with: &BTreeMap<String, Value>) -> Result<Duration, StepError> {
    match with.get("timeout").and_then(Value::as_str) {
        None => Ok(COMMAND_TIMEOUT),
        Some(t) => crate::runbook::duration_ms(t)
            .map(|ms| Duration::from_millis(ms.max(0) as u64))
            .ok_or_else(|| StepError::refused(format!("timeout {t:?} is not a duration"))),
    }
}

async fn run_command(
    spec: CommandSpec,
    timeout: Duration,
    dry_run: bool,
) -> Result<StepOutcome, StepError> {
    let request = json!({"program": spec.program, "args": spec.args});
    if dry_run {
        return Ok(StepOutcome {
            request,
            output: json!("(dry run)"),
        });
    }
    let outcome = tokio::task::spawn_blocking(move || spec.run(timeout))
        .await
        .map_err(|e| StepError::failed(request.clone(), e.to_string()))?
        .map_err(|e| StepError::failed(request.clone(), e.to_string()))?;
    let output = json!({"code": outcome.code, "stdout": outcome.stdout, "stderr": outcome.stderr});
    if outcome.succeeded() {
        Ok(StepOutcome { request, output })
    } else {
        let mut tail: String = outcome.stderr.trim().chars().rev().take(300).collect();
        tail = tail.chars().rev().collect();
        Err(StepError::failed(
            request,
            format!("exited with {:?}: {tail}", outcome.code),
        ))
    }
}

/// A verification to evaluate: a rendered PromQL expression or an internal signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Promql(String),
    Signal(String),
}

/// Evaluates verifications: PromQL against Prometheus, signals against the incident store.
pub trait Verifier: Send + Sync {
    /// Whether `check` holds now (a PromQL expression: whether it returns any sample).
    fn holds<'a>(
        &'a self,
        check: &'a Check,
        incident: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;
}

/// The outcome of an executed action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    pub steps: Vec<StepRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<StepRecord>,
    /// The verification as evaluated (`None`: the runbook has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// Whether it held within its time; `None` when not evaluated (no verification, or a step
    /// failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Whether the problem is fixed: every step went through and the verification held.
    pub fixed: bool,
    /// In words: what happened.
    pub summary: String,
}

/// The rendered verification of `runbook` in `context`.
pub fn check_of(runbook: &Runbook, context: &Value) -> Result<Option<Check>, String> {
    let Some(v) = &runbook.verify else {
        return Ok(None);
    };
    Ok(Some(match (&v.promql, &v.signal) {
        (Some(q), _) => Check::Promql(crate::template::render_query(q, context)?),
        (None, Some(s)) => Check::Signal(s.clone()),
        (None, None) => return Ok(None),
    }))
}

/// How often a verification is evaluated while it waits.
#[derive(Debug, Clone, Copy)]
pub struct Polling {
    pub every: Duration,
    /// Stands in for the runbook's `within`, for tests and the demo (`None`: the runbook's).
    pub within: Option<Duration>,
}

impl Default for Polling {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(15),
            within: None,
        }
    }
}

/// Runs `runbook` for `incident` (steps, then verification; the rollback when either fails).
/// `context` is the proposal's template context. `report` sees each step record as it is made
/// (for the audit log), with `true` for rollback steps. Once `stop` says so (the kill switch),
/// no further step runs, the verification is no longer awaited, nothing is rolled back (that
/// would be acting too) and the action is escalated.
#[allow(clippy::too_many_arguments)]
pub async fn execute(
    executor: &Executor,
    verifier: &dyn Verifier,
    runbook: &Runbook,
    incident: &str,
    context: &Value,
    polling: Polling,
    report: &mut (dyn FnMut(&StepRecord, bool) + Send),
    stop: &(dyn Fn() -> bool + Send + Sync),
) -> Execution {
    let mut ctx = context.clone();
    ctx["steps"] = json!({});
    let (steps, went_through) = executor
        .run_until(&runbook.steps, &mut ctx, &mut |r| report(r, false), stop)
        .await;
    if stop() {
        let done = steps.iter().filter(|s| s.ran && s.error.is_none()).count();
        return Execution {
            steps,
            rollback: Vec::new(),
            check: None,
            verified: None,
            fixed: false,
            summary: format!(
                "stopped by the kill switch after {done} step(s), not rolled back; escalated"
            ),
        };
    }
    let check = match check_of(runbook, &ctx) {
        Ok(c) => c,
        Err(e) => {
            let mut ex = rolled_back(executor, runbook, &mut ctx, report, steps).await;
            ex.summary = format!("the verification cannot be rendered: {e}; {}", ex.summary);
            return ex;
        }
    };
    if !went_through {
        let failed = steps
            .last()
            .and_then(|s| s.error.clone())
            .unwrap_or_default();
        let mut ex = rolled_back(executor, runbook, &mut ctx, report, steps).await;
        ex.check = check;
        ex.summary = format!("a step failed ({failed}); {}", ex.summary);
        return ex;
    }
    let Some(check) = check else {
        return Execution {
            steps,
            rollback: Vec::new(),
            check: None,
            verified: None,
            fixed: true,
            summary: "every step went through (the runbook has no verification)".into(),
        };
    };
    let stated = runbook.verify.as_ref().map_or(0, |v| v.within_ms.max(0));
    let within = polling
        .within
        .unwrap_or(Duration::from_millis(stated as u64));
    let started = tokio::time::Instant::now();
    let mut last_error;
    loop {
        match verifier.holds(&check, incident).await {
            Ok(true) => {
                return Execution {
                    steps,
                    rollback: Vec::new(),
                    summary: format!("verified: {} held", describe(&check)),
                    check: Some(check),
                    verified: Some(true),
                    fixed: true,
                };
            }
            Ok(false) => last_error = None,
            Err(e) => last_error = Some(e),
        }
        if started.elapsed() + polling.every > within || stop() {
            break;
        }
        tokio::time::sleep(polling.every).await;
    }
    let mut ex = rolled_back(executor, runbook, &mut ctx, report, steps).await;
    ex.summary = format!(
        "{} did not hold within {}{}; {}",
        describe(&check),
        nightshift_core::format_duration(stated),
        last_error.map_or(String::new(), |e| format!(" (last evaluation failed: {e})")),
        ex.summary
    );
    ex.check = Some(check);
    ex.verified = Some(false);
    ex
}

/// A dry run against the world as it is: every step and rollback step rendered and checked
/// (commands against the allow-list and their argument grammar), each request as it would be
/// sent, nothing sent; and the verification evaluated once, now, before anything is done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rehearsal {
    pub steps: Vec<StepRecord>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollback: Vec<StepRecord>,
    /// The verification as it would be evaluated (`None`: the runbook has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// Whether it holds now: before acting, it normally does not (else nothing needs fixing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holds_now: Option<bool>,
    /// Why the verification cannot be rendered or evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_error: Option<String>,
}

/// Rehearses `runbook` for `incident` with the proposal's `context` on `executor`'s providers
/// and allow-list: see [`Rehearsal`]. The executor is run as a dry run whatever it says, so
/// nothing can be sent; each step is checked by its provider, and a step whose provider family
/// `executor` lacks is refused as a real run would refuse it.
pub async fn rehearse(
    executor: &Executor,
    verifier: &dyn Verifier,
    runbook: &Runbook,
    incident: &str,
    context: &Value,
) -> Rehearsal {
    let mut executor = Executor {
        dry_run: true,
        ..executor.clone()
    };
    for family in FAMILIES {
        executor
            .providers
            .entry(family.to_string())
            .or_insert_with(|| Arc::new(Unconfigured));
    }
    let mut ctx = context.clone();
    ctx["steps"] = json!({});
    let (steps, _) = executor.run(&runbook.steps, &mut ctx, &mut |_| {}).await;
    let (rollback, _) = executor.run(&runbook.rollback, &mut ctx, &mut |_| {}).await;
    let (check, holds_now, check_error) = match check_of(runbook, &ctx) {
        Ok(None) => (None, None, None),
        Ok(Some(c)) => match verifier.holds(&c, incident).await {
            Ok(h) => (Some(c), Some(h), None),
            Err(e) => (Some(c), None, Some(e)),
        },
        Err(e) => (
            None,
            None,
            Some(format!("cannot render the verification: {e}")),
        ),
    };
    Rehearsal {
        steps,
        rollback,
        check,
        holds_now,
        check_error,
    }
}

fn describe(check: &Check) -> String {
    match check {
        Check::Promql(q) => format!("`{q}`"),
        Check::Signal(s) => s.clone(),
    }
}

async fn rolled_back(
    executor: &Executor,
    runbook: &Runbook,
    ctx: &mut Value,
    report: &mut (dyn FnMut(&StepRecord, bool) + Send),
    steps: Vec<StepRecord>,
) -> Execution {
    let (rollback, ok) = executor
        .run(&runbook.rollback, ctx, &mut |r| report(r, true))
        .await;
    let summary = match (runbook.rollback.is_empty(), ok) {
        (true, _) => "no rollback defined; escalated".to_string(),
        (false, true) => "rolled back; escalated".to_string(),
        (false, false) => "the rollback failed too; escalated".to_string(),
    };
    Execution {
        steps,
        rollback,
        check: None,
        verified: None,
        fixed: false,
        summary,
    }
}
