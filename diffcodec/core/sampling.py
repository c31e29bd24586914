"""Ancestral sampling (paper Algorithm 2) with injectable noise and a per-step callback."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import UserError
from ..io.pixels import to_pixels
from .diffusion import GaussianDiffusion


@torch.no_grad()
def sample_loop(diffusion: GaussianDiffusion, model, x_T: torch.Tensor,
                noise_fn: Callable[[int], torch.Tensor],
                callback: Callable[[int, torch.Tensor, dict], None] | None = None,
                start: int | None = None) -> torch.Tensor:
    """Run x_T -> x_0 through every step of ``diffusion`` (from chain index ``start`` down, when
    given: then ``x_T`` is the x at that index).

    noise_fn(i) gives the standard normal noise of chain step i; callback(i, x_{i-1}, out) sees
    each step's new sample and p_mean_variance output (``out["pred_xstart"]`` is x0_hat of x_i).
    """
    x = x_T
    first = diffusion.num_timesteps - 1 if start is None else start
    for i in range(first, -1, -1):
        t = torch.full((x.shape[0],), i, dtype=torch.long, device=x.device)
        x, out = diffusion.p_sample(model, x, t, noise_fn(i))
        if callback is not None:
            callback(i, x, out)
    return x


def seeded_noise(shape, seed: int, device) -> tuple[torch.Tensor, Callable[[int], torch.Tensor]]:
    """x_T and a per-step noise function drawn from one seeded CPU generator (reproducible)."""
    gen = torch.Generator().manual_seed(seed)
    x_T = torch.randn(shape, generator=gen).to(device)
    return x_T, lambda i: torch.randn(shape, generator=gen).to(device)


def image_size(loaded, size=None) -> tuple[int, int]:
    """(height, width) to run a model at: its training crop, or ``size`` where the model is fully
    convolutional (a model with global attention runs only at its training size)."""
    c = loaded.config
    if size is None:
        return c.data.crop, c.data.crop
    if c.model.attention_ds and tuple(size) != (c.data.crop, c.data.crop):
        raise UserError("this model has global attention and runs only at its training size")
    least = 2 ** (len(c.model.channel_mult) - 1)     # the U-Net halves the size this many times
    if len(size) != 2 or min(size) < least:
        raise UserError(f"the size must be two sides of at least {least} pixels for this model, got "
                        f"{'x'.join(map(str, size))}")
    return tuple(size)


def sample_images(loaded, n: int, steps=None, seed: int = 0, size=None, progress=None) -> np.ndarray:
    """n images drawn by ancestral sampling from seeded noise, uint8 [n, C, H, W];
    ``progress(1)`` after each step."""
    h, w = image_size(loaded, size)
    x_T, noise_fn = seeded_noise((n, loaded.config.model.in_channels, h, w), seed, loaded.device)
    x0 = sample_loop(loaded.diffusion(steps), loaded.net, x_T, noise_fn,
                     (lambda i, x, out: progress(1)) if progress else None)
    return to_pixels(x0)
