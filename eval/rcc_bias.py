"""Truncation bias of rcc's ordered random coding, simulated on one chunk.

    python eval/rcc_bias.py [--trials 400]

For a pure mean shift q = N(m, I) against p = N(0, I) with KL = |m|^2 / 2 nats, an exact sampler
gives a sample whose projection on m/|m| has mean |m| and variance 1. With K candidates the
selected sample is biased towards p; this prints the ratio of the selected projection's mean to
|m| and its variance (ideal 1.00 / 1.00), and the Zipf-coded index length against the KL, for the
chunk sizes rcc uses (K = 2^12).
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from diffcodec.coding.entropy import zipf_table


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--dims", type=int, default=16)
    ap.add_argument("--log2-k", type=int, default=12)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    K = 1 << args.log2_k
    print(f"K = 2^{args.log2_k}, {args.dims} dims per chunk, {args.trials} trials")
    print(f"{'KL bits':>8} {'mean ratio':>10} {'variance':>9} {'index bits':>10}")
    for kl_bits in (2, 4, 6, 8, 10):
        norm_m = math.sqrt(2 * kl_bits * math.log(2))
        zipf = zipf_table(K, 1.0 + 1.0 / (8 * math.log(2) + math.exp(-1) * math.log(math.e + 1)))
        proj, cost = [], []
        for _ in range(args.trials):
            m = rng.normal(size=args.dims)
            m *= norm_m / np.linalg.norm(m)
            Z = rng.normal(size=(K, args.dims))
            log_w = Z @ m - 0.5 * m @ m
            j = int(np.argmax(log_w - np.log(np.cumsum(rng.exponential(size=K)))))
            proj.append(Z[j] @ m / norm_m)
            cost.append(-math.log2(zipf[j]))
        proj = np.array(proj)
        print(f"{kl_bits:8d} {proj.mean() / norm_m:10.3f} {proj.var():9.3f} {np.mean(cost):10.2f}")


if __name__ == "__main__":
    main()
