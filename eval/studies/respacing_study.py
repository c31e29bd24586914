"""The bound of one model's weights on chains of the same length but different spacing.

A respaced chain's bound (``diffcodec bpd --steps SPEC``) depends on which steps it keeps, not only
on how many: this prints, for each spec, the bound on training tiles (where a spacing may be chosen)
and on held-out ones (where it is reported), with the paired difference to the first spec (same
images, same noise, so the difference is far more precise than either bound).

    python eval/studies/respacing_study.py --model photo --data ../shared/data/photos --limit 200 \
        --specs 100,ddim100,quad100,geo5 --out eval/studies/results/respacing_photo.txt
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="photo")
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=200, help="images (or tiles) per split")
    ap.add_argument("--specs", default="100,ddim100,quad100,geo5",
                    help="comma-separated step specs; the first is the reference")
    ap.add_argument("--splits", default="train,test")
    ap.add_argument("--out", help="also write the table here (and the per-image totals as .json)")
    args = ap.parse_args()

    from diffcodec.evaluation.bpd import evaluate_bpd
    from diffcodec.io.datasets import images_for_model
    from diffcodec.training.store import load_model

    loaded = load_model(args.model)
    specs = [s.strip() for s in args.specs.split(",") if s.strip()]
    lines = [f"model {loaded.name} (sha256 {loaded.sha256[:12]}), {args.limit} images per split, "
             f"seed 0; diff = spec minus {specs[0]} on the same images and noise"]
    raw = {}
    for split in args.splits.split(","):
        images = images_for_model(loaded.config.data, loaded.config.model.in_channels, args.data, split,
                                  args.limit)
        lines += ["", f"{split} split, {len(images)} images",
                  f"{'spec':>10} {'steps':>6} {'bits/dim':>9} {'+-':>7} {'diff':>8} {'+-':>7} {'L_0':>7} {'s':>6}"]
        ref = None
        for spec in specs:
            t0 = time.perf_counter()
            res = evaluate_bpd(loaded, images, spec)
            per = np.asarray(res["per_image_bpd"])
            raw[f"{split}:{spec}"] = per.tolist()
            ref = per if ref is None else ref
            d = per - ref
            lines.append(f"{spec:>10} {res['num_steps']:>6} {per.mean():9.4f} {res['total_bpd_stderr']:7.4f} "
                         f"{d.mean():+8.4f} {d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0:7.4f} "
                         f"{res['L_0_bpd']:7.4f} {time.perf_counter() - t0:6.0f}")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(raw))


if __name__ == "__main__":
    main()
