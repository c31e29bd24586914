"""What the progressive driver (``progressive``) and the masking model's codec (``reveal``) share:
per-step records, encode and decode results, the grouping of coded steps into layers, and the
check that a file is the loaded model's. Imports nothing of either, so neither imports the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import UserError

if TYPE_CHECKING:
    from ..container.format import Container, Header

MIN_LAYER_BITS = 256     # a layer boundary costs ~3 header bytes: no layer smaller than 32 bytes


@dataclass
class StepRecord:
    step: int          # chain index i: x_i -> x_{i-1}
    t: int             # paper timestep (1-based) of the x_{i-1} now known to the receiver
    bits: float        # ideal code length of this step's symbols under the coder's pmf
    kl_bits: float     # KL(q || p) of this step under the backend's p
    psnr: float        # PSNR of x0_hat after this step
    seconds: float = 0.0
    kl_model_bits: float = 0.0  # KL(q || p_theta) of this step under the network's own Gaussian


@dataclass
class EncodeResult:
    data: bytes
    header: Header
    records: list[StepRecord]
    layer_steps: list[int]
    layer_bytes: list[int]
    header_bytes: int
    lossless_bits: float = 0.0
    psnr: float = 0.0            # decoder-side PSNR of the reconstruction the file gives
    seconds: float = 0.0
    net_seconds: float = 0.0
    net_evals: int = 0
    stats: dict = field(default_factory=dict)
    backend: str = ""
    note: str = ""               # a rate request that was not met, in words (quality only)
    # the file the encoder writes had it stopped after n coded steps (what --stop-step gives)
    file_after: Callable[[int], bytes] | None = field(default=None, repr=False)


@dataclass
class DecodeResult:
    image: np.ndarray              # uint8 [C, H, W]
    layers_used: int
    layers_total: int
    steps_decoded: int
    t: int                         # paper timestep of the last x_t received (0 after lossless)
    lossless: bool
    complete: bool
    seconds: float = 0.0
    net_seconds: float = 0.0
    net_evals: int = 0


def group_layers(bits: list[float], psnrs: list[float], max_layers: int) -> list[int]:
    """Steps per layer. Layers end only at steps whose x0_hat PSNR beats every earlier step's, so
    quality never drops as layers are added; among those, cuts go where the cumulative bits pass
    total * 2^-(L-1), ..., 1/2 (never below MIN_LAYER_BITS), so each layer roughly doubles the
    rate and none is so small that its table entry outweighs it."""
    n = len(bits)
    if n == 0:
        return []
    best, allowed = -np.inf, []
    for k, p in enumerate(psnrs[:-1]):
        if p > best:
            best = p
            allowed.append(k + 1)          # a layer may end after step k (cut index k + 1)
    allowed = [c for c in allowed if psnrs[-1] >= psnrs[c - 1]]
    cum, total = np.cumsum(bits), max(sum(bits), 1e-9)
    cuts: list[int] = []
    for level in range(max_layers - 1, 0, -1):
        target = total * 2.0 ** -level
        if target < MIN_LAYER_BITS:
            continue
        c = next((a for a in allowed if cum[a - 1] >= target and (not cuts or a > cuts[-1])), None)
        if c is not None and c < n:
            cuts.append(c)
    edges = [0, *cuts, n]
    return [b - a for a, b in zip(edges, edges[1:])]


def check_model(loaded, container: Container) -> None:
    """The file's first-layer check passed with ``header.model_key``: it must be this model's. A
    prefix with no complete layer names no model, and only its header is used (which is how the
    codec's internals show the chain's start); the user-facing decoders refuse it."""
    header = container.header
    if container.layers and header.model_key != loaded.key:
        made = f"model {header.model_name!r}" if header.model_name else "other weights"
        raise UserError(f"this file was made with {made}, not with model {loaded.name!r} "
                        f"(sha256 {loaded.sha256[:8]}): decode with the same model")
