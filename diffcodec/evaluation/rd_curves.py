"""Rate-distortion curves of our codecs and the baselines, in CompressAI's JSON layout.

Every real codec's points come from real files written under ``files_dir`` (bytes counted are
whole files, headers included); the diffusion codecs' points are prefixes of one progressive file
(complete layers covering the first k steps), decoded for real. ``ideal`` charges the KL terms
(the ideal estimate). Curves are compared by BD-rate and BD-PSNR against an anchor codec.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..coding import ideal, registry
from ..coding.progressive import decode_container, encode_image, estimate_image
from ..container.format import Container
from ..distributed import gather_rows, my_indices
from ..errors import UserError
from . import baselines
from .metrics import bd_psnr, bd_rate, ms_ssim, psnr

MAX_POINTS = 10


def diffusion_codecs() -> tuple[str, ...]:
    """The ideal estimate and every registered backend."""
    return (ideal.NAME, *registry.names())


def known_codecs() -> set[str]:
    return set(diffusion_codecs()) | set(baselines.QUALITIES)


def check_codecs(names: list[str]) -> None:
    bad = [c for c in names if c not in known_codecs()]
    if bad:
        raise UserError(f"unknown codec(s) {', '.join(bad)}; choose from {', '.join(sorted(known_codecs()))}")


def _stop_points(n_steps: int) -> list[int]:
    """Which step counts k (1..n_steps) become curve points: all, or MAX_POINTS spread towards the end."""
    if n_steps <= MAX_POINTS:
        return list(range(1, n_steps + 1))
    return sorted({int(round(v)) for v in np.linspace(1, n_steps, MAX_POINTS)})


def _diffusion_points(loaded, codec, img, steps, files_dir: Path, stem: str):
    rows = []
    if codec == ideal.NAME:
        res = estimate_image(loaded, img, steps)
        kl = np.cumsum([r.kl_bits for r in res.records])
        for k in _stop_points(len(res.records)):
            rows.append({"bits": float(kl[k - 1]), "psnr": res.records[k - 1].psnr, "enc": res.seconds, "dec": 0.0,
                         "steps": k, "decoded": None})
        return rows
    res = encode_image(loaded, img, codec, steps)
    n = len(res.records)
    c = Container.from_bytes(res.data)
    ends = np.cumsum([l.steps for l in c.layers])
    cum_bytes = res.header_bytes + np.cumsum([len(l.data) for l in c.layers])
    for k in _stop_points(n):
        L = int(np.searchsorted(ends, k) + 1)            # layers needed to cover k steps
        data = res.data[:int(cum_bytes[L - 1])]
        path = files_dir / f"{stem}_k{k}.dfc"
        path.write_bytes(data)
        t0 = time.perf_counter()
        out = decode_container(loaded, Container.from_bytes(data), stop_step=res.records[k - 1].t)
        rows.append({"bits": 8 * len(data), "psnr": psnr(out.image, img), "enc": res.seconds,
                     "dec": time.perf_counter() - t0, "steps": k, "decoded": out.image, "file": str(path)})
    return rows


def evaluate_codec(codec: str, images: np.ndarray, out_dir: Path, loaded=None, steps=None,
                   per_image: bool = True, progress=None) -> dict:
    """One codec's curve over uint8 images [N, C, H, W], averaged per point over images."""
    files_dir = Path(out_dir) / "files" / codec
    files_dir.mkdir(parents=True, exist_ok=True)
    C, H, W = images.shape[1:]
    if codec in diffusion_codecs() and loaded is None:
        raise UserError(f"codec {codec} needs a model")
    if codec not in diffusion_codecs() and not baselines.available(codec):
        raise UserError(f"codec {codec} is not available here"
                        + (" (pip install 'diffcodec[baselines]')" if codec == "jxl" else ""))

    def image_points(n: int, img: np.ndarray) -> list:
        if codec in diffusion_codecs():
            keyed = [(r["steps"], r) for r in _diffusion_points(loaded, codec, img, steps, files_dir, f"img{n:05d}")]
        else:
            keyed = []
            for q in baselines.QUALITIES[codec]:
                data, dec, te, td = baselines.encode_decode(codec, img, q)
                path = files_dir / f"img{n:05d}_q{q}.{codec}"
                path.write_bytes(data)
                keyed.append((q, {"bits": 8 * len(data), "psnr": psnr(dec, img), "enc": te, "dec": td,
                                  "decoded": dec, "file": str(path)}))
        for _, r in keyed:
            decoded = r.pop("decoded", None)
            r["ms_ssim"] = ms_ssim(decoded, img) if decoded is not None else None
        return keyed

    mine = my_indices(len(images))      # this process's share under torchrun, else all images
    per_image_points = []
    for n in mine:
        per_image_points.append(image_points(int(n), images[n]))
        if progress:
            progress(1)
    points: dict = {}
    rows_out = []
    for n, keyed in enumerate(gather_rows(mine, per_image_points, len(images))):
        for key, r in keyed:
            points.setdefault(key, []).append(r)
            if per_image:
                rows_out.append({"image": n, "point": key, "bytes": r["bits"] / 8 if codec != ideal.NAME else None,
                                 "bits": r["bits"], "bpp": r["bits"] / (H * W), "psnr": r["psnr"],
                                 "ms_ssim": r["ms_ssim"], "file": r.get("file")})
    keys = sorted(points, key=lambda k: np.mean([r["bits"] for r in points[k]]))
    mean = lambda k, f: float(np.mean([r[f] for r in points[k]]))  # noqa: E731
    fin = lambda v: v if math.isfinite(v) else 99.0  # noqa: E731  (lossless points: cap PSNR for plots)
    results = {
        "points": keys,
        "bpp": [mean(k, "bits") / (H * W) for k in keys],
        "bpd": [mean(k, "bits") / (C * H * W) for k in keys],
        "psnr": [fin(float(np.mean([min(r["psnr"], 99.0) for r in points[k]]))) for k in keys],
        "rmse": [float(np.mean([255.0 / 10 ** (min(r["psnr"], 99.0) / 20) for r in points[k]])) for k in keys],
        "encoding_time": [mean(k, "enc") for k in keys],
        "decoding_time": [mean(k, "dec") for k in keys],
    }
    if codec != ideal.NAME:
        results["bytes"] = [mean(k, "bits") / 8 for k in keys]
    if all(r["ms_ssim"] is not None for k in keys for r in points[k]):
        results["ms-ssim"] = [mean(k, "ms_ssim") for k in keys]
    if C == 3:
        results["psnr-rgb"] = results["psnr"]
        if "ms-ssim" in results:
            results["ms-ssim-rgb"] = results["ms-ssim"]
    desc = (f"diffcodec {codec} on model {loaded.name}, steps {steps or 'default'}" if codec in diffusion_codecs()
            else baselines.DESCRIPTIONS[codec].format(q="swept"))
    doc = {"name": codec, "description": desc, "images": len(images), "results": results}
    if per_image:
        doc["per_image"] = rows_out
    return doc


def add_bd(docs: dict, anchor: str) -> None:
    """Add each curve's BD-rate (%) and BD-PSNR (dB) against the anchor's, as doc["bd"] (no-op when
    the anchor was not evaluated)."""
    if anchor not in docs:
        return
    a = docs[anchor]["results"]
    for doc in docs.values():
        r = doc["results"]
        doc["bd"] = {"anchor": anchor, "bd_rate_percent": bd_rate(a["bpp"], a["psnr"], r["bpp"], r["psnr"]),
                     "bd_psnr_db": bd_psnr(a["bpp"], a["psnr"], r["bpp"], r["psnr"])}
