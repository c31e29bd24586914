"""Network speed on this machine: forward time per image and training steps per second.

    python eval/bench_net.py [--threads N] [--skip-paper]

Configurations: tiny (tests), small (the shipped fmnist U-Net, ~1.1M parameters) and the paper's
35.7M CIFAR-10 U-Net. Prints one line per configuration.
"""
from __future__ import annotations

import argparse
import time

import torch

from diffcodec.core.diffusion import GaussianDiffusion
from diffcodec.nets import UNet, UNetConfig
from diffcodec.core.schedules import named_betas

CONFIGS = {
    "tiny": (UNetConfig(in_channels=1, base_channels=8, channel_mult=(1, 2), attention_ds=(2,)), 8, 32),
    "small": (UNetConfig(in_channels=1, base_channels=32, channel_mult=(1, 2, 2), attention_ds=(4,),
                         learn_sigma=True), 28, 64),
    "paper": (UNetConfig(in_channels=3, base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                         attention_ds=(2,), dropout=0.1), 32, 8),
}


def bench(name, cfg, size, batch, device, repeats):
    net = UNet(cfg).to(device)
    diffusion = GaussianDiffusion(named_betas("linear", 1000), "learned_range" if cfg.learn_sigma else "fixedsmall")
    x = torch.randn(batch, cfg.in_channels, size, size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    net.eval()
    with torch.no_grad():
        net(x, t.float())
        t0 = time.perf_counter()
        for _ in range(repeats):
            net(x, t.float())
        fwd = (time.perf_counter() - t0) / (repeats * batch)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_type = "hybrid" if cfg.learn_sigma else "simple"
    t0 = time.perf_counter()
    for _ in range(repeats):
        loss = diffusion.training_losses(net, x, t, torch.randn_like(x), loss_type).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    step = (time.perf_counter() - t0) / repeats
    print(f"{name:6s} {net.num_parameters() / 1e6:7.2f}M params  {size}x{size}  "
          f"forward {1000 * fwd:8.2f} ms/image  training {1 / step:7.2f} steps/s (batch {batch}, "
          f"{batch / step:7.1f} images/s)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-paper", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, (cfg, size, batch) in CONFIGS.items():
        if name == "paper" and args.skip_paper:
            continue
        bench(name, cfg, size, batch, device, args.repeats)


if __name__ == "__main__":
    main()
