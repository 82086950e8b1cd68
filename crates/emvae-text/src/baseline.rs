//! The labelled-only baseline of the semi-supervised model: a multinomial logistic regression on binary
//! bag-of-words features (each vocabulary word of a sentence counted once), trained on the labelled
//! sentences alone.
//!
//! It minimises scikit-learn's `LogisticRegression(C)` objective,
//! `C sum_i -log softmax(W x_i + b)_{y_i} + 1/2 ||W||^2` (the intercept unpenalised), by full-batch Adam
//! on that objective divided by `C n`; the problem is convex and small, so a fixed number of steps
//! reaches its optimum to well under the accuracy's resolution.

/// A fitted bag-of-words logistic regression.
#[derive(Debug, Clone)]
pub struct BowLogistic {
    /// `[vocabulary, classes]`, row-major.
    weights: Vec<f64>,
    bias: Vec<f64>,
    classes: usize,
    vocab_size: usize,
}

/// The distinct word ids of a sentence below `vocab_size`.
fn features(words: &[u32], vocab_size: usize) -> Vec<usize> {
    let mut f: Vec<usize> = words
        .iter()
        .map(|&w| w as usize)
        .filter(|&w| w < vocab_size)
        .collect();
    f.sort_unstable();
    f.dedup();
    f
}

const STEPS: usize = 600;
const LR: f64 = 0.05;

impl BowLogistic {
    /// Fits the regression to `sentences` (word ids) with labels in `0..classes`.
    pub fn fit(
        sentences: &[&[u32]],
        labels: &[u32],
        vocab_size: usize,
        classes: usize,
        c: f64,
    ) -> Self {
        let xs: Vec<Vec<usize>> = sentences.iter().map(|s| features(s, vocab_size)).collect();
        let n = xs.len().max(1) as f64;
        let k = classes;
        let mut model = Self {
            weights: vec![0.0; vocab_size * k],
            bias: vec![0.0; k],
            classes: k,
            vocab_size,
        };
        let dim = vocab_size * k + k;
        let (mut m, mut v) = (vec![0.0; dim], vec![0.0; dim]);
        let mut grad = vec![0.0; dim];
        let (b1, b2) = (0.9f64, 0.999f64);
        for t in 1..=STEPS {
            // Gradient of (1/n) sum CE + ||W||^2 / (2 C n).
            for (g, w) in grad.iter_mut().zip(&model.weights) {
                *g = w / (c * n);
            }
            grad[vocab_size * k..].fill(0.0);
            for (x, &y) in xs.iter().zip(labels) {
                let p = model.probabilities_of(x);
                for j in 0..k {
                    let d = (p[j] - f64::from(u8::from(j == y as usize))) / n;
                    for &w in x {
                        grad[w * k + j] += d;
                    }
                    grad[vocab_size * k + j] += d;
                }
            }
            let lr = LR * (1.0 - b2.powi(t as i32)).sqrt() / (1.0 - b1.powi(t as i32));
            for i in 0..dim {
                m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
                v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
                let step = lr * m[i] / (v[i].sqrt() + 1e-8);
                if i < vocab_size * k {
                    model.weights[i] -= step;
                } else {
                    model.bias[i - vocab_size * k] -= step;
                }
            }
        }
        model
    }

    fn probabilities_of(&self, x: &[usize]) -> Vec<f64> {
        let k = self.classes;
        let mut s = self.bias.clone();
        for &w in x {
            for (j, sj) in s.iter_mut().enumerate() {
                *sj += self.weights[w * k + j];
            }
        }
        let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = s.iter().map(|x| (x - max).exp()).sum();
        s.iter().map(|x| (x - max).exp() / total).collect()
    }

    /// Class probabilities of a sentence.
    pub fn probabilities(&self, words: &[u32]) -> Vec<f64> {
        self.probabilities_of(&features(words, self.vocab_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_indicative_words_and_ignores_shared_ones() {
        // Word 1 marks class 0, word 2 class 1; words 3 and 4 appear in both.
        let sents: Vec<Vec<u32>> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    vec![1, 3 + (i % 4 == 0) as u32]
                } else {
                    vec![2, 3 + (i % 3 == 0) as u32]
                }
            })
            .collect();
        let labels: Vec<u32> = (0..40).map(|i| i % 2).collect();
        let refs: Vec<&[u32]> = sents.iter().map(Vec::as_slice).collect();
        let m = BowLogistic::fit(&refs, &labels, 5, 2, 1.0);
        assert!(m.probabilities(&[1, 3])[0] > 0.9);
        assert!(m.probabilities(&[2, 4])[1] > 0.9);
        let shared = m.probabilities(&[3, 4]);
        assert!((shared[0] - 0.5).abs() < 0.15, "{shared:?}");
        // Out-of-range ids are ignored rather than indexed.
        assert_eq!(m.probabilities(&[1, 99]), m.probabilities(&[1]));
    }

    #[test]
    fn the_penalty_shrinks_weights() {
        let sents = [vec![1u32], vec![2u32]];
        let refs: Vec<&[u32]> = sents.iter().map(Vec::as_slice).collect();
        let strong = BowLogistic::fit(&refs, &[0, 1], 3, 2, 100.0);
        let weak = BowLogistic::fit(&refs, &[0, 1], 3, 2, 0.01);
        assert!(strong.probabilities(&[1])[0] > weak.probabilities(&[1])[0] + 0.2);
    }
}
