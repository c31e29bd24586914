"""A picture of progressive decoding: what each prefix of whole layers of one .dfc file decodes to,
with its bytes, bits per pixel and PSNR against the original.

    diffcodec encode models/photo/example.png -o eval/results/example_photo.dfc --force
    python eval/progressive_decoding.py eval/results/example_photo.dfc models/photo/example.png \
        -o eval/results/progressive_decoding_photo.png
"""
from __future__ import annotations

import argparse
import json

from diffcodec.api import read_file
from diffcodec.container.format import Container
from diffcodec.evaluation.figures import decoding_figure
from diffcodec.io.datasets import load_image
from diffcodec.training.store import load_model, model_keys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dfc")
    ap.add_argument("original", nargs="?", help="the encoded image, for PSNR")
    ap.add_argument("-o", "--output", required=True, help="PNG figure")
    args = ap.parse_args()
    data = read_file(args.dfc)
    loaded = load_model(Container.from_bytes(data, registered=model_keys).header.model_name)
    original = load_image(args.original, loaded.config.model.in_channels) if args.original else None
    rows = decoding_figure(data, loaded, args.output, original)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
