"""Truncation bias and index cost of rcc's ordered random coding, simulated on one chunk.

    python eval/studies/rcc_bias.py [--trials 2000] [--log2-k 12] [--chunk-bits 8] [--aim 1]
    python eval/studies/rcc_bias.py --log2-k 13 --chunk-bits 10 [--aim 1.6]   # rcc's K, chunks and aim

For a pure mean shift q = N(m, I) against p = N(0, I) with KL = |m|^2 / 2 nats, the density ratio
of a candidate depends only on its projection on m/|m|, a standard normal; so the selection is
simulated exactly in one dimension. An exact sampler gives a selected projection with mean |m|
and variance 1; with K candidates it is biased towards p. Printed per chunk KL: the ratio of the
selected projection's mean to |m| and its variance (ideal 1.00 / 1.00), the index cost under the
truncated Zipf law of Li & El Gamal for chunks of --chunk-bits (rcc's own exponent,
``rcc.ZIPF_EXPONENT``, is fitted by rcc_index_law.py), and a plug-in estimate of the index entropy
H(J) from a log2-bucket histogram assuming J uniform within each bucket. That assumption spreads
the probability of the small indices in a bucket over the whole bucket, so the estimate is an
upper estimate of H(J), not a lower bound: the best fixed index code could pay somewhat less.
Read H(J) - KL as the approximate per-chunk price of ordered random coding.

``--aim A`` selects as rcc's encoder does, against a target shifted A times as far as q's
(``rcc.AIM``; 1, the default here, is the plain selection of q).
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from diffcodec.coding.entropy import zipf_table


def index_entropy(J: np.ndarray) -> float:
    b = np.floor(np.log2(J + 1)).astype(int)
    p = np.bincount(b) / len(b)
    nz = p > 0
    return float(-(p[nz] * np.log2(p[nz])).sum() + b.mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--log2-k", type=int, default=12)
    ap.add_argument("--chunk-bits", type=int, default=8, help="chunk size the Zipf law is tuned for")
    ap.add_argument("--aim", type=float, default=1.0, help="aim past q as rcc's encoder does")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    K = 1 << args.log2_k
    s = 1.0 + 1.0 / (args.chunk_bits * math.log(2) + math.exp(-1) * math.log(math.e + 1))
    zipf = zipf_table(K, s)
    print(f"K = 2^{args.log2_k}, Zipf law for {args.chunk_bits}-bit chunks, {args.trials} trials"
          + (f", aim {args.aim:g}" if args.aim != 1.0 else ""))
    print(f"{'KL bits':>8} {'mean ratio':>10} {'variance':>9} {'Zipf bits':>10} {'H(J) bits':>10} {'H(J)/KL':>8}")
    for kl_bits in (1, 2, 4, 6, 8, 10, 12):
        if kl_bits > args.log2_k:
            continue
        norm_m = math.sqrt(2 * kl_bits * math.log(2))
        proj, J = np.empty(args.trials), np.empty(args.trials, np.int64)
        for i in range(args.trials):
            z = rng.standard_normal(K)
            j = int(np.argmax(args.aim * norm_m * z - np.log(np.cumsum(rng.exponential(size=K)))))
            proj[i], J[i] = z[j], j
        h = index_entropy(J)
        print(f"{kl_bits:8d} {proj.mean() / norm_m:10.3f} {proj.var():9.3f} "
              f"{np.mean(-np.log2(zipf[J])):10.2f} {h:10.2f} {h / kl_bits:8.2f}")


if __name__ == "__main__":
    main()
