"""Where one forward pass of the codec's copy of a model's network goes, by torch operator: one
call on a random image over the model's tiles (its config's ``inference`` tiling), in float32 or
bfloat16, after a warm-up call (torch.profiler, self CPU time).

    python eval/studies/network_profile.py [--model photo] [--size 512x768] [--precision float32]
"""
from __future__ import annotations

import argparse

import torch

from diffcodec.core import precision
from diffcodec.nets.tiling import forward
from diffcodec.training.store import load_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="photo")
    ap.add_argument("--size", default="512x768", help="HxW")
    ap.add_argument("--precision", default="float32", choices=precision.NETWORK_FORMATS)
    ap.add_argument("--rows", type=int, default=12)
    args = ap.parse_args()
    loaded = load_model(args.model, "cpu")
    net, tile, halo = loaded.inference_net, loaded.config.inference.tile, loaded.config.inference.halo
    H, W = map(int, args.size.split("x"))
    x = torch.randn(1, loaded.config.model.in_channels, H, W, generator=torch.Generator().manual_seed(0))
    x, t = x.contiguous(memory_format=torch.channels_last), torch.tensor([100.0])
    dtype = precision.dtype(args.precision)
    with torch.no_grad(), precision.autocast("cpu", dtype):
        forward(net, x, t, tile, halo)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            forward(net, x, t, tile, halo)
    print(f"{args.model}, {args.size}, {args.precision}, tiles {tile}/halo {halo}, {torch.get_num_threads()} threads")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
