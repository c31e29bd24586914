"""What 8-bit integer convolutions would cost in rate (issue "Full-size photos, part 2": the decodes
are network-bound and bfloat16 convolutions run at this CPU's peak, ``int8_conv.py``).

On an AVX-512 VNNI CPU an int8 convolution computes twice the multiply-adds per second of a bfloat16
one. An int8 network quantizes each convolution's input to 8 bits per call and its weights to 8
bits per output channel. Here that is simulated in float32 (fake quantization: values rounded to
the 8-bit grids, the products summed in float): every convolution but the first (on x_t, which at
low noise holds the image's 8-bit levels) and the last (the output's) takes its input quantized
per call to unsigned 8 bits over [min(x, 0), max(x, 0)] (the dynamic scale oneDNN's u8 kernels
take; min and max are exact, so encoder and decoder would agree) and its weights to signed 8 bits
per output channel (symmetric). Along the codec's chain and network format (tiles, coarse calls,
the blank first step), each step is charged its KL against p_theta (bits per pixel) with the
float32 network, the int8 one and the codec's bfloat16 one, on one path from q (x_{t-1} drawn
from q with a fixed seed, as ``coarse_steps.py``); printed are the bits to 38 dB (quality 75) and
at full rate per photo and summed, each against float32.

    python eval/studies/int8_network.py [--sizes 256x256,768x512] [--photos 045,...] [--out FILE]
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coarse_steps import photo_sets, report_columns, validation_args  # noqa: E402

from diffcodec.coding.base import gaussian_kl_bits  # noqa: E402
from diffcodec.coding.randomness import PURPOSE_XT, normals  # noqa: E402
from diffcodec.core import precision  # noqa: E402
from diffcodec.core.adapter import NetworkAdapter  # noqa: E402
from diffcodec.evaluation.metrics import psnr  # noqa: E402
from diffcodec.io.pixels import to_model, to_pixels  # noqa: E402
from diffcodec.training.store import load_model  # noqa: E402

COLUMNS = ("float32", "int8", "bfloat16")
KEEP = ("conv_in", "out.2")     # convolutions left in float: on x_t, and to the output


def fake_u8(x: torch.Tensor) -> torch.Tensor:
    """x rounded to 256 levels over [min(x, 0), max(x, 0)] (per tensor, per call)."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = max(hi - lo, 1e-12) / 255
    zero = int(round(-lo / scale))
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)


def int8_net(net: torch.nn.Module, keep=()) -> torch.nn.Module:
    """A float32 channels-last copy of ``net`` whose convolutions (but ``KEEP`` and those whose
    names contain one of ``keep``) take 8-bit inputs (``fake_u8``) and 8-bit weights per output
    channel."""
    q = copy.deepcopy(net).eval().float().to(memory_format=torch.channels_last)
    for name, mod in q.named_modules():
        if isinstance(mod, torch.nn.Conv2d) and name not in KEEP and not any(k in name for k in keep):
            w = mod.weight.data
            scale = (w.abs().amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12)
            mod.weight.data = torch.fake_quantize_per_channel_affine(
                w, scale, torch.zeros(len(w), dtype=torch.int32), 0, -127, 127)
            mod.register_forward_pre_hook(lambda m, args: (fake_u8(args[0]),))
    return q


def int8_model(model: str, keep):
    """``model`` loaded again, with ``int8_net`` (and ``keep``) as the copy its adapters run."""
    loaded = load_model(model)
    loaded.__dict__["_inference"] = (loaded.net, int8_net(loaded.net, keep))
    return loaded


def adapters(loaded, int8, image_shape, steps: str) -> dict:
    """column -> a NetworkAdapter on the codec's chain and network format, in that column's
    numbers: ``loaded``'s network for float32 and bfloat16 (as the codec runs either), ``int8``'s
    (``int8_model``) for int8."""
    out = {}
    for column in COLUMNS:
        model = int8 if column == "int8" else loaded
        number = "bfloat16" if column == "bfloat16" else "float32"
        fmt = precision.encoder_network(model.device, image_shape, number, model.tiling, model.scales)
        out[column] = NetworkAdapter(model, steps, image_shape, fmt)
    return out


def chain(loaded, int8, image: np.ndarray, steps: str, seed: int = 0) -> dict:
    """{"bits": {column: [per step]}, "psnr": [float32 x0_hat's PSNR after each step]}."""
    C, H, W = image.shape
    nets = adapters(loaded, int8, image.shape, steps)
    ref = nets["float32"]
    x0 = to_model(image).ravel()
    x = normals(seed, PURPOSE_XT, 0, x0.size)
    rng = np.random.default_rng(seed)
    rec = {"bits": {c: [] for c in COLUMNS}, "psnr": []}
    scale = dict.fromkeys(COLUMNS, 1.0)
    for i in range(ref.num_steps - 1, 0, -1):
        mu_q, var_q = ref.posterior_mean(x0, x, i), ref.posterior_variance(i)
        outs = {c: net.out(x, i, scale[c]) for c, net in nets.items()}
        if rec["bits"]["float32"]:
            rec["psnr"].append(psnr(to_pixels(outs["float32"]["pred_xstart"]), image.ravel()))
        for c, out in outs.items():
            rec["bits"][c].append(float(gaussian_kl_bits(mu_q, var_q, out["mean"], out["variance"]).sum()) / (H * W))
        x_next = mu_q + np.sqrt(var_q) * rng.standard_normal(x.size)
        scale = {c: nets[c].scale_after(x_next, outs[c]) for c in COLUMNS}
        x = x_next
    rec["psnr"].append(psnr(to_pixels(ref.out(x, 0)["pred_xstart"]), image.ravel()))
    return rec


def row(label: str, to38: dict, full: dict) -> str:
    base38, base = to38["float32"], full["float32"]
    return (f"{label} to 38 dB: float32 {base38:.5f} " + " ".join(
        f"{c} {100 * (to38[c] / base38 - 1):+.2f}%" for c in COLUMNS[1:])
        + f" | full rate: float32 {base:.5f} " + " ".join(f"{c} {100 * (full[c] / base - 1):+.2f}%" for c in COLUMNS[1:]))


def main():
    args = validation_args(__doc__, [("--keep", {"default": "", "help": "also leave in float the "
                                                 "convolutions whose names contain one of these (comma-separated)"})])
    keep = tuple(k for k in args.keep.split(",") if k)
    torch.set_num_threads(2)
    lines = [f"model {args.model}; bits per pixel to 38 dB and at full rate along the codec's chain; "
             f"int8 and bfloat16 against float32 (int8 simulated: convolutions but {', '.join(KEEP + keep)} "
             "on 8-bit inputs per call and 8-bit weights per channel)"]
    print(lines[0], flush=True)
    int8 = int8_model(args.model, keep)
    report_columns(load_model(args.model), photo_sets(args), COLUMNS,
                   lambda loaded, image, steps: chain(loaded, int8, image, steps), row,
                   lambda name, rec: f"    steps {len(rec['psnr'])}, float32 x0_hat at the end {rec['psnr'][-1]:.2f} dB",
                   lines, args.out)


if __name__ == "__main__":
    main()
