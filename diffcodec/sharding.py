"""Sharding an evaluation across processes with torch.distributed (launch with torchrun).

Each rank evaluates images rank, rank + world, ...; per-image results are gathered on every rank,
so the result is the same as a single process (per-image noise is seeded by the image's index).
"""
from __future__ import annotations

import atexit
import os

import numpy as np
import torch


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment, initialising the process group if needed."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(_close)
    return rank, size


def _close() -> None:
    """At exit, wait for every rank (rank 0 may still be writing results), then tear the group
    down: a rank that simply exits while a peer still holds the connection can abort."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def my_indices(n: int) -> np.ndarray:
    rank, size = world()
    return np.arange(rank, n, size)


def gather_rows(indices: np.ndarray, rows: list, n: int) -> list:
    """Put per-image rows from every rank back in image order (a no-op for one process)."""
    _, size = world()
    pairs = list(zip(indices.tolist(), rows))
    if size > 1:
        parts = [None] * size
        torch.distributed.all_gather_object(parts, pairs)
        pairs = [p for part in parts for p in part]
    ordered = dict(pairs)
    return [ordered[i] for i in range(n)]


def image_noise(seed: int, indices, shape, device):
    """noise_fn(i) for a batch: each image's noise comes from its own generator, keyed by its index."""
    gens = [torch.Generator().manual_seed(seed * 1_000_003 + int(i)) for i in indices]
    return lambda _step: torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)
