//! Raw series scored as they arrive, picked by PromQL selectors: what prometheus-anomaly-detector
//! users configure, a list of metrics to watch, each with its own learned normal. The derived
//! golden signals ([`crate::DetectorBank`]) need no list; this is for anything else a user wants
//! a score for (`nightshift_anomaly_score` on `/metrics`).

use crate::Detector;
use crate::ensemble::{Ensemble, EnsembleConfig, EnsembleScore};
use crate::overrides::{Overrides, SeriesSelector};
use nightshift_core::hash::{FingerprintMap, series_hash};
use nightshift_core::{Millis, SeriesKey};

/// Most series watched at once (each holds one ensemble, ≤ 16 KiB): 100,000 is at most 1.6 GiB.
pub const DEFAULT_MAX_SERIES: usize = 100_000;

/// One watched series: its key, its engine and its latest verdict.
#[derive(Debug)]
pub struct Watched {
    pub key: SeriesKey,
    pub ensemble: Ensemble,
    pub last: Option<(Millis, EnsembleScore)>,
}

/// The ensembles of every series the selectors pick, created on first sight.
#[derive(Debug, Default)]
pub struct SeriesWatch {
    selectors: Vec<SeriesSelector>,
    overrides: Overrides,
    series: FingerprintMap<Watched>,
    max_series: usize,
    /// Samples of new series refused because `max_series` was reached.
    over_limit: u64,
    /// Samples the engines refused (out of order, repeated time).
    refused: u64,
}

impl SeriesWatch {
    pub fn new(selectors: Vec<SeriesSelector>, overrides: Overrides) -> Self {
        Self {
            selectors,
            overrides,
            series: FingerprintMap::default(),
            max_series: DEFAULT_MAX_SERIES,
            over_limit: 0,
            refused: 0,
        }
    }

    /// At most `max` series at once; samples of further new series are counted and dropped.
    pub fn with_max_series(mut self, max: usize) -> Self {
        self.max_series = max;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }

    /// Scores the sample if a selector picks its series.
    pub fn observe(&mut self, key: &SeriesKey, ts: Millis, value: f64) -> Option<EnsembleScore> {
        if self.selectors.is_empty() {
            return None;
        }
        let fp = series_hash(key);
        if !self.series.contains_key(&fp) {
            if !self.selectors.iter().any(|s| s.matches(key)) {
                return None;
            }
            if self.series.len() >= self.max_series {
                self.over_limit += 1;
                return None;
            }
            let cfg = self.overrides.config_for(key, EnsembleConfig::default());
            self.series.insert(
                fp,
                Watched {
                    key: key.clone(),
                    ensemble: Ensemble::new(cfg),
                    last: None,
                },
            );
        }
        let w = self.series.get_mut(&fp)?;
        match w.ensemble.assess(ts, value) {
            Ok(score) => {
                w.last = Some((ts, score));
                Some(score)
            }
            Err(_) => {
                self.refused += 1;
                None
            }
        }
    }

    /// The watched series `key`, if it is watched.
    pub fn get(&self, key: &SeriesKey) -> Option<&Watched> {
        self.series.get(&series_hash(key))
    }

    /// Every watched series.
    pub fn series(&self) -> impl Iterator<Item = &Watched> {
        self.series.values()
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn over_limit(&self) -> u64 {
        self.over_limit
    }

    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Bytes of detector state held.
    pub fn state_bytes(&self) -> usize {
        self.series.values().map(|w| w.ensemble.state_bytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_selected_series_are_watched_within_the_limit() {
        let sel = SeriesSelector::parse(r#"{__name__=~"up|cpu"}"#).expect("selector");
        let mut w = SeriesWatch::new(vec![sel], Overrides::default()).with_max_series(2);
        let up = |job: &str| SeriesKey::new("up", &[("job", job)]);
        for i in 0..10 {
            let ts = i * 15_000;
            assert!(w.observe(&up("a"), ts, 1.0).is_some());
            assert!(w.observe(&up("b"), ts, 1.0).is_some());
            assert!(w.observe(&up("c"), ts, 1.0).is_none(), "over the limit");
            assert!(w.observe(&SeriesKey::new("mem", &[]), ts, 1.0).is_none());
        }
        assert_eq!((w.len(), w.over_limit()), (2, 10));
        // A repeated time is refused and counted, the series keeps its state.
        assert!(w.observe(&up("a"), 0, 1.0).is_none());
        assert_eq!(w.refused(), 1);
        assert!(
            w.series()
                .all(|s| s.last.is_some_and(|(ts, _)| ts == 135_000))
        );
    }
}
