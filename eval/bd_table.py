"""BD-rates of every curve in an `eval rd` output folder against one anchor, over a chosen PSNR
range (the part of it where both curves reach), from the JSON files alone: no coding.

    python eval/bd_table.py eval/results/rd_kodak256 --anchor avif --range 28 42
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffcodec.evaluation.metrics import bd_rate_report


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--anchor", required=True)
    ap.add_argument("--range", nargs=2, type=float, default=(20.0, 50.0), metavar=("LO", "HI"))
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
        rep = bd_rate_report(a["bpp"], a["psnr"], r["bpp"], r["psnr"], (lo, hi))
        o = rep["overlap_db"]
        if rep["bd_rate_percent"] is not None:
            value = f"{rep['bd_rate_percent']:+.1f}%"
        elif rep["short_overlap_bd_rate_percent"] is not None:
            value = f"short overlap ({rep['short_overlap_bd_rate_percent']:+.1f}% over it)"
        else:
            value = "no overlap"
        where = f" [{o[0]:.1f}-{o[1]:.1f} dB]" if o else ""
        print(f"  {name:9s} {value}{where}")


if __name__ == "__main__":
    main()
