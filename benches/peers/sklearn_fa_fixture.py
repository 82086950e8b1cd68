#!/usr/bin/env python
"""Generates tests/fixtures/fa_sklearn.json: scikit-learn's factor analysis of a seeded data set.

What it produces
    n=1000 rows of d=10 features drawn from a factor model with q=3 factors and heteroscedastic noise
    (x = W z + mu + eps, W standard normal, mu ~ N(0, 2^2), noise variances uniform in [0.1, 2]),
    and sklearn.decomposition.FactorAnalysis(n_components=3, svd_method="lapack", tol=1e-12,
    max_iter=100000) fitted to it: effectively converged to its maximum likelihood.

File layout
    {sklearn, numpy, generator, seed, n, d, q, X (n rows of d),
     true: {loadings (d x q), mean, noise_variance},
     sklearn_fa: {score (average log-likelihood, FactorAnalysis.score(X)), loglike_last
                  (its last total log-likelihood / n), n_iter, noise_variance (noise_variance_),
                  components (components_, q x d), mean (mean_)}}
    Floats are written with Python's shortest round-trip repr, so X is exact.

Run (from the repository root):
    /work/venv-peers/bin/python benches/peers/sklearn_fa_fixture.py
    (optional: --out PATH; default tests/fixtures/fa_sklearn.json)
"""
import argparse
import json
import os

import numpy as np
import sklearn
from sklearn.decomposition import FactorAnalysis

SEED = 20240611
N, D, Q = 1000, 10, 3


def make_data(seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((D, Q))
    mu = rng.normal(0.0, 2.0, size=D)
    psi = rng.uniform(0.1, 2.0, size=D)
    z = rng.standard_normal((N, Q))
    eps = rng.standard_normal((N, D)) * np.sqrt(psi)
    return z @ w.T + mu + eps, w, mu, psi


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "fa_sklearn.json"))
    args = ap.parse_args()
    X, w, mu, psi = make_data(SEED)
    fa = FactorAnalysis(n_components=Q, svd_method="lapack", tol=1e-12, max_iter=100000)
    fa.fit(X)
    out = dict(
        sklearn=sklearn.__version__, numpy=np.__version__,
        generator="benches/peers/sklearn_fa_fixture.py", seed=SEED, n=N, d=D, q=Q,
        X=X.tolist(),
        true=dict(loadings=w.tolist(), mean=mu.tolist(), noise_variance=psi.tolist()),
        sklearn_fa=dict(
            score=float(fa.score(X)), loglike_last=float(fa.loglike_[-1] / N), n_iter=int(fa.n_iter_),
            noise_variance=fa.noise_variance_.tolist(), components=fa.components_.tolist(),
            mean=fa.mean_.tolist()))
    with open(args.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes): score={out['sklearn_fa']['score']:.12f} "
          f"n_iter={fa.n_iter_}")


if __name__ == "__main__":
    main()
