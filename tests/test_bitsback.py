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


def test_coded_rate_against_the_bound_of_its_own_path(tiny):
    """The stack's growth over a chain of images against the one-sample bound of the latents it
    actually coded, computed from continuous densities, the network's unsnapped outputs and bpd's
    discretized decoder (bitsback._path_step). The two share the path, so no sampling noise lies
    between them: over the whole chain they may differ by the stack's word granularity (32 bits)
    plus what the coder costs per image (grids, windows, snapping, the pad: well under a bit
    here). A tail outlier popped from q (about 35 bits each, the old failure) would not fit."""
    images = synthetic_images(48, seed=7)[:, None]
    res = run_chain(tiny, images, steps="10")
    D = res["dims"]
    net, path = np.array(res["per_image_net_bpd"]) * D, np.array(res["per_image_path_bpd"]) * D
    assert abs(net.sum() - path.sum()) <= 32 + 0.5 * len(images), (net.sum(), path.sum())
    # the path bound is itself an estimate of the bound: against bpd's, within sampling noise
    m, e = res["excess_split_pct"]["sampling"]
    assert abs(m) <= 4 * e + 0.5


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


def test_escaped_latents_cost_about_their_density():
    """Latents past p's window, drawn from the Gaussian's own tail, are coded as an escape plus
    their distance under the tail's decay: on average they must cost no more than a bit over -log2
    of their Gaussian bin masses (scipy), where coding them on the whole grid cost about 21 bits
    more. (They may cost less: the escape bin gets the coder's floor, 2^-24, a little more than the
    tail's mass, which the other symbols pay for at about 1e-7 bits each.)"""
    from scipy.stats import norm, truncnorm

    from diffcodec.coding import bitsback as bb
    from diffcodec.coding.entropy import gauss_op, info_bits

    chain = bb.Chain(None, np.array([0.0, 0.01]), np.array([0, 5000]), np.array([0, 42]))
    for sd in (8.0, 11.0, 20.0):
        w = int(bb._p_windows(chain, 1, np.array([sd]))[0])
        x = truncnorm.rvs((w + 0.5) / sd, np.inf, scale=sd, size=300, random_state=1)
        k = np.round(x).astype(np.int64)
        exact = -np.log2(norm.sf((k - 0.5) / sd) - norm.sf((k + 0.5) / sd)).mean()
        coded = np.mean([sum(info_bits(gauss_op(*op)) for op in bb._p_ops(chain, 1, k[i:i + 1], np.zeros(1), np.full(1, sd)))
                         for i in range(len(k))])
        assert coded - exact < 1.0, (sd, coded, exact)


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


def test_coded_rate_matches_a_closed_form_bound_when_p_is_off():
    """With p off the posterior, the bits the encoder pushes under p are not uniform; popping the
    next latent from them draws it away from q (the "dirty bits" of BB-ANS). With p's variance 1.5x
    the posterior's the chain must cost its closed-form bound with the pad (within 4 standard
    errors) and more without it, both decoding exactly (evaluation.clean_bits)."""
    from diffcodec.evaluation.clean_bits import check

    res = check(r=1.5, steps=20, side=256)
    assert abs(res["coded_bpd"] - res["bound_bpd"]) < 4 * res["noise_bpd"] + 0.005, res
    assert res["coded_without_pad_bpd"] - res["bound_bpd"] > 20 * res["noise_bpd"], res


def test_chained_images_cost_their_closed_form_bound_with_p_the_posterior():
    """Several images on one stack decode exactly, and with p the posterior (r = 1) the symbols'
    information content and the stack's growth both sit at the closed-form bound."""
    from diffcodec.evaluation.clean_bits import chained

    res = chained(r=1.0, steps=50, n=5)
    assert abs(res["info_bpd"] - res["bound_bpd"]) < 0.01 * res["bound_bpd"], res
    assert -1.0 < res["coder_overhead_bits"] < 16.0, res
