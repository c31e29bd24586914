"""The photo network on a CPU, several ways, side by side on the same input: eager float32,
channels-last memory, the codec's copy (``LoadedModel.inference_net``: channels-last with
fixed-order GroupNorm, in float32 and in bfloat16), torch.compile, bfloat16 autocast of the plain
channels-last copy, ONNX Runtime (when installed) and 1 or 2 threads. Prints the forward time
per call and how far each output moves from the eager one-thread output (max and RMS absolute
difference of eps_theta), which is what an encoder and a decoder running different ways would
disagree by. Run it alone on the machine: every row shares the cores. The C heap is set up as the
codec sets it (``diffcodec.core.allocator``) unless ``--system-malloc`` leaves glibc's defaults.

    python eval/bench_runtime.py --size 256x256 --repeats 5 [--no-compile] [--system-malloc]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from diffcodec.training.store import load_model


def timed(fn, x, t, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        out = fn(x, t)                       # warm-up (and compilation)
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = fn(x, t)
    return (time.perf_counter() - t0) / repeats, out.float().contiguous()


def onnx_runner(net, x, t):
    """The network exported to ONNX and run by ONNX Runtime (None when it is not installed)."""
    try:
        import onnxruntime
    except ImportError:
        print("  onnxruntime not installed: no row for it")
        return None
    import io
    buf = io.BytesIO()
    torch.onnx.export(net, (x, t), buf, input_names=["x", "t"], output_names=["out"],
                      dynamic_axes={"x": {2: "h", 3: "w"}}, dynamo=False)
    sessions = {}

    def run(a, b):
        n = torch.get_num_threads()
        if n not in sessions:
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = n, 1
            sessions[n] = onnxruntime.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
        return torch.from_numpy(sessions[n].run(None, {"x": a.numpy(), "t": b.numpy()})[0])
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="photo")
    ap.add_argument("--size", default="256x256", help="HxW")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    ap.add_argument("--system-malloc", action="store_true", help="keep glibc's mmap and trim thresholds")
    args = ap.parse_args()
    if not args.system_malloc:
        from diffcodec.core.allocator import keep_large_blocks
        keep_large_blocks()
    h, w = map(int, args.size.split("x"))
    loaded = load_model(args.model, "cpu")
    net = loaded.net.eval()
    x = torch.randn(1, loaded.config.model.in_channels, h, w, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([300])
    ways = [("eager", lambda a, b: net(a, b), x)]
    net_cl = copy.deepcopy(loaded.net).to(memory_format=torch.channels_last)   # Module.to is in place
    ways.append(("channels-last", lambda a, b: net_cl(a, b), x.to(memory_format=torch.channels_last)))
    if not args.no_compile:
        compiled = torch.compile(copy.deepcopy(loaded.net))
        ways.append(("torch.compile", lambda a, b: compiled(a, b), x))

    codec = loaded.inference_net
    ways.append(("codec float32", lambda a, b: codec(a, b), x.to(memory_format=torch.channels_last)))

    def bf16(net_):
        def run(a, b):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net_(a, b)
        return run
    ways.append(("bf16 autocast", bf16(net_cl), x.to(memory_format=torch.channels_last)))
    ways.append(("codec bfloat16", bf16(codec), x.to(memory_format=torch.channels_last)))
    ort = onnx_runner(loaded.net, x, t)
    if ort is not None:
        ways.append(("onnxruntime", ort, x))
    ref = None
    print(f"{args.model} at {h}x{w}, {args.repeats} calls per row, "
          f"{'glibc default' if args.system_malloc else 'codec'} heap thresholds")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, fn, inp in ways:
            try:
                sec, out = timed(fn, inp, t, args.repeats)
            except Exception as e:          # a runtime that does not work here is reported, not fatal
                print(f"  {name:14s} threads={threads}: failed ({type(e).__name__}: {str(e).splitlines()[0][:80]})")
                continue
            ref = out if ref is None else ref
            d = (out - ref).abs()
            print(f"  {name:14s} threads={threads}: {sec * 1000:8.1f} ms per call, {sec / (h * w) * 1e6:6.2f} us/pixel; "
                  f"output vs eager 1 thread: max {float(d.max()):.2e}, rms {float(d.pow(2).mean().sqrt()):.2e}")


if __name__ == "__main__":
    main()
