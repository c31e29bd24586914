"""Shorter chains for speed: network calls against the ideal rate at a quality, per step spec.

    python eval/studies/chain_length.py [--data ../shared/data/photos] [--tile 256] [--limit 5]
                                        [--specs geo9c20,geo12c30,geo15c40] [--quality 75]

On validation crops (photos 045-049, the photo model's holdout list, tiled as ``eval rd --tile
--limit`` tiles them; ``--tile 0``: whole images), each
spec's ideal estimate (``progressive.estimate_image``: each step charged its KL, the same chain
the real coder sends) stops at the step that reaches the quality's PSNR. Printed per spec: the mean
network calls (the coder's time is about proportional to them) and the total ideal bits relative
to the first spec's, on the same crops. A spec that saves calls at no bits is a candidate for a
default chain; its real files are then measured with ``diffcodec eval rd``.
"""
from __future__ import annotations

import argparse

import numpy as np

from diffcodec.coding.progressive import estimate_image, quality_psnr
from diffcodec.io.datasets import DataConfig, eval_images
from diffcodec.training.store import load_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/photos")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--limit", type=int, default=5)
    ap.add_argument("--specs", default="geo9c20,geo12c20,geo12c30,geo15c30,geo15c40,geo20c40")
    ap.add_argument("--quality", type=float, default=75)
    args = ap.parse_args()
    loaded = load_model("photo")
    cfg = DataConfig(path=args.data, kind="folder", crop=args.tile, holdout=loaded.config.data.holdout)
    images = eval_images(cfg, "test", 3, args.limit)     # the crops `eval rd --tile --limit` codes
    target = quality_psnr(args.quality)
    print(f"{len(images)} validation {args.tile}x{args.tile} crops, quality {args.quality:g} ({target:.2f} dB)")
    base = None
    for spec in args.specs.split(","):
        calls, bits, psnrs = [], [], []
        for img in images:
            est = estimate_image(loaded, np.asarray(img), spec, target_psnr=target)
            calls.append(est.net_evals)
            bits.append(sum(r.kl_bits for r in est.records))
            psnrs.append(est.psnr)
        base = base or sum(bits)
        print(f"{spec:10s} calls {np.mean(calls):6.1f}  ideal bits {sum(bits) / base - 1:+7.2%} "
              f"(bpd {sum(bits) / sum(i.size for i in images):.4f})  PSNR {np.mean(psnrs):.2f}", flush=True)


if __name__ == "__main__":
    main()
