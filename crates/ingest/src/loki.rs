//! Loki push: `POST /loki/api/v1/push`, what Promtail, Grafana Alloy, Fluent Bit and the OTel
//! Collector's Loki exporter send (<https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs>):
//! a `logproto.PushRequest` protobuf in the snappy block format, or JSON.
//!
//! Each stream's labels become the record's resource (`service`/`service_name`/`app`/`job` →
//! `service.name`, `pod`, `namespace`, ... as for metrics). Loki lines carry no severity of
//! their own: it is read from a `level`/`severity`/`detected_level` label or structured
//! metadata, else from the level the line states (`level=error`, `"level":"warn"`, `ERROR`).

use crate::logline::{line_severity, parts, severity_word};
use crate::remote_write::decoded_limit;
use nightshift_core::{LogRecord, Millis, Resource, Severity};
use prost::Message;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<Stream>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Stream {
    /// The stream's labels as Loki writes them: `{app="api", level="error"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Entry {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LokiError {
    #[error("Content-Type must be application/x-protobuf (snappy) or application/json, not {0:?}")]
    ContentType(String),
    #[error("the body is not snappy block-compressed: {0}")]
    Snappy(String),
    #[error("the body decompresses to {0} bytes, more than the {1} allowed for its size")]
    TooLarge(usize, usize),
    #[error("the body is not a logproto.PushRequest protobuf: {0}")]
    Protobuf(String),
    #[error("the body is not Loki's push JSON: {0}")]
    Json(String),
    #[error("stream {stream}: {problem}")]
    Stream { stream: usize, problem: String },
}

impl LokiError {
    pub fn status(&self) -> u16 {
        match self {
            Self::ContentType(_) => 415,
            Self::TooLarge(..) => 413,
            _ => 400,
        }
    }
}

#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    stream: BTreeMap<String, String>,
    values: Vec<serde_json::Value>,
}

/// Parses Loki's label string `{a="b", c="d"}` (Prometheus' syntax, with its escapes).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let t = text.trim();
    let inner = t
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| format!("labels {t:?} are not of the form {{name=\"value\", ...}}"))?;
    let mut out = BTreeMap::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("labels {t:?}: expected name=\"value\" at {rest:?}"))?;
        let name = name.trim();
        if !crate::remote_write::valid_label_name(name) {
            return Err(format!("labels {t:?}: label name {name:?} is not valid"));
        }
        let after = after.trim_start();
        let body = after
            .strip_prefix('"')
            .ok_or_else(|| format!("labels {t:?}: the value of {name} is not quoted"))?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("labels {t:?}: unfinished escape")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("labels {t:?}: the value of {name} is not closed")),
            }
        };
        out.insert(name.to_string(), value);
        rest = body[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

fn record(
    labels: &BTreeMap<String, String>,
    meta: &BTreeMap<String, String>,
    ts: Millis,
    line: String,
) -> LogRecord {
    let mut resource =
        Resource::from_prometheus_labels(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if resource.service_name().is_none()
        && let Some(s) = labels.get("service_name").or_else(|| labels.get("app"))
    {
        resource = resource.with(nightshift_core::resource::semconv::SERVICE_NAME, s);
    }
    let stated = ["level", "severity", "detected_level"]
        .iter()
        .find_map(|k| {
            meta.get(*k)
                .or_else(|| labels.get(*k))
                .and_then(|v| severity_word(v))
        });
    let (body, mut attributes) = parts(&line);
    attributes.extend(meta.iter().map(|(k, v)| (k.clone(), v.clone())));
    LogRecord {
        ts,
        resource,
        severity: stated
            .or_else(|| line_severity(&line))
            .unwrap_or(Severity::Info),
        body: body.into_owned(),
        attributes,
    }
}

/// Decodes a push body by its `Content-Type` (protobuf is snappy-compressed, JSON may be
/// gzip-compressed by the server's HTTP layer before this).
pub fn decode_push(content_type: Option<&str>, body: &[u8]) -> Result<Vec<LogRecord>, LokiError> {
    let ct = content_type.unwrap_or("").trim();
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => {
            let size =
                snap::raw::decompress_len(body).map_err(|e| LokiError::Snappy(e.to_string()))?;
            if size > decoded_limit(body.len()) {
                return Err(LokiError::TooLarge(size, decoded_limit(body.len())));
            }
            let raw = snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| LokiError::Snappy(e.to_string()))?;
            let req = PushRequest::decode(raw.as_slice())
                .map_err(|e| LokiError::Protobuf(e.to_string()))?;
            let mut out = Vec::new();
            for (i, s) in req.streams.into_iter().enumerate() {
                let labels = parse_labels(&s.labels)
                    .map_err(|problem| LokiError::Stream { stream: i, problem })?;
                for e in s.entries {
                    let ts = e
                        .timestamp
                        .map_or(0, |t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000);
                    let meta = e
                        .structured_metadata
                        .into_iter()
                        .map(|p| (p.name, p.value))
                        .collect();
                    out.push(record(&labels, &meta, ts, e.line));
                }
            }
            Ok(out)
        }
        "application/json" => {
            let push: JsonPush =
                serde_json::from_slice(body).map_err(|e| LokiError::Json(e.to_string()))?;
            let mut out = Vec::new();
            for (i, s) in push.streams.into_iter().enumerate() {
                let fail = |problem: String| LokiError::Stream { stream: i, problem };
                for v in s.values {
                    let arr = v
                        .as_array()
                        .filter(|a| (2..=3).contains(&a.len()))
                        .ok_or_else(|| {
                            fail(format!(
                                "value {v} is not [\"<unix ns>\", \"<line>\"(, {{metadata}})]"
                            ))
                        })?;
                    let ns: i64 =
                        arr[0]
                            .as_str()
                            .and_then(|t| t.parse().ok())
                            .ok_or_else(|| {
                                fail(format!(
                                    "timestamp {} is not a string of Unix nanoseconds",
                                    arr[0]
                                ))
                            })?;
                    let line = arr[1]
                        .as_str()
                        .ok_or_else(|| fail(format!("line {} is not a string", arr[1])))?;
                    let meta: BTreeMap<String, String> = arr
                        .get(2)
                        .and_then(|m| serde_json::from_value(m.clone()).ok())
                        .unwrap_or_default();
                    out.push(record(&s.stream, &meta, ns / 1_000_000, line.to_string()));
                }
            }
            Ok(out)
        }
        _ => Err(LokiError::ContentType(ct.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_pushes_become_log_records() {
        let req = PushRequest {
            streams: vec![Stream {
                labels: r#"{namespace="shop", app="checkout", pod="checkout-7d9"}"#.into(),
                entries: vec![
                    Entry {
                        timestamp: Some(Timestamp {
                            seconds: 1_700_000_000,
                            nanos: 500_000_000,
                        }),
                        line: "level=error msg=\"payment declined\"".into(),
                        structured_metadata: vec![],
                    },
                    Entry {
                        timestamp: Some(Timestamp {
                            seconds: 1_700_000_001,
                            nanos: 0,
                        }),
                        line: "request served".into(),
                        structured_metadata: vec![LabelPair {
                            name: "detected_level".into(),
                            value: "warn".into(),
                        }],
                    },
                ],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("compresses");
        let logs = decode_push(Some("application/x-protobuf"), &body).expect("valid");
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].ts, 1_700_000_000_500);
        assert_eq!(logs[0].severity, Severity::Error);
        assert_eq!(logs[0].resource.service_name(), Some("checkout"));
        assert_eq!(logs[0].resource.get("k8s.pod.name"), Some("checkout-7d9"));
        assert_eq!(
            logs[0].body, "payment declined",
            "the message of a logfmt line"
        );
        assert_eq!(
            logs[0].attributes.get("level").map(String::as_str),
            Some("error")
        );
        assert_eq!(logs[1].severity, Severity::Warn);
        assert_eq!(logs[1].body, "request served");
        assert_eq!(
            logs[1].attributes.get("detected_level").map(String::as_str),
            Some("warn"),
            "structured metadata are labels of the record"
        );
    }

    #[test]
    fn json_pushes_become_log_records() {
        let body = br#"{"streams":[{"stream":{"service_name":"cart","level":"error"},
            "values":[["1700000000000000000","boom"],["1700000001000000000","again",{"trace_id":"abc"}]]}]}"#;
        let logs = decode_push(Some("application/json"), body).expect("valid");
        assert_eq!(logs.len(), 2);
        assert_eq!(
            (logs[0].ts, logs[0].severity),
            (1_700_000_000_000, Severity::Error)
        );
        assert_eq!(logs[1].resource.service_name(), Some("cart"));
    }

    #[test]
    fn levels_are_read_from_lines() {
        assert_eq!(
            line_severity(r#"{"level":"warn","msg":"slow"}"#),
            Some(Severity::Warn)
        );
        assert_eq!(
            line_severity("2024-01-01 12:00:00 ERROR db timeout"),
            Some(Severity::Error)
        );
        assert_eq!(line_severity("no error here"), None);
        assert_eq!(line_severity("lvl=crit disk full"), Some(Severity::Fatal));
    }

    #[test]
    fn labels_parse_with_escapes_and_bad_ones_are_named() {
        let l = parse_labels(r#"{a="x\"y", b="1,2"}"#).expect("valid");
        assert_eq!(l["a"], "x\"y");
        assert_eq!(l["b"], "1,2");
        assert!(parse_labels("{}").expect("empty").is_empty());
        for bad in ["a=\"b\"", "{a=b}", "{a=\"b}", "{1a=\"b\"}"] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_pushes_are_refused_with_their_status() {
        let err = |ct: &str, body: &[u8]| decode_push(Some(ct), body).expect_err("refused");
        assert_eq!(err("text/plain", b"x").status(), 415);
        assert_eq!(
            err("application/x-protobuf", b"\xff\xff\xff\xff\xff").status(),
            400
        );
        assert_eq!(err("application/json", b"{").status(), 400);
        let e = err(
            "application/json",
            br#"{"streams":[{"stream":{},"values":[[1,"x"]]}]}"#,
        );
        assert!(
            e.to_string().contains("stream 0") && e.to_string().contains("nanoseconds"),
            "{e}"
        );
        let bad_labels = PushRequest {
            streams: vec![Stream {
                labels: "app=x".into(),
                entries: vec![],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&bad_labels.encode_to_vec())
            .expect("compresses");
        assert!(
            err("application/x-protobuf", &body)
                .to_string()
                .contains("stream 0")
        );
    }
}
