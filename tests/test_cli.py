"""The command line, through click's CliRunner, including bad input."""
import re
import json

import numpy as np
import pytest
from click.testing import CliRunner

from diffcodec_cli import main
from diffcodec.io.images import save_png
from conftest import synthetic_images


@pytest.fixture
def run(tiny_store):
    runner = CliRunner()

    def _run(*args, ok=True):
        r = runner.invoke(main, [str(a) for a in args])
        if ok:
            assert r.exit_code == 0, r.output
        else:
            assert r.exit_code != 0
            assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
            assert "Traceback" not in r.output
            lines = [line for line in r.output.strip().splitlines() if line.startswith("Error")]
            assert len(lines) == 1, r.output
        return r
    return _run


@pytest.fixture
def gray_png(tmp_path):
    p = tmp_path / "g.png"
    save_png(p, synthetic_images(1, size=8, seed=9)[0][None])
    return p


def test_version_and_models_list(run):
    assert "diffcodec" in run("--version").output
    doc = json.loads(run("models", "list", "--json").output)
    assert set(doc["models"]) == {"tiny", "tinyrgb"}
    assert "tiny" in run("models", "list").output


def test_encode_info_decode(run, gray_png, tmp_path):
    out = tmp_path / "g.dfc"
    r = run("encode", gray_png, "-o", out, "--model", "tiny", "--steps", "6", "--lossless")
    assert "bits/pixel" in r.output and "decoder PSNR lossless" in r.output
    info = json.loads(run("info", out, "--json").output)
    assert info["bytes"] == out.stat().st_size
    assert info["layers"][-1]["cumulative_bytes"] == out.stat().st_size
    assert info["model"] == "tiny" and info["lossless_layer"]
    # 8x8 is tiny's training crop: the file stores no size, info and decode take the model's
    assert info["native"] and (info["height"], info["width"]) == (8, 8)
    assert info["layers"][-1]["cumulative_bpp"] == pytest.approx(8 * out.stat().st_size / 64)
    rec = tmp_path / "r.png"
    r = run("decode", out, "-o", rec)
    assert "lossless" in r.output
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(rec)), np.asarray(Image.open(gray_png)))
    # a truncated file decodes what it holds and says so
    cut = tmp_path / "cut.dfc"
    cut.write_bytes(out.read_bytes()[:-5])
    r = run("decode", cut, "-o", tmp_path / "c.png")
    assert "truncated" in r.output and "used" in r.output
    assert "TRUNCATED" in run("info", cut).output
    # cut inside its first layer, a file of several layers holds none
    assert len(info["layers"]) > 1
    head = tmp_path / "head.dfc"
    head.write_bytes(out.read_bytes()[:info["header_bytes"] + 1])
    assert "no complete layer" in run("decode", head, "-o", tmp_path / "h.png", ok=False).output
    run("decode", out, "-o", tmp_path / "l1.png", "--layers", "1", "--reconstruct", "flow")


def test_rcc_and_rgb(run, tmp_path):
    p = tmp_path / "c.png"
    save_png(p, np.random.default_rng(0).integers(0, 256, (3, 9, 11), dtype=np.uint8))
    r = run("encode", p, "-o", tmp_path / "c.dfc", "--model", "tinyrgb", "--backend", "rcc", "--steps", "6")
    claimed = float(re.search(r"decoder PSNR ([0-9.]+) dB", r.output).group(1))
    run("decode", tmp_path / "c.dfc", "-o", tmp_path / "c2.png")
    from PIL import Image
    back = Image.open(tmp_path / "c2.png")
    assert back.mode == "RGB" and back.size == (11, 9)
    # the PSNR the encoder promised, recomputed here from the decoded file
    mse = np.mean((np.asarray(back).astype(float) - np.asarray(Image.open(p)).astype(float)) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) == pytest.approx(claimed, abs=0.01)


def test_bad_inputs(run, gray_png, tmp_path):
    out = tmp_path / "g.dfc"
    run("encode", gray_png, "-o", out, "--model", "tiny", "--steps", "4")
    e = lambda *a: run(*a, ok=False).output  # noqa: E731
    assert "exists" in e("encode", gray_png, "-o", out, "--model", "tiny")
    assert "no such file" in e("encode", tmp_path / "none.png", "-o", tmp_path / "x.dfc", "--model", "tiny")
    (tmp_path / "text.png").write_text("hello")
    assert "not an image" in e("encode", tmp_path / "text.png", "-o", tmp_path / "x.dfc", "--model", "tiny")
    rgb = tmp_path / "rgb.png"
    save_png(rgb, np.zeros((3, 8, 8), np.uint8))
    assert "RGB" in e("encode", rgb, "-o", tmp_path / "x.dfc", "--model", "tiny")
    assert "global attention" in e("encode", _png(tmp_path, 12), "-o",
                                   tmp_path / "x.dfc", "--model", "tiny")
    assert "no model named" in e("encode", gray_png, "-o", tmp_path / "x.dfc", "--model", "nope")
    assert "bad step spec" in e("encode", gray_png, "-o", tmp_path / "x.dfc", "--model", "tiny", "--steps", "zz")
    assert "no lossy step" in e("encode", gray_png, "-o", tmp_path / "x.dfc", "--model", "tiny", "--steps", "1")
    assert "only one of" in e("encode", gray_png, "-o", tmp_path / "x.dfc", "--model", "tiny", "--psnr", "30", "--bpp", "1")
    assert "not a diffcodec" in e("decode", gray_png, "-o", tmp_path / "y.png")
    assert "name the output .png, not y.jpg" in e("decode", out, "-o", tmp_path / "y.jpg")
    assert "no such file" in e("decode", tmp_path / "none.dfc", "-o", tmp_path / "y.png")
    assert "no such file" in e("info", tmp_path / "none.dfc")
    bad = bytearray(out.read_bytes())
    bad[-1] ^= 0xFF
    (tmp_path / "bad.dfc").write_bytes(bytes(bad))
    assert "corrupt" in e("decode", tmp_path / "bad.dfc", "-o", tmp_path / "y.png")
    info = json.loads(run("info", out, "--json").output)
    (tmp_path / "head.dfc").write_bytes(out.read_bytes()[:info["header_bytes"] + 1])
    # a one-layer file (no stored layer length): this cut fails the checksum
    assert "cut short" in e("decode", tmp_path / "head.dfc", "-o", tmp_path / "y.png")
    assert "made with model 'tiny', not with model 'tinyrgb'" in e("decode", out, "-o", tmp_path / "y.png", "--model", "tinyrgb")
    assert "version 12" in e("decode", _with_version(out, tmp_path, 12), "-o", tmp_path / "y.png")
    assert not (tmp_path / "y.png").exists()
    assert "overwrite the input" in e("encode", gray_png, "-o", gray_png, "--model", "tiny", "--force")
    assert "cannot be reached" in e("encode", gray_png, "-o", tmp_path / "p.dfc", "--model", "tiny", "--psnr", "200")
    assert "fits no coded step" in e("encode", gray_png, "-o", tmp_path / "p.dfc", "--model", "tiny", "--bpp", "0.01")
    assert not (tmp_path / "p.dfc").exists()


def test_system_errors_and_odd_outputs(run, gray_png, tmp_path):
    """What the system refuses (an output under a file, a checkpoint that is no checkpoint) and
    values out of range (nan, a seed past 2^62, a size the network cannot halve) are one-line errors; decode never writes over its input; a device is written to, not replaced."""
    import os
    import stat

    out = tmp_path / "g.dfc"
    run("encode", gray_png, "-o", out, "--model", "tiny", "--steps", "4")
    e = lambda *a: run(*a, ok=False).output  # noqa: E731
    kept = out.read_bytes()
    assert "overwrite the input" in e("decode", out, "-o", out, "--force")
    assert out.read_bytes() == kept
    assert "Not a directory" in e("decode", out, "-o", gray_png / "y.png")
    assert "Not a directory" in e("encode", gray_png, "-o", gray_png / "y.dfc", "--model", "tiny")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "not a diffcodec checkpoint" in e("encode", gray_png, "-o", tmp_path / "x.dfc", "--model", tmp_path / "empty.pt")
    assert "not a diffcodec checkpoint" in e("encode", gray_png, "-o", tmp_path / "x.dfc", "--model", gray_png)
    assert "not a finite number" in e("encode", gray_png, "-o", tmp_path / "x.dfc", "--model", "tiny", "--bpp", "nan")
    assert "not a finite number" in e("encode", gray_png, "-o", tmp_path / "x.dfc", "--model", "tiny", "--psnr", "nan")
    assert "no codecs given" in e("eval", "rd", "--model", "tiny", "--data", gray_png, "--codecs", ",", "-o", tmp_path / "rd")
    assert "anchor foo is not among" in e("eval", "rd", "--model", "tiny", "--data", gray_png, "--codecs", "jpeg",
                                          "--anchor", "foo", "-o", tmp_path / "rd")
    assert not (tmp_path / "rd").exists()
    assert "does not exist" in e("eval", "table4", "--model", "tiny", "--data", gray_png, "--json", tmp_path / "no" / "x.json")
    (tmp_path / "none").mkdir()
    assert "no input files" in e("encode", tmp_path / "none", "-o", tmp_path / "outs", "--model", "tiny")
    assert not (tmp_path / "outs").exists()
    assert "at least 2 pixels" in e("sample", "--model", "tinyrgb", "-n", "1", "--size", "0x0", "-o", tmp_path / "s.png")
    assert "--seed" in e("sample", "--model", "tinyrgb", "-n", "1", "--seed", str(2 ** 70), "-o", tmp_path / "s.png")
    assert not (tmp_path / "s.png").exists()
    if os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode):
        run("decode", out, "-o", "/dev/null", "--force")
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def _png(tmp_path, size):
    p = tmp_path / f"s{size}.png"
    save_png(p, np.zeros((1, size, size), np.uint8))
    return p


def _with_version(path, tmp_path, v):
    data = bytearray(path.read_bytes())
    data[0] = 0xD0 | v
    p = tmp_path / "v.dfc"
    p.write_bytes(bytes(data))
    return p


def test_train_sample_bpd(run, tiny_config, idx_dir, tmp_path):
    out = tmp_path / "run"
    run("train", "--config", tiny_config, "--data", idx_dir, "--out", out, "--max-steps", "200")
    ckpt = out / "last.pt"
    run("train", "--config", tiny_config, "--data", idx_dir, "--out", out, "--max-steps", "210", "--resume",
        "--set", "train.snapshot_every_steps=5")
    # EMA snapshots load as models with the run's config (learning curves: eval/learning_curve.py)
    snaps = sorted((out / "snapshots").glob("step_*.safetensors"))
    assert [p.name for p in snaps] == ["step_0000205.safetensors", "step_0000210.safetensors"]
    run("bpd", "--model", snaps[0], "--data", idx_dir, "--limit", "2", "--steps", "5")
    alone = tmp_path / "alone" / "step_0000205.safetensors"
    alone.parent.mkdir()
    alone.write_bytes(snaps[0].read_bytes())
    r = run("bpd", "--model", alone, "--data", idx_dir, "--limit", "2", ok=False)
    assert "no config.json" in r.output and "Traceback" not in r.output
    r = run("sample", "--model", ckpt, "-n", "4", "-o", tmp_path / "s.png", "--steps", "10", "--seed", "1")
    assert (tmp_path / "s.png").exists()
    run("sample", "--model", ckpt, "-n", "2", "-o", tmp_path / "p.png", "--steps", "10", "--progressive", "--frames", "5")
    from PIL import Image
    assert Image.open(tmp_path / "p.png").size[0] > Image.open(tmp_path / "p.png").size[1]
    r = run("bpd", "--model", ckpt, "--data", idx_dir, "--limit", "8", "--steps", "10", "--json", tmp_path / "b.json")
    doc = json.loads((tmp_path / "b.json").read_text())
    assert "L_0" in r.output and doc["images"] == 8 and len(doc["per_image_bpd"]) == 8
    run("models", "export", ckpt, "--name", "mine", "--models-dir", tmp_path / "store")
    assert (tmp_path / "store" / "index.json").exists()
    run("bpd", "--model", tmp_path / "store" / "mine", "--data", idx_dir, "--limit", "4", "--steps", "5")


def test_cli_errors_for_training_and_bpd(run, tiny_config, tmp_path):
    e = lambda *a: run(*a, ok=False).output  # noqa: E731
    assert "does not exist" in e("train", "--config", tiny_config, "--data", tmp_path / "missing", "--out", tmp_path / "o")
    assert "cannot read config" in e("train", "--config", tmp_path / "none.toml")
    assert "does not exist" in e("bpd", "--model", "tiny", "--data", tmp_path / "missing")
    assert "exists" in e("sample", "--model", "tiny", "-o", tiny_config)


def test_fit_steps_and_step_files(run, tiny, idx_dir, tmp_path):
    """fit-steps writes the chain fitted on the first --limit training images: the chain and the
    estimate it prints are the library's on those images (the first 16 of idx_dir's training file,
    made here), which the test split's 16 would not give; on the test images `bpd --steps @FILE`
    measures it below the evenly spaced chain of the same length."""
    import diffcodec

    out = tmp_path / "six.txt"
    r = run("fit-steps", "--model", "tiny", "--data", idx_dir, "--limit", "16", "-n", "6", "-o", out)
    kept = [int(v) for v in out.read_text().strip().split(",")]
    assert len(kept) == 6 and kept[0] == 0 and kept[-1] == 39 and kept == sorted(set(kept))
    train, test = synthetic_images(256, seed=1)[:16], synthetic_images(32, seed=2)[:16]
    want = diffcodec.fit_steps(train, tiny, 6)
    other = diffcodec.fit_steps(test, tiny, 6)["bpd"]
    assert kept == want["steps"]
    fitted = float(re.search(r"fitted +([0-9.]+) bits/dim", r.output).group(1))
    assert fitted == pytest.approx(want["bpd"], abs=6e-5) and abs(other - want["bpd"]) > 1e-3
    assert "quad6" in r.output

    def bound(spec):
        res = run("bpd", "--model", "tiny", "--data", idx_dir, "--limit", "16", "--steps", spec,
                  "--json", tmp_path / "b.json", "--seed", "1")
        assert "6 steps" in res.output
        return json.loads((tmp_path / "b.json").read_text())["total_bpd"]

    fitted, even = bound(f"@{out}"), bound("6")
    assert fitted < even
    assert "exists" in run("fit-steps", "--model", "tiny", "--data", idx_dir, "-n", "6", "-o", out, ok=False).output
    bad = tmp_path / "bad.txt"
    bad.write_text("0,five,39")
    for spec in (f"@{tmp_path / 'missing.txt'}", f"@{bad}"):
        r = run("bpd", "--model", "tiny", "--data", idx_dir, "--limit", "2", "--steps", spec, ok=False)
        assert "step list" in r.output or "list of steps" in r.output
    bad.write_text("0,5,999")   # a list, but beyond tiny's 40 steps
    assert "bad step spec" in run("bpd", "--model", "tiny", "--data", idx_dir, "--steps", f"@{bad}", ok=False).output
    r = run("fit-steps", "--model", "tiny", "--data", idx_dir, "-n", "41", "-o", tmp_path / "x.txt", ok=False)
    assert "more than" in r.output


def test_a_closed_output_pipe_ends_quietly():
    """`diffcodec info FILE | head -1`: output written after the reader has gone ends the command
    with status 0 and nothing on stderr, not "Error: Broken pipe"."""
    import subprocess
    import sys
    from pathlib import Path

    import os

    dfc = Path(__file__).resolve().parents[1] / "eval/results/example_photo.dfc"
    env = {k: v for k, v in os.environ.items() if k != "DIFFCODEC_MODELS"}     # the shipped models
    p = subprocess.Popen([sys.executable, "-m", "diffcodec", "info", str(dfc)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    p.stdout.close()        # before the command has written anything
    err = p.stderr.read()
    assert p.wait() == 0 and err == b"", err
