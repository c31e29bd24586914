"""What the chain's first steps cost with the network's x0_hat and with x0_hat = 0 (a blank tier,
``core.scales.BLANK``), on validation photos: the ideal rate KL(q || p_theta) in bits per pixel of
the first two steps of rcc's default chain, x_{T-1} drawn from q with a fixed seed. Where the
model's format at a size has no blank tier (images no larger than its tile) the blank column shows
what one would give there.

At the cosine schedule's first step (abar = 2.4e-9) x_T carries no signal, and the network's x0_hat
(99.7% of it clipped to +-1, eval/README.md, "Coarse steps") is worse than no guess. Columns: the
network as the codec ran it before (the schedule without its blank tier); x0_hat = 0 with the
network's variance; x0_hat = 0 with the posterior variance (the blank tier: no call); the same at
the second step, where the network should win.

    python eval/studies/first_step.py [--sizes 256x256,768x512] [--photos 045,...] [--out FILE]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coarse_steps import ROOT, crop, validation_args  # noqa: E402

from diffcodec.coding.base import gaussian_kl_bits  # noqa: E402
from diffcodec.coding.progressive import default_steps  # noqa: E402
from diffcodec.coding.randomness import PURPOSE_XT, normals  # noqa: E402
from diffcodec.core import precision, scales  # noqa: E402
from diffcodec.core.adapter import NetworkAdapter  # noqa: E402
from diffcodec.io.pixels import to_model  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402


def first_steps(loaded, image: np.ndarray, steps: str, seed: int = 0) -> list[float]:
    """[network, zero with the network's variance, blank] at the first step, then [network, zero]
    at the second, in bits per pixel."""
    C, H, W = image.shape
    fmt = precision.encoder_network(loaded.device, image.shape, None, loaded.tiling, loaded.scales)
    num = precision.parse(fmt)
    tiers = scales.parse(num.scales)
    if tiers and tiers[-1][0] == scales.BLANK:
        tiers = tiers[:-1]
    # where the format has no blank tier (images no larger than the model's tile), what one would give
    last = loaded.diffusion().num_timesteps - 1
    net = NetworkAdapter(loaded, steps, image.shape, precision.network_format(num.number, num.tile, num.halo,
                                                                              scales.join(tiers)))
    blank = NetworkAdapter(loaded, steps, image.shape, precision.network_format(
        num.number, num.tile, num.halo, scales.join((*tiers, (scales.BLANK, last)))))
    x0 = to_model(image).ravel()
    x = normals(seed, PURPOSE_XT, 0, x0.size)
    row = []
    for i in (net.num_steps - 1, net.num_steps - 2):
        mu_q, var_q = net.posterior_mean(x0, x, i), net.posterior_variance(i)
        o = net.out(x, i)
        kl = lambda mu, var: float(gaussian_kl_bits(mu_q, var_q, mu, var).sum()) / (H * W)  # noqa: E731
        row += [kl(o["mean"], o["variance"]), kl(net.posterior_mean(np.zeros_like(x0), x, i), o["variance"])]
        if i == net.num_steps - 1:
            b = blank.out(x, i)
            row.append(kl(b["mean"], b["variance"]))
        x = mu_q + np.sqrt(var_q) * np.random.default_rng(seed).standard_normal(x.size)
    return row


def main():
    args = validation_args(__doc__)
    loaded = load_model(args.model)
    lines = [f"model {args.model}, centre crops of validation photos {args.photos}; bits per pixel",
             "size  photo  | first step: network, x0_hat = 0 (network's variance), blank | second: network, x0_hat = 0"]
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        steps = default_steps("rcc", 3 * width * height)
        rows = []
        for name in args.photos.split(","):
            image = crop(ROOT / "eval/data/val768" / f"{name}.png", width, height)
            rows.append(first_steps(loaded, image, steps))
            lines.append(f"{size} {name}  | " + " ".join(f"{v:.5f}" for v in rows[-1][:3]) + "  | "
                         + " ".join(f"{v:.5f}" for v in rows[-1][3:]))
        m = np.mean(rows, axis=0)
        lines.append(f"{size} mean | " + " ".join(f"{v:.5f}" for v in m[:3]) + "  | " + " ".join(f"{v:.5f}" for v in m[3:])
                     + f"   (chain {steps}, network {precision.encoder_format(loaded.device, image.size)};"
                     f" blank / network at the first step {m[2] / m[0]:.2f})")
        print("\n".join(lines[-len(rows) - 1:]), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
