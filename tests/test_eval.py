"""Every evaluation command on a tiny model, checking the JSON it writes."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from diffcodec.evaluation.metrics import bd_psnr, bd_rate, ms_ssim
from diffcodec_cli import main


def invoke(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def test_table4_command(tiny_store, idx_dir, tmp_path):
    """The CLI writes the library's table (its rates are checked against an independent derivation
    in test_reference_bound.py) and Figure 5."""
    from diffcodec.evaluation.table4 import table4
    from diffcodec.io.datasets import find_idx, read_idx_images
    from diffcodec.training.store import load_model

    invoke("eval", "table4", "--model", "tiny", "--data", idx_dir, "--limit", "6",
           "--json", tmp_path / "t4.json", "--plot", tmp_path / "fig5.png")
    doc = json.loads((tmp_path / "t4.json").read_text())
    direct = table4(load_model("tiny"), read_idx_images(find_idx(idx_dir, "test"))[:6])
    assert doc["rows"] == pytest.approx(direct["rows"]) and doc["T"] == 40
    assert (tmp_path / "fig5.png").stat().st_size > 1000


def test_bitsback_command(tiny_store, idx_dir, tmp_path):
    r = invoke("eval", "bitsback", "--model", "tiny", "--data", idx_dir, "--limit", "3", "--steps", "5",
               "--json", tmp_path / "bb.json")
    assert "decoded exactly" in r.output
    doc = json.loads((tmp_path / "bb.json").read_text())
    assert doc["images"] == 3
    # the bound it reports is the chain's, re-derived independently on the same images and noise
    from reference_bound import bound_terms
    from diffcodec.core.schedules import space_timesteps
    from diffcodec.io.datasets import find_idx, read_idx_images
    from diffcodec.training.store import load_model

    L_T, terms = bound_terms(load_model("tiny").net, read_idx_images(find_idx(idx_dir, "test"))[:3], 40, space_timesteps(40, "5"))
    np.testing.assert_allclose(doc["per_image_bound_bpd"], L_T + terms.sum(1), atol=1e-4)
    bad = CliRunner().invoke(main, ["eval", "bitsback", "--model", "tiny", "--data", str(idx_dir),
                                    "--steps", "quad99"])
    assert bad.exit_code != 0 and "Traceback" not in bad.output and "step spec" in bad.output


def test_rd_json_bytes_match_files(tiny_store, idx_dir, tmp_path):
    out = tmp_path / "rd"
    invoke("eval", "rd", "--model", "tiny", "--data", idx_dir, "--limit", "3",
           "--codecs", "ideal,uq,rcc,jpeg,webp,avif,jpeg2000", "--steps", "6", "--anchor", "webp", "-o", out)
    for name in ("uq", "rcc", "jpeg", "webp", "avif", "jpeg2000"):
        doc = json.loads((out / f"{name}.json").read_text())
        assert set(doc) >= {"name", "description", "results", "per_image"}
        res = doc["results"]
        assert len(res["bpp"]) == len(res["psnr"]) == len(res["bytes"]) == len(res["encoding_time"])
        for row in doc["per_image"]:
            assert Path(row["file"]).stat().st_size == row["bytes"]
        sizes = {}
        for row in doc["per_image"]:
            sizes.setdefault(row["point"], []).append(row["bytes"])
        for k, b in zip(res["points"], res["bytes"]):
            assert b == pytest.approx(np.mean(sizes[k]))
    assert json.loads((out / "webp.json").read_text())["bd"]["bd_rate_percent"] == pytest.approx(0, abs=1e-9)
    ideal = json.loads((out / "ideal.json").read_text())
    assert "bytes" not in ideal["results"]
    rcc = json.loads((out / "rcc.json").read_text())
    assert rcc["results"]["points"] == [1, 2, 3, 4, 5]        # every stop of the 6-step chain
    chain = rcc["chain"]
    # the payload against an independent computation: the KL of the coded path under p_theta
    assert chain["images"] == 3 and 0.9 < chain["payload_over_kl_model"] < 3
    assert 0.95 < chain["payload_over_info"] < 1.2
    stages = rcc["bd_vs_ideal"]["stages_bd_rate_percent"]
    assert set(stages) == {"chain_kl", "symbols", "file"}
    summary = json.loads((out / "summary.json").read_text())
    assert [r["codec"] for r in summary][:3] == ["ideal", "uq", "rcc"]
    # --keep: re-run one codec and compare it with the curves already there
    invoke("eval", "rd", "--model", "tiny", "--data", idx_dir, "--limit", "3", "--codecs", "uq",
           "--steps", "6", "--anchor", "webp", "--keep", "-o", out)
    summary = {r["codec"]: r for r in json.loads((out / "summary.json").read_text())}
    assert set(summary) == {"ideal", "uq", "rcc", "jpeg", "webp", "avif", "jpeg2000"}
    assert summary["uq"]["bd_rate_vs_ideal"] is not None and summary["uq"]["anchor"] == "webp"
    bad = CliRunner().invoke(main, ["eval", "rd", "--model", "tiny", "--data", str(idx_dir), "--limit", "2",
                                    "--codecs", "uq", "--steps", "6", "--keep", "-o", str(out)])
    assert bad.exit_code == 1 and "not 2" in bad.output
    invoke("plot", out / "uq.json", out / "jpeg.json", "-o", tmp_path / "p.png", "--x", "bpd")
    invoke("plot", out / "uq.json", "-o", tmp_path / "q.png", "--metric", "rmse")


def test_progressive_figures(tiny_store, tmp_path):
    invoke("eval", "progressive", "--model", "tiny", "-o", tmp_path / "f6.png", "-n", "3", "--frames", "4")
    invoke("eval", "progressive", "--model", "tiny", "-o", tmp_path / "f7.png", "--shared-xt", "-n", "3")
    from PIL import Image
    assert Image.open(tmp_path / "f6.png").size[0] > Image.open(tmp_path / "f6.png").size[1]
    assert Image.open(tmp_path / "f7.png").size[1] > 8


def test_bd_rate_over_a_psnr_range():
    """Restricting BD-rate to a PSNR range measures the gap there: a test curve that costs twice the
    anchor below 25 dB and the same above 35 dB gives +100% over 20-25 dB and 0% over 35-45 dB."""
    q = np.linspace(15, 45, 61)
    anchor = 2.0 ** (q / 6)
    test = anchor * 2.0 ** np.clip((35 - q) / 10, 0, 1)
    assert bd_rate(anchor, q, test, q, (20, 25)) == pytest.approx(100, abs=0.5)   # PCHIP near the kink
    assert bd_rate(anchor, q, test, q, (35, 45)) == pytest.approx(0, abs=0.5)
    assert 0 < bd_rate(anchor, q, test, q, (20, 45)) < 100
    assert bd_rate(anchor, q, test, q, (50, 60)) is None


def test_bd_of_a_curve_against_itself_is_zero():
    rate, q = [0.5, 1.0, 2.0, 4.0], [28.0, 31.0, 34.5, 38.0]
    assert bd_rate(rate, q, rate, q) == pytest.approx(0, abs=1e-9)
    assert bd_psnr(rate, q, rate, q) == pytest.approx(0, abs=1e-9)
    # half the rate at every quality is a 50% saving
    assert bd_rate(rate, q, [r / 2 for r in rate], q) == pytest.approx(-50, abs=1e-6)
    assert bd_psnr(rate, q, rate, [v + 1 for v in q]) == pytest.approx(1, abs=1e-9)


def test_ms_ssim():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 170, 180), dtype=np.uint8)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert 0 < ms_ssim(a, noisy) < 1
    assert ms_ssim(a[:, :100, :100], a[:, :100, :100]) is None


def test_plot_rejects_bad_json(tmp_path):
    (tmp_path / "x.json").write_text("[1, 2]")
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "x.json"), "-o", str(tmp_path / "o.png")])
    assert r.exit_code == 1 and "not a rate-distortion JSON" in r.output


def test_table4_sharded_over_two_processes_matches_one(tiny_store, idx_dir, tmp_path):
    import os
    import subprocess
    import sys

    invoke("eval", "table4", "--model", "tiny", "--data", idx_dir, "--limit", "5", "--batch-size", "2",
           "--json", tmp_path / "one.json")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "diffcodec", "eval", "table4", "--model", "tiny", "--data", str(idx_dir),
                        "--limit", "5", "--batch-size", "2", "--json", str(tmp_path / "two.json")],
                       env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    for a, b in zip(one["rows"], two["rows"]):
        assert a["rate_bpd"] == pytest.approx(b["rate_bpd"], rel=1e-5)
        assert a["rmse"] == pytest.approx(b["rmse"], rel=1e-5)


def test_rd_sharded_over_two_processes_matches_one(tiny_store, idx_dir, tmp_path):
    import os
    import subprocess
    import sys

    args = ["eval", "rd", "--model", "tiny", "--data", str(idx_dir), "--limit", "3", "--codecs", "uq,webp",
            "--steps", "5", "--anchor", "webp"]
    invoke(*args, "-o", tmp_path / "one")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "diffcodec", *args, "-o", str(tmp_path / "two")],
                       env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("uq", "webp"):
        one, two = (json.loads((tmp_path / d / f"{name}.json").read_text())["results"] for d in ("one", "two"))
        assert one["bytes"] == two["bytes"]
        assert one["psnr"] == pytest.approx(two["psnr"])
