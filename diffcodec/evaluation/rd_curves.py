"""Rate-distortion curves of our codecs and the baselines, in CompressAI's JSON layout.

Every real codec's points come from real files written under ``files_dir`` (bytes counted are
whole files, headers included). A diffusion backend's point k is the file its encoder writes when
it stops after k coded steps (what ``--stop-step``, ``--psnr`` or ``--quality`` give), for every k of
the chain, so the curve is sampled densely where it bends; the PSNR is the decoder's (one decode
of the full file reports every step's reconstruction, and some stopped files are decoded on their
own and checked against it). ``ideal`` charges the KL terms of the model's full T-step chain with
exact posterior samples (the ideal estimate). Curves are compared by BD-rate and BD-PSNR against an
anchor codec, and by BD-rate against the ideal curve, over 20-50 dB.
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
from .metrics import BD_RANGE_DB, bd_psnr, bd_rate, ms_ssim, psnr

IDEAL_POINT_SPEC = "geo2"   # which steps of the ideal chain become points: x_t for t on this grid
CHECKED_FILES = 3           # stopped files per image decoded on their own and compared


def diffusion_codecs() -> tuple[str, ...]:
    """The ideal estimate and every registered backend."""
    return (ideal.NAME, *registry.names())


def known_codecs() -> set[str]:
    return set(diffusion_codecs()) | set(baselines.QUALITIES)


def check_codecs(names: list[str]) -> None:
    """Refuse unknown codecs and baselines this machine cannot run, before any image is coded."""
    if not names:
        raise UserError(f"no codecs given; choose from {', '.join(sorted(known_codecs()))}")
    bad = [c for c in names if c not in known_codecs()]
    if bad:
        raise UserError(f"unknown codec(s) {', '.join(bad)}; choose from {', '.join(sorted(known_codecs()))}")
    for codec in names:
        if codec not in diffusion_codecs() and not baselines.available(codec):
            raise UserError(f"codec {codec} is not available here"
                            + (" (pip install 'diffcodec[baselines]')" if codec == "jxl" else ""))


def _ideal_points(loaded, img, steps):
    """Points of the ideal chain: after each step that reaches a timestep on IDEAL_POINT_SPEC."""
    from ..core.schedules import space_timesteps

    res = estimate_image(loaded, img, steps)
    keep = set(space_timesteps(loaded.config.diffusion.num_timesteps, IDEAL_POINT_SPEC))
    kl = np.cumsum([r.kl_bits for r in res.records])
    return [{"bits": float(kl[k]), "psnr": r.psnr, "enc": res.seconds, "dec": 0.0, "steps": k + 1,
             "decoded": None} for k, r in enumerate(res.records) if r.t - 1 in keep]


def _backend_points(loaded, codec, img, steps, files_dir: Path, stem: str, coder=None):
    """Every stopping point of a real backend's chain: file bytes and decoder-side PSNR.
    ``coder``: an instance with encoder-only settings (default: the backend's defaults)."""
    res = encode_image(loaded, img, codec, steps, quality=100, coder=coder)
    previews = {}
    t0 = time.perf_counter()
    decode_container(loaded, Container.from_bytes(res.data, loaded.keys), on_step=lambda k, px: previews.__setitem__(k, px))
    dec_seconds = time.perf_counter() - t0
    n = len(res.records)
    checked = {int(round(v)) for v in np.linspace(1, n, CHECKED_FILES)}
    kl_model = np.cumsum([r.kl_model_bits for r in res.records])
    info = np.cumsum([r.bits for r in res.records])
    rows = []
    for k in range(1, n + 1):
        data = res.data if k == n else res.file_after(k)
        path = files_dir / f"{stem}_k{k}.dfc"
        path.write_bytes(data)
        decoded = previews[k].reshape(img.shape)
        if k in checked:
            alone = decode_container(loaded, Container.from_bytes(data, loaded.keys)).image
            if not np.array_equal(alone, decoded):
                raise RuntimeError(f"{path}: decoding the stopped file differs from the full file's step {k}")
        rows.append({"bits": 8 * len(data), "psnr": psnr(decoded, img), "enc": res.seconds,
                     "dec": dec_seconds * k / n, "steps": k, "decoded": decoded, "file": str(path),
                     "kl_model_bits": float(kl_model[k - 1]), "info_bits": float(info[k - 1])})
    chain = {"payload_bits": 8 * sum(res.layer_bytes), "file_bits": 8 * len(res.data),
             "kl_model_bits": float(kl_model[-1]), "info_bits": float(info[-1]), "steps": n, "psnr": res.psnr}
    return rows, chain


def evaluate_codec(codec: str, images: np.ndarray, out_dir: Path, loaded=None, steps=None,
                   per_image: bool = True, progress=None, coder=None) -> dict:
    """One codec's curve over uint8 images [N, C, H, W], averaged per point over images.
    ``coder``: a backend's coder instance with encoder-only settings (diffusion backends only)."""
    files_dir = Path(out_dir) / "files" / codec
    files_dir.mkdir(parents=True, exist_ok=True)
    C, H, W = images.shape[1:]
    if codec in diffusion_codecs() and loaded is None:
        raise UserError(f"codec {codec} needs a model")
    check_codecs([codec])

    def image_points(n: int, img: np.ndarray) -> tuple[list, dict | None]:
        chain = None
        if codec == ideal.NAME:
            keyed = [(r["steps"], r) for r in _ideal_points(loaded, img, steps)]
        elif codec in diffusion_codecs():
            rows, chain = _backend_points(loaded, codec, img, steps, files_dir, f"img{n:05d}", coder)
            keyed = [(r["steps"], r) for r in rows]
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
        return keyed, chain

    mine = my_indices(len(images))      # this process's share under torchrun, else all images
    per_image_points = []
    for n in mine:
        per_image_points.append(image_points(int(n), images[n]))
        if progress:
            progress(1)
    points: dict = {}
    rows_out = []
    gathered = gather_rows(mine, per_image_points, len(images))
    chains = [chain for _, chain in gathered if chain is not None]
    for n, (keyed, _) in enumerate(gathered):
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
    if chains:   # where a backend's bits go: the coded chain's KL under p_theta, then its symbols
        results["bpp_kl_model"] = [mean(k, "kl_model_bits") / (H * W) for k in keys]
        results["bpp_info"] = [mean(k, "info_bits") / (H * W) for k in keys]
    if all(r["ms_ssim"] is not None for k in keys for r in points[k]):
        results["ms-ssim"] = [mean(k, "ms_ssim") for k in keys]
    # CompressAI's plotting utility reads these names for every image, grayscale included
    results["psnr-rgb"] = results["psnr"]
    if "ms-ssim" in results:
        results["ms-ssim-rgb"] = results["ms-ssim"]
    desc = (f"diffcodec {codec} on model {loaded.name}, steps {steps or 'default'}" if codec in diffusion_codecs()
            else baselines.DESCRIPTIONS[codec].format(q="swept"))
    doc = {"name": codec, "description": desc, "images": len(images), "results": results}
    if chains:   # full-rate chains: what the coded chain costs against its KL under p_theta
        D = C * H * W
        tot = {k: float(np.sum([c[k] for c in chains])) for k in ("payload_bits", "file_bits", "kl_model_bits", "info_bits")}
        doc["chain"] = {"images": len(chains), "steps": float(np.mean([c["steps"] for c in chains])),
                        "payload_bpd": tot["payload_bits"] / (len(chains) * D),
                        "file_bpd": tot["file_bits"] / (len(chains) * D),
                        "kl_model_bpd": tot["kl_model_bits"] / (len(chains) * D),
                        "payload_over_kl_model": tot["payload_bits"] / tot["kl_model_bits"],
                        "payload_over_info": tot["payload_bits"] / tot["info_bits"],
                        "psnr": float(np.mean([min(c["psnr"], 99.0) for c in chains]))}
    if per_image:
        doc["per_image"] = rows_out
    return doc


def read_curves(out_dir: Path, images: int, exclude=()) -> dict:
    """The curves an earlier ``eval rd`` wrote to out_dir (codec name -> doc), except ``exclude``;
    a curve over another number of images is refused."""
    import json

    docs = {}
    for path in sorted(Path(out_dir).glob("*.json")):
        if path.stem in exclude or path.stem not in known_codecs():
            continue
        doc = json.loads(path.read_text())
        if doc.get("images") != images:
            raise UserError(f"{path} holds {doc.get('images')} images, not {images}: run it again")
        docs[path.stem] = doc
    return docs


def add_bd(docs: dict, anchor: str) -> None:
    """Add each curve's BD-rate (%) and BD-PSNR (dB) against the anchor's as doc["bd"], and its
    BD-rate against the ideal curve as doc["bd_vs_ideal"] (when those were evaluated). BD-rates are
    taken over BD_RANGE_DB where both curves reach."""
    for ref, key in ((anchor, "bd"), (ideal.NAME, "bd_vs_ideal")):
        if ref not in docs:
            continue
        a = docs[ref]["results"]
        for doc in docs.values():
            r = doc["results"]
            doc[key] = {"anchor": ref, "psnr_range_db": list(BD_RANGE_DB),
                        "bd_rate_percent": bd_rate(a["bpp"], a["psnr"], r["bpp"], r["psnr"], BD_RANGE_DB),
                        "bd_psnr_db": bd_psnr(a["bpp"], a["psnr"], r["bpp"], r["psnr"])}
            if ref == ideal.NAME and "bpp_kl_model" in r:
                # the gap to the ideal curve, stage by stage: the coded chain's own KL (schedule and
                # sampling bias), the coder's symbols (channel-simulation overhead), the file
                doc[key]["stages_bd_rate_percent"] = {
                    stage: bd_rate(a["bpp"], a["psnr"], r[field], r["psnr"], BD_RANGE_DB)
                    for stage, field in (("chain_kl", "bpp_kl_model"), ("symbols", "bpp_info"), ("file", "bpp"))}


def rate_at_psnr(doc: dict, target: float) -> float | None:
    """Bits per pixel the curve needs to reach ``target`` dB (linear in log-rate between points)."""
    r = doc["results"]
    rate, q = np.asarray(r["bpp"], float), np.asarray(r["psnr"], float)
    order = np.argsort(rate)
    rate, q = rate[order], np.maximum.accumulate(q[order])
    if q[-1] < target:
        return None
    k = int(np.searchsorted(q, target))
    if k == 0:
        return float(rate[0])
    f = (target - q[k - 1]) / max(q[k] - q[k - 1], 1e-12)
    return float(10 ** (np.log10(rate[k - 1]) + f * (np.log10(rate[k]) - np.log10(rate[k - 1]))))


SUMMARY_PSNRS = (25.0, 30.0, 35.0, 40.0, 45.0)


def summarize(docs: dict) -> list[dict]:
    """One row per curve: BD-rates, rate needed at SUMMARY_PSNRS and, for the real diffusion
    backends, payload / KL(q || p_theta) of the coded chain."""
    rows = []
    for name, doc in docs.items():
        rows.append({"codec": name, "points": len(doc["results"]["bpp"]),
                     "bd_rate_vs_anchor": doc.get("bd", {}).get("bd_rate_percent"),
                     "anchor": doc.get("bd", {}).get("anchor"),
                     "bd_rate_vs_ideal": doc.get("bd_vs_ideal", {}).get("bd_rate_percent"),
                     "bpp_at": {f"{p:g}": rate_at_psnr(doc, p) for p in SUMMARY_PSNRS},
                     "payload_over_kl_model": doc.get("chain", {}).get("payload_over_kl_model")})
    return rows
