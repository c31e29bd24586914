"""Budgeted parallel decoding of a masking diffusion (ARDM, Hoogeboom et al. 2021, Section 3.2).

Revealing coordinates n .. m-1 of an order in one step predicts each of them from the n revealed
before it, so it costs about (m - n) * l(n) bits, where l(n) is the expected code length of a
coordinate with n revealed, instead of l(n) + ... + l(m - 1) one at a time. Given l (measured on
training images and stored with the model), a dynamic program picks the step boundaries
0 = n_0 < n_1 < ... < n_S = D that minimise the expected total for a budget of S network
evaluations. It runs on integer millibits, so encoder and decoder get the same plan bit for bit.
"""
from __future__ import annotations

import numpy as np


def plan_cost(losses_mbits: np.ndarray, sizes: np.ndarray) -> int:
    """Expected cost (millibits) of a plan: each step's coordinates charged l(n) of its start n."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return int((np.asarray(sizes, np.int64) * losses_mbits[starts]).sum())


def budget_plan(losses_bits, steps: int) -> np.ndarray:
    """Step sizes (int64, summing to D = len(losses_bits)) of the cheapest plan with ``steps``
    network evaluations (at most D), for expected per-coordinate code lengths l(n) in bits."""
    c = np.round(np.asarray(losses_bits, np.float64) * 1000.0).astype(np.int64)    # millibits
    D = len(c)
    S = int(min(max(1, steps), D))
    if S == D:
        return np.ones(D, np.int64)
    n = np.arange(D + 1)
    # cost[n, m] of one step revealing n .. m-1 (m > n): (m - n) * c[n]
    width = n[None, :] - n[:, None]
    big = np.iinfo(np.int64).max // 4
    step_cost = np.where(width > 0, width * np.append(c, 0)[:, None], big)
    f = np.full(D + 1, big, np.int64)
    f[0] = 0
    back = np.zeros((S, D + 1), np.int64)
    for s in range(S):
        total = f[:, None] + step_cost                     # [n, m]: reach n in s steps, then one to m
        back[s] = np.argmin(total, axis=0)                 # ties: the smallest n (deterministic)
        f = total[back[s], n]
    sizes, m = [], D
    for s in range(S - 1, -1, -1):
        prev = int(back[s, m])
        sizes.append(m - prev)
        m = prev
    if m != 0:
        raise AssertionError("plan does not start at 0")
    return np.array(sizes[::-1], np.int64)


def uniform_plan(D: int, steps: int) -> np.ndarray:
    """Step sizes of ``steps`` near-equal steps (for models without measured losses)."""
    S = int(min(max(1, steps), D))
    edges = (np.arange(S + 1) * D) // S
    return np.diff(edges).astype(np.int64)
