"""Options and helpers shared by commands."""
from __future__ import annotations

from pathlib import Path

import click

DEFAULT_MODEL = "fmnist"

model_option = click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True,
                            help="Model name (see `diffcodec models list`), model directory or checkpoint.")


def check_output(path: str | Path, force: bool) -> Path:
    """Refuse to overwrite an existing file unless --force; make sure the folder exists."""
    path = Path(path)
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; pass --force to overwrite it")
    if path.is_dir():
        raise click.ClickException(f"{path} is a directory")
    if not path.parent.exists():
        raise click.ClickException(f"output folder {path.parent} does not exist")
    return path


STEPS_FORMS = "N, quadN, ddimN, geoR, geoRcM, a list like 0,9,99, or @FILE (a list, as `fit-steps` writes)"


def read_steps(ctx, param, value):
    """Click callback for --steps: ``@FILE`` becomes the step list stored in FILE."""
    if value is None or not str(value).startswith("@"):
        return value
    path = Path(value[1:])
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read step list {path}: {getattr(exc, 'strerror', None) or exc}")
    if not text or not all(v.strip().isdigit() for v in text.split(",")):
        raise click.BadParameter(f"{path} does not hold a comma-separated list of steps")
    return text
