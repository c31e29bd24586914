"""encode, decode and info: the progressive codec on the command line."""
from __future__ import annotations

import json
import math
from pathlib import Path

import click

from . import main
from .common import DEFAULT_MODEL, check_output


def _read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise click.ClickException(f"no such file: {path}") from None
    except IsADirectoryError:
        raise click.ClickException(f"{path} is a directory") from None
    except OSError as e:
        raise click.ClickException(f"cannot read {path}: {e.strerror}") from None


def _fmt_db(v: float) -> str:
    return "lossless" if math.isinf(v) else f"{v:.2f} dB"


@main.command()
@click.argument("image")
@click.option("-o", "--output", required=True, help="Output .dfc file.")
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True,
              help="Model name, model directory or checkpoint.")
@click.option("--backend", type=click.Choice(["uq", "rcc"]), default="uq", show_default=True,
              help="uq: universal quantization (fast, few steps); rcc: reverse channel coding (the paper's Algorithm 3).")
@click.option("--steps", default=None, help="Coded steps: N, quadN, ddimN or a list (default: quad8 for uq, quad50 for rcc).")
@click.option("--stop-step", type=click.IntRange(0), help="Stop once x_t with t <= T is sent.")
@click.option("--psnr", "target_psnr", type=float, help="Stop at the first step whose reconstruction reaches this PSNR (dB).")
@click.option("--bpp", type=click.FloatRange(0, min_open=True), help="Keep the last step whose file fits B bits per pixel.")
@click.option("--lossless", is_flag=True, help="Add a final layer that makes the file lossless.")
@click.option("--layers", "max_layers", type=click.IntRange(1, 64), default=8, show_default=True,
              help="At most this many layers (progressive refinement points).")
@click.option("--seed", type=click.IntRange(0, 2 ** 62), default=0, show_default=True, help="Shared-randomness seed.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def encode(image, output, model_name, backend, steps, stop_step, target_psnr, bpp, lossless, max_layers, seed, force):
    """Encode IMAGE (8-bit PNG or any Pillow-readable image) into a progressive .dfc file."""
    from diffcodec.checkpoint import atomic_write_bytes
    from diffcodec.codec import encode_image
    from diffcodec.data import load_image
    from diffcodec.zoo import load_model

    if sum(v is not None for v in (stop_step, target_psnr, bpp)) > 1:
        raise click.ClickException("use only one of --stop-step, --psnr and --bpp")
    out = check_output(output, force)
    if out.resolve() == Path(image).resolve():
        raise click.ClickException("the output would overwrite the input image")
    img = load_image(image)
    loaded = load_model(model_name)
    if img.shape[0] != loaded.config.model.in_channels and loaded.config.model.in_channels == 1:
        raise click.ClickException(f"{image} is an RGB image but model {loaded.name} codes grayscale images")
    if img.shape[0] != loaded.config.model.in_channels:
        img = load_image(image, loaded.config.model.in_channels)  # grayscale into an RGB model
    from diffcodec.codec import DEFAULT_STEPS

    try:
        n_steps = loaded.diffusion(steps or DEFAULT_STEPS[backend]).num_timesteps - 1
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    with click.progressbar(length=max(1, n_steps), label=f"encoding ({backend})") as bar:
        res = encode_image(loaded, img, backend, steps, seed, stop_step, target_psnr, bpp, lossless,
                           max_layers, progress=lambda i: bar.update(1))
    atomic_write_bytes(out, res.data)
    C, H, W = img.shape
    click.echo(f"{out}: {len(res.data)} bytes, {8 * len(res.data) / (H * W):.4f} bits/pixel "
               f"({8 * len(res.data) / (C * H * W):.4f} bits/dim), {len(res.layer_bytes)} layers, "
               f"{len(res.records)} steps, decoder PSNR {_fmt_db(res.psnr)}, {res.seconds:.2f} s")


@main.command()
@click.argument("infile")
@click.option("-o", "--output", required=True, help="Output PNG.")
@click.option("--layers", type=click.IntRange(0), help="Decode only the first N layers.")
@click.option("--stop-step", type=click.IntRange(0), help="Stop once x_t with t <= T is decoded.")
@click.option("--reconstruct", type=click.Choice(["x0", "flow", "ancestral"]), default="x0", show_default=True,
              help="x0: x0_hat (Eq. 15); flow: deterministic DDIM from x_t; ancestral: sample the rest.")
@click.option("--model", "model_name", default=None, help="Model to use (default: the one named in the file).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
def decode(infile, output, layers, stop_step, reconstruct, model_name, force):
    """Decode a .dfc file (or any prefix of one) to PNG."""
    from diffcodec.bitstream import Container
    from diffcodec.codec import decode_container
    from diffcodec.imageio import save_png
    from diffcodec.zoo import load_model

    out = check_output(output, force)
    container = Container.from_bytes(_read_bytes(infile))
    loaded = load_model(model_name or container.header.model_name)
    h = container.header
    with click.progressbar(length=max(1, sum(l.steps for l in container.layers)), label="decoding") as bar:
        res = decode_container(loaded, container, layers, stop_step, reconstruct,
                               progress=lambda i: bar.update(1))
    save_png(out, res.image)
    note = "" if container.complete else " (file is truncated)"
    click.echo(f"{out}: {h.width}x{h.height}, used {res.layers_used} of {res.layers_total} layers{note}, "
               f"{res.steps_decoded} steps, t={res.t}{', lossless' if res.lossless else ''}, {res.seconds:.2f} s")


@main.command()
@click.argument("infile")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(infile, as_json):
    """Show a .dfc file's header and layer table."""
    from diffcodec.bitstream import Container

    data = _read_bytes(infile)
    c = Container.from_bytes(data)
    h = c.header
    hdr = c.header_size()
    pixels = h.height * h.width
    rows, total = [], hdr
    for i, layer in enumerate(c.layers):
        total += len(layer.data)
        rows.append({"layer": i + 1, "steps": layer.steps, "kind": "lossless" if layer.steps == 0 else "lossy",
                     "bytes": len(layer.data), "cumulative_bytes": total, "cumulative_bpp": 8 * total / pixels})
    doc = {"file": infile, "bytes": len(data), "format_version": 1, "model": h.model_name,
           "model_hash": h.model_hash.hex(), "height": h.height, "width": h.width, "channels": h.channels,
           "backend": h.backend, "steps": h.steps_spec, "seed": h.seed, "lossless_layer": h.lossless,
           "params": h.params.hex(), "header_bytes": hdr, "complete": c.complete, "layers": rows}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{infile}: {len(data)} bytes, .dfc v1, {h.width}x{h.height}x{h.channels}, model {h.model_name} "
               f"({h.model_hash.hex()}), backend {h.backend}, steps {h.steps_spec}, seed {h.seed}"
               + ("" if c.complete else ", TRUNCATED"))
    click.echo(f"header {hdr} bytes")
    click.echo(f"{'layer':>5} {'steps':>5} {'bytes':>7} {'cum bpp':>9}")
    for r in rows:
        click.echo(f"{r['layer']:>5} {r['steps'] if r['steps'] else 'x0':>5} {r['bytes']:>7} {r['cumulative_bpp']:>9.4f}")
