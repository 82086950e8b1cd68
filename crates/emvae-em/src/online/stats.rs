//! The running average of expected sufficient statistics.
//!
//! `s_t = (1 - gamma_t) s_{t-1} + gamma_t s_hat_t`, computed as `s + gamma (s_hat - s)`. With
//! `gamma_t = 1/t` this is the plain average of `s_hat_1 .. s_hat_t` (to rounding), and with
//! `gamma_t = n_t / (n_1 + ... + n_t)` the average per row of batches of `n_t` rows.

/// Statistics averaged over mini-batches; empty until the first update.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunningStats {
    values: Vec<f64>,
    updates: usize,
}

impl RunningStats {
    /// Moves the average towards `s_hat` by `gamma` (the first update takes `s_hat` whole).
    ///
    /// # Panics
    /// If `s_hat` has another length than earlier updates (a bug, not bad input).
    pub fn update(&mut self, s_hat: &[f64], gamma: f64) {
        if self.updates == 0 {
            self.values = s_hat.to_vec();
        } else {
            assert_eq!(s_hat.len(), self.values.len(), "statistics change shape");
            for (s, h) in self.values.iter_mut().zip(s_hat) {
                *s += gamma * (h - *s);
            }
        }
        self.updates += 1;
    }

    /// The current average (empty before the first update).
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Number of updates so far.
    pub fn updates(&self) -> usize {
        self.updates
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::online::OnlineParams;

    /// With `gamma_t = 1/t` (`step_exponent = 1`, `step_offset = 0`, no burn-in) the running statistics
    /// are the plain average of the batch statistics.
    #[test]
    fn with_steps_one_over_t_the_running_statistics_are_the_plain_average() {
        let schedule = OnlineParams {
            step_exponent: 1.0,
            step_offset: 0.0,
            burn_in: 0,
            ..OnlineParams::default()
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (len, batches) = (45, 1000);
        let mut running = RunningStats::default();
        let mut sum = vec![0.0; len];
        for t in 1..=batches {
            let s_hat: Vec<f64> = (0..len).map(|_| rng.random_range(-5.0..5.0)).collect();
            sum.iter_mut().zip(&s_hat).for_each(|(a, b)| *a += b);
            running.update(&s_hat, schedule.step_size(t, 10, 10 * t));
        }
        for (s, total) in running.values().iter().zip(&sum) {
            let mean = total / batches as f64;
            assert!(
                (s - mean).abs() <= 1e-13 * total.abs().max(1.0),
                "{s} vs {mean}"
            );
        }
        assert_eq!(running.updates(), batches);
    }

    /// During the burn-in the steps make the average per row, whatever the batch sizes.
    #[test]
    fn burn_in_steps_average_per_row() {
        let schedule = OnlineParams {
            burn_in: 4,
            ..OnlineParams::default()
        };
        let mut running = RunningStats::default();
        let (mut seen, mut weighted) = (0, 0.0);
        for (t, (rows, value)) in [(10, 1.0), (30, 2.0), (5, -4.0), (1, 8.0)]
            .into_iter()
            .enumerate()
        {
            seen += rows;
            weighted += rows as f64 * value;
            running.update(&[value], schedule.step_size(t + 1, rows, seen));
        }
        assert!((running.values()[0] - weighted / seen as f64).abs() < 1e-15);
        // After it, the Robbins-Monro steps.
        assert_eq!(schedule.step_size(5, 10, 100), 7f64.powf(-0.6));
        assert!(!schedule.updates_after(3) && schedule.updates_after(4));
    }
}
