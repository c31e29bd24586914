"""train, sample, bpd and models commands."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from diffcodec.io.files import write_json

from .group import main
from .common import SEED, STEPS_FORMS, check_output, model_option, output_file, read_steps, tile_option


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="Training config (TOML or JSON).")
@click.option("--data", help="Data directory (overrides data.path).")
@click.option("--out", default="runs/default", show_default=True, help="Output directory for checkpoints.")
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt if it exists.")
@click.option("--max-steps", type=int, help="Train up to this many steps in total.")
@click.option("--init", metavar="MODEL",
              help="Without a checkpoint in OUT: start from a model's weights (name or directory); a config "
                   "with fewer residual blocks takes the tensors that fit.")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a config value, e.g. --set train.lr=1e-4 (repeatable).")
def train(config_path, data, out, resume, max_steps, init, overrides):
    """Train a DDPM (single process, or data-parallel under torchrun)."""
    from diffcodec.distributed import is_main
    from diffcodec.training.config import load_config
    from diffcodec.training.loop import train as run_train

    cfg = load_config(config_path, overrides)
    if data:
        cfg.data.path = data
    ckpt = run_train(cfg, out, resume=resume, max_steps=max_steps, init=init)
    if is_main():
        click.echo(f"checkpoint: {ckpt}")


@main.command()
@model_option
@click.option("--data", "data_dir", required=True,
              help="Data directory (IDX, CIFAR-10 batches or images), or one image file (taken whole).")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(1), help="Use only the first N images (or tiles).")
@tile_option
@click.option("--steps", default=None, callback=read_steps, help="Respacing: " + STEPS_FORMS + " (default: all T).")
@click.option("--batch-size", type=click.IntRange(1), default=50, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), callback=output_file, help="Write the full result as JSON.")
def bpd(model_name, data_dir, split, limit, tile, steps, batch_size, seed, json_out):
    """Exact bits/dim (variational bound) of a model on a data split, with its terms.

    Under torchrun the images are sharded across processes (torch.distributed).

    For a folder of images, the images are cut into tiles of the model's training crop size
    (--tile sets the size; --tile 0 takes each image whole, and the result is the mean of the
    images' bits/dim); the folder the model was trained on uses its held-out photos as the test
    split, any other folder is used whole.
    """
    from diffcodec.distributed import is_main
    from diffcodec.evaluation.bpd import evaluate_bpd
    from diffcodec.io.datasets import images_or_file
    from diffcodec.training.store import load_model

    loaded = load_model(model_name)
    images = images_or_file(loaded.config.data, loaded.config.model.in_channels, data_dir, split, limit, tile)
    diffusion = loaded.diffusion(steps)
    with click.progressbar(length=len(images), label=f"bits/dim over {diffusion.num_timesteps} steps",
                           show_pos=True) as bar:
        res = evaluate_bpd(loaded, images, steps, batch_size, seed, progress=bar.update)
    if not is_main():  # under torchrun every rank computed its shard; rank 0 reports
        return
    res.update({"model": loaded.name, "model_sha256": loaded.sha256, "data": str(data_dir), "split": split})
    dims = res["dims_per_image"]
    dims = f"{dims} dims" if isinstance(dims, int) else f"{min(dims)}-{max(dims)} dims"
    click.echo(f"{loaded.name}: {res['images']} images of {dims}, {res['num_steps']} steps")
    click.echo(f"  total  {res['total_bpd']:.4f} bits/dim (+- {res['total_bpd_stderr']:.4f})")
    click.echo(f"  L_T    {res['L_T_bpd']:.6f}")
    click.echo(f"  sum L_t {res['L_sum_bpd']:.4f}")
    click.echo(f"  L_0    {res['L_0_bpd']:.4f}")
    if json_out:
        write_json(json_out, res)


@main.command("fit-steps")
@model_option
@click.option("--data", "data_dir", required=True, help="Data directory (IDX, CIFAR-10 batches or images).")
@click.option("--split", type=click.Choice(["test", "train"]), default="train", show_default=True,
              help="Images to fit on (measure the result on others with `bpd --steps @OUT`).")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Use the first N images (or tiles).")
@tile_option
@click.option("-n", "--steps", "num", type=click.IntRange(2), required=True, help="Steps to keep (chain length).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Text file for the step list (pass it as --steps @OUTPUT).")
@click.option("--batch-size", type=click.IntRange(1), default=50, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def fit_steps(model_name, data_dir, split, limit, tile, num, output, batch_size, seed, force):
    """The N-step respacing that minimises the model's bound on data (Watson et al. 2021).

    One network call per step and image prices every jump of the full chain; a shortest-path search
    picks the N steps. The estimate printed is on the fitting images (optimistic); `bpd --steps
    @OUTPUT` on other images measures the chain.
    """
    from diffcodec.core.schedules import space_timesteps
    from diffcodec.evaluation.spacing import fit_spacing
    from diffcodec.io.datasets import images_or_file, size_runs
    from diffcodec.io.files import atomic_write_bytes
    from diffcodec.training.store import load_model

    out = check_output(output, force)
    loaded = load_model(model_name)
    T = loaded.diffusion(None).num_timesteps
    if num > T:
        raise click.ClickException(f"--steps {num} is more than the model's {T} steps")
    images = images_or_file(loaded.config.data, loaded.config.model.in_channels, data_dir, split, limit, tile)
    batches = sum(1 for _ in size_runs(images, range(len(images)), batch_size))
    with click.progressbar(length=T * batches, label=f"pricing jumps on {len(images)} images") as bar:
        fit = fit_spacing(loaded, images, num, batch_size, seed, progress=bar.update)
    atomic_write_bytes(out, (",".join(map(str, fit["steps"])) + "\n").encode())
    click.echo(f"wrote {out}: {num} steps of {T}")
    click.echo(f"estimated bound on the {len(images)} fitting images (optimistic for this chain):")
    click.echo(f"  fitted  {fit['bpd']:.4f} bits/dim")
    for spec in (str(num), f"quad{num}"):
        try:
            click.echo(f"  {spec:<7} {fit['estimate'](space_timesteps(T, spec)):.4f} bits/dim")
        except ValueError:
            pass


@main.command()
@model_option
@click.option("-n", "num", type=click.IntRange(1), default=16, show_default=True, help="Number of samples.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output PNG (a grid).")
@click.option("--steps", default=None, callback=read_steps, help="Respacing: " + STEPS_FORMS + " (default: all T).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--size", default=None, help="HxW for fully convolutional models (default: training size).")
@click.option("--progressive", is_flag=True, help="Write the x0_hat trajectory (paper Figure 6): one row per sample.")
@click.option("--frames", type=click.IntRange(2), default=10, show_default=True, help="Columns of --progressive.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def sample(model_name, num, output, steps, seed, size, progressive, frames, force):
    """Draw images by ancestral sampling (Algorithm 2)."""
    from diffcodec.core.sampling import image_size, sample_images
    from diffcodec.evaluation.figures import progressive_figure
    from diffcodec.io.images import grid, save_png
    from diffcodec.training.store import load_model

    out = check_output(output, force)
    loaded = load_model(model_name)
    hw = None
    if size:
        try:
            hw = tuple(int(v) for v in size.lower().split("x"))
        except ValueError:
            raise click.ClickException(f"--size must look like 32x32, got {size!r}") from None
    hw = image_size(loaded, hw)
    T = loaded.diffusion(steps).num_timesteps
    with click.progressbar(length=T, label="sampling") as bar:
        if progressive:
            progressive_figure(loaded, out, num, frames, steps, seed, hw, progress=bar.update)
        else:
            save_png(out, grid(sample_images(loaded, num, steps, seed, hw, progress=bar.update)))
    click.echo(f"wrote {out} ({num} samples, {T} steps)")


@main.group()
def models():
    """The shipped model store."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models_list(as_json):
    """List the registered models."""
    from diffcodec.training.store import models_dir, read_index

    root = models_dir()
    index = read_index(root)
    if as_json:
        click.echo(json.dumps({"models_dir": str(root), "models": index}, indent=2))
        return
    if not index:
        click.echo(f"no models registered in {root}")
    width = max(len(name) for name in index) if index else 0
    for name, e in index.items():
        click.echo(f"{name:{width}s}  {e['sha256'][:12]}  {e.get('description', '')}")


@models.command("calibrate")
@click.argument("name")
@click.option("--data", "data_dir", required=True, help="Data directory (its training split is used).")
@click.option("--limit", type=click.IntRange(2), default=50, show_default=True)
def models_calibrate(name, data_dir, limit):
    """Measure a masking model's expected code length per reveal position (on training images)
    and store it beside its weights: the masking codec plans its parallel steps from it."""
    from diffcodec.coding.reveal import LOSSES_FILE, measure_losses
    from diffcodec.core.masking import ORDERS
    from diffcodec.io.datasets import images_for_model
    from diffcodec.training.store import load_model, models_dir, read_index

    loaded = load_model(name)
    md = loaded.masking()
    images = images_for_model(loaded.config.data, loaded.config.model.in_channels, data_dir, "train", limit)
    with click.progressbar(length=md.D * len(ORDERS), label="reveal losses") as bar:
        table = measure_losses(loaded, images, progress=bar.update)
    path = models_dir() / read_index()[name]["dir"] / LOSSES_FILE
    write_json(path, table)
    click.echo(f"{path}: " + ", ".join(f"{o} {np.sum(v) / md.D:.4f} bits/dim" for o, v in table.items())
               + f" on {len(images)} training images")


@models.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="Model name (directory under models/).")
@click.option("--description", default="", help="One-line description for the index.")
@click.option("--models-dir", "store", type=click.Path(file_okay=False),
              help="Model store (default: the active one).")
def models_export(checkpoint, name, description, store):
    """Export a training checkpoint's EMA weights into the model store and register them."""
    from diffcodec.training.store import export_checkpoint

    e = export_checkpoint(checkpoint, name, Path(store) if store else None, description)
    click.echo(f"exported {name} (step {e['step']}, sha256 {e['sha256'][:12]}) to {e['path']}")
