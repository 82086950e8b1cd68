//! Pseudo-count smoothing: the M-steps of the mixing weights and of categorical distributions under
//! conjugate priors, and the floor that keeps every probability's logarithm finite.
//!
//! A pseudo-count `alpha` added to every count is the posterior mode under a symmetric Dirichlet
//! (Beta for two outcomes) prior of concentration `1 + alpha`, whose log-density is, up to a constant,
//! `alpha sum_w log theta_w`. `alpha = 0` (a flat prior) is maximum likelihood. EM with these M-steps
//! never decreases the log posterior `sum_i log p(x_i) + log p(params)`, which is therefore what a
//! smoothed fit records as its objective.

/// The smallest probability a fitted model holds (and the largest is `1 - PROB_FLOOR` for a Bernoulli),
/// so that logarithms stay finite: an outcome never seen in a component's data costs
/// `-ln PROB_FLOOR` (about 23) nats instead of making a row impossible. The M-steps maximise over
/// probabilities at or above the floor exactly, so EM stays monotone.
pub const PROB_FLOOR: f64 = 1e-10;

/// Mixing weights `pi_j = (N_j + 10 eps + alpha_weights) / sum_l (N_l + 10 eps + alpha_weights)`.
///
/// The `10 eps` (as scikit-learn adds) keeps a component that lost all its rows at a weight above 0,
/// so `log pi_j` stays finite; it moves the weights by about `1e-15`.
pub fn weights(nk: &[f64], alpha_weights: f64) -> Vec<f64> {
    let counts: Vec<f64> = nk
        .iter()
        .map(|n| n + 10.0 * f64::EPSILON + alpha_weights)
        .collect();
    let total: f64 = counts.iter().sum();
    counts.into_iter().map(|c| c / total).collect()
}

/// `alpha_weights sum_j log pi_j`: the log-density of the weights' Dirichlet prior, up to a constant.
pub fn log_prior_weights(weights: &[f64], alpha_weights: f64) -> f64 {
    if alpha_weights == 0.0 {
        // A flat prior; also avoids 0 * -inf for a zero weight read from a model file.
        return 0.0;
    }
    alpha_weights * weights.iter().map(|w| w.ln()).sum::<f64>()
}

/// The categorical distribution maximising `sum_w c_w log theta_w` subject to `sum_w theta_w = 1` and
/// `theta_w >= floor` (with `V floor < 1`; counts `c_w >= 0`).
///
/// The Lagrange conditions give `theta_w = max(floor, c_w / lambda)` with `lambda` the unique value making
/// the sum 1. Starting from the clamped set `{w : c_w = 0}`, `lambda = sum_free c_w / (1 - |clamped|
/// floor)`; clamping any free `w` with `c_w / lambda < floor` only raises `lambda`, so the clamped set
/// grows until it is the right one (a few rounds). All counts 0 (the objective is flat): uniform.
pub fn floored_proportions(counts: &[f64], floor: f64) -> Vec<f64> {
    let v = counts.len();
    let total: f64 = counts.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return vec![1.0 / v as f64; v];
    }
    let mut clamped: Vec<bool> = counts.iter().map(|&c| c <= 0.0).collect();
    loop {
        let n_clamped = clamped.iter().filter(|&&c| c).count();
        let free: f64 = counts
            .iter()
            .zip(&clamped)
            .filter(|(_, c)| !**c)
            .map(|(x, _)| x)
            .sum();
        let lambda = free / (1.0 - n_clamped as f64 * floor);
        let mut grew = false;
        for (c, cl) in counts.iter().zip(clamped.iter_mut()) {
            if !*cl && c / lambda < floor {
                *cl = true;
                grew = true;
            }
        }
        if !grew {
            return counts
                .iter()
                .zip(&clamped)
                .map(|(c, cl)| if *cl { floor } else { c / lambda })
                .collect();
        }
    }
}

/// The floor for `v` outcomes: [`PROB_FLOOR`], or less where `v` outcomes at the floor would exceed
/// half the mass.
pub fn floor_for(v: usize) -> f64 {
    PROB_FLOOR.min(0.5 / v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The objective and a feasibility check of a candidate.
    fn objective(c: &[f64], t: &[f64]) -> f64 {
        c.iter()
            .zip(t)
            .map(|(c, t)| if *c == 0.0 { 0.0 } else { c * t.ln() })
            .sum()
    }

    #[test]
    fn floored_proportions_are_the_constrained_maximiser() {
        let floor = 0.05;
        let counts = [10.0, 0.0, 0.2, 5.0, 0.4, 0.0];
        let t = floored_proportions(&counts, floor);
        assert!((t.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        assert!(t.iter().all(|&p| p >= floor - 1e-15), "{t:?}");
        // Small counts are clamped, the free ones proportional to their counts.
        assert_eq!(t[1], floor);
        assert_eq!(t[2], floor);
        assert!((t[0] / t[3] - 2.0).abs() < 1e-12);
        // No feasible move of mass between two outcomes improves the objective.
        let best = objective(&counts, &t);
        for a in 0..counts.len() {
            for b in 0..counts.len() {
                let mut u = t.clone();
                let step = 1e-4;
                if a == b || u[a] - step < floor {
                    continue;
                }
                u[a] -= step;
                u[b] += step;
                assert!(objective(&counts, &u) <= best + 1e-15, "{a} -> {b}");
            }
        }
    }

    #[test]
    fn floored_proportions_without_clamping_are_the_frequencies() {
        let t = floored_proportions(&[1.0, 3.0], PROB_FLOOR);
        assert_eq!(t, vec![0.25, 0.75]);
        assert_eq!(floored_proportions(&[0.0, 0.0], 0.1), vec![0.5, 0.5]);
    }

    #[test]
    fn weights_are_smoothed_frequencies() {
        let w = weights(&[1.0, 3.0], 0.0);
        assert!((w[1] - 0.75).abs() < 1e-14);
        let w = weights(&[0.0, 4.0], 1.0);
        assert!((w[0] - 1.0 / 6.0).abs() < 1e-14);
        let w = weights(&[0.0, 4.0], 0.0);
        assert!(w[0] > 0.0 && w[0] < 1e-14);
        assert_eq!(log_prior_weights(&[0.0, 1.0], 0.0), 0.0);
        assert!((log_prior_weights(&[0.5, 0.5], 2.0) - 4.0 * 0.5f64.ln()).abs() < 1e-14);
    }
}
