"""BD-rates of every curve in an `eval rd` output folder against one anchor, over a chosen PSNR
range (the part of it where both curves reach), from the JSON files alone: no coding.
``--per-image`` gives each image's BD-rate too (its own points, the Pareto front of a baseline's
settings), and their mean and spread: how much of a folder's figure one image carries.

    python eval/bd_table.py eval/results/rd_kodak256 --anchor avif --range 28 42 [--per-image]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from diffcodec.evaluation.metrics import bd_rate_report


def describe(rep: dict) -> str:
    o = rep["overlap_db"]
    if rep["bd_rate_percent"] is not None:
        value = f"{rep['bd_rate_percent']:+.1f}%"
    elif rep["short_overlap_bd_rate_percent"] is not None:
        value = f"short overlap ({rep['short_overlap_bd_rate_percent']:+.1f}% over it)"
    else:
        value = "no overlap"
    return value + (f" [{o[0]:.1f}-{o[1]:.1f} dB]" if o else "")


def image_curves(doc: dict) -> dict:
    """image index -> (bpp, psnr) of that image's points in an ``eval rd`` curve."""
    curves: dict = {}
    for row in doc.get("per_image") or ():
        b, q = curves.setdefault(row["image"], ([], []))
        b.append(row["bpp"])
        q.append(row["psnr"])
    return curves


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--anchor", required=True)
    ap.add_argument("--range", nargs=2, type=float, default=(20.0, 50.0), metavar=("LO", "HI"))
    ap.add_argument("--per-image", action="store_true", help="each image's BD-rate too")
    args = ap.parse_args()
    docs = {p.stem: json.loads(p.read_text()) for p in sorted(Path(args.folder).glob("*.json"))
            if p.stem != "summary"}
    a = docs[args.anchor]["results"]
    lo, hi = args.range
    print(f"{args.folder}: BD-rate against {args.anchor} over {lo:g}-{hi:g} dB where both curves reach "
          f"({docs[args.anchor].get('images')} images)")
    for name, doc in docs.items():
        if name == args.anchor:
            continue
        r = doc["results"]
        print(f"  {name:9s} {describe(bd_rate_report(a['bpp'], a['psnr'], r['bpp'], r['psnr'], (lo, hi)))}")
        if args.per_image:
            mine, theirs, values = image_curves(doc), image_curves(docs[args.anchor]), []
            if not (mine and theirs):
                print("    (no per-image rows: run eval rd without --no-per-image)")
            for n in sorted(set(mine) & set(theirs)):
                rep = bd_rate_report(*theirs[n], *mine[n], (lo, hi))
                values += [rep["bd_rate_percent"]] if rep["bd_rate_percent"] is not None else []
                print(f"    image {n}: {describe(rep)}")
            if values:
                print(f"    mean of {len(values)} images {np.mean(values):+.1f}% (sd {np.std(values, ddof=min(1, len(values) - 1)):.1f})")


if __name__ == "__main__":
    main()
