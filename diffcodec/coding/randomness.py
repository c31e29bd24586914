"""Shared randomness that encoder and decoder regenerate identically.

Everything comes from numpy's Philox counter-based generator keyed by (seed, purpose, step, chunk),
never from torch's or numpy's global streams, whose sequences are not promised to match across
devices or versions. Uniforms are exact functions of 64-bit outputs, so they are bit-identical
everywhere (the dither, which drives the entropy coder, is one of them); normals use Box-Muller
with a fixed number of outputs each, so candidate j of a chunk can be regenerated alone by jumping
the counter.
"""
from __future__ import annotations

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


def _uniforms_from_raw(raw: np.ndarray) -> np.ndarray:
    """uint64 -> float64 uniforms in (0, 1), exact: ((x >> 11) + 0.5) / 2^53."""
    return ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 2 ** 53)


def uniforms(seed: int, purpose: int, step: int, n: int, chunk: int = 0) -> np.ndarray:
    return _uniforms_from_raw(np.random.Philox(key=_key(seed, purpose, step, chunk)).random_raw(n))


def words32(seed: int, purpose: int, step: int, n: int, chunk: int = 0) -> np.ndarray:
    """n uint32 words (the low halves of Philox's 64-bit outputs)."""
    raw = np.random.Philox(key=_key(seed, purpose, step, chunk)).random_raw(n)
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


def permutation(seed: int, step: int, n: int) -> np.ndarray:
    """A seeded permutation of range(n) (argsort of shared uniforms, stable: exact everywhere)."""
    return np.argsort(np.random.Philox(key=_key(seed, PURPOSE_PERM, step)).random_raw(n), kind="stable")


# Candidates are the hot loop of reverse channel coding (K x D normals per step). Each candidate
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
    gen = np.random.Philox(key=key)
    gen.advance(start * W // 8)
    words = gen.random_raw(count * W // 2).astype("<u8", copy=False).view("<u4")
    return _normals_from_words(words.reshape(count, W), dims)


def candidates(seed: int, step: int, chunk: int, count: int, dims: int, start: int = 0) -> np.ndarray:
    """Candidates start .. start + count - 1 of a chunk, [count, dims] float32 standard normals."""
    return _rows(_key(seed, PURPOSE_CAND, step, chunk), count, dims, start)


def codebook(seed: int, dims: int, count: int, start: int = 0) -> np.ndarray:
    """Rows start .. start + count - 1 of the codebook of row length ``dims``, [count, dims] float32
    standard normals: one per (seed, dims), shared by every step and chunk of that length."""
    return _rows(_key(seed, PURPOSE_BOOK, 0, dims), count, dims, start)


def chunk_map(seed: int, step: int, chunk: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns [dims] int64, signs [dims] float32) that turn a codebook row Z_j into this chunk's
    candidate j: z[d] = signs[d] * Z_j[columns[d]] (a seeded permutation and random signs, so each
    chunk's candidates are i.i.d. normals and chunks with alike shifts still pick unrelated rows)."""
    raw = np.random.Philox(key=_key(seed, PURPOSE_BOOKMAP, step, chunk)).random_raw(dims)
    columns = np.argsort(raw >> np.uint64(1), kind="stable")
    signs = np.where(raw & np.uint64(1), np.float32(-1.0), np.float32(1.0))
    return columns, signs


def candidate(seed: int, step: int, chunk: int, index: int, dims: int) -> np.ndarray:
    """Candidate ``index`` of a chunk alone (what the decoder needs), [dims]."""
    return candidates(seed, step, chunk, 1, dims, start=index)[0]
