//! Reads time series from CSV files: a timestamp column and one or more value columns, with
//! errors that name the file and line.

use crate::EvalError;
use crate::error::{Context, bail, data_error};
use nightshift_core::Millis;
use std::path::Path;

/// A CSV of series: the value columns' names and, per row, the time and each column's value
/// (`None` where the cell is empty).
pub struct SeriesTable {
    pub names: Vec<String>,
    pub rows: Vec<(Millis, Vec<Option<f64>>)>,
}

/// Formats a time as RFC 3339 (UTC), or as raw milliseconds when it is out of range.
pub fn format_timestamp(ts: Millis) -> String {
    jiff::Timestamp::from_millisecond(ts).map_or_else(|_| format!("{ts} ms"), |t| t.to_string())
}

/// Parses a timestamp: Unix seconds or milliseconds (a number; values above 10^11 are taken as
/// milliseconds), RFC 3339 (`2026-03-02T13:00:00Z`), or `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn parse_timestamp(s: &str) -> Result<Millis, EvalError> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        if !n.is_finite() {
            bail!("timestamp {s:?} is not a finite number");
        }
        return Ok(if n.abs() > 1e11 {
            n as Millis
        } else {
            (n * 1000.0).round() as Millis
        });
    }
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    let civil: jiff::civil::DateTime = s.parse().map_err(|e| {
        data_error!(
            "timestamp {s:?} is neither Unix seconds, RFC 3339 nor YYYY-MM-DD HH:MM:SS: {e}"
        )
    })?;
    let ts = jiff::tz::TimeZone::UTC
        .to_timestamp(civil)
        .map_err(|e| data_error!("timestamp {s:?} is out of range: {e}"))?;
    Ok(ts.as_millisecond())
}

/// A CSV file's header and data rows, each row with its 1-based line number. Fields may be
/// quoted (RFC 4180), so a header such as `"requests{job=""web"",code=""200""}"` keeps its
/// commas; surrounding spaces are trimmed and blank lines skipped.
pub struct CsvRows {
    pub header: Vec<String>,
    pub rows: Vec<(usize, csv::StringRecord)>,
}

/// Reads `path` as CSV; errors name the file and line.
pub fn read_csv_rows(path: &Path) -> Result<CsvRows, EvalError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(path, &e))?
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                h
            }
            .to_string()
        })
        .collect();
    if header.iter().all(String::is_empty) {
        bail!(
            "{}: the file is empty; expected a header such as `timestamp,value`",
            path.display()
        );
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, &e))?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line() as usize);
        rows.push((line, record));
    }
    Ok(CsvRows { header, rows })
}

fn csv_error(path: &Path, e: &csv::Error) -> EvalError {
    match e.position() {
        Some(p) => data_error!("{}:{}: {e}", path.display(), p.line()),
        None => data_error!("{}: {e}", path.display()),
    }
}

/// Reads `timestamp,value` or a wide CSV (`timestamp,a,b,...`): the first column whose header
/// is `timestamp`, `time`, `ts` or `date` (else the first column) holds the time; every other
/// column is a series. Rows must be in time order.
pub fn read_table(path: &Path) -> Result<SeriesTable, EvalError> {
    let CsvRows {
        header,
        rows: records,
    } = read_csv_rows(path)?;
    let ts_col = header
        .iter()
        .position(|h| {
            matches!(
                h.to_ascii_lowercase().as_str(),
                "timestamp" | "time" | "ts" | "date"
            )
        })
        .unwrap_or(0);
    if header.len() < 2 {
        bail!(
            "{}:1: need a timestamp column and at least one value column, found {:?}",
            path.display(),
            header.join(",")
        );
    }
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != ts_col)
        .map(|(_, h)| h.clone())
        .collect();
    let mut rows: Vec<(Millis, Vec<Option<f64>>)> = Vec::with_capacity(records.len());
    for (line, fields) in &records {
        let at = || format!("{}:{line}", path.display());
        if fields.len() != header.len() {
            bail!(
                "{}: {} fields, but the header has {}",
                at(),
                fields.len(),
                header.len()
            );
        }
        let ts = parse_timestamp(&fields[ts_col]).with_context(at)?;
        if let Some(&(last, _)) = rows.last()
            && ts < last
        {
            bail!(
                "{}: this row's time is before the previous row's; sort the file by time",
                at()
            );
        }
        let mut values = Vec::with_capacity(names.len());
        for (k, f) in fields.iter().enumerate().filter(|(k, _)| *k != ts_col) {
            if f.is_empty() || f.eq_ignore_ascii_case("nan") {
                values.push(None);
                continue;
            }
            let v: f64 = f.parse().map_err(|_| {
                data_error!("{}: column `{}` is {f:?}, not a number", at(), header[k])
            })?;
            values.push(v.is_finite().then_some(v));
        }
        rows.push((ts, values));
    }
    if rows.is_empty() {
        bail!("{}: no data rows after the header", path.display());
    }
    Ok(SeriesTable { names, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_the_usual_shapes() {
        assert_eq!(parse_timestamp("1700000000").ok(), Some(1_700_000_000_000));
        assert_eq!(
            parse_timestamp("1700000000123").ok(),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            parse_timestamp("2014-02-19 10:50:00").ok(),
            Some(1_392_807_000_000)
        );
        assert_eq!(
            parse_timestamp("2014-02-19T10:50:00Z").ok(),
            Some(1_392_807_000_000)
        );
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn quoted_headers_keep_their_commas_and_lines_are_counted() {
        let dir = std::env::temp_dir().join(format!("nightshift-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("wide.csv");
        std::fs::write(
            &path,
            "\u{feff}timestamp,\"requests{job=\"\"web\"\",code=\"\"200\"\"}\",errors\n\n1700000000,5,\n1700000060,6,x\n",
        )
        .expect("write");
        let err = read_table(&path)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("wide.csv:4") && err.contains("\"x\""), "{err}");
        std::fs::write(
            &path,
            "timestamp,\"requests{job=\"\"web\"\",code=\"\"200\"\"}\"\n1700000000,5\n",
        )
        .expect("write");
        let table = read_table(&path).expect("reads");
        assert_eq!(table.names, vec![r#"requests{job="web",code="200"}"#]);
        let key = crate::offline::header_series(&table.names[0]);
        assert_eq!(key.metric, "requests");
        assert_eq!(key.labels.get("code").map(String::as_str), Some("200"));
    }
}
