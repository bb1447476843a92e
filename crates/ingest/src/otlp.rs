//! OTLP/HTTP: `POST /v1/metrics`, `/v1/traces` and `/v1/logs`, in protobuf or JSON
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>), with the messages of
//! `opentelemetry-proto`.
//!
//! - **Metrics** become samples named as Prometheus' own OTLP receiver names them: dots in names
//!   become underscores, a monotonic cumulative sum gets `_total`, a histogram becomes
//!   `_bucket{le}`/`_sum`/`_count`. Resource attributes become the labels the pipeline reads
//!   (`service.name` → `service`, `k8s.pod.name` → `pod`, ...; [`prometheus_label`]), others
//!   are kept with underscores. Delta sums and delta histograms have no Prometheus form and are
//!   refused as a partial success, so the sender knows.
//! - **Traces**: each client span (kind CLIENT, or PRODUCER) naming its peer (`peer.service`,
//!   `server.address`, or `db.system` for a database) is one call from the span's
//!   `service.name` to that peer, with its error status and duration: the call graph the
//!   topology is built from.
//! - **Logs** become log records with the resource's attributes and the OTel severity.

use crate::remote_write::{decoded_limit, valid_label_name};
use nightshift_core::resource::prometheus_label;
use nightshift_core::{LogRecord, Millis, Resource, SeriesKey, Severity, SpanEdge};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric, number_data_point};
use prost::Message;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::io::Read;

pub use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
pub use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
pub use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

/// How the body of a request or answer is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// Why an OTLP request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OtlpError {
    #[error("Content-Type must be application/x-protobuf or application/json, not {0:?}")]
    ContentType(String),
    #[error("Content-Encoding must be gzip or none, not {0:?}")]
    Encoding(String),
    #[error("the body is not valid gzip: {0}")]
    Gzip(String),
    #[error("the body decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("the body is not a valid {what}: {detail}")]
    Decode { what: &'static str, detail: String },
}

impl OtlpError {
    /// 415 for a content type or encoding the receiver does not speak, 413 for a body too
    /// large, 400 otherwise (the OTLP spec: do not retry).
    pub fn status(&self) -> u16 {
        match self {
            Self::ContentType(_) | Self::Encoding(_) => 415,
            Self::TooLarge(_) => 413,
            _ => 400,
        }
    }
}

/// The encoding a `Content-Type` names.
pub fn encoding_of(content_type: Option<&str>) -> Result<Encoding, OtlpError> {
    let ct = content_type.unwrap_or("").trim();
    let media = ct.split(';').next().unwrap_or("").trim();
    match media.to_ascii_lowercase().as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(OtlpError::ContentType(ct.to_string())),
    }
}

/// Decodes an OTLP request body: gunzipped when `Content-Encoding: gzip`, then protobuf or
/// JSON by `Content-Type`.
pub fn decode<T: Message + DeserializeOwned + Default>(
    what: &'static str,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
) -> Result<(T, Encoding), OtlpError> {
    let encoding = encoding_of(content_type)?;
    let raw;
    let bytes = match content_encoding.map(str::trim).filter(|e| !e.is_empty()) {
        None => body,
        Some(e) if e.eq_ignore_ascii_case("identity") => body,
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            let limit = decoded_limit(body.len());
            flate2::read::GzDecoder::new(body)
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| OtlpError::Gzip(e.to_string()))?;
            if out.len() > limit {
                return Err(OtlpError::TooLarge(limit));
            }
            raw = out;
            &raw
        }
        Some(e) => return Err(OtlpError::Encoding(e.to_string())),
    };
    let fail = |detail: String| OtlpError::Decode { what, detail };
    let msg = match encoding {
        Encoding::Protobuf => T::decode(bytes).map_err(|e| fail(e.to_string()))?,
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| fail(e.to_string()))?,
    };
    Ok((msg, encoding))
}

fn value_string(v: &AnyValue) -> Option<String> {
    match v.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        any_value::Value::DoubleValue(d) => Some(d.to_string()),
        _ => None,
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .filter_map(|kv| Some((kv.key.clone(), value_string(kv.value.as_ref()?)?)))
        .collect()
}

/// A name as Prometheus accepts it: every character outside `[a-zA-Z0-9_]` becomes `_`, and a
/// leading digit gets a `_` before it.
pub fn sanitise_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The labels of a resource: mapped attributes under their Prometheus names, the rest
/// sanitised.
fn resource_labels(attrs: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|(k, v)| {
            let label = prometheus_label(k).map_or_else(|| sanitise_name(k), str::to_string);
            (label, v.clone())
        })
        .filter(|(k, v)| valid_label_name(k) && !v.is_empty())
        .collect()
}

/// One sample: series, time, value.
type Sample = (SeriesKey, Millis, f64);

/// The samples of an OTLP metrics request: values as they are, and deltas to add to their
/// series' running totals ([`DeltaToCumulative`]).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MetricSamples {
    pub samples: Vec<(SeriesKey, Millis, f64)>,
    pub deltas: Vec<(SeriesKey, Millis, f64)>,
}

impl MetricSamples {
    /// Where points of this aggregation temporality go: cumulative values as they are, deltas
    /// (and unspecified) to be summed.
    fn series_for(&mut self, temporality: i32) -> &mut Vec<Sample> {
        if temporality == AggregationTemporality::Cumulative as i32 {
            &mut self.samples
        } else {
            &mut self.deltas
        }
    }
}

/// Running totals of delta series, so they reach the detectors as the cumulative counters and
/// histograms Prometheus would hold. Bounded: beyond `max_series` series, new delta series are
/// refused (counted), never unbounded memory.
#[derive(Debug)]
pub struct DeltaToCumulative {
    totals: std::collections::HashMap<SeriesKey, f64>,
    max_series: usize,
}

impl DeltaToCumulative {
    pub fn new(max_series: usize) -> Self {
        Self {
            totals: Default::default(),
            max_series,
        }
    }

    /// The cumulative samples of `deltas`, and how many were refused for the series limit.
    pub fn accumulate(
        &mut self,
        deltas: Vec<(SeriesKey, Millis, f64)>,
    ) -> (Vec<(SeriesKey, Millis, f64)>, usize) {
        let mut out = Vec::with_capacity(deltas.len());
        let mut refused = 0;
        for (key, ts, v) in deltas {
            let full = self.totals.len() >= self.max_series;
            let total = match self.totals.get_mut(&key) {
                Some(t) => t,
                None if full => {
                    refused += 1;
                    continue;
                }
                None => self.totals.entry(key.clone()).or_insert(0.0),
            };
            *total += v;
            out.push((key, ts, *total));
        }
        (out, refused)
    }
}

fn millis(nanos: u64) -> Millis {
    (nanos / 1_000_000) as Millis
}

fn number(v: &Option<number_data_point::Value>) -> Option<f64> {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => Some(*d),
        Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
        None => None,
    }
}

/// Turns a metrics request into samples (see the module docs for the naming).
pub fn metric_samples(req: &ExportMetricsServiceRequest) -> MetricSamples {
    let mut out = MetricSamples::default();
    for rm in &req.resource_metrics {
        let base = rm
            .resource
            .as_ref()
            .map(|r| resource_labels(&attributes(&r.attributes)))
            .unwrap_or_default();
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let name = sanitise_name(&m.name);
                let key = |suffix: &str, attrs: &[KeyValue], le: Option<String>| {
                    let mut labels = base.clone();
                    labels.extend(
                        attributes(attrs)
                            .into_iter()
                            .map(|(k, v)| (sanitise_name(&k), v))
                            .filter(|(_, v)| !v.is_empty()),
                    );
                    if let Some(le) = le {
                        labels.insert("le".to_string(), le);
                    }
                    SeriesKey {
                        metric: format!("{name}{suffix}"),
                        labels,
                    }
                };
                // Where a metric's points go: cumulative values as they are, deltas to sum.
                // A histogram's or summary's `_sum` (when there is one) and `_count`.
                let sum_count =
                    |to: &mut Vec<Sample>, attrs: &[KeyValue], ts, sum: Option<f64>, count: u64| {
                        if let Some(sum) = sum {
                            to.push((key("_sum", attrs, None), ts, sum));
                        }
                        to.push((key("_count", attrs, None), ts, count as f64));
                    };
                match &m.data {
                    Some(metric::Data::Gauge(g)) => {
                        for p in &g.data_points {
                            if let Some(v) = number(&p.value) {
                                out.samples.push((
                                    key("", &p.attributes, None),
                                    millis(p.time_unix_nano),
                                    v,
                                ));
                            }
                        }
                    }
                    Some(metric::Data::Sum(s)) => {
                        let to = out.series_for(s.aggregation_temporality);
                        let suffix = if s.is_monotonic && !name.ends_with("_total") {
                            "_total"
                        } else {
                            ""
                        };
                        for p in &s.data_points {
                            if let Some(v) = number(&p.value) {
                                to.push((
                                    key(suffix, &p.attributes, None),
                                    millis(p.time_unix_nano),
                                    v,
                                ));
                            }
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        // Bucket, sum and count series add up over deltas like any counter.
                        let to = out.series_for(h.aggregation_temporality);
                        for p in &h.data_points {
                            let ts = millis(p.time_unix_nano);
                            let mut running = 0u64;
                            for (i, count) in p.bucket_counts.iter().enumerate() {
                                running += count;
                                let le = p
                                    .explicit_bounds
                                    .get(i)
                                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                                to.push((
                                    key("_bucket", &p.attributes, Some(le)),
                                    ts,
                                    running as f64,
                                ));
                            }
                            sum_count(to, &p.attributes, ts, p.sum, p.count);
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        let to = out.series_for(h.aggregation_temporality);
                        for p in &h.data_points {
                            sum_count(to, &p.attributes, millis(p.time_unix_nano), p.sum, p.count);
                        }
                    }
                    Some(metric::Data::Summary(s)) => {
                        for p in &s.data_points {
                            let ts = millis(p.time_unix_nano);
                            sum_count(&mut out.samples, &p.attributes, ts, Some(p.sum), p.count);
                        }
                    }
                    None => {}
                }
            }
        }
    }
    out.samples.retain(|(_, _, v)| v.is_finite());
    out.deltas.retain(|(_, _, v)| v.is_finite());
    out
}

/// OTel span kinds that call out to another service.
const SPAN_KIND_CLIENT: i32 = 3;
const SPAN_KIND_PRODUCER: i32 = 4;
/// `Status.code` ERROR.
const STATUS_ERROR: i32 = 2;

/// The calls of a traces request: one edge per client span that names its peer.
pub fn span_edges(req: &ExportTraceServiceRequest) -> Vec<SpanEdge> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let res = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let Some(client) = res.get("service.name").cloned() else {
            continue;
        };
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                if span.kind != SPAN_KIND_CLIENT && span.kind != SPAN_KIND_PRODUCER {
                    continue;
                }
                let attrs = attributes(&span.attributes);
                let db = attrs
                    .get("db.system")
                    .or_else(|| attrs.get("db.system.name"));
                let messaging = attrs.get("messaging.system");
                let server = attrs
                    .get("peer.service")
                    .or_else(|| attrs.get("server.address"))
                    .or_else(|| attrs.get("net.peer.name"))
                    .or(db)
                    .or(messaging);
                let Some(server) = server else { continue };
                let connection_type = if db.is_some() {
                    Some("database".to_string())
                } else if messaging.is_some() {
                    Some("messaging_system".to_string())
                } else {
                    None
                };
                let failed = span.status.as_ref().is_some_and(|s| s.code == STATUS_ERROR);
                out.push(SpanEdge {
                    ts: millis(span.end_time_unix_nano),
                    client: client.clone(),
                    server: server.clone(),
                    connection_type,
                    requests: 1,
                    errors: u64::from(failed),
                    duration_seconds_sum: span
                        .end_time_unix_nano
                        .saturating_sub(span.start_time_unix_nano)
                        as f64
                        / 1e9,
                });
            }
        }
    }
    out
}

/// OTel severity numbers (1–24) in six bands; 0 (unset) falls back to the severity text.
fn severity(number: i32, text: &str) -> Severity {
    match number {
        1..=4 => Severity::Trace,
        5..=8 => Severity::Debug,
        9..=12 => Severity::Info,
        13..=16 => Severity::Warn,
        17..=20 => Severity::Error,
        21..=24 => Severity::Fatal,
        _ => match text.to_ascii_lowercase().as_str() {
            "trace" => Severity::Trace,
            "debug" => Severity::Debug,
            "warn" | "warning" => Severity::Warn,
            "error" => Severity::Error,
            "fatal" | "critical" => Severity::Fatal,
            _ => Severity::Info,
        },
    }
}

/// The log records of a logs request.
pub fn log_records(req: &ExportLogsServiceRequest) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for rl in &req.resource_logs {
        let resource = Resource {
            attributes: rl
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default(),
        };
        for sl in &rl.scope_logs {
            for l in &sl.log_records {
                let ts = if l.time_unix_nano > 0 {
                    l.time_unix_nano
                } else {
                    l.observed_time_unix_nano
                };
                let line = l.body.as_ref().and_then(value_string).unwrap_or_default();
                // A structured body (JSON or logfmt text) gives its message and fields; the
                // record's own attributes win over fields of the same name.
                let (body, mut attrs) = crate::logline::parts(&line);
                attrs.extend(attributes(&l.attributes));
                // A plain body is the message itself: keep its string.
                let body = match body {
                    std::borrow::Cow::Borrowed(b) if b.len() == line.len() => None,
                    other => Some(other.into_owned()),
                };
                out.push(LogRecord {
                    ts: millis(ts),
                    resource: resource.clone(),
                    severity: severity(l.severity_number, &l.severity_text),
                    body: body.unwrap_or(line),
                    attributes: attrs,
                });
            }
        }
    }
    out
}

/// The OTLP/HTTP error body: a `google.rpc.Status` (code and message).
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `google.rpc.Code` INVALID_ARGUMENT.
pub const INVALID_ARGUMENT: i32 = 3;

/// A message encoded as the request was: protobuf bytes or JSON.
pub fn encode<T: Message + serde::Serialize>(msg: &T, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => msg.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(msg).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Option<Vec<u8>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data/otlp")
            .join(name);
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(_) => {
                eprintln!("skipped: no OTLP example at {}", path.display());
                None
            }
        }
    }

    #[test]
    fn the_official_metrics_example_becomes_prometheus_samples() {
        let Some(body) = example("metrics.json") else {
            return;
        };
        let (req, enc): (ExportMetricsServiceRequest, _) =
            decode("metrics request", Some("application/json"), None, &body).expect("decodes");
        assert_eq!(enc, Encoding::Json);
        let m = metric_samples(&req);
        // The example's counter and histograms are deltas; summed twice, they double.
        let mut acc = DeltaToCumulative::new(100);
        let (once, refused) = acc.accumulate(m.deltas.clone());
        let (twice, _) = acc.accumulate(m.deltas.clone());
        assert_eq!(refused, 0);
        assert!(
            once.iter()
                .zip(&twice)
                .all(|(a, b)| (b.2 - 2.0 * a.2).abs() < 1e-9)
        );
        let all: Vec<_> = m.samples.iter().chain(&once).cloned().collect();
        let names: std::collections::BTreeSet<&str> =
            all.iter().map(|(k, _, _)| k.metric.as_str()).collect();
        // The example's sum, gauge, histogram and exponential histogram.
        for want in [
            "my_counter_total",
            "my_gauge",
            "my_histogram_bucket",
            "my_histogram_count",
            "my_exponential_histogram_count",
        ] {
            assert!(names.contains(want), "{want}: {names:?}");
        }
        let (key, _, _) = &all[0];
        assert_eq!(
            key.labels.get("service").map(String::as_str),
            Some("my.service")
        );
        // Buckets are cumulative, ending at +Inf with the count.
        let values = |name: &str| -> Vec<f64> {
            all.iter()
                .filter(|(k, _, _)| k.metric == name)
                .map(|s| s.2)
                .collect()
        };
        let buckets = values("my_histogram_bucket");
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            buckets.last().copied(),
            values("my_histogram_count").first().copied()
        );
    }

    #[test]
    fn the_official_trace_and_log_examples_decode() {
        if let Some(body) = example("trace.json") {
            let (req, _): (ExportTraceServiceRequest, _) =
                decode("traces request", Some("application/json"), None, &body).expect("decodes");
            assert_eq!(req.resource_spans.len(), 1);
            // Its one span is a server span: no call edge to report.
            assert!(span_edges(&req).is_empty());
        }
        for name in ["logs.json", "events.json"] {
            if let Some(body) = example(name) {
                let (req, _): (ExportLogsServiceRequest, _) =
                    decode("logs request", Some("application/json"), None, &body).expect("decodes");
                let logs = log_records(&req);
                assert!(!logs.is_empty(), "{name}");
                assert_eq!(
                    logs[0].resource.service_name(),
                    Some("my.service"),
                    "{name}"
                );
                if name == "logs.json" {
                    assert_eq!(logs[0].body, "Example log record");
                    assert_eq!(
                        logs[0].attributes.get("int.attribute").map(String::as_str),
                        Some("10"),
                        "a log record's attributes are its labels"
                    );
                }
            }
        }
    }

    #[test]
    fn client_spans_become_calls_to_their_peer() {
        let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},
          "scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /pay","kind":3,
             "startTimeUnixNano":"1000000000","endTimeUnixNano":"1250000000",
             "attributes":[{"key":"peer.service","value":{"stringValue":"payments"}}],"status":{"code":2}},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","name":"SELECT","kind":3,
             "startTimeUnixNano":"1000000000","endTimeUnixNano":"1100000000",
             "attributes":[{"key":"db.system","value":{"stringValue":"postgresql"}},{"key":"server.address","value":{"stringValue":"postgres"}}]},
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b176","name":"handle","kind":2,
             "startTimeUnixNano":"1000000000","endTimeUnixNano":"1100000000"}]}]}]}"#;
        let (req, _): (ExportTraceServiceRequest, _) =
            decode("traces request", Some("application/json"), None, json).expect("decodes");
        let edges = span_edges(&req);
        assert_eq!(edges.len(), 2);
        assert_eq!((edges[0].server.as_str(), edges[0].errors), ("payments", 1));
        assert!((edges[0].duration_seconds_sum - 0.25).abs() < 1e-9);
        assert_eq!(
            (
                edges[1].server.as_str(),
                edges[1].connection_type.as_deref()
            ),
            ("postgres", Some("database"))
        );
    }

    #[test]
    fn protobuf_and_gzip_round_trip_and_bad_bodies_are_named() {
        let req = ExportLogsServiceRequest::default();
        let bytes = req.encode_to_vec();
        let (_, enc): (ExportLogsServiceRequest, _) =
            decode("logs request", Some("application/x-protobuf"), None, &bytes).expect("protobuf");
        assert_eq!(enc, Encoding::Protobuf);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, br#"{"resourceLogs":[]}"#).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert!(
            decode::<ExportLogsServiceRequest>(
                "logs request",
                Some("application/json"),
                Some("gzip"),
                &gz
            )
            .is_ok()
        );

        let err = |ct: Option<&str>, ce: Option<&str>, body: &[u8]| {
            decode::<ExportLogsServiceRequest>("logs request", ct, ce, body).expect_err("refused")
        };
        assert_eq!(err(Some("text/plain"), None, b"{}").status(), 415);
        assert_eq!(
            err(Some("application/json"), Some("br"), b"{}").status(),
            415
        );
        assert_eq!(
            err(Some("application/json"), Some("gzip"), b"not gzip").status(),
            400
        );
        let e = err(Some("application/json"), None, b"{\"resourceLogs\": 5}");
        assert!(e.to_string().contains("logs request"), "{e}");
        assert_eq!(
            err(Some("application/x-protobuf"), None, &[0x0a, 0xff]).status(),
            400
        );
    }

    #[test]
    fn delta_series_are_bounded() {
        let mut acc = DeltaToCumulative::new(1);
        let k = |n: &str| SeriesKey::new(n, &[]);
        let (out, refused) =
            acc.accumulate(vec![(k("a"), 1, 2.0), (k("b"), 1, 5.0), (k("a"), 2, 3.0)]);
        assert_eq!(out, vec![(k("a"), 1, 2.0), (k("a"), 2, 5.0)]);
        assert_eq!(refused, 1);
    }
}
