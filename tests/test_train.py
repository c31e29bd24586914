import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from diffcodec.evaluation.bpd import evaluate_bpd
from diffcodec.training.checkpoint import load_checkpoint
from diffcodec.training.config import ConfigError, load_config
from diffcodec.io.datasets import DataConfig, load_split
from diffcodec.io.pixels import to_model_tensor
from diffcodec.training.loop import train
from diffcodec.training.store import load_model
from diffcodec.nets.unet import transplant


def test_checkpoint_carries_config_and_loads_safely(tiny_checkpoint):
    state = load_checkpoint(tiny_checkpoint)
    assert state["step"] == 60
    assert state["config"]["diffusion"]["var_type"] == "learned_range"
    assert state["config"]["model"]["learn_sigma"] is True
    log = [json.loads(line) for line in open(tiny_checkpoint.parent / "train_log.jsonl")]
    assert log[-1]["step"] == 60 and all(np.isfinite(r["loss"]) for r in log)


def test_bound_is_finite_and_decreases_with_training(tiny_config, idx_dir, tmp_path):
    cfg = load_config(tiny_config, [f'data.path="{idx_dir}"'])
    test = load_split(DataConfig(path=str(idx_dir)), "test")[:16]
    results = []
    for steps in (1, 150):
        ckpt = train(cfg, tmp_path, resume=True, max_steps=steps, progress=False)
        res = evaluate_bpd(load_model(str(ckpt), "cpu"), test, steps="10", seed=0)
        assert np.isfinite(res["total_bpd"])
        results.append(res["total_bpd"])
    assert results[1] < results[0] - 0.5, results


def test_resume_continues_from_the_stored_step(tiny_config, idx_dir, tmp_path):
    cfg = load_config(tiny_config, [f'data.path="{idx_dir}"'])
    train(cfg, tmp_path, max_steps=5, progress=False)
    ckpt = train(cfg, tmp_path, resume=True, max_steps=8, progress=False)
    assert load_checkpoint(ckpt)["step"] == 8
    steps = [json.loads(line)["step"] for line in open(tmp_path / "train_log.jsonl")]
    assert steps == sorted(steps)


def test_config_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[model]\nbase_channels = [")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(p)
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config(None, ["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="learned_range"):
        load_config(None, ['diffusion.var_type="learned_range"'])
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_distributed_data_parallel_two_cpu_processes(tiny_config, idx_dir, tmp_path):
    """torchrun with 2 CPU processes (gloo): ranks stay in sync and rank 0 checkpoints."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "diffcodec", "train", "--config", str(tiny_config), "--data", str(idx_dir),
           "--out", str(tmp_path), "--max-steps", "6"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "x2" in r.stdout  # world size reported
    # every gradient has its DDP bucket's layout (the attention projection once got a
    # channels-last weight gradient, and DDP warned on every run)
    assert "Grad strides do not match" not in r.stderr
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 6
    # DDP keeps replicas identical, so rank 0's weights are the synchronised model
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_model_store_refuses_tampered_weights(tiny_checkpoint, tmp_path, monkeypatch):
    from diffcodec.training.checkpoint import ModelError, export_model
    from diffcodec.training.store import read_index, register_model

    state = load_checkpoint(tiny_checkpoint)
    export_model(state["ema"], state["config"], tmp_path / "m", {"train_steps": state["step"]})
    register_model("m", tmp_path, "test")
    monkeypatch.setenv("DIFFCODEC_MODELS", str(tmp_path))
    assert load_model("m", "cpu").sha256 == read_index(tmp_path)["m"]["sha256"]
    weights = tmp_path / "m" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the index"):
        load_model("m", "cpu")


def test_learning_rate_warms_up_holds_then_falls_to_zero_at_the_end():
    from diffcodec.training.config import TrainConfig
    from diffcodec.training.loop import learning_rate
    tc = TrainConfig(lr=1e-3, warmup_steps=10, decay_from=100)
    assert learning_rate(tc, 0, 200) == pytest.approx(1e-4)
    assert learning_rate(tc, 50, 200) == pytest.approx(1e-3)
    assert learning_rate(tc, 150, 200) == pytest.approx(0.5e-3)
    assert learning_rate(tc, 199, 200) == pytest.approx(1e-3 / 100)
    # a resumed run whose Adam state is fresh warms up again from where it starts
    assert learning_rate(tc, 150, 200, warm_from=150) == pytest.approx(1e-4 * 0.5)
    assert learning_rate(TrainConfig(lr=1e-3, warmup_steps=1), 150, 200) == pytest.approx(1e-3)


def test_a_smaller_student_learns_its_teacher(tiny_config, idx_dir, tiny_store, tiny, tmp_path):
    """--init with a network of fewer blocks starts from the teacher's tensors (transplant);
    train.teacher makes the loss the distance to the teacher's outputs: a student trained so ends
    nearer the teacher than one trained the same way on the data's noise."""
    x0 = to_model_tensor(load_split(DataConfig(path=str(idx_dir)), "test")[:16, :8, :8])
    g = torch.Generator().manual_seed(0)
    t, noise = torch.randint(0, 40, (16,), generator=g), torch.randn(x0.shape, generator=g)
    d = tiny.diffusion(None)
    assert d.distillation_losses(tiny.net, tiny.net, x0, t, noise).abs().max() == 0
    distance = {}
    for teacher in ("tiny", ""):
        cfg = load_config(tiny_config, [f'data.path="{idx_dir}"', "model.num_res_blocks=[0, 1]",
                                        f'train.teacher="{teacher}"', "train.warmup_steps=1"])
        ckpt = train(cfg, tmp_path / (teacher or "plain"), max_steps=40, progress=False, init="tiny")
        state = load_checkpoint(ckpt)
        assert state["step"] == 40 and state["config"]["model"]["num_res_blocks"] == [0, 1]
        with torch.no_grad():
            distance[teacher] = d.distillation_losses(load_model(str(ckpt), "cpu").net, tiny.net, x0, t,
                                                      noise).mean().item()
    start = type(tiny.net)(load_model(str(ckpt), "cpu").net.config)
    assert transplant(start, tiny.net) == []
    with torch.no_grad():
        distance["start"] = d.distillation_losses(start, tiny.net, x0, t, noise).mean().item()
    assert distance["tiny"] < 0.5 * distance["start"] and distance["tiny"] < 0.5 * distance[""], distance
    # the run starts from the transplanted weights: a run of no steps stores them
    state = load_checkpoint(train(cfg, tmp_path / "zero", max_steps=0, progress=False, init="tiny"))
    assert state["step"] == 0
    assert all(torch.equal(state["model"][k], v) for k, v in start.state_dict().items())
    # any other difference from the model's network is refused
    other = load_config(tiny_config, [f'data.path="{idx_dir}"', "model.base_channels=4"])
    with pytest.raises(ConfigError, match="more than num_res_blocks"):
        train(other, tmp_path / "other", max_steps=1, progress=False, init="tiny")
