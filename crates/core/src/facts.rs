//! What an incident knows about each entity: its own anomalous series, the anomalous calls into
//! and out of it, Kubernetes events, new log patterns and alerts. Ranking reads only this.

use crate::{Direction, Event, EventType, LogPattern, Millis, Severity, SignalClass};
use std::collections::BTreeMap;

/// One anomalous series of the entity, summarised over the incident.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesFact {
    pub metric: String,
    pub selector: String,
    pub class: SignalClass,
    pub direction: Direction,
    pub first_ts: Millis,
    pub peak_ts: Millis,
    pub peak_score: f64,
    pub value: f64,
    pub expected: f64,
    pub promql: String,
    pub detector: String,
    pub reports: u32,
}

/// Anomalous calls on one edge, seen from one end.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeFact {
    pub peer: String,
    pub class: SignalClass,
    pub first_ts: Millis,
    pub peak_score: f64,
    pub value: f64,
    pub expected: f64,
    pub promql: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventFact {
    pub reason: String,
    pub event_type: EventType,
    pub first_ts: Millis,
    pub count: u32,
    pub object: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogFact {
    pub template: String,
    pub severity: Severity,
    pub first_ts: Millis,
    pub count: u64,
    pub new: bool,
    pub vanished: bool,
    /// Lines per interval the baseline expected, when the template's rate shifted.
    pub usual_rate: Option<f64>,
    pub examples: Vec<String>,
    /// When the entity first and last logged the template (the report times are `first_ts`).
    pub first_seen: Millis,
    pub last_ts: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertFact {
    pub alertname: String,
    pub first_ts: Millis,
    pub firings: u32,
    pub severity: String,
}

/// Everything an incident knows about one entity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityFacts {
    pub first_ts: Option<Millis>,
    pub last_ts: Option<Millis>,
    /// When the entity's metrics, calls or Kubernetes events first went wrong. Logs and alerts
    /// don't count: rare log lines linger in the pending buffer and alerts lag by design.
    pub onset_ts: Option<Millis>,
    /// Own anomalous series by selector (edge series excluded).
    pub series: BTreeMap<String, SeriesFact>,
    /// Anomalous calls into this entity, by client.
    pub edges_in: BTreeMap<(String, SignalClass), EdgeFact>,
    /// Anomalous calls out of this entity, by server.
    pub edges_out: BTreeMap<(String, SignalClass), EdgeFact>,
    pub events: BTreeMap<String, EventFact>,
    pub logs: BTreeMap<String, LogFact>,
    pub alerts: BTreeMap<String, AlertFact>,
}

impl EntityFacts {
    pub fn touch(&mut self, ts: Millis) {
        self.first_ts = Some(self.first_ts.map_or(ts, |f| f.min(ts)));
        self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
    }

    /// Like `touch`, for facts that date the onset.
    pub fn touch_onset(&mut self, ts: Millis) {
        self.touch(ts);
        self.onset_ts = Some(self.onset_ts.map_or(ts, |f| f.min(ts)));
    }

    pub fn add_event(&mut self, e: &Event) {
        self.touch_onset(e.ts);
        let f = self
            .events
            .entry(e.reason.clone())
            .or_insert_with(|| EventFact {
                reason: e.reason.clone(),
                event_type: e.event_type,
                first_ts: e.ts,
                count: 0,
                object: e.object.clone(),
                message: e.message.clone(),
            });
        f.count += 1;
    }

    pub fn add_log(&mut self, p: &LogPattern) {
        self.touch(p.ts);
        let f = self
            .logs
            .entry(p.template.clone())
            .or_insert_with(|| LogFact {
                template: p.template.clone(),
                severity: p.severity,
                first_ts: p.ts,
                count: 0,
                new: p.new,
                vanished: p.vanished,
                usual_rate: p.usual_rate,
                examples: p.examples.clone(),
                first_seen: p.first_seen,
                last_ts: p.last_seen,
            });
        f.count += p.count;
        f.new |= p.new;
        f.vanished |= p.vanished;
        f.usual_rate = f.usual_rate.or(p.usual_rate);
        f.last_ts = f.last_ts.max(p.last_seen);
        for e in &p.examples {
            if f.examples.len() < 2 && !f.examples.contains(e) {
                f.examples.push(e.clone());
            }
        }
    }

    /// The strongest score per class among the entity's own series.
    pub fn class_peak(&self, class: SignalClass) -> f64 {
        self.series
            .values()
            .filter(|s| s.class == class)
            .map(|s| s.peak_score)
            .fold(0.0, f64::max)
    }

    pub fn has_own_health_signal(&self) -> bool {
        self.series
            .values()
            .any(|s| s.class != SignalClass::Traffic)
            || self
                .events
                .values()
                .any(|e| e.event_type == EventType::Warning)
            || self
                .logs
                .values()
                .any(|l| l.new && l.severity >= Severity::Error)
    }
}
