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


def test_a_bfloat16_file_decodes_in_float32_with_drift_only(tinyrgb, monkeypatch):
    """Encoded with the network in bfloat16 and decoded in float32 (and back): every step decodes,
    the decoder in the encoder's format reproduces the encoder's reconstruction exactly, and the
    other format lands near it, but not on it (the formats do differ)."""
    rng = np.random.default_rng(5)
    image = (rng.random((3, 40, 48)) * 255).astype(np.uint8)    # 5760 values: above BF16_MIN_DIMS
    outputs = {}
    for enc_format in ("bfloat16", "float32"):
        monkeypatch.setenv("DIFFCODEC_PRECISION", enc_format)
        res = encode_image(tinyrgb, image, backend="rcc", quality=100)
        for dec_format in ("bfloat16", "float32"):
            monkeypatch.setenv("DIFFCODEC_PRECISION", dec_format)
            out = decode_container(tinyrgb, Container.from_bytes(res.data, tinyrgb.keys))
            assert out.steps_decoded == len(res.records)
            outputs[enc_format, dec_format] = out.image
            if dec_format == enc_format:
                assert psnr(out.image, image) == pytest.approx(res.psnr, abs=1e-9)
            else:
                assert abs(psnr(out.image, image) - res.psnr) < 1.0
    for enc_format in ("bfloat16", "float32"):
        same = outputs[enc_format, enc_format].astype(int)
        other = outputs[enc_format, ({"bfloat16", "float32"} - {enc_format}).pop()].astype(int)
        assert 0 < np.abs(same - other).max() <= 32


def test_the_inference_copy_computes_the_same_function(tinyrgb):
    """unet.for_inference (channels-last, GroupNorm + in-place SiLU) against the network itself, in
    float32: equal up to float rounding, and the original network is left untouched."""
    from diffcodec.nets.unet import NormSiLU, for_inference

    net = tinyrgb.net
    fast = for_inference(net)
    assert any(isinstance(m, NormSiLU) for m in fast.modules())
    assert not any(isinstance(m, NormSiLU) for m in net.modules())
    x = torch.randn(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        want = net(x, t)
        got = fast(x.contiguous(memory_format=torch.channels_last), t)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
