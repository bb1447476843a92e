//! Nightshift's findings as alerts in the user's Alertmanager (API v2, `POST /api/v2/alerts`),
//! so they route, silence and page like every other alert: an anomaly event on a watched
//! series (`alertname="NightshiftAnomaly"`) and an incident (`alertname="NightshiftIncident"`,
//! with its `incident_id`, the suspected `service`, the root cause and a link to the evidence),
//! and an action that did not fix its incident (`alertname="NightshiftActionFailed"`: a person
//! must take over; it resolves with the incident).
//!
//! Alertmanager keeps an alert firing until its `endsAt`. Active alerts are sent again every
//! `resend` with `endsAt` four resends ahead, so they resolve on their own if Nightshift stops;
//! a finished event or a resolved incident is sent once more with its real end.

use nightshift_core::{Incident, IncidentStatus, Millis, SeriesKey};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// One alert Nightshift raises, keyed by what it is about (`anomaly:…`, `incident:…`).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub key: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Millis,
}

/// What the pipeline thread tells the notifier.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Firing(Outgoing),
    Resolved { key: String, at: Millis },
}

/// Alertmanager API v2 `postableAlert`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Postable<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: String,
    ends_at: String,
}

fn rfc3339(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| String::new(), |t| t.to_string())
}

/// The labels of an anomaly alert: the series' own labels, its name as `metric`, and
/// `alertname`/`severity` (a series label of one of those names becomes `exported_<name>`).
pub fn anomaly_alert(key: &SeriesKey, starts_at: Millis, summary: String) -> Outgoing {
    let mut labels = BTreeMap::new();
    for (k, v) in &key.labels {
        let k = if matches!(k.as_str(), "alertname" | "severity" | "metric") {
            format!("exported_{k}")
        } else {
            k.clone()
        };
        labels.insert(k, v.clone());
    }
    labels.insert("alertname".into(), "NightshiftAnomaly".into());
    labels.insert("severity".into(), "warning".into());
    labels.insert("metric".into(), key.metric.clone());
    Outgoing {
        key: anomaly_key(key),
        labels,
        annotations: [("summary".to_string(), summary)].into(),
        starts_at,
    }
}

/// Resolves the alert [`anomaly_alert`] raised for `key`.
pub fn anomaly_resolved(key: &SeriesKey, at: Millis) -> Notice {
    Notice::Resolved {
        key: anomaly_key(key),
        at,
    }
}

fn anomaly_key(key: &SeriesKey) -> String {
    format!("anomaly:{key}")
}

fn incident_key(incident: &Incident) -> String {
    format!("incident:{}", incident.id)
}

/// The alert of an incident: its id, the top hypothesis' entity as `service`, its title as the
/// summary, the root cause with its first query, and `link` to the incident's evidence.
pub fn incident_alert(incident: &Incident, link: String) -> Outgoing {
    let mut labels = BTreeMap::from([
        ("alertname".to_string(), "NightshiftIncident".to_string()),
        ("severity".to_string(), "critical".to_string()),
        ("incident_id".to_string(), incident.id.clone()),
    ]);
    let mut annotations = BTreeMap::from([
        ("summary".to_string(), incident.title.clone()),
        ("link".to_string(), link),
        // An annotation, not a label: a label that changes would make it another alert.
        (
            "priority".to_string(),
            incident.priority.as_str().to_string(),
        ),
    ]);
    if let Some(top) = incident.hypotheses.first() {
        labels.insert("service".into(), top.entity.name.clone());
        annotations.insert(
            "root_cause".into(),
            format!(
                "{} ({}, {:.0}% of the ranking): {}",
                top.entity.name,
                top.cause,
                top.score * 100.0,
                top.summary
            ),
        );
        if let Some(q) = top.evidence.iter().find_map(|e| e.query.clone()) {
            annotations.insert("evidence".into(), q);
        }
    }
    Outgoing {
        key: incident_key(incident),
        labels,
        annotations,
        starts_at: incident.opened_at,
    }
}

/// The alert escalating an action that did not fix its incident (rolled back, failed, or cut
/// off): its `action_id`, `runbook`, `incident_id` and target `service`, what happened as the
/// summary and a link to the action.
pub fn action_failed_alert(action: &nightshift_act::Action, link: String, at: Millis) -> Outgoing {
    let p = &action.proposal;
    let labels = BTreeMap::from([
        (
            "alertname".to_string(),
            "NightshiftActionFailed".to_string(),
        ),
        ("severity".to_string(), "critical".to_string()),
        ("action_id".to_string(), action.id.clone()),
        ("runbook".to_string(), p.runbook.clone()),
        ("incident_id".to_string(), p.incident.clone()),
        ("service".to_string(), p.target.name.clone()),
    ]);
    let what = action
        .execution
        .as_ref()
        .map(|e| e.summary.clone())
        .or_else(|| action.note.clone())
        .unwrap_or_default();
    let annotations = BTreeMap::from([
        (
            "summary".to_string(),
            format!(
                "{} did not fix {} on {}: {what}; a person must take over",
                p.runbook, p.incident, p.target.name
            ),
        ),
        ("link".to_string(), link),
    ]);
    Outgoing {
        key: action_key(&action.id),
        labels,
        annotations,
        starts_at: at,
    }
}

/// Resolves the alert [`action_failed_alert`] raised for action `id`.
pub fn action_failed_resolved(id: &str, at: Millis) -> Notice {
    Notice::Resolved {
        key: action_key(id),
        at,
    }
}

fn action_key(id: &str) -> String {
    format!("action:{id}")
}

/// The notice for an incident as it stands.
pub fn incident_notice(incident: &Incident, link: String) -> Notice {
    match (incident.status, incident.resolved_at) {
        (IncidentStatus::Resolved, Some(at)) => Notice::Resolved {
            key: incident_key(incident),
            at,
        },
        _ => Notice::Firing(incident_alert(incident, link)),
    }
}

/// Counters of what was sent.
#[derive(Clone, Default)]
pub struct AlertsOutMetrics {
    pub sent: Counter,
    pub failed: Counter,
}

/// The alerts to post now: every active one, ending four resends ahead, and every one resolved
/// since the last successful post, with its real end.
fn batch(
    active: &BTreeMap<String, Outgoing>,
    resolved: &BTreeMap<String, (Outgoing, Millis)>,
    now: Millis,
    resend: Duration,
) -> Vec<u8> {
    let ahead = now + 4 * resend.as_millis() as Millis;
    let mut list: Vec<Postable<'_>> = active
        .values()
        .map(|o| Postable {
            labels: &o.labels,
            annotations: &o.annotations,
            starts_at: rfc3339(o.starts_at),
            ends_at: rfc3339(ahead),
        })
        .collect();
    list.extend(resolved.values().map(|(o, at)| Postable {
        labels: &o.labels,
        annotations: &o.annotations,
        starts_at: rfc3339(o.starts_at),
        ends_at: rfc3339((*at).max(o.starts_at)),
    }));
    serde_json::to_vec(&list).unwrap_or_default()
}

/// Posts to `url` (an Alertmanager's base URL) until the channel closes: changes within a
/// second, everything again every `resend`, and whatever failed on the next try.
pub async fn run(
    client: reqwest::Client,
    url: String,
    resend: Duration,
    mut rx: mpsc::Receiver<Notice>,
    metrics: AlertsOutMetrics,
) {
    let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
    let mut active: BTreeMap<String, Outgoing> = BTreeMap::new();
    let mut resolved: BTreeMap<String, (Outgoing, Millis)> = BTreeMap::new();
    let mut dirty = false;
    let mut last_sent = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            notice = rx.recv() => match notice {
                Some(Notice::Firing(o)) => {
                    resolved.remove(&o.key);
                    active.insert(o.key.clone(), o);
                    dirty = true;
                }
                Some(Notice::Resolved { key, at }) => {
                    if let Some(o) = active.remove(&key) {
                        resolved.insert(key, (o, at));
                        dirty = true;
                    }
                }
                None => {
                    // Shutting down: one last post of what ended.
                    if !resolved.is_empty() {
                        let body = batch(&BTreeMap::new(), &resolved, crate::now_ms(), resend);
                        let _ = post(&client, &endpoint, body, &metrics).await;
                    }
                    return;
                }
            },
            _ = tick.tick() => {
                let due = last_sent.elapsed() >= resend && !active.is_empty();
                if dirty || due {
                    let body = batch(&active, &resolved, crate::now_ms(), resend);
                    if post(&client, &endpoint, body, &metrics).await {
                        resolved.clear();
                        dirty = false;
                        last_sent = tokio::time::Instant::now();
                    }
                }
            }
        }
    }
}

async fn post(
    client: &reqwest::Client,
    endpoint: &str,
    body: Vec<u8>,
    m: &AlertsOutMetrics,
) -> bool {
    let result = client
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    match result {
        Ok(r) if r.status().is_success() => {
            m.sent.inc();
            true
        }
        Ok(r) => {
            m.failed.inc();
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            tracing::warn!(%status, body = %text.trim(), "Alertmanager refused Nightshift's alerts");
            false
        }
        Err(e) => {
            m.failed.inc();
            tracing::warn!(error = %e, "cannot reach Alertmanager");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomaly_labels_keep_the_series_and_rename_clashes() {
        let key = SeriesKey::new("up", &[("job", "api"), ("severity", "low")]);
        let o = anomaly_alert(&key, 5, "s".into());
        assert_eq!(o.labels["alertname"], "NightshiftAnomaly");
        assert_eq!(o.labels["metric"], "up");
        assert_eq!(o.labels["job"], "api");
        assert_eq!(o.labels["exported_severity"], "low");
        assert_eq!(o.labels["severity"], "warning");
    }

    #[test]
    fn active_alerts_end_ahead_and_resolved_ones_at_their_end() {
        let key = SeriesKey::new("up", &[]);
        let a = anomaly_alert(&key, 1_000, "s".into());
        let active = BTreeMap::from([(a.key.clone(), a.clone())]);
        let resolved = BTreeMap::from([("x".to_string(), (a, 61_000))]);
        let body = batch(&active, &resolved, 120_000, Duration::from_secs(60));
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v[0]["endsAt"], "1970-01-01T00:06:00Z");
        assert_eq!(v[1]["endsAt"], "1970-01-01T00:01:01Z");
        assert_eq!(v[0]["startsAt"], "1970-01-01T00:00:01Z");
    }
}
