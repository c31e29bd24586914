"""The DDPM U-Net (Ho et al. 2020, after PixelCNN++), configurable from tiny to paper size.

With ``attention_ds`` empty the network is fully convolutional: it runs on any image size,
padding the input (edge replication) to a multiple of 2**(levels-1) and cropping the output back.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UNetConfig:
    in_channels: int = 1
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int | tuple[int, ...] = 1   # per level, or one count for every level
    attention_ds: tuple[int, ...] = ()   # downsampling factors (1, 2, 4, ...) that get self-attention
    dropout: float = 0.0
    learn_sigma: bool = False            # output 2*C channels: eps and the variance interpolation v
    categories: int = 0                  # > 0: masking diffusion; input image + mask, output logits

    @property
    def net_in_channels(self) -> int:
        return self.in_channels * (2 if self.categories else 1)

    @property
    def out_channels(self) -> int:
        if self.categories:
            return self.in_channels * self.categories
        return self.in_channels * (2 if self.learn_sigma else 1)

    def __post_init__(self):
        n = self.num_res_blocks
        counts = [n] if isinstance(n, int) else list(n)
        if not isinstance(n, int) and len(counts) != len(self.channel_mult):
            raise ValueError("num_res_blocks: one count per level of channel_mult")
        if min(counts) < 0:
            raise ValueError("num_res_blocks: counts must be 0 or more")

    def blocks(self, level: int) -> int:
        """Residual blocks on the way down at ``level`` (the way up has one more)."""
        n = self.num_res_blocks
        return n if isinstance(n, int) else n[level]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        if not isinstance(self.num_res_blocks, int):
            d["num_res_blocks"] = list(self.num_res_blocks)
        d["attention_ds"] = list(self.attention_ds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNetConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        for k in ("channel_mult", "attention_ds"):
            if k in known:
                known[k] = tuple(int(v) for v in known[k])
        if isinstance(known.get("num_res_blocks"), (list, tuple)):
            known["num_res_blocks"] = tuple(int(v) for v in known["num_res_blocks"])
        return cls(**known)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def norm(ch: int) -> nn.GroupNorm:
    groups = max(g for g in range(1, min(32, ch) + 1) if ch % g == 0)
    return nn.GroupNorm(groups, ch)


def zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, cout))
        self.out_layers = nn.Sequential(norm(cout), nn.SiLU(), nn.Dropout(dropout),
                                        zero(nn.Conv2d(cout, cout, 3, padding=1)))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        h = self.in_layers(x) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.out_layers(h)


class AttnBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.norm = norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)
        h = F.scaled_dot_product_attention(q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None],
                                           v.transpose(1, 2)[:, None])[:, 0]
        # contiguous NCHW into the 1x1 projection: a channels-last view here made its weight gradient
        # channels-last too, which DDP (whose buckets follow the weight's layout) warned about
        return x + self.proj(h.transpose(1, 2).contiguous().view(B, C, H, W))


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        ch = c.base_channels
        emb_dim = 4 * ch
        self.time_embed = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.conv_in = nn.Conv2d(c.net_in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        # each entry's place in the U-Net, by which ``transplant`` matches two networks' entries:
        # ("res", level, blocks after it on its level) or ("sample", level) on the way down,
        # ("up", level, index on its level) on the way up
        self.roles: dict[str, list[tuple]] = {"down": [], "up": []}
        skips, cur, ds = [ch], ch, 1
        for level, mult in enumerate(c.channel_mult):
            for j in range(c.blocks(level)):
                blocks = [ResBlock(cur, ch * mult, emb_dim, c.dropout)]
                cur = ch * mult
                if ds in c.attention_ds:
                    blocks.append(AttnBlock(cur))
                self.down.append(nn.ModuleList(blocks))
                self.roles["down"].append(("res", level, c.blocks(level) - 1 - j))
                skips.append(cur)
            if level != len(c.channel_mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                self.roles["down"].append(("sample", level))
                skips.append(cur)
                ds *= 2
        self.mid = nn.ModuleList([ResBlock(cur, cur, emb_dim, c.dropout), AttnBlock(cur),
                                  ResBlock(cur, cur, emb_dim, c.dropout)]
                                 if c.attention_ds else
                                 [ResBlock(cur, cur, emb_dim, c.dropout),
                                  ResBlock(cur, cur, emb_dim, c.dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.blocks(level) + 1):
                blocks = [ResBlock(cur + skips.pop(), ch * mult, emb_dim, c.dropout)]
                cur = ch * mult
                if ds in c.attention_ds:
                    blocks.append(AttnBlock(cur))
                if level and i == c.blocks(level):
                    blocks.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    blocks.append(nn.Conv2d(cur, cur, 3, padding=1))
                    ds //= 2
                self.up.append(nn.ModuleList(blocks))
                self.roles["up"].append(("up", level, i))
        self.out = nn.Sequential(norm(cur), nn.SiLU(), zero(nn.Conv2d(cur, c.out_channels, 3, padding=1)))
        self.multiple = 2 ** (len(c.channel_mult) - 1)

    @staticmethod
    def _run(blocks, h, emb):
        for b in blocks:
            h = b(h, emb) if isinstance(b, ResBlock) else b(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] in about [-1, 1]; t: [B] original timesteps. Returns [B, out_C, H, W]."""
        H, W = x.shape[-2:]
        ph, pw = (-H) % self.multiple, (-W) % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        emb = self.time_embed(timestep_embedding(t, self.config.base_channels))
        h = self.conv_in(x)
        hs = [h]
        for blocks in self.down:
            h = self._run(blocks, h, emb)
            hs.append(h)
        h = self._run(self.mid, h, emb)
        for blocks in self.up:
            h = self._run(blocks, torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)[..., :H, :W]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def transplant(student: UNet, teacher: UNet) -> list[str]:
    """Copies into ``student`` every tensor of ``teacher`` that has the same place in the U-Net
    (``UNet.roles``: a level's residual blocks counted from its last one on the way down, from its
    first on the way up), the same name within it and the same shape: the start of a network with
    fewer blocks than a trained one. Returns the names of the student's tensors left as they were."""
    prefix = {}
    for part in ("down", "up"):
        where = {role: k for k, role in enumerate(teacher.roles[part])}
        for k, role in enumerate(student.roles[part]):
            if role in where:
                prefix[f"{part}.{k}."] = f"{part}.{where[role]}."
    source = teacher.state_dict()
    state, fresh = student.state_dict(), []
    for name, value in state.items():
        part = name.split(".", 1)[0]
        key = name
        if part in ("down", "up"):
            head = ".".join(name.split(".", 2)[:2]) + "."
            key = prefix[head] + name[len(head):] if head in prefix else None
        if key is not None and key in source and source[key].shape == value.shape:
            value.copy_(source[key])
        else:
            fresh.append(name)
    return fresh
