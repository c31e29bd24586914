"""Gaussian diffusion in the DDPM paper's notation.

Images live in [-1, 1]. Tables are float64 numpy arrays; tensors are gathered per batch with
``_extract``. The network is passed in (``model(x_t, t_orig) -> output``) and knows nothing about
diffusion. No function here draws its own noise: every random quantity is an argument, which is the
seam the codec uses. All ``*_bpd`` results are bits per dimension; log-likelihoods are in nats.
"""
from __future__ import annotations

import enum
import math

import numpy as np
import torch

from .schedules import named_betas, respace_betas, space_timesteps

LN2 = math.log(2.0)


class VarianceType(str, enum.Enum):
    """How the reverse variance Sigma_theta(x_t, t) is chosen."""
    FIXED_SMALL = "fixedsmall"      # posterior variance beta~_t
    FIXED_LARGE = "fixedlarge"      # beta_t (beta~_2 at the first step, as in the reference code)
    LEARNED_RANGE = "learned_range"  # improved DDPM: log-interpolation between the two


class LossType(str, enum.Enum):
    SIMPLE = "simple"   # L_simple = ||eps - eps_theta||^2
    HYBRID = "hybrid"   # L_simple + lambda * L_vlb (lambda = 0.001, variance only)


def _extract(arr: np.ndarray, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """arr[t] as a tensor broadcastable to ``like`` ([B, 1, 1, 1])."""
    out = torch.from_numpy(arr).to(device=t.device)[t].to(like.dtype)
    return out.view(-1, *([1] * (like.dim() - 1)))


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.dim())))


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    mean1, logvar1, mean2, logvar2 = (torch.as_tensor(v) for v in (mean1, logvar1, mean2, logvar2))
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Standard normal CDF via erf (exact up to float precision)."""
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor,
                                        log_scales: torch.Tensor) -> torch.Tensor:
    """log p(x) in nats per element, for x on the 256-level grid of [-1, 1].

    Bins have width 2/255 centred on the pixel values; the lowest bin extends to -inf and the
    highest to +inf, so the 256 probabilities sum to one. Probabilities are clamped at 1e-12.
    """
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(
        x < -0.999, log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


class GaussianDiffusion:
    """Forward process q, posteriors, reverse process p_theta and the variational bound.

    ``betas`` are the betas of the chain actually run (possibly respaced); ``timestep_map[i]`` is the
    original 0-based timestep that chain step i corresponds to, which is what the network sees.
    """

    def __init__(self, betas: np.ndarray, var_type: VarianceType | str = VarianceType.FIXED_SMALL,
                 timestep_map: list[int] | None = None, original_T: int | None = None):
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or (betas <= 0).any() or (betas > 1).any():
            raise ValueError("betas must be a 1-D array in (0, 1]")
        self.betas = betas
        self.var_type = VarianceType(var_type)
        self.num_timesteps = T = len(betas)
        self.timestep_map = np.arange(T) if timestep_map is None else np.asarray(timestep_map)
        self.original_T = original_T or T

        self.alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)
        # q(x_{t-1} | x_t, x_0)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        pv1 = self.posterior_variance[1] if T > 1 else betas[0]
        self.posterior_log_variance_clipped = np.log(np.append(pv1, self.posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas) / (1.0 - self.alphas_cumprod)
        self.fixed_large_log_variance = np.log(np.append(pv1, betas[1:]))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, schedule: str, num_timesteps: int, var_type: str,
                    steps: str | int | None = None) -> "GaussianDiffusion":
        """The (optionally respaced) diffusion of a model config; see ``space_timesteps``."""
        base = named_betas(schedule, num_timesteps)
        kept = space_timesteps(num_timesteps, steps)
        return cls(respace_betas(base, kept), var_type, kept, num_timesteps)

    # ------------------------------------------------------------------ forward process
    def q_mean_variance(self, x_start, t):
        mean = _extract(self.sqrt_alphas_cumprod, t, x_start) * x_start
        var = _extract(1.0 - self.alphas_cumprod, t, x_start)
        return mean, var, torch.log(var)

    def q_sample(self, x_start, t, noise):
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise."""
        return (_extract(self.sqrt_alphas_cumprod, t, x_start) * x_start
                + _extract(self.sqrt_one_minus_alphas_cumprod, t, x_start) * noise)

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = (_extract(self.posterior_mean_coef1, t, x_t) * x_start
                + _extract(self.posterior_mean_coef2, t, x_t) * x_t)
        return (mean, _extract(self.posterior_variance, t, x_t),
                _extract(self.posterior_log_variance_clipped, t, x_t))

    # ------------------------------------------------------------------ reverse process
    def model_t(self, t: torch.Tensor) -> torch.Tensor:
        """Original timesteps (float) that the network is conditioned on."""
        return torch.from_numpy(self.timestep_map).to(t.device)[t].float()

    def predict_xstart_from_eps(self, x_t, t, eps):
        """Paper Eq. 15: x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        return (_extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t
                - _extract(self.sqrt_recipm1_alphas_cumprod, t, x_t) * eps)

    def predict_eps_from_xstart(self, x_t, t, x_start):
        return ((_extract(self.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x_start)
                / _extract(self.sqrt_recipm1_alphas_cumprod, t, x_t))

    def model_log_variance(self, t, x_t, var_output=None):
        """log Sigma_theta for the configured variance type; var_output in [-1, 1] if learned."""
        if self.var_type is VarianceType.FIXED_SMALL:
            return _extract(self.posterior_log_variance_clipped, t, x_t).expand_as(x_t)
        if self.var_type is VarianceType.FIXED_LARGE:
            return _extract(self.fixed_large_log_variance, t, x_t).expand_as(x_t)
        min_log = _extract(self.posterior_log_variance_clipped, t, x_t)
        max_log = _extract(np.log(self.betas), t, x_t)
        frac = (var_output + 1.0) / 2.0
        return frac * max_log + (1.0 - frac) * min_log

    def split_output(self, output, x_t):
        """(eps, var_output or None) from a raw network output."""
        if self.var_type is VarianceType.LEARNED_RANGE:
            eps, v = torch.split(output, x_t.shape[1], dim=1)
            return eps, v
        return output, None

    def p_mean_variance(self, model, x_t, t, clip_denoised: bool = True, output=None):
        """Mean and variance of p_theta(x_{t-1} | x_t), plus x0_hat and eps_theta.

        ``output`` may hold a precomputed network output for (x_t, t).
        """
        if output is None:
            output = model(x_t, self.model_t(t))
        eps, v = self.split_output(output, x_t)
        log_var = self.model_log_variance(t, x_t, v)
        x0_hat = self.predict_xstart_from_eps(x_t, t, eps)
        if clip_denoised:
            x0_hat = x0_hat.clamp(-1.0, 1.0)
        mean, _, _ = self.q_posterior_mean_variance(x0_hat, x_t, t)
        return {"mean": mean, "variance": torch.exp(log_var), "log_variance": log_var,
                "pred_xstart": x0_hat, "eps": eps}

    def p_sample(self, model, x_t, t, noise):
        """One ancestral step (Algorithm 2); noise is ignored where t == 0."""
        out = self.p_mean_variance(model, x_t, t)
        nonzero = (t != 0).float().view(-1, *([1] * (x_t.dim() - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return sample, out

    def ddim_step(self, x_t, t, eps):
        """Deterministic (eta = 0) step from x_t to x_{t-1} given eps_theta."""
        return self.ddim_step_from_xstart(x_t, t, self.predict_xstart_from_eps(x_t, t, eps).clamp(-1, 1))

    def ddim_step_from_xstart(self, x_t, t, x0):
        """The same step given a (clipped) x0_hat: x_{t-1} = sqrt(abar_{t-1}) x0_hat +
        sqrt(1 - abar_{t-1}) eps(x_t, x0_hat). Works in x_t's dtype (float64 for the codec)."""
        eps = self.predict_eps_from_xstart(x_t, t, x0)
        abar_prev = _extract(self.alphas_cumprod_prev, t, x_t)
        return x0 * abar_prev.sqrt() + (1 - abar_prev).sqrt() * eps

    # ------------------------------------------------------------------ variational bound
    def prior_bpd(self, x_start):
        """L_T = KL(q(x_T | x_0) || N(0, I)) in bits per dimension, per example."""
        t = torch.full((x_start.shape[0],), self.num_timesteps - 1, dtype=torch.long,
                       device=x_start.device)
        mean, _, logvar = self.q_mean_variance(x_start, t)
        return mean_flat(normal_kl(mean, logvar, torch.zeros_like(mean), torch.zeros_like(logvar))) / LN2

    def vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised: bool = True, output=None):
        """L_{t-1} (KL, bits/dim) where t > 0 and L_0 (decoder NLL, bits/dim) where t == 0."""
        true_mean, _, true_logvar = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised, output)
        kl = mean_flat(normal_kl(true_mean, true_logvar, out["mean"], out["log_variance"])) / LN2
        nll = -mean_flat(discretized_gaussian_log_likelihood(
            x_start, out["mean"], 0.5 * out["log_variance"])) / LN2
        return {"output": torch.where(t == 0, nll, kl), "pred_xstart": out["pred_xstart"]}

    def training_losses(self, model, x_start, t, noise, loss_type: LossType | str = LossType.SIMPLE):
        """Per-example training loss. Hybrid adds the L_vlb term (through the variance only)."""
        loss_type = LossType(loss_type)
        x_t = self.q_sample(x_start, t, noise)
        output = model(x_t, self.model_t(t))
        eps, v = self.split_output(output, x_t)
        loss = mean_flat((noise - eps) ** 2)
        if self.var_type is VarianceType.LEARNED_RANGE:
            if loss_type is not LossType.HYBRID:
                raise ValueError("a learned variance needs the hybrid loss")
            frozen = torch.cat([eps.detach(), v], dim=1)
            vb = self.vb_terms_bpd(model, x_start, x_t, t, clip_denoised=False, output=frozen)["output"]
            loss = loss + vb * self.num_timesteps / 1000.0
        return loss

    def distillation_losses(self, model, teacher, x_start, t, noise):
        """Per-example mean squared difference between ``model``'s and ``teacher``'s raw outputs
        (eps and, where learned, the variance interpolation v) at x_t ~ q(x_t | x_0): a student
        learning a trained network's p_theta, with targets free of the noise eps's variance."""
        x_t = self.q_sample(x_start, t, noise)
        with torch.no_grad():
            target = teacher(x_t, self.model_t(t))
        return mean_flat((model(x_t, self.model_t(t)) - target) ** 2)

    @torch.no_grad()
    def calc_bpd_loop(self, model, x_start, noise_fn, clip_denoised: bool = True):
        """The full bound L_T + sum_t L_{t-1} + L_0 per example, in bits/dim.

        noise_fn(t) returns fresh standard normal noise shaped like x_start for step t (a fresh x_t
        per term gives an unbiased estimate of every term). Returns total_bpd [B], prior_bpd [B],
        vb [B, T] (vb[:, 0] is L_0) and mse [B, T] of x0_hat.
        """
        B, T = x_start.shape[0], self.num_timesteps
        vb, mse = torch.zeros(B, T), torch.zeros(B, T)
        for i in reversed(range(T)):
            t = torch.full((B,), i, dtype=torch.long, device=x_start.device)
            x_t = self.q_sample(x_start, t, noise_fn(i))
            out = self.vb_terms_bpd(model, x_start, x_t, t, clip_denoised)
            vb[:, i] = out["output"].cpu()
            mse[:, i] = mean_flat((out["pred_xstart"] - x_start) ** 2).cpu()
        prior = self.prior_bpd(x_start).cpu()
        return {"total_bpd": vb.sum(1) + prior, "prior_bpd": prior, "vb": vb, "mse": mse}
