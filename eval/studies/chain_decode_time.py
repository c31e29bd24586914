"""Decode time of a quality-75 file on each of several chains, by noise band, runs interleaved.

    python eval/studies/chain_decode_time.py [SIZE] [SPEC,SPEC,...]     # e.g. 768x512 geo9c40,geo12c40

Encodes the centre crop of validation photo 045 once per chain, then decodes each file twice, the
chains taking turns, so a machine whose speed drifts (this one's does, by 20% and more) slows both
alike. Prints, per decode, the seconds between progress callbacks summed over steps at t >= 700
(network on x_t pooled by 4), 400-699 (pooled by 2) and below 400 (full resolution).
"""
import sys
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_codec import ROOT, make_image  # noqa: E402
from diffcodec.coding.progressive import decode_container, encode_image  # noqa: E402
from diffcodec.container.format import Container  # noqa: E402
from diffcodec.core.schedules import space_timesteps  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402

size = sys.argv[1] if len(sys.argv) > 1 else "256x256"
specs = sys.argv[2].split(",") if len(sys.argv) > 2 else ["geo9c20", "geo12c30"]
w, h = map(int, size.split("x"))
img = make_image(str(ROOT / "eval/data/val768/045.png"), w, h)
m = load_model("photo", "cpu")
files = {s: encode_image(m, img, "rcc", s, quality=75) for s in specs}
for rep in range(2):
    for s in specs:
        res = files[s]
        stamps = [time.perf_counter()]
        decode_container(m, Container.from_bytes(res.data, m.keys), on_step=lambda k, px: stamps.append(time.perf_counter()))
        d = np.diff(stamps)
        k = space_timesteps(1000, s)[::-1]
        n = len(d)
        hi = sum(d[i] for i in range(n) if k[i] >= 700); mid = sum(d[i] for i in range(n) if 400 <= k[i] < 700)
        lo = sum(d[i] for i in range(n) if k[i] < 400)
        print(f"{s:9s} rep{rep} steps {n} total {d.sum():.2f}s  t>=700: {sum(1 for i in range(n) if k[i]>=700)} calls {hi:.2f}s  400-700: {sum(1 for i in range(n) if 400<=k[i]<700)} {mid:.2f}s  <400: {sum(1 for i in range(n) if k[i]<400)} {lo:.2f}s  psnr {res.psnr:.2f}", flush=True)
