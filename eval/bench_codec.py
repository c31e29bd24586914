"""Codec speed and memory by image size: encode and decode wall time, peak memory and where the
time goes, at the default quality and at full rate, with the shipped default model.

    python eval/bench_codec.py [--sizes 64x64,256x256,768x512,1536x1024,4224x2816]
                               [--qualities 75,100] [--photo eval/data/val768/045.png]
                               [--model M[,M...]] [--code DIR[,DIR...]]
                               [--json OUT.json [--append]] [--plot OUT.png]

Each size is cut from the centre of a validation photo (sizes within it) or made by upscaling it
(Lanczos; 4224x2816 is about 12 megapixels). Every encode and every decode runs in its own child
process, so its peak memory (maximum resident set, from wait4) is its own and the model load is
outside the timed part; the child reports the seconds each stage took (``diffcodec.timing``:
network, codebook, scoring, sampling, entropy; "other" is the rest of the wall time). The decode
must reproduce the encoder's own reconstruction exactly (its PSNR to 1e-9 dB). The network's
number format is the encoder's default ("auto"; ``DIFFCODEC_PRECISION`` sets it) and each row
records it.

``--code DIR`` runs the children on another checkout's ``diffcodec`` (e.g. a git worktree of an
older commit; it needs ``diffcodec.timing``), so old and new code are measured in one run on the
same inputs; several ``--model`` names (or model folders) measure models side by side the same way.
The checkouts and models take turns within each size and quality (old, new, old, new, ...), so a
machine whose speed drifts over the run moves both alike. Run it alone on the machine: every
row's time depends on what else is running.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("network", "codebook", "scoring", "sampling", "entropy")


def make_image(photo: str, width: int, height: int):
    """uint8 [3, height, width]: a centre crop of the photo, or the photo upscaled (Lanczos, aspect
    kept) and then centre-cropped when the size is larger than the photo."""
    import numpy as np
    from PIL import Image

    with Image.open(photo) as im:
        im = im.convert("RGB")
        scale = max(width / im.width, height / im.height)
        if scale > 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        x, y = (im.width - width) // 2, (im.height - height) // 2
        return np.asarray(im.crop((x, y, x + width, y + height))).transpose(2, 0, 1).copy()


def child(args) -> None:
    """One encode or one decode, reported as a JSON line on stdout."""
    from diffcodec import timing
    from diffcodec.coding.progressive import decode_container, encode_image
    from diffcodec.container.format import Container
    from diffcodec.evaluation.metrics import psnr
    from diffcodec.training.store import load_model

    loaded = load_model(args.model)
    w, h = map(int, args.one.split("x"))
    image = make_image(args.photo, w, h)
    timing.totals(reset=True)
    t0 = time.perf_counter()
    if args.stage == "encode":
        res = encode_image(loaded, image, quality=args.quality)
        seconds = time.perf_counter() - t0
        Path(args.file).write_bytes(res.data)
        extra = {"bytes": len(res.data), "bpp": 8 * len(res.data) / (w * h), "psnr": res.psnr,
                 "steps": len(res.records), "net_evals": res.net_evals, "network": getattr(res.header, "network", "float32")}
    else:
        loaded_file = Container.from_bytes(Path(args.file).read_bytes(), loaded.keys)
        out = decode_container(loaded, loaded_file)
        seconds = time.perf_counter() - t0
        extra = {"psnr": psnr(out.image, image), "steps": out.steps_decoded, "net_evals": out.net_evals}
    split = timing.totals()
    split["other"] = max(0.0, seconds - sum(split.values()))
    print(json.dumps({"seconds": seconds, "split": split, **extra}), flush=True)


def measure(code: str, model: str, args, size: str, quality: int, stage: str, path: str) -> dict:
    """Run one child; its JSON line plus its peak resident memory in MB."""
    env = dict(os.environ, PYTHONPATH=code + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, __file__, "--one", size, "--stage", stage, "--quality", str(quality),
           "--file", path, "--photo", args.photo, "--model", model]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, cwd=code)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{stage} of {size} at quality {quality} failed (exit {proc.returncode})")
    row = json.loads(out.decode().strip().splitlines()[-1])
    row["peak_mb"] = usage.ru_maxrss / 1024
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="64x64,256x256,768x512,1536x1024,4224x2816", help="WxH,...")
    ap.add_argument("--qualities", default="75,100", help="75 is the default quality; 100 codes every step")
    ap.add_argument("--photo", default=str(ROOT / "eval/data/val768/045.png"))
    ap.add_argument("--model", default="photo", help="models (names or folders), comma-separated")
    ap.add_argument("--code", default=str(ROOT), help="checkouts whose diffcodec to run, comma-separated")
    ap.add_argument("--json")
    ap.add_argument("--append", action="store_true", help="add to the rows already in --json (runs of other sizes)")
    ap.add_argument("--plot")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--quality", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.photo = str(Path(args.photo).resolve())
    if args.one:
        return child(args)
    rows = json.loads(Path(args.json).read_text()) if args.append and Path(args.json).exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        # a model folder is resolved here, not in the --code checkout the children run in
        models = [str(Path(m).resolve()) if Path(m).exists() else m for m in args.model.split(",")]
        runs = [(c, m) for c in args.code.split(",") for m in models]
        for size, q, (code, model) in ((s, q, r) for s in args.sizes.split(",")
                                       for q in map(int, args.qualities.split(",")) for r in runs):
            name = Path(code).resolve().name + (f" {Path(model).name}" if len(models) > 1 else "")
            w, h = map(int, size.split("x"))
            path = str(Path(tmp) / f"{name}_{size}_{q}.dfc".replace(" ", "_"))
            enc = measure(code, model, args, size, q, "encode", path)
            dec = measure(code, model, args, size, q, "decode", path)
            if abs(dec["psnr"] - enc["psnr"]) > 1e-9:
                raise SystemExit(f"{size} q{q}: the decode gives {dec['psnr']:.4f} dB, the encoder "
                                 f"{enc['psnr']:.4f} dB")
            row = {"code": name, "model": model, "size": size, "megapixels": w * h / 1e6, "quality": q,
                   "network": enc["network"], "encode": enc, "decode": dec}
            rows.append(row)
            split = "  ".join(f"{k} {enc['split'].get(k, 0):.1f}/{dec['split'].get(k, 0):.1f}"
                              for k in (*STAGES, "other"))
            print(f"{name:16s} {size:>9s} q{q:3d} {enc['network']:8s}: {enc['bpp']:.3f} bpp {enc['psnr']:.2f} dB "
                  f"{enc['steps']:3d} steps | encode {enc['seconds']:7.1f} s {enc['peak_mb']:6.0f} MB | "
                  f"decode {dec['seconds']:7.1f} s {dec['peak_mb']:6.0f} MB | seconds enc/dec: {split}",
                  flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if args.plot:
        from diffcodec.evaluation.figures import speed_figure

        speed_figure(rows, args.plot)


if __name__ == "__main__":
    main()
