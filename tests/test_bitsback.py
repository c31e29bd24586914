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
    # the quantized pmfs the coder used cost the same as the continuous densities on that path
    grids, grids_sem = res["excess_split_pct"]["grids"]
    assert abs(grids) < 0.2 and grids_sem < 0.1, res["excess_split_pct"]


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


def test_grids_cost_what_their_width_predicts_where_p_is_off_the_posterior():
    """Pushing q's samples under p's binned pmf costs about (delta / sigma_p)^2 / 24 * (1 - var_q /
    var_p) nats per symbol more than p's continuous density. With var_p = 1.2 var_q over 200 steps
    that is about 24 bits per 28x28 image on grids of sigma / 8 and 1.5 on grids of sigma / 32: the
    symbols' cost over the continuous path must follow (measured 20 and 1.3)."""
    from diffcodec.evaluation.clean_bits import chained

    cost = {}
    for grid in (8, 32):
        res = chained(r=1.2, steps=200, n=5, grid=grid)
        cost[grid] = (res["info_bpd"] - res["path_bpd"]) * res["dims"]
    assert 12.0 < cost[8] < 36.0 and abs(cost[32]) < 5.0, cost
