"""The ideal estimate: no bytes, just the rate the paper reports.

Not a wire backend (it has no decoder and no wire id): ``progressive.estimate_image`` runs it
through the same chain as the real coders, like CompressAI's entropy estimate beside real
inference. It draws x_{t-1} exactly from q(x_{t-1} | x_t, x_0) (with encoder-side noise) and
charges KL(q || p_theta) in bits, the cost an ideal channel-simulation procedure would pay.
"""
from __future__ import annotations

import math

import numpy as np

from .base import StepContext, gaussian_kl_bits

NAME = "ideal"
DEFAULT_STEPS = "all"   # the model's full chain (T steps): the paper's reference rate


class IdealEstimator:
    """The encode half of the step-coder contract: -> (no ops, x_{t-1} ~ q, KL in bits)."""
    name = NAME

    def __init__(self, noise_seed: int = 0):
        self.rng = np.random.default_rng(noise_seed)

    def encode(self, ctx: StepContext, mu_q: np.ndarray):
        kl = float(gaussian_kl_bits(mu_q, ctx.var_q, ctx.mu_p, ctx.var_p).sum())
        x = mu_q + math.sqrt(ctx.var_q) * self.rng.standard_normal(ctx.dims)
        return [], x, kl
