"""train, sample, bpd and models commands."""
from __future__ import annotations

import json
from pathlib import Path

import click

from . import main
from .common import model_option, resolve_device, write_json


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="Training config (TOML or JSON).")
@click.option("--data", help="Data directory (overrides data.path).")
@click.option("--out", default="runs/default", show_default=True, help="Output directory for checkpoints.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt if it exists.")
@click.option("--max-steps", type=int, help="Train up to this many steps in total.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config value, e.g. --set train.lr=1e-4 (repeatable).")
def train(config_path, data, out, resume, max_steps, overrides):
    """Train a DDPM (single process, or data-parallel under torchrun)."""
    from diffcodec.config import load_config
    from diffcodec.train import train as run_train

    cfg = load_config(config_path, overrides)
    if data:
        cfg.data.path = data
    ckpt = run_train(cfg, out, resume=resume, max_steps=max_steps)
    click.echo(f"checkpoint: {ckpt}")
