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
MIN_OVERLAP_DB = 8.0         # a BD-rate over a shorter PSNR overlap is reported as such, not as a number


def pareto_front(rate, quality) -> np.ndarray:
    """Indices of the points no other point dominates (no other has at most the rate and at least
    the quality, one of them strictly), in increasing rate; of equal points the first is kept. The
    curve a codec user would choose from: with several encoder variants pooled, the better point at
    each rate."""
    rate, quality = np.asarray(rate, np.float64), np.asarray(quality, np.float64)
    order = np.lexsort((-quality, rate))     # by rate, and at equal rate the best quality first
    keep, best = [], -np.inf
    for k in order:
        if quality[k] > best:
            best = quality[k]
            keep.append(int(k))
    return np.array(keep, dtype=np.int64)


def _monotone(rate, psnr):
    """The curve's Pareto front (``pareto_front``) in rate order: every point improves on every
    cheaper point (an RD curve that decreases in quality with more bits is not a curve a codec
    user would choose from)."""
    keep = pareto_front(rate, psnr)
    return np.asarray(rate)[keep], np.asarray(psnr)[keep]


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


def psnr_overlap(anchor_rate, anchor_psnr, test_rate, test_psnr, psnr_range=BD_RANGE_DB):
    """(lo, hi): the PSNR range where both curves (their Pareto fronts) have points, within
    ``psnr_range``: what a BD-rate averages over. None when they do not overlap there."""
    (_, d1), (_, d2) = (_monotone(np.asarray(r, np.float64), np.asarray(d, np.float64))
                        for r, d in ((anchor_rate, anchor_psnr), (test_rate, test_psnr)))
    if min(len(d1), len(d2)) < 2:
        return None
    lo, hi = max(d1.min(), d2.min()), min(d1.max(), d2.max())
    if psnr_range is not None:
        lo, hi = max(lo, psnr_range[0]), min(hi, psnr_range[1])
    return (float(lo), float(hi)) if hi > lo else None


def bd_rate_report(anchor_rate, anchor_psnr, test_rate, test_psnr, psnr_range=BD_RANGE_DB,
                   min_overlap_db: float = MIN_OVERLAP_DB) -> dict:
    """A BD-rate with the PSNR range it was computed over. ``overlap_db``: [lo, hi], where both
    curves reach within ``psnr_range`` (None: nowhere). Over at least ``min_overlap_db`` dB,
    ``bd_rate_percent`` is the BD-rate; over less, it is None and ``short_overlap_bd_rate_percent``
    holds the number, which speaks for those few dB only (``short_overlap`` True)."""
    ov = psnr_overlap(anchor_rate, anchor_psnr, test_rate, test_psnr, psnr_range)
    value = None if ov is None else bd_rate(anchor_rate, anchor_psnr, test_rate, test_psnr, ov)
    width = 0.0 if ov is None else ov[1] - ov[0]
    short = ov is None or width < min_overlap_db
    return {"bd_rate_percent": None if short else value, "overlap_db": None if ov is None else list(ov),
            "overlap_width_db": width, "short_overlap": short,
            "short_overlap_bd_rate_percent": value if short else None,
            "requested_range_db": None if psnr_range is None else list(psnr_range), "min_overlap_db": min_overlap_db}


def bd_psnr(anchor_rate, anchor_psnr, test_rate, test_psnr) -> float | None:
    """Bjontegaard delta PSNR (dB) of test against anchor at equal rate; positive = test is better."""
    d = _bd_delta(anchor_rate, anchor_psnr, test_rate, test_psnr, swap=False)
    return None if d is None else float(d)
