"""Would 8-bit integer convolutions make the photo network fast enough on a CPU without bfloat16?
Issue "Full-size photos, part 2". Times one 3x3 convolution at the shapes that dominate the
tiled forward pass (a batch of 7 tiles of 136x136 at the top level, 68x68 one level down) in
float32 channels-last, as the codec runs it, and in torch's quantized int8 (per-channel weights,
the "x86" engine, fbgemm/oneDNN), with the cost of quantizing and dequantizing its input (the
network's GroupNorm, SiLU and attention stay in float). Convolutions are about 73% of a
float32 forward pass at 512x768 on an AVX2 CPU (``network_profile_avx2.txt``).

    python eval/studies/int8_conv.py [--threads 2] [--repeats 5]
"""
from __future__ import annotations

import argparse
import time
import warnings

SHAPES = ((96, 96, 136), (48, 96, 136), (192, 192, 68))    # in channels, out channels, side
BATCH = 7


def seconds(f, repeats: int) -> float:
    for _ in range(2):
        f()
    t0 = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - t0) / repeats


def main():
    import torch
    import torch.ao.nn.quantized as nnq

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)     # torch's notice that quint8 is deprecated
    torch.set_num_threads(args.threads)
    torch.backends.quantized.engine = "x86"
    print(f"torch {torch.__version__}, {args.threads} threads, engine {torch.backends.quantized.engine}; "
          f"ms per call, batch {BATCH}")
    print("in  out  side | float32 | int8 conv | quantize + dequantize input | int8 speed-up (with q/dq)")
    torch.manual_seed(0)
    with torch.no_grad():
        for cin, cout, side in SHAPES:
            x = torch.randn(BATCH, cin, side, side).contiguous(memory_format=torch.channels_last)
            conv = torch.nn.Conv2d(cin, cout, 3, padding=1).to(memory_format=torch.channels_last)
            wscale = conv.weight.abs().amax(dim=(1, 2, 3)) / 127
            q = nnq.Conv2d(cin, cout, 3, padding=1)
            q.set_weight_bias(torch.quantize_per_channel(conv.weight, wscale, torch.zeros(cout, dtype=torch.long),
                                                         0, torch.qint8), conv.bias)
            q.scale, q.zero_point = 0.05, 64
            xscale = float(x.abs().max()) / 127
            xq = torch.quantize_per_tensor(x, xscale, 128, torch.quint8)
            tf = seconds(lambda: conv(x), args.repeats)
            tq = seconds(lambda: q(xq), args.repeats)
            tqd = seconds(lambda: torch.quantize_per_tensor(x, xscale, 128, torch.quint8).dequantize(), args.repeats)
            print(f"{cin:3d} {cout:4d} {side:5d} | {tf * 1e3:7.1f} | {tq * 1e3:9.1f} | {tqd * 1e3:27.1f} | "
                  f"{tf / tq:.2f} ({tf / (tq + tqd):.2f})")


if __name__ == "__main__":
    main()
