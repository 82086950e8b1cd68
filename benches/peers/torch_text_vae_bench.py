#!/usr/bin/env python
"""Peer benchmark: PyTorch training throughput of a PTB-shaped LSTM sentence VAE, in tokens per second.

What it measures
    Wall-clock throughput of full training steps (forward, negative-ELBO loss, backward, Adam update)
    for the sentence VAE of Bowman et al. (2016) in the configuration of He et al. (2019),
    "vae-lagging-encoder" (its PTB/Yahoo text model):
      vocabulary V = --vocab (10,000) with specials <pad>=0, <unk>=1, <bos>=2, <eos>=3;
      encoder: Embedding(V, 256) -> one-layer LSTM(256) over the sentence (words + <eos>, padded,
        run through pack_padded_sequence so the final hidden state is the one at each row's real
        length) -> linear heads to mu and logvar of z in R^32;
      z = mu + exp(logvar / 2) * eps (one reparameterised sample per sentence);
      decoder: c0 = Linear(32, 256)(z), h0 = tanh(c0) (as vae-lagging-encoder's LSTMDecoder);
        the input at step t is [Embedding(V, 256)(previous word) ; z] with the previous words
        <bos> + words; dropout 0.5 on the embeddings and on the LSTM outputs (training mode);
        one-layer LSTM(256) -> Linear(256, V) logits;
      loss = mean over sentences of [cross-entropy summed over the real target tokens
        (words + <eos>; padding masked) + analytic KL(q(z|x) || N(0, I))];
      Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8), float32.
    Parameters are initialised as in vae-lagging-encoder (uniform(-0.01, 0.01), embeddings
    uniform(-0.1, 0.1)); this does not affect the speed.
    With --cell gru both recurrent layers are GRUs and the decoder's initial state is
    h0 = tanh(Linear(32, 256)(z)).

Data
    By default seeded random sentences: lengths uniform in [--min-len, --max-len] words (12..32,
    mean 22; or all --fixed-length words), word ids uniform over the V - 4 non-special ids.
    --n-batches * --batch sentences are generated, sorted by length and cut into batches (bucketing:
    rows in a batch have similar lengths), and the batches are visited in a seeded random order,
    cycling. With --corpus FILE (one whitespace-tokenised sentence per line) the vocabulary is the
    V - 4 most frequent words plus the specials (other words -> <unk>), and all non-empty lines
    (truncated to --max-len words if --truncate) are bucketed the same way.

Timing
    --warmup untimed steps run first, then --steps timed steps. Tokens counted are the target
    tokens actually processed (words + <eos> of every row, padding excluded):
      tokens_per_second = timed tokens / seconds, sentences_per_second = steps * batch / seconds.
    On cuda the device is synchronised before each clock reading. Only the throughput is
    meaningful for random data (the loss is that of noise).

Threads
    torch uses OpenMP; set the thread count with OMP_NUM_THREADS and --threads (torch.set_num_threads).
    On a 2-core machine 2 OpenMP threads can be pathologically slow, so record both.

Output: one JSON line
    {"peer":"pytorch","model":"text-vae","device":...,"threads":...,"batch":...,"vocab":...,
     "tokens_per_second":...,"sentences_per_second":...,"seconds_per_step":...,"torch":...,...}

Run (from the repository root; the peer environment lives outside the repository):
    python3 -m venv /work/venv-peers && /work/venv-peers/bin/pip install torch numpy
    OMP_NUM_THREADS=1 /work/venv-peers/bin/python benches/peers/torch_text_vae_bench.py --threads 1
    OMP_NUM_THREADS=2 /work/venv-peers/bin/python benches/peers/torch_text_vae_bench.py --threads 2
    OMP_NUM_THREADS=1 /work/venv-peers/bin/python benches/peers/torch_text_vae_bench.py --threads 1 --batch 256
    /work/venv-peers/bin/python benches/peers/torch_text_vae_bench.py --device cuda
    OMP_NUM_THREADS=1 /work/venv-peers/bin/python benches/peers/torch_text_vae_bench.py --warmup 2 --steps 5   # smoke test
"""
import argparse
import collections
import json
import time

import torch
from torch import nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence

PAD, UNK, BOS, EOS = 0, 1, 2, 3
N_SPECIAL = 4


class TextVAE(nn.Module):
    def __init__(self, vocab, embed, hidden, latent, cell="lstm", dropout=0.5):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.cell = cell
        self.enc_embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.enc_rnn = rnn(embed, hidden, num_layers=1, batch_first=True)
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.dec_embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.z_to_c = nn.Linear(latent, hidden)
        self.dec_rnn = rnn(embed + latent, hidden, num_layers=1, batch_first=True)
        self.drop_in = nn.Dropout(dropout)
        self.drop_out = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vocab)
        for p in self.parameters():  # vae-lagging-encoder's uniform initialisation
            nn.init.uniform_(p, -0.01, 0.01)
        nn.init.uniform_(self.enc_embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.dec_embed.weight, -0.1, 0.1)

    def encode(self, src, lengths_cpu):
        packed = pack_padded_sequence(self.enc_embed(src), lengths_cpu, batch_first=True,
                                      enforce_sorted=False)
        _, state = self.enc_rnn(packed)
        h = state[0] if self.cell == "lstm" else state  # (1, B, H), at each row's real length
        h = h[-1]
        return self.mu(h), self.logvar(h)

    def decode(self, dec_in, z):
        B, T = dec_in.shape
        emb = self.drop_in(self.dec_embed(dec_in))
        emb = torch.cat([emb, z.unsqueeze(1).expand(B, T, z.size(1))], dim=2)
        c0 = self.z_to_c(z).unsqueeze(0)
        h0 = torch.tanh(c0)
        state = (h0, c0) if self.cell == "lstm" else h0
        out, _ = self.dec_rnn(emb, state)
        return self.out(self.drop_out(out))  # (B, T, V)

    def loss(self, src, lengths_cpu, dec_in, tgt):
        mu, logvar = self.encode(src, lengths_cpu)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.decode(dec_in, z)
        rec = F.cross_entropy(logits.reshape(-1, logits.size(2)), tgt.reshape(-1),
                              ignore_index=PAD, reduction="sum")
        kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum()
        return (rec + kl) / src.size(0)


def random_sentences(n, args, g):
    if args.fixed_length:
        lens = torch.full((n,), args.fixed_length, dtype=torch.long)
    else:
        lens = torch.randint(args.min_len, args.max_len + 1, (n,), generator=g)
    return [torch.randint(N_SPECIAL, args.vocab, (int(L),), generator=g).tolist() for L in lens]


def corpus_sentences(path, args):
    with open(path, encoding="utf-8") as f:
        lines = [ln.split() for ln in f]
    lines = [ws[:args.max_len] if args.truncate else ws for ws in lines if ws]
    counts = collections.Counter(w for ws in lines for w in ws)
    ids = {w: N_SPECIAL + i for i, (w, _) in enumerate(counts.most_common(args.vocab - N_SPECIAL))}
    return [[ids.get(w, UNK) for w in ws] for ws in lines]


def make_batches(sents, batch, device, g):
    """Sort by length, cut into full batches, return them (as tensors on device) in a seeded order."""
    order = sorted(range(len(sents)), key=lambda i: len(sents[i]))
    batches = []
    for b in range(len(order) // batch):
        rows = [sents[i] for i in order[b * batch:(b + 1) * batch]]
        lens = torch.tensor([len(r) + 1 for r in rows], dtype=torch.long)  # words + <eos>
        T = int(lens.max())
        src = torch.full((batch, T), PAD, dtype=torch.long)
        dec_in = torch.full((batch, T), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            w = torch.tensor(r, dtype=torch.long)
            src[i, :len(r)] = w
            src[i, len(r)] = EOS
            dec_in[i, 0] = BOS
            dec_in[i, 1:len(r) + 1] = w
        tgt = src  # targets = words + <eos>, padded with <pad> (ignored by the loss)
        batches.append(dict(src=src.to(device), lens=lens, dec_in=dec_in.to(device),
                            tgt=tgt.to(device), tokens=int(lens.sum())))
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in perm]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--embed", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--min-len", type=int, default=12, help="min words per random sentence")
    ap.add_argument("--max-len", type=int, default=32, help="max words per random sentence")
    ap.add_argument("--fixed-length", type=int, default=None, help="all random sentences this many words")
    ap.add_argument("--n-batches", type=int, default=50, help="random data: batches generated (cycled)")
    ap.add_argument("--corpus", default=None, help="text file, one sentence per line")
    ap.add_argument("--truncate", action="store_true", help="corpus: cut sentences to --max-len words")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (else OMP_NUM_THREADS)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    if args.corpus:
        sents = corpus_sentences(args.corpus, args)
    else:
        sents = random_sentences(args.n_batches * args.batch, args, g)
    batches = make_batches(sents, args.batch, device, g)
    if not batches:
        raise SystemExit("fewer sentences than one batch")

    model = TextVAE(args.vocab, args.embed, args.hidden, args.latent, args.cell, args.dropout).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    def step(i):
        b = batches[i % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = model.loss(b["src"], b["lens"], b["dec_in"], b["tgt"])
        loss.backward()
        opt.step()
        return loss, b["tokens"]

    for i in range(args.warmup):
        step(i)
    sync()
    t0 = time.perf_counter()
    tokens = 0
    for i in range(args.steps):
        loss, ntok = step(args.warmup + i)
        tokens += ntok
    sync()
    secs = time.perf_counter() - t0
    print(json.dumps(dict(
        peer="pytorch", model="text-vae", device=args.device, threads=torch.get_num_threads(),
        batch=args.batch, vocab=args.vocab,
        tokens_per_second=tokens / secs, sentences_per_second=args.steps * args.batch / secs,
        seconds_per_step=secs / args.steps, torch=torch.__version__,
        cell=args.cell, embed=args.embed, hidden=args.hidden, latent=args.latent,
        steps=args.steps, warmup=args.warmup, seconds=secs, tokens=tokens,
        mean_tokens_per_sentence=tokens / (args.steps * args.batch),
        data=args.corpus or ("random fixed %d" % args.fixed_length if args.fixed_length
                             else "random %d..%d" % (args.min_len, args.max_len)),
        final_loss=loss.item())), flush=True)


if __name__ == "__main__":
    main()
