"""Why tuq codes a short chain: what finer chains would save, and what uq's per-step price takes back.

    python eval/studies/tuq_overhead.py > eval/studies/results/tuq_overhead.txt
    python eval/studies/tuq_overhead.py --backend tuqrcc --chains quad14 > eval/studies/results/tuqrcc_overhead.txt

On 256x256 crops of TRAINING photos (the crops `eval/studies/tuq_sweep.py` tunes on), for each chain:
  exact   the chain with exact posterior samples, charged each step's KL(q || p_theta) (the ideal
          estimate on that chain, no bytes): what a free channel simulator would pay;
  tuq     real tuq files on the same chain (every stopping point; file bytes, decoder-side PSNR);
          with --backend tuqrcc, real tuqrcc files (rcc for the bands tuq would skip).
Rates (bits per pixel, RGB) are interpolated at 25-45 dB per crop and averaged over the crops.

Whole chains: tuq's payload against the KL(q || p_theta) of the path it coded (its price), and
that path's KL against the exact chain's (how much skipped bands and uq's uniform noise make later
steps dearer).

Then tuq's price per step against the KL of the path it coded, by the step's KL per dimension:
the dithered quantizer's symbol costs about H(k | u), which at small residuals grows like the
residual's scale s while the KL grows like s^2, so the lower a step's KL per dimension, the more
tuq pays per bit of it. Bands under the threshold are skipped (a flag, their KL not paid), which is
why the ratio is taken on the whole step, not on coded bands.
"""
from __future__ import annotations

import argparse

import numpy as np

from tuq_sweep import TRAINING_CROPS, load_crops

PSNRS = (25.0, 30.0, 35.0, 40.0, 45.0)
BINS = (0.0, 0.02, 0.1, 0.3, 1.0, np.inf)   # KL(q || p_theta) of a step, bits per dimension


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/photos")
    ap.add_argument("--crops", default=",".join(TRAINING_CROPS), help="comma-separated photo names")
    ap.add_argument("--chains", default="quad10 quad20 quad40", help="space-separated step specs")
    ap.add_argument("--backend", default="tuq", help="tuq, or tuqrcc (rcc for the low-KL bands)")
    args = ap.parse_args()

    from diffcodec.coding.progressive import encode_image, estimate_image
    from diffcodec.evaluation.rd_curves import rate_at_psnr
    from diffcodec.training.store import load_model

    loaded = load_model("photo")
    names = args.crops.split(",")
    images = load_crops(loaded, args.data, names)
    C, H, W = images[0].shape
    D = C * H * W

    def rates(bits, psnrs):
        doc = {"results": {"bpp": list(np.asarray(bits) / (H * W)), "psnr": list(psnrs)}}
        return [rate_at_psnr(doc, p) for p in PSNRS]

    def mean_rates(per_crop):
        cols = list(zip(*per_crop))
        return " / ".join("-" if any(v is None for v in col) else f"{np.mean(col):6.3f}" for col in cols)

    print(f"photo model, {len(images)} crops 256x256 of training photos {', '.join(names)}; backend {args.backend}")
    print(f"bits per pixel at {' / '.join(f'{p:g}' for p in PSNRS)} dB (mean over crops)")
    by_bin, whole = {}, {}
    for steps in args.chains.split():
        exact, real = [], []
        totals = np.zeros(3)   # payload, path KL, exact KL (bits, summed over crops)
        for img in images:
            est = estimate_image(loaded, img, steps=steps)
            exact.append(rates(np.cumsum([r.kl_bits for r in est.records]), [r.psnr for r in est.records]))
            res = encode_image(loaded, img, backend=args.backend, steps=steps, quality=100)
            totals += (sum(r.bits for r in res.records), sum(r.kl_model_bits for r in res.records),
                       sum(r.kl_bits for r in est.records))
            n = len(res.records)
            real.append(rates([8 * len(res.file_after(k)) for k in range(1, n + 1)], [r.psnr for r in res.records]))
            for r in res.records:
                b = int(np.searchsorted(BINS, r.kl_model_bits / D, side="right")) - 1
                acc = by_bin.setdefault((steps, b), [0, 0.0, 0.0])
                acc[0], acc[1], acc[2] = acc[0] + 1, acc[1] + r.bits, acc[2] + r.kl_model_bits
        print(f"{steps:<8} exact  {mean_rates(exact)}")
        print(f"{steps:<8} {args.backend:<6} {mean_rates(real)}", flush=True)
        whole[steps] = totals / (len(images) * D)
    print(f"\nwhole chain, bits/dim: payload, KL of {args.backend}'s path, KL of the exact chain")
    print("chain     payload  path KL  exact KL  payload/path  path/exact  payload/exact")
    for steps, (pay, path, ex) in whole.items():
        print(f"{steps:<8} {pay:8.3f} {path:8.3f} {ex:9.3f} {pay / path:13.2f} {path / ex:11.2f} {pay / ex:14.2f}")
    print(f"\n{args.backend} payload / KL(q || p_theta) of the coded path, steps grouped by their KL per dimension")
    print("chain     KL bits/dim     steps  payload/KL")
    for (steps, b), (count, bits, kl) in sorted(by_bin.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        lo, hi = BINS[b], BINS[b + 1]
        print(f"{steps:<8}  {lo:5.2f} - {hi:<6.2f} {count:6d}  {bits / kl:10.2f}")


if __name__ == "__main__":
    main()
