"""What a coarse network call costs at each step (``core.scales``): the ideal rate of each step of
the codec's chain with the network at full resolution and pooled by 2, 4 and 8, on validation
photos. Issue "Full-size photos, part 2": the network is the decode's time, and at high noise its
x0_hat is smooth.

The chain is the ideal estimate's (x_{t-1} drawn from q with a fixed seed, so the path does not
depend on p and every factor is charged on the same x_t): per step, KL(q || p_theta) in bits per
pixel for each factor. Printed per step and, for each candidate schedule, the bits up to the first
step whose x0_hat (full resolution) reaches 38 dB (quality 75) and at full rate, with the network
time a decode of each spends (calls weighted 1 / f^2).

    python eval/studies/coarse_steps.py [--size 256x256] [--photos 045,046,047,048,049]
        [--schedules 2t500,2t400-4t700,...] [--steps SPEC] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_codec import ROOT, make_image  # noqa: E402

from diffcodec.coding.base import gaussian_kl_bits  # noqa: E402
from diffcodec.coding.progressive import default_steps  # noqa: E402
from diffcodec.coding.randomness import PURPOSE_XT, normals  # noqa: E402
from diffcodec.core import precision, scales  # noqa: E402
from diffcodec.core.adapter import NetworkAdapter  # noqa: E402
from diffcodec.evaluation.metrics import psnr  # noqa: E402
from diffcodec.io.pixels import to_model, to_pixels  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402

FACTORS = (1, 2, 4, 8)
SCHEDULES = "2t500,2t400,2t300,2t400-4t700,2t400-4t600,2t300-4t600,2t400-4t700-8t850,2t500-4t800"


def crop(path: Path, width: int, height: int) -> np.ndarray:
    """uint8 [3, H, W]: the centre crop of a photo (``bench_codec.make_image``), turned to landscape
    or portrait as the photo is."""
    from PIL import Image

    with Image.open(path) as im:
        if (im.width < im.height) != (width < height):
            width, height = height, width
    return make_image(str(path), width, height)


def validation_args(doc: str, extra=()) -> argparse.Namespace:
    """The command line of a study over centre crops of the validation photos at several sizes:
    --model, --sizes, --photos and --out (a results file), and ``extra`` (flag, argparse keywords)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    for flag, kw in extra:
        ap.add_argument(flag, **kw)
    ap.add_argument("--model", default="photo")
    ap.add_argument("--sizes", default="256x256,768x512")
    ap.add_argument("--photos", default="045,046,047,048,049")
    ap.add_argument("--out", default="")
    return ap.parse_args()


def stop_index(psnrs, target: float = 38.0) -> int:
    """The index of the first step whose x0_hat reaches ``target`` dB (quality 75's stop), or the
    last step if none does."""
    ps = np.asarray(psnrs)
    return int(np.argmax(ps >= target)) if (ps >= target).any() else len(ps) - 1


def add_sums(rec: dict, columns, sums38: dict, sums: dict, target: float = 38.0) -> tuple[dict, dict]:
    """The bits per pixel of each column of ``rec`` ({"bits": {column: [per step]}, "psnr": [x0_hat's
    PSNR after each step]}) up to the first step reaching ``target`` dB (quality 75; the last step
    if none does) and over the whole chain, also added into ``sums38`` and ``sums``."""
    stop = stop_index(rec["psnr"], target)
    to38 = {c: float(np.sum(rec["bits"][c][:stop + 1])) for c in columns}
    full = {c: float(np.sum(rec["bits"][c])) for c in columns}
    for c in columns:
        sums38[c] += to38[c]
        sums[c] += full[c]
    return to38, full


def report_columns(loaded, sets: dict, columns, chain, row, note, lines: list, out: str = "") -> None:
    """The table of a study charging each step of rcc's default chain in several ways (``columns``):
    for each size's images (``sets``: size -> [(name, uint8 [C, H, W] or a function giving it)]),
    ``rec = chain(loaded, image, steps)``, then ``row(label, to38, full)`` (``add_sums``) and
    ``note(name, rec)`` per image and ``row`` of the size's sums; printed as they come, appended
    to ``lines``, and all of ``lines`` written to ``out`` if given."""
    for size, images in sets.items():
        sums38, sums = dict.fromkeys(columns, 0.0), dict.fromkeys(columns, 0.0)
        for name, image in images:
            image = image() if callable(image) else image
            steps = default_steps("rcc", image.size)
            rec = chain(loaded, image, steps)
            lines += [row(f"{size:8s} {name}  ", *add_sums(rec, columns, sums38, sums)), note(name, rec)]
            print("\n".join(lines[-2:]), flush=True)
        lines.append(row(f"{size:8s} all  ", sums38, sums) + f"   (chain {steps})")
        print(lines[-1], flush=True)
    if out:
        Path(out).write_text("\n".join(lines) + "\n")


def photo_sets(args) -> dict:
    """size -> [(name, a function giving the centre crop)] of ``validation_args``' sizes and photos."""
    return {size: [(name, lambda name=name, size=size: crop(ROOT / "eval/data/val768" / f"{name}.png",
                                                            *map(int, size.split("x"))))
                   for name in args.photos.split(",")] for size in args.sizes.split(",")}


def per_step(loaded, image: np.ndarray, steps: str, seed: int = 0) -> dict:
    """-> {"t": [...], "bits": {f: [...]}, "psnr": [...]}: for each step x_i -> x_{i-1}, the original
    timestep (0-based) the network sees at x_i, its KL in bits per pixel with the network pooled by
    each factor, and the PSNR of the full-resolution x0_hat at x_{i-1}."""
    C, H, W = image.shape
    fmt = precision.encoder_network(loaded.device, image.shape, None, loaded.tiling)
    nets = {f: NetworkAdapter(loaded, steps, image.shape, fmt if f == 1 else f"{fmt}/scales{f}t0")
            for f in FACTORS}
    full = nets[1]
    x0 = to_model(image).ravel()
    x = normals(seed, PURPOSE_XT, 0, x0.size)
    rng = np.random.default_rng(seed)
    rec = {"t": [], "bits": {f: [] for f in FACTORS}, "psnr": []}
    for i in range(full.num_steps - 1, 0, -1):
        mu_q, var_q = full.posterior_mean(x0, x, i), full.posterior_variance(i)
        outs = {f: net.out(x, i) for f, net in nets.items()}
        if rec["t"]:    # x0_hat at x_i, after the previous step
            rec["psnr"].append(psnr(to_pixels(outs[1]["pred_xstart"]), image.ravel()))
        for f, out in outs.items():
            rec["bits"][f].append(float(gaussian_kl_bits(mu_q, var_q, out["mean"], out["variance"]).sum()) / (H * W))
        for f in FACTORS[1:]:   # the full-resolution x0_hat with its f x f block means the coarse call's
            fine = outs[1]["pred_xstart"].reshape(C, H, W)
            both = np.clip(fine - scales.upsample(scales.pool(fine, f), f, H, W)
                         + outs[f]["pred_xstart"].reshape(C, H, W), -1, 1).ravel()
            mu_p = full.posterior_mean(both, x, i)
            rec["bits"].setdefault(f"1+{f}", []).append(
                float(gaussian_kl_bits(mu_q, var_q, mu_p, outs[1]["variance"]).sum()) / (H * W))
        x = mu_q + np.sqrt(var_q) * rng.standard_normal(x.size)
        rec["t"].append(int(full.diffusion.timestep_map[i]))
    rec["psnr"].append(psnr(to_pixels(full.out(x, 0)["pred_xstart"]), image.ravel()))
    return rec


def schedule_rate(rec: dict, schedule: str, target: float = 38.0) -> tuple[float, float, float]:
    """(bits per pixel to ``target`` dB, at full rate, network calls of a decode to ``target`` in
    full-resolution calls) of one image's steps under a schedule ("" for none)."""
    tiers = scales.parse(schedule)
    if any(f == scales.BLANK for f, _ in tiers):
        raise ValueError(f"{schedule}: blank tiers are measured by first_step.py")
    fs = [scales.factor(tiers, t) for t in rec["t"]]
    bits = np.array([rec["bits"][f][k] for k, f in enumerate(fs)])
    stop = stop_index(rec["psnr"], target)
    calls = 1.0 + sum(1.0 / f ** 2 for f in fs[:stop + 1])    # one per step, then x0_hat's
    return float(bits[:stop + 1].sum()), float(bits.sum()), calls


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="photo")
    ap.add_argument("--size", default="256x256")
    ap.add_argument("--photos", default="045,046,047,048,049")
    ap.add_argument("--schedules", default=SCHEDULES)
    ap.add_argument("--steps", default="", help="the chain (default: rcc's for the size)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    loaded = load_model(args.model)
    width, height = map(int, args.size.split("x"))
    steps = args.steps or default_steps("rcc", 3 * width * height)
    recs = {}
    for name in args.photos.split(","):
        recs[name] = per_step(loaded, crop(ROOT / "eval/data/val768" / f"{name}.png", width, height), steps)
        print(f"photo {name} done", flush=True)
    print(f"\nmodel {args.model}, {args.size} centre crops of validation photos {args.photos}, chain {steps}")
    print("per step, bits per pixel summed over the photos: t, f = 1, then f = 2, 4, 8 as differences")
    first = next(iter(recs.values()))
    for k, t in enumerate(first["t"]):
        b = {f: sum(r["bits"][f][k] for r in recs.values()) for f in FACTORS}
        if t >= 100:
            print(f"  t {t:4d}: {b[1]:.5f}  " + "  ".join(f"x{f} {b[f] - b[1]:+.5f}" for f in FACTORS[1:])
                  + "  both: " + " ".join(f"{sum(r['bits'][f'1+{f}'][k] for r in recs.values()) - b[1]:+.5f}"
                                          for f in FACTORS[1:]))
    print("\nschedule: bits per pixel to 38 dB (change), at full rate (change), decode calls to 38 dB (share)")
    base = [schedule_rate(r, "") for r in recs.values()]
    b38, bfull, calls = (sum(v[j] for v in base) for j in range(3))
    for schedule in ["", *args.schedules.split(",")]:
        got = [schedule_rate(r, schedule) for r in recs.values()]
        s38, sfull, scalls = (sum(v[j] for v in got) for j in range(3))
        print(f"  {schedule or 'none':22s} {s38:.4f} ({100 * (s38 / b38 - 1):+.2f}%)  {sfull:.4f} "
              f"({100 * (sfull / bfull - 1):+.2f}%)  {scalls:.1f} ({100 * scalls / calls:.0f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "size": args.size, "steps": steps,
                                               "records": recs}, indent=1))


if __name__ == "__main__":
    main()
