//! Text for a terminal: the report tables of `eval rca` and the helpers every harness's
//! tables and progress bars share.

use crate::rca_sim::{InvestigatorReport, Report};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt::Write;
use std::io::IsTerminal;

/// A table with Nightshift's border style and this header.
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

/// Renders an `eval rca` report: per case, per scenario, then Nightshift beside the baselines.
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
fn investigator(r: &InvestigatorReport) -> String {
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

/// A progress bar on stderr counting `unit`s, hidden when `quiet` or stderr is no terminal.
pub fn progress_bar(len: u64, unit: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = format!(
        "{{spinner}} {{msg:32}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
    );
    bar.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}
