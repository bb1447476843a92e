//! A first log template tracker: masks the variable parts of a line (numbers, ids, addresses)
//! to get its template, and reports templates that are new for a service or suddenly frequent.
//! A full streaming template miner replaces the masking later; the reporting contract stays.

use nightshift_core::{Entity, LogPattern, LogRecord, Millis, Severity};
use std::collections::HashMap;

#[derive(Debug, Default)]
struct TemplateState {
    /// Exponentially weighted lines per interval, learned while the template is not bursting.
    mean: f64,
    intervals_seen: u64,
    pending: u64,
    severity: Option<Severity>,
    example: String,
    reported_new: bool,
}

/// Tracks templates per service and reports the new and the bursting ones at each flush.
#[derive(Debug, Default)]
pub struct LogTemplateTracker {
    templates: HashMap<(String, String), TemplateState>,
}

/// Masks the variable tokens of a log line: anything with a digit, hex ids, quoted values.
pub fn template_of(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for (i, tok) in body.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let variable = tok.bytes().any(|b| b.is_ascii_digit())
            || (tok.len() >= 8 && tok.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
            || (tok.starts_with('"') && tok.ends_with('"') && tok.len() > 1);
        if variable {
            // Keep a trailing colon or comma so the template still reads like the line.
            let tail = tok.trim_end_matches([':', ',', ';']);
            out.push_str("<*>");
            out.push_str(&tok[tail.len()..]);
        } else {
            out.push_str(tok);
        }
    }
    out
}

impl LogTemplateTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ingest(&mut self, log: &LogRecord) {
        let Some(service) = log.resource.service_name() else {
            return;
        };
        let template = template_of(&log.body);
        let st = self
            .templates
            .entry((service.to_string(), template))
            .or_default();
        st.pending += 1;
        if st.severity.is_none_or(|s| log.severity > s) {
            st.severity = Some(log.severity);
        }
        if st.example.is_empty() {
            st.example = log.body.clone();
        }
    }

    /// Reports warning-or-worse templates that are new, or at least 5 lines and 5× their usual rate.
    /// `learning` marks history replay: templates are learned, nothing is reported.
    pub fn flush(&mut self, ts: Millis, learning: bool) -> Vec<LogPattern> {
        let mut out = Vec::new();
        for ((service, template), st) in &mut self.templates {
            let n = st.pending;
            st.pending = 0;
            let severity = st.severity.unwrap_or(Severity::Info);
            if learning {
                st.reported_new = true;
            }
            let new = !st.reported_new && n > 0;
            let burst = st.intervals_seen >= 20 && n >= 5 && (n as f64) >= 5.0 * st.mean.max(0.2);
            if !learning && severity >= Severity::Warn && (new || burst) {
                out.push(LogPattern {
                    ts,
                    entity: Entity::service(service),
                    template: template.clone(),
                    severity,
                    count: n,
                    new,
                    example: st.example.clone(),
                });
            }
            if n > 0 {
                st.reported_new = true;
            }
            if !burst {
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
            ts: 0,
            resource: Resource::service("api"),
            severity,
            body: body.into(),
        }
    }

    #[test]
    fn masks_variables() {
        assert_eq!(
            template_of("upstream request to payments timed out after 2000ms, pod=api-7d9f8-x2k4p"),
            "upstream request to payments timed out after <*>, <*>"
        );
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
        let r = t.flush(2, false);
        assert_eq!(r.len(), 1);
        assert!(r[0].new);
        t.ingest(&log("pq: sorry, too many clients already", Severity::Error));
        assert!(t.flush(3, false).is_empty());
    }
}
