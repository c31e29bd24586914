"""Lossless evaluators that code for real, decode back, check every pixel and report bits/dim:
bits-back ANS chains of images (``run_chain``) and the T = D masking diffusion (``run_ardm``),
whose variational bound is the autoregressive NLL."""
from __future__ import annotations

import time

import numpy as np

from ..coding.bitsback import GRID_FRACTION, BitsBackMismatch, decode_chain, encode_chain_fitting
from ..errors import UserError
from .bpd import evaluate_bpd


def run_chain(loaded, images: np.ndarray, steps=None, seed: int = 0, progress=None, grid=None) -> dict:
    """Encode a chain, decode it back, check it, and report rates in bits per dimension against
    the model's bound (``evaluate_bpd``) of the same chain on the same images and seed.

    The initial words are the fewest that fit the first image's borrowed bits; ``grid``: the
    latents' bins per smallest noise scale (default bitsback.GRID_FRACTION). ``progress(k)`` is
    called once per image on each side (2n calls)."""
    n = len(images)
    D = int(np.prod(images.shape[1:]))
    t0 = time.perf_counter()
    words, stats, n_init = encode_chain_fitting(loaded, images, steps, seed, progress, grid=grid)
    t1 = time.perf_counter()
    decoded = decode_chain(loaded, words, n, images.shape[1:], steps, seed, n_init, progress, grid=grid)
    t2 = time.perf_counter()
    if not np.array_equal(decoded, images):
        raise BitsBackMismatch("bits-back chain decoded to different pixels")
    net = np.array(stats.net_bits) / D
    first_needed = stats.borrowed_bits[0] + stats.net_bits[0]
    # the independent reference: the model's bound of the same chain on the same images
    bound = np.asarray(evaluate_bpd(loaded, images, steps, seed=seed)["per_image_bpd"])
    excess = net / bound - 1.0
    path = np.array(stats.path_bits) / D

    def share(a, b):
        """(a - b) / bound in percent, with its standard error over images."""
        d = (a - b) / bound.mean()
        return float(100 * d.mean()), float(100 * d.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return {
        "images": n, "dims": D, "steps": steps or "all", "grid": grid or GRID_FRACTION,
        "bound_bpd": float(bound.mean()),
        "net_bpd": float(net.mean()),
        "excess_pct": float(100 * (net.mean() / bound.mean() - 1.0)),
        "excess_pct_sem": float(100 * excess.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        "path_bound_bpd": float(path.mean()),
        # the excess over the bound in two parts (percent of the bound, +- standard error over
        # images): "coding", the coded rate against the one-sample bound of the very path it coded
        # (continuous densities, unsnapped network outputs: bitsback._path_step), which is the
        # coder's whole cost without sampling noise; and "sampling", that path bound against bpd's
        # estimate (two one-sample estimates of the same bound, so zero-mean noise if the popped
        # latents are samples of q)
        "excess_split_pct": {"coding": share(net, path), "sampling": share(path, bound)},
        # the coding part over the whole chain, in bits per image: per image the stack's growth is
        # counted in whole 32-bit words, so single images scatter by about +-16 bits, but the sum
        # over the chain telescopes, and this is exact to within 32 bits / n
        "coder_bits_per_image": float((np.sum(stats.net_bits) - np.sum(stats.path_bits)) / n),
        "file_bpd": float(32 * len(words) / (n * D)),
        "initial_bpd": float(32 * n_init / (n * D)),
        "single_image_bpd": float(first_needed / D),
        "borrowed_bpd": float(np.mean(stats.borrowed_bits) / D),
        "encode_s": (t1 - t0) / n, "decode_s": (t2 - t1) / n, "lossless": True,
        "per_image_net_bpd": net.round(4).tolist(), "per_image_bound_bpd": bound.round(4).tolist(),
        "per_image_path_bpd": path.round(4).tolist(),
    }


def _masking(loaded, images: np.ndarray):
    from ..coding.reveal import masking_for

    return masking_for(loaded, images.shape[1:])


def ardm_bound(loaded, images: np.ndarray, order: str = "raster", seed: int = 0, progress=None):
    """The bound of a masking model on uint8 images [N, C, H, W]: the sum of its D KL terms in the
    reveal order (each one coordinate's NLL; L_T = 0), overall and by quarter of the order.
    ``progress(1)`` after each of the D steps. -> (result dict, per-image bound in bits/dim)."""
    md = _masking(loaded, images)
    terms = md.bound_terms(loaded.net, images, md.order(order, seed), progress=progress)
    per_image = terms.sum(1) / md.D
    res = {"images": len(images), "T": md.D, "order": order,
           "bound_bpd": float(per_image.mean()),
           "bound_bpd_sem": float(per_image.std(ddof=1) / np.sqrt(len(images))) if len(images) > 1 else 0.0,
           "L_T_bpd": 0.0, "quarters_bpd": [float(q.sum(1).mean() / md.D) for q in np.array_split(terms, 4, axis=1)]}
    return res, per_image


def ardm_code(loaded, images: np.ndarray, per_image_bound: np.ndarray, order: str = "raster",
              seed: int = 0, progress=None, steps="all") -> dict:
    """Real lossless .dfc files of uint8 images [k, C, H, W] from the masking codec (``steps``
    network evaluations each; "all": one coordinate per step, whose ideal rate is the bound), each
    decoded back and checked; against their bound (``per_image_bound`` from ``ardm_bound``).
    ``progress(1)`` after each image."""
    from ..coding import reveal
    from ..container.format import Container

    sizes, payloads, secs = [], [], []
    for img in images:
        t0 = time.perf_counter()
        res = reveal.encode_image(loaded, img, order, steps)
        back = reveal.decode_container(loaded, Container.from_bytes(res.data, loaded.keys))
        secs.append(time.perf_counter() - t0)
        if not np.array_equal(back.image, img):
            raise UserError("lossless round trip failed")
        sizes.append(len(res.data))
        payloads.append(sum(res.layer_bytes))
        evals = res.net_evals
        if progress:
            progress(1)
    k, D = len(sizes), images[0].size
    return {"coded_images": k, "coded_bpd": float(8 * np.sum(sizes) / (k * D)), "coded_steps": evals,
            "payload_bpd": float(8 * np.sum(payloads) / (k * D)),
            "header_bytes": float(np.mean(sizes) - np.mean(payloads)),
            "coded_bound_bpd": float(per_image_bound[:k].mean()), "code_s_per_image": float(np.mean(secs))}
