"""rcc's two losses against each other: the per-chunk price of ordered random coding and the bias
of its truncated samples, for several (chunk bits, log2 candidates) settings.

    python eval/rcc_tradeoff.py --limit 5 > eval/results/rcc_tradeoff.txt

For each setting every image's whole chain is coded (quality 100) and three rates are reported in
bits/dim, averaged over the images:
  payload   the information content of the coded symbols (what the range coder writes);
  path KL   sum of KL(q || p_theta) along the path the coder actually produced;
  exact KL  the same sum along a path of exact posterior samples (the ideal estimate, same schedule).
payload / path KL is the coder's price per bit; path KL / exact KL is what the samples' bias costs
(a biased x_{t-1} makes every later step's KL larger). Their product is payload / exact KL.

Chunk layouts (``--layouts``, at the default 10 bits and K = 2^13), the issue's "chunks of equal
KL rather than equal size" and a stricter count rule:
  equal    the shipped layout: n near-equal groups of a seeded shuffle of the dimensions;
  oracle   groups of equal KL (cuts at the KL quantiles of the same shuffle). The decoder cannot
           know these cuts, so this is encoder-only and not decodable: the most that sending the
           layout as side information could gain, before paying for it;
  cap      equal groups, but more of them until no chunk carries more than 1.2 x chunk bits (the
           decoder reads the count, so this is decodable).
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _layouts():
    """Chunk layouts to compare (see the module docstring): name -> coder factory."""

    from diffcodec.coding.base import gaussian_kl_bits
    from diffcodec.coding.randomness import permutation
    from diffcodec.coding.rcc import RCCCoder

    class KLAware(RCCCoder):
        """Keeps the step's per-dimension KL where the layout rules below can see it."""
        def encode(self, ctx, mu_q):
            self._ctx, self._kl = ctx, gaussian_kl_bits(mu_q, ctx.var_q, ctx.mu_p, ctx.var_p)
            return super().encode(ctx, mu_q)

    class Oracle(KLAware):
        def _groups(self, ctx, n):
            perm = permutation(ctx.seed, ctx.step, ctx.dims)
            cum = np.cumsum(self._kl[perm])
            return np.split(perm, np.searchsorted(cum, cum[-1] * np.arange(1, n) / n))

    class Capped(KLAware):
        CAP = 1.2   # x chunk_bits

        def _largest(self, n):
            return max(self._kl[g].sum() for g in self._groups(self._ctx, n))

        def _choose_count(self, total, prev, dims):
            n = super()._choose_count(total, prev, dims)
            while 0 < n < dims and self._largest(n) > self.CAP * self.chunk_bits:
                n += 1
            return n

    return {"equal": RCCCoder, "oracle": Oracle, "cap": Capped}


LAYOUTS = _layouts()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fmnist")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=5)
    ap.add_argument("--steps", default="geo9")
    ap.add_argument("--settings", default="8,13 9,13 10,13 10,14 11,15",
                    help="space-separated chunk_bits,log2_k[,zipf exponent] settings (default exponent: "
                         "rcc's own for that setting)")
    ap.add_argument("--split", default="test", choices=["test", "train"],
                    help="images to measure on (train for choosing settings)")
    ap.add_argument("--layouts", default="equal oracle cap", help="space-separated chunk layouts")
    args = ap.parse_args()

    from diffcodec.coding.progressive import encode_image, estimate_image
    from diffcodec.coding.rcc import RCCCoder
    from diffcodec.io.datasets import images_for_model
    from diffcodec.training.store import load_model

    loaded = load_model(args.model)
    images = images_for_model(loaded.config.data, loaded.config.model.in_channels, args.data, args.split,
                              limit=args.limit)
    D = images[0].size
    exact = np.mean([sum(r.kl_bits for r in estimate_image(loaded, img, steps=args.steps).records)
                     for img in images]) / D
    print(f"{args.model}, first {len(images)} {args.split} images, steps {args.steps}, whole chain; bits/dim")
    print("chunk_bits log2_k  payload  path KL  exact KL  payload/path  path/exact  payload/exact  encode s/img")

    def row(label: str, make_coder) -> None:
        rows, t0 = [], time.perf_counter()
        for img in images:
            res = encode_image(loaded, img, backend="rcc", steps=args.steps, quality=100, coder=make_coder())
            rows.append((sum(r.bits for r in res.records), sum(r.kl_model_bits for r in res.records)))
        seconds = (time.perf_counter() - t0) / len(images)
        payload, path = np.mean(rows, axis=0) / D
        print(f"{label:<18} {payload:7.3f}  {path:7.3f}  {exact:8.3f}  {payload / path:12.3f}  "
              f"{path / exact:10.3f}  {payload / exact:13.3f}  {seconds:12.2f}", flush=True)

    for setting in args.settings.split():
        chunk_bits, log2_k, *zipf = setting.split(",")
        exponent = float(zipf[0]) if zipf else None
        label = f"{chunk_bits:<10} {log2_k}" + (f" s={exponent:g}" if zipf else "")
        row(label, lambda: RCCCoder(int(chunk_bits), int(log2_k), zipf_exponent=exponent))
    if args.layouts.split():
        print("\nchunk layout (10 bits, K = 2^13)")
        for layout in args.layouts.split():
            row(layout, LAYOUTS[layout])


if __name__ == "__main__":
    main()
