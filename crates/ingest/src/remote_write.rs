//! Prometheus remote-write 1.0: what a Prometheus (or Grafana Agent, vmagent, OpenTelemetry
//! Collector) sends to `POST /api/v1/write`.
//!
//! The body is a `prometheus.WriteRequest` protobuf compressed with snappy's *block* format
//! (<https://prometheus.io/docs/specs/remote_write_spec/>). The few messages are declared here
//! with `prost` derives rather than generated from Prometheus' `.proto` files, which would need
//! `protoc` at build time; the field numbers are the spec's.
//!
//! What the sender does with the answer matters: Prometheus retries 5xx (and 429 when told to)
//! and drops a batch answered 4xx. So everything wrong *with the data* is a 4xx
//! ([`RemoteWriteError::status`]), and only the receiver being busy is a 5xx, which the server
//! decides.

use nightshift_core::{Millis, SeriesKey};
use prost::Message;

/// The decompressed body may be at most this large (32 MiB): Prometheus sends batches of at most
/// a few thousand samples (`max_samples_per_send`, 2,000 by default), a few hundred KiB.
pub const MAX_DECODED_BYTES: usize = 32 << 20;
/// A body may decompress to at most this many times its own size (past a floor of 1 MiB):
/// real telemetry compresses 5 to 20 times, a decompression bomb thousands of times.
pub const MAX_RATIO: usize = 100;

/// How large a body of `compressed` bytes may decompress to: the ratio limit, at most
/// [`MAX_DECODED_BYTES`].
pub fn decoded_limit(compressed: usize) -> usize {
    MAX_DECODED_BYTES.min(compressed.saturating_mul(MAX_RATIO).max(1 << 20))
}

/// Samples further than this ahead of the receiver's clock are refused (10 minutes, Prometheus'
/// own out-of-bounds limit for appends): a clock that far off would poison every baseline.
pub const MAX_FUTURE_MS: Millis = 10 * 60_000;
/// Samples older than this behind the receiver's clock are dropped (seven days): history sent
/// to warm a detector's seasonality (a day or two) is taken, a clock reset to 1970 or a year
/// off is not.
pub const MAX_PAST_MS: Millis = 7 * 24 * 3_600_000;

/// Drops the samples outside what a live receiver takes (older than [`MAX_PAST_MS`], newer
/// than [`MAX_FUTURE_MS`] against `now`): how many were (too old, too new).
pub fn drop_out_of_bounds(
    samples: &mut Vec<(SeriesKey, Millis, f64)>,
    now: Millis,
) -> (usize, usize) {
    let (oldest, newest) = (
        now.saturating_sub(MAX_PAST_MS),
        now.saturating_add(MAX_FUTURE_MS),
    );
    let (mut old, mut new) = (0, 0);
    samples.retain(|(_, t, _)| {
        if *t < oldest {
            old += 1;
            false
        } else if *t > newest {
            new += 1;
            false
        } else {
            true
        }
    });
    (old, new)
}

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a write request was refused. Every variant is a problem with the request itself, so the
/// sender must not retry it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("Content-Encoding must be snappy (remote-write 1.0), not {0:?}")]
    Encoding(String),
    #[error("Content-Type must be application/x-protobuf, not {0:?}")]
    ContentType(String),
    #[error("the body is not snappy block-compressed: {0}")]
    Snappy(String),
    #[error("the body decompresses to {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("the body is not a prometheus.WriteRequest protobuf: {0}")]
    Protobuf(String),
    /// Some series were refused; the others in the request were accepted.
    #[error(
        "series {series} of the request: {problem} ({refused} of {total} series refused, the rest accepted)"
    )]
    Series {
        series: usize,
        problem: String,
        refused: usize,
        total: usize,
    },
}

impl RemoteWriteError {
    /// The HTTP status to answer with: 413 for a body too large, 415 for a wrong content type
    /// or encoding, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Self::TooLarge { .. } => 413,
            Self::Encoding(_) | Self::ContentType(_) => 415,
            _ => 400,
        }
    }
}

/// The samples of one write request, in request order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteBatch {
    pub samples: Vec<(SeriesKey, Millis, f64)>,
    /// Staleness markers and other NaNs: a series going away, not a value.
    pub stale: usize,
    /// Series refused (see [`RemoteWriteError::Series`]): kept out of `samples`.
    pub refused: usize,
}

/// Checks the headers and decodes a remote-write body. `now` is the receiver's clock, for the
/// future-timestamp check.
///
/// A request whose series are partly invalid gives `Ok` for the valid ones together with the
/// error for the first invalid one (`(batch, Some(err))`): the caller stores the batch and
/// answers 400, as Prometheus' own receiver does, so accepted data is never lost and the sender
/// does not retry the bad series.
pub fn decode_write_request(
    content_encoding: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
    now: Millis,
) -> Result<(WriteBatch, Option<RemoteWriteError>), RemoteWriteError> {
    match content_encoding.map(str::trim) {
        Some(e) if e.eq_ignore_ascii_case("snappy") => {}
        other => return Err(RemoteWriteError::Encoding(other.unwrap_or("").to_string())),
    }
    // Parameters such as `;proto=prometheus.WriteRequest` (remote-write 2.0's negotiation) are
    // allowed only with the 1.0 message.
    let ct = content_type.unwrap_or("").trim();
    let (media, params) = ct.split_once(';').unwrap_or((ct, ""));
    let proto_ok = params
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("proto="))
        .all(|p| p == "prometheus.WriteRequest");
    if !media.trim().eq_ignore_ascii_case("application/x-protobuf") || !proto_ok {
        return Err(RemoteWriteError::ContentType(ct.to_string()));
    }
    let size =
        snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if size > decoded_limit(body.len()) {
        return Err(RemoteWriteError::TooLarge {
            size,
            max: decoded_limit(body.len()),
        });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    let req = WriteRequest::decode(raw.as_slice())
        .map_err(|e| RemoteWriteError::Protobuf(e.to_string()))?;
    Ok(normalise(req, now))
}

/// The samples of `req`, each series checked; the first problem is returned beside them.
pub fn normalise(req: WriteRequest, now: Millis) -> (WriteBatch, Option<RemoteWriteError>) {
    let total = req.timeseries.len();
    let mut batch = WriteBatch::default();
    let mut first: Option<(usize, String)> = None;
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        match series_key(ts.labels).and_then(|key| check_samples(&ts.samples, now).map(|()| key)) {
            Ok(key) => {
                // Most series carry one sample: the key moves into the last one, not a copy.
                let mut key = Some(key);
                let n = ts.samples.len();
                for (j, s) in ts.samples.iter().enumerate() {
                    if s.value.is_nan() {
                        batch.stale += 1;
                        continue;
                    }
                    let k = if j + 1 == n { key.take() } else { key.clone() };
                    if let Some(k) = k {
                        batch.samples.push((k, s.timestamp, s.value));
                    }
                }
            }
            Err(problem) => {
                batch.refused += 1;
                first.get_or_insert((i, problem));
            }
        }
    }
    let err = first.map(|(series, problem)| RemoteWriteError::Series {
        series,
        problem,
        refused: batch.refused,
        total,
    });
    (batch, err)
}

fn check_samples(samples: &[Sample], now: Millis) -> Result<(), String> {
    match samples
        .iter()
        .find(|s| s.timestamp > now.saturating_add(MAX_FUTURE_MS))
    {
        Some(s) => Err(format!(
            "sample at {} ms is more than 10 minutes ahead of this receiver's clock ({now} ms)",
            s.timestamp
        )),
        None => Ok(()),
    }
}

/// Prometheus' label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    nightshift_core::is_identifier(name)
}

/// Prometheus' metric name rule: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn series_key(labels: Vec<Label>) -> Result<SeriesKey, String> {
    let mut key = SeriesKey {
        metric: String::new(),
        labels: Default::default(),
    };
    for l in labels {
        if l.name == "__name__" {
            if !valid_metric_name(&l.value) {
                return Err(format!("metric name {:?} is not valid", l.value));
            }
            key.metric = l.value;
            continue;
        }
        if !valid_label_name(&l.name) {
            return Err(format!("label name {:?} is not valid", l.name));
        }
        // An empty value is the same as no label, in Prometheus.
        if l.value.is_empty() {
            continue;
        }
        if key.labels.contains_key(&l.name) {
            return Err(format!("label {:?} appears twice", l.name));
        }
        key.labels.insert(l.name, l.value);
    }
    if key.metric.is_empty() {
        return Err("the series has no __name__ label".into());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_700_000_000_000;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
        }
    }

    fn body(req: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .expect("compresses")
    }

    fn decode(body: &[u8]) -> Result<(WriteBatch, Option<RemoteWriteError>), RemoteWriteError> {
        decode_write_request(Some("snappy"), Some("application/x-protobuf"), body, NOW)
    }

    #[test]
    fn a_write_request_becomes_samples() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    &[("__name__", "up"), ("job", "api"), ("instance", "a:9090")],
                    &[(NOW - 15_000, 1.0), (NOW, 0.0)],
                ),
                // A staleness marker (Prometheus' special NaN) is not a value.
                series(
                    &[("__name__", "up"), ("job", "db")],
                    &[(NOW, f64::from_bits(0x7ff0_0000_0000_0002))],
                ),
            ],
        };
        let (batch, err) = decode(&body(&req)).expect("valid");
        assert_eq!(err, None);
        assert_eq!(batch.stale, 1);
        let key = SeriesKey::new("up", &[("job", "api"), ("instance", "a:9090")]);
        assert_eq!(
            batch.samples,
            vec![(key.clone(), NOW - 15_000, 1.0), (key, NOW, 0.0)]
        );
    }

    #[test]
    fn wrong_headers_are_refused_with_415() {
        let b = body(&WriteRequest::default());
        for (enc, ct) in [
            (None, Some("application/x-protobuf")),
            (Some("gzip"), Some("application/x-protobuf")),
            (Some("snappy"), Some("application/json")),
            (Some("snappy"), None),
            (
                Some("snappy"),
                Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
            ),
        ] {
            let err = decode_write_request(enc, ct, &b, NOW).expect_err("refused");
            assert_eq!(err.status(), 415, "{enc:?} {ct:?}: {err}");
        }
        assert!(
            decode_write_request(
                Some("snappy"),
                Some("application/x-protobuf; proto=prometheus.WriteRequest"),
                &b,
                NOW
            )
            .is_ok()
        );
    }

    #[test]
    fn broken_bodies_are_refused_with_400() {
        // Not snappy at all.
        let err = decode(b"\xff\xff\xff\xff\xff\xff").expect_err("not snappy");
        assert!(matches!(err, RemoteWriteError::Snappy(_)), "{err}");
        // Snappy around bytes that are no protobuf (a truncated field).
        let junk = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0x7f, 0x01])
            .expect("compresses");
        let err = decode(&junk).expect_err("not protobuf");
        assert!(matches!(err, RemoteWriteError::Protobuf(_)), "{err}");
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn a_body_that_would_decompress_too_large_is_refused_before_decompressing() {
        // A snappy block header claiming 64 MiB, with no data behind it.
        let mut header = Vec::new();
        let mut n = 64usize << 20;
        while n >= 0x80 {
            header.push((n as u8) | 0x80);
            n >>= 7;
        }
        header.push(n as u8);
        let err = decode(&header).expect_err("too large");
        assert_eq!(err.status(), 413, "{err}");
    }

    #[test]
    fn bad_series_are_named_and_good_ones_kept() {
        let req = WriteRequest {
            timeseries: vec![
                series(&[("__name__", "ok")], &[(NOW, 1.0)]),
                series(&[("__name__", "x"), ("bad-label", "v")], &[(NOW, 1.0)]),
                series(&[("__name__", "9lives")], &[(NOW, 1.0)]),
                series(&[("job", "no-name")], &[(NOW, 1.0)]),
                series(
                    &[("__name__", "dup"), ("a", "1"), ("a", "2")],
                    &[(NOW, 1.0)],
                ),
                series(&[("__name__", "future")], &[(NOW + 3_600_000, 1.0)]),
                series(&[("__name__", "also_ok")], &[(NOW, 2.0)]),
            ],
        };
        let (batch, err) = decode(&body(&req)).expect("decodes");
        assert_eq!(batch.samples.len(), 2, "the two valid series are kept");
        assert_eq!(batch.refused, 5);
        let err = err.expect("the first problem is reported");
        assert_eq!(err.status(), 400);
        let text = err.to_string();
        assert!(
            text.contains("series 1") && text.contains("\"bad-label\""),
            "{text}"
        );
        assert!(text.contains("5 of 7 series refused"), "{text}");
        for (i, ts) in req.timeseries.iter().enumerate().skip(2).take(4) {
            let (_, e) = normalise(
                WriteRequest {
                    timeseries: vec![ts.clone()],
                },
                NOW,
            );
            assert!(e.is_some(), "series {i} refused");
        }
    }

    #[test]
    fn names_follow_prometheus_rules() {
        assert!(valid_label_name("_a1") && !valid_label_name("1a") && !valid_label_name("a:b"));
        assert!(valid_metric_name("a:b_c") && !valid_metric_name("") && !valid_metric_name("a-b"));
    }
}
