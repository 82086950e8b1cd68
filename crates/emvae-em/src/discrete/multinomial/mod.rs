//! Mixtures of multinomials over bag-of-words documents: the mixture of unigrams (Nigam et al. 2000).
//!
//! ```text
//! p(doc) = sum_j pi_j prod_w theta_jw^c_w
//! ```
//! for a document with `c_w` tokens of word `w`: the probability of its word sequence, without the
//! multinomial coefficient (see [`MultinomialParameters`]). A mixture of categoricals is the special
//! case of one token per document (one count per row).
//!
//! Documents are held sparsely ([`BagOfWords`], from a dense count matrix or from token-id sequences),
//! so the E-step and M-step cost `O(nnz k)`. [`MultinomialMixtureParams`] (unchecked) `.check()` gives
//! [`MultinomialValidParams`], whose `fit` returns a [`MultinomialMixture`]. Word probabilities are kept
//! at or above [`PROB_FLOOR`](crate::discrete::PROB_FLOOR) (exactly, by the M-step), so `alpha = 0` is
//! allowed and a held-out word a component never saw still has a finite (if tiny) probability; `alpha`
//! defaults to 1 (Laplace smoothing). An empty document has probability 1 and its posterior is the
//! weights.

mod corpus;
mod fit;
mod model;
mod parameters;

pub use crate::discrete::params::{MultinomialMixtureParams, MultinomialValidParams};
pub use corpus::BagOfWords;
pub use fit::{CHECKPOINT_FORMAT, MultinomialCheckpoint};
pub use model::{MODEL_FORMAT, MultinomialMixture, MultinomialMixtureJson};
pub use parameters::{MultinomialParameters, MultinomialParametersJson};
