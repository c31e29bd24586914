"""The T = D masking diffusion: its bound is the autoregressive chain rule; real lossless coding."""
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import synthetic_images
from diffcodec.core.masking import MaskingDiffusion
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


def test_lossless_round_trip_and_size_matches_bound(model, images):
    md = model.masking()
    sigma = md.order("raster")
    bound_bits = md.bound_terms(model.net, images[:1], sigma).sum()
    data = md.encode(model.net, images[0], sigma)
    assert np.array_equal(md.decode(model.net, data, sigma), images[0])
    payload = 8 * (len(data) - 2)
    assert bound_bits - 1 <= payload <= bound_bits + 64          # range coder: at most two words over
    bad = bytearray(data)
    bad[5] ^= 0x40
    with pytest.raises(Exception, match="checksum"):
        md.decode(model.net, bytes(bad), sigma)


def test_sampling_reveals_in_order(model):
    md = model.masking()
    out, snaps = md.sample(model.net, 2, md.order("raster"), seed=1, frames=4)
    assert out.shape == (2, 1, 8, 8) and snaps.shape == (4, 2, 1, 8, 8)
    assert np.array_equal(snaps[-1], out)
    # after the first quarter of raster steps, the top two rows are the sample's final pixels
    assert np.array_equal(snaps[0][:, :, :2], out[:, :, :2])


def test_cli_ardm_and_gaussian_commands_refuse_it(tiny_masking, idx_dir, tmp_path):
    r = CliRunner().invoke(main, ["eval", "ardm", "--model", str(tiny_masking), "--data", str(idx_dir),
                                  "--limit", "2", "--code", "1", "--figure", str(tmp_path / "g.png"),
                                  "-n", "2", "--json", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["T"] == 64 and doc["bound_bpd"] > 0 and doc["coded_images"] == 1
    assert (tmp_path / "g.png").stat().st_size > 100
    r = CliRunner().invoke(main, ["bpd", "--model", str(tiny_masking), "--data", str(idx_dir), "--limit", "2"])
    assert r.exit_code != 0 and "masking" in r.output and "Traceback" not in r.output


def test_cli_ardm_refuses_a_gaussian_model(tiny_store, idx_dir):
    r = CliRunner().invoke(main, ["eval", "ardm", "--model", "tiny", "--data", str(idx_dir), "--limit", "2"])
    assert r.exit_code != 0 and "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "not a masking one" in errors[0]
