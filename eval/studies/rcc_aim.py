"""How far past q rcc's encoder should aim, chosen on Fashion-MNIST TRAINING images.

    python eval/studies/rcc_aim.py --limit 20 [--rules "slope:0 const:1.3 ... slope:0.06"]

Truncated ordered random coding pulls each chunk's sample back towards p; rcc's encoder counters
that by weighing its candidates against a target a times q's shift from p (``rcc.RCCCoder.aim``).
For each rule (``const:a``, as rcc does with a = ``rcc.AIM``; ``slope:A``, a = 1 + A c for a
chunk of c bits; ``sharp:a,s[,v]``, aim a with the selection maximising s x log w - log T and q's
variance weighed by v in w; ``chunk:b,k,a``, chunks of b bits with 2^k candidates under the
default chunks' index law; ``--steps`` another chain) the whole rcc curve of every image is coded as real files (``eval rd``'s stopping points) and its
BD-rate against the ideal T = 1000 curve of the same images (20-50 dB) is printed at three
stages: the coded path's own KL, the coder's symbols, and the files. Test images are not used,
so the choice is not fitted to the evaluation set.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--steps", default=None, help="rcc's chain (default: its default for 28x28)")
    ap.add_argument("--rules", default="slope:0 const:1.3 const:1.6 const:2 slope:0.04 slope:0.06 slope:0.09")
    args = ap.parse_args()

    from diffcodec.coding import rcc
    from diffcodec.coding.rcc import ZIPF_EXPONENT, RCCCoder
    from diffcodec.evaluation import rd_curves
    from diffcodec.io.datasets import images_for_model
    from diffcodec.training.store import load_model

    class Sloped(RCCCoder):
        def __init__(self, slope: float):
            super().__init__()
            self.slope = slope

        def aim(self, chunk_bits: float) -> float:
            return 1.0 + self.slope * chunk_bits

    loaded = load_model("fmnist")
    images = images_for_model(loaded.config.data, 1, args.data, "train", limit=args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        ideal = rd_curves.evaluate_codec("ideal", images, out, loaded, per_image=False)
        print(f"fmnist, first {len(images)} training images, rcc at its defaults (10-bit chunks, K = 2^13)"
              f" on {args.steps or 'its default chain (geo9)'}")
        print("BD-rate against the ideal T = 1000 curve, 20-50 dB: files / symbols / coded path's KL;"
              " then the full-rate file (bits/dim, PSNR)")
        for rule in args.rules.split():
            kind, value = rule.split(":")
            if kind == "sharp":   # sharp:AIM,SHARPNESS[,VAR_WEIGHT]
                aim, sharp, *var = (float(v) for v in value.split(","))
                coder = RCCCoder(aim=aim, sharpness=sharp, var_weight=var[0] if var else None)
            elif kind == "chunk":   # chunk:BITS,LOG2K,AIM, under the default chunks' index law
                bits, log2_k, aim = value.split(",")
                # both sides (the decoder builds its coder from the file's parameters) take
                # ZIPF_EXPONENT, not the Li & El Gamal law that other chunk settings get
                rcc.li_el_gamal_exponent = lambda chunk_bits: ZIPF_EXPONENT
                coder = RCCCoder(chunk_bits=int(bits), log2_k=int(log2_k), aim=float(aim))
            else:
                coder = Sloped(float(value)) if kind == "slope" else RCCCoder(aim=float(value))
            docs = {"ideal": ideal, "rcc": rd_curves.evaluate_codec("rcc", images, out, loaded, per_image=False,
                                                                   coder=coder, steps=args.steps)}
            rd_curves.add_bd(docs, "ideal")
            st = docs["rcc"]["bd_vs_ideal"]["stages_bd_rate_percent"]
            r = docs["rcc"]["results"]
            print(f"{rule:<12} {st['file']:+7.1f}% / {st['symbols']:+7.1f}% / {st['chain_kl']:+7.1f}%   "
                  f"{r['bpd'][-1]:.3f} bits/dim at {r['psnr'][-1]:.2f} dB", flush=True)


if __name__ == "__main__":
    main()
