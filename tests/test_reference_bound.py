"""The package's bound, Table 4 and ideal rates against an independent re-derivation
(``reference_bound.py``: own schedule, posterior, learned-range variance, KL and decoder)."""
import numpy as np
import pytest

from conftest import synthetic_images
from reference_bound import bound_terms
from diffcodec.coding.progressive import estimate_image
from diffcodec.evaluation.bpd import evaluate_bpd
from diffcodec.evaluation.table4 import table4

T = 40   # the tiny model's chain


@pytest.fixture(scope="module")
def images():
    return synthetic_images(6, seed=11)[:, None]        # [6, 1, 8, 8] uint8


@pytest.mark.parametrize("steps", [None, "10"])
def test_bpd_matches_an_independent_derivation(tiny, images, steps):
    res = evaluate_bpd(tiny, images, steps, seed=3)
    L_T, terms = bound_terms(tiny.net, images, T, res["steps_kept"], seed=3)
    np.testing.assert_allclose(res["per_image_bpd"], L_T + terms.sum(1), rtol=2e-4)
    np.testing.assert_allclose(res["vb_bpd"], terms.mean(0), rtol=2e-4, atol=1e-6)
    assert res["L_T_bpd"] == pytest.approx(L_T.mean(), rel=1e-6)


def test_table4_rates_match_an_independent_sum(tiny, images):
    doc = table4(tiny, images, seed=0, blocks=4)
    L_T, terms = bound_terms(tiny.net, images, T, list(range(T)), seed=0)
    # after k reverse steps: L_T plus the KL terms of chain indices T-1 .. T-k (L_0 is distortion)
    kl = terms[:, 1:].mean(0)[::-1]
    expected = L_T.mean() + np.cumsum(np.append(kl, 0.0))
    got = [r["rate_bpd"] for r in doc["rows"]]
    np.testing.assert_allclose(got, expected[[r["steps"] - 1 for r in doc["rows"]]], rtol=2e-4)
    assert doc["L_0_bpd"] == pytest.approx(terms[:, 0].mean(), rel=2e-4)


def test_ideal_rate_is_the_bound_in_expectation(tiny):
    """The ideal estimator charges KL(q || p_theta) along a chain of exact posterior samples, so its
    summed KL per image is an unbiased estimate of the bound's L_1..L_{N-1} (L_T is near 0 here and
    the chain starts from the prior). Both sides are one-sample estimates: 4 standard errors."""
    imgs = synthetic_images(24, seed=12)[:, None]
    kept = evaluate_bpd(tiny, imgs[:1], "10")["steps_kept"]
    _, terms = bound_terms(tiny.net, imgs, T, kept, seed=5)
    ideal = np.array([sum(r.kl_bits for r in estimate_image(tiny, im, "10", seed=k).records) / im.size
                      for k, im in enumerate(imgs)])
    diff = ideal - terms[:, 1:].sum(1)
    assert all(r.bits == 0 for r in estimate_image(tiny, imgs[0], "10").records)
    assert abs(diff.mean()) < 4 * diff.std(ddof=1) / np.sqrt(len(diff)) + 0.01, (ideal.mean(), terms[:, 1:].sum(1).mean())
    assert diff.std(ddof=1) / np.sqrt(len(diff)) < 0.1 * terms[:, 1:].sum(1).mean()   # the test has power
