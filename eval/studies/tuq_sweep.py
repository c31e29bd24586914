"""tuq's two encoder settings, the chain (quadN) and the band threshold, against JPEG, on 256x256
crops of TRAINING photos: the held-out photos are kept for the reported curves, not for tuning.

    python eval/studies/tuq_sweep.py > eval/studies/results/tuq_sweep.txt

The same comparison on the held-out crops (the crops `eval rd --tile 256` codes), to check a
choice, not to make it:

    python eval/studies/tuq_sweep.py --crops 045.png,046.png,047.png,048.png,049.png \
        --settings "0.5:quad15 0.25:quad10"

For every (threshold, steps) setting the whole tuq curve is coded on the same crops and its
BD-rate against JPEG (over 20-50 dB) is printed with the rate it needs at 25-45 dB. The threshold
(bits of KL per coefficient before a band is coded) is encoder-only: it decides which bands are
coded, and the flags that say so are in the file.

With ``--backend rcc`` a setting is aim:steps instead, the aim past q (``rcc.AIM``, encoder-only):

    python eval/studies/tuq_sweep.py --backend rcc --settings "1.6:geo9 1.6:geo12 1:geo9" > eval/studies/results/rcc_photo_sweep.txt
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

TRAINING_CROPS = ("005.png", "015.png", "025.png", "035.png", "042.png")


def load_crops(loaded, data: str, names: list[str]):
    """uint8 [N, 3, 256, 256]: the 256x256 crop ``eval rd --tile 256`` takes from each named photo."""
    from diffcodec.io.datasets import images_or_file

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "crops")
        folder.mkdir()
        for name in names:
            (folder / name).symlink_to(Path(data, name).resolve())
        return images_or_file(loaded.config.data, 3, folder, "test", len(names), 256)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/photos")
    ap.add_argument("--crops", default=",".join(TRAINING_CROPS), help="comma-separated photo names")
    ap.add_argument("--settings", default="0.5:quad15 0.25:quad15 0.25:quad12 0.25:quad10 0.25:quad8",
                    help="space-separated threshold:steps pairs")
    ap.add_argument("--backend", default="tuq",
                    help="tuq, tuqrcc (tuq with rcc for low-KL bands), or rcc (settings aim:steps)")
    ap.add_argument("--aims", default=None,
                    help="comma-separated aims past q (factors, as rcc.AIM) for tuqrcc's rcc bands to run "
                         "every setting with (default: tuqrcc.RCC_AIM, the shipped value)")
    args = ap.parse_args()

    from diffcodec.coding import rcc, registry, tuqrcc
    from diffcodec.evaluation import rd_curves
    from diffcodec.training.store import load_model

    loaded = load_model("photo")
    names = args.crops.split(",")
    images = load_crops(loaded, args.data, names)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "rd")
        jpeg = rd_curves.evaluate_codec("jpeg", images, out, per_image=False)
        held = set(loaded.config.data.holdout)
        kind = "held-out" if set(names) <= held else "training" if held.isdisjoint(names) else "mixed"
        print(f"photo model, {len(images)} crops 256x256 of {kind} photos {', '.join(names)}")
        print(f"backend {args.backend}")
        print(f"{'aim' if args.backend == 'rcc' else 'threshold':<10} steps    aim        BD vs JPEG   "
              "bpp at 25 / 30 / 35 / 40 / 45 dB")
        aims = [float(v) for v in args.aims.split(",")] if args.aims else [tuqrcc.RCC_AIM]
        if args.backend == "rcc":
            if args.aims:
                raise SystemExit("--aims is for tuqrcc; with --backend rcc each setting is aim:steps")
            aims = [None]
        for aim in aims:
            if aim is not None:
                tuqrcc.RCC_AIM = aim    # read when the coder builds its rcc part
            for setting in args.settings.split():
                threshold, steps = setting.split(":")
                if args.backend == "rcc":   # the setting's aim; a fresh coder per image, as `eval rd` codes
                    rcc.AIM = shown = float(threshold)
                    coder = None
                else:
                    coder, shown = registry.get(args.backend).cls(float(threshold)), aim
                doc = rd_curves.evaluate_codec(args.backend, images, out, loaded, steps, per_image=False,
                                               coder=coder)
                docs = {"jpeg": dict(jpeg), args.backend: doc}
                rd_curves.add_bd(docs, "jpeg")
                at = [rd_curves.rate_at_psnr(doc, p) for p in (25, 30, 35, 40, 45)]
                print(f"{threshold:<10} {steps:<8} {shown:<9g}  {doc['bd']['bd_rate_percent']:+8.1f}%   "
                      + " / ".join("-" if v is None else f"{v:.3f}" for v in at), flush=True)


if __name__ == "__main__":
    main()
