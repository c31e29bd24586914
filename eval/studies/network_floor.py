"""Ways to run the photo network's tiled forward pass faster on a CPU, each against the codec's own
on one input (issue "Full-size photos, part 2": the decode targets are network-bound). Variants:

- codec: ``nets.tiling.tiled_forward`` as the codec runs it on a CPU with native bfloat16 (as
  this one; elsewhere the codec computes in float32): tiles of 128, halo 4, tiles of one shape
  batched;
- two workers: the same batches split between two Python threads of one torch thread each
  (the same function: every output is computed as on one thread);
- per-tile swish: each tile's GroupNorm affine map and SiLU as one oneDNN depthwise convolution
  with a swish post-op, tile by tile (a batch's tiles have their own statistics, so one call
  cannot serve them), joined by a concatenation; another function (other rounding);
- half statistics: GroupNorm's statistics from every other row and column of maps of at least
  64 x 64 pixels; another function.
- no statistics: each GroupNorm and the SiLU after it as one fixed per-channel map (GroupNorm's
  own weight and bias; a depthwise oneDNN convolution with a swish post-op): the speed of a
  network of this shape without statistics, which would have to be trained as such (its outputs
  here mean nothing; ``fixed_norm.py``).

Prints ms per call (mean of ``--repeats``) and, for the variants that change the function, how far
the network's output moves (RMS and largest absolute difference). Run it alone on the machine.

    python eval/studies/network_floor.py [--sizes 256x256,512x768] [--repeats 10]
"""
from __future__ import annotations

import argparse
import threading
import time

import torch

from diffcodec.core import precision
from diffcodec.core.allocator import keep_large_blocks
from diffcodec.nets import inference, tiling
from diffcodec.training.store import load_model


def two_workers(net, x, t, core, halo):
    """tiled_forward's batches, shared out by pixel count between two threads of one torch thread."""
    H, W = x.shape[-2:]
    out = torch.empty((1, net.config.out_channels, H, W))

    def pixels(batch):
        (ya, yb, _, _), (xa, xb, _, _) = batch[0]
        return len(batch) * (yb - ya) * (xb - xa)

    parts, load = ([], []), [0, 0]
    for batch in sorted(tiling.batches(H, W, core, halo, net.multiple), key=pixels, reverse=True):
        k = load.index(min(load))
        parts[k].append(batch)
        load[k] += pixels(batch)

    def work(batches):
        torch.set_num_threads(1)
        with torch.no_grad(), precision.autocast("cpu", torch.bfloat16):
            tiling.run_batches(net, x, t, batches, out)

    threads = torch.get_num_threads()
    helper = threading.Thread(target=work, args=(parts[1],))
    helper.start()
    work(parts[0])
    helper.join()
    torch.set_num_threads(threads)
    return out


def per_tile_swish(self, x):
    B, C = x.shape[:2]
    if not (self.silu and B > 1 and inference._fusable(x)):
        return ORIGINAL["forward"](self, x)
    scale, shift = (v.reshape(B, C).to(x.dtype) for v in self.affine(x))
    return torch.cat([inference.swish_affine(x[k:k + 1], scale[k], shift[k]) for k in range(B)])


def half_statistics(self, x):
    if x.shape[-2] * x.shape[-1] >= 64 * 64:
        x = x[:, :, ::2, ::2]
    return ORIGINAL["moments"](self, x)


def no_statistics(self, x):
    C = x.shape[1]
    w, b = self.gn.weight.to(x.dtype), self.gn.bias.to(x.dtype)
    if self.silu and inference._fusable(x):     # every GroupNorm of the photo network has its SiLU
        return inference.swish_affine(x, w, b)
    y = torch.addcmul(b.reshape(1, C, 1, 1), x, w.reshape(1, C, 1, 1))
    return torch.nn.functional.silu(y, inplace=True) if self.silu else y


ORIGINAL = {"forward": inference.FixedOrderGroupNorm.forward, "moments": inference.FixedOrderGroupNorm.moments}
PATCHES = {"per-tile swish": ("forward", per_tile_swish), "half statistics": ("moments", half_statistics),
           "no statistics": ("forward", no_statistics)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="256x256,512x768")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    keep_large_blocks()
    torch.set_num_threads(2)
    loaded = load_model("photo")
    net = loaded.inference_net
    core, halo = 128, 4
    t = loaded.diffusion(None).model_t(torch.tensor([500]))
    for size in args.sizes.split(","):
        H, W = map(int, size.split("x"))
        x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(0))

        def codec():
            with torch.no_grad(), precision.autocast("cpu", torch.bfloat16):
                return tiling.tiled_forward(net, x, t, core, halo)

        def timed(f):
            for _ in range(2):
                f()
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                y = f()
            return (time.perf_counter() - t0) / args.repeats * 1e3, y

        ms, ref = timed(codec)
        print(f"{size}: codec {ms:.1f} ms")
        ms, y = timed(lambda: two_workers(net, x, t, core, halo))
        print(f"{size}: two workers {ms:.1f} ms, output {'identical' if torch.equal(y, ref) else 'DIFFERS'}")
        for name, (attr, fn) in PATCHES.items():
            setattr(inference.FixedOrderGroupNorm, attr, fn)
            try:
                ms, y = timed(codec)
            finally:
                setattr(inference.FixedOrderGroupNorm, attr, ORIGINAL[attr])
            d = (y - ref).abs()
            print(f"{size}: {name} {ms:.1f} ms, output moves {d.pow(2).mean().sqrt():.2e} RMS, {d.max():.2e} at most")
        ms, y = timed(codec)
        print(f"{size}: codec again {ms:.1f} ms")


if __name__ == "__main__":
    main()
