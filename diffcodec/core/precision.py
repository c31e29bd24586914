"""The number formats the codec computes in where a choice exists.

- The network: the encoder picks its format, and the file records it (the first layer's check is
  keyed with it, ``container.format.network_key``); the decoder computes in the file's format,
  so the two agree whatever machine or setting decodes. ``encoder_format``: with "auto" (the
  default), bfloat16 for images of more than BF16_MIN_DIMS values where the device computes it
  natively (AMX or AVX512-BF16 CPUs, bfloat16 GPUs): about 3x faster than float32 there, and
  R-D within a point of it (eval/README.md, "Speed"); else float32. ``--precision`` or
  ``DIFFCODEC_PRECISION`` asks for one. Either format decodes to the same pixels on 1, 2 or 4
  threads (``nets.inference``).
- The tiling: a model may name a tiling it runs best over (its config's ``inference`` section,
  one of TILINGS, chosen on validation photos: the photo model was trained on 32- then 64-pixel
  crops and codes a photo at a lower rate over tiles of 128 pixels than whole, eval/README.md, "Tiles");
  an encoder uses it for an image wider or taller than its tile. Otherwise images of more than
  WHOLE_MAX_PIXELS pixels run over tiles of TILE pixels with HALO of context, which bounds the
  network's memory by the tile; smaller images run it whole. A tiled network is another function
  of the image, so the tiling is part of the format's name ("bfloat16/tile512",
  "bfloat16/tile128/halo4") and of the file's check; a decoder tries each an image of the file's
  size may have.
- The scales: a model with a tiling may name a schedule of coarse network calls at high noise
  (its config's ``inference.scales``, one of ``core.scales.SCHEDULES``); an encoder uses it where
  it uses the model's tiling, and the format's name ends in "/scales<schedule>"
  ("bfloat16/tile128/halo4/scales2t400-4t700"). A schedule's last tier may be blank (no call:
  ``core.scales.BLANK``), and it may end in "v": variances rescaled by the previous step's
  residual (``core.scales.RESCALE``). On images the network sees whole (no larger than the
  model's tile) the encoder uses the schedule's ``scales.whole`` part, its blank tier and rescale,
  where that is one of SCHEDULES: smaller images gain nothing from the wider view and lose a little
  (eval/README.md, "Coarse steps"), but gain from the others ("Small images"). A decoder tries
  each format over one of TILINGS with and without each schedule that pools, and each whole
  image's format with each schedule that does not, at sizes a model's tiling leaves whole.
- rcc's candidate scores (encoder-only: the decoder never computes one): bfloat16 on images above
  BF16_MIN_DIMS where it is native, else float32 (``score_dtype``).
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
from typing import NamedTuple

from ..errors import UserError
from . import scales as _scales

NETWORK_FORMATS = ("float32", "bfloat16")   # number formats a file may record (``container.format.network_key``)
CHOICES = ("auto", *NETWORK_FORMATS)
BF16_MIN_DIMS = 3 * 32 * 32      # images up to this many values always run in float32
HALO = 32                        # pixels of context around a tile's core, unless its name says
TILE = 512                       # the tile core side in pixels for memory alone (``nets.tiling``)
WHOLE_MAX_PIXELS = 1024 * 1024   # larger images run the network over TILE tiles, if not over the model's
TILINGS = ((128, 4),)            # (core, halo) a model's ``inference`` section may name


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


def encoder_network(device, shape: tuple[int, int, int], choice: str | None = None,
                    tiling: tuple[int, int] = (0, 0), scales: str = "") -> str:
    """The network format an encoder uses for an image of ``shape`` (C, H, W): the number format
    ``encoder_format`` picks, tiled where ``tile_for`` says for the model's ``tiling``, and with the
    model's ``scales`` schedule ("" for none) where it runs over the model's tiling, or with the
    schedule's ``whole`` part (where it is one of ``scales.SCHEDULES``) where the model's tiling
    leaves the image whole."""
    C, H, W = shape
    tiles = tile_for(H, W, tiling)
    if tiles == tuple(tiling):
        schedule = scales
    else:
        whole = _scales.whole(scales) if tiles == (0, 0) else ""
        schedule = whole if whole in _scales.SCHEDULES else ""
    return network_format(encoder_format(device, C * H * W, choice), *tiles, schedule)


def tile_for(height: int, width: int, tiling: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    """(tile core, halo) an encoder runs the network over for an image of this size: the model's
    ``tiling`` (core, halo) where the image is wider or taller than its core, else (TILE, HALO)
    above WHOLE_MAX_PIXELS pixels, else (0, 0): the whole image."""
    if tiling[0] and max(height, width) > tiling[0]:
        return tiling
    return (TILE, HALO) if height * width > WHOLE_MAX_PIXELS else (0, 0)


def network_format(number: str, tile: int = 0, halo: int = HALO, scales: str = "") -> str:
    """The name of a network format: its number format, then "/tile<core>" when tiled, then
    "/halo<pixels>" when the halo is not HALO, then "/scales<schedule>" with a scale schedule."""
    name = number if not tile else f"{number}/tile{tile}" + ("" if halo == HALO else f"/halo{halo}")
    return name + (f"/scales{scales}" if scales else "")


class Network(NamedTuple):
    """A network format's parts (``parse``)."""
    number: str     # "float32" or "bfloat16"
    tile: int       # tile core in pixels, 0 for the whole image
    halo: int       # pixels of context around a tile's core
    scales: str     # scale schedule (``core.scales``), "" for none


def parse(network: str) -> Network:
    """The parts of a network format name; ValueError for an unknown one. Any well-formed scale
    schedule parses (a study may try one); decoders try those of ``scales.SCHEDULES``."""
    number = "|".join(NETWORK_FORMATS)
    m = re.fullmatch(rf"({number})(?:/tile([1-9][0-9]*)(?:/halo(0|[1-9][0-9]*))?)?(?:/scales([0-9tv-]+))?",
                     network)
    if m is None or (m[3] is not None and int(m[3]) == HALO):    # HALO's name has no "/halo"
        raise ValueError(f"unknown network format {network!r}")
    if m[4] is not None:
        _scales.parse(m[4])
    return Network(m[1], int(m[2] or 0), HALO if m[3] is None else int(m[3]), m[4] or "")


def decoder_formats(height: int, width: int) -> tuple[str, ...]:
    """The network formats a file of this image size may record: each number format whole and
    over each tiling ``tile_for`` gives an encoder at this size (with each of TILINGS, or none);
    those over one of TILINGS with each scale schedule that pools too, and, at a size one of
    TILINGS leaves whole, the whole image with each schedule that does not (``encoder_network``)."""
    tilings = dict.fromkeys(tile_for(height, width, t) for t in (*TILINGS, (0, 0)))
    tilings.pop((0, 0), None)
    plain = NETWORK_FORMATS + tuple(network_format(n, *t) for t in tilings for n in NETWORK_FORMATS)
    tiled = tuple(network_format(n, *t, s) for s in _scales.SCHEDULES if _scales.pools(s)
                  for t in tilings if t in TILINGS for n in NETWORK_FORMATS)
    whole = any(tile_for(height, width, t) == (0, 0) for t in TILINGS)
    untiled = tuple(network_format(n, 0, HALO, s) for s in _scales.SCHEDULES if whole and not _scales.pools(s)
                    for n in NETWORK_FORMATS)
    return plain + tiled + untiled


def era(network: str) -> int:
    """When readers began to try this format: 0 for those tried when encoders began to settle their
    files (``Container.settled``, 2026-12-07), else the index of its scale schedule in
    ``scales.SCHEDULES`` (schedules are only ever appended). A file is settled against every format
    of its era and before, so only a format of a later era can also pass its check by chance."""
    schedule = parse(network).scales
    return _scales.SCHEDULES.index(schedule) if schedule in _scales.SCHEDULES else 0


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
