//! The fitted forest: trees stored in heap order over oblique split directions, and the
//! scoring of a vector against them (path lengths with the range check, calibration).

use super::{DIRECTIONS, MAX_DIMENSIONS, MAX_TREES};
use serde::{Deserialize, Serialize};

/// Node marker for a leaf; the split value then holds the number of points that reached it.
pub(super) const LEAF: u8 = u8::MAX;
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

/// A split: the direction (`LEAF` for a leaf or an unused slot), the range of the node's
/// training points on it, and where in that range the threshold is. 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct Node {
    pub(super) lo: f32,
    pub(super) hi: f32,
    pub(super) cut: u16,
    pub(super) dir: u8,
}

pub(super) const EMPTY: Node = Node {
    lo: 0.0,
    hi: 0.0,
    cut: 0,
    dir: LEAF,
};

/// One fitted forest with the scaling and calibration it was fitted with. Trees are stored
/// in heap order (children of node i at 2i + 1 and 2i + 2) over their height limit, so no
/// child pointers are kept: per tree, 12 bytes per internal slot and 1 per slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Forest {
    /// Robust centre (median) and scale of each dimension in the window.
    pub(super) center: Vec<f64>,
    pub(super) scale: Vec<f64>,
    /// Whitening of the scaled vector, `dims × dims` row-major: rows are the principal axes of
    /// the window divided by their standard deviations.
    pub(super) whiten: Vec<f32>,
    /// `DIRECTIONS` split directions of `dims` components each, quantised to bytes: a
    /// direction only has to be random, not exact.
    pub(super) directions: Vec<i8>,
    pub(super) trees: usize,
    /// Slots per tree at depths below the height limit (2^height − 1) and in all (2^(height+1) − 1).
    pub(super) internal: usize,
    pub(super) slots: usize,
    /// Per tree, the internal slots.
    pub(super) nodes: Vec<Node>,
    /// Per tree and slot: training points that ended in the leaf (saturating at 255).
    pub(super) sizes: Vec<u8>,
    /// c(ψ), the average path length of an unsuccessful binary-search-tree search.
    pub(super) c_sample: f64,
    /// Median of the raw scores of normal vectors and the mean excess over it of their top
    /// tenth (see `refit`).
    pub(super) median: f64,
    pub(super) tail: f64,
}

impl Forest {
    /// Robust z-scores of `values`, clipped, in a fixed-size buffer (first `dims` used).
    pub(super) fn scaled(&self, values: &[f64]) -> [f32; MAX_DIMENSIONS] {
        let mut z = [0.0f32; MAX_DIMENSIONS];
        for (((out, v), c), s) in z.iter_mut().zip(values).zip(&self.center).zip(&self.scale) {
            *out = (((v - c) / s) as f32).clamp(-Z_CLIP, Z_CLIP);
        }
        z
    }

    /// The scaled vector in the window's principal axes, each of unit spread.
    pub(super) fn whitened(&self, z: &[f32]) -> [f32; MAX_DIMENSIONS] {
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

    pub(super) fn project(&self, z: &[f32], out: &mut [f32; DIRECTIONS]) {
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
    pub(super) fn path_lengths(&self, proj: &[f32; DIRECTIONS], out: &mut [f32; MAX_TREES]) {
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

    pub(super) fn raw_from_path(&self, mean_path: f64) -> f64 {
        (-mean_path / self.c_sample.max(f64::MIN_POSITIVE)).exp2()
    }

    /// Raw score of a scaled vector.
    pub(super) fn raw_score(&self, z: &[f32]) -> f64 {
        let w = self.whitened(z);
        let mut p = [0.0f32; DIRECTIONS];
        self.project(&w[..z.len()], &mut p);
        let mut paths = [0.0f32; MAX_TREES];
        self.path_lengths(&p, &mut paths);
        let trees = self.trees.clamp(1, MAX_TREES);
        let total: f32 = paths[..trees].iter().sum();
        self.raw_from_path(f64::from(total) / trees as f64)
    }

    pub(super) fn calibrated(&self, raw: f64) -> f64 {
        let spread = self.tail.max(MIN_CALIBRATION_SPREAD);
        let u = ((raw - self.median) / spread).max(0.0);
        -(-std::f64::consts::LN_2 * (u / SCORE_U_MEDIAN).powi(SCORE_SHAPE)).exp_m1()
    }

    /// Mean path length behind a raw score.
    pub(super) fn path_from_raw(&self, raw: f64) -> f64 {
        if raw <= 0.0 {
            return f64::INFINITY;
        }
        -raw.log2() * self.c_sample
    }
}

pub(super) fn dot(z: &[f32], direction: &[i8]) -> f32 {
    z.iter()
        .zip(direction)
        .map(|(x, c)| x * f32::from(*c))
        .sum()
}

/// The split point `cut` / 2¹⁶ of the way (plus half a step) through [lo, hi]: the same
/// expression in fitting and scoring, so a point on the threshold goes the same way in both.
pub(super) fn threshold(lo: f32, hi: f32, cut: u16) -> f32 {
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
pub(super) fn average_path(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n <= 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
    }
}
