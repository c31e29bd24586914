"""Fit the law rcc codes its chunk indices with, on Fashion-MNIST TRAINING images.

    python eval/rcc_index_law.py [--limit 24] [--offset 0]

Encodes the images at full rate with rcc's defaults (geo9, 10-bit chunks, K = 2^13), records every
chunk's coded index j, and prints the total code length of those indices under a truncated Zipf law
P(j) ~ j^-s over j = 1..K for a grid of exponents s, against the exponent in use
(``rcc.ZIPF_EXPONENT``) and the Li & El Gamal choice 1 + 1 / (C ln 2 + e^-1 ln(e + 1)) for chunks of
C = 10 bits that rcc used before. The test images are not used, so the choice is not fitted to the
evaluation set.
"""
from __future__ import annotations

import argparse
import math

import numpy as np

from diffcodec.coding import rcc
from diffcodec.coding.progressive import encode_image
from diffcodec.io.datasets import images_for_model
from diffcodec.training.store import load_model


def code_bits(j: np.ndarray, s: float, count: int) -> float:
    """Bits to code 1-based indices ``j`` under the truncated Zipf law of exponent s over 1..count."""
    logz = math.log2(float((np.arange(1, count + 1, dtype=np.float64) ** -s).sum()))
    return float((s * np.log2(j) + logz).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--offset", type=int, default=0, help="first training image")
    args = ap.parse_args()
    loaded = load_model("fmnist", "cpu")
    images = images_for_model(loaded.config.data, 1, args.data, "train", args.offset + args.limit)[args.offset:]
    coder = rcc.RCCCoder()
    seen: list[int] = []
    original = rcc.table_op

    def recording(symbols, probs):
        if probs is coder.zipf:
            seen.extend(int(v) for v in np.atleast_1d(symbols))
        return original(symbols, probs)

    rcc.table_op = recording
    try:
        for img in images:
            encode_image(loaded, img, "rcc", None, quality=100, coder=coder)
    finally:
        rcc.table_op = original
    j = np.asarray(seen, np.float64) + 1.0
    old = 1.0 + 1.0 / (coder.chunk_bits * math.log(2) + math.exp(-1) * math.log(math.e + 1))
    base = code_bits(j, old, coder.count)
    print(f"training images {args.offset}..{args.offset + len(images) - 1}: {len(j)} chunks, "
          f"mean log2 j {np.log2(j).mean():.3f}")
    print(f"Li & El Gamal exponent {old:.4f}: {base:.0f} bits ({base / len(j):.3f} per chunk)")
    now = code_bits(j, rcc.ZIPF_EXPONENT, coder.count)
    print(f"in use, {rcc.ZIPF_EXPONENT:.4f}: {now:.0f} bits ({100 * (now / base - 1):+.2f}%)")
    grid = np.round(np.arange(0.80, 1.201, 0.025), 3)
    costs = [code_bits(j, s, coder.count) for s in grid]
    for s, c in zip(grid, costs):
        print(f"  s = {s:.3f}: {100 * (c / base - 1):+6.2f}%")
    print(f"best on this grid: s = {grid[int(np.argmin(costs))]:.3f}")


if __name__ == "__main__":
    main()
