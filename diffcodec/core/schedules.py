"""Noise schedules (float64) and timestep respacing.

Timesteps are 0-based: index t here is the paper's step t+1, so ``betas[0]`` is beta_1.
Schedule values are part of the file format contract: never change a released schedule.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import UserError

SCHEDULES = ("linear", "cosine")


def named_betas(name: str, num_timesteps: int) -> np.ndarray:
    """Betas of a named schedule, float64, shape [T].

    ``linear`` is the DDPM schedule (1e-4 .. 0.02 at T=1000), scaled by 1000/T for other T as in
    improved DDPM so that the total noise stays comparable. ``cosine`` is Nichol & Dhariwal's.
    """
    T = int(num_timesteps)
    if T < 1:
        raise ValueError(f"number of timesteps must be positive, got {T}")
    if name == "linear":
        scale = 1000.0 / T
        return np.linspace(scale * 1e-4, scale * 0.02, T, dtype=np.float64)
    if name == "cosine":
        def abar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1.0 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)],
                        dtype=np.float64)
    raise ValueError(f"unknown noise schedule {name!r}; choose from {', '.join(SCHEDULES)}")


def space_timesteps(num_timesteps: int, spec: str | int | None) -> list[int]:
    """Original 0-based timesteps kept by a respacing spec, ascending.

    spec: None/"all" keeps every step; an integer N (or "N") keeps N evenly spaced steps that
    include the first and the last; "ddimN" keeps every (T//N)-th step starting at 0; "quadN" keeps
    N steps spaced quadratically (dense near t = 0, where a codec spends its bits); "geoR"
    steps down geometrically from T - 1, each jump R/100 of the current t (at least 1), so every
    jump carries about the same KL and the last ~100/R steps are all kept ("geoRcM": jumps of at
    most M, finer at high noise); a
    comma-separated list ("0,10,999") keeps exactly those steps.
    """
    T = int(num_timesteps)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return list(range(T))
    s = str(spec).strip().lower()
    try:
        if s.startswith("ddim"):
            n = int(s[4:])
            if not 1 <= n <= T:
                raise ValueError
            stride = T // n
            return list(range(0, T, stride))[:n]
        if s.startswith("quad"):
            n = int(s[4:])
            if not 2 <= n <= T:
                raise ValueError
            # t_i = round((T-1) (i/(n-1))^2), nudged up to stay strictly increasing where the
            # squares crowd near t = 0 (no-op for small n: quad8 keeps 0,20,82,183,326,510,734,999)
            kept = []
            for i in range(n):
                kept.append(max(int(round((T - 1) * (i / (n - 1)) ** 2)), kept[-1] + 1 if kept else 0))
            if kept[-1] != T - 1:
                raise ValueError
            return kept
        if s.startswith("geo"):
            r, sep, cap = s[3:].partition("c")
            r, cap = int(r), int(cap) if sep else T
            if not 1 <= r <= 99 or cap < 1:
                raise ValueError
            kept = [T - 1]
            while kept[-1] > 0:
                kept.append(kept[-1] - max(1, min(cap, (r * kept[-1] + 50) // 100)))
            return kept[::-1]
        if "," in s:
            steps = sorted({int(v) for v in s.split(",") if v.strip()})
            if not steps or steps[0] < 0 or steps[-1] >= T:
                raise ValueError
            return steps
        n = int(s)
    except ValueError:
        raise UserError(f"bad step spec {spec!r} for T={T}: use N, ddimN, quadN, geoR, geoRcM, "
                         f"a list like 0,9,99 (steps 0..{T - 1}) or 'all'") from None
    if not 1 <= n <= T:
        raise UserError(f"bad step spec {spec!r}: need 1 <= N <= {T}")
    if n == 1:
        return [T - 1]
    return sorted({int(round(v)) for v in np.linspace(0, T - 1, n)})


def respace_betas(betas: np.ndarray, kept: list[int]) -> np.ndarray:
    """Betas of the chain that visits only ``kept`` steps: 1 - abar(tau_i) / abar(tau_{i-1})."""
    abar = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
    out, last = [], 1.0
    for t in kept:
        out.append(1.0 - abar[t] / last)
        last = abar[t]
    return np.array(out, dtype=np.float64)


def read_step_list(path) -> str:
    """The step list stored in a file (as `diffcodec fit-steps` writes it: numbers separated by
    commas or white space), as a list spec: "5," for a file holding the one step 5, which a bare
    "5" would read as a count."""
    import re
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read step list {path}: {getattr(exc, 'strerror', None) or exc}") from None
    values = [v for v in re.split(r"[,\s]+", text) if v]
    if not values or not all(v.isdigit() for v in values):
        raise UserError(f"{path} does not hold a comma-separated list of steps")
    return ",".join(values) + ("," if len(values) == 1 else "")
