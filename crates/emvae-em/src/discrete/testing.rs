//! Helpers of the discrete mixtures' tests.

use crate::driver::{EmCheckpoint, EmObserver, IterationRecord};

/// Keeps every checkpoint the driver shows.
pub(crate) struct Keep<S>(pub Vec<EmCheckpoint<S>>);

impl<S: Clone> EmObserver<S> for Keep<S> {
    fn on_iteration(
        &mut self,
        _: &IterationRecord,
        checkpoint: &EmCheckpoint<S>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.push(checkpoint.clone());
        Ok(())
    }
}

/// The permutation `perm` (true component `j` is fitted component `perm[j]`) minimising
/// `sum_j cost(j, perm[j])`, by trying all `k!` of them (small `k`).
pub(crate) fn best_permutation(k: usize, cost: impl Fn(usize, usize) -> f64) -> Vec<usize> {
    fn permutations(k: usize) -> Vec<Vec<usize>> {
        if k == 0 {
            return vec![Vec::new()];
        }
        let mut out = Vec::new();
        for p in permutations(k - 1) {
            for pos in 0..=p.len() {
                let mut q = p.clone();
                q.insert(pos, k - 1);
                out.push(q);
            }
        }
        out
    }
    let total = |p: &Vec<usize>| (0..k).map(|j| cost(j, p[j])).sum::<f64>();
    permutations(k)
        .into_iter()
        .min_by(|a, b| total(a).total_cmp(&total(b)))
        .unwrap_or_default()
}

#[test]
fn best_permutation_undoes_a_relabelling() {
    let truth: [f64; 4] = [0.1, 0.5, 0.9, 0.3];
    let fitted = [0.9, 0.3, 0.1, 0.5];
    let p = best_permutation(4, |j, l| (truth[j] - fitted[l]).abs());
    assert_eq!(p, vec![2, 3, 0, 1]);
}
