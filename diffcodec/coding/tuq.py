"""Universal quantization of one reverse step in an orthonormal transform, band by band.

The posterior q(x_{t-1} | x_t, x_0) and p_theta share an isotropic variance at each step (sigma_q^2
is a schedule constant), so under an orthonormal transform W the step is still "shift by
W (mu_q - mu_p), add noise of variance sigma_q^2": uq's dithered quantization (``uq``) works there
unchanged, and its reconstruction noise maps back to noise of covariance sigma_q^2 I. The transform
is an orthonormal colour rotation (luma, two chroma axes) and a 2-D DCT-II per channel; its
coefficients are grouped in half-octave bands of max(u, v) per channel.

Why: at high noise the step's KL sits in a few low-frequency coefficients. Plain uq pays about a
third of a bit per dimension whatever the KL, so a fine schedule there is ruinous; here each band
is either coded (its own scale, calibrated to its residual, sent as an index) or skipped (symbols
all zero: the reconstruction is mu_p plus the dither's noise, a sample of p with q's variance, at
the cost of a flag). A band is coded when its KL per coefficient reaches ``KL_THRESHOLD`` bits.
The flags are coded against the band's previous flag, the scale indices against the band's
previous index, so a band that stays skipped costs a fraction of a bit per step.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy.fft import dctn, idctn

from .base import StepCoder, StepContext, gaussian_kl_bits
from .entropy import cats_op, dyadic_scale, gauss_op, quantize_scale
from .randomness import dither
from .registry import register
from .uq import symbol_support

KL_THRESHOLD = 0.25        # bits per coefficient of a band's KL(q || p) before the band is coded
SCALE_INDEX_STD = 3.0      # spread of a band's scale index around its previous one
BANDS_PER_OCTAVE = 2       # frequency bands per octave and channel (half-octave bands)
LIGHTER_OCTAVES = 8         # rate control's lighter variants: thresholds up to 256x
P_STAY = 0.9               # probability that a band keeps last step's coded/skipped flag
_COLOUR = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], np.float64) / np.sqrt([[3.0], [2.0], [6.0]])


def forward(v: np.ndarray, shape) -> np.ndarray:
    """Orthonormal transform of a flat [C * H * W] vector (colour rotation for RGB, then DCT)."""
    x = v.reshape(shape)
    if shape[0] == 3:
        x = np.tensordot(_COLOUR, x, axes=1)
    return dctn(x, axes=(1, 2), norm="ortho").ravel()


def inverse(c: np.ndarray, shape) -> np.ndarray:
    x = idctn(c.reshape(shape), axes=(1, 2), norm="ortho")
    if shape[0] == 3:
        x = np.tensordot(_COLOUR.T, x, axes=1)
    return x.ravel()


@functools.lru_cache(maxsize=8)
def bands(shape) -> tuple[np.ndarray, int]:
    """(band id of every transform coefficient [D], number of bands): octave bands per channel."""
    C, H, W = shape
    f = np.maximum.outer(np.arange(H), np.arange(W))
    edges = np.ceil(BANDS_PER_OCTAVE * np.log2(f + 1)).astype(np.int64)     # 0 for DC
    octave = np.unique(edges, return_inverse=True)[1].reshape(f.shape)       # no empty bands
    per = int(octave.max()) + 1
    ids = (np.arange(C)[:, None, None] * per + octave[None]).ravel()
    return ids, C * per


def state_probs(prev: np.ndarray | None, n: int, states: int, keep: float) -> np.ndarray:
    """[n, states] probabilities of each band's state given its state at the previous step (which it
    keeps with probability ``keep``, the others sharing the rest); uniform at the first step. tuq's
    states are (skipped, coded)."""
    if prev is None:
        return np.full((n, states), 1.0 / states)
    probs = np.full((n, states), (1.0 - keep) / (states - 1))
    probs[np.arange(n), np.asarray(prev, np.int64)] = keep
    return probs


@register("tuq", wire_id=3, default_steps="quad10", priority=1,
          description="universal quantization in DCT bands, low-KL bands skipped (large images)")
class TUQCoder(StepCoder):
    """``threshold``: bits of KL per coefficient from which a band is coded (encoder-only)."""

    def __init__(self, threshold: float = KL_THRESHOLD):
        self.threshold = float(threshold)

    def lighter(self) -> list["TUQCoder"]:
        """The same coder with higher band thresholds (fewer bands coded), in half-octave steps from
        2^LIGHTER_OCTAVES x this one's (almost every band skipped) down to sqrt(2) x."""
        return [TUQCoder(self.threshold * 2.0 ** (k / 2)) for k in range(2 * LIGHTER_OCTAVES, 0, -1)]

    @staticmethod
    def _index_prior(ctx: StepContext, coded: np.ndarray):
        """Means and stds of the coded bands' scale indices: the band's last index, else wide."""
        last = ctx.state.get("tuq_index")
        mean = np.full(coded.sum(), -1.0) if last is None else last[coded].astype(np.float64)
        fresh = mean < 0                                         # never coded before
        return np.where(fresh, 96.0, mean), np.where(fresh, 48.0, SCALE_INDEX_STD)

    @staticmethod
    def _remember(ctx: StepContext, coded: np.ndarray, idx: np.ndarray, nb: int) -> None:
        last = ctx.state.get("tuq_index")
        last = np.full(nb, -1, np.int64) if last is None else last.copy()
        last[coded] = idx
        ctx.state["tuq_index"], ctx.state["tuq_flags"] = last, coded

    @staticmethod
    def _band_kl(r: np.ndarray, ids: np.ndarray, nb: int):
        """(mean square residual, KL(q || N(mu_p, var_q)) in bits per coefficient) of every band;
        r is the residual in units of Delta."""
        ms = np.bincount(ids, r * r, minlength=nb) / np.bincount(ids, minlength=nb)
        return ms, 6.0 * ms / math.log(2.0)

    def _code_bands(self, ctx: StepContext, coded: np.ndarray, ms: np.ndarray, r: np.ndarray, u: np.ndarray,
                    ids: np.ndarray, nb: int):
        """uq of the coded bands (each with its scale index). -> (ops, symbols k [D], 0 outside)."""
        ops = []
        idx = np.array([max(1, quantize_scale(math.sqrt(v))) for v in ms[coded]], np.int64)
        if coded.any():
            ops.append(gauss_op(idx, 1, 255, *self._index_prior(ctx, coded)))
        k = np.zeros(ctx.dims, np.int64)
        for b, q in zip(np.flatnonzero(coded), idx):
            sel = ids == b
            s = dyadic_scale(int(q))
            R = symbol_support(s)
            k[sel] = np.clip(np.rint(r[sel] + u[sel]), -R, R)
            ops.append(gauss_op(k[sel], -R, R, u[sel], np.full(int(sel.sum()), s)))
        self._remember(ctx, coded, idx, nb)
        return ops, k

    def _read_bands(self, ctx: StepContext, dec, coded: np.ndarray, u: np.ndarray, ids: np.ndarray, nb: int):
        """The decoder's side of ``_code_bands``: the symbols k [D]."""
        idx = np.zeros(0, np.int64)
        if coded.any():
            mean, std = self._index_prior(ctx, coded)
            idx = dec.gauss(1, 255, mean, std).astype(np.int64)
        k = np.zeros(ctx.dims, np.int64)
        for b, q in zip(np.flatnonzero(coded), idx):
            sel = ids == b
            s = dyadic_scale(int(q))
            R = symbol_support(s)
            k[sel] = dec.gauss(-R, R, u[sel], np.full(int(sel.sum()), s))
        self._remember(ctx, coded, idx, nb)
        return k

    def encode(self, ctx: StepContext, mu_q: np.ndarray):
        shape = ctx.shape or (1, 1, ctx.dims)
        ids, nb = bands(shape)
        delta = math.sqrt(12.0 * ctx.var_q)
        u = dither(ctx.seed, ctx.step, ctx.dims)
        r = forward(mu_q - ctx.mu_p, shape) / delta                # residual in units of Delta
        ms, kl_per_coef = self._band_kl(r, ids, nb)
        coded = kl_per_coef >= self.threshold
        ops = [cats_op(coded.astype(np.int32), state_probs(ctx.state.get("tuq_flags"), nb, 2, P_STAY))]
        band_ops, k = self._code_bands(ctx, coded, ms, r, u, ids, nb)
        x_prev = ctx.mu_p + inverse((k - u) * delta, shape)
        kl = gaussian_kl_bits(mu_q, ctx.var_q, ctx.mu_p, ctx.var_p).sum()
        return ops + band_ops, x_prev, float(kl)

    def decode(self, ctx: StepContext, dec) -> np.ndarray:
        shape = ctx.shape or (1, 1, ctx.dims)
        ids, nb = bands(shape)
        coded = dec.cats(state_probs(ctx.state.get("tuq_flags"), nb, 2, P_STAY)).astype(bool)
        u = dither(ctx.seed, ctx.step, ctx.dims)
        k = self._read_bands(ctx, dec, coded, u, ids, nb)
        return ctx.mu_p + inverse((k - u) * math.sqrt(12.0 * ctx.var_q), shape)
