"""The network's number format (diffcodec.core.precision) and the copy of the network the codec
runs (diffcodec.nets.inference): the encoder picks the format, the file records it, the decoder
follows it; the same file decodes to the same pixels on 1, 2 and 4 threads; a decoder computing
in another format moves the pixels but never loses the stream."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from diffcodec.coding.progressive import decode_container, encode_image
from diffcodec.container.format import Container, network_key
from diffcodec.core import precision
from diffcodec.errors import UserError
from diffcodec.evaluation.metrics import psnr

LARGE = 10 ** 6


def test_the_encoder_picks_bfloat16_only_where_native_and_above_the_small_size(monkeypatch):
    monkeypatch.delenv("DIFFCODEC_PRECISION", raising=False)
    native = precision._native_bf16("cpu")
    assert precision.encoder_format("cpu", LARGE) == ("bfloat16" if native else "float32")
    assert precision.encoder_format("cpu", LARGE, "float32") == "float32"
    assert precision.encoder_format("cpu", LARGE, "bfloat16") == "bfloat16"
    assert precision.encoder_format("cpu", precision.BF16_MIN_DIMS, "bfloat16") == "float32"
    monkeypatch.setenv("DIFFCODEC_PRECISION", "float32")
    assert precision.encoder_format("cpu", LARGE) == "float32"
    assert precision.encoder_format("cpu", LARGE, "bfloat16") == "bfloat16"   # the argument wins
    assert precision.score_dtype(LARGE) == torch.float32
    monkeypatch.delenv("DIFFCODEC_PRECISION")
    assert precision.score_dtype(LARGE) == (torch.bfloat16 if native else torch.float32)
    assert precision.score_dtype(precision.BF16_MIN_DIMS) == torch.float32
    monkeypatch.setenv("DIFFCODEC_PRECISION", "half")
    with pytest.raises(UserError, match="DIFFCODEC_PRECISION"):
        precision.encoder_format("cpu", 10)


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


def test_encode_precision_option_and_info(tmp_path, tiny_store):
    """``encode --precision`` picks the format; ``info`` reads it back from the file's check."""
    import json

    from click.testing import CliRunner

    from diffcodec.io.images import save_png
    from diffcodec_cli import main

    image = tmp_path / "x.png"
    save_png(image, _image())
    for network in ("bfloat16", "float32"):
        out = tmp_path / f"{network}.dfc"
        r = CliRunner().invoke(main, ["encode", str(image), "-o", str(out), "--model", "tinyrgb",
                                      "--precision", network, "-q", "30"])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(main, ["info", str(out), "--json"])
        assert r.exit_code == 0 and json.loads(r.output)["network"] == network
    r = CliRunner().invoke(main, ["encode", str(image), "-o", str(tmp_path / "y.dfc"), "--precision", "half"])
    assert r.exit_code == 2 and "half" in r.output


def _image():
    return (np.random.default_rng(5).random((3, 40, 48)) * 255).astype(np.uint8)   # 5760 values


@pytest.mark.parametrize("network", ["bfloat16", "float32"])
def test_the_file_records_its_network_format_and_the_decoder_follows_it(tinyrgb, monkeypatch, network):
    """Whatever the decoding side asks for, a file decodes in the format it was encoded in, to the
    encoder's own reconstruction; a float32 file's check is keyed with the model's key itself."""
    image = _image()
    res = encode_image(tinyrgb, image, backend="rcc", quality=100, precision=network)
    other = ({"bfloat16", "float32"} - {network}).pop()
    monkeypatch.setenv("DIFFCODEC_PRECISION", other)
    container = Container.from_bytes(res.data, tinyrgb.keys)
    assert container.header.network == network and res.header.network == network
    out = decode_container(tinyrgb, container)
    assert out.steps_decoded == len(res.records)
    assert psnr(out.image, image) == pytest.approx(res.psnr, abs=1e-9)
    assert (network_key(tinyrgb.key, network) == tinyrgb.key) == (network == "float32")


def test_a_decoder_in_another_format_moves_pixels_but_keeps_the_stream(tinyrgb):
    """The header's format replaced by the other one (what an older decoder, or a wrong one,
    would compute): every step still decodes, near the encoder's image but not on it."""
    image = _image()
    for network, other in (("bfloat16", "float32"), ("float32", "bfloat16")):
        res = encode_image(tinyrgb, image, backend="rcc", quality=100, precision=network)
        container = Container.from_bytes(res.data, tinyrgb.keys)
        same = decode_container(tinyrgb, container)
        moved = decode_container(tinyrgb, replace(container, header=replace(container.header, network=other)))
        assert moved.steps_decoded == same.steps_decoded == len(res.records)
        assert abs(psnr(moved.image, image) - res.psnr) < 1.0
        assert 0 < np.abs(moved.image.astype(int) - same.image.astype(int)).max() <= 32


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("network", ["float32", "bfloat16", "bfloat16-emulated"])
def test_a_file_decodes_to_the_same_pixels_on_1_2_and_4_threads(tinyrgb, network, fused, monkeypatch):
    """Both ways a layer can run: oneDNN's fused convolutions (every map, here) and plain ops;
    bfloat16 as this CPU computes it and as a CPU without oneDNN's bfloat16 kernels does."""
    from diffcodec.nets import inference

    monkeypatch.setattr(inference, "FUSE_MIN_PIXELS", 1 if fused else 10 ** 9)
    if network == "bfloat16-emulated":
        network = "bfloat16"
        monkeypatch.setattr(inference, "native_bf16", lambda: False)
    image = _image()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        res = encode_image(tinyrgb, image, backend="rcc", quality=100, precision=network)
        container = Container.from_bytes(res.data, tinyrgb.keys)
        decoded = {}
        for n in (1, 2, 4):
            torch.set_num_threads(n)
            decoded[n] = decode_container(tinyrgb, container).image
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(decoded[1], decoded[2]) and np.array_equal(decoded[1], decoded[4])


@pytest.mark.parametrize("fuse_min", [1, None])
def test_the_inference_copy_computes_the_same_function(tinyrgb, fuse_min, monkeypatch):
    """inference.for_inference (channels-last, fixed-order GroupNorm + in-place SiLU, fixed-order
    Linear) against the network itself: equal up to float rounding in float32, and up to
    bfloat16's rounding under autocast; the original network is left untouched."""
    from diffcodec.nets.inference import FixedOrderGroupNorm, FixedOrderLinear, FusedResBlock, for_inference

    from diffcodec.nets import inference

    if fuse_min:   # every map through the fused convolutions (else only maps of FUSE_MIN_PIXELS)
        monkeypatch.setattr(inference, "FUSE_MIN_PIXELS", fuse_min)
    net = tinyrgb.net
    fast = for_inference(net)
    for kind in (FixedOrderGroupNorm, FixedOrderLinear, FusedResBlock):
        assert any(isinstance(m, kind) for m in fast.modules())
        assert not any(isinstance(m, kind) for m in net.modules())
    # every convolution can be emulated (a plain one would run torch's slow bfloat16 fallback)
    assert not any(type(m) is torch.nn.Conv2d for m in fast.modules())
    assert any(type(m) is torch.nn.Conv2d for m in net.modules())
    x = torch.randn(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([500])
    with torch.no_grad():
        want = net(x, t)
        got = fast(x.contiguous(memory_format=torch.channels_last), t)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = fast(x.contiguous(memory_format=torch.channels_last), t).float()
    assert (low - want).abs().max() < 0.05 * want.abs().max()


def _bf16_ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """How many bfloat16 steps apart two bfloat16 tensors' values are (same-sign values)."""
    return (a.view(torch.int16).int() - b.view(torch.int16).int()).abs()


EMULATED_CASES = {   # (in, out, kernel, stride, padding, groups, input format, post): the codec's kinds
    "3x3, skip added": (48, 32, 3, 1, 1, 1, torch.bfloat16, "add"),
    "3x3, stride 2": (32, 32, 3, 2, 1, 1, torch.bfloat16, "none"),
    "1x1 skip": (64, 32, 1, 1, 0, 1, torch.bfloat16, "none"),
    "depthwise, swish": (32, 32, 1, 1, 0, 32, torch.bfloat16, "swish"),
    "first layer, float32 input": (3, 32, 3, 1, 1, 1, torch.float32, "none"),
}


@pytest.mark.parametrize("case", list(EMULATED_CASES))
def test_the_emulated_bfloat16_convolution_is_the_exact_sum_rounded_once(case):
    """inference.emulated_conv (bfloat16 convolutions where oneDNN has no kernels for them): its
    output is the float64 convolution of the bfloat16-rounded operands, plus the added tensor,
    through the post op, rounded once to bfloat16, for all but the values whose float32 sum
    lands by a last bit on the other side of a rounding point (one step away, about 1 in 10^4);
    and, where this CPU has the kernels, the same as oneDNN's own bfloat16 convolution but for
    such values."""
    from diffcodec.nets import inference

    cin, cout, k, stride, pad, groups, fmt, post = EMULATED_CASES[case]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, cin, 29, 31, generator=g).to(fmt).contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, cin // groups, k, k, generator=g) / (cin // groups * k * k) ** 0.5
    b = torch.randn(cout, generator=g)
    out_hw = [(n + 2 * pad - k) // stride + 1 for n in (29, 31)]
    add = (torch.randn(1, cout, *out_hw, generator=g).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
           if post == "add" else None)
    args = ([pad, pad], [stride, stride], [1, 1], groups)
    got = inference.emulated_conv(x, w, b, *args, add=add, post="swish" if post == "swish" else "none")
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last)
    exact = torch.nn.functional.conv2d(x.to(torch.bfloat16).double(), w.to(torch.bfloat16).double(),
                                       b.to(torch.bfloat16).double(), stride, pad, 1, groups)
    exact = exact + add.double() if add is not None else exact
    exact = torch.nn.functional.silu(exact) if post == "swish" else exact
    ulps = _bf16_ulps(got, exact.float().to(torch.bfloat16))
    assert ulps.max() <= 1 and (ulps == 0).float().mean() > 0.999
    if inference.native_bf16() and inference._MKLDNN is not None and fmt == torch.bfloat16:
        wb, bb = w.to(torch.bfloat16), b.to(torch.bfloat16)
        native = (inference._MKLDNN.binary(x, add, wb, bb, *args, "add", None, None, [], None) if add is not None
                  else inference._MKLDNN(x, wb, bb, *args, post, [], ""))
        ulps = _bf16_ulps(got, native)
        assert ulps.max() <= 1 and (ulps == 0).float().mean() > 0.999


def test_without_bfloat16_kernels_a_bfloat16_file_decodes_near_the_encoders_image(tinyrgb, monkeypatch):
    """A bfloat16 file made where oneDNN computes bfloat16 (or emulated, where it cannot) decodes
    with the emulated convolutions: every step, near the encoder's reconstruction, and on the
    encoder's own pixels where it was made with them too."""
    from diffcodec.nets import inference

    monkeypatch.setattr(inference, "FUSE_MIN_PIXELS", 1)
    image = _image()
    res = encode_image(tinyrgb, image, backend="rcc", quality=100, precision="bfloat16")
    container = Container.from_bytes(res.data, tinyrgb.keys)
    native = inference.native_bf16()
    monkeypatch.setattr(inference, "native_bf16", lambda: False)
    out = decode_container(tinyrgb, container)
    assert out.steps_decoded == len(res.records)
    assert abs(psnr(out.image, image) - res.psnr) < 0.5
    if not native:   # made with the emulated kernels too: the same pixels
        assert psnr(out.image, image) == pytest.approx(res.psnr, abs=1e-9)


def test_fixed_order_group_norm_matches_group_norm_on_odd_sizes():
    """Statistics from block sums with ragged edge blocks (ceil_mode) against nn.GroupNorm."""
    from diffcodec.nets.inference import FixedOrderGroupNorm

    gn = torch.nn.GroupNorm(4, 8)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 2)
        gn.bias.uniform_(-1, 1)
    for shape in ((2, 8, 1, 1), (1, 8, 7, 5), (1, 8, 67, 45), (2, 8, 33, 100)):
        x = (3 * torch.randn(*shape) + 2).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            got = FixedOrderGroupNorm(gn, silu=False)(x)
            assert torch.allclose(got, gn(x), atol=1e-5), shape
            assert torch.allclose(FixedOrderGroupNorm(gn, silu=True)(x.clone()), torch.nn.functional.silu(gn(x)), atol=1e-5)


@pytest.mark.parametrize("fuse_min", [1, None])
def test_a_fused_residual_block_computes_the_block(fuse_min, monkeypatch):
    """FusedResBlock (norm + SiLU as one depthwise convolution, the time embedding in the first
    convolution's bias, the skip branch added by the last) against the ResBlock it is made from,
    with every weight random (a trained block's last convolution starts at zero): one
    channels-last image takes oneDNN's fused kernels, a batch of two and NCHW input the plain
    ops; all agree in float32, and under bfloat16 autocast up to its rounding."""
    from diffcodec.nets import inference
    from diffcodec.nets.inference import FusedResBlock, for_inference
    from diffcodec.nets.unet import ResBlock

    if fuse_min:
        monkeypatch.setattr(inference, "FUSE_MIN_PIXELS", fuse_min)
    g = torch.Generator().manual_seed(1)
    for cin, cout in ((64, 64), (48, 64)):   # 32 groups of two channels: the embedding counts
        block = ResBlock(cin, cout, emb_dim=12, dropout=0.0).eval()
        with torch.no_grad():
            for p in block.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3 + (0.5 if p.dim() == 1 else 0))
        fused = for_inference(torch.nn.ModuleList([block]))[0]
        assert isinstance(fused, FusedResBlock) and isinstance(block.skip, torch.nn.Conv2d) == (cin != cout)
        emb = torch.randn(2, 12, generator=g)
        x = torch.randn(2, cin, 19, 23, generator=g)
        with torch.no_grad():
            want = block(x, emb)
            one = fused(x[:1].contiguous(memory_format=torch.channels_last), emb[:1])
            assert torch.allclose(one, want[:1], atol=1e-4, rtol=1e-4)
            assert torch.allclose(fused(x.contiguous(memory_format=torch.channels_last), emb), want, atol=1e-4, rtol=1e-4)
            assert torch.allclose(fused(x[:1], emb[:1]), want[:1], atol=1e-4, rtol=1e-4)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = fused(x[:1].contiguous(memory_format=torch.channels_last), emb[:1]).float()
        assert (low - want[:1]).abs().max() < 0.05 * want.abs().max()


def test_float32_1x1_convolutions_give_the_same_bits_on_1_2_and_4_threads():
    """A skip projection from 256 channels, or to 8, in float32 (the shapes oneDNN blocked
    differently on one thread than on two: from 16 to 8 on an AVX2 CPU, these on an AVX-512 one),
    through both of the copy's convolution paths: the same bits on 1, 2 and 4 threads."""
    from diffcodec.nets.inference import InferenceConv2d, fused_conv

    g = torch.Generator().manual_seed(3)
    threads = torch.get_num_threads()
    try:
        for cin, cout in ((16, 8), (256, 8), (256, 128)):
            conv = InferenceConv2d(cin, cout, 1).eval()
            x = torch.randn(4, cin, 72, 72, generator=g).contiguous(memory_format=torch.channels_last)
            outs = []
            for n in (1, 2, 4):
                torch.set_num_threads(n)
                with torch.no_grad():
                    outs.append((conv(x), fused_conv(x, conv)))
            for got in outs[1:]:
                assert all(torch.equal(a, b) for a, b in zip(outs[0], got)), (cin, cout)
    finally:
        torch.set_num_threads(threads)


def test_the_allocator_keeps_large_blocks_on_glibc():
    import platform
    import sys

    from diffcodec.core.allocator import keep_large_blocks

    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_large_blocks() == glibc and keep_large_blocks() == glibc   # once, then a no-op
