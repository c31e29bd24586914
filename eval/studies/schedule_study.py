"""How the step schedule shapes the ideal rate: the chain's own KL for several schedules.

    python eval/studies/schedule_study.py [--fmnist DIR] [--limit 10] [--specs all,quad20,...,geo9,@FILE]
    python eval/studies/schedule_study.py --model photo [--crops 005.png,025.png] [--records OUT.json]

On the first test images (model fmnist; with ``--model photo``, 256x256 crops of TRAINING photos,
the crops `eval/studies/tuq_sweep.py` codes, so that the held-out crops play no part in a choice), each schedule's chain is run with exact posterior samples
(the ideal estimate) and charged KL(q || p_theta) per step. Printed per schedule: coded steps, the
bits/dim needed to reach 25, 30, 40 and 50 dB and at full rate, and the same with a model of
channel-simulation cost, C + log2(C + 1) bits for each chunk of C <= 10 bits of KL (the per-chunk
price of ordered random coding): fewer, larger steps raise the chain's KL; more, smaller steps pay
more per-chunk overhead. `all` (T = 1000) is the paper's reference.

A second table gives BD-rates (20-50 dB) against the ideal T = 1000 curve: of each schedule's ideal
KL, of the same with the channel-simulation price, and of that plus a fixed --header-bytes per file
(fmnist's one-layer header is 6 bytes, and the range coder's end costs about one more). The priced
columns are what a coder that pays exactly C + log2(C + 1) per chunk would reach: a model of the
real rcc files' cost, to set against their measured stages from `eval rd` (chain_kl, symbols, file).
"""
from __future__ import annotations

import argparse
import json
from collections import namedtuple
import math
from pathlib import Path

import numpy as np
import torch

from diffcodec.coding.progressive import estimate_image
from diffcodec.core.schedules import read_step_list
from diffcodec.evaluation.metrics import bd_rate
from diffcodec.io.datasets import DataConfig, load_split
from diffcodec.training.store import load_model

PSNRS = (25.0, 30.0, 40.0, 50.0)
GRID = np.arange(20.0, 50.01, 1.0)   # dB: where the mean curves for BD-rates are sampled


def channel_cost(kl: float, chunk: float = 10.0) -> float:
    """Bits of ordered random coding for a step of ``kl`` bits: C + log2(C + 1) per chunk of C bits."""
    n = max(1, math.ceil(kl / chunk))
    return n * (kl / n + math.log2(kl / n + 1))


def rate_to(records, target: float, cost) -> float:
    total = 0.0
    for r in records:
        total += cost(r.kl_bits)
        if r.psnr >= target:
            return total
    return float("nan")


def mean_curve(runs, cost, extra_bits: float, D: int) -> np.ndarray:
    """Bits/dim needed for each PSNR of GRID, averaged over images: each image's cumulative cost
    (plus ``extra_bits``) interpolated linearly between its steps; NaN where an image never gets
    there."""
    out = []
    for r in runs:
        bits = np.cumsum([cost(x.kl_bits) for x in r]) + extra_bits
        psnr = np.maximum.accumulate([x.psnr for x in r])
        out.append(np.where(GRID <= psnr[-1], np.interp(GRID, psnr, bits), np.nan) / D)
    return np.mean(out, axis=0)


def bd_vs(ref: np.ndarray, curve: np.ndarray) -> float:
    ok = np.isfinite(ref) & np.isfinite(curve)
    return bd_rate(ref[ok], GRID[ok], curve[ok], GRID[ok], (20.0, 50.0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=10)
    ap.add_argument("--specs", default="all,quad20,quad50,quad100,geo4,geo6,geo9,geo13,geo9c20,geo12c20")
    ap.add_argument("--header-bytes", type=float, default=7.0)
    ap.add_argument("--model", default="fmnist", choices=("fmnist", "photo"))
    ap.add_argument("--photos", default="../shared/data/photos")
    ap.add_argument("--crops", default="005.png,025.png", help="photo names (--model photo)")
    ap.add_argument("--records", default=None, help="write every step's KL and PSNR per spec (JSON)")
    ap.add_argument("--reuse", default=None,
                    help="a --records file of an earlier run on the same images: its specs are read, not re-run")
    args = ap.parse_args()
    loaded = load_model(args.model)
    if args.model == "photo":
        from tuq_sweep import load_crops
        imgs = list(load_crops(loaded, args.photos, args.crops.split(",")))
    else:
        torch.set_num_threads(1)
        imgs = load_split(DataConfig(path=args.fmnist), "test")[:args.limit]
    D = imgs[0].size
    saved = json.loads(Path(args.reuse).read_text())["runs"] if args.reuse else {}
    Rec = namedtuple("Rec", "t kl_bits psnr")
    head = " ".join(f"{f'@{p:g}dB':>7}" for p in PSNRS)
    print(f"{len(imgs)} images of {D} values ({args.model}); bits/dim: ideal KL | with the per-chunk channel-simulation cost")
    print(f"{'spec':8s} {'steps':>5}  {head} {'full':>7} | {head} {'full':>7}")
    curves = {}
    for name in args.specs.split(","):
        # "@FILE": a step list as `diffcodec fit-steps` writes it, shown under the file's name
        spec = read_step_list(name[1:]) if name.startswith("@") else name
        name = Path(name[1:]).stem if name.startswith("@") else name
        if name not in saved:
            saved[name] = [[(x.t, x.kl_bits, x.psnr) for x in estimate_image(loaded, img, spec).records]
                           for img in imgs]
        runs = [[Rec(*x) for x in r] for r in saved[name]]
        if args.records:
            Path(args.records).write_text(json.dumps({"model": args.model, "dims": D, "runs": saved}))
        curves[name] = (mean_curve(runs, lambda v: v, 0.0, D), mean_curve(runs, channel_cost, 0.0, D),
                        mean_curve(runs, channel_cost, 8 * args.header_bytes, D))
        cols = []
        for cost in (lambda v: v, channel_cost):
            vals = [np.mean([rate_to(r, p, cost) for r in runs]) / D for p in PSNRS]
            vals.append(np.mean([sum(cost(x.kl_bits) for x in r) for r in runs]) / D)
            cols.append(" ".join(f"{v:7.3f}" for v in vals))
        print(f"{name:8s} {len(runs[0]):5d}  {cols[0]} | {cols[1]}", flush=True)
    ref = mean_curve([estimate_image(loaded, img, "all").records for img in imgs], lambda v: v, 0.0, D) \
        if "all" not in curves else curves["all"][0]
    print(f"\nBD-rate 20-50 dB against the ideal T = 1000 curve: ideal KL | priced | priced + "
          f"{args.header_bytes:g} bytes per file")
    for spec, (kl, priced, filed) in curves.items():
        print(f"{spec:8s} {bd_vs(ref, kl):+7.1f}% {bd_vs(ref, priced):+7.1f}% {bd_vs(ref, filed):+7.1f}%")


if __name__ == "__main__":
    main()
