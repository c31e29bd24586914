"""Where an encode's memory goes: the resident set (VmRSS, polled every 5 ms by a thread) of one
encode of a validation photo's centre crop, with the peak reached in each stage of
``diffcodec.timing`` (network, codebook, scoring, sampling, entropy; "other" outside them) and the
resident set when the model is loaded. A stage's peak includes what earlier stages left
allocated (the heap keeps freed blocks: ``core.allocator``), so read the rises, stage by stage.

    python eval/studies/encode_memory.py [--size 768x512] [--quality 75] [--model photo]
                                         [--photo eval/data/val768/045.png]
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="768x512", help="WxH")
    ap.add_argument("--quality", type=float, default=75)
    ap.add_argument("--model", default="photo")
    ap.add_argument("--photo", default="eval/data/val768/045.png")
    args = ap.parse_args()

    from diffcodec import timing

    current, peaks, first = ["other"], {}, {}
    real_stage = timing.stage

    @contextlib.contextmanager
    def stage(name):
        before, current[0] = current[0], name
        first.setdefault(name, rss_mb())
        try:
            with real_stage(name):
                yield
        finally:
            current[0] = before

    # the codec's modules import ``stage`` by name: point each at the recording one
    import diffcodec.coding.progressive  # noqa: F401  (loads every module that times a stage)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("diffcodec") and getattr(module, "stage", None) is real_stage:
            module.stage = stage
    timing.stage = stage

    from bench_codec import make_image
    from diffcodec.coding.progressive import encode_image
    from diffcodec.training.store import load_model

    loaded = load_model(args.model, "cpu")
    w, h = map(int, args.size.split("x"))
    image = make_image(args.photo, w, h)
    loaded_mb = rss_mb()
    done = threading.Event()

    def poll():
        while not done.is_set():
            r, k = rss_mb(), current[0]
            peaks[k] = max(peaks.get(k, 0.0), r)
            time.sleep(0.005)

    threading.Thread(target=poll, daemon=True).start()
    t0 = time.perf_counter()
    res = encode_image(loaded, image, quality=args.quality)
    seconds = time.perf_counter() - t0
    done.set()
    print(f"{args.model} {w}x{h} quality {args.quality:g}, network {res.header.network}: {len(res.data)} bytes, "
          f"{res.psnr:.2f} dB, {len(res.records)} steps, {seconds:.1f} s")
    print(f"model loaded: {loaded_mb:7.0f} MB")
    order = sorted(peaks, key=lambda k: first.get(k, 0.0))
    for k in order:
        start = f"{first[k]:7.0f} MB when first entered" if k in first else ""
        print(f"{k:9s} peak {peaks[k]:7.0f} MB  {start}")
    print(f"whole encode peak {max(peaks.values()):7.0f} MB")


if __name__ == "__main__":
    main()
