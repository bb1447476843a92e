//! Runbook files: which incidents a runbook answers (`trigger`, `when`), what it does (`steps`,
//! each a provider call with `with:` arguments), how far it may go on its own (`mode`, `risk`,
//! `limits`), how success is checked (`verify`) and how it is undone (`rollback`). Parsing
//! checks everything that can be checked before an incident: unknown keys, provider names and
//! their arguments, template syntax, references to earlier steps' outputs; each problem names
//! its line and field.

use crate::command::ArgKind;
use crate::template;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet};

/// How far a runbook goes on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Recommends; nothing runs.
    Suggest,
    /// Runs once someone with the role approves.
    Approve,
    /// Runs on its own, within limits (only for `risk: low`).
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Suggest => "suggest",
            Mode::Approve => "approve",
            Mode::Auto => "auto",
        }
    }
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// What a runbook answers: every list given must match (any of its items); empty lists match
/// anything.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Trigger {
    /// The root-cause service or node of the incident's leading hypothesis.
    pub services: Vec<String>,
    /// Its suspected cause (`nightshift_core::CAUSES`).
    pub causes: Vec<String>,
    /// Incident priorities, `P1` to `P5`.
    pub priorities: Vec<String>,
    /// Names of alerts in the incident.
    pub alerts: Vec<String>,
    /// Labels every one of which an alert of the incident carries.
    pub labels: BTreeMap<String, String>,
}

/// Which targets a runbook may act on. The target is resolved from the incident's root cause and
/// where it runs (never from alert labels); it must match every field given here.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Selector {
    /// `service` or `node`.
    pub kind: Option<String>,
    /// Namespaces the target must be in (a target whose namespace is unknown matches none).
    pub namespaces: Vec<String>,
    /// Regular expressions, anchored at both ends as PromQL's `=~` is, one of which the
    /// target's name must match.
    pub names: Vec<String>,
}

impl Selector {
    /// Why `target` is not one this selector allows, if it is not.
    pub fn refuses(&self, target: &crate::plan::Target) -> Option<String> {
        if let Some(kind) = &self.kind
            && *kind != target.kind
        {
            return Some(format!(
                "the runbook acts on a {kind}, and {} is a {}",
                target.name, target.kind
            ));
        }
        if !self.namespaces.is_empty() {
            match &target.namespace {
                None => {
                    return Some(format!(
                        "where {} runs is not known, and the runbook acts only in namespace {}",
                        target.name,
                        self.namespaces.join(", ")
                    ));
                }
                Some(ns) if !self.namespaces.contains(ns) => {
                    return Some(format!(
                        "{} runs in namespace {ns}, not in the runbook's {}",
                        target.name,
                        self.namespaces.join(", ")
                    ));
                }
                Some(_) => {}
            }
        }
        if !self.names.is_empty()
            && !self
                .names
                .iter()
                .filter_map(|n| anchored(n).ok())
                .any(|re| re.is_match(&target.name))
        {
            return Some(format!(
                "{} matches none of the runbook's target names ({})",
                target.name,
                self.names.join(", ")
            ));
        }
        None
    }
}

/// `pattern` anchored at both ends.
fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

/// Provider families whose steps change something outside Nightshift: their arguments may not
/// come from alert labels (`labels`, `alerts`), which any sender of an alert chooses.
const ACTING_FAMILIES: [&str; 4] = ["kubernetes.", "command.", "ansible.", "http."];

/// Template variables that hold what alerts said.
const ALERT_VARIABLES: [&str; 2] = ["labels", "alerts"];

/// How many times a runbook may act.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Limits {
    pub per_hour: Option<u32>,
    pub per_target_per_hour: Option<u32>,
    pub per_namespace_per_hour: Option<u32>,
    /// The most replicas a scale step may ask for.
    pub max_replicas: Option<u32>,
}

/// One provider call.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    /// Its name, by which later steps use its outputs (`steps.ID.output`).
    pub id: String,
    /// The provider, e.g. `kubernetes.scale`.
    pub uses: String,
    /// Its arguments; strings are templates.
    pub with: BTreeMap<String, Value>,
    pub when: Option<String>,
    pub line: u64,
}

/// The condition that shows the action worked.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verify {
    /// A PromQL expression (a template) that must return a non-empty result...
    pub promql: Option<String>,
    /// ...or an internal signal: `incident_resolved`.
    pub signal: Option<String>,
    /// ...within this long (ms).
    pub within_ms: i64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    pub trigger: Trigger,
    /// Which resolved targets it may act on.
    pub target: Selector,
    pub mode: Mode,
    pub risk: Risk,
    pub limits: Limits,
    pub when: Option<String>,
    pub steps: Vec<Step>,
    pub verify: Option<Verify>,
    pub rollback: Vec<Step>,
}

/// One thing wrong with a runbook file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error("line {line}: {field}: {message}")]
pub struct Problem {
    pub line: u64,
    /// The field's path, e.g. `steps[1].with.replicas`.
    pub field: String,
    pub message: String,
}

/// Internal signals a `verify` may wait for.
pub const SIGNALS: [&str; 1] = ["incident_resolved"];

/// Each provider a step may use: (name, required arguments, optional arguments).
pub const PROVIDERS: &[(&str, &[&str], &[&str])] = &[
    (
        "kubernetes.rollout_restart",
        &["namespace", "deployment"],
        &[],
    ),
    // `by: "+2"` up to `max` (relative), or `replicas` (a value recorded before, to restore).
    (
        "kubernetes.scale",
        &["namespace", "deployment"],
        &["by", "replicas", "min", "max"],
    ),
    ("kubernetes.rollback", &["namespace", "deployment"], &[]),
    (
        "kubernetes.patch_resources",
        &["namespace", "deployment", "container"],
        &[
            "memory_limit",
            "memory_request",
            "cpu_limit",
            "cpu_request",
            "memory_limit_factor",
            "memory_limit_max",
        ],
    ),
    ("kubernetes.cordon", &["node"], &[]),
    ("kubernetes.drain", &["node"], &["grace_period_seconds"]),
    ("kubernetes.delete_pod", &["namespace", "pod"], &[]),
    (
        "http.request",
        &["url"],
        &["method", "headers", "body", "expect_status"],
    ),
    ("command.run", &["program", "args"], &["timeout"]),
    (
        "ansible.playbook",
        &["playbook"],
        &["inventory", "limit", "extra_vars", "timeout"],
    ),
    ("notify.slack", &["text"], &["channel"]),
    ("notify.pagerduty", &["summary"], &["severity", "dedup_key"]),
    ("notify.opsgenie", &["message"], &["priority", "alias"]),
    ("notify.webhook", &["url"], &["body"]),
    ("notify.email", &["to", "subject", "body"], &[]),
    (
        "ticket.jira",
        &["project", "summary"],
        &["description", "issue_type"],
    ),
    (
        "ticket.gitlab",
        &["project", "title"],
        &["description", "labels"],
    ),
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunbook {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    trigger: Spanned<RawTrigger>,
    target: Option<Spanned<RawSelector>>,
    mode: Spanned<String>,
    risk: Spanned<String>,
    #[serde(default)]
    limits: Option<Spanned<RawLimits>>,
    when: Option<Spanned<String>>,
    steps: Spanned<Vec<RawStep>>,
    verify: Option<Spanned<RawVerify>>,
    #[serde(default)]
    rollback: Vec<RawStep>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    #[serde(default)]
    services: Vec<String>,
    #[serde(default)]
    causes: Vec<Spanned<String>>,
    #[serde(default)]
    priorities: Vec<Spanned<String>>,
    #[serde(default)]
    alerts: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSelector {
    kind: Option<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    names: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    per_hour: Option<u32>,
    per_target_per_hour: Option<u32>,
    per_namespace_per_hour: Option<u32>,
    max_replicas: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Option<Spanned<String>>,
    uses: Spanned<String>,
    #[serde(default)]
    with: BTreeMap<String, Spanned<Value>>,
    when: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerify {
    promql: Option<Spanned<String>>,
    signal: Option<Spanned<String>>,
    within: Spanned<String>,
}

/// Gathers problems while a runbook is read.
struct Problems(Vec<Problem>);

impl Problems {
    fn problem(&mut self, line: u64, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    fn template(&mut self, line: u64, field: &str, text: &str) {
        if let Err(e) = template::check(text) {
            self.problem(line, field, format!("not a valid template: {e}"));
        }
    }

    fn expression(&mut self, line: u64, field: &str, text: &str) {
        if let Err(e) = template::check_expression(text) {
            self.problem(line, field, format!("not a valid condition: {e}"));
        }
    }
}

/// `30s`, `10m`, `2h` in ms.
pub(crate) fn duration_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let n: i64 = t[..split].parse().ok()?;
    let unit = match t[split..].trim() {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Reads a runbook file's text; every problem found, by line, when it is not a valid one.
pub fn parse(text: &str) -> Result<Runbook, Vec<Problem>> {
    let raw: RawRunbook = serde_saphyr::from_str(text).map_err(|e| {
        let e = nightshift_core::yaml::YamlError::of(&e);
        vec![Problem {
            line: e.line.unwrap_or(0),
            field: "(file)".into(),
            message: e.message,
        }]
    })?;
    let mut check = Problems(Vec::new());
    let name = raw.name.value.trim().to_string();
    if name.is_empty() || ArgKind::K8sName.check(&name).is_err() {
        check.problem(
            raw.name.referenced.line(),
            "name",
            "give the runbook a name of lower-case letters, digits, '-' and '.'",
        );
    }
    let mode = match raw.mode.value.as_str() {
        "suggest" => Mode::Suggest,
        "approve" => Mode::Approve,
        "auto" => Mode::Auto,
        other => {
            check.problem(
                raw.mode.referenced.line(),
                "mode",
                format!("{other:?} is not suggest, approve or auto"),
            );
            Mode::Suggest
        }
    };
    let risk = match raw.risk.value.as_str() {
        "low" => Risk::Low,
        "medium" => Risk::Medium,
        "high" => Risk::High,
        other => {
            check.problem(
                raw.risk.referenced.line(),
                "risk",
                format!("{other:?} is not low, medium or high"),
            );
            Risk::High
        }
    };
    if mode == Mode::Auto && risk != Risk::Low {
        check.problem(
            raw.mode.referenced.line(),
            "mode",
            "only a runbook of risk: low may run on its own (mode: auto); use mode: approve",
        );
    }
    let t = raw.trigger.value;
    for c in &t.causes {
        if !nightshift_core::CAUSES.contains(&c.value.as_str()) {
            check.problem(
                c.referenced.line(),
                "trigger.causes",
                format!(
                    "{:?} is not a cause Nightshift names; causes: {}",
                    c.value,
                    nightshift_core::CAUSES.join(", ")
                ),
            );
        }
    }
    for p in &t.priorities {
        if !matches!(p.value.as_str(), "P1" | "P2" | "P3" | "P4" | "P5") {
            check.problem(
                p.referenced.line(),
                "trigger.priorities",
                format!("{:?} is not P1 to P5", p.value),
            );
        }
    }
    let trigger = Trigger {
        services: t.services,
        causes: t.causes.into_iter().map(|c| c.value).collect(),
        priorities: t.priorities.into_iter().map(|p| p.value).collect(),
        alerts: t.alerts,
        labels: t.labels,
    };
    if trigger == Trigger::default() {
        check.problem(
            raw.trigger.referenced.line(),
            "trigger",
            "matches every incident; name at least one service, cause, priority, alert or label",
        );
    }
    let target = match raw.target {
        None => Selector::default(),
        Some(sel) => {
            let line = sel.referenced.line();
            let v = sel.value;
            if let Some(k) = &v.kind
                && k != "service"
                && k != "node"
            {
                check.problem(line, "target.kind", format!("{k:?} is not service or node"));
            }
            for ns in &v.namespaces {
                if ArgKind::K8sLabel.check(ns).is_err() {
                    check.problem(
                        line,
                        "target.namespaces",
                        format!("{ns:?} is not a namespace name"),
                    );
                }
            }
            for n in &v.names {
                if let Err(e) = anchored(n) {
                    check.problem(
                        line,
                        "target.names",
                        format!("{n:?} is not a regular expression: {e}"),
                    );
                }
            }
            Selector {
                kind: v.kind,
                namespaces: v.namespaces,
                names: v.names,
            }
        }
    };
    if mode == Mode::Auto && target.namespaces.is_empty() && target.names.is_empty() {
        check.problem(
            raw.mode.referenced.line(),
            "target",
            "a runbook that runs on its own must say what it may touch: target: {namespaces: [...]} or {names: [...]}",
        );
    }
    let limits = raw.limits.map_or_else(Limits::default, |l| {
        let v = l.value;
        for (field, n) in [
            ("per_hour", v.per_hour),
            ("per_target_per_hour", v.per_target_per_hour),
            ("per_namespace_per_hour", v.per_namespace_per_hour),
            ("max_replicas", v.max_replicas),
        ] {
            if n == Some(0) {
                check.problem(
                    l.referenced.line(),
                    format!("limits.{field}"),
                    "0 would never allow the action; use mode: suggest instead",
                );
            }
        }
        Limits {
            per_hour: v.per_hour,
            per_target_per_hour: v.per_target_per_hour,
            per_namespace_per_hour: v.per_namespace_per_hour,
            max_replicas: v.max_replicas,
        }
    });
    if mode == Mode::Auto && limits.per_hour.is_none() {
        check.problem(
            raw.mode.referenced.line(),
            "limits.per_hour",
            "a runbook that runs on its own needs limits.per_hour",
        );
    }
    if let Some(w) = &raw.when {
        check.expression(w.referenced.line(), "when", &w.value);
    }
    if raw.steps.value.is_empty() {
        check.problem(
            raw.steps.referenced.line(),
            "steps",
            "give at least one step",
        );
    }
    let mut known = BTreeSet::new();
    let steps = read_steps(&mut check, "steps", raw.steps.value, &mut known);
    let rollback = read_steps(&mut check, "rollback", raw.rollback, &mut known);
    let verify = raw.verify.map(|v| {
        let line = v.referenced.line();
        let v = v.value;
        let within_ms = duration_ms(&v.within.value).unwrap_or_else(|| {
            check.problem(
                v.within.referenced.line(),
                "verify.within",
                format!(
                    "{:?} is not a duration such as 30s, 10m or 1h",
                    v.within.value
                ),
            );
            0
        });
        match (&v.promql, &v.signal) {
            (Some(q), None) => {
                if let Err(e) = template::check_query(&q.value) {
                    check.problem(q.referenced.line(), "verify.promql", e);
                }
            }
            (None, Some(s)) if SIGNALS.contains(&s.value.as_str()) => {}
            (None, Some(s)) => check.problem(
                s.referenced.line(),
                "verify.signal",
                format!("{:?} is not one of: {}", s.value, SIGNALS.join(", ")),
            ),
            _ => check.problem(line, "verify", "give exactly one of promql and signal"),
        }
        Verify {
            promql: v.promql.map(|q| q.value),
            signal: v.signal.map(|s| s.value),
            within_ms,
        }
    });
    if mode != Mode::Suggest && verify.is_none() {
        check.problem(
            raw.mode.referenced.line(),
            "verify",
            "a runbook that acts needs a verify block (how to tell that it worked)",
        );
    }
    if check.0.is_empty() {
        Ok(Runbook {
            name,
            description: raw.description,
            trigger,
            target,
            mode,
            risk,
            limits,
            when: raw.when.map(|w| w.value),
            steps,
            verify,
            rollback,
        })
    } else {
        check.0.sort();
        Err(check.0)
    }
}

/// The id of a step that gives none: `step1`, `step2`... in `steps`, `rollback1`... in
/// `rollback`, so that the two lists never clash.
fn default_step_id(list: &str, i: usize) -> String {
    let prefix = if list == "rollback" {
        "rollback"
    } else {
        "step"
    };
    format!("{prefix}{}", i + 1)
}

/// Reads a list of steps, checking each against its provider; `known` collects step ids, so
/// that a step may use only the outputs of the steps before it.
fn read_steps(
    check: &mut Problems,
    list: &str,
    raw: Vec<RawStep>,
    known: &mut BTreeSet<String>,
) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, s) in raw.into_iter().enumerate() {
        let line = s.uses.referenced.line();
        let at = format!("{list}[{i}]");
        let id =
            s.id.as_ref()
                .map_or_else(|| default_step_id(list, i), |id| id.value.clone());
        if let Some(given) = &s.id
            && ArgKind::K8sLabel
                .check(&given.value.replace('_', "-"))
                .is_err()
        {
            check.problem(
                given.referenced.line(),
                format!("{at}.id"),
                "use letters, digits, '-' and '_'",
            );
        }
        match PROVIDERS.iter().find(|(name, _, _)| *name == s.uses.value) {
            None => check.problem(
                line,
                format!("{at}.uses"),
                format!(
                    "no provider {:?}; providers: {}",
                    s.uses.value,
                    PROVIDERS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                ),
            ),
            Some((_, required, optional)) => {
                for r in *required {
                    if !s.with.contains_key(*r) {
                        check.problem(line, format!("{at}.with.{r}"), "missing");
                    }
                }
                for (k, v) in &s.with {
                    if !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
                        check.problem(
                            v.referenced.line(),
                            format!("{at}.with.{k}"),
                            format!(
                                "{} takes no {k:?}; it takes: {}",
                                s.uses.value,
                                required
                                    .iter()
                                    .chain(optional.iter())
                                    .copied()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                }
            }
        }
        for (k, v) in &s.with {
            check_value(
                check,
                v.referenced.line(),
                &format!("{at}.with.{k}"),
                &v.value,
                known,
            );
        }
        if s.uses.value == "command.run" {
            command_args(check, &at, s.with.get("args"), s.with.get("program"));
        }
        if ACTING_FAMILIES.iter().any(|f| s.uses.value.starts_with(f)) {
            for (k, v) in &s.with {
                if let Some(var) = alert_variable(&v.value) {
                    check.problem(
                        v.referenced.line(),
                        format!("{at}.with.{k}"),
                        format!(
                            "{var} is what an alert's sender wrote: a step that acts takes its values from target (the diagnosed root cause and where it runs) or from earlier steps, never from {var}"
                        ),
                    );
                }
            }
        }
        if s.uses.value == "kubernetes.scale" {
            match (s.with.get("by"), s.with.get("replicas")) {
                (Some(_), Some(v)) => check.problem(
                    v.referenced.line(),
                    format!("{at}.with.replicas"),
                    "give by (a change, such as \"+2\") or replicas (a value recorded before), not both",
                ),
                (None, None) => check.problem(
                    line,
                    format!("{at}.with.by"),
                    "give by (a change, such as \"+2\", up to max)",
                ),
                (Some(_), None) if !s.with.contains_key("max") => check.problem(
                    line,
                    format!("{at}.with.max"),
                    "scaling by a change needs max, the most replicas it may reach",
                ),
                _ => {}
            }
        }
        if s.uses.value == "kubernetes.patch_resources" {
            match (
                s.with.get("memory_limit_factor"),
                s.with.get("memory_limit_max"),
                s.with.get("memory_limit"),
            ) {
                (Some(_), None, _) => check.problem(
                    line,
                    format!("{at}.with.memory_limit_max"),
                    "raising memory by a factor needs memory_limit_max, the cap",
                ),
                (None, Some(v), _) => check.problem(
                    v.referenced.line(),
                    format!("{at}.with.memory_limit_max"),
                    "memory_limit_max caps memory_limit_factor; give the factor too",
                ),
                (Some(_), _, Some(v)) => check.problem(
                    v.referenced.line(),
                    format!("{at}.with.memory_limit"),
                    "give memory_limit_factor or memory_limit, not both",
                ),
                _ => {}
            }
        }
        if s.uses.value == "ansible.playbook"
            && let Some(vars) = s.with.get("extra_vars")
            && let Some(map) = vars.value.as_object()
        {
            for k in map.keys().filter(|k| !nightshift_core::is_identifier(k)) {
                check.problem(
                    vars.referenced.line(),
                    format!("{at}.with.extra_vars"),
                    format!(
                        "{k:?} is not a variable name (letters, digits and _, not first a digit)"
                    ),
                );
            }
        }
        if let Some(w) = &s.when {
            check.expression(w.referenced.line(), &format!("{at}.when"), &w.value);
        }
        if !known.insert(id.clone()) {
            check.problem(
                line,
                format!("{at}.id"),
                format!("{id:?} is used by an earlier step"),
            );
        }
        out.push(Step {
            id,
            uses: s.uses.value,
            with: s.with.into_iter().map(|(k, v)| (k, v.value)).collect(),
            when: s.when.map(|w| w.value),
            line,
        });
    }
    out
}

/// Checks every template in an argument, and that it uses only earlier steps' outputs.
fn check_value(check: &mut Problems, line: u64, field: &str, v: &Value, known: &BTreeSet<String>) {
    match v {
        Value::String(s) => {
            check.template(line, field, s);
            let mut rest = s.as_str();
            while let Some(at) = rest.find("steps.") {
                let name: String = rest[at + 6..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                    .collect();
                if !known.contains(&name) {
                    check.problem(
                        line,
                        field,
                        format!("uses the output of step {name:?}, which does not run before it"),
                    );
                }
                rest = &rest[at + 6..];
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| check_value(check, line, field, i, known)),
        Value::Object(map) => map
            .values()
            .for_each(|i| check_value(check, line, field, i, known)),
        _ => {}
    }
}

/// The alert variable (`labels`, `alerts`) a template in `v` reads, if one does.
fn alert_variable(v: &Value) -> Option<&'static str> {
    match v {
        Value::String(s) if template::is_templated(s) => {
            let used = template::variables(s);
            ALERT_VARIABLES.into_iter().find(|var| used.contains(*var))
        }
        Value::Array(items) => items.iter().find_map(alert_variable),
        Value::Object(map) => map.values().find_map(alert_variable),
        _ => None,
    }
}

/// `command.run`: a literal absolute program, and arguments that are literal text or
/// `{value: TEMPLATE, is: KIND}`: a templated plain string would leave unsaid what it names.
fn command_args(
    check: &mut Problems,
    at: &str,
    args: Option<&Spanned<Value>>,
    program: Option<&Spanned<Value>>,
) {
    if let Some(p) = program {
        match p.value.as_str() {
            Some(text) if !template::is_templated(text) && text.starts_with('/') => {}
            _ => check.problem(
                p.referenced.line(),
                format!("{at}.with.program"),
                "give the program as an absolute path, without templates",
            ),
        }
    }
    let Some(args) = args else { return };
    let line = args.referenced.line();
    let Some(items) = args.value.as_array() else {
        check.problem(
            line,
            format!("{at}.with.args"),
            "give the arguments as a list",
        );
        return;
    };
    for (j, a) in items.iter().enumerate() {
        let field = format!("{at}.with.args[{j}]");
        match a {
            Value::String(s) if template::is_templated(s) => check.problem(
                line,
                &field,
                format!("a templated argument must say what it names: {{value: {s:?}, is: k8s_name}} (kinds: {})", ArgKind::ALL),
            ),
            Value::String(_) | Value::Number(_) => {}
            Value::Object(m) => {
                let ok_keys = m.keys().all(|k| k == "value" || k == "is");
                let kind = m.get("is").cloned().map(serde_json::from_value::<ArgKind>);
                if !ok_keys || !m.get("value").is_some_and(Value::is_string) {
                    check.problem(line, &field, "give {value: TEMPLATE, is: KIND}");
                } else if !matches!(kind, Some(Ok(_))) {
                    check.problem(line, &field, format!("`is` must be one of: {}", ArgKind::ALL));
                }
            }
            _ => check.problem(line, &field, "give text, or {value: TEMPLATE, is: KIND}"),
        }
    }
}

/// The runbooks shipped with Nightshift (`runbooks/`), parsed.
pub fn shipped() -> Vec<Runbook> {
    SHIPPED
        .iter()
        .filter_map(|(_, text)| parse(text).ok())
        .collect()
}

/// The shipped runbook files: (name, text).
pub const SHIPPED: [(&str, &str); 7] = [
    (
        "crashloop-after-deploy-rollback.yaml",
        include_str!("../../../runbooks/crashloop-after-deploy-rollback.yaml"),
    ),
    (
        "database-saturation-suggest.yaml",
        include_str!("../../../runbooks/database-saturation-suggest.yaml"),
    ),
    (
        "disk-filling-clean.yaml",
        include_str!("../../../runbooks/disk-filling-clean.yaml"),
    ),
    (
        "node-down-cordon-drain.yaml",
        include_str!("../../../runbooks/node-down-cordon-drain.yaml"),
    ),
    (
        "oomkilled-raise-memory.yaml",
        include_str!("../../../runbooks/oomkilled-raise-memory.yaml"),
    ),
    (
        "restart-stuck-exporter.yaml",
        include_str!("../../../runbooks/restart-stuck-exporter.yaml"),
    ),
    (
        "scale-out-saturated.yaml",
        include_str!("../../../runbooks/scale-out-saturated.yaml"),
    ),
];

/// `command.run` steps (and rollback steps) whose program is not on `allowed`.
pub fn unlisted_programs(runbook: &Runbook, allowed: &[std::path::PathBuf]) -> Vec<Problem> {
    let lists = [("steps", &runbook.steps), ("rollback", &runbook.rollback)];
    let mut out = Vec::new();
    for (list, steps) in lists {
        for (i, s) in steps.iter().enumerate() {
            let program = s
                .with
                .get("program")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if s.uses == "command.run" && !allowed.iter().any(|a| a.as_os_str() == program) {
                out.push(Problem {
                    line: s.line,
                    field: format!("{list}[{i}].with.program"),
                    message: format!("{program} is not on the configuration's act.commands"),
                });
            }
        }
    }
    out
}

/// The arguments of a `command.run` step rendered with `context`, each still marked with the
/// kind of value it must be.
pub fn command_argv(
    with: &BTreeMap<String, Value>,
    context: &Value,
) -> Result<(String, Vec<crate::command::Arg>), String> {
    use crate::command::Arg;
    let program = with
        .get("program")
        .and_then(Value::as_str)
        .ok_or("no program")?
        .to_string();
    let mut out = Vec::new();
    for a in with
        .get("args")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(match a {
            Value::String(s) => Arg::Literal(s.clone()),
            Value::Number(n) => Arg::Literal(n.to_string()),
            Value::Object(m) => {
                let kind: ArgKind =
                    serde_json::from_value(m.get("is").cloned().unwrap_or_default())
                        .map_err(|e| format!("`is`: {e}"))?;
                let source = m.get("value").and_then(Value::as_str).unwrap_or_default();
                Arg::Value {
                    value: template::render(source, context)?,
                    kind,
                }
            }
            other => {
                return Err(format!(
                    "argument {other} is neither text nor {{value, is}}"
                ));
            }
        });
    }
    Ok((program, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_runbooks_are_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runbooks");
        let mut n = 0;
        for f in std::fs::read_dir(&dir).expect("runbooks/") {
            let path = f.unwrap().path();
            if path.extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if let Err(p) = parse(&text) {
                    panic!("{}: {p:?}", path.display());
                }
                n += 1;
            }
        }
        assert_eq!(n, 7);
    }

    #[test]
    fn shipped_runbooks_change_counts_and_limits_relatively_and_restore_what_they_read() {
        for r in shipped() {
            for s in &r.steps {
                let literal =
                    |k: &str| s.with.get(k).is_some_and(|v| !v.to_string().contains("{{"));
                let templated_from_steps = |k: &str| {
                    s.with
                        .get(k)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.contains("steps."))
                };
                if s.uses == "kubernetes.scale" {
                    assert!(
                        s.with.contains_key("by") && s.with.contains_key("max"),
                        "{}",
                        r.name
                    );
                    assert!(!s.with.contains_key("replicas"), "{}", r.name);
                }
                if s.uses == "kubernetes.patch_resources" {
                    for k in ["memory_limit", "memory_request", "cpu_limit", "cpu_request"] {
                        assert!(!literal(k) && !templated_from_steps(k), "{}: {k}", r.name);
                        assert!(!s.with.contains_key(k), "{}: {k} is absolute", r.name);
                    }
                }
            }
            // What a rollback sets, it takes from what the steps read.
            for s in &r.rollback {
                for k in ["replicas", "memory_limit"] {
                    if let Some(v) = s.with.get(k) {
                        assert!(
                            v.as_str().is_some_and(|v| v.contains("steps.")),
                            "{}",
                            r.name
                        );
                    }
                }
            }
            if r.mode == Mode::Auto {
                assert!(!r.target.namespaces.is_empty() || !r.target.names.is_empty());
            }
        }
    }

    #[test]
    fn target_selectors_are_checked_when_read() {
        let text = "\
name: x
trigger: {alerts: [A]}
target: {kind: pod, namespaces: [Not_A_Namespace], names: [\"(\"]}
mode: auto
risk: low
limits: {per_hour: 1}
steps:
  - uses: kubernetes.scale
    with: {namespace: \"{{ target.namespace }}\", deployment: \"{{ target.deployment }}\", by: \"+1\"}
verify: {signal: incident_resolved, within: 5m}
";
        let problems = parse(text).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for want in [
            "target.kind",
            "target.namespaces",
            "target.names",
            "steps[0].with.max",
        ] {
            assert!(fields.contains(&want), "{want}: {problems:#?}");
        }
        let unbounded = text.replace(
            "target: {kind: pod, namespaces: [Not_A_Namespace], names: [\"(\"]}\n",
            "",
        );
        let problems = parse(&unbounded).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.field == "target" && p.message.contains("must say what it may touch")),
            "{problems:#?}"
        );
    }

    #[test]
    fn steps_and_rollback_steps_without_ids_do_not_clash() {
        let text = "\
name: tune
trigger: {services: [checkout]}
mode: approve
risk: medium
steps:
  - uses: command.run
    with: {program: /bin/echo, args: [start]}
verify: {signal: incident_resolved, within: 3s}
rollback:
  - uses: command.run
    with: {program: /bin/echo, args: [stop]}
";
        let r = parse(text).unwrap();
        assert_eq!(r.steps[0].id, "step1");
        assert_eq!(r.rollback[0].id, "rollback1");
    }

    #[test]
    fn each_problem_is_named_by_line_and_field() {
        let text = "\
name: Bad Name
trigger:
  causes: [gremlins]
mode: auto
risk: high
steps:
  - uses: kubernetes.scale
    with:
      namespace: \"{{ target.namespace }}\"
      replicas: \"{{ steps.later.output }}\"
      colour: blue
  - id: later
    uses: command.run
    with:
      program: kubectl
      args: [\"{{ labels.pod }}\"]
  - uses: kubernetes.explode
verify:
  within: soon
";
        let problems = parse(text).unwrap_err();
        let got: Vec<(u64, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        for want in [
            (1, "name"),
            (3, "trigger.causes"),
            (4, "mode"),
            (4, "limits.per_hour"),
            (7, "steps[0].with.deployment"),
            (10, "steps[0].with.replicas"),
            (11, "steps[0].with.colour"),
            (15, "steps[1].with.program"),
            (16, "steps[1].with.args[0]"),
            (17, "steps[2].uses"),
            (19, "verify.within"),
        ] {
            assert!(got.contains(&want), "{want:?} missing from {problems:#?}");
        }
        let unknown = parse(
            "name: x\ntrigger: {alerts: [A]}\nmode: suggest\nrisk: low\nsteps: []\nextra: 1\n",
        )
        .unwrap_err();
        assert_eq!(unknown[0].line, 6, "{unknown:?}");
        assert!(unknown[0].message.contains("extra"), "{unknown:?}");
    }
}
