"""What running the network over tiles (``diffcodec.nets.tiling``) costs or gains in bits, and in
time: the model's rate along the default rcc chain with the network whole and tiled at each core
size, on the same images, chain and seed.

    python eval/studies/tile_study.py [--data ../shared/data/photos] [--names 045,046,047,048,049]
        [--tiles 0,512,256] [--halo 4] [--out eval/studies/results/tile_study.txt]
    python eval/studies/tile_study.py --data eval/data/val768 --names 045,047,049 --tiles 0,128 \
        --halo 4 --out eval/studies/results/tile_study_val768_128h4.txt

The images are the validation photos at their own size (about 1 megapixel; photos 045-049 are
never trained on). For each, the ideal estimator (no bytes) sends the default rcc chain to its
last step; the rate is the sum over steps of KL(q || p_theta) (``StepRecord.kl_model_bits``), so
only p_theta differs between the rows. Tile 0 is the whole network; a tile of S runs cores of S
pixels with ``--halo`` pixels of context (set here as the model's ``inference`` tiling, which the
codec's own rule reads). Printed per image and tile: bits per pixel,
the final PSNR, the network's seconds; then each tile's mean change against the whole network, at
the chain's end and as the BD-rate of the ideal curves (rate and x0_hat's PSNR after each step)
over 28-42 dB.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from diffcodec.coding import registry
from diffcodec.coding.progressive import estimate_image
from diffcodec.core import precision
from diffcodec.evaluation.metrics import bd_rate
from diffcodec.io.datasets import load_image
from diffcodec.training.store import load_model

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="photo")
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/photos"))
    ap.add_argument("--names", default="045,046,047,048,049")
    ap.add_argument("--tiles", default="0,512,256")
    ap.add_argument("--halo", type=int, default=4, help="pixels of context around each core")
    ap.add_argument("--out", default=str(ROOT / "eval/studies/results/tile_study.txt"))
    args = ap.parse_args()
    loaded = load_model(args.model)
    precision.WHOLE_MAX_PIXELS = 10 ** 12     # tile 0 runs the network whole at any size
    tiles = [int(v) for v in args.tiles.split(",")]
    lines, rows = [], []

    def say(s):
        print(s, flush=True)
        lines.append(s)

    say(f"model {args.model}, default rcc chain, ideal rate (sum of KL(q || p_theta)), halo "
        f"{args.halo} px")
    for name in args.names.split(","):
        image = load_image(Path(args.data) / f"{name}.png", 3)
        C, H, W = image.shape
        steps = registry.get("rcc").steps_for(image.size)   # the implied chain: the stored results used it
        for tile in tiles:
            loaded.config.inference.tile, loaded.config.inference.halo = tile, args.halo
            t0 = time.perf_counter()
            est = estimate_image(loaded, image, steps=steps)
            curve = np.cumsum([r.kl_model_bits for r in est.records]) / (H * W)
            bpp = float(curve[-1])
            rows.append({"photo": name, "width": W, "height": H, "tile": tile, "bpp": bpp,
                         "curve_bpp": curve.tolist(), "curve_psnr": [r.psnr for r in est.records],
                         "psnr": est.records[-1].psnr, "net_seconds": est.net_seconds,
                         "seconds": time.perf_counter() - t0})
            say(f"{name} {W}x{H} tile {tile or 'whole'}: {bpp:.4f} bits/pixel, final {est.records[-1].psnr:.2f} dB, "
                f"network {est.net_seconds:.1f} s in {est.net_evals} calls")
    for tile in tiles[1:]:
        pairs = [(r, w) for r in rows if r["tile"] == tile for w in rows if w["tile"] == 0 and w["photo"] == r["photo"]]
        change = np.array([100 * (r["bpp"] / w["bpp"] - 1) for r, w in pairs])
        bd = np.array([bd_rate(w["curve_bpp"], w["curve_psnr"], r["curve_bpp"], r["curve_psnr"], (28, 42))
                       for r, w in pairs], dtype=float)
        say(f"tile {tile} vs whole: {change.mean():+.2f}% bits at the chain's end (per photo "
            f"{', '.join(f'{c:+.2f}' for c in change)}); BD-rate over 28-42 dB {np.nanmean(bd):+.2f}% (per photo "
            f"{', '.join(f'{c:+.2f}' for c in bd)}); network time x"
            f"{np.mean([r['net_seconds'] / w['net_seconds'] for r, w in pairs]):.2f}")
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
