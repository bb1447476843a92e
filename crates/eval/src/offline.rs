//! `nightshift detect FILE.csv`: anomaly events in the user's own series, with explanations.

use crate::EvalError;
use crate::series_csv::{format_timestamp, read_table};
use crate::text::table;
use nightshift_core::{Millis, SeriesKey};
use nightshift_detect::{
    Detector, Ensemble, EnsembleConfig, EventPhase, Overrides, ensemble::MEMBERS,
};
use serde::Serialize;
use std::path::Path;

/// One anomaly event of one series.
#[derive(Debug, Serialize)]
pub struct DetectedEvent {
    pub start: String,
    pub end: String,
    pub start_ms: Millis,
    pub end_ms: Millis,
    pub points: usize,
    pub peak_score: f64,
    /// The value, expectation and band at the onset.
    pub value: f64,
    pub expected: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    pub detector: &'static str,
    pub explanation: String,
}

#[derive(Debug, Serialize)]
pub struct SeriesReport {
    pub series: String,
    pub points: usize,
    pub skipped: usize,
    pub state_bytes: usize,
    pub events: Vec<DetectedEvent>,
}

/// The series a column header names: `name` or `name{label="value", ...}` (as Prometheus
/// prints a series); any other header is taken whole as the name.
pub fn header_series(header: &str) -> SeriesKey {
    nightshift_detect::SeriesSelector::parse(header)
        .ok()
        .and_then(|s| s.as_series())
        .unwrap_or_else(|| SeriesKey::new(header.trim(), &[]))
}

/// Runs the default ensemble, with the rules of `overrides`, over every series of the file.
pub fn detect_file(path: &Path, overrides: &Overrides) -> Result<Vec<SeriesReport>, EvalError> {
    let table = read_table(path)?;
    let mut out = Vec::new();
    for (col, name) in table.names.iter().enumerate() {
        let key = header_series(name);
        let mut ensemble = Ensemble::new(overrides.config_for(&key, EnsembleConfig::default()));
        let mut events: Vec<DetectedEvent> = Vec::new();
        let (mut points, mut skipped) = (0, 0);
        for (ts, values) in &table.rows {
            let Some(value) = values[col] else {
                skipped += 1;
                continue;
            };
            let Ok(s) = ensemble.assess(*ts, value) else {
                // Repeated timestamps: the first value counts.
                skipped += 1;
                continue;
            };
            points += 1;
            match s.phase {
                EventPhase::Onset => events.push(DetectedEvent {
                    start: format_timestamp(*ts),
                    end: format_timestamp(*ts),
                    start_ms: *ts,
                    end_ms: *ts,
                    points: 1,
                    peak_score: s.score,
                    value,
                    expected: s.band.map(|b| b.expected),
                    lower: s.band.map(|b| b.lower),
                    upper: s.band.map(|b| b.upper),
                    detector: MEMBERS[s.top],
                    explanation: ensemble.explain_top(),
                }),
                EventPhase::Ongoing => {
                    if let Some(e) = events.last_mut() {
                        e.end = format_timestamp(*ts);
                        e.end_ms = *ts;
                        e.points += 1;
                        e.peak_score = e.peak_score.max(s.score);
                    }
                }
                EventPhase::Normal => {}
            }
        }
        out.push(SeriesReport {
            series: name.clone(),
            points,
            skipped,
            state_bytes: ensemble.state_bytes(),
            events,
        });
    }
    Ok(out)
}

/// Renders the reports as a table per series.
pub fn render(reports: &[SeriesReport]) -> String {
    let mut s = String::new();
    for r in reports {
        s.push_str(&format!(
            "{}: {} points, {} anomaly event(s)\n",
            r.series,
            r.points,
            r.events.len()
        ));
        if r.events.is_empty() {
            continue;
        }
        let mut t = table(vec![
            "start",
            "end",
            "score",
            "value",
            "expected [band]",
            "detector",
            "why",
        ]);
        for e in &r.events {
            let band = match (e.expected, e.lower, e.upper) {
                (Some(x), Some(l), Some(u)) => format!("{x:.4} [{l:.4}, {u:.4}]"),
                _ => "–".into(),
            };
            t.add_row(vec![
                e.start.clone(),
                e.end.clone(),
                format!("{:.2}", e.peak_score),
                format!("{:.4}", e.value),
                band,
                e.detector.to_string(),
                e.explanation.clone(),
            ]);
        }
        s.push_str(&format!("{t}\n"));
    }
    s
}
