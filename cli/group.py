"""The ``diffcodec`` click group, which the command modules register their commands on."""
from __future__ import annotations

import click

from diffcodec import __version__
from diffcodec.errors import UserError


class Group(click.Group):
    """Turns the library's user errors, and the system's (a folder that cannot be written, a full
    disk, memory), into one-line messages and exit status 1; a closed output pipe ends quietly."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as e:
            raise click.ClickException(str(e)) from None
        except BrokenPipeError:     # the reader of our output went away (`... | head`): stop quietly
            import os
            import sys

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise click.ClickException(f"{where}{e.strerror or e}") from None
        except MemoryError:
            raise click.ClickException("out of memory: ask for fewer or smaller images") from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="diffcodec")
def main():
    """Progressive image coding with denoising diffusion models.

    \b
    Examples:
      diffcodec encode photo.png -o photo.dfc
      diffcodec decode photo.dfc -o rec.png --layers 5
      diffcodec sample --model fmnist -n 16 -o samples.png
      diffcodec bpd --model fmnist --data /usr/share/datasets/fashion-mnist --limit 100
    """
