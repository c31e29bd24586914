"""What is left of each step's rate after the variance rescale (``core.scales.RESCALE``): could a
correction of p_theta's *mean*, or a variance scale per level of the network's own variance, take
more, and how much of it would the previous step's residual recover (no side information)? On
validation photos.

Along rcc's default chain (x_{i-1} drawn from q with a fixed seed; the network as the codec runs
it for the size, its variance times the residual scale r_i), each step's KL(q || p_theta) in bits
per pixel with:
- ``now``: p as the codec has it (mean mu_p, variance r_i sigma_p^2);
- ``var``: the variance times the one per-step scale that minimises the step's KL (an oracle);
- ``bins``: the variance times an oracle scale for each quarter of the dimensions ranked by the
  network's sigma_p^2;
- ``eps``: the network's predicted noise times 1 + a (x0_hat -> x0_hat + a (x0_hat - x_i /
  sqrt(abar_i))), exact where x0_hat is not clipped to [-1, 1]; a by weighted least squares
  against mu_q (oracle), then the oracle variance scale;
- ``span``: the mean corrected within span{c1 x0_hat, c1 x_i, c1 per channel} (5 numbers per step,
  oracle), then the oracle variance scale;
- ``eps_res``: ``eps`` with a estimated from the previous step's residual, x_i - mu_{i+1}, along
  that step's direction (what a codec could do with no side information), variance times the
  residual scale of the corrected mean.

Per photo, the sum over the chain and to the first step reaching 38 dB (quality 75), as changes
against ``now``; and the oracle a every few steps.

    python eval/studies/mean_scale.py [--sizes 256x256,768x512] [--photos 045,...] [--out FILE]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coarse_steps import photo_sets, report_columns, validation_args  # noqa: E402

from diffcodec.coding.base import gaussian_kl_bits  # noqa: E402
from diffcodec.coding.randomness import PURPOSE_XT, normals  # noqa: E402
from diffcodec.core import precision  # noqa: E402
from diffcodec.core.adapter import NetworkAdapter, residual_scale  # noqa: E402
from diffcodec.evaluation.metrics import psnr  # noqa: E402
from diffcodec.io.pixels import to_model, to_pixels  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402

COLUMNS = ("now", "var", "bins", "eps", "span", "eps_res")


def best_scale(mu_q, var_q, mu_p, var_p) -> float:
    return float(np.mean((var_q + (mu_q - mu_p) ** 2) / var_p))


def wls(directions: list[np.ndarray], target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Coefficients c minimising sum weight (target - sum_k c_k directions_k)^2."""
    A = np.stack(directions, 1) * np.sqrt(weight)[:, None]
    return np.linalg.lstsq(A, target * np.sqrt(weight), rcond=None)[0]


def chain(loaded, image: np.ndarray, steps: str, seed: int = 0) -> dict:
    C, H, W = image.shape
    fmt = precision.encoder_network(loaded.device, image.shape, None, loaded.tiling, loaded.scales)
    net = NetworkAdapter(loaded, steps, image.shape, fmt)
    abar = net.diffusion.alphas_cumprod
    c1 = net.diffusion.posterior_mean_coef1
    x0 = to_model(image).ravel()
    x = normals(seed, PURPOSE_XT, 0, x0.size)
    rng = np.random.default_rng(seed)
    rec = {"bits": {c: [] for c in COLUMNS}, "psnr": [], "a": []}
    channel = np.repeat(np.arange(C), H * W)
    out = net.out(x, net.num_steps - 1)
    prev = None     # the previous step's network mean, unscaled variance and eps direction
    for i in range(net.num_steps - 1, 0, -1):
        mu_q, var_q = net.posterior_mean(x0, x, i), net.posterior_variance(i)
        mu_p, var_p = out["mean"], out["variance"]      # variance already times r_i
        x0h = out["pred_xstart"]
        kl = lambda m, v: float(gaussian_kl_bits(mu_q, var_q, m, v).sum()) / (H * W)  # noqa: E731
        bits = {"now": kl(mu_p, var_p), "var": kl(mu_p, var_p * best_scale(mu_q, var_q, mu_p, var_p))}
        if np.ptp(var_p) > 0:
            ranks = np.argsort(np.argsort(var_p, kind="stable"), kind="stable") * 4 // var_p.size
            v_bins = var_p.copy()
            for b in range(4):
                m = ranks == b
                v_bins[m] *= best_scale(mu_q[m], var_q, mu_p[m], var_p[m])
            bits["bins"] = kl(mu_p, v_bins)
        else:   # one variance (a blank step): no levels to tell apart
            bits["bins"] = bits["var"]
        d_eps = c1[i] * (x0h - x / np.sqrt(abar[i]))
        w = 1.0 / var_p
        a = float(wls([d_eps], mu_q - mu_p, w)[0]) if np.any(d_eps) else 0.0
        m_eps = mu_p + a * d_eps
        bits["eps"] = kl(m_eps, var_p * best_scale(mu_q, var_q, m_eps, var_p))
        dirs = [c1[i] * x0h, c1[i] * x] + [c1[i] * (channel == k) for k in range(C)]
        dirs = [d for d in dirs if np.any(d)]
        coef = wls(dirs, mu_q - mu_p, w)
        m_span = mu_p + sum(c * d for c, d in zip(coef, dirs))
        bits["span"] = kl(m_span, var_p * best_scale(mu_q, var_q, m_span, var_p))
        # backward-adaptive: a and the variance scale from x_i's residual against the previous
        # step's network mean along that step's direction (one step late, no side information)
        sig2 = var_p / out["scale"]
        if prev is not None:
            p_mu, p_sig2, p_d = prev
            a_res = float(wls([p_d], x - p_mu, 1.0 / p_sig2)[0])
            r_res = residual_scale(x, {"mean": p_mu + a_res * p_d, "variance": p_sig2, "scale": 1.0})
        else:
            a_res, r_res = 0.0, out["scale"]
        bits["eps_res"] = kl(mu_p + a_res * d_eps, sig2 * r_res)
        prev = (mu_p, sig2, d_eps)
        for c in COLUMNS:
            rec["bits"][c].append(bits[c])
        rec["a"].append(a)
        x_next = mu_q + np.sqrt(var_q) * rng.standard_normal(x.size)
        before = out
        x = x_next
        out = net.out(x, i - 1, net.scale_after(x, before))
        rec["psnr"].append(psnr(to_pixels(out["pred_xstart"]), image.ravel()))
    return rec


def main():
    args = validation_args(__doc__)
    loaded = load_model(args.model)
    lines = [f"model {args.model}, centre crops of validation photos {args.photos}; bits per pixel of "
             "'now', the others as changes against it",
             "size     photo  | to 38 dB: " + " ".join(COLUMNS) + " | full chain: " + " ".join(COLUMNS)]

    def row(label, to38, full):
        cell = lambda d, c: f"{d[c]:.4f}" if c == "now" else f"{100 * (d[c] / d['now'] - 1):+.1f}%"  # noqa: E731
        return f"{label} | " + " ".join(cell(to38, c) for c in COLUMNS) + " | " + " ".join(cell(full, c) for c in COLUMNS)

    report_columns(loaded, photo_sets(args), COLUMNS, chain, row,
                   lambda name, rec: f"{'':8s} {name} oracle a every 8th step: "
                   + " ".join(f"{v:+.3f}" for v in rec["a"][::8]), lines, args.out)


if __name__ == "__main__":
    main()
