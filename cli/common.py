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
