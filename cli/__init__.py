"""The ``diffcodec`` command line: thin click wrappers over the library."""
from __future__ import annotations

from .group import main
from . import commands_codec, commands_core, commands_eval  # noqa: E402,F401  (registers the commands)

__all__ = ["main"]
