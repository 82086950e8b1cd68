#!/usr/bin/env python
"""Independent PyTorch reference: a Bernoulli VAE on the UCI 8x8 handwritten digits.

What it measures
    Trains a VAE 64-256-256-16 and reports, on the test split, the ELBO, the KL term, the number of
    active latent units and the importance-weighted (IW-K, K=500) negative log-likelihood bound,
    plus the training wall time. It is the reference that the project's own VAE on the same data and
    settings is compared against.

Data
    /work/shared/data/digits/digits.csv.gz (override with --data): 1,797 rows, no header, 64 pixel
    intensities 0..16 then the label. Pixels are binarised as x = (pixel > 8). The LAST 360 rows are
    the test split, the first 1,437 the training split. Labels are unused.

Model and training
    encoder 64 -> 256 -> 256 (ReLU) -> linear heads mu, logvar in R^16;
    decoder 16 -> 256 -> 256 (ReLU) -> 64 Bernoulli logits; prior N(0, I); PyTorch's default
    nn.Linear initialisation. Loss per batch = mean over the batch of the negative ELBO
    [sum over pixels of BCE-with-logits (one reparameterised sample) + analytic KL].
    Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8); each epoch visits the training rows in a fresh
    seeded random order, in batches of --batch (the last, smaller batch is kept). float32 training.

Evaluation (test split, float64, fixed evaluation seed)
    For each test x, K=--iw-k samples z_i ~ q(z|x) and log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x).
      elbo      = mean over x of [ mean_i log p(x|z_i) - KL(q(z|x) || p(z)) ]   (analytic KL; nats/example)
      kl        = mean over x of KL(q(z|x) || p(z))
      nll_iw    = - mean over x of [ logsumexp_i log w_i - log K ]                  (nats/example)
      active_units = #{ j : Var over test x of E_q[z_j | x] >= 0.01 }   (population variance, ddof=0)
    The same quantities on the training split are reported under "train_*" (ELBO and KL only).

Output: one JSON object on stdout.

Run (from the repository root):
    /work/venv/bin/python benches/peers/torch_vae_digits.py                        # batch 64, 500 epochs, seed 0
    /work/venv/bin/python benches/peers/torch_vae_digits.py --seed 1 --batch 128 --epochs 300
    /work/venv/bin/python benches/peers/torch_vae_digits.py --epochs 5             # smoke test
Threads: uses torch's default; pin with OMP_NUM_THREADS=1 (recommended on a 2-core machine) or --threads.
"""
import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

N_TEST = 360


class VAE(nn.Module):
    def __init__(self, x_dim=64, h=256, z_dim=16):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.mu = nn.Linear(h, z_dim)
        self.logvar = nn.Linear(h, z_dim)
        self.dec = nn.Sequential(nn.Linear(z_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                                 nn.Linear(h, x_dim))

    def encode(self, x):
        h = self.enc(x)
        return self.mu(h), self.logvar(h)

    def loss(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(dim=1)
        kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        return (rec + kl).mean()


def load(path):
    raw = np.loadtxt(path, delimiter=",")
    assert raw.shape == (1797, 65), raw.shape
    x = (raw[:, :64] > 8).astype(np.float32)
    return x[:-N_TEST], x[-N_TEST:]


@torch.no_grad()
def evaluate(model, x, k, gen, chunk=60):
    """Returns elbo, kl, nll_iw (nats/example) and the posterior means, in float64."""
    elbos, kls, iws, mus = [], [], [], []
    log2pi = math.log(2.0 * math.pi)
    for s in range(0, x.shape[0], chunk):
        xb = x[s:s + chunk]
        mu, logvar = model.encode(xb)                                   # (b, z)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((k,) + mu.shape, generator=gen, dtype=mu.dtype)
        z = mu + std * eps                                              # (k, b, z)
        logits = model.dec(z)                                           # (k, b, 64)
        log_px = -F.binary_cross_entropy_with_logits(logits, xb.expand_as(logits),
                                                     reduction="none").sum(-1)          # (k, b)
        log_pz = -0.5 * (z.pow(2) + log2pi).sum(-1)
        log_qz = -0.5 * (eps.pow(2) + log2pi + logvar).sum(-1)
        kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(-1)  # (b,)
        elbos.append(log_px.mean(0) - kl)
        kls.append(kl)
        iws.append(torch.logsumexp(log_px + log_pz - log_qz, dim=0) - math.log(k))
        mus.append(mu)
    mu = torch.cat(mus)
    return (torch.cat(elbos).mean().item(), torch.cat(kls).mean().item(),
            -torch.cat(iws).mean().item(), mu)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/work/shared/data/digits/digits.csv.gz")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--iw-k", type=int, default=500)
    ap.add_argument("--au-threshold", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    xtr_np, xte_np = load(args.data)
    xtr, xte = torch.from_numpy(xtr_np), torch.from_numpy(xte_np)
    torch.manual_seed(args.seed)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    order_gen = torch.Generator().manual_seed(args.seed + 1000)
    n = xtr.shape[0]

    t0 = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(n, generator=order_gen)
        tot = 0.0
        for s in range(0, n, args.batch):
            xb = xtr[perm[s:s + args.batch]]
            opt.zero_grad(set_to_none=True)
            loss = model.loss(xb)
            loss.backward()
            opt.step()
            tot += loss.item() * xb.shape[0]
    train_secs = time.perf_counter() - t0

    model = model.double().eval()
    gen = torch.Generator().manual_seed(12345)
    elbo, kl, nll, mu = evaluate(model, xte.double(), args.iw_k, gen)
    var = mu.var(dim=0, unbiased=False)
    active = int((var >= args.au_threshold).sum())
    tr_elbo, tr_kl, _, _ = evaluate(model, xtr.double(), 1, torch.Generator().manual_seed(54321))
    print(json.dumps(dict(
        impl="pytorch", version=torch.__version__, threads=torch.get_num_threads(),
        arch="64-256-256-16", batch=args.batch, epochs=args.epochs, seed=args.seed, lr=args.lr,
        n_train=int(n), n_test=int(xte.shape[0]),
        test_elbo=elbo, test_kl=kl, active_units=active, test_nll_iw=nll, iw_k=args.iw_k,
        train_elbo_1sample=tr_elbo, train_kl=tr_kl, last_epoch_train_loss=tot / n,
        train_seconds=train_secs, posterior_mean_var=[round(v, 6) for v in var.tolist()])), flush=True)


if __name__ == "__main__":
    main()
