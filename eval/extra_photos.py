"""Build a training folder of more photos for the photo model (issue "Full-size photos, part 1":
more data), from the public repositories listed in eval/data/extra_photos.csv.

    python eval/extra_photos.py MIRRORS OUT [--with ../shared/data/photos]

MIRRORS holds the repositories' git directories as ``<owner>+<name>/repo`` (what the project's
``fetch`` tool writes under /work/.mirror); each photo is read at the commit and path the list
records, so the folder is the same wherever it is built. Only rows marked ``use = yes`` are taken:
camera photographs with a permissive licence (CC0, CC BY-SA 3.0, Unsplash, Pexels), chosen by eye
from contact sheets; renders, illustrations, graphics and space images are marked "no" with the
reason. The sources are desktop-wallpaper collections, not image-quality test sets.

The originals are JPEGs, most of 1080 to 4000 pixels on the short side, some heavily compressed.
Each is converted to sRGB where it embeds another colour profile (a dozen carry Adobe RGB,
ProPhoto or a camera's), cropped to a multiple of f and reduced by the integer factor
f = max(2, short side // 512) (box filter: the mean of each f x f block), which leaves 512 to 1023
pixels on the short side (two smaller originals leave 342 and 460) and averages the JPEG blocks
away.
OUT gets one PNG per photo and SOURCES.md (each photo's repository, commit, path and licence).
``--with DIR`` also links DIR's photos into OUT, except the validation photos that
configs/photo.toml holds out, so one folder trains on both.
"""
from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "eval" / "data" / "extra_photos.csv"


def reduce_factor(width: int, height: int) -> int:
    return max(2, min(width, height) // 512)


def to_srgb(im: Image.Image) -> Image.Image:
    """An RGB image in sRGB: converted from its embedded ICC profile when it has one."""
    icc = im.info.get("icc_profile")
    if icc:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).lower():
            return im.convert("RGB")
        return ImageCms.profileToProfile(im.convert("RGB"), src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    return im.convert("RGB")


def build(mirrors: Path, out: Path, with_dir: Path | None = None, listing: Path = LIST) -> int:
    """Writes the listed photos (module docstring) into ``out``; -> how many."""
    rows = [r for r in csv.DictReader(listing.open()) if r["use"] == "yes"]
    out.mkdir(parents=True, exist_ok=True)
    for k, r in enumerate(rows, 1):
        git_dir = mirrors / r["repo"].replace("/", "+") / "repo"
        blob = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "blob", f"{r['commit']}:{r['path']}"],
                              capture_output=True)
        if blob.returncode:
            sys.exit(f"{r['repo']} {r['path']}: not in {git_dir} ({blob.stderr.decode().strip()})")
        with Image.open(io.BytesIO(blob.stdout)) as im:
            im = to_srgb(im)
            f = reduce_factor(*im.size)
            small = im.crop((0, 0, im.width - im.width % f, im.height - im.height % f)).reduce(f)
        small.save(out / r["name"], optimize=False)
        if sys.stderr.isatty():
            print(f"\r{k}/{len(rows)} photos", end="", file=sys.stderr, flush=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    with (out / "SOURCES.md").open("w") as fh:
        fh.write("# Sources of these photos\n\nBuilt by eval/extra_photos.py from eval/data/extra_photos.csv; "
                 "each photo converted to sRGB and reduced by an integer factor (box filter).\n\n| file | repository | commit | path | licence |\n"
                 "|---|---|---|---|---|\n")
        for r in rows:
            fh.write(f"| {r['name']} | {r['repo']} | {r['commit'][:12]} | {r['path']} | {r['licence']} |\n")
    if with_dir is not None:
        from diffcodec.training.config import load_config

        held = set(load_config(str(ROOT / "configs" / "photo.toml")).data.holdout)
        for p in sorted(with_dir.glob("*.png")):
            link = out / p.name
            if p.name not in held and not link.exists():
                link.symlink_to(p.resolve())
    return len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mirrors", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--with", dest="with_dir", type=Path)
    a = ap.parse_args()
    print(f"{build(a.mirrors, a.out, a.with_dir)} photos in {a.out}")


if __name__ == "__main__":
    main()
