"""Bits-back ANS lossless coding: exact round trips, rate against the bound, mismatch detection."""
import numpy as np
import pytest

from conftest import synthetic_images
from diffcodec.coding.bitsback import BitsBackMismatch, decode_chain, encode_chain
from diffcodec.evaluation.lossless import run_chain


def test_chain_round_trip_and_rate_matches_bound(tiny):
    images = synthetic_images(8, seed=7)[:, None]              # [8, 1, 8, 8] uint8
    res = run_chain(tiny, images, steps="10")                  # decodes and compares inside
    assert res["images"] == 8 and res["lossless"]
    # the coded net rate is the bound's information content up to ANS's tiny overhead; the stack
    # is measured in whole 32-bit words, so allow one word over the chain
    word = 32 / (8 * 64)
    assert abs(res["net_bpd"] - res["bound_bpd"]) <= word + 0.01 * res["bound_bpd"]
    # one image alone also pays the bits it borrowed; the stream holds the initial words
    assert res["single_image_bpd"] > res["net_bpd"]
    assert res["file_bpd"] == pytest.approx(res["net_bpd"] + res["initial_bpd"], abs=0.01)


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
