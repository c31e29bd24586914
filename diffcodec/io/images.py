"""Image arrays: PNG out (uint8 [C, H, W], written atomically), CHW <-> HWC, image grids."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes


def to_hwc(img: np.ndarray) -> np.ndarray:
    """[C, H, W] -> what image libraries take: [H, W] for one channel, else [H, W, C]."""
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def to_chw(arr: np.ndarray) -> np.ndarray:
    """An image library's [H, W] or [H, W, C] array -> [C, H, W]."""
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(to_hwc(img))).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str | Path, img: np.ndarray) -> None:
    """Save uint8 [C, H, W] (C = 1 or 3) as PNG, atomically."""
    atomic_write_bytes(path, png_bytes(img))


def grid(images: np.ndarray, ncol: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile uint8 [N, C, H, W] into one [C, H', W'] image, row-major, ``ncol`` per row."""
    n, c, h, w = images.shape
    ncol = ncol or int(np.ceil(np.sqrt(n)))
    nrow = int(np.ceil(n / ncol))
    out = np.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), fill, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = images[i]
    return out
