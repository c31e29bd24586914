"""The T = D masking diffusion: its bound is the autoregressive chain rule; real lossless coding."""
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import synthetic_images
from diffcodec.training.store import load_model
from diffcodec_cli import main


@pytest.fixture(scope="module")
def model(tiny_masking):
    return load_model(str(tiny_masking), "cpu")


@pytest.fixture(scope="module")
def images():
    return synthetic_images(3, seed=11)[:, None]          # [3, 1, 8, 8]


def test_bound_terms_are_the_chain_rule(model, images):
    md = model.masking()
    assert md.D == md.num_timesteps == 64
    sigma = md.order("random", seed=4)
    assert sorted(sigma.tolist()) == list(range(64))
    terms = md.bound_terms(model.net, images, sigma)             # [B, D] bits
    # the same product of conditionals, computed independently: one coordinate at a time
    x = torch.from_numpy(images).float() / 127.5 - 1.0
    mask = torch.ones(3, 64)
    for k in (0, 17, 63):
        m = mask.clone()
        m[:, sigma[:k]] = 0.0
        logits = md.logits(model.net, x, m.view_as(x))            # [B, 1, 256, 8, 8]
        d = int(sigma[k])
        lp = torch.log_softmax(logits[:, 0, :, d // 8, d % 8], dim=1)
        want = -lp[torch.arange(3), torch.from_numpy(images[:, 0, d // 8, d % 8].astype(np.int64))] / math.log(2)
        np.testing.assert_allclose(terms[:, k], want.numpy(), rtol=1e-5, atol=1e-6)
    assert (terms > 0).all()


def test_training_loss_is_unbiased_nll_estimate(model, images):
    """With t = D - 1 (everything masked) the loss is the mean NLL of all coordinates given none."""
    md = model.masking()
    x = torch.from_numpy(images).float() / 127.5 - 1.0
    loss = md.training_losses(model.net, x, torch.full((3,), 63))
    logits = md.logits(model.net, x, torch.ones_like(x))
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), md.classes(x), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), ce.flatten(1).mean(1).detach().numpy(), rtol=1e-5)


def test_codec_round_trip_and_size_matches_bound(model, images):
    """One coordinate per step ("all"): the file's payload against the T = D bound, summed from
    ``bound_terms`` (teacher-forced network evaluations, no coder)."""
    from diffcodec.coding import reveal
    from diffcodec.container.format import Container, FormatError

    md = model.masking()
    # noise pixels: no run of zero symbols at the end for the range coder's trimming to drop
    img = np.random.default_rng(2).integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    bound_bits = md.bound_terms(model.net, img, md.order("raster")).sum()
    res = reveal.encode_image(model, img[0], "raster", "all")
    payload = 8 * sum(res.layer_bytes)
    assert bound_bits - 1 <= payload <= bound_bits + 16 + 8 * len(res.layer_bytes)
    back = reveal.decode_container(model, Container.from_bytes(res.data, model.keys))
    assert np.array_equal(back.image, img[0]) and back.complete
    bad = bytearray(res.data)
    bad[-3] ^= 0x40
    with pytest.raises(FormatError):
        reveal.decode_container(model, Container.from_bytes(bytes(bad), model.keys))


def test_a_reveal_file_is_settled_too(model, monkeypatch):
    """The masking codec's encoder settles its file's check as the Gaussian one does: where the
    shortest file's check passes several formats, it writes a padded one, which decodes."""
    from conftest import first_header_collides
    from diffcodec.coding import reveal
    from diffcodec.container import format as container_format
    from diffcodec.container.format import Container

    img = np.random.default_rng(3).integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    real = first_header_collides(monkeypatch)
    res = reveal.encode_image(model, img[0], "raster", "all")
    monkeypatch.setattr(container_format, "_first_check", real)
    c = Container.from_bytes(res.data, model.keys)
    assert c.pad == 1 and np.array_equal(reveal.decode_container(model, c).image, img[0])


@pytest.mark.parametrize("order", ["coarse", "random"])
def test_every_prefix_decodes_to_revealed_pixels_plus_prediction(model, images, order, monkeypatch):
    """A prefix's image against the teacher-forced reconstruction ``bound_terms`` reports for the
    same number of revealed coordinates (computed without the coder)."""
    from diffcodec.coding import common, reveal
    from diffcodec.container.format import Container

    monkeypatch.setattr(common, "MIN_LAYER_BITS", 0)   # an 8x8 image: let small layers exist
    md = model.masking()
    sizes = reveal.plan(model, md, order, "10")
    assert len(sizes) == 10 and sizes.sum() == 64
    expected = {}
    md.bound_terms(model.net, images[:1], md.order(order), sizes=sizes,
                   on_step=lambda n, pred: expected.__setitem__(n, pred[0]))
    res = reveal.encode_image(model, images[0], order, "10", max_layers=4)
    assert res.net_evals == 10 and len(res.layer_bytes) >= 2
    data = res.data
    revealed = 0
    for layers in range(len(res.layer_steps)):
        cut = res.header_bytes + sum(res.layer_bytes[:layers])
        dec = reveal.decode_container(model, Container.from_bytes(data[:cut], model.keys))
        assert dec.layers_used == layers and not dec.complete
        assert np.array_equal(dec.image.reshape(-1), expected[revealed])
        # the revealed pixels are exact
        sigma = md.order(order)[:revealed]
        assert np.array_equal(dec.image.reshape(-1)[sigma], images[0].reshape(-1)[sigma])
        revealed += int(sizes[sum(res.layer_steps[:layers]):sum(res.layer_steps[:layers + 1])].sum())


def test_budget_plan_is_optimal_against_brute_force():
    """The dynamic program against an exhaustive search over every split of D = 9 into S steps."""
    import itertools

    from diffcodec.core.parallel import budget_plan, plan_cost, uniform_plan

    rng = np.random.default_rng(5)
    losses = np.sort(rng.uniform(0.1, 4.0, 9))[::-1]
    mbits = np.round(losses * 1000).astype(np.int64)
    for S in (1, 2, 3, 5, 9):
        best = min(plan_cost(mbits, np.diff([0, *cuts, 9]))
                   for cuts in itertools.combinations(range(1, 9), S - 1))
        sizes = budget_plan(losses, S)
        assert len(sizes) == S and sizes.sum() == 9 and (sizes > 0).all()
        assert plan_cost(mbits, sizes) == best
    assert plan_cost(mbits, budget_plan(losses, 3)) <= plan_cost(mbits, uniform_plan(9, 3))


def test_ordering_curve_ideal_rates_are_the_bound_terms(model, images):
    """``eval orderings``' ideal curve against one-coordinate-at-a-time log-likelihoods of the
    coarse-to-fine order, computed here without ``bound_terms``."""
    from diffcodec.evaluation.orderings import ideal_curve

    md = model.masking()
    doc, terms = ideal_curve(model, images, "coarse")
    sigma = md.order("coarse")
    x = torch.from_numpy(images).float() / 127.5 - 1.0
    total = np.zeros(len(images))
    with torch.no_grad():
        for k in range(64):
            m = torch.ones(len(images), 64)
            m[:, sigma[:k]] = 0.0
            lp = torch.log_softmax(md.logits(model.net, x, m.view_as(x))[:, 0].flatten(2), dim=1)
            d = int(sigma[k])
            total += -lp[torch.arange(len(images)), torch.from_numpy(images.reshape(len(images), -1)[:, d].astype(np.int64)), d].numpy() / math.log(2)
    assert np.allclose(terms.sum(1), total, rtol=1e-4)
    assert doc["lossless_bpp"] == pytest.approx(total.mean() / 64, rel=1e-4)
    assert doc["results"]["bpp"] == sorted(doc["results"]["bpp"])


def test_cli_encode_decode_with_a_masking_model(tiny_masking, tmp_path):
    from PIL import Image

    img = synthetic_images(1, seed=3)[0]
    Image.fromarray(img).save(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "--model", str(tiny_masking),
                                  "-o", str(tmp_path / "a.dfc"), "--steps", "8"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "a.dfc"), "--model", str(tiny_masking),
                                  "-o", str(tmp_path / "b.png")])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.array(Image.open(tmp_path / "b.png")), img)
    # a model that is not registered: the file names none, so info needs it too
    r = CliRunner().invoke(main, ["info", str(tmp_path / "a.dfc")])
    assert r.exit_code != 0 and "other weights" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["info", str(tmp_path / "a.dfc"), "--model", str(tiny_masking), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["layers"], r.output
    r = CliRunner().invoke(main, ["encode", str(tmp_path / "a.png"), "--model", str(tiny_masking),
                                  "-o", str(tmp_path / "c.dfc"), "--quality", "50"])
    assert r.exit_code != 0 and "lossless" in r.output and "Traceback" not in r.output
    data = (tmp_path / "a.dfc").read_bytes()
    (tmp_path / "t.dfc").write_bytes(data[:-2] + bytes([data[-2] ^ 0xFF, data[-1]]))
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "t.dfc"), "--model", str(tiny_masking),
                                  "-o", str(tmp_path / "t.png")])
    assert r.exit_code != 0 and "Traceback" not in r.output and "corrupt" in r.output


def test_sampling_reveals_in_order(model):
    md = model.masking()
    out, snaps = md.sample(model.net, 2, md.order("raster"), seed=1, frames=4)
    assert out.shape == (2, 1, 8, 8) and snaps.shape == (4, 2, 1, 8, 8)
    assert np.array_equal(snaps[-1], out)
    # after the first quarter of raster steps, the top two rows are the sample's final pixels
    assert np.array_equal(snaps[0][:, :, :2], out[:, :, :2])


def test_cli_ardm_and_gaussian_commands_refuse_it(tiny_masking, idx_dir, tmp_path):
    r = CliRunner().invoke(main, ["eval", "ardm", "--model", str(tiny_masking), "--data", str(idx_dir),
                                  "--limit", "2", "--code", "1", "--code-steps", "all,8", "--figure", str(tmp_path / "g.png"),
                                  "-n", "2", "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["T"] == 64 and doc["bound_bpd"] > 0
    assert [row["coded_steps"] for row in doc["coding"]] == [64, 8]
    assert all(row["coded_images"] == 1 for row in doc["coding"])
    assert (tmp_path / "g.png").stat().st_size > 100
    r = CliRunner().invoke(main, ["bpd", "--model", str(tiny_masking), "--data", str(idx_dir), "--limit", "2"])
    assert r.exit_code != 0 and "masking" in r.output and "Traceback" not in r.output


def test_cli_ardm_refuses_a_gaussian_model(tiny_store, idx_dir):
    r = CliRunner().invoke(main, ["eval", "ardm", "--model", "tiny", "--data", str(idx_dir), "--limit", "2"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "not a masking one" in errors[0]
