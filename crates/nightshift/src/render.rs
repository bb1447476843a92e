//! Terminal rendering of incidents and evaluation reports.

use crate::eval::Report;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use nightshift_core::{Incident, Millis, format_duration};
use std::fmt::Write;

/// Renders an incident for a terminal: title, impact, ranked hypotheses with evidence, timeline.
/// Times are shown relative to `t0` (the scenario start) as `T+1h05m`.
pub fn incident(inc: &Incident, t0: Millis) -> String {
    let rel = |ts: Millis| {
        format!(
            "T{}{}",
            if ts >= t0 { "+" } else { "" },
            format_duration(ts - t0)
        )
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "━━ {} · {} · {} · {}",
        inc.id,
        inc.priority.as_str(),
        inc.status.as_str(),
        inc.title
    );
    let resolved = inc
        .resolved_at
        .map(|r| format!(", resolved {}", rel(r)))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "   opened {}{resolved} · {} alerts grouped · {} anomaly reports",
        rel(inc.opened_at),
        inc.alerts.len(),
        inc.anomaly_count
    );
    if inc.reopened > 0 {
        let _ = writeln!(
            s,
            "   reopened {} time(s){}",
            inc.reopened,
            if inc.flapping { " · flapping" } else { "" }
        );
    }
    for b in &inc.slo {
        let _ = writeln!(s, "   SLO {}: {}", b.severity.as_str(), b.summary());
    }
    let names: Vec<String> = inc
        .blast_radius
        .entities
        .iter()
        .map(|e| e.to_string())
        .collect();
    let _ = writeln!(
        s,
        "   blast radius: {} entities: {}",
        names.len(),
        names.join(", ")
    );
    if !inc.blast_radius.entry_points.is_empty() {
        let _ = writeln!(
            s,
            "   user-facing entry points hit: {}",
            inc.blast_radius.entry_points.join(", ")
        );
    }
    let lists = [
        ("calls gone wrong", &inc.blast_radius.endpoints),
        (
            "at risk (depend on the cause, no symptom yet)",
            &inc.blast_radius.at_risk,
        ),
    ];
    for (what, list) in lists {
        if !list.is_empty() {
            let _ = writeln!(s, "   {what}: {}", list.join(", "));
        }
    }
    if !inc.inhibited.is_empty() {
        let names: Vec<String> = inc
            .inhibited
            .iter()
            .map(|a| {
                format!(
                    "{} on {} (symptom of {})",
                    a.alertname, a.entity.name, a.cause.name
                )
            })
            .collect();
        let _ = writeln!(s, "   inhibited symptom alerts: {}", names.join(", "));
    }
    for p in &inc.similar {
        let _ = writeln!(
            s,
            "   happened before: {} {} ({:.0}% alike): {}",
            p.id,
            p.title,
            p.similarity * 100.0,
            p.resolution
        );
    }
    for c in &inc.changes {
        let _ = writeln!(
            s,
            "   change {}: {} of {} {}",
            rel(c.ts),
            c.kind.as_str(),
            c.target,
            c.version.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(s, "   root-cause hypotheses:");
    // The top hypothesis shows all its evidence with queries; the others their two strongest
    // facts, so the screen stays readable (`--json` has everything).
    for (i, h) in inc.hypotheses.iter().enumerate() {
        let _ = writeln!(
            s,
            "   {}. {:<28} {:>5.1}%  {}",
            h.rank,
            h.entity.to_string(),
            h.score * 100.0,
            h.cause
        );
        let shown = if i == 0 { h.evidence.len() } else { 2 };
        for e in h.evidence.iter().take(shown) {
            let _ = writeln!(
                s,
                "        [{}] {} {:<9} {}",
                e.id,
                rel(e.ts),
                e.kind.as_str(),
                e.summary
            );
            if let (0, Some(q)) = (i, &e.query) {
                let _ = writeln!(s, "              query: {q}");
            }
        }
    }
    let _ = writeln!(s, "   timeline:");
    const SHOWN: usize = 12;
    for t in inc.timeline.iter().take(SHOWN) {
        let _ = writeln!(
            s,
            "     {:>9}  {:<9} {:<22} {}",
            rel(t.ts),
            t.kind.as_str(),
            t.entity.to_string(),
            t.text
        );
    }
    if inc.timeline.len() > SHOWN {
        let _ = writeln!(
            s,
            "     … {} more entries (--json shows all)",
            inc.timeline.len() - SHOWN
        );
    }
    s
}

/// A plain table with `header`, in the style every command prints.
/// What the runbooks would do about an incident: each proposal's mode and risk, and its steps
/// as rendered for this incident (a dry run: nothing is executed).
pub fn proposals(list: &[nightshift_act::Proposal]) -> String {
    use nightshift_act::Mode;
    let mut s = String::new();
    for p in list {
        let how = match p.mode {
            Mode::Suggest => "suggested",
            Mode::Approve => "needs approval",
            Mode::Auto => "would run on its own (low risk); dry run",
        };
        let _ = writeln!(
            s,
            "   ⚙ runbook {} ({}, risk {}) on {}{}",
            p.runbook,
            how,
            p.risk.as_str(),
            p.target.name,
            p.target
                .namespace
                .as_deref()
                .map(|n| format!(" in {n}"))
                .unwrap_or_default()
        );
        for step in p.steps.iter().filter(|s| s.runs) {
            match &step.error {
                Some(e) => {
                    let _ = writeln!(s, "     · {}: cannot be rendered here: {e}", step.uses);
                }
                None => {
                    let _ = writeln!(s, "     · {} {}", step.uses, step.with);
                }
            }
        }
        if let Some(v) = &p.verify {
            let _ = writeln!(s, "     ✓ verify: {v}");
        }
    }
    s
}

/// The steps and rollback steps of a dry run, a line each: what would be sent (a command as
/// its argument vector), why it is refused, or that its `when` does not hold.
pub fn dry_steps(
    steps: &[nightshift_act::execute::StepRecord],
    rollback: &[nightshift_act::execute::StepRecord],
) -> Vec<String> {
    let steps = steps.iter().map(|st| ("", st));
    steps
        .chain(rollback.iter().map(|st| ("rollback: ", st)))
        .map(|(role, step)| match (&step.error, &step.request) {
            (Some(e), _) => format!("{role}{}: refused: {e}", step.uses),
            (None, Some(r)) if r.get("program").is_some() => {
                let argv: Vec<&str> = std::iter::once(&r["program"])
                    .chain(r["args"].as_array().into_iter().flatten())
                    .filter_map(serde_json::Value::as_str)
                    .collect();
                format!("{role}would run {}", argv.join(" "))
            }
            (None, Some(r)) => {
                let with = r.get("with").unwrap_or(r);
                format!("{role}would send {} {with}", step.uses)
            }
            (None, None) => format!("{role}{} skipped (its when does not hold)", step.uses),
        })
        .collect()
}

/// A dry run of an automatic runbook: each step as it would be sent, and the verification's
/// verdict.
pub fn dry_run(runbook: &str, ex: &nightshift_act::execute::Execution) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "   ▷ dry run of {runbook}:");
    for line in dry_steps(&ex.steps, &ex.rollback) {
        let _ = writeln!(s, "     · {line}");
    }
    let verdict = if ex.fixed { "fixed" } else { "not fixed" };
    let _ = writeln!(s, "     ✓ {verdict}: {}", ex.summary);
    s
}

pub fn table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header);
    t
}

fn ratio(v: f64) -> String {
    format!("{:.2}", v)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// Renders an evaluation report: per case, per scenario, then Nightshift beside the baselines.
pub fn report(r: &Report) -> String {
    let mut out = String::new();
    let mut cases = table(vec![
        "scenario",
        "fault",
        "target",
        "rank",
        "top hypothesis",
        "detect (s)",
        "first alert (s)",
        "loudest",
        "AM group",
    ]);
    let r_ = |v: Option<usize>| v.map_or("miss".into(), |x| x.to_string());
    let s_ = |v: Option<i64>| v.map_or("–".into(), |x| x.to_string());
    for c in &r.per_case {
        cases.add_row(vec![
            c.scenario.clone(),
            c.fault.clone(),
            c.target.clone(),
            r_(c.rank),
            c.top.clone().unwrap_or_else(|| "–".into()),
            s_(c.detection_seconds),
            s_(c.first_alert_seconds),
            r_(c.loudest_rank),
            r_(c.alertmanager_rank),
        ]);
    }
    let _ = writeln!(out, "{cases}\n");
    let mut sc = table(vec![
        "scenario",
        "faults",
        "alerts",
        "incidents",
        "false incidents",
        "AM groups",
    ]);
    for s in &r.scenarios {
        sc.add_row(vec![
            s.scenario.clone(),
            s.faults.to_string(),
            s.alerts.to_string(),
            s.incidents.to_string(),
            s.false_incidents.to_string(),
            s.alertmanager_groups.to_string(),
        ]);
    }
    let _ = writeln!(out, "{sc}\n");
    let mut t = table(vec![
        "method",
        "AC@1",
        "AC@3",
        "Avg@5",
        "detected",
        "MTTD median (s)",
        "incidents",
        "false",
        "compression",
    ]);

    for (name, f) in [
        ("nightshift", &r.figures),
        (
            "loudest service (most alerts)",
            &r.baselines.loudest_service,
        ),
        (
            "alertmanager group_by [alertname, service]",
            &r.baselines.alertmanager_grouping,
        ),
    ] {
        let none = f.incidents == 0;
        t.add_row(vec![
            name.to_string(),
            ratio(f.ac_at_1),
            ratio(f.ac_at_3),
            ratio(f.avg_at_5),
            format!("{}/{}", f.detected, f.cases),
            opt(f.mttd_seconds_median, 0),
            if none {
                "–".into()
            } else {
                f.incidents.to_string()
            },
            if none {
                "–".into()
            } else {
                f.false_incidents.to_string()
            },
            opt(f.compression, 1),
        ]);
    }
    let _ = writeln!(out, "{t}");
    let _ = writeln!(
        out,
        "{} alerts fired in all; Nightshift opened its incident before the first static alert in {:.0}% of detected faults.",
        r.alerts,
        r.earlier_than_first_alert * 100.0
    );
    let pct = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.0}%", v * 100.0));
    let _ = writeln!(
        out,
        "Grouping of the {} alerts that faults caused: purity {} (an incident holds one fault's alerts), completeness {} (a fault's alerts are in one incident).",
        r.grouping.alerts,
        pct(r.grouping.purity),
        pct(r.grouping.completeness)
    );
    if r.grouping.ambiguous > 0 {
        let _ = writeln!(
            out,
            "{} more alerts were equally near two concurrent faults (a caller of both) and are left out of these two figures.",
            r.grouping.ambiguous
        );
    }
    if let Some(inv) = &r.investigator {
        out.push('\n');
        out.push_str(&investigator(inv));
    }
    out
}

/// `eval rca --llm`: each investigated incident, then accuracy with and without the LLM.
fn investigator(r: &crate::eval::InvestigatorReport) -> String {
    let mut out = String::new();
    let mut t = table(vec![
        "scenario",
        "target",
        "incident",
        "deterministic",
        "investigated",
        "accepted",
        "LLM calls",
        "tools",
        "tokens",
        "seconds",
    ]);
    for c in &r.per_case {
        t.add_row(vec![
            c.scenario.clone(),
            c.target.clone(),
            c.incident.clone(),
            c.deterministic.clone(),
            c.investigated.clone(),
            if c.accepted {
                "yes".into()
            } else {
                "no".into()
            },
            c.llm_calls.to_string(),
            c.tool_calls.to_string(),
            c.tokens.to_string(),
            format!("{:.1}", c.seconds),
        ]);
    }
    let _ = writeln!(out, "{t}\n");
    let _ = writeln!(
        out,
        "Investigator ({}): AC@1 {} with it, {} without, over {} faults; {} of {} conclusions accepted; {:.0} tokens and {:.1} s per incident (median {} s).",
        r.model,
        ratio(r.investigated_ac_at_1),
        ratio(r.deterministic_ac_at_1),
        r.faults,
        r.accepted,
        r.investigated,
        r.tokens_per_incident,
        r.seconds_per_incident,
        opt(r.seconds_per_incident_median, 1),
    );
    out
}
