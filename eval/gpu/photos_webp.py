"""Write training photos as lossless WebP (pixel-identical: checked on write) in parts .gpu/a,
.gpu/b, ..., each at most PART_BYTES, so that each travels with the working tree to the GPU
machine (its 64 MiB limit per call; the 44 PNGs take 76 MB, their WebPs 63 MB: two parts).

    python eval/gpu/photos_webp.py ../shared/data/photos [MORE_FOLDERS ...]

The validation photos configs/photo.toml holds out never travel. A further folder is e.g. the one
eval/extra_photos.py builds (its symlinks to the 44 are skipped when the 44's folder is given
too: each file name is written once).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

PART_BYTES = 56 * 2 ** 20


def main(*folders: str, dest: str = ".gpu") -> None:
    from diffcodec.training.config import load_config

    held_out = set(load_config(str(Path(__file__).resolve().parents[2] / "configs" / "photo.toml")).data.holdout)
    photos = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.png")):
            if path.name not in held_out:
                photos.setdefault(path.stem, path)
    part, used = 0, 0
    for k, (stem, path) in enumerate(photos.items(), 1):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        tmp = Path(dest, stem + ".webp.part")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp, format="WEBP", lossless=True, quality=100, method=6)
        if not np.array_equal(np.asarray(Image.open(tmp).convert("RGB")), pixels):
            sys.exit(f"{path}: its WebP is not pixel-identical")
        size = tmp.stat().st_size
        if used and used + size > PART_BYTES:
            part, used = part + 1, 0
        out = Path(dest, chr(ord("a") + part), stem + ".webp")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(out)
        used += size
        if sys.stderr.isatty():
            print(f"\r{k}/{len(photos)} photos", end="", file=sys.stderr, flush=True)
    print(f"{len(photos)} photos written to {part + 1} parts under {dest}/ (a..{chr(ord('a') + part)})")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:])
