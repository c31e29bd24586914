"""Resize a folder of images so that the long side is 768 pixels (never upscaling), as RGB PNGs.

    python eval/make_fullsize.py ../shared/data/photos eval/data/val768 --pattern '04[5-9].png'

Each image is converted to RGB (an alpha channel is dropped, a palette or grayscale image is
expanded), then resized with Pillow's LANCZOS filter so that its long side is --long-side (768 by
default) and its short side is the proportional length rounded to the nearest even number. An image
whose long side is already --long-side or less keeps its size (only converted to RGB). Output names
are the input stems with '.png'; each file is written under a temporary name in the output folder and
then renamed (os.replace), so a reader never sees a partial file. The script refuses to run when an
output path would be one of its input files, and refuses two inputs with the same stem.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def target_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side at long_side and the short side rounded to an even number;
    the input size when its long side is long_side or less (never upscales)."""
    if max(width, height) <= long_side:
        return width, height
    scale = long_side / max(width, height)
    if width >= height:
        return long_side, max(2, 2 * round(height * scale / 2))
    return max(2, 2 * round(width * scale / 2)), long_side


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def resize_one(src: Path, dst: Path, long_side: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Write src resized as an RGB PNG at dst, atomically; returns (input size, output size)."""
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    size = target_size(*rgb.size, long_side)
    out = rgb if size == rgb.size else rgb.resize(size, Image.LANCZOS)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=".png.tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            out.save(f, format="PNG", optimize=True)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rgb.size, size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="Example: " + __doc__.splitlines()[2].strip(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", type=Path, help="folder of images to read")
    ap.add_argument("output", type=Path, help="folder to write the PNGs to (created if missing)")
    ap.add_argument("--pattern", default="*",
                    help="glob pattern of the input file names (default '*': every image file)")
    ap.add_argument("--long-side", type=int, default=768,
                    help="length of the long side after resizing (default 768)")
    args = ap.parse_args(argv)

    if args.long_side < 2:
        ap.error("--long-side must be at least 2")
    if not args.input.is_dir():
        ap.error(f"{args.input} is not a folder")
    inputs = sorted(p for p in args.input.glob(args.pattern)
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not inputs:
        ap.error(f"no image files match {args.pattern!r} in {args.input}")

    resolved_inputs = {p.resolve() for p in inputs}
    plan: dict[Path, Path] = {}
    for src in inputs:
        dst = args.output / (src.stem + ".png")
        if dst.resolve() in resolved_inputs:
            ap.error(f"refusing to overwrite input file {src}: choose another output folder")
        if dst in plan.values():
            ap.error(f"two inputs would both be written to {dst}")
        plan[src] = dst

    args.output.mkdir(parents=True, exist_ok=True)
    for src, dst in plan.items():
        (w, h), (ow, oh) = resize_one(src, dst, args.long_side)
        print(f"{src} {w}x{h} -> {dst} {ow}x{oh}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
