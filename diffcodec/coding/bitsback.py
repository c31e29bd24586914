"""Lossless coding with bits-back ANS (BB-ANS) over the diffusion chain, chained across images.

The latents z_1..z_N of a respaced chain (z_j is x at chain index j - 1, z_0 the image) are
discretized on fixed grids of width delta_j (an 8th of the smallest noise scale around z_j), so every
continuous density becomes a pmf over grid indices and the grid widths cancel in the net rate.
Per image, in Bit-Swap order (the bits borrowed from the stack stay at about two steps' pops,
whatever N; about 9 bits per dimension with these grids):

    encoder: for j = 1..N: pop z_j ~ q(z_j | z_{j-1}); push z_{j-1} with p(z_{j-1} | z_j)
             push z_N with p(z_N) = N(0, I)
    decoder: pop z_N; for j = N..1: pop z_{j-1} with p(z_{j-1} | z_j); push z_j with q(z_j | z_{j-1})

q(z_j | z_{j-1}) = N(sqrt(alpha_j) z_{j-1}, beta_j) is a schedule constant applied to grid values,
so its pmf is exact on both sides. p(z_{j-1} | z_j) is a network output: its mean and scale (in
grid units) are snapped to fixed grids before they reach the coder (p(z_0 | z_1) is the
discretized decoder of the lossless layer). In expectation the net cost per image is the
variational bound of the same chain. The stack starts with seeded random words, which the decoder
gets back at the end and checks: a mismatch means the model outputs differed between the two sides.

Units: rates are bits per dimension (per sub-pixel); ``words`` are the coder's uint32 words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..core.adapter import NetworkAdapter
from ..errors import UserError
from ..io.pixels import to_model
from .entropy import gauss_op, info_bits
from .lossless import snapped_params
from .randomness import PURPOSE_INITIAL, uniforms

GRID_FRACTION = 8        # delta_j = smallest noise scale of step j / 8


class BitsBackMismatch(UserError):
    pass


class StackDry(RuntimeError):
    """The initial words were too few for the first image's borrowed bits."""


def _snap_mean(v: np.ndarray) -> np.ndarray:
    """Grid-unit means on a 1/64 grid (exact binary fractions)."""
    return np.round(v * 64.0) / 64.0


def _snap_scale(s: np.ndarray) -> np.ndarray:
    """Grid-unit scales rounded to 7 mantissa bits (relative step < 1%), exactly representable."""
    mant, ex = np.frexp(np.maximum(s, 1e-3))
    return np.ldexp(np.round(mant * 128.0) / 128.0, ex)


@dataclass
class Chain:
    """The respaced chain's grids and forward kernels (all float64 schedule constants)."""
    diffusion: object
    delta: np.ndarray        # [N + 1]; delta[j] for z_j, j >= 1 (delta[0] unused: pixels)
    radius: np.ndarray       # [N + 1]; grid indices of z_j lie in [-radius, radius]

    @classmethod
    def build(cls, diffusion) -> "Chain":
        betas, post = diffusion.betas, diffusion.posterior_variance
        N = len(betas)
        delta, radius = np.zeros(N + 1), np.zeros(N + 1, np.int64)
        for j in range(1, N + 1):
            smallest = betas[j - 1] if j == N else min(betas[j - 1], post[j])
            delta[j] = math.sqrt(smallest) / GRID_FRACTION
            abar = diffusion.alphas_cumprod[j - 1]
            radius[j] = math.ceil((math.sqrt(abar) * 1.0 + 8.0 * math.sqrt(1.0 - abar) + 0.1) / delta[j])
        return cls(diffusion, delta, radius)

    @property
    def N(self) -> int:
        return len(self.delta) - 1

    def prior(self, D: int):
        """Grid-unit mean and scale of p(z_N) = N(0, I)."""
        return np.zeros(D), np.full(D, 1.0 / self.delta[self.N])

    def forward(self, j: int, z_prev: np.ndarray):
        """Grid-unit mean and scale of q(z_j | z_{j-1}); z_prev in model units (pixels for j = 1)."""
        a, b = self.diffusion.alphas[j - 1], self.diffusion.betas[j - 1]
        return math.sqrt(a) * z_prev / self.delta[j], np.full(z_prev.shape, math.sqrt(b) / self.delta[j])


@dataclass
class ChainStats:
    net_bits: list[float] = field(default_factory=list)       # per image: stack growth
    borrowed_bits: list[float] = field(default_factory=list)  # per image: deepest dip below its start
    bound_bits: list[float] = field(default_factory=list)     # per image: information content


def _models(chain: Chain):
    import constriction

    fam = constriction.stream.model.QuantizedGaussian
    return [fam(0, 255)] + [fam(-int(r), int(r)) for r in chain.radius[1:]]


def _initial_words(seed: int, n_words: int) -> np.ndarray:
    u = uniforms(seed, PURPOSE_INITIAL, 0, n_words)
    return np.minimum(np.floor(u * 2.0 ** 32), 2.0 ** 32 - 1).astype(np.uint32) | np.uint32(1) << np.uint32(31)


def _reverse_params(chain: Chain, j: int, net, z: np.ndarray):
    """Snapped coder parameters of p(z_{j-1} | z_j): pixel units for j = 1, grid units of z_{j-1}
    otherwise (one network evaluation at z_j)."""
    o = net.out(z, j - 1)
    mean, var = o["mean"], o["variance"]
    if j == 1:
        return snapped_params(mean, var)
    d = chain.delta[j - 1]
    return _snap_mean(mean / d), _snap_scale(np.sqrt(var) / d)


def _info(chain: Chain, j: int, k, mu, sd) -> float:
    """Information content -log2 P(k) in bits of z_j's symbols (pixels for j = 0) under a
    quantized Gaussian on z_j's symbol range."""
    lo, hi = (0, 255) if j == 0 else (-int(chain.radius[j]), int(chain.radius[j]))
    return info_bits(gauss_op(k, lo, hi, mu, sd))


def _setup(loaded, steps, shape):
    """(Chain, the coder's models for z_0..z_N, network evaluator) for one respaced chain."""
    net = NetworkAdapter(loaded, steps, shape)
    chain = Chain.build(net.diffusion)
    return chain, _models(chain), net


def encode_chain(loaded, images: np.ndarray, steps=None, seed: int = 0,
                 initial_bits_per_dim: int = 12, progress=None):
    """BB-ANS-code uint8 images [n, C, H, W] onto one stack.

    -> (words uint32, ChainStats, number of initial words at the bottom of the stack)."""
    import constriction

    n, C, H, W = images.shape
    D = C * H * W
    chain, models, net = _setup(loaded, steps, (C, H, W))
    init = _initial_words(seed, max(2, -(-initial_bits_per_dim * D // 32)))
    coder = constriction.stream.stack.AnsCoder(init.copy())
    stats = ChainStats()
    for i in range(n):
        start = low = coder.num_bits()
        bound = 0.0
        k_prev = images[i].reshape(-1).astype(np.int32)      # symbols of z_{j-1}; pixels for j = 1
        z_prev = to_model(k_prev)
        for j in range(1, chain.N + 1):
            mu, sd = chain.forward(j, z_prev)
            k = coder.decode(models[j], mu, sd)
            low = min(low, coder.num_bits())
            if low < 64:
                raise StackDry(f"image {i}: the stack ran dry after step {j}")
            bound -= _info(chain, j, k, mu, sd)
            z = k.astype(np.float64) * chain.delta[j]
            pm, ps = _reverse_params(chain, j, net, z)
            coder.encode_reverse(k_prev, models[j - 1], pm, ps)
            bound += _info(chain, j - 1, k_prev, pm, ps)
            k_prev, z_prev = k, z
        prior_mu, prior_sd = chain.prior(D)
        coder.encode_reverse(k_prev, models[chain.N], prior_mu, prior_sd)
        bound += _info(chain, chain.N, k_prev, prior_mu, prior_sd)
        stats.net_bits.append(coder.num_bits() - start)
        stats.borrowed_bits.append(start - low)
        stats.bound_bits.append(bound)
        if progress:
            progress(i)
    return coder.get_compressed(), stats, len(init)


def decode_chain(loaded, words: np.ndarray, n: int, shape, steps=None, seed: int = 0,
                 n_initial: int | None = None, progress=None) -> np.ndarray:
    """Inverse of ``encode_chain``: -> uint8 images [n, C, H, W] in their original order."""
    import constriction

    C, H, W = shape
    D = C * H * W
    chain, models, net = _setup(loaded, steps, (C, H, W))
    coder = constriction.stream.stack.AnsCoder(np.asarray(words, np.uint32).copy())
    out = np.zeros((n, C, H, W), np.uint8)
    for i in reversed(range(n)):
        k = coder.decode(models[chain.N], *chain.prior(D))
        z = k.astype(np.float64) * chain.delta[chain.N]
        for j in range(chain.N, 0, -1):
            k_prev = coder.decode(models[j - 1], *_reverse_params(chain, j, net, z))
            z_prev = to_model(k_prev) if j == 1 else k_prev.astype(np.float64) * chain.delta[j - 1]
            coder.encode_reverse(k, models[j], *chain.forward(j, z_prev))
            k, z = k_prev, z_prev
        out[i] = k.astype(np.uint8).reshape(C, H, W)
        if progress:
            progress(n - 1 - i)
    if n_initial is not None:
        rest = coder.get_compressed()
        if not np.array_equal(rest, _initial_words(seed, n_initial)):
            raise BitsBackMismatch("bits-back stream did not unwind to its initial words: the decoder's "
                                   "model outputs differ from the encoder's, or the stream is corrupt")
    return out
