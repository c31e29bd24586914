"""Networks only: ``forward(x, t) -> output``; they know nothing about diffusion."""
from .unet import UNet, UNetConfig

__all__ = ["UNet", "UNetConfig"]
