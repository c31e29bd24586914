"""Universal quantization (UQDM, Yang, Will & Mandt 2025) of one reverse step.

Shared dither u ~ U(-1/2, 1/2); step width Delta = sqrt(12) sigma_q, so the reconstruction
x = (k - u) Delta + mu_p is an exact sample of a uniform with the posterior's mean and variance.
The reverse density is N(0, sigma_g^2) convolved with U(-Delta/2, Delta/2); in units of Delta the
symbol k has P(k | u) = Phi((k + 1/2 - u) / s) - Phi((k - 1/2 - u) / s), s = sigma_g / Delta:
constriction's QuantizedGaussian with mean u and std s. The encoder calibrates s for each step to
the image's own residuals (the rate-optimal choice) and sends it as one index on a log grid, coded
against the previous step's index. So the pmf depends only on the dither and transmitted integers.
"""
from __future__ import annotations

import math

import numpy as np

from .base import StepCoder, StepContext, gaussian_kl_bits
from .entropy import dyadic_scale, gauss_op, quantize_scale
from .randomness import dither
from .registry import register

SCALE_INDEX_STD = 3.0   # spread of the scale-index prediction from one step to the next


def symbol_support(s: float) -> int:
    """Symbols are clipped to [-R, R]; R covers 12 standard deviations (2^-30 tail mass)."""
    return max(8, int(math.ceil(12.0 * s)) + 2)


@register("uq", wire_id=0, default_steps="quad8",
          description="universal quantization (fast, few steps)")
class UQCoder(StepCoder):

    @staticmethod
    def _scale_prior(ctx: StepContext):
        """(lo, hi, mean, std) of the scale index: centred on the previous step's index (wide for
        the first step)."""
        if "scale_index" not in ctx.state:
            return 0, 255, [96.0], [48.0]
        return 0, 255, [float(ctx.state["scale_index"])], [SCALE_INDEX_STD]

    def encode(self, ctx: StepContext, mu_q: np.ndarray):
        delta = math.sqrt(12.0 * ctx.var_q)
        u = dither(ctx.seed, ctx.step, ctx.dims)
        r = (mu_q - ctx.mu_p) / delta
        q = quantize_scale(float(np.sqrt(np.mean(r ** 2))))
        scale_op = gauss_op([q], *self._scale_prior(ctx))
        ctx.state["scale_index"] = q
        s = dyadic_scale(q)
        R = symbol_support(s)
        k = np.clip(np.rint(r + u), -R, R).astype(np.int32)
        x_prev = (k - u) * delta + ctx.mu_p
        ops = [scale_op, gauss_op(k, -R, R, u, np.full(ctx.dims, s))]
        # the Gaussian KL of q against N(mu_p, sigma_g^2 + Delta^2/12), for comparison
        kl = gaussian_kl_bits(mu_q, ctx.var_q, ctx.mu_p, (s * delta) ** 2 + ctx.var_q).sum()
        return ops, x_prev, float(kl)

    def decode(self, ctx: StepContext, dec) -> np.ndarray:
        q = int(dec.gauss(*self._scale_prior(ctx))[0])
        ctx.state["scale_index"] = q
        s = dyadic_scale(q)
        R = symbol_support(s)
        u = dither(ctx.seed, ctx.step, ctx.dims)
        k = dec.gauss(-R, R, u, np.full(ctx.dims, s))
        return (k - u) * math.sqrt(12.0 * ctx.var_q) + ctx.mu_p
