"""Models in Hugging Face diffusers' format: a pixel-space ``UNet2DModel`` with its ``DDPMScheduler``.

``store.load_model`` hands a folder here when ``is_diffusers_folder`` says it is one. Two layouts load:

* a pipeline folder, as ``DDPMPipeline.save_pretrained`` writes it: ``model_index.json``,
  ``unet/`` (``config.json`` + ``diffusion_pytorch_model.safetensors``) and
  ``scheduler/scheduler_config.json`` (or all of these flat in the one folder);
* a model folder: the UNet's ``config.json`` and weights, with the scheduler's
  ``scheduler_config.json`` beside them (or in ``../scheduler/``, for the ``unet/`` folder of a
  pipeline).

Everything about the diffusion comes from the scheduler config: the betas are the
``DDPMScheduler``'s own (diffusers computes them from ``beta_schedule``, ``beta_start``,
``beta_end``, ``num_train_timesteps`` or ``trained_betas``; linear, scaled_linear, squaredcos_cap_v2
and the rest), widened to float64; ``variance_type`` picks our fixed small / fixed large /
learned-range variance; ``prediction_type`` epsilon, sample or v_prediction is turned into eps by
``DiffusersUNet``. Sampling-time options (clip_sample, thresholding, timestep_spacing) do not change
the model's p(x_{t-1} | x_t) as this codec uses it and are ignored: x0_hat is always clipped to
[-1, 1], as for our own models.

Safety: the configs are read as JSON, the class is always diffusers' ``UNet2DModel`` (never one the
folder names) and the weights are read from safetensors only (``use_safetensors=True``,
``local_files_only=True``): a folder with only pickled ``.bin`` weights is refused. The model is
identified by the sha256 of its ``diffusion_pytorch_model.safetensors``, as our own models are by
their ``model.safetensors``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.diffusion import GaussianDiffusion, LossType, VarianceType
from ..core.schedules import respace_betas, space_timesteps
from .checkpoint import ModelError
from .config import Config, DiffusionConfig

WEIGHTS = "diffusion_pytorch_model.safetensors"
PICKLED = ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.ckpt", "pytorch_model.bin")
SCHEDULER_CONFIG = "scheduler_config.json"
INSTALL = "pip install 'diffcodec[diffusers]'"

VARIANCE_TYPES = {"fixed_small": VarianceType.FIXED_SMALL, "fixed_small_log": VarianceType.FIXED_SMALL,
                  "fixed_large": VarianceType.FIXED_LARGE, "fixed_large_log": VarianceType.FIXED_LARGE,
                  "learned_range": VarianceType.LEARNED_RANGE}
LATENT_PARTS = ("vae", "vqvae", "movq", "text_encoder", "image_encoder")


@dataclass
class DiffusersDiffusionConfig(DiffusionConfig):
    """The diffusion of a diffusers model: its scheduler's own betas (float64) instead of a
    named schedule (``schedule`` only records diffusers' ``beta_schedule``)."""
    betas: tuple[float, ...] = ()
    prediction_type: str = "epsilon"

    def validate(self):
        VarianceType(self.var_type)

    def build(self, steps=None) -> GaussianDiffusion:
        kept = space_timesteps(self.num_timesteps, steps)
        return GaussianDiffusion(respace_betas(np.asarray(self.betas, np.float64), kept), self.var_type,
                                 kept, self.num_timesteps)


def is_diffusers_folder(path: Path) -> bool:
    """Whether a folder looks like a diffusers pipeline or model (without importing diffusers)."""
    path = Path(path)
    if not path.is_dir() or (path / "model.safetensors").is_file():
        return False
    if any((path / f).is_file() for f in ("model_index.json", SCHEDULER_CONFIG, WEIGHTS, *PICKLED,
                                          "unet/config.json")):
        return True
    return "_class_name" in _json(path / "config.json", quiet=True)


def _json(path: Path, quiet: bool = False) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if quiet:
            return {}
        raise ModelError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    if not isinstance(doc, dict):
        if quiet:
            return {}
        raise ModelError(f"{path} is not a JSON object")
    return doc


def _locate(path: Path) -> tuple[Path, Path | None]:
    """(UNet folder, scheduler config or None), refusing pipelines that are not pixel-space DDPMs."""
    index = path / "model_index.json"
    if index.is_file():
        doc = _json(index)
        parts = {k: v[1] for k, v in doc.items()
                 if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[1] is not None}
        latent = next((k for k in LATENT_PARTS if k in parts), None)
        kind = doc.get("_class_name", "pipeline")
        if latent:
            raise ModelError(f"{path}: {kind} is a latent-space or conditional pipeline (it has a {latent}); "
                             "diffcodec needs a pixel-space DDPM (UNet2DModel + DDPMScheduler)")
        if parts.get("unet", "UNet2DModel") != "UNet2DModel":
            raise ModelError(f"{path}: {kind}'s unet is a {parts['unet']}, not a pixel-space UNet2DModel")
        if parts.get("scheduler", "DDPMScheduler") != "DDPMScheduler":
            raise ModelError(f"{path}: {kind}'s scheduler is a {parts['scheduler']}, not a DDPMScheduler: "
                             "diffcodec needs a DDPM (discrete-time Gaussian diffusion)")
        if "unet" not in parts and not (path / "config.json").is_file():
            raise ModelError(f"{path}: {kind} has no unet: diffcodec needs a pixel-space UNet2DModel")
    unet = path / "unet" if (path / "unet" / "config.json").is_file() else path
    if not (unet / "config.json").is_file():
        raise ModelError(f"{path}: no UNet config (config.json, or unet/config.json in a pipeline)")
    sched = next((p for p in (path / "scheduler" / SCHEDULER_CONFIG, path / SCHEDULER_CONFIG,
                              path.parent / "scheduler" / SCHEDULER_CONFIG) if p.is_file()), None)
    return unet, sched


def _unet_config(unet: Path) -> tuple[dict, int, int, bool]:
    """(config, channels, native size, learned variance) of a UNet folder, checked."""
    cfg = _json(unet / "config.json")
    cls = cfg.get("_class_name", "UNet2DModel")
    if cls != "UNet2DModel":
        what = "a latent-space or conditional UNet" if "Condition" in cls else "not a UNet2DModel"
        raise ModelError(f"{unet}: the model is a {cls} ({what}); diffcodec needs a pixel-space UNet2DModel")
    C, out = int(cfg.get("in_channels", 3)), int(cfg.get("out_channels", 3))
    if C not in (1, 3):
        raise ModelError(f"{unet}: a UNet of {C} input channels (a latent-space model?); diffcodec codes "
                         "pixel images of 1 or 3 channels")
    if out not in (C, 2 * C):
        raise ModelError(f"{unet}: a UNet of {C} input and {out} output channels does not predict noise")
    if cfg.get("class_embed_type") or cfg.get("num_class_embeds"):
        raise ModelError(f"{unet}: a class-conditional UNet2DModel; diffcodec needs an unconditional one")
    if cfg.get("time_embedding_type", "positional") != "positional":
        raise ModelError(f"{unet}: time_embedding_type {cfg['time_embedding_type']!r} is a score-SDE model, "
                         "not a DDPM")
    size = cfg.get("sample_size")
    if isinstance(size, (list, tuple)) and len(size) == 2 and size[0] == size[1]:
        size = size[0]
    if not isinstance(size, int) or size < 1:
        raise ModelError(f"{unet}: sample_size {size!r} is not one square size")
    return cfg, C, size, out == 2 * C


def _scheduler_config(path: Path, sched: Path | None, learned: bool) -> tuple[dict, VarianceType, str]:
    if sched is None:
        raise ModelError(f"{path}: a diffusers UNet without its scheduler: diffcodec needs the DDPMScheduler "
                         f"config ({SCHEDULER_CONFIG} beside config.json, or scheduler/ in the pipeline)")
    cfg = _json(sched)
    cls = cfg.get("_class_name", "DDPMScheduler")
    if cls != "DDPMScheduler":
        raise ModelError(f"{sched}: a {cls}, not a DDPMScheduler: diffcodec needs a DDPM "
                         "(discrete-time Gaussian diffusion)")
    vt = cfg.get("variance_type", "fixed_small")
    if vt not in VARIANCE_TYPES:
        hint = " (a raw log-variance output)" if vt == "learned" else ""
        raise ModelError(f"{sched}: variance_type {vt!r}{hint} is not supported; diffcodec takes "
                         f"{', '.join(VARIANCE_TYPES)}")
    var = VARIANCE_TYPES[vt]
    if (var is VarianceType.LEARNED_RANGE) != learned:
        raise ModelError(f"{sched}: variance_type {vt!r} does not fit the UNet's output channels "
                         f"({'2C' if learned else 'C'}; learned_range needs 2C, the fixed ones C)")
    pt = cfg.get("prediction_type", "epsilon")
    if pt not in ("epsilon", "sample", "v_prediction"):
        raise ModelError(f"{sched}: prediction_type {pt!r} is not supported (epsilon, sample, v_prediction)")
    if cfg.get("rescale_betas_zero_snr"):
        raise ModelError(f"{sched}: rescale_betas_zero_snr gives x_T no signal-free prior (alpha-bar_T = 0); "
                         "diffcodec's bound and codecs need alpha-bar_T > 0")
    return cfg, var, pt


def _weights(unet: Path) -> Path:
    weights = unet / WEIGHTS
    if weights.is_file():
        return weights
    if (unet / (WEIGHTS + ".index.json")).is_file():
        raise ModelError(f"{unet}: sharded weights are not supported (save the UNet as one {WEIGHTS})")
    pickled = next((f for f in PICKLED if (unet / f).is_file()), None)
    if pickled:
        raise ModelError(f"{unet}: only pickled weights ({pickled}); diffcodec loads safetensors only: convert "
                         f"them once where you trust the file (UNet2DModel.from_pretrained(DIR).save_pretrained(DIR))")
    raise ModelError(f"{unet}: missing {WEIGHTS}")


def _import_diffusers():
    try:
        import diffusers
        from diffusers import DDPMScheduler, UNet2DModel
    except ImportError as e:
        missing = getattr(e, "name", None) in ("diffusers", None)
        raise ModelError("this is a Hugging Face diffusers model: install the extra with " + INSTALL
                         + ("" if missing else f" ({e})")) from None
    return diffusers, DDPMScheduler, UNet2DModel


def load_diffusers(path, device="cpu") -> tuple:
    """What ``store.LoadedModel`` is made of (name, sha256, config, net, info) for a diffusers DDPM
    folder (see the module docstring)."""
    import torch

    from ..io.datasets import DataConfig
    from ..io.files import sha256_file
    from ..nets import UNetConfig
    from ..nets.diffusers_unet import DiffusersUNet

    path = Path(path).expanduser()
    unet_dir, sched = _locate(path)
    ucfg, C, size, learned = _unet_config(unet_dir)
    scfg, var, prediction = _scheduler_config(path, sched, learned)
    weights = _weights(unet_dir)
    diffusers, DDPMScheduler, UNet2DModel = _import_diffusers()

    try:
        betas = DDPMScheduler.from_config(scfg).betas.double().numpy()
    except (NotImplementedError, ValueError, TypeError) as e:
        raise ModelError(f"{sched}: cannot build its schedule ({str(e).splitlines()[0]})") from None
    if betas.ndim != 1 or not ((betas > 0) & (betas < 1)).all():
        raise ModelError(f"{sched}: its betas are not all in (0, 1)")

    level = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    try:
        unet, info = UNet2DModel.from_pretrained(str(unet_dir), use_safetensors=True, local_files_only=True,
                                                 torch_dtype=torch.float32, low_cpu_mem_usage=False,
                                                 output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as e:
        why = " ".join(str(e).split())
        why = why if len(why) <= 240 else why[:240] + "..."
        raise ModelError(f"{unet_dir}: diffusers cannot load it ({why})") from None
    finally:
        diffusers.utils.logging.set_verbosity(level)
    bad = [k for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs") if info.get(k)]
    if bad:
        raise ModelError(f"{unet_dir}: the weights do not fit its config ({bad[0].replace('_', ' ')}: "
                         f"{', '.join(map(str, info[bad[0]][:3]))})")

    net = DiffusersUNet(unet, prediction, np.cumprod(1.0 - betas))
    net.eval().requires_grad_(False).to(device)

    # downsampling factors with (global) self-attention: such a model runs only at its sample_size
    blocks, up = list(ucfg.get("down_block_types") or ()), list(ucfg.get("up_block_types") or ())
    attention = [2 ** i for i, b in enumerate(blocks) if "Attn" in b]
    attention += [2 ** (len(up) - 1 - i) for i, b in enumerate(up) if "Attn" in b]
    if ucfg.get("mid_block_type", "UNetMidBlock2D") and ucfg.get("add_attention", True) and blocks:
        attention.append(2 ** (len(blocks) - 1))
    chans = [int(c) for c in ucfg.get("block_out_channels") or (1,)]
    model_cfg = UNetConfig(in_channels=C, base_channels=chans[0],
                           channel_mult=tuple(max(1, c // chans[0]) for c in chans),
                           num_res_blocks=int(ucfg.get("layers_per_block", 1)),
                           attention_ds=tuple(sorted(set(attention))), learn_sigma=learned)
    diffusion = DiffusersDiffusionConfig(
        schedule="diffusers:" + ("trained_betas" if scfg.get("trained_betas") is not None
                                 else str(scfg.get("beta_schedule", "linear"))),
        num_timesteps=len(betas), var_type=var.value,
        loss=(LossType.HYBRID if learned else LossType.SIMPLE).value,
        betas=tuple(float(b) for b in betas), prediction_type=prediction)
    resolved = path.resolve()
    # no training folder: a name no data folder has, so a folder of images is always used whole
    data = DataConfig(path=str(resolved / "(training data unknown)"), crop=size)
    config = Config(model=model_cfg, diffusion=diffusion, data=data)
    name = resolved.parent.name if resolved.name == "unet" and sched and sched.parent.name == "scheduler" \
        else resolved.name
    doc = {"diffusers": {"path": str(path), "unet": str(unet_dir), "scheduler": str(sched),
                         "variance_type": scfg.get("variance_type", "fixed_small"),
                         "prediction_type": prediction, "parameters": net.num_parameters()}}
    return name, sha256_file(weights), config, net, doc
