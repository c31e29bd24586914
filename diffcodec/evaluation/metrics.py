"""Image and curve metrics: PSNR, MS-SSIM, and Bjontegaard deltas (BD-rate, BD-PSNR) between
rate-distortion curves."""
from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


_MS_SSIM_WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def _ssim_parts(x: np.ndarray, y: np.ndarray):
    from scipy.ndimage import gaussian_filter

    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    f = lambda v: gaussian_filter(v, 1.5, truncate=3.5)  # noqa: E731  (11x11 window)
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    cs = (2 * sxy + C2) / (sxx + syy + C2)
    lum = (2 * mx * my + C1) / (mx * mx + my * my + C1)
    return float(np.mean(lum * cs)), float(np.mean(cs))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (Wang et al. 2003, 5 scales) of uint8 [C, H, W] images, channels averaged; None when
    the image is too small for 5 scales (shorter side under 161 pixels)."""
    if min(a.shape[1:]) < 161:
        return None
    vals = []
    for c in range(a.shape[0]):
        x, y = a[c].astype(np.float64), b[c].astype(np.float64)
        mcs = []
        for s in range(5):
            ssim, cs = _ssim_parts(x, y)
            mcs.append(cs)
            if s < 4:
                h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
                x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
                y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        terms = np.maximum(np.array(mcs[:4] + [ssim]), 1e-12)
        vals.append(float(np.prod(terms ** _MS_SSIM_WEIGHTS)))
    return float(np.mean(vals))


BD_RANGE_DB = (20.0, 50.0)   # the PSNR range BD-rates are reported over, where both curves reach


def _monotone(rate, psnr):
    """The curve's points in rate order that improve on every cheaper point (an RD curve that
    decreases in quality with more bits is not a curve a codec user would choose from)."""
    order = np.argsort(rate, kind="stable")
    r, d, best = [], [], -np.inf
    for k in order:
        if psnr[k] > best:
            best = psnr[k]
            if r and rate[k] == r[-1]:      # same rate, better quality: it replaces the point
                r.pop(), d.pop()
            r.append(rate[k])
            d.append(psnr[k])
    return np.array(r), np.array(d)


def _bd_integrals(r1, d1, r2, d2, swap: bool, bounds=None):
    """Average difference of two curves (Bjontegaard) over their shared range, within ``bounds``
    (the distortion range for BD-rate). Curves are interpolated piecewise-cubically and monotonely
    (PCHIP, as in later Bjontegaard tools) rather than by one global cubic, so dense curves spanning
    tens of dB are followed where they bend."""
    from scipy.integrate import trapezoid
    from scipy.interpolate import PchipInterpolator

    (r1, d1), (r2, d2) = _monotone(r1, d1), _monotone(r2, d2)
    if min(len(r1), len(r2)) < 2:
        return None
    lr1, lr2 = np.log10(r1), np.log10(r2)
    if swap:   # BD-rate: integrate log-rate over distortion
        x1, y1, x2, y2 = d1, lr1, d2, lr2
    else:      # BD-PSNR: integrate distortion over log-rate
        x1, y1, x2, y2 = lr1, d1, lr2, d2
    lo, hi = max(min(x1), min(x2)), min(max(x1), max(x2))
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    if hi <= lo:
        return None
    grid = np.linspace(lo, hi, 2001)
    f1, f2 = PchipInterpolator(x1, y1)(grid), PchipInterpolator(x2, y2)(grid)
    return float(trapezoid(f2 - f1, grid) / (hi - lo))


def _bd_delta(anchor_rate, anchor_psnr, test_rate, test_psnr, swap: bool, bounds=None):
    pts = [np.asarray(v, np.float64) for v in (anchor_rate, anchor_psnr, test_rate, test_psnr)]
    if min(len(pts[0]), len(pts[2])) < 2:
        return None
    return _bd_integrals(pts[0], pts[1], pts[2], pts[3], swap, bounds)


def bd_rate(anchor_rate, anchor_psnr, test_rate, test_psnr, psnr_range=None) -> float | None:
    """Bjontegaard delta rate (%) of test against anchor at equal PSNR; negative = test saves bits.
    ``psnr_range`` (lo, hi) in dB limits the comparison (None: wherever both curves reach)."""
    d = _bd_delta(anchor_rate, anchor_psnr, test_rate, test_psnr, True, psnr_range)
    return None if d is None else float((10 ** d - 1) * 100)


def bd_psnr(anchor_rate, anchor_psnr, test_rate, test_psnr) -> float | None:
    """Bjontegaard delta PSNR (dB) of test against anchor at equal rate; positive = test is better."""
    d = _bd_delta(anchor_rate, anchor_psnr, test_rate, test_psnr, swap=False)
    return None if d is None else float(d)
