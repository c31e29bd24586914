"""Whole images of any size in the evaluators (--tile 0), and the model chosen by the image."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from diffcodec import api
from diffcodec.errors import UserError
from diffcodec.io.datasets import same_size_batches
from diffcodec.io.images import save_png
from diffcodec_cli import main


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def mixed_dir(tmp_path):
    """Three RGB images of two sizes (16x24 and 24x16), named so that the sizes alternate."""
    rng = np.random.default_rng(3)
    d = tmp_path / "mixed"
    d.mkdir()
    for name, (h, w) in (("a.png", (16, 24)), ("b.png", (24, 16)), ("c.png", (16, 24))):
        yy, xx = np.mgrid[:h, :w]
        save_png(d / name, np.stack([xx * 9 % 256, yy * 7 % 256, rng.integers(0, 256, (h, w))]).astype(np.uint8))
    return d


def test_same_size_batches_keep_order_and_split_on_size():
    images = [np.zeros((3, 4, 6), np.uint8), np.zeros((3, 4, 6), np.uint8), np.zeros((3, 6, 4), np.uint8),
              np.zeros((3, 4, 6), np.uint8)]
    runs = [(idx, b.shape) for idx, b in same_size_batches(images, range(4), 8)]
    assert runs == [([0, 1], (2, 3, 4, 6)), ([2], (1, 3, 6, 4)), ([3], (1, 3, 4, 6))]
    assert [idx for idx, _ in same_size_batches(images, range(4), 1)] == [[0], [1], [2], [3]]


def test_bpd_whole_folder_matches_same_size_arrays(tinyrgb, tiny_store, mixed_dir, tmp_path):
    """bpd --tile 0 over a folder of mixed sizes gives each image the bound the array path gives it
    at the same index (noise is keyed by the image's index), and their mean."""
    from diffcodec.evaluation.bpd import evaluate_bpd
    from diffcodec.io.datasets import load_image

    out = tmp_path / "whole.json"
    r = _invoke("bpd", "--model", "tinyrgb", "--data", mixed_dir, "--tile", "0", "--steps", "4", "--json", out)
    assert r.exit_code == 0, r.output
    whole = json.loads(out.read_text())
    assert whole["images"] == 3 and whole["dims_per_image"] == 3 * 16 * 24   # equal dims, two shapes
    a, b, c = (load_image(mixed_dir / n, 3) for n in ("a.png", "b.png", "c.png"))
    ref_ac = evaluate_bpd(tinyrgb, np.stack([a, a, c]), "4")["per_image_bpd"]    # a at 0, c at 2
    ref_b = evaluate_bpd(tinyrgb, np.stack([b, b]), "4")["per_image_bpd"]        # b at 1
    assert whole["per_image_bpd"] == pytest.approx([ref_ac[0], ref_b[1], ref_ac[2]], rel=1e-5)
    assert whole["total_bpd"] == pytest.approx(np.mean(whole["per_image_bpd"]), rel=1e-6)
    # a single file is taken whole as image 0
    one = tmp_path / "one.json"
    r = _invoke("bpd", "--model", "tinyrgb", "--data", mixed_dir / "b.png", "--steps", "4", "--json", one)
    assert r.exit_code == 0, r.output
    assert json.loads(one.read_text())["total_bpd"] == pytest.approx(ref_b[0], rel=1e-5)


def test_tiles_differ_from_whole(tiny_store, mixed_dir, tmp_path):
    """The default cuts a folder into the model's 8x8 crops; --tile 0 does not."""
    out = tmp_path / "tiles.json"
    r = _invoke("bpd", "--model", "tinyrgb", "--data", mixed_dir, "--steps", "4", "--json", out)
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["dims_per_image"] == 3 * 8 * 8
    r = _invoke("bpd", "--model", "tinyrgb", "--data", mixed_dir, "--tile", "3")
    assert r.exit_code != 0 and "at least 8" in r.output


def test_fit_steps_whole_images(tiny_store, mixed_dir, tmp_path):
    out = tmp_path / "steps.txt"
    r = _invoke("fit-steps", "--model", "tinyrgb", "--data", mixed_dir, "--split", "test", "--tile", "0",
                "-n", "3", "-o", out)
    assert r.exit_code == 0, r.output
    steps = [int(s) for s in out.read_text().strip().split(",")]
    assert len(steps) == 3 and steps == sorted(steps) and steps[0] == 0


def test_default_model_follows_the_image():
    assert api.default_model_for(np.zeros((28, 28), np.uint8)) == "fmnist"
    assert api.default_model_for(np.zeros((28, 28, 1), np.uint8)) == "fmnist"
    assert api.default_model_for(np.zeros((28, 28, 3), np.uint8)) == "photo"
    assert api.default_model_for(np.zeros((512, 768, 3), np.uint8)) == "photo"
    with pytest.raises(UserError, match="--model"):
        api.default_model_for(np.zeros((40, 40), np.uint8))


def test_encode_without_model_names_the_choices(tmp_path):
    img = tmp_path / "g40.png"
    save_png(img, np.full((1, 40, 40), 128, np.uint8))
    r = _invoke("encode", img, "-o", tmp_path / "g.dfc")
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "fmnist codes 28x28 grayscale" in r.output and "--model" in r.output
    assert not (tmp_path / "g.dfc").exists()


def test_rgb_into_grayscale_model_suggests_photo(tiny_store, tmp_path):
    img = tmp_path / "rgb.png"
    save_png(img, np.full((3, 8, 8), 90, np.uint8))
    r = _invoke("encode", img, "--model", "tiny", "-o", tmp_path / "x.dfc")
    assert r.exit_code != 0 and "--model photo" in r.output


def test_batch_output_folder_needs_its_parent(tiny_store, mixed_dir, tmp_path):
    r = _invoke("encode", mixed_dir, "--model", "tinyrgb", "-o", tmp_path / "missing" / "out")
    assert r.exit_code != 0 and "does not exist" in r.output
    assert not (tmp_path / "missing").exists()


def test_eval_rd_whole_images_of_two_shapes(tiny_store, mixed_dir, tmp_path):
    """eval rd --tile 0 codes each image whole; a point's bits/pixel is the mean of each image's
    file bits over its own pixels (recomputed here from the files on disk)."""
    from pathlib import Path

    out = tmp_path / "rd"
    r = _invoke("eval", "rd", "--model", "tinyrgb", "--data", mixed_dir, "--tile", "0", "--codecs", "uq,jpeg",
                "--anchor", "jpeg", "--steps", "4", "-o", out)
    assert r.exit_code == 0, r.output
    for codec in ("uq", "jpeg"):
        doc = json.loads((out / f"{codec}.json").read_text())
        assert doc["images"] == 3 and doc["shapes"] == [[3, 16, 24], [3, 24, 16]]
        rows = doc["per_image"]
        for row in rows:
            assert row["bits"] == 8 * Path(row["file"]).stat().st_size
            assert row["bpp"] == pytest.approx(row["bits"] / (16 * 24))
        res = doc["results"]
        for key, bpp in zip(res["points"], res["bpp"]):
            mine = [row["bpp"] for row in rows if row["point"] == key]
            assert len(mine) == 3 and bpp == pytest.approx(np.mean(mine))
