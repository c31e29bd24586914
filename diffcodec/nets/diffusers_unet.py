"""Hugging Face diffusers' ``UNet2DModel`` behind our network interface ``forward(x, t) -> output``.

``t`` is the original 0-based timestep (float, as ``GaussianDiffusion.model_t`` gives it; diffusers
counts timesteps from 0 too). The input is padded (edge replication) to a multiple of the U-Net's
downsampling and the output cropped back, as our own U-Net does. The output is what our diffusion
code reads: eps, followed by the C learned-range variance channels where the model has them. A
model trained to predict x_0 (``prediction_type="sample"``) or v (``"v_prediction"``) has its
prediction turned into eps with the training schedule's alpha-bar at ``t``, in float64:

    sample:        eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)
    v_prediction:  eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t

which ``predict_xstart_from_eps`` inverts exactly (up to float rounding), so x0_hat is the model's.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


class DiffusersUNet(nn.Module):
    """A loaded ``diffusers.UNet2DModel`` as an eps-prediction network of ``in_channels`` channels."""

    def __init__(self, unet: nn.Module, prediction_type: str = "epsilon",
                 alphas_cumprod: np.ndarray | None = None):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unsupported prediction_type {prediction_type!r}")
        self.unet = unet
        self.prediction_type = prediction_type
        self.in_channels = int(unet.config.in_channels)
        self.multiple = 2 ** (len(unet.config.block_out_channels) - 1)
        if prediction_type != "epsilon":
            if alphas_cumprod is None:
                raise ValueError(f"prediction_type {prediction_type!r} needs the training schedule")
            self.register_buffer("abar", torch.from_numpy(np.asarray(alphas_cumprod, np.float64)),
                                 persistent=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        ph, pw = (-H) % self.multiple, (-W) % self.multiple
        xin = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        out = self.unet(xin, t, return_dict=False)[0][..., :H, :W]
        if self.prediction_type == "epsilon":
            return out
        C = self.in_channels
        a = self.abar[t.round().long()].view(-1, *([1] * (x.dim() - 1)))
        pred, xt = out[:, :C].double(), x.double()
        if self.prediction_type == "sample":
            eps = (xt - a.sqrt() * pred) / (1.0 - a).sqrt()
        else:
            eps = a.sqrt() * pred + (1.0 - a).sqrt() * xt
        return torch.cat([eps.to(out.dtype), out[:, C:]], dim=1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
