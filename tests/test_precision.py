"""The network's number format (diffcodec.core.precision): bfloat16 only for images above
BF16_MIN_DIMS, overridable, and a decoder computing in another format than the encoder moves the
pixels slightly but never loses the stream."""
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcodec.coding.progressive import decode_container, encode_image
from diffcodec.container.format import Container
from diffcodec.core import precision
from diffcodec.errors import UserError
from diffcodec.evaluation.metrics import psnr


def test_float32_unless_bfloat16_is_asked_for_on_large_images(monkeypatch):
    monkeypatch.delenv("DIFFCODEC_PRECISION", raising=False)
    assert precision.compute_dtype("cpu", 10 ** 6) == torch.float32
    monkeypatch.setenv("DIFFCODEC_PRECISION", "bfloat16")
    assert precision.compute_dtype("cpu", 10 ** 6) == torch.bfloat16
    assert precision.compute_dtype("cpu", precision.BF16_MIN_DIMS) == torch.float32
    monkeypatch.setenv("DIFFCODEC_PRECISION", "float32")
    assert precision.score_dtype(10 ** 6) == torch.float32
    monkeypatch.delenv("DIFFCODEC_PRECISION")
    native = precision._native_bf16("cpu")
    assert precision.score_dtype(10 ** 6) == (torch.bfloat16 if native else torch.float32)
    assert precision.score_dtype(precision.BF16_MIN_DIMS) == torch.float32
    monkeypatch.setenv("DIFFCODEC_PRECISION", "half")
    with pytest.raises(UserError, match="DIFFCODEC_PRECISION"):
        precision.compute_dtype("cpu", 10)


def test_a_bad_precision_setting_is_a_one_line_error(monkeypatch, tmp_path, tiny_store):
    from click.testing import CliRunner

    from diffcodec.io.images import save_png
    from diffcodec_cli import main

    image = tmp_path / "x.png"
    save_png(image, (np.random.default_rng(0).random((3, 40, 48)) * 255).astype(np.uint8))
    monkeypatch.setenv("DIFFCODEC_PRECISION", "half")
    r = CliRunner().invoke(main, ["encode", str(image), "-o", str(tmp_path / "x.dfc"), "--model", "tinyrgb"])
    assert r.exit_code == 1 and "DIFFCODEC_PRECISION must be one of" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "x.dfc").exists()
