"""What reusing the U-Net's deep features from an earlier step costs (issue "Full-size photos,
part 2": the network is the decode's time).

Between two steps of a chain x_t changes little at low noise, and the U-Net's lower levels (half
and quarter resolution) see it through ever coarser maps. A cheap call runs only the
full-resolution blocks (``conv_in``, the first level's down and up blocks, ``out``) and takes the
map the lower levels hand to the first level's up blocks from the last full call ("DeepCache",
Ma et al. 2024). Here, along the codec's chain and network format (tiles, coarse calls), each step
whose network runs at full resolution is charged its KL against p_theta (bits per pixel) with a
full call, and with cheap calls whose deep map is one and two steps old (the last full calls
being made on the same path: x_{t-1} drawn from q with a fixed seed, as ``coarse_steps.py``).
Every column takes the full calls' variance scale r_i where the format rescales. Printed per
full-resolution step, then for schedules of cheap calls (full every k-th full-resolution step,
below a timestep), the bits to 38 dB and at full rate and the network time a decode spends to
38 dB and at full rate, with a cheap call's time measured here against a full one's on the same
tiles.

    python eval/studies/deep_cache.py [--sizes 256x256,768x512] [--photos 045,...] [--out FILE]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coarse_steps import photo_sets, stop_index, validation_args  # noqa: E402

from diffcodec.coding.base import gaussian_kl_bits  # noqa: E402
from diffcodec.coding.progressive import default_steps  # noqa: E402
from diffcodec.coding.randomness import PURPOSE_XT, normals  # noqa: E402
from diffcodec.core import precision, scales  # noqa: E402
from diffcodec.core.adapter import NetworkAdapter  # noqa: E402
from diffcodec.evaluation.metrics import psnr  # noqa: E402
from diffcodec.io.pixels import to_model, to_pixels  # noqa: E402
from diffcodec.nets.tiling import forward  # noqa: E402
from diffcodec.nets.unet import timestep_embedding  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402

AGES = (1, 2)


def split_forward(net, x, t, deep=None):
    """The U-Net's forward pass (``UNet.forward``) on x [B, C, H, W] (H, W multiples of
    ``net.multiple``, as the codec's tiles are: no padding), with the map entering the first
    level's up blocks taken from ``deep`` when given instead of computed -> (output, that map)."""
    if x.shape[-2] % net.multiple or x.shape[-1] % net.multiple:
        raise ValueError(f"split_forward needs sides that are multiples of {net.multiple}, not {tuple(x.shape[-2:])}")
    c = net.config
    emb = net.time_embed(timestep_embedding(t, c.base_channels))
    h = net.conv_in(x)
    hs = [h]
    first = c.blocks(0)
    for blocks in net.down[:first]:
        h = net._run(blocks, h, emb)
        hs.append(h)
    if deep is None:
        rest = list(hs)
        for blocks in net.down[first:]:
            h = net._run(blocks, h, emb)
            rest.append(h)
        h = net._run(net.mid, h, emb)
        for blocks in net.up[:len(net.up) - first - 1]:
            h = net._run(blocks, torch.cat([h, rest.pop()], dim=1), emb)
        deep = h
    h = deep
    for blocks in net.up[len(net.up) - first - 1:]:
        h = net._run(blocks, torch.cat([h, hs.pop()], dim=1), emb)
    return net.out(h), deep


class CachingNet:
    """The inference network as ``nets.tiling.forward`` calls it, batch of tiles by batch of tiles:
    ``mode`` "full" runs whole calls and keeps each batch's deep map in ``made``; "cheap" takes
    them from ``use`` in the same order; "plain" runs the network as the codec does."""

    def __init__(self, net):
        self.net, self.multiple = net, net.multiple
        self.mode, self.made, self.use = "full", [], []

    def begin(self, mode: str, use=()):
        self.mode, self.made, self.use = mode, [], list(use)

    def __call__(self, x, t):
        if self.mode == "plain":
            return self.net(x, t)
        if self.mode == "full":
            y, deep = split_forward(self.net, x, t)
            self.made.append(deep)
            return y
        return split_forward(self.net, x, t, self.use.pop(0))[0]


class CachingAdapter(NetworkAdapter):
    """A NetworkAdapter whose calls run through a CachingNet, coarse calls in its "plain" mode."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.caching = CachingNet(self.loaded.inference_net)

    def _run(self, x, t):
        with precision.autocast(x.device, self.dtype):
            return forward(self.caching, x.contiguous(memory_format=torch.channels_last), t, self.tile, self.halo)

    def _run_coarse(self, y, t):
        self.caching.begin("plain")
        return super()._run_coarse(y, t)


def per_step(loaded, image: np.ndarray, steps: str, seed: int = 0) -> dict:
    """-> {"t": [...], "full": [...], "bits": {column: [...]}, "psnr": [...]}: for each step
    x_i -> x_{i-1}, the original timestep the network sees at x_i, whether it is a full-resolution
    call, and its KL in bits per pixel with a full call ("full") and with cheap calls whose deep
    map is one and two full-resolution steps old (columns 1, 2; the full call's bits where there
    is no such map), and the PSNR of the full call's x0_hat at x_{i-1}."""
    C, H, W = image.shape
    fmt = precision.encoder_network(loaded.device, image.shape, None, loaded.tiling, loaded.scales)
    net = CachingAdapter(loaded, steps, image.shape, fmt)
    x0 = to_model(image).ravel()
    x = normals(seed, PURPOSE_XT, 0, x0.size)
    rng = np.random.default_rng(seed)
    cols = ("full", *AGES)
    rec = {"t": [], "full": [], "bits": {c: [] for c in cols}, "psnr": [], "format": fmt}
    caches: list = []       # deep maps of the last full-resolution calls, newest first
    before: dict = {}
    for i in range(net.num_steps - 1, 0, -1):
        mu_q, var_q = net.posterior_mean(x0, x, i), net.posterior_variance(i)
        t_net = int(net.diffusion.timestep_map[i])
        fullres = scales.factor(net.scales, t_net) == 1
        net.caching.begin("full")
        outs = {"full": net._out(x, i)}
        made = net.caching.made
        if fullres:
            for age in AGES:
                if len(caches) >= age:
                    net.caching.begin("cheap", caches[age - 1])
                    outs[age] = net._out(x, i)
            caches = [made, *caches][:max(AGES)]
        else:
            caches = []
        if rec["t"]:
            rec["psnr"].append(psnr(to_pixels(outs["full"]["pred_xstart"]), image.ravel()))
        # every column takes the full column's variance scale r_i (from its previous output)
        scale = net.scale_after(x, before) if before and net.rescale else 1.0
        for c in cols:
            out = outs.get(c, outs["full"])
            rec["bits"][c].append(float(gaussian_kl_bits(mu_q, var_q, out["mean"], out["variance"] * scale).sum())
                                  / (H * W))
        before = dict(outs["full"], variance=outs["full"]["variance"] * scale, scale=scale)
        x = mu_q + np.sqrt(var_q) * rng.standard_normal(x.size)
        rec["t"].append(t_net)
        rec["full"].append(fullres)
    net.caching.begin("full")
    rec["psnr"].append(psnr(to_pixels(net._out(x, 0)["pred_xstart"]), image.ravel()))
    return rec


def plan(rec: dict, every: int, below: int) -> list:
    """The column each step takes under a schedule: at full-resolution steps below timestep
    ``below``, a full call then ``every - 1`` cheap ones (their deep maps 1, 2, ... steps old);
    a full call everywhere else (every 1: no cheap calls)."""
    cols, run = [], 0       # run: steps since the first of this run of full-resolution steps below
    for t, fullres in zip(rec["t"], rec["full"]):
        if not fullres or t >= below or every == 1:
            cols.append("full")
            run = 0
            continue
        age = run % every
        cols.append(age if age else "full")
        run += 1
    return cols


def rate(rec: dict, every: int, below: int, cheap: float, target: float = 38.0) -> tuple[float, ...]:
    """(bits per pixel to ``target`` dB, at full rate, network calls of a decode to ``target`` and
    at full rate in full-resolution calls: a cheap call counting ``cheap``, a coarse one 1 / f^2, a
    blank step 0, and the final x0_hat call 1) of one image under a schedule."""
    cols = plan(rec, every, below)
    bits = np.array([rec["bits"][c][k] for k, c in enumerate(cols)])
    stop = stop_index(rec["psnr"], target)
    tiers = scales.parse(rec["format"].split("scales")[-1]) if "scales" in rec["format"] else ()
    weight = [0.0 if scales.factor(tiers, t) == scales.BLANK else 1.0 / scales.factor(tiers, t) ** 2
              for t in rec["t"]]
    calls = [cheap if c != "full" else w for c, w in zip(cols, weight)]
    return float(bits[:stop + 1].sum()), float(bits.sum()), 1.0 + sum(calls[:stop + 1]), 1.0 + sum(calls)


def call_seconds(loaded, image: np.ndarray, steps: str, repeats: int = 3) -> tuple[float, float]:
    """(full, cheap) seconds of one network call at t = 100 on ``image``'s shape and format, the
    best of ``repeats``, on torch's threads as set (as a decode of an image of more than
    ``adapter.SINGLE_THREAD_DIMS`` values runs)."""
    fmt = precision.encoder_network(loaded.device, image.shape, None, loaded.tiling, loaded.scales)
    net = CachingAdapter(loaded, steps, image.shape, fmt)
    x = torch.from_numpy(np.asarray(to_model(image), dtype=np.float32).reshape(1, *image.shape))
    t = torch.full((1,), 100.0)
    best = {}
    with torch.no_grad():
        net.caching.begin("full")
        net._run(x, t)
        made = net.caching.made
        for mode in ("full", "cheap", "full", "cheap"):
            for _ in range(repeats):
                net.caching.begin(mode, made)
                t0 = time.perf_counter()
                net._run(x, t)
                best[mode] = min(best.get(mode, 1e9), time.perf_counter() - t0)
    return best["full"], best["cheap"]


SCHEDULES = ((1, 1000), (2, 400), (2, 200), (2, 100), (3, 400), (3, 200), (2, 50), (3, 100))


def main():
    args = validation_args(__doc__)
    loaded = load_model(args.model)
    lines = []

    def say(s):
        print(s, flush=True)
        lines.append(s)

    for size, images in photo_sets(args).items():
        recs = {}
        image = None
        for name, make in images:
            image = make()
            steps = default_steps("rcc", image.size)
            recs[name] = per_step(loaded, image, steps)
            print(f"{size} photo {name} done", flush=True)
        full_s, cheap_s = call_seconds(loaded, image, steps)
        cheap = cheap_s / full_s
        first = next(iter(recs.values()))
        say(f"\nmodel {args.model}, {size} centre crops of validation photos {args.photos}, chain {steps}, "
            f"format {first['format']}")
        say(f"one call: full {full_s:.3f} s, cheap {cheap_s:.3f} s ({100 * cheap:.0f}%)")
        say("per full-resolution step, bits per pixel summed over the photos: t, full, then ages 1, 2 as changes")
        for k, t in enumerate(first["t"]):
            if first["full"][k]:
                b = {c: sum(r["bits"][c][k] for r in recs.values()) for c in ("full", *AGES)}
                say(f"  t {t:4d}: {b['full']:.5f}  " + "  ".join(f"age {a} {b[a] - b['full']:+.5f}" for a in AGES))
        say("\nschedule (full call every k-th step below t): bits per pixel to 38 dB (change), "
            "at full rate (change), decode calls to 38 dB (share), at full rate (share)")
        base = [rate(r, 1, 1000, cheap) for r in recs.values()]
        b38, bfull, calls, fcalls = (sum(v[j] for v in base) for j in range(4))
        for every, below in SCHEDULES:
            got = [rate(r, every, below, cheap) for r in recs.values()]
            s38, sfull, scalls, sfcalls = (sum(v[j] for v in got) for j in range(4))
            say(f"  every {every} below t {below:4d}: {s38:.4f} ({100 * (s38 / b38 - 1):+.2f}%)  {sfull:.4f} "
                f"({100 * (sfull / bfull - 1):+.2f}%)  {scalls:.1f} ({100 * scalls / calls:.0f}%)  "
                f"{sfcalls:.1f} ({100 * sfcalls / fcalls:.0f}%)")
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
