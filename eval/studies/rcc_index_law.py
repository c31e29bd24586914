"""Fit the law rcc codes its chunk indices with, on Fashion-MNIST TRAINING images.

    python eval/studies/rcc_index_law.py [--limit 24] [--offset 0]

Encodes the images at full rate with rcc's defaults (geo9, 10-bit chunks, K = 2^13), records every
chunk's coded index j, and prints the total code length of those indices under a truncated Zipf law
P(j) ~ j^-s over j = 1..K for a grid of exponents s, against the exponent in use
(``rcc.ZIPF_EXPONENT``) and the Li & El Gamal choice 1 + 1 / (C ln 2 + e^-1 ln(e + 1)) for chunks of
C = 10 bits, the reference law for ordered random coding. The test images are not used, so the choice is not fitted to the
evaluation set.

``--classes`` also asks whether a law that depends on what the decoder knows would do better: one
histogram over half-octave bins of j (a Zipf law within each bin) per class of chunks, the classes
being "the step has one chunk" and the step's position in the chain (five buckets of ten steps).
The laws are fitted on the first half of the images and priced on the second half.
"""
from __future__ import annotations

import argparse
import math
from collections import Counter

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
    ap.add_argument("--classes", action="store_true", help="also price per-class binned laws")
    args = ap.parse_args()
    loaded = load_model("fmnist", "cpu")
    images = images_for_model(loaded.config.data, 1, args.data, "train", args.offset + args.limit)[args.offset:]
    coder = rcc.RCCCoder()
    seen: list[tuple] = []   # (index, image, chunks in the step, chain position)
    first_kl: list[list[float]] = [[], []]   # the KL of each chain's first and second steps, bits
    original = coder.encode
    where = {"image": 0, "position": 0}

    def recording(ctx, mu_q):
        ops, x, kl = original(ctx, mu_q)
        if where["position"] < 2:
            first_kl[where["position"]].append(kl)
        for op in ops:
            if op[0] == "table" and op[2] is coder.zipf:
                seen.extend((int(v), where["image"], len(op[1]), where["position"]) for v in op[1])
        where["position"] += 1
        return ops, x, kl

    coder.encode = recording
    for k, img in enumerate(images):
        where.update(image=k, position=0)
        encode_image(loaded, img, "rcc", None, quality=100, coder=coder)
    rows = np.asarray(seen, np.float64)
    j = rows[:, 0] + 1.0
    old = 1.0 + 1.0 / (coder.chunk_bits * math.log(2) + math.exp(-1) * math.log(math.e + 1))
    base = code_bits(j, old, coder.count)
    print(f"rcc's encoder aiming at {rcc.AIM:g} times q's shift (rcc.AIM)")
    print(f"training images {args.offset}..{args.offset + len(images) - 1}: {len(j)} chunks, "
          f"mean log2 j {np.log2(j).mean():.3f}")
    print(f"Li & El Gamal exponent {old:.4f}: {base:.0f} bits ({base / len(j):.3f} per chunk)")
    now = code_bits(j, rcc.ZIPF_EXPONENT, coder.count)
    print(f"in use, {rcc.ZIPF_EXPONENT:.4f}: {now:.0f} bits ({100 * (now / base - 1):+.2f}%)")
    grid = np.round(np.arange(0.60, 1.201, 0.025), 3)
    costs = [code_bits(j, s, coder.count) for s in grid]
    for s, c in zip(grid, costs):
        print(f"  s = {s:.3f}: {100 * (c / base - 1):+6.2f}%")
    print(f"best on this grid: s = {grid[int(np.argmin(costs))]:.3f}")
    if args.classes:
        price_classes(rows, len(images), coder.count)
    for k, kls in enumerate(first_kl):
        need = Counter(math.ceil(v / coder.chunk_bits) for v in kls)
        print(f"{('first', 'second')[k]} step's KL: median {np.median(kls):.1f} bits; chunks of at most "
              f"{coder.chunk_bits} bits it needs: {dict(sorted(need.items()))} "
              f"(coded against rcc.INITIAL_COUNTS[{k}] = {rcc.INITIAL_COUNTS[k]})")


def price_classes(rows: np.ndarray, images: int, count: int) -> None:
    """Per-class binned laws fitted on the first half of the images, priced on the second half."""
    j = rows[:, 0] + 1.0
    fit, test = rows[:, 1] < images // 2, rows[:, 1] >= images // 2
    bins = np.floor(2 * np.log2(np.arange(1, count + 1)) + 1e-9).astype(int)
    within = 1.0 / np.arange(1, count + 1)
    mass = np.bincount(bins, weights=within)                        # Zipf(1) mass of each bin
    b = bins[(j - 1).astype(int)]
    inner = -np.log2(within[(j - 1).astype(int)] / mass[b])       # bits for j within its bin
    zipf = code_bits(j[test], rcc.ZIPF_EXPONENT, count)
    print(f"held-out half ({int(test.sum())} chunks): Zipf {rcc.ZIPF_EXPONENT}: {zipf / test.sum():.3f} bits per chunk")
    classes = {"one law": np.zeros(len(j), int), "one chunk or more": (rows[:, 2] == 1).astype(int),
               "chain position": np.minimum(rows[:, 3] // 10, 4).astype(int),
               "both": (rows[:, 2] == 1) * 10 + np.minimum(rows[:, 3] // 10, 4).astype(int)}
    for name, cls in classes.items():
        total = 0.0
        for c in np.unique(cls[test]):
            h = np.bincount(b[fit & (cls == c)], minlength=len(mass)) + 0.5
            sel = test & (cls == c)
            total += float((-np.log2(h[b[sel]] / h.sum()) + inner[sel]).sum())
        print(f"  binned law per {name}: {total / test.sum():.3f} bits per chunk ({100 * (total / zipf - 1):+.2f}%)")


if __name__ == "__main__":
    main()
