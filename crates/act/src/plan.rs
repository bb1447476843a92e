//! From an incident to proposals: which runbooks answer it (trigger, then `when`), and what
//! each would do there, rendered step by step without running anything (the dry run).

use crate::runbook::{Mode, Risk, Runbook, Step};
use crate::template;
use nightshift_core::{Alert, EntityKind, Incident};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What an action is aimed at: the leading hypothesis' entity, placed where it runs by the
/// Kubernetes API or the configuration ([`Workloads`]), never by alert labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// `service` or `node`.
    pub kind: String,
    pub name: String,
    pub cause: String,
    pub service: Option<String>,
    pub node: Option<String>,
    pub namespace: Option<String>,
    /// The Deployment that runs the service, where its workload is known.
    pub deployment: Option<String>,
    /// The workload's main container, where known.
    pub container: Option<String>,
    /// Where the placement came from: `kubernetes` (the API's pods) or `configuration`
    /// (`act.workloads`); absent when nothing placed the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_by: Option<String>,
}

impl Target {
    /// What limits count per target: `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace.as_deref().unwrap_or(""), self.name)
    }
}

/// Where a service runs: its namespace and Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub namespace: String,
    pub deployment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// `kubernetes` or `configuration`.
    pub placed_by: String,
}

/// Services' workloads by service name, from sources Nightshift trusts (the Kubernetes API's
/// pods, the configuration): what a runbook's target is placed by.
pub type Workloads = std::collections::BTreeMap<String, Workload>;

impl Workload {
    /// A workload as `placed_by` gives it; the Deployment is the service's own name when not
    /// given. Each name must be one the Kubernetes API accepts: the field that is not, when one
    /// is not.
    pub fn checked(
        service: &str,
        namespace: String,
        deployment: Option<String>,
        container: Option<String>,
        placed_by: &str,
    ) -> Result<Self, String> {
        use crate::command::ArgKind;
        let deployment = deployment.unwrap_or_else(|| service.to_string());
        for (what, v, kind) in [
            ("namespace", Some(&namespace), ArgKind::K8sLabel),
            ("deployment", Some(&deployment), ArgKind::K8sName),
            ("container", container.as_ref(), ArgKind::K8sLabel),
        ] {
            if let Some(v) = v
                && kind.check(v).is_err()
            {
                return Err(format!("{what}: {v:?} is not a Kubernetes name"));
            }
        }
        Ok(Self {
            namespace,
            deployment,
            container,
            placed_by: placed_by.into(),
        })
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
    /// Why the incident may not start an automatic action (an alert came in unauthenticated,
    /// or from a sender not in `act.auto_sources`): an `auto` runbook then waits for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untrusted: Option<String>,
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

/// The target of `incident`: its leading hypothesis, placed by `workloads`. Nothing an alert
/// says (its labels) chooses or places it.
pub fn target(incident: &Incident, workloads: &Workloads) -> Option<Target> {
    let h = incident.hypotheses.first()?;
    let node_kind = h.entity.kind == EntityKind::Node;
    let workload = (!node_kind)
        .then(|| workloads.get(&h.entity.name))
        .flatten();
    Some(Target {
        kind: if node_kind { "node" } else { "service" }.into(),
        name: h.entity.name.clone(),
        cause: h.cause.clone(),
        node: node_kind.then(|| h.entity.name.clone()),
        namespace: workload.map(|w| w.namespace.clone()),
        deployment: workload.map(|w| w.deployment.clone()),
        container: workload.and_then(|w| w.container.clone()),
        placed_by: workload.map(|w| w.placed_by.clone()),
        service: (!node_kind).then(|| h.entity.name.clone()),
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
        context["steps"][&s.id] = json!({"output": template::unknown_output(&s.id)});
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
        && runbook.target.refuses(target).is_none()
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
                template::render_query(q, &ctx).unwrap_or_else(|e| format!("(cannot render: {e})"))
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
        untrusted: None,
    }
}

/// The runbooks that answer `incident`, each planned there; a runbook whose `when` does not
/// hold (or cannot be evaluated) is left out.
pub fn propose(
    runbooks: &[Runbook],
    incident: &Incident,
    alerts: &[Alert],
    workloads: &Workloads,
) -> Vec<Proposal> {
    let Some(target) = target(incident, workloads) else {
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
pub fn plan(
    runbook: &Runbook,
    incident: &Incident,
    alerts: &[Alert],
    workloads: &Workloads,
) -> Option<(Proposal, bool)> {
    let target = target(incident, workloads)?;
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

    fn placed(service: &str, namespace: &str) -> Workloads {
        Workloads::from([(
            service.to_string(),
            Workload {
                namespace: namespace.into(),
                deployment: service.into(),
                container: Some("app".into()),
                placed_by: "kubernetes".into(),
            },
        )])
    }

    #[test]
    fn an_oom_where_its_workload_is_known_gets_its_runbook_rendered_there() {
        let inc = incident(Entity::service("cart"), cause::MEMORY_EXHAUSTION);
        let alerts = [alert(&[("alertname", "KubeContainerOOMKilled")])];
        let p = propose(&shipped(), &inc, &alerts, &placed("cart", "shop"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].runbook, "oomkilled-raise-memory");
        assert_eq!(p[0].mode, Mode::Approve);
        assert!(p[0].ready(), "{p:#?}");
        let with = &p[0].steps[0].with;
        assert_eq!(with["namespace"], "shop");
        assert_eq!(with["deployment"], "cart");
        assert_eq!(with["container"], "app");
        assert_eq!(with["memory_limit_factor"], "1.5");
        assert_eq!(p[0].target.placed_by.as_deref(), Some("kubernetes"));
        // Where the workload is unknown, nothing is proposed: its `when` does not hold.
        assert!(propose(&shipped(), &inc, &[], &Workloads::new()).is_empty());
    }

    #[test]
    fn alert_labels_never_place_or_name_the_target() {
        let inc = incident(Entity::service("cart"), cause::MEMORY_EXHAUSTION);
        // An alert that names another namespace, Deployment, pod and container.
        let hostile = [alert(&[
            ("alertname", "KubeContainerOOMKilled"),
            ("namespace", "kube-system"),
            ("deployment", "coredns"),
            ("pod", "coredns-1"),
            ("container", "coredns"),
        ])];
        // Unplaced, the labels do not place it: no proposal.
        assert!(propose(&shipped(), &inc, &hostile, &Workloads::new()).is_empty());
        // Placed, the workload's namespace and Deployment are used, never the labels'.
        let p = propose(&shipped(), &inc, &hostile, &placed("cart", "shop"));
        let with = &p[0].steps[0].with;
        assert_eq!(with["namespace"], "shop");
        assert_eq!(with["deployment"], "cart");
        assert_eq!(with["container"], "app");
        assert_eq!(p[0].target.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn triggers_and_target_selectors_must_match() {
        let cpu = incident(Entity::service("pricing"), cause::CPU_SATURATION);
        let alerts = [alert(&[("alertname", "CPUThrottlingHigh")])];
        let p = propose(&shipped(), &cpu, &alerts, &placed("pricing", "default"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].mode, Mode::Auto);
        assert_eq!(p[0].steps[0].with["by"], "+2");
        assert_eq!(
            p[0].rollback[0].with["replicas"], "(output of scale)",
            "the rollback restores the count read before"
        );
        assert!(
            p[0].verify
                .as_deref()
                .unwrap()
                .contains("namespace=\"default\""),
        );
        // The runbook touches no system namespace, whatever the workload says.
        assert!(propose(&shipped(), &cpu, &alerts, &placed("pricing", "kube-system")).is_empty());
        // A node is never scaled out; a cause nobody wrote a runbook for gets nothing.
        let node = incident(
            Entity {
                kind: EntityKind::Node,
                name: "node-3".into(),
            },
            cause::CPU_SATURATION,
        );
        assert!(propose(&shipped(), &node, &alerts, &placed("pricing", "default")).is_empty());
        let tls = incident(Entity::service("users"), cause::FAILING_INBOUND);
        assert!(propose(&shipped(), &tls, &alerts, &placed("users", "platform")).is_empty());
        // The exporter runbook wants its alert too, not only the cause.
        let down = incident(Entity::service("node-exporter"), cause::INSTANCES_DOWN);
        let monitoring = placed("node-exporter", "monitoring");
        assert!(propose(&shipped(), &down, &alerts, &monitoring).is_empty());
        let exporter = [alert(&[
            ("alertname", "TargetDown"),
            ("job", "evil\"} or vector(1)"),
        ])];
        let p = propose(&shipped(), &down, &exporter, &monitoring);
        assert_eq!(p[0].runbook, "restart-stuck-exporter");
        assert!(
            p[0].verify
                .as_deref()
                .unwrap()
                .contains("job=\"node-exporter\""),
            "{:?}",
            p[0].verify
        );
    }
}
