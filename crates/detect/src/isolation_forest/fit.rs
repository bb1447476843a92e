//! Fitting a forest to the reference window: robust scaling, whitening, random directions,
//! tree growth on subsamples and the calibration of raw scores.

use super::forest::{EMPTY, Forest, Node, average_path, dot, threshold};
use super::whiten::whitening;
use super::{
    DIRECTIONS, IsolationForestDetector, MAX_DIMENSIONS, MAX_TREES, MIN_ARRIVALS, MIN_SAMPLE,
};
use crate::window::{MEAN_ABS_TO_SIGMA, MEDIAN_ABS_TO_SIGMA};
use nightshift_core::SplitMix64;

impl IsolationForestDetector {
    pub(super) fn refit(&mut self) {
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
}
