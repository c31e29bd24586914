"""rcc's candidate scoring with and without batching segments of near-equal length into one
matrix product (``rcc.BATCH_LENGTH``; 2.0 turns batching off), alternating in one process on the
same image, so both see the same machine state (each repeat swaps which runs first). Prints each encode's seconds, scoring seconds,
bytes and PSNR: the files must be the same (the scores are the encoder's alone, and batching moves
them by float rounding at most).

    python eval/studies/score_batches.py [--size 256x256] [--quality 75] [--repeats 3]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_codec import ROOT, make_image  # noqa: E402

from diffcodec import timing  # noqa: E402
from diffcodec.coding import rcc  # noqa: E402
from diffcodec.coding.progressive import encode_image  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default=str(ROOT / "eval/data/val768/045.png"))
    ap.add_argument("--size", default="256x256", help="WxH")
    ap.add_argument("--quality", type=int, default=75)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    loaded = load_model("photo")
    w, h = map(int, args.size.split("x"))
    image = make_image(args.photo, w, h)
    encode_image(loaded, image, quality=args.quality)     # warm-up: codebook, heap
    print(f"{args.size} q{args.quality}, {args.repeats} repeats")
    for repeat in range(args.repeats):
        for batch_length in (2.0, rcc.BATCH_LENGTH)[::1 if repeat % 2 == 0 else -1]:
            old, rcc.BATCH_LENGTH = rcc.BATCH_LENGTH, batch_length
            timing.totals(reset=True)
            t0 = time.perf_counter()
            res = encode_image(loaded, image, quality=args.quality)
            seconds, split = time.perf_counter() - t0, timing.totals()
            rcc.BATCH_LENGTH = old
            print(f"  BATCH_LENGTH {batch_length}: encode {seconds:.1f} s, scoring {split['scoring']:.2f} s, "
                  f"network {split['network']:.1f} s, {len(res.data)} bytes, {res.psnr:.4f} dB", flush=True)


if __name__ == "__main__":
    main()
