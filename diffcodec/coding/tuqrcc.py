"""tuq with reverse channel coding for its low-KL bands: three states per band and step.

tuq (``tuq``) either codes a band by dithered quantization or skips it (a sample of p). Both are
dear at low KL per coefficient (``eval/studies/tuq_overhead.py``): uq's symbol cost grows like the
residual's scale while the KL grows like its square, and a skipped band's information is paid for
later, at a higher price. So tuq wants a short chain. Here a band is, by its KL per coefficient
against N(mu_p, sigma_q^2) in the transform domain:
  skipped  under ``low`` bits: a sample of p, as in tuq;
  rcc      from ``low`` up to tuq's threshold: the deviations from mu_p of all such bands'
           coefficients, pooled into one vector, are sent by rcc's ordered random coding against
           p = N(0, sigma_q^2) (the transform is orthonormal, so that is p_theta's isotropic part
           in those coordinates); up to ``max_rcc_dims`` coefficients a step, highest KL first;
  uq       from the threshold: tuq's band coding, unchanged.
The states are coded against the band's previous state. The decoder reads the states, tuq's scale
indices and symbols, then rcc's chunk count and indices: everything that drives the entropy coder
is transmitted or shared randomness (dither, candidates, the permutation of the pooled
coefficients), never a network output.
"""
from __future__ import annotations

import math

import numpy as np

from . import tuq
from .base import StepContext, gaussian_kl_bits
from .entropy import cats_op
from .randomness import dither
from .rcc import RCCCoder, li_el_gamal_exponent
from .registry import register

SKIP, UQ, RCC = 0, 1, 2
LOW_BITS = 0.02            # bits of KL per coefficient from which a band is sent by rcc
RCC_MAX_DIMS = 1 << 16     # coefficients a step sends by rcc at most, highest KL first: a bound
                           # on rcc's time per step (about that x K multiply-adds)
P_KEEP = 0.8               # probability that a band keeps last step's state (of skipped, uq, rcc)
# rcc's aim past q (``rcc.AIM``) for the pooled bands: none, measured on the five training crops
# of eval/studies/tuq_sweep.py (eval/studies/results/tuqrcc_aim_sweep.txt;
# eval/README.md, "Aiming past q").
RCC_AIM = 1.0


@register("tuqrcc", wire_id=4, default_steps="quad14", priority=2,
          description="tuq with rcc for low-KL bands (large images; slower, smaller)")
class TUQRCCCoder(tuq.TUQCoder):
    """``threshold`` and ``low`` (bits of KL per coefficient) and ``max_rcc_dims`` are encoder-only."""

    def __init__(self, threshold: float = tuq.KL_THRESHOLD, low: float = LOW_BITS,
                 max_rcc_dims: int = RCC_MAX_DIMS):
        super().__init__(threshold)
        self.low, self.max_rcc_dims = float(low), int(max_rcc_dims)
        # the pooled DCT bands keep Li & El Gamal's index law (rcc.ZIPF_EXPONENT was fitted on
        # pixel-domain chunks of Fashion-MNIST and has not been measured here)
        self.rcc = RCCCoder(zipf_exponent=li_el_gamal_exponent(RCCCoder.DEFAULTS[0]), aim=RCC_AIM)

    def lighter(self) -> list["TUQRCCCoder"]:
        """tuq's lighter variants, with the rcc threshold raised in the same proportion."""
        return [TUQRCCCoder(c.threshold, self.low * c.threshold / self.threshold, self.max_rcc_dims)
                for c in super().lighter()]

    @staticmethod
    def _pooled(ctx: StepContext, n: int) -> StepContext:
        """rcc's context for the n pooled coefficients: p = N(0, sigma_q^2), its own chunk-count state."""
        return StepContext(ctx.step, ctx.seed, ctx.var_q, np.zeros(n), np.full(n, ctx.var_q),
                           ctx.state.setdefault("rcc", {}))

    def _states(self, kl_per_coef: np.ndarray, count: np.ndarray) -> np.ndarray:
        state = np.where(kl_per_coef >= self.threshold, UQ, np.where(kl_per_coef >= self.low, RCC, SKIP))
        rcc_bands = np.flatnonzero(state == RCC)
        by_kl = rcc_bands[np.argsort(-kl_per_coef[rcc_bands], kind="stable")]
        state[by_kl[np.cumsum(count[by_kl]) > self.max_rcc_dims]] = SKIP
        return state

    def encode(self, ctx: StepContext, mu_q: np.ndarray):
        shape = ctx.shape or (1, 1, ctx.dims)
        ids, nb = tuq.bands(shape)
        delta = math.sqrt(12.0 * ctx.var_q)
        u = dither(ctx.seed, ctx.step, ctx.dims)
        shift = tuq.forward(mu_q - ctx.mu_p, shape)
        r = shift / delta                                          # residual in units of Delta
        ms, kl_per_coef = self._band_kl(r, ids, nb)
        state = self._states(kl_per_coef, np.bincount(ids, minlength=nb))
        ops = [cats_op(state, tuq.state_probs(ctx.state.get("tuq_states"), nb, 3, P_KEEP))]
        band_ops, k = self._code_bands(ctx, state == UQ, ms, r, u, ids, nb)
        ops += band_ops
        dev = (k - u) * delta
        pooled = (state == RCC)[ids]
        if pooled.any():
            rcc_ops, sample, _ = self.rcc.encode(self._pooled(ctx, int(pooled.sum())), shift[pooled])
            dev[pooled] = sample
            ops += rcc_ops
        ctx.state["tuq_states"] = state
        kl = gaussian_kl_bits(mu_q, ctx.var_q, ctx.mu_p, ctx.var_p).sum()
        return ops, ctx.mu_p + tuq.inverse(dev, shape), float(kl)

    def decode(self, ctx: StepContext, dec) -> np.ndarray:
        shape = ctx.shape or (1, 1, ctx.dims)
        ids, nb = tuq.bands(shape)
        state = dec.cats(tuq.state_probs(ctx.state.get("tuq_states"), nb, 3, P_KEEP)).astype(np.int64)
        u = dither(ctx.seed, ctx.step, ctx.dims)
        dev = (self._read_bands(ctx, dec, state == UQ, u, ids, nb) - u) * math.sqrt(12.0 * ctx.var_q)
        pooled = (state == RCC)[ids]
        if pooled.any():
            dev[pooled] = self.rcc.decode(self._pooled(ctx, int(pooled.sum())), dec)
        ctx.state["tuq_states"] = state
        return ctx.mu_p + tuq.inverse(dev, shape)
