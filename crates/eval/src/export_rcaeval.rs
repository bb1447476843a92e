//! `nightshift demo --export-rcaeval DIR`: simulated scenarios written in RCAEval's layout
//! (`<service>_<fault>/<run>/data.csv` with `inject_time.txt`), so that `eval rca-data
//! --format rcaeval` runs the same harness on simulated and recorded cases.
//!
//! A case's columns are the golden signals Nightshift derives for each service (the derived
//! series of `docs/signals.md`), one row per scrape interval, from an hour before the scenario
//! starts to its end.

use crate::EvalError;
use crate::error::Context;
use nightshift_core::{EntityKind, Millis};
use nightshift_signals::SignalDeriver;
use nightshift_sim::{Scenario, Simulation};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// History written before the scenario start: the normal rows of the case.
const HISTORY_MS: Millis = 60 * 60_000;

/// What was written.
#[derive(Debug, Default)]
pub struct Exported {
    pub cases: usize,
    /// Scenarios left out: several faults, or a fault on a node (the layout names services).
    pub skipped: Vec<String>,
}

/// The column name of a derived series of a service: `<service>_<metric>`, the metric without
/// its `service:` level and with `:` as `_` (`service:latency_p99:5m` → `latency_p99_5m`).
fn column(service: &str, metric: &str) -> String {
    let m = metric.strip_prefix("service:").unwrap_or(metric);
    format!("{service}_{}", m.replace(':', "_"))
}

/// Writes one scenario as one case run; `None` when the scenario does not fit the layout.
fn export_one(scenario: &Scenario, dir: &Path) -> Result<Option<()>, EvalError> {
    let [fault] = scenario.faults() else {
        return Ok(None);
    };
    if fault.kind.targets_node() {
        return Ok(None);
    }
    let mut sim = Simulation::new(scenario);
    let series = sim.series().to_vec();
    let mut deriver = SignalDeriver::new();
    let from = scenario.start_ms() - HISTORY_MS;
    let mut rows: BTreeMap<Millis, BTreeMap<String, f64>> = BTreeMap::new();
    for tick in sim.by_ref() {
        for (idx, v) in &tick.samples {
            if let Some(key) = series.get(*idx as usize) {
                deriver.ingest_sample(key, tick.ts, *v);
            }
        }
        for s in &tick.spans {
            deriver.ingest_span(s);
        }
        for l in &tick.logs {
            deriver.ingest_log(l);
        }
        let signals = deriver.flush(tick.ts);
        if tick.ts < from {
            continue;
        }
        let row = rows.entry(tick.ts).or_default();
        // A service's own series only: call edges are pairs, nodes are not services.
        for s in signals
            .iter()
            .filter(|s| s.entity.kind == EntityKind::Service && s.key.labels.len() <= 1)
        {
            row.insert(column(&s.entity.name, &s.key.metric), s.value);
        }
    }
    let columns: std::collections::BTreeSet<&String> =
        rows.values().flat_map(|r| r.keys()).collect();
    let mut csv = String::from("time");
    for c in &columns {
        csv.push(',');
        csv.push_str(c);
    }
    csv.push('\n');
    for (ts, row) in &rows {
        write!(csv, "{}", ts / 1000).expect("writing to a string");
        for c in &columns {
            match row.get(*c) {
                Some(v) if v.is_finite() => write!(csv, ",{v}").expect("writing to a string"),
                _ => csv.push(','),
            }
        }
        csv.push('\n');
    }
    // The fault is the case name's last token, so it carries no separator of its own.
    let fault_name = fault.kind.as_str().replace(['_', '-'], "");
    let run = dir
        .join(format!("{}_{fault_name}", fault.target))
        .join(scenario.name());
    std::fs::create_dir_all(&run).with_context(|| format!("cannot create {}", run.display()))?;
    std::fs::write(run.join("data.csv"), csv)
        .with_context(|| format!("cannot write {}", run.join("data.csv").display()))?;
    std::fs::write(
        run.join("inject_time.txt"),
        format!("{}\n", (scenario.start_ms() + fault.at_ms) / 1000),
    )
    .with_context(|| format!("cannot write {}", run.join("inject_time.txt").display()))?;
    Ok(Some(()))
}

/// Writes every scenario that fits the layout under `dir`.
pub fn export(
    scenarios: &[Scenario],
    dir: &Path,
    bar: &indicatif::ProgressBar,
) -> Result<Exported, EvalError> {
    let mut out = Exported::default();
    for s in scenarios {
        bar.set_message(s.name().to_string());
        match export_one(s, dir)? {
            Some(()) => out.cases += 1,
            None => out.skipped.push(s.name().to_string()),
        }
        bar.inc(s.total_ticks() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}
