"""An independent re-derivation of the variational bound, for tests to compare the package against.

Everything but the network and the noise is written out again here from the papers, in float64
numpy/scipy, without importing the package's diffusion, schedule, pixel or evaluation code: the
cosine schedule (Nichol & Dhariwal), respacing by cumulative alphas, the posterior
q(x_{t-1} | x_t, x_0), the learned-range variance, the Gaussian KL, and the discretized decoder
(exact normal CDF, open edge bins, probabilities clamped at 1e-12). The noise is drawn the way
``bpd`` documents it (one torch generator per image, seeded seed * 1_000_003 + index, one draw per
term from the last step down), so both sides see the same x_t.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats


def cosine_alphas_cumprod(T: int) -> np.ndarray:
    """abar_t for t = 1..T of the cosine schedule, with each beta capped at 0.999."""
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    betas = np.array([min(1 - f(t + 1) / f(t), 0.999) for t in range(T)])
    return np.cumprod(1 - betas)


def respaced_posterior(T: int, kept) -> dict:
    """The cosine schedule respaced to the kept steps: alpha-bar at each kept step and the one
    before it, the jump's beta, the posterior variance (and its log, the first entry copied from
    the second, as the clipped log-variance of improved DDPM), and the posterior mean's weights
    c1 on x_0 and c2 on x_t."""
    abar = cosine_alphas_cumprod(T)[kept]
    abar_prev = np.append(1.0, abar[:-1])
    beta = 1 - abar / abar_prev
    post_var = beta * (1 - abar_prev) / (1 - abar)
    return {"abar": abar, "abar_prev": abar_prev, "beta": beta, "post_var": post_var,
            "log_post": np.log(np.append(post_var[1], post_var[1:])),
            "c1": beta * np.sqrt(abar_prev) / (1 - abar), "c2": (1 - abar_prev) * np.sqrt(1 - beta) / (1 - abar)}


def bound_terms(net, images: np.ndarray, T: int, kept: list[int], seed: int = 0,
                alphas_cumprod: np.ndarray | None = None, var_type: str = "learned_range"):
    """Per image, in bits/dim: L_T [N] and the terms [N, S] of the chain on timesteps ``kept``
    (0-based, ascending; column 0 is L_0), for a learned-range cosine model ``net``; or for the
    schedule with abar_t = ``alphas_cumprod[t - 1]`` (t = 1..T) and ``var_type`` "learned_range",
    "fixed_small" (the posterior variance, its step-2 value at step 1) or "fixed_large" (beta_t,
    the posterior variance of step 2 at step 1), with ``net`` predicting eps (and v)."""
    full = cosine_alphas_cumprod(T) if alphas_cumprod is None else np.asarray(alphas_cumprod, np.float64)
    abar = full[kept]
    abar_prev = np.append(1.0, abar[:-1])
    beta = 1 - abar / abar_prev
    post_var = beta * (1 - abar_prev) / (1 - abar)
    log_post = np.log(np.append(post_var[1], post_var[1:]))
    c1 = beta * np.sqrt(abar_prev) / (1 - abar)
    c2 = (1 - abar_prev) * np.sqrt(1 - beta) / (1 - abar)
    n, C = images.shape[:2]
    x0 = images.astype(np.float64) / 127.5 - 1
    gens = [torch.Generator().manual_seed(seed * 1_000_003 + i) for i in range(n)]
    S, D = len(kept), x0[0].size
    terms = np.zeros((n, S))
    for i in reversed(range(S)):
        noise = torch.stack([torch.randn(images.shape[1:], generator=g) for g in gens]).double().numpy()
        xt = math.sqrt(abar[i]) * x0 + math.sqrt(1 - abar[i]) * noise
        with torch.no_grad():
            out = net(torch.from_numpy(xt).float(), torch.full((n,), float(kept[i]))).double().numpy()
        eps, v = out[:, :C], out[:, C:]
        if var_type == "fixed_small":
            v = -np.ones_like(eps)                    # all the way to the posterior end
        elif var_type == "fixed_large":
            v = np.ones_like(eps) if i else -np.ones_like(eps)   # beta_t, and beta~_2 at step 1
        x0_hat = np.clip((xt - math.sqrt(1 - abar[i]) * eps) / math.sqrt(abar[i]), -1, 1)
        mean = c1[i] * x0_hat + c2[i] * xt
        log_var = (v + 1) / 2 * math.log(beta[i]) + (1 - v) / 2 * log_post[i]
        if i == 0:
            sd = np.exp(0.5 * log_var)
            lo = np.where(x0 < -0.999, -np.inf, x0 - 1 / 255)
            hi = np.where(x0 > 0.999, np.inf, x0 + 1 / 255)
            p = np.maximum(stats.norm.cdf(hi, mean, sd) - stats.norm.cdf(lo, mean, sd), 1e-12)
            nats = -np.log(p)
        else:
            true_mean = c1[i] * x0 + c2[i] * xt
            nats = 0.5 * (log_var - math.log(post_var[i]) + (post_var[i] + (true_mean - mean) ** 2)
                          / np.exp(log_var) - 1)
        terms[:, i] = nats.reshape(n, D).mean(1) / math.log(2)
    a = full[kept[-1]]
    L_T = 0.5 * (a * x0 ** 2 + (1 - a) - 1 - math.log(1 - a)).reshape(n, D).mean(1) / math.log(2)
    return L_T, terms
