//! From an incident to proposals: which runbooks answer it (trigger, then `when`), and what
//! each would do there, rendered step by step without running anything (the dry run).

use crate::runbook::{Mode, Risk, Runbook, Step};
use crate::template;
use nightshift_core::resource::semconv;
use nightshift_core::{Alert, EntityKind, Incident};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What an action is aimed at: the leading hypothesis' entity, placed in the cluster when the
/// alerts say where.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// `service` or `node`.
    pub kind: String,
    pub name: String,
    pub cause: String,
    pub service: Option<String>,
    pub node: Option<String>,
    pub namespace: Option<String>,
    /// The Deployment, taken to be named as its service unless an alert names it.
    pub deployment: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
}

impl Target {
    /// What limits count per target: `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace.as_deref().unwrap_or(""), self.name)
    }
}

/// One step as it would run: its arguments rendered, or why they cannot be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub id: String,
    pub uses: String,
    pub with: Value,
    /// False when its `when` does not hold.
    pub runs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A runbook proposed for an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub runbook: String,
    pub description: String,
    pub incident: String,
    pub mode: Mode,
    pub risk: Risk,
    pub target: Target,
    pub steps: Vec<PlannedStep>,
    /// The verification, rendered: a PromQL expression or an internal signal, and how long.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    pub rollback: Vec<PlannedStep>,
    /// What the templates saw (`incident`, `target`, `labels`, `alerts`): an approved action
    /// runs with it.
    pub context: Value,
    /// The LLM's conclusion on the incident, when one was reached: kept in the audit log with
    /// the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
}

impl Proposal {
    /// Whether every step rendered.
    pub fn ready(&self) -> bool {
        self.steps
            .iter()
            .chain(&self.rollback)
            .all(|s| s.error.is_none())
    }
}

/// The label of the incident's alerts that says `key`, if one does (the first found).
fn alert_label<'a>(alerts: &'a [Alert], keys: &[&str]) -> Option<&'a str> {
    alerts
        .iter()
        .find_map(|a| keys.iter().find_map(|k| a.labels.get(*k)))
        .map(String::as_str)
}

/// The target of `incident`: its leading hypothesis, placed by its alerts' labels.
pub fn target(incident: &Incident, alerts: &[Alert]) -> Option<Target> {
    let h = incident.hypotheses.first()?;
    let node_kind = h.entity.kind == EntityKind::Node;
    let service = (!node_kind).then(|| h.entity.name.clone());
    let ns = alert_label(alerts, &["namespace", semconv::K8S_NAMESPACE_NAME]);
    Some(Target {
        kind: if node_kind { "node" } else { "service" }.into(),
        name: h.entity.name.clone(),
        cause: h.cause.clone(),
        node: if node_kind {
            Some(h.entity.name.clone())
        } else {
            alert_label(alerts, &["node", semconv::K8S_NODE_NAME]).map(str::to_string)
        },
        namespace: ns.map(str::to_string),
        deployment: alert_label(alerts, &["deployment"])
            .map(str::to_string)
            .or_else(|| service.clone()),
        pod: alert_label(alerts, &["pod", semconv::K8S_POD_NAME]).map(str::to_string),
        container: alert_label(alerts, &["container", semconv::K8S_CONTAINER_NAME])
            .map(str::to_string),
        service,
    })
}

/// What templates see: `incident`, `target`, `labels` (the incident's alerts' labels, the
/// first alert's value where they differ) and `alerts` (names).
pub fn context(incident: &Incident, alerts: &[Alert], target: &Target) -> Value {
    let mut labels = serde_json::Map::new();
    for a in alerts {
        for (k, v) in &a.labels {
            labels.entry(k.clone()).or_insert_with(|| json!(v));
        }
    }
    // `null` fields are left out, so that `is defined` and `default()` see them as missing.
    let mut t = serde_json::to_value(target).unwrap_or_default();
    if let Some(m) = t.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    json!({
        "incident": {
            "id": incident.id,
            "title": incident.title,
            "priority": incident.priority.as_str(),
            "status": incident.status.as_str(),
            "opened_at": incident.opened_at,
            "changes": incident.changes.iter().map(|c| json!({"id": c.id, "what": c.summary(), "ts": c.ts})).collect::<Vec<_>>(),
            // Why: the leading hypothesis and its evidence, which the audit log keeps.
            "hypothesis": incident.hypotheses.first().map(|h| json!({
                "summary": h.summary,
                "score": h.score,
                "evidence": h.evidence.iter().map(|e| json!({"id": e.id, "summary": e.summary})).collect::<Vec<_>>(),
            })),
        },
        "target": t,
        "labels": labels,
        "alerts": alerts.iter().map(|a| a.name().to_string()).collect::<Vec<_>>(),
    })
}

/// Whether `runbook`'s trigger matches the incident (every list given, by any of its items).
pub fn triggered(
    runbook: &Runbook,
    incident: &Incident,
    alerts: &[Alert],
    target: &Target,
) -> bool {
    let t = &runbook.trigger;
    let any =
        |list: &[String], f: &dyn Fn(&str) -> bool| list.is_empty() || list.iter().any(|x| f(x));
    any(&t.services, &|s| s == target.name)
        && any(&t.causes, &|c| c == target.cause)
        && any(&t.priorities, &|p| p == incident.priority.as_str())
        && any(&t.alerts, &|n| alerts.iter().any(|a| a.name() == n))
        && (t.labels.is_empty()
            || alerts
                .iter()
                .any(|a| t.labels.iter().all(|(k, v)| a.labels.get(k) == Some(v))))
}

/// Renders every string in `v` with `context`.
pub(crate) fn render_value(v: &Value, context: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) if template::is_templated(s) => {
            Value::String(template::render(s, context)?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| render_value(i, context))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, i)| Ok((k.clone(), render_value(i, context)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// Whether step `s` runs in `context` (its `when`, if any).
pub(crate) fn step_holds(s: &Step, context: &Value) -> Result<bool, String> {
    match &s.when {
        Some(w) => template::holds(w, context).map_err(|e| format!("when: {e}")),
        None => Ok(true),
    }
}

fn plan_steps(steps: &[Step], context: &mut Value) -> Vec<PlannedStep> {
    let mut out = Vec::new();
    for s in steps {
        let runs = step_holds(s, context);
        let (with, runs, error) = match runs {
            Ok(false) => (json!(s.with), false, None),
            // Shown and audited, so secret-looking fields (headers, tokens) are masked; the
            // run renders the step again from the runbook.
            Ok(true) => match render_value(&json!(s.with), context) {
                Ok(v) => (crate::notify::mask_json(&v), true, None),
                Err(e) => (json!(s.with), true, Some(e)),
            },
            Err(e) => (json!(s.with), false, Some(e)),
        };
        // In a dry run a step's output is not known: later steps see a placeholder.
        context["steps"][&s.id] = json!({"output": format!("(output of {})", s.id)});
        out.push(PlannedStep {
            id: s.id.clone(),
            uses: s.uses.clone(),
            with,
            runs,
            error,
        });
    }
    out
}

/// Whether `runbook` answers `incident`: its trigger matches and its `when` (if any) holds.
fn answers(
    runbook: &Runbook,
    incident: &Incident,
    alerts: &[Alert],
    target: &Target,
    base: &Value,
) -> bool {
    triggered(runbook, incident, alerts, target)
        && runbook
            .when
            .as_ref()
            .is_none_or(|w| template::holds(w, base).unwrap_or(false))
}

/// `runbook` planned for `incident` whose target and base context are these.
fn plan_with(runbook: &Runbook, incident: &Incident, target: &Target, base: &Value) -> Proposal {
    let r = runbook;
    let mut ctx = base.clone();
    ctx["steps"] = json!({});
    let steps = plan_steps(&r.steps, &mut ctx);
    let rollback = plan_steps(&r.rollback, &mut ctx);
    let verify = r.verify.as_ref().map(|v| {
        let what = match (&v.promql, &v.signal) {
            (Some(q), _) => {
                template::render(q, &ctx).unwrap_or_else(|e| format!("(cannot render: {e})"))
            }
            (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        };
        format!(
            "{what} within {}",
            nightshift_core::format_duration(v.within_ms)
        )
    });
    Proposal {
        runbook: r.name.clone(),
        description: r.description.clone(),
        incident: incident.id.clone(),
        mode: r.mode,
        risk: r.risk,
        target: target.clone(),
        steps,
        verify,
        rollback,
        context: base.clone(),
        reasoning: None,
    }
}

/// The runbooks that answer `incident`, each planned there; a runbook whose `when` does not
/// hold (or cannot be evaluated) is left out.
pub fn propose(runbooks: &[Runbook], incident: &Incident, alerts: &[Alert]) -> Vec<Proposal> {
    let Some(target) = target(incident, alerts) else {
        return Vec::new();
    };
    let base = context(incident, alerts, &target);
    runbooks
        .iter()
        .filter(|r| answers(r, incident, alerts, &target, &base))
        .map(|r| plan_with(r, incident, &target, &base))
        .collect()
}

/// `runbook` planned for `incident` whether or not it answers it (for a dry run of a runbook by
/// name), with whether it does; `None` when the incident names no target to act on.
pub fn plan(runbook: &Runbook, incident: &Incident, alerts: &[Alert]) -> Option<(Proposal, bool)> {
    let target = target(incident, alerts)?;
    let base = context(incident, alerts, &target);
    let answers = answers(runbook, incident, alerts, &target, &base);
    Some((plan_with(runbook, incident, &target, &base), answers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::shipped;
    use nightshift_core::{Entity, Hypothesis, Priority, cause};
    use std::collections::BTreeMap;

    fn incident(entity: Entity, why: &str) -> Incident {
        Incident {
            id: "inc-0007".into(),
            title: "trouble".into(),
            priority: Priority::P2,
            hypotheses: vec![Hypothesis {
                rank: 1,
                entity,
                cause: why.into(),
                score: 0.9,
                summary: String::new(),
                evidence: vec![],
            }],
            ..Incident::default()
        }
    }

    fn alert(pairs: &[(&str, &str)]) -> Alert {
        let labels: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Alert::firing(labels, BTreeMap::new(), 1_000)
    }

    #[test]
    fn an_oom_in_a_known_namespace_gets_its_runbook_rendered_there() {
        let inc = incident(Entity::service("cart"), cause::MEMORY_EXHAUSTION);
        let alerts = [alert(&[
            ("alertname", "KubeContainerOOMKilled"),
            ("namespace", "shop"),
            ("container", "app"),
        ])];
        let p = propose(&shipped(), &inc, &alerts);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].runbook, "oomkilled-raise-memory");
        assert_eq!(p[0].mode, Mode::Approve);
        assert!(p[0].ready(), "{p:#?}");
        let with = &p[0].steps[0].with;
        assert_eq!(with["namespace"], "shop");
        assert_eq!(with["deployment"], "cart");
        assert_eq!(with["memory_limit"], "768Mi");
        assert_eq!(p[0].rollback[0].uses, "kubernetes.rollback");
        // Where the namespace is unknown, nothing is proposed: its `when` does not hold.
        assert!(propose(&shipped(), &inc, &[]).is_empty());
    }

    #[test]
    fn triggers_must_match_every_list_given() {
        let cpu = incident(Entity::service("pricing"), cause::CPU_SATURATION);
        let alerts = [alert(&[
            ("alertname", "CPUThrottlingHigh"),
            ("namespace", "platform"),
        ])];
        let p = propose(&shipped(), &cpu, &alerts);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].mode, Mode::Auto);
        assert_eq!(p[0].steps[0].with["replicas"], "4");
        assert!(
            p[0].verify
                .as_deref()
                .unwrap()
                .contains("namespace=\"platform\"")
        );
        // A node is never scaled out; a cause nobody wrote a runbook for gets nothing.
        let node = incident(
            Entity {
                kind: EntityKind::Node,
                name: "node-3".into(),
            },
            cause::CPU_SATURATION,
        );
        assert!(propose(&shipped(), &node, &alerts).is_empty());
        let tls = incident(Entity::service("users"), cause::FAILING_INBOUND);
        assert!(propose(&shipped(), &tls, &alerts).is_empty());
        // The exporter runbook wants its alert too, not only the cause.
        let down = incident(Entity::service("node-exporter"), cause::INSTANCES_DOWN);
        assert!(propose(&shipped(), &down, &alerts).is_empty());
        let exporter = [alert(&[
            ("alertname", "TargetDown"),
            ("namespace", "monitoring"),
            ("job", "node-exporter"),
        ])];
        let p = propose(&shipped(), &down, &exporter);
        assert_eq!(p[0].runbook, "restart-stuck-exporter");
        assert!(
            p[0].verify
                .as_deref()
                .unwrap()
                .contains("job=\"node-exporter\"")
        );
    }
}
