"""Files written atomically (temporary file + rename), JSON output and file hashes."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_replace(path: str | Path, write: Callable[[str], None], private: bool = False) -> None:
    """Create or replace a file atomically: ``write(tmp)`` fills a temporary file in the same
    directory, which is then renamed over ``path``. The file gets the umask's permissions, or stays
    readable by its owner only when ``private``. A device or pipe (``/dev/null``) is written to,
    not replaced."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        write(str(path))
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:    # name the folder the user gave, not the temporary file
        raise OSError(e.errno, e.strerror, str(path.parent)) from None
    os.close(fd)
    try:
        write(tmp)
        if not private:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file via a temporary file in the same directory and an atomic rename."""
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path: str | Path, obj) -> None:
    """``obj`` as indented JSON with a final newline, written atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_free(dst: Path, src: Path | None, force: bool) -> None:
    """Refuse an output that is its input ``src`` (even with ``force``) or, unless ``force``, an
    existing file."""
    from ..errors import UserError

    if src is not None and dst.resolve() == Path(src).resolve():
        raise UserError(f"{dst} would overwrite the input file")
    if dst.exists() and not force:
        raise UserError(f"{dst} exists; pass --force to overwrite it")
