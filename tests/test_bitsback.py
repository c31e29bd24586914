"""Bits-back ANS lossless coding: exact round trips, rate against the bound, mismatch detection."""
import numpy as np
import pytest
import torch

from conftest import synthetic_images
from diffcodec.coding.bitsback import BitsBackMismatch, decode_chain, encode_chain
from diffcodec.evaluation.lossless import run_chain


def reference_path_bits(net, images: np.ndarray, T: int, kept: list, latents: np.ndarray) -> np.ndarray:
    """Per image, the bits a BB-ANS chain nets on the latents it popped, from reference_bound's
    schedule and formulas (float64, none of the package's diffusion code): sum_j log2 q(z_j | z_{j-1})
    - sum_j log2 p(z_{j-1} | z_j) - log2 N(z_N; 0, I), with continuous densities (each latent's
    bin width enters once under q and once under p and cancels), p_theta's learned-range Gaussian
    and, for x_0, the discretized decoder (exact normal CDF, open edge bins). ``latents`` [n, N, D]:
    z_j = x at chain index j - 1 (kept[j - 1]), j = 1..N. Its mean over latents drawn from q is the
    chain's bound."""
    from scipy import stats

    from reference_bound import respaced_posterior

    r = respaced_posterior(T, kept)
    abar, abar_prev, beta, post_var, log_post, c1, c2 = (r[k] for k in ("abar", "abar_prev", "beta", "post_var",
                                                                        "log_post", "c1", "c2"))
    n, C = images.shape[:2]
    N = len(kept)

    def log2_normal(x, mean, var):
        return np.sum(-0.5 * ((x - mean) ** 2 / var + np.log(2 * np.pi * var))) / np.log(2)

    out = np.zeros(n)
    for k in range(n):
        x0, z = images[k].astype(np.float64).ravel() / 127.5 - 1, latents[k]
        with torch.no_grad():
            o = net(torch.from_numpy(z.reshape(N, *images.shape[1:])).float(),
                    torch.tensor(kept, dtype=torch.float32)).double().numpy().reshape(N, 2 * C, -1)
        eps, v = o[:, :C].reshape(N, -1), o[:, C:].reshape(N, -1)
        bits, prev = -log2_normal(z[N - 1], 0.0, 1.0), x0
        for i in range(N):                                   # z_{i+1}, at chain index i
            bits += log2_normal(z[i], np.sqrt(1 - beta[i]) * prev, beta[i])
            x0_hat = np.clip((z[i] - np.sqrt(1 - abar[i]) * eps[i]) / np.sqrt(abar[i]), -1, 1)
            mean = c1[i] * x0_hat + c2[i] * z[i]
            log_var = (v[i] + 1) / 2 * np.log(beta[i]) + (1 - v[i]) / 2 * log_post[i]
            if i == 0:
                sd = np.exp(0.5 * log_var)
                lo = np.where(x0 < -0.999, -np.inf, x0 - 1 / 255)
                hi = np.where(x0 > 0.999, np.inf, x0 + 1 / 255)
                bits -= np.sum(np.log2(np.maximum(stats.norm.cdf(hi, mean, sd) - stats.norm.cdf(lo, mean, sd), 1e-12)))
            else:
                bits -= log2_normal(z[i - 1], mean, np.exp(log_var))
            prev = z[i]
        out[k] = bits
    return out


N_IMAGES, STEPS = 48, "10"
KEPT = [0, 4, 9, 13, 17, 22, 26, 30, 35, 39]      # "10" of the tiny model's T = 40


@pytest.fixture(scope="module")
def chain(tiny):
    """``run_chain`` (encode, decode, compare, report) on 48 images over 10 steps, with the latents
    its encoder popped (every network call's input, recorded), the reference's bits on them and the
    reference's bound on the same images at seed 0 (run_chain's) and averaged over seeds 0-7, in
    bits per image."""
    from diffcodec.core.adapter import NetworkAdapter
    from reference_bound import bound_terms

    images = synthetic_images(N_IMAGES, seed=7)[:, None]             # [48, 1, 8, 8] uint8
    calls, out = [], NetworkAdapter.out

    def recording(self, x, i):
        calls.append((i, np.array(x, np.float64)))
        return out(self, x, i)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NetworkAdapter, "out", recording)
        res = run_chain(tiny, images, steps=STEPS)                # decodes and compares inside
    n, N = N_IMAGES, len(KEPT)
    assert res["images"] == n and res["lossless"]
    # the encoder's last try (after any with too few initial words) then the decoder's calls
    enc = calls[-2 * n * N:-n * N]
    assert [i for i, _ in enc] == list(range(N)) * n
    latents = np.stack([x for _, x in enc]).reshape(n, N, -1)
    D = images[0].size
    bounds = [D * (L_T + terms.sum(1))
              for L_T, terms in (bound_terms(tiny.net, images, 40, KEPT, seed=s) for s in range(8))]
    return {"res": res, "path": reference_path_bits(tiny.net, images, 40, KEPT, latents),   # all in bits per image
            "bound0": bounds[0], "bound8": np.mean(bounds, 0)}


def test_chain_rate_against_the_bound_of_its_own_path(chain):
    """The chained coded rate against the reference's bits on the latents the encoder actually
    popped: no sampling noise lies between the two, so what is left is what the coder costs
    (grids, windows, snapping, the quantizer's floor, the pad, the coder's x_0 pmf) plus the stack's
    32-bit word granularity, which the sum over the chain telescopes to one word. Measured on ten
    chains (images seeds 7-16, chain seeds 0-9): +25 to +52 bits over 48 images (mean 37, sd 9.5;
    this one +25), 0.5 to 1.1 bits per image, +0.16% to +0.32% of the bound (333 bits per 8x8
    image; fmnist's 28x28 images at 100 steps: 0.5 bits per image, +0.02%). Allowed: -32 to
    32 + 0.75 bits per image = 68 bits (3.3 sd above the mean), -0.2% to +0.42%. p's scales
    snapped 5% wide (+348 bits) or q's windows cut at 2 sigma (+3023 bits) fail, though both still
    decode exactly. The package's own path bound (what
    eval bitsback reports as the coding/sampling split) and its bpd bound are checked against the
    reference on the same latents and noise."""
    res, D = chain["res"], chain["res"]["dims"]
    path, bound0 = chain["path"], chain["bound0"]
    np.testing.assert_allclose(res["per_image_path_bpd"], path / D, atol=6e-5)          # stored to 4 decimals
    np.testing.assert_allclose(res["per_image_bound_bpd"], bound0 / D, atol=6e-5)
    assert res["bound_bpd"] == pytest.approx(bound0.mean() / D, rel=2e-4)
    net = np.array(res["per_image_net_bpd"]) * D
    coder = net.sum() - path.sum()
    assert -32 <= coder <= 32 + 0.75 * N_IMAGES, coder
    assert res["net_bpd"] == pytest.approx(net.mean() / D, abs=1e-4)
    assert res["excess_pct"] == pytest.approx(100 * (net.mean() / bound0.mean() - 1), abs=0.01)


def test_popped_latents_are_samples_of_q(chain):
    """The reference's bits on the popped latents against its bound, averaged over eight noise
    seeds: equal in expectation if every popped latent is a sample of q (the pad's job), so the
    test allows four standard errors of their difference over images. Measured on ten chains: the
    mean difference -0.84% to +0.77% (z-scores -1.35 to +1.30) with a standard error of 0.55% to
    0.81% of the bound, so the window is about +-3% (it was +-8.5%: four standard errors of a
    single-seed estimate, plus 0.5 points). The coder's own cost is held to -0.2%..+0.42% by the
    test above, which sees no sampling noise; what only this test can see is latents that are not
    samples of q although the coder charges them correctly: dirty bits. Without the pad they move
    this chain by -1.9% (z = -2.8), within its window: 48 images of the tiny model cannot resolve
    that, test_coded_rate_matches_a_closed_form_bound_when_p_is_off does."""
    path, bound = chain["path"], chain["bound8"]
    d = 100 * (path - bound) / bound.mean()
    sem = d.std(ddof=1) / np.sqrt(len(d))
    assert abs(d.mean()) <= 4 * sem, (d.mean(), sem)
    assert sem < 1.0                                              # the test has power


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
