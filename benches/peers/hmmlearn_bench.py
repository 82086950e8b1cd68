#!/usr/bin/env python
"""Peer benchmark: seconds per Baum-Welch iteration of hmmlearn 0.3.

What it measures
    The steady-state cost of one EM iteration (forward-backward over every sequence, sufficient
    statistics, M-step) of hmmlearn's GaussianHMM (covariance_type "diag" and "full") and
    CategoricalHMM, on seeded data drawn from a random HMM: 100 sequences x 1,000 steps, 8 states,
    d = 8 (Gaussian) or 50 symbols (categorical). Sizes are options.

Method (differential timing, so set-up is excluded)
    Every fit gets explicit startprob_, transmat_ and emission parameters (init_params="", so no
    k-means or random draws) and tol=-inf, so exactly n_iter iterations run. One repeat times
    fit(n_iter=M1) and fit(n_iter=M2) back to back, --repeats times, after a warm-up fit(n_iter=1);
    with t1, t2 the fastest of each (the least disturbed by other processes on a shared machine),
    (t2 - t1) / (M2 - M1) cancels the fixed per-fit costs (validation, the convergence monitor) and
    leaves the per-iteration cost. Reported in wall-clock seconds, and in CPU seconds of the process
    (time.process_time, all threads: for one thread, the wall-clock time without other processes'
    time slices). Both of hmmlearn's
    implementations ("log", its default, and "scaling") are timed; each line names its own.

Threads
    hmmlearn's forward-backward is single-threaded C++; its statistics use NumPy (BLAS). The thread
    count is set through OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS before NumPy is
    imported: each count of --threads runs in a child process.

Output: one JSON line per (emission, implementation, threads):
    {"impl":"hmmlearn","version":...,"emission":"gaussian_diag"|"gaussian_full"|"categorical",
     "implementation":"log"|"scaling","threads":1,"seconds_per_iteration":...,
     "cpu_seconds_per_iteration":...,
     "n_sequences":100,"length":1000,"n_states":8,"d":8,"n_symbols":50}

The same data for emvae
    --write-data DIR writes DIR/{gaussian_diag,gaussian_full,categorical}.json (observations, lengths
    and the initial parameters, with Python's round-trip floats); the ignored emvae test
    `hmm::bench_tests::seconds_per_iteration` times Baum-Welch on them:
        EMVAE_HMM_BENCH_DIR=DIR cargo test --release -p emvae-em seconds_per_iteration -- --ignored --nocapture

Run (from the repository root):
    /work/venv-peers/bin/python benches/peers/hmmlearn_bench.py                     # threads 1 and 2
    /work/venv-peers/bin/python benches/peers/hmmlearn_bench.py --write-data target/hmm-bench
    /work/venv-peers/bin/python benches/peers/hmmlearn_bench.py --n-sequences 10 --repeats 1   # smoke test
"""
import argparse
import json
import os
import subprocess
import sys

CASES = ("gaussian_diag", "gaussian_full", "categorical")


def make_case(case, n_sequences, length, k, d, v, seed):
    """Data drawn from a random sticky HMM, and explicit initial parameters for the fit."""
    import numpy as np

    rng = np.random.default_rng(seed)
    startprob = rng.dirichlet(np.ones(k))
    transmat = 0.8 * np.eye(k) + 0.2 * rng.dirichlet(np.ones(k), size=k)
    z = np.empty(n_sequences * length, dtype=int)
    for s in range(n_sequences):
        state = rng.choice(k, p=startprob)
        for t in range(length):
            z[s * length + t] = state
            state = rng.choice(k, p=transmat[state])
    lengths = [length] * n_sequences
    init = {
        "startprob_init": np.full(k, 1.0 / k).tolist(),
        "transmat_init": (0.5 * np.eye(k) + 0.5 / k).tolist(),
    }
    if case == "categorical":
        emissionprob = rng.dirichlet(np.full(v, 0.3), size=k)
        u = rng.random(len(z))[:, None]
        symbols = (u > np.cumsum(emissionprob[z], axis=1)).sum(axis=1).clip(0, v - 1)
        init["emissionprob_init"] = rng.dirichlet(np.ones(v), size=k).tolist()
        return {"symbols": symbols.tolist(), "n_symbols": v, "lengths": lengths, **init}
    means = rng.normal(0.0, 3.0, size=(k, d))
    x = means[z] + rng.standard_normal((len(z), d))
    init["means_init"] = x[rng.choice(len(x), size=k, replace=False)].tolist()
    if case == "gaussian_diag":
        init["covars_init"] = np.tile(x.var(axis=0), (k, 1)).tolist()
    else:
        init["covars_init"] = np.tile(np.cov(x.T), (k, 1, 1)).tolist()
    return {"X": x.tolist(), "lengths": lengths, **init}


def model_for(case, data, implementation, n_iter):
    import numpy as np
    from hmmlearn import hmm

    k = len(data["startprob_init"])
    if case == "categorical":
        m = hmm.CategoricalHMM(n_components=k, n_features=data["n_symbols"], n_iter=n_iter,
                               tol=-np.inf, init_params="", params="ste",
                               implementation=implementation)
        m.emissionprob_ = np.array(data["emissionprob_init"])
    else:
        cov = case.split("_")[1]
        m = hmm.GaussianHMM(n_components=k, covariance_type=cov, n_iter=n_iter, tol=-np.inf,
                            init_params="", params="stmc", implementation=implementation,
                            covars_prior=0, covars_weight=0)
        m.means_ = np.array(data["means_init"])
        m.covars_ = np.array(data["covars_init"])
    m.startprob_ = np.array(data["startprob_init"])
    m.transmat_ = np.array(data["transmat_init"])
    return m


def observations(case, data):
    import numpy as np

    if case == "categorical":
        return np.array(data["symbols"]).reshape(-1, 1)
    return np.array(data["X"])


def child(args):
    """Times every case in this process, whose thread count the parent set."""
    import logging
    import time

    import hmmlearn

    logging.getLogger("hmmlearn").setLevel(logging.ERROR)
    for case in CASES:
        data = make_case(case, args.n_sequences, args.length, args.states, args.d, args.symbols,
                         args.seed)
        x, lengths = observations(case, data), data["lengths"]
        for implementation in args.implementations.split(","):
            model_for(case, data, implementation, 1).fit(x, lengths)
            # Per n_iter, the fastest of the repeats (the least disturbed by other processes).
            wall = {args.m1: float("inf"), args.m2: float("inf")}
            cpu = dict(wall)
            for _ in range(args.repeats):
                for n_iter in (args.m1, args.m2):
                    m = model_for(case, data, implementation, n_iter)
                    start, start_cpu = time.perf_counter(), time.process_time()
                    m.fit(x, lengths)
                    wall[n_iter] = min(wall[n_iter], time.perf_counter() - start)
                    cpu[n_iter] = min(cpu[n_iter], time.process_time() - start_cpu)
            per_iter = (wall[args.m2] - wall[args.m1]) / (args.m2 - args.m1)
            cpu_per_iter = (cpu[args.m2] - cpu[args.m1]) / (args.m2 - args.m1)
            print(json.dumps({
                "impl": "hmmlearn", "version": hmmlearn.__version__, "emission": case,
                "implementation": implementation, "threads": args.child,
                "seconds_per_iteration": round(per_iter, 5),
                "cpu_seconds_per_iteration": round(cpu_per_iter, 5),
                "n_sequences": args.n_sequences, "length": args.length,
                "n_states": args.states, "d": args.d, "n_symbols": args.symbols,
            }), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--n-sequences", type=int, default=100)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--states", type=int, default=8)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--m1", type=int, default=2)
    parser.add_argument("--m2", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--implementations", default="log,scaling",
                        help="hmmlearn implementations to time, comma-separated")
    parser.add_argument("--write-data", metavar="DIR")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return
    if args.write_data:
        os.makedirs(args.write_data, exist_ok=True)
        for case in CASES:
            data = make_case(case, args.n_sequences, args.length, args.states, args.d,
                             args.symbols, args.seed)
            with open(os.path.join(args.write_data, f"{case}.json"), "w") as f:
                json.dump(data, f)
        print(f"wrote {', '.join(CASES)} to {args.write_data}", file=sys.stderr)
        return
    for threads in [int(t) for t in args.threads.split(",")]:
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        forwarded = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in (
            "n_sequences", "length", "states", "d", "symbols", "seed", "m1", "m2", "repeats",
            "implementations")]
        subprocess.run([sys.executable, __file__, *forwarded, f"--child={threads}"],
                       env=env, check=True)


if __name__ == "__main__":
    main()
