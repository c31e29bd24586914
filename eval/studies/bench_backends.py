"""Codec benchmark: speed and rate overhead of each backend on real images.

    python eval/studies/bench_backends.py [--fmnist DIR] [--limit 100] [--rcc-limit 20] [--rcc-steps geo9]
                               [--photo PATH] [--photo-backends uq,tuq,tuqrcc,rcc]
                               [--photo-only | --fmnist-only] [--json OUT]

For each backend, at the default quality (75) and at full rate (quality 100, every step), on the
first Fashion-MNIST test images (model fmnist), a 256x256 and a 768x512 crop of a held-out photo
(model photo): encode and decode seconds per image, network evaluations, the time split between
network and coder, and the bits against two independent references along the encoded path:
"info", the information content -log2 P of the symbols under the coder's own pmf (what the range
coder should match), and "KL", the Gaussian KL(q || p_theta) under the network's own reverse
Gaussians (what an ideal channel simulator would pay on that path). ``--photo-backends`` picks
the backends of the photo rows (all four by default).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffcodec.coding.progressive import decode_container, encode_image
from diffcodec.container.format import Container
from diffcodec.evaluation.metrics import psnr
from diffcodec.io.datasets import DataConfig, load_image, load_split
from diffcodec.training.store import load_model


def run(loaded, images, backend, steps, label, quality):
    enc_s, dec_s, net_s, evals, file_bits, payload_bits, info, kl, psnrs, per_step = ([] for _ in range(10))
    for img in images:
        res = encode_image(loaded, img, backend, steps, quality=quality)
        t0 = time.perf_counter()
        out = decode_container(loaded, Container.from_bytes(res.data, loaded.keys))
        dec_s.append(time.perf_counter() - t0)
        assert abs(psnr(out.image, img) - res.psnr) < 0.5, "decoder disagrees with encoder"
        enc_s.append(res.seconds); net_s.append(res.net_seconds); evals.append(res.net_evals)
        file_bits.append(8 * len(res.data)); payload_bits.append(8 * sum(res.layer_bytes))
        info.append(sum(r.bits for r in res.records)); kl.append(sum(r.kl_model_bits for r in res.records))
        psnrs.append(res.psnr)
        per_step.append([(r.t, r.bits, r.kl_model_bits) for r in res.records])
    dims = images[0].size
    row = {
        "data": label, "backend": backend, "steps": steps or "default", "quality": quality, "images": len(images),
        "dims": dims, "encode_s": float(np.mean(enc_s)), "decode_s": float(np.mean(dec_s)),
        "net_evals": float(np.mean(evals)), "net_share_encode": float(np.sum(net_s) / np.sum(enc_s)),
        "file_bpd": float(np.mean(file_bits) / dims), "payload_bpd": float(np.mean(payload_bits) / dims),
        "info_bpd": float(np.mean(info) / dims), "kl_bpd": float(np.mean(kl) / dims),
        "payload_over_info": float(np.sum(payload_bits) / np.sum(info)),
        "payload_over_kl": float(np.sum(payload_bits) / np.sum(kl)),
        "info_over_kl": float(np.sum(info) / np.sum(kl)), "psnr": float(np.mean(psnrs)),
        "per_step": [{"t": t, "bits": float(np.mean([s[k][1] for s in per_step])),
                      "kl_bits": float(np.mean([s[k][2] for s in per_step]))}
                     for k, (t, _, _) in enumerate(per_step[0]) if all(len(p) > k for p in per_step)],
    }
    print(f"{label:14s} {backend:4s} steps={row['steps']:6s} q={quality:3d} n={len(images):3d}  "
          f"enc {row['encode_s']:7.2f} s  dec {row['decode_s']:7.2f} s  evals {row['net_evals']:5.0f}  "
          f"net {100 * row['net_share_encode']:4.0f}% of enc  file {row['file_bpd']:.3f} bpd  "
          f"payload/info {row['payload_over_info']:.3f}  payload/KL {row['payload_over_kl']:.3f}  "
          f"PSNR {row['psnr']:.2f}", flush=True)
    for s in row["per_step"]:
        ratio = s["bits"] / s["kl_bits"] if s["kl_bits"] > 1e-9 else float("nan")
        print(f"    t={s['t']:4d}  bits {s['bits']:9.1f}  KL {s['kl_bits']:9.1f}  ratio {ratio:6.3f}")
    return row


def photo_rows(path: str, backends: list[str]) -> list:
    """A 256x256 crop at quality 75 and 100 and a 768x512 crop at 75, from the photo's centre."""
    photo = load_model("photo")
    im = load_image(path, 3)
    H, W = im.shape[1:]
    rows = []
    for h, w in ((256, 256), (512, 768)):
        y, x = (H - h) // 2, (W - w) // 2
        crop = im[:, y:y + h, x:x + w]
        for q in ((75, 100) if h == 256 else (75,)):
            for backend in backends:
                rows.append(run(photo, [crop], backend, None, f"photo-{w}x{h}", q))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fmnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--rcc-limit", type=int, default=20, help="images for rcc (it is slower)")
    ap.add_argument("--photo", default=str(Path(__file__).resolve().parents[2] / ".." / "shared/data/photos/045.png"))
    ap.add_argument("--rcc-steps", default="geo9",
                    help="comma-separated step specs to run rcc with (geo9 is its default)")
    ap.add_argument("--photo-backends", default="uq,tuq,tuqrcc,rcc", help="comma-separated backends for the photo rows")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--photo-only", action="store_true", help="skip the Fashion-MNIST rows")
    ap.add_argument("--fmnist-only", action="store_true", help="skip the photo rows")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}")
    rows = []
    fm = load_model("fmnist")
    imgs = load_split(DataConfig(path=args.fmnist), "test")
    for q in (() if args.photo_only else (75, 100)):
        rows.append(run(fm, imgs[:args.limit], "uq", None, "fmnist-test", q))
        for spec in args.rcc_steps.split(","):
            rows.append(run(fm, imgs[:args.rcc_limit], "rcc", spec, "fmnist-test", q))
    if not args.fmnist_only:
        rows += photo_rows(args.photo, args.photo_backends.split(","))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
