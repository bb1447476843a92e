//! Responses of a Prometheus-compatible query API (Prometheus, Mimir, VictoriaMetrics, Thanos):
//! `GET /api/v1/query_range` and `/api/v1/query`, as JSON
//! (<https://prometheus.io/docs/prometheus/latest/querying/api/>).

use nightshift_core::{Millis, SeriesKey};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Why a query response could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("the response is not the query API's JSON: {0}")]
    Json(String),
    /// The server answered `"status": "error"`.
    #[error("the server refused the query ({kind}): {message}")]
    Refused { kind: String, message: String },
    #[error("a result sample {0:?} is not a [time, \"value\"] pair")]
    Sample(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
    #[serde(default)]
    value: Option<(f64, String)>,
}

/// The samples of a query response. A result without `__name__` (an expression such as
/// `rate(...)`) is named `name`; non-finite values (NaN, ±Inf) are left out.
pub fn decode_query_response(
    body: &[u8],
    name: &str,
) -> Result<Vec<(SeriesKey, Millis, f64)>, QueryError> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| QueryError::Json(e.to_string()))?;
    if env.status != "success" {
        return Err(QueryError::Refused {
            kind: env.error_type.unwrap_or_else(|| "unknown".into()),
            message: env.error.unwrap_or_default(),
        });
    }
    let Some(data) = env.data else {
        return Err(QueryError::Json(
            "a successful response without data".into(),
        ));
    };
    let sample = |(t, v): &(f64, String)| -> Option<(Millis, f64)> {
        let value: f64 = v.parse().ok()?;
        (value.is_finite() && t.is_finite()).then_some(((t * 1000.0).round() as Millis, value))
    };
    let mut out = Vec::new();
    match data.result_type.as_str() {
        "matrix" | "vector" => {
            let series: Vec<Series> = serde_json::from_value(data.result)
                .map_err(|e| QueryError::Sample(e.to_string()))?;
            for s in series {
                let mut labels = s.metric;
                let metric = labels
                    .remove("__name__")
                    .unwrap_or_else(|| name.to_string());
                let key = SeriesKey { metric, labels };
                for p in s.values.iter().chain(s.value.iter()) {
                    if let Some((ts, v)) = sample(p) {
                        out.push((key.clone(), ts, v));
                    }
                }
            }
        }
        "scalar" => {
            let p: (f64, String) = serde_json::from_value(data.result)
                .map_err(|e| QueryError::Sample(e.to_string()))?;
            if let Some((ts, v)) = sample(&p) {
                out.push((SeriesKey::new(name, &[]), ts, v));
            }
        }
        other => {
            return Err(QueryError::Json(format!(
                "result type {other:?} carries no samples"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_vectors_and_scalars_become_samples() {
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","job":"api"},"values":[[1700000000,"1"],[1700000015.5,"0"]]},
            {"metric":{"job":"db"},"values":[[1700000000,"NaN"],[1700000015,"2"]]}]}}"#;
        let s = decode_query_response(matrix, "job:up").expect("valid");
        assert_eq!(
            s,
            vec![
                (
                    SeriesKey::new("up", &[("job", "api")]),
                    1_700_000_000_000,
                    1.0
                ),
                (
                    SeriesKey::new("up", &[("job", "api")]),
                    1_700_000_015_500,
                    0.0
                ),
                (
                    SeriesKey::new("job:up", &[("job", "db")]),
                    1_700_000_015_000,
                    2.0
                ),
            ]
        );
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[1700000000,"3.5"]}]}}"#;
        assert_eq!(
            decode_query_response(vector, "x").expect("valid"),
            vec![(SeriesKey::new("x", &[]), 1_700_000_000_000, 3.5)]
        );
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1700000000,"7"]}}"#;
        assert_eq!(decode_query_response(scalar, "s").expect("valid").len(), 1);
    }

    #[test]
    fn errors_say_what_the_server_said() {
        let refused =
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 4"}"#;
        let err = decode_query_response(refused, "x")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("bad_data") && err.contains("parse error"),
            "{err}"
        );
        assert!(decode_query_response(b"<html>", "x").is_err());
        let bad = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,2]]}]}}"#;
        assert!(matches!(
            decode_query_response(bad, "x"),
            Err(QueryError::Sample(_))
        ));
    }
}
