//! Terminal rendering of incidents and evaluation reports.

use nightshift_core::{Incident, Millis, format_duration};
pub use nightshift_eval::text::table;
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
