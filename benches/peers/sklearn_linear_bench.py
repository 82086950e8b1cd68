#!/usr/bin/env python
"""Peer benchmark: seconds for scikit-learn to fit PCA and factor analysis.

What it measures
    The wall-clock time of PCA(n_components=q, svd_solver="full").fit(X) and of
    FactorAnalysis(n_components=q).fit(X) (its defaults: svd_method="randomized", tol=1e-2,
    max_iter=1000), on seeded data drawn from a factor model with q factors in d dimensions and
    heteroscedastic noise (x = W z + mu + eps, W standard normal, noise variances uniform in
    [0.2, 2]). The best of --repeats fits is reported, for each BLAS/OpenMP thread count in --threads
    (capped with threadpoolctl). Defaults: (n, d, q) = (100000, 50, 10) and (10000, 20, 5); threads
    1 and 2.

    --save-npy DIR writes each data set as DIR/linear_{n}_{d}_{q}.npy (float64, C order), so that
    emvae can be timed on the very same data (see the ignored test `linear::bench` of emvae-em).

Output: one JSON line per (model, n, d, q, threads):
    {"impl":"sklearn","version":...,"model":"PCA"|"FactorAnalysis","n":..,"d":..,"q":..,"threads":..,
     "seconds":..,"n_iter":..,"score":..}
    where score is the model's average log-likelihood on X (PCA.score uses its 1/(n-1) covariance).

Run (from the repository root):
    /work/venv-peers/bin/python benches/peers/sklearn_linear_bench.py
    /work/venv-peers/bin/python benches/peers/sklearn_linear_bench.py --save-npy /tmp/linear_bench
    /work/venv-peers/bin/python benches/peers/sklearn_linear_bench.py --sizes 2000x10x3 --repeats 1
"""
import argparse
import json
import os
import time
import warnings

import numpy as np
import sklearn
from sklearn.decomposition import PCA, FactorAnalysis
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import threadpool_limits

SEED = 7


def make_data(n, d, q, seed=SEED):
    """Seeded factor-model data: x = W z + mu + eps."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((d, q))
    mu = rng.normal(0.0, 1.0, size=d)
    psi = rng.uniform(0.2, 2.0, size=d)
    z = rng.standard_normal((n, q))
    return z @ w.T + mu + rng.standard_normal((n, d)) * np.sqrt(psi)


def best_time(make, X, repeats):
    best, model = float("inf"), None
    for _ in range(repeats):
        m = make()
        t0 = time.perf_counter()
        m.fit(X)
        best = min(best, time.perf_counter() - t0)
        model = m
    return best, model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["100000x50x10", "10000x20x5"],
                    help="data shapes as NxDxQ")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--save-npy", metavar="DIR", help="also write each data set as .npy here")
    args = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    for size in args.sizes:
        n, d, q = (int(v) for v in size.split("x"))
        X = make_data(n, d, q)
        if args.save_npy:
            os.makedirs(args.save_npy, exist_ok=True)
            np.save(os.path.join(args.save_npy, f"linear_{n}_{d}_{q}.npy"), np.ascontiguousarray(X))
        for threads in args.threads:
            with threadpool_limits(threads):
                for name, make in [("PCA", lambda: PCA(n_components=q, svd_solver="full")),
                                   ("FactorAnalysis", lambda: FactorAnalysis(n_components=q))]:
                    seconds, model = best_time(make, X, args.repeats)
                    n_iter = int(getattr(model, "n_iter_", 0))
                    print(json.dumps(dict(impl="sklearn", version=sklearn.__version__, model=name, n=n,
                                          d=d, q=q, threads=threads, seconds=seconds, n_iter=n_iter,
                                          score=float(model.score(X)))), flush=True)


if __name__ == "__main__":
    main()
