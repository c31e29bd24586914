"""Lossless baselines on the same images `diffcodec bpd` evaluates: PNG and WebP lossless (and
JPEG XL with the `baselines` extra), one file per image, whole files counted, in bits/dim.

    python eval/baselines_lossless.py --model photo --data ../shared/data/photos --limit 200
"""
from __future__ import annotations

import argparse
import io

import numpy as np

from diffcodec.io.datasets import images_for_model
from diffcodec.io.images import to_hwc
from diffcodec.training.store import load_model


def sizes(images, fmt, **kw):
    from PIL import Image

    out = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(to_hwc(img)).save(buf, format=fmt, **kw)
        out.append(len(buf.getvalue()))
    return np.array(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fmnist")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=1000)
    args = ap.parse_args()
    loaded = load_model(args.model, "cpu")
    images = images_for_model(loaded.config.data, loaded.config.model.in_channels, args.data, args.split, args.limit)
    dims = images[0].size
    print(f"{len(images)} images of {'x'.join(map(str, images.shape[1:]))}, one file each (bits/dim)")
    print(f"PNG (optimize)   {8 * sizes(images, 'PNG', optimize=True).mean() / dims:.3f}")
    print(f"WebP lossless    {8 * sizes(images, 'WEBP', lossless=True, quality=100, method=6).mean() / dims:.3f}")
    try:
        import imagecodecs

        jxl = [len(imagecodecs.jpegxl_encode(to_hwc(im), lossless=True, effort=9))
               for im in images]
        print(f"JPEG XL lossless {8 * np.mean(jxl) / dims:.3f}")
    except ImportError:
        print("JPEG XL lossless (not installed: pip install 'diffcodec[baselines]')")


if __name__ == "__main__":
    main()
