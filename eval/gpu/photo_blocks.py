"""Cut the training photos into blocks and keep a seeded random share of them, so that a training
set fits a size budget (the GPU machine takes 64 MiB of files per call; the 44 training photos are
76 MB as PNG). Also writes the held-out evaluation tiles (the ones `diffcodec bpd --limit N` uses)
as one PNG each, so a remote bound can be measured on exactly those tiles.

    python eval/gpu/photo_blocks.py --data ../shared/data/photos --out .gpudata --share 0.45
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from diffcodec.io.datasets import DataConfig, eval_images, list_images

HOLDOUT = ["045.png", "046.png", "047.png", "048.png", "049.png"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/photos")
    ap.add_argument("--out", default=".gpudata")
    ap.add_argument("--block", type=int, default=96)
    ap.add_argument("--share", type=float, default=0.45, help="fraction of each photo's blocks kept")
    ap.add_argument("--tiles", type=int, default=200, help="held-out 32x32 tiles written")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    out = Path(a.out)
    (out / "blocks").mkdir(parents=True, exist_ok=True)
    (out / "heldout_tiles").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    kept = total = 0
    for f in list_images(Path(a.data)):
        if f.name in HOLDOUT:
            continue
        im = np.asarray(Image.open(f).convert("RGB"))
        b = a.block
        cells = [(y, x) for y in range(0, im.shape[0] - b + 1, b) for x in range(0, im.shape[1] - b + 1, b)]
        pick = rng.choice(len(cells), size=round(a.share * len(cells)), replace=False)
        for i in sorted(pick):
            y, x = cells[i]
            Image.fromarray(im[y:y + b, x:x + b]).save(out / "blocks" / f"{f.stem}_{y:04d}_{x:04d}.png",
                                                        optimize=True)
        kept += len(pick)
        total += len(cells)
    cfg = DataConfig(path=a.data, kind="folder", crop=32, holdout=HOLDOUT)
    tiles = eval_images(cfg, "test", 3, a.tiles)
    for i, t in enumerate(tiles):
        Image.fromarray(t.transpose(1, 2, 0)).save(out / "heldout_tiles" / f"{i:03d}.png")
    size = sum(p.stat().st_size for p in (out / "blocks").iterdir())
    print(f"kept {kept} of {total} {a.block}x{a.block} blocks ({size / 1e6:.1f} MB); "
          f"{len(tiles)} held-out tiles")


if __name__ == "__main__":
    main()
