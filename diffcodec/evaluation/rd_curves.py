"""Rate-distortion curves of our codecs and the baselines, in CompressAI's JSON layout.

Every real codec's points come from real files written under ``files_dir`` (bytes counted are
whole files, headers included). A diffusion backend's point k is the file its encoder writes when
it stops after k coded steps (what ``--stop-step``, ``--psnr`` or ``--quality`` give), for every k of
the chain, so the curve is sampled densely where it bends; the PSNR is the decoder's (one decode
of the full file reports every step's reconstruction, and some stopped files are decoded on their
own and checked against it). ``ideal`` charges the KL terms of the model's full T-step chain with
exact posterior samples (the ideal estimate). Curves are compared by BD-rate and BD-PSNR against an
anchor codec, and by BD-rate against the ideal curve, over the part of 20-50 dB where both curves
reach: every BD-rate reports that overlap, and one over less than MIN_OVERLAP_DB dB is reported as
such (``metrics.bd_rate_report``), not as a number for 20-50 dB.

A baseline runs with ``baselines.SETTINGS`` (one table); where it has several variants (chroma
layouts) its curve is the Pareto front of their pooled points (``metrics.pareto_front``), the
union kept under ``all_points``. Every real curve also has a "coding only" curve (``coding_only``):
each file less its format's fixed bytes (``FIXED_BYTES_METHOD``), so that small images show the
coding and the containers separately; BD-rates are reported for whole files and for coding only.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..coding import ideal, registry
from ..coding.progressive import decode_container, default_steps, encode_image, estimate_image
from ..container.format import Container
from ..distributed import gather_rows, my_indices
from ..errors import UserError
from . import baselines
from .metrics import BD_RANGE_DB, MIN_OVERLAP_DB, bd_psnr, bd_rate, bd_rate_report, ms_ssim, pareto_front, psnr

IDEAL_POINT_SPEC = "geo2"   # which steps of the ideal chain become points: x_t for t on this grid
CHECKED_FILES = 3           # stopped files per image decoded on their own and compared
FLAT_GRAY = baselines.FLAT_GRAY

# how each kind of curve's fixed bytes (removed for the "coding only" curves) are measured
FIXED_BYTES_METHOD = {
    "baseline": "the whole file the codec writes for a flat mid-gray image of the same size at the same "
                "settings (knob value and variant): headers, markers and tables plus the few bytes that code "
                "a flat image (baselines.container_bytes), removed from every file at that setting",
    "dfc": "the .dfc header of a one-layer file (first byte, flags, size and settings fields, its layer-table "
           "entry, CRC-16), as Container.from_bytes reads it from the one-layer file that a flat mid-gray image "
           "of the same size gives after its first coded step with the same model, backend, steps and coder "
           "(dfc_container_bytes, less any padding Container.settled added); the layer-table entries and "
           "CRC-8s that later layers add stay in the coding "
           "bytes: they are the price of decodable prefixes",
    "ideal": "none: the ideal estimate writes no file",
}


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


def dfc_container_bytes(loaded, codec: str, shape, steps=None, coder=None) -> int:
    """The fixed bytes of a .dfc file (``FIXED_BYTES_METHOD["dfc"]``): the header of the one-layer
    file that a flat mid-gray image of ``shape`` [C, H, W] gives after its first coded step with
    this model, backend, steps and coder. It depends on the settings, not on the pixels (less
    the redundant bytes an encoder may add to settle a file's check: ``Container.settled``)."""
    import copy

    flat = np.full(tuple(shape), FLAT_GRAY, np.uint8)
    res = encode_image(loaded, flat, codec, steps, stop_step=1 << 30,
                       coder=None if coder is None else copy.deepcopy(coder))
    container = Container.from_bytes(res.data, loaded.keys)
    if len(container.layers) != 1:
        raise RuntimeError(f"{codec}: the first step's file has {len(container.layers)} layers, not 1")
    return container.header_size() - container.pad


def _curve(keys: list, points: dict, C: int) -> dict:
    """CompressAI-layout results of the points ``keys`` (each averaged over the images; bits per
    pixel are each image's own, averaged)."""
    mean = lambda k, f: float(np.mean([r[f] for r in points[k]]))  # noqa: E731
    per_pixel = lambda k: float(np.mean([r["bits"] / r["pixels"] for r in points[k]]))  # noqa: E731
    fin = lambda v: v if math.isfinite(v) else 99.0  # noqa: E731  (lossless points: cap PSNR for plots)
    return {
        "points": keys,
        "bpp": [per_pixel(k) for k in keys],
        "bpd": [per_pixel(k) / C for k in keys],
        "psnr": [fin(float(np.mean([min(r["psnr"], 99.0) for r in points[k]]))) for k in keys],
        "rmse": [float(np.mean([255.0 / 10 ** (min(r["psnr"], 99.0) / 20) for r in points[k]])) for k in keys],
        "encoding_time": [mean(k, "enc") for k in keys],
        "decoding_time": [mean(k, "dec") for k in keys],
    }


def coding_only_curve(keys: list, bpp: list, psnrs: list, fixed_bytes: list, pixels: float,
                      method: str, front: bool) -> dict:
    """The "coding only" curve: each point's mean bits per pixel less 8 * its mean fixed bytes /
    ``pixels`` (the images' mean pixel count: exact when they all have the same number of pixels;
    points left with no bits are dropped); ``front``: keep only its Pareto front, as a pooled
    baseline's whole-file curve does."""
    rows = [(k, b - 8 * f / pixels, q, f) for k, b, q, f in zip(keys, bpp, psnrs, fixed_bytes)
            if b - 8 * f / pixels > 0]
    if front and rows:
        rows = [rows[i] for i in pareto_front([r[1] for r in rows], [r[2] for r in rows])]
    rows.sort(key=lambda r: r[1])
    return {"method": method, "points": [r[0] for r in rows], "bpp": [r[1] for r in rows],
            "psnr": [r[2] for r in rows], "fixed_bytes": [r[3] for r in rows]}


def evaluate_codec(codec: str, images: np.ndarray, out_dir: Path, loaded=None, steps=None,
                   per_image: bool = True, progress=None, coder=None) -> dict:
    """One codec's curve over uint8 images [N, C, H, W] (or a list of [C, H, W] of several sizes,
    see ``io.datasets.as_batchable``), averaged per point over images.
    ``coder``: a backend's coder instance with encoder-only settings (diffusion backends only).

    A baseline's files are written at every setting of ``baselines.sweep``; its curve
    (``results``) is the Pareto front of those points and ``all_points`` holds them all. Every
    curve has ``coding_only`` (see ``coding_only_curve`` and ``FIXED_BYTES_METHOD``), and a
    baseline's ``settings`` (``baselines.describe``)."""
    files_dir = Path(out_dir) / "files" / codec
    files_dir.mkdir(parents=True, exist_ok=True)
    shapes = sorted({tuple(int(v) for v in im.shape) for im in images})
    C = shapes[0][0]
    pixels = float(np.mean([im.shape[1] * im.shape[2] for im in images]))   # per image, on average
    if codec in diffusion_codecs() and loaded is None:
        raise UserError(f"codec {codec} needs a model")
    check_codecs([codec])
    is_baseline = codec not in diffusion_codecs()
    dfc_fixed = {sh: (dfc_container_bytes(loaded, codec, sh, steps, coder)
                      if codec in diffusion_codecs() and codec != ideal.NAME else 0) for sh in shapes}

    def image_points(n: int, img: np.ndarray) -> tuple[list, dict | None]:
        chain = None
        if codec == ideal.NAME:
            keyed = [(r["steps"], {**r, "fixed_bytes": 0}) for r in _ideal_points(loaded, img, steps)]
        elif not is_baseline:
            rows, chain = _backend_points(loaded, codec, img, steps, files_dir, f"img{n:05d}", coder)
            keyed = [(r["steps"], {**r, "fixed_bytes": dfc_fixed[img.shape]}) for r in rows]
        else:
            keyed = []
            for key, q, variant in baselines.sweep(codec, C):
                data, dec, te, td = baselines.encode_decode(codec, img, q, variant)
                path = files_dir / f"img{n:05d}_{key}.{codec}"
                path.write_bytes(data)
                keyed.append((key, {"bits": 8 * len(data), "psnr": psnr(dec, img), "enc": te, "dec": td,
                                    "decoded": dec, "file": str(path),
                                    "fixed_bytes": baselines.container_bytes(codec, img.shape, q, variant)}))
        for _, r in keyed:
            r["pixels"] = img.shape[1] * img.shape[2]
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
                                 "bits": r["bits"], "bpp": r["bits"] / r["pixels"], "psnr": r["psnr"],
                                 "ms_ssim": r["ms_ssim"], "file": r.get("file"),
                                 "fixed_bytes": r["fixed_bytes"] if codec != ideal.NAME else None})
    keys = sorted(points, key=lambda k: np.mean([r["bits"] for r in points[k]]))
    mean = lambda k, f: float(np.mean([r[f] for r in points[k]]))  # noqa: E731
    everything = _curve(keys, points, C)
    fixed = [mean(k, "fixed_bytes") for k in keys]
    all_points = None
    if is_baseline:   # the better point at each rate: the Pareto front of every setting's point
        front = sorted(pareto_front(everything["bpp"], everything["psnr"]).tolist())
        all_points = {"points": keys, "bpp": everything["bpp"], "psnr": everything["psnr"],
                      "fixed_bytes": fixed, "on_front": [i in front for i in range(len(keys))]}
        keys = [keys[i] for i in front]
    results = _curve(keys, points, C)
    if codec != ideal.NAME:
        results["bytes"] = [mean(k, "bits") / 8 for k in keys]
    if chains:   # where a backend's bits go: the coded chain's KL under p_theta, then its symbols
        results["bpp_kl_model"] = [mean(k, "kl_model_bits") / pixels for k in keys]
        results["bpp_info"] = [mean(k, "info_bits") / pixels for k in keys]
    if all(r["ms_ssim"] is not None for k in keys for r in points[k]):
        results["ms-ssim"] = [mean(k, "ms_ssim") for k in keys]
    # CompressAI's plotting utility reads these names for every image, grayscale included
    results["psnr-rgb"] = results["psnr"]
    if "ms-ssim" in results:
        results["ms-ssim-rgb"] = results["ms-ssim"]
    taken = steps      # the chain a default run took, where one image size fixes it
    if taken is None and not is_baseline and len(shapes) == 1:
        taken = default_steps(codec, int(np.prod(shapes[0])))
    named = steps or (f"default ({taken})" if taken else "default")
    desc = (baselines.summary_line(codec, C) if is_baseline
            else f"diffcodec {codec} on model {loaded.name}, steps {named}")
    doc = {"name": codec, "description": desc, "images": len(images), "shape": list(shapes[0]),
           "results": results}
    if len(shapes) > 1:
        doc["shapes"] = [list(sh) for sh in shapes]
    if is_baseline:
        doc["settings"] = baselines.describe(codec, C)
        doc["all_points"] = all_points
        src = all_points
    else:
        doc["steps"] = taken
        src = {"points": keys, "bpp": results["bpp"], "psnr": results["psnr"], "fixed_bytes": fixed}
    kind = "baseline" if is_baseline else "ideal" if codec == ideal.NAME else "dfc"
    doc["coding_only"] = coding_only_curve(src["points"], src["bpp"], src["psnr"], src["fixed_bytes"], pixels,
                                           FIXED_BYTES_METHOD[kind], front=is_baseline)
    if chains:   # full-rate chains: what the coded chain costs against its KL under p_theta
        D = C * pixels
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


def _kept_steps(doc: dict):
    """The steps spec a diffusion curve was made with (None: the backend's default); curves from
    before ``steps`` was stored name it in their description."""
    if "steps" in doc:
        return doc["steps"]
    spec = doc.get("description", "").rpartition(", steps ")[2]
    return None if spec in ("", "default") else spec


def add_coding_only(docs: dict, loaded, shape) -> None:
    """Give kept curves from before ``coding_only`` existed theirs, where it can be known without
    their files: the ideal curve's (no container) and a .dfc curve's (its fixed bytes depend only on
    the model, the image shape [C, H, W], backend and steps; measured with ``dfc_container_bytes``
    and the backend's default coder). A kept baseline curve without one is left without one: its
    settings are not known."""
    C, H, W = shape
    for name, doc in docs.items():
        if "coding_only" in doc or name not in diffusion_codecs():
            continue
        r = doc["results"]
        keys = r.get("points", list(range(len(r["bpp"]))))
        if name == ideal.NAME:
            fixed, kind = 0, "ideal"
        else:
            fixed, kind = dfc_container_bytes(loaded, name, shape, _kept_steps(doc)), "dfc"
        doc["coding_only"] = coding_only_curve(keys, r["bpp"], r["psnr"], [fixed] * len(keys), H * W,
                                               FIXED_BYTES_METHOD[kind], front=False)


def _bd_entry(ref_doc: dict, doc: dict, ref: str) -> dict:
    """BD-rate (whole files, and coding only where both curves have one) and BD-PSNR of ``doc``
    against ``ref_doc``, each BD-rate with the PSNR overlap it was computed over."""
    a, r = ref_doc["results"], doc["results"]
    whole = bd_rate_report(a["bpp"], a["psnr"], r["bpp"], r["psnr"], BD_RANGE_DB)
    entry = {"anchor": ref, **whole, "psnr_range_db": whole["overlap_db"],
             "bd_psnr_db": bd_psnr(a["bpp"], a["psnr"], r["bpp"], r["psnr"])}
    ca, cr = ref_doc.get("coding_only"), doc.get("coding_only")
    entry["coding_only"] = (bd_rate_report(ca["bpp"], ca["psnr"], cr["bpp"], cr["psnr"], BD_RANGE_DB)
                            if ca and cr else None)
    return entry


def add_bd(docs: dict, anchor: str) -> None:
    """Add each curve's BD-rate (%) and BD-PSNR (dB) against the anchor's as doc["bd"], and its
    BD-rate against the ideal curve as doc["bd_vs_ideal"] (when those were evaluated). A BD-rate
    is taken over the part of BD_RANGE_DB where both curves reach, which it reports
    (``overlap_db``, also as ``psnr_range_db``); over less than MIN_OVERLAP_DB it is None and the
    number is in ``short_overlap_bd_rate_percent`` (``metrics.bd_rate_report``). ``coding_only``:
    the same between the two curves' coding-only curves."""
    for ref, key in ((anchor, "bd"), (ideal.NAME, "bd_vs_ideal")):
        if ref not in docs:
            continue
        a = docs[ref]["results"]
        for doc in docs.values():
            r = doc["results"]
            doc[key] = _bd_entry(docs[ref], doc, ref)
            if ref == ideal.NAME and "bpp_kl_model" in r:
                # the gap to the ideal curve, stage by stage: the coded chain's own KL (schedule and
                # sampling bias), the coder's symbols (channel-simulation overhead), the file
                doc[key]["stages_bd_rate_percent"] = {
                    stage: bd_rate(a["bpp"], a["psnr"], r[field], r["psnr"], BD_RANGE_DB)
                    for stage, field in (("chain_kl", "bpp_kl_model"), ("symbols", "bpp_info"), ("file", "bpp"))}


def rate_at_psnr(doc: dict, target: float) -> float | None:
    """Bits per pixel the curve needs to reach ``target`` dB: on its Pareto front, linear in
    log-rate between the two points around the target; None where the target is outside the
    curve (below its lowest point's PSNR or above its highest): nothing is extrapolated."""
    r = doc["results"]
    rate, q = np.asarray(r["bpp"], float), np.asarray(r["psnr"], float)
    keep = pareto_front(rate, q)
    rate, q = rate[keep], q[keep]
    if len(q) == 0 or not q[0] <= target <= q[-1]:
        return None
    k = int(np.searchsorted(q, target))
    if q[k] == target:
        return float(rate[k])
    f = (target - q[k - 1]) / (q[k] - q[k - 1])
    return float(10 ** (np.log10(rate[k - 1]) + f * (np.log10(rate[k]) - np.log10(rate[k - 1]))))


SUMMARY_PSNRS = (25.0, 30.0, 35.0, 40.0, 45.0)


def bd_cell(entry: dict | None) -> str:
    """A BD-rate for a table, with the PSNR range it was computed over: "+12.3% [20.0-50.0]";
    over a short overlap "short +12.3% [31.0-36.5]" (a number for those few dB only), or "-"."""
    if not entry or entry.get("overlap_db") is None:
        return "-" if not entry else "- (no overlap)"
    lo, hi = entry["overlap_db"]
    if entry["short_overlap"]:
        v = entry["short_overlap_bd_rate_percent"]
        return f"short {'-' if v is None else format(v, '+.1f') + '%'} [{lo:.1f}-{hi:.1f}]"
    return f"{entry['bd_rate_percent']:+.1f}% [{lo:.1f}-{hi:.1f}]"


def summarize(docs: dict) -> list[dict]:
    """One row per curve: BD-rates (whole files and coding only, each with its PSNR overlap), the
    rate needed at SUMMARY_PSNRS, fixed bytes, settings and, for the real diffusion backends,
    payload / KL(q || p_theta) of the coded chain."""
    rows = []
    for name, doc in docs.items():
        bd, bdi = doc.get("bd", {}), doc.get("bd_vs_ideal", {})
        fixed = (doc.get("coding_only") or {}).get("fixed_bytes") or [None]
        rows.append({"codec": name, "points": len(doc["results"]["bpp"]),
                     "bd_rate_vs_anchor": bd.get("bd_rate_percent"),
                     "anchor": bd.get("anchor"),
                     "bd_vs_anchor": {k: v for k, v in bd.items() if k != "coding_only"} or None,
                     "bd_vs_anchor_coding_only": bd.get("coding_only"),
                     "bd_rate_vs_ideal": bdi.get("bd_rate_percent"),
                     "bd_vs_ideal": {k: v for k, v in bdi.items() if k not in ("coding_only", "stages_bd_rate_percent")} or None,
                     "bd_vs_ideal_coding_only": bdi.get("coding_only"),
                     "fixed_bytes": None if fixed[0] is None else [min(fixed), max(fixed)],
                     "settings": doc.get("description"),
                     "bpp_at": {f"{p:g}": rate_at_psnr(doc, p) for p in SUMMARY_PSNRS},
                     "payload_over_kl_model": doc.get("chain", {}).get("payload_over_kl_model")})
    return rows


def table_lines(summary: list[dict], anchor: str) -> list[str]:
    """The summary as a text table: BD-rates against the anchor and the ideal curve, for whole
    files and for coding only, each with the PSNR range it was computed over (``bd_cell``)."""
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    heads = [f"BD vs {anchor} (file)", f"BD vs {anchor} (coding)", "BD vs ideal (file)", "BD vs ideal (coding)"]
    lines = [f"{'codec':9s} {'points':>6} " + " ".join(f"{h:>27}" for h in heads)
             + f" {'fixed B':>9} {'payload/KL':>10}  " + " ".join(f"{'bpp@' + p:>8}" for p in summary[0]["bpp_at"])]
    for row in summary:
        fixed = row["fixed_bytes"]
        fixed_s = "-" if fixed is None else f"{fixed[0]:g}" if fixed[0] == fixed[1] else f"{fixed[0]:g}-{fixed[1]:g}"
        cells = [bd_cell(row[k]) for k in ("bd_vs_anchor", "bd_vs_anchor_coding_only", "bd_vs_ideal",
                                           "bd_vs_ideal_coding_only")]
        lines.append(f"{row['codec']:9s} {row['points']:>6} " + " ".join(f"{c:>27}" for c in cells)
                     + f" {fixed_s:>9} {fmt(row['payload_over_kl_model'], '10.3f')}  "
                     + " ".join(f"{fmt(v, '8.3f')}" for v in row["bpp_at"].values()))
    lines.append(f"BD-rates over the PSNR range in brackets (where both curves reach within "
                 f"{BD_RANGE_DB[0]:g}-{BD_RANGE_DB[1]:g} dB); 'short': an overlap under {MIN_OVERLAP_DB:g} dB, "
                 "whose number speaks for that range only. coding: every file less its format's fixed bytes "
                 "(fixed B, per file; see each JSON's coding_only.method)")
    return lines


def markdown_table(summary: list[dict], anchor: str) -> str:
    """The summary as a Markdown table (what README quotes), with each baseline's settings below."""
    heads = ["codec", "points", f"BD-rate vs {anchor}, whole files [dB range]", f"vs {anchor}, coding only",
             "vs ideal, whole files", "vs ideal, coding only", "fixed bytes per file",
             "bpp at " + " / ".join(summary[0]["bpp_at"]) + " dB"]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for row in summary:
        fixed = row["fixed_bytes"]
        fixed_s = "" if fixed is None else f"{fixed[0]:g}" if fixed[0] == fixed[1] else f"{fixed[0]:g}-{fixed[1]:g}"
        cells = [bd_cell(row[k]) for k in ("bd_vs_anchor", "bd_vs_anchor_coding_only", "bd_vs_ideal",
                                           "bd_vs_ideal_coding_only")]
        at = " / ".join("-" if v is None else f"{v:.3f}" for v in row["bpp_at"].values())
        out.append(f"| {row['codec']} | {row['points']} | " + " | ".join(cells) + f" | {fixed_s} | {at} |")
    out.append("")
    out += [f"- {row['codec']}: {row['settings']}" for row in summary if row["codec"] in baselines.SETTINGS]
    out.append(f"- BD-rates: PCHIP over the part of {BD_RANGE_DB[0]:g}-{BD_RANGE_DB[1]:g} dB where both curves "
               f"reach (in brackets); 'short': under {MIN_OVERLAP_DB:g} dB of overlap, a number for that range only.")
    return "\n".join(out) + "\n"


def plot_labels(docs: dict) -> dict:
    """Legend labels: each curve's name and BD-rate against the anchor, whole files and coding only."""
    labels = {}
    for name, doc in docs.items():
        bd = doc.get("bd")
        labels[name] = (name if not bd else f"{name} (anchor)" if bd.get("anchor") == name
                        else f"{name}: {bd_cell(bd)} file, {bd_cell(bd.get('coding_only'))} coding")
    return labels
