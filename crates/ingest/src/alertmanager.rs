//! Alerts as Alertmanager delivers them: the webhook receiver's payload (version 4) and the
//! postable alerts of Alertmanager's API v2 (`POST /api/v2/alerts`), which Prometheus and
//! other senders use. Both become [`Alert`]s with the fingerprint Alertmanager gives the same
//! label set (FNV-1a over the sorted labels, [`nightshift_core::alert::fingerprint`]).
//!
//! Webhook: <https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>.
//! API v2: <https://github.com/prometheus/alertmanager/blob/main/api/v2/openapi.yaml>.

use crate::remote_write::valid_label_name;
use nightshift_core::{Alert, AlertStatus, Millis, alert::fingerprint};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Alerts in one request at most: Alertmanager sends a group's alerts together (its
/// `max_alerts` is unlimited by default), and a group of 10,000 alerts is already a storm.
pub const MAX_ALERTS: usize = 10_000;

/// Why an alert payload was refused (always a 400: the sender must fix it, not retry).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlertError {
    #[error("the body is not valid JSON for {what}: {detail}")]
    Json { what: &'static str, detail: String },
    #[error("webhook payload version {0:?} is not supported; Alertmanager sends version \"4\"")]
    Version(String),
    #[error("alert {index}: {problem}")]
    Alert { index: usize, problem: String },
    #[error("{0} alerts in one request, more than the {MAX_ALERTS} allowed")]
    TooMany(usize),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: String,
    alerts: Vec<WebhookAlert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: String,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Postable {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    generator_url: Option<String>,
}

fn json_error(what: &'static str, e: &serde_json::Error) -> AlertError {
    AlertError::Json {
        what,
        detail: e.to_string(),
    }
}

/// RFC 3339 time; Go's zero time (`0001-01-01T00:00:00Z`, "not set") and an empty string are
/// `None`.
fn parse_time(s: &str) -> Result<Option<Millis>, String> {
    let s = s.trim();
    if s.is_empty() || s.starts_with("0001-01-01") {
        return Ok(None);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| Some(t.as_millisecond()))
        .map_err(|e| format!("time {s:?} is not RFC 3339: {e}"))
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.is_empty() {
        return Err("an alert needs at least one label".into());
    }
    match labels.keys().find(|k| !valid_label_name(k)) {
        Some(k) => Err(format!("label name {k:?} is not valid")),
        None => Ok(()),
    }
}

/// Decodes an Alertmanager webhook body (`version: "4"`).
pub fn decode_webhook(body: &[u8]) -> Result<Vec<Alert>, AlertError> {
    let hook: Webhook =
        serde_json::from_slice(body).map_err(|e| json_error("an Alertmanager webhook", &e))?;
    if hook.version != "4" {
        return Err(AlertError::Version(hook.version));
    }
    if hook.alerts.len() > MAX_ALERTS {
        return Err(AlertError::TooMany(hook.alerts.len()));
    }
    hook.alerts
        .into_iter()
        .enumerate()
        .map(|(index, a)| {
            let fail = |problem: String| AlertError::Alert { index, problem };
            check_labels(&a.labels).map_err(fail)?;
            let status = match a.status.as_str() {
                "firing" => AlertStatus::Firing,
                "resolved" => AlertStatus::Resolved,
                other => {
                    return Err(fail(format!(
                        "status {other:?} is neither firing nor resolved"
                    )));
                }
            };
            let starts_at = parse_time(&a.starts_at)
                .map_err(fail)?
                .ok_or_else(|| fail("startsAt is not set".into()))?;
            let ends_at = match &a.ends_at {
                Some(t) => parse_time(t).map_err(fail)?,
                None => None,
            };
            Ok(Alert {
                fingerprint: fingerprint(&a.labels),
                labels: a.labels,
                annotations: a.annotations,
                status,
                starts_at,
                // Alertmanager sets endsAt on firing alerts too (when it will consider them
                // resolved without news); only a resolved alert has ended.
                ends_at: ends_at.filter(|_| status == AlertStatus::Resolved),
                source: None,
            })
        })
        .collect()
}

/// Decodes Alertmanager API v2 postable alerts (a JSON array). `now` fills a missing
/// `startsAt`; an alert whose `endsAt` is not after `now` is resolved, as Alertmanager reads it.
pub fn decode_postable(body: &[u8], now: Millis) -> Result<Vec<Alert>, AlertError> {
    let list: Vec<Postable> = serde_json::from_slice(body)
        .map_err(|e| json_error("Alertmanager API v2 postable alerts", &e))?;
    if list.len() > MAX_ALERTS {
        return Err(AlertError::TooMany(list.len()));
    }
    list.into_iter()
        .enumerate()
        .map(|(index, a)| {
            let fail = |problem: String| AlertError::Alert { index, problem };
            check_labels(&a.labels).map_err(fail)?;
            let starts_at = match &a.starts_at {
                Some(t) => parse_time(t).map_err(fail)?.unwrap_or(now),
                None => now,
            };
            let ends_at = match &a.ends_at {
                Some(t) => parse_time(t).map_err(fail)?,
                None => None,
            };
            if ends_at.is_some_and(|e| e < starts_at) {
                return Err(fail("endsAt is before startsAt".into()));
            }
            let resolved = ends_at.is_some_and(|e| e <= now);
            Ok(Alert {
                fingerprint: fingerprint(&a.labels),
                labels: a.labels,
                annotations: a.annotations,
                status: if resolved {
                    AlertStatus::Resolved
                } else {
                    AlertStatus::Firing
                },
                starts_at,
                ends_at: ends_at.filter(|_| resolved),
                source: None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEBHOOK: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "truncatedAlerts": 0,
      "status": "firing", "receiver": "nightshift", "groupLabels": {"alertname": "HighLatency"},
      "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
      "alerts": [
        {"status": "firing", "labels": {"alertname": "HighLatency", "service": "checkout"},
         "annotations": {"summary": "p99 above 1s"}, "startsAt": "2026-11-21T10:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "x"},
        {"status": "resolved", "labels": {"alertname": "HighLatency", "service": "cart"},
         "annotations": {}, "startsAt": "2026-11-21T09:00:00Z",
         "endsAt": "2026-11-21T09:30:00.5Z", "generatorURL": "", "fingerprint": "y"}
      ]}"#;

    #[test]
    fn a_webhook_gives_firing_and_resolved_alerts() {
        let alerts = decode_webhook(WEBHOOK.as_bytes()).expect("valid");
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].status, AlertStatus::Firing);
        assert_eq!(alerts[0].starts_at, 1_795_255_200_000);
        assert_eq!(alerts[0].ends_at, None);
        assert_eq!(alerts[0].annotations["summary"], "p99 above 1s");
        assert_eq!(alerts[1].status, AlertStatus::Resolved);
        assert_eq!(alerts[1].ends_at, Some(1_795_253_400_500));
        assert_eq!(alerts[0].fingerprint, fingerprint(&alerts[0].labels));
    }

    #[test]
    fn fingerprints_are_alertmanagers() {
        // Alertmanager's fingerprint of {alertname="Test"} (model.LabelSet.Fingerprint, FNV-1a
        // over name, 0xff, value, 0xff), as Prometheus' common/model computes it.
        let labels: BTreeMap<String, String> =
            [("alertname".to_string(), "Test".to_string())].into();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in b"alertname\xffTest\xff" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(fingerprint(&labels), format!("{h:016x}"));
    }

    #[test]
    fn postable_alerts_resolve_by_their_end() {
        let now = 1_795_255_200_000;
        let body = br#"[
          {"labels": {"alertname": "A"}},
          {"labels": {"alertname": "B"}, "startsAt": "2026-11-21T09:00:00Z", "endsAt": "2026-11-21T09:30:00Z"},
          {"labels": {"alertname": "C"}, "endsAt": "2026-11-21T11:00:00Z"}
        ]"#;
        let alerts = decode_postable(body, now).expect("valid");
        let st: Vec<_> = alerts
            .iter()
            .map(|a| (a.status, a.starts_at, a.ends_at))
            .collect();
        assert_eq!(
            st,
            vec![
                (AlertStatus::Firing, now, None),
                (
                    AlertStatus::Resolved,
                    now - 3_600_000,
                    Some(now - 1_800_000)
                ),
                (AlertStatus::Firing, now, None),
            ]
        );
    }

    #[test]
    fn bad_payloads_are_named() {
        let cases: [(&[u8], &str); 6] = [
            (b"{", "not valid JSON"),
            (br#"{"version": "3", "alerts": []}"#, "version \"3\""),
            (br#"{"version": "4", "alerts": [{"status": "firing", "labels": {}, "startsAt": "2026-11-21T10:00:00Z"}]}"#, "alert 0: an alert needs at least one label"),
            (br#"{"version": "4", "alerts": [{"status": "firing", "labels": {"a-b": "x"}, "startsAt": "2026-11-21T10:00:00Z"}]}"#, "label name \"a-b\""),
            (br#"{"version": "4", "alerts": [{"status": "pending", "labels": {"a": "x"}, "startsAt": "2026-11-21T10:00:00Z"}]}"#, "status \"pending\""),
            (br#"{"version": "4", "alerts": [{"status": "firing", "labels": {"a": "x"}, "startsAt": "yesterday"}]}"#, "not RFC 3339"),
        ];
        for (body, want) in cases {
            let err = decode_webhook(body).expect_err(want).to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = decode_postable(br#"[{"labels": {"a": "x"}, "bogus": 1}]"#, 0)
            .expect_err("unknown field");
        assert!(err.to_string().contains("bogus"), "{err}");
        let err = decode_postable(br#"[{"labels": {"a": "x"}, "startsAt": "2026-11-21T10:00:00Z", "endsAt": "2026-11-21T09:00:00Z"}]"#, 0)
            .expect_err("ends before it starts");
        assert!(
            err.to_string().contains("endsAt is before startsAt"),
            "{err}"
        );
    }
}
