"""Bits-back ANS lossless coding: exact round trips, rate against the bound, mismatch detection."""
import numpy as np
import pytest

from conftest import synthetic_images
from diffcodec.coding.bitsback import BitsBackMismatch, decode_chain, encode_chain
from diffcodec.evaluation.lossless import run_chain


def test_chain_rate_against_the_models_bound(tiny):
    """The chained coded rate against ``evaluate_bpd`` of the same chain on the same images (an
    independent computation: analytic KL terms at sampled x_t, no coder involved). Each side is a
    one-sample estimate per image, so the test allows four standard errors of their difference."""
    images = synthetic_images(48, seed=7)[:, None]             # [48, 1, 8, 8] uint8
    res = run_chain(tiny, images, steps="10")                  # decodes and compares inside
    assert res["images"] == 48 and res["lossless"]
    assert abs(res["excess_pct"]) <= 4 * res["excess_pct_sem"] + 0.5
    assert res["excess_pct_sem"] < 2.0                         # the test has power


def test_window_escapes_round_trip():
    """Latents far outside p's window (an overconfident p) are escaped and still decode exactly."""
    import constriction

    from diffcodec.coding import bitsback as bb

    chain = bb.Chain(None, np.array([0.0, 0.01]), np.array([0, 5000]), np.array([0, 42]))
    rng = np.random.default_rng(0)
    mu = rng.uniform(-100, 100, 300)
    sd = rng.uniform(2, 9, 300)
    k = np.round(mu + sd * rng.standard_normal(300)).astype(np.int32)
    k[::7] = rng.integers(-5000, 5001, len(k[::7]))           # far outliers: escaped
    coder = constriction.stream.stack.AnsCoder()
    bits = bb._push_p(coder, chain, 1, k, mu, sd)
    assert abs(coder.num_bits() - bits) < 64                   # bytes written vs information content
    assert np.array_equal(bb._pop_p(coder, chain, 1, mu, sd), k)


def test_rgb_any_size(tinyrgb):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(2, 3, 6, 10), dtype=np.uint8)
    words, _, n_init = encode_chain(tinyrgb, images, steps="5")
    out = decode_chain(tinyrgb, words, 2, (3, 6, 10), steps="5", n_initial=n_init)
    assert np.array_equal(out, images)


def test_corrupt_stream_is_reported(tiny):
    images = synthetic_images(2, seed=8)[:, None]
    words, _, n_init = encode_chain(tiny, images, steps="5")
    bad = words.copy()
    bad[-1] ^= np.uint32(0x5A5A5A5A)
    with pytest.raises(BitsBackMismatch):
        out = decode_chain(tiny, bad, 2, images.shape[1:], steps="5", n_initial=n_init)
        # should the words happen to unwind, the pixels cannot all come back
        if not np.array_equal(out, images):
            raise BitsBackMismatch("pixels differ")


class _OffPosterior:
    """A reverse process p(z_{j-1} | z_j) that is the true posterior q(z_{j-1} | z_j, x_0) with its
    variance scaled by ``r`` (the exact decoder p(x_0 | z_1) is left alone), so every KL term has a
    closed form."""

    def __init__(self, diffusion, x0, r):
        self.diffusion, self.x0, self.r = diffusion, x0, r

    def out(self, z, i):
        d = self.diffusion
        mean = d.posterior_mean_coef1[i] * self.x0 + d.posterior_mean_coef2[i] * z
        var = d.posterior_variance[i] * self.r if i else np.exp(d.posterior_log_variance_clipped[0])
        return {"mean": mean, "variance": np.full(z.size, var)}


def test_coded_rate_matches_a_closed_form_bound_when_p_is_off(monkeypatch):
    """With p off the posterior, the bits the encoder pushes under p are not uniform; popping the
    next latent from them drew it away from q (the "dirty bits" of BB-ANS): with p's variance 1.5x
    the posterior's, the chain cost +0.22 bits/dim over its bound here. The one-time pad on the
    stack's top must bring the coded rate to the closed-form bound L_T + sum_j KL_j + L_0 (no coder
    and no network in the reference; KL_j uses p's scale as the coder snaps it to 7 bits)."""
    import math

    from scipy import stats

    from diffcodec.coding import bitsback as bb
    from diffcodec.core.diffusion import GaussianDiffusion
    from diffcodec.core.schedules import named_betas, respace_betas, space_timesteps
    from diffcodec.io.pixels import to_model

    N, r, side = 20, 1.5, 256
    diff = GaussianDiffusion(respace_betas(named_betas("cosine", 1000), space_timesteps(1000, N)))
    img = np.random.default_rng(0).integers(0, 256, (1, 1, side, side)).astype(np.uint8)
    x0 = to_model(img.reshape(-1).astype(np.int32))
    chain = bb.Chain.build(diff)
    monkeypatch.setattr(bb, "_setup", lambda loaded, steps, shape: (chain, _OffPosterior(diff, x0, r)))
    words, stats_, n_init = bb.encode_chain(None, img, None, 0, 16)
    D = img.size
    abar = diff.alphas_cumprod[-1]
    L_T = 0.5 * (abar * np.mean(x0 ** 2) + (1 - abar) - 1 - math.log(1 - abar))
    kl = 0.0
    for i in range(1, N):       # KL(N(mu, v) || N(mu, s^2)) per dimension, nats
        v = diff.posterior_variance[i]
        s = float(bb._snap_scale(np.array([math.sqrt(r * v) / chain.delta[i]]))[0]) * chain.delta[i]
        kl += 0.5 * math.log(s * s / v) + v / (2 * s * s) - 0.5
    sd0 = math.sqrt(math.exp(diff.posterior_log_variance_clipped[0])) * 127.5     # pixel units
    k = img.reshape(-1).astype(float)
    lo, hi = np.where(k == 0, -np.inf, k - 0.5), np.where(k == 255, np.inf, k + 0.5)
    L_0 = -np.log2(stats.norm.cdf(hi, k, sd0) - stats.norm.cdf(lo, k, sd0)).mean()
    bound = (L_T + kl) / math.log(2) + L_0
    # sampling noise: the log-ratio of two centred Gaussians has variance (1 - 1/r)^2 / 2 nats^2
    noise = math.sqrt((N - 1) * (1 - 1 / r) ** 2 / 2 / D) / math.log(2)
    assert abs(stats_.net_bits[0] / D - bound) < 4 * noise + 0.005, (stats_.net_bits[0] / D, bound, noise)
    out = bb.decode_chain(None, words, 1, img.shape[1:], None, 0, n_init)
    assert np.array_equal(out, img)
