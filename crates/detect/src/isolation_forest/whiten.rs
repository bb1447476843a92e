//! Whitening of the scaled window: its principal axes by Jacobi rotations, each divided by
//! its spread.

/// Whitening matrix of the scaled rows (`d` values each): the eigenvectors of their covariance
/// (about the median, which scaling put at 0), each divided by the square root of its
/// eigenvalue. Values are clipped at ±4 for the covariance so a few extreme rows cannot tilt
/// it, and eigenvalues are floored at 5 % of a unit variance, so an axis along which the
/// window never varied (two metrics that always moved together) amplifies a divergence at
/// most 4.5-fold.
pub(super) fn whitening(rows: &[f32], d: usize) -> Vec<f32> {
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
pub(super) fn symmetric_eigen(mut a: Vec<f64>, d: usize) -> (Vec<f64>, Vec<f64>) {
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
