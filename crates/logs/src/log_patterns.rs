//! Log anomalies per service from the template miner ([`crate::template_miner`]):
//!
//! - a warning-or-worse template a service never logged before (after warm-up);
//! - a burst: a warning-or-worse template logged at several times its usual rate in one interval;
//! - a rate shift: a busy template (of any severity) whose lines per interval moved away from
//!   their learned normal and stayed there, judged by the metric detectors' robust baseline
//!   ([`RobustBaselineDetector`]) on the template's count series, so a log rate is held to the
//!   same standard (persistence, learned spread, daily profile) as any metric;
//! - an ordinary (below warning) template a service logged steadily that has stopped.
//!
//! Each report carries the template, its count, when the service first and last logged it and
//! two example lines.

use crate::template_miner::{MinerConfig, TemplateMiner};
use nightshift_core::{Entity, LogPattern, LogRecord, Millis, Severity};
use nightshift_detect::{Phase, RobustBaselineConfig, RobustBaselineDetector};
use std::collections::HashMap;

/// Intervals of history a template's rate needs before bursts and silences count.
const RATE_WARMUP: u64 = 20;
/// A burst: at least this many lines and this many times the usual rate.
const BURST_LINES: u64 = 5;
const BURST_FACTOR: f64 = 5.0;
/// A silence: this many intervals in a row without a line from a template that averaged at
/// least one a interval (a chance of e^-10 for a steady source).
const SILENT_INTERVALS: u64 = 10;
/// A template gets a rate baseline once it averages this many lines an interval: below it, a
/// count series is mostly zeros and ones, and a shift cannot be told from chance.
const SHIFT_MIN_RATE: f64 = 2.0;

/// The count series' baseline: the default tuning, with a spread floor of one line so that a
/// perfectly regular template (one line a tick) does not alarm on a single extra line.
fn rate_baseline() -> RobustBaselineDetector {
    RobustBaselineDetector::new(RobustBaselineConfig {
        absolute_floor: 1.0,
        relative_floor: 0.1,
        ..RobustBaselineConfig::default()
    })
}

#[derive(Debug, Default)]
struct TemplateState {
    /// Exponentially weighted lines per interval, learned while the template is not bursting.
    mean: f64,
    intervals_seen: u64,
    pending: u64,
    /// Intervals in a row without a line.
    silent: u64,
    severity: Option<Severity>,
    examples: Vec<String>,
    first_seen: Millis,
    last_seen: Millis,
    reported_new: bool,
    reported_vanished: bool,
    /// The rate baseline, once the template is busy enough for one ([`SHIFT_MIN_RATE`]).
    rate: Option<Box<RobustBaselineDetector>>,
}

/// Tracks each service's templates and reports the new, bursting and vanished ones at each
/// flush. One miner serves every service (the same code logs the same lines); the states are
/// per (service, template), and follow the miner's eviction, so memory stays bounded.
#[derive(Debug)]
pub struct LogTemplateTracker {
    miner: TemplateMiner,
    templates: HashMap<(String, u64), TemplateState>,
}

impl Default for LogTemplateTracker {
    fn default() -> Self {
        Self::with_config(MinerConfig::default())
    }
}

impl LogTemplateTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker whose miner has `cfg` (checked by [`MinerConfig::validate`]).
    pub fn with_config(cfg: MinerConfig) -> Self {
        Self {
            miner: TemplateMiner::new(cfg),
            templates: HashMap::new(),
        }
    }

    /// Templates known to the miner.
    /// The miner's settings.
    pub fn miner_config(&self) -> &MinerConfig {
        self.miner.config()
    }

    pub fn templates(&self) -> usize {
        self.miner.len()
    }

    pub fn ingest(&mut self, log: &LogRecord) {
        // A line without a service in its resource may name one among its own fields (a JSON
        // line's `"service": "checkout"`).
        let Some(service) = log.resource.service_name().or_else(|| {
            ["service.name", "service_name", "service"]
                .iter()
                .find_map(|k| log.attributes.get(*k).map(String::as_str))
        }) else {
            return;
        };
        let id = self.miner.add(&log.body).template_id;
        let st = self.templates.entry((service.to_string(), id)).or_default();
        st.pending += 1;
        if st.severity.is_none_or(|s| log.severity > s) {
            st.severity = Some(log.severity);
        }
        if st.examples.len() < 2 && !st.examples.contains(&log.body) {
            st.examples.push(log.body.clone());
        }
        if st.first_seen == 0 {
            st.first_seen = log.ts;
        }
        st.last_seen = st.last_seen.max(log.ts);
    }

    /// Reports warning-or-worse templates that are new, or at least 5 lines and 5× their usual
    /// rate; busy templates whose rate shifted; and any steady template that has fallen silent.
    /// `learning` marks history replay: templates are learned, nothing is reported. Flushes
    /// come once per evaluation interval, in increasing `ts`.
    pub fn flush(&mut self, ts: Millis, learning: bool) -> Vec<LogPattern> {
        // Templates the miner evicted are forgotten here too.
        let miner = &self.miner;
        self.templates
            .retain(|(_, id), _| miner.template(*id).is_some());
        let mut out = Vec::new();
        for ((service, id), st) in &mut self.templates {
            let n = st.pending;
            st.pending = 0;
            st.silent = if n == 0 { st.silent + 1 } else { 0 };
            let severity = st.severity.unwrap_or(Severity::Info);
            if learning {
                st.reported_new = true;
            }
            let new = !st.reported_new && n > 0;
            let warm = st.intervals_seen >= RATE_WARMUP;
            let burst = warm && n >= BURST_LINES && (n as f64) >= BURST_FACTOR * st.mean.max(0.2);
            // An error template going quiet is a recovery; a steady ordinary one going quiet
            // (a heartbeat, "request served") is the news.
            let vanished = warm
                && severity < Severity::Warn
                && st.silent == SILENT_INTERVALS
                && st.mean >= 1.0
                && !st.reported_vanished;
            if st.rate.is_none() && warm && st.mean >= SHIFT_MIN_RATE {
                st.rate = Some(Box::new(rate_baseline()));
            }
            // The count of an interval is a point of the template's rate series; a verdict
            // error (a flush out of time order) only skips the point.
            let shift = st
                .rate
                .as_mut()
                .and_then(|d| d.update(ts, n as f64).ok())
                .filter(|a| a.phase == Phase::Onset)
                .map(|a| a.expected.max(0.0));
            let report =
                (severity >= Severity::Warn && (new || burst)) || vanished || shift.is_some();
            if !learning && report {
                out.push(LogPattern {
                    ts,
                    entity: Entity::service(service),
                    template: miner.template(*id).map(|t| t.text()).unwrap_or_default(),
                    severity,
                    count: n,
                    new,
                    vanished,
                    usual_rate: shift,
                    examples: st.examples.clone(),
                    first_seen: st.first_seen,
                    last_seen: st.last_seen,
                });
            }
            st.reported_vanished = if n > 0 {
                false
            } else {
                st.reported_vanished || vanished
            };
            if n > 0 {
                st.reported_new = true;
            }
            // The rate is learned from ordinary intervals: not bursts, not a silence.
            if !burst && st.silent < SILENT_INTERVALS {
                st.mean += (n as f64 - st.mean) * 0.05;
            }
            st.intervals_seen += 1;
        }
        out.sort_by(|a, b| {
            a.entity
                .cmp(&b.entity)
                .then_with(|| a.template.cmp(&b.template))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_core::Resource;

    fn log(body: &str, severity: Severity) -> LogRecord {
        LogRecord {
            ts: 1,
            resource: Resource::service("api"),
            severity,
            body: body.into(),
            attributes: Default::default(),
        }
    }

    #[test]
    fn reports_new_error_templates_once_and_not_during_learning() {
        let mut t = LogTemplateTracker::new();
        t.ingest(&log("cache miss for key 42", Severity::Warn));
        assert!(t.flush(0, true).is_empty());
        t.ingest(&log("cache miss for key 43", Severity::Warn));
        assert!(
            t.flush(1, false).is_empty(),
            "template learned during history is not new"
        );
        t.ingest(&log("pq: sorry, too many clients already", Severity::Error));
        t.ingest(&log("pq: sorry, too many clients already", Severity::Error));
        let r = t.flush(2, false);
        assert_eq!(r.len(), 1);
        assert!(r[0].new && !r[0].vanished);
        assert_eq!(r[0].count, 2);
        assert_eq!(r[0].examples, vec!["pq: sorry, too many clients already"]);
        t.ingest(&log("pq: sorry, too many clients already", Severity::Error));
        assert!(t.flush(3, false).is_empty());
    }

    #[test]
    fn variables_do_not_make_new_templates() {
        let mut t = LogTemplateTracker::new();
        t.ingest(&log(
            "upstream request to payments timed out after 2000ms",
            Severity::Error,
        ));
        t.flush(0, true);
        t.ingest(&log(
            "upstream request to payments timed out after 3000ms",
            Severity::Error,
        ));
        assert!(t.flush(1, false).is_empty());
    }

    #[test]
    fn a_steady_template_that_stops_is_reported_once() {
        let mut t = LogTemplateTracker::new();
        for i in 0..40 {
            t.ingest(&log(&format!("heartbeat ok seq={i}"), Severity::Info));
            t.ingest(&log(&format!("heartbeat ok seq={i}"), Severity::Info));
            assert!(t.flush(i, i < 5).is_empty());
        }
        let mut reports = Vec::new();
        for i in 40..70 {
            reports.extend(t.flush(i, false));
        }
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(reports[0].vanished && reports[0].count == 0);
        assert_eq!(reports[0].template, "heartbeat ok seq=<*>");
        assert_eq!(reports[0].ts, 49, "after 10 silent intervals");
    }

    /// Lines per interval around `mean`, varying like a busy service's (a fixed pseudo-random
    /// sequence, so the test is repeatable).
    fn noisy(mean: u64, i: u64) -> u64 {
        let jitter = (i.wrapping_mul(2_654_435_761) >> 7) % 5;
        mean + jitter - 2
    }

    fn shifts(
        t: &mut LogTemplateTracker,
        from: u64,
        to: u64,
        rate: impl Fn(u64) -> u64,
    ) -> Vec<LogPattern> {
        let mut out = Vec::new();
        for i in from..to {
            for _ in 0..rate(i) {
                t.ingest(&log(&format!("served GET /cart in {i}ms"), Severity::Info));
            }
            out.extend(t.flush(i as Millis * 60_000, false));
        }
        out
    }

    #[test]
    fn a_busy_template_whose_rate_shifts_is_reported_with_its_usual_rate() {
        let mut t = LogTemplateTracker::new();
        let quiet = shifts(&mut t, 0, 200, |i| noisy(10, i));
        assert!(quiet.is_empty(), "steady noise is normal: {quiet:?}");
        let up = shifts(&mut t, 200, 210, |i| noisy(40, i));
        assert_eq!(up.len(), 1, "one report at the onset: {up:?}");
        let usual = up[0].usual_rate.expect("a rate shift");
        assert!((7.0..=13.0).contains(&usual), "usual rate {usual}");
        assert!(up[0].count >= 38 && !up[0].new && !up[0].vanished);
        assert_eq!(up[0].severity, Severity::Info, "info lines shift too");
    }

    #[test]
    fn a_drop_in_rate_is_a_shift_too() {
        let mut t = LogTemplateTracker::new();
        assert!(shifts(&mut t, 0, 200, |i| noisy(30, i)).is_empty());
        let down = shifts(&mut t, 200, 210, |_| 3);
        assert_eq!(down.len(), 1, "{down:?}");
        assert!(down[0].usual_rate.is_some_and(|u| u > 20.0) && down[0].count == 3);
    }

    #[test]
    fn sparse_templates_get_no_rate_baseline() {
        let mut t = LogTemplateTracker::new();
        let r = shifts(&mut t, 0, 300, |i| {
            u64::from(i % 3 == 0) + 4 * u64::from(i % 97 == 0)
        });
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn a_structured_line_may_name_its_service_in_its_fields() {
        let mut t = LogTemplateTracker::new();
        t.flush(0, true);
        let mut l = log("payment declined by issuer", Severity::Error);
        l.resource = nightshift_core::Resource::default();
        t.ingest(&l);
        assert!(t.flush(1, false).is_empty(), "no service: not tracked");
        l.attributes.insert("service".into(), "payments".into());
        t.ingest(&l);
        let r = t.flush(2, false);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].entity, Entity::service("payments"));
    }
}
