"""The public Python API, CompressAI's result layout in both directions, and batch coding."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import diffcodec
from diffcodec_cli import main
from diffcodec.io.images import save_png
from conftest import synthetic_images


def test_array_round_trip_and_prefix(tiny_store):
    img = synthetic_images(1, size=8, seed=4)[0]                 # uint8 [H, W]
    res = diffcodec.encode(img, "tiny", backend="uq", steps="6", quality=100)
    assert isinstance(res.data, bytes) and len(res.data) > 0
    out = diffcodec.decode(res.data)                           # model found by the file's keyed check
    assert out.image.shape == img.shape and out.image.dtype == np.uint8
    assert out.result.steps_decoded == len(res.records)
    from diffcodec.evaluation.metrics import psnr
    assert psnr(out.image, img) == pytest.approx(res.psnr)
    model = diffcodec.load_model("tiny")
    cut = res.data[:res.header_bytes + res.layer_bytes[0]]
    part = diffcodec.decode(cut, model)
    assert part.result.layers_used == 1 and part.image.shape == img.shape
    from PIL import Image
    same = diffcodec.encode(Image.fromarray(img), model, backend="uq", steps="6", quality=100)
    assert same.data == res.data


def test_decode_files_takes_a_loaded_model(tiny_store, tmp_path):
    img = synthetic_images(1, size=8, seed=4)[0]
    (tmp_path / "a.dfc").write_bytes(diffcodec.encode(img, "tiny", backend="uq", steps="6", quality=100).data)
    (tmp_path / "b.dfc").write_bytes(b"\xd7 not a file")
    outcomes = diffcodec.decode_files([tmp_path / "a.dfc", tmp_path / "b.dfc"], tmp_path / "out",
                                      diffcodec.load_model("tiny"))
    assert outcomes[0].error is None and outcomes[0].output.is_file()
    assert outcomes[1].error and outcomes[1].output is None


def test_api_errors_are_the_library_types(tiny_store):
    img = synthetic_images(1, size=8, seed=4)[0]
    with pytest.raises(diffcodec.UserError, match="uint8"):
        diffcodec.encode(img.astype(np.float32), "tiny")
    with pytest.raises(diffcodec.UserError, match="RGB image"):
        diffcodec.encode(np.zeros((8, 8, 3), np.uint8), "tiny")
    with pytest.raises(diffcodec.FormatError, match="not a diffcodec"):
        diffcodec.decode(b"\x89PNG....")
    data = bytearray(diffcodec.encode(img, "tiny", backend="uq", steps="6").data)
    data[-1] ^= 0xFF
    with pytest.raises(diffcodec.FormatError):
        diffcodec.decode(bytes(data))


def curve_from_files(doc, images, model):
    """(bpp, PSNR) per point of an rd curve, computed here from the files it lists: bytes from the
    file system, PSNR (capped at 99 dB, as the curves are) of each file decoded by ``decode`` with
    ``model`` against the original ``images`` [N, H, W]; in the order of doc["results"]["points"]."""
    from pathlib import Path

    bpp, psnrs = {}, {}
    for row in doc["per_image"]:
        data = Path(row["file"]).read_bytes()
        img = images[row["image"]].astype(np.float64)
        mse = np.mean((diffcodec.decode(data, model).image.astype(np.float64) - img) ** 2)
        bpp.setdefault(row["point"], []).append(8 * len(data) / img.size)
        psnrs.setdefault(row["point"], []).append(min(99.0, 10 * np.log10(255 ** 2 / mse)) if mse else 99.0)
    keys = doc["results"]["points"]
    return [np.mean(bpp[k]) for k in keys], [np.mean(psnrs[k]) for k in keys]


def test_bits_per_dim_and_rd_curve(tiny_store, tiny, tmp_path):
    """bits_per_dim against the independent re-derivation of the bound (tests/reference_bound.py)
    on the same images and noise; rd_curve's points against the files it wrote, measured here."""
    from reference_bound import bound_terms

    imgs = synthetic_images(2, size=8, seed=5)
    bpd = diffcodec.bits_per_dim(imgs, "tiny", steps="5")
    assert bpd["steps_kept"] == [0, 10, 20, 29, 39] and bpd["images"] == 2
    L_T, terms = bound_terms(tiny.net, imgs[:, None], 40, [0, 10, 20, 29, 39], seed=0)
    np.testing.assert_allclose(bpd["per_image_bpd"], L_T + terms.sum(1), rtol=2e-4)
    assert bpd["total_bpd"] == pytest.approx(np.mean(L_T + terms.sum(1)), rel=2e-4)
    assert bpd["L_T_bpd"] == pytest.approx(L_T.mean(), rel=1e-6)
    doc = diffcodec.rd_curve("uq", imgs, tmp_path, "tiny", steps="5")
    res = doc["results"]
    assert doc["name"] == "uq" and res["points"] == [1, 2, 3, 4]          # every stop of the 4 coded steps
    bpp, psnrs = curve_from_files(doc, imgs, tiny)
    assert res["bpp"] == pytest.approx(bpp, rel=1e-12) and res["psnr"] == pytest.approx(psnrs, abs=1e-9)
    assert res["psnr"][-1] > res["psnr"][0] + 10       # the curve climbs: not one repeated point


def test_fit_steps(tiny_store):
    imgs = synthetic_images(8, seed=4)
    fit = diffcodec.fit_steps(imgs, "tiny", 5)
    assert len(fit["steps"]) == 5 and fit["steps"][0] == 0 and fit["steps"][-1] == 39
    bound = diffcodec.bits_per_dim(imgs, "tiny", steps=",".join(map(str, fit["steps"])))
    assert bound["num_steps"] == 5 and np.isfinite(bound["total_bpd"])
    with pytest.raises(diffcodec.UserError, match="at least 2"):
        diffcodec.fit_steps(imgs, "tiny", 1)
    # priced on the same x_t as bpd draws them, the whole chain's estimate is bpd's own bound
    full = diffcodec.bits_per_dim(imgs, "tiny")
    assert fit["estimate"](range(full["num_steps"])) == pytest.approx(full["total_bpd"], rel=1e-6)
    for call in (diffcodec.fit_steps, diffcodec.bits_per_dim):
        with pytest.raises(diffcodec.UserError, match="no images"):
            call([], "tiny")


def test_compressai_layout_both_ways(tiny_store, tiny, idx_dir, tmp_path):
    """Our grayscale JSON carries CompressAI's metric names, and `diffcodec plot` reads a file in
    CompressAI's published layout (psnr-rgb / ms-ssim-rgb only)."""
    runner = CliRunner()
    r = runner.invoke(main, ["eval", "rd", "--model", "tiny", "--data", str(idx_dir), "--limit", "2",
                             "--codecs", "uq,webp", "--steps", "5", "--anchor", "webp", "-o", str(tmp_path / "rd")])
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "rd" / "uq.json").read_text())
    ours = doc["results"]
    # what compressai.utils.plot reads: results["bpp"] against results["psnr-rgb"], here against the
    # files the curve lists, sized and decoded here, and the two test images idx_dir holds
    bpp, psnrs = curve_from_files(doc, synthetic_images(32, seed=2)[:2], tiny)
    assert len(ours["bpp"]) == 4 and ours["bpp"] == pytest.approx(bpp, rel=1e-12)
    assert ours["psnr-rgb"] == pytest.approx(psnrs, abs=1e-9)
    theirs = {"name": "bmshj2018-factorized", "description": "CompressAI published results",
              "results": {"psnr-rgb": [27.1, 29.8, 32.4], "ms-ssim-rgb": [0.91, 0.94, 0.96],
                          "bpp": [0.12, 0.25, 0.45], "encoding_time": [0.1] * 3, "decoding_time": [0.1] * 3}}
    (tmp_path / "theirs.json").write_text(json.dumps(theirs))
    for metric in ("psnr", "ms-ssim"):
        out = tmp_path / f"{metric}.png"
        r = runner.invoke(main, ["plot", str(tmp_path / "theirs.json"), str(tmp_path / "rd" / "uq.json"),
                                 "-o", str(out), "--metric", metric])
        assert r.exit_code == 0, r.output
        assert out.stat().st_size > 1000


def test_batch_coding_with_one_bad_file(tiny_store, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k, im in enumerate(synthetic_images(2, size=8, seed=6)):
        save_png(src / f"im{k}.png", im[None])
    (src / "broken.png").write_text("not an image")
    runner = CliRunner()
    r = runner.invoke(main, ["encode", str(src), "-o", str(tmp_path / "out"), "--model", "tiny",
                             "--backend", "uq", "--steps", "5"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "broken.png: error:" in r.output and "1 of 3 files failed" in r.output
    assert "2 files," in r.output and "mean PSNR" in r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["im0.dfc", "im1.dfc"]
    (tmp_path / "out" / "junk.dfc").write_bytes(b"nonsense")
    r = runner.invoke(main, ["decode", str(tmp_path / "out"), "-o", str(tmp_path / "dec")])
    assert r.exit_code == 1 and "junk.dfc: error: not a diffcodec" in r.output
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == ["im0.png", "im1.png"]
    # a second run refuses to overwrite without --force, file by file
    r = runner.invoke(main, ["decode", str(tmp_path / "out" / "im0.dfc"), str(tmp_path / "out" / "im1.dfc"),
                             "-o", str(tmp_path / "dec")])
    assert r.exit_code == 1 and "exists" in r.output
    # two inputs with one name get distinct outputs
    other = tmp_path / "other"
    other.mkdir()
    save_png(other / "im0.png", synthetic_images(1, size=8, seed=7)[0][None])
    r = runner.invoke(main, ["encode", str(src / "im0.png"), str(other / "im0.png"), "-o", str(tmp_path / "two"),
                             "--model", "tiny", "--backend", "uq", "--steps", "5"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["im0-2.dfc", "im0.dfc"]


def test_readme_python_example_runs(monkeypatch):
    """The README's Python API example, run as written from the repository root."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(root)
    monkeypatch.delenv("DIFFCODEC_MODELS", raising=False)
    exec(compile(code, "README.md", "exec"), {})


def test_rd_refuses_an_unavailable_baseline_before_coding(tiny_store, idx_dir, tmp_path, monkeypatch):
    """A baseline this machine cannot run ends `eval rd` with a one-line error before any image is
    coded, not after the codecs listed before it have run."""
    from diffcodec.evaluation import baselines

    monkeypatch.setattr(baselines, "available", lambda codec: codec != "jxl")
    out = tmp_path / "rd"
    r = CliRunner().invoke(main, ["eval", "rd", "--model", "tiny", "--data", str(idx_dir), "--limit", "1",
                                  "--codecs", "uq,jxl", "--steps", "5", "-o", str(out)])
    assert r.exit_code != 0 and "codec jxl is not available here" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not (out / "files" / "uq").exists()
