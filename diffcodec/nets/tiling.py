"""The network over tiles: memory bounded by the tile, not the image.

A large image is cut into a grid of tiles. Each tile's core (at most ``core`` pixels a side,
corners on the network's downsampling grid) is computed from the core with ``halo`` pixels of
context on each side (less at the image's edges), and only the core's output is kept. Each tile
runs as an image of its own (tiles of one shape batched together), so GroupNorm's statistics
are the tile's and the convolutions see the tile's edges: the tiled network is a different
function of the image than the whole network. For the photo model, which was trained on 32- then
64-pixel crops, small tiles give a lower rate (eval/README.md, "Tiles"). Which
function a file was coded with is part of its network format (``core.precision``), so encoder
and decoder compute the same one. No arithmetic joins the tiles: the output is a copy of each
core's, so the result does not depend on the thread count any more than one tile's does.
"""
from __future__ import annotations

import math

import torch

from ..core import precision

# tiles of one shape run as one batch of at most this many input pixels; part of the tiled formats'
# function (a batch's size can change a convolution's rounding), so changing it changes their files
BATCH_PIXELS = 128 * 1024


def spans(n: int, core: int, halo: int, grid: int = 4) -> list[tuple[int, int, int, int]]:
    """Cuts 0..n into ceil(n / core) pieces of near-equal size, each starting on a multiple of
    ``grid``: (input start, input end, core start, core end) per piece, the input being the core
    with ``halo`` more on each side, clipped to 0..n."""
    k = math.ceil(n / core)
    bounds = [grid * round(j * n / (k * grid)) for j in range(k)] + [n]
    return [(max(0, a - halo), min(n, b + halo), a, b) for a, b in zip(bounds, bounds[1:])]


def batches(H: int, W: int, core: int, halo: int, grid: int) -> list[list[tuple]]:
    """The tiles of an H x W image as the network runs them: lists of (row span, column span)
    (``spans``), each list tiles of one input shape, in raster order, at most BATCH_PIXELS input
    pixels together (one tile when a tile is larger). With HALO (the memory tiling's "tile512"
    format) one tile at a time, as that format's files were made. A function of the shape alone,
    so encoder and decoder batch alike (a batch's size can change a convolution's rounding)."""
    shapes: dict[tuple[int, int], list[tuple]] = {}
    for ys in spans(H, core, halo, grid):
        for xs in spans(W, core, halo, grid):
            shapes.setdefault((ys[1] - ys[0], xs[1] - xs[0]), []).append((ys, xs))
    out = []
    for (h, w), tiles in shapes.items():
        per = 1 if halo == precision.HALO else max(1, BATCH_PIXELS // (h * w))
        out += [tiles[k:k + per] for k in range(0, len(tiles), per)]
    return out


def forward(net, x: torch.Tensor, t: torch.Tensor, core: int, halo: int | None = None) -> torch.Tensor:
    """``net(x, t)`` on a batch [B, C, H, W] as a network format runs it: whole when ``core`` is 0,
    else over tiles (``tiled_forward``), image by image with each image's t."""
    if not core:
        return net(x, t)
    if len(x) == 1:
        return tiled_forward(net, x, t, core, halo)
    return torch.cat([tiled_forward(net, x[j:j + 1], t[j:j + 1], core, halo) for j in range(len(x))])


def tiled_forward(net, x: torch.Tensor, t: torch.Tensor, core: int, halo: int | None = None) -> torch.Tensor:
    """``net(x, t)`` for one image [1, C, H, W], tile by tile (module docstring); -> float32
    [1, out_C, H, W]. ``net.multiple`` (its downsampling grid) aligns the tiles; ``halo``
    defaults to HALO. ``t`` ([1]) is shared by every tile of a batch."""
    H, W = x.shape[-2:]
    halo = precision.HALO if halo is None else halo
    return run_batches(net, x, t, batches(H, W, core, halo, getattr(net, "multiple", 1)))


def run_batches(net, x: torch.Tensor, t: torch.Tensor, todo: list[list[tuple]], out: torch.Tensor | None = None):
    """Runs ``net`` on each batch of tiles in ``todo`` (lists as ``batches`` gives them) and copies
    each tile's core into ``out`` (float32 [1, out_C, H, W], made on the first batch when None);
    -> out."""
    for batch in todo:
        pieces = torch.cat([x[..., ya:yb, xa:xb] for (ya, yb, _, _), (xa, xb, _, _) in batch])
        y = net(pieces.contiguous(memory_format=torch.channels_last), t)
        if out is None:
            out = torch.empty((1, y.shape[1], *x.shape[-2:]), dtype=torch.float32, device=x.device)
        for k, ((ya, _, ca, cb), (xa, _, da, db)) in enumerate(batch):
            out[0, :, ca:cb, da:db] = y[k, :, ca - ya:cb - ya, da - xa:db - xa]
        del pieces, y
    return out
