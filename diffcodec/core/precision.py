"""The number formats the codec computes in where a choice exists.

- The network: the encoder picks its format, and the file records it (the first layer's check is
  keyed with it, ``container.format.network_key``); the decoder computes in the file's format,
  so the two agree whatever machine or setting decodes. ``encoder_format``: with "auto" (the
  default), bfloat16 for images of more than BF16_MIN_DIMS values where the device computes it
  natively (AMX or AVX512-BF16 CPUs, bfloat16 GPUs): about 3x faster than float32 there, and
  R-D within a point of it (eval/README.md, "Speed"); else float32. ``--precision`` or
  ``DIFFCODEC_PRECISION`` asks for one. Either format decodes to the same pixels on 1, 2 or 4
  threads (``nets.inference``).
- The tiling: images of more than WHOLE_MAX_PIXELS pixels run the network tile by tile
  (``nets.tiling``, cores of TILE pixels a side), which bounds its memory by the tile; a tiled
  network is another function of the image, so the tile is part of the format's name
  ("bfloat16/tile512") and of the file's check. Smaller images run it whole, as files before
  tiling did (their names have no tile), and a decoder accepts both for a large image.
- rcc's candidate scores (encoder-only: the decoder never computes one): bfloat16 on images above
  BF16_MIN_DIMS where it is native, else float32 (``score_dtype``).
"""
from __future__ import annotations

import contextlib
import functools
import os
import re

from ..errors import UserError

NETWORK_FORMATS = ("float32", "bfloat16")   # number formats a file may record (``container.format.network_key``)
CHOICES = ("auto", *NETWORK_FORMATS)
BF16_MIN_DIMS = 3 * 32 * 32      # images up to this many values always run in float32
TILE = 512                       # a tiled network's core side in pixels (``nets.tiling``)
WHOLE_MAX_PIXELS = 1024 * 1024   # images up to this many pixels run the network whole


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


def _choice(value: str, source: str) -> str:
    """``value`` if it is one of CHOICES, else a UserError naming where it came from."""
    if value not in CHOICES:
        raise UserError(f"{source} must be one of {', '.join(CHOICES)}, not {value!r}")
    return value


def asked() -> str:
    """The format ``DIFFCODEC_PRECISION`` asks for ("auto" when unset; an unknown value is an
    error)."""
    return _choice(os.environ.get("DIFFCODEC_PRECISION", "") or "auto", "DIFFCODEC_PRECISION")


def encoder_format(device, dims: int, choice: str | None = None) -> str:
    """The network format an encoder uses for an image of ``dims`` values (C x H x W): ``choice``
    (default: ``asked()``), with "auto" resolved as the module docstring says; float32 for images
    up to BF16_MIN_DIMS values whatever is asked."""
    import torch

    choice = _choice(choice, "precision") if choice else asked()
    if dims <= BF16_MIN_DIMS:
        return "float32"
    if choice == "auto":
        return "bfloat16" if _native_bf16(torch.device(device).type) else "float32"
    return choice


def encoder_network(device, shape: tuple[int, int, int], choice: str | None = None) -> str:
    """The network format an encoder uses for an image of ``shape`` (C, H, W): the number format
    ``encoder_format`` picks, tiled where ``tile_for`` says."""
    C, H, W = shape
    return network_format(encoder_format(device, C * H * W, choice), tile_for(H, W))


def tile_for(height: int, width: int) -> int:
    """The tile core an encoder runs the network over for an image of this size: 0 (the whole
    image) up to WHOLE_MAX_PIXELS pixels, else TILE."""
    return TILE if height * width > WHOLE_MAX_PIXELS else 0


def network_format(number: str, tile: int = 0) -> str:
    """The name of a network format: its number format, and "/tile<core>" when tiled."""
    return f"{number}/tile{tile}" if tile else number


def parse(network: str) -> tuple[str, int]:
    """(number format, tile core or 0) of a network format name; ValueError for an unknown one."""
    m = re.fullmatch(rf"({'|'.join(NETWORK_FORMATS)})(?:/tile([1-9][0-9]*))?", network)
    if m is None:
        raise ValueError(f"unknown network format {network!r}")
    return m[1], int(m[2] or 0)


def decoder_formats(height: int, width: int) -> tuple[str, ...]:
    """The network formats a file of this image size may record: each number format whole and,
    where an encoder tiles, tiled."""
    tile = tile_for(height, width)
    return NETWORK_FORMATS + tuple(network_format(n, tile) for n in NETWORK_FORMATS if tile)


def dtype(network: str):
    """The torch dtype of a network format name."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[parse(network)[0]]


def score_dtype(dims: int):
    """rcc's score format (encoder-only): torch.bfloat16 above BF16_MIN_DIMS where the CPU has it
    natively, else torch.float32; ``DIFFCODEC_PRECISION=float32`` forces float32."""
    import torch

    if asked() == "float32":
        return torch.float32
    return torch.bfloat16 if dims > BF16_MIN_DIMS and _native_bf16("cpu") else torch.float32


def autocast(device, dtype):
    """A context that runs the network in ``dtype`` (nothing for float32)."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    device = torch.device(device)
    if device.type == "cuda" and not _native_bf16("cuda"):
        raise UserError("this file's network runs in bfloat16, which this GPU does not compute: "
                        "decode it on the CPU")
    return torch.autocast(device.type, dtype=dtype)
