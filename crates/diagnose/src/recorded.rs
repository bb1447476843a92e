//! Root-cause ranking of a recorded case: metrics of every service around a fault whose start
//! is known (the wide tables of the RCA literature: RCAEval, RCD, PetShop), ranked by the same
//! [`rank`](crate::rank::rank) as live incidents.
//!
//! Each series is scored against its own normal rows the way BARO does (Pham et al., *BARO:
//! Robust Root Cause Analysis for Microservices*, FSE 2024): the distance from the median of the
//! normal period in interquartile ranges, a robust and scale-free measure, so that a CPU series
//! in cores and a latency series in seconds compare. The series' onset is the first row after
//! the fault start where that distance passes [`ONSET_Z`]. When the case names the KPI the fault
//! was noticed on, each series' strength is weighted by how closely it moved with that KPI over
//! the case's rows (|Pearson correlation|). The scores become the entity facts
//! a live incident would hold, and the ranking then weighs the kind of each signal, explains a
//! caller's symptoms away by a callee that went wrong no later (ε-Diagnosis, MicroRCA) and
//! credits recent changes, exactly as it does live.

use crate::rank::{RankConfig, rank};
use nightshift_core::facts::{EntityFacts, SeriesFact};
use nightshift_core::{Change, Direction, Entity, Hypothesis, Millis, SignalClass, Topology};
use std::collections::BTreeMap;

/// Robust distance (in interquartile ranges from the normal median) at which a row counts as
/// deviating, for the onset.
pub const ONSET_Z: f64 = 3.0;

/// One recorded series of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSeries {
    pub service: String,
    pub metric: String,
    /// Values of normal operation: the rows before the fault start.
    pub normal: Vec<f64>,
    /// A separate recording of normal operation (another day, say), if any: it gives the
    /// series' usual spread when the rows before the fault are too few to, and its level when
    /// there are none.
    pub reference: Vec<f64>,
    /// Rows from the fault start on, with their times.
    pub after: Vec<(Millis, f64)>,
}

/// A recorded case: its series, when the fault started, the call graph where known, and the
/// changes made before it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordedCase {
    pub series: Vec<RecordedSeries>,
    pub anomaly_start: Millis,
    /// (caller, callee) pairs.
    pub calls: Vec<(String, String)>,
    /// The (service, metric) the fault was noticed on, when the case names it.
    pub target: Option<(String, String)>,
    pub changes: Vec<Change>,
}

/// How a metric name reads: its signal class, and the direction that is harmful.
///
/// The name is read word by word (`container-cpu-usage`, `lat_90`): a word of two letters must
/// be the whole word (`up`, `rt`, `io`), a longer one may begin a word (`mem` in `memory`).
pub fn metric_class(metric: &str) -> (SignalClass, Option<Direction>) {
    let m = metric.to_ascii_lowercase();
    let words: Vec<&str> = m
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |keys: &[&str]| {
        keys.iter().any(|k| {
            words.iter().any(|w| {
                if k.len() <= 2 {
                    w == k
                } else {
                    w.starts_with(k)
                }
            })
        })
    };
    if has(&["avail", "success", "up", "healthy"]) {
        (SignalClass::Availability, Some(Direction::Down))
    } else if has(&[
        "err",
        "fail",
        "5xx",
        "exception",
        "drop",
        "loss",
        "retrans",
        "timeout",
    ]) {
        (SignalClass::Errors, Some(Direction::Up))
    } else if has(&[
        "lat", "duration", "delay", "time", "p50", "p90", "p95", "p99", "rt", "response",
    ]) {
        (SignalClass::Latency, Some(Direction::Up))
    } else if has(&[
        "cpu", "mem", "disk", "fs", "io", "socket", "thread", "fd", "gc", "heap", "swap", "load",
    ]) {
        (SignalClass::Saturation, Some(Direction::Up))
    } else if has(&[
        "req",
        "count",
        "throughput",
        "qps",
        "rps",
        "workload",
        "tx",
        "rx",
        "net",
        "receive",
        "transmit",
        "sum",
    ]) {
        (SignalClass::Traffic, None)
    } else {
        (SignalClass::Other, None)
    }
}

/// The `q`-quantile of sorted finite values (linear interpolation).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A series' verdict: its largest harmful robust distance after the fault start, where and
/// when, and the first row that passed [`ONSET_Z`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesScore {
    pub z: f64,
    pub direction: Direction,
    pub peak_ts: Millis,
    pub onset_ts: Millis,
    pub value: f64,
    pub median: f64,
}

/// Normal values enough to measure a spread by.
const MIN_SPREAD_VALUES: usize = 8;

fn finite_sorted(v: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    out.sort_by(f64::total_cmp);
    out
}

/// Scores one series; `None` when it has no normal value or no row after the start.
///
/// The level is the median of the rows before the fault (of the reference recording without
/// them); the spread is their interquartile range when there are enough of them, else the
/// reference recording's. So a series that has sat apart from an old reference all along does
/// not count as deviating: only a change at the fault does. With neither spread, the floor of
/// a hundredth of the level applies, and the distance is the relative change in hundredths.
pub fn score_series(s: &RecordedSeries, harmful: Option<Direction>) -> Option<SeriesScore> {
    let recent = finite_sorted(&s.normal);
    let reference = finite_sorted(&s.reference);
    let level_from = if recent.is_empty() {
        &reference
    } else {
        &recent
    };
    if level_from.is_empty() {
        return None;
    }
    let median = quantile(level_from, 0.5);
    let spread_from = if recent.len() >= MIN_SPREAD_VALUES || reference.len() < MIN_SPREAD_VALUES {
        &recent
    } else {
        &reference
    };
    let (iqr, mean_dev) = if spread_from.is_empty() {
        (0.0, 0.0)
    } else {
        let m = quantile(spread_from, 0.5);
        (
            quantile(spread_from, 0.75) - quantile(spread_from, 0.25),
            spread_from.iter().map(|v| (v - m).abs()).sum::<f64>() / spread_from.len() as f64,
        )
    };
    // A series that is mostly one value (a request count that is mostly 0) has no
    // interquartile range: its mean deviation still tells how much it moves. A flat one falls
    // back to a small share of its level, and an absolute floor for series that sit at zero.
    let scale = iqr.max(mean_dev).max(0.01 * median.abs()).max(1e-9);
    let mut best: Option<SeriesScore> = None;
    let mut onset: Option<Millis> = None;
    for &(ts, v) in s.after.iter().filter(|(_, v)| v.is_finite()) {
        let signed = (v - median) / scale;
        let z = match harmful {
            Some(Direction::Up) => signed.max(0.0),
            Some(Direction::Down) => (-signed).max(0.0),
            None => signed.abs(),
        };
        if z >= ONSET_Z && onset.is_none() {
            onset = Some(ts);
        }
        if best.is_none_or(|b| z > b.z) {
            best = Some(SeriesScore {
                z,
                direction: if signed >= 0.0 {
                    Direction::Up
                } else {
                    Direction::Down
                },
                peak_ts: ts,
                onset_ts: ts,
                value: v,
                median,
            });
        }
    }
    best.map(|b| SeriesScore {
        onset_ts: onset.unwrap_or(b.peak_ts),
        ..b
    })
}

/// The strength a robust distance lends a fact: 0 below [`ONSET_Z`], then growing with the
/// logarithm of the distance, so that a hundredfold latency spike on a victim does not drown a
/// tenfold saturation on its cause, yet larger stays stronger (no ceiling, unlike the live
/// calibrated scores, because every series of a recorded case deviates at once).
pub fn strength(z: f64) -> f64 {
    if z < ONSET_Z {
        0.0
    } else {
        (z / ONSET_Z).ln() + 0.5
    }
}

/// Pearson correlation of two series over the rows where both are finite (0 when either is
/// flat or fewer than three rows are).
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|(x, y)| (*x, *y))
        .collect();
    let n = pairs.len() as f64;
    if n < 3.0 {
        return 0.0;
    }
    let ma = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let mb = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = pairs.iter().map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = pairs.iter().map(|(x, _)| (x - ma).powi(2)).sum();
    let vb: f64 = pairs.iter().map(|(_, y)| (y - mb).powi(2)).sum();
    if va <= 0.0 || vb <= 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

/// The entity facts of a recorded case: one series fact per deviating series.
pub fn facts(case: &RecordedCase) -> BTreeMap<Entity, EntityFacts> {
    let mut out: BTreeMap<Entity, EntityFacts> = BTreeMap::new();
    let rows = |s: &RecordedSeries| -> Vec<f64> {
        s.normal
            .iter()
            .copied()
            .chain(s.after.iter().map(|p| p.1))
            .collect()
    };
    let target = case.target.as_ref().and_then(|(svc, m)| {
        case.series
            .iter()
            .find(|s| s.service == *svc && s.metric == *m)
            .map(rows)
    });
    for s in &case.series {
        let (class, harmful) = metric_class(&s.metric);
        let Some(sc) = score_series(s, harmful) else {
            continue;
        };
        let deviation = strength(sc.z);
        if deviation <= 0.0 {
            continue;
        }
        let comove = target
            .as_ref()
            .map_or(1.0, |t| correlation(&rows(s), t).abs());
        let peak_score = deviation * comove;
        if peak_score <= 0.0 {
            continue;
        }
        let f = out.entry(Entity::service(&s.service)).or_default();
        f.touch_onset(sc.onset_ts);
        let selector = format!("{}_{}", s.service, s.metric);
        f.series.insert(
            selector.clone(),
            SeriesFact {
                metric: s.metric.clone(),
                selector,
                class,
                direction: sc.direction,
                first_ts: sc.onset_ts,
                peak_ts: sc.peak_ts,
                peak_score,
                value: sc.value,
                expected: sc.median,
                promql: String::new(),
                detector: "robust_iqr".into(),
                reports: 1,
            },
        );
    }
    out
}

/// The ranked root-cause services of a recorded case, most likely first (every service with a
/// deviating series, not only the top few).
pub fn rank_case(case: &RecordedCase) -> Vec<Hypothesis> {
    let mut topo = Topology::new();
    for s in &case.series {
        topo.add_service(&s.service);
    }
    for (caller, callee) in &case.calls {
        topo.add_call(caller, callee);
    }
    let facts = facts(case);
    let cfg = RankConfig {
        max_hypotheses: facts.len().max(1),
        ..RankConfig::default()
    };
    rank(&facts, &topo, &case.changes, case.anomaly_start, &cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(service: &str, metric: &str, normal: f64, after: &[f64]) -> RecordedSeries {
        RecordedSeries {
            service: service.into(),
            metric: metric.into(),
            reference: Vec::new(),
            normal: (0..30)
                .map(|i| normal * (1.0 + 0.02 * ((i % 5) as f64 - 2.0)))
                .collect(),
            after: after
                .iter()
                .enumerate()
                .map(|(i, v)| (1_000 + i as Millis * 60_000, *v))
                .collect(),
        }
    }

    #[test]
    fn metric_names_read_as_classes() {
        assert_eq!(metric_class("cpu").0, SignalClass::Saturation);
        assert_eq!(metric_class("mem").0, SignalClass::Saturation);
        assert_eq!(metric_class("lat_90").0, SignalClass::Latency);
        assert_eq!(metric_class("latency-50").0, SignalClass::Latency);
        assert_eq!(
            metric_class("availability"),
            (SignalClass::Availability, Some(Direction::Down))
        );
        assert_eq!(metric_class("requests").0, SignalClass::Traffic);
        assert_eq!(metric_class("error_rate").0, SignalClass::Errors);
    }

    #[test]
    fn robust_distance_ignores_the_harmless_direction() {
        let s = series("a", "cpu", 1.0, &[1.0, 0.2, 0.1]);
        let sc = score_series(&s, Some(Direction::Up)).expect("scored");
        assert_eq!(sc.z, 0.0, "CPU falling is not a fault");
        let sc = score_series(&s, None).expect("scored");
        assert!(sc.z > ONSET_Z);
    }

    #[test]
    fn the_callee_that_went_wrong_first_is_ranked_above_its_callers() {
        // frontend → cart → redis; redis saturates first, the latency climbs up the chain.
        let case = RecordedCase {
            series: vec![
                series("frontend", "latency", 0.1, &[0.1, 0.1, 0.5, 0.9]),
                series("cart", "latency", 0.05, &[0.05, 0.3, 0.6, 0.8]),
                series("redis", "cpu", 0.2, &[0.9, 0.95, 0.95, 0.95]),
                series("catalog", "latency", 0.05, &[0.05, 0.05, 0.05, 0.05]),
            ],
            anomaly_start: 1_000,
            target: None,
            calls: vec![
                ("frontend".into(), "cart".into()),
                ("cart".into(), "redis".into()),
                ("frontend".into(), "catalog".into()),
            ],
            changes: vec![],
        };
        let ranked = rank_case(&case);
        assert_eq!(ranked[0].entity, Entity::service("redis"), "{ranked:#?}");
        assert!(ranked.iter().all(|h| h.entity.name != "catalog"), "healthy");
        assert_eq!(ranked.len(), 3);
    }
}
