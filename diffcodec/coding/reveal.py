"""The masking model as a codec: lossless, progressive .dfc files from a T = D masking diffusion.

The encoder walks the reverse chain in a reveal order (raster, random or coarse-to-fine), revealing
a group of coordinates per network evaluation (budgeted parallel decoding, ``core.parallel``), and
range-codes each revealed coordinate with its predicted categorical. Steps are grouped into layers
(consecutive slices of one stream), so a prefix of the file decodes to the pixels revealed so far
and the model's predicted mean elsewhere; the whole file decodes exactly.

Header: backend "reveal", steps spec = the number of network evaluations ("all" = D, one coordinate
per step), params = order id, CRC-8 of the step plan, CRC-16 of the pixels. The plan comes from
the model's stored per-coordinate losses (``reveal_losses.json`` beside its weights; near-equal
steps without it), so the decoder recomputes it and the plan CRC catches a changed loss table.
Pmfs: logits snapped to 1/64 and exponentiated through a fixed table of exact binary fractions,
so the coder sees identical numbers on both sides unless the network itself drifts across a
snapping boundary (the pixel CRC then reports it).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..core.adapter import threads_for
from ..core.masking import ORDERS, grey_levels
from ..core.parallel import budget_plan, uniform_plan
from ..errors import UserError
from ..evaluation.metrics import psnr
from ..io.checksums import crc8, pixel_crc
from . import registry
from .common import DecodeResult, EncodeResult, StepRecord, check_model, group_layers
from .entropy import Decoder, cats_op, encode_layered, info_bits

NAME = "reveal"
DEFAULT_STEPS = "100"
DEFAULT_ORDER = "coarse"
LOGIT_GRID = 64                       # logits are snapped to 1/64 nat
_EXP = np.maximum(np.round(np.exp(-np.arange(24 * LOGIT_GRID + 1) / LOGIT_GRID) * 2.0 ** 40), 1.0) / 2.0 ** 40


@registry.register(NAME, wire_id=2, default_steps=DEFAULT_STEPS, kind="masking",
                   description="lossless progressive files from a masking (autoregressive) model")
class RevealCodec:
    """Header parameters of the masking codec: reveal order, plan CRC-8, pixel CRC-16."""

    def __init__(self, order: str = "raster", plan_crc: int = 0, pixels_crc: bytes = b"\0\0"):
        self.order, self.plan_crc, self.pixels_crc = order, plan_crc, pixels_crc

    def params(self) -> bytes:
        return bytes([ORDERS.index(self.order), self.plan_crc]) + self.pixels_crc

    @classmethod
    def from_params(cls, params: bytes) -> "RevealCodec":
        if len(params) != 4 or params[0] >= len(ORDERS):
            raise ValueError("bad masking-codec parameters")
        return cls(ORDERS[params[0]], params[1], bytes(params[2:]))


def pmfs(logits: torch.Tensor) -> np.ndarray:
    """[n, K] logits -> [n, K] pmfs from a table of exact binary fractions, normalised by an IEEE
    division (constriction's batched categoricals expect rows summing to one): identical on every
    machine for identical snapped logits."""
    lg = logits.double().cpu().numpy()
    k = np.round((lg.max(1, keepdims=True) - lg) * LOGIT_GRID)
    p = _EXP[np.minimum(k, len(_EXP) - 1).astype(np.int64)]
    return p / p.sum(1, keepdims=True)


def losses_for(loaded, order: str) -> np.ndarray | None:
    """The model's stored expected code length per coordinate (bits) in ``order``, if any."""
    table = (loaded.info or {}).get("reveal_losses") or {}
    return np.asarray(table[order], np.float64) if order in table else None


LOSSES_FILE = "reveal_losses.json"


def measure_losses(loaded, images: np.ndarray, orders=ORDERS, progress=None) -> dict:
    """Expected code length (bits) of the coordinate revealed n-th, n = 0..D-1, per order: the
    mean over ``images`` (training images, not the test split) of the T = D bound's terms.
    -> {order: [D floats rounded to 1e-4]} (what ``LOSSES_FILE`` holds)."""
    md = loaded.masking()
    return {o: np.round(md.bound_terms(loaded.net, images, md.order(o), progress).mean(0), 4).tolist()
            for o in orders}


def plan(loaded, md, order: str, steps: str | int | None) -> np.ndarray:
    """Step sizes for ``steps`` network evaluations ("all" or None-as-default)."""
    spec = str(steps or DEFAULT_STEPS)
    if spec == "all":
        return np.ones(md.D, np.int64)
    if not spec.isdigit() or int(spec) < 1:
        raise UserError(f"steps for the masking codec: a positive number or 'all', not {spec!r}")
    losses = losses_for(loaded, order)
    if losses is not None and len(losses) == md.D:
        return budget_plan(losses, int(spec))
    return uniform_plan(md.D, int(spec))


def _plan_crc(sizes: np.ndarray) -> int:
    return crc8(np.asarray(sizes, "<u4").tobytes())


def masking_for(loaded, shape):
    """The masking diffusion of a masking model, checked against an image shape (C, H, W)."""
    md = loaded.masking()
    if tuple(shape) != md.shape:
        raise UserError(f"model {loaded.name} codes {md.shape[0]}x{md.shape[1]}x{md.shape[2]} images "
                        f"(channels x height x width); these are {'x'.join(map(str, shape))}")
    return md


@torch.no_grad()
def encode_image(loaded, image: np.ndarray, order: str = "raster", steps=None, max_layers: int = 8,
                 progress=None):
    """Encode uint8 [C, H, W] losslessly and progressively. -> ``EncodeResult`` (records hold the
    bits and the prefix reconstruction's PSNR after each step)."""
    # imported here, not at module level: the container imports the coder registry, and
    # importing diffcodec.coding imports this module to register it
    from ..container.format import Container, Header, Layer

    t0 = time.perf_counter()
    keys = loaded.reader_keys       # what a reader may try the file against (read before the chain)
    md = masking_for(loaded, image.shape)
    sizes = plan(loaded, md, order, steps)
    flat = image.reshape(-1).astype(np.int32)
    x = md._start(loaded.net, image[None])
    with threads_for(md.D, x.device):
        step_ops, records, net_s = _encode_steps(loaded, md, x, flat, md.order(order), sizes, progress)
    groups = group_layers([r.bits for r in records], [r.psnr for r in records], max_layers)
    edges = np.cumsum([0, *groups])
    slices = encode_layered([[op for ops in step_ops[a:b] for op in ops] for a, b in zip(edges, edges[1:])])
    codec = RevealCodec(order, _plan_crc(sizes), pixel_crc(image))
    C, H, W = md.shape
    header = Header(loaded.name, loaded.key, H, W, C, NAME,
                    "all" if len(sizes) == md.D else str(len(sizes)), 0, False, codec.params(),
                    H == W == loaded.native_size)
    container = Container(header, [Layer(g, s) for g, s in zip(groups, slices)]).settled(keys)
    return EncodeResult(container.to_bytes(), header, records, groups, [len(s) for s in slices],
                        container.header_size(), psnr=float("inf"), seconds=time.perf_counter() - t0,
                        net_seconds=net_s, net_evals=len(sizes), backend=NAME)


def _encode_steps(loaded, md, x, flat, sigma, sizes, progress):
    """Walk the chain teacher-forced: -> (per-step coder operations, StepRecords, network seconds)."""
    step_ops, records, net_s = [], [], 0.0
    t_net = time.perf_counter()
    for k, d, logits, mask in md.reveal(loaded.net, x, sigma, sizes=sizes):
        net_s += time.perf_counter() - t_net
        if records:   # the decoder's reconstruction after the previous step uses these logits
            records[-1].psnr = psnr(md.prediction(logits, x, md.unreveal(mask, d)).reshape(-1), flat)
        op = cats_op(flat[d], pmfs(md.coordinate(logits, d)[0]))
        step_ops.append([op])
        bits = info_bits(op)
        records.append(StepRecord(k + 1, md.D - int(sizes[:k + 1].sum()), bits, bits, float("inf")))
        if progress:
            progress(k)
        t_net = time.perf_counter()
    return step_ops, records, net_s


@torch.no_grad()
def decode_container(loaded, container, layers: int | None = None, progress=None):
    """Decode the first ``layers`` complete layers (all by default): revealed pixels exact, the
    predicted mean elsewhere; the whole file gives the image exactly (checked against its CRC)."""
    from ..container.format import FormatError

    t0 = time.perf_counter()
    check_model(loaded, container)
    h = container.header.for_model(loaded.profile)
    md = loaded.masking()
    if (h.channels, h.height, h.width) != md.shape:
        raise FormatError("header image size does not match the model")
    try:
        codec = RevealCodec.from_params(h.params)
        sizes = plan(loaded, md, codec.order, h.steps_spec)
    except (ValueError, UserError) as e:
        raise FormatError(f"corrupt header ({e})") from None
    if _plan_crc(sizes) != codec.plan_crc:
        raise FormatError("this file's step plan differs from the one this model's loss table gives: "
                          "it was made with another version of the model's files")
    coded = sum(l.steps for l in container.layers)
    if coded > len(sizes) or (container.complete and coded != len(sizes)):
        raise FormatError("corrupt file: the layer table does not cover the step plan")
    chosen = container.layers if layers is None else container.layers[:layers]
    todo = sum(l.steps for l in chosen)
    x = md._start(loaded.net, None)
    out = np.zeros(md.D, np.uint8)
    with threads_for(md.D, x.device):
        pixels, net_evals, net_s = _decode_steps(loaded, md, x, out, Decoder(b"".join(l.data for l in chosen)),
                                                 md.order(codec.order), sizes, todo, progress)
    complete = todo == len(sizes)
    if complete:
        pixels = out
        if pixel_crc(out) != codec.pixels_crc:
            raise FormatError("decoded pixels do not match the stored checksum: the decoder's model "
                              "output differs from the encoder's, or the file is corrupt")
    total = container.declared_layers or len(container.layers)
    return DecodeResult(pixels.reshape(md.shape).astype(np.uint8), len(chosen), total,
                        todo, md.D - int(sizes[:todo].sum()), complete, container.complete,
                        time.perf_counter() - t0, net_s, net_evals)


def _decode_steps(loaded, md, x, out, dec, sigma, sizes, todo, progress):
    """Decode ``todo`` steps into ``out`` (uint8 [D]) and ``x``. -> (the prediction after them,
    uint8 [D], or None when every step was decoded; network evaluations; network seconds)."""
    from ..container.format import FormatError

    levels = grey_levels(md.categories, x.device)
    pixels, net_evals, net_s = None, 0, 0.0
    t_net = time.perf_counter()
    for k, d, logits, mask in md.reveal(loaded.net, x, sigma, sizes=sizes):
        net_s += time.perf_counter() - t_net
        net_evals += 1
        if k == todo:      # the next step's logits: the prediction of what is still masked
            pixels = md.prediction(logits, x, md.unreveal(mask, d)).reshape(-1)
            break
        try:
            v = dec.cats(pmfs(md.coordinate(logits, d)[0]))
        except BaseException as e:  # constriction's PanicException derives from BaseException
            if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
                raise
            raise FormatError("the file cannot be decoded: it is corrupt") from None
        out[d] = v
        x.view(1, -1)[0, torch.from_numpy(d).to(x.device)] = levels[torch.from_numpy(v.astype(np.int64)).to(x.device)]
        if progress:
            progress(k)
        t_net = time.perf_counter()
    return pixels, net_evals, net_s
