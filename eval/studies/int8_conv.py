"""Would 8-bit integer convolutions make the photo network fast enough on a CPU? Issue "Full-size
photos, part 2": the decodes are network-bound.

Times one 3x3 convolution at the shapes that dominate the tiled forward pass of the shipped
``photo`` network (a batch of 4 tiles of 136x136 at the top level, 68x68 one level down) in
float32 and bfloat16 channels-last, as the codec runs them, and in int8 through the oneDNN kernel
torch's compiler uses (``onednn::qconv2d_pointwise``: unsigned 8-bit input, signed 8-bit weights
per output channel, bfloat16 output), with what quantizing its input per call costs in eager mode
(the input's minimum and maximum, then its 8-bit codes). Prints ms per call and the multiply-adds
per second, and the whole network's: one call over a 256x256 image's tiles in bfloat16, its
multiply-adds counted by hooks. (The fifteenth session's run on an AVX2 CPU,
``int8_conv_avx2.txt``, timed torch's quantized ``nn.Conv2d`` at an earlier network's widths.)

    python eval/studies/int8_conv.py [--threads 2] [--repeats 10]
"""
from __future__ import annotations

import argparse
import time
import warnings

SHAPES = ((64, 64, 136), (32, 32, 136), (96, 32, 136), (64, 64, 68), (128, 64, 68))  # in, out, side
BATCH = 4


def seconds(f, repeats: int) -> float:
    for _ in range(3):
        f()
    t0 = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - t0) / repeats


def quantize(x):
    """x's unsigned 8-bit codes over [min(x, 0), max(x, 0)] -> (codes, scale, zero point)."""
    import torch

    lo, hi = (float(v) for v in x.aminmax())
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / 255
    zero = int(round(-lo / scale))
    return torch.quantize_per_tensor(x.float(), scale, zero, torch.quint8).int_repr(), scale, zero


def network_rate(threads: int, repeats: int) -> str:
    """The photo network's multiply-adds on a 256x256 image's tiles, and per second in bfloat16."""
    import torch

    from diffcodec.core import precision
    from diffcodec.nets.tiling import forward
    from diffcodec.training.store import load_model

    loaded = load_model("photo", "cpu")
    macs = []

    def count(mod, args, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        macs.append(out.numel() * mod.in_channels // mod.groups * k)

    hooks = [m.register_forward_hook(count) for m in loaded.net.modules() if isinstance(m, torch.nn.Conv2d)]
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500.0])
    tile, halo = loaded.tiling
    with torch.no_grad():
        forward(loaded.net, x, t, tile, halo)
    for h in hooks:
        h.remove()
    total = sum(macs)
    net, xc = loaded.inference_net, x.contiguous(memory_format=torch.channels_last)

    def call():
        with torch.no_grad(), precision.autocast(x.device, torch.bfloat16):
            forward(net, xc, t, tile, halo)
    s = seconds(call, repeats)
    return (f"photo network on a 256x256 image (tiles {tile}, halo {halo}): {total / 1e9:.2f} G multiply-adds "
            f"in convolutions; one bfloat16 call {s * 1e3:.1f} ms, {total / s / 1e9:.0f} G/s overall")


def main():
    import torch
    import torch.nn.functional as F

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)     # torch's notice that quint8 is deprecated
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; ms per call (G multiply-adds per second), batch {BATCH}")
    print("in  out  side | float32       | bfloat16      | int8 conv     | quantize input | int8 with it")
    torch.manual_seed(0)
    with torch.no_grad():
        for cin, cout, side in SHAPES:
            macs = BATCH * side * side * cin * cout * 9
            x = torch.randn(BATCH, cin, side, side).contiguous(memory_format=torch.channels_last)
            w, b = torch.randn(cout, cin, 3, 3) * 0.05, torch.randn(cout)
            w = w.contiguous(memory_format=torch.channels_last)
            xb, wb, bb = x.bfloat16(), w.bfloat16(), b.bfloat16()
            wscale = (w.abs().amax(dim=(1, 2, 3)) / 127).float()
            wq = torch.clamp(torch.round(w / wscale[:, None, None, None]), -127, 127).to(torch.int8)
            qx, xscale, zero = quantize(xb)
            qx = qx.contiguous(memory_format=torch.channels_last)
            packed = torch.ops.onednn.qconv_prepack(wq, wscale, xscale, zero, [1, 1], [1, 1], [1, 1], 1,
                                                     list(x.shape))
            zeros = torch.zeros(cout, dtype=torch.long)
            times = [seconds(lambda: F.conv2d(x, w, b, padding=1), args.repeats),
                     seconds(lambda: F.conv2d(xb, wb, bb, padding=1), args.repeats),
                     seconds(lambda: torch.ops.onednn.qconv2d_pointwise(
                         qx, xscale, zero, packed, wscale, zeros, b, [1, 1], [1, 1], [1, 1], 1, 1.0, 0,
                         torch.bfloat16, "none", [], ""), args.repeats),
                     seconds(lambda: quantize(xb), args.repeats)]
            times.append(times[2] + times[3])
            cells = [f"{s * 1e3:6.2f} ({macs / s / 1e9:4.0f})" for s in times]
            cells[3] = f"{times[3] * 1e3:6.2f}        "
            print(f"{cin:3d} {cout:4d} {side:5d} | " + " | ".join(cells))
    print(network_rate(args.threads, args.repeats))


if __name__ == "__main__":
    main()
