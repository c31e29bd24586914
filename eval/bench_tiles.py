"""The codec's network on large images, whole and over tiles (``diffcodec.nets.tiling``): seconds per
forward pass and peak memory, each case in its own child process (its maximum resident set, from
wait4, model load included), the network in the codec's default format on this machine.

    python eval/bench_tiles.py [--cases 512x768:0,1024x1536:0,1024x1536:512,2048x3072:0,2048x3072:512,3008x4000:512]
                               [--repeats 2]

A case is HxW:TILE (TILE 0: the whole image). The input is random noise at t = 100 (the time a
call takes does not depend on the values). Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def child(size: str, tile: int, repeats: int) -> None:
    import torch

    from diffcodec.core import precision
    from diffcodec.core.allocator import keep_large_blocks
    from diffcodec.nets.tiling import forward
    from diffcodec.training.store import load_model

    keep_large_blocks()
    H, W = map(int, size.split("x"))
    loaded = load_model("photo")
    net = loaded.inference_net
    network = precision.encoder_format(loaded.device, 3 * H * W)
    x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=torch.channels_last)
    t = torch.tensor([100])
    seconds = []
    with torch.no_grad(), precision.autocast(loaded.device, precision.dtype(network)):
        for _ in range(repeats + 1):      # the first call warms up
            t0 = time.perf_counter()
            forward(net, x, t, tile).float()
            seconds.append(time.perf_counter() - t0)
    print(json.dumps({"size": size, "tile": tile, "network": network, "seconds": min(seconds[1:])}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="512x768:0,1024x1536:0,1024x1536:512,2048x3072:0,2048x3072:512,3008x4000:512")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        size, tile = args.child.split(":")
        return child(size, int(tile), args.repeats)
    print(f"{'size':>10} {'tile':>6} {'format':>9} {'s/call':>7} {'s/MP':>6} {'peak MB':>8}")
    for case in args.cases.split(","):
        proc = subprocess.Popen([sys.executable, __file__, "--child", case, "--repeats", str(args.repeats)],
                                stdout=subprocess.PIPE, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status:
            print(f"{case}: the child failed (status {status})")
            continue
        r = json.loads(out.strip().splitlines()[-1])
        H, W = map(int, r["size"].split("x"))
        print(f"{r['size']:>10} {r['tile'] or 'whole':>6} {r['network']:>9} {r['seconds']:7.2f} "
              f"{r['seconds'] / (H * W / 1e6):6.2f} {usage.ru_maxrss / 1024:8.0f}", flush=True)


if __name__ == "__main__":
    main()
