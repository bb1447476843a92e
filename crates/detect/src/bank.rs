//! One [`Ensemble`] per derived series, created on first sight, turning [`Signal`]s into
//! [`Anomaly`] reports.

use crate::Detector;
use crate::detector::AlarmDirection;
use crate::ensemble::{Ensemble, EnsembleConfig, MEMBERS};
use crate::event::{EventPhase, EventRule};
use crate::overrides::Overrides;
use nightshift_core::hash::{FingerprintMap, series_hash};
use nightshift_core::{Anomaly, Direction, Millis, SeriesKey, SignalClass};
use nightshift_signals::Signal;

/// Which deviations of a derived series are harmful. Errors, latency, saturation, restarts and
/// log errors only hurt going up; availability and available-capacity ratios only going down;
/// traffic (and anything unclassified) both ways.
pub fn alarm_direction(class: SignalClass, metric: &str) -> AlarmDirection {
    match class {
        SignalClass::Errors | SignalClass::Latency | SignalClass::Logs => AlarmDirection::Up,
        SignalClass::Availability if metric.contains("restarts") => AlarmDirection::Up,
        SignalClass::Availability => AlarmDirection::Down,
        SignalClass::Saturation if metric.contains("available") => AlarmDirection::Down,
        SignalClass::Saturation => AlarmDirection::Up,
        SignalClass::Traffic | SignalClass::Other => AlarmDirection::Both,
    }
}

/// An [`Anomaly`] with where it stands in its event. (`Anomaly` itself has no field for this.)
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyEvent {
    pub anomaly: Anomaly,
    /// This report opens a new event; later reports of the same event have `false`.
    pub onset: bool,
    /// When the event started.
    pub since: Millis,
}

/// The members a derived golden signal runs by default: the robust and seasonal baselines, the
/// trend (slow leaks the baselines adapt to) and the range breach.
///
/// The window-comparison members (level shift, volatility shift, persist) and the forecast
/// band judge a change against the series' own steadiness. Derived rates, ratios and quantiles
/// are smooth, so a 10 % step in a p99 or an error ratio going from 0 to 0.2 % is "unusual" for
/// them; and the correlator opens an incident when a few series move together. With them on,
/// the built-in scenarios of `nightshift eval rca` found 16 of 18 faults instead of 18 and
/// opened 27 incidents on nothing. A series can still turn them on through
/// [`DetectorBank::with_config`].
pub const PIPELINE_WEIGHTS: [f64; 8] = [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0];

/// A derived signal's event ends after four quiet points (a minute at 15 s). Incidents already
/// bridge gaps between a series' reports; an event held open longer would turn isolated blips a
/// few points apart into one long anomaly, which the correlator reads as a persistent one.
pub const PIPELINE_QUIET_TO_END: u32 = 4;

/// A detection engine per derived series (keyed by a 64-bit hash of its name and labels), each
/// created on first sight with the alarm direction of its signal class. Memory per series is
/// bounded (one [`Ensemble`], at most 16 KiB, no history kept).
#[derive(Debug)]
pub struct DetectorBank {
    config: EnsembleConfig,
    overrides: Overrides,
    detectors: FingerprintMap<Ensemble>,
    rejected: u64,
}

impl Default for DetectorBank {
    fn default() -> Self {
        let base = EnsembleConfig::default();
        Self::with_config(EnsembleConfig {
            weights: PIPELINE_WEIGHTS,
            event: EventRule {
                quiet_to_end: PIPELINE_QUIET_TO_END,
                ..base.event
            },
            ..base
        })
    }
}

impl DetectorBank {
    pub fn new() -> Self {
        Self::default()
    }

    /// A bank whose engines use `config` (its `alarm` and `absolute_floor` are set per series
    /// from the signal's class and unit).
    pub fn with_config(config: EnsembleConfig) -> Self {
        Self {
            config,
            overrides: Overrides::default(),
            detectors: FingerprintMap::default(),
            rejected: 0,
        }
    }

    /// The same bank with per-series rules applied on top of each series' settings (after the
    /// alarm direction and floor its signal class gives), when its engine is created.
    pub fn with_overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Bytes of detector state held for all series.
    pub fn state_bytes(&self) -> usize {
        self.detectors.values().map(Detector::state_bytes).sum()
    }

    /// Feeds one derived signal; returns an anomaly while the series is in an anomaly event.
    pub fn observe(&mut self, signal: &Signal) -> Option<Anomaly> {
        self.observe_event(signal).map(|e| e.anomaly)
    }

    /// Like [`observe`](Self::observe), also telling whether this report is the event's onset.
    pub fn observe_event(&mut self, signal: &Signal) -> Option<AnomalyEvent> {
        let fp = series_hash(&signal.key);
        let (config, overrides) = (self.config, &self.overrides);
        let detector = self.detectors.entry(fp).or_insert_with(|| {
            let class = EnsembleConfig {
                alarm: alarm_direction(signal.class, &signal.key.metric),
                absolute_floor: absolute_floor(&signal.key.metric, config.absolute_floor),
                ..config
            };
            Ensemble::new(overrides.config_for(&signal.key, class))
        });
        let hit = detector.config().hit;
        let Ok(e) = detector.assess(signal.ts, signal.value) else {
            self.rejected += 1;
            return None;
        };
        // The quiet points an event waits through before it ends are not anomalies themselves.
        if e.phase == EventPhase::Normal || (e.phase == EventPhase::Ongoing && e.raw < hit) {
            return None;
        }
        let since = detector.event_since().unwrap_or(signal.ts);
        let (expected, lower, upper) = e
            .band
            .map_or((signal.value, signal.value, signal.value), |b| {
                (b.expected, b.lower, b.upper)
            });
        Some(AnomalyEvent {
            anomaly: Anomaly {
                series: signal.key.clone(),
                entity: signal.entity.clone(),
                class: signal.class,
                ts: signal.ts,
                score: e.raw.max(e.score),
                value: signal.value,
                expected,
                lower,
                upper,
                direction: if signal.value >= expected {
                    Direction::Up
                } else {
                    Direction::Down
                },
                detector: MEMBERS[e.top].to_string(),
                promql: signal.promql.clone(),
            },
            onset: e.phase == EventPhase::Onset,
            since,
        })
    }

    /// Number of series with a detector.
    pub fn len(&self) -> usize {
        self.detectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }

    /// The engine of one derived series, if it has been seen.
    pub fn detector(&self, key: &SeriesKey) -> Option<&Ensemble> {
        self.detectors.get(&series_hash(key))
    }

    /// Signals refused by their detector (non-finite value, time not moving forward).
    pub fn rejected_signals(&self) -> u64 {
        self.rejected
    }

    /// Drops detectors of series not seen for `idle` before `now` (entities that went away);
    /// returns how many were dropped.
    pub fn forget_idle(&mut self, now: Millis, idle: Millis) -> usize {
        let before = self.detectors.len();
        self.detectors
            .retain(|_, d| d.last_ts().is_some_and(|t| now - t <= idle));
        before - self.detectors.len()
    }
}

/// Ratios live in [0, 1]: a move of less than half a percentage point is never worth an alarm,
/// however flat the series was (a throttling ratio going from 0 to 0.003 is not CPU starvation).
fn absolute_floor(metric: &str, default: f64) -> f64 {
    if metric.contains(":ratio") {
        default.max(0.005)
    } else {
        default
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Noise;
    use nightshift_core::Entity;

    fn signal(metric: &str, class: SignalClass, ts: Millis, value: f64) -> Signal {
        Signal {
            key: SeriesKey::new(metric, &[("service", "checkout")]),
            entity: Entity::service("checkout"),
            class,
            ts,
            value,
            promql: format!("{metric}{{service=\"checkout\"}}"),
        }
    }

    #[test]
    fn directions_follow_the_signal_class() {
        use AlarmDirection::*;
        assert_eq!(
            alarm_direction(SignalClass::Errors, "service:http_errors:ratio_rate1m"),
            Up
        );
        assert_eq!(
            alarm_direction(SignalClass::Availability, "service:up:ratio"),
            Down
        );
        assert_eq!(
            alarm_direction(SignalClass::Availability, "service:restarts:increase5m"),
            Up
        );
        assert_eq!(
            alarm_direction(SignalClass::Saturation, "node:memory_available:ratio"),
            Down
        );
        assert_eq!(
            alarm_direction(SignalClass::Saturation, "service:volume_available:ratio"),
            Down
        );
        assert_eq!(
            alarm_direction(SignalClass::Saturation, "service:cpu_usage:ratio_limit"),
            Up
        );
        assert_eq!(
            alarm_direction(SignalClass::Traffic, "edge:requests:rate1m"),
            Both
        );
    }

    #[test]
    fn bank_reports_onset_then_ongoing_with_the_signal_context() {
        let mut bank = DetectorBank::new();
        let mut noise = Noise::new(31);
        let metric = "service:http_request_duration_seconds:p99";
        let mut reports = Vec::new();
        for i in 0..500 {
            let v = if i < 450 { 0.2 } else { 0.6 } * (1.0 + 0.02 * noise.gaussian());
            let ts = 1_000_000 + i * 15_000;
            if let Some(e) = bank.observe_event(&signal(metric, SignalClass::Latency, ts, v)) {
                reports.push((i, e));
            }
            // A second series (traffic) stays normal and gets its own detector.
            let t = signal(
                "service:http_requests:rate1m",
                SignalClass::Traffic,
                ts,
                100.0,
            );
            assert!(bank.observe(&t).is_none());
        }
        assert_eq!(bank.len(), 2);
        let (first, onset) = &reports[0];
        assert!(*first >= 450 && *first < 454);
        assert!(onset.onset);
        assert_eq!(onset.anomaly.detector, "robust_baseline");
        assert_eq!(onset.anomaly.direction, Direction::Up);
        assert_eq!(onset.anomaly.entity, Entity::service("checkout"));
        assert!(onset.anomaly.promql.contains("checkout"));
        assert!(onset.anomaly.score > 0.5 && onset.anomaly.value > onset.anomaly.upper);
        assert!(
            reports[1..]
                .iter()
                .all(|(_, e)| !e.onset && e.since == onset.since)
        );
        assert_eq!(
            reports.len(),
            500 - *first as usize,
            "reported every tick while it lasts"
        );
    }

    #[test]
    fn rules_reach_the_series_they_select() {
        // Errors only alarm upwards by class; a rule turns the checkout p99 to alarm on drops
        // instead, and leaves other services' series alone.
        let rules = Overrides::new(vec![crate::OverrideRule {
            selector: r#"{__name__=~".*p99", service="checkout"}"#.into(),
            alarm: Some(AlarmDirection::Down),
            ..crate::OverrideRule::default()
        }])
        .expect("valid rule");
        let mut bank = DetectorBank::new().with_overrides(rules);
        let mut noise = crate::testkit::Noise::new(5);
        let metric = "service:http_request_duration_seconds:p99";
        let mut up = 0;
        let mut other = signal(metric, SignalClass::Latency, 0, 0.0);
        other.key = SeriesKey::new(metric, &[("service", "cart")]);
        let mut other_up = 0;
        for i in 0..500 {
            let v = if i < 450 { 0.2 } else { 0.6 } * (1.0 + 0.02 * noise.gaussian());
            let ts = 1_000_000 + i * 15_000;
            up += usize::from(
                bank.observe(&signal(metric, SignalClass::Latency, ts, v))
                    .is_some(),
            );
            other.ts = ts;
            other.value = v;
            other_up += usize::from(bank.observe(&other).is_some());
        }
        assert_eq!(up, 0, "a rise is harmless for the rule's series");
        assert!(other_up > 0, "the rule does not reach another service");
    }

    #[test]
    fn recoveries_are_not_reported() {
        let mut bank = DetectorBank::new();
        for i in 0..400 {
            let v = if i < 200 { 0.05 } else { 0.0 };
            let s = signal(
                "service:http_errors:ratio_rate1m",
                SignalClass::Errors,
                i * 15_000,
                v,
            );
            assert!(bank.observe(&s).is_none(), "point {i}");
        }
    }

    #[test]
    fn one_pod_of_three_going_down_is_an_anomaly_end_to_end() {
        use nightshift_signals::SignalDeriver;
        let mut deriver = SignalDeriver::new();
        let mut bank = DetectorBank::new();
        let pods = ["cart-1", "cart-2", "cart-3"];
        let mut reports = Vec::new();
        for i in 0..200 {
            let ts = i * 15_000;
            for (n, pod) in pods.iter().enumerate() {
                let up = if i >= 150 && n == 2 { 0.0 } else { 1.0 };
                let key =
                    SeriesKey::new("up", &[("service", "cart"), ("pod", pod), ("job", "cart")]);
                deriver.ingest_sample(&key, ts, up);
            }
            for s in deriver.flush(ts) {
                if let Some(e) = bank.observe_event(&s) {
                    reports.push((i, e));
                }
            }
        }
        let (i, first) = &reports[0];
        assert!(
            first.onset && *i == 152,
            "confirmed on the third point, first report at tick {i}"
        );
        assert_eq!(
            first.anomaly.series,
            SeriesKey::new("service:up:ratio", &[("service", "cart")])
        );
        assert_eq!(first.anomaly.direction, Direction::Down);
        assert!((first.anomaly.value - 2.0 / 3.0).abs() < 1e-9 && first.anomaly.score > 0.99);
        assert_eq!(
            first.anomaly.promql,
            "avg by (service) (up{service=\"cart\"})"
        );
    }

    #[test]
    fn state_is_reported_and_bounded_per_series() {
        let mut bank = DetectorBank::new();
        for i in 0..600 {
            for m in ["a", "b", "c"] {
                bank.observe(&signal(
                    m,
                    SignalClass::Traffic,
                    i * 15_000,
                    100.0 + (i % 7) as f64,
                ));
            }
        }
        let bytes = bank.state_bytes();
        assert!(
            bytes > 3 * 1024 && bytes <= 3 * 16 * 1024,
            "{bytes} bytes for 3 series"
        );
    }

    #[test]
    fn idle_detectors_can_be_forgotten() {
        let mut bank = DetectorBank::new();
        bank.observe(&signal("a", SignalClass::Traffic, 0, 1.0));
        bank.observe(&signal("b", SignalClass::Traffic, 3_600_000, 1.0));
        assert_eq!(bank.forget_idle(3_600_000, 600_000), 1);
        assert_eq!(bank.len(), 1);
        assert!(
            bank.detector(&SeriesKey::new("b", &[("service", "checkout")]))
                .is_some()
        );
    }
}
