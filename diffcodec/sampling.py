"""Ancestral sampling (paper Algorithm 2) with injectable noise and a per-step callback."""
from __future__ import annotations

from typing import Callable

import torch

from .diffusion import GaussianDiffusion


@torch.no_grad()
def sample_loop(diffusion: GaussianDiffusion, model, x_T: torch.Tensor,
                noise_fn: Callable[[int], torch.Tensor],
                callback: Callable[[int, torch.Tensor, dict], None] | None = None) -> torch.Tensor:
    """Run x_T -> x_0 through every step of ``diffusion``.

    noise_fn(i) gives the standard normal noise of chain step i; callback(i, x_{i-1}, out) sees
    each step's new sample and p_mean_variance output (``out["pred_xstart"]`` is x0_hat).
    """
    x = x_T
    for i in reversed(range(diffusion.num_timesteps)):
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
