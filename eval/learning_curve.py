"""Learning curve of a training run: the bound on held-out images at every EMA snapshot the run kept
(``train.snapshot_every_steps``), as JSON and a plot for the model card.

    python eval/learning_curve.py --run runs/fmnist_ardm --data /usr/share/datasets/fashion-mnist \
        --limit 20 --json eval/results/learning_curve_fmnist_ardm.json --plot models/fmnist-ardm/learning_curve.png

Gaussian models: ``bpd`` of the --steps chain; masking models: the T = D bound in --order. Every
snapshot is measured on the same images with the same noise, so differences between snapshots are
far more precise than the standard error of each point.

    python eval/learning_curve.py --run runs/photo --data ../shared/data/photos --limit 30 --stride 3 \
        --json eval/results/learning_curve_photo.json --plot models/photo/learning_curve.png
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="training run folder (with snapshots/)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--steps", default="100", help="respaced chain for Gaussian models")
    ap.add_argument("--order", default="random", help="reveal order for masking models")
    ap.add_argument("--stride", type=int, default=1, help="every STRIDE-th snapshot (the last always)")
    ap.add_argument("--json", required=True)
    ap.add_argument("--plot", required=True)
    args = ap.parse_args()

    from diffcodec.evaluation.bpd import evaluate_bpd
    from diffcodec.evaluation.lossless import ardm_bound
    from diffcodec.io.datasets import images_or_file
    from diffcodec.training.store import load_model

    snaps = sorted(Path(args.run, "snapshots").glob("step_*.safetensors"))
    if not snaps:
        raise SystemExit(f"no snapshots in {args.run}/snapshots")
    snaps = snaps[::max(1, args.stride)] + ([snaps[-1]] if (len(snaps) - 1) % max(1, args.stride) else [])
    rows = []
    for path in snaps:
        loaded = load_model(str(path))
        images = images_or_file(loaded.config.data, loaded.config.model.in_channels, args.data, "test", args.limit, None)
        t0 = time.perf_counter()
        if loaded.is_masking:
            res, per_image = ardm_bound(loaded, images, args.order)
            what = f"T = D bound, {args.order} order"
        else:
            per_image = np.asarray(evaluate_bpd(loaded, images, args.steps)["per_image_bpd"])
            what = f"bound of the {args.steps}-step chain"
        step = int(re.search(r"step_(\d+)", path.name).group(1))
        rows.append({"step": step, "bpd": float(np.mean(per_image)),
                     "sem": float(np.std(per_image, ddof=1) / np.sqrt(len(per_image)))})
        print(f"step {step}: {rows[-1]['bpd']:.4f} +- {rows[-1]['sem']:.4f} bits/dim ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    doc = {"run": args.run, "data": args.data, "images": args.limit, "measure": what, "rows": rows}
    Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.errorbar([r["step"] for r in rows], [r["bpd"] for r in rows], [r["sem"] for r in rows], marker="o")
    ax.set_xlabel("training step")
    ax.set_ylabel("bits/dim")
    ax.set_title(f"{what}, first {args.limit} test images", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
