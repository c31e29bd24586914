"""The number formats the codec computes in where a choice exists.

- The network: float32 by default. ``DIFFCODEC_PRECISION=bfloat16`` runs it in bfloat16 autocast
  (channels-last) on images of more than BF16_MIN_DIMS values: about 3.5x faster where the CPU
  computes bfloat16 natively (AMX or AVX512-BF16), but the stream's chain amplifies its rounding:
  a bfloat16 file decodes to the encoder's pixels only in bfloat16, on the same kind of machine
  and thread count (eval/README.md, "Speed"). Nothing that drives the entropy coder comes from the
  network, so another format never loses the stream; it moves the pixels.
- rcc's candidate scores (encoder-only: the decoder never computes one): bfloat16 on images above
  BF16_MIN_DIMS where it is native, else float32 (``score_dtype``).
"""
from __future__ import annotations

import contextlib
import functools
import os

from ..errors import UserError

CHOICES = ("float32", "bfloat16")
BF16_MIN_DIMS = 3 * 32 * 32


@functools.lru_cache(maxsize=None)
def _native_bf16(device_type: str) -> bool:
    import torch

    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        cpu = torch.cpu
        return bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()
                    or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    return False


def compute_dtype(device, dims: int):
    """The network's format for an image of ``dims`` values (C x H x W): torch.float32, or
    torch.bfloat16 when ``DIFFCODEC_PRECISION=bfloat16`` and dims > BF16_MIN_DIMS (an unknown
    value is an error)."""
    import torch

    forced = os.environ.get("DIFFCODEC_PRECISION", "") or "float32"
    if forced not in CHOICES:
        raise UserError(f"DIFFCODEC_PRECISION must be one of {', '.join(CHOICES)}, not {forced!r}")
    return torch.bfloat16 if forced == "bfloat16" and dims > BF16_MIN_DIMS else torch.float32


def score_dtype(dims: int):
    """rcc's score format (encoder-only): torch.bfloat16 above BF16_MIN_DIMS where the CPU has it
    natively, else torch.float32; ``DIFFCODEC_PRECISION=float32`` forces float32."""
    import torch

    if os.environ.get("DIFFCODEC_PRECISION", "") == "float32":
        return torch.float32
    return torch.bfloat16 if dims > BF16_MIN_DIMS and _native_bf16("cpu") else torch.float32


def autocast(device, dtype):
    """A context that runs the network in ``dtype`` (``compute_dtype``'s; nothing for float32)."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
