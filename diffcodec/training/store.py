"""The model store: one table (models/index.json) maps model names to files and sha256.

``load_model`` takes a registered name, a model directory (config.json + model.safetensors) or a
training checkpoint (.pt; its EMA weights are used).
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..container.format import ModelProfile
from ..core.diffusion import GaussianDiffusion
from ..io.files import sha256_file
from ..nets import UNet
from .checkpoint import ModelError, export_model, load_checkpoint
from .config import Config, ConfigError

INDEX_NAME = "index.json"


def models_dir() -> Path:
    """$DIFFCODEC_MODELS, else the source checkout's models/, else the installed copy."""
    env = os.environ.get("DIFFCODEC_MODELS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "models"
    if (here / INDEX_NAME).is_file():
        return here
    spec = importlib.util.find_spec("diffcodec_models")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return here


def read_index(root: Path | None = None) -> dict:
    root = root or models_dir()
    try:
        index = json.loads((root / INDEX_NAME).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read model index {root / INDEX_NAME}: {e}") from None
    if not isinstance(index, dict):
        raise ModelError(f"model index {root / INDEX_NAME}: not a JSON object")
    return index


@dataclass
class LoadedModel:
    """A network with its config; ``name`` and ``sha256`` identify the weights."""
    name: str
    sha256: str
    config: Config
    net: torch.nn.Module
    info: dict

    @property
    def key(self) -> bytes:
        """The weights' sha256 digest: the key a .dfc file's first-layer check is keyed with."""
        return bytes.fromhex(self.sha256)

    @property
    def keys(self) -> dict[str, bytes]:
        """{name: key}: what ``Container.from_bytes`` checks a file of this model against."""
        return {self.name: self.key}

    @property
    def reader_keys(self) -> dict[str, bytes]:
        """{label: key} of every model a reader may try a file of this model against: each
        registered model with another key, and this one (under its name, or its name and digest
        where a registered model has that name). An encoder writes a file whose check only this
        key passes (``Container.settled``). Raises ModelError for an unreadable model index."""
        keys = {n: k for n, k in model_keys().items() if k != self.key}
        keys[self.name if self.name not in keys else f"{self.name} ({self.sha256[:12]})"] = self.key
        return keys

    @property
    def is_masking(self) -> bool:
        return self.config.diffusion.kind == "masking"

    def diffusion(self, steps=None) -> GaussianDiffusion:
        if self.is_masking:
            raise ModelError(f"model {self.name} is a masking (autoregressive) diffusion: use "
                             "`diffcodec eval ardm` with it")
        return self.config.diffusion.build(steps)

    def masking(self, shape=None):
        """The T = D masking diffusion of a masking model, for images of ``shape`` (default: its
        training crop)."""
        from ..core.masking import MaskingDiffusion

        if not self.is_masking:
            raise ModelError(f"model {self.name} is a Gaussian diffusion, not a masking one")
        return MaskingDiffusion.from_config(self.config, shape)

    @property
    def native_size(self) -> int:
        """Side of the square images a .dfc file stores without their size: the training crop."""
        return self.config.data.crop

    @property
    def profile(self) -> ModelProfile:
        """What a .dfc file at this model's defaults leaves to it (see ``Header.for_model``)."""
        return _profile(self.config)

    @property
    def tiling(self) -> tuple[int, int]:
        """(tile core, halo) the codec runs the network over for larger images, (0, 0) for whole
        (config ``inference``; ``core.precision.tile_for``)."""
        return self.config.inference.tile, self.config.inference.halo

    @property
    def scales(self) -> str:
        """The schedule of coarse network calls at high noise the codec uses, "" for none (config
        ``inference``; ``core.scales``)."""
        return self.config.inference.scales

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def inference_net(self) -> torch.nn.Module:
        """The copy of the network the codec runs (fed channels-last images): for our U-Net
        ``nets.inference.for_inference``, the same function with the same bits on 1, 2 or 4
        threads; else a plain channels-last copy, its convolutions emulated in bfloat16 where
        oneDNN has no kernels for it (``emulating_convs``). Made on first use and again whenever
        ``net`` is replaced; ``net`` itself is left as it is (training, ``bpd``)."""
        from ..nets.inference import emulating_convs, for_inference
        from ..nets.unet import UNet

        made = self.__dict__.get("_inference")
        if made is None or made[0] is not self.net:
            copy_ = (for_inference(self.net) if isinstance(self.net, UNet)
                     else emulating_convs(copy.deepcopy(self.net).to(memory_format=torch.channels_last)))
            made = self.__dict__["_inference"] = (self.net, copy_)
        return made[1]


def _build(config_dict: dict, state_dict: dict, name: str, sha: str, info: dict, device) -> LoadedModel:
    try:
        cfg = Config.from_dict(config_dict)
    except ConfigError as e:
        raise ModelError(f"model {name}: {e}") from None
    net = UNet(cfg.model)
    try:
        net.load_state_dict(state_dict)
    except RuntimeError as e:
        raise ModelError(f"model {name}: weights do not fit its config ({str(e).splitlines()[0]})") from None
    net.eval().requires_grad_(False).to(device)
    return LoadedModel(name, sha, cfg, net, info)


def _read(conf: Path, weights: Path | None, what: str):
    """(parsed JSON of ``conf``, safetensors state dict of ``weights`` or None); a ModelError
    starting with ``what`` if either cannot be read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return json.loads(conf.read_text()), (load_file(weights) if weights else None)
    except (json.JSONDecodeError, SafetensorError, OSError) as e:
        raise ModelError(f"{what}: {e}") from None


def _load_dir(path: Path, name: str, expected_sha: str | None, device) -> LoadedModel:
    weights, conf = path / "model.safetensors", path / "config.json"
    for f in (weights, conf):
        if not f.is_file():
            raise ModelError(f"model {name}: missing {f}")
    sha = sha256_file(weights)
    if expected_sha and sha != expected_sha:
        raise ModelError(f"model {name}: weights hash {sha[:12]} does not match the index ({expected_sha[:12]});"
                         " the file is corrupt or was replaced")
    doc, state = _read(conf, weights, f"model {name}: cannot read its files")
    losses = path / "reveal_losses.json"     # a masking model's step-plan table (coding.reveal)
    if losses.is_file():
        doc["reveal_losses"], _ = _read(losses, None, f"model {name}: cannot read its files")
    return _build(doc["config"], state, name, sha, doc, device)


def _load_snapshot(path: Path, device) -> LoadedModel:
    """EMA weights a training run kept (``OUT/snapshots/step_N.safetensors``), with the run's
    ``OUT/config.json``."""
    conf = next((d / "config.json" for d in (path.parent, path.parent.parent) if (d / "config.json").is_file()), None)
    if conf is None:
        raise ModelError(f"{path}: no config.json beside it or in its run folder")
    cfg, state = _read(conf, path, f"{path}: cannot read it")
    return _build(cfg, state, path.stem, sha256_file(path), {}, device)


def load_model(name_or_path: str, device=None) -> LoadedModel:
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        from .diffusers_import import is_diffusers_folder, load_diffusers

        if is_diffusers_folder(p):
            return LoadedModel(*load_diffusers(p, device))
        return _load_dir(p, p.name, None, device)
    if p.is_file() and p.suffix == ".safetensors":
        return _load_snapshot(p, device)
    if p.is_file():
        state = load_checkpoint(p)
        return _build(state["config"], state["ema"], p.stem, sha256_file(p),
                      {"step": state.get("step")}, device)
    root = models_dir()
    index = read_index(root)
    if name_or_path not in index:
        known = ", ".join(sorted(index)) or "none"
        raise ModelError(f"no model named {name_or_path!r} and no such path (known models: {known})")
    entry = index[name_or_path]
    return _load_dir(root / entry["dir"], name_or_path, entry["sha256"], device)


def model_keys(root: Path | None = None) -> dict[str, bytes]:
    """name -> key (the weights' sha256 digest) of every registered model: the keys a .dfc file's
    first-layer check is tried against (what callers pass to ``Container.from_bytes`` as
    ``registered``; the container does not read the store itself)."""
    keys = {}
    for name, e in read_index(root).items():
        sha = e.get("sha256") if isinstance(e, dict) else None
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdefABCDEF" for c in sha)):
            raise ModelError(f"model index {(root or models_dir()) / INDEX_NAME}: model {name!r} has no valid sha256")
        keys[name] = bytes.fromhex(sha)
    return keys


def _profile(config: Config) -> ModelProfile:
    return ModelProfile(config.data.crop, config.model.in_channels,
                        "masking" if config.diffusion.kind == "masking" else "gaussian")


def profile_for(name: str, root: Path | None = None) -> ModelProfile:
    """A registered model's ``profile``, from its config alone (no weights loaded)."""
    root = root or models_dir()
    doc, _ = _read(root / read_index(root)[name]["dir"] / "config.json", None, f"model {name}: cannot read its config")
    try:
        return _profile(Config.from_dict(doc["config"]))
    except (ConfigError, KeyError) as e:
        raise ModelError(f"model {name}: {e}") from None


def register_model(name: str, root: Path | None = None, description: str = "") -> dict:
    """Add or update models/index.json for models/<name>/ (computes the sha256)."""
    root = root or models_dir()
    index = read_index(root)
    entry = {"dir": name, "sha256": sha256_file(root / name / "model.safetensors"),
             "description": description or index.get(name, {}).get("description", "")}
    index[name] = entry
    (root / INDEX_NAME).write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    return entry


def export_checkpoint(checkpoint, name: str, root: Path | None = None, description: str = "") -> dict:
    """Export a training checkpoint's EMA weights to ``root/name`` and register them in the store.
    -> {"path", "step", "sha256"}."""
    root = root or models_dir()
    state = load_checkpoint(checkpoint)
    sha = export_model(state["ema"], state["config"], root / name, {"train_steps": state["step"]})
    register_model(name, root, description)
    return {"path": root / name, "step": state["step"], "sha256": sha}
