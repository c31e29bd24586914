"""Conventional codecs through Pillow (JPEG, WebP, AVIF, JPEG 2000) and, with the optional
`baselines` extra, JPEG XL through imagecodecs, each at its best documented settings.

``SETTINGS`` is the one table of what every baseline is run with: its encoder options, the knob
swept for a rate-distortion curve and its values, and, where a codec has several chroma layouts,
the variants whose points are pooled (``rd_curves`` keeps the better point at each rate: the
Pareto front of the union in (bpp, PSNR)). Bytes counted are whole files, headers included;
``container_bytes`` measures what a format spends on an empty (flat mid-gray) image of the same
size at the same settings, which ``rd_curves`` removes for its "coding only" curves.
"""
from __future__ import annotations

import io
import time
from functools import lru_cache

import numpy as np

from ..errors import UserError
from ..io.images import to_chw, to_hwc

# codec -> its settings: the one place they are chosen (README lists them next to the RD tables).
#   label    what tables and plots call it
#   encoder  the library call and the options passed on every file
#   knob     the parameter swept; values: its settings, spread so the curve covers our curves'
#            PSNR range (about 12 to 53 dB on Fashion-MNIST and on 256x256 photo crops) where the
#            codec can reach it at all (lossy WebP stops near 28 dB below and 41 dB above on photos)
#   variants channels -> {variant name: extra encoder options}; with several, every variant is
#            run at every knob value and the curve is the Pareto front of their union
SETTINGS = {
    "jpeg": {
        "label": "JPEG",
        "encoder": "Pillow Image.save(format='JPEG', optimize=True) (libjpeg-turbo): optimized Huffman tables",
        "options": {"optimize": True},
        "knob": "quality",
        "values": [1, 3, 5, 7, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 85, 90, 95, 98, 100],
        "variants": {3: {"420": {"subsampling": 2}, "444": {"subsampling": 0}},
                     1: {"gray": {}}},   # one component: no chroma to subsample
    },
    "webp": {
        "label": "WebP",
        "encoder": "Pillow Image.save(format='WEBP', method=6) (libwebp, lossy): the slowest, best method",
        "options": {"method": 6},
        "knob": "quality",
        "values": [0, 1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 100],
        "variants": {3: {"420": {}}, 1: {"420": {}}},   # lossy WebP is always YUV 4:2:0
    },
    "avif": {
        "label": "AVIF",
        "encoder": "Pillow Image.save(format='AVIF', speed=4, max_threads=1) (libavif, AV1)",
        "options": {"speed": 4, "max_threads": 1},
        "knob": "quality",
        "values": [0, 5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 85, 90, 95, 98, 100],
        "variants": {3: {"420": {"subsampling": "4:2:0"}, "444": {"subsampling": "4:4:4"}},
                     1: {"400": {"subsampling": "4:0:0"}}},   # grayscale: monochrome AV1
    },
    "jpeg2000": {
        "label": "JPEG 2000",
        "encoder": "Pillow Image.save(format='JPEG2000', quality_mode='dB', irreversible=True) "
                   "(OpenJPEG, 9/7 wavelet): one layer at a target PSNR",
        "options": {"quality_mode": "dB", "irreversible": True},
        "knob": "target PSNR (dB)",
        "values": [12, 15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51, 54, 57, 60],
        "variants": {3: {"default": {}}, 1: {"default": {}}},
    },
    "jxl": {
        "label": "JPEG XL",
        "encoder": "imagecodecs.jpegxl_encode(effort=7) (libjxl, VarDCT)",
        "options": {"effort": 7},
        "knob": "butteraugli distance",
        "values": [25.0, 15.0, 10.0, 7.0, 5.0, 3.5, 2.5, 1.8, 1.3, 1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05],
        "variants": {3: {"default": {}}, 1: {"default": {}}},
    },
}
VARIANT_NAMES = {"420": "4:2:0", "444": "4:4:4", "400": "4:0:0 (monochrome)",
                 "gray": "grayscale (one component)"}
QUALITIES = {codec: s["values"] for codec, s in SETTINGS.items()}   # codec -> knob values swept
FLAT_GRAY = 128   # the empty image of ``container_bytes``


def _to_pil(img: np.ndarray):
    from PIL import Image

    return Image.fromarray(to_hwc(img))


def _from_pil(im, channels: int) -> np.ndarray:
    return to_chw(np.asarray(im.convert("L" if channels == 1 else "RGB"), dtype=np.uint8))


def available(codec: str) -> bool:
    if codec == "jxl":
        try:
            import imagecodecs  # noqa: F401
        except ImportError:
            return False
        return True
    from PIL import features

    feature = {"jpeg": "jpg", "webp": "webp", "avif": "avif", "jpeg2000": "jpg_2000"}.get(codec)
    return feature is not None and bool(features.check(feature))


def variants(codec: str, channels: int) -> dict:
    """Variant name -> extra encoder options of ``codec`` for images of ``channels`` channels."""
    return SETTINGS[codec]["variants"][1 if channels == 1 else 3]


def sweep(codec: str, channels: int) -> list[tuple[str, object, str]]:
    """Every file a curve is made of: (point key, knob value, variant). A key is ``q<value>``, or
    ``<variant>-q<value>`` where the codec has several variants for these channels."""
    names = list(variants(codec, channels))
    return [(f"q{q:g}" if len(names) == 1 else f"{v}-q{q:g}", q, v)
            for v in names for q in SETTINGS[codec]["values"]]


def library_versions() -> dict:
    """The encoder libraries this machine runs (they set what the baselines measure)."""
    import PIL
    from PIL import features

    out = {"pillow": PIL.__version__}
    for name, feature in (("libjpeg", "jpg"), ("libwebp", "webp"), ("libavif", "avif"), ("openjpeg", "jpg_2000")):
        try:
            out[name] = features.version(feature)
        except (ValueError, KeyError):
            out[name] = None
    if features.check("libjpeg_turbo"):
        out["libjpeg_turbo"] = features.version("libjpeg_turbo")
    try:
        import imagecodecs

        out["imagecodecs"] = imagecodecs.__version__
        out["libjxl"] = imagecodecs.jpegxl_version()
    except (ImportError, AttributeError):
        pass
    return out


def describe(codec: str, channels: int) -> dict:
    """The settings a curve of ``codec`` on images of ``channels`` channels is made with, for its JSON."""
    s = SETTINGS[codec]
    v = variants(codec, channels)
    return {"codec": codec, "label": s["label"], "encoder": s["encoder"], "options": dict(s["options"]),
            "knob": s["knob"], "values": list(s["values"]), "variants": {k: dict(o) for k, o in v.items()},
            "curve": ("Pareto front (in bpp, PSNR) of the union of the variants' points" if len(v) > 1
                      else "Pareto front (in bpp, PSNR) of the points"),
            "libraries": library_versions()}


def summary_line(codec: str, channels: int) -> str:
    """One line of a settings list: the encoder, its knob values and variants."""
    s, v = SETTINGS[codec], variants(codec, channels)
    vals = s["values"]
    names = [VARIANT_NAMES.get(n, n) for n in v if n != "default"]
    return (f"{s['label']}: {s['encoder']}; {s['knob']} {vals[0]:g} to {vals[-1]:g} ({len(vals)} values)"
            + (f"; {' and '.join(names)}, the better point at each rate (Pareto front)" if len(names) > 1
               else f"; {names[0]}" if names else ""))


def encode_decode(codec: str, img: np.ndarray, q, variant: str | None = None) -> tuple[bytes, np.ndarray, float, float]:
    """(file bytes, decoded uint8 [C, H, W], encode seconds, decode seconds) with ``SETTINGS``;
    ``variant``: one of ``variants(codec, C)`` (default: the first)."""
    from PIL import Image

    if codec not in SETTINGS:
        raise UserError(f"unknown codec {codec!r}")
    C = img.shape[0]
    choices = variants(codec, C)
    variant = next(iter(choices)) if variant is None else variant
    if variant not in choices:
        raise UserError(f"{codec} has no variant {variant!r} for {C}-channel images; choose from {', '.join(choices)}")
    opts = {**SETTINGS[codec]["options"], **choices[variant]}
    t0 = time.perf_counter()
    if codec == "jxl":
        try:
            import imagecodecs
        except ImportError:
            raise UserError("JPEG XL needs the optional extra: pip install 'diffcodec[baselines]'") from None
        data = bytes(imagecodecs.jpegxl_encode(to_hwc(img), distance=float(q), **opts))
        t1 = time.perf_counter()
        out = to_chw(np.asarray(imagecodecs.jpegxl_decode(data)))
        return data, out, t1 - t0, time.perf_counter() - t1
    im = _to_pil(img)
    buf = io.BytesIO()
    if codec == "jpeg2000":
        im.save(buf, format="JPEG2000", quality_layers=[float(q)], **opts)
    else:
        im.save(buf, format={"jpeg": "JPEG", "webp": "WEBP", "avif": "AVIF"}[codec], quality=int(q), **opts)
    data = buf.getvalue()
    t1 = time.perf_counter()
    with Image.open(io.BytesIO(data)) as dec:
        out = _from_pil(dec, C)
    return data, out, t1 - t0, time.perf_counter() - t1


@lru_cache(maxsize=None)
def _container_bytes(codec: str, shape: tuple, q, variant: str) -> int:
    return len(encode_decode(codec, np.full(shape, FLAT_GRAY, np.uint8), q, variant)[0])


def container_bytes(codec: str, shape, q, variant: str | None = None) -> int:
    """A format's fixed bytes at one setting: the size of the file it writes for an empty image
    (every pixel ``FLAT_GRAY``) of the same shape [C, H, W] with the same settings (knob value and
    variant). That is its headers, markers and tables (JPEG's quantization and Huffman tables,
    WebP's RIFF chunks, AVIF's ISOBMFF boxes, JPEG 2000's codestream and JP2 boxes, JPEG XL's
    header) plus the few bytes the format needs to code a flat image, so removing it from a
    file removes slightly more than the container: the "coding only" curve this gives flatters
    the baseline, never our codec. With optimized Huffman tables (JPEG) the flat image's tables
    are smaller than a real image's, which stay in the coding bytes."""
    v = next(iter(variants(codec, shape[0]))) if variant is None else variant
    return _container_bytes(codec, tuple(int(s) for s in shape), q, v)
