"""uint8 pixels <-> the model's range [-1, 1]: the one place that knows the mapping
x = pixel / 127.5 - 1. numpy in float64 (coding), torch in float32 (networks)."""
from __future__ import annotations

import numpy as np

SCALE = 127.5


def to_model(pixels) -> np.ndarray:
    """uint8 (or integer) pixels -> float64 numpy array in [-1, 1]."""
    return np.asarray(pixels).astype(np.float64) / SCALE - 1.0


def to_model_tensor(pixels):
    """uint8 pixels (array or tensor) -> float32 tensor in [-1, 1]."""
    import torch

    return torch.as_tensor(np.asarray(pixels)).float() / SCALE - 1.0


def to_pixel_units(x):
    """Model range -> unrounded pixel units (0..255 for x in [-1, 1]); numpy or torch."""
    return (x + 1.0) * SCALE


def to_pixels(x) -> np.ndarray:
    """Model-range values (numpy, or a tensor, taken in float64) -> uint8 numpy, rounded and clipped."""
    if not isinstance(x, np.ndarray):
        x = x.detach().cpu().double().numpy()
    return np.clip(np.rint(to_pixel_units(x)), 0, 255).astype(np.uint8)


def pixel_classes(x):
    """Model-range tensor -> its grey levels 0..255 as a long tensor (on x's device)."""
    return to_pixel_units(x).round().clamp(0, 255).long()
