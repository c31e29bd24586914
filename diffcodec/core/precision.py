"""The number format the codec computes in, where a choice exists: on images of more than
BF16_MIN_DIMS values, the network's forward pass and rcc's candidate scores run in bfloat16 on
hardware that computes it natively (a CPU with AMX or AVX512-BF16, or a CUDA GPU with bf16), else
in float32. Smaller images (Fashion-MNIST, 32x32 crops) stay in float32: their network is cheap,
and files made before bfloat16 was used decode to exactly the pixels they did.

bfloat16 changes the network's output by about 3e-3 (RMS of eps_theta against float32, on a
256x256 photo; ``eval/bench_runtime.py``), which is far below the model's own error but above
float32's run-to-run drift (1e-6). Nothing that drives the entropy coder is computed from it (see
``coding/base.py``), so a decoder that computes in another format than the encoder cannot lose
sync: its pixels move slightly (measured in eval/README.md, "Speed"). Scores only choose the
encoder's candidates, and rcc's decoder never computes one.

``DIFFCODEC_PRECISION=float32`` (or ``bfloat16``) in the environment overrides the choice.
"""
from __future__ import annotations

import contextlib
import functools
import os

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
    """torch.bfloat16 for an image of more than BF16_MIN_DIMS values (C x H x W) where ``device``
    computes it natively, else torch.float32 (``DIFFCODEC_PRECISION`` overrides; an unknown value
    is an error)."""
    import torch

    forced = os.environ.get("DIFFCODEC_PRECISION", "")
    if forced:
        if forced not in CHOICES:
            raise ValueError(f"DIFFCODEC_PRECISION must be one of {', '.join(CHOICES)}, not {forced!r}")
        return getattr(torch, forced)
    native = dims > BF16_MIN_DIMS and _native_bf16(torch.device(device).type)
    return torch.bfloat16 if native else torch.float32


def autocast(device, dims: int):
    """A context that runs the network in ``compute_dtype(device, dims)`` (nothing for float32)."""
    import torch

    dtype = compute_dtype(device, dims)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
