"""What a network without GroupNorm statistics would cost and give (issue "Full-size photos,
part 2": GroupNorm's passes are 46% of the tiled network's time on a CPU).

1. Time: the photo network as the codec runs it (tiles of 128, halo 4, bfloat16), then with each
   GroupNorm (and the SiLU after it) replaced by a fixed per-channel affine map and SiLU, one
   oneDNN depthwise convolution with a swish post-op and no statistics: the speed of a network of
   the same shape that needs none (its values here are meaningless). Alternating, ``--repeats``
   calls each. Run it alone on the machine.
2. Without training: each GroupNorm replaced by the affine map of its average statistics (the
   mean and 1/std per group, averaged over ``--batches`` batches of 8 training crops of 128 x 128
   at uniformly drawn t), and the bound of the result and of photo on ``--tiles`` tiles of 128 of
   the validation photos (fitted 100-step chain, the same tiles and seed): how far such a network
   starts from photo, that is how much training it would need.

    python eval/studies/fixed_norm.py [--sizes 256x256,512x768] [--repeats 6] [--batches 40] [--tiles 12]
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch import nn

from diffcodec.core import precision
from diffcodec.core.allocator import keep_large_blocks
from diffcodec.core.schedules import read_step_list
from diffcodec.evaluation.bpd import evaluate_bpd
from diffcodec.io.datasets import BatchSampler, images_or_file, load_split
from diffcodec.io.pixels import to_model_tensor
from diffcodec.nets import inference, tiling
from diffcodec.training.store import load_model

ROOT = Path(__file__).resolve().parents[2]


def no_statistics(self, x):
    """FixedOrderGroupNorm.forward without statistics: GroupNorm's own weight and bias as the map."""
    C = x.shape[1]
    w, b = self.gn.weight.to(x.dtype), self.gn.bias.to(x.dtype)
    if inference._fusable(x):
        return inference._MKLDNN(x, w.reshape(C, 1, 1, 1), b, [0, 0], [1, 1], [1, 1], C,
                                 "swish" if self.silu else "none", [], "")
    y = torch.addcmul(b.reshape(1, C, 1, 1), x, w.reshape(1, C, 1, 1))
    return nn.functional.silu(y) if self.silu else y


class Affine(nn.Module):
    """x * weight + bias per channel of [B, C, H, W]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x):
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def timing(loaded, sizes: str, repeats: int) -> None:
    net, t = loaded.inference_net, loaded.diffusion(None).model_t(torch.tensor([500]))
    original = inference.FixedOrderGroupNorm.forward
    for size in sizes.split(","):
        H, W = map(int, size.split("x"))
        x = torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(0))
        for name, forward in (("codec", original), ("no statistics", no_statistics)) * 2:
            inference.FixedOrderGroupNorm.forward = forward
            try:
                with torch.no_grad(), precision.autocast("cpu", torch.bfloat16):
                    for _ in range(2):
                        tiling.tiled_forward(net, x, t, 128, 4)
                    t0 = time.perf_counter()
                    for _ in range(repeats):
                        tiling.tiled_forward(net, x, t, 128, 4)
            finally:
                inference.FixedOrderGroupNorm.forward = original
            print(f"{size}: {name} {(time.perf_counter() - t0) / repeats * 1e3:.1f} ms per call", flush=True)


def calibrated(loaded, batches: int) -> nn.Module:
    """A copy of loaded.net with each GroupNorm the affine map of its average statistics."""
    teacher, d = loaded.net, loaded.diffusion(None)
    sums: dict[str, list] = {}

    def hook(name):
        def record(mod, inputs, _):
            x = inputs[0].float()
            g = x.reshape(x.shape[0], mod.num_groups, -1)
            rstd = (g.var(-1, unbiased=False) + mod.eps).rsqrt()
            s = sums.setdefault(name, [0.0, 0.0, 0])
            s[0], s[1], s[2] = s[0] + g.mean(-1).sum(0), s[1] + rstd.sum(0), s[2] + len(x)
        return record

    norms = {n: m for n, m in teacher.named_modules() if isinstance(m, nn.GroupNorm)}
    hooks = [m.register_forward_hook(hook(n)) for n, m in norms.items()]
    sampler = BatchSampler(load_split(loaded.config.data, "train", channels=3), 128, True, seed=123)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(batches):
            x0 = to_model_tensor(sampler(8))
            t = torch.randint(0, d.num_timesteps, (len(x0),), generator=g)
            teacher(d.q_sample(x0, t, torch.randn(x0.shape, generator=g)), d.model_t(t))
    for h in hooks:
        h.remove()
    student = copy.deepcopy(teacher)
    for name, gn in norms.items():
        mean, rstd, n = sums[name]
        per = gn.num_channels // gn.num_groups
        scale = gn.weight.detach() * (rstd / n).repeat_interleave(per)
        shift = gn.bias.detach() - (mean / n).repeat_interleave(per) * scale
        parent, _, child = name.rpartition(".")
        setattr(student.get_submodule(parent), child, Affine(scale, shift))
    return student


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="256x256,512x768")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--tiles", type=int, default=12)
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args()
    keep_large_blocks()
    loaded = load_model("photo")
    if not args.skip_timing:
        torch.set_num_threads(2)
        timing(loaded, args.sizes, args.repeats)
    images = images_or_file(loaded.config.data, 3, str(ROOT / "eval/data/val768"), "test", args.tiles, 128)
    steps = read_step_list(str(ROOT / "eval/results/steps_photo_fit100.txt"))
    nets = {"photo": loaded.net, "average statistics": calibrated(loaded, args.batches)}
    for name, net in nets.items():
        loaded.net = net
        r = evaluate_bpd(loaded, images, steps, batch_size=len(images), seed=0)
        print(f"bound, {len(images)} validation tiles of 128: {name} {r['total_bpd']:.4f} bits/dim "
              f"(sum L_t {r['L_sum_bpd']:.4f}, L_0 {r['L_0_bpd']:.4f})", flush=True)


if __name__ == "__main__":
    main()
