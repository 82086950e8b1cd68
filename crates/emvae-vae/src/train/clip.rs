//! Gradient clipping by the global norm over a model's parameters.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use emvae_core::tensor::tensor_to_vec;

/// Squared norms of the gradients of the visited parameters.
struct GradNorm<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.total += tensor_to_vec((g.clone() * g).sum())[0];
        }
    }
}

/// Scales the visited parameters' gradients.
struct GradScale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for GradScale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Clips the global norm of `grads` (over `model`'s parameters) to `max_norm`.
pub(super) fn clip_global_norm<M: Module>(grads: &mut GradientsParams, model: &M, max_norm: f64) {
    let mut norm = GradNorm { grads, total: 0.0 };
    model.visit(&mut norm);
    let total = norm.total.sqrt();
    if total > max_norm {
        model.visit(&mut GradScale {
            grads,
            factor: max_norm / total,
        });
    }
}
