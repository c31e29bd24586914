"""The network as the codec runs it: a copy of a trained U-Net that computes the same function,
faster, with the same bits on 1, 2 or 4 CPU threads.

Bit-exact decoding needs the network's float arithmetic to be the same on the encoder's and the
decoder's thread counts (the chain amplifies a last-bit difference into moved pixels: eval/README.md,
"Speed"). On the CPU, channels-last convolutions are (each output is summed by one thread in an
order fixed by the kernel), but torch's GroupNorm on channels-last tensors and its matrix-vector
products split their sums across threads. So the copy

- keeps weights and activations channels-last (faster than NCHW in float32 too);
- computes each GroupNorm's statistics from block sums (``avg_pool2d``: each block summed by one
  thread), added per channel by a second pool and per group in float64 by ``cumsum``, a
  sequential scan: an order fixed by the shape alone; SiLU follows in place;
- computes the time-embedding Linear layers' sums by ``cumsum`` too.

oneDNN's float32 1x1 convolutions do not always: on an AVX-512 CPU (AMD EPYC, 2026-12-07) one
from 256 channels, or to 8, gives other bits on one thread than on two (its kernel is blocked
another way), as one from 16 to 8 did on an AVX2 CPU. So float32 1x1 convolutions (e.g. the
residual blocks' skip projections) run on one thread, which computes what a one-thread decoder
computes (``conv2d``); where a shape was exact nothing changes. In a sweep on the AVX-512 CPU, 3x3
and depthwise float32 and native bfloat16 convolutions were exact on 1, 2 and 4 threads; the photo
model's whole copy was exact on both CPUs.

Element-wise kernels remain: torch splits a tensor between threads at points that depend on the
count and ends each piece with a scalar loop whose last bit can differ from the vector loop's.
On 1, 2 and 4 threads this network's tensors split at multiples of the vector width; on 3, 5 or
6, a float32 decode can move a few values by a level (bfloat16 rounding hid it in every test).
Attention layers (not in the fully convolutional photo model) are left as they are.

On a CPU most of the time at full size went to element-wise passes over the activations, not to the
convolutions (``eval/README.md``, "Speed"), so the copy also fuses them into oneDNN convolutions
(``torch.ops.mkldnn._convolution_pointwise``), each output computed by one thread:

- GroupNorm's affine map and the SiLU after it: one depthwise 1x1 convolution with a swish
  post-op (one pass instead of two);
- the time embedding, added after a residual block's first convolution: folded into its bias;
- the residual sum: the block's last convolution adds the skip branch as a binary post-op.

A batch of tiles of one image (``nets.tiling``) shares one time embedding, so its convolutions
fuse the same way; its GroupNorms, whose statistics are per tile, run as separate ops. Elsewhere
(a GPU, a batch of several images, maps under FUSE_MIN_PIXELS for the batch) the same sums run
as separate ops. Which way a layer runs depends on its shape alone, so encoder and decoder agree.

oneDNN computes bfloat16 convolutions only on CPUs with AVX512-BW, AVX-NE-CONVERT or AMX. On
others (AVX2 alone, as on many AMD and laptop CPUs) every convolution of a bfloat16 network runs
``emulated_conv``: the same sums in float32 on the bfloat16-rounded operands, rounded once as
oneDNN rounds. So a bfloat16 file decodes on any CPU (slower there than float32: the encoder picks
float32 on such a CPU), but not necessarily to the same pixels: the order of the float32 sums
differs, and the chain spreads the last bits (in one measurement, emulating on an AVX512-BF16 CPU,
30% of a 256x256 file's values moved, by up to 4 levels; eval/README.md, "An AVX-512 CPU").
"""
from __future__ import annotations

import contextlib
import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

from .unet import ResBlock

BLOCKS = 32   # GroupNorm statistics: at most BLOCKS x BLOCKS block sums per channel
FUSE_MIN_PIXELS = 64 * 64     # smallest map (H x W) the fused convolutions run on


def ordered_total(v: torch.Tensor) -> torch.Tensor:
    """Sum over the last dimension in float64, element by element from the first: the order, and
    so the rounding, never depends on the thread count."""
    return v.double().cumsum(-1)[..., -1]


def _fusable(x: torch.Tensor) -> bool:
    """Whether x goes through oneDNN's fused convolutions: a channels-last CPU tensor in float32 or
    bfloat16 whose maps (all of the batch's together) have at least FUSE_MIN_PIXELS pixels: below,
    their fixed cost per call outweighs the passes they save (a bfloat16 forward pass on a 64x64
    image took 14.4 ms with every map fused, 12.5 with none, 13.2 with this threshold; at 256x256,
    55 against 62 ms)."""
    return (x.device.type == "cpu" and _MKLDNN is not None and torch.backends.mkldnn.is_available()
            and x.dtype in (torch.float32, torch.bfloat16)
            and x.shape[0] * x.shape[-2] * x.shape[-1] >= FUSE_MIN_PIXELS
            and x.is_contiguous(memory_format=torch.channels_last))


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """Whether this CPU's oneDNN computes bfloat16 convolutions (module docstring)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _emulating(x: torch.Tensor, autocast: bool = True) -> bool:
    """Whether a convolution of x runs ``emulated_conv``: x on a CPU without native bfloat16
    convolutions, in bfloat16, or under bfloat16 autocast for a convolution autocast casts
    (``autocast``; not oneDNN's fused ops, which compute in x's format)."""
    lower = x.dtype == torch.bfloat16 or (autocast and torch.is_autocast_enabled("cpu")
                                          and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    return x.device.type == "cpu" and lower and not native_bf16()


def emulated_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding, stride,
                  dilation, groups: int, add: torch.Tensor | None = None, post: str = "none") -> torch.Tensor:
    """A bfloat16 convolution as oneDNN computes it, for a CPU where it cannot: the operands (x,
    weight, bias and ``add``) rounded to bfloat16; their products, exact in float32, summed in
    float32; the bias, ``add`` and the ``post`` op ("swish" or "none") applied in float32; the
    result rounded once to bfloat16. The same function as oneDNN's kernels but for the order
    of the float32 sums (and the last float32 bits of SiLU, whose approximations differ). It
    runs on one thread: on an AVX2 CPU, oneDNN's float32 kernels for a few shapes (a 1x1
    convolution from 16 channels to 8) sum in an order that depends on the thread count (as
    SiLU's vector and scalar loops may round differently), and bfloat16's rounding turns a
    last-bit difference into a moved value. -> bfloat16, x's layout."""
    def low(v):
        return None if v is None else v.to(torch.bfloat16).float()

    with one_thread(), torch.autocast("cpu", enabled=False):
        y = F.conv2d(low(x), low(weight), low(bias), stride, padding, dilation, groups)
        if add is not None:
            y.add_(low(add))
        if post == "swish":
            F.silu(y, inplace=True)
        return y.to(torch.bfloat16)


@contextlib.contextmanager
def one_thread():
    """Run torch's CPU kernels on one thread inside this context."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _thread_dependent(x: torch.Tensor, conv: nn.Conv2d, autocast: bool = True) -> bool:
    """Whether ``conv`` of x is a float32 1x1 convolution (groups 1; not depthwise) on the CPU,
    which oneDNN may block differently on one thread than on several (module docstring). Under
    bfloat16 autocast F.conv2d runs in bfloat16; pass ``autocast=False`` for oneDNN's fused ops,
    which compute in x's format whatever autocast says."""
    cast = autocast and torch.is_autocast_enabled("cpu")
    return (x.device.type == "cpu" and x.dtype == torch.float32 and not cast
            and conv.kernel_size == (1, 1) and conv.groups == 1)


def conv2d(x: torch.Tensor, conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x convolved with ``weight`` and ``bias`` in ``conv``'s geometry (stride, zero padding,
    dilation, groups): ``emulated_conv`` where ``_emulating`` says, else F.conv2d, on one thread
    where ``_thread_dependent`` says."""
    if _emulating(x):
        return emulated_conv(x, weight, bias, conv.padding, conv.stride, conv.dilation, conv.groups)
    with one_thread() if _thread_dependent(x, conv) else contextlib.nullcontext():
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class InferenceConv2d(nn.Conv2d):
    """An nn.Conv2d that runs ``emulated_conv`` where bfloat16 convolutions are not native, and
    as itself elsewhere (``conv2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super().forward(x)
        return conv2d(x, self, self.weight, self.bias)


def _pointwise_op():
    """oneDNN's fused convolution (torch ships it for its compiler), or None in a build without it."""
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


_MKLDNN = _pointwise_op()


def fused_conv(x: torch.Tensor, conv: nn.Conv2d, bias: torch.Tensor | None = None,
               add: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(x)`` with ``bias`` ([B, out] or None) added to its bias and ``add`` (a tensor of the
    output's shape, or None) added to its output, in x's format: on a CPU, one oneDNN convolution
    (``bias`` folded into the convolution's own where it is one row for the whole batch, as for a
    single image or a batch of tiles of one image); elsewhere the same sums as separate ops."""
    b = conv.bias
    if bias is not None and bias.shape[0] == 1:
        b, bias = (bias[0].double() + (0 if b is None else b.double())), None
    args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
    if (_fusable(x) and bias is None and not isinstance(conv.padding, str)
            and (add is None or (add.dtype == x.dtype and _fusable(add)))):
        w, b = conv.weight.to(x.dtype), None if b is None else b.to(x.dtype)
        if _emulating(x, autocast=False):
            return emulated_conv(x, w, b, *args, add=add)
        with one_thread() if _thread_dependent(x, conv, autocast=False) else contextlib.nullcontext():
            if add is None:
                return _MKLDNN(x, w, b, *args, "none", [], "")
            return _MKLDNN.binary(x, add, w, b, *args, "add", None, None, [], None)
    y = conv2d(x, conv, conv.weight, None if b is None else b.to(conv.weight.dtype))
    if bias is not None:
        y = y + bias.to(y.dtype)[:, :, None, None]
    return y if add is None else y + add


def swish_affine(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """SiLU(x * scale + shift) per channel ([C] each, in x's format) for a ``_fusable`` x whose
    images share the map: one oneDNN depthwise 1x1 convolution with a swish post-op."""
    C = x.shape[1]
    args = ([0, 0], [1, 1], [1, 1], C)
    if _emulating(x, autocast=False):
        return emulated_conv(x, scale.reshape(C, 1, 1, 1), shift.reshape(C), *args, post="swish")
    return _MKLDNN(x, scale.reshape(C, 1, 1, 1), shift.reshape(C), *args, "swish", [], "")


class FixedOrderGroupNorm(nn.Module):
    """``gn`` (an nn.GroupNorm), then SiLU in place when ``silu``: the same function, with
    statistics summed in a fixed order (module docstring). Inference only (SiLU is in place)."""

    def __init__(self, gn: nn.GroupNorm, silu: bool):
        super().__init__()
        self.gn, self.silu = gn, silu

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 mean and variance per (image, group) of a [B, C, H, W] tensor: [B, G] each.

        Each channel's sum is a sum of block sums (``avg_pool2d``: each output summed by one
        thread, in the kernel's order; in x's format, so bfloat16 blocks round to bfloat16),
        then of those in float32 (a second pool over the whole map), then of the group's
        channels in float64 (``ordered_total``)."""
        B, C, H, W = x.shape
        G = self.gn.num_groups
        kh, kw = -(-H // BLOCKS), -(-W // BLOCKS)

        def channel_sums(v):
            blocks = F.avg_pool2d(v, (kh, kw), (kh, kw), ceil_mode=True, divisor_override=1).float()
            return F.avg_pool2d(blocks, blocks.shape[-2:], divisor_override=1).reshape(B, G, C // G)

        n = H * W * (C // G)
        mean = ordered_total(channel_sums(x)) / n
        mean_sq = ordered_total(channel_sums(x.square())) / n
        return mean, (mean_sq - mean * mean).clamp_min(0)

    def affine(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GroupNorm of x as x * scale + shift: float64 [B, G, C/G] each."""
        C, G = x.shape[1], self.gn.num_groups
        mean, var = self.moments(x)
        rstd = (var + self.gn.eps).rsqrt()[:, :, None]
        scale = self.gn.weight.double().view(G, C // G) * rstd
        return scale, self.gn.bias.double().view(G, C // G) - mean[:, :, None] * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C = x.shape[:2]
        scale, shift = self.affine(x)
        if self.silu and B == 1 and _fusable(x):
            return swish_affine(x, scale.to(x.dtype), shift.to(x.dtype))
        scale, shift = (v.reshape(B, C, 1, 1).to(x.dtype) for v in (scale, shift))
        y = torch.addcmul(shift, x, scale)     # in x's format: bfloat16 under autocast, as torch's
        return F.silu(y, inplace=True) if self.silu else y


class FixedOrderLinear(nn.Module):
    """``linear`` on [B, in] vectors with each output summed by ``ordered_total`` (in float64;
    returned in autocast's format when it is on, else float32): the time embedding, a few hundred
    values per call."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.linear.weight.double(), self.linear.bias
        y = ordered_total(x.double()[:, None, :] * w[None])
        y = y if b is None else y + b.double()
        # autocast would run nn.Linear in its lower format: the same here, so the embedding is
        # rounded to that format, as in the network, before it joins the first convolution's bias
        lower = torch.is_autocast_enabled(x.device.type)
        return y.to(torch.get_autocast_dtype(x.device.type) if lower else torch.float32)


class FusedResBlock(ResBlock):
    """A ``ResBlock`` as four passes over its maps (module docstring): norm and SiLU as one
    depthwise convolution, the first convolution with the time embedding in its bias, norm and
    SiLU again, the last convolution adding the skip branch. The same function as the block it is
    made from."""

    def __init__(self, block: ResBlock):
        nn.Module.__init__(self)
        norm_in, _, self.conv_in = block.in_layers
        norm_out, _, _, self.conv_out = block.out_layers
        self.norm_in, self.norm_out = (FixedOrderGroupNorm(n, silu=True) for n in (norm_in, norm_out))
        self.emb, self.skip = block.emb, block.skip

    def forward(self, x, emb):
        h = fused_conv(self.norm_in(x), self.conv_in, bias=self.emb(emb))
        return fused_conv(self.norm_out(h), self.conv_out, add=self.skip(x))


def emulating_convs(net: nn.Module) -> nn.Module:
    """``net`` with each nn.Conv2d made an InferenceConv2d (the same module, which has no state of
    its own): where oneDNN has no bfloat16 kernels, its convolutions are emulated under bfloat16
    autocast instead of running torch's slow fallback. -> net itself."""
    for mod in net.modules():
        if type(mod) is nn.Conv2d:
            mod.__class__ = InferenceConv2d
    return net


def for_inference(net: nn.Module) -> nn.Module:
    """A copy of ``net`` for coding (module docstring): channels-last weights; each residual block
    a FusedResBlock; every other GroupNorm, with the SiLU after it, a FixedOrderGroupNorm; each
    Linear a FixedOrderLinear; each nn.Conv2d an InferenceConv2d (``emulating_convs``). Feed it
    channels-last inputs."""
    net = emulating_convs(copy.deepcopy(net).eval().to(memory_format=torch.channels_last))
    for mod in list(net.modules()):
        if isinstance(mod, nn.ModuleList):
            for i in range(len(mod)):
                if type(mod[i]) is ResBlock:
                    mod[i] = FusedResBlock(mod[i])
    for mod in list(net.modules()):
        if isinstance(mod, nn.Sequential):
            for i in range(len(mod)):
                if isinstance(mod[i], nn.GroupNorm):
                    fuse = i + 1 < len(mod) and isinstance(mod[i + 1], nn.SiLU)
                    mod[i] = FixedOrderGroupNorm(mod[i], silu=fuse)
                    if fuse:
                        mod[i + 1] = nn.Identity()
                elif isinstance(mod[i], nn.Linear):
                    mod[i] = FixedOrderLinear(mod[i])
    return net
