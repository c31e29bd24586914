"""Experiment configuration: one dataclass per section, loaded from TOML or JSON, overridable
from the command line (``section.key=value``), and stored whole in every checkpoint and model.
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..core.diffusion import GaussianDiffusion, LossType, VarianceType
from ..core.scales import SCHEDULES as SCALE_SCHEDULES
from ..core.scales import pools
from ..core.precision import TILINGS
from ..core.schedules import SCHEDULES
from ..errors import UserError
from ..io.datasets import DataConfig
from ..nets import UNetConfig


class ConfigError(UserError):
    """A configuration file or override is wrong; the message is meant for the user."""


@dataclass
class DiffusionConfig:
    schedule: str = "linear"
    num_timesteps: int = 1000
    var_type: str = VarianceType.FIXED_SMALL.value
    loss: str = LossType.SIMPLE.value
    kind: str = "gaussian"        # "masking": T = D masking diffusion (an autoregressive model)

    def validate(self):
        if self.kind not in ("gaussian", "masking"):
            raise ConfigError("diffusion.kind must be gaussian or masking")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"diffusion.schedule must be one of {SCHEDULES}")
        VarianceType(self.var_type)
        LossType(self.loss)
        if (self.var_type == VarianceType.LEARNED_RANGE.value) != (self.loss == LossType.HYBRID.value):
            raise ConfigError("var_type learned_range goes with loss hybrid (and only with it)")

    def build(self, steps=None) -> GaussianDiffusion:
        return GaussianDiffusion.from_config(self.schedule, self.num_timesteps, self.var_type, steps)


@dataclass
class TrainConfig:
    batch_size: int = 64          # per process
    lr: float = 2e-4
    warmup_steps: int = 500
    decay_from: int = 0           # the lr falls linearly from this step to 0 at the run's last step (0 = constant)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    max_steps: int = 10000
    checkpoint_every_s: float = 300.0
    checkpoint_every_steps: int = 1000
    snapshot_every_steps: int = 1000  # EMA weights kept as OUT/snapshots/step_N.safetensors (0 = none)
    log_every: int = 50
    seed: int = 0
    threads: int = 0              # torch CPU threads, 0 = torch's default
    teacher: str = ""             # a model (name or directory): learn its outputs (distillation) instead of eps


@dataclass
class InferenceConfig:
    """How the codec runs the network: over tiles of ``tile`` pixels with ``halo`` pixels of
    context (one of ``core.precision.TILINGS``; chosen on validation images), or whole (0); and,
    where it runs over those tiles, with coarse calls at high noise by the ``scales`` schedule (one
    of ``core.scales.SCHEDULES`` that pools, "" for none; images it leaves whole take its
    ``core.scales.whole`` part)."""
    tile: int = 0
    halo: int = 0
    scales: str = ""

    def validate(self):
        if self.tile and (self.tile, self.halo) not in TILINGS:
            raise ValueError(f"inference tiling ({self.tile}, {self.halo}) is not one of "
                             f"{', '.join(map(str, TILINGS))}")
        if self.scales and self.scales not in SCALE_SCHEDULES:
            raise ValueError(f"inference scales {self.scales!r} is not one of {', '.join(SCALE_SCHEDULES)}")
        if self.scales and not self.tile:
            raise ValueError("inference scales need an inference tiling (they apply where it does)")
        if self.scales and not pools(self.scales):
            raise ValueError(f"inference scales {self.scales!r} make no coarse call: a model's schedule "
                             "pools (its whole part applies to images no larger than a tile)")


@dataclass
class Config:
    model: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "diffusion": asdict(self.diffusion),
                "data": asdict(self.data), "train": asdict(self.train),
                "inference": asdict(self.inference)}

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        unknown = set(d) - {"model", "diffusion", "data", "train", "inference"}
        if unknown:
            raise ConfigError(f"unknown config sections: {', '.join(sorted(unknown))}")
        try:
            cfg = cls(model=UNetConfig.from_dict(d.get("model", {})),
                      diffusion=_section(DiffusionConfig, d.get("diffusion", {}), "diffusion"),
                      data=_section(DataConfig, d.get("data", {}), "data"),
                      train=_section(TrainConfig, d.get("train", {}), "train"),
                      inference=_section(InferenceConfig, d.get("inference", {}), "inference"))
            cfg.diffusion.validate()
            cfg.inference.validate()
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad config: {e}") from None
        cfg.model.learn_sigma = cfg.diffusion.var_type == VarianceType.LEARNED_RANGE.value
        if cfg.diffusion.kind == "masking":
            cfg.model.categories = cfg.model.categories or 256
        elif cfg.model.categories:
            raise ConfigError("model.categories is for diffusion.kind = masking")
        return cfg


def _section(cls, d: dict, name: str):
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown keys in [{name}]: {', '.join(sorted(unknown))}")
    return cls(**d)


def _parse_value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_config(path: str | Path | None, overrides: list[str] = ()) -> Config:
    """Config from a TOML or JSON file (or defaults), with ``section.key=value`` overrides applied."""
    d: dict = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from None
        try:
            d = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot parse config {path}: {e}") from None
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        d.setdefault(section, {})[name] = _parse_value(value.strip())
    return Config.from_dict(d)
