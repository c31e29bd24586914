"""Decode time of a quality-75 file on each of several chains, by noise band, runs interleaved.

    python eval/studies/chain_decode_time.py [SIZE] [SPEC,SPEC,...]     # e.g. 768x512 geo9c40,geo12c40

Encodes the centre crop of validation photo 045 once per chain, then decodes each file twice, the
chains taking turns, so a machine whose speed drifts (this one's does, by 20% and more) slows both
alike. Prints, per decode, the steps and the seconds between progress callbacks of each pooling
factor of the model's scale schedule (``core.scales``; x0: the blank first step, no call).
"""
import sys
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_codec import ROOT, make_image  # noqa: E402
from diffcodec.coding.progressive import decode_container, encode_image  # noqa: E402
from diffcodec.container.format import Container  # noqa: E402
from diffcodec.core import scales  # noqa: E402
from diffcodec.core.schedules import space_timesteps  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402

size = sys.argv[1] if len(sys.argv) > 1 else "256x256"
specs = sys.argv[2].split(",") if len(sys.argv) > 2 else ["geo9c20", "geo12c30"]
w, h = map(int, size.split("x"))
img = make_image(str(ROOT / "eval/data/val768/045.png"), w, h)
m = load_model("photo", "cpu")
files = {s: encode_image(m, img, "rcc", s, quality=75) for s in specs}
tiers = scales.parse(m.scales)
for rep in range(2):
    for s in specs:
        res = files[s]
        stamps = [time.perf_counter()]
        decode_container(m, Container.from_bytes(res.data, m.keys), on_step=lambda k, px: stamps.append(time.perf_counter()))
        seconds = np.diff(stamps)
        calls, spent = {}, {}
        for t, sec in zip(space_timesteps(1000, s)[::-1], seconds):   # step i's network sees x at t
            f = scales.factor(tiers, t)
            calls[f], spent[f] = calls.get(f, 0) + 1, spent.get(f, 0.0) + sec
        bands = "  ".join(f"x{f}: {calls[f]} steps {spent[f]:.2f}s" for f in sorted(calls, reverse=True))
        print(f"{s:9s} rep{rep} steps {len(seconds)} total {seconds.sum():.2f}s  {bands}  psnr {res.psnr:.2f}", flush=True)
