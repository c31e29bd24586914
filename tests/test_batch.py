"""Folders of files across worker processes and torchrun ranks: the same files as one process."""
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from diffcodec import api
from diffcodec.io.images import save_png
from diffcodec_cli import main


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(5)
    d = tmp_path / "in"
    d.mkdir()
    for i in range(4):
        yy, xx = np.mgrid[:16, :16]
        save_png(d / f"im{i}.png", np.stack([(xx * (9 + i)) % 256, (yy * 7) % 256,
                                              rng.integers(0, 256, (16, 16))]).astype(np.uint8))
    (d / "bad.png").write_bytes(b"not an image")
    return d


def _bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_workers_write_the_files_one_process_writes(tiny_store, folder, tmp_path):
    opts = dict(backend="uq", steps="5", quality=60)
    one = api.encode_files([folder], tmp_path / "one", "tinyrgb", workers=1, **opts)
    seen = []
    two = api.encode_files([folder], tmp_path / "two", "tinyrgb", workers=2, on_file=seen.append, **opts)
    assert [o.source.name for o in two] == [o.source.name for o in one]           # input order kept
    assert len(seen) == 5 and {o.source.name for o in seen} == {o.source.name for o in one}
    assert [o.error is not None for o in two] == [o.source.name == "bad.png" for o in two]
    assert _bytes(tmp_path / "two") == _bytes(tmp_path / "one") and len(_bytes(tmp_path / "one")) == 4
    d1 = api.decode_files([tmp_path / "one"], tmp_path / "d1", workers=1)
    d2 = api.decode_files([tmp_path / "one"], tmp_path / "d2", workers=2)
    assert all(o.error is None for o in d1 + d2)
    assert _bytes(tmp_path / "d2") == _bytes(tmp_path / "d1")


def test_cli_workers_option(tiny_store, folder, tmp_path):
    r = CliRunner().invoke(main, ["encode", str(folder), "-o", str(tmp_path / "out"), "--model", "tinyrgb",
                                  "--backend", "uq", "--steps", "5", "--workers", "2"])
    assert r.exit_code != 0 and "1 of 5 files failed" in r.output     # bad.png; the others are coded
    assert len(list((tmp_path / "out").glob("*.dfc"))) == 4
    r = CliRunner().invoke(main, ["encode", str(folder), "-o", str(tmp_path / "x"), "--workers", "0"])
    assert r.exit_code != 0


def test_files_shared_across_torchrun_ranks(tiny_store, folder, tmp_path):
    """Two ranks each code half of the folder; the files equal one process's, and rank 0 alone
    prints one line per file and the summary."""
    args = ["encode", str(folder), "--model", "tinyrgb", "--backend", "uq", "--steps", "5", "--workers", "1"]
    CliRunner().invoke(main, [*args, "-o", str(tmp_path / "one")])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "diffcodec", *args, "-o", str(tmp_path / "two")],
                       env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode != 0                     # bad.png fails on one rank: reported once, exit 1
    assert r.stdout.count(" files, ") == 1 and r.stdout.count("bytes, ") == 4 + 1
    assert r.stderr.count("bad.png: error") == 1
    assert _bytes(tmp_path / "two") == _bytes(tmp_path / "one")
