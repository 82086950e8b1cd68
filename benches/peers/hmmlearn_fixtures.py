#!/usr/bin/env python
"""Generates tests/fixtures/hmm_hmmlearn.json: parity fixtures for the project's HMM Baum-Welch.

What it produces
    Two seeded data sets of 5 sequences of different lengths (50-200 steps), each drawn from a known
    HMM: Gaussian observations (3 states, d = 3) and categorical symbols (4 states, V = 5).

    hmmlearn 0.3 is run on them from explicit initial parameters (init_params="", so it draws
    nothing), with every prior switched off so that its M-step is plain maximum likelihood:
        startprob_prior = transmat_prior = emissionprob_prior = 1.0  (Dirichlet 1: no pseudo-counts)
        means_prior = means_weight = 0                               (means = obs / post)
        covars_prior = covars_weight = 0                             (covars = c_n / post)
    implementation="log", n_iter = 25 and tol = -inf, so exactly 25 EM iterations run and whole
    trajectories compare. hmmlearn's min_covar is used only by its own initialisation, which is off.
    The Gaussian data are fitted with each covariance type: diag, full, spherical and tied.

File layout
    {"hmmlearn": version, "numpy": version, "n_iter": 25, "cases": [case, ...]}
    case = {name, emission ("gaussian" | "categorical"), covariance_type (gaussian only),
            n_states, X (rows, gaussian) or symbols (flat, categorical), n_symbols (categorical),
            lengths, startprob_init, transmat_init, means_init, covars_init | emissionprob_init,
            history (total log-likelihood entering each iteration's E-step, hmmlearn's
            monitor_.history), startprob, transmat, means, covars | emissionprob (after the fit),
            score (total log-likelihood of the fitted model), score_sequences (per sequence),
            viterbi_log_prob and viterbi_states (per sequence, of the fitted model),
            predict_proba_first5 (posterior state marginals of the first 5 observations)}
    Covariances are laid out as hmmlearn's `_covars_` except spherical, written as [k]:
    full [k, d, d], diag [k, d], spherical [k], tied [d, d].
    Floats are written with Python's shortest round-trip repr, so data and initial values are exact.

Run (from the repository root):
    /work/venv-peers/bin/python benches/peers/hmmlearn_fixtures.py
    (optional: --out PATH; default tests/fixtures/hmm_hmmlearn.json)
"""
import argparse
import json
import os

import hmmlearn
import numpy as np
from hmmlearn import hmm

N_ITER = 25
LENGTHS = [50, 120, 200, 80, 150]


def to_list(a):
    return np.asarray(a, dtype=float).tolist()


def sample_chain(rng, startprob, transmat, lengths):
    """State paths of the given lengths from a Markov chain."""
    paths = []
    for t_len in lengths:
        z = [rng.choice(len(startprob), p=startprob)]
        for _ in range(t_len - 1):
            z.append(rng.choice(len(startprob), p=transmat[z[-1]]))
        paths.append(np.array(z))
    return paths


def gaussian_data(rng):
    k, d = 3, 3
    startprob = np.array([0.6, 0.3, 0.1])
    transmat = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    means = np.array([[0.0, 0.0, 0.0], [3.0, -1.0, 2.0], [-2.0, 3.0, 1.0]])
    chols = []
    for _ in range(k):
        a = rng.standard_normal((d, d))
        chols.append(np.linalg.cholesky(a @ a.T / d + 0.3 * np.eye(d)))
    z = np.concatenate(sample_chain(rng, startprob, transmat, LENGTHS))
    x = means[z] + np.einsum("nij,nj->ni", np.array(chols)[z], rng.standard_normal((len(z), d)))
    return x


def categorical_data(rng):
    k, v = 4, 5
    startprob = np.array([0.4, 0.3, 0.2, 0.1])
    transmat = 0.7 * np.eye(k) + 0.3 * rng.dirichlet(np.ones(k), size=k)
    emissionprob = rng.dirichlet(np.full(v, 0.7), size=k)
    z = np.concatenate(sample_chain(rng, startprob, transmat, LENGTHS))
    symbols = np.array([rng.choice(v, p=emissionprob[s]) for s in z])
    return symbols, v


def chain_init(rng, k):
    startprob = rng.dirichlet(np.ones(k))
    transmat = rng.dirichlet(np.ones(k), size=k) + 2.0 * np.eye(k)
    transmat /= transmat.sum(axis=1, keepdims=True)
    return startprob, transmat


def covars_init(rng, x, k, cov):
    d = x.shape[1]
    var = x.var(axis=0)
    if cov == "diag":
        return var * rng.uniform(0.5, 1.5, size=(k, d))
    if cov == "spherical":
        return var.mean() * rng.uniform(0.5, 1.5, size=k)
    full = []
    for _ in range(k if cov == "full" else 1):
        a = rng.standard_normal((d, d))
        full.append(np.cov(x.T) + a @ a.T / d)
    return np.array(full) if cov == "full" else full[0]


def common(model):
    """Switches off every prior: hmmlearn's M-step is then plain maximum likelihood."""
    model.startprob_prior = 1.0
    model.transmat_prior = 1.0
    return model


def outcome(model, x, lengths):
    bounds = np.cumsum([0] + list(lengths))
    seqs = [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    viterbi = [model.decode(s, algorithm="viterbi") for s in seqs]
    return {
        "history": list(map(float, model.monitor_.history)),
        "startprob": to_list(model.startprob_),
        "transmat": to_list(model.transmat_),
        "score": float(model.score(x, lengths)),
        "score_sequences": [float(model.score(s)) for s in seqs],
        "viterbi_log_prob": [float(lp) for lp, _ in viterbi],
        "viterbi_states": [list(map(int, path)) for _, path in viterbi],
        "predict_proba_first5": to_list(model.predict_proba(x, lengths)[:5]),
    }


def gaussian_case(rng, x, cov):
    k = 3
    startprob, transmat = chain_init(rng, k)
    means = x[rng.choice(len(x), size=k, replace=False)] + 0.1 * rng.standard_normal((k, x.shape[1]))
    covars = covars_init(rng, x, k, cov)
    model = common(hmm.GaussianHMM(
        n_components=k, covariance_type=cov, n_iter=N_ITER, tol=-np.inf,
        init_params="", params="stmc", implementation="log",
        means_prior=0, means_weight=0, covars_prior=0, covars_weight=0))
    model.startprob_, model.transmat_, model.means_, model.covars_ = startprob, transmat, means, covars
    model.fit(x, LENGTHS)
    fitted = model._covars_
    if cov == "spherical":
        fitted = fitted[:, 0] if fitted.ndim == 2 else fitted
    return {
        "name": f"gaussian_{cov}", "emission": "gaussian", "covariance_type": cov,
        "n_states": k, "X": to_list(x), "lengths": LENGTHS,
        "startprob_init": to_list(startprob), "transmat_init": to_list(transmat),
        "means_init": to_list(means), "covars_init": to_list(covars),
        "means": to_list(model.means_), "covars": to_list(fitted),
        **outcome(model, x, LENGTHS),
    }


def categorical_case(rng, symbols, v):
    k = 4
    startprob, transmat = chain_init(rng, k)
    emissionprob = rng.dirichlet(np.ones(v), size=k)
    model = common(hmm.CategoricalHMM(
        n_components=k, n_features=v, n_iter=N_ITER, tol=-np.inf,
        init_params="", params="ste", implementation="log", emissionprob_prior=1.0))
    model.startprob_, model.transmat_, model.emissionprob_ = startprob, transmat, emissionprob
    x = symbols.reshape(-1, 1)
    model.fit(x, LENGTHS)
    return {
        "name": "categorical", "emission": "categorical", "n_states": k, "n_symbols": v,
        "symbols": list(map(int, symbols)), "lengths": LENGTHS,
        "startprob_init": to_list(startprob), "transmat_init": to_list(transmat),
        "emissionprob_init": to_list(emissionprob),
        "emissionprob": to_list(model.emissionprob_),
        **outcome(model, x, LENGTHS),
    }


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "hmm_hmmlearn.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(20240601)
    x = gaussian_data(rng)
    cases = [gaussian_case(rng, x, cov) for cov in ("diag", "full", "spherical", "tied")]
    symbols, v = categorical_data(rng)
    cases.append(categorical_case(rng, symbols, v))
    out = {"hmmlearn": hmmlearn.__version__, "numpy": np.__version__, "n_iter": N_ITER, "cases": cases}
    with open(args.out, "w") as f:
        json.dump(out, f)
        f.write("\n")
    for c in cases:
        h = c["history"]
        print(f"{c['name']}: log-likelihood {h[0]:.4f} -> {h[-1]:.4f} in {len(h)} iterations")


if __name__ == "__main__":
    main()
