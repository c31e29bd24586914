"""Entropy coding over constriction: symbols are collected as operations, then range-coded into
byte strings that can be cut at layer boundaries.

An operation is ("gauss", symbols, lo, hi, means, stds) for constriction's QuantizedGaussian on
integers lo..hi, ("table", symbols, probs) for one categorical over 0..len(probs)-1 shared by all
symbols, or ("cats", symbols, probs [n, K]) for one categorical per symbol. The caller's
duty: means, stds and probs must be bit-identical at the encoder and decoder (they are built from
transmitted integers and shared randomness, never from network outputs).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

from ..errors import UserError
from ..timing import stage


class CorruptStream(UserError):
    pass


def gauss_op(symbols, lo: int, hi: int, means, stds):
    return ("gauss", np.asarray(symbols, np.int32).ravel(), int(lo), int(hi),
            np.asarray(means, np.float64).ravel(), np.asarray(stds, np.float64).ravel())


def table_op(symbols, probs):
    return ("table", np.asarray(symbols, np.int32).ravel(), np.asarray(probs, np.float64))


def cats_op(symbols, probs):
    probs = np.asarray(probs, np.float64)
    return ("cats", np.asarray(symbols, np.int32).ravel(), probs.reshape(-1, probs.shape[-1]))


def info_bits(op) -> float:
    """Ideal code length of an operation, -sum log2 P(symbol), in bits. Probabilities are floored at
    2^-24, the smallest that constriction's 24-bit leaky quantization assigns."""
    if op[0] == "gauss":
        _, k, lo, hi, mu, sd = op
        upper = np.where(k == hi, 1.0, ndtr((k + 0.5 - mu) / sd))
        lower = np.where(k == lo, 0.0, ndtr((k - 0.5 - mu) / sd))
        return float(-np.log2(np.maximum(upper - lower, 2.0 ** -24)).sum())
    if op[0] == "cats":
        _, k, probs = op
        return float(-np.log2(probs[np.arange(len(k)), k] / probs.sum(1)).sum())
    _, k, probs = op
    return float(-np.log2(probs[k] / probs.sum()).sum())


def _model(op_kind, lo=None, hi=None, probs=None):
    import constriction

    if op_kind == "gauss":
        return constriction.stream.model.QuantizedGaussian(lo, hi)
    if op_kind == "cats":
        return constriction.stream.model.Categorical(perfect=False)
    return constriction.stream.model.Categorical(probs, perfect=False)


def _words_to_bytes(words: np.ndarray) -> bytes:
    return words.astype(">u4").tobytes()


def _bytes_to_words(data: bytes) -> np.ndarray:
    data = data + b"\x00" * ((-len(data)) % 4)
    return np.frombuffer(data, ">u4").astype(np.uint32)


def _encode_into(enc, ops) -> None:
    for op in ops:
        if op[0] == "gauss":
            _, k, lo, hi, mu, sd = op
            if len(k):
                enc.encode(k, _model("gauss", lo, hi), mu, sd)
        elif op[0] == "cats":
            _, k, probs = op
            if len(k):
                enc.encode(k, _model("cats"), probs)
        else:
            _, k, probs = op
            if len(k):
                enc.encode(k, _model("table", probs=probs))


BIG_STREAM = 200_000   # symbols above which layer ends are not trimmed below the sealed length


@stage("entropy")
def encode_layered(layer_ops: list[list]) -> list[bytes]:
    """Range-code the operations of several layers as ONE stream and cut it into per-layer slices.

    Layer k's slice ends at the shortest prefix of the stream from which every symbol of layers
    1..k decodes (missing trailing bytes read as zeros), found by trial decoding from just below
    the length the stream had when sealed after layer k. So any prefix that holds the first k
    slices decodes layers 1..k, and the layers pay no flush each. The last slice then ends at the
    shortest rounded-up value that still decodes (``_round_up_end``), about 1-2 bytes shorter.
    """
    import constriction

    enc = constriction.stream.queue.RangeEncoder()
    sealed = []
    for ops in layer_ops:
        _encode_into(enc, ops)
        sealed.append(4 * len(enc.get_compressed()))
    data = _words_to_bytes(enc.get_compressed()).rstrip(b"\x00")
    symbols = sum(len(op[1]) for ops in layer_ops for op in ops)
    slack = 4 if symbols > BIG_STREAM else -4
    ends, flat = [], []
    for ops, n in zip(layer_ops, sealed):
        flat = flat + list(ops)
        end = min(len(data), max(ends[-1] if ends else 0, n + slack))
        while end < len(data) and not _decodes_to(data[:end], flat):
            end += 1
        ends.append(end)
    if ends and symbols <= BIG_STREAM:
        data = _round_up_end(data[:ends[-1]], flat, ends[-2] if len(ends) > 1 else 0)
        ends[-1] = len(data)
    starts = [0, *ends[:-1]]
    return [data[a:b] for a, b in zip(starts, ends)]


def _round_up_end(data: bytes, ops, keep: int) -> bytes:
    """The shortest stream that still decodes ``ops``, found by rounding the stream's value up.

    The decoder reads missing bytes as zeros, so ``data`` stands for a number in the coder's final
    interval [low, low + range). Cutting it to n bytes rounds that number down, possibly below low;
    rounding it up instead (the n-byte prefix plus one in its last byte) lands at most 256^-n above
    it, inside the interval whenever the interval reaches that far. Each shorter n is tried until one
    fails (a coarser round-up lands higher still). The first ``keep`` bytes (earlier layers'
    slices) are never changed; every candidate is checked by a full trial decode.
    """
    best = data
    for n in range(len(data) - 1, keep, -1):
        v = int.from_bytes(data[:n], "big") + 1
        if v >> (8 * n):
            break
        cand = v.to_bytes(n, "big")
        if cand[:keep] != data[:keep] or not _decodes_to(cand, ops):
            break
        best = cand
    return best


def encode_ops(ops) -> bytes:
    """Range-code operations into bytes: one layer of ``encode_layered``."""
    return encode_layered([ops])[0]


def _decodes_to(data: bytes, ops) -> bool:
    dec = Decoder(data)
    try:
        for op in ops:
            if op[0] == "gauss":
                got = dec.gauss(*op[2:4], op[4], op[5])
            elif op[0] == "cats":
                got = dec.cats(op[2])
            else:
                got = dec.table(op[2], len(op[1]))
            if not np.array_equal(got, op[1]):
                return False
    except Exception:  # noqa: BLE001 - a failed trial decode only means "too short"
        return False
    return True


class Decoder:
    """Pulls symbols back, in the order they were encoded (one stream: a layer or consecutive
    layers' slices joined)."""

    def __init__(self, data: bytes):
        import constriction

        self._dec = constriction.stream.queue.RangeDecoder(_bytes_to_words(data))

    def gauss(self, lo, hi, means, stds) -> np.ndarray:
        means = np.asarray(means, np.float64).ravel()
        if not len(means):
            return np.zeros(0, np.int32)
        return self._dec.decode(_model("gauss", lo, hi), means, np.asarray(stds, np.float64).ravel())

    def table(self, probs, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, np.int32)
        return np.asarray(self._dec.decode(_model("table", probs=probs), n))

    def cats(self, probs) -> np.ndarray:
        """One symbol per row of ``probs`` [n, K]."""
        probs = np.asarray(probs, np.float64)
        if not len(probs):
            return np.zeros(0, np.int32)
        return np.asarray(self._dec.decode(_model("cats"), probs))


def zipf_table(count: int, s: float) -> np.ndarray:
    """Truncated Zipf law P(k) proportional to (k+1)^-s over k < count, snapped to a 2^-40 grid so
    that last-bit differences in pow() between machines cannot change constriction's pmf."""
    w = np.arange(1, count + 1, dtype=np.float64) ** (-s)
    p = w / w.sum()
    return np.maximum(np.round(p * 2.0 ** 40), 1.0) / 2.0 ** 40


def dyadic_scale(q: int) -> float:
    """The q-th value (0..255) of a log-spaced grid of scales, 2^-6 .. ~2^10, computed exactly:
    2^(q // 16 - 6) * (1 + (q % 16) / 16)."""
    return math.ldexp(1.0 + (q % 16) / 16.0, q // 16 - 6)


SCALE_GRID = np.array([dyadic_scale(q) for q in range(256)])   # dyadic_scale(0..255)


def quantize_scale(s: float) -> int:
    """Index of the grid scale nearest to s in log terms."""
    return int(np.argmin(np.abs(np.log(SCALE_GRID) - math.log(max(s, 1e-12)))))
