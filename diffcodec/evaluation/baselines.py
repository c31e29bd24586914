"""Conventional codecs through Pillow (JPEG, WebP, AVIF, JPEG 2000) and, with the optional
`baselines` extra, JPEG XL through imagecodecs. Bytes counted are whole files, headers included."""
from __future__ import annotations

import io
import time

import numpy as np

from ..errors import UserError
from ..io.images import to_chw, to_hwc

# quality knobs swept for a rate-distortion curve (codec -> list of settings)
QUALITIES = {
    "jpeg": [10, 20, 30, 50, 75, 90, 95],
    "webp": [5, 10, 30, 50, 75, 90, 100],
    "avif": [10, 20, 40, 60, 80, 90, 100],
    "jpeg2000": [22, 26, 30, 34, 38, 42, 48],      # target PSNR (dB) per OpenJPEG layer
    "jxl": [8.0, 4.0, 2.0, 1.0, 0.5, 0.2, 0.05],  # butteraugli distances
}
DESCRIPTIONS = {
    "jpeg": "JPEG (Pillow/libjpeg), quality {q}", "webp": "WebP lossy (Pillow/libwebp), quality {q}",
    "avif": "AVIF (Pillow/libavif), quality {q}", "jpeg2000": "JPEG 2000 (Pillow/OpenJPEG), target {q} dB",
    "jxl": "JPEG XL (imagecodecs/libjxl), distance {q}",
}


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


def encode_decode(codec: str, img: np.ndarray, q) -> tuple[bytes, np.ndarray, float, float]:
    """(file bytes, decoded uint8 [C, H, W], encode seconds, decode seconds)."""
    from PIL import Image

    C = img.shape[0]
    t0 = time.perf_counter()
    if codec == "jxl":
        try:
            import imagecodecs
        except ImportError:
            raise UserError("JPEG XL needs the optional extra: pip install 'diffcodec[baselines]'") from None
        data = bytes(imagecodecs.jpegxl_encode(to_hwc(img), distance=float(q)))
        t1 = time.perf_counter()
        out = to_chw(np.asarray(imagecodecs.jpegxl_decode(data)))
        return data, out, t1 - t0, time.perf_counter() - t1
    im = _to_pil(img)
    buf = io.BytesIO()
    if codec == "jpeg":
        im.save(buf, format="JPEG", quality=int(q))
    elif codec == "webp":
        im.save(buf, format="WEBP", quality=int(q))
    elif codec == "avif":
        im.save(buf, format="AVIF", quality=int(q))
    elif codec == "jpeg2000":
        im.save(buf, format="JPEG2000", quality_mode="dB", quality_layers=[float(q)], irreversible=True)
    else:
        raise UserError(f"unknown codec {codec!r}")
    data = buf.getvalue()
    t1 = time.perf_counter()
    with Image.open(io.BytesIO(data)) as dec:
        out = _from_pil(dec, C)
    return data, out, t1 - t0, time.perf_counter() - t1
