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
from ..io.checksums import pixel_crc
from ..io.pixels import pixel_classes, to_model_tensor, to_pixels

LN2 = math.log(2.0)
ORDER_STEP = 2 ** 24 - 1     # the random order uses the permutation stream of a step no chain has


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

    def coordinate(self, logits: torch.Tensor, d: int) -> torch.Tensor:
        """Logits [B, K] of flat coordinate d from the network's [B, C, K, H, W]."""
        c, rest = divmod(int(d), self.shape[1] * self.shape[2])
        return logits[:, c].flatten(2)[:, :, rest]

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
        """Reveal order sigma (sigma[0] is revealed first): raster, or a seeded random permutation."""
        if kind == "raster":
            return np.arange(self.D)
        if kind == "random":
            return permutation(seed, ORDER_STEP, self.D)
        raise UserError(f"unknown order {kind!r}; use raster or random")

    # ------------------------------------------------------------------ the reverse chain
    def reveal(self, net, x: torch.Tensor, order: np.ndarray, progress=None):
        """Walk the reverse chain in ``order``: yields (k, d, logits, mask) for step k, which reveals
        flat coordinate d; ``logits`` ([B, C, K, H, W]) were computed with sigma_<k visible, and
        ``mask`` ([B, D], 1 = masked) already has d revealed. The caller may write coordinate d of
        ``x`` (sampling, decoding) before the next step."""
        mask = torch.ones(x.shape[0], self.D, device=x.device)
        for k, d in enumerate(order):
            logits = self.logits(net, x, mask.view_as(x))
            mask[:, d] = 0.0
            yield k, int(d), logits, mask
            if progress:
                progress(1)

    def _start(self, net, images: np.ndarray | None, n: int = 1) -> torch.Tensor:
        """x for a walk along the chain: the images' levels (teacher forcing), or n blank images."""
        dev = next(net.parameters()).device
        if images is None:
            return torch.zeros(n, *self.shape, device=dev)
        return _levels(self.categories, dev)[torch.from_numpy(images.astype(np.int64)).to(dev)]

    # ------------------------------------------------------------------ the bound
    @torch.no_grad()
    def bound_terms(self, net, images: np.ndarray, order: np.ndarray, progress=None) -> np.ndarray:
        """KL terms of the bound, in bits, for uint8 images [B, C, H, W]: [B, D], term k is
        L_{D-k-1} = -log2 p(x_{sigma_k} | x_{sigma_<k}) (one network evaluation per step)."""
        x0 = self._start(net, images)
        cls = torch.from_numpy(images.astype(np.int64)).to(x0.device).flatten(1)
        out = np.zeros((x0.shape[0], self.D))
        for k, d, logits, _ in self.reveal(net, x0, order, progress):
            lp = F.log_softmax(self.coordinate(logits, d), dim=1)  # [B, K]
            out[:, k] = -(lp.gather(1, cls[:, d:d + 1]).squeeze(1) / LN2).double().cpu().numpy()
        return out

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def sample(self, net, n: int, order: np.ndarray, seed: int = 0, frames: int = 0, progress=None):
        """Ancestral sampling (= autoregressive generation in ``order``). Returns uint8 [n, C, H, W]
        and, with frames > 0, snapshots [frames, n, C, H, W] of (revealed pixels, predicted mean
        elsewhere) taken evenly along the chain (the last is the sample)."""
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x = self._start(net, None, n)
        levels = _levels(self.categories, x.device)
        snaps, keep = [], set(np.linspace(0, self.D, frames + 1).astype(int)[1:]) if frames else set()
        for k, d, logits, mask in self.reveal(net, x, order, progress):
            probs = F.softmax(self.coordinate(logits, d).double().cpu(), dim=1)
            v = torch.multinomial(probs, 1, generator=gen).squeeze(1).to(x.device)
            x.view(n, -1)[:, d] = levels[v]
            if k + 1 in keep:
                mean = (F.softmax(logits, dim=2) * levels.view(1, 1, -1, 1, 1)).sum(2)
                m = mask.view_as(x)
                snaps.append(to_pixels(x * (1 - m) + mean * m))
        out = to_pixels(x)
        return (out, np.stack(snaps)) if frames else out

    # ------------------------------------------------------------------ lossless coding
    @torch.no_grad()
    def encode(self, net, image: np.ndarray, order: np.ndarray) -> bytes:
        """Code uint8 [C, H, W] losslessly, one coordinate per step: CRC-16 + range-coded words."""
        import constriction

        enc = constriction.stream.queue.RangeEncoder()
        flat = image.reshape(-1)
        for _, d, logits, _ in self.reveal(net, self._start(net, image[None]), order):
            pmf = self._pmf(logits, d)[0]
            enc.encode(np.array([flat[d]], np.int32), constriction.stream.model.Categorical(pmf, perfect=False))
        return pixel_crc(image) + enc.get_compressed().astype(">u4").tobytes()

    @torch.no_grad()
    def decode(self, net, data: bytes, order: np.ndarray) -> np.ndarray:
        import constriction

        if len(data) < 2 or (len(data) - 2) % 4:
            raise UserError("masking-diffusion stream is truncated")
        words = np.frombuffer(data[2:], ">u4").astype(np.uint32)
        dec = constriction.stream.queue.RangeDecoder(words)
        x = self._start(net, None)
        out = np.zeros(self.D, np.uint8)
        levels = _levels(self.categories, x.device)
        for _, d, logits, _ in self.reveal(net, x, order):
            pmf = self._pmf(logits, d)[0]
            v = int(dec.decode(constriction.stream.model.Categorical(pmf, perfect=False)))
            out[d] = v
            x.view(1, -1)[0, d] = levels[v]
        image = out.reshape(self.shape)
        if pixel_crc(image) != data[:2]:
            raise UserError("decoded pixels do not match the stored checksum: the decoder's model "
                            "output differs from the encoder's, or the file is corrupt")
        return image

    def _pmf(self, logits: torch.Tensor, d: int) -> np.ndarray:
        """Coordinate d's pmf from the logits, snapped: logits rounded to 1/64 before a float64
        softmax, so the coder sees identical numbers unless the network drifts across a step."""
        lg = self.coordinate(logits, d).double().cpu().numpy()
        lg = np.round(lg * 64.0) / 64.0
        p = np.exp(lg - lg.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)


def _levels(categories: int, device) -> torch.Tensor:
    """Model-range value of each grey level (float32, the same numbers on both sides)."""
    return to_model_tensor(np.arange(categories)).to(device)
