"""How much of each step's rate is the network's variance being too wide, and how much of it the
previous step's residual recovers (``core.scales.RESCALE``), on validation photos.

Along rcc's default chain (x_{t-1} drawn from q with a fixed seed, the photo model's schedule
without its rescale, so every column is charged on the same path), each step's KL(q || p_theta) in
bits per pixel with p's variance:
- ``network``: as the network gives it;
- ``oracle``: times the one scale per step that minimises the step's KL (mean over dimensions of
  (var_q + (mu_q - mu_p)^2) / sigma_p^2), rounded to 1/64 of an octave: what a per-step scale sent as
  side information would get, less its bits;
- ``oracle64``: times such a scale for each 64 x 64 block (all channels) of the image (images
  whose sides are multiples of 64);
- ``residual``: times the previous step's residual scale (``core.adapter.residual_scale``): what
  the codec does, with no side information;
- ``residual64``: the same per 64 x 64 block.

Per photo and size, the sum over the chain and the sum to the first step that reaches 38 dB
(quality 75), and the residual scale every few steps. Where the model's format at a size does not
rescale (images no larger than its tile, a model without a schedule) the ``residual`` columns
show what the rescale would give there. ``--fmnist N`` takes the first N Fashion-MNIST *training*
images (28x28, the ``fmnist`` model) instead of photo crops.

    python eval/studies/variance_scale.py [--sizes 256x256,768x512] [--photos 045,...] [--out FILE]
    python eval/studies/variance_scale.py --model fmnist --fmnist 20 [--out FILE]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coarse_steps import photo_sets, report_columns, validation_args  # noqa: E402

from diffcodec.coding.base import gaussian_kl_bits  # noqa: E402
from diffcodec.coding.randomness import PURPOSE_XT, normals  # noqa: E402
from diffcodec.core import precision, scales  # noqa: E402
from diffcodec.core.adapter import NetworkAdapter, residual_scale  # noqa: E402
from diffcodec.evaluation.metrics import psnr  # noqa: E402
from diffcodec.io.pixels import to_model, to_pixels  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402

COLUMNS = ("network", "oracle", "oracle64", "residual", "residual64")
BLOCK = 64


def per_block(values: np.ndarray, shape: tuple, block: int) -> np.ndarray:
    """The mean of ``values`` [C * H * W] over each block x block square (all channels), spread
    back over its values."""
    C, H, W = shape
    m = values.reshape(C, H // block, block, W // block, block).mean(axis=(0, 2, 4))
    return np.broadcast_to(m.repeat(block, 0).repeat(block, 1)[None], shape).ravel()


def chain(loaded, image: np.ndarray, steps: str, seed: int = 0) -> dict:
    """{"bits": {column: [bits per pixel per step]}, "psnr": [x0_hat's PSNR after each step],
    "scale": [the residual scale per step]} along one path drawn from q."""
    C, H, W = image.shape
    fmt = precision.encoder_network(loaded.device, image.shape, None, loaded.tiling, loaded.scales)
    num = precision.parse(fmt)
    plain = precision.network_format(num.number, num.tile, num.halo, scales.join(scales.parse(num.scales)))
    block = BLOCK if H % BLOCK == 0 and W % BLOCK == 0 else None
    net = NetworkAdapter(loaded, steps, image.shape, plain)
    x0 = to_model(image).ravel()
    x = normals(seed, PURPOSE_XT, 0, x0.size)
    rng = np.random.default_rng(seed)
    rec = {"bits": {c: [] for c in COLUMNS}, "psnr": [], "scale": []}
    out, before, blocks = net.out(x, net.num_steps - 1), None, None
    for i in range(net.num_steps - 1, 0, -1):
        mu_q, var_q = net.posterior_mean(x0, x, i), net.posterior_variance(i)
        mu_p, var_p = out["mean"], out["variance"]
        wide = (var_q + (mu_q - mu_p) ** 2) / var_p
        best = 2.0 ** (np.round(np.log2(wide.mean()) * 64) / 64)
        r = residual_scale(x, before) if before is not None else 1.0
        variances = {"network": var_p, "oracle": var_p * best, "residual": var_p * r}
        if block:
            variances |= {"oracle64": var_p * per_block(wide, (C, H, W), block),
                          "residual64": var_p * (blocks if blocks is not None else 1.0)}
        for c in COLUMNS:
            v = variances.get(c)
            rec["bits"][c].append(np.nan if v is None else float(gaussian_kl_bits(mu_q, var_q, mu_p, v).sum()) / (H * W))
        rec["scale"].append(r)
        x_next = mu_q + np.sqrt(var_q) * rng.standard_normal(x.size)
        # the residual scales of the next step, against this step's network variance (scale 1)
        before = {"mean": mu_p, "variance": var_p, "scale": 1.0}
        blocks = per_block((x_next - mu_p) ** 2 / var_p, (C, H, W), block) if block else None
        x = x_next
        out = net.out(x, i - 1)
        rec["psnr"].append(psnr(to_pixels(out["pred_xstart"]), image.ravel()))
    return rec


def fmnist_images(n: int) -> list[np.ndarray]:
    """The first n Fashion-MNIST training images, uint8 [1, 28, 28] (decision data: the model's
    test split is for reporting)."""
    from diffcodec.io.datasets import find_idx, read_idx_images

    path = find_idx(Path("/usr/share/datasets/fashion-mnist"), "train")
    if path is None:
        raise SystemExit("Fashion-MNIST not found: apt-get install dataset-fashion-mnist")
    return [im.reshape(1, 28, 28) for im in read_idx_images(path)[:n]]


def main():
    args = validation_args(__doc__, extra=[("--fmnist", dict(type=int, default=0,
                                            help="the first N Fashion-MNIST training images instead of photos"))])
    loaded = load_model(args.model)
    lines = [f"model {args.model}, centre crops of validation photos {args.photos}; bits per pixel, "
             "change against the network's variance",
             "size     photo  | to 38 dB: " + " ".join(COLUMNS) + " | full chain: " + " ".join(COLUMNS)]

    def row(label: str, to38: dict, full: dict) -> str:
        cell = lambda d, c: (f"{d[c]:.4f}" if c == "network" else "-" if np.isnan(d[c])  # noqa: E731
                             else f"{100 * (d[c] / d['network'] - 1):+.1f}%")
        return (f"{label} | " + " ".join(cell(to38, c) for c in COLUMNS) + " | "
                + " ".join(cell(full, c) for c in COLUMNS))

    if args.fmnist:
        sets = {"28x28": [(f"{i:03d}", im) for i, im in enumerate(fmnist_images(args.fmnist))]}
        lines[0] = f"model {args.model}, the first {args.fmnist} Fashion-MNIST training images" + lines[0].split(args.photos)[1]
        lines[1] = lines[1].replace("photo", "image")
    else:
        sets = photo_sets(args)
    report_columns(loaded, sets, COLUMNS, chain, row,
                   lambda name, rec: f"{'':8s} {name} residual scale every 8th step: "
                   + " ".join(f"{v:.3f}" for v in rec["scale"][::8]), lines, args.out)


if __name__ == "__main__":
    main()
