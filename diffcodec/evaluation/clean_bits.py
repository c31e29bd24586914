"""What the one-time pad of bits-back coding buys, against a bound known in closed form.

The reverse process is the true posterior q(z_{j-1} | z_j, x_0) with its variance scaled by r (the
decoder p(x_0 | z_1) exact), so the chain's bound is L_T + sum_j KL_j + L_0 with every term in closed
form: no coder and no network in the reference. Coding a random image with and without the pad
shows the dirty-bits excess (bits pushed under a p that is not the posterior are not uniform, and
latents popped from them are not samples of q). KL_j and L_0 use p's scales as the coder snaps them.
"""
from __future__ import annotations

import math

import numpy as np

from ..io.pixels import to_model


class ScaledPosterior:
    """p(z_{j-1} | z_j) = N(posterior mean, r * posterior variance) at chain index i = j - 1 >= 1;
    the exact decoder at i = 0. ``out`` has the network adapter's interface."""

    def __init__(self, diffusion, x0: np.ndarray, r: float):
        self.diffusion, self.x0, self.r = diffusion, x0, r

    def out(self, z, i):
        d = self.diffusion
        mean = d.posterior_mean_coef1[i] * self.x0 + d.posterior_mean_coef2[i] * z
        var = d.posterior_variance[i] * self.r if i else math.exp(d.posterior_log_variance_clipped[0])
        return {"mean": mean, "variance": np.full(z.size, var)}


def closed_form_bound(diffusion, chain, image: np.ndarray, r: float) -> float:
    """Bits/dim of the chain's bound for uint8 ``image`` under ``ScaledPosterior``."""
    from scipy import stats

    from ..coding.bitsback import _snap_scale
    from ..coding.lossless import snapped_params

    x0 = to_model(image.reshape(-1))
    abar = diffusion.alphas_cumprod[-1]
    nats = 0.5 * (abar * np.mean(x0 ** 2) + (1 - abar) - 1 - math.log(1 - abar))      # L_T
    for i in range(1, diffusion.num_timesteps):
        v = diffusion.posterior_variance[i]
        s = float(_snap_scale(np.array([math.sqrt(r * v) / chain.delta[i]]))[0]) * chain.delta[i]
        nats += 0.5 * math.log(s * s / v) + v / (2 * s * s) - 0.5
    # the decoder's scale as the coder snaps it (pixel units): with its mean on the true pixel, a
    # scale snapped down would otherwise make the coded L_0 cheaper than this bound
    sd0 = float(snapped_params(np.zeros(1), np.full(1, math.exp(diffusion.posterior_log_variance_clipped[0])))[1][0])
    k = image.reshape(-1).astype(np.float64)
    lo, hi = np.where(k == 0, -np.inf, k - 0.5), np.where(k == 255, np.inf, k + 0.5)
    L_0 = -np.log2(stats.norm.cdf(hi, k, sd0) - stats.norm.cdf(lo, k, sd0)).mean()
    return nats / math.log(2) + L_0


def _random_chain(steps: int, n: int, side: int, seed: int, grid: int | None = None):
    """A ``steps``-step respaced cosine chain (T = 1000), its coding grids (``grid``: bins per
    smallest noise scale, default bitsback.GRID_FRACTION) and n random uint8 images [n, 1, side, side]."""
    from ..coding.bitsback import Chain
    from ..core.diffusion import GaussianDiffusion
    from ..core.schedules import named_betas, respace_betas, space_timesteps

    diff = GaussianDiffusion(respace_betas(named_betas("cosine", 1000), space_timesteps(1000, steps)))
    imgs = np.random.default_rng(seed).integers(0, 256, (n, 1, side, side)).astype(np.uint8)
    return diff, Chain.build(diff, grid), imgs


class _Chained:
    """``ScaledPosterior`` for a chain of images coded on one stack: the encoder visits them in
    order and the decoder in reverse, each with one ``out`` call per step."""

    def __init__(self, diffusion, images: np.ndarray, r: float, reverse: bool):
        self.steps, self.calls = diffusion.num_timesteps, 0
        posteriors = [ScaledPosterior(diffusion, to_model(im.reshape(-1)), r) for im in images]
        self.posteriors = posteriors[::-1] if reverse else posteriors

    def out(self, z, i):
        k = self.calls // self.steps
        self.calls += 1
        return self.posteriors[k].out(z, i)


def _code(diff, chain, imgs: np.ndarray, r: float, seed: int, pad: bool):
    """Bits-back-code ``imgs`` on one stack under ``ScaledPosterior``, decode and check them.
    -> (words, ChainStats, number of initial words)."""
    from ..coding import bitsback as bb

    words, st, n_init = bb.encode_chain_fitting(None, imgs, seed=seed, pad=pad,
                                                fresh_model=lambda: (chain, _Chained(diff, imgs, r, False)))
    back = bb.decode_chain(None, words, len(imgs), imgs.shape[1:], seed=seed, n_initial=n_init,
                           model=(chain, _Chained(diff, imgs, r, True)), pad=pad)
    if not np.array_equal(back, imgs):
        raise RuntimeError("bits-back round trip failed")
    return words, st, n_init


def check(r: float = 1.5, steps: int = 20, side: int = 256, seed: int = 0) -> dict:
    """Code one random side x side image on a ``steps``-step respaced cosine chain (T = 1000) with
    and without the pad. -> bound, coded rate each way and the sampling noise, in bits/dim."""
    diff, chain, img = _random_chain(steps, 1, side, seed)
    D = img.size
    out = {"r": r, "steps": steps, "dims": D, "bound_bpd": float(closed_form_bound(diff, chain, img, r)),
           # the log-ratio of two centred Gaussians has variance (1 - 1/r)^2 / 2 nats^2 per term
           "noise_bpd": math.sqrt((steps - 1) * (1 - 1 / r) ** 2 / 2 / D) / math.log(2)}
    for pad in (True, False):
        _, st, _ = _code(diff, chain, img, r, seed, pad)
        out["coded_bpd" if pad else "coded_without_pad_bpd"] = st.net_bits[0] / D
    return out


def chained(r: float = 1.0, steps: int = 1000, n: int = 30, side: int = 28, seed: int = 0, pad: bool = True,
            grid: int | None = None) -> dict:
    """Code n random side x side images as one bits-back chain (one stack, so the coder's word
    granularity does not blur per-image figures). -> bits/dim of the closed-form bound, of the
    symbols' information content and of the net stack growth, the coder's overhead (growth minus
    information content) in bits per image, and the symbols' excess over the bound per image with
    its standard error (sampling noise: zero in expectation when the popped latents are samples
    of q and the grids, windows and snapping cost nothing)."""
    from ..coding.bitsback import GRID_FRACTION

    diff, chain, imgs = _random_chain(steps, n, side, seed, grid)
    words, st, n_init = _code(diff, chain, imgs, r, seed, pad)
    D = side * side
    net, info = 32 * (len(words) - n_init) / n, float(np.mean(st.bound_bits))
    bound = np.array([closed_form_bound(diff, chain, im, r) for im in imgs]) * D
    sampled = np.array(st.bound_bits) - bound          # the symbols' information minus the bound
    return {"r": r, "steps": steps, "images": n, "dims": D, "pad": pad, "grid": grid or GRID_FRACTION,
            "bound_bpd": float(bound.mean() / D),
            "info_minus_bound_bits": float(sampled.mean()),
            "info_minus_bound_sem_bits": float(sampled.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
            "info_bpd": info / D, "net_bpd": net / D, "coder_overhead_bits": net - info}
