"""The optional lossless layer: x_0 coded with the discretized decoder p_theta(x_0 | x_1).

This pmf is a network output, so its parameters are snapped to fixed grids (means to 1/16 of a
grey level, scales to the dyadic grid) before they reach the entropy coder, and a CRC-16 of the
pixels is stored: if encoder and decoder ever disagree, decoding reports it instead of returning a
wrong image.
"""
from __future__ import annotations

import numpy as np

from ..io.checksums import pixel_crc
from ..io.pixels import SCALE, to_pixel_units
from .entropy import SCALE_GRID, CorruptStream, Decoder, encode_ops, gauss_op

_LOG_MID = (np.log(SCALE_GRID[1:]) + np.log(SCALE_GRID[:-1])) / 2


def snapped_params(mean: np.ndarray, var: np.ndarray):
    """Pixel-unit mean and std of p(x_0 | x_1) on fixed grids (mean, var in model units)."""
    mu = np.round(np.clip(to_pixel_units(mean), -64, 320) * 16.0) / 16.0
    std = SCALE_GRID[np.searchsorted(_LOG_MID, np.log(np.sqrt(var) * SCALE))]
    return mu, std


def encode_lossless(pixels: np.ndarray, mean: np.ndarray, var: np.ndarray):
    """-> (layer bytes, ops) for uint8 pixels [D] given the model's mean/variance [D]."""
    mu, std = snapped_params(mean, var)
    ops = [gauss_op(pixels.astype(np.int32), 0, 255, mu, std)]
    return pixel_crc(pixels) + encode_ops(ops), ops


def decode_lossless(data: bytes, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    if len(data) < 2:
        raise CorruptStream("lossless layer is too short")
    mu, std = snapped_params(mean, var)
    pixels = Decoder(data[2:]).gauss(0, 255, mu, std).astype(np.uint8)
    if pixel_crc(pixels) != data[:2]:
        raise CorruptStream("lossless layer does not match its checksum: the decoder's model "
                            "output differs from the encoder's, or the file is corrupt")
    return pixels
