"""What the codec's fixed-order copy of the network (``LoadedModel.inference_net``) costs against
a plain channels-last copy, per call in bfloat16 autocast on this machine's threads: the two are
called alternately (six calls each after a warm-up) and the medians compared, so a machine that
slows down during the run slows both.

    python eval/studies/fixed_order_cost.py [--sizes 256x256,512x768] [--model photo]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from diffcodec.training.store import load_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="256x256,512x768", help="HxW,...")
    ap.add_argument("--model", default="photo")
    ap.add_argument("--calls", type=int, default=6)
    args = ap.parse_args()
    loaded = load_model(args.model, "cpu")
    nets = {"plain channels-last": copy.deepcopy(loaded.net).eval().to(memory_format=torch.channels_last),
            "fixed-order": loaded.inference_net}
    t = torch.tensor([300])
    for size in args.sizes.split(","):
        h, w = map(int, size.split("x"))
        x = torch.randn(1, loaded.config.model.in_channels, h, w).contiguous(memory_format=torch.channels_last)
        seconds = {name: [] for name in nets}
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for net in nets.values():
                net(x, t)
            for _ in range(args.calls):
                for name, net in nets.items():
                    t0 = time.perf_counter()
                    net(x, t)
                    seconds[name].append(time.perf_counter() - t0)
        plain, fixed = (statistics.median(v) for v in seconds.values())
        print(f"{size}: bfloat16 ms per call, median of {args.calls} interleaved, {torch.get_num_threads()} threads: "
              f"plain channels-last {1000 * plain:.0f}, fixed-order {1000 * fixed:.0f} ({100 * (fixed / plain - 1):+.0f}%)")


if __name__ == "__main__":
    main()
