"""Training loop: L_simple or hybrid loss, Adam with warm-up and clipping, EMA weights, atomic
resumable checkpoints, and data-parallel training with torch.distributed (run under torchrun).
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..distributed import Distributed, is_main
from ..io.datasets import BatchSampler, load_split
from ..io.pixels import to_model_tensor
from ..nets import UNet
from ..nets.unet import transplant
from .checkpoint import load_checkpoint, save_checkpoint, write_weights
from .config import Config, ConfigError


def learning_rate(tc, step: int, total: int, warm_from: int = 0) -> float:
    """The lr of (0-based) `step` of a run ending at `total`: linear warm-up from `warm_from`, then
    constant, then (when `tc.decay_from` is set) a linear fall to 0 at `total`."""
    lr = tc.lr * min(1.0, (step + 1 - warm_from) / max(1, tc.warmup_steps))
    if 0 < tc.decay_from <= step:
        lr *= max(0.0, (total - step) / max(1, total - tc.decay_from))
    return lr


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def train(cfg: Config, out_dir: str | Path, resume: bool = False, max_steps: int | None = None,
          progress: bool = True, init: str | None = None) -> Path:
    """Train (or resume) a model; returns the path of the last checkpoint (out_dir/last.pt).

    ``init`` (a shipped model's name or directory) warm-starts a run without a checkpoint from
    exported weights: network and EMA both start from them, the step counter from their
    ``train_steps``, Adam afresh (its warm-up applies again). Where the config's network differs
    from the model's in ``num_res_blocks`` alone, the run starts at step 0 from the tensors that
    fit (``nets.unet.transplant``) and the rest fresh; any other difference is an error.
    """
    dist = Distributed()
    try:
        return _train(cfg, Path(out_dir), resume, max_steps, progress, dist, init)
    finally:
        dist.close()


def _warm_start(cfg: Config, init: str) -> dict:
    """A checkpoint-shaped state from exported weights (no optimizer state)."""
    from .store import load_model

    loaded = load_model(init, device="cpu")
    if loaded.config.to_dict()["model"] == cfg.to_dict()["model"]:
        weights = {k: v.clone() for k, v in loaded.net.state_dict().items()}
        return {"config": loaded.config.to_dict(), "step": int(loaded.info.get("train_steps") or 0),
                "model": weights, "ema": weights}
    def without_blocks(c):
        return {k: v for k, v in c.to_dict()["model"].items() if k != "num_res_blocks"}

    if (without_blocks(loaded.config) != without_blocks(cfg)
            or loaded.config.to_dict()["diffusion"] != cfg.to_dict()["diffusion"]):
        raise ConfigError(f"--init {init}: its network differs from the config's [model] section "
                          f"in more than num_res_blocks, or its diffusion does")
    student = UNet(cfg.model)
    fresh = transplant(student, loaded.net)
    if is_main():
        print(f"transplanted {init} into the config's network: {len(fresh)} tensors start fresh")
    weights = {k: v.clone() for k, v in student.state_dict().items()}
    return {"config": cfg.to_dict(), "step": 0, "model": weights, "ema": weights}


def loaded_parts(state: dict):
    """The stored config is authoritative for the network and the diffusion; training knobs may change."""
    stored = Config.from_dict(state["config"])
    return stored.model, stored.diffusion


def _snapshot(out_dir: Path, step: int, ema: torch.nn.Module) -> None:
    """Keep the EMA weights at ``step`` for learning curves (bound vs training steps)."""
    (out_dir / "snapshots").mkdir(exist_ok=True)
    write_weights(out_dir / "snapshots" / f"step_{step:07d}.safetensors", ema.state_dict())


def _train(cfg, out_dir, resume, max_steps, progress, dist, init=None) -> Path:
    tc = cfg.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    ckpt_path = out_dir / "last.pt"
    start_step, state = 0, None
    if resume:
        if ckpt_path.exists():
            state = load_checkpoint(ckpt_path, map_location="cpu")
            # The stored config is authoritative for the model; training knobs may change on resume.
            cfg.model, cfg.diffusion = loaded_parts(state)
            start_step = int(state["step"])
        elif dist.main and not init:
            print(f"no checkpoint in {out_dir}; starting from scratch")
    if state is None and init:
        state = _warm_start(cfg, init)
        cfg.model, cfg.diffusion = loaded_parts(state)
        start_step = state["step"]
        if dist.main:
            print(f"warm start from {init} at step {start_step} (fresh optimizer)")
    total = max_steps if max_steps is not None else tc.max_steps

    torch.manual_seed(tc.seed + dist.rank)
    data = load_split(cfg.data, "train", channels=cfg.model.in_channels)
    sampler = BatchSampler(data, cfg.data.crop, cfg.data.flip, seed=tc.seed * 1000 + dist.rank + start_step)
    if cfg.diffusion.kind == "masking":
        from ..core.masking import MaskingDiffusion
        diffusion = MaskingDiffusion.from_config(cfg)
    else:
        diffusion = cfg.diffusion.build()
    model = UNet(cfg.model).to(dist.device)
    teacher = None
    if tc.teacher:
        from .store import load_model
        teacher = load_model(tc.teacher, device=dist.device)
        if cfg.diffusion.kind != "gaussian" or teacher.config.to_dict()["diffusion"] != cfg.to_dict()["diffusion"]:
            raise ConfigError(f"train.teacher {tc.teacher}: a teacher needs a Gaussian diffusion, the same as the config's")
        teacher = teacher.net.eval().requires_grad_(False)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr)
    warm_from = 0  # the step Adam's warm-up counts from: 0, or this run's start when Adam is fresh
    if state is not None:
        if "opt" not in state:
            warm_from = start_step
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        if "opt" in state:
            opt.load_state_dict(state["opt"])
    net = model
    if dist.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None)

    def checkpoint(step):
        if dist.main:
            save_checkpoint(ckpt_path, {"config": cfg.to_dict(), "step": step, "model": model.state_dict(),
                                        "ema": ema.state_dict(), "opt": opt.state_dict()})

    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        n_params = model.num_parameters()
        print(f"training {n_params / 1e6:.2f}M parameters on {dist.device} x{dist.world}, "
              f"steps {start_step}..{total}")
    log = open(out_dir / "train_log.jsonl", "a") if dist.main else None
    bar = None
    if progress and dist.main:
        import click
        bar = click.progressbar(length=max(0, total - start_step), label="training",
                                show_pos=True, show_eta=True, file=None)
        bar.__enter__()
    last_ckpt, t0, running = time.time(), time.time(), []
    step = start_step
    try:
        for step in range(start_step, total):
            lr = learning_rate(tc, step, total, warm_from)
            for g in opt.param_groups:
                g["lr"] = lr
            x0 = to_model_tensor(sampler(tc.batch_size)).to(dist.device)
            t = torch.randint(0, diffusion.num_timesteps, (x0.shape[0],), device=dist.device)
            noise = torch.randn_like(x0)
            if teacher is None:
                loss = diffusion.training_losses(net, x0, t, noise, cfg.diffusion.loss).mean()
            else:
                loss = diffusion.distillation_losses(net, teacher, x0, t, noise).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            # the decay warms up so that short runs are not dominated by the initial weights
            ema_update(ema, model, min(tc.ema_decay, (1 + step) / (10 + step)))
            running.append(loss.item())
            if bar is not None:
                bar.update(1)
            if log is not None and (step + 1) % tc.log_every == 0:
                log.write(json.dumps({"step": step + 1, "loss": float(np.mean(running)), "lr": lr,
                                      "grad_norm": float(gnorm), "time_s": round(time.time() - t0, 1)}) + "\n")
                log.flush()
                running = []
            if ((step + 1) % tc.checkpoint_every_steps == 0
                    or time.time() - last_ckpt > tc.checkpoint_every_s):
                checkpoint(step + 1)
                last_ckpt = time.time()
            if dist.main and tc.snapshot_every_steps and (step + 1) % tc.snapshot_every_steps == 0:
                _snapshot(out_dir, step + 1, ema)
        step = total
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
        if log is not None:
            log.close()
    checkpoint(max(step, start_step))
    return ckpt_path
