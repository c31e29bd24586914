"""Write training photos as lossless WebP (pixel-identical: checked on write) in parts
.gpu/01, .gpu/02, ..., each of at most --part-mib MiB, so that each travels to the GPU machine
with the working tree: its limit is 64 MiB per call for everything that travels, and the tracked
files take about 37 MiB, so the default part is 20 MiB (the 44 training photos' WebPs take 63 MB:
four parts).

    python eval/gpu/photos_webp.py [--part-mib 20] ../shared/data/photos [MORE_FOLDERS ...]

The validation photos configs/photo.toml holds out never travel. A further folder is e.g. the one
eval/extra_photos.py builds; a name found again in a later folder is skipped when it is the same
file (that folder's links to the 44) and refused otherwise. The destination must be empty or new.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PART_BYTES = 20 * 2 ** 20


def main(*folders: str, dest: str = ".gpu", part_bytes: int | None = None) -> None:
    from diffcodec.training.config import load_config

    cap = part_bytes or PART_BYTES
    if Path(dest).exists() and any(Path(dest).iterdir()):
        sys.exit(f"{dest} is not empty: remove it first (its parts would mix with the new ones)")
    held_out = set(load_config(str(Path(__file__).resolve().parents[2] / "configs" / "photo.toml")).data.holdout)
    photos: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.png")):
            if path.name in held_out:
                continue
            if path.stem in photos and photos[path.stem].resolve() != path.resolve():
                sys.exit(f"{path} and {photos[path.stem]} have one name but are different files")
            photos.setdefault(path.stem, path)
    part, used = 1, 0
    for k, (stem, path) in enumerate(photos.items(), 1):
        with Image.open(path) as im:
            if im.mode not in ("RGB", "L", "P"):
                sys.exit(f"{path}: mode {im.mode}; the training photos are RGB")
            pixels = np.asarray(im.convert("RGB"))
        tmp = Path(dest, stem + ".webp.part")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp, format="WEBP", lossless=True, quality=100, method=6)
        if not np.array_equal(np.asarray(Image.open(tmp).convert("RGB")), pixels):
            sys.exit(f"{path}: its WebP is not pixel-identical")
        size = tmp.stat().st_size
        if size > cap:
            sys.exit(f"{path}: its WebP alone ({size} bytes) is larger than a part ({cap} bytes)")
        if used + size > cap:
            part, used = part + 1, 0
        out = Path(dest, f"{part:02d}", stem + ".webp")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(out)
        used += size
        if sys.stderr.isatty():
            print(f"\r{k}/{len(photos)} photos", end="", file=sys.stderr, flush=True)
    print(f"{len(photos)} photos written to {part} parts, {dest}/01 to {dest}/{part:02d}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+")
    ap.add_argument("--part-mib", type=float, default=PART_BYTES / 2 ** 20)
    ap.add_argument("--dest", default=".gpu")
    a = ap.parse_args()
    main(*a.folders, dest=a.dest, part_bytes=int(a.part_mib * 2 ** 20))
