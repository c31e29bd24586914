"""The diffusion math against independent computations."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from diffcodec.core.diffusion import (GaussianDiffusion, discretized_gaussian_log_likelihood, normal_kl)
from diffcodec.core.schedules import named_betas



@pytest.fixture(autouse=True)
def float64_default():
    """These checks compare against float64 references; restore the default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def diff():
    return GaussianDiffusion(named_betas("linear", 50), "fixedsmall")


def test_posterior_matches_bayes_rule_on_a_grid(diff):
    """q(x_{t-1} | x_t, x_0) propto q(x_t | x_{t-1}) q(x_{t-1} | x_0), on a dense 1-D grid."""
    x0, xt, i = 0.3, -0.4, 20
    abar_prev = diff.alphas_cumprod[i - 1]
    grid = np.linspace(-6, 6, 200001)
    log_post = (stats.norm.logpdf(xt, np.sqrt(diff.alphas[i]) * grid, np.sqrt(diff.betas[i]))
                + stats.norm.logpdf(grid, np.sqrt(abar_prev) * x0, np.sqrt(1 - abar_prev)))
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    mean = (w * grid).sum()
    var = (w * (grid - mean) ** 2).sum()
    t = torch.tensor([i])
    m, v, _ = diff.q_posterior_mean_variance(torch.full((1, 1), x0), torch.full((1, 1), xt), t)
    assert m.item() == pytest.approx(mean, abs=1e-7)
    assert v.item() == pytest.approx(var, rel=1e-5)


def test_q_sample_moments(diff):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.full((200000,), 0.7)
    t = torch.full((200000,), 30)
    xt = diff.q_sample(x0, t, torch.randn(200000, generator=gen))
    assert xt.mean().item() == pytest.approx(math.sqrt(diff.alphas_cumprod[30]) * 0.7, abs=5e-3)
    assert xt.var().item() == pytest.approx(1 - diff.alphas_cumprod[30], rel=1e-2)


def test_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(1)
    m1, lv1, m2, lv2 = 0.3, math.log(0.5), -0.2, math.log(1.7)
    x = m1 + math.exp(0.5 * lv1) * torch.randn(400000, generator=gen)
    logq = torch.distributions.Normal(m1, math.exp(0.5 * lv1)).log_prob(x)
    logp = torch.distributions.Normal(m2, math.exp(0.5 * lv2)).log_prob(x)
    mc = (logq - logp).mean().item()
    assert normal_kl(m1, lv1, m2, lv2).item() == pytest.approx(mc, abs=5e-3)


def test_decoder_probabilities_sum_to_one():
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, log_scale in [(0.0, -3.0), (0.99, -5.0), (-1.2, 0.5), (0.5, -8.0)]:
        lp = discretized_gaussian_log_likelihood(levels, torch.full_like(levels, mean),
                                                 torch.full_like(levels, log_scale))
        assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)


def test_decoder_matches_scipy_for_a_known_gaussian():
    """Bits of pixels under a known discretized Gaussian, computed independently with scipy."""
    rng = np.random.default_rng(0)
    pix = rng.integers(0, 256, 500)
    x = pix / 127.5 - 1
    mean, std = 0.1, 0.3
    lo = np.where(pix == 0, -np.inf, x - 1 / 255)
    hi = np.where(pix == 255, np.inf, x + 1 / 255)
    expected = -np.log2(stats.norm.cdf(hi, mean, std) - stats.norm.cdf(lo, mean, std)).mean()
    lp = discretized_gaussian_log_likelihood(torch.tensor(x), torch.full((500,), mean),
                                             torch.full((500,), math.log(std)))
    assert (-lp.mean().item() / math.log(2)) == pytest.approx(expected, rel=1e-9)


def test_prior_bpd_closed_form():
    # a short chain so that L_T is far from zero and the check is not lost in rounding
    diff = GaussianDiffusion(np.full(10, 0.2), "fixedsmall")
    x0 = torch.zeros(2, 3)
    abar = diff.alphas_cumprod[-1]
    # KL(N(0, 1 - abar) || N(0, 1)) = 0.5 (-1 - log(1 - abar) + 1 - abar) nats
    expected = 0.5 * (-math.log1p(-abar) - abar) / math.log(2)
    np.testing.assert_allclose(diff.prior_bpd(x0).numpy(), expected, rtol=1e-9)


class OracleModel(torch.nn.Module):
    """E[eps | x_t] for data x_0 ~ N(0, s^2): a linear function of x_t."""

    def __init__(self, diffusion, s):
        super().__init__()
        self.d, self.s = diffusion, s

    def forward(self, x, t):
        abar = torch.from_numpy(self.d.alphas_cumprod)[t.long()].view(-1, *([1] * (x.dim() - 1)))
        return (1 - abar).sqrt() * x / (abar * self.s ** 2 + 1 - abar)


def test_bound_of_gaussian_data_under_oracle_is_close_to_entropy():
    """For x_0 ~ N(0, s^2) discretised to 8 bits, the bound with the exact denoiser must be at
    least the true code length and close to it with many steps."""
    s = 0.25
    d = GaussianDiffusion(named_betas("linear", 400), "fixedlarge")
    gen = torch.Generator().manual_seed(3)
    pix = torch.clamp(torch.round((s * torch.randn(64, 1, 4, 4, generator=gen) + 1) * 127.5), 0, 255)
    x0 = pix / 127.5 - 1
    res = d.calc_bpd_loop(OracleModel(d, s), x0, lambda i: torch.randn(x0.shape, generator=gen))
    # true code length: -log2 of the bin probability of the discretised Gaussian
    lo, hi = (x0 - 1 / 255).numpy(), (x0 + 1 / 255).numpy()
    true_bits = -np.log2(stats.norm.cdf(hi, 0, s) - stats.norm.cdf(lo, 0, s)).mean()
    bound = res["total_bpd"].mean().item()
    assert np.isfinite(bound)
    assert true_bits - 0.05 < bound < true_bits + 0.6


def test_respaced_model_sees_original_timesteps():
    d = GaussianDiffusion.from_config("linear", 1000, "fixedsmall", "10")
    assert d.num_timesteps == 10
    assert d.model_t(torch.tensor([0, 9])).tolist() == [0.0, 999.0]
