"""The public Python API: load a model, encode an image to bytes, decode bytes (or any prefix of
them) to an image, bits/dim of a batch, one codec's rate-distortion curve, and batch coding of
files. The command line is a caller of these functions.

Images are numpy uint8 arrays as image libraries hold them ([H, W] grayscale or [H, W, C] with
C = 1 or 3) or PIL images; results are the library's dataclasses; errors are ``UserError`` (and
its subclass ``FormatError`` for bad bytes), each with a one-line message.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .batch import FileOutcome
from .io.files import check_free  # noqa: F401  (part of the API: the CLI checks outputs with it)
from .errors import UserError

def load_model(name_or_path: str, device=None):
    """A registered model by name, a model directory or a training checkpoint (EMA weights)."""
    from .training.store import load_model as _load

    return _load(name_or_path, device)


def _model(model):
    return load_model(model) if isinstance(model, (str, Path)) else model


GRAYSCALE_MODEL, GRAYSCALE_SIZE, RGB_MODEL = "fmnist", (28, 28), "photo"


def default_model_for(image) -> str:
    """The shipped model that codes ``image`` (uint8 [H, W], [H, W, C] or a PIL image): ``fmnist``
    for a 28x28 grayscale image, ``photo`` for an RGB image of any size; a UserError naming the
    choices for anything else."""
    if hasattr(image, "mode") and hasattr(image, "size"):          # a PIL image
        gray, (w, h) = image.mode in ("1", "L", "LA", "I;16", "I"), image.size
    else:
        arr = np.asarray(image)
        gray, (h, w) = arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1), arr.shape[:2]
    if not gray:
        return RGB_MODEL
    if (h, w) == GRAYSCALE_SIZE:
        return GRAYSCALE_MODEL
    raise UserError(f"no shipped model codes a {w}x{h} grayscale image: {GRAYSCALE_MODEL} codes 28x28 "
                    f"grayscale, {RGB_MODEL} RGB of any size (convert the image to RGB, or pass --model)")


def as_chw(image, channels: int) -> np.ndarray:
    """A PIL image or uint8 [H, W] / [H, W, C] array -> uint8 [C, H, W] with the model's channels
    (grayscale into an RGB model is widened; RGB into a grayscale model is refused)."""
    from .io.images import to_chw

    if hasattr(image, "convert") and hasattr(image, "mode"):       # a PIL image
        image = np.asarray(image.convert("L" if image.mode in ("1", "L", "LA") else "RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise UserError(f"an image must be uint8 [H, W] or [H, W, 1 or 3], not {arr.dtype} {list(arr.shape)}")
    chw = to_chw(arr)
    if chw.shape[0] == channels:
        return np.ascontiguousarray(chw)
    if channels == 3:
        return np.repeat(chw, 3, axis=0)
    raise UserError(f"this is an RGB image but the model codes grayscale images (use --model {RGB_MODEL}, "
                    "or leave --model out to pick the model by the image)")


def encode(image, model=None, *, backend: str = "auto", steps: str | None = None,
           quality: float | None = None, psnr: float | None = None, bpp: float | None = None,
           stop_step: int | None = None, lossless: bool = False, layers: int = 8, seed: int = 0,
           order: str | None = None, precision: str | None = None,
           progress: Callable[[int], None] | None = None):
    """Encode an image into .dfc bytes (``result.data``), with the command line's options
    (at most one of quality, psnr, bpp, stop_step; quality 75 when none is given; ``precision``:
    the network's number format, "auto" by default, see ``core.precision``). A masking model
    writes a lossless progressive file in reveal ``order`` (default coarse-to-fine) instead.
    ``model``: a name, folder, checkpoint or loaded model; None picks the shipped model that codes
    this image (``default_model_for``).
    -> ``EncodeResult`` (data, header, per-step records, layer sizes, decoder PSNR, seconds, note)."""
    from .coding.progressive import encode_image

    loaded = _model(default_model_for(image) if model is None else model)
    img = as_chw(image, loaded.config.model.in_channels)
    if loaded.is_masking:
        return _encode_masked(loaded, img, backend, steps, quality, psnr, bpp, stop_step, layers, order, progress)
    if order is not None:
        raise UserError("a reveal order applies to masking models only")
    return encode_image(loaded, img, backend, steps, seed, stop_step, psnr, bpp, lossless, layers,
                        progress=progress, quality=quality, precision=precision)


def _encode_masked(loaded, img, backend, steps, quality, psnr, bpp, stop_step, layers, order, progress):
    from .coding import registry, reveal

    registry.choose(backend, img.size, "masking")
    if any(v is not None for v in (quality, psnr, bpp, stop_step)):
        raise UserError(f"model {loaded.name} is a masking model: its files are lossless; decode a "
                        "prefix (--layers) for a coarser image instead of asking for a rate")
    return reveal.encode_image(loaded, img, order or reveal.DEFAULT_ORDER, steps, layers, progress)


@dataclass
class Decoded:
    """A decoded image (uint8 [H, W] or [H, W, 3]) and the decoder's report."""
    image: np.ndarray
    result: object       # DecodeResult: layers used, steps, t, seconds, ...


def decode(data: bytes, model=None, *, layers: int | None = None, stop_step: int | None = None,
           reconstruct: str = "x0", progress: Callable[[int], None] | None = None) -> Decoded:
    """Decode .dfc bytes, or any prefix of them that holds a complete layer (a file of one layer
    has no shorter one). ``model`` defaults to the registered model whose key passes the file's
    first-layer check."""
    from .coding import registry
    from .coding.progressive import decode_container
    from .container.format import Container, FormatError
    from .io.images import to_hwc
    from .training.store import model_keys

    loaded = _model(model) if model is not None else None
    container = Container.from_bytes(bytes(data), loaded.keys if loaded else None, model_keys)
    if not container.layers:
        raise FormatError("the file holds no complete layer: it is truncated or corrupt")
    loaded = loaded or _model(container.header.model_name)
    if registry.get(container.header.for_model(loaded.profile).backend).kind == "masking":
        from .coding import reveal

        if not loaded.is_masking:
            raise UserError(f"this file was made with a masking model; {loaded.name!r} is a Gaussian one")
        res = reveal.decode_container(loaded, container, layers, progress)
        return Decoded(to_hwc(res.image), res)
    if loaded.is_masking:
        raise UserError(f"this file was made with a Gaussian model; {loaded.name!r} is a masking one")
    res = decode_container(loaded, container, layers, stop_step, reconstruct, progress=progress)
    return Decoded(to_hwc(res.image), res)


def _batch(images, loaded) -> np.ndarray:
    """uint8 [N, C, H, W] from a non-empty batch of images in any form ``as_chw`` takes."""
    batch = [as_chw(im, loaded.config.model.in_channels) for im in images]
    if not batch:
        raise UserError("no images given")
    return np.stack(batch)


def bits_per_dim(images, model="fmnist", *, steps: str | None = None, batch_size: int = 50,
                 seed: int = 0) -> dict:
    """The variational bound of a batch (uint8 [N, H, W] / [N, H, W, C], or a list of images), in
    bits/dim, with its terms (see ``evaluation.bpd.evaluate_bpd``)."""
    from .evaluation.bpd import evaluate_bpd

    loaded = _model(model)
    batch = _batch(images, loaded)
    return evaluate_bpd(loaded, batch, steps, batch_size, seed)


def fit_steps(images, model="fmnist", n: int = 100, *, batch_size: int = 50, seed: int = 0) -> dict:
    """The n-step respacing of least bound on a batch of images (see ``evaluation.spacing``):
    ``steps`` (pass them as ``steps=",".join(map(str, steps))``), ``bpd`` (the estimate on these
    images, optimistic) and ``estimate(steps)`` for any other chain."""
    from .evaluation.spacing import fit_spacing

    loaded = _model(model)
    batch = _batch(images, loaded)
    try:
        return fit_spacing(loaded, batch, n, batch_size, seed)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def rd_curve(codec: str, images, out_dir, model="fmnist", *, steps: str | None = None) -> dict:
    """One codec's rate-distortion curve (CompressAI's JSON layout) over a batch of images; real
    files are written under out_dir/files/<codec>/."""
    from .evaluation.rd_curves import check_codecs, evaluate_codec

    check_codecs([codec])
    loaded = _model(model)
    batch = _batch(images, loaded)
    return evaluate_codec(codec, batch, Path(out_dir), loaded, steps)


def batch_summary(outcomes: list[FileOutcome]) -> dict:
    """Totals of the files that were coded: count, bytes, mean bits per pixel, mean finite PSNR
    (None without any), and how many files failed."""
    good = [o for o in outcomes if not o.error]
    psnrs = [o.psnr for o in good if o.psnr is not None and np.isfinite(o.psnr)]
    return {"files": len(good), "failed": len(outcomes) - len(good), "bytes": sum(o.bytes for o in good),
            "mean_bpp": float(np.mean([8 * o.bytes / o.pixels for o in good])) if good else None,
            "mean_psnr": float(np.mean(psnrs)) if psnrs else None}


def expand_inputs(inputs, suffixes) -> list[Path]:
    """Files named, and the files with one of ``suffixes`` in folders named, in order."""
    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
        else:
            out.append(p)
    return out


def output_names(files: list[Path], suffix: str) -> list[str]:
    """<stem><suffix> for each input; a stem seen before gets -2, -3, ... so no output overwrites
    another's."""
    seen: dict = {}
    names = []
    for f in files:
        seen[f.stem] = seen.get(f.stem, 0) + 1
        names.append(f.stem + (f"-{seen[f.stem]}" if seen[f.stem] > 1 else "") + suffix)
    return names


_LOADED: dict = {}    # models loaded by this process for batch coding, by name or path


def _cached(model):
    if not isinstance(model, (str, Path)):
        return model
    if model not in _LOADED:
        _LOADED[model] = _model(model)
    return _LOADED[model]


def _each_file(inputs, suffixes, out_dir, out_suffix: str, force: bool, on_file, work, model, options: dict,
               workers: int | None) -> list[FileOutcome]:
    """The batch: each input file's output name, then ``batch.run_files``. ``workers`` None: one
    process per core (``batch.default_workers``); a loaded model object codes in this process."""
    from .batch import default_workers, run_files

    files = expand_inputs(inputs, suffixes)
    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {out_dir}: {e.strerror}") from None
    jobs = [(src, Path(out_dir) / name) for src, name in zip(files, output_names(files, out_suffix))]
    if workers is None:
        workers = default_workers(len(jobs))
    if not isinstance(model, (str, Path, type(None))):      # a loaded model stays in this process
        workers = 1
    return run_files(jobs, work, (model, options), force, workers, on_file)


def _encode_to(src, dst, o, model, options) -> None:
    from .io.datasets import load_image
    from .io.files import atomic_write_bytes

    img = np.moveaxis(load_image(src), 0, -1)
    res = encode(img, _cached(default_model_for(img) if model is None else model), **options)
    atomic_write_bytes(dst, res.data)
    o.bytes, o.psnr, o.pixels = len(res.data), res.psnr, res.header.height * res.header.width


def encode_files(inputs, out_dir, model=None, *, force: bool = False, workers: int | None = 1,
                 on_file: Callable[[FileOutcome], None] | None = None, **options) -> list[FileOutcome]:
    """Encode image files (or folders of them) into out_dir/<stem>.dfc (see ``output_names``),
    loading each model once per process (``model`` None: each image's ``default_model_for``); a bad
    file gets its error in its outcome and the rest proceed. ``workers``: processes (None: one per
    core); under torchrun the files are shared across ranks. ``options`` as in ``encode``."""
    from .io.datasets import IMAGE_SUFFIXES

    return _each_file(inputs, IMAGE_SUFFIXES, out_dir, ".dfc", force, on_file, _encode_to, model, options,
                      workers)


def _decode_to(src, dst, o, model, options) -> None:
    from .container.format import Container, FormatError
    from .io.images import save_png, to_chw
    from .training.store import model_keys

    data = read_file(src)
    key = model or Container.from_bytes(data, registered=model_keys).header.model_name or None
    if key is None:
        raise FormatError("the file holds no complete layer: it is truncated or corrupt")
    dec = decode(data, _cached(key), **options)
    save_png(dst, to_chw(dec.image))
    o.bytes, o.pixels = len(data), dec.image.shape[0] * dec.image.shape[1]


def decode_files(inputs, out_dir, model=None, *, force: bool = False, workers: int | None = 1,
                 on_file: Callable[[FileOutcome], None] | None = None, **options) -> list[FileOutcome]:
    """Decode .dfc files (or folders of them) into out_dir/<stem>.png, loading each model once per
    process; a bad file gets its error in its outcome and the rest proceed. ``workers`` as in
    ``encode_files``; ``options`` as in ``decode``."""
    return _each_file(inputs, {".dfc"}, out_dir, ".png", force, on_file, _decode_to, model, options, workers)


def read_file(path) -> bytes:
    """A file's bytes, or a one-line UserError."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None


