"""How far decoded pixels move when the decoder computes the network differently from the encoder:
another number format (bfloat16 or float32, ``diffcodec.core.precision``; a file names its own,
so the other is forced here by replacing the header's), another thread count, or another CPU's
bfloat16 kernels.

    python eval/studies/precision_drift.py [--photo eval/data/val768/045.png] [--sizes 256x256,768x512]
        [--threads 2,1,3,4] [--formats bfloat16,float32] [--emulate]

``--emulate`` (on a CPU with native bfloat16 convolutions) also decodes each bfloat16 file with
every convolution emulated (``nets.inference.emulated_conv``), as a CPU without bfloat16 kernels
(AVX2 alone) decodes it: how far a file made on one kind of CPU moves on the other.

For each size (a centre crop of the photo) and each encoder format, one file at the default
quality, encoded on 2 threads; each is decoded in every (format, threads) pair. Printed per
decode: the largest pixel difference from the decode that matches the encoder (same format, 2
threads), how many values
differ, and the decode's PSNR against the original. Every decode must finish: drift cannot
desynchronise the stream.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_codec import ROOT, make_image  # noqa: E402

from diffcodec.coding.progressive import decode_container, encode_image  # noqa: E402
from diffcodec.container.format import Container  # noqa: E402
from diffcodec.core import precision  # noqa: E402
from diffcodec.evaluation.metrics import psnr  # noqa: E402
from diffcodec.nets import inference  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402

FORMATS = ("bfloat16", "float32")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default=str(ROOT / "eval/data/val768/045.png"))
    ap.add_argument("--sizes", default="256x256,768x512")
    ap.add_argument("--threads", default="2,1,3,4", help="decoder thread counts; the first is the encoder's")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--emulate", action="store_true", help="also decode bfloat16 files as a CPU without its kernels does")
    args = ap.parse_args()
    if args.emulate and not inference.native_bf16():
        raise SystemExit("--emulate needs a CPU with native bfloat16 convolutions (this one emulates them already)")
    native = inference.native_bf16
    counts = [int(v) for v in args.threads.split(",")]
    formats = args.formats.split(",")
    loaded = load_model("photo")
    for size in args.sizes.split(","):
        w, h = map(int, size.split("x"))
        image = make_image(args.photo, w, h)
        for enc_format in formats:
            torch.set_num_threads(counts[0])
            res = encode_image(loaded, image, precision=enc_format)
            container = Container.from_bytes(res.data, loaded.keys)
            print(f"{size} encoded in {enc_format}: {8 * len(res.data) / (w * h):.4f} bpp, "
                  f"encoder's PSNR {res.psnr:.3f} dB", flush=True)
            reference = None
            decodes = [(f, False) for f in (enc_format, *(f for f in formats if f != enc_format))]
            if args.emulate and enc_format == "bfloat16":
                decodes.insert(1, ("bfloat16", True))
            for dec_format, emulated in decodes:
                inference.native_bf16 = (lambda: False) if emulated else native
                for threads in counts:
                    torch.set_num_threads(threads)
                    # the file names its format; another is forced by replacing the header's
                    fmt = precision.parse(container.header.network)
                    network = precision.network_format(dec_format, fmt.tile, fmt.halo, fmt.scales)
                    forced = replace(container, header=replace(container.header, network=network))
                    out = decode_container(loaded, forced).image
                    reference = out if reference is None else reference
                    diff = np.abs(out.astype(int) - reference.astype(int))
                    name = "bfloat16, emulated" if emulated else dec_format
                    print(f"    decoded in {name:18s} on {threads} thread(s): max |diff| {diff.max():3d}, "
                          f"{int((diff > 0).sum()):7d} of {diff.size} values differ, "
                          f"PSNR {psnr(out, image):.3f} dB", flush=True)
            inference.native_bf16 = native


if __name__ == "__main__":
    main()
