"""Write the 44 training photos as lossless WebP (pixel-identical: checked on write) in two halves,
.gpu/a and .gpu/b, each small enough to travel with the working tree to the GPU machine (its
64 MiB limit per call; the PNGs take 76 MB, the WebPs 63 MB).

    python eval/gpu/photos_webp.py ../shared/data/photos
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def main(src: str, dest: str = ".gpu") -> None:
    from diffcodec.training.config import load_config

    held_out = set(load_config("configs/photo.toml").data.holdout)
    photos = sorted(p for p in Path(src).glob("*.png") if p.name not in held_out)
    for k, path in enumerate(photos):
        out = Path(dest, "ab"[k % 2], path.stem + ".webp")
        out.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.asarray(Image.open(path).convert("RGB"))
        Image.fromarray(pixels).save(out, lossless=True, quality=100, method=6)
        if not np.array_equal(np.asarray(Image.open(out).convert("RGB")), pixels):
            sys.exit(f"{out}: not pixel-identical")
    print(f"{len(photos)} photos written to {dest}/a and {dest}/b")


if __name__ == "__main__":
    main(*sys.argv[1:])
