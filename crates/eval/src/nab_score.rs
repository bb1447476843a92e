//! NAB v1.0 scoring: the Numenta Anomaly Benchmark's reward for early detection inside labelled
//! windows, its corpus-wide threshold optimiser and its normalisation, following NAB's sweeper.
//!
//! Lavin & Ahmad, *Evaluating Real-time Anomaly Detection Algorithms — the Numenta Anomaly
//! Benchmark*, IEEE ICMLA 2015 (arXiv 1510.03336); the rules here are those of NAB's
//! `nab/sweeper.py`, checked row by row against NAB's published results.

use nightshift_core::Millis;
use serde::Serialize;

/// A NAB application profile: the reward for a detected window (`a_tp`), the cost of a false
/// alarm far from any window (`a_fp`) and the cost of a missed window (`a_fn`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostProfile {
    pub name: &'static str,
    pub a_tp: f64,
    pub a_fp: f64,
    pub a_fn: f64,
}

/// NAB's `standard` profile.
pub const STANDARD: CostProfile = CostProfile {
    name: "standard",
    a_tp: 1.0,
    a_fp: 0.11,
    a_fn: 1.0,
};

/// NAB's `reward_low_FP_rate` profile: false alarms cost twice as much.
pub const REWARD_LOW_FP_RATE: CostProfile = CostProfile {
    name: "reward_low_FP_rate",
    a_tp: 1.0,
    a_fp: 0.22,
    a_fn: 1.0,
};

/// NAB's `reward_low_FN_rate` profile: missed windows cost twice as much.
pub const REWARD_LOW_FN_RATE: CostProfile = CostProfile {
    name: "reward_low_FN_rate",
    a_tp: 1.0,
    a_fp: 0.11,
    a_fn: 2.0,
};

/// The three profiles NAB reports, in the order NAB's scoreboard lists them.
pub const PROFILES: [CostProfile; 3] = [STANDARD, REWARD_LOW_FP_RATE, REWARD_LOW_FN_RATE];

/// Share of each file's rows a detector may learn from before it is scored.
pub const PROBATIONARY_SHARE: f64 = 0.15;
/// Cap on the probationary period in rows (NAB's 15 % of 5,000).
pub const PROBATIONARY_MAX: usize = 750;

/// Why a file cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NabError {
    #[error("{timestamps} timestamps but {scores} anomaly scores")]
    LengthMismatch { timestamps: usize, scores: usize },
    /// NAB finds windows by timestamp, so rows must be in time order. Repeats are allowed (NAB's
    /// AWS files repeat one at a daylight-saving change); a window bound means its first row.
    #[error("row {row}: timestamp {ts} ms is before the previous row's")]
    OutOfOrder { row: usize, ts: Millis },
    #[error("row {row}: anomaly score {score} is not a finite number")]
    NonFiniteScore { row: usize, score: f64 },
    #[error("window boundary {ts} ms matches no row's timestamp")]
    WindowNotInData { ts: Millis },
    /// Windows are NAB's combined windows: in time order, disjoint, inside the file.
    #[error(
        "window {index} (rows {first}..={last}) is empty, out of order, overlaps another or lies past the last row"
    )]
    BadWindow {
        index: usize,
        first: usize,
        last: usize,
    },
    /// Normalisation divides by the perfect detector's margin over the null detector.
    #[error("the corpus has no labelled window, so scores cannot be normalised")]
    NoWindows,
}

/// NAB's probationary period for a file of `rows` rows: min(⌊0.15·rows⌋, 750). Those first rows
/// are never scored, whatever the detector says there.
pub fn probationary_length(rows: usize) -> usize {
    // The same double-precision product NAB computes, so the floor agrees on every length.
    ((PROBATIONARY_SHARE * rows as f64).floor() as usize).min(PROBATIONARY_MAX)
}

/// NAB's scaled sigmoid `2/(1+e^{5y}) − 1`: +0.987 at the start of a window (y = −1), 0 at its
/// end, and exactly −1 more than three window widths after it.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// A labelled anomaly window as row indices, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub first: usize,
    pub last: usize,
}

impl Window {
    pub fn rows(&self) -> usize {
        self.last - self.first + 1
    }
}

/// How one file scores at one threshold under one profile, counted as NAB counts: rows after
/// the probationary period, a detection being `score >= threshold`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileScore {
    /// NAB's raw score: each window's earliest-detection reward (or −A_FN) plus every false
    /// alarm's weighted cost.
    pub raw: f64,
    /// Detections inside windows (every such row, not only the earliest).
    #[serde(rename = "tp")]
    pub true_positives: usize,
    #[serde(rename = "tn")]
    pub true_negatives: usize,
    /// Detections outside windows.
    #[serde(rename = "fp")]
    pub false_positives: usize,
    /// Window rows without a detection.
    #[serde(rename = "fn")]
    pub false_negatives: usize,
}

/// One file's anomaly scores with its labelled windows, ready to score under any profile and
/// threshold.
#[derive(Debug, Clone)]
pub struct ScoredSeries {
    name: String,
    scores: Vec<f64>,
    windows: Vec<Window>,
    probation: usize,
    /// Per row, the profile-free σ of NAB's sweep: σ(y) of the position in the window for rows
    /// inside one, σ of the distance past the previous window (or −1 before any) outside.
    sigma: Vec<f64>,
    /// Per row, the index of the window holding it.
    window_of: Vec<Option<u32>>,
}

impl ScoredSeries {
    /// A file whose windows are given as `[start, end]` timestamps that must match rows exactly
    /// (NAB's `combined_windows.json`).
    pub fn new(
        name: impl Into<String>,
        timestamps: &[Millis],
        scores: Vec<f64>,
        windows: &[(Millis, Millis)],
    ) -> Result<Self, NabError> {
        if timestamps.len() != scores.len() {
            return Err(NabError::LengthMismatch {
                timestamps: timestamps.len(),
                scores: scores.len(),
            });
        }
        if let Some(row) = timestamps.windows(2).position(|w| w[1] < w[0]) {
            return Err(NabError::OutOfOrder {
                row: row + 1,
                ts: timestamps[row + 1],
            });
        }
        // The first row at `ts`, as NAB's `timestamps.index(ts)` finds it.
        let row_of = |ts: Millis| {
            let row = timestamps.partition_point(|&t| t < ts);
            match timestamps.get(row) {
                Some(&t) if t == ts => Ok(row),
                _ => Err(NabError::WindowNotInData { ts }),
            }
        };
        let rows = windows
            .iter()
            .map(|&(start, end)| {
                Ok(Window {
                    first: row_of(start)?,
                    last: row_of(end)?,
                })
            })
            .collect::<Result<Vec<_>, NabError>>()?;
        Self::from_rows(name, scores, rows)
    }

    /// A file whose windows are already row indices.
    pub fn from_rows(
        name: impl Into<String>,
        scores: Vec<f64>,
        windows: Vec<Window>,
    ) -> Result<Self, NabError> {
        if let Some(row) = scores.iter().position(|s| !s.is_finite()) {
            return Err(NabError::NonFiniteScore {
                row,
                score: scores[row],
            });
        }
        let n = scores.len();
        let mut next_free = 0;
        for (index, w) in windows.iter().enumerate() {
            if w.first > w.last || w.first < next_free || w.last >= n {
                return Err(NabError::BadWindow {
                    index,
                    first: w.first,
                    last: w.last,
                });
            }
            next_free = w.last + 1;
        }

        let mut sigma = vec![0.0; n];
        let mut window_of = vec![None; n];
        let mut previous: Option<Window> = None;
        let mut upcoming = windows.iter().enumerate().peekable();
        let mut current: Option<(u32, Window)> = None;
        for (i, (s, w)) in sigma.iter_mut().zip(window_of.iter_mut()).enumerate() {
            if let Some(&(k, win)) = upcoming.peek()
                && win.first == i
            {
                current = Some((k as u32, *win));
                upcoming.next();
            }
            if let Some((k, win)) = current {
                *w = Some(k);
                *s = scaled_sigmoid(-((win.last - i + 1) as f64) / win.rows() as f64);
                if i == win.last {
                    previous = Some(win);
                    current = None;
                }
            } else {
                *s = match previous {
                    // Before any window ended NAB charges the full cost.
                    None => -1.0,
                    // A one-row window gives 0/0 → ∞ here, which the sigmoid maps to −1.
                    Some(p) => scaled_sigmoid((i - p.last) as f64 / (p.rows() - 1) as f64),
                };
            }
        }
        Ok(Self {
            name: name.into(),
            probation: probationary_length(n),
            scores,
            windows,
            sigma,
            window_of,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn rows(&self) -> usize {
        self.scores.len()
    }

    /// Rows at the start that are not scored.
    pub fn probation(&self) -> usize {
        self.probation
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// Windows with at least one scored row: the ones that count, as missed or detected.
    pub fn scored_windows(&self) -> usize {
        self.windows
            .iter()
            .filter(|w| w.last >= self.probation)
            .count()
    }

    /// What a detection at `row` earns (inside a window) or costs (outside one) under `profile`,
    /// ignoring the probationary period: NAB's per-row sweep score.
    pub fn weight(&self, row: usize, profile: &CostProfile) -> f64 {
        let s = self.sigma[row];
        if self.window_of[row].is_some() {
            // Same operation order as NAB (σ·A_TP then ÷σ(−1)), so results agree to the last bit.
            s * profile.a_tp / scaled_sigmoid(-1.0)
        } else {
            s * profile.a_fp
        }
    }

    /// The file's raw score and counts when every row scoring at least `threshold` is a detection.
    pub fn score(&self, profile: &CostProfile, threshold: f64) -> FileScore {
        let mut parts: Vec<Option<f64>> = self
            .windows
            .iter()
            .map(|w| (w.last >= self.probation).then_some(-profile.a_fn))
            .collect();
        let (mut fp_cost, mut tp, mut tn, mut fp, mut fn_) = (0.0, 0, 0, 0, 0);
        for i in self.probation..self.rows() {
            let detected = self.scores[i] >= threshold;
            match (self.window_of[i], detected) {
                (Some(k), true) => {
                    tp += 1;
                    let part = &mut parts[k as usize];
                    *part = part.map(|p| p.max(self.weight(i, profile)));
                }
                (Some(_), false) => fn_ += 1,
                (None, true) => {
                    fp += 1;
                    fp_cost += self.weight(i, profile);
                }
                (None, false) => tn += 1,
            }
        }
        FileScore {
            raw: fp_cost + parts.iter().flatten().sum::<f64>(),
            true_positives: tp,
            true_negatives: tn,
            false_positives: fp,
            false_negatives: fn_,
        }
    }

    /// Each row's share of [`score`](Self::score)'s raw score, as NAB writes it into the `S(t)_<profile>`
    /// column of its results files: a false alarm's cost on its row, each window's reward (or
    /// −A_FN) on the window's first scored row, 0 elsewhere.
    pub fn contributions(&self, profile: &CostProfile, threshold: f64) -> Vec<f64> {
        let mut out = vec![0.0; self.rows()];
        for w in &self.windows {
            if w.last < self.probation {
                continue;
            }
            let first = w.first.max(self.probation);
            let detection = (first..=w.last).find(|&i| self.scores[i] >= threshold);
            out[first] = detection.map_or(-profile.a_fn, |i| self.weight(i, profile));
        }
        for (i, c) in out.iter_mut().enumerate().skip(self.probation) {
            if self.window_of[i].is_none() && self.scores[i] >= threshold {
                *c = self.weight(i, profile);
            }
        }
        out
    }
}

/// A threshold and the corpus raw score it gives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdChoice {
    pub threshold: f64,
    pub raw: f64,
}

/// NAB's threshold for "nothing is a detection" when every score is below it.
const NO_DETECTION_THRESHOLD: f64 = 1.1;

/// The threshold that maximises the corpus raw score under `profile`, found as NAB's optimiser
/// finds it: every distinct score of a scored row is a candidate (a detection is
/// `score >= threshold`, so no other value changes anything), plus one above all scores that
/// detects nothing. Ties go to the highest threshold, as NAB's stable sort does.
pub fn optimise_threshold(corpus: &[ScoredSeries], profile: &CostProfile) -> ThresholdChoice {
    struct Row {
        score: f64,
        weight: f64,
        window: Option<usize>,
    }
    let mut rows = Vec::new();
    let mut parts = Vec::new();
    for series in corpus {
        let base = parts.len();
        for w in &series.windows {
            parts.push(if w.last >= series.probation {
                -profile.a_fn
            } else {
                // Never reached by a scored row, so it never changes; 0 keeps it out of the sum.
                0.0
            });
        }
        for i in series.probation..series.rows() {
            rows.push(Row {
                score: series.scores[i],
                weight: series.weight(i, profile),
                window: series.window_of[i].map(|k| base + k as usize),
            });
        }
    }
    // Stable, so rows with equal scores keep file order, as in NAB.
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));

    let top = rows.first().map_or(0.0, |r| r.score);
    let mut current = if top < NO_DETECTION_THRESHOLD {
        NO_DETECTION_THRESHOLD
    } else {
        next_above(top)
    };
    let mut fp_cost = 0.0;
    // NAB re-sums its parts at every threshold instead of carrying a running total, which keeps
    // the optimum free of accumulated rounding; doing the same keeps ties resolved alike.
    let total = |fp_cost: f64, parts: &[f64]| fp_cost + parts.iter().sum::<f64>();
    let mut best = ThresholdChoice {
        threshold: current,
        raw: total(0.0, &parts),
    };
    for row in &rows {
        if row.score != current {
            let raw = total(fp_cost, &parts);
            if raw > best.raw {
                best = ThresholdChoice {
                    threshold: current,
                    raw,
                };
            }
            current = row.score;
        }
        match row.window {
            Some(k) => parts[k] = parts[k].max(row.weight),
            None => fp_cost += row.weight,
        }
    }
    let raw = total(fp_cost, &parts);
    if raw > best.raw {
        best = ThresholdChoice {
            threshold: current,
            raw,
        };
    }
    best
}

/// The smallest double above a finite positive `x`.
fn next_above(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        f64::from_bits(x.to_bits() + 1)
    } else {
        x.abs() + 1.0
    }
}

/// The null detector's corpus score (it never detects): −A_FN for every window that has a scored row.
pub fn null_score(corpus: &[ScoredSeries], profile: &CostProfile) -> f64 {
    -profile.a_fn * corpus.iter().map(|s| s.scored_windows()).sum::<usize>() as f64
}

/// The perfect detector's corpus score (a detection on each window's first row): A_TP for every
/// labelled window, as NAB counts it.
pub fn perfect_score(corpus: &[ScoredSeries], profile: &CostProfile) -> f64 {
    profile.a_tp * corpus.iter().map(|s| s.windows.len()).sum::<usize>() as f64
}

/// NAB's normalised score `100·(raw − null)/(perfect − null)`: 0 for the null detector, 100 for
/// the perfect one. `None` when there is nothing to normalise against.
pub fn normalised_score(raw: f64, null: f64, perfect: f64) -> Option<f64> {
    (perfect > null).then(|| 100.0 * (raw - null) / (perfect - null))
}

/// A whole corpus under one profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileResult {
    pub profile: &'static str,
    pub threshold: f64,
    /// Sum of the files' raw scores at `threshold`.
    pub raw: f64,
    pub null: f64,
    pub perfect: f64,
    pub normalised: f64,
    /// One per input series, in input order.
    pub files: Vec<FileScore>,
}

/// Scores the corpus at the threshold NAB's optimiser would choose for `profile`.
pub fn evaluate(corpus: &[ScoredSeries], profile: &CostProfile) -> Result<ProfileResult, NabError> {
    evaluate_at(
        corpus,
        profile,
        optimise_threshold(corpus, profile).threshold,
    )
}

/// Scores the corpus at a given threshold (a detector's published one, say).
pub fn evaluate_at(
    corpus: &[ScoredSeries],
    profile: &CostProfile,
    threshold: f64,
) -> Result<ProfileResult, NabError> {
    let files: Vec<FileScore> = corpus.iter().map(|s| s.score(profile, threshold)).collect();
    let raw = files.iter().map(|f| f.raw).sum();
    let null = null_score(corpus, profile);
    let perfect = perfect_score(corpus, profile);
    let normalised = normalised_score(raw, null, perfect).ok_or(NabError::NoWindows)?;
    Ok(ProfileResult {
        profile: profile.name,
        threshold,
        raw,
        null,
        perfect,
        normalised,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn series(scores: Vec<f64>, windows: &[(usize, usize)]) -> ScoredSeries {
        let windows = windows
            .iter()
            .map(|&(first, last)| Window { first, last })
            .collect();
        ScoredSeries::from_rows("toy.csv", scores, windows).expect("valid toy series")
    }

    /// A score of 1 on the given rows, 0 elsewhere.
    fn spikes(n: usize, at: &[usize]) -> Vec<f64> {
        let mut v = vec![0.0; n];
        for &i in at {
            v[i] = 1.0;
        }
        v
    }

    #[test]
    fn scaled_sigmoid_has_nabs_shape() {
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298_151_430_3).abs() < EPS);
        assert!((scaled_sigmoid(1.0) + 0.986_614_298_151_430_3).abs() < EPS);
        // Continuous up to 3, then the flat −1 of "well past the window".
        assert!(scaled_sigmoid(3.0) > -1.0 && scaled_sigmoid(3.0) < -0.999_999);
        assert_eq!(scaled_sigmoid(3.000_001), -1.0);
        assert_eq!(scaled_sigmoid(f64::INFINITY), -1.0);
        let ys: Vec<f64> = (-20..=15).map(|k| f64::from(k) / 5.0).collect();
        assert!(
            ys.windows(2)
                .all(|w| scaled_sigmoid(w[0]) > scaled_sigmoid(w[1]))
        );
    }

    #[test]
    fn probationary_period_is_fifteen_percent_capped_at_750() {
        assert_eq!(probationary_length(0), 0);
        assert_eq!(probationary_length(6), 0);
        assert_eq!(probationary_length(7), 1);
        assert_eq!(probationary_length(100), 15);
        assert_eq!(probationary_length(1243), 186);
        assert_eq!(probationary_length(4032), 604);
        assert_eq!(probationary_length(5000), 750);
        assert_eq!(probationary_length(22_695), 750);
    }

    #[test]
    fn detections_in_the_probationary_period_are_ignored() {
        // 100 rows: rows 0..15 are probationary.
        let s = series(spikes(100, &[3, 14]), &[]);
        let r = s.score(&STANDARD, 0.5);
        assert_eq!(r.raw, 0.0);
        assert_eq!(r.false_positives, 0);
        assert_eq!(r.true_negatives, 85);
        let s = series(spikes(100, &[15]), &[]);
        assert!((s.score(&STANDARD, 0.5).raw + 0.11).abs() < EPS);
    }

    #[test]
    fn window_reward_goes_to_the_earliest_detection_only() {
        // Window rows 40..=49 (width 10).
        let s = series(spikes(100, &[42, 45, 49]), &[(40, 49)]);
        let r = s.score(&STANDARD, 0.5);
        let y = -((49 - 42 + 1) as f64) / 10.0;
        assert!((r.raw - scaled_sigmoid(y) / scaled_sigmoid(-1.0)).abs() < EPS);
        assert_eq!(
            (
                r.true_positives,
                r.false_negatives,
                r.false_positives,
                r.true_negatives
            ),
            (3, 7, 0, 75)
        );
        // A detection on the first row earns exactly A_TP; on the last, almost nothing.
        assert!((s.weight(40, &STANDARD) - 1.0).abs() < EPS);
        assert!(s.weight(49, &STANDARD) > 0.0 && s.weight(49, &STANDARD) < 0.3);
        // A missed window costs A_FN.
        let missed = series(vec![0.0; 100], &[(40, 49)]);
        assert_eq!(missed.score(&REWARD_LOW_FN_RATE, 0.5).raw, -2.0);
    }

    #[test]
    fn false_alarms_cost_by_distance_from_the_previous_window() {
        let s = series(vec![0.0; 200], &[(40, 49), (150, 159)]);
        // Before any window has ended: the full cost.
        assert_eq!(s.weight(20, &STANDARD), -0.11);
        assert_eq!(s.weight(20, &REWARD_LOW_FP_RATE), -0.22);
        // Just after the first window: y = 1/9, nearly free.
        let just_after = s.weight(50, &STANDARD);
        assert!((just_after - 0.11 * scaled_sigmoid(1.0 / 9.0)).abs() < EPS);
        assert!(just_after > -0.11 * 0.3);
        // Three widths on (y = 27/9 = 3) still under the cap; past it, the full cost.
        assert!(s.weight(76, &STANDARD) > -0.11);
        assert_eq!(s.weight(77, &STANDARD), -0.11);
        // After the second window the distance counts from it, not from the first.
        assert!((s.weight(160, &STANDARD) - 0.11 * scaled_sigmoid(1.0 / 9.0)).abs() < EPS);
        // Inside the second window rows are rewards, not costs.
        assert!(s.weight(150, &STANDARD) > 0.98);
        // Costs add up, one per detected row.
        let alarms = series(spikes(200, &[35, 100, 101]), &[(40, 49), (150, 159)]);
        let r = alarms.score(&STANDARD, 0.5);
        assert_eq!(r.false_positives, 3);
        assert!((r.raw - (-0.11 - 0.11 - 0.11 - 2.0)).abs() < EPS);
    }

    #[test]
    fn a_one_row_window_makes_later_alarms_full_cost() {
        let s = series(vec![0.0; 100], &[(40, 40)]);
        assert_eq!(s.weight(41, &STANDARD), -0.11);
        assert!((s.weight(40, &STANDARD) - 1.0).abs() < EPS);
    }

    #[test]
    fn a_window_reaching_into_probation_counts_its_scored_rows() {
        // 100 rows, probation 15; window 10..=19: only 15..=19 are scored.
        let s = series(spikes(100, &[12, 17]), &[(10, 19)]);
        let r = s.score(&STANDARD, 0.5);
        assert_eq!((r.true_positives, r.false_negatives), (1, 4));
        assert!((r.raw - s.weight(17, &STANDARD)).abs() < EPS);
        // A window wholly in probation is neither missed nor found.
        let early = series(vec![0.0; 100], &[(2, 5)]);
        assert_eq!(early.score(&STANDARD, 0.5).raw, 0.0);
        assert_eq!(early.scored_windows(), 0);
    }

    #[test]
    fn contributions_sum_to_the_raw_score() {
        let s = series(
            vec![
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.7, 0.8, 0.0,
                0.0, 0.0, 0.6, 0.0,
            ],
            &[(12, 14), (16, 17)],
        );
        for profile in PROFILES {
            let c = s.contributions(&profile, 0.65);
            let r = s.score(&profile, 0.65);
            assert!((c.iter().sum::<f64>() - r.raw).abs() < EPS);
            assert_eq!(
                c[12],
                s.weight(13, &profile),
                "window reward on its first row"
            );
            assert_eq!(c[16], -profile.a_fn, "missed window");
        }
    }

    #[test]
    fn optimiser_finds_the_best_threshold_on_a_toy_corpus() {
        // File a: a true spike early in its window, a false one scoring 0.6.
        // File b: a weak true signal (0.4) and a false alarm at 0.3.
        let mut a = vec![0.1; 100];
        a[41] = 0.8;
        a[70] = 0.6;
        let mut b = vec![0.05; 100];
        b[30] = 0.3;
        b[61] = 0.4;
        let corpus = [series(a, &[(40, 49)]), series(b, &[(60, 69)])];
        for profile in PROFILES {
            let best = optimise_threshold(&corpus, &profile);
            let at = |t: f64| corpus.iter().map(|s| s.score(&profile, t).raw).sum::<f64>();
            assert!((best.raw - at(best.threshold)).abs() < EPS);
            // No threshold on a fine grid does better.
            for k in 0..=1200 {
                let t = f64::from(k) / 1000.0;
                assert!(at(t) <= best.raw + EPS, "{} at {t}", profile.name);
            }
        }
        // Standard: catching b's window (+0.99) is worth the 0.6 and 0.3 false alarms
        // (−0.11 each, as both are far from any window or before it).
        let best = optimise_threshold(&corpus, &STANDARD);
        assert_eq!(best.threshold, 0.4);
        // Ties go to the highest threshold: a second, later detection in an already detected
        // window changes nothing, so 0.9 and 0.5 score the same and 0.9 is kept.
        let mut c = vec![0.0; 100];
        c[40] = 0.9;
        c[45] = 0.5;
        let tie = [series(c, &[(40, 49)])];
        let best = optimise_threshold(&tie, &STANDARD);
        assert_eq!(best.threshold, 0.9);
        assert!((best.raw - 1.0).abs() < EPS);
        // Nothing worth detecting: NAB's "above every score" threshold.
        let quiet = [series(vec![0.2; 100], &[])];
        let best = optimise_threshold(&quiet, &STANDARD);
        assert_eq!(best.threshold, 1.1);
        assert_eq!(best.raw, 0.0);
    }

    #[test]
    fn null_and_perfect_detectors_normalise_to_0_and_100() {
        let windows = [(40, 49), (70, 79)];
        let null = [series(vec![0.0; 100], &windows)];
        let perfect = [series(spikes(100, &[40, 70]), &windows)];
        for profile in PROFILES {
            let n = evaluate(&null, &profile).expect("windows exist");
            assert!(n.normalised.abs() < EPS);
            let p = evaluate(&perfect, &profile).expect("windows exist");
            assert!((p.normalised - 100.0).abs() < 1e-9, "{}", p.normalised);
            assert_eq!(p.threshold, 1.0);
        }
        assert_eq!(
            evaluate(&[series(vec![0.0; 10], &[])], &STANDARD),
            Err(NabError::NoWindows)
        );
    }

    #[test]
    fn windows_are_found_by_timestamp_and_bad_input_is_refused() {
        let ts: Vec<Millis> = (0..100).map(|i| i * 300_000).collect();
        let s =
            ScoredSeries::new("f.csv", &ts, vec![0.0; 100], &[(ts[40], ts[49])]).expect("valid");
        assert_eq!(
            s.windows(),
            &[Window {
                first: 40,
                last: 49
            }]
        );
        assert_eq!(
            ScoredSeries::new("f.csv", &ts, vec![0.0; 100], &[(ts[40] + 1, ts[49])]).err(),
            Some(NabError::WindowNotInData { ts: ts[40] + 1 })
        );
        assert!(matches!(
            ScoredSeries::new("f.csv", &ts, vec![0.0; 99], &[]),
            Err(NabError::LengthMismatch { .. })
        ));
        let mut bad = vec![0.0; 100];
        bad[7] = f64::NAN;
        assert!(matches!(
            ScoredSeries::new("f.csv", &ts, bad, &[]),
            Err(NabError::NonFiniteScore { row: 7, .. })
        ));
        let mut back = ts.clone();
        back[5] = back[3];
        assert_eq!(
            ScoredSeries::new("f.csv", &back, vec![0.0; 100], &[]).err(),
            Some(NabError::OutOfOrder {
                row: 5,
                ts: back[5]
            })
        );
        // A repeated timestamp is allowed; a window bound on it means its first row.
        let mut repeated = ts.clone();
        repeated[41] = repeated[40];
        repeated[42] = repeated[40];
        let s = ScoredSeries::new("f.csv", &repeated, vec![0.0; 100], &[(ts[30], ts[40])])
            .expect("repeats are allowed");
        assert_eq!(
            s.windows(),
            &[Window {
                first: 30,
                last: 40
            }]
        );
        assert!(matches!(
            ScoredSeries::new("f.csv", &ts, vec![0.0; 100], &[(ts[49], ts[40])]),
            Err(NabError::BadWindow { .. })
        ));
        assert!(matches!(
            ScoredSeries::new(
                "f.csv",
                &ts,
                vec![0.0; 100],
                &[(ts[40], ts[49]), (ts[45], ts[60])]
            ),
            Err(NabError::BadWindow { index: 1, .. })
        ));
    }
}
