"""eval table4 / rd / progressive, and plot: the rate-distortion evaluator."""
from __future__ import annotations

import json
from pathlib import Path

import click

from diffcodec.core.masking import ORDERS
from diffcodec.io.files import atomic_write_bytes, write_json

from .group import main
from .common import SEED, STEPS_FORMS, check_output, model_option, output_file, read_steps, tile_option


@main.group("eval")
def evaluate():
    """Reproduce the paper's progressive results and compare with real codecs."""


def _images(loaded, data, split, limit, tile=None):
    from diffcodec.io.datasets import images_or_file

    return images_or_file(loaded.config.data, loaded.config.model.in_channels, data, split, limit, tile)


@evaluate.command("table4")
@model_option
@click.option("--data", "data_dir", required=True, help="Data directory (test split).")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=50, show_default=True)
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), callback=output_file, help="Write the result as JSON.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), callback=output_file, help="Write Figure 5 as PNG.")
def table4(model_name, data_dir, limit, batch_size, seed, json_out, plot_out):
    """Table 4 / Figure 5: cumulative rate and RMSE every T/10 reverse steps (ideal KL, x0_hat).

    Under torchrun the images are sharded across processes (torch.distributed)."""
    from diffcodec.distributed import is_main
    from diffcodec.evaluation import table4 as paper
    from diffcodec.evaluation.figures import plot_table4
    from diffcodec.training.store import load_model

    loaded = load_model(model_name)
    images = _images(loaded, data_dir, "test", limit)
    T = loaded.config.diffusion.num_timesteps
    with click.progressbar(length=len(images), label=f"Table 4 over {T} steps", show_pos=True) as bar:
        res = paper.table4(loaded, images, batch_size, seed, progress=bar.update)
    if not is_main():  # under torchrun every rank computed its shard; rank 0 reports
        return
    res.update({"model": loaded.name, "data": str(data_dir)})
    click.echo(f"{loaded.name}: {res['images']} images, T = {T}; paper: CIFAR-10 test, T = 1000")
    click.echo(f"{'steps':>6} {'rate (bits/dim)':>16} {'RMSE':>8}   {'paper rate':>11} {'paper RMSE':>10}")
    for k, row in enumerate(res["rows"]):
        pr = (f"{paper.TABLE4_RATE[k]:11.5f} {paper.TABLE4_RMSE[k]:10.2f}" if T == 1000 and len(res["rows"]) == 10 else "")
        click.echo(f"{row['steps']:>6} {row['rate_bpd']:16.5f} {row['rmse']:8.2f}   {pr}")
    if json_out:
        write_json(json_out, res)
    if plot_out:
        plot_table4(res, plot_out, label=loaded.name)


@evaluate.command("rd")
@click.option("--model", "model_name", default="fmnist", show_default=True, help="Model for ideal/uq/rcc.")
@click.option("--data", "data", required=True, help="Data directory, or one image file.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--codecs", default="ideal,uq,jpeg,webp,avif,jpeg2000", show_default=True,
              help="Comma-separated: ideal, uq, rcc, jpeg, webp, avif, jpeg2000, jxl.")
@click.option("--steps", default=None, callback=read_steps, help="Step spec for the diffusion codecs: " + STEPS_FORMS + " (default: each backend's).")
@click.option("--anchor", default="jpeg", show_default=True, help="Codec that BD-rate/BD-PSNR are relative to.")
@tile_option
@click.option("--no-per-image", is_flag=True, help="Leave per-image rows out of the JSON.")
@click.option("--keep", is_flag=True, help="Also compare with the curves already in OUT (from an earlier run on the same images).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.pass_context
def rd(ctx, model_name, data, limit, codecs, steps, anchor, tile, no_per_image, keep, out_dir):
    """Rate-distortion curves (one CompressAI-style JSON per codec) with BD-rate against an anchor.

    Baselines run at the settings of diffcodec.evaluation.baselines.SETTINGS (printed below the
    table). Each BD-rate is shown with the PSNR range it was computed over, for whole files and for
    coding only (each file less its format's fixed bytes, measured on a flat image).

    Under torchrun the images are sharded across processes (the output directory must be shared)."""
    from click.core import ParameterSource

    from diffcodec.distributed import is_main
    from diffcodec.evaluation import baselines, rd_curves
    from diffcodec.evaluation.figures import plot_rd
    from diffcodec.training.store import load_model

    names = [c.strip() for c in codecs.split(",") if c.strip()]
    rd_curves.check_codecs(names)
    kept_anchor = keep and (Path(out_dir) / f"{anchor}.json").is_file()
    if (anchor not in names and not kept_anchor
            and ctx.get_parameter_source("anchor") == ParameterSource.COMMANDLINE):
        raise click.UsageError(f"the anchor {anchor} is not among --codecs (nor, with --keep, a curve in {out_dir})")
    loaded = load_model(model_name)
    images = _images(loaded, data, "test", limit, tile)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = {}
    for name in names:
        with click.progressbar(length=len(images), label=f"{name:9s}", show_pos=True) as bar:
            docs[name] = rd_curves.evaluate_codec(name, images, out, loaded, steps, not no_per_image, bar.update)
    if not is_main():  # under torchrun every rank coded its shard; rank 0 writes the results
        return
    if keep:
        docs = {**rd_curves.read_curves(out, len(images), exclude=names), **docs}
        rd_curves.add_coding_only(docs, loaded, images[0].shape)
    rd_curves.add_bd(docs, anchor)
    for name, doc in docs.items():
        write_json(out / f"{name}.json", doc)
    summary = rd_curves.summarize(docs)
    write_json(out / "summary.json", summary)
    atomic_write_bytes(out / "table.md", rd_curves.markdown_table(summary, anchor).encode())
    for line in rd_curves.table_lines(summary, anchor):
        click.echo(line)
    for row in summary:
        if row["codec"] in baselines.SETTINGS:
            click.echo(f"  {row['codec']}: {row['settings']}")
    plot_rd(list(docs.values()), out / "rd.png", title=f"{len(images)} images, model {loaded.name}",
            labels=rd_curves.plot_labels(docs))
    click.echo(f"wrote {len(docs)} JSON files, summary.json, table.md and rd.png to {out}")


@evaluate.command("bitsback")
@model_option
@click.option("--data", "data_dir", required=True, help="Data directory (test split) or an image.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--steps", default="100", show_default=True, callback=read_steps, help="Respaced chain: " + STEPS_FORMS + ", or all.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--grid", type=click.IntRange(1, 256), default=None,
              help="Latent bins per smallest noise scale (default 8).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), callback=output_file, help="Write the result as JSON.")
def bitsback(model_name, data_dir, limit, steps, seed, grid, json_out):
    """Lossless bits-back ANS coding of a chain of images: real stack, decoded back and checked.

    Prints the variational bound of the chain, the coded rate (net stack growth per image), the
    whole stream including its initial words, and what one image alone needs (its borrowed bits
    included)."""
    from diffcodec.evaluation.lossless import run_chain
    from diffcodec.training.store import load_model

    loaded = load_model(model_name)
    images = _images(loaded, data_dir, "test", limit)
    try:
        loaded.diffusion(steps)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    with click.progressbar(length=2 * len(images), label="encode + decode", show_pos=True) as bar:
        res = run_chain(loaded, images, steps, seed, progress=lambda _: bar.update(1), grid=grid)
    res.update({"model": loaded.name, "data": str(data_dir)})
    click.echo(f"{loaded.name}: {res['images']} images x {res['dims']} dims, steps {steps}; all decoded exactly")
    click.echo(f"  bound (bpd, same chain)  {res['bound_bpd']:.4f} bits/dim")
    click.echo(f"  coded, chained (net)     {res['net_bpd']:.4f} bits/dim "
               f"({res['excess_pct']:+.3f}% +- {res['excess_pct_sem']:.3f}% vs the bound)")
    click.echo(f"  bound on the coded path  {res['path_bound_bpd']:.4f} bits/dim (one sample, continuous densities)")
    split = res["excess_split_pct"]
    click.echo("  excess, split: " + ", ".join(f"{k.replace('_', ' ')} {m:+.3f}% +- {e:.3f}%"
                                               for k, (m, e) in split.items()))
    click.echo(f"  the coder's cost over the chain: {res['coder_bits_per_image']:+.2f} bits per image "
               f"(exact to {32 / res['images']:.2f})")
    click.echo(f"  whole stream             {res['file_bpd']:.4f} bits/dim "
               f"(incl. {res['initial_bpd']:.4f} of initial words)")
    click.echo(f"  one image alone          {res['single_image_bpd']:.4f} bits/dim "
               f"(borrows {res['borrowed_bpd']:.2f} bits/dim)")
    click.echo(f"  {res['encode_s']:.2f} s encode, {res['decode_s']:.2f} s decode per image")
    if json_out:
        write_json(json_out, res)


@evaluate.command("ardm")
@model_option
@click.option("--data", "data_dir", required=True, help="Data directory (test split).")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True,
              help="Images for the bound (one network evaluation per dimension each).")
@click.option("--order", type=click.Choice(ORDERS), default="raster", show_default=True)
@click.option("--code", "n_code", type=click.IntRange(0), default=2, show_default=True,
              help="Images to code losslessly for real (and decode back).")
@click.option("--code-steps", default="all", show_default=True,
              help="Network evaluations per real file, comma-separated (all = D, one pixel per step; "
                   "fewer: budgeted parallel steps): a bits-vs-evaluations table.")
@click.option("--figure", type=click.Path(dir_okay=False), callback=output_file,
              help="PNG of progressive generation: samples revealed step by step (predicted mean elsewhere).")
@click.option("-n", "num", type=click.IntRange(1), default=6, show_default=True, help="Samples in --figure.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), callback=output_file, help="Write the result as JSON.")
def ardm(model_name, data_dir, limit, order, n_code, code_steps, figure, num, seed, json_out):
    """T = D masking diffusion (Section 4.3): its variational bound is the autoregressive NLL.

    Needs a masking model (diffusion.kind = masking). Prints the bound as the sum of the diffusion's
    KL terms (each a point-mass KL, i.e. one coordinate's NLL) in the chosen reveal order, the
    real size of lossless files coded step by step, and optionally a progressive-generation figure."""
    from diffcodec.coding.reveal import masking_for
    from diffcodec.evaluation.figures import ardm_generation_figure
    from diffcodec.evaluation.lossless import ardm_bound, ardm_code
    from diffcodec.training.store import load_model

    loaded = load_model(model_name)
    images = _images(loaded, data_dir, "test", limit)
    md = masking_for(loaded, images.shape[1:])
    with click.progressbar(length=md.D, label=f"bound over T = D = {md.D} steps", show_pos=True) as bar:
        bound, per_image = ardm_bound(loaded, images, order, seed, progress=bar.update)
    res = {"model": loaded.name, "data": str(data_dir), **bound}
    click.echo(f"{loaded.name}: {len(images)} images, T = D = {md.D}, {order} order")
    click.echo(f"  bound = sum of KL terms = autoregressive NLL: {res['bound_bpd']:.4f} "
               f"+- {res['bound_bpd_sem']:.4f} bits/dim (L_T = 0; no gap)")
    click.echo("  by quarter of the reveal order: " + ", ".join(f"{q:.3f}" for q in res["quarters_bpd"]))
    if n_code:
        res["coding"] = []
        for steps in [v.strip() for v in code_steps.split(",") if v.strip()]:
            with click.progressbar(length=len(images[:n_code]), label=f"lossless coding, {steps} steps") as bar:
                row = ardm_code(loaded, images[:n_code], per_image, order, seed, progress=bar.update, steps=steps)
            res["coding"].append(row)
            click.echo(f"  real files for the first {row['coded_images']}, {row['coded_steps']} network evaluations: "
                       f"{row['coded_bpd']:.4f} bits/dim ({100 * (row['coded_bpd'] / row['coded_bound_bpd'] - 1):+.2f}% "
                       f"vs their bound {row['coded_bound_bpd']:.4f}; payload {row['payload_bpd']:.4f}, "
                       f"{100 * (row['payload_bpd'] / row['coded_bound_bpd'] - 1):+.2f}%, header and layer table "
                       f"{row['header_bytes']:.1f} bytes), decoded exactly; "
                       f"{row['code_s_per_image']:.1f} s per image (encode + decode)")
    if figure:
        with click.progressbar(length=md.D, label="progressive generation") as bar:
            ardm_generation_figure(loaded, figure, num, md.order(order, seed), seed, progress=bar.update)
        click.echo(f"  figure: {figure}")
    if json_out:
        write_json(json_out, res)


@evaluate.command("orderings")
@model_option
@click.option("--data", "data_dir", required=True, help="Data directory (test split).")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--orders", default=",".join(ORDERS), show_default=True, help="Comma-separated reveal orders.")
@click.option("--steps", default=None, help="Network evaluations per real file (default 100; all = D).")
@click.option("--gaussian", "gaussian_dir", type=click.Path(file_okay=False, exists=True),
              help="An `eval rd` output folder on the same images: its ideal and real curves join the plot.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
def orderings(model_name, data_dir, limit, orders, steps, gaussian_dir, out_dir):
    """Section 4.3 measured: a masking model's progressive curves in raster, random and
    coarse-to-fine order (ideal and real files) beside the Gaussian model's, in one plot and table."""
    from diffcodec.evaluation.figures import plot_rd
    from diffcodec.evaluation.orderings import ideal_curve, real_curve, table
    from diffcodec.evaluation.rd_curves import read_curves
    from diffcodec.training.store import load_model

    loaded = load_model(model_name)
    md = loaded.masking()
    chosen = [o.strip() for o in orders.split(",") if o.strip()]
    bad = [o for o in chosen if o not in ORDERS]
    if not chosen:
        raise click.UsageError(f"no orders given; use {', '.join(ORDERS)}")
    if bad:
        raise click.UsageError(f"unknown order {bad[0]!r}; use {', '.join(ORDERS)}")
    images = _images(loaded, data_dir, "test", limit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = []
    for order in chosen:
        with click.progressbar(length=md.D, label=f"{order}: bound terms") as bar:
            doc, _ = ideal_curve(loaded, images, order, progress=bar.update)
        docs.append(doc)
        with click.progressbar(length=len(images), label=f"{order}: real files") as bar:
            docs.append(real_curve(loaded, images, order, steps, progress=bar.update))
    if gaussian_dir:
        for name, doc in read_curves(Path(gaussian_dir), len(images)).items():
            if name in ("ideal", "rcc"):
                doc["name"] = f"Gaussian {name}"
                docs.append(doc)
    for doc in docs:
        write_json(out / (doc["name"].replace(" ", "_").replace("(", "").replace(")", "") + ".json"), doc)
    rows = table(docs)
    write_json(out / "table.json", rows)
    plot_rd(docs, out / "orderings.png", title=f"{loaded.name}: orderings vs Gaussian diffusion ({len(images)} images)")
    click.echo(f"{'curve':28s} " + " ".join(f"{k:>9s}" for k in rows[0] if k != "curve"))
    for r in rows:
        click.echo(f"{r['curve']:28s} " + " ".join("        -" if v is None else f"{v:9.3f}" if isinstance(v, float)
                                                 else f"{v:>9}" for k, v in r.items() if k != "curve"))
    click.echo(f"bits per pixel at each PSNR; plot: {out / 'orderings.png'}")


@evaluate.command("progressive")
@model_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output PNG.")
@click.option("--shared-xt", is_flag=True, help="Figure 7: several x_0 from one frozen x_t at several t.")
@click.option("-n", "num", type=click.IntRange(1), default=8, show_default=True)
@click.option("--frames", type=click.IntRange(2), default=10, show_default=True)
@click.option("--steps", default=None, callback=read_steps, help="Respacing: " + STEPS_FORMS + " (default: all T).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--force", is_flag=True)
def progressive(model_name, output, shared_xt, num, frames, steps, seed, force):
    """Figure 6 (x0_hat along the reverse process) or, with --shared-xt, Figure 7."""
    from diffcodec.evaluation.figures import progressive_figure, shared_xt_figure
    from diffcodec.training.store import load_model

    out = check_output(output, force)
    loaded = load_model(model_name)
    T = loaded.diffusion(steps).num_timesteps
    with click.progressbar(length=T, label="sampling") as bar:
        if shared_xt:
            shared_xt_figure(loaded, out, num, min(frames, 6), steps, seed, progress=bar.update)
        else:
            progressive_figure(loaded, out, num, frames, steps, seed, progress=bar.update)
    click.echo(f"wrote {out}")


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--metric", type=click.Choice(["psnr", "rmse", "ms-ssim"]), default="psnr", show_default=True)
@click.option("--x", "x_axis", type=click.Choice(["bpp", "bpd"]), default="bpp", show_default=True)
@click.option("--title", default=None)
def plot(results, output, metric, x_axis, title):
    """Plot rate-distortion JSON files (ours or CompressAI's) into one PNG."""
    from diffcodec.evaluation.figures import curve_values, plot_rd

    docs = []
    for p in results:
        try:
            doc = json.loads(Path(p).read_text())
            if not isinstance(doc.get("results"), dict):
                raise ValueError
        except (ValueError, AttributeError):
            raise click.ClickException(f"{p} is not a rate-distortion JSON (needs a 'results' object)") from None
        docs.append(doc)
    if not any(curve_values(d["results"], metric) is not None for d in docs):
        raise click.ClickException(f"none of the files has {metric!r} results")
    plot_rd(docs, output, metric, x_axis, title)
    click.echo(f"wrote {output}")
