"""The checksums stored in files: CRC-8 and CRC-16 (the low bits of zlib's CRC-32)."""
from __future__ import annotations

import zlib

import numpy as np


def crc8(data: bytes) -> int:
    return zlib.crc32(data) & 0xFF


def crc16(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFF


def pixel_crc(pixels: np.ndarray) -> bytes:
    """CRC-16 of uint8 pixels, 2 bytes big-endian: stored beside a model-dependent pmf's stream."""
    return crc16(pixels.astype(np.uint8).tobytes()).to_bytes(2, "big")
