"""The T = D masking diffusion of the paper's Section 4.3: a diffusion that is an autoregressive model.

The forward process masks one more coordinate per step, in a fixed order sigma: x_t keeps the
first D - t coordinates of sigma and masks the other t, so x_0 is the image and x_D is all mask.
The reverse step p(x_{t-1} | x_t) reveals coordinate sigma_{D-t+1} with a categorical over the 256
grey levels predicted from the visible ones, and copies the rest. The forward posterior
q(x_{t-1} | x_t, x_0) is a point mass on x_0's value there, so each KL term of the variational
bound is that coordinate's negative log-likelihood, L_T = 0, and the bound is exactly the
autoregressive chain rule -sum_k log p(x_{sigma_k} | x_{sigma_<k}): there is no bound gap.

Training is order-agnostic (ARDM, Hoogeboom et al. 2021): a random order and a random number of
masked coordinates per example, the cross-entropy of every masked coordinate weighted by 1 / (number
masked), an unbiased estimate of the per-dimension NLL averaged over orders. The network sees the
masked image (masked coordinates set to 0) and the mask, and the number of masked coordinates as
its timestep. Units: the loss is in nats per dimension; the bound terms are bits.
"""
from __future__ import annotations

import math
import numpy as np
import torch
import torch.nn.functional as F

from ..coding.randomness import permutation
from ..errors import UserError
from ..io.pixels import pixel_classes, to_model_tensor, to_pixels

LN2 = math.log(2.0)
ORDER_STEP = 2 ** 24 - 1     # the random order uses the permutation stream of a step no chain has
ORDERS = ("raster", "random", "coarse")


class MaskingDiffusion:
    def __init__(self, shape, categories: int = 256):
        self.shape = tuple(int(v) for v in shape)            # (C, H, W)
        self.D = int(np.prod(self.shape))
        self.num_timesteps = self.D
        self.categories = int(categories)

    # ------------------------------------------------------------------ network interface
    def logits(self, net, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x0: [B, C, H, W] model range; mask: [B, C, H, W] (1 = masked). -> [B, C, K, H, W]."""
        n_masked = mask.flatten(1).sum(1).round().long()
        inp = torch.cat([torch.where(mask > 0, torch.zeros_like(x0), x0), mask], dim=1)
        out = net(inp, n_masked)
        B, C, H, W = x0.shape
        return out.view(B, C, self.categories, H, W)

    @classmethod
    def from_config(cls, cfg, shape=None) -> "MaskingDiffusion":
        """The masking diffusion of a config, for images of ``shape`` (default: its training crop)."""
        return cls(shape or (cfg.model.in_channels, cfg.data.crop, cfg.data.crop), cfg.model.categories)

    def coordinate(self, logits: torch.Tensor, d) -> torch.Tensor:
        """Logits [B, n, K] of flat coordinates ``d`` (int array, n of them) from the network's
        [B, C, K, H, W]."""
        B, C, K, H, W = logits.shape
        flat = logits.permute(0, 1, 3, 4, 2).reshape(B, C * H * W, K)
        return flat[:, torch.as_tensor(np.asarray(d, np.int64).reshape(-1), device=logits.device)]

    @staticmethod
    def classes(x0: torch.Tensor) -> torch.Tensor:
        return pixel_classes(x0)

    def training_losses(self, net, x0, t, noise=None, loss_type=None):
        """Order-agnostic loss per example (nats per dimension); t in [0, D) masks t + 1 coordinates.
        ``noise`` and ``loss_type`` are accepted for the training loop's interface and unused."""
        B = x0.shape[0]
        n_masked = (t + 1).float()
        ranks = torch.rand(B, self.D, device=x0.device).argsort(1).argsort(1)
        mask = (ranks < n_masked[:, None]).float().view_as(x0)
        logits = self.logits(net, x0, mask)
        ce = F.cross_entropy(logits.transpose(1, 2), self.classes(x0), reduction="none")  # [B, C, H, W]
        return (ce * mask).flatten(1).sum(1) / n_masked

    # ------------------------------------------------------------------ orders
    def order(self, kind: str = "raster", seed: int = 0) -> np.ndarray:
        """Reveal order sigma (sigma[0] is revealed first): raster; a seeded random permutation;
        or coarse-to-fine: the pixels on a grid of stride 8, then those new on strides 4, 2 and 1
        (each level in raster order, all channels of a pixel together), like ARDM's upscaling orders."""
        if kind == "raster":
            return np.arange(self.D)
        if kind == "random":
            return permutation(seed, ORDER_STEP, self.D)
        if kind == "coarse":
            C, H, W = self.shape
            yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
            level = np.full((H, W), 3)
            for lv, stride in enumerate((8, 4, 2)):
                level[(yy % stride == 0) & (xx % stride == 0) & (level == 3)] = lv
            pix = np.argsort(level.ravel(), kind="stable")               # pixel indices, coarse first
            return (np.arange(C)[None, :] * H * W + pix[:, None]).ravel()  # all channels of each pixel
        raise UserError(f"unknown order {kind!r}; use {', '.join(ORDERS)}")

    # ------------------------------------------------------------------ the reverse chain
    def reveal(self, net, x: torch.Tensor, order: np.ndarray, progress=None, sizes=None):
        """Walk the reverse chain in ``order``: yields (k, d, logits, mask) where step k reveals the
        flat coordinates ``d`` (an int array); ``logits`` ([B, C, K, H, W]) were computed with the
        earlier coordinates visible, and ``mask`` ([B, D], 1 = masked) already has ``d`` revealed.
        ``sizes`` reveals several coordinates per step (one network evaluation each; default one
        per step, T = D). The caller may write coordinates ``d`` of ``x`` before the next step."""
        mask = torch.ones(x.shape[0], self.D, device=x.device)
        sizes = np.ones(self.D, np.int64) if sizes is None else np.asarray(sizes, np.int64)
        if sizes.sum() != self.D or (sizes < 1).any():
            raise ValueError("reveal step sizes must be positive and sum to D")
        starts = np.concatenate([[0], np.cumsum(sizes)])
        for k in range(len(sizes)):
            d = np.asarray(order[starts[k]:starts[k + 1]], np.int64)
            logits = self.logits(net, x, mask.view_as(x))
            mask[:, torch.from_numpy(d).to(mask.device)] = 0.0
            yield k, d, logits, mask
            if progress:
                progress(1)

    def _start(self, net, images: np.ndarray | None, n: int = 1) -> torch.Tensor:
        """x for a walk along the chain: the images' levels (teacher forcing), or n blank images."""
        dev = next(net.parameters()).device
        if images is None:
            return torch.zeros(n, *self.shape, device=dev)
        return grey_levels(self.categories, dev)[torch.from_numpy(images.astype(np.int64)).to(dev)]

    # ------------------------------------------------------------------ the bound
    @torch.no_grad()
    def bound_terms(self, net, images: np.ndarray, order: np.ndarray, progress=None, sizes=None,
                    on_step=None) -> np.ndarray:
        """Per-coordinate code lengths in bits for uint8 images [B, C, H, W]: [B, D], entry n is
        -log2 p(x_{sigma_n} | the coordinates revealed before its step). With one coordinate per
        step (``sizes`` None) these are the D KL terms of the bound, L_{D-n-1}, and sum to the
        autoregressive NLL. ``on_step(n, prediction)`` gets, before each step, the reconstruction from
        the n coordinates revealed so far (exact there, the predicted mean elsewhere; uint8 [B, D])."""
        x0 = self._start(net, images)
        cls = torch.from_numpy(images.astype(np.int64)).to(x0.device).flatten(1)
        out, n = np.zeros((x0.shape[0], self.D)), 0
        for k, d, logits, mask in self.reveal(net, x0, order, progress, sizes):
            lp = F.log_softmax(self.coordinate(logits, d), dim=2)                    # [B, n, K]
            idx = cls[:, torch.from_numpy(d).to(cls.device)]
            out[:, n:n + len(d)] = -(lp.gather(2, idx[..., None])[..., 0] / LN2).double().cpu().numpy()
            if on_step:   # what a receiver holding the n coordinates before this step reconstructs
                on_step(n, self.prediction(logits, x0, self.unreveal(mask, d)).reshape(len(x0), -1))
            n += len(d)
        return out

    @staticmethod
    def unreveal(mask: torch.Tensor, d: np.ndarray) -> torch.Tensor:
        """``mask`` ([B, D]) with coordinates ``d`` (just revealed by ``reveal``) masked again."""
        m = mask.clone()
        m[:, torch.from_numpy(np.asarray(d, np.int64)).to(m.device)] = 1.0
        return m

    def prediction(self, logits: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """uint8 [B, C, H, W]: the revealed coordinates of x exact, the predicted mean of the masked
        ones (the receiver's reconstruction of a partly revealed image)."""
        levels = grey_levels(self.categories, x.device)
        mean = (F.softmax(logits.double(), dim=2) * levels.double().view(1, 1, -1, 1, 1)).sum(2).float()
        m = mask.view_as(x)
        return to_pixels(x * (1 - m) + mean * m)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(self, net, n: int, order: np.ndarray, seed: int = 0, frames: int = 0, progress=None):
        """Ancestral sampling (= autoregressive generation in ``order``). Returns uint8 [n, C, H, W]
        and, with frames > 0, snapshots [frames, n, C, H, W] of (revealed pixels, predicted mean
        elsewhere) taken evenly along the chain (the last is the sample)."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = self._start(net, None, n)
        levels = grey_levels(self.categories, x.device)
        snaps, keep = [], set(np.linspace(0, self.D, frames + 1).astype(int)[1:]) if frames else set()
        for k, d, logits, mask in self.reveal(net, x, order, progress):
            probs = F.softmax(self.coordinate(logits, d)[:, 0].double().cpu(), dim=1)
            v = torch.multinomial(probs, 1, generator=gen).squeeze(1).to(x.device)
            x.view(n, -1)[:, int(d[0])] = levels[v]
            if k + 1 in keep:
                snaps.append(self.prediction(logits, x, mask))
        out = to_pixels(x)
        return (out, np.stack(snaps)) if frames else out


def grey_levels(categories: int, device) -> torch.Tensor:
    """Model-range value of each grey level (float32, the same numbers on both sides)."""
    return to_model_tensor(np.arange(categories)).to(device)
