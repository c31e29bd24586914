"""Lossless baselines on the same images `diffcodec bpd` evaluates: PNG, WebP lossless and JPEG XL
lossless (effort 7, its default, and 9; JPEG XL needs the `baselines` extra), one file per image,
whole files counted, as the mean over images of each image's bits/dim (as `bpd` averages).

    python eval/baselines_lossless.py --model photo --data ../shared/data/photos --limit 200
    python eval/baselines_lossless.py --model photo --data eval/data/val768 --tile 0   # whole images
"""
from __future__ import annotations

import argparse
import io

import numpy as np

from diffcodec.io.datasets import images_or_file
from diffcodec.io.images import to_hwc
from diffcodec.training.store import load_model


def bpd(images, encode) -> float:
    """Mean over images of 8 * file bytes / (C H W)."""
    return float(np.mean([8 * len(encode(to_hwc(im))) / im.size for im in images]))


def pillow(fmt, **kw):
    from PIL import Image

    def encode(hwc):
        buf = io.BytesIO()
        Image.fromarray(hwc).save(buf, format=fmt, **kw)
        return buf.getvalue()
    return encode


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fmnist")
    ap.add_argument("--data", required=True, help="data folder or one image file")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--tile", type=int, default=None, help="tile size for a folder (0: whole images)")
    args = ap.parse_args()
    loaded = load_model(args.model, "cpu")
    images = images_or_file(loaded.config.data, loaded.config.model.in_channels, args.data, args.split,
                            args.limit, args.tile)
    shapes = sorted({"x".join(map(str, im.shape)) for im in images})
    print(f"{len(images)} images of {', '.join(shapes)}, one file each (bits/dim, mean over images)")
    print(f"PNG (optimize)          {bpd(images, pillow('PNG', optimize=True)):.3f}")
    print(f"WebP lossless (m6)      {bpd(images, pillow('WEBP', lossless=True, quality=100, method=6)):.3f}")
    try:
        import imagecodecs
    except ImportError:
        print("JPEG XL lossless (not installed: pip install 'diffcodec[baselines]')")
        return
    for effort in (7, 9):
        enc = lambda hwc, e=effort: imagecodecs.jpegxl_encode(hwc, lossless=True, effort=e)  # noqa: E731
        print(f"JPEG XL lossless (e{effort})  {bpd(images, enc):.3f}")


if __name__ == "__main__":
    main()
