"""Options and helpers shared by commands."""
from __future__ import annotations

from pathlib import Path

import click

DEFAULT_MODEL = "fmnist"

model_option = click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True,
                            help="Model name (see `diffcodec models list`), model directory or checkpoint.")


def _tile(ctx, param, value):
    if value is not None and 0 < value < 8:
        raise click.BadParameter("a tile is at least 8 pixels (0 takes images whole)")
    return value


tile_option = click.option("--tile", type=click.IntRange(0), default=None, callback=_tile,
                           help="For a folder of images: the tile size they are cut into (default: the "
                                "model's training crop), or 0 to take each image whole.")


def check_output(path: str | Path, force: bool, source: str | Path | None = None) -> Path:
    """Refuse to overwrite an existing file unless --force, and ``source`` (the command's input)
    even then; make sure the folder exists."""
    from diffcodec.api import check_free

    path = Path(path)
    check_free(path, source, force)
    if path.is_dir():
        raise click.ClickException(f"{path} is a directory")
    if not path.parent.exists():
        raise click.ClickException(f"output folder {path.parent} does not exist")
    return path


def output_file(ctx, param, value):
    """Click callback for a result file (--json, --plot): its folder must exist, checked before any
    work is done."""
    if value is not None and not Path(value).resolve().parent.is_dir():
        raise click.BadParameter(f"the folder of {value} does not exist")
    return value


def finite(ctx, param, value):
    """Click callback: a number option must be finite (float options accept nan and inf)."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


SEED = click.IntRange(0, 2 ** 62)   # seeds options take (they drive Philox and numpy generators)


STEPS_FORMS = "N, quadN, ddimN, geoR, geoRcM, a list like 0,9,99, or @FILE (a list, as `fit-steps` writes)"


def read_steps(ctx, param, value):
    """Click callback for --steps: ``@FILE`` becomes the step list stored in FILE."""
    if value is None or not str(value).startswith("@"):
        return value
    from diffcodec.core.schedules import read_step_list
    from diffcodec.errors import UserError

    try:
        return read_step_list(value[1:])
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
