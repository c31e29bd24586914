"""Shared randomness that encoder and decoder regenerate identically.

Everything comes from numpy's Philox counter-based generator keyed by (seed, purpose, step, chunk),
never from torch's or numpy's global streams, whose sequences are not promised to match across
devices or versions. Uniforms are exact functions of 64-bit outputs, so they are bit-identical
everywhere (the dither, which drives the entropy coder, is one of them); normals use Box-Muller
with a fixed number of outputs each, so candidate j of a chunk can be regenerated alone by jumping
the counter.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# what a stream is for: one key space, so no two uses ever share a stream
PURPOSE_XT, PURPOSE_DITHER, PURPOSE_PERM, PURPOSE_CAND = 1, 2, 3, 4
PURPOSE_ANCESTRAL = 5    # decoder-side ancestral completion of a partly decoded chain
PURPOSE_INITIAL = 6      # the initial words of a bits-back stack
PURPOSE_WHITEN = 7       # the one-time pad that cleans a bits-back stack's top before each pop
PURPOSE_BOOK = 8         # rcc's codebook: rows of standard normals shared by every step and chunk
PURPOSE_BOOKMAP = 9      # each (step, chunk)'s signs and column order over the codebook


def _key(seed: int, purpose: int, step: int, chunk: int = 0) -> int:
    if not (0 <= seed < 2 ** 63 and 0 <= step < 2 ** 24 and 0 <= chunk < 2 ** 32):
        raise ValueError("seed, step or chunk out of range")
    return (seed << 64) | (purpose << 56) | (step << 32) | chunk


_LOCAL = threading.local()
_NO_BUFFER = np.zeros(4, np.uint64)


def raw_outputs(key: int, n: int, blocks: int = 0) -> np.ndarray:
    """n 64-bit outputs of the Philox stream ``key`` from block ``blocks`` on (a block is four
    outputs): ``np.random.Philox(key=key)`` advanced by ``blocks``, then ``random_raw(n)``. One
    generator per thread is re-keyed in place, which takes a third of the time of making one: rcc
    reads a stream per chunk and per codebook row, thousands a step."""
    gen = getattr(_LOCAL, "gen", None)
    if gen is None:
        gen = _LOCAL.gen = np.random.Philox(key=0)
    mask = (1 << 64) - 1
    gen.state = {"bit_generator": "Philox",
                 "state": {"counter": np.array([blocks & mask, blocks >> 64, 0, 0], np.uint64),
                           "key": np.array([key & mask, key >> 64], np.uint64)},
                 "buffer": _NO_BUFFER, "buffer_pos": 4, "has_uint32": 0, "uinteger": 0}
    return gen.random_raw(n)


def _uniforms_from_raw(raw: np.ndarray) -> np.ndarray:
    """uint64 -> float64 uniforms in (0, 1), exact: ((x >> 11) + 0.5) / 2^53."""
    return ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 2 ** 53)


def uniforms(seed: int, purpose: int, step: int, n: int, chunk: int = 0) -> np.ndarray:
    return _uniforms_from_raw(raw_outputs(_key(seed, purpose, step, chunk), n))


def words32(seed: int, purpose: int, step: int, n: int, chunk: int = 0) -> np.ndarray:
    """n uint32 words (the low halves of Philox's 64-bit outputs)."""
    raw = raw_outputs(_key(seed, purpose, step, chunk), n)
    return (raw & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _box_muller(u: np.ndarray) -> np.ndarray:
    """[..., 2m] uniforms -> [..., m] normals (cosine branch only)."""
    u1, u2 = u[..., 0::2], u[..., 1::2]
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def normals(seed: int, purpose: int, step: int, n: int, chunk: int = 0) -> np.ndarray:
    """n standard normals (float64 Box-Muller on exact uniforms)."""
    return _box_muller(uniforms(seed, purpose, step, 2 * n, chunk))


def dither(seed: int, step: int, n: int) -> np.ndarray:
    """Shared dither u ~ U(-1/2, 1/2), exact float64."""
    return uniforms(seed, PURPOSE_DITHER, step, n) - 0.5


PARALLEL_MIN = 1 << 18     # values from which large numpy work is split between two threads
_HALVES: ThreadPoolExecutor | None = None


def numpy_threads() -> int:
    """Threads large numpy work of the codec takes (sorts here, rcc's candidates): two where torch
    computes on two or more (a coding process's setting: folder workers share the cores), else one."""
    import torch

    return 2 if torch.get_num_threads() > 1 else 1


def by_halves(work, n: int, size: int) -> bool:
    """work(lo, hi) over range(n): in two halves on two threads where ``size`` (the values the work
    touches) is at least PARALLEL_MIN, n > 1 and ``numpy_threads`` gives two; else once, over the
    whole. The halves must write disjoint parts, so the result is the same either way. -> whether
    it split."""
    global _HALVES
    if size < PARALLEL_MIN or n < 2 or numpy_threads() < 2:
        work(0, n)
        return False
    if _HALVES is None:
        _HALVES = ThreadPoolExecutor(2)
    for done in [_HALVES.submit(work, lo, hi) for lo, hi in ((0, n // 2), (n // 2, n))]:
        done.result()
    return True


def sort_distinct(values: np.ndarray) -> None:
    """Sort distinct values along the last axis, in place. Large ones (``by_halves``) are sorted in
    halves on two threads: rows, or a single row's two halves, then merged by a stable sort, which
    finds the two runs. Distinct values have one sorted order, so the result is the same on one
    thread or two. The column orders of a 768x512 step's maps took 32-35 instead of 38-52 ms
    (eval/README.md, "An AVX-512 CPU")."""
    if not values.flags.c_contiguous:
        values.sort(axis=-1)
        return
    rows = values.reshape(-1, values.shape[-1])
    if len(rows) > 1:
        by_halves(lambda lo, hi: rows[lo:hi].sort(axis=-1), len(rows), values.size)
    elif by_halves(lambda lo, hi: rows[0, lo:hi].sort(), rows.shape[1], values.size):
        values.sort(axis=-1, kind="stable")


_SIGN = np.uint64(1 << 63)


def _packed_sort(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort uint64 keys along the last axis by their high bits, then by index: each key's low bits
    are replaced by its index and the values sorted (``sort_distinct``; several times faster than
    an argsort). -> (order, whether neighbours in that order tie in their high bits)."""
    m = keys.shape[-1]
    bits = max(1, (m - 1).bit_length())
    mask = np.uint64((1 << bits) - 1)
    packed = keys & ~mask
    packed |= np.arange(m, dtype=np.uint64)
    sort_distinct(packed)
    ties = np.bitwise_xor(packed[..., 1:], packed[..., :-1]) <= mask   # the same high bits
    packed &= mask
    return packed.view(np.int64), ties


def stable_order(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") of 1-D uint64 keys, computed faster: torch's stable sort of
    their int64 image with the top bit flipped, which keeps their order. A stable sort has one
    result, so the thread count and the sorting method cannot change it. A 256x256 image's
    permutation (196608 keys) took 2.4 instead of 9.0 ms, a 768x512 image's 21 instead of 37
    (numpy's sort of packed keys; eval/README.md, "The network's arithmetic floor")."""
    import torch

    flipped = torch.from_numpy((keys ^ _SIGN).view(np.int64))
    order = torch.empty(keys.shape, dtype=torch.int64)
    torch.sort(flipped, stable=True, out=(flipped, order))
    return order.numpy()


def stable_orders(keys: np.ndarray) -> np.ndarray:
    """``stable_order`` of each row of [rows, m] uint64 keys, sorted together."""
    order, ties = _packed_sort(keys)
    for r in np.flatnonzero(ties.any(axis=-1)):
        order[r] = stable_order(keys[r])
    return order


def permutation(seed: int, step: int, n: int) -> np.ndarray:
    """A seeded permutation of range(n) (stable argsort of shared uniforms: exact everywhere)."""
    return stable_order(raw_outputs(_key(seed, PURPOSE_PERM, step), n))


# Candidates (and rcc's codebook rows) are regenerated by the decoder one at a time. Each candidate
# owns a whole number of Philox blocks; its 32-bit words are read as exact 24-bit float32 uniforms,
# the first half paired with the second half through both branches of float32 Box-Muller (tails cut
# at 5.9 sigma), so one 64-bit output gives one normal pair. Only the encoder's choice of index is
# entropy-coded; a last-bit difference in a regenerated candidate can only move the decoded x_{t-1}
# by that much.
_U24 = np.float32(2.0 ** -24)
_TWO_PI = np.float32(2.0 * np.pi)


def _words_per_candidate(dims: int) -> int:
    """32-bit words reserved per candidate: two per normal pair, whole Philox blocks (8 words)."""
    return -(-2 * (-(-dims // 2)) // 8) * 8


def _normals_from_words(words: np.ndarray, dims: int) -> np.ndarray:
    """uint32 [..., W] -> float32 [..., dims]: words [0, h) and [h, 2h) are the uniform pairs."""
    h = -(-dims // 2)
    u = ((words[..., :2 * h] >> np.uint32(8)).view(np.int32).astype(np.float32) + np.float32(0.5)) * _U24
    radius = np.sqrt(np.float32(-2.0) * np.log(u[..., :h]))
    angle = _TWO_PI * u[..., h:]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)[..., :dims]


def _rows(key: int, count: int, dims: int, start: int) -> np.ndarray:
    """Rows start .. start + count - 1 of the normal stream ``key``, [count, dims] float32."""
    W = _words_per_candidate(dims)
    words = raw_outputs(key, count * W // 2, blocks=start * W // 8).astype("<u8", copy=False).view("<u4")
    return _normals_from_words(words.reshape(count, W), dims)


def candidates(seed: int, step: int, chunk: int, count: int, dims: int, start: int = 0) -> np.ndarray:
    """Candidates start .. start + count - 1 of a chunk, [count, dims] float32 standard normals."""
    return _rows(_key(seed, PURPOSE_CAND, step, chunk), count, dims, start)


BOOK_DIMS = 8192   # the codebook's row length: rcc's longest segment


def codebook(seed: int, dims: int, count: int, start: int = 0) -> np.ndarray:
    """Rows start .. start + count - 1 of rcc's codebook, their first ``dims`` <= BOOK_DIMS values:
    [count, dims] float32 standard normals, one codebook per seed, shared by every step and chunk
    (a chunk of m dimensions reads the first m columns).

    Row r is the Philox stream's 64-bit outputs r * BOOK_DIMS / 2 onwards; output k is a uniform
    pair (its low and high 32-bit words, exact 24-bit float32 uniforms) that float32 Box-Muller
    turns into values 2k (cosine branch) and 2k + 1 (sine branch). So a row's first m values need
    only its first ceil(m / 2) outputs, whatever m is."""
    if count == 1:
        return codebook_rows(seed, dims, [start])
    half, pairs = BOOK_DIMS // 2, _book_pairs(dims)
    raw = _book_raw(seed, start, count * half).reshape(count, half)[:, :pairs]
    return _book_normals(raw, dims)


def codebook_rows(seed: int, dims: int, starts) -> np.ndarray:
    """Rows ``starts`` (any order, repeats allowed) of the codebook, their first ``dims`` values:
    [len(starts), dims], each row equal to ``codebook(seed, dims, 1, start)[0]``."""
    pairs = _book_pairs(dims)
    raw = np.empty((len(starts), pairs), np.uint64)
    for k, start in enumerate(starts):
        raw[k] = _book_raw(seed, int(start), pairs)
    return _book_normals(raw, dims)


def _book_raw(seed: int, row: int, n: int) -> np.ndarray:
    """n outputs of the codebook's Philox stream from the start of ``row``: BOOK_DIMS / 2 64-bit
    outputs a row, four a block."""
    return raw_outputs(_key(seed, PURPOSE_BOOK, 0, 0), n, blocks=row * (BOOK_DIMS // 8))


def _book_pairs(dims: int) -> int:
    if not 0 < dims <= BOOK_DIMS:
        raise ValueError(f"codebook rows have 1 to {BOOK_DIMS} values, not {dims}")
    return -(-dims // 2)


def _book_normals(raw: np.ndarray, dims: int) -> np.ndarray:
    """uint64 [rows, pairs] -> float32 [rows, dims]: each output's two words are a uniform pair,
    turned into two normals by float32 Box-Muller (cosine, then sine branch)."""
    rows, pairs = raw.shape
    words = np.ascontiguousarray(raw).astype("<u8", copy=False).view("<u4").reshape(rows, pairs, 2)
    u = ((words >> np.uint32(8)).view(np.int32).astype(np.float32) + np.float32(0.5)) * _U24
    radius = np.sqrt(np.float32(-2.0) * np.log(u[..., 0]))
    angle = _TWO_PI * u[..., 1]
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1).reshape(rows, 2 * pairs)[:, :dims]


def chunk_maps(seed: int, step: int, chunk: int, lengths: list[int], rows: int) -> list[tuple]:
    """For each segment of a chunk (``lengths``: the segments' dimensions; one segment for a chunk
    of at most rcc.SEGMENT_DIMS), (columns [m] integer indices, signs [m] float32, offset in
    [0, rows)) that turn the codebook's rows Z of length m into the segment's part of the chunk's
    candidates: candidate j is z[d] = signs[d] * Z_r[columns[d]] with r = (j + offset) mod rows,
    and a longer chunk's candidate j is its segments' parts side by side.

    A seeded permutation and random signs make each segment's candidates i.i.d. normals, so chunks
    with alike shifts still pick unrelated rows; the offset makes the small indices ordered random
    coding picks most often fall on other rows in every chunk and segment (else chunks that pick
    the same index get noise of the same norm and magnitudes). A chunk's segments read their maps
    one after another from the chunk's own stream: m + 1 64-bit outputs each, the first m giving
    the column order (``stable_order`` of the outputs shifted right by one) and the signs (their
    lowest bits, 1 for -1), the last the offset (mod rows)."""
    return [(columns[0], signs[0], int(offsets[0]))
            for columns, signs, offsets in stacked_maps(seed, step, [chunk], lengths, rows)]


def stacked_maps(seed: int, step: int, chunks, lengths: list[int], rows: int) -> list[tuple]:
    """``chunk_maps`` of several chunks of a step that share one list of segment lengths, stacked:
    per segment, (columns [k, m], signs [k, m], offsets [k] int64), row i for ``chunks[i]``. Each
    chunk's stream is read once (a large step's in two halves on two threads: ``by_halves``); each
    segment's column orders are sorted in one call."""
    total = sum(lengths) + len(lengths)
    raw = np.empty((len(chunks), total), np.uint64)

    def read(lo: int, hi: int):     # raw_outputs keeps one generator per thread
        for i in range(lo, hi):
            raw[i] = raw_outputs(_key(seed, PURPOSE_BOOKMAP, step, int(chunks[i])), total)

    by_halves(read, len(chunks), raw.size)
    out, start = [], 0
    for m in lengths:
        words = raw[:, start:start + m]
        out.append((stable_orders(words >> np.uint64(1)),
                    np.where(words & np.uint64(1), np.float32(-1.0), np.float32(1.0)),
                    (raw[:, start + m] % np.uint64(rows)).astype(np.int64)))
        start += m + 1
    return out


def candidate(seed: int, step: int, chunk: int, index: int, dims: int) -> np.ndarray:
    """Candidate ``index`` of a chunk alone (what the decoder needs), [dims]."""
    return candidates(seed, step, chunk, 1, dims, start=index)[0]
