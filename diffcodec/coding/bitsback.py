"""Lossless coding with bits-back ANS (BB-ANS) over the diffusion chain, chained across images.

The latents z_1..z_N of a respaced chain (z_j is x at chain index j - 1, z_0 the image) are
discretized on fixed grids of width delta_j (an 8th of the smallest noise scale around z_j), so
every continuous density becomes a pmf over grid indices and the grid widths cancel in the net rate.
Per image, in Bit-Swap order (the bits borrowed from the stack stay at about two steps' pops,
whatever N; about 9 bits per dimension with these grids):

    encoder: for j = 1..N: pop z_j ~ q(z_j | z_{j-1}); push z_{j-1} with p(z_{j-1} | z_j)
             push z_N with p(z_N) = N(0, I)
    decoder: pop z_N; for j = N..1: pop z_{j-1} with p(z_{j-1} | z_j); push z_j with q(z_j | z_{j-1})

q(z_j | z_{j-1}) = N(sqrt(alpha_j) z_{j-1}, beta_j) is a schedule constant applied to grid values,
so its pmf is exact on both sides. It is coded relative to its rounded mean, on a window that ends
where the Gaussian's mass per bin falls to the coder's floor (2^-24, about 5.2 sigma): constriction's
24-bit quantizer gives every bin of the support at least 2^-24, so popping over the whole grid
(thousands of bins) would land in the far tail now and then, and such an outlier stays in the chain
and costs tens of bits; truncating at the floor removes under 1e-6 of the mass. p(z_{j-1} | z_j) is
a network output: its mean and scale (in grid units) are snapped to fixed grids before they reach
the coder (p(z_0 | z_1) is the discretized decoder of the lossless layer).

Clean bits: before each pop the top of the stack is XORed with a one-time pad keyed by (seed,
image, step), and the decoder XORs it again right after the matching push. The bits there were
written by pushing the previous latent under p_theta; where p_theta differs from the true posterior
they are not uniform, latents popped from them are then not samples of q, and the chain costs more
than its bound (the "dirty bits" of BB-ANS: +0.8% on fmnist at 100 steps; +0.24 bits/dim in the
test with p's variance 1.5x the posterior's). With the pad every pop draws a sample of q, and in
expectation the net cost per image is the variational bound of the same chain. The stack starts
with seeded random words, which the decoder gets back at the end and checks: a mismatch means the
model outputs differed between the two sides.

Units: rates are bits per dimension (per sub-pixel); ``words`` are the coder's uint32 words.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from ..core.adapter import NetworkAdapter
from ..core.precision import encoder_network
from ..errors import UserError
from ..io.pixels import to_model
from .entropy import gauss_op, info_bits
from .lossless import snapped_params
from .randomness import PURPOSE_INITIAL, PURPOSE_WHITEN, uniforms, words32

# delta_j = smallest noise scale of step j / GRID_FRACTION (``--grid`` of eval bitsback studies
# others). Finer grids make every window wider in bins, so more latents escape p's window and more
# bins pay the coder's 2^-24 floor.
GRID_FRACTION = 8
INITIAL_BITS_PER_DIM = 12    # initial words to try first (the first image borrows about 9-11)
COARSEST_PROB = 2.0 ** -24   # the smallest probability constriction's quantizer gives a symbol


def _floor_reach(sd):
    """Bins from a Gaussian's mean (``sd`` in bins; arrays too) to where its mass per bin falls to
    COARSEST_PROB: beyond it the quantizer's floor, not the Gaussian, would set the odds."""
    return np.ceil(sd * np.sqrt(2.0 * np.log(1.0 / (COARSEST_PROB * sd * math.sqrt(2 * math.pi)))))


def _window(sd: float) -> int:
    """Half-width in bins of q's window, of scale ``sd`` bins."""
    return int(_floor_reach(sd))


class BitsBackMismatch(UserError):
    pass


class StackDry(RuntimeError):
    """The initial words were too few for the first image's borrowed bits."""


def _snap_mean(v: np.ndarray) -> np.ndarray:
    """Grid-unit means on a 1/64 grid (exact binary fractions)."""
    return np.round(v * 64.0) / 64.0


SCALE_MANTISSA_BITS = 12


def _snap_scale(s: np.ndarray) -> np.ndarray:
    """Grid-unit scales rounded to 12 mantissa bits, exactly representable. A relative error e in
    a scale costs about e^2 nats per symbol: 7 bits would cost about 1.6e-5 bits per symbol, 12
    bits per 28x28 image over a 1000-step chain (0.5% of the bound; computed, not measured), and
    each further bit divides that by 4."""
    mant, ex = np.frexp(np.maximum(s, 1e-3))
    return np.ldexp(np.round(mant * 2.0 ** SCALE_MANTISSA_BITS) / 2.0 ** SCALE_MANTISSA_BITS, ex)


@dataclass
class Chain:
    """The respaced chain's grids and forward kernels (all float64 schedule constants)."""
    diffusion: object
    delta: np.ndarray        # [N + 1]; delta[j] for z_j, j >= 1 (delta[0] unused: pixels)
    radius: np.ndarray       # [N + 1]; grid indices of z_j lie in [-radius, radius]
    window: np.ndarray       # [N + 1]; q(z_j | z_{j-1}) is coded on round(mean) + [-window, window]

    @classmethod
    def build(cls, diffusion, fraction: int | None = None) -> "Chain":
        """Grids of a respaced chain: delta_j = z_j's smallest noise scale / ``fraction`` (default
        GRID_FRACTION)."""
        fraction = fraction or GRID_FRACTION
        betas, post = diffusion.betas, diffusion.posterior_variance
        N = len(betas)
        delta, radius, window = np.zeros(N + 1), np.zeros(N + 1, np.int64), np.zeros(N + 1, np.int64)
        for j in range(1, N + 1):
            smallest = betas[j - 1] if j == N else min(betas[j - 1], post[j])
            delta[j] = math.sqrt(smallest) / fraction
            abar = diffusion.alphas_cumprod[j - 1]
            radius[j] = math.ceil((math.sqrt(abar) * 1.0 + 8.0 * math.sqrt(1.0 - abar) + 0.1) / delta[j])
            window[j] = _window(math.sqrt(betas[j - 1]) / delta[j])
        return cls(diffusion, delta, radius, window)

    @property
    def N(self) -> int:
        return len(self.delta) - 1

    def prior(self, D: int):
        """Grid-unit mean and scale of p(z_N) = N(0, I)."""
        return np.zeros(D), np.full(D, 1.0 / self.delta[self.N])

    def forward(self, j: int, z_prev: np.ndarray):
        """q(z_j | z_{j-1}) on its window; z_prev in model units (pixels for j = 1).
        -> (grid index of the window's centre, mean offset from it and scale, both in bins)."""
        a, b = self.diffusion.alphas[j - 1], self.diffusion.betas[j - 1]
        mean = math.sqrt(a) * z_prev / self.delta[j]
        centre = np.round(mean)
        return centre.astype(np.int64), mean - centre, np.full(z_prev.shape, math.sqrt(b) / self.delta[j])

    def check_range(self, j: int, k: np.ndarray) -> None:
        """z_j's indices must lie on the grid p codes them on (fails only for ~8-sigma latents)."""
        if np.abs(k).max() > self.radius[j]:
            raise BitsBackMismatch(f"latent z_{j} left its grid: the stream is corrupt or the model "
                                   "does not fit it")


@dataclass
class ChainStats:
    net_bits: list[float] = field(default_factory=list)       # per image: stack growth
    borrowed_bits: list[float] = field(default_factory=list)  # per image: deepest dip below its start
    bound_bits: list[float] = field(default_factory=list)     # per image: information content of
    # the symbols coded (net of bits back); equals net_bits up to the coder's overhead by construction
    path_bits: list[float] = field(default_factory=list)      # per image: the chain's one-sample
    # bound on the coded path, from continuous densities and unsnapped network outputs (_path_step)


def _initial_words(seed: int, n_words: int) -> np.ndarray:
    u = uniforms(seed, PURPOSE_INITIAL, 0, n_words)
    return np.minimum(np.floor(u * 2.0 ** 32), 2.0 ** 32 - 1).astype(np.uint32) | np.uint32(1) << np.uint32(31)


def _reverse_params(chain: Chain, j: int, net, z: np.ndarray):
    """Snapped coder parameters of p(z_{j-1} | z_j): pixel units for j = 1, grid units of z_{j-1}
    otherwise (one network evaluation at z_j)."""
    return _snapped(chain, j, net.out(z, j - 1))


def _snapped(chain: Chain, j: int, o: dict):
    """``_reverse_params`` from the network's output ``o`` at z_j."""
    mean, var = o["mean"], o["variance"]
    if j == 1:
        return snapped_params(mean, var)
    d = chain.delta[j - 1]
    return _snap_mean(mean / d), _snap_scale(np.sqrt(var) / d)


@functools.lru_cache(maxsize=None)
def _family(lo: int, hi: int):
    """constriction's quantized Gaussians on the integers lo..hi (end bins carry the tails)."""
    import constriction

    return constriction.stream.model.QuantizedGaussian(lo, hi)


TAIL_SCALE = 1.4     # an escaped latent's distance beyond its window: a half-Gaussian of scale
#                      TAIL_SCALE * sd^2 / (w + 1) bins, the Gaussian tail's own decay length
#                      (its KL from the exact tail: 0.05-0.35 bits for 8-20 bins of sd, computed)


def _p_windows(chain: Chain, j: int, sd: np.ndarray) -> np.ndarray:
    """Half-widths of p's windows for z_j, one per dimension: ``_floor_reach`` of its own scale,
    capped at the grid radius. (Rounding them up to multiples of 4 bins, for fewer groups, cost the
    coder about 1 bit per 28x28 image over 1000 steps: every bin past the floor reach takes the
    floor's 2^-24 from the others.)"""
    return np.minimum(_floor_reach(sd), int(chain.radius[j])).astype(np.int64)


def _tail_scale(sd: np.ndarray, w: int) -> np.ndarray:
    """Scale in bins of the half-Gaussian that codes escaped latents' distances beyond window w."""
    return np.maximum(TAIL_SCALE * sd * sd / (w + 1), 0.5)


def _p_frame(chain: Chain, j: int, mu: np.ndarray, sd: np.ndarray):
    """p's frame for z_j (j >= 1): (centres = rounded means, per-dimension window half-widths,
    the largest distance an escaped latent can have beyond its window)."""
    return np.round(mu), _p_windows(chain, j, sd), 2 * int(chain.radius[j]) + 1


def _p_ops(chain: Chain, j: int, k, mu, sd) -> list:
    """The coder operations ``(symbols, lo, hi, means, stds)`` that code z_j's indices ``k``
    under p (pixels for j = 0), in the decoder's pop order.

    Latents are coded as offsets from p's rounded mean, each on a window of its own width (grouped
    by width), whose two end bins carry p's tails and mean "escaped": an escaped latent's distance
    beyond the end bin is then coded under the tail's own decay (``TAIL_SCALE``), so it costs about
    what its density says. Windows keep the coder's 2^-24 floor per bin from taxing every symbol
    with the thousands of bins of the whole grid (about 0.1 bits/dim over 1000 steps)."""
    if j == 0:
        return [(k, 0, 255, mu, sd)]
    centre, windows, r = _p_frame(chain, j, mu, sd)
    offset = (k - centre).astype(np.int64)
    ops = []
    for w in np.unique(windows):
        sel = windows == w
        o, w = offset[sel], int(w)
        ops.append((np.clip(o, -w - 1, w + 1).astype(np.int32), -w - 1, w + 1, (mu - centre)[sel], sd[sel]))
        esc = np.abs(o) > w
        if esc.any():
            ops.append(((np.abs(o[esc]) - w - 1).astype(np.int32), 0, r, np.zeros(int(esc.sum())),
                        _tail_scale(sd[sel][esc], w)))
    return ops


def _push_p(coder, chain: Chain, j: int, k, mu, sd) -> float:
    """Push z_j's indices under p; -> their information content in bits."""
    ops = _p_ops(chain, j, k, mu, sd)
    for sym, lo, hi, m, s in reversed(ops):
        coder.encode_reverse(sym, _family(lo, hi), m, s)
    return sum(info_bits(gauss_op(*op)) for op in ops)


def _pop_p(coder, chain: Chain, j: int, mu, sd) -> np.ndarray:
    """Pop z_j's indices under p (the inverse of ``_push_p``)."""
    if j == 0:
        return coder.decode(_family(0, 255), mu, sd)
    centre, windows, r = _p_frame(chain, j, mu, sd)
    offset = np.zeros(mu.shape, np.int64)
    for w in np.unique(windows):
        sel, w = np.flatnonzero(windows == w), int(w)
        o = coder.decode(_family(-w - 1, w + 1), (mu - centre)[sel], sd[sel]).astype(np.int64)
        esc = np.abs(o) > w
        if esc.any():
            beyond = coder.decode(_family(0, r), np.zeros(int(esc.sum())), _tail_scale(sd[sel][esc], w))
            o[esc] = np.sign(o[esc]) * (w + 1 + beyond.astype(np.int64))
        offset[sel] = o
    return (centre.astype(np.int64) + offset).astype(np.int32)


def _q_family(chain: Chain, j: int):
    """The coder model of q(z_j | z_{j-1}) on its window (offsets from the rounded mean)."""
    return _family(-int(chain.window[j]), int(chain.window[j]))


def _pad_words(chain: Chain, j: int, D: int) -> int:
    """How many stack words below the head's top word the pad covers before q(z_j | .) is popped:
    all the bits D pops can take (log2 of the window each) and a margin."""
    return -(-D * math.ceil(math.log2(2 * int(chain.window[j]) + 1)) // 32) + 4


PAD_HEAD_BITS = 24   # bits of the head's low word the pad covers: the coder's precision


def _whiten(coder, chain: Chain, seed: int, image: int, j: int, D: int):
    """XOR the top of the stack with a one-time pad keyed by (seed, image, step): the words below
    the head and the low PAD_HEAD_BITS bits of the head's low word, which are the bits the first
    symbol of the next pop reads. An involution, so the decoder undoes it at the same point. Why:
    the bits on top were just written by pushing z_{j-2} under p_theta; where p_theta differs from
    the true posterior they are not uniform ("dirty"), the latents popped from them are then not
    samples of q, and the chain costs more than its bound (+0.8% on fmnist at 100 steps). Padded
    bits are uniform whatever they hold, so every pop draws a sample of q, but for the few symbols
    that read the head's 40 unpadded bits. Padding the head's whole low word made it uniform where
    an ANS state is spread log-uniformly, which cost the coder about 3 bits per 28x28 image over
    1000 steps (clean_bits.chained at r = 1); padding its low 24 bits costs about 0.3.
    -> a coder on the padded words."""
    import constriction

    words = coder.get_compressed()
    k = min(_pad_words(chain, j, D), len(words) - 1)
    pad = words32(seed, PURPOSE_WHITEN, j, k, image)
    pad[-1] &= np.uint32((1 << PAD_HEAD_BITS) - 1)          # lands on the head's low word
    words[len(words) - 1 - k:len(words) - 1] ^= pad
    return constriction.stream.stack.AnsCoder(words)


def _log2_normal(x: np.ndarray, mean, var) -> float:
    """log2 of a Gaussian density (model units), summed over dimensions."""
    return float(np.sum(-0.5 * ((x - mean) ** 2 / var + np.log(2 * np.pi * var)))) / math.log(2)


def _log2_decoder(pixels: np.ndarray, o: dict) -> float:
    """log2 p(x_0 | x_1) of uint8 ``pixels`` under the discretized decoder that ``bpd``'s L_0 uses
    (GaussianDiffusion's own function), from the network's unsnapped output ``o`` at x_1."""
    import torch

    from ..core.diffusion import discretized_gaussian_log_likelihood

    x = torch.from_numpy(to_model(pixels))
    mean, var = torch.from_numpy(o["mean"]), torch.from_numpy(o["variance"])
    return float(discretized_gaussian_log_likelihood(x, mean, 0.5 * torch.log(var)).sum()) / math.log(2)


def _info_q(chain: Chain, j: int, offset, mu, sd) -> float:
    """Information content in bits of z_j's offsets from q's window centre."""
    return info_bits(gauss_op(offset, -int(chain.window[j]), int(chain.window[j]), mu, sd))


def _setup(loaded, steps, shape, grid=None):
    """(Chain, network evaluator) for one respaced chain (``grid``: bins per smallest noise scale)."""
    network = encoder_network(loaded.device, shape, "float32", loaded.tiling)    # as ``bpd``'s bound
    net = NetworkAdapter(loaded, steps, shape, network)
    return Chain.build(net.diffusion, grid), net


def _path_step(chain: Chain, j: int, z, z_prev, k_prev, o: dict) -> float:
    """Step j's share of ChainStats.path_bits: log2 q(z_j | z_{j-1}) - log2 p(z_{j-1} | z_j).

    path_bits, the independent reference of the coded rate, is on the latents the coder actually
    popped: sum_j log2 q(z_j | z_{j-1}) - sum_j log2 p(z_{j-1} | z_j) - log2 p(z_N), with
    continuous Gaussian densities (each latent's bin width enters once under q and once under p
    and cancels), the network's float outputs before any snapping, and bpd's own discretized
    decoder for p(x_0 | z_1). Its expectation over latents drawn from q is the chain's variational
    bound. So the coded rate minus it is what the coder costs (grids, windows, snapping, the
    quantizer, the pad, and the coder's quantized Gaussian for x_0 against bpd's decoder with its
    open edge bins) with no sampling noise between the two, and its mean against ``evaluate_bpd``
    checks that the popped latents are samples of q (strictly, they are samples of q on the grid,
    within its windows: a difference far below that check's noise)."""
    a, b = chain.diffusion.alphas[j - 1], chain.diffusion.betas[j - 1]
    gain = _log2_normal(z, math.sqrt(a) * z_prev, b)
    if j == 1:
        return gain - _log2_decoder(k_prev, o)
    return gain - _log2_normal(z_prev, o["mean"], o["variance"])


def encode_chain_fitting(loaded, images: np.ndarray, steps=None, seed: int = 0, progress=None,
                         fresh_model=None, **kw):
    """``encode_chain`` with the fewest initial words that the first image's borrowed bits fit
    (INITIAL_BITS_PER_DIM bits per dimension, then 4 more per try). ``fresh_model()``, if given,
    makes the ``model`` for each try (for stateful stand-ins of the network)."""
    bits = INITIAL_BITS_PER_DIM
    while True:
        try:
            if fresh_model is not None:
                kw["model"] = fresh_model()
            return encode_chain(loaded, images, steps, seed, bits, progress, **kw)
        except StackDry:
            bits += 4


def encode_chain(loaded, images: np.ndarray, steps=None, seed: int = 0,
                 initial_bits_per_dim: int = INITIAL_BITS_PER_DIM, progress=None, *, model=None,
                 pad: bool = True, grid: int | None = None):
    """BB-ANS-code uint8 images [n, C, H, W] onto one stack.

    ``model``: a (Chain, reverse process with ``out(z, i)``) pair to use instead of ``loaded``'s
    network on ``steps`` (for checks against closed forms); ``pad=False`` leaves the stack's bits
    as they are (dirty), to measure what the pad buys; ``grid`` overrides GRID_FRACTION. The
    decoder must be given the same.
    -> (words uint32, ChainStats, number of initial words at the bottom of the stack)."""
    import constriction

    n, C, H, W = images.shape
    D = C * H * W
    chain, net = model or _setup(loaded, steps, (C, H, W), grid)
    init = _initial_words(seed, max(2, -(-initial_bits_per_dim * D // 32)))
    coder = constriction.stream.stack.AnsCoder(init.copy())
    stats = ChainStats()
    for i in range(n):
        start = low = coder.num_bits()
        bound = path = 0.0
        k_prev = images[i].reshape(-1).astype(np.int32)      # symbols of z_{j-1}; pixels for j = 1
        z_prev = to_model(k_prev)
        for j in range(1, chain.N + 1):
            centre, mu, sd = chain.forward(j, z_prev)
            if pad:
                coder = _whiten(coder, chain, seed, i, j, D)
            offset = coder.decode(_q_family(chain, j), mu, sd)
            low = min(low, coder.num_bits())
            if low < 64:
                raise StackDry(f"image {i}: the stack ran dry after step {j}")
            bound -= _info_q(chain, j, offset, mu, sd)
            k = (centre + offset).astype(np.int32)
            chain.check_range(j, k)
            z = k.astype(np.float64) * chain.delta[j]
            o = net.out(z, j - 1)
            bound += _push_p(coder, chain, j - 1, k_prev, *_snapped(chain, j, o))
            path += _path_step(chain, j, z, z_prev, k_prev, o)
            k_prev, z_prev = k, z
        prior_mu, prior_sd = chain.prior(D)
        bound += _push_p(coder, chain, chain.N, k_prev, prior_mu, prior_sd)
        path -= _log2_normal(z_prev, 0.0, 1.0)
        stats.net_bits.append(coder.num_bits() - start)
        stats.borrowed_bits.append(start - low)
        stats.bound_bits.append(bound)
        stats.path_bits.append(path)
        if progress:
            progress(i)
    return coder.get_compressed(), stats, len(init)


def decode_chain(loaded, words: np.ndarray, n: int, shape, steps=None, seed: int = 0,
                 n_initial: int | None = None, progress=None, *, model=None, pad: bool = True,
                 grid: int | None = None) -> np.ndarray:
    """Inverse of ``encode_chain``: -> uint8 images [n, C, H, W] in their original order."""
    import constriction

    C, H, W = shape
    D = C * H * W
    chain, net = model or _setup(loaded, steps, (C, H, W), grid)
    coder = constriction.stream.stack.AnsCoder(np.asarray(words, np.uint32).copy())
    out = np.zeros((n, C, H, W), np.uint8)
    for i in reversed(range(n)):
        k = _pop_p(coder, chain, chain.N, *chain.prior(D))
        z = k.astype(np.float64) * chain.delta[chain.N]
        for j in range(chain.N, 0, -1):
            k_prev = _pop_p(coder, chain, j - 1, *_reverse_params(chain, j, net, z))
            z_prev = to_model(k_prev) if j == 1 else k_prev.astype(np.float64) * chain.delta[j - 1]
            centre, mu, sd = chain.forward(j, z_prev)
            offset = k - centre
            if np.abs(offset).max() > chain.window[j]:
                raise BitsBackMismatch("bits-back stream is corrupt: a latent lies outside its window")
            coder.encode_reverse(offset.astype(np.int32), _q_family(chain, j), mu, sd)
            if pad:
                coder = _whiten(coder, chain, seed, i, j, D)
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
