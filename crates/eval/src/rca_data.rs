//! Recorded root-cause cases read from files: `nightshift rca` ranks one, `nightshift eval
//! rca-data` ranks every case of a folder and scores the ranking against its ground truth.
//!
//! Two layouts: the wide CSV of the RCA literature (RCAEval, RCD: a `time` column in Unix
//! seconds and one `<service>_<metric>` column per series), and PetShop's (four header rows:
//! `microservice`, `metric`, `statistic`, `unix_timestamp`). The ranking itself is
//! `nightshift_diagnose::recorded`, the one that ranks live incidents.

use crate::EvalError;
use crate::error::{Context, bail, data_error};
use crate::series_csv::{CsvRows, parse_timestamp, read_csv_rows};
use crate::text::table;
use nightshift_core::{Hypothesis, Millis};
use nightshift_diagnose::recorded::{RecordedCase, RecordedSeries, correlation, rank_case};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A table of series: row times and one column per (service, metric).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub times: Vec<Millis>,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub service: String,
    pub metric: String,
    pub values: Vec<f64>,
}

fn parse_value(cell: &str) -> f64 {
    cell.trim().parse().unwrap_or(f64::NAN)
}

/// A row's time cell, or an error naming the file and line.
fn row_time(path: &Path, line: usize, cell: &str) -> Result<Millis, EvalError> {
    parse_timestamp(cell).map_err(|_| {
        data_error!(
            "{}: line {line}: time {cell:?} is not a Unix time in seconds",
            path.display()
        )
    })
}

/// Splits a wide-CSV column name into service and metric: the longest of `services` that the
/// name starts with (then `_`), else the text before the first `_`.
fn split_column(name: &str, services: &[String]) -> (String, String) {
    if let Some(s) = services
        .iter()
        .filter(|s| {
            name.len() > s.len() + 1
                && name.starts_with(s.as_str())
                && name.as_bytes()[s.len()] == b'_'
        })
        .max_by_key(|s| s.len())
    {
        return (s.clone(), name[s.len() + 1..].to_string());
    }
    match name.split_once('_') {
        Some((s, m)) if !s.is_empty() && !m.is_empty() => (s.to_string(), m.to_string()),
        _ => (name.to_string(), "value".to_string()),
    }
}

/// A wide CSV (`time`, then `<service>_<metric>` columns); `services` are names known to hold
/// `_` themselves.
fn wide_table(path: &Path, csv: CsvRows, services: &[String]) -> Result<Table, EvalError> {
    let time_col = csv
        .header
        .iter()
        .position(|h| {
            let h = h.to_ascii_lowercase();
            h == "time" || h == "timestamp"
        })
        .unwrap_or(0);
    let mut table = Table::default();
    let mut index = Vec::new();
    for (i, h) in csv.header.iter().enumerate() {
        if i == time_col || h.is_empty() {
            continue;
        }
        let (service, metric) = split_column(h, services);
        index.push(i);
        table.columns.push(Column {
            service,
            metric,
            values: Vec::new(),
        });
    }
    for (line, row) in &csv.rows {
        table
            .times
            .push(row_time(path, *line, row.get(time_col).unwrap_or(""))?);
        for (c, i) in table.columns.iter_mut().zip(&index) {
            c.values.push(row.get(*i).map_or(f64::NAN, parse_value));
        }
    }
    Ok(table)
}

/// A PetShop `metrics.csv`: rows `microservice`, `metric`, `statistic` and `unix_timestamp` head
/// the columns; then one row per time.
fn petshop_table(path: &Path, csv: CsvRows) -> Result<Table, EvalError> {
    let head = csv.rows.get(..3).unwrap_or(&[]);
    for (i, want) in ["metric", "statistic", "unix_timestamp"].iter().enumerate() {
        if head.get(i).and_then(|(_, r)| r.get(0)) != Some(*want) {
            bail!(
                "{}: line {}: expected the {want} header row (PetShop layout)",
                path.display(),
                i + 2
            );
        }
    }
    let mut table = Table::default();
    for i in 1..csv.header.len() {
        let cell = |r: usize| head[r].1.get(i).unwrap_or("").to_string();
        table.columns.push(Column {
            service: csv.header[i].clone(),
            metric: format!("{}_{}", cell(0), cell(1)),
            values: Vec::new(),
        });
    }
    for (line, row) in &csv.rows[3..] {
        table
            .times
            .push(row_time(path, *line, row.get(0).unwrap_or(""))?);
        for (i, c) in table.columns.iter_mut().enumerate() {
            c.values.push(row.get(i + 1).map_or(f64::NAN, parse_value));
        }
    }
    Ok(table)
}

/// Reads a metrics file in either layout (PetShop's is told by its first cell).
pub fn read_table(path: &Path, services: &[String]) -> Result<Table, EvalError> {
    let csv = read_csv_rows(path)?;
    if csv.header.first().is_some_and(|h| h == "microservice") {
        petshop_table(path, csv)
    } else {
        wide_table(path, csv, services)
    }
}

/// Reads a call graph: an adjacency matrix (a header row of names after an empty cell, then one
/// row per caller with non-zero cells for its callees, as PetShop's `graph.csv`), or an edge
/// list of `caller,callee` lines.
pub fn read_graph(path: &Path) -> Result<Vec<(String, String)>, EvalError> {
    let csv = read_csv_rows(path)?;
    let mut calls = Vec::new();
    if csv.header.first().is_some_and(String::is_empty) && csv.header.len() > 2 {
        for (_, row) in &csv.rows {
            let caller = row.get(0).unwrap_or("");
            for (callee, cell) in csv.header.iter().skip(1).zip(row.iter().skip(1)) {
                let v = parse_value(cell);
                if v != 0.0 && !v.is_nan() {
                    calls.push((caller.to_string(), callee.clone()));
                }
            }
        }
    } else {
        // An edge list; its first line is an edge too unless it names the columns.
        let first = (1, csv::StringRecord::from(csv.header.clone()));
        for (line, row) in std::iter::once(&first).chain(&csv.rows) {
            let (Some(a), Some(b)) = (row.get(0), row.get(1)) else {
                bail!("{}: line {line}: expected caller,callee", path.display());
            };
            let header_like = *line == 1
                && ["caller", "source", "from", "client"]
                    .contains(&a.to_ascii_lowercase().as_str());
            if !header_like && !a.is_empty() && !b.is_empty() {
                calls.push((a.to_string(), b.to_string()));
            }
        }
    }
    Ok(calls)
}

/// The usual spacing of a table's rows (the median gap), 0 for fewer than two rows.
fn row_step(times: &[Millis]) -> Millis {
    let mut gaps: Vec<Millis> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0)
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(0)
}

/// A recorded case from a table: rows that end before `start` (and the same series of
/// `normal`, a separate recording of normal operation) are normal; the rest follow the fault.
/// A row stands for the interval from its time to the next row's (CloudWatch and Prometheus
/// range queries label an interval by its start), so the row whose interval holds the fault
/// start already shows the fault.
pub fn case_from(
    table: &Table,
    start: Millis,
    normal: Option<&Table>,
    calls: Vec<(String, String)>,
) -> RecordedCase {
    let extra: BTreeMap<(&str, &str), &Column> = normal
        .map(|n| {
            n.columns
                .iter()
                .map(|c| ((c.service.as_str(), c.metric.as_str()), c))
                .collect()
        })
        .unwrap_or_default();
    let step = row_step(&table.times);
    let series = table
        .columns
        .iter()
        .filter(|c| !c.service.is_empty())
        .map(|c| {
            let mut s = RecordedSeries {
                service: c.service.clone(),
                metric: c.metric.clone(),
                normal: Vec::new(),
                reference: Vec::new(),
                after: Vec::new(),
            };
            for (t, v) in table.times.iter().zip(&c.values) {
                if t + step <= start {
                    s.normal.push(*v);
                } else {
                    s.after.push((*t, *v));
                }
            }
            if let Some(n) = extra.get(&(c.service.as_str(), c.metric.as_str())) {
                s.reference.extend(&n.values);
            }
            s
        })
        .collect();
    RecordedCase {
        series,
        anomaly_start: start,
        calls,
        target: None,
        changes: Vec::new(),
    }
}

/// `nightshift rca`: ranks one recorded case.
pub fn rca(
    metrics: &Path,
    start: Millis,
    graph: Option<&Path>,
    normal: Option<&Path>,
) -> Result<Vec<Hypothesis>, EvalError> {
    let calls = graph.map(read_graph).transpose()?.unwrap_or_default();
    let mut known: Vec<String> = calls
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    known.sort();
    known.dedup();
    let table = read_table(metrics, &known)?;
    if !table.times.iter().any(|t| *t >= start) {
        bail!(
            "{}: no row at or after the anomaly start {}; pass --anomaly-start in Unix seconds within the file",
            metrics.display(),
            start / 1000
        );
    }
    let normal = normal.map(|n| read_table(n, &known)).transpose()?;
    Ok(rank_case(&case_from(&table, start, normal.as_ref(), calls)))
}

pub fn render_ranking(hyps: &[Hypothesis]) -> String {
    let mut t = table(vec!["rank", "service", "score", "evidence"]);
    for h in hyps {
        let evidence = h
            .evidence
            .iter()
            .take(3)
            .map(|e| e.summary.clone())
            .collect::<Vec<_>>()
            .join("; ");
        t.add_row(vec![
            h.rank.to_string(),
            h.entity.name.clone(),
            format!("{:.3}", h.score),
            evidence,
        ]);
    }
    format!("{t}\n")
}

/// Top-k accuracy figures over a set of cases (RCAEval's definitions).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Accuracy {
    pub cases: usize,
    pub ac_at_1: f64,
    pub ac_at_3: f64,
    pub ac_at_5: f64,
    pub avg_at_5: f64,
}

impl Accuracy {
    /// From the 1-based rank of the true root cause in each case (`None`: not ranked).
    pub fn of(ranks: &[Option<usize>]) -> Self {
        let n = ranks.len();
        let ac = |k: usize| {
            if n == 0 {
                0.0
            } else {
                ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n as f64
            }
        };
        Self {
            cases: n,
            ac_at_1: ac(1),
            ac_at_3: ac(3),
            ac_at_5: ac(5),
            avg_at_5: (1..=5).map(ac).sum::<f64>() / 5.0,
        }
    }
}

/// One scored case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: String,
    /// The fault type (RCAEval's case name) or the traffic regime (PetShop).
    pub group: String,
    pub root_cause: String,
    /// Rank of the true root cause (1 = first), if ranked at all.
    pub rank: Option<usize>,
    pub top: Vec<String>,
    /// Rank of the true root cause under the reference method, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_rank: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub format: String,
    #[serde(flatten)]
    pub overall: Accuracy,
    /// By fault type (RCAEval) or traffic regime (PetShop).
    pub per_fault: BTreeMap<String, Accuracy>,
    /// The reference method in the same run (PetShop: services ranked by their strongest
    /// correlation with the target KPI), overall and per group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    pub ms_per_case: f64,
    pub results: Vec<CaseResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub method: String,
    #[serde(flatten)]
    pub overall: Accuracy,
    pub per_fault: BTreeMap<String, Accuracy>,
}

fn rank_of(hyps: &[Hypothesis], truth: &str) -> Option<usize> {
    hyps.iter()
        .position(|h| h.entity.name == truth)
        .map(|p| p + 1)
}

/// A case found on disk, ready to rank.
struct FoundCase {
    name: String,
    group: String,
    root_cause: String,
    case: RecordedCase,
    /// (service, metric) of the KPI the issue was noticed on, when the data names it.
    target: Option<(String, String)>,
    table: Table,
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// PetShop: `<regime>/{train,test}/issue_<k>/{metrics.csv,target.json}`, the regime's
/// `graph.csv` and, where present, `noissue/metrics.csv` (normal operation).
fn petshop_cases(dir: &Path) -> Result<Vec<FoundCase>, EvalError> {
    let mut out = Vec::new();
    for regime in subdirs(dir)? {
        let graph = regime.join("graph.csv");
        if !graph.exists() {
            continue;
        }
        let calls = read_graph(&graph)?;
        let noissue = regime.join("noissue/metrics.csv");
        let normal = noissue
            .exists()
            .then(|| read_table(&noissue, &[]))
            .transpose()?;
        for split in ["train", "test"] {
            let split_dir = regime.join(split);
            if !split_dir.is_dir() {
                continue;
            }
            for issue in subdirs(&split_dir)? {
                let (metrics, target) = (issue.join("metrics.csv"), issue.join("target.json"));
                if !metrics.exists() || !target.exists() {
                    continue;
                }
                let t: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(&target)
                        .with_context(|| format!("cannot read {}", target.display()))?,
                )
                .with_context(|| format!("{}: not JSON", target.display()))?;
                let root = t["root_cause"]["node"]
                    .as_str()
                    .with_context(|| format!("{}: no root_cause.node", target.display()))?;
                let ts = t["target"]["timestamp"]
                    .as_f64()
                    .with_context(|| format!("{}: no target.timestamp", target.display()))?;
                let kpi = (
                    t["target"]["node"].as_str().unwrap_or("").to_string(),
                    format!(
                        "{}_{}",
                        t["target"]["metric"].as_str().unwrap_or(""),
                        t["target"]["agg"].as_str().unwrap_or("")
                    ),
                );
                let table = read_table(&metrics, &[])?;
                let mut case = case_from(
                    &table,
                    (ts * 1000.0) as Millis,
                    normal.as_ref(),
                    calls.clone(),
                );
                case.target = Some(kpi.clone());
                out.push(FoundCase {
                    name: format!("{}/{split}/{}", name_of(&regime), name_of(&issue)),
                    group: name_of(&regime),
                    root_cause: root.to_string(),
                    case,
                    target: Some(kpi),
                    table,
                });
            }
        }
    }
    Ok(out)
}

/// The service and fault of an RCAEval case folder: `<service>_<fault>` or
/// `<service>-<fault>`, the fault being the last token.
pub fn split_case_name(name: &str) -> Option<(String, String)> {
    let at = name.rfind(['_', '-'])?;
    let (service, fault) = (&name[..at], &name[at + 1..]);
    (!service.is_empty() && !fault.is_empty()).then(|| (service.to_string(), fault.to_string()))
}

/// RCAEval: `<case>/<run>/data.csv` with `inject_time.txt`, or `<case>/<run>/{normal,
/// anomalous}.csv`.
fn rcaeval_cases(dir: &Path) -> Result<Vec<FoundCase>, EvalError> {
    let mut out = Vec::new();
    for case_dir in subdirs(dir)? {
        let Some((service, fault)) = split_case_name(&name_of(&case_dir)) else {
            continue;
        };
        let known = vec![service.clone()];
        for run in subdirs(&case_dir)? {
            let data = run.join("data.csv");
            let inject = run.join("inject_time.txt");
            let (normal, anomalous) = (run.join("normal.csv"), run.join("anomalous.csv"));
            let (table, start, normal) = if data.exists() && inject.exists() {
                let text = std::fs::read_to_string(&inject)
                    .with_context(|| format!("cannot read {}", inject.display()))?;
                let start = parse_timestamp(&text)
                    .with_context(|| format!("{}: not a Unix time", inject.display()))?;
                (read_table(&data, &known)?, start, None)
            } else if normal.exists() && anomalous.exists() {
                let table = read_table(&anomalous, &known)?;
                let Some(&start) = table.times.first() else {
                    continue;
                };
                (table, start, Some(read_table(&normal, &known)?))
            } else {
                continue;
            };
            let case = case_from(&table, start, normal.as_ref(), Vec::new());
            out.push(FoundCase {
                name: format!("{}/{}", name_of(&case_dir), name_of(&run)),
                group: fault.clone(),
                root_cause: service.clone(),
                case,
                target: None,
                table,
            });
        }
    }
    Ok(out)
}

/// The reference ranking: services by the strongest |correlation| of any of their series
/// with the target KPI over the case's rows (the target's own service last: it is where the
/// issue showed, and ranks first trivially).
fn correlation_ranking(table: &Table, target: &(String, String)) -> Vec<String> {
    let Some(kpi) = table
        .columns
        .iter()
        .find(|c| c.service == target.0 && c.metric == target.1)
    else {
        return Vec::new();
    };
    let mut best: BTreeMap<&str, f64> = BTreeMap::new();
    for c in &table.columns {
        if c.service.is_empty() || c.service == target.0 {
            continue;
        }
        let r = correlation(&c.values, &kpi.values).abs();
        let e = best.entry(&c.service).or_insert(0.0);
        *e = e.max(r);
    }
    let mut ranked: Vec<(&str, f64)> = best.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    ranked
        .into_iter()
        .map(|(s, _)| s.to_string())
        .chain(std::iter::once(target.0.clone()))
        .collect()
}

/// `nightshift eval rca-data`: every case under `dir` in `format` (`rcaeval` or `petshop`).
pub fn evaluate(format: &str, dir: &Path, quiet: bool) -> Result<EvalReport, EvalError> {
    let cases = match format {
        "petshop" => petshop_cases(dir)?,
        "rcaeval" => rcaeval_cases(dir)?,
        other => bail!("unknown format {other:?}: use rcaeval or petshop"),
    };
    if cases.is_empty() {
        bail!(
            "{}: no {format} cases found (see `nightshift eval rca-data --help` for the layouts)",
            dir.display()
        );
    }
    let bar = crate::text::progress_bar(cases.len() as u64, "cases", quiet);
    let mut results = Vec::new();
    let mut ranking = std::time::Duration::ZERO;
    for c in &cases {
        let started = std::time::Instant::now();
        let hyps = rank_case(&c.case);
        ranking += started.elapsed();
        let reference_rank = c.target.as_ref().map(|t| {
            correlation_ranking(&c.table, t)
                .iter()
                .position(|s| *s == c.root_cause)
                .map(|p| p + 1)
        });
        results.push(CaseResult {
            case: c.name.clone(),
            group: c.group.clone(),
            root_cause: c.root_cause.clone(),
            rank: rank_of(&hyps, &c.root_cause),
            top: hyps.iter().take(5).map(|h| h.entity.name.clone()).collect(),
            reference_rank: reference_rank.flatten(),
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let groups: std::collections::BTreeSet<&str> =
        results.iter().map(|r| r.group.as_str()).collect();
    let by_group = |f: &dyn Fn(&CaseResult) -> Option<usize>| -> BTreeMap<String, Accuracy> {
        groups
            .iter()
            .map(|g| {
                let ranks: Vec<Option<usize>> =
                    results.iter().filter(|r| r.group == *g).map(f).collect();
                (g.to_string(), Accuracy::of(&ranks))
            })
            .collect()
    };
    let reference = cases.iter().any(|c| c.target.is_some()).then(|| Reference {
        method: "services by strongest |correlation| with the target KPI".into(),
        overall: Accuracy::of(&results.iter().map(|r| r.reference_rank).collect::<Vec<_>>()),
        per_fault: by_group(&|r| r.reference_rank),
    });
    Ok(EvalReport {
        format: format.to_string(),
        overall: Accuracy::of(&results.iter().map(|r| r.rank).collect::<Vec<_>>()),
        per_fault: by_group(&|r| r.rank),
        reference,
        ms_per_case: ranking.as_secs_f64() * 1000.0 / results.len() as f64,
        results,
    })
}

pub fn render_eval(r: &EvalReport) -> String {
    let mut t = table(vec![
        "group",
        "cases",
        "AC@1",
        "AC@3",
        "Avg@5",
        "reference AC@3",
    ]);
    let row = |name: &str, a: &Accuracy, reference: Option<&Accuracy>| {
        vec![
            name.to_string(),
            a.cases.to_string(),
            format!("{:.2}", a.ac_at_1),
            format!("{:.2}", a.ac_at_3),
            format!("{:.2}", a.avg_at_5),
            reference.map_or("-".into(), |x| format!("{:.2}", x.ac_at_3)),
        ]
    };
    for (g, a) in &r.per_fault {
        t.add_row(row(
            g,
            a,
            r.reference.as_ref().and_then(|x| x.per_fault.get(g)),
        ));
    }
    t.add_row(row(
        "all",
        &r.overall,
        r.reference.as_ref().map(|x| &x.overall),
    ));
    let mut out = format!("{t}\n");
    if let Some(x) = &r.reference {
        out.push_str(&format!("reference: {}\n", x.method));
    }
    out.push_str(&format!("{:.2} ms a case\n", r.ms_per_case));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_split_at_the_last_separator() {
        assert_eq!(
            split_case_name("carts-db_cpu"),
            Some(("carts-db".into(), "cpu".into()))
        );
        assert_eq!(
            split_case_name("front-end-delay"),
            Some(("front-end".into(), "delay".into()))
        );
        assert_eq!(split_case_name("README"), None);
    }

    #[test]
    fn columns_split_by_known_services_first() {
        let known = vec!["carts_db".to_string()];
        assert_eq!(
            split_column("carts_db_cpu", &known),
            ("carts_db".into(), "cpu".into())
        );
        assert_eq!(
            split_column("front-end_lat_90", &known),
            ("front-end".into(), "lat_90".into())
        );
        assert_eq!(
            split_column("lonely", &known),
            ("lonely".into(), "value".into())
        );
    }

    #[test]
    fn accuracy_follows_rcaeval() {
        let a = Accuracy::of(&[Some(1), Some(2), Some(4), None]);
        assert_eq!(a.ac_at_1, 0.25);
        assert_eq!(a.ac_at_3, 0.5);
        assert!((a.avg_at_5 - (0.25 + 0.5 + 0.5 + 0.75 + 0.75) / 5.0).abs() < 1e-12);
    }
}
