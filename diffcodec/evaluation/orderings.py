"""The autoregressive generalization, measured (paper Section 4.3): progressive rate-distortion
curves of a masking model revealing pixels in raster, random and coarse-to-fine order, beside the
Gaussian model's curves from ``eval rd`` on the same images.

For each order and image: the ideal rate after n revealed coordinates is the sum of their code
lengths (the first n KL terms of the T = D bound, one network evaluation per coordinate) and the
distortion is that of the receiver's reconstruction (revealed pixels exact, the predicted mean
elsewhere). The real curve comes from real files of the masking codec (budgeted parallel steps):
whole-file bytes of each layer prefix, and the reconstruction that prefix decodes to. Per-image
curves are averaged at equal quality: the rate each image needs for each PSNR on a 1 dB grid.
"""
from __future__ import annotations

import numpy as np

from ..coding import reveal
from ..container.format import Container
from .metrics import psnr
from .rd_curves import rate_at_psnr

PSNR_GRID = np.arange(10.0, 61.0, 1.0)
TABLE_PSNRS = (20.0, 25.0, 30.0, 40.0)


def _needed(rate: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Rate one image needs for each PSNR_GRID level (nan where its curve never gets there)."""
    doc = {"results": {"bpp": list(np.maximum(rate, 1e-6)), "psnr": list(np.minimum(quality, 99.0))}}
    return np.array([np.nan if (v := rate_at_psnr(doc, p)) is None else v for p in PSNR_GRID])


def _doc(name: str, needed: list[np.ndarray], lossless_bpp: float, n_images: int, extra: dict) -> dict:
    """A CompressAI-layout curve: mean rate at each PSNR level that every image reaches."""
    rates = np.stack(needed)
    ok = ~np.isnan(rates).any(0)
    return {"name": name, "images": n_images, "lossless_bpp": lossless_bpp, **extra,
            "results": {"bpp": rates[:, ok].mean(0).tolist(), "psnr": PSNR_GRID[ok].tolist()}}


def ideal_curve(loaded, images: np.ndarray, order: str, progress=None) -> tuple[dict, np.ndarray]:
    """The ideal curve of one order. -> (doc, per-coordinate code lengths [N, D] in bits)."""
    md = loaded.masking()
    N, pixels = len(images), md.shape[1] * md.shape[2]
    flat = images.reshape(N, -1)
    quality = np.zeros((N, md.D + 1))
    quality[:, md.D] = np.inf

    def on_step(n, pred):
        quality[:, n] = [psnr(pred[i], flat[i]) for i in range(N)]

    terms = md.bound_terms(loaded.net, images, md.order(order), progress, on_step=on_step)
    cum = np.concatenate([np.zeros((N, 1)), np.cumsum(terms, 1)], 1) / pixels    # bits per pixel
    needed = [_needed(cum[i], quality[i]) for i in range(N)]
    doc = _doc(f"{order} (ideal)", needed, float(cum[:, -1].mean()), N,
               {"order": order, "kind": "ideal", "network_evals": md.D})
    return doc, terms


def real_curve(loaded, images: np.ndarray, order: str, steps=None, layers: int = 16, progress=None) -> dict:
    """The real masking codec's curve of one order: each layer prefix of each file (whole-file
    bytes up to it), with the PSNR of the reconstruction that prefix decodes to (the header alone
    decoded here; later prefixes as the encoder computes the decoder's reconstruction, which
    tests/test_masking.py checks against real prefix decodes)."""
    md = loaded.masking()
    pixels = md.shape[1] * md.shape[2]
    needed, sizes, evals = [], [], 0
    for img in images:
        res = reveal.encode_image(loaded, img, order, steps, layers)
        ends = np.cumsum(res.layer_steps)
        rate = res.header_bytes + np.concatenate([[0], np.cumsum(res.layer_bytes)])
        header_only = reveal.decode_container(loaded, Container.from_bytes(res.data, loaded.keys), layers=0)
        quality = np.array([psnr(header_only.image, img)] + [res.records[e - 1].psnr for e in ends])
        needed.append(_needed(8.0 * rate / pixels, quality))
        sizes.append(8.0 * len(res.data) / pixels)
        evals = res.net_evals
        if progress:
            progress(1)
    return _doc(f"{order} (real files)", needed, float(np.mean(sizes)), len(images),
                {"order": order, "kind": "real", "network_evals": evals})


def table(docs: list[dict]) -> list[dict]:
    """Rate needed at TABLE_PSNRS and the lossless rate, one row per curve (bits per pixel)."""
    return [{"curve": d["name"], **{f"{p:g} dB": rate_at_psnr(d, p) for p in TABLE_PSNRS},
             "lossless": d.get("lossless_bpp"), "network_evals": d.get("network_evals")} for d in docs]
