//! Metric series identity (a Prometheus metric name plus labels) and samples.

use crate::{Millis, Resource, fnv1a};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A metric series: its name and its labels (without `__name__`), sorted by label name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    pub metric: String,
    pub labels: BTreeMap<String, String>,
}

impl SeriesKey {
    pub fn new(metric: &str, labels: &[(&str, &str)]) -> Self {
        Self {
            metric: metric.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    pub fn with_label(mut self, name: &str, value: &str) -> Self {
        self.labels.insert(name.to_string(), value.to_string());
        self
    }

    pub fn without_label(mut self, name: &str) -> Self {
        self.labels.remove(name);
        self
    }

    /// A stable 64-bit fingerprint of name and labels.
    pub fn fingerprint(&self) -> u64 {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(self.metric.as_bytes());
        for (k, v) in &self.labels {
            buf.push(0xff);
            buf.extend_from_slice(k.as_bytes());
            buf.push(0xfe);
            buf.extend_from_slice(v.as_bytes());
        }
        fnv1a(&buf)
    }

    /// The OTel resource the labels describe.
    pub fn resource(&self) -> Resource {
        Resource::from_prometheus_labels(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The series as a PromQL selector, e.g. `up{job="api"}`; pasteable into Prometheus.
    pub fn selector(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::query::selector(
            &self.metric,
            self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ))
    }
}

/// One observation of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub ts: Millis,
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_is_valid_promql() {
        let k = SeriesKey::new(
            "http_requests_total",
            &[("service", "api"), ("code", "500")],
        );
        assert_eq!(
            k.selector(),
            r#"http_requests_total{code="500",service="api"}"#
        );
    }

    #[test]
    fn fingerprint_depends_on_labels_not_insertion_order() {
        let a = SeriesKey::new("m", &[("a", "1"), ("b", "2")]);
        let b = SeriesKey::new("m", &[("b", "2"), ("a", "1")]);
        let c = SeriesKey::new("m", &[("a", "1"), ("b", "3")]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
    }
}
