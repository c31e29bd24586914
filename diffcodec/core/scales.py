"""Coarse network evaluations at high noise: the network sees x_t pooled by f at large t.

Averaging each f x f block of x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps keeps the signal's
block mean and divides the noise's standard deviation by f, so the pooled image, scaled by
c = sqrt(abar_t' / abar_t), is a noisy image of the block-averaged x_0 at the timestep t' whose
signal-to-noise ratio abar / (1 - abar) is f^2 that of t (the nearest of the model's T). The
network's x0_hat there, upsampled (bilinear), gives x0_hat at full resolution; it is returned as
the raw output (eps, v) that gives this x0_hat at (x_t, t), so p_theta is formed as for any step.

At high noise the best x0_hat is smooth, so little is lost, and the call costs 1/f^2 of the
network. The pooled image shows the network f times the context, which a model trained on small
crops turns into lower rates (eval/README.md, "Coarse steps"). Every operation here is an
elementwise float64 numpy operation in a fixed order, so this part is the same whatever the thread
count; the network's call is as thread-safe as the format's other calls (1, 2 and 4 threads).

At the chain's first step (cosine schedule, abar_999 = 2.4e-9) no timestep has f^2 its
signal-to-noise ratio, so t' = t and the pooled image is shown at a noise level it does not have;
the network's x0_hat there is meaningless pooled or not (eval/README.md, "Coarse steps").

A schedule is named like "2t400-4t700": factor 2 from original timestep 400 (0-based, what the
network sees), 4 from 700; a model's ``inference`` section may name one of SCHEDULES. A last tier
of factor 0 ("0t999", BLANK) makes no call at all from its timestep: x0_hat = 0 and p's variance
is q's (the posterior variance), so p_theta(x_{t-1} | x_t) = N(posterior_mean_coef2 x_t, beta~_t).
At the cosine schedule's first step that costs 37% of the bits the network's meaningless x0_hat
costs on the validation photos (eval/README.md, "A blank first step").

A schedule may end in "v" (RESCALE): from the second step on, p's variance is the network's times
r_i, the previous step's realised residual (``core.adapter.residual_scale``). The network's
learned variance is calibrated on its training crops and the full 1000-step chain; on the codec's
respaced chains it is up to 8% too wide on photos at mid noise, where a step carries little, so
that is a large part of its rate there (and a few percent too narrow in the last steps of a
256x256 chain). x_i was drawn from p_theta(x_i | x_{i+1}) coded against q, so
mean_d (x_i - mu_{i+1})^2 / sigma^2_{i+1} measures how wide the variance should have been there
(var_q + (mu_q - mu_p)^2 on average), and it changes slowly along the chain. Both sides compute it
from what they share: no side information (eval/README.md, "Variance from the last step").
"""
from __future__ import annotations

import re

import numpy as np

SCHEDULES = ("2t400-4t700", "2t400-4t700-0t999", "2t400-4t700-0t999-v",   # photo's, oldest first
             "0t999-v")          # ... and since 2026-12-07 its ``whole`` part, for images run whole
BLANK = 0                       # the factor of a tier that makes no network call (x0_hat = 0)
RESCALE = "v"                   # a schedule's last part: variances rescaled by the last step's residual


def parse(name: str) -> tuple[tuple[int, int], ...]:
    """((factor, first timestep), ...) of a schedule name, factors rising (BLANK, 0, counts as the
    largest and may only come last), without its RESCALE part (``rescales``); ValueError if
    malformed."""
    tiers = []
    parts = name.split("-") if name else []
    if rescales(name):
        parts.pop()
    for part in parts:
        m = re.fullmatch(r"([02-9]|[1-9][0-9]+)t(0|[1-9][0-9]*)", part)
        if m is None:
            raise ValueError(f"bad scale schedule {name!r}")
        tiers.append((int(m[1]), int(m[2])))
    rank = [f or float("inf") for f, _ in tiers]
    if any(a >= b for a, b in zip(rank, rank[1:])) or any(a[1] >= b[1] for a, b in zip(tiers, tiers[1:])):
        raise ValueError(f"bad scale schedule {name!r}: factors and timesteps must rise")
    return tuple(tiers)


def join(tiers, rescale: bool = False) -> str:
    """The schedule name of ``tiers`` ((factor, first timestep), ...), ending in RESCALE if
    ``rescale``: the inverse of ``parse`` and ``rescales``."""
    return "-".join([f"{f}t{t}" for f, t in tiers] + ([RESCALE] if rescale else []))


def rescales(name: str) -> bool:
    """Whether a schedule name ends in RESCALE: each step's variance rescaled by the previous
    step's residual."""
    return name.split("-")[-1] == RESCALE


def pools(name: str) -> bool:
    """Whether a schedule has a tier that pools (factor 2 or more): such tiers apply only over the
    model's tiles, where the pooled view widens the network's context."""
    return any(f > 1 for f, _ in parse(name))


def whole(name: str) -> str:
    """The part of a schedule that applies where the network sees the image whole (images no
    larger than the model's tile): its blank tier and its rescale, without the pooling tiers
    ("0t999-v" for "2t400-4t700-0t999-v"; "" where nothing is left). There the pooled view shows
    nothing new and costs a little, while the blank first step and the rescale gain nearly as
    much as over tiles (eval/README.md, "Small images")."""
    return join([tier for tier in parse(name) if tier[0] == BLANK], rescales(name))


def factor(tiers, t: int) -> int:
    """The pooling factor of original timestep t under ``tiers`` (``parse``): 1 below the first,
    BLANK (0) where no call is made."""
    f = 1
    for k, start in tiers:
        if t >= start:
            f = k
    return f


def coarse_timestep(alphas_cumprod: np.ndarray, t: int, f: int) -> int:
    """t': the timestep whose abar is nearest to that of f^2 times t's signal-to-noise ratio."""
    snr = f * f * alphas_cumprod[t] / (1.0 - alphas_cumprod[t])
    return int(np.argmin(np.abs(alphas_cumprod - snr / (1.0 + snr))))


def pool(x: np.ndarray, f: int) -> np.ndarray:
    """Mean of each f x f block of x [C, H, W] (the image padded by its last row and column to a
    multiple of f) -> [C, ceil(H / f), ceil(W / f)]."""
    C, H, W = x.shape
    x = np.pad(x, ((0, 0), (0, -H % f), (0, -W % f)), mode="edge")
    out = np.zeros((C, x.shape[1] // f, x.shape[2] // f))
    for a in range(f):
        for b in range(f):
            out += x[:, a::f, b::f]
    return out * (1.0 / (f * f))


def _taps(n_out: int, n_in: int, f: int):
    """Bilinear weights along one axis (pixel centres, source clamped at the edges): for each output
    index, the two source indices and the second one's weight."""
    src = np.maximum((np.arange(n_out) + 0.5) / f - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    return lo, np.minimum(lo + 1, n_in - 1), src - lo


def upsample(x: np.ndarray, f: int, H: int, W: int) -> np.ndarray:
    """Bilinear upsampling of x [C, h, w] by f, cropped to [C, H, W] (as ``pool`` padded)."""
    lo, hi, w = _taps(H, x.shape[1], f)
    rows = x[:, lo] * (1.0 - w)[:, None] + x[:, hi] * w[:, None]
    lo, hi, w = _taps(W, x.shape[2], f)
    return rows[:, :, lo] * (1.0 - w) + rows[:, :, hi] * w


def nearest(x: np.ndarray, f: int, H: int, W: int) -> np.ndarray:
    """x [C, h, w] with each value repeated f x f times, cropped to [C, H, W]."""
    return x.repeat(f, axis=1).repeat(f, axis=2)[:, :H, :W]


def coarse_output(run, x: np.ndarray, t: int, f: int, alphas_cumprod: np.ndarray,
                  learn_sigma: bool) -> np.ndarray:
    """The raw network output [2C or C, H, W] (float32, as the network's) standing for the network
    at (x_t, t), made from one call at 1/f resolution. x: x_t [C, H, W] float64; run(y, t') -> the
    network's raw output on the pooled image y [C, h, w] at original timestep t' as float64
    [out_C, h, w]. Computed channel by channel in float64, so a large image's temporaries stay a
    channel's."""
    C, H, W = x.shape
    t2 = coarse_timestep(alphas_cumprod, t, f)
    a, a2 = alphas_cumprod[t], alphas_cumprod[t2]
    y = pool(x, f) * np.sqrt(a2 / a)
    raw = run(y, t2)
    x0 = np.clip((y - np.sqrt(1.0 - a2) * raw[:C]) * (1.0 / np.sqrt(a2)), -1.0, 1.0)
    out = np.empty((2 * C if learn_sigma else C, H, W), dtype=np.float32)
    for c in range(C):
        out[c] = (x[c] - np.sqrt(a) * upsample(x0[c:c + 1], f, H, W)[0]) * (1.0 / np.sqrt(1.0 - a))
        if learn_sigma:
            out[C + c] = nearest(raw[C + c:C + c + 1], f, H, W)[0]
    return out
