//! Logistic regressions on bags of words: the labelled-only baseline of the semi-supervised model (binary
//! bag-of-words features, each vocabulary word of a sentence counted once, trained on the labelled
//! sentences alone), and the general fit behind it, with dense features and soft targets, that refits
//! the guide's classifier q(y | x) to the model's posterior ([`crate::refit`]).

/// One training row of a [`Logistic`] regression: its distinct word ids (binary features), its dense
/// features, and its target distribution over the classes (one-hot for an observed label).
#[derive(Debug, Clone)]
pub struct LogisticRow {
    pub words: Vec<usize>,
    pub dense: Vec<f64>,
    pub target: Vec<f64>,
}

/// A fitted multinomial logistic regression on binary word features beside dense ones,
/// `p(y | x) = softmax(sum_{w in x} U[w] + D f(x) + b)`.
///
/// It minimises `C sum_i sum_y -t_iy log p(y | x_i) + 1/2 (||U||^2 + ||D||^2)` (the intercept
/// unpenalised) for target distributions `t_i` (scikit-learn's `LogisticRegression(C)` objective for
/// one-hot ones) by full-batch Adam on that objective divided by `C n`; the problem is convex and
/// small, so a fixed number of steps reaches its optimum to well under the accuracy's resolution.
#[derive(Debug, Clone)]
pub struct Logistic {
    /// `[vocabulary, classes]`, row-major.
    pub words: Vec<f64>,
    /// `[dense features, classes]`, row-major.
    pub dense: Vec<f64>,
    pub bias: Vec<f64>,
    classes: usize,
    vocab_size: usize,
    n_dense: usize,
}

const STEPS: usize = 600;
const LR: f64 = 0.05;

impl Logistic {
    /// Fits the regression to `rows` (word ids below `vocab_size`, `n_dense` dense features, targets
    /// over `classes` classes).
    pub fn fit(
        rows: &[LogisticRow],
        vocab_size: usize,
        n_dense: usize,
        classes: usize,
        c: f64,
    ) -> Self {
        let n = rows.len().max(1) as f64;
        let k = classes;
        let mut model = Self {
            words: vec![0.0; vocab_size * k],
            dense: vec![0.0; n_dense * k],
            bias: vec![0.0; k],
            classes: k,
            vocab_size,
            n_dense,
        };
        let (nw, nd) = (vocab_size * k, n_dense * k);
        let dim = nw + nd + k;
        let (mut m, mut v) = (vec![0.0; dim], vec![0.0; dim]);
        let mut grad = vec![0.0; dim];
        let (b1, b2) = (0.9f64, 0.999f64);
        for t in 1..=STEPS {
            // Gradient of (1/n) sum CE + (||U||^2 + ||D||^2) / (2 C n).
            for (g, w) in grad.iter_mut().zip(model.words.iter().chain(&model.dense)) {
                *g = w / (c * n);
            }
            grad[nw + nd..].fill(0.0);
            for row in rows {
                let p = model.probabilities_of(&row.words, &row.dense);
                for j in 0..k {
                    let d = (p[j] - row.target[j]) / n;
                    for &w in &row.words {
                        grad[w * k + j] += d;
                    }
                    for (f, x) in row.dense.iter().enumerate() {
                        grad[nw + f * k + j] += d * x;
                    }
                    grad[nw + nd + j] += d;
                }
            }
            let lr = LR * (1.0 - b2.powi(t as i32)).sqrt() / (1.0 - b1.powi(t as i32));
            for i in 0..dim {
                m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
                v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
                let step = lr * m[i] / (v[i].sqrt() + 1e-8);
                if i < nw {
                    model.words[i] -= step;
                } else if i < nw + nd {
                    model.dense[i - nw] -= step;
                } else {
                    model.bias[i - nw - nd] -= step;
                }
            }
        }
        model
    }

    /// Class probabilities of a row with distinct words `words` (ids below the vocabulary size) and
    /// dense features `dense`.
    pub fn probabilities_of(&self, words: &[usize], dense: &[f64]) -> Vec<f64> {
        let k = self.classes;
        let mut s = self.bias.clone();
        for &w in words {
            for (j, sj) in s.iter_mut().enumerate() {
                *sj += self.words[w * k + j];
            }
        }
        for (f, x) in dense.iter().enumerate().take(self.n_dense) {
            for (j, sj) in s.iter_mut().enumerate() {
                *sj += self.dense[f * k + j] * x;
            }
        }
        let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = s.iter().map(|x| (x - max).exp()).sum();
        s.iter().map(|x| (x - max).exp() / total).collect()
    }
}

/// A fitted bag-of-words logistic regression (a [`Logistic`] without dense features, trained on
/// observed labels).
#[derive(Debug, Clone)]
pub struct BowLogistic(Logistic);

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

impl BowLogistic {
    /// Fits the regression to `sentences` (word ids) with labels in `0..classes`.
    pub fn fit(
        sentences: &[&[u32]],
        labels: &[u32],
        vocab_size: usize,
        classes: usize,
        c: f64,
    ) -> Self {
        let rows: Vec<LogisticRow> = sentences
            .iter()
            .zip(labels)
            .map(|(s, &y)| LogisticRow {
                words: features(s, vocab_size),
                dense: Vec::new(),
                target: (0..classes)
                    .map(|j| f64::from(u8::from(j == y as usize)))
                    .collect(),
            })
            .collect();
        Self(Logistic::fit(&rows, vocab_size, 0, classes, c))
    }

    /// Class probabilities of a sentence.
    pub fn probabilities(&self, words: &[u32]) -> Vec<f64> {
        self.0
            .probabilities_of(&features(words, self.0.vocab_size), &[])
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

    #[test]
    fn soft_targets_are_matched_and_dense_features_are_used() {
        // No features: the unpenalised intercept matches the mean target exactly.
        let rows: Vec<LogisticRow> = (0..10)
            .map(|_| LogisticRow {
                words: Vec::new(),
                dense: Vec::new(),
                target: vec![0.3, 0.7],
            })
            .collect();
        let m = Logistic::fit(&rows, 4, 0, 2, 1.0);
        let p = m.probabilities_of(&[], &[]);
        assert!((p[1] - 0.7).abs() < 1e-3, "{p:?}");
        // One dense feature, its sign the class; no word says anything.
        let rows: Vec<LogisticRow> = (0..40)
            .map(|i| {
                let y = i % 2;
                LogisticRow {
                    words: vec![3],
                    dense: vec![if y == 1 { 1.0 } else { -1.0 } * (1.0 + (i % 5) as f64 / 5.0)],
                    target: if y == 1 {
                        vec![0.0, 1.0]
                    } else {
                        vec![1.0, 0.0]
                    },
                }
            })
            .collect();
        let m = Logistic::fit(&rows, 4, 1, 2, 1.0);
        assert!(m.probabilities_of(&[3], &[1.0])[1] > 0.9);
        assert!(m.probabilities_of(&[3], &[-1.0])[0] > 0.9);
        assert!(m.dense[1] > 1.0 && m.dense[0] < -1.0, "{:?}", m.dense);
    }
}
