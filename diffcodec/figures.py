"""Plots (matplotlib, Agg) and image figures: rate-distortion curves, Table 4 / Figure 5, and the
progressive-generation figures 6 and 7."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from . import paper
from .checkpoint import atomic_write_bytes
from .data import to_uint8
from .imageio import grid, save_png
from .sampling import seeded_noise


def _save_fig(fig, path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rd(docs: list[dict], path, metric: str = "psnr", x: str = "bpp", title: str | None = None) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for doc in docs:
        res = doc["results"]
        if metric not in res or x not in res:
            continue
        # lossless points (PSNR capped at 99 dB in the JSON) would squash the plot: leave them out
        pts = [(a, b) for a, b, p in zip(res[x], res[metric], res.get("psnr", res[metric])) if p < 99.0]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=doc["name"])
    ax.set_xlabel({"bpp": "bits per pixel", "bpd": "bits per dimension"}[x])
    ax.set_ylabel({"psnr": "PSNR (dB)", "rmse": "RMSE (0..255)", "ms-ssim": "MS-SSIM"}[metric])
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    _save_fig(fig, path)


def plot_table4(result: dict, path, label: str = "ours") -> None:
    """Figure 5: rate vs steps, distortion vs steps, distortion vs rate, with the paper's CIFAR-10."""
    plt = _plt()
    c = result["curve"]
    T = result["T"]
    steps = np.array(c["steps"]) * (1000 / T)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(steps, c["rate_bpd"], label=label)
    axes[0].plot(paper.TABLE4_STEPS, paper.TABLE4_RATE, "o--", label="paper, CIFAR-10")
    axes[0].set(xlabel="reverse steps (of 1000)", ylabel="rate (bits/dim)")
    axes[1].plot(steps, c["rmse"], label=label)
    axes[1].plot(paper.TABLE4_STEPS, paper.TABLE4_RMSE, "o--", label="paper, CIFAR-10")
    axes[1].set(xlabel="reverse steps (of 1000)", ylabel="distortion (RMSE, 0..255)")
    axes[2].plot(c["rate_bpd"], c["rmse"], label=label)
    axes[2].plot(paper.TABLE4_RATE, paper.TABLE4_RMSE, "o--", label="paper, CIFAR-10")
    axes[2].set(xlabel="rate (bits/dim)", ylabel="distortion (RMSE, 0..255)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    _save_fig(fig, path)


@torch.no_grad()
def progressive_figure(loaded, path, n: int = 8, frames: int = 10, steps=None, seed: int = 0,
                       size=None, progress=None) -> None:
    """Figure 6: x0_hat along ancestral sampling, one row per sample, large t on the left."""
    from .sampling import sample_loop

    c = loaded.config
    h, w = size or (c.data.crop, c.data.crop)
    diffusion = loaded.diffusion(steps)
    T = diffusion.num_timesteps
    keep = set(np.round(np.linspace(T - 1, 0, frames)).astype(int).tolist())
    x_T, noise_fn = seeded_noise((n, c.model.in_channels, h, w), seed, loaded.device)
    snaps = []

    def callback(i, x, out):
        if progress:
            progress(1)
        if i in keep:
            snaps.append(to_uint8(out["pred_xstart"] if i else x))
    sample_loop(diffusion, loaded.net, x_T, noise_fn, callback)
    save_png(path, grid(np.stack(snaps, axis=1).reshape(-1, *snaps[0].shape[1:]), ncol=len(snaps)))


@torch.no_grad()
def shared_xt_figure(loaded, path, n: int = 6, frames: int = 5, steps=None, seed: int = 0, size=None,
                     progress=None) -> None:
    """Figure 7: one chain is frozen at several t; from each frozen x_t, n samples x_0 ~ p(x_0 | x_t).
    Row r is t_r (large t on top); the first column is x0_hat of the frozen x_t."""
    c = loaded.config
    h, w = size or (c.data.crop, c.data.crop)
    diffusion = loaded.diffusion(steps)
    T = diffusion.num_timesteps
    freeze = sorted(set(np.round(np.linspace(T - 1, 0, frames + 1)[1:-1]).astype(int).tolist()) | {0},
                    reverse=True)[:frames]
    shape = (1, c.model.in_channels, h, w)
    x, noise_fn = seeded_noise(shape, seed, loaded.device)
    gen = torch.Generator().manual_seed(seed + 1)
    rows = []
    for i in reversed(range(T)):
        t = torch.full((1,), i, dtype=torch.long, device=x.device)
        if i in freeze:
            out = diffusion.p_mean_variance(loaded.net, x, t)
            xs = x.repeat(n, 1, 1, 1)
            for j in reversed(range(i + 1)):
                tj = torch.full((n,), j, dtype=torch.long, device=x.device)
                xs, _ = diffusion.p_sample(loaded.net, xs, tj, torch.randn(xs.shape, generator=gen).to(x.device))
            rows.append(np.concatenate([to_uint8(out["pred_xstart"]), to_uint8(xs)]))
        x, _ = diffusion.p_sample(loaded.net, x, t, noise_fn(i))
        if progress:
            progress(1)
    save_png(path, grid(np.concatenate(rows), ncol=n + 1))
