//! Initial responsibilities: k-means (k-means++ seeding, then Lloyd iterations), k-means++ seeds alone,
//! random responsibilities, or random data points (scikit-learn's `init_params`).
//!
//! With partly labelled data, labelled rows are clamped to their component, and k-means is seeded and
//! constrained by them (a component with labelled rows starts at their mean and keeps them), so that
//! component `j` means the same thing to the labels and to the fit.

use burn::tensor::Tensor;
use emvae_core::data::Matrix;
use emvae_core::rng::Rng;
use emvae_core::tensor::tensor_to_vec;
use rand::Rng as _;
use rand::seq::index::sample;

use super::params::InitMethod;
use super::workspace::Workspace;

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Responsibilities `[n, k]` (row-major, host) to start EM from.
pub(crate) fn initial_responsibilities(
    ws: &Workspace,
    x: &Matrix,
    labels: Option<&[Option<usize>]>,
    method: InitMethod,
    kmeans_max_iter: usize,
    rng: &mut Rng,
) -> Vec<f64> {
    let (n, k) = (x.n_rows, ws.k);
    let mut resp = vec![0.0; n * k];
    match method {
        InitMethod::Random => {
            for row in resp.chunks_exact_mut(k) {
                for v in row.iter_mut() {
                    *v = rng.random::<f64>();
                }
                let s: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
        }
        InitMethod::RandomFromData => {
            for (j, i) in sample(rng, n, k).into_iter().enumerate() {
                resp[i * k + j] = 1.0;
            }
        }
        InitMethod::KMeansPlusPlus => {
            let (_, ids) = kmeans_plusplus(x, k, labels, rng);
            for (j, id) in ids.into_iter().enumerate() {
                if let Some(i) = id {
                    resp[i * k + j] = 1.0;
                }
            }
        }
        InitMethod::KMeans => {
            let (centers, _) = kmeans_plusplus(x, k, labels, rng);
            let assignment = lloyd(ws, x, labels, centers, kmeans_max_iter);
            for (i, j) in assignment.into_iter().enumerate() {
                resp[i * k + j] = 1.0;
            }
        }
    }
    if let Some(labels) = labels {
        clamp_to_labels(&mut resp, labels, k);
    }
    resp
}

/// Sets the responsibilities of labelled rows to their label.
pub(crate) fn clamp_to_labels(resp: &mut [f64], labels: &[Option<usize>], k: usize) {
    for (row, label) in resp.chunks_exact_mut(k).zip(labels) {
        if let Some(l) = label {
            row.fill(0.0);
            row[*l] = 1.0;
        }
    }
}

/// Means of the labelled rows per component (`None` for components without labels).
fn labelled_means(x: &Matrix, labels: &[Option<usize>], k: usize) -> Vec<Option<Vec<f64>>> {
    let d = x.n_cols;
    let mut sums = vec![vec![0.0; d]; k];
    let mut counts = vec![0usize; k];
    for (row, label) in x.rows().zip(labels) {
        if let Some(l) = label {
            counts[*l] += 1;
            sums[*l].iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
    }
    sums.into_iter()
        .zip(counts)
        .map(|(s, c)| (c > 0).then(|| s.into_iter().map(|v| v / c as f64).collect()))
        .collect()
}

/// Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with scikit-learn's `2 + ln k` local trials):
/// each new centre is the best of a few points drawn with probability proportional to their squared
/// distance to the nearest centre so far. Returns the centres `[k, d]` and the row each came from
/// (`None` for a centre placed at the mean of labelled rows).
pub(crate) fn kmeans_plusplus(
    x: &Matrix,
    k: usize,
    labels: Option<&[Option<usize>]>,
    rng: &mut Rng,
) -> (Vec<f64>, Vec<Option<usize>>) {
    let (n, d) = (x.n_rows, x.n_cols);
    let mut centers = vec![0.0; k * d];
    let mut ids: Vec<Option<usize>> = vec![None; k];
    let mut placed = vec![false; k];
    let mut closest: Option<Vec<f64>> = None;
    if let Some(labels) = labels {
        for (j, mean) in labelled_means(x, labels, k).into_iter().enumerate() {
            if let Some(m) = mean {
                let dist: Vec<f64> = x.rows().map(|r| sq_dist(r, &m)).collect();
                closest = Some(match closest {
                    None => dist,
                    Some(c) => c.into_iter().zip(dist).map(|(a, b)| a.min(b)).collect(),
                });
                centers[j * d..(j + 1) * d].copy_from_slice(&m);
                placed[j] = true;
            }
        }
    }
    let mut remaining = (0..k).filter(|&j| !placed[j]);
    let mut closest = match closest {
        Some(c) => c,
        None => {
            let Some(j) = remaining.next() else {
                return (centers, ids);
            };
            let first = rng.random_range(0..n);
            centers[j * d..(j + 1) * d].copy_from_slice(x.row(first));
            ids[j] = Some(first);
            x.rows().map(|r| sq_dist(r, x.row(first))).collect()
        }
    };
    let n_trials = 2 + (k as f64).ln() as usize;
    let mut potential: f64 = closest.iter().sum();
    for j in remaining {
        let mut cumulative = Vec::with_capacity(n);
        let mut acc = 0.0;
        for &c in &closest {
            acc += c;
            cumulative.push(acc);
        }
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..n_trials {
            let target = rng.random::<f64>() * potential;
            let candidate = cumulative.partition_point(|&c| c < target).min(n - 1);
            let cand_row = x.row(candidate);
            let dist: Vec<f64> = x
                .rows()
                .zip(&closest)
                .map(|(r, &c)| sq_dist(r, cand_row).min(c))
                .collect();
            let pot: f64 = dist.iter().sum();
            if best.as_ref().is_none_or(|b| pot < b.0) {
                best = Some((pot, candidate, dist));
            }
        }
        let (pot, candidate, dist) = best.expect("at least two trials");
        potential = pot;
        closest = dist;
        centers[j * d..(j + 1) * d].copy_from_slice(x.row(candidate));
        ids[j] = Some(candidate);
    }
    (centers, ids)
}

/// Lloyd's algorithm from `centers`, distances on the device: assign every row to its nearest centre
/// (labelled rows to their label), move every centre to the mean of its rows; stop when no row changes
/// cluster or the centres move by less than `1e-4` times the mean feature variance (scikit-learn's
/// `tol`). An empty cluster is moved to the row farthest from its centre.
pub(crate) fn lloyd(
    ws: &Workspace,
    x: &Matrix,
    labels: Option<&[Option<usize>]>,
    mut centers: Vec<f64>,
    max_iter: usize,
) -> Vec<usize> {
    let (n, d, k) = (x.n_rows, x.n_cols, ws.k);
    let tol = 1e-4 * ws.variance.iter().sum::<f64>() / d as f64;
    let row_sq: Vec<Tensor<2>> =
        ws.x.iter()
            .map(|c| (c.clone() * c.clone()).sum_dim(1))
            .collect();
    let mut assignment = vec![usize::MAX; n];
    for _ in 0..max_iter {
        let (new_assignment, min_dist) = assign(ws, &row_sq, &centers, labels);
        let changed = new_assignment != assignment;
        assignment = new_assignment;
        if !changed {
            return assignment;
        }
        let mut sums = vec![0.0; k * d];
        let mut counts = vec![0usize; k];
        for (row, &j) in x.rows().zip(&assignment) {
            counts[j] += 1;
            sums[j * d..(j + 1) * d]
                .iter_mut()
                .zip(row)
                .for_each(|(s, v)| *s += v);
        }
        // Relocate empty clusters to the rows farthest from their centres.
        if counts.contains(&0) {
            let mut far: Vec<usize> = (0..n).collect();
            far.sort_by(|&a, &b| min_dist[b].total_cmp(&min_dist[a]));
            let mut far = far
                .into_iter()
                .filter(|&i| labels.is_none_or(|l| l[i].is_none()));
            for j in 0..k {
                if counts[j] == 0
                    && let Some(i) = far.next()
                {
                    let old = assignment[i];
                    counts[old] -= 1;
                    sums[old * d..(old + 1) * d]
                        .iter_mut()
                        .zip(x.row(i))
                        .for_each(|(s, v)| *s -= v);
                    counts[j] = 1;
                    sums[j * d..(j + 1) * d].copy_from_slice(x.row(i));
                    assignment[i] = j;
                }
            }
        }
        let mut shift = 0.0;
        for j in 0..k {
            if counts[j] == 0 {
                continue;
            }
            for i in 0..d {
                let new = sums[j * d + i] / counts[j] as f64;
                shift += (new - centers[j * d + i]).powi(2);
                centers[j * d + i] = new;
            }
        }
        if shift <= tol {
            break;
        }
    }
    // Labels consistent with the final centres.
    assign(ws, &row_sq, &centers, labels).0
}

fn assign(
    ws: &Workspace,
    row_sq: &[Tensor<2>],
    centers: &[f64],
    labels: Option<&[Option<usize>]>,
) -> (Vec<usize>, Vec<f64>) {
    let (k, d) = (ws.k, ws.d);
    // The workspace holds the data centred on its mean; centre the centres likewise.
    let centred: Vec<f64> = centers
        .chunks_exact(d)
        .flat_map(|c| c.iter().zip(&ws.center).map(|(v, m)| v - m))
        .collect();
    let c_t = ws.compute.tensor(centred, [k, d]);
    let c_sq = (c_t.clone() * c_t.clone()).sum_dim(1).transpose();
    let mut assignment = Vec::with_capacity(ws.n);
    let mut min_dist = Vec::with_capacity(ws.n);
    let mut row = 0;
    for (x, r_sq) in ws.x.iter().zip(row_sq) {
        let dist =
            r_sq.clone() - x.clone().matmul(c_t.clone().transpose()).mul_scalar(2.0) + c_sq.clone();
        let dist = tensor_to_vec(dist);
        for drow in dist.chunks_exact(k) {
            let (j, v) = match labels.and_then(|l| l[row]) {
                Some(l) => (l, drow[l]),
                None => drow
                    .iter()
                    .copied()
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .expect("k >= 1"),
            };
            assignment.push(j);
            min_dist.push(v.max(0.0));
            row += 1;
        }
    }
    (assignment, min_dist)
}
