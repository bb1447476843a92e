//! `nightshift eval nab`: scores anomaly detection on the Numenta Anomaly Benchmark with NAB's
//! v1.0 rules, for Nightshift's own detector or for another tool's results files.

use crate::EvalError;
use crate::error::{Context, bail, data_error};
use crate::nab_score::{self as nab, FileScore, NabError, PROFILES, ProfileResult, ScoredSeries};
use crate::series_csv::{CsvRows, format_timestamp, parse_timestamp, read_csv_rows};
use crate::text::table;
use nightshift_core::Millis;
use nightshift_detect::{Ensemble, EventPhase};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The labelled windows, relative to the NAB folder.
const WINDOWS_FILE: &str = "labels/combined_windows.json";

/// What [`score_series`] runs, for the report.
const DETECTOR: &str = "nightshift (ensemble, calibrated event onsets)";

/// Scores one series with Nightshift's detector, one score in [0, 1] per point. This is the one
/// place that decides how a series is scored, so changing the detector changes only this.
///
/// The ensemble reports an anomaly *event* once, at its onset, with its calibrated score there
/// (the anomaly likelihood of the recent raw scores, or 1 at a record high or low); every other
/// point scores 0. That is how an alert behaves (one page per event, not one per point), and
/// NAB charges a false positive per flagged point outside its windows.
pub fn score_series(points: &[(i64, f64)]) -> Vec<f64> {
    let mut detector = Ensemble::default();
    points
        .iter()
        // A refused point scores as unremarkable: the reader lets through only repeated
        // timestamps (NAB's AWS files repeat one at a daylight-saving change).
        .map(|&(ts, value)| match detector.assess(ts, value) {
            Ok(e) if e.phase == EventPhase::Onset => e.score,
            _ => 0.0,
        })
        .collect()
}

/// One profile's corpus result.
#[derive(Debug, Serialize)]
pub struct ProfileSummary {
    pub profile: &'static str,
    pub normalised: f64,
    pub threshold: f64,
    pub raw: f64,
    pub null: f64,
    pub perfect: f64,
}

/// One file's result under each profile.
#[derive(Debug, Serialize)]
pub struct FileReport {
    pub file: String,
    pub rows: usize,
    pub probation: usize,
    pub windows: usize,
    #[serde(flatten)]
    pub profiles: BTreeMap<&'static str, FileScore>,
}

/// The whole evaluation; the three profile keys hold the normalised scores.
#[derive(Debug, Serialize)]
pub struct NabReport {
    pub detector: String,
    pub standard: f64,
    #[serde(rename = "reward_low_FP_rate")]
    pub reward_low_fp_rate: f64,
    #[serde(rename = "reward_low_FN_rate")]
    pub reward_low_fn_rate: f64,
    /// The optimised threshold of each profile.
    pub thresholds: BTreeMap<&'static str, f64>,
    pub profiles: Vec<ProfileSummary>,
    pub files: Vec<FileReport>,
    pub windows: usize,
    pub points: usize,
    /// Time spent in the detector alone (no file reading, no scoring); absent for `--results`.
    pub detector_seconds: Option<f64>,
    pub points_per_second: Option<f64>,
}

/// A labelled data file, read.
struct DataFile {
    /// `<category>/<file>.csv`, as the labels name it.
    key: String,
    path: PathBuf,
    points: Vec<(Millis, f64)>,
    windows: Vec<(Millis, Millis)>,
    /// Line of the labels file naming this file, for errors about its windows.
    label_line: usize,
}

/// Scores every labelled file of the NAB folder `data`: with Nightshift's detector, or with
/// the results files under `results`. `quiet` hides the progress bar.
pub fn run(data: &Path, results: Option<&Path>, quiet: bool) -> Result<NabReport, EvalError> {
    let labels_path = data.join(WINDOWS_FILE);
    let files = read_labelled_files(data, &labels_path)?;
    let points: usize = files.iter().map(|f| f.points.len()).sum();
    let bar = crate::text::progress_bar(points as u64, "points", quiet);
    let mut detector_time = Duration::ZERO;
    let mut corpus = Vec::with_capacity(files.len());
    for f in &files {
        bar.set_message(f.key.clone());
        let scores = match results {
            None => {
                let started = Instant::now();
                let scores = score_series(&f.points);
                detector_time += started.elapsed();
                scores
            }
            Some(dir) => read_results(dir, f, &files)?,
        };
        let timestamps: Vec<Millis> = f.points.iter().map(|p| p.0).collect();
        let series =
            ScoredSeries::new(f.key.clone(), &timestamps, scores, &f.windows).map_err(|e| {
                match e {
                    NabError::WindowNotInData { ts } => data_error!(
                        "{}:{}: a window of {} starts or ends at {}, which is no row's timestamp in {}",
                        labels_path.display(),
                        f.label_line,
                        f.key,
                        format_timestamp(ts),
                        f.path.display()
                    ),
                    NabError::BadWindow { index, .. } => data_error!(
                        "{}:{}: window {index} of {} is out of order, overlaps another or ends before it starts",
                        labels_path.display(),
                        f.label_line,
                        f.key
                    ),
                    e => data_error!("{}: {e}", f.path.display()),
                }
            })?;
        corpus.push(series);
        bar.inc(f.points.len() as u64);
    }
    bar.finish_and_clear();

    let profiles: Vec<ProfileResult> = PROFILES
        .iter()
        .map(|p| nab::evaluate(&corpus, p))
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: cannot normalise", labels_path.display()))?;
    let detector = match results {
        Some(dir) => format!("results in {}", dir.display()),
        None => DETECTOR.to_string(),
    };
    let seconds = results.is_none().then_some(detector_time.as_secs_f64());
    Ok(report(detector, &corpus, &profiles, seconds))
}

fn report(
    detector: String,
    corpus: &[ScoredSeries],
    profiles: &[ProfileResult],
    detector_seconds: Option<f64>,
) -> NabReport {
    let normalised = |name: &str| {
        profiles
            .iter()
            .find(|p| p.profile == name)
            .map_or(f64::NAN, |p| p.normalised)
    };
    let files = corpus
        .iter()
        .enumerate()
        .map(|(i, s)| FileReport {
            file: s.name().to_string(),
            rows: s.rows(),
            probation: s.probation(),
            windows: s.windows().len(),
            profiles: profiles
                .iter()
                .filter_map(|p| Some((p.profile, p.files.get(i)?.clone())))
                .collect(),
        })
        .collect();
    let points: usize = corpus.iter().map(ScoredSeries::rows).sum();
    NabReport {
        detector,
        standard: normalised(nab::STANDARD.name),
        reward_low_fp_rate: normalised(nab::REWARD_LOW_FP_RATE.name),
        reward_low_fn_rate: normalised(nab::REWARD_LOW_FN_RATE.name),
        thresholds: profiles.iter().map(|p| (p.profile, p.threshold)).collect(),
        profiles: profiles
            .iter()
            .map(|p| ProfileSummary {
                profile: p.profile,
                normalised: p.normalised,
                threshold: p.threshold,
                raw: p.raw,
                null: p.null,
                perfect: p.perfect,
            })
            .collect(),
        files,
        windows: corpus.iter().map(|s| s.windows().len()).sum(),
        points,
        detector_seconds,
        points_per_second: detector_seconds
            .filter(|s| *s > 0.0)
            .map(|s| points as f64 / s),
    }
}

/// Renders the report for a terminal: per profile, per file, then throughput.
pub fn render(r: &NabReport) -> String {
    let mut out = String::new();
    let mut files = table(vec![
        "file", "rows", "windows", "standard", "TP", "FP", "FN", "low FP", "low FN",
    ]);
    for f in &r.files {
        let raw = |p: &str| {
            f.profiles
                .get(p)
                .map_or("–".into(), |s| format!("{:.3}", s.raw))
        };
        let standard = f.profiles.get(nab::STANDARD.name);
        let count =
            |c: fn(&FileScore) -> usize| standard.map_or("–".into(), |s| c(s).to_string());
        files.add_row(vec![
            f.file.clone(),
            f.rows.to_string(),
            f.windows.to_string(),
            raw(nab::STANDARD.name),
            count(|s| s.true_positives),
            count(|s| s.false_positives),
            count(|s| s.false_negatives),
            raw(nab::REWARD_LOW_FP_RATE.name),
            raw(nab::REWARD_LOW_FN_RATE.name),
        ]);
    }
    let _ = writeln!(out, "{files}\n");
    let mut profiles = table(vec![
        "profile",
        "NAB score",
        "threshold",
        "raw",
        "null",
        "perfect",
    ]);
    for p in &r.profiles {
        profiles.add_row(vec![
            p.profile.to_string(),
            format!("{:.1}", p.normalised),
            format!("{:.6}", p.threshold),
            format!("{:.3}", p.raw),
            format!("{:.1}", p.null),
            format!("{:.1}", p.perfect),
        ]);
    }
    let _ = writeln!(out, "{profiles}");
    let _ = writeln!(
        out,
        "{}: {} files, {} points, {} windows; thresholds optimised over the corpus per profile (NAB v1.0 scoring).",
        r.detector,
        r.files.len(),
        r.points,
        r.windows
    );
    if let (Some(seconds), Some(rate)) = (r.detector_seconds, r.points_per_second) {
        let _ = writeln!(
            out,
            "Detector time {seconds:.3}s: {rate:.0} points/s (file reading and scoring excluded)."
        );
    }
    out
}

/// Reads the labels and every data file they name.
fn read_labelled_files(data: &Path, labels_path: &Path) -> Result<Vec<DataFile>, EvalError> {
    let text = std::fs::read_to_string(labels_path)
        .with_context(|| format!("cannot read {}", labels_path.display()))?;
    let labels: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a JSON object of \"<category>/<file>.csv\": [[start, end], …]",
                labels_path.display()
            )
        })?;
    if labels.is_empty() {
        bail!("{}: no files are labelled", labels_path.display());
    }
    let mut files = Vec::with_capacity(labels.len());
    for (key, windows) in labels {
        let label_line = line_of(&text, &format!("\"{key}\""));
        let at = || format!("{}:{label_line}", labels_path.display());
        if key
            .split_once('/')
            .is_none_or(|(c, f)| c.is_empty() || f.is_empty())
        {
            bail!("{}: {key:?} is not of the form <category>/<file>.csv", at());
        }
        let path = data.join("data").join(&key);
        if !path.is_file() {
            bail!(
                "{}: the labels name {key}, which is not in {}",
                at(),
                data.join("data").display()
            );
        }
        let windows = windows
            .iter()
            .enumerate()
            .map(|(k, w)| match w.as_slice() {
                [start, end] => Ok((
                    parse_timestamp(start)
                        .with_context(|| format!("{}: window {k} of {key}", at()))?,
                    parse_timestamp(end)
                        .with_context(|| format!("{}: window {k} of {key}", at()))?,
                )),
                _ => bail!(
                    "{}: window {k} of {key} has {} timestamps; a window is [start, end]",
                    at(),
                    w.len()
                ),
            })
            .collect::<Result<Vec<_>, EvalError>>()?;
        let points = read_csv(&path, ["timestamp", "value"])?;
        files.push(DataFile {
            key,
            path,
            points,
            windows,
            label_line,
        });
    }
    Ok(files)
}

/// Reads another detector's scores for `file` from `dir/<category>/<file>.csv` or
/// `dir/<category>/<detector>_<file>.csv` (NAB's results layout), checking they cover the data
/// file row for row.
fn read_results(dir: &Path, file: &DataFile, all: &[DataFile]) -> Result<Vec<f64>, EvalError> {
    let path = results_file(dir, file, all)?;
    let rows = read_csv(&path, ["timestamp", "anomaly_score"])?;
    if rows.len() != file.points.len() {
        bail!(
            "{}: {} rows, but {} has {}; a results file scores every row of its data file",
            path.display(),
            rows.len(),
            file.path.display(),
            file.points.len()
        );
    }
    if let Some(i) = rows.iter().zip(&file.points).position(|(r, p)| r.0 != p.0) {
        bail!(
            "{}:{}: timestamp {}, but row {} of {} is at {}",
            path.display(),
            i + 2,
            format_timestamp(rows[i].0),
            i + 1,
            file.path.display(),
            format_timestamp(file.points[i].0)
        );
    }
    Ok(rows.into_iter().map(|r| r.1).collect())
}

fn results_file(dir: &Path, file: &DataFile, all: &[DataFile]) -> Result<PathBuf, EvalError> {
    let (category, name) = file
        .key
        .split_once('/')
        .ok_or_else(|| data_error!("{} has no category", file.key))?;
    let folder = dir.join(category);
    let exact = folder.join(name);
    if exact.is_file() {
        return Ok(exact);
    }
    let suffix = format!("_{name}");
    // A sibling whose name ends in `_<name>` (say `b.csv` beside `a_b.csv`) would make
    // `det_a_b.csv` match both; it belongs to the longer name.
    let siblings: Vec<&str> = all
        .iter()
        .filter_map(|f| f.key.strip_prefix(category)?.strip_prefix('/'))
        .filter(|s| *s != name && s.ends_with(&suffix))
        .collect();
    let entries = std::fs::read_dir(&folder).with_context(|| {
        format!(
            "no results for {}: cannot read {}",
            file.key,
            folder.display()
        )
    })?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", folder.display()))?;
        let candidate = entry.file_name().to_string_lossy().into_owned();
        if candidate.ends_with(&suffix)
            && !siblings
                .iter()
                .any(|s| candidate == *s || candidate.ends_with(&format!("_{s}")))
        {
            found.push(entry.path());
        }
    }
    found.sort();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no results for {}: expected {} or {}",
            file.key,
            exact.display(),
            folder.join(format!("<detector>_{name}")).display()
        ),
        many => bail!(
            "{} results files for {} in {}: {}; keep one",
            many.len(),
            file.key,
            folder.display(),
            many.iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Reads the `timestamp` column and one numeric column of a NAB CSV file; other columns are
/// ignored. Errors name the file and line.
fn read_csv(path: &Path, columns: [&str; 2]) -> Result<Vec<(Millis, f64)>, EvalError> {
    let CsvRows {
        header,
        rows: records,
    } = read_csv_rows(path)?;
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            data_error!(
                "{}:1: no `{name}` column (the header is {:?})",
                path.display(),
                header.join(",")
            )
        })
    };
    let (ts_col, value_col) = (column(columns[0])?, column(columns[1])?);
    let mut rows: Vec<(Millis, f64)> = Vec::with_capacity(records.len());
    for (line, fields) in &records {
        let at = || format!("{}:{line}", path.display());
        let field = |k: usize, name: &str| {
            fields.get(k).ok_or_else(|| {
                data_error!(
                    "{}: no `{name}` field ({} fields; the header has {})",
                    at(),
                    fields.len(),
                    header.len()
                )
            })
        };
        let ts = parse_timestamp(field(ts_col, columns[0])?).with_context(at)?;
        let raw = field(value_col, columns[1])?;
        let value: f64 = raw
            .parse()
            .map_err(|_| data_error!("{}: `{}` is {raw:?}, not a number", at(), columns[1]))?;
        if !value.is_finite() {
            bail!("{}: `{}` is {raw}, not a finite number", at(), columns[1]);
        }
        // Repeats are kept: NAB's own files have them and its scorer counts every row.
        if let Some(&(last, _)) = rows.last()
            && ts < last
        {
            bail!(
                "{}: timestamp {} is before the previous row's {}",
                at(),
                format_timestamp(ts),
                format_timestamp(last)
            );
        }
        rows.push((ts, value));
    }
    if rows.is_empty() {
        bail!("{}: no data rows", path.display());
    }
    Ok(rows)
}

/// 1-based line of the first occurrence of `needle` in `text` (1 when absent).
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle)
        .map_or(1, |at| text[..at].matches('\n').count() + 1)
}
