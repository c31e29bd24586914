"""Models in Hugging Face diffusers' format (UNet2DModel + DDPMScheduler, saved with save_pretrained):
the bound against the independent re-derivation fed diffusers' own network, the reverse step
against DDPMScheduler.step, every command on such a model, and one-line refusals. Tiny models
(8x8, T = 20) built with diffusers itself; nothing is downloaded. Skipped without diffusers."""
import json
import shutil
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

diffusers = pytest.importorskip("diffusers")

import diffcodec  # noqa: E402
from conftest import synthetic_images  # noqa: E402
from diffcodec.errors import UserError  # noqa: E402
from diffcodec.evaluation.bpd import evaluate_bpd  # noqa: E402
from diffcodec.training.diffusers_import import is_diffusers_folder  # noqa: E402
from diffcodec_cli import main  # noqa: E402
from reference_bound import bound_terms, cosine_alphas_cumprod  # noqa: E402

T = 20


def tiny_unet(channels=1, learned=False, attention=True, seed=0):
    torch.manual_seed(seed)
    down = ("DownBlock2D", "AttnDownBlock2D") if attention else ("DownBlock2D", "DownBlock2D")
    up = ("AttnUpBlock2D", "UpBlock2D") if attention else ("UpBlock2D", "UpBlock2D")
    return diffusers.UNet2DModel(sample_size=8, in_channels=channels, out_channels=channels * (2 if learned else 1),
                                 block_out_channels=(8, 16), down_block_types=down, up_block_types=up,
                                 layers_per_block=1, norm_num_groups=4, attention_head_dim=8, add_attention=attention)


def save_pipeline(path, unet=None, **scheduler):
    """A DDPMPipeline folder (model_index.json, unet/, scheduler/) as diffusers writes it."""
    unet = unet or tiny_unet(learned=scheduler.get("variance_type") == "learned_range")
    sched = diffusers.DDPMScheduler(num_train_timesteps=T, **scheduler)
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return save_pipeline(tmp_path_factory.mktemp("dd") / "ddpm-tiny")


@pytest.fixture(scope="module")
def images():
    return synthetic_images(4, seed=11)[:, None]        # [4, 1, 8, 8] uint8


def diffusers_net(folder):
    """The network as diffusers itself loads and runs it (no diffcodec code)."""
    unet = diffusers.UNet2DModel.from_pretrained(str(folder / "unet"), use_safetensors=True,
                                                 low_cpu_mem_usage=False).eval()
    return lambda x, t: unet(x, t).sample


CASES = {"linear-fixed_small": ({"beta_schedule": "linear"}, "fixed_small", None),
         "linear-fixed_large-respaced": ({"beta_schedule": "linear", "variance_type": "fixed_large"},
                                         "fixed_large", "6"),
         "cosine-learned_range": ({"beta_schedule": "squaredcos_cap_v2", "variance_type": "learned_range"},
                                  "learned_range", None)}


@pytest.mark.parametrize("case", list(CASES))
def test_bpd_matches_an_independent_derivation(tmp_path, images, case):
    scheduler, var_type, steps = CASES[case]
    folder = save_pipeline(tmp_path / "m", **scheduler)
    model = diffcodec.load_model(str(folder), "cpu")
    res = evaluate_bpd(model, images, steps, seed=3)
    # the schedule written out independently: numpy's float64 linspace, or the reference's cosine
    abar = (cosine_alphas_cumprod(T) if scheduler["beta_schedule"] == "squaredcos_cap_v2"
            else np.cumprod(1 - np.linspace(1e-4, 0.02, T)))
    L_T, terms = bound_terms(diffusers_net(folder), images, T, res["steps_kept"], seed=3,
                             alphas_cumprod=abar, var_type=var_type)
    assert res["total_bpd"] == pytest.approx((L_T + terms.sum(1)).mean(), rel=1e-4)
    np.testing.assert_allclose(res["per_image_bpd"], L_T + terms.sum(1), rtol=1e-4)
    np.testing.assert_allclose(res["vb_bpd"], terms.mean(0), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "trained"])
def test_the_schedule_is_the_schedulers_own(tmp_path, pipe, schedule):
    folder = tmp_path / "m"
    shutil.copytree(pipe, folder)
    kw = ({"trained_betas": np.linspace(0.001, 0.3, T).tolist()} if schedule == "trained"
          else {"beta_schedule": schedule})
    diffusers.DDPMScheduler(num_train_timesteps=T, **kw).save_pretrained(folder / "scheduler")
    model = diffcodec.load_model(str(folder), "cpu")
    sched = diffusers.DDPMScheduler.from_pretrained(str(folder / "scheduler"))
    betas = np.asarray(model.config.diffusion.betas)
    assert betas.dtype == np.float64 and np.array_equal(betas, sched.betas.double().numpy())
    d = model.diffusion()            # the whole chain: betas through respacing's abar ratios
    np.testing.assert_allclose(d.betas, betas, rtol=1e-12)
    np.testing.assert_allclose(d.alphas_cumprod, sched.alphas_cumprod.double().numpy(), rtol=1e-6)
    if schedule == "squaredcos_cap_v2":      # improved DDPM's cosine, capped at 0.999 (float32 here)
        from diffcodec.core.schedules import named_betas
        np.testing.assert_allclose(betas, named_betas("cosine", T), rtol=1e-7)


@pytest.mark.parametrize("prediction, variance", [("epsilon", "fixed_small"), ("sample", "fixed_large"),
                                                  ("v_prediction", "learned_range")])
def test_reverse_step_is_ddpmschedulers(tmp_path, prediction, variance):
    """p(x_{t-1} | x_t) equals DDPMScheduler.step's: x0_hat, and the mean plus the same noise."""
    folder = save_pipeline(tmp_path / "m", prediction_type=prediction, variance_type=variance)
    model = diffcodec.load_model(str(folder), "cpu")
    d = model.diffusion()
    unet = diffusers.UNet2DModel.from_pretrained(str(folder / "unet"), use_safetensors=True,
                                                 low_cpu_mem_usage=False).eval()
    sched = diffusers.DDPMScheduler.from_pretrained(str(folder / "scheduler"))
    # its table in float64 from its betas: in float32, 1 - abar_0 = beta_1 loses ~3e-4 to cancellation
    sched.alphas_cumprod = torch.cumprod(1 - sched.betas.double(), 0)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for t in (T - 1, 7, 1):
        with torch.no_grad():
            step = sched.step(unet(x, t).sample, t, x, generator=torch.Generator().manual_seed(t))
            ours = d.p_mean_variance(model.net, x, torch.full((2,), t))
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(t))
        torch.testing.assert_close(ours["pred_xstart"], step.pred_original_sample, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(ours["mean"] + ours["variance"].sqrt() * noise, step.prev_sample,
                                   atol=2e-5, rtol=1e-4)


def test_every_command_on_a_diffusers_model(pipe, idx_dir, tmp_path):
    runner = CliRunner()

    def run(*args):
        r = runner.invoke(main, [str(a) for a in args])
        assert r.exit_code == 0, r.output + repr(r.exception)
        return r.output

    m = ("--model", pipe)
    out = run("bpd", *m, "--data", idx_dir, "--limit", 2, "--json", tmp_path / "b.json")
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["num_steps"] == T and doc["model"] == "ddpm-tiny" and "total" in out
    run("fit-steps", *m, "--data", idx_dir, "--limit", 2, "-n", 5, "-o", tmp_path / "fit.txt")
    assert len((tmp_path / "fit.txt").read_text().split(",")) == 5
    run("bpd", *m, "--data", idx_dir, "--limit", 2, "--steps", f"@{tmp_path / 'fit.txt'}")
    run("sample", *m, "-n", 2, "-o", tmp_path / "s.png")
    assert (tmp_path / "s.png").is_file()
    run("eval", "table4", *m, "--data", idx_dir, "--limit", 2, "--json", tmp_path / "t4.json")
    assert len(json.loads((tmp_path / "t4.json").read_text())["rows"]) == 10
    run("eval", "rd", *m, "--data", idx_dir, "--limit", 1, "--codecs", "ideal,uq", "--anchor", "uq",
        "--steps", 6, "-o", tmp_path / "rd")
    assert (tmp_path / "rd" / "ideal.json").is_file()
    from diffcodec.io.images import save_png
    save_png(tmp_path / "x.png", synthetic_images(1, seed=4))
    run("encode", tmp_path / "x.png", "-o", tmp_path / "x.dfc", *m)
    run("decode", tmp_path / "x.dfc", "-o", tmp_path / "y.png", *m)
    assert "ddpm-tiny" in run("info", tmp_path / "x.dfc", *m)
    # an unregistered model must be named on decode
    r = runner.invoke(main, ["decode", str(tmp_path / "x.dfc"), "-o", str(tmp_path / "z.png")])
    assert r.exit_code != 0 and not (tmp_path / "z.png").exists()


def test_round_trip_and_the_weights_hash(pipe, tmp_path):
    img = synthetic_images(1, size=8, seed=4)[0]
    model = diffcodec.load_model(str(pipe), "cpu")
    import hashlib
    weights = pipe / "unet" / "diffusion_pytorch_model.safetensors"
    assert model.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    res = diffcodec.encode(img, model, backend="uq", steps="6", quality=100)
    out = diffcodec.decode(res.data, str(pipe))
    from diffcodec.evaluation.metrics import psnr
    assert out.image.shape == img.shape and psnr(out.image, img) == pytest.approx(res.psnr)
    lossless = diffcodec.encode(img, model, lossless=True)
    assert np.array_equal(diffcodec.decode(lossless.data, model).image, img)
    # the model folder (unet with scheduler beside it) and the pipeline's unet/ are the same model
    flat = tmp_path / "flat"
    shutil.copytree(pipe / "unet", flat)
    shutil.copy(pipe / "scheduler" / "scheduler_config.json", flat)
    shutil.copy(pipe / "model_index.json", flat)         # the Hub's older flat pipeline layout
    for folder in (flat, pipe / "unet"):
        assert np.array_equal(diffcodec.decode(lossless.data, str(folder)).image, img)
    # another model's key does not pass the file's check
    other = save_pipeline(tmp_path / "other", tiny_unet(seed=1))
    with pytest.raises(UserError):
        diffcodec.decode(lossless.data, str(other))


def test_fully_convolutional_rgb_model_codes_any_size(tmp_path):
    folder = save_pipeline(tmp_path / "rgb", tiny_unet(channels=3, attention=False))
    model = diffcodec.load_model(str(folder), "cpu")
    assert model.config.model.attention_ds == () and model.native_size == 8
    img = np.random.default_rng(0).integers(0, 256, (11, 13, 3)).astype(np.uint8)
    res = diffcodec.encode(img, model, lossless=True, steps="5")
    assert np.array_equal(diffcodec.decode(res.data, model).image, img)
    with pytest.raises(UserError, match="global attention"):       # the attention model: its size only
        diffcodec.encode(img, save_pipeline(tmp_path / "att", tiny_unet(channels=3)).as_posix())


def one_line_error(folder, match):
    with pytest.raises(UserError, match=match) as e:
        diffcodec.load_model(str(folder), "cpu")
    assert "\n" not in str(e.value)
    return str(e.value)


def test_latent_and_non_ddpm_pipelines_are_refused(tmp_path):
    torch.manual_seed(0)
    vq = diffusers.VQModel(in_channels=3, out_channels=3, block_out_channels=(8,), norm_num_groups=4,
                           latent_channels=3, num_vq_embeddings=16, vq_embed_dim=3, layers_per_block=1)
    diffusers.LDMPipeline(vqvae=vq, unet=tiny_unet(channels=3), scheduler=diffusers.DDIMScheduler(
        num_train_timesteps=T)).save_pretrained(tmp_path / "ldm")
    one_line_error(tmp_path / "ldm", "latent-space")
    sde = diffusers.ScoreSdeVePipeline(unet=tiny_unet(), scheduler=diffusers.ScoreSdeVeScheduler())
    sde.save_pretrained(tmp_path / "sde")
    one_line_error(tmp_path / "sde", "ScoreSdeVeScheduler, not a DDPMScheduler")
    tiny_unet(channels=1).save_pretrained(tmp_path / "ddim")
    diffusers.DDIMScheduler(num_train_timesteps=T).save_pretrained(tmp_path / "ddim")
    one_line_error(tmp_path / "ddim", "DDIMScheduler, not a DDPMScheduler")
    latent = diffusers.UNet2DModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                   layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                                   up_block_types=("UpBlock2D",) * 2)
    save_pipeline(tmp_path / "latent-unet", latent)
    one_line_error(tmp_path / "latent-unet", "4 input channels")


def test_unsupported_configs_are_one_line_errors(tmp_path, pipe):
    def variant(name, **changes):
        folder = tmp_path / name
        shutil.copytree(pipe, folder)
        conf = folder / "scheduler" / "scheduler_config.json"
        conf.write_text(json.dumps({**json.loads(conf.read_text()), **changes}))
        return folder

    one_line_error(variant("learned", variance_type="learned"), "variance_type 'learned'")
    one_line_error(variant("range", variance_type="learned_range"), "output channels")
    one_line_error(variant("flow", prediction_type="flow"), "prediction_type 'flow'")
    one_line_error(variant("zsnr", rescale_betas_zero_snr=True), "zero_snr")
    shutil.rmtree(variant("nosched", prediction_type="epsilon") / "scheduler")
    one_line_error(tmp_path / "nosched", "DDPMScheduler config")


def test_only_safetensors_are_read(tmp_path, monkeypatch):
    tiny_unet().save_pretrained(tmp_path / "bin", safe_serialization=False)
    diffusers.DDPMScheduler(num_train_timesteps=T).save_pretrained(tmp_path / "bin")
    assert (tmp_path / "bin" / "diffusion_pytorch_model.bin").is_file()
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("unpickled the weights"))
    one_line_error(tmp_path / "bin", "safetensors only")


def test_old_attention_names_load_and_wrong_weights_are_refused(tmp_path, pipe):
    """Pipelines saved by early diffusers (the paper's CIFAR-10 model among them) name the attention
    weights query/key/value/proj_attn: diffusers' loader renames them, so the network is the same."""
    from safetensors.torch import load_file, save_file

    old = tmp_path / "old"
    shutil.copytree(pipe, old)
    weights = old / "unet" / "diffusion_pytorch_model.safetensors"
    names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    state = load_file(weights)
    renamed = {}
    for k, v in state.items():
        for new, was in names.items():
            k = k.replace(f".{new}.", f".{was}.")
        renamed[k] = v
    assert renamed.keys() != state.keys()
    save_file(renamed, weights)
    x, t = torch.randn(1, 1, 8, 8), torch.tensor([5.0])
    a, b = diffcodec.load_model(str(pipe), "cpu"), diffcodec.load_model(str(old), "cpu")
    assert a.sha256 != b.sha256
    # the same weights under the same names; the outputs agree to float rounding, not bit for bit:
    # the renamed tensors' memory layout can pick other BLAS kernels (3.6e-7 apart on an AVX2 CPU)
    wa, wb = a.net.state_dict(), b.net.state_dict()
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert torch.allclose(a.net(x, t), b.net(x, t), atol=1e-5, rtol=0)
    save_file({k: v for k, v in state.items() if "conv_out" not in k}, weights)
    one_line_error(old, "do not fit")


def test_without_diffusers_the_message_says_what_to_install(pipe, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    assert one_line_error(pipe, "diffusers").endswith("pip install 'diffcodec[diffusers]'")


def test_own_model_folders_are_not_taken_for_diffusers(tiny_store, pipe):
    assert not is_diffusers_folder(tiny_store / "tiny")
    assert is_diffusers_folder(pipe) and is_diffusers_folder(pipe / "unet")
