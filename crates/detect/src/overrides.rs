//! Per-series settings of the detection engine: rules that pick series with a PromQL series
//! selector and change what the [`Ensemble`](crate::Ensemble) of each does.
//!
//! No rule is needed for detection to work; rules are for what the series cannot tell the
//! engine: a known limit to forecast exhaustion against (`limit: 1` for a usage ratio), which
//! direction is harmful, a member that does not suit a metric, or a stricter event rule for a
//! noisy one. Every rule whose selector matches a series applies, in file order, so a later,
//! narrower rule refines an earlier, broader one.
//!
//! ```yaml
//! - match: 'node_filesystem_used_ratio{mountpoint="/data"}'
//!   limit: 1
//!   alarm: up
//! - match: '{job=~"batch-.*"}'
//!   off: [seasonal, level_shift]
//!   hits_for_event: 4
//! ```

use crate::detector::AlarmDirection;
use crate::ensemble::{EnsembleConfig, MEMBERS};
use nightshift_core::SeriesKey;
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A rule that cannot be used, naming the rule (1-based, in file order) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("override rule {rule} (match: {selector}): {problem}")]
pub struct OverrideError {
    pub rule: usize,
    pub selector: String,
    pub problem: String,
}

/// One rule as written in the configuration. Fields left out keep the value from the defaults
/// or from earlier rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRule {
    /// PromQL series selector: `name`, `name{label="v"}`, `{label=~"re", other!="v"}`.
    #[serde(rename = "match")]
    pub selector: String,
    /// Members to switch off, by name (see [`MEMBERS`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub off: Vec<String>,
    /// Members to switch on at full weight, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
    /// Members' weights, by name (0 switches a member off; scores are capped at 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, f64>,
    /// Score at which a point counts as a hit, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hit: Option<f64>,
    /// Hits among the last `window` points that start an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hits_for_event: Option<u32>,
    /// Points the event rule looks back over (1 to 31).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
    /// Quiet points in a row that end an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet_to_end: Option<u32>,
    /// Known limit of the series, for the time-to-exhaustion forecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// Harmful direction: `up`, `down` or `both`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarm: Option<AlarmDirection>,
    /// Smallest spread the deviation members assume, in the series' unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_floor: Option<f64>,
}

/// A parsed PromQL series selector: a metric name and label matchers, or alternatives joined
/// by `or` inside the braces.
#[derive(Debug, Clone)]
pub struct SeriesSelector {
    text: String,
    name: Option<String>,
    matchers: Vec<Matcher>,
    or_matchers: Vec<Vec<Matcher>>,
}

impl SeriesSelector {
    /// Parses `text` as a PromQL instant-vector selector without `offset` or `@`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let expr = promql_parser::parser::parse(text.trim())
            .map_err(|e| format!("not a PromQL series selector: {e}"))?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(
                "a series selector is expected (`name{label=\"value\"}`), not an expression".into(),
            );
        };
        if vs.offset.is_some() || vs.at.is_some() {
            return Err("`offset` and `@` have no meaning for a series selector".into());
        }
        Ok(Self {
            text: text.trim().to_string(),
            name: vs.name,
            matchers: vs.matchers.matchers,
            or_matchers: vs.matchers.or_matchers,
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The one series this selector names, when it is a name with `label="value"` matchers
    /// only (how Prometheus prints a series).
    pub fn as_series(&self) -> Option<SeriesKey> {
        let name = self.name.as_ref()?;
        if !self.or_matchers.is_empty() {
            return None;
        }
        let mut labels = std::collections::BTreeMap::new();
        for m in &self.matchers {
            if m.op != promql_parser::label::MatchOp::Equal {
                return None;
            }
            // The parser lists the name as a `__name__` matcher too.
            if m.name != "__name__" {
                labels.insert(m.name.clone(), m.value.clone());
            }
        }
        Some(SeriesKey {
            metric: name.clone(),
            labels,
        })
    }

    /// Whether the series is selected. A label the series lacks has the value "", as in
    /// Prometheus; `__name__` is the metric name.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        if self.name.as_ref().is_some_and(|n| *n != key.metric) {
            return false;
        }
        let value = |label: &str| -> &str {
            if label == "__name__" {
                &key.metric
            } else {
                key.labels.get(label).map_or("", String::as_str)
            }
        };
        let all = |ms: &[Matcher]| ms.iter().all(|m| m.is_match(value(&m.name)));
        all(&self.matchers)
            && (self.or_matchers.is_empty() || self.or_matchers.iter().any(|ms| all(ms)))
    }
}

/// The rules of a configuration, checked and ready to apply.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    rules: Vec<(SeriesSelector, OverrideRule)>,
}

fn member_index(name: &str) -> Result<usize, String> {
    MEMBERS.iter().position(|m| *m == name).ok_or_else(|| {
        format!(
            "unknown detector '{name}'; the detectors are {}",
            MEMBERS.join(", ")
        )
    })
}

fn check_rule(rule: &OverrideRule) -> Result<(), String> {
    for name in rule.off.iter().chain(&rule.on).chain(rule.weights.keys()) {
        member_index(name)?;
    }
    if let Some(name) = rule.off.iter().find(|n| rule.on.contains(n)) {
        return Err(format!("'{name}' is both switched on and off"));
    }
    if let Some((name, w)) = rule
        .weights
        .iter()
        .find(|(_, w)| !(w.is_finite() && **w >= 0.0))
    {
        return Err(format!("weight of '{name}' must be a number ≥ 0, not {w}"));
    }
    if let Some(hit) = rule.hit.filter(|h| !(*h > 0.0 && *h <= 1.0)) {
        return Err(format!("hit must be in (0, 1], not {hit}"));
    }
    if let Some(w) = rule.window.filter(|w| !(1..=31).contains(w)) {
        return Err(format!("window must be 1 to 31 points, not {w}"));
    }
    if rule.hits_for_event == Some(0) {
        return Err("hits_for_event must be at least 1".into());
    }
    if rule.quiet_to_end == Some(0) {
        return Err("quiet_to_end must be at least 1".into());
    }
    if let Some(l) = rule.limit.filter(|l| !l.is_finite()) {
        return Err(format!("limit must be a finite number, not {l}"));
    }
    if let Some(f) = rule
        .absolute_floor
        .filter(|f| !(f.is_finite() && *f >= 0.0))
    {
        return Err(format!("absolute_floor must be a number ≥ 0, not {f}"));
    }
    Ok(())
}

impl Overrides {
    /// Checks every rule: its selector parses, its detector names exist, its numbers are in
    /// range. The first problem is reported with the rule's number.
    pub fn new(rules: Vec<OverrideRule>) -> Result<Self, OverrideError> {
        let mut out = Vec::with_capacity(rules.len());
        for (i, rule) in rules.into_iter().enumerate() {
            let fail = |problem: String| OverrideError {
                rule: i + 1,
                selector: rule.selector.clone(),
                problem,
            };
            let selector = SeriesSelector::parse(&rule.selector).map_err(fail)?;
            check_rule(&rule).map_err(fail)?;
            out.push((selector, rule));
        }
        Ok(Self { rules: out })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// `base` with every rule that selects `key` applied, in order.
    pub fn config_for(&self, key: &SeriesKey, base: EnsembleConfig) -> EnsembleConfig {
        let mut cfg = base;
        for (selector, rule) in &self.rules {
            if selector.matches(key) {
                apply(rule, &mut cfg);
            }
        }
        // A rule may shorten the window below the hits it asks for; an event must stay possible.
        cfg.event.hits_for_event = cfg
            .event
            .hits_for_event
            .clamp(1, cfg.event.window.clamp(1, 31));
        cfg
    }
}

/// Names were checked by [`Overrides::new`]; an unknown one is skipped.
fn apply(rule: &OverrideRule, cfg: &mut EnsembleConfig) {
    let mut set = |name: &str, w: f64| {
        if let Ok(i) = member_index(name) {
            cfg.weights[i] = w;
        }
    };
    for name in &rule.on {
        set(name, 1.0);
    }
    for (name, w) in &rule.weights {
        set(name, *w);
    }
    for name in &rule.off {
        set(name, 0.0);
    }
    if let Some(v) = rule.hit {
        cfg.hit = v;
    }
    if let Some(v) = rule.hits_for_event {
        cfg.event.hits_for_event = v;
    }
    if let Some(v) = rule.window {
        cfg.event.window = v;
    }
    if let Some(v) = rule.quiet_to_end {
        cfg.event.quiet_to_end = v;
    }
    if rule.limit.is_some() {
        cfg.limit = rule.limit;
    }
    if let Some(v) = rule.alarm {
        cfg.alarm = v;
    }
    if let Some(v) = rule.absolute_floor {
        cfg.absolute_floor = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(metric: &str, labels: &[(&str, &str)]) -> SeriesKey {
        SeriesKey::new(metric, labels)
    }

    fn rule(selector: &str) -> OverrideRule {
        OverrideRule {
            selector: selector.into(),
            ..OverrideRule::default()
        }
    }

    #[test]
    fn selectors_match_as_prometheus_does() {
        let disk = key(
            "disk_used_ratio",
            &[("mountpoint", "/data"), ("job", "node")],
        );
        let cases = [
            ("disk_used_ratio", true),
            ("cpu", false),
            (r#"disk_used_ratio{mountpoint="/data"}"#, true),
            (r#"disk_used_ratio{mountpoint="/"}"#, false),
            (r#"{job=~"no.*"}"#, true),
            (r#"disk_used_ratio{job!~"no.*"}"#, false),
            (r#"{__name__=~"disk_.*"}"#, true),
            // A label the series lacks is "".
            (r#"disk_used_ratio{device=""}"#, true),
            (r#"disk_used_ratio{device!=""}"#, false),
            (r#"{job="api" or mountpoint="/data"}"#, true),
            (r#"{job="api" or mountpoint="/"}"#, false),
        ];
        for (text, want) in cases {
            let s = SeriesSelector::parse(text).expect(text);
            assert_eq!(s.matches(&disk), want, "{text}");
        }
    }

    #[test]
    fn selectors_that_are_not_selectors_are_refused() {
        // The last: Prometheus refuses a selector that would match every series.
        for text in [
            "rate(x[5m])",
            "x offset 5m",
            "x{",
            "1 + 2",
            "",
            r#"{job!~"no.*"}"#,
        ] {
            assert!(SeriesSelector::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn matching_rules_apply_in_order() {
        let broad = OverrideRule {
            off: vec!["seasonal".into(), "trend".into()],
            hits_for_event: Some(4),
            ..rule(r#"{job="node"}"#)
        };
        let narrow = OverrideRule {
            on: vec!["trend".into()],
            limit: Some(1.0),
            alarm: Some(AlarmDirection::Up),
            weights: [("level_shift".to_string(), 0.5)].into(),
            ..rule(r#"disk_used_ratio{mountpoint="/data"}"#)
        };
        let o = Overrides::new(vec![broad, narrow]).expect("valid");
        let base = EnsembleConfig::default();

        let data = o.config_for(
            &key(
                "disk_used_ratio",
                &[("job", "node"), ("mountpoint", "/data")],
            ),
            base,
        );
        assert_eq!(data.weights, [1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(
            (data.event.hits_for_event, data.limit, data.alarm),
            (4, Some(1.0), AlarmDirection::Up)
        );

        let root = o.config_for(
            &key("disk_used_ratio", &[("job", "node"), ("mountpoint", "/")]),
            base,
        );
        assert_eq!(root.weights, [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
        assert_eq!((root.limit, root.alarm), (None, AlarmDirection::Both));

        let other = o.config_for(&key("cpu", &[("job", "api")]), base);
        assert_eq!(other, base);
    }

    #[test]
    fn a_short_window_keeps_events_possible() {
        let o = Overrides::new(vec![OverrideRule {
            window: Some(2),
            ..rule("x")
        }])
        .expect("valid");
        let cfg = o.config_for(&key("x", &[]), EnsembleConfig::default());
        assert_eq!((cfg.event.window, cfg.event.hits_for_event), (2, 2));
    }

    #[test]
    fn bad_rules_are_named_with_their_problem() {
        let cases: Vec<(OverrideRule, &str)> = vec![
            (rule("rate(x[5m])"), "series selector"),
            (
                OverrideRule {
                    off: vec!["seasonl".into()],
                    ..rule("x")
                },
                "unknown detector 'seasonl'",
            ),
            (
                OverrideRule {
                    hit: Some(1.5),
                    ..rule("x")
                },
                "hit must be in (0, 1]",
            ),
            (
                OverrideRule {
                    window: Some(40),
                    ..rule("x")
                },
                "window must be 1 to 31",
            ),
            (
                OverrideRule {
                    weights: [("trend".to_string(), -1.0)].into(),
                    ..rule("x")
                },
                "weight of 'trend'",
            ),
            (
                OverrideRule {
                    on: vec!["trend".into()],
                    off: vec!["trend".into()],
                    ..rule("x")
                },
                "both switched on and off",
            ),
        ];
        for (bad, want) in cases {
            let ok = rule("y");
            let err = Overrides::new(vec![ok, bad]).expect_err(want);
            assert_eq!(err.rule, 2);
            let text = err.to_string();
            assert!(text.starts_with("override rule 2 (match: "), "{text}");
            assert!(text.contains(want), "{text}");
        }
    }
}
