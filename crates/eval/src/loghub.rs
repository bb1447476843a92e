//! `nightshift eval logs --data DIR`: the template miner scored on Loghub's labelled samples
//! (`<System>/<System>_2k.log_structured.csv`, and `corrected/` where present) with one
//! configuration for every system, as the published benchmarks score parsers.
//!
//! - **GA** (grouping accuracy): a line is right when the lines sharing its template are exactly
//!   the lines sharing its true event.
//! - **PA** (parsing accuracy): a line is right when its template's text equals its true
//!   template.
//! - **F1**: pairwise precision and recall over the pairs of lines grouped together.

use crate::EvalError;
use crate::error::{Context, bail, data_error};
use crate::series_csv::{CsvRows, read_csv_rows};
use crate::text::table;
use nightshift_logs::{MinerConfig, TemplateMiner};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

/// One system's scores.
#[derive(Debug, Serialize)]
pub struct SystemScore {
    pub ga: f64,
    pub pa: f64,
    pub f1: f64,
    pub lines_per_s: f64,
    pub lines: usize,
    pub templates: usize,
    pub true_events: usize,
    /// The same against the corrected ground truth (Khan et al., ICSE 2022), where present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrected: Option<Box<SystemScore>>,
}

#[derive(Debug, Serialize)]
pub struct LogsReport {
    pub systems: BTreeMap<String, SystemScore>,
    pub mean_ga: f64,
    pub mean_pa: f64,
    pub mean_f1: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ga_corrected: Option<f64>,
    /// With `--raw`: GA on the raw lines, headers cut automatically (`logline::strip_header`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawScores>,
}

#[derive(Debug, Serialize)]
pub struct RawScores {
    pub systems: BTreeMap<String, f64>,
    pub mean_ga: f64,
}

/// The lines of a structured ground truth: (content, event id, event template).
fn read_truth(path: &Path) -> Result<Vec<(String, String, String)>, EvalError> {
    let CsvRows { header, rows } = read_csv_rows(path)?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| data_error!("{}:1: no `{name}` column", path.display()))
    };
    let (content, event, template) = (col("Content")?, col("EventId")?, col("EventTemplate")?);
    rows.iter()
        .map(|(line, r)| {
            let get = |i: usize| {
                r.get(i)
                    .map(str::to_string)
                    .ok_or_else(|| data_error!("{}:{line}: missing a field", path.display()))
            };
            Ok((get(content)?, get(event)?, get(template)?))
        })
        .collect()
}

fn normalise(template: &str) -> String {
    template.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Scores `predicted` template ids (and their texts) against the truth.
fn score(
    predicted: &[u64],
    texts: &[String],
    truth: &[(String, String, String)],
    seconds: f64,
) -> SystemScore {
    let n = truth.len();
    let mut by_pred: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut by_true: HashMap<&str, usize> = HashMap::new();
    for (i, p) in predicted.iter().enumerate() {
        by_pred.entry(*p).or_default().push(i);
        *by_true.entry(truth[i].1.as_str()).or_default() += 1;
    }
    let mut correct = 0usize;
    let mut pairs_same_both = 0f64;
    for lines in by_pred.values() {
        let mut events: HashMap<&str, usize> = HashMap::new();
        for &i in lines {
            *events.entry(truth[i].1.as_str()).or_default() += 1;
        }
        if events.len() == 1
            && events
                .keys()
                .next()
                .is_some_and(|e| by_true[e] == lines.len())
        {
            correct += lines.len();
        }
        pairs_same_both += events
            .values()
            .map(|&c| (c * c.saturating_sub(1)) as f64 / 2.0)
            .sum::<f64>();
    }
    let pairs = |sizes: &mut dyn Iterator<Item = usize>| {
        sizes
            .map(|c| (c * c.saturating_sub(1)) as f64 / 2.0)
            .sum::<f64>()
    };
    let pred_pairs = pairs(&mut by_pred.values().map(Vec::len));
    let true_pairs = pairs(&mut by_true.values().copied());
    let precision = if pred_pairs > 0.0 {
        pairs_same_both / pred_pairs
    } else {
        1.0
    };
    let recall = if true_pairs > 0.0 {
        pairs_same_both / true_pairs
    } else {
        1.0
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    let pa = texts
        .iter()
        .zip(truth)
        .filter(|(t, (_, _, truth_t))| normalise(t) == normalise(truth_t))
        .count();
    SystemScore {
        ga: correct as f64 / n.max(1) as f64,
        pa: pa as f64 / n.max(1) as f64,
        f1,
        lines_per_s: n as f64 / seconds.max(1e-9),
        lines: n,
        templates: by_pred.len(),
        true_events: by_true.len(),
        corrected: None,
    }
}

/// Mines the contents of `truth` with the default configuration and scores the result.
fn evaluate(truth: &[(String, String, String)]) -> SystemScore {
    let contents: Vec<&str> = truth.iter().map(|(c, _, _)| c.as_str()).collect();
    evaluate_lines(&contents, truth)
}

/// Mines `lines` (one per truth row) and scores the result against `truth`.
fn evaluate_lines(lines: &[&str], truth: &[(String, String, String)]) -> SystemScore {
    let mut miner = TemplateMiner::new(MinerConfig::default());
    let started = Instant::now();
    let ids: Vec<u64> = lines.iter().map(|c| miner.add(c).template_id).collect();
    let seconds = started.elapsed().as_secs_f64();
    // Templates as they stand after the whole file, as the benchmarks compare them.
    let texts: Vec<String> = ids
        .iter()
        .map(|id| miner.template(*id).map(|t| t.text()).unwrap_or_default())
        .collect();
    score(&ids, &texts, truth, seconds)
}

/// GA on a system's raw `.log`, one line per truth row, headers cut automatically.
fn raw_ga(log: &Path, truth: &[(String, String, String)]) -> Result<f64, EvalError> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let lines: Vec<&str> = text
        .lines()
        .map(|l| nightshift_ingest::logline::strip_header(l.trim_end_matches('\r')))
        .collect();
    if lines.len() != truth.len() {
        bail!(
            "{}: {} lines, but the ground truth has {} rows",
            log.display(),
            lines.len(),
            truth.len()
        );
    }
    Ok(evaluate_lines(&lines, truth).ga)
}

/// Every `<System>/<System>_2k.log_structured.csv` under `dir`; with `raw`, also GA on the raw
/// `<System>_2k.log`.
pub fn run(dir: &Path, raw: bool) -> Result<LogsReport, EvalError> {
    let mut raw_scores = BTreeMap::new();
    let mut systems = BTreeMap::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        let file = dir
            .join(&name)
            .join(format!("{name}_2k.log_structured.csv"));
        if !file.exists() {
            continue;
        }
        let truth = read_truth(&file)?;
        let mut s = evaluate(&truth);
        if raw {
            let log = dir.join(&name).join(format!("{name}_2k.log"));
            raw_scores.insert(name.clone(), raw_ga(&log, &truth)?);
        }
        let corrected = dir
            .join(&name)
            .join("corrected")
            .join(format!("{name}_2k.log_structured_corrected.csv"));
        if corrected.exists() {
            s.corrected = Some(Box::new(evaluate(&read_truth(&corrected)?)));
        }
        systems.insert(name, s);
    }
    if systems.is_empty() {
        bail!(
            "{}: no <System>/<System>_2k.log_structured.csv files (Loghub's 2k samples)",
            dir.display()
        );
    }
    let mean = |f: &dyn Fn(&SystemScore) -> f64| {
        systems.values().map(f).sum::<f64>() / systems.len() as f64
    };
    let corrected: Vec<f64> = systems
        .values()
        .filter_map(|s| s.corrected.as_ref().map(|c| c.ga))
        .collect();
    Ok(LogsReport {
        mean_ga: mean(&|s| s.ga),
        mean_pa: mean(&|s| s.pa),
        mean_f1: mean(&|s| s.f1),
        mean_ga_corrected: (!corrected.is_empty())
            .then(|| corrected.iter().sum::<f64>() / corrected.len() as f64),
        systems,
        raw: raw.then(|| RawScores {
            mean_ga: raw_scores.values().sum::<f64>() / raw_scores.len().max(1) as f64,
            systems: raw_scores,
        }),
    })
}

/// The report as a table.
pub fn render(r: &LogsReport) -> String {
    let mut t = table(vec![
        "system",
        "GA",
        "PA",
        "F1",
        "GA corrected",
        "templates / true",
        "lines/s",
    ]);
    for (name, s) in &r.systems {
        t.add_row(vec![
            name.clone(),
            format!("{:.3}", s.ga),
            format!("{:.3}", s.pa),
            format!("{:.3}", s.f1),
            s.corrected
                .as_ref()
                .map_or("–".into(), |c| format!("{:.3}", c.ga)),
            format!("{} / {}", s.templates, s.true_events),
            format!("{:.0}", s.lines_per_s),
        ]);
    }
    let raw = r.raw.as_ref().map_or(String::new(), |raw| {
        let each: Vec<String> = raw
            .systems
            .iter()
            .map(|(n, g)| format!("{n} {g:.3}"))
            .collect();
        format!(
            "GA on raw lines (headers cut automatically): mean {:.3} ({})\n",
            raw.mean_ga,
            each.join(", ")
        )
    });
    format!(
        "{t}\nmean GA {:.3}, mean PA {:.3}, mean F1 {:.3}{}\n{raw}",
        r.mean_ga,
        r.mean_pa,
        r.mean_f1,
        r.mean_ga_corrected.map_or(String::new(), |g| format!(
            ", mean GA on the corrected truth {g:.3}"
        ))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(events: &[&str]) -> Vec<(String, String, String)> {
        events
            .iter()
            .map(|e| (String::new(), e.to_string(), format!("t{e}")))
            .collect()
    }

    #[test]
    fn grouping_accuracy_counts_only_exact_groups() {
        // Truth: A A B B C. Predicted: {0,1} right, {2} and {3} split B, {4} right.
        let t = truth(&["A", "A", "B", "B", "C"]);
        let texts: Vec<String> = ["tA", "tA", "tB", "x", "tC"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = score(&[1, 1, 2, 3, 4], &texts, &t, 1.0);
        assert!((s.ga - 3.0 / 5.0).abs() < 1e-12, "{}", s.ga);
        assert!((s.pa - 4.0 / 5.0).abs() < 1e-12);
        // Pairs: truth {01, 23}, predicted {01}: precision 1, recall 1/2.
        assert!((s.f1 - 2.0 / 3.0).abs() < 1e-12, "{}", s.f1);
        // Merging B and C loses both groups.
        let merged = score(&[1, 1, 2, 2, 2], &texts, &t, 1.0);
        assert!((merged.ga - 2.0 / 5.0).abs() < 1e-12);
    }
}
