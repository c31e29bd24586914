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
    assert doc["T"] == 40 and len(doc["rows"]) == len(direct["rows"]) == 10
    for got, want in zip(doc["rows"], direct["rows"]):   # pytest.approx takes no list of dicts
        assert set(got) == set(want) == {"steps", "rate_bpd", "rmse"}
        assert got["steps"] == want["steps"]
        assert got["rate_bpd"] == pytest.approx(want["rate_bpd"]) and got["rmse"] == pytest.approx(want["rmse"])
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
    # the keys and a sanity range here; the values are held to the reference KL of the coded path in
    # test_reference_bound.py (test_rd_chain_payload_against_the_kl_of_its_coded_path, test_rd_stages_...)
    assert chain["images"] == 3 and 0.9 < chain["payload_over_kl_model"] < 3
    assert 0.95 < chain["payload_over_info"] < 1.2
    stages = rcc["bd_vs_ideal"]["stages_bd_rate_percent"]
    assert set(stages) == {"chain_kl", "symbols", "file"}
    summary = json.loads((out / "summary.json").read_text())
    assert [r["codec"] for r in summary][:3] == ["ideal", "uq", "rcc"]
    _check_rd_reports(out, summary, "webp")
    # a .dfc file's fixed bytes: the header of the one-layer file after the first step
    from diffcodec.container.format import Container
    from diffcodec.training.store import load_model

    keys = load_model("tiny").keys
    first = Container.from_bytes((out / "files" / "rcc" / "img00000_k1.dfc").read_bytes(), keys)
    assert len(first.layers) == 1
    assert rcc["coding_only"]["fixed_bytes"] == [first.header_size()] * len(rcc["coding_only"]["bpp"])
    assert rcc["coding_only"]["method"].startswith("the .dfc header of a one-layer file")
    ideal_doc = json.loads((out / "ideal.json").read_text())
    assert ideal_doc["coding_only"]["bpp"] == ideal_doc["results"]["bpp"]
    # a kept curve written before coding-only curves existed gets its own from the container format
    old_rcc = dict(rcc)
    del old_rcc["coding_only"], old_rcc["steps"]
    (out / "rcc.json").write_text(json.dumps(old_rcc))
    # --keep: re-run one codec and compare it with the curves already there
    invoke("eval", "rd", "--model", "tiny", "--data", idx_dir, "--limit", "3", "--codecs", "uq",
           "--steps", "6", "--anchor", "webp", "--keep", "-o", out)
    summary = {r["codec"]: r for r in json.loads((out / "summary.json").read_text())}
    assert set(summary) == {"ideal", "uq", "rcc", "jpeg", "webp", "avif", "jpeg2000"}
    assert summary["uq"]["bd_rate_vs_ideal"] is not None and summary["uq"]["anchor"] == "webp"
    assert json.loads((out / "rcc.json").read_text())["coding_only"] == rcc["coding_only"]
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


def _check_rd_reports(out, summary, anchor):
    """What `eval rd` writes beside the curves: the settings of each baseline, each BD-rate's PSNR
    overlap (whole files and coding only), the Pareto front of pooled variants, the table."""
    from diffcodec.evaluation import baselines
    from diffcodec.evaluation.metrics import BD_RANGE_DB, psnr_overlap

    docs = {r["codec"]: json.loads((out / f"{r['codec']}.json").read_text()) for r in summary}
    a = docs[anchor]
    for name, doc in docs.items():
        bd = doc["bd"]
        # the overlap is the PSNR range both curves reach within 20-50 dB, reported with the number
        lo, hi = psnr_overlap(a["results"]["bpp"], a["results"]["psnr"], doc["results"]["bpp"],
                              doc["results"]["psnr"], BD_RANGE_DB)
        assert bd["overlap_db"] == bd["psnr_range_db"] == [lo, hi]
        assert max(min(a["results"]["psnr"]), min(doc["results"]["psnr"]), 20) == pytest.approx(lo)
        assert (bd["bd_rate_percent"] is None) == bd["short_overlap"] == (hi - lo < 8)
        co = bd["coding_only"]
        assert co is not None and co["overlap_db"] is not None
        row = next(r for r in summary if r["codec"] == name)
        assert row["bd_vs_anchor"]["overlap_db"] == [lo, hi]
        assert row["bd_vs_anchor_coding_only"] == co
        if name in baselines.SETTINGS:
            C, H, W = doc["shape"]
            assert doc["settings"]["options"] == baselines.SETTINGS[name]["options"]
            assert len(doc["all_points"]["points"]) == len(baselines.sweep(name, C))
            # fixed bytes: the file of a flat image at that setting; coding only = the rest
            for k, b, f in zip(doc["all_points"]["points"], doc["all_points"]["bpp"], doc["all_points"]["fixed_bytes"]):
                q, v = next((q, v) for key, q, v in baselines.sweep(name, C) if key == k)
                flat = np.full((C, H, W), 128, np.uint8)
                assert f == len(baselines.encode_decode(name, flat, q, v)[0])
                if k in doc["coding_only"]["points"]:
                    i = doc["coding_only"]["points"].index(k)
                    assert doc["coding_only"]["bpp"][i] == pytest.approx(b - 8 * f / (H * W))
            # the curve is the Pareto front of every setting's point: nothing on it is dominated
            pts = list(zip(doc["all_points"]["bpp"], doc["all_points"]["psnr"]))
            for r, q in zip(doc["results"]["bpp"], doc["results"]["psnr"]):
                assert not any((r2 <= r and q2 >= q) and (r2, q2) != (r, q) for r2, q2 in pts)
    table = (out / "table.md").read_text()
    assert "[" in table and "coding only" in table and "optimize=True" in table


def test_pareto_front_drops_dominated_points():
    """The envelope of pooled variants keeps only points no other point beats on rate and PSNR."""
    from diffcodec.evaluation.metrics import pareto_front

    rate = [1.0, 2.0, 2.0, 3.0, 4.0, 0.5, 3.5]
    q = [30.0, 29.0, 32.0, 32.0, 40.0, 25.0, 31.0]
    # (2, 29) is beaten by (1, 30); (3, 32) by (2, 32); (3.5, 31) by (2, 32)
    assert pareto_front(rate, q).tolist() == [5, 0, 2, 4]
    assert pareto_front([1.0, 1.0], [30.0, 30.0]).tolist() == [0]


def test_baseline_curve_is_the_envelope_of_its_variants(tmp_path):
    """RGB JPEG and AVIF run 4:2:0 and 4:4:4 at every quality; the curve is their Pareto front."""
    from diffcodec.evaluation import rd_curves
    from diffcodec.evaluation.metrics import pareto_front

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:32, :32]
    img = np.stack([(xx * 8) % 256, (yy * 8) % 256, ((xx + yy) * 4) % 256]).astype(np.float64)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)[None]
    doc = rd_curves.evaluate_codec("jpeg", img, tmp_path, per_image=False)
    allp = doc["all_points"]
    assert {k.split("-")[0] for k in allp["points"]} == {"420", "444"}
    assert len(allp["points"]) == 2 * len(doc["settings"]["values"]) >= 30
    front = sorted(pareto_front(allp["bpp"], allp["psnr"]).tolist())
    assert doc["results"]["points"] == [allp["points"][i] for i in front]
    assert allp["on_front"] == [i in front for i in range(len(allp["points"]))]
    assert not all(allp["on_front"])      # something was dominated here and was dropped


def test_baselines_run_at_their_documented_best_settings():
    """Every file is the one the library writes with the settings table's options (JPEG with
    optimized Huffman tables, in 4:2:0 and 4:4:4; WebP method 6; AVIF speed 4 in 4:2:0 and 4:4:4;
    JPEG XL effort 7), at 15 or more knob values."""
    import io

    from PIL import Image, JpegImagePlugin

    from diffcodec.evaluation import baselines

    s = baselines.SETTINGS
    assert s["jpeg"]["options"]["optimize"] is True and s["webp"]["options"]["method"] == 6
    assert s["avif"]["options"]["speed"] <= 4 and s["jxl"]["options"]["effort"] == 7
    assert set(baselines.variants("jpeg", 3)) == set(baselines.variants("avif", 3)) == {"420", "444"}
    assert all(len(v["values"]) >= 15 for v in s.values())
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)
    img[:, :24] = 128                       # some flat area, some noise
    pil = Image.fromarray(img.transpose(1, 2, 0))

    def direct(fmt, **kw):
        buf = io.BytesIO()
        pil.save(buf, format=fmt, **kw)
        return buf.getvalue()

    for sub, code in (("420", 2), ("444", 0)):
        data = baselines.encode_decode("jpeg", img, 50, sub)[0]
        assert data == direct("JPEG", quality=50, subsampling=code, optimize=True)
        assert len(data) < len(direct("JPEG", quality=50, subsampling=code))   # default Huffman tables
        assert JpegImagePlugin.get_sampling(Image.open(io.BytesIO(data))) == code
    assert baselines.encode_decode("webp", img, 50)[0] == direct("WEBP", quality=50, method=6)
    for sub in ("4:2:0", "4:4:4"):
        data = baselines.encode_decode("avif", img, 50, sub.replace(":", ""))[0]
        assert data == direct("AVIF", quality=50, speed=4, max_threads=1, subsampling=sub)
    with pytest.raises(Exception, match="no variant"):
        baselines.encode_decode("jpeg", img[:1], 50, "444")


def test_rate_at_psnr_does_not_extrapolate():
    """The rate a curve needs at a PSNR is read between its points, never beyond them."""
    from diffcodec.evaluation.rd_curves import rate_at_psnr

    doc = {"results": {"bpp": [1.0, 2.0, 4.0, 3.0], "psnr": [30.0, 35.0, 40.0, 34.0]}}   # (3, 34) dominated
    assert rate_at_psnr(doc, 25.0) is None        # below the curve's lowest point: no value
    assert rate_at_psnr(doc, 29.99) is None
    assert rate_at_psnr(doc, 40.01) is None
    assert rate_at_psnr(doc, 30.0) == pytest.approx(1.0)
    assert rate_at_psnr(doc, 40.0) == pytest.approx(4.0)
    assert rate_at_psnr(doc, 32.5) == pytest.approx(2 ** 0.5)   # linear in log-rate
    assert rate_at_psnr(doc, 35.0) == pytest.approx(2.0)


def test_bd_rate_reports_its_overlap_and_a_short_one_as_such():
    """A BD-rate carries the PSNR range it was computed over; under 8 dB it is no number."""
    from diffcodec.evaluation import rd_curves
    from diffcodec.evaluation.metrics import bd_rate_report

    q = np.linspace(20, 50, 31)
    anchor = 2.0 ** (q / 6)
    wide = bd_rate_report(anchor, q, anchor / 2, q)
    assert wide["overlap_db"] == [20.0, 50.0] and wide["bd_rate_percent"] == pytest.approx(-50, abs=1e-6)
    part = bd_rate_report(anchor, q, anchor / 2, q, (25, 40))
    assert part["overlap_db"] == [25.0, 40.0] and not part["short_overlap"]
    qs = np.linspace(30, 36, 7)                      # a test curve over 6 dB only
    short = bd_rate_report(anchor, q, 2.0 ** (qs / 6) / 2, qs)
    assert short["overlap_db"] == [30.0, 36.0] and short["short_overlap"]
    assert short["bd_rate_percent"] is None
    assert short["short_overlap_bd_rate_percent"] == pytest.approx(-50, abs=1e-6)
    assert bd_rate_report(anchor, q, [1.0, 2.0], [60.0, 62.0])["overlap_db"] is None
    # as the table shows it: a short overlap is marked, never a bare number
    docs = {"a": {"results": {"bpp": list(anchor), "psnr": list(q)}},
            "b": {"results": {"bpp": list(2.0 ** (qs / 6) / 2), "psnr": list(qs)}}}
    rd_curves.add_bd(docs, "a")
    assert docs["b"]["bd"]["bd_rate_percent"] is None and docs["b"]["bd"]["overlap_db"] == [30.0, 36.0]
    row = next(r for r in rd_curves.summarize(docs) if r["codec"] == "b")
    assert row["bd_rate_vs_anchor"] is None
    assert rd_curves.bd_cell(row["bd_vs_anchor"]) == "short -50.0% [30.0-36.0]"
    assert rd_curves.bd_cell(docs["a"]["bd"]) == "+0.0% [20.0-50.0]"
    line = next(l for l in rd_curves.table_lines(rd_curves.summarize(docs), "a") if l.startswith("b "))
    assert "short -50.0% [30.0-36.0]" in line
