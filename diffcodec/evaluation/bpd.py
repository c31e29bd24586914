"""Exact bits/dim: the full bound L_T + sum_t L_{t-1} + L_0 over a data set, per term."""
from __future__ import annotations

import numpy as np
import torch

from ..core.precision import tile_for
from ..distributed import gather_rows, image_noise, my_indices
from ..io.datasets import dims_of, same_size_batches
from ..io.pixels import to_model_tensor
from ..nets.tiling import forward


def network_for(loaded, height: int, width: int):
    """The network as the codec runs it on an image of this size, ``net(x, t)`` on a batch: over
    the tiling ``core.precision.tile_for`` gives (the model's, or memory's above a size), image by
    image; else the network whole (float32 either way)."""
    tile, halo = tile_for(height, width, loaded.tiling)
    if not tile:
        return loaded.net
    return lambda x, t: forward(loaded.net, x, t, tile, halo)


def bound_terms(loaded, diffusion, images, batch_size: int, seed: int, progress=None):
    """Per-image L_T [N], vb terms [N, T] and x0_hat MSE [N, T] in bits/dim of each image (see
    calc_bpd_loop) under the network the codec runs (``network_for``), sharded across
    torch.distributed ranks when launched with torchrun. ``images``: uint8 [N, C, H, W], or a list
    of [C, H, W] of several sizes (batched by size)."""
    mine = my_indices(len(images))
    rows = []
    for idx, batch in same_size_batches(images, mine, batch_size):
        idx = np.asarray(idx)
        x0 = to_model_tensor(batch).to(loaded.device)
        noise = image_noise(seed, idx, x0.shape[1:], loaded.device)
        res = diffusion.calc_bpd_loop(network_for(loaded, *x0.shape[-2:]), x0, noise)
        rows += [(float(res["prior_bpd"][j]), res["vb"][j], res["mse"][j]) for j in range(len(idx))]
        if progress:
            progress(len(idx))
    rows = gather_rows(mine, rows, len(images))
    return (torch.tensor([r[0] for r in rows]), torch.stack([r[1] for r in rows]),
            torch.stack([r[2] for r in rows]))


def evaluate_bpd(loaded, images, steps=None, batch_size: int = 50, seed: int = 0,
                 progress=None) -> dict:
    """Bits/dim of uint8 images [N, C, H, W] (or a list of [C, H, W] of several sizes) under a
    loaded model: each image's bits/dim, averaged over images.

    Returns total, L_T (prior), L_sum (sum of L_1..L_{T-1} KL terms), L_0 (decoder NLL), all in
    bits/dim, plus per-step means ``vb_bpd`` (index i = chain step i, i = 0 is L_0) and per-image totals.
    ``progress(n)`` is called after each batch with its size.
    """
    diffusion = loaded.diffusion(steps)
    prior, vb, _ = bound_terms(loaded, diffusion, images, batch_size, seed, progress)
    total = vb.sum(1) + prior
    dims = dims_of(images)
    return {
        "images": len(images), "dims_per_image": dims[0] if len(set(dims)) == 1 else dims,
        "num_steps": diffusion.num_timesteps, "steps_kept": diffusion.timestep_map.tolist(),
        "total_bpd": float(total.mean()), "L_T_bpd": float(prior.mean()),
        "L_sum_bpd": float(vb[:, 1:].sum(1).mean()), "L_0_bpd": float(vb[:, 0].mean()),
        "total_bpd_stderr": float(total.std() / np.sqrt(max(1, len(total) - 1))) if len(total) > 1 else 0.0,
        "vb_bpd": vb.mean(0).tolist(), "per_image_bpd": total.tolist(),
    }
