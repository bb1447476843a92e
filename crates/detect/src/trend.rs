//! Sustained growth or decline (a memory leak, a filling disk), judged against the slopes the
//! series usually shows, with a forecast of when a known limit is reached at the current rate.

use crate::detector::{Sanitise, check_point};
use crate::window::MEDIAN_ABS_TO_SIGMA;
use crate::window::{
    ABS_FLOOR, HeldQuartiles, IqrReference, MAX_RING, evidence_score, fmt_num, is_harmful,
};
use crate::{AlarmDirection, Band, DetectError, Detector, Score};
use nightshift_core::{Millis, format_duration};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Most blocks a window may hold: the slope fit keeps their pairwise slopes on the stack.
const MAX_BLOCKS: usize = 32;
const MAX_PAIRS: usize = MAX_BLOCKS * (MAX_BLOCKS - 1) / 2;
/// Ceiling on the significance, so a perfectly straight series (no scatter at all) keeps a
/// finite, serialisable number.
const MAX_SIGNIFICANCE: f64 = 1e6;
/// Fits the average scatter of blocks around their line reaches back over (two hours).
const SCALE_MEMORY: f64 = 24.0;
/// Forecasts further out than this (about 30 years) are reported as none.
const MAX_FORECAST: f64 = 1e12;
const HOUR: f64 = 3_600_000.0;
/// Significance a slope needs before a time to exhaustion is given for it: below 2, the
/// scatter of the blocks explains the slope about as well.
const MIN_FORECAST_SIGNIFICANCE: f64 = 2.0;

/// Tuning of [`TrendDetector`]. The defaults need no per-metric adjustment: a slope is judged
/// against the slopes the series itself has shown. Only [`limit`](TrendConfig::limit) is
/// per-metric, and optional.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrendConfig {
    /// Points are averaged over blocks of this length (5 minutes); the slope is measured
    /// between blocks. At a 15 s step a block averages 20 points, which divides the noise of
    /// each by about 4.5; at steps longer than a block each point is its own block.
    pub block: Millis,
    /// Blocks in the window the slope is measured over (3 to 32): 12 × 5 minutes is an hour,
    /// long against any scrape step and short against a day.
    pub blocks: usize,
    /// A |slope| beyond Q3 + c × IQR of the |slopes| seen, in an alarm direction, is unusual
    /// (evidence 1 from that check).
    pub c: f64,
    /// Significance (slope over its standard error) that counts as a full 1 of evidence.
    pub significance: f64,
    /// Which trends count for the learned-slope check: growth, decline or both. The
    /// exhaustion forecast always looks toward the limit.
    pub alarm: AlarmDirection,
    /// Slopes kept as the reference (4 to 64).
    pub history: usize,
    /// One slope enters the reference every this many blocks. Slopes a block apart share all
    /// but one block of their windows; one every 30 minutes spreads the default 48 over a
    /// day, the whole range of a daily curve's slopes.
    pub history_every: usize,
    /// Slopes needed before the learned-slope check scores: six hours by default, a quarter
    /// of a day, which already spans a daily curve's rise from flat to steepest. Before that
    /// only the exhaustion forecast scores.
    pub min_history: usize,
    /// Slopes that move the level by less than this share of it per window never reach 0.5 on
    /// the learned-slope check (2 % per hour by default), so a straight-line series (a steady
    /// counter) does not alarm on a slightly different rate.
    pub relative_floor: f64,
    /// The value the series must not reach (1.0 for a usage ratio, a capacity in bytes); the
    /// forecast looks toward it from the current level.
    pub limit: Option<f64>,
    /// Time to exhaustion that scores 0.5; half of it scores above 0.99.
    pub horizon: Millis,
    /// After this long flagged, the current slope is taken as the new normal.
    pub relearn_after: Millis,
}

impl Default for TrendConfig {
    fn default() -> Self {
        Self {
            block: 5 * 60_000,
            blocks: 12,
            c: 4.0,
            significance: 4.0,
            alarm: AlarmDirection::Both,
            history: 48,
            history_every: 6,
            min_history: 12,
            relative_floor: 0.02,
            limit: None,
            horizon: 4 * 60 * 60_000,
            relearn_after: 6 * 60 * 60_000,
        }
    }
}

impl Sanitise for TrendConfig {
    fn sanitised(self) -> Self {
        let d = Self::default();
        let pos = |x: f64, or: f64| if x.is_finite() && x > 0.0 { x } else { or };
        let history = self.history.clamp(4, MAX_RING);
        Self {
            block: self.block.max(1),
            blocks: self.blocks.clamp(3, MAX_BLOCKS),
            c: pos(self.c, d.c),
            significance: pos(self.significance, d.significance),
            alarm: self.alarm,
            history,
            history_every: self.history_every.clamp(1, 1024),
            min_history: self.min_history.clamp(1, history),
            relative_floor: if self.relative_floor.is_finite() && self.relative_floor >= 0.0 {
                self.relative_floor
            } else {
                d.relative_floor
            },
            limit: self.limit.filter(|l| l.is_finite()),
            horizon: self.horizon.max(1),
            relearn_after: self.relearn_after.max(0),
        }
    }
}

/// The mean time and value of one block.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Block {
    t: Millis,
    x: f64,
}

/// The slopes measured when the last block completed (per millisecond), and what they are
/// judged against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Fit {
    /// Theil–Sen slope over the window.
    slope: f64,
    /// Whether one step between two flat stretches fits the window better than a line: a
    /// level shift, not a trend.
    step_like: bool,
    /// |slope| over its standard error, capped; 0 when step-like.
    significance: f64,
    /// The fitted level at the last block: where the forecast starts.
    level: f64,
    at: Millis,
    /// The fitted level at the first block: where the band is drawn from.
    start: Block,
    /// Learned-slope reference, when ready.
    reference: Option<SlopeReference>,
    /// Evidence of the learned-slope check (1 = its flag).
    unusual: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct SlopeReference {
    /// Quartiles of the learned |slope|s and c × IQR, floored.
    q1: f64,
    q3: f64,
    spread: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Reading {
    score: f64,
    /// Time to the limit at the current rate, when it is approached significantly.
    exhaustion: Option<Millis>,
}

/// Finds sustained growth or decline and forecasts when a known limit is reached.
///
/// * **Slope**: points are averaged into [`block`](TrendConfig::block)s and the slope is the
///   Theil–Sen estimate over the last [`blocks`](TrendConfig::blocks) (an hour by default): the
///   median of the slopes between every pair of blocks (P. K. Sen, *Estimates of the
///   regression coefficient based on Kendall's tau*, JASA 63, 1968; H. Theil, 1950), robust to
///   a spike or an odd block. Significance = |slope| / standard error, the error from the
///   blocks' robust scatter around the line (MAD, corrected for the fit and the small sample,
///   and never below its two-hour average).
/// * **Trend, not step**: when one step between two flat stretches fits the window better
///   than the line, the window holds a level shift (the
///   [`LevelShiftDetector`](crate::LevelShiftDetector)'s finding) and nothing is scored: only a
///   level that keeps moving counts.
/// * **Learned slopes**: every 30 minutes the |slope| enters a reference of the last
///   [`history`](TrendConfig::history) (a day); a slope beyond Q3 + c × IQR of it (c = 4) in
///   an [`alarm`](TrendConfig::alarm) direction is unusual, in the manner of ADTK's
///   `InterQuartileRangeAD` (<https://adtk.readthedocs.io/en/stable/api/detectors.html>).
///   Magnitudes are learned, not signed slopes, so the fall of a daily curve is as normal as
///   its rise; a daily curve's slopes change gradually and stay inside the learned range,
///   while a leak's slope jumps out of it. While a trend scores 0.5 or more its slopes are not
///   learned, so a leak does not become normal (until
///   [`relearn_after`](TrendConfig::relearn_after)).
/// * **Exhaustion**: with a [`limit`](TrendConfig::limit), the fitted level projected to now
///   and the slope give the time until the limit is reached, as Prometheus `predict_linear`
///   alerts do; [`time_to_exhaustion`](TrendDetector::time_to_exhaustion) exposes it once the
///   slope's significance is at least 2.
/// * **Score**: evidence e = min(significance / [`significance`](TrendConfig::significance),
///   max(unusual, [`horizon`](TrendConfig::horizon) / time to exhaustion)) through
///   1 − 2^(−e³): 0.5 when the slope is significant (4) and either at the learned flag or
///   4 hours from the limit; 0.9 at 1.5 times that (2h40m from the limit); above 0.99 at twice
///   (2 hours from the limit). A slope its own scatter explains never scores.
/// * **Band**: expected = the fitted level at the start of the window; lower/upper = where
///   the largest usual slope (Q3 + c × IQR) would take it by now, either way.
/// * **Warm-up**: score 0 until the window's blocks are complete (about an hour); the
///   learned-slope check waits for [`min_history`](TrendConfig::min_history) slopes (six
///   more hours), the exhaustion forecast does not.
/// * **Cost**: a few additions per point; once per block the 11 pair slopes of the block that
///   left are swapped for the 11 of the new one in the sorted 66 (kept between blocks, rebuilt
///   after a restore), two medians of 12 residuals and a step test over 12 blocks. About 2 KiB
///   of state by default.
///
/// On synthetic series at the defaults, a leak on a flat series reaches 0.5 30 to 40 minutes
/// after it starts (121 to 161 points at 15 s, for rates from 5 % to 100 % of the level an
/// hour): the window must hold more ramp than step. No point of 300,000 of Gaussian noise, nor
/// of daily curves at 20 phases with 1 to 10 % noise over three days each, reached 0.5.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrendDetector {
    #[serde(deserialize_with = "crate::detector::sanitised")]
    cfg: TrendConfig,
    last_ts: Option<Millis>,
    /// Start of the block being accumulated.
    acc_start: Millis,
    acc_n: u32,
    acc_sum: f64,
    /// Sum of (ts − acc_start), for the block's mean time.
    acc_dt: f64,
    blocks: VecDeque<Block>,
    /// The slopes between every pair of blocks in the window, sorted: a cache, rebuilt from
    /// `blocks` after a restore.
    #[serde(skip)]
    pairs: PairSlopes,
    /// Reference: |slopes|, one every `history_every` blocks.
    slopes: IqrReference<HeldQuartiles>,
    /// Average scatter of the blocks around their line, and the fits it has seen.
    scale: f64,
    fits: u32,
    fit: Option<Fit>,
    /// Since when the trend has scored 0.5 or more at each block's end.
    flagged_since: Option<Millis>,
    first_ts: Option<Millis>,
    last: Reading,
}

impl Default for TrendDetector {
    fn default() -> Self {
        Self::new(TrendConfig::default())
    }
}

impl TrendDetector {
    /// Name reported in explanations and evidence.
    pub const NAME: &'static str = "trend";

    /// A detector with `cfg`, each field clamped to its valid range.
    pub fn new(cfg: TrendConfig) -> Self {
        let cfg = cfg.sanitised();
        Self {
            cfg,
            last_ts: None,
            acc_start: 0,
            acc_n: 0,
            acc_sum: 0.0,
            acc_dt: 0.0,
            blocks: VecDeque::with_capacity(cfg.blocks + 1),
            pairs: PairSlopes::default(),
            slopes: IqrReference::new(cfg.history),
            scale: 0.0,
            fits: 0,
            fit: None,
            flagged_since: None,
            first_ts: None,
            last: Reading::default(),
        }
    }

    /// The same detector forecasting toward `limit` (e.g. 1.0 for a usage ratio, or a
    /// capacity); a non-finite limit is ignored.
    pub fn with_limit(mut self, limit: f64) -> Self {
        self.cfg.limit = Some(limit).filter(|l| l.is_finite());
        self
    }

    pub fn config(&self) -> &TrendConfig {
        &self.cfg
    }

    /// Milliseconds until the limit is reached at the current rate, as of the last point;
    /// `None` without a limit, before the window is full, when the slope is not significant
    /// (below 2), or when the series moves away from the limit (including once past it).
    pub fn time_to_exhaustion(&self) -> Option<i64> {
        self.last.exhaustion
    }

    /// The current slope per hour, once the window is full.
    pub fn slope_per_hour(&self) -> Option<f64> {
        self.fit.map(|f| f.slope * HOUR)
    }

    /// How long the series must be watched before the first score: the window plus one block.
    pub fn warmup(&self) -> Millis {
        self.cfg.block.saturating_mul(self.cfg.blocks as Millis + 1)
    }

    /// Closes the block being accumulated and refits the slope.
    fn close_block(&mut self, ts: Millis) {
        if self.acc_n == 0 {
            return;
        }
        let n = f64::from(self.acc_n);
        let block = Block {
            t: self.acc_start + (self.acc_dt / n).round() as Millis,
            x: self.acc_sum / n,
        };
        let was_full = self.blocks.len() == self.cfg.blocks;
        self.blocks.push_back(block);
        let mut left = None;
        while self.blocks.len() > self.cfg.blocks {
            left = self.blocks.pop_front();
        }
        if self.blocks.len() == self.cfg.blocks {
            // The pair slopes carry over when the window slid by exactly this block.
            match left.filter(|_| was_full) {
                Some(_) if self.pairs.ready() => self.pairs.slide(&self.blocks),
                _ => self.pairs.rebuild(&self.blocks),
            }
            self.refit(ts);
        }
    }

    fn refit(&mut self, ts: Millis) {
        let n = self.blocks.len().min(MAX_BLOCKS);
        let (Some(first), Some(last)) = (self.blocks.front(), self.blocks.back()) else {
            return;
        };
        if n < 3 {
            return;
        }
        let (origin, last_t) = (first.t, last.t);
        let mut pts = [(0.0f64, 0.0f64); MAX_BLOCKS];
        for (p, b) in pts.iter_mut().zip(self.blocks.iter()) {
            *p = (b.t.saturating_sub(origin) as f64, b.x);
        }
        let pts = &pts[..n];
        let slope = self.pairs.median();
        let step_like = fits_a_step_better(pts);

        // Scatter of the blocks around the line, robustly, steadied by its recent average so
        // twelve residuals that happen to be close cannot make any slope look significant.
        let mut resid = [0.0f64; MAX_BLOCKS];
        for (r, (t, x)) in resid.iter_mut().zip(pts) {
            *r = x - slope * t;
        }
        let intercept = small_median(&resid[..n]);
        for (r, (t, x)) in resid.iter_mut().zip(pts) {
            *r = (x - slope * t - intercept).abs();
        }
        // The MAD of n residuals from a fitted line understates the noise: two degrees of
        // freedom went into the line, and a MAD of few values runs low (Williams' n / (n − 0.8)).
        let nf = n as f64;
        let small_sample = (nf / (nf - 2.0)).sqrt() * nf / (nf - 0.8);
        let scale_now = MEDIAN_ABS_TO_SIGMA * small_sample * small_median(&resid[..n]);
        self.fits = self.fits.saturating_add(1);
        let a = (1.0 / f64::from(self.fits)).max(1.0 / SCALE_MEMORY);
        self.scale += a * (scale_now - self.scale);
        let scale = scale_now.max(self.scale);
        // Standard error of a least-squares slope; Theil–Sen's is within a few per cent of it
        // under normal noise.
        let se = scale / sum_sq_dev(pts).max(f64::MIN_POSITIVE).sqrt();
        let significance = if slope == 0.0 || step_like {
            0.0
        } else if se > 0.0 {
            (slope.abs() / se).min(MAX_SIGNIFICANCE)
        } else {
            MAX_SIGNIFICANCE
        };
        let level = intercept + slope * last_t.saturating_sub(origin) as f64;

        let mut reference = None;
        let mut unusual = 0.0;
        if self.slopes.ready(self.cfg.min_history) {
            // The reference's own quartiles, not averaged over time: a daily curve's slopes
            // grow for hours, and an average of past quartiles would lag behind them.
            let span = last_t.saturating_sub(origin).max(1) as f64;
            let floor = (self.cfg.relative_floor * level.abs() + ABS_FLOOR) / span;
            let judged = self.slopes.judge(self.cfg.c, floor);
            let (q1, q3, spread) = (judged.q1, judged.q3, judged.spread);
            if is_harmful(self.cfg.alarm, slope) {
                unusual = judged.evidence(slope.abs()).max(0.0);
            }
            reference = Some(SlopeReference { q1, q3, spread });
        }

        // A flagged trend stays out of the reference, or a leak would teach itself as normal
        // within hours; after `relearn_after` it is the new normal.
        let flagged = evidence_score(unusual.min(significance / self.cfg.significance)) >= 0.5;
        self.flagged_since = match (flagged, self.flagged_since) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(ts),
            (false, _) => None,
        };
        let learn = self
            .flagged_since
            .is_none_or(|since| ts.saturating_sub(since) >= self.cfg.relearn_after);
        self.slopes.offer(
            slope.abs(),
            learn,
            self.cfg.history_every,
            self.cfg.min_history,
        );
        self.fit = Some(Fit {
            slope,
            step_like,
            significance,
            level,
            at: last_t,
            start: Block {
                t: origin,
                x: intercept,
            },
            reference,
            unusual,
        });
    }

    /// Time until the limit from `level` at `slope`, if the series heads toward it. Which side
    /// of the limit is safe is not configured: it is the side the series is on, so a series
    /// moving away from the limit (or already past it) gets no forecast.
    fn exhaustion(&self, level: f64, slope: f64) -> Option<Millis> {
        let limit = self.cfg.limit?;
        let ms = (limit - level) / slope;
        (ms.is_finite() && (0.0..=MAX_FORECAST).contains(&ms)).then_some(ms as Millis)
    }
}

/// Slope between two blocks, if the second is later.
fn pair_slope(a: &Block, b: &Block) -> Option<f64> {
    let dt = b.t.saturating_sub(a.t) as f64;
    (dt > 0.0).then(|| (b.x - a.x) / dt)
}

/// Sort key with the order of [`f64::total_cmp`], so integer comparisons order the values.
fn total_key(x: f64) -> i64 {
    let bits = x.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// The median of at most [`MAX_BLOCKS`] values (0 when empty; the mean of the middle two for an
/// even count), by counting each value's rank: the counting loops compile to vector compares
/// with no branch on the data, which for a dozen values costs a fraction of a selection's
/// mispredicted branches.
fn small_median(xs: &[f64]) -> f64 {
    let xs = &xs[..xs.len().min(MAX_BLOCKS)];
    let n = xs.len();
    if n == 0 {
        return 0.0;
    }
    if xs.iter().any(|x| x.is_nan()) {
        // No order to count by: fall back to the total order.
        let mut v = [0.0; MAX_BLOCKS];
        v[..n].copy_from_slice(xs);
        v[..n].sort_unstable_by(f64::total_cmp);
        return if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        };
    }
    let (mut below, mut mid) = (0.0, 0.0);
    for (i, &xi) in xs.iter().enumerate() {
        // Ties are ranked by position, so the ranks are a permutation of 0..n.
        let less: u32 = xs.iter().map(|&xj| u32::from(xj < xi)).sum();
        let ties: u32 = xs[..i].iter().map(|&xj| u32::from(xj == xi)).sum();
        let rank = (less + ties) as usize;
        if rank == n / 2 {
            mid = xi;
        }
        if rank + 1 == n / 2 {
            below = xi;
        }
    }
    if n % 2 == 1 { mid } else { 0.5 * (below + mid) }
}

/// Theil–Sen slope of the window: the median of the slopes between every pair of blocks. The
/// sorted pair slopes are kept from one block to the next, where a window slide replaces the
/// pairs of the block that left with those of the block that came (11 of 66 by default)
/// instead of recomputing and selecting among all of them.
#[derive(Debug, Clone, Default)]
struct PairSlopes {
    /// The slopes' [`total_key`]s, ascending; empty until built.
    sorted: Vec<i64>,
    /// For each slope, the position of its earlier block, counted from the oldest block the
    /// cache has seen (wrapping): the pairs of a block that leaves are found by it.
    from: Vec<u8>,
    /// The count, in the same wrapping numbering, of the window's oldest block.
    oldest: u8,
    built: bool,
}

impl PairSlopes {
    fn ready(&self) -> bool {
        self.built
    }

    fn heap_bytes(&self) -> usize {
        self.sorted.capacity() * std::mem::size_of::<i64>() + self.from.capacity()
    }

    /// Every pair of `blocks`, afresh.
    fn rebuild(&mut self, blocks: &VecDeque<Block>) {
        let mut pairs = Vec::with_capacity(MAX_PAIRS.min(blocks.len() * blocks.len() / 2));
        for (i, a) in blocks.iter().enumerate() {
            for b in blocks.iter().skip(i + 1) {
                pairs.extend(pair_slope(a, b).map(|s| (total_key(s), i as u8)));
            }
        }
        pairs.sort_unstable();
        self.sorted.clear();
        self.from.clear();
        self.sorted.reserve_exact(pairs.len());
        self.from.reserve_exact(pairs.len());
        for (k, f) in pairs {
            self.sorted.push(k);
            self.from.push(f);
        }
        self.oldest = 0;
        self.built = true;
    }

    /// The window slid: its oldest block left and the last of `blocks` is new.
    fn slide(&mut self, blocks: &VecDeque<Block>) {
        let Some(&new) = blocks.back() else {
            return;
        };
        // Drop the pairs of the block that left. Written without branches on the data: the
        // write always happens, the cursor moves on only for a pair that stays.
        let left = self.oldest;
        let (s, f) = (&mut self.sorted, &mut self.from);
        let mut w = 0;
        for i in 0..s.len() {
            let (k, from) = (s[i], f[i]);
            s[w] = k;
            f[w] = from;
            w += usize::from(from != left);
        }
        self.oldest = left.wrapping_add(1);
        // The pairs of the new block, sorted, merged in from the back.
        let mut came = [(0i64, 0u8); MAX_BLOCKS];
        let mut c = 0;
        for (i, b) in blocks.iter().take(blocks.len() - 1).enumerate() {
            if let Some(slope) = pair_slope(b, &new) {
                came[c] = (total_key(slope), self.oldest.wrapping_add(i as u8));
                c += 1;
            }
        }
        let came = &mut came[..c];
        came.sort_unstable_by_key(|p| p.0);
        s.truncate(w);
        f.truncate(w);
        s.resize(w + c, 0);
        f.resize(w + c, 0);
        let (mut i, mut j, mut at) = (w, c, w + c);
        while j > 0 {
            at -= 1;
            let a = if i > 0 { s[i - 1] } else { i64::MIN };
            let (b, b_from) = came[j - 1];
            if a > b {
                s[at] = a;
                f[at] = f[i - 1];
                i -= 1;
            } else {
                s[at] = b;
                f[at] = b_from;
                j -= 1;
            }
        }
    }

    /// The median slope; 0 without pairs.
    fn median(&self) -> f64 {
        let m = self.sorted.len();
        let at = |i: usize| f64::from_bits(from_key(self.sorted[i]));
        match m {
            0 => 0.0,
            _ if m % 2 == 1 => at(m / 2),
            _ => 0.5 * (at(m / 2 - 1) + at(m / 2)),
        }
    }
}

/// The bits of the value whose [`total_key`] is `key`.
fn from_key(key: i64) -> u64 {
    (key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64
}

/// Whether the best single step (two flat stretches, split between any two blocks) leaves less
/// squared error than the least-squares line: then the window holds a level shift, and its
/// tilt is no trend.
fn fits_a_step_better(pts: &[(f64, f64)]) -> bool {
    let n = pts.len();
    if n < 3 {
        return false;
    }
    let nf = n as f64;
    let mean_t = pts.iter().map(|p| p.0).sum::<f64>() / nf;
    let mean_x = pts.iter().map(|p| p.1).sum::<f64>() / nf;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (t, x) in pts {
        let (dt, dx) = (t - mean_t, x - mean_x);
        sxx += dt * dt;
        sxy += dt * dx;
        syy += dx * dx;
    }
    if sxx <= 0.0 {
        return false;
    }
    let line_sse = syy - sxy * sxy / sxx;
    // A split's error is the total minus what the two stretch means explain.
    let mut left_sum = 0.0;
    let mut best_explained: f64 = 0.0;
    for (k, (_, x)) in pts.iter().enumerate().take(n - 1) {
        left_sum += x - mean_x;
        let left_n = (k + 1) as f64;
        let right_n = nf - left_n;
        // The right stretch's deviations sum to minus the left's.
        let explained = left_sum * left_sum / left_n + left_sum * left_sum / right_n;
        best_explained = best_explained.max(explained);
    }
    syy - best_explained < line_sse
}

/// Σ (t − mean t)² over the points' times.
fn sum_sq_dev(pts: &[(f64, f64)]) -> f64 {
    if pts.is_empty() {
        return 0.0;
    }
    let mean = pts.iter().map(|p| p.0).sum::<f64>() / pts.len() as f64;
    pts.iter().map(|p| (p.0 - mean) * (p.0 - mean)).sum()
}

fn per_hour(slope: f64) -> String {
    let s = fmt_num(slope * HOUR);
    if slope > 0.0 {
        format!("+{s}/h")
    } else {
        format!("{s}/h")
    }
}

impl Detector for TrendDetector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn update(&mut self, ts: Millis, value: f64) -> Result<Score, DetectError> {
        check_point(self.last_ts, ts, value)?;
        self.last_ts = Some(ts);
        self.first_ts.get_or_insert(ts);

        // Time only moves forward, so a block ends when a point reaches the next one; the
        // division that aligns a block runs once per block, not per point.
        if self.acc_n == 0 || ts.saturating_sub(self.acc_start) >= self.cfg.block {
            self.close_block(ts);
            self.acc_start = ts.div_euclid(self.cfg.block) * self.cfg.block;
            self.acc_n = 0;
            self.acc_sum = 0.0;
            self.acc_dt = 0.0;
        }
        self.acc_n += 1;
        self.acc_sum += value;
        self.acc_dt += ts.saturating_sub(self.acc_start) as f64;

        let Some(fit) = self.fit else {
            self.last = Reading::default();
            return Ok(Score::ZERO);
        };
        let strength = fit.significance / self.cfg.significance;
        let level = fit.level + fit.slope * ts.saturating_sub(fit.at) as f64;
        let mut reading = Reading::default();
        let mut near = 0.0;
        if fit.significance >= MIN_FORECAST_SIGNIFICANCE
            && let Some(ms) = self.exhaustion(level, fit.slope)
        {
            reading.exhaustion = Some(ms);
            near = self.cfg.horizon as f64 / (ms.max(1) as f64);
        }
        reading.score = evidence_score(strength.min(fit.unusual.max(near)));
        self.last = reading;

        let band = fit.reference.map(|r| {
            let reach = (r.q3 + r.spread) * ts.saturating_sub(fit.start.t) as f64;
            Band {
                expected: fit.start.x,
                lower: fit.start.x - reach,
                upper: fit.start.x + reach,
            }
        });
        Ok(Score {
            score: reading.score,
            band,
        })
    }

    fn explain(&self) -> String {
        let Some(fit) = self.fit else {
            let seen = match (self.first_ts, self.last_ts) {
                (Some(a), Some(b)) => b - a,
                _ => 0,
            };
            return format!(
                "warming up: {} of {} watched before trends are scored",
                format_duration(seen.min(self.warmup())),
                format_duration(self.warmup())
            );
        };
        let window = format_duration(self.cfg.block.saturating_mul(self.cfg.blocks as Millis));
        let r = &self.last;
        let head = if fit.step_like {
            format!(
                "no trend: the last {window} fits a level shift better than a line ({} tilt)",
                per_hour(fit.slope)
            )
        } else if r.score >= 0.5 {
            let dir = if fit.slope > 0.0 { "rising" } else { "falling" };
            format!("{dir} at {} over the last {window}", per_hour(fit.slope))
        } else {
            format!(
                "no sustained trend worth a look: {} over the last {window}",
                per_hour(fit.slope)
            )
        };
        let usual = match fit.reference {
            Some(r) => format!(
                "the level usually moves {} to {}/h either way, flagged from {}/h",
                fmt_num(r.q1 * HOUR),
                fmt_num(r.q3 * HOUR),
                fmt_num((r.q3 + r.spread) * HOUR)
            ),
            None => "usual slopes still being learned".to_string(),
        };
        let forecast = match (self.cfg.limit, r.exhaustion) {
            (Some(limit), Some(ms)) => format!(
                "; reaches the limit {} in {} at the current rate",
                fmt_num(limit),
                format_duration(ms)
            ),
            (Some(limit), None) => format!("; not heading for the limit {}", fmt_num(limit)),
            (None, _) => String::new(),
        };
        format!(
            "{head} (significance {:.1}; {usual}){forecast}; score {:.2}",
            fit.significance, r.score
        )
    }

    fn reset(&mut self) {
        *self = Self::new(self.cfg);
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.pairs.heap_bytes()
            + self.slopes.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{DAY_POINTS, Noise, STEP, T0, max, noisy, run};

    const HOUR_POINTS: usize = 240;

    fn sinusoid(days: usize, phase: f64, noise_share: f64, noise: &mut Noise) -> Vec<f64> {
        (0..days * DAY_POINTS)
            .map(|i| {
                let t = i as f64 / DAY_POINTS as f64 + phase;
                let level = 200.0 * (1.0 + 0.35 * (std::f64::consts::TAU * t).sin());
                level + noise_share * level * noise.gaussian()
            })
            .collect()
    }

    #[test]
    fn slow_memory_leak_is_flagged_within_forty_minutes() {
        // Memory at 40 % of its limit, quiet for 8 hours, then growing 5 points an hour: slow
        // enough that a level-following baseline moves along with it.
        let mut d = TrendDetector::default().with_limit(1.0);
        let mut noise = Noise::new(1);
        let quiet: Vec<f64> = (0..8 * HOUR_POINTS)
            .map(|_| 0.4 * (1.0 + 0.01 * noise.gaussian()))
            .collect();
        let s = run(&mut d, 0, &quiet);
        assert!(max(&s) < 0.5, "false alarm before the leak: {}", max(&s));
        assert_eq!(d.time_to_exhaustion(), None);
        let leak: Vec<f64> = (1..=8 * HOUR_POINTS)
            .map(|i| (0.4 + 0.05 * i as f64 / 240.0) * (1.0 + 0.01 * noise.gaussian()))
            .collect();
        let s = run(&mut d, 8 * HOUR_POINTS, &leak);
        let at = s.iter().position(|x| *x >= 0.5).expect("leak flagged");
        println!("leak flagged after {} points", at + 1);
        assert!(at < 160, "flagged after {} points", at + 1);
        assert!(s[at..].iter().all(|x| *x >= 0.5), "the leak stays flagged");
        // After 8 hours at 0.8: 4 hours to go at 0.05 an hour.
        let hours = d.time_to_exhaustion().expect("forecast") as f64 / HOUR;
        assert!((hours - 4.0).abs() < 0.4, "{hours} h");
        let text = d.explain();
        assert!(text.starts_with("rising at +0.0"), "{text}");
        assert!(text.contains("reaches the limit 1 in"), "{text}");
    }

    #[test]
    fn disk_filling_at_its_usual_rate_scores_by_nearness_of_exhaustion() {
        // A used-space ratio growing 1 % an hour for days: the slope is the series' normal; the
        // score comes from the forecast as the disk nears full.
        let mut d = TrendDetector::default().with_limit(1.0);
        let mut noise = Noise::new(2);
        let hours_left = |i: usize| 95.0 - i as f64 / HOUR_POINTS as f64;
        let at = |h: f64| ((95.0 - h) * HOUR_POINTS as f64) as usize;
        let (twelve, three, one_half) = (at(12.0), at(3.0), at(1.5));
        let mut seen = Vec::new();
        for i in 0..=one_half {
            let v = 0.05 + 0.01 * i as f64 / 240.0 + 0.0005 * noise.gaussian();
            let s = d.update(T0 + i as Millis * STEP, v).expect("valid").score;
            if i < twelve {
                assert!(s < 0.5, "{:.1} h from full scored {s}", hours_left(i));
            }
            if i == three || i == one_half {
                seen.push((s, d.explain(), d.time_to_exhaustion()));
            }
        }
        let (s3, text3, tte3) = &seen[0];
        assert!(*s3 > 0.5 && *s3 < 0.99, "{s3}: {text3}");
        assert!(text3.contains("reaches the limit 1 in 2h5") || text3.contains("in 3h0"));
        assert!(tte3.is_some_and(|ms| (ms as f64 / HOUR - 3.0).abs() < 0.2));
        let (s15, text15, _) = &seen[1];
        assert!(*s15 > 0.99, "{s15}: {text15}");
    }

    #[test]
    fn falling_free_space_is_forecast_toward_zero() {
        let mut d = TrendDetector::default().with_limit(0.0);
        let mut noise = Noise::new(3);
        let v: Vec<f64> = (0..5 * HOUR_POINTS)
            .map(|i| 0.5 - 0.05 * i as f64 / 240.0 + 0.001 * noise.gaussian())
            .collect();
        run(&mut d, 0, &v);
        // At 0.25 free and 0.05 an hour: five hours left.
        let hours = d.time_to_exhaustion().expect("forecast") as f64 / HOUR;
        assert!((hours - 5.0).abs() < 0.3, "{hours}");
        assert!(d.slope_per_hour().is_some_and(|s| (s + 0.05).abs() < 0.003));
        // Moving away from the limit: no forecast.
        let mut up = TrendDetector::default().with_limit(0.0);
        let v: Vec<f64> = (0..2 * HOUR_POINTS)
            .map(|i| 0.5 + 0.05 * i as f64 / 240.0)
            .collect();
        run(&mut up, 0, &v);
        assert_eq!(up.time_to_exhaustion(), None);
        assert!(
            up.explain().contains("not heading for the limit 0"),
            "{}",
            up.explain()
        );
    }

    #[test]
    fn stationary_noise_stays_quiet() {
        for seed in [10, 11, 12] {
            let mut d = TrendDetector::default().with_limit(200.0);
            let mut noise = Noise::new(seed);
            let s = run(&mut d, 0, &noisy(3 * DAY_POINTS, 100.0, 5.0, &mut noise));
            assert!(max(&s) < 0.5, "seed {seed}: max score {}", max(&s));
        }
    }

    #[test]
    fn daily_sinusoid_rise_and_fall_stay_quiet() {
        for (seed, phase) in [(7, 0.0), (8, 0.25), (9, 0.5), (10, 0.75), (11, 0.1)] {
            for noise_share in [0.01, 0.03] {
                let mut d = TrendDetector::default();
                let mut noise = Noise::new(seed);
                let s = run(&mut d, 0, &sinusoid(3, phase, noise_share, &mut noise));
                assert!(
                    max(&s) < 0.5,
                    "seed {seed} phase {phase} noise {noise_share}: max score {}: {}",
                    max(&s),
                    d.explain()
                );
            }
        }
    }

    #[test]
    fn level_shift_and_spikes_are_not_a_trend() {
        let mut d = TrendDetector::default();
        let mut noise = Noise::new(13);
        let mut v = noisy(10 * HOUR_POINTS, 100.0, 3.0, &mut noise);
        v.extend(noisy(4 * HOUR_POINTS, 130.0, 3.0, &mut noise));
        for i in (100..v.len()).step_by(131) {
            v[i] += 80.0;
        }
        let s = run(&mut d, 0, &v[..10 * HOUR_POINTS + 100]);
        assert!(max(&s) < 0.5, "max score {}", max(&s));
        let text = d.explain();
        assert!(text.contains("level shift"), "{text}");
        let s = run(&mut d, 10 * HOUR_POINTS + 100, &v[10 * HOUR_POINTS + 100..]);
        assert!(max(&s) < 0.5, "max score {}", max(&s));
    }

    #[test]
    fn sparse_irregular_points_still_fit() {
        // A 5-minute step with jitter: each point is its own block, some blocks are empty.
        let mut d = TrendDetector::default();
        let mut noise = Noise::new(14);
        let mut worst: f64 = 0.0;
        for i in 0..600 {
            let ts = T0 + i * 5 * 60_000 + (noise.uniform() * 60_000.0) as Millis;
            let s = d.update(ts, 10.0 + noise.gaussian()).expect("valid");
            worst = worst.max(s.score);
        }
        assert!(d.slope_per_hour().is_some());
        assert!(worst < 0.5, "{worst}");
    }

    #[test]
    fn warm_up_scores_zero() {
        let mut d = TrendDetector::default().with_limit(1.0);
        assert_eq!(d.warmup(), 65 * 60_000);
        assert!(d.explain().starts_with("warming up: 0s of 1h05m"));
        let v: Vec<f64> = (0..200).map(|i| 0.5 + 0.001 * f64::from(i)).collect();
        assert_eq!(max(&run(&mut d, 0, &v)), 0.0);
        assert!(
            d.explain().starts_with("warming up: 49m45s of 1h05m"),
            "{}",
            d.explain()
        );
        // The forecast needs no learned slopes: steep growth right after warm-up scores.
        let v: Vec<f64> = (200..300).map(|i| 0.5 + 0.001 * f64::from(i)).collect();
        let s = run(&mut d, 200, &v);
        assert!(s[s.len() - 1] > 0.99, "{}", d.explain());
        assert!(
            d.explain().contains("still being learned"),
            "{}",
            d.explain()
        );
    }

    #[test]
    fn bad_input_is_refused_and_leaves_state_unchanged() {
        let mut d = TrendDetector::default();
        let mut noise = Noise::new(15);
        run(&mut d, 0, &noisy(400, 10.0, 1.0, &mut noise));
        let before = serde_json::to_string(&d).expect("serialises");
        assert!(matches!(
            d.update(T0 + 400 * STEP, f64::NAN),
            Err(DetectError::NonFinite(_))
        ));
        assert!(matches!(
            d.update(T0 + 399 * STEP, 1.0),
            Err(DetectError::OutOfOrder { .. })
        ));
        assert_eq!(serde_json::to_string(&d).expect("serialises"), before);
    }

    #[test]
    fn checkpoint_round_trip_mid_stream_scores_identically() {
        let mut noise = Noise::new(16);
        let mut values = noisy(8 * HOUR_POINTS, 0.4, 0.004, &mut noise);
        values.extend(
            (1..=4 * HOUR_POINTS).map(|i| 0.4 + 0.1 * i as f64 / 240.0 + 0.004 * noise.gaussian()),
        );
        let cut = 8 * HOUR_POINTS + 77;
        let mut a = TrendDetector::default().with_limit(1.0);
        run(&mut a, 0, &values[..cut]);
        let json = serde_json::to_string(&a).expect("serialises");
        let mut b: TrendDetector = serde_json::from_str(&json).expect("restores");
        let sa = run(&mut a, cut, &values[cut..]);
        let sb = run(&mut b, cut, &values[cut..]);
        assert_eq!(sa, sb);
        assert!(max(&sa) > 0.9, "the leak across the checkpoint is found");
        assert_eq!(a.explain(), b.explain());
        assert_eq!(a.time_to_exhaustion(), b.time_to_exhaustion());
    }

    #[test]
    fn a_damaged_checkpoint_config_is_clamped_not_trusted() {
        let mut d = TrendDetector::default();
        let mut noise = Noise::new(18);
        run(&mut d, 0, &noisy(400, 10.0, 1.0, &mut noise));
        let mut json: serde_json::Value = serde_json::to_value(&d).expect("serialises");
        json["cfg"]["block"] = 0.into();
        json["cfg"]["blocks"] = 1_000_000.into();
        let mut b: TrendDetector = serde_json::from_value(json).expect("restores");
        assert_eq!(b.config().block, 1);
        assert_eq!(b.config().blocks, MAX_BLOCKS);
        run(&mut b, 400, &noisy(400, 10.0, 1.0, &mut noise));
    }

    #[test]
    fn state_fits_the_budget() {
        let mut d = TrendDetector::default();
        let mut noise = Noise::new(17);
        run(&mut d, 0, &noisy(2 * DAY_POINTS, 1.0, 0.1, &mut noise));
        println!("TrendDetector: {} bytes", d.state_bytes());
        assert!(d.state_bytes() <= 2048, "{} bytes", d.state_bytes());
    }

    /// The median by sorting, as the fast paths must match it.
    fn sorted_median(xs: &[f64]) -> f64 {
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => v[n / 2],
            _ => 0.5 * (v[n / 2 - 1] + v[n / 2]),
        }
    }

    #[test]
    fn small_median_matches_sorting_with_ties_and_nan() {
        let mut noise = Noise::new(11);
        for n in 0..=MAX_BLOCKS {
            for round in 0..20 {
                // Every other round draws from a few values, so ties are common.
                let xs: Vec<f64> = (0..n)
                    .map(|_| {
                        let g = noise.gaussian();
                        if round % 2 == 0 { g } else { (g * 2.0).round() }
                    })
                    .collect();
                assert_eq!(small_median(&xs), sorted_median(&xs), "{xs:?}");
            }
        }
        let with_nan = [1.0, f64::NAN, 3.0, 2.0];
        assert_eq!(small_median(&with_nan), sorted_median(&with_nan));
    }

    #[test]
    fn sliding_pair_slopes_match_a_fresh_fit() {
        let mut noise = Noise::new(12);
        let mut blocks = VecDeque::new();
        let mut cached = PairSlopes::default();
        let mut t = 0;
        for i in 0..500 {
            // Irregular gaps, repeated values and the odd repeated time (a pair with no slope).
            t += if i % 37 == 0 {
                0
            } else {
                1 + (noise.uniform() * 600_000.0) as Millis
            };
            let x = if i % 5 == 0 { 1.0 } else { noise.gaussian() };
            blocks.push_back(Block { t, x });
            let slid = blocks.len() > 12;
            if slid {
                blocks.pop_front();
            }
            match (slid, cached.ready()) {
                (true, true) => cached.slide(&blocks),
                _ => cached.rebuild(&blocks),
            }
            let mut fresh = PairSlopes::default();
            fresh.rebuild(&blocks);
            assert_eq!(cached.sorted, fresh.sorted, "after block {i}");
            assert_eq!(cached.median().to_bits(), fresh.median().to_bits());
        }
    }
}
