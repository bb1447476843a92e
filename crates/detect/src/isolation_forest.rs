//! Multivariate anomaly detection over one entity's metric vector (request rate, error ratio,
//! latency, CPU, memory): a streaming isolation forest for combinations that are unusual even
//! when each metric on its own looks normal.

use crate::window::fmt_num;
use crate::window::{MEAN_ABS_TO_SIGMA, MEDIAN_ABS_TO_SIGMA};
use crate::{DetectError, Score};
use nightshift_core::{Millis, SplitMix64};
use serde::{Deserialize, Serialize};

/// A streaming detector over a vector of metrics observed together, in the same way as
/// [`crate::Detector`] is over one series: one `update` per vector, in time order, bounded
/// memory, serialisable state and an explanation of its last score.
pub trait MultivariateDetector {
    /// Short name for explanations and evidence, e.g. `isolation_forest`.
    fn name(&self) -> &'static str;

    /// Scores one vector. Errors on non-finite values (a vector of the wrong length counts as
    /// missing values, reported as NaN) and on timestamps that do not advance; the state is
    /// unchanged then.
    fn update(&mut self, ts: Millis, values: &[f64]) -> Result<Score, DetectError>;

    /// Why the last score is what it is, naming the dimensions that contributed most.
    fn explain(&self) -> String;

    /// Bytes of state held (struct plus heap), for the memory budget per entity.
    fn state_bytes(&self) -> usize;
}

/// Most dimensions one detector takes.
pub const MAX_DIMENSIONS: usize = 16;
const MAX_TREES: usize = 64;
const MIN_SAMPLE: usize = 8;
const MAX_SAMPLE: usize = 256;
const MAX_WINDOW: usize = 1024;
/// Split directions drawn per fit; a node stores the index of one (a byte) instead of a
/// hyperplane normal (a float per dimension).
const DIRECTIONS: usize = 64;
/// Node marker for a leaf; the split value then holds the number of points that reached it.
const LEAF: u8 = u8::MAX;
/// Scaled coordinates are clipped here, so one wild metric cannot dominate every oblique
/// split direction.
const Z_CLIP: f32 = 20.0;
/// Euler–Mascheroni constant, for the harmonic numbers in c(n).
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
/// Score calibration: u = (raw − median) / tail, from the raw scores of normal vectors, tail
/// the mean excess of their top tenth over the median (close to the 95th percentile's);
/// score = 1 − 2^(−(u / 2)⁵). A vector as unusual as the normal tail scores 0.02, twice as
/// far above the median 0.5, three times 0.995.
const SCORE_U_MEDIAN: f64 = 2.0;
const SCORE_SHAPE: i32 = 5;
/// Least spread of the window's raw scores used in the calibration (raw scores live in
/// (0, 1)); a window of near-identical vectors must not make every wiggle an anomaly.
const MIN_CALIBRATION_SPREAD: f64 = 0.02;
const HIGH_SCORE: f64 = 0.5;
/// Arrival scores needed before they replace the out-of-bag calibration.
const MIN_ARRIVALS: usize = 128;

/// The dimension count given to [`IsolationForestDetector::new`] is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an isolation forest takes 1..={MAX_DIMENSIONS} dimensions, not {0}")]
pub struct InvalidDimensions(pub usize);

/// Tuning of [`IsolationForestDetector`]. Every threshold is relative to the reference window,
/// so nothing is set per metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IsolationForestConfig {
    /// Trees per forest (clamped to 1..=64).
    pub trees: usize,
    /// Vectors drawn from the window for each tree, ψ in Liu et al. (clamped to 8..=256).
    /// Small subsamples isolate anomalies better (less swamping and masking); 64 keeps the
    /// forest within 32 KiB.
    pub sample_size: usize,
    /// Recent normal vectors kept as the reference (clamped to sample_size..=1024).
    pub window: usize,
    /// Vectors collected before the first fit; scores are 0 until then.
    pub warmup_points: usize,
    /// Vectors between refits (the fit's cost, about 0.2 ms with the defaults, is spread over
    /// them); half the window, so the forest never lags the reference by much.
    pub refit_every: usize,
    /// After this many consecutive vectors kept out of the window for scoring high, vectors
    /// are admitted again: the behaviour has become the new normal.
    pub relearn_after: usize,
    /// Seed of the random splits; the same seed and inputs give the same scores.
    pub seed: u64,
    /// Names of the dimensions for explanations (`dim 0`, `dim 1`, … where missing).
    pub dimension_names: Vec<String>,
}

impl Default for IsolationForestConfig {
    fn default() -> Self {
        Self {
            trees: 32,
            sample_size: 64,
            window: 256,
            warmup_points: 128,
            refit_every: 128,
            relearn_after: 256,
            seed: 0x5eed_1505_f0e5_7001,
            dimension_names: Vec::new(),
        }
    }
}

/// A split: the direction (`LEAF` for a leaf or an unused slot), the range of the node's
/// training points on it, and where in that range the threshold is. 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Node {
    lo: f32,
    hi: f32,
    cut: u16,
    dir: u8,
}

const EMPTY: Node = Node {
    lo: 0.0,
    hi: 0.0,
    cut: 0,
    dir: LEAF,
};

/// One fitted forest with the scaling and calibration it was fitted with. Trees are stored
/// in heap order (children of node i at 2i + 1 and 2i + 2) over their height limit, so no
/// child pointers are kept: per tree, 12 bytes per internal slot and 1 per slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Forest {
    /// Robust centre (median) and scale of each dimension in the window.
    center: Vec<f64>,
    scale: Vec<f64>,
    /// Whitening of the scaled vector, `dims × dims` row-major: rows are the principal axes of
    /// the window divided by their standard deviations.
    whiten: Vec<f32>,
    /// `DIRECTIONS` split directions of `dims` components each, quantised to bytes: a
    /// direction only has to be random, not exact.
    directions: Vec<i8>,
    trees: usize,
    /// Slots per tree at depths below the height limit (2^height − 1) and in all (2^(height+1) − 1).
    internal: usize,
    slots: usize,
    /// Per tree, the internal slots.
    nodes: Vec<Node>,
    /// Per tree and slot: training points that ended in the leaf (saturating at 255).
    sizes: Vec<u8>,
    /// c(ψ), the average path length of an unsuccessful binary-search-tree search.
    c_sample: f64,
    /// Median of the raw scores of normal vectors and the mean excess over it of their top
    /// tenth (see `refit`).
    median: f64,
    tail: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastVector {
    ts: Millis,
    values: Vec<f64>,
    raw: f64,
    score: f64,
}

/// A streaming isolation forest over a metric vector: an anomaly is isolated by fewer random
/// splits than a normal point (F. T. Liu, K. M. Ting, Z.-H. Zhou, *Isolation Forest*, ICDM
/// 2008), with oblique splits so that combinations breaking a correlation — high traffic with
/// low CPU — are isolated too, not only values out of their marginal range (S. Hariri, M. C.
/// Kind, R. J. Brunner, *Extended Isolation Forest*, IEEE TKDE 2021).
///
/// * **Reference**: a sliding window of the last [`window`](IsolationForestConfig::window)
///   vectors that scored below 0.5. Each dimension is scaled by its median and by the larger
///   of 1.4826 × MAD and 1.2533 × mean absolute deviation (so mostly-zero error ratios keep a
///   scale), clipped at ±20, then whitened: rotated onto the window's principal axes and
///   divided by their spreads. Without whitening, random splits resolve the long axis of
///   correlated metrics and hardly the short one, where a broken correlation shows.
/// * **Forest**: refitted every [`refit_every`](IsolationForestConfig::refit_every) vectors
///   (amortised cost); each tree on ψ vectors drawn without replacement, height limit
///   ⌈log₂ ψ⌉. A split is a threshold drawn uniformly between the node's lowest and highest
///   projection on one of 64 random directions drawn for the fit (Hariri et al. draw a new
///   normal per node; a shared pool keeps a node at 12 bytes and lets a vector be projected
///   once per score instead of once per node).
/// * **Raw score**: 2^(−E\[h(x)\] / c(ψ)), E\[h\] the mean path length with the c(size)
///   adjustment at leaves and SCiForest's range check (see `Forest::path_length`), without
///   which a metric 30 σ out scores no higher than the edge of the normal cloud.
/// * **Score**: calibrated against the raw scores normal vectors get: those the last
///   [`window`](IsolationForestConfig::window) admitted vectors got on arrival (before any
///   tree had seen them), or at the first fit the window's out-of-bag scores (each vector
///   scored only by trees that did not sample it). With `tail` the mean excess of their top
///   tenth over their median (about the 95th percentile's), u = (raw − median) / tail and
///   score = 1 − 2^(−(u/2)⁵): 0.5 at u = 2, 0.995 at u = 3. On correlated 3-D normal data about 3 vectors in 10,000 score ≥ 0.5.
/// * **Explanation**: each dimension in turn is set to its median and the vector rescored; the
///   dimensions whose typical value lowers the score most are named, with robust z-scores.
///
/// `extended-isolation-forest` was not used: its dimension is a const generic (the metric
/// vector's width is known only at run time here), it keeps a normal vector per node (several
/// times this forest's memory), and it has neither whitening nor the range check. Memory with
/// the defaults: 28.3 KiB for the forest at 5 dimensions (30 KiB at 16), plus 4 bytes per
/// value in the window (5 KiB at 5 dimensions) and 1 KiB of arrival scores, 34.6 KiB in all at
/// 5 dimensions ([`IsolationForestDetector::forest_bytes`],
/// [`MultivariateDetector::state_bytes`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsolationForestDetector {
    cfg: IsolationForestConfig,
    dims: usize,
    last_ts: Option<Millis>,
    /// SplitMix64 state.
    rng: u64,
    /// Ring of raw vectors, `window × dims`.
    window: Vec<f32>,
    window_len: usize,
    window_next: usize,
    /// Raw scores the admitted vectors got on arrival, from the forest then in use: honest
    /// out-of-sample scores of normal vectors, for the calibration of later fits.
    arrival_raw: Vec<f32>,
    arrival_next: usize,
    since_fit: usize,
    rejected_run: usize,
    forest: Option<Forest>,
    last: Option<LastVector>,
}

impl IsolationForestDetector {
    /// Name reported in evidence.
    pub const NAME: &'static str = "isolation_forest";

    /// A detector over vectors of `dims` values (1 to [`MAX_DIMENSIONS`]).
    pub fn new(dims: usize, cfg: IsolationForestConfig) -> Result<Self, InvalidDimensions> {
        if !(1..=MAX_DIMENSIONS).contains(&dims) {
            return Err(InvalidDimensions(dims));
        }
        let mut cfg = cfg;
        cfg.trees = cfg.trees.clamp(1, MAX_TREES);
        cfg.sample_size = cfg.sample_size.clamp(MIN_SAMPLE, MAX_SAMPLE);
        cfg.window = cfg.window.clamp(cfg.sample_size, MAX_WINDOW);
        cfg.warmup_points = cfg.warmup_points.clamp(MIN_SAMPLE, cfg.window);
        cfg.refit_every = cfg.refit_every.max(1);
        cfg.relearn_after = cfg.relearn_after.max(1);
        let window = vec![0.0; cfg.window * dims];
        Ok(Self {
            rng: cfg.seed,
            cfg,
            dims,
            last_ts: None,
            window,
            window_len: 0,
            window_next: 0,
            arrival_raw: Vec::new(),
            arrival_next: 0,
            since_fit: 0,
            rejected_run: 0,
            forest: None,
            last: None,
        })
    }

    pub fn config(&self) -> &IsolationForestConfig {
        &self.cfg
    }

    pub fn dimensions(&self) -> usize {
        self.dims
    }

    /// Bytes held by the fitted forest (trees, directions, scaling), 0 before the first fit.
    pub fn forest_bytes(&self) -> usize {
        self.forest.as_ref().map_or(0, |f| {
            std::mem::size_of::<Forest>()
                + f.directions.capacity()
                + f.whiten.capacity() * 4
                + f.nodes.capacity() * std::mem::size_of::<Node>()
                + f.sizes.capacity()
                + (f.center.capacity() + f.scale.capacity()) * 8
        })
    }

    /// Scores one vector and learns from it (unless it scores high).
    pub fn update(&mut self, ts: Millis, values: &[f64]) -> Result<Score, DetectError> {
        if values.len() != self.dims {
            return Err(DetectError::WrongDimensions {
                expected: self.dims,
                got: values.len(),
            });
        }
        for v in values {
            crate::detector::check_value(*v)?;
        }
        if let Some(last) = self.last_ts
            && ts <= last
        {
            return Err(DetectError::OutOfOrder { ts, last });
        }
        self.last_ts = Some(ts);

        let (raw, score) = match &self.forest {
            Some(f) => {
                let z = f.scaled(values);
                let raw = f.raw_score(&z[..self.dims]);
                (raw, f.calibrated(raw))
            }
            None => (0.0, 0.0),
        };

        let admit = self.forest.is_none()
            || score < HIGH_SCORE
            || self.rejected_run >= self.cfg.relearn_after;
        if admit {
            self.admit(values);
            if self.forest.is_some() {
                self.note_arrival(raw);
            }
            self.rejected_run = 0;
        } else {
            self.rejected_run += 1;
        }
        self.since_fit += 1;
        let due = match self.forest {
            None => self.window_len >= self.cfg.warmup_points,
            Some(_) => self.since_fit >= self.cfg.refit_every,
        };
        if due {
            self.refit();
        }

        match &mut self.last {
            Some(last) => {
                last.ts = ts;
                last.values.clear();
                last.values.extend_from_slice(values);
                last.raw = raw;
                last.score = score;
            }
            None => {
                self.last = Some(LastVector {
                    ts,
                    values: values.to_vec(),
                    raw,
                    score,
                });
            }
        }
        Ok(Score { score, band: None })
    }

    fn admit(&mut self, values: &[f64]) {
        let d = self.dims;
        let start = self.window_next * d;
        if let Some(row) = self.window.get_mut(start..start + d) {
            for (slot, v) in row.iter_mut().zip(values) {
                *slot = *v as f32;
            }
        }
        self.window_next = (self.window_next + 1) % self.cfg.window;
        self.window_len = (self.window_len + 1).min(self.cfg.window);
    }

    fn note_arrival(&mut self, raw: f64) {
        if self.arrival_raw.len() < self.cfg.window {
            self.arrival_raw.push(raw as f32);
        } else if let Some(slot) = self.arrival_raw.get_mut(self.arrival_next) {
            *slot = raw as f32;
        }
        self.arrival_next = (self.arrival_next + 1) % self.cfg.window;
    }

    fn window_rows(&self) -> impl Iterator<Item = &[f32]> {
        self.window.chunks_exact(self.dims).take(self.window_len)
    }

    fn refit(&mut self) {
        self.since_fit = 0;
        let n = self.window_len;
        let d = self.dims;
        if n < MIN_SAMPLE {
            return;
        }
        let mut rng = SplitMix64::new(self.rng);

        // Robust per-dimension scaling.
        let mut center = Vec::with_capacity(d);
        let mut scale = Vec::with_capacity(d);
        let mut column = Vec::with_capacity(n);
        for j in 0..d {
            column.clear();
            column.extend(self.window_rows().map(|r| f64::from(r[j])));
            column.sort_unstable_by(f64::total_cmp);
            let median = column[n / 2];
            let mean_abs = column.iter().map(|v| (v - median).abs()).sum::<f64>() / n as f64;
            for v in &mut column {
                *v = (*v - median).abs();
            }
            column.sort_unstable_by(f64::total_cmp);
            let mad = column[n / 2];
            let s = (MEDIAN_ABS_TO_SIGMA * mad)
                .max(MEAN_ABS_TO_SIGMA * mean_abs)
                .max(1e-9 + 1e-6 * median.abs());
            center.push(median);
            scale.push(s);
        }
        let psi = self.cfg.sample_size.min(n);
        let height = usize::BITS - (psi - 1).leading_zeros(); // ⌈log₂ ψ⌉
        let internal = (1usize << height) - 1;
        let slots = 2 * internal + 1;
        let trees = self.cfg.trees;
        let mut forest = Forest {
            center,
            scale,
            whiten: Vec::new(),
            directions: Vec::with_capacity(DIRECTIONS * d),
            trees,
            internal,
            slots,
            nodes: vec![EMPTY; trees * internal],
            sizes: vec![0; trees * slots],
            c_sample: average_path(psi as f64),
            median: 0.0,
            tail: 1.0,
        };
        let mut scaled: Vec<f32> = Vec::with_capacity(n * d);
        let mut v = [0.0f64; MAX_DIMENSIONS];
        for r in self.window_rows() {
            for (out, x) in v.iter_mut().zip(r) {
                *out = f64::from(*x);
            }
            scaled.extend_from_slice(&forest.scaled(&v[..d])[..d]);
        }
        forest.whiten = whitening(&scaled, d);
        let mut rows: Vec<f32> = Vec::with_capacity(n * d);
        for z in scaled.chunks_exact(d) {
            rows.extend_from_slice(&forest.whitened(z)[..d]);
        }

        // Random directions: normal components (every direction equally likely), scaled so the
        // largest is ±127.
        let mut g = vec![0.0f64; d];
        for _ in 0..DIRECTIONS {
            g.iter_mut().for_each(|c| *c = rng.gaussian());
            let largest = g.iter().fold(0.0f64, |m, c| m.max(c.abs()));
            let k = if largest > 0.0 { 127.0 / largest } else { 0.0 };
            forest
                .directions
                .extend(g.iter().map(|c| (c * k).round().clamp(-127.0, 127.0) as i8));
        }

        let words = n.div_ceil(64);
        let mut in_bag = vec![0u64; trees * words];
        let mut perm: Vec<u16> = (0..n as u16).collect();
        let mut proj: Vec<f32> = Vec::with_capacity(psi);
        let mut stack: Vec<(usize, usize, usize, u32)> = Vec::new();
        for t in 0..trees {
            // Partial Fisher–Yates: the first ψ entries become a uniform sample.
            for i in 0..psi {
                let j = i + rng.below(n - i);
                perm.swap(i, j);
            }
            let mut sample: Vec<u16> = perm[..psi].to_vec();
            for &i in &sample {
                in_bag[t * words + usize::from(i) / 64] |= 1 << (usize::from(i) % 64);
            }
            stack.clear();
            stack.push((0, 0, psi, 0));
            while let Some((slot, lo, hi, depth)) = stack.pop() {
                let size = hi - lo;
                let mut split = None;
                if size > 1 && depth < height {
                    // A direction on which the node's points all coincide cannot split them;
                    // a few others are tried before the node becomes a leaf.
                    for _ in 0..4 {
                        let dir = rng.below(DIRECTIONS);
                        let normal = &forest.directions[dir * d..(dir + 1) * d];
                        proj.clear();
                        proj.extend(sample[lo..hi].iter().map(|&i| {
                            let i = usize::from(i);
                            dot(&rows[i * d..(i + 1) * d], normal)
                        }));
                        let (min, max) = proj
                            .iter()
                            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), p| {
                                (a.min(*p), b.max(*p))
                            });
                        if max > min {
                            let cut = (rng.next_u64() >> 48) as u16;
                            let threshold = threshold(min, max, cut);
                            if threshold > min && threshold < max {
                                split = Some((dir, min, max, cut, threshold));
                                break;
                            }
                        }
                    }
                }
                let Some((dir, min, max, cut, threshold)) = split else {
                    forest.sizes[t * slots + slot] = size.min(255) as u8;
                    continue;
                };
                // Partition the node's sample (and its projections) around the threshold.
                let mut mid = lo;
                for k in 0..size {
                    if proj[k] < threshold {
                        sample.swap(lo + k, mid);
                        proj.swap(k, mid - lo);
                        mid += 1;
                    }
                }
                forest.nodes[t * internal + slot] = Node {
                    lo: min,
                    hi: max,
                    cut,
                    dir: dir as u8,
                };
                stack.push((2 * slot + 1, lo, mid, depth + 1));
                stack.push((2 * slot + 2, mid, hi, depth + 1));
            }
        }

        // Calibration. Once enough vectors have been scored on arrival, their raw scores are
        // the reference distribution. The first fit has none: it scores the window out of bag
        // instead (each vector only by the trees that did not sample it, since a tree isolates
        // its own sample too well), which costs as much as the fit itself.
        let mut raws: Vec<f64> = Vec::with_capacity(n);
        if self.arrival_raw.len() >= MIN_ARRIVALS {
            raws.extend(self.arrival_raw.iter().map(|r| f64::from(*r)));
        } else {
            let mut p = [0.0f32; DIRECTIONS];
            let mut paths = [0.0f32; MAX_TREES];
            for (i, row) in rows.chunks_exact(d).enumerate() {
                forest.project(row, &mut p);
                forest.path_lengths(&p, &mut paths);
                let (mut sum, mut count) = (0.0, 0u32);
                for (t, path) in paths.iter().enumerate().take(trees) {
                    if in_bag[t * words + i / 64] & (1 << (i % 64)) == 0 {
                        sum += f64::from(*path);
                        count += 1;
                    }
                }
                if count > 0 {
                    raws.push(forest.raw_from_path(sum / f64::from(count)));
                }
            }
        }
        raws.sort_unstable_by(f64::total_cmp);
        if let Some(median) = raws.get(raws.len() / 2).copied() {
            // The tail's size as the mean excess of the top tenth over the median: about the
            // 95th percentile's excess, but averaged over some 25 values instead of read off
            // one order statistic, so it varies less from fit to fit.
            let top = &raws[raws.len() - raws.len().div_ceil(10)..];
            let excess = top.iter().map(|r| r - median).sum::<f64>() / top.len().max(1) as f64;
            forest.median = median;
            forest.tail = excess;
        }
        self.rng = rng.0;
        self.forest = Some(forest);
    }

    fn name_of(&self, j: usize) -> String {
        self.cfg
            .dimension_names
            .get(j)
            .cloned()
            .unwrap_or_else(|| format!("dim {j}"))
    }
}

impl Forest {
    /// Robust z-scores of `values`, clipped, in a fixed-size buffer (first `dims` used).
    fn scaled(&self, values: &[f64]) -> [f32; MAX_DIMENSIONS] {
        let mut z = [0.0f32; MAX_DIMENSIONS];
        for (((out, v), c), s) in z.iter_mut().zip(values).zip(&self.center).zip(&self.scale) {
            *out = (((v - c) / s) as f32).clamp(-Z_CLIP, Z_CLIP);
        }
        z
    }

    /// The scaled vector in the window's principal axes, each of unit spread.
    fn whitened(&self, z: &[f32]) -> [f32; MAX_DIMENSIONS] {
        let d = z.len();
        let mut w = [0.0f32; MAX_DIMENSIONS];
        if d == 0 {
            return w;
        }
        for (out, row) in w.iter_mut().zip(self.whiten.chunks_exact(d)) {
            *out = row.iter().zip(z).map(|(a, b)| a * b).sum();
        }
        w
    }

    fn project(&self, z: &[f32], out: &mut [f32; DIRECTIONS]) {
        let d = z.len();
        if d == 0 {
            return;
        }
        for (o, normal) in out.iter_mut().zip(self.directions.chunks_exact(d)) {
            *o = dot(z, normal);
        }
    }

    /// Expected path length of a projected point in every tree, with the c(size) adjustment
    /// at the leaf. Where the point lies beyond the range the node's training points spanned
    /// on the split direction (SCiForest's range check: Liu, Ting & Zhou, *On Detecting
    /// Clustered Anomalies Using SCiForest*, ECML PKDD 2010), it counts as separated at that
    /// node with the probability a split drawn uniformly over the range widened to include it
    /// would have separated it. Plain isolation forests send such a point down the outermost
    /// branch instead, so a metric 30 σ out scores no higher than the edge of the normal cloud.
    ///
    /// The trees are walked level by level, all trees at each level: one tree's walk is a chain
    /// of dependent loads, and interleaving independent chains lets the processor overlap them
    /// (about three times faster than tree after tree).
    fn path_lengths(&self, proj: &[f32; DIRECTIONS], out: &mut [f32; MAX_TREES]) {
        let trees = self.trees.min(MAX_TREES);
        let mut slot = [0usize; MAX_TREES];
        let mut stay = [1.0f32; MAX_TREES]; // probability the point is not separated yet
        let mut expected = [0.0f32; MAX_TREES];
        let mut depth = 0.0f32;
        let mut live = trees;
        while live > 0 && depth < 64.0 {
            live = 0;
            for t in 0..trees {
                let base = t * self.internal;
                let s = slot[t];
                let node = match self.nodes.get(base + s) {
                    Some(node) if s < self.internal && node.dir != LEAF => node,
                    _ => continue,
                };
                let value = proj.get(usize::from(node.dir)).copied().unwrap_or(0.0);
                let beyond = (node.lo - value).max(value - node.hi);
                if beyond > 0.0 {
                    let q = beyond / (node.hi - node.lo + beyond);
                    expected[t] += stay[t] * q * (depth + 1.0);
                    stay[t] *= 1.0 - q;
                }
                slot[t] = 2 * s + 1 + usize::from(value >= threshold(node.lo, node.hi, node.cut));
                live += 1;
            }
            depth += 1.0;
        }
        for t in 0..trees {
            let s = slot[t];
            // Depth of the leaf reached: the heap index tells it.
            let level = (usize::BITS - 1 - (s + 1).leading_zeros()) as f32;
            let size = self.sizes.get(t * self.slots + s).copied().unwrap_or(0);
            out[t] = expected[t] + stay[t] * (level + leaf_adjustment(size));
        }
    }

    fn raw_from_path(&self, mean_path: f64) -> f64 {
        (-mean_path / self.c_sample.max(f64::MIN_POSITIVE)).exp2()
    }

    /// Raw score of a scaled vector.
    fn raw_score(&self, z: &[f32]) -> f64 {
        let w = self.whitened(z);
        let mut p = [0.0f32; DIRECTIONS];
        self.project(&w[..z.len()], &mut p);
        let mut paths = [0.0f32; MAX_TREES];
        self.path_lengths(&p, &mut paths);
        let trees = self.trees.clamp(1, MAX_TREES);
        let total: f32 = paths[..trees].iter().sum();
        self.raw_from_path(f64::from(total) / trees as f64)
    }

    fn calibrated(&self, raw: f64) -> f64 {
        let spread = self.tail.max(MIN_CALIBRATION_SPREAD);
        let u = ((raw - self.median) / spread).max(0.0);
        -(-std::f64::consts::LN_2 * (u / SCORE_U_MEDIAN).powi(SCORE_SHAPE)).exp_m1()
    }

    /// Mean path length behind a raw score.
    fn path_from_raw(&self, raw: f64) -> f64 {
        if raw <= 0.0 {
            return f64::INFINITY;
        }
        -raw.log2() * self.c_sample
    }
}

/// Whitening matrix of the scaled rows (`d` values each): the eigenvectors of their covariance
/// (about the median, which scaling put at 0), each divided by the square root of its
/// eigenvalue. Values are clipped at ±4 for the covariance so a few extreme rows cannot tilt
/// it, and eigenvalues are floored at 5 % of a unit variance, so an axis along which the
/// window never varied (two metrics that always moved together) amplifies a divergence at
/// most 4.5-fold.
fn whitening(rows: &[f32], d: usize) -> Vec<f32> {
    const COV_CLIP: f64 = 4.0;
    const MIN_EIGENVALUE: f64 = 0.05;
    let n = rows.len() / d.max(1);
    let mut cov = vec![0.0f64; d * d];
    for z in rows.chunks_exact(d) {
        for i in 0..d {
            let zi = f64::from(z[i]).clamp(-COV_CLIP, COV_CLIP);
            for j in i..d {
                cov[i * d + j] += zi * f64::from(z[j]).clamp(-COV_CLIP, COV_CLIP);
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / n.max(1) as f64;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    let (values, vectors) = symmetric_eigen(cov, d);
    let mut w = Vec::with_capacity(d * d);
    for k in 0..d {
        let inv = 1.0 / values[k].max(MIN_EIGENVALUE).sqrt();
        w.extend((0..d).map(|i| (vectors[i * d + k] * inv) as f32));
    }
    w
}

/// Eigenvalues and eigenvectors (columns of the returned row-major matrix) of a symmetric
/// `d × d` matrix by cyclic Jacobi rotations (Golub & Van Loan, *Matrix Computations*, §8.5):
/// a few dozen lines, exact to rounding for the small matrices here (d ≤ 16).
fn symmetric_eigen(mut a: Vec<f64>, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..50 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |j| *j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        let scale: f64 = (0..d).map(|i| a[i * d + i] * a[i * d + i]).sum();
        if off <= 1e-24 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < f64::MIN_POSITIVE {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let sign = if theta >= 0.0 { 1.0 } else { -1.0 };
                let t = sign / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let akp = a[k * d + p];
                    let akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let apk = a[p * d + k];
                    let aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let vkp = v[k * d + p];
                    let vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

fn dot(z: &[f32], direction: &[i8]) -> f32 {
    z.iter()
        .zip(direction)
        .map(|(x, c)| x * f32::from(*c))
        .sum()
}

/// The split point `cut` / 2¹⁶ of the way (plus half a step) through [lo, hi]: the same
/// expression in fitting and scoring, so a point on the threshold goes the same way in both.
fn threshold(lo: f32, hi: f32, cut: u16) -> f32 {
    lo + (hi - lo) * ((f32::from(cut) + 0.5) / 65_536.0)
}

/// c(n) for the sizes a leaf can hold, computed once.
fn leaf_adjustment(size: u8) -> f32 {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| std::array::from_fn(|n| average_path(n as f64) as f32));
    table[usize::from(size)]
}

/// c(n): the average path length of an unsuccessful search in a binary search tree of n
/// points, 2H(n − 1) − 2(n − 1)/n (Liu et al. 2008, eq. 1).
fn average_path(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n <= 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
    }
}

impl MultivariateDetector for IsolationForestDetector {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn update(&mut self, ts: Millis, values: &[f64]) -> Result<Score, DetectError> {
        IsolationForestDetector::update(self, ts, values)
    }

    fn explain(&self) -> String {
        let Some(f) = &self.forest else {
            return format!(
                "isolation forest: learning, {} of {} reference vectors collected",
                self.window_len, self.cfg.warmup_points
            );
        };
        let Some(last) = &self.last else {
            return "isolation forest: fitted, no vector scored yet".to_string();
        };
        let d = self.dims;
        let z = f.scaled(&last.values);
        // Each dimension set to its median in turn: how far the score falls.
        let mut drops: Vec<(usize, f64)> = (0..d)
            .map(|j| {
                let mut typical = z;
                typical[j] = 0.0;
                let raw = f.raw_score(&typical[..d]);
                (j, f.calibrated(raw))
            })
            .collect();
        drops.sort_by(|a, b| a.1.total_cmp(&b.1));
        let depth = f.path_from_raw(last.raw);
        let typical_depth = f.path_from_raw(f.median);
        let mut s = format!(
            "isolation forest: score {:.2}, isolated in {:.1} splits on average where the \
             reference takes {:.1}",
            last.score, depth, typical_depth
        );
        let named: Vec<String> = drops
            .iter()
            .filter(|(_, without)| last.score - without > 0.01)
            .take(3)
            .map(|&(j, without)| {
                let zj = (last.values[j] - f.center[j]) / f.scale[j];
                format!(
                    "{} = {} (robust z {:+.1}, typical {}; at its typical value the score \
                     would be {:.2})",
                    self.name_of(j),
                    fmt_num(last.values[j]),
                    zj,
                    fmt_num(f.center[j]),
                    without
                )
            })
            .collect();
        if named.is_empty() {
            s.push_str("; no single dimension stands out");
        } else {
            s.push_str("; most unusual: ");
            s.push_str(&named.join(", "));
        }
        s
    }

    fn state_bytes(&self) -> usize {
        let forest = self
            .forest_bytes()
            .saturating_sub(if self.forest.is_some() {
                std::mem::size_of::<Forest>()
            } else {
                0
            });
        let last = self
            .last
            .as_ref()
            .map_or(0, |l| l.values.capacity() * std::mem::size_of::<f64>());
        let names: usize = self
            .cfg
            .dimension_names
            .iter()
            .map(|n| n.capacity() + std::mem::size_of::<String>())
            .sum();
        std::mem::size_of::<Self>()
            + (self.window.capacity() + self.arrival_raw.capacity()) * 4
            + forest
            + last
            + names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Noise;

    const STEP: Millis = 15_000;
    const T0: Millis = 1_700_000_000_000;

    /// Request rate, CPU and p99 latency driven by one load factor, so they move together.
    fn service(load: f64, noise: &mut Noise) -> [f64; 3] {
        [
            500.0 + 100.0 * load,
            0.5 + 0.1 * (0.9 * load + 0.436 * noise.gaussian()),
            0.2 + 0.02 * (0.8 * load + 0.6 * noise.gaussian()),
        ]
    }

    fn detector() -> IsolationForestDetector {
        IsolationForestDetector::new(
            3,
            IsolationForestConfig {
                dimension_names: vec!["request_rate".into(), "cpu".into(), "latency_p99".into()],
                ..IsolationForestConfig::default()
            },
        )
        .expect("3 dimensions")
    }

    fn feed(d: &mut IsolationForestDetector, noise: &mut Noise, from: usize, n: usize) -> Vec<f64> {
        (from..from + n)
            .map(|i| {
                let v = service(noise.gaussian(), noise);
                d.update(T0 + i as Millis * STEP, &v).expect("valid").score
            })
            .collect()
    }

    #[test]
    fn quiet_on_correlated_normal_data() {
        for seed in 1..=4 {
            let mut d = detector();
            let mut noise = Noise::new(seed);
            let scores = feed(&mut d, &mut noise, 0, 4000);
            assert!(scores[..127].iter().all(|s| *s == 0.0), "scored in warm-up");
            let scored = &scores[128..];
            let loud = scored.iter().filter(|s| **s >= 0.5).count();
            let rate = loud as f64 / scored.len() as f64;
            assert!(rate < 0.01, "seed {seed}: {loud} of {} ≥ 0.5", scored.len());
        }
    }

    #[test]
    fn fires_on_a_combination_that_breaks_the_correlation() {
        // High traffic (z ≈ +2.5) with low CPU (z ≈ −2.3) and ordinary latency: each value is
        // inside the range its metric showed, the combination never happened.
        let odd = [750.0, 0.27, 0.22];
        for seed in [5, 6, 7] {
            let mut d = detector();
            let mut noise = Noise::new(seed);
            let mut seen = [(f64::MAX, f64::MIN); 3];
            for i in 0..3000 {
                let v = service(noise.gaussian(), &mut noise);
                for (range, x) in seen.iter_mut().zip(v) {
                    *range = (range.0.min(x), range.1.max(x));
                }
                d.update(T0 + i * STEP, &v).expect("valid");
            }
            assert!(
                odd.iter()
                    .zip(seen)
                    .all(|(x, (lo, hi))| (lo..=hi).contains(x))
            );
            let s = d.update(T0 + 3000 * STEP, &odd).expect("valid");
            let why = d.explain();
            assert!(s.score > 0.5, "seed {seed}: {s:?}: {why}");
            assert!(why.contains("cpu"), "{why}");
            assert!(why.contains("request_rate"), "{why}");
            // The same traffic with the CPU it usually brings is normal.
            let usual = [750.0, 0.72, 0.24];
            let s = d.update(T0 + 3001 * STEP, &usual).expect("valid");
            assert!(s.score < 0.5, "{s:?}: {}", d.explain());
        }
    }

    #[test]
    fn fires_on_one_metric_out_of_range_and_names_it() {
        let mut d = detector();
        let mut noise = Noise::new(6);
        feed(&mut d, &mut noise, 0, 1000);
        let s = d
            .update(T0 + 1000 * STEP, &[500.0, 0.5, 0.9])
            .expect("valid");
        assert!(s.score > 0.9, "{s:?}");
        let why = d.explain();
        assert!(why.starts_with("isolation forest: score"), "{why}");
        assert!(why.contains("most unusual: latency_p99"), "{why}");
    }

    #[test]
    fn anomalies_stay_out_of_the_reference() {
        let mut d = detector();
        let mut noise = Noise::new(7);
        feed(&mut d, &mut noise, 0, 1000);
        // Half an hour of the broken combination: it keeps scoring high.
        let scores: Vec<f64> = (0..120)
            .map(|i| {
                let odd = [750.0 + noise.gaussian(), 0.27, 0.22];
                d.update(T0 + (1000 + i) as Millis * STEP, &odd)
                    .expect("valid")
                    .score
            })
            .collect();
        assert!(scores.iter().all(|s| *s > 0.5), "{scores:?}");
    }

    #[test]
    fn same_seed_same_scores_and_a_checkpoint_restores() {
        let mut a = detector();
        let mut b = detector();
        let mut na = Noise::new(8);
        let mut nb = Noise::new(8);
        assert_eq!(feed(&mut a, &mut na, 0, 700), feed(&mut b, &mut nb, 0, 700));

        let json = serde_json::to_string(&a).expect("serialise");
        let mut restored: IsolationForestDetector = serde_json::from_str(&json).expect("restore");
        let mut n1 = Noise::new(9);
        let mut n2 = Noise::new(9);
        assert_eq!(
            feed(&mut a, &mut n1, 700, 500),
            feed(&mut restored, &mut n2, 700, 500)
        );
        assert_eq!(a.explain(), restored.explain());
    }

    #[test]
    fn bad_input_is_refused_and_leaves_the_state() {
        let mut d = detector();
        let mut noise = Noise::new(10);
        feed(&mut d, &mut noise, 0, 300);
        let before = serde_json::to_string(&d).expect("serialise");
        let next = T0 + 300 * STEP;
        assert!(matches!(
            d.update(next, &[1.0, f64::NAN, 1.0]),
            Err(DetectError::NonFinite(v)) if v.is_nan()
        ));
        assert!(matches!(
            d.update(next, &[1.0, 2.0]),
            Err(DetectError::WrongDimensions {
                expected: 3,
                got: 2
            })
        ));
        assert!(matches!(
            d.update(next, &[1.0, 2.0, 3.0, 4.0]),
            Err(DetectError::WrongDimensions { .. })
        ));
        let last = next - STEP;
        assert_eq!(
            d.update(last, &[500.0, 0.5, 0.2]),
            Err(DetectError::OutOfOrder { ts: last, last })
        );
        assert_eq!(serde_json::to_string(&d).expect("serialise"), before);
    }

    #[test]
    fn dimensions_are_bounded_and_memory_is_reported() {
        let cfg = IsolationForestConfig::default();
        assert_eq!(
            IsolationForestDetector::new(0, cfg.clone()).err(),
            Some(InvalidDimensions(0))
        );
        assert!(IsolationForestDetector::new(MAX_DIMENSIONS + 1, cfg.clone()).is_err());
        let mut d = IsolationForestDetector::new(5, cfg).expect("5 dimensions");
        let mut noise = Noise::new(11);
        for i in 0..400 {
            let load = noise.gaussian();
            let v = [
                load,
                0.5 * load + noise.gaussian(),
                noise.gaussian(),
                noise.gaussian(),
                0.01 * noise.uniform(),
            ];
            d.update(T0 + i * STEP, &v).expect("valid");
        }
        println!(
            "IsolationForestDetector, 5 dimensions: forest {} bytes, total {} bytes",
            d.forest_bytes(),
            d.state_bytes()
        );
        assert!(d.forest_bytes() <= 32 * 1024, "{}", d.forest_bytes());
        assert!(d.state_bytes() <= 40 * 1024, "{}", d.state_bytes());
    }

    #[test]
    fn jacobi_diagonalises_a_covariance() {
        let a = vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0];
        let (values, vectors) = symmetric_eigen(a.clone(), 3);
        for k in 0..3 {
            for i in 0..3 {
                let av: f64 = (0..3).map(|j| a[i * 3 + j] * vectors[j * 3 + k]).sum();
                assert!((av - values[k] * vectors[i * 3 + k]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn average_path_matches_the_paper() {
        assert_eq!(average_path(1.0), 0.0);
        assert_eq!(average_path(2.0), 1.0);
        // c(256) ≈ 10.24 (Liu et al. use it to normalise with ψ = 256).
        assert!((average_path(256.0) - 10.244).abs() < 0.01);
    }
}
