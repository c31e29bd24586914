"""Progressive encode/decode (paper Algorithms 3 and 4) driving the diffusion model and a step coder,
and the ideal estimate (the same chain, charging each step's KL, no bytes).

The sender transmits x_{t-1} ~ q(x_{t-1} | x_t, x_0) for each step of a respaced chain, starting
from x_T drawn from the shared seed; the receiver can stop after any step and reconstruct
x0_hat (Eq. 15), run the deterministic flow, or complete the chain ancestrally. Coded steps are
grouped into layers, consecutive slices of one range-coded stream, so any prefix of a file decodes
every complete layer.

Rate control: ``quality`` (0-100, the everyday knob; 75 by default) asks for the PSNR
``quality_psnr(q)``; ``target_psnr``, ``bpp`` and ``stop_step`` are exact requests, and a request
that cannot be met is an error rather than a silently different file.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from ..container.format import Container, FormatError, Header, Layer
from ..core import adapter
from ..core.adapter import RECONSTRUCTIONS, NetworkAdapter
from ..core.precision import encoder_network
from ..errors import UserError
from ..evaluation.metrics import psnr
from ..io.pixels import to_model, to_pixels
from . import ideal, registry, reveal
from .base import StepContext, gaussian_kl_bits
from .common import DecodeResult, EncodeResult, StepRecord, check_model, group_layers  # noqa: F401  (also this module's API)
from .entropy import Decoder, encode_layered, info_bits
from .lossless import decode_lossless, encode_lossless
from .randomness import PURPOSE_XT, normals


DEFAULT_QUALITY = 75


def quality_psnr(quality: float) -> float:
    """The PSNR (dB) that ``--quality`` asks for: 17 + 0.28 q, steeper above 90 (q 50: 31 dB,
    q 75: 38 dB, about cwebp's default on Fashion-MNIST; q 90: 42.2 dB; q 100: 55 dB, i.e. every
    step of the chain)."""
    if not 0 <= quality <= 100:
        raise UserError(f"quality must be between 0 and 100, not {quality}")
    return 17.0 + 0.28 * quality + max(0.0, quality - 90.0)


def resolve_backend(backend: str, image_shape, kind: str = "gaussian") -> str:
    """A registered backend name, "auto" resolved for an image of this shape (C, H, W) and a model
    of this kind ("gaussian" or "masking")."""
    return registry.choose(backend, int(np.prod(image_shape)), kind).name


def default_steps(backend: str, dims: int) -> str:
    """The step spec a backend (or the ideal estimate) uses when none is given, on an image of
    ``dims`` (C x H x W) values."""
    return ideal.DEFAULT_STEPS if backend == ideal.NAME else registry.get(backend).encoder_steps_for(dims)


def coded_steps(loaded, backend: str, steps: str | None, shape) -> int:
    """How many steps a full-rate encode codes with a registered backend (for progress bars); a bad
    step spec is a UserError. shape: the image's (C, H, W)."""
    if loaded.is_masking:
        md = loaded.masking()
        return len(reveal.plan(loaded, md, reveal.DEFAULT_ORDER, steps))
    try:
        return loaded.diffusion(steps or default_steps(backend, int(np.prod(shape)))).num_timesteps - 1
    except ValueError as e:
        raise UserError(str(e)) from None


@dataclass
class Estimate:
    """The ideal estimate of an image's chain: records (bits 0, kl_bits the ideal rate), no bytes."""
    records: list[StepRecord]
    psnr: float = 0.0            # PSNR of x0_hat after the last step
    seconds: float = 0.0
    net_seconds: float = 0.0
    net_evals: int = 0


def _check_image(loaded, image: np.ndarray) -> None:
    C, H, W = image.shape
    cfg = loaded.config
    if C != cfg.model.in_channels:
        kind = {1: "grayscale", 3: "RGB"}
        raise UserError(f"model {loaded.name} codes {kind.get(cfg.model.in_channels)} images; "
                        f"this image is {kind.get(C, f'{C}-channel')}")
    if cfg.model.attention_ds and (H, W) != (cfg.data.crop, cfg.data.crop):
        raise UserError(f"model {loaded.name} has global attention and codes only "
                        f"{cfg.data.crop}x{cfg.data.crop} images; this one is {W}x{H}, width x height (use a fully "
                        "convolutional model such as photo)")


def _open_chain(loaded, steps, shape, network: str, error=UserError) -> NetworkAdapter:
    try:
        return NetworkAdapter(loaded, steps, shape, network)
    except ValueError as e:
        raise error(str(e)) from None


def _send_step(model: NetworkAdapter, coder, ctx: StepContext, mu_q: np.ndarray, image: np.ndarray,
               before: dict):
    """Code one step x_i -> x_{i-1} (i = ctx.step) of p_theta ``before`` (``model.out`` at i).
    -> (record, ops, x_{i-1}, network output there)."""
    t0 = time.perf_counter()
    i = ctx.step
    kl_model = float(gaussian_kl_bits(mu_q, ctx.var_q, ctx.mu_p, ctx.var_p).sum())
    ops, x, kl = coder.encode(ctx, mu_q)
    out = model.out(x, i - 1, model.scale_after(x, before))
    rec = StepRecord(i, model.paper_t(i - 1), sum(info_bits(o) for o in ops), kl,
                     psnr(to_pixels(out["pred_xstart"]), image.ravel()), time.perf_counter() - t0, kl_model)
    return rec, ops, x, out


def _lighter_final_step(model, coder, make_ctx, mu_q, image, target_psnr, full, before):
    """The cheapest of the coder's encoder-only lighter variants (``StepCoder.lighter``) whose step
    still brings x0_hat to ``target_psnr``, else ``full``: the chain's last step is coded only as far
    as the request needs, instead of overshooting it by a whole step. Bisects the variants (cheapest
    first), one network evaluation each."""
    variants, best = coder.lighter(), full
    lo, hi = 0, len(variants) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = _send_step(model, variants[mid], make_ctx(), mu_q, image, before)
        if cand[0].psnr >= target_psnr:
            if cand[0].bits < best[0].bits:
                best = cand
            hi = mid - 1
        else:
            lo = mid + 1
    return best


def _send_chain(model: NetworkAdapter, coder, image: np.ndarray, seed: int, stop_step, target_psnr,
                progress):
    """The sender's side of Algorithm 3: from x_T (shared seed), code each step with ``coder`` until
    the chain ends or a stop rule fires; the step that reaches ``target_psnr`` is coded with the
    lightest variant that still reaches it. -> (records, ops per step, network output at the last x)."""
    N, D = model.num_steps, image.size
    x0 = to_model(image).ravel()
    x = normals(seed, PURPOSE_XT, 0, D)
    out = model.out(x, N - 1)
    state: dict = {}
    records, step_ops = [], []
    refine = target_psnr is not None and bool(getattr(coder, "lighter", list)())
    for i in range(N - 1, 0, -1):
        state_before = copy.deepcopy(state) if refine else None

        def context(state=state, out=out, i=i):
            return StepContext(i, seed, model.posterior_variance(i), out["mean"], out["variance"], state, model.shape)
        mu_q = model.posterior_mean(x0, x, i)
        out.pop("pred_xstart", None)    # read by the previous step's record; the step needs mu_p, var_p
        p_step = out
        rec, ops, x, out = _send_step(model, coder, context(), mu_q, image, p_step)
        if refine and rec.psnr >= target_psnr:
            rec, ops, x, out = _lighter_final_step(model, coder, lambda: context(copy.deepcopy(state_before)),
                                                   mu_q, image, target_psnr, (rec, ops, x, out), p_step)
        records.append(rec)
        step_ops.append(ops)
        if progress:
            progress(i)
        if stop_step is not None and rec.t <= stop_step:
            break
        if target_psnr is not None and rec.psnr >= target_psnr:
            break
    return records, step_ops, out


def estimate_image(loaded, image: np.ndarray, steps: str | None = None, seed: int = 0,
                   stop_step: int | None = None, target_psnr: float | None = None,
                   progress=None, precision: str | None = None) -> Estimate:
    """The ideal rate of uint8 [C, H, W]: the chain an ideal channel simulator would send, charging
    each step's KL (no bytes). Stop rules, ``progress`` and ``precision`` as in ``encode_image``."""
    t_start = time.perf_counter()
    _check_image(loaded, image)
    model = _open_chain(loaded, steps or ideal.DEFAULT_STEPS, image.shape,
                        encoder_network(loaded.device, image.shape, precision, loaded.tiling,
                                       loaded.scales))
    records, _, _ = _send_chain(model, ideal.IdealEstimator(), image, seed, stop_step, target_psnr, progress)
    return Estimate(records, records[-1].psnr if records else 0.0, time.perf_counter() - t_start,
                    model.seconds, model.evals)


def encode_image(loaded, image: np.ndarray, backend: str = registry.AUTO, steps: str | None = None,
                 seed: int = 0, stop_step: int | None = None, target_psnr: float | None = None,
                 bpp: float | None = None, lossless: bool = False, max_layers: int = 8,
                 progress=None, coder=None, quality: float | None = None,
                 precision: str | None = None) -> EncodeResult:
    """Encode uint8 [C, H, W] into .dfc bytes with a registered backend ("auto": by image size).

    Rate control (at most one; ``quality`` 75 when none is given and not lossless): stop at the
    first step whose x0_hat reaches ``quality_psnr(quality)`` (every step if none does; the result's
    ``note`` says so), at the first step that reaches target_psnr (an error if none does); either
    way that step is coded with the cheapest of the coder's ``lighter()`` variants that still
    reaches the request. Or stop once x_t
    with paper t <= stop_step is sent, or at the last step whose file fits bpp bits per pixel (an
    error if no coded step fits). progress(i) is called after each step; ``coder`` overrides the
    backend's default step coder. ``precision``: the network's number format, "auto", "float32"
    or "bfloat16" (``core.precision.encoder_network``, which also picks the tiling: the model's,
    or for a model without one, tiles for a large image, and the model's scale schedule; the file
    records all three)."""
    t_start = time.perf_counter()
    C, H, W = image.shape
    _check_image(loaded, image)
    requests = sum(v is not None for v in (stop_step, target_psnr, bpp, quality))
    if requests > 1:
        raise UserError("use only one of quality, PSNR, bits per pixel and stop step")
    if requests == 0 and not lossless:
        quality = DEFAULT_QUALITY
    wanted = quality_psnr(quality) if quality is not None else target_psnr
    backend = resolve_backend(backend, image.shape)
    spec = registry.get(backend)
    steps = steps or spec.encoder_steps_for(C * H * W)
    coder = coder or spec.from_params(b"")
    network = encoder_network(loaded.device, (C, H, W), precision, loaded.tiling, loaded.scales)
    keys = loaded.reader_keys       # what a reader may try the file against (read before the chain)
    model = _open_chain(loaded, steps, (C, H, W), network)
    N, D = model.num_steps, C * H * W
    if N < 2 and not lossless:
        raise UserError(f"a chain of {N} step has no lossy step to code: use 2 or more steps, or --lossless")
    header = Header(loaded.name, loaded.key, H, W, C, backend, str(steps),
                    seed, lossless, coder.params(), H == W == loaded.native_size,
                    auto=backend == resolve_backend(registry.AUTO, image.shape), network=network)
    records, step_ops, out = _send_chain(model, coder, image, seed, stop_step, wanted, progress)
    note = ""
    best = max((r.psnr for r in records), default=0.0)
    if wanted is not None and best < wanted:
        msg = (f"every step coded gives {best:.2f} dB" if records and records[-1].step == 1
               else f"the chain stopped at {best:.2f} dB")
        if quality is None:
            raise UserError(f"--psnr {target_psnr:g} cannot be reached: {msg} (--lossless gives an exact copy)")
        note = f"quality {quality:g} asks for {wanted:.2f} dB; {msg}"
    final_out = out if not records or records[-1].step == 1 else None
    lossless_layer, lossless_bits = None, 0.0
    if lossless:
        if final_out is None:
            raise UserError("--lossless needs every step coded (no early stop)")
        data, ops = encode_lossless(image.ravel(), final_out["mean"], final_out["variance"])
        lossless_layer, lossless_bits = Layer(0, data), info_bits(ops[0])

    def build(n_steps: int):
        groups = group_layers([r.bits for r in records[:n_steps]], [r.psnr for r in records[:n_steps]],
                               max(1, max_layers - int(lossless)))
        edges = np.cumsum([0, *groups])
        slices = encode_layered([[op for ops in step_ops[a:b] for op in ops] for a, b in zip(edges, edges[1:])])
        layers = [Layer(g, d) for g, d in zip(groups, slices)]
        if lossless_layer is not None and n_steps == len(records):
            layers.append(lossless_layer)
        return Container(header, layers).settled(keys)

    container = build(len(records))
    if bpp is not None:
        n = len(records)
        while n > 0 and len(container.to_bytes()) * 8 > bpp * H * W:
            n -= 1
            container = build(n)
        if n == 0:
            smallest = len(build(1).to_bytes()) if records else container.header_size()
            raise UserError(f"--bpp {bpp:g} fits no coded step: the smallest file with one step is "
                            f"{smallest} bytes ({8 * smallest / (H * W):.3f} bits/pixel)")
        if n < len(records):
            records = records[:n]
            if lossless_layer is not None:
                raise UserError("--lossless does not fit the --bpp budget")
    data = container.to_bytes()
    if lossless_layer is not None:
        rec_psnr = float("inf")
    elif records:
        rec_psnr = records[-1].psnr
    else:
        rec_psnr = psnr(to_pixels(model.out(normals(seed, PURPOSE_XT, 0, D), N - 1)["pred_xstart"]), image.ravel())
    return EncodeResult(data, header, records, [l.steps for l in container.layers],
                        [len(l.data) for l in container.layers], container.header_size(),
                        lossless_bits, rec_psnr, time.perf_counter() - t_start, model.seconds, model.evals,
                        backend=backend, note=note, file_after=lambda n: build(n).to_bytes())


def decode_container(loaded, container: Container, layers: int | None = None,
                     stop_step: int | None = None, reconstruct: str = "x0", progress=None,
                     on_step=None) -> DecodeResult:
    """Decode the first ``layers`` complete layers (all by default), stopping early once x_t with
    paper t <= stop_step is known, and reconstruct the image. ``on_step(k, pixels)`` receives the
    x0_hat preview (uint8, flat) after each decoded step k = 1, 2, ..."""
    t_start = time.perf_counter()
    check_model(loaded, container)
    h = container.header.for_model(loaded.profile)
    if reconstruct not in RECONSTRUCTIONS:
        raise UserError(f"unknown reconstruction {reconstruct!r}; use {', '.join(RECONSTRUCTIONS)}")
    if h.channels != loaded.config.model.in_channels:
        raise FormatError("header channel count does not match the model")
    try:
        coder = registry.get(h.backend).from_params(h.params)
    except ValueError as e:
        raise FormatError(f"corrupt header ({e})") from None
    model = _open_chain(loaded, h.steps_spec, (h.channels, h.height, h.width), h.network,
                        lambda m: FormatError(f"corrupt header ({m})"))
    N, D = model.num_steps, h.channels * h.height * h.width
    n_coded = sum(l.steps for l in container.layers)
    if n_coded > N - 1:
        raise FormatError("corrupt file: more coded steps than the schedule has")
    x = normals(h.seed, PURPOSE_XT, 0, D)
    out = model.out(x, N - 1)
    i, state, used, pixels, lossless_used = N - 1, {}, 0, None, False
    chosen = container.layers if layers is None else container.layers[:layers]
    done, dec = False, None
    for layer in chosen:
        if layer.steps == 0:  # lossless layer
            if i != 0:
                raise FormatError("corrupt file: lossless layer before the last step")
            pixels = decode_lossless(layer.data, out["mean"], out["variance"])
            used, lossless_used = used + 1, True
            break
        if dec is None:   # the lossy layers are consecutive slices of one stream
            dec = Decoder(b"".join(l.data for l in chosen if l.steps))
        for _ in range(layer.steps):
            ctx = StepContext(i, h.seed, model.posterior_variance(i), out["mean"], out["variance"], state, model.shape)
            try:
                x = coder.decode(ctx, dec)
            except BaseException as e:  # constriction's PanicException derives from BaseException
                if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
                    raise
                raise FormatError(f"layer {used + 1} cannot be decoded: the file is corrupt") from None
            if not np.all(np.isfinite(x)):
                raise FormatError(f"layer {used + 1} decodes to invalid values: the file is corrupt")
            i -= 1
            scale = model.scale_after(x, out)
            del ctx, out    # free the previous output before the network computes the next
            out = model.out(x, i, scale)
            if progress:
                progress(i)
            if on_step:
                on_step(N - 1 - i, to_pixels(out["pred_xstart"]))
            if stop_step is not None and model.paper_t(i) <= stop_step:
                done = True
                break
        used += 1
        if done:
            break
    if pixels is None:
        pixels = to_pixels(adapter.reconstruct(model, x, i, out, reconstruct, h.seed))
    total = container.declared_layers or len(container.layers)
    return DecodeResult(pixels.reshape(h.channels, h.height, h.width), used, total,
                        N - 1 - i, 0 if lossless_used else model.paper_t(i), lossless_used,
                        container.complete, time.perf_counter() - t_start, model.seconds, model.evals)
