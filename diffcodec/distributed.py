"""torch.distributed under torchrun: the rank and world size (read from torchrun's environment
here and nowhere else), the training process group, and sharding an evaluation across processes.

Each rank evaluates images rank, rank + world, ...; per-image results are gathered on every rank,
so the result is the same as a single process (per-image noise is seeded by the image's index).
"""
from __future__ import annotations

import atexit
import os

import numpy as np
import torch


def env_rank_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


class Distributed:
    """The training process group: rank/world info and this process's device; a single process
    when torchrun's environment is absent."""

    def __init__(self):
        self.rank, self.world, self.local_rank = env_rank_world()
        self.active = self.world > 1
        if torch.cuda.is_available():
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        if self.active and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def close(self):
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def world() -> tuple[int, int]:
    """(rank, world size) for sharding an evaluation, initialising the process group if needed."""
    rank, size, local = env_rank_world()
    if size > 1 and not torch.distributed.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local)   # "cuda" is then this rank's own GPU (NCCL needs one per rank)
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
    """True in the process that reports (rank 0, or the only process)."""
    return env_rank_world()[0] == 0


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


def sum_across(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU tensor summed over every rank (itself for one process)."""
    _, size = world()
    if size > 1:
        on = tensor.to("cuda") if torch.distributed.get_backend() == "nccl" else tensor.clone()
        torch.distributed.all_reduce(on)
        return on.cpu()
    return tensor


def image_noise(seed: int, indices, shape, device):
    """noise_fn(i) for a batch: each image's noise comes from its own generator, keyed by its index."""
    gens = [torch.Generator().manual_seed(seed * 1_000_003 + int(i)) for i in indices]
    return lambda _step: torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)
