"""Reverse channel coding of one reverse step: chunked ordered random coding (truncated Poisson
functional representation), after DiffC (Vonderfecht & Liu 2025) and the paper's Algorithm 3.

The step's KL(q || p) is split into ``n`` chunks of about ``chunk_bits`` bits: the dimensions are
shuffled by a seeded permutation and cut into n near-equal groups. Each chunk has K = 2^log2_k
candidates, standard normal vectors; candidate z maps to x = mu_p + sigma_p z, a sample of p. The
encoder draws arrival times T_j (cumulative Exp(1), its own randomness) and picks the j maximising
log w(z_j) - log T_j, with w = q/p; the decoder regenerates candidate j alone. Indices are coded
with a truncated Zipf law.

The candidates of a chunk of m dimensions are the first m columns of the K rows of one codebook,
shared by every step, chunk and length (``randomness.codebook``, keyed by the seed), each chunk
reading them through its own seeded signs, column order and row offset (``randomness.chunk_maps``).
Given its map a chunk's candidates are i.i.d. standard normals, so each chunk is still exact
ordered random coding; the encoder generates the codebook once per process, and the scores of all
chunks of one length are matrix products with it, about D x K multiply-adds a step, where drawing
fresh candidates for every chunk would cost D x K normals (about 100x slower on a CPU). q's
narrower variance enters a score at its mean over each segment, a multiple of the row's squared
norm, so the squares need no second product (encoder-only; ``_scores``; images of at most
EXACT_MAX_DIMS values keep the exact term, which costs them little). A chunk longer than SEGMENT_DIMS reads its
candidates in near-equal segments, each with its own map, under one index: a step's chunk count
follows its KL alone, where chunks of at most SEGMENT_DIMS would cut a step of little KL on a
large image into at least ceil(D / SEGMENT_DIMS) chunks, each paying for an index.

The encoder aims past q. With K candidates, a chunk of c bits of KL selects a sample pulled back
towards p: along the chunk's shift mu_q - mu_p it moves 0.875 of q's shift at c = 10 and K = 2^13
(``eval/studies/rcc_bias.py``), and the information it leaves behind is paid for by later steps, at a
price. So w is taken against q' = N(mu_p + a (mu_q - mu_p), sigma_q^2), a = AIM: at 10 bits the
shift is restored, smaller chunks overshoot it, and the sample is narrower along that one direction
(every other direction keeps the candidates' exact noise). The encoder trades index bits for a
path closer to x_0; ``eval/studies/rcc_aim.py`` chose a by the BD-rate of real files. Encoder-only: the
file and the decoder are unchanged, and ``aim=1`` gives the plain selection of q.

The chunk count is side information. The encoder keeps the previous step's count while each chunk
still carries between 0.6 and 1.25 x chunk_bits (so counts change rarely along a chain), and codes
it as one "same" flag (P = 0.85) or, on a change, the new count under a Gaussian centred on 1.3 x
the old one (the first two steps' against INITIAL_COUNTS instead of a previous count). n, the permutation, K and the Zipf law
depend only on transmitted integers, so network float drift cannot desynchronise the stream: it
can only move x slightly. With n = 0 (KL below ``min_bits``) x is candidate 0 of p.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from ..core import precision
from ..timing import stage
from .base import StepCoder, StepContext, gaussian_kl_bits
from .entropy import gauss_op, table_op, zipf_table
from .randomness import BOOK_DIMS, by_halves, candidate, codebook, codebook_rows, permutation, stacked_maps
from .registry import register


SAME_COUNT = np.array([0.85, 0.15])   # P(the chunk count repeats), P(it changes)
MAX_CHUNKS = 2 ** 24 - 1              # the most chunks a step has: constriction's 24-bit Gaussian
                                      # codes a count on at most 2^24 values (images of fewer than
                                      # 2^24 values never reach it; above, a step of more than
                                      # MAX_CHUNKS x chunk_bits bits has larger chunks)
# The counts the first and second steps' are coded against: the first geo9 step of 28x28
# Fashion-MNIST images carries about 14 bits, i.e. 2 chunks of at most 10, the second about 6, i.e.
# 1 (`python eval/studies/rcc_index_law.py --limit 24` prints both on training images), and a repeat
# is far cheaper to code than a change. Later steps are coded against the previous step's count.
INITIAL_COUNTS = (2, 1)
KEEP_RANGE = (0.6, 1.25)              # bits per chunk (x chunk_bits) within which a count is kept
RCC_AUTO_MAX_DIMS = None              # "auto" uses rcc at every size: scoring a step is ~D x K multiply-adds
                                      # in matrix products over a shared codebook
# The law of the coded indices at the default chunks (10 bits, K = 2^13) and aim: a truncated Zipf
# law of this exponent, fitted on 24 Fashion-MNIST training images by eval/studies/rcc_index_law.py
# (with an aim of 1 + 0.06 c). At AIM = 1.6 it codes 8.5% fewer index bits there than the Li &
# El Gamal exponent below, which other chunk settings keep; the best exponent at AIM = 1.6, 0.625,
# would save 0.06% more. The law, the auto rule (RCC_AUTO_MAX_DIMS) and the default steps are what
# a compact .dfc file implies: changing them needs a new format version.
ZIPF_EXPONENT = 0.675
# How many times q's shift the encoder aims at: chosen on Fashion-MNIST TRAINING images by the
# BD-rate of real files against the ideal curve (eval/studies/rcc_aim.py; eval/README.md, "Aiming past q").
AIM = 1.6
# Two more encoder-only settings, tried in eval/studies/rcc_aim.py and kept at the plain selection's:
# the selection maximises SHARPNESS x log w - log T, and w weighs q's narrower variance by
# VAR_WEIGHT (eval/README.md, "Aiming past q": neither a sharper or flatter selection nor a lighter
# variance term beat these on training images).
SHARPNESS = 1.0
VAR_WEIGHT = 1.0
# The chain a file without a step spec implies, by image size, (largest C x H x W, spec): geo9 on
# small images; above, jumps capped at high noise, where geo9's first jumps (999 -> 910 -> 828)
# cost several times what the fine chain pays for the same PSNR on a photograph
# (eval/studies/schedule_study.py --model photo), but their few bits a step would cost a 28x28
# image more in per-chunk overhead than they save. Part of the format (version 12 on).
DEFAULT_STEPS = ((4096, "geo9"), (256 * 256 * 3, "geo9c20"), (None, "geo9c40"))
# The chain the encoder takes when none is asked for: DEFAULT_STEPS up to 256x256 RGB, and above it
# geo12c40 (54 coded steps against geo9c40's 64), which the file then stores (11 bytes), so
# changing it needs no format version. Chosen on three validation photos whole: 1.0% more rate
# over 28-42 dB (geo15c60: 5.5%), for a decode 11-19% faster at quality 75 and 13% at full rate.
# At 256x256 geo12c30 cost the validation crops 2.8% (5.6% over 20-50 dB) for a quality-75 decode
# 24-29% faster: outside the one point of BD-rate the speed issue allows, so not taken
# (eval/README.md, "Shorter default chains").
ENCODER_STEPS = ((4096, "geo9"), (256 * 256 * 3, "geo9c20"), (None, "geo12c40"))
_WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None
BOOKS_KEPT = 2                        # codebooks (seed, K, format) kept in memory, per process
SELECT_BLOCK = 512                    # segments scored by one matrix product ([K, block] float32)
ROW_BLOCK = 256                       # codebook rows per product (their squares: 8 MB in float32); a
                                      # power of two, so it divides K or exceeds it: a last block of a
                                      # few rows would run another BLAS kernel, with other roundings
EXACT_MAX_DIMS = 4096                 # images of at most this many values are scored with q's variance
                                      # term per dimension (its second product costs them little); larger
                                      # ones take it at its mean over each segment (``_scores``)
BATCH_LENGTH = 0.9                    # shortest segment length, relative to the longest, in one product
SEGMENT_DIMS = BOOK_DIMS              # longest segment: the codebook's row length (K x 8192 is
                                      # 134 MB in bfloat16); a longer chunk reads its candidates in
                                      # near-equal segments. The decoder splits chunks the same way:
                                      # part of the format (tests/test_bitstream.py pins it)
_BOOKS: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
_NORMS: "dict[tuple, dict]" = {}   # per kept codebook: its rows' squared norms (torch, [K]) by length


def _batches(layout: list[Segments]) -> list[list[tuple[Segments, slice]]]:
    """The blocks of a step's segments (at most SELECT_BLOCK segments of one length each, in
    layout order) in batches that one read of the codebook scores: consecutive blocks join the
    first of their batch while they hold at most SELECT_BLOCK segments together and their length
    is at most its and at least BATCH_LENGTH of it (their codebook columns are a prefix of its;
    the missing ones count zero). A chunk cut into segments of lengths L and L - 1 is scored in
    one product, not two: with a few chunks per length a product reads the whole codebook for
    little arithmetic."""
    out: list[list[tuple[Segments, slice]]] = []
    count = 0
    for seg in layout:
        for start in range(0, len(seg.chunk), SELECT_BLOCK):
            block = slice(start, start + SELECT_BLOCK)
            b = len(seg.chunk[block])
            first = out[-1][0][0].dims.shape[1] if out else 0
            if count + b <= SELECT_BLOCK and BATCH_LENGTH * first <= seg.dims.shape[1] <= first:
                out[-1].append((seg, block))
                count += b
            else:
                out.append([(seg, block)])
                count = b
    return out


def _scores(batch: list[tuple[Segments, slice]], book, c1: np.ndarray, c2: np.ndarray, dtype, norms=None,
            exact: bool = False):
    """Each block's scores sum_d c1_d z_d + c2_d z_d^2 for the K rows z of the codebook (``book``, a
    [K, m] view at least as wide as the longest segment), with c2 at its mean over each segment
    unless ``exact``: yields (segments, block, float32 [b, K]) in the batch's order.

    The linear term is one matrix product, run over ROW_BLOCK rows at a time. With c2 at its mean
    cbar_2 over a segment, the squared term is cbar_2 times the row's squared norm over the
    segment's first L columns (any column order sums the same; ``norms(L)``, by default
    ``_square_norms``): K x L once per length, not a second K x L x b product. What that leaves
    out, sum_d (c2_d - cbar_2) z_d^2, is noise across candidates with a standard deviation of about
    0.2 nats on `photo`, where the linear term's is about 6 (eval/README.md, "q's variance term at
    its mean"). ``exact`` adds the squared term from a second product with the codebook's squares,
    squared ROW_BLOCK rows at a time. In float32 here (MKL, AVX2) the products over row blocks are
    the whole products, bit for bit (tests/test_coders.py); bfloat16 products on a CPU with AMX were
    not compared, and could only change which candidate the encoder picks, not what a file means."""
    import torch

    m = book.shape[1]
    width = sum(len(seg.chunk[block]) for seg, block in batch)
    a1 = np.zeros((m, width), np.float32)
    a2 = np.zeros((m, width), np.float32) if exact and c2.any() else None
    at = 0
    for seg, block in batch:
        dims, columns = seg.dims[block], seg.columns[block]
        chunk = at + np.repeat(np.arange(len(dims)), dims.shape[1])
        a1[columns.ravel(), chunk] = (seg.signs[block] * c1[dims]).ravel()
        if a2 is not None:
            a2[columns.ravel(), chunk] = c2[dims].ravel()
        at += len(dims)
    w1 = torch.from_numpy(a1).to(dtype)
    w2 = None if a2 is None else torch.from_numpy(a2).to(dtype)
    score = torch.empty((len(book), width), dtype=dtype)             # [K, width], row order
    squares = None if w2 is None else torch.empty((min(ROW_BLOCK, len(book)), m), dtype=dtype)
    for r in range(0, len(book), ROW_BLOCK):
        rows = book[r:r + ROW_BLOCK]
        torch.mm(rows, w1, out=score[r:r + ROW_BLOCK])
        if w2 is not None:
            score[r:r + ROW_BLOCK] += torch.square(rows, out=squares[:len(rows)]) @ w2
    score = score.T.float()                                         # [width, K]
    norms = norms or (lambda length: _square_norms(book, length))
    at = 0
    for seg, block in batch:
        b = len(seg.chunk[block])
        if not exact:
            mean_c2 = c2[seg.dims[block]].mean(1, dtype=np.float64).astype(np.float32)
            if mean_c2.any():
                score[at:at + b].addr_(torch.from_numpy(mean_c2), norms(seg.dims.shape[1]))
        yield seg, block, score[at:at + b]
        at += b


def _square_norms(book, length: int):
    """sum_d z_d^2 over the first ``length`` columns of each codebook row, float32 [K], computed
    over ROW_BLOCK rows at a time (the codebook's squares are never held whole: 268 MB in float32
    at the widest)."""
    import torch

    out = torch.empty(len(book), dtype=torch.float32)
    for r in range(0, len(book), ROW_BLOCK):
        out[r:r + ROW_BLOCK] = book[r:r + ROW_BLOCK, :length].float().square().sum(1)
    return out


def li_el_gamal_exponent(chunk_bits: int) -> float:
    """The Zipf exponent 1 + 1 / (KL + e^-1 ln(e + 1)) (KL in nats) of Li & El Gamal's index code
    for a chunk carrying ``chunk_bits`` bits of KL."""
    return 1.0 + 1.0 / (chunk_bits * math.log(2.0) + math.exp(-1) * math.log(math.e + 1))


class Segments(NamedTuple):
    """A step's segments of one length m, ordered by chunk, then by segment: row k is a segment of
    chunk ``chunk[k]`` (``single[k]``: the chunk's only one), its dimensions ``dims[k]``, reading
    codebook row r = (j + offsets[k]) mod K at ``columns[k]`` with ``signs[k]`` for index j
    (``randomness.chunk_maps``)."""
    chunk: np.ndarray      # [k] int64
    single: np.ndarray     # [k] bool
    dims: np.ndarray       # [k, m]
    columns: np.ndarray    # [k, m]
    signs: np.ndarray      # [k, m] float32
    offsets: np.ndarray    # [k] int64


def _book(seed: int, m: int, count: int, dtype):
    """The codebook's first m columns, a [count, m] torch tensor (a view) in ``dtype`` (the
    scores' format). The codebook is generated in parallel blocks of rows on first
    use, as wide as the longest row asked for so far (a power of two from 1024 to BOOK_DIMS), and
    kept: every later length is a view of it.

    The worker threads only generate numpy rows; the main thread copies them in. A torch op run
    from a worker thread (this copy, once) left every later network call in the process about
    1.7x slower (eval/README.md, "Speed")."""
    import torch

    key = (seed, count, dtype)
    if key not in _BOOKS or _BOOKS[key].shape[1] < m:
        width = min(BOOK_DIMS, max(1024, 1 << (m - 1).bit_length()))
        edges = np.linspace(0, count, 8 * _WORKERS + 1).astype(int)
        with stage("codebook"):
            book = torch.empty((count, width), dtype=dtype)
            for wave in range(0, len(edges) - 1, _WORKERS):   # a block per worker at a time
                ks = range(wave, min(wave + _WORKERS, len(edges) - 1))
                for k, rows in zip(ks, _pool().map(
                        lambda k: codebook(seed, width, int(edges[k + 1] - edges[k]), start=int(edges[k])), ks)):
                    book[edges[k]:edges[k + 1]] = torch.from_numpy(rows)
            _BOOKS[key] = book
        while len(_BOOKS) > BOOKS_KEPT:
            _NORMS.pop(_BOOKS.popitem(last=False)[0], None)
    _BOOKS.move_to_end(key)
    return _BOOKS[key][:, :m]


def _book_norms(seed: int, count: int, dtype, length: int):
    """``_square_norms`` of the kept codebook (``_book``, already at least ``length`` wide),
    computed once per length: a step's batches, and later steps, share them."""
    key = (seed, count, dtype)
    kept = _NORMS.setdefault(key, {})
    if length not in kept:
        kept[length] = _square_norms(_BOOKS[key], length)
    return kept[length]


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_WORKERS)
    return _POOL


@register("rcc", wire_id=1, default_steps=DEFAULT_STEPS, priority=3, auto_max_dims=RCC_AUTO_MAX_DIMS,
          encoder_steps=ENCODER_STEPS, description="reverse channel coding (the paper's Algorithm 3)")
class RCCCoder(StepCoder):

    DEFAULTS = (10, 13)   # chunk_bits, log2_k

    def __init__(self, chunk_bits: int = 10, log2_k: int = 13, min_bits: float = 0.25,
                 encoder_seed: int = 0, zipf_exponent: float | None = None, aim: float | None = None,
                 sharpness: float | None = None, var_weight: float | None = None):
        """``zipf_exponent``: the index law's (default: ZIPF_EXPONENT at the default chunks, else
        ``li_el_gamal_exponent(chunk_bits)``); it drives the coder, so both sides must agree.
        ``aim`` (encoder-only; default AIM): how many times q's shift the selection aims at.
        ``sharpness`` (encoder-only; default SHARPNESS): the selection maximises
        sharpness x log w - log T, so above 1 it trades index bits for a sample nearer the aim.
        ``var_weight`` (encoder-only; default VAR_WEIGHT): the weight of q's narrower variance in w
        (0: only the shift is aimed at; the sample keeps p's variance)."""
        if not 1 <= chunk_bits < log2_k <= 20:
            raise ValueError("need 1 <= chunk_bits < log2_k <= 20")
        self.chunk_bits, self.log2_k, self.min_bits = chunk_bits, log2_k, min_bits
        self.count = 1 << log2_k
        if zipf_exponent is None:
            zipf_exponent = (ZIPF_EXPONENT if (chunk_bits, log2_k) == self.DEFAULTS
                             else li_el_gamal_exponent(chunk_bits))
        self.zipf = zipf_table(self.count, zipf_exponent)
        import torch

        self.rng = torch.Generator().manual_seed(encoder_seed)   # encoder-only: arrival times
        self.aim_factor = AIM if aim is None else float(aim)
        self.sharpness = SHARPNESS if sharpness is None else float(sharpness)
        self.var_weight = VAR_WEIGHT if var_weight is None else float(var_weight)

    @classmethod
    def from_params(cls, params: bytes) -> "RCCCoder":
        if not params:
            return cls()
        if len(params) != 2:
            raise ValueError("bad rcc parameters")
        return cls(chunk_bits=params[0], log2_k=params[1])

    def params(self) -> bytes:
        return b"" if (self.chunk_bits, self.log2_k) == self.DEFAULTS else bytes([self.chunk_bits, self.log2_k])

    @staticmethod
    def _new_count_prior(prev: int, dims: int):
        """(lo, hi, mean, std) of a changed chunk count: centred on 1.3 x the previous count, on
        0 .. min(dims, MAX_CHUNKS)."""
        return 0, min(dims, MAX_CHUNKS), [1.3 * prev], [0.5 + 0.3 * prev]

    def _count_ops(self, n: int, prev: int, dims: int) -> list:
        if n == prev:
            return [table_op([0], SAME_COUNT)]
        return [table_op([1], SAME_COUNT), gauss_op([n], *self._new_count_prior(prev, dims))]

    def _read_count(self, dec, prev: int, dims: int) -> int:
        if int(dec.table(SAME_COUNT, 1)[0]) == 0:
            return prev
        return int(dec.gauss(*self._new_count_prior(prev, dims))[0])

    @staticmethod
    def _reference(state: dict) -> int:
        """The count this step's is coded against (and kept near): INITIAL_COUNTS for the first
        steps, then the previous step's. Counts this coder's steps in ``state``."""
        k = state.get("steps", 0)
        state["steps"] = k + 1
        return INITIAL_COUNTS[k] if k < len(INITIAL_COUNTS) else state["chunks"]

    def _choose_count(self, total: float, prev: int, dims: int) -> int:
        """Keep the previous count while each chunk stays within KEEP_RANGE x chunk_bits."""
        if total < self.min_bits:
            return 0
        lo, hi = (v * self.chunk_bits for v in KEEP_RANGE)
        if prev and total / prev <= hi and (total / prev >= lo or prev == 1):
            return prev
        return min(dims, MAX_CHUNKS, max(1, math.ceil(total / self.chunk_bits)))

    @staticmethod
    def _chunk_classes(perm: np.ndarray, n: int) -> list[tuple[int, np.ndarray]]:
        """The step's n chunks as at most two classes of equal length, (first chunk, dims
        [count, length]) each: chunk c is the c-th of n near-equal slices of the step's
        permutation (``perm``: ``randomness.permutation``), the first D mod n one longer
        (``np.array_split``'s rule), so each class is a reshape of the permutation."""
        q, r = divmod(len(perm), n)
        return [(first, perm[first * (q + 1):][:count * length].reshape(count, length))
                for first, count, length in ((0, r, q + 1), (r, n - r, q)) if count]

    def _layout(self, ctx: StepContext, perm: np.ndarray, n: int) -> list[Segments]:
        """The step's n chunks (``_chunk_classes``) cut into segments, grouped by length (in order
        of first appearance, chunk by chunk). A chunk longer than SEGMENT_DIMS is cut into
        near-equal segments (the first ones longer), and each chunk's maps come from its own
        stream (``randomness.stacked_maps``); chunks of one length share their segments' lengths."""
        parts: dict[int, list[tuple]] = {}
        for first, dims in self._chunk_classes(perm, n):
            count, length = dims.shape
            pieces = max(1, -(-length // SEGMENT_DIMS))
            small, big = divmod(length, pieces)
            lengths = [small + 1] * big + [small] * (pieces - big)
            chunks = np.arange(first, first + count, dtype=np.int64)
            maps = stacked_maps(ctx.seed, ctx.step, chunks, lengths, self.count)
            start = 0
            for g, (m, (columns, signs, offsets)) in enumerate(zip(lengths, maps)):
                segments = Segments(chunks, np.full(count, pieces == 1), dims[:, start:start + m],
                                    columns, signs, offsets)
                parts.setdefault(m, []).append(((chunks << 32) + g, segments))   # sorted by (chunk, g)
                start += m
        out = []
        for members in parts.values():
            if len(members) == 1:      # its keys ascend already: no copy
                out.append(members[0][1])
                continue
            order = np.argsort(np.concatenate([key for key, _ in members]), kind="stable")
            fields = zip(*(segments for _, segments in members))
            out.append(Segments(*(np.concatenate(field)[order] for field in fields)))
        return out

    def _arrivals(self, shape: tuple) -> "torch.Tensor":
        """Exp(1) gaps between arrival times, float32 (the encoder's own randomness): -log U. torch's
        uniforms are multiples of 2^-24 in [0, 1), so U = 0 comes once in 2^24 draws (tens of
        times in a 768x512 encode at full rate); it is read as 2^-25, so that no gap is infinite
        (an infinite arrival time made every score of its chunk NaN, and argmax picks a NaN)."""
        import torch

        return torch.rand(shape, generator=self.rng).clamp_min_(2.0 ** -25).log_().neg_()

    def _log_times(self, offsets: "torch.Tensor") -> "torch.Tensor":
        """log T for each chunk's K candidates in codebook row order, [chunks, K]: chunk k's arrival
        times are the cumulative sums of its gaps from row offsets[k] on, wrapping around, so index
        j = (r - offset) mod K gets the (j + 1)-th arrival. Computed as differences of one cumulative
        sum per chunk (float32: about 1e-4 relative on the first arrivals, encoder-only), in place:
        the sum minus its value before the offset, plus the sum of all K gaps at rows before it."""
        import torch

        total = torch.cumsum(self._arrivals((len(offsets), self.count)), 1)
        last = total[:, -1].clone()
        total.sub_(torch.where(offsets[:, None] > 0, total.gather(1, (offsets[:, None] - 1).clamp(min=0)), 0.0))
        for k, offset in enumerate(offsets.tolist()):
            if offset:
                total[k, :offset].add_(last[k])
        return total.log_()

    def _select(self, ctx: StepContext, layout: list[Segments], n: int, c2: np.ndarray,
                c1: np.ndarray) -> list[int]:
        """The index each of the n chunks picks: argmax_j log w(z_j) - log T_j over its K candidates.

        A segment reads candidate j as signs * Z_r[columns] with r = (j + offset) mod K for the
        codebook Z of its length (``randomness.chunk_maps``), so its score
        sum_d c2_d z_d^2 + c1_d z_d is row r of Z (and of Z^2) times the segment's coefficients
        moved to the codebook's columns: matrix products (over blocks of codebook rows) score a
        batch of blocks of segments (``_batches``, ``_scores``). A one-segment chunk picks its row
        against arrival times laid out in row order (``_log_times``); a chunk of several segments
        sums their scores gathered to index order and draws its own arrival times. ``layout``:
        ``_layout`` of the step."""
        import torch

        K = self.count
        indices = np.empty(n, np.int64)
        summed: dict[int, torch.Tensor] = {}       # chunks of several segments: their scores so far
        dtype = precision.score_dtype(ctx.dims)
        exact = ctx.dims <= EXACT_MAX_DIMS
        norms = lambda length: _book_norms(ctx.seed, K, dtype, length)   # noqa: E731
        for batch in _batches(layout):
            book = _book(ctx.seed, batch[0][0].dims.shape[1], K, dtype)
            with stage("scoring"):
                for seg, block, score in _scores(batch, book, c1, c2, dtype, norms, exact):
                    offsets, single = seg.offsets[block], seg.single[block]
                    if single.any():
                        rows = torch.argmax(score[torch.from_numpy(single)]
                                            - self._log_times(torch.from_numpy(offsets[single])), 1)
                        indices[seg.chunk[block][single]] = (rows.numpy() - offsets[single]) % K
                    for k in np.flatnonzero(~single).tolist():   # to index order, then summed
                        c = int(seg.chunk[block][k])
                        summed[c] = summed.get(c, 0.0) + torch.roll(score[k], -int(offsets[k]))
        with stage("scoring"):
            for c, total in summed.items():
                indices[c] = int(torch.argmax(total - torch.cumsum(self._arrivals((K,)), 0).log_()))
        return indices.tolist()

    def _sample(self, ctx: StepContext, layout: list[Segments], indices) -> np.ndarray:
        """x_{t-1} = mu_p + sigma_p z, z each chunk's candidate at its index: what both sides build,
        segments of one length at a time, a large length's in two halves on two threads
        (``randomness.by_halves``; each value is computed alone, so the same z either way).
        ``layout``: ``_layout`` of the step."""
        z = np.empty(ctx.dims)
        indices = np.asarray(indices, np.int64)

        def fill(seg: Segments, lo: int, hi: int):
            book = codebook_rows(ctx.seed, seg.dims.shape[1],
                                 (indices[seg.chunk[lo:hi]] + seg.offsets[lo:hi]) % self.count)
            z[seg.dims[lo:hi]] = seg.signs[lo:hi] * np.take_along_axis(book, seg.columns[lo:hi], 1)

        with stage("sampling"):
            for seg in layout:
                by_halves(lambda lo, hi: fill(seg, lo, hi), len(seg.chunk), seg.dims.size)
            z *= np.sqrt(ctx.var_p)     # mu_p + sigma_p z, in place
            z += ctx.mu_p
            return z

    def aim(self, chunk_bits: float) -> float:
        """How many times q's shift the selection aims at, for a chunk carrying ``chunk_bits`` of KL
        (the same for every chunk; eval/studies/rcc_aim.py tries rules that depend on it)."""
        return self.aim_factor

    def encode(self, ctx: StepContext, mu_q: np.ndarray):
        sd_q = math.sqrt(ctx.var_q)
        kl = gaussian_kl_bits(mu_q, ctx.var_q, ctx.mu_p, ctx.var_p)
        total = float(kl.sum())
        prev = self._reference(ctx.state)
        n = self._choose_count(total, prev, ctx.dims)
        ops = self._count_ops(n, prev, ctx.dims)
        ctx.state["chunks"] = n
        if n == 0:
            z = candidate(ctx.seed, ctx.step, 0, 0, ctx.dims)
            return ops, ctx.mu_p + np.sqrt(ctx.var_p) * z, total
        perm = permutation(ctx.seed, ctx.step, ctx.dims)
        groups = [dims for _, rows in self._chunk_classes(perm, n) for dims in rows]
        aims = [self.aim(float(kl[dims].sum())) for dims in groups]
        del kl
        # log w(z) = sum_d c2 z^2 + c1 z + const, with x = mu_p + sd_p z, a = sd_p / sd_q,
        # b = (mu_p - mu_q) / sd_q: c2 = 0.5 (1 - a^2), c1 = -a b. Aiming at mu_p + aim (mu_q - mu_p)
        # scales b, hence c1, by aim; log w is linear in (c2, c1), so the sharpness s scales both.
        # Computed in place (a large image's vectors are hundreds of MB each), in this order, and
        # kept in float32, the format the scores read them in.
        s = self.sharpness
        a = np.sqrt(ctx.var_p)
        a /= sd_q
        c1 = np.subtract(ctx.mu_p, mu_q)
        c1 /= sd_q
        c1 *= a
        np.negative(c1, out=c1)
        if len(set(aims)) == 1:
            c1 *= s * aims[0]
        else:
            for dims, aim in zip(groups, aims):
                c1[dims] *= s * aim
        c1 = c1.astype(np.float32)
        np.square(a, out=a)
        np.subtract(1.0, a, out=a)
        a *= 0.5
        a *= s * self.var_weight
        c2 = a.astype(np.float32)
        del a
        layout = self._layout(ctx, perm, n)
        indices = self._select(ctx, layout, n, c2, c1)
        del c1, c2
        ops.append(table_op(indices, self.zipf))
        return ops, self._sample(ctx, layout, indices), total

    def decode(self, ctx: StepContext, dec) -> np.ndarray:
        with stage("entropy"):
            n = self._read_count(dec, self._reference(ctx.state), ctx.dims)
        ctx.state["chunks"] = n
        if n == 0:
            return ctx.mu_p + np.sqrt(ctx.var_p) * candidate(ctx.seed, ctx.step, 0, 0, ctx.dims)
        with stage("entropy"):
            indices = dec.table(self.zipf, n)
        return self._sample(ctx, self._layout(ctx, permutation(ctx.seed, ctx.step, ctx.dims), n), indices)
