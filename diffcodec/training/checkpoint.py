"""Checkpoints (training state) and exported models (safetensors weights + config.json).

Loading never executes code from a file: checkpoints use ``torch.load(weights_only=True)`` and
exported weights are safetensors.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from ..io.files import atomic_replace, atomic_write_bytes, sha256_file, write_json


class ModelError(UserError):
    """A model or checkpoint is missing, unreadable or does not match; message is for the user."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_replace(path, lambda tmp: torch.save(state, tmp), private=True)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"no such checkpoint: {path}") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise ModelError(f"{path} is not a diffcodec checkpoint (torch cannot read it as one: "
                         f"{type(e).__name__})") from None
    if not isinstance(state, dict) or "config" not in state or "ema" not in state:
        raise ModelError(f"{path} is not a diffcodec checkpoint")
    return state


def write_weights(path: str | Path, state_dict: dict) -> None:
    """A state dict as float32 safetensors, written atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().float() for k, v in state_dict.items()}
    atomic_write_bytes(path, save(tensors))


def export_model(state_dict: dict, config: dict, out_dir: str | Path, metadata: dict | None = None) -> str:
    """Write ``config.json`` and ``model.safetensors`` into out_dir; returns the weights' sha256."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_weights(out / "model.safetensors", state_dict)
    write_json(out / "config.json", {"config": config, **(metadata or {})})
    return sha256_file(out / "model.safetensors")
