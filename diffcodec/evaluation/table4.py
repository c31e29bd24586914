"""The paper's progressive lossy code (Table 4 / Figure 5) from the bound's terms, and the published
numbers we compare against (Ho et al. 2020, CIFAR-10 test set, T = 1000)."""
from __future__ import annotations

import math

import numpy as np

from ..io.pixels import SCALE
from .bpd import bound_terms


# Table 4: cumulative rate (bits/dim) and RMSE (0..255) after each block of 100 reverse steps.
TABLE4_STEPS = [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
TABLE4_RATE = [0.00000, 0.00013, 0.00081, 0.00282, 0.00716, 0.01507, 0.02866, 0.05415, 0.11994, 1.77581]
TABLE4_RMSE = [67.60, 60.97, 54.19, 46.13, 38.03, 30.81, 24.44, 18.47, 12.02, 0.95]


def table4(loaded, images: np.ndarray, batch_size: int = 50, seed: int = 0, blocks: int = 10,
           progress=None) -> dict:
    """Cumulative ideal rate and x0_hat RMSE along the full T-step reverse process.

    After k reverse steps the receiver holds x_{T-k}; the rate is L_T plus the KL terms of the k
    steps sent (L_0, the decoder term, is distortion and is not included), and the distortion is
    the RMSE (0..255) of x0_hat (Eq. 15) computed from x_{T-k} ~ q(x_{T-k} | x_0), as in the paper.
    Returns per-step curves (k = 1..T) and rows every T/blocks steps.
    """
    diffusion = loaded.diffusion(None)
    T = diffusion.num_timesteps
    priors, vbs, mses = bound_terms(loaded, diffusion, images, batch_size, seed, progress)
    vb = vbs.double().mean(0).numpy()        # [T], vb[0] is L_0
    mse = mses.double().mean(0).numpy()      # [T], x0_hat from x at chain index i
    prior = float(priors.double().mean())
    ks = np.arange(1, T + 1)
    # step k sends chain index T - k (k = T sends x_0 itself: its cost L_0 is distortion, not rate)
    step_rate = np.array([vb[T - k] if T - k >= 1 else 0.0 for k in ks])
    rate = prior + np.cumsum(step_rate)
    rmse = np.array([math.sqrt(mse[max(0, T - k - 1)]) * SCALE for k in ks])
    every = max(1, T // blocks)
    rows = [{"steps": int(k), "rate_bpd": float(rate[k - 1]), "rmse": float(rmse[k - 1])}
            for k in range(every, T + 1, every)]
    return {"images": len(images), "T": T, "L_T_bpd": prior, "L_0_bpd": float(vb[0]),
            "rows": rows, "curve": {"steps": ks.tolist(), "rate_bpd": rate.tolist(), "rmse": rmse.tolist()}}
