"""The bits-back coded rate against the model's bound estimated with several noise seeds.

`diffcodec eval bitsback` compares each image's coded rate with `bpd`'s one-sample estimate of its
bound at seed 0; that estimate has its own sampling noise, shared by every run against it. Here the
bound is also estimated at other seeds (`diffcodec bpd ... --seed K --json FILE`, same images and
chain) and the coded rate is compared with each and with their per-image mean. The coded rate is
also compared with the one-sample bound of the path it coded (no sampling noise between the two:
the coder's own cost), and that path bound with the seeds' mean (sampling noise only, if the
popped latents are samples of q).

    python eval/bitsback_seeds.py eval/results/bitsback_fmnist_100img_1000steps.json \\
        eval/results/bpd_fmnist_100img_fullT_seed1.json eval/results/bpd_fmnist_100img_fullT_seed2.json
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def excess(net: np.ndarray, bound: np.ndarray) -> str:
    d = net / bound - 1.0
    return (f"{100 * (net.mean() / bound.mean() - 1):+.3f}% +- {100 * d.std(ddof=1) / np.sqrt(len(d)):.3f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bitsback", help="JSON of diffcodec eval bitsback (its bound is seed 0)")
    ap.add_argument("bpd", nargs="+", help="JSON of diffcodec bpd on the same images and chain, other seeds")
    args = ap.parse_args()
    bb = json.load(open(args.bitsback))
    net = np.array(bb["per_image_net_bpd"])
    bounds = [np.array(bb["per_image_bound_bpd"])]
    names = ["seed 0 (eval bitsback)"]
    for path in args.bpd:
        doc = json.load(open(path))
        if doc["images"] != len(net):
            raise SystemExit(f"{path}: {doc['images']} images, not {len(net)}")
        bounds.append(np.array(doc["per_image_bpd"]))
        names.append(path)
    print(f"{bb['model']}: {len(net)} images, steps {bb['steps']}; coded {net.mean():.4f} bits/dim")
    for name, b in zip(names, bounds):
        print(f"  bound {b.mean():.4f}  coded vs it {excess(net, b)}   [{name}]")
    mean = np.mean(bounds, axis=0)
    print(f"  mean of the {len(bounds)} bound estimates {mean.mean():.4f}  coded vs it {excess(net, mean)}")
    if "per_image_path_bpd" in bb:
        path = np.array(bb["per_image_path_bpd"])
        print(f"  bound on the coded path {path.mean():.4f}  coded vs it {excess(net, path)}   [the coder's cost, "
              "no sampling noise between the two]")
        if "coder_bits_per_image" in bb:
            print(f"  the coder's cost over the whole chain {bb['coder_bits_per_image']:+.2f} bits per image "
                  f"(exact to {32 / len(net):.2f}; {100 * bb['coder_bits_per_image'] / (bb['dims'] * mean.mean()):+.4f}% "
                  "of the bound)")
        print(f"  bound on the coded path vs the mean of the {len(bounds)} estimates {excess(path, mean)}   "
              "[sampling: zero-mean noise if the popped latents are samples of q]")


if __name__ == "__main__":
    main()
