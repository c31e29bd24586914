"""The network over tiles: memory bounded by the tile, not the image.

A large image is cut into a grid of tiles. Each tile's core (at most ``core`` pixels a side,
corners on the network's downsampling grid) is computed from the core with ``halo`` pixels of
context on each side (less at the image's edges), and only the core's output is kept. Each tile
runs alone, so GroupNorm's statistics are the tile's: the tiled network is a different function
of the image than the whole network, close to it (eval/README.md, "Speed"). Which
function a file was coded with is part of its network format (``core.precision``), so encoder
and decoder compute the same one. No arithmetic joins the tiles: the output is a copy of each
core's, so the result does not depend on the thread count any more than one tile's does.
"""
from __future__ import annotations

import math

import torch

HALO = 32    # pixels of context around a tile's core (a multiple of the networks' grids)


def spans(n: int, core: int, halo: int = HALO, grid: int = 4) -> list[tuple[int, int, int, int]]:
    """Cuts 0..n into ceil(n / core) pieces of near-equal size, each starting on a multiple of
    ``grid``: (input start, input end, core start, core end) per piece, the input being the core
    with ``halo`` more on each side, clipped to 0..n."""
    k = math.ceil(n / core)
    bounds = [grid * round(j * n / (k * grid)) for j in range(k)] + [n]
    return [(max(0, a - halo), min(n, b + halo), a, b) for a, b in zip(bounds, bounds[1:])]


def tiled_forward(net, x: torch.Tensor, t: torch.Tensor, core: int, halo: int | None = None) -> torch.Tensor:
    """``net(x, t)`` for one image [1, C, H, W], tile by tile (module docstring); -> float32
    [1, out_C, H, W]. ``net.multiple`` (its downsampling grid) aligns the tiles; ``halo``
    defaults to HALO."""
    H, W = x.shape[-2:]
    halo = HALO if halo is None else halo
    grid = getattr(net, "multiple", 1)
    out = None
    for ya, yb, ca, cb in spans(H, core, halo, grid):
        for xa, xb, da, db in spans(W, core, halo, grid):
            piece = x[..., ya:yb, xa:xb].contiguous(memory_format=torch.channels_last)
            y = net(piece, t)[..., ca - ya:cb - ya, da - xa:db - xa]
            if out is None:
                out = torch.empty((1, y.shape[1], H, W), dtype=torch.float32, device=x.device)
            out[..., ca:cb, da:db] = y
            del piece, y
    return out
