"""Plots (matplotlib, Agg) and image figures: rate-distortion curves, Table 4 / Figure 5, the
progressive-generation figures 6 and 7, and progressive generation of a masking diffusion."""
from __future__ import annotations

import io

import numpy as np
import torch

from ..core.sampling import image_size, sample_loop, seeded_noise
from ..io.files import atomic_write_bytes
from ..io.images import grid, save_png
from ..io.pixels import to_pixels
from . import table4 as paper


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


METRIC_ALIASES = {"psnr": ("psnr", "psnr-rgb"), "ms-ssim": ("ms-ssim", "ms-ssim-rgb"), "rmse": ("rmse",)}


def curve_values(results: dict, metric: str) -> list | None:
    """A curve's values of ``metric``, also under CompressAI's names (psnr-rgb, ms-ssim-rgb)."""
    return next((results[k] for k in METRIC_ALIASES.get(metric, (metric,)) if k in results), None)


def plot_rd(docs: list[dict], path, metric: str = "psnr", x: str = "bpp", title: str | None = None,
            labels: dict | None = None) -> None:
    """Rate-distortion curves of our JSON files or CompressAI's (``results`` with bpp and psnr or
    psnr-rgb / ms-ssim-rgb) in one plot; ``labels``: name -> legend label (default: the name)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for doc in docs:
        res = doc["results"]
        ys = curve_values(res, metric)
        if ys is None or x not in res:
            continue
        # lossless points (PSNR capped at 99 dB in the JSON) would squash the plot: leave them out
        psnrs = curve_values(res, "psnr") or ys
        pts = [(a, b) for a, b, p in zip(res[x], ys, psnrs) if p < 99.0]
        if pts:
            name = doc.get("name", "?")
            ax.plot(*zip(*pts), marker="o", ms=3, label=(labels or {}).get(name, name))
    ax.set_xlabel({"bpp": "bits per pixel", "bpd": "bits per dimension"}[x])
    ax.set_ylabel({"psnr": "PSNR (dB)", "rmse": "RMSE (0..255)", "ms-ssim": "MS-SSIM"}[metric])
    ax.grid(alpha=0.3)
    if labels:   # long labels (BD-rates and their ranges): beside the axes, not over the curves
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
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
    h, w = image_size(loaded, size)
    diffusion = loaded.diffusion(steps)
    T = diffusion.num_timesteps
    keep = set(np.round(np.linspace(T - 1, 0, frames)).astype(int).tolist())
    x_T, noise_fn = seeded_noise((n, loaded.config.model.in_channels, h, w), seed, loaded.device)
    snaps = []

    def callback(i, x, out):
        if progress:
            progress(1)
        if i in keep:
            snaps.append(to_pixels(out["pred_xstart"] if i else x))
    sample_loop(diffusion, loaded.net, x_T, noise_fn, callback)
    save_png(path, grid(np.stack(snaps, axis=1).reshape(-1, *snaps[0].shape[1:]), ncol=len(snaps)))


@torch.no_grad()
def shared_xt_figure(loaded, path, n: int = 6, frames: int = 5, steps=None, seed: int = 0, size=None,
                     progress=None) -> None:
    """Figure 7: one chain is frozen at several t; from each frozen x_t, n samples x_0 ~ p(x_0 | x_t).
    Row r is t_r (large t on top); the first column is x0_hat of the frozen x_t."""
    h, w = image_size(loaded, size)
    diffusion = loaded.diffusion(steps)
    T = diffusion.num_timesteps
    freeze = sorted(set(np.round(np.linspace(T - 1, 0, frames + 1)[1:-1]).astype(int).tolist()) | {0},
                    reverse=True)[:frames]
    x_T, noise_fn = seeded_noise((1, loaded.config.model.in_channels, h, w), seed, loaded.device)
    gen = torch.Generator().manual_seed(seed + 1)
    current, rows = [x_T], []          # current[0]: the chain's x at the step being taken

    def branch_noise(shape):
        return lambda _i: torch.randn(shape, generator=gen).to(x_T.device)

    def callback(i, x_prev, out):
        if i in freeze:                # x0_hat of the frozen x_i, then n samples of x_0 from it
            xs = current[0].repeat(n, 1, 1, 1)
            xs = sample_loop(diffusion, loaded.net, xs, branch_noise(xs.shape), start=i)
            rows.append(np.concatenate([to_pixels(out["pred_xstart"]), to_pixels(xs)]))
        current[0] = x_prev
        if progress:
            progress(1)
    sample_loop(diffusion, loaded.net, x_T, noise_fn, callback)
    save_png(path, grid(np.concatenate(rows), ncol=n + 1))


def ardm_generation_figure(loaded, path, n: int, order: np.ndarray, seed: int = 0, frames: int = 8,
                           progress=None) -> None:
    """Progressive generation of a masking diffusion: one row per sample, ``frames`` snapshots along
    the reveal order (revealed pixels, the predicted mean of the still-masked ones)."""
    md = loaded.masking()
    _, snaps = md.sample(loaded.net, n, order, seed, frames=frames, progress=progress)
    save_png(path, grid(snaps.transpose(1, 0, 2, 3, 4).reshape(-1, *snaps.shape[2:]), ncol=snaps.shape[0]))


def decoding_figure(data: bytes, loaded, path, original: np.ndarray | None = None, progress=None) -> list[dict]:
    """Progressive decoding of one .dfc file: the image each prefix of whole layers decodes to
    (layer 1 on the left), captioned with the prefix's bytes and bits per pixel (and PSNR against
    ``original``, uint8 [C, H, W], when given). One decode of the whole file: the previews come
    from its step callback at each layer's last step. Returns the captions' numbers per layer."""
    from ..coding.progressive import decode_container
    from ..container.format import Container
    from .metrics import psnr

    container = Container.from_bytes(bytes(data), loaded.keys)
    info = container.describe(loaded.profile)
    h = container.header.for_model(loaded.profile)
    ends, total = {}, 0
    for row in info["layers"]:
        total += row["steps"]
        ends[total] = row
    shots = []

    def on_step(k, pixels):
        if progress:
            progress(1)
        if k in ends:
            shots.append((ends[k], pixels.reshape(h.channels, h.height, h.width)))
    decode_container(loaded, container, on_step=on_step)
    rows = [{"layer": r["layer"], "bytes": r["cumulative_bytes"], "bpp": r["cumulative_bpp"],
             "psnr": psnr(img, original) if original is not None else None} for r, img in shots]
    plt = _plt()
    fig, axes = plt.subplots(1, len(shots), figsize=(2.2 * len(shots), 2.2 * h.height / h.width + 0.5))
    for ax, (r, img), row in zip(np.atleast_1d(axes), shots, rows):
        ax.imshow(np.moveaxis(img, 0, -1).squeeze(), cmap="gray" if h.channels == 1 else None,
                  vmin=0, vmax=255, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(f"{row['bytes']} B, {row['bpp']:.2f} bpp" + (f"\n{row['psnr']:.1f} dB" if original is not None else ""),
                     fontsize=8)
    _save_fig(fig, path)
    return rows


def speed_figure(rows: list[dict], path: str) -> None:
    """Encode and decode seconds and peak memory against megapixels, one line per code and quality.
    ``rows``: eval/bench_codec.py's (code, quality, megapixels, and per stage seconds and peak_mb)."""
    plt = _plt()
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    keys = sorted({(r["code"], r["quality"]) for r in rows})
    for code, q in keys:
        sel = sorted((r for r in rows if (r["code"], r["quality"]) == (code, q)), key=lambda r: r["megapixels"])
        mp = [r["megapixels"] for r in sel]
        for stage, style in (("encode", "-o"), ("decode", "--s")):
            ax_t.plot(mp, [r[stage]["seconds"] for r in sel], style, ms=4, label=f"{stage} q{q} {code}")
            ax_m.plot(mp, [r[stage]["peak_mb"] / 1024 for r in sel], style, ms=4, label=f"{stage} q{q} {code}")
    from matplotlib.ticker import FuncFormatter

    # plain numbers on the log axes (0.5, not 5 x 10^-1), minor ticks labelled at 2, 3 and 5 only
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    some = FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else "")
    for ax, label in ((ax_t, "seconds"), (ax_m, "peak memory (GB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(some)
        ax.set_xlabel("megapixels")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    ax_t.legend(fontsize=7)
    fig.tight_layout()      # keeps the right panel's label off the left panel
    _save_fig(fig, path)
