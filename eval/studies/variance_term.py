"""How much rcc's encoder leaves out by taking q's variance term at its mean over each segment.

A chunk's candidates are scored by log w(z) = sum_d c1_d z_d + c2_d z_d^2 (+ a constant); above
``rcc.EXACT_MAX_DIMS`` values the encoder takes c2 at its mean over each segment, so the squared
term is that mean times the row's squared norm (``rcc._scores``). For every step of one encode
this prints, as medians over the step's segments, the standard deviation across candidates of
the linear term (sqrt(sum c1^2)), of the whole squared term (sqrt(2 sum c2^2)) and of the part
the mean leaves out (sqrt(2 sum (c2 - mean)^2)), in nats, and c2's mean and spread. Then it selects every step's
indices again with the per-dimension term everywhere (the rule before) and with the encoder's
rule, from the same arrival times, and prints the share of picks that agree.

    python eval/studies/variance_term.py [--size 256x256] [--quality 100]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_codec import ROOT, make_image  # noqa: E402

from diffcodec.coding import rcc  # noqa: E402
from diffcodec.coding.progressive import encode_image  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default=str(ROOT / "eval/data/val768/047.png"))
    ap.add_argument("--size", default="256x256", help="WxH")
    ap.add_argument("--quality", type=int, default=100)
    args = ap.parse_args()
    loaded = load_model("photo")
    w, h = map(int, args.size.split("x"))
    steps = []
    select = rcc.RCCCoder._select

    def capture(self, ctx, layout, n, c2, c1):
        steps.append((self, ctx, layout, n, c2.copy(), c1.copy()))
        return select(self, ctx, layout, n, c2, c1)

    rcc.RCCCoder._select = capture
    encode_image(loaded, make_image(args.photo, w, h), quality=args.quality)
    rcc.RCCCoder._select = select
    print(f"{Path(args.photo).name}, centre {args.size}, quality {args.quality}: {len(steps)} coded steps")
    print("step  chunks  length | sd linear  sd squared  sd left out (nats) | c2 mean  c2 sd")
    for _, ctx, layout, n, c2, c1 in steps:
        lin = np.concatenate([np.sqrt((c1[s.dims] ** 2).sum(1)) for s in layout])
        sq = np.concatenate([np.sqrt(2 * (c2[s.dims] ** 2).sum(1)) for s in layout])
        out = np.concatenate([np.sqrt(2 * ((c2[s.dims] - c2[s.dims].mean(1, keepdims=True)) ** 2).sum(1))
                              for s in layout])
        print(f"{ctx.step:4d} {n:7d} {layout[0].dims.shape[1]:7d} | {np.median(lin):9.3f} {np.median(sq):11.3f} "
              f"{np.median(out):12.4f} | {c2.mean():+.4f} {c2.std():.4f}")
    same = total = 0
    shipped = rcc.EXACT_MAX_DIMS
    for coder, ctx, layout, n, c2, c1 in steps:
        picks = []
        for limit in (float("inf"), shipped):        # per dimension everywhere, then the encoder's rule
            rcc.EXACT_MAX_DIMS = limit
            coder.rng = torch.Generator().manual_seed(ctx.step)     # the same arrival times for both
            picks.append(np.array(coder._select(ctx, layout, n, c2, c1)))
        rcc.EXACT_MAX_DIMS = shipped
        same, total = same + int((picks[0] == picks[1]).sum()), total + n
    print(f"picks that agree, per dimension and the encoder's rule: {same} of {total} ({same / total:.1%})")


if __name__ == "__main__":
    main()
