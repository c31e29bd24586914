"""Coarse network calls at high noise (diffcodec.core.scales): the pooling and upsampling, the
timestep whose signal-to-noise ratio the pooled image has, the raw output that stands for the
network at full resolution, and files coded with a model that names a schedule."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from diffcodec.coding.progressive import decode_container, encode_image
from diffcodec.container.format import Container
from diffcodec.core import precision, scales
from diffcodec.core.adapter import NetworkAdapter
from diffcodec.core.diffusion import GaussianDiffusion
from diffcodec.core.schedules import named_betas
from diffcodec.evaluation.metrics import psnr
from diffcodec.training.config import InferenceConfig
from test_tiling import _coded_in, _image


def test_schedule_names_parse_and_give_each_timestep_its_factor():
    tiers = scales.parse("2t400-4t700")
    assert tiers == ((2, 400), (4, 700))
    assert [scales.factor(tiers, t) for t in (0, 399, 400, 699, 700, 999)] == [1, 1, 2, 2, 4, 4]
    assert scales.parse("") == ()
    for bad in ("2t400-2t700", "4t400-2t700", "2t700-4t400", "1t400", "2t", "t400", "2t0400", "2x400"):
        with pytest.raises(ValueError):
            scales.parse(bad)
    assert precision.parse("bfloat16/tile128/halo4/scales2t400-4t700") == ("bfloat16", 128, 4, "2t400-4t700")
    assert precision.network_format("float32", 0, 8, "2t400") == "float32/scales2t400"
    with pytest.raises(ValueError):
        precision.parse("float32/scales2t400-2t500")
    assert "bfloat16/tile128/halo4/scales2t400-4t700" in precision.decoder_formats(512, 768)
    # untiled: no schedule that pools
    assert not any(scales.pools(precision.parse(f).scales) for f in precision.decoder_formats(100, 128))
    with pytest.raises(ValueError, match="scales"):
        InferenceConfig(tile=128, halo=4, scales="2t500").validate()
    with pytest.raises(ValueError, match="tiling"):
        InferenceConfig(scales="2t400-4t700").validate()
    InferenceConfig(tile=128, halo=4, scales="2t400-4t700").validate()


def test_a_blank_tier_comes_last_and_makes_no_call_from_its_timestep():
    tiers = scales.parse("2t400-4t700-0t999")
    assert tiers == ((2, 400), (4, 700), (scales.BLANK, 999))
    assert [scales.factor(tiers, t) for t in (399, 400, 700, 998, 999)] == [1, 2, 4, 4, scales.BLANK]
    assert scales.parse("0t999") == ((0, 999),)
    for bad in ("0t999-2t400", "2t400-0t700-4t800", "0t500-0t900", "2t400-0t300", "00t999"):
        with pytest.raises(ValueError):
            scales.parse(bad)
    for s in scales.SCHEDULES:
        assert ("bfloat16/tile128/halo4/scales" + s in precision.decoder_formats(512, 768)) == scales.pools(s)
    InferenceConfig(tile=128, halo=4, scales="2t400-4t700-0t999").validate()


def test_a_schedule_may_end_in_a_rescale():
    assert scales.parse("2t400-4t700-0t999-v") == ((2, 400), (4, 700), (scales.BLANK, 999))
    assert scales.rescales("2t400-4t700-0t999-v") and not scales.rescales("2t400-4t700-0t999")
    assert scales.parse("v") == () and scales.rescales("v") and not scales.rescales("")
    for bad in ("v-2t400", "2t400-v-4t700", "2t400-vv", "2t400v", "2t400-v-v"):
        with pytest.raises(ValueError):
            scales.parse(bad)
    assert precision.parse("float32/tile128/halo4/scales2t400-4t700-0t999-v").scales == "2t400-4t700-0t999-v"
    assert precision.era("float32/tile128/halo4/scales2t400-4t700-0t999-v") == 2
    InferenceConfig(tile=128, halo=4, scales="2t400-4t700-0t999-v").validate()


def test_images_the_network_sees_whole_take_the_schedules_blank_tier_and_rescale():
    """The ``whole`` part of a schedule is its blank tier and rescale; a model's config must name a
    schedule that pools; an encoder uses the whole part on an image no larger than the model's
    tile where it is one of SCHEDULES (else no schedule), and readers try it at such sizes alone."""
    assert scales.whole("2t400-4t700-0t999-v") == "0t999-v" and scales.whole("2t400-4t700-0t999") == "0t999"
    assert scales.whole("2t400-4t700-v") == "v" and scales.whole("2t400-4t700") == ""
    assert scales.pools("2t400-0t999") and not scales.pools("0t999-v") and not scales.pools("v")
    with pytest.raises(ValueError, match="no coarse call"):
        InferenceConfig(tile=128, halo=4, scales="0t999-v").validate()
    photo = "2t400-4t700-0t999-v"
    assert precision.encoder_network("cpu", (3, 64, 96), "float32", (128, 4), photo) == "float32/scales0t999-v"
    assert precision.encoder_network("cpu", (3, 64, 200), "float32", (128, 4), photo) == \
        "float32/tile128/halo4/scales" + photo
    assert precision.encoder_network("cpu", (3, 64, 96), "float32", (128, 4), "2t400-4t700-0t999") == "float32"
    assert precision.encoder_network("cpu", (1, 28, 28), "float32") == "float32"
    assert "float32/scales0t999-v" in precision.decoder_formats(64, 96)
    assert "float32/scales0t999-v" not in precision.decoder_formats(64, 200)
    assert precision.era("float32/scales0t999-v") == scales.SCHEDULES.index("0t999-v") > precision.era(
        "float32/tile128/halo4/scales" + photo)


def test_a_small_image_codes_with_a_blank_first_step_and_rescaled_variances(tinyrgb, monkeypatch):
    """On an image no larger than the model's tile the file names the schedule's whole part, makes
    one network call fewer than the plain format (the blank first step), and decodes to the
    encoder's pixels; decoded without the rescale its pixels move."""
    image = _image(12, 16)
    monkeypatch.setattr(precision, "TILINGS", ((16, 4),))
    monkeypatch.setattr(scales, "SCHEDULES", ("2t16-4t28-0t39-v", "0t39-v"))   # the tiny model has T = 40
    for name, value in (("tile", 16), ("halo", 4)):
        monkeypatch.setattr(tinyrgb.config.inference, name, value)
    plain = encode_image(tinyrgb, image, backend="rcc", quality=100, precision="float32")
    assert plain.header.network == "float32"
    monkeypatch.setattr(tinyrgb.config.inference, "scales", "2t16-4t28-0t39-v")
    res = encode_image(tinyrgb, image, backend="rcc", quality=100, precision="float32")
    new = Container.from_bytes(res.data, tinyrgb.keys)
    assert new.header.network == "float32/scales0t39-v"
    assert res.net_evals == plain.net_evals - 1
    decoded = decode_container(tinyrgb, new).image
    assert psnr(decoded, image) == pytest.approx(res.psnr, abs=1e-9)
    unscaled = replace(new, header=replace(new.header, network="float32/scales0t39"))
    assert not np.array_equal(decode_container(tinyrgb, unscaled).image, decoded)
    old = Container.from_bytes(plain.data, tinyrgb.keys)
    assert psnr(decode_container(tinyrgb, old).image, image) == pytest.approx(plain.psnr, abs=1e-9)


def test_the_residual_scale_is_the_mean_standardised_square_and_a_sample_of_p_keeps_it():
    """r_i = r_{i+1} mean((x_i - mu)^2 / variance) over blocks of RESIDUAL_BLOCK values, clipped;
    x_i drawn from p itself gives r_{i+1} back (to sampling error), a narrower draw a smaller r."""
    from diffcodec.core import adapter

    rng = np.random.default_rng(0)
    D = 3 * adapter.RESIDUAL_BLOCK // 2 + 7      # more than one block, and a partial one
    before = {"mean": rng.standard_normal(D), "variance": rng.uniform(0.5, 2.0, D), "scale": 0.9}
    x = before["mean"] + 0.8 * np.sqrt(before["variance"]) * rng.standard_normal(D)
    direct = 0.9 * np.mean((x - before["mean"]) ** 2 / before["variance"])
    assert adapter.residual_scale(x, before) == pytest.approx(direct, rel=1e-12)
    assert adapter.residual_scale(x, before) == pytest.approx(0.9 * 0.64, rel=0.01)
    x = before["mean"] + np.sqrt(before["variance"]) * rng.standard_normal(D)
    assert adapter.residual_scale(x, before) == pytest.approx(0.9, rel=0.01)
    assert adapter.residual_scale(before["mean"], before) == adapter.RESCALE_RANGE[0]
    assert adapter.residual_scale(before["mean"] + 100.0, before) == adapter.RESCALE_RANGE[1]


def test_rescaled_variances_change_the_chain_and_old_files_still_decode(tinyrgb, monkeypatch):
    """With a schedule that ends in "v" each step's variance after the first is the network's times
    the previous step's residual scale (never at index 0): the file names the schedule and decodes
    to the encoder's pixels, as do a cut file, a file stopped at a requested PSNR and a lossless
    one; the same file decoded without the rescale moves pixels, and a file made before (the
    schedule without "v") still decodes as made. Decoded on this thread count alone: the tiny
    model's 1x1 convolution from 16 channels to 8 sums in a thread-dependent order on an AVX2 CPU
    (eval/README.md, "A CPU without bfloat16"), and the rescaled chain turned that drift into a
    moved pixel there; the shipped photo model's thread check is eval/studies/precision_drift.py."""
    image = _image(40, 64)
    monkeypatch.setattr(precision, "TILINGS", ((16, 4),))
    monkeypatch.setattr(scales, "SCHEDULES", ("2t16-4t28", "2t16-4t28-0t39", "2t16-4t28-0t39-v"))
    for name, value in (("tile", 16), ("halo", 4), ("scales", "2t16-4t28-0t39")):
        monkeypatch.setattr(tinyrgb.config.inference, name, value)
    before = encode_image(tinyrgb, image, backend="rcc", quality=100, precision="float32")
    monkeypatch.setattr(tinyrgb.config.inference, "scales", "2t16-4t28-0t39-v")
    seen = []
    scale_after = NetworkAdapter.scale_after
    monkeypatch.setattr(NetworkAdapter, "scale_after",
                        lambda self, x, out: seen.append(scale_after(self, x, out)) or seen[-1])
    res = encode_image(tinyrgb, image, backend="rcc", quality=100, precision="float32")
    new = Container.from_bytes(res.data, tinyrgb.keys)
    assert new.header.network == "float32/tile16/halo4/scales2t16-4t28-0t39-v"
    decoded = decode_container(tinyrgb, new).image
    assert psnr(decoded, image) == pytest.approx(res.psnr, abs=1e-9)
    assert len(seen) > 1 and any(abs(r - 1.0) > 1e-3 for r in seen)
    assert res.net_evals == before.net_evals
    assert [r.kl_model_bits for r in before.records] != [r.kl_model_bits for r in res.records]
    net = NetworkAdapter(tinyrgb, None, image.shape, res.header.network)
    x = np.random.default_rng(0).standard_normal(image.size)
    plain, scaled = net.out(x, 5), net.out(x, 5, 0.75)
    np.testing.assert_array_equal(scaled["variance"], 0.75 * plain["variance"])
    np.testing.assert_array_equal(scaled["mean"], plain["mean"])
    assert plain["scale"] == 1.0 and scaled["scale"] == 0.75
    unscaled = replace(new, header=replace(new.header, network="float32/tile16/halo4/scales2t16-4t28-0t39"))
    assert not np.array_equal(decode_container(tinyrgb, unscaled).image, decoded)
    assert net.out(x, 0, 0.75)["scale"] == 1.0      # never at index 0: the lossless layer's variance
    # a cut file, a stop at a requested PSNR (its last step a lighter variant), and a lossless layer
    k = len(res.records) // 2
    cut = decode_container(tinyrgb, Container.from_bytes(res.file_after(k), tinyrgb.keys))
    assert psnr(cut.image, image) == pytest.approx(res.records[k - 1].psnr, abs=1e-9)
    wanted = res.records[k].psnr - 0.01
    stopped = encode_image(tinyrgb, image, backend="rcc", target_psnr=wanted, precision="float32")
    back = decode_container(tinyrgb, Container.from_bytes(stopped.data, tinyrgb.keys)).image
    assert psnr(back, image) == pytest.approx(stopped.psnr, abs=1e-9) and stopped.psnr >= wanted
    exact = encode_image(tinyrgb, image, backend="rcc", lossless=True, precision="float32")
    assert np.array_equal(decode_container(tinyrgb, Container.from_bytes(exact.data, tinyrgb.keys)).image, image)
    old = Container.from_bytes(before.data, tinyrgb.keys)
    assert old.header.network == "float32/tile16/halo4/scales2t16-4t28-0t39"
    assert psnr(decode_container(tinyrgb, old).image, image) == pytest.approx(before.psnr, abs=1e-9)


def test_pooling_averages_blocks_and_upsampling_is_bilinear():
    x = np.arange(2 * 6 * 8, dtype=np.float64).reshape(2, 6, 8)
    p = scales.pool(x, 2)
    assert p.shape == (2, 3, 4) and p[1, 2, 3] == x[1, 4:6, 6:8].mean()
    odd = scales.pool(x[:, :5, :7], 4)     # padded by the last row and column
    assert odd.shape == (2, 2, 2) and odd[0, 1, 1] == np.mean(np.pad(x[0, :5, :7], ((0, 3), (0, 1)), "edge")[4:, 4:])
    # a linear ramp pooled and upsampled is the ramp again, away from the clamped edges
    yy, xx = np.mgrid[0:16, 0:24].astype(np.float64)
    ramp = (0.3 * yy - 0.2 * xx)[None]
    for f in (2, 4):
        up = scales.upsample(scales.pool(ramp, f), f, 16, 24)
        assert up.shape == ramp.shape
        np.testing.assert_allclose(up[:, f:-f, f:-f], ramp[:, f:-f, f:-f], atol=1e-12)
    assert scales.nearest(np.arange(4.0).reshape(1, 2, 2), 2, 3, 4).tolist() == [[[0, 0, 1, 1]] * 2 + [[2, 2, 3, 3]]]


def test_the_coarse_timestep_has_f_squared_the_signal_to_noise_ratio():
    abar = np.cumprod(1 - named_betas("cosine", 1000))
    snr = abar / (1 - abar)
    for t, f in ((500, 2), (800, 4), (950, 2)):
        t2 = scales.coarse_timestep(abar, t, f)
        assert t2 < t
        assert abs(np.log(snr[t2] / (f * f * snr[t]))) < abs(np.log(snr[t2 + 1] / (f * f * snr[t])))
        assert abs(np.log(snr[t2] / (f * f * snr[t]))) <= abs(np.log(snr[t2 - 1] / (f * f * snr[t])))


def test_the_pooled_image_is_a_noisy_image_at_the_coarse_timestep():
    """What the network is shown: the signal sqrt(abar_t') pool(x_0) exactly, and noise of standard
    deviation sqrt(1 - abar_t') (to sampling error and the rounding of t')."""
    abar = np.cumprod(1 - named_betas("cosine", 1000))
    x0 = np.random.default_rng(1).uniform(-1, 1, (3, 64, 96))
    noise = np.random.default_rng(2).standard_normal(x0.shape)
    for t, f in ((600, 2), (850, 4)):
        t2 = scales.coarse_timestep(abar, t, f)
        shown = []
        scales.coarse_output(lambda y, _: shown.append(y) or np.zeros((3, *y.shape[1:])),
                             np.sqrt(abar[t]) * x0, t, f, abar, learn_sigma=False)
        np.testing.assert_allclose(shown[0], np.sqrt(abar[t2]) * scales.pool(x0, f), rtol=1e-12)
        scales.coarse_output(lambda y, _: shown.append(y) or np.zeros((3, *y.shape[1:])),
                             np.sqrt(1 - abar[t]) * noise, t, f, abar, learn_sigma=False)
        assert shown[1].std() == pytest.approx(np.sqrt(1 - abar[t2]), rel=0.1)


def test_a_network_that_knows_the_pooled_image_gives_x0_hat_at_full_resolution():
    """With a stand-in network that returns the exact eps of the pooled image, the raw output that
    ``coarse_output`` makes gives, through the diffusion's own x0_hat, the upsampled block means of
    x_0: the ramp x_0 itself away from the edges, and the network's v spread over each block."""
    d = GaussianDiffusion(named_betas("cosine", 1000), var_type="learned_range")
    abar = d.alphas_cumprod
    yy, xx = np.mgrid[0:16, 0:24].astype(np.float64)
    x0 = np.stack([0.02 * yy - 0.01 * xx, 0.01 * xx - 0.1, 0.3 - 0.01 * yy])
    rng = np.random.default_rng(0)
    for t, f in ((600, 2), (900, 4)):
        x = np.sqrt(abar[t]) * x0 + np.sqrt(1 - abar[t]) * rng.standard_normal(x0.shape)
        seen = {}

        def run(y, t2):
            seen["shape"], seen["t"] = y.shape, t2
            eps = (y - np.sqrt(abar[t2]) * scales.pool(x0, f)) / np.sqrt(1 - abar[t2])
            return np.concatenate([eps, np.full(y.shape, 0.5)])

        raw = scales.coarse_output(run, x, t, f, abar, learn_sigma=True)
        assert seen["shape"] == (3, 16 // f, 24 // f) and seen["t"] == scales.coarse_timestep(abar, t, f)
        out = d.p_mean_variance(None, torch.from_numpy(x[None]), torch.tensor([t]), output=torch.from_numpy(raw[None]))
        x0_hat = out["pred_xstart"][0].numpy()
        np.testing.assert_allclose(x0_hat[:, f:-f, f:-f], x0[:, f:-f, f:-f], atol=1e-5)   # eps in float32
        assert np.all(raw[3:] == 0.5)


def test_a_model_that_names_a_schedule_codes_with_coarse_calls_and_decodes_exactly(tinyrgb, monkeypatch):
    """Over the model's tiles the file names the schedule and decodes to the encoder's pixels on 1,
    2 and 4 threads; the network sees pooled images at the high-noise steps, so the rates differ
    from the plain format's; an image no larger than a tile runs whole without the schedule; a
    file made before the model named it still decodes as it was made."""
    image = _image(40, 64)
    monkeypatch.setattr(precision, "TILINGS", ((16, 4),))
    monkeypatch.setattr(scales, "SCHEDULES", ("2t16-4t28",))     # the tiny model has T = 40
    for name, value in (("tile", 16), ("halo", 4)):
        monkeypatch.setattr(tinyrgb.config.inference, name, value)
    plain = encode_image(tinyrgb, image, backend="rcc", quality=100, precision="float32")   # tiles, no schedule
    monkeypatch.setattr(tinyrgb.config.inference, "scales", "2t16-4t28")
    assert encode_image(tinyrgb, _image(16, 16), precision="float32").header.network == "float32"
    calls = []
    run = NetworkAdapter._run_coarse
    monkeypatch.setattr(NetworkAdapter, "_run_coarse", lambda self, y, t: calls.append((y.shape, t)) or run(self, y, t))
    res, _ = _coded_in(tinyrgb, image, "float32/tile16/halo4/scales2t16-4t28")
    assert {s for s, _ in calls} == {(3, 20, 32), (3, 10, 16)}
    assert [r.kl_model_bits for r in plain.records] != [r.kl_model_bits for r in res.records]
    old = Container.from_bytes(plain.data, tinyrgb.keys)
    assert old.header.network == "float32/tile16/halo4"
    assert psnr(decode_container(tinyrgb, old).image, image) == pytest.approx(plain.psnr, abs=1e-9)


def test_a_blank_first_step_makes_no_call_and_old_files_still_decode(tinyrgb, monkeypatch):
    """With a blank tier at the chain's first timestep the encoder and decoder call the network
    one time less, p_theta at that step is N(posterior_mean_coef2 x_T, beta~_T) with x0_hat = 0,
    the file names the schedule and decodes to the encoder's pixels on 1, 2 and 4 threads, and a
    file made with the schedule before it (one call at the first step) still decodes as made."""
    image = _image(40, 64)
    monkeypatch.setattr(precision, "TILINGS", ((16, 4),))
    monkeypatch.setattr(scales, "SCHEDULES", ("2t16-4t28", "2t16-4t28-0t39"))   # the tiny model has T = 40
    for name, value in (("tile", 16), ("halo", 4), ("scales", "2t16-4t28")):
        monkeypatch.setattr(tinyrgb.config.inference, name, value)
    before = encode_image(tinyrgb, image, backend="rcc", quality=100, precision="float32")
    monkeypatch.setattr(tinyrgb.config.inference, "scales", "2t16-4t28-0t39")
    res, _ = _coded_in(tinyrgb, image, "float32/tile16/halo4/scales2t16-4t28-0t39")
    assert res.net_evals == before.net_evals - 1
    net = NetworkAdapter(tinyrgb, None, image.shape, res.header.network)
    first = net.num_steps - 1
    assert int(net.diffusion.timestep_map[first]) == 39
    x = np.random.default_rng(0).standard_normal(image.size)
    out = net.out(x, first)
    assert net.evals == 0
    np.testing.assert_array_equal(out["mean"], net.diffusion.posterior_mean_coef2[first] * x)
    np.testing.assert_array_equal(out["variance"], np.full(x.size, net.diffusion.posterior_variance[first]))
    assert not out["pred_xstart"].any()
    net.out(x, first - 1)
    assert net.evals == 1
    one = NetworkAdapter(tinyrgb, "1", image.shape, res.header.network)   # the step to x_0 always calls
    assert one.num_steps == 1 and int(one.diffusion.timestep_map[0]) == 39
    assert one.out(x, 0)["pred_xstart"].any() and one.evals == 1
    old = Container.from_bytes(before.data, tinyrgb.keys)
    assert old.header.network == "float32/tile16/halo4/scales2t16-4t28"
    assert psnr(decode_container(tinyrgb, old).image, image) == pytest.approx(before.psnr, abs=1e-9)
