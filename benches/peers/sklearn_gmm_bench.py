#!/usr/bin/env python
"""Peer benchmark: seconds per EM iteration of scikit-learn's GaussianMixture.

What it measures
    The steady-state cost of one EM iteration (E-step + M-step + lower bound) of
    sklearn.mixture.GaussianMixture for covariance_type 'full' and 'diag', on a seeded synthetic
    mixture of k Gaussians in d dimensions (random means, random full covariances).
    Defaults: n=100000, d=16, k=16.

Method (differential timing, so initialisation is excluded)
    Every fit gets fully explicit weights_init, means_init and precisions_init (and tol=0, n_init=1),
    so the number of iterations is exactly max_iter and no k-means / random init runs. One repeat
    times fit(max_iter=M1) and fit(max_iter=M2) back to back; (t2 - t1) / (M2 - M1) cancels the fixed
    per-fit costs (input validation, parameter set-up, Cholesky of the initial precisions, and the
    final E-step sklearn does after the loop) and leaves the pure per-iteration cost. The reported
    sec_per_iter is the median over --repeats repeats. A warm-up fit(max_iter=1) runs first.

Threads
    sklearn's EM is numpy/BLAS bound; the BLAS thread count is capped with threadpoolctl when
    --threads is given (else the library default, usually the number of cores) and reported as
    "threads".

Output: one JSON line per covariance type:
    {"impl":"sklearn","version":...,"covariance_type":...,"n":..,"d":..,"k":..,"sec_per_iter":..,"threads":..,...}

Run (from the repository root):
    /work/venv/bin/python benches/peers/sklearn_gmm_bench.py                 # full size, default threads
    /work/venv/bin/python benches/peers/sklearn_gmm_bench.py --threads 1     # single-threaded BLAS
    /work/venv/bin/python benches/peers/sklearn_gmm_bench.py --n 2000 --repeats 2   # quick smoke test
"""
import argparse
import json
import statistics
import time
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits


def make_data(n, d, k, seed):
    """Seeded mixture of k Gaussians in d-D: means ~ N(0, 4^2 I), covariances A A^T / d + 0.1 I."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(k, d))
    chols = []
    for _ in range(k):
        a = rng.standard_normal((d, d))
        chols.append(np.linalg.cholesky(a @ a.T / d + 0.1 * np.eye(d)))
    weights = rng.dirichlet(np.full(k, 5.0))
    z = rng.choice(k, size=n, p=weights)
    eps = rng.standard_normal((n, d))
    X = np.empty((n, d))
    for j in range(k):
        idx = z == j
        X[idx] = means[j] + eps[idx] @ chols[j].T
    return X, rng


def explicit_init(X, k, cov, rng):
    """Uniform weights, k distinct data points as means, precisions = inverse data (co)variance."""
    n, d = X.shape
    w0 = np.full(k, 1.0 / k)
    m0 = X[rng.choice(n, size=k, replace=False)].copy()
    var = X.var(axis=0)
    if cov == "full":
        p0 = np.stack([np.linalg.inv(np.cov(X, rowvar=False).reshape(d, d))] * k)
    elif cov == "diag":
        p0 = np.tile(1.0 / var, (k, 1))
    elif cov == "tied":
        p0 = np.linalg.inv(np.cov(X, rowvar=False).reshape(d, d))
    else:  # spherical
        p0 = np.full(k, 1.0 / var.mean())
    return w0, m0, p0


def timed_fit(X, k, cov, init, max_iter):
    w0, m0, p0 = init
    g = GaussianMixture(k, covariance_type=cov, weights_init=w0, means_init=m0, precisions_init=p0,
                        max_iter=max_iter, tol=0.0, reg_covar=1e-6, n_init=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0 = time.perf_counter()
        g.fit(X)
        t = time.perf_counter() - t0
    assert g.n_iter_ == max_iter, (g.n_iter_, max_iter)
    return t


def blas_threads():
    counts = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return max(counts) if counts else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--m1", type=int, default=2, help="iterations of the short fit")
    ap.add_argument("--m2", type=int, default=12, help="iterations of the long fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="cap BLAS/OpenMP threads (threadpoolctl)")
    ap.add_argument("--cov", nargs="+", default=["full", "diag"],
                    choices=["full", "diag", "tied", "spherical"])
    args = ap.parse_args()
    assert args.m2 > args.m1 >= 1

    X, rng = make_data(args.n, args.d, args.k, args.seed)
    limiter = threadpool_limits(limits=args.threads) if args.threads else None
    threads = blas_threads()
    for cov in args.cov:
        init = explicit_init(X, args.k, cov, rng)
        timed_fit(X, args.k, cov, init, 1)  # warm-up
        per_iter = []
        for _ in range(args.repeats):
            t1 = timed_fit(X, args.k, cov, init, args.m1)
            t2 = timed_fit(X, args.k, cov, init, args.m2)
            per_iter.append((t2 - t1) / (args.m2 - args.m1))
        print(json.dumps(dict(
            impl="sklearn", version=sklearn.__version__, covariance_type=cov,
            n=args.n, d=args.d, k=args.k, sec_per_iter=statistics.median(per_iter), threads=threads,
            method=f"median over {args.repeats} of (t[max_iter={args.m2}] - t[max_iter={args.m1}])"
                   f" / {args.m2 - args.m1}",
            samples=[round(v, 6) for v in per_iter], numpy=np.__version__)), flush=True)
    if limiter is not None:
        limiter.restore_original_limits()


if __name__ == "__main__":
    main()
