//! Schedules: the KL weight over steps (annealing) and the learning rate over epochs.

use crate::config::{Annealing, LrSchedule, ObjectiveConfig, TrainConfig};

/// KL weight at optimisation step `step` (0-based).
pub fn beta_at(o: &ObjectiveConfig, step: u64) -> f64 {
    let (start, end) = (o.anneal_start, o.beta);
    let ramp = |progress: f64| start + (end - start) * progress.clamp(0.0, 1.0);
    match o.annealing {
        Annealing::None => end,
        Annealing::Linear => ramp(step as f64 / o.anneal_steps as f64),
        Annealing::Cyclical => {
            let period = o.anneal_steps as u64;
            if step >= period * o.anneal_cycles as u64 {
                return end;
            }
            let tau = (step % period) as f64 / period as f64;
            ramp(tau / o.anneal_ratio)
        }
    }
}

/// Learning rate during epoch `epoch` (0-based).
pub fn lr_at(t: &TrainConfig, epoch: u64) -> f64 {
    match t.lr_schedule {
        // The plateau schedule's decays depend on the held-out loss; the trainer applies them.
        LrSchedule::Constant | LrSchedule::Plateau => t.lr,
        LrSchedule::Step => {
            let passed = t
                .lr_milestones
                .iter()
                .filter(|&&m| epoch >= m as u64)
                .count();
            t.lr * t.lr_decay.powi(passed as i32)
        }
        LrSchedule::Burda => {
            // Stage i lasts 3^i epochs at lr 10^(-i/7), i = 0..7; the last rate holds afterwards.
            let mut end = 0u64;
            for i in 0..8u32 {
                end += 3u64.pow(i);
                if epoch < end {
                    return t.lr * 10f64.powf(-(i as f64) / 7.0);
                }
            }
            t.lr * 10f64.powf(-1.0)
        }
    }
}

/// Epochs of the Burda et al. schedule: `sum_{i=0..7} 3^i`.
pub const BURDA_EPOCHS: usize = 3280;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_and_cyclical_annealing() {
        let mut o = ObjectiveConfig {
            annealing: Annealing::Linear,
            anneal_steps: 100,
            ..Default::default()
        };
        assert_eq!(beta_at(&o, 0), 0.0);
        assert_eq!(beta_at(&o, 50), 0.5);
        assert_eq!(beta_at(&o, 1000), 1.0);
        o.annealing = Annealing::Cyclical;
        o.anneal_cycles = 2;
        o.anneal_ratio = 0.5;
        assert_eq!(beta_at(&o, 25), 0.5);
        assert_eq!(beta_at(&o, 60), 1.0);
        assert_eq!(beta_at(&o, 100), 0.0);
        assert_eq!(beta_at(&o, 125), 0.5);
        assert_eq!(beta_at(&o, 200), 1.0);
    }

    #[test]
    fn burda_schedule_has_3280_epochs() {
        let t = TrainConfig {
            lr_schedule: LrSchedule::Burda,
            ..Default::default()
        };
        assert_eq!(lr_at(&t, 0), 1e-3);
        assert!((lr_at(&t, 1) - 1e-3 * 10f64.powf(-1.0 / 7.0)).abs() < 1e-15);
        assert!((lr_at(&t, BURDA_EPOCHS as u64 - 1) - 1e-4).abs() < 1e-15);
        let sum: u64 = (0..8).map(|i| 3u64.pow(i)).sum();
        assert_eq!(sum as usize, BURDA_EPOCHS);
    }
}
