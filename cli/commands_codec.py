"""encode, decode and info: the progressive codec on the command line."""
from __future__ import annotations

import json
import math
from pathlib import Path

import click

from diffcodec.coding import registry
from diffcodec.core.adapter import RECONSTRUCTIONS
from diffcodec.core.masking import ORDERS
from diffcodec.core.precision import CHOICES as PRECISIONS

from .group import main
from .common import SEED, STEPS_FORMS, check_output, finite, read_steps


def _read_bytes(path: str) -> bytes:
    from diffcodec.api import read_file

    return read_file(path)


def _fmt_db(v: float) -> str:
    return "lossless" if math.isinf(v) else f"{v:.2f} dB"


def _is_batch(inputs, output) -> bool:
    return len(inputs) > 1 or any(Path(i).is_dir() for i in inputs) or Path(output).is_dir()


workers_option = click.option("--workers", type=click.IntRange(1), default=None,
                              help="Several inputs: processes coding files at once (default: one per core).")


def _run_batch(run, inputs, output, suffixes, label, **kwargs) -> None:
    """Code several files (each process loads a model once): one progress bar, a line per file,
    a summary, and a non-zero exit if any file failed (the others are still coded). Under torchrun
    the files are shared across processes and rank 0 reports."""
    from diffcodec.api import batch_summary, expand_inputs
    from diffcodec.distributed import is_main

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise click.ClickException(f"{out} is a file: with several inputs, -o names a folder")
    if not out.resolve().parent.is_dir():        # as for one file: the folder holding the output must exist
        raise click.ClickException(f"output folder {out.parent} does not exist")
    files = expand_inputs(inputs, suffixes)
    if not files:
        raise click.ClickException("no input files")
    out.mkdir(parents=True, exist_ok=True)
    with click.progressbar(length=len(files), label=label, show_pos=True) as bar:
        outcomes = run(files, out, on_file=lambda o: bar.update(1), **kwargs)
    if not is_main():
        return
    for o in outcomes:
        if o.error:
            click.echo(f"{o.source}: error: {o.error}", err=True)
        else:
            q = "" if o.psnr is None else f", {_fmt_db(o.psnr)}"
            click.echo(f"{o.source} -> {o.output}: {o.bytes} bytes, {8 * o.bytes / o.pixels:.4f} bits/pixel{q}")
    total = batch_summary(outcomes)
    if total["files"]:
        click.echo(f"{total['files']} files, {total['bytes']} bytes, mean {total['mean_bpp']:.4f} bits/pixel"
                   + ("" if total["mean_psnr"] is None else f", mean PSNR {total['mean_psnr']:.2f} dB"))
    if total["failed"]:
        raise click.ClickException(f"{total['failed']} of {len(outcomes)} files failed")


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output .dfc file, or a folder for several inputs or folders.")
@click.option("--model", "model_name", default=None,
              help="Model name, model directory or checkpoint (default: fmnist for 28x28 grayscale "
                   "images, photo for RGB ones).")
@click.option("--backend", type=click.Choice([registry.AUTO, *registry.names()]), default=registry.AUTO,
              show_default=True, help="auto: " + registry.choose(registry.AUTO, 1).name + " at every size; "
              + "; ".join(f"{s.name}: {s.description}" for s in registry.specs()) + ".")
@click.option("--steps", default=None, callback=read_steps, help="Coded steps: " + STEPS_FORMS + " (default: "
              + "; ".join(f"{s.steps_text()} for {s.name}" for s in registry.specs()) + ").")
@click.option("-q", "--quality", type=click.IntRange(0, 100), help="Quality 0-100 (default 75; 100: every step): "
              "stop at the first step reaching 17 + 0.28 q dB (steeper above 90).")
@click.option("--stop-step", type=click.IntRange(0), help="Stop once x_t with t <= T is sent.")
@click.option("--psnr", "target_psnr", type=float, callback=finite, help="Stop at the first step whose reconstruction reaches this PSNR (dB); an error if none does.")
@click.option("--bpp", type=click.FloatRange(0, min_open=True), callback=finite, help="Keep the last step whose file fits B bits per pixel; an error if none fits.")
@click.option("--lossless", is_flag=True, help="Add a final layer that makes the file lossless.")
@click.option("--layers", "max_layers", type=click.IntRange(1, 64), default=8, show_default=True,
              help="At most this many layers (progressive refinement points).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Shared-randomness seed.")
@click.option("--order", type=click.Choice(ORDERS), default=None,
              help="Masking models only: reveal order (default coarse; their files are lossless, "
                   "--steps is the number of network evaluations, default 100, or all).")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="The network's number format (default: DIFFCODEC_PRECISION, else auto: bfloat16 "
                   "where the CPU or GPU computes it natively, else float32; images of at most "
                   "3x32x32 values use float32). The file records it and decodes in it.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@workers_option
def encode(images, output, model_name, backend, steps, quality, stop_step, target_psnr, bpp, lossless, max_layers, seed,
           order, precision, force, workers):
    """Encode IMAGES (8-bit PNG or any Pillow-readable image; files or folders) into progressive
    .dfc files. One image: OUTPUT is the file. Several, or a folder: OUTPUT is a folder, the model
    is loaded once, and each image becomes OUTPUT/<name>.dfc."""
    from diffcodec import api
    from diffcodec.coding.progressive import coded_steps, resolve_backend
    from diffcodec.io.datasets import load_image
    from diffcodec.io.images import to_hwc
    from diffcodec.io.files import atomic_write_bytes

    if sum(v is not None for v in (quality, stop_step, target_psnr, bpp)) > 1:
        raise click.ClickException("use only one of --quality, --stop-step, --psnr and --bpp")
    if _is_batch(images, output):
        from diffcodec.api import encode_files
        from diffcodec.io.datasets import IMAGE_SUFFIXES

        _run_batch(encode_files, images, output, IMAGE_SUFFIXES, "encoding", model=model_name, force=force,
                   workers=workers, backend=backend, steps=steps, quality=quality, psnr=target_psnr, bpp=bpp,
                   stop_step=stop_step, lossless=lossless, layers=max_layers, seed=seed, order=order,
                   precision=precision)
        return
    image = images[0]
    out = check_output(output, force, source=image)
    img = to_hwc(load_image(image))
    loaded = api.load_model(model_name or api.default_model_for(img))
    C, H, W = loaded.config.model.in_channels, *img.shape[:2]
    backend = resolve_backend(backend, (C, H, W), "masking" if loaded.is_masking else "gaussian")
    n_steps = coded_steps(loaded, backend, steps, (C, H, W))
    with click.progressbar(length=max(1, n_steps), label=f"encoding ({backend})") as bar:
        res = api.encode(img, loaded, backend=backend, steps=steps, quality=quality, psnr=target_psnr,
                         bpp=bpp, stop_step=stop_step, lossless=lossless, layers=max_layers, seed=seed,
                         order=order, precision=precision, progress=lambda i: bar.update(1))
    atomic_write_bytes(out, res.data)
    click.echo(f"{out}: {len(res.data)} bytes, {8 * len(res.data) / (H * W):.4f} bits/pixel "
               f"({8 * len(res.data) / (C * H * W):.4f} bits/dim), {len(res.layer_bytes)} layers, "
               f"{len(res.records)} steps ({res.backend}), decoder PSNR {_fmt_db(res.psnr)}, {res.seconds:.2f} s")
    if res.note:
        click.echo(f"note: {res.note}", err=True)


@main.command()
@click.argument("infiles", nargs=-1, required=True)
@click.option("-o", "--output", required=True, help="Output PNG, or a folder for several inputs or folders.")
@click.option("--layers", type=click.IntRange(0), help="Decode only the first N layers.")
@click.option("--stop-step", type=click.IntRange(0), help="Stop once x_t with t <= T is decoded.")
@click.option("--reconstruct", type=click.Choice(RECONSTRUCTIONS), default="x0", show_default=True,
              help="x0: x0_hat (Eq. 15); flow: deterministic DDIM from x_t; ancestral: sample the rest.")
@click.option("--model", "model_name", default=None, help="Model to use (default: the registered model whose key passes the file's check).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@workers_option
def decode(infiles, output, layers, stop_step, reconstruct, model_name, force, workers):
    """Decode .dfc files (or any prefix of one) to PNG. Several, or a folder: OUTPUT is a folder and
    each file becomes OUTPUT/<name>.png, each model loaded once."""
    if _is_batch(infiles, output):
        from diffcodec.api import decode_files

        _run_batch(decode_files, infiles, output, {".dfc"}, "decoding", model=model_name, force=force,
                   workers=workers, layers=layers, stop_step=stop_step, reconstruct=reconstruct)
        return
    infile = infiles[0]
    from diffcodec import api
    from diffcodec.container.format import Container
    from diffcodec.io.images import save_png, to_chw
    from diffcodec.training.store import model_keys

    out = check_output(output, force, source=infile)
    if out.suffix and out.suffix.lower() != ".png":
        raise click.ClickException(f"decode writes PNG files: name the output .png, not {out.name}")
    data = _read_bytes(infile)
    loaded = api.load_model(model_name) if model_name else None
    container = Container.from_bytes(data, loaded.keys if loaded else None, model_keys)
    with click.progressbar(length=max(1, sum(l.steps for l in container.layers)), label="decoding") as bar:
        dec = api.decode(data, loaded, layers=layers, stop_step=stop_step, reconstruct=reconstruct,
                         progress=lambda i: bar.update(1))
    res = dec.result
    save_png(out, to_chw(dec.image))
    note = "" if container.complete else " (file is truncated)"
    click.echo(f"{out}: {dec.image.shape[1]}x{dec.image.shape[0]}, used {res.layers_used} of {res.layers_total} layers{note}, "
               f"{res.steps_decoded} steps, t={res.t}{', lossless' if res.lossless else ''}, {res.seconds:.2f} s")


@main.command()
@click.argument("infile")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--model", "model_name", default=None,
              help="The model the file was made with, when it is not a registered one (a directory or checkpoint).")
def info(infile, as_json, model_name):
    """Show a .dfc file's header and layer table."""
    from diffcodec import api
    from diffcodec.container.format import Container
    from diffcodec.training.store import model_keys, profile_for

    data = _read_bytes(infile)
    loaded = api.load_model(model_name) if model_name else None
    container = Container.from_bytes(data, loaded.keys if loaded else None, model_keys)
    name = container.header.model_name or None
    profile = loaded.profile if loaded else profile_for(name) if name else None
    doc = {"file": infile, "bytes": len(data), **container.describe(profile), "model": name}
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    d = {**doc, "model": name or "unknown (no complete layer)"}
    size = (f"{d['width']}x{d['height']}x{d['channels']}" if d["height"]
            else "native size" + (f" x{d['channels']}" if d["channels"] else ""))
    implied = "(the model's default)"
    click.echo(f"{infile}: {len(data)} bytes, .dfc v{d['format_version']}, {size}, "
               f"model {d['model']} (sha256 {(d['model_sha256'] or '-')[:8]}"
               + (f", {d['network']} network" if d["network"] else "") + "), "
               f"backend {d['backend'] or implied}, steps {d['steps'] or implied}, seed {d['seed']}"
               + ("" if d["complete"] else ", TRUNCATED"))
    click.echo(f"header {d['header_bytes']} bytes")
    click.echo(f"{'layer':>5} {'steps':>5} {'bytes':>7} {'cum bpp':>9}")
    for r in d["layers"]:
        bpp = "-" if r["cumulative_bpp"] is None else f"{r['cumulative_bpp']:.4f}"
        click.echo(f"{r['layer']:>5} {r['steps'] if r['steps'] else 'x0':>5} {r['bytes']:>7} {bpp:>9}")
