"""Can a network without GroupNorm statistics be made from photo without training? (Issue
"Full-size photos, part 2": GroupNorm's passes are 46% of the tiled network's time on a CPU; the
"no statistics" row of ``network_floor.py`` times a network of photo's shape without them.)

Each GroupNorm is replaced by the affine map of its average statistics (the mean and 1/std per
group, averaged over ``--batches`` batches of 8 training crops of 128 x 128 at uniformly drawn t);
printed: the bound of the result and of photo on ``--tiles`` tiles of 128 of the validation photos
(fitted 100-step chain, the same tiles and seed): how far such a network starts from photo, that
is how much training it would need.

    python eval/studies/fixed_norm.py [--batches 40] [--tiles 12]
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
from torch import nn

from diffcodec.core.allocator import keep_large_blocks
from diffcodec.core.schedules import read_step_list
from diffcodec.evaluation.bpd import evaluate_bpd
from diffcodec.io.datasets import BatchSampler, images_or_file, load_split
from diffcodec.io.pixels import to_model_tensor
from diffcodec.training.store import load_model

ROOT = Path(__file__).resolve().parents[2]


class Affine(nn.Module):
    """x * weight + bias per channel of [B, C, H, W]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x):
        return x * self.weight[:, None, None] + self.bias[:, None, None]


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
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--tiles", type=int, default=12)
    args = ap.parse_args()
    keep_large_blocks()
    loaded = load_model("photo")
    torch.set_num_threads(2)
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
