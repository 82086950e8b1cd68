#!/usr/bin/env python
"""Peer benchmark: PyTorch (CPU) training throughput of an MLP VAE, in examples per second.

What it measures
    Wall-clock throughput of full training steps (batch gather, forward, ELBO loss, backward,
    Adam update) for the VAE 784-512-256-32:
      encoder 784 -> 512 -> 256 (ReLU) -> (mu, logvar) in R^32 (two linear heads),
      decoder 32 -> 256 -> 512 (ReLU) -> 784 Bernoulli logits,
      loss = mean over the batch of [sum over pixels of BCE-with-logits + analytic KL(q(z|x) || N(0, I))]
      (the negative ELBO, one reparameterised sample per example), Adam lr 1e-3, float32, batch 128,
    on seeded random binary data. --warmup untimed steps run first, then --steps timed steps;
    examples_per_sec = steps * batch / seconds. Only the throughput is meaningful (the data is noise).

Threads
    torch uses OpenMP; set the thread count with OMP_NUM_THREADS (or --threads, which calls
    torch.set_num_threads). Run with 1 and with 2 threads: on this 2-core machine 2 OpenMP threads
    can be pathologically slow for these small matmuls, so both numbers are worth recording.

Output: one JSON line
    {"impl":"pytorch","version":...,"threads":torch.get_num_threads(),"examples_per_sec":...,...}

Run (from the repository root):
    OMP_NUM_THREADS=1 /work/venv/bin/python benches/peers/torch_vae_bench.py
    OMP_NUM_THREADS=2 /work/venv/bin/python benches/peers/torch_vae_bench.py
    OMP_NUM_THREADS=1 /work/venv/bin/python benches/peers/torch_vae_bench.py --warmup 5 --steps 20   # smoke test
"""
import argparse
import json
import time

import torch
from torch import nn
import torch.nn.functional as F


class VAE(nn.Module):
    def __init__(self, x_dim=784, h1=512, h2=256, z_dim=32):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(x_dim, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU())
        self.mu = nn.Linear(h2, z_dim)
        self.logvar = nn.Linear(h2, z_dim)
        self.dec = nn.Sequential(nn.Linear(z_dim, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU(),
                                 nn.Linear(h1, x_dim))

    def loss(self, x):
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.dec(z)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
        kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        return (rec + kl).mean()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--n-data", type=int, default=10000, help="rows of random binary data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (else OMP_NUM_THREADS)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    data = (torch.rand(args.n_data, 784) < 0.5).float()
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(args.seed + 1)
    perm = torch.randperm(args.n_data, generator=g)
    nb = args.n_data // args.batch

    def step(i):
        j = i % nb
        x = data[perm[j * args.batch:(j + 1) * args.batch]]
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x)
        loss.backward()
        opt.step()
        return loss

    for i in range(args.warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(args.steps):
        loss = step(args.warmup + i)
    secs = time.perf_counter() - t0
    print(json.dumps(dict(
        impl="pytorch", version=torch.__version__, threads=torch.get_num_threads(),
        examples_per_sec=args.steps * args.batch / secs, batch=args.batch, steps=args.steps,
        warmup=args.warmup, seconds=secs, arch="784-512-256-32", final_loss=loss.item())), flush=True)


if __name__ == "__main__":
    main()
