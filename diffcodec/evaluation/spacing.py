"""The K-step respacing that minimises a model's bound, by dynamic programming (Watson et al. 2021).

A respaced chain keeps steps 0 = k_0 < k_1 < ... < k_{K-1} = T - 1 of the model's T. Its bound is
L_T + sum_i L(k_i -> k_{i-1}) + L_0, and each jump's expected KL,

    L(t -> s) = E_{x_0, x_t ~ q(x_t | x_0)} KL(q(x_s | x_t, x_0) || p_theta(x_s | x_t)),

needs the network only at x_t: the respaced posterior q(x_s | x_t, x_0) and p_theta's mean follow from
alpha-bar at t and s and x0_hat(x_t, t), and a learned variance interpolates (in log space) between
the jump's beta and its posterior variance with the network's own fraction. So one network call per
original step and image prices every jump out of it (T^2 / 2 jumps from T calls), and a shortest-path
recursion over the number of jumps finds the best chain of any length. L_0 (the discretized decoder
at step 0) depends on the chain through k_1 only (its variance's lower end is the variance of the
posterior of the jump k_1 -> 0), so it is charged to the jump into 0. L_T does not depend on the chain.

Costs are one-sample estimates (one x_t per step and image), so a fitted chain's estimated bound is
optimistic: measure it with ``bpd --steps`` on other images.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..core.diffusion import LN2, VarianceType, discretized_gaussian_log_likelihood
from ..distributed import image_noise, my_indices, sum_across
from ..io.datasets import dims_of, same_size_batches
from ..io.pixels import to_model_tensor
from .bpd import network_for


def _fraction(var_type: VarianceType, v: torch.Tensor | None, t: int):
    """Where p_theta's log-variance sits between the posterior's (0) and beta's (1): a tensor per
    dimension for a learned variance, else one number (a fixed large variance is the posterior's at
    step 0, as in the reference code)."""
    if var_type is VarianceType.LEARNED_RANGE:
        return (v + 1.0) / 2.0
    return 1.0 if var_type is VarianceType.FIXED_LARGE and t > 0 else 0.0


def _sum_device(device: torch.device) -> torch.device:
    """Where the float64 sums run: the network's device, unless it lacks float64 (Apple's MPS)."""
    return torch.device("cpu") if device.type == "mps" else device


def _jumps_from(t: int, abar: np.ndarray, f: torch.Tensor, err2: torch.Tensor, chunk: int) -> torch.Tensor:
    """Nats of KL for every jump t -> s (s < t), summed over dimensions, averaged over images.

    With beta = 1 - abar_t / abar_s, the posterior variance bt = beta (1 - abar_s) / (1 - abar_t),
    c = beta sqrt(abar_s) / (1 - abar_t) (the posterior mean's weight on x_0), a = log(beta / bt) and
    p's log-variance log bt + f a, the KL per dimension is
    0.5 (f a + exp(-f a) (1 + c^2 (x_0 - x0_hat)^2 / bt) - 1).
    f, err2: [N, D] float64 on the device the sums run on; for a fixed variance f is one number
    (the same fraction in every dimension), and the sums need no [N, D, S] tensor.
    """
    s = np.arange(t)
    beta = 1.0 - abar[t] / abar[s]
    bt = beta * (1.0 - abar[s]) / (1.0 - abar[t])
    dev = err2.device
    c2_over_bt = torch.from_numpy((beta * np.sqrt(abar[s]) / (1.0 - abar[t])) ** 2 / bt).to(dev)
    a = torch.from_numpy(np.log(beta / bt)).to(dev)
    n, d = err2.shape
    if not isinstance(f, torch.Tensor):       # fixed variance: exp(-f a) is one number per jump
        e = torch.exp(-f * a)
        return (0.5 * (f * a * d + e * (d + c2_over_bt * err2.sum(1).mean()) - d)).cpu()
    out = torch.empty(t, dtype=torch.float64, device=dev)
    f_sum = f.sum(1).mean()
    for lo in range(0, t, chunk):
        aa = a[lo:lo + chunk]
        e = torch.exp(-f[:, :, None] * aa)                       # [N, D, S]
        mass, weighted = e.sum(1).mean(0), (err2[:, :, None] * e).sum(1).mean(0)
        out[lo:lo + chunk] = 0.5 * (aa * f_sum + mass + c2_over_bt[lo:lo + chunk] * weighted - d)
    return out.cpu()


def _decoder_costs(abar: np.ndarray, x0: torch.Tensor, x0_hat: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
    """Nats of L_0 for each possible k_1 (index t = 1..T-1; entry 0 unused), averaged over images.

    p(x_0 | x at step 0) has mean x0_hat and log-variance f0 log beta_0 + (1 - f0) log bt, where
    beta_0 = 1 - abar_0 and bt is the posterior variance of the jump k_1 -> 0.
    """
    T = len(abar)
    out = torch.full((T,), float("inf"), dtype=torch.float64, device=x0.device)
    log_b0 = math.log(1.0 - abar[0])
    for t in range(1, T):
        beta = 1.0 - abar[t] / abar[0]
        log_bt = math.log(beta * (1.0 - abar[0]) / (1.0 - abar[t]))
        log_var = f0 * log_b0 + (1.0 - f0) * log_bt
        ll = discretized_gaussian_log_likelihood(x0, x0_hat, 0.5 * log_var)
        out[t] = -ll.flatten(1).sum(1).mean()
    return out.cpu()


def costs_at(diffusion, net, x0: torch.Tensor, t: int, x_t: torch.Tensor) -> torch.Tensor:
    """Bits per image, averaged over the batch, from one network call at (x_t, t) of the full chain:
    for t > 0 the KL of every jump t -> s (entry s, s < t); for t = 0 the decoder's L_0 for every k_1
    (entry k_1 > 0). Shape [T], on the CPU; unused entries are inf."""
    T, abar = diffusion.num_timesteps, diffusion.alphas_cumprod
    tt = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
    eps, v = diffusion.split_output(net(x_t, diffusion.model_t(tt)), x_t)
    x0_hat = diffusion.predict_xstart_from_eps(x_t, tt, eps).clamp(-1.0, 1.0)
    dev = _sum_device(x0.device)
    f = _fraction(diffusion.var_type, v, t)
    if isinstance(f, torch.Tensor):
        f = f.to(dev, torch.float64)
    out = torch.full((T,), float("inf"), dtype=torch.float64)
    if t == 0:
        f0 = f if isinstance(f, torch.Tensor) else torch.full_like(x0, f, dtype=torch.float64, device=dev)
        out[1:] = _decoder_costs(abar, x0.to(dev, torch.float64), x0_hat.to(dev, torch.float64), f0)[1:] / LN2
    else:
        err2 = ((x0 - x0_hat) ** 2).to(dev, torch.float64).flatten(1)
        chunk = max(1, int(2e7 // err2.numel()))
        out[:t] = _jumps_from(t, abar, f.flatten(1) if isinstance(f, torch.Tensor) else f, err2, chunk) / LN2
    return out


@torch.no_grad()
def jump_costs(loaded, images: np.ndarray, batch_size: int = 50, seed: int = 0, progress=None) -> dict:
    """Estimated bits per image of every jump of the model's full chain, on uint8 images [N, C, H, W].

    Returns ``jumps`` [T, T] (entry [t, s], s < t: the KL of jumping from step t to s; inf elsewhere),
    ``decoder`` [T] (L_0 when k_1 = t), ``prior`` (L_T, bits per image) and ``dims``. Each image's
    x_t are drawn as ``bpd`` draws them for the full chain. Under torchrun each rank prices its share
    of the images and the sums are added up on every rank. ``progress(n)`` is called after each
    step of each batch of images.
    """
    diffusion = loaded.diffusion(None)
    T = diffusion.num_timesteps
    dims = float(np.mean(dims_of(images)))               # per image (the mean for mixed sizes)
    jumps = torch.zeros(T, T, dtype=torch.float64)     # sums over this rank's images
    decoder = torch.zeros(T, dtype=torch.float64)
    prior = torch.zeros(1, dtype=torch.float64)
    mine = my_indices(len(images))
    for idx, batch in same_size_batches(images, mine, batch_size):
        idx = np.asarray(idx)
        x0 = to_model_tensor(batch).to(loaded.device)
        noise = image_noise(seed, idx, x0.shape[1:], loaded.device)
        net = network_for(loaded, *x0.shape[-2:])
        prior += float(diffusion.prior_bpd(x0).sum()) * x0[0].numel()
        for t in reversed(range(T)):
            tt = torch.full((len(idx),), t, dtype=torch.long, device=x0.device)
            row = len(idx) * costs_at(diffusion, net, x0, t, diffusion.q_sample(x0, tt, noise(t)))
            if t == 0:
                decoder += row
            else:
                jumps[t] += row
            if progress:
                progress(1)
    jumps, decoder, prior = (sum_across(v) / len(images) for v in (jumps, decoder, prior))
    jumps[0] = float("inf")
    return {"jumps": jumps.numpy(), "decoder": decoder.numpy(), "prior": float(prior), "dims": dims}


def best_spacing(jumps: np.ndarray, decoder: np.ndarray, n: int) -> tuple[list[int], float]:
    """The n kept steps (0 and T - 1 included) minimising sum of jump costs + decoder cost, and that
    minimum (in the costs' units). Shortest path with exactly n - 1 jumps from T - 1 down to 0."""
    T = jumps.shape[0]
    if not 2 <= n <= T:
        raise ValueError(f"need 2 <= steps <= {T}, got {n}")
    edges = jumps.copy()
    edges[:, 0] = jumps[:, 0] + decoder                    # the jump into step 0 also pays L_0
    cost = np.full(T, np.inf)
    cost[T - 1] = 0.0
    back = np.zeros((n - 1, T), dtype=np.int64)
    for j in range(n - 1):
        total = cost[:, None] + edges                      # [from t, to s]
        back[j] = np.argmin(total, axis=0)
        cost = total[back[j], np.arange(T)]
    kept = [0]
    for j in reversed(range(n - 1)):
        kept.append(int(back[j][kept[-1]]))
    if kept[-1] != T - 1 or not np.isfinite(cost[0]):
        raise ValueError(f"no chain of {n} steps")
    return sorted(kept), float(cost[0])


def chain_cost(jumps: np.ndarray, decoder: np.ndarray, kept: list[int]) -> float:
    """The same costs summed along a given chain (ascending kept steps, 0 and T - 1 included)."""
    kept = sorted(kept)
    if kept[0] != 0 or kept[-1] != jumps.shape[0] - 1:
        raise ValueError("a chain priced by jump costs must keep step 0 and the last step")
    return float(sum(jumps[t, s] for s, t in zip(kept[:-1], kept[1:])) + decoder[kept[1]])


def fit_spacing(loaded, images: np.ndarray, n: int, batch_size: int = 50, seed: int = 0,
                progress=None) -> dict:
    """The n-step chain of least estimated bound on uint8 images [N, C, H, W].

    Returns ``steps`` (the kept original steps, ascending), ``bpd`` (its estimated bound on these
    images, optimistic for the chain chosen on them) and ``estimate(steps)``, the same estimate for
    any other chain (bits/dim).
    """
    T = loaded.diffusion(None).num_timesteps
    if not 2 <= n <= T:
        raise ValueError(f"a chain of {n} steps: the model has {T}, and a chain needs at least 2")
    costs = jump_costs(loaded, images, batch_size, seed, progress)
    kept, best = best_spacing(costs["jumps"], costs["decoder"], n)

    def estimate(steps) -> float:
        return (chain_cost(costs["jumps"], costs["decoder"], steps) + costs["prior"]) / costs["dims"]

    return {"steps": kept, "bpd": (best + costs["prior"]) / costs["dims"], "estimate": estimate}
